//! Supervisor behaviour against the scripted FakeHost, on tokio's paused clock
//! (timers advance instantly, so these tests take milliseconds and never sleep).

use nfsha_agent::testing::{Call, FakeHost, ProbeScript};
use nfsha_agent::{Agent, Emitter};
use nfsha_config::{Config, FailbackPolicy, MountConfig, MountMode, ServerRef};
use nfsha_core::{EventKind, MountState, ProbeOp, ProbeOutcome};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn mount(mp: &str, servers: &[&str]) -> MountConfig {
    MountConfig::new(
        mp,
        "/export",
        servers.iter().map(|h| ServerRef::new(*h)).collect(),
    )
}

fn config(mounts: Vec<MountConfig>) -> Config {
    Config {
        mounts,
        ..Config::empty()
    }
}

fn stale() -> ProbeScript {
    ProbeScript::Answer(ProbeOutcome::Failed {
        op: ProbeOp::Statfs,
        errno: libc::ESTALE,
        latency: Duration::from_millis(1),
    })
}

fn state_of(agent: &Agent<FakeHost>, mp: &str) -> MountState {
    agent.status().snapshot().mounts[mp].state
}

async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn stale_mount_is_detached_and_remounted_and_others_are_untouched() {
    let host = FakeHost::new();
    host.set_server("vip", true);
    host.add_nfs_mount("/airflow/dags", "vip");
    host.add_nfs_mount("/airflow/logs", "vip");
    let (emit, events) = Emitter::collector();
    let hooks = vec![vec![
        "systemctl".to_string(),
        "restart".into(),
        "airflow-scheduler".into(),
    ]];
    let mut dags = mount("/airflow/dags", &["vip"]);
    dags.hooks = hooks.clone();
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![dags, mount("/airflow/logs", &["vip"])]),
        emit,
    );
    run_for(Duration::from_millis(2500)).await;
    assert_eq!(state_of(&agent, "/airflow/dags"), MountState::Healthy);

    host.set_probe("/airflow/dags", stale());
    run_for(Duration::from_secs(4)).await;

    assert_eq!(state_of(&agent, "/airflow/dags"), MountState::Healthy);
    assert_eq!(
        host.umounted(),
        vec![Path::new("/airflow/dags").to_path_buf()],
        "only the stale mount may be unmounted"
    );
    let calls = host.resolved_calls();
    let tail: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            matches!(
                c,
                Call::Umount(..) | Call::Mount(..) | Call::Hook(..) | Call::Hold(..)
            )
        })
        .collect();
    // The new mount is made (staged) and the old one held before the old one is taken
    // off; the force goes through the hold, after the move.
    let handle = hold_handle(&host);
    assert_eq!(
        tail[..5],
        [
            &Call::Mount("vip".into(), "/airflow/dags".into()),
            &Call::Hold("/airflow/dags".into(), handle.clone()),
            &Call::Umount("/airflow/dags".into(), false, true),
            &Call::Umount(handle.clone(), true, false),
            &Call::Hook(hooks[0].clone()),
        ]
    );
    // The other forces through the hold, in the background, and nothing else.
    assert!(
        tail[5..]
            .iter()
            .all(|c| **c == Call::Umount(handle.clone(), true, false)),
        "{tail:?}"
    );
    assert!(host.stage_dirs().is_empty(), "stage directory removed");
    let ev = events.lock().unwrap().clone();
    let change = ev
        .iter()
        .find(|e| e.kind == EventKind::MountStateChanged && e.to.as_deref() == Some("stale"))
        .expect("a healthy→stale event");
    assert_eq!(change.errno, Some(libc::ESTALE));
    assert_eq!(change.mount.as_deref(), Some("/airflow/dags"));
    assert!(
        ev.iter()
            .any(|e| e.kind == EventKind::RecoveryFinished && e.outcome.as_deref() == Some("ok"))
    );
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].recoveries,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_mount_from_a_dead_server_that_cannot_be_held_is_forced_then_detached() {
    // The old mount's server is not the one mounted from: nothing will ever answer the
    // calls blocked in it. Without a hold (the bind failed) MNT_FORCE aborts them
    // before MNT_DETACH, on the mountpoint itself.
    let host = busy_mount_host("/airflow/logs", "old", "vip");
    host.set_hold_failure(libc::ESTALE);
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/airflow/logs", &["old", "vip"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(1500)).await;
    host.set_probe("/airflow/logs", stale());
    run_for(Duration::from_secs(4)).await;
    let umounts = umount_calls(&host);
    assert_eq!(
        umounts,
        vec![
            // The failed hold's stage directory, let go unforced.
            Call::Umount(hold_handle(&host), false, true),
            Call::Umount("/airflow/logs".into(), true, false),
            Call::Umount("/airflow/logs".into(), false, true),
        ]
    );
    assert_eq!(state_of(&agent, "/airflow/logs"), MountState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_busy_mount_from_a_dead_server_is_forced_through_its_hold_after_the_move() {
    let host = busy_mount_host("/m", "old", "vip");
    let (_agent, report) = recover_once(&host, mount("/m", &["old", "vip"])).await;
    assert!(report.ok, "{report:?}");
    let handle = hold_handle(&host);
    let umounts = umount_calls(&host);
    assert_eq!(
        umounts,
        vec![
            Call::Umount("/m".into(), false, true),
            Call::Umount(handle, true, false)
        ]
    );
    let detach = report
        .steps
        .iter()
        .find(|s| s.step == "umount-detach")
        .unwrap();
    assert_eq!(
        detach.detail.as_deref(),
        Some("held: forced through the hold after the move"),
        "the dead server's mount is not forced on the mountpoint because it is held"
    );
}

/// A host with a busy NFS mount at `mp` from `old`, and server `reachable` answering.
fn busy_mount_host(mp: &str, old: &str, reachable: &str) -> FakeHost {
    let host = FakeHost::new();
    host.set_server(reachable, true);
    host.add_nfs_mount(mp, old);
    host.set_busy(mp, true);
    host
}

/// The names of a recovery's steps, in order.
fn step_names(report: &nfsha_agent::recovery::RecoveryReport) -> Vec<&str> {
    report.steps.iter().map(|s| s.step.as_str()).collect()
}

/// Every umount call so far, in order.
fn umount_calls(host: &FakeHost) -> Vec<Call> {
    host.calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Umount(..)))
        .collect()
}

/// The stage directory the (first) hold was made on.
fn hold_handle(host: &FakeHost) -> PathBuf {
    host.calls()
        .into_iter()
        .find_map(|c| match c {
            Call::Hold(_, at) => Some(at),
            _ => None,
        })
        .expect("a hold")
}

/// Start an agent on `host` with one mount at `/m`, let it settle, force a recovery.
async fn recover_once(
    host: &FakeHost,
    m: MountConfig,
) -> (Agent<FakeHost>, nfsha_agent::recovery::RecoveryReport) {
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![m]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(1500)).await;
    let report = agent.handle().recover(Path::new("/m")).await.unwrap();
    (agent, report)
}

fn autofs_mount(mp: &str, servers: &[&str]) -> MountConfig {
    let mut m = mount(mp, servers);
    m.mode = MountMode::Autofs;
    m
}

#[tokio::test(start_paused = true)]
async fn a_mount_of_the_same_address_is_forced_only_through_its_hold_after_the_move() {
    // Same floating address, busy (a call blocked in it): MNT_FORCE on the mountpoint
    // while the old mount is still there made directory reads on it return empty
    // listings in the lab, so it is only detached; the blocked calls are aborted through
    // the hold once the new mount is in place.
    let host = busy_mount_host("/m", "vip", "vip");
    let (_agent, report) = recover_once(&host, mount("/m", &["vip"])).await;
    assert!(report.ok, "{report:?}");
    // The first force right after the move, the others in the background.
    let forces_by_then = host.released().len();
    run_for(Duration::from_secs(3)).await;
    let handle = hold_handle(&host);
    let tail: Vec<Call> = host
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Umount(..) | Call::Move(..) | Call::Hold(..)))
        .collect();
    let staged = match &tail[2] {
        Call::Move(from, _) => from.clone(),
        other => panic!("expected the move third: {tail:?} ({other:?})"),
    };
    let forces = nfsha_agent::recovery::HOLD_FORCES as usize;
    let mut expected = vec![
        Call::Hold("/m".into(), handle.clone()),
        Call::Umount("/m".into(), false, true),
        Call::Move(staged, "/m".into()),
    ];
    expected.extend(vec![Call::Umount(handle.clone(), true, false); forces]);
    assert_eq!(tail, expected);
    assert_eq!(forces_by_then, 1, "one force before the recovery ends");
    let force = report
        .steps
        .iter()
        .find(|s| s.step == "umount-force")
        .unwrap();
    assert!(
        force
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("old mount, through its hold, after the move")),
        "{force:?}"
    );
    assert!(host.stage_dirs().is_empty(), "stage directories removed");
    assert!(
        !host
            .table()
            .iter()
            .any(|m| m.mountpoint.starts_with(nfsha_agent::testing::STAGE_ROOT)),
        "nothing left mounted in the staging area: {:?}",
        host.table()
    );
}

#[tokio::test(start_paused = true)]
async fn a_mount_of_the_same_address_that_cannot_be_held_is_never_forced() {
    let host = busy_mount_host("/m", "vip", "vip");
    host.set_hold_failure(libc::ESTALE);
    let (_agent, report) = recover_once(&host, mount("/m", &["vip"])).await;
    assert!(report.ok, "{report:?}");
    let umounts = umount_calls(&host);
    // The failed hold's stage directory is let go unforced (a bind may have been made
    // by a worker killed at its deadline); the old mount is only detached.
    let handle = hold_handle(&host);
    assert_eq!(
        umounts,
        vec![
            Call::Umount(handle, false, true),
            Call::Umount("/m".into(), false, true)
        ]
    );
    let hold = report.steps.iter().find(|s| s.step == "hold").unwrap();
    assert_eq!(hold.outcome, "failed");
    let detach = report
        .steps
        .iter()
        .find(|s| s.step == "umount-detach")
        .unwrap();
    assert_eq!(
        detach.detail.as_deref(),
        Some("same server address: not forced")
    );
    assert!(!report.steps.iter().any(|s| s.step == "umount-force"));
    assert!(host.stage_dirs().is_empty(), "stage directories removed");
}

#[tokio::test(start_paused = true)]
async fn autofs_re_trigger_waits_until_the_detached_superblock_is_freed() {
    // A call in flight keeps the detached superblock alive for 5 polls (100 ms): the
    // re-trigger must come after the kernel freed it, or autofs' new mount would share
    // the old kernel client and its transport.
    let host = busy_mount_host("/m", "vip", "vip");
    host.set_linger("/m", 5);
    let (_agent, report) = recover_once(&host, autofs_mount("/m", &["vip"])).await;
    assert!(report.ok, "{report:?}");
    let steps = step_names(&report);
    assert_eq!(
        steps,
        vec![
            "select-server",
            "hold",
            "umount-detach",
            "umount-force",
            "release",
            "trigger",
            "verify"
        ]
    );
    // The force goes through the hold, once the old mount is off the mountpoint.
    let handle = hold_handle(&host);
    let umounts = umount_calls(&host);
    assert_eq!(
        umounts,
        vec![
            Call::Umount("/m".into(), false, true),
            Call::Umount(handle, true, false)
        ]
    );
    let release = &report.steps[4];
    assert_eq!(release.detail, None, "freed within the bound: {release:?}");
    assert!(
        (100..=200).contains(&release.duration_ms),
        "5 polls of 20 ms: {release:?}"
    );
    let calls = host.calls();
    let polls = calls
        .iter()
        .filter(|c| matches!(c, Call::SuperblockAlive(..)))
        .count();
    assert_eq!(polls, 6, "5 answers 'alive', the 6th 'freed'");
    let last_poll = calls
        .iter()
        .rposition(|c| matches!(c, Call::SuperblockAlive(..)))
        .unwrap();
    let trigger_at = calls
        .iter()
        .position(|c| matches!(c, Call::Trigger(..)))
        .unwrap();
    assert!(
        last_poll < trigger_at,
        "triggered before the release: {calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn autofs_mode_without_a_hold_forces_on_the_mountpoint_then_detaches() {
    let host = busy_mount_host("/m", "vip", "vip");
    host.set_hold_failure(libc::EIO);
    let (_agent, report) = recover_once(&host, autofs_mount("/m", &["vip"])).await;
    assert!(report.ok, "{report:?}");
    let steps = step_names(&report);
    assert_eq!(
        steps,
        vec![
            "select-server",
            "hold",
            "umount-force",
            "umount-detach",
            "release",
            "trigger",
            "verify"
        ]
    );
    assert_eq!(report.steps[1].outcome, "failed");
    let umounts: Vec<Call> = umount_calls(&host)
        .into_iter()
        .filter(|c| matches!(c, Call::Umount(p, ..) if p == Path::new("/m")))
        .collect();
    assert_eq!(
        umounts,
        vec![
            Call::Umount("/m".into(), true, false),
            Call::Umount("/m".into(), false, true)
        ]
    );
    assert!(host.stage_dirs().is_empty(), "stage directories removed");
}

#[tokio::test(start_paused = true)]
async fn a_superblock_held_by_open_files_delays_the_re_trigger_by_the_bound_only() {
    let host = busy_mount_host("/m", "vip", "vip");
    host.set_linger("/m", u32::MAX);
    let (_agent, report) = recover_once(&host, autofs_mount("/m", &["vip"])).await;
    assert!(report.ok, "{report:?}");
    let release = report.steps.iter().find(|s| s.step == "release").unwrap();
    assert_eq!(release.outcome, "ok");
    assert!(
        release
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("still in use")),
        "{release:?}"
    );
    let bound = u64::try_from(nfsha_agent::recovery::RELEASE_WAIT.as_millis()).unwrap();
    assert!(
        (bound..=bound + 40).contains(&release.duration_ms),
        "{release:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn direct_mode_stages_and_verifies_before_the_old_mount_is_touched() {
    // The new mount is made at a staging point from the address form the old mount did
    // not use (its kernel client may sit in reconnect back-off), verified there, and
    // only then does one request take the busy old mount off and move the new one in.
    // Here the old mount cannot be held, so instead of a force through the hold a
    // throwaway mount nudges the old kernel client (below).
    let host = busy_mount_host("/m", "10.99.0.100", "10.99.0.100");
    host.set_hold_failure(libc::EIO);
    host.set_nfs_clients(vec![nfsha_agent::host::NfsClient {
        version: "v4".into(),
        addr: "10.99.0.100".parse().unwrap(),
        port: 2049,
    }]);
    let (agent, report) = recover_once(&host, mount("/m", &["10.99.0.100"])).await;
    assert!(report.ok, "{report:?}");
    let steps = step_names(&report);
    assert_eq!(
        steps,
        vec![
            "select-server",
            "mount",
            "verify",
            "hold",
            "umount-detach",
            "move"
        ]
    );
    let mount_detail = report.steps[1].detail.as_deref().unwrap();
    assert!(
        mount_detail.starts_with("::ffff:10.99.0.100 at /run/nfsha/stage/"),
        "{mount_detail}"
    );
    let calls = host.calls();
    let stage = match calls.iter().find(|c| matches!(c, Call::Mount(..))) {
        Some(Call::Mount(_, at)) => at.clone(),
        _ => panic!("no mount: {calls:?}"),
    };
    let probe_stage = calls.iter().position(|c| *c == Call::Probe(stage.clone()));
    let first_umount = calls
        .iter()
        .position(|c| matches!(c, Call::Umount(p, ..) if p == Path::new("/m")));
    assert!(
        probe_stage.is_some() && probe_stage < first_umount,
        "verified at the staging point before the old mount was touched: {calls:?}"
    );
    let table = host.table();
    let top = table
        .iter()
        .rev()
        .find(|m| m.mountpoint == Path::new("/m"))
        .unwrap();
    assert!(top.addr_mapped);
    assert_eq!(top.server.as_deref(), Some("10.99.0.100"));
    // In the background, a throwaway mount in the old form drives the old kernel
    // client's recovery (releasing threads blocked in the detached mount), then goes.
    run_for(Duration::from_millis(100)).await;
    let calls = host.calls();
    let moved_at = calls
        .iter()
        .position(|c| matches!(c, Call::Move(..)))
        .unwrap();
    let nudge = calls[moved_at..].iter().find_map(|c| match c {
        Call::Mount(server, at) if server == "10.99.0.100" => Some(at.clone()),
        _ => None,
    });
    let nudge = nudge.unwrap_or_else(|| panic!("no nudge of the old client: {calls:?}"));
    assert!(calls.contains(&Call::Umount(nudge.clone(), true, false)));
    assert!(host.stage_dirs().is_empty());
    assert!(host.table().iter().all(|m| m.mountpoint != nudge));
    assert_eq!(
        state_of(&agent, "/m"),
        MountState::Healthy,
        "mapped form is the same server"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_staged_mount_leaves_the_old_mount_alone() {
    let host = FakeHost::new();
    host.set_server("vip", true);
    host.add_nfs_mount("/m", "vip");
    host.set_mount_failure("vip", libc::EACCES);
    let (_agent, report) = recover_once(&host, mount("/m", &["vip"])).await;
    assert!(!report.ok);
    assert!(host.umounted().is_empty(), "the old mount was not touched");
    assert_eq!(
        host.released(),
        vec![(hold_handle(&host), false); nfsha_agent::recovery::HOLD_FORCES as usize],
        "its hold is let go unforced, layer by layer"
    );
    assert!(host.stage_dirs().is_empty(), "stage directories removed");
    assert_eq!(host.table().len(), 1, "{:?}", host.table());
}

#[tokio::test(start_paused = true)]
async fn a_failed_move_falls_back_to_mounting_in_place() {
    let host = FakeHost::new();
    host.set_server("vip", true);
    host.add_nfs_mount("/m", "vip");
    host.set_move_failure(libc::EINVAL);
    let (_agent, report) = recover_once(&host, mount("/m", &["vip"])).await;
    assert!(report.ok, "{report:?}");
    let steps: Vec<(&str, &str)> = report
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.outcome.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("select-server", "ok"),
            ("mount", "ok"),
            ("verify", "ok"),
            ("hold", "ok"),
            ("umount-detach", "ok"),
            ("move", "failed"),
            // The hold is forced once the new mount is in place.
            ("umount-force", "ok"),
            ("mount", "ok"),
            ("verify", "ok"),
        ]
    );
    assert!(
        host.calls()
            .contains(&Call::Mount("vip".into(), "/m".into()))
    );
    // The repeated forces through the hold end in the background.
    run_for(Duration::from_secs(3)).await;
    assert!(host.stage_dirs().is_empty());
    assert!(
        host.table()
            .iter()
            .all(|m| !m.mountpoint.starts_with("/run/nfsha/stage")),
        "the staged mount was taken away"
    );
}

#[tokio::test(start_paused = true)]
async fn no_reachable_server_leaves_the_mount_alone_backs_off_and_recovers_at_the_servers_return() {
    let host = FakeHost::new();
    host.set_server("a", false);
    host.add_nfs_mount("/m", "a");
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["a"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(1500)).await;
    host.set_probe("/m", stale());
    run_for(Duration::from_secs(10)).await;
    assert!(
        host.umounted().is_empty(),
        "nothing to mount from: keep the mount"
    );
    let st = agent.status().snapshot().mounts["/m"].clone();
    assert_eq!(st.state, MountState::Stale);
    // Backoff 1 s, 2 s, 4 s: attempts at about 2, 3, 5 and 9 s of the 10 s — not one
    // per 1 s probe interval.
    assert!(
        (3..=5).contains(&st.failed_attempts),
        "{} attempts in 10 s",
        st.failed_attempts
    );
    assert!(st.recovery_error.unwrap().contains("No server"));
    // The server comes back: its ping wakes the mount, which recovers within one probe
    // interval although its backoff (8 s) has most of its time to run.
    host.set_server("a", true);
    run_for(Duration::from_millis(1100)).await;
    assert_eq!(state_of(&agent, "/m"), MountState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn remounts_from_the_first_reachable_server_in_preference_order() {
    let host = FakeHost::new();
    host.set_server("nfs-1", false);
    host.set_server("nfs-2", true);
    host.set_server("nfs-3", true);
    host.add_nfs_mount("/m", "nfs-1");
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["nfs-1", "nfs-2", "nfs-3"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(1500)).await;
    host.set_probe("/m", stale());
    run_for(Duration::from_secs(4)).await;
    assert!(
        host.resolved_calls()
            .contains(&Call::Mount("nfs-2".into(), "/m".into()))
    );
    let st = agent.status().snapshot().mounts["/m"].clone();
    assert_eq!(st.server.as_deref(), Some("nfs-2"));
    assert_eq!(st.state, MountState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_hung_mount_does_not_slow_the_probes_of_others() {
    let host = FakeHost::new();
    host.set_server("vip", false); // keep the hung mount from recovering
    host.add_nfs_mount("/hung", "vip");
    host.add_nfs_mount("/ok", "vip");
    host.set_probe("/hung", ProbeScript::Hang);
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/hung", &["vip"]), mount("/ok", &["vip"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(20_500)).await;
    let probes = |p: &str| {
        host.calls()
            .iter()
            .filter(|c| matches!(c, Call::Probe(x) if x == Path::new(p)))
            .count()
    };
    assert!(
        probes("/ok") >= 20,
        "healthy mount probed {} times in 20 s",
        probes("/ok")
    );
    assert!(
        probes("/hung") <= 11,
        "at most one probe in flight per mount"
    );
    assert_eq!(state_of(&agent, "/hung"), MountState::Hung);
    assert_eq!(state_of(&agent, "/ok"), MountState::Healthy);
    assert!(agent.alive());
}

#[tokio::test(start_paused = true)]
async fn direct_mode_mounts_an_unmounted_path() {
    let host = FakeHost::new();
    host.set_server("vip", true);
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["vip"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(4)).await;
    assert!(
        host.resolved_calls()
            .contains(&Call::Mount("vip".into(), "/m".into()))
    );
    assert_eq!(state_of(&agent, "/m"), MountState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_mount_from_an_unknown_server_is_wrong_server_and_is_moved() {
    let host = FakeHost::new();
    host.set_server("nfs-1", true);
    host.add_nfs_mount("/m", "10.9.9.9");
    let (emit, events) = Emitter::collector();
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["nfs-1"])]),
        emit,
    );
    run_for(Duration::from_secs(5)).await;
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.to.as_deref() == Some("wrong-server"))
    );
    assert!(
        host.resolved_calls()
            .contains(&Call::Mount("nfs-1".into(), "/m".into()))
    );
    assert_eq!(state_of(&agent, "/m"), MountState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn failback_waits_for_the_policy_and_the_preferred_server_to_stay_up() {
    let host = FakeHost::new();
    host.set_server("a", false);
    host.set_server("b", true);
    let mut m = mount("/m", &["a", "b"]);
    m.failback = FailbackPolicy::WhenPreferredHealthy;
    m.failback_after = Duration::from_secs(30);
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![m]),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(5)).await;
    assert_eq!(
        agent.status().snapshot().mounts["/m"].server.as_deref(),
        Some("b")
    );
    host.set_server("a", true);
    run_for(Duration::from_secs(20)).await;
    assert_eq!(
        agent.status().snapshot().mounts["/m"].server.as_deref(),
        Some("b"),
        "too early to fail back"
    );
    run_for(Duration::from_secs(20)).await;
    assert_eq!(
        agent.status().snapshot().mounts["/m"].server.as_deref(),
        Some("a")
    );
    assert_eq!(state_of(&agent, "/m"), MountState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn never_policy_keeps_a_healthy_mount_where_it_is() {
    let host = FakeHost::new();
    host.set_server("a", false);
    host.set_server("b", true);
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["a", "b"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(5)).await;
    host.set_server("a", true);
    run_for(Duration::from_secs(300)).await;
    assert_eq!(
        agent.status().snapshot().mounts["/m"].server.as_deref(),
        Some("b")
    );
}

#[tokio::test(start_paused = true)]
async fn forced_recovery_through_the_handle_reports_every_step() {
    let host = FakeHost::new();
    host.set_server("vip", true);
    host.add_nfs_mount("/m", "vip");
    let (agent, report) = recover_once(&host, mount("/m", &["vip"])).await;
    assert!(report.ok, "{report:?}");
    let steps = step_names(&report);
    assert_eq!(
        steps,
        vec![
            "select-server",
            "mount",
            "verify",
            "hold",
            "umount-detach",
            "move",
            "umount-force"
        ]
    );
    let err = agent
        .handle()
        .recover(Path::new("/nope"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nope"));
}

#[tokio::test(start_paused = true)]
async fn reload_adds_and_forgets_mounts_without_unmounting() {
    let host = FakeHost::new();
    host.set_server("vip", true);
    host.add_nfs_mount("/a", "vip");
    host.add_nfs_mount("/b", "vip");
    let mut agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/a", &["vip"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(1500)).await;
    agent.apply_config(config(vec![mount("/b", &["vip"])]));
    run_for(Duration::from_millis(1500)).await;
    let st = agent.status().snapshot();
    assert!(!st.mounts.contains_key("/a"));
    assert_eq!(st.mounts["/b"].state, MountState::Healthy);
    assert!(host.umounted().is_empty());
}

#[tokio::test(start_paused = true)]
async fn follows_the_cluster_leader_and_never_goes_back_to_a_lower_epoch() {
    use nfsha_agent::ClusterLeader;
    let host = FakeHost::new();
    host.set_server("nfs-1", true);
    host.set_server("nfs-2", true);
    host.add_nfs_mount("/m", "nfs-1");
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["nfs-1", "nfs-2"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(1500)).await;
    let leader = |node: &str, epoch| ClusterLeader {
        node: node.into(),
        address: Some(node.into()),
        epoch,
    };
    // First news: nfs-1 leads at epoch 10 and we are on it: nothing to do.
    assert!(agent.handle().set_leader(leader("nfs-1", 10)));
    run_for(Duration::from_secs(2)).await;
    assert!(host.umounted().is_empty());
    // Failover: nfs-2 leads at epoch 12 → remount proactively, while still healthy.
    assert!(agent.handle().set_leader(leader("nfs-2", 12)));
    run_for(Duration::from_secs(2)).await;
    assert!(
        host.resolved_calls()
            .contains(&Call::Mount("nfs-2".into(), "/m".into()))
    );
    assert_eq!(
        agent.status().snapshot().mounts["/m"].server.as_deref(),
        Some("nfs-2")
    );
    // A stale announcement of the old leader is refused.
    assert!(!agent.handle().set_leader(leader("nfs-1", 11)));
    run_for(Duration::from_secs(2)).await;
    assert_eq!(
        agent.status().snapshot().mounts["/m"].server.as_deref(),
        Some("nfs-2")
    );
    assert_eq!(agent.status().snapshot().cluster_epoch, Some(12));
    // Even a stale mount must not fall back to nfs-1 while nfs-2 leads and is down.
    host.set_server("nfs-2", false);
    host.set_probe("/m", stale());
    run_for(Duration::from_secs(6)).await;
    assert!(
        !host
            .resolved_calls()
            .iter()
            .skip_while(|c| **c != Call::Mount("nfs-2".into(), "/m".into()))
            .any(|c| *c == Call::Mount("nfs-1".into(), "/m".into())),
        "mounted from a server that is not the leader"
    );
    assert_eq!(state_of(&agent, "/m"), MountState::Stale);
}

#[tokio::test(start_paused = true)]
async fn a_leader_at_an_address_outside_the_mounts_servers_is_refused() {
    // Issue 16, hole 2: a leader record put into etcd by anyone who can write it.
    use nfsha_agent::ClusterLeader;
    let host = FakeHost::new();
    host.set_server("nfs-1", true);
    host.set_server("nfs-2", true);
    host.set_server("10.66.6.6", true); // the attacker's server answers NFS
    host.add_nfs_mount("/m", "nfs-1");
    let (emit, events) = Emitter::collector();
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["nfs-1", "nfs-2"])]),
        emit,
    );
    run_for(Duration::from_millis(1500)).await;
    let leader = |node: &str, addr: &str, epoch| ClusterLeader {
        node: node.into(),
        address: Some(addr.into()),
        epoch,
    };
    agent.handle().set_leader(leader("nfs-1", "nfs-1", 10));
    run_for(Duration::from_secs(2)).await;
    // A newer epoch, but at a foreign address: refused, the mount stays on nfs-1.
    agent.handle().set_leader(leader("evil", "10.66.6.6", 11));
    run_for(Duration::from_secs(4)).await;
    assert!(
        !host
            .resolved_calls()
            .iter()
            .any(|c| matches!(c, Call::Mount(s, _) if s == "10.66.6.6")),
        "mounted from the foreign leader: {:?}",
        host.resolved_calls()
    );
    assert!(host.umounted().is_empty(), "the healthy mount was touched");
    assert_eq!(state_of(&agent, "/m"), MountState::Healthy);
    assert_eq!(
        agent.status().snapshot().mounts["/m"].server.as_deref(),
        Some("nfs-1")
    );
    let refused: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventKind::LeaderRefused)
        .cloned()
        .collect();
    assert_eq!(refused.len(), 1, "one refusal event: {refused:?}");
    let why = refused[0].reason.clone().unwrap_or_default();
    assert!(
        why.contains("10.66.6.6") && why.contains("none of this mount's servers"),
        "{why}"
    );
    assert_eq!(refused[0].server.as_deref(), Some("10.66.6.6"));
    // Even when the mount breaks, recovery goes to a configured server, never to it.
    host.set_probe("/m", stale());
    run_for(Duration::from_secs(6)).await;
    assert!(
        !host
            .resolved_calls()
            .iter()
            .any(|c| matches!(c, Call::Mount(s, _) if s == "10.66.6.6")),
        "recovered onto the foreign leader"
    );
    // The real next leader is followed.
    host.set_probe(
        "/m",
        ProbeScript::Answer(ProbeOutcome::Ok {
            latency: Duration::from_millis(1),
        }),
    );
    agent.handle().set_leader(leader("nfs-2", "nfs-2", 12));
    run_for(Duration::from_secs(4)).await;
    assert!(
        host.resolved_calls()
            .contains(&Call::Mount("nfs-2".into(), "/m".into())),
        "the next real leader was not followed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_epoch_behind_the_same_floating_address_forces_a_remount() {
    use nfsha_agent::ClusterLeader;
    let host = FakeHost::new();
    host.set_server("vip", true);
    host.add_nfs_mount("/m", "vip");
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["vip"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(1500)).await;
    let at = |node: &str, epoch| ClusterLeader {
        node: node.into(),
        address: Some("vip".into()),
        epoch,
    };
    agent.handle().set_leader(at("nfs-1", 3));
    run_for(Duration::from_secs(2)).await;
    assert!(host.umounted().is_empty());
    agent.handle().set_leader(at("nfs-2", 7));
    run_for(Duration::from_secs(2)).await;
    assert_eq!(host.umounted().len(), 1, "remounted once for the new epoch");
    assert_eq!(state_of(&agent, "/m"), MountState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_that_is_not_serving_yet_is_pinged_and_taken_as_soon_as_it_answers() {
    use nfsha_agent::ClusterLeader;
    let host = FakeHost::new();
    host.set_server("nfs-1", true);
    host.set_server("nfs-2", false); // elected, still bringing its exports up
    host.add_nfs_mount("/m", "nfs-1");
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(vec![mount("/m", &["nfs-1", "nfs-2"])]),
        Emitter::collector().0,
    );
    run_for(Duration::from_millis(1500)).await;
    agent.handle().set_leader(ClusterLeader {
        node: "nfs-2".into(),
        address: Some("nfs-2".into()),
        epoch: 9,
    });
    run_for(Duration::from_secs(8)).await;
    let count = |want: Call| host.calls().iter().filter(|c| **c == want).count();
    let pings = count(Call::PingServer("nfs-2".into()));
    let full = count(Call::ProbeServer("nfs-2".into()));
    // Pinged at the 1 s probe cadence; probed in full only by the backed-off recoveries
    // and server probes.
    assert!(pings >= 6, "nfs-2 pinged only {pings} times in 8 s");
    assert!(full <= 9, "nfs-2 probed in full {full} times in 8 s");
    assert_eq!(state_of(&agent, "/m"), MountState::WrongServer);
    host.set_server("nfs-2", true);
    run_for(Duration::from_millis(1100)).await;
    assert_eq!(
        agent.status().snapshot().mounts["/m"].server.as_deref(),
        Some("nfs-2"),
        "taken within one probe interval of its first answer"
    );
}
