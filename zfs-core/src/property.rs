//! Setting and inheriting dataset properties.
//!
//! `zfs set` checks names and turns words into numbers in libzfs, which this
//! crate does not use; the kernel takes `readonly` as the number 1, never the
//! word `on`, and checks little itself (not the dataset type, nor whether a
//! property is read-only). So this module knows the properties it lets you
//! set, and refuses the rest before anything reaches the kernel:
//!
//! - user properties (`module:name`, any string value);
//! - the native properties in [`SETTABLE`], with the values `zfs set` takes
//!   (`on`/`off`, `noauto`, `lz4`, `zstd-3`, `10G`, `none`, …).
//!
//! Encryption and key properties, set-once properties (`casesensitivity`,
//! `volblocksize`, …), `volsize` and the rest are refused with
//! [`ErrorKind::NotSupported`] (or [`ErrorKind::InvalidArgument`] when
//! read-only): typed, and nothing changed.
//!
//! ```no_run
//! use zfs_core::property::PropertyList;
//! use zfs_core::Zfs;
//!
//! let zfs = Zfs::open()?;
//! let backup = "pipe/backups/laptop".parse()?;
//! let props = PropertyList::new()
//!     .set("readonly", "on")?
//!     .set("compression", "zstd-3")?
//!     .set("backup:job", "offsite")?;
//! zfs.set_properties(&backup, props.nvlist())?;
//! zfs.inherit_property(&backup, "compression", false)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::CString;

use crate::dataset::DatasetType;
use crate::error::{Error, ErrorKind, Result};
use crate::ffi::IoctlCmd;
use crate::name::DatasetName;
use crate::nvlist::{NvList, NvValue};
use crate::Zfs;

/// Longest user property name the kernel stores (`ZAP_MAXNAMELEN` - 1).
pub const MAX_USER_NAME: usize = 255;
/// Longest property value the kernel stores (`ZAP_MAXVALUELEN` - 1).
pub const MAX_VALUE: usize = 8191;

const SET_PROP: &str = "ZFS_IOC_SET_PROP";
const INHERIT_PROP: &str = "ZFS_IOC_INHERIT_PROP";
/// Room for the kernel's list of failed properties (name → errno).
const ERRLIST_CAPACITY: usize = 64 << 10;

/// Which dataset types a property applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Filesystem,
    Volume,
    Both,
}

impl Applies {
    fn includes(self, t: DatasetType) -> bool {
        matches!(
            (self, t),
            (Applies::Both, DatasetType::Filesystem | DatasetType::Volume)
                | (Applies::Filesystem, DatasetType::Filesystem)
                | (Applies::Volume, DatasetType::Volume)
        )
    }
}

/// How a native property's value is written and sent.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// A word from the table, sent as its number.
    Index(&'static [(&'static str, u64)]),
    /// `compression`: a word (or `gzip-N`, `zstd-N`), sent as its number.
    Compression,
    /// Bytes (`10G`, `512K`, a plain number); `none` is `none_as`.
    Size { none_as: u64 },
    /// A count; `none` is `none_as`.
    Count { none_as: u64 },
    /// A power of two from 512 bytes to 16 MiB (the module may allow less).
    BlockSize,
    /// An absolute path, `none` or `legacy`.
    Mountpoint,
    /// Free text (share options).
    Text,
}

const BOOLEAN: &[(&str, u64)] = &[("off", 0), ("on", 1)];
const CANMOUNT: &[(&str, u64)] = &[("off", 0), ("on", 1), ("noauto", 2)];
const COPIES: &[(&str, u64)] = &[("1", 1), ("2", 2), ("3", 3)];
const SYNC: &[(&str, u64)] = &[("standard", 0), ("always", 1), ("disabled", 2)];
const LOGBIAS: &[(&str, u64)] = &[("latency", 0), ("throughput", 1)];
const CACHE: &[(&str, u64)] = &[("none", 0), ("metadata", 1), ("all", 2)];
const HIDDEN_VISIBLE: &[(&str, u64)] = &[("hidden", 0), ("visible", 1)];
const VOLMODE: &[(&str, u64)] = &[
    ("default", 0),
    ("full", 1),
    ("geom", 1),
    ("dev", 2),
    ("none", 3),
];

/// A native property this crate sets: its name, its values, what it
/// applies to and whether a child inherits it.
#[derive(Debug, Clone, Copy)]
pub struct Settable {
    pub name: &'static str,
    value: Value,
    pub applies: Applies,
    pub inheritable: bool,
}

impl Settable {
    /// Whether a dataset of type `t` has this property.
    pub fn applies_to(&self, t: DatasetType) -> bool {
        self.applies.includes(t)
    }
}

const fn prop(name: &'static str, value: Value, applies: Applies, inheritable: bool) -> Settable {
    Settable {
        name,
        value,
        applies,
        inheritable,
    }
}

/// The native properties [`PropertyList::set`] and [`Zfs::set_properties`]
/// accept, as registered in OpenZFS 2.1–2.4 (`zfs_prop.c`). The VM tests set
/// each value here and compare with `zfs get`.
pub const SETTABLE: &[Settable] = {
    use Applies::{Both, Filesystem};
    use Value::*;
    &[
        prop("atime", Index(BOOLEAN), Filesystem, true),
        prop("relatime", Index(BOOLEAN), Filesystem, true),
        prop("devices", Index(BOOLEAN), Filesystem, true),
        prop("exec", Index(BOOLEAN), Filesystem, true),
        prop("setuid", Index(BOOLEAN), Filesystem, true),
        prop("readonly", Index(BOOLEAN), Both, true),
        prop("canmount", Index(CANMOUNT), Filesystem, false),
        prop("mountpoint", Mountpoint, Filesystem, true),
        prop("compression", Compression, Both, true),
        prop("copies", Index(COPIES), Both, true),
        prop("sync", Index(SYNC), Both, true),
        prop("logbias", Index(LOGBIAS), Both, true),
        prop("primarycache", Index(CACHE), Both, true),
        prop("secondarycache", Index(CACHE), Both, true),
        prop("snapdir", Index(HIDDEN_VISIBLE), Filesystem, true),
        prop("snapdev", Index(HIDDEN_VISIBLE), Both, true),
        prop("volmode", Index(VOLMODE), Both, true),
        prop("quota", Size { none_as: 0 }, Filesystem, false),
        prop("refquota", Size { none_as: 0 }, Filesystem, false),
        prop("reservation", Size { none_as: 0 }, Both, false),
        prop("refreservation", Size { none_as: 0 }, Both, false),
        prop("recordsize", BlockSize, Filesystem, true),
        prop(
            "filesystem_limit",
            Count { none_as: u64::MAX },
            Filesystem,
            false,
        ),
        prop("snapshot_limit", Count { none_as: u64::MAX }, Both, false),
        prop("sharenfs", Text, Filesystem, true),
        prop("sharesmb", Text, Filesystem, true),
    ]
};

/// Native properties that can never be set: statistics and identities.
const READ_ONLY: &[&str] = &[
    "available",
    "compressratio",
    "createtxg",
    "creation",
    "guid",
    "logicalreferenced",
    "logicalused",
    "mounted",
    "objsetid",
    "origin",
    "receive_resume_token",
    "redact_snaps",
    "refcompressratio",
    "referenced",
    "snapshots_changed",
    "type",
    "used",
    "usedbychildren",
    "usedbydataset",
    "usedbyrefreservation",
    "usedbysnapshots",
    "userrefs",
    "written",
    "clones",
    "defer_destroy",
    "encryptionroot",
    "keystatus",
    "filesystem_count",
    "snapshot_count",
];

/// The settable native property `name`, if this crate knows it.
pub fn settable(name: &str) -> Option<&'static Settable> {
    SETTABLE.iter().find(|p| p.name == name)
}

/// Whether a dataset of type `on` has the property `name`: a user
/// property always, a native one by its table entry (one this crate does
/// not know: assumed so).
pub fn applies(name: &str, on: DatasetType) -> bool {
    settable(name).is_none_or(|p| p.applies_to(on))
}

/// Whether `name` is a user property name (it has a `:`).
pub fn is_user_property(name: &str) -> bool {
    name.contains(':')
}

/// Checks a user property name: `[a-z0-9:._-]`, a `:`, not starting with
/// `-`, at most [`MAX_USER_NAME`] bytes.
pub fn check_user_name(name: &str) -> std::result::Result<(), String> {
    if !name.contains(':') {
        return Err("a user property needs a ':' (module:name)".into());
    }
    if name.starts_with('-') {
        return Err("a user property cannot start with '-'".into());
    }
    if name.len() > MAX_USER_NAME {
        return Err(format!(
            "{} bytes; a user property name has at most {MAX_USER_NAME}",
            name.len()
        ));
    }
    match name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | ':' | '.' | '_' | '-'))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed in a user property (a-z, 0-9, ':', '.', '_', '-')"
        )),
        None => Ok(()),
    }
}

fn refuse(op: &'static str, name: &str, kind: ErrorKind, reason: impl Into<String>) -> Error {
    Error::invalid(op, name, kind, reason)
}

/// Why the native property `name` cannot be set here.
fn not_settable(op: &'static str, name: &str) -> Error {
    if READ_ONLY.contains(&name) {
        refuse(op, name, ErrorKind::InvalidArgument, "a read-only property")
    } else {
        refuse(
            op,
            name,
            ErrorKind::NotSupported,
            "not a property this library sets (user properties need a ':')",
        )
    }
}

/// `name=value` as `zfs set` takes it, checked and encoded as the kernel
/// wants it: the property's name and its typed value.
pub fn encode(name: &str, value: &str) -> Result<(String, NvValue)> {
    encode_for(SET_PROP, name, value)
}

pub(crate) fn encode_for(op: &'static str, name: &str, value: &str) -> Result<(String, NvValue)> {
    let bad = |reason: String| refuse(op, name, ErrorKind::InvalidArgument, reason);
    if value.len() > MAX_VALUE {
        return Err(bad(format!(
            "a value of {} bytes; at most {MAX_VALUE}",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(bad("a value with a NUL byte".into()));
    }
    if is_user_property(name) {
        check_user_name(name).map_err(bad)?;
        return Ok((name.to_owned(), NvValue::String(value.to_owned())));
    }
    let p = settable(name).ok_or_else(|| not_settable(op, name))?;
    let encoded = match p.value {
        Value::Index(table) => NvValue::U64(index(table, value).ok_or_else(|| {
            let words: Vec<&str> = table.iter().map(|(w, _)| *w).collect();
            bad(format!("{value:?}: expected {}", words.join(" | ")))
        })?),
        Value::Compression => NvValue::U64(compression(value).ok_or_else(|| {
            bad(format!(
                "{value:?}: expected on | off | lzjb | gzip | gzip-[1-9] | zle | lz4 | zstd | zstd-[1-19]"
            ))
        })?),
        Value::Size { none_as } => NvValue::U64(if value == "none" {
            none_as
        } else {
            size(value).ok_or_else(|| bad(format!("{value:?}: expected a size such as 10G, or none")))?
        }),
        Value::Count { none_as } => NvValue::U64(if value == "none" {
            none_as
        } else {
            value
                .parse()
                .map_err(|_| bad(format!("{value:?}: expected a count, or none")))?
        }),
        Value::BlockSize => {
            let n = size(value)
                .filter(|n| n.is_power_of_two() && (512..=16 << 20).contains(n))
                .ok_or_else(|| bad(format!("{value:?}: expected a power of 2, 512 to 16M")))?;
            NvValue::U64(n)
        }
        Value::Mountpoint => {
            mountpoint(value).map_err(bad)?;
            NvValue::String(value.to_owned())
        }
        Value::Text => NvValue::String(value.to_owned()),
    };
    Ok((p.name.to_owned(), encoded))
}

fn index(table: &[(&str, u64)], value: &str) -> Option<u64> {
    table.iter().find(|(w, _)| *w == value).map(|(_, n)| *n)
}

/// `compression`'s number: the `zio_compress` value, with a zstd level in
/// the bits above the 7 of the algorithm.
fn compression(value: &str) -> Option<u64> {
    const ZSTD: u64 = 16;
    let fixed = [
        ("on", 1),
        ("off", 2),
        ("lzjb", 3),
        ("gzip", 10),
        ("zle", 14),
        ("lz4", 15),
        ("zstd", ZSTD),
    ];
    if let Some(n) = index(&fixed, value) {
        return Some(n);
    }
    if let Some(level) = value.strip_prefix("gzip-") {
        let level: u64 = level.parse().ok().filter(|l| (1..=9).contains(l))?;
        return Some(4 + level); // gzip-1 is 5
    }
    let level: u64 = value
        .strip_prefix("zstd-")?
        .parse()
        .ok()
        .filter(|l| (1..=19).contains(l))?;
    Some(ZSTD | level << 7)
}

/// Bytes from `123`, `10G`, `1.5T`, `512K`, `64KiB` (powers of 1024).
pub(crate) fn size(value: &str) -> Option<u64> {
    let digits = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let unit = unit.to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        "E" => 60,
        _ => return None,
    };
    if number.is_empty() {
        return None;
    }
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(1 << shift);
    }
    // A fraction: `1.5G`, exact to the byte when it can be.
    let f: f64 = number.parse().ok()?;
    let bytes = f * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn mountpoint(value: &str) -> std::result::Result<(), String> {
    if value == "none" || value == "legacy" {
        return Ok(());
    }
    if !value.starts_with('/') {
        return Err(format!(
            "{value:?}: a mountpoint is an absolute path, none or legacy"
        ));
    }
    if let Some(long) = value.split('/').find(|c| c.len() > 255) {
        return Err(format!("a path component of {} bytes", long.len()));
    }
    Ok(())
}

/// Checks an encoded property against the dataset type it is for.
pub(crate) fn check_encoded(
    op: &'static str,
    name: &str,
    value: &NvValue,
    on: DatasetType,
) -> Result<()> {
    let bad = |kind, reason: String| refuse(op, name, kind, reason);
    if is_user_property(name) {
        check_user_name(name).map_err(|r| bad(ErrorKind::InvalidArgument, r))?;
        return match value {
            NvValue::String(s) if s.len() <= MAX_VALUE => Ok(()),
            NvValue::String(s) => Err(bad(
                ErrorKind::InvalidArgument,
                format!("a value of {} bytes; at most {MAX_VALUE}", s.len()),
            )),
            other => Err(bad(
                ErrorKind::InvalidArgument,
                format!("a user property is a string, not {}", other.type_name()),
            )),
        };
    }
    let p = settable(name).ok_or_else(|| not_settable(op, name))?;
    if !p.applies.includes(on) {
        return Err(bad(
            ErrorKind::InvalidArgument,
            format!("does not apply to a {}", type_word(on)),
        ));
    }
    let want_string = matches!(p.value, Value::Mountpoint | Value::Text);
    match value {
        NvValue::U64(_) if !want_string => Ok(()),
        NvValue::String(s) if want_string => match p.value {
            Value::Mountpoint => mountpoint(s).map_err(|r| bad(ErrorKind::InvalidArgument, r)),
            _ => Ok(()),
        },
        other => Err(bad(
            ErrorKind::InvalidArgument,
            format!(
                "takes a {}, not {} (encode it with property::encode)",
                if want_string { "string" } else { "uint64" },
                other.type_name()
            ),
        )),
    }
}

fn type_word(t: DatasetType) -> &'static str {
    match t {
        DatasetType::Filesystem => "filesystem",
        DatasetType::Volume => "volume",
        DatasetType::Snapshot => "snapshot",
        DatasetType::Bookmark => "bookmark",
    }
}

/// Properties to set, each checked and encoded as it is added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropertyList {
    nv: NvList,
}

impl PropertyList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name=value`, written as for `zfs set` (see [`encode`]).
    pub fn set(mut self, name: &str, value: &str) -> Result<Self> {
        let (name, value) = encode(name, value)?;
        self.nv.insert(name, value);
        Ok(self)
    }

    /// The encoded list, for [`Zfs::set_properties`] or
    /// [`ReceiveOptions`](crate::ReceiveOptions).
    pub fn nvlist(&self) -> &NvList {
        &self.nv
    }

    pub fn into_nvlist(self) -> NvList {
        self.nv
    }

    pub fn is_empty(&self) -> bool {
        self.nv.is_empty()
    }
}

impl Zfs {
    /// Sets properties on a filesystem or volume (`ZFS_IOC_SET_PROP`, what
    /// `zfs set` does), as local values. Each entry is checked first (a
    /// user property, or one of [`SETTABLE`] with the type the kernel
    /// takes and applying to this dataset's type: build the list with
    /// [`PropertyList`]); a bad entry fails the call before anything is set.
    ///
    /// The kernel sets what it can: when some fail, the error is
    /// [`Error::Batch`] naming each failed property with its errno, and the
    /// others are set. Nothing is mounted or unmounted: a new `mountpoint`
    /// applies at the next mount.
    pub fn set_properties(&self, dataset: &DatasetName, props: &NvList) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let on = self.dataset(dataset)?.dataset_type();
        for (name, value) in props.iter() {
            check_encoded(SET_PROP, name, value, on)?;
        }
        let mut zc = IoctlCmd::new(dataset.as_str());
        zc.set_src(props.pack()?);
        zc.set_dst_capacity(ERRLIST_CAPACITY);
        match zc.ioctl(self.dev(), zfs_sys::ioctl::ZFS_IOC_SET_PROP) {
            Ok(()) => Ok(()),
            Err(errno) => {
                // The list of failures, unless it did not fit (the kernel
                // then says the size it needed): never asked again, as
                // the others are set already.
                let failed = zc
                    .dst_reply()
                    .filter(|_| zc.dst_size() <= ERRLIST_CAPACITY as u64)
                    .and_then(|packed| NvList::unpack(packed).ok())
                    .filter(|l| !l.is_empty());
                Err(match failed {
                    Some(list) => Error::from_batch(SET_PROP, errno, Some(list)),
                    None => Error::from_errno(SET_PROP, dataset.as_str(), errno),
                })
            }
        }
    }

    /// Removes the local value of `property` so that it is inherited again
    /// (`ZFS_IOC_INHERIT_PROP`, what `zfs inherit` does); with `received`,
    /// the received value (if any) applies again instead (`zfs inherit
    /// -S`). A property that cannot be inherited (`canmount`, `quota`, …)
    /// is refused unless `received`. Inheriting a user property that was
    /// never set is not an error.
    pub fn inherit_property(
        &self,
        dataset: &DatasetName,
        property: &str,
        received: bool,
    ) -> Result<()> {
        let bad = |kind, reason: String| refuse(INHERIT_PROP, property, kind, reason);
        if is_user_property(property) {
            check_user_name(property).map_err(|r| bad(ErrorKind::InvalidArgument, r))?;
        } else {
            let p = settable(property).ok_or_else(|| not_settable(INHERIT_PROP, property))?;
            if !p.inheritable && !received {
                return Err(bad(
                    ErrorKind::InvalidArgument,
                    "cannot be inherited (only its received value restored, with received)".into(),
                ));
            }
            let on = self.dataset(dataset)?.dataset_type();
            if !p.applies.includes(on) {
                return Err(bad(
                    ErrorKind::InvalidArgument,
                    format!("does not apply to a {}", type_word(on)),
                ));
            }
        }
        let value = CString::new(property)
            .map_err(|_| bad(ErrorKind::InvalidName, "a NUL byte in the name".into()))?;
        let mut zc = IoctlCmd::new(dataset.as_str());
        zc.set_value(value.as_bytes());
        zc.set_cookie(u64::from(received));
        zc.ioctl(self.dev(), zfs_sys::ioctl::ZFS_IOC_INHERIT_PROP)
            .map_err(|e| Error::from_errno(INHERIT_PROP, dataset.as_str(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_the_kernels_numbers() {
        assert_eq!(encode("readonly", "on").unwrap().1, NvValue::U64(1));
        assert_eq!(encode("canmount", "noauto").unwrap().1, NvValue::U64(2));
        assert_eq!(encode("compression", "lz4").unwrap().1, NvValue::U64(15));
        assert_eq!(encode("compression", "gzip").unwrap().1, NvValue::U64(10));
        assert_eq!(encode("compression", "gzip-1").unwrap().1, NvValue::U64(5));
        assert_eq!(encode("compression", "gzip-9").unwrap().1, NvValue::U64(13));
        assert_eq!(
            encode("compression", "zstd-3").unwrap().1,
            NvValue::U64(400)
        );
        assert_eq!(
            encode("compression", "zstd-19").unwrap().1,
            NvValue::U64(2448)
        );
        assert_eq!(encode("volmode", "geom").unwrap().1, NvValue::U64(1));
        assert_eq!(encode("quota", "none").unwrap().1, NvValue::U64(0));
        assert_eq!(
            encode("snapshot_limit", "none").unwrap().1,
            NvValue::U64(u64::MAX)
        );
        assert_eq!(encode("quota", "10G").unwrap().1, NvValue::U64(10 << 30));
        assert_eq!(encode("recordsize", "1M").unwrap().1, NvValue::U64(1 << 20));
        assert_eq!(
            encode("mountpoint", "/mnt/backup").unwrap().1,
            NvValue::String("/mnt/backup".into())
        );
        assert_eq!(
            encode("backup:job", "offsite").unwrap(),
            ("backup:job".into(), NvValue::String("offsite".into()))
        );
    }

    #[test]
    fn sizes_read_like_zfs_set() {
        assert_eq!(size("512"), Some(512));
        assert_eq!(size("64K"), Some(64 << 10));
        assert_eq!(size("64k"), Some(64 << 10));
        assert_eq!(size("64KiB"), Some(64 << 10));
        assert_eq!(size("2GB"), Some(2 << 30));
        assert_eq!(size("1.5G"), Some(3 << 29));
        assert_eq!(size("16E"), None, "overflows");
        assert_eq!(size("G"), None);
        assert_eq!(size("10X"), None);
        assert_eq!(size("-1"), None);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let kind = |r: Result<(String, NvValue)>| r.unwrap_err().kind();
        assert_eq!(kind(encode("readonly", "yes")), ErrorKind::InvalidArgument);
        assert_eq!(
            kind(encode("compression", "zstd-20")),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(encode("compression", "gzip-0")),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(encode("recordsize", "1000")),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(encode("mountpoint", "relative")),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(encode("used", "1")), ErrorKind::InvalidArgument);
        assert_eq!(
            kind(encode("keylocation", "prompt")),
            ErrorKind::NotSupported
        );
        assert_eq!(kind(encode("Backup:Job", "x")), ErrorKind::InvalidArgument);
        assert_eq!(kind(encode("-x:y", "x")), ErrorKind::InvalidArgument);
        let long = format!("a:{}", "b".repeat(MAX_USER_NAME));
        assert_eq!(kind(encode(&long, "x")), ErrorKind::InvalidArgument);
        let big = "v".repeat(MAX_VALUE + 1);
        assert_eq!(kind(encode("a:b", &big)), ErrorKind::InvalidArgument);
        assert_eq!(kind(encode("a:b", "nul\0")), ErrorKind::InvalidArgument);
        let message = encode("readonly", "yes").unwrap_err().to_string();
        assert!(message.contains("off | on"), "{message}");
    }

    #[test]
    fn encoded_values_are_checked_against_the_dataset_type() {
        let fs = DatasetType::Filesystem;
        let vol = DatasetType::Volume;
        let ok = |n: &str, v: NvValue, t| check_encoded(SET_PROP, n, &v, t);
        assert!(ok("readonly", NvValue::U64(1), vol).is_ok());
        assert!(
            ok("atime", NvValue::U64(1), vol).is_err(),
            "a volume has no atime"
        );
        assert!(ok("mountpoint", NvValue::String("/x".into()), vol).is_err());
        assert!(ok("readonly", NvValue::String("on".into()), fs).is_err());
        assert!(ok("mountpoint", NvValue::U64(1), fs).is_err());
        assert!(ok("a:b", NvValue::U64(1), fs).is_err());
        assert!(ok("a:b", NvValue::String("x".into()), vol).is_ok());
    }

    #[test]
    fn every_settable_property_has_a_value_that_encodes() {
        for p in SETTABLE {
            let sample = match p.value {
                Value::Index(t) => t[0].0,
                Value::Compression => "lz4",
                Value::Size { .. } | Value::Count { .. } => "none",
                Value::BlockSize => "128K",
                Value::Mountpoint => "/mnt",
                Value::Text => "off",
            };
            encode(p.name, sample).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
    }
}
