//! Peak memory of a whole `backup sync` (the example program), against the
//! largest process of `zfs send | zfs receive`.

use std::process::{Command, Stdio};

use crate::cli::destroy_and_wait;
use crate::context::Context;
use crate::measure::{memory, peak_rss};
use crate::recipe::{dataset, DATA_SNAPSHOT, DST_POOL};
use crate::table::Row;

/// Runs at the largest size (a run moves a GiB under TCG): fewer, as peak
/// RSS varies little between runs.
const RUNS_LARGE: usize = 3;
const LARGE_MIB: u64 = 512;

pub fn row(ctx: &mut Context, mib: u64) -> Row {
    let src = ctx.recipe.rss_src(mib);
    let runs = if mib >= LARGE_MIB {
        RUNS_LARGE.min(ctx.runs)
    } else {
        ctx.runs
    };
    let ours = memory(runs, |i| {
        let dst = dataset(DST_POOL, &format!("rss{mib}-ours{i}"));
        let peak = peak_rss(
            Command::new("backup")
                .args(["sync", src.as_str(), dst.as_str(), "--keep", "1"])
                .stdout(Stdio::null()),
        );
        destroy_and_wait(&dst);
        peak
    });
    let cli = memory(runs, |i| {
        let dst = dataset(DST_POOL, &format!("rss{mib}-cli{i}"));
        let peak = peak_rss(Command::new("sh").arg("-c").arg(format!(
            "zfs send -L -e -c '{src}@{DATA_SNAPSHOT}' | zfs receive -u '{dst}'"
        )));
        destroy_and_wait(&dst);
        peak
    });
    let mut notes = "ours: `backup sync` (full, then incremental to its new snapshot); \
                     CLI: the largest of `zfs send`, `zfs receive`; VmHWM from `wait4`"
        .to_owned();
    if runs < ctx.runs {
        notes.push_str(&format!("; {runs} runs: one moves {mib} MiB"));
    }
    Row {
        label: format!("peak RSS, sync of {mib} MiB"),
        ours,
        cli: Some(cli),
        notes,
    }
}
