//! zfs-core against real OpenZFS (run by `cargo xtask test` in the VM).
//!
//! Scenarios follow the categories of OpenZFS's own libzfs_core tests:
//! snapshots, holds, bookmarks, send/receive, rollback, listing order, and a
//! name with spaces end to end.

#![allow(clippy::cloned_ref_to_slice_refs)] // literal one-element batches read better

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};

use zfs_core::pipe::Pipe;
use zfs_core::testing::FilePool;
use zfs_core::{
    DatasetName, ErrorKind, NvList, ReceiveOptions, ResumeToken, SendFlags, SendOptions,
    SnapshotName, SnapshotOrBookmark, Zfs,
};
use zfs_replicate_tests::{mount, unmount, write_file, zfs_cli};

const SIZE: u64 = 256 << 20;

fn zfs() -> Zfs {
    Zfs::open().expect("open /dev/zfs")
}

fn pool(zfs: &Zfs) -> FilePool {
    FilePool::create_unique(zfs, "core", SIZE).expect("create file pool")
}

fn fs(pool: &FilePool, child: &str) -> DatasetName {
    pool.root().child(child).unwrap()
}

fn snap(fs: &DatasetName, name: &str) -> SnapshotName {
    fs.snapshot(name).unwrap()
}

/// Sends `snap` (with `opts`) into memory.
fn send_to_vec(zfs: &Zfs, snap: &SnapshotName, opts: &SendOptions) -> Vec<u8> {
    let path =
        std::env::temp_dir().join(format!("stream-{}-{}", std::process::id(), rand_suffix()));
    let file = File::create(&path).unwrap();
    zfs.send(snap, opts, &file).expect("send");
    drop(file);
    let data = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    data
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Receives `stream` (bytes) into `target` through a pipe fed by a thread.
fn receive_bytes(
    zfs: &Zfs,
    target: &DatasetName,
    stream: &[u8],
    opts: &ReceiveOptions,
) -> zfs_core::Result<zfs_core::Received> {
    let pipe = Pipe::new(1 << 20).unwrap();
    let Pipe { read, write, .. } = pipe;
    std::thread::scope(|s| {
        let data = stream.to_vec();
        s.spawn(move || {
            let mut w = File::from(write);
            let _ = w.write_all(&data); // EPIPE when the receiver stops early
        });
        let r = zfs.receive(target, &read, opts);
        drop(read); // unblock the writer if the receive stopped early
        r
    })
}

// ---------------------------------------------------------------- snapshots

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshots_batch_atomic_and_listed_in_creation_order() {
    let zfs = zfs();
    let p = pool(&zfs);
    let a = fs(&p, "a");
    let b = fs(&p, "b");
    zfs.create_filesystem(&a, &NvList::new()).unwrap();
    zfs.create_filesystem(&b, &NvList::new()).unwrap();

    // Several snapshots in one call, with a user property.
    let batch = [snap(&a, "one"), snap(&b, "one")];
    let props = NvList::new().with("com.example:tag", "batch");
    zfs.snapshot_with_props(&batch, &props).unwrap();
    for s in &batch {
        assert!(zfs.exists(s));
        let info = zfs.snapshot_info(s).unwrap();
        assert_ne!(info.guid(), 0);
    }
    let p1 = zfs.properties(&batch[0]).unwrap();
    let tag = p1
        .raw
        .get_nvlist("com.example:tag")
        .unwrap()
        .get_str("value")
        .unwrap()
        .to_owned();
    assert_eq!(tag, "batch");
    // Same txg: they were taken atomically.
    assert_eq!(
        zfs.snapshot_info(&batch[0]).unwrap().createtxg(),
        zfs.snapshot_info(&batch[1]).unwrap().createtxg()
    );

    // Listing order is creation order, whatever the names' order.
    for name in ["zzz", "aaa", "mmm"] {
        zfs.snapshot(&[snap(&a, name)]).unwrap();
    }
    let names: Vec<String> = zfs
        .snapshots(&a)
        .unwrap()
        .iter()
        .map(|s| s.name().short_name().to_owned())
        .collect();
    assert_eq!(names, ["one", "zzz", "aaa", "mmm"]);
    let txgs: Vec<u64> = zfs
        .snapshots(&a)
        .unwrap()
        .iter()
        .map(|s| s.createtxg())
        .collect();
    assert!(txgs.windows(2).all(|w| w[0] < w[1]), "{txgs:?}");

    // Children of the root.
    let mut kids: Vec<String> = zfs
        .children(&p.root())
        .unwrap()
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    kids.sort();
    assert_eq!(kids, [a.to_string(), b.to_string()]);
    let all = zfs.descendants(&p.root()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].name(), &p.root());
    // A leaf has no children; a missing parent is an error, except for the
    // quick listing, which does not ask (one kernel call fewer).
    assert!(zfs.children(&a).unwrap().is_empty());
    assert!(zfs.children_quick(&a).unwrap().is_empty());
    let missing = fs(&p, "missing");
    let err = zfs.children(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(zfs.children_quick(&missing).unwrap().is_empty());
    assert!(zfs.descendants(&missing).is_err());
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshot_duplicates_fail_atomically_with_per_name_errors() {
    let zfs = zfs();
    let p = pool(&zfs);
    let a = fs(&p, "a");
    zfs.create_filesystem(&a, &NvList::new()).unwrap();
    zfs.snapshot(&[snap(&a, "dup")]).unwrap();
    let fresh = snap(&p.root(), "fresh");
    let err = zfs.snapshot(&[fresh.clone(), snap(&a, "dup")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let failures = err.batch_failures();
    assert_eq!(failures.len(), 1, "{err}");
    assert_eq!(failures[0].name, snap(&a, "dup").as_str());
    assert!(
        !zfs.exists(&fresh),
        "the batch is atomic: nothing was created"
    );
    assert!(err.to_string().contains("lzc_snapshot"), "{err}");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshot_across_two_pools_is_refused() {
    let zfs = zfs();
    let p1 = pool(&zfs);
    let p2 = pool(&zfs);
    let s1 = snap(&p1.root(), "x");
    let s2 = snap(&p2.root(), "x");
    let err = zfs.snapshot(&[s1.clone(), s2.clone()]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CrossPool, "{err}");
    assert!(!zfs.exists(&s1) && !zfs.exists(&s2));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshot_name_too_long_is_refused_before_the_kernel() {
    let zfs = zfs();
    let p = pool(&zfs);
    let long = format!("{}@{}", p.root(), "s".repeat(255 - p.root().as_str().len()));
    let err = SnapshotName::new(long).unwrap_err();
    assert!(err.to_string().contains("256 bytes long"), "{err}");
    // At the limit it is valid and the kernel accepts it.
    let max = format!("{}@{}", p.root(), "s".repeat(254 - p.root().as_str().len()));
    let max = SnapshotName::new(max).unwrap();
    zfs.snapshot(&[max.clone()]).unwrap();
    assert!(zfs.exists(&max));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshot_of_missing_dataset_is_not_found() {
    let zfs = zfs();
    let p = pool(&zfs);
    let err = zfs.snapshot(&[snap(&fs(&p, "absent"), "s")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = zfs.snapshots(&fs(&p, "absent")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn destroy_snapshots_batch_and_defer() {
    let zfs = zfs();
    let p = pool(&zfs);
    let root = p.root();
    let snaps: Vec<_> = ["a", "b", "c"].iter().map(|n| snap(&root, n)).collect();
    // One snapshot per dataset per batch: two of one dataset are refused up front.
    let err = zfs.snapshot(&snaps).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    for s in &snaps {
        zfs.snapshot(std::slice::from_ref(s)).unwrap();
    }
    zfs.destroy_snapshots(&snaps[..2], false).unwrap();
    assert!(!zfs.exists(&snaps[0]) && !zfs.exists(&snaps[1]) && zfs.exists(&snaps[2]));

    // A held snapshot is busy; with defer it goes when released.
    let tag = "test:hold".to_string();
    zfs.hold(&[(snaps[2].clone(), tag.clone())]).unwrap();
    let err = zfs.destroy_snapshots(&snaps[2..], false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    zfs.destroy_snapshots(&snaps[2..], true).unwrap();
    assert!(zfs.exists(&snaps[2]), "deferred while held");
    zfs.release(&[(snaps[2].clone(), tag)]).unwrap();
    assert!(!zfs.exists(&snaps[2]), "destroyed on release");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn destroying_a_snapshot_with_a_clone_is_busy() {
    let zfs = zfs();
    let p = pool(&zfs);
    let a = fs(&p, "a");
    zfs.create_filesystem(&a, &NvList::new()).unwrap();
    let origin = snap(&a, "origin");
    zfs.snapshot(&[origin.clone()]).unwrap();
    zfs.clone_snapshot(&origin, &fs(&p, "clone"), &NvList::new())
        .unwrap();
    let err = zfs.destroy_snapshots(&[origin.clone()], false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    assert_eq!(err.batch_failures()[0].kind, ErrorKind::Busy, "{err}");
    assert!(zfs.exists(&origin));
}

// ---------------------------------------------------------------- holds

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn holds_hold_release_and_duplicate_tags() {
    let zfs = zfs();
    let p = pool(&zfs);
    let s = snap(&p.root(), "held");
    zfs.snapshot(&[s.clone()]).unwrap();
    let tag = "app:keep".to_string();
    zfs.hold(&[(s.clone(), tag.clone())]).unwrap();
    assert!(zfs.holds(&s).unwrap().contains_key(&tag));
    let err = zfs.hold(&[(s.clone(), tag.clone())]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    // Two tags on one snapshot in one call.
    zfs.hold(&[(s.clone(), "t1".into()), (s.clone(), "t2".into())])
        .unwrap();
    assert_eq!(zfs.holds(&s).unwrap().len(), 3);
    zfs.release(&[
        (s.clone(), tag.clone()),
        (s.clone(), "t1".into()),
        (s.clone(), "t2".into()),
    ])
    .unwrap();
    assert!(zfs.holds(&s).unwrap().is_empty());
    let err = zfs.release(&[(s.clone(), tag)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // A hold on a missing snapshot fails and takes nothing.
    let missing = snap(&p.root(), "missing");
    let err = zfs
        .hold(&[(s.clone(), "x".into()), (missing, "x".into())])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        zfs.holds(&s).unwrap().is_empty(),
        "partial holds were undone"
    );
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn hold_tags_are_validated_before_the_kernel() {
    let zfs = zfs();
    let p = pool(&zfs);
    let s = snap(&p.root(), "held");
    zfs.snapshot(&[s.clone()]).unwrap();
    // The kernel takes up to 255 bytes, 238 for a temporary hold (it
    // prefixes the object number).
    let err = zfs
        .hold_temporary(&[(s.clone(), "t".repeat(256))])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    for tag in [String::new(), "t".repeat(256), "nul\0tag".to_string()] {
        let err = zfs
            .hold(&[(s.clone(), "fine".into()), (s.clone(), tag.clone())])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{tag:?}: {err}");
        assert!(err.to_string().contains("lzc_hold"), "{err}");
    }
    let err = zfs
        .hold_temporary(&[(s.clone(), "t".repeat(239))])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    assert!(zfs.holds(&s).unwrap().is_empty(), "nothing was held");

    // At the limits the kernel accepts them.
    let long = "p".repeat(255);
    zfs.hold(&[(s.clone(), long.clone())]).unwrap();
    {
        let _guard = zfs.hold_temporary(&[(s.clone(), "t".repeat(238))]).unwrap();
        assert_eq!(zfs.holds(&s).unwrap().len(), 2);
    }
    zfs.release(&[(s.clone(), long)]).unwrap();
    assert!(zfs.holds(&s).unwrap().is_empty());
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn temporary_holds_release_on_drop() {
    let zfs = zfs();
    let p = pool(&zfs);
    let s = snap(&p.root(), "tmp");
    zfs.snapshot(&[s.clone()]).unwrap();
    {
        let guard = zfs
            .hold_temporary(&[(s.clone(), "tmp:guard".into())])
            .unwrap();
        assert_eq!(guard.holds().len(), 1);
        assert!(zfs.holds(&s).unwrap().contains_key("tmp:guard"));
        assert_eq!(
            zfs.destroy_snapshots(&[s.clone()], false)
                .unwrap_err()
                .kind(),
            ErrorKind::Busy
        );
    }
    assert!(zfs.holds(&s).unwrap().is_empty());
    zfs.destroy_snapshots(&[s.clone()], false).unwrap();
}

/// Runs itself as a child process that takes a temporary hold and aborts;
/// the kernel must release the hold when the child dies.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn temporary_holds_release_when_the_process_dies() {
    let zfs = zfs();
    if let Ok(name) = std::env::var("ZFS_CORE_TEST_HOLD_CHILD") {
        // Child: hold, never release, die.
        let s = SnapshotName::new(name).unwrap();
        let guard = zfs
            .hold_temporary(&[(s.clone(), "child:dies".into())])
            .unwrap();
        std::mem::forget(guard); // no release from us: only the kernel can
        assert!(zfs.holds(&s).unwrap().contains_key("child:dies"));
        println!("HELD");
        std::io::stdout().flush().unwrap();
        std::process::abort();
    }
    let p = pool(&zfs);
    let s = snap(&p.root(), "orphan");
    zfs.snapshot(&[s.clone()]).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "temporary_holds_release_when_the_process_dies",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZFS_CORE_TEST_HOLD_CHILD", s.as_str())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HELD"),
        "child did not take the hold: {stdout}"
    );
    assert!(!out.status.success(), "child aborted");
    assert!(
        zfs.holds(&s).unwrap().is_empty(),
        "kernel released the dead process's hold"
    );
}

// ---------------------------------------------------------------- bookmarks

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn bookmarks_from_snapshot_and_from_bookmark() {
    let zfs = zfs();
    let p = pool(&zfs);
    let root = p.root();
    let s = snap(&root, "s1");
    zfs.snapshot(&[s.clone()]).unwrap();
    let m1 = s.bookmark("m1").unwrap();
    zfs.bookmark(&[(m1.clone(), s.clone().into())]).unwrap();
    let m2 = root.bookmark("m2").unwrap();
    zfs.bookmark(&[(m2.clone(), SnapshotOrBookmark::Bookmark(m1.clone()))])
        .unwrap();
    let marks = zfs.bookmarks(&root).unwrap();
    assert_eq!(marks.len(), 2);
    let guid = zfs.snapshot_info(&s).unwrap().guid();
    assert!(
        marks.iter().all(|b| b.guid() == guid),
        "bookmarks carry the snapshot's guid"
    );
    assert_eq!(
        zfs.bookmark_info(&m2).unwrap().createtxg(),
        zfs.snapshot_info(&s).unwrap().createtxg()
    );
    assert!(zfs.exists(&m1));
    // Duplicate: refused.
    let err = zfs.bookmark(&[(m1.clone(), s.clone().into())]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    zfs.destroy_bookmarks(&[m1.clone(), m2.clone()]).unwrap();
    assert!(zfs.bookmarks(&root).unwrap().is_empty());
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn bookmark_errors_across_pools_and_filesystems() {
    let zfs = zfs();
    let p1 = pool(&zfs);
    let p2 = pool(&zfs);
    let a = fs(&p1, "a");
    let b = fs(&p1, "b");
    zfs.create_filesystem(&a, &NvList::new()).unwrap();
    zfs.create_filesystem(&b, &NvList::new()).unwrap();
    let sa = snap(&a, "s");
    let s2 = snap(&p2.root(), "s");
    zfs.snapshot(&[sa.clone()]).unwrap();
    zfs.snapshot(&[s2.clone()]).unwrap();

    // One batch, two pools.
    let m1 = a.bookmark("m").unwrap();
    let m2 = p2.root().bookmark("m").unwrap();
    let err = zfs
        .bookmark(&[
            (m1.clone(), sa.clone().into()),
            (m2.clone(), s2.clone().into()),
        ])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CrossPool, "{err}");
    assert!(!zfs.exists(&m1) && !zfs.exists(&m2));

    // The source is a snapshot of another filesystem (same pool).
    let mb = b.bookmark("m").unwrap();
    let err = zfs
        .bookmark(&[(mb.clone(), sa.clone().into())])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAncestor, "{err}");
    assert!(!zfs.exists(&mb));

    // The source is in another pool.
    let err = zfs
        .bookmark(&[(mb.clone(), s2.clone().into())])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CrossPool, "{err}");
    assert!(!zfs.exists(&mb));
}

// ---------------------------------------------------------------- send / receive

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn send_receive_full_incremental_and_from_bookmark() {
    let zfs = zfs();
    let src = pool(&zfs);
    let dst = pool(&zfs);
    let data = fs(&src, "data");
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    let dir = mount(data.as_str());
    write_file(&dir.join("one"), 1, 300_000);
    zfs.snapshot(&[snap(&data, "s1")]).unwrap();
    write_file(&dir.join("two"), 2, 200_000);
    zfs.snapshot(&[snap(&data, "s2")]).unwrap();
    write_file(&dir.join("three"), 3, 100_000);
    zfs.snapshot(&[snap(&data, "s3")]).unwrap();
    unmount(data.as_str());

    let flags = SendFlags::LARGE_BLOCK | SendFlags::EMBED_DATA | SendFlags::COMPRESS;
    let target = fs(&dst, "copy");
    // Full.
    let full = SendOptions::new().flags(flags);
    let estimate = zfs.send_space(&snap(&data, "s1"), &full).unwrap();
    let stream = send_to_vec(&zfs, &snap(&data, "s1"), &full);
    assert!(estimate > 0 && !stream.is_empty());
    let r = receive_bytes(&zfs, &target, &stream, &ReceiveOptions::new()).unwrap();
    assert_eq!(r.snapshot, snap(&target, "s1"));
    assert_eq!(r.bytes, stream.len() as u64);
    assert_eq!(r.begin.from_guid, 0);
    assert_eq!(
        zfs.snapshot_info(&snap(&target, "s1")).unwrap().guid(),
        zfs.snapshot_info(&snap(&data, "s1")).unwrap().guid()
    );

    // Incremental s1 -> s2.
    let inc = SendOptions::new().flags(flags).from(snap(&data, "s1"));
    let stream = send_to_vec(&zfs, &snap(&data, "s2"), &inc);
    receive_bytes(&zfs, &target, &stream, &ReceiveOptions::new()).unwrap();

    // Incremental from a bookmark of s2 to s3, after s2 is gone on the source.
    let mark = data.bookmark("s2mark").unwrap();
    zfs.bookmark(&[(mark.clone(), snap(&data, "s2").into())])
        .unwrap();
    zfs.destroy_snapshots(&[snap(&data, "s2")], false).unwrap();
    let from_mark = SendOptions::new().flags(flags).from(mark);
    let stream = send_to_vec(&zfs, &snap(&data, "s3"), &from_mark);
    receive_bytes(&zfs, &target, &stream, &ReceiveOptions::new()).unwrap();
    let got: Vec<u64> = zfs
        .snapshots(&target)
        .unwrap()
        .iter()
        .map(|s| s.guid())
        .collect();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[2],
        zfs.snapshot_info(&snap(&data, "s3")).unwrap().guid()
    );

    // The received data is the data.
    let tdir = mount(target.as_str());
    assert_eq!(std::fs::read(tdir.join("three")).unwrap().len(), 100_000);
    let mut expect = Vec::new();
    File::open(tdir.join("one"))
        .unwrap()
        .read_to_end(&mut expect)
        .unwrap();
    assert_eq!(expect.len(), 300_000);
    unmount(target.as_str());

    // An incremental whose base the target lacks: stream mismatch.
    let other = fs(&dst, "other");
    let err = receive_bytes(
        &zfs,
        &other,
        &send_to_vec(
            &zfs,
            &snap(&data, "s3"),
            &SendOptions::new().from(snap(&data, "s1")),
        ),
        &ReceiveOptions::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::StreamMismatch | ErrorKind::NotFound),
        "{err}"
    );
}

/// Sends into a scratch file, for errors.
fn send_err(zfs: &Zfs, snap: &SnapshotName, opts: &SendOptions) -> zfs_core::Error {
    let path = std::env::temp_dir().join(format!("bad-{}-{}", std::process::id(), rand_suffix()));
    let file = File::create(&path).unwrap();
    let r = zfs.send(snap, opts, &file);
    drop(file);
    std::fs::remove_file(&path).unwrap();
    r.expect_err("send must fail")
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_bad_incremental_base_has_one_kind_in_send_and_send_space() {
    let zfs = zfs();
    let p = pool(&zfs);
    let other_pool = pool(&zfs);
    let a = fs(&p, "a");
    let b = fs(&p, "b");
    zfs.create_filesystem(&a, &NvList::new()).unwrap();
    zfs.create_filesystem(&b, &NvList::new()).unwrap();
    let (s1, s2, unrelated) = (snap(&a, "s1"), snap(&a, "s2"), snap(&b, "u"));
    zfs.snapshot(&[s1.clone(), unrelated.clone()]).unwrap();
    zfs.snapshot(&[s2.clone()]).unwrap();
    let mark = unrelated.bookmark("um").unwrap();
    zfs.bookmark(&[(mark.clone(), unrelated.clone().into())])
        .unwrap();
    let cases: [(&str, &SnapshotName, SendOptions); 4] = [
        ("same snapshot", &s2, SendOptions::new().from(s2.clone())),
        ("wrong order", &s1, SendOptions::new().from(s2.clone())),
        ("unrelated", &s2, SendOptions::new().from(unrelated.clone())),
        ("unrelated bookmark", &s2, SendOptions::new().from(mark)),
    ];
    for (what, to, opts) in &cases {
        let err = zfs.send_space(to, opts).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::NotAncestor,
            "send_space, {what}: {err}"
        );
        let err = send_err(&zfs, to, opts);
        assert_eq!(err.kind(), ErrorKind::NotAncestor, "send, {what}: {err}");
    }
    // A base in another pool.
    let elsewhere = snap(&other_pool.root(), "x");
    zfs.snapshot(&[elsewhere.clone()]).unwrap();
    let opts = SendOptions::new().from(elsewhere);
    let err = zfs.send_space(&s2, &opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CrossPool, "send_space: {err}");
    let err = send_err(&zfs, &s2, &opts);
    assert_eq!(err.kind(), ErrorKind::CrossPool, "send: {err}");
    assert!(err.to_string().contains(s2.as_str()), "{err}");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn send_to_bad_fd_and_broken_pipe() {
    let zfs = zfs();
    let p = pool(&zfs);
    let s = snap(&p.root(), "s");
    zfs.snapshot(&[s.clone()]).unwrap();

    // A read-only file: the copy to it fails, and that is the error.
    let path = std::env::temp_dir().join("readonly-target");
    std::fs::write(&path, b"").unwrap();
    let ro = File::open(&path).unwrap();
    let err = zfs.send(&s, &SendOptions::new(), &ro).unwrap_err();
    assert_eq!(err.errno().map(|e| e.0), Some(libc::EBADF), "{err}");

    // The read end of a pipe: the kernel refuses to write to it.
    let pipe = Pipe::new(65536).unwrap();
    let err = zfs
        .send(&s, &SendOptions::new(), pipe.read.as_fd())
        .unwrap_err();
    assert!(err.errno().is_some(), "{err}");

    // A pipe whose reader is gone: broken pipe, no hang, no signal death.
    let Pipe { read, write, .. } = Pipe::new(65536).unwrap();
    drop(read);
    let err = zfs.send(&s, &SendOptions::new(), &write).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");

    // A missing snapshot.
    let err = zfs
        .send(&snap(&p.root(), "nope"), &SendOptions::new(), &write)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn interrupted_resumable_receive_token_decodes_and_resumes() {
    let zfs = zfs();
    let src = pool(&zfs);
    let dst = pool(&zfs);
    let data = fs(&src, "big data");
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    let dir = mount(data.as_str());
    for i in 0..8 {
        write_file(&dir.join(format!("f{i}")), i, 1 << 20);
    }
    unmount(data.as_str());
    let s = snap(&data, "s 1");
    zfs.snapshot(&[s.clone()]).unwrap();
    let stream = send_to_vec(&zfs, &s, &SendOptions::new());
    assert!(stream.len() > 4 << 20);

    let target = fs(&dst, "copy of data");
    // Interrupt: only the first half of the stream arrives.
    let err = receive_bytes(
        &zfs,
        &target,
        &stream[..stream.len() / 2],
        &ReceiveOptions::new().resumable(true),
    )
    .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::BadStream | ErrorKind::Interrupted | ErrorKind::Other
        ),
        "{err}"
    );
    let token = zfs
        .properties(&target)
        .unwrap()
        .receive_resume_token
        .expect("a resume token");
    let token = ResumeToken::parse(&token).unwrap();
    assert_eq!(token.to_guid, zfs.snapshot_info(&s).unwrap().guid());
    assert_eq!(token.to_name, s.as_str());
    assert_eq!(token.from_guid, None);
    assert!(token.bytes > 0);

    // Resume: send from the token, receive resumable.
    let (resolved, _) = zfs.resolve_resume_token(&token).unwrap();
    assert_eq!(resolved, s);
    let path = std::env::temp_dir().join("resume-stream");
    let f = File::create(&path).unwrap();
    zfs.send_resume(&token, &f).unwrap();
    drop(f);
    let rest = std::fs::read(&path).unwrap();
    assert!(
        rest.len() < stream.len(),
        "a resumed stream skips what arrived"
    );
    receive_bytes(&zfs, &target, &rest, &ReceiveOptions::new().resumable(true)).unwrap();
    assert_eq!(
        zfs.snapshot_info(&snap(&target, "s 1")).unwrap().guid(),
        zfs.snapshot_info(&s).unwrap().guid()
    );
    assert!(zfs
        .properties(&target)
        .unwrap()
        .receive_resume_token
        .is_none());

    // Abort path: interrupt again into another target, then discard.
    let t2 = fs(&dst, "second");
    let _ = receive_bytes(
        &zfs,
        &t2,
        &stream[..stream.len() / 3],
        &ReceiveOptions::new().resumable(true),
    )
    .unwrap_err();
    assert!(zfs.abort_resumable_receive(&t2).unwrap());
    assert!(!zfs.exists(&t2));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn forced_receive_rolls_back_a_modified_target() {
    let zfs = zfs();
    let src = pool(&zfs);
    let dst = pool(&zfs);
    let data = fs(&src, "data");
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    zfs.snapshot(&[snap(&data, "s1")]).unwrap();
    let d = mount(data.as_str());
    write_file(&d.join("new"), 9, 50_000);
    unmount(data.as_str());
    zfs.snapshot(&[snap(&data, "s2")]).unwrap();

    let target = fs(&dst, "copy");
    receive_bytes(
        &zfs,
        &target,
        &send_to_vec(&zfs, &snap(&data, "s1"), &SendOptions::new()),
        &ReceiveOptions::new(),
    )
    .unwrap();
    // Modify the target after its base.
    let t = mount(target.as_str());
    write_file(&t.join("local change"), 5, 10_000);
    unmount(target.as_str());
    assert!(zfs.properties(&target).unwrap().written.unwrap() > 0);

    let inc = send_to_vec(
        &zfs,
        &snap(&data, "s2"),
        &SendOptions::new().from(snap(&data, "s1")),
    );
    let err = receive_bytes(&zfs, &target, &inc, &ReceiveOptions::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DestinationModified, "{err}");
    receive_bytes(&zfs, &target, &inc, &ReceiveOptions::new().force(true)).unwrap();
    assert!(zfs.exists(&snap(&target, "s1")) && zfs.exists(&snap(&target, "s2")));
    let t = mount(target.as_str());
    assert!(t.join("new").exists() && !t.join("local change").exists());
    unmount(target.as_str());
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn forced_full_receive_into_an_existing_filesystem_is_refused() {
    let zfs = zfs();
    let src = pool(&zfs);
    let dst = pool(&zfs);
    let data = fs(&src, "data");
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    zfs.snapshot(&[snap(&data, "s1")]).unwrap();
    let target = fs(&dst, "precious");
    zfs.create_filesystem(&target, &NvList::new()).unwrap();
    let t = mount(target.as_str());
    write_file(&t.join("mine"), 4, 20_000);
    unmount(target.as_str());
    zfs.snapshot(&[snap(&target, "local")]).unwrap();
    let fs_guid = zfs.filesystem(&target).unwrap().guid();
    let snap_guid = zfs.snapshot_info(&snap(&target, "local")).unwrap().guid();

    let full = send_to_vec(&zfs, &snap(&data, "s1"), &SendOptions::new());
    let err = receive_bytes(&zfs, &target, &full, &ReceiveOptions::new().force(true))
        .expect_err("a forced full receive must not replace an existing filesystem");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(zfs.filesystem(&target).unwrap().guid(), fs_guid);
    assert_eq!(
        zfs.snapshot_info(&snap(&target, "local")).unwrap().guid(),
        snap_guid
    );
    assert!(!zfs.exists(&snap(&target, "s1")));
    let t = mount(target.as_str());
    assert_eq!(std::fs::read(t.join("mine")).unwrap().len(), 20_000);
    unmount(target.as_str());
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn forced_incremental_onto_a_later_target_snapshot_is_refused() {
    let zfs = zfs();
    let src = pool(&zfs);
    let dst = pool(&zfs);
    let data = fs(&src, "data");
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    for s in ["s1", "s2", "s3"] {
        zfs.snapshot(&[snap(&data, s)]).unwrap();
    }
    let target = fs(&dst, "copy");
    receive_bytes(
        &zfs,
        &target,
        &send_to_vec(&zfs, &snap(&data, "s1"), &SendOptions::new()),
        &ReceiveOptions::new(),
    )
    .unwrap();
    zfs.snapshot(&[snap(&target, "later")]).unwrap();
    let later_guid = zfs.snapshot_info(&snap(&target, "later")).unwrap().guid();

    // The base s1 is on the target, but not its newest snapshot.
    let inc = send_to_vec(
        &zfs,
        &snap(&data, "s2"),
        &SendOptions::new().from(snap(&data, "s1")),
    );
    let err = receive_bytes(&zfs, &target, &inc, &ReceiveOptions::new().force(true))
        .expect_err("a forced receive must not destroy a later snapshot");
    assert_eq!(err.kind(), ErrorKind::HasNewerSnapshots, "{err}");
    assert!(err.to_string().contains("later"), "{err}");
    assert_eq!(
        zfs.snapshot_info(&snap(&target, "later")).unwrap().guid(),
        later_guid
    );
    assert!(!zfs.exists(&snap(&target, "s2")));

    // A base the target lacks altogether: stream mismatch, nothing destroyed.
    let inc = send_to_vec(
        &zfs,
        &snap(&data, "s3"),
        &SendOptions::new().from(snap(&data, "s2")),
    );
    let err = receive_bytes(&zfs, &target, &inc, &ReceiveOptions::new().force(true)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StreamMismatch, "{err}");
    assert!(zfs.exists(&snap(&target, "later")));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn receive_refuses_garbage_and_leaves_nothing() {
    let zfs = zfs();
    let p = pool(&zfs);
    let target = fs(&p, "t");
    let err = receive_bytes(&zfs, &target, &[0u8; 1000], &ReceiveOptions::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadStream, "{err}");
    let err = receive_bytes(&zfs, &target, b"short", &ReceiveOptions::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadStream, "{err}");
    assert!(!zfs.exists(&target));
}

// ---------------------------------------------------------------- rollback, props, misc

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn rollback_to_latest_and_named_snapshot() {
    let zfs = zfs();
    let p = pool(&zfs);
    let data = fs(&p, "data");
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    zfs.snapshot(&[snap(&data, "s1")]).unwrap();
    let d = mount(data.as_str());
    write_file(&d.join("x"), 1, 10_000);
    unmount(data.as_str());
    zfs.snapshot(&[snap(&data, "s2")]).unwrap();
    let d = mount(data.as_str());
    write_file(&d.join("y"), 2, 10_000);
    unmount(data.as_str());
    let written = zfs.properties(&data).unwrap().written.unwrap();
    assert!(written > 10_000, "{written}");

    assert_eq!(zfs.rollback(&data).unwrap(), snap(&data, "s2"));
    let after = zfs.properties(&data).unwrap().written.unwrap();
    assert!(
        after < written,
        "rollback discarded the changes: {after} < {written}"
    );
    let d = mount(data.as_str());
    assert!(d.join("x").exists() && !d.join("y").exists());
    unmount(data.as_str());
    // Not the latest snapshot: refused, nothing lost.
    let err = zfs.rollback_to(&snap(&data, "s1")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HasNewerSnapshots, "{err}");
    assert!(zfs.exists(&snap(&data, "s2")));
    zfs.destroy_snapshots(&[snap(&data, "s2")], false).unwrap();
    zfs.rollback_to(&snap(&data, "s1")).unwrap();
    let d = mount(data.as_str());
    assert!(!d.join("x").exists());
    unmount(data.as_str());
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn properties_are_typed() {
    let zfs = zfs();
    let p = pool(&zfs);
    let data = fs(&p, "data");
    zfs.create_filesystem(&data, &NvList::new().with("readonly", 1u64))
        .unwrap();
    let props = zfs.properties(&data).unwrap();
    assert_eq!(props.readonly, Some(true));
    assert!(props.used.unwrap() > 0);
    assert!(props.referenced.unwrap() > 0);
    assert!(props.creation.unwrap() > 1_600_000_000);
    assert_eq!(props.encryption, zfs_core::Encryption::Off);
    assert_eq!(props.receive_resume_token, None);
    assert_eq!(props.source("readonly"), Some(data.as_str()), "set locally");
    // snapshots_changed (OpenZFS 2.2+) is there iff the module has the
    // property, and then it is the time of the snapshot just taken.
    let before = now_secs();
    zfs.snapshot(&[snap(&data, "s")]).unwrap();
    let after = now_secs();
    let props = zfs.properties(&data).unwrap();
    let has = zfs
        .features()
        .has_dataset_property("snapshots_changed")
        .unwrap();
    match props.snapshots_changed {
        Some(t) => {
            assert!(has, "reported by a module without the property");
            assert!((before..=after).contains(&t), "{before} <= {t} <= {after}");
        }
        None => assert!(!has, "the module has snapshots_changed: {props:?}"),
    }
    assert_eq!(zfs.filesystem(&data).unwrap().name(), &data);
    assert_eq!(
        zfs.pools()
            .unwrap()
            .iter()
            .filter(|x| x.name() == p.name())
            .count(),
        1
    );
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn rename_clone_promote_destroy() {
    let zfs = zfs();
    let p = pool(&zfs);
    let a = fs(&p, "a");
    let b = fs(&p, "b");
    zfs.create_filesystem(&a, &NvList::new()).unwrap();
    let guid = zfs.filesystem(&a).unwrap().guid();
    zfs.rename(&a, &b).unwrap();
    assert!(!zfs.exists(&a));
    assert_eq!(
        zfs.filesystem(&b).unwrap().guid(),
        guid,
        "rename keeps the guid"
    );
    zfs.snapshot(&[snap(&b, "origin")]).unwrap();
    let c = fs(&p, "clone");
    zfs.clone_snapshot(&snap(&b, "origin"), &c, &NvList::new())
        .unwrap();
    zfs.promote(&c).unwrap();
    assert!(
        zfs.exists(&snap(&c, "origin")),
        "promote moved the snapshot"
    );
    let err = zfs.destroy(&c).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Busy | ErrorKind::AlreadyExists | ErrorKind::Other
        ),
        "{err}"
    );
    zfs.destroy(&b).unwrap();
    assert_eq!(zfs.dataset(&b).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_name_with_spaces_end_to_end() {
    let zfs = zfs();
    let src = pool(&zfs);
    let dst = pool(&zfs);
    let data: DatasetName = format!("{}/my documents", src.root()).parse().unwrap();
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    let child = data.child("tax returns 2024").unwrap();
    zfs.create_filesystem(&child, &NvList::new()).unwrap();
    let s = child.snapshot("before the move").unwrap();
    zfs.snapshot(&[s.clone()]).unwrap();
    let m = s.bookmark("kept mark").unwrap();
    zfs.bookmark(&[(m.clone(), s.clone().into())]).unwrap();
    zfs.hold(&[(s.clone(), "a tag with spaces".into())])
        .unwrap();
    assert_eq!(zfs.snapshots(&child).unwrap()[0].name(), &s);
    assert_eq!(zfs.bookmarks(&child).unwrap()[0].name(), &m);
    let target: DatasetName = format!("{}/backup of my documents", dst.root())
        .parse()
        .unwrap();
    let r = receive_bytes(
        &zfs,
        &target,
        &send_to_vec(&zfs, &s, &SendOptions::new()),
        &ReceiveOptions::new(),
    )
    .unwrap();
    assert_eq!(r.snapshot.short_name(), "before the move");
    // The CLI agrees on the name.
    let listed = zfs_cli(&[
        "list",
        "-H",
        "-o",
        "name",
        "-t",
        "snapshot",
        target.as_str(),
    ]);
    assert_eq!(listed.trim(), r.snapshot.as_str());
    zfs.release(&[(s, "a tag with spaces".into())]).unwrap();
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn send_progress_reports_bytes_of_a_running_send() {
    let zfs = zfs();
    let p = pool(&zfs);
    let data = fs(&p, "data");
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    let d = mount(data.as_str());
    write_file(&d.join("blob"), 3, 4 << 20);
    unmount(data.as_str());
    let s = snap(&data, "s");
    zfs.snapshot(&[s.clone()]).unwrap();
    // Our own pipe: the kernel writes into it directly, and the progress
    // ioctl matches that fd number in this process.
    let Pipe { read, write, .. } = Pipe::new(64 << 10).unwrap();
    let write_fd = write.as_raw_fd();
    let total = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let r = zfs.send(&s, &SendOptions::new(), &write);
            drop(write); // EOF for the reader
            r
        });
        let mut input = File::from(read);
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        // Read a little, then ask how far the send is: it is blocked on the
        // full pipe, with at least what we read already written.
        while got < 1 << 20 {
            let n = input.read(&mut buf).unwrap();
            assert!(n > 0, "the send ended early: {:?}", sender.is_finished());
            got += n;
        }
        let progress = zfs.send_progress(&s, write_fd).unwrap();
        assert!(
            progress >= got as u64 - 65536 && progress > 0,
            "progress {progress} vs read {got}"
        );
        loop {
            let n = input.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        sender.join().unwrap().unwrap();
        got
    });
    assert!(total > 4 << 20);
    // No send running on that fd any more: not found.
    let Pipe { write: w2, .. } = Pipe::new(4096).unwrap();
    assert_eq!(
        zfs.send_progress(&s, w2.as_raw_fd()).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn receive_with_origin_makes_a_clone() {
    let zfs = zfs();
    let src = pool(&zfs);
    let dst = pool(&zfs);
    let data = fs(&src, "data");
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    zfs.snapshot(&[snap(&data, "s1")]).unwrap();
    zfs.snapshot(&[snap(&data, "s2")]).unwrap();
    let base = fs(&dst, "base");
    receive_bytes(
        &zfs,
        &base,
        &send_to_vec(&zfs, &snap(&data, "s1"), &SendOptions::new()),
        &ReceiveOptions::new(),
    )
    .unwrap();
    let inc = send_to_vec(
        &zfs,
        &snap(&data, "s2"),
        &SendOptions::new().from(snap(&data, "s1")),
    );
    let clone = fs(&dst, "clone");
    let r = receive_bytes(
        &zfs,
        &clone,
        &inc,
        &ReceiveOptions::new().origin(snap(&base, "s1")),
    )
    .unwrap();
    assert_eq!(r.snapshot, snap(&clone, "s2"));
    let origin = zfs
        .properties(&clone)
        .unwrap()
        .raw
        .get_nvlist("origin")
        .unwrap()
        .get_str("value")
        .unwrap()
        .to_owned();
    assert_eq!(origin, snap(&base, "s1").as_str());
}

/// The `testing` helpers an embedder's tests use: `require_zfs` finds ZFS
/// (root in the VM), `fill` writes fixture data through a mount(2) of its
/// own, `Mounted` shows a snapshot read-only and unmounts on drop.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn testing_helpers_require_zfs_fill_and_mount() {
    use zfs_core::testing::{fill, require_zfs, Mounted};
    let zfs = require_zfs().expect("ZFS in the test VM");
    let pool = FilePool::create_unique(&zfs, "helpers", 128 << 20).unwrap();
    let fs = pool.root().child("data").unwrap();
    zfs.create_filesystem(&fs, &zfs_core::NvList::new())
        .unwrap();
    fill(&fs, (2 << 20) + 5, 7).unwrap();
    let snap = fs.snapshot("s1").unwrap();
    zfs.snapshot(std::slice::from_ref(&snap)).unwrap();
    let mounted = Mounted::new(&snap).unwrap();
    let dir = mounted.path().to_path_buf();
    let mut sizes: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [5, 1 << 20, 1 << 20]);
    // Read-only: a snapshot cannot be written.
    assert!(std::fs::write(dir.join("new"), b"x").is_err());
    let mounts = || std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(mounts().contains(dir.to_str().unwrap()));
    drop(mounted);
    assert!(
        !mounts().contains(dir.to_str().unwrap()),
        "unmounted on drop"
    );
    assert!(!dir.exists(), "its directory removed");
    // Nothing left mounted: the pool goes away cleanly.
    pool.destroy().unwrap();
}
