//! The `backup` example's contract, run as a program against real OpenZFS
//! (`cargo xtask test` puts it on the guest's PATH): its commands, its
//! one-line errors and its exit codes.

use std::process::{Command, Output};

use zfs_core::testing::FilePool;
use zfs_core::{DatasetName, NvList, Zfs};

const SIZE: u64 = 256 << 20;

fn backup(args: &[&str]) -> Output {
    Command::new("backup")
        .args(args)
        .output()
        .expect("the backup example is on PATH in the guest")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// An error is one line on stderr, and the exit code is below 100.
fn assert_fails(o: &Output, expected: i32, says: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(o), expected, "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(says), "{stderr:?} should say {says:?}");
}

fn ok(o: &Output) -> String {
    assert_eq!(code(o), 0, "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn backup_cli_honours_its_contract() {
    let zfs = Zfs::open().unwrap();
    let tank = FilePool::create_unique(&zfs, "clitank", SIZE).unwrap();
    let pipe = FilePool::create_unique(&zfs, "clipipe", SIZE).unwrap();
    let src: DatasetName = format!("{}/my home", tank.root()).parse().unwrap();
    zfs.create_filesystem(&src, &NvList::new()).unwrap();
    zfs.create_filesystem(&src.child("sub dir").unwrap(), &NvList::new())
        .unwrap();
    let dst: DatasetName = format!("{}/my home", pipe.root()).parse().unwrap();
    let (s, d) = (src.as_str(), dst.as_str());

    // Usage.
    assert_eq!(code(&backup(&["--help"])), 0);
    assert_fails(&backup(&[]), 2, "backup");
    assert_fails(&backup(&["frobnicate"]), 2, "backup");
    assert_fails(&backup(&["sync", s]), 2, "backup");
    assert_fails(&backup(&["sync", s, d, "--keep"]), 2, "backup");
    assert_fails(&backup(&["sync", s, d, "--no-such-flag"]), 2, "backup");
    assert_fails(&backup(&["sync", "bad//name", d]), 2, "backup");

    // Not found.
    assert_fails(
        &backup(&["plan", &format!("{}/absent", tank.root()), d]),
        5,
        "backup",
    );

    // First sync (names with spaces, recursive), then incremental.
    ok(&backup(&[
        "sync", s, d, "-r", "--keep", "2", "--prefix", "cli",
    ]));
    assert!(zfs.exists(&dst.child("sub dir").unwrap()));
    let out = ok(&backup(&[
        "sync",
        s,
        d,
        "--recursive",
        "--keep",
        "2",
        "--prefix",
        "cli",
    ]));
    assert!(out.contains("incremental"), "{out}");
    let out = ok(&backup(&["plan", s, d, "-r"]));
    assert!(out.contains("up to date"), "{out}");

    // Diverged: refused unchanged, exit 3; --rollback resolves it.
    let local = dst.snapshot("local change").unwrap();
    zfs.snapshot(std::slice::from_ref(&local)).unwrap();
    let before: Vec<u64> = zfs
        .snapshots(&dst)
        .unwrap()
        .iter()
        .map(|x| x.guid())
        .collect();
    assert_fails(
        &backup(&["sync", s, d, "-r", "--prefix", "cli"]),
        3,
        "newer",
    );
    let after: Vec<u64> = zfs
        .snapshots(&dst)
        .unwrap()
        .iter()
        .map(|x| x.guid())
        .collect();
    assert_eq!(before, after, "target unchanged");
    assert_eq!(code(&backup(&["plan", s, d, "-r"])), 3);
    ok(&backup(&[
        "sync",
        s,
        d,
        "-r",
        "--rollback",
        "--prefix",
        "cli",
    ]));
    assert!(!zfs.exists(&local));

    // No common snapshot: refused with those words, even with --rollback.
    let other: DatasetName = format!("{}/unrelated", pipe.root()).parse().unwrap();
    zfs.create_filesystem(&other, &NvList::new()).unwrap();
    zfs.snapshot(&[other.snapshot("mine").unwrap()]).unwrap();
    assert_fails(
        &backup(&["sync", s, other.as_str(), "--rollback"]),
        3,
        "no common snapshot",
    );

    // Stream files: send, verify, damage, refuse, restore.
    let snaps = zfs.snapshots(&src).unwrap();
    let (prev, last) = (&snaps[snaps.len() - 2], &snaps[snaps.len() - 1]);
    let file = std::env::temp_dir().join("cli stream.zstream");
    let f = file.to_str().unwrap();
    ok(&backup(&[
        "send",
        last.name().as_str(),
        "--from",
        prev.name().as_str(),
        "-o",
        f,
    ]));
    let out = ok(&backup(&["verify", f]));
    assert!(
        out.contains(&format!("{}", last.guid())) || out.contains(&format!("{:x}", last.guid())),
        "{out}"
    );
    assert_fails(
        &backup(&["send", last.name().as_str(), "-o", f]),
        1,
        "backup",
    );
    let mut data = std::fs::read(&file).unwrap();
    let n = data.len();
    data[n / 2] ^= 0x01;
    let bad = std::env::temp_dir().join("cli damaged.zstream");
    std::fs::write(&bad, &data).unwrap();
    let b = bad.to_str().unwrap();
    assert_fails(&backup(&["verify", b]), 4, "checksum");
    let full = std::env::temp_dir().join("cli full.zstream");
    ok(&backup(&[
        "send",
        last.name().as_str(),
        "-o",
        full.to_str().unwrap(),
    ]));
    let mut data = std::fs::read(&full).unwrap();
    let n = data.len();
    data[n - 100] ^= 0x01;
    std::fs::write(&bad, &data).unwrap();
    let restored: DatasetName = format!("{}/restored copy", pipe.root()).parse().unwrap();
    assert_fails(
        &backup(&["receive", restored.as_str(), "-i", b]),
        4,
        "backup",
    );
    assert!(!zfs.exists(&restored), "no target left behind");
    ok(&backup(&[
        "receive",
        restored.as_str(),
        "-i",
        full.to_str().unwrap(),
    ]));
    assert_eq!(
        zfs.snapshots(&restored).unwrap()[0].guid(),
        last.guid(),
        "the restored snapshot is the source's"
    );
    assert_fails(&backup(&["verify", "/nonexistent file"]), 5, "backup");
}
