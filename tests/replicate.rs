//! zfs-replicate end to end against real OpenZFS (run by `cargo xtask test`
//! in the VM): plans, transfers, divergence, resume, bookmarks, pruning,
//! stream files, raw encrypted sends, and a comparison with the CLI.

#![allow(clippy::cloned_ref_to_slice_refs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use zfs_core::testing::FilePool;
use zfs_core::{DatasetName, KeyStatus, NvList, SnapshotName, Zfs};
use zfs_replicate::file::{receive_file, send_to_file, verify_file};
use zfs_replicate::prune::{prune, take_snapshot, Retention};
use zfs_replicate::{
    execute, Action, Base, CancelToken, Divergence, Error, ExecuteOptions, Replication,
};
use zfs_replicate_tests::{mount, unmount, write_file, zfs_cli};

const SIZE: u64 = 256 << 20;

struct Pair {
    zfs: Zfs,
    tank: FilePool,
    pipe: FilePool,
}

fn pair() -> Pair {
    let zfs = Zfs::open().unwrap();
    let tank = FilePool::create_unique(&zfs, "tank", SIZE).unwrap();
    let pipe = FilePool::create_unique(&zfs, "pipe", SIZE).unwrap();
    Pair { zfs, tank, pipe }
}

impl Pair {
    fn src(&self, rel: &str) -> DatasetName {
        ds(&self.tank.root(), rel)
    }
    fn dst(&self, rel: &str) -> DatasetName {
        ds(&self.pipe.root(), rel)
    }
    fn create(&self, name: &DatasetName) {
        self.zfs.create_filesystem(name, &NvList::new()).unwrap();
    }
    fn snap(&self, fs: &DatasetName, name: &str) -> SnapshotName {
        let s = fs.snapshot(name).unwrap();
        self.zfs.snapshot(&[s.clone()]).unwrap();
        s
    }
    fn guids(&self, fs: &DatasetName) -> Vec<u64> {
        self.zfs
            .snapshots(fs)
            .unwrap()
            .iter()
            .map(|s| s.guid())
            .collect()
    }
    fn names(&self, fs: &DatasetName) -> Vec<String> {
        self.zfs
            .snapshots(fs)
            .unwrap()
            .iter()
            .map(|s| s.name().short_name().to_owned())
            .collect()
    }
}

fn ds(root: &DatasetName, rel: &str) -> DatasetName {
    if rel.is_empty() {
        root.clone()
    } else {
        root.child(rel)
            .unwrap_or_else(|_| DatasetName::new(format!("{root}/{rel}")).unwrap())
    }
}

/// Writes files into `fs` (mounting and unmounting it).
fn fill(fs: &DatasetName, seed: u64, files: usize, size: usize) {
    let dir = mount(fs.as_str());
    for i in 0..files {
        write_file(
            &dir.join(format!("file {seed}-{i}")),
            seed * 1000 + i as u64,
            size,
        );
    }
    unmount(fs.as_str());
}

/// The contents of a snapshot: relative path → bytes (mounted read-only).
fn contents(snap: &SnapshotName) -> BTreeMap<String, Vec<u8>> {
    let dir = std::env::temp_dir().join(format!(
        "view-{}",
        snap.as_str().replace(['/', '@', ' '], "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("mount")
        .args(["-t", "zfs", snap.as_str()])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success(), "mount {snap}");
    let mut out = BTreeMap::new();
    walk(&dir, &dir, &mut out);
    let st = Command::new("umount").arg(&dir).status().unwrap();
    assert!(st.success(), "umount {snap}");
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
}

fn opts() -> ExecuteOptions {
    ExecuteOptions::default()
}

// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn full_then_incremental_with_intermediates() {
    let p = pair();
    let src = p.src("home");
    p.create(&src);
    fill(&src, 1, 3, 100_000);
    p.snap(&src, "s1");
    fill(&src, 2, 2, 50_000);
    p.snap(&src, "s2");
    let dst = p.dst("home");

    let repl = Replication::new(src.clone(), dst.clone());
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(
        matches!(&plan.steps[0].action, Action::Full { snapshot, then } if snapshot.name().short_name() == "s1" && then.len() == 1),
        "{plan}"
    );
    assert!(plan.steps[0].estimated_bytes > 300_000, "{plan}");
    assert!(!p.zfs.exists(&dst), "planning changes nothing");
    let report = execute(&p.zfs, &plan, &opts()).unwrap();
    assert_eq!(report.transfers[0].1.len(), 2);
    assert_eq!(p.guids(&dst), p.guids(&src));
    assert_eq!(
        p.zfs
            .properties(&dst)
            .unwrap()
            .raw
            .get_nvlist("canmount")
            .unwrap()
            .get_u64("value")
            .unwrap(),
        0,
        "backups do not mount"
    );

    // Three more snapshots: one incremental run carries all of them.
    for (i, n) in ["s3", "s4", "s5"].iter().enumerate() {
        fill(&src, 10 + i as u64, 1, 20_000);
        p.snap(&src, n);
    }
    let plan = repl.plan(&p.zfs).unwrap();
    match &plan.steps[0].action {
        Action::Incremental {
            base: Base::Snapshot(b),
            snapshots,
            ..
        } => {
            assert_eq!(b.name().short_name(), "s2");
            assert_eq!(snapshots.len(), 3);
        }
        other => panic!("expected incremental, got {other:?}"),
    }
    execute(&p.zfs, &plan, &opts()).unwrap();
    assert_eq!(p.names(&dst), ["s1", "s2", "s3", "s4", "s5"]);
    assert_eq!(p.guids(&dst), p.guids(&src));
    assert_eq!(
        contents(&dst.snapshot("s5").unwrap()),
        contents(&src.snapshot("s5").unwrap())
    );
    assert!(repl.plan(&p.zfs).unwrap().is_up_to_date());
    // A bookmark of the newest snapshot stays on the source.
    assert!(p
        .zfs
        .bookmarks(&src)
        .unwrap()
        .iter()
        .any(|b| b.guid() == *p.guids(&src).last().unwrap()));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn recursive_with_child_added_and_child_destroyed() {
    let p = pair();
    let root = p.src("data");
    p.create(&root);
    p.create(&root.child("kept").unwrap());
    p.create(&root.child("gone soon").unwrap());
    let dst = p.dst("data");
    let repl = Replication::new(root.clone(), dst.clone()).recursive(true);
    take_snapshot(&p.zfs, &root, true, "t").unwrap();
    execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts()).unwrap();
    assert!(p.zfs.exists(&dst.child("gone soon").unwrap()));

    // Source: add a child, destroy one.
    let added = root.child("new child").unwrap();
    p.create(&added);
    let gone = root.child("gone soon").unwrap();
    let snaps: Vec<_> = p
        .zfs
        .snapshots(&gone)
        .unwrap()
        .iter()
        .map(|s| s.name().clone())
        .collect();
    p.zfs.destroy_snapshots(&snaps, false).unwrap();
    p.zfs.destroy(&gone).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    take_snapshot(&p.zfs, &root, true, "t").unwrap();

    let plan = repl.plan(&p.zfs).unwrap();
    let step = plan.steps.iter().find(|s| s.source == added).unwrap();
    assert!(matches!(step.action, Action::Full { .. }), "{plan}");
    assert_eq!(
        plan.removed_on_source,
        vec![dst.child("gone soon").unwrap()],
        "{plan}"
    );
    execute(&p.zfs, &plan, &opts()).unwrap();
    assert!(p.zfs.exists(&dst.child("new child").unwrap()));
    assert!(
        p.zfs.exists(&dst.child("gone soon").unwrap()),
        "kept unless asked"
    );

    let plan = repl.clone().destroy_removed(true).plan(&p.zfs).unwrap();
    let report = execute(&p.zfs, &plan, &opts()).unwrap();
    assert_eq!(report.destroyed, vec![dst.child("gone soon").unwrap()]);
    assert!(!p.zfs.exists(&dst.child("gone soon").unwrap()));
    for d in ["", "kept", "new child"] {
        assert_eq!(p.guids(&ds(&dst, d)), p.guids(&ds(&root, d)), "{d}");
    }
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn bookmark_base_after_all_source_snapshots_are_destroyed() {
    let p = pair();
    let src = p.src("fs");
    p.create(&src);
    fill(&src, 3, 2, 30_000);
    p.snap(&src, "a");
    p.snap(&src, "b");
    let dst = p.dst("fs");
    let repl = Replication::new(src.clone(), dst.clone());
    execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts()).unwrap();

    let all: Vec<_> = p
        .zfs
        .snapshots(&src)
        .unwrap()
        .iter()
        .map(|s| s.name().clone())
        .collect();
    p.zfs.destroy_snapshots(&all, false).unwrap();
    fill(&src, 4, 1, 30_000);
    p.snap(&src, "c");
    p.snap(&src, "d");
    let plan = repl.plan(&p.zfs).unwrap();
    match &plan.steps[0].action {
        Action::Incremental {
            base: Base::Bookmark(b),
            snapshots,
            ..
        } => {
            assert_eq!(
                b.guid(),
                p.zfs
                    .snapshot_info(&dst.snapshot("b").unwrap())
                    .unwrap()
                    .guid()
            );
            assert_eq!(snapshots.len(), 2);
        }
        other => panic!("expected an incremental from the bookmark, got {other:?}"),
    }
    execute(&p.zfs, &plan, &opts()).unwrap();
    assert_eq!(p.names(&dst), ["a", "b", "c", "d"]);
    assert_eq!(&p.guids(&dst)[2..], &p.guids(&src)[..]);
    // Only one bookmark for this target remains (stale ones are cleaned).
    assert_eq!(p.zfs.bookmarks(&src).unwrap().len(), 1);
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn every_divergence_is_reported_before_anything_changes() {
    let p = pair();
    let src = p.src("fs");
    p.create(&src);
    p.snap(&src, "a");
    let dst = p.dst("fs");
    let repl = Replication::new(src.clone(), dst.clone());
    execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts()).unwrap();
    p.snap(&src, "b");

    // Target has a newer snapshot.
    p.snap(&dst, "local");
    let plan = repl.plan(&p.zfs).unwrap();
    let d = plan.divergences();
    assert!(
        matches!(&d[0].1, Divergence::TargetHasNewerSnapshots { newer, .. } if newer.len() == 1),
        "{plan}"
    );
    let err = execute(&p.zfs, &plan, &opts()).unwrap_err();
    assert!(matches!(err, Error::Diverged(_)), "{err}");
    assert_eq!(p.names(&dst), ["a", "local"], "unchanged");
    // Rollback resolves it explicitly.
    execute(
        &p.zfs,
        &repl.clone().rollback(true).plan(&p.zfs).unwrap(),
        &opts(),
    )
    .unwrap();
    assert_eq!(p.names(&dst), ["a", "b"]);

    // Target modified since the base.
    p.snap(&src, "c");
    p.zfs_set_canmount_on(&dst);
    fill(&dst, 7, 1, 10_000);
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(
        matches!(&plan.divergences()[0].1, Divergence::TargetModified { written, .. } if *written > 0),
        "{plan}"
    );
    let before = p.zfs.properties(&dst).unwrap().written;
    assert!(execute(&p.zfs, &plan, &opts()).is_err());
    assert_eq!(p.zfs.properties(&dst).unwrap().written, before, "unchanged");
    execute(
        &p.zfs,
        &repl.clone().rollback(true).plan(&p.zfs).unwrap(),
        &opts(),
    )
    .unwrap();
    assert_eq!(p.guids(&dst), p.guids(&src));

    // No common snapshot: an unrelated target.
    let other = p.dst("other");
    p.create(&other);
    p.snap(&other, "mine");
    let plan = Replication::new(src.clone(), other.clone())
        .rollback(true)
        .plan(&p.zfs)
        .unwrap();
    assert!(
        matches!(
            &plan.divergences()[0].1,
            Divergence::NoCommonSnapshot {
                target_snapshots: 1
            }
        ),
        "{plan}"
    );
    let err = execute(&p.zfs, &plan, &opts()).unwrap_err();
    assert!(err.to_string().contains("no common snapshot"), "{err}");
    assert!(err.is_no_common_snapshot());

    // Encryption lineage: an encrypted target needs raw.
    let enc_src = p.src("secret");
    create_encrypted(&p.zfs, &enc_src);
    p.snap(&enc_src, "s");
    let enc_dst = p.dst("secret");
    execute(
        &p.zfs,
        &Replication::new(enc_src.clone(), enc_dst.clone())
            .raw(true)
            .plan(&p.zfs)
            .unwrap(),
        &opts(),
    )
    .unwrap();
    p.snap(&enc_src, "s2");
    let plan = Replication::new(enc_src.clone(), enc_dst.clone())
        .plan(&p.zfs)
        .unwrap();
    assert!(
        matches!(
            &plan.divergences()[0].1,
            Divergence::EncryptionMismatch { .. }
        ),
        "{plan}"
    );
}

trait CanMount {
    fn zfs_set_canmount_on(&self, fs: &DatasetName);
}

impl CanMount for Pair {
    /// Backups are received with canmount=off; the test mounts one on purpose.
    fn zfs_set_canmount_on(&self, fs: &DatasetName) {
        zfs_cli(&["set", "canmount=on", fs.as_str()]);
    }
}

fn create_encrypted(zfs: &Zfs, fs: &DatasetName) {
    let props = NvList::new()
        .with("encryption", 8u64) // aes-256-gcm
        .with("keyformat", 1u64) // raw
        .with("keylocation", "prompt");
    zfs.create_encrypted_filesystem(fs, &props, &[0x42u8; 32])
        .unwrap();
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn cancel_mid_transfer_then_resume() {
    let p = pair();
    let src = p.src("big");
    p.create(&src);
    fill(&src, 5, 12, 1 << 20);
    p.snap(&src, "s1");
    let dst = p.dst("big");
    let repl = Replication::new(src.clone(), dst.clone());
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let observer: zfs_replicate::Observer = Arc::new(move |pr: &zfs_replicate::Progress<'_>| {
        if pr.bytes > 3 << 20 {
            trigger.cancel();
        }
    });
    let opts = ExecuteOptions {
        cancel,
        observer: Some(observer),
    };
    let err = execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts).unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(
        p.zfs
            .properties(&dst)
            .unwrap()
            .receive_resume_token
            .is_some(),
        "resumable state kept"
    );

    let plan = repl.plan(&p.zfs).unwrap();
    let step = &plan.steps[0];
    assert!(step.resume.as_ref().unwrap().matches, "{plan}");
    assert!(matches!(step.action, Action::Resume { .. }), "{plan}");
    let report = execute(&p.zfs, &plan, &ExecuteOptions::default()).unwrap();
    let full = p
        .zfs
        .send_space(
            &src.snapshot("s1").unwrap(),
            &zfs_core::SendOptions::new().flags(zfs_replicate::plan::DEFAULT_FLAGS),
        )
        .unwrap();
    assert!(
        report.bytes() < full,
        "resumed, not restarted: {} < {full}",
        report.bytes()
    );
    assert_eq!(p.guids(&dst), p.guids(&src));
    assert!(p
        .zfs
        .properties(&dst)
        .unwrap()
        .receive_resume_token
        .is_none());
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn stale_resume_token_is_cleared() {
    let p = pair();
    let src = p.src("fs");
    p.create(&src);
    fill(&src, 6, 8, 1 << 20);
    p.snap(&src, "old");
    let dst = p.dst("fs");
    let repl = Replication::new(src.clone(), dst.clone());
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let observer: zfs_replicate::Observer = Arc::new(move |pr: &zfs_replicate::Progress<'_>| {
        if pr.bytes > 2 << 20 {
            trigger.cancel();
        }
    });
    let _ = execute(
        &p.zfs,
        &repl.plan(&p.zfs).unwrap(),
        &ExecuteOptions {
            cancel,
            observer: Some(observer),
        },
    );
    // The snapshot being sent is destroyed on the source: the token is stale.
    p.zfs
        .destroy_snapshots(&[src.snapshot("old").unwrap()], false)
        .unwrap();
    p.snap(&src, "new");
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(!plan.steps[0].resume.as_ref().unwrap().matches, "{plan}");
    assert!(
        matches!(plan.steps[0].action, Action::Full { .. }),
        "{plan}"
    );
    execute(&p.zfs, &plan, &opts()).unwrap();
    assert_eq!(p.guids(&dst), p.guids(&src));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn stream_file_verified_corrupted_and_refused() {
    let p = pair();
    let src = p.src("fs");
    p.create(&src);
    fill(&src, 8, 3, 200_000);
    let s1 = p.snap(&src, "s1");
    let path = std::env::temp_dir().join(format!("s1-{}.zstream", std::process::id()));
    let size = send_to_file(&p.zfs, &s1, None, false, &path).unwrap();
    assert!(size > 600_000);
    let summary = verify_file(&path).unwrap();
    assert_eq!(summary.substreams.len(), 1);
    assert_eq!(
        summary.substreams[0].to_guid,
        p.zfs.snapshot_info(&s1).unwrap().guid()
    );
    assert_eq!(summary.total_bytes, size);
    assert!(
        send_to_file(&p.zfs, &s1, None, false, &path).is_err(),
        "never overwrites"
    );

    // Flip one byte in the middle: verify names the offset, receive refuses.
    let mut data = std::fs::read(&path).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x40;
    let bad: PathBuf = path.with_extension("bad");
    std::fs::write(&bad, &data).unwrap();
    let err = verify_file(&bad).unwrap_err();
    let Error::Stream { source, .. } = &err else {
        panic!("{err}")
    };
    let offset = source.offset().unwrap();
    // A record's checksum covers everything since the previous one, so the
    // damage is caught at the first record after the flipped byte.
    assert!(
        offset > at as u64 && offset - (at as u64) <= 1 << 20,
        "first failing record {offset} follows the flipped byte {at}"
    );
    let target = p.dst("restored");
    assert!(receive_file(&p.zfs, &target, &bad).is_err());
    assert!(!p.zfs.exists(&target), "nothing left behind");
    // Truncated: refused too.
    std::fs::write(&bad, &std::fs::read(&path).unwrap()[..at]).unwrap();
    assert!(receive_file(&p.zfs, &target, &bad).is_err());
    assert!(!p.zfs.exists(&target));
    // The intact file restores.
    let r = receive_file(&p.zfs, &target, &path).unwrap();
    assert_eq!(r.snapshot.short_name(), "s1");
    assert_eq!(contents(&r.snapshot), contents(&s1));

    // The CLI's zstream computes the same END checksum as our verifier.
    let out = Command::new("zstream")
        .arg("dump")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let c = summary.substreams[0].checksum;
    let ours = format!("{:x}/{:x}/{:x}/{:x}", c[0], c[1], c[2], c[3]);
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        dump.contains(&ours),
        "END checksum {ours} not in zstream dump output"
    );
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn pruning_keeps_the_base_and_others_snapshots() {
    let p = pair();
    let src = p.src("fs");
    p.create(&src);
    p.snap(&src, "someone elses");
    let dst = p.dst("fs");
    let repl = Replication::new(src.clone(), dst.clone()).prefix("bk");
    for i in 0..4 {
        fill(&src, 20 + i, 1, 10_000);
        let r = repl.sync(&p.zfs, &opts(), Some(2)).unwrap();
        assert!(r.snapshot.starts_with("bk_"));
    }
    let ours = |fs: &DatasetName| -> Vec<String> {
        p.names(fs)
            .into_iter()
            .filter(|n| n.starts_with("bk_"))
            .collect()
    };
    assert_eq!(ours(&src).len(), 2, "{:?}", p.names(&src));
    assert_eq!(ours(&dst).len(), 2, "{:?}", p.names(&dst));
    assert!(
        p.names(&src).contains(&"someone elses".to_string()),
        "never touches others' snapshots"
    );
    assert_eq!(
        p.guids(&src).last(),
        p.guids(&dst).last(),
        "the newest common base stays"
    );

    // keep 0: the base is still kept, and a held snapshot too.
    let held = p
        .zfs
        .snapshots(&src)
        .unwrap()
        .iter()
        .find(|s| s.name().short_name().starts_with("bk_"))
        .unwrap()
        .name()
        .clone();
    p.zfs.hold(&[(held.clone(), "user:keep".into())]).unwrap();
    let base_guid = *p.guids(&src).last().unwrap();
    let report = prune(
        &p.zfs,
        &src,
        false,
        &Retention::keep_newest("bk", 0),
        &[base_guid],
    )
    .unwrap();
    assert_eq!(report.kept_held, vec![held.clone()]);
    assert_eq!(report.kept_base.len(), 1);
    assert!(p.zfs.exists(&held));
    p.zfs.release(&[(held, "user:keep".into())]).unwrap();
    // The next incremental still works.
    fill(&src, 30, 1, 10_000);
    repl.sync(&p.zfs, &opts(), Some(2)).unwrap();
    assert_eq!(p.guids(&src).last(), p.guids(&dst).last());
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn raw_send_of_encrypted_dataset_received_without_key() {
    let p = pair();
    let src = p.src("vault");
    create_encrypted(&p.zfs, &src);
    fill(&src, 40, 2, 100_000);
    p.snap(&src, "s1");
    let dst = p.dst("vault");
    let repl = Replication::new(src.clone(), dst.clone()).raw(true);
    execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts()).unwrap();
    let props = p.zfs.properties(&dst).unwrap();
    assert!(props.encryption.is_encrypted());
    assert_eq!(
        props.key_status,
        Some(KeyStatus::Unavailable),
        "received without its key"
    );
    fill(&src, 41, 1, 50_000);
    p.snap(&src, "s2");
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(
        matches!(plan.steps[0].action, Action::Incremental { .. }),
        "{plan}"
    );
    execute(&p.zfs, &plan, &opts()).unwrap();
    assert_eq!(p.guids(&dst), p.guids(&src));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn result_matches_zfs_send_receive_cli() {
    let p = pair();
    let src = p.src("same data");
    p.create(&src);
    fill(&src, 50, 3, 150_000);
    p.snap(&src, "one");
    fill(&src, 51, 2, 80_000);
    p.snap(&src, "two");
    fill(&src, 52, 1, 40_000);
    p.snap(&src, "three");

    let ours = p.dst("by library");
    execute(
        &p.zfs,
        &Replication::new(src.clone(), ours.clone())
            .plan(&p.zfs)
            .unwrap(),
        &opts(),
    )
    .unwrap();

    let cli = p.dst("by cli");
    let sh = |cmd: String| {
        let st = Command::new("sh").arg("-c").arg(&cmd).status().unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh(format!("zfs send '{src}@one' | zfs receive -u '{cli}'"));
    sh(format!(
        "zfs send -I '{src}@one' '{src}@three' | zfs receive -u '{cli}'"
    ));

    assert_eq!(p.guids(&ours), p.guids(&cli), "same snapshots by GUID");
    assert_eq!(p.names(&ours), p.names(&cli));
    for s in ["one", "two", "three"] {
        let a = contents(&ours.snapshot(s).unwrap());
        let b = contents(&cli.snapshot(s).unwrap());
        assert_eq!(a, b, "contents of @{s}");
        assert_eq!(a, contents(&src.snapshot(s).unwrap()));
    }
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn transfer_failure_reports_the_receivers_error() {
    let p = pair();
    let src = p.src("a");
    p.create(&src);
    p.snap(&src, "s1");
    let dst = p.dst("missing parent/deeper");
    let err = execute(
        &p.zfs,
        &Replication::new(src, dst).plan(&p.zfs).unwrap(),
        &opts(),
    )
    .unwrap_err();
    let Error::Transfer { source, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(source.kind(), zfs_core::ErrorKind::NotFound, "{err}");
    assert_eq!(source.operation(), Some("lzc_receive"), "{err}");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn sync_of_a_source_without_snapshots() {
    let p = pair();
    let src = p.src("fresh");
    p.create(&src);
    p.create(&src.child("kid").unwrap());
    let dst = p.dst("fresh");
    let repl = Replication::new(src.clone(), dst.clone())
        .recursive(true)
        .prefix("bk");
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(
        plan.steps
            .iter()
            .all(|s| s.action == Action::NoSourceSnapshot),
        "{plan}"
    );
    let r = repl.sync(&p.zfs, &opts(), Some(3)).unwrap();
    assert_eq!(p.names(&dst), [r.snapshot.clone()]);
    assert_eq!(
        p.guids(&dst.child("kid").unwrap()),
        p.guids(&src.child("kid").unwrap())
    );
}
