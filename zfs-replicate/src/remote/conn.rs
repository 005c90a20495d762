//! One connection, on either side: frames out through one lock, frames in
//! on one reader thread, requests in flight, streams with credit,
//! heartbeats and dead-peer detection.
//!
//! Memory is bounded by credit: a side sends DATA only within what the
//! other side granted, so the reader never blocks on a slow consumer and
//! never queues more than the window per stream.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zfs_core::pipe::{poll, Interest, Pipe, Wakeup};

use super::frame::{self, FrameError, FrameLimits, Header, Kind, MAGIC};
use super::handshake::SessionLimits;

/// Reads the peer's first 8 bytes (fewer if it closes early): what
/// [`check_magic`](super::handshake::check_magic) judges.
pub(crate) fn read_magic(reader: &mut impl Read) -> io::Result<([u8; MAGIC.len()], usize)> {
    let mut magic = [0u8; MAGIC.len()];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((magic, got))
}

/// How a connection keeps time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A HEARTBEAT is sent when nothing else was sent for this long.
    pub heartbeat: Duration,
    /// The peer is taken for dead when nothing came from it for this long.
    pub dead_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_secs(5),
            dead_after: Duration::from_secs(20),
        }
    }
}

/// Grant credit back once this much was consumed (fewer CREDIT frames).
const CREDIT_STEP: u32 = 256 << 10;

/// The reading half: polled together with a wake-up, so closing the
/// connection stops a blocked reader at once, and a silent peer is noticed.
pub(crate) struct FdReader {
    fd: File,
    wakeup: Arc<Wakeup>,
    pub dead_after: Duration,
}

impl FdReader {
    /// A reader of `fd` that gives up after `dead_after` of silence.
    pub(crate) fn new(fd: OwnedFd, dead_after: Duration) -> io::Result<FdReader> {
        Ok(FdReader {
            fd: File::from(fd),
            wakeup: Arc::new(Wakeup::new().map_err(io::Error::other)?),
            dead_after,
        })
    }
}

impl Read for FdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let ready = poll(
            &[
                (&self.fd.as_fd(), Interest::Read),
                (self.wakeup.fd(), Interest::Read),
            ],
            self.dead_after,
        )?;
        if ready[0].any() {
            return self.fd.read(buf);
        }
        if ready[1].any() {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed"));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "nothing received for {} s (the peer is dead or stalled)",
                self.dead_after.as_secs_f64()
            ),
        ))
    }
}

/// A stream's state on this side.
#[derive(Default)]
struct Stream {
    /// Inbound: the pipe DATA is spliced into until consumed (made when
    /// the first credit is granted; credit never exceeds its room, so the
    /// reader never waits on it).
    staging: Option<Arc<Pipe>>,
    /// Inbound: bytes in `staging`.
    queued: u64,
    /// Inbound: bytes the peer may still send without more credit.
    granted: u64,
    /// Outbound: bytes this side may still send.
    credit: u64,
    /// The peer sent END.
    ended: bool,
    /// The peer sent CANCEL.
    cancelled: bool,
}

#[derive(Default)]
struct State {
    /// Why the connection closed, once it did.
    closed: Option<String>,
    /// Client: replies by request id (None: awaited, not yet here).
    replies: HashMap<u32, Option<Vec<u8>>>,
    streams: HashMap<u32, Stream>,
    last_sent: Option<Instant>,
    /// Server: the highest request id seen (DATA above it is for no stream).
    newest_request: u32,
}

/// Why a session closed when the peer closed the connection.
const PEER_CLOSED: &str = "the peer closed the connection";

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The peer closed the connection between frames: the clean end.
    PeerClosed,
    /// The connection was lost, timed out, or the peer broke the protocol.
    Lost(String),
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::PeerClosed => f.write_str(PEER_CLOSED),
            SessionEnd::Lost(why) => f.write_str(why),
        }
    }
}

/// What the reader hands to the side's own logic.
pub(crate) enum Incoming {
    Request(u32, Vec<u8>),
    Release(u32),
}

/// A connection's shared core.
pub(crate) struct Conn {
    pub peer: String,
    writer: Mutex<File>,
    state: Mutex<State>,
    /// Replies and the connection's end: what callers and the heartbeat
    /// wait for.
    changed: Condvar,
    /// Stream flow (DATA queued, CREDIT granted, END, CANCEL), and
    /// everything `changed` signals: what the pumps wait for. Kept apart
    /// so that a frame of data wakes the pumps only, not every waiter.
    flow: Condvar,
    wakeup: Arc<Wakeup>,
    shutdown: Option<Box<dyn Fn() + Send + Sync>>,
    pub limits: FrameLimits,
    pub timing: Timing,
    /// Bytes a receiving side grants per stream: what it may have to queue.
    pub window: u32,
    /// The most stream bytes per second this side sends, over all streams.
    rate: Option<Mutex<Rate>>,
    /// Both sides agreed on zstd: each DATA body starts with a flag byte,
    /// 1 for a zstd frame, 0 for bytes as they are.
    compress: bool,
}

/// DATA flag: the body's rest is as sent.
const DATA_PLAIN: u8 = 0;
/// DATA flag: the body's rest is one zstd frame.
#[cfg(feature = "zstd")]
const DATA_ZSTD: u8 = 1;

/// A DATA body: `data` compressed when that makes it smaller.
#[cfg(feature = "zstd")]
fn pack_data(data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() + 1);
    if let Ok(z) = zstd::bulk::compress(data, 1) {
        if z.len() < data.len() {
            body.push(DATA_ZSTD);
            body.extend_from_slice(&z);
            return body;
        }
    }
    body.push(DATA_PLAIN);
    body.extend_from_slice(data);
    body
}

#[cfg(not(feature = "zstd"))]
fn pack_data(data: &[u8]) -> Vec<u8> {
    [&[DATA_PLAIN][..], data].concat()
}

/// The bytes of a DATA body, at most `max` of them once decompressed.
fn unpack_data(body: &[u8], max: usize) -> Result<Vec<u8>, String> {
    match body.split_first() {
        Some((&DATA_PLAIN, rest)) => Ok(rest.to_vec()),
        #[cfg(feature = "zstd")]
        Some((&DATA_ZSTD, rest)) => zstd::bulk::decompress(rest, max)
            .map_err(|e| format!("a DATA frame that does not decompress within {max} bytes: {e}")),
        _ => {
            let _ = max;
            Err("a DATA frame with an unknown flag".to_owned())
        }
    }
}

/// A rate limit: stream bytes sent since `since`, at most `per_second`.
struct Rate {
    per_second: u64,
    since: Instant,
    sent: u64,
}

impl Rate {
    /// How long to wait before `n` more bytes may go. Idle time is not
    /// banked beyond one second: a burst after a pause stays short.
    fn delay(&mut self, n: u64) -> Duration {
        let now = Instant::now();
        let allowed_from = Duration::from_secs_f64(self.sent as f64 / self.per_second as f64);
        let elapsed = now.duration_since(self.since);
        if elapsed > allowed_from + Duration::from_secs(1) {
            self.since = now - Duration::from_secs(1);
            self.sent = self.per_second;
        }
        self.sent += n;
        let due = self.since + Duration::from_secs_f64(self.sent as f64 / self.per_second as f64);
        due.saturating_duration_since(now)
    }
}

/// Why a stream or a call ended without a result.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// The connection closed (the reason).
    Closed(String),
    /// The peer cancelled the stream.
    Cancelled,
    /// The reply for this id came while streaming (an early failure).
    Replied,
    /// The local pipe failed.
    Local(io::Error),
}

impl Conn {
    /// A connection over `read`/`write`; `shutdown` (sockets) unblocks a
    /// writer stuck on a peer that stopped reading.
    pub(crate) fn new(
        peer: String,
        reader: &mut FdReader,
        write: File,
        shutdown: Option<Box<dyn Fn() + Send + Sync>>,
        session: &SessionLimits,
        rate_limit: Option<u64>,
        compress: bool,
    ) -> Arc<Conn> {
        let timing = Timing {
            heartbeat: Duration::from_millis(session.heartbeat_ms.into()),
            dead_after: Duration::from_millis(session.dead_after_ms.into()),
        };
        let (limits, window) = (session.frame_limits(), session.window);
        reader.dead_after = timing.dead_after;
        Arc::new(Conn {
            peer,
            writer: Mutex::new(write),
            // The handshake just went out: the first heartbeat is due later.
            state: Mutex::new(State {
                last_sent: Some(Instant::now()),
                ..State::default()
            }),
            changed: Condvar::new(),
            flow: Condvar::new(),
            wakeup: reader.wakeup.clone(),
            shutdown,
            limits,
            timing,
            window,
            compress,
            rate: rate_limit.filter(|&r| r > 0).map(|per_second| {
                Mutex::new(Rate {
                    per_second,
                    since: Instant::now(),
                    sent: 0,
                })
            }),
        })
    }

    /// Whether DATA bodies may be zstd frames.
    pub(crate) fn compressed(&self) -> bool {
        self.compress
    }

    /// Waits until `n` more stream bytes may be sent (the rate limit).
    fn throttle(&self, n: usize) {
        if let Some(rate) = &self.rate {
            let wait = rate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .delay(n as u64);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why it closed, if it did.
    pub(crate) fn closed(&self) -> Option<String> {
        self.state().closed.clone()
    }

    /// Closes the connection (idempotent): every waiter wakes with `why`.
    pub(crate) fn close(&self, why: impl Into<String>) {
        let mut st = self.state();
        if st.closed.is_none() {
            st.closed = Some(why.into());
        }
        drop(st);
        self.changed.notify_all();
        self.flow.notify_all();
        self.wakeup.wake();
        if let Some(shutdown) = &self.shutdown {
            shutdown();
        }
    }

    /// Writes one frame; a failure closes the connection.
    pub(crate) fn send(&self, kind: Kind, id: u32, body: &[u8]) -> Result<(), String> {
        if let Some(why) = self.closed() {
            return Err(why);
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match frame::write_frame(&mut *w, kind, id, body) {
            Ok(()) => {
                drop(w);
                self.state().last_sent = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                drop(w);
                self.send_failed(e)
            }
        }
    }

    /// Closes after a failed send. A broken pipe or a reset means the peer
    /// closed the connection: that is how the session ended.
    fn send_failed(&self, e: io::Error) -> Result<(), String> {
        let why = match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => PEER_CLOSED.to_owned(),
            _ => format!("sending: {e}"),
        };
        self.close(why.clone());
        Err(self.closed().unwrap_or(why))
    }

    /// Sends HEARTBEAT whenever nothing was sent for `timing.heartbeat`,
    /// until the connection closes.
    pub(crate) fn heartbeat_loop(&self) {
        let mut st = self.state();
        loop {
            if st.closed.is_some() {
                return;
            }
            let idle = st.last_sent.map_or(self.timing.heartbeat, |t| t.elapsed());
            if idle >= self.timing.heartbeat {
                drop(st);
                if self.send(Kind::Heartbeat, 0, &[]).is_err() {
                    return;
                }
                st = self.state();
                continue;
            }
            let wait = self.timing.heartbeat - idle;
            st = self
                .changed
                .wait_timeout(st, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Reads frames until the connection ends; hands requests and
    /// releases to `incoming`. Returns how it ended (and closes).
    pub(crate) fn read_loop(
        &self,
        reader: &mut FdReader,
        mut incoming: impl FnMut(Incoming) -> Result<(), String>,
    ) -> SessionEnd {
        let mut body = Vec::new();
        let why = loop {
            let header = match self.read_frame(reader, &mut body) {
                Ok(None) => continue, // a DATA frame, already handled
                Ok(Some(h)) => h,
                Err(FrameError::Closed) => {
                    self.close(PEER_CLOSED);
                    return SessionEnd::PeerClosed;
                }
                Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::ConnectionAborted => {
                    break self.closed().unwrap_or_else(|| "closed".to_owned())
                }
                Err(e) => {
                    let why = format!("receiving: {e}");
                    // Tell the peer why, best effort, before closing.
                    if !matches!(e, FrameError::Io(_) | FrameError::Truncated) {
                        let _ = self.send(Kind::GoAway, 0, why.as_bytes());
                    }
                    break why;
                }
            };
            if let Err(why) = self.dispatch(header, &mut body, &mut incoming) {
                let _ = self.send(Kind::GoAway, 0, why.as_bytes());
                break why;
            }
        };
        self.close(why.clone());
        match self.closed() {
            Some(why) if why == PEER_CLOSED => SessionEnd::PeerClosed,
            closed => SessionEnd::Lost(closed.unwrap_or(why)),
        }
    }

    /// Reads one frame. DATA bodies go straight into their stream's
    /// staging pipe (None); other frames come back with their body.
    fn read_frame(
        &self,
        reader: &mut FdReader,
        body: &mut Vec<u8>,
    ) -> Result<Option<Header>, FrameError> {
        let header = frame::read_header(reader, &self.limits)?;
        if header.kind == Kind::Data {
            self.receive_data(reader, header, body)
                .map_err(|why| FrameError::Io(io::Error::other(why)))?;
            return Ok(None);
        }
        frame::read_body(reader, &header, body)?;
        Ok(Some(header))
    }

    /// One DATA frame: checked against the stream's credit, then moved into
    /// its staging pipe (spliced, unless compressed), or discarded when the
    /// stream is gone (it failed or was cancelled: at most a window).
    fn receive_data(
        &self,
        reader: &mut FdReader,
        h: Header,
        body: &mut Vec<u8>,
    ) -> Result<(), String> {
        let len = u64::from(h.len);
        let staging = {
            let mut st = self.state();
            // (A client counts no requests: it makes them.)
            if st.newest_request > 0 && h.id > st.newest_request {
                return Err(format!("DATA for stream {} that no request opened", h.id));
            }
            match st.streams.get_mut(&h.id) {
                Some(s) if !self.compress => {
                    if len > s.granted {
                        return Err(format!(
                            "DATA beyond credit on stream {} ({len} bytes, {} granted)",
                            h.id, s.granted
                        ));
                    }
                    s.granted -= len;
                    s.staging.clone()
                }
                Some(s) => s.staging.clone(),
                None => None,
            }
        };
        let moved = match staging {
            Some(pipe) if !self.compress => {
                // Counted as it arrives: the consumer drains the staging
                // pipe while the frame still comes (a pipe holds fewer
                // small pieces than its size in bytes).
                splice_exactly(reader, &pipe.write, len, |m| {
                    if let Some(s) = self.state().streams.get_mut(&h.id) {
                        s.queued += m as u64;
                    }
                    self.flow.notify_all();
                })?;
                0
            }
            staging => {
                frame::read_body(reader, &h, body).map_err(|e| format!("receiving DATA: {e}"))?;
                let Some(pipe) = staging else {
                    return Ok(()); // discarded
                };
                let data = unpack_data(body, self.limits.max_data as usize)?;
                let n = data.len() as u64;
                {
                    let mut st = self.state();
                    let Some(s) = st.streams.get_mut(&h.id) else {
                        return Ok(());
                    };
                    if n > s.granted {
                        return Err(format!(
                            "DATA beyond credit on stream {} ({n} bytes, {} granted)",
                            h.id, s.granted
                        ));
                    }
                    s.granted -= n;
                }
                File::from(pipe.write.try_clone().map_err(|e| e.to_string())?)
                    .write_all(&data)
                    .map_err(|e| format!("staging DATA: {e}"))?;
                n
            }
        };
        if moved > 0 {
            if let Some(s) = self.state().streams.get_mut(&h.id) {
                s.queued += moved;
            }
            self.flow.notify_all();
        }
        Ok(())
    }

    fn dispatch(
        &self,
        h: Header,
        body: &mut Vec<u8>,
        incoming: &mut impl FnMut(Incoming) -> Result<(), String>,
    ) -> Result<(), String> {
        match h.kind {
            Kind::Request => {
                {
                    // The stream exists before its worker runs: DATA sent
                    // before any credit is seen as such.
                    let mut st = self.state();
                    st.newest_request = st.newest_request.max(h.id);
                    st.streams.insert(h.id, Stream::default());
                }
                incoming(Incoming::Request(h.id, std::mem::take(body)))?
            }
            Kind::Release => incoming(Incoming::Release(h.id))?,
            Kind::Reply => {
                let mut st = self.state();
                if let Some(slot) = st.replies.get_mut(&h.id) {
                    *slot = Some(std::mem::take(body));
                }
                // A reply nobody awaits (the caller gave up) is dropped.
            }
            Kind::Data => {} // handled by read_frame
            Kind::End | Kind::Cancel => {
                let mut st = self.state();
                if let Some(s) = st.streams.get_mut(&h.id) {
                    if h.kind == Kind::End {
                        s.ended = true;
                    } else {
                        s.cancelled = true;
                    }
                }
            }
            Kind::Credit => {
                let n = frame::decode_credit(body).map_err(|e| e.to_string())?;
                let mut st = self.state();
                if let Some(s) = st.streams.get_mut(&h.id) {
                    s.credit = s.credit.saturating_add(u64::from(n));
                }
            }
            Kind::Heartbeat => {}
            Kind::GoAway => {
                return Err(format!(
                    "the peer ended the connection: {}",
                    String::from_utf8_lossy(body)
                ))
            }
            Kind::Hello | Kind::Welcome | Kind::Refuse => {
                return Err(format!("unexpected {} frame after the handshake", h.kind))
            }
        }
        match h.kind {
            Kind::Credit | Kind::End | Kind::Cancel => self.flow.notify_all(),
            Kind::Heartbeat => {}
            _ => {
                self.changed.notify_all();
                self.flow.notify_all();
            }
        }
        Ok(())
    }

    /// Client: awaits the reply to request `id` (registered with
    /// [`expect_reply`](Self::expect_reply)).
    pub(crate) fn wait_reply(&self, id: u32) -> Result<Vec<u8>, String> {
        let mut st = self.state();
        loop {
            if let Some(Some(_)) = st.replies.get(&id) {
                let body = st.replies.remove(&id).flatten().unwrap_or_default();
                return Ok(body);
            }
            if let Some(why) = st.closed.clone() {
                st.replies.remove(&id);
                return Err(why);
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Client: a reply to `id` will be awaited (register before sending).
    pub(crate) fn expect_reply(&self, id: u32) {
        self.state().replies.insert(id, None);
    }

    /// Forgets a reply no one will await.
    pub(crate) fn forget_reply(&self, id: u32) {
        self.state().replies.remove(&id);
    }

    /// Opens stream `id` on this side.
    pub(crate) fn open_stream(&self, id: u32) {
        self.state().streams.insert(id, Stream::default());
    }

    /// Drops stream `id`: later DATA for it is discarded.
    pub(crate) fn close_stream(&self, id: u32) {
        self.state().streams.remove(&id);
        self.flow.notify_all();
    }

    /// Inbound: grants the peer `bytes` more.
    fn grant(&self, id: u32, bytes: u32) -> Result<(), StreamEnd> {
        {
            let mut st = self.state();
            match st.streams.get_mut(&id) {
                Some(s) => s.granted += u64::from(bytes),
                None => return Err(StreamEnd::Cancelled),
            }
        }
        self.send(Kind::Credit, id, &frame::encode_credit(bytes))
            .map_err(StreamEnd::Closed)
    }

    /// Inbound: moves stream `id` into `into` until the peer's END, with
    /// credit granted as it is consumed. Returns the bytes moved. The bytes
    /// go socket → staging pipe → `into` with `splice`: no copy through
    /// user space (a copy when `into` cannot splice).
    /// `stop_on_reply`: a client ends early when the reply arrives first.
    pub(crate) fn pump_in(
        &self,
        id: u32,
        into: OwnedFd,
        stop_on_reply: bool,
    ) -> Result<u64, StreamEnd> {
        let staging = Arc::new(
            Pipe::new(self.window as usize).map_err(|e| StreamEnd::Local(io::Error::other(e)))?,
        );
        let room = u32::try_from(staging.capacity)
            .unwrap_or(u32::MAX)
            .min(self.window);
        match self.state().streams.get_mut(&id) {
            Some(s) => s.staging = Some(staging.clone()),
            None => return Err(StreamEnd::Cancelled),
        }
        self.grant(id, room)?;
        let mut copy = false;
        let mut total = 0u64;
        let mut consumed = 0u32;
        loop {
            let queued = {
                let mut st = self.state();
                loop {
                    let replied = stop_on_reply && matches!(st.replies.get(&id), Some(Some(_)));
                    let Some(s) = st.streams.get_mut(&id) else {
                        return Err(StreamEnd::Cancelled);
                    };
                    if s.queued > 0 {
                        break s.queued;
                    }
                    if s.ended {
                        return Ok(total);
                    }
                    if s.cancelled {
                        return Err(StreamEnd::Cancelled);
                    }
                    if replied {
                        return Err(StreamEnd::Replied);
                    }
                    if let Some(why) = &st.closed {
                        return Err(StreamEnd::Closed(why.clone()));
                    }
                    st = self.flow.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            };
            let want = usize::try_from(queued).unwrap_or(usize::MAX);
            let moved = if copy {
                copy_some(&staging.read, &into, want)
            } else {
                match zfs_core::pipe::splice(&staging.read, &into, want) {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        copy = true;
                        copy_some(&staging.read, &into, want)
                    }
                    other => other,
                }
            }
            .map_err(StreamEnd::Local)?;
            if moved == 0 {
                return Err(StreamEnd::Local(io::Error::from(
                    io::ErrorKind::UnexpectedEof,
                )));
            }
            if let Some(s) = self.state().streams.get_mut(&id) {
                s.queued -= moved as u64;
            }
            total += moved as u64;
            consumed += moved as u32;
            if consumed >= CREDIT_STEP {
                self.grant(id, consumed)?;
                consumed = 0;
            }
        }
    }

    /// Outbound: waits for credit on stream `id`; returns how many bytes
    /// may go now (at most `max`).
    fn await_credit(&self, id: u32, stop_on_reply: bool, max: usize) -> Result<usize, StreamEnd> {
        let mut st = self.state();
        loop {
            let replied = stop_on_reply && matches!(st.replies.get(&id), Some(Some(_)));
            if let Some(why) = &st.closed {
                return Err(StreamEnd::Closed(why.clone()));
            }
            let Some(s) = st.streams.get_mut(&id) else {
                return Err(StreamEnd::Cancelled);
            };
            if s.cancelled {
                return Err(StreamEnd::Cancelled);
            }
            if replied {
                return Err(StreamEnd::Replied);
            }
            if s.credit > 0 {
                return Ok(usize::try_from(s.credit).unwrap_or(max).min(max));
            }
            st = self.flow.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Outbound: spends `n` bytes of stream `id`'s credit.
    fn spend(&self, id: u32, n: usize) -> Result<(), StreamEnd> {
        match self.state().streams.get_mut(&id) {
            Some(s) => {
                s.credit -= n as u64;
                Ok(())
            }
            None => Err(StreamEnd::Cancelled),
        }
    }

    /// Outbound: sends what `from` yields as DATA on stream `id`, within
    /// the peer's credit, then END. Returns the bytes sent. From a pipe
    /// (and uncompressed), each frame's body is spliced from the pipe into
    /// the channel after its header: no copy through user space.
    pub(crate) fn pump_out(
        &self,
        id: u32,
        from: OwnedFd,
        stop_on_reply: bool,
    ) -> Result<u64, StreamEnd> {
        if !self.compress && zfs_core::pipe::is_pipe(&from) {
            return self.pump_out_spliced(id, from, stop_on_reply);
        }
        let mut from = File::from(from);
        // Room for the flag byte when compressing.
        let max = self.limits.max_data as usize - usize::from(self.compress);
        let mut buf = vec![0u8; max];
        let mut total = 0u64;
        loop {
            let allowed = self.await_credit(id, stop_on_reply, max)?;
            let n = loop {
                match from.read(&mut buf[..allowed]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StreamEnd::Local(e)),
                }
            };
            if n == 0 {
                self.send(Kind::End, id, &[]).map_err(StreamEnd::Closed)?;
                return Ok(total);
            }
            self.spend(id, n)?;
            self.throttle(n);
            let sent = if self.compress {
                self.send(Kind::Data, id, &pack_data(&buf[..n]))
            } else {
                self.send(Kind::Data, id, &buf[..n])
            };
            sent.map_err(StreamEnd::Closed)?;
            total += n as u64;
        }
    }

    fn pump_out_spliced(
        &self,
        id: u32,
        from: OwnedFd,
        stop_on_reply: bool,
    ) -> Result<u64, StreamEnd> {
        let max = self.limits.max_data as usize;
        let mut total = 0u64;
        loop {
            let allowed = self.await_credit(id, stop_on_reply, max)?;
            // Wait for input (or its end), waking up to see a cancel.
            let available = loop {
                let ready = poll(
                    &[(&from.as_fd(), Interest::Read)],
                    Duration::from_millis(200),
                )
                .map_err(StreamEnd::Local)?;
                if ready[0].any() {
                    break zfs_core::pipe::bytes_available(&from).map_err(StreamEnd::Local)?;
                }
                self.await_credit(id, stop_on_reply, max)?;
            };
            if available == 0 {
                self.send(Kind::End, id, &[]).map_err(StreamEnd::Closed)?;
                return Ok(total);
            }
            let n = available.min(allowed);
            self.spend(id, n)?;
            self.throttle(n);
            self.send_spliced(id, &from, n).map_err(StreamEnd::Closed)?;
            total += n as u64;
        }
    }

    /// Writes a DATA frame whose body is the next `n` bytes of the pipe
    /// `from` (which holds at least that many), spliced into the channel.
    fn send_spliced(&self, id: u32, from: &OwnedFd, n: usize) -> Result<(), String> {
        if let Some(why) = self.closed() {
            return Err(why);
        }
        let len = u32::try_from(n).map_err(|_| "a DATA frame over 4 GiB".to_owned())?;
        let header = Header {
            kind: Kind::Data,
            id,
            len,
        }
        .encode();
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut result = w.write_all(&header);
        let mut left = n;
        while result.is_ok() && left > 0 {
            match zfs_core::pipe::splice(from, &*w, left) {
                Ok(0) => result = Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(m) => left -= m.min(left),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => result = Err(e),
            }
        }
        drop(w);
        match result {
            Ok(()) => {
                self.state().last_sent = Some(Instant::now());
                Ok(())
            }
            Err(e) => self.send_failed(e),
        }
    }

    /// Tells the peer this side gave up on stream `id`.
    pub(crate) fn cancel_stream(&self, id: u32) {
        self.close_stream(id);
        let _ = self.send(Kind::Cancel, id, &[]);
    }
}

/// Moves up to `want` bytes from `from` to `into` through a buffer (for an
/// `into` that cannot splice). Returns the bytes moved.
fn copy_some(from: &OwnedFd, into: &OwnedFd, want: usize) -> io::Result<usize> {
    let mut buf = vec![0u8; want.min(1 << 20)];
    let n = File::from(from.try_clone()?).read(&mut buf)?;
    File::from(into.try_clone()?).write_all(&buf[..n])?;
    Ok(n)
}

/// Splices exactly `len` bytes of the channel (a frame's body) into the
/// pipe `to`, which has room for them, waiting for the channel as a read
/// does (the dead time, the wake-up).
fn splice_exactly(
    reader: &mut FdReader,
    to: &OwnedFd,
    len: u64,
    mut moved: impl FnMut(usize),
) -> Result<(), String> {
    let mut left = usize::try_from(len).map_err(|_| "a DATA frame too large".to_owned())?;
    let mut buf: Vec<u8> = Vec::new();
    while left > 0 {
        let ready = poll(
            &[
                (&reader.fd.as_fd(), Interest::Read),
                (reader.wakeup.fd(), Interest::Read),
            ],
            reader.dead_after,
        )
        .map_err(|e| format!("receiving DATA: {e}"))?;
        if !ready[0].any() {
            return Err(if ready[1].any() {
                "closed".to_owned()
            } else {
                format!(
                    "receiving: nothing received for {} s (the peer is dead or stalled)",
                    reader.dead_after.as_secs_f64()
                )
            });
        }
        match zfs_core::pipe::splice_nonblocking(&reader.fd, to, left) {
            Ok(0) => return Err("receiving: the connection ended inside a frame".to_owned()),
            Ok(m) => {
                left -= m.min(left);
                moved(m);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The staging pipe is out of slots (small pieces): wait until
            // the consumer drains some.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let ready = poll(
                    &[
                        (&to.as_fd(), Interest::Write),
                        (reader.wakeup.fd(), Interest::Read),
                    ],
                    reader.dead_after,
                )
                .map_err(|e| format!("staging DATA: {e}"))?;
                // No room yet: the consumer is slow (a receive waiting on
                // its pool), not the peer dead; wait on, unless closed.
                if ready[1].any() {
                    return Err("closed".to_owned());
                }
            }
            // A channel that cannot splice: through a buffer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                buf.resize(left.min(1 << 20), 0);
                let n = reader
                    .fd
                    .read(&mut buf)
                    .map_err(|e| format!("receiving DATA: {e}"))?;
                if n == 0 {
                    return Err("receiving: the connection ended inside a frame".to_owned());
                }
                File::from(to.try_clone().map_err(|e| e.to_string())?)
                    .write_all(&buf[..n])
                    .map_err(|e| format!("staging DATA: {e}"))?;
                left -= n;
                moved(n);
            }
            Err(e) => return Err(format!("receiving DATA: {e}")),
        }
    }
    Ok(())
}
