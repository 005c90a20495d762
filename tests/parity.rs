//! Stream files with parity sidecars against real ZFS: a damaged
//! incremental stream is received through its repair (the file left as it
//! was), and one damaged beyond its parity receives nothing.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zfs_replicate::file::{receive_file, send_to_file, SendFileOptions};
use zfs_replicate::parity::{check_file, sidecar_path, Condition, Parity};
use zfs_replicate::{Error, ErrorKind};
use zfs_replicate_tests::{contents, fill, seed, summary, Pair, Rng};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}-{}.zstream", std::process::id()))
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(sidecar_path(path));
}

/// A source with `s1` (about 8 MiB) and `s2` (`mib` MiB more, a multiple
/// of 4), `s1` already received into the target, and the incremental
/// `s1 → s2` written to `path` with 5% parity.
fn incremental_with_parity(
    p: &Pair,
    path: &Path,
    mib: usize,
) -> (
    zfs_core::SnapshotName,
    zfs_core::DatasetName,
    zfs_replicate::parity::Sidecar,
) {
    let src = p.src("fs");
    p.create(&src);
    fill(&src, 1, 2, 4 << 20);
    let s1 = p.snap(&src, "s1");
    fill(&src, 2, mib / 4, 4 << 20);
    let s2 = p.snap(&src, "s2");
    let dst = p.dst("fs");
    let full = path.with_extension("full");
    remove(&full);
    send_to_file(&p.zfs, &s1, &SendFileOptions::new(), &full).unwrap();
    receive_file(&p.zfs, &dst, &full).unwrap();
    remove(&full);
    let opts = SendFileOptions::new()
        .from(s1.clone())
        .parity(Parity::percent(5).unwrap());
    let sent = send_to_file(&p.zfs, &s2, &opts, path).unwrap();
    let sidecar = sent.sidecar.expect("a sidecar was asked for");
    assert_eq!(sidecar.path, sidecar_path(path));
    assert!(sent.bytes > (mib as u64 - 4) << 20, "{} bytes", sent.bytes);
    assert_eq!(
        std::fs::metadata(&sidecar.path).unwrap().len(),
        sidecar.bytes
    );
    summary(&format!(
        "parity: {} byte stream, {} byte sidecar ({:.2}%), {} words, hole {} bytes",
        sent.bytes,
        sidecar.bytes,
        sidecar.bytes as f64 * 100.0 / sent.bytes as f64,
        sidecar.words,
        sidecar.hole_bytes
    ));
    assert!(matches!(
        check_file(path).unwrap(),
        Condition::Intact { .. }
    ));
    (s2, dst, sidecar)
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_damaged_incremental_stream_is_received_through_its_parity() {
    let p = Pair::new("tank", "pipe", 512 << 20, 512 << 20);
    let path = temp("parity-incr");
    remove(&path);
    let (s2, dst, _) = incremental_with_parity(&p, &path, 64);
    // 20 damages, each inside one 16 KiB block: any 20 blocks are within
    // the level (each word of this stream has 35 or more parity blocks).
    let seed = seed("PARITY_SEED");
    println!("PARITY_SEED={seed}");
    let mut rng = Rng(seed);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for _ in 0..20 {
        let block = rng.below((len / 16384) as usize) as u64;
        let run = 1 + rng.below(2000) as u64;
        let at = block * 16384 + rng.below(16384 - run as usize) as u64;
        let junk: Vec<u8> = (0..run).map(|_| rng.next_u64() as u8 | 1).collect();
        file.write_all_at(&junk, at.min(len - run)).unwrap();
    }
    drop(file);
    let damaged = std::fs::read(&path).unwrap();
    let Condition::Repairable {
        damaged: ranges, ..
    } = check_file(&path).unwrap()
    else {
        panic!("not repairable")
    };
    assert!(!ranges.is_empty());
    let got = receive_file(&p.zfs, &dst, &path).unwrap();
    assert_eq!(got.repaired, ranges);
    assert_eq!(
        p.zfs.snapshot_info(&got.received.snapshot).unwrap().guid(),
        p.zfs.snapshot_info(&s2).unwrap().guid()
    );
    assert_eq!(contents(&got.received.snapshot), contents(&s2));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        damaged,
        "the file is left as it was"
    );
    remove(&path);
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_stream_damaged_beyond_its_parity_receives_nothing() {
    let p = Pair::new("tank", "pipe", 512 << 20, 512 << 20);
    let path = temp("parity-beyond");
    remove(&path);
    // 16 MiB is enough to be beyond the level (and keeps CI short).
    let (_, dst, sidecar) = incremental_with_parity(&p, &path, 16);
    let before = p.guids(&dst);
    // A hole one word's parity longer than the guarantee, block-aligned.
    let hole = sidecar.hole_bytes + u64::from(sidecar.block) * u64::from(sidecar.words);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&vec![0u8; hole as usize], 16384 * 100)
        .unwrap();
    drop(file);
    assert!(matches!(
        check_file(&path).unwrap(),
        Condition::Unrecoverable { .. }
    ));
    let e = receive_file(&p.zfs, &dst, &path).unwrap_err();
    assert!(matches!(e, Error::Unrecoverable { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::BadStream);
    assert_eq!(p.guids(&dst), before, "the target is unchanged");
    assert!(
        p.zfs.resume_token(&dst).unwrap().is_none(),
        "no partial receive"
    );
    // A plain send beside a sidecar left there (by a crash between the two
    // links) is refused: the sidecar would describe another stream.
    let plain = temp("parity-stray");
    remove(&plain);
    std::fs::copy(sidecar_path(&path), sidecar_path(&plain)).unwrap();
    let s1 = p.src("fs").snapshot("s1").unwrap();
    let e = send_to_file(&p.zfs, &s1, &SendFileOptions::new(), &plain).unwrap_err();
    assert!(
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{e:?}"
    );
    assert!(!plain.exists());
    remove(&plain);
    remove(&path);
}
