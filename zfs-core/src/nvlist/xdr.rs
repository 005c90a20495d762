//! A decoder of libnvpair's XDR encoding (`NV_ENCODE_XDR`), the encoding
//! of the config nvlist in vdev labels. Safe Rust; libnvpair is not used.
//!
//! Layout (module/nvpair/nvpair.c, `nvs_xdr_*`, OpenZFS 2.1 to 2.3); every
//! integer is big-endian and every item a multiple of 4 bytes:
//!
//! ```text
//! stream header  u8 encoding (1), u8 writer's byte order, u8 0, u8 0
//! nvlist         i32 version (0), u32 flags, pair*, end mark (u32 0, u32 0)
//! pair           u32 encoded size, i32 decoded (native) size, name,
//!                i32 type, i32 nelem, value
//! string         u32 length, bytes (no NUL), zero padding to 4
//! ```
//!
//! Values: 8-, 16- and 32-bit scalars one word each, 64-bit ones two words
//! (high first); `byte_array` the bytes padded to 4; other arrays a u32
//! count (equal to nelem) then one item per element; `string_array` nelem
//! strings; `nvlist` an embedded nvlist; `nvlist_array` nelem of them. A
//! value with nelem 0 has no bytes at all.
//!
//! libnvpair ignores a pair's encoded size (and writes one 4 bytes too large
//! for empty arrays), so it is not checked here either. The decoded size
//! must be the pair's native size, as libnvpair's `i_validate_nvpair`
//! requires. Stricter than libnvpair over libtirpc, on purpose (it never
//! writes these): list version 0 and known flags; a header byte order of 0
//! or 1 and zero reserved bytes; both words of an end mark zero; array
//! counts equal to nelem; zero padding; no NUL inside a name or string;
//! 8- and 16-bit values in range (zero- or sign-extended, as the kernel
//! and libtirpc write them); nesting at most [`MAX_DEPTH`] and at most
//! [`MAX_PAIRS`] pairs. (The kernel's own XDR, spl-xdr.c, also refuses
//! non-zero padding, NULs in strings and bytes over 0xff.) Names
//! and strings must be UTF-8 ([`NvListError::NotUtf8`]); `int8_array`,
//! `int16_array` and `uint16_array` values, which [`NvValue`] cannot hold,
//! are refused ([`NvListError::Unsupported`]). A duplicate name replaces
//! the earlier value in place, as [`NvList::insert`] does (libnvpair keeps
//! the last value too).
//!
//! Nothing is allocated before the input is known to hold it: an array of
//! N elements whose encoding takes at least s bytes each needs N·s bytes
//! left.

use zfs_sys::data_type_t as dt;

use super::{NvList, NvListError, NvValue, MAX_DEPTH, MAX_PAIRS};

const NV_ENCODE_XDR: u8 = 1;
const NV_VERSION: i32 = 0;
const NV_FLAGS_KNOWN: u32 = 0x1 | 0x2; // NV_UNIQUE_NAME | NV_UNIQUE_NAME_TYPE

/// `sizeof (nvs_header_t)`.
const STREAM_HEADER: usize = 4;
/// `sizeof (nvpair_t)`, the native pair header.
const NVPAIR_HEADER: u64 = 16;
/// `NV_ALIGN(sizeof (nvlist_t))`, a native embedded list.
const NVLIST_T: u64 = 24;
/// A native array's 8-byte pointer slot.
const PTR_SLOT: u64 = 8;
/// The smallest encoded nvlist: version, flags and the end mark.
const MIN_LIST: usize = 16;

/// Decodes an XDR-packed nvlist at the start of `bytes`: the list and the
/// bytes it took (what follows, such as a label's zero padding, is not
/// read).
pub(super) fn unpack(bytes: &[u8]) -> Result<(NvList, usize), NvListError> {
    let header = bytes
        .get(..STREAM_HEADER)
        .ok_or(malformed(0, "shorter than the 4-byte stream header"))?;
    match header {
        [NV_ENCODE_XDR, 0 | 1, 0, 0] => {}
        [NV_ENCODE_XDR, 0 | 1, ..] => return Err(malformed(2, "reserved header bytes not zero")),
        [NV_ENCODE_XDR, ..] => return Err(malformed(1, "unknown byte order in the header")),
        [0, ..] => return Err(malformed(0, "native encoding, not XDR")),
        _ => return Err(malformed(0, "unknown encoding")),
    }
    let mut r = Reader {
        bytes,
        pos: STREAM_HEADER,
        pairs: 0,
    };
    let list = r.list(0)?;
    Ok((list, r.pos))
}

fn malformed(offset: usize, reason: &'static str) -> NvListError {
    NvListError::Malformed { offset, reason }
}

/// `NV_ALIGN`, in u64 (the sizes compared are at most a few GiB).
fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Pairs and embedded lists decoded so far.
    pairs: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize, why: &'static str) -> Result<&'a [u8], NvListError> {
        let end = self.pos.checked_add(n).ok_or(malformed(self.pos, why))?;
        let b = self
            .bytes
            .get(self.pos..end)
            .ok_or(malformed(self.pos, why))?;
        self.pos = end;
        Ok(b)
    }

    fn u32(&mut self, why: &'static str) -> Result<u32, NvListError> {
        let b = self.take(4, why)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self, why: &'static str) -> Result<i32, NvListError> {
        self.u32(why).map(|v| v as i32)
    }

    fn u64(&mut self, why: &'static str) -> Result<u64, NvListError> {
        let hi = self.u32(why)?;
        let lo = self.u32(why)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// `xdr_opaque`: `n` bytes, then zero padding to a multiple of 4.
    fn opaque(&mut self, n: usize, why: &'static str) -> Result<&'a [u8], NvListError> {
        let at = self.pos;
        let padded = n.checked_add(3).ok_or(malformed(at, why))? & !3;
        let b = self.take(padded, why)?;
        if b[n..].iter().any(|&x| x != 0) {
            return Err(malformed(at + n, "padding not zero"));
        }
        Ok(&b[..n])
    }

    /// `xdr_string`: a length, the bytes (no NUL among them), padding.
    fn string(&mut self, why: &'static str) -> Result<String, NvListError> {
        let at = self.pos;
        let len = self.u32(why)?;
        let len = usize::try_from(len).map_err(|_| malformed(at, why))?;
        if len > self.left() {
            return Err(malformed(at, why));
        }
        let b = self.opaque(len, why)?;
        if let Some(i) = b.iter().position(|&x| x == 0) {
            return Err(malformed(at + 4 + i, "NUL inside a string"));
        }
        let s = std::str::from_utf8(b).map_err(|_| NvListError::NotUtf8 { offset: at })?;
        Ok(s.to_owned())
    }

    fn count(&mut self, at: usize) -> Result<(), NvListError> {
        self.pairs += 1;
        if self.pairs > MAX_PAIRS {
            return Err(malformed(at, "too many pairs"));
        }
        Ok(())
    }

    /// `nvs_xdr_nvlist` and `nvs_decode_pairs`: one list, up to its end
    /// mark. `depth` is 0 for the top-level list.
    fn list(&mut self, depth: usize) -> Result<NvList, NvListError> {
        let at = self.pos;
        let version = self.i32("truncated nvlist header")?;
        let flags = self.u32("truncated nvlist header")?;
        if version != NV_VERSION {
            return Err(malformed(at, "nvlist version is not 0"));
        }
        if flags & !NV_FLAGS_KNOWN != 0 {
            return Err(malformed(at + 4, "unknown nvlist flags"));
        }
        let mut list = NvList::new();
        loop {
            let at = self.pos;
            let encoded = self.u32("truncated: no pair or end mark")?;
            let decoded = self.i32("truncated: no pair or end mark")?;
            if decoded == 0 {
                if encoded != 0 {
                    return Err(malformed(at, "end mark with a nonzero encoded size"));
                }
                return Ok(list);
            }
            self.count(at)?;
            // nvs_decode_pairs: at least NVP_SIZE_CALC(1, 0).
            if decoded < 24 {
                return Err(malformed(at + 4, "decoded pair size below 24"));
            }
            let (name, value, native) = self.pair(depth)?;
            if native != decoded as u64 {
                return Err(malformed(
                    at + 4,
                    "decoded pair size does not match the pair",
                ));
            }
            list.insert(name, value);
        }
    }

    /// `nvs_xdr_nvp_op` after the two sizes: the name, type, nelem and
    /// value, and the pair's native size (`NVP_SIZE_CALC`).
    fn pair(&mut self, depth: usize) -> Result<(String, NvValue, u64), NvListError> {
        let name = self.string("truncated pair name")?;
        let type_at = self.pos;
        let ty = self.i32("truncated pair type")?;
        let nelem_at = self.pos;
        let nelem = self.i32("truncated element count")? as u32;
        if !valid_type_nelem(ty, nelem) {
            return Err(malformed(type_at, "bad type or element count"));
        }
        if let Some(type_name) = unsupported(ty) {
            return Err(NvListError::Unsupported {
                offset: type_at,
                type_name,
            });
        }
        let (value, size) = self.value(ty, nelem, nelem_at, depth)?;
        let native = align8(NVPAIR_HEADER + name.len() as u64 + 1) + align8(size);
        Ok((name, value, native))
    }

    /// The value of a pair of type `ty` with `nelem` elements (both
    /// checked by [`valid_type_nelem`]), and its native size
    /// (`i_get_value_size`).
    fn value(
        &mut self,
        ty: i32,
        nelem: u32,
        nelem_at: usize,
        depth: usize,
    ) -> Result<(NvValue, u64), NvListError> {
        let n = nelem as usize;
        let n64 = u64::from(nelem);
        if nelem == 0 {
            // No bytes follow: DATA_TYPE_BOOLEAN, or an empty array.
            let v = match ty {
                dt::DATA_TYPE_BOOLEAN => NvValue::Boolean,
                dt::DATA_TYPE_BOOLEAN_ARRAY => NvValue::BoolArray(Vec::new()),
                dt::DATA_TYPE_BYTE_ARRAY | dt::DATA_TYPE_UINT8_ARRAY => {
                    NvValue::ByteArray(Vec::new())
                }
                dt::DATA_TYPE_INT32_ARRAY => NvValue::I32Array(Vec::new()),
                dt::DATA_TYPE_UINT32_ARRAY => NvValue::U32Array(Vec::new()),
                dt::DATA_TYPE_INT64_ARRAY => NvValue::I64Array(Vec::new()),
                dt::DATA_TYPE_UINT64_ARRAY => NvValue::U64Array(Vec::new()),
                dt::DATA_TYPE_STRING_ARRAY => NvValue::StringArray(Vec::new()),
                dt::DATA_TYPE_NVLIST_ARRAY => NvValue::NvListArray(Vec::new()),
                _ => return Err(malformed(nelem_at, "bad type or element count")),
            };
            return Ok((v, 0));
        }
        const TRUNC: &str = "truncated value";
        Ok(match ty {
            dt::DATA_TYPE_BOOLEAN_VALUE => (NvValue::BoolValue(self.boolean()?), 4),
            dt::DATA_TYPE_BYTE => (NvValue::Byte(self.byte()?), 1),
            dt::DATA_TYPE_INT8 => (NvValue::I8(self.byte()? as i8), 1),
            dt::DATA_TYPE_UINT8 => (NvValue::U8(self.byte()?), 1),
            dt::DATA_TYPE_INT16 => (NvValue::I16(self.short(true)? as i16), 2),
            dt::DATA_TYPE_UINT16 => (NvValue::U16(self.short(false)?), 2),
            dt::DATA_TYPE_INT32 => (NvValue::I32(self.i32(TRUNC)?), 4),
            dt::DATA_TYPE_UINT32 => (NvValue::U32(self.u32(TRUNC)?), 4),
            dt::DATA_TYPE_INT64 => (NvValue::I64(self.u64(TRUNC)? as i64), 8),
            dt::DATA_TYPE_UINT64 => (NvValue::U64(self.u64(TRUNC)?), 8),
            dt::DATA_TYPE_HRTIME => (NvValue::HrTime(self.u64(TRUNC)? as i64), 8),
            dt::DATA_TYPE_DOUBLE => (NvValue::Double(f64::from_bits(self.u64(TRUNC)?)), 8),
            dt::DATA_TYPE_STRING => {
                let s = self.string(TRUNC)?;
                let size = s.len() as u64 + 1;
                (NvValue::String(s), size)
            }
            dt::DATA_TYPE_BYTE_ARRAY => {
                if n > self.left() {
                    return Err(malformed(nelem_at, "more elements than bytes left"));
                }
                (NvValue::ByteArray(self.opaque(n, TRUNC)?.to_vec()), n64)
            }
            dt::DATA_TYPE_UINT8_ARRAY => {
                self.array_count(nelem, nelem_at, 4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.byte()?);
                }
                (NvValue::ByteArray(v), n64)
            }
            dt::DATA_TYPE_BOOLEAN_ARRAY => {
                self.array_count(nelem, nelem_at, 4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.boolean()?);
                }
                (NvValue::BoolArray(v), n64 * 4)
            }
            dt::DATA_TYPE_INT32_ARRAY => {
                self.array_count(nelem, nelem_at, 4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.i32(TRUNC)?);
                }
                (NvValue::I32Array(v), n64 * 4)
            }
            dt::DATA_TYPE_UINT32_ARRAY => {
                self.array_count(nelem, nelem_at, 4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.u32(TRUNC)?);
                }
                (NvValue::U32Array(v), n64 * 4)
            }
            dt::DATA_TYPE_INT64_ARRAY => {
                self.array_count(nelem, nelem_at, 8)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.u64(TRUNC)? as i64);
                }
                (NvValue::I64Array(v), n64 * 8)
            }
            dt::DATA_TYPE_UINT64_ARRAY => {
                self.array_count(nelem, nelem_at, 8)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.u64(TRUNC)?);
                }
                (NvValue::U64Array(v), n64 * 8)
            }
            dt::DATA_TYPE_STRING_ARRAY => {
                // Each string takes at least its 4-byte length.
                if n > self.left() / 4 {
                    return Err(malformed(nelem_at, "more elements than bytes left"));
                }
                let mut v = Vec::with_capacity(n);
                let mut size = n64 * PTR_SLOT;
                for _ in 0..n {
                    let s = self.string(TRUNC)?;
                    size += s.len() as u64 + 1;
                    v.push(s);
                }
                (NvValue::StringArray(v), size)
            }
            dt::DATA_TYPE_NVLIST => (NvValue::NvList(self.embedded(depth)?), NVLIST_T),
            dt::DATA_TYPE_NVLIST_ARRAY => {
                if n > self.left() / MIN_LIST {
                    return Err(malformed(nelem_at, "more elements than bytes left"));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.embedded(depth)?);
                }
                (NvValue::NvListArray(v), n64 * (PTR_SLOT + NVLIST_T))
            }
            _ => return Err(malformed(nelem_at, "bad type or element count")),
        })
    }

    /// `nvs_embedded`: a list nested in one at `depth`.
    fn embedded(&mut self, depth: usize) -> Result<NvList, NvListError> {
        let at = self.pos;
        if depth >= MAX_DEPTH {
            return Err(malformed(at, "nvlists nested too deep"));
        }
        self.count(at)?;
        self.list(depth + 1)
    }

    /// `xdr_array`'s count, which must be nelem, and room for nelem items
    /// of `item` bytes each.
    fn array_count(&mut self, nelem: u32, nelem_at: usize, item: usize) -> Result<(), NvListError> {
        let at = self.pos;
        if self.u32("truncated array count")? != nelem {
            return Err(malformed(at, "array count is not the element count"));
        }
        if nelem as usize > self.left() / item {
            return Err(malformed(nelem_at, "more elements than bytes left"));
        }
        Ok(())
    }

    /// A `boolean_t` word: 0 or 1 (`i_validate_nvpair_value`).
    fn boolean(&mut self) -> Result<bool, NvListError> {
        let at = self.pos;
        match self.u32("truncated value")? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed(at, "boolean neither 0 nor 1")),
        }
    }

    /// `xdr_char`: the kernel writes the byte zero-extended, libtirpc
    /// sign-extended where `char` is signed.
    fn byte(&mut self) -> Result<u8, NvListError> {
        let at = self.pos;
        match self.u32("truncated value")? {
            w @ (0..=0xff | 0xffff_ff80..) => Ok(w as u8),
            _ => Err(malformed(at, "8-bit value out of range")),
        }
    }

    /// `xdr_short` (`signed`: zero- or sign-extended) or `xdr_u_short`.
    fn short(&mut self, signed: bool) -> Result<u16, NvListError> {
        let at = self.pos;
        match self.u32("truncated value")? {
            w @ 0..=0xffff => Ok(w as u16),
            w @ 0xffff_8000.. if signed => Ok(w as u16),
            _ => Err(malformed(at, "16-bit value out of range")),
        }
    }
}

/// `i_validate_type_nelem` (user space, where doubles exist).
fn valid_type_nelem(ty: i32, nelem: u32) -> bool {
    match ty {
        dt::DATA_TYPE_BOOLEAN => nelem == 0,
        dt::DATA_TYPE_BOOLEAN_VALUE
        | dt::DATA_TYPE_BYTE
        | dt::DATA_TYPE_INT8
        | dt::DATA_TYPE_UINT8
        | dt::DATA_TYPE_INT16
        | dt::DATA_TYPE_UINT16
        | dt::DATA_TYPE_INT32
        | dt::DATA_TYPE_UINT32
        | dt::DATA_TYPE_INT64
        | dt::DATA_TYPE_UINT64
        | dt::DATA_TYPE_STRING
        | dt::DATA_TYPE_HRTIME
        | dt::DATA_TYPE_NVLIST
        | dt::DATA_TYPE_DOUBLE => nelem == 1,
        dt::DATA_TYPE_BOOLEAN_ARRAY
        | dt::DATA_TYPE_BYTE_ARRAY
        | dt::DATA_TYPE_INT8_ARRAY
        | dt::DATA_TYPE_UINT8_ARRAY
        | dt::DATA_TYPE_INT16_ARRAY
        | dt::DATA_TYPE_UINT16_ARRAY
        | dt::DATA_TYPE_INT32_ARRAY
        | dt::DATA_TYPE_UINT32_ARRAY
        | dt::DATA_TYPE_INT64_ARRAY
        | dt::DATA_TYPE_UINT64_ARRAY
        | dt::DATA_TYPE_STRING_ARRAY
        | dt::DATA_TYPE_NVLIST_ARRAY => true,
        _ => false,
    }
}

/// The libnvpair types [`NvValue`] has no variant for.
fn unsupported(ty: i32) -> Option<&'static str> {
    match ty {
        dt::DATA_TYPE_INT8_ARRAY => Some("int8_array"),
        dt::DATA_TYPE_INT16_ARRAY => Some("int16_array"),
        dt::DATA_TYPE_UINT16_ARRAY => Some("uint16_array"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ffi::CNvList;

    fn refused(bytes: &[u8]) -> &'static str {
        match unpack(bytes) {
            Err(NvListError::Malformed { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn nested(depth: usize) -> NvList {
        let mut l = NvList::new().with("leaf", 1u64);
        for _ in 0..depth {
            l = NvList::new().with("child", l);
        }
        l
    }

    /// Every type NvValue holds, at the edges of their ranges.
    pub(crate) fn every_type() -> NvList {
        let inner = NvList::new().with("value", 7u64).with("source", "local");
        let mut l = NvList::new();
        l.insert_flag("flag");
        for (k, v) in [
            ("bool_value", NvValue::BoolValue(true)),
            ("bool_false", NvValue::BoolValue(false)),
            ("byte", NvValue::Byte(0xfe)),
            ("byte_low", NvValue::Byte(0x7f)),
            ("i8", NvValue::I8(-128)),
            ("i8_pos", NvValue::I8(127)),
            ("u8", NvValue::U8(255)),
            ("i16", NvValue::I16(-32768)),
            ("i16_pos", NvValue::I16(32767)),
            ("u16", NvValue::U16(65535)),
            ("i32", NvValue::I32(i32::MIN)),
            ("u32", NvValue::U32(u32::MAX)),
            ("i64", NvValue::I64(i64::MIN)),
            ("u64", NvValue::U64(u64::MAX)),
            ("double", NvValue::Double(-1.5e300)),
            ("hrtime", NvValue::HrTime(-123_456_789)),
            ("string", NvValue::String("a name with spaces".into())),
            ("unicode", NvValue::String("pöol ☃ 𝄞".into())),
            ("empty_string", NvValue::String(String::new())),
            ("seven", NvValue::String("1234567".into())),
            ("nvlist", NvValue::NvList(inner.clone())),
            ("empty_nvlist", NvValue::NvList(NvList::new())),
            ("bools", NvValue::BoolArray(vec![true, false, true])),
            ("no_bools", NvValue::BoolArray(vec![])),
            ("bytes", NvValue::ByteArray(vec![0, 1, 2, 0xff, 0])),
            ("no_bytes", NvValue::ByteArray(vec![])),
            ("i32s", NvValue::I32Array(vec![-1, 0, i32::MAX])),
            ("u32s", NvValue::U32Array(vec![1, 2, u32::MAX])),
            ("i64s", NvValue::I64Array(vec![i64::MIN, 0])),
            ("u64s", NvValue::U64Array(vec![1, 2, u64::MAX])),
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
            ("", NvValue::U64(1)), // an empty name
        ] {
            l.insert(k, v);
        }
        l.insert("deep", nested(5));
        l
    }

    fn xdr(l: &NvList) -> Vec<u8> {
        l.pack_xdr().unwrap()
    }

    /// libnvpair sizes its XDR buffer 4 bytes too large for each empty
    /// array other than `byte_array` (`nvs_xdr_nvp_size` counts a count
    /// word that `nvs_xdr_nvp_op` does not write): the zeros after the list.
    fn zero_tail(l: &NvList) -> Vec<u8> {
        fn count(l: &NvList) -> usize {
            l.iter()
                .map(|(_, v)| match v {
                    NvValue::NvList(l) => count(l),
                    NvValue::NvListArray(a) => a.iter().map(count).sum(),
                    NvValue::BoolArray(a) => usize::from(a.is_empty()),
                    NvValue::I32Array(a) => usize::from(a.is_empty()),
                    NvValue::U32Array(a) => usize::from(a.is_empty()),
                    NvValue::I64Array(a) => usize::from(a.is_empty()),
                    NvValue::U64Array(a) => usize::from(a.is_empty()),
                    _ => 0,
                })
                .sum()
        }
        vec![0; 4 * count(l)]
    }

    /// `l` with its pairs sorted by name, at every depth (libnvpair moves a
    /// replaced name to the end; `NvList::insert` keeps its place).
    fn sorted(l: &NvList) -> NvList {
        let mut pairs: Vec<_> = l.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = NvList::new();
        for (k, v) in pairs {
            let v = match v {
                NvValue::NvList(l) => NvValue::NvList(sorted(l)),
                NvValue::NvListArray(a) => NvValue::NvListArray(a.iter().map(sorted).collect()),
                other => other.clone(),
            };
            out.insert(k, v);
        }
        out
    }

    #[test]
    fn libnvpair_xdr_of_every_type_decodes_to_the_same_list() {
        for l in [NvList::new(), every_type(), nested(MAX_DEPTH)] {
            let packed = xdr(&l);
            assert_eq!(packed[..4], [1, 1, 0, 0], "XDR, little-endian writer");
            let (back, used) = NvList::unpack_xdr(&packed).unwrap();
            assert_eq!(back, l);
            assert_eq!(&packed[used..], zero_tail(&l), "{l}");
            // libnvpair reads its own bytes back to the same list too.
            let c = CNvList::unpack(&packed).unwrap().to_nvlist().unwrap();
            assert_eq!(c, l);
        }
    }

    #[test]
    fn bytes_after_the_list_are_not_read() {
        let l = every_type();
        let mut packed = xdr(&l);
        let len = packed.len() - zero_tail(&l).len();
        packed.truncate(len);
        packed.extend_from_slice(&[0xa5; 77]);
        assert_eq!(unpack(&packed).unwrap(), (l, len));
    }

    #[test]
    fn every_truncation_is_refused() {
        let packed = xdr(&every_type());
        let (_, used) = unpack(&packed).unwrap();
        for n in 0..used {
            assert!(unpack(&packed[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    /// Every single-byte change of a packed list: no panic, and whatever the
    /// decoder accepts libnvpair accepts too, with the same pairs.
    #[test]
    fn byte_changes_the_decoder_accepts_libnvpair_reads_the_same() {
        let packed = xdr(&every_type());
        assert_eq!(
            packed.as_ptr() as usize % 4,
            0,
            "libnvpair needs 4-byte alignment"
        );
        let (mut accepted, mut both_refuse, mut only_libnvpair) = (0, 0, 0);
        for at in 0..packed.len() {
            for v in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff] {
                let mut b = packed.clone();
                if b[at] == v {
                    continue;
                }
                b[at] = v;
                let ours = unpack(&b);
                // libnvpair reads XDR safely (bounds-checked xdrmem), so it
                // may see the refused ones too.
                let theirs = CNvList::unpack(&b).and_then(|c| c.to_nvlist());
                match (ours, theirs) {
                    (Ok((l, _)), Ok(c)) => {
                        accepted += 1;
                        assert_eq!(sorted(&l), sorted(&c), "byte {at} = {v:#x}");
                    }
                    (Ok(_), Err(e)) => panic!("byte {at} = {v:#x}: libnvpair refuses ({e:?})"),
                    (Err(_), Ok(_)) => only_libnvpair += 1,
                    (Err(_), Err(_)) => both_refuse += 1,
                }
            }
        }
        println!("accepted {accepted}, libnvpair only {only_libnvpair}, both refuse {both_refuse}");
        assert!(accepted > 0 && both_refuse > 0);
    }

    // Hand-built streams, to reach each check on its own.

    #[derive(Default)]
    struct W(Vec<u8>);

    impl W {
        fn stream() -> W {
            let mut w = W(vec![1, 1, 0, 0]);
            w.u32(0).u32(1); // version 0, NV_UNIQUE_NAME
            w
        }
        fn u32(&mut self, v: u32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            while self.0.len() % 4 != 0 {
                self.0.push(0);
            }
            self
        }
        fn str(&mut self, s: &[u8]) -> &mut Self {
            self.u32(s.len() as u32).bytes(s)
        }
        /// A pair whose value is `value` (already encoded) with native
        /// value size `size`.
        fn pair(&mut self, name: &[u8], ty: i32, nelem: i32, value: &[u8], size: u64) -> &mut Self {
            let native = align8(17 + name.len() as u64) + align8(size);
            let at = self.0.len();
            self.u32(0).u32(native as u32).str(name);
            self.u32(ty as u32).u32(nelem as u32);
            self.0.extend_from_slice(value);
            let encoded = (self.0.len() - at) as u32;
            self.0[at..at + 4].copy_from_slice(&encoded.to_be_bytes());
            self
        }
        fn end(&mut self) -> Vec<u8> {
            self.u32(0).u32(0);
            std::mem::take(&mut self.0)
        }
    }

    fn be(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    fn one(ty: i32, nelem: i32, value: &[u8], size: u64) -> Vec<u8> {
        W::stream().pair(b"n", ty, nelem, value, size).end()
    }

    #[test]
    fn a_hand_built_stream_matches_libnvpair() {
        let mut w = W::stream();
        w.pair(b"n", dt::DATA_TYPE_UINT64, 1, &be(&[1, 2]), 8);
        w.pair(
            b"s",
            dt::DATA_TYPE_STRING,
            1,
            &[0, 0, 0, 3, b'a', b'b', b'c', 0],
            4,
        );
        let s = w.end();
        let (l, used) = unpack(&s).unwrap();
        assert_eq!(used, s.len());
        assert_eq!(l.get_u64("n").unwrap(), 1 << 32 | 2);
        assert_eq!(l.get_str("s").unwrap(), "abc");
        assert_eq!(CNvList::unpack(&s).unwrap().to_nvlist().unwrap(), l);
        assert_eq!(xdr(&l), s, "libnvpair packs the same bytes");
    }

    #[test]
    fn small_integers_zero_or_sign_extended_are_read() {
        // The kernel zero-extends 8- and 16-bit values, libtirpc on x86
        // sign-extends them.
        for (ty, word, want) in [
            (dt::DATA_TYPE_UINT8, 0xff, NvValue::U8(255)),
            (dt::DATA_TYPE_UINT8, 0xffff_ffff, NvValue::U8(255)),
            (dt::DATA_TYPE_INT8, 0x80, NvValue::I8(-128)),
            (dt::DATA_TYPE_INT8, 0xffff_ff80, NvValue::I8(-128)),
            (dt::DATA_TYPE_BYTE, 0xffff_fffe, NvValue::Byte(0xfe)),
            (dt::DATA_TYPE_INT16, 0x8000, NvValue::I16(-32768)),
            (dt::DATA_TYPE_INT16, 0xffff_8000, NvValue::I16(-32768)),
            (dt::DATA_TYPE_UINT16, 0xffff, NvValue::U16(65535)),
        ] {
            let size = if matches!(want, NvValue::I16(_) | NvValue::U16(_)) {
                2
            } else {
                1
            };
            let (l, _) = unpack(&one(ty, 1, &be(&[word]), size)).unwrap();
            assert_eq!(l.get("n"), Some(&want), "{word:#x}");
        }
        for (ty, word) in [
            (dt::DATA_TYPE_UINT8, 0x100),
            (dt::DATA_TYPE_INT8, 0xffff_ff7f),
            (dt::DATA_TYPE_INT16, 0x1_0000),
            (dt::DATA_TYPE_INT16, 0xffff_7fff),
            (dt::DATA_TYPE_UINT16, 0xffff_8000),
        ] {
            let why = refused(&one(ty, 1, &be(&[word]), 2));
            assert!(why.ends_with("value out of range"), "{word:#x}: {why}");
        }
        // In a uint8_array too.
        let s = one(dt::DATA_TYPE_UINT8_ARRAY, 2, &be(&[2, 1, 0xffff_ffff]), 2);
        assert_eq!(unpack(&s).unwrap().0.get_bytes("n").unwrap(), [1, 255]);
        let s = one(dt::DATA_TYPE_UINT8_ARRAY, 2, &be(&[2, 1, 0x1ff]), 2);
        assert_eq!(refused(&s), "8-bit value out of range");
    }

    #[test]
    fn bad_headers_and_end_marks_are_refused() {
        let good = W::stream().end();
        assert_eq!(unpack(&good).unwrap().1, 20);
        let mut b = good.clone();
        b[0] = 0;
        assert_eq!(refused(&b), "native encoding, not XDR");
        b[0] = 2;
        assert_eq!(refused(&b), "unknown encoding");
        let mut b = good.clone();
        b[1] = 2;
        assert_eq!(refused(&b), "unknown byte order in the header");
        let mut b = good.clone();
        b[1] = 0; // a big-endian writer: the same XDR
        assert!(unpack(&b).is_ok());
        b[3] = 1;
        assert_eq!(refused(&b), "reserved header bytes not zero");
        let mut b = good.clone();
        b[7] = 1;
        assert_eq!(refused(&b), "nvlist version is not 0");
        let mut b = good.clone();
        b[11] = 4;
        assert_eq!(refused(&b), "unknown nvlist flags");
        let mut b = good.clone();
        b[15] = 8; // encoded size 8, decoded size 0
        assert_eq!(refused(&b), "end mark with a nonzero encoded size");
        assert_eq!(refused(&[]), "shorter than the 4-byte stream header");
        assert_eq!(refused(&good[..19]), "truncated: no pair or end mark");
        // The native encoding is NvList::unpack's, and it refuses XDR.
        assert!(NvList::unpack(&good).is_err());
    }

    #[test]
    fn bad_pair_sizes_names_and_types_are_refused() {
        let u64v = be(&[0, 7]);
        let good = one(dt::DATA_TYPE_UINT64, 1, &u64v, 8);
        assert!(unpack(&good).is_ok());
        // Decoded (native) size: 32 here; below 24, negative, or another.
        for (size, why) in [
            (16u32, "decoded pair size below 24"),
            (u32::MAX, "decoded pair size below 24"),
            (40, "decoded pair size does not match the pair"),
            (24, "decoded pair size does not match the pair"),
        ] {
            let mut b = good.clone();
            b[16..20].copy_from_slice(&size.to_be_bytes());
            assert_eq!(refused(&b), why, "{size}");
        }
        // The encoded size is not checked (libnvpair ignores it).
        let mut b = good.clone();
        b[12..16].copy_from_slice(&12345u32.to_be_bytes());
        assert!(unpack(&b).is_ok());
        // Names: a NUL inside, padding not zero, not UTF-8, too long.
        let s = W::stream()
            .pair(b"a\0b", dt::DATA_TYPE_UINT64, 1, &u64v, 8)
            .end();
        assert_eq!(refused(&s), "NUL inside a string");
        let mut b = good.clone();
        b[25] = 1; // the name "n" and 3 bytes of padding from 24
        assert_eq!(refused(&b), "padding not zero");
        let s = W::stream()
            .pair(b"\xff", dt::DATA_TYPE_UINT64, 1, &u64v, 8)
            .end();
        assert_eq!(unpack(&s), Err(NvListError::NotUtf8 { offset: 20 }));
        let mut b = good.clone();
        b[20..24].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(refused(&b), "truncated pair name");
        // Types and element counts (i_validate_type_nelem).
        assert_eq!(refused(&one(99, 1, &u64v, 8)), "bad type or element count");
        assert_eq!(refused(&one(0, 1, &u64v, 8)), "bad type or element count");
        assert_eq!(
            refused(&one(dt::DATA_TYPE_UINT64, 2, &be(&[0, 1, 0, 2]), 16)),
            "bad type or element count"
        );
        assert_eq!(
            refused(&one(dt::DATA_TYPE_UINT64, 0, &[], 0)),
            "bad type or element count"
        );
        assert_eq!(
            refused(&one(dt::DATA_TYPE_BOOLEAN, 1, &[], 0)),
            "bad type or element count"
        );
        // Types NvValue has no variant for.
        for (ty, name) in [
            (dt::DATA_TYPE_INT8_ARRAY, "int8_array"),
            (dt::DATA_TYPE_INT16_ARRAY, "int16_array"),
            (dt::DATA_TYPE_UINT16_ARRAY, "uint16_array"),
        ] {
            assert_eq!(
                unpack(&one(ty, 1, &be(&[1, 5]), 1)),
                Err(NvListError::Unsupported {
                    offset: 28,
                    type_name: name
                })
            );
        }
    }

    #[test]
    fn bad_values_are_refused() {
        let b = one(dt::DATA_TYPE_BOOLEAN_VALUE, 1, &be(&[2]), 4);
        assert_eq!(refused(&b), "boolean neither 0 nor 1");
        let b = one(dt::DATA_TYPE_BOOLEAN_ARRAY, 2, &be(&[2, 1, 7]), 8);
        assert_eq!(refused(&b), "boolean neither 0 nor 1");
        // An array count other than nelem.
        let b = one(dt::DATA_TYPE_UINT32_ARRAY, 2, &be(&[1, 5]), 8);
        assert_eq!(refused(&b), "array count is not the element count");
        let b = one(dt::DATA_TYPE_UINT32_ARRAY, 1, &be(&[2, 5, 6]), 4);
        assert_eq!(refused(&b), "array count is not the element count");
        // A string with a NUL inside, and one cut short.
        let b = one(dt::DATA_TYPE_STRING, 1, &[0, 0, 0, 2, b'a', 0, 0, 0], 3);
        assert_eq!(refused(&b), "NUL inside a string");
        let b = one(dt::DATA_TYPE_STRING, 1, &be(&[9]), 10);
        assert_eq!(refused(&b), "truncated value");
        let b = one(dt::DATA_TYPE_STRING, 1, &[0, 0, 0, 1, 0xc3, 0, 0, 0], 2);
        assert_eq!(unpack(&b), Err(NvListError::NotUtf8 { offset: 36 }));
        // A string array element that is not UTF-8.
        let b = one(
            dt::DATA_TYPE_STRING_ARRAY,
            1,
            &[0, 0, 0, 1, 0xc3, 0, 0, 0],
            10,
        );
        assert!(matches!(unpack(&b), Err(NvListError::NotUtf8 { .. })));
    }

    /// Element counts far beyond the input are refused before anything of
    /// their size is allocated.
    #[test]
    fn huge_element_counts_are_refused_before_allocating() {
        let n = 0x7fff_fff0u32;
        for (ty, value) in [
            (dt::DATA_TYPE_UINT64_ARRAY, be(&[n, 0, 0])),
            (dt::DATA_TYPE_UINT32_ARRAY, be(&[n, 0])),
            (dt::DATA_TYPE_BOOLEAN_ARRAY, be(&[n, 0])),
            (dt::DATA_TYPE_UINT8_ARRAY, be(&[n, 0])),
            (dt::DATA_TYPE_BYTE_ARRAY, be(&[0, 0])),
            (dt::DATA_TYPE_STRING_ARRAY, be(&[0, 0])),
            (dt::DATA_TYPE_NVLIST_ARRAY, be(&[0, 0, 0, 0])),
        ] {
            let b = one(ty, n as i32, &value, 8);
            assert_eq!(refused(&b), "more elements than bytes left", "type {ty}");
            // nelem = -1 (u32::MAX) too.
            let b = one(ty, -1, &value, 8);
            assert!(unpack(&b).is_err(), "type {ty}");
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        // libnvpair (user space: 100 levels) packs it.
        let packed = xdr(&nested(MAX_DEPTH + 1));
        assert_eq!(refused(&packed), "nvlists nested too deep");
        // An nvlist_array element counts as a level too.
        let mut l = NvList::new().with("leaf", 1u64);
        for _ in 0..=MAX_DEPTH {
            l = NvList::new().with("children", vec![NvList::new(), l]);
        }
        assert_eq!(refused(&xdr(&l)), "nvlists nested too deep");
    }

    #[test]
    fn more_pairs_than_the_limit_are_refused() {
        // MAX_PAIRS + 1 booleans with the empty name (20 bytes each); the
        // list keeps one, as each replaces the last.
        let mut w = W::stream();
        let pair = {
            let mut p = W::default();
            p.pair(b"", dt::DATA_TYPE_BOOLEAN, 0, &[], 0);
            p.0
        };
        assert_eq!(pair.len(), 20);
        w.0.reserve(pair.len() * (MAX_PAIRS + 1) + 8);
        for _ in 0..MAX_PAIRS {
            w.0.extend_from_slice(&pair);
        }
        let mut at_limit = w.0.clone();
        at_limit.extend_from_slice(&[0; 8]);
        let (l, _) = unpack(&at_limit).unwrap();
        assert_eq!(l.len(), 1);
        drop(at_limit);
        w.0.extend_from_slice(&pair);
        assert_eq!(refused(&w.end()), "too many pairs");
    }

    #[test]
    fn duplicate_names_keep_the_last_value_in_the_first_place() {
        let mut w = W::stream();
        w.pair(b"a", dt::DATA_TYPE_UINT64, 1, &be(&[0, 1]), 8);
        w.pair(b"b", dt::DATA_TYPE_UINT64, 1, &be(&[0, 2]), 8);
        w.pair(
            b"a",
            dt::DATA_TYPE_STRING,
            1,
            &[0, 0, 0, 1, b'x', 0, 0, 0],
            2,
        );
        let s = w.end();
        let (l, _) = unpack(&s).unwrap();
        assert_eq!(l.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(l.get_str("a").unwrap(), "x");
        // libnvpair keeps the last value too (at the end of its list).
        let c = CNvList::unpack(&s).unwrap().to_nvlist().unwrap();
        assert_eq!(sorted(&c), sorted(&l));
    }

    #[test]
    fn a_nan_double_keeps_its_bits() {
        let bits = 0x7ff8_0000_dead_beef;
        let l = NvList::new().with("d", NvValue::Double(f64::from_bits(bits)));
        match unpack(&xdr(&l)).unwrap().0.get("d") {
            Some(NvValue::Double(d)) => assert_eq!(d.to_bits(), bits),
            other => panic!("{other:?}"),
        }
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9_.:@/-]{0,10}", "\\PC{0,6}"]
    }

    fn leaf() -> impl Strategy<Value = NvValue> {
        let text = "\\PC{0,12}";
        let double = prop_oneof![
            prop::num::f64::NORMAL,
            prop::num::f64::SUBNORMAL,
            prop::num::f64::ZERO,
            prop::num::f64::INFINITE,
        ];
        prop_oneof![
            Just(NvValue::Boolean),
            any::<bool>().prop_map(NvValue::BoolValue),
            any::<u8>().prop_map(NvValue::Byte),
            any::<i8>().prop_map(NvValue::I8),
            any::<u8>().prop_map(NvValue::U8),
            any::<i16>().prop_map(NvValue::I16),
            any::<u16>().prop_map(NvValue::U16),
            any::<i32>().prop_map(NvValue::I32),
            any::<u32>().prop_map(NvValue::U32),
            any::<i64>().prop_map(NvValue::I64),
            any::<u64>().prop_map(NvValue::U64),
            double.prop_map(NvValue::Double),
            any::<i64>().prop_map(NvValue::HrTime),
            text.prop_map(NvValue::String),
            prop::collection::vec(any::<bool>(), 0..6).prop_map(NvValue::BoolArray),
            prop::collection::vec(any::<u8>(), 0..11).prop_map(NvValue::ByteArray),
            prop::collection::vec(any::<i32>(), 0..6).prop_map(NvValue::I32Array),
            prop::collection::vec(any::<u32>(), 0..6).prop_map(NvValue::U32Array),
            prop::collection::vec(any::<i64>(), 0..6).prop_map(NvValue::I64Array),
            prop::collection::vec(any::<u64>(), 0..6).prop_map(NvValue::U64Array),
            prop::collection::vec(text, 0..5).prop_map(NvValue::StringArray),
        ]
    }

    /// Random lists of every type NvValue holds, nested up to 4 levels.
    pub(crate) fn any_nvlist() -> impl Strategy<Value = NvList> {
        let pairs = |v: BoxedStrategy<NvValue>| {
            prop::collection::vec((key(), v), 0..8).prop_map(|pairs| {
                let mut l = NvList::new();
                for (k, v) in pairs {
                    l.insert(k, v);
                }
                l
            })
        };
        let value = leaf().prop_recursive(4, 48, 8, move |inner| {
            let list = pairs(inner.boxed()).boxed();
            prop_oneof![
                list.clone().prop_map(NvValue::NvList),
                prop::collection::vec(list, 0..3).prop_map(NvValue::NvListArray),
            ]
        });
        pairs(value.boxed())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// libnvpair's XDR packing of random lists decodes to the same list
        /// and takes the whole buffer; every proper prefix is refused.
        #[test]
        fn random_lists_packed_by_libnvpair_decode_the_same(l in any_nvlist()) {
            let packed = xdr(&l);
            let (back, used) = unpack(&packed).unwrap();
            prop_assert_eq!(&back, &l);
            prop_assert_eq!(&packed[used..], &zero_tail(&l)[..]);
            for n in (0..used).step_by(3) {
                prop_assert!(unpack(&packed[..n]).is_err());
            }
        }

        /// Arbitrary bytes after a valid header: an error or a list, never a
        /// panic; what decodes, libnvpair reads the same.
        #[test]
        fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut b = vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            b.extend_from_slice(&body);
            if let Ok((l, used)) = unpack(&b) {
                let c = CNvList::unpack(&b[..used]).and_then(|c| c.to_nvlist()).unwrap();
                prop_assert_eq!(sorted(&l), sorted(&c));
            }
        }
    }
}
