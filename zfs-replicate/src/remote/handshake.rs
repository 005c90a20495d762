//! The handshake: MAGIC, HELLO (client), then WELCOME or REFUSE (server).
//!
//! HELLO and WELCOME bodies are `major u16 BE | minor u16 BE | postcard(rest)`.
//! The version is read from raw bytes before any postcard, so a peer of a
//! different major version, whose rest may be laid out differently, is
//! refused with both versions named instead of failing to decode. Within a
//! major version the rests only grow at the end: a HELLO from a newer minor
//! may carry trailing fields, which are ignored.
//!
//! Decoding borrows from the body (the token and strings are `&[u8]` and
//! `&str` until they pass their size checks), so a length field claiming
//! more than the body holds fails at the end of the body, never allocates.

use std::fmt;

use serde::{Deserialize, Serialize};
use zfs_core::{DatasetName, NameError};

use super::frame::{FrameLimits, MAGIC};
use super::policy::{Access, Policy};

/// Major version: a different one is refused.
pub const PROTOCOL_MAJOR: u16 = 1;
/// Minor version: the lower of the two sides' is used.
pub const PROTOCOL_MINOR: u16 = 0;
/// This side's version.
pub const PROTOCOL: Version = Version {
    major: PROTOCOL_MAJOR,
    minor: PROTOCOL_MINOR,
};

/// Feature bit 0: zstd-compressed DATA (built with the `zstd` feature).
pub const FEATURE_ZSTD: u64 = 1 << 0;
/// The features this build implements.
pub const FEATURES: u64 = if cfg!(feature = "zstd") {
    FEATURE_ZSTD
} else {
    0
};

/// The longest token a HELLO may carry.
pub const MAX_TOKEN: usize = 256;
/// The longest `software` string (name and version of the peer).
pub const MAX_SOFTWARE: usize = 64;
/// The largest `max_data` a WELCOME may set: a client allocates that much
/// per connection for DATA bodies, so a server cannot ask for gigabytes.
pub const MAX_DATA_LIMIT: u32 = 16 << 20;
/// This software, as sent in HELLO and WELCOME.
pub const SOFTWARE: &str = concat!("zfs-replicate ", env!("CARGO_PKG_VERSION"));

/// The one line a server writes to a peer whose first bytes are not
/// [`MAGIC`], before it closes: a human at the other end (or a log) sees
/// what answered.
pub const NOT_A_CLIENT: &str = "zfs-replicate server: not a zfs-replicate client (protocol 1)\n";

/// The most characters of a non-peer's first bytes kept in
/// [`HandshakeError::NotAPeer`].
const MAX_SHOWN: usize = 64;

/// A protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's first bytes are not [`MAGIC`]: something else answered.
    #[error(
        "not a zfs-replicate peer: it began with \"{first_bytes}\" (output before the protocol \
         started: a login banner or a shell startup file writing to stdout? use `ssh -T` or a \
         forced command)"
    )]
    NotAPeer {
        /// The first bytes, escaped as printable ASCII, at most 64 chars.
        first_bytes: String,
    },
    /// The peer speaks another major version.
    #[error(
        "the peer speaks protocol {theirs}, this side {ours}: install the same major version \
         of zfs-replicate on both sides"
    )]
    Version { ours: Version, theirs: Version },
    #[error("token of {len} bytes, at most {MAX_TOKEN} allowed")]
    TokenTooLong { len: usize },
    #[error("software string of {len} bytes, at most {MAX_SOFTWARE} allowed")]
    SoftwareTooLong { len: usize },
    #[error("WELCOME grants an invalid dataset: {0}")]
    BadGrant(#[source] NameError),
    #[error("WELCOME limits: {0}")]
    BadLimits(&'static str),
    /// Anything else that does not decode.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
}

fn malformed(what: &'static str, reason: impl fmt::Display) -> HandshakeError {
    HandshakeError::Malformed {
        what,
        reason: reason.to_string(),
    }
}

/// Checks a peer's first bytes (read before any frame) against [`MAGIC`].
/// Pass what was read, even if fewer than 8 bytes arrived.
pub fn check_magic(first: &[u8]) -> Result<(), HandshakeError> {
    if first.starts_with(&MAGIC) {
        return Ok(());
    }
    let mut shown = String::new();
    for &b in first {
        let e: String = std::ascii::escape_default(b).map(char::from).collect();
        if shown.len() + e.len() > MAX_SHOWN {
            break;
        }
        shown.push_str(&e);
    }
    Err(HandshakeError::NotAPeer { first_bytes: shown })
}

/// The version at the start of a HELLO or WELCOME body, and the rest.
pub fn peek_version(body: &[u8]) -> Result<(Version, &[u8]), HandshakeError> {
    match body {
        [a, b, c, d, rest @ ..] => Ok((
            Version {
                major: u16::from_be_bytes([*a, *b]),
                minor: u16::from_be_bytes([*c, *d]),
            },
            rest,
        )),
        _ => Err(malformed("handshake", "body shorter than a version")),
    }
}

fn same_major(theirs: Version) -> Result<(), HandshakeError> {
    if theirs.major == PROTOCOL_MAJOR {
        Ok(())
    } else {
        Err(HandshakeError::Version {
            ours: PROTOCOL,
            theirs,
        })
    }
}

fn check_software(s: &str) -> Result<(), HandshakeError> {
    if s.len() > MAX_SOFTWARE {
        return Err(HandshakeError::SoftwareTooLong { len: s.len() });
    }
    // It ends up in logs and terminals.
    if s.chars().any(char::is_control) {
        return Err(malformed("software string", "control characters"));
    }
    Ok(())
}

fn with_version(
    v: Version,
    rest: &impl Serialize,
    what: &'static str,
) -> Result<Vec<u8>, HandshakeError> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&v.major.to_be_bytes());
    body.extend_from_slice(&v.minor.to_be_bytes());
    postcard::to_io(rest, &mut body).map_err(|e| malformed(what, e))?;
    Ok(body)
}

/// The client's HELLO.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: Version,
    /// Feature bits the client offers.
    pub features: u64,
    /// The shared secret of plain-TCP connections.
    pub token: Option<Vec<u8>>,
    /// Name and version of the client software, for logs.
    pub software: String,
}

impl Hello {
    /// This client's HELLO: our version, features and software.
    pub fn new(token: Option<Vec<u8>>) -> Hello {
        Hello {
            version: PROTOCOL,
            features: FEATURES,
            token,
            software: SOFTWARE.to_owned(),
        }
    }
}

/// The token is never printed.
impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("features", &self.features)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("software", &self.software)
            .finish()
    }
}

/// HELLO after the version. Fields of later minor versions go at the end.
#[derive(Serialize, Deserialize)]
struct HelloRest<'a> {
    features: u64,
    #[serde(borrow)]
    token: Option<&'a [u8]>,
    software: &'a str,
}

/// A HELLO body. Refuses a token over [`MAX_TOKEN`] or software over
/// [`MAX_SOFTWARE`], as the server would.
pub fn encode_hello(h: &Hello) -> Result<Vec<u8>, HandshakeError> {
    if let Some(t) = &h.token {
        if t.len() > MAX_TOKEN {
            return Err(HandshakeError::TokenTooLong { len: t.len() });
        }
    }
    check_software(&h.software)?;
    let rest = HelloRest {
        features: h.features,
        token: h.token.as_deref(),
        software: &h.software,
    };
    with_version(h.version, &rest, "HELLO")
}

/// Decodes a HELLO body (server side). A different major version is
/// [`HandshakeError::Version`], found before the rest is decoded.
// PROTOCOL_MINOR is 0 today, which makes `<=` look absurd to clippy.
#[allow(clippy::absurd_extreme_comparisons)]
pub fn decode_hello(body: &[u8]) -> Result<Hello, HandshakeError> {
    let (version, rest) = peek_version(body)?;
    same_major(version)?;
    let (r, trailing): (HelloRest<'_>, _) =
        postcard::take_from_bytes(rest).map_err(|e| malformed("HELLO", e))?;
    if !trailing.is_empty() && version.minor <= PROTOCOL_MINOR {
        return Err(malformed("HELLO", "trailing bytes"));
    }
    if let Some(t) = r.token {
        if t.len() > MAX_TOKEN {
            return Err(HandshakeError::TokenTooLong { len: t.len() });
        }
    }
    check_software(r.software)?;
    Ok(Hello {
        version,
        features: r.features,
        token: r.token.map(<[u8]>::to_vec),
        software: r.software.to_owned(),
    })
}

/// What the server answers a HELLO with: the lower minor version and the
/// features both sides have (`ours`: the server's).
// PROTOCOL_MINOR is 0 today, which makes `min` look useless to clippy.
#[allow(clippy::unnecessary_min_or_max)]
pub fn negotiate(hello: &Hello, ours: u64) -> Result<(Version, u64), HandshakeError> {
    same_major(hello.version)?;
    let minor = hello.version.minor.min(PROTOCOL_MINOR);
    Ok((
        Version {
            major: PROTOCOL_MAJOR,
            minor,
        },
        hello.features & ours,
    ))
}

/// The limits a server sets for a session, sent in WELCOME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLimits {
    /// The largest DATA body either side sends.
    pub max_data: u32,
    /// Credit per stream: bytes in flight before the receiver grants more.
    pub window: u32,
    /// Streams open at once.
    pub max_streams: u16,
    /// Send a HEARTBEAT after this long without sending anything.
    pub heartbeat_ms: u32,
    /// Close after this long without receiving anything.
    pub dead_after_ms: u32,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_data: 1 << 20,
            window: 2 << 20,
            max_streams: 8,
            heartbeat_ms: 5_000,
            dead_after_ms: 20_000,
        }
    }
}

impl SessionLimits {
    /// The frame limits they imply.
    pub fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_data: self.max_data,
        }
    }

    /// Refuses limits no session can run with (nothing may be zero, a peer
    /// must have time to send a heartbeat before it is declared dead) or
    /// that would make the client allocate too much.
    pub fn check(&self) -> Result<(), HandshakeError> {
        let bad = |why| Err(HandshakeError::BadLimits(why));
        if self.max_data == 0 || self.max_data > MAX_DATA_LIMIT {
            return bad("max_data must be 1 byte to 16 MiB");
        }
        if self.window == 0 || self.max_streams == 0 || self.heartbeat_ms == 0 {
            return bad("window, max_streams and heartbeat_ms must not be 0");
        }
        if self.dead_after_ms <= self.heartbeat_ms {
            return bad("dead_after_ms must exceed heartbeat_ms");
        }
        Ok(())
    }
}

/// The server's WELCOME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The agreed version (same major, the lower minor).
    pub version: Version,
    /// The agreed features.
    pub features: u64,
    /// What the server allows this client, so it can refuse a job
    /// before its first change.
    pub grants: Policy,
    pub limits: SessionLimits,
    /// Name and version of the server software, for logs.
    pub software: String,
}

/// WELCOME after the version. Names are plain strings on the wire,
/// validated on decoding.
#[derive(Serialize, Deserialize)]
struct WelcomeRest<'a> {
    features: u64,
    #[serde(borrow)]
    grants: Vec<(&'a str, Access)>,
    limits: SessionLimits,
    software: &'a str,
}

/// A WELCOME body.
pub fn encode_welcome(w: &Welcome) -> Result<Vec<u8>, HandshakeError> {
    check_software(&w.software)?;
    w.limits.check()?;
    let rest = WelcomeRest {
        features: w.features,
        grants: w
            .grants
            .grants()
            .iter()
            .map(|g| (g.root.as_str(), g.access))
            .collect(),
        limits: w.limits,
        software: &w.software,
    };
    with_version(w.version, &rest, "WELCOME")
}

/// Decodes a WELCOME body (client side). The server must have kept our
/// major version and chosen a minor no newer than ours; whether its
/// features are a subset of those offered is the caller's check.
pub fn decode_welcome(body: &[u8]) -> Result<Welcome, HandshakeError> {
    let (version, rest) = peek_version(body)?;
    same_major(version)?;
    if version.minor > PROTOCOL_MINOR {
        return Err(malformed(
            "WELCOME",
            format_args!("version {version} is newer than this side's {PROTOCOL}"),
        ));
    }
    let (r, trailing): (WelcomeRest<'_>, _) =
        postcard::take_from_bytes(rest).map_err(|e| malformed("WELCOME", e))?;
    // The minor is at most ours, so there are no newer fields to skip.
    if !trailing.is_empty() {
        return Err(malformed("WELCOME", "trailing bytes"));
    }
    check_software(r.software)?;
    r.limits.check()?;
    let mut grants = Policy::new();
    for (name, access) in r.grants {
        let root = name
            .parse::<DatasetName>()
            .map_err(HandshakeError::BadGrant)?;
        grants = grants.allow(root, access);
    }
    Ok(Welcome {
        version,
        features: r.features,
        grants,
        limits: r.limits,
        software: r.software.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HELLO offering no features (its layout is fixed below).
    fn hello() -> Hello {
        let mut h = Hello::new(Some(b"0123456789abcdef".to_vec()));
        h.features = 0;
        h
    }

    fn welcome() -> Welcome {
        Welcome {
            version: PROTOCOL,
            features: 0,
            grants: Policy::new()
                .allow("pipe/backups/laptop".parse().unwrap(), Access::Receive)
                .allow("tank/a:b".parse().unwrap(), Access::All),
            limits: SessionLimits::default(),
            software: SOFTWARE.to_owned(),
        }
    }

    /// A body with this version and postcard rest.
    fn body(major: u16, minor: u16, rest: &[u8]) -> Vec<u8> {
        [&major.to_be_bytes()[..], &minor.to_be_bytes(), rest].concat()
    }

    /// postcard varint (LEB128) of `n`.
    fn varint(mut n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                return v;
            }
            v.push(b | 0x80);
        }
    }

    #[test]
    fn hello_round_trips_and_its_layout_is_fixed() {
        let h = hello();
        let b = encode_hello(&h).unwrap();
        assert_eq!(decode_hello(&b).unwrap(), h);
        // major | minor | features varint | Some | len | token | len | software
        let mut want = vec![0, 1, 0, 0, 0, 1, 16];
        want.extend_from_slice(b"0123456789abcdef");
        want.push(SOFTWARE.len() as u8);
        want.extend_from_slice(SOFTWARE.as_bytes());
        assert_eq!(b, want);
        let anonymous = Hello::new(None);
        assert_eq!(
            decode_hello(&encode_hello(&anonymous).unwrap()).unwrap(),
            anonymous
        );
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let s = format!("{:?}", hello());
        assert!(
            !s.contains("0123456789abcdef") && s.contains("redacted"),
            "{s}"
        );
    }

    #[test]
    fn another_major_is_refused_with_both_versions_before_the_rest() {
        for major in [0, 2, u16::MAX] {
            // The rest is garbage: it must not be looked at.
            let b = body(major, 9, &[0xff; 20]);
            let e = decode_hello(&b).unwrap_err();
            let theirs = Version { major, minor: 9 };
            assert_eq!(
                e,
                HandshakeError::Version {
                    ours: PROTOCOL,
                    theirs
                }
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("protocol {major}.9, this side 1.0")),
                "{msg}"
            );
            assert!(matches!(
                decode_welcome(&b),
                Err(HandshakeError::Version { .. })
            ));
            let h = Hello {
                version: theirs,
                ..hello()
            };
            assert!(matches!(
                negotiate(&h, FEATURES),
                Err(HandshakeError::Version { .. })
            ));
        }
    }

    #[test]
    fn negotiation_takes_the_lower_minor_and_common_features() {
        for (minor, features, ours, want) in [
            (0, 0, 0, (0, 0)),
            (7, 0b111, 0b101, (PROTOCOL_MINOR, 0b101)),
            (0, FEATURE_ZSTD, 0, (0, 0)),
            (3, u64::MAX, FEATURE_ZSTD, (PROTOCOL_MINOR, FEATURE_ZSTD)),
        ] {
            let h = Hello {
                version: Version { major: 1, minor },
                features,
                ..hello()
            };
            let (v, f) = negotiate(&h, ours).unwrap();
            assert_eq!((v.major, v.minor, f), (1, want.0, want.1));
        }
    }

    #[test]
    fn a_newer_minor_may_append_fields_an_equal_one_may_not() {
        let mut b = encode_hello(&hello()).unwrap();
        b.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            decode_hello(&b),
            Err(HandshakeError::Malformed { .. })
        ));
        b[3] = 1; // minor 1
        let h = decode_hello(&b).unwrap();
        assert_eq!(h.version, Version { major: 1, minor: 1 });
        assert_eq!(h.token, hello().token);
    }

    #[test]
    fn oversized_token_and_software_are_refused_both_ways() {
        let long_token = Hello {
            token: Some(vec![b'x'; MAX_TOKEN + 1]),
            ..hello()
        };
        assert_eq!(
            encode_hello(&long_token),
            Err(HandshakeError::TokenTooLong { len: MAX_TOKEN + 1 })
        );
        let max_token = Hello {
            token: Some(vec![b'x'; MAX_TOKEN]),
            ..hello()
        };
        assert_eq!(
            decode_hello(&encode_hello(&max_token).unwrap()).unwrap(),
            max_token
        );
        let long_software = Hello {
            software: "x".repeat(MAX_SOFTWARE + 1),
            ..hello()
        };
        assert_eq!(
            encode_hello(&long_software),
            Err(HandshakeError::SoftwareTooLong {
                len: MAX_SOFTWARE + 1
            })
        );
        let control = Hello {
            software: "zfs\x1b[2J".into(),
            ..hello()
        };
        assert!(encode_hello(&control).is_err());
        // Hand-built bodies, as a hostile client would send them.
        let rest = |token: &[u8], software: &[u8]| {
            let mut r = vec![0, 1];
            r.extend(varint(token.len() as u64));
            r.extend_from_slice(token);
            r.extend(varint(software.len() as u64));
            r.extend_from_slice(software);
            body(1, 0, &r)
        };
        assert_eq!(
            decode_hello(&rest(&[b'x'; 300], b"s")),
            Err(HandshakeError::TokenTooLong { len: 300 })
        );
        assert_eq!(
            decode_hello(&rest(b"t", &[b's'; 65])),
            Err(HandshakeError::SoftwareTooLong { len: 65 })
        );
        assert!(matches!(
            decode_hello(&rest(b"t", b"\xff\xfe")),
            Err(HandshakeError::Malformed { .. })
        ));
        let w = Welcome {
            software: "y".repeat(65),
            ..welcome()
        };
        assert!(matches!(
            encode_welcome(&w),
            Err(HandshakeError::SoftwareTooLong { len: 65 })
        ));
    }

    #[test]
    fn huge_length_claims_fail_at_the_end_of_a_small_body() {
        // A token claiming 2^60 bytes in a 100-byte HELLO: the token is
        // borrowed from the body, so nothing is allocated for it; postcard
        // finds the body too short.
        let mut r = vec![0, 1];
        r.extend(varint(1 << 60));
        r.resize(96, b'x');
        let b = body(1, 0, &r);
        assert_eq!(b.len(), 100);
        let e = decode_hello(&b).unwrap_err();
        assert!(
            matches!(e, HandshakeError::Malformed { what: "HELLO", .. }),
            "{e:?}"
        );
        // The largest varint postcard takes for a usize, and one over it.
        for claim in [u64::MAX, (1 << 63) + 1] {
            let mut r = vec![0, 1];
            r.extend(varint(claim));
            assert!(decode_hello(&body(1, 0, &r)).is_err());
        }
        // 2^60 grants in a WELCOME: the Vec is preallocated from
        // postcard's size hint, which postcard 1.2 withholds when the body
        // is shorter than the claim (and serde caps at 1 MiB anyway).
        let mut r = vec![0];
        r.extend(varint(1 << 60));
        r.resize(96, b'x');
        let e = decode_welcome(&body(1, 0, &r)).unwrap_err();
        assert!(
            matches!(
                e,
                HandshakeError::Malformed {
                    what: "WELCOME",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn truncated_bodies_are_malformed() {
        let h = encode_hello(&hello()).unwrap();
        for cut in 0..h.len() {
            let e = decode_hello(&h[..cut]).unwrap_err();
            assert!(
                matches!(e, HandshakeError::Malformed { .. }),
                "{cut}: {e:?}"
            );
        }
        let w = encode_welcome(&welcome()).unwrap();
        for cut in 0..w.len() {
            let e = decode_welcome(&w[..cut]).unwrap_err();
            assert!(
                matches!(e, HandshakeError::Malformed { .. }),
                "{cut}: {e:?}"
            );
        }
    }

    #[test]
    fn welcome_round_trips_and_validates() {
        let w = welcome();
        let b = encode_welcome(&w).unwrap();
        assert_eq!(decode_welcome(&b).unwrap(), w);
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            decode_welcome(&longer),
            Err(HandshakeError::Malformed { .. })
        ));
        let newer = body(1, PROTOCOL_MINOR + 1, &b[4..]);
        assert!(matches!(
            decode_welcome(&newer),
            Err(HandshakeError::Malformed { .. })
        ));
        // An invalid name, spliced in by hand: same length as a valid one.
        let bad = b
            .windows(19)
            .position(|w| w == b"pipe/backups/laptop")
            .unwrap();
        let mut b2 = b.clone();
        b2[bad..bad + 19].copy_from_slice(b"pipe/backups@laptop");
        assert!(matches!(
            decode_welcome(&b2),
            Err(HandshakeError::BadGrant(_))
        ));
    }

    #[test]
    fn welcome_limits_are_checked() {
        let ok = SessionLimits::default();
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(ok.frame_limits().max_data, 1 << 20);
        for bad in [
            SessionLimits { max_data: 0, ..ok },
            SessionLimits {
                max_data: MAX_DATA_LIMIT + 1,
                ..ok
            },
            SessionLimits { window: 0, ..ok },
            SessionLimits {
                max_streams: 0,
                ..ok
            },
            SessionLimits {
                heartbeat_ms: 0,
                ..ok
            },
            SessionLimits {
                dead_after_ms: ok.heartbeat_ms,
                ..ok
            },
        ] {
            assert!(
                matches!(bad.check(), Err(HandshakeError::BadLimits(_))),
                "{bad:?}"
            );
            let w = Welcome {
                limits: bad,
                ..welcome()
            };
            assert!(encode_welcome(&w).is_err());
            // Bypassing the encoder's check: the decoder refuses too.
            let rest = WelcomeRest {
                features: 0,
                grants: vec![],
                limits: bad,
                software: "s",
            };
            let b = body(1, 0, &postcard::to_stdvec(&rest).unwrap());
            assert!(matches!(
                decode_welcome(&b),
                Err(HandshakeError::BadLimits(_))
            ));
        }
    }

    #[test]
    fn magic_is_checked_and_non_peers_are_shown_escaped() {
        assert_eq!(check_magic(&MAGIC), Ok(()));
        assert_eq!(check_magic(b"zfsrepl\0 and more"), Ok(()));
        let e = check_magic(b"Welcome to Ubuntu 24.04 LTS\r\n\x1b[0m\xff").unwrap_err();
        assert_eq!(
            e,
            HandshakeError::NotAPeer {
                first_bytes: "Welcome to Ubuntu 24.04 LTS\\r\\n\\x1b[0m\\xff".into()
            }
        );
        assert!(e.to_string().contains("ssh -T"));
        let e = check_magic(&[0xff; 100]).unwrap_err();
        let HandshakeError::NotAPeer { first_bytes } = e else {
            panic!("{e:?}")
        };
        assert_eq!(first_bytes, "\\xff".repeat(16));
        assert!(matches!(
            check_magic(b"zfsrepl"),
            Err(HandshakeError::NotAPeer { .. })
        ));
        assert!(
            matches!(check_magic(b""), Err(HandshakeError::NotAPeer { first_bytes }) if first_bytes.is_empty())
        );
        assert!(NOT_A_CLIENT.ends_with(&format!("(protocol {PROTOCOL_MAJOR})\n")));
        assert_eq!(NOT_A_CLIENT.lines().count(), 1);
    }

    #[test]
    fn hello_rest_bytes_are_wire_compatible_with_an_owned_vec() {
        // Borrowed &[u8] (serialize_bytes) and Vec<u8> (a sequence of u8)
        // encode alike in postcard: another implementation may use either.
        #[derive(Serialize)]
        struct Owned {
            features: u64,
            token: Option<Vec<u8>>,
            software: String,
        }
        let owned = Owned {
            features: 5,
            token: Some(b"0123456789abcdef".to_vec()),
            software: "x".into(),
        };
        let borrowed = HelloRest {
            features: 5,
            token: Some(b"0123456789abcdef"),
            software: "x",
        };
        assert_eq!(
            postcard::to_stdvec(&owned).unwrap(),
            postcard::to_stdvec(&borrowed).unwrap()
        );
    }
}
