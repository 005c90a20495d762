//! The remote protocol on this host, without ZFS: a server over a socket
//! pair serving an endpoint that has nothing, fed hostile input.
#![cfg(feature = "remote")]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use zfs_core::{
    Bookmark, BookmarkName, DatasetName, Properties, ReceiveOptions, ResumeToken, SendOptions,
    Snapshot, SnapshotName, SnapshotOrBookmark,
};
use zfs_replicate::endpoint::{Endpoint, Lease, Receipt};
use zfs_replicate::remote::frame::{self, Kind, MAGIC};
use zfs_replicate::remote::handshake::{self, Hello, SessionLimits};
use zfs_replicate::remote::{serve, Access, Channel, Client, Policy, ServeOptions};
use zfs_replicate::{Error, ErrorKind, Op, Result};

/// An endpoint with no datasets: every lookup is NotFound, every change
/// refused. Enough to exercise the protocol.
struct Nothing;

fn none<T>(what: &str) -> Result<T> {
    Err(Error::Zfs(zfs_core::Error::io(
        "lzc_exists",
        what,
        std::io::Error::from_raw_os_error(libc::ENOENT),
    )))
}

impl Endpoint for Nothing {
    fn describe(&self) -> String {
        "nothing".into()
    }
    fn dataset(&self, d: &DatasetName) -> Result<()> {
        none(d.as_str())
    }
    fn exists(&self, _: &DatasetName) -> Result<bool> {
        Ok(false)
    }
    fn children(&self, d: &DatasetName) -> Result<Vec<DatasetName>> {
        none(d.as_str())
    }
    fn descendants(&self, d: &DatasetName) -> Result<Vec<DatasetName>> {
        none(d.as_str())
    }
    fn snapshots(&self, d: &DatasetName) -> Result<Vec<Snapshot>> {
        none(d.as_str())
    }
    fn snapshots_created(&self, d: &DatasetName, _: u64) -> Result<Vec<Snapshot>> {
        none(d.as_str())
    }
    fn snapshot_info(&self, s: &SnapshotName) -> Result<Snapshot> {
        none(s.as_str())
    }
    fn bookmarks(&self, d: &DatasetName) -> Result<Vec<Bookmark>> {
        none(d.as_str())
    }
    fn properties(&self, d: &DatasetName) -> Result<Properties> {
        none(d.as_str())
    }
    fn holds(&self, s: &SnapshotName) -> Result<BTreeMap<String, u64>> {
        none(s.as_str())
    }
    fn send_space(&self, s: &SnapshotName, _: &SendOptions) -> Result<u64> {
        none(s.as_str())
    }
    fn resolve_resume_token(&self, t: &ResumeToken) -> Result<(SnapshotName, SendOptions)> {
        none(&t.to_name)
    }
    fn send(&self, s: &SnapshotName, _: &SendOptions, _: OwnedFd) -> Result<()> {
        none(s.as_str())
    }
    fn send_resume(&self, t: &ResumeToken, _: OwnedFd) -> Result<()> {
        none(&t.to_name)
    }
    /// A receive that stalls (reads nothing for a second), then fails.
    fn receive(&self, d: &DatasetName, from: OwnedFd, _: &ReceiveOptions) -> Result<Receipt> {
        std::thread::sleep(Duration::from_secs(1));
        drop(from);
        none(d.as_str())
    }
    fn abort_resumable_receive(&self, _: &DatasetName) -> Result<bool> {
        Ok(false)
    }
    fn sync_pool(&self, _: &DatasetName) -> Result<()> {
        Ok(())
    }
    fn force_inherit_key(&self, _: &DatasetName) -> Result<()> {
        Ok(())
    }
    fn create_placeholder(&self, _: &DatasetName) -> Result<()> {
        Ok(())
    }
    fn snapshot(&self, _: &[SnapshotName]) -> Result<()> {
        none("snapshot")
    }
    fn bookmark(&self, _: &[(BookmarkName, SnapshotOrBookmark)]) -> Result<()> {
        none("bookmark")
    }
    fn destroy_bookmarks(&self, _: &[BookmarkName]) -> Result<()> {
        none("bookmark")
    }
    fn destroy_snapshots(&self, _: &[SnapshotName]) -> Result<()> {
        none("snapshot")
    }
    fn rollback_to(&self, s: &SnapshotName) -> Result<()> {
        none(s.as_str())
    }
    fn destroy(&self, d: &DatasetName) -> Result<()> {
        none(d.as_str())
    }
    fn hold_temporary(&self, _: &[(SnapshotName, String)]) -> Result<Lease> {
        Ok(Lease::none())
    }
    fn lock(&self, _: &DatasetName) -> Result<Lease> {
        Ok(Lease::none())
    }
}

fn policy() -> Policy {
    Policy::new().allow("pipe/backups/laptop".parse().unwrap(), Access::Receive)
}

fn quick() -> ServeOptions {
    ServeOptions {
        handshake_timeout: Duration::from_millis(500),
        limits: SessionLimits {
            heartbeat_ms: 100,
            dead_after_ms: 400,
            ..SessionLimits::default()
        },
        ..ServeOptions::default()
    }
}

/// Runs a server on one end of a socket pair and `client` on the other;
/// returns the server's result and how long it took.
fn against_server<R>(
    opts: ServeOptions,
    client: impl FnOnce(UnixStream) -> R,
) -> (R, Result<zfs_replicate::remote::SessionEnd>, Duration) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            let r = serve(Channel::unix(theirs).unwrap(), &Nothing, &policy(), &opts);
            (r, started.elapsed())
        });
        let r = client(ours);
        let (served, took) = server.join().unwrap();
        (r, served, took)
    })
}

fn hello(major: u16) -> Vec<u8> {
    let mut h = Hello::new(None);
    h.version.major = major;
    let body = handshake::encode_hello(&h).unwrap();
    [&MAGIC[..], &frame::encode(Kind::Hello, 0, &body)].concat()
}

fn read_to_end(mut s: UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn random_bytes_get_one_line_and_a_close() {
    let ((), served, _) = against_server(quick(), |mut s| {
        let mut rng = 0x9e3779b97f4a7c15u64;
        let junk: Vec<u8> = (0..1 << 16)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let _ = s.write_all(&junk);
        let reply = read_to_end(s);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            handshake::NOT_A_CLIENT,
            "one text line"
        );
    });
    let e = served.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
}

#[test]
fn a_frame_claiming_four_gib_is_refused_before_allocating() {
    let ((), served, _) = against_server(quick(), |mut s| {
        let mut header = vec![Kind::Hello as u8, 0, 0, 0, 0];
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        s.write_all(&[&MAGIC[..], &header].concat()).unwrap();
        read_to_end(s);
    });
    let e = served.expect_err("refused");
    assert!(e.to_string().contains("limit"), "{e}");
}

#[test]
fn a_truncated_frame_and_silence_end_the_handshake_in_time() {
    let ((), served, took) = against_server(quick(), |mut s| {
        let whole = hello(1);
        s.write_all(&whole[..whole.len() - 3]).unwrap();
        read_to_end(s);
    });
    assert!(served.is_err());
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn another_major_version_is_refused_with_both_versions() {
    for major in [0, 2] {
        let (reply, served, _) = against_server(quick(), |mut s| {
            s.write_all(&hello(major)).unwrap();
            read_to_end(s)
        });
        assert!(served.is_err());
        assert_eq!(&reply[..8], &MAGIC);
        let mut rest = &reply[8..];
        let mut body = Vec::new();
        let h = frame::read_frame(&mut rest, &mut body, &Default::default()).unwrap();
        assert_eq!(h.kind, Kind::Refuse);
        let text = String::from_utf8_lossy(&body).to_string();
        let _ = text;
        let refusal: zfs_replicate::remote::Refusal =
            postcard::from_bytes(&body).expect("a refusal");
        let shown = refusal.to_string();
        assert!(
            shown.contains(&format!("{major}.0")) && shown.contains("1.0"),
            "{shown}"
        );
    }
}

#[test]
fn the_client_reports_a_banner_instead_of_a_server() {
    // A "server" that is not one: a shell banner.
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs
        .write_all(b"Welcome to nas!\nlast login: never\n")
        .unwrap();
    let e = Client::connect(Channel::unix(ours).unwrap()).expect_err("not a peer");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert!(e.to_string().contains("Welcome"), "{e}");
}

#[test]
fn refusals_and_garbage_leave_the_connection_usable() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            serve(
                Channel::unix(theirs).unwrap(),
                &Nothing,
                &policy(),
                &quick(),
            )
        });
        let nas = Client::connect(Channel::unix(ours).unwrap().named("nas")).unwrap();
        let laptop: DatasetName = "pipe/backups/laptop".parse().unwrap();
        assert_eq!(
            nas.refusal(Op::Receive, &"pipe/backups/laptop/x".parse().unwrap()),
            None
        );
        let outside = nas.refusal(Op::Receive, &"pipe/backups/laptop2".parse().unwrap());
        assert!(
            outside.as_deref().is_some_and(|r| r.contains("not within")),
            "{outside:?}"
        );
        let destroy = nas.refusal(Op::DestroySnapshot, &laptop);
        assert!(destroy.is_some(), "{destroy:?}");
        // Outside the root, with a shared prefix: refused by the server.
        match nas.exists(&"pipe/backups/laptop2".parse().unwrap()) {
            Err(Error::PermissionDenied {
                endpoint,
                dataset,
                operation,
                ..
            }) => {
                assert_eq!(endpoint, "nas");
                assert_eq!(dataset.as_str(), "pipe/backups/laptop2");
                assert_eq!(operation, Op::List);
            }
            other => panic!("{other:?}"),
        }
        match nas.destroy(&"pipe/backups/laptop".parse().unwrap()) {
            Err(Error::PermissionDenied { operation, .. }) => {
                assert_eq!(operation, Op::DestroyDataset)
            }
            other => panic!("{other:?}"),
        }
        // Allowed: the endpoint's own answer, with its errno.
        assert!(!nas.exists(&"pipe/backups/laptop".parse().unwrap()).unwrap());
        let e = nas
            .snapshots(&"pipe/backups/laptop".parse().unwrap())
            .expect_err("none");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        // 8 callers at once.
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        assert!(!nas
                            .exists(&"pipe/backups/laptop/a".parse().unwrap())
                            .unwrap());
                    }
                });
            }
        });
        drop(nas);
        let why = server.join().unwrap().expect("session");
        assert_eq!(why, zfs_replicate::remote::SessionEnd::PeerClosed);
    });
}

#[test]
fn a_silent_client_is_dropped_after_the_dead_time() {
    let ((), served, took) = against_server(quick(), |mut s| {
        s.write_all(&hello(1)).unwrap();
        // Read the welcome, then say nothing.
        let mut magic = [0u8; 8];
        s.read_exact(&mut magic).unwrap();
        let mut body = Vec::new();
        frame::read_frame(&mut s, &mut body, &Default::default()).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    });
    let why = served.expect("a session").to_string();
    assert!(why.contains("nothing received"), "{why}");
    assert!(took < Duration::from_millis(1400), "dropped after {took:?}");
}

#[test]
fn data_beyond_credit_ends_the_session() {
    let ((), served, _) = against_server(quick(), |mut s| {
        s.write_all(&hello(1)).unwrap();
        let mut magic = [0u8; 8];
        s.read_exact(&mut magic).unwrap();
        let mut body = Vec::new();
        frame::read_frame(&mut s, &mut body, &Default::default()).unwrap();
        // A receive request, then more DATA than any window.
        let req = postcard::to_stdvec(&zfs_replicate::remote::Request::Receive(
            "pipe/backups/laptop".parse().unwrap(),
            zfs_replicate::remote::ReceiveSpec {
                resumable: true,
                raw: false,
                props: None,
                overrides: Default::default(),
            },
        ))
        .unwrap();
        s.write_all(&frame::encode(Kind::Request, 7, &req)).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..16 {
            if s.write_all(&frame::encode(Kind::Data, 7, &chunk)).is_err() {
                break;
            }
        }
        read_to_end(s);
    });
    let why = served.expect("a session").to_string();
    assert!(why.contains("beyond credit"), "{why}");
}

/// Byte `i` of the test stream.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(0x9e37_79b9) >> 7) as u8
}

/// An endpoint whose streams are a known pattern: a send of `pool/fs@N`
/// writes N pattern bytes; a receive checks every byte and counts them.
struct Pattern;

impl Endpoint for Pattern {
    fn describe(&self) -> String {
        "pattern".into()
    }
    fn dataset(&self, d: &DatasetName) -> Result<()> {
        Nothing.dataset(d)
    }
    fn exists(&self, d: &DatasetName) -> Result<bool> {
        Nothing.exists(d)
    }
    fn children(&self, d: &DatasetName) -> Result<Vec<DatasetName>> {
        Nothing.children(d)
    }
    fn descendants(&self, d: &DatasetName) -> Result<Vec<DatasetName>> {
        Nothing.descendants(d)
    }
    fn snapshots(&self, d: &DatasetName) -> Result<Vec<Snapshot>> {
        Nothing.snapshots(d)
    }
    fn snapshots_created(&self, d: &DatasetName, t: u64) -> Result<Vec<Snapshot>> {
        Nothing.snapshots_created(d, t)
    }
    fn snapshot_info(&self, s: &SnapshotName) -> Result<Snapshot> {
        Nothing.snapshot_info(s)
    }
    fn bookmarks(&self, d: &DatasetName) -> Result<Vec<Bookmark>> {
        Nothing.bookmarks(d)
    }
    fn properties(&self, d: &DatasetName) -> Result<Properties> {
        Nothing.properties(d)
    }
    fn holds(&self, s: &SnapshotName) -> Result<BTreeMap<String, u64>> {
        Nothing.holds(s)
    }
    fn send_space(&self, s: &SnapshotName, o: &SendOptions) -> Result<u64> {
        Nothing.send_space(s, o)
    }
    fn resolve_resume_token(&self, t: &ResumeToken) -> Result<(SnapshotName, SendOptions)> {
        Nothing.resolve_resume_token(t)
    }
    fn send(&self, s: &SnapshotName, _: &SendOptions, into: OwnedFd) -> Result<()> {
        let len: u64 = s.short_name().parse().unwrap_or(0);
        let mut out = std::fs::File::from(into);
        let mut i = 0u64;
        while i < len {
            let n = (len - i).min(1 << 16);
            let chunk: Vec<u8> = (i..i + n).map(pattern).collect();
            out.write_all(&chunk)
                .map_err(|e| Error::Zfs(zfs_core::Error::io("lzc_send", s.as_str(), e)))?;
            i += n;
        }
        Ok(())
    }
    fn send_resume(&self, t: &ResumeToken, into: OwnedFd) -> Result<()> {
        Nothing.send_resume(t, into)
    }
    fn receive(&self, d: &DatasetName, from: OwnedFd, _: &ReceiveOptions) -> Result<Receipt> {
        let mut input = std::fs::File::from(from);
        let mut buf = vec![0u8; 1 << 16];
        let mut i = 0u64;
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| Error::Zfs(zfs_core::Error::io("lzc_receive", d.as_str(), e)))?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b != pattern(i) {
                    return none(&format!("byte {i} differs"));
                }
                i += 1;
            }
        }
        Ok(Receipt {
            snapshot: d.snapshot(&i.to_string()).unwrap(),
            bytes: i,
        })
    }
    fn abort_resumable_receive(&self, d: &DatasetName) -> Result<bool> {
        Nothing.abort_resumable_receive(d)
    }
    fn sync_pool(&self, d: &DatasetName) -> Result<()> {
        Nothing.sync_pool(d)
    }
    fn force_inherit_key(&self, d: &DatasetName) -> Result<()> {
        Nothing.force_inherit_key(d)
    }
    fn create_placeholder(&self, d: &DatasetName) -> Result<()> {
        Nothing.create_placeholder(d)
    }
    fn snapshot(&self, s: &[SnapshotName]) -> Result<()> {
        Nothing.snapshot(s)
    }
    fn bookmark(&self, b: &[(BookmarkName, SnapshotOrBookmark)]) -> Result<()> {
        Nothing.bookmark(b)
    }
    fn destroy_bookmarks(&self, b: &[BookmarkName]) -> Result<()> {
        Nothing.destroy_bookmarks(b)
    }
    fn destroy_snapshots(&self, s: &[SnapshotName]) -> Result<()> {
        Nothing.destroy_snapshots(s)
    }
    fn rollback_to(&self, s: &SnapshotName) -> Result<()> {
        Nothing.rollback_to(s)
    }
    fn destroy(&self, d: &DatasetName) -> Result<()> {
        Nothing.destroy(d)
    }
    fn hold_temporary(&self, h: &[(SnapshotName, String)]) -> Result<Lease> {
        Nothing.hold_temporary(h)
    }
    fn lock(&self, d: &DatasetName) -> Result<Lease> {
        Nothing.lock(d)
    }
}

/// A client connected to a server of [`Pattern`] that allows everything
/// under `pipe`, with `opts` on the server side.
fn with_pattern_server<R>(
    serve_opts: ServeOptions,
    client_opts: zfs_replicate::remote::ClientOptions,
    f: impl FnOnce(&Client) -> R,
) -> R {
    let (ours, theirs) = UnixStream::pair().unwrap();
    std::thread::scope(|s| {
        let policy = Policy::new().allow("pipe".parse().unwrap(), Access::All);
        let server = s.spawn(move || {
            serve(
                Channel::unix(theirs).unwrap(),
                &Pattern,
                &policy,
                &serve_opts,
            )
        });
        let client =
            Client::connect_with(Channel::unix(ours).unwrap().named("pattern"), &client_opts)
                .unwrap();
        let r = f(&client);
        drop(client);
        server.join().unwrap().expect("session");
        r
    })
}

/// Reads a pipe's read end to its end in a thread; returns what came.
fn drain(read: OwnedFd) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        std::fs::File::from(read).read_to_end(&mut v).unwrap();
        v
    })
}

#[test]
fn streams_cross_intact_both_ways_and_several_at_once() {
    with_pattern_server(ServeOptions::default(), Default::default(), |nas| {
        // Pull: the server sends 9 MiB + 3 bytes (more than four windows).
        let len = (9 << 20) + 3;
        let pipe = zfs_core::pipe::Pipe::new(1 << 20).unwrap();
        let got = drain(pipe.read);
        let snap: SnapshotName = format!("pipe/a@{len}").parse().unwrap();
        nas.send(&snap, &SendOptions::new(), pipe.write).unwrap();
        let got = got.join().unwrap();
        assert_eq!(got.len(), len);
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
        // Push: 4 streams at once, of different sizes.
        std::thread::scope(|s| {
            for k in 1..=4u64 {
                s.spawn(move || {
                    let len = k * 1_500_000 + k;
                    let pipe = zfs_core::pipe::Pipe::new(1 << 20).unwrap();
                    let write = pipe.write;
                    let feeder = std::thread::spawn(move || {
                        let mut out = std::fs::File::from(write);
                        let bytes: Vec<u8> = (0..len).map(pattern).collect();
                        out.write_all(&bytes).unwrap();
                    });
                    let target: DatasetName = format!("pipe/b{k}").parse().unwrap();
                    let receipt = nas
                        .receive(&target, pipe.read, &ReceiveOptions::new())
                        .unwrap();
                    feeder.join().unwrap();
                    assert_eq!(receipt.bytes, len);
                });
            }
        });
    });
}

#[test]
fn a_consumer_that_stops_ends_the_stream_and_not_the_session() {
    with_pattern_server(ServeOptions::default(), Default::default(), |nas| {
        // Our reader takes 100 KiB of a 64 MiB stream, then goes away.
        let pipe = zfs_core::pipe::Pipe::new(1 << 16).unwrap();
        let read = pipe.read;
        let reader = std::thread::spawn(move || {
            let mut f = std::fs::File::from(read);
            let mut buf = vec![0u8; 100 << 10];
            f.read_exact(&mut buf).unwrap();
        });
        let snap: SnapshotName = format!("pipe/a@{}", 64u64 << 20).parse().unwrap();
        let e = nas
            .send(&snap, &SendOptions::new(), pipe.write)
            .expect_err("the reader went away");
        reader.join().unwrap();
        assert_ne!(e.kind(), ErrorKind::Disconnected, "{e}");
        // The session goes on.
        assert!(!nas.exists(&"pipe/x".parse().unwrap()).unwrap());
        let pipe = zfs_core::pipe::Pipe::new(1 << 20).unwrap();
        let got = drain(pipe.read);
        nas.send(
            &"pipe/a@1000".parse().unwrap(),
            &SendOptions::new(),
            pipe.write,
        )
        .unwrap();
        assert_eq!(got.join().unwrap().len(), 1000);
    });
}

#[test]
fn the_rate_limit_holds_streams_back() {
    let rate = 4u64 << 20;
    let opts = zfs_replicate::remote::ClientOptions {
        rate_limit: Some(rate),
        ..Default::default()
    };
    with_pattern_server(ServeOptions::default(), opts, |nas| {
        let len = 6u64 << 20;
        let pipe = zfs_core::pipe::Pipe::new(1 << 20).unwrap();
        let write = pipe.write;
        let feeder = std::thread::spawn(move || {
            let bytes: Vec<u8> = (0..len).map(pattern).collect();
            std::fs::File::from(write).write_all(&bytes).unwrap();
        });
        let started = Instant::now();
        let receipt = nas
            .receive(
                &"pipe/c".parse().unwrap(),
                pipe.read,
                &ReceiveOptions::new(),
            )
            .unwrap();
        let took = started.elapsed();
        feeder.join().unwrap();
        assert_eq!(receipt.bytes, len);
        // A lower bound only: 6 MiB at 4 MiB/s, with the first second's
        // burst allowed, cannot take less than half a second.
        assert!(took >= Duration::from_millis(450), "{took:?}");
    });
}

#[test]
fn zstd_is_used_only_when_both_sides_agree() {
    let offer = zfs_replicate::remote::ClientOptions {
        compress: true,
        ..Default::default()
    };
    let agreed = with_pattern_server(ServeOptions::default(), offer.clone(), |nas| {
        let len = (5 << 20) + 7;
        let pipe = zfs_core::pipe::Pipe::new(1 << 20).unwrap();
        let got = drain(pipe.read);
        let snap: SnapshotName = format!("pipe/a@{len}").parse().unwrap();
        nas.send(&snap, &SendOptions::new(), pipe.write).unwrap();
        let got = got.join().unwrap();
        assert_eq!(got.len(), len);
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
        let pipe = zfs_core::pipe::Pipe::new(1 << 20).unwrap();
        let write = pipe.write;
        let feeder = std::thread::spawn(move || {
            let bytes: Vec<u8> = (0..len as u64).map(pattern).collect();
            std::fs::File::from(write).write_all(&bytes).unwrap();
        });
        let receipt = nas
            .receive(
                &"pipe/z".parse().unwrap(),
                pipe.read,
                &ReceiveOptions::new(),
            )
            .unwrap();
        feeder.join().unwrap();
        assert_eq!(receipt.bytes, len as u64);
        nas.compressed()
    });
    assert_eq!(agreed, cfg!(feature = "zstd"));
    let refused = ServeOptions {
        compress: false,
        ..ServeOptions::default()
    };
    assert!(!with_pattern_server(refused, offer, |nas| nas.compressed()));
    assert!(!with_pattern_server(
        ServeOptions::default(),
        Default::default(),
        |nas| nas.compressed()
    ));
}

/// Over TCP, a stream written in small pieces arrives as small socket
/// buffers, each taking a slot of the receiver's staging pipe: a pipe of
/// 1 MiB runs out of slots long before its bytes. Before the fix the
/// reader waited for room while the consumer waited for the frame: a hang.
#[test]
fn a_push_in_small_pieces_over_tcp() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            let (stream, _) = listener.accept().unwrap();
            let policy = Policy::new().allow("pipe".parse().unwrap(), Access::All);
            serve(
                Channel::tcp(stream).unwrap(),
                &Pattern,
                &policy,
                &ServeOptions::default(),
            )
        });
        let nas =
            Client::connect(Channel::tcp(std::net::TcpStream::connect(addr).unwrap()).unwrap())
                .unwrap();
        let len = 24u64 << 20;
        let pipe = zfs_core::pipe::Pipe::new(1 << 20).unwrap();
        let write = pipe.write;
        let feeder = std::thread::spawn(move || {
            let mut out = std::fs::File::from(write);
            let mut i = 0u64;
            while i < len {
                let piece: Vec<u8> = (i..(i + 700).min(len)).map(pattern).collect();
                out.write_all(&piece).unwrap();
                i += piece.len() as u64;
            }
        });
        let receipt = nas
            .receive(
                &"pipe/small".parse().unwrap(),
                pipe.read,
                &ReceiveOptions::new(),
            )
            .unwrap();
        feeder.join().unwrap();
        assert_eq!(receipt.bytes, len);
        drop(nas);
        server.join().unwrap().unwrap();
    });
}

#[test]
fn a_channel_over_any_reader_and_writer() {
    // Two pipes stand for an embedder's transport, used as Read and Write.
    let (c2s, s2c) = (
        zfs_core::pipe::Pipe::new(1 << 16).unwrap(),
        zfs_core::pipe::Pipe::new(1 << 16).unwrap(),
    );
    let server_side = Channel::from_io(
        std::fs::File::from(c2s.read),
        std::fs::File::from(s2c.write),
        "client",
    )
    .unwrap();
    let client_side = Channel::from_io(
        std::fs::File::from(s2c.read),
        std::fs::File::from(c2s.write),
        "io",
    )
    .unwrap();
    std::thread::scope(|s| {
        let policy = Policy::new().allow("pipe".parse().unwrap(), Access::All);
        let server =
            s.spawn(move || serve(server_side, &Pattern, &policy, &ServeOptions::default()));
        let nas = Client::connect(client_side).unwrap();
        assert_eq!(nas.describe(), "io");
        let pipe = zfs_core::pipe::Pipe::new(1 << 20).unwrap();
        let got = drain(pipe.read);
        nas.send(
            &"pipe/a@3000000".parse().unwrap(),
            &SendOptions::new(),
            pipe.write,
        )
        .unwrap();
        let got = got.join().unwrap();
        assert_eq!(got.len(), 3_000_000);
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
        drop(nas);
        assert_eq!(
            server.join().unwrap().unwrap(),
            zfs_replicate::remote::SessionEnd::PeerClosed
        );
    });
}

/// A client that stops reading (it left) ends the session as a clean
/// close, even when the server's next write is what finds out. Before, over
/// pipes (ssh's stdio), that write's "Broken pipe" ended it as lost:
/// `backup serve --stdio` exited 1 and printed it (its CLI test failed on
/// that once, on 2.1.11).
#[test]
fn a_client_that_stops_reading_is_a_clean_close() {
    let (c2s, s2c) = (
        zfs_core::pipe::Pipe::new(1 << 16).unwrap(),
        zfs_core::pipe::Pipe::new(1 << 16).unwrap(),
    );
    let channel = Channel::from_fds(c2s.read, s2c.write, "client");
    std::thread::scope(|s| {
        let server = s.spawn(move || serve(channel, &Nothing, &policy(), &quick()));
        let mut to_server = std::fs::File::from(c2s.write);
        let mut from_server = std::fs::File::from(s2c.read);
        to_server.write_all(&hello(1)).unwrap();
        let mut magic = [0u8; 8];
        from_server.read_exact(&mut magic).unwrap();
        let mut body = Vec::new();
        frame::read_frame(&mut from_server, &mut body, &Default::default()).unwrap();
        // Stop reading, then ask: the reply has nowhere to go.
        drop(from_server);
        let req = postcard::to_stdvec(&zfs_replicate::remote::Request::Exists(
            "pipe/backups/laptop".parse().unwrap(),
        ))
        .unwrap();
        to_server
            .write_all(&frame::encode(Kind::Request, 1, &req))
            .unwrap();
        // Keep our write side open until the server gave up.
        std::thread::sleep(Duration::from_millis(300));
        drop(to_server);
        assert_eq!(
            server.join().unwrap().expect("a session"),
            zfs_replicate::remote::SessionEnd::PeerClosed
        );
    });
}
