//! The `backup` example's contract, run as a program against real OpenZFS
//! (`cargo xtask test` puts it on the guest's PATH): its commands, its
//! one-line errors and its exit codes; and its remote side: `backup serve`
//! over stdio (`--via-*`) and TCP, policies, tokens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use zfs_core::testing::FilePool;
use zfs_core::{DatasetName, NvList, Zfs};
use zfs_replicate::Op;
use zfs_replicate_tests::Pair;

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
    // Shown with --nocapture: the messages as users see them.
    eprintln!("exit {}: {}", code(o), stderr.trim_end());
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
    // The restored copy is a backup too: read-only, not mounted by itself.
    assert_eq!(prop(&restored, "readonly"), ("on".into(), "local".into()));
    assert_eq!(
        prop(&restored, "canmount"),
        ("noauto".into(), "local".into())
    );

    // Receive overrides: -o / -x for the datasets a sync creates; a bad
    // one is a usage error before anything runs.
    let other: DatasetName = format!("{}/overridden", pipe.root()).parse().unwrap();
    let o = other.as_str();
    for bad in [
        &["--set", "readonly=maybe"][..],
        &["--set", "compression"],
        &["--set", "used=1"],
        &["--exclude-property", "Not:Valid"],
    ] {
        let o = backup(&[&["sync", s, o][..], bad].concat());
        assert_fails(&o, 2, "backup");
    }
    assert!(!zfs.exists(&other), "nothing created");
    let sets = ["--set", "compression=zstd", "--set", "readonly=off"];
    let exclude = ["--exclude-property", "mountpoint", "--prefix", "ovr"];
    ok(&backup(&[&["sync", s, o][..], &sets, &exclude].concat()));
    assert_eq!(prop(&other, "compression"), ("zstd".into(), "local".into()));
    assert_eq!(prop(&other, "readonly"), ("off".into(), "local".into()));
    assert_eq!(prop(&other, "canmount"), ("noauto".into(), "local".into()));
}

/// `--json`'s stdout: exactly one JSON document, nothing else.
fn json_doc(o: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("one JSON document on stdout ({e}): {text:?}"))
}

/// `plan --json` and `sync --json`: the plan and the sync report as one
/// JSON document on stdout, nothing else there; errors as without it.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn backup_cli_prints_json() {
    let pair = Pair::new("jtank", "jpipe", SIZE, SIZE);
    let src = pair.src("my home");
    filled(&pair.zfs, &src, 3);
    let first = pair.snap(&src, "first");
    let first_guid = pair.guids(&src)[0];
    let dst = pair.dst("my home");
    let (s, d) = (src.as_str(), dst.as_str());

    // The plan: a full send of @first.
    let o = backup(&["plan", s, d, "--json"]);
    ok(&o);
    let plan = json_doc(&o);
    eprintln!("plan --json: {plan:#}");
    assert_eq!(plan["source"], s);
    assert_eq!(plan["target"], d);
    assert_eq!(plan["up_to_date"], false);
    assert!(plan["estimated_bytes"].as_u64() > Some(0), "{plan}");
    let steps = plan["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "{plan}");
    let action = &steps[0]["action"];
    assert_eq!(action["kind"], "full", "{plan}");
    assert_eq!(action["snapshot"]["name"], first.as_str());
    assert_eq!(action["snapshot"]["guid"].as_u64(), Some(first_guid));
    assert_eq!(steps[0]["divergence"], serde_json::Value::Null);

    // The sync: its report. Nothing else on stdout, nor on stderr (no
    // progress line for so little).
    let o = backup(&["sync", s, d, "--json", "--prefix", "js", "--keep", "1"]);
    ok(&o);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sync = json_doc(&o);
    eprintln!("sync --json: {sync:#}");
    let taken = sync["snapshot"].as_str().expect("snapshot");
    assert!(taken.starts_with("js_"), "{sync}");
    assert_eq!(sync["plan"]["steps"][0]["action"]["kind"], "full");
    let transfers = sync["report"]["transfers"].as_array().expect("transfers");
    let sent: Vec<&str> = transfers
        .iter()
        .map(|t| t["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(sent, [first.to_string(), format!("{s}@{taken}")], "{sync}");
    for t in transfers {
        assert_eq!(t["target"], d, "{sync}");
        assert!(t["bytes"].as_u64() > Some(0), "{sync}");
    }
    let bytes: u64 = transfers.iter().filter_map(|t| t["bytes"].as_u64()).sum();
    assert!(bytes > 64 << 10, "the file's 64 KiB at least: {sync}");
    assert_eq!(
        sync["report"]["bookmarks"].as_array().map(Vec::len),
        Some(1)
    );
    for side in ["pruned_source", "pruned_target"] {
        assert_eq!(sync[side]["destroyed"], serde_json::json!([]), "{sync}");
    }
    assert_eq!(pair.guids(&src), pair.guids(&dst));

    // Up to date.
    let o = backup(&["plan", s, d, "--json"]);
    ok(&o);
    let plan = json_doc(&o);
    assert_eq!(plan["up_to_date"], true, "{plan}");
    assert_eq!(plan["steps"][0]["action"]["kind"], "up_to_date", "{plan}");

    // Blocked: the plan is still the document, with exit 3 and the one
    // line on stderr; a sync prints nothing on stdout.
    pair.snap(&dst, "local");
    let o = backup(&["plan", s, d, "--json"]);
    assert_fails(&o, 3, "newer");
    let plan = json_doc(&o);
    let divergence = &plan["steps"][0]["divergence"];
    assert_eq!(divergence["kind"], "target_has_newer_snapshots", "{plan}");
    assert_eq!(
        divergence["newer"],
        serde_json::json!([format!("{d}@local")])
    );
    let o = backup(&["sync", s, d, "--json", "--prefix", "js"]);
    assert_fails(&o, 3, "newer");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // A usage error, as without --json.
    assert_fails(&backup(&["send", first.as_str(), "--json"]), 2, "--json");
}

/// `zfs get -H -o value,source PROP DATASET`.
fn prop(dataset: &DatasetName, name: &str) -> (String, String) {
    let out =
        zfs_replicate_tests::zfs_cli(&["get", "-H", "-o", "value,source", name, dataset.as_str()]);
    let (value, source) = out.trim_end().split_once('\t').expect("value and source");
    (value.to_owned(), source.to_owned())
}

/// The GUIDs of the snapshots of `dataset`, oldest first.
fn guids(zfs: &Zfs, dataset: &DatasetName) -> Vec<u64> {
    zfs.snapshots(dataset)
        .unwrap()
        .iter()
        .map(|s| s.guid())
        .collect()
}

/// Every dataset under `root` with its snapshots' GUIDs.
fn state(zfs: &Zfs, root: &DatasetName) -> Vec<(String, Vec<u64>)> {
    zfs.descendants(root)
        .unwrap()
        .iter()
        .map(|d| (d.name().to_string(), guids(zfs, d.name())))
        .collect()
}

/// A new filesystem with a small file in it (then unmounted).
fn filled(zfs: &Zfs, name: &DatasetName, seed: u64) {
    zfs.create_filesystem(name, &NvList::new()).unwrap();
    let dir = zfs_replicate_tests::mount(name.as_str());
    zfs_replicate_tests::write_file(&dir.join("data"), seed, 64 << 10);
    zfs_replicate_tests::unmount(name.as_str());
}

/// A refusal: exit 6, one line, `refused: <operation> on <dataset>:`.
fn assert_refused(o: &Output, dataset: &DatasetName) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_fails(o, 6, "refused: ");
    let named = Op::ALL
        .iter()
        .any(|op| stderr.contains(&format!("refused: {op} on {dataset}:")));
    assert!(named, "names the operation and {dataset}: {stderr:?}");
    stderr
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn backup_cli_remote_over_stdio() {
    let zfs = Zfs::open().unwrap();
    let tank = FilePool::create_unique(&zfs, "rtank", SIZE).unwrap();
    let pipe = FilePool::create_unique(&zfs, "rpipe", SIZE).unwrap();
    let src: DatasetName = format!("{}/home", tank.root()).parse().unwrap();
    filled(&zfs, &src, 1);
    let laptop: DatasetName = format!("{}/laptop", pipe.root()).parse().unwrap();
    zfs.create_filesystem(&laptop, &NvList::new()).unwrap();
    let dst = laptop.child("home").unwrap();
    let (s, d) = (src.as_str(), dst.as_str());
    let receive_only = format!("backup serve --stdio --allow {laptop}:receive");
    // An incremental push that prunes the source to 1 (not the target).
    let push_keeping_one = || {
        let via = ["--via-target", &receive_only, "--keep-source", "1"];
        backup(&[&["sync", s, d][..], &via].concat())
    };

    // Push to a receive-only server: full, then incremental. The server
    // exits 0 when the client closed the connection.
    let reporting = format!("{receive_only}; echo \"server exit $?\" >&2");
    let o = backup(&["sync", s, d, "--via-target", &reporting]);
    let out = ok(&o);
    assert!(out.contains("full"), "{out}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.trim(), "server exit 0", "{stderr}");
    assert_eq!(guids(&zfs, &src), guids(&zfs, &dst), "same snapshots");
    let out = ok(&push_keeping_one());
    assert!(out.contains("incremental"), "{out}");
    assert_eq!(
        guids(&zfs, &src).len(),
        1,
        "--keep-source 1 pruned the source"
    );
    assert_eq!(guids(&zfs, &dst).len(), 2, "the target is not pruned");
    assert_eq!(guids(&zfs, &src).last(), guids(&zfs, &dst).last());
    let out = ok(&backup(&["plan", s, d, "--via-target", &receive_only]));
    assert!(out.contains("up to date"), "{out}");

    // The server's own retention: `backup prune` on its host keeps the
    // newest N of ours (the newest is the next incremental's base), and
    // the next push goes on from it.
    let newest = guids(&zfs, &dst).last().copied();
    let out = ok(&backup(&["prune", d, "--keep", "1"]));
    assert_eq!(out.matches("pruned: ").count(), 1, "{out}");
    assert_eq!(guids(&zfs, &dst), Vec::from_iter(newest), "kept the newest");
    let out = ok(&backup(&["prune", d, "--keep", "1"]));
    assert!(out.contains("pruned: nothing"), "{out}");
    assert_fails(&backup(&["prune", d, "--keep", "0"]), 2, "at least 1");
    assert_fails(&backup(&["prune", d]), 2, "--keep");
    assert_fails(&backup(&["prune", d, "--retain", "1x:3"]), 2, "grid");
    assert_fails(&backup(&["sync", s, d, "--retain", "1h"]), 2, "grid");
    let out = ok(&backup(&["prune", d, "--retain", "1d:7,1w:4"]));
    assert!(out.contains("pruned: nothing"), "one snapshot: {out}");
    let missing = format!("{laptop}/missing");
    assert_fails(&backup(&["prune", &missing, "--keep", "1"]), 5, "missing");
    let out = ok(&push_keeping_one());
    assert!(out.contains("incremental"), "{out}");
    assert_eq!(guids(&zfs, &dst).len(), 2, "{out}");
    assert_eq!(guids(&zfs, &src).last(), guids(&zfs, &dst).last());

    // --keep N needs destroy on the receive-only target: refused up front,
    // no snapshot taken on the source; the hint names --keep-source.
    let (src_before, pipe_before) = (guids(&zfs, &src), state(&zfs, &pipe.root()));
    let o = backup(&["sync", s, d, "--via-target", &receive_only, "--keep", "3"]);
    let msg = assert_refused(&o, &dst);
    assert!(msg.contains("destroy snapshot on"), "{msg}");
    assert!(msg.contains("--keep-source"), "{msg}");
    assert_eq!(guids(&zfs, &src), src_before, "no snapshot on the source");
    assert_eq!(state(&zfs, &pipe.root()), pipe_before, "target unchanged");

    // A target outside the allowed root (a sibling sharing its prefix).
    let sibling: DatasetName = format!("{}/laptop2", pipe.root()).parse().unwrap();
    zfs.create_filesystem(&sibling, &NvList::new()).unwrap();
    let outside = sibling.child("x").unwrap();
    let pipe_before = state(&zfs, &pipe.root());
    let o = backup(&["sync", s, outside.as_str(), "--via-target", &receive_only]);
    assert_refused(&o, &outside);
    assert_eq!(
        state(&zfs, &pipe.root()),
        pipe_before,
        "target pool unchanged"
    );
    assert_eq!(guids(&zfs, &src), src_before, "no snapshot on the source");
    assert!(!zfs.exists(&outside));

    // A server without --allow refuses everything.
    let o = backup(&["sync", s, d, "--via-target", "backup serve --stdio"]);
    assert_refused(&o, &dst);
    assert_eq!(guids(&zfs, &src), src_before);

    // Pull from a send-only server, pruning the (local) target to 2.
    let pulled: DatasetName = format!("{}/pulled", pipe.root()).parse().unwrap();
    let send_only = format!("backup serve --stdio --allow {src}:send");
    for _ in 0..3 {
        ok(&backup(&[
            "sync",
            s,
            pulled.as_str(),
            "--via-source",
            &send_only,
            "--keep-target",
            "2",
            "--prefix",
            "pull",
        ]));
    }
    let ours = |d: &DatasetName| {
        zfs.snapshots(d)
            .unwrap()
            .iter()
            .filter(|x| x.name().short_name().starts_with("pull_"))
            .count()
    };
    assert_eq!(ours(&pulled), 2, "--keep-target 2");
    assert_eq!(ours(&src), 3, "the source is not pruned");
    assert_eq!(guids(&zfs, &pulled).last(), guids(&zfs, &src).last());
    // Pruning the send-only source is refused, with the other option named.
    let o = backup(&[
        "sync",
        s,
        pulled.as_str(),
        "--via-source",
        &send_only,
        "--keep",
        "2",
        "--prefix",
        "pull",
    ]);
    let msg = assert_refused(&o, &src);
    assert!(msg.contains("--keep-target"), "{msg}");

    // A command that ends before the handshake: exit 1, one line.
    assert_fails(
        &backup(&["sync", s, d, "--via-target", "false"]),
        1,
        "connection to 'false'",
    );
    assert_fails(
        &backup(&["plan", s, d, "--via-target", "exit 3"]),
        1,
        "code 3",
    );
    // Two remote sides.
    assert_fails(
        &backup(&["sync", s, d, "--via-target", "x", "--via-source", "y"]),
        2,
        "one side",
    );
}

/// A child process killed (by its id) and reaped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn backup_cli_remote_over_tcp() {
    use std::os::unix::fs::PermissionsExt;

    let zfs = Zfs::open().unwrap();
    let tank = FilePool::create_unique(&zfs, "ttank", SIZE).unwrap();
    let pipe = FilePool::create_unique(&zfs, "tpipe", SIZE).unwrap();
    let src: DatasetName = format!("{}/home", tank.root()).parse().unwrap();
    filled(&zfs, &src, 2);
    let root: DatasetName = format!("{}/laptop", pipe.root()).parse().unwrap();
    zfs.create_filesystem(&root, &NvList::new()).unwrap();
    let dst = root.child("home").unwrap();

    let dir = std::env::temp_dir();
    let token = dir.join(format!("backup-cli-token-{}", std::process::id()));
    let wrong = dir.join(format!("backup-cli-wrong-{}", std::process::id()));
    for (path, text) in [
        (&token, "the right token, 32 bytes long.\n"),
        (&wrong, "not the right token at all......\n"),
    ] {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (t, w) = (token.to_str().unwrap(), wrong.to_str().unwrap());

    // Beyond loopback without a token: refused, a usage error.
    assert_fails(
        &backup(&["serve", "--listen", "0.0.0.0:0", "--allow", root.as_str()]),
        2,
        "token",
    );

    let mut server = Server(
        Command::new("backup")
            .args(["serve", "--listen", "127.0.0.1:0", "--token-file", t])
            .args(["--allow", &format!("{root}:receive")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("backup is on PATH"),
    );
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(addr) = line.strip_prefix("backup: listening on ") {
            break addr.to_owned();
        }
    };
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let url = format!("tcp://{addr}/{dst}");

    let out = ok(&backup(&["sync", src.as_str(), &url, "--token-file", t]));
    assert!(out.contains("full"), "{out}");
    assert_eq!(guids(&zfs, &src), guids(&zfs, &dst));
    let out = ok(&backup(&["sync", src.as_str(), &url, "--token-file", t]));
    assert!(out.contains("incremental"), "{out}");
    assert_eq!(guids(&zfs, &src), guids(&zfs, &dst));
    let out = ok(&backup(&["plan", src.as_str(), &url, "--token-file", t]));
    assert!(out.contains("up to date"), "{out}");

    // A wrong token, or none: the connection is refused, exit 1.
    let before = (guids(&zfs, &src), state(&zfs, &pipe.root()));
    assert_fails(
        &backup(&["sync", src.as_str(), &url, "--token-file", w]),
        1,
        "token",
    );
    assert_fails(&backup(&["sync", src.as_str(), &url]), 1, "token");
    assert_eq!((guids(&zfs, &src), state(&zfs, &pipe.root())), before);
    // Nobody listening: exit 1.
    drop(server);
    assert_fails(
        &backup(&["plan", src.as_str(), &url, "--token-file", t]),
        1,
        "cannot connect",
    );
    let _ = std::fs::remove_file(&token);
    let _ = std::fs::remove_file(&wrong);
}

/// Runs `dd` as a user would, to damage a file in place.
fn dd(args: &[&str]) {
    let o = Command::new("dd").args(args).output().expect("dd");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn backup_cli_repairs_stream_files_with_parity() {
    let zfs = Zfs::open().unwrap();
    let tank = FilePool::create_unique(&zfs, "paritytank", SIZE).unwrap();
    let pipe = FilePool::create_unique(&zfs, "paritypipe", SIZE).unwrap();
    let src = tank.root().child("data").unwrap();
    zfs.create_filesystem(&src, &NvList::new()).unwrap();
    zfs_replicate_tests::fill(&src, 5, 4, 2 << 20);
    let snap = src.snapshot("monday").unwrap();
    zfs.snapshot(std::slice::from_ref(&snap)).unwrap();
    let file = std::env::temp_dir().join("parity cli.zstream");
    let f = file.to_str().unwrap();
    let sidecar = format!("{f}.zpar");

    assert_fails(
        &backup(&["send", snap.as_str(), "-o", f, "--parity", "0"]),
        2,
        "1 to 50",
    );
    assert_fails(
        &backup(&["send", snap.as_str(), "-o", f, "--parity", "x"]),
        2,
        "--parity",
    );
    assert!(!file.exists());
    let out = ok(&backup(&["send", snap.as_str(), "-o", f, "--parity", "5"]));
    assert!(out.contains(".zpar") && out.contains("5% parity"), "{out}");
    assert!(std::path::Path::new(&sidecar).exists());
    let original = std::fs::read(&file).unwrap();
    let original_sidecar = std::fs::read(&sidecar).unwrap();
    ok(&backup(&["verify", f]));
    // Without this library: the file is a plain stream.
    let plain = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zfs receive -u {}/plain < '{f}'",
            pipe.root().as_str()
        ))
        .output()
        .unwrap();
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    // Damage within the level, with dd: verify says repairable (7) and
    // lists the ranges; receive repairs on the fly (the file unchanged).
    dd(&[
        &format!("of={f}"),
        "if=/dev/urandom",
        "bs=4096",
        "seek=100",
        "count=4",
        "conv=notrunc",
    ]);
    let damaged = std::fs::read(&file).unwrap();
    assert_ne!(damaged, original);
    let o = backup(&["verify", f]);
    assert_eq!(code(&o), 7, "{}", String::from_utf8_lossy(&o.stdout));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("repairable") && out.contains("409600.."),
        "{out}"
    );
    let restored = pipe.root().child("restored").unwrap();
    let o = backup(&["receive", restored.as_str(), "-i", f]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let warning = String::from_utf8_lossy(&o.stderr);
    assert!(
        warning.starts_with("backup: warning: repaired ") && warning.contains("409600.."),
        "{warning}"
    );
    assert_eq!(
        zfs.snapshots(&restored).unwrap()[0].guid(),
        zfs.snapshot_info(&snap).unwrap().guid()
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        damaged,
        "receive leaves FILE as it was"
    );
    // repair: 0, the file as it was sent; then intact, still 0.
    let out = ok(&backup(&["repair", f]));
    assert!(out.contains("repaired"), "{out}");
    assert_eq!(std::fs::read(&file).unwrap(), original);
    let out = ok(&backup(&["repair", f]));
    assert!(out.contains("intact"), "{out}");
    // A damaged sidecar is rebuilt from the stream.
    dd(&[
        &format!("of={sidecar}"),
        "if=/dev/zero",
        "bs=512",
        "count=2",
        "conv=notrunc",
    ]);
    let out = ok(&backup(&["verify", f]));
    assert!(out.contains("sidecar is damaged"), "{out}");
    ok(&backup(&["repair", f]));
    assert_eq!(std::fs::read(&sidecar).unwrap(), original_sidecar);

    // Beyond the level: verify 4, repair 4 with the file unchanged, and
    // receive 4 with nothing received.
    dd(&[
        &format!("of={f}"),
        "if=/dev/zero",
        "bs=1M",
        "seek=1",
        "count=3",
        "conv=notrunc",
    ]);
    let beyond = std::fs::read(&file).unwrap();
    let o = backup(&["verify", f]);
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("beyond repair"));
    assert_fails(&backup(&["repair", f]), 4, "beyond repair");
    assert_eq!(std::fs::read(&file).unwrap(), beyond, "left unchanged");
    let lost = pipe.root().child("lost").unwrap();
    assert_fails(
        &backup(&["receive", lost.as_str(), "-i", f]),
        4,
        "beyond repair",
    );
    assert!(!zfs.exists(&lost), "nothing received");
    // No sidecar: repair says so (5).
    std::fs::remove_file(&sidecar).unwrap();
    assert_fails(&backup(&["repair", f]), 5, "zpar");
    std::fs::remove_file(&file).unwrap();
}

/// The README's parity demo, line by line as shown (its pool names changed
/// to this test's), each with the exit code its comment names (0 if none).
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn readme_parity_demo_runs_as_shown() {
    const README: &str = include_str!("../README.md");
    let block = README
        .split("<!-- parity-demo")
        .nth(1)
        .and_then(|rest| rest.split("<!-- end parity-demo -->").next())
        .expect("the README has the parity demo");
    let lines: Vec<&str> = block
        .lines()
        .skip_while(|l| !l.starts_with("```sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert!(lines.len() >= 5, "{lines:?}");
    let zfs = Zfs::open().unwrap();
    let tank = FilePool::create_unique(&zfs, "demotank", SIZE).unwrap();
    let pipe = FilePool::create_unique(&zfs, "demopipe", SIZE).unwrap();
    let home = tank.root().child("home").unwrap();
    zfs.create_filesystem(&home, &NvList::new()).unwrap();
    zfs_replicate_tests::fill(&home, 9, 4, 2 << 20);
    zfs.snapshot(&[home.snapshot("monday").unwrap()]).unwrap();
    let dir = std::env::temp_dir().join(format!("readme-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for line in lines {
        let (command, comment) = line.split_once(" #").unwrap_or((line, ""));
        let expected: i32 = comment
            .split("exit ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .map_or(0, |n| n.parse().unwrap());
        let command = command
            .replace("tank/", &format!("{}/", tank.root()))
            .replace("pipe/", &format!("{}/", pipe.root()));
        let o = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&dir)
            .output()
            .unwrap();
        eprintln!(
            "$ {command}\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(code(&o), expected, "{command}");
    }
    let restored = pipe.root().child("restored").unwrap();
    assert_eq!(
        zfs.snapshots(&restored).unwrap()[0].guid(),
        zfs.snapshot_info(&home.snapshot("monday").unwrap())
            .unwrap()
            .guid()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
