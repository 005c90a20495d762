//! Receiving one send stream (a single substream; compound `zfs send -R`
//! streams are refused: replicate recursively dataset by dataset).
//!
//! The BEGIN record is read first, so the new snapshot's name comes from the
//! stream, and a stream that is not a ZFS send stream fails before the kernel
//! sees it.
//!
//! ```no_run
//! use std::fs::File;
//! use zfs_core::{DatasetName, ReceiveOptions, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let target: DatasetName = "backup/home".parse()?;
//! let path = "/backup/home-tuesday.zstream";
//! let stream = File::open(path).map_err(|e| zfs_core::Error::io("open", path, e))?;
//! let received = zfs.receive(&target, &stream, &ReceiveOptions::new().resumable(true))?;
//! println!("received {} ({} bytes)", received.snapshot, received.bytes);
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;

use crate::error::{Error, ErrorKind, Result};
use crate::ffi::{self, ReplayRecord};
use crate::name::AnyName;
use crate::name::{DatasetName, SnapshotName};
use crate::nvlist::NvList;
use crate::Zfs;

/// Size of one stream record header (`dmu_replay_record_t`).
pub const RECORD_SIZE: usize = 312;
/// `DMU_BACKUP_MAGIC`.
pub const BACKUP_MAGIC: u64 = 0x2_F5BA_CBAC;

/// Header types in the low bits of `drr_versioninfo`.
const DMU_SUBSTREAM: u64 = 1;
const DMU_COMPOUNDSTREAM: u64 = 2;
/// `DMU_BACKUP_FEATURE_RAW`.
pub const FEATURE_RAW: u64 = 1 << 24;

/// The BEGIN record of a send stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BeginRecord {
    /// The sender's snapshot name, `pool/fs@snap`.
    pub to_name: String,
    pub to_guid: u64,
    /// The incremental base's GUID (0 for a full stream).
    pub from_guid: u64,
    /// `DMU_BACKUP_FEATURE_*` bits.
    pub features: u64,
    /// Whether the stream is a compound (`-R`) stream.
    pub compound: bool,
    pub creation_time: u64,
    /// Length of the BEGIN payload (an nvlist) that follows the record.
    pub payload_len: u32,
    /// Whether the sender's byte order differs from ours.
    pub byteswapped: bool,
}

impl BeginRecord {
    /// Parses a 312-byte BEGIN record; anything else is
    /// [`ErrorKind::BadStream`].
    pub fn parse(record: &[u8; RECORD_SIZE]) -> Result<BeginRecord> {
        let bad = |why: &str| {
            Error::invalid(
                "read BEGIN record",
                "",
                ErrorKind::BadStream,
                why.to_owned(),
            )
        };
        let u32_at = |at: usize, swap: bool| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&record[at..at + 4]);
            let v = u32::from_ne_bytes(b);
            if swap {
                v.swap_bytes()
            } else {
                v
            }
        };
        let u64_at = |at: usize, swap: bool| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&record[at..at + 8]);
            let v = u64::from_ne_bytes(b);
            if swap {
                v.swap_bytes()
            } else {
                v
            }
        };
        let magic = u64_at(8, false);
        let byteswapped = if magic == BACKUP_MAGIC {
            false
        } else if magic.swap_bytes() == BACKUP_MAGIC {
            true
        } else {
            return Err(bad("not a ZFS send stream (bad BEGIN magic)"));
        };
        if u32_at(0, byteswapped) != 0 {
            return Err(bad("the first record is not a BEGIN record"));
        }
        let versioninfo = u64_at(16, byteswapped);
        let header_type = versioninfo & 3;
        if header_type != DMU_SUBSTREAM && header_type != DMU_COMPOUNDSTREAM {
            return Err(bad("unknown stream header type"));
        }
        let name_field = &record[56..56 + 256];
        let end = name_field
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_field.len());
        let to_name = String::from_utf8_lossy(&name_field[..end]).into_owned();
        Ok(BeginRecord {
            to_name,
            to_guid: u64_at(40, byteswapped),
            from_guid: u64_at(48, byteswapped),
            features: versioninfo >> 2,
            compound: header_type == DMU_COMPOUNDSTREAM,
            creation_time: u64_at(24, byteswapped),
            payload_len: u32_at(4, byteswapped),
            byteswapped,
        })
    }

    /// Whether the stream is raw (encrypted data sent without its key).
    pub fn is_raw(&self) -> bool {
        self.features & (FEATURE_RAW >> 2) != 0
    }

    /// The snapshot part of the sender's name (after `@`).
    pub fn snapshot_short_name(&self) -> Option<&str> {
        self.to_name
            .split_once('@')
            .map(|(_, s)| s)
            .filter(|s| !s.is_empty())
    }
}

/// How to receive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiveOptions {
    force: bool,
    resumable: bool,
    raw: bool,
    props: Option<NvList>,
    origin: Option<SnapshotName>,
}

impl ReceiveOptions {
    /// Defaults: not forced, not resumable, no properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// Discard changes made to the target since its newest snapshot, and
    /// nothing else: an incremental stream whose base is the target's newest
    /// snapshot is received even if the target was modified since.
    ///
    /// The kernel's own force does more (a full stream replaces an existing
    /// dataset, an incremental destroys the target's snapshots after its
    /// base), so [`Zfs::receive`] checks first, and changes nothing when:
    /// - the stream is full and the target exists:
    ///   [`ErrorKind::AlreadyExists`] (a dataset left partial by an
    ///   interrupted full receive may be resumed);
    /// - the target has snapshots after the stream's base:
    ///   [`ErrorKind::HasNewerSnapshots`];
    /// - the target lacks the base: [`ErrorKind::StreamMismatch`].
    ///
    /// Limit: the check and the receive are two steps. A snapshot that
    /// another process takes on the target between them is still destroyed
    /// by the kernel; do not force-receive into a dataset that something
    /// else snapshots at the same time.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Keep partial state when interrupted, with a `receive_resume_token`
    /// (`zfs receive -s`).
    pub fn resumable(mut self, resumable: bool) -> Self {
        self.resumable = resumable;
        self
    }

    /// Require a raw stream (a non-raw stream is refused before receiving).
    /// A raw stream is always received raw.
    pub fn raw(mut self, raw: bool) -> Self {
        self.raw = raw;
        self
    }

    /// Properties to set as received (`$recvd`) on the new snapshot's dataset.
    pub fn properties(mut self, props: NvList) -> Self {
        self.props = Some(props);
        self
    }

    /// Receive a full stream as a clone of `origin` (`zfs receive -o origin=`).
    pub fn origin(mut self, origin: SnapshotName) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Whether [`force`](Self::force) is set.
    pub fn is_forced(&self) -> bool {
        self.force
    }

    /// Whether [`resumable`](Self::resumable) is set.
    pub fn is_resumable(&self) -> bool {
        self.resumable
    }

    /// Whether [`raw`](Self::raw) is set.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// The properties given to [`properties`](Self::properties).
    pub fn received_properties(&self) -> Option<&NvList> {
        self.props.as_ref()
    }

    /// The snapshot given to [`origin`](Self::origin).
    pub fn origin_snapshot(&self) -> Option<&SnapshotName> {
        self.origin.as_ref()
    }
}

/// What a receive produced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Received {
    /// The snapshot created on the target.
    pub snapshot: SnapshotName,
    /// Stream bytes the kernel read.
    pub bytes: u64,
    /// The stream's BEGIN record.
    pub begin: BeginRecord,
    /// Received properties the kernel refused, `{property: errno}`.
    pub property_errors: Option<NvList>,
}

/// Reads the 312-byte BEGIN record from `input`, 8-aligned as
/// `lzc_receive_one` reads it.
pub(crate) fn read_begin(input: &mut impl Read, target: &str) -> Result<ReplayRecord> {
    let mut record = ReplayRecord([0u8; RECORD_SIZE]);
    let mut got = 0;
    while let Some(rest) = record.0.get_mut(got..).filter(|r| !r.is_empty()) {
        match input.read(rest) {
            Ok(0) => {
                return Err(Error::invalid(
                    "read BEGIN record",
                    target,
                    ErrorKind::BadStream,
                    format!("stream ended after {got} bytes, before its BEGIN record"),
                ))
            }
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read BEGIN record", target, e)),
        }
    }
    Ok(record)
}

impl Zfs {
    /// Receives one stream from `input` into `target`, creating
    /// `target@<the sender's snapshot name>`. For an incremental stream the
    /// target must hold the base; for a full stream it must not exist, also
    /// with [`ReceiveOptions::force`] (see there for what force may do).
    pub fn receive(
        &self,
        target: &DatasetName,
        input: impl AsFd,
        opts: &ReceiveOptions,
    ) -> Result<Received> {
        const OP: &str = "lzc_receive";
        let fd = input.as_fd();
        let mut reader = File::from(
            fd.try_clone_to_owned()
                .map_err(|e| Error::io("dup", target.as_str(), e))?,
        );
        let record = read_begin(&mut reader, target.as_str())?;
        drop(reader);
        let begin = BeginRecord::parse(&record.0).map_err(|e| retarget(e, target))?;
        if begin.compound {
            return Err(Error::invalid(
                OP,
                target.as_str(),
                ErrorKind::NotSupported,
                "compound (zfs send -R) streams are not supported by libzfs_core: send and receive each dataset",
            ));
        }
        if opts.raw && !begin.is_raw() {
            return Err(Error::invalid(
                OP,
                target.as_str(),
                ErrorKind::InvalidArgument,
                "a raw stream was required, but this stream is not raw",
            ));
        }
        let short = begin.snapshot_short_name().ok_or_else(|| {
            Error::invalid(
                OP,
                target.as_str(),
                ErrorKind::BadStream,
                format!("BEGIN record names no snapshot ({:?})", begin.to_name),
            )
        })?;
        let snapshot = target.snapshot(short)?;
        if opts.force {
            self.check_forced_receive(target, &begin)?;
        }
        let origin = opts.origin.as_ref().map(|o| o.to_c_name());
        let result = ffi::lzc_receive_one(
            &snapshot.to_c_name(),
            opts.props.as_ref(),
            origin.as_deref(),
            opts.force,
            opts.resumable,
            begin.is_raw(),
            fd,
            &record,
        );
        match result {
            Ok(outcome) => Ok(Received {
                snapshot,
                bytes: outcome.read_bytes.saturating_add(RECORD_SIZE as u64),
                begin,
                property_errors: outcome.prop_errors,
            }),
            Err((errno, _)) => Err(Error::from_receive_errno(OP, snapshot.as_str(), errno)),
        }
    }

    /// Keeps the promise of [`ReceiveOptions::force`]: refuses, before the
    /// kernel, a forced receive that would replace the target or destroy
    /// any of its snapshots.
    fn check_forced_receive(&self, target: &DatasetName, begin: &BeginRecord) -> Result<()> {
        const OP: &str = "lzc_receive";
        let stats = match self.objset_stats(target.as_str(), false) {
            Ok((stats, _)) => stats,
            // A new dataset: force has nothing to discard.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if begin.from_guid == 0 {
            // A dataset an interrupted full receive left partial holds
            // nothing else: resuming into it is fine.
            if stats.inconsistent {
                return Ok(());
            }
            return Err(Error::invalid(
                OP,
                target.as_str(),
                ErrorKind::AlreadyExists,
                "exists, and a forced receive never replaces a dataset with a full stream: \
                 destroy it first, or receive elsewhere",
            ));
        }
        let snapshots = self.snapshots(target)?;
        let Some(base) = snapshots.iter().position(|s| s.guid() == begin.from_guid) else {
            return Err(Error::invalid(
                OP,
                target.as_str(),
                ErrorKind::StreamMismatch,
                format!(
                    "has no snapshot with the stream's base guid {:#x}",
                    begin.from_guid
                ),
            ));
        };
        let newer: Vec<&str> = snapshots
            .iter()
            .skip(base.saturating_add(1))
            .map(|s| s.name().short_name())
            .collect();
        if newer.is_empty() {
            return Ok(());
        }
        Err(Error::invalid(
            OP,
            target.as_str(),
            ErrorKind::HasNewerSnapshots,
            format!(
                "has snapshots after the stream's base, which a forced receive would destroy: {}",
                newer.join(", ")
            ),
        ))
    }

    /// Discards the partial state of an interrupted resumable receive into
    /// `target` (`zfs receive -A`): the hidden `%recv` child of an
    /// incremental, or the inconsistent dataset a full receive created.
    /// Returns whether there was anything to discard.
    pub fn abort_resumable_receive(&self, target: &DatasetName) -> Result<bool> {
        const OP: &str = "lzc_destroy";
        let hidden = format!("{target}/%recv");
        let c_hidden = CString::new(hidden.clone()).map_err(|_| {
            Error::invalid(OP, hidden.as_str(), ErrorKind::InvalidName, "NUL in name")
        })?;
        if ffi::lzc_exists(&c_hidden) {
            ffi::lzc_destroy(&c_hidden).map_err(|e| Error::from_errno(OP, hidden.as_str(), e))?;
            return Ok(true);
        }
        // A full receive leaves the target itself, inconsistent, with a token.
        if !self.exists(target) {
            return Ok(false);
        }
        let props = self.properties(target)?;
        if props.receive_resume_token.is_none() {
            return Ok(false);
        }
        ffi::lzc_destroy(&target.to_c_name())
            .map_err(|e| Error::from_errno(OP, target.as_str(), e))?;
        Ok(true)
    }
}

fn retarget(e: Error, target: &DatasetName) -> Error {
    match e {
        Error::Invalid {
            operation,
            kind,
            reason,
            ..
        } => Error::Invalid {
            operation,
            target: target.to_string(),
            kind,
            reason,
        },
        other => other,
    }
}
