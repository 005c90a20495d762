//! User holds: a held snapshot cannot be destroyed.
//!
//! Temporary holds are bound to a cleanup file descriptor: [`HoldGuard`]
//! releases them on drop, and the kernel releases them when the descriptor
//! closes, even if the process is killed. Nothing leaks.
//!
//! ```no_run
//! use zfs_core::{SnapshotName, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let base: SnapshotName = "tank/home@base".parse()?;
//! {
//!     let _guard = zfs.hold_temporary(&[(base.clone(), "myapp:transfer".to_string())])?;
//!     // `base` cannot be destroyed here.
//!     assert!(zfs.holds(&base)?.contains_key("myapp:transfer"));
//! } // released
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Errno, Error, ErrorKind, Result};
use crate::ffi;
use crate::name::AnyName;
use crate::name::SnapshotName;
use crate::nvlist::{NvList, NvValue};
use crate::Zfs;

/// The longest hold tag the kernel stores: a ZAP name of `MAXNAMELEN` (256)
/// bytes with its NUL. (`dsl_userhold.c` only refuses `strlen > MAXNAMELEN`,
/// so a 256-byte tag passes that check yet does not fit the ZAP.)
pub const MAX_TAG_LEN: usize = 255;
/// The longest tag of a temporary hold: the kernel also records it as
/// `<object in hex>-<tag>`, with a prefix of up to `MAX_TAG_PREFIX_LEN` (17)
/// bytes, and that must fit in `MAXNAMELEN` with its NUL.
pub const MAX_TEMPORARY_TAG_LEN: usize = 256 - 17 - 1;

/// Temporary holds that are released when the guard drops (or, if the
/// process dies, when the kernel closes its cleanup descriptor).
#[derive(Debug)]
pub struct HoldGuard {
    holds: Vec<(SnapshotName, String)>,
    cleanup_fd: Option<OwnedFd>,
}

impl HoldGuard {
    /// The holds this guard owns.
    pub fn holds(&self) -> &[(SnapshotName, String)] {
        &self.holds
    }

    /// Releases the holds now, reporting failures (dropping releases too,
    /// ignoring them).
    pub fn release(mut self) -> Result<()> {
        let holds = std::mem::take(&mut self.holds);
        let result = release_all(&holds);
        // Closing the cleanup fd releases anything left.
        self.cleanup_fd.take();
        result
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        let holds = std::mem::take(&mut self.holds);
        let _ = release_all(&holds);
    }
}

/// Releases holds, one call per tag so that several tags on one snapshot work.
fn release_all(holds: &[(SnapshotName, String)]) -> Result<()> {
    let mut first_error = None;
    for chunk in group_by_unique_snapshot(holds) {
        let mut l = NvList::new();
        for (snap, tag) in chunk {
            l.insert(
                snap.as_str(),
                NvList::new().with(tag.as_str(), crate::NvValue::Boolean),
            );
        }
        if let Err((errno, list)) = ffi::lzc_release(&l) {
            first_error.get_or_insert(Error::from_batch("lzc_release", errno, list));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Splits holds into batches in which each snapshot appears once (an nvlist
/// has unique keys).
fn group_by_unique_snapshot(holds: &[(SnapshotName, String)]) -> Vec<Vec<&(SnapshotName, String)>> {
    let mut batches: Vec<Vec<&(SnapshotName, String)>> = Vec::new();
    for h in holds {
        match batches
            .iter_mut()
            .find(|b| b.iter().all(|(s, _)| *s != h.0))
        {
            Some(b) => b.push(h),
            None => batches.push(vec![h]),
        }
    }
    batches
}

impl Zfs {
    fn hold_impl(&self, holds: &[(SnapshotName, String)], cleanup: Option<&OwnedFd>) -> Result<()> {
        const OP: &str = "lzc_hold";
        let max = if cleanup.is_some() {
            MAX_TEMPORARY_TAG_LEN
        } else {
            MAX_TAG_LEN
        };
        for (snap, tag) in holds {
            let problem = if tag.is_empty() {
                Some("a hold tag cannot be empty".to_owned())
            } else if tag.contains('\0') {
                Some(format!("hold tag {tag:?} contains NUL"))
            } else if tag.len() > max {
                Some(format!(
                    "a hold tag is at most {max} bytes{}, this one is {}",
                    if cleanup.is_some() {
                        " for a temporary hold"
                    } else {
                        ""
                    },
                    tag.len()
                ))
            } else {
                None
            };
            if let Some(reason) = problem {
                return Err(Error::invalid(
                    OP,
                    snap.as_str(),
                    ErrorKind::InvalidName,
                    reason,
                ));
            }
        }
        // The kernel skips holds on missing snapshots and tags already
        // present, and reports them only in an errlist; check first so
        // those are clear errors, and nothing is taken.
        let mut problems = NvList::new();
        for (snap, tag) in holds {
            match self.holds(snap) {
                Ok(h) if h.contains_key(tag) => {
                    problems.insert(snap.as_str(), libc::EEXIST);
                }
                Ok(_) => {}
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                    problems.insert(snap.as_str(), libc::ENOENT);
                }
                Err(e) => return Err(e),
            }
        }
        let first_code = problems.iter().find_map(|(_, v)| match v {
            NvValue::I32(code) => Some(*code),
            _ => None,
        });
        if let Some(code) = first_code {
            return Err(Error::from_batch(OP, Errno(code), Some(problems)));
        }
        let mut taken: Vec<(SnapshotName, String)> = Vec::new();
        for batch in group_by_unique_snapshot(holds) {
            let mut l = NvList::new();
            for (snap, tag) in &batch {
                l.insert(snap.as_str(), tag.as_str());
            }
            let failure = match ffi::lzc_hold(&l, cleanup.map(|f| f.as_fd())) {
                Ok(Some(list)) if !list.is_empty() => {
                    Some(Error::from_batch(OP, Errno(libc::ENOENT), Some(list)))
                }
                Ok(_) => None,
                Err((errno, list)) => Some(Error::from_batch(OP, errno, list)),
            };
            let failed: Vec<String> = failure
                .as_ref()
                .map(|e| e.batch_failures().iter().map(|f| f.name.clone()).collect())
                .unwrap_or_default();
            taken.extend(
                batch
                    .into_iter()
                    .filter(|(s, _)| !failed.iter().any(|f| f == s.as_str()))
                    .cloned(),
            );
            if let Some(e) = failure {
                // Undo what this call took, so a failed hold leaves nothing.
                let _ = release_all(&taken);
                return Err(e);
            }
        }
        // A snapshot destroyed between the check and the hold is skipped
        // silently: confirm every hold is in place.
        for (snap, tag) in holds {
            let present = self
                .holds(snap)
                .map(|h| h.contains_key(tag))
                .unwrap_or(false);
            if !present {
                let _ = release_all(&taken);
                let errlist = NvList::new().with(snap.as_str(), libc::ENOENT);
                return Err(Error::from_batch(OP, Errno(libc::ENOENT), Some(errlist)));
            }
        }
        Ok(())
    }

    /// Places persistent user holds (`zfs hold`): they survive reboots until
    /// [`release`](Self::release)d. On any failure, holds taken by this call
    /// are released again. A tag already on a snapshot is
    /// [`ErrorKind::AlreadyExists`]. Tags are checked first: an empty tag, a
    /// NUL, or more than [`MAX_TAG_LEN`] bytes is [`ErrorKind::InvalidName`]
    /// and nothing is held.
    pub fn hold(&self, holds: &[(SnapshotName, String)]) -> Result<()> {
        self.hold_impl(holds, None)
    }

    /// Places temporary holds bound to a fresh cleanup descriptor. Tags are
    /// checked as for [`hold`](Self::hold), with a limit of
    /// [`MAX_TEMPORARY_TAG_LEN`] bytes.
    pub fn hold_temporary(&self, holds: &[(SnapshotName, String)]) -> Result<HoldGuard> {
        let fd = crate::open_dev_zfs()?;
        self.hold_impl(holds, Some(&fd))?;
        Ok(HoldGuard {
            holds: holds.to_vec(),
            cleanup_fd: Some(fd),
        })
    }

    /// Releases user holds. A hold that is not there is
    /// [`ErrorKind::NotFound`], and then none
    /// is released.
    pub fn release(&self, holds: &[(SnapshotName, String)]) -> Result<()> {
        // The kernel skips absent holds silently on success: check first.
        let mut missing = NvList::new();
        for (snap, tag) in holds {
            let present = match self.holds(snap) {
                Ok(h) => h.contains_key(tag),
                Err(e) if e.kind() == crate::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            if !present {
                missing.insert(snap.as_str(), libc::ENOENT);
            }
        }
        if !missing.is_empty() {
            return Err(Error::from_batch(
                "lzc_release",
                Errno(libc::ENOENT),
                Some(missing),
            ));
        }
        release_all(holds)
    }

    /// The holds on a snapshot: tag → creation time (seconds since the epoch).
    pub fn holds(&self, snapshot: &SnapshotName) -> Result<BTreeMap<String, u64>> {
        const OP: &str = "lzc_get_holds";
        let list = ffi::lzc_get_holds(&snapshot.to_c_name())
            .map_err(|e| Error::from_errno(OP, snapshot.as_str(), e))?;
        let mut out = BTreeMap::new();
        for (tag, _) in list.iter() {
            let when = list
                .get_u64(tag)
                .map_err(|e| Error::shape(OP, snapshot.as_str(), e))?;
            out.insert(tag.to_owned(), when);
        }
        Ok(out)
    }
}
