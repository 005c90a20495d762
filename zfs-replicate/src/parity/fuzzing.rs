//! Hooks for the sidecar parser's fuzz target (`fuzz/fuzz_targets/zpar_parse.rs`)
//! and its stable replay (`tests/fuzz_mutation.rs`). Not part of the API:
//! hidden, and free to change with the format.
//!
//! [`parse_sidecar`] reads an in-memory sidecar the way `scan` reads a
//! file: the header copy at 0, else the copy where the sidecar ends, then
//! both table copies of every span whose record lies inside the input.
//! Every loop is bounded by the input's length, never by a header field,
//! and nothing is allocated before its length is checked against the
//! input: no single allocation exceeds the input's length plus a constant.

use super::format::{encode_table, parse_table, Header, Table};
use super::geometry::{Geometry, Span, DIGEST_LEN, HEADER_LEN, TABLE_FIXED};

/// Bytes of a table's record header (its fixed part less its digest).
const RECORD_HEADER_LEN: usize = TABLE_FIXED as usize - 32;

/// The geometry a parsed header describes, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeometryNumbers {
    pub block: u32,
    pub level_bp: u32,
    pub k: u32,
    pub m: u32,
    pub s: u32,
    pub words: u32,
    /// Bytes of the stream.
    pub len: u64,
    pub spans: u64,
    pub span_blocks: u64,
    /// Bytes of the whole sidecar.
    pub sidecar_len: u64,
}

/// One header copy that lies inside the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCopy {
    /// Its offset in the input.
    pub at: usize,
    /// The parsed header encoded again (4096 bytes), or `None` if the copy
    /// was refused.
    pub encoded: Option<Vec<u8>>,
}

/// One copy of a span's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    /// Its offset in the input.
    pub at: u64,
    /// The parsed table encoded again, or `None` if the copy was refused.
    pub encoded: Option<Vec<u8>>,
    /// Digests parsed: data, parity (0, 0 when refused).
    pub digests: (usize, usize),
}

/// A span whose record lies inside the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSpan {
    pub index: u64,
    pub first: u64,
    /// Data blocks.
    pub n: u32,
    /// Parity blocks, all words.
    pub parity: u32,
    pub tail_reserve: bool,
    pub record_at: u64,
    pub record_len: u64,
    pub table_len: u64,
    pub tables: [TableCopy; 2],
}

/// What [`parse_sidecar`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSidecar {
    /// The header copies read: the first (at 0) and the second (where the
    /// first says the sidecar ends, or at the input's end when the first is
    /// refused); `None` for a copy that does not lie inside the input.
    pub header_copies: [Option<HeaderCopy>; 2],
    /// Which copy was used: the first good one.
    pub header_from: Option<u8>,
    /// Its geometry.
    pub geometry: Option<GeometryNumbers>,
    /// The spans whose records lie inside the input, in order from span 0.
    pub spans: Vec<ParsedSpan>,
    /// Where the record of the first span not parsed would end (past the
    /// input), if the header has such a span.
    pub next_record_end: Option<u64>,
}

fn numbers(g: &Geometry) -> GeometryNumbers {
    GeometryNumbers {
        block: g.block,
        level_bp: g.level_bp,
        k: g.k,
        m: g.m,
        s: g.s,
        words: g.words,
        len: g.len,
        spans: g.spans(),
        span_blocks: g.span_blocks(),
        sidecar_len: g.sidecar_len(),
    }
}

/// A header copy inside the input: its offset, and the header if it parsed.
type ReadCopy = (usize, Option<Header>);

/// The header copy at `at`, if it lies inside `bytes`: parsed, or refused.
fn header_at(bytes: &[u8], at: u64) -> Option<ReadCopy> {
    let end = at.checked_add(HEADER_LEN)?;
    let b = bytes.get(usize::try_from(at).ok()?..usize::try_from(end).ok()?)?;
    Some((at as usize, Header::parse(b).ok()))
}

/// Where the second header copy is read: where the first says the sidecar
/// ends, or at the input's end when the first is refused (as `scan` does).
fn second_at(first: Option<&Header>, len: u64) -> u64 {
    match first {
        Some(h) => h.geometry.sidecar_len().saturating_sub(HEADER_LEN),
        None => len.saturating_sub(HEADER_LEN),
    }
}

/// The header to use (first good copy), and both copies as read.
fn headers(bytes: &[u8]) -> (Option<Header>, [Option<ReadCopy>; 2]) {
    let first = header_at(bytes, 0);
    let at = second_at(
        first.as_ref().and_then(|(_, h)| h.as_ref()),
        bytes.len() as u64,
    );
    let second = header_at(bytes, at);
    let used = first
        .as_ref()
        .and_then(|(_, h)| *h)
        .or_else(|| second.as_ref().and_then(|(_, h)| *h));
    (used, [first, second])
}

/// The spans of `g` whose records lie inside `len` bytes, in order, and
/// where the first other one's record would end. Records follow one
/// another, so the first that does not fit ends the walk: at most one
/// span per 192 bytes of input (a record is at least two fixed tables).
fn spans_inside(g: &Geometry, len: u64) -> (Vec<Span>, Option<u64>) {
    let mut spans = Vec::new();
    for index in 0..g.spans() {
        let span = g.span(index);
        let end = g.record_offset(&span).saturating_add(g.record_len(&span));
        if end > len {
            return (spans, Some(end));
        }
        spans.push(span);
    }
    (spans, None)
}

/// Byte offsets of `span`'s two table copies.
fn table_starts(g: &Geometry, span: &Span) -> [u64; 2] {
    let at = g.record_offset(span);
    [at, at + g.record_len(span) - g.table_len(span)]
}

/// Parses an in-memory sidecar as `scan` reads one (see the module doc).
pub fn parse_sidecar(bytes: &[u8]) -> ParsedSidecar {
    let (header, copies) = headers(bytes);
    let header_copies = copies.map(|c| {
        c.map(|(at, h)| HeaderCopy {
            at,
            encoded: h.map(|h| h.encode()),
        })
    });
    let header_from = match &copies {
        [Some((_, Some(_))), _] => Some(0),
        [_, Some((_, Some(_)))] => Some(1),
        _ => None,
    };
    let mut out = ParsedSidecar {
        header_copies,
        header_from,
        geometry: header.map(|h| numbers(&h.geometry)),
        spans: Vec::new(),
        next_record_end: None,
    };
    let Some(header) = header else {
        return out;
    };
    let g = header.geometry;
    let (spans, next) = spans_inside(&g, bytes.len() as u64);
    out.next_record_end = next;
    for span in spans {
        let table_len = g.table_len(&span);
        let tables = table_starts(&g, &span).map(|at| {
            // Inside the input: its record is.
            let b = &bytes[at as usize..(at + table_len) as usize];
            match parse_table(&g, &span, b) {
                Ok(t) => TableCopy {
                    at,
                    digests: (t.data.len(), t.parity.len()),
                    encoded: Some(encode_table(&g, &span, &t)),
                },
                Err(_) => TableCopy {
                    at,
                    encoded: None,
                    digests: (0, 0),
                },
            }
        });
        out.spans.push(ParsedSpan {
            index: span.index,
            first: span.first,
            n: span.n,
            parity: g.span_parity(&span),
            tail_reserve: span.tail_reserve,
            record_at: g.record_offset(&span),
            record_len: g.record_len(&span),
            table_len,
            tables,
        });
    }
    out
}

/// Makes `bytes` get past the digests, so that the fuzzer reaches the
/// checks behind them: rewrites the BLAKE3 digest of each header copy that
/// [`parse_sidecar`] would read (first the one at 0, then the second where
/// the first, once sealed, says the sidecar ends, or at the input's end)
/// and of both table copies of every span inside the input. With `derive`,
/// a header copy's derived fields (k, m, span count, sidecar length) are
/// first set from its block size, level, words and length when those make
/// a geometry, and each table's record header is set to what the header
/// implies.
pub fn seal(bytes: &mut [u8], derive: bool) {
    let len = bytes.len() as u64;
    let first = seal_header(bytes, 0, derive);
    seal_header(bytes, second_at(first.as_ref(), len), derive);
    let (Some(header), _) = headers(bytes) else {
        return;
    };
    let g = header.geometry;
    for span in spans_inside(&g, len).0 {
        let table_len = g.table_len(&span) as usize;
        let expected = derive.then(|| {
            let parity = g.span_parity(&span) as usize;
            let mut b = encode_table(
                &g,
                &span,
                &Table {
                    data: vec![[0; DIGEST_LEN as usize]; span.n as usize],
                    parity: vec![[0; DIGEST_LEN as usize]; parity],
                },
            );
            b.truncate(RECORD_HEADER_LEN);
            b
        });
        for at in table_starts(&g, &span) {
            let t = &mut bytes[at as usize..at as usize + table_len];
            if let Some(e) = &expected {
                t[..RECORD_HEADER_LEN].copy_from_slice(e);
            }
            let body = table_len - 32;
            let d = blake3::hash(&t[..body]);
            t[body..].copy_from_slice(d.as_bytes());
        }
    }
}

/// Seals the header copy at `at` (if inside `bytes`), and parses it.
fn seal_header(bytes: &mut [u8], at: u64, derive: bool) -> Option<Header> {
    let end = usize::try_from(at.checked_add(HEADER_LEN)?).ok()?;
    let b = bytes.get_mut(at as usize..end)?;
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    if derive {
        let block = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        if let Ok(g) = Geometry::new(
            u32::from(u16_at(b, 24)),
            block,
            u32::from(u16_at(b, 26)),
            len,
        ) {
            b[28..30].copy_from_slice(&(g.k as u16).to_le_bytes());
            b[30..32].copy_from_slice(&(g.m as u16).to_le_bytes());
            b[32..40].copy_from_slice(&g.spans().to_le_bytes());
            b[40..48].copy_from_slice(&g.sidecar_len().to_le_bytes());
        }
    }
    let digest_at = HEADER_LEN as usize - 32;
    let d = blake3::hash(&b[..digest_at]);
    b[digest_at..].copy_from_slice(d.as_bytes());
    Header::parse(b).ok()
}
