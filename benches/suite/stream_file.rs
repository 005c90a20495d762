//! Stream files and their parity sidecars (`zfs_replicate::parity`):
//! `send_to_file` with and without 5% parity against `zfs send > FILE`;
//! `check_file` and `repair_file` of a damaged file; and a sidecar's
//! making taken apart (reading, verifying, BLAKE3, Reed–Solomon alone, on
//! the same bytes), which says where its time goes.
//!
//! The guest has its rows; the host has one benchmark of its own (`suite
//! host`, which `cargo xtask bench` runs before the guest boots): making a
//! sidecar for a 1 GiB stream in `/dev/shm`, pinned to one core. The host
//! has no pool to send from, so its stream is synthetic: framed and
//! checksummed as `zfs send` writes it (it must verify, as `create_sidecar`
//! verifies what it reads).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reed_solomon_simd::engine::{DefaultEngine, Engine, NoSimd};
use reed_solomon_simd::rate::{HighRateEncoder, RateEncoder};
use zfs_core::SnapshotName;
use zfs_replicate::file::{send_to_file, verify_file, SendFileOptions};
use zfs_replicate::parity::{
    check_file, create_sidecar, repair_file, sidecar_path, Condition, Parity, DEFAULT_BLOCK,
};

use crate::cli::sh;
use crate::context::Context;
use crate::measure::{cpu_seconds, median, rounds, timed, times, Measured};
use crate::table::Row;
use crate::transfer::SEND_FLAGS;

/// The level the send and repair rows use (the issue's `--parity 5%`).
const LEVEL: u32 = 5;
/// The levels a sidecar's making is timed at.
const LEVELS: [u32; 2] = [5, 10];
/// The added time of parity the issue aims at, over a send without it.
const ADDED_TARGET: f64 = 0.10;
/// The host's generation throughput the issue aims at, on one core (MB/s).
const HOST_TARGET_MB_S: f64 = 1000.0;
/// Blocks damaged for the check and repair rows.
const DAMAGED_BLOCKS: u64 = 4;

/// A directory of its own under the guest's `/tmp` (a tmpfs: the rows
/// time the library and the CLI, not a disk).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Removes a stream file and its sidecar, if there.
fn remove_stream(file: &Path) {
    for p in [file.to_path_buf(), sidecar_path(file)] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", p.display()),
        }
    }
}

fn len_of(file: &Path) -> u64 {
    fs::metadata(file)
        .unwrap_or_else(|e| panic!("stat {}: {e}", file.display()))
        .len()
}

/// `812 ms` or `2.41 s`.
fn secs(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2} s")
    }
}

/// Decimal megabytes per second.
fn mb_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-9)
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "MISSED"
    }
}

/// `send_to_file` without parity and with 5%, against `zfs send > FILE`,
/// in rounds (one run of each per round): two rows, and the added time of
/// parity (ours with it over ours without) in the second's notes.
pub fn send_rows(ctx: &mut Context, mib: u64, snapshot: &SnapshotName) -> Vec<Row> {
    let dir = scratch("bench-stream-file");
    let file = dir.join("stream");
    let parity = Parity::percent(LEVEL).expect("a valid level");
    let plain = SendFileOptions::new();
    let with_parity = SendFileOptions::new().parity(parity);
    let cli = format!("zfs send {SEND_FLAGS} '{snapshot}' > '{}'", file.display());
    let mut stream_bytes = 0;
    let mut sidecar_bytes = 0;
    let measured = rounds(ctx.runs, 3, |_, variant| {
        remove_stream(&file);
        let took = match variant {
            0 => timed(|| sh(&cli)),
            1 => timed(|| {
                send_to_file(&ctx.zfs, snapshot, &plain, &file)
                    .unwrap_or_else(|e| panic!("sending {snapshot} to a file: {e}"))
            }),
            _ => timed(|| {
                let sent = send_to_file(&ctx.zfs, snapshot, &with_parity, &file)
                    .unwrap_or_else(|e| panic!("sending {snapshot} to a file with parity: {e}"));
                sidecar_bytes = sent.sidecar.expect("a sidecar was asked for").bytes;
            }),
        };
        stream_bytes = len_of(&file);
        took
    });
    remove_stream(&file);
    let _ = fs::remove_dir_all(&dir);
    let [cli, ours, ours_parity] = [measured[0], measured[1], measured[2]];
    let added = ours_parity.median / ours.median - 1.0;
    let rate = |m: &Measured| mb_s(stream_bytes, m.median);
    let cli_note = format!(
        "CLI: `zfs send {SEND_FLAGS} > FILE`, {:.0} MB/s; files in the guest's /tmp (tmpfs)",
        rate(&cli)
    );
    vec![
        Row {
            label: format!("write a {mib} MiB snapshot's stream file"),
            ours,
            cli: Some(cli),
            notes: format!(
                "ours: `send_to_file` (every record verified while written; synced, linked), \
                 {:.0} MB/s; {cli_note}",
                rate(&ours)
            ),
        },
        Row {
            label: format!("write a {mib} MiB snapshot's stream file with {LEVEL}% parity"),
            ours: ours_parity,
            cli: Some(cli),
            notes: format!(
                "ours: `send_to_file` with `.parity(Parity::percent({LEVEL}))`, FILE and a \
                 {:.1} MiB FILE.zpar in one pass, {:.0} MB/s; **parity adds {:+.0}% \
                 ({}) to ours without it** (target ≤ {:.0}%: {}); {cli_note}",
                sidecar_bytes as f64 / f64::from(1 << 20),
                rate(&ours_parity),
                added * 100.0,
                secs(ours_parity.median - ours.median),
                ADDED_TARGET * 100.0,
                met(added <= ADDED_TARGET),
            ),
        },
    ]
}

/// Damages `DAMAGED_BLOCKS` blocks of `file`, spread over it (a few bytes
/// flipped in each); returns the bytes of stream they cover.
fn damage(file: &Path) -> u64 {
    use std::os::unix::fs::FileExt;
    let len = len_of(file);
    let block = u64::from(DEFAULT_BLOCK);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap_or_else(|e| panic!("opening {}: {e}", file.display()));
    let mut bytes = [0u8; 64];
    for i in 1..=DAMAGED_BLOCKS {
        let at = (len * i / (DAMAGED_BLOCKS + 1)) / block * block + 100;
        f.read_exact_at(&mut bytes, at).expect("reading a block");
        for b in &mut bytes {
            *b ^= 0xa5;
        }
        f.write_all_at(&bytes, at).expect("damaging a block");
    }
    DAMAGED_BLOCKS * block
}

fn copy_stream(from: &Path, to: &Path) {
    remove_stream(to);
    for (a, b) in [
        (from.to_path_buf(), to.to_path_buf()),
        (sidecar_path(from), sidecar_path(to)),
    ] {
        fs::copy(&a, &b).unwrap_or_else(|e| panic!("copying {}: {e}", a.display()));
    }
}

/// `check_file` of a file with damaged blocks against `zstream dump`;
/// `repair_file` of it (ours only).
pub fn repair_rows(ctx: &mut Context, mib: u64, snapshot: &SnapshotName) -> Vec<Row> {
    let dir = scratch("bench-parity-repair");
    let intact = dir.join("intact");
    let damaged = dir.join("damaged");
    let work = dir.join("work");
    let opts = SendFileOptions::new().parity(Parity::percent(LEVEL).expect("a valid level"));
    send_to_file(&ctx.zfs, snapshot, &opts, &intact)
        .unwrap_or_else(|e| panic!("sending {snapshot} to a file with parity: {e}"));
    copy_stream(&intact, &damaged);
    let damaged_bytes = damage(&damaged);
    let stream_bytes = len_of(&intact);
    let check = |path: &Path| {
        check_file(path).unwrap_or_else(|e| panic!("checking {}: {e}", path.display()))
    };
    match check(&damaged) {
        Condition::Repairable { damaged, .. } => assert_eq!(
            damaged.bytes, damaged_bytes,
            "check_file found other damage: {damaged}"
        ),
        other => panic!("the damaged file is not repairable: {other:?}"),
    }
    let ours_check = times(ctx.runs, |_| timed(|| check(&damaged)));
    let cli_check = times(ctx.runs, |_| {
        timed(|| sh(&format!("zstream dump '{}' > /dev/null", damaged.display())))
    });
    let intact_check = times(ctx.runs, |_| {
        timed(|| assert!(matches!(check(&intact), Condition::Intact { .. })))
    });
    let repair = times(ctx.runs, |_| {
        copy_stream(&damaged, &work);
        let took = timed(|| {
            let r =
                repair_file(&work).unwrap_or_else(|e| panic!("repairing {}: {e}", work.display()));
            assert_eq!(r.repaired.bytes, damaged_bytes, "repaired {}", r.repaired);
        });
        remove_stream(&work);
        took
    });
    let _ = fs::remove_dir_all(&dir);
    let what = format!(
        "a {mib} MiB stream file with {DAMAGED_BLOCKS} damaged {} KiB blocks ({LEVEL}% parity)",
        DEFAULT_BLOCK >> 10
    );
    vec![
        Row {
            label: format!("check {what}"),
            ours: ours_check,
            cli: Some(cli_check),
            notes: format!(
                "ours: `check_file` (reads FILE and FILE.zpar, locates the damage: repairable), \
                 {:.0} MB/s; on the intact file {}; CLI: `zstream dump`, which exits 0 even on \
                 bad checksums and locates nothing",
                mb_s(stream_bytes, ours_check.median),
                secs(intact_check.median),
            ),
        },
        Row {
            label: format!("repair {what}"),
            ours: repair,
            cli: None,
            notes: format!(
                "`repair_file`: check, rebuild the blocks, write a repaired copy while \
                 verifying it, sync, rename; {:.0} MB/s of stream",
                mb_s(stream_bytes, repair.median)
            ),
        },
    ]
}

/// `(k, m)` of a level: data and parity blocks of a full code word, as
/// zfs-replicate's sidecar geometry computes them (the smallest power of
/// two `s` with `m = ⌈level × (1024 − s)⌉ ≤ s`; 5%: 960 + 48).
fn code(percent: u32) -> (usize, usize) {
    let mut s = 1;
    loop {
        let k = 1024 - s;
        let m = (k * percent as usize).div_ceil(100);
        if m <= s {
            return (k, m);
        }
        s *= 2;
    }
}

/// Reed–Solomon parity of `data`, `block`-byte blocks in words of `k`
/// (the last one shorter), `m` parity blocks each: the crate's high-rate
/// encoder, whose output the sidecar's streaming encoder equals (the same
/// transforms, taken a chunk at a time).
fn rs_encode(data: &[u8], k: usize, m: usize) -> usize {
    rs_encode_with(data, k, m, DefaultEngine::new)
}

/// [`rs_encode`] with the crate's engine `engine` makes (the sidecar's is
/// `DefaultEngine`: the best SIMD the CPU reports).
fn rs_encode_with<E: Engine>(data: &[u8], k: usize, m: usize, engine: impl Fn() -> E) -> usize {
    let b = DEFAULT_BLOCK as usize;
    let blocks: Vec<&[u8]> = data.chunks_exact(b).collect();
    let mut encoder: Option<HighRateEncoder<E>> = None;
    let mut out = 0;
    for word in blocks.chunks(k) {
        let mut e = match encoder.take() {
            Some(mut e) => {
                e.reset(word.len(), m, b).expect("a valid code");
                e
            }
            None => HighRateEncoder::new(word.len(), m, b, engine(), None).expect("a valid code"),
        };
        for block in word {
            e.add_original_shard(block).expect("a block");
        }
        out += e.encode().expect("encoding").recovery_iter().count();
        encoder = Some(e);
    }
    out
}

/// [`rs_encode`]'s CPU time with the crate's portable engine and, where
/// the CPU has them, its SSSE3 and AVX2 engines.
fn rs_engines(runs: usize, data: &[u8], k: usize, m: usize) -> Vec<(&'static str, f64)> {
    let mut out = vec![(
        "portable (NoSimd)",
        sample(runs, || {
            timed_cpu(|| rs_encode_with(data, k, m, NoSimd::new))
        })
        .1,
    )];
    #[cfg(target_arch = "x86_64")]
    {
        use reed_solomon_simd::engine::{Avx2, Ssse3};
        if std::arch::is_x86_feature_detected!("ssse3") {
            out.push((
                "SSSE3",
                sample(runs, || {
                    timed_cpu(|| rs_encode_with(data, k, m, Ssse3::new))
                })
                .1,
            ));
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            out.push((
                "AVX2",
                sample(runs, || timed_cpu(|| rs_encode_with(data, k, m, Avx2::new))).1,
            ));
        }
    }
    out
}

/// BLAKE3 of every `block`-byte block (the sidecar's block digests).
fn blake3_blocks(data: &[u8]) -> u8 {
    data.chunks(DEFAULT_BLOCK as usize)
        .fold(0, |x, b| x ^ blake3::hash(b).as_bytes()[0])
}

fn read_all(path: &Path) -> u64 {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) => panic!("reading {}: {e}", path.display()),
        }
    }
}

/// Seconds this thread has waited on a run queue, runnable but not
/// running (`/proc/thread-self/schedstat`, its second field; NaN where
/// the kernel does not say).
fn run_delay() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// What [`timed_cpu`] measures of one run.
struct Run {
    wall: Duration,
    /// CPU seconds of this process meanwhile (user + system, every thread).
    cpu: f64,
    /// Seconds this thread waited for a CPU meanwhile.
    waited: f64,
}

fn timed_cpu<T>(f: impl FnOnce() -> T) -> Run {
    let (cpu, waited) = (cpu_seconds().0, run_delay());
    let wall = timed(f);
    Run {
        wall,
        cpu: cpu_seconds().0 - cpu,
        waited: run_delay() - waited,
    }
}

/// `runs` runs of `run`: the wall times' median, the CPU times' median
/// and the median wait for a CPU.
fn sample(runs: usize, mut run: impl FnMut() -> Run) -> (Measured, f64, f64) {
    let mut cpu = Vec::new();
    let mut waited = Vec::new();
    let wall = times(runs, |_| {
        let r = run();
        cpu.push(r.cpu);
        waited.push(r.waited);
        r.wall
    });
    (wall, median(cpu), median(waited))
}

/// `create_sidecar` of the stream file at `file` at each level, and its
/// parts alone on the same bytes: one row per level. Times are wall-clock
/// medians; the CPU time the process got is given too (on a loaded host,
/// wall time counts the time it waited for its core; CPU time does not),
/// and the parts are given by CPU time. With `target`, the rate per CPU
/// second is held against the target for one core.
fn sidecar_rows(runs: usize, file: &Path, label: &str, note: &str, target: bool) -> Vec<Row> {
    let len = len_of(file);
    let (_, read, _) = sample(runs, || timed_cpu(|| read_all(file)));
    let (_, verify, _) = sample(runs, || {
        timed_cpu(|| {
            verify_file(file).unwrap_or_else(|e| panic!("verifying {}: {e}", file.display()))
        })
    });
    let data = fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let (_, blake3, _) = sample(runs, || timed_cpu(|| blake3_blocks(&data)));
    let mut rows = Vec::new();
    for percent in LEVELS {
        let parity = Parity::percent(percent).expect("a valid level");
        let (k, m) = code(percent);
        let (_, rs, _) = sample(runs, || timed_cpu(|| rs_encode(&data, k, m)));
        // At the send's level, the encoder's other engines too: how much
        // the SIMD the CPU reports (and, in the guest, TCG emulates) gives.
        let engines = if percent == LEVEL {
            rs_engines(runs, &data, k, m)
        } else {
            Vec::new()
        };
        let mut sidecar_bytes = 0;
        let (made, made_cpu, waited) = sample(runs, || {
            remove_sidecar(file);
            timed_cpu(|| {
                sidecar_bytes = create_sidecar(file, &parity)
                    .unwrap_or_else(|e| panic!("making a sidecar of {}: {e}", file.display()))
                    .bytes;
            })
        });
        remove_sidecar(file);
        let rate = mb_s(len, made.median);
        let cpu_rate = mb_s(len, made_cpu);
        let mut notes = format!(
            "`create_sidecar` (reads, verifies, hashes, encodes; a {:.1} MiB FILE.zpar): \
             **{rate:.0} MB/s** by wall clock; CPU {} (**{cpu_rate:.0} MB/s per CPU second**)",
            sidecar_bytes as f64 / f64::from(1 << 20),
            secs(made_cpu),
        );
        if waited.is_finite() {
            notes.push_str(&format!(
                ", waited for a CPU {} (run-queue delay)",
                secs(waited)
            ));
        }
        if target {
            notes.push_str(&format!(
                ", target ≥ {HOST_TARGET_MB_S:.0} MB/s on one core: {}",
                met(cpu_rate >= HOST_TARGET_MB_S)
            ));
        }
        let part = |what: &str, seconds: f64| {
            format!("{what} {} ({:.0} MB/s)", secs(seconds), mb_s(len, seconds))
        };
        notes.push_str(&format!(
            "; alone on the same bytes, CPU: {}, {}, {}, {}; BLAKE3 + RS {}",
            part("read", read),
            part("read + verify (`verify_file`)", verify),
            part(
                &format!("BLAKE3 of the {} KiB blocks", DEFAULT_BLOCK >> 10),
                blake3
            ),
            part(&format!("Reed–Solomon {k} + {m} per word"), rs),
            part("", blake3 + rs).trim_start(),
        ));
        if !engines.is_empty() {
            let list: Vec<String> = engines.iter().map(|(name, t)| part(name, *t)).collect();
            notes.push_str(&format!(
                "; Reed–Solomon by engine, CPU: {}",
                list.join(", ")
            ));
        }
        notes.push_str(&format!("; {}{note}", simd()));
        rows.push(Row {
            label: format!("make a {percent}% sidecar for {label}"),
            ours: made,
            cli: None,
            notes,
        });
    }
    rows
}

/// The x86 SIMD the CPU reports (both crates pick their code at run time:
/// under TCG, the guest's vector instructions are emulated).
fn simd() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let has = |yes: bool| if yes { "yes" } else { "no" };
        format!(
            "CPU reports AVX-512F {}, AVX2 {}, SSSE3 {}",
            has(std::arch::is_x86_feature_detected!("avx512f")),
            has(std::arch::is_x86_feature_detected!("avx2")),
            has(std::arch::is_x86_feature_detected!("ssse3")),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_owned()
    }
}

fn remove_sidecar(file: &Path) {
    match fs::remove_file(sidecar_path(file)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing the sidecar of {}: {e}", file.display()),
    }
}

/// In the guest: a sidecar for a sent stream file, and its parts.
pub fn parts_rows(ctx: &mut Context, mib: u64, snapshot: &SnapshotName) -> Vec<Row> {
    let dir = scratch("bench-parity-parts");
    let file = dir.join("stream");
    send_to_file(&ctx.zfs, snapshot, &SendFileOptions::new(), &file)
        .unwrap_or_else(|e| panic!("sending {snapshot} to a file: {e}"));
    let rows = sidecar_rows(
        ctx.runs,
        &file,
        &format!("a {mib} MiB stream file"),
        "; in the guest's /tmp (tmpfs)",
        false,
    );
    let _ = fs::remove_dir_all(&dir);
    rows
}

/// On the host: a sidecar for a synthetic stream of `mib` MiB in
/// `/dev/shm`, this process pinned to one core.
pub fn host_rows(runs: usize, mib: u64) -> Vec<Row> {
    let cpu = pin_to_one_core();
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
    .join(format!("zfs-replicate-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let file = dir.join("stream");
    let stream = synthetic_stream((mib << 20) as usize, 0x5eed);
    fs::write(&file, &stream).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    drop(stream);
    let rows = sidecar_rows(
        runs,
        &file,
        &format!("a {mib} MiB stream (host, 1 core)"),
        &format!(
            "; a synthetic stream (128 KiB WRITE records of xorshift data) in {}, pinned to CPU {cpu}",
            dir.display()
        ),
        true,
    );
    let _ = fs::remove_dir_all(&dir);
    rows
}

/// Pins this process (its threads to come too) to the last CPU it may
/// run on; returns that CPU.
fn pin_to_one_core() -> usize {
    // SAFETY: an all-zero cpu_set_t is an empty set; the calls get its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(
            libc::sched_getaffinity(0, size, &mut set),
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&c| libc::CPU_ISSET(c, &set))
            .expect("a CPU to run on");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size, &set),
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
        cpu
    }
}

/// A valid full send stream of about `len` bytes: BEGIN, one OBJECT,
/// 128 KiB WRITE records of xorshift data from `seed`, END, with the
/// running fletcher-4 checksums `dump_record()` (module/zfs/dmu_send.c)
/// writes. As zfs-replicate's unit-test writer (src/stream.rs), whose
/// generator is test-only.
pub fn synthetic_stream(len: usize, seed: u64) -> Vec<u8> {
    let mut w = StreamWriter {
        out: Vec::with_capacity(len + (128 << 10)),
        ck: [0; 4],
    };
    let guid = 0xbe4c_0000 ^ seed;
    // BEGIN: magic, a substream with no feature flags, a filesystem.
    let mut rec = [0u8; RECORD_LEN];
    put64(&mut rec, 8, 0x2_f5ba_cbac);
    put64(&mut rec, 16, 1);
    put64(&mut rec, 24, 1_700_000_000);
    put32(&mut rec, 32, 2);
    put64(&mut rec, 40, guid);
    let name = b"bench/parity@host";
    rec[56..56 + name.len()].copy_from_slice(name);
    w.emit(rec, &[]);
    // OBJECT 2: a plain file of 128 KiB blocks, no bonus buffer.
    let mut rec = record(DRR_OBJECT);
    put64(&mut rec, 8, 2);
    put32(&mut rec, 16, 19);
    put32(&mut rec, 24, 128 << 10);
    w.emit(rec, &[]);
    let mut x = seed | 1;
    let mut data = vec![0u8; 128 << 10];
    let mut offset = 0u64;
    while w.out.len() + 2 * RECORD_LEN < len {
        for c in data.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        let mut rec = record(DRR_WRITE);
        put64(&mut rec, 8, 2);
        put64(&mut rec, 24, offset);
        put64(&mut rec, 32, data.len() as u64);
        w.emit(rec, &data);
        offset += data.len() as u64;
    }
    // END: the checksum of everything before it.
    let mut rec = record(DRR_END);
    let ck = w.ck;
    for (i, v) in ck.iter().enumerate() {
        put64(&mut rec, 8 + 8 * i, *v);
    }
    put64(&mut rec, 40, guid);
    w.emit(rec, &[]);
    w.out
}

const RECORD_LEN: usize = 312;
/// Where a record's own checksum sits (the last 32 bytes).
const CKSUM_OFF: usize = 280;
const DRR_BEGIN: u32 = 0;
const DRR_OBJECT: u32 = 1;
const DRR_WRITE: u32 = 3;
const DRR_END: u32 = 5;

struct StreamWriter {
    out: Vec<u8>,
    ck: [u64; 4],
}

impl StreamWriter {
    /// As `dump_record()`: checksum the header up to its checksum field,
    /// store the checksum there (not in BEGIN), checksum the field, then
    /// the payload.
    fn emit(&mut self, mut rec: [u8; RECORD_LEN], payload: &[u8]) {
        fletcher4(&mut self.ck, &rec[..CKSUM_OFF]);
        if u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) != DRR_BEGIN {
            let ck = self.ck;
            for (i, v) in ck.iter().enumerate() {
                put64(&mut rec, CKSUM_OFF + 8 * i, *v);
            }
        }
        fletcher4(&mut self.ck, &rec[CKSUM_OFF..]);
        self.out.extend_from_slice(&rec);
        fletcher4(&mut self.ck, payload);
        self.out.extend_from_slice(payload);
    }
}

fn record(ty: u32) -> [u8; RECORD_LEN] {
    let mut rec = [0u8; RECORD_LEN];
    put32(&mut rec, 0, ty);
    rec
}

fn put32(rec: &mut [u8; RECORD_LEN], at: usize, v: u32) {
    rec[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(rec: &mut [u8; RECORD_LEN], at: usize, v: u64) {
    rec[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Fletcher-4 over little-endian 32-bit words (lengths here are multiples
/// of 4).
fn fletcher4(s: &mut [u64; 4], bytes: &[u8]) {
    for w in bytes.chunks_exact(4) {
        let w = u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        s[0] = s[0].wrapping_add(w);
        s[1] = s[1].wrapping_add(s[0]);
        s[2] = s[2].wrapping_add(s[1]);
        s[3] = s[3].wrapping_add(s[2]);
    }
}
