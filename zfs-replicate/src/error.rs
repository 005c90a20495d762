//! The replication error type.
//!
//! Every variant names what failed and where. [`Error::kind`] classifies an
//! error in one place, for callers that map errors to exit codes, retries or
//! replies (the `backup` example's exit codes come from it).

use std::path::PathBuf;

use zfs_core::{DatasetName, SnapshotName};

use crate::endpoint::Op;
use crate::execute::Report;
use crate::plan::Divergence;
use crate::stream::StreamError;

/// Why a replication, a stream-file operation or a prune failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A ZFS call failed.
    #[error(transparent)]
    Zfs(#[from] zfs_core::Error),

    /// The plan found divergence that needs a decision (for example
    /// `rollback`); nothing was changed.
    #[error("{}", describe_divergence(.0))]
    Diverged(Vec<(DatasetName, Divergence)>),

    /// A transfer into `target` failed; `source` is the root cause (the
    /// receiver's checksum error, not the sender's broken pipe). An
    /// interrupted transfer ([`ErrorKind::Interrupted`]) left resumable
    /// state: the next run resumes it.
    #[error("replicating {snapshot} into {target}: {source}")]
    Transfer {
        target: DatasetName,
        snapshot: SnapshotName,
        source: Box<zfs_core::Error>,
    },

    /// A stream file is damaged or not a stream.
    #[error("{}: {source}", path.display())]
    Stream { path: PathBuf, source: StreamError },

    /// The target, or the snapshot a transfer into it starts from, vanished
    /// during the run (another process destroyed it); `source` is what the
    /// receive reported. Nothing of ours was lost: the next run plans anew.
    #[error("{target} changed during the transfer (destroyed, or its base snapshot removed); the receive reported: {source}")]
    TargetChanged {
        target: DatasetName,
        source: Box<zfs_core::Error>,
    },

    /// The run was cancelled through its [`CancelToken`](crate::CancelToken).
    /// Nothing was changed after the cancel was seen (no destroy, no prune);
    /// `done` lists the transfers that completed before it, each with its
    /// bookmark. An interrupted transfer is resumed by the next run.
    #[error("cancelled after {} completed transfer(s)", .done.transfers.iter().map(|(_, t)| t.len()).sum::<usize>())]
    Cancelled { done: Box<Report> },

    /// Another replication into `target` is running (in this process or
    /// another one on this host); nothing was changed. Try again later.
    #[error("another replication into {target} is running")]
    Busy { target: DatasetName },

    /// The lock that keeps one replication per target could not be taken
    /// (not because it is busy: see [`Error::Busy`]).
    #[error("locking {target}: {source}")]
    Lock {
        target: DatasetName,
        source: std::io::Error,
    },

    /// The prefix is unusable: empty, or so long that the names this crate
    /// makes from it would not fit.
    #[error("prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        prefix: String,
        reason: &'static str,
    },

    /// A dataset or snapshot filter is unusable (a malformed pattern, a
    /// property name that is not a user property's).
    #[error("filter {filter:?}: {reason}")]
    InvalidFilter { filter: String, reason: String },

    /// A [`DatasetFilter`](crate::DatasetFilter) selects none of the
    /// source's datasets: [`sync`](crate::Replication::sync) does nothing
    /// rather than report a backup of nothing as a success.
    #[error("{dataset}: the filter selects none of its datasets")]
    NothingSelected { dataset: DatasetName },

    /// A stream file is intact but not the stream expected: another
    /// snapshot's (`found_guid`), or not one plain stream (None).
    #[error("{}: not the stream of snapshot {expected_guid:#x} (found {})", path.display(), found_guid.map_or("no single stream".to_owned(), |g| format!("{g:#x}")))]
    UnexpectedStream {
        path: PathBuf,
        expected_guid: u64,
        found_guid: Option<u64>,
    },

    /// A [`SyncRun`](crate::SyncRun) step was called out of order.
    #[error("sync step {step} needs {needs}")]
    OutOfOrder {
        step: &'static str,
        needs: &'static str,
    },

    /// A parity level or block size that is not one this library writes.
    #[error("parity: {reason}")]
    InvalidParity { reason: String },

    /// A stream file is damaged beyond what its parity sidecar repairs
    /// (or its sidecar is unusable); nothing was changed.
    #[cfg(feature = "parity")]
    #[error("{}: damaged beyond repair at {damaged}: {}", path.display(), why.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("; "))]
    Unrecoverable {
        path: PathBuf,
        damaged: crate::parity::Ranges,
        why: Vec<crate::parity::Unrecoverable>,
    },

    /// A stream file holds a compound (`zfs send -R`) stream, which
    /// libzfs_core cannot receive.
    #[error("{}: a compound (zfs send -R) stream; receive each dataset's stream separately", path.display())]
    CompoundStream { path: PathBuf },

    /// The target's resume token vanished between planning and resuming
    /// (another process resumed or aborted it).
    #[error("{target}: the resume token disappeared before the transfer could resume")]
    ResumeTokenGone { target: DatasetName },

    /// A thread of this library panicked while replicating into `target`
    /// (a bug: please report it). Its transfer left resumable state.
    #[error("{thread} thread panicked while replicating into {target}")]
    Panicked {
        thread: &'static str,
        target: DatasetName,
    },

    /// The operating system refused a thread for a transfer into `target`.
    #[error("starting a thread for {target}: {source}")]
    Thread {
        target: DatasetName,
        source: std::io::Error,
    },

    /// An I/O error on a stream file.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// An endpoint refused `operation` on `dataset` (a remote server's
    /// policy); nothing was changed by the refused call.
    #[error("{endpoint} refused: {operation} on {dataset}: {reason}")]
    PermissionDenied {
        /// The refusing endpoint ([`Endpoint::describe`](crate::Endpoint::describe)).
        endpoint: String,
        dataset: DatasetName,
        operation: Op,
        reason: String,
    },

    /// The connection to a remote endpoint failed or was lost; a transfer
    /// it carried left resumable state (or none).
    #[error("connection to {peer}: {reason}")]
    Disconnected { peer: String, reason: String },

    /// A remote peer broke the protocol or speaks another version.
    #[error("protocol error with {peer}: {reason}")]
    Protocol { peer: String, reason: String },

    /// The stream was received (`snapshot` exists), but the kernel refused
    /// these properties of the receive (an override or a received
    /// property): each with its errno. The run stops here, so that no one
    /// takes the backup for what was asked; the next run finds it up to
    /// date, and the properties can be set with
    /// [`Zfs::set_properties`](zfs_core::Zfs::set_properties).
    #[error("{snapshot} was received, but its properties were not set: {}", describe_failures(.failures))]
    PropertiesNotSet {
        snapshot: zfs_core::SnapshotName,
        failures: Vec<zfs_core::BatchFailure>,
    },

    /// A remote endpoint failed in a way that has no variant here (its
    /// message says what).
    #[error("{peer}: {message}")]
    Remote { peer: String, message: String },
}

/// What kind of failure an [`Error`] is: one classification for exit codes,
/// retries and replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The two sides diverged (no common snapshot, target modified or ahead,
    /// a stream whose base the target lacks): a decision is needed.
    Diverged,
    /// Cancelled through the cancel token.
    Cancelled,
    /// Another replication holds the target, or ZFS reports it busy.
    Busy,
    /// A signal interrupted a transfer; it is resumable.
    Interrupted,
    /// A stream is damaged, truncated or not a stream.
    BadStream,
    /// A dataset, snapshot or file does not exist.
    NotFound,
    /// Out of space or quota.
    NoSpace,
    /// A name is invalid, or a name this crate would make is too long.
    InvalidName,
    /// The stream or operation needs something this system lacks.
    NotSupported,
    /// Not permitted: by the kernel, or by a remote endpoint's policy.
    PermissionDenied,
    /// A connection to a remote endpoint failed or was lost.
    Disconnected,
    /// A remote peer broke the protocol or speaks another version.
    Protocol,
    /// I/O outside ZFS (a stream file).
    Io,
    /// A bug in this library (a panicked thread).
    Bug,
    /// Bad input that is not a name: a property value, an option, a key
    /// of the wrong format.
    InvalidArgument,
    /// ZFS is not available here (no module loaded, no `/dev/zfs`).
    Unavailable,
    /// Anything else; see the error's message.
    Other,
}

fn describe_failures(failures: &[zfs_core::BatchFailure]) -> String {
    let parts: Vec<String> = failures
        .iter()
        .map(|f| format!("{} ({}: {})", f.name, f.kind, f.errno))
        .collect();
    parts.join(", ")
}

fn describe_divergence(items: &[(DatasetName, Divergence)]) -> String {
    let parts: Vec<String> = items.iter().map(|(t, d)| format!("{t}: {d}")).collect();
    parts.join("; ")
}

impl Error {
    /// Whether this is a divergence that only lacks a common snapshot.
    pub fn is_no_common_snapshot(&self) -> bool {
        matches!(self, Error::Diverged(d) if d.iter().any(|(_, x)| matches!(x, Divergence::NoCommonSnapshot { .. })))
    }

    /// Classifies the error: one kind to match on, whatever variant (a
    /// kernel error, a transfer's root cause, a remote refusal) carries it.
    ///
    /// ```no_run
    /// use zfs_replicate::{ErrorKind, ExecuteOptions, Replication};
    ///
    /// let zfs = zfs_core::Zfs::open()?;
    /// let repl = Replication::new("tank/home".parse()?, "pipe/home".parse()?);
    /// match repl.sync(&zfs, &ExecuteOptions::new(), Some(7)) {
    ///     Ok(done) => println!("took {}", done.snapshot),
    ///     Err(e) if e.kind() == ErrorKind::Diverged => eprintln!("needs a look: {e}"),
    ///     Err(e) if e.kind() == ErrorKind::NoSpace => eprintln!("backup drive full: {e}"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Zfs(e) => core_kind(e.kind()),
            Error::Transfer { source, .. } => core_kind(source.kind()),
            Error::Diverged(_) => ErrorKind::Diverged,
            Error::Stream {
                source: StreamError::Io { .. },
                ..
            } => ErrorKind::Io,
            Error::Stream { .. } | Error::CompoundStream { .. } => ErrorKind::BadStream,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::Busy { .. } => ErrorKind::Busy,
            Error::ResumeTokenGone { .. } | Error::TargetChanged { .. } => ErrorKind::NotFound,
            Error::Panicked { .. } => ErrorKind::Bug,
            Error::Thread { .. } | Error::Lock { .. } => ErrorKind::Other,
            Error::InvalidPrefix { .. } => ErrorKind::InvalidName,
            Error::InvalidFilter { .. } => ErrorKind::InvalidArgument,
            Error::NothingSelected { .. } => ErrorKind::NotFound,
            Error::OutOfOrder { .. } => ErrorKind::InvalidArgument,
            Error::UnexpectedStream { .. } => ErrorKind::BadStream,
            #[cfg(feature = "parity")]
            Error::Unrecoverable { .. } => ErrorKind::BadStream,
            Error::InvalidParity { .. } => ErrorKind::InvalidArgument,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::Io,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::Disconnected { .. } => ErrorKind::Disconnected,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Remote { .. } => ErrorKind::Other,
            Error::PropertiesNotSet { failures, .. } => failures
                .first()
                .map_or(ErrorKind::Other, |f| core_kind(f.kind)),
        }
    }

    /// The ZFS error behind this one, if any.
    pub fn zfs_error(&self) -> Option<&zfs_core::Error> {
        match self {
            Error::Zfs(e) => Some(e),
            Error::Transfer { source, .. } | Error::TargetChanged { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn core_kind(kind: zfs_core::ErrorKind) -> ErrorKind {
    use zfs_core::ErrorKind as K;
    match kind {
        K::NotFound => ErrorKind::NotFound,
        K::Busy | K::ResumeExists | K::InUseElsewhere => ErrorKind::Busy,
        // A wrong encryption key is a refusal too.
        K::PermissionDenied | K::WrongKey | K::KeyNotLoaded => ErrorKind::PermissionDenied,
        K::NoSpace => ErrorKind::NoSpace,
        K::DestinationModified | K::StreamMismatch | K::HasNewerSnapshots | K::NotAncestor => {
            ErrorKind::Diverged
        }
        K::BadStream => ErrorKind::BadStream,
        K::NotSupported => ErrorKind::NotSupported,
        K::InvalidName => ErrorKind::InvalidName,
        K::Interrupted => ErrorKind::Interrupted,
        K::Io => ErrorKind::Io,
        K::InvalidArgument => ErrorKind::InvalidArgument,
        K::Unavailable => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

impl From<zfs_core::NameError> for Error {
    fn from(e: zfs_core::NameError) -> Self {
        Error::Zfs(e.into())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
