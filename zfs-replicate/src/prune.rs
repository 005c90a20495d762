//! Our own snapshots: taking them (`<prefix>_<UTC timestamp>`, atomically
//! across a tree) and pruning them with a retention policy.
//!
//! Pruning only ever considers snapshots whose name has our prefix and a
//! timestamp we wrote; it never destroys a held snapshot, another tool's
//! snapshot, or the newest common base.
//!
//! ```no_run
//! use zfs_core::Zfs;
//! use zfs_replicate::prune::{prune, take_snapshot, PruneOptions, Retention};
//!
//! let zfs = Zfs::open()?;
//! let home = "tank/home".parse()?;
//! let snap = take_snapshot(&zfs, &home, true, "backup")?;
//! println!("took {snap}");
//! let opts = PruneOptions::new(Retention::keep_newest("backup", 7)).recursive(true);
//! let report = prune(&zfs, &home, &opts)?;
//! println!("destroyed {}", report.destroyed.len());
//! # Ok::<(), zfs_replicate::Error>(())
//! ```

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use zfs_core::{BookmarkName, DatasetName, Snapshot, SnapshotName, SnapshotOrBookmark, Zfs};

use crate::endpoint::{Endpoint, Local};
pub use crate::retention::Rule;

use crate::error::Result;

/// Formats a UTC time as `YYYYMMDDTHHMMSS.mmmZ` (sortable, valid in names).
pub fn utc_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Whether `short` (the part after `@`) is one of our snapshots for `prefix`.
pub fn is_ours(short: &str, prefix: &str) -> bool {
    let Some(stamp) = short.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 20
        && b[8] == b'T'
        && b[15] == b'.'
        && b[19] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 15 | 19) || c.is_ascii_digit())
}

/// `dataset`, and with `recursive` all its descendants, parents first.
fn tree(side: &dyn Endpoint, dataset: &DatasetName, recursive: bool) -> Result<Vec<DatasetName>> {
    if !recursive {
        return Ok(vec![dataset.clone()]);
    }
    side.descendants(dataset)
}

/// Takes `<prefix>_<now>` on `dataset` (and, if `recursive`, on every
/// descendant) in one atomic batch. Returns the short snapshot name.
pub fn take_snapshot(
    zfs: &Zfs,
    dataset: &DatasetName,
    recursive: bool,
    prefix: &str,
) -> Result<String> {
    let short = new_snapshot_name(prefix, SystemTime::now());
    snapshot_tree(&Local::new(zfs), dataset, recursive, &short)?;
    Ok(short)
}

/// The short name of our snapshot taken at `time`: `<prefix>_<UTC time>`.
pub fn new_snapshot_name(prefix: &str, time: SystemTime) -> String {
    format!("{prefix}_{}", utc_timestamp(time))
}

/// Snapshots `dataset` (with `recursive`, its whole tree) as `short`,
/// atomically.
pub(crate) fn snapshot_tree(
    side: &dyn Endpoint,
    dataset: &DatasetName,
    recursive: bool,
    short: &str,
) -> Result<()> {
    snapshot_datasets(side, &tree(side, dataset, recursive)?, short)
}

/// Snapshots each of `datasets` as `short`, atomically (one call).
pub(crate) fn snapshot_datasets(
    side: &dyn Endpoint,
    datasets: &[DatasetName],
    short: &str,
) -> Result<()> {
    let snaps = datasets
        .iter()
        .map(|d| d.snapshot(short))
        .collect::<Result<Vec<_>, _>>()
        .map_err(zfs_core::Error::from)?;
    side.snapshot(&snaps)
}

/// Which of our snapshots to keep: those named `<prefix>_<UTC time>`, by
/// `rule`, per dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub prefix: String,
    pub rule: Rule,
}

impl Retention {
    pub fn new(prefix: impl Into<String>, rule: impl Into<Rule>) -> Self {
        Retention {
            prefix: prefix.into(),
            rule: rule.into(),
        }
    }

    /// The newest `keep` of ours per dataset.
    pub fn keep_newest(prefix: impl Into<String>, keep: usize) -> Self {
        Self::new(prefix, Rule::Newest(keep))
    }
}

/// The creation time our snapshot name `short` records (seconds since the
/// epoch, UTC), if it is one of ours for `prefix`.
pub fn snapshot_time(short: &str, prefix: &str) -> Option<u64> {
    if !is_ours(short, prefix) {
        return None;
    }
    let stamp = short.get(prefix.len() + 1..)?;
    let num = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    u64::try_from(days)
        .ok()?
        .checked_mul(86_400)?
        .checked_add(hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm, the inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PruneReport {
    pub destroyed: Vec<SnapshotName>,
    /// Candidates kept because they are held.
    pub kept_held: Vec<SnapshotName>,
    /// Candidates kept because they are a protected common base.
    pub kept_base: Vec<SnapshotName>,
}

/// Prunes our snapshots on `dataset` (and descendants if `recursive`):
/// keeps what `retention.rule` keeps, every held snapshot, and every
/// snapshot whose GUID is in `protect` (the common bases). Destroys the rest
/// in one batch per dataset.
///
/// Lists only from each dataset's anchor on: the bookmark
/// `<prefix>_oldest` ([`anchor_bookmark`]) that a previous prune left at the
/// oldest of our snapshots it kept. Ours are always created after it (new
/// snapshots get new transaction groups), so nothing older needs listing.
/// Without an anchor, every snapshot is listed. The anchor is moved only
/// when the listing from it grew long ([`ANCHOR_SLACK`]), so most prunes
/// leave bookmarks alone; moves are batched per pool.
///
/// ```no_run
/// use zfs_replicate::prune::{prune, PruneOptions, Retention};
///
/// let zfs = zfs_core::Zfs::open()?;
/// let opts = PruneOptions::new(Retention::keep_newest("backup", 7)).recursive(true);
/// let report = prune(&zfs, &"pipe/home".parse()?, &opts)?;
/// println!("destroyed {}", report.destroyed.len());
/// # Ok::<(), zfs_replicate::Error>(())
/// ```
pub fn prune(zfs: &Zfs, dataset: &DatasetName, opts: &PruneOptions) -> Result<PruneReport> {
    prune_with(&Local::new(zfs), dataset, opts)
}

/// [`prune`] on an endpoint: local, remote, or an embedder's own.
pub fn prune_with(
    side: &dyn Endpoint,
    dataset: &DatasetName,
    opts: &PruneOptions,
) -> Result<PruneReport> {
    prune_datasets(
        side,
        &tree(side, dataset, opts.recursive)?,
        &opts.retention,
        &opts.protect,
    )
}

/// What [`prune`] keeps and where: a [`Retention`] (our prefix and a
/// rule), the dataset alone or its descendants too, and the GUIDs of
/// snapshots never to destroy (the common bases a `sync` passes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneOptions {
    pub retention: Retention,
    pub recursive: bool,
    pub protect: Vec<u64>,
}

impl PruneOptions {
    /// The dataset alone, nothing protected beyond what a prune always
    /// keeps (held snapshots, and snapshots not ours).
    pub fn new(retention: Retention) -> Self {
        PruneOptions {
            retention,
            recursive: false,
            protect: Vec::new(),
        }
    }

    /// Prunes the descendants too.
    pub fn recursive(mut self, yes: bool) -> Self {
        self.recursive = yes;
        self
    }

    /// Never destroys the snapshots with these GUIDs.
    pub fn protect(mut self, guids: impl IntoIterator<Item = u64>) -> Self {
        self.protect.extend(guids);
        self
    }
}

/// What [`prune`] would do, changing nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PrunePreview {
    /// `destroyed`: what the prune would destroy.
    pub report: PruneReport,
    /// The space destroying them would free, in bytes (`zfs destroy -nv`).
    pub bytes_freed: u64,
}

/// What [`prune`] would destroy with these arguments, and the space that
/// would free (`lzc_snaprange_space` over each run of neighbouring
/// snapshots), changing nothing. Without `protect`, it keeps what a prune
/// would keep but for the common bases a `sync` passes: give their GUIDs
/// to see exactly what `sync` would prune.
///
/// ```no_run
/// use zfs_replicate::prune::{prune_preview, PruneOptions, Retention};
/// use zfs_replicate::retention::Rule;
///
/// let zfs = zfs_core::Zfs::open()?;
/// let grid = Rule::Grid("1h:24,1d:30".parse()?);
/// let opts = PruneOptions::new(Retention::new("backup", grid)).recursive(true);
/// let preview = prune_preview(&zfs, &"pipe/home".parse()?, &opts)?;
/// println!("{} to destroy, {} bytes freed", preview.report.destroyed.len(), preview.bytes_freed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn prune_preview(
    zfs: &Zfs,
    dataset: &DatasetName,
    opts: &PruneOptions,
) -> Result<PrunePreview> {
    let (retention, protect) = (&opts.retention, opts.protect.as_slice());
    let side = Local::new(zfs);
    let datasets = tree(&side, dataset, opts.recursive)?;
    let views = crate::parallel::in_parallel(&datasets, |d| {
        DatasetView::list(&side, d, retention, protect)
    })?;
    let mut preview = PrunePreview::default();
    for v in views {
        // Each run of neighbours in the listing is one range to ask about.
        let mut run: Option<(&Snapshot, &Snapshot)> = None;
        for s in &v.listed {
            if v.doomed.contains(s.name()) {
                run = Some((run.map_or(s, |(first, _)| first), s));
                continue;
            }
            if let Some((first, last)) = run.take() {
                preview.bytes_freed += zfs.snaprange_space(first.name(), last.name())?;
            }
        }
        if let Some((first, last)) = run {
            preview.bytes_freed += zfs.snaprange_space(first.name(), last.name())?;
        }
        preview.report.destroyed.extend(v.doomed);
        preview.report.kept_held.extend(v.kept_held);
        preview.report.kept_base.extend(v.kept_base);
    }
    Ok(preview)
}

/// [`prune`] over a known list of datasets (all in one pool).
pub(crate) fn prune_datasets(
    side: &dyn Endpoint,
    datasets: &[DatasetName],
    retention: &Retention,
    protect: &[u64],
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    // What each dataset holds of ours, from its anchor on (datasets in
    // parallel: a listing makes the kernel visit every snapshot).
    let mut views =
        crate::parallel::in_parallel(datasets, |d| DatasetView::list(side, d, retention, protect))?;
    let mut doomed = Vec::new();
    for v in &mut views {
        report.kept_base.append(&mut v.kept_base);
        report.kept_held.append(&mut v.kept_held);
        doomed.append(&mut v.doomed);
    }
    // One destroy for the whole tree (one pool, one transaction group).
    match side.destroy_snapshots(&doomed) {
        Ok(()) => report.destroyed.extend(doomed),
        // Something changed under us (a new hold, a clone): go one by one.
        Err(_) => {
            for s in doomed {
                match side.destroy_snapshots(std::slice::from_ref(&s)) {
                    Ok(()) => report.destroyed.push(s),
                    Err(e)
                        if e.zfs_error().map(|z| z.kind()) == Some(zfs_core::ErrorKind::Busy) =>
                    {
                        report.kept_held.push(s)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let destroyed: std::collections::BTreeSet<&SnapshotName> = report.destroyed.iter().collect();
    let mut moves = AnchorMoves::default();
    for DatasetView {
        anchor_name,
        anchor,
        listed,
        ours,
        ..
    } in views
    {
        // The oldest of ours still there: where the next listing may start.
        let Some(oldest) = ours
            .iter()
            .filter(|s| !destroyed.contains(s.name()))
            .min_by_key(|s| s.createtxg())
        else {
            // None of ours left: the anchor still bounds where ours begin.
            continue;
        };
        let stale = match &anchor {
            None => true,
            // Far behind: every prune would list the snapshots between.
            Some(_) => {
                let behind = listed.iter().filter(|s| s.createtxg() < oldest.createtxg());
                behind.count() > ANCHOR_SLACK
            }
        };
        if stale {
            moves.push(anchor.map(|a| a.name().clone()), anchor_name, oldest);
        }
    }
    moves.apply(side)?;
    Ok(report)
}

/// One dataset as a prune sees it: its anchor, what was listed from it,
/// which of that is ours, and what to do with our older snapshots.
struct DatasetView {
    anchor_name: BookmarkName,
    anchor: Option<zfs_core::Bookmark>,
    listed: Vec<Snapshot>,
    ours: Vec<Snapshot>,
    kept_base: Vec<SnapshotName>,
    kept_held: Vec<SnapshotName>,
    doomed: Vec<SnapshotName>,
}

impl DatasetView {
    fn list(
        side: &dyn Endpoint,
        d: &DatasetName,
        retention: &Retention,
        protect: &[u64],
    ) -> Result<DatasetView> {
        let anchor_name = anchor_bookmark(d, &retention.prefix)?;
        let anchor = side
            .bookmarks(d)?
            .into_iter()
            .find(|b| b.name() == &anchor_name);
        let listed = match &anchor {
            Some(a) => side.snapshots_created(d, a.createtxg())?,
            None => side.snapshots(d)?,
        };
        let ours: Vec<Snapshot> = listed
            .iter()
            .filter(|s| is_ours(s.name().short_name(), &retention.prefix))
            .cloned()
            .collect();
        let (mut kept_base, mut kept_held, mut doomed) = (Vec::new(), Vec::new(), Vec::new());
        // Creation times from our names (every one of ours has one).
        let times: Vec<u64> = ours
            .iter()
            .map(|s| snapshot_time(s.name().short_name(), &retention.prefix).unwrap_or(u64::MAX))
            .collect();
        let keep = retention.rule.keeps(&times);
        for (s, _) in ours.iter().zip(keep).filter(|(_, keep)| !keep) {
            if protect.contains(&s.guid()) {
                kept_base.push(s.name().clone());
            } else if !side.holds(s.name())?.is_empty() {
                kept_held.push(s.name().clone());
            } else {
                doomed.push(s.name().clone());
            }
        }
        Ok(DatasetView {
            anchor_name,
            anchor,
            listed,
            ours,
            kept_base,
            kept_held,
            doomed,
        })
    }
}

/// How many snapshots older than the oldest of ours a prune may list from
/// its anchor before it moves the anchor up (two bookmark changes, batched
/// per pool): listing a few snapshots costs less than moving it every run.
pub const ANCHOR_SLACK: usize = 16;

/// The bookmark that marks where our snapshots on `dataset` begin:
/// `<prefix>_oldest`.
pub fn anchor_bookmark(dataset: &DatasetName, prefix: &str) -> Result<BookmarkName> {
    Ok(dataset.bookmark(&format!("{prefix}_oldest"))?)
}

/// One pool's share of [`AnchorMoves`].
#[derive(Default)]
struct PoolMoves {
    destroy: Vec<BookmarkName>,
    create: Vec<(BookmarkName, SnapshotOrBookmark)>,
}

/// Anchors to move, applied per pool in one destroy and one create call.
#[derive(Default)]
struct AnchorMoves {
    destroy: Vec<BookmarkName>,
    create: Vec<(BookmarkName, SnapshotName)>,
}

impl AnchorMoves {
    fn push(&mut self, old: Option<BookmarkName>, name: BookmarkName, to: &Snapshot) {
        self.destroy.extend(old);
        self.create.push((name, to.name().clone()));
    }

    /// Destroys the old anchors first (a failure in between leaves none,
    /// which only means a full listing next time), then creates the new.
    fn apply(self, side: &dyn Endpoint) -> Result<()> {
        let mut pools: BTreeMap<String, PoolMoves> = BTreeMap::new();
        for b in self.destroy {
            let pool = pools.entry(b.dataset().pool().to_string()).or_default();
            pool.destroy.push(b);
        }
        for (b, s) in self.create {
            let pool = pools.entry(b.dataset().pool().to_string()).or_default();
            pool.create.push((b, s.into()));
        }
        for pool in pools.into_values() {
            side.destroy_bookmarks(&pool.destroy)?;
            side.bookmark(&pool.create)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_and_ours() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_147_661_042); // 2025-11-26T09:01:01.042Z
        let s = utc_timestamp(t);
        assert_eq!(s, "20251126T090101.042Z");
        assert!(is_ours(&format!("backup_{s}"), "backup"));
        assert!(!is_ours(&format!("backup_{s}x"), "backup"));
        assert!(!is_ours(&format!("other_{s}"), "backup"));
        assert!(!is_ours("backup_20251126T0901010042Z", "backup"));
        assert!(!is_ours("backup", "backup"));
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        // And back: the time our name records, to the second.
        for secs in [0, 951_782_400, 1_764_147_661, 4_102_444_800 + 86_399] {
            let name = format!(
                "backup_{}",
                utc_timestamp(UNIX_EPOCH + Duration::from_secs(secs))
            );
            assert_eq!(snapshot_time(&name, "backup"), Some(secs), "{name}");
        }
        assert_eq!(snapshot_time("backup_20251326T090101.042Z", "backup"), None);
        assert_eq!(snapshot_time("other_20251126T090101.042Z", "backup"), None);
        // Leap day.
        assert_eq!(
            &utc_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400))[..8],
            "20000229"
        );
    }
}
