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

/// CPU seconds (user + system) per thread name of this process while `f`
/// runs: `/proc/self/task` is sampled every 20 ms (a thread's time after
/// its last sample is missed), and threads of one name are summed, busiest
/// first. For a diagnostic run: the sampling costs some CPU itself.
pub fn thread_cpu<T>(f: impl FnOnce() -> T) -> (T, Vec<(String, f64)>) {
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
    let sample = |seen: &mut BTreeMap<u32, (String, u64)>| {
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
            let comm = stat[open + 1..close].to_owned();
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            // utime and stime: fields 14 and 15 of the line, 12 and 13 here.
            let t = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            seen.insert(tid, (comm, t(11) + t(12)));
        }
    };
    let mut before = BTreeMap::new();
    sample(&mut before);
    let done = AtomicBool::new(false);
    let (out, seen) = std::thread::scope(|s| {
        let sampler = std::thread::Builder::new()
            .name("cpu-sampler".into())
            .spawn_scoped(s, || {
                let mut seen = BTreeMap::new();
                while !done.load(Ordering::Relaxed) {
                    sample(&mut seen);
                    std::thread::sleep(Duration::from_millis(20));
                }
                sample(&mut seen);
                seen
            });
        let sampler = sampler.expect("starting the sampler thread");
        let out = f();
        done.store(true, Ordering::Relaxed);
        (out, sampler.join().expect("the sampler thread"))
    });
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (comm, t)) in seen {
        let base = before.get(&tid).map_or(0, |b: &(String, u64)| b.1);
        *by_name.entry(comm).or_default() += t.saturating_sub(base) as f64 / ticks;
    }
    let mut out_list: Vec<(String, f64)> = by_name.into_iter().filter(|(_, t)| *t > 0.0).collect();
    out_list.sort_by(|a, b| b.1.total_cmp(&a.1));
    (out, out_list)
}
