//! A sync taken apart: what [`Replication::sync_with`] does, step by step,
//! for an embedder that shows the plan first, asks, or does something of
//! its own between the steps, without copying what protects the common
//! base; and a preview of a sync that changes nothing.
//!
//! ```no_run
//! use zfs_core::Zfs;
//! use zfs_replicate::endpoint::Local;
//! use zfs_replicate::{ExecuteOptions, Keep, Replication};
//!
//! let zfs = Zfs::open()?;
//! let local = Local::new(&zfs);
//! let repl = Replication::new("tank/home".parse()?, "pipe/home".parse()?);
//! let keep = Keep::both(Some(7));
//! let opts = ExecuteOptions::new();
//! // Locks the target, plans, refuses a diverged target.
//! let mut run = repl.begin_sync(&local, &local, &keep)?;
//! println!("{}\nthen snapshot {}", run.plan(), run.snapshot_name());
//! run.take_snapshot(&opts)?; // the plan now includes the new snapshot
//! run.execute(&opts)?;
//! run.prune(&opts)?; // as `keep` says; never the new common base
//! let report = run.finish()?;
//! # let _ = report;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use zfs_core::DatasetName;

use crate::endpoint::{Endpoint, Lease, Sides};
use crate::error::{Error, Result};
use crate::event::{Event, Side};
use crate::execute::{self, ExecuteOptions, Report};
use crate::plan::{Action, Plan, Replication};
use crate::prune::{self, PruneReport};
use crate::{parallel, Keep, SyncReport};

/// What a [`sync`](Replication::sync) would do, computed without changing
/// anything (no lock, no snapshot): the [`plan`](Self::plan) as things
/// are, then the snapshot it would take, sent to every step's target.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SyncPreview {
    /// The snapshot `sync` would take (short name; the time is now's).
    pub snapshot: String,
    /// The plan before that snapshot.
    pub plan: Plan,
}

impl fmt::Display for SyncPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.plan)?;
        let full = self
            .plan
            .steps
            .iter()
            .filter(|s| s.action == Action::NoSourceSnapshot)
            .count();
        write!(
            f,
            "then: snapshot @{} on {} dataset(s), sent to each target",
            self.snapshot,
            self.plan.steps.len()
        )?;
        if full > 0 {
            write!(f, " ({full} in full: their first snapshot)")?;
        }
        writeln!(f)
    }
}

/// A sync in progress, its target locked: made by
/// [`Replication::begin_sync`], then [`take_snapshot`](Self::take_snapshot),
/// [`execute`](Self::execute), [`prune`](Self::prune) and
/// [`finish`](Self::finish), in that order, each once (a step out of order,
/// or after a step failed, is [`Error::OutOfOrder`]: begin again). Dropping
/// it releases the lock; what was done stays done.
pub struct SyncRun<'a> {
    repl: &'a Replication,
    sides: Sides<'a>,
    _lock: Lease,
    plan: Plan,
    removed_on_source: Vec<DatasetName>,
    snapshot: String,
    keep: Keep,
    taken: bool,
    failed: bool,
    report: Option<Report>,
    pruned: Option<(PruneReport, PruneReport)>,
}

impl fmt::Debug for SyncRun<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncRun")
            .field("snapshot", &self.snapshot)
            .field("taken", &self.taken)
            .field("executed", &self.report.is_some())
            .field("pruned", &self.pruned.is_some())
            .finish()
    }
}

impl Replication {
    /// Previews [`sync_with`](Self::sync_with): the plan as things are and
    /// the snapshot it would take. Changes nothing, takes no lock.
    pub fn preview_sync(
        &self,
        source: &dyn Endpoint,
        target: &dyn Endpoint,
    ) -> Result<SyncPreview> {
        let plan = self.plan_with(source, target)?;
        let snapshot = self.sync_snapshot_name(&plan)?;
        Ok(SyncPreview { snapshot, plan })
    }

    /// The snapshot a sync with `plan` takes, now: its names fit on both
    /// sides, and the snapshot filter admits it.
    fn sync_snapshot_name(&self, plan: &Plan) -> Result<String> {
        let snapshot = prune::new_snapshot_name(&self.prefix, std::time::SystemTime::now());
        self.check_new_snapshot_names(plan, &snapshot)?;
        self.check_filter_admits(plan, &snapshot)?;
        Ok(snapshot)
    }

    /// Refuses a snapshot filter that would leave out the snapshot a sync
    /// takes (sync would take it, send nothing, and protect a snapshot the
    /// target lacks).
    fn check_filter_admits(&self, plan: &Plan, short: &str) -> Result<()> {
        let Some(filter) = &self.snapshot_filter else {
            return Ok(());
        };
        for step in &plan.steps {
            let name = step.source.snapshot(short)?;
            if !filter.admits(&zfs_core::Snapshot::new(name.clone(), 0, u64::MAX)) {
                return Err(Error::InvalidFilter {
                    filter: "snapshot_filter".to_owned(),
                    reason: format!("it leaves out {name}, the snapshot sync takes"),
                });
            }
        }
        Ok(())
    }

    /// Starts a sync step by step: refuses what a side would not allow
    /// with `keep`, locks the target ([`Error::Busy`] if another run holds
    /// it), plans, and refuses a plan that selects nothing
    /// ([`Error::NothingSelected`]) or is diverged ([`Error::Diverged`]).
    /// Nothing has changed yet.
    pub fn begin_sync<'a>(
        &'a self,
        source: &'a dyn Endpoint,
        target: &'a dyn Endpoint,
        keep: &Keep,
    ) -> Result<SyncRun<'a>> {
        self.check_allowed(source, target, keep)?;
        let lock = target.lock(&self.target)?;
        let plan = self.plan_with(source, target)?;
        if plan.steps.is_empty() {
            return Err(Error::NothingSelected {
                dataset: self.source.clone(),
            });
        }
        let divergences = plan.divergences();
        if !divergences.is_empty() {
            return Err(Error::Diverged(divergences));
        }
        let snapshot = self.sync_snapshot_name(&plan)?;
        Ok(SyncRun {
            repl: self,
            sides: Sides { source, target },
            _lock: lock,
            removed_on_source: plan.removed_on_source.clone(),
            plan,
            snapshot,
            keep: keep.clone(),
            taken: false,
            failed: false,
            report: None,
            pruned: None,
        })
    }
}

impl SyncRun<'_> {
    /// The plan: before [`take_snapshot`](Self::take_snapshot), as things
    /// are; after it, including the new snapshot (what
    /// [`execute`](Self::execute) runs).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The snapshot this sync takes (short name), fixed when it began.
    pub fn snapshot_name(&self) -> &str {
        &self.snapshot
    }

    fn out_of_order(&self, step: &'static str, needs: &'static str) -> Error {
        Error::OutOfOrder { step, needs }
    }

    /// Marks the run failed when `r` is an error: no later step runs.
    fn watch<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Takes the snapshot on every planned source dataset at once, and
    /// plans again for the same datasets (no second walk).
    pub fn take_snapshot(&mut self, opts: &ExecuteOptions) -> Result<&Plan> {
        if self.taken || self.failed {
            return Err(self.out_of_order("take_snapshot", "a run that has not taken it yet"));
        }
        if opts.cancel.is_cancelled() {
            return Err(Error::Cancelled {
                done: Box::default(),
            });
        }
        let sources: Vec<DatasetName> = self.plan.steps.iter().map(|s| s.source.clone()).collect();
        let r = prune::snapshot_datasets(self.sides.source, &sources, &self.snapshot);
        self.watch(r)?;
        opts.emit(Event::SnapshotTaken {
            name: &self.snapshot,
            datasets: sources.len(),
        });
        let r = self
            .repl
            .plan_datasets(self.sides, &sources, self.removed_on_source.clone());
        self.plan = self.watch(r)?;
        self.taken = true;
        opts.emit(Event::Planned { plan: &self.plan });
        Ok(&self.plan)
    }

    /// Runs the plan (see [`execute`](crate::execute())).
    pub fn execute(&mut self, opts: &ExecuteOptions) -> Result<&Report> {
        if !self.taken || self.failed || self.report.is_some() {
            return Err(self.out_of_order("execute", "take_snapshot, once"));
        }
        let r = execute::execute_locked(self.sides, &self.plan, opts);
        let report = self.watch(r)?;
        Ok(self.report.insert(report))
    }

    /// Prunes our snapshots on each side as the `keep` given to
    /// [`begin_sync`](Replication::begin_sync) says (and was checked
    /// against), never the new common base (the snapshot this sync took):
    /// the target's pool is synced first, so that what was received is on
    /// disk before the source loses any snapshot. Both sides at once.
    pub fn prune(&mut self, opts: &ExecuteOptions) -> Result<(&PruneReport, &PruneReport)> {
        if self.report.is_none() || self.failed || self.pruned.is_some() {
            return Err(self.out_of_order("prune", "execute, and no prune yet"));
        }
        let keep = self.keep.clone();
        let r = self.prune_sides(&keep, opts);
        let pruned = self.watch(r)?;
        let (s, t) = self.pruned.insert(pruned);
        Ok((s, t))
    }

    fn prune_sides(
        &self,
        keep: &Keep,
        opts: &ExecuteOptions,
    ) -> Result<(PruneReport, PruneReport)> {
        let (source, target) = (self.sides.source, self.sides.target);
        let pruned = if keep.source.is_none() && keep.target.is_none() {
            (PruneReport::default(), PruneReport::default())
        } else {
            if opts.cancel.is_cancelled() {
                // Replicated, but the cancel came before pruning: prune nothing.
                return Err(Error::Cancelled {
                    done: Box::new(self.report.clone().unwrap_or_default()),
                });
            }
            if keep.source.is_some() {
                target.sync_pool(&self.repl.target)?;
            }
            let protect: Vec<u64> = self
                .plan
                .steps
                .iter()
                .filter_map(|s| {
                    source
                        .snapshot_info(&s.source.snapshot(&self.snapshot).ok()?)
                        .ok()
                })
                .map(|s| s.guid())
                .collect();
            // The plan's datasets: what was snapshotted on the source; on
            // the target, what was received into, and what was kept of
            // datasets whose source is gone.
            let sources: Vec<DatasetName> =
                self.plan.steps.iter().map(|s| s.source.clone()).collect();
            let mut targets: Vec<DatasetName> = Vec::with_capacity(self.plan.steps.len());
            for step in &self.plan.steps {
                if target.exists(&step.target)? {
                    targets.push(step.target.clone());
                }
            }
            if !self.repl.destroy_removed {
                targets.extend(self.plan.removed_on_source.iter().cloned());
            }
            // Both sides at once: each waits on its own pool's listings and
            // transaction group.
            let work = [
                (source, sources.as_slice(), &keep.source),
                (target, targets.as_slice(), &keep.target),
            ];
            let mut pruned = parallel::in_parallel(&work, |&(side, datasets, rule)| match rule {
                Some(rule) => {
                    let retention = prune::Retention::new(self.repl.prefix.clone(), rule.clone());
                    prune::prune_datasets(side, datasets, &retention, &protect)
                }
                None => Ok(PruneReport::default()),
            })?
            .into_iter();
            let pruned_source = pruned.next().unwrap_or_default();
            let pruned_target = pruned.next().unwrap_or_default();
            for (side, report, rule) in [
                (Side::Source, &pruned_source, &keep.source),
                (Side::Target, &pruned_target, &keep.target),
            ] {
                if rule.is_some() {
                    opts.emit(Event::Pruned { side, report });
                }
            }
            (pruned_source, pruned_target)
        };
        Ok(pruned)
    }

    /// What the sync did; releases the lock. Needs
    /// [`execute`](Self::execute) (a sync that was not pruned reports
    /// nothing pruned).
    pub fn finish(self) -> Result<SyncReport> {
        let Some(report) = self.report.filter(|_| !self.failed) else {
            return Err(Error::OutOfOrder {
                step: "finish",
                needs: "execute",
            });
        };
        let (pruned_source, pruned_target) = self.pruned.unwrap_or_default();
        Ok(SyncReport {
            snapshot: self.snapshot,
            plan: self.plan,
            report,
            pruned_source,
            pruned_target,
        })
    }
}
