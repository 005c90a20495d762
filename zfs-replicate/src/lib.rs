//! Incremental ZFS replication, in process.

pub use zfs_core as core;

pub mod stream;
