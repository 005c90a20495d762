//! Medians over repeated runs: of wall time, or of a child's peak RSS.

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

fn median(mut values: Vec<f64>) -> f64 {
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
pub fn peak_rss(cmd: &mut Command) -> u64 {
    let child = cmd.spawn().expect("starting the measured program");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; both pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed with wait status {status:#x}"
    );
    drop(child); // reaped above; dropping a `Child` never waits
    u64::try_from(usage.ru_maxrss).expect("a non-negative ru_maxrss") * 1024
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
