//! Pools: the imported ones, their health and scrubs ([`status`]), and
//! pools on devices that are not imported: finding, importing and exporting
//! them ([`import`], from the devices' labels: [`read_labels`]).
//!
//! ```no_run
//! let zfs = zfs_core::Zfs::open()?;
//! for pool in zfs.pools()? {
//!     println!("{} guid={:#x}", pool.name(), pool.guid());
//! }
//! # Ok::<(), zfs_core::Error>(())
//! ```

pub mod import;
mod label;
pub mod status;
mod vdev;

pub use import::{
    system_hostid, Discovery, ImportOptions, ImportablePool, LastHost, SearchPaths, SkippedDevice,
    DEFAULT_SEARCH_PATH,
};
#[doc(hidden)]
pub use label::fuzzing as label_fuzzing;
pub use label::{
    parse_label, read_labels, DeviceLabels, Label, LabelError, LabelReadError, PoolState,
    MIN_DEVICE_SIZE, VDEV_PHYS_SIZE,
};
pub use status::{PoolStatus, Scan, ScanKind, ScanState};
pub use vdev::{Vdev, VdevErrors, VdevState};

use zfs_sys::ioctl::ZFS_IOC_POOL_CONFIGS;

use crate::error::{Error, Result};
use crate::name::PoolName;
use crate::nvlist::{NvList, NvValue};
use crate::Zfs;

/// An imported pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pool {
    name: PoolName,
    guid: u64,
}

impl Pool {
    pub(crate) fn new(name: PoolName, guid: u64) -> Pool {
        Pool { name, guid }
    }

    pub fn name(&self) -> &PoolName {
        &self.name
    }
    pub fn guid(&self) -> u64 {
        self.guid
    }
}

impl Zfs {
    /// The imported pools, by name.
    pub fn pools(&self) -> Result<Vec<Pool>> {
        const OP: &str = "ZFS_IOC_POOL_CONFIGS";
        let (_, configs) =
            self.ioctl_nvlist_out(ZFS_IOC_POOL_CONFIGS, OP, "", 64 << 10, 256 << 20)?;
        pools_from_configs(&configs)
    }
}

/// The pools of a `ZFS_IOC_POOL_CONFIGS` reply. The kernel's own entries
/// are left out: while any process checks a pool for import
/// (`ZFS_IOC_POOL_TRYIMPORT`), the reply holds it as `$import` (2.1) or
/// `$import-<thread>-<name>` (2.2+), a name no pool can have.
fn pools_from_configs(configs: &NvList) -> Result<Vec<Pool>> {
    const OP: &str = "ZFS_IOC_POOL_CONFIGS";
    let mut out = Vec::new();
    for (name, config) in configs.iter() {
        let NvValue::NvList(config) = config else {
            continue;
        };
        if name.starts_with('$') {
            continue;
        }
        let guid = config
            .get_u64("pool_guid")
            .map_err(|e| Error::shape(OP, name, e))?;
        out.push(Pool {
            name: PoolName::new(name)?,
            guid,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_leave_out_a_pool_being_checked_for_import() {
        let pool = |guid: u64| NvList::new().with("pool_guid", guid);
        let configs = NvList::new()
            .with("tank", pool(1))
            .with("$import-ffff8881-pipe", NvList::new())
            .with("$import", NvList::new())
            .with("alpha", pool(2));
        let names: Vec<String> = pools_from_configs(&configs)
            .unwrap()
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        assert_eq!(names, ["alpha", "tank"]);
        // A real entry without its GUID is still an error.
        let bad = NvList::new().with("tank", NvList::new());
        assert!(pools_from_configs(&bad).is_err());
    }
}
