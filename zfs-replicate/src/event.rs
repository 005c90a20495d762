//! Events: what a run is doing, as one stream per job, for an embedder's
//! log, progress bar or status page.
//!
//! ```
//! use zfs_replicate::{Event, ExecuteOptions};
//!
//! let opts = ExecuteOptions::new().on_event(|event| match event {
//!     Event::StepStarted { index, count, step } => {
//!         eprintln!("[{index}/{count}] {} -> {}", step.source, step.target)
//!     }
//!     Event::Progress(p) => {
//!         eprint!("\r{} of about {} bytes", p.job_bytes, p.job_estimated_bytes)
//!     }
//!     Event::StepFinished { target, bytes, .. } => eprintln!("\n{target}: {bytes} bytes"),
//!     other => eprintln!("{other}"),
//! });
//! # let _ = opts;
//! ```
//!
//! The observer is called from the run's threads (transfers of several
//! datasets run in parallel), so it must be quick and `Send + Sync`.
//! Events of one dataset come in order: started, (cleared, rolled back,
//! resumed), progress…, finished.

use std::fmt;
use std::sync::Arc;

use zfs_core::{DatasetName, SnapshotName};

use crate::execute::Transfer;
use crate::plan::{Plan, Step};
use crate::prune::PruneReport;

/// Bytes moved, sent as a transfer goes.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// The dataset being replicated into.
    pub target: &'a DatasetName,
    /// The snapshot being transferred.
    pub snapshot: &'a SnapshotName,
    /// Bytes moved for this dataset so far.
    pub bytes: u64,
    /// The plan's estimate for this dataset.
    pub estimated_bytes: u64,
    /// Bytes moved by the whole run so far (every dataset).
    pub job_bytes: u64,
    /// The plan's estimate for the whole run.
    pub job_estimated_bytes: u64,
}

/// A side of a replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// One thing a run did or is doing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event<'a> {
    /// [`sync`](crate::Replication::sync) took its snapshot, `name`, on
    /// `datasets` source datasets at once.
    SnapshotTaken { name: &'a str, datasets: usize },
    /// The plan about to run (from [`sync`](crate::Replication::sync):
    /// planned again after its snapshot, so it includes it).
    Planned { plan: &'a Plan },
    /// A step with work to do starts: the `index`-th (from 1) of the
    /// `count` that have any.
    StepStarted {
        index: usize,
        count: usize,
        step: &'a Step,
    },
    /// A stale resumable receive on the target was aborted.
    ResumeCleared { target: &'a DatasetName },
    /// The target was rolled back to `to`, after destroying `destroyed`.
    RolledBack {
        target: &'a DatasetName,
        to: &'a SnapshotName,
        destroyed: &'a [SnapshotName],
    },
    /// An interrupted transfer of `snapshot` resumes from the target's
    /// token.
    Resumed {
        target: &'a DatasetName,
        snapshot: &'a SnapshotName,
    },
    /// Bytes moved.
    Progress(Progress<'a>),
    /// A step's transfers completed.
    StepFinished {
        index: usize,
        count: usize,
        target: &'a DatasetName,
        transfers: &'a [Transfer],
        bytes: u64,
    },
    /// A target dataset whose source is gone was destroyed
    /// ([`destroy_removed`](crate::Replication::destroy_removed)).
    Destroyed { target: &'a DatasetName },
    /// Our snapshots were pruned on one side.
    Pruned { side: Side, report: &'a PruneReport },
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::SnapshotTaken { name, datasets } => {
                write!(f, "snapshot {name} taken on {datasets} dataset(s)")
            }
            Event::Planned { plan } => write!(
                f,
                "planned {} step(s), about {} bytes",
                plan.steps.len(),
                plan.estimated_bytes()
            ),
            Event::StepStarted { index, count, step } => {
                write!(f, "[{index}/{count}] {} -> {}", step.source, step.target)
            }
            Event::ResumeCleared { target } => write!(f, "{target}: stale resume token cleared"),
            Event::RolledBack {
                target,
                to,
                destroyed,
            } => write!(
                f,
                "{target}: rolled back to {to} ({} newer snapshot(s) destroyed)",
                destroyed.len()
            ),
            Event::Resumed { target, snapshot } => {
                write!(f, "{target}: resuming the transfer of {snapshot}")
            }
            Event::Progress(p) => write!(
                f,
                "{}: {} bytes of {} ({} of about {} in all)",
                p.target, p.bytes, p.snapshot, p.job_bytes, p.job_estimated_bytes
            ),
            Event::StepFinished {
                index,
                count,
                target,
                transfers,
                bytes,
            } => write!(
                f,
                "[{index}/{count}] {target}: {} transfer(s), {bytes} bytes",
                transfers.len()
            ),
            Event::Destroyed { target } => write!(f, "{target}: destroyed (its source is gone)"),
            Event::Pruned { side, report } => write!(
                f,
                "pruned {} snapshot(s) on the {side}",
                report.destroyed.len()
            ),
        }
    }
}

/// Receives a run's events; called from its threads.
pub type Observer = Arc<dyn Fn(&Event<'_>) + Send + Sync>;
