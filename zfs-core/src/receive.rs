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

use crate::dataset::{DatasetType, Properties};
use crate::error::{BatchFailure, Errno, Error, ErrorKind, Result};
use crate::ffi::{self, ReplayRecord};
use crate::name::AnyName;
use crate::name::{DatasetName, SnapshotName};
use crate::nvlist::{NvList, NvValue};
use crate::property;
use crate::Zfs;

/// The operation receive errors name.
const RECEIVE: &str = "lzc_receive";

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
    /// The sent dataset's type: a filesystem or a volume (None for another
    /// objset type).
    pub dataset_type: Option<DatasetType>,
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
            dataset_type: DatasetType::of_objset(u64::from(u32_at(32, byteswapped))),
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
    /// `-o` (a typed value) and `-x` (a boolean) entries.
    overrides: NvList,
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

    /// Sets `name=value` as a local property of the received dataset, as
    /// `zfs receive -o name=value` does: it wins over a value the stream
    /// carries or a received property, and stays through later receives.
    /// Written as for `zfs set` ([`property::encode`]); a property that does
    /// not apply to the stream's dataset type fails the receive before it
    /// starts.
    ///
    /// ```
    /// use zfs_core::ReceiveOptions;
    ///
    /// let opts = ReceiveOptions::new()
    ///     .set("readonly", "on")?
    ///     .set("canmount", "noauto")?
    ///     .exclude("mountpoint")?;
    /// # Ok::<(), zfs_core::Error>(())
    /// ```
    pub fn set(mut self, name: &str, value: &str) -> Result<Self> {
        let (name, value) = property::encode_for(RECEIVE, name, value)?;
        self.check_not_given(&name, "set")?;
        self.overrides.insert(name, value);
        Ok(self)
    }

    /// Keeps the received dataset's `name` as if the stream did not carry
    /// it (inherited), as `zfs receive -x name` does. Ignored where it has
    /// no effect: for a property the stream's dataset type lacks (such as
    /// `mountpoint` on a volume), and when the target holds a local value
    /// of it (that value already wins). For a property that cannot be
    /// inherited (`canmount`, `quota`, …) the received value is dropped.
    pub fn exclude(mut self, name: &str) -> Result<Self> {
        if property::is_user_property(name) {
            property::check_user_name(name)
                .map_err(|r| Error::invalid(RECEIVE, name, ErrorKind::InvalidArgument, r))?;
        } else if property::settable(name).is_none() {
            return Err(Error::invalid(
                RECEIVE,
                name,
                ErrorKind::NotSupported,
                "not a property this library excludes (user properties need a ':')",
            ));
        }
        self.check_not_given(name, "excluded")?;
        self.overrides.insert_flag(name);
        Ok(self)
    }

    fn check_not_given(&self, name: &str, now: &str) -> Result<()> {
        match self.overrides.get(name) {
            None => Ok(()),
            Some(before) => Err(Error::invalid(
                RECEIVE,
                name,
                ErrorKind::InvalidArgument,
                format!(
                    "{now}, but already {}",
                    if *before == NvValue::Boolean {
                        "excluded"
                    } else {
                        "set"
                    }
                ),
            )),
        }
    }

    /// The `-o`/`-x` entries as one list: typed values for
    /// [`set`](Self::set), booleans for [`exclude`](Self::exclude). Empty
    /// when none.
    pub fn overrides(&self) -> &NvList {
        &self.overrides
    }

    /// Checks every [`set`](Self::set) entry against a dataset of type
    /// `on`, as the receive does before it starts.
    pub fn check_overrides(&self, on: DatasetType) -> Result<()> {
        for (name, value) in self.overrides.iter() {
            if *value != NvValue::Boolean {
                property::check_encoded(RECEIVE, name, value, on)?;
            }
        }
        Ok(())
    }

    /// Replaces the `-o`/`-x` entries with `overrides` (as
    /// [`overrides`](Self::overrides) gives them: from a peer, say). Each
    /// entry is checked when the receive starts.
    pub fn with_overrides(mut self, overrides: NvList) -> Self {
        self.overrides = overrides;
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

impl Received {
    /// The properties the kernel refused during the receive (overrides and
    /// received properties), each with its errno: the stream itself was
    /// received.
    pub fn property_failures(&self) -> Vec<BatchFailure> {
        let Some(list) = &self.property_errors else {
            return Vec::new();
        };
        match Error::from_batch(RECEIVE, Errno(0), Some(list.clone())) {
            Error::Batch { failures, .. } => failures,
            _ => Vec::new(),
        }
    }
}

/// Reads the 312-byte BEGIN record from `input`, 8-aligned as
/// `lzc_receive_with_cmdprops` reads it.
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
        let (props, cmdprops) = self.receive_overrides(target, &begin, opts)?;
        let origin = opts.origin.as_ref().map(|o| o.to_c_name());
        let result = ffi::lzc_receive_with_cmdprops(
            &snapshot.to_c_name(),
            props.as_ref(),
            cmdprops.as_ref(),
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

    /// The received properties and the `-o`/`-x` list for this stream, as
    /// `zfs receive` would send them (`zfs_setup_cmdline_props`): each
    /// `-o` checked against the stream's type; an `-x` dropped where it
    /// does nothing or would delete a local value, and for a property that
    /// cannot be inherited the received value dropped instead.
    fn receive_overrides(
        &self,
        target: &DatasetName,
        begin: &BeginRecord,
        opts: &ReceiveOptions,
    ) -> Result<(Option<NvList>, Option<NvList>)> {
        let mut props = opts.props.clone();
        if opts.overrides.is_empty() {
            return Ok((props, None));
        }
        let on = begin.dataset_type.ok_or_else(|| {
            Error::invalid(
                RECEIVE,
                target.as_str(),
                ErrorKind::NotSupported,
                "properties given for a stream that is neither a filesystem nor a volume",
            )
        })?;
        opts.check_overrides(on)?;
        let mut local: Option<Option<Properties>> = None;
        let mut cmdprops = NvList::new();
        for (name, value) in opts.overrides.iter() {
            if *value != NvValue::Boolean {
                cmdprops.insert(name, value.clone());
                continue;
            }
            if !property::applies(name, on) {
                continue;
            }
            if let Some(p) = property::settable(name) {
                if !p.inheritable {
                    if let Some(props) = &mut props {
                        props.remove(name);
                    }
                    continue;
                }
            }
            // A local value already wins; an inherit would delete it.
            let target_props = match &local {
                Some(known) => known,
                None => local.insert(match self.properties(target) {
                    Ok(p) => Some(p),
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                }),
            };
            // Set locally or inherited: not the stream's value (libzfs
            // leaves those alone too).
            let not_received = target_props
                .as_ref()
                .and_then(|p| p.source(name))
                .is_some_and(|source| source != "$recvd");
            if !not_received {
                cmdprops.insert_flag(name);
            }
        }
        Ok((props, Some(cmdprops).filter(|c| !c.is_empty())))
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

    /// Makes everything written to `dataset`'s pool durable: writes out the
    /// open transaction group and waits for it (`lzc_sync`, what `zpool
    /// sync` does).
    ///
    /// ```no_run
    /// let zfs = zfs_core::Zfs::open()?;
    /// // Before pruning the source: what was received is on disk.
    /// zfs.sync_pool(&"pipe/home".parse()?)?;
    /// # Ok::<(), zfs_core::Error>(())
    /// ```
    pub fn sync_pool(&self, dataset: &DatasetName) -> Result<()> {
        let pool = dataset.pool();
        ffi::lzc_sync(&pool.to_c_name())
            .map_err(|e| Error::from_errno("lzc_sync", pool.as_str(), e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use zfs_sys::ioctl::{DMU_OST_ZFS, DMU_OST_ZVOL};

    /// A BEGIN record as a little-endian sender writes it.
    fn record(objset_type: u32, from_guid: u64) -> [u8; RECORD_SIZE] {
        let mut r = [0u8; RECORD_SIZE];
        r[8..16].copy_from_slice(&BACKUP_MAGIC.to_ne_bytes());
        r[16..24].copy_from_slice(&DMU_SUBSTREAM.to_ne_bytes());
        r[32..36].copy_from_slice(&objset_type.to_ne_bytes());
        r[40..48].copy_from_slice(&7u64.to_ne_bytes());
        r[48..56].copy_from_slice(&from_guid.to_ne_bytes());
        r[56..70].copy_from_slice(b"tank/vol@snap1");
        r
    }

    #[test]
    fn the_begin_record_says_filesystem_or_volume() {
        let fs = BeginRecord::parse(&record(DMU_OST_ZFS, 0)).unwrap();
        assert_eq!(fs.dataset_type, Some(DatasetType::Filesystem));
        assert_eq!(fs.from_guid, 0);
        let vol = BeginRecord::parse(&record(DMU_OST_ZVOL, 5)).unwrap();
        assert_eq!(vol.dataset_type, Some(DatasetType::Volume));
        assert_eq!((vol.to_guid, vol.from_guid), (7, 5));
        assert_eq!(vol.snapshot_short_name(), Some("snap1"));
        let other = BeginRecord::parse(&record(9, 0)).unwrap();
        assert_eq!(other.dataset_type, None);
    }

    #[test]
    fn overrides_are_set_or_excluded_once() {
        let opts = ReceiveOptions::new()
            .set("readonly", "on")
            .unwrap()
            .exclude("mountpoint")
            .unwrap()
            .set("backup:job", "x")
            .unwrap();
        let o = opts.overrides();
        assert_eq!(o.get("readonly"), Some(&NvValue::U64(1)));
        assert_eq!(o.get("mountpoint"), Some(&NvValue::Boolean));
        assert_eq!(o.get("backup:job"), Some(&NvValue::String("x".into())));
        assert!(
            opts.clone().exclude("readonly").is_err(),
            "set, then excluded"
        );
        assert!(opts.clone().set("mountpoint", "/x").is_err());
        assert!(opts.clone().exclude("used").is_err(), "read-only");
        assert!(opts.clone().exclude("keyformat").is_err());
        assert!(opts.check_overrides(DatasetType::Filesystem).is_ok());
        let vol = ReceiveOptions::new().set("atime", "off").unwrap();
        assert_eq!(
            vol.check_overrides(DatasetType::Volume).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
