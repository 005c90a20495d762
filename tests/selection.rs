//! Selection against real OpenZFS (run by `cargo xtask test` in the VM):
//! datasets by name and by an inherited user property, with missing
//! parents created as placeholders; a dataset excluded then included;
//! snapshots hopped over by a filter; a first send of the newest snapshot
//! only; and the `backup` example's selection options.

use std::process::{Command, Output};

use zfs_core::DatasetName;
use zfs_replicate::{
    execute, Action, DatasetFilter, Divergence, ExecuteOptions, Initial, Replication,
};
use zfs_replicate_tests::{contents, fill, set, summary, zfs_cli, Pair};

fn pair() -> Pair {
    Pair::new("seltank", "selpipe", 256 << 20, 256 << 20)
}

fn sources(repl: &Replication, p: &Pair) -> Vec<String> {
    repl.plan(&p.zfs)
        .unwrap()
        .steps
        .iter()
        .map(|s| s.source.relative_to(repl.source()).unwrap_or("").to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn get(fs: &DatasetName, prop: &str) -> String {
    zfs_cli(&["get", "-H", "-o", "value", prop, fs.as_str()])
        .trim_end()
        .to_owned()
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn datasets_are_selected_by_name_and_by_inherited_property() {
    let p = pair();
    let root = p.src("root");
    let rels = ["", "a", "a/cache", "b", "b/deep", "c"];
    for (i, rel) in rels.iter().enumerate() {
        let d = p.src(format!("root/{rel}").trim_end_matches('/'));
        p.create(&d);
        fill(&d, i as u64 + 1, 1, 50_000);
    }
    set(p.src("root/a").as_str(), &[("backup:job", "offsite")]);
    set(p.src("root/b/deep").as_str(), &[("backup:job", "offsite")]);
    set(p.src("root/c").as_str(), &[("backup:job", "at-home")]);
    let snap_all = |name: &str| {
        for rel in rels {
            p.snap(&p.src(format!("root/{rel}").trim_end_matches('/')), name);
        }
    };
    snap_all("s1");
    let dst = p.dst("root");
    let filter = DatasetFilter::new()
        .exclude("a/cache")
        .unwrap()
        .only_property("backup:job", "offsite")
        .unwrap();
    let repl = Replication::new(root.clone(), dst.clone())
        .recursive(true)
        .filter(filter.clone());
    // a/cache inherits the property but is excluded by name; b/deep has it
    // though its parents do not.
    assert_eq!(sources(&repl, &p), ["a", "b/deep"]);
    // Their targets' parents do not exist: said before anything changes.
    let plan = repl.plan(&p.zfs).unwrap();
    let mut blocked = plan.divergences();
    blocked.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        blocked,
        [
            (
                p.dst("root/a"),
                Divergence::MissingParent {
                    parent: dst.clone()
                }
            ),
            (
                p.dst("root/b/deep"),
                Divergence::MissingParent {
                    parent: p.dst("root/b")
                }
            )
        ]
    );
    let e = execute(&p.zfs, &plan, &ExecuteOptions::default()).unwrap_err();
    assert_eq!(e.kind(), zfs_replicate::ErrorKind::Diverged, "{e}");
    assert!(!p.zfs.exists(&dst));

    let repl = repl.create_parents(true);
    let plan = repl.plan(&p.zfs).unwrap();
    let deep = plan
        .steps
        .iter()
        .find(|s| s.target == p.dst("root/b/deep"))
        .unwrap();
    assert_eq!(deep.create_parents, [dst.clone(), p.dst("root/b")]);
    p.replicate(&repl);
    for (rel, there) in [
        ("a", true),
        ("a/cache", false),
        ("b/deep", true),
        ("c", false),
    ] {
        assert_eq!(p.zfs.exists(&p.dst(&format!("root/{rel}"))), there, "{rel}");
    }
    // The placeholders hold nothing and do not mount.
    for d in [&dst, &p.dst("root/b")] {
        assert!(p.guids(d).is_empty(), "{d}");
        assert_eq!(get(d, "canmount"), "off", "{d}");
    }
    assert_eq!(
        contents(&p.src("root/b/deep").snapshot("s1").unwrap()),
        contents(&p.dst("root/b/deep").snapshot("s1").unwrap())
    );

    // c becomes included: its first transfer is full, the others go on.
    set(p.src("root/c").as_str(), &[("backup:job", "offsite")]);
    snap_all("s2");
    let plan = repl.plan(&p.zfs).unwrap();
    let mut actions: Vec<(&str, bool)> = plan
        .steps
        .iter()
        .map(|s| {
            (
                s.source.relative_to(&root).unwrap_or(""),
                matches!(s.action, Action::Full { .. }),
            )
        })
        .collect();
    actions.sort();
    assert_eq!(actions, [("a", false), ("b/deep", false), ("c", true)]);
    p.replicate(&repl);
    for rel in ["a", "b/deep", "c"] {
        let (s, d) = (p.src(&format!("root/{rel}")), p.dst(&format!("root/{rel}")));
        assert_eq!(p.guids(&s), p.guids(&d), "{rel}");
    }

    // Excluded again, it is not "removed on the source": even with
    // destroy_removed, its backup stays.
    let repl = Replication::new(root.clone(), dst.clone())
        .recursive(true)
        .destroy_removed(true)
        .filter(filter.exclude("c").unwrap());
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(plan.removed_on_source.is_empty(), "{plan}");
    p.replicate(&repl);
    assert!(p.zfs.exists(&p.dst("root/c")));

    // The root selected now: its target is the placeholder made for its
    // children, which a full stream cannot go into; said, nothing sent.
    set(root.as_str(), &[("backup:job", "offsite")]);
    let plan = repl.plan(&p.zfs).unwrap();
    let root_step = plan.steps.iter().find(|s| s.target == dst).unwrap();
    assert_eq!(root_step.divergence, Some(Divergence::TargetIsPlaceholder));
    summary("selection: by name and by inherited property; parents created as placeholders; excluded then included");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn snapshots_are_hopped_over_and_a_first_send_can_take_only_the_newest() {
    let p = pair();
    let src = p.src("data");
    p.create(&src);
    let names = ["keep1", "hourly2", "keep3", "hourly4", "keep5"];
    for (i, name) in names.iter().enumerate() {
        fill(&src, i as u64 + 1, 1, 60_000);
        p.snap(&src, name);
    }
    let no_hourly = |s: &zfs_core::Snapshot| !s.name().short_name().starts_with("hourly");

    // Only the newest, in full.
    let newest = p.dst("newest");
    let repl = Replication::new(src.clone(), newest.clone()).initial(Initial::MostRecent);
    p.replicate(&repl);
    assert_eq!(p.names(&newest), ["keep5"]);
    assert_eq!(
        contents(&src.snapshot("keep5").unwrap()),
        contents(&newest.snapshot("keep5").unwrap())
    );

    // Every other one: each an incremental from the previous one sent.
    let hop = p.dst("hop");
    let repl = Replication::new(src.clone(), hop.clone()).snapshot_filter(no_hourly);
    let plan = repl.plan(&p.zfs).unwrap();
    match &plan.steps[0].action {
        Action::Full { snapshot, then } => {
            assert_eq!(snapshot.name().short_name(), "keep1");
            let rest: Vec<&str> = then.iter().map(|s| s.name().short_name()).collect();
            assert_eq!(rest, ["keep3", "keep5"]);
        }
        other => panic!("{other:?}"),
    }
    p.replicate(&repl);
    assert_eq!(p.names(&hop), ["keep1", "keep3", "keep5"]);
    let guid = |fs: &DatasetName, n: &str| {
        p.zfs
            .snapshot_info(&fs.snapshot(n).unwrap())
            .unwrap()
            .guid()
    };
    for n in ["keep1", "keep3", "keep5"] {
        assert_eq!(guid(&src, n), guid(&hop, n), "{n}");
    }
    assert_eq!(
        contents(&src.snapshot("keep5").unwrap()),
        contents(&hop.snapshot("keep5").unwrap())
    );

    // Later: hourly6 hopped over, keep7 from keep5.
    fill(&src, 6, 1, 60_000);
    p.snap(&src, "hourly6");
    fill(&src, 7, 1, 60_000);
    p.snap(&src, "keep7");
    p.replicate(&repl);
    assert_eq!(p.names(&hop), ["keep1", "keep3", "keep5", "keep7"]);
    // The newest-only target goes on incrementally, with every snapshot.
    let repl = Replication::new(src.clone(), newest.clone()).initial(Initial::MostRecent);
    p.replicate(&repl);
    assert_eq!(p.names(&newest), ["keep5", "hourly6", "keep7"]);
    // A filter that would leave out the snapshot sync takes is refused
    // before anything changes.
    let before = p.names(&src);
    let e = Replication::new(src.clone(), hop.clone())
        .snapshot_filter(no_hourly)
        .prefix("hourly")
        .sync(&p.zfs, &zfs_replicate::ExecuteOptions::new(), None)
        .unwrap_err();
    assert!(
        matches!(e, zfs_replicate::Error::InvalidFilter { .. }),
        "{e}"
    );
    assert_eq!(p.names(&src), before);
    // A filter that admits nothing new leaves the target up to date.
    let none = Replication::new(src.clone(), hop.clone()).snapshot_filter(|_| false);
    let plan = none.plan(&p.zfs).unwrap();
    assert_eq!(plan.steps[0].action, Action::UpToDate);
    summary("selection: a snapshot filter hops over snapshots; Initial::MostRecent sends the newest only");
}

fn backup(args: &[&str]) -> Output {
    Command::new("backup")
        .args(args)
        .output()
        .expect("the backup example is on PATH in the guest")
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn backup_cli_selects_datasets_and_the_initial_snapshot() {
    let p = pair();
    let root = p.src("home");
    for rel in ["", "/alice", "/alice/cache", "/bob"] {
        let d: DatasetName = format!("{root}{rel}").parse().unwrap();
        p.create(&d);
        fill(&d, 1, 1, 20_000);
        p.snap(&d, "old");
    }
    set(p.src("home/bob").as_str(), &[("backup:skip", "yes")]);
    let dst = p.dst("backups/home");
    let (s, d) = (root.as_str(), dst.as_str());
    let code = |o: &Output| o.status.code().unwrap_or(-1);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // Bad selections are usage errors.
    for bad in [
        vec!["--exclude", "/abs"],
        vec!["--only-property", "nocolon=x"],
        vec!["--only-property", "novalue"],
        vec!["--initial", "some"],
        vec!["--retain", "1h:"],
        vec!["--keep", "0"],
    ] {
        let mut args = vec!["plan", s, d, "-r"];
        args.extend(bad.iter().copied());
        let o = backup(&args);
        assert_eq!(code(&o), 2, "{bad:?}: {}", stderr(&o));
    }
    // The missing parent blocks the plan (exit 3), and is created on request.
    let o = backup(&["plan", s, d, "-r", "--exclude", "*/cache"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let o = backup(&[
        "sync",
        s,
        d,
        "-r",
        "--exclude",
        "*/cache",
        "--initial",
        "most-recent",
        "--create-parents",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(p.zfs.exists(&p.dst("backups/home/alice")));
    assert!(!p.zfs.exists(&p.dst("backups/home/alice/cache")));
    // plan takes sync's command line, retention included, and prunes
    // nothing.
    let before = p.names(&p.dst("backups/home/alice"));
    let o = backup(&[
        "plan",
        s,
        d,
        "-r",
        "--exclude",
        "*/cache",
        "--retain",
        "1h:24,1d:30",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(p.names(&p.dst("backups/home/alice")), before);
    // Only the newest snapshot, the one sync took: "old" stayed behind.
    let names = p.names(&p.dst("backups/home/alice"));
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("backup_"), "{names:?}");
    // By property, inherited from the root: bob says otherwise.
    set(root.as_str(), &[("backup:skip", "no")]);
    let only = p.dst("only");
    let o = backup(&[
        "sync",
        s,
        only.as_str(),
        "-r",
        "--only-property",
        "backup:skip=no",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(p.zfs.exists(&p.dst("only/alice/cache")));
    assert!(!p.zfs.exists(&p.dst("only/bob")));
    // A filter that selects nothing is not a successful backup of nothing.
    let o = backup(&[
        "sync",
        s,
        only.as_str(),
        "-r",
        "--only-property",
        "backup:skip=maybe",
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("selects none"), "{}", stderr(&o));
    summary(
        "selection: backup --exclude, --only-property, --initial most-recent, --create-parents",
    );
}
