//! Reading a stream file against its sidecar: every block's digest, every
//! parity block's digest, both copies of the header and of each table, and
//! the stream's own checksums, in one sequential pass over the stream.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::format::{digest, parse_table, Header, Table};
use super::geometry::{Geometry, Span, HEADER_LEN};
use super::{io, sidecar_path, Condition, Margin, Ranges, SidecarDamage, Unrecoverable};
use crate::error::Result;
use crate::stream::{StreamError, StreamSummary, StreamVerifier};

/// A damaged word that its parity can rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DamagedWord {
    pub span: u64,
    pub word: u32,
    /// Positions (in the word) of its damaged data blocks, in order.
    pub data: Vec<u32>,
    /// Its damaged parity blocks.
    pub parity: Vec<u32>,
}

/// Everything one pass found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The header (a good copy), if any.
    pub header: Option<Header>,
    pub sidecar: Vec<SidecarDamage>,
    pub damaged: Ranges,
    /// Words to rebuild (each with damaged data), in stream order.
    pub words: Vec<DamagedWord>,
    pub why: Vec<Unrecoverable>,
    pub margin: Margin,
    /// The stream's own verification, over the bytes the sidecar covers.
    pub verified: std::result::Result<StreamSummary, StreamError>,
    /// Bytes of the stream file.
    pub file_len: u64,
}

impl Scan {
    pub fn condition(self) -> Condition {
        if !self.why.is_empty() {
            return Condition::Unrecoverable {
                damaged: self.damaged,
                why: self.why,
                sidecar: self.sidecar,
            };
        }
        if self.damaged.is_empty() {
            if let Ok(summary) = self.verified {
                return Condition::Intact {
                    summary,
                    sidecar: self.sidecar,
                };
            }
        }
        Condition::Repairable {
            damaged: self.damaged,
            margin: self.margin,
            sidecar: self.sidecar,
        }
    }
}

/// Reads the stream file at `path` against its sidecar (`path.zpar`) and
/// tells whether it is intact, repairable (which bytes, and the margin
/// left) or unrecoverable (which bytes, and why). Reads both files once;
/// changes nothing.
///
/// A missing sidecar is an [`Error::Io`](crate::Error::Io) of kind
/// `NotFound`; a file that is not a sidecar at all (both header copies
/// unreadable, the stream damaged) is [`Unrecoverable::HeaderLost`].
pub fn check_file(path: &Path) -> Result<Condition> {
    Ok(scan(path)?.condition())
}

pub(crate) fn read_at_most(file: &File, buf: &mut [u8], mut at: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads stream bytes at `at` (all of `buf` unless the file ends first).
/// In unit tests, reads touching [`tests::UNREADABLE`] fail with EIO, as
/// a bad sector does.
pub(crate) fn read_stream_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    #[cfg(test)]
    if let Some(bad) = super::tests::UNREADABLE.with(|u| u.get()) {
        if at < bad.1 && bad.0 < at + buf.len() as u64 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
    }
    read_at_most(file, buf, at)
}

/// A block of the stream file (`b`), zero-padded to the block size:
/// whether it was all there.
pub(crate) fn read_block(g: &Geometry, file: &File, b: u64, buf: &mut [u8]) -> io::Result<bool> {
    let range = g.block_range(b);
    let want = (range.end - range.start) as usize;
    let got = read_at_most(file, &mut buf[..want], range.start)?;
    buf[got..].fill(0);
    Ok(got == want)
}

/// Both header copies: the first good one, and the damaged copies.
pub(crate) fn read_header(
    sidecar: &File,
    len: u64,
) -> io::Result<(Option<Header>, Vec<SidecarDamage>)> {
    let mut buf = vec![0u8; HEADER_LEN as usize];
    let mut copy = |at: u64| -> io::Result<Option<Header>> {
        if at.checked_add(HEADER_LEN).is_none_or(|end| end > len) {
            return Ok(None);
        }
        let n = read_at_most(sidecar, &mut buf, at).unwrap_or(0);
        Ok((n == buf.len()).then(|| Header::parse(&buf).ok()).flatten())
    };
    let first = copy(0)?;
    // The second copy sits where the header says the sidecar ends (or at
    // the file's end when the first is unreadable).
    let second_at = match &first {
        Some(h) => h.geometry.sidecar_len().saturating_sub(HEADER_LEN),
        None => len.saturating_sub(HEADER_LEN),
    };
    let second = copy(second_at)?;
    let mut damage = Vec::new();
    if first.is_none() {
        damage.push(SidecarDamage::Header { copy: 0 });
    }
    if second.is_none() || (first.is_some() && second != first) {
        damage.push(SidecarDamage::Header { copy: 1 });
    }
    Ok((first.or(second), damage))
}

/// One of `span`'s table copies, and the damaged copies.
/// A copy that would end past the sidecar's end (`sidecar_len`) is
/// damaged without reading (nothing is allocated beyond the file).
pub(crate) fn read_table(
    g: &Geometry,
    span: &Span,
    sidecar: &File,
    sidecar_len: u64,
) -> io::Result<(Option<Table>, Vec<SidecarDamage>)> {
    let len = g.table_len(span);
    let starts = [
        g.record_offset(span),
        g.record_offset(span) + g.record_len(span) - len,
    ];
    let mut buf = Vec::new();
    let mut found = None;
    let mut damage = Vec::new();
    for (copy, at) in starts.into_iter().enumerate() {
        let n = if at.saturating_add(len) > sidecar_len {
            0
        } else {
            buf.resize(len as usize, 0);
            read_at_most(sidecar, &mut buf, at).unwrap_or(0)
        };
        match (n == buf.len())
            .then(|| parse_table(g, span, &buf).ok())
            .flatten()
        {
            Some(t) => {
                if found.is_none() {
                    found = Some(t);
                }
            }
            None => damage.push(SidecarDamage::Table {
                span: span.index,
                copy: copy as u8,
            }),
        }
    }
    Ok((found, damage))
}

/// The stream's verification, fed as the stream is read, stopping at the
/// first error.
struct Verifying {
    verifier: Option<StreamVerifier>,
    error: Option<StreamError>,
}

impl Verifying {
    fn new() -> Self {
        Verifying {
            verifier: Some(StreamVerifier::new()),
            error: None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(v) = &mut self.verifier {
            if let Err(e) = v.update(bytes) {
                self.error = Some(e);
                self.verifier = None;
            }
        }
    }

    /// Bytes could not be read: the stream cannot be verified past them.
    fn fail(&mut self) {
        if let Some(v) = self.verifier.take() {
            self.error = Some(StreamError::Io {
                offset: v.position(),
                source: io::Error::from_raw_os_error(libc::EIO),
            });
        }
    }

    fn finish(self) -> std::result::Result<StreamSummary, StreamError> {
        match (self.verifier, self.error) {
            (_, Some(e)) => Err(e),
            (Some(v), None) => v.finish(),
            (None, None) => Err(StreamError::Empty),
        }
    }
}

pub(crate) fn scan(path: &Path) -> Result<Scan> {
    let sidecar_at = sidecar_path(path);
    let sidecar = File::open(&sidecar_at).map_err(|e| io("open", &sidecar_at, e))?;
    let sidecar_len = sidecar
        .metadata()
        .map_err(|e| io("stat", &sidecar_at, e))?
        .len();
    let stream = File::open(path).map_err(|e| io("open", path, e))?;
    let file_len = stream.metadata().map_err(|e| io("stat", path, e))?.len();
    let (header, mut sidecar_damage) =
        read_header(&sidecar, sidecar_len).map_err(|e| io("read", &sidecar_at, e))?;
    let mut out = Scan {
        header,
        sidecar: Vec::new(),
        damaged: Ranges::default(),
        words: Vec::new(),
        why: Vec::new(),
        margin: Margin {
            damaged_words: 0,
            least_spare: u32::MAX,
        },
        verified: Err(StreamError::Empty),
        file_len,
    };
    let Some(header) = header else {
        // Without a header nothing is located: the stream's own checksums
        // alone say whether it is intact.
        let verified = crate::file::verify_file(path);
        out.sidecar = sidecar_damage;
        match verified {
            Ok(summary) => out.verified = Ok(summary),
            Err(e) => {
                let from = match &e {
                    crate::Error::Stream { source, .. } => source.offset().unwrap_or(0),
                    _ => 0,
                };
                out.damaged.add(from..file_len.max(from + 1));
                out.why.push(Unrecoverable::HeaderLost);
            }
        }
        return Ok(out);
    };
    let g = header.geometry;
    if sidecar_len != g.sidecar_len() {
        sidecar_damage.push(SidecarDamage::Length {
            expected: g.sidecar_len(),
            found: sidecar_len,
        });
    }
    let mut verifying = Verifying::new();
    let b = g.block as usize;
    let mut buf = vec![0u8; b];
    let mut lost_tables = Vec::new();
    for index in 0..g.spans() {
        let span = g.span(index);
        // A span wholly past the file's end lost all its data: only words
        // with as much parity as data (a short last span's) rebuild that.
        // Anything else ends the scan here, so a header naming a far
        // longer stream than the file costs no more than the file.
        if span.first * u64::from(g.block) >= file_len {
            let short =
                (0..g.words.min(span.n)).find(|&w| g.word_parity(&span, w) < g.word_data(&span, w));
            if let Some(w) = short {
                out.damaged.add(span.first * u64::from(g.block)..g.len);
                out.why.push(Unrecoverable::TooManyDamaged {
                    span: index,
                    word: w,
                    damaged: g.word_data(&span, w),
                    parity: g.word_parity(&span, w),
                });
                break;
            }
        }
        let (table, damage) =
            read_table(&g, &span, &sidecar, sidecar_len).map_err(|e| io("read", &sidecar_at, e))?;
        sidecar_damage.extend(damage);
        // Per word: damaged data positions and damaged parity indices
        // (kept up to one more than the word's parity).
        let mut bad: Vec<(Vec<u32>, Vec<u32>, u32)> =
            vec![(Vec::new(), Vec::new(), 0); g.words as usize];
        for j in 0..span.n {
            let block = span.first + u64::from(j);
            let range = g.block_range(block);
            let want = (range.end - range.start) as usize;
            // An unreadable block (a bad sector: EIO) is damage like any
            // other, not the end of the check.
            let got = match read_stream_at(&stream, &mut buf[..want], range.start) {
                Ok(got) => got,
                Err(_) => {
                    verifying.fail();
                    0
                }
            };
            verifying.update(&buf[..got]);
            buf[got..].fill(0);
            let Some(table) = &table else { continue };
            if got < want || digest(&buf) != table.data[j as usize] {
                out.damaged.add(range);
                let w = (j % g.words) as usize;
                let entry = &mut bad[w];
                entry.2 += 1;
                if entry.0.len() <= g.m as usize {
                    entry.0.push(j / g.words);
                }
            }
        }
        if let Some(table) = &table {
            let mut at = g.record_offset(&span) + g.table_len(&span);
            let mut idx = 0usize;
            let mut bad_parity = 0;
            for w in 0..g.words {
                for jp in 0..g.word_parity(&span, w) {
                    let n = read_at_most(&sidecar, &mut buf, at).unwrap_or(0);
                    if n < b || digest(&buf) != table.parity[idx] {
                        bad[w as usize].1.push(jp);
                        bad_parity += 1;
                    }
                    at += u64::from(g.block);
                    idx += 1;
                }
            }
            if bad_parity > 0 {
                sidecar_damage.push(SidecarDamage::Parity {
                    span: index,
                    blocks: bad_parity,
                });
            }
            for (w, (data, parity, count)) in bad.into_iter().enumerate() {
                let w = w as u32;
                let p = g.word_parity(&span, w);
                let lost = count + parity.len() as u32;
                if lost > p {
                    out.why.push(Unrecoverable::TooManyDamaged {
                        span: index,
                        word: w,
                        damaged: lost,
                        parity: p,
                    });
                } else if count > 0 {
                    out.margin.damaged_words += 1;
                    out.margin.least_spare = out.margin.least_spare.min(p - lost);
                    out.words.push(DamagedWord {
                        span: index,
                        word: w,
                        data,
                        parity,
                    });
                }
            }
        } else {
            lost_tables.push(span);
        }
    }
    // Bytes beyond the stream's end are damage too (a repair cuts them).
    if file_len > g.len {
        out.damaged.add(g.len..file_len);
    }
    let verified = verifying.finish();
    // A span whose tables are both lost is known intact only if the whole
    // stream verifies (a record checksum error may lie anywhere in the
    // record before it, up to 16 MiB back, so nothing finer is sound).
    let verified_to = if verified.is_ok() { u64::MAX } else { 0 };
    for span in lost_tables {
        let start = span.first * u64::from(g.block);
        let end = g.block_range(span.first + u64::from(span.n) - 1).end;
        if verified_to < end {
            out.damaged.add(verified_to.max(start)..end);
            out.why.push(Unrecoverable::TablesLost { span: span.index });
        }
    }
    // A file that verifies by its own checksums, whole, is a valid stream:
    // never "repair" it into another. If it is not the stream the sidecar
    // describes (another snapshot's or send's sidecar, one left by a crash,
    // a header naming another length), the sidecar is what is wrong.
    let first_guid = |s: &StreamSummary| s.substreams.first().map_or(0, |x| x.to_guid);
    let end_checksum = |s: &StreamSummary| s.substreams.last().map_or([0; 4], |x| x.checksum);
    let describes = |s: &StreamSummary| {
        first_guid(s) == header.stream.to_guid
            && end_checksum(s) == header.stream.end_checksum
            && s.total_bytes == g.len
    };
    let whole = match &verified {
        Ok(summary) if file_len == g.len => Some(summary.clone()),
        _ if !out.damaged.is_empty() || !out.why.is_empty() || verified.is_err() => {
            crate::file::verify_file(path).ok()
        }
        _ => None,
    };
    match whole {
        Some(summary) if !describes(&summary) => {
            out.damaged = Ranges::default();
            out.words.clear();
            out.why.clear();
            out.margin = Margin {
                damaged_words: 0,
                least_spare: 0,
            };
            sidecar_damage.push(SidecarDamage::Foreign {
                sidecar_guid: header.stream.to_guid,
                stream_guid: first_guid(&summary),
            });
            out.verified = Ok(summary);
            out.sidecar = sidecar_damage;
            return Ok(out);
        }
        // The stream the sidecar describes: blocks whose digests differ
        // are damaged, whatever the weaker stream checksums say.
        Some(_) | None => {}
    }
    // Not valid by itself, and no damaged block below the stream's end
    // that parity could rebuild: the sidecar cannot make it valid.
    if let Err(e) = &verified {
        if out.words.is_empty() && out.why.is_empty() {
            out.why.push(Unrecoverable::StreamChecksum {
                detail: e.to_string(),
            });
        }
    }
    if out.margin.damaged_words == 0 {
        out.margin.least_spare = 0;
    }
    out.verified = verified;
    out.sidecar = sidecar_damage;
    Ok(out)
}
