//! Shared helpers for the integration tests in `tests/`: fixtures that use
//! the `zfs` CLI (the libraries never do) and test data.
//!
//! Every test that needs ZFS is marked
//! `#[ignore = "needs ZFS: run cargo xtask test"]`; `cargo xtask test` runs
//! them inside a QEMU guest with real OpenZFS.

use std::path::PathBuf;

/// The workspace README's example compiles (checked as a doc test here, not
/// in zfs-replicate, whose package does not ship this file).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Runs the `zfs` CLI (fixtures and comparisons only; the library itself
/// never spawns it) and returns its stdout.
pub fn zfs_cli(args: &[&str]) -> String {
    cli("zfs", args)
}

/// Runs the `zpool` CLI (comparisons only) and returns its stdout.
pub fn zpool_cli(args: &[&str]) -> String {
    cli("zpool", args)
}

fn cli(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Mounts `fs` at a fresh directory under the test dir and returns it.
pub fn mount(fs: &str) -> PathBuf {
    let dir = std::env::var_os("ZFS_TEST_DIR")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(format!("mnt-{}", fs.replace(['/', ' ', '@'], "_")));
    std::fs::create_dir_all(&dir).expect("mountpoint");
    zfs_cli(&["set", &format!("mountpoint={}", dir.display()), fs]);
    if !zfs_cli(&["get", "-H", "-o", "value", "mounted", fs]).starts_with("yes") {
        zfs_cli(&["mount", fs]);
    }
    dir
}

/// Unmounts `fs`.
pub fn unmount(fs: &str) {
    zfs_cli(&["unmount", fs]);
}

/// Writes `len` pseudo-random bytes (seeded) to `path`.
pub fn write_file(path: &std::path::Path, seed: u64, len: usize) {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, data).expect("write test file");
}

/// Runs `test` of the current test binary again, in a child process with
/// the environment variable `marker` set (the test looks for it to play the
/// child's part), and returns the child's output. Ignored tests included.
pub fn run_test_in_child(test: &str, marker: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--include-ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(marker, "1")
        .output()
        .expect("running the test binary as a child")
}

/// Asserts that a child from [`run_test_in_child`] exited successfully
/// after printing `ALIVE` (its proof that it got to the end), and shows its
/// output otherwise.
pub fn assert_child_alive(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALIVE"),
        "child died or failed ({:?}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files of a snapshot, path relative to its root → bytes (the snapshot
/// is mounted read-only under the test dir for the read, then unmounted).
pub fn snapshot_contents(snap: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("below the root");
                out.insert(
                    rel.display().to_string(),
                    std::fs::read(&p).expect("read file"),
                );
            }
        }
    }
    let dir = std::env::var_os("ZFS_TEST_DIR")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(format!("view-{}", snap.replace(['/', '@', ' '], "_")));
    std::fs::create_dir_all(&dir).expect("view dir");
    let st = std::process::Command::new("mount")
        .args(["-t", "zfs", snap])
        .arg(&dir)
        .status()
        .expect("mount");
    assert!(st.success(), "mount {snap}");
    let mut out = std::collections::BTreeMap::new();
    walk(&dir, &dir, &mut out);
    let st = std::process::Command::new("umount")
        .arg(&dir)
        .status()
        .expect("umount");
    assert!(st.success(), "umount {snap}");
    out
}

/// Records that `test` skips its checks because the running OpenZFS lacks
/// what they need (`reason` says what, as detected at run time); the test
/// returns right after. The harness counts it as skipped, not passed, and
/// prints the reason: `cargo xtask test` points `ZFS_HARNESS_SKIPS` at a
/// file it reads after each test binary. Without the harness the reason
/// goes to stderr.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("ZFS_HARNESS_SKIPS") {
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("recording the skip of {test} in {path:?}: {e}");
        }
    }
}
