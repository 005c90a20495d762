//! `cargo xtask`: the project's developer tasks.
//!
//! - `cargo xtask test [--host] [-- TEST_ARGS…]`: host unit tests, then the
//!   ZFS integration tests in a QEMU guest running real OpenZFS (or, with
//!   `--host`, directly on this machine, which must have `/dev/zfs`).
//! - `cargo xtask demo`: the `backup` example's story (sync, incremental,
//!   prune, stream files, divergence) on two pools in the QEMU guest, with
//!   the GUIDs that prove both sides match.
//! - `cargo xtask bench [-- NAME…]`: the benchmark suite (`benches/suite`)
//!   against the `zfs` CLI in a QEMU guest, on cached pool images.
//! - `cargo xtask bindgen`: regenerates `zfs-sys/src/bindings.rs`.

mod bench;
mod cpio;
mod demo;
mod disk;
mod install;
mod kmod;
mod package;
mod versions;
mod vm;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use versions::ZfsVersion;

pub type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

const USAGE: &str = "usage:
  cargo xtask test [--zfs VERSIONS] [-- TEST_ARGS...]
                        host unit tests + ZFS tests in a QEMU guest per OpenZFS version
  cargo xtask test --host [-- TEST_ARGS...]
                        the ZFS tests on this machine (needs /dev/zfs and root)
  cargo xtask demo [--zfs VERSION]
                        the backup example on two pools in a QEMU guest:
                        sync, incremental, prune, stream files, GUID proof
  cargo xtask bench [--zfs VERSIONS] [-- [--small] [--runs N] [NAME...]]
                        the benchmark suite (benches/suite) in a QEMU guest:
                        the library against the zfs CLI in the same run, on
                        pool images built once and cached in target/xtask-vm;
                        first, on the host, the suite's host rows (a parity
                        sidecar's making for a 1 GiB stream, one core);
                        NAME runs only benchmarks whose name contains it
                        (host ones included: parity-host; none in the guest:
                        no guest boots)
  cargo xtask bindgen   regenerate zfs-sys/src/bindings.rs (needs libclang)

VERSIONS: 2.3.2 (the default: the host's apt-installed OpenZFS), 2.1.11, 2.4.4,
          a comma-separated list of them, or `all`. 2.1.11 and 2.4.4 are built
          on first use and cached in $XTASK_CACHE_DIR (default
          ~/.cache/zfs-replicate-xtask).

environment: XTASK_VM_MEMORY_MIB (default 4096), XTASK_VM_CPUS (default 2),
             XTASK_VM_TIMEOUT_SECS (default 1800 for test, 600 for demo,
             10800 for bench),
             XTASK_CACHE_DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("demo") => demo::demo(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("bindgen") => bindgen().map(|()| true),
        Some("package-check") => package::check(), // the host check `test` runs
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(true)
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a line to stdout at once (the harness streams guest output).
pub fn output(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs a command, failing with its name when it does not succeed.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("starting {:?}: {e}", cmd.get_program()))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed with {status}").into());
    }
    Ok(())
}

/// Passed/failed totals read off libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl TestCounts {
    /// Counts one libtest per-test line (`test name ... ok` / `... FAILED`),
    /// so that a binary that never finishes still has its results counted.
    pub fn add_test_line(&mut self, line: &str) {
        let line = line.trim();
        if !line.starts_with("test ") || line.starts_with("test result:") {
            return;
        }
        if line.ends_with(" ... ok") {
            self.passed += 1;
        } else if line.ends_with(" ... FAILED") {
            self.failed += 1;
        } else if line.contains(" ... ignored") {
            self.ignored += 1;
        }
    }

    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next()) {
                if let Ok(n) = n.parse::<u64>() {
                    match what {
                        "passed" => self.passed += n,
                        "failed" => self.failed += n,
                        "ignored" => self.ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Splits `--zfs LIST` (or `--zfs=LIST`) out of `opts`, returning the
/// versions (the default when absent) and the other options.
fn zfs_versions(opts: &[String]) -> Result<(Vec<ZfsVersion>, Vec<String>)> {
    let mut versions = None;
    let mut rest = Vec::new();
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        let list = if o == "--zfs" {
            Some(it.next().ok_or("--zfs needs a version")?.clone())
        } else {
            o.strip_prefix("--zfs=").map(str::to_owned)
        };
        match list {
            Some(l) => versions = Some(ZfsVersion::parse_list(&l)?),
            None => rest.push(o.clone()),
        }
    }
    Ok((versions.unwrap_or_else(|| vec![ZfsVersion::DEFAULT]), rest))
}

/// One guest run's results, for the per-version table.
struct VersionRun {
    version: ZfsVersion,
    versions_line: String,
    counts: TestCounts,
    skips: Vec<String>,
    ok: bool,
}

fn test(args: &[String]) -> Result<bool> {
    let started = Instant::now();
    let (opts, test_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let (zfs, opts) = zfs_versions(opts)?;
    let host = opts.iter().any(|a| a == "--host");
    if let Some(bad) = opts.iter().find(|a| *a != "--host") {
        return Err(format!("unknown option {bad}\n{USAGE}").into());
    }

    if host {
        if !Path::new("/dev/zfs").exists() {
            return Err(
                "--host needs /dev/zfs (a loaded ZFS module); without it, run `cargo xtask test`"
                    .into(),
            );
        }
        let skips_file =
            std::env::temp_dir().join(format!("zfs-harness-skips-{}", std::process::id()));
        let _ = std::fs::remove_file(&skips_file);
        let mut cmd = cargo();
        cmd.env("ZFS_HARNESS_SKIPS", &skips_file)
            .args([
                "test",
                "--workspace",
                "--no-fail-fast",
                "--",
                "--include-ignored",
            ])
            .args(&test_args);
        let (ok, mut counts) = run_cargo_tests(&mut cmd)?;
        let skips = read_skips(&skips_file);
        let _ = std::fs::remove_file(&skips_file);
        report_skips("host", &skips);
        counts.passed = counts.passed.saturating_sub(skips.len() as u64);
        return Ok(summary(ok, counts, skips.len(), started));
    }

    // Install first: the host build links against libzfs_core from libzfslinux-dev.
    let mut guests = Vec::new();
    for v in &zfs {
        guests.push((*v, versions::guest(*v)?));
    }

    // 1. Host unit tests (the ZFS tests are #[ignore]d there).
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    let (host_ok, host_counts) = run_cargo_tests(&mut cmd)?;
    // 1b. One host check: docs without libzfs_core, MSRV, packages (package.rs).
    let (host_ok, host_counts) = package::host_check(host_ok, host_counts);

    // 2. The same test binaries, run with --ignored inside each guest.
    let (tests, programs) = test_binaries()?;
    let vm_opts = vm::VmOptions::from_env(1800, test_args);
    let work_dir = workspace_root().join("target/xtask-vm");
    let mut runs = Vec::new();
    for (version, guest) in &guests {
        let run_started = Instant::now();
        eprintln!("xtask: === OpenZFS {} ===", version.as_str());
        let outcome = vm::run_tests(guest, &tests, &programs, &work_dir, &vm_opts)?;
        let mut ok = true;
        let mut counts = outcome.counts;
        if !outcome.completed {
            eprintln!(
                "xtask: the guest did not report completion (crash, module load failure or timeout)"
            );
            ok = false;
            counts.failed += 1; // the run itself, whatever its tests said
        }
        if outcome.version_error.is_some() {
            ok = false;
            counts.failed += 1;
        }
        for (name, code) in &outcome.failed_binaries {
            eprintln!("xtask: guest test binary {name} exited with {code}");
            ok = false;
        }
        report_skips(version.as_str(), &outcome.skips);
        counts.passed = counts.passed.saturating_sub(outcome.skips.len() as u64);
        eprintln!(
            "xtask: OpenZFS {} took {:.0} s",
            version.as_str(),
            run_started.elapsed().as_secs_f64()
        );
        runs.push(VersionRun {
            version: *version,
            versions_line: outcome.versions.unwrap_or_else(|| "(not reported)".into()),
            counts,
            skips: outcome.skips,
            ok,
        });
    }

    let mut ok = host_ok;
    let mut total = TestCounts {
        passed: host_counts.passed,
        failed: host_counts.failed,
        ignored: host_counts.ignored,
    };
    let mut skipped = 0;
    eprintln!(
        "xtask: host {} passed, {} failed ({} need ZFS, run in the guest)",
        host_counts.passed, host_counts.failed, host_counts.ignored
    );
    for r in &runs {
        eprintln!(
            "xtask: OpenZFS {:<7} {} passed, {} failed, {} skipped  [{}]",
            r.version.as_str(),
            r.counts.passed,
            r.counts.failed,
            r.skips.len(),
            r.versions_line
        );
        ok &= r.ok;
        total.passed += r.counts.passed;
        total.failed += r.counts.failed;
        skipped += r.skips.len();
    }
    Ok(summary(ok, total, skipped, started))
}

/// Lines `test<TAB>reason` that tests wrote to the skip file.
fn read_skips(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn report_skips(label: &str, skips: &[String]) {
    for s in skips {
        let (test, reason) = s.split_once('\t').unwrap_or((s.as_str(), ""));
        eprintln!("xtask: {label}: SKIPPED {test}: {reason}");
    }
}

fn summary(ok: bool, counts: TestCounts, skipped: usize, started: Instant) -> bool {
    let ok = ok && counts.failed == 0;
    eprintln!(
        "xtask: {} in {:.0} s",
        if ok { "all tests passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    output(&format!(
        "harness: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, skipped
    ));
    ok
}

/// Runs `cargo test …`, echoing and counting its output.
fn run_cargo_tests(cmd: &mut Command) -> Result<(bool, TestCounts)> {
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut counts = TestCounts::default();
    let stdout = child.stdout.take().ok_or("cargo stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        output(&line);
        counts.add_line(&line);
    }
    Ok((child.wait()?.success(), counts))
}

/// Builds the workspace's test executables and lists them, with the example
/// programs (which `cargo test` builds too) that tests run by name.
fn test_binaries() -> Result<(Vec<vm::TestBinary>, Vec<vm::TestBinary>)> {
    let out = cargo()
        .args([
            "test",
            "--workspace",
            "--exclude",
            "xtask",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err("cargo test --no-run failed".into());
    }
    let mut tests = Vec::new();
    let mut programs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        if msg["target"]["kind"][0] == "example" && msg["profile"]["test"] == false {
            if let Some(name) = msg["target"]["name"].as_str() {
                programs.push(vm::TestBinary {
                    name: name.to_owned(),
                    path: PathBuf::from(exe),
                });
            }
            continue;
        }
        if msg["profile"]["test"] != true {
            continue;
        }
        let target = msg["target"]["name"].as_str().unwrap_or("test");
        let kind = msg["target"]["kind"][0].as_str().unwrap_or("test");
        let name: String = format!("{target}-{kind}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        tests.push(vm::TestBinary {
            name,
            path: PathBuf::from(exe),
        });
    }
    if tests.is_empty() {
        return Err("no test executables were built".into());
    }
    Ok((tests, programs))
}

/// Runs `cargo ARGS --message-format=json` and returns the executable cargo
/// built for the target named `target`.
pub fn built_executable(args: &[&str], target: &str) -> Result<PathBuf> {
    let out = cargo()
        .args(args)
        .arg("--message-format=json")
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("cargo {} failed", args.join(" ")).into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == target)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo {} built no {target} executable", args.join(" ")).into())
}

/// Regenerates the committed bindings from the installed headers.
fn bindgen() -> Result<()> {
    let out = workspace_root().join("zfs-sys/src/bindings.rs");
    run(cargo()
        .args(["build", "-p", "zfs-sys", "--features", "buildtime-bindgen"])
        .env("ZFS_SYS_BINDINGS_OUT", &out))?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_libtest_result_lines() {
        let mut c = TestCounts::default();
        c.add_line("test result: ok. 3 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        c.add_line("vm| noise");
        c.add_line(
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        assert_eq!((c.passed, c.failed, c.ignored), (4, 1, 2));
    }

    #[test]
    fn counts_per_test_lines() {
        let mut c = TestCounts::default();
        for l in [
            "test a ... ok",
            "test b ... FAILED",
            "test c ... ignored, needs ZFS",
            "test d has been running for over 60 seconds",
            "test result: ok. 9 passed; 0 failed",
        ] {
            c.add_test_line(l);
        }
        assert_eq!((c.passed, c.failed, c.ignored), (1, 1, 1));
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut w = cpio::CpioWriter::new(Vec::new());
        w.file("/a", 0o644, b"xyz").unwrap();
        w.symlink("/b", "a").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
    }
}
