//! Selection: which datasets of a recursive replication, and which of
//! their snapshots, a replication carries.
//!
//! ```
//! use zfs_replicate::{DatasetFilter, Initial, Replication};
//!
//! let filter = DatasetFilter::new()
//!     .exclude("*/cache")? // tank/home/cache, tank/vm/cache, and below them
//!     .only_property("backup:job", "offsite")?; // local or inherited
//! let repl = Replication::new("tank".parse()?, "pipe/tank".parse()?)
//!     .recursive(true)
//!     .filter(filter)
//!     // Hourly snapshots stay home; the rest go, each an incremental from
//!     // the previous one that went.
//!     .snapshot_filter(|s| !s.name().short_name().starts_with("hourly"))
//!     // A new backup starts from the newest snapshot, not the oldest.
//!     .initial(Initial::MostRecent)
//!     .create_parents(true);
//! # let _ = repl;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;

use zfs_core::{NvValue, Properties, Snapshot};

use crate::error::{Error, Result};

/// Which datasets of a recursive replication are replicated: by name
/// (globs over the name relative to the source, excluding descendants
/// too) and by a user property (its local or inherited value). A dataset
/// that is not selected is neither sent nor, on the target, destroyed as
/// removed; its selected descendants still are (their target parents are
/// then missing: see [`Replication::create_parents`]).
///
/// [`Replication::create_parents`]: crate::Replication::create_parents
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetFilter {
    exclude: Vec<String>,
    property: Option<(String, String)>,
}

impl DatasetFilter {
    /// Selects every dataset.
    pub fn new() -> Self {
        DatasetFilter::default()
    }

    /// Skips the datasets whose name relative to the source matches
    /// `pattern`, and their descendants. In a pattern `*` stands for any
    /// characters but `/`, `**` for any characters, `?` for one character
    /// but `/`; the whole relative name must match (`cache` is only the
    /// source's child `cache`; `*/cache` a grandchild; `**/cache` any
    /// depth below the source's children). The source itself (relative
    /// name empty) is never excluded by name.
    pub fn exclude(mut self, pattern: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidFilter {
            filter: pattern.to_owned(),
            reason: why.to_owned(),
        };
        if pattern.is_empty() {
            return Err(bad("empty"));
        }
        if pattern.starts_with('/') || pattern.ends_with('/') || pattern.contains("//") {
            return Err(bad(
                "a name relative to the source has no leading, trailing or double /",
            ));
        }
        if pattern.contains(['@', '#', '\0']) {
            return Err(bad("a dataset name has no @, # or NUL"));
        }
        self.exclude.push(pattern.to_owned());
        Ok(self)
    }

    /// Selects only the datasets whose user property `name` (`module:name`)
    /// is `value`, set on the dataset or inherited from an ancestor.
    /// Given again, it replaces the previous one.
    pub fn only_property(mut self, name: &str, value: &str) -> Result<Self> {
        zfs_core::property::check_user_name(name).map_err(|reason| Error::InvalidFilter {
            filter: format!("{name}={value}"),
            reason,
        })?;
        self.property = Some((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Whether nothing is filtered out.
    pub fn is_empty(&self) -> bool {
        self.exclude.is_empty() && self.property.is_none()
    }

    /// Whether the dataset at `relative` (its name relative to the
    /// source; empty for the source) or one of its ancestors below the
    /// source matches an exclude pattern.
    pub fn excludes_name(&self, relative: &str) -> bool {
        if relative.is_empty() {
            return false;
        }
        let mut end = 0;
        loop {
            let next = relative[end..].find('/').map(|i| end + i);
            let prefix = &relative[..next.unwrap_or(relative.len())];
            if self
                .exclude
                .iter()
                .any(|p| glob_match(p.as_bytes(), prefix.as_bytes()))
            {
                return true;
            }
            match next {
                Some(i) => end = i + 1,
                None => return false,
            }
        }
    }

    /// Whether a dataset with these properties has the selected user
    /// property value (true when no property is asked for).
    pub fn admits(&self, props: &Properties) -> bool {
        let Some((name, value)) = &self.property else {
            return true;
        };
        let Ok(entry) = props.raw.get_nvlist(name) else {
            return false;
        };
        matches!(entry.get("value"), Some(NvValue::String(v)) if v == value)
    }
}

/// `*` any run of bytes but `/`, `**` any run, `?` one byte but `/`.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => {
            let (any, rest) = match rest.split_first() {
                Some((b'*', r)) => (true, r),
                _ => (false, rest),
            };
            for i in 0..=name.len() {
                if glob_match(rest, &name[i..]) {
                    return true;
                }
                if i < name.len() && name[i] == b'/' && !any {
                    return false;
                }
            }
            false
        }
        Some((b'?', rest)) => {
            matches!(name.split_first(), Some((c, n)) if *c != b'/' && glob_match(rest, n))
        }
        Some((c, rest)) => {
            matches!(name.split_first(), Some((d, n)) if d == c && glob_match(rest, n))
        }
    }
}

/// Which snapshots a replication sends: those the function admits. A
/// snapshot left out is hopped over: the next one sent is an incremental
/// from the previous one sent. It sees every snapshot of every selected
/// dataset, the ones [`sync`](crate::Replication::sync) takes included.
#[derive(Clone)]
pub struct SnapshotFilter(Arc<dyn Fn(&Snapshot) -> bool + Send + Sync>);

impl SnapshotFilter {
    /// A filter that admits the snapshots `f` returns true for.
    pub fn new(f: impl Fn(&Snapshot) -> bool + Send + Sync + 'static) -> Self {
        SnapshotFilter(Arc::new(f))
    }

    /// Whether `snapshot` is sent.
    pub fn admits(&self, snapshot: &Snapshot) -> bool {
        (self.0)(snapshot)
    }
}

impl fmt::Debug for SnapshotFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotFilter(..)")
    }
}

/// What the first, full, transfer to a new target carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Initial {
    /// The oldest snapshot in full, then every later one incrementally
    /// (the default): the target gets the source's whole history.
    #[default]
    All,
    /// Only the newest snapshot, in full: older history stays behind.
    MostRecent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_relative_names() {
        let m = |p: &str, n: &str| glob_match(p.as_bytes(), n.as_bytes());
        assert!(m("cache", "cache"));
        assert!(!m("cache", "cache2"));
        assert!(!m("cache", "a/cache"));
        assert!(m("*/cache", "a/cache"));
        assert!(!m("*/cache", "a/b/cache"));
        assert!(m("**/cache", "a/b/cache"));
        assert!(m("**", "a/b"));
        assert!(m("c?che", "cache"));
        assert!(!m("a?b", "a/b"));
        assert!(m("tmp*", "tmp-1"));
        assert!(!m("tmp*", "tmp/x"));
        assert!(m("*", "anything"));
        assert!(!m("*", "a/b"));
    }

    #[test]
    fn an_excluded_dataset_takes_its_descendants_not_its_parent() {
        let f = DatasetFilter::new().exclude("vm/*").unwrap();
        assert!(!f.excludes_name(""));
        assert!(!f.excludes_name("vm"));
        assert!(f.excludes_name("vm/scratch"));
        assert!(f.excludes_name("vm/scratch/deeper"));
        assert!(!f.excludes_name("vmx/scratch"));
        let f = DatasetFilter::new().exclude("cache").unwrap();
        assert!(f.excludes_name("cache/a/b"));
        assert!(!f.excludes_name("home/cache"));
    }

    #[test]
    fn bad_filters_are_refused() {
        for p in ["", "/a", "a/", "a//b", "a@b", "a#b"] {
            assert!(DatasetFilter::new().exclude(p).is_err(), "{p:?}");
        }
        assert!(DatasetFilter::new().only_property("nocolon", "x").is_err());
        assert!(DatasetFilter::new()
            .only_property("backup:job", "offsite")
            .is_ok());
    }

    #[test]
    fn a_property_filter_reads_local_and_inherited_values() {
        let entry =
            |v: &str, src: &str| zfs_core::NvList::new().with("value", v).with("source", src);
        let props = |raw: zfs_core::NvList| Properties::from_nvlist("t/a", raw).unwrap();
        let f = DatasetFilter::new()
            .only_property("backup:job", "offsite")
            .unwrap();
        let inherited = props(zfs_core::NvList::new().with("backup:job", entry("offsite", "t")));
        assert!(f.admits(&inherited));
        let other = props(zfs_core::NvList::new().with("backup:job", entry("local", "t/a")));
        assert!(!f.admits(&other));
        assert!(!f.admits(&props(zfs_core::NvList::new())));
        assert!(DatasetFilter::new().admits(&props(zfs_core::NvList::new())));
    }
}
