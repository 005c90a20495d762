//! One side of a replication, the source or the target, local or remote:
//! the seam where [`Local`], the remote client and test doubles meet.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::OwnedFd;

use zfs_core::{
    Bookmark, BookmarkName, DatasetName, Properties, ReceiveOptions, ResumeToken, SendOptions,
    Snapshot, SnapshotName, SnapshotOrBookmark, Zfs,
};

use crate::error::Result;

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
    /// Receive with properties other than a backup's defaults
    /// ([`BACKUP_DEFAULTS`](crate::plan::BACKUP_DEFAULTS)), or set them.
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

/// One side of a replication: what planning, execution and pruning ask of
/// the source or the target, and nothing more.
///
/// [`Local`] runs each call on this host's ZFS; a remote endpoint
/// ([`remote::Client`](crate::remote)) asks a server; an embedder may
/// implement it for an agent in a jail or a double in its own tests. Calls
/// may come from several threads at once. Streams cross as pipe ends, so
/// local to local still moves no byte through user space.
///
/// ```no_run
/// use zfs_core::Zfs;
/// use zfs_replicate::{endpoint::Local, Replication};
///
/// let zfs = Zfs::open()?;
/// let (source, target) = (Local::new(&zfs), Local::new(&zfs));
/// let plan = Replication::new("tank/home".parse()?, "pipe/home".parse()?)
///     .plan_with(&source, &target)?;
/// print!("{plan}");
/// # Ok::<(), zfs_replicate::Error>(())
/// ```
pub trait Endpoint: Send + Sync {
    /// Names it in messages: "local", "tcp://nas:7070".
    fn describe(&self) -> String;

    /// Why `op` on `dataset` would be refused, or None when it is allowed
    /// (a local endpoint allows everything; a remote one says what its
    /// server's policy grants). Lets a run refuse before it changes
    /// anything.
    fn refusal(&self, op: Op, dataset: &DatasetName) -> Option<String> {
        let _ = (op, dataset);
        None
    }

    /// Fails with `NotFound` unless `dataset` is a filesystem or volume.
    fn dataset(&self, dataset: &DatasetName) -> Result<()>;
    /// Whether `dataset` exists.
    fn exists(&self, dataset: &DatasetName) -> Result<bool>;
    /// The children of `parent` (filesystems and volumes), one level.
    fn children(&self, parent: &DatasetName) -> Result<Vec<DatasetName>>;
    /// `root` and all its descendants, parents first.
    fn descendants(&self, root: &DatasetName) -> Result<Vec<DatasetName>>;
    /// Every snapshot of `dataset`, oldest first.
    fn snapshots(&self, dataset: &DatasetName) -> Result<Vec<Snapshot>>;
    /// The snapshots of `dataset` created in `min_createtxg` or later,
    /// oldest first.
    fn snapshots_created(&self, dataset: &DatasetName, min_createtxg: u64)
        -> Result<Vec<Snapshot>>;
    /// One snapshot's GUID and creation txg.
    fn snapshot_info(&self, snapshot: &SnapshotName) -> Result<Snapshot>;
    /// The bookmarks of `dataset`.
    fn bookmarks(&self, dataset: &DatasetName) -> Result<Vec<Bookmark>>;
    /// The properties of `dataset`.
    fn properties(&self, dataset: &DatasetName) -> Result<Properties>;
    /// The holds on `snapshot`: `{tag: time}`.
    fn holds(&self, snapshot: &SnapshotName) -> Result<BTreeMap<String, u64>>;
    /// The token of an interrupted resumable receive into `dataset`.
    fn resume_token(&self, dataset: &DatasetName) -> Result<Option<ResumeToken>> {
        match self.properties(dataset)?.receive_resume_token {
            Some(token) => Ok(Some(ResumeToken::parse(&token)?)),
            None => Ok(None),
        }
    }

    /// The estimated size of a stream.
    fn send_space(&self, snapshot: &SnapshotName, opts: &SendOptions) -> Result<u64>;
    /// What a resume token resumes: the snapshot and how it was sent.
    fn resolve_resume_token(&self, token: &ResumeToken) -> Result<(SnapshotName, SendOptions)>;
    /// Writes the stream of `snapshot` into `into` (a pipe's write end),
    /// then closes it.
    fn send(&self, snapshot: &SnapshotName, opts: &SendOptions, into: OwnedFd) -> Result<()>;
    /// Writes the rest of an interrupted stream into `into`, then closes it.
    fn send_resume(&self, token: &ResumeToken, into: OwnedFd) -> Result<()>;

    /// Receives one stream from `from` (a pipe's read end) into `target`.
    fn receive(
        &self,
        target: &DatasetName,
        from: OwnedFd,
        opts: &ReceiveOptions,
    ) -> Result<Receipt>;
    /// Discards the partial state of an interrupted receive into `target`;
    /// false when there was none.
    fn abort_resumable_receive(&self, target: &DatasetName) -> Result<bool>;
    /// Makes what was received into `target`'s pool durable (`zpool
    /// sync`): [`sync`](crate::Replication::sync) calls it before pruning
    /// the source.
    fn sync_pool(&self, target: &DatasetName) -> Result<()>;
    /// Makes the encryption root `dataset` use its parent's key without
    /// rewrapping ([`Zfs::force_inherit_key`](zfs_core::Zfs::force_inherit_key)):
    /// after a raw receive, for a dataset whose source inherits its key.
    fn force_inherit_key(&self, dataset: &DatasetName) -> Result<()>;
    /// Creates `dataset`, an empty filesystem with `canmount=off` (and the
    /// user property [`PLACEHOLDER`](crate::plan::PLACEHOLDER)), to hold
    /// backups below it ([`Replication::create_parents`]); one that exists
    /// already is left as it is.
    ///
    /// [`Replication::create_parents`]: crate::Replication::create_parents
    fn create_placeholder(&self, dataset: &DatasetName) -> Result<()>;

    /// Takes these snapshots, atomically.
    fn snapshot(&self, snapshots: &[SnapshotName]) -> Result<()>;
    /// Creates these bookmarks, each of a snapshot or bookmark.
    fn bookmark(&self, bookmarks: &[(BookmarkName, SnapshotOrBookmark)]) -> Result<()>;
    /// Destroys these bookmarks.
    fn destroy_bookmarks(&self, bookmarks: &[BookmarkName]) -> Result<()>;
    /// Destroys these snapshots (not deferred: a held one fails).
    fn destroy_snapshots(&self, snapshots: &[SnapshotName]) -> Result<()>;
    /// Rolls a dataset back to its newest snapshot, `snapshot`.
    fn rollback_to(&self, snapshot: &SnapshotName) -> Result<()>;
    /// Destroys a dataset without snapshots or children.
    fn destroy(&self, dataset: &DatasetName) -> Result<()>;

    /// Places temporary holds `(snapshot, tag)`, released when the lease
    /// drops, and by the kernel (or the server) if the process (or the
    /// connection) dies first.
    fn hold_temporary(&self, holds: &[(SnapshotName, String)]) -> Result<Lease>;
    /// Takes the one-run-per-target lock of `target`: [`Error::Busy`] when
    /// another run holds it.
    ///
    /// [`Error::Busy`]: crate::Error::Busy
    fn lock(&self, target: &DatasetName) -> Result<Lease>;
}

/// What a receive produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The snapshot created on the target.
    pub snapshot: SnapshotName,
    /// Stream bytes the receive read.
    pub bytes: u64,
}

/// Something held until dropped: temporary holds, a target's lock.
#[must_use = "what it holds is released when it drops"]
pub struct Lease(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl Lease {
    /// A lease that holds `what` until dropped (whatever releases on drop).
    pub fn new(what: impl Send + Sync + 'static) -> Lease {
        Lease(Some(Box::new(what)))
    }

    /// A lease that holds nothing.
    pub fn none() -> Lease {
        Lease(None)
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Lease(held)"
        } else {
            "Lease(none)"
        })
    }
}

/// This host's ZFS as an endpoint: each call is the [`Zfs`] call of the
/// same name, and streams go straight between the kernel and the pipe.
#[derive(Clone, Copy)]
pub struct Local<'a> {
    zfs: &'a Zfs,
}

impl<'a> Local<'a> {
    /// This host's ZFS through `zfs`.
    pub fn new(zfs: &'a Zfs) -> Self {
        Local { zfs }
    }

    /// The handle it uses.
    pub fn zfs(&self) -> &'a Zfs {
        self.zfs
    }
}

impl fmt::Debug for Local<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Local")
    }
}

fn names(datasets: Vec<zfs_core::Dataset>) -> Vec<DatasetName> {
    datasets.into_iter().map(|d| d.name().clone()).collect()
}

impl Endpoint for Local<'_> {
    fn describe(&self) -> String {
        "local".to_owned()
    }
    fn dataset(&self, dataset: &DatasetName) -> Result<()> {
        self.zfs.dataset(dataset)?;
        Ok(())
    }
    fn exists(&self, dataset: &DatasetName) -> Result<bool> {
        Ok(self.zfs.exists(dataset))
    }
    fn children(&self, parent: &DatasetName) -> Result<Vec<DatasetName>> {
        Ok(names(self.zfs.children_quick(parent)?))
    }
    fn descendants(&self, root: &DatasetName) -> Result<Vec<DatasetName>> {
        Ok(names(self.zfs.descendants(root)?))
    }
    fn snapshots(&self, dataset: &DatasetName) -> Result<Vec<Snapshot>> {
        Ok(self.zfs.snapshots(dataset)?)
    }
    fn snapshots_created(
        &self,
        dataset: &DatasetName,
        min_createtxg: u64,
    ) -> Result<Vec<Snapshot>> {
        Ok(self.zfs.snapshots_created(dataset, min_createtxg)?)
    }
    fn snapshot_info(&self, snapshot: &SnapshotName) -> Result<Snapshot> {
        Ok(self.zfs.snapshot_info(snapshot)?)
    }
    fn bookmarks(&self, dataset: &DatasetName) -> Result<Vec<Bookmark>> {
        Ok(self.zfs.bookmarks(dataset)?)
    }
    fn properties(&self, dataset: &DatasetName) -> Result<Properties> {
        Ok(self.zfs.properties(dataset)?)
    }
    fn holds(&self, snapshot: &SnapshotName) -> Result<BTreeMap<String, u64>> {
        Ok(self.zfs.holds(snapshot)?)
    }
    fn resume_token(&self, dataset: &DatasetName) -> Result<Option<ResumeToken>> {
        Ok(self.zfs.resume_token(dataset)?)
    }
    fn send_space(&self, snapshot: &SnapshotName, opts: &SendOptions) -> Result<u64> {
        Ok(self.zfs.send_space(snapshot, opts)?)
    }
    fn resolve_resume_token(&self, token: &ResumeToken) -> Result<(SnapshotName, SendOptions)> {
        Ok(self.zfs.resolve_resume_token(token)?)
    }
    fn send(&self, snapshot: &SnapshotName, opts: &SendOptions, into: OwnedFd) -> Result<()> {
        Ok(self.zfs.send(snapshot, opts, &into)?)
    }
    fn send_resume(&self, token: &ResumeToken, into: OwnedFd) -> Result<()> {
        Ok(self.zfs.send_resume(token, &into)?)
    }
    fn receive(
        &self,
        target: &DatasetName,
        from: OwnedFd,
        opts: &ReceiveOptions,
    ) -> Result<Receipt> {
        let received = self.zfs.receive(target, &from, opts)?;
        let failures = received.property_failures();
        if !failures.is_empty() {
            return Err(crate::Error::PropertiesNotSet {
                snapshot: received.snapshot,
                failures,
            });
        }
        Ok(Receipt {
            snapshot: received.snapshot,
            bytes: received.bytes,
        })
    }
    fn abort_resumable_receive(&self, target: &DatasetName) -> Result<bool> {
        Ok(self.zfs.abort_resumable_receive(target)?)
    }
    fn sync_pool(&self, target: &DatasetName) -> Result<()> {
        Ok(self.zfs.sync_pool(target)?)
    }
    fn force_inherit_key(&self, dataset: &DatasetName) -> Result<()> {
        Ok(self.zfs.force_inherit_key(dataset)?)
    }
    fn create_placeholder(&self, dataset: &DatasetName) -> Result<()> {
        let props = zfs_core::PropertyList::new()
            .set("canmount", "off")?
            .set(crate::plan::PLACEHOLDER, "yes")?;
        match self.zfs.create_filesystem(dataset, props.nvlist()) {
            Err(e) if e.kind() == zfs_core::ErrorKind::AlreadyExists => Ok(()),
            r => Ok(r?),
        }
    }
    fn snapshot(&self, snapshots: &[SnapshotName]) -> Result<()> {
        Ok(self.zfs.snapshot(snapshots)?)
    }
    fn bookmark(&self, bookmarks: &[(BookmarkName, SnapshotOrBookmark)]) -> Result<()> {
        Ok(self.zfs.bookmark(bookmarks)?)
    }
    fn destroy_bookmarks(&self, bookmarks: &[BookmarkName]) -> Result<()> {
        Ok(self.zfs.destroy_bookmarks(bookmarks)?)
    }
    fn destroy_snapshots(&self, snapshots: &[SnapshotName]) -> Result<()> {
        Ok(self.zfs.destroy_snapshots(snapshots, false)?)
    }
    fn rollback_to(&self, snapshot: &SnapshotName) -> Result<()> {
        Ok(self.zfs.rollback_to(snapshot)?)
    }
    fn destroy(&self, dataset: &DatasetName) -> Result<()> {
        Ok(self.zfs.destroy(dataset)?)
    }
    fn hold_temporary(&self, holds: &[(SnapshotName, String)]) -> Result<Lease> {
        Ok(Lease::new(self.zfs.hold_temporary(holds)?))
    }
    fn lock(&self, target: &DatasetName) -> Result<Lease> {
        Ok(Lease::new(crate::lock::TargetLock::acquire(target)?))
    }
}

/// The two endpoints of a run.
#[derive(Clone, Copy)]
pub(crate) struct Sides<'a> {
    pub source: &'a dyn Endpoint,
    pub target: &'a dyn Endpoint,
}
