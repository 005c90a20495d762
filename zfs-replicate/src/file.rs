//! Send streams kept in files: write one, verify one without touching any
//! pool, and receive one (verified first, so a damaged file never starts a
//! receive, and a failed receive leaves nothing behind).
//!
//! ```no_run
//! use std::path::Path;
//! use zfs_core::Zfs;
//! use zfs_replicate::file::{receive_file, send_to_file, verify_file_of, SendFileOptions};
//!
//! let zfs = Zfs::open()?;
//! let file = Path::new("/mnt/usb/home.zstream");
//! let sent = send_to_file(&zfs, &"tank/home@monday".parse()?, &SendFileOptions::new(), file)?;
//! // Later: intact, and still the stream of that snapshot.
//! let summary = verify_file_of(file, sent.guid)?;
//! println!("{} records, guid {:#x}", summary.substreams[0].records, summary.substreams[0].to_guid);
//! receive_file(&zfs, &"pipe/home".parse()?, file)?;
//! # Ok::<(), zfs_replicate::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use zfs_core::pipe::{Interest, Pipe, Wakeup};

use zfs_core::{
    DatasetName, NvList, ReceiveOptions, Received, SendFlags, SendOptions, SnapshotName,
    SnapshotOrBookmark, Zfs,
};

use crate::error::{Error, Result};
use crate::execute::CancelToken;
#[cfg(feature = "parity")]
use crate::parity::{self, Parity, Sidecar, SidecarWriter, StreamFacts};
use crate::plan::DEFAULT_FLAGS;
use crate::stream::{self, StreamSummary, StreamVerifier};

fn io(operation: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// How [`send_to_file`] sends: from a base (incremental) or not, raw or
/// not, with a cancel token and a progress callback.
///
/// ```
/// use zfs_replicate::file::SendFileOptions;
/// use zfs_replicate::CancelToken;
///
/// let opts = SendFileOptions::new()
///     .from("tank/home@sunday".parse::<zfs_core::SnapshotName>()?)
///     .raw(true)
///     .cancel_token(CancelToken::new())
///     .on_progress(|written| eprint!("\r{written} bytes"));
/// # let _ = opts;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SendFileOptions {
    base: Option<SnapshotOrBookmark>,
    raw: bool,
    cancel: CancelToken,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    #[cfg(feature = "parity")]
    parity: Option<Parity>,
}

impl std::fmt::Debug for SendFileOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("SendFileOptions");
        f.field("base", &self.base)
            .field("raw", &self.raw)
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some());
        #[cfg(feature = "parity")]
        f.field("parity", &self.parity);
        f.finish()
    }
}

impl SendFileOptions {
    /// A full, non-raw stream, no cancel, no progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// An incremental stream from `base` (a snapshot or bookmark of the
    /// same dataset).
    pub fn from(mut self, base: impl Into<SnapshotOrBookmark>) -> Self {
        self.base = Some(base.into());
        self
    }

    /// A raw stream (encrypted data stays encrypted).
    pub fn raw(mut self, yes: bool) -> Self {
        self.raw = yes;
        self
    }

    /// Stops the send when `token` is cancelled: the file is removed and
    /// the result is [`Error::Cancelled`].
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// Calls `f` with the bytes written so far, after each chunk (up to
    /// 1 MiB).
    pub fn on_progress(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Also writes a parity sidecar, `FILE.zpar`, in the same pass (see
    /// [`crate::parity`]): the file can then be checked, repaired, and
    /// received through a repair. The sidecar is linked into place before
    /// the stream, so a stream file written with parity always has it.
    #[cfg(feature = "parity")]
    pub fn parity(mut self, parity: Parity) -> Self {
        self.parity = Some(parity);
        self
    }

    fn send_options(&self) -> SendOptions {
        let mut flags = DEFAULT_FLAGS;
        if self.raw {
            flags |= SendFlags::RAW;
        }
        let opts = SendOptions::new().flags(flags);
        match &self.base {
            Some(b) => opts.from(b.clone()),
            None => opts,
        }
    }
}

/// What [`send_to_file`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// Bytes in the file.
    pub bytes: u64,
    /// The GUID of the snapshot sent (the stream's, checked against the
    /// snapshot's).
    pub guid: u64,
    /// The stream as it was verified while it was written.
    pub summary: StreamSummary,
    /// The parity sidecar written with it, if asked for.
    #[cfg(feature = "parity")]
    pub sidecar: Option<Sidecar>,
}

/// Writes a stream of `snapshot` to a new file at `path` (an existing file
/// is refused, and so is an existing `path.zpar`), verifying every
/// record's checksum as it is written: into a temporary file beside it (`.NAME.partial-PID`), synced, then linked to
/// `path` (which must not exist then either) and the directory synced. A
/// failure or a cancel removes the temporary file; a crash leaves it, under
/// a name no finished stream has. A file at `path` is therefore always
/// whole and verified, and its stream is `snapshot`'s (its GUID checked).
pub fn send_to_file(
    zfs: &Zfs,
    snapshot: &SnapshotName,
    opts: &SendFileOptions,
    path: &Path,
) -> Result<SentFile> {
    let guid = zfs.snapshot_info(snapshot)?.guid();
    if path.symlink_metadata().is_ok() {
        return Err(io(
            "create",
            path,
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    }
    let (dir, partial) = temporary_beside(path, "partial")?;
    #[cfg(feature = "parity")]
    let sidecar = match opts.parity {
        Some(parity) => Some(SidecarOutput::create(zfs, snapshot, opts, path, parity)?),
        // A sidecar already there (left by a crash between the two links)
        // would describe another stream than the one written now.
        None if parity::sidecar_path(path).symlink_metadata().is_ok() => {
            return Err(io(
                "create",
                &parity::sidecar_path(path),
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ))
        }
        None => None,
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|e| io("create", &partial, e))?;
    #[cfg(feature = "parity")]
    let mut writer = match &sidecar {
        Some(out) => Some(out.writer()?),
        None => None,
    };
    #[cfg(not(feature = "parity"))]
    let mut writer: Option<NoSidecar> = None;
    let result =
        write_stream(zfs, snapshot, opts, &file, &partial, writer.as_mut()).and_then(|summary| {
            file.sync_all().map_err(|e| io("sync", &partial, e))?;
            check_stream_of(path, &summary, guid)?;
            #[cfg(feature = "parity")]
            let sidecar = match (&sidecar, writer) {
                (Some(out), Some(w)) => Some(out.commit(w, &summary)?),
                _ => None,
            };
            // A link, not a rename: it refuses a file that appeared meanwhile.
            if let Err(e) = std::fs::hard_link(&partial, path) {
                #[cfg(feature = "parity")]
                if let Some(s) = &sidecar {
                    let _ = std::fs::remove_file(&s.path);
                }
                return Err(io("link", path, e));
            }
            sync_dir(&dir);
            Ok(SentFile {
                bytes: summary.total_bytes,
                guid,
                summary,
                #[cfg(feature = "parity")]
                sidecar,
            })
        });
    drop(file);
    let _ = std::fs::remove_file(&partial);
    result
}

/// The directory of `path`, and a temporary name beside it,
/// `.NAME.TAG-PID`, that no finished file has (the stream file's and the
/// sidecar's partial files, a repair's copy).
pub(crate) fn temporary_beside(
    path: &Path,
    tag: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let name = path.file_name().ok_or_else(|| {
        io(
            "create",
            path,
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".{tag}-{}", std::process::id()));
    Ok((dir.clone(), dir.join(temp)))
}

/// Syncs a directory after a link or rename in it (best effort).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The sidecar [`send_to_file`] writes beside the stream: its temporary
/// file (removed on drop), linked into place by `commit`.
#[cfg(feature = "parity")]
struct SidecarOutput {
    file: File,
    partial: std::path::PathBuf,
    path: std::path::PathBuf,
    level_bp: u32,
    block: u32,
    words: u32,
}

#[cfg(feature = "parity")]
impl SidecarOutput {
    fn create(
        zfs: &Zfs,
        snapshot: &SnapshotName,
        opts: &SendFileOptions,
        stream: &Path,
        parity: Parity,
    ) -> Result<SidecarOutput> {
        let path = parity::sidecar_path(stream);
        if path.symlink_metadata().is_ok() {
            return Err(io(
                "create",
                &path,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        // The send's estimate sizes the words (no estimate: the most).
        let estimate = zfs.send_space(snapshot, &opts.send_options()).ok();
        let (level_bp, block, words) = parity.code_for(estimate);
        let (_, partial) = temporary_beside(&path, "partial")?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| io("create", &partial, e))?;
        Ok(SidecarOutput {
            file,
            partial,
            path,
            level_bp,
            block,
            words,
        })
    }

    fn writer(&self) -> Result<SidecarWriter<'_>> {
        SidecarWriter::new(&self.file, self.level_bp, self.block, self.words)
            .map_err(|e| io("write", &self.partial, e))
    }

    fn commit(&self, writer: SidecarWriter<'_>, summary: &StreamSummary) -> Result<Sidecar> {
        let header = writer
            .finish(&StreamFacts::of(summary))
            .map_err(|e| io("write", &self.partial, e))?;
        self.file
            .sync_all()
            .map_err(|e| io("sync", &self.partial, e))?;
        std::fs::hard_link(&self.partial, &self.path).map_err(|e| io("link", &self.path, e))?;
        Ok(Sidecar::new(self.path.clone(), &header))
    }
}

#[cfg(feature = "parity")]
impl Drop for SidecarOutput {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// Without the `parity` feature, nothing is written beside the stream.
#[cfg(not(feature = "parity"))]
struct NoSidecar;

#[cfg(not(feature = "parity"))]
impl NoSidecar {
    fn update(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "parity")]
type SidecarSink<'a> = SidecarWriter<'a>;
#[cfg(not(feature = "parity"))]
type SidecarSink<'a> = NoSidecar;

/// How the copy from the send's pipe into the file ended.
enum Copied {
    Done(StreamSummary),
    Cancelled,
}

/// Sends into a pipe on a thread of its own; copies the pipe into `file`
/// through a verifier. The sender's error is the cause when there is one
/// (a stream cut short is its symptom).
fn write_stream(
    zfs: &Zfs,
    snapshot: &SnapshotName,
    opts: &SendFileOptions,
    file: &File,
    path: &Path,
    sidecar: Option<&mut SidecarSink<'_>>,
) -> Result<StreamSummary> {
    let send = opts.send_options();
    let pipe = Pipe::new(COPY_CHUNK).map_err(Error::from)?;
    let wakeup = Arc::new(Wakeup::new().map_err(Error::from)?);
    opts.cancel.register(&wakeup);
    let (read, write) = (pipe.read, pipe.write);
    let target = snapshot.dataset();
    std::thread::scope(|scope| {
        let sender = crate::execute::spawn(scope, "zfs-send", move || {
            let write = write; // closed when the send ends
            zfs.send(snapshot, &send, &write)
        })
        .map_err(|source| Error::Thread {
            target: target.clone(),
            source,
        })?;
        // The sidecar is computed on a thread of its own, from the chunks
        // the copy hands it (at most PARITY_IN_FLIGHT at once).
        let (mut feed, parity) = match sidecar {
            None => (None, None),
            Some(writer) => {
                let (to, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(PARITY_IN_FLIGHT);
                let (give_back, back) = std::sync::mpsc::channel::<Vec<u8>>();
                let parity = crate::execute::spawn(scope, "zfs-parity", move || {
                    for chunk in chunks {
                        writer.update(&chunk)?;
                        let _ = give_back.send(chunk);
                    }
                    Ok::<(), std::io::Error>(())
                })
                .map_err(|source| Error::Thread {
                    target: target.clone(),
                    source,
                })?;
                let feed = Feed {
                    to,
                    back,
                    buffers: 0,
                };
                (Some(feed), Some(parity))
            }
        };
        // `read` is closed when the copy ends: a sender still writing gets
        // EPIPE (its signals are blocked) and stops.
        let copied = copy_verified(read, file, &wakeup, opts, path, feed.as_mut());
        drop(feed); // the parity thread ends with the last chunk
        let sent = sender.join().map_err(|_| Error::Panicked {
            thread: "send",
            target: target.clone(),
        })?;
        if let Some(parity) = parity {
            let computed = parity.join().map_err(|_| Error::Panicked {
                thread: "parity",
                target: target.clone(),
            })?;
            // A sidecar that could not be written is the cause (the copy
            // only saw its thread gone).
            computed.map_err(|e| io("write the sidecar of", path, e))?;
        }
        match (copied, sent) {
            (Ok(Copied::Cancelled), _) => Err(Error::Cancelled {
                done: Box::default(),
            }),
            (Ok(Copied::Done(summary)), Ok(())) => Ok(summary),
            // The copy stopped first (a full disk, a write error, a bad
            // record) and closed the pipe: the send's broken pipe is its
            // echo, not the cause.
            (Err(e), Err(sent))
                if matches!(
                    sent.kind(),
                    zfs_core::ErrorKind::BrokenPipe | zfs_core::ErrorKind::Interrupted
                ) =>
            {
                Err(e)
            }
            (_, Err(e)) => Err(Error::Zfs(e)),
            (Err(e), Ok(())) => Err(e),
        }
    })
}

/// Bytes per read from the send's pipe (and the pipe's size).
const COPY_CHUNK: usize = 1 << 20;

/// Chunks queued for the parity thread at most (each `COPY_CHUNK`).
const PARITY_IN_FLIGHT: usize = 2;

/// The copy's side of the parity thread: chunks go to it, and come back
/// to be read into again.
struct Feed {
    to: std::sync::mpsc::SyncSender<Vec<u8>>,
    back: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Buffers made so far (at most `PARITY_IN_FLIGHT + 1`, besides the
    /// copy's first).
    buffers: usize,
}

impl Feed {
    /// Hands `chunk` over; a buffer to read the next chunk into.
    fn pass(&mut self, chunk: Vec<u8>) -> std::io::Result<Vec<u8>> {
        let gone = || std::io::Error::other("the parity thread stopped");
        self.to.send(chunk).map_err(|_| gone())?;
        if let Ok(b) = self.back.try_recv() {
            return Ok(b);
        }
        if self.buffers < PARITY_IN_FLIGHT + 1 {
            self.buffers += 1;
            return Ok(Vec::with_capacity(COPY_CHUNK));
        }
        self.back.recv().map_err(|_| gone())
    }
}

fn copy_verified(
    read: OwnedFd,
    mut file: &File,
    wakeup: &Wakeup,
    opts: &SendFileOptions,
    path: &Path,
    mut feed: Option<&mut Feed>,
) -> Result<Copied> {
    let mut verifier = StreamVerifier::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut read = File::from(read);
    let mut written = 0u64;
    loop {
        let ready = crate::execute::wait_ready(&read, Interest::Read, wakeup, &opts.cancel)
            .map_err(|e| io("poll", path, e))?;
        if !ready {
            return Ok(Copied::Cancelled);
        }
        let n = match read.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("read the stream", path, e)),
        };
        verifier.update(&buf[..n]).map_err(|source| Error::Stream {
            path: path.to_path_buf(),
            source,
        })?;
        file.write_all(&buf[..n])
            .map_err(|e| io("write", path, e))?;
        written += n as u64;
        if let Some(progress) = &opts.progress {
            progress(written);
        }
        if let Some(feed) = feed.as_mut() {
            buf.truncate(n);
            buf = feed
                .pass(buf)
                .map_err(|e| io("write the sidecar of", path, e))?;
            buf.resize(COPY_CHUNK, 0);
        }
    }
    verifier
        .finish()
        .map(Copied::Done)
        .map_err(|source| Error::Stream {
            path: path.to_path_buf(),
            source,
        })
}

/// Checks that the stream file at `path` is intact (as [`verify_file`])
/// and is a stream of the snapshot whose GUID is `guid`: intact, and the
/// snapshot meant. Another snapshot's stream is
/// [`Error::UnexpectedStream`].
pub fn verify_file_of(path: &Path, guid: u64) -> Result<StreamSummary> {
    let summary = verify_file(path)?;
    check_stream_of(path, &summary, guid)?;
    Ok(summary)
}

/// That `summary` is one plain stream of the snapshot whose GUID is
/// `guid` ([`Error::UnexpectedStream`] otherwise).
fn check_stream_of(path: &Path, summary: &StreamSummary, guid: u64) -> Result<()> {
    let found = summary.substreams.first().map(|s| s.to_guid);
    if summary.compound || summary.substreams.len() != 1 || found != Some(guid) {
        return Err(Error::UnexpectedStream {
            path: path.to_path_buf(),
            expected_guid: guid,
            found_guid: found,
        });
    }
    Ok(())
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

/// What [`receive_file`] received.
#[derive(Debug)]
#[non_exhaustive]
pub struct ReceivedFile {
    /// What the receive reported.
    pub received: Received,
    /// The stream's bytes rebuilt from its parity sidecar on the way into
    /// the receive (the file itself is not changed); empty when it was
    /// intact or has no sidecar.
    #[cfg(feature = "parity")]
    pub repaired: parity::Ranges,
}

/// Receives a stream file into `target`: checks it first, then receives
/// without resumable state, so a failure leaves no partial dataset.
///
/// Without a sidecar the file must verify (every record checksum). With
/// one (`FILE.zpar`, feature `parity`), it is checked against the sidecar
/// first: a damaged but repairable file is received through the repair
/// (its damaged blocks rebuilt as they stream into the receive, the file
/// left as it is; see [`ReceivedFile::repaired`]); an unrecoverable one is
/// [`Error::Unrecoverable`] and nothing is received.
pub fn receive_file(zfs: &Zfs, target: &DatasetName, path: &Path) -> Result<ReceivedFile> {
    #[cfg(feature = "parity")]
    {
        let sidecar = parity::sidecar_path(path);
        if sidecar.symlink_metadata().is_ok() {
            return receive_with_sidecar(zfs, target, path, &sidecar);
        }
    }
    let summary = verify_file(path)?;
    let file = File::open(path).map_err(|e| io("open", path, e))?;
    Ok(ReceivedFile {
        received: receive_verified(zfs, target, path, &summary, &file)?,
        #[cfg(feature = "parity")]
        repaired: parity::Ranges::default(),
    })
}

#[cfg(feature = "parity")]
fn receive_with_sidecar(
    zfs: &Zfs,
    target: &DatasetName,
    path: &Path,
    sidecar_path: &Path,
) -> Result<ReceivedFile> {
    let scan = parity::scan(path)?;
    if !scan.why.is_empty() {
        return Err(parity::refuse(path, scan.condition()));
    }
    let file = File::open(path).map_err(|e| io("open", path, e))?;
    let header = match (scan.header, &scan.verified, scan.damaged.is_empty()) {
        (_, Ok(summary), true) => {
            return Ok(ReceivedFile {
                received: receive_verified(zfs, target, path, summary, &file)?,
                repaired: parity::Ranges::default(),
            })
        }
        (Some(header), _, false) => header,
        _ => return Err(parity::refuse(path, scan.condition())),
    };
    if header.stream.compound {
        return Err(Error::CompoundStream {
            path: path.to_path_buf(),
        });
    }
    let sidecar = File::open(sidecar_path).map_err(|e| io("open", sidecar_path, e))?;
    let mut reader =
        parity::RepairingReader::new(&scan, &header, path, &file, sidecar_path, &sidecar);
    let dataset_type = match header.stream.dataset_type {
        1 => Some(zfs_core::DatasetType::Filesystem),
        2 => Some(zfs_core::DatasetType::Volume),
        _ => None,
    };
    let opts = receive_options(header.stream.from_guid, dataset_type)?;
    let pipe = Pipe::new(COPY_CHUNK).map_err(Error::from)?;
    let (read, write) = (pipe.read, pipe.write);
    let existed = zfs.exists(target);
    let repaired = scan.damaged.clone();
    let received = std::thread::scope(|scope| {
        let feeder = crate::execute::spawn(scope, "zfs-repair", move || -> Result<()> {
            let mut out = File::from(write); // closed when this ends
            let mut buf = vec![0u8; COPY_CHUNK];
            loop {
                let n = read_repaired(&mut reader, &mut buf, path)?;
                if n == 0 {
                    return Ok(());
                }
                // Every block is the one the sidecar's digest names (read
                // as such, or rebuilt and checked), and the kernel checks
                // the stream's own checksums.
                out.write_all(&buf[..n])
                    .map_err(|e| io("write into the receive of", path, e))?;
            }
        })
        .map_err(|source| Error::Thread {
            target: target.clone(),
            source,
        })?;
        let received = zfs.receive(target, &read, &opts);
        drop(read);
        let fed = feeder.join().map_err(|_| Error::Panicked {
            thread: "repair",
            target: target.clone(),
        })?;
        match (received, fed) {
            (Ok(r), Ok(())) => Ok(r),
            // The receive stopped first and closed the pipe: the feeder's
            // broken pipe is its echo.
            (Err(e), Err(Error::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                Err(Error::Zfs(e))
            }
            // The feeder failed first (a read error, a rebuilt block that
            // does not match): the receive's error is its echo.
            (Err(_), Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(Error::Zfs(e)),
            (Ok(_), Err(e)) => Err(e),
        }
    });
    match received {
        Ok(received) => Ok(ReceivedFile { received, repaired }),
        Err(e) => {
            if !existed {
                let _ = zfs.abort_resumable_receive(target);
            }
            Err(e)
        }
    }
}

#[cfg(feature = "parity")]
fn read_repaired(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(match e.downcast::<Error>() {
                    Ok(inner) => inner,
                    Err(e) => io("read", path, e),
                })
            }
        }
    }
}

/// A full stream (`from_guid` 0) creates the target: a backup's defaults,
/// where its type has them (from the stream's BEGIN record).
fn receive_options(
    from_guid: u64,
    dataset_type: Option<zfs_core::DatasetType>,
) -> Result<ReceiveOptions> {
    let mut opts = ReceiveOptions::new();
    if let (0, Some(on)) = (from_guid, dataset_type) {
        opts = opts.with_overrides(crate::plan::backup_defaults(on, &NvList::new())?);
    }
    Ok(opts)
}

/// Receives a verified stream file (`summary`) from `file`.
fn receive_verified(
    zfs: &Zfs,
    target: &DatasetName,
    path: &Path,
    summary: &StreamSummary,
    file: &File,
) -> Result<Received> {
    if summary.compound {
        return Err(Error::CompoundStream {
            path: path.to_path_buf(),
        });
    }
    let existed = zfs.exists(target);
    let first = summary.substreams.first();
    let opts = receive_options(
        first.map_or(0, |s| s.from_guid),
        first.and_then(|s| s.dataset_type),
    )?;
    match zfs.receive(target, file, &opts) {
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
