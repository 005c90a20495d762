//! Finding pools on devices that are not imported, importing them without
//! mounting anything, and exporting them again: what `zpool import -d DIR
//! -N` and `zpool export` do, in process.
//!
//! Discovery follows libzutil's `zpool_find_import`: read every device's
//! labels, keep per top-level vdev the label of the newest transaction
//! group, assemble the pool's vdev tree (with `missing` and `hole`
//! placeholders where a top-level vdev was not found), point every leaf at
//! the path it was found under, and let the kernel complete the
//! configuration (`ZFS_IOC_POOL_TRYIMPORT`), which also gives each vdev's
//! state. Import (`ZFS_IOC_POOL_IMPORT`) refuses, as `zpool import` does, a
//! pool that was last used by another system and not exported there,
//! unless forced.
//!
//! ```no_run
//! use zfs_core::pool::{ImportOptions, SearchPaths};
//! use zfs_core::Zfs;
//!
//! let zfs = Zfs::open()?;
//! let found = zfs.find_importable_pools(&SearchPaths::new(["/dev/disk/by-id"]))?;
//! for pool in found.pools() {
//!     println!("{} {:#x} {}", pool.name(), pool.guid(), pool.state());
//! }
//! if let Some(pool) = found.pools().iter().find(|p| p.name().as_str() == "pipe") {
//!     zfs.import(pool, &ImportOptions::new())?; // nothing is mounted
//!     // … sync …
//!     zfs.export(pool.name(), false)?;
//! }
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use zfs_sys::ioctl::{ZFS_IOC_POOL_EXPORT, ZFS_IOC_POOL_IMPORT, ZFS_IOC_POOL_TRYIMPORT};

use super::label::{read_labels, DeviceLabels, Label, LabelError, PoolState};
use super::vdev::{Vdev, VdevState};
use super::Pool;
use crate::error::{Error, ErrorKind, Result};
use crate::ffi::IoctlCmd;
use crate::name::PoolName;
use crate::nvlist::{NvList, NvValue};
use crate::Zfs;

/// `ZFS_IMPORT_ANY_HOST`: import a pool last used by another system.
const ZFS_IMPORT_ANY_HOST: u64 = 0x2;
/// `mmp_state_t`: `MMP_STATE_ACTIVE` 0, `MMP_STATE_INACTIVE` 1,
/// `MMP_STATE_NO_HOSTID` 2.
const MMP_STATE_ACTIVE: u64 = 0;
const MMP_STATE_INACTIVE: u64 = 1;
const MMP_STATE_NO_HOSTID: u64 = 2;
/// `HOSTID_MASK`: hostids are 32 bits.
const HOSTID_MASK: u64 = 0xffff_ffff;
/// The default place to look for backup drives.
pub const DEFAULT_SEARCH_PATH: &str = "/dev/disk/by-id";

/// Where to look for pool devices: directories (their entries, not
/// recursively: files and block devices, symlinks followed) and single
/// files or devices, like `zpool import -d`. Earlier entries are preferred
/// when a device is found under several names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPaths {
    paths: Vec<PathBuf>,
}

impl SearchPaths {
    pub fn new<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> SearchPaths {
        SearchPaths {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl Default for SearchPaths {
    /// [`DEFAULT_SEARCH_PATH`]: `/dev/disk/by-id`.
    fn default() -> Self {
        SearchPaths::new([DEFAULT_SEARCH_PATH])
    }
}

/// Who last used a pool, from its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastHost {
    /// The system's hostid (0: none was set).
    pub hostid: u64,
    /// Its host name, if the label has one.
    pub hostname: Option<String>,
}

/// A pool found on devices and not imported here, ready for
/// [`Zfs::import`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImportablePool {
    name: PoolName,
    guid: u64,
    pool_state: PoolState,
    root: Vdev,
    last_host: Option<LastHost>,
    host_check: HostCheck,
    devices: Vec<PathBuf>,
    config: NvList,
}

impl ImportablePool {
    pub fn name(&self) -> &PoolName {
        &self.name
    }

    pub fn guid(&self) -> u64 {
        self.guid
    }

    /// The pool's health if imported now, as the kernel judged it
    /// (`ONLINE`, `DEGRADED` with a mirror side missing, `UNAVAIL`, …).
    pub fn state(&self) -> VdevState {
        self.root.state()
    }

    /// How the pool was left: [`PoolState::Exported`], or
    /// [`PoolState::Active`] when it was not exported (unplugged, or its
    /// system crashed).
    pub fn pool_state(&self) -> PoolState {
        self.pool_state
    }

    /// The vdev tree, with each vdev's state as the kernel found it.
    pub fn root(&self) -> &Vdev {
        &self.root
    }

    /// The system that last used the pool, if the labels name one.
    pub fn last_host(&self) -> Option<&LastHost> {
        self.last_host.as_ref()
    }

    /// Whether the pool was last used by another system and not exported
    /// there (or is protected by `multihost`): [`Zfs::import`] then needs
    /// [`ImportOptions::force`].
    pub fn in_use_elsewhere(&self) -> bool {
        self.host_check != HostCheck::Ok
    }

    /// The devices (or files) the pool was found on.
    pub fn devices(&self) -> &[PathBuf] {
        &self.devices
    }

    /// The configuration [`Zfs::import`] passes to the kernel.
    pub fn config(&self) -> &NvList {
        &self.config
    }
}

/// A device that held no usable pool label, and why.
#[derive(Debug)]
pub struct SkippedDevice {
    pub path: PathBuf,
    pub reason: String,
}

/// What a search found: the importable pools, by name, and the devices
/// that held none.
#[derive(Debug, Default)]
pub struct Discovery {
    pools: Vec<ImportablePool>,
    skipped: Vec<SkippedDevice>,
    devices_read: usize,
}

impl Discovery {
    /// The pools found, by name (then GUID).
    pub fn pools(&self) -> &[ImportablePool] {
        &self.pools
    }

    /// Consumes the discovery, returning the pools.
    pub fn into_pools(self) -> Vec<ImportablePool> {
        self.pools
    }

    /// Devices read that held no valid label (blank, damaged, or not ZFS),
    /// or whose pool the kernel could not assemble.
    pub fn skipped(&self) -> &[SkippedDevice] {
        &self.skipped
    }

    /// How many files and devices were read.
    pub fn devices_read(&self) -> usize {
        self.devices_read
    }

    /// The one pool named `name`: [`ErrorKind::NotFound`] when none is
    /// (naming why each device was skipped), [`ErrorKind::InvalidArgument`]
    /// when several pools have that name.
    pub fn take(mut self, name: &PoolName, search: &SearchPaths) -> Result<ImportablePool> {
        let mut matching: Vec<usize> = (0..self.pools.len())
            .filter(|&i| self.pools[i].name == *name)
            .collect();
        match matching.len() {
            1 => Ok(self.pools.swap_remove(matching.remove(0))),
            0 => Err(Error::invalid(
                "find importable pools",
                name.as_str(),
                ErrorKind::NotFound,
                format!("no pool found in {}", self.describe(search)),
            )),
            n => Err(Error::invalid(
                "find importable pools",
                name.as_str(),
                ErrorKind::InvalidArgument,
                format!(
                    "{n} pools of that name found in {} (GUIDs {}): import by GUID",
                    self.describe(search),
                    matching
                        .iter()
                        .map(|&i| format!("{:#x}", self.pools[i].guid))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    fn describe(&self, search: &SearchPaths) -> String {
        let paths: Vec<String> = search
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut s = format!("{} ({} devices read", paths.join(", "), self.devices_read);
        if !self.pools.is_empty() {
            let names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
            s += &format!("; pools found: {}", names.join(", "));
        }
        for skip in self.skipped.iter().take(8) {
            s += &format!("; {}: {}", skip.path.display(), skip.reason);
        }
        if self.skipped.len() > 8 {
            s += &format!("; and {} more skipped", self.skipped.len() - 8);
        }
        s + ")"
    }
}

/// How to import: nothing is ever mounted (mount what you need yourself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    readonly: bool,
    altroot: Option<PathBuf>,
    force: bool,
    cache_file: bool,
    rename: Option<PoolName>,
}

impl ImportOptions {
    /// Defaults: read-write, no altroot, not forced, not recorded in the
    /// system's cache file (a removable drive is not imported at boot).
    pub fn new() -> Self {
        Self::default()
    }

    /// Import read-only (`zpool import -o readonly=on`).
    pub fn readonly(mut self, on: bool) -> Self {
        self.readonly = on;
        self
    }

    /// Prefix every mountpoint with `dir` (`zpool import -R`).
    pub fn altroot(mut self, dir: impl Into<PathBuf>) -> Self {
        self.altroot = Some(dir.into());
        self
    }

    /// Import even a pool last used by another system and not exported
    /// there (`zpool import -f`). Only when sure that system no longer
    /// uses it: two systems writing one pool destroy it.
    pub fn force(mut self, on: bool) -> Self {
        self.force = on;
        self
    }

    /// Record the pool in the system's cache file (`/etc/zfs/zpool.cache`),
    /// so that it is imported again at boot. Off by default.
    pub fn cache_file(mut self, on: bool) -> Self {
        self.cache_file = on;
        self
    }

    /// Import under another name (`zpool import OLD NEW`).
    pub fn rename(mut self, name: PoolName) -> Self {
        self.rename = Some(name);
        self
    }

    fn props(&self) -> NvList {
        let mut props = NvList::new();
        if !self.cache_file {
            props.insert("cachefile", "none");
        }
        if let Some(dir) = &self.altroot {
            props.insert("altroot", dir.to_string_lossy().into_owned());
        }
        if self.readonly {
            props.insert("readonly", 1u64);
        }
        props
    }
}

/// The system's hostid, as the kernel and `zpool` see it: the SPL's
/// (`/proc/sys/kernel/spl/hostid`), else `/etc/hostid`, else 0.
pub fn system_hostid() -> u64 {
    let spl = std::fs::read_to_string("/proc/sys/kernel/spl/hostid")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    if spl != 0 {
        return spl & HOSTID_MASK;
    }
    match std::fs::read("/etc/hostid") {
        Ok(b) if b.len() >= 4 => u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        _ => 0,
    }
}

/// Why a device holds no usable label: one reason when all four agree
/// (blank: not a ZFS device), else each label's.
fn describe_invalid(device: &DeviceLabels) -> String {
    let reasons: Vec<String> = device
        .labels()
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.as_ref().err().map(|e| (i, e)))
        .map(|(i, e)| format!("label {i}: {e}"))
        .collect();
    if device
        .labels()
        .iter()
        .all(|l| matches!(l, Err(LabelError::Blank { .. })))
    {
        return "no ZFS label (all four blank)".to_owned();
    }
    format!("no valid ZFS label ({})", reasons.join("; "))
}

/// How many of a device's labels are valid and name vdev `guid`.
fn valid_count_for(device: &DeviceLabels, guid: u64) -> usize {
    device
        .labels()
        .iter()
        .flatten()
        .filter(|l| l.guid() == guid)
        .count()
}

/// A file or device to read once, and every name it was found under (each
/// with its rank in the search order): by-id, by-path and wwn links to
/// one disk are one candidate with several names.
struct Candidate {
    names: Vec<(PathBuf, usize)>,
}

/// `path` made absolute without resolving its last component (a
/// `/dev/disk/by-id` link keeps its name): the kernel opens vdevs only by
/// absolute path.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            Ok(std::fs::canonicalize(parent)?.join(name))
        }
        (_, Some(name)) => Ok(std::env::current_dir()?.join(name)),
        _ => std::fs::canonicalize(path),
    }
}

/// The files and block devices under `search`, each real device once,
/// with all its names, as absolute paths.
fn candidates(search: &SearchPaths) -> Result<Vec<Candidate>> {
    use std::os::unix::fs::FileTypeExt;
    const OP: &str = "find importable pools";
    let usable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() || m.file_type().is_block_device())
            .unwrap_or(false)
    };
    let mut out: Vec<Candidate> = Vec::new();
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    let mut order = 0;
    let mut add = |path: PathBuf, out: &mut Vec<Candidate>| {
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        order += 1;
        match index.get(&real) {
            Some(&i) => out[i].names.push((path, order)),
            None => {
                index.insert(real, out.len());
                out.push(Candidate {
                    names: vec![(path, order)],
                });
            }
        }
    };
    for given in &search.paths {
        let root = &absolute(given).map_err(|e| Error::io(OP, given.display().to_string(), e))?;
        let meta =
            std::fs::metadata(root).map_err(|e| Error::io(OP, given.display().to_string(), e))?;
        if meta.is_dir() {
            // The directory itself resolved (libzutil's realpath), its
            // entries keep their names.
            let root = &std::fs::canonicalize(root)
                .map_err(|e| Error::io(OP, given.display().to_string(), e))?;
            let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
                .map_err(|e| Error::io(OP, root.display().to_string(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| usable(p))
                .collect();
            entries.sort();
            for p in entries {
                add(p, &mut out);
            }
        } else if usable(root) {
            add(root.clone(), &mut out);
        } else {
            return Err(Error::invalid(
                OP,
                given.display().to_string(),
                ErrorKind::InvalidArgument,
                "neither a directory, a file nor a block device",
            ));
        }
    }
    Ok(out)
}

/// One leaf device found: its vdev GUID, path, rank and label count.
struct Found {
    guid: u64,
    path: PathBuf,
    order: usize,
    labels: usize,
}

/// Every valid label of one pool, by top-level vdev GUID, with the best
/// (newest txg) kept.
#[derive(Default)]
struct PoolLabels {
    tops: HashMap<u64, Label>,
    devices: Vec<PathBuf>,
}

/// Assembles a pool's configuration from the newest label of each of its
/// top-level vdevs, as libzutil's `get_configs` does. `None` when a label
/// lacks a field every pool label has (the caller reports the pool as
/// skipped).
fn assemble(labels: &PoolLabels, found: &[Found]) -> std::result::Result<NvList, String> {
    // The newest label overall decides the top-level namespace.
    let newest = labels
        .tops
        .values()
        .max_by_key(|l| l.txg())
        .ok_or("no labels")?;
    let first = newest.config();
    let mut config = NvList::new();
    for key in [
        "version",
        "pool_guid",
        "name",
        "comment",
        "compatibility",
        "state",
    ] {
        match first.get(key) {
            Some(v) => {
                config.insert(key, v.clone());
            }
            None if matches!(key, "comment" | "compatibility") => {}
            None => return Err(format!("the newest label has no {key:?}")),
        }
    }
    if let Some(hostid) = first.get_u64("hostid").ok().filter(|&h| h != 0) {
        config.insert("hostid", hostid);
        if let Ok(name) = first.get_str("hostname") {
            config.insert("hostname", name);
        }
    }
    let children_count = first.get_u64("vdev_children").ok();
    let holes = first.get_u64_array("hole_array").unwrap_or_default();
    if let Some(n) = children_count {
        config.insert("vdev_children", n);
    }
    if !holes.is_empty() {
        config.insert("hole_array", holes.clone());
    }

    let mut by_id: BTreeMap<u64, (u64, NvList)> = BTreeMap::new();
    for label in labels.tops.values() {
        let top = label
            .config()
            .get_nvlist("vdev_tree")
            .map_err(|e| e.to_string())?;
        let id = top.get_u64("id").map_err(|e| e.to_string())?;
        // Two top-level vdevs claiming one id: the newer label's.
        if by_id.get(&id).is_none_or(|(txg, _)| label.txg() > *txg) {
            by_id.insert(id, (label.txg(), top.clone()));
        }
    }
    // How many top-level slots: the newest label's count when it has one
    // (dropping any beyond it), else one past the highest id found.
    let max_found = by_id
        .keys()
        .next_back()
        .map_or(0, |id| id.saturating_add(1));
    let slots = children_count.unwrap_or(max_found);
    // A label is at most 112 KiB, so its ids are small; refuse absurd ones
    // rather than allocating a placeholder per id.
    if slots > 4096 {
        return Err(format!("the labels name {slots} top-level vdevs"));
    }
    let mut children = Vec::new();
    for id in 0..slots {
        let child = match by_id.remove(&id) {
            Some((_, top)) => top,
            None => {
                let kind = if holes.contains(&id) {
                    "hole"
                } else {
                    "missing"
                };
                NvList::new()
                    .with("type", kind)
                    .with("id", id)
                    .with("guid", 0u64)
            }
        };
        children.push(child);
    }
    let mut root = NvList::new()
        .with("type", "root")
        .with("id", 0u64)
        .with(
            "guid",
            first.get_u64("pool_guid").map_err(|e| e.to_string())?,
        )
        .with("children", children);
    fix_paths(&mut root, found);
    config.insert("vdev_tree", root);
    Ok(config)
}

/// Points every leaf at the path its GUID was found under: the label's own
/// path if it was found there, else the name with the most valid labels,
/// then the earliest in the search order (libzutil's `fix_paths`).
fn fix_paths(tree: &mut NvList, found: &[Found]) {
    if let Some(NvValue::NvListArray(children)) = tree.remove("children") {
        let mut children = children;
        for c in &mut children {
            fix_paths(c, found);
        }
        tree.insert("children", children);
        return;
    }
    let Ok(guid) = tree.get_u64("guid") else {
        return;
    };
    let current = tree.get_str("path").ok().map(PathBuf::from);
    let mut best: Option<&Found> = None;
    for f in found.iter().filter(|f| f.guid == guid) {
        if current.as_deref() == Some(f.path.as_path()) {
            best = Some(f);
            break;
        }
        best = match best {
            None => Some(f),
            Some(b) if f.labels > b.labels || (f.labels == b.labels && f.order < b.order) => {
                Some(f)
            }
            keep => keep,
        };
    }
    if let Some(f) = best {
        tree.insert("path", f.path.to_string_lossy().into_owned());
    }
}

impl Zfs {
    /// Finds the pools on the devices under `search` that are not imported
    /// here (imported ones, and destroyed ones, are left out). Reads only;
    /// changes nothing. A device that cannot be read or holds no valid
    /// label is listed in [`Discovery::skipped`], never an error; a search
    /// path that does not exist is one.
    pub fn find_importable_pools(&self, search: &SearchPaths) -> Result<Discovery> {
        let mut discovery = Discovery::default();
        let mut pools: HashMap<u64, PoolLabels> = HashMap::new();
        let mut found = Vec::new();
        for cand in candidates(search)? {
            discovery.devices_read += 1;
            let first = cand.names[0].0.clone();
            let device: DeviceLabels = match read_labels(&first) {
                Ok(d) => d,
                Err(e) => {
                    discovery.skipped.push(SkippedDevice {
                        path: first,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let Some(best) = device.best() else {
                discovery.skipped.push(SkippedDevice {
                    reason: describe_invalid(&device),
                    path: first,
                });
                continue;
            };
            let labels = valid_count_for(&device, best.guid());
            for (path, order) in &cand.names {
                found.push(Found {
                    guid: best.guid(),
                    path: path.clone(),
                    order: *order,
                    labels,
                });
            }
            let cand_path = first;
            // Spares and cache devices only lend their paths.
            let (Some(pool_guid), Some(top_guid)) = (best.pool_guid(), best.top_guid()) else {
                continue;
            };
            if matches!(best.state(), PoolState::Spare | PoolState::L2Cache) {
                continue;
            }
            let entry = pools.entry(pool_guid).or_default();
            entry.devices.push(cand_path);
            match entry.tops.get(&top_guid) {
                Some(have) if have.txg() >= best.txg() => {}
                _ => {
                    entry.tops.insert(top_guid, best.clone());
                }
            }
        }

        let imported = self.pools()?;
        for (guid, labels) in pools {
            let devices = labels.devices.clone();
            let skip = |reason: String, d: &mut Discovery| {
                for path in &devices {
                    d.skipped.push(SkippedDevice {
                        path: path.clone(),
                        reason: reason.clone(),
                    });
                }
            };
            let config = match assemble(&labels, &found) {
                Ok(c) => c,
                Err(why) => {
                    skip(format!("pool {guid:#x}: {why}"), &mut discovery);
                    continue;
                }
            };
            let state = config
                .get_u64("state")
                .ok()
                .and_then(PoolState::from_raw)
                .unwrap_or(PoolState::Active);
            if state == PoolState::Destroyed {
                skip(format!("pool {guid:#x} was destroyed"), &mut discovery);
                continue;
            }
            if imported.iter().any(|p| p.guid() == guid) {
                continue; // imported here already
            }
            let name = match config.get_str("name").map(PoolName::new) {
                Ok(Ok(n)) => n,
                _ => {
                    skip(
                        format!("pool {guid:#x}: its name is not valid"),
                        &mut discovery,
                    );
                    continue;
                }
            };
            match self.try_import(&name, guid, &config, state, labels.devices, &found) {
                Ok(pool) => discovery.pools.push(pool),
                Err(e) => skip(format!("pool {name} ({guid:#x}): {e}"), &mut discovery),
            }
        }
        discovery
            .pools
            .sort_by(|a, b| (a.name.as_str(), a.guid).cmp(&(b.name.as_str(), b.guid)));
        Ok(discovery)
    }

    /// Finds the one pool named `name` under `search`; a typed
    /// [`ErrorKind::NotFound`] when none is there.
    pub fn find_importable_pool(
        &self,
        name: &PoolName,
        search: &SearchPaths,
    ) -> Result<ImportablePool> {
        self.find_importable_pools(search)?.take(name, search)
    }

    /// `ZFS_IOC_POOL_TRYIMPORT`: the kernel opens the devices and completes
    /// the configuration (vdev states, load info).
    fn try_import(
        &self,
        name: &PoolName,
        guid: u64,
        assembled: &NvList,
        state: PoolState,
        devices: Vec<PathBuf>,
        found: &[Found],
    ) -> Result<ImportablePool> {
        const OP: &str = "ZFS_IOC_POOL_TRYIMPORT";
        let packed = assembled.pack()?;
        let mut size = (packed.len() * 32).max(256 << 10);
        let mut config = loop {
            let mut zc = IoctlCmd::new("");
            zc.set_conf(packed.clone());
            zc.set_dst_capacity(size);
            match zc.ioctl(self.dev(), ZFS_IOC_POOL_TRYIMPORT) {
                Ok(()) => {
                    let bytes = zc.dst_reply().ok_or_else(|| {
                        Error::invalid(OP, name.as_str(), ErrorKind::UnexpectedShape, "no reply")
                    })?;
                    break NvList::unpack(bytes)?;
                }
                Err(e) if e.0 == libc::ENOMEM && size < (64 << 20) => {
                    let need = usize::try_from(zc.dst_size()).unwrap_or(64 << 20);
                    size = need.max(size * 2).min(64 << 20);
                }
                Err(e) => return Err(Error::from_errno(OP, name.as_str(), e)),
            }
        };
        // As libzutil does: keep the hostid and host name of the labels,
        // not those the kernel fills in.
        config.remove("hostid");
        config.remove("hostname");
        let mut last_host = None;
        if let Some(hostid) = assembled.get_u64("hostid").ok().filter(|&h| h != 0) {
            config.insert("hostid", hostid);
            let hostname = assembled.get_str("hostname").ok().map(str::to_owned);
            if let Some(h) = &hostname {
                config.insert("hostname", h.as_str());
            }
            last_host = Some(LastHost { hostid, hostname });
        }
        // Spares and cache devices appear only now: point them at where
        // they were found too (libzutil does the same).
        if let Some(NvValue::NvList(mut tree)) = config.remove("vdev_tree") {
            for key in ["spares", "l2cache"] {
                if let Some(NvValue::NvListArray(mut list)) = tree.remove(key) {
                    for dev in &mut list {
                        fix_paths(dev, found);
                    }
                    tree.insert(key, list);
                }
            }
            config.insert("vdev_tree", tree);
        }
        let tree = config
            .get_nvlist("vdev_tree")
            .map_err(|e| Error::shape(OP, name.as_str(), e))?;
        let root = Vdev::from_config(tree).map_err(|e| Error::shape(OP, name.as_str(), e))?;
        let host_check = host_check(&config, state, system_hostid());
        Ok(ImportablePool {
            name: name.clone(),
            guid,
            pool_state: state,
            root,
            last_host,
            host_check,
            devices,
            config,
        })
    }

    /// Imports `pool` (`zpool import -N`): nothing is mounted. Refuses a
    /// pool last used by another system and not exported there
    /// ([`ErrorKind::InUseElsewhere`]) unless [`ImportOptions::force`];
    /// [`ErrorKind::AlreadyExists`] when a pool of that name is imported.
    pub fn import(&self, pool: &ImportablePool, options: &ImportOptions) -> Result<Pool> {
        const OP: &str = "ZFS_IOC_POOL_IMPORT";
        let name = options.rename.as_ref().unwrap_or(&pool.name);
        let refuse =
            |kind, why: String| Err(Error::invalid("import pool", pool.name.as_str(), kind, why));
        match &pool.host_check {
            HostCheck::Ok => {}
            HostCheck::NeedsForce if options.force => {}
            HostCheck::ActiveElsewhere(host) => {
                return refuse(
                    ErrorKind::InUseElsewhere,
                    format!(
                        "imported now on {host} (multihost protection): export it there \
                         first; force does not override this"
                    ),
                )
            }
            HostCheck::NoHostId => {
                return refuse(
                    ErrorKind::InvalidArgument,
                    "the pool has multihost on and this system has no hostid: set a unique \
                     one (zgenhostid) first"
                        .to_owned(),
                )
            }
            HostCheck::NeedsForce => {}
        }
        if pool.host_check == HostCheck::NeedsForce && !options.force {
            let host = match &pool.last_host {
                Some(LastHost {
                    hostid,
                    hostname: Some(h),
                }) => format!("{h} (hostid {hostid:#x})"),
                Some(LastHost { hostid, .. }) => format!("hostid {hostid:#x}"),
                None => "another system".to_owned(),
            };
            return Err(Error::invalid(
                "import pool",
                pool.name.as_str(),
                ErrorKind::InUseElsewhere,
                format!(
                    "last used by {host} and not exported (this system's hostid is {:#x}); \
                     import with force only if that system no longer uses it",
                    system_hostid()
                ),
            ));
        }
        let conf = pool.config.pack()?;
        let mut zc = IoctlCmd::new(name.as_str());
        zc.set_guid(pool.guid);
        // The kernel copies the config back (with its load info) whether
        // the import worked or not; a buffer too small for it turns a
        // success into ENOMEM, so it is generous, and an ENOMEM is checked.
        zc.set_dst_capacity(conf.len() * 4 + (256 << 10));
        zc.set_conf(conf);
        zc.set_src(options.props().pack()?);
        zc.set_cookie(if options.force {
            ZFS_IMPORT_ANY_HOST
        } else {
            0
        });
        match zc.ioctl(self.dev(), ZFS_IOC_POOL_IMPORT) {
            Ok(()) => {}
            Err(e)
                if e.0 == libc::ENOMEM && self.pools()?.iter().any(|p| p.guid() == pool.guid) => {}
            Err(e) => return Err(Error::from_errno(OP, name.as_str(), e)),
        }
        Ok(Pool::new(name.clone(), pool.guid))
    }

    /// Exports imported pool `pool` (`zpool export`): its labels say
    /// "exported", and any system may import it. Refuses with
    /// [`ErrorKind::Busy`], naming them, while filesystems of the pool are
    /// mounted: unmount them first. `force` is the kernel's (export even
    /// with an active shared spare).
    pub fn export(&self, pool: &PoolName, force: bool) -> Result<()> {
        const OP: &str = "ZFS_IOC_POOL_EXPORT";
        let mounted = mounted_filesystems(pool);
        if !mounted.is_empty() {
            return Err(Error::invalid(
                "export pool",
                pool.as_str(),
                ErrorKind::Busy,
                format!(
                    "{} mounted: unmount first ({})",
                    if mounted.len() == 1 {
                        "a filesystem is"
                    } else {
                        "filesystems are"
                    },
                    mounted.join(", ")
                ),
            ));
        }
        let mut zc = IoctlCmd::new(pool.as_str());
        zc.set_cookie(u64::from(force));
        zc.set_guid(0); // never "hardforce": the labels must say exported
        zc.ioctl(self.dev(), ZFS_IOC_POOL_EXPORT)
            .map_err(|e| match e.0 {
                libc::EXDEV => Error::invalid(
                    "export pool",
                    pool.as_str(),
                    ErrorKind::Busy,
                    "it has an active shared spare that other pools could take once it is \
                 exported: export with force to do so anyway",
                ),
                _ => Error::from_errno(OP, pool.as_str(), e),
            })
    }
}

/// Whether `zpool import` would need `-f`: the pool is not exported and
/// its last hostid is not ours, or multihost protection is active
/// (`zfs_force_import_required`).
fn host_check(config: &NvList, state: PoolState, our_hostid: u64) -> HostCheck {
    let info = config.get_nvlist("load_info").ok();
    let mmp = info.and_then(|i| i.get_u64("mmp_state").ok());
    match mmp {
        Some(MMP_STATE_ACTIVE) => {
            let info = info.unwrap_or(config);
            let hostid = info.get_u64("mmp_hostid").unwrap_or(0);
            let name = info.get_str("mmp_hostname").unwrap_or("another system");
            return HostCheck::ActiveElsewhere(format!("{name} (hostid {hostid:#x})"));
        }
        Some(MMP_STATE_NO_HOSTID) => return HostCheck::NoHostId,
        _ => {}
    }
    let hostid = info
        .and_then(|i| i.get_u64("hostid").ok())
        .or_else(|| config.get_u64("hostid").ok())
        .unwrap_or(0);
    if state != PoolState::Exported && hostid != our_hostid {
        return HostCheck::NeedsForce;
    }
    match mmp {
        Some(MMP_STATE_INACTIVE) | None => HostCheck::Ok,
        Some(_) => HostCheck::NeedsForce,
    }
}

/// Whether `zpool import` would import a pool as it is
/// (`zfs_force_import_required`): [`HostCheck::NeedsForce`] when it is not
/// exported and its last hostid is not ours; with `multihost` on, the
/// kernel's activity check decides (`mmp_state` in the load info).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostCheck {
    Ok,
    NeedsForce,
    /// Multihost: imported and alive on that host now; force cannot help.
    ActiveElsewhere(String),
    /// Multihost, and this system has no hostid.
    NoHostId,
}

/// The mounted ZFS filesystems of `pool`, from `/proc/self/mountinfo`.
fn mounted_filesystems(pool: &PoolName) -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = format!("{}/", pool.as_str());
    let mut out = Vec::new();
    for line in info.lines() {
        // "… - fstype source options"
        let Some((_, tail)) = line.split_once(" - ") else {
            continue;
        };
        let mut parts = tail.split(' ');
        let (Some("zfs"), Some(source)) = (parts.next(), parts.next()) else {
            continue;
        };
        let source = source.replace("\\040", " ");
        if source == pool.as_str() || source.starts_with(&prefix) {
            out.push(source);
        }
    }
    out
}

impl fmt::Display for ImportablePool {
    /// `NAME GUID STATE`, as `backup drives` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.name, self.guid, self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_is_required_only_for_a_pool_not_exported_by_another_host() {
        use HostCheck::*;
        let cfg = |hostid: u64| {
            NvList::new()
                .with("hostid", hostid)
                .with("load_info", NvList::new())
        };
        assert_eq!(host_check(&cfg(7), PoolState::Exported, 9), Ok);
        assert_eq!(host_check(&cfg(9), PoolState::Active, 9), Ok);
        assert_eq!(host_check(&cfg(7), PoolState::Active, 9), NeedsForce);
        // The kernel's load_info hostid (from the MOS) wins over the label's.
        let mut c = cfg(7);
        c.insert("load_info", NvList::new().with("hostid", 9u64));
        assert_eq!(host_check(&c, PoolState::Active, 9), Ok);
        // No hostid anywhere and none set here: same system.
        assert_eq!(host_check(&NvList::new(), PoolState::Active, 0), Ok);
    }

    #[test]
    fn multihost_states_follow_mmp_state_t() {
        use HostCheck::*;
        let mmp = |state: u64| {
            NvList::new().with(
                "load_info",
                NvList::new()
                    .with("mmp_state", state)
                    .with("mmp_hostid", 0x42u64)
                    .with("mmp_hostname", "nas"),
            )
        };
        // MMP_STATE_INACTIVE (1): safe, exported by another host or not.
        assert_eq!(host_check(&mmp(1), PoolState::Exported, 9), Ok);
        // MMP_STATE_ACTIVE (0): alive elsewhere, named.
        assert_eq!(
            host_check(&mmp(0), PoolState::Exported, 9),
            ActiveElsewhere("nas (hostid 0x42)".to_owned())
        );
        // MMP_STATE_NO_HOSTID (2).
        assert_eq!(host_check(&mmp(2), PoolState::Active, 0), NoHostId);
        // An unknown state is not taken as safe.
        assert_eq!(host_check(&mmp(7), PoolState::Exported, 9), NeedsForce);
    }

    /// A label of leaf `guid` under top-level vdev `top` (id `id`) of pool 7.
    fn label(txg: u64, guid: u64, top: u64, id: u64, path: &str, children: u64) -> Label {
        let tree = NvList::new()
            .with("type", "file")
            .with("id", id)
            .with("guid", guid)
            .with("path", path);
        let config = NvList::new()
            .with("version", 5000u64)
            .with("name", "pipe")
            .with("state", 1u64)
            .with("txg", txg)
            .with("pool_guid", 7u64)
            .with("hostid", 0x1234u64)
            .with("hostname", "laptop")
            .with("top_guid", top)
            .with("guid", guid)
            .with("vdev_children", children)
            .with("vdev_tree", tree);
        let phys = super::super::label::fuzzing::vdev_phys(&config, 16384, false).unwrap();
        super::super::label::parse_label(&phys, 16384).unwrap()
    }

    fn found(guid: u64, path: &str, order: usize, labels: usize) -> Found {
        Found {
            guid,
            path: PathBuf::from(path),
            order,
            labels,
        }
    }

    #[test]
    fn a_pool_is_assembled_from_the_newest_label_of_each_top_level_vdev() {
        // Three top-level vdevs; id 1 was not found. The newest label (txg
        // 20) says there are 3.
        let mut labels = PoolLabels::default();
        labels.tops.insert(100, label(10, 11, 100, 0, "/old/a", 2));
        labels.tops.insert(300, label(20, 33, 300, 2, "/old/c", 3));
        let found = [
            found(11, "/dev/disk/by-id/a", 0, 4),
            found(33, "/old/c", 5, 2),
            found(33, "/dev/disk/by-id/c", 1, 4),
        ];
        let config = assemble(&labels, &found).unwrap();
        assert_eq!(config.get_str("name").unwrap(), "pipe");
        assert_eq!(config.get_u64("vdev_children").unwrap(), 3);
        assert_eq!(config.get_u64("hostid").unwrap(), 0x1234);
        let root = config.get_nvlist("vdev_tree").unwrap();
        assert_eq!(root.get_str("type").unwrap(), "root");
        assert_eq!(root.get_u64("guid").unwrap(), 7);
        let children = root.get_nvlist_array("children").unwrap();
        let kinds: Vec<&str> = children
            .iter()
            .map(|c| c.get_str("type").unwrap())
            .collect();
        assert_eq!(kinds, ["file", "missing", "file"]);
        assert_eq!(children[1].get_u64("id").unwrap(), 1);
        assert_eq!(children[1].get_u64("guid").unwrap(), 0);
        // A leaf found only elsewhere points there; one found at its
        // label's own path keeps it, even with fewer labels there.
        assert_eq!(children[0].get_str("path").unwrap(), "/dev/disk/by-id/a");
        assert_eq!(children[2].get_str("path").unwrap(), "/old/c");
    }

    #[test]
    fn holes_extra_slots_and_path_preference_follow_libzutil() {
        let mut labels = PoolLabels::default();
        // The newest label says 2 children; a stale one names id 3.
        let mut newest = label(30, 11, 100, 0, "/x/a", 2);
        let cfg = newest.config().clone().with("hole_array", vec![1u64]);
        let phys = super::super::label::fuzzing::vdev_phys(&cfg, 16384, false).unwrap();
        newest = super::super::label::parse_label(&phys, 16384).unwrap();
        labels.tops.insert(100, newest);
        labels.tops.insert(400, label(5, 44, 400, 3, "/x/d", 4));
        // Two names for guid 11, neither the label's path: more labels
        // wins, then the earlier in the search.
        let found = [
            found(11, "/b/a", 1, 2),
            found(11, "/c/a", 2, 4),
            found(11, "/d/a", 0, 4),
        ];
        let config = assemble(&labels, &found).unwrap();
        let children = config
            .get_nvlist("vdev_tree")
            .unwrap()
            .get_nvlist_array("children")
            .unwrap()
            .to_vec();
        assert_eq!(children.len(), 2, "slots beyond vdev_children are dropped");
        assert_eq!(children[1].get_str("type").unwrap(), "hole");
        assert_eq!(children[0].get_str("path").unwrap(), "/d/a");
        assert_eq!(config.get_u64_array("hole_array").unwrap(), [1]);
    }

    #[test]
    fn a_top_level_id_of_u64_max_is_no_panic() {
        // No vdev_children: the slot count comes from the highest id.
        let config = label(10, 11, 100, u64::MAX, "/a", 1).config().clone();
        let mut config = config;
        config.remove("vdev_children");
        let phys = super::super::label::fuzzing::vdev_phys(&config, 16384, false).unwrap();
        let mut labels = PoolLabels::default();
        labels
            .tops
            .insert(100, super::super::label::parse_label(&phys, 16384).unwrap());
        let e = assemble(&labels, &[]).unwrap_err();
        assert!(e.contains("top-level vdevs"), "{e}");
    }

    #[test]
    fn two_top_level_vdevs_with_one_id_give_the_newer() {
        let mut labels = PoolLabels::default();
        labels.tops.insert(100, label(10, 11, 100, 0, "/old", 1));
        labels.tops.insert(200, label(20, 22, 200, 0, "/new", 1));
        let config = assemble(&labels, &[]).unwrap();
        let children = config
            .get_nvlist("vdev_tree")
            .unwrap()
            .get_nvlist_array("children")
            .unwrap()
            .to_vec();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].get_u64("guid").unwrap(), 22);
    }

    #[test]
    fn relative_search_paths_become_absolute_keeping_link_names() {
        let dir = std::env::temp_dir().join(format!("relsearch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let disk = dir.join("disk0");
        std::fs::write(&disk, b"x").unwrap();
        std::os::unix::fs::symlink("disk0", dir.join("usb-alias")).unwrap();
        // The same directory, relative to the current one.
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count() - 1);
        let rel = PathBuf::from(format!(
            "{up}{}",
            dir.display().to_string().trim_start_matches('/')
        ));
        assert!(rel.is_relative());
        let c = candidates(&SearchPaths::new([&rel])).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.len(), 1, "one real device");
        let real_dir = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        let real_dir = real_dir.join(dir.file_name().unwrap());
        let names: Vec<&Path> = c[0].names.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(names, [real_dir.join("disk0"), real_dir.join("usb-alias")]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever ids, counts and holes the labels claim: no panic, no
        /// more than 4096 slots, every slot's id its index.
        #[test]
        fn assembly_of_hostile_labels_is_bounded(
            tops in proptest::collection::vec((proptest::prelude::any::<u64>(), 0u64..64, 1u64..100), 1..5),
            children in proptest::option::of(proptest::prelude::any::<u64>()),
            holes in proptest::collection::vec(0u64..64, 0..4),
        ) {
            let mut labels = PoolLabels::default();
            for (i, (id, small_id, txg)) in tops.iter().enumerate() {
                let id = if i % 2 == 0 { *small_id } else { *id };
                let mut cfg = label(*txg, 10 + i as u64, 100 + i as u64, id, "/d", 1).config().clone();
                match children {
                    Some(n) => { cfg.insert("vdev_children", n); }
                    None => { cfg.remove("vdev_children"); }
                }
                if !holes.is_empty() {
                    cfg.insert("hole_array", holes.clone());
                }
                let phys = super::super::label::fuzzing::vdev_phys(&cfg, 16384, false).unwrap();
                labels.tops.insert(100 + i as u64, super::super::label::parse_label(&phys, 16384).unwrap());
            }
            if let Ok(config) = assemble(&labels, &[]) {
                let root = config.get_nvlist("vdev_tree").unwrap();
                let slots = root.get_nvlist_array("children").unwrap();
                proptest::prop_assert!(slots.len() <= 4096);
                for (i, c) in slots.iter().enumerate() {
                    proptest::prop_assert_eq!(c.get_u64("id").unwrap(), i as u64);
                }
            }
        }
    }

    #[test]
    fn absurd_top_level_counts_are_refused_not_allocated() {
        let mut labels = PoolLabels::default();
        labels
            .tops
            .insert(100, label(10, 11, 100, 0, "/a", 1 << 40));
        let e = assemble(&labels, &[]).unwrap_err();
        assert!(e.contains("top-level vdevs"), "{e}");
    }

    #[test]
    fn options_become_import_properties() {
        assert_eq!(
            ImportOptions::new().props(),
            NvList::new().with("cachefile", "none")
        );
        let p = ImportOptions::new()
            .readonly(true)
            .altroot("/mnt")
            .cache_file(true)
            .props();
        assert_eq!(p.get_str("altroot").unwrap(), "/mnt");
        assert_eq!(p.get_u64("readonly").unwrap(), 1);
        assert!(!p.contains_key("cachefile"));
    }
}
