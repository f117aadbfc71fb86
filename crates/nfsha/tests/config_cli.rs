//! `nfsha config check`: exit codes and output.

use assert_cmd::Command;
use predicates::prelude::*;

fn nfsha() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nfsha"));
    c.env_remove("NFSHA_CONFIG");
    c
}

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("nfsha.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn valid_config_exits_zero_and_counts_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "[[mount]]\nmountpoint = \"/airflow/dags\"\nexport = \"/srv/airflow/dags\"\nservers = [\"10.101.20.220\"]\n\n[[mount]]\nmountpoint = \"/airflow/logs\"\nexport = \"/srv/airflow/logs\"\nservers = [\"10.101.20.220\"]\n",
    );
    nfsha()
        .args(["config", "check", "--config"])
        .arg(&p)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("config OK: 2 mounts"));
}

#[test]
fn warnings_are_printed_but_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "[[mount]]\nmountpoint = \"/m\"\nexport = \"/e\"\nservers = [\"s\"]\noptions = [\"soft\"]\n",
    );
    nfsha()
        .args(["config", "check"])
        .env("NFSHA_CONFIG", &p)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("config OK: 1 mount (1 warning)"))
        .stderr(predicate::str::contains(format!(
            "{}:5:12: warning: `soft`",
            p.display()
        )));
}

#[test]
fn errors_exit_one_and_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "[agent]\nrpc_timeout = \"0s\"\n[[mount]]\nmountpoint = \"m\"\nexport = \"/e\"\nservers = []\nprobe_intervall = \"1s\"\n",
    );
    nfsha()
        .args(["config", "check", "--config"])
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(":2:15: error:"))
        .stderr(predicate::str::contains(":4:14: error: mountpoint `m` is relative"))
        .stderr(predicate::str::contains(":6:11: error: `servers` is empty"))
        .stderr(predicate::str::contains(
            ":7:1: error: unknown key `probe_intervall` in [[mount]]\n  help: did you mean `probe_interval`?",
        ))
        .stderr(predicate::str::contains("config has 4 errors"));
}

#[test]
fn missing_file_exits_one() {
    nfsha()
        .args(["config", "check", "--config", "/nonexistent/nfsha.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "/nonexistent/nfsha.toml: error: Cannot read /nonexistent/nfsha.toml",
        ));
}

/// Seed 001's mount, with its state directory and control socket in `dir`.
fn replica_config(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let state = dir.path().join("state");
    let sock = dir.path().join("agent.sock");
    write(
        dir,
        &format!(
            "[agent]\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n\n[[mount]]\nmountpoint = \"/misc/crr\"\nexport = \"/crr-site1\"\nservers = [\"10.1.13.5\", {{ host = \"10.2.13.5\", export = \"/crr-dest1\" }}]\nnfs_version = \"3\"\n",
            sock.display(),
            state.display()
        ),
    )
}

#[test]
fn replica_status_reads_the_state_files_without_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let p = replica_config(&dir);
    // No record yet: no active replica, exit 1.
    nfsha()
        .args(["replica", "status", "--config"])
        .arg(&p)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("NO ACTIVE REPLICA"))
        .stdout(predicate::str::contains("state files only"));
    let store = nfsha_agent::replica::ReplicaStore::new(dir.path().join("state"));
    store
        .save(&nfsha_agent::replica::ActiveRecord {
            version: nfsha_agent::replica::STATE_VERSION,
            mountpoint: "/misc/crr".into(),
            host: "10.2.13.5".into(),
            export: "/crr-dest1".into(),
            generation: 3,
            reason: "failover: 10.1.13.5:/crr-site1 does not answer".into(),
            updated_ms: 0,
        })
        .unwrap();
    nfsha()
        .args(["replica", "status", "--config"])
        .arg(&p)
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "active 10.2.13.5:/crr-dest1 (generation 3: failover",
        ));
}

#[test]
fn replica_failback_needs_a_replica_of_the_mount_and_the_resync_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let p = replica_config(&dir);
    nfsha()
        .args([
            "replica",
            "failback",
            "/misc/crr",
            "--to",
            "10.1.13.5:/other",
            "--config",
        ])
        .arg(&p)
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not a replica of /misc/crr"));
    nfsha()
        .args([
            "replica",
            "failback",
            "/misc/crr",
            "--to",
            "10.1.13.5:/crr-site1",
            "--config",
        ])
        .arg(&p)
        .assert()
        .failure()
        .stderr(predicate::str::contains("--resynced"));
}
