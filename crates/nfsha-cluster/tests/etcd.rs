//! `etcd_` tier: the fleet's active-replica record against a real etcd on loopback
//! (Debian `etcd-server`), with tasks standing for agents: one promote for the whole
//! fleet, followers on the same generation, CAS conflicts, a failing and a hanging
//! promote command, the quorum of live views, failback's refusals, and a watch that
//! never goes back and says when etcd cannot be reached.

mod common;

use common::{Etcd, Proxy, wait_for};
use futures_util::{Stream, StreamExt};
use nfsha_cluster::{
    ActiveRecord, AgentSession, AgentView, CommandSpec, Decision, Failback, FailoverOutcome, Fleet,
    FleetError, FleetOptions, Quorum, Reason, ReplicaId, Stay, WatchEvent, decide_failover,
    watch_active,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(3);
const VOLUME: &str = "dags";
/// Bound on every wait for something etcd or a watcher should do.
const LIMIT: Duration = Duration::from_secs(20);

fn src() -> ReplicaId {
    ReplicaId::new("10.1.13.5", "/crr-site1")
}

fn dst() -> ReplicaId {
    ReplicaId::new("10.2.13.5", "/crr-dest1")
}

fn members() -> Vec<ReplicaId> {
    vec![src(), dst()]
}

async fn fleet(endpoint: &str) -> Fleet {
    Fleet::connect(&FleetOptions::new(vec![endpoint.to_owned()]))
        .await
        .expect("connect")
}

async fn agent(endpoint: &str, name: &str) -> Arc<AgentSession> {
    Arc::new(AgentSession::new(fleet(endpoint).await, name, TTL).expect("session"))
}

fn view(generation: u64, down_long_enough: bool) -> AgentView {
    AgentView {
        agent: String::new(),
        mounted: Some(src()),
        generation,
        active_reachable: !down_long_enough,
        unreachable_long_enough: down_long_enough,
    }
}

fn own(name: &str, v: &AgentView) -> AgentView {
    AgentView {
        agent: name.into(),
        ..v.clone()
    }
}

/// A promote command that appends one line (`$NFSHA_TO_HOST gen $NFSHA_GENERATION`)
/// to `tally`.
fn tallying(tally: &Path) -> CommandSpec {
    CommandSpec::new(
        [
            "sh".into(),
            "-c".into(),
            r#"echo "$NFSHA_TO_HOST gen $NFSHA_GENERATION" >> "$1"; echo promoted"#.into(),
            "promote".into(),
            tally.as_os_str().to_owned(),
        ],
        Duration::from_secs(20),
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The next active record from `w` with at least `generation`, within [`LIMIT`].
async fn next_at_least(
    w: &mut (impl Stream<Item = WatchEvent> + Unpin),
    generation: u64,
) -> ActiveRecord {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .unwrap_or_else(|_| panic!("no active record >= {generation} within {LIMIT:?}"))
            .expect("watch never ends");
        if let WatchEvent::Active(r) = ev
            && r.generation >= generation
        {
            return r;
        }
    }
}

async fn wait_views(fleet: &Fleet, n: usize) -> Vec<AgentView> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let v = fleet.views(VOLUME).await.expect("views");
        if v.len() == n {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} views expected, {} seen",
            v.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn proc_gone(pid: &str) -> bool {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    st.is_empty() || st.split(' ').nth(2) == Some("Z")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_three_agents_one_promote_same_generation() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tally = dir.path().join("promotes");
    let names = ["c1", "c2", "c3"];
    let mut agents = Vec::new();
    let mut watchers = Vec::new();
    for n in names {
        let a = agent(&etcd.endpoint(), n).await;
        // Every agent starts from its configured first replica: one record results.
        let seeded = a.fleet().seed_active(VOLUME, &src(), n).await.unwrap();
        assert_eq!((seeded.generation, &seeded.replica), (1, &src()));
        watchers.push(watch_active(FleetOptions::new(vec![etcd.endpoint()]), VOLUME).unwrap());
        agents.push(a);
    }
    for w in &mut watchers {
        assert_eq!(next_at_least(w, 1).await.generation, 1);
    }
    // All three see the source fail for failover_after.
    for a in &agents {
        a.publish_view(VOLUME, &view(1, true)).await.unwrap();
    }
    let f = fleet(&etcd.endpoint()).await;
    let views = wait_views(&f, 3).await;
    let active = f.active(VOLUME).await.unwrap().unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let mut tasks = Vec::new();
    for (a, n) in agents.iter().zip(names) {
        let decision = decide_failover(
            &active,
            &members(),
            &views,
            &own(n, &view(1, true)),
            Quorum::Majority,
        );
        let Decision::Failover {
            from_generation,
            to,
        } = decision
        else {
            panic!("{n} should run: {decision:?}");
        };
        assert_eq!((from_generation, &to), (1, &dst()));
        let (a, b, promote) = (a.clone(), barrier.clone(), tallying(&tally));
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            a.try_failover(VOLUME, from_generation, &to, &promote)
                .await
                .unwrap()
        }));
    }
    let mut moved = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            FailoverOutcome::Moved(r) => moved.push(r),
            FailoverOutcome::Lost { .. } | FailoverOutcome::AlreadyMoved(_) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(moved.len(), 1, "exactly one agent moves the fleet");
    assert_eq!(
        lines(&tally),
        vec!["10.2.13.5 gen 2"],
        "exactly one promote"
    );
    let record = moved.pop().unwrap();
    assert_eq!((record.generation, &record.replica), (2, &dst()));
    assert_eq!(record.reason, Reason::Failover);
    assert_eq!(record.previous, Some(src()));
    let promote = record
        .promote
        .as_ref()
        .expect("promote report in the record");
    assert_eq!(promote.exit_code, Some(0));
    assert_eq!(promote.output_tail, "promoted\n");
    for w in &mut watchers {
        assert_eq!(next_at_least(w, 2).await, record, "every agent follows");
    }
    let st = f.status(VOLUME).await.unwrap();
    assert_eq!(st.active.as_ref(), Some(&record));
    assert!(st.lock.is_none(), "the lock goes with the move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_an_agent_restarted_meanwhile_follows() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tally = dir.path().join("promotes");
    let c1 = agent(&etcd.endpoint(), "c1").await;
    let c2 = agent(&etcd.endpoint(), "c2").await;
    let c3 = agent(&etcd.endpoint(), "c3").await;
    c1.fleet().seed_active(VOLUME, &src(), "c1").await.unwrap();
    for a in [&c1, &c2, &c3] {
        a.publish_view(VOLUME, &view(1, true)).await.unwrap();
    }
    // c3 goes down (restart): its view goes with its lease.
    c3.resign().await.unwrap();
    drop(c3);
    let f = fleet(&etcd.endpoint()).await;
    let views = wait_views(&f, 2).await;
    let active = f.active(VOLUME).await.unwrap().unwrap();
    let d = decide_failover(
        &active,
        &members(),
        &views,
        &own("c1", &view(1, true)),
        Quorum::Majority,
    );
    assert!(matches!(d, Decision::Failover { .. }), "{d:?}");
    let FailoverOutcome::Moved(record) = c1
        .try_failover(VOLUME, 1, &dst(), &tallying(&tally))
        .await
        .unwrap()
    else {
        panic!("c1 alone runs and wins");
    };
    // c3 comes back with its stale local state (the source, generation 1).
    let c3 = agent(&etcd.endpoint(), "c3").await;
    let seen = c3.fleet().seed_active(VOLUME, &src(), "c3").await.unwrap();
    assert_eq!(seen, record, "seeding never overwrites the fleet's record");
    let mut w = watch_active(FleetOptions::new(vec![etcd.endpoint()]), VOLUME).unwrap();
    let first = tokio::time::timeout(LIMIT, w.next())
        .await
        .expect("first event")
        .expect("watch never ends");
    assert_eq!(
        first,
        WatchEvent::Active(record.clone()),
        "at once, generation 2"
    );
    // Until it has caught up, its own stale view does not make it a candidate.
    let d = decide_failover(
        &record,
        &members(),
        &[],
        &own("c3", &view(1, true)),
        Quorum::Any,
    );
    assert_eq!(d, Decision::Stay(Stay::Behind { own: 1, active: 2 }));
    assert_eq!(lines(&tally).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cas_conflict_moves_nobody_twice() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tally = dir.path().join("promotes");
    let go = dir.path().join("go");
    let a = agent(&etcd.endpoint(), "a").await;
    let b = agent(&etcd.endpoint(), "b").await;
    a.fleet().seed_active(VOLUME, &src(), "a").await.unwrap();
    a.publish_view(VOLUME, &view(1, true)).await.unwrap();
    b.publish_view(VOLUME, &view(1, true)).await.unwrap();
    // a's promote blocks until the test lets it go (bounded by its own timeout).
    let slow = CommandSpec::new(
        [
            "sh".into(),
            "-c".into(),
            r#"echo "a gen $NFSHA_GENERATION" >> "$1"; while [ ! -e "$2" ]; do sleep 0.05; done"#
                .into(),
            "promote".into(),
            tally.as_os_str().to_owned(),
            go.as_os_str().to_owned(),
        ],
        Duration::from_secs(30),
    );
    let a_task = {
        let a = a.clone();
        tokio::spawn(async move { a.try_failover(VOLUME, 1, &dst(), &slow).await.unwrap() })
    };
    wait_for(LIMIT, "a's promote to start", || {
        (!lines(&tally).is_empty()).then_some(())
    })
    .await;
    // a's lease expires mid-promote (as if it froze): its lock goes with it.
    let lease = a.lease().await.expect("a holds a lease");
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    raw.lease_revoke(lease).await.unwrap();
    let mut promote_b = tallying(&tally);
    promote_b.argv[2] = r#"echo "b gen $NFSHA_GENERATION" >> "$1""#.into();
    let FailoverOutcome::Moved(by_b) = b.try_failover(VOLUME, 1, &dst(), &promote_b).await.unwrap()
    else {
        panic!("b wins the lock a lost");
    };
    assert_eq!((by_b.generation, by_b.decided_by.as_str()), (2, "b"));
    // a's promote finishes now: its CAS (guarded by the old revision and its lock) fails.
    std::fs::write(&go, b"").unwrap();
    let a_out = tokio::time::timeout(LIMIT, a_task).await.unwrap().unwrap();
    assert_eq!(a_out, FailoverOutcome::AlreadyMoved(by_b.clone()));
    // A late candidate from generation 1 moves nothing and runs no promote.
    let c = agent(&etcd.endpoint(), "c").await;
    let late = c
        .try_failover(VOLUME, 1, &dst(), &tallying(&tally))
        .await
        .unwrap();
    assert_eq!(late, FailoverOutcome::AlreadyMoved(by_b.clone()));
    let st = c.fleet().status(VOLUME).await.unwrap();
    assert_eq!(st.active, Some(by_b), "generation 2, not 3");
    assert!(st.lock.is_none());
    assert_eq!(lines(&tally), vec!["a gen 2", "b gen 2"]);
    // A failback CASes too: the operator's move and a racing stale writer cannot both win.
    let fb = Failback {
        to: src(),
        members: members(),
        by: "operator".into(),
        confirm_resync: true,
        resync_check: None,
        lock_ttl: TTL,
    };
    let (r1, r2) = tokio::join!(
        c.fleet().failback(VOLUME, &fb),
        a.fleet().failback(VOLUME, &fb)
    );
    let ok: Vec<_> = [&r1, &r2].into_iter().filter(|r| r.is_ok()).collect();
    assert_eq!(ok.len(), 1, "{r1:?} / {r2:?}");
    let loser = if r1.is_ok() { &r2 } else { &r1 };
    assert!(
        matches!(
            loser,
            Err(FleetError::Busy { .. })
                | Err(FleetError::Conflict { .. })
                | Err(FleetError::AlreadyActive { .. })
        ),
        "{loser:?}"
    );
    assert_eq!(
        c.fleet().active(VOLUME).await.unwrap().unwrap().generation,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_failing_promote_leaves_the_fleet_where_it_was() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = agent(&etcd.endpoint(), "a").await;
    let seeded = a.fleet().seed_active(VOLUME, &src(), "a").await.unwrap();
    a.publish_view(VOLUME, &view(1, true)).await.unwrap();
    let failing = CommandSpec::new(
        ["sh", "-c", "echo 'ReplicationNotFound' >&2; exit 3"],
        Duration::from_secs(20),
    );
    let out = a.try_failover(VOLUME, 1, &dst(), &failing).await.unwrap();
    let FailoverOutcome::PromoteFailed { report, active } = out else {
        panic!("{out:?}");
    };
    assert_eq!(report.exit_code, Some(3));
    assert_eq!(report.output_tail, "ReplicationNotFound\n");
    assert_eq!(active, seeded);
    let st = a.fleet().status(VOLUME).await.unwrap();
    assert_eq!(st.active, Some(seeded), "the fleet stays where it was");
    assert!(st.lock.is_none(), "released at once, not left to expire");
    // A missing program is a failed promote too, not an error of the election.
    let missing = CommandSpec::new(["/nonexistent/az"], Duration::from_secs(5));
    let out = a.try_failover(VOLUME, 1, &dst(), &missing).await.unwrap();
    assert!(
        matches!(&out, FailoverOutcome::PromoteFailed { report, .. } if report.error.is_some()),
        "{out:?}"
    );
    // The next attempt (here the same agent's) can win and move.
    let tally = dir.path().join("promotes");
    let out = a
        .try_failover(VOLUME, 1, &dst(), &tallying(&tally))
        .await
        .unwrap();
    assert!(
        matches!(&out, FailoverOutcome::Moved(r) if r.generation == 2),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_hanging_promote_is_killed_and_reported() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let a = agent(&etcd.endpoint(), "a").await;
    let seeded = a.fleet().seed_active(VOLUME, &src(), "a").await.unwrap();
    let hanging = CommandSpec::new(
        [
            "sh".into(),
            "-c".into(),
            r#"sleep 60 & echo "$$ $!" > "$1"; wait"#.into(),
            "promote".into(),
            pids.as_os_str().to_owned(),
        ],
        Duration::from_secs(1),
    );
    let out = a.try_failover(VOLUME, 1, &dst(), &hanging).await.unwrap();
    let FailoverOutcome::PromoteFailed { report, active } = out else {
        panic!("{out:?}");
    };
    assert!(report.timed_out && !report.succeeded(), "{report:?}");
    assert_eq!(active, seeded);
    let text = std::fs::read_to_string(&pids).expect("the promote started");
    let both: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(both.len(), 2, "{text:?}");
    for pid in both {
        wait_for(
            LIMIT,
            &format!("process {pid} of the group to be gone"),
            || proc_gone(pid).then_some(()),
        )
        .await;
    }
    let st = a.fleet().status(VOLUME).await.unwrap();
    assert_eq!(st.active, Some(seeded), "the fleet stays where it was");
    assert!(st.lock.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_minority_cannot_fail_the_fleet_over() {
    let etcd = Etcd::start().await;
    let c1 = agent(&etcd.endpoint(), "c1").await;
    let c2 = agent(&etcd.endpoint(), "c2").await;
    let c3 = agent(&etcd.endpoint(), "c3").await;
    let active = c1.fleet().seed_active(VOLUME, &src(), "c1").await.unwrap();
    // c1's own network is broken: only it sees the source down.
    c1.publish_view(VOLUME, &view(1, true)).await.unwrap();
    c2.publish_view(VOLUME, &view(1, false)).await.unwrap();
    c3.publish_view(VOLUME, &view(1, false)).await.unwrap();
    let f = fleet(&etcd.endpoint()).await;
    let views = wait_views(&f, 3).await;
    let mine = own("c1", &view(1, true));
    assert_eq!(
        decide_failover(&active, &members(), &views, &mine, Quorum::Majority),
        Decision::Stay(Stay::NoQuorum {
            votes: 1,
            live: 3,
            needed: 2
        })
    );
    assert!(
        matches!(
            decide_failover(&active, &members(), &views, &mine, Quorum::Any),
            Decision::Failover { .. }
        ),
        "quorum = any lets one agent decide"
    );
    // A second agent sees it too: now a majority.
    c2.publish_view(VOLUME, &view(1, true)).await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let views = loop {
        let v = f.views(VOLUME).await.unwrap();
        if v.iter().filter(|v| v.unreachable_long_enough).count() == 2 {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "c2's view not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        decide_failover(&active, &members(), &views, &mine, Quorum::Majority),
        Decision::Failover {
            from_generation: 1,
            to: dst()
        }
    );
    assert_eq!(
        f.active(VOLUME).await.unwrap(),
        Some(active),
        "nobody moved yet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_failback_refuses_a_non_member_and_an_unconfirmed_resync() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = agent(&etcd.endpoint(), "a").await;
    a.fleet().seed_active(VOLUME, &src(), "a").await.unwrap();
    let FailoverOutcome::Moved(failed_over) = a
        .try_failover(VOLUME, 1, &dst(), &tallying(&dir.path().join("t")))
        .await
        .unwrap()
    else {
        panic!("setup failover");
    };
    let f = fleet(&etcd.endpoint()).await;
    let base = Failback {
        to: src(),
        members: members(),
        by: "operator".into(),
        confirm_resync: true,
        resync_check: None,
        lock_ttl: TTL,
    };
    let stranger = ReplicaId::new("10.9.9.9", "/crr-site1");
    let e = f
        .failback(
            VOLUME,
            &Failback {
                to: stranger.clone(),
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FleetError::NotAMember { to } if *to == stranger),
        "{e}"
    );
    let e = f
        .failback(
            VOLUME,
            &Failback {
                confirm_resync: false,
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FleetError::ResyncNotConfirmed), "{e}");
    let e = f
        .failback(
            VOLUME,
            &Failback {
                resync_check: Some(CommandSpec::new(
                    ["sh", "-c", "echo 'MirrorState: Broken'; exit 1"],
                    Duration::from_secs(20),
                )),
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
    let FleetError::ResyncCheckFailed(report) = &e else {
        panic!("{e}");
    };
    assert_eq!(report.output_tail, "MirrorState: Broken\n");
    let e = f
        .failback(
            VOLUME,
            &Failback {
                resync_check: Some(CommandSpec::new(["sleep", "60"], Duration::from_secs(1))),
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FleetError::ResyncCheckFailed(r) if r.timed_out),
        "a hanging check is bounded: {e}"
    );
    let e = f
        .failback(
            VOLUME,
            &Failback {
                to: dst(),
                ..base.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FleetError::AlreadyActive { .. }), "{e}");
    assert_eq!(
        f.active(VOLUME).await.unwrap(),
        Some(failed_over.clone()),
        "every refusal leaves the fleet where it is"
    );
    let back = f
        .failback(
            VOLUME,
            &Failback {
                resync_check: Some(CommandSpec::new(
                    ["sh", "-c", "echo 'MirrorState: Mirrored'"],
                    Duration::from_secs(20),
                )),
                ..base
            },
        )
        .await
        .unwrap();
    assert_eq!((back.generation, &back.replica), (3, &src()));
    assert_eq!(
        (back.reason, back.decided_by.as_str()),
        (Reason::Failback, "operator")
    );
    assert_eq!(back.previous, Some(dst()));
    assert_eq!(f.active(VOLUME).await.unwrap(), Some(back));
}

async fn put_raw(endpoint: &str, record: &ActiveRecord) {
    let mut c = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    c.put(
        format!("/nfsha/volumes/{VOLUME}/active"),
        serde_json::to_vec(record).unwrap(),
        None,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_never_goes_back_to_a_lower_generation() {
    let mut etcd = Etcd::start().await;
    let f = fleet(&etcd.endpoint()).await;
    let seeded = f.seed_active(VOLUME, &src(), "c1").await.unwrap();
    let mut w = watch_active(FleetOptions::new(vec![etcd.endpoint()]), VOLUME).unwrap();
    let at = |g: u64, r: ReplicaId| ActiveRecord {
        replica: r,
        generation: g,
        ..seeded.clone()
    };
    let mut actives = vec![next_at_least(&mut w, 1).await.generation];
    put_raw(&etcd.endpoint(), &at(3, dst())).await;
    actives.push(next_at_least(&mut w, 1).await.generation);
    // A stale writer puts back an older record, then the same generation again.
    put_raw(&etcd.endpoint(), &at(2, src())).await;
    put_raw(&etcd.endpoint(), &at(3, src())).await;
    // etcd restarts: the watch reconnects and re-reads (generation 3 → not repeated).
    etcd.restart().await;
    put_raw(&etcd.endpoint(), &at(4, src())).await;
    let mut unreachable = 0;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .expect("generation 4 within the limit")
            .expect("watch never ends");
        match ev {
            WatchEvent::Active(r) => {
                actives.push(r.generation);
                if r.generation >= 4 {
                    break;
                }
            }
            WatchEvent::Unreachable(_) => unreachable += 1,
        }
    }
    assert_eq!(actives, vec![1, 3, 4]);
    assert_eq!(unreachable, 1, "the restart is said once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_an_agent_cut_off_from_etcd_says_so_and_catches_up() {
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(etcd.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fleet(&etcd.endpoint()).await;
    f.seed_active(VOLUME, &src(), "c1").await.unwrap();
    let mut w = watch_active(FleetOptions::new(vec![proxy.endpoint()]), VOLUME).unwrap();
    assert_eq!(next_at_least(&mut w, 1).await.generation, 1);
    proxy.cut();
    let ev = tokio::time::timeout(LIMIT, w.next())
        .await
        .expect("the cut is noticed")
        .expect("watch never ends");
    assert!(matches!(ev, WatchEvent::Unreachable(_)), "{ev:?}");
    // The rest of the fleet moves meanwhile.
    let other = agent(&etcd.endpoint(), "c2").await;
    let FailoverOutcome::Moved(moved) = other
        .try_failover(VOLUME, 1, &dst(), &tallying(&dir.path().join("t")))
        .await
        .unwrap()
    else {
        panic!("c2 moves");
    };
    proxy.heal();
    assert_eq!(next_at_least(&mut w, 2).await, moved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_lost_lease_is_replaced_and_a_dead_agents_view_goes() {
    let etcd = Etcd::start().await;
    let a = agent(&etcd.endpoint(), "a").await;
    let b = agent(&etcd.endpoint(), "b").await;
    a.fleet().seed_active(VOLUME, &src(), "a").await.unwrap();
    a.publish_view(VOLUME, &view(1, false)).await.unwrap();
    b.publish_view(VOLUME, &view(1, false)).await.unwrap();
    let f = fleet(&etcd.endpoint()).await;
    wait_views(&f, 2).await;
    // a's lease expires behind its back (as for a process frozen longer than its TTL).
    let old = a.lease().await.expect("lease");
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    raw.lease_revoke(old).await.unwrap();
    let views = wait_views(&f, 1).await;
    assert_eq!(views[0].agent, "b", "a's view went with its lease");
    // Its next publish renews, finds the lease gone and takes a new one.
    a.publish_view(VOLUME, &view(1, true)).await.unwrap();
    assert_ne!(a.lease().await, Some(old));
    let views = wait_views(&f, 2).await;
    assert!(
        views
            .iter()
            .any(|v| v.agent == "a" && v.unreachable_long_enough)
    );
    // b dies: only a remains, and its lone vote is a majority of the live views.
    b.resign().await.unwrap();
    let views = wait_views(&f, 1).await;
    let active = f.active(VOLUME).await.unwrap().unwrap();
    assert!(matches!(
        decide_failover(
            &active,
            &members(),
            &views,
            &own("a", &view(1, true)),
            Quorum::Majority
        ),
        Decision::Failover { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_status_shows_a_move_in_progress_and_failback_waits_for_it() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let go = dir.path().join("go");
    let a = agent(&etcd.endpoint(), "a").await;
    a.fleet().seed_active(VOLUME, &src(), "a").await.unwrap();
    a.publish_view(VOLUME, &view(1, true)).await.unwrap();
    let slow = CommandSpec::new(
        [
            "sh".into(),
            "-c".into(),
            r#": > "$1"; while [ ! -e "$2" ]; do sleep 0.05; done"#.into(),
            "promote".into(),
            started.as_os_str().to_owned(),
            go.as_os_str().to_owned(),
        ],
        Duration::from_secs(30),
    );
    let task = {
        let a = a.clone();
        tokio::spawn(async move { a.try_failover(VOLUME, 1, &dst(), &slow).await.unwrap() })
    };
    wait_for(LIMIT, "the promote to start", || {
        started.exists().then_some(())
    })
    .await;
    let f = fleet(&etcd.endpoint()).await;
    let st = f.status(VOLUME).await.unwrap();
    let lock = st.lock.clone().expect("a move in progress");
    assert_eq!((lock.holder.as_str(), lock.from_generation), ("a", 1));
    assert_eq!((lock.to, lock.reason), (dst(), Reason::Failover));
    assert_eq!(st.views.len(), 1);
    assert_eq!(st.views[0].agent, "a");
    assert_eq!(st.active.as_ref().map(|r| r.generation), Some(1));
    let text = st.render();
    for want in [
        "volume dags\n",
        "  active: 10.1.13.5:/crr-site1 generation 1 (seed by a at ",
        "  in progress: failover by a from generation 1 to 10.2.13.5:/crr-dest1\n",
        "  view a: on 10.1.13.5:/crr-site1, generation 1, active unreachable for failover_after\n",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    // An operator's failback does not race the failover in progress.
    let e = f
        .failback(
            VOLUME,
            &Failback {
                to: dst(),
                members: members(),
                by: "operator".into(),
                confirm_resync: true,
                resync_check: None,
                lock_ttl: TTL,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FleetError::Busy { holder } if holder == "a"),
        "{e}"
    );
    std::fs::write(&go, b"").unwrap();
    let out = tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(
        matches!(&out, FailoverOutcome::Moved(r) if r.generation == 2),
        "{out:?}"
    );
    assert!(f.status(VOLUME).await.unwrap().lock.is_none());
}
