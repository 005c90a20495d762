//! Medians over repeated runs: of wall time, or of a child's peak RSS; and
//! CPU time: this process's, its threads', and its waited-for children's.

use std::process::Command;
use std::time::{Duration, Instant};

/// A run longer than this cuts a sample to [`RUNS_WHEN_LONG`] runs (no
/// benchmark of the full-size suite comes near it under TCG: the longest,
/// the CLI's tiny sync of 101 datasets, takes about two minutes).
const LONG_RUN: Duration = Duration::from_secs(300);
const RUNS_WHEN_LONG: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    MiB,
}

/// The median of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub median: f64,
    pub unit: Unit,
    pub runs: usize,
    /// The sample was cut short because one run took over five minutes.
    pub long: bool,
}

/// Runs `run(i)` (which returns the time to count) `runs` times, or
/// [`RUNS_WHEN_LONG`] times when the first run takes over five minutes.
pub fn times(runs: usize, mut run: impl FnMut(usize) -> Duration) -> Measured {
    let first = run(0);
    let long = first > LONG_RUN && runs > RUNS_WHEN_LONG;
    let runs = if long { RUNS_WHEN_LONG } else { runs };
    let mut values = vec![first.as_secs_f64()];
    values.extend((1..runs).map(|i| run(i).as_secs_f64()));
    Measured {
        median: median(values),
        unit: Unit::Seconds,
        runs,
        long,
    }
}

/// Like [`times`] for several variants of one job, run in rounds (one run
/// of each variant per round, in turn), so that a load that comes and goes
/// (another guest on the host) weighs on all of them alike. `run(round,
/// variant)` returns the time to count; a first round with a run over five
/// minutes cuts every sample to [`RUNS_WHEN_LONG`] runs.
pub fn rounds(
    runs: usize,
    variants: usize,
    mut run: impl FnMut(usize, usize) -> Duration,
) -> Vec<Measured> {
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); variants];
    let mut long = false;
    let mut round = 0;
    while round < if long { RUNS_WHEN_LONG.min(runs) } else { runs } {
        for (v, sample) in values.iter_mut().enumerate() {
            let took = run(round, v);
            long |= round == 0 && took > LONG_RUN && runs > RUNS_WHEN_LONG;
            sample.push(took.as_secs_f64());
        }
        round += 1;
    }
    values
        .into_iter()
        .map(|v| Measured {
            runs: v.len(),
            median: median(v),
            unit: Unit::Seconds,
            long,
        })
        .collect()
}

/// The wall time of `f`.
pub fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let started = Instant::now();
    std::hint::black_box(f());
    started.elapsed()
}

/// Runs `run(i)` (which returns bytes) `runs` times.
pub fn memory(runs: usize, run: impl FnMut(usize) -> u64) -> Measured {
    let values = (0..runs).map(run).map(|b| b as f64 / f64::from(1 << 20));
    Measured {
        median: median(values.collect()),
        unit: Unit::MiB,
        runs,
        long: false,
    }
}

/// The median (NaN for no values).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Runs `cmd` to its end and returns its peak resident set size in bytes:
/// the largest of the process and the descendants it waited for
/// (`wait4`'s `ru_maxrss`, the kernel's VmHWM at exit). Panics if it fails.
///
/// The command is started by a fresh process of this program
/// ([`RSS_OF`]), not by the suite itself: Linux starts a child's peak RSS
/// at its parent's RSS (the memory it shares until `exec`, and `exec`
/// records the old memory's peak), so a suite grown by its own in-process
/// benchmarks made every child it measured look at least as large (a
/// run measured 57.8 MiB for `zfs send` after the in-process parity rows).
/// Only the command's program and arguments are passed on: it runs with
/// its output discarded.
pub fn peak_rss(cmd: &mut Command) -> u64 {
    let exe = std::env::current_exe().expect("the suite's own path");
    let out = Command::new(exe)
        .arg(RSS_OF)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("starting the measuring process");
    assert!(out.status.success(), "{cmd:?} failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the measuring process prints the peak")
}

/// The suite's mode that runs a command and prints its peak RSS in bytes.
pub const RSS_OF: &str = "rss-of";

/// `suite rss-of PROGRAM ARG…`: runs it (output discarded), prints its
/// peak RSS in bytes, and exits with its status (1 if it was killed).
pub fn rss_of(command: &[String]) -> ! {
    let Some((program, args)) = command.split_first() else {
        eprintln!("suite: rss-of needs a command");
        std::process::exit(2);
    };
    let child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the measured program");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; both pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child); // reaped above; dropping a `Child` never waits
    println!(
        "{}",
        u64::try_from(usage.ru_maxrss).expect("a non-negative ru_maxrss") * 1024
    );
    if libc::WIFEXITED(status) {
        std::process::exit(libc::WEXITSTATUS(status));
    }
    std::process::exit(1);
}

/// Where our kernel time went while `f` measured: the three call kinds
/// with the most time, per run, as a note; the whole profile is printed on
/// the console.
pub fn profiled(label: &str, f: impl FnOnce() -> Measured) -> (Measured, String) {
    zfs_core::testing::call_profile(); // start from zero
    let measured = f();
    let mut calls = zfs_core::testing::call_profile();
    calls.sort_by_key(|c| std::cmp::Reverse(c.2));
    let runs = measured.runs.max(1);
    let line: Vec<String> = calls
        .iter()
        .map(|&(name, n, t)| {
            let per_run = t.as_secs_f64() / runs as f64;
            format!("{name} {}× {per_run:.2} s", n / runs as u64)
        })
        .collect();
    println!("profile: {label}, per run: {}", line.join("; "));
    let top: Vec<String> = line.into_iter().take(3).collect();
    (
        measured,
        format!("kernel calls per run: {}", top.join(", ")),
    )
}

/// CPU time (user + system) so far: of this process (every thread, the
/// kernel's work in our ioctls included), and of the children it waited for.
pub fn cpu_seconds() -> (f64, f64) {
    let of = |who| {
        // SAFETY: an all-zero rusage is valid; getrusage fills it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid rusage to write into.
        let rc = unsafe { libc::getrusage(who, &mut u) };
        assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    (of(libc::RUSAGE_SELF), of(libc::RUSAGE_CHILDREN))
}

/// What the threads of one name did while [`threads`] watched.
#[derive(Debug, Default, Clone)]
pub struct ThreadUse {
    pub name: String,
    /// CPU seconds, user + system.
    pub cpu: f64,
    /// read-like and write-like system calls, and the bytes they moved
    /// (`/proc/PID/task/TID/io`: `syscr`, `syscw`, `rchar`, `wchar`).
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
}

impl std::fmt::Display for ThreadUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kib = |bytes: u64, calls: u64| bytes as f64 / calls.max(1) as f64 / 1024.0;
        write!(f, "{} {:.2} s", self.name, self.cpu)?;
        if self.reads > 0 || self.writes > 0 {
            write!(
                f,
                " (read {}× {:.0} KiB, write {}× {:.0} KiB)",
                self.reads,
                kib(self.read_bytes, self.reads),
                self.writes,
                kib(self.written_bytes, self.writes)
            )?;
        }
        Ok(())
    }
}

/// Per thread name of this process, while `f` runs: CPU time and I/O
/// system calls. `/proc/self/task` is sampled every 20 ms (what a thread
/// does after its last sample is missed), and threads of one name are
/// summed, busiest first. For a diagnostic run: the sampling costs some
/// CPU itself (its thread, `cpu-sampler`, is listed too).
pub fn threads<T>(f: impl FnOnce() -> T) -> (T, Vec<ThreadUse>) {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ticks = {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    };
    // tid -> (name, [cpu ticks, syscr, syscw, rchar, wchar])
    type Seen = BTreeMap<u32, (String, [u64; 5])>;
    let sample = |seen: &mut Seen| {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for task in tasks.flatten() {
            let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // `tid (comm) state ...`: comm may hold spaces, up to the last ')'.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat[open + 1..close].to_owned();
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            // utime and stime: fields 14 and 15 of the line, 12 and 13 here.
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            let mut v = [field(11).unwrap_or(0) + field(12).unwrap_or(0), 0, 0, 0, 0];
            if let Ok(io) = std::fs::read_to_string(task.path().join("io")) {
                for line in io.lines() {
                    let Some((key, value)) = line.split_once(": ") else {
                        continue;
                    };
                    let slot = match key {
                        "syscr" => 1,
                        "syscw" => 2,
                        "rchar" => 3,
                        "wchar" => 4,
                        _ => continue,
                    };
                    v[slot] = value.trim().parse().unwrap_or(0);
                }
            }
            seen.insert(tid, (name, v));
        }
    };
    let mut before = Seen::new();
    sample(&mut before);
    let done = AtomicBool::new(false);
    let (out, seen) = std::thread::scope(|s| {
        let sampler = std::thread::Builder::new()
            .name("cpu-sampler".into())
            .spawn_scoped(s, || {
                let mut seen = Seen::new();
                while !done.load(Ordering::Relaxed) {
                    sample(&mut seen);
                    std::thread::sleep(Duration::from_millis(20));
                }
                sample(&mut seen);
                seen
            })
            .expect("starting the sampler thread");
        let out = f();
        done.store(true, Ordering::Relaxed);
        (out, sampler.join().expect("the sampler thread"))
    });
    let mut by_name: BTreeMap<String, ThreadUse> = BTreeMap::new();
    for (tid, (name, v)) in seen {
        let base = before.get(&tid).map_or([0; 5], |b| b.1);
        let d = |i: usize| v[i].saturating_sub(base[i]);
        let u = by_name.entry(name.clone()).or_insert_with(|| ThreadUse {
            name,
            ..ThreadUse::default()
        });
        u.cpu += d(0) as f64 / ticks;
        u.reads += d(1);
        u.writes += d(2);
        u.read_bytes += d(3);
        u.written_bytes += d(4);
    }
    let mut list: Vec<ThreadUse> = by_name.into_values().filter(|u| u.cpu > 0.0).collect();
    list.sort_by(|a, b| b.cpu.total_cmp(&a.cpu));
    (out, list)
}
