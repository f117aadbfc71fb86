//! `nfsha setup --root`: dry run, apply, second run, undo, validation exit code.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn nfsha() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nfsha"));
    c.env_remove("NFSHA_CONFIG");
    c
}

fn put(root: &Path, path: &str, text: &str, mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, Vec::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Seed 000's autofs layout, with mount.nfs and automount "installed" in the root.
fn seed(root: &Path) {
    put(root, "/etc/fstab", "UUID=abc / ext4 defaults 0 1\n", 0o644);
    put(
        root,
        "/etc/auto.master",
        "+dir:/etc/auto.master.d\n/airflow    /etc/auto.airflow    --timeout=30 --ghost\n",
        0o644,
    );
    std::fs::create_dir_all(root.join("etc/auto.master.d")).unwrap();
    put(
        root,
        "/etc/auto.airflow",
        "dags    -fstype=nfs4,rw,soft,timeo=10,retrans=2,intr,_netdev,rsize=8192,wsize=8192,nfsvers=4.1,noac,lookupcache=none,actimeo=0    10.101.20.220:/srv/airflow/dags\nlogs    -fstype=nfs4,rw,soft,timeo=10,retrans=2,intr,_netdev,rsize=8192,wsize=8192,nfsvers=4.1,noac,lookupcache=none,actimeo=0    10.101.20.220:/srv/airflow/logs\n",
        0o644,
    );
    put(root, "/sbin/mount.nfs", "#!/bin/sh\n", 0o755);
    put(root, "/usr/sbin/automount", "#!/bin/sh\n", 0o755);
}

#[test]
fn dry_run_apply_noop_undo() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed(root);
    let before = tree(root);

    nfsha()
        .args([
            "setup",
            "--dry-run",
            "--service",
            "airflow-scheduler.service",
            "--root",
        ])
        .arg(root)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("+++ /etc/nfsha/nfsha.toml"))
        .stdout(predicate::str::contains("+#nfsha-setup# dags"))
        .stdout(predicate::str::contains("dry run: 7 files would change"))
        .stderr(predicate::str::contains(
            "/etc/auto.airflow:1:1: warning: `soft`",
        ));
    assert_eq!(tree(root), before, "--dry-run changed the root");

    nfsha()
        .args(["setup", "--service", "airflow-scheduler.service", "--root"])
        .arg(root)
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "wrote /etc/systemd/system/nfsha-agent.service",
        ));
    assert!(root.join("etc/auto.nfsha").exists());
    let after = tree(root);

    nfsha()
        .args(["setup", "--root"])
        .arg(root)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("nothing to change"));
    assert_eq!(tree(root), after, "second run changed the root");

    nfsha()
        .args(["setup", "--undo", "--root"])
        .arg(root)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("removed /etc/auto.nfsha"));
    let mut restored = tree(root);
    restored.retain(|p, _| !p.starts_with("var"));
    assert_eq!(restored, before);

    nfsha()
        .args(["setup", "--undo", "--root"])
        .arg(root)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("nothing to undo"));
}

#[test]
fn validation_error_exits_one_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed(root);
    std::fs::remove_file(root.join("sbin/mount.nfs")).unwrap();
    let before = tree(root);
    nfsha()
        .args(["setup", "--root"])
        .arg(root)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("mount.nfs is not installed"))
        .stderr(predicate::str::contains(
            "setup refused: nothing was changed",
        ));
    assert_eq!(tree(root), before);
}

#[test]
fn generate_docs_writes_man_pages_completions_and_unit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen");
    nfsha().arg("__generate-docs").arg(&out).assert().code(0);
    for f in [
        "man/nfsha.1",
        "man/nfsha-setup.1",
        "man/nfsha-config.1",
        "man/nfsha-agent.1",
        "completions/nfsha.bash",
        "completions/_nfsha",
        "completions/nfsha.fish",
    ] {
        let p = out.join(f);
        assert!(
            std::fs::metadata(&p).map(|m| m.len() > 0).unwrap_or(false),
            "{f} missing"
        );
    }
    assert!(!out.join("man/nfsha-help.1").exists());
    assert!(!out.join("man/nfsha-__worker.1").exists());
    let unit = std::fs::read_to_string(out.join("systemd/nfsha-agent.service")).unwrap();
    assert_eq!(unit, nfsha_setup::render::packaged_agent_unit());
    let man = std::fs::read_to_string(out.join("man/nfsha-setup.1")).unwrap();
    assert!(man.contains("dry\\-run"), "{man}");
}
