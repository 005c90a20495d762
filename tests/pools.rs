//! Removable drives (issue 12): finding pools that are not imported from
//! their devices' labels, importing them without mounting anything,
//! refusing a pool another system left imported, damaged labels, a mirror
//! with a side missing, health and scrubs, and export. Pools live on files
//! in the test directory; the `zpool` CLI only sets up and checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zfs_core::pool::{read_labels, ImportOptions, LabelError, PoolState, SearchPaths, VdevState};
use zfs_core::testing::unique_pool_name;
use zfs_core::{ErrorKind, PoolName, Zfs};
use zfs_replicate_tests::{mount, unmount, zfs_cli, zpool_cli};

const FILE_SIZE: u64 = 128 << 20;

fn zfs() -> Zfs {
    Zfs::open().expect("open /dev/zfs")
}

/// A directory of pool files ("a drive's /dev/disk/by-id"), and the pool
/// made on them with the CLI; destroyed (if imported) and removed on drop.
struct Drive {
    name: PoolName,
    dir: PathBuf,
}

impl Drive {
    /// `zpool create` on `files` new sparse files (a mirror when 2).
    fn create(prefix: &str, files: usize) -> Drive {
        let name = unique_pool_name(prefix).unwrap();
        let dir = zfs_core::testing::pool_dir().join(format!("drive-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec![
            "create".to_owned(),
            "-o".to_owned(),
            "cachefile=none".to_owned(),
            name.to_string(),
        ];
        if files > 1 {
            args.push("mirror".to_owned());
        }
        for i in 0..files {
            let f = dir.join(format!("disk{i}"));
            std::fs::File::create(&f)
                .and_then(|h| h.set_len(FILE_SIZE))
                .unwrap();
            args.push(f.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        zpool_cli(&args);
        Drive { name, dir }
    }

    fn file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("disk{i}"))
    }

    fn search(&self) -> SearchPaths {
        SearchPaths::new([&self.dir])
    }

    fn guid_cli(&self) -> u64 {
        zpool_cli(&["get", "-Hp", "-o", "value", "guid", self.name.as_str()])
            .trim()
            .parse()
            .unwrap()
    }

    fn imported_cli(&self) -> bool {
        zpool_cli(&["list", "-H", "-o", "name"])
            .lines()
            .any(|l| l == self.name.as_str())
    }
}

impl Drop for Drive {
    fn drop(&mut self) {
        if self.imported_cli() {
            let _ = std::process::Command::new("zpool")
                .args(["destroy", "-f", self.name.as_str()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Zeroes label `l` (0..4) of a pool file.
fn zero_label(file: &Path, l: u64) {
    use std::os::unix::fs::FileExt;
    const LABEL: u64 = 256 << 10;
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let size = f.metadata().unwrap().len() / LABEL * LABEL;
    let at = if l < 2 {
        l * LABEL
    } else {
        size - (4 - l) * LABEL
    };
    f.write_all_at(&vec![0u8; LABEL as usize], at).unwrap();
    f.sync_all().unwrap();
}

/// The ZFS mounts of `pool`, from /proc/self/mountinfo.
fn zfs_mounts(pool: &PoolName) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" - ").map(|(_, t)| t.to_owned()))
        .filter(|t| t.starts_with("zfs "))
        .filter_map(|t| t.split(' ').nth(1).map(str::to_owned))
        .filter(|src| src == pool.as_str() || src.starts_with(&format!("{pool}/")))
        .collect()
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn an_exported_pool_is_found_imported_without_mounts_and_exported() {
    let zfs = zfs();
    let drive = Drive::create("drv", 1);
    zfs_cli(&["create", &format!("{}/data", drive.name)]);
    let guid = drive.guid_cli();
    zpool_cli(&["export", drive.name.as_str()]);
    assert!(!drive.imported_cli());

    // Real labels, as the kernel wrote them: all four valid (checksums
    // included), naming the pool.
    let labels = read_labels(&drive.file(0)).unwrap();
    assert!(labels.labels().iter().all(|l| l.is_ok()), "{labels}");
    let best = labels.best().unwrap();
    assert_eq!(best.pool_guid(), Some(guid));
    assert_eq!(best.pool_name(), Some(drive.name.as_str()));
    assert_eq!(best.state(), PoolState::Exported);

    // A stray file and an empty one beside the pool's: skipped, no panic.
    std::fs::write(drive.dir.join("notes.txt"), b"not a pool").unwrap();
    std::fs::File::create(drive.dir.join("blank"))
        .and_then(|f| f.set_len(4 << 20))
        .unwrap();

    let found = zfs.find_importable_pools(&drive.search()).unwrap();
    assert_eq!(found.devices_read(), 3);
    assert_eq!(found.skipped().len(), 2, "{:?}", found.skipped());
    let [pool] = found.pools() else {
        panic!("one pool expected: {:?}", found.pools())
    };
    assert_eq!(pool.name(), &drive.name);
    assert_eq!(pool.guid(), guid);
    assert_eq!(pool.state(), VdevState::Online);
    assert_eq!(pool.pool_state(), PoolState::Exported);
    assert!(!pool.in_use_elsewhere());
    assert_eq!(pool.devices(), [drive.file(0)]);
    let leaves = pool.root().leaves();
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].path(), Some(drive.file(0).as_path()));
    assert_eq!(pool.to_string(), format!("{} {guid} ONLINE", drive.name));

    let imported = zfs.import(pool, &ImportOptions::new()).unwrap();
    assert_eq!(imported.guid(), guid);
    assert!(drive.imported_cli());
    assert_eq!(drive.guid_cli(), guid);
    assert!(zfs_mounts(&drive.name).is_empty(), "nothing is mounted");
    let mounted = zfs_cli(&[
        "get",
        "-H",
        "-r",
        "-o",
        "value",
        "mounted",
        drive.name.as_str(),
    ]);
    assert!(mounted.lines().all(|l| l == "no"), "{mounted}");
    assert_eq!(
        zpool_cli(&["get", "-H", "-o", "value", "cachefile", drive.name.as_str()]).trim(),
        "none"
    );
    // An imported pool is not importable any more; importing it twice fails.
    let again = zfs.find_importable_pools(&drive.search()).unwrap();
    assert!(again.pools().is_empty());
    let e = zfs.import(pool, &ImportOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");

    let status = zfs.pool_status(&drive.name).unwrap();
    assert_eq!(status.state(), VdevState::Online);
    assert_eq!(status.guid(), guid);

    // A mounted filesystem keeps the pool: a typed refusal naming it.
    let data = format!("{}/data", drive.name);
    mount(&data);
    let e = zfs.export(&drive.name, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains(&data), "{e}");
    assert!(drive.imported_cli());
    unmount(&data);

    zfs.export(&drive.name, false).unwrap();
    assert!(!drive.imported_cli());
    let found = zfs.find_importable_pools(&drive.search()).unwrap();
    assert_eq!(found.pools()[0].pool_state(), PoolState::Exported);
    let e = zfs.export(&drive.name, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

/// Stops scans from progressing while alive (`zfs_scan_suspend_progress`).
struct ScanHold;

const SUSPEND_PROGRESS: &str = "/sys/module/zfs/parameters/zfs_scan_suspend_progress";

impl ScanHold {
    fn new() -> ScanHold {
        std::fs::write(SUSPEND_PROGRESS, "1").unwrap();
        ScanHold
    }
}

impl Drop for ScanHold {
    fn drop(&mut self) {
        let _ = std::fs::write(SUSPEND_PROGRESS, "0");
    }
}

/// Sets the SPL's hostid (what the kernel and `zpool` use) for the life of
/// the guard.
struct HostId(String);

const HOSTID: &str = "/proc/sys/kernel/spl/hostid";

impl HostId {
    fn set(id: u32) -> HostId {
        let old = std::fs::read_to_string(HOSTID).unwrap();
        std::fs::write(HOSTID, format!("{id:x}")).unwrap();
        HostId(old.trim().to_owned())
    }
}

impl Drop for HostId {
    fn drop(&mut self) {
        let _ = std::fs::write(HOSTID, &self.0);
    }
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_pool_left_imported_by_another_host_needs_force() {
    let zfs = zfs();
    let _restore = HostId::set(0x1111_aaaa);
    let drive = Drive::create("elsewhere", 1);
    let guid = drive.guid_cli();
    // "The other system" goes away without exporting: its labels keep
    // saying active, with its hostid (`-F` exports without writing them).
    zpool_cli(&["export", "-F", drive.name.as_str()]);
    std::fs::write(HOSTID, "2222bbbb").unwrap();
    assert_eq!(zfs_core::pool::system_hostid(), 0x2222_bbbb);

    let pool = zfs
        .find_importable_pool(&drive.name, &drive.search())
        .unwrap();
    assert_eq!(pool.guid(), guid);
    assert_eq!(pool.pool_state(), PoolState::Active);
    assert!(pool.in_use_elsewhere());
    assert_eq!(pool.last_host().unwrap().hostid, 0x1111_aaaa);

    let e = zfs.import(&pool, &ImportOptions::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InUseElsewhere, "{e}");
    assert!(e.to_string().contains("0x1111aaaa"), "{e}");
    assert!(!drive.imported_cli());

    zfs.import(&pool, &ImportOptions::new().force(true))
        .unwrap();
    assert!(drive.imported_cli());
    assert_eq!(drive.guid_cli(), guid);
    zfs.export(&drive.name, false).unwrap();
    assert!(!drive.imported_cli());

    // Exported by this host: anyone imports it without force.
    std::fs::write(HOSTID, "3333cccc").unwrap();
    let pool = zfs
        .find_importable_pool(&drive.name, &drive.search())
        .unwrap();
    assert!(!pool.in_use_elsewhere());
    zfs.import(&pool, &ImportOptions::new()).unwrap();
    zfs.export(&drive.name, false).unwrap();
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn damaged_labels_one_lost_still_imports_all_lost_is_no_pool() {
    let zfs = zfs();
    let drive = Drive::create("labels", 1);
    let guid = drive.guid_cli();
    zpool_cli(&["export", drive.name.as_str()]);

    zero_label(&drive.file(0), 0);
    let labels = read_labels(&drive.file(0)).unwrap();
    assert!(
        matches!(labels.labels()[0], Err(LabelError::Blank { .. })),
        "{labels}"
    );
    assert!(labels.labels()[1..].iter().all(|l| l.is_ok()), "{labels}");
    let pool = zfs
        .find_importable_pool(&drive.name, &drive.search())
        .unwrap();
    assert_eq!(pool.guid(), guid);
    zfs.import(&pool, &ImportOptions::new().readonly(true))
        .unwrap();
    assert_eq!(
        zpool_cli(&["get", "-H", "-o", "value", "readonly", drive.name.as_str()]).trim(),
        "on"
    );
    zfs.export(&drive.name, false).unwrap();

    for l in 0..4 {
        zero_label(&drive.file(0), l);
    }
    let found = zfs.find_importable_pools(&drive.search()).unwrap();
    assert!(found.pools().is_empty());
    assert_eq!(found.skipped().len(), 1);
    let e = zfs
        .find_importable_pool(&drive.name, &drive.search())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no pool found"), "{e}");
    assert!(e.to_string().contains("disk0"), "{e}");
    // A search path that is not there is an error of its own.
    let e = zfs
        .find_importable_pools(&SearchPaths::new([drive.dir.join("absent")]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_mirror_missing_a_side_imports_degraded_and_scrubs() {
    let zfs = zfs();
    let drive = Drive::create("twoway", 2);
    let data = format!("{}/data", drive.name);
    zfs_cli(&["create", &data]);
    let mnt = mount(&data);
    std::fs::write(mnt.join("f"), vec![7u8; 4 << 20]).unwrap();
    unmount(&data);
    let guid = drive.guid_cli();
    zpool_cli(&["export", drive.name.as_str()]);

    // One side of the mirror unplugged.
    let away = drive.dir.join("away");
    std::fs::create_dir(&away).unwrap();
    std::fs::rename(drive.file(1), away.join("disk1")).unwrap();

    let pool = zfs
        .find_importable_pool(&drive.name, &drive.search())
        .unwrap();
    assert_eq!(pool.guid(), guid);
    assert_eq!(pool.state(), VdevState::Degraded);
    let mirror = &pool.root().children()[0];
    assert_eq!(mirror.kind(), "mirror");
    assert_eq!(mirror.state(), VdevState::Degraded);
    let states: Vec<VdevState> = mirror.children().iter().map(|v| v.state()).collect();
    assert_eq!(states, [VdevState::Online, VdevState::Unavailable]);

    zfs.import(&pool, &ImportOptions::new()).unwrap();
    let status = zfs.pool_status(&drive.name).unwrap();
    assert_eq!(status.state(), VdevState::Degraded);
    assert_eq!(
        zpool_cli(&["list", "-H", "-o", "health", drive.name.as_str()]).trim(),
        "DEGRADED"
    );
    assert_eq!(status.data_errors(), 0);

    // A scrub, waited for with progress: it reads the data, finds nothing.
    zfs.scrub(&drive.name).unwrap();
    let mut calls = 0;
    let scan = zfs
        .wait_scrub_with_progress(&drive.name, Duration::from_millis(50), |s| {
            calls += 1;
            assert!((0.0..=1.0).contains(&s.progress()));
        })
        .unwrap();
    assert_eq!(scan.kind(), zfs_core::pool::ScanKind::Scrub);
    assert_eq!(scan.state(), zfs_core::pool::ScanState::Finished);
    assert_eq!(scan.errors(), 0);
    // It read the pool (pss_issued: 0 when read from the wrong index).
    assert!(scan.issued() > 0, "{scan:?}");
    assert_eq!(scan.progress(), 1.0);
    eprintln!("scrub progress callbacks: {calls}");
    // lzc_wait: nothing runs now, and the last scrub is reported.
    let last = zfs.wait_scrub(&drive.name).unwrap().unwrap();
    assert_eq!(last.state(), zfs_core::pool::ScanState::Finished);
    assert!(zpool_cli(&["status", drive.name.as_str()]).contains("scrub repaired 0B"));

    // A scrub held still (the module's zfs_scan_suspend_progress): progress
    // is reported while it runs; paused, it is returned as paused; a scrub
    // request resumes it (ECANCELED from the kernel, a success).
    let hold = ScanHold::new();
    zfs.scrub(&drive.name).unwrap();
    let mut calls = 0;
    let scan = zfs
        .wait_scrub_with_progress(&drive.name, Duration::from_millis(20), |s| {
            calls += 1;
            assert!(s.is_running() && !s.is_paused(), "{s:?}");
            if calls == 3 {
                zpool_cli(&["scrub", "-p", drive.name.as_str()]);
            }
        })
        .unwrap();
    assert_eq!(calls, 3);
    assert!(scan.is_running() && scan.is_paused(), "{scan:?}");
    zfs.scrub(&drive.name).unwrap();
    let resumed = zfs.pool_status(&drive.name).unwrap();
    assert!(!resumed.scan().unwrap().is_paused(), "{resumed:?}");
    drop(hold);
    let last = zfs.wait_scrub(&drive.name).unwrap().unwrap();
    assert_eq!(last.state(), zfs_core::pool::ScanState::Finished);
    zfs.export(&drive.name, false).unwrap();

    // The side comes back: found from both directories, ONLINE again.
    let both = SearchPaths::new([&drive.dir, &away]);
    let pool = zfs.find_importable_pool(&drive.name, &both).unwrap();
    assert_eq!(pool.state(), VdevState::Online);
    assert_eq!(pool.devices().len(), 2);
}

/// Exit code, stdout and stderr of a `backup` run (echoed for --nocapture).
fn run(args: &[&str]) -> (i32, String, String) {
    run_in(&std::env::current_dir().unwrap(), args)
}

/// [`run`] in directory `cwd`.
fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new("backup")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the backup example is on PATH in the guest");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    eprintln!(
        "$ backup {}\n{out}{err}exit {:?}",
        args.join(" "),
        o.status.code()
    );
    (o.status.code().unwrap_or(-1), out, err)
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn backup_drives_and_sync_import_export_story() {
    let zfs = zfs();
    let tank = zfs_core::testing::FilePool::create_unique(&zfs, "storytank", 128 << 20).unwrap();
    let home = tank.root().child("home").unwrap();
    zfs.create_filesystem(&home, &zfs_core::NvList::new())
        .unwrap();
    let drive = Drive::create("storypipe", 2);
    let guid = drive.guid_cli();
    zpool_cli(&["export", drive.name.as_str()]);
    let dir = drive.dir.display().to_string();
    let target = format!("{}/home", drive.name);

    // The drive is connected: `drives` sees it, by an absolute or a
    // relative path (the kernel opens vdevs by absolute path only).
    let (code, out, _) = run(&["drives", "-d", &dir]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("{} {guid} ONLINE\n", drive.name));
    let parent = drive.dir.parent().unwrap();
    let relative = drive.dir.file_name().unwrap().to_str().unwrap();
    let (code, out, _) = run_in(parent, &["drives", "-d", relative]);
    assert_eq!((code, out), (0, format!("{} {guid} ONLINE\n", drive.name)));
    let empty = drive.dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, out, err) = run(&["drives", "-d", &empty.display().to_string()]);
    assert_eq!((code, out.as_str()), (5, ""));
    assert!(err.starts_with("backup: no importable pool found"), "{err}");

    // Connected, imported (found by a relative path), synced, exported.
    let (code, out, err) = run_in(
        parent,
        &[
            "sync",
            home.as_str(),
            &target,
            "--import",
            relative,
            "--export-after",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!("drive: found {} ({guid})", drive.name)),
        "{out}"
    );
    assert!(lines[0].ends_with(": ONLINE"), "{out}");
    assert_eq!(
        lines[1],
        format!("drive: imported {}, nothing mounted", drive.name)
    );
    assert_eq!(
        *lines.last().unwrap(),
        format!("drive: exported {}: safe to disconnect", drive.name)
    );
    assert!(!drive.imported_cli());

    // One side of the mirror is gone: reported before the sync writes.
    let away = drive.dir.join("away");
    std::fs::create_dir(&away).unwrap();
    std::fs::rename(drive.file(1), away.join("disk1")).unwrap();
    let (code, out, err) = run(&[
        "sync",
        home.as_str(),
        &target,
        "--import",
        &dir,
        "--export-after",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": DEGRADED\n"), "{out}");
    assert!(
        err.starts_with(&format!(
            "backup: warning: pool {} is DEGRADED: ",
            drive.name
        )),
        "{err}"
    );
    assert!(err.contains("disk1 UNAVAIL"), "{err}");
    assert!(out.contains("incremental"), "{out}");
    assert!(!drive.imported_cli());

    // A sync that fails (its source is gone) still exports the drive.
    let (code, out, err) = run(&[
        "sync",
        &format!("{}/absent", tank.root()),
        &target,
        "--import",
        &dir,
        "--export-after",
    ]);
    assert_eq!(code, 5, "{err}");
    assert!(out.contains("drive: imported"), "{out}");
    assert!(out.ends_with("safe to disconnect\n"), "{out}");
    assert!(!drive.imported_cli());

    // Imported already: --import does nothing; the target has both syncs.
    let pool = zfs
        .find_importable_pool(&drive.name, &drive.search())
        .unwrap();
    zfs.import(&pool, &ImportOptions::new()).unwrap();
    let (code, out, err) = run(&["sync", home.as_str(), &target, "--import", &dir]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("drive: {} is imported already\n", drive.name)),
        "{out}"
    );
    assert!(drive.imported_cli());
    let snaps = zfs_cli(&["list", "-H", "-t", "snapshot", "-o", "guid", "-r", &target]);
    let source = zfs_cli(&[
        "list",
        "-H",
        "-t",
        "snapshot",
        "-o",
        "guid",
        "-r",
        home.as_str(),
    ]);
    assert_eq!(snaps.lines().count(), 3, "{snaps}");
    assert!(
        source.lines().all(|g| snaps.contains(g)),
        "{source} vs {snaps}"
    );
    zfs.export(&drive.name, false).unwrap();
}
