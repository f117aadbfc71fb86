//! `nfsha server diverged list|export|drop` against real btrfs: a loop-mounted image in
//! a private mount namespace (an `unshare -m` helper), reached with `--host-prefix
//! "nsenter -t PID -m"`. Needs root, btrfs and btrfs-progs; without them the test says
//! why and checks nothing. etcd is not needed (its records are best effort here: the
//! configured endpoint refuses connections).

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

fn sh(argv: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn unavailable() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root");
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.lines().any(|l| l.ends_with("btrfs")) {
        return Some("btrfs is not in this kernel");
    }
    if !sh(&[
        "sh",
        "-c",
        "command -v mkfs.btrfs && command -v btrfs && command -v nsenter",
    ])
    .0
    {
        return Some("btrfs-progs or util-linux missing");
    }
    None
}

struct Ns {
    helper: Child,
    loopdev: String,
    mnt: String,
}

impl Ns {
    fn run(&self, argv: &[&str]) -> String {
        let pid = self.helper.id().to_string();
        let mut v = vec!["nsenter", "-t", &pid, "-m", "--"];
        v.extend_from_slice(argv);
        let (ok, text) = sh(&v);
        assert!(ok, "{v:?}: {text}");
        text
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let pid = self.helper.id().to_string();
        let _ = sh(&["nsenter", "-t", &pid, "-m", "--", "umount", &self.mnt]);
        let _ = self.helper.kill();
        let _ = self.helper.wait();
        let _ = sh(&["losetup", "-d", &self.loopdev]);
    }
}

#[test]
fn server_diverged_lists_exports_and_drops_only_on_purpose() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("n.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    assert!(sh(&["mkfs.btrfs", "-q", img.to_str().unwrap()]).0);
    let (ok, dev) = sh(&["losetup", "--find", "--show", img.to_str().unwrap()]);
    assert!(ok, "{dev}");
    let mnt = dir.path().join("srv");
    std::fs::create_dir_all(&mnt).unwrap();
    let helper = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "100000"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let ns = Ns {
        helper,
        loopdev: dev.trim().to_owned(),
        mnt: mnt.display().to_string(),
    };
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{}/ns/mnt", ns.helper.id())).ok() == Some(ours.clone())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "unshare did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ns.run(&["mount", &ns.loopdev, &ns.mnt]);
    let live = format!("{}/data", ns.mnt);
    let snaps = format!("{}/.snapshots", ns.mnt);
    ns.run(&["btrfs", "subvolume", "create", &live]);
    ns.run(&["mkdir", &snaps]);
    ns.run(&["sh", "-c", &format!("echo kept > {live}/f")]);
    let quarantined = "data@diverged-9-20261202T050000.000Z";
    let normal = "data@9-20261202T050000.000Z";
    for n in [quarantined, normal] {
        ns.run(&[
            "btrfs",
            "subvolume",
            "snapshot",
            "-r",
            &live,
            &format!("{snaps}/{n}"),
        ]);
    }
    let config = dir.path().join("nfsha.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nnode = \"n1\"\ncluster = \"c\"\netcd_endpoints = [\"http://127.0.0.1:1\"]\nstorage = \"replicated\"\n[[server.export]]\npath = \"{live}\"\nfsid = 1\n[server.replication]\nengine = \"btrfs\"\nsubvolume = \"{live}\"\nsnapshot_dir = \"{snaps}\"\n"
        ),
    )
    .unwrap();
    let prefix = format!("nsenter -t {} -m --", ns.helper.id());
    let nfsha = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nfsha"));
        c.env_remove("NFSHA_CONFIG")
            .arg("--config")
            .arg(&config)
            .args(["server", "diverged", "--host-prefix", &prefix])
            .args(args)
            .timeout(Duration::from_secs(60));
        c
    };
    // Listed: the quarantine only, not the replication snapshot.
    nfsha(&["list"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(quarantined).and(predicate::str::contains(normal).not()));
    // Not dropped without the acknowledgement.
    nfsha(&["drop", quarantined])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--yes-delete-these-writes"));
    // Only quarantine names can be dropped.
    nfsha(&["drop", normal, "--yes-delete-these-writes"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a quarantine snapshot"));
    // Exported as a send stream that receives elsewhere.
    let stream = format!("{}/q.stream", ns.mnt);
    nfsha(&["export", quarantined, "--to", &stream])
        .assert()
        .code(0);
    ns.run(&["mkdir", &format!("{}/restore", ns.mnt)]);
    ns.run(&[
        "btrfs",
        "receive",
        "-f",
        &stream,
        &format!("{}/restore", ns.mnt),
    ]);
    let got = ns.run(&["cat", &format!("{}/restore/{quarantined}/f", ns.mnt)]);
    assert_eq!(got.trim(), "kept");
    // Dropped on purpose.
    nfsha(&["drop", quarantined, "--yes-delete-these-writes"])
        .assert()
        .code(0);
    nfsha(&["list"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("no quarantine snapshots"));
    assert!(Path::new(&dir.path()).exists());
    // The replication snapshot is untouched.
    let listed = ns.run(&["ls", &snaps]);
    assert!(listed.contains(normal), "{listed}");
}
