//! `btrfs_` tier: the btrfs engine against real btrfs. Each node is a loop-mounted
//! image file (made in a tempdir) mounted at the **same path** inside its own private
//! mount namespace (a `unshare -m` helper process), so the engine's rule "same paths on
//! every node" holds; the transport to a node is `nsenter -t PID -m --` (the lab may
//! use ssh, the engine does not care). Everything is unmounted, the helpers killed and
//! the loop devices detached on drop, also when a test panics.
//!
//! Needs root, btrfs in the kernel, btrfs-progs, util-linux (`losetup`, `unshare`,
//! `nsenter`). Without them each test says why and passes without checking anything.
//! Writes the send sizes to `$CARGO_TARGET_TMPDIR/btrfs_bytes.json`. The shipping-loop
//! test also needs a real etcd on loopback (`etcd-server`, as the `etcd_` tier). The
//! fork-point test writes the replica records the way the controller and the shipper
//! do, in memory.

mod common;

use nfsha_server::btrfs::{BtrfsHost, BtrfsSettings, Engine, Node, RealBtrfs, ShipReport, shipper};
use nfsha_server::{
    Acquire, Coordinator, EtcdCoordinator, EtcdOptions, LeaderRecord, MemberInfo, MemberState,
    StatusHandle,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn sh(argv: &[&str]) -> (bool, String) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn sh_ok(argv: &[&str]) -> String {
    let (ok, text) = sh(argv);
    assert!(ok, "{argv:?} failed: {text}");
    text
}

/// Why this machine cannot run the tier, if it cannot.
fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root (loop devices and mounts need root)".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("btrfs"))
    {
        return Some("btrfs is not in this kernel (/proc/filesystems)".into());
    }
    for tool in ["btrfs", "mkfs.btrfs", "losetup", "unshare", "nsenter"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Some(format!(
                "{tool} is not installed (btrfs-progs / util-linux)"
            ));
        }
    }
    None
}

macro_rules! need_btrfs {
    () => {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// One node: an image file, its loop device, a mount namespace holding the mount.
struct BtrfsNode {
    name: String,
    helper: Child,
    loopdev: String,
    mnt: PathBuf,
}

impl BtrfsNode {
    /// Make a `size_mb` btrfs image in `dir`, attach it and mount it at `mnt` inside a
    /// fresh mount namespace.
    fn new(dir: &Path, name: &str, mnt: &Path, size_mb: u64) -> Self {
        let img = dir.join(format!("{name}.img"));
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mb << 20)
            .unwrap();
        sh_ok(&["mkfs.btrfs", "-q", img.to_str().unwrap()]);
        let loopdev = sh_ok(&["losetup", "--find", "--show", img.to_str().unwrap()])
            .trim()
            .to_owned();
        let helper = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "100000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let node = BtrfsNode {
            name: name.to_owned(),
            helper,
            loopdev,
            mnt: mnt.to_owned(),
        };
        // The helper's namespace exists once its mount namespace differs from ours.
        let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{}/ns/mnt", node.helper.id())).ok()
            == Some(ours.clone())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "unshare did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::create_dir_all(mnt).unwrap();
        let ld = node.loopdev.clone();
        node.run(&["mount", &ld, mnt.to_str().unwrap()]);
        node
    }

    fn prefix(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.helper.id().to_string(),
            "-m".into(),
            "--".into(),
        ]
    }

    fn node(&self) -> Node {
        Node {
            name: self.name.clone(),
            transport: self.prefix(),
        }
    }

    fn run(&self, argv: &[&str]) -> String {
        let mut v: Vec<String> = self.prefix();
        v.extend(argv.iter().map(|s| (*s).to_owned()));
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        sh_ok(&r)
    }

    fn try_run(&self, argv: &[&str]) -> (bool, String) {
        let mut v: Vec<String> = self.prefix();
        v.extend(argv.iter().map(|s| (*s).to_owned()));
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        sh(&r)
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.mnt.join(rel);
        self.run(&[
            "sh",
            "-c",
            "mkdir -p \"$(dirname \"$1\")\" && printf %s \"$2\" > \"$1\"",
            "sh",
            path.to_str().unwrap(),
            content,
        ]);
    }

    fn random(&self, rel: &str, mb: u32) {
        let path = self.mnt.join(rel);
        self.run(&[
            "dd",
            "if=/dev/urandom",
            &format!("of={}", path.display()),
            "bs=1M",
            &format!("count={mb}"),
            "status=none",
        ]);
    }

    fn read(&self, rel: &str) -> Option<String> {
        let (ok, text) = self.try_run(&["cat", self.mnt.join(rel).to_str().unwrap()]);
        ok.then_some(text)
    }
}

impl Drop for BtrfsNode {
    fn drop(&mut self) {
        let mnt = self.mnt.display().to_string();
        let _ = self.try_run(&["umount", "-R", &mnt]);
        let _ = self.helper.kill();
        let _ = self.helper.wait();
        let _ = sh(&["losetup", "-d", &self.loopdev]);
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    a: BtrfsNode,
    b: BtrfsNode,
    settings: BtrfsSettings,
}

/// Two nodes `a`, `b`, each with the live subvolume path and a snapshot directory at
/// the same paths; `a` has the live subvolume. `snapdir_subvol`: make the snapshot
/// directory a subvolume of its own (else a plain directory).
fn cluster(snapdir_subvol: bool) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("srv");
    let a = BtrfsNode::new(dir.path(), "a", &mnt, 512);
    let b = BtrfsNode::new(dir.path(), "b", &mnt, 512);
    let snaps = mnt.join(".snapshots");
    for n in [&a, &b] {
        if snapdir_subvol {
            n.run(&["btrfs", "subvolume", "create", snaps.to_str().unwrap()]);
        } else {
            n.run(&["mkdir", snaps.to_str().unwrap()]);
        }
    }
    let live = mnt.join("data");
    a.run(&["btrfs", "subvolume", "create", live.to_str().unwrap()]);
    Cluster {
        _dir: dir,
        settings: BtrfsSettings {
            live,
            snapshot_dir: snaps,
            keep: 3,
            transport: Vec::new(),
        },
        a,
        b,
    }
}

fn host() -> RealBtrfs {
    RealBtrfs::new(Duration::from_secs(30), Duration::from_secs(120))
}

/// `node`'s engine, reaching `peer` through `peer`'s namespace prefix.
fn engine(c: &Cluster, me: &BtrfsNode, peer: &BtrfsNode, h: RealBtrfs) -> Engine<RealBtrfs> {
    let mut s = c.settings.clone();
    s.transport = peer.prefix();
    Engine::with_node(h, s, me.node())
}

fn record(name: &str, value: serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("btrfs_bytes.json");
    let mut all: serde_json::Map<String, serde_json::Value> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    all.insert(name.to_owned(), value);
    std::fs::write(&file, serde_json::to_vec_pretty(&all).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_full_then_incremental_send_between_two_filesystems() {
    need_btrfs!();
    let c = cluster(false);
    let a = engine(&c, &c.a, &c.b, host());
    c.a.random("data/big.bin", 32);
    c.a.write("data/dir/small.txt", "v1");
    let s1 = a.take_snapshot(7, 1_000).await.unwrap();
    let r1 = a.replicate("b", 7, 1_000, &BTreeSet::new()).await.unwrap();
    assert_eq!(r1.parent, None, "{r1:?}");
    c.a.write("data/dir/small.txt", "v2");
    c.a.write("data/new.txt", "hello");
    let s2 = a.take_snapshot(7, 2_000).await.unwrap();
    let r2 = a.replicate("b", 7, 2_000, &BTreeSet::new()).await.unwrap();
    assert_eq!(r2.parent.as_deref(), Some(s1.name.as_str()));
    let (full, incr) = (r1.bytes.unwrap(), r2.bytes.unwrap());
    // A full send of the second snapshot, for comparison.
    let full2 = nfsha_server::btrfs::host::pipeline(
        &c.a.node()
            .transport
            .iter()
            .cloned()
            .chain(
                [
                    "btrfs",
                    "send",
                    "-q",
                    c.settings.snapshot_dir.join(&s2.name).to_str().unwrap(),
                ]
                .map(String::from),
            )
            .collect::<Vec<_>>(),
        &["cat".into()],
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .bytes;
    eprintln!("full send {full} B, incremental {incr} B, full send of the same snapshot {full2} B");
    record(
        "full_then_incremental",
        serde_json::json!({"full_first": full, "incremental": incr, "full_of_second": full2}),
    );
    assert!(full > 32 << 20, "{full}");
    assert!(incr < 64 << 10, "incremental {incr} B");
    assert!(incr * 100 < full2);
    // b holds both, read-only, identified by a's uuids, with a's content.
    let inv = RealBtrfs::new(Duration::from_secs(30), Duration::from_secs(30))
        .list(&c.b.node(), &c.settings.snapshot_dir)
        .await
        .unwrap();
    let ids: Vec<&str> = inv.iter().map(|s| s.identity()).collect();
    assert!(
        ids.contains(&s1.uuid.as_str()) && ids.contains(&s2.uuid.as_str()),
        "{inv:?}"
    );
    assert!(inv.iter().all(|s| s.readonly));
    assert_eq!(
        c.b.read(&format!(".snapshots/{}/dir/small.txt", s2.name))
            .as_deref(),
        Some("v2")
    );
    // Up to date: nothing sent.
    let r3 = a.replicate("b", 7, 3_000, &BTreeSet::new()).await.unwrap();
    assert_eq!(r3.bytes, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_a_killed_transfer_is_detected_cleaned_and_redone() {
    need_btrfs!();
    let c = cluster(true);
    let a = engine(&c, &c.a, &c.b, host());
    c.a.write("data/f", "one");
    let s1 = a.take_snapshot(7, 1_000).await.unwrap();
    a.replicate("b", 7, 1_000, &BTreeSet::new()).await.unwrap();
    c.a.random("data/big.bin", 64);
    let s2 = a.take_snapshot(7, 2_000).await.unwrap();

    // A transport under which `btrfs receive` gets 4 MiB and then a stalled stream:
    // the deadline kills the group (btrfs send, nsenter, sh, head, sleep, btrfs
    // receive) mid-stream. Other commands pass through.
    let stall = c._dir.path().join("stall.sh");
    std::fs::write(&stall, "#!/bin/sh\ncase \"$2\" in\n  receive) { head -c 4194304; exec sleep 600; } | \"$@\" ;;\n  *) exec \"$@\" ;;\nesac\n").unwrap();
    sh_ok(&["chmod", "+x", stall.to_str().unwrap()]);
    let mut s = c.settings.clone();
    s.transport = c.b.prefix();
    s.transport.push(stall.display().to_string());
    let killer = Engine::with_node(
        RealBtrfs::new(Duration::from_secs(30), Duration::from_secs(3)),
        s,
        c.a.node(),
    );
    let e = killer
        .replicate("b", 7, 2_000, &BTreeSet::new())
        .await
        .unwrap_err();
    let msg = nfsha_core::error_chain(&e);
    assert!(
        msg.contains("btrfs receive") && msg.contains("process group was killed"),
        "{msg}"
    );
    // The engine removed the half-received snapshot at once.
    let inv = host()
        .list(&c.b.node(), &c.settings.snapshot_dir)
        .await
        .unwrap();
    assert_eq!(inv.len(), 1, "{inv:?}");
    assert_eq!(inv[0].identity(), s1.uuid);

    // Cut again, this time straight through the host (as if the leader crashed before
    // its cleanup): the partial stays, writable, without a received uuid.
    let e = RealBtrfs::new(Duration::from_secs(30), Duration::from_secs(3))
        .transfer(
            &c.a.node(),
            &c.settings.snapshot_dir.join(&s2.name),
            Some(&c.settings.snapshot_dir.join(&s1.name)),
            &Node {
                name: "b".into(),
                transport: {
                    let mut t = c.b.prefix();
                    t.push(stall.display().to_string());
                    t
                },
            },
            &c.settings.snapshot_dir,
        )
        .await
        .unwrap_err();
    let msg = nfsha_core::error_chain(&e);
    assert!(
        msg.contains("btrfs receive") && msg.contains("killed"),
        "{msg}"
    );
    let inv = host()
        .list(&c.b.node(), &c.settings.snapshot_dir)
        .await
        .unwrap();
    let partial = inv
        .iter()
        .find(|s| s.name == s2.name)
        .expect("partial left");
    assert!(
        !partial.readonly && partial.received_uuid.is_none(),
        "{partial:?}"
    );

    // The next replication detects and removes it, then redoes the send.
    let before = std::time::Instant::now();
    let r = a.replicate("b", 7, 3_000, &BTreeSet::new()).await.unwrap();
    eprintln!("redone in {:?}: {r:?}", before.elapsed());
    assert_eq!(r.removed_partials, vec![s2.name.clone()]);
    assert_eq!(r.parent.as_deref(), Some(s1.name.as_str()));
    let inv = host()
        .list(&c.b.node(), &c.settings.snapshot_dir)
        .await
        .unwrap();
    let got = inv.iter().find(|s| s.name == s2.name).unwrap();
    assert!(got.readonly && got.identity() == s2.uuid, "{got:?}");
    record(
        "redone_after_kill",
        serde_json::json!({"incremental_redo": r.bytes}),
    );
    // And the standby can promote it: the live subvolume has the data.
    let b = engine(&c, &c.b, &c.a, host());
    let p = b.promote(8, 4_000).await.unwrap();
    assert_eq!(p.snapshot.as_deref(), Some(s2.name.as_str()));
    assert_eq!(c.b.read("data/f").as_deref(), Some("one"));
    let (ok, _) =
        c.b.try_run(&["touch", c.b.mnt.join("data/writable").to_str().unwrap()]);
    assert!(ok, "the promoted subvolume is writable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_divergent_writes_on_the_old_primary_are_kept_and_counted_then_resynced() {
    need_btrfs!();
    let c = cluster(false);
    let a = engine(&c, &c.a, &c.b, host());
    c.a.write("data/keep.txt", "k");
    c.a.write("data/mod.txt", "before");
    c.a.write("data/gone.txt", "will be deleted");
    c.a.random("data/big.bin", 8);
    a.take_snapshot(7, 1_000).await.unwrap();
    a.replicate("b", 7, 1_000, &BTreeSet::new()).await.unwrap();
    c.a.write("data/keep.txt", "k");
    let fork = a.take_snapshot(7, 2_000).await.unwrap();
    a.replicate("b", 7, 2_000, &BTreeSet::new()).await.unwrap();
    // a keeps writing after its last shipped snapshot, then dies: 5 files.
    c.a.write("data/lost1.txt", "written on a after the fork");
    c.a.write("data/sub/lost2.txt", "also");
    c.a.write("data/mod.txt", "after");
    c.a.run(&["rm", c.a.mnt.join("data/gone.txt").to_str().unwrap()]);
    let own = a.take_snapshot(7, 3_000).await.unwrap();
    c.a.write("data/lost3.txt", "after a's own last snapshot");

    // b takes over from its copy of the fork snapshot and writes.
    let b = engine(&c, &c.b, &c.a, host());
    let p = b.promote(9, 4_000).await.unwrap();
    assert_eq!(p.identity.as_deref(), Some(fork.uuid.as_str()));
    c.b.write("data/on_b.txt", "new primary");
    let b1 = b.take_snapshot(9, 5_000).await.unwrap();

    // a returns as a standby: b ships to it.
    let r = b.replicate("a", 9, 6_000, &BTreeSet::new()).await.unwrap();
    eprintln!("{r:#?}");
    let q = r.quarantined.clone().expect("quarantined");
    assert_eq!(q.fork.as_deref(), Some(fork.name.as_str()));
    // lost1, sub (new directory), sub/lost2, mod, gone, lost3.
    assert_eq!(q.changed_files, Some(6), "{q:?}");
    assert!(q.kept);
    // Resynced incrementally from the fork point.
    assert_eq!(r.parent.as_deref(), Some(fork.name.as_str()));
    assert!(r.bytes.unwrap() < 64 << 10, "{r:?}");
    record(
        "failback_resync",
        serde_json::json!({"incremental_from_fork": r.bytes, "diverged_changed_files": q.changed_files}),
    );
    // The quarantine is read-only and holds a's writes; a's live subvolume moved.
    let inv = host()
        .list(&c.a.node(), &c.settings.snapshot_dir)
        .await
        .unwrap();
    let d = inv.iter().find(|s| s.name == q.name).unwrap();
    assert!(d.readonly);
    assert_eq!(
        c.a.read(&format!(".snapshots/{}/lost3.txt", q.name))
            .as_deref(),
        Some("after a's own last snapshot")
    );
    assert_eq!(c.a.read("data/keep.txt"), None);
    let got = inv.iter().find(|s| s.identity() == b1.uuid).unwrap();
    assert!(got.readonly);
    assert_eq!(
        c.a.read(&format!(".snapshots/{}/on_b.txt", got.name))
            .as_deref(),
        Some("new primary")
    );
    assert!(
        inv.iter().any(|s| s.uuid == own.uuid),
        "a's own snapshot is kept"
    );
    // Listed, exportable, and dropped only on request.
    let a_engine = engine(&c, &c.a, &c.b, host());
    let listed = a_engine.diverged().await.unwrap();
    assert_eq!(listed.len(), 1);
    let stream = c.a.mnt.join("diverged.stream");
    a_engine.diverged_export(&q.name, &stream).await.unwrap();
    let size = c.a.run(&["stat", "-c", "%s", stream.to_str().unwrap()]);
    assert!(size.trim().parse::<u64>().unwrap() > 8 << 20, "{size}");
    a_engine.diverged_drop(&q.name).await.unwrap();
    assert!(a_engine.diverged().await.unwrap().is_empty());
}

type Records = std::collections::BTreeMap<String, nfsha_server::ReplicaRecord>;

/// Five snapshot periods of leader `e` (on `node`) of `epoch` with its retention,
/// protection as the shipper computes it from `records` and its promotion `p`.
async fn lead_for_a_while(
    node: &BtrfsNode,
    e: &Engine<RealBtrfs>,
    records: &Records,
    p: &nfsha_server::btrfs::Promotion,
    epoch: u64,
) {
    for i in 0..5 {
        node.write("data/f.txt", &format!("{epoch}-{i}"));
        e.take_snapshot(epoch, epoch * 10_000 + i).await.unwrap();
        let protected = shipper::protected_identities(records, Some(p));
        e.prune_local(&protected).await.unwrap();
    }
}

/// `node` begins serving `epoch` after promoting `p`: its own record, as the
/// controller writes it.
fn lead(records: &mut Records, node: &str, epoch: u64, p: &nfsha_server::btrfs::Promotion) {
    let own = shipper::own_record(node, epoch, 0, records, Some(p));
    records.insert(node.into(), own);
}

/// `n` (engine `e`) promotes the snapshot `fork` (epoch `epochs.0`) and leads for a
/// while, restarts and leads `epochs.1` (live subvolume kept) for a while; `fork` must
/// still be there. Returns the second promotion.
async fn promote_restart_and_lead(
    c: &Cluster,
    n: &BtrfsNode,
    e: &Engine<RealBtrfs>,
    records: &mut Records,
    epochs: (u64, u64),
    fork: &str,
) -> nfsha_server::btrfs::Promotion {
    let first = e.promote(epochs.0, 0).await.unwrap();
    assert_eq!(first.identity.as_deref(), Some(fork));
    lead(records, &n.name, epochs.0, &first);
    lead_for_a_while(n, e, records, &first, epochs.0).await;
    let again = e.promote(epochs.1, 0).await.unwrap();
    assert_eq!(again.snapshot, None, "{} kept its live subvolume", n.name);
    lead(records, &n.name, epochs.1, &again);
    lead_for_a_while(n, e, records, &again, epochs.1).await;
    assert!(holds(n, c, fork).await, "{} pruned the fork point", n.name);
    again
}

async fn holds(node: &BtrfsNode, c: &Cluster, identity: &str) -> bool {
    host()
        .list(&node.node(), &c.settings.snapshot_dir)
        .await
        .unwrap()
        .iter()
        .any(|s| s.identity() == identity)
}

/// Issue 12 on real btrfs (received_uuid / uuid as the kernel sets them): A leads and
/// ships, dies; B promotes, restarts and leads again (its live subvolume kept); A
/// returns and is resynced; B dies, A promotes B's snapshot, restarts, leads again; B
/// returns. Each returning node's fork point is still on the leader (keep = 2, five
/// snapshots a leadership), so its divergent writes are counted and the resync is
/// incremental. Replica records as the controller and the shipper write them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_the_fork_point_survives_restarts_and_failovers_of_the_leader() {
    need_btrfs!();
    let mut c = cluster(false);
    c.settings.keep = 2;
    let never = nfsha_server::btrfs::Promotion {
        snapshot: None,
        identity: None,
        quarantined: None,
        removed_partials: vec![],
    };
    let ship = |records: &mut Records, by: &str, epoch: u64, to: &str, r: &ShipReport| {
        let snap = nfsha_server::coordinator::SnapshotRef {
            name: r.snapshot.clone(),
            identity: r.identity.clone(),
        };
        let rec = shipper::shipped_record(by, epoch, 0, snap, Some(0), records.get(to), to);
        records.insert(to.into(), rec);
    };
    let mut records = Records::new();
    let a = engine(&c, &c.a, &c.b, host());
    lead(&mut records, "a", 7, &never);
    c.a.write("data/f.txt", "1");
    a.take_snapshot(7, 1_000).await.unwrap();
    a.replicate("b", 7, 0, &BTreeSet::new()).await.unwrap();
    c.a.write("data/f.txt", "2");
    let fork_a = a.take_snapshot(7, 2_000).await.unwrap();
    let r = a.replicate("b", 7, 0, &BTreeSet::new()).await.unwrap();
    ship(&mut records, "a", 7, "b", &r);
    c.a.write("data/lost_a.txt", "after the fork");

    // B leads (9), restarts and leads again (11).
    let b = engine(&c, &c.b, &c.a, host());
    let p11 = promote_restart_and_lead(&c, &c.b, &b, &mut records, (9, 11), &fork_a.uuid).await;

    // A returns.
    let protected = shipper::protected_identities(&records, Some(&p11));
    let r = b.replicate("a", 11, 0, &protected).await.unwrap();
    let q = r.quarantined.clone().expect("quarantined");
    assert_eq!(
        (q.fork.as_deref(), q.changed_files, q.kept),
        (Some(fork_a.name.as_str()), Some(1), true),
        "{r:?}"
    );
    assert_eq!(r.parent.as_deref(), Some(fork_a.name.as_str()));
    ship(&mut records, "b", 11, "a", &r);
    let fork_b = r.identity.clone();
    c.b.write("data/lost_b.txt", "after the second fork");

    // B dies. A promotes B's snapshot (13), restarts and leads again (15).
    let p15 = promote_restart_and_lead(&c, &c.a, &a, &mut records, (13, 15), &fork_b).await;

    // B returns.
    let protected = shipper::protected_identities(&records, Some(&p15));
    let r = a.replicate("b", 15, 0, &protected).await.unwrap();
    let q = r.quarantined.clone().expect("quarantined");
    assert_eq!((q.changed_files, q.kept), (Some(1), true), "{r:?}");
    assert_eq!(
        q.fork, r.parent,
        "compared with and resynced from the fork point"
    );
    assert!(r.parent.is_some(), "incremental: {r:?}");
    assert!(r.bytes.unwrap() < 64 << 10, "{r:?}");
}

/// In `cluster` on `etcd`: `a` holds the leader key, `b` is a live standby member.
/// Returns both coordinators and the epoch.
async fn leader_and_standby(
    etcd: &common::Etcd,
    cluster: &str,
    ttl: Duration,
) -> (Arc<EtcdCoordinator>, Arc<EtcdCoordinator>, u64) {
    let connect = |node: &'static str| {
        let ep = etcd.endpoint();
        async move {
            Arc::new(
                EtcdCoordinator::connect(&EtcdOptions::new(vec![ep]), cluster, node, ttl)
                    .await
                    .unwrap(),
            )
        }
    };
    let ca = connect("a").await;
    let cb = connect("b").await;
    let Acquire::Acquired { epoch } = ca
        .acquire(&LeaderRecord {
            node: "a".into(),
            address: None,
            api: None,
            serving: true,
        })
        .await
        .unwrap()
    else {
        panic!("a must lead");
    };
    let member = MemberInfo {
        node: "b".into(),
        state: MemberState::Standby,
        epoch_seen: epoch,
        serving: false,
        address: None,
        api: None,
        detail: None,
        lag_ms: None,
        updated_ms: 0,
    };
    assert!(cb.heartbeat(&member, None).await.unwrap());
    (ca, cb, epoch)
}

/// Node a's shipping loop settings as leader of `epoch`: a snapshot every second.
fn leader_a_ship_config(
    epoch: u64,
    loop_period: Duration,
    ttl: Duration,
    promotion: nfsha_server::btrfs::Promotion,
) -> nfsha_server::btrfs::shipper::BtrfsShipperConfig {
    nfsha_server::btrfs::shipper::BtrfsShipperConfig {
        node: "a".into(),
        epoch,
        interval: Duration::from_secs(1),
        step_timeout: Duration::from_secs(60),
        loop_period,
        tail: ttl + loop_period,
        since: tokio::time::Instant::now(),
        promotion: Some(promotion),
    }
}

/// The leader's shipping loop against real etcd and real btrfs: it publishes its
/// promotion and heartbeat, snapshots, ships to the standby member, records the
/// snapshot's identity and position, and the standby's gate computes its RPO from
/// those values alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_the_leaders_ship_loop_records_identity_and_position_for_the_gate() {
    need_btrfs!();
    let etcd = common::Etcd::start().await;
    let c = cluster(false);
    let ttl = Duration::from_secs(3);
    let (ca, cb, epoch) = leader_and_standby(&etcd, "cb", ttl).await;
    c.a.write("data/f", "served by a");
    let a = Arc::new(engine(&c, &c.a, &c.b, host()));
    let promotion = a.promote(epoch, 0).await.unwrap();
    assert_eq!(promotion.snapshot, None, "a's live subvolume is kept");
    let status = StatusHandle::new("a", "cb", ttl);
    let loop_period = Duration::from_millis(300);
    let task = tokio::spawn(nfsha_server::btrfs::shipper::btrfs_ship_loop(
        ca.clone(),
        a.clone(),
        status.clone(),
        leader_a_ship_config(epoch, loop_period, ttl, promotion),
    ));
    // Deadline-bounded wait for two recorded snapshots (the second one incremental).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut first = None;
    let view = loop {
        let view = cb.replica_view("b").await.unwrap();
        if let Some(r) = &view.record
            && let Some(s) = &r.snapshot
        {
            match &first {
                None => first = Some(s.identity.clone()),
                // The heartbeat is written at the start of a tick, so wait for the
                // one after the record's snapshot.
                Some(f)
                    if *f != s.identity
                        && view.position.as_ref().map(|p| p.position_ms) >= r.position_ms =>
                {
                    break view;
                }
                Some(_) => {}
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no second record: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    task.abort();
    let rec = view.record.clone().unwrap();
    let snap = rec.snapshot.clone().unwrap();
    assert_eq!(rec.epoch, epoch);
    // b holds exactly that snapshot, complete.
    let inv = host()
        .list(&c.b.node(), &c.settings.snapshot_dir)
        .await
        .unwrap();
    assert!(
        inv.iter()
            .any(|s| s.identity() == snap.identity && s.readonly),
        "{inv:?}"
    );
    assert_eq!(
        c.b.read(&format!(".snapshots/{}/f", snap.name)).as_deref(),
        Some("served by a")
    );
    // The gate: from the leader's own positions only; fresh (well under 60 s).
    let pos = view.position.clone().expect("heartbeat position");
    assert_eq!(pos.epoch, epoch);
    assert!(pos.position_ms >= rec.position_ms.unwrap());
    let v = nfsha_server::judge("b", &view, 0, Duration::from_secs(60));
    assert!(!v.behind, "{v:?}");
    let rpo = v.lag_ms.unwrap();
    assert!(rpo >= pos.tail_ms && rpo < 60_000, "{v:?}");
    eprintln!("gate verdict: {}", v.reason);
    // The leader's status shows the live RPO and the bytes per standby.
    let st = status
        .get()
        .replication
        .get("b")
        .cloned()
        .expect("status of b");
    assert!(st.rpo_ms.is_some() && st.snapshot.is_some(), "{st:?}");
    let m = nfsha_server::replication::metrics_text(&status.get());
    assert!(
        m.lines()
            .any(|l| l.starts_with("nfsha_server_replication_rpo_seconds{standby=\"b\"} ")),
        "{m}"
    );
    // The promotion record was published with the epoch.
    let cs = cb.cluster_status("cb").await.unwrap();
    assert_eq!(cs.promoted.get("a").map(|p| p.epoch), Some(epoch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_the_heartbeat_position_advances_while_a_transfer_runs() {
    need_btrfs!();
    let etcd = common::Etcd::start().await;
    let c = cluster(false);
    let ttl = Duration::from_secs(3);
    let (ca, cb, epoch) = leader_and_standby(&etcd, "ch", ttl).await;
    c.a.random("data/big.bin", 8);
    // A slow link: `btrfs receive` gets 1 MiB, then nothing for 12 s, then the rest.
    let slow = c._dir.path().join("slow.sh");
    std::fs::write(
        &slow,
        "#!/bin/sh\ncase \"$2\" in\n  receive) { head -c 1048576; sleep 12; cat; } | \"$@\" ;;\n  *) exec \"$@\" ;;\nesac\n",
    )
    .unwrap();
    sh_ok(&["chmod", "+x", slow.to_str().unwrap()]);
    let mut s = c.settings.clone();
    s.transport = c.b.prefix();
    s.transport.push(slow.display().to_string());
    let a = Arc::new(Engine::with_node(host(), s, c.a.node()));
    let promotion = a.promote(epoch, 0).await.unwrap();
    // 1 s: each etcd call is bounded by it (a loaded machine's etcd needs the time).
    let loop_period = Duration::from_secs(1);
    let task = tokio::spawn(nfsha_server::btrfs::shipper::btrfs_ship_loop(
        ca.clone(),
        a.clone(),
        StatusHandle::new("a", "ch", ttl),
        leader_a_ship_config(epoch, loop_period, ttl, promotion),
    ));
    let position = || async {
        cb.replica_view("b")
            .await
            .unwrap()
            .position
            .map(|p| p.position_ms)
    };
    // Deadline-bounded: the first transfer (a full send) is stalled in its 12 s pause.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // This test's receive only (other tests of the tier run at the same time).
    let receive = format!("^btrfs receive {}", c.settings.snapshot_dir.display());
    while !c.b.try_run(&["pgrep", "-f", &receive]).0 {
        assert!(std::time::Instant::now() < deadline, "no receive started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p1 = position().await.expect("a heartbeat before the transfer");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let p2 = position().await.expect("a heartbeat");
    let view = cb.replica_view("b").await.unwrap();
    task.abort();
    assert!(
        view.record
            .as_ref()
            .and_then(|r| r.snapshot.as_ref())
            .is_none(),
        "the transfer was still running: {view:?}"
    );
    // While it ran, the leader went on saying where it is (every loop period): the
    // standby's bound grows with the writes it is missing. (A heartbeat behind the
    // transfer stands still: p2 == p1. How far it moves depends on how fast etcd
    // answers on this machine.)
    eprintln!("heartbeat position during the transfer: {p1} → {p2} ms");
    assert!(
        p2 > p1,
        "heartbeat position stood still during the transfer: {p1} → {p2} ms"
    );
}
