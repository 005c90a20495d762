//! Rebuilding damaged blocks: a reader that yields the stream as it was
//! (decoding one span's damaged words at a time), and the operations built
//! on it: repairing a file in place, and making a sidecar for a stream.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use reed_solomon_simd::engine::DefaultEngine;
use reed_solomon_simd::rate::{HighRateDecoder, RateDecoder};

use super::encode::SidecarWriter;
use super::format::StreamFacts;
use super::format::{digest, record_code, Header};
use super::geometry::{Geometry, HEADER_LEN};
use super::scan::{read_block, read_table, scan, DamagedWord, Scan};
use super::{io, sidecar_path, Condition, Parity, Ranges, SidecarDamage};
use crate::error::{Error, Result};
use crate::file::{sync_dir, temporary_beside};
use crate::stream::{StreamSummary, StreamVerifier};

/// What [`repair_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Repaired {
    /// The stream's bytes rebuilt (empty when it was intact).
    pub repaired: Ranges,
    /// The sidecar damage found; when not empty, the sidecar was rebuilt
    /// from the (repaired) stream.
    pub sidecar: Vec<SidecarDamage>,
    /// The stream, verified after the repair.
    pub summary: StreamSummary,
}

/// Where a sidecar was written, and what it guarantees.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sidecar {
    pub path: PathBuf,
    /// Bytes of the sidecar.
    pub bytes: u64,
    pub level_percent: u32,
    /// Bytes per block.
    pub block: u32,
    /// Interleaved words per span.
    pub words: u32,
    /// Bytes of stream per full span.
    pub span_bytes: u64,
    /// The longest run of whole damaged blocks (a hole, or a cut tail) any
    /// span of this stream rebuilds, in bytes: the words' smallest parity
    /// times the words. A hole that starts inside a block touches one more
    /// block: `hole_bytes − block + 1` bytes are rebuilt wherever they lie.
    pub hole_bytes: u64,
}

impl Sidecar {
    pub(crate) fn new(path: PathBuf, header: &Header) -> Sidecar {
        let g = &header.geometry;
        // Every span's words keep at least this many parity blocks (short
        // words keep fewer: the smallest over the stream's spans). The last
        // of several spans keeps min(m, k_w) per word: a run of words × m
        // blocks loses at most that in each, as in a full span.
        let hole_blocks = (0..g.spans())
            .map(|i| {
                let span = g.span(i);
                if span.tail_reserve {
                    return u64::from(g.words) * u64::from(g.m);
                }
                let least = (0..g.words.min(span.n))
                    .map(|w| g.word_parity(&span, w))
                    .min()
                    .unwrap_or(0);
                u64::from(least) * u64::from(g.words.min(span.n))
            })
            .min()
            .unwrap_or(0);
        Sidecar {
            path,
            bytes: g.sidecar_len(),
            level_percent: g.level_bp / 100,
            block: g.block,
            words: g.words,
            span_bytes: g.span_blocks() * u64::from(g.block),
            hole_bytes: hole_blocks * u64::from(g.block),
        }
    }
}

/// Yields the stream a sidecar describes, its damaged blocks rebuilt:
/// `g.len` bytes. Memory: one span's rebuilt blocks and one decoder.
pub(crate) struct RepairingReader<'a> {
    g: Geometry,
    stream: &'a File,
    sidecar: &'a File,
    sidecar_path: &'a Path,
    path: &'a Path,
    /// Words to rebuild, in stream order; `next` is the first not decoded.
    words: &'a [DamagedWord],
    next: usize,
    rebuilt: HashMap<u64, Vec<u8>>,
    decoder: Option<HighRateDecoder<DefaultEngine>>,
    /// The current block, and how much of it was served.
    block: Vec<u8>,
    block_index: u64,
    served: usize,
    filled: usize,
    /// Stream bytes served.
    position: u64,
}

impl<'a> RepairingReader<'a> {
    pub fn new(
        scan: &'a Scan,
        header: &Header,
        path: &'a Path,
        stream: &'a File,
        sidecar_path: &'a Path,
        sidecar: &'a File,
    ) -> Self {
        RepairingReader {
            g: header.geometry,
            stream,
            sidecar,
            sidecar_path,
            path,
            words: &scan.words,
            next: 0,
            rebuilt: HashMap::new(),
            decoder: None,
            block: vec![0; header.geometry.block as usize],
            block_index: 0,
            served: 0,
            filled: 0,
            position: 0,
        }
    }

    /// Rebuilds the damaged words of `span` (dropping the previous span's).
    fn rebuild_span(&mut self, span: u64) -> Result<()> {
        self.rebuilt.clear();
        let first = self.next;
        while self.next < self.words.len() && self.words[self.next].span == span {
            self.next += 1;
        }
        if first == self.next {
            return Ok(());
        }
        let g = self.g;
        let s = g.span(span);
        let sidecar_len = self
            .sidecar
            .metadata()
            .map_err(|e| io("stat", self.sidecar_path, e))?
            .len();
        let (table, _) = read_table(&g, &s, self.sidecar, sidecar_len)
            .map_err(|e| io("read", self.sidecar_path, e))?;
        let table =
            table.ok_or_else(|| changed(self.sidecar_path, "its table became unreadable"))?;
        let b = g.block as usize;
        let mut buf = vec![0u8; b];
        let words = self.words;
        for word in &words[first..self.next] {
            let kw = g.word_data(&s, word.word) as usize;
            let pw = g.word_parity(&s, word.word);
            let mut decoder = match self.decoder.take() {
                Some(mut d) => {
                    d.reset(kw, g.m as usize, b)
                        .map_err(|e| rs_error(self.path, e))?;
                    d
                }
                None => HighRateDecoder::new(kw, g.m as usize, b, DefaultEngine::new(), None)
                    .map_err(|e| rs_error(self.path, e))?,
            };
            let mut damaged = word.data.iter().peekable();
            for t in 0..kw as u32 {
                if damaged.peek() == Some(&&t) {
                    damaged.next();
                    continue;
                }
                read_block(&g, self.stream, g.member(&s, word.word, t), &mut buf)
                    .map_err(|e| io("read", self.path, e))?;
                decoder
                    .add_original_shard(t as usize, &buf)
                    .map_err(|e| rs_error(self.path, e))?;
            }
            let before: u32 = (0..word.word).map(|v| g.word_parity(&s, v)).sum();
            for j in 0..pw {
                if word.parity.contains(&j) {
                    continue;
                }
                let at = g.parity_offset(&s, word.word, j);
                let n = super::scan::read_at_most(self.sidecar, &mut buf, at)
                    .map_err(|e| io("read", self.sidecar_path, e))?;
                if n < b || digest(&buf) != table.parity[(before + j) as usize] {
                    return Err(changed(self.sidecar_path, "a parity block changed"));
                }
                decoder
                    .add_recovery_shard(j as usize, &buf)
                    .map_err(|e| rs_error(self.path, e))?;
            }
            let result = decoder.decode().map_err(|e| rs_error(self.path, e))?;
            for &t in &word.data {
                let restored = result
                    .restored_original(t as usize)
                    .ok_or_else(|| changed(self.path, "a block was not rebuilt"))?;
                let j = t * g.words + word.word;
                if digest(restored) != table.data[j as usize] {
                    // A block read as intact was not (the file changed
                    // since it was checked).
                    return Err(changed(
                        self.path,
                        "a rebuilt block does not match its digest",
                    ));
                }
                self.rebuilt
                    .insert(s.first + u64::from(j), restored.to_vec());
            }
            drop(result);
            self.decoder = Some(decoder);
        }
        Ok(())
    }

    /// Loads block `b` into `self.block`.
    fn load(&mut self, b: u64) -> Result<()> {
        let g = self.g;
        if b % g.span_blocks() == 0 {
            self.rebuild_span(g.span_of(b))?;
        }
        let range = g.block_range(b);
        let want = (range.end - range.start) as usize;
        match self.rebuilt.get(&b) {
            Some(r) => self.block[..want].copy_from_slice(&r[..want]),
            None => {
                read_block(&g, self.stream, b, &mut self.block)
                    .map_err(|e| io("read", self.path, e))?;
            }
        }
        self.block_index = b;
        self.filled = want;
        self.served = 0;
        Ok(())
    }
}

impl Read for RepairingReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.g.len || out.is_empty() {
            return Ok(0);
        }
        if self.served == self.filled {
            let b = if self.position == 0 {
                0
            } else {
                self.block_index + 1
            };
            self.load(b).map_err(io::Error::other)?;
        }
        let n = (self.filled - self.served).min(out.len());
        out[..n].copy_from_slice(&self.block[self.served..self.served + n]);
        self.served += n;
        self.position += n as u64;
        Ok(n)
    }
}

fn rs_error(path: &Path, e: reed_solomon_simd::Error) -> Error {
    changed(path, &format!("decoding: {e}"))
}

fn changed(path: &Path, what: &str) -> Error {
    io(
        "repair",
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} (did the file change while it was repaired?)"),
        ),
    )
}

/// Gives the new file `file` (at `temp`) the mode and, where allowed (as
/// root), the owner of the file `original` it will replace: a repaired
/// backup stays as private as it was.
fn keep_metadata(original: &Path, file: &File, temp: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(original).map_err(|e| io("stat", original, e))?;
    file.set_permissions(meta.permissions())
        .map_err(|e| io("chmod", temp, e))?;
    // Not root: the file stays ours (the owner cannot be given away).
    let _ = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()));
    Ok(())
}

/// The unrecoverable error of a condition.
pub(crate) fn refuse(path: &Path, condition: Condition) -> Error {
    match condition {
        Condition::Unrecoverable { damaged, why, .. } => Error::Unrecoverable {
            path: path.to_path_buf(),
            damaged,
            why,
        },
        _ => Error::Unrecoverable {
            path: path.to_path_buf(),
            damaged: Ranges::default(),
            why: Vec::new(),
        },
    }
}

/// Repairs the stream file at `path` from its sidecar, atomically: the
/// repaired stream is written to a temporary file beside it
/// (`.NAME.repair-PID`), verified (every record checksum, and its END
/// checksum equal to the one the sidecar recorded), synced, and renamed
/// over `path`. A damaged sidecar is then rebuilt the same way from the
/// stream. An unrecoverable file is [`Error::Unrecoverable`] and nothing
/// is changed; an intact one is left alone.
///
/// Truncated files are extended and bytes past the stream's end cut, when
/// the parity covers them.
pub fn repair_file(path: &Path) -> Result<Repaired> {
    let scan = scan(path)?;
    if !scan.why.is_empty() {
        return Err(refuse(path, scan.condition()));
    }
    let sidecar_damage = scan.sidecar.clone();
    let repaired = scan.damaged.clone();
    let summary = match (&scan.header, scan.damaged.is_empty(), &scan.verified) {
        (_, true, Ok(summary)) => summary.clone(),
        (Some(header), _, _) => rewrite_stream(path, &scan, header)?,
        (None, _, _) => return Err(refuse(path, scan.condition())),
    };
    if !sidecar_damage.is_empty() {
        // Rebuild the sidecar as it was made: same code, same words (when
        // no header survived, those span 0's table names, or the
        // defaults).
        let (level_bp, block, words) = match &scan.header {
            Some(h) => (h.geometry.level_bp, h.geometry.block, h.geometry.words),
            None => match code_from_table(&sidecar_path(path), scan.file_len) {
                Some(code) => code,
                None => {
                    let p = Parity::percent(5)?;
                    let len = scan.file_len;
                    (p.level_bp, p.block, p.words_for(Some(len)))
                }
            },
        };
        write_sidecar(path, level_bp, block, words, true)?;
    }
    Ok(Repaired {
        repaired,
        sidecar: sidecar_damage,
        summary,
    })
}

/// The code `(level_bp, block, words)` of a sidecar whose header copies
/// are both lost, from the record header of span 0's first table copy, if
/// a copy of that table parses with it (its digest, and its record header
/// equal to what the code implies for a stream of `len` bytes).
fn code_from_table(sidecar_at: &Path, len: u64) -> Option<(u32, u32, u32)> {
    let file = File::open(sidecar_at).ok()?;
    let sidecar_len = file.metadata().ok()?.len();
    let mut head = [0u8; 64];
    let n = super::scan::read_at_most(&file, &mut head, HEADER_LEN).ok()?;
    let (level_bp, block, words) = record_code(&head[..n])?;
    let g = Geometry::new(level_bp, block, words, len).ok()?;
    if g.spans() == 0 {
        return None;
    }
    let (table, _) = read_table(&g, &g.span(0), &file, sidecar_len).ok()?;
    table.map(|_| (level_bp, block, words))
}

fn rewrite_stream(path: &Path, scan: &Scan, header: &Header) -> Result<StreamSummary> {
    let sidecar_at = sidecar_path(path);
    let stream = File::open(path).map_err(|e| io("open", path, e))?;
    let sidecar = File::open(&sidecar_at).map_err(|e| io("open", &sidecar_at, e))?;
    // The file replaced is the one `path` names, through any symlink.
    let real = std::fs::canonicalize(path).map_err(|e| io("resolve", path, e))?;
    let (dir, temp) = temporary_beside(&real, "repair")?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| io("create", &temp, e))?;
    let result = (|| {
        keep_metadata(&real, &out, &temp)?;
        let mut reader = RepairingReader::new(scan, header, path, &stream, &sidecar_at, &sidecar);
        let mut verifier = StreamVerifier::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    return Err(match e.downcast::<Error>() {
                        Ok(inner) => inner,
                        Err(e) => io("read", path, e),
                    })
                }
            };
            verifier.update(&buf[..n]).map_err(|source| Error::Stream {
                path: temp.clone(),
                source,
            })?;
            out.write_all(&buf[..n])
                .map_err(|e| io("write", &temp, e))?;
        }
        let summary = verifier.finish().map_err(|source| Error::Stream {
            path: temp.clone(),
            source,
        })?;
        if summary.substreams.last().map_or([0; 4], |s| s.checksum) != header.stream.end_checksum {
            return Err(Error::Unrecoverable {
                path: path.to_path_buf(),
                damaged: scan.damaged.clone(),
                why: vec![super::Unrecoverable::StreamChecksum {
                    detail:
                        "the repaired stream's END checksum is not the one the sidecar recorded"
                            .into(),
                }],
            });
        }
        out.sync_all().map_err(|e| io("sync", &temp, e))?;
        std::fs::rename(&temp, &real).map_err(|e| io("rename", &real, e))?;
        sync_dir(&dir);
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Writes a sidecar for the stream file at `path` (verified while read)
/// into a temporary file, then links it to `path.zpar` (or renames over it
/// when `replace`).
fn write_sidecar(
    path: &Path,
    level_bp: u32,
    block: u32,
    words: u32,
    replace: bool,
) -> Result<Sidecar> {
    let target = sidecar_path(path);
    if !replace && target.symlink_metadata().is_ok() {
        return Err(io(
            "create",
            &target,
            io::Error::from(io::ErrorKind::AlreadyExists),
        ));
    }
    // A sidecar replaced is the file it names, through any symlink, and
    // keeps its mode and owner.
    let target = match replace {
        true => std::fs::canonicalize(&target).unwrap_or(target),
        false => target,
    };
    let (dir, temp) = temporary_beside(&target, "partial")?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| io("create", &temp, e))?;
    let result = (|| {
        if replace && target.exists() {
            keep_metadata(&target, &file, &temp)?;
        }
        let mut stream = File::open(path).map_err(|e| io("open", path, e))?;
        let mut writer =
            SidecarWriter::new(&file, level_bp, block, words).map_err(|e| io("write", &temp, e))?;
        let mut verifier = StreamVerifier::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("read", path, e)),
            };
            verifier.update(&buf[..n]).map_err(|source| Error::Stream {
                path: path.to_path_buf(),
                source,
            })?;
            writer
                .update(&buf[..n])
                .map_err(|e| io("write", &temp, e))?;
        }
        let summary = verifier.finish().map_err(|source| Error::Stream {
            path: path.to_path_buf(),
            source,
        })?;
        let header = writer
            .finish(&StreamFacts::of(&summary))
            .map_err(|e| io("write", &temp, e))?;
        file.sync_all().map_err(|e| io("sync", &temp, e))?;
        if replace {
            std::fs::rename(&temp, &target).map_err(|e| io("rename", &target, e))?;
        } else {
            std::fs::hard_link(&temp, &target).map_err(|e| io("link", &target, e))?;
        }
        sync_dir(&dir);
        Ok(Sidecar::new(target.clone(), &header))
    })();
    let _ = std::fs::remove_file(&temp);
    result
}

/// Makes a sidecar (`path.zpar`, which must not exist) for the stream file
/// at `path`, verifying the stream while reading it: protection for a
/// stream file written without parity. The stream's size sets the words
/// (see [`Parity`]).
pub fn create_sidecar(path: &Path, parity: &Parity) -> Result<Sidecar> {
    let len = std::fs::metadata(path)
        .map_err(|e| io("stat", path, e))?
        .len();
    write_sidecar(
        path,
        parity.level_bp,
        parity.block,
        parity.words_for(Some(len)),
        false,
    )
}
