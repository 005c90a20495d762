//! Snapshots: the typed handle, batch (atomic) creation with user
//! properties, and batch destruction.
//!
//! ```no_run
//! use zfs_core::{DatasetName, NvList, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let a: DatasetName = "tank/a".parse()?;
//! let b: DatasetName = "tank/b".parse()?;
//! // One atomic snapshot of both filesystems, tagged with a user property.
//! let snaps = [a.snapshot("nightly")?, b.snapshot("nightly")?];
//! let mut props = NvList::new();
//! props.insert("com.example:job", "nightly");
//! zfs.snapshot_with_props(&snaps, &props)?;
//! zfs.destroy_snapshots(&snaps, false)?;
//! # Ok::<(), zfs_core::Error>(())
//! ```

use crate::error::{Errno, Error, ErrorKind, Result};
use crate::ffi;
use crate::name::SnapshotName;
use crate::nvlist::NvList;
use crate::Zfs;

/// A snapshot: its name, GUID and creation txg.
///
/// The GUID identifies a snapshot across pools: a received snapshot keeps
/// its source's GUID, which is how replication finds a common base.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    name: SnapshotName,
    guid: u64,
    createtxg: u64,
}

impl Snapshot {
    /// A snapshot with these facts (for test doubles and remote sides).
    pub fn new(name: SnapshotName, guid: u64, createtxg: u64) -> Self {
        Snapshot {
            name,
            guid,
            createtxg,
        }
    }

    pub fn name(&self) -> &SnapshotName {
        &self.name
    }

    pub fn guid(&self) -> u64 {
        self.guid
    }

    pub fn createtxg(&self) -> u64 {
        self.createtxg
    }
}

fn name_set<'a>(names: impl IntoIterator<Item = &'a SnapshotName>) -> NvList {
    let mut l = NvList::new();
    for n in names {
        l.insert_flag(n.as_str());
    }
    l
}

/// The kernel's batch rules, checked up front for a clear error: one pool
/// per batch, and (for creation) one snapshot per dataset.
fn check_batch(
    operation: &'static str,
    snapshots: &[SnapshotName],
    one_per_dataset: bool,
) -> Result<()> {
    let Some(first) = snapshots.first() else {
        return Ok(());
    };
    if let Some(other) = snapshots
        .iter()
        .find(|s| s.dataset().pool() != first.dataset().pool())
    {
        return Err(Error::invalid(
            operation,
            other.as_str(),
            ErrorKind::CrossPool,
            format!(
                "is not in pool {} like {first}: a batch covers one pool",
                first.dataset().pool()
            ),
        ));
    }
    if one_per_dataset {
        for (i, s) in snapshots.iter().enumerate() {
            if let Some(dup) = snapshots[..i].iter().find(|o| o.dataset() == s.dataset()) {
                return Err(Error::invalid(
                    operation,
                    s.as_str(),
                    ErrorKind::InvalidArgument,
                    format!(
                        "{dup} is in the same batch: ZFS takes one snapshot per dataset per batch"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `lzc_destroy_snaps` reports a snapshot with clones as EEXIST ("can't
/// delete a branch point"): that is a dependent, so [`ErrorKind::Busy`].
fn destroy_kind(errno: Errno) -> ErrorKind {
    if errno == Errno(libc::EEXIST) {
        ErrorKind::Busy
    } else {
        ErrorKind::of(errno)
    }
}

impl Zfs {
    /// Takes the given snapshots atomically: all are created in one
    /// transaction group, or none is. They must all be in one pool
    /// ([`ErrorKind::CrossPool`] otherwise).
    pub fn snapshot(&self, snapshots: &[SnapshotName]) -> Result<()> {
        self.snapshot_with_props(snapshots, &NvList::new())
    }

    /// [`snapshot`](Self::snapshot), setting user properties
    /// (`module:property` = string) on every new snapshot.
    pub fn snapshot_with_props(&self, snapshots: &[SnapshotName], props: &NvList) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        check_batch("lzc_snapshot", snapshots, true)?;
        ffi::lzc_snapshot(&name_set(snapshots), props)
            .map_err(|(errno, list)| Error::from_batch("lzc_snapshot", errno, list))
    }

    /// Destroys the given snapshots atomically. A snapshot that is held or
    /// has clones is [`ErrorKind::Busy`] (and nothing is destroyed); with
    /// `defer`, it is marked for destruction when the last hold or clone
    /// goes instead.
    pub fn destroy_snapshots(&self, snapshots: &[SnapshotName], defer: bool) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        check_batch("lzc_destroy_snaps", snapshots, false)?;
        ffi::lzc_destroy_snaps(&name_set(snapshots), defer).map_err(|(errno, list)| {
            Error::from_batch_as("lzc_destroy_snaps", errno, list, destroy_kind)
        })
    }
}
