//! The one module of zfs-core that uses `unsafe`: thin wrappers over
//! `zfs-sys` (libzfs_core, libnvpair, `/dev/zfs` ioctls) and a few libc calls.
//!
//! Every function here takes and returns safe Rust types; callers elsewhere in
//! the crate never touch a raw pointer. Each `unsafe` block states why it is
//! sound.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::{Mutex, PoisonError};

use zfs_sys::data_type_t as dt;
use zfs_sys::ioctl::{dmu_objset_stats_t, zfs_cmd_t};

use crate::error::Errno;
use crate::nvlist::{NvList, NvValue};

/// Initialises libzfs_core once per process and never finalises it, so no
/// thread can race a `libzfs_core_fini` (the library refcounts one global fd).
///
/// Only success is remembered: after a failure (no `/dev/zfs` yet, say, in a
/// daemon started before the module loaded) the next call tries again.
/// libzfs_core counts a reference only when its open succeeded, so a failed
/// attempt leaves nothing behind.
pub(crate) fn init_libzfs_core() -> Result<(), Errno> {
    static DONE: Mutex<bool> = Mutex::new(false);
    // SAFETY: libzfs_core_init takes no arguments; init_once calls it under
    // a lock, and only until it has succeeded once.
    init_once(&DONE, || unsafe { zfs_sys::libzfs_core_init() })
}

/// Runs `init` until it returns 0 once; later calls return Ok at once.
fn init_once(done: &Mutex<bool>, init: impl FnOnce() -> libc::c_int) -> Result<(), Errno> {
    let mut done = done.lock().unwrap_or_else(PoisonError::into_inner);
    if *done {
        return Ok(());
    }
    rc(init())?;
    *done = true;
    Ok(())
}

#[cfg(test)]
mod init_tests {
    use super::*;

    #[test]
    fn a_failed_init_is_retried_and_success_is_kept() {
        let done = Mutex::new(false);
        let mut calls = 0;
        let mut attempt = |rc: libc::c_int| {
            init_once(&done, || {
                calls += 1;
                rc
            })
        };
        assert_eq!(attempt(libc::ENOENT), Err(Errno(libc::ENOENT)));
        assert_eq!(attempt(libc::ENOENT), Err(Errno(libc::ENOENT)));
        assert_eq!(attempt(0), Ok(()));
        // Once it succeeded, it is not called again.
        assert_eq!(attempt(libc::EIO), Ok(()));
        assert_eq!(calls, 3);
    }
}

fn last_errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// How often a read-only call that a stop signal interrupted is retried.
/// `SIGSTOP`, which no thread can block, makes some kernel loops (snapshot
/// listing, send-space estimates) return EINTR before they change anything.
const EINTR_RETRIES: usize = 64;

/// Runs a read-only call again while it fails with EINTR (bounded).
fn retry_eintr<T>(mut call: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    let mut tries = 0;
    loop {
        match call() {
            Err(e) if e == Errno(libc::EINTR) && tries < EINTR_RETRIES => tries += 1,
            other => return other,
        }
    }
}

fn rc(rc: libc::c_int) -> Result<(), Errno> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno(rc))
    }
}

// ---------------------------------------------------------------------------
// nvlist conversion: Rust `NvList` <-> C `nvlist_t`.
// ---------------------------------------------------------------------------

/// An owned C nvlist, freed on drop.
pub(crate) struct CNvList(NonNull<zfs_sys::nvlist_t>);

impl Drop for CNvList {
    fn drop(&mut self) {
        // SAFETY: we own the list; nothing else frees it.
        unsafe { zfs_sys::nvlist_free(self.0.as_ptr()) }
    }
}

impl CNvList {
    fn alloc() -> Result<Self, Errno> {
        let mut nvl = ptr::null_mut();
        // SAFETY: nvlist_alloc writes a fresh list into `nvl` on success.
        rc(unsafe { zfs_sys::nvlist_alloc(&mut nvl, zfs_sys::NV_UNIQUE_NAME, 0) })?;
        NonNull::new(nvl).map(Self).ok_or(Errno(libc::ENOMEM))
    }

    /// Takes ownership of a list returned by libzfs_core (NULL gives None).
    fn from_raw(nvl: *mut zfs_sys::nvlist_t) -> Option<Self> {
        NonNull::new(nvl).map(Self)
    }

    pub(crate) fn as_ptr(&self) -> *mut zfs_sys::nvlist_t {
        self.0.as_ptr()
    }

    /// Builds a C list from a Rust one. Fails on interior NULs or ENOMEM.
    pub(crate) fn from_nvlist(list: &NvList) -> Result<Self, Errno> {
        let c = Self::alloc()?;
        for (key, value) in list.iter() {
            c.add(key, value)?;
        }
        Ok(c)
    }

    fn add(&self, key: &str, value: &NvValue) -> Result<(), Errno> {
        let k = cstring(key)?;
        let l = self.as_ptr();
        let k = k.as_ptr();
        // SAFETY (all arms): `l` is a valid list we own, `k` a NUL-terminated
        // key, and every pointer/length pair describes a live Rust buffer for
        // the duration of the call; libnvpair copies what it is given.
        let r = unsafe {
            match value {
                NvValue::Boolean => zfs_sys::nvlist_add_boolean(l, k),
                NvValue::BoolValue(v) => zfs_sys::nvlist_add_boolean_value(l, k, *v as u32),
                NvValue::Byte(v) => zfs_sys::nvlist_add_byte(l, k, *v),
                NvValue::I8(v) => zfs_sys::nvlist_add_int8(l, k, *v),
                NvValue::U8(v) => zfs_sys::nvlist_add_uint8(l, k, *v),
                NvValue::I16(v) => zfs_sys::nvlist_add_int16(l, k, *v),
                NvValue::U16(v) => zfs_sys::nvlist_add_uint16(l, k, *v),
                NvValue::I32(v) => zfs_sys::nvlist_add_int32(l, k, *v),
                NvValue::U32(v) => zfs_sys::nvlist_add_uint32(l, k, *v),
                NvValue::I64(v) => zfs_sys::nvlist_add_int64(l, k, *v),
                NvValue::U64(v) => zfs_sys::nvlist_add_uint64(l, k, *v),
                NvValue::Double(v) => zfs_sys::nvlist_add_double(l, k, *v),
                NvValue::String(v) => {
                    let v = cstring(v)?;
                    zfs_sys::nvlist_add_string(l, k, v.as_ptr())
                }
                NvValue::NvList(v) => {
                    let v = CNvList::from_nvlist(v)?;
                    zfs_sys::nvlist_add_nvlist(l, k, v.as_ptr())
                }
                NvValue::BoolArray(v) => {
                    let v: Vec<u32> = v.iter().map(|b| *b as u32).collect();
                    zfs_sys::nvlist_add_boolean_array(l, k, v.as_ptr(), len_u32(v.len())?)
                }
                NvValue::ByteArray(v) => {
                    zfs_sys::nvlist_add_byte_array(l, k, v.as_ptr(), len_u32(v.len())?)
                }
                NvValue::I32Array(v) => {
                    zfs_sys::nvlist_add_int32_array(l, k, v.as_ptr(), len_u32(v.len())?)
                }
                NvValue::U32Array(v) => {
                    zfs_sys::nvlist_add_uint32_array(l, k, v.as_ptr(), len_u32(v.len())?)
                }
                NvValue::I64Array(v) => {
                    zfs_sys::nvlist_add_int64_array(l, k, v.as_ptr(), len_u32(v.len())?)
                }
                NvValue::U64Array(v) => {
                    zfs_sys::nvlist_add_uint64_array(l, k, v.as_ptr(), len_u32(v.len())?)
                }
                NvValue::StringArray(v) => {
                    let owned = v
                        .iter()
                        .map(|s| cstring(s))
                        .collect::<Result<Vec<_>, _>>()?;
                    let ptrs: Vec<*const libc::c_char> = owned.iter().map(|s| s.as_ptr()).collect();
                    zfs_sys::nvlist_add_string_array(l, k, ptrs.as_ptr(), len_u32(ptrs.len())?)
                }
                NvValue::NvListArray(v) => {
                    let owned = v
                        .iter()
                        .map(CNvList::from_nvlist)
                        .collect::<Result<Vec<_>, _>>()?;
                    let ptrs: Vec<*const zfs_sys::nvlist_t> =
                        owned.iter().map(|c| c.as_ptr() as *const _).collect();
                    zfs_sys::nvlist_add_nvlist_array(l, k, ptrs.as_ptr(), len_u32(ptrs.len())?)
                }
                NvValue::HrTime(v) => zfs_sys::nvlist_add_hrtime(l, k, *v),
            }
        };
        rc(r)
    }

    /// Converts the C list to a Rust one. Unknown pair types are an error,
    /// never a panic.
    pub(crate) fn to_nvlist(&self) -> Result<NvList, Errno> {
        let mut out = NvList::new();
        let mut pair: *mut zfs_sys::nvpair_t = ptr::null_mut();
        loop {
            // SAFETY: `self` is a valid list; `pair` is NULL or a pair of it.
            pair = unsafe { zfs_sys::nvlist_next_nvpair(self.as_ptr(), pair) };
            if pair.is_null() {
                break;
            }
            // SAFETY: `pair` is a live pair of this list; its name is a
            // NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(zfs_sys::nvpair_name(pair)) }
                .to_string_lossy()
                .into_owned();
            let value = pair_value(pair)?;
            out.insert(name, value);
        }
        Ok(out)
    }

    /// Packs in native encoding.
    pub(crate) fn pack(&self) -> Result<Vec<u8>, Errno> {
        self.pack_as(zfs_sys::NV_ENCODE_NATIVE as i32)
    }

    /// Packs in XDR encoding (vdev labels).
    pub(crate) fn pack_xdr(&self) -> Result<Vec<u8>, Errno> {
        self.pack_as(zfs_sys::NV_ENCODE_XDR as i32)
    }

    fn pack_as(&self, encoding: i32) -> Result<Vec<u8>, Errno> {
        let mut buf: *mut libc::c_char = ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: valid list; nvlist_pack mallocs `buf` and sets `size`.
        rc(unsafe { zfs_sys::nvlist_pack(self.as_ptr(), &mut buf, &mut size, encoding, 0) })?;
        if buf.is_null() {
            return Err(Errno(libc::ENOMEM));
        }
        // SAFETY: `buf` holds `size` bytes written by nvlist_pack.
        let out = unsafe { std::slice::from_raw_parts(buf as *const u8, size) }.to_vec();
        // SAFETY: `buf` was malloc'd by nvlist_pack and is freed once.
        unsafe { libc::free(buf.cast()) };
        Ok(out)
    }

    /// Unpacks a packed list (native or XDR encoding).
    pub(crate) fn unpack(bytes: &[u8]) -> Result<Self, Errno> {
        let mut nvl = ptr::null_mut();
        // SAFETY: `bytes` is a live buffer of the given length; nvlist_unpack
        // only reads it and validates the encoding, returning an errno on
        // malformed input.
        rc(unsafe {
            zfs_sys::nvlist_unpack(
                bytes.as_ptr() as *mut libc::c_char,
                bytes.len(),
                &mut nvl,
                0,
            )
        })?;
        Self::from_raw(nvl).ok_or(Errno(libc::ENOMEM))
    }
}

fn len_u32(n: usize) -> Result<u32, Errno> {
    u32::try_from(n).map_err(|_| Errno(libc::E2BIG))
}

fn cstring(s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno(libc::EINVAL))
}

/// Reads an array value: `getter` fills a pointer and a count.
///
/// # Safety
/// `getter` must call an `nvpair_value_*_array` function on a live pair, which
/// sets the pointer to `count` elements owned by the list (or NULL with 0).
unsafe fn read_array<T: Copy>(
    getter: impl FnOnce(*mut *mut T, *mut u32) -> libc::c_int,
) -> Result<Vec<T>, Errno> {
    let mut p: *mut T = ptr::null_mut();
    let mut n: u32 = 0;
    rc(getter(&mut p, &mut n))?;
    if p.is_null() || n == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: per the contract, `p` points to `n` initialised elements.
    Ok(unsafe { std::slice::from_raw_parts(p, n as usize) }.to_vec())
}

fn pair_value(pair: *mut zfs_sys::nvpair_t) -> Result<NvValue, Errno> {
    macro_rules! scalar {
        ($f:ident, $t:ty, $variant:ident) => {{
            let mut v: $t = Default::default();
            // SAFETY: `pair` is a live pair of this type; `v` is a valid out slot.
            rc(unsafe { zfs_sys::$f(pair, &mut v) })?;
            NvValue::$variant(v)
        }};
    }
    macro_rules! array {
        ($f:ident, $variant:ident) => {{
            // SAFETY: `pair` is a live pair of this array type; see read_array.
            NvValue::$variant(unsafe { read_array(|p, n| zfs_sys::$f(pair, p, n)) }?)
        }};
    }
    // SAFETY: `pair` is a live pair.
    let ty = unsafe { zfs_sys::nvpair_type(pair) };
    Ok(match ty {
        dt::DATA_TYPE_BOOLEAN => NvValue::Boolean,
        dt::DATA_TYPE_BOOLEAN_VALUE => {
            let mut v: zfs_sys::boolean_t = 0;
            // SAFETY: live boolean_value pair; valid out slot.
            rc(unsafe { zfs_sys::nvpair_value_boolean_value(pair, &mut v) })?;
            NvValue::BoolValue(v != 0)
        }
        dt::DATA_TYPE_BYTE => scalar!(nvpair_value_byte, u8, Byte),
        dt::DATA_TYPE_INT8 => scalar!(nvpair_value_int8, i8, I8),
        dt::DATA_TYPE_UINT8 => scalar!(nvpair_value_uint8, u8, U8),
        dt::DATA_TYPE_INT16 => scalar!(nvpair_value_int16, i16, I16),
        dt::DATA_TYPE_UINT16 => scalar!(nvpair_value_uint16, u16, U16),
        dt::DATA_TYPE_INT32 => scalar!(nvpair_value_int32, i32, I32),
        dt::DATA_TYPE_UINT32 => scalar!(nvpair_value_uint32, u32, U32),
        dt::DATA_TYPE_INT64 => scalar!(nvpair_value_int64, i64, I64),
        dt::DATA_TYPE_UINT64 => scalar!(nvpair_value_uint64, u64, U64),
        dt::DATA_TYPE_DOUBLE => scalar!(nvpair_value_double, f64, Double),
        dt::DATA_TYPE_HRTIME => scalar!(nvpair_value_hrtime, i64, HrTime),
        dt::DATA_TYPE_STRING => {
            let mut s: *const libc::c_char = ptr::null();
            // SAFETY: live string pair; `s` receives a pointer owned by the list.
            rc(unsafe { zfs_sys::nvpair_value_string(pair, &mut s) })?;
            if s.is_null() {
                return Err(Errno(libc::EINVAL));
            }
            // SAFETY: non-NULL, NUL-terminated, owned by the live list.
            NvValue::String(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
        }
        dt::DATA_TYPE_NVLIST => {
            let mut l: *mut zfs_sys::nvlist_t = ptr::null_mut();
            // SAFETY: live nvlist pair; `l` is borrowed from the parent list.
            rc(unsafe { zfs_sys::nvpair_value_nvlist(pair, &mut l) })?;
            NvValue::NvList(borrowed_to_nvlist(l)?)
        }
        dt::DATA_TYPE_BOOLEAN_ARRAY => {
            // SAFETY: live boolean array pair; see read_array.
            let v: Vec<zfs_sys::boolean_t> =
                unsafe { read_array(|p, n| zfs_sys::nvpair_value_boolean_array(pair, p, n)) }?;
            NvValue::BoolArray(v.into_iter().map(|b| b != 0).collect())
        }
        dt::DATA_TYPE_BYTE_ARRAY => array!(nvpair_value_byte_array, ByteArray),
        dt::DATA_TYPE_UINT8_ARRAY => array!(nvpair_value_uint8_array, ByteArray),
        dt::DATA_TYPE_INT32_ARRAY => array!(nvpair_value_int32_array, I32Array),
        dt::DATA_TYPE_UINT32_ARRAY => array!(nvpair_value_uint32_array, U32Array),
        dt::DATA_TYPE_INT64_ARRAY => array!(nvpair_value_int64_array, I64Array),
        dt::DATA_TYPE_UINT64_ARRAY => array!(nvpair_value_uint64_array, U64Array),
        dt::DATA_TYPE_STRING_ARRAY => {
            // SAFETY: live string array pair; the element pointers are owned
            // by the list and each is NUL-terminated or NULL.
            let v: Vec<*const libc::c_char> = unsafe {
                read_array(|p, n| zfs_sys::nvpair_value_string_array(pair, p as *mut _, n))
            }?;
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                if s.is_null() {
                    return Err(Errno(libc::EINVAL));
                }
                // SAFETY: non-NULL, NUL-terminated, owned by the live list.
                out.push(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned());
            }
            NvValue::StringArray(out)
        }
        dt::DATA_TYPE_NVLIST_ARRAY => {
            // SAFETY: live nvlist array pair; elements are borrowed lists.
            let v: Vec<*mut zfs_sys::nvlist_t> =
                unsafe { read_array(|p, n| zfs_sys::nvpair_value_nvlist_array(pair, p, n)) }?;
            NvValue::NvListArray(
                v.into_iter()
                    .map(borrowed_to_nvlist)
                    .collect::<Result<_, _>>()?,
            )
        }
        // INT8/INT16/UINT16 arrays and unknown types: not used by ZFS's
        // ioctl interfaces; report rather than guess.
        _ => return Err(Errno(libc::ENOTSUP)),
    })
}

fn borrowed_to_nvlist(l: *mut zfs_sys::nvlist_t) -> Result<NvList, Errno> {
    let Some(nn) = NonNull::new(l) else {
        return Err(Errno(libc::EINVAL));
    };
    // Wrap without taking ownership: convert, then forget the wrapper.
    let tmp = std::mem::ManuallyDrop::new(CNvList(nn));
    tmp.to_nvlist()
}

/// Converts an owned list returned by libzfs_core (NULL gives None).
fn take_list(nvl: *mut zfs_sys::nvlist_t) -> Result<Option<NvList>, Errno> {
    match CNvList::from_raw(nvl) {
        Some(c) => c.to_nvlist().map(Some),
        None => Ok(None),
    }
}

/// Result of a libzfs_core batch call: the errno and the per-name errlist.
pub(crate) type BatchResult = Result<(), (Errno, Option<NvList>)>;

fn batch(r: libc::c_int, errlist: *mut zfs_sys::nvlist_t) -> BatchResult {
    let list = take_list(errlist).ok().flatten();
    if r == 0 {
        Ok(())
    } else {
        Err((Errno(r), list))
    }
}

fn c_opt(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

// ---------------------------------------------------------------------------
// Where kernel time goes (the `testing` feature; a plain call otherwise).
// ---------------------------------------------------------------------------

/// Runs one kernel call; with the `testing` feature, adds its wall time to
/// the per-call profile ([`crate::testing::call_profile`]). Recording may
/// overwrite errno: a call that reports through errno reads it inside `f`.
#[inline]
fn profiled<T>(call: &'static str, f: impl FnOnce() -> T) -> T {
    #[cfg(feature = "testing")]
    {
        let started = std::time::Instant::now();
        let out = f();
        profile::record(call, started.elapsed());
        out
    }
    #[cfg(not(feature = "testing"))]
    {
        let _ = call;
        f()
    }
}

#[cfg(feature = "testing")]
pub(crate) mod profile {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    static CALLS: Mutex<BTreeMap<&'static str, (u64, Duration)>> = Mutex::new(BTreeMap::new());

    pub(crate) fn record(call: &'static str, took: Duration) {
        let mut calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
        let entry = calls.entry(call).or_default();
        entry.0 += 1;
        entry.1 += took;
    }

    /// Every call kind so far: (name, calls, total wall time); then cleared.
    pub(crate) fn take() -> Vec<(&'static str, u64, Duration)> {
        let mut calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *calls)
            .into_iter()
            .map(|(k, (n, t))| (k, n, t))
            .collect()
    }
}

/// A name for an ioctl request, for the profile.
fn ioctl_name(request: u32) -> &'static str {
    use zfs_sys::ioctl::{
        ZFS_IOC_DATASET_LIST_NEXT, ZFS_IOC_INHERIT_PROP, ZFS_IOC_OBJSET_STATS,
        ZFS_IOC_POOL_CONFIGS, ZFS_IOC_POOL_EXPORT, ZFS_IOC_POOL_IMPORT, ZFS_IOC_POOL_SCAN,
        ZFS_IOC_POOL_STATS, ZFS_IOC_POOL_TRYIMPORT, ZFS_IOC_SEND_PROGRESS, ZFS_IOC_SET_PROP,
        ZFS_IOC_SNAPSHOT_LIST_NEXT,
    };
    match request {
        ZFS_IOC_POOL_STATS => "ZFS_IOC_POOL_STATS",
        ZFS_IOC_POOL_TRYIMPORT => "ZFS_IOC_POOL_TRYIMPORT",
        ZFS_IOC_POOL_IMPORT => "ZFS_IOC_POOL_IMPORT",
        ZFS_IOC_POOL_EXPORT => "ZFS_IOC_POOL_EXPORT",
        ZFS_IOC_POOL_SCAN => "ZFS_IOC_POOL_SCAN",
        ZFS_IOC_SET_PROP => "ZFS_IOC_SET_PROP",
        ZFS_IOC_INHERIT_PROP => "ZFS_IOC_INHERIT_PROP",
        ZFS_IOC_OBJSET_STATS => "ZFS_IOC_OBJSET_STATS",
        ZFS_IOC_DATASET_LIST_NEXT => "ZFS_IOC_DATASET_LIST_NEXT",
        ZFS_IOC_SNAPSHOT_LIST_NEXT => "ZFS_IOC_SNAPSHOT_LIST_NEXT",
        ZFS_IOC_POOL_CONFIGS => "ZFS_IOC_POOL_CONFIGS",
        ZFS_IOC_SEND_PROGRESS => "ZFS_IOC_SEND_PROGRESS",
        _ => "other ioctl",
    }
}

// ---------------------------------------------------------------------------
// libzfs_core calls.
// ---------------------------------------------------------------------------

pub(crate) fn lzc_exists(name: &CStr) -> bool {
    // SAFETY: NUL-terminated name; libzfs_core is initialised by Zfs::open.
    profiled("lzc_exists", || unsafe {
        zfs_sys::lzc_exists(name.as_ptr()) != 0
    })
}

pub(crate) fn lzc_snapshot(snaps: &NvList, props: &NvList) -> BatchResult {
    let snaps = CNvList::from_nvlist(snaps).map_err(|e| (e, None))?;
    let props = CNvList::from_nvlist(props).map_err(|e| (e, None))?;
    let mut errlist = ptr::null_mut();
    // SAFETY: valid lists; errlist receives an owned list or stays NULL.
    let r = profiled("lzc_snapshot", || unsafe {
        zfs_sys::lzc_snapshot(snaps.as_ptr(), props.as_ptr(), &mut errlist)
    });
    batch(r, errlist)
}

pub(crate) fn lzc_destroy_snaps(snaps: &NvList, defer: bool) -> BatchResult {
    let snaps = CNvList::from_nvlist(snaps).map_err(|e| (e, None))?;
    let mut errlist = ptr::null_mut();
    // SAFETY: valid list; errlist receives an owned list or stays NULL.
    let r = profiled("lzc_destroy_snaps", || unsafe {
        zfs_sys::lzc_destroy_snaps(snaps.as_ptr(), defer as u32, &mut errlist)
    });
    batch(r, errlist)
}

pub(crate) fn lzc_bookmark(bookmarks: &NvList) -> BatchResult {
    let b = CNvList::from_nvlist(bookmarks).map_err(|e| (e, None))?;
    let mut errlist = ptr::null_mut();
    // SAFETY: valid list; errlist receives an owned list or stays NULL.
    let r = profiled("lzc_bookmark", || unsafe {
        zfs_sys::lzc_bookmark(b.as_ptr(), &mut errlist)
    });
    batch(r, errlist)
}

pub(crate) fn lzc_destroy_bookmarks(bookmarks: &NvList) -> BatchResult {
    let b = CNvList::from_nvlist(bookmarks).map_err(|e| (e, None))?;
    let mut errlist = ptr::null_mut();
    // SAFETY: valid list; errlist receives an owned list or stays NULL.
    let r = profiled("lzc_destroy_bookmarks", || unsafe {
        zfs_sys::lzc_destroy_bookmarks(b.as_ptr(), &mut errlist)
    });
    batch(r, errlist)
}

pub(crate) fn lzc_get_bookmarks(fs: &CStr, props: &NvList) -> Result<NvList, Errno> {
    let props = CNvList::from_nvlist(props)?;
    let mut out = ptr::null_mut();
    // SAFETY: NUL-terminated name, valid props list; `out` receives an owned
    // list (only on success, so a retry leaks nothing).
    retry_eintr(|| {
        rc(profiled("lzc_get_bookmarks", || unsafe {
            zfs_sys::lzc_get_bookmarks(fs.as_ptr(), props.as_ptr(), &mut out)
        }))
    })?;
    Ok(take_list(out)?.unwrap_or_default())
}

/// `lzc_hold`. On success, returns the errlist too: holds on missing
/// snapshots are skipped by the kernel and only reported there.
pub(crate) fn lzc_hold(
    holds: &NvList,
    cleanup_fd: Option<BorrowedFd<'_>>,
) -> Result<Option<NvList>, (Errno, Option<NvList>)> {
    let h = CNvList::from_nvlist(holds).map_err(|e| (e, None))?;
    let fd = cleanup_fd.map_or(-1, |f| f.as_raw_fd());
    let mut errlist = ptr::null_mut();
    // SAFETY: valid list; `fd` is -1 or an fd borrowed for the call.
    let r = profiled("lzc_hold", || unsafe {
        zfs_sys::lzc_hold(h.as_ptr(), fd, &mut errlist)
    });
    let list = take_list(errlist).ok().flatten();
    if r == 0 {
        Ok(list)
    } else {
        Err((Errno(r), list))
    }
}

pub(crate) fn lzc_release(holds: &NvList) -> BatchResult {
    let h = CNvList::from_nvlist(holds).map_err(|e| (e, None))?;
    let mut errlist = ptr::null_mut();
    // SAFETY: valid list; errlist receives an owned list or stays NULL.
    let r = profiled("lzc_release", || unsafe {
        zfs_sys::lzc_release(h.as_ptr(), &mut errlist)
    });
    batch(r, errlist)
}

pub(crate) fn lzc_get_holds(snap: &CStr) -> Result<NvList, Errno> {
    let mut out = ptr::null_mut();
    // SAFETY: NUL-terminated name; `out` receives an owned list (only on
    // success, so a retry leaks nothing).
    retry_eintr(|| {
        rc(profiled("lzc_get_holds", || unsafe {
            zfs_sys::lzc_get_holds(snap.as_ptr(), &mut out)
        }))
    })?;
    Ok(take_list(out)?.unwrap_or_default())
}

/// `lzc_sync`: writes out the pool's open transaction group and waits for
/// it (`zpool sync`).
pub(crate) fn lzc_sync(pool: &CStr) -> Result<(), Errno> {
    // `force` is required (ZFS_ERR_IOC_ARG_REQUIRED without it, 2.1–2.4);
    // false: sync only when there is something to write.
    let innvl = CNvList::from_nvlist(&NvList::new().with("force", NvValue::BoolValue(false)))?;
    let mut out = ptr::null_mut();
    // SAFETY: a NUL-terminated pool name; `innvl` is a valid list; `out`
    // receives an owned list or stays NULL.
    let r = rc(profiled("lzc_sync", || unsafe {
        zfs_sys::lzc_sync(pool.as_ptr(), innvl.as_ptr(), &mut out)
    }));
    let _ = take_list(out);
    r
}

/// `lzc_wait`: blocks until no `activity` (a `zpool_wait_activity_t`) is
/// in progress on `pool`; returns whether it waited at all. A signal
/// (EINTR) ends the wait early: it is issued again.
pub(crate) fn lzc_wait(pool: &CStr, activity: u32) -> Result<bool, Errno> {
    retry_eintr(|| {
        let mut waited: zfs_sys::boolean_t = zfs_sys::boolean_t_B_FALSE;
        // SAFETY: a NUL-terminated pool name; `waited` is a valid out
        // pointer for the whole call.
        rc(profiled("lzc_wait", || unsafe {
            zfs_sys::lzc_wait(pool.as_ptr(), activity, &mut waited)
        }))?;
        Ok(waited != zfs_sys::boolean_t_B_FALSE)
    })
}

pub(crate) fn lzc_create(
    name: &CStr,
    volume: bool,
    props: &NvList,
    key: Option<&[u8]>,
) -> Result<(), Errno> {
    let props = CNvList::from_nvlist(props)?;
    let ty = if volume {
        zfs_sys::lzc_dataset_type::LZC_DATSET_TYPE_ZVOL
    } else {
        zfs_sys::lzc_dataset_type::LZC_DATSET_TYPE_ZFS
    };
    let (kp, kl) = match key {
        Some(k) => (k.as_ptr() as *mut u8, len_u32(k.len())?),
        None => (ptr::null_mut(), 0),
    };
    // SAFETY: NUL-terminated name, valid list; the key buffer is only read.
    rc(profiled("lzc_create", || unsafe {
        zfs_sys::lzc_create(name.as_ptr(), ty, props.as_ptr(), kp, kl)
    }))
}

pub(crate) fn lzc_clone(name: &CStr, origin: &CStr, props: &NvList) -> Result<(), Errno> {
    let props = CNvList::from_nvlist(props)?;
    // SAFETY: NUL-terminated names and a valid list.
    rc(profiled("lzc_clone", || unsafe {
        zfs_sys::lzc_clone(name.as_ptr(), origin.as_ptr(), props.as_ptr())
    }))
}

/// Promotes a clone; on EEXIST returns the conflicting snapshot's name.
pub(crate) fn lzc_promote(name: &CStr) -> Result<(), (Errno, String)> {
    let mut buf = vec![0u8; zfs_sys::ioctl::MAXNAMELEN];
    // SAFETY: NUL-terminated name; `buf` has the length we pass.
    let r = profiled("lzc_promote", || unsafe {
        zfs_sys::lzc_promote(name.as_ptr(), buf.as_mut_ptr().cast(), buf.len() as i32)
    });
    rc(r).map_err(|e| (e, c_buf_to_string(&buf)))
}

/// `lzc_load_key` with a 32-byte wrapping key; `noop` only checks it.
pub(crate) fn lzc_load_key(name: &CStr, noop: bool, wrapping_key: &[u8; 32]) -> Result<(), Errno> {
    let mut key = *wrapping_key;
    // SAFETY: a NUL-terminated name; `key` is 32 bytes the call reads (it
    // takes a non-const pointer but does not keep it).
    let r = rc(profiled("lzc_load_key", || unsafe {
        zfs_sys::lzc_load_key(name.as_ptr(), noop as u32, key.as_mut_ptr(), 32)
    }));
    key.fill(0);
    r
}

/// `lzc_change_key`: `cmd` is a `dcp_cmd_t`; `props` the new key's
/// properties and `wrapping_key` the new 32-byte key, both only for a new
/// key.
pub(crate) fn lzc_change_key(
    name: &CStr,
    cmd: u64,
    props: Option<&NvList>,
    wrapping_key: Option<&[u8; 32]>,
) -> Result<(), Errno> {
    let props = props.map(CNvList::from_nvlist).transpose()?;
    let props_ptr = props.as_ref().map_or(std::ptr::null_mut(), |p| p.as_ptr());
    let mut key = wrapping_key.copied();
    let (key_ptr, key_len) = match key.as_mut() {
        Some(k) => (k.as_mut_ptr(), 32),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: a NUL-terminated name; `props_ptr` is a valid list or NULL;
    // `key_ptr` points to `key_len` bytes the call reads (or is NULL with
    // 0); neither is kept after the call.
    let r = rc(profiled("lzc_change_key", || unsafe {
        zfs_sys::lzc_change_key(name.as_ptr(), cmd, props_ptr, key_ptr, key_len)
    }));
    if let Some(k) = key.as_mut() {
        k.fill(0);
    }
    r
}

/// 8 random bytes from the kernel (`getrandom`), as a u64.
pub(crate) fn random_u64() -> Result<u64, Errno> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is writable for the length passed.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => got += n,
            Err(_) => {
                let e = last_errno();
                if e.0 != libc::EINTR {
                    return Err(e);
                }
            }
        }
    }
    Ok(u64::from_le_bytes(buf))
}

/// mount(2) of a ZFS dataset (or snapshot) at `dir`, read-only or not.
#[cfg(feature = "testing")]
pub(crate) fn mount_zfs(source: &CStr, dir: &CStr, readonly: bool) -> Result<(), Errno> {
    let flags = if readonly { libc::MS_RDONLY } else { 0 };
    // SAFETY: NUL-terminated strings; no options (NULL data).
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            dir.as_ptr(),
            c"zfs".as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// The effective user id.
#[cfg(feature = "testing")]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// umount(2) of `dir`.
#[cfg(feature = "testing")]
pub(crate) fn unmount(dir: &CStr) -> Result<(), Errno> {
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::umount(dir.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

pub(crate) fn lzc_unload_key(name: &CStr) -> Result<(), Errno> {
    // SAFETY: a NUL-terminated name.
    rc(profiled("lzc_unload_key", || unsafe {
        zfs_sys::lzc_unload_key(name.as_ptr())
    }))
}

pub(crate) fn lzc_destroy(name: &CStr) -> Result<(), Errno> {
    // SAFETY: NUL-terminated name.
    rc(profiled("lzc_destroy", || unsafe {
        zfs_sys::lzc_destroy(name.as_ptr())
    }))
}

/// Rolls back to the latest snapshot; returns its name.
pub(crate) fn lzc_rollback(fs: &CStr) -> Result<String, Errno> {
    let mut buf = vec![0u8; zfs_sys::ioctl::MAXNAMELEN];
    // SAFETY: NUL-terminated name; `buf` has the length we pass.
    rc(profiled("lzc_rollback", || unsafe {
        zfs_sys::lzc_rollback(fs.as_ptr(), buf.as_mut_ptr().cast(), buf.len() as i32)
    }))?;
    Ok(c_buf_to_string(&buf))
}

pub(crate) fn lzc_rollback_to(fs: &CStr, snap: &CStr) -> Result<(), Errno> {
    // SAFETY: NUL-terminated names.
    rc(profiled("lzc_rollback_to", || unsafe {
        zfs_sys::lzc_rollback_to(fs.as_ptr(), snap.as_ptr())
    }))
}

pub(crate) fn lzc_rename(from: &CStr, to: &CStr) -> Result<(), Errno> {
    // SAFETY: NUL-terminated names.
    rc(profiled("lzc_rename", || unsafe {
        zfs_sys::lzc_rename(from.as_ptr(), to.as_ptr())
    }))
}

pub(crate) fn lzc_send(
    snap: &CStr,
    from: Option<&CStr>,
    fd: BorrowedFd<'_>,
    flags: u32,
    resume: Option<(u64, u64)>,
) -> Result<(), Errno> {
    let f = zfs_sys::lzc_send_flags(flags);
    // SAFETY: NUL-terminated names (or NULL for `from`); `fd` is borrowed
    // for the duration of the call.
    let r = profiled("lzc_send", || unsafe {
        match resume {
            None => zfs_sys::lzc_send(snap.as_ptr(), c_opt(from), fd.as_raw_fd(), f),
            Some((obj, off)) => {
                zfs_sys::lzc_send_resume(snap.as_ptr(), c_opt(from), fd.as_raw_fd(), f, obj, off)
            }
        }
    });
    rc(r)
}

pub(crate) fn lzc_send_space(snap: &CStr, from: Option<&CStr>, flags: u32) -> Result<u64, Errno> {
    let mut space = 0u64;
    // SAFETY: NUL-terminated names (or NULL); `space` is a valid out slot.
    retry_eintr(|| {
        rc(profiled("lzc_send_space", || unsafe {
            zfs_sys::lzc_send_space(
                snap.as_ptr(),
                c_opt(from),
                zfs_sys::lzc_send_flags(flags),
                &mut space,
            )
        }))
    })?;
    Ok(space)
}

/// `lzc_snaprange_space`: bytes freed by destroying `first` through `last`.
pub(crate) fn lzc_snaprange_space(first: &CStr, last: &CStr) -> Result<u64, Errno> {
    let mut space = 0u64;
    // SAFETY: NUL-terminated names; `space` is a valid out slot.
    retry_eintr(|| {
        rc(profiled("lzc_snaprange_space", || unsafe {
            zfs_sys::lzc_snaprange_space(first.as_ptr(), last.as_ptr(), &mut space)
        }))
    })?;
    Ok(space)
}

/// What `lzc_receive_with_cmdprops` reports besides its errno.
pub(crate) struct ReceiveOutcome {
    pub read_bytes: u64,
    /// Per-property errors of the received properties, if any.
    pub prop_errors: Option<NvList>,
}

/// One stream record header (`dmu_replay_record_t`, 312 bytes) with the C
/// type's 8-byte alignment: `lzc_receive_with_cmdprops` reads the BEGIN record through
/// a `dmu_replay_record_t *`.
#[repr(C, align(8))]
#[derive(Debug, Clone)]
pub(crate) struct ReplayRecord(pub(crate) [u8; 312]);

const _: () = assert!(std::mem::align_of::<ReplayRecord>() == 8);
const _: () = assert!(std::mem::size_of::<ReplayRecord>() == 312);

#[cfg(test)]
#[test]
fn replay_record_is_8_aligned() {
    let records = [ReplayRecord([0; 312]), ReplayRecord([1; 312])];
    for r in &records {
        assert_eq!(r.0.as_ptr() as usize % 8, 0);
    }
    assert_eq!(std::mem::align_of::<ReplayRecord>(), 8);
}

/// Receives one substream whose BEGIN record the caller already read, with
/// `props` as received values and `cmdprops` as `zfs receive -o`/`-x`
/// (`lzc_receive_with_cmdprops`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lzc_receive_with_cmdprops(
    snap: &CStr,
    props: Option<&NvList>,
    cmdprops: Option<&NvList>,
    origin: Option<&CStr>,
    force: bool,
    resumable: bool,
    raw: bool,
    fd: BorrowedFd<'_>,
    begin_record: &ReplayRecord,
) -> Result<ReceiveOutcome, (Errno, ReceiveOutcome)> {
    let nothing_read = |e| {
        (
            e,
            ReceiveOutcome {
                read_bytes: 0,
                prop_errors: None,
            },
        )
    };
    let props = props
        .map(CNvList::from_nvlist)
        .transpose()
        .map_err(nothing_read)?;
    let cmdprops = cmdprops
        .map(CNvList::from_nvlist)
        .transpose()
        .map_err(nothing_read)?;
    let mut read_bytes = 0u64;
    let mut errflags = 0u64;
    let mut action_handle = 0u64;
    let mut errors = ptr::null_mut();
    // SAFETY: NUL-terminated names (or NULL); `props` and `cmdprops` are
    // NULL or valid lists; no key (NULL, 0); `begin_record` is 312 readable
    // bytes, 8-aligned: the size and alignment of dmu_replay_record_t; the
    // out slots are valid; `fd` is borrowed for the call; -1 means no
    // cleanup fd.
    let r = profiled("lzc_receive", || unsafe {
        zfs_sys::lzc_receive_with_cmdprops(
            snap.as_ptr(),
            props.as_ref().map_or(ptr::null_mut(), CNvList::as_ptr),
            cmdprops.as_ref().map_or(ptr::null_mut(), CNvList::as_ptr),
            ptr::null_mut(),
            0,
            c_opt(origin),
            force as u32,
            resumable as u32,
            raw as u32,
            fd.as_raw_fd(),
            begin_record.0.as_ptr().cast(),
            -1,
            &mut read_bytes,
            &mut errflags,
            &mut action_handle,
            &mut errors,
        )
    });
    let outcome = ReceiveOutcome {
        read_bytes,
        prop_errors: take_list(errors).ok().flatten().filter(|l| !l.is_empty()),
    };
    if r == 0 {
        Ok(outcome)
    } else {
        Err((Errno(r), outcome))
    }
}

fn c_buf_to_string(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

// ---------------------------------------------------------------------------
// Raw ioctls and libc.
// ---------------------------------------------------------------------------

/// One `/dev/zfs` ioctl command: a zeroed `zfs_cmd_t` on the heap (it is
/// 13744 bytes) and the nvlist buffers its pointer fields refer to.
///
/// The buffers are owned here and the pointer fields are written only by
/// [`ioctl`](Self::ioctl), from those buffers, right before the call: no safe
/// code can make the kernel read or write through a stale pointer.
pub(crate) struct IoctlCmd {
    zc: Box<zfs_cmd_t>,
    src: Vec<u8>,
    conf: Vec<u8>,
    dst: Vec<u8>,
}

impl IoctlCmd {
    /// A zeroed command for `name` (a validated name, at most 255 bytes;
    /// longer input is cut at the field, never overflows it).
    pub(crate) fn new(name: &str) -> Self {
        let mut zc = Box::new(zfs_cmd_t::zeroed());
        let n = name.len().min(zc.zc_name.len().saturating_sub(1));
        zc.zc_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        IoctlCmd {
            zc,
            src: Vec::new(),
            conf: Vec::new(),
            dst: Vec::new(),
        }
    }

    /// `zc_name` as the kernel left it (list ioctls return the next name).
    pub(crate) fn name(&self) -> String {
        c_buf_to_string(&self.zc.zc_name)
    }

    pub(crate) fn cookie(&self) -> u64 {
        self.zc.zc_cookie
    }

    pub(crate) fn set_cookie(&mut self, cookie: u64) {
        self.zc.zc_cookie = cookie;
    }

    /// `zc_value` (a property name): at most the field less its NUL; longer
    /// input is cut, never overflows it.
    pub(crate) fn set_value(&mut self, value: &[u8]) {
        let n = value.len().min(self.zc.zc_value.len().saturating_sub(1));
        self.zc.zc_value[..n].copy_from_slice(&value[..n]);
    }

    pub(crate) fn set_guid(&mut self, guid: u64) {
        self.zc.zc_guid = guid;
    }

    pub(crate) fn set_flags(&mut self, flags: u32) {
        self.zc.zc_flags = flags;
    }

    pub(crate) fn set_simple(&mut self, simple: bool) {
        self.zc.zc_simple = u8::from(simple);
    }

    /// The fast stats the kernel filled.
    pub(crate) fn objset_stats(&self) -> &dmu_objset_stats_t {
        &self.zc.zc_objset_stats
    }

    /// A packed nvlist for `zc_nvlist_src`.
    pub(crate) fn set_src(&mut self, packed: Vec<u8>) {
        self.src = packed;
    }

    /// A packed nvlist for `zc_nvlist_conf`.
    pub(crate) fn set_conf(&mut self, packed: Vec<u8>) {
        self.conf = packed;
    }

    /// A zeroed reply buffer of `len` bytes for `zc_nvlist_dst` (0: none).
    pub(crate) fn set_dst_capacity(&mut self, len: usize) {
        self.dst = vec![0; len];
    }

    /// The reply nvlist, when the kernel filled one.
    pub(crate) fn dst_reply(&self) -> Option<&[u8]> {
        if self.zc.zc_nvlist_dst_filled == 0 {
            return None;
        }
        let len = usize::try_from(self.zc.zc_nvlist_dst_size)
            .unwrap_or(usize::MAX)
            .min(self.dst.len());
        self.dst.get(..len)
    }

    /// `zc_nvlist_dst_size` after the call: after ENOMEM, the size the
    /// kernel needs.
    pub(crate) fn dst_size(&self) -> u64 {
        self.zc.zc_nvlist_dst_size
    }

    /// Issues the ioctl on `dev`. The read-only listing and statistics
    /// ioctls are issued again when a stop signal interrupted them (the
    /// kernel restores the command before returning EINTR).
    pub(crate) fn ioctl(&mut self, dev: BorrowedFd<'_>, request: u32) -> Result<(), Errno> {
        use zfs_sys::ioctl::{
            ZFS_IOC_DATASET_LIST_NEXT, ZFS_IOC_OBJSET_STATS, ZFS_IOC_POOL_CONFIGS,
            ZFS_IOC_POOL_STATS, ZFS_IOC_SEND_PROGRESS, ZFS_IOC_SNAPSHOT_LIST_NEXT,
        };
        let read_only = [
            ZFS_IOC_POOL_STATS,
            ZFS_IOC_OBJSET_STATS,
            ZFS_IOC_DATASET_LIST_NEXT,
            ZFS_IOC_SNAPSHOT_LIST_NEXT,
            ZFS_IOC_POOL_CONFIGS,
            ZFS_IOC_SEND_PROGRESS,
        ];
        if read_only.contains(&request) {
            retry_eintr(|| self.ioctl_once(dev, request))
        } else {
            self.ioctl_once(dev, request)
        }
    }

    fn ioctl_once(&mut self, dev: BorrowedFd<'_>, request: u32) -> Result<(), Errno> {
        fn ptr_len(buf: &[u8]) -> (u64, u64) {
            if buf.is_empty() {
                (0, 0)
            } else {
                (buf.as_ptr() as u64, buf.len() as u64)
            }
        }
        let zc = &mut *self.zc;
        (zc.zc_nvlist_src, zc.zc_nvlist_src_size) = ptr_len(&self.src);
        (zc.zc_nvlist_conf, zc.zc_nvlist_conf_size) = ptr_len(&self.conf);
        (zc.zc_nvlist_dst, zc.zc_nvlist_dst_size) = ptr_len(&self.dst);
        zc.zc_nvlist_dst_filled = 0;
        // errno is read inside the profiled call: what the profile does
        // after it (a contended lock's futex) may overwrite errno.
        let r = profiled(ioctl_name(request), || {
            // SAFETY: `zc` is an exclusively borrowed zfs_cmd_t of exactly the
            // size the kernel copies in and out. Its only pointer fields that
            // are not zero were set just above from `self.src`, `self.conf` and
            // `self.dst`, with their lengths; those vectors are borrowed through
            // `self` for the whole call, so the kernel reads at most
            // `src`/`conf` and writes at most `dst`. `dev` is an open fd.
            let r = unsafe {
                libc::ioctl(
                    dev.as_raw_fd(),
                    request as libc::c_ulong,
                    zc as *mut zfs_cmd_t,
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(last_errno())
            }
        });
        // Leave no pointer behind.
        zc.zc_nvlist_src = 0;
        zc.zc_nvlist_conf = 0;
        zc.zc_nvlist_dst = 0;
        r
    }
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by us alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `fcntl(F_SETPIPE_SZ)`: returns the size the kernel granted.
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> Result<usize, Errno> {
    let size = libc::c_int::try_from(size).map_err(|_| Errno(libc::EINVAL))?;
    // SAFETY: fcntl on an open fd with an integer argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as usize)
    }
}

/// `ioctl(FIONREAD)`: the bytes waiting to be read from a pipe or socket.
pub(crate) fn bytes_available(fd: BorrowedFd<'_>) -> Result<usize, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// `BLKGETSIZE64`, `_IOR(0x12, 114, size_t)` (linux/fs.h): the direction
/// bits sit higher on powerpc, mips and sparc.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
const IOC_READ: u32 = 2 << 29;
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const IOC_READ: u32 = 2 << 30;
const BLKGETSIZE64: u32 =
    IOC_READ | ((std::mem::size_of::<usize>() as u32) << 16) | (0x12 << 8) | 114;

/// `ioctl(BLKGETSIZE64)`: the size of a block device in bytes.
pub(crate) fn block_device_size(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is
    // valid for it; on a file that is not a block device it fails (ENOTTY).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64 as _, &mut size) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(size)
    }
}

#[cfg(test)]
mod block_device_tests {
    use super::*;

    #[test]
    fn blkgetsize64_is_linux_s_number_and_fails_on_a_file() {
        use std::os::fd::AsFd;
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        assert_eq!(BLKGETSIZE64, 0x8008_1272);
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        assert_eq!(block_device_size(f.as_fd()), Err(Errno(libc::ENOTTY)));
    }
}

/// Whether `fd` is a FIFO (pipe).
pub(crate) fn is_fifo(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    // SAFETY: an all-zero `stat` is a valid out buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: open fd and a valid out buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(last_errno());
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

/// `splice(2)` between two pipes: moves up to `len` bytes without copying
/// them through user space. Returns 0 at end of input.
pub(crate) fn splice(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    len: usize,
    nonblocking: bool,
) -> Result<usize, Errno> {
    let flags = if nonblocking {
        libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK
    } else {
        libc::SPLICE_F_MOVE
    };
    // SAFETY: both fds are open for the duration of the call; NULL offsets
    // are required for pipes; the kernel touches no user memory.
    let r = unsafe {
        libc::splice(
            from.as_raw_fd(),
            ptr::null_mut(),
            to.as_raw_fd(),
            ptr::null_mut(),
            len,
            flags,
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as usize)
    }
}

// ---------------------------------------------------------------------------
// Signals, poll and eventfd: what the transfer threads need to stay
// interruptible by a cancel and immune to the host's signals.
// ---------------------------------------------------------------------------

/// A signal set holding `signals`.
fn sigset_of(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid out buffer for sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signals are valid numbers.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Blocks every asynchronous signal in the calling thread. Signals a fault
/// raises in the thread itself (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP,
/// SIGSYS) and SIGABRT stay deliverable; SIGKILL and SIGSTOP cannot be
/// blocked.
pub(crate) fn block_async_signals() -> Result<(), Errno> {
    // SAFETY: an all-zero sigset_t is a valid out buffer for sigfillset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signals are valid numbers;
    // pthread_sigmask only changes the calling thread's mask.
    let r = unsafe {
        libc::sigfillset(&mut set);
        for s in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGABRT,
        ] {
            libc::sigdelset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut())
    };
    rc(r)
}

/// The calling thread's SIGPIPE state before [`sigpipe_block`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SigpipeState {
    was_blocked: bool,
    was_pending: bool,
}

fn sigpipe_pending() -> bool {
    // SAFETY: an all-zero sigset_t is a valid out buffer for sigpending.
    let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `pending` is a valid out buffer; sigismember reads it.
    unsafe {
        libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1
    }
}

/// Blocks SIGPIPE in the calling thread, so that a write into a pipe with
/// no reader fails with EPIPE instead of killing the process.
pub(crate) fn sigpipe_block() -> Result<SigpipeState, Errno> {
    let set = sigset_of(&[libc::SIGPIPE]);
    // SAFETY: an all-zero sigset_t is a valid out buffer.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sets; only the calling thread's mask changes.
    rc(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) })?;
    // SAFETY: `old` was filled by pthread_sigmask.
    let was_blocked = unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1;
    Ok(SigpipeState {
        was_blocked,
        was_pending: sigpipe_pending(),
    })
}

/// Undoes [`sigpipe_block`]: a SIGPIPE raised while it was blocked is
/// consumed (it only said EPIPE, which the caller saw), then SIGPIPE is
/// unblocked unless it was blocked before.
pub(crate) fn sigpipe_restore(state: SigpipeState) {
    let set = sigset_of(&[libc::SIGPIPE]);
    if !state.was_pending && sigpipe_pending() {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timeout; a NULL siginfo is allowed. With a
        // zero timeout this only takes an already pending SIGPIPE.
        unsafe { libc::sigtimedwait(&set, ptr::null_mut(), &zero) };
    }
    if !state.was_blocked {
        // SAFETY: valid set; only the calling thread's mask changes.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut()) };
    }
}

/// `poll(2)` on up to a few descriptors: `(fd, events)` in, `revents` out
/// (in the same order). Returns early with all zeros on EINTR.
pub(crate) fn poll(
    fds: &[(BorrowedFd<'_>, libc::c_short)],
    timeout_ms: libc::c_int,
) -> Result<Vec<libc::c_short>, Errno> {
    let mut raw: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, events)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: *events,
            revents: 0,
        })
        .collect();
    // SAFETY: `raw` is a live array of `raw.len()` pollfd structs whose fds
    // are borrowed for the call.
    let r = unsafe { libc::poll(raw.as_mut_ptr(), raw.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = last_errno();
        if e == Errno(libc::EINTR) {
            return Ok(vec![0; raw.len()]);
        }
        return Err(e);
    }
    Ok(raw.iter().map(|p| p.revents).collect())
}

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
pub(crate) fn eventfd() -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall with flag arguments.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: eventfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---------------------------------------------------------------------------
// Testing only: signal dispositions a host program might choose.
// ---------------------------------------------------------------------------

/// Sets `SIGPIPE` back to its default disposition (terminate), as a C host
/// or a Rust CLI that wants to die quietly under `| head` does.
#[cfg(feature = "testing")]
pub(crate) fn default_sigpipe() -> Result<(), Errno> {
    // SAFETY: SIG_DFL is a valid disposition for SIGPIPE; no handler runs.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(last_errno());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Test-only process helpers (feature `testing`): signals for fault tests.
// ---------------------------------------------------------------------------

/// A signal handler that does nothing (async-signal-safe by construction).
#[cfg(feature = "testing")]
extern "C" fn noop_signal_handler(_signal: libc::c_int) {}

/// Installs [`noop_signal_handler`] for `signal`, without `SA_RESTART`: a
/// thread that receives the signal inside a system call sees `EINTR`.
#[cfg(feature = "testing")]
pub(crate) fn install_noop_handler(signal: libc::c_int) -> Result<(), Errno> {
    // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty
    // mask, handler filled in below).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = noop_signal_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = 0;
    // SAFETY: `sa_mask` is a valid, owned sigset_t out buffer.
    if unsafe { libc::sigemptyset(&mut action.sa_mask) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: valid pointer to an initialised sigaction; NULL old action is
    // allowed; the handler touches no state, so it is safe in any context.
    if unsafe { libc::sigaction(signal, &action, ptr::null_mut()) } != 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// `tgkill(2)`: sends `signal` to thread `tid` of this process.
#[cfg(feature = "testing")]
pub(crate) fn tgkill(tid: libc::pid_t, signal: libc::c_int) -> Result<(), Errno> {
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: a raw syscall with three integer arguments; it touches no
    // memory of ours (what the signal does depends on its disposition).
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}
