//! The first benchmarks' rows: listing, per-snapshot properties, and
//! checking a stream file.

use std::process::Command;

use zfs_replicate::file::{send_to_file, verify_file, SendFileOptions};

use crate::cli::sh;
use crate::context::Context;
use crate::measure::{timed, times};
use crate::recipe::DATA_SNAPSHOT;
use crate::table::Row;

/// How many snapshots the property row reads.
const PROPERTY_SAMPLE: usize = 100;

pub fn list_row(ctx: &mut Context) -> Row {
    let tree = ctx.recipe.listing_tree().clone();
    let src = tree.src();
    let ours = times(ctx.runs, |_| {
        timed(|| {
            let n = ctx
                .zfs
                .snapshots(&src)
                .unwrap_or_else(|e| panic!("listing {src}: {e}"))
                .len();
            assert!(n >= tree.snapshots, "{src} has {n} snapshots");
        })
    });
    let cli = times(ctx.runs, |_| {
        timed(|| {
            sh(&format!(
                "zfs list -Hp -t snapshot -o name,guid,createtxg -s createtxg -d 1 '{src}'"
            ))
        })
    });
    Row {
        label: format!("list {} snapshots (name, guid, createtxg)", tree.snapshots),
        ours,
        cli: Some(cli),
        notes: "`Zfs::snapshots` against one `zfs list -t snapshot`".into(),
    }
}

pub fn written_row(ctx: &mut Context) -> Row {
    let src = ctx.recipe.listing_tree().src();
    let snapshots = ctx
        .zfs
        .snapshots(&src)
        .unwrap_or_else(|e| panic!("listing {src}: {e}"));
    let sample = &snapshots[..PROPERTY_SAMPLE.min(snapshots.len())];
    let ours = times(ctx.runs, |_| {
        timed(|| {
            sample
                .iter()
                .map(|s| {
                    ctx.zfs
                        .properties(s.name())
                        .unwrap_or_else(|e| panic!("properties of {}: {e}", s.name()))
                        .written
                        .unwrap_or(0)
                })
                .sum::<u64>()
        })
    });
    let cli = times(ctx.runs, |_| {
        timed(|| {
            for s in sample {
                sh(&format!("zfs get -H -p -o value written '{}'", s.name()));
            }
        })
    });
    Row {
        label: format!("`written` of {} snapshots, one call each", sample.len()),
        ours,
        cli: Some(cli),
        notes: "`Zfs::properties` against one `zfs get` per snapshot, as shell tools do".into(),
    }
}

pub fn stream_check_row(ctx: &mut Context) -> Row {
    let mib = ctx.recipe.rss_mib[0];
    let snapshot = ctx
        .recipe
        .rss_src(mib)
        .snapshot(DATA_SNAPSHOT)
        .expect("a valid snapshot name");
    let file = std::env::temp_dir().join("bench.zstream");
    let _ = std::fs::remove_file(&file);
    send_to_file(&ctx.zfs, &snapshot, &SendFileOptions::new(), &file)
        .unwrap_or_else(|e| panic!("sending {snapshot} to a file: {e}"));
    let ours = times(ctx.runs, |_| {
        timed(|| {
            verify_file(&file)
                .unwrap_or_else(|e| panic!("verifying {}: {e}", file.display()))
                .total_bytes
        })
    });
    let cli = times(ctx.runs, |_| {
        timed(|| {
            let status = Command::new("zstream")
                .arg("dump")
                .arg(&file)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("starting zstream");
            assert!(status.success(), "zstream dump failed");
        })
    });
    let _ = std::fs::remove_file(&file);
    Row {
        label: format!("check a {mib} MiB stream file"),
        ours,
        cli: Some(cli),
        notes: "`verify_file` (record and END checksums) against `zstream dump`, which exits 0 \
                even on bad checksums"
            .into(),
    }
}
