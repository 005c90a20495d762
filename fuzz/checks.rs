//! The properties the fuzz targets check, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`, libFuzzer, nightly) and the bounded stable-Rust
//! mutation tests (`tests/fuzz_mutation.rs`, run by `cargo test`), so both
//! check the same thing. Each function takes arbitrary bytes, must never
//! panic on them, and asserts properties of what the code under test returns.

#![allow(dead_code)]

use std::io::Write;

use zfs_core::{BookmarkName, DatasetName, NvList, PoolName, ResumeToken, SnapshotName};
use zfs_replicate::stream::{self, StreamError, StreamSummary, StreamVerifier};

const RECORD_LEN: u64 = 312;

/// The stream verifier: one-shot and chunked verification agree; a verified
/// stream's summary is consistent with its length and record counts, and any
/// proper prefix of it is refused as truncated; an error's offset lies in
/// the input.
pub fn stream_verify(data: &[u8]) -> bool {
    let whole = stream::verify(data);
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0)) * 7;
    let mut v = StreamVerifier::new();
    let mut fed = Ok(());
    for c in data.chunks(chunk) {
        fed = v.update(c);
        if fed.is_err() {
            break;
        }
    }
    let complete = v.is_complete();
    let chunked = fed.and_then(|()| v.finish());
    assert_eq!(
        format!("{whole:?}"),
        format!("{chunked:?}"),
        "chunk size {chunk}"
    );
    let accepted = whole.is_ok();
    match whole {
        Ok(summary) => {
            assert!(complete);
            summary_is_consistent(&summary, data.len() as u64);
            let cut = &data[..data.len() - 1];
            assert!(
                matches!(
                    stream::verify(cut),
                    Err(StreamError::Truncated { .. } | StreamError::Empty)
                ),
                "a proper prefix of a valid stream verified"
            );
        }
        Err(e) => match e.offset() {
            Some(offset) => {
                assert!(offset <= data.len() as u64, "{e:?} beyond {}", data.len());
                if let StreamError::Truncated { offset, needed } = e {
                    assert_eq!(offset, data.len() as u64);
                    assert!(needed > 0);
                }
            }
            None => assert!(data.is_empty(), "{e:?}"),
        },
    }
    accepted
}

fn summary_is_consistent(s: &StreamSummary, len: u64) {
    assert_eq!(s.total_bytes, len);
    let mut sum = 0;
    for sub in &s.substreams {
        assert_eq!(sub.records, sub.record_counts.iter().sum::<u64>());
        assert_eq!(sub.record_counts[0], 1, "one BEGIN");
        assert_eq!(sub.record_counts[5], 1, "one END");
        assert_eq!(sub.record_counts[6], 0, "WRITE_BYREF is refused");
        assert_eq!(sub.bytes, RECORD_LEN * sub.records + sub.payload_bytes);
        sum += sub.bytes;
    }
    if s.compound {
        // Compound BEGIN (+ its nvlist), its END, the final END.
        assert!(sum + 3 * RECORD_LEN <= len);
    } else {
        assert_eq!(s.substreams.len(), 1);
        assert_eq!(sum, len);
    }
}

/// `ResumeToken::parse`: the first byte picks what the rest is: the token
/// text itself, or a compressed payload (first 2 bytes: declared length) or
/// the packed nvlist to compress, wrapped in a token with a correct
/// checksum so parsing gets past it. A parsed token, re-encoded from its
/// nvlist, parses to the same token.
pub fn resume_token(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let (len, payload) = match rest {
                [a, b, payload @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), payload),
                _ => (0, rest),
            };
            encode_token(payload, len)
        }
        _ => encode_token(&zlib(rest), rest.len()),
    };
    let Ok(parsed) = ResumeToken::parse(&token) else {
        return false;
    };
    let packed = parsed.raw.pack().expect("a decoded nvlist packs");
    let again = ResumeToken::parse(&encode_token(&zlib(&packed), packed.len()))
        .expect("a re-encoded token parses");
    assert_eq!(format!("{again:?}"), format!("{parsed:?}"));
    true
}

/// A `receive_resume_token` for a zlib-compressed payload.
pub fn encode_token(compressed: &[u8], packed_len: usize) -> String {
    let mut a: u64 = 0;
    for w in compressed.chunks_exact(4) {
        a = a.wrapping_add(u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]])));
    }
    let hex: String = compressed.iter().map(|b| format!("{b:02x}")).collect();
    format!("1-{a:x}-{packed_len:x}-{hex}")
}

pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).expect("in memory");
    z.finish().expect("in memory")
}

/// `NvList::unpack` (libnvpair's `nvlist_unpack`): a list that unpacks,
/// packed again, unpacks to the same list.
pub fn nvlist_unpack(data: &[u8]) -> bool {
    let Ok(list) = NvList::unpack(data) else {
        return false;
    };
    let packed = list.pack().expect("an unpacked list packs");
    let again = NvList::unpack(&packed).expect("a packed list unpacks");
    // Debug, not ==, so that a NaN double compares equal to itself.
    assert_eq!(format!("{again:?}"), format!("{list:?}"));
    true
}

/// Name parsing: a name that parses is the input unchanged and round-trips
/// through `Display`; its parts parse and rebuild it; a string is at most one
/// of dataset, snapshot and bookmark; a pool name is a dataset name.
pub fn names(data: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(data) else {
        return false;
    };
    let pool = s.parse::<PoolName>();
    let dataset = s.parse::<DatasetName>();
    let snapshot = s.parse::<SnapshotName>();
    let bookmark = s.parse::<BookmarkName>();
    let valid = [dataset.is_ok(), snapshot.is_ok(), bookmark.is_ok()];
    assert!(
        valid.iter().filter(|v| **v).count() <= 1,
        "{s:?}: {valid:?}"
    );
    if let Ok(p) = &pool {
        assert_eq!(p.as_str(), s);
        assert_eq!(p.to_string().parse::<PoolName>().as_ref(), Ok(p));
        assert!(dataset.is_ok(), "pool name {s:?} is not a dataset name");
    }
    if let Ok(d) = &dataset {
        assert_eq!(d.as_str(), s);
        assert_eq!(d.to_string().parse::<DatasetName>().as_ref(), Ok(d));
        let parts: Vec<&str> = d.components().collect();
        assert_eq!(parts.join("/"), s);
        assert_eq!(d.depth(), parts.len() - 1);
        // pool() and parent() build names without validating: they must be
        // valid.
        assert_eq!(d.pool().as_str(), parts[0]);
        assert_eq!(
            d.pool().as_str().parse::<PoolName>().as_ref(),
            Ok(&d.pool())
        );
        assert_eq!(d.is_root(), parts.len() == 1);
        let root = d.pool().root();
        assert_eq!(d.is_descendant_of(&root), !d.is_root());
        assert!(!d.is_descendant_of(d));
        assert_eq!(
            d.relative_to(&root),
            Some(s.get(parts[0].len() + 1..).unwrap_or_default())
        );
        if let Some(parent) = d.parent() {
            assert_eq!(parent.as_str().parse::<DatasetName>().as_ref(), Ok(&parent));
            let last = parts.last().copied().unwrap_or_default();
            assert_eq!(parent.child(last).as_ref(), Ok(d));
            assert_eq!(d.relative_to(&parent), Some(last));
        }
    }
    if let Ok(n) = &snapshot {
        assert_eq!(n.as_str(), s);
        assert_eq!(n.to_string().parse::<SnapshotName>().as_ref(), Ok(n));
        let ds = n.dataset();
        assert_eq!(ds.as_str().parse::<DatasetName>().as_ref(), Ok(&ds));
        assert_eq!(format!("{ds}@{}", n.short_name()), s);
        assert_eq!(
            SnapshotName::from_parts(&ds, n.short_name()).as_ref(),
            Ok(n)
        );
    }
    if let Ok(n) = &bookmark {
        assert_eq!(n.as_str(), s);
        assert_eq!(n.to_string().parse::<BookmarkName>().as_ref(), Ok(n));
        let ds = n.dataset();
        assert_eq!(ds.as_str().parse::<DatasetName>().as_ref(), Ok(&ds));
        assert_eq!(format!("{ds}#{}", n.short_name()), s);
        assert_eq!(
            BookmarkName::from_parts(&ds, n.short_name()).as_ref(),
            Ok(n)
        );
    }
    pool.is_ok() || dataset.is_ok() || snapshot.is_ok() || bookmark.is_ok()
}

/// The frame reader and the handshake decoders (`zfs_replicate::remote`).
///
/// The first byte picks the mode. Below 0x80: the rest is a byte stream
/// read frame by frame until an error, with a DATA limit picked by the
/// byte; every accepted frame re-encodes to exactly the bytes it consumed,
/// the error agrees with the bytes, and the reused body buffer never grows
/// past the limit of the largest kind whose header was accepted (a header
/// passes its check before the body is read, so a truncated frame counts).
/// HELLO and WELCOME bodies go through `wire_handshake`. From 0x80: the
/// rest is a HELLO or WELCOME body itself (postcard is hard to reach
/// through a frame header).
pub fn wire_frame(data: &[u8]) -> bool {
    use zfs_replicate::remote::frame::{self, FrameError, FrameLimits, Header, Kind, HEADER_LEN};

    let Some((&mode, input)) = data.split_first() else {
        return false;
    };
    if mode >= 0x80 {
        return wire_handshake(input);
    }
    let limits = FrameLimits {
        max_data: [1 << 20, 4096, 64, 0][usize::from(mode % 4)],
    };
    let mut r = input;
    let mut body = Vec::new();
    let mut bound = 0u32;
    let mut accepted = false;
    loop {
        let before = r;
        let header = before
            .get(..HEADER_LEN)
            .and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok())
            .map(|h| Header::decode(h, &limits));
        if let Some(Ok(h)) = &header {
            bound = bound.max(limits.limit(h.kind));
        }
        let result = frame::read_frame(&mut r, &mut body, &limits);
        assert!(
            body.capacity() <= bound as usize,
            "body capacity {} over {bound}",
            body.capacity()
        );
        match result {
            Ok(h) => {
                let used = before.len() - r.len();
                assert_eq!(frame::encode(h.kind, h.id, &body), before[..used]);
                assert!(matches!(header, Some(Ok(x)) if x == h));
                assert!(h.len <= limits.limit(h.kind));
                match h.kind {
                    Kind::Hello | Kind::Welcome => {
                        wire_handshake(&body);
                    }
                    Kind::Credit => {
                        let n = frame::decode_credit(&body).expect("a CREDIT read has 4 bytes");
                        assert_eq!(frame::encode_credit(n), body[..]);
                    }
                    _ => {}
                }
                accepted = true;
            }
            Err(FrameError::Closed) => {
                assert!(before.is_empty());
                return accepted;
            }
            Err(FrameError::Truncated) => {
                let whole = match header {
                    None => HEADER_LEN,
                    Some(Ok(h)) => HEADER_LEN + h.len as usize,
                    Some(Err(e)) => panic!("truncated, but the header was refused: {e}"),
                };
                assert!(!before.is_empty() && before.len() < whole);
                return accepted;
            }
            Err(
                e @ (FrameError::UnknownKind(_)
                | FrameError::TooLarge { .. }
                | FrameError::BadCredit),
            ) => {
                let Some(Err(seen)) = header else {
                    panic!("{e} from a header that is not refused");
                };
                assert_eq!(seen.to_string(), e.to_string());
                match e {
                    FrameError::UnknownKind(k) => assert!(Kind::from_u8(k).is_none()),
                    FrameError::TooLarge { kind, len, limit } => {
                        assert!(len > limit && limit == limits.limit(kind))
                    }
                    _ => assert_eq!(before[0], Kind::Credit as u8),
                }
                return accepted;
            }
            Err(e) => panic!("a slice reader failed: {e}"),
        }
    }
}

/// A HELLO and a WELCOME body: one that decodes encodes again (its sizes
/// were checked) and decodes to the same value; a HELLO negotiates.
fn wire_handshake(body: &[u8]) -> bool {
    use zfs_replicate::remote::handshake::{self, HandshakeError, PROTOCOL_MAJOR};

    // Only a body with a whole version can be told to be of another major.
    let major_differs =
        matches!(body, [a, b, _, _, ..] if u16::from_be_bytes([*a, *b]) != PROTOCOL_MAJOR);
    let hello = handshake::decode_hello(body);
    let welcome = handshake::decode_welcome(body);
    for e in [hello.as_ref().err(), welcome.as_ref().err()]
        .into_iter()
        .flatten()
    {
        // A different major is always refused as such, whatever follows.
        assert_eq!(
            major_differs,
            matches!(e, HandshakeError::Version { .. }),
            "{e}"
        );
    }
    if let Ok(h) = &hello {
        let again = handshake::encode_hello(h).expect("a decoded HELLO encodes");
        assert_eq!(handshake::decode_hello(&again).as_ref(), Ok(h));
        let (v, f) = handshake::negotiate(h, u64::MAX).expect("same major");
        assert!(v.minor <= h.version.minor && f == h.features);
    }
    if let Ok(w) = &welcome {
        let again = handshake::encode_welcome(w).expect("a decoded WELCOME encodes");
        assert_eq!(handshake::decode_welcome(&again).as_ref(), Ok(w));
    }
    hello.is_ok() || welcome.is_ok()
}

/// Bytes a sidecar parse may allocate at once beyond its input's length.
pub const ZPAR_SLACK: usize = 64 << 10;

/// The sidecar parser (`zfs_replicate::parity::fuzzing::parse_sidecar`, the
/// reads `check_file` makes, on bytes in memory), on the input as it is and
/// on two copies of it with their digests made to match
/// (`fuzzing::seal`), the second with each header's derived fields (k, m,
/// span count, sidecar length) and each table's record header set from its
/// other fields, so that the checks behind the digests are reached too.
/// Each time: no single allocation over the input's length + 64 KiB (when
/// [`BoundedAlloc`] is the global allocator); a header copy that parses
/// encodes to its 4096 bytes again, and the first good copy is used; the
/// second copy is read where the first says the sidecar ends (at the
/// input's end when the first is refused); the geometry is one version 1
/// allows; the spans parsed are spans 0, 1, … whose records follow one
/// another from byte 4096, each inside the input, stopping at the first
/// that is not (at most one per 192 bytes); a table copy that parses
/// encodes to its bytes again and has one digest per data and parity
/// block. Returns whether the input's own header parsed.
pub fn zpar_parse(data: &[u8]) -> bool {
    use zfs_replicate::parity::fuzzing::seal;

    let accepted = zpar_properties(data);
    for derive in [false, true] {
        let mut sealed = data.to_vec();
        seal(&mut sealed, derive);
        zpar_properties(&sealed);
    }
    accepted
}

fn zpar_properties(data: &[u8]) -> bool {
    use zfs_replicate::parity::fuzzing::parse_sidecar;

    const HEADER: usize = 4096;
    let len = data.len();
    let bound = len + ZPAR_SLACK;
    let (p, largest) = bounded_allocations(bound, || parse_sidecar(data));
    assert!(
        largest <= bound,
        "an allocation of {largest} bytes parsing {len} bytes"
    );
    for c in p.header_copies.iter().flatten() {
        assert!(c.at + HEADER <= len);
        if let Some(e) = &c.encoded {
            assert_eq!(e[..], data[c.at..c.at + HEADER], "header at {}", c.at);
        }
    }
    assert_eq!(
        p.header_copies[0].as_ref().map(|c| c.at),
        (len >= HEADER).then_some(0)
    );
    let good = |i: usize| {
        p.header_copies[i]
            .as_ref()
            .is_some_and(|c| c.encoded.is_some())
    };
    let from = if good(0) {
        Some(0)
    } else if good(1) {
        Some(1)
    } else {
        None
    };
    assert_eq!(p.header_from, from);
    assert_eq!(p.geometry.is_some(), from.is_some());
    let Some(g) = p.geometry else {
        assert!(p.spans.is_empty() && p.next_record_end.is_none());
        if len >= HEADER {
            // The first copy is refused: the second is read at the end.
            assert_eq!(
                p.header_copies[1].as_ref().map(|c| c.at),
                Some(len - HEADER)
            );
        }
        return false;
    };
    let second_at = if good(0) {
        g.sidecar_len - HEADER as u64
    } else {
        (len - HEADER) as u64
    };
    match &p.header_copies[1] {
        Some(c) => assert_eq!(c.at as u64, second_at),
        None => assert!(second_at + HEADER as u64 > len as u64),
    }
    assert!(g.block.is_power_of_two() && (512..=65536).contains(&g.block));
    assert!((100..=5000).contains(&g.level_bp));
    assert!(g.k + g.s == 1024 && g.s.is_power_of_two() && 1 <= g.m && g.m <= g.s);
    assert!(u64::from(g.m) * 10_000 >= u64::from(g.k) * u64::from(g.level_bp));
    assert!((1..=4096).contains(&g.words) && g.len <= 1 << 50);
    assert_eq!(g.span_blocks, u64::from(g.words) * u64::from(g.k));
    assert!(g.span_blocks <= 1 << 22);
    assert_eq!(
        g.spans,
        g.len.div_ceil(u64::from(g.block)).div_ceil(g.span_blocks)
    );
    let (mut at, mut first) = (HEADER as u64, 0u64);
    for (i, s) in p.spans.iter().enumerate() {
        assert_eq!((s.index, s.first, s.record_at), (i as u64, first, at));
        assert!(s.n >= 1 && u64::from(s.n) <= g.span_blocks);
        assert!(s.parity >= 1 && s.parity <= g.words * g.m);
        assert_eq!(s.tail_reserve, g.spans > 1 && s.index + 1 == g.spans);
        assert_eq!(s.table_len, 96 + 16 * u64::from(s.n + s.parity));
        assert_eq!(
            s.record_len,
            2 * s.table_len + u64::from(s.parity) * u64::from(g.block)
        );
        assert!(s.record_at + s.record_len <= len as u64);
        let starts = [s.record_at, s.record_at + s.record_len - s.table_len];
        for (t, start) in s.tables.iter().zip(starts) {
            assert_eq!(t.at, start);
            let bytes = &data[t.at as usize..(t.at + s.table_len) as usize];
            match &t.encoded {
                Some(e) => {
                    assert_eq!(e[..], bytes[..], "span {} table at {}", s.index, t.at);
                    assert_eq!(t.digests, (s.n as usize, s.parity as usize));
                }
                None => assert_eq!(t.digests, (0, 0)),
            }
        }
        at += s.record_len;
        first += u64::from(s.n);
    }
    match p.next_record_end {
        Some(end) => assert!(end > len as u64 && (p.spans.len() as u64) < g.spans),
        None => {
            assert_eq!(p.spans.len() as u64, g.spans);
            // Every record parsed: the sidecar's length is theirs and two
            // headers'; the blocks are the stream's.
            assert_eq!(g.sidecar_len, at + HEADER as u64);
            assert_eq!(first, g.len.div_ceil(u64::from(g.block)));
        }
    }
    assert!(p.spans.len() * 192 <= len);
    true
}

/// The system allocator, counting: within [`bounded_allocations`] it
/// records the largest single allocation (or reallocation) the current
/// thread asks for, and refuses (so the process aborts with "memory
/// allocation of N bytes failed") any over both the bound and 1 GiB. The
/// zpar_parse fuzz target and `tests/fuzz_mutation.rs` install it with
/// `#[global_allocator]`; elsewhere the window records nothing.
pub struct BoundedAlloc;

thread_local! {
    static ALLOC_BOUND: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    static ALLOC_LARGEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

static ALLOC_INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl BoundedAlloc {
    /// Notes an allocation of `size` bytes: whether to make it.
    fn note(size: usize) -> bool {
        if !ALLOC_INSTALLED.load(std::sync::atomic::Ordering::Relaxed) {
            ALLOC_INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let bound = ALLOC_BOUND.try_with(|b| b.get()).unwrap_or(usize::MAX);
        if bound == usize::MAX {
            return true;
        }
        let _ = ALLOC_LARGEST.try_with(|l| l.set(l.get().max(size)));
        size <= bound || size <= 1 << 30
    }
}

unsafe impl std::alloc::GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if !Self::note(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if !Self::note(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if !Self::note(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// Whether [`BoundedAlloc`] is the global allocator (it has been asked
/// for memory).
pub fn bounded_alloc_installed() -> bool {
    ALLOC_INSTALLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs `f` with this thread's allocations bounded by `bound` bytes each
/// (see [`BoundedAlloc`]): its result and the largest allocation it asked
/// for (0 when [`BoundedAlloc`] is not the global allocator).
pub fn bounded_allocations<R>(bound: usize, f: impl FnOnce() -> R) -> (R, usize) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ALLOC_BOUND.with(|b| b.set(usize::MAX));
        }
    }
    ALLOC_LARGEST.with(|l| l.set(0));
    ALLOC_BOUND.with(|b| b.set(bound.min(usize::MAX - 1)));
    let reset = Reset;
    let r = f();
    drop(reset);
    (r, ALLOC_LARGEST.with(|l| l.get()))
}

/// The byte offset every `vdev_label` input is parsed at (label 0's
/// `vdev_phys_t`), the checksum verifier.
pub const LABEL_OFFSET: u64 = 16 << 10;

/// How much one allocation may exceed the input, decoding a label's
/// nvlist: [`LABEL_FACTOR`] times the input's length plus this.
pub const LABEL_SLACK: usize = 64 << 10;

/// The factor of the input's length one allocation may reach: the
/// in-memory form of an nvlist is larger than its XDR encoding (an empty
/// string in a `string_array` takes 4 bytes there and a 24-byte `String`
/// here; a pair at least 20 bytes there and 56 in the list's `Vec`, whose
/// capacity doubles as it grows), but never by more than this.
pub const LABEL_FACTOR: usize = 8;

/// Vdev labels: `parse_label` of the input as it is (at byte
/// [`LABEL_OFFSET`]) and sealed with a correct checksum trailer (in the
/// byte order of the input's magic, little-endian when it has none), so
/// that the nvlist decoder and the field checks are reached; and
/// `NvList::unpack_xdr` of the input directly. Each: no single allocation
/// over [`LABEL_FACTOR`] times the input plus [`LABEL_SLACK`]; an accepted
/// label's fields follow `zpool_read_label`'s rules and its config, packed
/// again by libnvpair (XDR) and sealed, parses to the same label; a decoded
/// list takes a multiple of 4 bytes inside the input, decodes the same from
/// exactly those bytes, reads the same through libnvpair, and packed again
/// by libnvpair decodes to itself. Returns whether a label was accepted.
pub fn vdev_label(data: &[u8]) -> bool {
    use zfs_core::pool::label_fuzzing::seal;

    let mut accepted = label_properties(data);
    if let Some(at) = data.len().checked_sub(40) {
        let big_endian = data[at..at + 8] == 0x0210_da7a_b10c_7a11u64.to_be_bytes();
        let mut sealed = data.to_vec();
        seal(&mut sealed, LABEL_OFFSET, big_endian);
        accepted |= label_properties(&sealed);
    }
    xdr_properties(data);
    accepted
}

fn label_properties(data: &[u8]) -> bool {
    use zfs_core::pool::label_fuzzing::vdev_phys;
    use zfs_core::pool::{parse_label, LabelError, PoolState};

    let len = data.len();
    let bound = LABEL_FACTOR * len + LABEL_SLACK;
    let (r, largest) = bounded_allocations(bound, || parse_label(data, LABEL_OFFSET));
    assert!(
        largest <= bound,
        "an allocation of {largest} bytes parsing a {len}-byte label"
    );
    let label = match r {
        Ok(l) => l,
        Err(e) => {
            match e {
                LabelError::TooShort { offset, len: l } => {
                    assert!(offset == LABEL_OFFSET && l == len && len < 40)
                }
                LabelError::Blank { offset } => {
                    assert!(offset == LABEL_OFFSET && len >= 40 && data.iter().all(|&b| b == 0))
                }
                LabelError::NoMagic { offset }
                | LabelError::Checksum { offset }
                | LabelError::Nvlist { offset, .. }
                | LabelError::Field { offset, .. }
                | LabelError::State { offset, .. } => {
                    assert!(offset == LABEL_OFFSET && len >= 40 && data.iter().any(|&b| b != 0))
                }
                other => panic!("unexpected label error {other:?}"),
            }
            return false;
        }
    };
    let config = label.config();
    let (list, _) =
        NvList::unpack_xdr(&data[..len - 40]).expect("an accepted label's list decodes");
    assert_eq!(format!("{list:?}"), format!("{config:?}"));
    // zpool_read_label's rules, and the accessors read the config.
    assert_ne!(label.guid(), 0);
    assert_eq!(config.get_u64("guid").ok(), Some(label.guid()));
    assert_eq!(config.get_u64("state").ok(), Some(label.state().raw()));
    assert!(label.state().raw() <= PoolState::L2Cache.raw());
    let aux = matches!(label.state(), PoolState::Spare | PoolState::L2Cache);
    assert!(aux || label.txg() != 0);
    assert_eq!(config.get_u64("txg").unwrap_or(0), label.txg());
    assert_eq!(config.get_str("name").ok(), label.pool_name());
    assert_eq!(config.get_str("hostname").ok(), label.hostname());
    assert_eq!(config.get_u64("pool_guid").ok(), label.pool_guid());
    assert_eq!(config.get_u64("top_guid").ok(), label.top_guid());
    assert_eq!(config.get_u64("hostid").ok(), label.hostid());
    // Packed again by libnvpair and sealed: the same label.
    if let Ok(again) = vdev_phys(config, LABEL_OFFSET, label.big_endian()) {
        let back = parse_label(&again, LABEL_OFFSET).expect("a repacked label parses");
        assert_eq!(format!("{back:?}"), format!("{label:?}"));
    }
    true
}

fn xdr_properties(data: &[u8]) -> bool {
    use zfs_core::pool::label_fuzzing::libnvpair_unpack_xdr;

    let len = data.len();
    let bound = LABEL_FACTOR * len + LABEL_SLACK;
    let (r, largest) = bounded_allocations(bound, || NvList::unpack_xdr(data));
    assert!(
        largest <= bound,
        "an allocation of {largest} bytes decoding {len} bytes of XDR"
    );
    let Ok((list, used)) = r else {
        return false;
    };
    assert!(
        used <= len && used % 4 == 0 && used >= 20,
        "used {used} of {len}"
    );
    let (exact, n) = NvList::unpack_xdr(&data[..used]).expect("the bytes used decode alone");
    assert_eq!(n, used);
    assert_eq!(format!("{exact:?}"), format!("{list:?}"));
    // libnvpair reads the same pairs (a replaced name moves to the end of
    // its list there, so both are compared sorted).
    let theirs = libnvpair_unpack_xdr(data)
        .expect("accepted")
        .expect("libnvpair reads what the decoder accepts");
    assert_eq!(
        format!("{:?}", sorted(&theirs)),
        format!("{:?}", sorted(&list))
    );
    // Packed again by libnvpair: the same list.
    let packed = list.pack_xdr().expect("a decoded list packs");
    let (again, _) = NvList::unpack_xdr(&packed).expect("a packed list decodes");
    assert_eq!(format!("{again:?}"), format!("{list:?}"));
    true
}

/// `l` with its pairs sorted by name at every depth.
fn sorted(l: &NvList) -> NvList {
    use zfs_core::NvValue;

    let mut pairs: Vec<_> = l.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = NvList::new();
    for (k, v) in pairs {
        let v = match v {
            NvValue::NvList(l) => NvValue::NvList(sorted(l)),
            NvValue::NvListArray(a) => NvValue::NvListArray(a.iter().map(sorted).collect()),
            other => other.clone(),
        };
        out.insert(k, v);
    }
    out
}
