//! Shared helpers of the `nfsha` binary's end-to-end tests: a real `nfsha agent` child
//! process over FUSE stand-in mounts, its config, CLI calls and raw HTTP scrapes.
//!
//! Failure modes: every wait is bounded and panics with the agent's own log attached,
//! so a hung or crashed agent fails the test with the reason instead of hanging it;
//! the agent is SIGKILLed and reaped when its [`Agent`] is dropped (even on panic).
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `probe_interval` of every test mount.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// `probe_deadline` of every test mount.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(1);
/// How long a test waits for anything the agent should do "soon" (generous: the CI
/// machine has 2 cores and runs the debug build).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The nfsha binary under test.
pub fn nfsha_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nfsha")
}

/// A scratch directory (canonical path, so it matches /proc/self/mountinfo).
#[derive(Debug)]
pub struct Scratch {
    _tmp: tempfile::TempDir,
    /// Its canonical path.
    pub root: PathBuf,
}

impl Scratch {
    /// A fresh scratch directory.
    pub fn new(prefix: &str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create a temporary directory");
        let root = tmp.path().canonicalize().expect("canonicalize tempdir");
        Scratch { _tmp: tmp, root }
    }

    /// Create (and return) the directory `root/name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A TOML basic string for `s` (JSON string escaping is valid TOML for these paths).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}

/// Paths and port of one agent's config.
#[derive(Debug, Clone)]
pub struct AgentFiles {
    /// The config file.
    pub config: PathBuf,
    /// `[agent] control_socket`.
    pub socket: PathBuf,
    /// `[agent] event_log`.
    pub events: PathBuf,
    /// The agent's stderr.
    pub log: PathBuf,
    /// `[agent] listen` port on 127.0.0.1.
    pub port: u16,
}

impl AgentFiles {
    /// Files under `root`, on a fresh port.
    pub fn new(root: &Path) -> Self {
        AgentFiles {
            config: root.join("nfsha.toml"),
            socket: root.join("agent.sock"),
            events: root.join("events.jsonl"),
            log: root.join("agent.log"),
            port: free_port(),
        }
    }

    /// The config text: every mount in autofs mode (so FUSE mounts are probed), served
    /// by 127.0.0.1 (where nothing answers NFS RPC), probed every 200 ms with a 1 s deadline.
    pub fn config_text(&self, mounts: &[PathBuf]) -> String {
        self.config_text_with_server(mounts, "127.0.0.1")
    }

    /// [`AgentFiles::config_text`] with another loopback server address.
    pub fn config_text_with_server(&self, mounts: &[PathBuf], server: &str) -> String {
        let mut s = format!(
            "[agent]\ncontrol_socket = {}\nlisten = \"127.0.0.1:{}\"\nevent_log = {}\n\
             rpc_timeout = \"500ms\"\nserver_probe_interval = \"500ms\"\n\n\
             [defaults]\nmode = \"autofs\"\nprobe_interval = \"{}ms\"\nprobe_deadline = \"{}ms\"\n",
            toml_str(&self.socket.display().to_string()),
            self.port,
            toml_str(&self.events.display().to_string()),
            PROBE_INTERVAL.as_millis(),
            PROBE_DEADLINE.as_millis(),
        );
        for (i, m) in mounts.iter().enumerate() {
            s.push_str(&format!(
                "\n[[mount]]\nmountpoint = {}\nexport = \"/srv/e2e/{i}\"\nservers = [{}]\n",
                toml_str(&m.display().to_string()),
                toml_str(server)
            ));
        }
        s
    }

    /// Replace the config file atomically (a reload never reads a half-written file).
    pub fn write_config(&self, text: &str) {
        let tmp = self.config.with_extension("toml.new");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }
}

/// A running `nfsha agent` (SIGKILLed and reaped on drop).
#[derive(Debug)]
pub struct Agent {
    /// The child process.
    pub child: Child,
    /// Its files.
    pub files: AgentFiles,
}

impl Agent {
    /// Write the config for `mounts` under `root` and start the agent; returns once it
    /// answers on its control socket and on HTTP.
    pub fn start(root: &Path, mounts: &[PathBuf]) -> Agent {
        Agent::start_with(root, mounts, |_| {})
    }

    /// [`Agent::start`], with `prepare` adjusting the agent's command first (e.g. its
    /// resource limits).
    pub fn start_with(
        root: &Path,
        mounts: &[PathBuf],
        prepare: impl FnOnce(&mut Command),
    ) -> Agent {
        let files = AgentFiles::new(root);
        files.write_config(&files.config_text(mounts));
        let log = std::fs::File::create(&files.log).expect("create agent log");
        let mut cmd = Command::new(nfsha_bin());
        cmd.arg("agent")
            .arg("--config")
            .arg(&files.config)
            .env_remove("NFSHA_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        prepare(&mut cmd);
        let child = cmd.spawn().expect("spawn nfsha agent");
        let mut agent = Agent { child, files };
        let up = wait_for(PATIENCE, || {
            if let Ok(Some(st)) = agent.child.try_wait() {
                panic!("the agent exited early ({st}):\n{}", agent.log_text());
            }
            agent.try_status().is_some() && try_http(agent.files.port, "/healthz").is_some()
        });
        assert!(
            up,
            "the agent did not come up within {PATIENCE:?}:\n{}",
            agent.log_text()
        );
        agent
    }

    /// The agent's stderr so far (for failure messages).
    pub fn log_text(&self) -> String {
        let t = std::fs::read_to_string(&self.files.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        let tail = lines.len().saturating_sub(40);
        format!(
            "--- agent log (last 40 lines) ---\n{}",
            lines[tail..].join("\n")
        )
    }

    /// Run `nfsha <args> --config <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(nfsha_bin())
            .args(args)
            .arg("--config")
            .arg(&self.files.config)
            .env_remove("NFSHA_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run nfsha")
    }

    /// `nfsha status --json`, or `None` when it fails.
    pub fn try_status(&self) -> Option<Value> {
        let out = self.cli(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `nfsha status --json`, which must succeed.
    pub fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "nfsha status --json failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
    }

    /// Poll `nfsha status --json` until `mp` is in `state`; returns that mount's entry.
    pub fn wait_state(&self, mp: &Path, state: &str, within: Duration) -> Value {
        let key = mp.display().to_string();
        let mut last = Value::Null;
        let ok = wait_for(within, || {
            if let Some(st) = self.try_status() {
                last = st["mounts"][&key].clone();
                return last["state"] == state;
            }
            false
        });
        assert!(
            ok,
            "{key} did not reach `{state}` within {within:?}; last seen: {last}\n{}",
            self.log_text()
        );
        last
    }

    /// `GET path` on the agent's HTTP endpoint: (status code, body).
    pub fn http(&self, path: &str) -> (u16, String) {
        try_http(self.files.port, path)
            .unwrap_or_else(|| panic!("GET {path} failed\n{}", self.log_text()))
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let (code, body) = self.http("/metrics");
        assert_eq!(code, 200, "GET /metrics: {body}");
        body
    }

    /// Poll `/metrics` until `cond` holds; returns the last scrape.
    pub fn wait_metrics(
        &self,
        what: &str,
        within: Duration,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        let ok = wait_for(within, || {
            last = self.metrics();
            cond(&last)
        });
        assert!(
            ok,
            "metrics never showed {what} within {within:?}; last scrape:\n{}\n{}",
            last.lines()
                .filter(|l| l.starts_with("nfsha_") && !l.contains("_bucket"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.log_text()
        );
        last
    }

    /// Send a signal to the agent.
    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, sig).expect("signal the agent");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 50 ms until it holds or `within` passes.
pub fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on 127.0.0.1:port with HTTP/1.1 and `Connection: close`.
pub fn try_http(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some((code, body))
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n + 2..)?;
    }
}

/// The value of one exact series (`name{labels}`) in a Prometheus/OpenMetrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// [`metric`], defaulting to 0 for an absent series (counters not yet created).
pub fn metric0(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}

/// Is `mp` (exactly) a mountpoint in this process's mount table?
pub fn is_mounted(mp: &Path) -> bool {
    let want = mp.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Every JSON line of a file (torn or empty lines skipped).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
