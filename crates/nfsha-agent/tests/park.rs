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

/// Two mounts of the VIP, the first turns stale; returns the agent, calls and events.
async fn stale_failover(
    host: &FakeHost,
    mounts: Vec<MountConfig>,
) -> (Agent<FakeHost>, Vec<Call>, Vec<Event>) {
    host.set_server(VIP, true);
    for m in &mounts {
        host.add_nfs_mount(&m.mountpoint.display().to_string(), VIP);
    }
    let (emit, events) = Emitter::collector();
    let first = mounts[0].mountpoint.display().to_string();
    let agent = Agent::start(
        Arc::new(host.clone()),
        Config {
            mounts,
            ..Config::empty()
        },
        emit,
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    host.set_probe(&first, stale());
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
    let step = steps(&ev, "park-transport");
    assert_eq!(step.len(), 1, "{ev:?}");
    assert_eq!(step[0].outcome.as_deref(), Some("ok"));
    assert_eq!(
        step[0].reason.as_deref(),
        Some("1 transport to 10.99.0.100 pointed at 127.0.0.1 until the move")
    );
}

#[tokio::test(start_paused = true)]
async fn with_handles_that_survive_nothing_is_parked() {
    let host = FakeHost::new();
    let mut dags = mount("/airflow/dags");
    dags.file_handles = FileHandles::Survive;
    let (agent, calls, ev) = stale_failover(&host, vec![dags, mount("/airflow/logs")]).await;
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
        Some("not parked: /mnt/by-hand also uses 10.99.0.100 and is not managed by nfsha")
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
