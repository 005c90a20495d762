//! Name/value lists, the argument and result format of every ZFS interface.
//!
//! [`NvList`] is an owned Rust value that converts to and from libnvpair's
//! `nvlist_t` at the call boundary, so nothing here needs `unsafe` and no
//! lifetime ties a result to a C allocation. Nested lists are borrowed with
//! [`NvList::get_nvlist`]. Lists have unique names (`NV_UNIQUE_NAME`): adding a
//! key again replaces its value.
//!
//! ```
//! use zfs_core::nvlist::NvList;
//!
//! let mut props = NvList::new();
//! props.insert("com.example:owner", "backup job");
//! props.insert("recordsize", 1u64 << 20);
//! let packed = props.pack()?;
//! let back = NvList::unpack(&packed)?;
//! assert_eq!(back.get_str("com.example:owner")?, "backup job");
//! assert_eq!(back.get_u64("recordsize")?, 1 << 20);
//! assert!(back.get_u64("com.example:owner").is_err()); // wrong type: an error, not a panic
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use crate::error::{Errno, Error};
use crate::ffi::CNvList;

mod packed;
mod xdr;

pub use packed::{check_packed, MAX_DEPTH, MAX_PAIRS};

/// One value of an [`NvList`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NvValue {
    /// A bare name (`DATA_TYPE_BOOLEAN`): present or absent, no value.
    Boolean,
    BoolValue(bool),
    Byte(u8),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Double(f64),
    HrTime(i64),
    String(String),
    NvList(NvList),
    BoolArray(Vec<bool>),
    ByteArray(Vec<u8>),
    I32Array(Vec<i32>),
    U32Array(Vec<u32>),
    I64Array(Vec<i64>),
    U64Array(Vec<u64>),
    StringArray(Vec<String>),
    NvListArray(Vec<NvList>),
}

impl NvValue {
    /// The libnvpair type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            NvValue::Boolean => "boolean",
            NvValue::BoolValue(_) => "boolean_value",
            NvValue::Byte(_) => "byte",
            NvValue::I8(_) => "int8",
            NvValue::U8(_) => "uint8",
            NvValue::I16(_) => "int16",
            NvValue::U16(_) => "uint16",
            NvValue::I32(_) => "int32",
            NvValue::U32(_) => "uint32",
            NvValue::I64(_) => "int64",
            NvValue::U64(_) => "uint64",
            NvValue::Double(_) => "double",
            NvValue::HrTime(_) => "hrtime",
            NvValue::String(_) => "string",
            NvValue::NvList(_) => "nvlist",
            NvValue::BoolArray(_) => "boolean_array",
            NvValue::ByteArray(_) => "byte_array",
            NvValue::I32Array(_) => "int32_array",
            NvValue::U32Array(_) => "uint32_array",
            NvValue::I64Array(_) => "int64_array",
            NvValue::U64Array(_) => "uint64_array",
            NvValue::StringArray(_) => "string_array",
            NvValue::NvListArray(_) => "nvlist_array",
        }
    }
}

macro_rules! from_impl {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl From<$t> for NvValue {
            fn from(v: $t) -> Self {
                NvValue::$v(v.into())
            }
        })*
    };
}

from_impl! {
    bool => BoolValue,
    i32 => I32,
    u32 => U32,
    i64 => I64,
    u64 => U64,
    String => String,
    &str => String,
    NvList => NvList,
    Vec<String> => StringArray,
    Vec<u64> => U64Array,
    Vec<NvList> => NvListArray,
}

/// Why a typed read of an [`NvList`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NvListError {
    /// The key is absent.
    #[error("nvlist has no key {key:?}")]
    MissingKey { key: String },
    /// The key holds a value of another type.
    #[error("nvlist key {key:?} holds a {found}, expected a {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// Packed bytes that [`check_packed`] (before libnvpair sees them) or
    /// [`NvList::unpack_xdr`] refuses: `offset` is the byte at fault.
    #[error("malformed packed nvlist at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
    /// A packed value of a libnvpair type that [`NvValue`] cannot hold
    /// (`int8_array`, `int16_array`, `uint16_array`); `offset` is its type's.
    #[error("packed nvlist value of unsupported type {type_name} at byte {offset}")]
    Unsupported {
        offset: usize,
        type_name: &'static str,
    },
    /// A packed name or string that is not UTF-8; `offset` is its length's.
    #[error("packed nvlist string at byte {offset} is not UTF-8")]
    NotUtf8 { offset: usize },
}

/// An owned list of unique names and typed values, in insertion order.
///
/// Lookups, inserts and replacements take constant time (a hash index over
/// the ordered pairs), so lists of many thousand entries build and unpack in
/// linear time.
#[derive(Clone, Default)]
pub struct NvList {
    pairs: Vec<(String, NvValue)>,
    /// Key -> position in `pairs`.
    index: HashMap<String, usize>,
}

impl PartialEq for NvList {
    /// Same pairs in the same order (the index follows from them).
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl fmt::Debug for NvList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvList")
            .field("pairs", &self.pairs)
            .finish()
    }
}

macro_rules! getter {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $t:ty) => {
        $(#[$doc])*
        pub fn $name(&self, key: &str) -> Result<$t, NvListError> {
            match self.lookup(key)? {
                NvValue::$variant(v) => Ok(v.clone()),
                other => Err(wrong_type(key, stringify!($variant), other)),
            }
        }
    };
}

fn wrong_type(key: &str, expected: &'static str, found: &NvValue) -> NvListError {
    NvListError::WrongType {
        key: key.to_owned(),
        expected: expected_name(expected),
        found: found.type_name(),
    }
}

fn expected_name(variant: &'static str) -> &'static str {
    match variant {
        "U64" => "uint64",
        "I32" => "int32",
        "I64" => "int64",
        "U32" => "uint32",
        "BoolValue" => "boolean_value",
        "StringArray" => "string_array",
        "U64Array" => "uint64_array",
        "ByteArray" => "byte_array",
        other => other,
    }
}

impl NvList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `key`.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<NvValue>) -> &mut Self {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key).and_then(|&i| self.pairs.get_mut(i)) {
            Some(slot) => slot.1 = value,
            None => {
                self.index.insert(key.clone(), self.pairs.len());
                self.pairs.push((key, value));
            }
        }
        self
    }

    /// Adds a bare name (`DATA_TYPE_BOOLEAN`), as ZFS uses for sets of names.
    pub fn insert_flag(&mut self, key: impl Into<String>) -> &mut Self {
        self.insert(key, NvValue::Boolean)
    }

    /// Builder form of [`insert`](Self::insert).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<NvValue>) -> Self {
        self.insert(key, value);
        self
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<NvValue> {
        let i = self.index.remove(key)?;
        if i >= self.pairs.len() {
            return None;
        }
        let (_, value) = self.pairs.remove(i);
        // Later pairs moved down by one.
        for (k, _) in &self.pairs[i..] {
            if let Some(pos) = self.index.get_mut(k) {
                *pos = pos.saturating_sub(1);
            }
        }
        Some(value)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&NvValue> {
        let i = *self.index.get(key)?;
        self.pairs.get(i).map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &NvValue)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn lookup(&self, key: &str) -> Result<&NvValue, NvListError> {
        self.get(key).ok_or_else(|| NvListError::MissingKey {
            key: key.to_owned(),
        })
    }

    getter!(
        /// A `uint64` value.
        get_u64, U64, u64
    );
    getter!(
        /// An `int32` value.
        get_i32, I32, i32
    );
    getter!(
        /// An `int64` value.
        get_i64, I64, i64
    );
    getter!(
        /// A `uint32` value.
        get_u32, U32, u32
    );
    getter!(
        /// A `boolean_value`.
        get_bool, BoolValue, bool
    );
    getter!(
        /// A `string_array` value.
        get_string_array, StringArray, Vec<String>
    );
    getter!(
        /// A `uint64_array` value.
        get_u64_array, U64Array, Vec<u64>
    );
    getter!(
        /// A `byte_array` (or `uint8_array`) value.
        get_bytes, ByteArray, Vec<u8>
    );

    /// A `string` value, borrowed.
    pub fn get_str(&self, key: &str) -> Result<&str, NvListError> {
        match self.lookup(key)? {
            NvValue::String(s) => Ok(s),
            other => Err(wrong_type(key, "string", other)),
        }
    }

    /// A nested list, borrowed.
    pub fn get_nvlist(&self, key: &str) -> Result<&NvList, NvListError> {
        match self.lookup(key)? {
            NvValue::NvList(l) => Ok(l),
            other => Err(wrong_type(key, "nvlist", other)),
        }
    }

    /// An `nvlist_array` value, borrowed.
    pub fn get_nvlist_array(&self, key: &str) -> Result<&[NvList], NvListError> {
        match self.lookup(key)? {
            NvValue::NvListArray(l) => Ok(l),
            other => Err(wrong_type(key, "nvlist_array", other)),
        }
    }

    /// Packs the list in libnvpair's native encoding.
    pub fn pack(&self) -> Result<Vec<u8>, Error> {
        let c = CNvList::from_nvlist(self).map_err(|e| nv_error("nvlist_pack", e))?;
        c.pack().map_err(|e| nv_error("nvlist_pack", e))
    }

    /// Packs the list in libnvpair's XDR encoding (`NV_ENCODE_XDR`), the
    /// encoding of vdev labels.
    pub fn pack_xdr(&self) -> Result<Vec<u8>, Error> {
        let c = CNvList::from_nvlist(self).map_err(|e| nv_error("nvlist_pack", e))?;
        c.pack_xdr().map_err(|e| nv_error("nvlist_pack", e))
    }

    /// Decodes a list packed in libnvpair's XDR encoding, as vdev labels
    /// hold it, in safe Rust (libnvpair is not called). Returns the list and
    /// the bytes it took, up to and including its end mark; the bytes after
    /// it (a label's zero padding, say) are not read.
    ///
    /// Untrusted input is fine: every count is checked against the bytes
    /// left before anything is allocated, nesting is limited to
    /// [`MAX_DEPTH`] and pairs to [`MAX_PAIRS`], and what libnvpair's
    /// decoder would refuse is refused, plus some it would accept but never
    /// writes. Names and strings must be UTF-8. A duplicate name replaces
    /// the earlier value in place, as [`insert`](Self::insert) does.
    ///
    /// ```
    /// use zfs_core::nvlist::NvList;
    ///
    /// let label = NvList::new().with("name", "tank").with("txg", 4u64);
    /// let mut packed = label.pack_xdr()?;
    /// let len = packed.len();
    /// packed.resize(len + 100, 0); // padding after the list is ignored
    /// let (back, used) = NvList::unpack_xdr(&packed)?;
    /// assert_eq!((back, used), (label, len));
    /// # Ok::<(), zfs_core::Error>(())
    /// ```
    pub fn unpack_xdr(bytes: &[u8]) -> Result<(NvList, usize), NvListError> {
        xdr::unpack(bytes)
    }

    /// Unpacks a list packed by libnvpair in the native encoding of this
    /// host's byte order (what `nvlist_pack`, the kernel and resume tokens
    /// produce). The bytes are checked in Rust first ([`check_packed`]):
    /// anything libnvpair might read out of bounds, and XDR, is refused with
    /// an `EINVAL` error without reaching libnvpair.
    pub fn unpack(bytes: &[u8]) -> Result<NvList, Error> {
        check_packed(bytes).map_err(|_| nv_error("nvlist_unpack", Errno(libc::EINVAL)))?;
        let c = CNvList::unpack(bytes).map_err(|e| nv_error("nvlist_unpack", e))?;
        c.to_nvlist().map_err(|e| nv_error("nvlist_unpack", e))
    }
}

/// Largest packed list (de)serialized, in bytes. Kernel replies are far
/// smaller; property lists are a few KiB.
#[cfg(feature = "serde")]
pub const MAX_SERIALIZED_LEN: usize = 16 << 20;

/// The bytes of [`NvList::pack`].
#[cfg(feature = "serde")]
impl serde::Serialize for NvList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let packed = self.pack().map_err(S::Error::custom)?;
        if packed.len() > MAX_SERIALIZED_LEN {
            return Err(S::Error::custom(format_args!(
                "packed nvlist of {} bytes, more than the {MAX_SERIALIZED_LEN} allowed",
                packed.len()
            )));
        }
        serializer.serialize_bytes(&packed)
    }
}

/// Bytes, at most [`MAX_SERIALIZED_LEN`], read with [`NvList::unpack`]
/// (which checks them before libnvpair sees them).
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for NvList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(PackedVisitor)
    }
}

#[cfg(feature = "serde")]
struct PackedVisitor;

#[cfg(feature = "serde")]
impl<'de> serde::de::Visitor<'de> for PackedVisitor {
    type Value = NvList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a packed nvlist of at most {MAX_SERIALIZED_LEN} bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<NvList, E> {
        if v.len() > MAX_SERIALIZED_LEN {
            return Err(E::invalid_length(v.len(), &self));
        }
        NvList::unpack(v).map_err(E::custom)
    }

    /// For formats that write bytes as a sequence (JSON, for one).
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NvList, A::Error> {
        let hint = seq.size_hint().unwrap_or(0).min(64 << 10);
        let mut bytes = Vec::with_capacity(hint);
        while let Some(b) = seq.next_element::<u8>()? {
            if bytes.len() == MAX_SERIALIZED_LEN {
                return Err(serde::de::Error::invalid_length(bytes.len() + 1, &self));
            }
            bytes.push(b);
        }
        self.visit_bytes(&bytes)
    }
}

/// The `&'static str` type names of [`NvValue::type_name`] (and of
/// [`NvListError::WrongType`]), for decoding.
#[cfg(feature = "serde")]
pub(crate) fn static_type_name(name: &str) -> Option<&'static str> {
    const TYPE_NAMES: [&str; 23] = [
        "boolean",
        "boolean_value",
        "byte",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "double",
        "hrtime",
        "string",
        "nvlist",
        "boolean_array",
        "byte_array",
        "int32_array",
        "uint32_array",
        "int64_array",
        "uint64_array",
        "string_array",
        "nvlist_array",
    ];
    TYPE_NAMES.iter().copied().find(|n| *n == name)
}

fn nv_error(operation: &'static str, errno: Errno) -> Error {
    Error::from_errno(operation, "", errno)
}

impl fmt::Display for NvList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k:?}: ")?;
            match v {
                NvValue::String(s) => write!(f, "{s:?}")?,
                NvValue::NvList(l) => write!(f, "{l}")?,
                NvValue::Boolean => f.write_str("true")?,
                other => write!(f, "{other:?}")?,
            }
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NvList {
        let mut inner = NvList::new();
        inner.insert("value", 7u64).insert("source", "local");
        let mut l = NvList::new();
        l.insert("u64", u64::MAX)
            .insert("i32", -5i32)
            .insert("b", true)
            .insert("s", "a name with spaces")
            .insert_flag("flag")
            .insert("nested", inner.clone())
            .insert("strings", vec!["x".to_string(), "y".to_string()])
            .insert("u64s", vec![1u64, 2, 3])
            .insert("lists", vec![inner.clone(), inner]);
        l
    }

    #[test]
    fn pack_unpack_round_trips_every_supported_shape() {
        let l = sample();
        let back = NvList::unpack(&l.pack().unwrap()).unwrap();
        assert_eq!(back, l);
        assert_eq!(
            back.get_nvlist("nested").unwrap().get_u64("value").unwrap(),
            7
        );
        assert_eq!(back.get_nvlist_array("lists").unwrap().len(), 2);
    }

    #[test]
    fn typed_accessors_report_shape_errors() {
        let l = sample();
        assert_eq!(
            l.get_u64("s"),
            Err(NvListError::WrongType {
                key: "s".into(),
                expected: "uint64",
                found: "string"
            })
        );
        assert!(matches!(
            l.get_str("missing"),
            Err(NvListError::MissingKey { .. })
        ));
        assert!(l.get_nvlist("u64").is_err());
        assert!(l.contains_key("flag"));
    }

    #[test]
    fn insert_replaces_existing_key() {
        let mut l = NvList::new();
        l.insert("k", 1u64).insert("k", 2u64);
        assert_eq!(l.len(), 1);
        assert_eq!(l.get_u64("k").unwrap(), 2);
    }

    #[test]
    fn remove_keeps_order_and_lookups() {
        let mut l = NvList::new();
        l.insert("a", 1u64).insert("b", 2u64).insert("c", 3u64);
        assert_eq!(l.remove("a"), Some(NvValue::U64(1)));
        assert_eq!(l.remove("a"), None);
        assert_eq!(l.get_u64("c").unwrap(), 3);
        l.insert("b", 20u64).insert("a", 10u64);
        assert_eq!(l.keys().collect::<Vec<_>>(), ["b", "c", "a"]);
        assert_eq!(l.get_u64("b").unwrap(), 20);
        assert_eq!(l.get_u64("a").unwrap(), 10);
    }

    #[test]
    fn unpack_rejects_garbage() {
        assert!(NvList::unpack(b"").is_err());
        assert!(NvList::unpack(&[0xff; 64]).is_err());
        let mut packed = sample().pack().unwrap();
        packed.truncate(packed.len() / 2);
        assert!(NvList::unpack(&packed).is_err());
    }

    /// 60k entries (the size of a pool config or an errlist with many
    /// snapshots): building and unpacking stay linear. Prints the times with
    /// `--nocapture`; no timed assertion.
    #[test]
    fn sixty_thousand_entries_build_and_unpack() {
        const N: usize = 60_000;
        let started = std::time::Instant::now();
        let mut l = NvList::new();
        for i in 0..N {
            l.insert(format!("pool/fs@snap{i}"), i as u64);
        }
        let built = started.elapsed();
        let packed = l.pack().unwrap();
        let started = std::time::Instant::now();
        let back = NvList::unpack(&packed).unwrap();
        let unpacked = started.elapsed();
        println!("nvlist {N} entries: build {built:?}, unpack {unpacked:?}");
        assert_eq!(back.len(), N);
        assert_eq!(back.get_u64("pool/fs@snap59999").unwrap(), 59_999);
        assert_eq!(back.keys().nth(1), Some("pool/fs@snap1"), "order kept");
        assert_eq!(back, l);
    }

    #[test]
    fn interior_nul_is_an_error_not_a_panic() {
        let mut l = NvList::new();
        l.insert("bad\0key", 1u64);
        assert!(l.pack().is_err());
    }
}
