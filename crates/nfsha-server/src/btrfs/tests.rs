//! Engine tests on the fake host: the replicate / break / resume / fork / quarantine /
//! promote story, two or three nodes in one [`FakeBtrfs`].

use super::*;
use std::collections::BTreeSet;
use std::sync::Arc;

const LIVE: &str = "/srv/data";
const SNAPS: &str = "/srv/.snapshots";

fn settings(keep: usize) -> BtrfsSettings {
    BtrfsSettings {
        live: LIVE.into(),
        snapshot_dir: SNAPS.into(),
        keep,
        transport: vec!["ssh".into(), "root@{target}".into()],
    }
}

struct World {
    fake: Arc<FakeBtrfs>,
}

impl World {
    fn new() -> Self {
        World {
            fake: Arc::new(FakeBtrfs::new()),
        }
    }
    fn engine(&self, node: &str, keep: usize) -> Engine<Arc<FakeBtrfs>> {
        Engine::new(self.fake.clone(), settings(keep), node)
    }
    fn write(&self, node: &str, file: &str, content: &str) {
        self.fake.write(node, Path::new(LIVE), file, content);
    }
    fn snaps(&self, node: &str) -> Vec<(String, FakeSubvolView)> {
        self.fake
            .paths(node)
            .into_iter()
            .filter(|p| p.parent() == Some(Path::new(SNAPS)))
            .map(|p| {
                let s = self.fake.get(node, &p).unwrap();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    FakeSubvolView {
                        identity: s.received_uuid.clone().unwrap_or(s.uuid.clone()),
                        readonly: s.readonly,
                    },
                )
            })
            .collect()
    }
    fn names(&self, node: &str) -> Vec<String> {
        self.snaps(node).into_iter().map(|(n, _)| n).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeSubvolView {
    identity: String,
    readonly: bool,
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

#[tokio::test]
async fn full_send_first_then_incremental_from_the_newest_common_snapshot() {
    let w = World::new();
    w.fake.create("a", Path::new(LIVE));
    w.write("a", "big", &"x".repeat(100_000));
    let a = w.engine("a", 5);
    let s1 = a.take_snapshot(7, 1_000).await.unwrap();
    assert!(s1.readonly && s1.received_uuid.is_none());
    let r1 = a.replicate("b", 7, 1_000, &none()).await.unwrap();
    assert_eq!(
        (r1.parent.as_deref(), r1.snapshot.as_str()),
        (None, s1.name.as_str())
    );
    w.write("a", "small", "y");
    let s2 = a.take_snapshot(7, 2_000).await.unwrap();
    let r2 = a.replicate("b", 7, 2_000, &none()).await.unwrap();
    assert_eq!(r2.parent.as_deref(), Some(s1.name.as_str()));
    let (full, incr) = (r1.bytes.unwrap(), r2.bytes.unwrap());
    assert!(incr * 100 < full, "incremental {incr} vs full {full}");
    // The standby holds both, complete, under the leader's identities.
    let b = w.snaps("b");
    assert_eq!(
        b.iter()
            .map(|(_, v)| v.identity.as_str())
            .collect::<Vec<_>>(),
        [s1.uuid.as_str(), s2.uuid.as_str()]
    );
    assert!(b.iter().all(|(_, v)| v.readonly));
    // Again: up to date, nothing sent.
    let r3 = a.replicate("b", 7, 3_000, &none()).await.unwrap();
    assert_eq!((r3.bytes, r3.identity.as_str()), (None, s2.uuid.as_str()));
    // The transport template named the target.
    assert!(
        w.fake
            .calls()
            .iter()
            .any(|c| c.starts_with("transfer a /srv/.snapshots/data@7-") && c.contains("-> b")),
        "{:?}",
        w.fake.calls()
    );
}

#[tokio::test]
async fn a_broken_transfer_is_cleaned_up_and_the_retry_restarts_from_the_same_parent() {
    let w = World::new();
    w.fake.create("a", Path::new(LIVE));
    let a = w.engine("a", 5);
    w.write("a", "f1", "one");
    let s1 = a.take_snapshot(7, 1_000).await.unwrap();
    a.replicate("b", 7, 1_000, &none()).await.unwrap();
    w.write("a", "f2", "two");
    w.write("a", "f3", "three");
    let s2 = a.take_snapshot(7, 2_000).await.unwrap();

    // The stream breaks: the half-received snapshot is removed at once.
    w.fake.break_next_transfer();
    let e = a.replicate("b", 7, 2_000, &none()).await.unwrap_err();
    assert!(e.to_string().contains("short read"), "{e}");
    assert_eq!(w.names("b"), std::slice::from_ref(&s1.name));

    // It breaks again and this time the cleanup fails too: the partial stays...
    w.fake.break_next_transfer();
    w.fake.fail("delete b");
    a.replicate("b", 7, 2_000, &none()).await.unwrap_err();
    let left = w.snaps("b");
    assert_eq!(left.len(), 2);
    assert!(!left[1].1.readonly, "{left:?}");
    w.fake.heal();
    // ...and is never promoted: the standby promotes the complete s1.
    // (Checked on a copy of the world below; here the next attempt removes it first.)
    let r = a.replicate("b", 7, 3_000, &none()).await.unwrap();
    assert_eq!(r.removed_partials, std::slice::from_ref(&s2.name));
    assert_eq!(r.parent.as_deref(), Some(s1.name.as_str()));
    assert_eq!(r.identity, s2.uuid);
    assert!(w.snaps("b").iter().all(|(_, v)| v.readonly));
    let files = w
        .fake
        .get("b", &Path::new(SNAPS).join(&s2.name))
        .unwrap()
        .files;
    assert_eq!(files.len(), 3);
}

#[tokio::test]
async fn a_half_received_snapshot_is_never_promoted() {
    let w = World::new();
    w.fake.create("a", Path::new(LIVE));
    let a = w.engine("a", 5);
    w.write("a", "f1", "one");
    let s1 = a.take_snapshot(7, 1_000).await.unwrap();
    a.replicate("b", 7, 1_000, &none()).await.unwrap();
    w.write("a", "f1", "changed");
    w.write("a", "f2", "new");
    a.take_snapshot(7, 2_000).await.unwrap();
    w.fake.break_next_transfer();
    w.fake.fail("delete b");
    a.replicate("b", 7, 2_000, &none()).await.unwrap_err();
    w.fake.heal();
    let b = w.engine("b", 5);
    let p = b.promote(8, 5_000).await.unwrap();
    assert_eq!(p.snapshot.as_deref(), Some(s1.name.as_str()));
    assert_eq!(p.identity.as_deref(), Some(s1.uuid.as_str()));
    assert_eq!(p.removed_partials.len(), 1);
    let live = w.fake.get("b", Path::new(LIVE)).unwrap();
    assert!(!live.readonly);
    assert_eq!(live.files.get("f1").map(String::as_str), Some("one"));
}

#[tokio::test]
async fn retention_never_deletes_a_standbys_newest_common_snapshot() {
    let w = World::new();
    w.fake.create("a", Path::new(LIVE));
    let a = w.engine("a", 2);
    let mut snaps = Vec::new();
    for i in 0..3 {
        w.write("a", "f", &i.to_string());
        snaps.push(a.take_snapshot(7, 1_000 * (i + 1)).await.unwrap());
    }
    // c got the first only and then went away; b is current.
    a.replicate("c", 7, 0, &none()).await.unwrap();
    for i in 3..6 {
        w.write("a", "f", &i.to_string());
        snaps.push(a.take_snapshot(7, 1_000 * (i + 1)).await.unwrap());
        a.replicate("b", 7, 0, &none()).await.unwrap();
    }
    // c's newest common snapshot is the newest, s2 (it got the newest at the time).
    let c_common = snaps[2].uuid.clone();
    let protected: BTreeSet<String> = [c_common.clone()].into();
    let gone = a.prune_local(&protected).await.unwrap();
    assert_eq!(
        gone,
        [
            snaps[3].name.clone(),
            snaps[1].name.clone(),
            snaps[0].name.clone()
        ]
    );
    let left: Vec<String> = w.snaps("a").into_iter().map(|(_, v)| v.identity).collect();
    assert!(left.contains(&c_common), "{left:?}");
    // c can still be served incrementally from it.
    let r = a.replicate("c", 7, 0, &none()).await.unwrap();
    assert_eq!(r.parent.as_deref(), Some(snaps[2].name.as_str()));
    // The standby kept at most `keep` copies, always the newest.
    let b = w.names("b");
    assert_eq!(b, [snaps[4].name.clone(), snaps[5].name.clone()]);
}

/// A leads and ships s1, s2 to B; A takes s3 (never shipped) and writes more; A dies.
/// B promotes its copy of s2, writes, snapshots. A returns.
async fn failover_world() -> (World, Vec<Subvol>) {
    let w = World::new();
    w.fake.create("a", Path::new(LIVE));
    let a = w.engine("a", 5);
    w.write("a", "keep", "k");
    let s1 = a.take_snapshot(7, 1_000).await.unwrap();
    a.replicate("b", 7, 1_000, &none()).await.unwrap();
    w.write("a", "f", "before-fork");
    let s2 = a.take_snapshot(7, 2_000).await.unwrap();
    a.replicate("b", 7, 2_000, &none()).await.unwrap();
    (w, vec![s1, s2])
}

#[tokio::test]
async fn a_returning_old_primary_keeps_its_divergent_writes_and_resyncs_from_the_fork_point() {
    let (w, s) = failover_world().await;
    let a = w.engine("a", 5);
    w.write("a", "lost1", "after fork");
    let s3 = a.take_snapshot(7, 3_000).await.unwrap();
    w.write("a", "lost2", "after s3");
    w.write("a", "f", "changed after fork");

    let b = w.engine("b", 5);
    let p = b.promote(9, 4_000).await.unwrap();
    assert_eq!(p.identity.as_deref(), Some(s[1].uuid.as_str()));
    w.write("b", "bfile", "new primary");
    let b1 = b.take_snapshot(9, 5_000).await.unwrap();

    let r = b.replicate("a", 9, 6_000, &none()).await.unwrap();
    let q = r.quarantined.clone().expect("quarantined");
    assert!(q.name.starts_with("data@diverged-9-"), "{q:?}");
    assert_eq!(q.fork.as_deref(), Some(s[1].name.as_str()));
    // lost1, lost2 and f changed after the fork point.
    assert_eq!((q.changed_files, q.kept), (Some(3), true));
    // Then the resync went incrementally from the fork point.
    assert_eq!(r.parent.as_deref(), Some(s[1].name.as_str()));
    assert_eq!(r.identity, b1.uuid);
    let d = w.fake.get("a", &Path::new(SNAPS).join(&q.name)).unwrap();
    assert!(d.readonly);
    assert_eq!(d.files.get("lost2").map(String::as_str), Some("after s3"));
    assert!(
        w.fake.get("a", Path::new(LIVE)).is_none(),
        "the live subvolume moved aside"
    );
    // The order of calls: inventory, the quarantine move, the count, then the send.
    let calls = w.fake.calls();
    let pos = |p: &str| calls.iter().rposition(|c| c.starts_with(p)).unwrap();
    assert!(pos("move_aside a") < pos("changed_files a"));
    assert!(pos("changed_files a") < pos("transfer b"));

    // Many more rounds with keep = 1: the quarantine and A's own s3 are never pruned.
    let b = w.engine("b", 1);
    for i in 0..4 {
        w.write("b", "bfile", &i.to_string());
        b.take_snapshot(9, 7_000 + i).await.unwrap();
        b.replicate("a", 9, 7_000 + i, &none()).await.unwrap();
    }
    let names = w.names("a");
    assert!(names.contains(&q.name), "{names:?}");
    assert!(names.contains(&s3.name), "{names:?}");
    let listed = w.engine("a", 1).diverged().await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&q.name)
    );

    // Only an explicit drop removes it, and only a quarantine name is accepted.
    let a = w.engine("a", 1);
    let e = a.diverged_drop(&s3.name).await.unwrap_err();
    assert!(e.to_string().contains("not a quarantine snapshot"), "{e}");
    a.diverged_export(&q.name, Path::new("/tmp/x.stream"))
        .await
        .unwrap();
    a.diverged_drop(&q.name).await.unwrap();
    assert!(!w.names("a").contains(&q.name));
}

#[tokio::test]
async fn a_planned_switchover_leaves_no_empty_quarantine_behind() {
    let (w, s) = failover_world().await;
    // A wrote nothing after s2 (its final sync), B promoted s2.
    let b = w.engine("b", 5);
    b.promote(9, 4_000).await.unwrap();
    w.write("b", "bfile", "x");
    b.take_snapshot(9, 5_000).await.unwrap();
    let r = b.replicate("a", 9, 6_000, &none()).await.unwrap();
    let q = r.quarantined.unwrap();
    assert_eq!((q.changed_files, q.kept), (Some(0), false));
    assert!(!w.names("a").contains(&q.name));
    assert_eq!(r.parent.as_deref(), Some(s[1].name.as_str()));
}

#[tokio::test]
async fn promotion_keeps_a_live_subvolume_that_continues_its_own_newest_snapshot() {
    let w = World::new();
    w.fake.create("a", Path::new(LIVE));
    let a = w.engine("a", 5);
    w.write("a", "f", "1");
    a.take_snapshot(7, 1_000).await.unwrap();
    w.write("a", "f", "2 newer than any snapshot");
    // A restarts and leads again: its live subvolume is the newest data.
    let p = a.promote(8, 2_000).await.unwrap();
    assert_eq!((p.snapshot, p.quarantined), (None, None));
    let live = w.fake.get("a", Path::new(LIVE)).unwrap();
    assert_eq!(live.files["f"], "2 newer than any snapshot");
    // Nothing at all to promote on an empty node.
    let e = w.engine("z", 5).promote(8, 0).await.unwrap_err();
    assert!(e.to_string().contains("no complete snapshot"), "{e}");
}

#[tokio::test]
async fn promotion_over_a_stale_live_subvolume_quarantines_it() {
    let (w, s) = failover_world().await;
    // B led once long ago and kept a live subvolume with writes of its own.
    w.fake.create("b", Path::new(LIVE));
    w.write("b", "old", "b's own");
    let b = w.engine("b", 5);
    let p = b.promote(9, 4_000).await.unwrap();
    assert_eq!(p.snapshot.as_deref(), Some(s[1].name.as_str()));
    let q = p.quarantined.unwrap();
    assert!(q.kept);
    let d = w.fake.get("b", &Path::new(SNAPS).join(&q.name)).unwrap();
    assert_eq!(d.files["old"], "b's own");
    assert!(d.readonly);
}

#[tokio::test]
async fn the_promoted_fork_point_survives_retention_while_the_old_primary_is_away() {
    let (w, s) = failover_world().await;
    w.write("a", "lost", "after the fork");
    // B promotes s2 and leads for longer than keep × interval while A is down. Its
    // own replica record (written when it began leading) names no snapshot.
    let b = w.engine("b", 2);
    let p = b.promote(9, 4_000).await.unwrap();
    let own = crate::coordinator::ReplicaRecord {
        shipped_at_ms: 4_000,
        epoch: 9,
        by: "b".into(),
        snapshot: None,
        position_ms: None,
        forks: Vec::new(),
    };
    let records: std::collections::BTreeMap<String, _> = [("b".to_owned(), own)].into();
    let protected = super::shipper::protected_identities(&records, Some(&p));
    assert_eq!(protected, [s[1].uuid.clone()].into());
    for i in 0..4 {
        w.write("b", "bfile", &i.to_string());
        b.take_snapshot(9, 5_000 + i).await.unwrap();
        // Without the promotion's identity retention would take the fork point.
        let inv = b.inventory().await.unwrap();
        let unprotected = super::shipper::protected_identities(&records, None);
        if i >= 1 {
            assert!(
                plan::prune(&b.base(), &inv, 2, &unprotected)
                    .iter()
                    .any(|x| x.identity() == s[1].uuid),
                "round {i}: the fork point would be pruned"
            );
        }
        b.prune_local(&protected).await.unwrap();
    }
    assert!(
        b.inventory()
            .await
            .unwrap()
            .iter()
            .any(|x| x.identity() == s[1].uuid),
        "the fork point is still on the leader"
    );
    // A returns: its writes after the fork are counted and the resync is incremental.
    let r = b.replicate("a", 9, 9_000, &protected).await.unwrap();
    let q = r.quarantined.expect("quarantined");
    assert_eq!(
        (q.fork.as_deref(), q.changed_files, q.kept),
        (Some(s[1].name.as_str()), Some(1), true)
    );
    assert_eq!(r.parent.as_deref(), Some(s[1].name.as_str()));
}

/// The records etcd would hold (`replica/<node>`), written the way the controller
/// and the shipper write them.
type Records = std::collections::BTreeMap<String, crate::coordinator::ReplicaRecord>;

/// `node` begins serving `epoch` after promoting `p`: its own record.
fn begin_leading(records: &mut Records, node: &str, epoch: u64, p: &Promotion) {
    let own = super::shipper::own_record(node, epoch, 0, records, Some(p));
    records.insert(node.into(), own);
}

/// `leader` (of `epoch`) brought `target` to `r.snapshot`: the shipper's record.
fn shipped(records: &mut Records, leader: &str, epoch: u64, target: &str, r: &ShipReport) {
    let snap = crate::coordinator::SnapshotRef {
        name: r.snapshot.clone(),
        identity: r.identity.clone(),
    };
    let rec = super::shipper::shipped_record(
        leader,
        epoch,
        0,
        snap,
        Some(0),
        records.get(target),
        target,
    );
    records.insert(target.into(), rec);
}

/// Five snapshot periods of a leader with its retention, protection as the shipper
/// computes it from the records and this leadership's promotion.
async fn lead_for_a_while(
    w: &World,
    e: &Engine<Arc<FakeBtrfs>>,
    records: &Records,
    p: &Promotion,
    epoch: u64,
) {
    let node = e.me.name.clone();
    for i in 0..5 {
        w.write(&node, "f", &format!("{epoch}-{i}"));
        e.take_snapshot(epoch, epoch * 1_000 + i).await.unwrap();
        let protected = super::shipper::protected_identities(records, Some(p));
        e.prune_local(&protected).await.unwrap();
    }
}

fn holds(w: &World, node: &str, identity: &str) -> bool {
    w.snaps(node).iter().any(|(_, v)| v.identity == identity)
}

/// Issue 12. A leads (7) and ships s1, s2 to B, writes more, dies. B promotes s2 (9),
/// restarts and leads again (11) while A is away, then brings A back; B dies, A
/// promotes B's snapshot (13), restarts (15), brings B back. Each returning node's
/// fork point is still on the leader — no record in memory or of the current epoch
/// names it by then — so its divergent writes are counted and it resyncs
/// incrementally. Before the fix the protection was only the promotion of the current
/// leadership: B's restart forgot s2 and retention pruned it.
#[tokio::test]
async fn the_fork_point_survives_restarts_and_failovers_of_the_leader() {
    let (w, s) = failover_world().await;
    let mut records = Records::new();
    let a_first = Promotion {
        snapshot: None,
        identity: None,
        quarantined: None,
        removed_partials: vec![],
    };
    begin_leading(&mut records, "a", 7, &a_first);
    let to_b = w
        .engine("a", 5)
        .replicate("b", 7, 0, &none())
        .await
        .unwrap();
    shipped(&mut records, "a", 7, "b", &to_b);
    w.write("a", "lost", "after the fork");
    let fork_a = s[1].uuid.clone();

    // B leads (9), then restarts and leads again (11): the live subvolume is kept and
    // this process never saw the promotion of s2.
    let b = w.engine("b", 2);
    let p9 = b.promote(9, 0).await.unwrap();
    assert_eq!(p9.identity.as_deref(), Some(fork_a.as_str()));
    begin_leading(&mut records, "b", 9, &p9);
    lead_for_a_while(&w, &b, &records, &p9, 9).await;
    let p11 = b.promote(11, 0).await.unwrap();
    assert_eq!(p11.snapshot, None, "kept its live subvolume");
    begin_leading(&mut records, "b", 11, &p11);
    // What protected the fork point before: the records' snapshots and this
    // leadership's promotion. It no longer names s2.
    let before: BTreeSet<String> = records
        .values()
        .filter_map(|r| r.snapshot.as_ref().map(|s| s.identity.clone()))
        .chain(p11.identity.clone())
        .collect();
    assert!(!before.contains(&fork_a), "{before:?}");
    lead_for_a_while(&w, &b, &records, &p11, 11).await;
    assert!(holds(&w, "b", &fork_a), "B pruned A's fork point s2");

    // A returns: its writes after s2 are counted, the resync is incremental from s2.
    let protected = super::shipper::protected_identities(&records, Some(&p11));
    let r = b.replicate("a", 11, 0, &protected).await.unwrap();
    let q = r.quarantined.clone().expect("quarantined");
    assert_eq!(
        (q.fork.as_deref(), q.changed_files, q.kept),
        (Some(s[1].name.as_str()), Some(1), true),
        "lost changed after the fork"
    );
    assert_eq!(r.parent.as_deref(), Some(s[1].name.as_str()));
    shipped(&mut records, "b", 11, "a", &r);
    assert!(
        !super::shipper::protected_identities(&records, None).contains(&fork_a),
        "the records keep s2 no longer once A has been shipped to"
    );
    let fork_b = r.identity.clone();
    w.write("b", "lost-b", "after the second fork");

    // B dies. A promotes B's snapshot (13), then restarts and leads again (15).
    let a = w.engine("a", 2);
    let p13 = a.promote(13, 0).await.unwrap();
    assert_eq!(p13.identity.as_deref(), Some(fork_b.as_str()));
    begin_leading(&mut records, "a", 13, &p13);
    assert!(
        records["a"]
            .forks
            .iter()
            .any(|f| f.node == "b" && f.snapshot.identity == fork_b),
        "{:?}",
        records["a"]
    );
    lead_for_a_while(&w, &a, &records, &p13, 13).await;
    let p15 = a.promote(15, 0).await.unwrap();
    assert_eq!(p15.snapshot, None);
    begin_leading(&mut records, "a", 15, &p15);
    lead_for_a_while(&w, &a, &records, &p15, 15).await;
    assert!(holds(&w, "a", &fork_b), "A pruned B's fork point");

    // B returns: the same story the other way round.
    let protected = super::shipper::protected_identities(&records, Some(&p15));
    let r = a.replicate("b", 15, 0, &protected).await.unwrap();
    let q = r.quarantined.expect("quarantined");
    assert_eq!(
        (q.fork.as_deref(), q.changed_files),
        (Some(r.parent.as_deref().unwrap()), Some(1))
    );
    let parent = r.parent.expect("incremental");
    assert_eq!(
        w.snaps("a")
            .into_iter()
            .find(|(n, _)| *n == parent)
            .map(|(_, v)| v.identity),
        Some(fork_b)
    );
}

/// Three nodes, where the disk alone is not enough: the leader C received A's fork
/// point from A (through B's leadership), not from the leader it took over from. The
/// records keep it across C's promotion, B's record being rewritten and C's restart,
/// until A itself has been shipped to.
#[test]
fn fork_points_in_the_records_outlive_rewrites_and_end_when_their_node_is_shipped_to() {
    let snap = |n: &str| crate::coordinator::SnapshotRef {
        name: n.into(),
        identity: n.to_uppercase(),
    };
    let promoted = |n: Option<&str>| Promotion {
        snapshot: n.map(Into::into),
        identity: Some(n.unwrap_or("c9").to_uppercase()),
        quarantined: None,
        removed_partials: vec![],
    };
    let ship = |records: &mut Records, by: &str, epoch: u64, to: &str, s: &str| {
        let rec =
            super::shipper::shipped_record(by, epoch, 0, snap(s), Some(0), records.get(to), to);
        records.insert(to.into(), rec);
    };
    let protected = |records: &Records| super::shipper::protected_identities(records, None);
    let mut records = Records::new();
    // A leads 1 and ships a5 to B and C.
    begin_leading(&mut records, "a", 1, &promoted(None));
    ship(&mut records, "a", 1, "b", "a5");
    ship(&mut records, "a", 1, "c", "a5");
    // B promotes a5 (2) and ships b3 to C; B dies, C promotes b3 (3).
    begin_leading(&mut records, "b", 2, &promoted(Some("a5")));
    ship(&mut records, "b", 2, "c", "b3");
    assert!(protected(&records).contains("A5"));
    begin_leading(&mut records, "c", 3, &promoted(Some("b3")));
    let forks: Vec<(&str, &str)> = records["c"]
        .forks
        .iter()
        .map(|f| (f.node.as_str(), f.snapshot.identity.as_str()))
        .collect();
    assert_eq!(forks, [("a", "A5"), ("b", "B3")]);
    // B returns and is shipped to: its record is rewritten, A's fork point stays.
    ship(&mut records, "c", 3, "b", "c4");
    let p = protected(&records);
    assert!(p.contains("A5") && !p.contains("B3"), "{p:?}");
    // C restarts and leads again (its live subvolume kept).
    begin_leading(&mut records, "c", 5, &promoted(None));
    assert!(protected(&records).contains("A5"));
    // A returns and is shipped to: its fork point is done with.
    ship(&mut records, "c", 5, "a", "c6");
    let p = protected(&records);
    assert!(!p.contains("A5"), "{p:?}");
    assert!(p.contains("C6") && p.contains("C4"), "{p:?}");
}
