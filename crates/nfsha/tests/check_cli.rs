//! `nfsha check` without a running agent (issue 18, "monitoring that cannot lie").
//!
//! It used to fall back to a local probe and say `NFSHA OK - 1/1 mounts healthy` for an
//! autofs-mode mount that was a bare directory, while nothing was there to recover it.

use assert_cmd::Command;
use serde_json::Value;

fn nfsha() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nfsha"));
    c.env_remove("NFSHA_CONFIG");
    c
}

/// A config whose agent socket does not exist and whose one autofs-mode mount is a bare
/// directory (no autofs mount on it).
fn bare_autofs_config(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let bare = dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    std::fs::write(bare.join("not-on-nfs.txt"), b"local file\n").unwrap();
    let p = dir.path().join("nfsha.toml");
    std::fs::write(
        &p,
        format!(
            "[agent]\ncontrol_socket = \"{}\"\nlisten = \"off\"\n\n[[mount]]\nmountpoint = \"{}\"\nexport = \"/srv/airflow/dags\"\nservers = [\"127.0.0.1\"]\nmode = \"autofs\"\n",
            dir.path().join("agent.sock").display(),
            bare.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn check_with_the_agent_stopped_is_critical_not_a_local_ok() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bare_autofs_config(&dir);
    let out = nfsha()
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.starts_with("NFSHA CRITICAL - the nfsha agent does not answer"),
        "{text}"
    );
    assert!(
        text.contains("--local"),
        "the message says how to probe anyway: {text}"
    );

    let out = nfsha()
        .arg("--config")
        .arg(&cfg)
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let j: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(j["level"], "CRITICAL", "{j}");
    assert_eq!(j["source"], "agent", "{j}");
}

#[test]
fn check_local_calls_a_bare_autofs_directory_not_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bare_autofs_config(&dir);
    let out = nfsha()
        .arg("--config")
        .arg(&cfg)
        .args(["check", "--local", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let j: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(j["source"], "local-probe", "{j}");
    assert_eq!(j["mounts"][0]["state"], "not-mounted", "{j}");
    assert!(
        j["mounts"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("bare directory"),
        "{j}"
    );
}
