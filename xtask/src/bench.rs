//! `cargo xtask bench`: the benchmark suite (`benches/suite`) in a QEMU
//! guest, once per OpenZFS version.
//!
//! The suite's pools (trees with many snapshots and their seeded targets,
//! the data sets) take many minutes to build under TCG. The suite builds
//! them itself, once per recipe and OpenZFS version, in a guest with blank
//! disk images; the images are kept under `target/xtask-vm/bench-pools/`.
//! Every run attaches them with its writes discarded (QEMU `snapshot=on`), so
//! a run never changes them. The guest prints the results between report
//! markers; they go to `target/xtask-vm/bench-<version>.md` and, for a
//! complete run (every benchmark, full size), to `benches/RESULTS-<version>.md`.
//!
//! The suite's host benchmarks (`suite host`: a parity sidecar's making,
//! pinned to one core) run first, on the host, before any guest boots; their
//! table follows the guest's in every version's results. When no guest
//! benchmark is selected, no guest boots, and the host's rows go to
//! `target/xtask-vm/bench-host.md`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::install::Guest;
use crate::versions::{self, ZfsVersion};
use crate::vm::{self, Disk, GuestPayload, VmOutcome};
use crate::{built_executable, output, workspace_root, Result};

/// Where the suite goes in the guest (on its PATH).
const SUITE_IN_GUEST: &str = "/usr/bin/bench-suite";

pub fn bench(args: &[String]) -> Result<bool> {
    let started = Instant::now();
    let commit = built_commit();
    let (opts, suite_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let (zfs, rest) = crate::zfs_versions(opts)?;
    if let Some(bad) = rest.first() {
        return Err(format!("unknown option {bad}\n{}", crate::USAGE).into());
    }
    let mut guests = Vec::new();
    for v in &zfs {
        guests.push((*v, versions::with_disk_driver(*v, versions::guest(*v)?)?));
    }
    let suite = built_executable(
        &[
            "bench",
            "-p",
            "zfs-replicate-tests",
            "--bench",
            "suite",
            "--no-run",
        ],
        "suite",
    )?;
    let backup = built_executable(
        &[
            "build",
            "--release",
            "-p",
            "zfs-replicate",
            "--example",
            "backup",
        ],
        "backup",
    )?;
    let recipe = Recipe::query(&suite, &suite_args)?;
    let vm_opts = vm::VmOptions::from_env(10800, Vec::new());
    let work_dir = workspace_root().join("target/xtask-vm");
    let mut ok = true;
    let host = if recipe.host_benches > 0 {
        eprintln!("xtask: === the host's benchmarks, before any guest boots ===");
        let (host_ok, lines) = host_rows(&suite, &suite_args)?;
        ok &= host_ok;
        lines
    } else {
        Vec::new()
    };
    if recipe.benches == 0 {
        eprintln!("xtask: no guest benchmark selected: no guest boots");
        let mut text = header(
            "the host's rows only",
            &commit,
            "cargo xtask bench",
            &suite_args,
        );
        text.push_str(&format!("- machine: {}\n", host_machine()));
        append_host(&mut text, &host);
        let f = work_dir.join("bench-host.md");
        fs::create_dir_all(&work_dir)?;
        fs::write(&f, &text)?;
        eprintln!("xtask: wrote {}", f.display());
        output(&text);
        return Ok(ok);
    }
    for (version, guest) in &guests {
        eprintln!("xtask: === bench on OpenZFS {} ===", version.as_str());
        let images = pool_images(guest, &recipe, &suite, &suite_args, &work_dir, &vm_opts)?;
        let payload = GuestPayload {
            binaries: vec![
                (SUITE_IN_GUEST.into(), suite.clone()),
                ("/usr/bin/backup".into(), backup.clone()),
            ],
            files: Vec::new(),
            script: suite_script("run", &suite_args),
            disks: images
                .into_iter()
                .map(|image| Disk {
                    image,
                    discard_writes: true,
                })
                .collect(),
        };
        let run_started = Instant::now();
        let outcome = vm::run_payload(guest, &payload, &work_dir, &vm_opts)?;
        let run_ok = succeeded(&outcome);
        if outcome.report.is_empty() {
            eprintln!("xtask: the guest printed no results");
        } else {
            let mut text = report(*version, &commit, &outcome, &suite_args, &vm_opts);
            append_host(&mut text, &host);
            let mut files = vec![work_dir.join(format!("bench-{}.md", version.as_str()))];
            if recipe.complete && run_ok {
                files.push(
                    workspace_root().join(format!("benches/RESULTS-{}.md", version.as_str())),
                );
            }
            for f in &files {
                fs::write(f, &text)?;
                eprintln!("xtask: wrote {}", f.display());
            }
            output(&text);
        }
        eprintln!(
            "xtask: the bench run on OpenZFS {} took {:.0} s",
            version.as_str(),
            run_started.elapsed().as_secs_f64()
        );
        ok &= run_ok;
    }
    eprintln!(
        "xtask: bench {} in {:.0} s",
        if ok { "finished" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(ok)
}

/// What the suite says about the pools it needs for these arguments
/// (`suite recipe ARGS`, run on the host).
struct Recipe {
    /// One line naming everything in the pools; it keys the image cache.
    text: String,
    /// The disk images' sizes, in attachment order.
    disks_mib: Vec<u64>,
    /// Every benchmark at full size: the results are the project's.
    complete: bool,
    /// Benchmarks selected in the guest, and on the host (`suite host`).
    benches: usize,
    host_benches: usize,
}

impl Recipe {
    fn query(suite: &Path, suite_args: &[String]) -> Result<Recipe> {
        let out = Command::new(suite)
            .arg("recipe")
            .args(suite_args)
            .output()
            .map_err(|e| format!("starting {}: {e}", suite.display()))?;
        if !out.status.success() {
            return Err(format!(
                "suite recipe failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .ok_or_else(|| format!("suite recipe printed no {key}"))
        };
        Ok(Recipe {
            text: get("recipe")?.to_owned(),
            disks_mib: get("disks_mib")?
                .split_whitespace()
                .map(|d| d.parse().map_err(|e| format!("disks_mib {d:?}: {e}")))
                .collect::<Result<_, _>>()?,
            complete: get("complete")? == "true",
            benches: get("benches")?
                .parse()
                .map_err(|e| format!("benches: {e}"))?,
            host_benches: get("host_benches")?
                .parse()
                .map_err(|e| format!("host_benches: {e}"))?,
        })
    }
}

/// Runs the suite's host benchmarks (`suite host ARGS`), its output echoed;
/// whether they all succeeded, and their report (the lines between its
/// markers).
fn host_rows(suite: &Path, suite_args: &[String]) -> Result<(bool, Vec<String>)> {
    let started = Instant::now();
    let mut child = Command::new(suite)
        .arg("host")
        .args(suite_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", suite.display()))?;
    let stdout = child.stdout.take().expect("a piped stdout");
    let mut report = Vec::new();
    let mut inside = false;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        eprintln!("host| {line}");
        match line.as_str() {
            "SUITE-HOST-REPORT-BEGIN" => inside = true,
            "SUITE-HOST-REPORT-END" => inside = false,
            _ if inside => report.push(line),
            _ => {}
        }
    }
    let status = child.wait()?;
    if !status.success() {
        eprintln!("xtask: the suite's host benchmarks failed ({status})");
    }
    eprintln!(
        "xtask: the host's benchmarks took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok((status.success(), report))
}

/// The host's table after the guest's report.
fn append_host(text: &mut String, host: &[String]) {
    if host.is_empty() {
        return;
    }
    text.push('\n');
    for line in host {
        text.push_str(line);
        text.push('\n');
    }
}

/// The cached pool images for `guest` and `recipe`, built first if missing.
fn pool_images(
    guest: &Guest,
    recipe: &Recipe,
    suite: &Path,
    suite_args: &[String],
    work_dir: &Path,
    vm_opts: &vm::VmOptions,
) -> Result<Vec<PathBuf>> {
    let pools_dir = work_dir.join("bench-pools");
    fs::create_dir_all(&pools_dir)?;
    let key = format!("{}-{:016x}", guest.zfs_version, fnv1a64(&recipe.text));
    let dir = pools_dir.join(&key);
    let images: Vec<PathBuf> = (0..recipe.disks_mib.len())
        .map(|i| dir.join(format!("disk{i}.img")))
        .collect();
    // One build per key at a time, whatever runs concurrently.
    let lock = fs::File::create(pools_dir.join(format!("{key}.lock")))?;
    lock.lock()?;
    if images.iter().all(|i| i.exists()) {
        eprintln!("xtask: reusing the cached bench pools in {}", dir.display());
        return Ok(images);
    }
    // Holding the lock, any partial build of this key is an interrupted one.
    for entry in fs::read_dir(&pools_dir)?.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{key}.tmp"))
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let tmp = pools_dir.join(format!("{key}.tmp{}", std::process::id()));
    fs::create_dir_all(&tmp)?;
    eprintln!(
        "xtask: building the bench pools in {} (once per recipe and OpenZFS version; \
         many minutes at full size)",
        dir.display()
    );
    let mut disks = Vec::new();
    for (i, mib) in recipe.disks_mib.iter().enumerate() {
        let image = tmp.join(format!("disk{i}.img"));
        crate::disk::create_partitioned(&image, *mib)?;
        disks.push(Disk {
            image,
            discard_writes: false,
        });
    }
    let payload = GuestPayload {
        binaries: vec![(SUITE_IN_GUEST.into(), suite.to_path_buf())],
        files: Vec::new(),
        script: suite_script("build", suite_args),
        disks,
    };
    let started = Instant::now();
    let outcome = vm::run_payload(guest, &payload, work_dir, vm_opts)?;
    if !succeeded(&outcome) {
        let _ = fs::remove_dir_all(&tmp);
        return Err("building the bench pools failed (see the guest's output above)".into());
    }
    fs::write(tmp.join("recipe.txt"), format!("{}\n", recipe.text))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir)?;
    eprintln!(
        "xtask: built the bench pools in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(images)
}

/// The guest script: the suite in `mode` with the user's arguments.
fn suite_script(mode: &str, suite_args: &[String]) -> String {
    let args: Vec<String> = suite_args.iter().map(|a| vm::shell_quote(a)).collect();
    format!(
        "{SUITE_IN_GUEST} {mode} {}\necho \"ZFS-HARNESS-EXIT suite $?\"\n",
        args.join(" ")
    )
}

fn succeeded(outcome: &VmOutcome) -> bool {
    if !outcome.completed {
        eprintln!(
            "xtask: the guest did not report completion (crash, module load failure or timeout)"
        );
    }
    for (name, code) in &outcome.failed_binaries {
        eprintln!("xtask: the guest's {name} exited with {code}");
    }
    outcome.completed && outcome.failed_binaries.is_empty() && outcome.version_error.is_none()
}

/// The results file: how it was run, on what, then the guest's report.
/// The commit the binaries are built from, read before building: the tree
/// may change while a long run goes on.
fn built_commit() -> String {
    let mut commit = command_output(
        Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(workspace_root()),
    );
    if !command_output(
        Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(workspace_root()),
    )
    .is_empty()
    {
        commit.push_str(" with uncommitted changes");
    }
    commit
}

/// The results file's title and its first lines: when, what, how.
fn header(title: &str, commit: &str, command: &str, suite_args: &[String]) -> String {
    let mut command = command.to_owned();
    if !suite_args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&suite_args.join(" "));
    }
    let date = command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    format!(
        "<!-- Written by `cargo xtask bench`; rerun it rather than editing. -->\n\
         # Benchmarks: {title}\n\n\
         - date: {date}; commit {commit}\n\
         - command: `{command}`\n"
    )
}

/// `a 2-core host (AMD EPYC)`.
fn host_machine() -> String {
    let host_cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let host_cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("a {host_cores}-core host ({host_cpu})")
}

fn report(
    version: ZfsVersion,
    commit: &str,
    outcome: &VmOutcome,
    suite_args: &[String],
    vm_opts: &vm::VmOptions,
) -> String {
    let mut text = header(
        &format!(
            "zfs-replicate against the zfs CLI, OpenZFS {}",
            version.as_str()
        ),
        commit,
        &format!("cargo xtask bench --zfs {}", version.as_str()),
        suite_args,
    );
    text.push_str(&format!(
        "- machine: QEMU TCG guest (no KVM), {} vCPUs, {} MiB, on {}\n\
         - guest: {}\n",
        vm_opts.cpus,
        vm_opts.memory_mib,
        host_machine(),
        outcome.versions.as_deref().unwrap_or("(not reported)"),
    ));
    for line in &outcome.report {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// A command's trimmed stdout, or `unknown` when it fails.
fn command_output(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases.
fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
