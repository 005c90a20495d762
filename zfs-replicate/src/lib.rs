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
//! - [`prune`] and [`retention`]: our own `<prefix>_<UTC time>` snapshots,
//!   kept by count or by a time grid, per side.
//! - [`select`]: which datasets (name globs, a user property) and which
//!   snapshots a replication carries.
//! - [`event`]: one stream of events per job (steps *i of n*, progress with
//!   the job's totals, rollbacks, prunes); [`SyncRun`]: a sync step by step.
//! - [`mod@file`] and [`stream`]: streams kept in files, verified record by
//!   record without a pool; `parity` (default feature): a parity sidecar
//!   beside a stream file, to find, repair, and receive through damage.
//!
//! Features:
//! - `parity` (default): `zfs_replicate::parity` (Reed–Solomon with
//!   `reed-solomon-simd`, block digests with `blake3`).
//! - `remote` (default): `zfs_replicate::remote`, the wire protocol, the
//!   client endpoint and the server. It enables `serde`.
//! - `zstd`: zstd on the wire, when both sides have it.
//! - `tracing`: spans per run, step and transfer, and every [`Event`] as a
//!   tracing event.
//! - `serde`: `serde::Serialize` on [`Plan`], [`Step`], [`Action`],
//!   [`Base`], [`Divergence`], [`Report`], [`SyncReport`] and the prune
//!   reports (`Deserialize` too on the plain data: `Action`, `Base`,
//!   `Divergence`, `Rollback`, `Listing`, `Transfer`, the prune reports),
//!   shaped for JSON readers (`backup plan --json`, `backup sync --json`):
//!   - names are strings; a snapshot or bookmark is
//!     `{"name", "guid", "createtxg"}`. GUIDs are 64-bit integers: read
//!     them as such (a reader that uses doubles rounds them);
//!   - enums are objects tagged by `"kind"`, in snake case:
//!     `{"kind": "incremental", "base": {"kind": "snapshot", "name": …},
//!     "target_base": …, "snapshots": […]}`, `{"kind": "up_to_date"}`,
//!     `{"kind": "target_modified", "base": …, "written": …}`;
//!   - a plan is `{"source", "target", "recursive", "raw", "rollback",
//!     "destroy_removed", "steps", "removed_on_source", "estimated_bytes",
//!     "up_to_date"}`; in a step, `flags` are words (`["embed_data",
//!     "large_block", "compress"]`), `receive_props` an object, and
//!     `receive_overrides` `{"set": {…}, "exclude": […]}`, the values as
//!     the kernel takes them (`"readonly": 1`, `"canmount": 2` for noauto);
//!     a pending resume's decoded `token` is an object of its fields;
//!   - a report's `transfers` are one list of `{"target", "snapshot",
//!     "bytes"}` (the source's snapshot), in order.
//!
//!   Tagged enums deserialize only from self-describing formats (JSON, not
//!   postcard).
//!
//! Backups are created `readonly=on` and `canmount=noauto`
//! ([`BACKUP_DEFAULTS`](plan::BACKUP_DEFAULTS), local properties): a backup
//! never mounts by itself over live paths, and mounted on purpose it is
//! read-only, so reading its files changes nothing the next run would call
//! divergence.
//!
//! # From async code
//!
//! Every call blocks while the kernel works, and the handles are `Send +
//! Sync`: run a sync on a blocking thread (with tokio,
//! `tokio::task::spawn_blocking`), and cancel it from the async side with
//! its [`CancelToken`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use zfs_core::Zfs;
//! use zfs_replicate::{CancelToken, ExecuteOptions, Replication};
//!
//! let zfs = Arc::new(Zfs::open()?);
//! let repl = Replication::new("tank/home".parse()?, "pipe/home".parse()?);
//! let cancel = CancelToken::new();
//! let opts = ExecuteOptions::new().cancel_token(cancel.clone());
//! // With tokio: `tokio::task::spawn_blocking(move || …).await`.
//! let job = std::thread::spawn(move || repl.sync(&zfs, &opts, Some(7)));
//! // On Ctrl-C: cancel.cancel();
//! let report = job.join().expect("no panic")?;
//! # let _ = (report, cancel);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use zfs_core as core;

/// What an async runtime needs of the handles (checked at compile time).
const _: () = {
    const fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<zfs_core::Zfs>();
    send_sync::<Replication>();
    send_sync::<ExecuteOptions>();
    send_sync::<Plan>();
    send_sync::<Error>();
    send_sync::<SyncReport>();
};

/// The crate README's example compiles (checked as a doc test; the
/// workspace README's is checked by the root package).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod endpoint;
pub mod error;
pub mod event;
pub mod execute;
pub mod file;
mod lock;
mod parallel;
#[cfg(feature = "parity")]
pub mod parity;
pub mod plan;
pub mod prune;
#[cfg(feature = "remote")]
pub mod remote;
pub mod retention;
pub mod select;
#[cfg(feature = "serde")]
mod serialize;
pub mod stream;
mod sync;
mod trace;

pub use endpoint::{Endpoint, Op};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, Observer, Progress, Side};
pub use execute::{execute, execute_with, CancelToken, ExecuteOptions, Report, Transfer};
pub use plan::{Action, Base, Divergence, Listing, Plan, Replication, Step};
pub use select::{DatasetFilter, Initial, SnapshotFilter};
pub use sync::{SyncPreview, SyncRun};

use endpoint::Local;
use zfs_core::{DatasetName, Zfs};

/// What [`Replication::sync_with`] keeps of our snapshots on each side
/// (None: that side is not pruned): the newest N, or a
/// [`Grid`](retention::Grid).
///
/// ```
/// use zfs_replicate::retention::Rule;
/// use zfs_replicate::Keep;
///
/// // 48 hourly on the laptop; a grid on the backup drive.
/// let keep = Keep {
///     source: Some(Rule::Newest(48)),
///     target: Some(Rule::Grid("1h:24,1d:30,1w:8,1m:12".parse()?)),
/// };
/// # Ok::<(), zfs_replicate::retention::GridError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    pub source: Option<retention::Rule>,
    pub target: Option<retention::Rule>,
}

impl Keep {
    /// The newest `keep` on both sides (None: no pruning).
    pub fn both(keep: Option<usize>) -> Keep {
        Keep {
            source: keep.map(retention::Rule::Newest),
            target: keep.map(retention::Rule::Newest),
        }
    }
}

/// What [`Replication::sync`] did.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SyncReport {
    /// The snapshot taken on the source (short name).
    pub snapshot: String,
    pub plan: Plan,
    pub report: Report,
    pub pruned_source: prune::PruneReport,
    pub pruned_target: prune::PruneReport,
}

impl Replication {
    /// Refuses, before anything changes, a run that an endpoint would stop
    /// halfway (a remote server's policy): what `sync` with `keep` needs of
    /// each side.
    fn check_allowed(
        &self,
        source: &dyn Endpoint,
        target: &dyn Endpoint,
        keep: &Keep,
    ) -> Result<()> {
        use Op::*;
        let mut needs: Vec<(&dyn Endpoint, &DatasetName, Op)> = vec![
            (source, &self.source, List),
            (source, &self.source, Send),
            (source, &self.source, Snapshot),
            (source, &self.source, Bookmark),
            (source, &self.source, Hold),
            (target, &self.target, List),
            (target, &self.target, Receive),
            (target, &self.target, Hold),
        ];
        if keep.source.is_some() {
            needs.push((source, &self.source, DestroySnapshot));
        }
        if keep.target.is_some() {
            needs.push((target, &self.target, DestroySnapshot));
        }
        if self.rollback {
            needs.push((target, &self.target, Rollback));
            needs.push((target, &self.target, DestroySnapshot));
        }
        if self.destroy_removed {
            needs.push((target, &self.target, DestroyDataset));
        }
        if self.properties || !plan::only_backup_defaults(self.receive_overrides()) {
            needs.push((target, &self.target, SetProperty));
        }
        for (side, dataset, op) in needs {
            if let Some(reason) = side.refusal(op, dataset) {
                return Err(Error::PermissionDenied {
                    endpoint: side.describe(),
                    dataset: dataset.clone(),
                    operation: op,
                    reason,
                });
            }
        }
        Ok(())
    }

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
        let local = Local::new(zfs);
        self.sync_with(&local, &local, opts, Keep::both(keep))
    }

    /// [`sync`](Replication::sync) with the source and the target as
    /// endpoints, and retention chosen per side. A change an endpoint would
    /// refuse (a remote policy) is refused here, before anything changes.
    ///
    /// The same as [`begin_sync`](Replication::begin_sync), then
    /// [`SyncRun::take_snapshot`], [`SyncRun::execute`] and
    /// [`SyncRun::prune`].
    pub fn sync_with(
        &self,
        source: &dyn Endpoint,
        target: &dyn Endpoint,
        opts: &ExecuteOptions,
        keep: Keep,
    ) -> Result<SyncReport> {
        let mut run = self.begin_sync(source, target, &keep)?;
        run.take_snapshot(opts)?;
        run.execute(opts)?;
        run.prune(opts)?;
        run.finish()
    }
}
