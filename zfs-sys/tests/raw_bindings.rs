//! The foundation's proof that the raw layer works against real OpenZFS:
//! a file-backed pool, a snapshot through `lzc_snapshot`, `lzc_exists`, and
//! the snapshot listed back through `ZFS_IOC_SNAPSHOT_LIST_NEXT`, all on
//! zfs-sys alone (this is the one test crate allowed `unsafe`, as zfs-sys is).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use zfs_sys::ioctl::{
    zfs_cmd_t, DMU_OST_ZFS, ZFS_IOC_OBJSET_STATS, ZFS_IOC_POOL_CREATE, ZFS_IOC_POOL_DESTROY,
    ZFS_IOC_SNAPSHOT_LIST_NEXT,
};

// ---- raw helpers: pools, nvlists and ioctls on zfs-sys alone ----

/// Initialises libzfs_core once per process.
fn init_libzfs_core() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: libzfs_core_init takes no arguments and is called once.
        let rc = unsafe { zfs_sys::libzfs_core_init() };
        assert_eq!(
            rc,
            0,
            "libzfs_core_init failed: {}",
            io::Error::from_raw_os_error(rc)
        );
    });
}

/// Opens `/dev/zfs` for raw ioctls.
fn open_dev_zfs() -> io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/zfs")?
        .into())
}

/// Issues one `/dev/zfs` ioctl.
fn zfs_ioctl(fd: &OwnedFd, request: u32, zc: &mut zfs_cmd_t) -> io::Result<()> {
    // SAFETY: zc is a valid, exclusively borrowed zfs_cmd_t of the exact size
    // the kernel copies in and out; the fd is open.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            request as libc::c_ulong,
            zc as *mut zfs_cmd_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Copies `name` into a fixed-size, NUL-terminated field.
fn set_name(field: &mut [u8], name: &str) {
    assert!(name.len() < field.len(), "name too long for the field");
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

/// Reads a NUL-terminated field.
fn get_name(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A minimal owned nvlist for the tests (zfs-core has the real wrapper).
struct RawNvList(*mut zfs_sys::nvlist_t);

impl RawNvList {
    fn new() -> Self {
        let mut nvl = ptr::null_mut();
        // SAFETY: nvlist_alloc writes a fresh list into nvl.
        let rc = unsafe { zfs_sys::nvlist_alloc(&mut nvl, zfs_sys::NV_UNIQUE_NAME, 0) };
        assert_eq!(rc, 0, "nvlist_alloc");
        Self(nvl)
    }

    fn as_ptr(&self) -> *mut zfs_sys::nvlist_t {
        self.0
    }

    fn add_string(&mut self, key: &str, value: &str) -> &mut Self {
        let (k, v) = (CString::new(key).unwrap(), CString::new(value).unwrap());
        // SAFETY: valid list and NUL-terminated strings; nvlist copies them.
        assert_eq!(
            unsafe { zfs_sys::nvlist_add_string(self.0, k.as_ptr(), v.as_ptr()) },
            0
        );
        self
    }

    fn add_u64(&mut self, key: &str, value: u64) -> &mut Self {
        let k = CString::new(key).unwrap();
        // SAFETY: valid list and key.
        assert_eq!(
            unsafe { zfs_sys::nvlist_add_uint64(self.0, k.as_ptr(), value) },
            0
        );
        self
    }

    fn add_boolean(&mut self, key: &str) -> &mut Self {
        let k = CString::new(key).unwrap();
        // SAFETY: valid list and key.
        assert_eq!(
            unsafe { zfs_sys::nvlist_add_boolean(self.0, k.as_ptr()) },
            0
        );
        self
    }

    fn add_nvlist_array(&mut self, key: &str, values: &[&RawNvList]) -> &mut Self {
        let k = CString::new(key).unwrap();
        let ptrs: Vec<*const zfs_sys::nvlist_t> = values.iter().map(|v| v.0 as *const _).collect();
        // SAFETY: valid list, key and an array of valid lists, which nvlist copies.
        let rc = unsafe {
            zfs_sys::nvlist_add_nvlist_array(self.0, k.as_ptr(), ptrs.as_ptr(), ptrs.len() as u32)
        };
        assert_eq!(rc, 0);
        self
    }

    /// Packs the list in native encoding.
    fn pack(&self) -> Vec<u8> {
        let mut buf: *mut libc::c_char = ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: nvlist_pack allocates buf with malloc and sets size.
        let rc = unsafe {
            zfs_sys::nvlist_pack(
                self.0,
                &mut buf,
                &mut size,
                zfs_sys::NV_ENCODE_NATIVE as i32,
                0,
            )
        };
        assert_eq!(rc, 0, "nvlist_pack");
        // SAFETY: buf points to size bytes that we now copy and free.
        let out = unsafe { std::slice::from_raw_parts(buf as *const u8, size).to_vec() };
        // SAFETY: buf came from malloc inside nvlist_pack.
        unsafe { libc::free(buf.cast()) };
        out
    }
}

impl Default for RawNvList {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RawNvList {
    fn drop(&mut self) {
        // SAFETY: we own the list.
        unsafe { zfs_sys::nvlist_free(self.0) }
    }
}

/// A unique pool name for this process and test.
fn unique_pool_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pool on a sparse file, created through `ZFS_IOC_POOL_CREATE` and
/// destroyed (with its file) on drop. No subprocess, no cache file.
struct RawFilePool {
    name: String,
    file: PathBuf,
    dev: OwnedFd,
}

impl RawFilePool {
    fn create(name: &str, size: u64) -> io::Result<Self> {
        let dir = std::env::var_os("ZFS_TEST_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let file = dir.join(format!("{name}.img"));
        std::fs::File::create(&file)?.set_len(size)?;
        let mut leaf = RawNvList::new();
        leaf.add_string("type", "file")
            .add_string("path", file.to_str().expect("utf-8 temp path"))
            .add_u64("is_log", 0);
        let mut root = RawNvList::new();
        root.add_string("type", "root")
            .add_nvlist_array("children", &[&leaf]);
        let config = root.pack();
        let mut props = RawNvList::new();
        props.add_string("cachefile", "none");
        let props = props.pack();

        let dev = open_dev_zfs()?;
        let mut zc = zfs_cmd_t::zeroed();
        set_name(&mut zc.zc_name, name);
        zc.zc_nvlist_conf = config.as_ptr() as u64;
        zc.zc_nvlist_conf_size = config.len() as u64;
        zc.zc_nvlist_src = props.as_ptr() as u64;
        zc.zc_nvlist_src_size = props.len() as u64;
        if let Err(e) = zfs_ioctl(&dev, ZFS_IOC_POOL_CREATE, &mut zc) {
            let _ = std::fs::remove_file(&file);
            return Err(io::Error::new(
                e.kind(),
                format!("ZFS_IOC_POOL_CREATE {name}: {e}"),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            file,
            dev,
        })
    }
}

impl Drop for RawFilePool {
    fn drop(&mut self) {
        let mut zc = zfs_cmd_t::zeroed();
        set_name(&mut zc.zc_name, &self.name);
        if let Err(e) = zfs_ioctl(&self.dev, ZFS_IOC_POOL_DESTROY, &mut zc) {
            eprintln!("warning: destroying pool {}: {e}", self.name);
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

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
