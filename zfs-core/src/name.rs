//! Validated ZFS names.
//!
//! [`PoolName`], [`DatasetName`], [`SnapshotName`] and [`BookmarkName`] can
//! only hold names that follow the rules OpenZFS enforces (see
//! `module/zcommon/zfs_namecheck.c` and `zpool_name_valid` in libzfs), so the
//! rest of the crate can hand them to the kernel without checking again:
//!
//! - a name is at most 255 bytes long (`ZFS_MAX_DATASET_NAME_LEN` is 256,
//!   counting the NUL), and a pool name at most 239 bytes;
//! - dataset components are separated by `/`, and none is empty, `.` or `..`;
//! - components contain only ASCII letters, digits, space and `_ - . :`;
//! - a snapshot name is `dataset@snap` and a bookmark name `dataset#mark`,
//!   with exactly one `@` (or `#`) and a non-empty part after it;
//! - the pool name (the first component) starts with a letter and is not
//!   reserved: it neither starts with `mirror`, `raidz`, `draid` or `spare`
//!   nor is `log`.
//!
//! ```rust
//! use zfs_core::name::{DatasetName, SnapshotName};
//!
//! let home: DatasetName = "tank/home".parse()?;
//! let snap = home.snapshot("2024-01-01")?;
//! assert_eq!(snap.as_str(), "tank/home@2024-01-01");
//! assert_eq!(snap.short_name(), "2024-01-01");
//! assert_eq!(snap.dataset(), home);
//! assert_eq!(SnapshotName::new("tank/home@2024-01-01")?, snap);
//! assert_eq!(home.pool().as_str(), "tank");
//!
//! let err = DatasetName::new("tank//home").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"invalid dataset name "tank//home": empty component at byte 5"#,
//! );
//! # Ok::<(), zfs_core::name::NameError>(())
//! ```

use std::ffi::CString;
use std::fmt;
use std::str::FromStr;

/// Longest name in bytes: `ZFS_MAX_DATASET_NAME_LEN` (256) less the NUL.
const MAX_NAME_LEN: usize = 255;

/// Longest pool name in bytes. `pool_namecheck` keeps room for the
/// `pool/$ORIGIN@$ORIGIN` snapshot: 256 - 2 - 2 * strlen("$ORIGIN"), less the NUL.
const MAX_POOL_NAME_LEN: usize = 239;

/// Pool name prefixes reserved for vdev types (`zpool_name_valid` in libzfs).
const RESERVED_POOL_PREFIXES: [&str; 4] = ["mirror", "raidz", "draid", "spare"];

/// Pool names reserved exactly (`zpool_name_valid` in libzfs).
const RESERVED_POOL_NAMES: [&str; 1] = ["log"];

/// Which kind of name failed to validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum NameKind {
    /// A [`PoolName`].
    Pool,
    /// A [`DatasetName`].
    Dataset,
    /// A [`SnapshotName`].
    Snapshot,
    /// A [`BookmarkName`].
    Bookmark,
}

impl NameKind {
    /// The delimiter this kind of name must contain once, if any.
    fn delimiter(self) -> Option<char> {
        match self {
            NameKind::Pool | NameKind::Dataset => None,
            NameKind::Snapshot => Some('@'),
            NameKind::Bookmark => Some('#'),
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Pool => "pool",
            NameKind::Dataset => "dataset",
            NameKind::Snapshot => "snapshot",
            NameKind::Bookmark => "bookmark",
        })
    }
}

/// Why a name is invalid. Offsets are byte offsets into the whole name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameErrorReason {
    /// The name is empty.
    Empty,
    /// The name is `len` bytes long, more than `max`.
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// Largest length allowed in bytes.
        max: usize,
    },
    /// The character `ch` at byte `offset` is not allowed there.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Byte offset of `ch`.
        offset: usize,
    },
    /// The component starting at byte `offset` is empty (a leading,
    /// trailing or doubled `/`, or nothing before `@`/`#`).
    EmptyComponent {
        /// Byte offset where the empty component starts.
        offset: usize,
    },
    /// The component starting at byte `offset` is `.` or `..`.
    DotComponent {
        /// Byte offset where the component starts.
        offset: usize,
    },
    /// A snapshot name lacks its `@`, or a bookmark name its `#`.
    MissingDelimiter {
        /// The delimiter expected: `@` or `#`.
        delimiter: char,
    },
    /// A second `@` or `#` appears at byte `offset`.
    MultipleDelimiters {
        /// The second delimiter found.
        delimiter: char,
        /// Byte offset of the second delimiter.
        offset: usize,
    },
    /// An `@` or `#` appears in a name of a kind that has none (e.g. `#` in a
    /// snapshot name, `@` in a dataset name).
    UnexpectedDelimiter {
        /// The delimiter found.
        delimiter: char,
        /// Byte offset of the delimiter.
        offset: usize,
    },
    /// Nothing follows the `@` or `#`.
    EmptyShortName,
    /// The pool name does not start with an ASCII letter.
    PoolNameStart,
    /// The pool name is reserved for a vdev type.
    ReservedPoolName,
    /// The pool name (first component) is `len` bytes long, more than `max`.
    PoolNameTooLong {
        /// Length of the pool name in bytes.
        len: usize,
        /// Largest length allowed in bytes.
        max: usize,
    },
}

impl fmt::Display for NameErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameErrorReason::Empty => f.write_str("the name is empty"),
            NameErrorReason::TooLong { len, max } => {
                write!(f, "the name is {len} bytes long; at most {max} are allowed")
            }
            NameErrorReason::InvalidChar { ch, offset } => write!(
                f,
                "character {ch:?} at byte {offset} is not allowed \
                 (allowed: ASCII letters, digits, space and _ - . :)"
            ),
            NameErrorReason::EmptyComponent { offset } => {
                write!(f, "empty component at byte {offset}")
            }
            NameErrorReason::DotComponent { offset } => write!(
                f,
                "component at byte {offset} is \".\" or \"..\", which are reserved"
            ),
            NameErrorReason::MissingDelimiter { delimiter } => {
                write!(f, "missing the {delimiter:?} delimiter")
            }
            NameErrorReason::MultipleDelimiters { delimiter, offset } => write!(
                f,
                "second delimiter {delimiter:?} at byte {offset} \
                 (a name holds at most one '@' or '#')"
            ),
            NameErrorReason::UnexpectedDelimiter { delimiter, offset } => write!(
                f,
                "delimiter {delimiter:?} at byte {offset} is not allowed in this kind of name"
            ),
            NameErrorReason::EmptyShortName => {
                f.write_str("nothing follows the '@' or '#' delimiter")
            }
            NameErrorReason::PoolNameStart => {
                f.write_str("the pool name must start with an ASCII letter")
            }
            NameErrorReason::ReservedPoolName => f.write_str(
                "the pool name is reserved (names starting with \"mirror\", \"raidz\", \
                 \"draid\" or \"spare\", and \"log\", are vdev types)",
            ),
            NameErrorReason::PoolNameTooLong { len, max } => write!(
                f,
                "the pool name is {len} bytes long; at most {max} are allowed"
            ),
        }
    }
}

/// A string that is not a valid name of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind_of_name} name {name:?}: {reason}")]
pub struct NameError {
    kind_of_name: NameKind,
    name: String,
    reason: NameErrorReason,
}

impl NameError {
    /// The kind of name that was being validated.
    pub fn kind_of_name(&self) -> NameKind {
        self.kind_of_name
    }

    /// The rejected name, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What is wrong with the name.
    pub fn reason(&self) -> &NameErrorReason {
        &self.reason
    }

    /// The error that validating `name` as a `kind` name gives, or `None`
    /// if it is valid: how a decoded name error is rebuilt.
    #[cfg(feature = "serde")]
    pub(crate) fn revalidate(kind_of_name: NameKind, name: String) -> Option<NameError> {
        validate(&name, kind_of_name).err().map(|reason| NameError {
            kind_of_name,
            name,
            reason,
        })
    }
}

/// Whether `ch` may appear inside a component.
fn is_allowed_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.' | ':' | ' ')
}

/// Checks the component `name[start..end]`, whose characters are already
/// known to be allowed; `is_pool` says it is the pool name.
fn check_component(
    name: &str,
    start: usize,
    end: usize,
    is_pool: bool,
) -> Result<(), NameErrorReason> {
    let component = name.get(start..end).unwrap_or("");
    if component.is_empty() {
        return Err(NameErrorReason::EmptyComponent { offset: start });
    }
    if is_pool {
        if component.len() > MAX_POOL_NAME_LEN {
            return Err(NameErrorReason::PoolNameTooLong {
                len: component.len(),
                max: MAX_POOL_NAME_LEN,
            });
        }
        if !component.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(NameErrorReason::PoolNameStart);
        }
        if RESERVED_POOL_PREFIXES
            .iter()
            .any(|prefix| component.starts_with(prefix))
            || RESERVED_POOL_NAMES.contains(&component)
        {
            return Err(NameErrorReason::ReservedPoolName);
        }
    } else if component == "." || component == ".." {
        return Err(NameErrorReason::DotComponent { offset: start });
    }
    Ok(())
}

/// Checks `name` against the rules for `kind`, reporting the first problem.
fn validate(name: &str, kind: NameKind) -> Result<(), NameErrorReason> {
    if name.is_empty() {
        return Err(NameErrorReason::Empty);
    }
    let max = match kind {
        NameKind::Pool => MAX_POOL_NAME_LEN,
        _ => MAX_NAME_LEN,
    };
    if name.len() > max {
        return Err(NameErrorReason::TooLong {
            len: name.len(),
            max,
        });
    }

    // Byte offset where the current component (or short name) starts.
    let mut start = 0;
    // Whether the current component is the first, i.e. the pool name.
    let mut in_pool = true;
    // Whether the '@' or '#' has been seen: we are in the short name.
    let mut in_short_name = false;
    for (offset, ch) in name.char_indices() {
        match ch {
            '/' if kind != NameKind::Pool && !in_short_name => {
                check_component(name, start, offset, in_pool)?;
                in_pool = false;
                start = offset + 1;
            }
            '@' | '#' => {
                if in_short_name {
                    return Err(NameErrorReason::MultipleDelimiters {
                        delimiter: ch,
                        offset,
                    });
                }
                if kind.delimiter() != Some(ch) {
                    return Err(NameErrorReason::UnexpectedDelimiter {
                        delimiter: ch,
                        offset,
                    });
                }
                check_component(name, start, offset, in_pool)?;
                in_short_name = true;
                start = offset + 1;
            }
            _ if is_allowed_char(ch) => {}
            _ => return Err(NameErrorReason::InvalidChar { ch, offset }),
        }
    }

    if in_short_name {
        match name.get(start..).unwrap_or("") {
            "" => Err(NameErrorReason::EmptyShortName),
            "." | ".." => Err(NameErrorReason::DotComponent { offset: start }),
            _ => Ok(()),
        }
    } else {
        check_component(name, start, name.len(), in_pool)?;
        match kind.delimiter() {
            Some(delimiter) => Err(NameErrorReason::MissingDelimiter { delimiter }),
            None => Ok(()),
        }
    }
}

/// Any validated name: pool, dataset (filesystem or volume), snapshot or
/// bookmark. Sealed: only this module's four name types implement it.
pub trait AnyName: sealed::Sealed {
    /// The name as a string slice.
    fn as_str(&self) -> &str;

    /// The name as a C string.
    #[doc(hidden)]
    fn to_c_name(&self) -> CString {
        c_name(self.as_str())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A C string of a validated name. Validation admits no NUL byte, so
/// `CString::new` cannot fail and the default (empty) string is never
/// returned.
pub(crate) fn c_name(name: &str) -> CString {
    CString::new(name.as_bytes()).unwrap_or_default()
}

/// Defines a validated name newtype and the impls all four kinds share.
macro_rules! name_type {
    ($(#[$meta:meta])* $ty:ident, $kind:expr, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            #[doc = concat!("Validates `name` as a ", $what, " name.")]
            ///
            /// # Errors
            ///
            /// Returns a [`NameError`] saying what is wrong, and where, if
            #[doc = concat!("`name` is not a valid ", $what, " name.")]
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                match validate(&name, $kind) {
                    Ok(()) => Ok(Self(name)),
                    Err(reason) => Err(NameError {
                        kind_of_name: $kind,
                        name,
                        reason,
                    }),
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the name into its `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl sealed::Sealed for $ty {}

        impl AnyName for $ty {
            fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// The name as a string.
        #[cfg(feature = "serde")]
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// A string, validated as [`new`](Self::new) does.
        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(NameVisitor(concat!("a valid ", $what, " name"), Self::new))
            }
        }
    };
}

/// Deserializes a string with a validating constructor.
#[cfg(feature = "serde")]
pub(crate) struct NameVisitor<T>(
    pub(crate) &'static str,
    pub(crate) fn(String) -> Result<T, NameError>,
);

#[cfg(feature = "serde")]
impl<T> serde::de::Visitor<'_> for NameVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v.to_owned()).map_err(E::custom)
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }
}

name_type!(
    /// A pool name, such as `tank`.
    PoolName,
    NameKind::Pool,
    "pool"
);

name_type!(
    /// A filesystem or volume name, such as `tank/home/my docs`.
    DatasetName,
    NameKind::Dataset,
    "dataset"
);

name_type!(
    /// A snapshot name, such as `tank/home@2024-01-01`.
    SnapshotName,
    NameKind::Snapshot,
    "snapshot"
);

name_type!(
    /// A bookmark name, such as `tank/home#base`.
    BookmarkName,
    NameKind::Bookmark,
    "bookmark"
);

impl PoolName {
    /// The pool's root filesystem, which has the same name.
    pub fn root(&self) -> DatasetName {
        // A valid pool name is a valid one-component dataset name.
        DatasetName(self.0.clone())
    }
}

impl DatasetName {
    /// The pool holding this dataset (the first component).
    pub fn pool(&self) -> PoolName {
        // Validation checked the first component against the pool rules.
        let pool = self.0.split('/').next().unwrap_or(&self.0);
        PoolName(pool.to_owned())
    }

    /// The parent dataset, or `None` for a pool's root filesystem.
    pub fn parent(&self) -> Option<DatasetName> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| DatasetName(parent.to_owned()))
    }

    /// Whether this is a pool's root filesystem (it has one component).
    pub fn is_root(&self) -> bool {
        !self.0.contains('/')
    }

    /// The child dataset `self/component`.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] if `component` is not a single valid
    /// component (it is empty, `.`, `..`, contains `/` or another disallowed
    /// character) or the child's name would be too long.
    pub fn child(&self, component: &str) -> Result<DatasetName, NameError> {
        let child = DatasetName::new(format!("{}/{component}", self.0))?;
        match component.find('/') {
            Some(pos) => Err(NameError {
                kind_of_name: NameKind::Dataset,
                reason: NameErrorReason::InvalidChar {
                    ch: '/',
                    offset: self.0.len() + 1 + pos,
                },
                name: child.0,
            }),
            None => Ok(child),
        }
    }

    /// The components, from the pool name down, e.g. `tank`, `home`.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.split('/')
    }

    /// How many levels below the pool's root filesystem this is (0 for the
    /// root itself).
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count()
    }

    /// The snapshot `self@snap`.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] if `snap` is not a valid snapshot short name
    /// or the snapshot's name would be too long.
    pub fn snapshot(&self, snap: &str) -> Result<SnapshotName, NameError> {
        SnapshotName::from_parts(self, snap)
    }

    /// The bookmark `self#mark`.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] if `mark` is not a valid bookmark short name
    /// or the bookmark's name would be too long.
    pub fn bookmark(&self, mark: &str) -> Result<BookmarkName, NameError> {
        BookmarkName::from_parts(self, mark)
    }

    /// Whether this dataset is strictly below `other` (`tank/a/b` is below
    /// `tank/a`; `tank/ab` and `tank/a` are not).
    pub fn is_descendant_of(&self, other: &DatasetName) -> bool {
        self.0
            .strip_prefix(other.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The path of this dataset below `ancestor`: `b/c` for `tank/a/b/c`
    /// relative to `tank/a`, `""` if both are equal, `None` if `ancestor`
    /// is neither this dataset nor one of its ancestors.
    pub fn relative_to(&self, ancestor: &DatasetName) -> Option<&str> {
        let rest = self.0.strip_prefix(ancestor.as_str())?;
        if rest.is_empty() {
            Some(rest)
        } else {
            rest.strip_prefix('/')
        }
    }
}

impl SnapshotName {
    /// The snapshot `dataset@snap`.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] if `snap` is not a valid snapshot short name
    /// or the snapshot's name would be too long.
    pub fn from_parts(dataset: &DatasetName, snap: &str) -> Result<Self, NameError> {
        Self::new(format!("{}@{snap}", dataset.0))
    }

    /// The snapshotted dataset (the part before `@`).
    pub fn dataset(&self) -> DatasetName {
        // Validation checked the part before '@' as a dataset name.
        let dataset = self.0.split_once('@').map_or(&*self.0, |(ds, _)| ds);
        DatasetName(dataset.to_owned())
    }

    /// The snapshot's own name (the part after `@`).
    pub fn short_name(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, snap)| snap)
    }

    /// The bookmark `mark` of this snapshot's dataset.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] if `mark` is not a valid bookmark short name
    /// or the bookmark's name would be too long.
    pub fn bookmark(&self, mark: &str) -> Result<BookmarkName, NameError> {
        BookmarkName::from_parts(&self.dataset(), mark)
    }
}

impl BookmarkName {
    /// The bookmark `dataset#mark`.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] if `mark` is not a valid bookmark short name
    /// or the bookmark's name would be too long.
    pub fn from_parts(dataset: &DatasetName, mark: &str) -> Result<Self, NameError> {
        Self::new(format!("{}#{mark}", dataset.0))
    }

    /// The bookmarked dataset (the part before `#`).
    pub fn dataset(&self) -> DatasetName {
        // Validation checked the part before '#' as a dataset name.
        let dataset = self.0.split_once('#').map_or(&*self.0, |(ds, _)| ds);
        DatasetName(dataset.to_owned())
    }

    /// The bookmark's own name (the part after `#`).
    pub fn short_name(&self) -> &str {
        self.0.split_once('#').map_or("", |(_, mark)| mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn reason<T: fmt::Debug>(result: Result<T, NameError>) -> NameErrorReason {
        result.unwrap_err().reason().clone()
    }

    fn ds(s: &str) -> DatasetName {
        DatasetName::new(s).unwrap()
    }

    // ----- valid names -----

    #[test]
    fn accepts_simple_names() {
        assert_eq!(PoolName::new("tank").unwrap().as_str(), "tank");
        assert_eq!(ds("tank").as_str(), "tank");
        assert_eq!(ds("tank/home/user").as_str(), "tank/home/user");
        assert_eq!(
            SnapshotName::new("tank/home@2024-01-01").unwrap().as_str(),
            "tank/home@2024-01-01"
        );
        assert_eq!(
            BookmarkName::new("tank/home#base").unwrap().as_str(),
            "tank/home#base"
        );
        assert!(SnapshotName::new("tank@root").is_ok());
        assert!(BookmarkName::new("tank#root").is_ok());
    }

    #[test]
    fn accepts_every_allowed_character() {
        let all = "Az09_-.: ";
        assert!(ds(&format!("tank/{all}")).as_str().ends_with(all));
        assert!(SnapshotName::new(format!("tank@{all}")).is_ok());
        assert!(BookmarkName::new(format!("tank#{all}")).is_ok());
        assert!(PoolName::new(format!("t{all}")).is_ok());
    }

    #[test]
    fn accepts_spaces() {
        let snap = SnapshotName::new("tank/my docs@snap 1").unwrap();
        assert_eq!(snap.dataset(), ds("tank/my docs"));
        assert_eq!(snap.short_name(), "snap 1");
        assert!(PoolName::new("my pool").is_ok());
        assert_eq!(ds("tank/ x ").components().last(), Some(" x "));
    }

    #[test]
    fn accepts_dots_that_are_not_dot_components() {
        assert!(DatasetName::new("tank/.hidden").is_ok());
        assert!(DatasetName::new("tank/...").is_ok());
        assert!(DatasetName::new("tank/a.").is_ok());
        assert!(SnapshotName::new("tank@...").is_ok());
        assert!(SnapshotName::new("tank@.a").is_ok());
    }

    // ----- empty and length -----

    #[test]
    fn rejects_empty_names() {
        assert_eq!(reason(PoolName::new("")), NameErrorReason::Empty);
        assert_eq!(reason(DatasetName::new("")), NameErrorReason::Empty);
        assert_eq!(reason(SnapshotName::new("")), NameErrorReason::Empty);
        assert_eq!(reason(BookmarkName::new("")), NameErrorReason::Empty);
    }

    #[test]
    fn dataset_length_limit_is_255_bytes() {
        let ok = format!("tank/{}", "a".repeat(250));
        assert_eq!(ok.len(), 255);
        assert!(DatasetName::new(ok.as_str()).is_ok());
        let long = format!("{ok}a");
        assert_eq!(
            reason(DatasetName::new(long)),
            NameErrorReason::TooLong { len: 256, max: 255 }
        );
    }

    #[test]
    fn snapshot_and_bookmark_length_limit_is_255_bytes() {
        let snap = format!("tank/fs@{}", "s".repeat(247));
        assert_eq!(snap.len(), 255);
        assert!(SnapshotName::new(snap.as_str()).is_ok());
        assert_eq!(
            reason(SnapshotName::new(format!("{snap}s"))),
            NameErrorReason::TooLong { len: 256, max: 255 }
        );
        let mark = snap.replace('@', "#");
        assert!(BookmarkName::new(mark.as_str()).is_ok());
        assert_eq!(
            reason(BookmarkName::new(format!("{mark}m"))),
            NameErrorReason::TooLong { len: 256, max: 255 }
        );
        // Building from parts hits the same limit.
        let fs = ds("tank/fs");
        assert!(fs.snapshot(&"s".repeat(247)).is_ok());
        assert_eq!(
            reason(fs.snapshot(&"s".repeat(248))),
            NameErrorReason::TooLong { len: 256, max: 255 }
        );
    }

    #[test]
    fn length_counts_bytes_not_chars() {
        // 128 two-byte chars: 256 bytes, too long before any char check.
        let s = "é".repeat(128);
        assert_eq!(
            reason(DatasetName::new(s)),
            NameErrorReason::TooLong { len: 256, max: 255 }
        );
    }

    #[test]
    fn pool_length_limit_is_239_bytes() {
        let ok = "p".repeat(239);
        assert!(PoolName::new(ok.as_str()).is_ok());
        assert!(DatasetName::new(format!("{ok}/a")).is_ok());
        assert_eq!(
            reason(PoolName::new(format!("{ok}p"))),
            NameErrorReason::TooLong { len: 240, max: 239 }
        );
        assert_eq!(
            reason(DatasetName::new(format!("{ok}p/a"))),
            NameErrorReason::PoolNameTooLong { len: 240, max: 239 }
        );
        assert_eq!(
            reason(SnapshotName::new(format!("{ok}p@s"))),
            NameErrorReason::PoolNameTooLong { len: 240, max: 239 }
        );
    }

    // ----- characters -----

    #[test]
    fn rejects_percent() {
        assert_eq!(
            reason(DatasetName::new("tank/%recv")),
            NameErrorReason::InvalidChar { ch: '%', offset: 5 }
        );
        assert_eq!(
            reason(SnapshotName::new("tank@%x")),
            NameErrorReason::InvalidChar { ch: '%', offset: 5 }
        );
        assert_eq!(
            reason(PoolName::new("ta%nk")),
            NameErrorReason::InvalidChar { ch: '%', offset: 2 }
        );
    }

    #[test]
    fn rejects_unicode_with_byte_offsets() {
        assert_eq!(
            reason(DatasetName::new("tank/é")),
            NameErrorReason::InvalidChar {
                ch: 'é', offset: 5
            }
        );
        assert_eq!(
            reason(DatasetName::new("tank/aé/b")),
            NameErrorReason::InvalidChar {
                ch: 'é', offset: 6
            }
        );
        assert_eq!(
            reason(PoolName::new("tänk")),
            NameErrorReason::InvalidChar {
                ch: 'ä', offset: 1
            }
        );
        assert_eq!(
            reason(SnapshotName::new("tank@🦀")),
            NameErrorReason::InvalidChar {
                ch: '🦀',
                offset: 5
            }
        );
        assert_eq!(
            reason(BookmarkName::new("tank#a\u{301}")),
            NameErrorReason::InvalidChar {
                ch: '\u{301}',
                offset: 6
            }
        );
    }

    #[test]
    fn rejects_control_characters_and_nul() {
        assert_eq!(
            reason(DatasetName::new("tank/a\0b")),
            NameErrorReason::InvalidChar {
                ch: '\0',
                offset: 6
            }
        );
        assert_eq!(
            reason(DatasetName::new("tank/a\tb")),
            NameErrorReason::InvalidChar {
                ch: '\t',
                offset: 6
            }
        );
        assert_eq!(
            reason(SnapshotName::new("tank@a\nb")),
            NameErrorReason::InvalidChar {
                ch: '\n',
                offset: 6
            }
        );
    }

    #[test]
    fn rejects_other_punctuation() {
        for ch in ['!', '$', '*', '+', ',', ';', '=', '?', '\\', '~', '\'', '"'] {
            assert_eq!(
                reason(DatasetName::new(format!("tank/a{ch}"))),
                NameErrorReason::InvalidChar { ch, offset: 6 },
                "{ch:?}"
            );
        }
    }

    // ----- slashes and components -----

    #[test]
    fn rejects_leading_trailing_and_double_slashes() {
        assert_eq!(
            reason(DatasetName::new("/tank")),
            NameErrorReason::EmptyComponent { offset: 0 }
        );
        assert_eq!(
            reason(DatasetName::new("tank/")),
            NameErrorReason::EmptyComponent { offset: 5 }
        );
        assert_eq!(
            reason(DatasetName::new("tank//a")),
            NameErrorReason::EmptyComponent { offset: 5 }
        );
        assert_eq!(
            reason(DatasetName::new("/")),
            NameErrorReason::EmptyComponent { offset: 0 }
        );
        assert_eq!(
            reason(SnapshotName::new("tank/@s")),
            NameErrorReason::EmptyComponent { offset: 5 }
        );
        assert_eq!(
            reason(SnapshotName::new("@s")),
            NameErrorReason::EmptyComponent { offset: 0 }
        );
        assert_eq!(
            reason(BookmarkName::new("#m")),
            NameErrorReason::EmptyComponent { offset: 0 }
        );
    }

    #[test]
    fn rejects_dot_components() {
        assert_eq!(
            reason(DatasetName::new("tank/.")),
            NameErrorReason::DotComponent { offset: 5 }
        );
        assert_eq!(
            reason(DatasetName::new("tank/../a")),
            NameErrorReason::DotComponent { offset: 5 }
        );
        assert_eq!(
            reason(DatasetName::new("tank/a/./b")),
            NameErrorReason::DotComponent { offset: 7 }
        );
        assert_eq!(
            reason(SnapshotName::new("tank/..@s")),
            NameErrorReason::DotComponent { offset: 5 }
        );
        assert_eq!(
            reason(SnapshotName::new("tank@.")),
            NameErrorReason::DotComponent { offset: 5 }
        );
        assert_eq!(
            reason(BookmarkName::new("tank#..")),
            NameErrorReason::DotComponent { offset: 5 }
        );
        // As the pool component, a dot is caught by the letter rule.
        assert_eq!(
            reason(DatasetName::new("./a")),
            NameErrorReason::PoolNameStart
        );
        assert_eq!(reason(PoolName::new("..")), NameErrorReason::PoolNameStart);
    }

    #[test]
    fn rejects_slash_in_pool_and_short_names() {
        assert_eq!(
            reason(PoolName::new("tank/a")),
            NameErrorReason::InvalidChar { ch: '/', offset: 4 }
        );
        assert_eq!(
            reason(SnapshotName::new("tank@a/b")),
            NameErrorReason::InvalidChar { ch: '/', offset: 6 }
        );
        assert_eq!(
            reason(BookmarkName::new("tank#m/")),
            NameErrorReason::InvalidChar { ch: '/', offset: 6 }
        );
    }

    // ----- delimiters -----

    #[test]
    fn rejects_delimiters_in_datasets_and_pools() {
        assert_eq!(
            reason(DatasetName::new("tank/a#b")),
            NameErrorReason::UnexpectedDelimiter {
                delimiter: '#',
                offset: 6
            }
        );
        assert_eq!(
            reason(DatasetName::new("tank@s")),
            NameErrorReason::UnexpectedDelimiter {
                delimiter: '@',
                offset: 4
            }
        );
        assert_eq!(
            reason(PoolName::new("tank@s")),
            NameErrorReason::UnexpectedDelimiter {
                delimiter: '@',
                offset: 4
            }
        );
        assert_eq!(
            reason(PoolName::new("tank#m")),
            NameErrorReason::UnexpectedDelimiter {
                delimiter: '#',
                offset: 4
            }
        );
    }

    #[test]
    fn rejects_the_other_kinds_delimiter() {
        assert_eq!(
            reason(SnapshotName::new("tank#m")),
            NameErrorReason::UnexpectedDelimiter {
                delimiter: '#',
                offset: 4
            }
        );
        assert_eq!(
            reason(BookmarkName::new("tank@s")),
            NameErrorReason::UnexpectedDelimiter {
                delimiter: '@',
                offset: 4
            }
        );
    }

    #[test]
    fn rejects_missing_delimiter() {
        assert_eq!(
            reason(SnapshotName::new("tank/a")),
            NameErrorReason::MissingDelimiter { delimiter: '@' }
        );
        assert_eq!(
            reason(BookmarkName::new("tank")),
            NameErrorReason::MissingDelimiter { delimiter: '#' }
        );
    }

    #[test]
    fn rejects_multiple_delimiters() {
        assert_eq!(
            reason(SnapshotName::new("tank@a@b")),
            NameErrorReason::MultipleDelimiters {
                delimiter: '@',
                offset: 6
            }
        );
        assert_eq!(
            reason(SnapshotName::new("tank@@")),
            NameErrorReason::MultipleDelimiters {
                delimiter: '@',
                offset: 5
            }
        );
        assert_eq!(
            reason(SnapshotName::new("tank@a#b")),
            NameErrorReason::MultipleDelimiters {
                delimiter: '#',
                offset: 6
            }
        );
        assert_eq!(
            reason(BookmarkName::new("tank#a#b")),
            NameErrorReason::MultipleDelimiters {
                delimiter: '#',
                offset: 6
            }
        );
    }

    #[test]
    fn rejects_empty_short_names() {
        assert_eq!(
            reason(SnapshotName::new("tank@")),
            NameErrorReason::EmptyShortName
        );
        assert_eq!(
            reason(BookmarkName::new("tank/a#")),
            NameErrorReason::EmptyShortName
        );
        assert_eq!(
            reason(ds("tank").snapshot("")),
            NameErrorReason::EmptyShortName
        );
    }

    #[test]
    fn rejects_snapshot_of_a_snapshot() {
        assert!(SnapshotName::new("tank/fs@a@b").is_err());
        let fs = ds("tank/fs");
        assert_eq!(
            reason(fs.snapshot("a@b")),
            NameErrorReason::MultipleDelimiters {
                delimiter: '@',
                offset: 9
            }
        );
        assert_eq!(
            reason(fs.bookmark("a#b")),
            NameErrorReason::MultipleDelimiters {
                delimiter: '#',
                offset: 9
            }
        );
        // The dataset of a snapshot has no '@', so snapshotting it again
        // names a sibling snapshot.
        let snap = fs.snapshot("a").unwrap();
        assert_eq!(snap.dataset().snapshot("b").unwrap().as_str(), "tank/fs@b");
    }

    // ----- pool names -----

    #[test]
    fn pool_name_starts_with_a_letter() {
        for name in ["1tank", "_tank", "-tank", " tank", ".tank", ":tank"] {
            assert_eq!(
                reason(PoolName::new(name)),
                NameErrorReason::PoolNameStart,
                "{name}"
            );
            assert_eq!(
                reason(DatasetName::new(format!("{name}/fs"))),
                NameErrorReason::PoolNameStart,
                "{name}"
            );
        }
        assert!(PoolName::new("Tank").is_ok());
        assert!(PoolName::new("t").is_ok());
        // Only the pool component must start with a letter.
        assert!(DatasetName::new("tank/1fs/_x/-y/ z").is_ok());
    }

    #[test]
    fn reserved_pool_prefixes() {
        for name in [
            "mirror",
            "mirror0",
            "mirror-1",
            "mirrored",
            "raidz",
            "raidz1",
            "raidz2-0",
            "raidz3",
            "draid",
            "draid2:4d",
            "draid1-0",
            "spare",
            "spares",
            "spare-1",
        ] {
            assert_eq!(
                reason(PoolName::new(name)),
                NameErrorReason::ReservedPoolName,
                "{name}"
            );
            assert_eq!(
                reason(DatasetName::new(format!("{name}/fs"))),
                NameErrorReason::ReservedPoolName,
                "{name}"
            );
            assert_eq!(
                reason(SnapshotName::new(format!("{name}@s"))),
                NameErrorReason::ReservedPoolName,
                "{name}"
            );
        }
    }

    #[test]
    fn log_is_reserved_exactly() {
        assert_eq!(
            reason(PoolName::new("log")),
            NameErrorReason::ReservedPoolName
        );
        assert_eq!(
            reason(DatasetName::new("log/fs")),
            NameErrorReason::ReservedPoolName
        );
        for name in ["logs", "log1", "logger", "blog"] {
            assert!(PoolName::new(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn reserved_names_are_case_sensitive_and_pool_only() {
        for name in [
            "Mirror",
            "RAIDZ",
            "Draid",
            "SPARE",
            "Log",
            "amirror",
            "tankraidz",
        ] {
            assert!(PoolName::new(name).is_ok(), "{name}");
        }
        // Below the pool, the words are ordinary components.
        assert!(DatasetName::new("tank/mirror/raidz/draid/spare/log").is_ok());
        assert!(SnapshotName::new("tank@mirror").is_ok());
    }

    #[test]
    fn disk_like_pool_names_are_allowed() {
        // OpenZFS dropped the Solaris `c[0-9]*` rule (NAME_ERR_DISKLIKE is
        // no longer raised by zfs_namecheck.c).
        for name in ["c0", "c1d0", "c0t0d0s0", "c9"] {
            assert!(PoolName::new(name).is_ok(), "{name}");
        }
    }

    // ----- errors -----

    #[test]
    fn error_accessors_and_messages() {
        let err = SnapshotName::new("tank/a\0b@s").unwrap_err();
        assert_eq!(err.kind_of_name(), NameKind::Snapshot);
        assert_eq!(err.name(), "tank/a\0b@s");
        assert_eq!(
            err.reason(),
            &NameErrorReason::InvalidChar {
                ch: '\0',
                offset: 6
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid snapshot name \"tank/a\\0b@s\": character '\\0' at byte 6 is not \
             allowed (allowed: ASCII letters, digits, space and _ - . :)"
        );
        assert_eq!(
            DatasetName::new("tank/").unwrap_err().to_string(),
            "invalid dataset name \"tank/\": empty component at byte 5"
        );
        assert_eq!(
            PoolName::new("mirror").unwrap_err().to_string(),
            "invalid pool name \"mirror\": the pool name is reserved (names starting with \
             \"mirror\", \"raidz\", \"draid\" or \"spare\", and \"log\", are vdev types)"
        );
        assert_eq!(
            BookmarkName::new("tank").unwrap_err().to_string(),
            "invalid bookmark name \"tank\": missing the '#' delimiter"
        );
        assert_eq!(
            SnapshotName::new("tank@a@b").unwrap_err().to_string(),
            "invalid snapshot name \"tank@a@b\": second delimiter '@' at byte 6 \
             (a name holds at most one '@' or '#')"
        );
        let long = "a".repeat(256);
        assert_eq!(
            DatasetName::new(long.as_str()).unwrap_err().to_string(),
            format!(
                "invalid dataset name {long:?}: the name is 256 bytes long; at most 255 are allowed"
            )
        );
    }

    #[test]
    fn every_reason_has_a_message() {
        let reasons = [
            NameErrorReason::Empty,
            NameErrorReason::TooLong { len: 1, max: 0 },
            NameErrorReason::InvalidChar { ch: 'x', offset: 0 },
            NameErrorReason::EmptyComponent { offset: 0 },
            NameErrorReason::DotComponent { offset: 0 },
            NameErrorReason::MissingDelimiter { delimiter: '@' },
            NameErrorReason::MultipleDelimiters {
                delimiter: '@',
                offset: 0,
            },
            NameErrorReason::UnexpectedDelimiter {
                delimiter: '#',
                offset: 0,
            },
            NameErrorReason::EmptyShortName,
            NameErrorReason::PoolNameStart,
            NameErrorReason::ReservedPoolName,
            NameErrorReason::PoolNameTooLong { len: 1, max: 0 },
        ];
        let messages: BTreeSet<String> = reasons.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), reasons.len());
        assert!(messages.iter().all(|m| !m.is_empty()));
        assert_eq!(NameKind::Pool.to_string(), "pool");
        assert_eq!(NameKind::Dataset.to_string(), "dataset");
        assert_eq!(NameKind::Snapshot.to_string(), "snapshot");
        assert_eq!(NameKind::Bookmark.to_string(), "bookmark");
    }

    // ----- traits -----

    #[test]
    fn common_traits() {
        let name: DatasetName = "tank/home".parse().unwrap();
        assert_eq!(DatasetName::try_from("tank/home").unwrap(), name);
        assert_eq!(
            DatasetName::try_from(String::from("tank/home")).unwrap(),
            name
        );
        assert_eq!(name.to_string(), "tank/home");
        assert_eq!(name.as_ref(), "tank/home");
        assert_eq!(format!("{name:?}"), "DatasetName(\"tank/home\")");
        assert_eq!(name.to_c_name().as_bytes(), b"tank/home");
        assert_eq!(name.clone().into_string(), "tank/home");
        assert!("tank//home".parse::<DatasetName>().is_err());
        assert!(DatasetName::try_from("tank@s").is_err());

        let pool: PoolName = "tank".parse().unwrap();
        assert_eq!(pool.to_c_name().as_bytes(), b"tank");
        assert_eq!(PoolName::try_from("tank").unwrap(), pool);
        let snap: SnapshotName = "tank@s".parse().unwrap();
        assert_eq!(snap.to_c_name().as_bytes(), b"tank@s");
        assert_eq!(
            SnapshotName::try_from(String::from("tank@s")).unwrap(),
            snap
        );
        let mark: BookmarkName = "tank#m".parse().unwrap();
        assert_eq!(mark.to_c_name().as_bytes(), b"tank#m");
        assert_eq!(mark.as_ref(), "tank#m");
        assert_eq!(mark.into_string(), "tank#m");

        let set: BTreeSet<DatasetName> = ["tank/b", "tank/a", "tank"].map(ds).into();
        let sorted: Vec<&str> = set.iter().map(DatasetName::as_str).collect();
        assert_eq!(sorted, ["tank", "tank/a", "tank/b"]);
    }

    // ----- conversions -----

    #[test]
    fn pool_root_and_dataset_pool() {
        let pool = PoolName::new("tank").unwrap();
        let root = pool.root();
        assert_eq!(root.as_str(), "tank");
        assert!(root.is_root());
        assert_eq!(root.pool(), pool);
        assert_eq!(ds("tank/a/b").pool(), pool);
        assert_eq!(
            SnapshotName::new("tank/a@s").unwrap().dataset().pool(),
            pool
        );
    }

    #[test]
    fn parent_depth_and_components() {
        let name = ds("tank/home/my docs");
        assert_eq!(name.depth(), 2);
        assert!(!name.is_root());
        assert_eq!(
            name.components().collect::<Vec<_>>(),
            ["tank", "home", "my docs"]
        );
        assert_eq!(name.components().next_back(), Some("my docs"));
        let parent = name.parent().unwrap();
        assert_eq!(parent, ds("tank/home"));
        assert_eq!(parent.depth(), 1);
        let root = parent.parent().unwrap();
        assert_eq!(root, ds("tank"));
        assert_eq!(root.depth(), 0);
        assert!(root.is_root());
        assert_eq!(root.components().collect::<Vec<_>>(), ["tank"]);
        assert_eq!(root.parent(), None);
    }

    #[test]
    fn child() {
        let home = ds("tank/home");
        assert_eq!(home.child("alice").unwrap(), ds("tank/home/alice"));
        assert_eq!(home.child("my docs").unwrap().parent(), Some(home.clone()));
        assert_eq!(
            reason(home.child("a/b")),
            NameErrorReason::InvalidChar {
                ch: '/',
                offset: 11
            }
        );
        assert_eq!(home.child("a/b").unwrap_err().name(), "tank/home/a/b");
        assert_eq!(
            reason(home.child("")),
            NameErrorReason::EmptyComponent { offset: 10 }
        );
        assert_eq!(
            reason(home.child("/a")),
            NameErrorReason::EmptyComponent { offset: 10 }
        );
        assert_eq!(
            reason(home.child("..")),
            NameErrorReason::DotComponent { offset: 10 }
        );
        assert_eq!(
            reason(home.child("a@b")),
            NameErrorReason::UnexpectedDelimiter {
                delimiter: '@',
                offset: 11
            }
        );
        assert_eq!(
            reason(home.child(&"x".repeat(246))),
            NameErrorReason::TooLong { len: 256, max: 255 }
        );
        assert!(home.child(&"x".repeat(245)).is_ok());
    }

    #[test]
    fn descendants_respect_component_boundaries() {
        let a = ds("tank/a");
        assert!(ds("tank/a/b").is_descendant_of(&a));
        assert!(ds("tank/a/b/c").is_descendant_of(&a));
        assert!(ds("tank/a").is_descendant_of(&ds("tank")));
        assert!(!ds("tank/ab").is_descendant_of(&a));
        assert!(!ds("tank/a").is_descendant_of(&a));
        assert!(!ds("tank").is_descendant_of(&a));
        assert!(!ds("tank2/a/b").is_descendant_of(&ds("tank")));
        assert!(!ds("tank/b/a").is_descendant_of(&a));
    }

    #[test]
    fn relative_to() {
        let a = ds("tank/a");
        assert_eq!(ds("tank/a/b/c").relative_to(&a), Some("b/c"));
        assert_eq!(ds("tank/a/b").relative_to(&a), Some("b"));
        assert_eq!(ds("tank/a").relative_to(&a), Some(""));
        assert_eq!(ds("tank/ab").relative_to(&a), None);
        assert_eq!(ds("tank").relative_to(&a), None);
        assert_eq!(ds("tank/b").relative_to(&a), None);
        assert_eq!(ds("tank/a/b").relative_to(&ds("tank")), Some("a/b"));
    }

    #[test]
    fn snapshot_conversions() {
        let fs = ds("tank/fs");
        let snap = fs.snapshot("2024-01-01").unwrap();
        assert_eq!(snap.as_str(), "tank/fs@2024-01-01");
        assert_eq!(snap.dataset(), fs);
        assert_eq!(snap.short_name(), "2024-01-01");
        assert_eq!(SnapshotName::from_parts(&fs, "2024-01-01").unwrap(), snap);
        let mark = snap.bookmark("base").unwrap();
        assert_eq!(mark.as_str(), "tank/fs#base");
        assert_eq!(
            reason(fs.snapshot("a/b")),
            NameErrorReason::InvalidChar { ch: '/', offset: 9 }
        );
        assert_eq!(
            reason(snap.bookmark("x@y")),
            NameErrorReason::MultipleDelimiters {
                delimiter: '@',
                offset: 9
            }
        );
        let err = fs.snapshot("é").unwrap_err();
        assert_eq!(err.kind_of_name(), NameKind::Snapshot);
        assert_eq!(err.name(), "tank/fs@é");
    }

    #[test]
    fn bookmark_conversions() {
        let fs = ds("tank/fs");
        let mark = fs.bookmark("base").unwrap();
        assert_eq!(mark.as_str(), "tank/fs#base");
        assert_eq!(mark.dataset(), fs);
        assert_eq!(mark.short_name(), "base");
        assert_eq!(BookmarkName::from_parts(&fs, "base").unwrap(), mark);
        assert_eq!(
            reason(BookmarkName::from_parts(&fs, "")),
            NameErrorReason::EmptyShortName
        );
        let root_mark = ds("tank").bookmark("m").unwrap();
        assert_eq!(root_mark.dataset(), ds("tank"));
    }

    // ----- property tests -----

    const COMPONENT: &str = "[A-Za-z0-9_.: -]{1,30}";

    fn is_reserved_pool(s: &str) -> bool {
        ["mirror", "raidz", "draid", "spare"]
            .iter()
            .any(|p| s.starts_with(p))
            || s == "log"
    }

    fn pool_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9_.: -]{0,29}".prop_filter("reserved", |s| !is_reserved_pool(s))
    }

    fn component_strategy() -> impl Strategy<Value = String> {
        COMPONENT.prop_filter("dot component", |s| s != "." && s != "..")
    }

    /// Valid dataset names of at most 30 + 5 * 31 = 185 bytes.
    fn dataset_strategy() -> impl Strategy<Value = String> {
        (
            pool_strategy(),
            prop::collection::vec(component_strategy(), 0..=5),
        )
            .prop_map(|(pool, rest)| {
                let mut name = pool;
                for component in rest {
                    name.push('/');
                    name.push_str(&component);
                }
                name
            })
    }

    /// Fragments that exercise every rule.
    fn tricky_strategy() -> impl Strategy<Value = String> {
        let fragments = prop::sample::select(vec![
            "a", "Z", "1", "/", "//", "@", "#", ".", "..", " ", "%", "\0", "é", "🦀", "-", ":",
            "_", "mirror", "log", "c0", "tank", "\n",
        ]);
        prop::collection::vec(fragments, 0..16).prop_map(|parts| parts.concat())
    }

    /// Strings around the 255-byte limit.
    fn long_strategy() -> impl Strategy<Value = String> {
        (tricky_strategy(), 230usize..270, tricky_strategy())
            .prop_map(|(head, n, tail)| format!("tank/{head}{}{tail}", "x".repeat(n)))
    }

    fn any_input() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), tricky_strategy(), long_strategy()]
    }

    /// Checks the invariants of an accepted name, independently of
    /// `validate`.
    fn check_dataset_part(s: &str) {
        assert!(s.len() <= MAX_NAME_LEN);
        let components: Vec<&str> = s.split('/').collect();
        let pool = components[0];
        assert!(pool.len() <= MAX_POOL_NAME_LEN);
        assert!(pool.as_bytes()[0].is_ascii_alphabetic());
        assert!(!is_reserved_pool(pool));
        for c in components {
            assert!(!c.is_empty() && c != "." && c != "..");
            assert!(c.chars().all(is_allowed_char), "{c:?}");
        }
    }

    fn check_short_name(short: &str) {
        assert!(!short.is_empty() && short != "." && short != "..");
        assert!(short.chars().all(is_allowed_char), "{short:?}");
    }

    fn check_error(err: &NameError, input: &str, kind: NameKind) {
        assert_eq!(err.name(), input);
        assert_eq!(err.kind_of_name(), kind);
        assert!(!err.to_string().is_empty());
        match *err.reason() {
            NameErrorReason::InvalidChar { ch, offset } => {
                assert!(input[offset..].starts_with(ch));
                assert!(!is_allowed_char(ch) || ch == '/');
            }
            NameErrorReason::MultipleDelimiters { delimiter, offset }
            | NameErrorReason::UnexpectedDelimiter { delimiter, offset } => {
                assert!(input[offset..].starts_with(delimiter));
            }
            NameErrorReason::EmptyComponent { offset } => {
                assert!(offset <= input.len());
            }
            NameErrorReason::DotComponent { offset } => {
                assert!(input[offset..].starts_with('.'));
            }
            NameErrorReason::TooLong { len, max } => {
                assert_eq!(len, input.len());
                assert!(len > max);
            }
            _ => {}
        }
    }

    fn check_any(s: &str) {
        match PoolName::new(s) {
            Ok(pool) => {
                assert_eq!(pool.as_str(), s);
                assert!(!s.contains(['/', '@', '#']));
                check_dataset_part(s);
                assert_eq!(pool.root().as_str(), s);
                assert_eq!(DatasetName::new(s).as_ref(), Ok(&pool.root()));
            }
            Err(err) => check_error(&err, s, NameKind::Pool),
        }
        match DatasetName::new(s) {
            Ok(name) => {
                assert_eq!(name.as_str(), s);
                assert!(!s.contains(['@', '#']));
                check_dataset_part(s);
                assert_eq!(PoolName::new(name.pool().as_str()), Ok(name.pool()));
                assert_eq!(name.components().collect::<Vec<_>>().join("/"), s);
                assert_eq!(name.depth() + 1, name.components().count());
                if let Some(parent) = name.parent() {
                    assert_eq!(DatasetName::new(parent.as_str()).as_ref(), Ok(&parent));
                    assert!(name.is_descendant_of(&parent));
                    assert_eq!(parent.depth() + 1, name.depth());
                } else {
                    assert!(name.is_root());
                }
                assert_eq!(name.to_c_name().as_bytes(), s.as_bytes());
            }
            Err(err) => check_error(&err, s, NameKind::Dataset),
        }
        match SnapshotName::new(s) {
            Ok(snap) => {
                assert_eq!(snap.as_str(), s);
                let (dataset, short) = s.split_once('@').unwrap();
                check_dataset_part(dataset);
                check_short_name(short);
                assert_eq!(DatasetName::new(dataset).as_ref(), Ok(&snap.dataset()));
                assert_eq!(snap.short_name(), short);
                assert_eq!(snap.to_c_name().as_bytes(), s.as_bytes());
            }
            Err(err) => check_error(&err, s, NameKind::Snapshot),
        }
        match BookmarkName::new(s) {
            Ok(mark) => {
                assert_eq!(mark.as_str(), s);
                let (dataset, short) = s.split_once('#').unwrap();
                check_dataset_part(dataset);
                check_short_name(short);
                assert_eq!(DatasetName::new(dataset).as_ref(), Ok(&mark.dataset()));
                assert_eq!(mark.short_name(), short);
            }
            Err(err) => check_error(&err, s, NameKind::Bookmark),
        }
    }

    proptest! {
        #[test]
        fn valid_pool_names_round_trip(s in pool_strategy()) {
            let name = PoolName::new(s.as_str()).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
            prop_assert_eq!(name.to_string(), s.as_str());
            prop_assert_eq!(s.parse::<PoolName>().unwrap(), name.clone());
            prop_assert_eq!(PoolName::try_from(s.clone()).unwrap(), name.clone());
            prop_assert_eq!(name.root().pool(), name.clone());
            prop_assert_eq!(name.into_string(), s);
        }

        #[test]
        fn valid_dataset_names_round_trip(s in dataset_strategy()) {
            let name = DatasetName::new(s.as_str()).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
            prop_assert_eq!(name.to_string(), s.as_str());
            prop_assert_eq!(s.parse::<DatasetName>().unwrap(), name.clone());
            prop_assert_eq!(DatasetName::try_from(s.as_str()).unwrap(), name.clone());
            prop_assert_eq!(name.depth(), s.matches('/').count());
            check_any(&s);
        }

        #[test]
        fn valid_snapshot_names_round_trip(
            dataset in dataset_strategy(),
            short in component_strategy(),
        ) {
            let s = format!("{dataset}@{short}");
            let name = SnapshotName::new(s.as_str()).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
            prop_assert_eq!(name.to_string(), s.as_str());
            prop_assert_eq!(s.parse::<SnapshotName>().unwrap(), name.clone());
            prop_assert_eq!(name.dataset().into_string(), dataset);
            prop_assert_eq!(name.short_name(), short.as_str());
            check_any(&s);
        }

        #[test]
        fn valid_bookmark_names_round_trip(
            dataset in dataset_strategy(),
            short in component_strategy(),
        ) {
            let s = format!("{dataset}#{short}");
            let name = BookmarkName::new(s.as_str()).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
            prop_assert_eq!(name.to_string(), s.as_str());
            prop_assert_eq!(s.parse::<BookmarkName>().unwrap(), name.clone());
            prop_assert_eq!(name.dataset().into_string(), dataset);
            prop_assert_eq!(name.short_name(), short.as_str());
            check_any(&s);
        }

        #[test]
        fn any_input_never_panics_and_accepted_names_are_valid(s in any_input()) {
            check_any(&s);
        }

        #[test]
        fn snapshot_and_bookmark_of_dataset_give_it_back(
            dataset in dataset_strategy(),
            x in any_input(),
        ) {
            let dataset = DatasetName::new(dataset).unwrap();
            match dataset.snapshot(&x) {
                Ok(snap) => {
                    prop_assert_eq!(snap.dataset(), dataset.clone());
                    prop_assert_eq!(snap.short_name(), x.as_str());
                    check_any(snap.as_str());
                    let mark = snap.bookmark(&x).unwrap();
                    prop_assert_eq!(mark.dataset(), dataset.clone());
                }
                Err(err) => check_error(&err, &format!("{dataset}@{x}"), NameKind::Snapshot),
            }
            match dataset.bookmark(&x) {
                Ok(mark) => {
                    prop_assert_eq!(mark.dataset(), dataset.clone());
                    prop_assert_eq!(mark.short_name(), x.as_str());
                    check_any(mark.as_str());
                }
                Err(err) => check_error(&err, &format!("{dataset}#{x}"), NameKind::Bookmark),
            }
        }

        #[test]
        fn child_and_parent_are_inverse(
            dataset in dataset_strategy(),
            x in prop_oneof![any_input(), component_strategy()],
        ) {
            let dataset = DatasetName::new(dataset).unwrap();
            match dataset.child(&x) {
                Ok(child) => {
                    prop_assert!(!x.contains('/'));
                    prop_assert_eq!(child.parent(), Some(dataset.clone()));
                    prop_assert!(child.is_descendant_of(&dataset));
                    prop_assert!(!dataset.is_descendant_of(&child));
                    prop_assert_eq!(child.relative_to(&dataset), Some(x.as_str()));
                    prop_assert_eq!(child.components().next_back(), Some(x.as_str()));
                    prop_assert_eq!(child.pool(), dataset.pool());
                    check_any(child.as_str());
                }
                Err(err) => check_error(&err, &format!("{dataset}/{x}"), NameKind::Dataset),
            }
        }

        #[test]
        fn descendant_agrees_with_relative_to(
            a in dataset_strategy(),
            other in dataset_strategy(),
            up in 0usize..8,
        ) {
            let a = DatasetName::new(a).unwrap();
            // An ancestor of `a` (or `a` itself) most of the time, else an
            // unrelated name.
            let b = match (0..up).try_fold(a.clone(), |d, _| d.parent()) {
                Some(ancestor) => ancestor,
                None => DatasetName::new(other).unwrap(),
            };
            let rel = a.relative_to(&b);
            prop_assert_eq!(a.is_descendant_of(&b), rel.is_some_and(|r| !r.is_empty()));
            prop_assert_eq!(rel == Some(""), a == b);
            if let Some(rel) = rel.filter(|r| !r.is_empty()) {
                prop_assert_eq!(format!("{b}/{rel}"), a.as_str());
            }
        }
    }
}
