//! Filesystems and volumes: typed handles, lookup, listing, properties, and
//! the dataset operations (create, destroy, rename, clone, promote, rollback).
//!
//! Listing uses the kernel's list-next ioctls with `zc_nvlist_dst = 0`, which
//! fill GUID and createtxg without building a property list. Snapshots are
//! listed in simple mode (`zc_simple`, which does not open each snapshot)
//! where the module fills GUIDs in it (OpenZFS 2.2 and later), in full mode
//! otherwise: see [`Features::simple_listing_fills_guid`](crate::Features::simple_listing_fills_guid).
//!
//! ```no_run
//! use zfs_core::{DatasetName, NvList, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let home: DatasetName = "tank/home".parse()?;
//! zfs.create_filesystem(&home, &NvList::new())?;
//! for child in zfs.children(&home.pool().root())? {
//!     println!("{} ({:?})", child.name(), child.dataset_type());
//! }
//! let props = zfs.properties(&home)?;
//! println!("written since last snapshot: {:?}", props.written);
//! # Ok::<(), zfs_core::Error>(())
//! ```

use zfs_sys::ioctl::{
    DMU_OST_ZFS, DMU_OST_ZVOL, ZFS_IOC_DATASET_LIST_NEXT, ZFS_IOC_OBJSET_STATS,
    ZFS_IOC_SNAPSHOT_LIST_NEXT,
};

use crate::error::{Errno, Error, ErrorKind, Result};
use crate::ffi::{self, IoctlCmd};
use crate::name::{AnyName, DatasetName, SnapshotName};
use crate::nvlist::NvList;
use crate::snapshot::Snapshot;
use crate::Zfs;

/// The kind of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetType {
    Filesystem,
    Volume,
    Snapshot,
    Bookmark,
}

impl DatasetType {
    /// The type of an objset of `dmu_objset_type_t` `t` (as a send
    /// stream's BEGIN record or the `type` property gives it): a filesystem
    /// or a volume, None for another.
    pub fn of_objset(t: u64) -> Option<DatasetType> {
        match u32::try_from(t).ok()? {
            DMU_OST_ZFS => Some(DatasetType::Filesystem),
            DMU_OST_ZVOL => Some(DatasetType::Volume),
            _ => None,
        }
    }
}

/// A filesystem: its name, GUID and creation txg at lookup time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filesystem {
    name: DatasetName,
    guid: u64,
    createtxg: u64,
}

/// A volume (zvol): its name, GUID and creation txg at lookup time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Volume {
    name: DatasetName,
    guid: u64,
    createtxg: u64,
}

macro_rules! accessors {
    ($t:ty) => {
        impl $t {
            /// The dataset's name.
            pub fn name(&self) -> &DatasetName {
                &self.name
            }
            /// The dataset's GUID, unique and stable across renames.
            pub fn guid(&self) -> u64 {
                self.guid
            }
            /// The transaction group in which it was created.
            pub fn createtxg(&self) -> u64 {
                self.createtxg
            }
        }
    };
}
accessors!(Filesystem);
accessors!(Volume);

/// A filesystem or a volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dataset {
    Filesystem(Filesystem),
    Volume(Volume),
}

impl Dataset {
    pub fn name(&self) -> &DatasetName {
        match self {
            Dataset::Filesystem(f) => f.name(),
            Dataset::Volume(v) => v.name(),
        }
    }
    pub fn guid(&self) -> u64 {
        match self {
            Dataset::Filesystem(f) => f.guid(),
            Dataset::Volume(v) => v.guid(),
        }
    }
    pub fn createtxg(&self) -> u64 {
        match self {
            Dataset::Filesystem(f) => f.createtxg(),
            Dataset::Volume(v) => v.createtxg(),
        }
    }
    pub fn dataset_type(&self) -> DatasetType {
        match self {
            Dataset::Filesystem(_) => DatasetType::Filesystem,
            Dataset::Volume(_) => DatasetType::Volume,
        }
    }
}

/// The "fast stats" the kernel fills on every stats and list ioctl.
#[derive(Debug, Clone)]
pub(crate) struct FastStats {
    pub name: String,
    pub guid: u64,
    pub createtxg: u64,
    pub objset_type: u32,
    pub is_snapshot: bool,
    /// Partially received (an interrupted or running receive).
    pub inconsistent: bool,
}

impl FastStats {
    fn from_cmd(zc: &IoctlCmd) -> FastStats {
        let s = zc.objset_stats();
        FastStats {
            name: zc.name(),
            guid: s.dds_guid,
            createtxg: s.dds_creation_txg,
            objset_type: s.dds_type,
            is_snapshot: s.dds_is_snapshot != 0,
            inconsistent: s.dds_inconsistent != 0,
        }
    }
}

/// Typed properties of a dataset, snapshot or volume, as the kernel reports
/// them through `ZFS_IOC_OBJSET_STATS`.
///
/// Properties at their default value are absent from the kernel's list (for
/// example `mountpoint` when it is the default `/<name>`): those fields are
/// `None`. Everything the kernel returned is in [`raw`](Self::raw).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Properties {
    /// Bytes written since the previous snapshot (`written`).
    pub written: Option<u64>,
    /// The token of an interrupted resumable receive.
    pub receive_resume_token: Option<String>,
    /// `Off` when the kernel does not list it (its default).
    pub encryption: Encryption,
    /// The dataset whose key this one uses (`encryptionroot`).
    pub encryption_root: Option<String>,
    pub key_status: Option<KeyStatus>,
    pub readonly: Option<bool>,
    pub mountpoint: Option<String>,
    pub used: Option<u64>,
    pub referenced: Option<u64>,
    /// Creation time, seconds since the epoch.
    pub creation: Option<u64>,
    /// When a snapshot was last created, destroyed or renamed, seconds since
    /// the epoch (0: not known). A property from OpenZFS 2.2 on: `None` on
    /// modules without it, which
    /// [`Features::has_dataset_property`](crate::Features::has_dataset_property)`("snapshots_changed")`
    /// tells apart.
    pub snapshots_changed: Option<u64>,
    /// A filesystem or a volume (for a snapshot: of which), from the
    /// kernel's `type` entry; None when it lists none.
    pub dataset_type: Option<DatasetType>,
    /// The kernel's full property list: `{name: {value, source}}`.
    pub raw: NvList,
}

/// The `encryption` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encryption {
    Off,
    Aes128Ccm,
    Aes192Ccm,
    Aes256Ccm,
    Aes128Gcm,
    Aes192Gcm,
    Aes256Gcm,
    /// A value this crate does not know.
    Other(u64),
}

impl Encryption {
    fn from_index(v: u64) -> Self {
        match v {
            2 => Encryption::Off,
            3 => Encryption::Aes128Ccm,
            4 => Encryption::Aes192Ccm,
            5 => Encryption::Aes256Ccm,
            6 => Encryption::Aes128Gcm,
            7 => Encryption::Aes192Gcm,
            8 => Encryption::Aes256Gcm,
            other => Encryption::Other(other),
        }
    }

    /// Whether the dataset is encrypted.
    pub fn is_encrypted(self) -> bool {
        self != Encryption::Off
    }
}

/// The `keystatus` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyStatus {
    None,
    Unavailable,
    Available,
    Other(u64),
}

impl KeyStatus {
    fn from_index(v: u64) -> Self {
        match v {
            0 => KeyStatus::None,
            1 => KeyStatus::Unavailable,
            2 => KeyStatus::Available,
            other => KeyStatus::Other(other),
        }
    }
}

/// Encodes the property's number as the kernel gives it, so `Other` of a
/// known number decodes as that variant.
#[cfg(feature = "serde")]
macro_rules! serde_as_index {
    ($t:ident { $($variant:ident = $n:literal),* $(,)? }) => {
        /// The property's number, as the kernel reports it.
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_u64(match *self {
                    $($t::$variant => $n,)*
                    $t::Other(n) => n,
                })
            }
        }

        /// Any number: those this crate does not know are `Other`.
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                <u64 as serde::Deserialize>::deserialize(deserializer).map($t::from_index)
            }
        }
    };
}

#[cfg(feature = "serde")]
serde_as_index!(Encryption {
    Off = 2,
    Aes128Ccm = 3,
    Aes192Ccm = 4,
    Aes256Ccm = 5,
    Aes128Gcm = 6,
    Aes192Gcm = 7,
    Aes256Gcm = 8,
});

#[cfg(feature = "serde")]
serde_as_index!(KeyStatus {
    None = 0,
    Unavailable = 1,
    Available = 2,
});

impl Properties {
    fn from_raw(target: &str, raw: NvList) -> Result<Properties> {
        let shape = |e| Error::shape("ZFS_IOC_OBJSET_STATS", target, e);
        let value = |name: &str| raw.get_nvlist(name).ok();
        let num = |name: &str| -> Result<Option<u64>> {
            value(name)
                .map(|l| l.get_u64("value"))
                .transpose()
                .map_err(shape)
        };
        let text = |name: &str| -> Result<Option<String>> {
            value(name)
                .map(|l| l.get_str("value").map(str::to_owned))
                .transpose()
                .map_err(shape)
        };
        Ok(Properties {
            written: num("written")?,
            receive_resume_token: text("receive_resume_token")?,
            encryption: num("encryption")?.map_or(Encryption::Off, Encryption::from_index),
            encryption_root: text("encryptionroot")?,
            key_status: num("keystatus")?.map(KeyStatus::from_index),
            readonly: num("readonly")?.map(|v| v != 0),
            mountpoint: text("mountpoint")?,
            used: num("used")?,
            referenced: num("referenced")?,
            creation: num("creation")?,
            snapshots_changed: num("snapshots_changed")?,
            dataset_type: num("type")?.and_then(DatasetType::of_objset),
            raw,
        })
    }

    /// Properties read from a kernel-shaped list `{name: {value, source}}`
    /// (as [`Zfs::properties`] returns in [`raw`](Self::raw)); `target`
    /// names the dataset in errors. For test doubles and remote sides.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] when a known property has a value of the wrong type.
    pub fn from_nvlist(target: &str, raw: NvList) -> Result<Properties> {
        Self::from_raw(target, raw)
    }

    /// Where a property's value comes from, as the kernel says it: the
    /// dataset's own name when set locally, `$recvd` when received, the
    /// ancestor's name when inherited.
    pub fn source(&self, property: &str) -> Option<&str> {
        self.raw.get_nvlist(property).ok()?.get_str("source").ok()
    }
}

/// Only [`raw`](Properties::raw) crosses: the typed fields are rebuilt from it.
#[cfg(feature = "serde")]
impl serde::Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.raw, serializer)
    }
}

/// An [`NvList`], read as [`Properties::from_nvlist`] does.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Properties {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <NvList as serde::Deserialize>::deserialize(deserializer)?;
        Properties::from_raw("", raw)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid properties: {e}")))
    }
}

const PROPS_BUFFER_START: usize = 16 << 10;
const PROPS_BUFFER_MAX: usize = 64 << 20;

impl Zfs {
    /// Whether a dataset, snapshot or bookmark exists.
    pub fn exists(&self, name: &impl AnyName) -> bool {
        // lzc_exists goes through the objset-stats ioctl, which does not
        // know bookmarks.
        match crate::name::BookmarkName::new(name.as_str()) {
            Ok(mark) => self.bookmark_info(&mark).is_ok(),
            Err(_) => ffi::lzc_exists(&name.to_c_name()),
        }
    }

    /// The fast stats of one dataset or snapshot, and optionally its
    /// property list.
    pub(crate) fn objset_stats(
        &self,
        name: &str,
        with_props: bool,
    ) -> Result<(FastStats, Option<NvList>)> {
        const OP: &str = "ZFS_IOC_OBJSET_STATS";
        if !with_props {
            let mut zc = IoctlCmd::new(name);
            zc.ioctl(self.dev(), ZFS_IOC_OBJSET_STATS)
                .map_err(|e| Error::from_errno(OP, name, e))?;
            return Ok((FastStats::from_cmd(&zc), None));
        }
        let (zc, props) = self.ioctl_nvlist_out(
            ZFS_IOC_OBJSET_STATS,
            OP,
            name,
            PROPS_BUFFER_START,
            PROPS_BUFFER_MAX,
        )?;
        Ok((FastStats::from_cmd(&zc), Some(props)))
    }

    /// Runs an ioctl whose reply is an nvlist in `zc_nvlist_dst`, growing
    /// the buffer from `start` up to `max` bytes while the kernel says
    /// ENOMEM (it reports the size it needs). Returns the command as the
    /// kernel left it and the list (empty when the kernel filled none).
    pub(crate) fn ioctl_nvlist_out(
        &self,
        request: u32,
        op: &'static str,
        name: &str,
        start: usize,
        max: usize,
    ) -> Result<(IoctlCmd, NvList)> {
        let mut size = start.min(max);
        loop {
            let mut zc = IoctlCmd::new(name);
            zc.set_dst_capacity(size);
            match zc.ioctl(self.dev(), request) {
                Ok(()) => {
                    let list = match zc.dst_reply() {
                        Some(bytes) => NvList::unpack(bytes).map_err(|e| {
                            Error::invalid(
                                op,
                                name,
                                ErrorKind::UnexpectedShape,
                                format!("the reply nvlist does not unpack: {e}"),
                            )
                        })?,
                        None => NvList::new(),
                    };
                    return Ok((zc, list));
                }
                Err(Errno(libc::ENOMEM)) if size < max => {
                    let needed = usize::try_from(zc.dst_size()).unwrap_or(max);
                    size = needed.max(size.saturating_mul(2)).min(max);
                }
                Err(e) => return Err(Error::from_errno(op, name, e)),
            }
        }
    }

    /// Looks up a filesystem or volume.
    pub fn dataset(&self, name: &DatasetName) -> Result<Dataset> {
        let (stats, _) = self.objset_stats(name.as_str(), false)?;
        dataset_from_stats(name.clone(), &stats).ok_or_else(|| {
            Error::invalid(
                "ZFS_IOC_OBJSET_STATS",
                name.as_str(),
                ErrorKind::InvalidArgument,
                format!(
                    "not a filesystem or volume (objset type {})",
                    stats.objset_type
                ),
            )
        })
    }

    /// Looks up a filesystem; a volume gives [`ErrorKind::InvalidArgument`].
    pub fn filesystem(&self, name: &DatasetName) -> Result<Filesystem> {
        match self.dataset(name)? {
            Dataset::Filesystem(f) => Ok(f),
            Dataset::Volume(_) => Err(Error::invalid(
                "ZFS_IOC_OBJSET_STATS",
                name.as_str(),
                ErrorKind::InvalidArgument,
                "is a volume, not a filesystem",
            )),
        }
    }

    /// Looks up a snapshot.
    pub fn snapshot_info(&self, name: &SnapshotName) -> Result<Snapshot> {
        let (stats, _) = self.objset_stats(name.as_str(), false)?;
        Ok(Snapshot::new(name.clone(), stats.guid, stats.createtxg))
    }

    /// The properties of a dataset or snapshot.
    pub fn properties(&self, name: &impl AnyName) -> Result<Properties> {
        let (_, props) = self.objset_stats(name.as_str(), true)?;
        Properties::from_raw(name.as_str(), props.unwrap_or_default())
    }

    /// One step of a list-next ioctl: the next entry after `cookie`, if any.
    fn list_next(
        &self,
        request: u32,
        op: &'static str,
        parent: &str,
        cookie: u64,
        simple: bool,
        filter: Option<&[u8]>,
    ) -> Result<Option<(FastStats, u64)>> {
        let mut zc = IoctlCmd::new(parent);
        zc.set_cookie(cookie);
        zc.set_simple(simple);
        if let Some(packed) = filter {
            zc.set_src(packed.to_vec());
        }
        #[cfg(feature = "testing")]
        if request == ZFS_IOC_SNAPSHOT_LIST_NEXT {
            self.features
                .snapshot_list_ioctls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match zc.ioctl(self.dev(), request) {
            Ok(()) => Ok(Some((FastStats::from_cmd(&zc), zc.cookie()))),
            Err(Errno(libc::ESRCH)) => Ok(None),
            Err(e) => Err(Error::from_errno(op, parent, e)),
        }
    }

    /// The direct children (filesystems and volumes) of a dataset, in the
    /// kernel's order.
    pub fn children(&self, parent: &DatasetName) -> Result<Vec<Dataset>> {
        let out = self.children_quick(parent)?;
        if out.is_empty() {
            // The list ioctl ends with ESRCH for a missing parent too.
            self.objset_stats(parent.as_str(), false)?;
        }
        Ok(out)
    }

    /// Like [`children`](Self::children), without the stats call that
    /// tells a parent without children from a missing one: a missing parent
    /// also gives an empty list. For tree walks, where each parent was just
    /// listed (that call is a third of a walk's kernel calls when most
    /// datasets are leaves).
    pub fn children_quick(&self, parent: &DatasetName) -> Result<Vec<Dataset>> {
        const OP: &str = "ZFS_IOC_DATASET_LIST_NEXT";
        let mut out = Vec::new();
        let mut cookie = 0;
        while let Some((stats, next)) = self.list_next(
            ZFS_IOC_DATASET_LIST_NEXT,
            OP,
            parent.as_str(),
            cookie,
            false,
            None,
        )? {
            cookie = next;
            let name = DatasetName::new(stats.name.clone())?;
            // Other objset types (none exist in practice) are skipped.
            if let Some(d) = dataset_from_stats(name, &stats) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// A dataset and all its descendants, parents before children.
    pub fn descendants(&self, root: &DatasetName) -> Result<Vec<Dataset>> {
        let mut out = vec![self.dataset(root)?];
        let mut i = 0;
        while i < out.len() {
            // The root was checked and each other parent was just listed.
            let children = self.children_quick(out[i].name())?;
            // Keep depth-first order: insert children right after their parent's subtree start.
            let at = i + 1;
            for (k, c) in children.into_iter().enumerate() {
                out.insert(at + k, c);
            }
            i += 1;
        }
        Ok(out)
    }

    /// The snapshots of a dataset, oldest first (by createtxg), each with
    /// its GUID and createtxg.
    ///
    /// Simple mode skips opening each snapshot's objset; from OpenZFS 2.2 it
    /// still fills GUID and createtxg, OpenZFS 2.1 fills only the name. The
    /// first snapshot a listing returns tells which (a 2.1 module costs that
    /// one simple-mode call, once per handle); from then on a 2.1 module is
    /// listed in full mode directly.
    pub fn snapshots(&self, dataset: &DatasetName) -> Result<Vec<Snapshot>> {
        self.snapshots_created(dataset, 0)
    }

    /// The snapshots of a dataset created in or after transaction group
    /// `min_createtxg`, oldest first. The kernel skips the older ones inside
    /// one list call (`snap_iter_min_txg`), so this costs one call per
    /// snapshot returned, plus one, however many older snapshots there are.
    ///
    /// ```no_run
    /// # let zfs = zfs_core::Zfs::open()?;
    /// let fs: zfs_core::DatasetName = "tank/home".parse()?;
    /// let base = zfs.snapshot_info(&fs.snapshot("monday")?)?;
    /// // `monday` and every snapshot after it.
    /// let since = zfs.snapshots_created(&fs, base.createtxg())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshots_created(
        &self,
        dataset: &DatasetName,
        min_createtxg: u64,
    ) -> Result<Vec<Snapshot>> {
        let filter = if min_createtxg > 0 {
            let list = NvList::new().with("snap_iter_min_txg", min_createtxg);
            Some(list.pack()?)
        } else {
            None
        };
        let filter = filter.as_deref();
        let mut list = None;
        if self.features.simple_listing_fills_guid() != Some(false) {
            list = self.list_snapshots(dataset, true, filter)?;
        }
        let mut list = match list {
            Some(list) => list,
            None => self
                .list_snapshots(dataset, false, filter)?
                .unwrap_or_default(),
        };
        // The kernel filters; this only guards against one that ignored it.
        list.retain(|s| s.createtxg() >= min_createtxg);
        Ok(list)
    }

    /// One pass of snapshot listing; None when simple mode gave no GUIDs.
    fn list_snapshots(
        &self,
        dataset: &DatasetName,
        simple: bool,
        filter: Option<&[u8]>,
    ) -> Result<Option<Vec<Snapshot>>> {
        const OP: &str = "ZFS_IOC_SNAPSHOT_LIST_NEXT";
        let mut out = Vec::new();
        let mut cookie = 0;
        while let Some((stats, next)) = self.list_next(
            ZFS_IOC_SNAPSHOT_LIST_NEXT,
            OP,
            dataset.as_str(),
            cookie,
            simple,
            filter,
        )? {
            if simple {
                // The command starts zeroed: a snapshot's GUID and createtxg
                // are never 0, so zeros after success mean "not filled".
                let filled = stats.guid != 0 && stats.createtxg != 0;
                self.features.record_simple_listing(filled);
                if !filled {
                    return Ok(None);
                }
            }
            cookie = next;
            let name = SnapshotName::new(stats.name.clone())?;
            out.push(Snapshot::new(name, stats.guid, stats.createtxg));
        }
        if out.is_empty() {
            // The list ioctl ends with ESRCH for a missing dataset too.
            self.objset_stats(dataset.as_str(), false)?;
        }
        out.sort_by_key(|s| s.createtxg());
        Ok(Some(out))
    }

    /// Creates a filesystem with the given properties (string or integer
    /// values, as the kernel expects them).
    pub fn create_filesystem(&self, name: &DatasetName, props: &NvList) -> Result<()> {
        ffi::lzc_create(&name.to_c_name(), false, props, None)
            .map_err(|e| Error::from_errno("lzc_create", name.as_str(), e))
    }

    /// Creates an encrypted filesystem. `props` must set `encryption`,
    /// `keyformat` and `keylocation`; `wrapping_key` is the raw 32-byte key
    /// (for `keyformat=raw`).
    pub fn create_encrypted_filesystem(
        &self,
        name: &DatasetName,
        props: &NvList,
        wrapping_key: &[u8],
    ) -> Result<()> {
        ffi::lzc_create(&name.to_c_name(), false, props, Some(wrapping_key))
            .map_err(|e| Error::from_errno("lzc_create", name.as_str(), e))
    }

    /// Creates a volume of `size` bytes.
    pub fn create_volume(&self, name: &DatasetName, size: u64, props: &NvList) -> Result<()> {
        let mut p = props.clone();
        p.insert("volsize", size);
        if !p.contains_key("volblocksize") {
            p.insert("volblocksize", 16u64 << 10);
        }
        ffi::lzc_create(&name.to_c_name(), true, &p, None)
            .map_err(|e| Error::from_errno("lzc_create", name.as_str(), e))
    }

    /// Destroys a filesystem or volume that has no children and no
    /// snapshots. (Snapshots go through [`Zfs::destroy_snapshots`].)
    pub fn destroy(&self, name: &DatasetName) -> Result<()> {
        ffi::lzc_destroy(&name.to_c_name())
            .map_err(|e| Error::from_errno("lzc_destroy", name.as_str(), e))
    }

    /// Renames a filesystem or volume within its pool.
    pub fn rename(&self, from: &DatasetName, to: &DatasetName) -> Result<()> {
        ffi::lzc_rename(&from.to_c_name(), &to.to_c_name())
            .map_err(|e| Error::from_errno("lzc_rename", format!("{from} -> {to}"), e))
    }

    /// Creates a clone of `origin` named `name`.
    pub fn clone_snapshot(
        &self,
        origin: &SnapshotName,
        name: &DatasetName,
        props: &NvList,
    ) -> Result<()> {
        ffi::lzc_clone(&name.to_c_name(), &origin.to_c_name(), props)
            .map_err(|e| Error::from_errno("lzc_clone", format!("{origin} -> {name}"), e))
    }

    /// Promotes a clone. On a snapshot-name conflict the error's target names
    /// the conflicting snapshot.
    pub fn promote(&self, clone: &DatasetName) -> Result<()> {
        ffi::lzc_promote(&clone.to_c_name()).map_err(|(e, conflict)| {
            let target = if conflict.is_empty() {
                clone.to_string()
            } else {
                format!("{clone} (conflicting snapshot {conflict})")
            };
            Error::from_errno("lzc_promote", target, e)
        })
    }

    /// Rolls a dataset back to its latest snapshot, discarding changes since;
    /// returns that snapshot's name.
    pub fn rollback(&self, dataset: &DatasetName) -> Result<SnapshotName> {
        let name = ffi::lzc_rollback(&dataset.to_c_name())
            .map_err(|e| Error::from_errno("lzc_rollback", dataset.as_str(), e))?;
        Ok(SnapshotName::new(name)?)
    }

    /// Rolls back to `snapshot`, which must be the dataset's latest snapshot
    /// (otherwise [`ErrorKind::HasNewerSnapshots`], and nothing changes:
    /// destroy the newer snapshots first).
    pub fn rollback_to(&self, snapshot: &SnapshotName) -> Result<()> {
        const OP: &str = "lzc_rollback_to";
        ffi::lzc_rollback_to(&snapshot.dataset().to_c_name(), &snapshot.to_c_name()).map_err(|e| {
            // The kernel's EEXIST here: only intervening snapshots are in the way.
            if e == Errno(libc::EEXIST) {
                Error::Zfs {
                    operation: OP,
                    target: snapshot.to_string(),
                    kind: ErrorKind::HasNewerSnapshots,
                    errno: e,
                }
            } else {
                Error::from_errno(OP, snapshot.as_str(), e)
            }
        })
    }
}

fn dataset_from_stats(name: DatasetName, stats: &FastStats) -> Option<Dataset> {
    if stats.is_snapshot {
        return None;
    }
    match stats.objset_type {
        DMU_OST_ZFS => Some(Dataset::Filesystem(Filesystem {
            name,
            guid: stats.guid,
            createtxg: stats.createtxg,
        })),
        DMU_OST_ZVOL => Some(Dataset::Volume(Volume {
            name,
            guid: stats.guid,
            createtxg: stats.createtxg,
        })),
        _ => None,
    }
}
