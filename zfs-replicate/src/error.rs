//! The replication error type.

use zfs_core::DatasetName;

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
    /// receiver's checksum error, not the sender's broken pipe).
    #[error("replicating {snapshot} into {target}: {source}")]
    Transfer {
        target: DatasetName,
        snapshot: String,
        source: Box<zfs_core::Error>,
    },

    /// A stream file is damaged or not a stream.
    #[error("{path}: {source}")]
    Stream { path: String, source: StreamError },

    /// The transfer was cancelled through its [`CancelToken`](crate::CancelToken).
    #[error("cancelled while replicating into {target}")]
    Cancelled { target: DatasetName },

    /// The request itself is invalid (for example a source with no snapshot).
    #[error("{0}")]
    Invalid(String),

    /// An I/O error on a stream file.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
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
}

impl From<zfs_core::NameError> for Error {
    fn from(e: zfs_core::NameError) -> Self {
        Error::Zfs(e.into())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
