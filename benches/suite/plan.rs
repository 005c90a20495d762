//! Planning against the peers' way: `zfs list -t snapshot -r` on both
//! sides, matched by GUID in Rust.

use zfs_replicate::Action;

use crate::cli::{sh, CliPlan};
use crate::context::{replication, Context};
use crate::measure::{profiled, timed, times};
use crate::recipe::Tree;
use crate::table::Row;

/// The state a plan is measured in.
#[derive(Debug, Clone, Copy)]
pub enum State {
    /// No cursor bookmark on the source; the target is up to date.
    Cold,
    /// Up to date, our cursor on the source.
    UpToDate,
    /// One snapshot per source dataset newer than the target's newest.
    NewSnapshot,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Cold => "plan, cold (no cursor bookmark)",
            State::UpToDate => "plan, up to date",
            State::NewSnapshot => "plan, one new snapshot per dataset",
        }
    }
}

pub fn row(ctx: &mut Context, tree: &Tree, state: State) -> Row {
    match state {
        State::Cold => ctx.make_cold(tree),
        State::UpToDate | State::NewSnapshot => ctx.make_warm(tree),
    }
    const NEW: &str = "bench-new";
    if let State::NewSnapshot = state {
        sh(&format!("zfs snapshot -r '{}@{NEW}'", tree.src()));
    }
    let (src, dst) = (tree.src(), tree.dst());
    let label = format!("{}, {}", state.label(), tree.label());
    let (ours, profile) = profiled(&label, || {
        times(ctx.runs, |_| {
            timed(|| {
                let plan = replication(tree)
                    .plan(&ctx.zfs)
                    .unwrap_or_else(|e| panic!("planning {src}: {e}"));
                check_ours(&plan, state);
            })
        })
    });
    let cli = times(ctx.runs, |_| {
        timed(|| check_cli(&CliPlan::compute(src.as_str(), dst.as_str()), state))
    });
    if let State::NewSnapshot = state {
        sh(&format!("zfs destroy -r '{src}@{NEW}'"));
    }
    Row {
        label,
        ours,
        cli: Some(cli),
        notes: profile,
    }
}

/// Plan time against snapshots per dataset (one dataset, up to date).
pub fn growth_row(ctx: &mut Context, tree: &Tree) -> Row {
    let mut row = row(ctx, tree, State::UpToDate);
    row.label = format!("plan growth: up to date, {}", tree.label());
    row
}

/// The plan is the one the state calls for (a check that the benchmark
/// measures what it says, not a performance assertion).
fn check_ours(plan: &zfs_replicate::Plan, state: State) {
    let ok = match state {
        State::Cold | State::UpToDate => plan.is_up_to_date(),
        State::NewSnapshot => plan.divergences().is_empty()
            && plan.steps.iter().all(|s| {
                matches!(&s.action, Action::Incremental { snapshots, .. } if snapshots.len() == 1)
            }),
    };
    assert!(ok, "expected a plan for {state:?}, got:\n{plan}");
}

fn check_cli(plan: &CliPlan, state: State) {
    let ok = match state {
        State::Cold | State::UpToDate => plan.is_up_to_date(),
        State::NewSnapshot => plan
            .datasets
            .values()
            .all(|(newest, common)| common.as_ref().is_some_and(|c| c != newest)),
    };
    assert!(ok, "expected a CLI plan for {state:?}, got {plan:?}");
}
