//! Moving data: eight children in parallel, and one large dataset.

use zfs_replicate::{execute, ExecuteOptions, Replication};

use crate::cli::{destroy_and_wait, sh};
use crate::context::Context;
use crate::measure::{timed, times};
use crate::recipe::{dataset, DATA_SNAPSHOT, DST_POOL};
use crate::table::Row;

/// Same stream flags as ours (`DEFAULT_FLAGS`).
pub const SEND_FLAGS: &str = "-L -e -c";

/// Ours with parallelism (plan and execute) against `zfs send -R` and
/// against a per-dataset CLI loop; two rows, one sample of ours.
pub fn parallel_rows(ctx: &mut Context) -> Vec<Row> {
    let src = ctx.recipe.parallel_src();
    let children = ctx.recipe.children;
    let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let ours = times(ctx.runs, |i| {
        let dst = dataset(DST_POOL, &format!("parallel-ours{i}"));
        let took = timed(|| {
            let plan = Replication::new(src.clone(), dst.clone())
                .recursive(true)
                .parallelism(parallelism)
                .plan(&ctx.zfs)
                .unwrap_or_else(|e| panic!("planning {src}: {e}"));
            execute(&ctx.zfs, &plan, &ExecuteOptions::default())
                .unwrap_or_else(|e| panic!("replicating {src}: {e}"));
        });
        destroy_and_wait(&dst);
        took
    });
    let send_r = times(ctx.runs, |i| {
        let dst = dataset(DST_POOL, &format!("parallel-r{i}"));
        let took = timed(|| {
            sh(&format!(
                "zfs send -R {SEND_FLAGS} '{src}@{DATA_SNAPSHOT}' | zfs receive -u '{dst}'"
            ))
        });
        destroy_and_wait(&dst);
        took
    });
    let cli_loop = times(ctx.runs, |i| {
        let dst = dataset(DST_POOL, &format!("parallel-loop{i}"));
        let mut datasets = vec![(src.clone(), dst.clone())];
        for c in 1..=children {
            let name = format!("c{c}");
            datasets.push((
                src.child(&name).expect("a valid name"),
                dst.child(&name).expect("a valid name"),
            ));
        }
        let took = timed(|| {
            for (from, to) in &datasets {
                sh(&format!(
                    "zfs send {SEND_FLAGS} '{from}@{DATA_SNAPSHOT}' | zfs receive -u '{to}'"
                ));
            }
        });
        destroy_and_wait(&dst);
        took
    });
    let what = format!(
        "{children} child datasets × {} MiB (and an empty parent)",
        ctx.recipe.child_mib
    );
    let ours_note = format!("ours: plan + `execute`, parallelism {parallelism}");
    vec![
        Row {
            label: format!("{what}, against `send -R`"),
            ours,
            cli: Some(send_r),
            notes: format!("{ours_note}; CLI: `zfs send -R {SEND_FLAGS} \\| zfs receive -u`"),
        },
        Row {
            label: format!("{what}, against a CLI loop"),
            ours,
            cli: Some(cli_loop),
            notes: format!(
                "{ours_note}; CLI: `zfs send {SEND_FLAGS} \\| zfs receive -u` per dataset, in turn"
            ),
        },
    ]
}

/// One dataset: `execute` (planned beforehand) against `zfs send | zfs receive`.
pub fn single_row(ctx: &mut Context) -> Row {
    let src = ctx.recipe.single_src();
    let mib = ctx.recipe.single_mib;
    let ours = times(ctx.runs, |i| {
        let dst = dataset(DST_POOL, &format!("single-ours{i}"));
        let plan = Replication::new(src.clone(), dst.clone())
            .plan(&ctx.zfs)
            .unwrap_or_else(|e| panic!("planning {src}: {e}"));
        let took = timed(|| {
            execute(&ctx.zfs, &plan, &ExecuteOptions::default())
                .unwrap_or_else(|e| panic!("replicating {src}: {e}"))
        });
        destroy_and_wait(&dst);
        took
    });
    let cli = times(ctx.runs, |i| {
        let dst = dataset(DST_POOL, &format!("single-cli{i}"));
        let took = timed(|| {
            sh(&format!(
                "zfs send {SEND_FLAGS} '{src}@{DATA_SNAPSHOT}' | zfs receive -u '{dst}'"
            ))
        });
        destroy_and_wait(&dst);
        took
    });
    let rate = |seconds: f64| mib as f64 * 1.048_576 / seconds;
    Row {
        label: format!("one {mib} MiB dataset, full"),
        ours,
        cli: Some(cli),
        notes: format!(
            "ours: `execute` (bookmark included), {:.0} MB/s; CLI: `zfs send {SEND_FLAGS} \\| zfs receive -u`, {:.0} MB/s",
            rate(ours.median),
            rate(cli.median)
        ),
    }
}
