//! A bounds check of packed nvlists, run before libnvpair sees them.
//!
//! libnvpair's `nvlist_unpack` trusts parts of its input: for string and
//! string-array values it calls `strlen()` on the copied nvpair before it
//! checks the result against `nvp_size` (`i_get_value_size`,
//! `nvpair_native_string_array`, module/nvpair/nvpair.c in OpenZFS 2.3.2),
//! so a value that is not NUL-terminated inside its pair makes it read past
//! the heap buffer. [`check_packed`] walks the native encoding in safe Rust
//! and accepts only streams on which every read libnvpair's decoder makes
//! stays inside the input and inside the nvpair buffer it copies each pair
//! into: it repeats every check of `nvs_native_nvpair`,
//! `nvs_native_nvp_op`, `i_validate_nvpair` and `nvs_embedded`, in the
//! same order of reads, and adds the ones libnvpair lacks (terminated
//! strings) plus a few conservative ones of its own (see below).
//!
//! Native layout (all integers in host byte order):
//!
//! ```text
//! stream header  u8 encoding (0 native, 1 XDR), u8 endian (1 little),
//!                u8 reserved, u8 reserved
//! nvlist header  i32 nvl_version (0), u32 nvl_nvflag
//! nvpair*        i32 nvp_size, i16 nvp_name_sz, i16 nvp_reserve,
//!                i32 nvp_value_elem, i32 nvp_type, name (nvp_name_sz bytes
//!                with its NUL), zero padding to 8, value, padding to 8;
//!                nvp_size covers all of it
//! end            i32 0
//! ```
//!
//! An `nvlist` value is a 24-byte `nvlist_t` (version, nvflag, pointer,
//! flag, pad) whose pairs follow the parent pair in the stream, up to their
//! own zero end mark; an `nvlist_array` value is `nelem` 8-byte pointer
//! slots and `nelem` such `nvlist_t`, whose pair lists follow one after the
//! other. A `string_array` value is `nelem` pointer slots, then the
//! NUL-terminated strings.
//!
//! Stricter than libnvpair, on purpose: only the native encoding in host
//! byte order (libnvpair refuses the other byte order itself; XDR is never
//! produced by ZFS for the lists this crate unpacks and is not checked
//! here), reserved header bytes zero, every list's version 0 and flags a
//! subset of `NV_UNIQUE_NAME | NV_UNIQUE_NAME_TYPE`, `boolean_value` and
//! `boolean_array` elements 0 or 1, nesting at most [`MAX_DEPTH`] (libnvpair
//! allows 100 in user space, 20 in the kernel), at most [`MAX_PAIRS`] pairs,
//! and no bytes after the final end mark.

use zfs_sys::data_type_t as dt;

use super::NvListError;

/// Deepest nesting of embedded lists accepted (the top-level list is depth
/// 0). libnvpair's own limit is 100 in user space and 20 in the kernel.
pub const MAX_DEPTH: usize = 64;

/// Most pairs (at every depth, plus one per embedded list) accepted in one
/// stream. The check and libnvpair are linear in the input anyway (a pair
/// takes at least 24 bytes, an embedded list at least 28); this only caps
/// the work on absurd inputs.
pub const MAX_PAIRS: usize = 1 << 22;

const NV_ENCODE_NATIVE: u8 = 0;
const NV_VERSION: i32 = 0;
const NV_FLAGS_KNOWN: u32 = 0x1 | 0x2; // NV_UNIQUE_NAME | NV_UNIQUE_NAME_TYPE
const HOST_ENDIAN: u8 = if cfg!(target_endian = "little") { 1 } else { 0 };

/// `sizeof (nvs_header_t)`.
const STREAM_HEADER: usize = 4;
/// `sizeof (nvpair_t)`: size, name_sz, reserve, value_elem, type.
const NVPAIR_HEADER: usize = 16;
/// `NV_ALIGN(sizeof (nvlist_t))`.
const NVLIST_T: usize = 24;
/// An 8-byte pointer slot of an array value.
const PTR_SLOT: usize = 8;

/// Checks that `bytes` is a packed native nvlist that libnvpair's
/// `nvlist_unpack` decodes reading only inside `bytes` and inside the
/// buffers it allocates. Anything it cannot prove so is refused with
/// [`NvListError::Malformed`], naming the byte offset and the reason.
pub fn check_packed(bytes: &[u8]) -> Result<(), NvListError> {
    let header = bytes
        .get(..STREAM_HEADER)
        .ok_or(malformed(0, "shorter than the 4-byte stream header"))?;
    match header {
        [NV_ENCODE_NATIVE, e, 0, 0] if *e == HOST_ENDIAN => {}
        [NV_ENCODE_NATIVE, e, _, _] if *e != HOST_ENDIAN => {
            return Err(malformed(1, "native encoding of the other byte order"));
        }
        [NV_ENCODE_NATIVE, ..] => return Err(malformed(2, "reserved header bytes not zero")),
        [1, ..] => return Err(malformed(0, "XDR encoding is not accepted")),
        _ => return Err(malformed(0, "unknown encoding")),
    }
    let mut c = Checker {
        bytes,
        pos: STREAM_HEADER,
        pairs: 0,
    };
    // nvs_native_nvlist: version and nvflag of the top-level list.
    let version = c.i32_at(c.pos, "truncated nvlist header")?;
    let flags = c.i32_at(c.pos + 4, "truncated nvlist header")? as u32;
    check_list_header(c.pos, version, flags)?;
    c.pos += 8;
    c.pairs(0)?;
    if c.pos != bytes.len() {
        return Err(malformed(c.pos, "bytes after the end of the list"));
    }
    Ok(())
}

fn malformed(offset: usize, reason: &'static str) -> NvListError {
    NvListError::Malformed { offset, reason }
}

fn check_list_header(offset: usize, version: i32, flags: u32) -> Result<(), NvListError> {
    if version != NV_VERSION {
        return Err(malformed(offset, "nvlist version is not 0"));
    }
    if flags & !NV_FLAGS_KNOWN != 0 {
        return Err(malformed(offset + 4, "unknown nvlist flags"));
    }
    Ok(())
}

/// `NV_ALIGN`: rounds up to a multiple of 8 (None on overflow).
fn align8(n: usize) -> Option<usize> {
    n.checked_add(7).map(|n| n & !7)
}

struct Checker<'a> {
    bytes: &'a [u8],
    /// The stream cursor (`n_curr`), an offset into `bytes`.
    pos: usize,
    /// Pairs and embedded lists seen so far.
    pairs: usize,
}

/// An i32 in host byte order at `at` of `buf`.
fn ne_i32(buf: &[u8], at: usize) -> Option<i32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(i32::from_ne_bytes(b.try_into().ok()?))
}

fn ne_i16(buf: &[u8], at: usize) -> Option<i16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(i16::from_ne_bytes(b.try_into().ok()?))
}

impl Checker<'_> {
    fn i32_at(&self, at: usize, why: &'static str) -> Result<i32, NvListError> {
        ne_i32(self.bytes, at).ok_or(malformed(at, why))
    }

    fn count(&mut self, at: usize) -> Result<(), NvListError> {
        self.pairs += 1;
        if self.pairs > MAX_PAIRS {
            return Err(malformed(at, "too many pairs"));
        }
        Ok(())
    }

    /// `nvs_decode_pairs`: the pairs of one list, up to its end mark.
    /// `depth` is libnvpair's `nvs_recursion` for this list.
    fn pairs(&mut self, depth: usize) -> Result<(), NvListError> {
        loop {
            let at = self.pos;
            // nvs_native_nvpair: the size, 0 <= size <= what is left.
            let size = self.i32_at(at, "truncated: no pair size or end mark")?;
            let left = self.bytes.len().saturating_sub(at);
            let size = usize::try_from(size).map_err(|_| malformed(at, "negative pair size"))?;
            if size > left {
                return Err(malformed(at, "pair size past the end of the input"));
            }
            if size == 0 {
                self.pos = at + 4;
                return Ok(());
            }
            self.count(at)?;
            // nvs_native_nvp_op copies exactly `size` bytes into a buffer of
            // `size` bytes: every read of the pair must stay inside `pair`.
            let pair = self
                .bytes
                .get(at..at + size)
                .ok_or(malformed(at, "pair size past the end of the input"))?;
            self.pos = at + size;
            self.pair(pair, at, depth)?;
        }
    }

    /// One pair: `pair` is its `nvp_size` bytes, `at` its stream offset.
    fn pair(&mut self, pair: &[u8], at: usize, depth: usize) -> Result<(), NvListError> {
        let size = pair.len();
        let bad = |off: usize, why| malformed(at.saturating_add(off), why);
        // NVP_SIZE_CALC(1, 0): room for the header and a 1-byte name.
        if size < 24 {
            return Err(bad(0, "pair smaller than its header"));
        }
        let name_sz = ne_i16(pair, 4).ok_or(bad(4, "pair smaller than its header"))?;
        let nelem = ne_i32(pair, 8).ok_or(bad(8, "pair smaller than its header"))? as u32;
        let ty = ne_i32(pair, 12).ok_or(bad(12, "pair smaller than its header"))?;

        // i_validate_nvpair_name.
        let name_sz = usize::try_from(name_sz)
            .ok()
            .filter(|&n| n > 0)
            .ok_or(bad(4, "name size not positive"))?;
        let valoff = align8(NVPAIR_HEADER + name_sz).ok_or(bad(4, "name size overflows"))?;
        if valoff > size {
            return Err(bad(4, "name past the end of the pair"));
        }
        let name = pair
            .get(NVPAIR_HEADER..NVPAIR_HEADER + name_sz)
            .ok_or(bad(4, "name past the end of the pair"))?;
        match name.iter().position(|&b| b == 0) {
            Some(n) if n + 1 == name_sz => {}
            Some(_) => return Err(bad(NVPAIR_HEADER, "NUL inside the name")),
            None => return Err(bad(NVPAIR_HEADER, "name not NUL-terminated")),
        }

        // i_get_value_size(type, NULL, nelem), then NVP_SIZE_CALC <= size.
        let fixed = fixed_value_size(ty, nelem).ok_or(bad(8, "bad type or element count"))?;
        let fixed_end = align8(fixed)
            .and_then(|f| valoff.checked_add(f))
            .ok_or(bad(8, "value size overflows"))?;
        if fixed_end > size {
            return Err(bad(0, "value past the end of the pair"));
        }
        let value = pair
            .get(valoff..)
            .ok_or(bad(0, "value past the end of the pair"))?;
        let nelem = nelem as usize; // fixed_value_size bounded it

        // nvs_native_nvp_op: embedded lists, string arrays; then
        // i_validate_nvpair_value and i_get_value_size(type, data, nelem).
        let actual = match ty {
            dt::DATA_TYPE_NVLIST => {
                self.embedded(value, at + valoff, depth)?;
                fixed
            }
            dt::DATA_TYPE_NVLIST_ARRAY => {
                for i in 0..nelem {
                    let off = nelem * PTR_SLOT + i * NVLIST_T;
                    let nvl = value
                        .get(off..off + NVLIST_T)
                        .ok_or(bad(valoff + off, "nvlist past the end of the pair"))?;
                    self.embedded(nvl, at + valoff + off, depth)?;
                }
                fixed
            }
            dt::DATA_TYPE_STRING => {
                let len = value
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(bad(valoff, "string not NUL-terminated inside its pair"))?;
                len + 1
            }
            dt::DATA_TYPE_STRING_ARRAY => {
                let mut off = nelem * PTR_SLOT;
                for _ in 0..nelem {
                    let rest = value
                        .get(off..)
                        .ok_or(bad(valoff + off, "string past the pair"))?;
                    let len = rest.iter().position(|&b| b == 0).ok_or(bad(
                        valoff + off,
                        "string array element not NUL-terminated inside its pair",
                    ))?;
                    off += len + 1;
                }
                off
            }
            dt::DATA_TYPE_BOOLEAN_VALUE | dt::DATA_TYPE_BOOLEAN_ARRAY => {
                let n = if ty == dt::DATA_TYPE_BOOLEAN_VALUE {
                    1
                } else {
                    nelem
                };
                for i in 0..n {
                    match ne_i32(value, i * 4) {
                        Some(0 | 1) => {}
                        _ => return Err(bad(valoff + i * 4, "boolean neither 0 nor 1")),
                    }
                }
                fixed
            }
            _ => fixed,
        };
        // value_sz > INT32_MAX gives -1 in i_get_value_size.
        if actual > i32::MAX as usize {
            return Err(bad(valoff, "value larger than INT32_MAX"));
        }
        // i_validate_nvpair: size - NVP_VALOFF == NV_ALIGN(value size).
        if align8(actual) != Some(value.len()) {
            return Err(bad(0, "pair size does not match its value"));
        }
        Ok(())
    }

    /// `nvs_embedded`: a 24-byte `nvlist_t` inside the parent pair, whose
    /// pairs follow in the stream.
    fn embedded(&mut self, nvl: &[u8], at: usize, depth: usize) -> Result<(), NvListError> {
        let version = ne_i32(nvl, 0).ok_or(malformed(at, "nvlist past the end of the pair"))?;
        let flags = ne_i32(nvl, 4).ok_or(malformed(at, "nvlist past the end of the pair"))? as u32;
        check_list_header(at, version, flags)?;
        if depth >= MAX_DEPTH {
            return Err(malformed(at, "nvlists nested too deep"));
        }
        self.count(at)?;
        self.pairs(depth + 1)
    }
}

/// `i_get_value_size(type, NULL, nelem)` with `i_validate_type_nelem`: the
/// value size without the strings of string types, or None where libnvpair
/// refuses the type or count (or the size exceeds `INT32_MAX`).
fn fixed_value_size(ty: i32, nelem: u32) -> Option<usize> {
    let n = nelem as u64;
    let one = |sz: u64| (nelem == 1).then_some(sz);
    let size: u64 = match ty {
        dt::DATA_TYPE_BOOLEAN => (nelem == 0).then_some(0)?,
        dt::DATA_TYPE_BYTE | dt::DATA_TYPE_INT8 | dt::DATA_TYPE_UINT8 => one(1)?,
        dt::DATA_TYPE_INT16 | dt::DATA_TYPE_UINT16 => one(2)?,
        dt::DATA_TYPE_BOOLEAN_VALUE | dt::DATA_TYPE_INT32 | dt::DATA_TYPE_UINT32 => one(4)?,
        dt::DATA_TYPE_INT64 | dt::DATA_TYPE_UINT64 | dt::DATA_TYPE_HRTIME => one(8)?,
        dt::DATA_TYPE_DOUBLE => one(8)?,
        dt::DATA_TYPE_STRING => one(0)?,
        dt::DATA_TYPE_NVLIST => one(NVLIST_T as u64)?,
        dt::DATA_TYPE_BYTE_ARRAY | dt::DATA_TYPE_INT8_ARRAY | dt::DATA_TYPE_UINT8_ARRAY => n,
        dt::DATA_TYPE_INT16_ARRAY | dt::DATA_TYPE_UINT16_ARRAY => n * 2,
        dt::DATA_TYPE_BOOLEAN_ARRAY | dt::DATA_TYPE_INT32_ARRAY | dt::DATA_TYPE_UINT32_ARRAY => {
            n * 4
        }
        dt::DATA_TYPE_INT64_ARRAY | dt::DATA_TYPE_UINT64_ARRAY => n * 8,
        dt::DATA_TYPE_STRING_ARRAY => n * PTR_SLOT as u64,
        dt::DATA_TYPE_NVLIST_ARRAY => n * (PTR_SLOT + NVLIST_T) as u64,
        _ => return None,
    };
    if size > i32::MAX as u64 {
        return None;
    }
    usize::try_from(size).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Errno;
    use crate::ffi::CNvList;
    use crate::nvlist::{NvList, NvValue};

    fn refused(bytes: &[u8]) -> &'static str {
        match check_packed(bytes) {
            Err(NvListError::Malformed { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Every value type the crate converts, nested lists and arrays, empty
    /// strings and empty arrays.
    fn every_type() -> NvList {
        let mut inner = NvList::new();
        inner.insert("value", 7u64).insert("source", "local");
        let mut l = NvList::new();
        l.insert_flag("flag");
        for (k, v) in [
            ("bool_value", NvValue::BoolValue(true)),
            ("byte", NvValue::Byte(0xfe)),
            ("i8", NvValue::I8(-8)),
            ("u8", NvValue::U8(8)),
            ("i16", NvValue::I16(-16)),
            ("u16", NvValue::U16(16)),
            ("i32", NvValue::I32(-32)),
            ("u32", NvValue::U32(32)),
            ("i64", NvValue::I64(-64)),
            ("u64", NvValue::U64(u64::MAX)),
            ("double", NvValue::Double(1.5)),
            ("hrtime", NvValue::HrTime(123_456_789)),
            ("string", NvValue::String("a name with spaces".into())),
            ("empty_string", NvValue::String(String::new())),
            ("seven", NvValue::String("1234567".into())), // value exactly 8 bytes
            ("nvlist", NvValue::NvList(inner.clone())),
            ("empty_nvlist", NvValue::NvList(NvList::new())),
            ("bools", NvValue::BoolArray(vec![true, false, true])),
            ("bytes", NvValue::ByteArray(vec![0, 1, 2, 0xff, 0])),
            ("i32s", NvValue::I32Array(vec![-1, 0, 1])),
            ("u32s", NvValue::U32Array(vec![1, 2, 3])),
            ("i64s", NvValue::I64Array(vec![i64::MIN, 0])),
            ("u64s", NvValue::U64Array(vec![1, 2, 3])),
            ("no_u64s", NvValue::U64Array(vec![])),
            (
                "strings",
                NvValue::StringArray(vec!["x".into(), String::new(), "yz".into()]),
            ),
            ("no_strings", NvValue::StringArray(vec![])),
            (
                "lists",
                NvValue::NvListArray(vec![inner.clone(), NvList::new(), inner]),
            ),
            ("no_lists", NvValue::NvListArray(vec![])),
        ] {
            l.insert(k, v);
        }
        l
    }

    fn nested(depth: usize) -> NvList {
        let mut l = NvList::new().with("leaf", 1u64);
        for _ in 0..depth {
            l = NvList::new().with("child", l);
        }
        l
    }

    #[test]
    fn packed_lists_of_every_type_pass_and_round_trip() {
        for l in [NvList::new(), every_type(), nested(MAX_DEPTH)] {
            let packed = l.pack().unwrap();
            assert_eq!(check_packed(&packed), Ok(()), "{l}");
            assert_eq!(NvList::unpack(&packed).unwrap(), l);
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        // libnvpair (user space: 100 levels) packs and would unpack it.
        let packed = nested(MAX_DEPTH + 1).pack().unwrap();
        assert!(CNvList::unpack(&packed).is_ok());
        assert_eq!(refused(&packed), "nvlists nested too deep");
        let err = NvList::unpack(&packed).unwrap_err();
        assert_eq!(err.errno(), Some(Errno(libc::EINVAL)));
    }

    /// The fuzzer's input on which libnvpair's strlen() read past the heap
    /// buffer (fuzz/README.md): refused here, libnvpair never sees it.
    /// `testdata/` links to the file in `fuzz/regressions/`; the package
    /// ships a copy, so the test builds from crates.io too.
    #[test]
    fn the_libnvpair_over_read_input_is_refused() {
        let crash = include_bytes!(
            "../../testdata/nvlist_unpack-crash-8995944de57cd0d8c6924b088358ffcad1c09cfb"
        );
        assert_eq!(
            check_packed(crash),
            Err(NvListError::Malformed {
                offset: 0xb4 + 24,
                reason: "string not NUL-terminated inside its pair"
            })
        );
        let err = NvList::unpack(crash).unwrap_err();
        assert_eq!(err.errno(), Some(Errno(libc::EINVAL)));
    }

    // Hand-built streams, to reach each check on its own.

    fn header() -> Vec<u8> {
        let mut v = vec![0, HOST_ENDIAN, 0, 0];
        v.extend_from_slice(&0i32.to_ne_bytes());
        v.extend_from_slice(&1u32.to_ne_bytes()); // NV_UNIQUE_NAME
        v
    }

    /// One pair with `size` and `name_sz` as given (None: computed).
    fn raw_pair(
        name: &[u8],
        name_sz: Option<i16>,
        ty: i32,
        nelem: i32,
        value: &[u8],
        size: Option<i32>,
    ) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&0i32.to_ne_bytes());
        p.extend_from_slice(&name_sz.unwrap_or(name.len() as i16).to_ne_bytes());
        p.extend_from_slice(&0i16.to_ne_bytes());
        p.extend_from_slice(&nelem.to_ne_bytes());
        p.extend_from_slice(&ty.to_ne_bytes());
        p.extend_from_slice(name);
        p.resize(align8(p.len()).unwrap(), 0);
        p.extend_from_slice(value);
        p.resize(align8(p.len()).unwrap(), 0);
        let size = size.unwrap_or(p.len() as i32);
        p[..4].copy_from_slice(&size.to_ne_bytes());
        p
    }

    fn pair(name: &str, ty: i32, nelem: i32, value: &[u8]) -> Vec<u8> {
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        raw_pair(&n, None, ty, nelem, value, None)
    }

    fn list(pairs: &[Vec<u8>]) -> Vec<u8> {
        let mut v = header();
        for p in pairs {
            v.extend_from_slice(p);
        }
        v.extend_from_slice(&0i32.to_ne_bytes());
        v
    }

    fn u64_pair() -> Vec<u8> {
        pair("n", dt::DATA_TYPE_UINT64, 1, &7u64.to_ne_bytes())
    }

    #[test]
    fn hand_built_valid_streams_match_libnvpair() {
        let s = list(&[u64_pair(), pair("s", dt::DATA_TYPE_STRING, 1, b"abc\0")]);
        assert_eq!(check_packed(&s), Ok(()));
        let l = NvList::unpack(&s).unwrap();
        assert_eq!(l.get_str("s").unwrap(), "abc");
        assert_eq!(l, NvList::unpack(&l.pack().unwrap()).unwrap());
    }

    #[test]
    fn strings_not_terminated_inside_their_pair_are_refused() {
        // 8 bytes of value, no NUL: libnvpair's strlen() runs off the pair.
        let s = list(&[pair("s", dt::DATA_TYPE_STRING, 1, b"abcdefgh")]);
        assert_eq!(refused(&s), "string not NUL-terminated inside its pair");
        // No value bytes at all.
        let s = list(&[pair("s", dt::DATA_TYPE_STRING, 1, b"")]);
        assert_eq!(refused(&s), "string not NUL-terminated inside its pair");
        // A string array whose second element runs off the pair.
        let mut v = vec![0u8; 16]; // two pointer slots
        v.extend_from_slice(b"ab\0cdefg");
        let s = list(&[pair("a", dt::DATA_TYPE_STRING_ARRAY, 2, &v)]);
        assert_eq!(
            refused(&s),
            "string array element not NUL-terminated inside its pair"
        );
        // More elements than strings.
        let mut v = vec![0u8; 24];
        v.extend_from_slice(b"a\0b\0\0\0\0\0");
        let s = list(&[pair("a", dt::DATA_TYPE_STRING_ARRAY, 3, &v)]);
        assert!(
            check_packed(&s).is_ok(),
            "NUL padding ends the third string"
        );
        let s = list(&[pair("a", dt::DATA_TYPE_STRING_ARRAY, 9, &v)]);
        assert!(check_packed(&s).is_err());
    }

    #[test]
    fn sizes_out_of_bounds_are_refused() {
        let mut p = u64_pair();
        p[..4].copy_from_slice(&1000i32.to_ne_bytes());
        assert_eq!(refused(&list(&[p])), "pair size past the end of the input");
        let mut p = u64_pair();
        p[..4].copy_from_slice(&(-8i32).to_ne_bytes());
        assert_eq!(refused(&list(&[p])), "negative pair size");
        let mut p = u64_pair();
        p[..4].copy_from_slice(&16i32.to_ne_bytes());
        assert!(check_packed(&list(&[p])).is_err());
        // Name size 0, negative, or past the pair.
        for (sz, why) in [
            (0i16, "name size not positive"),
            (-1, "name size not positive"),
            (200, "name past the end of the pair"),
        ] {
            let p = raw_pair(b"n\0", Some(sz), dt::DATA_TYPE_UINT64, 1, &[0; 8], None);
            assert_eq!(refused(&list(&[p])), why);
        }
        // Name not terminated, or with a NUL inside.
        let p = raw_pair(b"nn", None, dt::DATA_TYPE_UINT64, 1, &[0; 8], None);
        assert_eq!(refused(&list(&[p])), "name not NUL-terminated");
        let p = raw_pair(b"n\0m\0", None, dt::DATA_TYPE_UINT64, 1, &[0; 8], None);
        assert_eq!(refused(&list(&[p])), "NUL inside the name");
        // Negative or huge element counts.
        let p = pair("a", dt::DATA_TYPE_UINT64_ARRAY, -1, &[0; 8]);
        assert_eq!(refused(&list(&[p])), "bad type or element count");
        let p = pair("a", dt::DATA_TYPE_UINT64_ARRAY, 1 << 29, &[0; 8]);
        assert_eq!(refused(&list(&[p])), "bad type or element count");
        let p = pair("a", dt::DATA_TYPE_UINT64_ARRAY, 2, &[0; 8]);
        assert_eq!(refused(&list(&[p])), "value past the end of the pair");
        // Unknown type; a scalar with two elements.
        assert!(check_packed(&list(&[pair("t", 99, 1, &[0; 8])])).is_err());
        assert!(check_packed(&list(&[pair("t", dt::DATA_TYPE_UINT64, 2, &[0; 16])])).is_err());
    }

    #[test]
    fn misaligned_or_inexact_pairs_are_refused() {
        // A 4-byte tail: nvp_size no longer NV_ALIGN(value) past the name.
        let mut p = u64_pair();
        p.extend_from_slice(&[0; 4]);
        let n = p.len() as i32;
        p[..4].copy_from_slice(&n.to_ne_bytes());
        assert_eq!(refused(&list(&[p])), "pair size does not match its value");
        // A value 8 bytes longer than its type.
        let p = pair("n", dt::DATA_TYPE_UINT64, 1, &[0; 16]);
        assert_eq!(refused(&list(&[p])), "pair size does not match its value");
        // A string whose padding holds a second NUL-free block.
        let p = pair("s", dt::DATA_TYPE_STRING, 1, b"a\0\0\0\0\0\0\0bcdefgh\0");
        assert_eq!(refused(&list(&[p])), "pair size does not match its value");
        // Booleans other than 0 and 1.
        let p = pair("b", dt::DATA_TYPE_BOOLEAN_VALUE, 1, &2i32.to_ne_bytes());
        assert_eq!(refused(&list(&[p])), "boolean neither 0 nor 1");
    }

    #[test]
    fn bad_headers_and_ends_are_refused() {
        let good = list(&[u64_pair()]);
        assert_eq!(check_packed(&good), Ok(()));
        for n in 0..good.len() {
            assert!(check_packed(&good[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut b = good.clone();
        b[0] = 1;
        assert_eq!(refused(&b), "XDR encoding is not accepted");
        b[0] = 2;
        assert_eq!(refused(&b), "unknown encoding");
        let mut b = good.clone();
        b[1] ^= 1;
        assert_eq!(refused(&b), "native encoding of the other byte order");
        let mut b = good.clone();
        b[3] = 1;
        assert_eq!(refused(&b), "reserved header bytes not zero");
        let mut b = good.clone();
        b[4] = 1;
        assert_eq!(refused(&b), "nvlist version is not 0");
        let mut b = good.clone();
        b[8] = 4;
        assert_eq!(refused(&b), "unknown nvlist flags");
        let mut b = good.clone();
        b.push(0);
        assert_eq!(refused(&b), "bytes after the end of the list");
        // An embedded list with a bad version.
        let mut nvl = [0u8; 24];
        nvl[..4].copy_from_slice(&1i32.to_ne_bytes());
        let mut p = pair("l", dt::DATA_TYPE_NVLIST, 1, &nvl);
        p.extend_from_slice(&0i32.to_ne_bytes()); // its (empty) pairs
        assert_eq!(refused(&list(&[p])), "nvlist version is not 0");
    }

    /// Every single-byte change of a packed list of every type: no panic, and
    /// whatever the check accepts libnvpair accepts too (the check models
    /// libnvpair's own rules, it does not merely over-approximate them).
    #[test]
    fn byte_changes_accepted_by_the_check_are_accepted_by_libnvpair() {
        let packed = every_type().pack().unwrap();
        let mut accepted = 0;
        for at in 0..packed.len() {
            for v in [0u8, 1, 2, 0x7f, 0x80, 0xff] {
                let mut b = packed.clone();
                if b[at] == v {
                    continue;
                }
                b[at] = v;
                if check_packed(&b).is_ok() {
                    accepted += 1;
                    assert!(CNvList::unpack(&b).is_ok(), "byte {at} = {v:#x}");
                }
            }
        }
        assert!(accepted > 0);
    }

    #[test]
    fn fixed_sizes_follow_libnvpair() {
        assert_eq!(fixed_value_size(dt::DATA_TYPE_BOOLEAN, 0), Some(0));
        assert_eq!(fixed_value_size(dt::DATA_TYPE_BOOLEAN, 1), None);
        assert_eq!(fixed_value_size(dt::DATA_TYPE_UINT64, 0), None);
        assert_eq!(fixed_value_size(dt::DATA_TYPE_NVLIST, 1), Some(24));
        assert_eq!(fixed_value_size(dt::DATA_TYPE_NVLIST_ARRAY, 2), Some(64));
        assert_eq!(fixed_value_size(dt::DATA_TYPE_UINT64_ARRAY, u32::MAX), None);
        assert_eq!(fixed_value_size(dt::DATA_TYPE_DONTCARE, 1), None);
    }
}
