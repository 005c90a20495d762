//! Send streams kept in files: write one, verify one without touching any
//! pool, and receive one (verified first, so a damaged file never starts a
//! receive, and a failed receive leaves nothing behind).
//!
//! ```no_run
//! use std::path::Path;
//! use zfs_core::Zfs;
//! use zfs_replicate::file::{receive_file, send_to_file, verify_file};
//!
//! let zfs = Zfs::open()?;
//! send_to_file(&zfs, &"tank/home@monday".parse()?, None, false, Path::new("/mnt/usb/home.zstream"))?;
//! let summary = verify_file(Path::new("/mnt/usb/home.zstream"))?;
//! println!("{} records, guid {:#x}", summary.substreams[0].records, summary.substreams[0].to_guid);
//! receive_file(&zfs, &"pipe/home".parse()?, Path::new("/mnt/usb/home.zstream"))?;
//! # Ok::<(), zfs_replicate::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::path::Path;

use zfs_core::{
    DatasetName, NvList, ReceiveOptions, Received, SendFlags, SendOptions, SnapshotName,
    SnapshotOrBookmark, Zfs,
};

use crate::error::{Error, Result};
use crate::plan::DEFAULT_FLAGS;
use crate::stream::{self, StreamSummary};

fn io(operation: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a stream of `snapshot` (incremental from `from` if given) to a new
/// file at `path` (an existing file is refused) and syncs it.
pub fn send_to_file(
    zfs: &Zfs,
    snapshot: &SnapshotName,
    from: Option<SnapshotOrBookmark>,
    raw: bool,
    path: &Path,
) -> Result<u64> {
    let mut flags = DEFAULT_FLAGS;
    if raw {
        flags |= SendFlags::RAW;
    }
    let mut opts = SendOptions::new().flags(flags);
    if let Some(f) = from {
        opts = opts.from(f);
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io("create", path, e))?;
    let result = zfs
        .send(snapshot, &opts, &file)
        .map_err(Error::from)
        .and_then(|()| file.sync_all().map_err(|e| io("sync", path, e)));
    if let Err(e) = result {
        drop(file);
        let _ = std::fs::remove_file(path); // never leave a partial stream behind
        return Err(e);
    }
    Ok(file.metadata().map_err(|e| io("stat", path, e))?.len())
}

/// Verifies every record checksum and END checksum of a stream file.
pub fn verify_file(path: &Path) -> Result<StreamSummary> {
    let file = File::open(path).map_err(|e| io("open", path, e))?;
    stream::verify(std::io::BufReader::with_capacity(1 << 20, file)).map_err(|source| {
        Error::Stream {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Receives a stream file into `target`: verifies it first, then receives
/// without resumable state, so a failure leaves no partial dataset.
pub fn receive_file(zfs: &Zfs, target: &DatasetName, path: &Path) -> Result<Received> {
    let summary = verify_file(path)?;
    if summary.compound {
        return Err(Error::CompoundStream {
            path: path.to_path_buf(),
        });
    }
    let existed = zfs.exists(target);
    let file = File::open(path).map_err(|e| io("open", path, e))?;
    // A full stream creates the target: a backup's defaults, where its
    // type has them (the verification read its BEGIN record).
    let mut opts = ReceiveOptions::new();
    if let Some(s) = summary.substreams.first() {
        if let (0, Some(on)) = (s.from_guid, s.dataset_type) {
            opts = opts.with_overrides(crate::plan::backup_defaults(on, &NvList::new())?);
        }
    }
    match zfs.receive(target, &file, &opts) {
        Ok(r) => Ok(r),
        Err(e) => {
            // A non-resumable receive leaves nothing; make sure of it.
            if !existed {
                let _ = zfs.abort_resumable_receive(target);
            }
            Err(Error::Zfs(e))
        }
    }
}
