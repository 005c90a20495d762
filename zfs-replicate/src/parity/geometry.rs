//! Where every block, code word and parity block of a sidecar lies: pure
//! arithmetic shared by the writer and the reader, so nothing of the layout
//! is stored that could be computed (and so nothing read sizes anything
//! beyond the header's checked fields).
//!
//! The stream is cut into blocks of `block` bytes (the last one padded with
//! zeros). Blocks are grouped into *spans* of `words × k` blocks; inside a
//! span, block `j` belongs to code word `j mod words` (round-robin), so a
//! contiguous hole spreads evenly over the span's words. Each word is a
//! Reed–Solomon code over GF(2¹⁶) with up to `k` data blocks and up to `m`
//! parity blocks: any `p` damaged blocks of a word with `p` parity blocks
//! (data or parity, counted together) can be rebuilt.

/// Blocks in a full code word plus the encoder's parity stride: `k + s`,
/// where `s` is `m` rounded up to a power of two. It keeps the decoder's
/// work at 1024 blocks (16 MiB at the default block size).
const WORD_SPAN: u32 = 1024;

/// Smallest and largest block size (powers of two).
pub(crate) const MIN_BLOCK: u32 = 512;
pub(crate) const MAX_BLOCK: u32 = 64 << 10;
/// Smallest and largest level, in basis points (1% and 50%).
pub(crate) const MIN_LEVEL_BP: u32 = 100;
pub(crate) const MAX_LEVEL_BP: u32 = 5000;
/// At most this many interleaved words, and blocks per span (a table of
/// at most 2²² digests, 64 MiB).
pub(crate) const MAX_WORDS: u32 = 4096;
const MAX_SPAN_BLOCKS: u64 = 1 << 22;
/// Most encoder memory (two buffers of `s` blocks per word): 1 GiB. It
/// bounds what a reader holds too: a span's rebuilt blocks (at most half
/// of it) whatever a header says.
pub(crate) const MAX_MEMORY: u64 = 1 << 30;
/// Longest stream a sidecar describes (1 PiB).
pub(crate) const MAX_LEN: u64 = 1 << 50;

/// Bytes of the sidecar's header (and of its copy at the end).
pub(crate) const HEADER_LEN: u64 = 4096;
/// Bytes of a span table's fixed part: its 64-byte record header and its
/// 32-byte digest.
pub(crate) const TABLE_FIXED: u64 = 64 + 32;
/// Bytes of one block digest (BLAKE3, truncated).
pub(crate) const DIGEST_LEN: u64 = 16;

/// The code of a sidecar: everything else follows from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Bytes per block.
    pub block: u32,
    /// Parity per data, in basis points (500 = 5%).
    pub level_bp: u32,
    /// Data blocks per full word.
    pub k: u32,
    /// Parity blocks per full word.
    pub m: u32,
    /// `m` rounded up to a power of two (the encoder's chunk, in blocks).
    pub s: u32,
    /// Interleaved words per span.
    pub words: u32,
    /// Bytes of the stream.
    pub len: u64,
}

/// Why a geometry is not one this version writes or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadGeometry {
    Block(u32),
    Level(u32),
    Words(u32),
    Len(u64),
}

/// One span: its blocks are `first .. first + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub index: u64,
    pub first: u64,
    pub n: u32,
    /// Whether this is the last span of a stream with more than one: its
    /// words keep `min(m, k_w)` parity blocks, so a truncated tail as long
    /// as a full span's hole stays repairable however short the span is.
    pub tail_reserve: bool,
}

/// `(k, m, s)` of a level: the smallest power of two `s` such that
/// `m = ⌈level × (1024 − s)⌉ ≤ s`.
pub(crate) fn code(level_bp: u32) -> (u32, u32, u32) {
    let mut s = 1u32;
    loop {
        let k = WORD_SPAN - s;
        let m = (k * level_bp).div_ceil(10_000);
        if m <= s {
            return (k, m, s);
        }
        s *= 2;
    }
}

impl Geometry {
    /// The geometry of a stream of `len` bytes, checked.
    pub fn new(level_bp: u32, block: u32, words: u32, len: u64) -> Result<Self, BadGeometry> {
        if !(MIN_LEVEL_BP..=MAX_LEVEL_BP).contains(&level_bp) {
            return Err(BadGeometry::Level(level_bp));
        }
        if !block.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&block) {
            return Err(BadGeometry::Block(block));
        }
        let (k, m, s) = code(level_bp);
        if words == 0
            || words > MAX_WORDS
            || u64::from(words) * u64::from(k) > MAX_SPAN_BLOCKS
            || 2 * u64::from(words) * u64::from(s) * u64::from(block) > MAX_MEMORY
        {
            return Err(BadGeometry::Words(words));
        }
        if len > MAX_LEN {
            return Err(BadGeometry::Len(len));
        }
        Ok(Geometry {
            block,
            level_bp,
            k,
            m,
            s,
            words,
            len,
        })
    }

    /// Interleaved words that fit `memory` bytes of encoder buffers (two
    /// buffers of `s` blocks per word), at least one.
    pub fn words_for_memory(level_bp: u32, block: u32, memory: u64) -> u32 {
        let (k, _, s) = code(level_bp);
        let per_word = 2 * u64::from(s) * u64::from(block);
        let most = u64::from(MAX_WORDS)
            .min(MAX_SPAN_BLOCKS / u64::from(k))
            .min(MAX_MEMORY / per_word);
        (memory.min(MAX_MEMORY) / per_word.max(1)).clamp(1, most) as u32
    }

    /// Blocks of the stream (the last one may be short).
    pub fn blocks(&self) -> u64 {
        self.len.div_ceil(u64::from(self.block))
    }

    /// Blocks per full span.
    pub fn span_blocks(&self) -> u64 {
        u64::from(self.words) * u64::from(self.k)
    }

    pub fn spans(&self) -> u64 {
        self.blocks().div_ceil(self.span_blocks())
    }

    pub fn span(&self, index: u64) -> Span {
        let first = index * self.span_blocks();
        let n = self.blocks().saturating_sub(first).min(self.span_blocks()) as u32;
        let spans = self.spans();
        Span {
            index,
            first,
            n,
            tail_reserve: spans > 1 && index + 1 == spans,
        }
    }

    /// The span holding block `block`.
    pub fn span_of(&self, block: u64) -> u64 {
        block / self.span_blocks()
    }

    /// Data blocks of word `w` in `span`.
    pub fn word_data(&self, span: &Span, w: u32) -> u32 {
        (span.n + self.words - 1 - w) / self.words
    }

    /// Parity blocks kept for word `w` of `span`: `⌈level × k_w⌉`, at most
    /// `m` (or `min(m, k_w)` in a tail-reserve span); none for an empty word.
    pub fn word_parity(&self, span: &Span, w: u32) -> u32 {
        let kw = self.word_data(span, w);
        if kw == 0 {
            0
        } else if span.tail_reserve {
            self.m.min(kw)
        } else {
            (kw * self.level_bp).div_ceil(10_000).min(self.m)
        }
    }

    /// Parity blocks of `span`, all words.
    pub fn span_parity(&self, span: &Span) -> u32 {
        (0..self.words).map(|w| self.word_parity(span, w)).sum()
    }

    /// The stream block at position `t` of word `w` in `span`.
    pub fn member(&self, span: &Span, w: u32, t: u32) -> u64 {
        span.first + u64::from(t) * u64::from(self.words) + u64::from(w)
    }

    /// Bytes of one copy of `span`'s table.
    pub fn table_len(&self, span: &Span) -> u64 {
        TABLE_FIXED + DIGEST_LEN * (u64::from(span.n) + u64::from(self.span_parity(span)))
    }

    /// Bytes of `span`'s record: table, parity blocks, table again.
    pub fn record_len(&self, span: &Span) -> u64 {
        2 * self.table_len(span) + u64::from(self.span_parity(span)) * u64::from(self.block)
    }

    /// A full span that is not a stream's last (what the writer knows of
    /// a span before the stream ends): its layout does not depend on `len`.
    pub fn full_span(&self, index: u64) -> Span {
        Span {
            index,
            first: index * self.span_blocks(),
            n: (self.span_blocks()) as u32,
            tail_reserve: false,
        }
    }

    /// Sidecar offset of `span`'s record (every span before it is full).
    pub fn record_offset(&self, span: &Span) -> u64 {
        HEADER_LEN + span.index * self.record_len(&self.full_span(0))
    }

    /// Sidecar offset of parity block `j` of word `w` in `span` (a span's
    /// parity is stored word after word).
    pub fn parity_offset(&self, span: &Span, w: u32, j: u32) -> u64 {
        let before: u64 = (0..w).map(|v| u64::from(self.word_parity(span, v))).sum();
        self.record_offset(span)
            + self.table_len(span)
            + (before + u64::from(j)) * u64::from(self.block)
    }

    /// Bytes of the whole sidecar.
    pub fn sidecar_len(&self) -> u64 {
        let spans = self.spans();
        if spans == 0 {
            return 2 * HEADER_LEN;
        }
        let last = self.span(spans - 1);
        self.record_offset(&last) + self.record_len(&last) + HEADER_LEN
    }

    /// Byte range of block `b` within the stream.
    pub fn block_range(&self, b: u64) -> std::ops::Range<u64> {
        let start = b * u64::from(self.block);
        start..(start + u64::from(self.block)).min(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_the_documented_levels() {
        assert_eq!(code(500), (960, 48, 64));
        assert_eq!(code(1000), (896, 90, 128));
        assert_eq!(code(100), (1008, 11, 16));
        assert_eq!(code(5000), (512, 256, 512));
        for bp in MIN_LEVEL_BP..=MAX_LEVEL_BP {
            let (k, m, s) = code(bp);
            assert!(m <= s && k + s == WORD_SPAN && m >= 1, "{bp}");
            assert!(
                u64::from(m) * 10_000 >= u64::from(k) * u64::from(bp),
                "{bp}"
            );
        }
    }

    #[test]
    fn default_memory_gives_24_words_at_5_percent() {
        assert_eq!(Geometry::words_for_memory(500, 16 << 10, 48 << 20), 24);
        assert_eq!(Geometry::words_for_memory(1000, 16 << 10, 48 << 20), 12);
        assert_eq!(Geometry::words_for_memory(500, 16 << 10, 1), 1);
    }

    #[test]
    fn spans_cover_every_block_once_and_offsets_follow_lengths() {
        for len in [0u64, 1, 4095, 4096, 4097, 10 << 20, 123_456_789] {
            for words in [1, 3, 24] {
                let g = Geometry::new(500, 4096, words, len).unwrap();
                let mut next = 0;
                let mut offset = HEADER_LEN;
                for i in 0..g.spans() {
                    let span = g.span(i);
                    assert_eq!(span.first, next);
                    assert!(span.n > 0);
                    let data: u32 = (0..words).map(|w| g.word_data(&span, w)).sum();
                    assert_eq!(data, span.n);
                    assert_eq!(g.record_offset(&span), offset);
                    offset += g.record_len(&span);
                    next += u64::from(span.n);
                    for w in 0..words {
                        assert!(g.word_parity(&span, w) <= g.m);
                    }
                }
                assert_eq!(next, g.blocks());
                assert_eq!(g.sidecar_len(), offset + HEADER_LEN);
            }
        }
    }

    #[test]
    fn bad_geometries_are_refused() {
        assert_eq!(Geometry::new(99, 4096, 1, 0), Err(BadGeometry::Level(99)));
        assert_eq!(
            Geometry::new(500, 4095, 1, 0),
            Err(BadGeometry::Block(4095))
        );
        assert_eq!(Geometry::new(500, 4096, 0, 0), Err(BadGeometry::Words(0)));
        assert_eq!(
            Geometry::new(500, 4096, 4097, 0),
            Err(BadGeometry::Words(4097))
        );
        // 4096 words at 50% over 64 KiB blocks would let a crafted header
        // make a reader hold 64 GiB of rebuilt blocks (found by review):
        // over the memory cap, refused.
        assert_eq!(
            Geometry::new(5000, 65536, 4096, 0),
            Err(BadGeometry::Words(4096))
        );
        // Two buffers of 512 blocks of 64 KiB per word: 16 words in 1 GiB.
        assert!(Geometry::new(5000, 65536, 16, 0).is_ok());
        assert!(Geometry::new(5000, 65536, 17, 0).is_err());
        assert_eq!(Geometry::words_for_memory(5000, 65536, u64::MAX), 16);
        assert_eq!(
            Geometry::new(500, 4096, 1, MAX_LEN + 1),
            Err(BadGeometry::Len(MAX_LEN + 1))
        );
    }
}
