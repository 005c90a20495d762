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

/// Peak memory of a stream file with a 5% parity sidecar: `backup send
/// --parity 5` against `zfs send > FILE`, then `backup receive` of the file
/// with 64 damaged blocks spread over it (rebuilt on the way into the
/// receive) against `zfs receive < FILE` of the intact file.
pub fn parity_rows(ctx: &mut Context, mib: u64) -> Vec<Row> {
    let src = ctx.recipe.rss_src(mib);
    let snapshot = format!("{src}@{DATA_SNAPSHOT}");
    let runs = if mib >= LARGE_MIB {
        RUNS_LARGE.min(ctx.runs)
    } else {
        ctx.runs
    };
    let file = std::path::PathBuf::from(format!("/tmp/rss-parity-{mib}.zstream"));
    let sidecar = format!("{}.zpar", file.display());
    let clean = |f: &std::path::Path| {
        let _ = std::fs::remove_file(f);
        let _ = std::fs::remove_file(format!("{}.zpar", f.display()));
    };
    clean(&file);
    let send = memory(runs, |_| {
        clean(&file);
        peak_rss(
            Command::new("backup")
                .args(["send", &snapshot, "--parity", "5", "-o"])
                .arg(&file)
                .stdout(Stdio::null()),
        )
    });
    let cli_file = std::path::PathBuf::from(format!("/tmp/rss-parity-{mib}-cli.zstream"));
    let cli_send = memory(runs, |_| {
        let _ = std::fs::remove_file(&cli_file);
        peak_rss(Command::new("sh").arg("-c").arg(format!(
            "zfs send -L -e -c '{snapshot}' > '{}'",
            cli_file.display()
        )))
    });
    // 64 damaged 16 KiB blocks, evenly spread: within the level.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("the sent file");
        let len = f.metadata().expect("stat").len();
        for i in 0..64u64 {
            let at = (len / 64 * i / 16384) * 16384;
            f.write_all_at(&[0x5a; 100], at + 1000).expect("damage");
        }
    }
    let receive = memory(runs, |i| {
        let dst = dataset(DST_POOL, &format!("rssp{mib}-ours{i}"));
        let peak = peak_rss(
            Command::new("backup")
                .arg("receive")
                .arg(dst.as_str())
                .arg("-i")
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        destroy_and_wait(&dst);
        peak
    });
    let cli_receive = memory(runs, |i| {
        let dst = dataset(DST_POOL, &format!("rssp{mib}-cli{i}"));
        let peak = peak_rss(
            Command::new("sh")
                .arg("-c")
                .arg(format!("zfs receive -u '{dst}' < '{}'", cli_file.display())),
        );
        destroy_and_wait(&dst);
        peak
    });
    let sidecar_bytes = std::fs::metadata(&sidecar).map_or(0, |m| m.len());
    clean(&file);
    let _ = std::fs::remove_file(&cli_file);
    let mut runs_note = String::new();
    if runs < ctx.runs {
        runs_note = format!("; {runs} runs: one moves {mib} MiB");
    }
    vec![
        Row {
            label: format!("peak RSS, send of {mib} MiB to a file with 5% parity"),
            ours: send,
            cli: Some(cli_send),
            notes: format!(
                "ours: `backup send --parity 5 -o FILE` (a {:.1} MiB sidecar, computed on its own thread); \
                 CLI: `zfs send -L -e -c > FILE` (no parity); VmHWM from `wait4`{runs_note}",
                sidecar_bytes as f64 / 1048576.0
            ),
        },
        Row {
            label: format!("peak RSS, receive of {mib} MiB from a damaged file, repaired on the way"),
            ours: receive,
            cli: Some(cli_receive),
            notes: format!(
                "ours: `backup receive -i FILE` with 64 damaged 16 KiB blocks (checked, then \
                 rebuilt as they stream into the receive); CLI: `zfs receive < FILE` of the \
                 intact file (it cannot receive a damaged one); VmHWM from `wait4`{runs_note}"
            ),
        },
    ]
}
