//! nfsha setup on the seed layouts: golden files, idempotence, undo, validation.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use nfsha_setup::{SetupError, apply, apply_undo, plan, plan_undo, render_problems};

fn snapshot_plan(name: &str, root: &Path) {
    let p = plan(&opts(root), &FakeHost::with_all_tools()).unwrap();
    insta::assert_snapshot!(
        format!("{name}__diagnostics"),
        render_problems(&p.diagnostics)
    );
    insta::assert_snapshot!(format!("{name}__dry_run"), p.diff());
    for c in &p.changes {
        let file = c
            .path
            .to_string_lossy()
            .trim_start_matches('/')
            .replace('/', "_");
        insta::assert_snapshot!(format!("{name}__{file}"), c.new.clone().unwrap());
    }
}

#[test]
fn golden_seed_autofs_layout() {
    let dir = tempfile::tempdir().unwrap();
    seed_autofs_root(dir.path());
    snapshot_plan("autofs", dir.path());
}

#[test]
fn golden_seed_fstab_layout() {
    let dir = tempfile::tempdir().unwrap();
    seed_fstab_root(dir.path());
    snapshot_plan("fstab", dir.path());
}

#[test]
fn imported_config_matches_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    seed_autofs_root(dir.path());
    let p = plan(&opts(dir.path()), &FakeHost::with_all_tools()).unwrap();
    assert!(p.imported);
    let mps: Vec<&Path> = p
        .config
        .mounts
        .iter()
        .map(|m| m.mountpoint.as_path())
        .collect();
    assert_eq!(
        mps,
        [Path::new("/airflow/dags"), Path::new("/airflow/logs")]
    );
    for m in &p.config.mounts {
        assert_eq!(m.servers[0].host, "10.101.20.220");
        assert_eq!(m.mode, nfsha_config::MountMode::Autofs);
        assert_eq!(m.nfs_version, nfsha_config::NfsVersion::V4_1);
        assert!(
            m.options.contains(&"soft".to_string()),
            "nothing silently changed"
        );
    }
    let warned: Vec<&str> = p.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert!(warned.iter().any(|m| m.contains("`soft`")), "{warned:?}");
    assert!(warned.iter().any(|m| m.contains("`intr`")), "{warned:?}");
    // /misc is an iso9660 map: left alone.
    let changed: Vec<&Path> = p.changes.iter().map(|c| c.path.as_path()).collect();
    assert!(!changed.contains(&Path::new("/etc/auto.misc")));
    assert!(changed.contains(&Path::new("/etc/auto.master")));
    assert!(changed.contains(&Path::new("/etc/auto.airflow")));
    assert!(
        !changed.contains(&Path::new("/etc/fstab")),
        "fstab has no active NFS line"
    );
}

#[test]
fn setup_then_second_run_is_noop_then_undo_restores_bytes() {
    for layout in [seed_autofs_root as fn(&Path), seed_fstab_root] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        layout(root);
        let before = tree(root);
        let o = opts(root);
        let host = FakeHost::with_all_tools();
        let p = plan(&o, &host).unwrap();
        assert!(!p.is_empty());
        let written = apply(&o, &p, now()).unwrap();
        assert_eq!(written.len(), p.changes.len());
        assert!(root.join("var/lib/nfsha/setup/manifest.json").exists());
        assert!(
            root.join("var/lib/nfsha/setup/backups/20261122T002405Z")
                .is_dir()
        );
        let after_first = tree(root);

        // Second run: nothing to change, nothing written.
        let p2 = plan(&o, &host).unwrap();
        assert!(p2.is_empty(), "second run wants:\n{}", p2.diff());
        assert!(!p2.imported);
        assert!(apply(&o, &p2, now()).unwrap().is_empty());
        assert_eq!(tree(root), after_first);

        // Undo: every file byte-identical to before (backups are kept).
        let (u, m) = plan_undo(&o).unwrap();
        apply_undo(&o, &u, &m).unwrap();
        let mut after_undo = tree(root);
        after_undo.retain(|p, _| !p.starts_with("var"));
        assert_eq!(after_undo, before);
        assert!(matches!(plan_undo(&o), Err(SetupError::NoManifest(_))));
    }
}

#[test]
fn undo_keeps_later_edits_of_fstab() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    let original = read(root, "/etc/fstab");
    let o = opts(root);
    apply(&o, &plan(&o, &FakeHost::with_all_tools()).unwrap(), now()).unwrap();
    let edited = format!(
        "{}tmpfs /scratch tmpfs size=1G 0 0\n",
        read(root, "/etc/fstab")
    );
    put(root, "/etc/fstab", &edited, 0o644);
    let (u, m) = plan_undo(&o).unwrap();
    assert!(u.diagnostics[0].message.contains("changed since setup"));
    apply_undo(&o, &u, &m).unwrap();
    assert_eq!(
        read(root, "/etc/fstab"),
        format!("{original}tmpfs /scratch tmpfs size=1G 0 0\n")
    );
}

#[test]
fn existing_config_is_used_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    put(
        root,
        "/etc/nfsha/nfsha.toml",
        "[[mount]]\nmountpoint = \"/mnt/airflow-dags\"\nexport = \"/srv/airflow/dags\"\nservers = [\"10.101.20.220\"]\nservices = [\"airflow-scheduler.service\"]\n",
        0o640,
    );
    let p = plan(&opts(root), &FakeHost::with_all_tools()).unwrap();
    assert!(!p.imported);
    let changed: Vec<&Path> = p.changes.iter().map(|c| c.path.as_path()).collect();
    assert!(!changed.contains(&Path::new("/etc/nfsha/nfsha.toml")));
    let fstab = p
        .changes
        .iter()
        .find(|c| c.path == Path::new("/etc/fstab"))
        .unwrap();
    let new = fstab.new.as_deref().unwrap();
    // Only the managed mount's line is commented; the other NFS line stays.
    assert!(new.contains("#nfsha-setup# 10.101.20.220:/srv/airflow/dags"));
    assert!(new.contains("\n10.101.20.220:/srv/airflow/logs"));
}

#[test]
fn atomic_writes_keep_mode() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    std::fs::set_permissions(
        root.join("etc/fstab"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let o = opts(root);
    apply(&o, &plan(&o, &FakeHost::with_all_tools()).unwrap(), now()).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root.join("etc/fstab"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o600);
    let backup = root.join("var/lib/nfsha/setup/backups/20261122T002405Z/etc/fstab");
    assert!(
        std::fs::read_to_string(backup)
            .unwrap()
            .contains("\n10.101.20.220:/srv/airflow/dags")
    );
}

/// Every validation error: refused, all problems listed, root byte-identical.
#[test]
fn validation_errors_leave_root_untouched() {
    type Case = (&'static str, fn(&Path), fn(&mut FakeHost), &'static str);
    let cases: Vec<Case> = vec![
        (
            "malformed NFS line",
            |r| {
                seed_fstab_root(r);
                let t = read(r, "/etc/fstab") + "nfsserver /mnt/x nfs rw 0 0\n";
                put(r, "/etc/fstab", &t, 0o644);
            },
            |_| {},
            "/etc/fstab:9:1: error: malformed NFS entry",
        ),
        (
            "unknown option",
            |r| {
                let t = format!("{SYSTEM_FSTAB}s:/e /mnt/e nfs hard,vers=4.1,frobnicate 0 0\n");
                put(r, "/etc/fstab", &t, 0o644);
            },
            |_| {},
            "/etc/fstab:7:31: error: unknown mount option `frobnicate`",
        ),
        (
            "missing mount.nfs",
            seed_fstab_root,
            |h| {
                h.tools.remove("mount.nfs");
            },
            "/sbin/mount.nfs: error: mount.nfs is not installed",
        ),
        (
            "missing automount",
            seed_autofs_root,
            |h| {
                h.tools.remove("automount");
            },
            "automount is not installed",
        ),
        (
            "mountpoint in use",
            seed_autofs_root,
            |h| {
                h.users.insert(
                    PathBuf::from("/airflow/logs"),
                    vec!["pid 4242 (airflow)".into()],
                );
            },
            "/airflow/logs: error: in use by pid 4242 (airflow)",
        ),
        (
            "auto.master without auto.master.d",
            |r| {
                seed_autofs_root(r);
                let t = read(r, "/etc/auto.master").replace("+dir:/etc/auto.master.d\n", "");
                put(r, "/etc/auto.master", &t, 0o644);
            },
            |_| {},
            "does not include /etc/auto.master.d",
        ),
        (
            "partial indirect map",
            |r| {
                seed_autofs_root(r);
                let t = read(r, "/etc/auto.airflow") + "data -fstype=ext4 :/dev/sdb1\n";
                put(r, "/etc/auto.airflow", &t, 0o644);
                put(
                    r,
                    "/etc/nfsha/nfsha.toml",
                    "[[mount]]\nmountpoint = \"/airflow/dags\"\nexport = \"/srv/airflow/dags\"\nservers = [\"10.101.20.220\"]\nmode = \"autofs\"\n\n[[mount]]\nmountpoint = \"/airflow/logs\"\nexport = \"/srv/airflow/logs\"\nservers = [\"10.101.20.220\"]\nmode = \"autofs\"\n",
                    0o644,
                );
            },
            |_| {},
            "/airflow is an autofs mount that also serves data",
        ),
        (
            "same mountpoint twice",
            |r| {
                seed_autofs_root(r);
                let t = read(r, "/etc/fstab") + "10.0.0.1:/x /airflow/dags nfs4 hard 0 0\n";
                put(r, "/etc/fstab", &t, 0o644);
            },
            |_| {},
            "/airflow/dags is also mounted by /etc/fstab line 9",
        ),
    ];
    for (name, setup, tweak, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        setup(root);
        let before = tree(root);
        let mut host = FakeHost::with_all_tools();
        tweak(&mut host);
        match plan(&opts(root), &host) {
            Err(SetupError::Invalid(problems)) => {
                let text = render_problems(&problems);
                assert!(
                    text.contains(expected),
                    "{name}: expected `{expected}` in:\n{text}"
                );
            }
            other => panic!("{name}: expected a validation error, got {other:?}"),
        }
        assert_eq!(tree(root), before, "{name}: root changed");
    }
}

#[test]
fn all_problems_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let t = format!("{SYSTEM_FSTAB}s:/e /mnt/e nfs hard,frob 0 0\nbad /mnt/b nfs rw 0 0\n");
    put(root, "/etc/fstab", &t, 0o644);
    let mut host = FakeHost::with_all_tools();
    host.tools.clear();
    let Err(SetupError::Invalid(problems)) = plan(&opts(root), &host) else {
        panic!("expected errors")
    };
    assert_eq!(
        problems.iter().filter(|d| d.is_error()).count(),
        3,
        "{}",
        render_problems(&problems)
    );
}

#[test]
fn nothing_to_import_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "/etc/fstab", SYSTEM_FSTAB, 0o644);
    assert!(matches!(
        plan(&opts(dir.path()), &FakeHost::with_all_tools()),
        Err(SetupError::NothingToImport(_))
    ));
}

#[test]
fn replica_lists_are_imported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(
        root,
        "/etc/auto.master",
        "+dir:/etc/auto.master.d\n/- /etc/auto.direct\n/data /etc/auto.data\n",
        0o644,
    );
    put(
        root,
        "/etc/auto.direct",
        "/srv/a -fstype=nfs,vers=3,hard host1:/export/a host2:/export/a\n/srv/b -vers=4.2 h1(2),h2:/export/b\n/srv/c -vers=4.2 h1:/x h2:/y\n",
        0o644,
    );
    put(root, "/etc/auto.data", "* -vers=4.1 srv:/data/&\n", 0o644);
    std::fs::create_dir_all(root.join("etc/auto.master.d")).unwrap();
    let p = plan(&opts(root), &FakeHost::with_all_tools()).unwrap();
    let m = &p.config.mounts;
    assert_eq!(m.len(), 3);
    assert_eq!(
        m[0].servers
            .iter()
            .map(|s| s.host.as_str())
            .collect::<Vec<_>>(),
        ["host1", "host2"]
    );
    assert_eq!(m[0].nfs_version, nfsha_config::NfsVersion::V3);
    assert_eq!(m[1].servers[0].weight, 2);
    let text = render_problems(&p.diagnostics);
    // Replicas with their own paths are imported too, in direct mode.
    assert!(
        text.contains("/srv/c: replicas export different paths: imported with mode = \"direct\""),
        "{text}"
    );
    assert_eq!(m[2].mode, nfsha_config::MountMode::Direct);
    assert_eq!(
        m[2].replicas()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["h1:/x", "h2:/y"]
    );
    assert!(
        text.contains("wildcard entries are not supported"),
        "{text}"
    );
    // Only the imported lines are commented; the direct map's master line stays.
    let direct = p
        .changes
        .iter()
        .find(|c| c.path == Path::new("/etc/auto.direct"))
        .unwrap();
    assert_eq!(
        direct
            .new
            .as_deref()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("#nfsha-setup# "))
            .count(),
        3
    );
    assert!(
        !p.changes
            .iter()
            .any(|c| c.path == Path::new("/etc/auto.master"))
    );
    let map = p
        .changes
        .iter()
        .find(|c| c.path == Path::new("/etc/auto.nfsha"))
        .unwrap();
    assert!(
        map.new
            .as_deref()
            .unwrap()
            .contains("/srv/b -fstype=nfs,vers=4.2 h1(2),h2:/export/b")
    );
}

/// Seed 001: Azure NetApp Files cross-zone replication, the autofs map line verbatim.
const SEED_001_LINE: &str =
    "crr -fstype=nfs,rw,nosuid,hard,tcp,timeo=60 10.1.13.5:/crr-site1 10.2.13.5:/crr-dest1";

#[test]
fn seed_001_replica_line_is_imported_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(
        root,
        "/etc/auto.master",
        "+dir:/etc/auto.master.d\n/misc /etc/auto.misc\n",
        0o644,
    );
    put(
        root,
        "/etc/auto.misc",
        &format!("# Azure NetApp Files cross-zone replica\n{SEED_001_LINE}\n"),
        0o644,
    );
    std::fs::create_dir_all(root.join("etc/auto.master.d")).unwrap();
    // Azure NetApp Files NFSv3 volumes answer NFSv3 only.
    let mut host = FakeHost::with_all_tools();
    host.versions.insert("10.1.13.5".into(), 3);
    host.versions.insert("10.2.13.5".into(), 3);
    let p = plan(&opts(root), &host).unwrap();
    assert!(p.imported);
    let [m] = &p.config.mounts[..] else {
        panic!("{:?}", p.config.mounts)
    };
    assert_eq!(m.mountpoint, Path::new("/misc/crr"));
    assert_eq!(m.export, "/crr-site1");
    assert_eq!(
        m.replicas()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.1.13.5:/crr-site1", "10.2.13.5:/crr-dest1"]
    );
    assert!(m.has_replicas());
    assert_eq!(
        m.mode,
        nfsha_config::MountMode::Direct,
        "autofs would fail back to the stale source"
    );
    assert_eq!(
        m.nfs_version,
        nfsha_config::NfsVersion::V3,
        "what -fstype=nfs negotiates here"
    );
    assert_eq!(m.options, ["rw", "nosuid", "hard", "tcp", "timeo=60"]);
    let text = render_problems(&p.diagnostics);
    assert!(text.contains("negotiates NFSv3"), "{text}");
    assert!(text.contains("replicas export different paths"), "{text}");
    // The map line and the /misc master line are commented out; no autofs map of ours.
    let changed = |path: &str| {
        p.changes
            .iter()
            .find(|c| c.path == Path::new(path))
            .and_then(|c| c.new.clone())
    };
    let misc = changed("/etc/auto.misc").unwrap();
    assert!(
        misc.contains(&format!("#nfsha-setup# {SEED_001_LINE}")),
        "{misc}"
    );
    assert!(
        changed("/etc/auto.master")
            .unwrap()
            .contains("#nfsha-setup# /misc /etc/auto.misc")
    );
    assert!(changed("/etc/auto.nfsha").is_none());
    // nfsha.toml names the replica with its own path, and parses back to the same mount.
    let toml = changed("/etc/nfsha/nfsha.toml").unwrap();
    assert!(
        toml.contains(r#"servers = ["10.1.13.5", { host = "10.2.13.5", export = "/crr-dest1" }]"#),
        "{toml}"
    );
    let back = nfsha_config::parse_str(&toml, None).unwrap();
    assert_eq!(back.mounts[0].replicas(), m.replicas());

    // Without an answer from the servers the version cannot be told: the default stays
    // and the advice says so.
    let p = plan(&opts(root), &FakeHost::with_all_tools()).unwrap();
    assert_eq!(
        p.config.mounts[0].nfs_version,
        nfsha_config::NfsVersion::V4_1
    );
    assert!(render_problems(&p.diagnostics).contains("no NFS version given"));
}

#[test]
fn enable_commands_are_argument_vectors() {
    let o = opts(Path::new("/"));
    let mut c = nfsha_config::Config::empty();
    assert_eq!(
        nfsha_setup::enable_commands(&o, &c),
        [
            vec!["systemctl", "daemon-reload"],
            vec!["systemctl", "enable", "--now", "nfsha-agent.service"]
        ]
    );
    c.mounts.push(nfsha_config::MountConfig::new(
        "/a",
        "/a",
        vec![nfsha_config::ServerRef::new("h")],
    ));
    c.mounts[0].mode = nfsha_config::MountMode::Autofs;
    assert_eq!(nfsha_setup::enable_commands(&o, &c).len(), 3);
    let o = opts(Path::new("/tmp/img"));
    assert_eq!(
        nfsha_setup::enable_commands(&o, &c),
        [vec![
            "systemctl",
            "--root",
            "/tmp/img",
            "enable",
            "nfsha-agent.service"
        ]]
    );
    struct Rec(std::cell::RefCell<Vec<Vec<String>>>);
    impl nfsha_setup::CommandRunner for Rec {
        fn run(&self, argv: &[String]) -> Result<(), String> {
            self.0.borrow_mut().push(argv.to_vec());
            if argv.len() > 3 {
                Err("boom".into())
            } else {
                Ok(())
            }
        }
    }
    let r = Rec(Default::default());
    assert!(nfsha_setup::enable(&opts(Path::new("/")), &c, &r).is_err());
    assert_eq!(r.0.borrow().len(), 2, "stops at the first failure");
}

#[test]
fn removed_service_drops_its_dropin_and_old_health_check_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    put(
        root,
        "/usr/local/bin/nfs-health-check.sh",
        "#!/bin/bash\numount -a -t nfs,nfs4\n",
        0o755,
    );
    let o = opts(root);
    let host = FakeHost::with_all_tools();
    let p = plan(&o, &host).unwrap();
    assert!(
        render_problems(&p.diagnostics)
            .contains("/usr/local/bin/nfs-health-check.sh: warning: the old NFS health check")
    );
    apply(&o, &p, now()).unwrap();
    let dropin = root.join("etc/systemd/system/airflow-webserver.service.d/50-nfsha.conf");
    assert!(dropin.exists());
    let cfg = read(root, "/etc/nfsha/nfsha.toml").replace(
        "services = [\"airflow-scheduler.service\", \"airflow-webserver.service\"]",
        "services = [\"airflow-scheduler.service\"]",
    );
    put(root, "/etc/nfsha/nfsha.toml", &cfg, 0o644);
    let p = plan(&o, &host).unwrap();
    assert_eq!(p.changes.len(), 1, "{}", p.diff());
    assert_eq!(p.changes[0].new, None);
    apply(&o, &p, now()).unwrap();
    assert!(!dropin.exists());
    assert!(plan(&o, &host).unwrap().is_empty());
}

#[test]
fn symlinked_fstab_keeps_its_link() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    let real = root.join("etc/fstab.real");
    std::fs::rename(root.join("etc/fstab"), &real).unwrap();
    std::os::unix::fs::symlink("/etc/fstab.real", root.join("etc/fstab")).unwrap();
    let before = tree(root);
    let o = opts(root);
    apply(&o, &plan(&o, &FakeHost::with_all_tools()).unwrap(), now()).unwrap();
    assert!(
        std::fs::symlink_metadata(root.join("etc/fstab"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("#nfsha-setup# ")
    );
    let (u, m) = plan_undo(&o).unwrap();
    apply_undo(&o, &u, &m).unwrap();
    let mut after = tree(root);
    after.retain(|p, _| !p.starts_with("var"));
    assert_eq!(after, before);
}

/// With a packaged unit (/lib or /usr/lib), setup never writes
/// /etc/systemd/system/nfsha-agent.service, which would mask the package's unit and its
/// upgrades: a drop-in carries what differs, and a copy an earlier run wrote before the
/// package came is removed.
#[test]
fn packaged_unit_is_never_shadowed() {
    let unit_in_etc = Path::new(nfsha_setup::render::AGENT_UNIT);
    let dropin = Path::new(nfsha_setup::render::AGENT_DROPIN);
    let host = FakeHost::with_all_tools();
    for packaged in nfsha_setup::render::PACKAGED_UNITS {
        // Same binary and config as the package: nothing to write for the agent's unit.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        seed_fstab_root(root);
        put(
            root,
            packaged,
            &nfsha_setup::render::packaged_agent_unit(),
            0o644,
        );
        let p = plan(&opts(root), &host).unwrap();
        let paths: Vec<&Path> = p.changes.iter().map(|c| c.path.as_path()).collect();
        assert!(!paths.contains(&unit_in_etc), "{paths:?}");
        assert!(!paths.contains(&dropin), "{paths:?}");

        // Another binary: a drop-in that resets ExecStart, nothing else.
        let mut o = opts(root);
        o.binary = PathBuf::from("/opt/nfsha/bin/nfsha");
        let p = plan(&o, &host).unwrap();
        let paths: Vec<&Path> = p.changes.iter().map(|c| c.path.as_path()).collect();
        assert!(!paths.contains(&unit_in_etc), "{paths:?}");
        let d = p.changes.iter().find(|c| c.path == dropin).unwrap();
        let text = d.new.as_deref().unwrap();
        assert!(
            text.contains("[Service]\nExecStart=\nExecStart=/opt/nfsha/bin/nfsha agent --config /etc/nfsha/nfsha.toml\n"),
            "{text}"
        );
        assert!(!text.contains("[Unit]"), "{text}");
    }

    // Installed without a package first (unit in /etc), then the package arrives: the
    // next run removes the copy in /etc, and the run after that changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    let o = opts(root);
    let p = plan(&o, &host).unwrap();
    apply(&o, &p, now()).unwrap();
    assert!(root.join("etc/systemd/system/nfsha-agent.service").exists());
    put(
        root,
        "/lib/systemd/system/nfsha-agent.service",
        &nfsha_setup::render::packaged_agent_unit(),
        0o644,
    );
    let p = plan(&o, &host).unwrap();
    let c = p.changes.iter().find(|c| c.path == unit_in_etc).unwrap();
    assert!(c.new.is_none(), "the copy in /etc is not removed");
    apply(&o, &p, now()).unwrap();
    assert!(!root.join("etc/systemd/system/nfsha-agent.service").exists());
    assert!(plan(&o, &host).unwrap().is_empty());
}
