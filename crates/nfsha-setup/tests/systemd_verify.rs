//! Every unit and drop-in `nfsha setup` renders for the seed layout passes
//! `systemd-analyze verify`.
//!
//! How: setup writes into a temporary root; the test gives that root what a real host
//! has — systemd's own units (copied from /usr/lib/systemd/system, symlinks kept),
//! executable /usr/bin/nfsha and /bin/kill (stub scripts: verify only checks that
//! ExecStart/ExecReload are executable) and the dependent services the drop-ins
//! extend — then runs `systemd-analyze verify --root=<root> --man=no` on the units by
//! name (`--man=no`: the man page ships with the package, not with the test root).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

fn copy_system_units(root: &Path) {
    let src = Path::new("/usr/lib/systemd/system");
    let dst = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        let target = dst.join(e.file_name());
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&p).unwrap(), &target).unwrap();
        } else if md.is_file() {
            std::fs::copy(&p, &target).unwrap();
        }
        // Directories (*.wants) are not needed to verify our units.
    }
}

fn verify(root: &Path, units: &[&str]) -> (bool, String) {
    let out = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        // The man page ships with the package, not with the test root.
        .arg("--man=no")
        .args(units)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    assert!(
        Path::new(SYSTEMD_ANALYZE).exists(),
        "{SYSTEMD_ANALYZE} is missing: install it with `apt-get install systemd` (Debian) — it is needed to verify rendered units"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_autofs_root(root);
    let o = opts(root);
    let p = nfsha_setup::plan(&o, &FakeHost::with_all_tools()).unwrap();
    nfsha_setup::apply(&o, &p, now()).unwrap();

    copy_system_units(root);
    put(root, "/usr/bin/nfsha", "#!/bin/sh\nexit 0\n", 0o755);
    put(root, "/bin/kill", "#!/bin/sh\nexit 0\n", 0o755);
    for svc in ["airflow-scheduler", "airflow-webserver"] {
        put(
            root,
            &format!("/etc/systemd/system/{svc}.service"),
            &format!(
                "[Unit]\nDescription={svc}\n[Service]\nExecStart=/usr/bin/nfsha --help\n[Install]\nWantedBy=multi-user.target\n"
            ),
            0o644,
        );
    }
    let rendered: Vec<_> = p
        .changes
        .iter()
        .filter(|c| c.path.starts_with("/etc/systemd/system"))
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(rendered.len(), 3, "agent unit + two drop-ins: {rendered:?}");
    let (ok, text) = verify(
        root,
        &[
            "nfsha-agent.service",
            "airflow-scheduler.service",
            "airflow-webserver.service",
        ],
    );
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    // Warnings do not fail verify: any line naming one of our files is a failure too.
    assert!(
        !text.contains("50-nfsha.conf") && !text.contains("nfsha-agent.service"),
        "verify complained about our units:\n{text}"
    );

    // The check is not vacuous: a bad directive in a drop-in fails verification.
    let bad = root.join("etc/systemd/system/airflow-scheduler.service.d/50-nfsha.conf");
    let t = std::fs::read_to_string(&bad).unwrap() + "TimeoutStopSec=not-a-time\n";
    std::fs::write(&bad, t).unwrap();
    let (_, text) = verify(root, &["airflow-scheduler.service"]);
    assert!(
        text.contains("50-nfsha.conf"),
        "verify did not notice a bad drop-in:\n{text}"
    );
    // And a missing ExecStart binary is noticed.
    std::fs::set_permissions(
        root.join("usr/bin/nfsha"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (ok, text) = verify(root, &["nfsha-agent.service"]);
    assert!(!ok, "verify accepted a non-executable ExecStart:\n{text}");
}

/// With the packaged unit in /usr/lib/systemd/system, what setup writes for the agent (the
/// ExecStart drop-in, no unit in /etc) passes verify, and verify checks the drop-in's
/// ExecStart, not the packaged one.
#[test]
fn dropin_over_the_packaged_unit_passes_verify() {
    assert!(
        Path::new(SYSTEMD_ANALYZE).exists(),
        "{SYSTEMD_ANALYZE} is missing: install it with `apt-get install systemd` (Debian) — it is needed to verify rendered units"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    copy_system_units(root);
    put(
        root,
        "/usr/lib/systemd/system/nfsha-agent.service",
        &nfsha_setup::render::packaged_agent_unit(),
        0o644,
    );
    put(root, "/usr/bin/nfsha", "#!/bin/sh\nexit 0\n", 0o755);
    put(root, "/opt/nfsha/bin/nfsha", "#!/bin/sh\nexit 0\n", 0o755);
    put(root, "/bin/kill", "#!/bin/sh\nexit 0\n", 0o755);
    let mut o = opts(root);
    o.services.clear();
    o.binary = "/opt/nfsha/bin/nfsha".into();
    let p = nfsha_setup::plan(&o, &FakeHost::with_all_tools()).unwrap();
    nfsha_setup::apply(&o, &p, now()).unwrap();
    assert!(!root.join("etc/systemd/system/nfsha-agent.service").exists());
    assert!(
        root.join("etc/systemd/system/nfsha-agent.service.d/50-nfsha.conf")
            .exists()
    );
    let (ok, text) = verify(root, &["nfsha-agent.service"]);
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    assert!(
        !text.contains("50-nfsha.conf"),
        "verify complained about the drop-in:\n{text}"
    );
    // The drop-in's ExecStart is the one verified: a non-executable /opt binary fails.
    std::fs::set_permissions(
        root.join("opt/nfsha/bin/nfsha"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (ok, text) = verify(root, &["nfsha-agent.service"]);
    assert!(!ok, "verify did not use the drop-in's ExecStart:\n{text}");
}
