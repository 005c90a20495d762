//! The foundation's proof that the raw layer works against real OpenZFS:
//! a file-backed pool, a snapshot through `lzc_snapshot`, `lzc_exists`, and
//! the snapshot listed back through `ZFS_IOC_SNAPSHOT_LIST_NEXT`.

use std::ffi::CString;
use std::ptr;

use zfs_replicate_tests::{
    get_name, init_libzfs_core, open_dev_zfs, set_name, unique_pool_name, zfs_ioctl, RawFilePool,
    RawNvList,
};
use zfs_sys::ioctl::{zfs_cmd_t, DMU_OST_ZFS, ZFS_IOC_OBJSET_STATS, ZFS_IOC_SNAPSHOT_LIST_NEXT};

const POOL_SIZE: u64 = 128 << 20;

fn exists(name: &str) -> bool {
    let c = CString::new(name).unwrap();
    // SAFETY: NUL-terminated name; libzfs_core is initialised.
    unsafe { zfs_sys::lzc_exists(c.as_ptr()) != 0 }
}

fn snapshot(names: &[&str]) -> i32 {
    let mut snaps = RawNvList::new();
    for n in names {
        snaps.add_boolean(n);
    }
    let mut errlist = ptr::null_mut();
    // SAFETY: valid snapshot list, no props; errlist receives an owned list or NULL.
    let rc = unsafe { zfs_sys::lzc_snapshot(snaps.as_ptr(), ptr::null_mut(), &mut errlist) };
    if !errlist.is_null() {
        // SAFETY: we own the returned errlist.
        unsafe { zfs_sys::nvlist_free(errlist) };
    }
    rc
}

/// Lists the snapshots of `fs` through the raw ioctl: (name, guid, createtxg).
fn list_snapshots(fs: &str) -> Vec<(String, u64, u64)> {
    let dev = open_dev_zfs().expect("open /dev/zfs");
    let mut out = Vec::new();
    let mut cookie = 0;
    loop {
        let mut zc = zfs_cmd_t::zeroed();
        set_name(&mut zc.zc_name, fs);
        zc.zc_cookie = cookie;
        zc.zc_simple = 0;
        zc.zc_nvlist_dst = 0;
        match zfs_ioctl(&dev, ZFS_IOC_SNAPSHOT_LIST_NEXT, &mut zc) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => break,
            Err(e) => panic!("ZFS_IOC_SNAPSHOT_LIST_NEXT {fs}: {e}"),
        }
        cookie = zc.zc_cookie;
        assert_eq!(zc.zc_objset_stats.dds_is_snapshot, 1);
        out.push((
            get_name(&zc.zc_name),
            zc.zc_objset_stats.dds_guid,
            zc.zc_objset_stats.dds_creation_txg,
        ));
    }
    out.sort_by_key(|s| s.2);
    out
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshot_exists_and_lists_through_raw_ioctls() {
    init_libzfs_core();
    let pool = RawFilePool::create(&unique_pool_name("rawb"), POOL_SIZE).expect("create pool");
    let fs = pool.name.clone();
    assert!(exists(&fs), "root filesystem of a new pool exists");
    let first = format!("{fs}@first");
    let second = format!("{fs}@second");
    assert!(!exists(&first));

    assert_eq!(snapshot(&[&first]), 0, "lzc_snapshot {first}");
    assert_eq!(snapshot(&[&second]), 0, "lzc_snapshot {second}");
    assert!(exists(&first) && exists(&second));

    let snaps = list_snapshots(&fs);
    let names: Vec<&str> = snaps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, [first.as_str(), second.as_str()]);
    assert!(
        snaps[0].1 != 0 && snaps[1].1 != 0 && snaps[0].1 != snaps[1].1,
        "distinct guids"
    );
    assert!(snaps[0].2 < snaps[1].2, "createtxg increases");

    // The fast stats of the filesystem itself, through ZFS_IOC_OBJSET_STATS.
    let dev = open_dev_zfs().unwrap();
    let mut zc = zfs_cmd_t::zeroed();
    set_name(&mut zc.zc_name, &fs);
    zfs_ioctl(&dev, ZFS_IOC_OBJSET_STATS, &mut zc).expect("objset stats");
    assert_eq!(zc.zc_objset_stats.dds_type, DMU_OST_ZFS);
    assert_eq!(zc.zc_objset_stats.dds_is_snapshot, 0);
    assert_ne!(zc.zc_objset_stats.dds_guid, 0);
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshot_of_missing_filesystem_fails_with_enoent() {
    init_libzfs_core();
    let pool = RawFilePool::create(&unique_pool_name("rawb"), POOL_SIZE).expect("create pool");
    let missing = format!("{}/absent@snap", pool.name);
    assert_eq!(snapshot(&[&missing]), libc::ENOENT);
    assert!(!exists(&missing));
}
