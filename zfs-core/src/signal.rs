//! Keeping signals away from ZFS operations.
//!
//! Two things go wrong when a host program's signals meet a send or a
//! receive: a write into a pipe whose reader is gone raises `SIGPIPE`, which
//! kills a process with the default disposition (a C host, or a Rust CLI
//! that restored it for `| head`); and a handled signal delivered to a
//! thread inside the kernel's send or receive makes it return EINTR (or EIO
//! from a partial pipe write).
//!
//! - [`SigpipeGuard`] blocks `SIGPIPE` in the calling thread for a scope, so
//!   such a write fails with EPIPE; zfs-core's own sends and
//!   [`splice`](crate::pipe::splice) use it.
//! - [`block_async_signals`] is for threads that exist only to run ZFS
//!   operations (zfs-replicate's transfer threads call it first): the
//!   process's signals then go to the host's threads.
//!
//! ```
//! let guard = zfs_core::signal::SigpipeGuard::new()?;
//! // ... write into a pipe that may have lost its reader: EPIPE, not death.
//! drop(guard);
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::marker::PhantomData;

use crate::error::{Error, Result};
use crate::ffi;

/// Blocks every asynchronous signal in the calling thread, for good (the
/// thread's own faults, `SIGABRT`, `SIGKILL` and `SIGSTOP` still act).
/// Meant for threads a library starts to run ZFS operations.
pub fn block_async_signals() -> Result<()> {
    ffi::block_async_signals().map_err(|e| Error::from_errno("pthread_sigmask", "", e))
}

/// Blocks `SIGPIPE` in the calling thread until dropped. A `SIGPIPE` raised
/// meanwhile is discarded (the write that raised it already failed with
/// EPIPE); one that was pending before is left alone.
#[derive(Debug)]
pub struct SigpipeGuard {
    state: ffi::SigpipeState,
    // The mask is per thread: the guard must be dropped where it was made.
    _not_send: PhantomData<*const ()>,
}

impl SigpipeGuard {
    pub fn new() -> Result<SigpipeGuard> {
        let state =
            ffi::sigpipe_block().map_err(|e| Error::from_errno("pthread_sigmask", "", e))?;
        Ok(SigpipeGuard {
            state,
            _not_send: PhantomData,
        })
    }
}

impl Drop for SigpipeGuard {
    fn drop(&mut self) {
        ffi::sigpipe_restore(self.state);
    }
}
