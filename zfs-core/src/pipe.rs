//! Pipes for streaming a send into a receive in one process, and what a
//! relay between two pipes needs: `splice`, readiness polling with a
//! wake-up descriptor, and no `SIGPIPE`.
//!
//! ```
//! use std::time::Duration;
//! use zfs_core::pipe::{poll, Interest, Pipe, Wakeup};
//!
//! let pipe = Pipe::new(1 << 20)?;
//! assert!(pipe.capacity >= 4096);
//! let wakeup = Wakeup::new()?;
//! wakeup.wake();
//! let ready = poll(&[(&pipe.read, Interest::Read), (wakeup.fd(), Interest::Read)], Duration::from_secs(1))?;
//! assert!(!ready[0].any() && ready[1].readable);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ffi;
use crate::signal::SigpipeGuard;

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
/// of the input. A reader that went away gives EPIPE (`SIGPIPE` is blocked
/// for the call).
pub fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> std::io::Result<usize> {
    let _guard = SigpipeGuard::new().map_err(std::io::Error::other)?;
    ffi::splice(from.as_fd(), to.as_fd(), len, false).map_err(std::io::Error::from)
}

/// Like [`splice`], but never waits: when the input is empty or the output
/// full it fails with [`std::io::ErrorKind::WouldBlock`]. The caller blocks
/// `SIGPIPE` (see [`crate::signal`]).
pub fn splice_nonblocking(from: impl AsFd, to: impl AsFd, len: usize) -> std::io::Result<usize> {
    ffi::splice(from.as_fd(), to.as_fd(), len, true).map_err(std::io::Error::from)
}

/// The bytes waiting to be read from a pipe or socket (`FIONREAD`).
pub fn bytes_available(fd: impl AsFd) -> std::io::Result<usize> {
    ffi::bytes_available(fd.as_fd()).map_err(std::io::Error::from)
}

/// Whether `fd` is a pipe (a FIFO).
pub fn is_pipe(fd: impl AsFd) -> bool {
    ffi::is_fifo(fd.as_fd()).unwrap_or(false)
}

/// What to wait for on a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// What [`poll`] found on one descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The other end is closed (`POLLHUP`) or the descriptor failed
    /// (`POLLERR`, `POLLNVAL`).
    pub closed: bool,
}

impl Ready {
    /// Whether anything happened.
    pub fn any(&self) -> bool {
        self.readable || self.writable || self.closed
    }
}

/// Waits until one of `fds` is ready or `timeout` passes. A signal handled
/// meanwhile returns early with nothing ready.
pub fn poll(fds: &[(&dyn AsFd, Interest)], timeout: Duration) -> std::io::Result<Vec<Ready>> {
    let list: Vec<(BorrowedFd<'_>, libc::c_short)> = fds
        .iter()
        .map(|(fd, interest)| {
            let events = match interest {
                Interest::Read => libc::POLLIN,
                Interest::Write => libc::POLLOUT,
            };
            (fd.as_fd(), events)
        })
        .collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let revents = ffi::poll(&list, ms).map_err(std::io::Error::from)?;
    Ok(revents
        .into_iter()
        .map(|r| Ready {
            readable: r & libc::POLLIN != 0,
            writable: r & libc::POLLOUT != 0,
            closed: r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        })
        .collect())
}

/// A descriptor that becomes readable once [`wake`](Self::wake) is called
/// (an eventfd), for waking a thread blocked in [`poll`] from another
/// thread.
#[derive(Debug)]
pub struct Wakeup(File);

impl Wakeup {
    pub fn new() -> Result<Wakeup> {
        let fd = ffi::eventfd().map_err(|e| Error::from_errno("eventfd", "", e))?;
        Ok(Wakeup(File::from(fd)))
    }

    /// Makes the descriptor readable (and keeps it so). Never blocks.
    pub fn wake(&self) {
        // An eventfd write only fails when the counter would overflow, and
        // then the descriptor is readable already.
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// The descriptor to poll for [`Interest::Read`].
    pub fn fd(&self) -> &dyn AsFd {
        &self.0
    }
}
