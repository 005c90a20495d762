//! Remote replication against real OpenZFS (run by `cargo xtask test` in
//! the VM): a server serving this host's ZFS within a policy, a client
//! endpoint on the other side of a socket, push and pull, refusals that
//! change nothing, and connections cut mid-stream.

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use zfs_core::{DatasetName, SnapshotName, Zfs};
use zfs_replicate::endpoint::{Endpoint, Local};
use zfs_replicate::remote::{serve, Access, Channel, Client, Policy, ServeOptions};
use zfs_replicate::{
    Action, CancelToken, Error, ErrorKind, ExecuteOptions, Keep, Listing, Op, Replication,
};
use zfs_replicate_tests::below as ds;
use zfs_replicate_tests::{mount, summary, unmount, write_file, Pair};

const SIZE: u64 = 256 << 20;

fn pair() -> Pair {
    Pair::new("rtank", "rpipe", SIZE, SIZE)
}

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

fn contents(snap: &SnapshotName) -> BTreeMap<String, Vec<u8>> {
    zfs_replicate_tests::snapshot_contents(snap.as_str())
}

fn opts() -> ExecuteOptions {
    ExecuteOptions::default()
}

/// Runs `f` with a client connected over a socket pair to a server thread
/// that serves this host's ZFS within `policy`. Returns what `f` returned
/// and why the session ended (after the server let go of everything).
fn served<R>(policy: &Policy, f: impl FnOnce(&Client, &UnixStream) -> R) -> (R, String) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let cut = ours.try_clone().expect("clone");
    let zfs = Zfs::open().expect("open /dev/zfs");
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            let channel = Channel::unix(theirs).expect("channel").named("server");
            serve(channel, &Local::new(&zfs), policy, &ServeOptions::default())
        });
        let client =
            Client::connect(Channel::unix(ours).expect("channel").named("nas")).expect("connect");
        let r = f(&client, &cut);
        drop(client);
        let why = server
            .join()
            .expect("server thread")
            .expect("server session");
        (r, why)
    })
}

/// Every snapshot of `fs` and its descendants: name → GUID.
fn tree_guids(zfs: &Zfs, fs: &DatasetName) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if !zfs.exists(fs) {
        return out;
    }
    for d in zfs.descendants(fs).expect("descendants") {
        let rel = d.name().relative_to(fs).unwrap_or("").to_owned();
        for s in zfs.snapshots(d.name()).expect("snapshots") {
            out.insert(format!("{rel}@{}", s.name().short_name()), s.guid());
        }
    }
    out
}

/// What a pool holds: every dataset, snapshot and bookmark with its GUID,
/// holds, `written` and resume tokens.
fn fingerprint(zfs: &Zfs, root: &DatasetName) -> Vec<String> {
    let mut out = Vec::new();
    for d in zfs.descendants(root).expect("descendants") {
        let props = zfs.properties(d.name()).expect("properties");
        out.push(format!(
            "{} guid={} written={:?} token={:?}",
            d.name(),
            d.guid(),
            props.written,
            props.receive_resume_token
        ));
        for s in zfs.snapshots(d.name()).expect("snapshots") {
            let holds = zfs.holds(s.name()).expect("holds");
            out.push(format!(
                "{} {} holds={:?}",
                s.name(),
                s.guid(),
                holds.keys()
            ));
        }
        for b in zfs.bookmarks(d.name()).expect("bookmarks") {
            out.push(format!("{} {}", b.name(), b.guid()));
        }
    }
    out
}

fn holds_left(zfs: &Zfs, root: &DatasetName) -> usize {
    let mut n = 0;
    for d in zfs.descendants(root).expect("descendants") {
        for s in zfs.snapshots(d.name()).expect("snapshots") {
            n += zfs.holds(s.name()).expect("holds").len();
        }
    }
    n
}

// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn push_and_pull_over_a_socket() {
    let p = pair();
    let src = p.src("home");
    let child = ds(&src, "my docs");
    p.create(&src);
    p.create(&child);
    fill(&src, 1, 3, 200_000);
    fill(&child, 2, 2, 100_000);
    let backups = p.dst("backups");
    p.create(&backups);
    let dst = ds(&backups, "home");
    let local = Local::new(&p.zfs);

    // Push: the target serves, receive-only.
    let receive_only = Policy::new().allow(backups.clone(), Access::Receive);
    let repl = Replication::new(src.clone(), dst.clone())
        .recursive(true)
        .prefix("rt");
    let ((), why) = served(&receive_only, |nas, _| {
        let first = repl
            .sync_with(&local, nas, &opts(), Keep::default())
            .expect("first push");
        assert_eq!(first.report.transfers.len(), 2, "{first:?}");
        fill(&child, 3, 1, 50_000);
        let second = repl
            .sync_with(&local, nas, &opts(), Keep::default())
            .expect("second push");
        assert!(second
            .plan
            .steps
            .iter()
            .all(|s| matches!(s.action, Action::Incremental { .. })));
        let plan = repl.plan_with(&local, nas).expect("plan");
        assert!(plan.is_up_to_date(), "{plan}");
        assert!(
            plan.steps.iter().all(|s| s.listing == Listing::Cursor),
            "cursor planning works remotely: {plan}"
        );
        // A keep on the target needs more than receive: refused up front.
        let before = tree_guids(&p.zfs, &src);
        let refused = repl
            .sync_with(&local, nas, &opts(), Keep::both(Some(1)))
            .expect_err("keep against a receive-only server");
        assert!(
            matches!(
                &refused,
                Error::PermissionDenied {
                    operation: Op::DestroySnapshot,
                    ..
                }
            ),
            "{refused}"
        );
        assert_eq!(tree_guids(&p.zfs, &src), before, "no snapshot taken");
    });
    assert!(why.contains("closed"), "{why}");
    assert_eq!(tree_guids(&p.zfs, &src), tree_guids(&p.zfs, &dst));
    let newest = p.zfs.snapshots(&child).expect("list").pop().expect("one");
    let received = ds(&dst, "my docs")
        .snapshot(newest.name().short_name())
        .expect("name");
    assert_eq!(contents(newest.name()), contents(&received));
    assert_eq!(holds_left(&p.zfs, &p.tank.root()), 0);

    // Pull: the source serves, send-only; the target keeps 2.
    let send_only = Policy::new().allow(src.clone(), Access::Send);
    let pulled = p.dst("pulled");
    let repl = Replication::new(src.clone(), pulled.clone())
        .recursive(true)
        .prefix("rt");
    served(&send_only, |nas, _| {
        for round in 0..3 {
            fill(&src, 10 + round, 1, 30_000);
            repl.sync_with(
                nas,
                &local,
                &opts(),
                Keep {
                    source: None,
                    target: Some(2),
                },
            )
            .unwrap_or_else(|e| panic!("pull {round}: {e}"));
        }
    });
    let pulled_snaps = tree_guids(&p.zfs, &pulled);
    let source_snaps = tree_guids(&p.zfs, &src);
    for (name, guid) in &pulled_snaps {
        assert_eq!(source_snaps.get(name), Some(guid), "{name}");
    }
    assert_eq!(
        p.zfs
            .snapshots(&pulled)
            .expect("list")
            .iter()
            .filter(|s| s.name().short_name().starts_with("rt_"))
            .count(),
        2,
        "the target kept 2 of ours"
    );
    summary(&format!(
        "remote: push full+incremental and pull x3 over a socket: {} snapshots on the pulled side",
        pulled_snaps.len()
    ));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn policy_refusals_change_nothing() {
    let p = pair();
    let src = p.src("laptop");
    p.create(&src);
    fill(&src, 1, 2, 50_000);
    p.snap(&src, "s1");
    let backups = p.dst("backups");
    p.create(&backups);
    let laptop = ds(&backups, "laptop");
    let laptop2 = ds(&backups, "laptop2");
    p.create(&laptop2);
    p.snap(&laptop2, "old");
    let local = Local::new(&p.zfs);
    // Something to protect inside the root: a first backup.
    let repl = Replication::new(src.clone(), laptop.clone());
    repl.sync(&p.zfs, &opts(), None).expect("first backup");
    let base = p.zfs.snapshots(&laptop).expect("list").pop().expect("one");

    let policy = Policy::new().allow(laptop.clone(), Access::Receive);
    let pool_root: DatasetName = p.pipe.root();
    let before = fingerprint(&p.zfs, &pool_root);
    served(&policy, |nas, _| {
        let denied = |r: Result<(), Error>, dataset: &DatasetName, op: Op| match r {
            Err(Error::PermissionDenied {
                dataset: d,
                operation,
                ..
            }) => {
                assert_eq!((&d, operation), (dataset, op));
            }
            other => panic!("expected a refusal of {op} on {dataset}, got {other:?}"),
        };
        // A sibling with a shared prefix is outside the root.
        denied(nas.snapshots(&laptop2).map(drop), &laptop2, Op::List);
        denied(nas.exists(&backups).map(drop), &backups, Op::List);
        denied(nas.destroy(&laptop), &laptop, Op::DestroyDataset);
        denied(
            nas.destroy_snapshots(std::slice::from_ref(base.name())),
            &laptop,
            Op::DestroySnapshot,
        );
        denied(nas.rollback_to(base.name()), &laptop, Op::Rollback);
        let (r, w) = zfs_core::pipe::Pipe::new(1 << 16)
            .map(|p| (p.read, p.write))
            .expect("pipe");
        drop(r);
        denied(
            nas.send(base.name(), &zfs_core::SendOptions::new(), w),
            &laptop,
            Op::Send,
        );
        // A sync into the sibling, and one that would destroy removed
        // datasets, are refused before anything changes.
        let into_sibling = Replication::new(src.clone(), laptop2.clone());
        let e = into_sibling
            .sync_with(&local, nas, &opts(), Keep::default())
            .expect_err("sibling");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        let destroying = Replication::new(src.clone(), laptop.clone()).destroy_removed(true);
        let e = destroying
            .sync_with(&local, nas, &opts(), Keep::default())
            .expect_err("destroy_removed");
        assert!(
            matches!(
                e,
                Error::PermissionDenied {
                    operation: Op::DestroyDataset,
                    ..
                }
            ),
            "{e}"
        );
        // The same connection still serves what is allowed.
        assert!(nas.exists(&laptop).expect("allowed"));
        assert_eq!(
            nas.snapshots(&laptop).expect("allowed"),
            p.zfs.snapshots(&laptop).expect("list")
        );
    });
    assert_eq!(fingerprint(&p.zfs, &pool_root), before, "nothing changed");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn connection_cut_mid_stream_then_resume() {
    let p = pair();
    let src = p.src("data");
    p.create(&src);
    let backups = p.dst("backups");
    p.create(&backups);
    let dst = ds(&backups, "data");
    let local = Local::new(&p.zfs);
    let policy = Policy::new().allow(backups.clone(), Access::Receive);
    let repl = Replication::new(src.clone(), dst.clone()).prefix("rt");
    let (mut resumed, mut cut_short) = (0, 0);
    for point in 1..=10u64 {
        // 6 MiB new each time (a pool this small keeps only ~128 MiB: the
        // rest is slop): the first run is a full stream, the others
        // incrementals, each cut after `point` half-MiB.
        fill(&src, point, 3, 2 << 20);
        let threshold = point * (512 << 10);
        let ((), _) = served(&policy, |nas, socket| {
            let socket = Arc::new(socket.try_clone().expect("clone"));
            let cancel = CancelToken::new();
            let observer: zfs_replicate::Observer =
                Arc::new(move |pr: &zfs_replicate::Progress<'_>| {
                    if pr.bytes >= threshold {
                        let _ = socket.shutdown(std::net::Shutdown::Both);
                    }
                });
            let cut = ExecuteOptions {
                cancel,
                observer: Some(observer),
            };
            match repl.sync_with(&local, nas, &cut, Keep::default()) {
                Ok(r) => summary(&format!(
                    "remote cut {point}: completed before the cut ({} bytes)",
                    r.report.bytes()
                )),
                Err(e) => {
                    assert!(
                        matches!(
                            e.kind(),
                            ErrorKind::Disconnected | ErrorKind::Interrupted | ErrorKind::BadStream
                        ),
                        "point {point}: {e}"
                    );
                    cut_short += 1;
                }
            }
        });
        // The session is over: its holds and lock went with it.
        assert_eq!(holds_left(&p.zfs, &p.tank.root()), 0, "point {point}");
        assert_eq!(holds_left(&p.zfs, &p.pipe.root()), 0, "point {point}");
        let plan = repl.plan(&p.zfs).expect("plan");
        if matches!(plan.steps[0].action, Action::Resume { .. }) {
            resumed += 1;
        }
        served(&policy, |nas, _| {
            repl.sync_with(&local, nas, &opts(), Keep::default())
                .unwrap_or_else(|e| panic!("point {point}: the next run: {e}"));
        });
        assert_eq!(p.guids(&src), p.guids(&dst), "point {point}");
    }
    let newest = p.zfs.snapshots(&src).expect("list").pop().expect("one");
    let copy = dst.snapshot(newest.name().short_name()).expect("name");
    assert_eq!(contents(newest.name()), contents(&copy));
    assert!(cut_short >= 8, "only {cut_short} of 10 runs were cut short");
    summary(&format!(
        "remote: connection cut at 10 points (1 full, 9 incremental): {cut_short} cut short, {resumed} left a resumable receive, every next run completed"
    ));
}
