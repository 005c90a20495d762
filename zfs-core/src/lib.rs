//! A typed, safe API over OpenZFS's `libzfs_core` and the `/dev/zfs` ioctls.
//!
//! - [`name`]: validated names ([`DatasetName`], [`SnapshotName`], …) that
//!   accept spaces and reject everything ZFS would.
//! - [`Zfs`]: the library handle. Lookups return typed handles
//!   ([`Filesystem`], [`Snapshot`], [`Bookmark`], …) carrying GUID and
//!   createtxg; listing goes through the kernel's list ioctls, not the CLI.
//! - Operations: snapshots (batch, atomic), destroy, bookmarks, holds (with
//!   guards that release on drop), rollback, rename, clone, promote.
//! - [`send`] and [`receive`]: stream primitives over any file descriptor,
//!   with a [`resume`] token decoder and send progress.
//! - [`Error`]: names the failing call and dataset; [`ErrorKind`] to match on.
//! - [`features`]: what the loaded module supports (OpenZFS 2.1 to 2.4),
//!   detected at run time from sysfs and from the kernel's answers, never
//!   from a version number: [`Zfs::features`].
//! - Feature `serde`: the data types above (names, [`Snapshot`],
//!   [`SendOptions`], [`NvList`], [`Properties`], [`Error`], …) serialize
//!   for a remote peer and validate what they decode.
//!
//! ```no_run
//! use zfs_core::{DatasetName, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let fs: DatasetName = "tank/my documents".parse()?;
//! let snap = fs.snapshot("before upgrade")?;
//! zfs.snapshot(&[snap.clone()])?;
//! for s in zfs.snapshots(&fs)? {
//!     println!("{} guid={:#x} txg={}", s.name(), s.guid(), s.createtxg());
//! }
//! # Ok::<(), zfs_core::Error>(())
//! ```
//!
//! Process notes: libzfs_core is initialised once per process and never
//! finalised. Sends write from the kernel into a pipe with `SIGPIPE` blocked
//! in the sending thread ([`signal`]), so a reader that went away gives
//! [`ErrorKind::BrokenPipe`], never the death of a host that restored the
//! default `SIGPIPE` disposition.

// docs.rs (nightly, `--cfg docsrs`) marks the `testing` module as feature-gated.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The crate README's example compiles (checked as a doc test).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod bookmark;
pub mod dataset;
pub mod error;
pub mod features;
mod ffi;
pub mod hold;
pub mod key;
pub mod name;
pub mod nvlist;
pub mod pipe;
pub mod pool;
pub mod property;
pub mod receive;
pub mod resume;
pub mod send;
pub mod signal;
pub mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(all(test, feature = "serde"))]
mod serde_tests;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub use bookmark::Bookmark;
pub use bookmark::SnapshotOrBookmark;
pub use dataset::{Dataset, DatasetType, Encryption, Filesystem, KeyStatus, Properties, Volume};
pub use error::{BatchFailure, Errno, Error, ErrorKind, Result};
pub use features::{Features, PoolFeature};
pub use hold::HoldGuard;
pub use key::KeyFormat;
pub use name::{AnyName, BookmarkName, DatasetName, NameError, PoolName, SnapshotName};
pub use nvlist::{NvList, NvValue};
pub use pool::Pool;
pub use property::PropertyList;
pub use receive::{ReceiveOptions, Received};
pub use resume::ResumeToken;
pub use send::{SendFlags, SendOptions};
pub use snapshot::Snapshot;

/// The library handle: an open `/dev/zfs` plus the process-wide libzfs_core
/// initialisation, and what was detected about the loaded module
/// ([`Zfs::features`]). Cheap to share: it is `Send + Sync`, and every method
/// takes `&self`.
#[derive(Debug)]
pub struct Zfs {
    dev: OwnedFd,
    features: Features,
}

impl Zfs {
    /// Initialises libzfs_core (once per process) and opens `/dev/zfs` for
    /// the raw ioctls. Fails with [`ErrorKind::Unavailable`] when the ZFS
    /// module is not loaded (no `/dev/zfs`), and with
    /// [`ErrorKind::PermissionDenied`] when this user may not open it.
    ///
    /// A failure is not remembered: a later `open` tries again, so a daemon
    /// started before the module loaded can open once it has.
    pub fn open() -> Result<Zfs> {
        ffi::init_libzfs_core().map_err(|e| unavailable("libzfs_core_init", e))?;
        Ok(Zfs {
            dev: open_dev_zfs()?,
            features: Features::new(),
        })
    }

    /// What the loaded ZFS module supports: pool features, dataset
    /// properties, kernel features (read from sysfs on first use) and
    /// whether simple-mode snapshot listing fills GUIDs (learnt from the
    /// first listing). Cached for this handle's life.
    ///
    /// ```no_run
    /// let zfs = zfs_core::Zfs::open()?;
    /// if !zfs.features().has_pool_feature("block_cloning")? {
    ///     println!("this module cannot clone blocks");
    /// }
    /// # Ok::<(), zfs_core::Error>(())
    /// ```
    pub fn features(&self) -> &Features {
        &self.features
    }

    pub(crate) fn dev(&self) -> BorrowedFd<'_> {
        self.dev.as_fd()
    }
}

/// Opens `/dev/zfs` read-write with close-on-exec.
pub(crate) fn open_dev_zfs() -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/zfs")
        .map(OwnedFd::from)
        .map_err(|e| match e.raw_os_error() {
            Some(code) => unavailable("open", Errno(code)),
            None => Error::io("open", "/dev/zfs", e),
        })
}

/// Opening ZFS failed: without the module (no `/dev/zfs`: ENOENT, ENXIO,
/// ENODEV) that is [`ErrorKind::Unavailable`], not a missing dataset.
fn unavailable(operation: &'static str, errno: Errno) -> Error {
    let kind = match errno.0 {
        libc::ENOENT | libc::ENXIO | libc::ENODEV => ErrorKind::Unavailable,
        _ => ErrorKind::of(errno),
    };
    Error::Zfs {
        operation,
        target: "/dev/zfs".into(),
        kind,
        errno,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Zfs>();
        check::<super::HoldGuard>();
        check::<super::Error>();
        check::<super::Features>();
    }

    /// Without the ZFS module (the development hosts have none), opening
    /// fails with a typed error each time, and each call tries again
    /// (`ffi::init_once` is unit-tested for the retry itself).
    #[test]
    fn open_without_dev_zfs_fails_typed_every_time() {
        if std::path::Path::new("/dev/zfs").exists() {
            return; // a ZFS host: nothing to check here
        }
        for _ in 0..2 {
            let err = super::Zfs::open().unwrap_err();
            assert_eq!(err.kind(), super::ErrorKind::Unavailable, "{err}");
            assert_eq!(err.target(), Some("/dev/zfs"));
            assert_eq!(err.operation(), Some("libzfs_core_init"));
            assert!(err.to_string().contains("/dev/zfs"), "{err}");
        }
    }
}
