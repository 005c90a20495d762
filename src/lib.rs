//! Shared helpers for the integration tests in `tests/`, written directly on
//! `zfs-sys` so that they exercise the raw bindings and ioctl layouts.
//!
//! Every test that needs ZFS is marked
//! `#[ignore = "needs ZFS: run cargo xtask test"]`; `cargo xtask test` runs
//! them inside a QEMU guest with real OpenZFS.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use zfs_sys::ioctl::{zfs_cmd_t, ZFS_IOC_POOL_CREATE, ZFS_IOC_POOL_DESTROY};

/// Initialises libzfs_core once per process.
pub fn init_libzfs_core() {
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
pub fn open_dev_zfs() -> io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/zfs")?
        .into())
}

/// Issues one `/dev/zfs` ioctl.
pub fn zfs_ioctl(fd: &OwnedFd, request: u32, zc: &mut zfs_cmd_t) -> io::Result<()> {
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
pub fn set_name(field: &mut [u8], name: &str) {
    assert!(name.len() < field.len(), "name too long for the field");
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

/// Reads a NUL-terminated field.
pub fn get_name(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A minimal owned nvlist for the tests (zfs-core has the real wrapper).
pub struct RawNvList(*mut zfs_sys::nvlist_t);

impl RawNvList {
    pub fn new() -> Self {
        let mut nvl = ptr::null_mut();
        // SAFETY: nvlist_alloc writes a fresh list into nvl.
        let rc = unsafe { zfs_sys::nvlist_alloc(&mut nvl, zfs_sys::NV_UNIQUE_NAME, 0) };
        assert_eq!(rc, 0, "nvlist_alloc");
        Self(nvl)
    }

    pub fn as_ptr(&self) -> *mut zfs_sys::nvlist_t {
        self.0
    }

    pub fn add_string(&mut self, key: &str, value: &str) -> &mut Self {
        let (k, v) = (CString::new(key).unwrap(), CString::new(value).unwrap());
        // SAFETY: valid list and NUL-terminated strings; nvlist copies them.
        assert_eq!(
            unsafe { zfs_sys::nvlist_add_string(self.0, k.as_ptr(), v.as_ptr()) },
            0
        );
        self
    }

    pub fn add_u64(&mut self, key: &str, value: u64) -> &mut Self {
        let k = CString::new(key).unwrap();
        // SAFETY: valid list and key.
        assert_eq!(
            unsafe { zfs_sys::nvlist_add_uint64(self.0, k.as_ptr(), value) },
            0
        );
        self
    }

    pub fn add_boolean(&mut self, key: &str) -> &mut Self {
        let k = CString::new(key).unwrap();
        // SAFETY: valid list and key.
        assert_eq!(
            unsafe { zfs_sys::nvlist_add_boolean(self.0, k.as_ptr()) },
            0
        );
        self
    }

    pub fn add_nvlist_array(&mut self, key: &str, values: &[&RawNvList]) -> &mut Self {
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
    pub fn pack(&self) -> Vec<u8> {
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
pub fn unique_pool_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pool on a sparse file, created through `ZFS_IOC_POOL_CREATE` and
/// destroyed (with its file) on drop. No subprocess, no cache file.
pub struct RawFilePool {
    pub name: String,
    pub file: PathBuf,
    dev: OwnedFd,
}

impl RawFilePool {
    pub fn create(name: &str, size: u64) -> io::Result<Self> {
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

/// Runs the `zfs` CLI (fixtures and comparisons only; the library itself
/// never spawns it) and returns its stdout.
pub fn zfs_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("zfs")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running zfs {args:?}: {e}"));
    assert!(
        out.status.success(),
        "zfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Mounts `fs` at a fresh directory under the test dir and returns it.
pub fn mount(fs: &str) -> PathBuf {
    let dir = std::env::var_os("ZFS_TEST_DIR")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(format!("mnt-{}", fs.replace(['/', ' ', '@'], "_")));
    std::fs::create_dir_all(&dir).expect("mountpoint");
    zfs_cli(&["set", &format!("mountpoint={}", dir.display()), fs]);
    if !zfs_cli(&["get", "-H", "-o", "value", "mounted", fs]).starts_with("yes") {
        zfs_cli(&["mount", fs]);
    }
    dir
}

/// Unmounts `fs`.
pub fn unmount(fs: &str) {
    zfs_cli(&["unmount", fs]);
}

/// Writes `len` pseudo-random bytes (seeded) to `path`.
pub fn write_file(path: &std::path::Path, seed: u64, len: usize) {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, data).expect("write test file");
}
