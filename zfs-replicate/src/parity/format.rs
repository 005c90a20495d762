//! The sidecar's bytes (version 1, little-endian):
//!
//! ```text
//! FILE.zpar = header (4096) | record 0 | … | record N−1 | header again (4096)
//! record i  = table | parity blocks (word 0's, word 1's, …) | table again
//! table     = record header (64) | n data digests | P parity digests | BLAKE3 (32)
//! ```
//!
//! Every length is computed from the header's geometry (checked by
//! [`Geometry::new`]); a record header repeats the geometry and must equal
//! what the header implies. Parsing allocates nothing beyond a table's
//! computed length: a table holds at most 2²² data digests and their
//! parity's (about 66 MiB at the extreme geometry the 1 GiB memory cap
//! allows; 315 KiB at the default), parsed once into digests.

use super::geometry::{BadGeometry, Geometry, Span, DIGEST_LEN, HEADER_LEN};

pub(crate) const MAGIC: [u8; 8] = *b"\x89ZPAR\r\n\x1a";
const RECORD_MAGIC: [u8; 4] = *b"ZPSR";
pub(crate) const VERSION: u16 = 1;
const RECORD_HEADER_LEN: usize = 64;
/// Where the header's own BLAKE3 digest sits.
const HEADER_DIGEST_AT: usize = HEADER_LEN as usize - 32;

/// A block's digest: BLAKE3, truncated to 128 bits (enough to locate
/// accidental damage; the stream's own checksums judge the result).
pub(crate) type Digest = [u8; DIGEST_LEN as usize];

pub(crate) fn digest(block: &[u8]) -> Digest {
    let mut d = [0; DIGEST_LEN as usize];
    d.copy_from_slice(&blake3::hash(block).as_bytes()[..DIGEST_LEN as usize]);
    d
}

/// Why sidecar bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormatError {
    /// Not a sidecar (or its first bytes are damaged).
    Magic,
    /// A version this library does not read.
    Version(u16),
    /// Its own digest does not match: damaged.
    Digest,
    /// A field outside what version 1 allows, or one that contradicts the
    /// others: damaged, or written by something else.
    Field(&'static str),
    /// A geometry this version does not handle.
    Geometry(BadGeometry),
}

/// The sidecar's header: the code, and the stream it protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub geometry: Geometry,
    pub stream: StreamFacts,
}

/// What the header records of the stream (known when it ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamFacts {
    /// Substreams of the stream (one for a plain stream).
    pub substreams: u32,
    pub compound: bool,
    /// The first substream's `drr_toguid` and `drr_fromguid`.
    pub to_guid: u64,
    pub from_guid: u64,
    /// The last substream's END checksum, as the verifier computed it.
    pub end_checksum: [u64; 4],
    /// The first substream's `drr_type` (a receive's defaults depend on
    /// it): 0 another, 1 a filesystem, 2 a volume.
    pub dataset_type: u8,
}

impl StreamFacts {
    pub fn of(summary: &crate::stream::StreamSummary) -> StreamFacts {
        let first = summary.substreams.first();
        StreamFacts {
            substreams: summary.substreams.len() as u32,
            compound: summary.compound,
            to_guid: first.map_or(0, |s| s.to_guid),
            from_guid: first.map_or(0, |s| s.from_guid),
            end_checksum: summary.substreams.last().map_or([0; 4], |s| s.checksum),
            dataset_type: match first.and_then(|s| s.dataset_type) {
                Some(zfs_core::DatasetType::Filesystem) => 1,
                Some(zfs_core::DatasetType::Volume) => 2,
                _ => 0,
            },
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let g = &self.geometry;
        let mut b = vec![0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        // 10..12: flags, none defined.
        b[12..16].copy_from_slice(&g.block.to_le_bytes());
        b[16..24].copy_from_slice(&g.len.to_le_bytes());
        b[24..26].copy_from_slice(&(g.level_bp as u16).to_le_bytes());
        b[26..28].copy_from_slice(&(g.words as u16).to_le_bytes());
        b[28..30].copy_from_slice(&(g.k as u16).to_le_bytes());
        b[30..32].copy_from_slice(&(g.m as u16).to_le_bytes());
        b[32..40].copy_from_slice(&g.spans().to_le_bytes());
        b[40..48].copy_from_slice(&g.sidecar_len().to_le_bytes());
        b[48..52].copy_from_slice(&self.stream.substreams.to_le_bytes());
        b[52] = u8::from(self.stream.compound);
        b[53] = self.stream.dataset_type;
        b[56..64].copy_from_slice(&self.stream.to_guid.to_le_bytes());
        b[64..72].copy_from_slice(&self.stream.from_guid.to_le_bytes());
        for (i, v) in self.stream.end_checksum.iter().enumerate() {
            b[72 + 8 * i..80 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let d = blake3::hash(&b[..HEADER_DIGEST_AT]);
        b[HEADER_DIGEST_AT..].copy_from_slice(d.as_bytes());
        b
    }

    /// Parses a header copy: exactly [`HEADER_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Result<Header, FormatError> {
        if b.len() != HEADER_LEN as usize {
            return Err(FormatError::Field("header length"));
        }
        if b[0..8] != MAGIC {
            return Err(FormatError::Magic);
        }
        if blake3::hash(&b[..HEADER_DIGEST_AT]).as_bytes() != &b[HEADER_DIGEST_AT..] {
            return Err(FormatError::Digest);
        }
        let version = u16_at(b, 8);
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        if u16_at(b, 10) != 0 {
            return Err(FormatError::Field("flags"));
        }
        let geometry = Geometry::new(
            u32::from(u16_at(b, 24)),
            u32_at(b, 12),
            u32::from(u16_at(b, 26)),
            u64_at(b, 16),
        )
        .map_err(FormatError::Geometry)?;
        if u32::from(u16_at(b, 28)) != geometry.k || u32::from(u16_at(b, 30)) != geometry.m {
            return Err(FormatError::Field("k, m"));
        }
        if u64_at(b, 32) != geometry.spans() {
            return Err(FormatError::Field("span count"));
        }
        if u64_at(b, 40) != geometry.sidecar_len() {
            return Err(FormatError::Field("sidecar length"));
        }
        if b[52] > 1
            || b[53] > 2
            || b[54..56] != [0; 2]
            || b[104..HEADER_DIGEST_AT].iter().any(|&x| x != 0)
        {
            return Err(FormatError::Field("reserved"));
        }
        let mut end_checksum = [0u64; 4];
        for (i, v) in end_checksum.iter_mut().enumerate() {
            *v = u64_at(b, 72 + 8 * i);
        }
        Ok(Header {
            geometry,
            stream: StreamFacts {
                substreams: u32_at(b, 48),
                compound: b[52] == 1,
                to_guid: u64_at(b, 56),
                from_guid: u64_at(b, 64),
                end_checksum,
                dataset_type: b[53],
            },
        })
    }
}

/// One span's table: the digest of each data block and of each parity
/// block (word after word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    pub data: Vec<Digest>,
    pub parity: Vec<Digest>,
}

pub(crate) fn encode_table(g: &Geometry, span: &Span, table: &Table) -> Vec<u8> {
    let mut b = Vec::with_capacity(g.table_len(span) as usize);
    b.extend_from_slice(&RECORD_MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&span.index.to_le_bytes());
    b.extend_from_slice(&span.first.to_le_bytes());
    b.extend_from_slice(&span.n.to_le_bytes());
    b.extend_from_slice(&(table.parity.len() as u32).to_le_bytes());
    b.extend_from_slice(&g.block.to_le_bytes());
    b.extend_from_slice(&(g.level_bp as u16).to_le_bytes());
    b.extend_from_slice(&(g.words as u16).to_le_bytes());
    b.resize(RECORD_HEADER_LEN, 0);
    for d in table.data.iter().chain(&table.parity) {
        b.extend_from_slice(d);
    }
    let d = blake3::hash(&b);
    b.extend_from_slice(d.as_bytes());
    b
}

/// The code a table's record header names, `(level_bp, block, words)`,
/// unchecked ([`parse_table`] vouches for it).
pub(crate) fn record_code(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() < RECORD_HEADER_LEN || b[..4] != RECORD_MAGIC {
        return None;
    }
    Some((
        u32::from(u16_at(b, 36)),
        u32_at(b, 32),
        u32::from(u16_at(b, 38)),
    ))
}

/// Parses one copy of `span`'s table: exactly `g.table_len(span)` bytes,
/// its digest matching and its record header equal to what `g` implies.
pub(crate) fn parse_table(g: &Geometry, span: &Span, b: &[u8]) -> Result<Table, FormatError> {
    let len = g.table_len(span);
    if b.len() as u64 != len {
        return Err(FormatError::Field("table length"));
    }
    let body = b.len() - 32;
    if blake3::hash(&b[..body]).as_bytes() != &b[body..] {
        return Err(FormatError::Digest);
    }
    let parity = g.span_parity(span);
    let expected = encode_table(
        g,
        span,
        &Table {
            data: Vec::new(),
            parity: vec![[0; DIGEST_LEN as usize]; parity as usize],
        },
    );
    if b[..RECORD_HEADER_LEN] != expected[..RECORD_HEADER_LEN] {
        return Err(FormatError::Field("record header"));
    }
    let digests = |from: usize, count: usize| -> Vec<Digest> {
        b[from..from + count * DIGEST_LEN as usize]
            .chunks_exact(DIGEST_LEN as usize)
            .map(|c| {
                let mut d = [0; DIGEST_LEN as usize];
                d.copy_from_slice(c);
                d
            })
            .collect()
    };
    let n = span.n as usize;
    Ok(Table {
        data: digests(RECORD_HEADER_LEN, n),
        parity: digests(RECORD_HEADER_LEN + n * DIGEST_LEN as usize, parity as usize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            geometry: Geometry::new(500, 16 << 10, 6, 64 << 20).unwrap(),
            stream: StreamFacts {
                substreams: 1,
                compound: false,
                to_guid: 0x1234,
                from_guid: 0x5678,
                end_checksum: [1, 2, 3, 4],
                dataset_type: 1,
            },
        }
    }

    #[test]
    fn header_round_trips_and_any_flip_is_refused() {
        let h = header();
        let b = h.encode();
        assert_eq!(Header::parse(&b), Ok(h));
        for at in (0..b.len()).step_by(7) {
            let mut c = b.clone();
            c[at] ^= 0x10;
            assert!(Header::parse(&c).is_err(), "flip at {at}");
        }
        assert!(Header::parse(&b[..100]).is_err());
    }

    #[test]
    fn table_round_trips_and_refuses_another_span() {
        let h = header();
        let g = h.geometry;
        let span = g.span(0);
        let table = Table {
            data: (0..span.n).map(|i| digest(&i.to_le_bytes())).collect(),
            parity: (0..g.span_parity(&span))
                .map(|i| digest(&(i + 1_000_000).to_le_bytes()))
                .collect(),
        };
        let b = encode_table(&g, &span, &table);
        assert_eq!(b.len() as u64, g.table_len(&span));
        assert_eq!(parse_table(&g, &span, &b), Ok(table));
        let other = Geometry::new(500, 16 << 10, 5, 64 << 20).unwrap();
        assert!(parse_table(&other, &other.span(0), &b).is_err());
        let mut c = b.clone();
        c[100] ^= 1;
        assert_eq!(parse_table(&g, &span, &c), Err(FormatError::Digest));
    }
}
