//! The typed control messages: one [`Request`] per [`Endpoint`] call, one
//! [`Response`] per result, and [`WireError`] for what failed.
//!
//! Encoded with postcard. Enums are append-only within a major protocol
//! version (postcard encodes a variant by its index). Every name decodes
//! into zfs-core's validated name types, so a malformed name fails decoding
//! and never reaches an endpoint.
//!
//! [`Endpoint`]: crate::Endpoint

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zfs_core::{
    Bookmark, BookmarkName, DatasetName, NvList, Properties, ReceiveOptions, ResumeToken,
    SendOptions, Snapshot, SnapshotName, SnapshotOrBookmark,
};

use super::handshake::Version;

use crate::endpoint::{Op, Receipt};
use crate::error::Error;

/// A call on the far endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Dataset(DatasetName),
    Exists(DatasetName),
    Children(DatasetName),
    Descendants(DatasetName),
    Snapshots(DatasetName),
    SnapshotsCreated(DatasetName, u64),
    SnapshotInfo(SnapshotName),
    Bookmarks(DatasetName),
    Properties(DatasetName),
    Holds(SnapshotName),
    SendSpace(SnapshotName, SendOptions),
    ResolveResumeToken(ResumeToken),
    /// Send a stream: data flows server → client on this request's id.
    Send(SnapshotName, SendOptions),
    /// Send the rest of an interrupted stream.
    SendResume(ResumeToken),
    /// Receive a stream: data flows client → server on this request's id.
    Receive(DatasetName, ReceiveSpec),
    AbortResumableReceive(DatasetName),
    /// Sync the pool of this dataset (receive access to it suffices).
    SyncPool(DatasetName),
    Snapshot(Vec<SnapshotName>),
    Bookmark(Vec<(BookmarkName, SnapshotOrBookmark)>),
    DestroyBookmarks(Vec<BookmarkName>),
    DestroySnapshots(Vec<SnapshotName>),
    RollbackTo(SnapshotName),
    Destroy(DatasetName),
    /// Temporary holds `(snapshot, tag)`: a lease, released by a RELEASE
    /// frame or when the session ends.
    HoldTemporary(Vec<(SnapshotName, String)>),
    /// The one-run-per-target lock: a lease.
    Lock(DatasetName),
    /// Make a raw-received encryption root use its parent's key: a change
    /// to what is stored, so it needs more than receive access (the
    /// `set-property` grant, as for properties).
    ForceInheritKey(DatasetName),
    /// Create an empty `canmount=off` filesystem to hold backups (receive
    /// access to it suffices).
    CreatePlaceholder(DatasetName),
}

/// How to receive. There is no `force` and no `origin`: a client cannot ask
/// for a forced receive or a clone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiveSpec {
    pub resumable: bool,
    pub raw: bool,
    /// Received properties (`$recvd`), when any.
    pub props: Option<NvList>,
    /// `-o` (typed values) and `-x` (booleans) entries; empty when none.
    pub overrides: NvList,
}

impl ReceiveSpec {
    /// The spec of `opts`; None when it asks for what the protocol cannot
    /// express (force, origin).
    pub fn of(opts: &ReceiveOptions) -> Option<ReceiveSpec> {
        if opts.is_forced() || opts.origin_snapshot().is_some() {
            return None;
        }
        Some(ReceiveSpec {
            resumable: opts.is_resumable(),
            raw: opts.is_raw(),
            props: opts.received_properties().cloned(),
            overrides: opts.overrides().clone(),
        })
    }

    /// The options a server receives with.
    pub fn options(&self) -> ReceiveOptions {
        let mut opts = ReceiveOptions::new()
            .resumable(self.resumable)
            .raw(self.raw);
        if let Some(props) = &self.props {
            opts = opts.properties(props.clone());
        }
        opts.with_overrides(self.overrides.clone())
    }
}

impl Request {
    /// Every (operation, dataset) this request touches, for the policy:
    /// snapshots, bookmarks and bases count as their datasets. Exhaustive,
    /// so a new request cannot skip the check.
    /// Fails when a resume token names no valid snapshot.
    pub fn access(&self) -> Result<Vec<(Op, DatasetName)>, String> {
        use Request as R;
        let one = |op: Op, d: &DatasetName| vec![(op, d.clone())];
        Ok(match self {
            R::Dataset(d)
            | R::Exists(d)
            | R::Children(d)
            | R::Descendants(d)
            | R::Snapshots(d)
            | R::SnapshotsCreated(d, _)
            | R::Bookmarks(d)
            | R::Properties(d) => one(Op::List, d),
            R::SnapshotInfo(s) | R::Holds(s) => one(Op::List, &s.dataset()),
            R::SendSpace(s, opts) | R::Send(s, opts) => {
                let mut v = one(Op::Send, &s.dataset());
                if let Some(base) = opts.base() {
                    v.push((Op::Send, base.dataset()));
                }
                v
            }
            // The token's snapshot: its base is looked up in the same
            // filesystem.
            R::ResolveResumeToken(t) | R::SendResume(t) => {
                let snapshot = SnapshotName::new(&t.to_name)
                    .map_err(|e| format!("the resume token names {:?}: {e}", t.to_name))?;
                one(Op::Send, &snapshot.dataset())
            }
            R::Receive(d, spec) => {
                let mut v = one(Op::Receive, d);
                let only_safe = spec.props.as_ref().is_none_or(NvList::is_empty)
                    && crate::plan::only_backup_defaults(&spec.overrides);
                if !only_safe {
                    v.push((Op::SetProperty, d.clone()));
                }
                v
            }
            R::AbortResumableReceive(d) | R::Lock(d) | R::SyncPool(d) | R::CreatePlaceholder(d) => {
                one(Op::Receive, d)
            }
            R::ForceInheritKey(d) => one(Op::SetProperty, d),
            R::Snapshot(s) => s.iter().map(|s| (Op::Snapshot, s.dataset())).collect(),
            R::Bookmark(b) => b
                .iter()
                .flat_map(|(b, from)| [(Op::Bookmark, b.dataset()), (Op::Bookmark, from.dataset())])
                .collect(),
            R::DestroyBookmarks(b) => b
                .iter()
                .map(|b| (Op::DestroyBookmark, b.dataset()))
                .collect(),
            R::DestroySnapshots(s) => s
                .iter()
                .map(|s| (Op::DestroySnapshot, s.dataset()))
                .collect(),
            R::RollbackTo(s) => one(Op::Rollback, &s.dataset()),
            R::Destroy(d) => one(Op::DestroyDataset, d),
            R::HoldTemporary(h) => h.iter().map(|(s, _)| (Op::Hold, s.dataset())).collect(),
        })
    }

    /// Whether data flows on this request's id.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            Request::Send(..) | Request::SendResume(_) | Request::Receive(..)
        )
    }
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Unit,
    Bool(bool),
    Names(Vec<DatasetName>),
    Snapshots(Vec<Snapshot>),
    Snapshot(Snapshot),
    Bookmarks(Vec<Bookmark>),
    Properties(Properties),
    Holds(BTreeMap<String, u64>),
    Size(u64),
    Resolved(SnapshotName, SendOptions),
    Receipt(ReceiptWire),
    /// A lease's id, for its RELEASE frame.
    Lease(u32),
}

/// [`Receipt`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptWire {
    pub snapshot: SnapshotName,
    pub bytes: u64,
}

impl From<Receipt> for ReceiptWire {
    fn from(r: Receipt) -> Self {
        ReceiptWire {
            snapshot: r.snapshot,
            bytes: r.bytes,
        }
    }
}

impl From<ReceiptWire> for Receipt {
    fn from(r: ReceiptWire) -> Self {
        Receipt {
            snapshot: r.snapshot,
            bytes: r.bytes,
        }
    }
}

/// Why a request failed, as the client rebuilds it.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireError {
    /// A ZFS call failed: the same variant, kind and errno on both sides, so
    /// retries (EBUSY) and classifications work remotely too.
    Zfs(zfs_core::Error),
    /// The server's policy refused the request; nothing changed.
    PermissionDenied {
        dataset: DatasetName,
        operation: Op,
        reason: String,
    },
    /// Another run holds the target's lock on the server.
    Busy { target: DatasetName },
    /// The request was malformed or made no sense (a bad token, a request
    /// the server does not know, too many streams).
    Invalid { reason: String },
    /// Anything else, as text.
    Other { message: String },
}

impl WireError {
    /// What a server replies for `e`.
    pub fn from_error(e: Error) -> WireError {
        match e {
            Error::Zfs(e) => WireError::Zfs(e),
            Error::Transfer { source, .. } | Error::TargetChanged { source, .. } => {
                WireError::Zfs(*source)
            }
            Error::PermissionDenied {
                dataset,
                operation,
                reason,
                ..
            } => WireError::PermissionDenied {
                dataset,
                operation,
                reason,
            },
            Error::Busy { target } => WireError::Busy { target },
            other => WireError::Other {
                message: other.to_string(),
            },
        }
    }

    /// The client's error for this reply from `peer`.
    pub fn into_error(self, peer: &str) -> Error {
        match self {
            WireError::Zfs(e) => Error::Zfs(e),
            WireError::PermissionDenied {
                dataset,
                operation,
                reason,
            } => Error::PermissionDenied {
                endpoint: peer.to_owned(),
                dataset,
                operation,
                reason,
            },
            WireError::Busy { target } => Error::Busy { target },
            WireError::Invalid { reason } => Error::Protocol {
                peer: peer.to_owned(),
                reason,
            },
            WireError::Other { message } => Error::Remote {
                peer: peer.to_owned(),
                message,
            },
        }
    }
}

/// A reply body: the result of one request.
pub type Reply = Result<Response, WireError>;

/// Encodes a message (never fails for these types; an error would be a bug,
/// reported as a protocol error by the caller).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes a message, refusing trailing bytes.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(postcard::Error::DeserializeBadEncoding)
    }
}

/// Why a server refused a connection (a REFUSE frame), before closing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the server speaks protocol {server}, this client {client}: install the same major \
         version of zfs-replicate on both sides"
    )]
    Version { server: Version, client: Version },
    #[error("the server refused the token (authentication failed)")]
    AuthFailed,
    #[error("the server refused: {0}")]
    Other(String),
}
