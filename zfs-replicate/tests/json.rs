//! The `serde` feature's JSON shape, on this host without ZFS: plans
//! computed against an endpoint held in memory, and reports built from
//! their public fields.
#![cfg(feature = "serde")]

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use serde_json::{json, Value};
use zfs_core::{
    Bookmark, BookmarkName, DatasetName, NvList, Properties, ReceiveOptions, ResumeToken,
    SendOptions, Snapshot, SnapshotName, SnapshotOrBookmark,
};
use zfs_replicate::endpoint::{Endpoint, Lease, Receipt};
use zfs_replicate::plan::{PendingResume, Rollback};
use zfs_replicate::prune::{PrunePreview, PruneReport};
use zfs_replicate::{
    Action, Base, Divergence, Error, Listing, Plan, Replication, Report, Result, SyncReport,
    Transfer,
};

/// A GUID above 2^53: JSON readers that use doubles would round it.
const BIG_GUID: u64 = 0xfedc_ba98_7654_3210;

/// One dataset: its snapshots (oldest first), bookmarks, and the bytes
/// written since its newest snapshot.
#[derive(Default, Clone)]
struct Ds {
    snaps: Vec<Snapshot>,
    marks: Vec<Bookmark>,
    written: u64,
    resume_token: Option<String>,
}

/// Filesystems in memory: enough to plan against (listings, properties,
/// estimates); everything that would change something fails.
#[derive(Default)]
struct Memory(BTreeMap<DatasetName, Ds>);

fn not_found<T>(what: &str) -> Result<T> {
    Err(Error::Zfs(zfs_core::Error::io(
        "memory",
        what,
        std::io::Error::from_raw_os_error(libc::ENOENT),
    )))
}

impl Memory {
    fn get(&self, d: &DatasetName) -> Result<&Ds> {
        self.0.get(d).map_or_else(|| not_found(d.as_str()), Ok)
    }
}

impl Endpoint for Memory {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn dataset(&self, d: &DatasetName) -> Result<()> {
        self.get(d).map(|_| ())
    }
    fn exists(&self, d: &DatasetName) -> Result<bool> {
        Ok(self.0.contains_key(d))
    }
    fn children(&self, d: &DatasetName) -> Result<Vec<DatasetName>> {
        self.get(d)?;
        Ok(self
            .0
            .keys()
            .filter(|c| c.parent().as_ref() == Some(d))
            .cloned()
            .collect())
    }
    fn descendants(&self, d: &DatasetName) -> Result<Vec<DatasetName>> {
        self.get(d)?;
        Ok(self
            .0
            .keys()
            .filter(|c| *c == d || c.as_str().starts_with(&format!("{d}/")))
            .cloned()
            .collect())
    }
    fn snapshots(&self, d: &DatasetName) -> Result<Vec<Snapshot>> {
        Ok(self.get(d)?.snaps.clone())
    }
    fn snapshots_created(&self, d: &DatasetName, txg: u64) -> Result<Vec<Snapshot>> {
        let snaps = &self.get(d)?.snaps;
        Ok(snaps
            .iter()
            .filter(|s| s.createtxg() >= txg)
            .cloned()
            .collect())
    }
    fn snapshot_info(&self, s: &SnapshotName) -> Result<Snapshot> {
        let ds = self.get(&s.dataset())?;
        ds.snaps
            .iter()
            .find(|x| x.name() == s)
            .cloned()
            .map_or_else(|| not_found(s.as_str()), Ok)
    }
    fn bookmarks(&self, d: &DatasetName) -> Result<Vec<Bookmark>> {
        Ok(self.get(d)?.marks.clone())
    }
    fn properties(&self, d: &DatasetName) -> Result<Properties> {
        let ds = self.get(d)?;
        let prop = |value: zfs_core::NvValue| {
            let mut p = NvList::new();
            p.insert("value", value).insert("source", d.as_str());
            p
        };
        let mut raw = NvList::new();
        // DMU_OST_ZFS: a filesystem.
        raw.insert("type", prop(2u64.into()));
        raw.insert("written", prop(ds.written.into()));
        if let Some(t) = &ds.resume_token {
            raw.insert("receive_resume_token", prop(t.as_str().into()));
        }
        Ok(Properties::from_nvlist(d.as_str(), raw)?)
    }
    fn holds(&self, _: &SnapshotName) -> Result<BTreeMap<String, u64>> {
        Ok(BTreeMap::new())
    }
    /// 1 KiB per snapshot a stream carries, 10 for a full one.
    fn send_space(&self, s: &SnapshotName, opts: &SendOptions) -> Result<u64> {
        self.snapshot_info(s)?;
        Ok(if opts.base().is_some() { 1024 } else { 10240 })
    }
    fn resolve_resume_token(&self, t: &ResumeToken) -> Result<(SnapshotName, SendOptions)> {
        not_found(&t.to_name)
    }
    fn send(&self, s: &SnapshotName, _: &SendOptions, _: OwnedFd) -> Result<()> {
        not_found(s.as_str())
    }
    fn send_resume(&self, t: &ResumeToken, _: OwnedFd) -> Result<()> {
        not_found(&t.to_name)
    }
    fn receive(&self, d: &DatasetName, _: OwnedFd, _: &ReceiveOptions) -> Result<Receipt> {
        not_found(d.as_str())
    }
    fn abort_resumable_receive(&self, d: &DatasetName) -> Result<bool> {
        not_found(d.as_str())
    }
    fn sync_pool(&self, d: &DatasetName) -> Result<()> {
        not_found(d.as_str())
    }
    fn force_inherit_key(&self, d: &DatasetName) -> Result<()> {
        not_found(d.as_str())
    }
    fn create_placeholder(&self, d: &DatasetName) -> Result<()> {
        not_found(d.as_str())
    }
    fn snapshot(&self, s: &[SnapshotName]) -> Result<()> {
        not_found(s[0].as_str())
    }
    fn bookmark(&self, b: &[(BookmarkName, SnapshotOrBookmark)]) -> Result<()> {
        not_found(b[0].0.as_str())
    }
    fn destroy_bookmarks(&self, b: &[BookmarkName]) -> Result<()> {
        not_found(b[0].as_str())
    }
    fn destroy_snapshots(&self, s: &[SnapshotName]) -> Result<()> {
        not_found(s[0].as_str())
    }
    fn rollback_to(&self, s: &SnapshotName) -> Result<()> {
        not_found(s.as_str())
    }
    fn destroy(&self, d: &DatasetName) -> Result<()> {
        not_found(d.as_str())
    }
    fn hold_temporary(&self, _: &[(SnapshotName, String)]) -> Result<Lease> {
        Ok(Lease::none())
    }
    fn lock(&self, _: &DatasetName) -> Result<Lease> {
        Ok(Lease::none())
    }
}

fn name(s: &str) -> DatasetName {
    s.parse().unwrap()
}

fn snap(s: &str, guid: u64, txg: u64) -> Snapshot {
    Snapshot::new(s.parse().unwrap(), guid, txg)
}

/// `tank/home` with @a and @b (whose GUID is above 2^53), and the target
/// pool `pipe` with `pipe/home` holding `target` (absent when None).
fn sides(target: Option<Ds>) -> (Memory, Memory) {
    let mut tank = Memory::default();
    tank.0.insert(name("tank"), Ds::default());
    let home = Ds {
        snaps: vec![
            snap("tank/home@a", 0x1111, 10),
            snap("tank/home@b", BIG_GUID, 20),
        ],
        ..Ds::default()
    };
    tank.0.insert(name("tank/home"), home);
    let mut pipe = Memory::default();
    pipe.0.insert(name("pipe"), Ds::default());
    if let Some(t) = target {
        pipe.0.insert(name("pipe/home"), t);
    }
    (tank, pipe)
}

fn replication() -> Replication {
    Replication::new(name("tank/home"), name("pipe/home"))
}

fn plan(repl: &Replication, (tank, pipe): &(Memory, Memory)) -> Plan {
    repl.plan_with(tank, pipe).unwrap()
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    // Through the text, as a reader gets it.
    let text = serde_json::to_string_pretty(value).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn a_full_plan_in_json() {
    let repl = replication()
        .receive_override("backup:origin", "laptop")
        .unwrap()
        .receive_exclude("atime")
        .unwrap();
    let p = plan(&repl, &sides(None));
    let v = to_json(&p);
    eprintln!("{v:#}");
    assert_eq!(
        keys(&v),
        [
            "destroy_removed",
            "estimated_bytes",
            "raw",
            "recursive",
            "removed_on_source",
            "rollback",
            "source",
            "steps",
            "target",
            "up_to_date"
        ]
    );
    assert_eq!(v["source"], "tank/home");
    assert_eq!(v["target"], "pipe/home");
    assert_eq!(v["recursive"], false);
    assert_eq!(v["raw"], false);
    assert_eq!(v["up_to_date"], false);
    assert_eq!(v["removed_on_source"], json!([]));
    assert_eq!(v["estimated_bytes"], 10240 + 1024);
    assert_eq!(v["estimated_bytes"], p.estimated_bytes());

    let step = &v["steps"][0];
    assert_eq!(v["steps"].as_array().unwrap().len(), 1);
    // These at least: a field added to Step serializes too.
    for key in [
        "action",
        "divergence",
        "estimated_bytes",
        "flags",
        "inherit_key",
        "listing",
        "receive_overrides",
        "receive_props",
        "resume",
        "rollback",
        "source",
        "target",
    ] {
        assert!(keys(step).contains(&key), "{key} in {step}");
    }
    assert_eq!(step["source"], "tank/home");
    assert_eq!(step["target"], "pipe/home");
    assert_eq!(step["divergence"], Value::Null);
    assert_eq!(step["rollback"], Value::Null);
    assert_eq!(step["resume"], Value::Null);
    assert_eq!(step["listing"], "full");
    assert_eq!(step["inherit_key"], serde_json::Value::Null);
    assert_eq!(
        step["flags"],
        json!(["embed_data", "large_block", "compress"])
    );
    assert_eq!(step["receive_props"], json!({}));
    // The defaults (readonly=on, canmount=noauto) as the kernel takes
    // them, the embedder's own, and the exclusion.
    assert_eq!(
        step["receive_overrides"],
        json!({
            "set": {"readonly": 1, "canmount": 2, "backup:origin": "laptop"},
            "exclude": ["atime"]
        })
    );
    assert_eq!(
        step["action"],
        json!({
            "kind": "full",
            "snapshot": {"name": "tank/home@a", "guid": 0x1111, "createtxg": 10},
            "then": [{"name": "tank/home@b", "guid": BIG_GUID, "createtxg": 20}]
        })
    );
    // Exactly, above 2^53.
    assert_eq!(step["action"]["then"][0]["guid"].as_u64(), Some(BIG_GUID));
}

#[test]
fn incremental_up_to_date_and_diverged_plans_in_json() {
    let target = |snaps: Vec<Snapshot>| {
        Some(Ds {
            snaps,
            ..Ds::default()
        })
    };
    // From a snapshot.
    let v = to_json(&plan(
        &replication(),
        &sides(target(vec![snap("pipe/home@a", 0x1111, 5)])),
    ));
    assert_eq!(
        v["steps"][0]["action"],
        json!({
            "kind": "incremental",
            "base": {"kind": "snapshot", "name": "tank/home@a", "guid": 0x1111, "createtxg": 10},
            "target_base": {"name": "pipe/home@a", "guid": 0x1111, "createtxg": 5},
            "snapshots": [{"name": "tank/home@b", "guid": BIG_GUID, "createtxg": 20}]
        })
    );
    assert_eq!(v["estimated_bytes"], 1024);
    assert_eq!(v["up_to_date"], false);

    // From a bookmark, @a being gone from the source.
    let mut sides_ = sides(target(vec![snap("pipe/home@a", 0x1111, 5)]));
    let home = sides_.0 .0.get_mut(&name("tank/home")).unwrap();
    home.snaps.remove(0);
    home.marks = vec![Bookmark::new("tank/home#a".parse().unwrap(), 0x1111, 10)];
    let v = to_json(&plan(&replication(), &sides_));
    assert_eq!(
        v["steps"][0]["action"]["base"],
        json!({"kind": "bookmark", "name": "tank/home#a", "guid": 0x1111, "createtxg": 10})
    );

    // Up to date, with a stale resume token that does not decode.
    let v = to_json(&plan(
        &replication(),
        &sides(Some(Ds {
            snaps: vec![
                snap("pipe/home@a", 0x1111, 5),
                snap("pipe/home@b", BIG_GUID, 6),
            ],
            resume_token: Some("1-not-a-token".into()),
            ..Ds::default()
        })),
    ));
    assert_eq!(v["steps"][0]["action"], json!({"kind": "up_to_date"}));
    assert_eq!(
        v["steps"][0]["resume"],
        json!({"token": null, "raw": "1-not-a-token", "matches": false})
    );
    assert_eq!(v["estimated_bytes"], 0);
    assert_eq!(v["up_to_date"], true);

    // Diverged: a newer snapshot on the target; with rollback, resolved.
    let diverged = sides(target(vec![
        snap("pipe/home@a", 0x1111, 5),
        snap("pipe/home@mine", 0x2222, 6),
    ]));
    let v = to_json(&plan(&replication(), &diverged));
    assert_eq!(
        v["steps"][0]["divergence"],
        json!({
            "kind": "target_has_newer_snapshots",
            "base": "pipe/home@a",
            "newer": ["pipe/home@mine"]
        })
    );
    assert_eq!(v["up_to_date"], false);
    let v = to_json(&plan(&replication().rollback(true), &diverged));
    assert_eq!(v["rollback"], true);
    assert_eq!(v["steps"][0]["divergence"], Value::Null);
    assert_eq!(
        v["steps"][0]["rollback"],
        json!({"to": "pipe/home@a", "destroy": ["pipe/home@mine"]})
    );
    assert_eq!(v["steps"][0]["action"]["kind"], "incremental");

    // Modified, and no common snapshot.
    let v = to_json(&plan(
        &replication(),
        &sides(Some(Ds {
            snaps: vec![snap("pipe/home@b", BIG_GUID, 6)],
            written: 4096,
            ..Ds::default()
        })),
    ));
    assert_eq!(
        v["steps"][0]["divergence"],
        json!({"kind": "target_modified", "base": "pipe/home@b", "written": 4096})
    );
    let v = to_json(&plan(
        &replication(),
        &sides(target(vec![snap("pipe/home@other", 0x3333, 5)])),
    ));
    assert_eq!(
        v["steps"][0]["divergence"],
        json!({"kind": "no_common_snapshot", "target_snapshots": 1})
    );

    // No source snapshot.
    let mut empty = sides(None);
    empty
        .0
         .0
        .get_mut(&name("tank/home"))
        .unwrap()
        .snaps
        .clear();
    let v = to_json(&plan(&replication(), &empty));
    assert_eq!(
        v["steps"][0]["action"],
        json!({"kind": "no_source_snapshot"})
    );
}

#[test]
fn a_recursive_plan_lists_removed_datasets() {
    let (mut tank, mut pipe) = sides(Some(Ds {
        snaps: vec![snap("pipe/home@b", BIG_GUID, 6)],
        ..Ds::default()
    }));
    tank.0.insert(
        name("tank/home/docs"),
        Ds {
            snaps: vec![snap("tank/home/docs@b", 0x4444, 20)],
            ..Ds::default()
        },
    );
    pipe.0.insert(name("pipe/home/gone"), Ds::default());
    let repl = replication().recursive(true).destroy_removed(true);
    let v = to_json(&plan(&repl, &(tank, pipe)));
    assert_eq!(v["recursive"], true);
    assert_eq!(v["destroy_removed"], true);
    assert_eq!(v["removed_on_source"], json!(["pipe/home/gone"]));
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["action"]["kind"], "up_to_date");
    assert_eq!(steps[1]["target"], "pipe/home/docs");
    assert_eq!(steps[1]["action"]["kind"], "full");
}

#[test]
fn a_sync_report_in_json() {
    let p = plan(&replication(), &sides(None));
    let transfer = |s: &str, bytes| Transfer {
        snapshot: s.parse().unwrap(),
        bytes,
    };
    let report = Report {
        transfers: vec![
            (
                name("pipe/home"),
                vec![transfer("tank/home@a", 9000), transfer("tank/home@b", 800)],
            ),
            (
                name("pipe/home/docs"),
                vec![transfer("tank/home/docs@b", 70)],
            ),
        ],
        destroyed: vec![name("pipe/home/gone")],
        bookmarks: vec!["tank/home#backup_0123abcd_fedcba9876543210"
            .parse()
            .unwrap()],
    };
    let pruned = PruneReport {
        destroyed: vec!["pipe/home@backup_old".parse().unwrap()],
        kept_held: Vec::new(),
        kept_base: vec!["pipe/home@b".parse().unwrap()],
    };
    let sync = SyncReport {
        snapshot: "backup_20261127T120000Z".into(),
        plan: p.clone(),
        report,
        pruned_source: PruneReport::default(),
        pruned_target: pruned,
    };
    let v = to_json(&sync);
    eprintln!("{v:#}");
    assert_eq!(
        keys(&v),
        [
            "plan",
            "pruned_source",
            "pruned_target",
            "report",
            "snapshot"
        ]
    );
    assert_eq!(v["snapshot"], "backup_20261127T120000Z");
    assert_eq!(v["plan"], to_json(&p));
    assert_eq!(
        v["report"],
        json!({
            "transfers": [
                {"target": "pipe/home", "snapshot": "tank/home@a", "bytes": 9000},
                {"target": "pipe/home", "snapshot": "tank/home@b", "bytes": 800},
                {"target": "pipe/home/docs", "snapshot": "tank/home/docs@b", "bytes": 70}
            ],
            "destroyed": ["pipe/home/gone"],
            "bookmarks": ["tank/home#backup_0123abcd_fedcba9876543210"]
        })
    );
    assert_eq!(
        v["pruned_source"],
        json!({"destroyed": [], "kept_held": [], "kept_base": []})
    );
    assert_eq!(
        v["pruned_target"],
        json!({"destroyed": ["pipe/home@backup_old"], "kept_held": [], "kept_base": ["pipe/home@b"]})
    );
}

#[test]
fn a_decoded_resume_token_by_its_fields() {
    let mut raw = NvList::new();
    raw.insert("toguid", BIG_GUID)
        .insert("toname", "tank/home@b")
        .insert("fromguid", 0x1111u64)
        .insert("object", 7u64)
        .insert("offset", 4096u64)
        .insert("bytes", 123_456u64)
        .insert_flag("largeblockok")
        .insert_flag("compressok");
    // zfs-core's serde: a token crosses as its packed nvlist.
    let token: ResumeToken = serde_json::from_value(json!(raw.pack().unwrap())).unwrap();
    let pending = PendingResume {
        token: Some(token),
        raw: "1-abc-def-789c".into(),
        matches: true,
    };
    assert_eq!(
        to_json(&pending),
        json!({
            "token": {
                "to_guid": BIG_GUID,
                "to_name": "tank/home@b",
                "from_guid": 0x1111,
                "object": 7,
                "offset": 4096,
                "bytes": 123_456,
                "flags": ["large_block", "compress"],
                "redacted": false
            },
            "raw": "1-abc-def-789c",
            "matches": true
        })
    );
}

/// What derives Deserialize too comes back the same from its JSON.
#[test]
fn data_types_round_trip() {
    fn round_trip<T>(value: T)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), value, "{text}");
    }
    let a = snap("tank/home@a", 0x1111, 10);
    let b = snap("tank/home@b", BIG_GUID, 20);
    round_trip(Action::Full {
        snapshot: a.clone(),
        then: vec![b.clone()],
    });
    round_trip(Action::Incremental {
        base: Base::Bookmark(Bookmark::new("tank/home#a".parse().unwrap(), 0x1111, 10)),
        target_base: snap("pipe/home@a", 0x1111, 5),
        snapshots: vec![b.clone()],
    });
    round_trip(Action::Resume {
        snapshot: b,
        then: Vec::new(),
    });
    round_trip(Action::UpToDate);
    round_trip(Action::NoSourceSnapshot);
    round_trip(Base::Snapshot(a));
    round_trip(Divergence::TargetHasNewerSnapshots {
        base: "pipe/home@a".parse().unwrap(),
        newer: vec!["pipe/home@mine".parse().unwrap()],
    });
    round_trip(Divergence::EncryptionMismatch {
        reason: "why".into(),
    });
    round_trip(Divergence::KeyNotLoaded {
        encryption_root: "pipe".into(),
    });
    round_trip(Rollback {
        to: "pipe/home@a".parse().unwrap(),
        destroy: vec!["pipe/home@mine".parse().unwrap()],
    });
    round_trip(Listing::Cursor);
    round_trip(Transfer {
        snapshot: "tank/home@a".parse().unwrap(),
        bytes: 1,
    });
    round_trip(PrunePreview {
        report: PruneReport {
            destroyed: vec!["tank/home@old".parse().unwrap()],
            ..PruneReport::default()
        },
        bytes_freed: 42,
    });
    // Names are checked on the way in.
    let bad = json!({"kind": "target_modified", "base": "no snapshot", "written": 1});
    assert!(serde_json::from_value::<Divergence>(bad).is_err());
}
