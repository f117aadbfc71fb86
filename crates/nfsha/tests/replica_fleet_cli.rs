//! `nfsha replica status|failback` on a `[mount.fleet]` volume (issue 11 item 5): the
//! record lives in a real etcd on loopback; no agent runs, so the commands must work
//! from etcd alone — status shows the record, failback moves it once, refuses what it
//! must, and says nobody confirmed the move when no agent is live.
//!
//! The `etcd_` tier: needs /usr/bin/etcd (apt-get install etcd-server).

#[path = "../../nfsha-cluster/tests/common/mod.rs"]
mod common;

use assert_cmd::Command;
use common::Etcd;
use nfsha_cluster::{Fleet, FleetOptions, Reason, ReplicaId};
use std::path::PathBuf;

fn nfsha() -> Command {
    Command::cargo_bin("nfsha").unwrap()
}

/// Seed 001's mount as a fleet volume `crr`, etcd at `endpoint`; the resync check is
/// "the marker file exists".
fn config(dir: &tempfile::TempDir, endpoint: &str) -> (PathBuf, PathBuf) {
    let marker = dir.path().join("resynced");
    let p = dir.path().join("nfsha.toml");
    std::fs::write(
        &p,
        format!(
            "[agent]\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n\n[agent.cluster]\netcd_endpoints = [\"{endpoint}\"]\ncluster = \"lab\"\n\n[[mount]]\nmountpoint = \"/misc/crr\"\nexport = \"/crr-site1\"\nservers = [\"10.1.13.5\", {{ host = \"10.2.13.5\", export = \"/crr-dest1\" }}]\nnfs_version = \"3\"\n\n[mount.fleet]\nvolume = \"crr\"\nresync_check_command = [\"test\", \"-e\", \"{}\"]\nresync_check_timeout = \"5s\"\n",
            dir.path().join("agent.sock").display(),
            dir.path().join("state").display(),
            marker.display(),
        ),
    )
    .unwrap();
    (p, marker)
}

async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_replica_cli_shows_and_fails_back_a_fleet_volume() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, marker) = config(&dir, &etcd.endpoint());
    let fleet = Fleet::connect(&FleetOptions::new(vec![etcd.endpoint()]))
        .await
        .unwrap();
    let src = ReplicaId::new("10.1.13.5", "/crr-site1");
    let dst = ReplicaId::new("10.2.13.5", "/crr-dest1");

    // Not seeded yet: status says so.
    let mut c = nfsha();
    c.args(["replica", "status", "--config"]).arg(&cfg);
    let out = run(c).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("active: none (not seeded)"), "{stdout}");

    // The fleet failed over (as the agents would write it): seed, then a move.
    fleet.seed_active("crr", &src, "c1").await.unwrap();
    let req = nfsha_cluster::Failback {
        to: dst.clone(),
        members: vec![src.clone(), dst.clone()],
        by: "test".into(),
        confirm_resync: true,
        resync_check: None,
        lock_ttl: std::time::Duration::from_secs(10),
    };
    fleet.failback("crr", &req).await.unwrap();

    let mut c = nfsha();
    c.args(["replica", "status", "--json", "--config"])
        .arg(&cfg);
    let out = run(c).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["fleet"]["active"]["generation"], 2, "{rows}");
    assert_eq!(
        rows[0]["fleet"]["active"]["replica"]["export"],
        "/crr-dest1"
    );

    // Refused: no --resynced; a non-member; the resync check failing. Nothing moves.
    let refusals: [(&[&str], &str); 3] = [
        (&["--to", "10.1.13.5"], "--resynced"),
        (&["--to", "10.9.9.9:/x", "--resynced"], "not a member"),
        (&["--to", "10.1.13.5", "--resynced"], "resync check failed"),
    ];
    for (args, says) in refusals {
        let mut c = nfsha();
        c.args(["replica", "failback", "crr"])
            .args(args)
            .arg("--config")
            .arg(&cfg);
        let out = run(c).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(fleet.active("crr").await.unwrap().unwrap().generation, 2);

    // The resync is done: the volume moves back once, by mountpoint as well as by name;
    // with no live agent the command says nobody confirmed it (exit 1).
    std::fs::write(&marker, b"").unwrap();
    let mut c = nfsha();
    c.args([
        "replica",
        "failback",
        "/misc/crr",
        "--to",
        "10.1.13.5",
        "--resynced",
        "--wait",
        "1s",
        "--config",
    ])
    .arg(&cfg);
    let out = run(c).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("active 10.1.13.5:/crr-site1 generation 3"),
        "{stdout}"
    );
    assert!(stdout.contains("no live agent view"), "{stdout}");
    let rec = fleet.active("crr").await.unwrap().unwrap();
    assert_eq!(
        (rec.replica, rec.generation, rec.reason),
        (src, 3, Reason::Failback)
    );
    assert!(
        rec.promote.is_some_and(|r| r.succeeded()),
        "the resync check is recorded"
    );

    // etcd gone: status exits 1 and says the record was not read.
    drop(etcd);
    let mut c = nfsha();
    c.args(["replica", "status", "--config"]).arg(&cfg);
    let out = run(c).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("fleet record NOT READ"), "{stdout}");
}
