//! `etcd_` tier: the leader lease, self-fencing, races and switchover against a real
//! etcd on loopback (Debian `etcd-server`), with fake hosts that record serving
//! intervals on the monotonic clock; in replicated mode, snapshot shipping with its
//! replica records and the promotion gate on replication lag (a stale standby or a
//! returning old leader keeps the cluster leaderless until an operator accepts the lag).

mod common;

use common::{Etcd, Proxy, wait_for};
use futures_util::StreamExt;
use nfsha_config::StorageMode;
use nfsha_server::{
    Acquire, Controller, Coordinator, Direction, EpochFilter, EtcdCoordinator, EtcdOptions,
    FakeHost, HostCall, LeadExit, LeaderRecord, MemberState, ReplicaRecord, ReplicationSettings,
    ServingLog, Settings, StatusHandle, Step, SwitchoverRequest,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TTL: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_secs(1);
const LOOP: Duration = Duration::from_millis(400);

fn settings(node: &str, cluster: &str) -> Settings {
    Settings {
        node: node.into(),
        cluster: cluster.into(),
        ttl: TTL,
        loop_period: LOOP,
        safety_margin: MARGIN,
        fence_lead: LOOP,
        step_timeout: Duration::from_secs(2),
        storage: StorageMode::Replicated,
        address: Some(format!("addr-of-{node}")),
        api: None,
        failure_backoff: TTL,
        replication: None,
    }
}

/// Shipping interval and max lag of the replication tests. The lag is judged up to one
/// TTL after the leader stopped, so a fresh standby sees up to interval + TTL + a loop.
const SHIP_INTERVAL: Duration = Duration::from_secs(1);
const MAX_LAG: Duration = Duration::from_secs(8);

fn replicated(node: &str, cluster: &str) -> Settings {
    Settings {
        replication: Some(ReplicationSettings {
            interval: SHIP_INTERVAL,
            max_lag: MAX_LAG,
        }),
        ..settings(node, cluster)
    }
}

async fn coordinator(endpoint: &str, cluster: &str, node: &str) -> Arc<EtcdCoordinator> {
    Arc::new(
        EtcdCoordinator::connect(
            &EtcdOptions::new(vec![endpoint.to_owned()]),
            cluster,
            node,
            TTL,
        )
        .await
        .expect("connect"),
    )
}

struct Node {
    name: String,
    host: FakeHost,
    status: StatusHandle,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Option<LeadExit>>>,
}

impl Node {
    async fn start(endpoint: &str, cluster: &str, name: &str, log: &ServingLog) -> Node {
        Self::start_with(endpoint, settings(name, cluster), log).await
    }

    async fn start_with(endpoint: &str, settings: Settings, log: &ServingLog) -> Node {
        let host = FakeHost::with_log(settings.node.clone(), log.clone());
        Self::start_on(endpoint, settings, host).await
    }

    /// A node on `host` (failures injected before it starts).
    async fn start_on(endpoint: &str, settings: Settings, host: FakeHost) -> Node {
        let (cluster, name) = (settings.cluster.clone(), settings.node.clone());
        let (cluster, name) = (cluster.as_str(), name.as_str());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let coord = coordinator(endpoint, cluster, name).await;
        let (tx, rx) = watch::channel(false);
        let c = Controller::new(settings, coord, host.clone(), rx);
        let status = c.status();
        let task = tokio::spawn(c.run());
        Node {
            name: name.into(),
            host,
            status,
            shutdown: tx,
            task: Some(task),
        }
    }

    /// Serving according to both the controller and the host (a crashed node's last
    /// status may still say primary; its host does not).
    fn serving(&self) -> bool {
        let s = self.status.get();
        s.state == MemberState::Primary && s.serving && self.host.is_active()
    }

    fn epoch(&self) -> Option<u64> {
        self.status.get().epoch
    }

    /// SIGKILL of controller and nfsd together: no teardown, everything stops now.
    fn crash(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.host.crash();
    }

    async fn stop(&mut self) -> Option<LeadExit> {
        self.shutdown.send_replace(true);
        match self.task.take() {
            Some(t) => tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("controller stops within 20 s")
                .expect("controller task"),
            None => None,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn assert_no_overlap(log: &ServingLog) {
    if let Some((a, b)) = log.first_overlap() {
        panic!(
            "two nodes active at once: {a:?} and {b:?}; all: {:#?}",
            log.intervals()
        );
    }
}

fn time_of(host: &FakeHost, call: &HostCall, after: Instant) -> Option<Instant> {
    host.timed_calls()
        .into_iter()
        .find(|(t, c)| c == call && *t >= after)
        .map(|(t, _)| t)
}

#[test]
fn test_timing_is_accepted_by_the_settings_check() {
    settings("a", "c").check().expect("test timing is sane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_acquire_renew_release_and_epochs_grow() {
    let etcd = Etcd::start().await;
    let a = coordinator(&etcd.endpoint(), "c1", "a").await;
    let b = coordinator(&etcd.endpoint(), "c1", "b").await;
    let rec = |n: &str| LeaderRecord {
        node: n.into(),
        address: Some(format!("addr-{n}")),
        api: None,
        serving: false,
    };

    let Acquire::Acquired { epoch: e1 } = a.acquire(&rec("a")).await.expect("a acquires") else {
        panic!("a must acquire an empty cluster");
    };
    assert!(e1 > 0);
    match b.acquire(&rec("b")).await.expect("b campaigns") {
        Acquire::Held(l) => {
            assert_eq!(
                (l.node.as_str(), l.epoch, l.address.as_deref()),
                ("a", e1, Some("addr-a"))
            );
        }
        other => panic!("b must see a's key, got {other:?}"),
    }
    let status = a.cluster_status("c1").await.expect("status");
    assert_eq!(status.epoch, Some(e1), "epoch published at /nfsha/c1/epoch");

    // Clients following the cluster hear of the leader only once it says it serves.
    let mut follow = Box::pin(nfsha_server::watch_leader(
        vec![etcd.endpoint()],
        "c1".into(),
    ));
    let early = tokio::time::timeout(Duration::from_millis(500), follow.next()).await;
    assert!(early.is_err(), "announced before serving: {early:?}");
    let serving = LeaderRecord {
        serving: true,
        ..rec("a")
    };
    assert!(a.update_leader(e1, &serving).await.expect("update"));
    let heard = tokio::time::timeout(Duration::from_secs(5), follow.next())
        .await
        .expect("announced once serving")
        .expect("stream open");
    assert_eq!(
        (heard.node.as_str(), heard.epoch, heard.serving),
        ("a", e1, true)
    );
    assert!(
        !b.update_leader(e1 + 1000, &serving).await.expect("update"),
        "a wrong epoch cannot rewrite the key"
    );
    // Still on the session lease: renewals confirm it.
    assert!(a.renew(e1).await.expect("renew"));

    // Renewing for 2 × TTL keeps the key.
    let until = Instant::now() + 2 * TTL;
    while Instant::now() < until {
        assert!(
            a.renew(e1).await.expect("renew"),
            "renewal must confirm leadership"
        );
        tokio::time::sleep(LOOP).await;
    }
    assert_eq!(b.leader().await.expect("leader").map(|l| l.epoch), Some(e1));
    // A wrong epoch is not ours.
    assert!(!a.renew(e1 + 1000).await.expect("renew"));

    a.release(e1).await.expect("release");
    let Acquire::Acquired { epoch: e2 } = b.acquire(&rec("b")).await.expect("b acquires") else {
        panic!("b must acquire after release");
    };
    assert!(e2 > e1, "epochs only grow: {e2} > {e1}");
    assert!(!a.renew(e1).await.expect("renew"), "a is no longer leader");

    // Without renewals the key expires with the lease (TTL, plus etcd's check period).
    let t0 = Instant::now();
    let b_lease_dropped = b; // stop renewing: nobody calls renew on b any more
    let expired_at = loop {
        if a.leader().await.expect("leader").is_none() {
            break Instant::now();
        }
        assert!(
            t0.elapsed() < TTL * 3,
            "b's key must expire without renewals"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        expired_at - t0 >= TTL - LOOP,
        "not before ~TTL: {:?}",
        expired_at - t0
    );
    drop(b_lease_dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_self_fences_before_ttl_minus_margin_when_etcd_freezes() {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let a = Node::start(&etcd.endpoint(), "c2", "a", &log).await;
    wait_for(Duration::from_secs(10), "a serving", || {
        a.serving().then_some(())
    })
    .await;
    assert_eq!(a.host.steps_up(), Step::BRING_UP.to_vec());

    let frozen_at = Instant::now();
    etcd.freeze();
    wait_for(TTL * 2, "a to stop serving", || {
        (!a.host.is_active()).then_some(())
    })
    .await;
    let proof = a.status.lease_proof().expect("a had a lease proof");
    assert!(
        proof <= frozen_at,
        "no renewal can succeed while etcd is frozen"
    );
    let addr_down = time_of(&a.host, &HostCall::Down(Step::FloatingAddress), frozen_at)
        .expect("address removed");
    let all_down =
        time_of(&a.host, &HostCall::Down(Step::Storage), frozen_at).expect("storage down");
    assert!(
        addr_down <= proof + TTL - MARGIN,
        "floating address must be gone by proof + ttl - margin: {:?} after proof",
        addr_down - proof
    );
    assert!(
        all_down <= proof + TTL,
        "teardown done before the lease can expire"
    );
    // Address first, then the rest in reverse.
    let downs: Vec<HostCall> = a
        .host
        .timed_calls()
        .into_iter()
        .filter(|(t, c)| *t >= frozen_at && matches!(c, HostCall::Down(_)))
        .map(|(_, c)| c)
        .take(4)
        .collect();
    assert_eq!(downs, Step::TEAR_DOWN.map(HostCall::Down).to_vec());
    // It does not serve again while etcd is frozen.
    assert!(!a.host.is_active());
    etcd.thaw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_then_the_node_reacquires_with_a_new_epoch() {
    let mut etcd = Etcd::start().await;
    let log = ServingLog::new();
    let a = Node::start(&etcd.endpoint(), "c3", "a", &log).await;
    wait_for(Duration::from_secs(10), "a serving", || {
        a.serving().then_some(())
    })
    .await;
    let e1 = a.epoch().expect("epoch");

    etcd.kill();
    wait_for(TTL * 2, "a to fence with etcd dead", || {
        (!a.host.is_active()).then_some(())
    })
    .await;
    etcd.restart().await;
    wait_for(Duration::from_secs(20), "a serving again", || {
        a.serving().then_some(())
    })
    .await;
    let e2 = a.epoch().expect("epoch");
    assert!(e2 > e1, "re-acquired under a new epoch: {e2} > {e1}");
    assert_eq!(log.intervals().len(), 2, "served, fenced, served again");
    assert_no_overlap(&log);
}

/// Cut the leader off from etcd, crash leaders, heal: over several changes of
/// leadership no two nodes are ever active at once.
async fn race(n: usize, cluster: &str) {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let mut proxies = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..n {
        let p = Proxy::start(etcd.addr()).await;
        nodes.push(Node::start(&p.endpoint(), cluster, &format!("n{i}"), &log).await);
        proxies.push(p);
    }
    let leader = |nodes: &[Node]| nodes.iter().position(|n| n.serving());
    let mut epochs = Vec::new();
    let mut takeovers: Vec<(&str, f64)> = Vec::new();
    for round in 0..3 {
        for n in &nodes {
            eprintln!("round {round}: {} {:?}", n.name, n.status.get());
        }
        let l = wait_for(Duration::from_secs(15), "a leader serving", || {
            leader(&nodes)
        })
        .await;
        let serving: Vec<&str> = nodes
            .iter()
            .filter(|n| n.serving())
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(serving.len(), 1, "exactly one serving: {serving:?}");
        epochs.push(nodes[l].epoch().expect("epoch"));
        let fault_at = Instant::now();
        if round % 2 == 0 {
            // Partition: the leader keeps running but cannot reach etcd.
            proxies[l].cut();
            wait_for(Duration::from_secs(15), "another leader", || {
                leader(&nodes).filter(|&x| x != l)
            })
            .await;
            takeovers.push(("partition", fault_at.elapsed().as_secs_f64()));
            assert!(
                !nodes[l].host.is_active(),
                "the cut-off leader fenced itself"
            );
            proxies[l].heal();
        } else {
            // Crash: controller and nfsd die together.
            nodes[l].crash();
            wait_for(Duration::from_secs(15), "another leader", || {
                leader(&nodes).filter(|&x| x != l)
            })
            .await;
            takeovers.push(("crash", fault_at.elapsed().as_secs_f64()));
            let name = nodes[l].name.clone();
            nodes[l] = Node::start(&proxies[l].endpoint(), cluster, &name, &log).await;
        }
        assert_no_overlap(&log);
    }
    let l = wait_for(Duration::from_secs(15), "final leader", || leader(&nodes)).await;
    epochs.push(nodes[l].epoch().expect("epoch"));
    assert!(
        epochs.windows(2).all(|w| w[1] > w[0]),
        "epochs grow: {epochs:?}"
    );
    assert!(
        log.intervals().len() >= 4,
        "several leadership periods: {:#?}",
        log.intervals()
    );
    for n in &mut nodes {
        n.stop().await;
    }
    assert_no_overlap(&log);
    assert!(
        log.intervals().iter().all(|iv| iv.end.is_some()),
        "all stopped serving"
    );
    // Figures, not assertions: fault -> another node serving, with TTL and loop period.
    let figures = serde_json::json!({
        "nodes": n,
        "ttl_s": TTL.as_secs_f64(),
        "loop_s": LOOP.as_secs_f64(),
        "safety_margin_s": MARGIN.as_secs_f64(),
        "takeover_s": takeovers
            .iter()
            .map(|(k, s)| serde_json::json!({"fault": k, "seconds": s}))
            .collect::<Vec<_>>(),
    });
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("etcd_takeover_{cluster}.json"));
    std::fs::write(&path, figures.to_string()).expect("write figures");
    eprintln!("takeover figures in {}: {figures}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_two_controllers_racing_never_overlap() {
    race(2, "race2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_three_controllers_racing_never_overlap() {
    race(3, "race3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_switchover_moves_the_service_and_the_old_leader_stays_standby() {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let a = Node::start_with(&etcd.endpoint(), replicated("a", "c4"), &log).await;
    wait_for(Duration::from_secs(10), "a serving", || {
        a.serving().then_some(())
    })
    .await;
    let b = Node::start_with(&etcd.endpoint(), replicated("b", "c4"), &log).await;
    // Behind until a's first ship reaches it.
    wait_for(Duration::from_secs(10), "b standby", || {
        (b.status.get().state == MemberState::Standby).then_some(())
    })
    .await;
    let e1 = a.epoch().expect("epoch");

    let mut follow = Box::pin(nfsha_server::watch_leader(
        vec![etcd.endpoint()],
        "c4".into(),
    ));
    let first = tokio::time::timeout(Duration::from_secs(5), follow.next())
        .await
        .expect("watch yields the current leader")
        .expect("stream open");
    assert_eq!((first.node.as_str(), first.epoch), ("a", e1));

    let cli = coordinator(&etcd.endpoint(), "c4", "cli").await;
    let req = SwitchoverRequest {
        from: "a".into(),
        to: "b".into(),
    };
    assert!(
        cli.request_switchover(&req, Duration::from_secs(30))
            .await
            .expect("request")
    );
    assert!(
        !cli.request_switchover(&req, Duration::from_secs(30))
            .await
            .expect("request"),
        "only one pending"
    );
    wait_for(Duration::from_secs(10), "b serving", || {
        b.serving().then_some(())
    })
    .await;
    assert!(!a.host.is_active());
    assert!(b.epoch().expect("epoch") > e1);
    let a_calls = a.host.calls();
    let tail: Vec<HostCall> = a_calls[a_calls.len() - 6..].to_vec();
    let mut expected: Vec<HostCall> = Step::TEAR_DOWN.map(HostCall::Down).to_vec();
    expected.push(HostCall::FinalSync("b".into()));
    expected.push(HostCall::RoleChanged(nfsha_server::Role::Standby));
    assert_eq!(
        tail, expected,
        "address off, unexport, stop nfsd, storage, final sync, standby hook"
    );

    let next = tokio::time::timeout(Duration::from_secs(5), follow.next())
        .await
        .expect("watch yields the new leader")
        .expect("stream open");
    assert_eq!(next.node, "b");
    assert!(next.epoch > e1);
    let mut filter = EpochFilter::new();
    assert!(filter.admit(&next));
    assert!(!filter.admit(&first), "an older epoch is never admitted");

    // The request is consumed; a stays standby (no failback) for a while.
    let until = Instant::now() + TTL;
    while Instant::now() < until {
        assert!(!a.host.is_active(), "no automatic failback");
        tokio::time::sleep(LOOP).await;
    }
    assert!(
        cli.switchover_request().await.expect("read").is_none(),
        "request cleared by the target"
    );
    assert_no_overlap(&log);
}

/// Poll an async read every 50 ms until it yields `Some`, or panic after `limit`.
async fn wait_async<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn replica(cli: &EtcdCoordinator, cluster: &str, node: &str) -> Option<ReplicaRecord> {
    cli.cluster_status(cluster)
        .await
        .expect("cluster status")
        .replicas
        .get(node)
        .cloned()
}

/// Assert for `d` that no leader key appears and `node` stays behind and inactive.
async fn assert_stays_leaderless(cli: &EtcdCoordinator, node: &Node, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        let l = cli.leader().await.expect("leader read");
        assert!(
            l.is_none(),
            "no node may lead while the only candidate is behind: {l:?}"
        );
        assert!(!node.host.is_active(), "{} must not serve", node.name);
        assert_eq!(node.status.get().state, MemberState::Behind);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_the_leader_ships_to_each_standby_and_records_it() {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let a = Node::start_with(&etcd.endpoint(), replicated("a", "r1"), &log).await;
    wait_for(Duration::from_secs(10), "a serving", || {
        a.serving().then_some(())
    })
    .await;
    let e1 = a.epoch().expect("epoch");
    let b = Node::start_with(&etcd.endpoint(), replicated("b", "r1"), &log).await;
    let c = Node::start_with(&etcd.endpoint(), replicated("c", "r1"), &log).await;
    let cli = coordinator(&etcd.endpoint(), "r1", "cli").await;
    for n in ["b", "c"] {
        let rec = wait_async(Duration::from_secs(10), "a record per standby", || async {
            replica(&cli, "r1", n).await
        })
        .await;
        assert_eq!((rec.by.as_str(), rec.epoch), ("a", e1), "{n}: {rec:?}");
    }
    let own = replica(&cli, "r1", "a")
        .await
        .expect("the leader vouches for itself");
    assert_eq!((own.by.as_str(), own.epoch), ("a", e1));
    assert!(a.host.ships().contains(&"b".to_owned()));
    assert!(a.host.ships().contains(&"c".to_owned()));
    wait_for(Duration::from_secs(10), "b and c standby (fresh)", || {
        (b.status.get().state == MemberState::Standby
            && c.status.get().state == MemberState::Standby)
            .then_some(())
    })
    .await;
    // Periodic: the record moves on every interval.
    let first = replica(&cli, "r1", "b")
        .await
        .expect("record")
        .shipped_at_ms;
    let newer = wait_async(Duration::from_secs(10), "a second ship to b", || async {
        replica(&cli, "r1", "b")
            .await
            .filter(|r| r.shipped_at_ms >= first + SHIP_INTERVAL.as_millis() as u64)
    })
    .await;
    assert_eq!(newer.by, "a");
    let st = a.status.get();
    assert!(st.replication["b"].ok_total >= 2, "{:?}", st.replication);
    assert!(b.status.get().lag_ms.expect("b knows its lag") < MAX_LAG.as_millis() as u64);
    // The member state is published with the lag.
    let members = cli.cluster_status("r1").await.expect("status").members;
    let mb = members.iter().find(|m| m.node == "b").expect("b member");
    assert!(mb.lag_ms.is_some(), "{mb:?}");
    assert_no_overlap(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_fresh_standby_takes_over_when_the_leader_crashes() {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let mut a = Node::start_with(&etcd.endpoint(), replicated("a", "r2"), &log).await;
    wait_for(Duration::from_secs(10), "a serving", || {
        a.serving().then_some(())
    })
    .await;
    let e1 = a.epoch().expect("epoch");
    let b = Node::start_with(&etcd.endpoint(), replicated("b", "r2"), &log).await;
    wait_for(Duration::from_secs(10), "b fresh standby", || {
        (b.status.get().state == MemberState::Standby).then_some(())
    })
    .await;
    a.crash();
    wait_for(TTL * 3 + Duration::from_secs(5), "b serving", || {
        b.serving().then_some(())
    })
    .await;
    assert!(b.epoch().expect("epoch") > e1);
    assert_no_overlap(&log);
}

/// Issue 12: the first leader of a replicated cluster fails its storage step. It rolls
/// back, releases the key and, after its backoff, campaigns again and serves (before
/// the fix the epoch of its failed campaign left it `behind` forever, and the cluster
/// leaderless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_first_leader_whose_bring_up_fails_campaigns_again_after_its_backoff() {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let host = FakeHost::with_log("a", log.clone());
    host.fail(Step::Storage, Direction::Up, 1);
    let a = Node::start_on(&etcd.endpoint(), replicated("a", "r5"), host).await;
    let cli = coordinator(&etcd.endpoint(), "r5", "cli").await;
    wait_for(Duration::from_secs(10), "a's bring-up rolled back", || {
        a.host
            .calls()
            .contains(&HostCall::Down(Step::Storage))
            .then_some(())
    })
    .await;
    let released = Instant::now();
    wait_for(TTL * 3 + Duration::from_secs(10), "a serving again", || {
        a.serving().then_some(())
    })
    .await;
    assert!(released.elapsed() >= TTL - LOOP, "backed off ~one ttl");
    let ups = a
        .host
        .calls()
        .iter()
        .filter(|c| **c == HostCall::Up(Step::Storage))
        .count();
    assert_eq!(ups, 2, "one failed bring-up, one that served");
    let e2 = a.epoch().expect("epoch");
    let own = wait_async(
        Duration::from_secs(10),
        "a's own record of the new epoch",
        || async { replica(&cli, "r5", "a").await.filter(|r| r.epoch == e2) },
    )
    .await;
    assert_eq!(own.by, "a");
    assert_no_overlap(&log);
}

/// The open item of issue 12 on real etcd: the first leader's storage is broken for
/// good. The acquire publishes `served` with no served epoch; `b`, never shipped to,
/// is not `behind`, takes over and serves, and `served` then names it. Before the fix
/// `b` was `behind` ("no snapshot was ever shipped to this node") and the cluster
/// stayed leaderless while `a` retried every ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_first_leader_whose_storage_is_broken_for_good_leaves_the_lead_to_a_never_shipped_node()
 {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let host = FakeHost::with_log("a", log.clone());
    host.fail_always(Step::Storage, Direction::Up);
    let a = Node::start_on(&etcd.endpoint(), replicated("a", "sv1"), host).await;
    let cli = coordinator(&etcd.endpoint(), "sv1", "cli").await;
    // (The start-up cleanup also tears storage down: wait for the failed bring-up.)
    wait_for(Duration::from_secs(10), "a's bring-up rolled back", || {
        let calls = a.host.calls();
        let up = calls
            .iter()
            .position(|c| *c == HostCall::Up(Step::Storage))?;
        calls[up..]
            .contains(&HostCall::Down(Step::Storage))
            .then_some(())
    })
    .await;
    let st = cli.cluster_status("sv1").await.expect("status");
    let served = st.served.expect("served written with the epoch");
    assert_eq!((served.epoch, Some(served.acquired)), (None, st.epoch));
    let b = Node::start_with(&etcd.endpoint(), replicated("b", "sv1"), &log).await;
    wait_for(TTL * 3 + Duration::from_secs(10), "b serving", || {
        b.serving().then_some(())
    })
    .await;
    let eb = b.epoch().expect("epoch");
    let served = cli
        .cluster_status("sv1")
        .await
        .expect("status")
        .served
        .expect("served");
    assert_eq!(
        (served.epoch, served.node.as_deref(), served.acquired),
        (Some(eb), Some("b"), eb)
    );
    assert!(!a.host.is_active());
    assert_no_overlap(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_stale_standby_does_not_take_over_until_the_operator_accepts_the_lag() {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let mut a = Node::start_with(&etcd.endpoint(), replicated("a", "r3"), &log).await;
    wait_for(Duration::from_secs(10), "a serving", || {
        a.serving().then_some(())
    })
    .await;
    let b = Node::start_with(&etcd.endpoint(), replicated("b", "r3"), &log).await;
    let cli = coordinator(&etcd.endpoint(), "r3", "cli").await;
    wait_async(Duration::from_secs(10), "a first record for b", || async {
        replica(&cli, "r3", "b").await
    })
    .await;
    wait_for(Duration::from_secs(10), "b fresh standby", || {
        (b.status.get().state == MemberState::Standby).then_some(())
    })
    .await;
    // Shipping to b breaks: its copy ages past max_lag while a still serves.
    a.host.fail_ships_to("b", true);
    wait_for(MAX_LAG + Duration::from_secs(10), "b behind", || {
        (b.status.get().state == MemberState::Behind).then_some(())
    })
    .await;
    let lag = b.status.get().lag_ms.expect("lag");
    assert!(
        lag > MAX_LAG.as_millis() as u64,
        "behind means lag > max_lag: {lag} ms"
    );
    a.crash();
    wait_async(TTL * 3, "a's key expired", || async {
        cli.leader()
            .await
            .expect("leader read")
            .is_none()
            .then_some(())
    })
    .await;
    assert_stays_leaderless(&cli, &b, 2 * TTL).await;
    let st = cli.cluster_status("r3").await.expect("status");
    let mb = st.members.iter().find(|m| m.node == "b").expect("b member");
    assert_eq!(mb.state, MemberState::Behind, "published as behind: {mb:?}");

    // `nfsha server promote --to b --accept-lag`.
    assert!(
        cli.request_lag_override("b", Duration::from_secs(30))
            .await
            .expect("override")
    );
    wait_for(
        Duration::from_secs(10),
        "b serving after the override",
        || b.serving().then_some(()),
    )
    .await;
    wait_async(Duration::from_secs(5), "override consumed", || async {
        cli.cluster_status("r3")
            .await
            .expect("status")
            .accept_lag
            .is_none()
            .then_some(())
    })
    .await;
    assert_no_overlap(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_returning_old_leader_does_not_take_over_while_behind() {
    let etcd = Etcd::start().await;
    let log = ServingLog::new();
    let ep = etcd.endpoint();
    let mut a = Node::start_with(&ep, replicated("a", "r4"), &log).await;
    wait_for(Duration::from_secs(10), "a serving", || {
        a.serving().then_some(())
    })
    .await;
    let mut b = Node::start_with(&ep, replicated("b", "r4"), &log).await;
    wait_for(Duration::from_secs(10), "b fresh standby", || {
        (b.status.get().state == MemberState::Standby).then_some(())
    })
    .await;
    a.crash();
    wait_for(TTL * 3 + Duration::from_secs(5), "b serving", || {
        b.serving().then_some(())
    })
    .await;
    // b cannot ship to a: the returning a keeps its old record (its own, epoch 1).
    b.host.fail_ships_to("a", true);
    let a2 = Node::start_with(&ep, replicated("a", "r4"), &log).await;
    wait_for(
        MAX_LAG + Duration::from_secs(10),
        "returning a behind under b",
        || {
            let s = a2.status.get();
            (s.state == MemberState::Behind && s.leader.as_deref() == Some("b")).then_some(())
        },
    )
    .await;
    assert!(
        b.host.ships().contains(&"a".to_owned()),
        "b tried to ship to a"
    );
    let cli = coordinator(&ep, "r4", "cli").await;
    b.crash();
    wait_async(TTL * 3, "b's key expired", || async {
        cli.leader()
            .await
            .expect("leader read")
            .is_none()
            .then_some(())
    })
    .await;
    assert_stays_leaderless(&cli, &a2, 2 * TTL).await;
    assert_no_overlap(&log);
}

/// Issue 16, hole 2: a leader key nfsha did not write — garbage, or a well-formed record
/// without a lease (it would never expire) — used to stop every election until someone
/// deleted it by hand. Now it counts as vacant: a controller deletes it (guarded by its
/// mod_revision) and is elected; agents never follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_garbage_or_lease_less_leader_key_does_not_block_elections() {
    let etcd = Etcd::start().await;
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect");
    let forged = [
        ("p1", b"not json at all".to_vec()),
        (
            "p2",
            br#"{"node":"evil","address":"10.66.6.6","serving":true}"#.to_vec(),
        ),
    ];
    for (cluster, value) in forged {
        let key = format!("/nfsha/{cluster}/leader");
        let put = raw.put(key.clone(), value, None).await.expect("forge");
        let forged_rev = put.header().expect("header").revision() as u64;
        // An agent following the cluster from before the election.
        let mut follow = Box::pin(nfsha_server::watch_leader(
            vec![etcd.endpoint()],
            cluster.into(),
        ));
        let log = ServingLog::new();
        let a = Node::start(&etcd.endpoint(), cluster, "a", &log).await;
        wait_for(TTL * 3, &format!("{cluster}: a serving"), || {
            a.serving().then_some(())
        })
        .await;
        let st = a.status.get();
        assert!(
            st.epoch.expect("epoch") > forged_rev,
            "{cluster}: the new epoch must be a fresh create revision"
        );
        assert_eq!(st.poisoned_leader_keys, 1, "{cluster}: counted");
        let heard = tokio::time::timeout(Duration::from_secs(10), follow.next())
            .await
            .expect("the agent hears of the elected leader")
            .expect("stream open");
        assert_eq!(
            (heard.node.as_str(), heard.address.as_deref()),
            ("a", Some("addr-of-a")),
            "{cluster}: the agent followed the forged key"
        );
        let kv = raw.get(key, None).await.expect("get").kvs()[0].clone();
        assert_ne!(kv.lease(), 0, "{cluster}: the key is nfsha's, on a lease");
    }
}

/// A poisoned key (here `{}`, not a leader record) is no leader for a standby's read nor
/// for an agent's, and one acquire replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_poisoned_leader_key_reads_as_vacant() {
    let etcd = Etcd::start().await;
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect");
    raw.put("/nfsha/p3/leader", "{}", None)
        .await
        .expect("forge");
    let cli = coordinator(&etcd.endpoint(), "p3", "cli").await;
    assert_eq!(cli.leader().await.expect("read"), None);
    assert!(
        nfsha_server::current_leader(&[etcd.endpoint()], "p3")
            .await
            .expect("read")
            .is_none(),
        "agents see no leader"
    );
    let rec = LeaderRecord {
        node: "cli".into(),
        address: None,
        api: None,
        serving: false,
    };
    match cli.acquire(&rec).await.expect("acquire") {
        Acquire::Acquired { .. } => {}
        other => panic!("expected the poisoned key to be replaced, got {other:?}"),
    }
    assert_eq!(cli.poisoned_leader_keys(), 1);
}

/// btrfs engine: the leader's heartbeat position, the replica record with the
/// snapshot's identity and position, and the promotion/quarantine records are written
/// only under the current epoch, and a standby reads position and record together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_btrfs_positions_and_records_are_guarded_by_the_epoch() {
    use nfsha_server::coordinator::{LeaderPosition, SnapshotRef};
    let etcd = Etcd::start().await;
    let a = coordinator(&etcd.endpoint(), "cp", "a").await;
    let b = coordinator(&etcd.endpoint(), "cp", "b").await;
    let rec = LeaderRecord {
        node: "a".into(),
        address: None,
        api: None,
        serving: true,
    };
    let Acquire::Acquired { epoch } = a.acquire(&rec).await.unwrap() else {
        panic!("a must acquire");
    };
    let pos = |p: u64| LeaderPosition {
        node: "a".into(),
        epoch,
        position_ms: p,
        tail_ms: 4_000,
    };
    assert!(a.record_position(&pos(1_000), epoch).await.unwrap());
    let replica = ReplicaRecord {
        shipped_at_ms: 5,
        epoch,
        by: "a".into(),
        snapshot: Some(SnapshotRef {
            name: "data@1-x".into(),
            identity: "uuid-1".into(),
        }),
        position_ms: Some(900),
        forks: Vec::new(),
    };
    assert!(a.record_replica("b", &replica, epoch).await.unwrap());
    assert!(a.record_position(&pos(31_000), epoch).await.unwrap());
    // A wrong epoch writes nothing.
    assert!(!a.record_position(&pos(99_000), epoch + 1).await.unwrap());
    assert!(
        !a.record_guarded("promoted/a", b"{}", epoch + 1)
            .await
            .unwrap()
    );
    let view = b.replica_view("b").await.unwrap();
    assert_eq!(view.record.as_ref(), Some(&replica));
    assert_eq!(view.position, Some(pos(31_000)));
    // The verdict from these values alone: 31 s − 0.9 s + 4 s tail.
    let v = nfsha_server::judge("b", &view, 0, Duration::from_secs(60));
    assert_eq!((v.behind, v.lag_ms), (false, Some(34_100)), "{v:?}");
    // Promotion and quarantine records show in the cluster status; drop forgets one.
    let d = nfsha_server::coordinator::DivergedRecord {
        node: "b".into(),
        name: "data@diverged-9-x".into(),
        fork: Some("data@1-x".into()),
        changed_files: Some(6),
        epoch,
        at_ms: 1,
    };
    assert!(
        a.record_guarded(
            "diverged/b/data@diverged-9-x",
            &serde_json::to_vec(&d).unwrap(),
            epoch
        )
        .await
        .unwrap()
    );
    let st = b.cluster_status("cp").await.unwrap();
    assert_eq!(st.diverged, vec![d]);
    assert_eq!(st.position, Some(pos(31_000)));
    assert_eq!(a.replicas().await.unwrap().get("b"), Some(&replica));
    assert!(b.forget_diverged("b", "data@diverged-9-x").await.unwrap());
    assert!(b.cluster_status("cp").await.unwrap().diverged.is_empty());
    // The position survives the leader (not leased).
    a.resign_session().await.unwrap();
    let view = b.replica_view("b").await.unwrap();
    assert_eq!(view.position, Some(pos(31_000)));
}
