//! Micro-benchmark of a `/metrics` scrape at 1,000 mounts (not a test; no timing assertions).
//!
//! Run: `cargo bench -p nfsha-metrics --bench encode`. Writes JSON to
//! `$NFSHA_BENCH_DIR/metrics_encode.json` (default `$CARGO_TARGET_DIR/nfsha-bench`, else
//! `target/nfsha-bench`) and prints it. Measures `encode()` with a synthetic mountstats file
//! of 1,000 NFSv4.1 entries (20 active operations each), `encode()` without mountstats, the
//! mountstats parse alone, and the per-call cost of the setters the agent calls per probe.

use nfsha_core::{MountState, ProbeOp, ProbeOutcome};
use nfsha_metrics::{AgentMetrics, MountstatsSource};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const MOUNTS: usize = 1000;
const OPS: [&str; 20] = [
    "NULL",
    "READ",
    "WRITE",
    "COMMIT",
    "OPEN",
    "CLOSE",
    "SETATTR",
    "FSINFO",
    "ACCESS",
    "GETATTR",
    "LOOKUP",
    "REMOVE",
    "RENAME",
    "CREATE",
    "PATHCONF",
    "STATFS",
    "READDIR",
    "SERVER_CAPS",
    "SEQUENCE",
    "LOOKUPP",
];

#[derive(Debug)]
struct Text(String);

impl MountstatsSource for Text {
    fn read(&self) -> std::io::Result<String> {
        Ok(self.0.clone())
    }
}

fn mountpoint(i: usize) -> String {
    format!("/srv/mounts/m{i:04}")
}

fn synthetic_mountstats() -> String {
    let mut s = String::new();
    for i in 0..MOUNTS {
        let _ = writeln!(
            s,
            "device nfs-{}:/export/m{i:04} mounted on {} with fstype nfs4 statvers=1.1",
            i % 3,
            mountpoint(i)
        );
        s.push_str("\topts:\trw,vers=4.1,hard,proto=tcp,timeo=50,retrans=2\n\tage:\t86400\n");
        s.push_str(
            "\tevents:\t1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27\n",
        );
        s.push_str("\tbytes:\t1 2 3 4 5 6 7 8\n\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)\n");
        s.push_str("\txprt:\ttcp 811 1 3 0 12 41000 40990 0 82000 150 12 70000 11000\n");
        s.push_str("\tper-op statistics\n");
        for (k, op) in OPS.iter().enumerate() {
            let n = 1000 + k * 7 + i;
            let _ = writeln!(
                s,
                "\t{op:>12}: {n} {} {} 1000 2000 3 {} {} 0",
                n + k,
                k % 2,
                n / 2,
                n / 2 + 10
            );
        }
        s.push('\n');
    }
    s
}

fn populated(source: Arc<dyn MountstatsSource>) -> AgentMetrics {
    let m = AgentMetrics::with_sources(source, Arc::new(SystemTime::now));
    for i in 0..MOUNTS {
        let mp = mountpoint(i);
        let server = format!("nfs-{}", i % 3);
        m.set_mount_state(&mp, MountState::Healthy, SystemTime::now(), Some(&server));
        for k in 0..50u64 {
            m.observe_probe(
                &mp,
                &ProbeOutcome::Ok {
                    latency: Duration::from_micros(300 + k * 97),
                },
            );
        }
        m.observe_probe(
            &mp,
            &ProbeOutcome::Hung {
                deadline: Duration::from_secs(2),
            },
        );
        m.observe_probe(
            &mp,
            &ProbeOutcome::Failed {
                op: ProbeOp::Readdir,
                errno: 116,
                latency: Duration::from_millis(4),
            },
        );
        m.record_recovery(&mp, MountState::Stale, true, Duration::from_millis(1200));
        m.record_recovery(&mp, MountState::Hung, false, Duration::from_secs(15));
    }
    for s in 0..3 {
        m.set_server_rpc(&format!("nfs-{s}"), true, Some(Duration::from_micros(400)));
    }
    m.set_workers(0, MOUNTS);
    m
}

struct Stats {
    min_ms: f64,
    median_ms: f64,
    p90_ms: f64,
    max_ms: f64,
}

fn time_it(iters: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..3 {
        f();
    }
    let mut v: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    Stats {
        min_ms: v[0],
        median_ms: v[v.len() / 2],
        p90_ms: v[v.len() * 9 / 10],
        max_ms: v[v.len() - 1],
    }
}

fn stats_json(s: &Stats) -> serde_json::Value {
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    serde_json::json!({"min_ms": r(s.min_ms), "median_ms": r(s.median_ms), "p90_ms": r(s.p90_ms), "max_ms": r(s.max_ms)})
}

fn out_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NFSHA_BENCH_DIR") {
        return PathBuf::from(d);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("nfsha-bench")
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: run small.
    let quick =
        std::env::args().any(|a| a == "--quick") || !std::env::args().any(|a| a == "--bench");
    let iters = if quick { 3 } else { 50 };

    let text = synthetic_mountstats();
    let with_stats = populated(Arc::new(Text(text.clone())));
    let without_stats = populated(Arc::new(Text(String::new())));

    let scrape = with_stats.encode();
    let series = scrape.lines().filter(|l| !l.starts_with('#')).count();
    let full = time_it(iters, || {
        black_box(with_stats.encode());
    });
    let no_ms = time_it(iters, || {
        black_box(without_stats.encode());
    });
    let parse = time_it(iters, || {
        black_box(nfsha_metrics::mountstats::parse(black_box(&text)));
    });

    let calls = if quick { 10_000 } else { 1_000_000 };
    let probe = ProbeOutcome::Ok {
        latency: Duration::from_micros(700),
    };
    let mp = mountpoint(7);
    let t = Instant::now();
    for _ in 0..calls {
        with_stats.observe_probe(black_box(&mp), black_box(&probe));
    }
    let observe_ns = t.elapsed().as_nanos() as f64 / calls as f64;
    let t = Instant::now();
    for _ in 0..calls {
        with_stats.set_mount_state(
            black_box(&mp),
            MountState::Healthy,
            SystemTime::UNIX_EPOCH,
            Some("nfs-1"),
        );
    }
    let set_state_ns = t.elapsed().as_nanos() as f64 / calls as f64;

    let report = serde_json::json!({
        "benchmark": "nfsha-metrics encode",
        "quick": quick,
        "mounts": MOUNTS,
        "active_ops_per_mount": OPS.len(),
        "iterations": iters,
        "scrape_bytes": scrape.len(),
        "scrape_series": series,
        "mountstats_bytes": text.len(),
        "encode_with_mountstats": stats_json(&full),
        "encode_without_mountstats": stats_json(&no_ms),
        "mountstats_parse": stats_json(&parse),
        "observe_probe_ns": observe_ns.round(),
        "set_mount_state_ns": set_state_ns.round(),
        "cpu_fraction_at_15s_scrape": ((full.median_ms / 15_000.0) * 1e6).round() / 1e6,
        "threads": 1,
    });
    let body = serde_json::to_string_pretty(&report).unwrap_or_default();
    println!("{body}");
    if quick {
        // A smoke run (`cargo test --benches`) must not overwrite real results.
        return;
    }
    let dir = out_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("metrics_encode.json");
    match std::fs::write(&path, format!("{body}\n")) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
