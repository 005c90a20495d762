//! Benchmarks against the `zfs` CLI, in the same run on the same pools
//! (`cargo xtask bench` runs this inside the VM). Reports times and ratios;
//! asserts nothing about speed.
//!
//! - listing N snapshots with GUID and createtxg: `Zfs::snapshots` (one
//!   list ioctl per snapshot, no property nvlist) vs `zfs list -t snapshot`;
//! - reading one property of every snapshot: `Zfs::properties` vs `zfs get`
//!   run once per snapshot (how shell-based tools do it);
//! - a full replication of a filesystem: `execute` (send → relay → receive
//!   in process) vs `zfs send | zfs receive`;
//! - checking a stream file: `stream::verify` vs `zstream dump`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zfs_core::testing::FilePool;
use zfs_core::{NvList, Zfs};
use zfs_replicate::{execute, ExecuteOptions, Replication};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn sh(cmd: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .status()
        .expect("sh");
    assert!(st.success(), "{cmd}");
}

fn row(what: &str, ours: Duration, cli: Duration, note: &str) {
    println!(
        "| {what} | {:.3} s | {:.3} s | {:.1}x | {note} |",
        ours.as_secs_f64(),
        cli.as_secs_f64(),
        cli.as_secs_f64() / ours.as_secs_f64().max(1e-9)
    );
}

fn main() {
    if !std::path::Path::new("/dev/zfs").exists() {
        eprintln!("cli_compare: needs ZFS; run `cargo xtask bench`");
        std::process::exit(1);
    }
    let snapshots = env_usize("BENCH_SNAPSHOTS", 1000);
    let data_mib = env_usize("BENCH_DATA_MIB", 64);
    let zfs = Zfs::open().expect("open /dev/zfs");
    let tank = FilePool::create(&zfs, "benchtank", 1 << 30).expect("pool");
    let pipe = FilePool::create(&zfs, "benchpipe", 1 << 30).expect("pool");

    println!("| benchmark | zfs-replicate | zfs CLI | CLI time / ours | notes |");
    println!("|---|---|---|---|---|");

    // Listing.
    let many = tank.root().child("many snapshots").unwrap();
    zfs.create_filesystem(&many, &NvList::new()).unwrap();
    let t = Instant::now();
    for i in 0..snapshots {
        zfs.snapshot(&[many.snapshot(&format!("s{i:05}")).unwrap()])
            .unwrap();
    }
    eprintln!(
        "created {snapshots} snapshots in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ours = time(5, || zfs.snapshots(&many).unwrap().len());
    assert_eq!(zfs.snapshots(&many).unwrap().len(), snapshots);
    let cli = time(3, || {
        sh(&format!(
            "zfs list -H -p -t snapshot -o name,guid,createtxg -s createtxg -d 1 '{many}'"
        ));
    });
    row(
        &format!("list {snapshots} snapshots (name, guid, createtxg)"),
        ours,
        cli,
        "one ioctl per snapshot vs one CLI run",
    );

    // One property of every snapshot.
    let sample = 100.min(snapshots);
    let snaps = zfs.snapshots(&many).unwrap();
    let ours = time(3, || {
        snaps[..sample]
            .iter()
            .filter_map(|s| zfs.properties(s.name()).unwrap().written)
            .sum::<u64>()
    });
    let cli = time(1, || {
        for s in &snaps[..sample] {
            sh(&format!("zfs get -H -p -o value written '{}'", s.name()));
        }
    });
    row(
        &format!("`written` of {sample} snapshots, one call each"),
        ours,
        cli,
        "typed properties vs `zfs get` per snapshot",
    );

    // Replication throughput.
    let data = tank.root().child("data").unwrap();
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    let dir = std::env::temp_dir().join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    sh(&format!(
        "zfs set mountpoint={} '{data}' && zfs mount '{data}' 2>/dev/null; true",
        dir.display()
    ));
    sh(&format!(
        "dd if=/dev/urandom of={}/blob bs=1M count={data_mib} 2>/dev/null",
        dir.display()
    ));
    sh(&format!("zfs unmount '{data}'"));
    zfs.snapshot(&[data.snapshot("s").unwrap()]).unwrap();

    let mut runs_ours = Vec::new();
    let mut runs_cli = Vec::new();
    for i in 0..3 {
        let target = pipe.root().child(&format!("ours{i}")).unwrap();
        let plan = Replication::new(data.clone(), target).plan(&zfs).unwrap();
        let t = Instant::now();
        execute(&zfs, &plan, &ExecuteOptions::default()).unwrap();
        runs_ours.push(t.elapsed());
        let t = Instant::now();
        sh(&format!(
            "zfs send -L -e -c '{data}@s' | zfs receive -u '{}/cli{i}'",
            pipe.root()
        ));
        runs_cli.push(t.elapsed());
    }
    let (ours, cli) = (median(runs_ours), median(runs_cli));
    let mbs = |d: Duration| data_mib as f64 / d.as_secs_f64();
    row(
        &format!("full replication of {data_mib} MiB"),
        ours,
        cli,
        &format!(
            "{:.0} MB/s vs {:.0} MB/s; same flags (-L -e -c)",
            mbs(ours),
            mbs(cli)
        ),
    );

    // Stream verification.
    let file = std::env::temp_dir().join("bench.zstream");
    let _ = std::fs::remove_file(&file);
    zfs_replicate::file::send_to_file(&zfs, &data.snapshot("s").unwrap(), None, false, &file)
        .unwrap();
    let ours = time(3, || {
        zfs_replicate::file::verify_file(&file).unwrap().total_bytes
    });
    let cli = time(3, || {
        sh(&format!("zstream dump {} > /dev/null", file.display()))
    });
    row(
        &format!("check a {data_mib} MiB stream file"),
        ours,
        cli,
        "record + END checksums vs `zstream dump` (which exits 0 even on bad checksums)",
    );
    let _ = std::fs::remove_file(&file);
    drop(tank);
    drop(pipe);
}
