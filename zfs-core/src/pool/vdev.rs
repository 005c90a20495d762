//! A pool's vdev tree as a configuration nvlist describes it: the kernel's
//! (`ZFS_IOC_POOL_STATS`, `ZFS_IOC_POOL_TRYIMPORT`) with each vdev's
//! `vdev_stats`, or one assembled from device labels (no stats).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::nvlist::{NvList, NvListError};

/// `vdev_stat_t` indexes (include/sys/fs/zfs.h, the same 2.1–2.4).
const VS_STATE: usize = 1;
const VS_AUX: usize = 2;
const VS_ALLOC: usize = 3;
const VS_SPACE: usize = 4;
/// After `vs_ops[6]` (8..14) and `vs_bytes[6]` (14..20).
const VS_READ_ERRORS: usize = 20;
const VS_WRITE_ERRORS: usize = 21;
const VS_CHECKSUM_ERRORS: usize = 22;

/// `vdev_aux_t` values that change the state's name.
const VDEV_AUX_CORRUPT_DATA: u64 = 2;
const VDEV_AUX_BAD_LOG: u64 = 13;
const VDEV_AUX_SPLIT_POOL: u64 = 15;

/// The health of a pool or one of its vdevs, named as `zpool status` names
/// it (`zpool_state_to_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VdevState {
    /// `ONLINE`: healthy.
    Online,
    /// `DEGRADED`: working, with less redundancy than configured.
    Degraded,
    /// `FAULTED`: failed (too many errors, or corrupt data).
    Faulted,
    /// `OFFLINE`: taken offline on purpose (or closed).
    Offline,
    /// `REMOVED`: the device was removed while in use.
    Removed,
    /// `UNAVAIL`: could not be opened (missing device).
    Unavailable,
    /// `SPLIT`: split off into another pool.
    Split,
    /// No state reported (a tree assembled from labels has no stats).
    Unknown,
}

impl VdevState {
    /// From `vs_state` and `vs_aux`.
    pub(crate) fn from_stats(state: u64, aux: u64) -> VdevState {
        match state {
            1 | 2 => VdevState::Offline,
            3 => VdevState::Removed,
            4 => match aux {
                VDEV_AUX_CORRUPT_DATA | VDEV_AUX_BAD_LOG => VdevState::Faulted,
                VDEV_AUX_SPLIT_POOL => VdevState::Split,
                _ => VdevState::Unavailable,
            },
            5 => VdevState::Faulted,
            6 => VdevState::Degraded,
            7 => VdevState::Online,
            _ => VdevState::Unknown,
        }
    }

    /// The name `zpool status` prints: `ONLINE`, `DEGRADED`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            VdevState::Online => "ONLINE",
            VdevState::Degraded => "DEGRADED",
            VdevState::Faulted => "FAULTED",
            VdevState::Offline => "OFFLINE",
            VdevState::Removed => "REMOVED",
            VdevState::Unavailable => "UNAVAIL",
            VdevState::Split => "SPLIT",
            VdevState::Unknown => "UNKNOWN",
        }
    }

    /// Whether the pool or vdev is fully healthy (`ONLINE`).
    pub fn is_online(self) -> bool {
        self == VdevState::Online
    }
}

impl fmt::Display for VdevState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One vdev's I/O error counters since the pool was imported (or cleared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VdevErrors {
    pub read: u64,
    pub write: u64,
    pub checksum: u64,
}

impl VdevErrors {
    /// Read + write + checksum errors.
    pub fn total(&self) -> u64 {
        self.read
            .saturating_add(self.write)
            .saturating_add(self.checksum)
    }
}

/// One vdev of a pool's tree: the root, a mirror or raidz group, or a leaf
/// (a disk or a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vdev {
    kind: String,
    guid: u64,
    path: Option<PathBuf>,
    state: VdevState,
    errors: VdevErrors,
    allocated: u64,
    size: u64,
    children: Vec<Vdev>,
}

impl Vdev {
    /// The vdev type: `root`, `mirror`, `raidz`, `draid`, `disk`, `file`,
    /// `missing`, `hole`, ….
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The vdev's GUID (0 for placeholders: `missing`, `hole`).
    pub fn guid(&self) -> u64 {
        self.guid
    }

    /// A leaf's device or file path.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Health, [`VdevState::Unknown`] where the tree has no stats.
    pub fn state(&self) -> VdevState {
        self.state
    }

    /// Error counters (zero where the tree has no stats).
    pub fn errors(&self) -> VdevErrors {
        self.errors
    }

    /// Bytes allocated and total size (zero where the tree has no stats).
    pub fn space(&self) -> (u64, u64) {
        (self.allocated, self.size)
    }

    /// Child vdevs (top-level vdevs under the root, leaves under a mirror).
    pub fn children(&self) -> &[Vdev] {
        &self.children
    }

    /// Whether this is a leaf (a disk or file).
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty() && !matches!(self.kind.as_str(), "root" | "missing" | "hole")
    }

    /// This vdev and every vdev below it, depth first.
    pub fn walk(&self) -> Vec<&Vdev> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }

    /// The leaves (disks and files) at or below this vdev.
    pub fn leaves(&self) -> Vec<&Vdev> {
        self.walk().into_iter().filter(|v| v.is_leaf()).collect()
    }

    /// Parses a `vdev_tree` nvlist. Children are `children`; spares and
    /// cache devices are not part of the data tree and are left out.
    /// The depth is bounded by the nvlist's own nesting limit.
    pub(crate) fn from_config(tree: &NvList) -> Result<Vdev, NvListError> {
        let kind = tree.get_str("type")?.to_owned();
        let guid = tree.get_u64("guid").unwrap_or(0);
        let path = tree.get_str("path").ok().map(PathBuf::from);
        let (mut state, mut errors, mut allocated, mut size) =
            (VdevState::Unknown, VdevErrors::default(), 0, 0);
        if let Ok(stats) = tree.get_u64_array("vdev_stats") {
            let at = |i: usize| stats.get(i).copied().unwrap_or(0);
            state = VdevState::from_stats(at(VS_STATE), at(VS_AUX));
            errors = VdevErrors {
                read: at(VS_READ_ERRORS),
                write: at(VS_WRITE_ERRORS),
                checksum: at(VS_CHECKSUM_ERRORS),
            };
            allocated = at(VS_ALLOC);
            size = at(VS_SPACE);
        }
        let children = match tree.get_nvlist_array("children") {
            Ok(list) => list
                .iter()
                .map(Vdev::from_config)
                .collect::<Result<_, _>>()?,
            Err(NvListError::MissingKey { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Vdev {
            kind,
            guid,
            path,
            state,
            errors,
            allocated,
            size,
            children,
        })
    }
}

impl fmt::Display for Vdev {
    /// One line per vdev, indented by depth: `mirror-0 DEGRADED` style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn line(v: &Vdev, depth: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let name = match &v.path {
                Some(p) => p.display().to_string(),
                None => v.kind.clone(),
            };
            writeln!(
                f,
                "{:indent$}{name} {} (read {}, write {}, checksum {})",
                "",
                v.state,
                v.errors.read,
                v.errors.write,
                v.errors.checksum,
                indent = depth * 2
            )?;
            for c in &v.children {
                line(c, depth + 1, f)?;
            }
            Ok(())
        }
        line(self, 0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(path: &str, stats: Vec<u64>) -> NvList {
        NvList::new()
            .with("type", "file")
            .with("guid", 7u64)
            .with("path", path)
            .with("vdev_stats", stats)
    }

    #[test]
    fn parses_a_degraded_mirror_with_errors() {
        let mut ok = vec![0u64; 40];
        ok[VS_STATE] = 7;
        ok[VS_READ_ERRORS] = 3;
        ok[VS_CHECKSUM_ERRORS] = 1;
        let mut gone = vec![0u64; 40];
        gone[VS_STATE] = 4;
        gone[VS_AUX] = 1;
        let mut degraded = vec![0u64; 40];
        degraded[VS_STATE] = 6;
        let mirror = NvList::new()
            .with("type", "mirror")
            .with("guid", 5u64)
            .with("vdev_stats", degraded.clone())
            .with("children", vec![leaf("/a", ok), leaf("/b", gone)]);
        let root = NvList::new()
            .with("type", "root")
            .with("guid", 1u64)
            .with("vdev_stats", degraded)
            .with("children", vec![mirror]);
        let v = Vdev::from_config(&root).unwrap();
        assert_eq!(v.state(), VdevState::Degraded);
        assert_eq!(v.children()[0].kind(), "mirror");
        let leaves = v.leaves();
        assert_eq!(leaves.len(), 2);
        assert_eq!(leaves[0].errors().total(), 4);
        assert_eq!(leaves[1].state(), VdevState::Unavailable);
        assert_eq!(leaves[1].path(), Some(Path::new("/b")));
        assert!(v.to_string().contains("    /b UNAVAIL"));
    }

    #[test]
    fn short_or_missing_stats_are_not_a_panic() {
        let v = Vdev::from_config(&leaf("/x", vec![0, 6])).unwrap();
        assert_eq!(v.state(), VdevState::Degraded);
        assert_eq!(v.errors().total(), 0);
        let bare = NvList::new().with("type", "disk");
        assert_eq!(
            Vdev::from_config(&bare).unwrap().state(),
            VdevState::Unknown
        );
        assert!(Vdev::from_config(&NvList::new()).is_err());
    }
}
