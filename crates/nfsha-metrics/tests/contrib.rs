//! Lints of `contrib/`: the Grafana dashboard and the Prometheus alert rules may only use
//! metric names that `AgentMetrics::encode()` really produces, and promtool must accept the
//! rules, their unit tests, every dashboard query and a real scrape.

use nfsha_core::{MountState, ProbeOp, ProbeOutcome};
use nfsha_metrics::{AgentMetrics, MountstatsSource};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const FIXTURE: &str = include_str!("fixtures/mountstats.txt");

#[derive(Debug)]
struct Fixture;

impl MountstatsSource for Fixture {
    fn read(&self) -> std::io::Result<String> {
        Ok(FIXTURE.to_owned())
    }
}

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib")
}

/// A scrape in which every family has at least one series.
fn full_scrape_classic() -> String {
    nfsha_metrics::exposition::to_classic(&full_scrape())
}

fn full_scrape() -> String {
    let m = AgentMetrics::with_sources(Arc::new(Fixture), Arc::new(SystemTime::now));
    let mp = "/airflow/dags";
    m.set_mount_state(mp, MountState::Stale, SystemTime::now(), Some("nfs-1"));
    m.observe_probe(
        mp,
        &ProbeOutcome::Ok {
            latency: Duration::from_millis(2),
        },
    );
    m.observe_probe(
        mp,
        &ProbeOutcome::Failed {
            op: ProbeOp::Statfs,
            errno: 116,
            latency: Duration::from_millis(2),
        },
    );
    m.observe_probe(
        mp,
        &ProbeOutcome::Hung {
            deadline: Duration::from_secs(2),
        },
    );
    m.record_recovery(mp, MountState::Stale, false, Duration::from_secs(3));
    m.set_server_rpc("nfs-1", true, Some(Duration::from_millis(1)));
    m.set_workers(1, 3);
    m.set_config_reload(true);
    m.encode()
}

/// Every sample name (`nfsha_probes_total`, `nfsha_probe_duration_seconds_bucket` ...) and
/// family name (`# TYPE` lines) in a full scrape.
fn exported_names() -> BTreeSet<String> {
    let scrape = full_scrape();
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(n) = name {
            names.insert(n.to_owned());
        }
    }
    assert!(names.len() > 40, "suspiciously few names: {names:?}");
    names
}

/// `nfsha_*` identifiers in a PromQL expression.
fn metric_refs(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("nfsha_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.push(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// Every query of the dashboard: panel targets (rows' nested panels included), template
/// variable queries and annotation queries, each with where it came from.
fn dashboard_queries(d: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title}: target without expr"));
                out.push((format!("panel {title}"), expr.to_owned()));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push((format!("variable {}", v["name"]), q.to_owned()));
        }
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(q) = a["expr"].as_str() {
            out.push((format!("annotation {}", a["name"]), q.to_owned()));
        }
    }
    out
}

fn load_dashboard() -> serde_json::Value {
    let path = contrib().join("grafana/nfsha-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

#[test]
fn dashboard_is_well_formed() {
    let d = load_dashboard();
    assert!(d["title"].is_string() && d["uid"].is_string() && d["schemaVersion"].is_u64());
    let mut ids = BTreeSet::new();
    let panels = d["panels"].as_array().expect("panels array");
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("numeric id")),
            "duplicate id in {title}"
        );
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "panel {title}: gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {title} datasource"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "panel {title}: duplicate refId");
    }
}

#[test]
fn dashboard_queries_only_use_exported_metrics() {
    let names = exported_names();
    let queries = dashboard_queries(&load_dashboard());
    assert!(queries.len() >= 20, "only {} queries found", queries.len());
    let mut used = BTreeSet::new();
    for (whence, expr) in &queries {
        let refs = metric_refs(expr);
        assert!(!refs.is_empty(), "{whence}: no nfsha metric in {expr}");
        for r in refs {
            assert!(
                names.contains(&r),
                "{whence}: {r} is not exported (expr {expr})"
            );
            used.insert(r);
        }
    }
    // The dashboard covers what the issue asks for.
    for needed in [
        "nfsha_mount_healthy",
        "nfsha_mount_state",
        "nfsha_probe_duration_seconds_bucket",
        "nfsha_recoveries_total",
        "nfsha_server_rpc_rtt_seconds",
        "nfsha_mountstats_retransmissions_total",
    ] {
        assert!(used.contains(needed), "dashboard does not show {needed}");
    }
}

#[test]
fn alert_rules_only_use_exported_metrics() {
    let names = exported_names();
    let path = contrib().join("prometheus/nfsha-alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let exprs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    assert!(exprs.len() >= 5, "expected at least five alert rules");
    for e in exprs {
        let refs = metric_refs(e);
        // The agent-down rule can only use Prometheus's own `up` series.
        let agent_down = e.trim() == "up{job=\"nfsha\"} == 0";
        assert!(
            !refs.is_empty() || agent_down,
            "rule without an nfsha metric: {e}"
        );
        for r in refs {
            assert!(
                names.contains(&r),
                "alert uses {r}, which is not exported: {e}"
            );
        }
    }
}

#[test]
fn metric_refs_takes_whole_identifiers() {
    assert_eq!(
        metric_refs("rate(nfsha_mount_state_seconds[5m]) / x_nfsha_no + nfsha_probes_total"),
        vec!["nfsha_mount_state_seconds", "nfsha_probes_total"]
    );
}

/// promtool from `$PROMTOOL`, `$PATH`, or the unpacked Debian package under /var/tmp.
fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return PathBuf::from(p);
    }
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from(
            "/var/tmp/nfsha-promtool/root/usr/bin/promtool",
        )]);
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "promtool is missing. Install it with `apt-get install -y prometheus`, or without \
         starting a Prometheus server: `cd /var/tmp && mkdir -p nfsha-promtool && cd nfsha-promtool \
         && apt-get download prometheus && dpkg -x prometheus_*.deb root`, or set PROMTOOL=/path/to/promtool"
    );
}

fn run(cmd: &mut Command, stdin: Option<&str>) {
    let out = output(cmd, stdin);
    assert!(out.ok, "{}", out.report);
}

struct Output {
    ok: bool,
    stderr: String,
    report: String,
}

fn output(cmd: &mut Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Output {
        ok: out.status.success(),
        report: format!(
            "{shown} failed ({}):\nstdout:\n{}\nstderr:\n{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
        ),
        stderr,
    }
}

#[test]
fn promtool_checks_rules_dashboard_queries_and_a_scrape() {
    let promtool = promtool();
    let rules = contrib().join("prometheus/nfsha-alerts.yml");
    run(
        Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&rules),
        None,
    );
    run(
        Command::new(&promtool)
            .current_dir(contrib().join("prometheus"))
            .args(["test", "rules", "nfsha-alerts.test.yml"]),
        None,
    );
    // Every dashboard query, with Grafana variables substituted, must parse as PromQL:
    // wrap them as recording rules and let promtool parse them.
    let mut doc = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_queries(&load_dashboard()).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$mountpoint", ".*");
        let expr = expr.replace('\'', "''");
        if expr.starts_with("label_values(") {
            continue; // Grafana's own function, not PromQL
        }
        doc.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: '{expr}'\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, &doc).unwrap();
    run(
        Command::new(&promtool).arg("check").arg("rules").arg(&file),
        None,
    );
    // And a real scrape, as curl or promtool gets it (the classic text format: no Accept
    // asking for OpenMetrics), must pass promtool's exposition linter without a complaint.
    let scrape = full_scrape_classic();
    let out = output(
        Command::new(&promtool).args(["check", "metrics"]),
        Some(&scrape),
    );
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        complaints.is_empty() && out.ok,
        "promtool check metrics: {complaints:?}\n{}",
        out.report
    );
    assert!(scrape.contains("# TYPE nfsha_probes_total counter"));
    assert!(scrape.contains("process_resident_memory_bytes"));
}
