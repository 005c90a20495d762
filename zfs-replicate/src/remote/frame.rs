//! Frames: the unit of everything on the wire.
//!
//! A frame is a 9-byte big-endian header, `kind u8 | id u32 | len u32`,
//! then `len` body bytes. Each kind has a body limit, checked against the
//! header *before* anything is allocated, so a peer cannot make us reserve
//! more than [`FrameLimits::limit`] for any frame.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};

/// The 8 bytes each side writes before its first frame. A peer that is not
/// zfs-replicate (a shell banner, an HTTP client) fails on them, before any
/// length is trusted.
pub const MAGIC: [u8; 8] = *b"zfsrepl\0";

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 9;

/// Body limit of HELLO, WELCOME, REFUSE and GOAWAY.
pub const MAX_CONTROL: u32 = 64 << 10;

/// Body limit of REQUEST and REPLY (the client splits bigger batches).
pub const MAX_MESSAGE: u32 = 1 << 20;

/// Default body limit of DATA ([`FrameLimits::max_data`]).
pub const DEFAULT_MAX_DATA: u32 = 1 << 20;

/// What a frame is. 6 (REPLY_PART in the design) is reserved and, like any
/// other unlisted value, unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client → server, id 0: version, features, token.
    Hello = 1,
    /// Server → client, id 0: the agreed version, grants and limits.
    Welcome = 2,
    /// Server → client, id 0: the handshake failed; the server closes.
    Refuse = 3,
    /// A request; id = request id.
    Request = 4,
    /// The reply to the request with the same id.
    Reply = 5,
    /// Raw stream bytes; id = stream id.
    Data = 7,
    /// The stream ends (empty body).
    End = 8,
    /// More bytes granted to the stream: body = u32 BE.
    Credit = 9,
    /// The stream is abandoned (empty body).
    Cancel = 10,
    /// A lease (holds) is released; id = lease id (empty body).
    Release = 11,
    /// A sign of life (empty body).
    Heartbeat = 12,
    /// The sender closes the connection, saying why.
    GoAway = 13,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 12] = [
        Kind::Hello,
        Kind::Welcome,
        Kind::Refuse,
        Kind::Request,
        Kind::Reply,
        Kind::Data,
        Kind::End,
        Kind::Credit,
        Kind::Cancel,
        Kind::Release,
        Kind::Heartbeat,
        Kind::GoAway,
    ];

    /// The kind with wire value `b`, if there is one.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == b)
    }

    /// Its name in messages: "HELLO", "DATA".
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hello => "HELLO",
            Kind::Welcome => "WELCOME",
            Kind::Refuse => "REFUSE",
            Kind::Request => "REQUEST",
            Kind::Reply => "REPLY",
            Kind::Data => "DATA",
            Kind::End => "END",
            Kind::Credit => "CREDIT",
            Kind::Cancel => "CANCEL",
            Kind::Release => "RELEASE",
            Kind::Heartbeat => "HEARTBEAT",
            Kind::GoAway => "GOAWAY",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body limits a reader enforces. Only DATA's is configurable: the
/// others follow from the message sizes the protocol allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The largest DATA body accepted.
    pub max_data: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_data: DEFAULT_MAX_DATA,
        }
    }
}

impl FrameLimits {
    /// The largest body a frame of `kind` may have.
    pub fn limit(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Hello | Kind::Welcome | Kind::Refuse | Kind::GoAway => MAX_CONTROL,
            Kind::Request | Kind::Reply => MAX_MESSAGE,
            Kind::Data => self.max_data,
            Kind::Credit => 4,
            Kind::End | Kind::Cancel | Kind::Release | Kind::Heartbeat => 0,
        }
    }
}

/// A frame header, validated: a known kind and a length within its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// Request, stream or lease id; 0 for connection-level frames.
    pub id: u32,
    /// Body bytes that follow.
    pub len: u32,
}

impl Header {
    /// The 9 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0; HEADER_LEN];
        h[0] = self.kind as u8;
        h[1..5].copy_from_slice(&self.id.to_be_bytes());
        h[5..9].copy_from_slice(&self.len.to_be_bytes());
        h
    }

    /// Parses and checks 9 header bytes: the kind must be known and the
    /// length within `limits` (CREDIT: exactly 4).
    pub fn decode(h: &[u8; HEADER_LEN], limits: &FrameLimits) -> Result<Header, FrameError> {
        let kind = Kind::from_u8(h[0]).ok_or(FrameError::UnknownKind(h[0]))?;
        let id = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        let len = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        check_len(kind, len, limits)?;
        Ok(Header { kind, id, len })
    }
}

fn check_len(kind: Kind, len: u32, limits: &FrameLimits) -> Result<(), FrameError> {
    let limit = limits.limit(kind);
    if len > limit {
        return Err(FrameError::TooLarge { kind, len, limit });
    }
    if kind == Kind::Credit && len != 4 {
        return Err(FrameError::BadCredit);
    }
    Ok(())
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the channel between frames (a clean end).
    #[error("the peer closed the connection")]
    Closed,
    /// The channel ended inside a frame.
    #[error("the connection ended inside a frame")]
    Truncated,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The header claims more than the kind's limit; nothing was allocated.
    #[error("{kind} frame of {len} bytes, limit {limit}")]
    TooLarge { kind: Kind, len: u32, limit: u32 },
    /// A CREDIT body that is not exactly 4 bytes.
    #[error("CREDIT frame body is not 4 bytes")]
    BadCredit,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one frame: its header into the return value, its body into `body`
/// (cleared and resized to the frame's length; reuse one buffer per
/// connection so its capacity settles at the largest frame seen, at most
/// the largest limit).
///
/// The length is checked before `body` grows, so a hostile header costs
/// nothing. End of input before the first header byte is
/// [`FrameError::Closed`]; after it, [`FrameError::Truncated`]. `body`'s
/// contents are unspecified after an error.
pub fn read_frame(
    r: &mut impl Read,
    body: &mut Vec<u8>,
    limits: &FrameLimits,
) -> Result<Header, FrameError> {
    let header = read_header(r, limits)?;
    read_body(r, &header, body)?;
    Ok(header)
}

/// Reads and checks one header ([`read_frame`]'s first half: a reader that
/// handles some bodies itself, such as DATA spliced into a pipe).
pub fn read_header(r: &mut impl Read, limits: &FrameLimits) -> Result<Header, FrameError> {
    let mut h = [0; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Header::decode(&h, limits)
}

/// Reads the body of `header` into `body` ([`read_frame`]'s second half).
pub fn read_body(r: &mut impl Read, header: &Header, body: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = header.len as usize;
    body.clear();
    // Exact, not amortized: doubling could overshoot the limit.
    body.reserve_exact(len);
    body.resize(len, 0);
    r.read_exact(body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })
}

/// Writes one frame, header and body in one vectored write where the
/// writer supports it (one TCP segment for small frames with `TCP_NODELAY`).
///
/// It may take several writes: callers that share a writer between threads
/// must hold a lock around the whole call, or frames interleave. A body
/// over the kind's fixed limit (any DATA body up to `u32::MAX` passes: its
/// limit is the peer's) is refused with [`io::ErrorKind::InvalidInput`]
/// before anything is written, since the peer would refuse it anyway.
pub fn write_frame(w: &mut impl Write, kind: Kind, id: u32, body: &[u8]) -> io::Result<()> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let len = u32::try_from(body.len())
        .map_err(|_| invalid(format!("{kind} body of {} bytes", body.len())))?;
    check_len(kind, len, &FrameLimits { max_data: u32::MAX })
        .map_err(|e| invalid(e.to_string()))?;
    let header = Header { kind, id, len }.encode();
    let mut slices = [IoSlice::new(&header), IoSlice::new(body)];
    let mut bufs = &mut slices[..];
    let mut left = HEADER_LEN + body.len();
    while left > 0 {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            // A writer claiming more than it was given is broken; refuse
            // rather than let advance_slices panic.
            Ok(n) if n > left => {
                return Err(io::Error::other("write_vectored wrote more than given"))
            }
            Ok(n) => {
                left -= n;
                IoSlice::advance_slices(&mut bufs, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One frame as bytes (tests and fuzzing). Not checked against any limit.
pub fn encode(kind: Kind, id: u32, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    v.extend_from_slice(&Header { kind, id, len }.encode());
    v.extend_from_slice(body);
    v
}

/// A CREDIT body: `bytes` granted.
pub fn encode_credit(bytes: u32) -> [u8; 4] {
    bytes.to_be_bytes()
}

/// The bytes a CREDIT body grants.
pub fn decode_credit(body: &[u8]) -> Result<u32, FrameError> {
    let b: [u8; 4] = body.try_into().map_err(|_| FrameError::BadCredit)?;
    Ok(u32::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(mut input: &[u8], limits: &FrameLimits) -> (Vec<(Header, Vec<u8>)>, FrameError) {
        let mut frames = Vec::new();
        let mut body = Vec::new();
        loop {
            match read_frame(&mut input, &mut body, limits) {
                Ok(h) => frames.push((h, body.clone())),
                Err(e) => return (frames, e),
            }
        }
    }

    #[test]
    fn kinds_round_trip_and_6_is_unknown() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_u8(k as u8), Some(k));
        }
        let known: Vec<u8> = (0..=255).filter(|b| Kind::from_u8(*b).is_some()).collect();
        assert_eq!(known, [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13]);
        assert_eq!(Kind::from_u8(6), None);
    }

    #[test]
    fn header_layout_is_big_endian() {
        let h = Header {
            kind: Kind::Data,
            id: 0x0102_0304,
            len: 0x0506_0708,
        };
        assert_eq!(h.encode(), [7, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            encode(Kind::Credit, 1, &encode_credit(9)),
            [9, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 9]
        );
    }

    #[test]
    fn frames_written_are_read_back() {
        let mut wire = Vec::new();
        write_frame(&mut wire, Kind::Hello, 0, b"hello").unwrap();
        write_frame(&mut wire, Kind::Data, 7, &[0xaa; 1000]).unwrap();
        write_frame(&mut wire, Kind::Credit, 7, &encode_credit(1 << 21)).unwrap();
        write_frame(&mut wire, Kind::End, 7, &[]).unwrap();
        write_frame(&mut wire, Kind::Heartbeat, 0, &[]).unwrap();
        let (frames, end) = read_all(&wire, &FrameLimits::default());
        assert!(matches!(end, FrameError::Closed), "{end:?}");
        let kinds: Vec<_> = frames
            .iter()
            .map(|(h, b)| (h.kind, h.id, b.len()))
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Hello, 0, 5),
                (Kind::Data, 7, 1000),
                (Kind::Credit, 7, 4),
                (Kind::End, 7, 0),
                (Kind::Heartbeat, 0, 0)
            ]
        );
        assert_eq!(decode_credit(&frames[2].1).unwrap(), 1 << 21);
        let mut again = Vec::new();
        for (h, b) in &frames {
            again.extend(encode(h.kind, h.id, b));
        }
        assert_eq!(again, wire);
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        let limits = FrameLimits::default();
        for (kind, limit) in [
            (Kind::Hello, MAX_CONTROL),
            (Kind::Welcome, MAX_CONTROL),
            (Kind::Refuse, MAX_CONTROL),
            (Kind::GoAway, MAX_CONTROL),
            (Kind::Request, MAX_MESSAGE),
            (Kind::Reply, MAX_MESSAGE),
            (Kind::Data, DEFAULT_MAX_DATA),
            (Kind::End, 0),
            (Kind::Cancel, 0),
            (Kind::Release, 0),
            (Kind::Heartbeat, 0),
        ] {
            assert_eq!(limits.limit(kind), limit);
            for len in [limit + 1, u32::MAX] {
                // Only the header is there: the body is never read.
                let h = Header { kind, id: 1, len }.encode();
                let mut body = Vec::new();
                let e = read_frame(&mut &h[..], &mut body, &limits).unwrap_err();
                assert!(
                    matches!(e, FrameError::TooLarge { kind: k, len: l, limit: m } if k == kind && l == len && m == limit),
                    "{e:?}"
                );
                assert_eq!(body.capacity(), 0);
            }
        }
        let small = FrameLimits { max_data: 10 };
        let (frames, e) = read_all(&encode(Kind::Data, 1, &[0; 11]), &small);
        assert!(frames.is_empty());
        assert_eq!(e.to_string(), "DATA frame of 11 bytes, limit 10");
        let (frames, _) = read_all(&encode(Kind::Data, 1, &[0; 10]), &small);
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn credit_is_exactly_four_bytes() {
        for len in [0, 3, 5, u32::MAX] {
            let h = Header {
                kind: Kind::Credit,
                id: 1,
                len,
            }
            .encode();
            let e = read_frame(&mut &h[..], &mut Vec::new(), &FrameLimits::default()).unwrap_err();
            assert!(
                matches!(e, FrameError::TooLarge { .. } | FrameError::BadCredit),
                "{len}: {e:?}"
            );
        }
        assert!(matches!(
            decode_credit(&[1, 2, 3]),
            Err(FrameError::BadCredit)
        ));
        assert!(write_frame(&mut Vec::new(), Kind::Credit, 1, &[0; 3]).is_err());
        assert!(write_frame(&mut Vec::new(), Kind::End, 1, &[0]).is_err());
        assert!(write_frame(
            &mut Vec::new(),
            Kind::Request,
            1,
            &vec![0; MAX_MESSAGE as usize + 1]
        )
        .is_err());
    }

    #[test]
    fn closed_truncated_and_unknown_are_told_apart() {
        let limits = FrameLimits::default();
        assert!(matches!(read_all(&[], &limits).1, FrameError::Closed));
        let frame = encode(Kind::Request, 3, b"abc");
        for cut in 1..frame.len() {
            let (frames, e) = read_all(&frame[..cut], &limits);
            assert!(frames.is_empty());
            assert!(matches!(e, FrameError::Truncated), "{cut}: {e:?}");
        }
        for kind in [0, 6, 14, 255] {
            let mut f = encode(Kind::End, 0, &[]);
            f[0] = kind;
            assert!(matches!(read_all(&f, &limits).1, FrameError::UnknownKind(k) if k == kind));
        }
    }

    #[test]
    fn the_body_buffer_does_not_grow_past_the_largest_frame() {
        let mut wire = Vec::new();
        for len in [600 << 10, 700 << 10, 1 << 20, 10] {
            wire.extend(encode(Kind::Data, 1, &vec![1; len]));
        }
        let mut body = Vec::new();
        let mut r = &wire[..];
        while read_frame(&mut r, &mut body, &FrameLimits::default()).is_ok() {
            assert!(body.capacity() <= 1 << 20, "{}", body.capacity());
        }
    }

    /// A reader that returns one byte at a time, with interruptions.
    struct Trickle<'a>(&'a [u8], bool);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// A writer that takes at most 3 bytes per call, only from the first
    /// slice, with interruptions.
    struct Stingy(Vec<u8>, bool);

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_reads_and_writes_are_resumed() {
        let mut w = Stingy(Vec::new(), false);
        write_frame(&mut w, Kind::Reply, 9, b"0123456789").unwrap();
        write_frame(&mut w, Kind::Cancel, 9, b"").unwrap();
        assert_eq!(w.0[..19], encode(Kind::Reply, 9, b"0123456789"));
        let mut r = Trickle(&w.0, false);
        let mut body = Vec::new();
        let h = read_frame(&mut r, &mut body, &FrameLimits::default()).unwrap();
        assert_eq!(
            (h.kind, h.id, &body[..]),
            (Kind::Reply, 9, &b"0123456789"[..])
        );
        let h = read_frame(&mut r, &mut body, &FrameLimits::default()).unwrap();
        assert_eq!((h.kind, h.len), (Kind::Cancel, 0));
        assert!(matches!(
            read_frame(&mut r, &mut body, &FrameLimits::default()),
            Err(FrameError::Closed)
        ));
    }
}
