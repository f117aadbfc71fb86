//! End-to-end tests of the real `nfsha` binary over FUSE stand-in mounts (root + /dev/fuse).
//!
//! Each test writes a config in a tempdir, starts `nfsha agent` as a child process and
//! drives FaultFs mounts (healthy, ESTALE, EIO, ENOTCONN, EACCES, hang, unmounted) while
//! asserting what `nfsha status|check|recover|events`, `/metrics` and `/healthz` say.
//! The mounts are declared `mode = "autofs"` so the agent probes the FUSE filesystem on
//! top; their server is 127.0.0.1, where nothing answers NFS RPC, so every recovery
//! stops at `select-server` and never touches a mount.

mod common;

use common::{
    Agent, AgentFiles, PATIENCE, PROBE_DEADLINE, PROBE_INTERVAL, Scratch, is_mounted, json_lines,
    metric, metric0, wait_for,
};
use nfsha_testinfra::{Fault, FaultFsHandle, require_fuse};
use rustix::process::Signal;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn now_ms() -> u64 {
    nfsha_core::event::now_ms()
}

fn series(name: &str, mp: &std::path::Path, extra: &str) -> String {
    format!("{name}{{mountpoint=\"{}\"{extra}}}", mp.display())
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One mount of the fault matrix and what the agent must make of it.
struct Case {
    name: &'static str,
    /// `None`: the mount is removed (not mounted).
    fault: Option<Fault>,
    state: &'static str,
    errno: Option<i32>,
}

const CASES: [Case; 7] = [
    Case {
        name: "healthy",
        fault: Some(Fault::Healthy),
        state: "healthy",
        errno: None,
    },
    Case {
        name: "stale",
        fault: Some(Fault::Errno(libc::ESTALE)),
        state: "stale",
        errno: Some(libc::ESTALE),
    },
    Case {
        name: "eio",
        fault: Some(Fault::Errno(libc::EIO)),
        state: "io-error",
        errno: Some(libc::EIO),
    },
    Case {
        name: "enotconn",
        fault: Some(Fault::Errno(libc::ENOTCONN)),
        state: "disconnected",
        errno: Some(libc::ENOTCONN),
    },
    Case {
        name: "eacces",
        fault: Some(Fault::Errno(libc::EACCES)),
        state: "permission",
        errno: Some(libc::EACCES),
    },
    Case {
        name: "hang",
        fault: Some(Fault::Hang),
        state: "hung",
        errno: None,
    },
    Case {
        name: "gone",
        fault: None,
        state: "not-mounted",
        errno: None,
    },
];

const HEALTHY: usize = 0;
const STALE: usize = 1;
const EACCES_IDX: usize = 4;
const HANG: usize = 5;
const GONE: usize = 6;

/// The whole fault matrix on one agent: classification within deadline + 1 s, status,
/// metrics, healthz, check, recover, events, cadence of a healthy mount next to a hung
/// one, and the way back to healthy (stuck worker reaped once the server answers).
#[test]
fn fuse_agent_classifies_scrapes_and_reports_each_fault() {
    require_fuse();
    let scratch = Scratch::new("nfsha-e2e-faults");
    let mps: Vec<PathBuf> = CASES.iter().map(|c| scratch.dir(c.name)).collect();
    let mut fss: Vec<Option<FaultFsHandle>> = mps
        .iter()
        .map(|p| Some(FaultFsHandle::mount(p).expect("mount FaultFs")))
        .collect();
    let agent = Agent::start(&scratch.root, &mps);

    // --- All healthy.
    for mp in &mps {
        agent.wait_state(mp, "healthy", PATIENCE);
    }
    let (code, body) = agent.http("/healthz");
    assert_eq!(code, 200, "/healthz with every mount healthy: {body}");
    let h: Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(h["healthy"], true);
    assert_eq!(h["mounts"], 7);
    let out = agent.cli(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("NFSHA OK - 7/7 mounts healthy (agent)"),
        "{}",
        stdout(&out)
    );
    let out = agent.cli(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let j: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(j["level"], "OK");
    assert_eq!(j["source"], "agent");
    assert_eq!(j["mounts"].as_array().map(Vec::len), Some(7));
    let m = agent.wait_metrics(
        "server 127.0.0.1 probed and workers counted",
        PATIENCE,
        |m| {
            metric(m, r#"nfsha_server_rpc_up{server="127.0.0.1"}"#).is_some()
                && metric0(m, "nfsha_probe_workers_live") >= 1.0
        },
    );
    for mp in &mps {
        assert_eq!(
            metric(&m, &series("nfsha_mount_state", mp, ",state=\"healthy\"")),
            Some(1.0)
        );
        assert_eq!(
            metric(&m, &series("nfsha_mount_healthy", mp, "")),
            Some(1.0)
        );
    }
    assert_eq!(
        metric(&m, r#"nfsha_server_rpc_up{server="127.0.0.1"}"#),
        Some(0.0)
    );
    assert_eq!(metric(&m, "nfsha_probe_workers_stuck"), Some(0.0));
    assert!(
        metric0(&m, "nfsha_probe_workers_live") >= 1.0,
        "no live worker"
    );

    // --- Break six mounts at once.
    let healthy_probes = series("nfsha_probes_total", &mps[HEALTHY], ",result=\"ok\"");
    let probes_before = metric0(&agent.metrics(), &healthy_probes);
    let t_fault = now_ms();
    let window = Instant::now();
    for (c, fs) in CASES.iter().zip(fss.iter_mut()).skip(1) {
        match c.fault {
            Some(f) => fs.as_ref().expect("mounted").set_fault(f),
            None => drop(fs.take()),
        }
    }
    let bound = PROBE_DEADLINE + Duration::from_secs(1);
    for (c, mp) in CASES.iter().zip(&mps).skip(1) {
        let st = agent.wait_state(mp, c.state, PATIENCE);
        let since = st["since_ms"].as_u64().expect("since_ms");
        let took = Duration::from_millis(since.saturating_sub(t_fault));
        println!(
            "{:<8} -> {:<13} classified {took:?} after the fault",
            c.name, c.state
        );
        assert!(
            took <= bound,
            "{} classified {} after {took:?}, more than deadline + 1 s",
            c.name,
            c.state
        );
        if let Some(e) = c.errno {
            let name = nfsha_core::state::errno_name(e);
            let err = st["last_error"].as_str().unwrap_or_default();
            assert!(
                err.contains(name),
                "{}: last_error {err:?} lacks {name}",
                c.name
            );
        }
    }
    let st = agent.status();
    assert_eq!(
        st["mounts"][mps[HEALTHY].display().to_string()]["state"],
        "healthy"
    );

    // --- The hung mount does not stall the healthy one; its timeouts count up.
    let hang_timeouts = series("nfsha_probe_timeouts_total", &mps[HANG], "");
    let m = agent.wait_metrics("5 probe timeouts of the hung mount", PATIENCE, |m| {
        metric0(m, &hang_timeouts) >= 5.0
    });
    let elapsed = window.elapsed();
    let probes = metric0(&m, &healthy_probes) - probes_before;
    let expected = elapsed.as_secs_f64() / PROBE_INTERVAL.as_secs_f64();
    println!(
        "healthy mount: {probes} probes in {elapsed:?} next to a hung one (cadence allows {expected:.1})"
    );
    assert!(
        probes >= expected * 0.5,
        "healthy mount made {probes} probes in {elapsed:?} while another hung (expected about {expected:.1})"
    );
    let first = metric0(&m, &hang_timeouts);
    agent.wait_metrics("probe timeouts counting up", PATIENCE, |m| {
        metric0(m, &hang_timeouts) > first
    });

    // --- Metrics in each failure state.
    let m = agent.wait_metrics(
        "a stuck worker and a failed stale recovery",
        PATIENCE,
        |m| {
            metric0(m, "nfsha_probe_workers_stuck") >= 1.0
                && metric0(
                    m,
                    &series(
                        "nfsha_recoveries_total",
                        &mps[STALE],
                        ",cause=\"stale\",outcome=\"failed\"",
                    ),
                ) >= 1.0
        },
    );
    for (c, mp) in CASES.iter().zip(&mps).skip(1) {
        let state = format!(",state=\"{}\"", c.state);
        assert_eq!(
            metric(&m, &series("nfsha_mount_state", mp, &state)),
            Some(1.0),
            "{}",
            c.name
        );
        assert_eq!(
            metric(&m, &series("nfsha_mount_state", mp, ",state=\"healthy\"")),
            Some(0.0),
            "{}",
            c.name
        );
        assert_eq!(
            metric(&m, &series("nfsha_mount_healthy", mp, "")),
            Some(0.0),
            "{}",
            c.name
        );
        if c.errno.is_some() {
            assert!(
                metric0(&m, &series("nfsha_probes_total", mp, ",result=\"failed\"")) >= 1.0,
                "{}: no failed probe counted",
                c.name
            );
        }
    }
    assert!(
        metric0(
            &m,
            &series("nfsha_probes_total", &mps[HANG], ",result=\"hung\"")
        ) >= 5.0
    );
    assert_eq!(
        metric0(&m, &series("nfsha_probe_timeouts_total", &mps[STALE], "")),
        0.0
    );
    assert!(metric0(&m, "nfsha_probe_workers_live") >= 1.0);
    assert_eq!(
        metric(&m, r#"nfsha_server_rpc_up{server="127.0.0.1"}"#),
        Some(0.0)
    );
    // A permission error is not something a remount fixes: no recovery for it.
    assert_eq!(
        metric0(
            &m,
            &series(
                "nfsha_recoveries_total",
                &mps[EACCES_IDX],
                ",cause=\"permission\",outcome=\"failed\""
            )
        ),
        0.0
    );

    // --- /healthz in failure states.
    let (code, body) = agent.http("/healthz");
    assert_eq!(code, 503, "{body}");
    let h: Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(h["healthy"], false);
    assert_eq!(h["unhealthy"].as_array().map(Vec::len), Some(6), "{body}");
    let (code, body) = agent.http(&format!("/healthz?mount={}", mps[HEALTHY].display()));
    assert_eq!(code, 200, "{body}");
    let (code, body) = agent.http(&format!("/healthz?mount={}", mps[STALE].display()));
    assert_eq!(code, 503, "{body}");
    let h: Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(h["state"], "stale");
    let (code, _) = agent.http("/healthz?mount=/no/such/mount");
    assert_eq!(code, 404);

    // --- nfsha check: WARNING while the agent is on it, CRITICAL past --critical-after.
    let out = agent.cli(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("NFSHA WARNING - "),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("stale"), "{}", stdout(&out));
    let out = agent.cli(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(j["level"], "WARNING");
    let out = agent.cli(&["check", "--critical-after", "0s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("NFSHA CRITICAL - "),
        "{}",
        stdout(&out)
    );
    let out = agent.cli(&["check", "--json", "--critical-after", "0s"]);
    assert_eq!(out.status.code(), Some(2));
    let j: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(j["level"], "CRITICAL");
    let levels: Vec<&str> = j["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["level"].as_str())
        .collect();
    assert_eq!(
        levels.iter().filter(|l| **l == "OK").count(),
        1,
        "{levels:?}"
    );
    assert_eq!(
        levels.iter().filter(|l| **l == "CRITICAL").count(),
        6,
        "{levels:?}"
    );

    // --- nfsha recover: no server answers RPC, so it fails at select-server and
    // leaves the mount (and every other) alone.
    let stale = mps[STALE].display().to_string();
    let out = agent.cli(&["recover", &stale]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "recover: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("No server"), "{}", stdout(&out));
    assert!(stdout(&out).contains("select-server"), "{}", stdout(&out));
    let out = agent.cli(&["recover", "--json", &stale]);
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).expect("recover --json");
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("No server"),
        "{r}"
    );
    assert_eq!(r["steps"][0]["step"], "select-server");
    assert_eq!(r["steps"][0]["outcome"], "failed");
    assert_eq!(r["steps"].as_array().map(Vec::len), Some(1), "{r}");
    for (c, mp) in CASES.iter().zip(&mps) {
        assert_eq!(
            is_mounted(mp),
            c.fault.is_some(),
            "{} mount table entry changed",
            c.name
        );
    }
    let out = agent.cli(&["recover", "/no/such/mount"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a configured mount"),
        "{}",
        stderr(&out)
    );

    // --- Events: the file and `nfsha events --json`.
    let file = std::fs::read_to_string(&agent.files.events).expect("event log");
    let from_file = json_lines(&file);
    let out = agent.cli(&["events", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let from_cli = json_lines(&stdout(&out));
    for (c, mp) in CASES.iter().zip(&mps).skip(1) {
        let key = mp.display().to_string();
        for (src, events) in [("file", &from_file), ("nfsha events --json", &from_cli)] {
            let found = events.iter().any(|e| {
                e["kind"] == "mount_state_changed"
                    && e["mount"] == key.as_str()
                    && e["to"] == c.state
                    && e["errno"].as_i64() == c.errno.map(i64::from)
            });
            assert!(
                found,
                "{src}: no mount_state_changed to {} (errno {:?}) for {key}",
                c.state, c.errno
            );
        }
    }
    assert!(
        from_file.iter().any(|e| e["kind"] == "recovery_step"
            && e["step"] == "select-server"
            && e["outcome"] == "failed"),
        "no failed select-server step in the event log"
    );
    let out = agent.cli(&["events"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("mount_state_changed"),
        "{}",
        stdout(&out)
    );

    // --- Back to healthy: the hung request is answered, its worker is reaped.
    for fs in fss.iter().flatten() {
        fs.release();
    }
    fss[GONE] = Some(FaultFsHandle::mount(&mps[GONE]).expect("remount FaultFs"));
    for mp in &mps {
        agent.wait_state(mp, "healthy", PATIENCE);
    }
    agent.wait_metrics("the stuck worker reaped", PATIENCE, |m| {
        metric(m, "nfsha_probe_workers_stuck") == Some(0.0)
    });
    assert_eq!(agent.http("/healthz").0, 200);
    assert_eq!(agent.cli(&["check"]).status.code(), Some(0));
    drop(agent);
    drop(fss);
}

/// SIGHUP with a broken config keeps the old one (and says why); with a valid changed
/// config it adds and removes mounts; SIGTERM exits 0 and removes the socket.
#[test]
fn fuse_agent_reloads_on_sighup_and_stops_on_sigterm() {
    require_fuse();
    let scratch = Scratch::new("nfsha-e2e-reload");
    let a = scratch.dir("a");
    let b = scratch.dir("b");
    let _fa = FaultFsHandle::mount(&a).expect("mount FaultFs");
    let _fb = FaultFsHandle::mount(&b).expect("mount FaultFs");
    let mut agent = Agent::start(&scratch.root, std::slice::from_ref(&a));
    agent.wait_state(&a, "healthy", PATIENCE);
    let files: AgentFiles = agent.files.clone();
    let probes_a = series("nfsha_probes_total", &a, ",result=\"ok\"");

    // Broken config: refused, old config stays, probing goes on.
    let good = files.config_text(std::slice::from_ref(&a));
    files.write_config(&format!("{good}\n[agent.bogus]\nx = 1\n"));
    agent.signal(Signal::HUP);
    let ok = wait_for(PATIENCE, || {
        agent.status()["reload_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    });
    assert!(ok, "reload_error never appeared\n{}", agent.log_text());
    let st = agent.status();
    println!("reload_error: {}", st["reload_error"]);
    // The table says so too, although the file on disk no longer validates.
    let out = agent.cli(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("last config reload was refused") && stdout(&out).contains("bogus"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("is invalid"), "{}", stderr(&out));
    assert_eq!(st["mounts"].as_object().map(|m| m.len()), Some(1));
    assert_eq!(st["mounts"][a.display().to_string()]["state"], "healthy");
    let m = agent.metrics();
    assert_eq!(metric(&m, "nfsha_config_reload_success"), Some(0.0));
    let before = metric0(&m, &probes_a);
    agent.wait_metrics("probes of the old config's mount going on", PATIENCE, |m| {
        metric0(m, &probes_a) >= before + 3.0
    });

    // Valid config: a removed, b added, served by another (silent) loopback address.
    files.write_config(&files.config_text_with_server(std::slice::from_ref(&b), "127.0.0.2"));
    agent.signal(Signal::HUP);
    agent.wait_state(&b, "healthy", PATIENCE);
    let st = agent.status();
    assert!(st["reload_error"].is_null(), "{}", st["reload_error"]);
    assert!(st["mounts"].get(a.display().to_string()).is_none(), "{st}");
    let m = agent.metrics();
    assert_eq!(metric(&m, "nfsha_config_reload_success"), Some(1.0));
    assert_eq!(
        metric(&m, &series("nfsha_mount_state", &a, ",state=\"healthy\"")),
        None
    );
    assert_eq!(
        metric(&m, &series("nfsha_mount_healthy", &b, "")),
        Some(1.0)
    );
    let m = agent.wait_metrics("only the new server's series", PATIENCE, |m| {
        metric(m, r#"nfsha_server_rpc_up{server="127.0.0.2"}"#) == Some(0.0)
            && metric(m, r#"nfsha_server_rpc_up{server="127.0.0.1"}"#).is_none()
    });
    assert_eq!(
        metric(&m, &series("nfsha_probes_total", &a, ",result=\"ok\"")),
        None
    );
    let st = agent.status();
    let servers: Vec<&String> = st["servers"].as_object().expect("servers").keys().collect();
    assert_eq!(servers, ["127.0.0.2"]);
    assert_eq!(
        agent.http(&format!("/healthz?mount={}", a.display())).0,
        404
    );
    assert_eq!(
        agent.http(&format!("/healthz?mount={}", b.display())).0,
        200
    );
    let events = json_lines(&std::fs::read_to_string(&files.events).expect("event log"));
    let reloads: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "config_reloaded")
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(reloads, ["rejected", "ok"]);

    // The endpoints move too: new control socket, HTTP port and event log.
    let old = agent.files.clone();
    let mut moved = old.clone();
    moved.socket = scratch.root.join("agent2.sock");
    moved.events = scratch.root.join("logs/events2.jsonl");
    moved.port = common::free_port();
    files.write_config(&moved.config_text_with_server(std::slice::from_ref(&b), "127.0.0.2"));
    agent.signal(Signal::HUP);
    let up = wait_for(PATIENCE, || {
        common::try_http(moved.port, "/healthz").is_some() && moved.socket.exists()
    });
    assert!(up, "new endpoints never came up\n{}", agent.log_text());
    agent.files = moved.clone();
    let st = agent.status();
    assert!(st["reload_error"].is_null(), "{}", st["reload_error"]);
    assert_eq!(agent.http("/healthz").0, 200);
    let gone = wait_for(PATIENCE, || {
        common::try_http(old.port, "/healthz").is_none() && !old.socket.exists()
    });
    assert!(gone, "old port or socket still there\n{}", agent.log_text());
    agent.cli(&["recover", &b.display().to_string()]);
    let logged = wait_for(PATIENCE, || {
        std::fs::read_to_string(&moved.events).is_ok_and(|t| !t.is_empty())
    });
    assert!(logged, "nothing in the new event log\n{}", agent.log_text());
    let files = moved;

    // SIGTERM: clean exit, socket removed.
    assert!(files.socket.exists());
    agent.signal(Signal::TERM);
    let mut status = None;
    let exited = wait_for(Duration::from_secs(5), || {
        status = agent.child.try_wait().expect("try_wait");
        status.is_some()
    });
    assert!(
        exited,
        "the agent did not exit within 5 s of SIGTERM\n{}",
        agent.log_text()
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        agent.log_text()
    );
    assert!(!files.socket.exists(), "control socket left behind");

    // Without an agent, `nfsha check` is CRITICAL (nothing recovers the mounts);
    // `--local` probes them from here.
    let out = agent.cli(&["check", "--json"]);
    let j: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(j["source"], "agent", "{j}");
    assert_eq!(j["level"], "CRITICAL", "{j}");
    assert_eq!(out.status.code(), Some(2));
    let out = agent.cli(&["check", "--local", "--json"]);
    let j: Value = serde_json::from_slice(&out.stdout).expect("check --local --json");
    assert_eq!(j["source"], "local-probe", "{j}");
    assert_eq!(j["level"], "OK", "{j}");
    assert_eq!(out.status.code(), Some(0));
}

/// SIGTERM while a probe worker is stuck in the kernel on a hung mount: the agent
/// still exits 0 promptly (the stuck worker is left to the kernel, released when the
/// FUSE server answers or dies).
#[test]
fn fuse_agent_stops_promptly_with_a_hung_mount() {
    require_fuse();
    let scratch = Scratch::new("nfsha-e2e-term");
    let mp = scratch.dir("hang");
    let fs = FaultFsHandle::mount(&mp).expect("mount FaultFs");
    let mut agent = Agent::start(&scratch.root, std::slice::from_ref(&mp));
    agent.wait_state(&mp, "healthy", PATIENCE);
    fs.set_fault(Fault::Hang);
    agent.wait_state(&mp, "hung", PATIENCE);
    agent.wait_metrics("a stuck worker", PATIENCE, |m| {
        metric0(m, "nfsha_probe_workers_stuck") >= 1.0
    });
    assert!(fs.pending() >= 1, "the FUSE server holds no request");
    let socket = agent.files.socket.clone();
    agent.signal(Signal::TERM);
    let start = Instant::now();
    let mut status = None;
    let exited = wait_for(Duration::from_secs(5), || {
        status = agent.child.try_wait().expect("try_wait");
        status.is_some()
    });
    assert!(
        exited,
        "no exit within 5 s of SIGTERM with a hung mount\n{}",
        agent.log_text()
    );
    println!(
        "agent exited {:?} after SIGTERM with a stuck worker",
        start.elapsed()
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        agent.log_text()
    );
    assert!(!socket.exists(), "control socket left behind");
    fs.release();
}

/// `nfsha __worker` speaks the line protocol of nfsha_sys::worker: a ping gets a pong
/// carrying the worker's pid and the request id; EOF on stdin ends it with status 0.
#[test]
fn worker_answers_ping_and_exits_on_eof() {
    let mut child = Command::new(common::nfsha_bin())
        .arg("__worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nfsha __worker");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    stdin
        .write_all(b"{\"id\":7,\"op\":\"ping\"}\n")
        .expect("write ping");
    stdin.flush().expect("flush");
    let mut line = String::new();
    out.read_line(&mut line).expect("read pong");
    let v: Value = serde_json::from_str(&line).expect("pong is JSON");
    assert_eq!(v["id"], 7, "{line}");
    assert_eq!(v["kind"], "pong", "{line}");
    assert_eq!(v["pid"].as_u64(), Some(u64::from(child.id())), "{line}");
    stdin.write_all(b"not json\n").expect("write garbage");
    line.clear();
    out.read_line(&mut line).expect("read error answer");
    let v: Value = serde_json::from_str(&line).expect("error answer is JSON");
    assert_eq!(v["kind"], "error", "{line}");
    drop(stdin);
    let mut status = None;
    assert!(
        wait_for(Duration::from_secs(5), || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        }),
        "worker did not exit on EOF"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}
