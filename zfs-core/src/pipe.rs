//! Pipes for streaming a send into a receive in one process.
//!
//! ```
//! let pipe = zfs_core::pipe::Pipe::new(1 << 20)?;
//! assert!(pipe.capacity >= 4096);
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};
use crate::ffi;

/// A pipe created by this process (close-on-exec), as the kernel's send
/// wants it.
#[derive(Debug)]
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// The buffer size the kernel granted.
    pub capacity: usize,
}

impl Pipe {
    /// Creates a pipe and asks for a `capacity`-byte buffer, capped by
    /// `/proc/sys/fs/pipe-max-size` (the default 64 KiB stays if even the
    /// cap is refused).
    pub fn new(capacity: usize) -> Result<Pipe> {
        let (read, write) = ffi::pipe().map_err(|e| Error::from_errno("pipe2", "", e))?;
        let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(1 << 20);
        let wanted = capacity.min(max).max(4096);
        let granted = ffi::set_pipe_size(write.as_fd(), wanted).unwrap_or(64 << 10);
        Ok(Pipe {
            read,
            write,
            capacity: granted,
        })
    }
}

/// Moves up to `len` bytes from one pipe to another inside the kernel
/// (`splice`), for relaying a stream without copying it. Returns 0 at the end
/// of the input.
pub fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> std::io::Result<usize> {
    ffi::splice(from.as_fd(), to.as_fd(), len).map_err(std::io::Error::from)
}
