//! `nfsha setup --undo` on a live host (issue 18, item 5), in a temp root with a fake
//! systemctl that records calls: the agent is disabled and stopped before the files
//! change, its `.wants` symlinks are gone, systemd and autofs are reloaded and the
//! fstab mounts handed back after; a hand-edited file is saved and reported, never
//! deleted silently.

mod common;

use std::cell::RefCell;
use std::path::Path;

use common::*;
use nfsha_setup::{
    CommandRunner, apply, apply_undo, plan, plan_undo_at, render_problems, run_all, undo_commands,
};

/// A systemctl that records every call and fails the ones listed.
#[derive(Default)]
struct Recorder {
    calls: RefCell<Vec<String>>,
    fail: Vec<String>,
}

impl CommandRunner for Recorder {
    fn run(&self, argv: &[String]) -> Result<(), String> {
        let line = argv.join(" ");
        self.calls.borrow_mut().push(line.clone());
        if self.fail.contains(&line) {
            Err("exit status 1".into())
        } else {
            Ok(())
        }
    }
}

fn undo_time() -> std::time::SystemTime {
    now() + std::time::Duration::from_secs(3600)
}

#[test]
fn live_undo_disables_stops_reloads_and_keeps_a_hand_edited_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_autofs_root(root);
    // The seed's fstab lines are active in this variant, so fstab is changed too.
    seed_fstab_root(root);
    let o = opts(root);
    let p = plan(&o, &FakeHost::with_all_tools()).unwrap();
    apply(&o, &p, now()).unwrap();
    // `--enable` left its symlink; the operator then edited nfsha.toml by hand.
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/nfsha-agent.service",
        wants.join("nfsha-agent.service"),
    )
    .unwrap();
    let config = root.join("etc/nfsha/nfsha.toml");
    let mut edited = std::fs::read_to_string(&config).unwrap();
    edited.push_str("# tuned by hand: probe_interval = \"500ms\"\n");
    std::fs::write(&config, &edited).unwrap();

    let (u, m) = plan_undo_at(&o, undo_time()).unwrap();
    let warnings = render_problems(&u.diagnostics);
    assert!(
        warnings.contains("edited by hand since setup") && warnings.contains("nfsha.toml"),
        "{warnings}"
    );
    let cmds = undo_commands(&o, &m, true);
    let runner = Recorder::default();
    assert!(run_all(&runner, &cmds.before).is_empty());
    let links = apply_undo(&o, &u, &m).unwrap();
    assert!(run_all(&runner, &cmds.after).is_empty());

    assert_eq!(
        *runner.calls.borrow(),
        [
            "systemctl disable --now nfsha-agent.service",
            "systemctl daemon-reload",
            "systemctl reload-or-restart autofs.service",
            "systemctl start remote-fs.target",
        ],
        "stop first, reload after the files are back"
    );
    assert_eq!(
        links,
        [Path::new(
            "/etc/systemd/system/multi-user.target.wants/nfsha-agent.service"
        )]
    );
    assert!(
        wants
            .join("nfsha-agent.service")
            .symlink_metadata()
            .is_err()
    );
    assert!(!config.exists(), "setup created it: undo removes it");
    let saved = root.join("etc/nfsha/nfsha.toml.nfsha-edited.20261122T012405Z");
    assert_eq!(
        std::fs::read_to_string(&saved).unwrap(),
        edited,
        "the hand-edited config is saved, byte for byte"
    );
    let fstab = std::fs::read_to_string(root.join("etc/fstab")).unwrap();
    assert!(fstab.contains("\n10.101.20.220:/srv/airflow/dags /mnt/airflow-dags nfs soft"));
}

#[test]
fn a_failing_command_does_not_stop_the_undo_and_is_reported() {
    let runner = Recorder {
        fail: vec!["systemctl daemon-reload".into()],
        ..Recorder::default()
    };
    let cmds = vec![
        vec!["systemctl".to_string(), "daemon-reload".into()],
        vec![
            "systemctl".to_string(),
            "reload-or-restart".into(),
            "autofs.service".into(),
        ],
    ];
    let failed = run_all(&runner, &cmds);
    assert_eq!(runner.calls.borrow().len(), 2, "both ran");
    assert_eq!(
        failed,
        ["`systemctl daemon-reload` failed: exit status 1"],
        "the failure names its command"
    );
}

#[test]
fn undo_of_an_image_runs_nothing_and_still_removes_the_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    let o = opts(root);
    let p = plan(&o, &FakeHost::with_all_tools()).unwrap();
    apply(&o, &p, now()).unwrap();
    let wants = root.join("etc/systemd/system/remote-fs.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink("../nfsha-agent.service", wants.join("nfsha-agent.service"))
        .unwrap();
    let (u, m) = plan_undo_at(&o, undo_time()).unwrap();
    let cmds = undo_commands(&o, &m, false);
    assert!(cmds.before.is_empty() && cmds.after.is_empty(), "{cmds:?}");
    assert!(u.diagnostics.is_empty(), "nothing was edited by hand");
    let links = apply_undo(&o, &u, &m).unwrap();
    assert_eq!(links.len(), 1);
    assert!(
        wants
            .join("nfsha-agent.service")
            .symlink_metadata()
            .is_err()
    );
}

#[test]
fn seed_fstab_with_its_lines_appended_again_is_merged_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    seed_fstab_root(root);
    // Seed 000's deploy appends its fstab lines on every run: the same two lines again.
    let fstab = root.join("etc/fstab");
    let mut text = std::fs::read_to_string(&fstab).unwrap();
    let nfs: String = text
        .lines()
        .filter(|l| l.starts_with("10.101.20.220:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(nfs.lines().count(), 2);
    text.push_str(&nfs);
    std::fs::write(&fstab, &text).unwrap();
    let o = opts(root);
    let p = plan(&o, &FakeHost::with_all_tools()).unwrap();
    assert_eq!(p.config.mounts.len(), 2, "one mount per mountpoint");
    let notes = render_problems(&p.diagnostics);
    assert_eq!(
        notes
            .matches("the duplicate is merged into one mount")
            .count(),
        2,
        "{notes}"
    );
    apply(&o, &p, now()).unwrap();
    let after = std::fs::read_to_string(&fstab).unwrap();
    assert!(
        !after.lines().any(|l| l.starts_with("10.101.20.220:")),
        "every copy is commented out:\n{after}"
    );
    // A different line for the same mountpoint is still refused.
    let dir = tempfile::tempdir().unwrap();
    seed_fstab_root(dir.path());
    let fstab = dir.path().join("etc/fstab");
    let mut text = std::fs::read_to_string(&fstab).unwrap();
    text.push_str("10.101.20.221:/srv/airflow/dags /mnt/airflow-dags nfs hard 0 0\n");
    std::fs::write(&fstab, text).unwrap();
    let err = plan(&opts(dir.path()), &FakeHost::with_all_tools()).unwrap_err();
    assert!(err.to_string().contains("is also mounted by"), "{err}");
}
