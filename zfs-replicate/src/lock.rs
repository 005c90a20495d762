//! One replication per target at a time.
//!
//! Two runs into the same target would race: both plan from the same base,
//! both send, and the loser's receive fails half-way, or one run prunes the
//! other's new base. So [`execute`](crate::execute()) and
//! [`Replication::sync`](crate::Replication::sync) first take a lock named
//! after the target dataset; a second run is refused at once with
//! [`Error::Busy`], before it changes anything.
//!
//! The lock is an abstract Unix socket bound to a name derived from the
//! target (Linux): no file to create or clean up, and the kernel releases
//! it when the holder exits, even by `kill -9`. It covers every process in
//! one network namespace (a host, or one container), and two threads of one
//! process. It is keyed by the target root's name: runs into a target and
//! into one of its descendants are not detected as overlapping.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

use zfs_core::DatasetName;

use crate::error::{Error, Result};

/// Held while a replication into one target runs; released on drop.
#[derive(Debug)]
pub(crate) struct TargetLock {
    _socket: UnixListener,
}

impl TargetLock {
    /// Takes the lock of `target`, or fails with [`Error::Busy`].
    pub(crate) fn acquire(target: &DatasetName) -> Result<TargetLock> {
        let name = lock_name(target);
        let failed = |source| Error::Lock {
            target: target.clone(),
            source,
        };
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(failed)?;
        match UnixListener::bind_addr(&addr) {
            Ok(socket) => Ok(TargetLock { _socket: socket }),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::Busy {
                target: target.clone(),
            }),
            Err(e) => Err(failed(e)),
        }
    }
}

/// `zfs-replicate/<64-bit FNV-1a of the target name>`: short enough for a
/// socket address whatever the name's length.
fn lock_name(target: &DatasetName) -> String {
    format!(
        "zfs-replicate/lock/{:016x}",
        fnv1a64(target.as_str().as_bytes())
    )
}

/// FNV-1a, 64 bits.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_target_is_busy_until_the_first_is_dropped() {
        let target: DatasetName = "pipe/lock test".parse().unwrap();
        let other: DatasetName = "pipe/lock test2".parse().unwrap();
        let first = TargetLock::acquire(&target).unwrap();
        let err = TargetLock::acquire(&target).unwrap_err();
        assert!(
            matches!(&err, Error::Busy { target: t } if t == &target),
            "{err}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Busy);
        let _unrelated = TargetLock::acquire(&other).unwrap();
        drop(first);
        let _again = TargetLock::acquire(&target).unwrap();
    }

    #[test]
    fn lock_names_fit_a_socket_address_for_the_longest_names() {
        let long: DatasetName = format!("p/{}", "x".repeat(250)).parse().unwrap();
        assert!(lock_name(&long).len() < 100);
    }
}
