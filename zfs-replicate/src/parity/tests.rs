//! Host tests of the whole sidecar: written, damaged, checked, repaired.
//!
//! What every damage should come to is computed here by [`Model`], from
//! the documented rules alone (mod.rs, geometry.rs and format.rs docs),
//! without calling geometry.rs: which blocks and sidecar regions differ
//! from the originals, which code word each falls in, and each word's
//! parity. Randomness is a seeded xorshift ([`Rng`]); `ZPAR_SEED=n` reruns
//! a failure, whose seed and trial are printed.

use std::collections::BTreeSet;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;
use crate::stream::tests::synthetic_stream;

pub(crate) struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        Dir::under(&std::env::temp_dir(), tag)
    }

    /// In `/dev/shm` when there is one (repairs sync every file they
    /// write), else in the temporary directory.
    fn fast(tag: &str) -> Dir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            let probe = shm.join(format!(".zpar-probe-{}", std::process::id()));
            if std::fs::write(&probe, b"").is_ok() {
                let _ = std::fs::remove_file(&probe);
                return Dir::under(shm, tag);
            }
        }
        Dir::new(tag)
    }

    fn under(parent: &Path, tag: &str) -> Dir {
        let d = parent.join(format!("zpar-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// The names in the directory.
    fn names(&self) -> BTreeSet<String> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn damage(path: &Path, at: u64, len: usize) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0x5a; len], at).unwrap();
}

#[test]
fn a_hole_within_the_level_is_repaired_and_one_beyond_is_refused() {
    let dir = Dir::new("hole");
    let path = dir.0.join("s.zstream");
    let stream = synthetic_stream(4 << 20, 7);
    std::fs::write(&path, &stream).unwrap();
    let parity = Parity::percent(5).unwrap().block_size(4096).unwrap();
    let sidecar = create_sidecar(&path, &parity).unwrap();
    assert!(matches!(
        check_file(&path).unwrap(),
        Condition::Intact { .. }
    ));
    // A hole of exactly the guarantee.
    let hole = sidecar.hole_bytes as usize - 4096 + 1;
    damage(&path, 100_000, hole);
    match check_file(&path).unwrap() {
        Condition::Repairable { damaged, .. } => assert!(damaged.bytes >= hole as u64),
        other => panic!("{other:?}"),
    }
    let repaired = repair_file(&path).unwrap();
    assert!(!repaired.repaired.is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), stream);
    assert!(matches!(
        check_file(&path).unwrap(),
        Condition::Intact { .. }
    ));
    // One block more than the guarantee, aligned: unrecoverable, unchanged.
    damage(&path, 4096, sidecar.hole_bytes as usize + 4096);
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        check_file(&path).unwrap(),
        Condition::Unrecoverable { .. }
    ));
    assert!(matches!(
        repair_file(&path),
        Err(crate::Error::Unrecoverable { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

// ---------------------------------------------------------------------
// Deterministic randomness, and saying where a failure happened.

/// xorshift64*, seeded through splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn range(&mut self, r: Range<u64>) -> u64 {
        r.start + self.below(r.end - r.start)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    /// `n` bytes, none zero (XORed in, each changes its byte).
    fn nonzero(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend(self.next().to_le_bytes().map(|b| b | 1));
        }
        v.truncate(n);
        v
    }

    /// `count` distinct values of `0..n`.
    fn distinct(&mut self, n: u64, count: u64) -> Vec<u64> {
        assert!(count <= n);
        let mut set = BTreeSet::new();
        while (set.len() as u64) < count {
            set.insert(self.below(n));
        }
        set.into_iter().collect()
    }
}

/// The seed of a test: `ZPAR_SEED` (decimal or 0x hex) or its own.
fn seed(own: u64) -> u64 {
    match std::env::var("ZPAR_SEED") {
        Ok(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        }
        .expect("ZPAR_SEED: a number"),
        Err(_) => own,
    }
}

/// Prints what was under test when a panic unwinds through it.
struct Context(String);

impl Drop for Context {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("FAILED at {} (rerun: ZPAR_SEED=<seed> cargo test)", self.0);
        }
    }
}

// ---------------------------------------------------------------------
// The model: the code and the layout from the documented rules.

/// Bytes of a sidecar header copy.
const HEADER: u64 = 4096;

/// A sidecar's code and layout, computed from the documentation.
#[derive(Debug, Clone, Copy)]
struct Model {
    block: u64,
    level_bp: u64,
    k: u64,
    m: u64,
    words: u64,
    len: u64,
}

impl Model {
    /// A level's code: the smallest power of two `s` such that
    /// `m = ⌈level × (1024 − s)⌉ ≤ s`; a full word has `k = 1024 − s` data
    /// blocks and `m` parity blocks.
    fn code(level_bp: u64) -> (u64, u64, u64) {
        let mut s = 1;
        loop {
            let k = 1024 - s;
            let m = (k * level_bp).div_ceil(10_000);
            if m <= s {
                return (k, m, s);
            }
            s *= 2;
        }
    }

    /// What `create_sidecar` makes of a stream of `len` bytes: words enough
    /// for a span 1.25 times the stream, at most what `memory` holds (two
    /// buffers of `s` blocks per word; at most 4096 words and 2²² blocks a
    /// span), at least one.
    fn new(percent: u64, block: u64, memory: u64, len: u64) -> Model {
        let level_bp = percent * 100;
        let (k, m, s) = Self::code(level_bp);
        let most = (memory / (2 * s * block))
            .min(4096)
            .min((1 << 22) / k)
            .max(1);
        let wanted = (len + len / 4).div_ceil(block).div_ceil(k).max(1);
        Model {
            block,
            level_bp,
            k,
            m,
            words: wanted.min(most),
            len,
        }
    }

    fn blocks(&self) -> u64 {
        self.len.div_ceil(self.block)
    }

    fn span_blocks(&self) -> u64 {
        self.words * self.k
    }

    fn spans(&self) -> u64 {
        self.blocks().div_ceil(self.span_blocks())
    }

    /// Blocks of span `i`.
    fn n(&self, i: u64) -> u64 {
        (self.blocks() - i * self.span_blocks()).min(self.span_blocks())
    }

    /// The last span of a stream of several keeps `min(m, k_w)` parity.
    fn reserve(&self, i: u64) -> bool {
        self.spans() > 1 && i + 1 == self.spans()
    }

    /// Data blocks of word `w` in span `i`: the `j < n` with `j mod words = w`.
    fn data(&self, i: u64, w: u64) -> u64 {
        let n = self.n(i);
        if w < n {
            (n - w).div_ceil(self.words)
        } else {
            0
        }
    }

    /// Parity of word `w` in span `i`: `⌈level × k_w⌉` at most `m`, or
    /// `min(m, k_w)` in the last of several spans; none without data.
    fn parity(&self, i: u64, w: u64) -> u64 {
        let kw = self.data(i, w);
        if kw == 0 {
            0
        } else if self.reserve(i) {
            self.m.min(kw)
        } else {
            (kw * self.level_bp).div_ceil(10_000).min(self.m)
        }
    }

    fn span_parity(&self, i: u64) -> u64 {
        (0..self.words).map(|w| self.parity(i, w)).sum()
    }

    /// table = record header (64) | digests of data and parity (16 each) |
    /// BLAKE3 (32).
    fn table_len(&self, i: u64) -> u64 {
        64 + 16 * (self.n(i) + self.span_parity(i)) + 32
    }

    /// Every span before span `i` is full (non-last: `words × m` parity).
    fn record_at(&self, i: u64) -> u64 {
        let parity = self.words * self.m;
        let full = 2 * (96 + 16 * (self.span_blocks() + parity)) + parity * self.block;
        HEADER + i * full
    }

    /// The two copies of span `i`'s table: record = table | parity | table.
    fn tables(&self, i: u64) -> [Range<u64>; 2] {
        let at = self.record_at(i);
        let t = self.table_len(i);
        let p = self.span_parity(i) * self.block;
        [at..at + t, at + t + p..at + 2 * t + p]
    }

    /// Parity blocks of span `i`, word after word: `(word, j, bytes)`.
    fn parity_blocks(&self, i: u64) -> Vec<(u64, u64, Range<u64>)> {
        let mut at = self.record_at(i) + self.table_len(i);
        let mut v = Vec::new();
        for w in 0..self.words {
            for j in 0..self.parity(i, w) {
                v.push((w, j, at..at + self.block));
                at += self.block;
            }
        }
        v
    }

    fn sidecar_len(&self) -> u64 {
        match self.spans() {
            0 => 2 * HEADER,
            n => {
                let l = n - 1;
                self.record_at(l)
                    + 2 * self.table_len(l)
                    + self.span_parity(l) * self.block
                    + HEADER
            }
        }
    }

    fn block_range(&self, b: u64) -> Range<u64> {
        b * self.block..((b + 1) * self.block).min(self.len)
    }

    /// Stream block `t` of word `w` in span `i`.
    fn member(&self, i: u64, w: u64, t: u64) -> u64 {
        i * self.span_blocks() + t * self.words + w
    }

    /// The longest run of blocks every span survives wherever it lies: a
    /// run of `h` blocks puts at most `⌈h / words⌉` in a word (and at most
    /// the word's data). A full span, and the last of several (whose words
    /// keep `min(m, k_w)`), survive `words × m`; a stream of one span
    /// survives its smallest word parity times its words.
    fn hole_blocks(&self) -> u64 {
        if self.spans() > 1 {
            return self.words * self.m;
        }
        let n = self.n(0);
        let used = self.words.min(n);
        let least = (0..used).map(|w| self.parity(0, w)).min().unwrap_or(0);
        least * used
    }
}

/// What a check should find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Intact,
    Repairable,
    Unrecoverable,
}

#[derive(Debug)]
struct Expected {
    verdict: Verdict,
    sidecar: Vec<SidecarDamage>,
    /// Damaged stream bytes (when repairable): whole blocks, bytes past
    /// the end.
    damaged: u64,
    margin: Margin,
    why: Vec<Unrecoverable>,
}

fn differs(orig: &[u8], cur: &[u8], r: Range<u64>) -> bool {
    let r = r.start as usize..r.end as usize;
    cur.len() < r.end || cur[r.clone()] != orig[r]
}

/// The verdict on stream `cur` (originally `orig`) with sidecar `csc`
/// (originally `osc`, same length): per span, with a readable table, the
/// damaged data and parity blocks of each word against its parity.
fn expect(g: &Model, orig: &[u8], cur: &[u8], osc: &[u8], csc: &[u8]) -> Expected {
    assert_eq!(
        osc.len(),
        csc.len(),
        "the model damages the sidecar in place"
    );
    let sc = osc.len() as u64;
    let mut sidecar = Vec::new();
    let h0 = differs(osc, csc, 0..HEADER);
    let h1 = differs(osc, csc, sc - HEADER..sc);
    if h0 {
        sidecar.push(SidecarDamage::Header { copy: 0 });
    }
    if h1 {
        sidecar.push(SidecarDamage::Header { copy: 1 });
    }
    let mut margin = Margin {
        damaged_words: 0,
        least_spare: u32::MAX,
    };
    // The stream's blocks that differ (or are cut short).
    let bad: Vec<bool> = (0..g.blocks())
        .map(|b| differs(orig, cur, g.block_range(b)))
        .collect();
    let covered_same = !bad.contains(&true);
    let stream_same = covered_same && cur.len() == orig.len();
    if h0 && h1 {
        // Nothing locates damage: only an intact stream is sound.
        let same = stream_same;
        return Expected {
            verdict: if same {
                Verdict::Intact
            } else {
                Verdict::Unrecoverable
            },
            sidecar,
            damaged: 0,
            margin,
            why: if same {
                Vec::new()
            } else {
                vec![Unrecoverable::HeaderLost]
            },
        };
    }
    let mut why = Vec::new();
    let mut lost = Vec::new();
    let mut damaged = 0;
    let words = g.words as usize;
    for i in 0..g.spans() {
        // A span wholly past the file's end: all its data is lost; the scan
        // stops at its first word that has less parity than data.
        let start = i * g.span_blocks() * g.block;
        if start >= cur.len() as u64 {
            let words_used = g.words.min(g.n(i));
            if let Some(w) = (0..words_used).find(|&w| g.parity(i, w) < g.data(i, w)) {
                damaged += g.len - start;
                why.push(Unrecoverable::TooManyDamaged {
                    span: i,
                    word: w as u32,
                    damaged: g.data(i, w) as u32,
                    parity: g.parity(i, w) as u32,
                });
                break;
            }
        }
        let [t0, t1] = g.tables(i);
        let (b0, b1) = (differs(osc, csc, t0), differs(osc, csc, t1));
        for (copy, bad) in [(0u8, b0), (1, b1)] {
            if bad {
                sidecar.push(SidecarDamage::Table { span: i, copy });
            }
        }
        if b0 && b1 {
            lost.push(i);
            continue;
        }
        let mut data = vec![0u64; words];
        let mut parity = vec![0u64; words];
        for j in 0..g.n(i) {
            let r = g.block_range(i * g.span_blocks() + j);
            if bad[(i * g.span_blocks() + j) as usize] {
                data[(j % g.words) as usize] += 1;
                damaged += r.end - r.start;
            }
        }
        let mut bad_parity = 0;
        for (w, _, r) in g.parity_blocks(i) {
            if differs(osc, csc, r) {
                parity[w as usize] += 1;
                bad_parity += 1;
            }
        }
        if bad_parity > 0 {
            sidecar.push(SidecarDamage::Parity {
                span: i,
                blocks: bad_parity,
            });
        }
        for w in 0..g.words {
            let p = g.parity(i, w);
            let l = data[w as usize] + parity[w as usize];
            if l > p {
                why.push(Unrecoverable::TooManyDamaged {
                    span: i,
                    word: w as u32,
                    damaged: l as u32,
                    parity: p as u32,
                });
            } else if data[w as usize] > 0 {
                margin.damaged_words += 1;
                margin.least_spare = margin.least_spare.min((p - l) as u32);
            }
        }
    }
    let len = g.len as usize;
    if cur.len() > len {
        damaged += (cur.len() - len) as u64;
    }
    // A span without a table is known intact only if the stream verifies.
    if !covered_same {
        why.extend(
            lost.into_iter()
                .map(|span| Unrecoverable::TablesLost { span }),
        );
    }
    if margin.damaged_words == 0 {
        margin.least_spare = 0;
    }
    let verdict = if !why.is_empty() {
        Verdict::Unrecoverable
    } else if !stream_same {
        Verdict::Repairable
    } else {
        Verdict::Intact
    };
    Expected {
        verdict,
        sidecar,
        damaged,
        margin,
        why,
    }
}

fn assert_condition(got: &Condition, e: &Expected) {
    match (got, e.verdict) {
        (Condition::Intact { sidecar, .. }, Verdict::Intact) => {
            assert_eq!(sidecar, &e.sidecar, "sidecar damage");
        }
        (
            Condition::Repairable {
                damaged,
                margin,
                sidecar,
            },
            Verdict::Repairable,
        ) => {
            assert_eq!(damaged.bytes, e.damaged, "damaged bytes");
            assert_eq!(margin, &e.margin, "margin");
            assert_eq!(sidecar, &e.sidecar, "sidecar damage");
        }
        (Condition::Unrecoverable { why, sidecar, .. }, Verdict::Unrecoverable) => {
            assert_eq!(why, &e.why, "why");
            assert_eq!(sidecar, &e.sidecar, "sidecar damage");
        }
        _ => panic!("expected {e:?}, check_file found {got:?}"),
    }
}

/// That the sidecar bytes `sc` have the model's layout: its length, and at
/// each span's table copies a record header (magic, span, first block,
/// blocks, parity count, block size, level, words) as format.rs describes.
fn assert_layout(g: &Model, sc: &[u8]) {
    assert_eq!(sc.len() as u64, g.sidecar_len(), "sidecar length");
    assert_eq!(&sc[..8], b"\x89ZPAR\r\n\x1a");
    assert_eq!(sc[..HEADER as usize], sc[sc.len() - HEADER as usize..]);
    let u32_at = |at: usize| u32::from_le_bytes(sc[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(sc[at..at + 8].try_into().unwrap());
    let u16_at = |at: usize| u16::from_le_bytes(sc[at..at + 2].try_into().unwrap());
    assert_eq!(u64::from(u32_at(12)), g.block);
    assert_eq!(u64_at(16), g.len);
    assert_eq!(u64::from(u16_at(24)), g.level_bp);
    assert_eq!(u64::from(u16_at(26)), g.words);
    assert_eq!(u64::from(u16_at(28)), g.k);
    assert_eq!(u64::from(u16_at(30)), g.m);
    assert_eq!(u64_at(32), g.spans());
    assert_eq!(u64_at(40), g.sidecar_len());
    for i in 0..g.spans() {
        let [a, b] = g.tables(i);
        let (a, b) = (
            a.start as usize..a.end as usize,
            b.start as usize..b.end as usize,
        );
        assert_eq!(sc[a.clone()], sc[b], "span {i}: two equal table copies");
        let at = a.start;
        assert_eq!(&sc[at..at + 4], b"ZPSR", "span {i}");
        assert_eq!(u64_at(at + 8), i);
        assert_eq!(u64_at(at + 16), i * g.span_blocks());
        assert_eq!(u64::from(u32_at(at + 24)), g.n(i));
        assert_eq!(
            u64::from(u32_at(at + 28)),
            g.span_parity(i),
            "span {i} parity"
        );
        assert_eq!(u64::from(u32_at(at + 32)), g.block);
        assert_eq!(u64::from(u16_at(at + 36)), g.level_bp);
        assert_eq!(u64::from(u16_at(at + 38)), g.words);
    }
}

/// That `Sidecar` reports the model's code and guarantee.
fn assert_sidecar(g: &Model, s: &Sidecar) {
    assert_eq!(u64::from(s.words), g.words, "words");
    assert_eq!(u64::from(s.block), g.block);
    assert_eq!(u64::from(s.level_percent) * 100, g.level_bp);
    assert_eq!(s.bytes, g.sidecar_len(), "sidecar bytes");
    assert_eq!(s.span_bytes, g.span_blocks() * g.block);
    assert_eq!(s.hole_bytes, g.hole_blocks() * g.block, "hole bytes");
}

/// A stream of a BEGIN and an END record only (624 bytes), written as
/// `dump_record()` does: fletcher-4 over each record's first 280 bytes,
/// stored at 280 (not in BEGIN), then over the stored checksum.
fn tiny_stream(guid: u64) -> Vec<u8> {
    fn fletcher(ck: &mut [u64; 4], bytes: &[u8]) {
        for w in bytes.chunks_exact(4) {
            let w = u64::from(u32::from_le_bytes(w.try_into().unwrap()));
            ck[0] = ck[0].wrapping_add(w);
            ck[1] = ck[1].wrapping_add(ck[0]);
            ck[2] = ck[2].wrapping_add(ck[1]);
            ck[3] = ck[3].wrapping_add(ck[2]);
        }
    }
    let mut ck = [0u64; 4];
    let mut begin = [0u8; 312];
    begin[8..16].copy_from_slice(&0x2_f5ba_cbacu64.to_le_bytes()); // DMU_BACKUP_MAGIC
    begin[16..24].copy_from_slice(&1u64.to_le_bytes()); // DMU_SUBSTREAM
    begin[24..32].copy_from_slice(&1_700_000_000u64.to_le_bytes());
    begin[32..36].copy_from_slice(&2u32.to_le_bytes()); // DMU_OST_ZFS
    begin[40..48].copy_from_slice(&guid.to_le_bytes());
    let name = b"tank/tiny@test";
    begin[56..56 + name.len()].copy_from_slice(name);
    fletcher(&mut ck, &begin);
    let mut end = [0u8; 312];
    end[0..4].copy_from_slice(&5u32.to_le_bytes()); // DRR_END
    for (i, v) in ck.iter().enumerate() {
        end[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    end[40..48].copy_from_slice(&guid.to_le_bytes());
    fletcher(&mut ck, &end[..280]);
    for (i, v) in ck.iter().enumerate() {
        end[280 + 8 * i..288 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    let mut out = begin.to_vec();
    out.extend_from_slice(&end);
    out
}

// ---------------------------------------------------------------------
// A stream file and its sidecar, damaged and restored trial after trial.

struct Bench {
    dir: Dir,
    path: PathBuf,
    side: PathBuf,
    g: Model,
    sidecar: Sidecar,
    orig: Vec<u8>,
    osc: Vec<u8>,
    /// What the files hold now.
    cur: Vec<u8>,
    csc: Vec<u8>,
    /// Ranges of the originals changed (a cut tail included).
    touched: Vec<Range<usize>>,
    touched_sc: Vec<Range<usize>>,
    /// Buffers the files are read back into.
    read_buf: Vec<u8>,
    read_buf_sc: Vec<u8>,
}

/// The file at `path`, into `buf` (its allocation reused).
fn read_into(path: &Path, buf: &mut Vec<u8>) {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path).unwrap().read_to_end(buf).unwrap();
}

impl Bench {
    fn new(tag: &str, stream: Vec<u8>, percent: u64, block: u64, memory: u64) -> Bench {
        let dir = Dir::fast(tag);
        let path = dir.0.join("s.zstream");
        let side = sidecar_path(&path);
        std::fs::write(&path, &stream).unwrap();
        let parity = Parity::percent(percent as u32)
            .unwrap()
            .block_size(block as u32)
            .unwrap()
            .memory(memory)
            .unwrap();
        let sidecar = create_sidecar(&path, &parity).unwrap();
        let osc = std::fs::read(&side).unwrap();
        let g = Model::new(percent, block, memory, stream.len() as u64);
        assert_layout(&g, &osc);
        assert_sidecar(&g, &sidecar);
        Bench {
            dir,
            path,
            side,
            g,
            sidecar,
            cur: stream.clone(),
            orig: stream,
            csc: osc.clone(),
            osc,
            touched: Vec::new(),
            touched_sc: Vec::new(),
            read_buf: Vec::new(),
            read_buf_sc: Vec::new(),
        }
    }

    fn open(path: &Path) -> std::fs::File {
        std::fs::OpenOptions::new().write(true).open(path).unwrap()
    }

    /// XORs `bytes` into the stream at `at` (within its current length).
    fn xor(&mut self, at: u64, bytes: &[u8]) {
        let r = at as usize..(at as usize + bytes.len()).min(self.cur.len());
        if r.is_empty() {
            return;
        }
        for (c, x) in self.cur[r.clone()].iter_mut().zip(bytes) {
            *c ^= x;
        }
        Self::open(&self.path)
            .write_all_at(&self.cur[r.clone()], r.start as u64)
            .unwrap();
        self.touched.push(r);
    }

    fn zero(&mut self, at: u64, len: u64) {
        let r = at as usize..((at + len) as usize).min(self.cur.len());
        if r.is_empty() {
            return;
        }
        self.cur[r.clone()].fill(0);
        Self::open(&self.path)
            .write_all_at(&self.cur[r.clone()], r.start as u64)
            .unwrap();
        self.touched.push(r);
    }

    fn truncate(&mut self, len: u64) {
        let len = len as usize;
        if len >= self.cur.len() {
            return;
        }
        self.touched.push(len..self.cur.len().min(self.orig.len()));
        self.cur.truncate(len);
        Self::open(&self.path).set_len(len as u64).unwrap();
    }

    fn append(&mut self, bytes: &[u8]) {
        let at = self.cur.len() as u64;
        self.cur.extend_from_slice(bytes);
        Self::open(&self.path).write_all_at(bytes, at).unwrap();
    }

    /// XORs `bytes` into the sidecar at `at`.
    fn xor_sidecar(&mut self, at: u64, bytes: &[u8]) {
        let r = at as usize..at as usize + bytes.len();
        for (c, x) in self.csc[r.clone()].iter_mut().zip(bytes) {
            *c ^= x;
        }
        Self::open(&self.side)
            .write_all_at(&self.csc[r.clone()], r.start as u64)
            .unwrap();
        self.touched_sc.push(r);
    }

    /// Changes 1 to 4 bytes of the sidecar within `r`.
    fn spoil_sidecar(&mut self, rng: &mut Rng, r: Range<u64>) {
        for _ in 0..rng.range(1..5) {
            let at = rng.range(r.clone());
            let x = rng.nonzero(1);
            self.xor_sidecar(at, &x);
        }
    }

    /// Changes one byte of stream block `b`.
    fn spoil_block(&mut self, rng: &mut Rng, b: u64) {
        let r = self.g.block_range(b);
        let at = rng.range(r);
        let x = rng.nonzero(1);
        self.xor(at, &x);
    }

    /// Changes every byte of `len` bytes at `at`.
    fn hole(&mut self, rng: &mut Rng, at: u64, len: u64) {
        let x = rng.nonzero(len as usize);
        self.xor(at, &x);
    }

    fn expect(&self) -> Expected {
        expect(&self.g, &self.orig, &self.cur, &self.osc, &self.csc)
    }

    /// Checks and repairs the files as they are now against `e`: the
    /// check's verdict and details, then either a byte-exact repair (the
    /// sidecar too) or a refusal that changed nothing; no file left
    /// behind either way.
    fn judge(&mut self, e: &Expected) {
        let got = check_file(&self.path).unwrap();
        assert_condition(&got, e);
        let result = repair_file(&self.path);
        let mut stream = std::mem::take(&mut self.read_buf);
        let mut side = std::mem::take(&mut self.read_buf_sc);
        read_into(&self.path, &mut stream);
        read_into(&self.side, &mut side);
        match e.verdict {
            Verdict::Unrecoverable => {
                match &result {
                    Err(crate::Error::Unrecoverable { why, .. }) => {
                        assert_eq!(why, &e.why, "repair_file's why");
                    }
                    other => panic!("repair_file of an unrecoverable file: {other:?}"),
                }
                assert!(stream == self.cur, "a refused repair changed the stream");
                assert!(side == self.csc, "a refused repair changed the sidecar");
            }
            Verdict::Intact | Verdict::Repairable => {
                let r = match result {
                    Ok(r) => r,
                    Err(err) => panic!("repair_file: {err}"),
                };
                assert!(stream == self.orig, "the repaired stream differs");
                assert!(side == self.osc, "the sidecar differs from the original");
                assert_eq!(r.sidecar, e.sidecar, "repair_file's sidecar damage");
                if e.verdict == Verdict::Repairable {
                    assert_eq!(r.repaired.bytes, e.damaged, "repaired bytes");
                } else {
                    assert!(r.repaired.is_empty());
                }
            }
        }
        let names: Vec<String> = self.dir.names().into_iter().collect();
        assert_eq!(names, ["s.zstream", "s.zstream.zpar"], "files left behind");
        self.read_buf = stream;
        self.read_buf_sc = side;
    }

    /// The originals again, in memory and on disk.
    fn restore(&mut self) {
        let n = self.orig.len();
        self.cur.truncate(n);
        let have = self.cur.len();
        self.cur.extend_from_slice(&self.orig[have..]);
        let f = Self::open(&self.path);
        f.set_len(n as u64).unwrap();
        for r in self.touched.drain(..) {
            let r = r.start.min(n)..r.end.min(n);
            self.cur[r.clone()].copy_from_slice(&self.orig[r.clone()]);
            f.write_all_at(&self.orig[r.clone()], r.start as u64)
                .unwrap();
        }
        let f = Self::open(&self.side);
        f.set_len(self.osc.len() as u64).unwrap();
        for r in self.touched_sc.drain(..) {
            self.csc[r.clone()].copy_from_slice(&self.osc[r.clone()]);
            f.write_all_at(&self.osc[r.clone()], r.start as u64)
                .unwrap();
        }
    }

    /// A random word of a random span with a readable table: `(span, word)`.
    fn some_word(&self, rng: &mut Rng) -> (u64, u64) {
        let i = rng.below(self.g.spans());
        let w = rng.below(self.g.words.min(self.g.n(i)));
        (i, w)
    }

    /// Damages `count` data blocks of word `w` in span `i`.
    fn spoil_word(&mut self, rng: &mut Rng, i: u64, w: u64, count: u64) {
        for t in rng.distinct(self.g.data(i, w), count) {
            let b = self.g.member(i, w, t);
            self.spoil_block(rng, b);
        }
    }

    /// Damages `count` parity blocks of word `w` in span `i`.
    fn spoil_parity(&mut self, rng: &mut Rng, i: u64, w: u64, count: u64) {
        let blocks: Vec<Range<u64>> = self
            .g
            .parity_blocks(i)
            .into_iter()
            .filter(|(v, _, _)| *v == w)
            .map(|(_, _, r)| r)
            .collect();
        for j in rng.distinct(blocks.len() as u64, count) {
            let r = blocks[j as usize].clone();
            self.spoil_sidecar(rng, r);
        }
    }
}

// ---------------------------------------------------------------------
// 1. Damage at 1,000 random positions.

const KINDS: [&str; 19] = [
    "bit flips",
    "zeroed runs",
    "hole of 1%",
    "hole of the guarantee (any offset)",
    "hole of Sidecar::hole_bytes (aligned)",
    "hole one block beyond, in one word",
    "one word at its parity",
    "one word one beyond its parity",
    "cut tail",
    "tail cut by the guarantee",
    "bytes appended",
    "a header copy",
    "both header copies",
    "a table copy",
    "both table copies of a span",
    "parity blocks",
    "parity and data of one word at its parity",
    "parity and data of one word one beyond",
    "mixed",
];

/// Applies damage of kind `kind` (an index of [`KINDS`]); what it must
/// come to, when the kind decides it.
fn apply(b: &mut Bench, rng: &mut Rng, kind: usize) -> Option<Verdict> {
    let g = b.g;
    let len = b.orig.len() as u64;
    let bs = g.block;
    let nb = g.blocks();
    let hole = b.sidecar.hole_bytes / bs;
    match KINDS[kind] {
        "bit flips" => {
            for _ in 0..rng.range(1..9) {
                let at = rng.below(len);
                b.xor(at, &[1 << rng.below(8)]);
            }
            None
        }
        "zeroed runs" => {
            for _ in 0..rng.range(1..4) {
                let n = rng.range(1..4 * bs + 1);
                let at = rng.below(len - n);
                b.zero(at, n);
            }
            None
        }
        "hole of 1%" => {
            let n = len / 100;
            let at = rng.below(len - n + 1);
            b.hole(rng, at, n);
            None
        }
        "hole of the guarantee (any offset)" => {
            // Touches at most `hole` blocks wherever it starts.
            let n = (hole * bs + 1 - bs).min(len);
            let at = rng.below(len - n + 1);
            b.hole(rng, at, n);
            Some(Verdict::Repairable)
        }
        "hole of Sidecar::hole_bytes (aligned)" => {
            let first = rng.below(nb - hole.min(nb) + 1);
            let at = first * bs;
            b.hole(rng, at, b.sidecar.hole_bytes.min(len - at));
            Some(Verdict::Repairable)
        }
        "hole one block beyond, in one word" => {
            // `hole + 1` blocks in one span, from a block of a word with the
            // least parity: that word loses one more than it has.
            let spans: Vec<u64> = (0..g.spans()).filter(|&i| g.n(i) > hole).collect();
            if spans.is_empty() {
                return apply(b, rng, kind + 2);
            }
            let i = spans[rng.below(spans.len() as u64) as usize];
            let used = g.words.min(g.n(i));
            let least = (0..used).map(|w| g.parity(i, w)).min().unwrap();
            let candidates: Vec<u64> = (0..used).filter(|&w| g.parity(i, w) == least).collect();
            let w = candidates[rng.below(candidates.len() as u64) as usize];
            let last_start = g.n(i) - hole - 1;
            if w > last_start {
                return apply(b, rng, kind + 2);
            }
            let j = rng.below((last_start - w) / g.words + 1) * g.words + w;
            let first = i * g.span_blocks() + j;
            let end = g.block_range(first + hole).end;
            b.hole(rng, first * bs, end - first * bs);
            Some(Verdict::Unrecoverable)
        }
        "one word at its parity" => {
            let (i, w) = b.some_word(rng);
            let p = g.parity(i, w);
            b.spoil_word(rng, i, w, p.min(g.data(i, w)));
            Some(Verdict::Repairable)
        }
        "one word one beyond its parity" => {
            let (i, w) = b.some_word(rng);
            let (p, kw) = (g.parity(i, w), g.data(i, w));
            if kw > p {
                b.spoil_word(rng, i, w, p + 1);
            } else {
                b.spoil_word(rng, i, w, kw);
                b.spoil_parity(rng, i, w, p + 1 - kw);
            }
            Some(Verdict::Unrecoverable)
        }
        "cut tail" => {
            let cut = if rng.coin() {
                rng.range(1..(2 * hole * bs).min(len) + 1)
            } else {
                rng.range(1..len + 1)
            };
            b.truncate(len - cut);
            None
        }
        "tail cut by the guarantee" => {
            // Exactly `hole` blocks lose bytes.
            let lo = nb.saturating_sub(hole) * bs;
            let hi = (lo + bs).min(len);
            b.truncate(rng.range(lo..hi));
            Some(Verdict::Repairable)
        }
        "bytes appended" => {
            let n = rng.range(1..3 * bs + 1);
            let x = rng.nonzero(n as usize);
            b.append(&x);
            Some(Verdict::Repairable)
        }
        "a header copy" => {
            let sc = b.osc.len() as u64;
            let r = if rng.coin() {
                0..HEADER
            } else {
                sc - HEADER..sc
            };
            b.spoil_sidecar(rng, r);
            if rng.coin() {
                apply(b, rng, 0);
            }
            None
        }
        "both header copies" => {
            let sc = b.osc.len() as u64;
            b.spoil_sidecar(rng, 0..HEADER);
            b.spoil_sidecar(rng, sc - HEADER..sc);
            if rng.coin() {
                apply(b, rng, 0);
                Some(Verdict::Unrecoverable)
            } else {
                Some(Verdict::Intact)
            }
        }
        "a table copy" => {
            let i = rng.below(g.spans());
            let copy = rng.below(2) as usize;
            b.spoil_sidecar(rng, g.tables(i)[copy].clone());
            if rng.coin() {
                let j = rng.below(g.n(i));
                b.spoil_block(rng, i * g.span_blocks() + j);
                return Some(Verdict::Repairable);
            }
            Some(Verdict::Intact)
        }
        "both table copies of a span" => {
            let i = rng.below(g.spans());
            let [t0, t1] = g.tables(i);
            b.spoil_sidecar(rng, t0);
            b.spoil_sidecar(rng, t1);
            if rng.coin() {
                // Damage anywhere: nothing can tell it is not in span i.
                let x = rng.below(nb);
                b.spoil_block(rng, x);
                Some(Verdict::Unrecoverable)
            } else {
                Some(Verdict::Intact)
            }
        }
        "parity blocks" => {
            for _ in 0..rng.range(1..9) {
                let (i, w) = b.some_word(rng);
                b.spoil_parity(rng, i, w, 1);
            }
            Some(Verdict::Intact)
        }
        "parity and data of one word at its parity" | "parity and data of one word one beyond" => {
            let beyond = KINDS[kind].ends_with("beyond");
            let (i, w) = b.some_word(rng);
            let (p, kw) = (g.parity(i, w), g.data(i, w));
            let total = p + u64::from(beyond);
            // q parity blocks, the rest data.
            let q = rng.range(total.saturating_sub(kw)..p.min(total) + 1);
            b.spoil_parity(rng, i, w, q);
            b.spoil_word(rng, i, w, total - q);
            Some(if beyond {
                Verdict::Unrecoverable
            } else if total == q {
                Verdict::Intact
            } else {
                Verdict::Repairable
            })
        }
        "mixed" => {
            let simple = [0, 1, 2, 8, 10, 11, 13, 15];
            for _ in 0..rng.range(2..4) {
                let k = simple[rng.below(simple.len() as u64) as usize];
                apply(b, rng, k);
            }
            None
        }
        other => unreachable!("{other}"),
    }
}

fn damage_trials(tag: &str, b: &mut Bench, trials: u64, seed: u64) {
    let started = Instant::now();
    let mut verdicts = std::collections::BTreeMap::new();
    for trial in 0..trials {
        let mut rng = Rng::new(seed ^ trial.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let kind = (trial % KINDS.len() as u64) as usize;
        let _context = Context(format!(
            "{tag}: seed {seed:#x} trial {trial} ({})",
            KINDS[kind]
        ));
        let must = apply(b, &mut rng, kind);
        let e = b.expect();
        if let Some(v) = must {
            assert_eq!(e.verdict, v, "the model's verdict on this damage: {e:?}");
        }
        b.judge(&e);
        *verdicts.entry(format!("{:?}", e.verdict)).or_insert(0) += 1;
        b.restore();
    }
    eprintln!(
        "{tag}: {trials} trials in {:.1} s: {verdicts:?} (stream {} bytes, {} spans, {} words, hole {} blocks)",
        started.elapsed().as_secs_f64(),
        b.orig.len(),
        b.g.spans(),
        b.g.words,
        b.sidecar.hole_bytes / b.g.block,
    );
}

// Two configurations of 500 trials each (they run in parallel): the
// default block size with one span of two words, and 4 KiB blocks in
// three spans whose last is shorter than the hole the others survive.
// About 55 s of one core in all (a check and a repair of 16 MiB each).

#[test]
fn damage_at_random_positions_5_percent_one_span() {
    let seed = seed(0x2a5e_ed05);
    let mut b = Bench::new(
        "trials5",
        synthetic_stream(16 << 20, seed),
        5,
        16384,
        DEFAULT_MEMORY,
    );
    assert_eq!((b.g.spans(), b.g.words), (1, 2));
    damage_trials("5%, 16 KiB blocks, one span", &mut b, 500, seed);
}

#[test]
fn damage_at_random_positions_10_percent_three_spans() {
    let seed = seed(0x2a5e_ed10);
    // Two words of 896 + 90 blocks: spans of 1792 blocks; the last span
    // about 100 blocks, shorter than a full span's hole (180).
    let (_, _, s) = Model::code(1000);
    let memory = 2 * (2 * s * 4096);
    let mut b = Bench::new(
        "trials10",
        synthetic_stream((2 * 1792 + 100) * 4096, seed),
        10,
        4096,
        memory,
    );
    assert_eq!((b.g.spans(), b.g.words), (3, 2));
    assert!(b.g.n(2) < 2 * b.g.m, "a last span shorter than the hole");
    damage_trials("10%, 4 KiB blocks, three spans", &mut b, 500, seed);
}

// ---------------------------------------------------------------------
// 2. The guarantees over block sizes, levels and stream lengths.

/// Changes every byte of `r` in the file at `path` (whose bytes are
/// `orig`).
fn scramble(path: &Path, orig: &[u8], rng: &mut Rng, r: Range<u64>) {
    let r = r.start as usize..r.end as usize;
    let x = rng.nonzero(r.len());
    let bytes: Vec<u8> = orig[r.clone()].iter().zip(&x).map(|(a, b)| a ^ b).collect();
    Bench::open(path)
        .write_all_at(&bytes, r.start as u64)
        .unwrap();
}

/// For every level, each of three streams (two records; one partial span;
/// several spans of one word, the last short): the layout and the total
/// parity are the rule's, the reported guarantee is the model's, a hole
/// of the guarantee at random offsets (any alignment: touching that many
/// blocks; aligned: that many bytes) and the tail cut by it are
/// repaired, and one block more in one word is not.
fn guarantees(block: u64, seed: u64) {
    let started = Instant::now();
    let dir = Dir::fast(&format!("props{block}"));
    let path = dir.0.join("s.zstream");
    let side = sidecar_path(&path);
    let mut rng = Rng::new(seed);
    // One word of 1008 blocks at 1% (of 512 at 50%): 1.1 to 2.3 of the
    // 1% span makes several spans at every level, the last one short.
    let spans_of = if block <= 4096 { 23 } else { 11 };
    let classes = [
        ("tiny", tiny_stream(0x7e57), DEFAULT_MEMORY),
        ("one span", synthetic_stream(2 << 20, seed), DEFAULT_MEMORY),
        (
            "spans",
            synthetic_stream((spans_of * 1008 * block / 10) as usize, seed),
            1,
        ),
    ];
    for (class, stream, memory) in classes {
        std::fs::write(&path, &stream).unwrap();
        let len = stream.len() as u64;
        for percent in [1, 2, 5, 10, 20, 50] {
            let _context = Context(format!(
                "{block}-byte blocks, {percent}%, {class} ({len} bytes): seed {seed:#x}"
            ));
            let _ = std::fs::remove_file(&side);
            let parity = Parity::percent(percent as u32)
                .unwrap()
                .block_size(block as u32)
                .unwrap()
                .memory(memory)
                .unwrap();
            let sidecar = create_sidecar(&path, &parity).unwrap();
            let osc = std::fs::read(&side).unwrap();
            let g = Model::new(percent, block, memory, len);
            assert_layout(&g, &osc);
            assert_sidecar(&g, &sidecar);
            if class == "spans" {
                assert!(g.spans() > 1, "several spans");
                assert!(g.n(g.spans() - 1) < g.span_blocks(), "a short last span");
            }
            // The total parity: ⌈level × k_w⌉ (at most m) per word, min(m,
            // k_w) in the last of several spans; the rest of the sidecar is
            // two headers and two copies of each table.
            let parity_blocks: u64 = (0..g.spans())
                .flat_map(|i| (0..g.words).map(move |w| (i, w)))
                .map(|(i, w)| g.parity(i, w))
                .sum();
            let tables: u64 = (0..g.spans()).map(|i| 2 * g.table_len(i)).sum();
            assert_eq!(
                osc.len() as u64,
                2 * HEADER + tables + parity_blocks * block,
                "total parity"
            );
            if g.spans() > 1 {
                // Every full span: words × m.
                assert_eq!(g.span_parity(0), g.words * g.m);
            }
            let hole = sidecar.hole_bytes / block;
            let nb = g.blocks();
            assert!(hole >= 1);
            // Holes of the guarantee.
            for aligned in [false, true] {
                let r = if aligned {
                    let first = rng.below(nb - hole.min(nb) + 1) * block;
                    first..(first + hole * block).min(len)
                } else {
                    let n = (hole * block + 1 - block).min(len);
                    let at = rng.below(len - n + 1);
                    at..at + n
                };
                scramble(&path, &stream, &mut rng, r.clone());
                match repair_file(&path) {
                    Ok(r) => assert!(!r.repaired.is_empty()),
                    Err(e) => panic!("hole {r:?}: {e}"),
                }
                assert!(std::fs::read(&path).unwrap() == stream, "hole {r:?}");
            }
            // The tail cut by the guarantee: exactly `hole` blocks lose
            // bytes.
            let lo = nb.saturating_sub(hole) * block;
            let cut = rng.range(lo..(lo + block).min(len));
            Bench::open(&path).set_len(cut).unwrap();
            match repair_file(&path) {
                Ok(r) => assert_eq!(r.repaired.bytes, len - lo),
                Err(e) => panic!("tail cut to {cut}: {e}"),
            }
            assert!(std::fs::read(&path).unwrap() == stream, "tail cut to {cut}");
            assert!(std::fs::read(&side).unwrap() == osc);
            // A hole of exactly `hole_bytes` one byte past a block's start
            // touches one block more (the guarantee is in whole blocks):
            // from a word of the least parity of its span, that word is
            // lost.
            let beyond = (0..g.spans()).find_map(|i| {
                let used = g.words.min(g.n(i));
                let least = (0..used).map(|w| g.parity(i, w)).min()?;
                let w = (0..used).find(|&w| g.parity(i, w) == least)?;
                (w + hole < g.n(i)).then(|| i * g.span_blocks() + w)
            });
            if let Some(first) = beyond {
                let at = first * block + 1;
                let r = at..(at + sidecar.hole_bytes).min(len);
                assert!(r.end > (first + hole) * block);
                scramble(&path, &stream, &mut rng, r.clone());
                match check_file(&path).unwrap() {
                    Condition::Unrecoverable { why, .. } => assert!(
                        matches!(why[..], [Unrecoverable::TooManyDamaged { damaged, parity, .. }]
                            if damaged == parity + 1),
                        "{why:?}"
                    ),
                    other => panic!("one block beyond the guarantee: {other:?}"),
                }
                let r = r.start as usize..r.end as usize;
                Bench::open(&path)
                    .write_all_at(&stream[r.clone()], r.start as u64)
                    .unwrap();
            }
        }
    }
    eprintln!(
        "guarantees at {block}-byte blocks: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn guarantees_at_512_byte_blocks() {
    guarantees(512, seed(0x9a5_0512));
}

#[test]
fn guarantees_at_4_kib_blocks() {
    guarantees(4096, seed(0x9a5_4096));
}

#[test]
fn guarantees_at_16_kib_blocks() {
    guarantees(16384, seed(0x9a5_16384));
}

#[test]
fn guarantees_at_64_kib_blocks() {
    guarantees(65536, seed(0x9a5_65536));
}

// ---------------------------------------------------------------------
// 3. Edge cases.

/// A stream file and its sidecar in a directory of their own.
fn pair(tag: &str, stream: &[u8], parity: &Parity) -> (Dir, PathBuf, Vec<u8>) {
    let dir = Dir::fast(tag);
    let path = dir.0.join("s.zstream");
    std::fs::write(&path, stream).unwrap();
    create_sidecar(&path, parity).unwrap();
    let osc = std::fs::read(sidecar_path(&path)).unwrap();
    (dir, path, osc)
}

fn names(dir: &Dir) -> Vec<String> {
    dir.names().into_iter().collect()
}

#[test]
fn a_zero_length_stream_gets_no_sidecar() {
    let dir = Dir::new("empty");
    let path = dir.0.join("s.zstream");
    std::fs::write(&path, b"").unwrap();
    match create_sidecar(&path, &Parity::percent(5).unwrap()) {
        Err(crate::Error::Stream { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(names(&dir), ["s.zstream"]);
}

#[test]
fn a_tiny_stream_is_rebuilt_from_its_parity_alone() {
    // 624 bytes: one block, one word, one parity block.
    let stream = tiny_stream(0x71);
    let (dir, path, osc) = pair("tiny", &stream, &Parity::percent(1).unwrap());
    assert_eq!(osc.len() as u64, Model::new(1, 16384, 0, 624).sidecar_len());
    match check_file(&path).unwrap() {
        Condition::Intact { summary, sidecar } => {
            assert_eq!(summary.total_bytes, 624);
            assert!(sidecar.is_empty());
        }
        other => panic!("{other:?}"),
    }
    for cut in [0, 1, 623] {
        Bench::open(&path).set_len(cut).unwrap();
        assert!(matches!(
            check_file(&path).unwrap(),
            Condition::Repairable { .. }
        ));
        let r = repair_file(&path).unwrap();
        assert_eq!(r.repaired.bytes, 624);
        assert_eq!(std::fs::read(&path).unwrap(), stream);
    }
    // The block and its parity: lost.
    damage(&path, 0, 1);
    let parity_at = HEADER + Model::new(1, 16384, 0, 624).table_len(0);
    damage(&sidecar_path(&path), parity_at, 1);
    assert!(matches!(
        repair_file(&path),
        Err(crate::Error::Unrecoverable { .. })
    ));
    assert_eq!(names(&dir), ["s.zstream", "s.zstream.zpar"]);
}

/// `check_file` and `repair_file` of `path` refuse, naming `want`, and
/// change nothing.
fn assert_refused(dir: &Dir, path: &Path, want: &Unrecoverable) {
    let stream = std::fs::read(path).unwrap();
    let side = std::fs::read(sidecar_path(path)).unwrap();
    match check_file(path).unwrap() {
        Condition::Unrecoverable { why, .. } => assert!(why.contains(want), "{why:?}"),
        other => panic!("expected {want:?}: {other:?}"),
    }
    match repair_file(path) {
        Err(crate::Error::Unrecoverable { why, .. }) => assert!(why.contains(want), "{why:?}"),
        other => panic!("expected {want:?}: {other:?}"),
    }
    assert!(std::fs::read(path).unwrap() == stream, "the stream changed");
    assert!(std::fs::read(sidecar_path(path)).unwrap() == side);
    assert_eq!(names(dir), ["s.zstream", "s.zstream.zpar"]);
}

/// A valid stream beside a sidecar that describes another stream is
/// intact, its sidecar foreign: never "repaired" into the sidecar's
/// stream; `repair_file` leaves it and makes it its own sidecar.
fn assert_foreign(dir: &Dir, path: &Path, sidecar_guid: u64, stream_guid: u64) {
    let stream = std::fs::read(path).unwrap();
    let foreign = SidecarDamage::Foreign {
        sidecar_guid,
        stream_guid,
    };
    match check_file(path).unwrap() {
        Condition::Intact { sidecar, .. } => assert_eq!(sidecar, std::slice::from_ref(&foreign)),
        other => panic!("expected intact, a foreign sidecar: {other:?}"),
    }
    let done = repair_file(path).unwrap();
    assert!(done.repaired.is_empty(), "{done:?}");
    assert_eq!(done.sidecar, [foreign]);
    assert!(std::fs::read(path).unwrap() == stream, "the stream changed");
    match check_file(path).unwrap() {
        Condition::Intact { sidecar, .. } => assert!(sidecar.is_empty(), "{sidecar:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(names(dir), ["s.zstream", "s.zstream.zpar"]);
}

#[test]
fn another_streams_sidecar_is_foreign() {
    let parity = Parity::percent(5).unwrap().block_size(4096).unwrap();
    // (stream, the stream whose sidecar it gets): other data; the same
    // data under another snapshot GUID (its records' checksums differ,
    // one block in 32 and the first); two records under another GUID.
    let cases = [
        (synthetic_stream(1 << 20, 2), synthetic_stream(1 << 20, 4)),
        (synthetic_stream(1 << 20, 2), synthetic_stream(1 << 20, 3)),
        (tiny_stream(0x1), tiny_stream(0x2)),
    ];
    for (i, (stream, other)) in cases.iter().enumerate() {
        let _context = Context(format!("case {i}"));
        assert_eq!(stream.len(), other.len());
        let (dir, path, _) = pair("wrong", other, &parity);
        std::fs::write(&path, stream).unwrap();
        let guid = |s: &[u8]| u64::from_le_bytes(s[40..48].try_into().unwrap());
        assert_foreign(&dir, &path, guid(other), guid(stream));
    }
}

/// A header naming another length (here 0: every byte "past the end"),
/// digest and all: the intact stream was called repairable, and a repair
/// would have fed nothing to a receive (found by review).
#[test]
fn a_sidecar_naming_another_length_is_foreign() {
    let stream = synthetic_stream(1 << 20, 12);
    let parity = Parity::percent(5).unwrap().block_size(4096).unwrap();
    let (dir, path, _) = pair("len0", &stream, &parity);
    let side = sidecar_path(&path);
    let mut sc = std::fs::read(&side).unwrap();
    let mut header = format::Header::parse(&sc[..HEADER as usize]).unwrap();
    header.geometry = geometry::Geometry::new(
        header.geometry.level_bp,
        header.geometry.block,
        header.geometry.words,
        0,
    )
    .unwrap();
    let bytes = header.encode();
    sc.truncate(0);
    sc.extend_from_slice(&bytes);
    sc.extend_from_slice(&bytes);
    std::fs::write(&side, &sc).unwrap();
    let guid = u64::from_le_bytes(stream[40..48].try_into().unwrap());
    assert_foreign(&dir, &path, guid, guid);
}

/// The header copies of the sidecar at `side`, changed by `f` and sealed
/// with their digest again.
fn reseal_headers(side: &Path, f: impl Fn(&mut [u8])) {
    let mut sc = std::fs::read(side).unwrap();
    let h = HEADER as usize;
    let mut header = sc[..h].to_vec();
    f(&mut header);
    let d = blake3::hash(&header[..h - 32]);
    header[h - 32..].copy_from_slice(d.as_bytes());
    let n = sc.len();
    sc[..h].copy_from_slice(&header);
    sc[n - h..].copy_from_slice(&header);
    std::fs::write(side, sc).unwrap();
}

#[test]
fn a_sidecar_recording_another_end_checksum_is_foreign_or_refused() {
    let stream = synthetic_stream(1 << 20, 11);
    let parity = Parity::percent(5).unwrap().block_size(4096).unwrap();
    let (dir, path, _) = pair("endck", &stream, &parity);
    reseal_headers(&sidecar_path(&path), |h| h[72] ^= 1);
    // Intact by itself: the sidecar is another send's.
    let guid = u64::from_le_bytes(stream[40..48].try_into().unwrap());
    let side = std::fs::read(sidecar_path(&path)).unwrap();
    match check_file(&path).unwrap() {
        Condition::Intact { sidecar, .. } => assert_eq!(
            sidecar,
            [SidecarDamage::Foreign {
                sidecar_guid: guid,
                stream_guid: guid
            }]
        ),
        other => panic!("{other:?}"),
    }
    assert!(std::fs::read(sidecar_path(&path)).unwrap() == side);
    // Damaged too: the repair is written, found wrong, and removed.
    damage(&path, 5000, 10);
    let before = std::fs::read(&path).unwrap();
    match repair_file(&path) {
        Err(crate::Error::Unrecoverable { why, .. }) => assert!(
            matches!(why[..], [Unrecoverable::StreamChecksum { .. }]),
            "{why:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(std::fs::read(&path).unwrap() == before);
    assert_eq!(names(&dir), ["s.zstream", "s.zstream.zpar"]);
}

#[test]
fn both_header_copies_damaged() {
    // Not the defaults (5%, 16 KiB): the rebuilt sidecar keeps the code.
    let stream = synthetic_stream(3 << 20, 12);
    let parity = Parity::percent(10)
        .unwrap()
        .block_size(4096)
        .unwrap()
        .memory(1)
        .unwrap();
    let (dir, path, osc) = pair("headers", &stream, &parity);
    let side = sidecar_path(&path);
    let n = osc.len() as u64;
    damage(&side, 100, 1);
    damage(&side, n - 100, 1);
    let damaged = std::fs::read(&side).unwrap();
    let both = vec![
        SidecarDamage::Header { copy: 0 },
        SidecarDamage::Header { copy: 1 },
    ];
    // The stream intact: the sidecar is rebuilt as it was.
    match check_file(&path).unwrap() {
        Condition::Intact { sidecar, .. } => assert_eq!(sidecar, both),
        other => panic!("{other:?}"),
    }
    let r = repair_file(&path).unwrap();
    assert!(r.repaired.is_empty());
    assert_eq!(r.sidecar, both);
    assert!(
        std::fs::read(&side).unwrap() == osc,
        "the sidecar as it was"
    );
    assert_eq!(std::fs::read(&path).unwrap(), stream);
    assert_eq!(names(&dir), ["s.zstream", "s.zstream.zpar"]);
    // The stream damaged too: nothing locates it.
    std::fs::write(&side, &damaged).unwrap();
    damage(&path, 70_000, 1);
    assert_refused(&dir, &path, &Unrecoverable::HeaderLost);
    // So is a sidecar that is not one at all.
    std::fs::write(&side, vec![0u8; 10_000]).unwrap();
    assert_refused(&dir, &path, &Unrecoverable::HeaderLost);
}

#[test]
fn both_table_copies_of_a_span_damaged() {
    let stream = synthetic_stream(10 << 20, 13);
    let parity = Parity::percent(5)
        .unwrap()
        .block_size(4096)
        .unwrap()
        .memory(1)
        .unwrap();
    let (dir, path, osc) = pair("tables", &stream, &parity);
    let side = sidecar_path(&path);
    let g = Model::new(5, 4096, 1, stream.len() as u64);
    assert!(g.spans() >= 3);
    for t in g.tables(1) {
        damage(&side, t.start + 70, 1);
    }
    let lost = vec![
        SidecarDamage::Table { span: 1, copy: 0 },
        SidecarDamage::Table { span: 1, copy: 1 },
    ];
    match check_file(&path).unwrap() {
        Condition::Intact { sidecar, .. } => assert_eq!(sidecar, lost),
        other => panic!("{other:?}"),
    }
    let damaged = std::fs::read(&side).unwrap();
    let r = repair_file(&path).unwrap();
    assert_eq!(r.sidecar, lost);
    assert!(
        std::fs::read(&side).unwrap() == osc,
        "the sidecar as it was"
    );
    // The stream damaged in another span: span 1 cannot be vouched for.
    std::fs::write(&side, &damaged).unwrap();
    damage(&path, 4096 * g.span_blocks() * 2 + 10, 1);
    assert_refused(&dir, &path, &Unrecoverable::TablesLost { span: 1 });
}

#[test]
fn a_missing_sidecar_is_not_found() {
    let dir = Dir::new("missing");
    let path = dir.0.join("s.zstream");
    std::fs::write(&path, synthetic_stream(0, 14)).unwrap();
    let not_found = |r: crate::Error| match r {
        crate::Error::Io { source, path, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert_eq!(path, sidecar_path(&dir.0.join("s.zstream")));
        }
        other => panic!("{other:?}"),
    };
    not_found(check_file(&path).unwrap_err());
    not_found(repair_file(&path).unwrap_err());
    assert_eq!(names(&dir), ["s.zstream"]);
}

#[test]
fn repairs_leave_no_temporary_file() {
    let stream = synthetic_stream(2 << 20, 15);
    let parity = Parity::percent(5).unwrap().block_size(4096).unwrap();
    let (dir, path, osc) = pair("atomic", &stream, &parity);
    let side = sidecar_path(&path);
    // Success, the stream and the sidecar both rewritten.
    damage(&path, 123_456, 5000);
    damage(&side, 10, 1);
    let r = repair_file(&path).unwrap();
    assert!(!r.repaired.is_empty() && !r.sidecar.is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), stream);
    assert!(std::fs::read(&side).unwrap() == osc);
    assert_eq!(names(&dir), ["s.zstream", "s.zstream.zpar"]);
    // Refused before writing.
    Bench::open(&path).set_len(1000).unwrap();
    assert!(repair_file(&path).is_err());
    assert_eq!(names(&dir), ["s.zstream", "s.zstream.zpar"]);
    // Failed after writing (see
    // a_sidecar_recording_another_end_checksum_is_foreign_or_refused), and a
    // temporary name already taken: an error, the other file kept.
    std::fs::write(&path, &stream).unwrap();
    damage(&path, 5000, 10);
    let taken = dir
        .0
        .join(format!(".s.zstream.repair-{}", std::process::id()));
    std::fs::write(&taken, b"someone's").unwrap();
    assert!(repair_file(&path).is_err());
    assert_eq!(std::fs::read(&taken).unwrap(), b"someone's");
    std::fs::remove_file(&taken).unwrap();
    repair_file(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), stream);
    assert_eq!(names(&dir), ["s.zstream", "s.zstream.zpar"]);
}

#[test]
fn a_sidecar_cut_short_or_grown_is_rebuilt() {
    let stream = synthetic_stream(2 << 20, 16);
    let parity = Parity::percent(10).unwrap().block_size(4096).unwrap();
    let (dir, path, osc) = pair("length", &stream, &parity);
    let side = sidecar_path(&path);
    let n = osc.len() as u64;
    let length = |found| SidecarDamage::Length { expected: n, found };
    let cases = [
        (
            n - 1,
            vec![SidecarDamage::Header { copy: 1 }, length(n - 1)],
        ),
        (
            n - HEADER - 1,
            vec![
                SidecarDamage::Header { copy: 1 },
                length(n - HEADER - 1),
                SidecarDamage::Table { span: 0, copy: 1 },
            ],
        ),
        (n + 100, vec![length(n + 100)]),
    ];
    for (len, want) in cases {
        let mut bytes = osc.clone();
        bytes.resize(len as usize, 0xee);
        std::fs::write(&side, &bytes).unwrap();
        match check_file(&path).unwrap() {
            Condition::Intact { sidecar, .. } => assert_eq!(sidecar, want),
            other => panic!("{len}: {other:?}"),
        }
        assert_eq!(repair_file(&path).unwrap().sidecar, want);
        assert!(std::fs::read(&side).unwrap() == osc, "{len}");
    }
    assert_eq!(names(&dir), ["s.zstream", "s.zstream.zpar"]);
}

/// A header naming a far longer stream than the file (a sidecar of another,
/// longer stream, or a crafted one) is refused after reading the file, not
/// after walking the header's length.
#[test]
fn a_sidecar_of_a_far_longer_stream_stops_at_the_file_end() {
    let dir = Dir::new("far-longer");
    let long = dir.0.join("long.zstream");
    let short = dir.0.join("short.zstream");
    let stream = synthetic_stream(8 << 20, 11);
    std::fs::write(&long, &stream).unwrap();
    let parity = Parity::percent(5)
        .unwrap()
        .block_size(512)
        .unwrap()
        .memory(1 << 16)
        .unwrap();
    create_sidecar(&long, &parity).unwrap();
    // The first 64 KiB of the stream, beside the long stream's sidecar.
    std::fs::write(&short, &stream[..64 << 10]).unwrap();
    std::fs::copy(sidecar_path(&long), sidecar_path(&short)).unwrap();
    match check_file(&short).unwrap() {
        Condition::Unrecoverable { damaged, why, .. } => {
            // The span the file ends in, then the first span past it, where
            // the scan stops (before, every one of the 18 spans was read).
            assert_eq!(why.len(), 2, "{why:?}");
            assert!(matches!(
                why[1],
                Unrecoverable::TooManyDamaged { span: 1, .. }
            ));
            assert_eq!(damaged.ranges.last().unwrap().end, stream.len() as u64);
        }
        other => panic!("{other:?}"),
    }
}

thread_local! {
    /// Stream bytes `start..end` that reads in this thread fail with EIO
    /// (`scan::read_stream_at`), as a bad sector would.
    pub(crate) static UNREADABLE: std::cell::Cell<Option<(u64, u64)>> =
        const { std::cell::Cell::new(None) };
}

/// A bad sector (EIO) in the stream is damage the parity rebuilds, not the
/// end of the check (before, `check_file` failed with `Error::Io`: found by
/// review).
#[test]
fn an_unreadable_block_is_damage() {
    let stream = synthetic_stream(2 << 20, 13);
    let parity = Parity::percent(5).unwrap().block_size(4096).unwrap();
    let (_dir, path, _) = pair("eio", &stream, &parity);
    UNREADABLE.with(|u| u.set(Some((100_000, 100_512))));
    let checked = check_file(&path);
    let repaired = repair_file(&path);
    UNREADABLE.with(|u| u.set(None));
    match checked.unwrap() {
        Condition::Repairable { damaged, .. } => {
            // The bad sector's block.
            assert_eq!(damaged.ranges, vec![98_304..102_400])
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(repaired.unwrap().repaired.ranges, vec![98_304..102_400]);
    assert_eq!(std::fs::read(&path).unwrap(), stream);
}

/// Ranges judged out of order (a span whose tables are both lost is judged
/// after the spans behind it) are listed in order (before, span 0's range
/// was merged into the last one: found by review).
#[test]
fn ranges_stay_sorted_when_added_out_of_order() {
    let mut r = Ranges::default();
    r.add(987_136..987_648);
    r.add(0..491_520);
    r.add(491_520..500_000);
    r.add(990_000..990_010);
    assert_eq!(r.ranges, [0..500_000, 987_136..987_648, 990_000..990_010]);
    assert_eq!(r.bytes, 500_000 + 512 + 10);
}

/// A repair replaces the file a symlink names (the link stays), and the
/// new file keeps the old one's mode (before, a 0600 stream came back
/// 0644: found by review).
#[test]
fn a_repair_keeps_the_mode_and_follows_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let stream = synthetic_stream(1 << 20, 14);
    let parity = Parity::percent(5).unwrap().block_size(4096).unwrap();
    let (dir, path, _) = pair("mode", &stream, &parity);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(sidecar_path(&path), std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.0.join("link.zstream");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    std::os::unix::fs::symlink(sidecar_path(&path), sidecar_path(&link)).unwrap();
    damage(&path, 5000, 10);
    damage(&sidecar_path(&path), 10, 10);
    let done = repair_file(&link).unwrap();
    assert!(!done.repaired.is_empty() && !done.sidecar.is_empty());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::symlink_metadata(sidecar_path(&link))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&path).unwrap(), stream);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&sidecar_path(&path)), 0o640);
}

#[test]
fn encoder_memory_is_capped() {
    let p = Parity::percent(50).unwrap().block_size(65536).unwrap();
    assert!(matches!(
        p.memory(u64::MAX),
        Err(crate::Error::InvalidParity { .. })
    ));
    assert!(p.memory(MAX_MEMORY).is_ok());
}
