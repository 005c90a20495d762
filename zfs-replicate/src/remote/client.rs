//! The client: a remote endpoint, over a [`Channel`] to a server.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use zfs_core::{
    Bookmark, BookmarkName, DatasetName, Properties, ReceiveOptions, ResumeToken, SendOptions,
    Snapshot, SnapshotName, SnapshotOrBookmark,
};

use super::channel::Channel;
use super::conn::{read_magic, Conn, FdReader, Incoming, StreamEnd};
use super::frame::{self, FrameLimits, Kind, MAGIC};
use super::handshake::{self, Hello, Welcome, FEATURE_ZSTD};
use super::message::{self, ReceiveSpec, Refusal, Reply, Request, Response};
use super::policy::Policy;
use crate::endpoint::{Endpoint, Lease, Op, Receipt};
use crate::error::{Error, Result};

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's pre-shared token (TCP), if it wants one.
    pub token: Option<Vec<u8>>,
    /// How long the server may take to answer the handshake.
    pub handshake_timeout: Duration,
    /// The most stream bytes per second this client sends (a push); None:
    /// no limit. A pull is limited by the server's
    /// [`ServeOptions::rate_limit`](super::ServeOptions::rate_limit).
    pub rate_limit: Option<u64>,
    /// Offer zstd on the wire (used when the server agrees; needs the
    /// `zstd` feature on both sides). Worth it on slow links; on a fast
    /// one it costs CPU.
    pub compress: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: None,
            handshake_timeout: Duration::from_secs(20),
            rate_limit: None,
            compress: false,
        }
    }
}

/// A remote endpoint: each [`Endpoint`] call is a request to a server
/// ([`serve`](super::serve)), which checks it against its policy and runs it
/// on its own ZFS. Streams are multiplexed on the same channel.
///
/// A lost connection fails every pending call with [`Error::Disconnected`];
/// a transfer it carried is resumable. A refusal by the server's policy is
/// [`Error::PermissionDenied`] and leaves the connection usable.
///
/// ```no_run
/// use zfs_core::Zfs;
/// use zfs_replicate::endpoint::Local;
/// use zfs_replicate::remote::{Channel, Client};
/// use zfs_replicate::{ExecuteOptions, Keep, Replication};
///
/// let zfs = Zfs::open()?;
/// let nas = Client::connect(Channel::tcp(std::net::TcpStream::connect("nas:7070")?)?)?;
/// let report = Replication::new("tank/home".parse()?, "pipe/backups/home".parse()?)
///     .recursive(true)
///     .sync_with(&Local::new(&zfs), &nas, &ExecuteOptions::default(), Keep::default())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Client {
    conn: Arc<Conn>,
    next_id: AtomicU32,
    grants: Policy,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.conn.peer)
            .finish()
    }
}

impl Client {
    /// Connects over `channel` with default options.
    pub fn connect(channel: Channel) -> Result<Client> {
        Client::connect_with(channel, &ClientOptions::default())
    }

    /// Connects over `channel`: the handshake agrees on the protocol's
    /// version and learns what the server's policy grants.
    pub fn connect_with(channel: Channel, opts: &ClientOptions) -> Result<Client> {
        let Channel {
            read,
            write,
            peer,
            shutdown,
        } = channel;
        let lost = |why: String| Error::Disconnected {
            peer: peer.clone(),
            reason: why,
        };
        let protocol = |why: String| Error::Protocol {
            peer: peer.clone(),
            reason: why,
        };
        let mut reader =
            FdReader::new(read, opts.handshake_timeout).map_err(|e| lost(e.to_string()))?;
        let mut writer = File::from(write);
        let mut hello = Hello::new(opts.token.clone());
        if !opts.compress {
            hello.features &= !FEATURE_ZSTD;
        }
        let offered = hello.features;
        let hello = handshake::encode_hello(&hello).map_err(|e| protocol(e.to_string()))?;
        writer
            .write_all(&MAGIC)
            .and_then(|()| frame::write_frame(&mut writer, Kind::Hello, 0, &hello))
            .map_err(|e| lost(format!("sending the handshake: {e}")))?;
        let welcome = read_welcome(&mut reader).map_err(|e| match e {
            Handshake::Lost(why) => lost(why),
            Handshake::Protocol(why) => protocol(why),
        })?;
        if welcome.features & !offered != 0 {
            return Err(protocol(format!(
                "the server chose features {:#x} that were not offered ({offered:#x})",
                welcome.features
            )));
        }
        let conn = Conn::new(
            peer.clone(),
            &mut reader,
            writer,
            shutdown,
            &welcome.limits,
            opts.rate_limit,
            welcome.features & FEATURE_ZSTD != 0,
        );
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    let _ = zfs_core::signal::block_async_signals();
                    f()
                })
        };
        let c = conn.clone();
        let reading = spawn(
            "zfs-remote-read",
            Box::new(move || {
                c.read_loop(&mut reader, |incoming| match incoming {
                    Incoming::Request(..) | Incoming::Release(_) => {
                        Err("the server sent a request".to_owned())
                    }
                });
            }),
        );
        threads.push(reading.map_err(|e| lost(format!("starting a thread: {e}")))?);
        let c = conn.clone();
        match spawn("zfs-remote-beat", Box::new(move || c.heartbeat_loop())) {
            Ok(t) => threads.push(t),
            Err(e) => {
                conn.close("no heartbeat thread");
                return Err(lost(format!("starting a thread: {e}")));
            }
        }
        Ok(Client {
            conn,
            next_id: AtomicU32::new(1),
            grants: welcome.grants,
            threads,
        })
    }

    /// What the server's policy grants this client.
    pub fn grants(&self) -> &Policy {
        &self.grants
    }

    /// Whether streams cross zstd-compressed (both sides agreed).
    pub fn compressed(&self) -> bool {
        self.conn.compressed()
    }

    fn id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lost(&self, why: String) -> Error {
        Error::Disconnected {
            peer: self.conn.peer.clone(),
            reason: why,
        }
    }

    fn protocol(&self, why: impl std::fmt::Display) -> Error {
        Error::Protocol {
            peer: self.conn.peer.clone(),
            reason: why.to_string(),
        }
    }

    /// Sends `req` under a new id, registered for its reply first.
    fn start(&self, req: &Request, stream: bool) -> Result<u32> {
        let body = message::encode(req).map_err(|e| self.protocol(e))?;
        let id = self.id();
        if stream {
            self.conn.open_stream(id);
        }
        self.conn.expect_reply(id);
        if let Err(why) = self.conn.send(Kind::Request, id, &body) {
            self.conn.forget_reply(id);
            self.conn.close_stream(id);
            return Err(self.lost(why));
        }
        Ok(id)
    }

    fn finish(&self, id: u32) -> Result<Response> {
        let body = self.conn.wait_reply(id).map_err(|why| self.lost(why))?;
        let reply: Reply = message::decode(&body).map_err(|e| self.protocol(e))?;
        reply.map_err(|e| e.into_error(&self.conn.peer))
    }

    fn call(&self, req: &Request) -> Result<Response> {
        let id = self.start(req, false)?;
        self.finish(id)
    }

    fn unexpected(&self, r: Response) -> Error {
        self.protocol(format!("unexpected reply {r:?}"))
    }

    fn unit(&self, req: &Request) -> Result<()> {
        match self.call(req)? {
            Response::Unit => Ok(()),
            r => Err(self.unexpected(r)),
        }
    }

    fn names(&self, req: &Request) -> Result<Vec<DatasetName>> {
        match self.call(req)? {
            Response::Names(n) => Ok(n),
            r => Err(self.unexpected(r)),
        }
    }

    fn snapshot_list(&self, req: &Request) -> Result<Vec<Snapshot>> {
        match self.call(req)? {
            Response::Snapshots(s) => Ok(s),
            r => Err(self.unexpected(r)),
        }
    }

    fn lease(&self, req: &Request) -> Result<Lease> {
        match self.call(req)? {
            Response::Lease(id) => Ok(Lease::new(RemoteLease {
                conn: Arc::downgrade(&self.conn),
                id,
            })),
            r => Err(self.unexpected(r)),
        }
    }

    /// Pulls a stream the server sends into `into`.
    fn pull(&self, req: &Request, into: OwnedFd) -> Result<()> {
        let id = self.start(req, true)?;
        let pumped = self.conn.pump_in(id, into, true);
        let local = match pumped {
            Ok(_) | Err(StreamEnd::Replied) | Err(StreamEnd::Cancelled) => None,
            Err(StreamEnd::Local(e)) => {
                // Our reader (the relay) is gone: stop the server's send.
                self.conn.cancel_stream(id);
                Some(e)
            }
            Err(StreamEnd::Closed(why)) => {
                self.conn.forget_reply(id);
                self.conn.close_stream(id);
                return Err(self.lost(why));
            }
        };
        self.conn.close_stream(id);
        match (self.finish(id)?, local) {
            (Response::Unit, None) => Ok(()),
            (Response::Unit, Some(e)) => {
                Err(zfs_core::Error::io("remote send (pipe)", self.conn.peer.as_str(), e).into())
            }
            (r, _) => Err(self.unexpected(r)),
        }
    }
}

/// What a handshake failed on.
enum Handshake {
    Lost(String),
    Protocol(String),
}

fn read_welcome(reader: &mut FdReader) -> std::result::Result<Welcome, Handshake> {
    let (magic, got) =
        read_magic(reader).map_err(|e| Handshake::Lost(format!("awaiting the handshake: {e}")))?;
    if got == 0 {
        return Err(Handshake::Lost(
            "the server closed the connection before the handshake".into(),
        ));
    }
    handshake::check_magic(&magic[..got]).map_err(|e| Handshake::Protocol(e.to_string()))?;
    let mut body = Vec::new();
    let h = frame::read_frame(reader, &mut body, &FrameLimits::default())
        .map_err(|e| Handshake::Lost(format!("awaiting the handshake: {e}")))?;
    match h.kind {
        Kind::Welcome => {
            let w =
                handshake::decode_welcome(&body).map_err(|e| Handshake::Protocol(e.to_string()))?;
            w.limits
                .check()
                .map_err(|e| Handshake::Protocol(e.to_string()))?;
            Ok(w)
        }
        Kind::Refuse => {
            let refusal: Refusal = message::decode(&body)
                .map_err(|e| Handshake::Protocol(format!("a malformed refusal: {e}")))?;
            Err(Handshake::Protocol(refusal.to_string()))
        }
        other => Err(Handshake::Protocol(format!(
            "expected WELCOME, got a {other} frame"
        ))),
    }
}

/// A lease on the server, released by a RELEASE frame when dropped (and by
/// the server when the session ends).
struct RemoteLease {
    conn: Weak<Conn>,
    id: u32,
}

impl Drop for RemoteLease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.upgrade() {
            let _ = conn.send(Kind::Release, self.id, &[]);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.conn.close("the client closed the connection");
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Endpoint for Client {
    fn describe(&self) -> String {
        self.conn.peer.clone()
    }
    fn refusal(&self, op: Op, dataset: &DatasetName) -> Option<String> {
        let refused = self.grants.check(op, dataset).err()?;
        Some(format!(
            "{} (refused before anything changed)",
            refused.reason
        ))
    }
    fn dataset(&self, dataset: &DatasetName) -> Result<()> {
        self.unit(&Request::Dataset(dataset.clone()))
    }
    fn exists(&self, dataset: &DatasetName) -> Result<bool> {
        match self.call(&Request::Exists(dataset.clone()))? {
            Response::Bool(b) => Ok(b),
            r => Err(self.unexpected(r)),
        }
    }
    fn children(&self, parent: &DatasetName) -> Result<Vec<DatasetName>> {
        self.names(&Request::Children(parent.clone()))
    }
    fn descendants(&self, root: &DatasetName) -> Result<Vec<DatasetName>> {
        self.names(&Request::Descendants(root.clone()))
    }
    fn snapshots(&self, dataset: &DatasetName) -> Result<Vec<Snapshot>> {
        self.snapshot_list(&Request::Snapshots(dataset.clone()))
    }
    fn snapshots_created(
        &self,
        dataset: &DatasetName,
        min_createtxg: u64,
    ) -> Result<Vec<Snapshot>> {
        self.snapshot_list(&Request::SnapshotsCreated(dataset.clone(), min_createtxg))
    }
    fn snapshot_info(&self, snapshot: &SnapshotName) -> Result<Snapshot> {
        match self.call(&Request::SnapshotInfo(snapshot.clone()))? {
            Response::Snapshot(s) => Ok(s),
            r => Err(self.unexpected(r)),
        }
    }
    fn bookmarks(&self, dataset: &DatasetName) -> Result<Vec<Bookmark>> {
        match self.call(&Request::Bookmarks(dataset.clone()))? {
            Response::Bookmarks(b) => Ok(b),
            r => Err(self.unexpected(r)),
        }
    }
    fn properties(&self, dataset: &DatasetName) -> Result<Properties> {
        match self.call(&Request::Properties(dataset.clone()))? {
            Response::Properties(p) => Ok(p),
            r => Err(self.unexpected(r)),
        }
    }
    fn holds(&self, snapshot: &SnapshotName) -> Result<BTreeMap<String, u64>> {
        match self.call(&Request::Holds(snapshot.clone()))? {
            Response::Holds(h) => Ok(h),
            r => Err(self.unexpected(r)),
        }
    }
    fn send_space(&self, snapshot: &SnapshotName, opts: &SendOptions) -> Result<u64> {
        match self.call(&Request::SendSpace(snapshot.clone(), opts.clone()))? {
            Response::Size(n) => Ok(n),
            r => Err(self.unexpected(r)),
        }
    }
    fn resolve_resume_token(&self, token: &ResumeToken) -> Result<(SnapshotName, SendOptions)> {
        match self.call(&Request::ResolveResumeToken(token.clone()))? {
            Response::Resolved(s, o) => Ok((s, o)),
            r => Err(self.unexpected(r)),
        }
    }
    fn send(&self, snapshot: &SnapshotName, opts: &SendOptions, into: OwnedFd) -> Result<()> {
        self.pull(&Request::Send(snapshot.clone(), opts.clone()), into)
    }
    fn send_resume(&self, token: &ResumeToken, into: OwnedFd) -> Result<()> {
        self.pull(&Request::SendResume(token.clone()), into)
    }
    fn receive(
        &self,
        target: &DatasetName,
        from: OwnedFd,
        opts: &ReceiveOptions,
    ) -> Result<Receipt> {
        let spec = ReceiveSpec::of(opts).ok_or_else(|| Error::PermissionDenied {
            endpoint: self.describe(),
            dataset: target.clone(),
            operation: Op::Rollback,
            reason: "a forced receive or a clone cannot be asked of a remote endpoint".into(),
        })?;
        let id = self.start(&Request::Receive(target.clone(), spec), true)?;
        match self.conn.pump_out(id, from, true) {
            Ok(_) | Err(StreamEnd::Replied) | Err(StreamEnd::Cancelled) => {}
            Err(StreamEnd::Local(_)) => self.conn.cancel_stream(id),
            Err(StreamEnd::Closed(why)) => {
                self.conn.forget_reply(id);
                self.conn.close_stream(id);
                return Err(self.lost(why));
            }
        }
        self.conn.close_stream(id);
        match self.finish(id)? {
            Response::Receipt(r) => Ok(r.into()),
            r => Err(self.unexpected(r)),
        }
    }
    fn abort_resumable_receive(&self, target: &DatasetName) -> Result<bool> {
        match self.call(&Request::AbortResumableReceive(target.clone()))? {
            Response::Bool(b) => Ok(b),
            r => Err(self.unexpected(r)),
        }
    }
    fn sync_pool(&self, target: &DatasetName) -> Result<()> {
        self.unit(&Request::SyncPool(target.clone()))
    }
    fn force_inherit_key(&self, dataset: &DatasetName) -> Result<()> {
        self.unit(&Request::ForceInheritKey(dataset.clone()))
    }
    fn create_placeholder(&self, dataset: &DatasetName) -> Result<()> {
        self.unit(&Request::CreatePlaceholder(dataset.clone()))
    }
    fn snapshot(&self, snapshots: &[SnapshotName]) -> Result<()> {
        self.unit(&Request::Snapshot(snapshots.to_vec()))
    }
    fn bookmark(&self, bookmarks: &[(BookmarkName, SnapshotOrBookmark)]) -> Result<()> {
        self.unit(&Request::Bookmark(bookmarks.to_vec()))
    }
    fn destroy_bookmarks(&self, bookmarks: &[BookmarkName]) -> Result<()> {
        self.unit(&Request::DestroyBookmarks(bookmarks.to_vec()))
    }
    fn destroy_snapshots(&self, snapshots: &[SnapshotName]) -> Result<()> {
        self.unit(&Request::DestroySnapshots(snapshots.to_vec()))
    }
    fn rollback_to(&self, snapshot: &SnapshotName) -> Result<()> {
        self.unit(&Request::RollbackTo(snapshot.clone()))
    }
    fn destroy(&self, dataset: &DatasetName) -> Result<()> {
        self.unit(&Request::Destroy(dataset.clone()))
    }
    fn hold_temporary(&self, holds: &[(SnapshotName, String)]) -> Result<Lease> {
        self.lease(&Request::HoldTemporary(holds.to_vec()))
    }
    fn lock(&self, target: &DatasetName) -> Result<Lease> {
        self.lease(&Request::Lock(target.clone()))
    }
}
