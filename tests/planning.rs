//! Cursor planning against full listing, in the VM: over randomised
//! histories of both sides, the plan made from the cursor bookmark (listing
//! only what is newer) equals the plan made by listing everything.
//!
//! `PLAN_OPS=N` as a test argument sets the history's length (default 60);
//! `PLAN_SEED=S` replays one history (each run prints its seed).

use std::collections::BTreeMap;

use zfs_core::{DatasetName, SnapshotName};
use zfs_replicate::{ExecuteOptions, Listing, Plan, Replication, Step};
use zfs_replicate_tests::{mount, seed, setting, summary, unmount, write_file, zfs_cli, Pair, Rng};

/// A step with how it was listed blanked out, for comparing plans.
fn comparable(step: &Step) -> Step {
    let mut step = step.clone();
    step.listing = Listing::Full;
    step
}

/// Plans both ways; asserts they agree (same steps, same removed
/// datasets, or the same error). Returns the cursor plan.
fn plan_both(p: &Pair, repl: &Replication, history: &[String]) -> Option<Plan> {
    let cursor = repl.clone().cursor_planning(true).plan(&p.zfs);
    let full = repl.clone().cursor_planning(false).plan(&p.zfs);
    match (cursor, full) {
        (Ok(c), Ok(f)) => {
            assert!(
                f.steps.iter().all(|s| s.listing == Listing::Full),
                "cursor planning off, yet a step used the cursor"
            );
            let cs: Vec<Step> = c.steps.iter().map(comparable).collect();
            let fs: Vec<Step> = f.steps.iter().map(comparable).collect();
            assert_eq!(
                cs, fs,
                "cursor and full plans differ after {history:#?}\ncursor:\n{c}\nfull:\n{f}"
            );
            assert_eq!(c.removed_on_source, f.removed_on_source);
            Some(c)
        }
        (Err(c), Err(f)) => {
            assert_eq!(c.to_string(), f.to_string(), "after {history:#?}");
            None
        }
        (c, f) => panic!(
            "one plan failed after {history:#?}:\ncursor: {:?}\nfull: {:?}",
            c.map(|p| p.to_string()),
            f.map(|p| p.to_string())
        ),
    }
}

fn snapshots_of(p: &Pair, fs: &DatasetName) -> Vec<SnapshotName> {
    if !p.zfs.exists(fs) {
        return Vec::new();
    }
    p.zfs
        .snapshots(fs)
        .unwrap()
        .into_iter()
        .map(|s| s.name().clone())
        .collect()
}

/// Filesystems under `root`, itself included (none if it is absent).
fn tree(p: &Pair, root: &DatasetName) -> Vec<DatasetName> {
    if !p.zfs.exists(root) {
        return Vec::new();
    }
    p.zfs
        .descendants(root)
        .unwrap()
        .into_iter()
        .map(|d| d.name().clone())
        .collect()
}

/// Writes a little data into a filesystem (mounting it, even a target).
fn scribble(fs: &DatasetName, seed: u64) {
    zfs_replicate_tests::writable(fs);
    let dir = mount(fs.as_str());
    write_file(&dir.join(format!("scribble-{seed}")), seed, 64 << 10);
    unmount(fs.as_str());
    zfs_replicate_tests::set(fs.as_str(), &[("readonly", "on"), ("canmount", "noauto")]);
}

/// Over a random history of syncs and of changes on both sides (snapshots
/// taken, destroyed and renamed, rollbacks, writes, bookmarks destroyed,
/// datasets added and removed), every plan made from the cursor equals the
/// plan made from full listings; and right after a sync completes, every
/// step with a source snapshot is planned from its cursor.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn cursor_plans_equal_full_plans_over_random_histories() {
    let ops: usize = setting("PLAN_OPS").map_or(60, |v| v.parse().unwrap());
    let seed = seed("PLAN_SEED");
    summary(&format!(
        "cursor vs full planning: {ops} operations, PLAN_SEED={seed}"
    ));
    let mut rng = Rng(seed);
    let p = Pair::new("ptank", "ppipe", 256 << 20, 256 << 20);
    let src = p.src("r");
    let dst = p.dst("r");
    p.create(&src);
    for child in ["r/a", "r/b"] {
        p.create(&p.src(child));
    }
    let repl = Replication::new(src.clone(), dst.clone())
        .recursive(true)
        .prefix("pl");
    let opts = ExecuteOptions::default();
    let mut history: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor_steps = 0;
    let mut full_steps = 0;
    let mut n = 0u64;
    for _ in 0..ops {
        n += 1;
        let sources = tree(&p, &src);
        let targets = tree(&p, &dst);
        let op = rng.below(16);
        let what: String = match op {
            // Syncs (the common case: most of a backup's history).
            0..=4 => {
                let healing = op == 4;
                let r = repl.clone().rollback(healing);
                match r.sync(&p.zfs, &opts, Some(1 + rng.below(3))) {
                    Ok(_) => {
                        let plan = plan_both(&p, &repl, &history).expect("plan after a sync");
                        for s in &plan.steps {
                            assert_eq!(
                                s.listing,
                                Listing::Cursor,
                                "{}: not planned from its cursor right after a sync \
                                 (seed {seed}, after {history:#?})",
                                s.source
                            );
                        }
                        format!("sync (rollback {healing}): ok")
                    }
                    Err(e) => format!("sync (rollback {healing}): {e}"),
                }
            }
            5 => {
                let fs = rng.pick(&sources).unwrap().clone();
                p.snap(&fs, &format!("u{n}"));
                format!("snapshot {fs}@u{n}")
            }
            6 => match rng.pick(&sources).map(|fs| snapshots_of(&p, fs)) {
                Some(snaps) if !snaps.is_empty() => {
                    let s = rng.pick(&snaps).unwrap().clone();
                    zfs_cli(&["destroy", s.as_str()]);
                    format!("destroy {s}")
                }
                _ => "nothing to destroy".into(),
            },
            7 => match rng.pick(&sources).map(|fs| snapshots_of(&p, fs)) {
                Some(snaps) if !snaps.is_empty() => {
                    let s = rng.pick(&snaps).unwrap().clone();
                    let to = format!("{}@r{n}", s.dataset());
                    zfs_cli(&["rename", s.as_str(), &to]);
                    format!("rename {s} to {to}")
                }
                _ => "nothing to rename".into(),
            },
            8 => match rng.pick(&sources).map(|fs| snapshots_of(&p, fs)) {
                Some(snaps) if !snaps.is_empty() => {
                    let s = rng.pick(&snaps).unwrap().clone();
                    zfs_cli(&["rollback", "-r", s.as_str()]);
                    format!("roll source back to {s}")
                }
                _ => "nothing to roll back to".into(),
            },
            9 => {
                let fs = rng.pick(&sources).unwrap().clone();
                scribble(&fs, n);
                format!("write into source {fs}")
            }
            10 => {
                let fs = rng.pick(&sources).unwrap().clone();
                let marks = p.zfs.bookmarks(&fs).unwrap();
                match rng.pick(&marks) {
                    Some(b) => {
                        p.zfs.destroy_bookmarks(&[b.name().clone()]).unwrap();
                        format!("destroy bookmark {}", b.name())
                    }
                    None => "no bookmark to destroy".into(),
                }
            }
            11 => {
                if rng.below(2) == 0 || sources.len() < 2 {
                    let fs = p.src(&format!("r/n{n}"));
                    p.create(&fs);
                    format!("create {fs}")
                } else {
                    let fs = sources[1 + rng.below(sources.len() - 1)].clone();
                    zfs_cli(&["destroy", "-r", fs.as_str()]);
                    format!("destroy source {fs}")
                }
            }
            12 => match rng.pick(&targets) {
                Some(fs) => {
                    p.snap(fs, &format!("t{n}"));
                    format!("snapshot target {fs}@t{n}")
                }
                None => "no target yet".into(),
            },
            13 => match rng.pick(&targets).map(|fs| snapshots_of(&p, fs)) {
                Some(snaps) if !snaps.is_empty() => {
                    let s = rng.pick(&snaps).unwrap().clone();
                    if rng.below(2) == 0 {
                        zfs_cli(&["destroy", s.as_str()]);
                        format!("destroy target {s}")
                    } else {
                        let to = format!("{}@tr{n}", s.dataset());
                        zfs_cli(&["rename", s.as_str(), &to]);
                        format!("rename target {s} to {to}")
                    }
                }
                _ => "no target snapshot".into(),
            },
            14 => match rng.pick(&targets) {
                Some(fs) => {
                    scribble(fs, n);
                    format!("write into target {fs}")
                }
                None => "no target yet".into(),
            },
            _ => match rng.pick(&targets).map(|fs| snapshots_of(&p, fs)) {
                Some(snaps) if !snaps.is_empty() => {
                    let s = rng.pick(&snaps).unwrap().clone();
                    zfs_cli(&["rollback", "-r", s.as_str()]);
                    format!("roll target back to {s}")
                }
                _ => "no target snapshot".into(),
            },
        };
        let kind = what.split(" ").next().unwrap_or("").to_owned();
        *counts.entry(kind).or_default() += 1;
        history.push(what);
        if let Some(plan) = plan_both(&p, &repl, &history) {
            for s in &plan.steps {
                match s.listing {
                    Listing::Cursor => cursor_steps += 1,
                    Listing::Full => full_steps += 1,
                }
            }
        }
    }
    summary(&format!(
        "cursor vs full planning: {cursor_steps} steps from cursors, {full_steps} listed in full; \
         operations {counts:?}"
    ));
    assert!(cursor_steps > 0, "no step was ever planned from a cursor");
    assert!(full_steps > 0, "no step ever fell back to full listing");
}
