//! Parking the old mount's RPC transport before a remount (`file_handles = "change"`,
//! the default): against the scripted FakeHost on tokio's paused clock. What parking
//! does in the kernel is shown in the lab (Test 2); here, when it is asked for, in what
//! order, and when it is not (handles that survive, NFSv4, a mount nfsha does not manage).

use nfsha_agent::testing::ProbeScript;
use nfsha_agent::testing::{Call, FakeHost};
use nfsha_agent::{Agent, Emitter};
use nfsha_config::{Config, FileHandles, MountConfig, NfsVersion, ServerRef};
use nfsha_core::{Event, EventKind, MountState, ProbeOp, ProbeOutcome};
use std::sync::Arc;
use std::time::Duration;

const VIP: &str = "10.99.0.100";

/// An NFSv3 mount of the VIP (only NFSv3 transports are parked).
fn mount(mp: &str) -> MountConfig {
    let mut m = MountConfig::new(mp, "/export", vec![ServerRef::new(VIP)]);
    m.nfs_version = NfsVersion::V3;
    m
}

fn stale() -> ProbeScript {
    ProbeScript::Answer(ProbeOutcome::Failed {
        op: ProbeOp::Statfs,
        errno: libc::ESTALE,
        latency: Duration::from_millis(1),
    })
}

/// Mounts of the VIP that all turn stale at once (a failover); returns the agent,
/// calls and events.
async fn stale_failover(
    host: &FakeHost,
    mounts: Vec<MountConfig>,
) -> (Agent<FakeHost>, Vec<Call>, Vec<Event>) {
    host.set_server(VIP, true);
    for m in &mounts {
        host.add_nfs_mount(&m.mountpoint.display().to_string(), VIP);
    }
    let (emit, events) = Emitter::collector();
    let all: Vec<String> = mounts
        .iter()
        .map(|m| m.mountpoint.display().to_string())
        .collect();
    let agent = Agent::start(
        Arc::new(host.clone()),
        Config {
            mounts,
            ..Config::empty()
        },
        emit,
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for mp in &all {
        host.set_probe(mp, stale());
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ev = events.lock().unwrap().clone();
    (agent, host.calls(), ev)
}

fn steps<'a>(ev: &'a [Event], step: &str) -> Vec<&'a Event> {
    ev.iter()
        .filter(|e| e.kind == EventKind::RecoveryStep && e.step.as_deref() == Some(step))
        .collect()
}

fn position(calls: &[Call], f: impl Fn(&Call) -> bool) -> Option<usize> {
    calls.iter().position(f)
}

#[tokio::test(start_paused = true)]
async fn a_stale_mount_parks_its_transport_before_the_new_mount_and_keeps_it_parked() {
    let host = FakeHost::new();
    let (agent, calls, ev) =
        stale_failover(&host, vec![mount("/airflow/dags"), mount("/airflow/logs")]).await;
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Healthy
    );
    let park = position(&calls, |c| *c == Call::Park(VIP.into())).expect("parked");
    let new_mount = position(
        &calls,
        |c| matches!(c, Call::Mount(s, _) if s == &format!("::ffff:{VIP}")),
    )
    .expect("a new mount from the other address form");
    assert!(park < new_mount, "park before the new mount: {calls:?}");
    // The parked form is never mounted from (it would share the parked client).
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Mount(s, _) if s == VIP)),
        "{calls:?}"
    );
    // Success: the old mount is gone, its transport stays parked.
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Unpark(_))),
        "{calls:?}"
    );
    // The first recovery parks the shared transport; the second finds its old mount
    // on the loopback address (mountinfo shows the parked transport) and takes it over.
    let step = steps(&ev, "park-transport");
    assert_eq!(step.len(), 1, "{ev:?}");
    assert_eq!(step[0].outcome.as_deref(), Some("ok"));
    assert_eq!(
        step[0].reason.as_deref(),
        Some("1 transport to 10.99.0.100 pointed at 127.0.0.1 until the move")
    );
    assert_eq!(
        calls.iter().filter(|c| matches!(c, Call::Park(_))).count(),
        1,
        "{calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_form_parked_by_a_sibling_is_pointed_back_before_it_is_mounted_from() {
    // The two old mounts are on different address forms (recovered at different
    // times): each recovery parks its own, and each new mount is from the other's.
    let host = FakeHost::new();
    host.set_server(VIP, true);
    host.add_nfs_mount("/airflow/dags", VIP);
    host.add_nfs_mount("/airflow/logs", &format!("::ffff:{VIP}"));
    let (emit, _events) = Emitter::collector();
    let agent = Agent::start(
        Arc::new(host.clone()),
        Config {
            mounts: vec![mount("/airflow/dags"), mount("/airflow/logs")],
            ..Config::empty()
        },
        emit,
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    host.set_probe("/airflow/dags", stale());
    host.set_probe("/airflow/logs", stale());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let snap = agent.status().snapshot();
    assert_eq!(snap.mounts["/airflow/dags"].state, MountState::Healthy);
    assert_eq!(snap.mounts["/airflow/logs"].state, MountState::Healthy);
    let calls = host.calls();
    // No mount from a form while it is parked.
    let mut parked: Vec<String> = Vec::new();
    for c in &calls {
        match c {
            Call::Park(f) => parked.push(f.clone()),
            Call::Unpark(fs) => parked.retain(|p| !fs.contains(p)),
            Call::Mount(f, _) => assert!(!parked.contains(f), "mount from parked {f}: {calls:?}"),
            _ => {}
        }
    }
    assert!(
        calls.iter().any(|c| matches!(c, Call::Park(_))),
        "{calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_healthy_sibling_on_the_same_address_is_not_parked() {
    // Only dags fails (not a failover of the server): logs shares its transport and
    // is healthy, so parking would hang it.
    let host = FakeHost::new();
    host.set_server(VIP, true);
    host.add_nfs_mount("/airflow/dags", VIP);
    host.add_nfs_mount("/airflow/logs", VIP);
    let (emit, events) = Emitter::collector();
    let agent = Agent::start(
        Arc::new(host.clone()),
        Config {
            mounts: vec![mount("/airflow/dags"), mount("/airflow/logs")],
            ..Config::empty()
        },
        emit,
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    host.set_probe("/airflow/dags", stale());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Healthy
    );
    assert!(!host.calls().iter().any(|c| matches!(c, Call::Park(_))));
    let ev = events.lock().unwrap().clone();
    assert_eq!(
        steps(&ev, "park-transport")[0].reason.as_deref(),
        Some(
            "not parked: /airflow/logs also uses 10.99.0.100 and is healthy or not managed by nfsha"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_hang_parks_before_any_server_answers_and_stays_parked_until_the_remount() {
    // The floating address moves slowly: the first attempts find no server. The old
    // mount's transport is parked at the first one and stays parked meanwhile.
    let host = FakeHost::new();
    host.set_server(VIP, true);
    host.add_nfs_mount("/airflow/dags", VIP);
    let (emit, _events) = Emitter::collector();
    let agent = Agent::start(
        Arc::new(host.clone()),
        Config {
            mounts: vec![mount("/airflow/dags")],
            ..Config::empty()
        },
        emit,
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    host.set_server(VIP, false);
    host.set_probe("/airflow/dags", ProbeScript::Hang);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = host.calls();
    let park = position(&calls, |c| *c == Call::Park(VIP.into())).expect("parked early");
    assert!(
        !calls[..park].iter().any(|c| matches!(c, Call::Mount(..))),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Unpark(_))),
        "{calls:?}"
    );
    assert_ne!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Healthy
    );
    host.set_server(VIP, true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Healthy
    );
    let calls = host.calls();
    assert_eq!(
        calls.iter().filter(|c| matches!(c, Call::Park(_))).count(),
        1,
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Unpark(_))),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Mount(s, _) if s == VIP)),
        "never mounted from the parked form: {calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn with_handles_that_survive_nothing_is_parked() {
    let host = FakeHost::new();
    let survive = |mp| {
        let mut m = mount(mp);
        m.file_handles = FileHandles::Survive;
        m
    };
    let (agent, calls, ev) = stale_failover(
        &host,
        vec![survive("/airflow/dags"), survive("/airflow/logs")],
    )
    .await;
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Healthy
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Park(_))),
        "{calls:?}"
    );
    assert!(steps(&ev, "park-transport").is_empty());
}

#[tokio::test(start_paused = true)]
async fn nfsv4_transports_are_not_parked() {
    let host = FakeHost::new();
    let mut dags = mount("/airflow/dags");
    dags.nfs_version = NfsVersion::V4_1;
    let (agent, calls, _ev) = stale_failover(&host, vec![dags]).await;
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Healthy
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Park(_))),
        "{calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_mount_nfsha_does_not_manage_on_the_same_address_prevents_parking() {
    let host = FakeHost::new();
    host.add_nfs_mount("/mnt/by-hand", VIP);
    let (agent, calls, ev) = stale_failover(&host, vec![mount("/airflow/dags")]).await;
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Healthy
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Park(_))),
        "{calls:?}"
    );
    let step = steps(&ev, "park-transport");
    assert_eq!(
        step[0].reason.as_deref(),
        Some(
            "not parked: /mnt/by-hand also uses 10.99.0.100 and is healthy or not managed by nfsha"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_remount_points_the_transport_back() {
    let host = FakeHost::new();
    host.set_mount_failure(&format!("::ffff:{VIP}"), libc::EACCES);
    let (_agent, calls, ev) = stale_failover(&host, vec![mount("/airflow/dags")]).await;
    let park = position(&calls, |c| *c == Call::Park(VIP.into())).expect("parked");
    let unpark = position(&calls, |c| *c == Call::Unpark(vec![VIP.into()])).expect("pointed back");
    assert!(park < unpark);
    // Between the two: the mapped form tried (and failed), never the parked one.
    assert!(
        calls[park..unpark]
            .iter()
            .all(|c| !matches!(c, Call::Mount(s, _) if s == VIP)),
        "{calls:?}"
    );
    let back = steps(&ev, "unpark-transport");
    assert_eq!(back[0].outcome.as_deref(), Some("ok"), "{ev:?}");
}

#[tokio::test(start_paused = true)]
async fn a_kernel_without_sunrpc_sysfs_still_recovers() {
    let host = FakeHost::new();
    host.set_park_fails("no sunrpc sysfs at /sys/kernel/sunrpc/xprt-switches");
    let (agent, _calls, ev) = stale_failover(&host, vec![mount("/airflow/dags")]).await;
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Healthy
    );
    let step = steps(&ev, "park-transport");
    assert_eq!(step[0].outcome.as_deref(), Some("failed"));
    // Not parked, so the plain form may be used again and nothing is pointed back.
    assert!(steps(&ev, "unpark-transport").is_empty());
}
