//! Vdev labels: the four copies of a pool member's config on the device
//! itself, read without ZFS (issue 12: which pool is on this removable
//! drive, and may it be imported?).
//!
//! ```no_run
//! use zfs_core::pool::read_labels;
//!
//! let labels = read_labels("/dev/disk/by-id/usb-Drive-0:0-part1".as_ref())?;
//! match labels.best() {
//!     Some(l) => println!("{:?} pool {:?} txg {}", l.state(), l.pool_name(), l.txg()),
//!     None => println!("no valid label:\n{labels}"),
//! }
//! # Ok::<(), zfs_core::pool::LabelReadError>(())
//! ```
//!
//! Layout (OpenZFS include/sys/vdev_impl.h, module/zfs/vdev_label.c): a
//! 256 KiB `vdev_label_t` at 0 and 256 KiB, and two more at the device's
//! size aligned down to 256 KiB less 512 KiB and less 256 KiB. Each holds
//! 8 KiB of padding, an 8 KiB boot environment, the 112 KiB `vdev_phys_t`
//! read here (the XDR-packed config nvlist, zero-padded, then a 40-byte
//! `zio_eck_t`), and the uberblock ring. The `zio_eck_t` is a magic (whose
//! byte order is the writer's) and a SHA-256 of the whole `vdev_phys_t`
//! taken with the checksum words replaced by the verifier: the
//! `vdev_phys_t`'s byte offset on the device (`ZIO_CHECKSUM_LABEL`,
//! module/zfs/zio_checksum.c).

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::nvlist::{NvList, NvListError, NvValue};

/// Bytes of one `vdev_label_t`.
const LABEL_SIZE: u64 = 256 << 10;
/// Bytes of the pad and boot environment before the `vdev_phys_t`.
const VDEV_SKIP_SIZE: u64 = 16 << 10;
/// Bytes of a `vdev_phys_t`: the config nvlist and its checksum trailer.
pub const VDEV_PHYS_SIZE: usize = 112 << 10;
/// Bytes of a `zio_eck_t`: a u64 magic and four u64 checksum words.
const ECK_SIZE: usize = 40;
/// `ZEC_MAGIC` (include/sys/zio.h).
const ZEC_MAGIC: u64 = 0x0210_da7a_b10c_7a11;
/// Labels per device.
const LABELS: usize = 4;

/// The smallest device [`read_labels`] reads, 4.5 MiB: room for the two
/// front labels, the 3.5 MiB boot area after them and the two end labels
/// (`VDEV_LABEL_START_SIZE + VDEV_LABEL_END_SIZE`). ZFS creates no vdev
/// under 64 MiB (`SPA_MINDEVSIZE`), but older pools' images can be
/// slightly smaller (OpenZFS's `zfs-broken-mirror1.dat` test image is
/// 66 985 984 bytes), and `zpool import` reads labels of any size.
pub const MIN_DEVICE_SIZE: u64 = (4 << 20) + (512 << 10);

// ZPOOL_CONFIG_* names (include/sys/fs/zfs.h).
const CONFIG_POOL_NAME: &str = "name";
const CONFIG_POOL_STATE: &str = "state";
const CONFIG_POOL_TXG: &str = "txg";
const CONFIG_POOL_GUID: &str = "pool_guid";
const CONFIG_GUID: &str = "guid";
const CONFIG_TOP_GUID: &str = "top_guid";
const CONFIG_HOSTID: &str = "hostid";
const CONFIG_HOSTNAME: &str = "hostname";

/// A pool's state as a label records it (`pool_state_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolState {
    /// In use by a host (imported, or its host went away without export).
    Active,
    /// Exported: importable without force.
    Exported,
    /// Destroyed (`zpool destroy`).
    Destroyed,
    /// A hot spare's label; it names no pool.
    Spare,
    /// A cache device's label; it names no pool.
    L2Cache,
    /// `spa_t`'s internal state; never valid in a label.
    Uninitialized,
    /// libzfs's internal state; never valid in a label.
    Unavailable,
    /// libzfs's internal state; never valid in a label.
    PotentiallyActive,
}

impl PoolState {
    /// The state of a `pool_state_t` value, if it is one.
    pub fn from_raw(value: u64) -> Option<PoolState> {
        Some(match value {
            0 => PoolState::Active,
            1 => PoolState::Exported,
            2 => PoolState::Destroyed,
            3 => PoolState::Spare,
            4 => PoolState::L2Cache,
            5 => PoolState::Uninitialized,
            6 => PoolState::Unavailable,
            7 => PoolState::PotentiallyActive,
            _ => return None,
        })
    }

    /// The `pool_state_t` value.
    pub fn raw(self) -> u64 {
        self as u64
    }

    /// Whether a label of this state describes no pool (spare, cache).
    fn is_aux(self) -> bool {
        matches!(self, PoolState::Spare | PoolState::L2Cache)
    }
}

/// One valid vdev label: its config nvlist and the fields checked in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    config: NvList,
    state: PoolState,
    txg: u64,
    guid: u64,
    pool_guid: Option<u64>,
    top_guid: Option<u64>,
    hostid: Option<u64>,
    big_endian: bool,
}

impl Label {
    /// The whole decoded config nvlist.
    pub fn config(&self) -> &NvList {
        &self.config
    }

    /// The pool's state (`state`).
    pub fn state(&self) -> PoolState {
        self.state
    }

    /// The pool's name (`name`); None in spare and cache labels.
    pub fn pool_name(&self) -> Option<&str> {
        self.config.get_str(CONFIG_POOL_NAME).ok()
    }

    /// The pool's GUID (`pool_guid`); None in spare and cache labels.
    pub fn pool_guid(&self) -> Option<u64> {
        self.pool_guid
    }

    /// The txg the label was written in (`txg`); 0 where a spare or cache
    /// label has none.
    pub fn txg(&self) -> u64 {
        self.txg
    }

    /// This vdev's GUID (`guid`), never 0.
    pub fn guid(&self) -> u64 {
        self.guid
    }

    /// The GUID of this vdev's top-level vdev (`top_guid`).
    pub fn top_guid(&self) -> Option<u64> {
        self.top_guid
    }

    /// The host ID of the host that last wrote the label (`hostid`).
    pub fn hostid(&self) -> Option<u64> {
        self.hostid
    }

    /// The name of the host that last wrote the label (`hostname`).
    pub fn hostname(&self) -> Option<&str> {
        self.config.get_str(CONFIG_HOSTNAME).ok()
    }

    /// Whether a big-endian host wrote the label (its checksum trailer's
    /// byte order).
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }
}

/// Why one label is not valid. `offset` is its `vdev_phys_t`'s byte
/// offset on the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// Shorter than its 40-byte checksum trailer (only [`parse_label`]
    /// can be given such bytes).
    #[error("vdev label at byte {offset}: {len} bytes, too short for a label")]
    TooShort { offset: u64, len: usize },
    /// All zeros: never written, or wiped (`zpool labelclear`).
    #[error("vdev label at byte {offset} is blank (all zeros)")]
    Blank { offset: u64 },
    /// The trailer's magic is missing in both byte orders: not a label.
    #[error("vdev label at byte {offset} has no checksum trailer magic")]
    NoMagic { offset: u64 },
    /// The SHA-256 does not match: damaged, or written for another offset.
    #[error("vdev label at byte {offset} fails its checksum")]
    Checksum { offset: u64 },
    /// The config nvlist does not decode.
    #[error("vdev label at byte {offset}: config nvlist: {source}")]
    Nvlist {
        offset: u64,
        #[source]
        source: NvListError,
    },
    /// A field that `zpool import` requires is missing, or one of the
    /// fields read here has the wrong type or value.
    #[error("vdev label at byte {offset}: field {field:?} {reason}")]
    Field {
        offset: u64,
        field: &'static str,
        reason: &'static str,
    },
    /// A pool state that is unknown or never valid in a label (above
    /// [`PoolState::L2Cache`]).
    #[error("vdev label at byte {offset}: pool state {value} is not one a label holds")]
    State { offset: u64, value: u64 },
}

/// Why a device's labels could not be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelReadError {
    /// Opening or inspecting the device failed.
    #[error("vdev labels of {path:?}: {operation}: {source}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: io::Error,
    },
    /// Reading a label failed (`offset` is its `vdev_phys_t`'s).
    #[error("vdev labels of {path:?}: reading {len} bytes at byte {offset}: {source}")]
    Read {
        path: PathBuf,
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    /// Neither a regular file nor a block device.
    #[error("vdev labels of {path:?}: neither a regular file nor a block device")]
    NotFileOrBlockDevice { path: PathBuf },
    /// Smaller than [`MIN_DEVICE_SIZE`]: too small to hold four labels.
    #[error("vdev labels of {path:?}: {size} bytes, less than the {MIN_DEVICE_SIZE} labels take")]
    TooSmall { path: PathBuf, size: u64 },
}

/// The four labels of one device, each valid or not.
#[derive(Debug)]
pub struct DeviceLabels {
    path: PathBuf,
    size: u64,
    labels: [Result<Label, LabelError>; LABELS],
}

impl DeviceLabels {
    /// The path read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Labels 0 to 3, in device order.
    pub fn labels(&self) -> &[Result<Label, LabelError>; LABELS] {
        &self.labels
    }

    /// The valid label with the highest txg (the first of equals): the
    /// one the kernel's `vdev_label_read_config` uses. (`zpool import`'s
    /// `zpool_read_label` takes the first valid label instead; the two
    /// are the same label whenever the labels agree.)
    pub fn best(&self) -> Option<&Label> {
        let mut best: Option<&Label> = None;
        for l in self.labels.iter().flatten() {
            if best.is_none_or(|b| l.txg > b.txg) {
                best = Some(l);
            }
        }
        best
    }
}

impl fmt::Display for DeviceLabels {
    /// One line per label, naming the path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{} label {i}: ", self.path.display())?;
            match l {
                Ok(l) => write!(
                    f,
                    "{:?} pool {:?} guid {:#x} txg {}",
                    l.state,
                    l.pool_name().unwrap_or("-"),
                    l.guid,
                    l.txg
                )?,
                Err(e) => write!(f, "{e}")?,
            }
        }
        Ok(())
    }
}

/// The byte offset of label `l`'s `vdev_phys_t` on a device of `size`
/// bytes (`vdev_label_offset`; `size` is aligned down to 256 KiB first).
/// None when the device is smaller than four labels.
fn vdev_phys_offset(size: u64, l: usize) -> Option<u64> {
    let size = size & !(LABEL_SIZE - 1);
    let base = if l < LABELS / 2 {
        0
    } else {
        size.checked_sub(LABELS as u64 * LABEL_SIZE)?
    };
    Some(base + l as u64 * LABEL_SIZE + VDEV_SKIP_SIZE)
}

/// Reads and checks the four labels of a regular file or block device
/// (opened read-only, with `O_DIRECT` where it is allowed, so that labels
/// the kernel just wrote are not read stale from the page cache). A label
/// that is not valid is an error in its slot of [`DeviceLabels`]; only a
/// device that cannot be read at all is an error here.
pub fn read_labels(path: &Path) -> Result<DeviceLabels, LabelReadError> {
    let io_err = |operation, source| LabelReadError::Io {
        path: path.to_owned(),
        operation,
        source,
    };
    let (file, direct) = match open(path, true) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(path, false), false),
        f => (f, true),
    };
    let file = file.map_err(|e| io_err("open", e))?;
    let meta = file.metadata().map_err(|e| io_err("stat", e))?;
    let size = if meta.file_type().is_block_device() {
        crate::ffi::block_device_size(file.as_fd())
            .map_err(|e| io_err("BLKGETSIZE64", io::Error::from_raw_os_error(e.0)))?
    } else if meta.is_file() {
        meta.len()
    } else {
        return Err(LabelReadError::NotFileOrBlockDevice {
            path: path.to_owned(),
        });
    };
    if size < MIN_DEVICE_SIZE {
        return Err(LabelReadError::TooSmall {
            path: path.to_owned(),
            size,
        });
    }
    let labels = match read_all(&file, size, direct) {
        // O_DIRECT refused at read time (alignment): read through the cache.
        Err((_, e)) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
            let file = open(path, false).map_err(|e| io_err("open", e))?;
            read_all(&file, size, false)
        }
        r => r,
    }
    .map_err(|(offset, source)| LabelReadError::Read {
        path: path.to_owned(),
        offset,
        len: VDEV_PHYS_SIZE,
        source,
    })?;
    Ok(DeviceLabels {
        path: path.to_owned(),
        size,
        labels,
    })
}

/// Opens read-only; `O_NONBLOCK` so that a FIFO does not wait for a writer
/// (it changes nothing for files and disks).
fn open(path: &Path, direct: bool) -> io::Result<File> {
    let direct = if direct { libc::O_DIRECT } else { 0 };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | direct)
        .open(path)
}

/// Reads and parses the four labels; an error names the offset.
fn read_all(
    file: &File,
    size: u64,
    direct: bool,
) -> Result<[Result<Label, LabelError>; LABELS], (u64, io::Error)> {
    // O_DIRECT wants a buffer aligned to the logical block size (at most
    // 4 KiB); the offsets and length are multiples of 16 KiB.
    const ALIGN: usize = 4096;
    let mut buf = vec![0u8; VDEV_PHYS_SIZE + ALIGN];
    let skip = if direct {
        buf.as_ptr().align_offset(ALIGN)
    } else {
        0
    };
    let mut out: [Result<Label, LabelError>; LABELS] =
        std::array::from_fn(|_| Err(LabelError::Blank { offset: 0 }));
    for (l, slot) in out.iter_mut().enumerate() {
        // read_labels checked size >= MIN_DEVICE_SIZE.
        let offset = vdev_phys_offset(size, l).unwrap_or(0);
        let Some(region) = skip
            .checked_add(VDEV_PHYS_SIZE)
            .and_then(|end| buf.get_mut(skip..end))
        else {
            return Err((offset, io::Error::from_raw_os_error(libc::EINVAL)));
        };
        file.read_exact_at(region, offset)
            .map_err(|e| (offset, e))?;
        *slot = parse_label(region, offset);
    }
    Ok(out)
}

/// Checks and decodes one label's `vdev_phys_t` (normally
/// [`VDEV_PHYS_SIZE`] bytes; any length of at least its 40-byte trailer is
/// checked the same way) read at byte `offset` of its device, the checksum
/// verifier. Pure: no I/O, and any bytes give a result, never a panic.
///
/// As the kernel does, the trailer's magic gives the byte order, and the
/// SHA-256 must match; then, as `zpool import`'s `zpool_read_label` does,
/// the nvlist must decode, `guid` be a nonzero uint64, `state` at most
/// [`PoolState::L2Cache`], and `txg` a nonzero uint64 unless the label is a
/// spare's or cache device's. `name`, `hostname` (strings) and
/// `pool_guid`, `top_guid`, `hostid` (uint64) may be absent, but not of
/// another type.
pub fn parse_label(vdev_phys: &[u8], offset: u64) -> Result<Label, LabelError> {
    let len = vdev_phys.len();
    let Some(nvlist_len) = len.checked_sub(ECK_SIZE) else {
        return Err(LabelError::TooShort { offset, len });
    };
    if vdev_phys.iter().all(|&b| b == 0) {
        return Err(LabelError::Blank { offset });
    }
    let (nvlist, eck) = vdev_phys.split_at(nvlist_len);
    let magic: [u8; 8] = eck[..8].try_into().unwrap_or_default();
    let big_endian = if u64::from_le_bytes(magic) == ZEC_MAGIC {
        false
    } else if u64::from_be_bytes(magic) == ZEC_MAGIC {
        true
    } else {
        return Err(LabelError::NoMagic { offset });
    };
    if checksum(nvlist, magic, offset, big_endian) != eck[8..] {
        return Err(LabelError::Checksum { offset });
    }
    let (config, _) =
        NvList::unpack_xdr(nvlist).map_err(|source| LabelError::Nvlist { offset, source })?;
    fields(config, offset, big_endian)
}

/// The checksum words as stored in a trailer of the given byte order: the
/// SHA-256 of `nvlist`, `magic` and the verifier (`offset`, 0, 0, 0), each
/// 8-byte word of the digest read big-endian (`abd_checksum_sha256`).
fn checksum(nvlist: &[u8], magic: [u8; 8], offset: u64, big_endian: bool) -> [u8; 32] {
    let word = |v: u64| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut h = Sha256::new();
    h.update(nvlist);
    h.update(magic);
    h.update(word(offset));
    h.update([0u8; 24]);
    let digest: [u8; 32] = h.finalize().into();
    let mut out = [0u8; 32];
    for (o, d) in out.chunks_exact_mut(8).zip(digest.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(d);
        o.copy_from_slice(&word(u64::from_be_bytes(w)));
    }
    out
}

/// `zpool_read_label`'s checks, and the types of the fields read.
fn fields(config: NvList, offset: u64, big_endian: bool) -> Result<Label, LabelError> {
    let field = |field, reason| LabelError::Field {
        offset,
        field,
        reason,
    };
    let u64_field = |name: &'static str| match config.get(name) {
        None => Ok(None),
        Some(NvValue::U64(v)) => Ok(Some(*v)),
        Some(_) => Err(field(name, "is not a uint64")),
    };
    let guid = u64_field(CONFIG_GUID)?.ok_or(field(CONFIG_GUID, "is missing"))?;
    if guid == 0 {
        return Err(field(CONFIG_GUID, "is 0"));
    }
    let raw = u64_field(CONFIG_POOL_STATE)?.ok_or(field(CONFIG_POOL_STATE, "is missing"))?;
    let state = PoolState::from_raw(raw)
        .filter(|s| s.raw() <= PoolState::L2Cache.raw())
        .ok_or(LabelError::State { offset, value: raw })?;
    let txg = u64_field(CONFIG_POOL_TXG)?;
    if !state.is_aux() {
        match txg {
            None => return Err(field(CONFIG_POOL_TXG, "is missing")),
            Some(0) => return Err(field(CONFIG_POOL_TXG, "is 0")),
            Some(_) => {}
        }
    }
    for name in [CONFIG_POOL_NAME, CONFIG_HOSTNAME] {
        if config
            .get(name)
            .is_some_and(|v| !matches!(v, NvValue::String(_)))
        {
            return Err(field(name, "is not a string"));
        }
    }
    Ok(Label {
        state,
        txg: txg.unwrap_or(0),
        guid,
        pool_guid: u64_field(CONFIG_POOL_GUID)?,
        top_guid: u64_field(CONFIG_TOP_GUID)?,
        hostid: u64_field(CONFIG_HOSTID)?,
        big_endian,
        config,
    })
}

/// Hooks for the `vdev_label` fuzz target (`fuzz/fuzz_targets/vdev_label.rs`)
/// and the tests that build label images. Not part of the API: hidden.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Writes the trailer (the last 40 bytes of `vdev_phys`): the magic in
    /// the byte order asked and the checksum for `offset`. Does nothing to
    /// fewer than 40 bytes.
    pub fn seal(vdev_phys: &mut [u8], offset: u64, big_endian: bool) {
        let Some(at) = vdev_phys.len().checked_sub(ECK_SIZE) else {
            return;
        };
        let magic = if big_endian {
            ZEC_MAGIC.to_be_bytes()
        } else {
            ZEC_MAGIC.to_le_bytes()
        };
        let sum = checksum(&vdev_phys[..at], magic, offset, big_endian);
        vdev_phys[at..at + 8].copy_from_slice(&magic);
        vdev_phys[at + 8..].copy_from_slice(&sum);
    }

    /// A sealed [`VDEV_PHYS_SIZE`]-byte `vdev_phys_t` holding `config`,
    /// packed by libnvpair (XDR); a big-endian one has the header byte of
    /// a big-endian writer too.
    pub fn vdev_phys(
        config: &NvList,
        offset: u64,
        big_endian: bool,
    ) -> Result<Vec<u8>, crate::Error> {
        let mut buf = config.pack_xdr()?;
        if buf.len() > VDEV_PHYS_SIZE - ECK_SIZE {
            return Err(crate::Error::from_errno(
                "nvlist_pack",
                "vdev_phys",
                crate::Errno(libc::E2BIG),
            ));
        }
        if big_endian {
            buf[1] = 0;
        }
        buf.resize(VDEV_PHYS_SIZE, 0);
        seal(&mut buf, offset, big_endian);
        Ok(buf)
    }

    /// The offset of label `l`'s `vdev_phys_t` on a device of `size` bytes.
    pub fn vdev_phys_offset(size: u64, l: usize) -> Option<u64> {
        super::vdev_phys_offset(size, l)
    }

    /// libnvpair's `nvlist_unpack` of an XDR list that
    /// [`NvList::unpack_xdr`] accepts, for a differential check (None for
    /// bytes it refuses: only those it accepts reach libnvpair).
    pub fn libnvpair_unpack_xdr(bytes: &[u8]) -> Option<Result<NvList, crate::Errno>> {
        let (_, used) = NvList::unpack_xdr(bytes).ok()?;
        // A copy: libnvpair wants XDR 4-byte aligned.
        let copy = bytes.get(..used)?.to_vec();
        Some(crate::ffi::CNvList::unpack(&copy).and_then(|c| c.to_nvlist()))
    }

    /// The `vdev_label` fuzz target's seeds, by file name: labels sealed
    /// for byte 16384, each the packed list and its 40-byte trailer
    /// (`fuzz/seeds/vdev_label/`, checked by a unit test).
    pub fn seeds() -> Result<Vec<(&'static str, Vec<u8>)>, crate::Error> {
        let mut out = Vec::new();
        for (name, config, big_endian) in seed_configs() {
            let mut b = config.pack_xdr()?;
            if big_endian {
                b[1] = 0;
            }
            b.resize(b.len() + ECK_SIZE, 0);
            seal(&mut b, 16 << 10, big_endian);
            out.push((name, b));
        }
        Ok(out)
    }

    pub(super) fn seed_configs() -> Vec<(&'static str, NvList, bool)> {
        let tree = NvList::new()
            .with("type", "disk")
            .with("id", 0u64)
            .with("guid", 0x1234_5678_9abc_def0u64)
            .with("path", "/dev/sdb1")
            .with("whole_disk", 1u64)
            .with("ashift", 12u64)
            .with("asize", 1u64 << 36)
            .with("children", vec![NvList::new().with("guid", 7u64)]);
        let pool = NvList::new()
            .with("version", 5000u64)
            .with("name", "backup")
            .with("state", 1u64)
            .with("txg", 42u64)
            .with("pool_guid", 0xfeed_face_cafe_beefu64)
            .with("hostid", 0x8d2a_11c3u64)
            .with("hostname", "nas")
            .with("top_guid", 0x1234_5678_9abc_def0u64)
            .with("guid", 0x1234_5678_9abc_def0u64)
            .with("vdev_tree", tree)
            .with(
                "features_for_read",
                NvList::new().with("com.delphix:hole_birth", NvValue::Boolean),
            );
        let spare = NvList::new()
            .with("version", 5000u64)
            .with("state", 3u64)
            .with("guid", 9u64);
        let mut types = NvList::new().with("state", 4u64).with("guid", 1u64);
        for (k, v) in [
            ("b", NvValue::BoolValue(true)),
            ("i8", NvValue::I8(-1)),
            ("u16", NvValue::U16(65535)),
            ("i16", NvValue::I16(-2)),
            ("d", NvValue::Double(0.5)),
            ("h", NvValue::HrTime(-3)),
            ("bytes", NvValue::ByteArray(vec![1, 2, 3])),
            ("bools", NvValue::BoolArray(vec![true, false])),
            ("i32s", NvValue::I32Array(vec![-1])),
            ("u32s", NvValue::U32Array(vec![])),
            ("i64s", NvValue::I64Array(vec![i64::MIN])),
            (
                "strs",
                NvValue::StringArray(vec!["a".into(), String::new()]),
            ),
            ("lists", NvValue::NvListArray(vec![NvList::new()])),
        ] {
            types.insert(k, v);
        }
        vec![
            ("pool-le", pool.clone(), false),
            ("pool-be", pool, true),
            ("spare-le", spare, false),
            ("every-type-be", types, true),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::fuzzing::{seal, vdev_phys};
    use super::*;

    const GUID: u64 = 0x1234_5678_9abc_def0;
    const POOL_GUID: u64 = 0xfeed_face_cafe_beef;

    /// A config shaped like a real single-disk label's (vdev_label_init,
    /// spa_config_generate).
    fn config(txg: u64) -> NvList {
        let features = NvList::new()
            .with("com.delphix:hole_birth", NvValue::Boolean)
            .with("com.delphix:embedded_data", NvValue::Boolean);
        let tree = NvList::new()
            .with("type", "disk")
            .with("id", 0u64)
            .with("guid", GUID)
            .with("path", "/dev/disk/by-id/usb-Drive-0:0-part1")
            .with("whole_disk", 1u64)
            .with("metaslab_array", 128u64)
            .with("metaslab_shift", 29u64)
            .with("ashift", 12u64)
            .with("asize", 1u64 << 36)
            .with("is_log", 0u64)
            .with("create_txg", 4u64);
        NvList::new()
            .with("version", 5000u64)
            .with("name", "backup")
            .with("state", 1u64)
            .with("txg", txg)
            .with("pool_guid", POOL_GUID)
            .with("errata", 0u64)
            .with("hostid", 0x8d2a_11c3u64)
            .with("hostname", "nas")
            .with("top_guid", GUID)
            .with("guid", GUID)
            .with("vdev_children", 1u64)
            .with("vdev_tree", tree)
            .with("features_for_read", features)
    }

    fn spare() -> NvList {
        NvList::new()
            .with("version", 5000u64)
            .with("state", 3u64)
            .with("guid", GUID)
    }

    fn phys(c: &NvList, offset: u64) -> Vec<u8> {
        vdev_phys(c, offset, false).unwrap()
    }

    #[test]
    fn layout_follows_vdev_label_offset() {
        assert_eq!(std::mem::size_of::<[u8; VDEV_PHYS_SIZE]>(), 114_688);
        let size = 100 << 20;
        assert_eq!(vdev_phys_offset(size, 0), Some(16 << 10));
        assert_eq!(vdev_phys_offset(size, 1), Some((256 + 16) << 10));
        assert_eq!(
            vdev_phys_offset(size, 2),
            Some(size - (512 << 10) + (16 << 10))
        );
        assert_eq!(
            vdev_phys_offset(size, 3),
            Some(size - (256 << 10) + (16 << 10))
        );
        // The size is aligned down to 256 KiB first.
        assert_eq!(vdev_phys_offset(size + 1000, 3), vdev_phys_offset(size, 3));
        assert_eq!(vdev_phys_offset(512 << 10, 2), None);
    }

    #[test]
    fn a_sealed_label_parses_in_both_byte_orders() {
        for big_endian in [false, true] {
            let offset = 16 << 10;
            let b = vdev_phys(&config(42), offset, big_endian).unwrap();
            assert_eq!(b.len(), VDEV_PHYS_SIZE);
            let l = parse_label(&b, offset).unwrap();
            assert_eq!(l.config(), &config(42));
            assert_eq!(l.state(), PoolState::Exported);
            assert_eq!(l.pool_name(), Some("backup"));
            assert_eq!(l.pool_guid(), Some(POOL_GUID));
            assert_eq!(l.txg(), 42);
            assert_eq!(l.guid(), GUID);
            assert_eq!(l.top_guid(), Some(GUID));
            assert_eq!(l.hostid(), Some(0x8d2a_11c3));
            assert_eq!(l.hostname(), Some("nas"));
            assert_eq!(l.big_endian(), big_endian);
            // The trailer is in the writer's byte order, the XDR is not.
            let magic = &b[VDEV_PHYS_SIZE - 40..VDEV_PHYS_SIZE - 32];
            let want = if big_endian {
                ZEC_MAGIC.to_be_bytes()
            } else {
                ZEC_MAGIC.to_le_bytes()
            };
            assert_eq!(magic, want);
            // The checksum is bound to the offset.
            assert_eq!(
                parse_label(&b, offset + LABEL_SIZE),
                Err(LabelError::Checksum {
                    offset: offset + LABEL_SIZE
                })
            );
        }
    }

    /// The checksum computed independently of `checksum()`: SHA-256 over
    /// the region with the verifier in place, words read big-endian and
    /// stored in the writer's order.
    #[test]
    fn the_trailer_is_the_kernel_s_sha256_layout() {
        let offset = 0x1234_5000;
        for big_endian in [false, true] {
            let b = vdev_phys(&config(7), offset, big_endian).unwrap();
            let mut v = b.clone();
            let at = VDEV_PHYS_SIZE - 32;
            let verifier = [offset, 0, 0, 0];
            for (i, w) in verifier.iter().enumerate() {
                let bytes = if big_endian {
                    w.to_be_bytes()
                } else {
                    w.to_le_bytes()
                };
                v[at + 8 * i..at + 8 * i + 8].copy_from_slice(&bytes);
            }
            let digest = Sha256::digest(&v);
            for i in 0..4 {
                let word = u64::from_be_bytes(digest[8 * i..8 * i + 8].try_into().unwrap());
                let stored = b[at + 8 * i..at + 8 * i + 8].try_into().unwrap();
                let stored = if big_endian {
                    u64::from_be_bytes(stored)
                } else {
                    u64::from_le_bytes(stored)
                };
                assert_eq!(stored, word, "word {i}");
            }
        }
    }

    #[test]
    fn damage_is_refused_with_its_reason() {
        let offset = 16 << 10;
        let good = phys(&config(9), offset);
        assert!(parse_label(&good, offset).is_ok());
        // One flipped bit anywhere but the magic: a checksum failure.
        for at in [0, 100, 50_000, VDEV_PHYS_SIZE - 32, VDEV_PHYS_SIZE - 1] {
            let mut b = good.clone();
            b[at] ^= 0x10;
            assert_eq!(
                parse_label(&b, offset),
                Err(LabelError::Checksum { offset }),
                "byte {at}"
            );
        }
        let mut b = good.clone();
        b[VDEV_PHYS_SIZE - 40] ^= 1;
        assert_eq!(parse_label(&b, offset), Err(LabelError::NoMagic { offset }));
        assert_eq!(
            parse_label(&vec![0; VDEV_PHYS_SIZE], offset),
            Err(LabelError::Blank { offset })
        );
        assert_eq!(
            parse_label(&good[..39], offset),
            Err(LabelError::TooShort { offset, len: 39 })
        );
        assert_eq!(
            parse_label(&[], offset),
            Err(LabelError::TooShort { offset, len: 0 })
        );
        // Garbage under a good checksum: the nvlist is refused.
        let mut b = vec![0xa5; 4096];
        seal(&mut b, offset, false);
        assert!(matches!(
            parse_label(&b, offset),
            Err(LabelError::Nvlist {
                source: NvListError::Malformed { offset: 0, .. },
                ..
            })
        ));
        // A native-encoded list under a good checksum.
        let mut b = config(9).pack().unwrap();
        b.resize(8192, 0);
        seal(&mut b, offset, false);
        assert!(matches!(
            parse_label(&b, offset),
            Err(LabelError::Nvlist { .. })
        ));
    }

    fn field_error(c: &NvList) -> LabelError {
        parse_label(&phys(c, 0), 0).unwrap_err()
    }

    #[test]
    fn zpool_read_label_s_rules_are_applied() {
        let f = |field, reason| LabelError::Field {
            offset: 0,
            field,
            reason,
        };
        let mut c = config(9);
        c.remove("guid");
        assert_eq!(field_error(&c), f("guid", "is missing"));
        c.insert("guid", 0u64);
        assert_eq!(field_error(&c), f("guid", "is 0"));
        c.insert("guid", "1");
        assert_eq!(field_error(&c), f("guid", "is not a uint64"));
        let mut c = config(9);
        c.remove("state");
        assert_eq!(field_error(&c), f("state", "is missing"));
        for state in [5u64, 6, 7, 8, u64::MAX] {
            c.insert("state", state);
            assert_eq!(
                field_error(&c),
                LabelError::State {
                    offset: 0,
                    value: state
                }
            );
        }
        c.insert("state", 1u32);
        assert_eq!(field_error(&c), f("state", "is not a uint64"));
        let mut c = config(9);
        c.remove("txg");
        assert_eq!(field_error(&c), f("txg", "is missing"));
        c.insert("txg", 0u64);
        assert_eq!(field_error(&c), f("txg", "is 0"));
        let c = config(9).with("name", 5u64);
        assert_eq!(field_error(&c), f("name", "is not a string"));
        let c = config(9).with("hostname", vec!["a".to_string()]);
        assert_eq!(field_error(&c), f("hostname", "is not a string"));
        let c = config(9).with("hostid", "x");
        assert_eq!(field_error(&c), f("hostid", "is not a uint64"));
        let c = config(9).with("pool_guid", -1i64);
        assert_eq!(field_error(&c), f("pool_guid", "is not a uint64"));
        let c = config(9).with("top_guid", true);
        assert_eq!(field_error(&c), f("top_guid", "is not a uint64"));
        // Every state up to L2CACHE is valid.
        for state in 0..=4u64 {
            let l = parse_label(&phys(&config(9).with("state", state), 0), 0).unwrap();
            assert_eq!(l.state().raw(), state);
        }
    }

    #[test]
    fn spare_and_cache_labels_need_no_txg() {
        let l = parse_label(&phys(&spare(), 0), 0).unwrap();
        assert_eq!(l.state(), PoolState::Spare);
        assert_eq!((l.txg(), l.guid()), (0, GUID));
        assert_eq!(
            (l.pool_name(), l.pool_guid(), l.hostname()),
            (None, None, None)
        );
        let l = parse_label(&phys(&spare().with("state", 4u64), 0), 0).unwrap();
        assert_eq!(l.state(), PoolState::L2Cache);
        let l = parse_label(&phys(&spare().with("txg", 0u64), 0), 0).unwrap();
        assert_eq!(l.txg(), 0);
    }

    #[test]
    fn pool_states_map_the_c_values() {
        for v in 0..8 {
            assert_eq!(PoolState::from_raw(v).unwrap().raw(), v);
        }
        assert_eq!(PoolState::from_raw(8), None);
        assert_eq!(PoolState::from_raw(2), Some(PoolState::Destroyed));
        assert_eq!(PoolState::from_raw(7), Some(PoolState::PotentiallyActive));
    }

    // Label images in temporary files.

    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn temp(name: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("zfs-core-label-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempFile(p)
    }

    /// A sparse image of `size` bytes with the four labels written, label
    /// `l` at txg `txgs[l]` (big-endian for the labels in `big`).
    fn image(name: &str, size: u64, txgs: [u64; 4], big: &[usize]) -> TempFile {
        let t = temp(name);
        let f = File::create(&t.0).unwrap();
        f.set_len(size).unwrap();
        for (l, txg) in txgs.into_iter().enumerate() {
            let at = vdev_phys_offset(size, l).unwrap();
            let b = vdev_phys(&config(txg), at, big.contains(&l)).unwrap();
            f.write_all_at(&b, at).unwrap();
        }
        t
    }

    fn write_at(path: &Path, at: u64, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(bytes, at).unwrap();
    }

    /// 64 MiB and 300 KiB: not a multiple of 256 KiB, as devices need not be.
    const SIZE: u64 = (64 << 20) + (300 << 10);

    #[test]
    fn four_labels_are_read_and_the_highest_txg_is_best() {
        let t = image("four", SIZE, [10, 10, 12, 11], &[3]);
        let d = read_labels(&t.0).unwrap();
        assert_eq!((d.path(), d.size()), (t.0.as_path(), SIZE));
        let txgs: Vec<u64> = d
            .labels()
            .iter()
            .map(|l| l.as_ref().unwrap().txg())
            .collect();
        assert_eq!(txgs, [10, 10, 12, 11]);
        assert!(d.labels()[3].as_ref().unwrap().big_endian());
        let best = d.best().unwrap();
        assert_eq!((best.txg(), best.pool_name()), (12, Some("backup")));
        assert!(std::ptr::eq(best, d.labels()[2].as_ref().unwrap()));
        // Equal txgs: the first.
        let t = image("equal", SIZE, [5, 5, 5, 5], &[]);
        let d = read_labels(&t.0).unwrap();
        assert!(std::ptr::eq(
            d.best().unwrap(),
            d.labels()[0].as_ref().unwrap()
        ));
        let text = d.to_string();
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("label 3: Exported pool \"backup\""), "{text}");
        assert!(text.contains(&t.0.display().to_string()), "{text}");
    }

    #[test]
    fn blank_and_damaged_labels_are_reported_per_label() {
        let t = image("damaged", SIZE, [20, 20, 20, 20], &[]);
        let at = |l| vdev_phys_offset(SIZE, l).unwrap();
        // Label 0 wiped, one byte of label 1's nvlist flipped.
        write_at(&t.0, at(0), &vec![0; VDEV_PHYS_SIZE]);
        write_at(&t.0, at(1) + 100, &[0xff]);
        let d = read_labels(&t.0).unwrap();
        assert_eq!(d.labels()[0], Err(LabelError::Blank { offset: at(0) }));
        assert_eq!(d.labels()[1], Err(LabelError::Checksum { offset: at(1) }));
        assert_eq!(d.best().unwrap().txg(), 20);
        assert!(d
            .to_string()
            .contains("label 1: vdev label at byte 278528 fails its checksum"));
        // All wiped: all blank, no best.
        for l in 0..4 {
            write_at(&t.0, at(l), &vec![0; VDEV_PHYS_SIZE]);
        }
        let d = read_labels(&t.0).unwrap();
        for (l, r) in d.labels().iter().enumerate() {
            assert_eq!(r, &Err(LabelError::Blank { offset: at(l) }));
        }
        assert!(d.best().is_none());
    }

    #[test]
    fn a_truncated_image_keeps_its_front_labels() {
        let t = image("truncated", SIZE, [30, 30, 31, 31], &[]);
        File::options()
            .write(true)
            .open(&t.0)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let d = read_labels(&t.0).unwrap();
        assert!(d.labels()[0].is_ok() && d.labels()[1].is_ok());
        // Labels 2 and 3 are looked for where the shorter size puts them:
        // 2 on zeros, 3 where label 2 was (64 MiB less 240 KiB), and it is
        // valid there, being bound to its offset, not to its number.
        assert!(matches!(d.labels()[2], Err(LabelError::Blank { .. })));
        assert_eq!(vdev_phys_offset(SIZE, 2), vdev_phys_offset(64 << 20, 3));
        assert_eq!(d.labels()[3].as_ref().unwrap().txg(), 31);
        assert_eq!(d.best().unwrap().txg(), 31);
        // Too small for four labels.
        let f = File::options().write(true).open(&t.0).unwrap();
        f.set_len(MIN_DEVICE_SIZE - 1).unwrap();
        assert!(matches!(
            read_labels(&t.0),
            Err(LabelReadError::TooSmall { size, .. }) if size == MIN_DEVICE_SIZE - 1
        ));
    }

    #[test]
    fn unreadable_paths_are_typed_errors_naming_the_path() {
        let t = temp("small");
        File::create(&t.0).unwrap().set_len(4 << 20).unwrap();
        let e = read_labels(&t.0).unwrap_err();
        assert!(matches!(e, LabelReadError::TooSmall { size, .. } if size == 4 << 20));
        assert!(e.to_string().contains(&*t.0.to_string_lossy()), "{e}");
        let missing = t.0.with_extension("missing");
        let e = read_labels(&missing).unwrap_err();
        match &e {
            LabelReadError::Io {
                path,
                operation: "open",
                source,
            } => {
                assert_eq!(path, &missing);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        let fifo = temp("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo.0).status();
        assert!(made.unwrap().success());
        for p in [Path::new("/dev/null"), Path::new("/"), &fifo.0] {
            assert!(
                matches!(
                    read_labels(p),
                    Err(LabelReadError::NotFileOrBlockDevice { .. })
                ),
                "{p:?}"
            );
        }
    }

    #[test]
    fn direct_and_cached_reads_agree() {
        let t = image("direct", SIZE, [3, 4, 5, 6], &[1]);
        let cached = read_all(&open(&t.0, false).unwrap(), SIZE, false).unwrap();
        let d = read_labels(&t.0).unwrap();
        assert_eq!(d.labels(), &cached);
        // O_DIRECT where this file system allows it.
        if let Ok(f) = open(&t.0, true) {
            match read_all(&f, SIZE, true) {
                Ok(direct) => assert_eq!(direct, cached),
                Err((_, e)) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
            }
        }
    }

    #[test]
    fn a_label_image_written_by_hand_matches_the_builder() {
        // The config packed by libnvpair, placed and sealed by hand.
        let offset = 16 << 10;
        let mut b = config(77).pack_xdr().unwrap();
        b.resize(VDEV_PHYS_SIZE, 0);
        seal(&mut b, offset, false);
        assert_eq!(b, phys(&config(77), offset));
        let mut f = std::io::Cursor::new(Vec::new());
        f.write_all(&b).unwrap();
        assert_eq!(parse_label(f.get_ref(), offset).unwrap().txg(), 77);
    }

    /// The committed fuzz seeds are the ones the builders make
    /// (`ZFS_FUZZ_SEEDS_UPDATE=1` rewrites them instead).
    #[test]
    fn the_committed_fuzz_seeds_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/vdev_label");
        for (name, bytes) in super::fuzzing::seeds().unwrap() {
            let path = dir.join(name);
            if std::env::var_os("ZFS_FUZZ_SEEDS_UPDATE").is_some() {
                std::fs::write(&path, &bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap();
            assert!(
                committed == bytes,
                "{} differs: ZFS_FUZZ_SEEDS_UPDATE=1",
                path.display()
            );
        }
    }

    #[test]
    fn the_fuzz_seeds_parse() {
        for (name, config, big_endian) in super::fuzzing::seed_configs() {
            let mut b = config.pack_xdr().unwrap();
            b.resize(b.len() + ECK_SIZE, 0);
            seal(&mut b, 16 << 10, big_endian);
            let l = parse_label(&b, 16 << 10).unwrap();
            assert_eq!(
                (l.config(), l.big_endian()),
                (&config, big_endian),
                "{name}"
            );
        }
    }
}
