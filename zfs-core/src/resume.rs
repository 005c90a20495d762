//! Decoding `receive_resume_token` and resuming a send from it.
//!
//! A token is `1-<checksum>-<packed length>-<compressed>`, all hex: the
//! version, the first fletcher-4 word of the compressed bytes, the length of
//! the packed nvlist, and that nvlist compressed with zlib. The nvlist names
//! the snapshot being sent (`toguid`, `toname`), the incremental base
//! (`fromguid`), where to restart (`object`, `offset`), the bytes received so
//! far, and the send flags in use.
//!
//! ```no_run
//! use zfs_core::{DatasetName, ResumeToken, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let target: DatasetName = "backup/home".parse()?;
//! if let Some(token) = zfs.properties(&target)?.receive_resume_token {
//!     let token = ResumeToken::parse(&token)?;
//!     println!("resume {} at object {} offset {}", token.to_name, token.object, token.offset);
//! }
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::io::Read;
use std::os::fd::AsFd;

use crate::bookmark::SnapshotOrBookmark;
use crate::error::{Error, ErrorKind, Result};
use crate::name::{DatasetName, SnapshotName};
use crate::nvlist::NvList;
use crate::send::{SendFlags, SendOptions};
use crate::Zfs;

const OP: &str = "decode receive_resume_token";
/// The kernel refuses tokens whose packed nvlist is larger than this.
const MAX_PACKED_LEN: usize = 1 << 20;

/// A decoded `receive_resume_token`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ResumeToken {
    /// GUID of the snapshot being sent.
    pub to_guid: u64,
    /// Its name on the sender when the send started (`pool/fs@snap`).
    pub to_name: String,
    /// GUID of the incremental base (snapshot or bookmark), if incremental.
    pub from_guid: Option<u64>,
    /// Object to restart at.
    pub object: u64,
    /// Offset within that object.
    pub offset: u64,
    /// Stream bytes received so far.
    pub bytes: u64,
    /// The send flags the interrupted send used.
    pub flags: SendFlags,
    /// Redaction snapshots, if the send was redacted (not supported for
    /// resuming by this crate).
    pub redacted: bool,
    /// The decoded nvlist, for keys this struct does not name.
    pub raw: NvList,
}

/// Where parse errors point: the dataset whose token it is, or (for a
/// token given alone) the token's start.
struct Ctx<'a>(&'a str);

impl Ctx<'_> {
    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::invalid(OP, self.0, ErrorKind::InvalidArgument, reason)
    }

    fn hex_u64(&self, s: &str, what: &str) -> Result<u64> {
        if s.is_empty() || s.len() > 16 {
            return Err(self.bad(format!("{what} is not a hex number of 1 to 16 digits")));
        }
        u64::from_str_radix(s, 16).map_err(|_| self.bad(format!("{what} is not hex")))
    }

    fn hex_bytes(&self, s: &str) -> Result<Vec<u8>> {
        if s.len() % 2 != 0 {
            return Err(self.bad("the compressed payload has an odd number of hex digits"));
        }
        s.as_bytes()
            .chunks_exact(2)
            .map(|pair| {
                let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                match pair {
                    [h, l] => match (digit(*h), digit(*l)) {
                        (Some(h), Some(l)) => Ok(h << 4 | l),
                        _ => Err(self.bad("the compressed payload is not hex")),
                    },
                    _ => Err(self.bad("the compressed payload is not hex")),
                }
            })
            .collect()
    }
}

/// The start of a token, to name it in errors.
fn token_label(token: &str) -> String {
    let head: String = token.trim().chars().take(20).collect();
    format!("receive_resume_token {head}…")
}

/// The first word of fletcher-4 over native-endian 32-bit words; trailing
/// bytes that do not fill a word are ignored, as the kernel does.
pub(crate) fn fletcher4_first_word(data: &[u8]) -> u64 {
    let mut a: u64 = 0;
    for w in data.chunks_exact(4) {
        a = a.wrapping_add(u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]])));
    }
    a
}

impl ResumeToken {
    /// Decodes a token. Any malformed input is an
    /// [`ErrorKind::InvalidArgument`] error, never a panic. Errors name the
    /// token by its start; [`Zfs::resume_token`] reads a dataset's token and
    /// names the dataset instead.
    pub fn parse(token: &str) -> Result<ResumeToken> {
        Self::parse_in(token, &token_label(token))
    }

    fn parse_in(token: &str, target: &str) -> Result<ResumeToken> {
        let cx = Ctx(target);
        let token = token.trim();
        let mut parts = token.splitn(4, '-');
        let (Some(version), Some(checksum), Some(len), Some(payload)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(cx.bad("expected 4 dash-separated fields"));
        };
        if version != "1" {
            return Err(cx.bad(format!("unsupported token version {version:?}")));
        }
        let checksum = cx.hex_u64(checksum, "the checksum")?;
        let packed_len =
            usize::try_from(cx.hex_u64(len, "the packed length")?).unwrap_or(usize::MAX);
        if packed_len == 0 || packed_len > MAX_PACKED_LEN {
            return Err(cx.bad(format!("implausible packed length {packed_len}")));
        }
        let compressed = cx.hex_bytes(payload)?;
        let actual = fletcher4_first_word(&compressed);
        if actual != checksum {
            return Err(cx.bad(format!(
                "checksum mismatch: token says {checksum:x}, payload gives {actual:x}"
            )));
        }
        let mut packed = Vec::with_capacity(packed_len);
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .take(packed_len as u64 + 1)
            .read_to_end(&mut packed)
            .map_err(|e| cx.bad(format!("zlib: {e}")))?;
        if packed.len() != packed_len {
            return Err(cx.bad(format!(
                "decompressed {} bytes, token says {packed_len}",
                packed.len()
            )));
        }
        let raw = NvList::unpack(&packed).map_err(|e| cx.bad(format!("nvlist: {e}")))?;
        Self::from_nvlist(raw, target)
    }

    /// The token a decoded nvlist describes (what [`raw`](Self::raw) holds).
    fn from_nvlist(raw: NvList, target: &str) -> Result<ResumeToken> {
        let shape = |e| Error::shape(OP, target, e);
        let flag = |k: &str| raw.contains_key(k);
        let mut flags = SendFlags::empty();
        for (key, f) in [
            ("largeblockok", SendFlags::LARGE_BLOCK),
            ("embedok", SendFlags::EMBED_DATA),
            ("compressok", SendFlags::COMPRESS),
            ("rawok", SendFlags::RAW),
            ("savedok", SendFlags::SAVED),
        ] {
            if flag(key) {
                flags |= f;
            }
        }
        Ok(ResumeToken {
            to_guid: raw.get_u64("toguid").map_err(shape)?,
            to_name: raw.get_str("toname").map_err(shape)?.to_owned(),
            from_guid: match raw.get_u64("fromguid") {
                Ok(g) => Some(g),
                Err(crate::nvlist::NvListError::MissingKey { .. }) => None,
                Err(e) => return Err(shape(e)),
            },
            object: raw.get_u64("object").map_err(shape)?,
            offset: raw.get_u64("offset").map_err(shape)?,
            bytes: raw.get_u64("bytes").unwrap_or(0),
            flags,
            redacted: flag("redact_snaps") || flag("book_redact_snaps"),
            raw,
        })
    }
}

/// A token crosses as its decoded nvlist, and is checked again on arrival.
#[cfg(feature = "serde")]
impl serde::Serialize for ResumeToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ResumeToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = NvList::deserialize(d)?;
        ResumeToken::from_nvlist(raw, "a resume token").map_err(serde::de::Error::custom)
    }
}

impl Zfs {
    /// The decoded `receive_resume_token` of `dataset`, if it has one.
    /// Errors name the dataset.
    ///
    /// ```no_run
    /// # let zfs = zfs_core::Zfs::open()?;
    /// if let Some(token) = zfs.resume_token(&"backup/home".parse()?)? {
    ///     println!("{} bytes received so far", token.bytes);
    /// }
    /// # Ok::<(), zfs_core::Error>(())
    /// ```
    pub fn resume_token(&self, dataset: &DatasetName) -> Result<Option<ResumeToken>> {
        match self.properties(dataset)?.receive_resume_token {
            Some(token) => ResumeToken::parse_in(&token, dataset.as_str()).map(Some),
            None => Ok(None),
        }
    }

    /// Finds the source snapshot and base a token refers to, by GUID, in the
    /// filesystem its `toname` names: `(snapshot, send options)`.
    pub fn resolve_resume_token(&self, token: &ResumeToken) -> Result<(SnapshotName, SendOptions)> {
        const ROP: &str = "resolve resume token";
        if token.redacted {
            return Err(Error::invalid(
                ROP,
                token.to_name.as_str(),
                ErrorKind::NotSupported,
                "redacted sends cannot be resumed by this crate",
            ));
        }
        let to_name = SnapshotName::new(token.to_name.clone()).map_err(|e| {
            Error::invalid(
                ROP,
                token.to_name.as_str(),
                ErrorKind::InvalidName,
                format!("the token's toname is not a snapshot name: {e}"),
            )
        })?;
        let fs: DatasetName = to_name.dataset();
        let snapshots = self.snapshots(&fs)?;
        let to = snapshots
            .iter()
            .find(|s| s.guid() == token.to_guid)
            .ok_or_else(|| {
                Error::invalid(
                    ROP,
                    fs.as_str(),
                    ErrorKind::NotFound,
                    format!(
                        "no snapshot with guid {:#x} (the token's toguid)",
                        token.to_guid
                    ),
                )
            })?;
        let mut opts = SendOptions::new()
            .flags(token.flags)
            .resume_at(token.object, token.offset);
        if let Some(from_guid) = token.from_guid {
            let base: SnapshotOrBookmark = match snapshots.iter().find(|s| s.guid() == from_guid) {
                Some(s) => s.name().clone().into(),
                None => self
                    .bookmarks(&fs)?
                    .into_iter()
                    .find(|b| b.guid() == from_guid)
                    .map(|b| b.name().clone().into())
                    .ok_or_else(|| {
                        Error::invalid(
                            ROP,
                            fs.as_str(),
                            ErrorKind::NotFound,
                            format!(
                                "no snapshot or bookmark with guid {from_guid:#x} (the token's fromguid)"
                            ),
                        )
                    })?,
            };
            opts = opts.from(base);
        }
        Ok((to.name().clone(), opts))
    }

    /// Resumes an interrupted send from its token, writing to `out`. The
    /// receiver must receive it with [`ReceiveOptions::resumable`](crate::ReceiveOptions::resumable).
    pub fn send_resume(&self, token: &ResumeToken, out: impl AsFd) -> Result<()> {
        let (snap, opts) = self.resolve_resume_token(token)?;
        self.send(&snap, &opts, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn make_token(list: &NvList) -> String {
        let packed = list.pack().unwrap();
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&packed).unwrap();
        let compressed = enc.finish().unwrap();
        let hex: String = compressed.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "1-{:x}-{:x}-{hex}",
            fletcher4_first_word(&compressed),
            packed.len()
        )
    }

    fn sample() -> NvList {
        NvList::new()
            .with("fromguid", 0x1111u64)
            .with("object", 7u64)
            .with("offset", 4096u64)
            .with("bytes", 123_456u64)
            .with("toguid", 0x2222u64)
            .with("toname", "tank/my docs@snap 2")
            .with("largeblockok", crate::NvValue::Boolean)
            .with("compressok", crate::NvValue::Boolean)
    }

    #[test]
    fn decodes_a_token() {
        let t = ResumeToken::parse(&make_token(&sample())).unwrap();
        assert_eq!(t.to_guid, 0x2222);
        assert_eq!(t.from_guid, Some(0x1111));
        assert_eq!((t.object, t.offset, t.bytes), (7, 4096, 123_456));
        assert_eq!(t.to_name, "tank/my docs@snap 2");
        assert_eq!(t.flags, SendFlags::LARGE_BLOCK | SendFlags::COMPRESS);
    }

    #[test]
    fn full_send_token_has_no_base() {
        let mut l = sample();
        l.remove("fromguid");
        assert_eq!(ResumeToken::parse(&make_token(&l)).unwrap().from_guid, None);
    }

    #[test]
    fn rejects_damaged_tokens_without_panicking() {
        let good = make_token(&sample());
        for bad in [
            "",
            "1",
            "1-2-3",
            "2-0-0-00",
            "1-zz-10-00",
            "1-0-0-",
            "1-0-10-0",
        ] {
            assert!(ResumeToken::parse(bad).is_err(), "{bad:?}");
        }
        // Flip each hex digit of the payload in turn: always an error or a
        // (checksum-colliding) success, never a panic.
        let bytes = good.as_bytes();
        for i in 0..bytes.len() {
            let mut s = bytes.to_vec();
            s[i] = if s[i] == b'0' { b'1' } else { b'0' };
            let _ = ResumeToken::parse(&String::from_utf8_lossy(&s));
        }
        // Errors name the operation and the token.
        let err = ResumeToken::parse("1-zz-10-00").unwrap_err();
        assert_eq!(err.operation(), Some(OP));
        assert!(err.to_string().contains("1-zz-10-00"), "{err}");
        let err = ResumeToken::parse_in("2-0-0-00", "pipe/home").unwrap_err();
        assert!(err.to_string().contains("\"pipe/home\""), "{err}");
        let mut no_guid = sample();
        no_guid.remove("toguid");
        let err = ResumeToken::parse_in(&make_token(&no_guid), "pipe/home").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedShape);
        assert!(err.to_string().contains("pipe/home") && err.to_string().contains("toguid"));
        // A wrong checksum is caught.
        let mut parts: Vec<&str> = good.splitn(4, '-').collect();
        parts[1] = "1";
        assert!(ResumeToken::parse(&parts.join("-")).is_err());
    }
}
