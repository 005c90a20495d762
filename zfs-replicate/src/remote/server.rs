//! The server: answers one client over a [`Channel`], on any endpoint,
//! within a [`Policy`].

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use zfs_core::pipe::Pipe;

use super::auth::ct_eq;
use super::channel::Channel;
use super::conn::{read_magic, Conn, FdReader, Incoming, SessionEnd, StreamEnd};
use super::frame::{self, FrameLimits, Kind, MAGIC};
use super::handshake::{
    self, HandshakeError, SessionLimits, Welcome, FEATURES, FEATURE_ZSTD, NOT_A_CLIENT, SOFTWARE,
};
use super::message::{self, Refusal, Reply, Request, Response, WireError};
use super::policy::Policy;
use crate::endpoint::{Endpoint, Lease};
use crate::error::{Error, Result};

/// How a server serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The pre-shared token a client must present (TCP).
    pub token: Option<Vec<u8>>,
    /// Frame size, stream window, heartbeat and dead-peer time.
    pub limits: SessionLimits,
    /// A client that has not completed its handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// Requests one client may have running at once.
    pub max_requests: usize,
    /// The most stream bytes per second sent to each client (a pull);
    /// None: no limit.
    pub rate_limit: Option<u64>,
    /// Accept zstd on the wire when a client offers it (with the `zstd`
    /// feature).
    pub compress: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            token: None,
            limits: SessionLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            max_requests: 32,
            rate_limit: None,
            compress: true,
        }
    }
}

/// Pipe buffer for a served stream.
const PIPE_SIZE: usize = 1 << 20;

/// Serves one client over `channel` until it disconnects: each request is
/// checked against `policy` (nothing is allowed by default), then run on
/// `endpoint`. Returns how the session ended; what the client held (holds,
/// the target lock) is released by then, and every stream is closed.
///
/// ```no_run
/// use zfs_core::Zfs;
/// use zfs_replicate::endpoint::Local;
/// use zfs_replicate::remote::{serve, Access, Channel, Policy, ServeOptions};
///
/// let zfs = Zfs::open()?;
/// let policy = Policy::new().allow("pipe/backups/laptop".parse()?, Access::Receive);
/// serve(Channel::stdio()?, &Local::new(&zfs), &policy, &ServeOptions::default())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn serve(
    channel: Channel,
    endpoint: &dyn Endpoint,
    policy: &Policy,
    opts: &ServeOptions,
) -> Result<SessionEnd> {
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
    let mut reader =
        FdReader::new(read, opts.handshake_timeout).map_err(|e| lost(e.to_string()))?;
    let mut writer = File::from(write);
    let features =
        handshake_server(&mut reader, &mut writer, policy, opts).map_err(|e| match e {
            Handshake::Lost(why) => lost(why),
            Handshake::Refused(why) => Error::Protocol {
                peer: peer.clone(),
                reason: why,
            },
        })?;
    let conn = Conn::new(
        peer,
        &mut reader,
        writer,
        shutdown,
        &opts.limits,
        opts.rate_limit,
        features & FEATURE_ZSTD != 0,
    );
    let session = Session {
        conn: &conn,
        endpoint,
        policy,
        leases: Mutex::new(HashMap::new()),
        next_lease: AtomicUsize::new(1),
        running: AtomicUsize::new(0),
        streams: AtomicUsize::new(0),
        opts,
    };
    let why = std::thread::scope(|scope| {
        let beat = std::thread::Builder::new()
            .name("zfs-serve-beat".into())
            .spawn_scoped(scope, || conn.heartbeat_loop());
        if beat.is_err() {
            conn.close("no heartbeat thread");
        }
        let session = &session;
        let why = conn.read_loop(&mut reader, |incoming| {
            match incoming {
                Incoming::Release(id) => {
                    session.leases_mut().remove(&id);
                }
                Incoming::Request(id, body) => session.start(scope, id, body),
            }
            Ok(())
        });
        conn.close(why.to_string());
        why
    });
    // Everything the client held goes with its session.
    session.leases_mut().clear();
    Ok(why)
}

/// Serves every client that connects to `listener`, each in its own thread
/// (at most `max_clients` at once; more wait in the backlog). Returns only
/// when accepting fails.
pub fn serve_tcp(
    listener: &TcpListener,
    endpoint: &dyn Endpoint,
    policy: &Policy,
    opts: &ServeOptions,
    max_clients: usize,
) -> std::io::Result<()> {
    let active = AtomicUsize::new(0);
    let done = std::sync::Condvar::new();
    let gate = Mutex::new(());
    std::thread::scope(|scope| loop {
        {
            let mut g = gate.lock().unwrap_or_else(|p| p.into_inner());
            while active.load(Ordering::SeqCst) >= max_clients.max(1) {
                g = done.wait(g).unwrap_or_else(|p| p.into_inner());
            }
        }
        let (stream, _) = listener.accept()?;
        let Ok(channel) = Channel::tcp(stream) else {
            continue;
        };
        active.fetch_add(1, Ordering::SeqCst);
        let (active, done, gate) = (&active, &done, &gate);
        let spawned = std::thread::Builder::new()
            .name("zfs-serve".into())
            .spawn_scoped(scope, move || {
                let _ = serve(channel, endpoint, policy, opts);
                let _g = gate.lock().unwrap_or_else(|p| p.into_inner());
                active.fetch_sub(1, Ordering::SeqCst);
                done.notify_all();
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    })
}

/// A TCP listener for a server: refused on any address but loopback
/// unless the server wants a token (plain TCP has no encryption: use ssh or
/// a VPN across networks you do not trust).
pub fn listen_tcp(addr: SocketAddr, token: Option<&[u8]>) -> std::io::Result<TcpListener> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("refusing to listen on {addr} without a token (--token-file): only loopback may go without"),
        ));
    }
    TcpListener::bind(addr)
}

enum Handshake {
    Lost(String),
    Refused(String),
}

fn handshake_server(
    reader: &mut FdReader,
    writer: &mut File,
    policy: &Policy,
    opts: &ServeOptions,
) -> std::result::Result<u64, Handshake> {
    let lost = |e: std::io::Error| Handshake::Lost(format!("during the handshake: {e}"));
    let (magic, got) = read_magic(reader).map_err(lost)?;
    if let Err(e) = handshake::check_magic(&magic[..got]) {
        let _ = writer.write_all(NOT_A_CLIENT.as_bytes());
        return Err(Handshake::Refused(e.to_string()));
    }
    let mut body = Vec::new();
    let h = frame::read_frame(reader, &mut body, &FrameLimits::default())
        .map_err(|e| Handshake::Refused(format!("during the handshake: {e}")))?;
    let refuse = |writer: &mut File, r: Refusal| {
        if let Ok(b) = message::encode(&r) {
            let _ = writer
                .write_all(&MAGIC)
                .and_then(|()| frame::write_frame(writer, Kind::Refuse, 0, &b));
        }
        Handshake::Refused(r.to_string())
    };
    if h.kind != Kind::Hello {
        return Err(refuse(
            writer,
            Refusal::Other(format!("expected HELLO, got a {} frame", h.kind)),
        ));
    }
    let hello = match handshake::decode_hello(&body) {
        Ok(hello) => hello,
        Err(HandshakeError::Version { ours, theirs }) => {
            return Err(refuse(
                writer,
                Refusal::Version {
                    server: ours,
                    client: theirs,
                },
            ))
        }
        Err(e) => return Err(refuse(writer, Refusal::Other(e.to_string()))),
    };
    if let Some(expected) = &opts.token {
        let given = hello.token.as_deref().unwrap_or(&[]);
        if !ct_eq(expected, given) {
            // Slow down guessing.
            std::thread::sleep(Duration::from_secs(1));
            return Err(refuse(writer, Refusal::AuthFailed));
        }
    }
    let ours = if opts.compress {
        FEATURES
    } else {
        FEATURES & !FEATURE_ZSTD
    };
    let (version, features) = handshake::negotiate(&hello, ours)
        .map_err(|e| refuse(writer, Refusal::Other(e.to_string())))?;
    let welcome = Welcome {
        version,
        features,
        grants: policy.clone(),
        limits: opts.limits,
        software: SOFTWARE.to_owned(),
    };
    let body = handshake::encode_welcome(&welcome)
        .map_err(|e| refuse(writer, Refusal::Other(e.to_string())))?;
    writer
        .write_all(&MAGIC)
        .and_then(|()| frame::write_frame(writer, Kind::Welcome, 0, &body))
        .map_err(lost)?;
    Ok(features)
}

/// One client's session.
struct Session<'a> {
    conn: &'a Conn,
    endpoint: &'a dyn Endpoint,
    policy: &'a Policy,
    leases: Mutex<HashMap<u32, Lease>>,
    next_lease: AtomicUsize,
    running: AtomicUsize,
    streams: AtomicUsize,
    opts: &'a ServeOptions,
}

impl<'a> Session<'a> {
    fn leases_mut(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reply(&self, id: u32, reply: Reply) {
        let body = match message::encode(&reply) {
            Ok(b) => b,
            Err(e) => match message::encode(&Reply::Err(WireError::Other {
                message: format!("encoding the reply: {e}"),
            })) {
                Ok(b) => b,
                Err(_) => return,
            },
        };
        let _ = self.conn.send(Kind::Reply, id, &body);
    }

    /// Runs request `id` on a worker thread of the session's scope.
    fn start<'scope>(
        &'scope self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        id: u32,
        body: Vec<u8>,
    ) where
        'a: 'scope,
    {
        if self.running.load(Ordering::SeqCst) >= self.opts.max_requests {
            self.conn.close_stream(id);
            self.reply(
                id,
                Err(WireError::Invalid {
                    reason: format!("more than {} requests at once", self.opts.max_requests),
                }),
            );
            return;
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("zfs-serve-call".into())
            .spawn_scoped(scope, move || {
                let _ = zfs_core::signal::block_async_signals();
                let reply = self.handle(id, &body);
                // Opened by the reader when the request came.
                self.conn.close_stream(id);
                self.reply(id, reply);
                self.running.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.conn.close_stream(id);
            self.reply(
                id,
                Err(WireError::Other {
                    message: "the server could not start a thread".into(),
                }),
            );
        }
    }

    fn handle(&self, id: u32, body: &[u8]) -> Reply {
        let req: Request = message::decode(body).map_err(|e| WireError::Invalid {
            reason: format!("a request that does not decode: {e}"),
        })?;
        let access = req
            .access()
            .map_err(|reason| WireError::Invalid { reason })?;
        for (op, dataset) in access {
            if let Err(refused) = self.policy.check(op, &dataset) {
                return Err(WireError::PermissionDenied {
                    dataset,
                    operation: op,
                    reason: refused.reason.to_string(),
                });
            }
        }
        if req.is_stream() {
            let max = usize::from(self.opts.limits.max_streams);
            if self.streams.fetch_add(1, Ordering::SeqCst) >= max {
                self.streams.fetch_sub(1, Ordering::SeqCst);
                return Err(WireError::Invalid {
                    reason: format!("more than {max} streams at once"),
                });
            }
            let r = self.stream(id, req);
            self.streams.fetch_sub(1, Ordering::SeqCst);
            return r;
        }
        self.call(req).map_err(WireError::from_error)
    }

    fn call(&self, req: Request) -> Result<Response> {
        let e = self.endpoint;
        use Request as R;
        Ok(match req {
            R::Dataset(d) => e.dataset(&d).map(|()| Response::Unit)?,
            R::Exists(d) => Response::Bool(e.exists(&d)?),
            R::Children(d) => Response::Names(e.children(&d)?),
            R::Descendants(d) => Response::Names(e.descendants(&d)?),
            R::Snapshots(d) => Response::Snapshots(e.snapshots(&d)?),
            R::SnapshotsCreated(d, txg) => Response::Snapshots(e.snapshots_created(&d, txg)?),
            R::SnapshotInfo(s) => Response::Snapshot(e.snapshot_info(&s)?),
            R::Bookmarks(d) => Response::Bookmarks(e.bookmarks(&d)?),
            R::Properties(d) => Response::Properties(e.properties(&d)?),
            R::Holds(s) => Response::Holds(e.holds(&s)?),
            R::SendSpace(s, o) => Response::Size(e.send_space(&s, &o)?),
            R::ResolveResumeToken(t) => {
                let (s, o) = e.resolve_resume_token(&t)?;
                Response::Resolved(s, o)
            }
            R::AbortResumableReceive(d) => Response::Bool(e.abort_resumable_receive(&d)?),
            R::SyncPool(d) => e.sync_pool(&d).map(|()| Response::Unit)?,
            R::ForceInheritKey(d) => e.force_inherit_key(&d).map(|()| Response::Unit)?,
            R::CreatePlaceholder(d) => e.create_placeholder(&d).map(|()| Response::Unit)?,
            R::Snapshot(s) => e.snapshot(&s).map(|()| Response::Unit)?,
            R::Bookmark(b) => e.bookmark(&b).map(|()| Response::Unit)?,
            R::DestroyBookmarks(b) => e.destroy_bookmarks(&b).map(|()| Response::Unit)?,
            R::DestroySnapshots(s) => e.destroy_snapshots(&s).map(|()| Response::Unit)?,
            R::RollbackTo(s) => e.rollback_to(&s).map(|()| Response::Unit)?,
            R::Destroy(d) => e.destroy(&d).map(|()| Response::Unit)?,
            R::HoldTemporary(h) => self.keep(e.hold_temporary(&h)?),
            R::Lock(d) => self.keep(e.lock(&d)?),
            R::Send(..) | R::SendResume(_) | R::Receive(..) => {
                return Err(Error::Protocol {
                    peer: self.conn.peer.clone(),
                    reason: "a stream request outside a stream".into(),
                })
            }
        })
    }

    /// Keeps a lease for the session; the client releases it by id.
    fn keep(&self, lease: Lease) -> Response {
        let id = self.next_lease.fetch_add(1, Ordering::SeqCst) as u32;
        self.leases_mut().insert(id, lease);
        Response::Lease(id)
    }

    /// A send (data to the client) or a receive (data from it) on id `id`.
    fn stream(&self, id: u32, req: Request) -> Reply {
        let io = |e: zfs_core::Error| WireError::Zfs(e);
        let pipe = Pipe::new(PIPE_SIZE).map_err(io)?;
        let e = self.endpoint;
        let result = std::thread::scope(|scope| {
            match req {
                Request::Receive(target, spec) => {
                    let opts = spec.options();
                    let read = pipe.read;
                    let receiver = std::thread::Builder::new()
                        .name("zfs-serve-recv".into())
                        .spawn_scoped(scope, {
                            let target = target.clone();
                            move || {
                                let _ = zfs_core::signal::block_async_signals();
                                e.receive(&target, read, &opts)
                            }
                        });
                    let Ok(receiver) = receiver else {
                        return Err(WireError::Other {
                            message: "the server could not start a thread".into(),
                        });
                    };
                    // Granting credit is the client's go; the write end
                    // closes when the pump ends: EOF, or a truncated (and
                    // resumable) stream when the client went away.
                    if let Err(StreamEnd::Local(_)) = self.conn.pump_in(id, pipe.write, false) {
                        // The receive stopped reading: stop the client.
                        self.conn.cancel_stream(id);
                    }
                    match receiver.join() {
                        Ok(r) => r
                            .map(|r| Response::Receipt(r.into()))
                            .map_err(WireError::from_error),
                        Err(_) => Err(WireError::Other {
                            message: "the receive thread panicked".into(),
                        }),
                    }
                }
                Request::Send(..) | Request::SendResume(_) => {
                    let write = pipe.write;
                    let sender = std::thread::Builder::new()
                        .name("zfs-serve-send".into())
                        .spawn_scoped(scope, move || {
                            let _ = zfs_core::signal::block_async_signals();
                            match &req {
                                Request::Send(s, o) => e.send(s, o, write),
                                Request::SendResume(t) => e.send_resume(t, write),
                                _ => Ok(()),
                            }
                        });
                    let Ok(sender) = sender else {
                        return Err(WireError::Other {
                            message: "the server could not start a thread".into(),
                        });
                    };
                    // Ends with END at the send's EOF, or early (a cancel, a
                    // lost client): the read end closes and the send stops.
                    let _ = self.conn.pump_out(id, pipe.read, false);
                    match sender.join() {
                        Ok(r) => r.map(|()| Response::Unit).map_err(WireError::from_error),
                        Err(_) => Err(WireError::Other {
                            message: "the send thread panicked".into(),
                        }),
                    }
                }
                _ => Err(WireError::Invalid {
                    reason: "not a stream request".into(),
                }),
            }
        });
        result
    }
}
