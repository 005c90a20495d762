//! Properties against real OpenZFS (run by `cargo xtask test` in the VM):
//! `Zfs::set_properties` and `Zfs::inherit_property` agree with what `zfs
//! get` shows for every value the library encodes; receive overrides
//! (`-o`/`-x`) through a replication, on a filesystem and on a volume; and a
//! backup that a person mounts and reads still takes the next incremental.

use zfs_core::property::{PropertyList, SETTABLE};
use zfs_core::{DatasetName, DatasetType, ErrorKind, NvList};
use zfs_replicate::{execute, ExecuteOptions, Replication};
use zfs_replicate_tests::below as ds;
use zfs_replicate_tests::{contents, fill, mount, summary, unmount, zfs_cli, Pair};

const SIZE: u64 = 256 << 20;

fn pair() -> Pair {
    Pair::new("ptank", "ppipe", SIZE, SIZE)
}

/// `zfs get -Hp -o value,source PROP DATASET`.
fn cli_get(name: &str, dataset: &DatasetName) -> (String, String) {
    let out = zfs_cli(&["get", "-Hp", "-o", "value,source", name, dataset.as_str()]);
    let (value, source) = out.trim_end().split_once('\t').expect("value\tsource");
    (value.to_owned(), source.to_owned())
}

/// Every value to try for a settable property, and what `zfs get -p` shows
/// for it.
fn samples(name: &str) -> Vec<(&'static str, &'static str)> {
    match name {
        "canmount" => vec![("off", "off"), ("noauto", "noauto"), ("on", "on")],
        "compression" => vec![
            ("off", "off"),
            ("on", "on"),
            ("lzjb", "lzjb"),
            ("gzip", "gzip"),
            ("gzip-1", "gzip-1"),
            ("gzip-9", "gzip-9"),
            ("zle", "zle"),
            ("lz4", "lz4"),
            ("zstd", "zstd"),
            ("zstd-1", "zstd-1"),
            ("zstd-19", "zstd-19"),
        ],
        "copies" => vec![("2", "2"), ("3", "3"), ("1", "1")],
        "sync" => vec![
            ("always", "always"),
            ("disabled", "disabled"),
            ("standard", "standard"),
        ],
        "logbias" => vec![("throughput", "throughput"), ("latency", "latency")],
        "primarycache" | "secondarycache" => {
            vec![("none", "none"), ("metadata", "metadata"), ("all", "all")]
        }
        "snapdir" | "snapdev" => vec![("visible", "visible"), ("hidden", "hidden")],
        "volmode" => vec![
            ("dev", "dev"),
            ("none", "none"),
            ("geom", "full"),
            ("full", "full"),
            ("default", "default"),
        ],
        "quota" | "refquota" | "reservation" | "refreservation" => {
            vec![("64M", "67108864"), ("1.5M", "1572864"), ("none", "0")]
        }
        "recordsize" => vec![("64K", "65536"), ("1M", "1048576"), ("128K", "131072")],
        "filesystem_limit" | "snapshot_limit" => {
            vec![("10", "10"), ("none", "none")]
        }
        "mountpoint" => vec![
            ("/mnt/zr-props", "/mnt/zr-props"),
            ("legacy", "legacy"),
            ("none", "none"),
        ],
        "sharenfs" | "sharesmb" => vec![("off", "off")],
        // Boolean properties.
        _ => vec![("off", "off"), ("on", "on")],
    }
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn every_settable_value_reads_back_through_the_cli() {
    let p = pair();
    let fs = p.src("fs");
    p.create(&fs);
    let vol = p.src("vol");
    p.zfs.create_volume(&vol, 16 << 20, &NvList::new()).unwrap();
    let mut checked = 0;
    for prop in SETTABLE {
        for (dataset, on) in [(&fs, DatasetType::Filesystem), (&vol, DatasetType::Volume)] {
            if !prop.applies_to(on) {
                // Refused before the kernel, with nothing set.
                let list = PropertyList::new()
                    .set(prop.name, samples(prop.name)[0].0)
                    .unwrap();
                let before = cli_get(prop.name, dataset);
                let e = p.zfs.set_properties(dataset, list.nvlist()).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{prop:?}: {e}");
                assert_eq!(cli_get(prop.name, dataset), before);
                continue;
            }
            for (value, shown) in samples(prop.name) {
                let list = PropertyList::new().set(prop.name, value).unwrap();
                p.zfs
                    .set_properties(dataset, list.nvlist())
                    .unwrap_or_else(|e| panic!("{} {}={value}: {e}", dataset, prop.name));
                let (got, source) = cli_get(prop.name, dataset);
                // A limit of none: 2.3 and 2.4 print `none`, 2.1 the number.
                let none_limit = shown == "none" && got == u64::MAX.to_string();
                assert!(
                    got == shown || none_limit,
                    "{dataset} {}={value}: zfs get says {got}, not {shown}",
                    prop.name
                );
                // `zfs get` calls a quota or limit of none the default.
                if value != "none" {
                    assert_eq!(source, "local", "{dataset} {}={value}", prop.name);
                }
                checked += 1;
            }
            // Inheriting takes the local value away again, where it can.
            let inherited = p.zfs.inherit_property(dataset, prop.name, false);
            if prop.inheritable {
                inherited.unwrap_or_else(|e| panic!("inherit {}: {e}", prop.name));
                let (_, source) = cli_get(prop.name, dataset);
                assert_ne!(source, "local", "{dataset} {} inherited", prop.name);
            } else {
                let e = inherited.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{}: {e}", prop.name);
            }
        }
    }
    summary(&format!(
        "properties: {checked} property values set and read back through `zfs get`, on a filesystem and a volume"
    ));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn user_properties_and_kernel_refusals_are_typed() {
    let p = pair();
    let fs = p.src("user");
    p.create(&fs);
    fill(&fs, 1, 2, 1 << 20);
    let list = PropertyList::new()
        .set("backup:job", "offsite")
        .unwrap()
        .set("org.example:note", "a value with spaces")
        .unwrap();
    p.zfs.set_properties(&fs, list.nvlist()).unwrap();
    assert_eq!(
        cli_get("backup:job", &fs),
        ("offsite".to_owned(), "local".to_owned())
    );
    assert_eq!(cli_get("org.example:note", &fs).0, "a value with spaces");
    let child = ds(&fs, "child");
    p.create(&child);
    assert_eq!(cli_get("backup:job", &child).0, "offsite", "inherited");
    p.zfs.inherit_property(&fs, "backup:job", false).unwrap();
    assert_eq!(cli_get("backup:job", &fs).0, "-");
    // A user property never set: inheriting it is no error.
    p.zfs.inherit_property(&fs, "backup:never", false).unwrap();

    // Bad names and values: refused before the kernel.
    for (name, value) in [
        ("Backup:Job", "x"),
        ("backup", "x"),
        ("used", "1"),
        ("keyformat", "raw"),
    ] {
        assert!(PropertyList::new().set(name, value).is_err(), "{name}");
    }
    let raw = NvList::new().with("readonly", "on");
    let e = p.zfs.set_properties(&fs, &raw).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // The kernel refuses a quota below what is used: the error names it,
    // and the others are set (the kernel sets what it can).
    let list = PropertyList::new()
        .set("quota", "64K")
        .unwrap()
        .set("backup:after", "set")
        .unwrap();
    let e = p.zfs.set_properties(&fs, list.nvlist()).unwrap_err();
    match &e {
        zfs_core::Error::Batch { failures, .. } => {
            assert_eq!(failures.len(), 1, "{e}");
            assert_eq!(failures[0].name, "quota", "{e}");
            assert_eq!(failures[0].kind, ErrorKind::NoSpace, "{e}");
        }
        other => panic!("expected a batch error naming quota: {other}"),
    }
    assert_eq!(cli_get("quota", &fs).0, "0", "quota unchanged");
    assert_eq!(cli_get("backup:after", &fs).0, "set");
    // Missing dataset.
    let missing = p.src("missing");
    let e = p.zfs.set_properties(&missing, list.nvlist()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn receive_overrides_on_a_filesystem_and_a_volume() {
    let p = pair();
    let opts = ExecuteOptions::default();
    // A filesystem whose local properties travel (`properties(true)`),
    // with one of them excluded and one set on the target.
    let src = p.src("home");
    p.create(&src);
    let local = PropertyList::new()
        .set("compression", "lz4")
        .unwrap()
        .set("atime", "off")
        .unwrap()
        .set("backup:origin", "tank")
        .unwrap();
    p.zfs.set_properties(&src, local.nvlist()).unwrap();
    fill(&src, 1, 2, 100_000);
    p.snap(&src, "a");
    let dst = p.dst("home");
    let repl = Replication::new(src.clone(), dst.clone())
        .properties(true)
        .receive_exclude("compression")
        .unwrap()
        .receive_override("backup:origin", "laptop")
        .unwrap()
        .receive_override("recordsize", "64K")
        .unwrap();
    execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts).unwrap();
    assert_eq!(cli_get("atime", &dst), ("off".into(), "received".into()));
    assert_ne!(cli_get("compression", &dst).1, "received", "excluded");
    assert_eq!(
        cli_get("backup:origin", &dst),
        ("laptop".into(), "local".into())
    );
    assert_eq!(
        cli_get("recordsize", &dst),
        ("65536".into(), "local".into())
    );
    assert_eq!(cli_get("readonly", &dst), ("on".into(), "local".into()));
    assert_eq!(cli_get("canmount", &dst), ("noauto".into(), "local".into()));
    // An incremental leaves properties alone: a local change stays.
    zfs_replicate_tests::set(dst.as_str(), &[("backup:origin", "changed")]);
    p.snap(&src, "b");
    execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts).unwrap();
    assert_eq!(p.guids(&src), p.guids(&dst));
    assert_eq!(cli_get("backup:origin", &dst).0, "changed");

    // A volume: `mountpoint` excluded (a volume has none: ignored), the
    // defaults where a volume has them (readonly; no canmount).
    let vol = p.src("vol");
    p.zfs.create_volume(&vol, 8 << 20, &NvList::new()).unwrap();
    p.snap(&vol, "v1");
    let vol_dst = p.dst("vol");
    let repl = Replication::new(vol.clone(), vol_dst.clone())
        .receive_exclude("mountpoint")
        .unwrap();
    execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts).unwrap();
    assert_eq!(p.guids(&vol), p.guids(&vol_dst));
    assert_eq!(cli_get("readonly", &vol_dst), ("on".into(), "local".into()));
    assert_eq!(
        cli_get("canmount", &vol_dst).0,
        "-",
        "a volume has no canmount"
    );
    // A property a volume lacks, set without `recursive`: refused by the
    // plan, nothing created.
    let other = p.dst("vol2");
    let e = Replication::new(vol.clone(), other.clone())
        .receive_override("atime", "off")
        .unwrap()
        .plan(&p.zfs)
        .unwrap_err();
    assert_eq!(
        e.zfs_error().map(zfs_core::Error::kind),
        Some(ErrorKind::InvalidArgument),
        "{e}"
    );
    assert!(!p.zfs.exists(&other));
    // With `recursive`, it is skipped where it does not apply.
    let parent = p.src("tree");
    p.create(&parent);
    let tree_vol = ds(&parent, "vol");
    p.zfs
        .create_volume(&tree_vol, 8 << 20, &NvList::new())
        .unwrap();
    p.snap(&parent, "t1");
    p.snap(&tree_vol, "t1");
    let tree_dst = p.dst("tree");
    let repl = Replication::new(parent.clone(), tree_dst.clone())
        .recursive(true)
        .receive_override("atime", "off")
        .unwrap();
    execute(&p.zfs, &repl.plan(&p.zfs).unwrap(), &opts).unwrap();
    assert_eq!(cli_get("atime", &tree_dst), ("off".into(), "local".into()));
    assert_eq!(cli_get("atime", &ds(&tree_dst, "vol")).0, "-");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_backup_mounted_and_read_still_takes_the_next_incremental() {
    let p = pair();
    let src = p.src("docs");
    p.create(&src);
    fill(&src, 1, 4, 300_000);
    let dst = p.dst("docs");
    let repl = Replication::new(src.clone(), dst.clone()).prefix("browse");
    let opts = ExecuteOptions::default();
    repl.sync(&p.zfs, &opts, None).unwrap();

    // A person mounts the backup and reads every file.
    let dir = mount(dst.as_str());
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        read += std::fs::read(entry.unwrap().path()).unwrap().len();
    }
    assert!(read >= 4 * 300_000, "read {read} bytes");
    // Read-only: writing fails, and nothing was written by reading.
    assert!(std::fs::write(dir.join("new"), b"x").is_err());
    unmount(dst.as_str());
    assert_eq!(p.zfs.properties(&dst).unwrap().written, Some(0));

    // The source changes; the next sync needs no rollback.
    fill(&src, 2, 2, 200_000);
    let second = repl.sync(&p.zfs, &opts, None).unwrap();
    assert!(second.plan.steps[0].rollback.is_none());
    assert_eq!(p.guids(&src), p.guids(&dst));
    let newest = p.zfs.snapshots(&src).unwrap().pop().unwrap();
    let received = dst.snapshot(newest.name().short_name()).unwrap();
    assert_eq!(contents(newest.name()), contents(&received));
    summary(&format!(
        "properties: a backup mounted and read ({read} bytes), written=0, then synced incrementally without rollback"
    ));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_property_the_kernel_refuses_during_a_receive_is_reported() {
    let p = pair();
    let src = p.src("big");
    p.create(&src);
    fill(&src, 3, 2, 400_000);
    p.snap(&src, "s1");
    let dst = p.dst("big");
    // A refquota below what the stream brings: the kernel sets it after the
    // data arrived, and refuses it; the receive itself succeeds.
    let repl = Replication::new(src.clone(), dst.clone())
        .receive_override("refquota", "64K")
        .unwrap();
    let e = execute(
        &p.zfs,
        &repl.plan(&p.zfs).unwrap(),
        &ExecuteOptions::default(),
    )
    .unwrap_err();
    match &e {
        zfs_replicate::Error::PropertiesNotSet { snapshot, failures } => {
            assert_eq!(snapshot, &dst.snapshot("s1").unwrap(), "{e}");
            assert_eq!(failures.len(), 1, "{e}");
            assert_eq!(failures[0].name, "refquota", "{e}");
        }
        other => panic!("expected PropertiesNotSet, got {other}"),
    }
    assert!(e.to_string().contains("was received"), "{e}");
    // The data is there; the next plan is up to date.
    assert_eq!(p.guids(&src), p.guids(&dst));
    assert!(repl.plan(&p.zfs).unwrap().is_up_to_date());
}
