//! The typed, safe ZFS API (names, handles, listing, snapshots, holds,
//! bookmarks, send and receive) arrives with the next issue; today this crate
//! only re-exports the raw layer it will wrap.

pub use zfs_sys as sys;
