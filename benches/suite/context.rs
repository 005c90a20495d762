//! What every benchmark shares: the handle, the recipe, the run count, and
//! whether each tree's source carries our cursor bookmark.

use std::collections::BTreeSet;
use std::time::Instant;

use zfs_core::{BookmarkName, SnapshotName, Zfs};
use zfs_replicate::{execute, ExecuteOptions, Replication};

use crate::recipe::{Recipe, Tree};

pub struct Context {
    pub zfs: Zfs,
    pub recipe: Recipe,
    /// Runs per sample (each side of a row).
    pub runs: usize,
    /// Trees whose source has our cursor bookmark.
    warm: BTreeSet<String>,
    cursors_taken: usize,
}

impl Context {
    pub fn new(zfs: Zfs, recipe: Recipe, runs: usize) -> Context {
        Context {
            zfs,
            recipe,
            runs,
            warm: BTreeSet::new(),
            cursors_taken: 0,
        }
    }

    /// Removes every bookmark from the tree's source, so that a plan finds
    /// no cursor and lists everything. The image's trees start this way
    /// (seeded with `zfs send -R`).
    pub fn make_cold(&mut self, tree: &Tree) {
        for dataset in tree.src_datasets() {
            let marks: Vec<BookmarkName> = self
                .zfs
                .bookmarks(&dataset)
                .unwrap_or_else(|e| panic!("listing bookmarks of {dataset}: {e}"))
                .into_iter()
                .map(|b| b.name().clone())
                .collect();
            if !marks.is_empty() {
                self.zfs
                    .destroy_bookmarks(&marks)
                    .unwrap_or_else(|e| panic!("destroying bookmarks of {dataset}: {e}"));
            }
        }
        self.warm.remove(&tree.name);
    }

    /// Leaves our cursor bookmark on the tree's source, as a previous run of
    /// ours would: one new snapshot per dataset, replicated by `execute`.
    pub fn make_warm(&mut self, tree: &Tree) {
        if self.warm.contains(&tree.name) {
            return;
        }
        let started = Instant::now();
        self.cursors_taken += 1;
        let short = format!("cursor{}", self.cursors_taken);
        let snapshots: Vec<SnapshotName> = tree
            .src_datasets()
            .iter()
            .map(|d| d.snapshot(&short).expect("a valid snapshot name"))
            .collect();
        self.zfs
            .snapshot(&snapshots)
            .unwrap_or_else(|e| panic!("snapshotting {}@{short}: {e}", tree.src()));
        let plan = replication(tree)
            .plan(&self.zfs)
            .unwrap_or_else(|e| panic!("planning {}: {e}", tree.src()));
        assert!(
            plan.divergences().is_empty(),
            "{} diverged from its source: {plan}",
            tree.dst()
        );
        execute(&self.zfs, &plan, &ExecuteOptions::default())
            .unwrap_or_else(|e| panic!("replicating {}@{short}: {e}", tree.src()));
        self.warm.insert(tree.name.clone());
        println!(
            "setup: {} replicated by us, cursor bookmark left ({:.1} s)",
            tree.src(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// How the benchmarks replicate a tree: recursively, with the defaults.
pub fn replication(tree: &Tree) -> Replication {
    Replication::new(tree.src(), tree.dst()).recursive(true)
}
