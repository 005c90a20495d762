//! What the loaded ZFS module supports, detected at run time, never guessed
//! from a version number.
//!
//! The library works with OpenZFS 2.1 to 2.4. Where those releases differ in
//! something the library or its callers depend on, [`Features`] answers from
//! the module itself:
//!
//! - **Pool features, dataset properties and kernel features** come from
//!   the directories the module publishes in sysfs, as libzfs reads them
//!   (`zfs_mod_supported` in `zfeature_common.c`):
//!   `/sys/module/zfs/features.pool/<guid>` (with a `uname` attribute
//!   holding the short name), `/sys/module/zfs/properties.dataset/<name>`
//!   and `/sys/module/zfs/features.kernel/<name>`, or the same under
//!   `/sys/fs/zfs` when ZFS is built into the kernel. Every release from 2.1
//!   publishes all three (`zfs_sysfs.c`). They are read on first use and
//!   cached in the handle.
//! - **Whether simple-mode snapshot listing fills GUID and createtxg**
//!   (OpenZFS 2.2 and later do; 2.1 fills only the name) is learnt from the
//!   first listing that returns a snapshot, and cached: after that, a 2.1
//!   module is listed in full mode at once, without a wasted simple-mode
//!   ioctl per dataset.
//!
//! The handle keeps `/dev/zfs` open, so the module cannot be unloaded (or
//! replaced by another version) while it lives: what was detected stays true.
//!
//! **Without sysfs** (not mounted, as in some containers) the sysfs queries
//! fail with [`ErrorKind::NotFound`] instead of guessing. Callers that must go
//! on can fall back to [`BASELINE_POOL_FEATURES`], the pool features every
//! supported release knows; [`FilePool`](crate::testing::FilePool) does.
//!
//! ```no_run
//! use zfs_core::Zfs;
//!
//! let zfs = Zfs::open()?;
//! let features = zfs.features();
//! for f in features.pool_features()? {
//!     println!("feature@{} ({})", f.name(), f.guid());
//! }
//! if features.has_dataset_property("snapshots_changed")? {
//!     println!("this module reports when snapshots last changed");
//! }
//! // None until a listing has returned a snapshot.
//! println!("{:?}", features.simple_listing_fills_guid());
//! # Ok::<(), zfs_core::Error>(())
//! ```
//!
//! # What differs between 2.1 and 2.4, and what the library does about it
//!
//! Read from the OpenZFS 2.1.11 and 2.3.2 sources (`zfs_ioctl.c`,
//! `zfs_prop.c`, `dmu_recv.c`, `dsl_userhold.c`, `dsl_bookmark.c`,
//! `zfeature_common.c`, `zfs_sysfs.c`):
//!
//! | what | difference | handling |
//! |---|---|---|
//! | `ZFS_IOC_SNAPSHOT_LIST_NEXT` with `zc_simple` | 2.2+ fill `dds_guid`/`dds_creation_txg`; 2.1 fills neither | detected ([`Features::simple_listing_fills_guid`]) |
//! | `snapshots_changed` | a property from 2.2 | [`Properties::snapshots_changed`](crate::Properties::snapshots_changed) is `None` on 2.1; [`Features::has_dataset_property`] says whether the module has it |
//! | pool features | 2.2–2.4 add features (`block_cloning`, `fast_dedup`, `longname`…) | [`Features::pool_features`]; the test pool enables exactly those |
//! | ioctl numbers | 2.2+ only append (`ZFS_IOC_VDEV_GET_PROPS`…) | the library's ioctls (`OBJSET_STATS`, `DATASET_LIST_NEXT`, `SNAPSHOT_LIST_NEXT`, `SEND_PROGRESS`, `POOL_CONFIGS`, `POOL_CREATE`, `POOL_DESTROY`) have the same numbers and, apart from the listing above, the same behaviour |
//! | libzfs_core | `zfs-sys` binds only functions of 2.1's `libzfs_core.so.3` | 2.1-safe; the keys they send (send flags incl. `savedok`, receive, hold, bookmark properties `guid`/`createtxg`) are all in 2.1's key tables |
//! | properties read | `written`, `receive_resume_token`, `encryption`, `encryptionroot`, `keystatus`, `readonly`, `mountpoint`, `used`, `referenced`, `creation` exist in 2.1 | 2.1-safe (a VM test checks them against `properties.dataset`) |
//! | `zfs_errno_t` | 2.2+ append codes from `ZFS_ERR_VDEV_NOTSUP` (1045) on | the codes up to `ZFS_ERR_BADPROP` have the same numbers; 2.1 never returns the later ones |
//! | receive errors | 2.2+ add `ZFS_ERR_RESUME_EXISTS` for resuming a *forced full* receive without force; 2.1 goes on | the library never starts a forced full receive into an existing dataset, so the case does not arise; the other receive checks (`ENODEV`, `ETXTBSY`, `EEXIST`, `ECKSUM`, `ZFS_ERR_STREAM_TRUNCATED`) are the same code in both |
//! | hold, release, bookmark errors | no change in `dsl_userhold.c`/`dsl_bookmark.c` checks | 2.1-safe |

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, ErrorKind, Result};

/// Where the module publishes itself when loaded as a module, and when built
/// into the kernel (`ZFS_SYSFS_DIR`, `ZFS_SYSFS_ALT_DIR`).
const SYSFS_DIRS: [&str; 2] = ["/sys/module/zfs", "/sys/fs/zfs"];
const POOL_FEATURES: &str = "features.pool";
const DATASET_PROPERTIES: &str = "properties.dataset";
const KERNEL_FEATURES: &str = "features.kernel";
const OP: &str = "read ZFS sysfs";

/// The pool features of OpenZFS 2.1.0, the oldest release this library
/// supports: every supported module knows them. The fallback when the
/// module's own list cannot be read (sysfs not mounted).
pub const BASELINE_POOL_FEATURES: &[&str] = &[
    "async_destroy",
    "empty_bpobj",
    "lz4_compress",
    "multi_vdev_crash_dump",
    "spacemap_histogram",
    "enabled_txg",
    "hole_birth",
    "extensible_dataset",
    "embedded_data",
    "bookmarks",
    "filesystem_limits",
    "large_blocks",
    "large_dnode",
    "sha512",
    "skein",
    "edonr",
    "userobj_accounting",
    "encryption",
    "project_quota",
    "device_removal",
    "obsolete_counts",
    "zpool_checkpoint",
    "spacemap_v2",
    "allocation_classes",
    "resilver_defer",
    "bookmark_v2",
    "redaction_bookmarks",
    "redacted_datasets",
    "bookmark_written",
    "log_spacemap",
    "livelist",
    "device_rebuild",
    "zstd_compress",
    "draid",
];

/// A pool feature the module supports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolFeature {
    name: String,
    guid: String,
}

impl PoolFeature {
    /// The short name, as in the pool property `feature@<name>`
    /// (`async_destroy`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The unique name (`com.delphix:async_destroy`), as pools record it.
    pub fn guid(&self) -> &str {
        &self.guid
    }
}

/// What the module publishes in sysfs, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModuleSupport {
    dir: PathBuf,
    /// Sorted by name.
    pool_features: Vec<PoolFeature>,
    dataset_properties: BTreeSet<String>,
    kernel_features: BTreeSet<String>,
}

impl ModuleSupport {
    /// Reads the first of `roots` that has a `features.pool` directory.
    fn read(roots: &[&Path]) -> Result<ModuleSupport> {
        for root in roots {
            match std::fs::metadata(root.join(POOL_FEATURES)) {
                Ok(m) if m.is_dir() => return Self::read_from(root),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(OP, path_str(&root.join(POOL_FEATURES)), e)),
            }
        }
        let tried: Vec<String> = roots
            .iter()
            .map(|r| path_str(&r.join(POOL_FEATURES)))
            .collect();
        Err(Error::invalid(
            OP,
            tried.join(", "),
            ErrorKind::NotFound,
            "the ZFS module's sysfs directory is missing (is sysfs mounted?)",
        ))
    }

    /// Reads one module directory (`/sys/module/zfs` or a copy of its shape).
    fn read_from(dir: &Path) -> Result<ModuleSupport> {
        let mut pool_features = Vec::new();
        for guid in entries(&dir.join(POOL_FEATURES))? {
            let uname = dir.join(POOL_FEATURES).join(&guid).join("uname");
            let name =
                std::fs::read_to_string(&uname).map_err(|e| Error::io(OP, path_str(&uname), e))?;
            let name = name.trim_end_matches('\n');
            if !valid_name(name) {
                return Err(Error::invalid(
                    OP,
                    path_str(&uname),
                    ErrorKind::UnexpectedShape,
                    format!("not a feature name: {name:?}"),
                ));
            }
            pool_features.push(PoolFeature {
                name: name.to_owned(),
                guid,
            });
        }
        pool_features.sort();
        Ok(ModuleSupport {
            dir: dir.to_owned(),
            pool_features,
            dataset_properties: entries(&dir.join(DATASET_PROPERTIES))?
                .into_iter()
                .collect(),
            kernel_features: entries(&dir.join(KERNEL_FEATURES))?.into_iter().collect(),
        })
    }
}

/// The names in a sysfs directory; each must be a valid name (UTF-8, no
/// whitespace or control characters).
fn entries(dir: &Path) -> Result<Vec<String>> {
    let err = |e| Error::io(OP, path_str(dir), e);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let name = entry.map_err(err)?.file_name();
        match name.to_str() {
            Some(n) if valid_name(n) => out.push(n.to_owned()),
            _ => {
                return Err(Error::invalid(
                    OP,
                    path_str(dir),
                    ErrorKind::UnexpectedShape,
                    format!("unexpected entry {name:?}"),
                ))
            }
        }
    }
    out.sort();
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

const LISTING_UNKNOWN: u8 = 0;
const LISTING_FILLS: u8 = 1;
const LISTING_NAMES_ONLY: u8 = 2;

/// What the loaded ZFS module supports, detected at run time and cached in
/// the [`Zfs`](crate::Zfs) handle: from [`Zfs::features`](crate::Zfs::features).
///
/// See the [module documentation](self) for where each answer comes from and
/// for what differs between the OpenZFS releases the library supports.
#[derive(Debug)]
pub struct Features {
    module: OnceLock<ModuleSupport>,
    simple_listing: AtomicU8,
    #[cfg(feature = "testing")]
    pub(crate) snapshot_list_ioctls: std::sync::atomic::AtomicU64,
}

impl Features {
    /// Nothing detected yet.
    pub(crate) fn new() -> Features {
        Features {
            module: OnceLock::new(),
            simple_listing: AtomicU8::new(LISTING_UNKNOWN),
            #[cfg(feature = "testing")]
            snapshot_list_ioctls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Reads sysfs on first use; only success is cached (sysfs mounted
    /// later is found by a later call).
    fn module(&self) -> Result<&ModuleSupport> {
        if let Some(m) = self.module.get() {
            return Ok(m);
        }
        let roots = SYSFS_DIRS.map(Path::new);
        let read = ModuleSupport::read(&roots)?;
        Ok(self.module.get_or_init(|| read))
    }

    /// The directory the module's answers were read from
    /// (`/sys/module/zfs`, or `/sys/fs/zfs` when ZFS is built into the
    /// kernel).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the module publishes nothing in sysfs
    /// (sysfs not mounted); an I/O or [`ErrorKind::UnexpectedShape`] error
    /// when its directories cannot be read. The same for every method here
    /// that reads sysfs.
    pub fn sysfs_dir(&self) -> Result<&Path> {
        Ok(&self.module()?.dir)
    }

    /// The pool features the module supports (`features.pool`), sorted by
    /// short name: what `zpool create` enables by default.
    ///
    /// ```no_run
    /// let zfs = zfs_core::Zfs::open()?;
    /// let names: Vec<&str> = zfs.features().pool_features()?.iter().map(|f| f.name()).collect();
    /// assert!(names.contains(&"bookmarks"));
    /// # Ok::<(), zfs_core::Error>(())
    /// ```
    pub fn pool_features(&self) -> Result<&[PoolFeature]> {
        Ok(&self.module()?.pool_features)
    }

    /// Whether the module supports a pool feature, by short name
    /// (`block_cloning`) or GUID (`com.fudosecurity:block_cloning`).
    pub fn has_pool_feature(&self, name_or_guid: &str) -> Result<bool> {
        Ok(self
            .module()?
            .pool_features
            .iter()
            .any(|f| f.name == name_or_guid || f.guid == name_or_guid))
    }

    /// The dataset properties the module knows (`properties.dataset`),
    /// hidden ones included: `snapshots_changed` from OpenZFS 2.2 on.
    pub fn dataset_properties(&self) -> Result<&BTreeSet<String>> {
        Ok(&self.module()?.dataset_properties)
    }

    /// Whether the module knows a dataset property (`snapshots_changed`).
    ///
    /// ```no_run
    /// let zfs = zfs_core::Zfs::open()?;
    /// let home: zfs_core::DatasetName = "tank/home".parse()?;
    /// let props = zfs.properties(&home)?;
    /// if zfs.features().has_dataset_property("snapshots_changed")? {
    ///     println!("snapshots changed at {:?}", props.snapshots_changed);
    /// }
    /// # Ok::<(), zfs_core::Error>(())
    /// ```
    pub fn has_dataset_property(&self, name: &str) -> Result<bool> {
        Ok(self.module()?.dataset_properties.contains(name))
    }

    /// The kernel capabilities the module announces (`features.kernel`,
    /// such as `com.delphix:vdev_initialize`).
    pub fn kernel_features(&self) -> Result<&BTreeSet<String>> {
        Ok(&self.module()?.kernel_features)
    }

    /// Whether the module fills GUID and createtxg in simple-mode snapshot
    /// listing (`zc_simple`, which skips opening each snapshot): `Some(true)`
    /// from OpenZFS 2.2 on, `Some(false)` on 2.1, `None` while unknown.
    ///
    /// It is learnt by [`Zfs::snapshots`](crate::Zfs::snapshots) from the
    /// first snapshot a listing returns (libzfs does the same: stats still
    /// zero after a successful simple-mode call mean an older module), and
    /// kept for the handle's life. Listing is correct either way; the
    /// answer only decides whether the cheaper simple mode is used.
    pub fn simple_listing_fills_guid(&self) -> Option<bool> {
        match self.simple_listing.load(Ordering::Relaxed) {
            LISTING_FILLS => Some(true),
            LISTING_NAMES_ONLY => Some(false),
            _ => None,
        }
    }

    /// Records what a simple-mode listing showed (the first answer stays).
    pub(crate) fn record_simple_listing(&self, fills: bool) {
        let state = if fills {
            LISTING_FILLS
        } else {
            LISTING_NAMES_ONLY
        };
        let _ = self.simple_listing.compare_exchange(
            LISTING_UNKNOWN,
            state,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A directory shaped like `/sys/module/zfs`, removed on drop.
    struct FakeSysfs(PathBuf);

    impl FakeSysfs {
        fn new() -> FakeSysfs {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "zfs-core-sysfs-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            FakeSysfs(dir)
        }

        fn feature(&self, guid: &str, uname: &str) -> &Self {
            let d = self.0.join(POOL_FEATURES).join(guid);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("uname"), format!("{uname}\n")).unwrap();
            std::fs::write(d.join("guid"), format!("{guid}\n")).unwrap();
            self
        }

        fn entry(&self, scope: &str, name: &str) -> &Self {
            std::fs::create_dir_all(self.0.join(scope).join(name)).unwrap();
            self
        }
    }

    impl Drop for FakeSysfs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_features_by_uname_and_properties_by_name() {
        let fake = FakeSysfs::new();
        fake.feature("com.delphix:async_destroy", "async_destroy")
            .feature("org.open-zfs:large_blocks", "large_blocks")
            .entry(DATASET_PROPERTIES, "written")
            .entry(DATASET_PROPERTIES, "snapshots_changed")
            .entry(KERNEL_FEATURES, "com.delphix:vdev_initialize");
        let m = ModuleSupport::read(&[Path::new("/nonexistent/zfs"), &fake.0]).unwrap();
        assert_eq!(m.dir, fake.0);
        let names: Vec<_> = m.pool_features.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["async_destroy", "large_blocks"]);
        assert_eq!(m.pool_features[1].guid(), "org.open-zfs:large_blocks");
        assert!(m.dataset_properties.contains("snapshots_changed"));
        assert_eq!(m.dataset_properties.len(), 2);
        assert_eq!(
            m.kernel_features.iter().collect::<Vec<_>>(),
            ["com.delphix:vdev_initialize"]
        );
    }

    #[test]
    fn the_first_root_with_features_wins() {
        let a = FakeSysfs::new();
        let b = FakeSysfs::new();
        a.feature("com.delphix:bookmarks", "bookmarks")
            .entry(DATASET_PROPERTIES, "written")
            .entry(KERNEL_FEATURES, "x:y");
        b.feature("com.delphix:livelist", "livelist")
            .entry(DATASET_PROPERTIES, "written")
            .entry(KERNEL_FEATURES, "x:y");
        let m = ModuleSupport::read(&[&a.0, &b.0]).unwrap();
        assert_eq!(m.pool_features[0].name(), "bookmarks");
    }

    #[test]
    fn no_sysfs_is_not_found_naming_the_paths() {
        let err = ModuleSupport::read(&[Path::new("/nonexistent/a"), Path::new("/nonexistent/b")])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/a/features.pool"), "{text}");
        assert!(text.contains("/nonexistent/b/features.pool"), "{text}");
        assert!(text.contains("sysfs mounted"), "{text}");
    }

    #[test]
    fn a_missing_scope_or_uname_is_an_error_not_a_guess() {
        let fake = FakeSysfs::new();
        fake.feature("com.delphix:bookmarks", "bookmarks")
            .entry(KERNEL_FEATURES, "x:y");
        // No properties.dataset.
        let err = ModuleSupport::read(&[&fake.0]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(DATASET_PROPERTIES), "{err}");

        let fake = FakeSysfs::new();
        fake.entry(POOL_FEATURES, "com.delphix:bookmarks")
            .entry(DATASET_PROPERTIES, "written")
            .entry(KERNEL_FEATURES, "x:y");
        let err = ModuleSupport::read(&[&fake.0]).unwrap_err();
        assert!(err.to_string().contains("uname"), "{err}");
    }

    #[test]
    fn malformed_names_are_typed_errors() {
        let fake = FakeSysfs::new();
        fake.feature("com.delphix:bookmarks", "two words")
            .entry(DATASET_PROPERTIES, "written")
            .entry(KERNEL_FEATURES, "x:y");
        let err = ModuleSupport::read(&[&fake.0]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedShape, "{err}");

        let fake = FakeSysfs::new();
        fake.feature("com.delphix:bookmarks", "")
            .entry(DATASET_PROPERTIES, "written")
            .entry(KERNEL_FEATURES, "x:y");
        let err = ModuleSupport::read(&[&fake.0]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedShape, "{err}");
    }

    #[test]
    fn simple_listing_is_unknown_until_recorded_and_the_first_answer_stays() {
        let f = Features::new();
        assert_eq!(f.simple_listing_fills_guid(), None);
        f.record_simple_listing(false);
        assert_eq!(f.simple_listing_fills_guid(), Some(false));
        f.record_simple_listing(true);
        assert_eq!(f.simple_listing_fills_guid(), Some(false));

        let f = Features::new();
        f.record_simple_listing(true);
        assert_eq!(f.simple_listing_fills_guid(), Some(true));
    }

    #[test]
    fn baseline_has_no_duplicates() {
        let set: BTreeSet<_> = BASELINE_POOL_FEATURES.iter().collect();
        assert_eq!(set.len(), BASELINE_POOL_FEATURES.len());
    }

    /// On a host without the module (the development machines), the
    /// queries fail typed and nothing is cached.
    #[test]
    fn without_the_module_queries_are_not_found() {
        if SYSFS_DIRS
            .iter()
            .any(|d| Path::new(d).join(POOL_FEATURES).exists())
        {
            return; // a ZFS host: the VM tests cover it
        }
        let f = Features::new();
        for _ in 0..2 {
            let err = f.has_dataset_property("written").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        }
        assert!(f.module.get().is_none());
    }
}
