//! Pools: listing from the kernel's pool configurations.
//!
//! ```no_run
//! let zfs = zfs_core::Zfs::open()?;
//! for pool in zfs.pools()? {
//!     println!("{} guid={:#x}", pool.name(), pool.guid());
//! }
//! # Ok::<(), zfs_core::Error>(())
//! ```

use zfs_sys::ioctl::ZFS_IOC_POOL_CONFIGS;

use crate::error::{Errno, Error, Result};
use crate::ffi;
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
    pub fn name(&self) -> &PoolName {
        &self.name
    }
    pub fn guid(&self) -> u64 {
        self.guid
    }
}

impl Zfs {
    /// Runs an ioctl whose reply is an nvlist in `zc_nvlist_dst`, growing
    /// the buffer when the kernel says ENOMEM.
    pub(crate) fn ioctl_nvlist_out(
        &self,
        request: u32,
        op: &'static str,
        name: &str,
        src: Option<&[u8]>,
    ) -> Result<NvList> {
        let mut size = 64usize << 10;
        loop {
            let mut zc = ffi::new_cmd();
            crate::dataset::set_field(&mut zc.zc_name, name);
            if let Some(src) = src {
                zc.zc_nvlist_src = src.as_ptr() as u64;
                zc.zc_nvlist_src_size = src.len() as u64;
            }
            let mut buf = vec![0u8; size];
            zc.zc_nvlist_dst = buf.as_mut_ptr() as u64;
            zc.zc_nvlist_dst_size = buf.len() as u64;
            match ffi::zfs_ioctl(self.dev(), request, &mut zc) {
                Ok(()) => {
                    let len = usize::try_from(zc.zc_nvlist_dst_size)
                        .unwrap_or(0)
                        .min(buf.len());
                    return NvList::unpack(&buf[..len]);
                }
                Err(Errno(libc::ENOMEM)) if size < (256 << 20) => {
                    let needed = usize::try_from(zc.zc_nvlist_dst_size).unwrap_or(0);
                    size = needed.max(size * 2).min(256 << 20);
                }
                Err(e) => return Err(Error::from_errno(op, name, e)),
            }
        }
    }

    /// The imported pools, by name.
    pub fn pools(&self) -> Result<Vec<Pool>> {
        const OP: &str = "ZFS_IOC_POOL_CONFIGS";
        let configs = self.ioctl_nvlist_out(ZFS_IOC_POOL_CONFIGS, OP, "", None)?;
        let mut out = Vec::new();
        for (name, config) in configs.iter() {
            let NvValue::NvList(config) = config else {
                continue;
            };
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
}
