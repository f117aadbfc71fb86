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
