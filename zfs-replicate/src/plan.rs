//! Planning: what a replication would do, computed without changing
//! anything (so it doubles as a dry run).
//!
//! The common base is found by GUID, never by name: the newest target
//! snapshot whose GUID matches a source snapshot, or a source bookmark (the
//! bookmark this crate leaves after each run, so the next incremental works
//! even when every source snapshot was pruned).
//!
//! Planning costs what changed, not what exists: each run leaves a cursor
//! bookmark on the source, and the next plan lists only the snapshots
//! created since it, on both sides (the kernel skips older ones inside one
//! list call). Whenever the cursor does not check out it lists everything;
//! both ways give the same plan ([`Step::listing`] says which was used).
//!
//! ```no_run
//! use zfs_core::Zfs;
//! use zfs_replicate::Replication;
//!
//! let zfs = Zfs::open()?;
//! let plan = Replication::new("tank/home".parse()?, "pipe/home".parse()?)
//!     .recursive(true)
//!     .plan(&zfs)?;
//! print!("{plan}");
//! for (target, why) in plan.divergences() {
//!     eprintln!("{target}: {why}");
//! }
//! # Ok::<(), zfs_replicate::Error>(())
//! ```

use std::fmt;

use zfs_core::{
    Bookmark, DatasetName, KeyStatus, NvList, ReceiveOptions, ResumeToken, SendFlags, SendOptions,
    Snapshot, SnapshotName, Zfs,
};

use crate::endpoint::{Endpoint, Local, Op, Sides};
use crate::error::{Error, Result};
use crate::select::{DatasetFilter, Initial, SnapshotFilter};

/// Local properties every dataset a replication creates on the target gets
/// (`zfs receive -o`), unless the embedder overrides or excludes them:
/// a backup that is read-only and never mounted by itself. Mounted on
/// purpose (`zfs mount`), it is read-only, so reading its files changes
/// nothing (no atime) and the next incremental receive still applies.
/// Only new targets get them; later receives leave properties alone.
pub const BACKUP_DEFAULTS: [(&str, &str); 2] = [("readonly", "on"), ("canmount", "noauto")];

/// Whether `overrides` (`-o`/`-x` entries) only keep a backup read-only
/// and unmounted: [`BACKUP_DEFAULTS`], or `canmount=off`. What a
/// receive-only remote target accepts without granting property changes.
pub(crate) fn only_backup_defaults(overrides: &NvList) -> bool {
    use zfs_core::NvValue::U64;
    overrides.iter().all(|(name, value)| {
        matches!(
            (name, value),
            ("readonly", U64(1)) | ("canmount", U64(0) | U64(2))
        )
    })
}

/// The [`BACKUP_DEFAULTS`] a dataset of type `on` has, but those named in
/// `except`, encoded as `-o` entries.
pub(crate) fn backup_defaults(on: zfs_core::DatasetType, except: &NvList) -> Result<NvList> {
    let mut out = NvList::new();
    for (name, value) in BACKUP_DEFAULTS {
        if !except.contains_key(name) && zfs_core::property::applies(name, on) {
            let (name, value) = zfs_core::property::encode(name, value)?;
            out.insert(name, value);
        }
    }
    Ok(out)
}

/// Default stream flags: what `zfs send -L -e -c` gives.
pub const DEFAULT_FLAGS: SendFlags = SendFlags::LARGE_BLOCK
    .union(SendFlags::EMBED_DATA)
    .union(SendFlags::COMPRESS);

/// A replication request: a source filesystem (or volume) and a target name.
#[derive(Debug, Clone)]
pub struct Replication {
    pub(crate) source: DatasetName,
    pub(crate) target: DatasetName,
    pub(crate) recursive: bool,
    pub(crate) raw: bool,
    pub(crate) properties: bool,
    pub(crate) rollback: bool,
    pub(crate) destroy_removed: bool,
    pub(crate) parallelism: usize,
    pub(crate) prefix: String,
    pub(crate) cursor_planning: bool,
    /// The embedder's `-o`/`-x` entries (only these: the rest of the
    /// options is per transfer).
    pub(crate) overrides: ReceiveOptions,
    pub(crate) filter: DatasetFilter,
    pub(crate) snapshot_filter: Option<SnapshotFilter>,
    pub(crate) initial: Initial,
    pub(crate) create_parents: bool,
}

/// What one step is decided from: the source's snapshots (all, or those
/// from the cursor on) and the target's (all, or its base).
struct View {
    src_snaps: Vec<Snapshot>,
    target_exists: bool,
    tgt_snaps: Vec<Snapshot>,
    tgt_props: Option<zfs_core::Properties>,
}

impl Replication {
    /// Replicates `source` into `target` (which need not exist yet; its
    /// parent must, unless [`create_parents`](Self::create_parents)).
    ///
    /// The defaults: one dataset (not `recursive`), not raw, no properties
    /// sent, no rollback, nothing destroyed on the target, 2 datasets at
    /// once (`parallelism`), prefix `zfs-replicate`, planning from the
    /// cursor bookmark, every dataset and snapshot selected, the whole
    /// history on a first send ([`Initial::All`]), no parents created.
    /// Each has a getter: [`is_recursive`](Self::is_recursive) and so on.
    ///
    /// ```
    /// use zfs_replicate::{Initial, Replication};
    ///
    /// let r = Replication::new("tank/a".parse()?, "pipe/a".parse()?);
    /// assert!(!r.is_recursive() && !r.is_raw() && !r.rolls_back());
    /// assert_eq!(r.max_parallel(), 2);
    /// assert_eq!(r.snapshot_prefix(), "zfs-replicate");
    /// assert_eq!(r.initial_send(), Initial::All);
    /// assert!(r.plans_from_cursor() && !r.creates_parents());
    /// # Ok::<(), zfs_replicate::Error>(())
    /// ```
    pub fn new(source: DatasetName, target: DatasetName) -> Self {
        Replication {
            source,
            target,
            recursive: false,
            raw: false,
            properties: false,
            rollback: false,
            destroy_removed: false,
            parallelism: 2,
            prefix: "zfs-replicate".to_owned(),
            cursor_planning: true,
            overrides: ReceiveOptions::new(),
            filter: DatasetFilter::new(),
            snapshot_filter: None,
            initial: Initial::All,
            create_parents: false,
        }
    }

    /// Replicates only the datasets `filter` selects (with `recursive`;
    /// the source itself is subject to its property test, not to its
    /// exclude patterns). See [`DatasetFilter`].
    pub fn filter(mut self, filter: DatasetFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Sends only the snapshots `admit` returns true for; the others are
    /// hopped over (the next one sent is an incremental from the previous
    /// one sent). A snapshot already on the target stays usable as the
    /// common base whatever the filter says.
    pub fn snapshot_filter(
        mut self,
        admit: impl Fn(&Snapshot) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.snapshot_filter = Some(SnapshotFilter::new(admit));
        self
    }

    /// What the first transfer to a new target carries (default
    /// [`Initial::All`]).
    pub fn initial(mut self, initial: Initial) -> Self {
        self.initial = initial;
        self
    }

    /// Creates the missing ancestors of a new target (default: off, and
    /// the plan reports [`Divergence::MissingParent`] before anything
    /// changes). They are empty filesystems, `canmount=off`: placeholders
    /// that hold the backups, such as `pipe/backups` for
    /// `pipe/backups/home`, or the parent of a selected dataset whose own
    /// parent a [`DatasetFilter`] left out.
    pub fn create_parents(mut self, yes: bool) -> Self {
        self.create_parents = yes;
        self
    }

    /// Include every descendant filesystem and volume, dataset by dataset.
    pub fn recursive(mut self, yes: bool) -> Self {
        self.recursive = yes;
        self
    }

    /// Send raw streams (encrypted data stays encrypted; no key needed on
    /// either side).
    pub fn raw(mut self, yes: bool) -> Self {
        self.raw = yes;
        self
    }

    /// Copy the source's locally set properties as received properties
    /// (never `mountpoint`, `canmount`, `sharenfs` or `sharesmb`).
    pub fn properties(mut self, yes: bool) -> Self {
        self.properties = yes;
        self
    }

    /// Sets `name=value` on each dataset this creates on the target, as a
    /// local property (`zfs receive -o`), written as for `zfs set`. It
    /// replaces the default for the same property (see
    /// [`BACKUP_DEFAULTS`]). A property that the source's dataset type
    /// lacks is skipped with `recursive` and refused by the plan without
    /// it (`compression` applies to both, `atime` to filesystems only).
    ///
    /// ```
    /// use zfs_replicate::Replication;
    ///
    /// let repl = Replication::new("tank/home".parse()?, "pipe/home".parse()?)
    ///     .receive_override("compression", "zstd")?
    ///     .receive_override("backup:origin", "laptop")?
    ///     .receive_exclude("mountpoint")?;
    /// # Ok::<(), zfs_replicate::Error>(())
    /// ```
    pub fn receive_override(mut self, name: &str, value: &str) -> crate::Result<Self> {
        self.overrides = self.overrides.set(name, value)?;
        Ok(self)
    }

    /// Keeps `name` out of the datasets this creates on the target, as if
    /// the stream did not carry it (`zfs receive -x`): it is inherited
    /// from the target's parent. Also drops the default for it (see
    /// [`BACKUP_DEFAULTS`]): `receive_exclude("readonly")` makes new
    /// backups writable.
    pub fn receive_exclude(mut self, name: &str) -> crate::Result<Self> {
        self.overrides = self.overrides.exclude(name)?;
        Ok(self)
    }

    /// The `-o`/`-x` entries given with
    /// [`receive_override`](Self::receive_override) and
    /// [`receive_exclude`](Self::receive_exclude).
    pub fn receive_overrides(&self) -> &NvList {
        self.overrides.overrides()
    }

    /// Resolve divergence by rolling the target back to the common base,
    /// destroying target snapshots newer than it. Without it, divergence
    /// stops the run before anything changes.
    pub fn rollback(mut self, yes: bool) -> Self {
        self.rollback = yes;
        self
    }

    /// With `recursive`, destroy target children whose source was destroyed
    /// (otherwise they are only reported).
    pub fn destroy_removed(mut self, yes: bool) -> Self {
        self.destroy_removed = yes;
        self
    }

    /// How many independent datasets replicate at once (at least 1).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// The prefix of the snapshots, holds and bookmarks this crate makes
    /// (default `zfs-replicate`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Plan from the cursor bookmark a previous run left (default): list
    /// only the snapshots newer than it, on both sides, and fall back to
    /// listing everything whenever the cursor does not check out. `false`
    /// always lists everything; the plan is the same either way, only
    /// slower (see [`Step::listing`]).
    pub fn cursor_planning(mut self, yes: bool) -> Self {
        self.cursor_planning = yes;
        self
    }

    pub fn source(&self) -> &DatasetName {
        &self.source
    }

    pub fn target(&self) -> &DatasetName {
        &self.target
    }

    /// Whether descendants are replicated ([`recursive`](Self::recursive)).
    pub fn is_recursive(&self) -> bool {
        self.recursive
    }

    /// Whether streams are raw ([`raw`](Self::raw)).
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// Whether local properties are sent ([`properties`](Self::properties)).
    pub fn sends_properties(&self) -> bool {
        self.properties
    }

    /// Whether a diverged target is rolled back ([`rollback`](Self::rollback)).
    pub fn rolls_back(&self) -> bool {
        self.rollback
    }

    /// Whether targets whose source is gone are destroyed
    /// ([`destroy_removed`](Self::destroy_removed)).
    pub fn destroys_removed(&self) -> bool {
        self.destroy_removed
    }

    /// How many datasets run at once ([`parallelism`](Self::parallelism)).
    pub fn max_parallel(&self) -> usize {
        self.parallelism
    }

    /// The prefix of our snapshots, bookmarks and holds
    /// ([`prefix`](Self::prefix)).
    pub fn snapshot_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether plans start from the cursor bookmark
    /// ([`cursor_planning`](Self::cursor_planning)).
    pub fn plans_from_cursor(&self) -> bool {
        self.cursor_planning
    }

    /// The dataset filter ([`filter`](Self::filter)).
    pub fn dataset_filter(&self) -> &DatasetFilter {
        &self.filter
    }

    /// What a first send carries ([`initial`](Self::initial)).
    pub fn initial_send(&self) -> Initial {
        self.initial
    }

    /// Whether missing target parents are created
    /// ([`create_parents`](Self::create_parents)).
    pub fn creates_parents(&self) -> bool {
        self.create_parents
    }

    /// The send flags this replication uses.
    pub fn send_flags(&self) -> SendFlags {
        if self.raw {
            DEFAULT_FLAGS | SendFlags::RAW
        } else {
            DEFAULT_FLAGS
        }
    }

    /// Computes the plan. Changes nothing. Fails, before anything moves,
    /// when a name the run would make does not fit ZFS's limits.
    pub fn plan(&self, zfs: &Zfs) -> Result<Plan> {
        let local = Local::new(zfs);
        self.plan_with(&local, &local)
    }

    /// [`plan`](Replication::plan) with the source and the target as
    /// endpoints: local, remote, or an embedder's own.
    pub fn plan_with(&self, source: &dyn Endpoint, target: &dyn Endpoint) -> Result<Plan> {
        self.check_prefix()?;
        let sides = Sides { source, target };
        let sources = if self.recursive {
            walk(source, &self.source)?
        } else {
            source.dataset(&self.source)?;
            vec![self.source.clone()]
        };
        let mut removed_on_source = Vec::new();
        if self.recursive && target.exists(&self.target)? {
            let known: std::collections::BTreeSet<&DatasetName> = sources.iter().collect();
            for d in walk(target, &self.target)? {
                let rel = d.relative_to(&self.target).unwrap_or("");
                if rel.is_empty() {
                    continue;
                }
                let src = DatasetName::new(format!("{}/{rel}", self.source))?;
                if !known.contains(&src) {
                    removed_on_source.push(d);
                }
            }
        }
        self.plan_datasets(sides, &sources, removed_on_source)
    }

    /// One step per source dataset (parents first), for datasets already
    /// walked: [`plan`](Replication::plan) after its walk, and
    /// [`sync`](Replication::sync) again after its snapshot.
    pub(crate) fn plan_datasets(
        &self,
        sides: Sides<'_>,
        sources: &[DatasetName],
        removed_on_source: Vec<DatasetName>,
    ) -> Result<Plan> {
        let mut pairs = Vec::with_capacity(sources.len());
        for source in sources {
            let rel = source.relative_to(&self.source).unwrap_or("");
            let target = if rel.is_empty() {
                self.target.clone()
            } else {
                DatasetName::new(format!("{}/{rel}", self.target))?
            };
            pairs.push((source.clone(), target));
        }
        // Excluded by name: neither planned nor listed.
        pairs.retain(|(source, _)| {
            !self
                .filter
                .excludes_name(source.relative_to(&self.source).unwrap_or(""))
        });
        let steps = crate::parallel::in_parallel(&pairs, |(source, target)| {
            self.plan_one(sides, source.clone(), target.clone())
        })?;
        let mut steps: Vec<Step> = steps.into_iter().flatten().collect();
        for step in &steps {
            self.check_names(step)?;
        }
        // A target inherits its parent's key only where the plan replicates
        // that parent and the encryption root it inherits from: else the
        // target's parent is a placeholder, or another key's.
        let planned: std::collections::BTreeSet<DatasetName> =
            steps.iter().map(|s| s.target.clone()).collect();
        for step in &mut steps {
            let parent_planned = step.target.parent().is_some_and(|p| planned.contains(&p));
            if !step
                .inherit_key
                .as_ref()
                .is_some_and(|r| planned.contains(r))
                || !parent_planned
            {
                step.inherit_key = None;
            }
        }
        self.check_parents(sides.target, &mut steps)?;
        Ok(Plan {
            replication: self.clone(),
            steps,
            removed_on_source,
        })
    }

    /// Longest prefix accepted: the names made from it must leave room for
    /// dataset names (a hold tag is `<prefix>:<pid>.<nanoseconds>`).
    pub const MAX_PREFIX_LEN: usize = 64;

    /// Checks that the prefix is usable.
    pub(crate) fn check_prefix(&self) -> Result<()> {
        let reason = if self.prefix.is_empty() {
            "empty"
        } else if self.prefix.len() > Self::MAX_PREFIX_LEN {
            "longer than 64 bytes"
        } else {
            return Ok(());
        };
        Err(Error::InvalidPrefix {
            prefix: self.prefix.clone(),
            reason,
        })
    }

    /// Every name a run would make must fit before any data moves: each
    /// received snapshot's name on the target, and the bookmark left on the
    /// source.
    fn check_names(&self, step: &Step) -> Result<()> {
        let snapshots = step.action.snapshots();
        for s in &snapshots {
            step.target.snapshot(s.name().short_name())?;
        }
        if let Some(newest) = snapshots.last() {
            crate::execute::cursor_bookmark(
                &self.prefix,
                &step.source,
                &step.target,
                newest.guid(),
            )?;
        }
        Ok(())
    }

    /// Checks, before a snapshot named `short` is taken for [`sync`], that
    /// the names a run would make from it fit on both sides.
    ///
    /// [`sync`]: Replication::sync
    pub(crate) fn check_new_snapshot_names(&self, plan: &Plan, short: &str) -> Result<()> {
        for step in &plan.steps {
            step.source.snapshot(short)?;
            step.target.snapshot(short)?;
            crate::execute::cursor_bookmark(&self.prefix, &step.source, &step.target, u64::MAX)?;
        }
        Ok(())
    }

    /// For each step that creates its target, checks that the target's
    /// parent exists or is created before it (by the step of its parent):
    /// else, with [`create_parents`](Self::create_parents), the step
    /// creates the missing ancestors; without, it cannot run.
    fn check_parents(&self, tgt: &dyn Endpoint, steps: &mut [Step]) -> Result<()> {
        let created: std::collections::BTreeSet<DatasetName> = steps
            .iter()
            .filter(|s| s.creates_target())
            .map(|s| s.target.clone())
            .collect();
        for step in steps.iter_mut().filter(|s| s.creates_target()) {
            let (mut missing, existing) =
                missing_ancestors(tgt, &step.target, |d| created.contains(d))?;
            let Some(nearest) = missing.first().cloned() else {
                continue;
            };
            if !self.create_parents {
                step.divergence = Some(Divergence::MissingParent { parent: nearest });
                continue;
            }
            // A placeholder inherits the encryption of what it is created
            // in, and creating an encrypted one needs that key.
            let locked = existing.filter(|p| {
                p.encryption.is_encrypted() && p.key_status == Some(KeyStatus::Unavailable)
            });
            if let Some(p) = locked {
                step.divergence = Some(Divergence::KeyNotLoaded {
                    encryption_root: p.encryption_root.unwrap_or_default(),
                });
                continue;
            }
            missing.reverse();
            step.create_parents = missing;
        }
        Ok(())
    }

    fn plan_one(
        &self,
        sides: Sides<'_>,
        source: DatasetName,
        target: DatasetName,
    ) -> Result<Option<Step>> {
        let Sides {
            source: src,
            target: tgt,
        } = sides;
        let src_props = src.properties(&source)?;
        if !self.filter.admits(&src_props) {
            return Ok(None);
        }
        let src_marks = src.bookmarks(&source)?;
        let flags = self.send_flags();
        let mut step = Step::new(source.clone(), target.clone(), Action::UpToDate);
        step.flags = flags;
        step.receive_props = self.receive_props(&src_props, &source);
        step.receive_overrides = self.overrides_for(&src_props)?;
        let view = match self.cursor_view(sides, &source, &target, &src_marks, &src_props) {
            Some(view) => {
                step.listing = Listing::Cursor;
                view
            }
            None => {
                let src_snaps = src.snapshots(&source)?;
                // Without a source snapshot the target does not matter.
                let target_exists = !src_snaps.is_empty() && tgt.exists(&target)?;
                let (tgt_snaps, tgt_props) = if target_exists {
                    (tgt.snapshots(&target)?, Some(tgt.properties(&target)?))
                } else {
                    (Vec::new(), None)
                };
                View {
                    src_snaps,
                    target_exists,
                    tgt_snaps,
                    tgt_props,
                }
            }
        };
        self.decide(sides, step, &src_props, &src_marks, view)
            .map(Some)
    }

    /// What the source and target look like from this target's cursor
    /// bookmark, listing only what is newer than it; None (then both sides
    /// are listed in full) unless every check holds:
    /// - the source has a cursor of ours for this target, and a snapshot
    ///   with the cursor's GUID (created at the cursor's txg);
    /// - the target exists, has no resumable state, and its snapshot of
    ///   that name has the cursor's GUID;
    /// - the target has no snapshot newer than that one.
    ///
    /// Then the full listing would find the same common base (the target's
    /// newest snapshot, matched on the source by GUID) and the same
    /// snapshots to send (the source's newer than it): the plans agree.
    fn cursor_view(
        &self,
        sides: Sides<'_>,
        source: &DatasetName,
        target: &DatasetName,
        src_marks: &[Bookmark],
        src_props: &zfs_core::Properties,
    ) -> Option<View> {
        if !self.cursor_planning {
            return None;
        }
        let cursor = src_marks
            .iter()
            .filter(|b| crate::execute::is_current_cursor(&self.prefix, target, b))
            .max_by_key(|b| b.createtxg())?;
        let Sides {
            source: src,
            target: tgt,
        } = sides;
        let tgt_props = tgt.properties(target).ok()?;
        if tgt_props.receive_resume_token.is_some() {
            return None;
        }
        // The kernel names each dataset's newest snapshot (`prevsnap`):
        // when it is the cursor's, nothing is newer and nothing is listed.
        // A range listing costs few calls but makes the kernel visit every
        // snapshot of the dataset.
        let src_newest = newest_snapshot(src_props)
            .and_then(|n| src.snapshot_info(&n).ok())
            .filter(|s| s.guid() == cursor.guid());
        let src_snaps = match src_newest {
            Some(newest) => vec![newest],
            None => src.snapshots_created(source, cursor.createtxg()).ok()?,
        };
        let base = src_snaps.iter().find(|s| s.guid() == cursor.guid())?;
        let tgt_base = tgt
            .snapshot_info(&target.snapshot(base.name().short_name()).ok()?)
            .ok()?;
        if tgt_base.guid() != cursor.guid() {
            return None;
        }
        let newer_on_target = match newest_snapshot(&tgt_props) {
            Some(newest) => &newest != tgt_base.name(),
            None => !tgt
                .snapshots_created(target, tgt_base.createtxg().checked_add(1)?)
                .ok()?
                .is_empty(),
        };
        if newer_on_target {
            return None;
        }
        Some(View {
            src_snaps,
            target_exists: true,
            tgt_snaps: vec![tgt_base],
            tgt_props: Some(tgt_props),
        })
    }

    /// Decides one step from what was listed: the encryption it meets,
    /// then its transfers; a target whose key a transfer needs but is not
    /// loaded is a divergence (an up-to-date one is not).
    fn decide(
        &self,
        sides: Sides<'_>,
        mut step: Step,
        src_props: &zfs_core::Properties,
        src_marks: &[Bookmark],
        view: View,
    ) -> Result<Step> {
        let mut key_missing = None;
        if !view.src_snaps.is_empty() {
            if self.raw {
                step.inherit_key =
                    self.inherits_key_on_target(src_props, &step, view.tgt_props.as_ref());
            } else {
                let existing = view.tgt_props.as_ref().filter(|_| view.target_exists);
                if let Some(crypt) = target_encryption(sides.target, &step.target, existing)? {
                    // The receive encrypts a non-raw stream with the
                    // target's key, and refuses embedded blocks into an
                    // encrypted dataset.
                    step.flags.remove(SendFlags::EMBED_DATA);
                    if crypt.key_status == Some(KeyStatus::Unavailable) {
                        key_missing = Some(crypt.encryption_root.unwrap_or_default());
                    }
                }
            }
        }
        let mut step = self.decide_transfers(sides, step, src_props, src_marks, view)?;
        let sends = !matches!(step.action, Action::UpToDate | Action::NoSourceSnapshot);
        if let (Some(encryption_root), true, None) = (key_missing, sends, &step.divergence) {
            step.divergence = Some(Divergence::KeyNotLoaded { encryption_root });
        }
        Ok(step)
    }

    /// Decides one step's transfers from what was listed.
    fn decide_transfers(
        &self,
        sides: Sides<'_>,
        mut step: Step,
        src_props: &zfs_core::Properties,
        src_marks: &[Bookmark],
        view: View,
    ) -> Result<Step> {
        let View {
            src_snaps,
            target_exists,
            tgt_snaps,
            tgt_props,
        } = view;
        let Sides {
            source: src,
            target: tgt,
        } = sides;
        let target = step.target.clone();
        if src_snaps.is_empty() {
            // Nothing to send yet (sync takes the first snapshot after planning).
            step.action = Action::NoSourceSnapshot;
            return Ok(step);
        }
        let flags = step.flags;
        // What may be sent: the snapshots the filter admits. The common
        // base is looked for among all of them.
        let admitted: Vec<Snapshot> = match &self.snapshot_filter {
            Some(f) => src_snaps.iter().filter(|s| f.admits(s)).cloned().collect(),
            None => src_snaps.clone(),
        };
        let newer_than = |txg: u64| -> Vec<Snapshot> {
            admitted
                .iter()
                .filter(|s| s.createtxg() > txg)
                .cloned()
                .collect()
        };

        // A pending resumable receive: resume it if it fits, clear it if not.
        if let Some(token) = tgt_props
            .as_ref()
            .and_then(|p| p.receive_resume_token.clone())
        {
            match ResumeToken::parse(&token) {
                Ok(t) => {
                    let to_idx = src_snaps.iter().position(|s| s.guid() == t.to_guid);
                    let base_ok = match t.from_guid {
                        None => tgt_snaps.is_empty(),
                        Some(g) => tgt_snaps.last().map(|s| s.guid()) == Some(g),
                    };
                    let matches = to_idx.is_some()
                        && base_ok
                        && (t.flags.contains(SendFlags::RAW) == self.raw);
                    step.resume = Some(PendingResume {
                        token: Some(t.clone()),
                        raw: token.clone(),
                        matches,
                    });
                    if let (true, Some(i)) = (matches, to_idx) {
                        let rest = newer_than(src_snaps[i].createtxg());
                        step.estimated_bytes = estimate_remaining(src, &src_snaps[i], &t, flags)
                            + estimate_chain(src, Some(&src_snaps[i]), &rest, flags);
                        step.action = Action::Resume {
                            snapshot: src_snaps[i].clone(),
                            then: rest,
                        };
                        return Ok(step);
                    }
                }
                Err(_) => {
                    step.resume = Some(PendingResume {
                        token: None,
                        raw: token.clone(),
                        matches: false,
                    });
                }
            }
        }

        // An inconsistent target that a stale token left is cleared and
        // treated as absent.
        let target_is_partial_full = target_exists
            && tgt_snaps.is_empty()
            && step.resume.as_ref().is_some_and(|r| {
                !r.matches && r.token.as_ref().is_none_or(|t| t.from_guid.is_none())
            });
        if !target_exists || target_is_partial_full {
            let (first, rest) = match (self.initial, admitted.split_first()) {
                (_, None) => {
                    step.action = Action::NoSourceSnapshot;
                    return Ok(step);
                }
                (Initial::MostRecent, Some(_)) => {
                    (admitted[admitted.len() - 1].clone(), Vec::new())
                }
                (_, Some((first, rest))) => (first.clone(), rest.to_vec()),
            };
            step.estimated_bytes =
                estimate_full(src, &first, flags) + estimate_chain(src, Some(&first), &rest, flags);
            step.action = Action::Full {
                snapshot: first,
                then: rest,
            };
            return Ok(step);
        }
        let tgt_props = match tgt_props {
            Some(p) => p,
            None => tgt.properties(&target)?,
        };

        // Encryption lineage: a raw stream of encrypted data cannot go
        // onto unencrypted data. (A non-raw one onto encrypted data can: it
        // is encrypted with the target's key, checked above.)
        let src_enc = src_props.encryption.is_encrypted();
        let tgt_enc = tgt_props.encryption.is_encrypted();
        if src_enc && self.raw && !tgt_enc {
            step.divergence = Some(Divergence::EncryptionMismatch {
                reason: "the source is encrypted and the stream raw, but the target holds unencrypted (non-raw) data".into(),
            });
            return Ok(step);
        }

        // Newest target snapshot whose GUID the source has (as a snapshot,
        // else as a bookmark).
        let mut common = None;
        for (ti, t) in tgt_snaps.iter().enumerate().rev() {
            if let Some(s) = src_snaps.iter().find(|s| s.guid() == t.guid()) {
                common = Some((ti, Base::Snapshot(s.clone()), t.clone()));
                break;
            }
            if let Some(b) = src_marks.iter().find(|b| b.guid() == t.guid()) {
                common = Some((ti, Base::Bookmark(b.clone()), t.clone()));
                break;
            }
        }
        let Some((ti, base, target_base)) = common else {
            let placeholder = tgt_snaps.is_empty() && tgt_props.raw.get(PLACEHOLDER).is_some();
            step.divergence = Some(if placeholder {
                Divergence::TargetIsPlaceholder
            } else {
                Divergence::NoCommonSnapshot {
                    target_snapshots: tgt_snaps.len(),
                }
            });
            return Ok(step);
        };
        let newer: Vec<SnapshotName> = tgt_snaps[ti + 1..]
            .iter()
            .map(|s| s.name().clone())
            .collect();
        let written = tgt_props.written.unwrap_or(0);
        let divergence = if !newer.is_empty() {
            Some(Divergence::TargetHasNewerSnapshots {
                base: target_base.name().clone(),
                newer: newer.clone(),
            })
        } else if written > 0 {
            Some(Divergence::TargetModified {
                base: target_base.name().clone(),
                written,
            })
        } else {
            None
        };
        if let Some(d) = divergence {
            if self.rollback {
                step.rollback = Some(Rollback {
                    to: target_base.name().clone(),
                    destroy: newer,
                });
            } else {
                step.divergence = Some(d);
                return Ok(step);
            }
        }

        let to_send = newer_than(base.createtxg());
        if to_send.is_empty() {
            step.action = Action::UpToDate;
            return Ok(step);
        }
        step.estimated_bytes = estimate_incremental(src, &base, &to_send, flags);
        step.action = Action::Incremental {
            base,
            target_base,
            snapshots: to_send,
        };
        Ok(step)
    }

    /// Whether, after a raw transfer, the step's target should use its
    /// parent's key, as `zfs receive -R` arranges
    /// (`recv_fix_encryption_hierarchy`): a raw receive makes every new
    /// dataset an encryption root, but this one inherits its key on the
    /// source, from an encryption root inside the replicated tree. Never
    /// the replication's own target, whose parent is not the source's.
    /// Returns the target of that encryption root.
    fn inherits_key_on_target(
        &self,
        src: &zfs_core::Properties,
        step: &Step,
        tgt: Option<&zfs_core::Properties>,
    ) -> Option<DatasetName> {
        if !src.encryption.is_encrypted() || step.target == self.target {
            return None;
        }
        let root = DatasetName::new(src.encryption_root.as_deref()?).ok()?;
        if root == step.source {
            return None;
        }
        let rel = root.relative_to(&self.source)?;
        let target_root = if rel.is_empty() {
            self.target.clone()
        } else {
            DatasetName::new(format!("{}/{rel}", self.target)).ok()?
        };
        // A new target is created as an encryption root.
        let target_is_root = tgt.is_none_or(|t| {
            t.encryption.is_encrypted()
                && t.encryption_root.as_deref() == Some(step.target.as_str())
        });
        target_is_root.then_some(target_root)
    }

    /// The `-o`/`-x` entries for a dataset created from `source`: the
    /// embedder's, and the [`BACKUP_DEFAULTS`] it did not name, each where
    /// the source's type has it (an embedder's entry the type lacks is
    /// refused without `recursive`).
    fn overrides_for(&self, src: &zfs_core::Properties) -> Result<NvList> {
        let Some(on) = src.dataset_type else {
            return Ok(NvList::new());
        };
        let mine = self.overrides.overrides();
        if !self.recursive {
            self.overrides.check_overrides(on)?;
        }
        let mut out = backup_defaults(on, mine)?;
        for (name, value) in mine.iter() {
            if zfs_core::property::applies(name, on) {
                out.insert(name, value.clone());
            }
        }
        Ok(out)
    }

    /// Received properties for a full receive: the source's local
    /// properties when asked (the defaults are local: [`BACKUP_DEFAULTS`]).
    fn receive_props(&self, src: &zfs_core::Properties, source: &DatasetName) -> NvList {
        let mut props = NvList::new();
        if self.properties {
            for (name, value) in src.raw.iter() {
                if matches!(name, "mountpoint" | "canmount" | "sharenfs" | "sharesmb") {
                    continue;
                }
                let zfs_core::NvValue::NvList(v) = value else {
                    continue;
                };
                // A locally set value's source is the dataset itself.
                let local = v.get_str("source").ok() == Some(source.as_str());
                if !local {
                    continue;
                }
                if let Some(val) = v.get("value") {
                    props.insert(name, val.clone());
                }
            }
        }
        props
    }
}

/// The encryption a non-raw receive into `target` meets: its own when it
/// exists (`existing`), else that of its nearest existing ancestor, which
/// it will inherit; None when unencrypted (or unknown: an ancestor a
/// server's policy hides is taken as unencrypted; the receive has the last
/// word).
fn target_encryption(
    tgt: &dyn Endpoint,
    target: &DatasetName,
    existing: Option<&zfs_core::Properties>,
) -> Result<Option<zfs_core::Properties>> {
    let props = match existing {
        Some(p) => Some(p.clone()),
        None => missing_ancestors(tgt, target, |_| false)?.1,
    };
    Ok(props.filter(|p| p.encryption.is_encrypted()))
}

/// Walks up from `dataset`'s parent to the first ancestor that exists, that
/// `stop` names, or that a server's policy hides (beyond its root: left to
/// the receive): the missing ones passed, nearest first, and the existing
/// one's properties (None when the walk stopped otherwise).
fn missing_ancestors(
    tgt: &dyn Endpoint,
    dataset: &DatasetName,
    stop: impl Fn(&DatasetName) -> bool,
) -> Result<(Vec<DatasetName>, Option<zfs_core::Properties>)> {
    let mut missing = Vec::new();
    let mut at = dataset.parent();
    while let Some(d) = at {
        if tgt.refusal(Op::List, &d).is_some() || stop(&d) {
            break;
        }
        match tgt.properties(&d) {
            Ok(p) => return Ok((missing, Some(p))),
            Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                at = d.parent();
                missing.push(d);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((missing, None))
}

/// A filesystem's or volume's newest snapshot, as the kernel names it in
/// the hidden `prevsnap` property (for a clone without snapshots of its
/// own: its origin, in another dataset).
fn newest_snapshot(props: &zfs_core::Properties) -> Option<SnapshotName> {
    let zfs_core::NvValue::NvList(v) = props.raw.get("prevsnap")? else {
        return None;
    };
    SnapshotName::new(v.get_str("value").ok()?).ok()
}

/// `root` and its descendants (filesystems and volumes), parents first in
/// depth-first order, like [`Zfs::descendants`]; the children of each depth
/// level are listed in parallel.
fn walk(side: &dyn Endpoint, root: &DatasetName) -> Result<Vec<DatasetName>> {
    side.dataset(root)?;
    let mut children: std::collections::HashMap<DatasetName, Vec<DatasetName>> =
        std::collections::HashMap::new();
    let mut frontier = vec![root.clone()];
    while !frontier.is_empty() {
        // The root was checked above and every other parent was just listed:
        // no stats call per leaf to tell "no children" from "gone".
        let lists = crate::parallel::in_parallel(&frontier, |d| side.children(d))?;
        let mut next = Vec::new();
        for (parent, names) in frontier.iter().zip(lists) {
            next.extend(names.iter().cloned());
            children.insert(parent.clone(), names);
        }
        frontier = next;
    }
    let mut out = Vec::with_capacity(children.len());
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        if let Some(kids) = children.get(&d) {
            stack.extend(kids.iter().rev().cloned());
        }
        out.push(d);
    }
    Ok(out)
}

fn estimate_full(src: &dyn Endpoint, snap: &Snapshot, flags: SendFlags) -> u64 {
    src.send_space(snap.name(), &SendOptions::new().flags(flags))
        .unwrap_or(0)
}

fn estimate_chain(
    src: &dyn Endpoint,
    base: Option<&Snapshot>,
    rest: &[Snapshot],
    flags: SendFlags,
) -> u64 {
    let mut prev = base.cloned();
    let mut total = 0;
    for s in rest {
        let opts = match &prev {
            Some(p) => SendOptions::new().flags(flags).from(p.name().clone()),
            None => SendOptions::new().flags(flags),
        };
        total += src.send_space(s.name(), &opts).unwrap_or(0);
        prev = Some(s.clone());
    }
    total
}

fn estimate_incremental(
    src: &dyn Endpoint,
    base: &Base,
    to_send: &[Snapshot],
    flags: SendFlags,
) -> u64 {
    let Some((first, rest)) = to_send.split_first() else {
        return 0;
    };
    let first_bytes = src
        .send_space(
            first.name(),
            &SendOptions::new().flags(flags).from(base.as_send_base()),
        )
        .unwrap_or(0);
    first_bytes + estimate_chain(src, Some(first), rest, flags)
}

fn estimate_remaining(
    src: &dyn Endpoint,
    snap: &Snapshot,
    token: &ResumeToken,
    flags: SendFlags,
) -> u64 {
    let total = match src.resolve_resume_token(token) {
        Ok((_, opts)) => {
            let base_opts = match opts.base() {
                Some(b) => SendOptions::new().flags(flags).from(b.clone()),
                None => SendOptions::new().flags(flags),
            };
            src.send_space(snap.name(), &base_opts).unwrap_or(0)
        }
        Err(_) => 0,
    };
    total.saturating_sub(token.bytes)
}

/// The incremental base on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "snake_case"))]
pub enum Base {
    Snapshot(Snapshot),
    /// A bookmark: the snapshot is gone, its position is kept.
    Bookmark(Bookmark),
}

impl Base {
    pub fn guid(&self) -> u64 {
        match self {
            Base::Snapshot(s) => s.guid(),
            Base::Bookmark(b) => b.guid(),
        }
    }

    pub fn createtxg(&self) -> u64 {
        match self {
            Base::Snapshot(s) => s.createtxg(),
            Base::Bookmark(b) => b.createtxg(),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Base::Snapshot(s) => s.name().to_string(),
            Base::Bookmark(b) => b.name().to_string(),
        }
    }

    pub(crate) fn as_send_base(&self) -> zfs_core::SnapshotOrBookmark {
        match self {
            Base::Snapshot(s) => s.name().clone().into(),
            Base::Bookmark(b) => b.name().clone().into(),
        }
    }
}

/// What to do for one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Action {
    /// The target is absent: a full stream of `snapshot`, then each of `then`
    /// incrementally (all history, like `zfs send -R`).
    Full {
        snapshot: Snapshot,
        then: Vec<Snapshot>,
    },
    /// Incremental from `base` through each of `snapshots` (like
    /// `zfs send -I`; from a bookmark the first step is `-i`).
    Incremental {
        base: Base,
        /// The target's snapshot with the base's GUID.
        target_base: Snapshot,
        snapshots: Vec<Snapshot>,
    },
    /// Finish the interrupted transfer of `snapshot`, then send `then`.
    Resume {
        snapshot: Snapshot,
        then: Vec<Snapshot>,
    },
    /// Nothing to send.
    UpToDate,
    /// The source has no snapshot yet: nothing can be sent.
    NoSourceSnapshot,
}

impl Action {
    /// The snapshots this action transfers, in order.
    pub fn snapshots(&self) -> Vec<&Snapshot> {
        match self {
            Action::Full { snapshot, then } | Action::Resume { snapshot, then } => {
                std::iter::once(snapshot).chain(then).collect()
            }
            Action::Incremental { snapshots, .. } => snapshots.iter().collect(),
            Action::UpToDate | Action::NoSourceSnapshot => Vec::new(),
        }
    }
}

/// Why a target cannot simply take the next incremental.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Divergence {
    /// The target exists but shares no snapshot (by GUID) with the source.
    NoCommonSnapshot { target_snapshots: usize },
    /// The target changed since its newest snapshot, the common base.
    TargetModified { base: SnapshotName, written: u64 },
    /// The target has snapshots newer than the common base.
    TargetHasNewerSnapshots {
        base: SnapshotName,
        newer: Vec<SnapshotName>,
    },
    /// Encryption or raw lineage does not match.
    EncryptionMismatch { reason: String },
    /// The target's parent does not exist and the run would not create
    /// it (see [`Replication::create_parents`]).
    MissingParent { parent: DatasetName },
    /// The target is a placeholder that
    /// [`create_parents`](Replication::create_parents) made to hold
    /// backups below it (now its source is selected too): a full stream
    /// cannot be received into an existing dataset without `-F`, which
    /// this library does not do by itself.
    TargetIsPlaceholder,
    /// A non-raw stream would be encrypted with the target's key (the
    /// target, or the parent it is created under, is encrypted), and that
    /// key is not loaded.
    KeyNotLoaded { encryption_root: String },
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Divergence::NoCommonSnapshot { target_snapshots } => write!(
                f,
                "no common snapshot: none of the target's {target_snapshots} snapshots matches a source snapshot or bookmark by GUID"
            ),
            Divergence::TargetModified { base, written } => {
                write!(f, "target modified since {base} ({written} bytes written); use rollback to discard")
            }
            Divergence::TargetHasNewerSnapshots { base, newer } => {
                let names: Vec<&str> = newer.iter().map(|s| s.short_name()).collect();
                write!(f, "target has snapshots newer than the common base {base}: {}; use rollback to destroy them", names.join(", "))
            }
            Divergence::EncryptionMismatch { reason } => write!(f, "encryption mismatch: {reason}"),
            Divergence::TargetIsPlaceholder => write!(
                f,
                "the target is an empty placeholder made to hold the backups below it; receive into it by hand (zfs receive -F), or leave its source out"
            ),
            Divergence::MissingParent { parent } => write!(
                f,
                "the target's parent {parent} does not exist (create it, or let the run create it: create_parents)"
            ),
            Divergence::KeyNotLoaded { encryption_root } => write!(
                f,
                "the target is encrypted with the key of {encryption_root}, which is not loaded: load it to receive a non-raw stream"
            ),
        }
    }
}

/// A pending resumable receive found on the target.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PendingResume {
    /// The decoded token (None if it does not decode).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serialize::resume_token")
    )]
    pub token: Option<ResumeToken>,
    /// The token as the target reports it.
    pub raw: String,
    /// Whether it continues this plan (resumed) or is stale (cleared).
    pub matches: bool,
}

/// What rollback does to a diverged target.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Rollback {
    /// Roll back to this snapshot (the common base).
    pub to: SnapshotName,
    /// Destroy these newer target snapshots first.
    pub destroy: Vec<SnapshotName>,
}

/// The plan for one dataset.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Step {
    pub source: DatasetName,
    pub target: DatasetName,
    pub action: Action,
    /// Set when the step cannot run; nothing will be sent.
    pub divergence: Option<Divergence>,
    /// Set when `rollback` resolves divergence.
    pub rollback: Option<Rollback>,
    pub resume: Option<PendingResume>,
    /// Estimated stream bytes.
    pub estimated_bytes: u64,
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serialize::flag_names")
    )]
    pub flags: SendFlags,
    /// Received properties set on a full receive.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serialize::nvlist_map")
    )]
    pub receive_props: NvList,
    /// Local properties (`-o`, typed values) and exclusions (`-x`,
    /// booleans) for the receive that creates the target: the
    /// [`BACKUP_DEFAULTS`] and the embedder's overrides, where this
    /// dataset's type has them.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serialize::overrides")
    )]
    pub receive_overrides: NvList,
    /// How the step was planned (the plan is the same either way).
    pub listing: Listing,
    /// After its transfers, the target (made an encryption root by a raw
    /// receive) is made to use its parent's key, as its source does: the
    /// key of this target dataset, the copy of the source's encryption
    /// root. Only when that root and the source's parent are replicated
    /// by the same plan, and checked again at run time.
    pub inherit_key: Option<DatasetName>,
    /// Missing ancestors of the target, created (parents first) before
    /// the step's first transfer ([`Replication::create_parents`]).
    pub create_parents: Vec<DatasetName>,
}

impl Step {
    /// A step that does `action` from `source` into `target`, with nothing
    /// else set (no divergence, estimate 0, the default flags): for an
    /// embedder's tests of its own rendering, without ZFS. Plans come from
    /// [`Replication::plan`].
    ///
    /// ```
    /// use zfs_core::Snapshot;
    /// use zfs_replicate::{Action, Plan, Replication, Step};
    ///
    /// let repl = Replication::new("tank/a".parse()?, "pipe/a".parse()?);
    /// let first = Snapshot::new("tank/a@monday".parse()?, 0x1234, 100);
    /// let action = Action::Full { snapshot: first, then: Vec::new() };
    /// let plan = Plan {
    ///     steps: vec![Step::new("tank/a".parse()?, "pipe/a".parse()?, action)],
    ///     replication: repl,
    ///     removed_on_source: Vec::new(),
    /// };
    /// assert!(plan.to_string().contains("full monday"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(source: DatasetName, target: DatasetName, action: Action) -> Step {
        Step {
            source,
            target,
            action,
            divergence: None,
            rollback: None,
            resume: None,
            estimated_bytes: 0,
            flags: DEFAULT_FLAGS,
            receive_props: NvList::new(),
            receive_overrides: NvList::new(),
            listing: Listing::Full,
            inherit_key: None,
            create_parents: Vec::new(),
        }
    }

    /// Whether the step creates its target: a full transfer, when it can
    /// run.
    pub fn creates_target(&self) -> bool {
        matches!(self.action, Action::Full { .. }) && self.divergence.is_none()
    }
}

/// How a step's snapshots were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Listing {
    /// From the cursor bookmark: only snapshots newer than it were listed.
    Cursor,
    /// Every snapshot on both sides was listed.
    Full,
}

/// The user property that marks a placeholder
/// ([`Replication::create_parents`]).
pub const PLACEHOLDER: &str = "zfs-replicate:placeholder";

/// A typed dry run of a replication. With the `serde` feature it
/// serializes by hand (`Replication` is not data): see the crate docs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub replication: Replication,
    /// One step per dataset, parents before children.
    pub steps: Vec<Step>,
    /// Target datasets whose source no longer exists.
    pub removed_on_source: Vec<DatasetName>,
}

impl Plan {
    /// The steps that cannot run, and why.
    pub fn divergences(&self) -> Vec<(DatasetName, Divergence)> {
        self.steps
            .iter()
            .filter_map(|s| s.divergence.clone().map(|d| (s.target.clone(), d)))
            .collect()
    }

    /// Total estimated bytes.
    pub fn estimated_bytes(&self) -> u64 {
        self.steps.iter().map(|s| s.estimated_bytes).sum()
    }

    /// Whether there is nothing to send.
    pub fn is_up_to_date(&self) -> bool {
        self.steps
            .iter()
            .all(|s| s.action == Action::UpToDate && s.divergence.is_none())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: {} -> {}{}{}",
            self.replication.source,
            self.replication.target,
            if self.replication.recursive {
                " (recursive)"
            } else {
                ""
            },
            if self.replication.raw { " (raw)" } else { "" }
        )?;
        for s in &self.steps {
            write!(f, "  {} -> {}: ", s.source, s.target)?;
            if let Some(d) = &s.divergence {
                writeln!(f, "BLOCKED: {d}")?;
                continue;
            }
            if let Some(r) = &s.resume {
                if !r.matches {
                    write!(f, "clear stale resume token; ")?;
                }
            }
            if !s.create_parents.is_empty() {
                let names: Vec<&str> = s.create_parents.iter().map(|d| d.as_str()).collect();
                write!(f, "create parent(s) {}; ", names.join(", "))?;
            }
            if let Some(r) = &s.rollback {
                write!(f, "roll back to {}", r.to)?;
                if !r.destroy.is_empty() {
                    write!(f, " destroying {} newer snapshot(s)", r.destroy.len())?;
                }
                write!(f, "; ")?;
            }
            match &s.action {
                Action::Full { snapshot, then } => write!(
                    f,
                    "full {} + {} incremental(s)",
                    snapshot.name().short_name(),
                    then.len()
                )?,
                Action::Incremental {
                    base, snapshots, ..
                } => write!(
                    f,
                    "incremental from {} ({:#x}) through {} ({} snapshot(s))",
                    base.name(),
                    base.guid(),
                    snapshots
                        .last()
                        .map(|s| s.name().short_name())
                        .unwrap_or("?"),
                    snapshots.len()
                )?,
                Action::Resume { snapshot, then } => write!(
                    f,
                    "resume {} + {} incremental(s)",
                    snapshot.name().short_name(),
                    then.len()
                )?,
                Action::UpToDate => write!(f, "up to date")?,
                Action::NoSourceSnapshot => write!(f, "source has no snapshot yet")?,
            }
            writeln!(f, ", about {} bytes", s.estimated_bytes)?;
        }
        for r in &self.removed_on_source {
            writeln!(
                f,
                "  {r}: source removed; {}",
                if self.replication.destroy_removed {
                    "will be destroyed"
                } else {
                    "kept (not requested to destroy)"
                }
            )?;
        }
        Ok(())
    }
}
