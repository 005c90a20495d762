//! A file-backed pool for integration tests (feature `testing`).
//!
//! The pool lives on a sparse file, is created and destroyed through the pool
//! ioctls (no subprocess, no cache file, nothing mounted), and is destroyed
//! with its file on drop. Embedders can write their own ZFS tests with it.
//!
//! ```no_run
//! use zfs_core::testing::FilePool;
//! use zfs_core::Zfs;
//!
//! let zfs = Zfs::open()?;
//! let pool = FilePool::create(&zfs, "scratch", 256 << 20)?;
//! let fs = pool.root().child("data")?;
//! zfs.create_filesystem(&fs, &zfs_core::NvList::new())?;
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use zfs_sys::ioctl::{ZFS_IOC_POOL_CREATE, ZFS_IOC_POOL_DESTROY};

use crate::error::{Error, ErrorKind, Result};
use crate::features::BASELINE_POOL_FEATURES;
use crate::ffi::{self, IoctlCmd};
use crate::name::{DatasetName, PoolName};
use crate::nvlist::NvList;
use crate::Zfs;

/// A pool on a sparse file, destroyed (with the file) on drop.
#[derive(Debug)]
pub struct FilePool {
    name: PoolName,
    file: PathBuf,
    zfs: Zfs,
}

/// The directory for pool files: `$ZFS_TEST_DIR`, else the temp dir.
pub fn pool_dir() -> PathBuf {
    std::env::var_os("ZFS_TEST_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A pool name unique within this process: `<prefix><pid>n<counter>`.
pub fn unique_pool_name(prefix: &str) -> Result<PoolName> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    Ok(PoolName::new(format!(
        "{prefix}{}n{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))?)
}

/// The pool features a test pool enables: every feature the module
/// supports ([`Features::pool_features`](crate::Features::pool_features)),
/// as `zpool create` does by default. Without sysfs (the list cannot be read:
/// [`ErrorKind::NotFound`]) it falls back to
/// [`BASELINE_POOL_FEATURES`], which every supported module knows.
pub fn test_pool_features(zfs: &Zfs) -> Result<Vec<String>> {
    match zfs.features().pool_features() {
        Ok(list) => Ok(list.iter().map(|f| f.name().to_owned()).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(BASELINE_POOL_FEATURES
            .iter()
            .map(|f| (*f).to_owned())
            .collect()),
        Err(e) => Err(e),
    }
}

/// How many `ZFS_IOC_SNAPSHOT_LIST_NEXT` calls this handle has made: tests
/// check with it that a module whose simple-mode listing fills no GUIDs
/// (OpenZFS 2.1) pays the wasted simple-mode call once, not per dataset.
pub fn snapshot_list_ioctls(zfs: &Zfs) -> u64 {
    zfs.features()
        .snapshot_list_ioctls
        .load(std::sync::atomic::Ordering::Relaxed)
}

impl FilePool {
    /// Creates pool `name` on a new sparse file of `size` bytes (at least
    /// 64 MiB) in [`pool_dir`]. Pool properties: `cachefile=none`, and every
    /// feature the module supports enabled ([`test_pool_features`]).
    pub fn create(zfs: &Zfs, name: &str, size: u64) -> Result<FilePool> {
        let name = PoolName::new(name)?;
        let file = pool_dir().join(format!("{name}.img"));
        Self::create_at(zfs, name, &file, size)
    }

    /// Like [`create`](Self::create), with a unique name from `prefix`.
    pub fn create_unique(zfs: &Zfs, prefix: &str, size: u64) -> Result<FilePool> {
        let name = unique_pool_name(prefix)?;
        let file = pool_dir().join(format!("{name}.img"));
        Self::create_at(zfs, name, &file, size)
    }

    fn create_at(zfs: &Zfs, name: PoolName, file: &Path, size: u64) -> Result<FilePool> {
        const OP: &str = "ZFS_IOC_POOL_CREATE";
        let path = file.to_str().ok_or_else(|| {
            Error::invalid(
                OP,
                name.as_str(),
                ErrorKind::InvalidArgument,
                "pool file path is not UTF-8",
            )
        })?;
        let features = test_pool_features(zfs)?;
        std::fs::File::create(file)
            .and_then(|f| f.set_len(size))
            .map_err(|e| Error::io("create pool file", path, e))?;
        let leaf = NvList::new()
            .with("type", "file")
            .with("path", path)
            .with("is_log", 0u64);
        let config = NvList::new()
            .with("type", "root")
            .with("children", vec![leaf])
            .pack()?;
        let mut props = NvList::new().with("cachefile", "none");
        for feature in features {
            // The kernel takes 0 (ZFS_FEATURE_ENABLED) for "enabled".
            props.insert(format!("feature@{feature}"), 0u64);
        }
        let props = props.pack()?;
        let mut zc = IoctlCmd::new(name.as_str());
        zc.set_conf(config);
        zc.set_src(props);
        if let Err(e) = zc.ioctl(zfs.dev(), ZFS_IOC_POOL_CREATE) {
            let _ = std::fs::remove_file(file);
            return Err(Error::from_errno(OP, name.as_str(), e));
        }
        Ok(FilePool {
            name,
            file: file.to_owned(),
            zfs: Zfs::open()?,
        })
    }

    pub fn name(&self) -> &PoolName {
        &self.name
    }

    /// The pool's root filesystem.
    pub fn root(&self) -> DatasetName {
        self.name.root()
    }

    /// The backing file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Destroys the pool now, reporting failure (drop ignores it).
    pub fn destroy(mut self) -> Result<()> {
        let r = self.destroy_inner();
        self.file = PathBuf::new();
        r
    }

    fn destroy_inner(&mut self) -> Result<()> {
        if self.file.as_os_str().is_empty() {
            return Ok(());
        }
        let r = IoctlCmd::new(self.name.as_str())
            .ioctl(self.zfs.dev(), ZFS_IOC_POOL_DESTROY)
            .map_err(|e| Error::from_errno("ZFS_IOC_POOL_DESTROY", self.name.as_str(), e));
        let _ = std::fs::remove_file(&self.file);
        r
    }
}

impl Drop for FilePool {
    fn drop(&mut self) {
        if let Err(e) = self.destroy_inner() {
            eprintln!("zfs_core::testing: {e}");
        }
    }
}

/// Restores the default `SIGPIPE` disposition (the process dies on a write
/// into a pipe without reader), as a C host or a CLI that restored it for
/// `| head` has: for testing that the library never raises it.
pub fn restore_default_sigpipe() -> Result<()> {
    ffi::default_sigpipe().map_err(|e| Error::from_errno("signal", "SIGPIPE", e))
}

// ---------------------------------------------------------------------------
// Fault-injection helpers.
// ---------------------------------------------------------------------------

/// Installs a handler that does nothing for `signal` (process-wide, without
/// `SA_RESTART`), so that the signal interrupts system calls instead of
/// killing the process. Fault tests use it with `SIGUSR1`.
pub fn install_noop_handler(signal: i32) -> Result<()> {
    ffi::install_noop_handler(signal)
        .map_err(|e| Error::from_errno("sigaction", signal.to_string(), e))
}

/// Sends `signal` to every thread of this process (`tgkill` over
/// `/proc/self/task`) and returns how many threads it reached. Threads that
/// exit meanwhile are skipped. Without a handler (see
/// [`install_noop_handler`]) the signal's default action applies.
pub fn signal_every_thread(signal: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&tid| ffi::tgkill(tid, signal).is_ok())
        .count()
}

/// Whether `target` has the hidden `<target>/%recv` child that an
/// interrupted resumable incremental receive leaves (listing skips it).
pub fn partial_receive_exists(_zfs: &Zfs, target: &DatasetName) -> bool {
    std::ffi::CString::new(format!("{target}/%recv")).is_ok_and(|c| ffi::lzc_exists(&c))
}

/// Where kernel time went since the last call, per call kind (each
/// `lzc_*` function, and each raw ioctl by name): `(name, calls, total
/// wall time)`, sorted by name. Clears the profile. For benchmarks.
pub fn call_profile() -> Vec<(&'static str, u64, std::time::Duration)> {
    crate::ffi::profile::take()
}

/// The ZFS handle, or None (with the reason on stderr) when this machine
/// cannot run ZFS tests: no module, no `/dev/zfs`, or not root. For an
/// embedder's own tests, which should skip, not fail, where ZFS is absent:
///
/// ```no_run
/// #[test]
/// fn backs_up_my_fixture() {
///     let Some(zfs) = zfs_core::testing::require_zfs() else {
///         return; // skipped: the reason is on stderr
///     };
///     // ... FilePool::create(&zfs, "scratch", 256 << 20) ...
/// #   let _ = zfs;
/// }
/// ```
pub fn require_zfs() -> Option<Zfs> {
    let reason = match Zfs::open() {
        Ok(zfs) => {
            if crate::ffi::effective_uid() == 0 {
                return Some(zfs);
            }
            "not root (pools on files need CAP_SYS_ADMIN)".to_owned()
        }
        Err(e) => e.to_string(),
    };
    eprintln!("skipped: ZFS is not usable here: {reason}");
    None
}

/// A dataset (or snapshot, read-only) mounted at a directory of its own
/// under [`pool_dir`], through mount(2) (no `zfs` CLI), unmounted (and the
/// directory removed) on drop.
#[derive(Debug)]
pub struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    /// Mounts `name` (a filesystem, or a snapshot: read-only) at a fresh
    /// directory.
    pub fn new(name: &impl crate::name::AnyName) -> Result<Mounted> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = pool_dir().join(format!(
            "mnt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("mkdir", dir.display().to_string(), e))?;
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| {
            Error::invalid(
                "mount",
                dir.display().to_string(),
                ErrorKind::InvalidArgument,
                "a NUL in the path",
            )
        })?;
        let readonly = name.as_str().contains('@');
        if let Err(errno) = ffi::mount_zfs(&name.to_c_name(), &c_dir, readonly) {
            let _ = std::fs::remove_dir(&dir);
            return Err(Error::from_errno("mount", name.as_str(), errno));
        }
        Ok(Mounted { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Ok(c_dir) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) {
            let _ = ffi::unmount(&c_dir);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Writes `bytes` of pseudo-random data (from `seed`) into the filesystem
/// `dataset`, in files of at most 1 MiB named `fill-<seed>-<n>`, mounting
/// it for the while: fixture data for a test.
pub fn fill(dataset: &DatasetName, bytes: u64, seed: u64) -> Result<()> {
    let mounted = Mounted::new(dataset)?;
    let mut left = bytes;
    let mut n: u64 = 0;
    while left > 0 {
        let len = left.min(1 << 20) as usize;
        let data = pseudo_random_bytes(seed.wrapping_add(n.wrapping_mul(0x9e37_79b9)), len);
        let path = mounted.path().join(format!("fill-{seed}-{n}"));
        std::fs::write(&path, data)
            .map_err(|e| Error::io("write", path.display().to_string(), e))?;
        left -= len as u64;
        n += 1;
    }
    Ok(())
}

/// `len` pseudo-random bytes from `seed` (xorshift): the same seed gives
/// the same bytes, for fixture data a test can compare.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
