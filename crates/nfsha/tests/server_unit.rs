//! The packaged `nfsha-server.service` passes `systemd-analyze verify`, is `Type=notify`,
//! conflicts with the distribution's nfs-server units, and is shipped by both packages.
//!
//! How: the unit is copied into a temporary root with systemd's own units and a stub
//! /usr/bin/nfsha (verify checks that ExecStart is executable), then
//! `systemd-analyze verify --root=<root> --man=no nfsha-server.service`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";
const UNIT: &str = include_str!("../../../packaging/systemd/nfsha-server.service");

fn put(root: &Path, rel: &str, text: &str, mode: u32) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn copy_system_units(root: &Path) {
    let dst = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir("/usr/lib/systemd/system")
        .unwrap()
        .flatten()
    {
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let target = dst.join(e.file_name());
        if md.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&p).unwrap(), &target).unwrap();
        } else if md.is_file() {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

fn verify(root: &Path) -> (bool, String) {
    let out = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .arg("nfsha-server.service")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn the_server_unit_passes_systemd_analyze_verify() {
    assert!(
        Path::new(SYSTEMD_ANALYZE).exists(),
        "{SYSTEMD_ANALYZE} is missing: install it with `apt-get install systemd`"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_system_units(root);
    put(
        root,
        "/usr/lib/systemd/system/nfsha-server.service",
        UNIT,
        0o644,
    );
    put(root, "/usr/bin/nfsha", "#!/bin/sh\nexit 0\n", 0o755);
    let (ok, text) = verify(root);
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    assert!(
        !text.contains("nfsha-server.service"),
        "verify complained about the unit:\n{text}"
    );
    // Not vacuous: a bad directive is noticed.
    put(
        root,
        "/usr/lib/systemd/system/nfsha-server.service",
        &UNIT.replace("TimeoutStopSec=2min", "TimeoutStopSec=not-a-time"),
        0o644,
    );
    let (_, text) = verify(root);
    assert!(
        text.contains("nfsha-server.service"),
        "verify did not notice a bad directive:\n{text}"
    );
}

#[test]
fn the_server_unit_is_notify_conflicts_with_nfs_server_and_is_packaged() {
    let line = |k: &str| {
        UNIT.lines()
            .find(|l| l.starts_with(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in the unit"))
            .to_owned()
    };
    assert_eq!(line("Type"), "Type=notify");
    assert!(line("Conflicts").contains("nfs-server.service"));
    assert!(line("ExecStart").ends_with("server run"));
    let cargo = include_str!("../Cargo.toml");
    assert!(cargo.contains("unit-name = \"nfsha-server\""), "cargo-deb");
    assert!(
        cargo.contains("dest = \"/usr/lib/systemd/system/nfsha-server.service\""),
        "cargo-generate-rpm"
    );
}
