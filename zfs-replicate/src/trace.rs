//! `tracing` output, with feature `tracing`: a span per run
//! (`zfs_replicate::run`: source, target), per step (`step`: source,
//! target, action) and per transfer (`transfer`: snapshot, base, resume),
//! every [`Event`] as a tracing event (progress at TRACE, a rollback and a
//! cleared resume token at WARN, the rest at INFO), and a failed step at
//! ERROR. Without the feature this is nothing.

use crate::event::Event;
use crate::plan::{Action, Plan, Step};

/// A span, or nothing without the feature.
#[derive(Clone)]
pub(crate) struct Span(#[cfg(feature = "tracing")] tracing::Span);

/// The guard of an entered span.
#[cfg(feature = "tracing")]
pub(crate) type Entered<'a> = tracing::span::Entered<'a>;
/// The guard of an entered span.
#[cfg(not(feature = "tracing"))]
pub(crate) struct Entered<'a>(std::marker::PhantomData<&'a ()>);

impl Span {
    pub(crate) fn enter(&self) -> Entered<'_> {
        #[cfg(feature = "tracing")]
        return self.0.enter();
        #[cfg(not(feature = "tracing"))]
        Entered(std::marker::PhantomData)
    }
}

fn action(step: &Step) -> &'static str {
    match step.action {
        Action::Full { .. } => "full",
        Action::Incremental { .. } => "incremental",
        Action::Resume { .. } => "resume",
        Action::UpToDate => "up to date",
        Action::NoSourceSnapshot => "no source snapshot",
    }
}

/// The span of a whole run.
pub(crate) fn run(plan: &Plan) -> Span {
    let _ = plan;
    Span(
        #[cfg(feature = "tracing")]
        tracing::info_span!(
            "zfs_replicate::run",
            source = %plan.replication.source(),
            target = %plan.replication.target(),
            steps = plan.steps.len(),
        ),
    )
}

/// The span of one step, inside the run's (entered on a worker thread).
pub(crate) fn step(run: &Span, step: &Step) -> Span {
    let _ = (run, action(step));
    Span(
        #[cfg(feature = "tracing")]
        tracing::info_span!(
            parent: &run.0,
            "step",
            source = %step.source,
            target = %step.target,
            action = action(step),
        ),
    )
}

/// The span of one transfer, inside the current (step's) span.
pub(crate) fn transfer(
    snapshot: &zfs_core::SnapshotName,
    base: Option<&zfs_core::SnapshotOrBookmark>,
    resume: bool,
) -> Span {
    let _ = (snapshot, base, resume);
    Span(
        #[cfg(feature = "tracing")]
        tracing::debug_span!(
            "transfer",
            snapshot = %snapshot,
            base = base.map(|b| b.as_str()),
            resume,
        ),
    )
}

/// An event of the run, as a tracing event.
pub(crate) fn event(e: &Event<'_>) {
    let _ = e;
    #[cfg(feature = "tracing")]
    match e {
        Event::Progress(p) => tracing::trace!(
            target: "zfs_replicate",
            dataset = %p.target,
            bytes = p.bytes,
            job_bytes = p.job_bytes,
            job_estimated_bytes = p.job_estimated_bytes,
            "progress"
        ),
        Event::RolledBack { .. } | Event::ResumeCleared { .. } => {
            tracing::warn!(target: "zfs_replicate", "{e}")
        }
        _ => tracing::info!(target: "zfs_replicate", "{e}"),
    }
}

/// A step that failed.
pub(crate) fn step_failed(step: &Step, error: &crate::Error) {
    let _ = (step, error);
    #[cfg(feature = "tracing")]
    tracing::error!(
        target: "zfs_replicate",
        dataset = %step.target,
        kind = ?error.kind(),
        "{error}"
    );
}
