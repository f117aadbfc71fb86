//! Replica volumes (seed 001): the active replica is kept on disk and is the only one
//! mounted; failover, crashes at every step, reboots, lost and corrupt state files, the
//! operator's choice, and the write probe — against the scripted FakeHost on tokio's
//! paused clock, with the state directory in a tempdir.

use nfsha_agent::replica::{ActiveRecord, Loaded, ReplicaStore, STATE_VERSION};
use nfsha_agent::testing::{Call, FakeHost, ProbeScript};
use nfsha_agent::{Agent, Emitter};
use nfsha_config::{AgentSettings, Config, MountConfig, Replica, ServerRef};
use nfsha_core::{EventKind, MountState, ProbeOp, ProbeOutcome, WriteState};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MP: &str = "/misc/crr";
const SRC: &str = "10.1.13.5";
const DST: &str = "10.2.13.5";

fn src() -> Replica {
    Replica {
        host: SRC.into(),
        export: "/crr-site1".into(),
    }
}

fn dst() -> Replica {
    Replica {
        host: DST.into(),
        export: "/crr-dest1".into(),
    }
}

/// The seed's map line as a `[[mount]]`: the source first, the replica with its own path.
fn crr() -> MountConfig {
    let mut dst = ServerRef::with_export(DST, "/crr-dest1");
    dst.weight = 1;
    let mut m = MountConfig::new(MP, "/crr-site1", vec![ServerRef::new(SRC), dst]);
    m.nfs_version = nfsha_config::NfsVersion::V3;
    m
}

fn config(state_dir: &Path, mounts: Vec<MountConfig>) -> Config {
    Config {
        agent: AgentSettings {
            state_dir: state_dir.to_path_buf(),
            ..AgentSettings::default()
        },
        mounts,
        ..Config::empty()
    }
}

/// Both volumes answer and export only their own path.
fn seed_host() -> FakeHost {
    let host = FakeHost::new();
    host.set_server(SRC, true);
    host.set_server(DST, true);
    host.set_exports(SRC, &["/crr-site1"]);
    host.set_exports(DST, &["/crr-dest1"]);
    host
}

fn stale() -> ProbeScript {
    ProbeScript::Answer(ProbeOutcome::Failed {
        op: ProbeOp::Statfs,
        errno: libc::ESTALE,
        latency: Duration::from_millis(1),
    })
}

async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The replica mounted at `mp`, from the fake's mount table.
fn mounted(host: &FakeHost, mp: &str) -> Option<Replica> {
    host.table()
        .iter()
        .rev()
        .find(|m| m.mountpoint == Path::new(mp))
        .map(|m| Replica {
            host: m.server.clone().unwrap_or_default(),
            export: m.export.clone().unwrap_or_default(),
        })
}

fn record(dir: &Path) -> Option<ActiveRecord> {
    match ReplicaStore::new(dir).load(Path::new(MP)) {
        Loaded::Found(r) => Some(r),
        _ => None,
    }
}

/// Servers mount.nfs was asked to mount from (address forms reduced to the host).
fn mounted_from(host: &FakeHost) -> Vec<String> {
    host.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Mount(s, _) => Some(s.trim_start_matches("::ffff:").to_string()),
            _ => None,
        })
        .collect()
}

fn seed_record(dir: &Path, r: &Replica, generation: u64) {
    ReplicaStore::new(dir)
        .save(&ActiveRecord {
            version: STATE_VERSION,
            mountpoint: MP.into(),
            host: r.host.clone(),
            export: r.export.clone(),
            generation,
            reason: "test".into(),
            updated_ms: 0,
        })
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn failover_is_recorded_and_the_returning_source_is_never_mounted_again() {
    let dir = tempfile::tempdir().unwrap();
    let host = seed_host();
    host.add_nfs_mount_of(MP, SRC, "/crr-site1");
    let (emit, events) = Emitter::collector();
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(dir.path(), vec![crr()]),
        emit,
    );
    run_for(Duration::from_secs(3)).await;
    // No record yet: the mounted source is adopted as active (generation 1).
    let r = record(dir.path()).expect("adopted");
    assert_eq!((r.replica(), r.generation), (src(), 1));
    let ev = events.lock().unwrap().clone();
    assert!(
        ev.iter()
            .any(|e| e.kind == EventKind::Replica && e.outcome.as_deref() == Some("adopted")),
        "{ev:?}"
    );

    // The source zone goes away: fail over to the replica, generation 2.
    host.set_server(SRC, false);
    host.set_probe(MP, stale());
    run_for(Duration::from_secs(5)).await;
    assert_eq!(mounted(&host, MP), Some(dst()));
    let r = record(dir.path()).unwrap();
    assert_eq!((r.replica(), r.generation), (dst(), 2));
    assert!(r.reason.contains("failover"), "{r:?}");
    let st = agent.status().snapshot().mounts[MP].clone();
    assert_eq!(st.state, MountState::Healthy);
    assert_eq!(
        (st.server.as_deref(), st.export.as_deref()),
        (Some(DST), Some("/crr-dest1"))
    );
    let rs = st.replica.unwrap();
    assert_eq!(rs.active.as_deref(), Some("10.2.13.5:/crr-dest1"));
    assert_eq!(rs.generation, Some(2));
    // The record was written before the new mount was moved in.
    let ev = events.lock().unwrap().clone();
    let steps: Vec<&str> = ev
        .iter()
        .filter(|e| e.kind == EventKind::RecoveryStep)
        .filter_map(|e| e.step.as_deref())
        .collect();
    let rec_at = steps.iter().position(|s| *s == "record-replica").unwrap();
    let move_at = steps.iter().position(|s| *s == "move").unwrap();
    assert!(rec_at < move_at, "{steps:?}");

    // The source comes back: nothing moves, even when the mount is recovered again.
    host.set_server(SRC, true);
    run_for(Duration::from_secs(120)).await;
    assert_eq!(mounted(&host, MP), Some(dst()));
    host.set_probe(MP, stale());
    run_for(Duration::from_secs(5)).await;
    assert_eq!(mounted(&host, MP), Some(dst()));
    assert_eq!(record(dir.path()).unwrap().generation, 2);
    agent.shutdown();

    // Simulated reboot: nothing mounted, a fresh agent over the same state directory.
    let rebooted = host.restarted(true);
    let agent = Agent::start(
        Arc::new(rebooted.clone()),
        config(dir.path(), vec![crr()]),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(5)).await;
    assert_eq!(mounted(&rebooted, MP), Some(dst()));
    assert!(
        !mounted_from(&rebooted).contains(&SRC.to_string()),
        "the stale source was mounted: {:?}",
        rebooted.calls()
    );
    assert_eq!(
        agent.status().snapshot().mounts[MP].state,
        MountState::Healthy
    );
}

/// Crash the agent at the k-th host call of a failover (every k until one completes),
/// then start a fresh agent over the same state directory, with the stale source back:
/// it mounts the recorded active replica, and once the failover was recorded, never
/// the source.
async fn crash_at_every_step(reboot: bool) {
    let mut completed = false;
    // Crashes before the record was written, and after it (the move pending or done).
    let (mut before, mut after_record) = (0, 0);
    for k in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        seed_record(dir.path(), &src(), 1);
        let host = seed_host();
        host.add_nfs_mount_of(MP, SRC, "/crr-site1");
        let agent = Agent::start(
            Arc::new(host.clone()),
            config(dir.path(), vec![crr()]),
            Emitter::collector().0,
        );
        run_for(Duration::from_secs(3)).await;
        host.set_server(SRC, false);
        host.set_probe(MP, stale());
        host.crash_after(k);
        run_for(Duration::from_secs(10)).await;
        let crashed = host.crashed();
        let moved = host.calls().iter().any(|c| matches!(c, Call::Move(..)));
        agent.shutdown();
        let at_crash = record(dir.path()).expect("a record survives every crash");
        assert!(
            (at_crash.replica(), at_crash.generation) == (src(), 1)
                || (at_crash.replica(), at_crash.generation) == (dst(), 2),
            "k={k}: {at_crash:?}"
        );

        // A fresh agent; the source zone is back (with its stale data).
        let fresh = host.restarted(reboot);
        fresh.set_server(SRC, true);
        let agent = Agent::start(
            Arc::new(fresh.clone()),
            config(dir.path(), vec![crr()]),
            Emitter::collector().0,
        );
        run_for(Duration::from_secs(10)).await;
        let after = record(dir.path()).unwrap();
        assert_eq!(
            after, at_crash,
            "k={k}: with both answering the record does not change"
        );
        assert_eq!(
            mounted(&fresh, MP),
            Some(after.replica()),
            "k={k} reboot={reboot}: calls {:?}",
            fresh.calls()
        );
        if after.replica() == dst() {
            assert!(
                !mounted_from(&fresh).contains(&SRC.to_string()),
                "k={k}: the stale source was mounted after the failover was recorded"
            );
        }
        assert_eq!(
            agent.status().snapshot().mounts[MP].state,
            MountState::Healthy,
            "k={k}"
        );
        agent.shutdown();
        if crashed && after.replica() == src() {
            before += 1;
            assert!(!moved, "k={k}: moved in without a record");
        }
        if crashed && after.replica() == dst() {
            after_record += 1;
        }
        if !crashed {
            // The failover finished before the k-th call: every step was covered.
            assert_eq!(at_crash.replica(), dst());
            completed = true;
            break;
        }
    }
    assert!(completed, "a failover takes fewer than 40 host calls");
    eprintln!("crashes before the record: {before}, after it: {after_record}");
    assert!(before >= 3 && after_record >= 1, "{before} {after_record}");
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_step_of_a_failover_then_a_restart_mounts_the_recorded_replica() {
    crash_at_every_step(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_step_of_a_failover_then_a_reboot_mounts_the_recorded_replica() {
    crash_at_every_step(true).await;
}

#[tokio::test(start_paused = true)]
async fn without_a_record_or_a_mount_no_replica_is_chosen_until_the_operator_names_one() {
    // The reboot of seed 001 with the state file lost: the preferred source would be
    // the stale one, so the agent mounts nothing and says why.
    let dir = tempfile::tempdir().unwrap();
    let host = seed_host();
    let (emit, events) = Emitter::collector();
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(dir.path(), vec![crr()]),
        emit,
    );
    run_for(Duration::from_secs(10)).await;
    assert!(mounted_from(&host).is_empty(), "{:?}", host.calls());
    let st = agent.status().snapshot().mounts[MP].clone();
    assert_eq!(st.state, MountState::NotMounted);
    assert!(
        st.recovery_error
            .as_deref()
            .unwrap()
            .contains("no-active-replica"),
        "{st:?}"
    );
    let rs = st.replica.unwrap();
    assert_eq!(rs.active, None);
    assert!(rs.problem.unwrap().contains("missing"));
    let ev = events.lock().unwrap().clone();
    let reported: Vec<&str> = ev
        .iter()
        .filter(|e| e.kind == EventKind::Replica)
        .filter_map(|e| e.outcome.as_deref())
        .collect();
    assert_eq!(
        reported,
        ["state-missing-or-corrupt", "no-active-replica"],
        "reported once each, not at every retry"
    );
    let metrics = agent.metrics().encode();
    assert!(
        metrics.contains(r#"nfsha_mount_replica_unknown{mountpoint="/misc/crr"} 1"#),
        "{metrics}"
    );

    // The operator names the replica: it is recorded (generation 1) and mounted.
    let report = agent
        .handle()
        .recover_to(Path::new(MP), Some(dst()))
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(mounted(&host, MP), Some(dst()));
    let r = record(dir.path()).unwrap();
    assert_eq!((r.replica(), r.generation), (dst(), 1));
    assert!(r.reason.starts_with("operator"), "{r:?}");
    let st = agent.status().snapshot().mounts[MP].clone();
    assert_eq!(st.replica.unwrap().problem, None);

    // A replica that is not this mount's is refused, and nothing changes.
    let other = Replica {
        host: DST.into(),
        export: "/elsewhere".into(),
    };
    let report = agent
        .handle()
        .recover_to(Path::new(MP), Some(other))
        .await
        .unwrap();
    assert!(!report.ok);
    assert!(
        report
            .error
            .unwrap()
            .contains("not a replica of this mount"),
        "{:?}",
        report.steps
    );
    assert_eq!(record(dir.path()).unwrap().generation, 1);
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_state_file_is_reported_and_the_mounted_replica_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReplicaStore::new(dir.path());
    std::fs::write(store.path_for(Path::new(MP)), "garbage").unwrap();
    let host = seed_host();
    host.add_nfs_mount_of(MP, DST, "/crr-dest1");
    let (emit, events) = Emitter::collector();
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(dir.path(), vec![crr()]),
        emit,
    );
    run_for(Duration::from_secs(3)).await;
    let ev = events.lock().unwrap().clone();
    let corrupt = ev
        .iter()
        .find(|e| e.kind == EventKind::Replica)
        .expect("reported");
    assert!(
        corrupt.reason.as_deref().unwrap().contains("corrupt"),
        "{corrupt:?}"
    );
    // Adopted: the replica in use, not the preferred source.
    let r = record(dir.path()).unwrap();
    assert_eq!(r.replica(), dst());
    assert!(r.reason.contains("state file corrupt"), "{r:?}");
    assert_eq!(mounted(&host, MP), Some(dst()));
    assert!(mounted_from(&host).is_empty());
    assert_eq!(
        agent.status().snapshot().mounts[MP].state,
        MountState::Healthy
    );
}

#[tokio::test(start_paused = true)]
async fn a_healthy_mount_of_a_replica_that_is_not_active_is_moved_to_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    seed_record(dir.path(), &dst(), 4);
    let host = seed_host();
    // E.g. autofs or an operator mounted the preferred source meanwhile.
    host.add_nfs_mount_of(MP, SRC, "/crr-site1");
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(dir.path(), vec![crr()]),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(6)).await;
    assert_eq!(mounted(&host, MP), Some(dst()));
    assert_eq!(mounted_from(&host), [DST.to_string()]);
    assert_eq!(record(dir.path()).unwrap().generation, 4, "not a failover");
    assert_eq!(agent.status().snapshot().mounts[MP].recoveries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failover_that_cannot_be_recorded_does_not_move_the_new_mount_in() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("state");
    seed_record(&dir, &src(), 1);
    let host = seed_host();
    host.add_nfs_mount_of(MP, SRC, "/crr-site1");
    let (emit, events) = Emitter::collector();
    let agent = Agent::start(Arc::new(host.clone()), config(&dir, vec![crr()]), emit);
    run_for(Duration::from_secs(3)).await;
    // The state directory becomes unwritable (a file in its place; root ignores modes).
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "").unwrap();
    host.set_server(SRC, false);
    host.set_probe(MP, stale());
    run_for(Duration::from_secs(5)).await;
    assert!(
        !host.calls().iter().any(|c| matches!(c, Call::Move(..))),
        "{:?}",
        host.calls()
    );
    assert_eq!(mounted(&host, MP), Some(src()), "the old mount stays");
    let st = agent.status().snapshot().mounts[MP].clone();
    assert!(
        st.recovery_error
            .as_deref()
            .unwrap()
            .contains("Could not record the active replica"),
        "{st:?}"
    );
    assert!(
        st.replica
            .unwrap()
            .problem
            .unwrap()
            .contains("cannot write")
    );
    assert!(
        host.stage_dirs().is_empty(),
        "the staged mount is thrown away"
    );
    let ev = events.lock().unwrap().clone();
    assert!(
        ev.iter().any(
            |e| e.kind == EventKind::Replica && e.outcome.as_deref() == Some("state-rewritten")
        ),
        "the lost file is reported: {ev:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn mounts_with_one_export_path_keep_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeHost::new();
    host.set_server("a", true);
    host.set_server("b", true);
    let m = MountConfig::new(
        "/m",
        "/export",
        vec![ServerRef::new("a"), ServerRef::new("b")],
    );
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(dir.path(), vec![m]),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(5)).await;
    // Nothing mounted at start: the preferred server, as before.
    assert_eq!(mounted_from(&host), ["a".to_string()]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let st = agent.status().snapshot().mounts["/m"].clone();
    assert_eq!(st.replica, None);
    assert_eq!(st.export.as_deref(), Some("/export"));
}

#[tokio::test(start_paused = true)]
async fn a_mount_of_another_export_of_a_configured_host_is_wrong_server() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeHost::new();
    host.set_server("a", true);
    host.add_nfs_mount_of("/m", "a", "/some/other");
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(
            dir.path(),
            vec![MountConfig::new("/m", "/export", vec![ServerRef::new("a")])],
        ),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(6)).await;
    assert_eq!(
        mounted(&host, "/m"),
        Some(Replica {
            host: "a".into(),
            export: "/export".into()
        })
    );
    assert_eq!(agent.status().snapshot().mounts["/m"].recoveries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_read_only_replica_is_a_state_and_never_remounted() {
    let dir = tempfile::tempdir().unwrap();
    seed_record(dir.path(), &dst(), 2);
    let host = seed_host();
    host.add_nfs_mount_of(MP, DST, "/crr-dest1");
    host.set_write_probe(
        MP,
        ProbeScript::Answer(ProbeOutcome::Failed {
            op: ProbeOp::Create,
            errno: libc::EROFS,
            latency: Duration::from_millis(1),
        }),
    );
    let mut m = crr();
    m.write_probe = true;
    let (emit, events) = Emitter::collector();
    let agent = Agent::start(Arc::new(host.clone()), config(dir.path(), vec![m]), emit);
    run_for(Duration::from_secs(30)).await;
    let st = agent.status().snapshot().mounts[MP].clone();
    assert_eq!(st.state, MountState::Healthy);
    let w = st.write.clone().unwrap();
    assert_eq!(w.state, WriteState::ReadOnly);
    assert!(w.detail.unwrap().contains("EROFS"));
    assert_eq!(st.recoveries, 0);
    assert!(host.umounted().is_empty(), "never remounted");
    let writes = host
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::WriteProbe(..)))
        .count();
    assert!(
        (2..=4).contains(&writes),
        "every 10 s, not every probe: {writes}"
    );
    let metrics = agent.metrics().encode();
    assert!(
        metrics.contains(r#"nfsha_mount_writable{mountpoint="/misc/crr",state="read-only"} 1"#),
        "{metrics}"
    );

    // The replication is broken: the replica takes writes; then the volume fills up;
    // then writes hang. Each change is one event, none a recovery.
    host.set_write_probe(
        MP,
        ProbeScript::Answer(ProbeOutcome::Ok {
            latency: Duration::from_millis(2),
        }),
    );
    run_for(Duration::from_secs(11)).await;
    host.set_write_probe(
        MP,
        ProbeScript::Answer(ProbeOutcome::Failed {
            op: ProbeOp::Write,
            errno: libc::ENOSPC,
            latency: Duration::from_millis(1),
        }),
    );
    run_for(Duration::from_secs(11)).await;
    host.set_write_probe(MP, ProbeScript::Hang);
    run_for(Duration::from_secs(15)).await;
    let ev = events.lock().unwrap().clone();
    let changes: Vec<(&str, &str)> = ev
        .iter()
        .filter(|e| e.kind == EventKind::WriteProbe)
        .map(|e| (e.from.as_deref().unwrap(), e.to.as_deref().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            ("unknown", "read-only"),
            ("read-only", "writable"),
            ("writable", "no-space"),
            ("no-space", "write-hung"),
        ]
    );
    let st = agent.status().snapshot().mounts[MP].clone();
    assert_eq!(st.state, MountState::Healthy);
    assert_eq!(st.write.unwrap().state, WriteState::WriteHung);
    assert_eq!(st.recoveries, 0);
    assert!(host.umounted().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cluster_leader_does_not_move_a_mount_with_replica_volumes() {
    let dir = tempfile::tempdir().unwrap();
    seed_record(dir.path(), &dst(), 2);
    let host = seed_host();
    host.set_server("vip", true);
    host.add_nfs_mount_of(MP, DST, "/crr-dest1");
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(dir.path(), vec![crr()]),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(2)).await;
    agent.handle().set_leader(nfsha_agent::ClusterLeader {
        node: "n2".into(),
        address: Some("vip".into()),
        epoch: 7,
    });
    run_for(Duration::from_secs(10)).await;
    assert!(mounted_from(&host).is_empty(), "{:?}", host.calls());
    assert_eq!(mounted(&host, MP), Some(dst()));
    assert_eq!(
        agent.status().snapshot().mounts[MP].state,
        MountState::Healthy
    );
}

#[tokio::test(start_paused = true)]
async fn recover_to_a_named_server_of_a_one_export_mount_prefers_it_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let host = FakeHost::new();
    host.set_server("a", true);
    host.set_server("b", true);
    host.add_nfs_mount("/m", "a");
    let m = MountConfig::new(
        "/m",
        "/export",
        vec![ServerRef::new("a"), ServerRef::new("b")],
    );
    let agent = Agent::start(
        Arc::new(host.clone()),
        config(dir.path(), vec![m]),
        Emitter::collector().0,
    );
    run_for(Duration::from_secs(2)).await;
    let b = Replica {
        host: "b".into(),
        export: "/export".into(),
    };
    let report = agent
        .handle()
        .recover_to(Path::new("/m"), Some(b.clone()))
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(mounted(&host, "/m"), Some(b));
    let wrong = Replica {
        host: "b".into(),
        export: "/other".into(),
    };
    let report = agent
        .handle()
        .recover_to(Path::new("/m"), Some(wrong))
        .await
        .unwrap();
    assert!(!report.ok);
    assert!(
        report
            .error
            .unwrap()
            .contains("not a replica of this mount")
    );
}
