//! Running a plan: each transfer streams `send` into `receive` through
//! in-process pipes, with no subprocess.
//!
//! Per transfer: the kernel's send writes into a pipe this process created;
//! a relay thread copies into a second pipe (counting bytes for progress and
//! watching the cancel token); the receive reads the second pipe. When any
//! side fails, the relay closes its ends so the others stop, and the root
//! cause is reported (a receiver's checksum error, not the sender's EPIPE).
//! Receives are resumable: an interrupted run leaves a token the next plan
//! resumes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zfs_core::pipe::Pipe;
use zfs_core::{
    DatasetName, Errno, ErrorKind, HoldGuard, NvList, ReceiveOptions, SendOptions, Snapshot,
    SnapshotName, SnapshotOrBookmark, Zfs,
};

use crate::error::{Error, Result};
use crate::plan::{Action, Base, Plan, Step};

/// Cancels a running replication from another thread. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    /// Stops every transfer at its next read; the receives keep resumable state.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A progress report, sent to the observer as bytes move.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// The dataset being replicated into.
    pub target: &'a DatasetName,
    /// The snapshot being transferred.
    pub snapshot: &'a SnapshotName,
    /// Bytes moved for this dataset so far.
    pub bytes: u64,
    /// The plan's estimate for this dataset.
    pub estimated_bytes: u64,
}

/// Receives progress reports; called from transfer threads.
pub type Observer = Arc<dyn Fn(&Progress<'_>) + Send + Sync>;

/// Options for running a plan.
#[derive(Clone, Default)]
pub struct ExecuteOptions {
    pub cancel: CancelToken,
    pub observer: Option<Observer>,
}

impl std::fmt::Debug for ExecuteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecuteOptions")
            .field("cancel", &self.cancel)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// What one transfer moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub snapshot: SnapshotName,
    pub bytes: u64,
}

/// What running a plan did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per target dataset: the transfers made, in order.
    pub transfers: Vec<(DatasetName, Vec<Transfer>)>,
    /// Target datasets destroyed because their source was.
    pub destroyed: Vec<DatasetName>,
    /// Bookmarks left on the source as future incremental bases.
    pub bookmarks: Vec<String>,
}

impl Report {
    pub fn bytes(&self) -> u64 {
        self.transfers
            .iter()
            .flat_map(|(_, t)| t)
            .map(|t| t.bytes)
            .sum()
    }
}

/// Pipe buffer requested for each transfer (capped by pipe-max-size).
const PIPE_SIZE: usize = 1 << 20;
/// Most bytes the relay moves per step.
const RELAY_CHUNK: usize = 1 << 20;
/// How long to retry a resume that finds the previous receive still aborting.
const RESUME_RETRY: Duration = Duration::from_secs(15);

/// A short, stable tag for a target, so several targets of one source keep
/// separate bookmarks.
pub(crate) fn target_tag(target: &DatasetName) -> String {
    // FNV-1a, 32 bits.
    let mut h: u32 = 0x811c_9dc5;
    for b in target.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// A finished step: target, transfers, bookmark left.
type StepOutcome = (DatasetName, Vec<Transfer>, Option<String>);

/// Runs `plan`. Refuses a plan with divergence (nothing changes then).
pub fn execute(zfs: &Zfs, plan: &Plan, opts: &ExecuteOptions) -> Result<Report> {
    let divergences = plan.divergences();
    if !divergences.is_empty() {
        return Err(Error::Diverged(divergences));
    }
    let mut report = Report::default();
    // Parents before children: run one depth level at a time, the datasets
    // of a level in parallel.
    let mut levels: Vec<Vec<&Step>> = Vec::new();
    let top = plan
        .steps
        .iter()
        .map(|s| s.target.depth())
        .min()
        .unwrap_or(0);
    for step in &plan.steps {
        let i = step.target.depth() - top;
        if levels.len() <= i {
            levels.resize_with(i + 1, Vec::new);
        }
        levels[i].push(step);
    }
    let results: Mutex<Vec<StepOutcome>> = Mutex::new(Vec::new());
    for level in levels {
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let workers = plan.replication.parallelism.min(level.len()).max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(step) = level.get(i) else { break };
                    if opts.cancel.is_cancelled() || lock(&first_error).is_some() {
                        break;
                    }
                    match run_step(zfs, plan, step, opts) {
                        Ok((transfers, bookmark)) => {
                            lock(&results).push((step.target.clone(), transfers, bookmark))
                        }
                        Err(e) => {
                            lock(&first_error).get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
    }
    for (target, transfers, bookmark) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        report.transfers.push((target, transfers));
        report.bookmarks.extend(bookmark);
    }
    if plan.replication.destroy_removed {
        for removed in plan.removed_on_source.iter().rev() {
            destroy_tree(zfs, removed)?;
            report.destroyed.push(removed.clone());
        }
    }
    Ok(report)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Destroys a dataset with its snapshots and descendants.
fn destroy_tree(zfs: &Zfs, root: &DatasetName) -> Result<()> {
    if !zfs.exists(root) {
        return Ok(());
    }
    let mut all = zfs.descendants(root)?;
    all.reverse(); // children first
    for d in all {
        let snaps: Vec<SnapshotName> = zfs
            .snapshots(d.name())?
            .into_iter()
            .map(|s| s.name().clone())
            .collect();
        zfs.destroy_snapshots(&snaps, false)?;
        zfs.destroy(d.name())?;
    }
    Ok(())
}

/// One dataset: clear stale state, roll back if planned, hold the bases,
/// transfer, then leave a bookmark of the newest snapshot on the source.
fn run_step(
    zfs: &Zfs,
    plan: &Plan,
    step: &Step,
    opts: &ExecuteOptions,
) -> Result<(Vec<Transfer>, Option<String>)> {
    let repl = &plan.replication;
    if let Some(r) = &step.resume {
        if !r.matches {
            zfs.abort_resumable_receive(&step.target)?;
        }
    }
    if let Some(rb) = &step.rollback {
        zfs.destroy_snapshots(&rb.destroy, false)?;
        zfs.rollback_to(&rb.to)?;
    }
    // Each transfer: (snapshot to send, its base or None for full, resume?)
    let mut chain: Vec<(Snapshot, Option<SnapshotOrBookmark>, bool)> = Vec::new();
    let mut holds: Vec<(SnapshotName, String)> = Vec::new();
    let tag = format!("{}:{}.{}", repl.prefix, std::process::id(), unique());
    let mut target_holds: Vec<(SnapshotName, String)> = Vec::new();
    match &step.action {
        Action::UpToDate | Action::NoSourceSnapshot => {}
        Action::Full { snapshot, then } => {
            chain.push((snapshot.clone(), None, false));
            push_chain(&mut chain, snapshot, then);
        }
        Action::Resume { snapshot, then } => {
            chain.push((snapshot.clone(), None, true));
            push_chain(&mut chain, snapshot, then);
        }
        Action::Incremental {
            base,
            target_base,
            snapshots,
        } => {
            if let Some((first, rest)) = snapshots.split_first() {
                chain.push((first.clone(), Some(base.as_send_base()), false));
                push_chain(&mut chain, first, rest);
            }
            if let Base::Snapshot(s) = base {
                holds.push((s.name().clone(), tag.clone()));
            }
            target_holds.push((target_base.name().clone(), tag.clone()));
        }
    }
    // Temporary holds: released on drop, and by the kernel if we die.
    let _source_guard: Option<HoldGuard> = hold(zfs, &holds)?;
    let _target_guard: Option<HoldGuard> = hold(zfs, &target_holds)?;

    let mut transfers = Vec::new();
    let mut moved = 0u64;
    for (snapshot, base, resume) in &chain {
        let recv = ReceiveOptions::new()
            .resumable(true)
            .raw(repl.raw)
            .properties(step.receive_props.clone());
        let bytes = if *resume {
            resume_transfer(zfs, step, snapshot.name(), &recv, opts, moved)?
        } else {
            let mut send = SendOptions::new().flags(step.flags);
            if let Some(b) = base {
                send = send.from(b.clone());
            }
            transfer(
                zfs,
                step,
                snapshot.name(),
                TransferKind::Send(&send),
                &recv,
                opts,
                moved,
            )?
        };
        moved += bytes;
        transfers.push(Transfer {
            snapshot: snapshot.name().clone(),
            bytes,
        });
    }
    let bookmark = match chain.last() {
        Some((newest, _, _)) => Some(leave_bookmark(
            zfs,
            repl.prefix.as_str(),
            &step.source,
            &step.target,
            newest.name(),
        )?),
        None => None,
    };
    Ok((transfers, bookmark))
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn push_chain(
    chain: &mut Vec<(Snapshot, Option<SnapshotOrBookmark>, bool)>,
    first: &Snapshot,
    rest: &[Snapshot],
) {
    let mut prev = first.clone();
    for s in rest {
        chain.push((s.clone(), Some(prev.name().clone().into()), false));
        prev = s.clone();
    }
}

fn hold(zfs: &Zfs, holds: &[(SnapshotName, String)]) -> Result<Option<HoldGuard>> {
    if holds.is_empty() {
        return Ok(None);
    }
    Ok(Some(zfs.hold_temporary(holds)?))
}

/// Bookmarks `newest` on the source as `<prefix>_<target tag>_<snapshot>`,
/// then destroys this target's older bookmarks.
fn leave_bookmark(
    zfs: &Zfs,
    prefix: &str,
    source: &DatasetName,
    target: &DatasetName,
    newest: &SnapshotName,
) -> Result<String> {
    let stem = format!("{prefix}_{}_", target_tag(target));
    let mark = source.bookmark(&format!("{stem}{}", newest.short_name()))?;
    let existing = zfs.bookmarks(source)?;
    if !existing.iter().any(|b| b.name() == &mark) {
        zfs.bookmark(&[(mark.clone(), newest.clone().into())])?;
    }
    let stale: Vec<_> = existing
        .into_iter()
        .filter(|b| b.name().short_name().starts_with(&stem) && b.name() != &mark)
        .map(|b| b.name().clone())
        .collect();
    zfs.destroy_bookmarks(&stale)?;
    Ok(mark.to_string())
}

enum TransferKind<'a> {
    Send(&'a SendOptions),
    Resume(&'a zfs_core::ResumeToken),
}

/// Finishes an interrupted transfer from the target's current token. Right
/// after an interruption the old receive may still be aborting (EBUSY, or a
/// stale token): re-read the token and retry for a bounded time.
fn resume_transfer(
    zfs: &Zfs,
    step: &Step,
    snapshot: &SnapshotName,
    recv: &ReceiveOptions,
    opts: &ExecuteOptions,
    moved: u64,
) -> Result<u64> {
    let started = Instant::now();
    loop {
        let token = zfs
            .properties(&step.target)?
            .receive_resume_token
            .ok_or_else(|| Error::ResumeTokenGone {
                target: step.target.clone(),
            })?;
        let token = zfs_core::ResumeToken::parse(&token)?;
        match transfer(
            zfs,
            step,
            snapshot,
            TransferKind::Resume(&token),
            recv,
            opts,
            moved,
        ) {
            Err(Error::Transfer { source, .. })
                if source.errno() == Some(Errno(libc::EBUSY))
                    && started.elapsed() < RESUME_RETRY =>
            {
                std::thread::sleep(Duration::from_millis(300));
            }
            other => return other,
        }
    }
}

/// One send → relay → receive transfer. Returns the stream bytes moved.
fn transfer(
    zfs: &Zfs,
    step: &Step,
    snapshot: &SnapshotName,
    kind: TransferKind<'_>,
    recv: &ReceiveOptions,
    opts: &ExecuteOptions,
    moved_before: u64,
) -> Result<u64> {
    let fail = |source: zfs_core::Error| Error::Transfer {
        target: step.target.clone(),
        snapshot: snapshot.to_string(),
        source: Box::new(source),
    };
    let upstream = Pipe::new(PIPE_SIZE).map_err(fail)?;
    let downstream = Pipe::new(PIPE_SIZE).map_err(fail)?;
    let Pipe {
        read: up_read,
        write: up_write,
        ..
    } = upstream;
    let Pipe {
        read: down_read,
        write: down_write,
        ..
    } = downstream;
    let cancelled = AtomicBool::new(false);

    std::thread::scope(|scope| {
        let sender = scope.spawn(move || {
            let r = match kind {
                TransferKind::Send(send) => zfs.send(snapshot, send, &up_write),
                TransferKind::Resume(token) => zfs.send_resume(token, &up_write),
            };
            drop(up_write); // EOF for the relay
            r
        });
        let cancelled = &cancelled;
        let (up_read, down_write) = (up_read, down_write);
        let relay = scope.spawn(move || -> std::io::Result<u64> {
            // Pipe to pipe inside the kernel (splice): no copy through user
            // space, but every chunk passes here for progress and cancel.
            let mut total = 0u64;
            loop {
                if opts.cancel.is_cancelled() {
                    cancelled.store(true, Ordering::SeqCst);
                    return Ok(total); // dropping both ends stops send and receive
                }
                let n = match zfs_core::pipe::splice(&up_read, &down_write, RELAY_CHUNK) {
                    Ok(0) => return Ok(total),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                total += n as u64;
                if let Some(observer) = &opts.observer {
                    observer(&Progress {
                        target: &step.target,
                        snapshot,
                        bytes: moved_before + total,
                        estimated_bytes: step.estimated_bytes,
                    });
                }
            }
        });
        let received = zfs.receive(&step.target, &down_read, recv);
        drop(down_read); // unblocks the relay if the receive stopped early
        let relayed = relay.join();
        let sent = sender.join();
        if cancelled.load(Ordering::SeqCst) {
            return Err(Error::Cancelled {
                done: Box::default(),
            });
        }
        let sent = sent.unwrap_or_else(|_| {
            Err(zfs_core::Error::from(std::io::Error::other(
                "sender thread panicked",
            )))
        });
        let relayed =
            relayed.unwrap_or_else(|_| Err(std::io::Error::other("relay thread panicked")));
        root_cause(sent, relayed, received).map_err(fail)
    })
}

/// Picks the error that explains a failed transfer. A sender stopped by a
/// broken or interrupted pipe only reacts to the receiver; a receiver that
/// saw a damaged or truncated stream may only react to the sender.
fn root_cause(
    sent: zfs_core::Result<()>,
    relayed: std::io::Result<u64>,
    received: zfs_core::Result<zfs_core::Received>,
) -> Result<u64, zfs_core::Error> {
    let reacts =
        |e: &zfs_core::Error| matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::Interrupted);
    match (sent, relayed, received) {
        (Ok(()), Ok(bytes), Ok(_)) => Ok(bytes),
        (Err(s), _, Err(r)) if !reacts(&s) && r.kind() == ErrorKind::BadStream => Err(s),
        (_, _, Err(r)) => Err(r),
        (Err(s), _, Ok(_)) => Err(s),
        (Ok(()), Err(e), Ok(_)) => Err(zfs_core::Error::from(e)),
    }
}

/// Received-property defaults that keep a backup from mounting over live
/// paths (`canmount=off`).
pub fn safe_receive_props() -> NvList {
    NvList::new().with("canmount", 0u64)
}
