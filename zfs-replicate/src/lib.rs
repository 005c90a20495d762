//! Incremental ZFS replication, in process: no `zfs` subprocess, snapshots
//! matched by GUID, resumable transfers, holds that cannot leak, and no
//! silent `receive -F`.
//!
//! ```no_run
//! use zfs_core::Zfs;
//! use zfs_replicate::{ExecuteOptions, Replication};
//!
//! let zfs = Zfs::open()?;
//! let sync = Replication::new("tank".parse()?, "pipe/tank".parse()?)
//!     .recursive(true)
//!     .prefix("backup")
//!     .sync(&zfs, &ExecuteOptions::default(), Some(7))?;
//! println!("took {}, moved {} bytes", sync.snapshot, sync.report.bytes());
//! # Ok::<(), zfs_replicate::Error>(())
//! ```
//!
//! - [`plan`]: [`Replication::plan`] is a typed dry run; divergence is a
//!   [`Divergence`], resolved only by an explicit `rollback(true)`.
//! - [`mod@execute`]: send → pipe → relay → pipe → receive per snapshot, with
//!   temporary holds on both bases, a cancel token and a progress observer;
//!   a bookmark of the newest replicated snapshot stays on the source.
//! - [`prune`]: our own `<prefix>_<UTC time>` snapshots, retention by count.
//! - [`mod@file`] and [`stream`]: streams kept in files, verified record by
//!   record without a pool.
//!
//! Backups are received with `canmount=off`: a backup never mounts over live
//! paths, and reading files in a mounted backup would change it (atime), which
//! the next run reports as divergence.

pub use zfs_core as core;

/// The crate README's example compiles (checked as a doc test; the
/// workspace README's is checked by the root package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod endpoint;
pub mod error;
pub mod execute;
pub mod file;
mod lock;
mod parallel;
pub mod plan;
pub mod prune;
#[cfg(feature = "remote")]
pub mod remote;
pub mod stream;

pub use endpoint::Op;
pub use error::{Error, ErrorKind, Result};
pub use execute::{execute, CancelToken, ExecuteOptions, Observer, Progress, Report, Transfer};
pub use plan::{Action, Base, Divergence, Listing, Plan, Replication, Step};

use zfs_core::{DatasetName, Zfs};

/// What [`Replication::sync`] did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The snapshot taken on the source (short name).
    pub snapshot: String,
    pub plan: Plan,
    pub report: Report,
    pub pruned_source: prune::PruneReport,
    pub pruned_target: prune::PruneReport,
}

impl Replication {
    /// The whole job: check for divergence (changing nothing if there is
    /// any), take `<prefix>_<UTC time>` on the source, replicate, and with
    /// `keep` prune our snapshots on both sides, never the new common base.
    ///
    /// One run per target at a time: a second one gets [`Error::Busy`]. A
    /// cancel returns [`Error::Cancelled`] and nothing is pruned.
    pub fn sync(
        &self,
        zfs: &Zfs,
        opts: &ExecuteOptions,
        keep: Option<usize>,
    ) -> Result<SyncReport> {
        let _lock = lock::TargetLock::acquire(&self.target)?;
        let before = self.plan(zfs)?;
        let divergences = before.divergences();
        if !divergences.is_empty() {
            return Err(Error::Diverged(divergences));
        }
        if opts.cancel.is_cancelled() {
            return Err(Error::Cancelled {
                done: Box::default(),
            });
        }
        let snapshot = prune::new_snapshot_name(&self.prefix, std::time::SystemTime::now());
        self.check_new_snapshot_names(&before, &snapshot)?;
        // The datasets the plan walked: no second walk of the tree.
        let sources: Vec<DatasetName> = before.steps.iter().map(|s| s.source.clone()).collect();
        prune::snapshot_datasets(zfs, &sources, &snapshot)?;
        // Planned again for the same datasets: no second walk of the trees.
        let plan = self.plan_datasets(zfs, &sources, before.removed_on_source.clone())?;
        let report = execute::execute_locked(zfs, &plan, opts)?;
        let mut pruned_source = prune::PruneReport::default();
        let mut pruned_target = prune::PruneReport::default();
        if let Some(keep) = keep {
            if opts.cancel.is_cancelled() {
                // Replicated, but the cancel came before pruning: prune nothing.
                return Err(Error::Cancelled {
                    done: Box::new(report),
                });
            }
            let retention = prune::Retention::keep_newest(self.prefix.clone(), keep);
            let protect: Vec<u64> = plan
                .steps
                .iter()
                .filter_map(|s| zfs.snapshot_info(&s.source.snapshot(&snapshot).ok()?).ok())
                .map(|s| s.guid())
                .collect();
            // The plan's datasets again: what was snapshotted on the source
            // (`sources`); on the target, what was received into, and what
            // was kept of datasets whose source is gone.
            let mut targets: Vec<DatasetName> = plan
                .steps
                .iter()
                .map(|s| s.target.clone())
                .filter(|t| zfs.exists(t))
                .collect();
            if !self.destroy_removed {
                targets.extend(plan.removed_on_source.iter().cloned());
            }
            // Both sides at once: each waits on its own pool's listings and
            // transaction group.
            let sides = [sources.as_slice(), targets.as_slice()];
            let mut pruned = parallel::in_parallel(&sides, |datasets| {
                prune::prune_datasets(zfs, datasets, &retention, &protect)
            })?
            .into_iter();
            pruned_source = pruned.next().unwrap_or_default();
            pruned_target = pruned.next().unwrap_or_default();
        }
        Ok(SyncReport {
            snapshot,
            plan,
            report,
            pruned_source,
            pruned_target,
        })
    }
}
