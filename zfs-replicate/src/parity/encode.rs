//! Writing a sidecar in one pass over the stream: every block is hashed
//! and fed to its word's streaming encoder; when a span is complete, its
//! parity and tables are written, and the header goes in last.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use reed_solomon_simd::engine::{utils, DefaultEngine, Engine, ShardsRefMut};

use super::format::{digest, encode_table, Digest, Header, StreamFacts, Table};
use super::geometry::{Geometry, Span, HEADER_LEN};

/// A high-rate Reed–Solomon encoder (the crate's `HighRateEncoder`, the
/// same output) that takes its data blocks one at a time and holds two
/// buffers of `s` blocks, however many data blocks the word has.
///
/// The high-rate code's parity is `FFT(Σ_c IFFT_c(chunk c))` over chunks of
/// `s` data blocks; each chunk's transform is added into an accumulator as
/// soon as the chunk is full.
pub(crate) struct StreamEncoder {
    m: usize,
    s: usize,
    /// 64-byte units per block.
    units: usize,
    acc: Vec<[u8; 64]>,
    chunk: Vec<[u8; 64]>,
    /// Blocks in `chunk`.
    fill: usize,
    chunks_done: usize,
    /// Data blocks added since the last `finish`.
    pub count: usize,
}

impl StreamEncoder {
    /// `block` must be a multiple of 64 (every geometry's is).
    pub fn new(m: usize, block: usize) -> Self {
        let s = m.next_power_of_two();
        let units = block / 64;
        StreamEncoder {
            m,
            s,
            units,
            acc: vec![[0; 64]; s * units],
            chunk: vec![[0; 64]; s * units],
            fill: 0,
            chunks_done: 0,
            count: 0,
        }
    }

    pub fn add(&mut self, engine: &DefaultEngine, block: &[u8]) {
        let u = self.units;
        self.chunk[self.fill * u..(self.fill + 1) * u]
            .as_flattened_mut()
            .copy_from_slice(block);
        self.fill += 1;
        self.count += 1;
        if self.fill == self.s {
            self.flush(engine);
        }
    }

    fn flush(&mut self, engine: &DefaultEngine) {
        if self.fill == 0 {
            return;
        }
        let (s, u) = (self.s, self.units);
        self.chunk[self.fill * u..].fill([0; 64]);
        let position = self.chunks_done * s;
        engine.ifft(
            &mut ShardsRefMut::new(s, u, &mut self.chunk),
            0,
            s,
            self.fill,
            position + s,
        );
        if self.chunks_done == 0 {
            self.acc.copy_from_slice(&self.chunk);
        } else {
            utils::xor(&mut self.acc, &self.chunk);
        }
        self.chunks_done += 1;
        self.fill = 0;
    }

    /// The word's `m` parity blocks, one after another (`m × block` bytes);
    /// the encoder starts a new word afterwards. A word with no data block
    /// has none.
    pub fn finish(&mut self, engine: &DefaultEngine) -> &[u8] {
        if self.count == 0 {
            return &[];
        }
        self.flush(engine);
        let (s, u, m) = (self.s, self.units, self.m);
        engine.fft(&mut ShardsRefMut::new(s, u, &mut self.acc), 0, s, m, 0);
        self.chunks_done = 0;
        self.count = 0;
        self.acc[..m * u].as_flattened()
    }
}

/// Writes a sidecar into `file` (positioned writes: the header is written
/// last, at both ends) while the stream's bytes are handed to `update`.
pub(crate) struct SidecarWriter<'f> {
    file: &'f File,
    /// The code (its `len` is not known until `finish`: only its full spans
    /// are written before).
    code: Geometry,
    engine: DefaultEngine,
    encoders: Vec<StreamEncoder>,
    block: Vec<u8>,
    fill: usize,
    /// Complete blocks of the current span, and their digests.
    digests: Vec<Digest>,
    span: u64,
    len: u64,
}

impl<'f> SidecarWriter<'f> {
    /// A writer of `level_bp` parity over `block`-byte blocks, `words`
    /// words interleaved (see [`Geometry::words_for_memory`]).
    pub fn new(file: &'f File, level_bp: u32, block: u32, words: u32) -> io::Result<Self> {
        let code = Geometry::new(level_bp, block, words, 0)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        Ok(SidecarWriter {
            file,
            code,
            engine: DefaultEngine::new(),
            encoders: (0..words)
                .map(|_| StreamEncoder::new(code.m as usize, block as usize))
                .collect(),
            block: vec![0; block as usize],
            fill: 0,
            digests: Vec::new(),
            span: 0,
            len: 0,
        })
    }

    pub fn update(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.len += bytes.len() as u64;
        let b = self.block.len();
        while !bytes.is_empty() {
            if self.fill == 0 && bytes.len() >= b {
                let (whole, rest) = bytes.split_at(b);
                self.add_block(Some(whole))?;
                bytes = rest;
                continue;
            }
            let take = (b - self.fill).min(bytes.len());
            self.block[self.fill..self.fill + take].copy_from_slice(&bytes[..take]);
            self.fill += take;
            bytes = &bytes[take..];
            if self.fill == b {
                self.add_block(None)?;
            }
        }
        Ok(())
    }

    /// Adds `whole`, or the buffered block.
    fn add_block(&mut self, whole: Option<&[u8]>) -> io::Result<()> {
        let block = whole.unwrap_or(&self.block);
        let w = self.digests.len() % self.encoders.len();
        self.digests.push(digest(block));
        self.encoders[w].add(&self.engine, block);
        self.fill = 0;
        if self.digests.len() as u64 == self.code.span_blocks() {
            let code = self.code;
            let span = code.full_span(self.span);
            self.write_span(&code, &span)?;
            self.span += 1;
        }
        Ok(())
    }

    /// Finishes the span's words and writes its record.
    fn write_span(&mut self, g: &Geometry, span: &Span) -> io::Result<()> {
        let table_len = g.table_len(span);
        let start = g.record_offset(span);
        let mut at = start + table_len;
        let mut parity = Vec::with_capacity(g.span_parity(span) as usize);
        let b = g.block as usize;
        for (w, encoder) in self.encoders.iter_mut().enumerate() {
            let keep = g.word_parity(span, w as u32) as usize;
            let blocks = encoder.finish(&self.engine);
            let kept = &blocks[..keep * b];
            for p in kept.chunks_exact(b) {
                parity.push(digest(p));
            }
            self.file.write_all_at(kept, at)?;
            at += kept.len() as u64;
        }
        let table = encode_table(
            g,
            span,
            &Table {
                data: std::mem::take(&mut self.digests),
                parity,
            },
        );
        self.file.write_all_at(&table, start)?;
        self.file.write_all_at(&table, at)?;
        Ok(())
    }

    /// Writes the last span and the header (at both ends); the sidecar's
    /// geometry.
    pub fn finish(mut self, facts: &StreamFacts) -> io::Result<Header> {
        let c = self.code;
        let g = Geometry::new(c.level_bp, c.block, c.words, self.len)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        if self.fill > 0 {
            self.block[self.fill..].fill(0);
            self.add_block(None)?;
        }
        if !self.digests.is_empty() {
            let span = g.span(self.span);
            self.write_span(&g, &span)?;
        }
        let header = Header {
            geometry: g,
            stream: *facts,
        };
        let bytes = header.encode();
        self.file.write_all_at(&bytes, 0)?;
        self.file
            .write_all_at(&bytes, g.sidecar_len() - HEADER_LEN)?;
        self.file.set_len(g.sidecar_len())?;
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reed_solomon_simd::rate::{HighRateDecoder, HighRateEncoder, RateDecoder, RateEncoder};

    pub(crate) fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v = vec![0u8; len];
        for c in v.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        v
    }

    #[test]
    fn streaming_encoder_equals_the_crates_and_short_parity_decodes() {
        let engine = DefaultEngine::new();
        for (k, m, b) in [
            (3usize, 2usize, 64usize),
            (960, 48, 512),
            (896, 90, 512),
            (17, 48, 64),
            (100, 11, 128),
            (1000, 100, 192),
        ] {
            let data = bytes(k * b, (k * 31 + m) as u64);
            let mut ours = StreamEncoder::new(m, b);
            for block in data.chunks(b) {
                ours.add(&engine, block);
            }
            let ours = ours.finish(&engine).to_vec();
            let mut theirs = HighRateEncoder::new(k, m, b, DefaultEngine::new(), None).unwrap();
            for block in data.chunks(b) {
                theirs.add_original_shard(block).unwrap();
            }
            let theirs: Vec<u8> = theirs
                .encode()
                .unwrap()
                .recovery_iter()
                .flatten()
                .copied()
                .collect();
            assert_eq!(ours, theirs, "k={k} m={m} b={b}");
            // Keep only the first m' parity blocks: m' lost blocks decode.
            let kept = (m / 3).max(1).min(k);
            let mut dec = HighRateDecoder::new(k, m, b, DefaultEngine::new(), None).unwrap();
            for i in kept..k {
                dec.add_original_shard(i, &data[i * b..(i + 1) * b])
                    .unwrap();
            }
            for j in 0..kept {
                dec.add_recovery_shard(j, &ours[j * b..(j + 1) * b])
                    .unwrap();
            }
            let r = dec.decode().unwrap();
            for i in 0..kept {
                assert_eq!(r.restored_original(i).unwrap(), &data[i * b..(i + 1) * b]);
            }
        }
    }
}
