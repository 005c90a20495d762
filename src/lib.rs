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
    let mounted = || zfs_cli(&["get", "-H", "-o", "value", "mounted", fs]).starts_with("yes");
    let mountpoint = zfs_cli(&["get", "-H", "-o", "value", "mountpoint", fs]);
    if mountpoint.trim_end() != dir.display().to_string() {
        // The library sets the property; it does not move a mount.
        if mounted() {
            unmount(fs);
        }
        set(fs, &[("mountpoint", &dir.display().to_string())]);
    }
    if !mounted() {
        zfs_cli(&["mount", fs]);
    }
    dir
}

/// Sets properties on `fs` with the library (`Zfs::set_properties`).
pub fn set(fs: &str, props: &[(&str, &str)]) {
    let list = props
        .iter()
        .try_fold(zfs_core::PropertyList::new(), |l, (n, v)| l.set(n, v))
        .unwrap_or_else(|e| panic!("properties {props:?}: {e}"));
    zfs_core::Zfs::open()
        .expect("open /dev/zfs")
        .set_properties(&fs.parse().expect("a dataset name"), list.nvlist())
        .unwrap_or_else(|e| panic!("setting {props:?} on {fs}: {e}"));
}

/// Makes a backup writable and mountable, for a test that changes it on
/// purpose (backups are received `readonly=on`, `canmount=noauto`).
pub fn writable(fs: &zfs_core::DatasetName) {
    set(fs.as_str(), &[("readonly", "off"), ("canmount", "on")]);
}

/// Unmounts `fs`.
pub fn unmount(fs: &str) {
    zfs_cli(&["unmount", fs]);
}

/// Writes `len` pseudo-random bytes (seeded) to `path`.
pub fn write_file(path: &std::path::Path, seed: u64, len: usize) {
    let data = zfs_core::testing::pseudo_random_bytes(seed, len);
    std::fs::write(path, data).expect("write test file");
}

/// Writes `files` files of `size` seeded bytes into `fs` (mounting and
/// unmounting it), named `file <seed>-<i>`.
pub fn fill(fs: &zfs_core::DatasetName, seed: u64, files: usize, size: usize) {
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

/// The contents of a snapshot: relative path → bytes.
pub fn contents(snap: &zfs_core::SnapshotName) -> std::collections::BTreeMap<String, Vec<u8>> {
    snapshot_contents(snap.as_str())
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

/// While alive, the kernel module logs where each error it returns was set
/// (`zfs_flags` bit `ZFS_DEBUG_SET_ERROR`, into `/proc/spl/kstat/zfs/dbgmsg`),
/// so a test that meets an unexplained errno can print the check that
/// refused. Restores the previous flags on drop; does nothing where the
/// parameter is not writable.
pub struct KernelErrorLog {
    previous: Option<String>,
}

const ZFS_FLAGS: &str = "/sys/module/zfs/parameters/zfs_flags";
const ZFS_DEBUG_SET_ERROR: u64 = 1 << 9;

impl KernelErrorLog {
    pub fn enable() -> KernelErrorLog {
        let previous = std::fs::read_to_string(ZFS_FLAGS).ok();
        let flags = previous
            .as_deref()
            .and_then(|f| f.trim().parse::<i64>().ok())
            .map(|f| f as u64 | ZFS_DEBUG_SET_ERROR);
        let enabled = flags.is_some_and(|f| std::fs::write(ZFS_FLAGS, f.to_string()).is_ok());
        KernelErrorLog {
            previous: previous.filter(|_| enabled),
        }
    }

    /// The debug log's lines that contain `needle`, last 40.
    pub fn lines_with(needle: &str) -> Vec<String> {
        let log = std::fs::read_to_string("/proc/spl/kstat/zfs/dbgmsg").unwrap_or_default();
        let hits: Vec<String> = log
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        hits[hits.len().saturating_sub(40)..].to_vec()
    }
}

impl Drop for KernelErrorLog {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            let _ = std::fs::write(ZFS_FLAGS, previous.trim());
        }
    }
}

/// A source pool (`tank…`) and a target pool (`pipe…`) on sparse files,
/// destroyed when dropped, and the handle to reach them.
pub struct Pair {
    pub zfs: zfs_core::Zfs,
    pub tank: zfs_core::testing::FilePool,
    pub pipe: zfs_core::testing::FilePool,
}

impl Pair {
    /// Two new pools named `<tank>-…` and `<pipe>-…` (unique per process).
    pub fn new(tank: &str, pipe: &str, tank_size: u64, pipe_size: u64) -> Pair {
        use zfs_core::testing::FilePool;
        let zfs = zfs_core::Zfs::open().expect("open /dev/zfs");
        let tank = FilePool::create_unique(&zfs, tank, tank_size).expect("source pool");
        let pipe = FilePool::create_unique(&zfs, pipe, pipe_size).expect("target pool");
        Pair { zfs, tank, pipe }
    }

    /// `rel` (which may hold `/`) under the source pool's root.
    pub fn src(&self, rel: &str) -> zfs_core::DatasetName {
        below(&self.tank.root(), rel)
    }

    /// `rel` (which may hold `/`) under the target pool's root.
    pub fn dst(&self, rel: &str) -> zfs_core::DatasetName {
        below(&self.pipe.root(), rel)
    }

    pub fn create(&self, name: &zfs_core::DatasetName) {
        self.zfs
            .create_filesystem(name, &zfs_core::NvList::new())
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }

    pub fn snap(&self, fs: &zfs_core::DatasetName, name: &str) -> zfs_core::SnapshotName {
        let s = fs.snapshot(name).expect("snapshot name");
        self.zfs
            .snapshot(std::slice::from_ref(&s))
            .unwrap_or_else(|e| panic!("snapshot {s}: {e}"));
        s
    }

    /// Plans `repl` (which must not diverge) and runs it.
    pub fn replicate(&self, repl: &zfs_replicate::Replication) -> zfs_replicate::Report {
        let plan = repl.plan(&self.zfs).expect("plan");
        assert!(plan.divergences().is_empty(), "{plan}");
        zfs_replicate::execute(&self.zfs, &plan, &zfs_replicate::ExecuteOptions::new())
            .unwrap_or_else(|e| panic!("{plan}: {e}"))
    }

    /// The GUIDs of `fs`'s snapshots, oldest first (none if `fs` is absent).
    pub fn guids(&self, fs: &zfs_core::DatasetName) -> Vec<u64> {
        self.listed(fs).iter().map(|s| s.guid()).collect()
    }

    /// The short names of `fs`'s snapshots, oldest first.
    pub fn names(&self, fs: &zfs_core::DatasetName) -> Vec<String> {
        self.listed(fs)
            .iter()
            .map(|s| s.name().short_name().to_owned())
            .collect()
    }

    fn listed(&self, fs: &zfs_core::DatasetName) -> Vec<zfs_core::Snapshot> {
        if !self.zfs.exists(fs) {
            return Vec::new();
        }
        self.zfs
            .snapshots(fs)
            .unwrap_or_else(|e| panic!("list {fs}: {e}"))
    }
}

/// `root/rel`, or `root` for an empty `rel`.
pub fn below(root: &zfs_core::DatasetName, rel: &str) -> zfs_core::DatasetName {
    if rel.is_empty() {
        return root.clone();
    }
    zfs_core::DatasetName::new(format!("{root}/{rel}")).expect("dataset name")
}

/// Prints a line to the real stdout, past the test harness's capture: for
/// measurements and findings that belong in the run's log even when the
/// test passes.
pub fn summary(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// This test binary again, running one test (`name`) in a child process
/// with `marker` set in its environment (the test plays the child's part
/// when it sees it), stdout piped line by line and stdin piped.
pub struct ChildRun {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    /// Every line the child printed so far.
    pub out: Vec<String>,
}

impl ChildRun {
    pub fn start(name: &str, marker: &str) -> ChildRun {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--ignored",
                "--exact",
                name,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(marker, "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the child");
        let stdout = child.stdout.take().expect("piped stdout");
        ChildRun {
            child,
            lines: std::io::BufReader::new(stdout).lines(),
            out: Vec::new(),
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Reads lines until one contains `marker` (or the child's output ends).
    pub fn wait_for(&mut self, marker: &str) {
        for line in self.lines.by_ref() {
            let line = line.expect("child output");
            let found = line.contains(marker);
            self.out.push(line);
            if found {
                return;
            }
        }
    }

    /// Sends a signal with `kill` (`-STOP`, `-CONT`, …); false once the
    /// child is gone.
    pub fn signal(&self, signal: &str) -> bool {
        std::process::Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Writes a line to the child's stdin.
    pub fn say(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").expect("write to the child");
    }

    /// Reads the rest of the output and waits; asserts that the child
    /// succeeded and printed `DONE`.
    pub fn finish(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        for line in self.lines.by_ref() {
            self.out.push(line.expect("child output"));
        }
        let status = self.child.wait().expect("wait for the child");
        assert!(
            status.success() && self.out.iter().any(|l| l == "DONE"),
            "child failed ({status:?}): {:#?}",
            self.out
        );
        self.out
    }
}

/// A test setting: the environment variable `name`, else a test argument
/// `name=value` (environment variables do not reach the VM's guest).
pub fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| {
        let prefix = format!("{name}=");
        std::env::args().find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
    })
}

/// The seed in setting `name`, else one from the clock (print it, so a run
/// can be replayed).
pub fn seed(name: &str) -> u64 {
    setting(name).map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        },
        |v| v.parse().expect("a seed is a u64"),
    )
}

/// xorshift64*: a small, seeded, reproducible source of choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// One of `items`, or None if there are none.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

/// Frees a killed child whose receive thread OpenZFS 2.3.2 left asleep in
/// `pipe_read` (SIGKILL does not wake it; the pipe's write end belongs to
/// the same dead process, so no EOF ever comes): write 0xff bytes into the
/// child's pipes through `/proc/<pid>/task/<tid>/fd`. The receive takes them as the
/// rest of its payload, then as a record header whose checksum (non-zero,
/// so checked) does not match: it fails with ECKSUM before it applies that
/// record, keeping only verified state, and the thread exits. Stdin, stdout
/// and stderr are left alone. Returns how many pipes were fed.
pub fn unstick_receive(pid: u32) -> usize {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // The main thread is a zombie whose own fd table is gone: read the
    // table through the threads still alive.
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let fds: Vec<std::fs::DirEntry> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path().join("fd")).ok())
        .map(|d| d.flatten().collect::<Vec<_>>())
        .max_by_key(Vec::len)
        .unwrap_or_default();
    let mut fed = 0;
    for fd in fds {
        let is_std = matches!(fd.file_name().to_str(), Some("0" | "1" | "2"));
        let is_pipe =
            std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"));
        if is_std || !is_pipe {
            continue;
        }
        let Ok(mut pipe) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fd.path())
        else {
            continue;
        };
        let junk = vec![0xffu8; 1 << 16];
        // Up to 32 MiB, more than any payload's remainder; a full pipe
        // (EAGAIN) is retried briefly while the receive drains it.
        let mut written = 0usize;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while written < 32 << 20 && std::time::Instant::now() < deadline {
            match pipe.write(&junk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(_) => break, // the reader is gone: it is free
            }
        }
        fed += 1;
    }
    fed
}

/// An observer of a run's [`Progress`](zfs_replicate::Progress) events
/// only.
pub fn progress_observer(
    f: impl Fn(&zfs_replicate::Progress<'_>) + Send + Sync + 'static,
) -> zfs_replicate::Observer {
    std::sync::Arc::new(move |event: &zfs_replicate::Event<'_>| {
        if let zfs_replicate::Event::Progress(p) = event {
            f(p)
        }
    })
}

/// Execute options with `cancel` and, if given, `observer`.
pub fn options(
    cancel: zfs_replicate::CancelToken,
    observer: Option<zfs_replicate::Observer>,
) -> zfs_replicate::ExecuteOptions {
    let opts = zfs_replicate::ExecuteOptions::new().cancel_token(cancel);
    match observer {
        Some(observer) => opts.on_event(move |event| observer(event)),
        None => opts,
    }
}
