//! `[mount.fleet]` end to end in the agent (issue 11 item 3): real etcd on loopback, three
//! agents over fake hosts (the host seam: mount table, RPC reachability), each with its
//! own state directory, following one volume.
//!
//! The `etcd_` tier: needs /usr/bin/etcd (apt-get install etcd-server).

// The same real-etcd harness as nfsha-cluster's own tests (one copy).
#[path = "../../nfsha-cluster/tests/common/mod.rs"]
mod common;

use common::Etcd;
use nfsha_agent::fleet::{operator_failback, wait_followed};
use nfsha_agent::testing::{FakeHost, ProbeScript};
use nfsha_agent::{Agent, Emitter};
use nfsha_cluster::{Fleet, FleetError, FleetOptions, ReplicaId};
use nfsha_config::{
    AgentSettings, ClusterSource, Config, FleetConfig, FleetQuorum, MountConfig, Replica, ServerRef,
};
use nfsha_core::{ProbeOp, ProbeOutcome};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MP: &str = "/misc/crr";
const SRC: &str = "10.1.13.5";
const DST: &str = "10.2.13.5";

fn dst() -> Replica {
    Replica {
        host: DST.into(),
        export: "/crr-dest1".into(),
    }
}

fn src() -> Replica {
    Replica {
        host: SRC.into(),
        export: "/crr-site1".into(),
    }
}

fn crr(promote_log: &Path) -> MountConfig {
    let mut d = ServerRef::with_export(DST, "/crr-dest1");
    d.weight = 1;
    let mut m = MountConfig::new(MP, "/crr-site1", vec![ServerRef::new(SRC), d]);
    m.nfs_version = nfsha_config::NfsVersion::V3;
    m.fleet = Some(FleetConfig {
        volume: "crr".into(),
        failover_after: Duration::from_secs(2),
        quorum: FleetQuorum::Majority,
        promote_command: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo \"$NFSHA_TO_HOST:$NFSHA_TO_EXPORT $NFSHA_GENERATION\" >> '{}'",
                promote_log.display()
            ),
        ],
        promote_timeout: Duration::from_secs(10),
        // The lab's stand-in for the storage's mirror-state query: the reverse resync
        // is done once the marker exists.
        resync_check_command: vec![
            "test".into(),
            "-e".into(),
            promote_log.with_file_name("resynced").display().to_string(),
        ],
        resync_check_timeout: Duration::from_secs(5),
    });
    m
}

fn stale() -> ProbeScript {
    ProbeScript::Answer(ProbeOutcome::Failed {
        op: ProbeOp::Statfs,
        errno: libc::ESTALE,
        latency: Duration::from_millis(1),
    })
}

fn healthy() -> ProbeScript {
    ProbeScript::Answer(ProbeOutcome::Ok {
        latency: Duration::from_millis(1),
    })
}

fn host() -> FakeHost {
    let h = FakeHost::new();
    h.set_server(SRC, true);
    h.set_server(DST, true);
    h.set_exports(SRC, &["/crr-site1"]);
    h.set_exports(DST, &["/crr-dest1"]);
    h
}

fn mounted(host: &FakeHost) -> Option<Replica> {
    host.table()
        .iter()
        .rev()
        .find(|m| m.mountpoint == Path::new(MP))
        .and_then(|m| {
            Some(Replica {
                host: m.server.clone()?,
                export: m.export.clone()?,
            })
        })
}

struct Client {
    host: FakeHost,
    agent: Option<Agent<FakeHost>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _state: tempfile::TempDir,
}

fn start(name: &str, cluster: &ClusterSource, mount: &MountConfig, host: FakeHost) -> Client {
    let state = tempfile::tempdir().unwrap();
    let cfg = Config {
        agent: AgentSettings {
            state_dir: state.path().to_path_buf(),
            ..AgentSettings::default()
        },
        mounts: vec![mount.clone()],
        ..Config::empty()
    };
    let agent = Agent::start(Arc::new(host.clone()), cfg.clone(), Emitter::tracing_only());
    let tasks = nfsha_agent::fleet::spawn(
        Some(cluster),
        &cfg.mounts,
        name,
        agent.handle(),
        Emitter::tracing_only(),
    );
    Client {
        host,
        agent: Some(agent),
        tasks,
        _state: state,
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
        if let Some(a) = self.agent.take() {
            a.shutdown();
        }
    }
}

async fn wait_for(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !ok() {
        assert!(Instant::now() < end, "timed out after {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_three_agents_fail_the_volume_over_once_and_a_late_agent_follows() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let promote_log = dir.path().join("promote.log");
    let cluster = ClusterSource {
        etcd_endpoints: vec![etcd.endpoint()],
        cluster: "lab".into(),
        etcd_tls: None,
        etcd_auth: None,
    };
    let mount = crr(&promote_log);
    let clients: Vec<Client> = ["c1", "c2", "c3"]
        .iter()
        .map(|n| start(n, &cluster, &mount, host()))
        .collect();

    // A fresh fleet: the key is seeded with the first replica and every agent mounts it.
    wait_for("every agent on the source", Duration::from_secs(30), || {
        clients.iter().all(|c| mounted(&c.host) == Some(src()))
    })
    .await;
    let fleet = Fleet::connect(&FleetOptions::new(vec![etcd.endpoint()]))
        .await
        .unwrap();
    let rec = fleet.active("crr").await.unwrap().expect("seeded");
    assert_eq!(rec.generation, 1);

    // One agent alone loses the source, and its mount goes stale (it recovers): a
    // minority, nothing moves — not even that agent's own mount.
    clients[0].host.set_server(SRC, false);
    clients[0].host.set_probe(MP, stale());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        clients.iter().all(|c| mounted(&c.host) == Some(src())),
        "one agent's view moved a mount"
    );
    assert!(!promote_log.exists(), "a minority ran the promote command");
    clients[0].host.set_probe(MP, healthy());

    // The source zone goes away for everyone: one promote, all on the replica, generation 2.
    for c in &clients {
        c.host.set_server(SRC, false);
    }
    wait_for(
        "every agent on the replica",
        Duration::from_secs(40),
        || clients.iter().all(|c| mounted(&c.host) == Some(dst())),
    )
    .await;
    let lines = std::fs::read_to_string(&promote_log).expect("the promote command ran");
    assert_eq!(lines.lines().count(), 1, "promote ran once: {lines}");
    assert_eq!(lines.trim(), "10.2.13.5:/crr-dest1 2");
    let rec = fleet.active("crr").await.unwrap().unwrap();
    assert_eq!(
        (rec.replica.to_string(), rec.generation),
        ("10.2.13.5:/crr-dest1".into(), 2)
    );

    // The source returns: nobody moves back.
    for c in &clients {
        c.host.set_server(SRC, true);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(clients.iter().all(|c| mounted(&c.host) == Some(dst())));

    // An agent started afterwards (fresh state, nothing mounted) follows the record, not
    // the preferred source.
    let late = start("c4", &cluster, &mount, host());
    wait_for(
        "the late agent on the replica",
        Duration::from_secs(30),
        || mounted(&late.host) == Some(dst()),
    )
    .await;
    assert_eq!(fleet.active("crr").await.unwrap().unwrap().generation, 2);
    assert_eq!(
        std::fs::read_to_string(&promote_log)
            .unwrap()
            .lines()
            .count(),
        1
    );

    // Failback on purpose (`nfsha replica failback`): refused without the operator's
    // confirmation, for a non-member, and while the resync check fails — nothing moves.
    let f = mount.fleet.clone().unwrap();
    let refused = |r: Result<nfsha_cluster::ActiveRecord, FleetError>| match r {
        Ok(rec) => panic!("failback accepted: {rec:?}"),
        Err(e) => e,
    };
    let e = refused(operator_failback(&fleet, &mount, &f, "10.1.13.5", false, "op").await);
    assert!(matches!(e, FleetError::ResyncNotConfirmed), "{e}");
    let e = refused(operator_failback(&fleet, &mount, &f, "10.9.9.9:/x", true, "op").await);
    assert!(matches!(e, FleetError::NotAMember { .. }), "{e}");
    let e = refused(operator_failback(&fleet, &mount, &f, "10.1.13.5", true, "op").await);
    assert!(matches!(e, FleetError::ResyncCheckFailed(_)), "{e}");
    assert_eq!(fleet.active("crr").await.unwrap().unwrap().generation, 2);
    assert!(clients.iter().all(|c| mounted(&c.host) == Some(dst())));

    // The reverse resync is done: the whole fleet, the late agent too, goes back once.
    std::fs::write(promote_log.with_file_name("resynced"), b"").unwrap();
    let rec = operator_failback(&fleet, &mount, &f, "10.1.13.5", true, "op")
        .await
        .expect("failback");
    assert_eq!(
        (rec.replica.clone(), rec.generation),
        (ReplicaId::new("10.1.13.5", "/crr-site1"), 3)
    );
    assert_eq!(rec.reason, nfsha_cluster::Reason::Failback);
    let followed = wait_followed(&fleet, "crr", 3, &rec.replica, Duration::from_secs(40))
        .await
        .unwrap();
    assert!(
        followed.all,
        "not every agent followed: {:?}",
        followed.views
    );
    assert_eq!(followed.views.len(), 4, "{:?}", followed.views);
    assert!(
        clients
            .iter()
            .chain([&late])
            .all(|c| mounted(&c.host) == Some(src()))
    );
    let e = refused(operator_failback(&fleet, &mount, &f, "10.1.13.5", true, "op").await);
    assert!(matches!(e, FleetError::AlreadyActive { .. }), "{e}");
    assert_eq!(
        std::fs::read_to_string(&promote_log)
            .unwrap()
            .lines()
            .count(),
        1,
        "a failback runs no promote command"
    );
}
