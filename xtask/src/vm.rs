//! Builds the guest initramfs and runs a payload inside a QEMU guest: the
//! ZFS tests, or any shell script with extra binaries (the demo).
//!
//! The initramfs is two concatenated cpio archives: a cached base (busybox,
//! the spl/zfs modules, the zfs/zpool/zstream tools and their libraries) and a
//! per-run archive (the `/init` script and the payload's files). The guest
//! loads the modules and runs the payload's script, which prints one
//! `ZFS-HARNESS-EXIT <name> <code>` line per program it runs (for the tests,
//! each test binary with `--ignored`); `/init` then prints `ZFS-HARNESS-DONE`
//! and powers off.
//!
//! A payload may attach disk images (virtio-blk, `/dev/vda`, `/dev/vdb`, …
//! in order): the run archive then carries the kernel's virtio disk driver,
//! which `/init` loads before ZFS. Lines a payload prints between
//! `ZFS-HARNESS-REPORT-BEGIN` and `ZFS-HARNESS-REPORT-END` come back in
//! [`VmOutcome::report`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cpio::CpioWriter;
use crate::install::{Guest, Userland};
use crate::{output, Result, TestCounts};

/// ZFS tools copied into the guest's /usr/sbin (for test fixtures and CLI
/// comparisons), from the guest's userland.
const GUEST_TOOLS: &[&str] = &["zfs", "zpool", "zstream"];

/// A test executable to run in the guest.
pub struct TestBinary {
    /// A unique, shell-safe name, such as `zfs_core-lib` or `snapshot_list-test`.
    pub name: String,
    pub path: PathBuf,
}

pub struct VmOptions {
    pub memory_mib: u32,
    pub cpus: u32,
    pub timeout: Duration,
    /// Extra arguments for every test binary (a filter, `--nocapture`, …).
    pub test_args: Vec<String>,
}

impl VmOptions {
    /// The guest's size from `XTASK_VM_MEMORY_MIB` (default 4096) and
    /// `XTASK_VM_CPUS` (default 2), its time limit from
    /// `XTASK_VM_TIMEOUT_SECS` (default: the command's own).
    pub fn from_env(default_timeout_secs: u64, test_args: Vec<String>) -> VmOptions {
        VmOptions {
            memory_mib: crate::env_or("XTASK_VM_MEMORY_MIB", 4096),
            cpus: crate::env_or("XTASK_VM_CPUS", 2),
            timeout: Duration::from_secs(crate::env_or(
                "XTASK_VM_TIMEOUT_SECS",
                default_timeout_secs,
            )),
            test_args,
        }
    }
}

/// What a guest run carries and does, on top of the base image.
pub struct GuestPayload {
    /// Executables: (guest path, host path). Copied without debug info, with
    /// the shared libraries they need.
    pub binaries: Vec<(String, PathBuf)>,
    /// Other files: (guest path, mode, contents).
    pub files: Vec<(String, u32, Vec<u8>)>,
    /// Shell commands `/init` runs in `/tmp` once ZFS is loaded (PATH has
    /// busybox and the ZFS tools). They should print a
    /// `ZFS-HARNESS-EXIT <name> <code>` line for each program they run.
    pub script: String,
    /// Disk images attached as `/dev/vda`, `/dev/vdb`, … in this order.
    pub disks: Vec<Disk>,
}

/// A raw disk image attached to the guest as a virtio-blk device.
pub struct Disk {
    pub image: PathBuf,
    /// Whether the guest's writes are discarded when it powers off (QEMU's
    /// `snapshot=on`): the image on the host never changes.
    pub discard_writes: bool,
}

/// The result of one guest run.
pub struct VmOutcome {
    pub counts: TestCounts,
    /// Binaries whose exit code was not 0, with that code.
    pub failed_binaries: Vec<(String, i32)>,
    /// Whether the guest reported completion (no crash, no timeout).
    pub completed: bool,
    /// What the guest reported running: kernel, module and userland versions.
    pub versions: Option<String>,
    /// Set when the module or userland is not the version asked for.
    pub version_error: Option<String>,
    /// Tests that skipped a check, each `test<TAB>reason`.
    pub skips: Vec<String>,
    /// The lines printed between `ZFS-HARNESS-REPORT-BEGIN` and
    /// `ZFS-HARNESS-REPORT-END`.
    pub report: Vec<String>,
}

/// Runs each test binary with `--ignored` (and `opts.test_args`) in the guest.
///
/// `programs` (such as the `backup` example) go to `/usr/bin/<name>`, on the
/// tests' PATH.
pub fn run_tests(
    guest: &Guest,
    tests: &[TestBinary],
    programs: &[TestBinary],
    work_dir: &Path,
    opts: &VmOptions,
) -> Result<VmOutcome> {
    let payload = GuestPayload {
        binaries: tests
            .iter()
            .map(|t| (format!("/tests/{}", t.name), t.path.clone()))
            .chain(
                programs
                    .iter()
                    .map(|p| (format!("/usr/bin/{}", p.name), p.path.clone())),
            )
            .collect(),
        files: Vec::new(),
        script: test_script(tests, &opts.test_args),
        disks: Vec::new(),
    };
    run_payload(guest, &payload, work_dir, opts)
}

/// Boots the guest with `payload` and runs its script.
pub fn run_payload(
    guest: &Guest,
    payload: &GuestPayload,
    work_dir: &Path,
    opts: &VmOptions,
) -> Result<VmOutcome> {
    fs::create_dir_all(work_dir)?;
    let base = base_image(guest, work_dir)?;
    // Per-process file names, so that concurrent harness runs do not clash.
    let pid = std::process::id();
    let run_archive = work_dir.join(format!("run-{pid}.cpio"));
    let disk_modules = if payload.disks.is_empty() {
        Vec::new()
    } else {
        disk_driver(guest)?
    };
    write_run_archive(&run_archive, payload, &disk_modules, &guest.userland)?;
    let initrd = work_dir.join(format!("initrd-{pid}.cpio"));
    {
        let mut out = BufWriter::new(fs::File::create(&initrd)?);
        out.write_all(&fs::read(&base)?)?;
        out.write_all(&fs::read(&run_archive)?)?;
        out.flush()?;
    }
    let outcome = boot(guest, &initrd, &payload.disks, opts);
    let _ = fs::remove_file(&run_archive);
    let _ = fs::remove_file(&initrd);
    outcome
}

/// Returns the cached base archive, building it when the kernel, the modules
/// or the tools changed.
fn base_image(guest: &Guest, work_dir: &Path) -> Result<PathBuf> {
    let tools = GUEST_TOOLS
        .iter()
        .map(|t| guest.userland.tool(t))
        .collect::<Result<Vec<_>>>()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    guest.zfs_version.hash(&mut hasher);
    guest.release.hash(&mut hasher);
    guest.userland.root.hash(&mut hasher);
    BASE_LAYOUT_VERSION.hash(&mut hasher);
    for p in guest
        .modules
        .iter()
        .chain(&tools)
        .map(PathBuf::as_path)
        .chain([Path::new("/bin/busybox")])
    {
        let meta = fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        (p, meta.len(), meta.modified().ok()).hash(&mut hasher);
    }
    let path = work_dir.join(format!(
        "base-{}-{:016x}.cpio",
        guest.zfs_version,
        hasher.finish()
    ));
    if path.exists() {
        eprintln!("xtask: reusing cached guest base image {}", path.display());
        return Ok(path);
    }
    eprintln!("xtask: building guest base image {}", path.display());
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut cpio = CpioWriter::new(BufWriter::new(fs::File::create(&tmp)?));
    for d in [
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
        "/etc",
        "/etc/zfs",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/lib64",
        "/modules",
        "/tests",
    ] {
        cpio.dir(d)?;
    }
    for (link, target) in [
        ("/bin", "usr/bin"),
        ("/sbin", "usr/sbin"),
        ("/lib", "usr/lib"),
        ("/lib64", "usr/lib64"),
        ("/etc/mtab", "/proc/self/mounts"),
    ] {
        cpio.symlink(link, target)?;
    }
    cpio.char_device("/dev/console", 5, 1)?;
    cpio.char_device("/dev/null", 1, 3)?;
    cpio.file("/usr/bin/busybox", 0o755, &fs::read("/bin/busybox")?)?;
    for (i, module) in guest.modules.iter().enumerate() {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next())
            .ok_or("bad module file name")?;
        cpio.file(
            &format!("/modules/{i}-{name}.ko"),
            0o644,
            &read_module(module)?,
        )?;
    }
    let mut libs = BTreeMap::new();
    for (name, host) in GUEST_TOOLS.iter().zip(&tools) {
        let real = fs::canonicalize(host).map_err(|e| format!("{}: {e}", host.display()))?;
        cpio.file(&format!("/usr/sbin/{name}"), 0o755, &fs::read(&real)?)?;
        shared_libraries(&real, &guest.userland, &mut libs)?;
    }
    add_libraries(&mut cpio, &libs, &mut BTreeSet::new())?;
    cpio.finish()?.flush()?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Bump when the base image's layout changes, to invalidate caches.
const BASE_LAYOUT_VERSION: u32 = 2;

fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return Ok(fs::read(path)?);
    };
    let out = Command::new(tool).arg("-dc").arg(path).output()?;
    if !out.status.success() {
        return Err(format!("{tool} -dc {name} failed").into());
    }
    Ok(out.stdout)
}

/// Collects the shared libraries `binary` needs (guest path → host path),
/// resolved by the userland's own loader, including that loader and
/// libgcc_s (which glibc loads at run time for pthread_cancel, so `--list`
/// does not name it).
fn shared_libraries(
    binary: &Path,
    userland: &Userland,
    libs: &mut BTreeMap<String, PathBuf>,
) -> Result<()> {
    let mut cmd = Command::new(&userland.loader);
    if !userland.library_path.is_empty() {
        let path: Vec<String> = userland
            .library_path
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        cmd.arg("--inhibit-cache")
            .arg("--library-path")
            .arg(path.join(":"));
    }
    let out = cmd.arg("--list").arg(binary).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not found") {
        return Err(format!(
            "{} --list {} failed: {}{}",
            userland.loader.display(),
            binary.display(),
            text,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    for line in text.lines() {
        let line = line.trim();
        // "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; skip "linux-vdso.so.1 (0x…)".
        let path = match line.split_once(" => ") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            if p.contains("/ld-linux") {
                continue; // the loader is added below, from the userland
            }
            libs.insert(userland.guest_path(Path::new(p)), PathBuf::from(p));
        }
    }
    // Binaries ask for /lib64/ld-linux-x86-64.so.2.
    libs.insert(
        "/usr/lib64/ld-linux-x86-64.so.2".into(),
        userland.loader.clone(),
    );
    let search: Vec<PathBuf> = if userland.library_path.is_empty() {
        vec![PathBuf::from("/lib/x86_64-linux-gnu")]
    } else {
        userland.library_path.clone()
    };
    if let Some(gcc) = search
        .iter()
        .map(|d| d.join("libgcc_s.so.1"))
        .find(|p| p.exists())
    {
        libs.insert(userland.guest_path(&gcc), gcc);
    }
    Ok(())
}

fn add_libraries<W: Write>(
    cpio: &mut CpioWriter<W>,
    libs: &BTreeMap<String, PathBuf>,
    dirs: &mut BTreeSet<String>,
) -> Result<()> {
    for (guest, host) in libs {
        let mut dir = String::new();
        let parent = Path::new(guest)
            .parent()
            .and_then(|p| p.to_str())
            .unwrap_or("/");
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            dir.push('/');
            dir.push_str(part);
            if !["/usr", "/usr/lib", "/usr/lib64"].contains(&dir.as_str())
                && dirs.insert(dir.clone())
            {
                cpio.dir(&dir)?;
            }
        }
        cpio.file(guest, 0o755, &fs::read(host)?)?;
    }
    Ok(())
}

/// The kernel modules the virtio disk driver needs, in load order (those
/// built into the kernel are not files and are skipped).
fn disk_driver(guest: &Guest) -> Result<Vec<PathBuf>> {
    let dir = guest.kernel_modules.as_deref().ok_or_else(|| {
        format!(
            "the guest kernel {} has no modules tree to take the virtio disk driver from",
            guest.release
        )
    })?;
    let modules = crate::kmod::with_dependencies(dir, &["virtio_pci", "virtio_blk"])?;
    if !modules
        .iter()
        .any(|m| crate::kmod::module_name(m) == "virtio_blk")
    {
        return Err(format!("no virtio_blk module under {}", dir.display()).into());
    }
    Ok(modules)
}

fn write_run_archive(
    path: &Path,
    payload: &GuestPayload,
    disk_modules: &[PathBuf],
    userland: &Userland,
) -> Result<()> {
    let mut cpio = CpioWriter::new(BufWriter::new(fs::File::create(path)?));
    cpio.file("/init", 0o755, init_script(&payload.script).as_bytes())?;
    if !disk_modules.is_empty() {
        cpio.dir("/modules/disk")?;
        for (i, module) in disk_modules.iter().enumerate() {
            let name = crate::kmod::module_name(module);
            cpio.file(
                &format!("/modules/disk/{i:02}-{name}.ko"),
                0o644,
                &read_module(module)?,
            )?;
        }
    }
    let mut libs = BTreeMap::new();
    for (guest, host) in &payload.binaries {
        shared_libraries(host, userland, &mut libs)?;
        cpio.file(guest, 0o755, &stripped(host)?)?;
    }
    for (guest, mode, contents) in &payload.files {
        cpio.file(guest, *mode, contents)?;
    }
    // The base already has most of these; duplicates just overwrite.
    let mut dirs = BTreeSet::new();
    add_libraries(&mut cpio, &libs, &mut dirs)?;
    cpio.finish()?.flush()?;
    Ok(())
}

/// Test binaries without debug info, to keep the initramfs small.
fn stripped(path: &Path) -> Result<Vec<u8>> {
    let tmp = std::env::temp_dir().join(format!(
        "xtask-strip-{}-{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("bin")
    ));
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&tmp)
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let data = if ok { fs::read(&tmp)? } else { fs::read(path)? };
    let _ = fs::remove_file(&tmp);
    Ok(data)
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The payload script for the tests: each binary with `--ignored`.
fn test_script(tests: &[TestBinary], test_args: &[String]) -> String {
    let args: Vec<String> = test_args.iter().map(|a| shell_quote(a)).collect();
    let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
    format!(
        r#"for t in {names}; do
    echo "ZFS-HARNESS: running $t"
    /tests/$t --ignored {args}
    code=$?
    if [ -f "$ZFS_HARNESS_SKIPS" ]; then
        sed 's/^/ZFS-HARNESS-SKIP /' "$ZFS_HARNESS_SKIPS"
        rm -f "$ZFS_HARNESS_SKIPS"
    fi
    echo "ZFS-HARNESS-EXIT $t $code"
done
"#,
        names = names.join(" "),
        args = args.join(" "),
    )
}

/// Checks the guest's `ZFS-HARNESS-VERSIONS` line (`kernel=… module=2.1.11-1
/// userland=zfs-2.1.11-1`) against the version the guest was built for.
fn check_versions(guest: &Guest, line: Option<&str>) -> Option<String> {
    let Some(line) = line else {
        return Some("the guest did not report its ZFS versions".into());
    };
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
    };
    let want = &guest.zfs_version;
    let module = field("module");
    let userland = field("userland");
    let matches = |v: &str| v == want.as_str() || v.starts_with(&format!("{want}-"));
    if matches(module) && matches(userland.trim_start_matches("zfs-")) {
        None
    } else {
        Some(format!(
            "the guest runs module {module:?} and userland {userland:?}, not OpenZFS {want}"
        ))
    }
}

/// `/init`: mounts, loads the modules, runs `script`, reports done.
fn init_script(script: &str) -> String {
    format!(
        r#"#!/usr/bin/busybox sh
/usr/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin
export HOME=/tmp RUST_BACKTRACE=1 ZFS_HARNESS_SKIPS=/tmp/zfs-harness-skips
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=80% tmpfs /tmp
mount -t tmpfs tmpfs /run
ip link set lo up || echo "ZFS-HARNESS: could not bring up lo"
fatal() {{ echo "ZFS-HARNESS-FATAL $*"; sync; poweroff -f; }}
echo "ZFS-HARNESS: guest kernel $(uname -r), $(nproc) cpus, $(free -m | awk '/Mem:/{{print $2}}') MiB"
for m in /modules/disk/*.ko; do [ -e "$m" ] || continue; insmod "$m" || fatal "insmod $m failed"; done
for m in /modules/*.ko; do insmod "$m" || fatal "insmod $m failed"; done
[ -c /dev/zfs ] || fatal "/dev/zfs missing after loading the modules"
echo "ZFS-HARNESS-VERSIONS kernel=$(uname -r) module=$(cat /sys/module/zfs/version 2>/dev/null || echo unknown) userland=$(zfs version 2>/dev/null | head -n 1)"
cd /tmp
{script}
echo "ZFS-HARNESS-DONE"
sync
poweroff -f
"#
    )
}

fn boot(guest: &Guest, initrd: &Path, disks: &[Disk], opts: &VmOptions) -> Result<VmOutcome> {
    let mut cmd = Command::new("qemu-system-x86_64");
    // TCG only: /dev/kvm on these machines is PVM-only.
    cmd.args(["-machine", "q35,accel=tcg", "-cpu", "max"])
        .args(["-smp", &opts.cpus.to_string()])
        .args(["-m", &opts.memory_mib.to_string()])
        .args(["-nodefaults", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&guest.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 oops=panic quiet loglevel=4 rdinit=/init",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (i, disk) in disks.iter().enumerate() {
        let image = disk.image.to_str().ok_or("disk image path is not UTF-8")?;
        if image.contains(',') {
            return Err(format!("disk image path {image:?} contains a comma").into());
        }
        // cache=unsafe: the guest's flushes are not forced to the host's
        // disk (a crash of the host may lose a build, which is redone).
        let snapshot = if disk.discard_writes { "on" } else { "off" };
        cmd.args([
            "-drive",
            &format!("file={image},format=raw,if=none,id=disk{i},cache=unsafe,snapshot={snapshot}"),
            "-device",
            &format!("virtio-blk-pci,drive=disk{i}"),
        ]);
    }
    eprintln!(
        "xtask: booting {} under TCG ({} cpus, {} MiB)",
        guest.vmlinuz.display(),
        opts.cpus,
        opts.memory_mib
    );
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting qemu-system-x86_64: {e}"))?;
    let pid = child.id();
    let finished = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let finished = finished.clone();
        let timed_out = timed_out.clone();
        let timeout = opts.timeout;
        std::thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                if started.elapsed() > timeout {
                    timed_out.store(true, Ordering::SeqCst);
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let mut counts = TestCounts::default();
    let mut failed_binaries = Vec::new();
    let mut completed = false;
    let mut versions = None;
    let mut skips = Vec::new();
    let mut report = Vec::new();
    let mut in_report = false;
    let stdout = child.stdout.take().ok_or("qemu stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\r', '\n']);
        output(&format!("vm| {line}"));
        counts.add_test_line(line);
        if line == "ZFS-HARNESS-REPORT-BEGIN" {
            in_report = true;
        } else if line == "ZFS-HARNESS-REPORT-END" {
            in_report = false;
        } else if in_report {
            report.push(line.to_owned());
        } else if let Some(rest) = line.strip_prefix("ZFS-HARNESS-EXIT ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap_or("?").to_owned();
            let code: i32 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(-1);
            if code != 0 {
                failed_binaries.push((name, code));
            }
        } else if let Some(rest) = line.strip_prefix("ZFS-HARNESS-VERSIONS ") {
            versions = Some(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("ZFS-HARNESS-SKIP ") {
            skips.push(rest.to_owned());
        } else if line == "ZFS-HARNESS-DONE" {
            completed = true;
        }
    }
    let status = child.wait()?;
    finished.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    eprintln!(
        "xtask: guest ran {:.1} s, qemu exited with {status}",
        started.elapsed().as_secs_f64()
    );
    if timed_out.load(Ordering::SeqCst) {
        eprintln!(
            "xtask: the guest timed out after {:?} and was killed",
            opts.timeout
        );
    }
    let version_error = check_versions(guest, versions.as_deref());
    if let Some(e) = &version_error {
        eprintln!("xtask: {e}");
    }
    Ok(VmOutcome {
        counts,
        failed_binaries,
        completed,
        versions,
        version_error,
        skips,
        report,
    })
}
