//! What a server lets its clients do: dataset roots, each with an access.
//!
//! Every operation is checked on the dataset it touches (a snapshot's or
//! bookmark's dataset) in [`Policy::check`], before anything runs. A
//! dataset is inside a root iff it is the root or below it on a `/`
//! boundary: `pipe/backups/laptop2` is not inside `pipe/backups/laptop`.

use std::fmt;

use serde::{Deserialize, Serialize};
use zfs_core::{DatasetName, NameError};

use crate::endpoint::Op;

/// The operations granted on a root. On the wire (WELCOME) as the variant
/// index: append new variants only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Be a source: list, send, hold, snapshot, bookmark, and destroy
    /// bookmarks (stale incremental bases, not data).
    Send,
    /// Be a target, append-only: list, receive, hold. No destroy,
    /// rollback or properties, so a client cannot remove a backup.
    Receive,
    /// Everything, destructive operations included.
    All,
}

impl Access {
    /// Every access, in declaration order.
    pub const ALL: [Access; 3] = [Access::Send, Access::Receive, Access::All];

    /// The operations it grants.
    pub fn ops(self) -> &'static [Op] {
        match self {
            Access::Send => &[
                Op::List,
                Op::Send,
                Op::Hold,
                Op::Snapshot,
                Op::Bookmark,
                Op::DestroyBookmark,
            ],
            Access::Receive => &[Op::List, Op::Receive, Op::Hold],
            Access::All => &Op::ALL,
        }
    }

    /// Whether it grants `op`.
    pub fn grants(self, op: Op) -> bool {
        self.ops().contains(&op)
    }

    /// Its name in `--allow` and messages: "send", "receive", "all".
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Send => "send",
            Access::Receive => "receive",
            Access::All => "all",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One root and what is granted on it and below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub root: DatasetName,
    pub access: Access,
}

impl Grant {
    /// Whether `dataset` is the root or below it.
    pub fn covers(&self, dataset: &DatasetName) -> bool {
        dataset == &self.root || dataset.is_descendant_of(&self.root)
    }
}

/// The grants of a server. The default (no `--allow`) allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    grants: Vec<Grant>,
}

impl Policy {
    /// A policy that allows nothing.
    pub fn new() -> Self {
        Policy::default()
    }

    /// Adds a grant. Grants add up: an operation is allowed if any grant
    /// covering the dataset grants it.
    #[must_use]
    pub fn allow(mut self, root: DatasetName, access: Access) -> Self {
        self.grants.push(Grant { root, access });
        self
    }

    /// The grants, in the order they were added.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Whether `op` on `dataset` is allowed.
    pub fn allows(&self, op: Op, dataset: &DatasetName) -> bool {
        self.check(op, dataset).is_ok()
    }

    /// Allows `op` on `dataset`, or says why not. Reduce snapshot and
    /// bookmark names to their dataset before asking.
    pub fn check(&self, op: Op, dataset: &DatasetName) -> Result<(), Refused> {
        let mut nearest: Option<&Grant> = None;
        for g in self.grants.iter().filter(|g| g.covers(dataset)) {
            if g.access.grants(op) {
                return Ok(());
            }
            if nearest.is_none_or(|n| g.root.depth() > n.root.depth()) {
                nearest = Some(g);
            }
        }
        Err(Refused {
            dataset: dataset.clone(),
            op,
            reason: match nearest {
                None => RefusedReason::OutsideRoots,
                Some(g) => RefusedReason::NotGranted(g.access),
            },
        })
    }
}

/// An operation the policy does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {preposition} {dataset}: {reason}", preposition = preposition(*op))]
pub struct Refused {
    pub dataset: DatasetName,
    pub op: Op,
    pub reason: RefusedReason,
}

fn preposition(op: Op) -> &'static str {
    match op {
        Op::Receive => "into",
        Op::Send => "from",
        _ => "in",
    }
}

/// Why [`Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedReason {
    /// No grant covers the dataset.
    OutsideRoots,
    /// The dataset is covered, but no covering grant holds the operation;
    /// the access of the nearest covering root.
    NotGranted(Access),
}

impl fmt::Display for RefusedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusedReason::OutsideRoots => f.write_str("not within an allowed root"),
            RefusedReason::NotGranted(a) => {
                write!(f, "not allowed by the policy ({a}-only)")
            }
        }
    }
}

/// A `--allow` argument that is not `DATASET[:send|:receive|:all]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--allow {arg:?}: {source}")]
pub struct PolicyParseError {
    pub arg: String,
    #[source]
    pub source: NameError,
}

/// Parses `--allow DATASET[:send|:receive|:all]`. Dataset names may
/// contain `:`, so only a final `:send`, `:receive` or `:all` is an access
/// (`tank/a:b` is the dataset `tank/a:b` with all access, `tank/a:b:send`
/// the same dataset with send access); none means all.
pub fn parse_allow(arg: &str) -> Result<(DatasetName, Access), PolicyParseError> {
    let (name, access) = arg
        .rsplit_once(':')
        .and_then(|(name, suffix)| {
            Access::ALL
                .into_iter()
                .find(|a| a.as_str() == suffix)
                .map(|a| (name, a))
        })
        .unwrap_or((arg, Access::All));
    let dataset = name.parse().map_err(|source| PolicyParseError {
        arg: arg.to_owned(),
        source,
    })?;
    Ok((dataset, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(s: &str) -> DatasetName {
        s.parse().unwrap()
    }

    #[test]
    fn access_ops_are_the_documented_sets() {
        use Op::*;
        let table: [(Op, bool, bool); 11] = [
            // op, send, receive (all: every op)
            (List, true, true),
            (Send, true, false),
            (Receive, false, true),
            (Hold, true, true),
            (Snapshot, true, false),
            (Bookmark, true, false),
            (DestroyBookmark, true, false),
            (DestroySnapshot, false, false),
            (Rollback, false, false),
            (DestroyDataset, false, false),
            (SetProperty, false, false),
        ];
        assert_eq!(table.map(|r| r.0), Op::ALL, "one row per op");
        for (op, send, receive) in table {
            assert_eq!(Access::Send.grants(op), send, "{op}");
            assert_eq!(Access::Receive.grants(op), receive, "{op}");
            assert!(Access::All.grants(op), "{op}");
        }
    }

    #[test]
    fn each_access_and_op_inside_and_outside_the_root() {
        let root = ds("pipe/backups/laptop");
        let inside = [
            "pipe/backups/laptop",
            "pipe/backups/laptop/home",
            "pipe/backups/laptop/a/b/c",
        ];
        let outside = [
            "pipe/backups/laptop2",
            "pipe/backups/lapto",
            "pipe/backups",
            "pipe",
            "pipe/other/laptop",
            "pipe2/backups/laptop",
            "pipe/backups/laptop:x",
            "pipe/backups/laptop.old",
        ];
        for access in Access::ALL {
            let p = Policy::new().allow(root.clone(), access);
            for op in Op::ALL {
                for d in inside {
                    let r = p.check(op, &ds(d));
                    if access.grants(op) {
                        assert_eq!(r, Ok(()), "{access} {op} {d}");
                    } else {
                        let e = r.unwrap_err();
                        assert_eq!(e.reason, RefusedReason::NotGranted(access));
                        assert_eq!((e.op, e.dataset.as_str()), (op, d));
                    }
                    assert_eq!(p.allows(op, &ds(d)), access.grants(op));
                }
                for d in outside {
                    let e = p.check(op, &ds(d)).unwrap_err();
                    assert_eq!(e.reason, RefusedReason::OutsideRoots, "{access} {op} {d}");
                    assert!(!p.allows(op, &ds(d)));
                }
            }
        }
    }

    #[test]
    fn the_empty_policy_allows_nothing() {
        for p in [Policy::new(), Policy::default()] {
            assert!(p.grants().is_empty());
            for op in Op::ALL {
                for d in ["tank", "tank/a"] {
                    assert_eq!(
                        p.check(op, &ds(d)).unwrap_err().reason,
                        RefusedReason::OutsideRoots
                    );
                }
            }
        }
    }

    #[test]
    fn a_pool_root_grant_covers_the_pool_only() {
        let p = Policy::new().allow(ds("pipe"), Access::Receive);
        for d in ["pipe", "pipe/a", "pipe/a/b"] {
            assert!(p.allows(Op::Receive, &ds(d)), "{d}");
            assert!(!p.allows(Op::DestroySnapshot, &ds(d)), "{d}");
        }
        for d in ["pipe2", "pipe2/a", "pip", "tank/pipe"] {
            assert_eq!(
                p.check(Op::Receive, &ds(d)).unwrap_err().reason,
                RefusedReason::OutsideRoots,
                "{d}"
            );
        }
    }

    #[test]
    fn grants_add_up_and_the_nearest_root_names_the_access() {
        let p = Policy::new()
            .allow(ds("pipe"), Access::Send)
            .allow(ds("pipe/backups"), Access::Receive);
        assert_eq!(p.grants().len(), 2);
        // Send from the outer grant, receive from the inner one.
        assert!(p.allows(Op::Send, &ds("pipe/backups/x")));
        assert!(p.allows(Op::Receive, &ds("pipe/backups/x")));
        assert!(!p.allows(Op::Receive, &ds("pipe/other")));
        let e = p.check(Op::Rollback, &ds("pipe/backups/x")).unwrap_err();
        assert_eq!(e.reason, RefusedReason::NotGranted(Access::Receive));
        let e = p.check(Op::Rollback, &ds("pipe/other")).unwrap_err();
        assert_eq!(e.reason, RefusedReason::NotGranted(Access::Send));
        let all = p.clone().allow(ds("pipe/backups/x"), Access::All);
        assert!(all.allows(Op::Rollback, &ds("pipe/backups/x/y")));
        assert!(!all.allows(Op::Rollback, &ds("pipe/backups/y")));
    }

    #[test]
    fn refusals_read_well() {
        let p = Policy::new().allow(ds("pipe/backups/laptop"), Access::Receive);
        assert_eq!(
            p.check(Op::Receive, &ds("pipe/backups/laptop2"))
                .unwrap_err()
                .to_string(),
            "receive into pipe/backups/laptop2: not within an allowed root"
        );
        assert_eq!(
            p.check(Op::DestroySnapshot, &ds("pipe/backups/laptop/x"))
                .unwrap_err()
                .to_string(),
            "destroy snapshot in pipe/backups/laptop/x: not allowed by the policy (receive-only)"
        );
        let p = Policy::new().allow(ds("tank"), Access::Send);
        assert_eq!(
            p.check(Op::Rollback, &ds("tank/x"))
                .unwrap_err()
                .to_string(),
            "rollback in tank/x: not allowed by the policy (send-only)"
        );
        assert_eq!(
            p.check(Op::Send, &ds("other")).unwrap_err().to_string(),
            "send from other: not within an allowed root"
        );
    }

    #[test]
    fn colons_are_valid_in_dataset_names() {
        // zfs-core's name.rs allows ':' in every component, the pool's too.
        for d in ["tank/a:b", "tank/a:send", "tank/a:", "tank:x", "tank/a:b/c"] {
            assert!(d.parse::<DatasetName>().is_ok(), "{d}");
        }
    }

    #[test]
    fn parse_allow_takes_only_a_final_known_suffix() {
        let ok = [
            ("pipe/backups/laptop", "pipe/backups/laptop", Access::All),
            (
                "pipe/backups/laptop:send",
                "pipe/backups/laptop",
                Access::Send,
            ),
            (
                "pipe/backups/laptop:receive",
                "pipe/backups/laptop",
                Access::Receive,
            ),
            (
                "pipe/backups/laptop:all",
                "pipe/backups/laptop",
                Access::All,
            ),
            ("pipe", "pipe", Access::All),
            ("pipe:receive", "pipe", Access::Receive),
            // A colon in the name: only a final keyword is a suffix.
            ("tank/a:b", "tank/a:b", Access::All),
            ("tank/a:b:send", "tank/a:b", Access::Send),
            ("tank/a:send:receive", "tank/a:send", Access::Receive),
            ("tank/a:send/b", "tank/a:send/b", Access::All),
            ("tank/a:send:all", "tank/a:send", Access::All),
            // Not keywords (case matters): part of the name.
            ("tank/a:SEND", "tank/a:SEND", Access::All),
            ("tank/a:recv", "tank/a:recv", Access::All),
            ("tank/a:", "tank/a:", Access::All),
        ];
        for (arg, name, access) in ok {
            assert_eq!(parse_allow(arg), Ok((ds(name), access)), "{arg}");
        }
        for arg in [
            "",
            ":send",
            "tank/:send",
            "tank/a@snap",
            "tank/a@snap:send",
            "/tank",
            "tank//a:all",
            "tank/a#b",
        ] {
            let e = parse_allow(arg).unwrap_err();
            assert_eq!(e.arg, arg);
            assert!(e.to_string().starts_with("--allow "), "{e}");
        }
    }
}
