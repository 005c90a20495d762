//! Running a plan: each transfer streams `send` into `receive` through
//! in-process pipes, with no subprocess.
//!
//! Per transfer, three threads that block the host's signals (so no EINTR
//! and no `SIGPIPE` reach the kernel's send or receive): the kernel's send
//! writes into a pipe this process created; a relay moves it into a second
//! pipe with `splice` (progress, cancel), never blocking: it polls each pipe
//! together with a cancel wake-up; the receive reads the second pipe. The
//! calling thread only waits. When any side fails, the relay closes its
//! ends so the others stop, and the root cause is reported (a receiver's
//! checksum error, not the sender's broken pipe). Receives are resumable: an
//! interrupted run leaves a token the next plan resumes.
//!
//! Faults and what they leave:
//! - a cancel: [`Error::Cancelled`] with the transfers that completed (each
//!   with its bookmark); nothing else changes after it; the interrupted
//!   receive is resumed by the next run;
//! - a second run into the same target: [`Error::Busy`], nothing changed;
//! - a failed or killed transfer: the temporary holds go with it (they are
//!   bound to a descriptor the kernel closes), the receive is resumable.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use zfs_core::pipe::{poll, Interest, Pipe, Wakeup};
use zfs_core::{
    Bookmark, BookmarkName, DatasetName, Errno, ErrorKind, ReceiveOptions, SendOptions, Snapshot,
    SnapshotName, SnapshotOrBookmark, Zfs,
};

use crate::endpoint::{Endpoint, Lease, Local, Sides};
use crate::error::{Error, Result};
use crate::event::{Event, Observer, Progress};
use crate::lock::fnv1a64;
use crate::plan::{Action, Base, Plan, Step};

/// Cancels a running replication from another thread. Cloning shares it.
///
/// A cancel wakes every transfer at once (each relay polls a wake-up
/// descriptor beside its pipes), closes their pipes so the kernel's send and
/// receive stop, and makes [`execute`] return [`Error::Cancelled`] without
/// changing anything more.
#[derive(Clone, Default)]
pub struct CancelToken(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    cancelled: AtomicBool,
    /// The running transfers' wake-up descriptors.
    wakeups: Mutex<Vec<Weak<Wakeup>>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CancelToken")
            .field(&self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops every transfer now; interrupted receives keep resumable state.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        for w in lock(&self.0.wakeups).iter() {
            if let Some(w) = w.upgrade() {
                w.wake();
            }
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Registers a transfer's wake-up (woken at once if already cancelled).
    pub(crate) fn register(&self, wakeup: &Arc<Wakeup>) {
        let mut list = lock(&self.0.wakeups);
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(wakeup));
        drop(list);
        if self.is_cancelled() {
            wakeup.wake();
        }
    }
}

/// Options for running a plan: a cancel token and an observer of the
/// run's [`Event`]s. Built with methods, so that new options do not break
/// callers.
///
/// ```
/// use zfs_replicate::{CancelToken, ExecuteOptions};
///
/// let cancel = CancelToken::new();
/// let opts = ExecuteOptions::new()
///     .cancel_token(cancel.clone())
///     .on_progress(|p| eprint!("\r{} of about {} bytes", p.job_bytes, p.job_estimated_bytes));
/// // From a Ctrl-C handler or another thread: `cancel.cancel()`.
/// # let _ = opts;
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ExecuteOptions {
    /// Cancels the run from another thread.
    pub cancel: CancelToken,
    /// Sees every [`Event`] of the run.
    pub observer: Option<Observer>,
    /// The running job's totals, for its progress events.
    job: Option<Arc<JobTotals>>,
}

/// Bytes moved per target in one run, and their sum.
struct JobTotals {
    estimated: u64,
    moved: Mutex<(BTreeMap<DatasetName, u64>, u64)>,
}

impl ExecuteOptions {
    /// No cancel (a token nobody else holds) and no observer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the run when `token` is cancelled.
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// Calls `f` with every event of the run (replacing an observer given
    /// before).
    pub fn on_event(mut self, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Calls `f` with the [`Progress`] events only (replacing an observer
    /// given before).
    pub fn on_progress(self, f: impl Fn(&Progress<'_>) + Send + Sync + 'static) -> Self {
        self.on_event(move |e| {
            if let Event::Progress(p) = e {
                f(p)
            }
        })
    }

    /// Sends `event` to the observer, if any (and to `tracing`, with that
    /// feature).
    pub(crate) fn emit(&self, event: Event<'_>) {
        if let (Event::Progress(p), Some(job)) = (&event, &self.job) {
            // Totals and delivery under one lock: observers see them in
            // order, whichever transfer thread reports.
            let mut moved = lock(&job.moved);
            let (per_target, total) = &mut *moved;
            let before = per_target.insert(p.target.clone(), p.bytes).unwrap_or(0);
            *total = (*total + p.bytes).saturating_sub(before);
            let event = Event::Progress(Progress {
                job_bytes: *total,
                job_estimated_bytes: job.estimated,
                ..p.clone()
            });
            crate::trace::event(&event);
            if let Some(observer) = &self.observer {
                observer(&event);
            }
            return;
        }
        crate::trace::event(&event);
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }
}

impl std::fmt::Debug for ExecuteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecuteOptions")
            .field("cancel", &self.cancel)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// The options of one run, whose progress events carry the job's totals.
fn with_job_totals(opts: &ExecuteOptions, plan: &Plan) -> ExecuteOptions {
    ExecuteOptions {
        job: Some(Arc::new(JobTotals {
            estimated: plan.estimated_bytes(),
            moved: Mutex::new((BTreeMap::new(), 0)),
        })),
        ..opts.clone()
    }
}

/// What one transfer moved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Transfer {
    pub snapshot: SnapshotName,
    pub bytes: u64,
}

/// What running a plan did.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Report {
    /// Per target dataset: the transfers made, in order.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serialize::transfers")
    )]
    pub transfers: Vec<(DatasetName, Vec<Transfer>)>,
    /// Target datasets destroyed because their source was.
    pub destroyed: Vec<DatasetName>,
    /// Bookmarks left on the source as future incremental bases.
    pub bookmarks: Vec<BookmarkName>,
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
/// How long the relay waits before looking at the cancel flag again, should
/// a wake-up be missed (it is not: this is a second line of defence).
const RELAY_POLL: Duration = Duration::from_millis(500);
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

/// The bookmark left on `source` after replicating the snapshot with `guid`
/// into `target`: `<prefix>_<16 hex digits>`, a hash of the target's name
/// and the GUID. It names the exact snapshot (a rotating name such as
/// `@daily` gets a new bookmark for each new GUID), keeps targets apart, and
/// is short: it fits wherever `<prefix>_<time>` snapshots of the source fit.
pub(crate) fn cursor_bookmark(
    prefix: &str,
    source: &DatasetName,
    target: &DatasetName,
    guid: u64,
) -> Result<BookmarkName> {
    Ok(source.bookmark(&cursor_short_name(prefix, target, guid))?)
}

fn cursor_short_name(prefix: &str, target: &DatasetName, guid: u64) -> String {
    let mut key = target.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&guid.to_le_bytes());
    format!("{prefix}_{:016x}", fnv1a64(&key))
}

/// Whether `mark` is a cursor this crate left for `target`: the current form
/// for its own GUID, or the older `<prefix>_<target tag>_<snapshot>` form
/// (`legacy_stem`, from [`legacy_cursor_stem`]).
fn is_cursor_of(prefix: &str, target: &DatasetName, legacy_stem: &str, mark: &Bookmark) -> bool {
    is_current_cursor(prefix, target, mark) || mark.name().short_name().starts_with(legacy_stem)
}

/// Whether `mark` is the cursor this crate leaves for `target` now (named
/// for its own GUID; the older form is recognised only for clean-up).
pub(crate) fn is_current_cursor(prefix: &str, target: &DatasetName, mark: &Bookmark) -> bool {
    mark.name().short_name() == cursor_short_name(prefix, target, mark.guid())
}

/// `<prefix>_<target tag>_`: how cursors of earlier versions began.
fn legacy_cursor_stem(prefix: &str, target: &DatasetName) -> String {
    format!("{prefix}_{}_", target_tag(target))
}

/// What one step (dataset) did, also when it stopped early.
#[derive(Debug)]
struct StepOutcome {
    index: usize,
    source: DatasetName,
    target: DatasetName,
    transfers: Vec<Transfer>,
    /// The newest snapshot received, which the cursor bookmark names.
    newest: Option<Snapshot>,
    bookmark: Option<BookmarkName>,
}

/// Runs `plan`. Refuses a plan with divergence, and a second run into the
/// same target ([`Error::Busy`]); nothing changes then.
///
/// A cancel returns [`Error::Cancelled`] holding what completed before it;
/// after the cancel nothing more is changed (no rollback, no destroy, no
/// bookmark beyond those of completed transfers).
pub fn execute(zfs: &Zfs, plan: &Plan, opts: &ExecuteOptions) -> Result<Report> {
    let local = Local::new(zfs);
    execute_with(&local, &local, plan, opts)
}

/// [`execute`] with the source and the target as endpoints. The plan must
/// come from the same two ([`Replication::plan_with`]).
///
/// [`Replication::plan_with`]: crate::Replication::plan_with
pub fn execute_with(
    source: &dyn Endpoint,
    target: &dyn Endpoint,
    plan: &Plan,
    opts: &ExecuteOptions,
) -> Result<Report> {
    refuse_divergence(plan)?;
    let _lock = target.lock(&plan.replication.target)?;
    execute_locked(Sides { source, target }, plan, opts)
}

fn refuse_divergence(plan: &Plan) -> Result<()> {
    let divergences = plan.divergences();
    if divergences.is_empty() {
        Ok(())
    } else {
        Err(Error::Diverged(divergences))
    }
}

fn cancelled(done: Report) -> Error {
    Error::Cancelled {
        done: Box::new(done),
    }
}

/// [`execute`] for a caller that holds the target's lock.
pub(crate) fn execute_locked(
    sides: Sides<'_>,
    plan: &Plan,
    opts: &ExecuteOptions,
) -> Result<Report> {
    refuse_divergence(plan)?;
    let opts = &with_job_totals(opts, plan);
    let span = crate::trace::run(plan);
    let _entered = span.enter();
    let mut report = Report::default();
    if opts.cancel.is_cancelled() {
        return Err(cancelled(report));
    }
    let numbering = Numbering::of(plan);
    // Parents before children: run one depth level at a time, the datasets
    // of a level in parallel.
    let mut levels: Vec<Vec<(usize, &Step)>> = Vec::new();
    let top = plan
        .steps
        .iter()
        .map(|s| s.target.depth())
        .min()
        .unwrap_or(0);
    for (index, step) in plan.steps.iter().enumerate() {
        let i = step.target.depth() - top;
        if levels.len() <= i {
            levels.resize_with(i + 1, Vec::new);
        }
        levels[i].push((index, step));
    }
    let mut outcomes: Vec<StepOutcome> = Vec::new();
    for level in levels {
        let (mut done, mut error) = run_level(sides, plan, &level, opts, &numbering, &span);
        // A completed transfer keeps its bookmark, also after a cancel or a
        // failure elsewhere in the level.
        if let Err(e) = leave_bookmarks(sides.source, &plan.replication.prefix, &mut done) {
            error.get_or_insert(e);
        }
        outcomes.append(&mut done);
        if let Some(e) = error {
            outcomes.sort_by_key(|o| o.index);
            for o in outcomes {
                report.bookmarks.extend(o.bookmark);
                if !o.transfers.is_empty() {
                    report.transfers.push((o.target, o.transfers));
                }
            }
            return Err(match e {
                Error::Cancelled { .. } => cancelled(report),
                other => other,
            });
        }
    }
    outcomes.sort_by_key(|o| o.index);
    for o in outcomes {
        report.bookmarks.extend(o.bookmark);
        report.transfers.push((o.target, o.transfers));
    }
    if plan.replication.destroy_removed && !plan.removed_on_source.is_empty() {
        for removed in plan.removed_on_source.iter().rev() {
            if opts.cancel.is_cancelled() {
                return Err(cancelled(report));
            }
            destroy_tree(sides.target, removed)?;
            opts.emit(Event::Destroyed { target: removed });
            report.destroyed.push(removed.clone());
        }
    }
    Ok(report)
}

/// Runs the steps of one depth level on up to `parallelism` worker threads.
/// Returns what finished (completely or partly) and the first error; after
/// an error or a cancel no further step starts. A cancel wins over the
/// errors it caused.
fn run_level(
    sides: Sides<'_>,
    plan: &Plan,
    level: &[(usize, &Step)],
    opts: &ExecuteOptions,
    numbering: &Numbering,
    run_span: &crate::trace::Span,
) -> (Vec<StepOutcome>, Option<Error>) {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<StepOutcome>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let record = |e: Error| {
        let mut slot = lock(&first_error);
        let replace = match &*slot {
            None => true,
            // A cancel explains the failures it caused.
            Some(_) => matches!(e, Error::Cancelled { .. }),
        };
        if replace {
            *slot = Some(e);
        }
    };
    // The bases of every step, held at once: one call per pool and side,
    // each a transaction group, instead of two per step. Steps whose bases
    // could not be found here hold their own, as do all if the batch fails.
    let held = hold_level(sides, plan, level, opts);
    let worker = || {
        // Transfer threads only run ZFS operations: the host's signals go
        // to its own threads.
        let _ = zfs_core::signal::block_async_signals();
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(&(index, step)) = level.get(i) else {
                break;
            };
            if lock(&first_error).is_some() {
                break;
            }
            if opts.cancel.is_cancelled() {
                record(cancelled(Report::default()));
                break;
            }
            let bases_held = held.as_ref().is_some_and(|h| h.steps.contains(&index));
            let number = numbering.of_step(index);
            let span = crate::trace::step(run_span, step);
            let (transfers, newest, error) = {
                let _entered = span.enter();
                let (transfers, newest, error) =
                    run_step(sides, plan, step, opts, bases_held, number);
                if let Some(e) = &error {
                    crate::trace::step_failed(step, e);
                }
                (transfers, newest, error)
            };
            lock(&results).push(StepOutcome {
                index,
                source: step.source.clone(),
                target: step.target.clone(),
                transfers,
                newest,
                bookmark: None,
            });
            if let Some(e) = error {
                record(e);
            }
        }
    };
    let workers = plan.replication.parallelism.min(level.len()).max(1);
    std::thread::scope(|scope| {
        for n in 0..workers {
            let spawned = std::thread::Builder::new()
                .name(format!("zfs-repl-{n}"))
                .spawn_scoped(scope, worker);
            if let Err(source) = spawned {
                // Fewer workers do the work; none at all is an error.
                if n == 0 {
                    let target = level.first().map_or_else(
                        || plan.replication.target.clone(),
                        |(_, s)| s.target.clone(),
                    );
                    record(Error::Thread { target, source });
                }
                break;
            }
        }
    });
    drop(held); // released: every transfer of the level has ended
    let done = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let error = first_error.into_inner().unwrap_or_else(|p| p.into_inner());
    (done, error)
}

/// Temporary holds on the bases of a level's steps.
struct LevelHolds {
    /// The plan indices of the steps whose bases are held.
    steps: Vec<usize>,
    _source: Option<Lease>,
    _target: Option<Lease>,
}

/// Holds the bases of every step of `level` that transfers, in one call per
/// side; None when there is nothing to hold, a cancel came, or the batch
/// was refused (then each step holds its own and reports its own error).
fn hold_level(
    sides: Sides<'_>,
    plan: &Plan,
    level: &[(usize, &Step)],
    opts: &ExecuteOptions,
) -> Option<LevelHolds> {
    if opts.cancel.is_cancelled() {
        return None;
    }
    let mut steps = Vec::new();
    let (mut sources, mut targets) = (Vec::new(), Vec::new());
    for &(index, step) in level {
        if chain(&step.action).is_empty() {
            continue;
        }
        if let Ok((s, t)) = bases_to_hold(sides, step) {
            sources.extend(s);
            targets.extend(t);
            steps.push(index);
        }
    }
    if steps.is_empty() {
        return None;
    }
    let tag = hold_tag(&plan.replication.prefix);
    let source = hold(sides.source, &sources, &tag).ok()?;
    let target = hold(sides.target, &targets, &tag).ok()?;
    Some(LevelHolds {
        steps,
        _source: source,
        _target: target,
    })
}

/// A tag for temporary holds: `<prefix>:<pid>.<nanoseconds>`.
fn hold_tag(prefix: &str) -> String {
    format!("{prefix}:{}.{}", std::process::id(), unique())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Destroys a dataset with its snapshots and descendants.
fn destroy_tree(target: &dyn Endpoint, root: &DatasetName) -> Result<()> {
    if !target.exists(root)? {
        return Ok(());
    }
    let mut all = target.descendants(root)?;
    all.reverse(); // children first
    for d in all {
        let snaps: Vec<SnapshotName> = target
            .snapshots(&d)?
            .into_iter()
            .map(|s| s.name().clone())
            .collect();
        target.destroy_snapshots(&snaps)?;
        target.destroy(&d)?;
    }
    Ok(())
}

/// One transfer of a step: the snapshot to send, its base (None for a full
/// stream), and whether it resumes the target's token.
struct Link {
    snapshot: Snapshot,
    base: Option<SnapshotOrBookmark>,
    /// The GUID of the snapshot the target must hold for this transfer
    /// (None: a full stream, or a resume whose token knows it).
    target_base: Option<u64>,
    resume: bool,
}

/// The transfers of an action, in order.
fn chain(action: &Action) -> Vec<Link> {
    let mut links = Vec::new();
    let push_rest = |links: &mut Vec<Link>, first: &Snapshot, rest: &[Snapshot]| {
        let mut prev = first;
        for s in rest {
            links.push(Link {
                snapshot: s.clone(),
                base: Some(prev.name().clone().into()),
                target_base: Some(prev.guid()),
                resume: false,
            });
            prev = s;
        }
    };
    match action {
        Action::UpToDate | Action::NoSourceSnapshot => {}
        Action::Full { snapshot, then } | Action::Resume { snapshot, then } => {
            links.push(Link {
                snapshot: snapshot.clone(),
                base: None,
                target_base: None,
                resume: matches!(action, Action::Resume { .. }),
            });
            push_rest(&mut links, snapshot, then);
        }
        Action::Incremental {
            base, snapshots, ..
        } => {
            if let Some((first, rest)) = snapshots.split_first() {
                links.push(Link {
                    snapshot: first.clone(),
                    base: Some(base.as_send_base()),
                    target_base: Some(base.guid()),
                    resume: false,
                });
                push_rest(&mut links, first, rest);
            }
        }
    }
    links
}

/// The snapshots whose holds keep a step's bases alive during its
/// transfers: the source base (when it is a snapshot, not a bookmark) and
/// the target's copy of it. A resume holds the bases its token names.
fn bases_to_hold(sides: Sides<'_>, step: &Step) -> Result<(Vec<SnapshotName>, Vec<SnapshotName>)> {
    match &step.action {
        Action::Incremental {
            base, target_base, ..
        } => {
            let source = match base {
                Base::Snapshot(s) => vec![s.name().clone()],
                Base::Bookmark(_) => Vec::new(),
            };
            Ok((source, vec![target_base.name().clone()]))
        }
        Action::Resume { .. } => {
            let Some(from_guid) = step
                .resume
                .as_ref()
                .and_then(|r| r.token.as_ref())
                .and_then(|t| t.from_guid)
            else {
                return Ok((Vec::new(), Vec::new())); // a full stream has no base
            };
            let source = sides
                .source
                .snapshots(&step.source)?
                .into_iter()
                .filter(|s| s.guid() == from_guid)
                .map(|s| s.name().clone())
                .collect();
            let target = sides
                .target
                .snapshots(&step.target)?
                .into_iter()
                .filter(|s| s.guid() == from_guid)
                .map(|s| s.name().clone())
                .collect();
            Ok((source, target))
        }
        _ => Ok((Vec::new(), Vec::new())),
    }
}

/// One dataset: clear stale state, roll back if planned, hold the bases,
/// transfer. Returns what completed, also when it stops early (a cancel or
/// a failure), the newest snapshot received (bookmarked with the rest of
/// its level, [`leave_bookmarks`]) and the error that stopped it.
fn run_step(
    sides: Sides<'_>,
    plan: &Plan,
    step: &Step,
    opts: &ExecuteOptions,
    bases_held: bool,
    number: Option<(usize, usize)>,
) -> (Vec<Transfer>, Option<Snapshot>, Option<Error>) {
    let mut transfers = Vec::new();
    let mut newest: Option<Snapshot> = None;
    if let Some((index, count)) = number {
        opts.emit(Event::StepStarted { index, count, step });
    }
    let error = transfer_chain(
        sides,
        plan,
        step,
        opts,
        bases_held,
        &mut transfers,
        &mut newest,
    )
    .err();
    if let (Some((index, count)), None) = (number, &error) {
        opts.emit(Event::StepFinished {
            index,
            count,
            target: &step.target,
            transfers: &transfers,
            bytes: transfers.iter().map(|t| t.bytes).sum(),
        });
    }
    (transfers, newest, error)
}

/// The steps with work to do, numbered from 1 in plan order, for
/// [`Event::StepStarted`] and [`Event::StepFinished`].
struct Numbering {
    /// Per plan index: its number, if it has work.
    numbers: Vec<Option<usize>>,
    count: usize,
}

impl Numbering {
    fn of(plan: &Plan) -> Numbering {
        let mut count = 0;
        let numbers = plan
            .steps
            .iter()
            .map(|s| {
                let stale = s.resume.as_ref().is_some_and(|r| !r.matches);
                let work = !chain(&s.action).is_empty() || s.rollback.is_some() || stale;
                work.then(|| {
                    count += 1;
                    count
                })
            })
            .collect();
        Numbering { numbers, count }
    }

    fn of_step(&self, index: usize) -> Option<(usize, usize)> {
        self.numbers
            .get(index)
            .copied()
            .flatten()
            .map(|n| (n, self.count))
    }
}

fn transfer_chain(
    sides: Sides<'_>,
    plan: &Plan,
    step: &Step,
    opts: &ExecuteOptions,
    bases_held: bool,
    transfers: &mut Vec<Transfer>,
    newest: &mut Option<Snapshot>,
) -> Result<()> {
    let repl = &plan.replication;
    let check_cancel = || {
        if opts.cancel.is_cancelled() {
            Err(cancelled(Report::default()))
        } else {
            Ok(())
        }
    };
    check_cancel()?;
    if let Some(r) = &step.resume {
        if !r.matches {
            sides.target.abort_resumable_receive(&step.target)?;
            opts.emit(Event::ResumeCleared {
                target: &step.target,
            });
        }
    }
    if let Some(rb) = &step.rollback {
        check_cancel()?;
        sides.target.destroy_snapshots(&rb.destroy)?;
        sides.target.rollback_to(&rb.to)?;
        opts.emit(Event::RolledBack {
            target: &step.target,
            to: &rb.to,
            destroyed: &rb.destroy,
        });
    }
    let links = chain(&step.action);
    if links.is_empty() {
        return inherit_key(sides.target, step);
    }
    for parent in &step.create_parents {
        sides.target.create_placeholder(parent)?;
    }
    // Temporary holds: released on drop, and by the kernel if we die.
    let mut _guards = (None, None);
    if !bases_held {
        let tag = hold_tag(&repl.prefix);
        let (source_bases, target_bases) = bases_to_hold(sides, step)?;
        _guards = (
            hold(sides.source, &source_bases, &tag)?,
            hold(sides.target, &target_bases, &tag)?,
        );
    }

    let mut moved = 0u64;
    for link in &links {
        check_cancel()?;
        let mut recv = ReceiveOptions::new().resumable(true).raw(repl.raw);
        if !step.receive_props.is_empty() {
            recv = recv.properties(step.receive_props.clone());
        }
        // Properties only where the target is created (a full stream, or a
        // resumed one): later receives leave them as they are.
        if link.base.is_none() {
            recv = recv.with_overrides(step.receive_overrides.clone());
        }
        let span = crate::trace::transfer(link.snapshot.name(), link.base.as_ref(), link.resume);
        let _entered = span.enter();
        let result = if link.resume {
            opts.emit(Event::Resumed {
                target: &step.target,
                snapshot: link.snapshot.name(),
            });
            resume_transfer(sides, step, link.snapshot.name(), &recv, opts, moved)
        } else {
            let mut send = SendOptions::new().flags(step.flags);
            if let Some(b) = &link.base {
                send = send.from(b.clone());
            }
            transfer(
                sides,
                step,
                link.snapshot.name(),
                TransferKind::Send(&send),
                &recv,
                opts,
                moved,
            )
        };
        let bytes = result.map_err(|e| explain_receive_failure(sides.target, step, link, e))?;
        moved += bytes;
        transfers.push(Transfer {
            snapshot: link.snapshot.name().clone(),
            bytes,
        });
        *newest = Some(link.snapshot.clone());
    }
    inherit_key(sides.target, step)
}

/// Makes the step's target use its parent's key, when the plan says so
/// ([`Step::inherit_key`]) and, looked at now: the target is an encryption
/// root whose key is not loaded, its parent uses the key of the dataset
/// the plan named (the copy of the source's encryption root), and its key
/// is wrapped as that root's is (the same `keyformat`, `pbkdf2salt` and
/// `pbkdf2iters`; [`Zfs::force_inherit_key`](zfs_core::Zfs::force_inherit_key)
/// checks the same). A passphrase gets a new salt at every key change, so
/// a root whose key was changed on the target is told apart; raw and hex
/// keys have no salt. Otherwise the target stays an encryption root,
/// loadable with the source's key.
fn inherit_key(target: &dyn Endpoint, step: &Step) -> Result<()> {
    let (Some(root), Some(parent)) = (&step.inherit_key, step.target.parent()) else {
        return Ok(());
    };
    // A server that does not let us change what is stored (`:receive`):
    // the target stays its own encryption root.
    if target
        .refusal(crate::Op::SetProperty, &step.target)
        .is_some()
    {
        return Ok(());
    }
    let own = target.properties(&step.target)?;
    let is_root = own.encryption_root.as_deref() == Some(step.target.as_str());
    if !is_root || own.key_status == Some(zfs_core::KeyStatus::Available) {
        return Ok(());
    }
    let parent_root = target.properties(&parent)?.encryption_root;
    if parent_root.as_deref() != Some(root.as_str()) {
        return Ok(());
    }
    let root_props = target.properties(root)?;
    let wrapping = zfs_core::key::wrapping_parameters;
    if wrapping(&own) == wrapping(&root_props) {
        target.force_inherit_key(&step.target)?;
    }
    Ok(())
}

/// A receive that calls an intact stream invalid (EINVAL), or says the
/// target lacks the stream's base (ENODEV), may only have found its target
/// changed: another process destroyed it, or its base snapshot, during the
/// run (a base received by the previous link is not held). Then that is the
/// error.
///
/// A receive that a stop restarted is an interruption (see
/// [`restarted_by_a_stop`]).
fn explain_receive_failure(target: &dyn Endpoint, step: &Step, link: &Link, e: Error) -> Error {
    let e = restarted_by_a_stop(target, step, link, e);
    let Error::Transfer { source, .. } = &e else {
        return e;
    };
    if source.kind() == ErrorKind::Interrupted {
        return e;
    }
    // A full stream creates its target; a resume's token names its base.
    let Some(base_guid) = link.target_base.filter(|_| !link.resume) else {
        return e;
    };
    if !matches!(
        source.kind(),
        ErrorKind::BadStream | ErrorKind::StreamMismatch
    ) {
        return e;
    }
    // Gone (target or base) only when the target says so: a listing that
    // fails otherwise (a lost connection) proves nothing.
    let intact = match target.snapshots(&step.target) {
        Ok(snapshots) => snapshots.iter().any(|s| s.guid() == base_guid),
        Err(e) => e.kind() != crate::ErrorKind::NotFound,
    };
    if intact {
        return e;
    }
    match e {
        Error::Transfer { target, source, .. } => Error::TargetChanged { target, source },
        other => other,
    }
}

/// A stop (SIGSTOP, a debugger attaching, a cgroup freeze) that catches
/// the receive waiting on its pipe makes the pipe read return ERESTARTSYS.
/// The receive saves its resume state and returns it, and Linux, having
/// run no handler, restarts the ioctl after the stop, with the same begin
/// record and the pipe read from where it was. The restarted receive fails
/// at once, and its error hides the interruption:
/// - EBUSY: a plain receive finds the resume state the first one saved;
/// - EINVAL: a resume finds the saved offset moved on;
/// - a checksum error: the stream starts in the middle.
///
/// When the receive failed that way and the target now holds a resume
/// token for this very snapshot, the transfer was interrupted, and the
/// next run resumes it: that is the error ([`ErrorKind::Interrupted`],
/// with the kernel's errno kept).
fn restarted_by_a_stop(target_side: &dyn Endpoint, step: &Step, link: &Link, e: Error) -> Error {
    let Error::Transfer {
        target,
        snapshot,
        source,
    } = e
    else {
        return e;
    };
    let restart_symptom = matches!(
        source.kind(),
        ErrorKind::Busy | ErrorKind::BadStream | ErrorKind::StreamMismatch
    );
    let resumable_here = restart_symptom
        && target_side
            .resume_token(&step.target)
            .ok()
            .flatten()
            .is_some_and(|t| t.to_guid == link.snapshot.guid());
    let source = match (*source, resumable_here) {
        (
            zfs_core::Error::Zfs {
                operation,
                target,
                errno,
                ..
            },
            true,
        ) if operation == "lzc_receive" => Box::new(zfs_core::Error::Zfs {
            operation,
            target,
            kind: ErrorKind::Interrupted,
            errno,
        }),
        (other, _) => Box::new(other),
    };
    Error::Transfer {
        target,
        snapshot,
        source,
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn hold(side: &dyn Endpoint, snapshots: &[SnapshotName], tag: &str) -> Result<Option<Lease>> {
    if snapshots.is_empty() {
        return Ok(None);
    }
    let holds: Vec<(SnapshotName, String)> = snapshots
        .iter()
        .map(|s| (s.clone(), tag.to_owned()))
        .collect();
    Ok(Some(side.hold_temporary(&holds)?))
}

/// Leaves each outcome's cursor: bookmarks its newest snapshot on the
/// source (see [`cursor_bookmark`]; an existing bookmark is matched by
/// GUID), then destroys that target's other cursors. One bookmark call and
/// one destroy call per pool for the whole level (each waits for a
/// transaction group); if the batch is refused, one by one, and the first
/// error is returned after every cursor was tried.
fn leave_bookmarks(
    source: &dyn Endpoint,
    prefix: &str,
    outcomes: &mut [StepOutcome],
) -> Result<()> {
    let mut first_error = None;
    let mut create: BTreeMap<String, Vec<(usize, BookmarkName, SnapshotOrBookmark)>> =
        BTreeMap::new();
    let mut stale: Vec<(usize, Vec<BookmarkName>)> = Vec::new();
    for (i, o) in outcomes.iter_mut().enumerate() {
        let Some(newest) = &o.newest else { continue };
        let found = cursor_bookmark(prefix, &o.source, &o.target, newest.guid())
            .and_then(|mark| Ok((source.bookmarks(&o.source)?, mark)));
        let (existing, mark) = match found {
            Ok(found) => found,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        let present = existing
            .iter()
            .any(|b| b.name() == &mark && b.guid() == newest.guid());
        if present {
            o.bookmark = Some(mark.clone());
        } else {
            let from = newest.name().clone().into();
            let pool = o.source.pool().to_string();
            create
                .entry(pool)
                .or_default()
                .push((i, mark.clone(), from));
        }
        let legacy_stem = legacy_cursor_stem(prefix, &o.target);
        let old: Vec<BookmarkName> = existing
            .iter()
            .filter(|b| b.name() != &mark && is_cursor_of(prefix, &o.target, &legacy_stem, b))
            .map(|b| b.name().clone())
            .collect();
        if !old.is_empty() {
            stale.push((i, old));
        }
    }
    for marks in create.into_values() {
        let batch: Vec<_> = marks
            .iter()
            .map(|(_, m, f)| (m.clone(), f.clone()))
            .collect();
        if source.bookmark(&batch).is_ok() {
            for (i, mark, _) in marks {
                outcomes[i].bookmark = Some(mark.clone());
            }
            continue;
        }
        for (i, mark, from) in marks {
            match source.bookmark(&[(mark.clone(), from)]) {
                Ok(()) => outcomes[i].bookmark = Some(mark.clone()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    // Old cursors go only once the new ones exist (a cursor that could not
    // be left keeps the old one: the next plan falls back to listing).
    let mut doomed: BTreeMap<String, Vec<BookmarkName>> = BTreeMap::new();
    for (i, old) in stale {
        if outcomes[i].bookmark.is_some() {
            let pool = outcomes[i].source.pool().to_string();
            doomed.entry(pool).or_default().extend(old);
        }
    }
    for marks in doomed.into_values() {
        if let Err(e) = source.destroy_bookmarks(&marks) {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

enum TransferKind<'a> {
    Send(&'a SendOptions),
    Resume(&'a zfs_core::ResumeToken),
}

/// Finishes an interrupted transfer from the target's current token. Right
/// after an interruption the old receive may still be aborting (EBUSY, or a
/// stale token): re-read the token and retry for a bounded time.
fn resume_transfer(
    sides: Sides<'_>,
    step: &Step,
    snapshot: &SnapshotName,
    recv: &ReceiveOptions,
    opts: &ExecuteOptions,
    moved: u64,
) -> Result<u64> {
    let started = Instant::now();
    loop {
        let token =
            sides
                .target
                .resume_token(&step.target)?
                .ok_or_else(|| Error::ResumeTokenGone {
                    target: step.target.clone(),
                })?;
        match transfer(
            sides,
            step,
            snapshot,
            TransferKind::Resume(&token),
            recv,
            opts,
            moved,
        ) {
            Err(Error::Transfer { source, .. })
                if source.errno() == Some(Errno(libc::EBUSY))
                    && started.elapsed() < RESUME_RETRY
                    && !opts.cancel.is_cancelled() =>
            {
                std::thread::sleep(Duration::from_millis(300));
            }
            other => return other,
        }
    }
}

/// How the relay ended.
enum Relayed {
    /// The sender closed its end: every byte was passed on.
    Done(u64),
    /// The cancel token fired; both pipes were closed.
    Cancelled,
}

/// Waits until `fd` is ready for `interest` (true), or until `cancel`
/// fires (false). A wake-up on `wakeup` ends the wait at once; the cancel
/// flag is looked at again every [`RELAY_POLL`] should one be missed.
pub(crate) fn wait_ready(
    fd: &dyn AsFd,
    interest: Interest,
    wakeup: &Wakeup,
    cancel: &CancelToken,
) -> std::io::Result<bool> {
    loop {
        if cancel.is_cancelled() {
            return Ok(false);
        }
        let ready = poll(&[(fd, interest), (wakeup.fd(), Interest::Read)], RELAY_POLL)?;
        if ready[0].any() {
            return Ok(true);
        }
    }
}

/// Spawns a named transfer thread that blocks the host's signals first.
pub(crate) fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::io::Result<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn_scoped(scope, move || {
            let _ = zfs_core::signal::block_async_signals();
            f()
        })
}

/// One send → relay → receive transfer. Returns the stream bytes moved.
///
/// Three threads, each with the host's signals blocked (so no EINTR, no
/// SIGPIPE): the kernel's send writes into one pipe, the relay splices it
/// into a second pipe (progress, cancel), the receive reads that. The
/// calling thread only waits for them.
fn transfer(
    sides: Sides<'_>,
    step: &Step,
    snapshot: &SnapshotName,
    kind: TransferKind<'_>,
    recv: &ReceiveOptions,
    opts: &ExecuteOptions,
    moved_before: u64,
) -> Result<u64> {
    let fail = |source: zfs_core::Error| Error::Transfer {
        target: step.target.clone(),
        snapshot: snapshot.clone(),
        source: Box::new(source),
    };
    let thread_failed = |source| Error::Thread {
        target: step.target.clone(),
        source,
    };
    let panicked = |thread| Error::Panicked {
        thread,
        target: step.target.clone(),
    };
    let wakeup = Arc::new(Wakeup::new().map_err(fail)?);
    opts.cancel.register(&wakeup);
    let upstream = Pipe::new(PIPE_SIZE).map_err(fail)?;
    let downstream = Pipe::new(PIPE_SIZE).map_err(fail)?;
    let (up_read, up_write) = (upstream.read, upstream.write);
    let (down_read, down_write) = (downstream.read, downstream.write);

    std::thread::scope(|scope| {
        // If a spawn fails, the closure (with its pipe ends) is dropped: the
        // threads already running see EOF or EPIPE and stop.
        // Each side closes its pipe end when done: EOF for the relay, and a
        // receive that stopped early unblocks it.
        let sender = spawn(scope, "zfs-send", move || match kind {
            TransferKind::Send(send) => sides.source.send(snapshot, send, up_write),
            TransferKind::Resume(token) => sides.source.send_resume(token, up_write),
        })
        .map_err(thread_failed)?;
        let receiver = spawn(scope, "zfs-receive", move || {
            sides.target.receive(&step.target, down_read, recv)
        })
        .map_err(thread_failed)?;
        let wakeup = &wakeup;
        let relay = spawn(scope, "zfs-relay", move || {
            relay(
                up_read,
                down_write,
                wakeup,
                &opts.cancel,
                &step.target,
                |total| {
                    opts.emit(Event::Progress(Progress {
                        target: &step.target,
                        snapshot,
                        bytes: moved_before + total,
                        estimated_bytes: step.estimated_bytes,
                        job_bytes: 0,
                        job_estimated_bytes: 0,
                    }));
                },
            )
        })
        .map_err(thread_failed)?;
        let relayed = relay.join().map_err(|_| panicked("relay"))?;
        let received = receiver.join().map_err(|_| panicked("receive"))?;
        let sent = sender.join().map_err(|_| panicked("send"))?;
        let relayed = match relayed {
            // The receive completed before the cancel was seen: it is done.
            Ok(Relayed::Cancelled) => {
                return match received {
                    Ok(receipt) => Ok(receipt.bytes),
                    Err(_) => Err(cancelled(Report::default())),
                }
            }
            Ok(Relayed::Done(bytes)) => Ok(bytes),
            Err(e) => Err(e),
        };
        // A failure outside ZFS (a lost connection, a refusal) is the cause.
        let received = zfs_result(received.map(|r| r.bytes))?;
        let sent = zfs_result(sent)?;
        root_cause(sent, relayed, received).map_err(fail)
    })
}

/// Moves the stream from `from` to `to` until the sender closes `from`, or
/// the cancel token fires (then both ends are closed, so the sender gets
/// EPIPE and the receiver a truncated, resumable stream). Never blocks in a
/// splice: it polls each pipe together with the wake-up descriptor, so a
/// cancel is seen at once, even while the send or receive is stalled.
fn relay(
    from: OwnedFd,
    to: OwnedFd,
    wakeup: &Wakeup,
    cancel: &CancelToken,
    target: &DatasetName,
    mut progress: impl FnMut(u64),
) -> Result<Relayed, zfs_core::Error> {
    let mut total = 0u64;
    loop {
        // Wait for input, then for room, then move what is there.
        for (fd, interest) in [(&from, Interest::Read), (&to, Interest::Write)] {
            let ready = wait_ready(fd, interest, wakeup, cancel)
                .map_err(|e| zfs_core::Error::io("relay (poll)", target.as_str(), e))?;
            if !ready {
                return Ok(Relayed::Cancelled);
            }
        }
        match zfs_core::pipe::splice_nonblocking(&from, &to, RELAY_CHUNK) {
            Ok(0) => return Ok(Relayed::Done(total)),
            Ok(n) => {
                total += n as u64;
                progress(total);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(zfs_core::Error::io("relay (splice)", target.as_str(), e)),
        }
    }
}

/// Picks the error that explains a failed transfer. A sender that could not
/// write into a pipe the relay closed (OpenZFS reports any failed write of
/// its output as EINTR, or EPIPE) only reacts to the receiver; a receiver
/// that saw a damaged or truncated stream may only react to the sender. An
/// interruption is reported as [`ErrorKind::Interrupted`]: the receive keeps
/// resumable state.
fn root_cause(
    sent: zfs_core::Result<()>,
    relayed: zfs_core::Result<u64>,
    received: zfs_core::Result<u64>,
) -> Result<u64, zfs_core::Error> {
    let reacts =
        |e: &zfs_core::Error| matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::Interrupted);
    match (sent, relayed, received) {
        (Ok(()), Ok(bytes), Ok(_)) => Ok(bytes),
        (_, _, Err(r)) if r.kind() == ErrorKind::Interrupted => Err(r),
        // The relay passed on everything until the sender closed its end:
        // no pipe broke, so the sender stopped on its own (for example a
        // SIGSTOP, which no thread can block, interrupting its write).
        (Err(s), Ok(_), Err(r)) if r.kind() == ErrorKind::BadStream => Err(s),
        (Err(s), _, Err(r)) if !reacts(&s) && r.kind() == ErrorKind::BadStream => Err(s),
        // A relay that could not write found the receiver gone: the
        // receiver's error explains it, whatever its kind. Any other relay
        // failure explains the receiver's truncated stream.
        (_, Err(e), Err(r))
            if r.kind() == ErrorKind::BadStream && e.errno() != Some(Errno(libc::EPIPE)) =>
        {
            Err(e)
        }
        (_, _, Err(r)) => Err(r),
        (Err(s), _, Ok(_)) => Err(s),
        (Ok(()), Err(e), Ok(_)) => Err(e),
    }
}

/// Splits a ZFS failure (Ok(Err)) from any other (Err).
fn zfs_result<T>(r: Result<T>) -> Result<zfs_core::Result<T>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Error::Zfs(e)) => Ok(Err(e)),
        Err(other) => Err(other),
    }
}
