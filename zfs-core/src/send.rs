//! Sending snapshots: full or incremental (from a snapshot or a bookmark),
//! resumed from a token, size estimates and progress.
//!
//! The kernel writes the stream itself. It is always handed the write end of
//! a pipe this process created (since Linux 5.10 the kernel cannot write to
//! some descriptor types): when the output is not a pipe, zfs-core creates
//! one and copies from it to the output.
//!
//! ```no_run
//! use std::fs::File;
//! use zfs_core::{SendFlags, SendOptions, SnapshotName, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let monday: SnapshotName = "tank/home@monday".parse()?;
//! let tuesday: SnapshotName = "tank/home@tuesday".parse()?;
//! let opts = SendOptions::new()
//!     .from(monday)
//!     .flags(SendFlags::LARGE_BLOCK | SendFlags::EMBED_DATA | SendFlags::COMPRESS);
//! println!("about {} bytes", zfs.send_space(&tuesday, &opts)?);
//! let path = "/backup/home-tuesday.zstream";
//! let file = File::create(path).map_err(|e| zfs_core::Error::io("create", path, e))?;
//! zfs.send(&tuesday, &opts, &file)?;
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};

use zfs_sys::ioctl::ZFS_IOC_SEND_PROGRESS;

use crate::bookmark::SnapshotOrBookmark;
use crate::error::{Errno, Error, ErrorKind, Result};
use crate::ffi;
use crate::name::AnyName;
use crate::name::SnapshotName;
use crate::signal::SigpipeGuard;
use crate::Zfs;

bitflags::bitflags! {
    /// Stream options (`enum lzc_send_flags`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SendFlags: u32 {
        /// Keep embedded (tiny, compressed) blocks embedded (`zfs send -e`).
        const EMBED_DATA = 1;
        /// Allow blocks larger than 128 KiB (`-L`).
        const LARGE_BLOCK = 2;
        /// Send compressed blocks as they are on disk (`-c`).
        const COMPRESS = 4;
        /// Send encrypted data as ciphertext, without the key (`-w`).
        const RAW = 8;
        /// Send the partially received state of an interrupted receive (`-S`).
        const SAVED = 16;
    }
}

/// Its bits, as a `u32`.
#[cfg(feature = "serde")]
impl serde::Serialize for SendFlags {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.bits())
    }
}

/// A `u32` of known bits only: an unknown flag is an error.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for SendFlags {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bits = <u32 as serde::Deserialize>::deserialize(deserializer)?;
        SendFlags::from_bits(bits).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "unknown send flag bits {:#x}",
                bits & !SendFlags::all().bits()
            ))
        })
    }
}

/// What and how to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SendOptions {
    from: Option<SnapshotOrBookmark>,
    flags: SendFlags,
    resume: Option<(u64, u64)>,
}

impl SendOptions {
    /// A full stream with no flags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the stream incremental from a snapshot or bookmark (`zfs send -i`).
    ///
    /// The base must be an earlier snapshot, or a bookmark of one, of the
    /// same dataset: otherwise sends and estimates fail with
    /// [`ErrorKind::NotAncestor`], or [`ErrorKind::CrossPool`] when it is in
    /// another pool.
    pub fn from(mut self, base: impl Into<SnapshotOrBookmark>) -> Self {
        self.from = Some(base.into());
        self
    }

    pub fn flags(mut self, flags: SendFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Restarts at an object and offset (from a resume token).
    pub fn resume_at(mut self, object: u64, offset: u64) -> Self {
        self.resume = Some((object, offset));
        self
    }

    pub fn base(&self) -> Option<&SnapshotOrBookmark> {
        self.from.as_ref()
    }

    pub fn send_flags(&self) -> SendFlags {
        self.flags
    }

    fn base_c_name(&self) -> Option<std::ffi::CString> {
        self.from.as_ref().map(|f| match f {
            SnapshotOrBookmark::Snapshot(s) => s.to_c_name(),
            SnapshotOrBookmark::Bookmark(b) => b.to_c_name(),
        })
    }
}

/// A base in another pool is refused by name, before the kernel (which
/// reports it like any unrelated base).
fn check_base_pool(op: &'static str, snapshot: &SnapshotName, opts: &SendOptions) -> Result<()> {
    match &opts.from {
        Some(base) if base.dataset().pool() != snapshot.dataset().pool() => Err(Error::invalid(
            op,
            snapshot.as_str(),
            ErrorKind::CrossPool,
            format!("the incremental base {} is in another pool", base.as_str()),
        )),
        _ => Ok(()),
    }
}

/// Send errors: EXDEV (after [`check_base_pool`]) means the base is not an
/// earlier snapshot or bookmark of this dataset, for sends and estimates alike.
fn send_error(op: &'static str, snapshot: &SnapshotName, opts: &SendOptions, e: Errno) -> Error {
    match (&opts.from, e.0) {
        (Some(base), libc::EXDEV) => Error::invalid(
            op,
            snapshot.as_str(),
            ErrorKind::NotAncestor,
            format!(
                "the incremental base {} is not an earlier snapshot or bookmark of this dataset (EXDEV)",
                base.as_str()
            ),
        ),
        _ => Error::from_errno(op, snapshot.as_str(), e),
    }
}

impl Zfs {
    /// Writes a send stream of `snapshot` to `out` (a pipe, file or socket).
    ///
    /// When `out` is not a pipe, a pipe is created and a thread copies from
    /// it: if writing to `out` fails, that error is returned, not the
    /// sender's broken pipe.
    pub fn send(&self, snapshot: &SnapshotName, opts: &SendOptions, out: impl AsFd) -> Result<()> {
        // A reader that went away must give EPIPE, not kill the process.
        let _sigpipe = SigpipeGuard::new()?;
        let out = out.as_fd();
        let is_pipe =
            ffi::is_fifo(out).map_err(|e| Error::from_errno("fstat", snapshot.as_str(), e))?;
        if is_pipe {
            return self.send_to_pipe(snapshot, opts, out);
        }
        let (read_end, write_end) =
            ffi::pipe().map_err(|e| Error::from_errno("pipe2", snapshot.as_str(), e))?;
        let mut output = File::from(
            out.try_clone_to_owned()
                .map_err(|e| Error::io("dup", snapshot.as_str(), e))?,
        );
        let mut input = File::from(read_end);
        std::thread::scope(|scope| {
            let sender = std::thread::Builder::new()
                .name("zfs-send".into())
                .spawn_scoped(scope, move || {
                    // This thread only runs the send: the host's signals go
                    // to its own threads, and a broken pipe gives EPIPE.
                    let _ = crate::signal::block_async_signals();
                    let r = self.send_to_pipe(snapshot, opts, write_end.as_fd());
                    drop(write_end); // EOF for the copier
                    r
                })
                .map_err(|e| Error::io("spawn send thread", snapshot.as_str(), e))?;
            let copied = io::copy(&mut input, &mut output);
            drop(input); // if the copy failed, the sender now gets EPIPE and stops
            let sent = sender.join().unwrap_or_else(|_| {
                Err(Error::invalid(
                    "lzc_send",
                    snapshot.as_str(),
                    crate::ErrorKind::Other,
                    "the sending thread panicked",
                ))
            });
            match (copied, sent) {
                (Err(e), _) => Err(Error::io("write", snapshot.as_str(), e)),
                (Ok(_), r) => r,
            }
        })
    }

    /// Sends into a pipe's write end directly (the caller created the pipe).
    fn send_to_pipe(
        &self,
        snapshot: &SnapshotName,
        opts: &SendOptions,
        fd: BorrowedFd<'_>,
    ) -> Result<()> {
        let op = if opts.resume.is_some() {
            "lzc_send_resume"
        } else {
            "lzc_send"
        };
        check_base_pool(op, snapshot, opts)?;
        let from = opts.base_c_name();
        ffi::lzc_send(
            &snapshot.to_c_name(),
            from.as_deref(),
            fd,
            opts.flags.bits(),
            opts.resume,
        )
        .map_err(|e| send_error(op, snapshot, opts, e))
    }

    /// Estimates the stream size in bytes (`zfs send -nv`).
    pub fn send_space(&self, snapshot: &SnapshotName, opts: &SendOptions) -> Result<u64> {
        const OP: &str = "lzc_send_space";
        check_base_pool(OP, snapshot, opts)?;
        let from = opts.base_c_name();
        ffi::lzc_send_space(&snapshot.to_c_name(), from.as_deref(), opts.flags.bits())
            .map_err(|e| send_error(OP, snapshot, opts, e))
    }

    /// Bytes that destroying the snapshots `first` through `last` (of one
    /// dataset, `first` not newer than `last`) would free: what `zfs
    /// destroy -nv fs@first%last` reports (`lzc_snaprange_space`).
    pub fn snaprange_space(&self, first: &SnapshotName, last: &SnapshotName) -> Result<u64> {
        const OP: &str = "lzc_snaprange_space";
        ffi::lzc_snaprange_space(&first.to_c_name(), &last.to_c_name())
            .map_err(|e| Error::from_errno(OP, first.as_str(), e))
    }

    /// Bytes written so far by a send of `snapshot` that this process
    /// started on descriptor number `fd` (the pipe write end it passed to
    /// [`send`](Self::send), typically owned by the sending thread). Another
    /// process's send, or none, gives
    /// [`ErrorKind::NotFound`].
    pub fn send_progress(&self, snapshot: &SnapshotName, fd: RawFd) -> Result<u64> {
        let mut zc = ffi::IoctlCmd::new(snapshot.as_str());
        zc.set_cookie(u64::try_from(fd).map_err(|_| {
            Error::from_errno(
                "ZFS_IOC_SEND_PROGRESS",
                snapshot.as_str(),
                Errno(libc::EBADF),
            )
        })?);
        zc.ioctl(self.dev(), ZFS_IOC_SEND_PROGRESS)
            .map_err(|e| Error::from_errno("ZFS_IOC_SEND_PROGRESS", snapshot.as_str(), e))?;
        Ok(zc.cookie())
    }
}
