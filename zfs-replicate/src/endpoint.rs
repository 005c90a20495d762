//! One side of a replication: the source or the target, local or remote.

use std::fmt;

/// What an endpoint is asked to do, for policies and refusals: each
/// endpoint call is one of these, on one dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "remote", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Op {
    /// Read names, snapshots, bookmarks, properties and holds.
    List,
    /// Send a stream, or estimate its size.
    Send,
    /// Receive a stream, resume or abort a partial receive, take the
    /// one-run-per-target lock.
    Receive,
    /// Place temporary holds (released when the run or session ends).
    Hold,
    /// Take snapshots.
    Snapshot,
    /// Create bookmarks.
    Bookmark,
    /// Destroy bookmarks (incremental bases, not data).
    DestroyBookmark,
    /// Destroy snapshots.
    DestroySnapshot,
    /// Roll a dataset back, destroying what is newer.
    Rollback,
    /// Destroy a dataset.
    DestroyDataset,
    /// Receive with properties other than the defaults
    /// ([`safe_receive_props`](crate::execute::safe_receive_props)).
    SetProperty,
}

impl Op {
    /// Every operation, in declaration order.
    pub const ALL: [Op; 11] = [
        Op::List,
        Op::Send,
        Op::Receive,
        Op::Hold,
        Op::Snapshot,
        Op::Bookmark,
        Op::DestroyBookmark,
        Op::DestroySnapshot,
        Op::Rollback,
        Op::DestroyDataset,
        Op::SetProperty,
    ];

    /// Its name in messages: "receive", "destroy snapshot".
    pub fn as_str(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Send => "send",
            Op::Receive => "receive",
            Op::Hold => "hold",
            Op::Snapshot => "snapshot",
            Op::Bookmark => "bookmark",
            Op::DestroyBookmark => "destroy bookmark",
            Op::DestroySnapshot => "destroy snapshot",
            Op::Rollback => "rollback",
            Op::DestroyDataset => "destroy dataset",
            Op::SetProperty => "set property",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
