//! A pool's health and its scrubs: `ZFS_IOC_POOL_STATS`, `ZFS_IOC_POOL_SCAN`
//! and `lzc_wait`.
//!
//! ```no_run
//! use zfs_core::{PoolName, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let pool = PoolName::new("pipe")?;
//! let status = zfs.pool_status(&pool)?;
//! println!("{} is {}", pool, status.state());
//! zfs.scrub(&pool)?;
//! let scan = zfs.wait_scrub_with_progress(&pool, std::time::Duration::from_secs(5), |scan| {
//!     println!("scrub {:.0}% done", 100.0 * scan.progress());
//! })?;
//! println!("scrub found {} errors", scan.errors());
//! # Ok::<(), zfs_core::Error>(())
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zfs_sys::ioctl::{ZFS_IOC_POOL_SCAN, ZFS_IOC_POOL_STATS};

use super::vdev::{Vdev, VdevState};
use crate::error::{Error, ErrorKind, Result};
use crate::ffi::{self, IoctlCmd};
use crate::name::{AnyName, PoolName};
use crate::nvlist::NvList;
use crate::Zfs;

/// `pool_scan_stat_t` indexes (the same 2.1–2.4 up to `pss_issued`).
const PSS_FUNC: usize = 0;
const PSS_STATE: usize = 1;
const PSS_START_TIME: usize = 2;
const PSS_END_TIME: usize = 3;
const PSS_TO_EXAMINE: usize = 4;
const PSS_EXAMINED: usize = 5;
const PSS_ERRORS: usize = 8;
const PSS_PASS_SCRUB_PAUSE: usize = 11;
/// After `pss_pass_exam` (9), `pss_pass_start`, `pss_pass_scrub_pause`,
/// `pss_pass_scrub_spent_paused` and `pss_pass_issued` (13).
const PSS_ISSUED: usize = 14;

/// `pool_scan_func_t` and `pool_scrub_cmd_t` values.
const POOL_SCAN_NONE: u64 = 0;
const POOL_SCAN_SCRUB: u64 = 1;
const POOL_SCRUB_NORMAL: u32 = 0;

/// `ZPOOL_WAIT_SCRUB` (`zpool_wait_activity_t`, 6 in 2.1–2.4).
const ZPOOL_WAIT_SCRUB: u32 = 6;

/// What a scan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScanKind {
    /// Reads and verifies every block (`zpool scrub`).
    Scrub,
    /// Rebuilds a replaced or returning device.
    Resilver,
    /// Scrubs only the blocks with known errors (`zpool scrub -e`, 2.2+).
    ErrorScrub,
    /// A value this crate does not know.
    Other(u64),
}

/// Where a scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScanState {
    /// Running (or paused: see [`Scan::is_paused`]).
    Scanning,
    /// Ran to the end.
    Finished,
    /// Stopped before the end.
    Canceled,
    /// A value this crate does not know.
    Other(u64),
}

/// A scrub request that resumed a paused scrub: the kernel's `dsl_scan`
/// says ECANCELED, and libzfs's `zpool_scan` counts it a success.
fn scan_outcome(
    func: u64,
    r: std::result::Result<(), crate::Errno>,
) -> std::result::Result<(), crate::Errno> {
    match r {
        Err(e) if e.0 == libc::ECANCELED && func == POOL_SCAN_SCRUB => Ok(()),
        other => other,
    }
}

/// The pool's last (or current) scrub or resilver, from `scan_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    kind: ScanKind,
    state: ScanState,
    started: u64,
    ended: u64,
    to_examine: u64,
    examined: u64,
    issued: u64,
    errors: u64,
    paused: bool,
}

impl Scan {
    fn from_stats(stats: &[u64]) -> Option<Scan> {
        let at = |i: usize| stats.get(i).copied().unwrap_or(0);
        let kind = match at(PSS_FUNC) {
            POOL_SCAN_NONE => return None,
            POOL_SCAN_SCRUB => ScanKind::Scrub,
            2 => ScanKind::Resilver,
            3 => ScanKind::ErrorScrub,
            n => ScanKind::Other(n),
        };
        let state = match at(PSS_STATE) {
            1 => ScanState::Scanning,
            2 => ScanState::Finished,
            3 => ScanState::Canceled,
            n => ScanState::Other(n),
        };
        Some(Scan {
            kind,
            state,
            started: at(PSS_START_TIME),
            ended: at(PSS_END_TIME),
            to_examine: at(PSS_TO_EXAMINE),
            examined: at(PSS_EXAMINED),
            issued: at(PSS_ISSUED),
            errors: at(PSS_ERRORS),
            paused: at(PSS_PASS_SCRUB_PAUSE) != 0,
        })
    }

    pub fn kind(&self) -> ScanKind {
        self.kind
    }

    pub fn state(&self) -> ScanState {
        self.state
    }

    /// Whether the scan is still running (or paused).
    pub fn is_running(&self) -> bool {
        self.state == ScanState::Scanning
    }

    /// Whether a running scrub is paused (`zpool scrub -p`).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// When it started.
    pub fn started(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.started)
    }

    /// When it ended; `None` while it runs.
    pub fn ended(&self) -> Option<SystemTime> {
        (!self.is_running() && self.ended != 0)
            .then(|| UNIX_EPOCH + Duration::from_secs(self.ended))
    }

    /// Bytes to scan in all.
    pub fn to_examine(&self) -> u64 {
        self.to_examine
    }

    /// Bytes located by the scanner so far.
    pub fn examined(&self) -> u64 {
        self.examined
    }

    /// Bytes read and checked so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// How far it got, from 0.0 to 1.0, as `zpool status` computes it
    /// (issued over total); 1.0 once finished.
    pub fn progress(&self) -> f64 {
        if self.state == ScanState::Finished {
            return 1.0;
        }
        if self.to_examine == 0 {
            return 0.0;
        }
        (self.issued as f64 / self.to_examine as f64).min(1.0)
    }

    /// Errors found, for a scrub: blocks it could not repair are counted in
    /// [`PoolStatus::data_errors`] too.
    pub fn errors(&self) -> u64 {
        self.errors
    }
}

/// A pool's health: its state, its vdev tree with error counts, and its
/// last scrub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    name: PoolName,
    guid: u64,
    root: Vdev,
    scan: Option<Scan>,
    data_errors: u64,
    suspended: bool,
}

impl PoolStatus {
    /// Parses the configuration `ZFS_IOC_POOL_STATS` returns.
    pub(crate) fn from_config(name: &PoolName, config: &NvList) -> Result<PoolStatus> {
        const OP: &str = "ZFS_IOC_POOL_STATS";
        let shape = |e| Error::shape(OP, name.as_str(), e);
        let guid = config.get_u64("pool_guid").map_err(shape)?;
        let tree = config.get_nvlist("vdev_tree").map_err(shape)?;
        let root = Vdev::from_config(tree).map_err(shape)?;
        let scan = tree
            .get_u64_array("scan_stats")
            .ok()
            .and_then(|s| Scan::from_stats(&s));
        Ok(PoolStatus {
            name: name.clone(),
            guid,
            root,
            scan,
            data_errors: config.get_u64("error_count").unwrap_or(0),
            suspended: config.get_u64("suspended").is_ok(),
        })
    }

    pub fn name(&self) -> &PoolName {
        &self.name
    }

    pub fn guid(&self) -> u64 {
        self.guid
    }

    /// The pool's health: its root vdev's state.
    pub fn state(&self) -> VdevState {
        self.root.state()
    }

    /// The vdev tree, from the root down.
    pub fn root(&self) -> &Vdev {
        &self.root
    }

    /// The last (or running) scrub or resilver; `None` if there never was one.
    pub fn scan(&self) -> Option<&Scan> {
        self.scan.as_ref()
    }

    /// Blocks with permanent (unrepaired) errors (`zpool status -v` lists
    /// their files).
    pub fn data_errors(&self) -> u64 {
        self.data_errors
    }

    /// Whether I/O is suspended (`failmode=wait` after device failures).
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Read + write + checksum errors over every vdev.
    pub fn total_vdev_errors(&self) -> u64 {
        self.root
            .walk()
            .iter()
            .fold(0u64, |n, v| n.saturating_add(v.errors().total()))
    }
}

impl Zfs {
    /// The health of imported pool `pool` (`zpool status`): its state, every
    /// vdev's state and error counts, and its last scrub.
    pub fn pool_status(&self, pool: &PoolName) -> Result<PoolStatus> {
        const OP: &str = "ZFS_IOC_POOL_STATS";
        // The kernel returns the config even when the pool is faulted (the
        // real errno then goes to zc_cookie): the state says so.
        let (_, config) =
            self.ioctl_nvlist_out(ZFS_IOC_POOL_STATS, OP, pool.as_str(), 64 << 10, 64 << 20)?;
        if config.is_empty() {
            return Err(Error::invalid(
                OP,
                pool.as_str(),
                ErrorKind::UnexpectedShape,
                "the kernel returned no configuration",
            ));
        }
        PoolStatus::from_config(pool, &config)
    }

    /// Starts a scrub of `pool` (`zpool scrub`), or resumes a paused one.
    /// [`ErrorKind::Busy`] when a scrub or resilver is already running.
    pub fn scrub(&self, pool: &PoolName) -> Result<()> {
        self.pool_scan(pool, POOL_SCAN_SCRUB)
    }

    /// Stops a running scrub (`zpool scrub -s`).
    pub fn stop_scrub(&self, pool: &PoolName) -> Result<()> {
        self.pool_scan(pool, POOL_SCAN_NONE)
    }

    fn pool_scan(&self, pool: &PoolName, func: u64) -> Result<()> {
        const OP: &str = "ZFS_IOC_POOL_SCAN";
        let mut zc = IoctlCmd::new(pool.as_str());
        zc.set_cookie(func);
        zc.set_flags(POOL_SCRUB_NORMAL);
        let r = zc.ioctl(self.dev(), ZFS_IOC_POOL_SCAN);
        scan_outcome(func, r).map_err(|e| Error::from_errno(OP, pool.as_str(), e))
    }

    /// Blocks until no scrub runs on `pool` (`lzc_wait`, as `zpool wait -t
    /// scrub`), then returns the last scrub's result; `None` if the pool
    /// was never scrubbed.
    pub fn wait_scrub(&self, pool: &PoolName) -> Result<Option<Scan>> {
        ffi::lzc_wait(&pool.to_c_name(), ZPOOL_WAIT_SCRUB)
            .map_err(|e| Error::from_errno("lzc_wait", pool.as_str(), e))?;
        Ok(self.pool_status(pool)?.scan)
    }

    /// Waits for the running scrub of `pool` to end, calling `progress`
    /// with its state every `every` (and not at all when none runs), and
    /// returns the final result. A resilver is waited for the same way. A
    /// paused scrub is returned as it is ([`Scan::is_paused`]): it would
    /// not end by itself. [`ErrorKind::NotFound`] if the pool was never
    /// scrubbed.
    pub fn wait_scrub_with_progress(
        &self,
        pool: &PoolName,
        every: Duration,
        mut progress: impl FnMut(&Scan),
    ) -> Result<Scan> {
        loop {
            let Some(scan) = self.pool_status(pool)?.scan else {
                return Err(Error::invalid(
                    "ZFS_IOC_POOL_STATS",
                    pool.as_str(),
                    ErrorKind::NotFound,
                    "the pool has never been scrubbed",
                ));
            };
            if !scan.is_running() || scan.is_paused() {
                return Ok(scan);
            }
            progress(&scan);
            std::thread::sleep(every);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_stats_parse_and_progress() {
        let mut s = vec![0u64; 24];
        assert_eq!(Scan::from_stats(&s), None);
        s[PSS_FUNC] = 1;
        s[PSS_STATE] = 1;
        s[PSS_TO_EXAMINE] = 1000;
        s[PSS_ISSUED] = 250;
        s[PSS_START_TIME] = 100;
        let scan = Scan::from_stats(&s).unwrap();
        assert_eq!(scan.kind(), ScanKind::Scrub);
        assert!(scan.is_running());
        assert_eq!(scan.progress(), 0.25);
        assert_eq!(scan.ended(), None);
        s[PSS_STATE] = 2;
        s[PSS_END_TIME] = 200;
        s[PSS_ERRORS] = 3;
        let done = Scan::from_stats(&s).unwrap();
        assert_eq!(done.progress(), 1.0);
        assert_eq!(done.errors(), 3);
        assert_eq!(done.ended(), Some(UNIX_EPOCH + Duration::from_secs(200)));
        // A short array (an older or stranger module) is no panic.
        assert_eq!(Scan::from_stats(&[1]).unwrap().state(), ScanState::Other(0));
    }

    #[test]
    fn a_scrub_that_resumes_a_paused_one_succeeds() {
        let canceled = Err(crate::Errno(libc::ECANCELED));
        assert_eq!(scan_outcome(POOL_SCAN_SCRUB, canceled), Ok(()));
        // Stopping one, or another errno, is reported.
        assert_eq!(scan_outcome(POOL_SCAN_NONE, canceled), canceled);
        let busy = Err(crate::Errno(libc::EBUSY));
        assert_eq!(scan_outcome(POOL_SCAN_SCRUB, busy), busy);
    }

    #[test]
    fn a_config_without_a_tree_is_a_shape_error() {
        let name = PoolName::new("p").unwrap();
        let config = NvList::new().with("pool_guid", 1u64);
        let e = PoolStatus::from_config(&name, &config).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedShape);
    }
}
