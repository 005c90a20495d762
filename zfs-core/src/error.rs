//! Errors: one [`Error`] type that names the failing operation and dataset, an
//! [`ErrorKind`] to match on, and the [`Errno`] newtype for libc and ZFS codes.
//!
//! ```
//! use zfs_core::{Errno, ErrorKind};
//!
//! assert_eq!(Errno::ECKSUM, Errno(libc::EBADE)); // Linux spells ECKSUM as EBADE
//! assert_eq!(Errno::RESUME_EXISTS.to_string(), "ZFS_ERR_RESUME_EXISTS");
//! assert_eq!(ErrorKind::of_receive(Errno(libc::ETXTBSY)), ErrorKind::DestinationModified);
//! ```

use std::fmt;
use std::io;

use crate::name::NameError;
use crate::nvlist::{NvList, NvListError, NvValue};

/// An errno as returned by libzfs_core and the `/dev/zfs` ioctls: either a
/// libc code or one of ZFS's own codes from 1024 up (`zfs_errno_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Errno(pub i32);

macro_rules! zfs_codes {
    ($($name:ident = $sys:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`ZFS_ERR_", stringify!($name), "`")]
                pub const $name: Errno = Errno(zfs_sys::ioctl::zfs_errno_t::$sys.0);
            )*
        }
        fn zfs_code_name(code: i32) -> Option<&'static str> {
            match code {
                $(c if c == Errno::$name.0 => Some(concat!("ZFS_ERR_", stringify!($name))),)*
                _ => None,
            }
        }
    };
}

zfs_codes! {
    CHECKPOINT_EXISTS = CHECKPOINT_EXISTS,
    DISCARDING_CHECKPOINT = DISCARDING_CHECKPOINT,
    NO_CHECKPOINT = NO_CHECKPOINT,
    DEVRM_IN_PROGRESS = DEVRM_IN_PROGRESS,
    VDEV_TOO_BIG = VDEV_TOO_BIG,
    IOC_CMD_UNAVAIL = IOC_CMD_UNAVAIL,
    IOC_ARG_UNAVAIL = IOC_ARG_UNAVAIL,
    IOC_ARG_REQUIRED = IOC_ARG_REQUIRED,
    IOC_ARG_BADTYPE = IOC_ARG_BADTYPE,
    WRONG_PARENT = WRONG_PARENT,
    FROM_IVSET_GUID_MISSING = FROM_IVSET_GUID_MISSING,
    FROM_IVSET_GUID_MISMATCH = FROM_IVSET_GUID_MISMATCH,
    SPILL_BLOCK_FLAG_MISSING = SPILL_BLOCK_FLAG_MISSING,
    UNKNOWN_SEND_STREAM_FEATURE = UNKNOWN_SEND_STREAM_FEATURE,
    EXPORT_IN_PROGRESS = EXPORT_IN_PROGRESS,
    BOOKMARK_SOURCE_NOT_ANCESTOR = BOOKMARK_SOURCE_NOT_ANCESTOR,
    STREAM_TRUNCATED = STREAM_TRUNCATED,
    STREAM_LARGE_BLOCK_MISMATCH = STREAM_LARGE_BLOCK_MISMATCH,
    RESILVER_IN_PROGRESS = RESILVER_IN_PROGRESS,
    REBUILD_IN_PROGRESS = REBUILD_IN_PROGRESS,
    BADPROP = BADPROP,
    VDEV_NOTSUP = VDEV_NOTSUP,
    NOT_USER_NAMESPACE = NOT_USER_NAMESPACE,
    RESUME_EXISTS = RESUME_EXISTS,
    CRYPTO_NOTSUP = CRYPTO_NOTSUP,
    RAIDZ_EXPAND_IN_PROGRESS = RAIDZ_EXPAND_IN_PROGRESS,
    ASHIFT_MISMATCH = ASHIFT_MISMATCH,
    STREAM_LARGE_MICROZAP = STREAM_LARGE_MICROZAP,
}

impl Errno {
    /// Solaris' `ECKSUM`, which Linux ZFS returns as `EBADE`.
    pub const ECKSUM: Errno = Errno(libc::EBADE);

    /// Whether this is one of ZFS's own codes (1024 and up).
    pub fn is_zfs_specific(self) -> bool {
        self.0 >= zfs_sys::ioctl::zfs_errno_t::FIRST.0
    }

    /// The symbolic name, such as `ENOENT` or `ZFS_ERR_RESUME_EXISTS`, when known.
    pub fn name(self) -> Option<&'static str> {
        zfs_code_name(self.0).or_else(|| libc_name(self.0))
    }
}

fn libc_name(code: i32) -> Option<&'static str> {
    Some(match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::EDOM => "EDOM",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTSUP => "ENOTSUP",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EBADE => "ECKSUM",
        libc::EBADR => "EFRAGS",
        libc::EDQUOT => "EDQUOT",
        libc::ECANCELED => "ECANCELED",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ENOSYS => "ENOSYS",
        _ => return None,
    })
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "Errno({n})"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = zfs_code_name(self.0) {
            return f.write_str(n);
        }
        if self.0 == libc::EBADE {
            return f.write_str("checksum mismatch (ECKSUM)");
        }
        let text = io::Error::from_raw_os_error(self.0).to_string();
        // Drop std's " (os error N)" suffix; add the symbol instead.
        let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
        match libc_name(self.0) {
            Some(n) => write!(f, "{text} ({n})"),
            None => write!(f, "{text}"),
        }
    }
}

impl From<Errno> for io::Error {
    fn from(e: Errno) -> Self {
        io::Error::from_raw_os_error(e.0)
    }
}

/// What went wrong, independent of the operation.
///
/// Each situation has one kind, whatever the operation that meets it:
///
/// | situation | kind |
/// |---|---|
/// | destroying a snapshot that is held, or has clones | [`Busy`](Self::Busy) |
/// | an incremental base, or a bookmark's source, that is not an earlier snapshot or bookmark of the same filesystem (same snapshot, wrong order, unrelated) | [`NotAncestor`](Self::NotAncestor) |
/// | names (batch members, a send's base, a bookmark's source) in more than one pool | [`CrossPool`](Self::CrossPool) |
/// | `rollback_to` a snapshot that is not the newest; a forced incremental receive whose base is not the target's newest snapshot | [`HasNewerSnapshots`](Self::HasNewerSnapshots) |
/// | a forced full receive into an existing dataset | [`AlreadyExists`](Self::AlreadyExists) |
/// | a hold tag that is empty, too long or contains NUL | [`InvalidName`](Self::InvalidName) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The dataset, snapshot, bookmark, hold or pool does not exist.
    NotFound,
    /// It exists already (or a hold tag is already taken).
    AlreadyExists,
    /// In use: mounted, held, being received into, or has dependents (a
    /// snapshot with clones).
    Busy,
    /// Not permitted for this user.
    PermissionDenied,
    /// Out of space or quota.
    NoSpace,
    /// Receive: the target changed since the incremental base.
    DestinationModified,
    /// Receive: the stream does not apply to the target (the target lacks
    /// its incremental base).
    StreamMismatch,
    /// The dataset has snapshots newer than the one named: `rollback_to` a
    /// snapshot that is not the newest, or a forced receive of an
    /// incremental whose base is not the target's newest snapshot. Nothing
    /// was destroyed; destroy the newer snapshots first if that is meant.
    HasNewerSnapshots,
    /// An incremental send's base, or a new bookmark's source, is not an
    /// earlier snapshot or bookmark of the same filesystem (it is the same
    /// snapshot, a later one, or an unrelated one).
    NotAncestor,
    /// Receive: the stream is damaged, truncated or malformed.
    BadStream,
    /// Receive: a resumable receive is in progress; resume or abort it first.
    ResumeExists,
    /// The stream or operation uses a feature this pool or kernel lacks.
    NotSupported,
    /// A name (or hold tag) is invalid or too long.
    InvalidName,
    /// The arguments were rejected.
    InvalidArgument,
    /// The names given span several pools (a batch, a send and its base, a
    /// bookmark and its source).
    CrossPool,
    /// The peer of a pipe went away.
    BrokenPipe,
    /// Interrupted or cancelled.
    Interrupted,
    /// An nvlist had an unexpected shape.
    UnexpectedShape,
    /// An I/O error outside ZFS (reading or writing a file or pipe).
    Io,
    /// ZFS is not there: no module loaded, no `/dev/zfs` (from
    /// [`Zfs::open`](crate::Zfs::open)).
    Unavailable,
    /// A wrong encryption key (or one of the wrong format) for
    /// [`Zfs::load_key`](crate::Zfs::load_key); nothing was loaded.
    WrongKey,
    /// Anything else; see the errno.
    Other,
    /// The encryption key needed is not loaded: load it first
    /// ([`Zfs::load_key`](crate::Zfs::load_key)). From a key change.
    KeyNotLoaded,
    /// A pool to import was last used by another system and not exported
    /// there: it may still be in use. Import with force only once sure it
    /// is not ([`ImportOptions::force`](crate::pool::ImportOptions::force)).
    InUseElsewhere,
}

impl ErrorKind {
    /// The kind for an errno from any operation but receive.
    pub fn of(errno: Errno) -> ErrorKind {
        match errno.0 {
            libc::ENOENT | libc::ESRCH => ErrorKind::NotFound,
            libc::EEXIST => ErrorKind::AlreadyExists,
            libc::EBUSY => ErrorKind::Busy,
            libc::EPERM | libc::EACCES => ErrorKind::PermissionDenied,
            libc::ENOSPC | libc::EDQUOT => ErrorKind::NoSpace,
            libc::ENAMETOOLONG => ErrorKind::InvalidName,
            libc::EINVAL => ErrorKind::InvalidArgument,
            libc::EXDEV => ErrorKind::CrossPool,
            libc::EPIPE => ErrorKind::BrokenPipe,
            libc::EINTR | libc::ECANCELED => ErrorKind::Interrupted,
            libc::ENOTSUP | libc::ENOSYS => ErrorKind::NotSupported,
            libc::EBADE => ErrorKind::BadStream,
            _ if errno == Errno::IOC_CMD_UNAVAIL
                || errno == Errno::IOC_ARG_UNAVAIL
                || errno == Errno::UNKNOWN_SEND_STREAM_FEATURE
                || errno == Errno::CRYPTO_NOTSUP =>
            {
                ErrorKind::NotSupported
            }
            _ if errno == Errno::RESUME_EXISTS => ErrorKind::ResumeExists,
            // A value the module does not know for the property.
            _ if errno == Errno::BADPROP => ErrorKind::InvalidArgument,
            _ if errno == Errno::STREAM_TRUNCATED => ErrorKind::BadStream,
            _ if errno == Errno::BOOKMARK_SOURCE_NOT_ANCESTOR => ErrorKind::NotAncestor,
            _ => ErrorKind::Other,
        }
    }

    /// The kind for an errno from a receive, where several codes have a
    /// receive-specific meaning (as libzfs and pyzfs read them).
    pub fn of_receive(errno: Errno) -> ErrorKind {
        match errno.0 {
            libc::ENODEV => ErrorKind::StreamMismatch,
            libc::ETXTBSY => ErrorKind::DestinationModified,
            libc::EBADE | libc::EINVAL | libc::ECHRNG => ErrorKind::BadStream,
            libc::EEXIST => ErrorKind::AlreadyExists,
            _ => ErrorKind::of(errno),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Busy => "busy",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::NoSpace => "out of space",
            ErrorKind::DestinationModified => "destination modified since the base snapshot",
            ErrorKind::StreamMismatch => "stream does not match the destination",
            ErrorKind::HasNewerSnapshots => "newer snapshots exist",
            ErrorKind::NotAncestor => "not an earlier snapshot or bookmark of this filesystem",
            ErrorKind::BadStream => "invalid or damaged stream",
            ErrorKind::ResumeExists => "a resumable receive is pending",
            ErrorKind::NotSupported => "not supported",
            ErrorKind::InvalidName => "invalid name",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::CrossPool => "names span several pools",
            ErrorKind::BrokenPipe => "broken pipe",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::UnexpectedShape => "unexpected nvlist shape",
            ErrorKind::Io => "I/O error",
            ErrorKind::WrongKey => "wrong key",
            ErrorKind::KeyNotLoaded => "the encryption key is not loaded",
            ErrorKind::InUseElsewhere => "last used by another system and not exported",
            ErrorKind::Unavailable => "ZFS is not available (no module loaded, no /dev/zfs)",
            ErrorKind::Other => "failed",
        })
    }
}

/// One name's failure inside a batch operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BatchFailure {
    /// The snapshot, bookmark, hold target or property that failed.
    pub name: String,
    pub errno: Errno,
    pub kind: ErrorKind,
}

/// The error type of every zfs-core operation.
///
/// With the `serde` feature it crosses to a peer and comes back as the same
/// variant with the same kind, errno and (`&'static`) operation; an
/// operation this crate does not name becomes `"remote operation"`, named in
/// `target`. Two variants may come back as [`Error::Invalid`] of the same
/// kind: a name error for a name valid here, and a shape error other than a
/// missing key or a wrong type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name failed validation before anything was sent to the kernel.
    #[error(transparent)]
    Name(#[from] NameError),

    /// A ZFS call failed.
    #[error("{operation}{}: {kind}: {errno}", target_suffix(.target))]
    Zfs {
        /// The failing call, such as `lzc_snapshot` or `ZFS_IOC_OBJSET_STATS`.
        operation: &'static str,
        /// The dataset, snapshot or pool it acted on ("" when none).
        target: String,
        kind: ErrorKind,
        errno: Errno,
    },

    /// A batch call (snapshot, destroy, bookmark, hold, release) failed; the
    /// kernel names each failing entry. Batches that are atomic changed nothing.
    #[error("{operation}: {kind}: {}", describe_batch(.failures, *.more))]
    Batch {
        operation: &'static str,
        kind: ErrorKind,
        errno: Errno,
        failures: Vec<BatchFailure>,
        /// How many further failures the kernel left out (`N_MORE_ERRORS`).
        more: u32,
    },

    /// A kernel reply had an unexpected shape.
    #[error("{operation}{}: {source}", target_suffix(.target))]
    Shape {
        operation: &'static str,
        target: String,
        source: NvListError,
    },

    /// Input outside ZFS was invalid (a resume token, a stream header…).
    #[error("{operation}{}: {reason}", target_suffix(.target))]
    Invalid {
        operation: &'static str,
        target: String,
        kind: ErrorKind,
        reason: String,
    },

    /// An I/O error on a file, pipe or `/dev/zfs`.
    #[error("{operation}{}: {source}", target_suffix(.target))]
    Io {
        operation: &'static str,
        target: String,
        source: io::Error,
    },
}

/// Every operation name zfs-core (and zfs-replicate's relay) puts in an
/// [`Error`]: a decoded error gets its `&'static str` from here. A unit test
/// checks the sources against it, and debug builds check the constructors.
#[cfg(feature = "serde")]
pub(crate) static OPERATIONS: &[&str] = &[
    // libzfs_core calls
    "libzfs_core_init",
    "lzc_bookmark",
    "lzc_change_key",
    "lzc_clone",
    "lzc_create",
    "lzc_destroy",
    "lzc_destroy_bookmarks",
    "lzc_destroy_snaps",
    "lzc_exists",
    "lzc_get_bookmarks",
    "lzc_get_holds",
    "lzc_hold",
    "lzc_load_key",
    "lzc_promote",
    "lzc_receive",
    "lzc_release",
    "lzc_rename",
    "lzc_rollback",
    "lzc_rollback_to",
    "lzc_send",
    "lzc_send_resume",
    "lzc_send_space",
    "lzc_snapshot",
    "lzc_snaprange_space",
    "lzc_sync",
    "lzc_unload_key",
    "lzc_wait",
    // raw ioctls
    "ZFS_IOC_DATASET_LIST_NEXT",
    "ZFS_IOC_INHERIT_PROP",
    "ZFS_IOC_OBJSET_STATS",
    "ZFS_IOC_POOL_CONFIGS",
    "ZFS_IOC_POOL_CREATE",
    "ZFS_IOC_POOL_DESTROY",
    "ZFS_IOC_POOL_EXPORT",
    "ZFS_IOC_POOL_IMPORT",
    "ZFS_IOC_POOL_SCAN",
    "ZFS_IOC_POOL_STATS",
    "ZFS_IOC_POOL_TRYIMPORT",
    "ZFS_IOC_SEND_PROGRESS",
    "ZFS_IOC_SET_PROP",
    "ZFS_IOC_SNAPSHOT_LIST_NEXT",
    // nvlists, resume tokens, streams, sysfs
    "nvlist_pack",
    "nvlist_unpack",
    "read nvlist",
    "decode receive_resume_token",
    "resolve resume token",
    "read BEGIN record",
    "read ZFS sysfs",
    "find importable pools",
    "import pool",
    "export pool",
    // system calls and I/O
    "create pool file",
    "dup",
    "eventfd",
    "fstat",
    "mkdir",
    "mount",
    "open",
    "pipe2",
    "pthread_sigmask",
    "sigaction",
    "signal",
    "spawn send thread",
    "write",
    // zfs-replicate's relay (`zfs_core::Error::io`)
    "relay (poll)",
    "relay (splice)",
    // what an unknown name decodes to
    "remote operation",
];

/// The [`OPERATIONS`] entry equal to `name`.
#[cfg(feature = "serde")]
pub(crate) fn known_operation(name: &str) -> Option<&'static str> {
    OPERATIONS.iter().copied().find(|op| *op == name)
}

/// Debug builds: `operation` must be in [`OPERATIONS`].
#[cfg(feature = "serde")]
fn check_operation(operation: &str) {
    debug_assert!(
        known_operation(operation).is_some(),
        "operation {operation:?} is missing from error::OPERATIONS"
    );
}

fn target_suffix(target: &str) -> String {
    if target.is_empty() {
        String::new()
    } else {
        format!(" {target:?}")
    }
}

fn describe_batch(failures: &[BatchFailure], more: u32) -> String {
    let mut parts: Vec<String> = failures
        .iter()
        .map(|f| format!("{:?}: {}", f.name, f.errno))
        .collect();
    if more > 0 {
        parts.push(format!("and {more} more"));
    }
    if parts.is_empty() {
        "no per-name errors reported".to_owned()
    } else {
        parts.join(", ")
    }
}

impl Error {
    /// An error for a failed call, classified with [`ErrorKind::of`].
    pub(crate) fn from_errno(
        operation: &'static str,
        target: impl Into<String>,
        errno: Errno,
    ) -> Self {
        #[cfg(feature = "serde")]
        check_operation(operation);
        Error::Zfs {
            operation,
            target: target.into(),
            kind: ErrorKind::of(errno),
            errno,
        }
    }

    /// An error for a failed receive, classified with [`ErrorKind::of_receive`].
    pub(crate) fn from_receive_errno(
        operation: &'static str,
        target: impl Into<String>,
        errno: Errno,
    ) -> Self {
        #[cfg(feature = "serde")]
        check_operation(operation);
        Error::Zfs {
            operation,
            target: target.into(),
            kind: ErrorKind::of_receive(errno),
            errno,
        }
    }

    /// An error from a batch call's errno and errlist, classified with
    /// [`ErrorKind::of`].
    pub(crate) fn from_batch(
        operation: &'static str,
        errno: Errno,
        errlist: Option<NvList>,
    ) -> Self {
        Self::from_batch_as(operation, errno, errlist, ErrorKind::of)
    }

    /// [`from_batch`](Self::from_batch) with the call's own reading of its
    /// errnos (EEXIST from `lzc_destroy_snaps` means "has clones").
    pub(crate) fn from_batch_as(
        operation: &'static str,
        errno: Errno,
        errlist: Option<NvList>,
        classify: fn(Errno) -> ErrorKind,
    ) -> Self {
        #[cfg(feature = "serde")]
        check_operation(operation);
        let mut failures = Vec::new();
        let mut more = 0;
        for (name, value) in errlist.iter().flat_map(|l| l.iter()) {
            let code = match value {
                NvValue::I32(c) => *c,
                NvValue::U32(c) => *c as i32,
                NvValue::I64(c) => *c as i32,
                NvValue::U64(c) => *c as i32,
                _ => continue,
            };
            if name == "N_MORE_ERRORS" {
                more = code.max(0) as u32;
                continue;
            }
            failures.push(BatchFailure {
                name: name.to_owned(),
                errno: Errno(code),
                kind: classify(Errno(code)),
            });
        }
        // The batch's own errno can be more telling than "first failure":
        // EXDEV for a cross-pool batch comes with an empty list.
        let kind = failures
            .first()
            .map(|f| f.kind)
            .unwrap_or_else(|| classify(errno));
        Error::Batch {
            operation,
            kind,
            errno,
            failures,
            more,
        }
    }

    pub(crate) fn shape(
        operation: &'static str,
        target: impl Into<String>,
        source: NvListError,
    ) -> Self {
        #[cfg(feature = "serde")]
        check_operation(operation);
        Error::Shape {
            operation,
            target: target.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        operation: &'static str,
        target: impl Into<String>,
        kind: ErrorKind,
        reason: impl Into<String>,
    ) -> Self {
        #[cfg(feature = "serde")]
        check_operation(operation);
        Error::Invalid {
            operation,
            target: target.into(),
            kind,
            reason: reason.into(),
        }
    }

    /// An I/O error (outside ZFS) while `operation` worked on `target`.
    pub fn io(operation: &'static str, target: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            operation,
            target: target.into(),
            source,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Name(_) => ErrorKind::InvalidName,
            Error::Zfs { kind, .. } | Error::Batch { kind, .. } | Error::Invalid { kind, .. } => {
                *kind
            }
            Error::Shape { .. } => ErrorKind::UnexpectedShape,
            Error::Io { source, .. } => match source.raw_os_error() {
                Some(code) => match ErrorKind::of(Errno(code)) {
                    ErrorKind::Other => ErrorKind::Io,
                    k => k,
                },
                None => ErrorKind::Io,
            },
        }
    }

    /// The errno behind the error, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Zfs { errno, .. } | Error::Batch { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error().map(Errno),
            _ => None,
        }
    }

    /// The failing operation, such as `lzc_receive` (None for a name error).
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            Error::Name(_) => None,
            Error::Zfs { operation, .. }
            | Error::Batch { operation, .. }
            | Error::Shape { operation, .. }
            | Error::Invalid { operation, .. }
            | Error::Io { operation, .. } => Some(operation),
        }
    }

    /// The dataset, snapshot, bookmark, pool or file the failing call acted
    /// on (None when none, or for a batch: see
    /// [`batch_failures`](Self::batch_failures)).
    pub fn target(&self) -> Option<&str> {
        match self {
            Error::Name(_) | Error::Batch { .. } => None,
            Error::Zfs { target, .. }
            | Error::Shape { target, .. }
            | Error::Invalid { target, .. }
            | Error::Io { target, .. } => {
                Some(target).filter(|t| !t.is_empty()).map(|t| t.as_str())
            }
        }
    }

    /// Per-name failures of a batch call (empty for other errors).
    pub fn batch_failures(&self) -> &[BatchFailure] {
        match self {
            Error::Batch { failures, .. } => failures,
            _ => &[],
        }
    }
}

/// For callers reading their own lists with `?` (zfs-core itself always
/// names the operation and the dataset: see [`Error::Shape`]).
impl From<NvListError> for Error {
    fn from(source: NvListError) -> Self {
        Error::shape("read nvlist", "", source)
    }
}

#[cfg(feature = "serde")]
mod wire;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_and_display() {
        assert_eq!(Errno(libc::ENOENT).name(), Some("ENOENT"));
        assert_eq!(Errno::RESUME_EXISTS.0, 1047);
        assert_eq!(
            Errno::STREAM_TRUNCATED.name(),
            Some("ZFS_ERR_STREAM_TRUNCATED")
        );
        assert!(Errno(1024).is_zfs_specific());
        assert!(!Errno(libc::EBUSY).is_zfs_specific());
        assert_eq!(Errno::ECKSUM.to_string(), "checksum mismatch (ECKSUM)");
        assert!(Errno(libc::ENOENT).to_string().contains("ENOENT"));
        // Unknown codes never panic.
        for code in [-1, 0, 4095, 1_000_000, i32::MIN, i32::MAX] {
            let _ = Errno(code).to_string();
            let _ = format!("{:?}", Errno(code));
            let _ = ErrorKind::of(Errno(code));
            let _ = ErrorKind::of_receive(Errno(code));
        }
    }

    #[test]
    fn receive_errnos_have_receive_meanings() {
        assert_eq!(
            ErrorKind::of_receive(Errno(libc::ENODEV)),
            ErrorKind::StreamMismatch
        );
        assert_eq!(
            ErrorKind::of_receive(Errno(libc::ETXTBSY)),
            ErrorKind::DestinationModified
        );
        assert_eq!(ErrorKind::of_receive(Errno::ECKSUM), ErrorKind::BadStream);
        assert_eq!(
            ErrorKind::of_receive(Errno::RESUME_EXISTS),
            ErrorKind::ResumeExists
        );
        assert_eq!(ErrorKind::of(Errno(libc::ENODEV)), ErrorKind::Other);
    }

    #[test]
    fn batch_errors_list_names_and_more() {
        let mut errlist = NvList::new();
        errlist
            .insert("tank/a@s", libc::EEXIST)
            .insert("tank/b@s", libc::ENOENT)
            .insert("N_MORE_ERRORS", 3i32);
        let e = Error::from_batch("lzc_snapshot", Errno(libc::EEXIST), Some(errlist));
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert_eq!(e.batch_failures().len(), 2);
        let text = e.to_string();
        assert!(
            text.contains("tank/a@s") && text.contains("and 3 more"),
            "{text}"
        );
    }
}
