//! Run-time feature detection (`zfs_core::Features`) against real OpenZFS,
//! on whatever version the guest runs: each detection is checked against a
//! source that does not go through it (the sysfs directories read here, the
//! `zfs`/`zpool` CLI of the same release, the kernel's own answers), and
//! the library's behaviour is checked to follow it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use zfs_core::features::BASELINE_POOL_FEATURES;
use zfs_core::testing::{snapshot_list_ioctls, FilePool};
use zfs_core::{DatasetName, NvList, Zfs};
use zfs_replicate_tests::{zfs_cli, zpool_cli};

const SIZE: u64 = 256 << 20;
/// Where the guest's module publishes itself (loaded with insmod).
const SYSFS: &str = "/sys/module/zfs";

fn zfs() -> Zfs {
    Zfs::open().expect("open /dev/zfs")
}

fn pool(zfs: &Zfs) -> FilePool {
    FilePool::create_unique(zfs, "feat", SIZE).expect("create file pool")
}

/// The entry names of a sysfs directory, read here without the library.
fn sysfs_names(scope: &str) -> BTreeSet<String> {
    std::fs::read_dir(Path::new(SYSFS).join(scope))
        .unwrap_or_else(|e| panic!("{SYSFS}/{scope}: {e}"))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn pool_features_are_the_modules_and_a_file_pool_enables_them_all() {
    let zfs = zfs();
    let f = zfs.features();
    let detected = f.pool_features().expect("pool features");
    assert!(
        std::ptr::eq(detected, f.pool_features().unwrap()),
        "read once, then cached"
    );
    assert_eq!(f.sysfs_dir().unwrap(), Path::new(SYSFS));

    // One sysfs entry per feature GUID, and its `guid` attribute agrees.
    let guids: BTreeSet<String> = detected.iter().map(|x| x.guid().to_owned()).collect();
    assert_eq!(guids, sysfs_names("features.pool"));
    for feature in detected {
        let attr = format!("{SYSFS}/features.pool/{}/guid", feature.guid());
        assert_eq!(
            std::fs::read_to_string(&attr).unwrap().trim_end(),
            feature.guid()
        );
        assert!(f.has_pool_feature(feature.name()).unwrap());
        assert!(f.has_pool_feature(feature.guid()).unwrap());
    }
    assert!(!f.has_pool_feature("no_such_feature").unwrap());
    let names: BTreeSet<&str> = detected.iter().map(|x| x.name()).collect();
    assert_eq!(names.len(), detected.len(), "short names are unique");
    for baseline in BASELINE_POOL_FEATURES {
        assert!(
            names.contains(baseline),
            "{baseline} (OpenZFS 2.1) is missing from {names:?}"
        );
    }

    // A test pool has every one of them enabled, and nothing else: `zpool
    // get` (the guest's CLI, of the module's release) lists a feature@
    // property for each feature it and the module support.
    let p = pool(&zfs);
    let out = zpool_cli(&[
        "get",
        "-H",
        "-o",
        "property,value",
        "all",
        p.name().as_str(),
    ]);
    let mut states = BTreeMap::new();
    for line in out.lines() {
        let (prop, value) = line.split_once('\t').expect("property<TAB>value");
        assert!(!prop.starts_with("unsupported@"), "{line}");
        if let Some(name) = prop.strip_prefix("feature@") {
            states.insert(name.to_owned(), value.to_owned());
        }
    }
    let listed: BTreeSet<&str> = states.keys().map(String::as_str).collect();
    assert_eq!(
        listed, names,
        "zpool get lists exactly the detected features"
    );
    for (name, state) in &states {
        assert!(
            state == "enabled" || state == "active",
            "feature@{name} is {state}"
        );
    }
    println!(
        "{} pool features, all enabled on a test pool: {names:?}",
        names.len()
    );
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn dataset_properties_are_the_modules_and_snapshots_changed_follows_them() {
    let zfs = zfs();
    let f = zfs.features();
    let detected = f.dataset_properties().expect("dataset properties");
    assert_eq!(detected, &sysfs_names("properties.dataset"));

    // The properties zfs-core reads into typed fields or sets, except
    // snapshots_changed: every supported release has them.
    for prop in [
        "written",
        "receive_resume_token",
        "encryption",
        "encryptionroot",
        "keystatus",
        "readonly",
        "mountpoint",
        "used",
        "referenced",
        "creation",
        "canmount",
        "volsize",
        "volblocksize",
    ] {
        assert!(f.has_dataset_property(prop).unwrap(), "{prop}");
    }
    assert!(!f.has_dataset_property("no_such_property").unwrap());

    let p = pool(&zfs);
    let data = p.root().child("data").unwrap();
    zfs.create_filesystem(&data, &NvList::new()).unwrap();
    let before = now_secs();
    let snap = data.snapshot("s").unwrap();
    zfs.snapshot(std::slice::from_ref(&snap)).unwrap();
    let after = now_secs();

    // Every native property the CLI shows for a filesystem and a snapshot
    // is one the module lists.
    for target in [data.as_str(), snap.as_str()] {
        let out = zfs_cli(&["get", "-H", "-o", "property", "all", target]);
        for prop in out.lines().filter(|p| !p.contains(':')) {
            assert!(detected.contains(prop), "{target}: {prop} not in sysfs");
        }
    }

    // snapshots_changed is reported iff the module has it, and then with
    // the CLI's value: the time of the snapshot just taken.
    let has = f.has_dataset_property("snapshots_changed").unwrap();
    let props = zfs.properties(&data).unwrap();
    assert_eq!(props.snapshots_changed.is_some(), has, "{props:?}");
    if let Some(changed) = props.snapshots_changed {
        let cli = zfs_cli(&[
            "get",
            "-Hp",
            "-o",
            "value",
            "snapshots_changed",
            data.as_str(),
        ]);
        assert_eq!(cli.trim().parse::<u64>().unwrap(), changed);
        assert!(
            (before..=after).contains(&changed),
            "{before} <= {changed} <= {after}"
        );
    } else {
        assert!(props.raw.get("snapshots_changed").is_none());
    }
    println!("snapshots_changed: module has it: {has}");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn kernel_features_are_published_and_supported() {
    let zfs = zfs();
    let detected = zfs.features().kernel_features().expect("kernel features");
    assert_eq!(detected, &sysfs_names("features.kernel"));
    // Each says so itself.
    for feature in detected {
        let attr = format!("{SYSFS}/features.kernel/{feature}/supported");
        assert_eq!(std::fs::read_to_string(&attr).unwrap(), "yes\n", "{attr}");
    }
    // The ones OpenZFS 2.1 already announced.
    for known in [
        "com.delphix:vdev_initialize",
        "org.zfsonlinux:vdev_trim",
        "org.openzfs:l2arc_persistent",
    ] {
        assert!(detected.contains(known), "{known} not in {detected:?}");
    }
}

/// `zfs list -Hp -t snapshot -o name,guid,createtxg -r ROOT`: name → (guid, createtxg).
fn cli_snapshots(root: &DatasetName) -> BTreeMap<String, (u64, u64)> {
    let out = zfs_cli(&[
        "list",
        "-Hp",
        "-t",
        "snapshot",
        "-o",
        "name,guid,createtxg",
        "-r",
        root.as_str(),
    ]);
    out.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 3, "{line:?}");
            (
                f[0].to_owned(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshot_listing_matches_the_cli_and_the_simple_mode_answer_is_learnt_once() {
    let zfs = zfs();
    let features = zfs.features();
    assert_eq!(features.simple_listing_fills_guid(), None, "a fresh handle");
    let p = pool(&zfs);
    let root = p.root();
    let a = root.child("a").unwrap();
    let b = a.child("b with spaces").unwrap();
    let empty = root.child("empty").unwrap();
    let vol = root.child("vol").unwrap();
    let clone = root.child("clone").unwrap();
    for fs in [&a, &b, &empty] {
        zfs.create_filesystem(fs, &NvList::new()).unwrap();
    }
    zfs.create_volume(&vol, 8 << 20, &NvList::new()).unwrap();
    for i in 0..5 {
        zfs.snapshot(&[a.snapshot(&format!("s{i}")).unwrap()])
            .unwrap();
    }
    // Two in one txg (a batch), names in reverse order of creation.
    zfs.snapshot(&[
        a.snapshot("zz batch").unwrap(),
        b.snapshot("batch").unwrap(),
    ])
    .unwrap();
    for name in ["z", "m", "a"] {
        zfs.snapshot(&[b.snapshot(name).unwrap()]).unwrap();
    }
    for name in ["v1", "v2"] {
        zfs.snapshot(&[vol.snapshot(name).unwrap()]).unwrap();
    }
    zfs.clone_snapshot(&a.snapshot("s2").unwrap(), &clone, &NvList::new())
        .unwrap();
    zfs.snapshot(&[clone.snapshot("c1").unwrap()]).unwrap();
    zfs.snapshot(&[root.snapshot("top").unwrap()]).unwrap();

    // A dataset without snapshots teaches nothing: one call, ESRCH.
    let calls = snapshot_list_ioctls(&zfs);
    assert!(zfs.snapshots(&empty).unwrap().is_empty());
    assert_eq!(snapshot_list_ioctls(&zfs) - calls, 1);
    assert_eq!(features.simple_listing_fills_guid(), None);

    // The first snapshot listed teaches it. A module that fills nothing in
    // simple mode (OpenZFS 2.1) costs that one extra call, here only.
    let calls = snapshot_list_ioctls(&zfs);
    let listed = zfs.snapshots(&a).unwrap();
    let fills = features
        .simple_listing_fills_guid()
        .expect("learnt from the first snapshot");
    let extra = u64::from(!fills);
    assert_eq!(
        snapshot_list_ioctls(&zfs) - calls,
        listed.len() as u64 + 1 + extra
    );
    println!("simple-mode listing fills GUID and createtxg: {fills}");

    // From then on: one call per snapshot plus the end, whatever the answer.
    let mut mine = BTreeMap::new();
    for ds in zfs.descendants(&root).unwrap() {
        let calls = snapshot_list_ioctls(&zfs);
        let snaps = zfs.snapshots(ds.name()).unwrap();
        assert_eq!(
            snapshot_list_ioctls(&zfs) - calls,
            snaps.len() as u64 + 1,
            "{}",
            ds.name()
        );
        assert!(
            snaps
                .windows(2)
                .all(|w| w[0].createtxg() <= w[1].createtxg()),
            "{}: oldest first",
            ds.name()
        );
        for s in snaps {
            assert_eq!(s.name().dataset(), *ds.name());
            mine.insert(s.name().to_string(), (s.guid(), s.createtxg()));
        }
    }
    assert_eq!(features.simple_listing_fills_guid(), Some(fills));

    // Exactly the names, GUIDs and createtxgs the CLI prints.
    let cli = cli_snapshots(&root);
    assert_eq!(cli.len(), 14);
    assert_eq!(mine, cli);

    // The answer is per handle: a new one learns it again, the same way,
    // and lists the same.
    let other = Zfs::open().unwrap();
    assert_eq!(other.features().simple_listing_fills_guid(), None);
    assert_eq!(other.snapshots(&b).unwrap(), zfs.snapshots(&b).unwrap());
    assert_eq!(other.features().simple_listing_fills_guid(), Some(fills));
}

/// `snap_iter_min_txg` is honoured inside the kernel on every version: a
/// listing from a snapshot's createtxg returns exactly it and the newer
/// ones, with one list call per snapshot returned plus the one that ends
/// the listing, however many older snapshots the kernel skipped.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshot_listing_from_a_txg_is_filtered_in_the_kernel() {
    let zfs = zfs();
    let pool = pool(&zfs);
    let fs = pool.root().child("ranged").unwrap();
    zfs.create_filesystem(&fs, &NvList::new()).unwrap();
    for i in 0..40 {
        zfs.snapshot(&[fs.snapshot(&format!("s{i:02}")).unwrap()])
            .unwrap();
    }
    let all = zfs.snapshots(&fs).unwrap();
    assert_eq!(all.len(), 40);
    for from in [0, 1, 37, 39] {
        let calls = snapshot_list_ioctls(&zfs);
        let listed = zfs.snapshots_created(&fs, all[from].createtxg()).unwrap();
        let spent = snapshot_list_ioctls(&zfs) - calls;
        assert_eq!(listed, all[from..], "from snapshot {from}");
        // A 2.1 module lists in full mode directly: no wasted call.
        assert_eq!(spent, listed.len() as u64 + 1, "from snapshot {from}");
    }
    // Past the newest: nothing, in one call (and one stats call to tell an
    // empty range from a missing dataset).
    let calls = snapshot_list_ioctls(&zfs);
    let after = all[39].createtxg() + 1;
    assert!(zfs.snapshots_created(&fs, after).unwrap().is_empty());
    assert_eq!(snapshot_list_ioctls(&zfs) - calls, 1);
    // A missing dataset is still an error, not an empty range.
    let gone = pool.root().child("absent").unwrap();
    let err = zfs.snapshots_created(&gone, 1).unwrap_err();
    assert_eq!(err.kind(), zfs_core::ErrorKind::NotFound, "{err}");
}

/// Listing from many threads at once, as the planner's parallel walk does,
/// gets the kernel's own answers. The end of every listing is the kernel's
/// ESRCH; the call profile (testing feature) takes a lock after each call,
/// and a contended lock's futex once overwrote errno with EAGAIN before it
/// was read, so a finished listing failed as EAGAIN.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn listing_from_many_threads_keeps_the_kernels_errno() {
    let zfs = zfs();
    let pool = pool(&zfs);
    let full = pool.root().child("full").unwrap();
    let empty = pool.root().child("empty").unwrap();
    for fs in [&full, &empty] {
        zfs.create_filesystem(fs, &NvList::new()).unwrap();
    }
    for i in 0..3 {
        zfs.snapshot(&[full.snapshot(&format!("s{i}")).unwrap()])
            .unwrap();
    }
    let snapshots = zfs.snapshots(&full).unwrap();
    assert_eq!(snapshots.len(), 3);
    let rounds = 300;
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..rounds {
                    assert_eq!(zfs.snapshots(&full).unwrap(), snapshots);
                    assert!(zfs.snapshots(&empty).unwrap().is_empty());
                    assert!(zfs.children(&empty).unwrap().is_empty());
                    assert_eq!(zfs.children(&pool.root()).unwrap().len(), 2);
                }
            });
        }
    });
}
