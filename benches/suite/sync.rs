//! A tiny incremental `sync`, end to end, against the seed's CLI recipe.
//! No data changes between runs: what is measured is the per-run and
//! per-dataset overhead of snapshot, plan, transfer and prune.

use zfs_replicate::ExecuteOptions;

use crate::cli::{sh, CliPlan};
use crate::context::{replication, Context};
use crate::measure::{profiled, timed, times};
use crate::recipe::Tree;
use crate::table::Row;

/// Our snapshots kept on each side after a run: each run prunes the
/// previous run's, as the CLI recipe destroys its previous snapshot.
const KEEP: usize = 1;

pub fn row(ctx: &mut Context, tree: &Tree) -> Row {
    ctx.make_warm(tree);
    let ours = replication(tree);
    let sync = || {
        let done = ours
            .sync(&ctx.zfs, &ExecuteOptions::default(), Some(KEEP))
            .unwrap_or_else(|e| panic!("sync of {}: {e}", tree.src()));
        assert_eq!(done.plan.steps.len(), tree.datasets, "one step per dataset");
    };
    sync(); // warm-up: the first run has nothing of ours to prune
    let label = format!("tiny incremental sync, {}", tree.label());
    let (ours, profile) = profiled(&label, || times(ctx.runs, |_| timed(sync)));

    cli_sync(tree, 0); // warm-up, likewise
    let cli = times(ctx.runs, |i| timed(|| cli_sync(tree, i + 1)));
    Row {
        label,
        ours,
        cli: Some(cli),
        notes: format!(
            "ours: `sync`, keep {KEEP}; CLI: list both sides, `snapshot -r`, \
             `send -R -I \\| receive -u`, destroy the previous snapshot; {profile}"
        ),
    }
}

/// Run `k` of the seed's recipe.
fn cli_sync(tree: &Tree, k: usize) {
    let (src, dst) = (tree.src(), tree.dst());
    let plan = CliPlan::compute(src.as_str(), dst.as_str());
    assert!(plan.is_up_to_date(), "{dst} is behind {src}: {plan:?}");
    let base = plan.root_base();
    sh(&format!("zfs snapshot -r '{src}@cli{k}'"));
    sh(&format!(
        "zfs send -R -I '@{base}' '{src}@cli{k}' | zfs receive -u '{dst}'"
    ));
    if k > 0 {
        let old = k - 1;
        sh(&format!("zfs destroy -r '{src}@cli{old}'"));
        sh(&format!("zfs destroy -r '{dst}@cli{old}'"));
    }
}
