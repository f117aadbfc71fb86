//! Pure planning for the btrfs engine: which snapshot is whose, which parent to send
//! from, what retention may delete, where two nodes forked, what a half-received
//! snapshot looks like, and how many files a `--no-data` stream touches.
//!
//! Role: every decision the engine takes about data lives here, as functions of
//! inventories ([`Subvol`] lists), so it can be tested without a filesystem. Nothing
//! here performs I/O.
//!
//! **Identity.** A snapshot is identified across nodes by its *identity*: its
//! `received_uuid` when it was received, else its own `uuid`. `btrfs send` puts exactly
//! that in the stream (for the sent snapshot and for its parent), and `btrfs receive`
//! stores it as the new subvolume's `received_uuid`, so a snapshot keeps one identity
//! however many hops it travels. Names and times are never used to match snapshots.
//!
//! **Order.** "Newest" is judged on one node only, by its subvolume ids (they grow with
//! every subvolume created on a filesystem): never by comparing two nodes' clocks.
//!
//! Failure modes: none (pure). Unparseable `btrfs subvolume list` lines are returned as
//! [`ParseError`] naming the line.

use std::collections::{BTreeSet, HashSet};

/// One subvolume as `btrfs subvolume list -u -q -R` (plus the read-only flag) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvol {
    /// Subvolume id on its own filesystem (grows with creation order).
    pub id: u64,
    /// Its file name (the last path component).
    pub name: String,
    /// Its own UUID.
    pub uuid: String,
    /// The UUID of the subvolume it was snapshotted from, if any.
    pub parent_uuid: Option<String>,
    /// Set by `btrfs receive` when a receive completed.
    pub received_uuid: Option<String>,
    /// Read-only flag.
    pub readonly: bool,
}

impl Subvol {
    /// The cross-node identity: `received_uuid` if set, else `uuid`.
    pub fn identity(&self) -> &str {
        self.received_uuid.as_deref().unwrap_or(&self.uuid)
    }
}

/// What a name in the snapshot directory is, for the live subvolume named `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<base>@<epoch>-<stamp>`: a replication snapshot (retention may prune it).
    Snapshot,
    /// `<base>@diverged-<epoch>-<stamp>`: quarantined divergent writes (never pruned,
    /// never deleted except by `nfsha server diverged drop`).
    Diverged,
    /// Anything else: not nfsha's; never touched.
    Foreign,
}

/// Classify `name` for the live subvolume `base`.
pub fn kind(base: &str, name: &str) -> Kind {
    let Some(rest) = name.strip_prefix(base).and_then(|r| r.strip_prefix('@')) else {
        return Kind::Foreign;
    };
    if rest.starts_with("diverged-") {
        return Kind::Diverged;
    }
    match rest.split_once('-') {
        Some((epoch, stamp))
            if !epoch.is_empty()
                && epoch.bytes().all(|b| b.is_ascii_digit())
                && !stamp.is_empty() =>
        {
            Kind::Snapshot
        }
        _ => Kind::Foreign,
    }
}

/// The name of a replication snapshot taken under `epoch` at `stamp`.
pub fn snapshot_name(base: &str, epoch: u64, stamp: &str) -> String {
    format!("{base}@{epoch}-{stamp}")
}

/// The name of a quarantine snapshot made under `epoch` at `stamp`.
pub fn diverged_name(base: &str, epoch: u64, stamp: &str) -> String {
    format!("{base}@diverged-{epoch}-{stamp}")
}

/// A compact UTC stamp for names (`20261202T050101.123Z`): for people only.
pub fn stamp(unix_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(t)
        .to_string()
        .replace(['-', ':'], "")
}

/// Complete replication snapshots of `base` (read-only), newest first.
pub fn complete<'a>(base: &str, all: &'a [Subvol]) -> Vec<&'a Subvol> {
    let mut v: Vec<&Subvol> = all
        .iter()
        .filter(|s| kind(base, &s.name) == Kind::Snapshot && s.readonly)
        .collect();
    v.sort_by_key(|s| std::cmp::Reverse(s.id));
    v
}

/// Half-received snapshots: a replication-snapshot name that is still writable.
/// `btrfs receive` creates the subvolume first and sets `received_uuid` and the
/// read-only flag only when the stream ended cleanly; snapshots nfsha takes are
/// read-only from the start. A writable one is a receive that never completed: it may
/// be removed, and it is never promoted or used as a parent.
pub fn partials<'a>(base: &str, all: &'a [Subvol]) -> Vec<&'a Subvol> {
    all.iter()
        .filter(|s| kind(base, &s.name) == Kind::Snapshot && !s.readonly)
        .collect()
}

/// Quarantine snapshots (`@diverged-`), oldest first.
pub fn diverged<'a>(base: &str, all: &'a [Subvol]) -> Vec<&'a Subvol> {
    let mut v: Vec<&Subvol> = all
        .iter()
        .filter(|s| kind(base, &s.name) == Kind::Diverged)
        .collect();
    v.sort_by_key(|s| s.id);
    v
}

/// The newest snapshot of `local` (by `local`'s order) whose identity `remote` also
/// holds complete: the parent of the next incremental send, and the fork point of a
/// returning node. `None`: nothing in common (a full send is needed).
pub fn newest_common<'a>(base: &str, local: &'a [Subvol], remote: &[Subvol]) -> Option<&'a Subvol> {
    let held: HashSet<&str> = complete(base, remote)
        .iter()
        .map(|s| s.identity())
        .collect();
    complete(base, local)
        .into_iter()
        .find(|s| held.contains(s.identity()))
}

/// What to send to a standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendPlan {
    /// The leader has no complete snapshot yet.
    NothingToSend,
    /// The standby already holds the leader's newest snapshot.
    UpToDate {
        /// That snapshot (the leader's copy).
        newest: Subvol,
    },
    /// Send `snapshot`, incrementally from `parent` when set (the newest common one).
    Send {
        /// The leader's newest complete snapshot.
        snapshot: Subvol,
        /// The newest snapshot both hold, by identity.
        parent: Option<Subvol>,
    },
}

/// Plan the next send from `local` (the leader's snapshot directory) to `remote`.
pub fn plan_send(base: &str, local: &[Subvol], remote: &[Subvol]) -> SendPlan {
    let Some(newest) = complete(base, local).into_iter().next() else {
        return SendPlan::NothingToSend;
    };
    let held: HashSet<&str> = complete(base, remote)
        .iter()
        .map(|s| s.identity())
        .collect();
    if held.contains(newest.identity()) {
        return SendPlan::UpToDate {
            newest: newest.clone(),
        };
    }
    SendPlan::Send {
        snapshot: newest.clone(),
        parent: newest_common(base, local, remote).cloned(),
    }
}

/// Which complete replication snapshots retention deletes: everything but the `keep`
/// newest and every snapshot whose identity is in `protected` (the newest common
/// snapshot of each standby, the parent in use). Quarantine snapshots, partial
/// receives and foreign names are never returned. `keep` is at least 1: the newest
/// snapshot is always kept.
pub fn prune<'a>(
    base: &str,
    all: &'a [Subvol],
    keep: usize,
    protected: &BTreeSet<String>,
) -> Vec<&'a Subvol> {
    complete(base, all)
        .into_iter()
        .enumerate()
        .filter(|(i, s)| *i >= keep.max(1) && !protected.contains(s.identity()))
        .map(|(_, s)| s)
        .collect()
}

/// The newest complete snapshot of `all` that this node *received* (its
/// `received_uuid` is set) rather than took: what it was promoted from, i.e. the fork
/// point of the node that led before it (or a copy of a newer snapshot of a later
/// leader, when it was brought up to date since). Read from the disk, so it holds
/// across restarts and leadership changes; retention keeps it (see [`protect`]).
pub fn newest_received<'a>(base: &str, all: &'a [Subvol]) -> Option<&'a Subvol> {
    complete(base, all)
        .into_iter()
        .find(|s| s.received_uuid.is_some())
}

/// `protected` plus what the disk says must stay on a leader whose inventory is
/// `local`: its [`newest_received`] snapshot. A node that led before this one and is
/// away forked there; no record in memory or under the current epoch is needed to
/// know it (a protection kept only by the leadership that promoted it was lost at the
/// next restart or failover, and the old primary came back to a full send).
pub fn protect(base: &str, local: &[Subvol], protected: &BTreeSet<String>) -> BTreeSet<String> {
    let mut p = protected.clone();
    p.extend(newest_received(base, local).map(|s| s.identity().to_owned()));
    p
}

/// A returning node compared with the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// The newest snapshot both hold (the returning node's copy), if any.
    pub point: Option<Subvol>,
    /// The returning node's complete snapshots newer than the fork point (by its own
    /// order) that the leader does not hold: taken while it led on its own.
    pub own_after: Vec<Subvol>,
}

/// Where `returning` forked from `leader`.
pub fn fork(base: &str, leader: &[Subvol], returning: &[Subvol]) -> Fork {
    let point = newest_common(base, returning, leader).cloned();
    let held: HashSet<&str> = complete(base, leader)
        .iter()
        .map(|s| s.identity())
        .collect();
    let own_after = complete(base, returning)
        .into_iter()
        .filter(|s| point.as_ref().is_none_or(|p| s.id > p.id) && !held.contains(s.identity()))
        .cloned()
        .collect();
    Fork { point, own_after }
}

/// A line of `btrfs subvolume list` that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("Unexpected `btrfs subvolume list` line: {0:?}")]
pub struct ParseError(pub String);

/// One parsed `btrfs subvolume list -u -q -R` line (before the read-only flag is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Subvolume id.
    pub id: u64,
    /// `top level` id: the subvolume that contains it.
    pub top_level: u64,
    /// Path as printed (relative to the filesystem's top level).
    pub path: String,
    /// UUID.
    pub uuid: String,
    /// Parent UUID.
    pub parent_uuid: Option<String>,
    /// Received UUID.
    pub received_uuid: Option<String>,
}

fn uuid_field(v: &str) -> Option<String> {
    (v != "-" && !v.is_empty()).then(|| v.to_owned())
}

/// Parse `btrfs subvolume list [-o] [-r] -u -q -R PATH` output:
/// `ID 257 gen 14 top level 5 parent_uuid P received_uuid R uuid U path snaps/x@1`.
pub fn parse_list(out: &str) -> Result<Vec<ListEntry>, ParseError> {
    let mut v = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || ParseError(line.to_owned());
        let (head, path) = line.split_once(" path ").ok_or_else(bad)?;
        let t: Vec<&str> = head.split_whitespace().collect();
        let field = |key: &str| -> Option<&str> {
            t.iter()
                .position(|x| *x == key)
                .and_then(|i| t.get(i + 1))
                .copied()
        };
        let id = field("ID").and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let top_level = t
            .iter()
            .position(|x| *x == "top")
            .filter(|&i| t.get(i + 1) == Some(&"level"))
            .and_then(|i| t.get(i + 2))
            .and_then(|x| x.parse().ok())
            .ok_or_else(bad)?;
        let uuid = field("uuid").and_then(uuid_field).ok_or_else(bad)?;
        v.push(ListEntry {
            id,
            top_level,
            path: path.to_owned(),
            uuid,
            parent_uuid: field("parent_uuid").and_then(uuid_field),
            received_uuid: field("received_uuid").and_then(uuid_field),
        });
    }
    Ok(v)
}

/// How many distinct files a `btrfs receive --dump` of a `--no-data` stream touches,
/// not counting the subvolume's root directory. Temporary names (`o<ino>-<gen>-<n>`,
/// what send uses before a rename) are followed to their final name.
pub fn changed_files(dump: &str) -> u64 {
    fn rel(p: &str) -> Option<&str> {
        // `./<subvol>/<path>`: drop the subvolume component.
        let p = p.strip_prefix("./").unwrap_or(p);
        let (_, rest) = p.split_once('/')?;
        let rest = rest.trim_end_matches('/');
        (!rest.is_empty()).then_some(rest)
    }
    fn temp(p: &str) -> bool {
        let last = p.rsplit('/').next().unwrap_or(p);
        last.strip_prefix('o').is_some_and(|r| {
            let parts: Vec<&str> = r.split('-').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
        })
    }
    let mut files: BTreeSet<String> = BTreeSet::new();
    for line in dump.lines() {
        let mut t = line.split_whitespace();
        let (Some(op), Some(path)) = (t.next(), t.next()) else {
            continue;
        };
        if matches!(op, "snapshot" | "subvol") {
            continue;
        }
        let dest = t.find_map(|x| x.strip_prefix("dest="));
        for p in [Some(path), dest].into_iter().flatten() {
            if let Some(r) = rel(p)
                && !temp(r)
            {
                files.insert(r.to_owned());
            }
        }
    }
    files.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subvolume: `(id, name, uuid, received, readonly)`.
    pub(crate) fn sv(id: u64, name: &str, uuid: &str, received: Option<&str>, ro: bool) -> Subvol {
        Subvol {
            id,
            name: name.into(),
            uuid: uuid.into(),
            parent_uuid: None,
            received_uuid: received.map(Into::into),
            readonly: ro,
        }
    }

    #[test]
    fn names_are_classified_by_pattern_for_this_base_only() {
        assert_eq!(kind("data", "data@7-20261202T050101.123Z"), Kind::Snapshot);
        assert_eq!(kind("data", "data@diverged-8-x"), Kind::Diverged);
        assert_eq!(kind("data", "data"), Kind::Foreign);
        assert_eq!(kind("data", "data@manual"), Kind::Foreign);
        assert_eq!(kind("data", "other@7-x"), Kind::Foreign);
        assert_eq!(kind("data", "database@7-x"), Kind::Foreign);
        assert_eq!(stamp(0), "19700101T000000.000Z");
        assert_eq!(
            kind("data", &snapshot_name("data", 3, &stamp(5))),
            Kind::Snapshot
        );
        assert_eq!(
            kind("data", &diverged_name("data", 3, &stamp(5))),
            Kind::Diverged
        );
    }

    #[test]
    fn the_parent_is_the_newest_snapshot_both_hold_by_identity_not_by_name() {
        // Leader: three own snapshots. The standby holds copies of 1 and 2 (received
        // uuid = the leader's uuid) and, under a misleading name, an unrelated one.
        let leader = [
            sv(256, "data@1-a", "L1", None, true),
            sv(257, "data@1-b", "L2", None, true),
            sv(258, "data@1-c", "L3", None, true),
        ];
        let standby = [
            sv(300, "data@1-a", "S1", Some("L1"), true),
            sv(301, "data@1-b", "S2", Some("L2"), true),
            sv(302, "data@1-c", "S9", Some("X9"), true), // same name as L3, other data
        ];
        match plan_send("data", &leader, &standby) {
            SendPlan::Send { snapshot, parent } => {
                assert_eq!(snapshot.uuid, "L3");
                assert_eq!(parent.unwrap().uuid, "L2");
            }
            p => panic!("{p:?}"),
        }
        // Nothing in common: a full send.
        let plan = plan_send("data", &leader, &[sv(1, "data@1-a", "Q", Some("Z"), true)]);
        assert!(
            matches!(plan, SendPlan::Send { parent: None, .. }),
            "{plan:?}"
        );
        // Holding the newest identity is being up to date.
        let standby = [sv(303, "zzz-any-name", "S3", Some("L3"), true)];
        assert!(matches!(
            plan_send(
                "data",
                &leader,
                &[sv(303, "data@1-z", "S3", Some("L3"), true)]
            ),
            SendPlan::UpToDate { .. }
        ));
        // A foreign name is not a replication snapshot, whatever it holds.
        assert!(matches!(
            plan_send("data", &leader, &standby),
            SendPlan::Send { .. }
        ));
        assert_eq!(plan_send("data", &[], &[]), SendPlan::NothingToSend);
    }

    #[test]
    fn a_half_received_snapshot_is_never_a_parent_and_is_reported_as_partial() {
        let leader = [
            sv(256, "data@1-a", "L1", None, true),
            sv(257, "data@1-b", "L2", None, true),
        ];
        // The receive of L2 broke: writable, no received uuid.
        let standby = [
            sv(300, "data@1-a", "S1", Some("L1"), true),
            sv(301, "data@1-b", "S2", None, false),
        ];
        assert_eq!(
            partials("data", &standby)
                .iter()
                .map(|s| &s.uuid)
                .collect::<Vec<_>>(),
            ["S2"]
        );
        match plan_send("data", &leader, &standby) {
            SendPlan::Send { snapshot, parent } => {
                assert_eq!(
                    (snapshot.uuid.as_str(), parent.unwrap().uuid.as_str()),
                    ("L2", "L1")
                );
            }
            p => panic!("{p:?}"),
        }
        // A writable quarantine snapshot (crash between move and read-only) is not partial.
        assert!(partials("data", &[sv(1, "data@diverged-3-x", "D", None, false)]).is_empty());
    }

    #[test]
    fn retention_keeps_the_newest_and_every_protected_common_snapshot() {
        let all: Vec<Subvol> = (0..6)
            .map(|i| {
                sv(
                    256 + i,
                    &format!("data@1-{i}"),
                    &format!("L{i}"),
                    None,
                    true,
                )
            })
            .chain([
                sv(400, "data@diverged-2-x", "D", None, true),
                sv(401, "data@1-9", "P", None, false),
                sv(402, "manual", "M", None, true),
            ])
            .collect();
        // A standby that is far behind still has L1 as its newest common snapshot.
        let protected: BTreeSet<String> = ["L1".to_owned()].into();
        let gone: Vec<&str> = prune("data", &all, 2, &protected)
            .iter()
            .map(|s| s.uuid.as_str())
            .collect();
        assert_eq!(gone, ["L3", "L2", "L0"]);
        // keep = 0 still keeps the newest.
        let gone = prune("data", &all, 0, &BTreeSet::new());
        assert!(!gone.iter().any(|s| s.uuid == "L5"), "{gone:?}");
        assert!(
            !gone
                .iter()
                .any(|s| ["D", "P", "M"].contains(&s.uuid.as_str()))
        );
    }

    #[test]
    fn the_newest_received_snapshot_is_protected_from_what_the_disk_says() {
        // B received a1, a2 from A, promoted a2 and took b1..b3 of its own.
        let b = [
            sv(300, "data@1-a1", "x1", Some("A1"), true),
            sv(301, "data@1-a2", "x2", Some("A2"), true),
            sv(302, "data@9-b1", "B1", None, true),
            sv(303, "data@9-b2", "B2", None, true),
            sv(304, "data@9-b3", "B3", None, true),
            sv(305, "data@9-b4", "P", Some("Q"), false), // a receive that broke
        ];
        assert_eq!(
            newest_received("data", &b).map(|s| s.identity()),
            Some("A2")
        );
        let p = protect("data", &b, &BTreeSet::new());
        assert_eq!(p, ["A2".to_owned()].into());
        let gone: Vec<&str> = prune("data", &b, 2, &p)
            .iter()
            .map(|s| s.identity())
            .collect();
        assert_eq!(gone, ["B1", "A1"]);
        // A node that never received anything adds nothing.
        assert!(protect("data", &b[2..5], &BTreeSet::new()).is_empty());
    }

    #[test]
    fn the_fork_point_is_the_newest_common_snapshot_and_own_later_ones_are_divergent() {
        // A led with A1, A2 (B received both), then A3 (never shipped), then failed.
        // B promoted its copy of A2 and took B1, B2.
        let a = [
            sv(256, "data@1-a1", "A1", None, true),
            sv(257, "data@1-a2", "A2", None, true),
            sv(258, "data@1-a3", "A3", None, true),
        ];
        let b = [
            sv(300, "data@1-a1", "b1", Some("A1"), true),
            sv(301, "data@1-a2", "b2", Some("A2"), true),
            sv(303, "data@2-b1", "B1", None, true),
            sv(304, "data@2-b2", "B2", None, true),
        ];
        let f = fork("data", &b, &a);
        assert_eq!(f.point.as_ref().unwrap().uuid, "A2");
        assert_eq!(
            f.own_after
                .iter()
                .map(|s| s.uuid.as_str())
                .collect::<Vec<_>>(),
            ["A3"]
        );
        // And the resync from B to A is incremental from that fork point.
        match plan_send("data", &b, &a) {
            SendPlan::Send { snapshot, parent } => {
                assert_eq!(snapshot.uuid, "B2");
                assert_eq!(parent.unwrap().identity(), "A2");
            }
            p => panic!("{p:?}"),
        }
        // No common snapshot at all.
        let f = fork("data", &b, &[sv(1, "data@1-z", "Z", None, true)]);
        assert!(f.point.is_none() && f.own_after.len() == 1, "{f:?}");
    }

    #[test]
    fn list_output_is_parsed_with_dashes_as_none_and_paths_with_spaces() {
        let out = "ID 257 gen 14 top level 5 parent_uuid f79838                             received_uuid 24eefe uuid 58bb64 path snaps/data@2\n\
                   ID 263 gen 16 top level 261 parent_uuid -                                    received_uuid -                                    uuid d04553 path snap2/a b\n";
        let v = parse_list(out).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (
                v[0].id,
                v[0].top_level,
                v[0].received_uuid.as_deref(),
                v[0].parent_uuid.as_deref()
            ),
            (257, 5, Some("24eefe"), Some("f79838"))
        );
        assert_eq!(
            (
                v[1].top_level,
                v[1].path.as_str(),
                v[1].received_uuid.as_ref()
            ),
            (261, "snap2/a b", None)
        );
        assert!(parse_list("ID x gen").is_err());
    }

    #[test]
    fn the_changed_file_count_follows_renames_and_skips_the_root() {
        let dump = "\
snapshot        ./data@3                        uuid=c95 transid=9 parent_uuid=24e parent_transid=8
unlink          ./data@3/small
mkfile          ./data@3/o260-9-0
rename          ./data@3/o260-9-0               dest=./data@3/div1
update_extent   ./data@3/div1                   offset=0 len=9
chown           ./data@3/div1                   gid=0 uid=0
mkfile          ./data@3/o261-9-0
rename          ./data@3/o261-9-0               dest=./data@3/dir/div2
utimes          ./data@3/                       atime=x mtime=y ctime=z
";
        assert_eq!(changed_files(dump), 3);
        assert_eq!(
            changed_files("snapshot ./d@1 uuid=x\nutimes ./d@1/ atime=1\n"),
            0
        );
    }
}
