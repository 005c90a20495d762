//! Raw `/dev/zfs` ioctl definitions that libzfs_core does not expose: listing,
//! object-set statistics, send progress and pool create/destroy/configs.
//!
//! Layouts follow `include/sys/zfs_ioctl.h` and `include/sys/fs/zfs.h` of
//! OpenZFS; `zfs_cmd_t` has had the same 13744-byte layout on Linux from 2.1
//! through 2.4. The kernel copies exactly `size_of::<zfs_cmd_t>()` bytes in and
//! out, so the size is asserted at compile time, and so are the offsets of the
//! fields that callers use.

use core::mem::{offset_of, size_of};

/// `MAXPATHLEN` on Linux.
pub const MAXPATHLEN: usize = 4096;
/// `MAXNAMELEN`.
pub const MAXNAMELEN: usize = 256;
/// `ZFS_MAX_DATASET_NAME_LEN`: the longest dataset name, including the NUL.
pub const ZFS_MAX_DATASET_NAME_LEN: usize = 256;

/// `dmu_objset_type_t`.
pub type dmu_objset_type_t = u32;
pub const DMU_OST_NONE: dmu_objset_type_t = 0;
pub const DMU_OST_META: dmu_objset_type_t = 1;
pub const DMU_OST_ZFS: dmu_objset_type_t = 2;
pub const DMU_OST_ZVOL: dmu_objset_type_t = 3;
pub const DMU_OST_OTHER: dmu_objset_type_t = 4;
pub const DMU_OST_ANY: dmu_objset_type_t = 5;

/// `zfs_share_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct zfs_share_t {
    pub z_exportdata: u64,
    pub z_sharedata: u64,
    pub z_sharetype: u64,
    pub z_sharemax: u64,
}

/// `dmu_objset_stats_t`: the "fast stats" every list-next and objset-stats
/// ioctl fills, even without a property nvlist.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dmu_objset_stats_t {
    pub dds_num_clones: u64,
    pub dds_creation_txg: u64,
    pub dds_guid: u64,
    pub dds_type: dmu_objset_type_t,
    pub dds_is_snapshot: u8,
    pub dds_inconsistent: u8,
    pub dds_redacted: u8,
    pub dds_origin: [u8; ZFS_MAX_DATASET_NAME_LEN],
}

/// `struct drr_begin`: the BEGIN record of a send stream.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct drr_begin {
    pub drr_magic: u64,
    pub drr_versioninfo: u64,
    pub drr_creation_time: u64,
    pub drr_type: dmu_objset_type_t,
    pub drr_flags: u32,
    pub drr_toguid: u64,
    pub drr_fromguid: u64,
    pub drr_toname: [u8; MAXNAMELEN],
}

/// `zinject_record_t` (only here to keep `zfs_cmd_t`'s layout).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct zinject_record_t {
    pub zi_objset: u64,
    pub zi_object: u64,
    pub zi_start: u64,
    pub zi_end: u64,
    pub zi_guid: u64,
    pub zi_level: u32,
    pub zi_error: u32,
    pub zi_type: u64,
    pub zi_freq: u32,
    pub zi_failfast: u32,
    pub zi_func: [u8; MAXNAMELEN],
    pub zi_iotype: u32,
    pub zi_duration: i32,
    pub zi_timer: u64,
    pub zi_nlanes: u64,
    pub zi_cmd: u32,
    pub zi_dvas: u32,
}

/// `zfs_stat_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct zfs_stat_t {
    pub zs_gen: u64,
    pub zs_mode: u64,
    pub zs_links: u64,
    pub zs_ctime: [u64; 2],
}

/// `zfs_cmd_t`: the argument of every `/dev/zfs` ioctl.
///
/// Pointers (`zc_nvlist_src`, `zc_nvlist_dst`, …) travel as `u64`.
/// Create one with [`zfs_cmd_t::zeroed`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct zfs_cmd_t {
    pub zc_name: [u8; MAXPATHLEN],
    pub zc_nvlist_src: u64,
    pub zc_nvlist_src_size: u64,
    pub zc_nvlist_dst: u64,
    pub zc_nvlist_dst_size: u64,
    pub zc_nvlist_dst_filled: i32,
    pub zc_pad2: i32,
    pub zc_history: u64,
    pub zc_value: [u8; MAXPATHLEN * 2],
    pub zc_string: [u8; MAXNAMELEN],
    pub zc_guid: u64,
    pub zc_nvlist_conf: u64,
    pub zc_nvlist_conf_size: u64,
    pub zc_cookie: u64,
    pub zc_objset_type: u64,
    pub zc_perm_action: u64,
    pub zc_history_len: u64,
    pub zc_history_offset: u64,
    pub zc_obj: u64,
    pub zc_iflags: u64,
    pub zc_share: zfs_share_t,
    pub zc_objset_stats: dmu_objset_stats_t,
    pub zc_begin_record: drr_begin,
    pub zc_inject_record: zinject_record_t,
    pub zc_defer_destroy: u32,
    pub zc_flags: u32,
    pub zc_action_handle: u64,
    pub zc_cleanup_fd: i32,
    pub zc_simple: u8,
    pub zc_pad: [u8; 3],
    pub zc_sendobj: u64,
    pub zc_fromobj: u64,
    pub zc_createtxg: u64,
    pub zc_stat: zfs_stat_t,
    pub zc_zoneid: u64,
}

impl zfs_cmd_t {
    /// An all-zero command, as the kernel expects for unused fields.
    pub fn zeroed() -> Self {
        // SAFETY: zfs_cmd_t is plain old data (integers and byte arrays), for
        // which the all-zero bit pattern is a valid value.
        unsafe { core::mem::zeroed() }
    }
}

const _: () = assert!(size_of::<zfs_cmd_t>() == 13744);
const _: () = assert!(size_of::<dmu_objset_stats_t>() == 288);
const _: () = assert!(size_of::<drr_begin>() == 304);
const _: () = assert!(size_of::<zinject_record_t>() == 352);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_nvlist_src) == 4096);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_nvlist_dst_filled) == 4128);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_value) == 4144);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_string) == 12336);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_guid) == 12592);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_cookie) == 12616);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_objset_type) == 12624);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_objset_stats) == 12704);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_begin_record) == 12992);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_defer_destroy) == 13648);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_cleanup_fd) == 13664);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_simple) == 13668);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_createtxg) == 13688);
const _: () = assert!(offset_of!(zfs_cmd_t, zc_zoneid) == 13736);

/// `zfs_ioc_t`: on Linux the ioctl request number is the plain enum value.
pub type zfs_ioc_t = u32;
pub const ZFS_IOC_FIRST: zfs_ioc_t = 0x5a00;
pub const ZFS_IOC_POOL_CREATE: zfs_ioc_t = 0x5a00;
pub const ZFS_IOC_POOL_DESTROY: zfs_ioc_t = 0x5a01;
pub const ZFS_IOC_POOL_IMPORT: zfs_ioc_t = 0x5a02;
pub const ZFS_IOC_POOL_EXPORT: zfs_ioc_t = 0x5a03;
pub const ZFS_IOC_POOL_CONFIGS: zfs_ioc_t = 0x5a04;
pub const ZFS_IOC_POOL_STATS: zfs_ioc_t = 0x5a05;
pub const ZFS_IOC_POOL_TRYIMPORT: zfs_ioc_t = 0x5a06;
pub const ZFS_IOC_POOL_SCAN: zfs_ioc_t = 0x5a07;
pub const ZFS_IOC_OBJSET_STATS: zfs_ioc_t = 0x5a12;
pub const ZFS_IOC_DATASET_LIST_NEXT: zfs_ioc_t = 0x5a14;
pub const ZFS_IOC_SNAPSHOT_LIST_NEXT: zfs_ioc_t = 0x5a15;
pub const ZFS_IOC_SET_PROP: zfs_ioc_t = 0x5a16;
pub const ZFS_IOC_INHERIT_PROP: zfs_ioc_t = 0x5a2b;
pub const ZFS_IOC_SEND_PROGRESS: zfs_ioc_t = 0x5a3e;

/// The ZFS-specific errno values (`zfs_errno_t`), which start at 1024.
///
/// A newtype over the raw integer rather than a Rust enum: the kernel may
/// return values that a given release of this crate does not know.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct zfs_errno_t(pub i32);

impl zfs_errno_t {
    pub const CHECKPOINT_EXISTS: Self = Self(1024);
    pub const DISCARDING_CHECKPOINT: Self = Self(1025);
    pub const NO_CHECKPOINT: Self = Self(1026);
    pub const DEVRM_IN_PROGRESS: Self = Self(1027);
    pub const VDEV_TOO_BIG: Self = Self(1028);
    pub const IOC_CMD_UNAVAIL: Self = Self(1029);
    pub const IOC_ARG_UNAVAIL: Self = Self(1030);
    pub const IOC_ARG_REQUIRED: Self = Self(1031);
    pub const IOC_ARG_BADTYPE: Self = Self(1032);
    pub const WRONG_PARENT: Self = Self(1033);
    pub const FROM_IVSET_GUID_MISSING: Self = Self(1034);
    pub const FROM_IVSET_GUID_MISMATCH: Self = Self(1035);
    pub const SPILL_BLOCK_FLAG_MISSING: Self = Self(1036);
    pub const UNKNOWN_SEND_STREAM_FEATURE: Self = Self(1037);
    pub const EXPORT_IN_PROGRESS: Self = Self(1038);
    pub const BOOKMARK_SOURCE_NOT_ANCESTOR: Self = Self(1039);
    pub const STREAM_TRUNCATED: Self = Self(1040);
    pub const STREAM_LARGE_BLOCK_MISMATCH: Self = Self(1041);
    pub const RESILVER_IN_PROGRESS: Self = Self(1042);
    pub const REBUILD_IN_PROGRESS: Self = Self(1043);
    pub const BADPROP: Self = Self(1044);
    pub const VDEV_NOTSUP: Self = Self(1045);
    pub const NOT_USER_NAMESPACE: Self = Self(1046);
    pub const RESUME_EXISTS: Self = Self(1047);
    pub const CRYPTO_NOTSUP: Self = Self(1048);
    pub const RAIDZ_EXPAND_IN_PROGRESS: Self = Self(1049);
    pub const ASHIFT_MISMATCH: Self = Self(1050);
    pub const STREAM_LARGE_MICROZAP: Self = Self(1051);

    /// The first ZFS-specific errno value.
    pub const FIRST: Self = Self::CHECKPOINT_EXISTS;
}

/// Linux spells the Solaris `ECKSUM` as `EBADE`.
pub const ECKSUM: i32 = libc::EBADE;
/// Linux spells the Solaris `EFRAGS` as `EBADR`.
pub const EFRAGS: i32 = libc::EBADR;

/// The BEGIN record magic, in the sender's byte order.
#[allow(clippy::mixed_case_hex_literals)] // spelled as OpenZFS spells it
pub const DMU_BACKUP_MAGIC: u64 = 0x2F5bacbac;
