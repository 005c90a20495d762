//! Incremental ZFS replication (planned in the replication issue). Today this
//! crate only re-exports the layer it builds on.

pub use zfs_core as core;
