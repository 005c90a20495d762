//! Parity sidecars: stream files that survive damage.
//!
//! A stream file `FILE` written with parity gets a sidecar `FILE.zpar`;
//! `FILE` itself stays a plain ZFS stream (`zfs receive < FILE` works
//! without this library). The sidecar holds Reed–Solomon parity over the
//! stream's blocks, a BLAKE3 digest of every block (to find damage) and a
//! header with the stream's length and END checksum (to prove a repair).
//!
//! What it repairs, at the default 16 KiB blocks and 40 MiB of encoder
//! memory (see [`Parity`] for other levels):
//!
//! | level | span | one hole (or cut tail) per span | scattered damage |
//! |---|---|---|---|
//! | 5% | 300 MiB (20 × 960 blocks) | 960 blocks: 14.98 MiB anywhere, 15 MiB block-aligned | 48 bad blocks in any word of 960 + 48; 2% of all blocks at random almost surely (one word in 4·10⁷ fails) |
//! | 10% | 140 MiB (10 × 896 blocks) | 900 blocks: 14.05 MiB anywhere, 14.06 MiB aligned | 90 in any word of 896 + 90; 5% at random (one word in 4·10⁷ fails) |
//!
//! A stream shorter than a span gets fewer, longer words (sized from the
//! send's estimate), so the hole it survives is the level's share of it:
//! about 3.3 MiB of a 64 MiB stream at 5%. Damaged parity blocks count
//! against their word like damaged data. The sidecar's own header and
//! tables are stored twice; a damaged sidecar is rebuilt from an intact
//! (or repaired) stream by [`repair_file`].
//!
//! Memory: writing holds two buffers of `s` blocks per interleaved word
//! (`s` = the word's parity rounded up to a power of two: 40 MiB at the
//! default, whatever the stream's size) plus 8.5 MiB of code tables and
//! 4 MiB of chunks on their way to the parity thread (a send's peak RSS
//! measured 57 MiB for 1 GiB); reading holds one span's table (315 KiB
//! at the default), one word's decoder (16 MiB) and at most one span's
//! repaired blocks (≤ 15 MiB).
//!
//! ```no_run
//! use std::path::Path;
//! use zfs_replicate::file::{send_to_file, SendFileOptions};
//! use zfs_replicate::parity::{check_file, repair_file, Condition, Parity};
//!
//! let zfs = zfs_core::Zfs::open()?;
//! let file = Path::new("/mnt/usb/home.zstream");
//! let opts = SendFileOptions::new().parity(Parity::percent(5)?);
//! send_to_file(&zfs, &"tank/home@monday".parse()?, &opts, file)?; // and home.zstream.zpar
//! // Later:
//! match check_file(file)? {
//!     Condition::Intact { .. } => {}
//!     Condition::Repairable { damaged, .. } => {
//!         println!("repairing {damaged}");
//!         repair_file(file)?;
//!     }
//!     Condition::Unrecoverable { why, .. } => println!("lost: {why:?}"),
//! }
//! # Ok::<(), zfs_replicate::Error>(())
//! ```

mod encode;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod geometry;
mod repair;
mod scan;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::stream::StreamSummary;

pub(crate) use encode::SidecarWriter;
pub(crate) use format::StreamFacts;
pub use repair::{create_sidecar, repair_file, Repaired, Sidecar};
pub(crate) use repair::{refuse, RepairingReader};
pub use scan::check_file;
pub(crate) use scan::scan;

/// Encoder memory by default: 40 MiB (20 interleaved words at 5%, 10 at
/// 10%), which keeps a send's peak RSS under 64 MiB.
pub const DEFAULT_MEMORY: u64 = 40 << 20;
/// Most encoder memory a sidecar may be written with (1 GiB).
pub const MAX_MEMORY: u64 = geometry::MAX_MEMORY;
/// Block size by default: 16 KiB.
pub const DEFAULT_BLOCK: u32 = 16 << 10;

/// How much parity a sidecar carries, and over what.
///
/// ```
/// use zfs_replicate::parity::Parity;
///
/// let p = Parity::percent(5)?;
/// assert_eq!(p.span_bytes(), 300 << 20);
/// assert_eq!(p.hole_bytes(), 15 << 20); // per span
/// // 1 GiB of encoder memory (the most): holes of 384 MiB per 7.5 GiB span.
/// let big = Parity::percent(5)?.memory(1 << 30)?;
/// assert_eq!(big.hole_bytes(), 384 << 20);
/// assert_eq!(big.span_bytes(), 7680 << 20);
/// # Ok::<(), zfs_replicate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parity {
    level_bp: u32,
    block: u32,
    memory: u64,
}

impl Parity {
    /// `percent` parity blocks per 100 data blocks, 1 to 50.
    pub fn percent(percent: u32) -> Result<Parity> {
        if !(1..=50).contains(&percent) {
            return Err(Error::InvalidParity {
                reason: format!("level {percent}%: must be 1 to 50"),
            });
        }
        Ok(Parity {
            level_bp: percent * 100,
            block: DEFAULT_BLOCK,
            memory: DEFAULT_MEMORY,
        })
    }

    /// Encoder memory: more interleaved words, so longer holes (the hole
    /// a span survives is 3/8 of it at 5%). At least one word's worth is
    /// used whatever this says; at most [`MAX_MEMORY`] (1 GiB), which also
    /// bounds what reading a sidecar can cost, whatever its header says.
    pub fn memory(mut self, bytes: u64) -> Result<Parity> {
        if bytes > MAX_MEMORY {
            return Err(Error::InvalidParity {
                reason: format!("memory {bytes} bytes: at most {MAX_MEMORY}"),
            });
        }
        self.memory = bytes;
        Ok(self)
    }

    /// Bytes per block: a power of two from 512 to 64 KiB. Smaller blocks
    /// waste less on scattered bit flips; larger ones make bigger spans.
    pub fn block_size(mut self, bytes: u32) -> Result<Parity> {
        if !bytes.is_power_of_two() || !(geometry::MIN_BLOCK..=geometry::MAX_BLOCK).contains(&bytes)
        {
            return Err(Error::InvalidParity {
                reason: format!("block size {bytes}: must be a power of two, 512 to 65536"),
            });
        }
        self.block = bytes;
        Ok(self)
    }

    /// The level, in percent.
    pub fn level_percent(&self) -> u32 {
        self.level_bp / 100
    }

    fn words(&self) -> u32 {
        geometry::Geometry::words_for_memory(self.level_bp, self.block, self.memory)
    }

    /// Words for a stream of about `estimate` bytes: enough for a span
    /// 1.25 times as long, at most what the memory allows (a small stream
    /// gets few long words, which survive more scattered damage).
    fn words_for(&self, estimate: Option<u64>) -> u32 {
        let most = self.words();
        match estimate {
            None => most,
            Some(bytes) => {
                let (k, _, _) = geometry::code(self.level_bp);
                let blocks = bytes
                    .saturating_add(bytes / 4)
                    .div_ceil(u64::from(self.block));
                blocks.div_ceil(u64::from(k)).clamp(1, u64::from(most)) as u32
            }
        }
    }

    /// `(level, block, words)` for a stream of about `estimate` bytes.
    pub(crate) fn code_for(&self, estimate: Option<u64>) -> (u32, u32, u32) {
        (self.level_bp, self.block, self.words_for(estimate))
    }

    /// Bytes of a full span (the stream is protected span by span).
    pub fn span_bytes(&self) -> u64 {
        let (k, _, _) = geometry::code(self.level_bp);
        u64::from(self.words()) * u64::from(k) * u64::from(self.block)
    }

    /// The longest run of whole damaged blocks (a hole, or a cut tail), in
    /// bytes, that every full span rebuilds; `hole_bytes() − block + 1`
    /// bytes wherever they start.
    pub fn hole_bytes(&self) -> u64 {
        let (_, m, _) = geometry::code(self.level_bp);
        u64::from(self.words()) * u64::from(m) * u64::from(self.block)
    }
}

/// Byte ranges of a stream file, coalesced, at most [`Ranges::LISTED`]
/// listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Ranges {
    /// The ranges, in order (the first [`Ranges::LISTED`]).
    pub ranges: Vec<Range<u64>>,
    /// Ranges not listed.
    pub more: u64,
    /// Bytes in all ranges, listed or not.
    pub bytes: u64,
}

impl Ranges {
    /// Ranges listed at most.
    pub const LISTED: usize = 1024;

    /// Adds `r`, wherever it lies: the list stays sorted and coalesced
    /// (ranges usually come in order; a span whose tables are lost is
    /// judged after the ones behind it).
    pub(crate) fn add(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        self.bytes += r.end - r.start;
        let listed = self.ranges.len();
        match self.ranges.last_mut() {
            // In order, and the common case: extend or append.
            Some(last) if last.end >= r.start && last.start <= r.start => {
                last.end = last.end.max(r.end);
                return;
            }
            Some(last) if last.end < r.start => {
                if listed < Self::LISTED && self.more == 0 {
                    self.ranges.push(r);
                } else {
                    self.more += 1;
                }
                return;
            }
            None => {
                self.ranges.push(r);
                return;
            }
            _ => {}
        }
        // Out of order: insert, then merge the neighbours it touches.
        let at = self.ranges.partition_point(|x| x.start < r.start);
        self.ranges.insert(at, r);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(self.ranges.len());
        for x in self.ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if last.end >= x.start => last.end = last.end.max(x.end),
                _ => merged.push(x),
            }
        }
        self.ranges = merged;
        if self.ranges.len() > Self::LISTED {
            self.more += (self.ranges.len() - Self::LISTED) as u64;
            self.ranges.truncate(Self::LISTED);
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// The first 8 ranges (half-open byte offsets), how many more, and the
/// bytes in all: `409600..425984, 1048576..1064960 (32768 bytes)`.
impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        for (i, r) in self.ranges.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}..{}", r.start, r.end)?;
        }
        let more = self.ranges.len().saturating_sub(SHOWN) as u64 + self.more;
        if more > 0 {
            write!(f, " and {more} more")?;
        }
        write!(f, " ({} bytes)", self.bytes)
    }
}

/// Damage found in the sidecar itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum SidecarDamage {
    /// A copy of the header (0: the first, 1: the one at the end).
    Header { copy: u8 },
    /// A copy of a span's table.
    Table { span: u64, copy: u8 },
    /// Parity blocks of a span whose digests do not match.
    Parity { span: u64, blocks: u32 },
    /// The sidecar is not as long as its header says.
    Length { expected: u64, found: u64 },
    /// The sidecar describes another stream (its first substream's GUID,
    /// END checksum or length differ), while the file is a valid stream by
    /// itself: the file is intact, the sidecar useless for it
    /// ([`repair_file`] makes it a new one).
    Foreign { sidecar_guid: u64, stream_guid: u64 },
}

/// Why a stream file cannot be repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Unrecoverable {
    /// A code word lost more blocks (data and parity) than it has parity.
    TooManyDamaged {
        span: u64,
        word: u32,
        damaged: u32,
        parity: u32,
    },
    /// Both copies of a span's table are damaged and so is the stream:
    /// the damage cannot be located.
    TablesLost { span: u64 },
    /// Both copies of the sidecar's header are damaged and so is the
    /// stream.
    HeaderLost,
    /// Every block matches its digest, yet the stream does not verify (or
    /// its END checksum is not the sidecar's): the stream was damaged
    /// before its sidecar was made, or a repair went wrong.
    StreamChecksum { detail: String },
}

impl fmt::Display for Unrecoverable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unrecoverable::TooManyDamaged {
                span,
                word,
                damaged,
                parity,
            } => write!(
                f,
                "span {span} word {word}: {damaged} damaged blocks, {parity} parity"
            ),
            Unrecoverable::TablesLost { span } => {
                write!(f, "span {span}: both copies of its table are damaged")
            }
            Unrecoverable::HeaderLost => {
                f.write_str("both copies of the sidecar header are damaged")
            }
            Unrecoverable::StreamChecksum { detail } => {
                write!(f, "the stream does not verify: {detail}")
            }
        }
    }
}

/// What [`check_file`] found: one of three states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Every block matches its digest and the stream verifies.
    Intact {
        summary: StreamSummary,
        /// Damage to the sidecar ([`repair_file`] rebuilds it).
        sidecar: Vec<SidecarDamage>,
    },
    /// Damaged, and every damaged word has parity enough.
    Repairable {
        /// The stream's damaged bytes (whole blocks; a cut tail; bytes
        /// beyond the stream's end).
        damaged: Ranges,
        margin: Margin,
        sidecar: Vec<SidecarDamage>,
    },
    /// Damaged beyond the parity.
    Unrecoverable {
        damaged: Ranges,
        why: Vec<Unrecoverable>,
        sidecar: Vec<SidecarDamage>,
    },
}

/// How much more damage a repairable file could take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Margin {
    /// Damaged code words.
    pub damaged_words: u64,
    /// The fewest spare parity blocks left in any damaged word: one more
    /// damaged block beyond this in that word is unrecoverable.
    pub least_spare: u32,
}

/// The sidecar of stream file `path`: `path` with `.zpar` appended.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".zpar");
    PathBuf::from(s)
}

pub(crate) fn io(operation: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
