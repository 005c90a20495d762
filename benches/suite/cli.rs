//! The `zfs` CLI as the peers drive it: shell commands, and the planning
//! step they do (`zfs list -t snapshot` on both sides, matched by GUID).

use std::collections::BTreeMap;
use std::process::Command;

use zfs_core::DatasetName;

/// Runs `cmd` with `sh -c`, panicking with its stderr when it fails.
pub fn sh(cmd: &str) {
    sh_output(cmd);
}

/// Destroys a target of a transfer benchmark and waits until its space is
/// freed, so that the next run does not compete with the frees.
pub fn destroy_and_wait(dataset: &DatasetName) {
    sh(&format!(
        "zfs destroy -r '{dataset}' && zpool wait -t free '{}'",
        dataset.pool()
    ));
}

/// Runs `cmd` with `sh -c` and returns its stdout.
pub fn sh_output(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("starting sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line of `zfs list -Hp -t snapshot -o name,guid,createtxg`.
#[derive(Debug, Clone)]
pub struct CliSnapshot {
    pub short: String,
    pub guid: u64,
    pub createtxg: u64,
}

/// Every snapshot under `root` (`-r`), by dataset, oldest first.
pub fn list_snapshots(root: &str) -> BTreeMap<String, Vec<CliSnapshot>> {
    let text = sh_output(&format!(
        "zfs list -Hp -t snapshot -o name,guid,createtxg -r '{root}'"
    ));
    let mut out: BTreeMap<String, Vec<CliSnapshot>> = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(guid), Some(txg)) = (fields.next(), fields.next(), fields.next())
        else {
            panic!("unexpected `zfs list` line {line:?}");
        };
        let (dataset, short) = name.split_once('@').expect("a snapshot name");
        out.entry(dataset.to_owned())
            .or_default()
            .push(CliSnapshot {
                short: short.to_owned(),
                guid: guid.parse().expect("a numeric guid"),
                createtxg: txg.parse().expect("a numeric createtxg"),
            });
    }
    for snaps in out.values_mut() {
        snaps.sort_by_key(|s| s.createtxg);
    }
    out
}

/// Per source dataset (relative to the root, `""` for the root): its newest
/// snapshot, and the newest one the target has too (by GUID).
#[derive(Debug)]
pub struct CliPlan {
    pub datasets: BTreeMap<String, (String, Option<String>)>,
}

impl CliPlan {
    /// Lists both sides and matches them, as a CLI-driven tool plans.
    pub fn compute(src_root: &str, dst_root: &str) -> CliPlan {
        let src = list_snapshots(src_root);
        let dst = list_snapshots(dst_root);
        let mut datasets = BTreeMap::new();
        for (dataset, snaps) in &src {
            let rel = &dataset[src_root.len()..];
            let target = format!("{dst_root}{rel}");
            let target_guids: std::collections::HashSet<u64> = dst
                .get(&target)
                .map(|t| t.iter().map(|s| s.guid).collect())
                .unwrap_or_default();
            let newest = snaps.last().map(|s| s.short.clone()).unwrap_or_default();
            let common = snaps
                .iter()
                .rev()
                .find(|s| target_guids.contains(&s.guid))
                .map(|s| s.short.clone());
            datasets.insert(rel.to_owned(), (newest, common));
        }
        CliPlan { datasets }
    }

    /// Whether every dataset's newest snapshot is on the target.
    pub fn is_up_to_date(&self) -> bool {
        self.datasets
            .values()
            .all(|(newest, common)| common.as_ref() == Some(newest))
    }

    /// The root's newest common snapshot.
    pub fn root_base(&self) -> &str {
        self.datasets
            .get("")
            .and_then(|(_, common)| common.as_deref())
            .expect("the root has a common snapshot")
    }
}
