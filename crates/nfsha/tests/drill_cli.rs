//! `nfsha drill run`: the operator's drill over a real FUSE mount whose "server"
//! fails with ESTALE for a while and then recovers, as after a failover.

mod common;

use nfsha_testinfra::{Fault, FaultFsHandle, require_fuse};
use std::process::Command;
use std::time::Duration;

fn drill(args: &[&str]) -> std::process::Output {
    Command::new(common::nfsha_bin())
        .arg("drill")
        .args(args)
        .output()
        .expect("run nfsha drill")
}

#[test]
fn drill_run_on_a_healthy_directory_reports_no_window_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let o = drill(&[
        "run",
        "--path",
        data.to_str().unwrap(),
        "--duration",
        "1s",
        "--interval",
        "100ms",
        "--workers",
        "2",
        "--op",
        "write",
        "--max-window",
        "0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "accesses.jsonl",
        "report.json",
        "timeline.txt",
        "timeline.svg",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let p = &report["paths"][0];
    assert_eq!(p["failed"], 0, "{p}");
    assert!(p["accesses"].as_u64().unwrap() >= 10, "{p}");
}

#[test]
fn fuse_drill_run_measures_the_error_window_and_enforces_max_window() {
    require_fuse();
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let fs = FaultFsHandle::mount(&mp).expect("mount FaultFs");
    fs.set_fault(Fault::Errno(libc::ESTALE));
    let run = |max: &str, name: &str| {
        let out = dir.path().join(name);
        let child = Command::new(common::nfsha_bin())
            .args([
                "drill",
                "run",
                "--path",
                mp.to_str().unwrap(),
                "--duration",
                "2s",
                "--interval",
                "50ms",
                "--workers",
                "1",
                "--max-window",
                max,
                "--out",
                out.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, out)
    };
    // The "failover": the first ~0.6 s of the drill fail with ESTALE, then the server is back.
    let (child, out) = run("5", "generous");
    std::thread::sleep(Duration::from_millis(600)); // the fault's duration is the scenario itself
    fs.set_fault(Fault::Healthy);
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let w = report["paths"][0]["error_window_ms"]
        .as_f64()
        .expect("a window");
    assert!((300.0..2000.0).contains(&w), "window {w} ms");

    fs.set_fault(Fault::Errno(libc::ESTALE));
    let (child, _) = run("0.1", "strict");
    std::thread::sleep(Duration::from_millis(600));
    fs.set_fault(Fault::Healthy);
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("error window"), "{text}");
}
