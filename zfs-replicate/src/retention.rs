//! Which of our snapshots a prune keeps: the newest N, or a grid by age
//! (so many hourly, then so many daily, …), decided by pure functions of
//! the snapshots' creation times.
//!
//! ```
//! use zfs_replicate::retention::{Grid, Rule};
//!
//! // 24 hourly, then 30 daily, 8 weekly and 12 monthly (30-day) snapshots.
//! let grid: Grid = "1h:24,1d:30,1w:8,1m:12".parse()?;
//! let rule = Rule::Grid(grid);
//! let hour = 3600;
//! let now = 1_000 * hour;
//! // Snapshots every 10 minutes for two days (oldest first).
//! let times: Vec<u64> = (0..288).map(|i| now - 2 * 24 * hour + i * 600).collect();
//! let keep = rule.keeps_at(now, &times);
//! assert!(keep[287], "the newest is always kept");
//! assert_eq!(keep.iter().filter(|k| **k).count(), 24 + 2);
//! # Ok::<(), zfs_replicate::retention::GridError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// What to keep of our snapshots in each dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The newest N.
    Newest(usize),
    /// One snapshot per time slot of a [`Grid`], and always the newest.
    Grid(Grid),
}

impl From<usize> for Rule {
    fn from(n: usize) -> Rule {
        Rule::Newest(n)
    }
}

impl Rule {
    /// Which of `times` (creation times in seconds since the epoch, oldest
    /// first, one per snapshot) to keep, as of now (a grid's own clock if
    /// [`Grid::at`] set one).
    pub fn keeps(&self, times: &[u64]) -> Vec<bool> {
        let now = match self {
            Rule::Grid(g) => g.now.unwrap_or_else(SystemTime::now),
            Rule::Newest(_) => SystemTime::now(),
        };
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.keeps_at(now, times)
    }

    /// [`keeps`](Self::keeps) as of `now` (seconds since the epoch).
    pub fn keeps_at(&self, now: u64, times: &[u64]) -> Vec<bool> {
        match self {
            Rule::Newest(n) => {
                let cut = times.len().saturating_sub(*n);
                (0..times.len()).map(|i| i >= cut).collect()
            }
            Rule::Grid(grid) => grid.keeps_at(now, times),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Newest(n) => write!(f, "the newest {n}"),
            Rule::Grid(g) => write!(f, "grid {g}"),
        }
    }
}

/// `count` consecutive slots of `width` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub width: u64,
    pub count: usize,
}

/// A retention grid: intervals from now back in time, each a number of
/// slots of one width (`1h:24` is 24 one-hour slots). Slots are aligned to
/// multiples of their width since the epoch (UTC), so a snapshot's slot
/// does not change as time passes; each interval starts where the one
/// before it ended. In each slot the oldest snapshot is kept; snapshots
/// older than the last slot are not. The newest snapshot is always kept,
/// and so is one created after now (a clock that went back).
///
/// Written `1h:24,1d:30,1w:8,1m:12`; units `min`, `h`, `d`, `w`, `m` (30
/// days) and `y` (365 days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    intervals: Vec<Interval>,
    now: Option<SystemTime>,
}

/// Why a grid was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention grid {text:?}: {reason} (expected such as 1h:24,1d:30,1w:8,1m:12)")]
pub struct GridError {
    pub text: String,
    pub reason: String,
}

/// Slots in a grid at most: a grid is a policy, not a list of snapshots.
const MAX_SLOTS: usize = 100_000;

impl Grid {
    /// A grid of these intervals, newest first.
    pub fn new(intervals: Vec<Interval>) -> Result<Grid, GridError> {
        let text = intervals
            .iter()
            .map(|i| format!("{}s:{}", i.width, i.count))
            .collect::<Vec<_>>()
            .join(",");
        let bad = |reason: &str| GridError {
            text: text.clone(),
            reason: reason.to_owned(),
        };
        if intervals.is_empty() {
            return Err(bad("no interval"));
        }
        if intervals.iter().any(|i| i.width == 0 || i.count == 0) {
            return Err(bad("a width or a count of 0"));
        }
        let slots = intervals
            .iter()
            .try_fold(0usize, |n, i| n.checked_add(i.count))
            .filter(|n| *n <= MAX_SLOTS);
        if slots.is_none() {
            return Err(bad(&format!("more than {MAX_SLOTS} slots")));
        }
        Ok(Grid {
            intervals,
            now: None,
        })
    }

    /// The grid evaluated as of `now` instead of the time of the prune
    /// (for tests and previews).
    pub fn at(mut self, now: SystemTime) -> Grid {
        self.now = Some(now);
        self
    }

    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// Which of `times` (seconds since the epoch, oldest first) the grid
    /// keeps as of `now`.
    pub fn keeps_at(&self, now: u64, times: &[u64]) -> Vec<bool> {
        let mut keep = vec![false; times.len()];
        let Some(newest) = times.len().checked_sub(1) else {
            return keep;
        };
        keep[newest] = true;
        // The oldest snapshot seen in each (interval, slot): times are
        // oldest first, so the first one seen.
        let mut taken = std::collections::HashSet::new();
        for (i, &t) in times.iter().enumerate() {
            if t > now {
                keep[i] = true;
                continue;
            }
            if let Some(slot) = self.slot_of(now, t) {
                if taken.insert(slot) {
                    keep[i] = true;
                }
            }
        }
        keep
    }

    /// The (interval, slot index) holding time `t` as of `now`, if any.
    fn slot_of(&self, now: u64, t: u64) -> Option<(usize, u64)> {
        // `top`: the newest second the interval covers.
        let mut top = now;
        for (k, iv) in self.intervals.iter().enumerate() {
            let newest_slot = top / iv.width;
            let oldest_slot = newest_slot.saturating_sub(iv.count as u64 - 1);
            let slot = t / iv.width;
            if t <= top && slot >= oldest_slot {
                return Some((k, slot));
            }
            // The next interval ends right before this one's oldest slot.
            top = (oldest_slot * iv.width).checked_sub(1)?;
        }
        None
    }
}

impl FromStr for Grid {
    type Err = GridError;

    fn from_str(text: &str) -> Result<Grid, GridError> {
        let bad = |reason: String| GridError {
            text: text.to_owned(),
            reason,
        };
        let mut intervals = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (width, count) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("{part:?} is not WIDTH:COUNT")))?;
            let digits = width
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(width.len());
            let (n, unit) = width.split_at(digits);
            let n: u64 = if n.is_empty() {
                1
            } else {
                n.parse()
                    .map_err(|_| bad(format!("{width:?}: the number is too large")))?
            };
            let unit = match unit {
                "min" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 7 * 86_400,
                "m" => 30 * 86_400,
                "y" => 365 * 86_400,
                _ => {
                    return Err(bad(format!(
                        "{width:?}: the unit is one of min, h, d, w, m (30 days), y"
                    )))
                }
            };
            let width = n
                .checked_mul(unit)
                .ok_or_else(|| bad(format!("{width:?} is too long")))?;
            let count = count
                .parse()
                .map_err(|_| bad(format!("{count:?} is not a count")))?;
            intervals.push(Interval { width, count });
        }
        Grid::new(intervals).map_err(|e| bad(e.reason))
    }
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (365 * 86_400, "y"),
            (30 * 86_400, "m"),
            (7 * 86_400, "w"),
            (86_400, "d"),
            (3600, "h"),
            (60, "min"),
        ];
        for (k, iv) in self.intervals.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            match units.iter().find(|(u, _)| iv.width % u == 0) {
                Some((u, name)) => write!(f, "{}{name}:{}", iv.width / u, iv.count)?,
                None => write!(f, "{}s:{}", iv.width, iv.count)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;
    const D: u64 = 86_400;

    fn grid(text: &str) -> Grid {
        text.parse().unwrap()
    }

    /// A synthetic history: 400 snapshots over two years, denser lately
    /// (every 10 minutes in the last two days, then hourly, then daily,
    /// then every few days), like a backup tool's, oldest first.
    fn history(now: u64) -> Vec<u64> {
        let mut t: Vec<u64> = Vec::new();
        t.extend((0..100).map(|i| now - 2 * 365 * D + i * 6 * D)); // sparse, 2 years ago
        t.extend((0..100).map(|i| now - 120 * D + i * D)); // daily
        t.extend((0..100).map(|i| now - 10 * D + i * 2 * H)); // every 2 hours
        t.extend((0..100).map(|i| now - 100 * 600 + i * 600)); // every 10 minutes
        t.sort_unstable();
        t.dedup();
        assert_eq!(t.len(), 400);
        t
    }

    #[test]
    fn grids_parse_and_print() {
        let g = grid("1h:24,1d:30,1w:8,1m:12");
        assert_eq!(
            g.intervals()[0],
            Interval {
                width: H,
                count: 24
            }
        );
        assert_eq!(
            g.intervals()[3],
            Interval {
                width: 30 * D,
                count: 12
            }
        );
        assert_eq!(g.to_string(), "1h:24,1d:30,1w:8,1m:12");
        assert_eq!(grid("15min:4, 2d:3").to_string(), "15min:4,2d:3");
        assert_eq!(grid("h:2").intervals()[0].width, H);
        for bad in [
            "",
            "1h",
            "1h:0",
            "0h:3",
            "1x:3",
            "1h:-1",
            "1h:24,",
            "99999999999999999999h:1",
        ] {
            assert!(bad.parse::<Grid>().is_err(), "{bad:?}");
        }
        assert!("1min:100001".parse::<Grid>().is_err(), "too many slots");
    }

    #[test]
    fn a_grid_keeps_one_per_slot_and_the_newest() {
        let now = 20_000 * D + 12 * H + 30 * 60; // 12:30 on some day
        let times = history(now);
        let keep = Rule::Grid(grid("1h:24,1d:30,1w:8,1m:12")).keeps_at(now, &times);
        let kept: Vec<u64> = times
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(t, _)| *t)
            .collect();
        // The newest always.
        assert_eq!(kept.last(), times.last());
        // Never two in one slot of the first interval (hourly, last 24 h),
        // but for the newest, kept besides the oldest of its slot.
        let recent: Vec<u64> = kept[..kept.len() - 1]
            .iter()
            .filter(|t| **t > now - 24 * H)
            .map(|t| t / H)
            .collect();
        let mut slots = recent.clone();
        slots.dedup();
        assert_eq!(slots.len(), recent.len(), "one per hour slot");
        // 24 hourly slots, 30 daily, 8 weekly, 12 monthly: at most 74 + the
        // newest, and fewer where the history has gaps.
        assert!(kept.len() <= 75, "{}", kept.len());
        assert!(kept.len() >= 40, "{}", kept.len());
        // Nothing older than the grid reaches (24 h + 30 d + 8 w + 12 m).
        let reach = 24 * H + 30 * D + 8 * 7 * D + 12 * 30 * D;
        assert!(kept.iter().all(|t| *t + reach + 30 * D >= now), "{kept:?}");
        // Each kept snapshot is the oldest of its slot.
        let g = grid("1h:24,1d:30,1w:8,1m:12");
        for (i, t) in times.iter().enumerate() {
            if keep[i] && i + 1 != times.len() {
                let slot = g.slot_of(now, *t).unwrap();
                assert!(
                    times[..i].iter().all(|o| g.slot_of(now, *o) != Some(slot)),
                    "an older snapshot shares the slot of {t}"
                );
            }
        }
    }

    #[test]
    fn a_grid_decision_is_stable_as_time_passes() {
        // Prunes run hourly for a week over a snapshot every 10 minutes:
        // what is kept stays bounded by the grid's slots, and each day the
        // daily interval covers keeps the day's first snapshot (slots are
        // aligned, so the oldest of a slot stays the oldest).
        let g = Rule::Grid(grid("1h:24,1d:7"));
        let start = 30_000 * D;
        let mut times: Vec<u64> = Vec::new();
        for step in 0..(7 * 24 * 6) {
            let now = start + step * 600;
            times.push(now);
            if step % 6 != 5 {
                continue;
            }
            let keep = g.keeps_at(now, &times);
            times = times
                .into_iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(t, _)| t)
                .collect();
            assert!(times.len() <= 24 + 7 + 2, "{} kept at {now}", times.len());
            // Whole days behind the hourly interval: their first snapshot.
            for day in (now - 24 * H) / D - 5..(now - 24 * H) / D {
                if day * D >= start {
                    assert!(times.contains(&(day * D)), "day {day} at {now}");
                }
            }
        }
    }

    #[test]
    fn newest_n_and_edge_cases() {
        let times = [10, 20, 30, 40];
        assert_eq!(
            Rule::Newest(2).keeps_at(0, &times),
            [false, false, true, true]
        );
        assert_eq!(Rule::Newest(9).keeps_at(0, &times), [true; 4]);
        assert_eq!(Rule::Newest(0).keeps_at(0, &times), [false; 4]);
        let g = Rule::Grid(grid("1h:1"));
        assert_eq!(g.keeps_at(100 * H, &[]), Vec::<bool>::new());
        // Everything too old: only the newest stays.
        assert_eq!(
            g.keeps_at(100 * H, &[H, 2 * H, 3 * H]),
            [false, false, true]
        );
        // From the future (the clock went back): kept; before the grid's
        // one slot: not.
        assert_eq!(g.keeps_at(H, &[10, 5 * H, 6 * H]), [false, true, true]);
        assert_eq!(g.keeps_at(H, &[H, H + 10]), [true, true]);
    }
}
