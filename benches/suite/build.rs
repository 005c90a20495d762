//! Builds the pools on the blank disks (`suite build`, in the guest): the
//! trees with their snapshots, the data sets, the targets seeded with
//! `zfs send -R | zfs receive` (so no cursor bookmark exists yet), then
//! exports both pools. The images are kept by `cargo xtask bench`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use zfs_core::{DatasetName, NvList, SnapshotName, Zfs};

use crate::cli::sh;
use crate::pools;
use crate::recipe::{tree_snapshot, Recipe, DATA_SNAPSHOT};

pub fn build(zfs: &Zfs, recipe: &Recipe) {
    let started = Instant::now();
    pools::create();
    trees(zfs, recipe);
    data_sets(zfs, recipe);
    for tree in recipe.all_trees() {
        let t = Instant::now();
        let last = tree_snapshot(tree.snapshots);
        sh(&format!(
            "zfs send -R '{}@{last}' | zfs receive -u '{}'",
            tree.src(),
            tree.dst()
        ));
        progress(&format!("seeded {} with zfs send -R", tree.dst()), t);
    }
    pools::export();
    progress("built the pools", started);
}

/// The trees' datasets, then their snapshots: round `i` takes snapshot `i`
/// of every dataset that has that many, in one `lzc_snapshot` call (one
/// call cannot take two snapshots of one filesystem).
fn trees(zfs: &Zfs, recipe: &Recipe) {
    let started = Instant::now();
    for tree in recipe.all_trees() {
        for dataset in tree.src_datasets() {
            zfs.create_filesystem(&dataset, &NvList::new())
                .unwrap_or_else(|e| panic!("creating {dataset}: {e}"));
        }
    }
    let rounds = recipe.all_trees().map(|t| t.snapshots).max().unwrap_or(0);
    for i in 1..=rounds {
        let snapshots: Vec<SnapshotName> = recipe
            .all_trees()
            .filter(|t| t.snapshots >= i)
            .flat_map(|t| t.src_datasets())
            .map(|d| {
                d.snapshot(&tree_snapshot(i))
                    .expect("a valid snapshot name")
            })
            .collect();
        zfs.snapshot(&snapshots)
            .unwrap_or_else(|e| panic!("snapshot round {i}: {e}"));
        if i % 100 == 0 {
            progress(&format!("{i} of {rounds} snapshot rounds"), started);
        }
    }
    progress("created the trees", started);
}

/// The data sets, each filled with incompressible data and snapshotted.
fn data_sets(zfs: &Zfs, recipe: &Recipe) {
    let started = Instant::now();
    let parallel = recipe.parallel_src();
    let mut filled: Vec<(DatasetName, u64)> = vec![(parallel.clone(), 0)];
    for i in 1..=recipe.children {
        let child = parallel.child(&format!("c{i}")).expect("a valid name");
        filled.push((child, recipe.child_mib));
    }
    filled.push((recipe.single_src(), recipe.single_mib));
    for mib in &recipe.rss_mib {
        filled.push((recipe.rss_src(*mib), *mib));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    for (dataset, mib) in &filled {
        let dir = format!("/tmp/benchmnt/{}", dataset.as_str().replace('/', "_"));
        sh(&format!("zfs create -o mountpoint={dir} '{dataset}'"));
        if *mib > 0 {
            write_random(&Path::new(&dir).join("data"), *mib, &mut seed);
        }
        sh(&format!(
            "zfs umount '{dataset}' && zfs inherit mountpoint '{dataset}'"
        ));
    }
    let snapshots: Vec<SnapshotName> = filled
        .iter()
        .map(|(d, _)| d.snapshot(DATA_SNAPSHOT).expect("a valid snapshot name"))
        .collect();
    zfs.snapshot(&snapshots)
        .unwrap_or_else(|e| panic!("snapshotting the data sets: {e}"));
    progress("wrote the data sets", started);
}

/// `mib` MiB of xorshift output: incompressible, and cheap under TCG.
fn write_random(path: &Path, mib: u64, state: &mut u64) {
    let mut file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    file.sync_all()
        .unwrap_or_else(|e| panic!("syncing {}: {e}", path.display()));
}

fn progress(what: &str, since: Instant) {
    println!("build: {what} ({:.0} s)", since.elapsed().as_secs_f64());
}
