//! From access records, marks and agent events to figures and a timeline.
//!
//! Definitions (per label and path, all workers together unless said otherwise):
//! - error window: start of a failed access that begins a failure run → end of the
//!   first successful access that started after it (the first window is the
//!   headline figure; a window never closed means "never recovered");
//! - success ratio: successful accesses / all accesses (blocked ones count as failed);
//! - first success after a mark: end of the first successful access that started at
//!   or after the mark, minus the mark;
//! - all workers OK again: for every worker that failed, the end of its first
//!   success after its last failure; the latest of those, measured from the first
//!   failure on the path (and from each mark);
//! - slowest access: the largest latency.
//!
//! Failure modes: unreadable or malformed input files give [`ReportError`] naming
//! the file and line; agent event lines that are not objects with `ts_ms` are skipped.

use crate::record::{AccessRecord, Mark};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors of report building.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An input file could not be read.
    #[error("Cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of an input file is not a valid record.
    #[error("{path}:{line}: not a valid record")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An output file could not be written.
    #[error("Cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// One failure run on a path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Start of the first failed access of the run (epoch ms).
    pub start_ms: u64,
    /// End of the first success after it (epoch ms); `None` if it never came.
    pub end_ms: Option<f64>,
    /// `end_ms - start_ms`.
    pub duration_ms: Option<f64>,
    /// Failed accesses inside the run.
    pub failed: u64,
}

/// Figures relative to one mark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AfterMark {
    /// Mark time (epoch ms).
    pub mark_ms: u64,
    /// From the mark to the end of the first success started at or after it.
    pub first_success_ms: Option<f64>,
    /// From the mark to the moment every worker that failed had succeeded again.
    pub all_workers_ok_ms: Option<f64>,
}

/// The slowest access of a path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slowest {
    /// Start (epoch ms).
    pub ts_ms: u64,
    /// Worker index.
    pub worker: u32,
    /// Latency.
    pub latency_ms: f64,
    /// Outcome.
    pub ok: bool,
    /// Still blocked at the end.
    pub blocked: bool,
}

/// Figures of one (label, path).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathReport {
    /// Record label (`nfsha`, `seed`...).
    pub label: String,
    /// Path.
    pub path: String,
    /// Distinct workers seen.
    pub workers: u32,
    /// Accesses recorded.
    pub accesses: u64,
    /// Successful accesses.
    pub ok: u64,
    /// Failed accesses (blocked included).
    pub failed: u64,
    /// Accesses still blocked at the end.
    pub blocked: u64,
    /// ok / accesses.
    pub success_ratio: f64,
    /// Start of the first failed access.
    pub first_failure_ms: Option<u64>,
    /// Duration of the first error window (`None`: no failure, or never recovered).
    pub error_window_ms: Option<f64>,
    /// Whether a success followed the last failure.
    pub recovered: bool,
    /// Every failure run.
    pub windows: Vec<Window>,
    /// From the first failure until every worker succeeded again.
    pub all_workers_ok_ms: Option<f64>,
    /// Workers whose last access failed.
    pub workers_not_recovered: u32,
    /// Figures relative to each mark, by mark name.
    pub after_marks: BTreeMap<String, AfterMark>,
    /// The slowest access.
    pub slowest: Option<Slowest>,
    /// Failure counts by error text.
    pub errors: BTreeMap<String, u64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Earliest access or mark (epoch ms): zero of the relative timeline.
    pub t0_ms: u64,
    /// Per (label, path).
    pub paths: Vec<PathReport>,
    /// The marks.
    pub marks: Vec<Mark>,
    /// Agent events (as read).
    pub events: Vec<Value>,
}

fn read_lines(path: &Path) -> Result<Vec<(usize, String)>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect())
}

fn parse_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, ReportError> {
    read_lines(path)?
        .into_iter()
        .map(|(line, l)| {
            serde_json::from_str(&l).map_err(|source| ReportError::Parse {
                path: path.to_path_buf(),
                line,
                source,
            })
        })
        .collect()
}

/// What a report is built from: access records, marks, agent events.
pub type Inputs = (Vec<AccessRecord>, Vec<Mark>, Vec<Value>);

/// Read access files, an optional marks file and optional agent event files.
///
/// A missing marks or events file is treated as empty (the agent may not have run);
/// a missing access file is an error.
pub fn load_inputs(
    accesses: &[PathBuf],
    marks: Option<&Path>,
    events: &[PathBuf],
) -> Result<Inputs, ReportError> {
    let mut recs = Vec::new();
    for a in accesses {
        recs.extend(parse_jsonl::<AccessRecord>(a)?);
    }
    let marks = match marks {
        Some(m) if m.exists() => parse_jsonl::<Mark>(m)?,
        _ => Vec::new(),
    };
    let mut evs = Vec::new();
    for e in events.iter().filter(|e| e.exists()) {
        for (_, l) in read_lines(e)? {
            if let Ok(v) = serde_json::from_str::<Value>(&l)
                && v.get("ts_ms").and_then(Value::as_u64).is_some()
            {
                evs.push(v);
            }
        }
    }
    Ok((recs, marks, evs))
}

/// Compute the figures.
pub fn build_report(records: &[AccessRecord], marks: &[Mark], events: Vec<Value>) -> Report {
    let mut groups: BTreeMap<(String, String), Vec<&AccessRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.label.clone(), r.path.clone()))
            .or_default()
            .push(r);
    }
    let paths = groups
        .into_iter()
        .map(|((label, path), mut recs)| {
            recs.sort_by(|a, b| a.ts_ms.cmp(&b.ts_ms).then(a.worker.cmp(&b.worker)));
            path_report(label, path, &recs, marks)
        })
        .collect();
    let mut marks = marks.to_vec();
    marks.sort_by_key(|m| m.ts_ms);
    let t0 = records
        .iter()
        .map(|r| r.ts_ms)
        .chain(marks.iter().map(|m| m.ts_ms))
        .min()
        .unwrap_or(0);
    Report {
        t0_ms: t0,
        paths,
        marks,
        events,
    }
}

fn path_report(label: String, path: String, recs: &[&AccessRecord], marks: &[Mark]) -> PathReport {
    let accesses = recs.len() as u64;
    let ok = recs.iter().filter(|r| r.ok).count() as u64;
    let blocked = recs.iter().filter(|r| r.blocked).count() as u64;
    let mut errors = BTreeMap::new();
    for r in recs.iter().filter(|r| !r.ok) {
        *errors
            .entry(r.error.clone().unwrap_or_else(|| "unknown".into()))
            .or_insert(0u64) += 1;
    }
    // Failure runs.
    let mut windows: Vec<Window> = Vec::new();
    let mut open: Option<Window> = None;
    for r in recs {
        match (&mut open, r.ok) {
            (None, false) => {
                open = Some(Window {
                    start_ms: r.ts_ms,
                    end_ms: None,
                    duration_ms: None,
                    failed: 1,
                });
            }
            (Some(w), false) => w.failed += 1,
            (Some(w), true) if r.ts_ms >= w.start_ms => {
                let end = r.end_ms();
                w.end_ms = Some(end);
                w.duration_ms = Some(end - w.start_ms as f64);
                windows.extend(open.take());
            }
            _ => {}
        }
    }
    let recovered = open.is_none();
    windows.extend(open);
    let first_failure_ms = windows.first().map(|w| w.start_ms);
    let error_window_ms = windows.first().and_then(|w| w.duration_ms);
    // Per worker recovery.
    let mut by_worker: BTreeMap<u32, Vec<&AccessRecord>> = BTreeMap::new();
    for r in recs {
        by_worker.entry(r.worker).or_default().push(r);
    }
    let workers = by_worker.len() as u32;
    let mut not_recovered = 0u32;
    let mut all_ok_ts: Option<f64> = None;
    for wrecs in by_worker.values() {
        let Some(last_fail) = wrecs.iter().rposition(|r| !r.ok) else {
            continue;
        };
        match wrecs[last_fail + 1..].iter().find(|r| r.ok) {
            Some(s) => all_ok_ts = Some(all_ok_ts.map_or(s.end_ms(), |t| t.max(s.end_ms()))),
            None => not_recovered += 1,
        }
    }
    let all_ok_ts = if not_recovered > 0 { None } else { all_ok_ts };
    let all_workers_ok_ms = match (all_ok_ts, first_failure_ms) {
        (Some(t), Some(f)) => Some(t - f as f64),
        _ => None,
    };
    let mut after_marks = BTreeMap::new();
    for m in marks {
        let first_success_ms = recs
            .iter()
            .find(|r| r.ok && r.ts_ms >= m.ts_ms)
            .map(|r| r.end_ms() - m.ts_ms as f64);
        after_marks.insert(
            m.name.clone(),
            AfterMark {
                mark_ms: m.ts_ms,
                first_success_ms,
                all_workers_ok_ms: all_ok_ts.map(|t| (t - m.ts_ms as f64).max(0.0)),
            },
        );
    }
    let slowest = recs
        .iter()
        .max_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms))
        .map(|r| Slowest {
            ts_ms: r.ts_ms,
            worker: r.worker,
            latency_ms: r.latency_ms,
            ok: r.ok,
            blocked: r.blocked,
        });
    PathReport {
        label,
        path,
        workers,
        accesses,
        ok,
        failed: accesses - ok,
        blocked,
        success_ratio: if accesses == 0 {
            0.0
        } else {
            ok as f64 / accesses as f64
        },
        first_failure_ms,
        error_window_ms,
        recovered,
        windows,
        all_workers_ok_ms,
        workers_not_recovered: not_recovered,
        after_marks,
        slowest,
        errors,
    }
}

/// `HH:MM:SS.mmm` (UTC) of an epoch-ms time.
pub fn clock(ms: u64) -> String {
    let day = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000
    )
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}

fn event_text(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    // Agent events carry no `source`; lab and baseline events say where they come from.
    let source = v.get("source").and_then(Value::as_str).unwrap_or("agent");
    let mut t = format!("{source} {}", s("kind"));
    for k in ["mount", "server", "step", "outcome", "reason"] {
        if !s(k).is_empty() {
            let _ = write!(t, " {k}={}", s(k));
        }
    }
    if !s("from").is_empty() || !s("to").is_empty() {
        let _ = write!(t, " {}→{}", s("from"), s("to"));
    }
    if let Some(d) = v.get("duration_ms").and_then(Value::as_u64) {
        let _ = write!(t, " ({d} ms)");
    }
    t
}

/// The human timeline: marks, agent events and each path's failure runs, in time order,
/// followed by a per-path summary.
pub fn timeline_text(rep: &Report) -> String {
    let mut lines: Vec<(f64, String)> = Vec::new();
    for m in &rep.marks {
        lines.push((m.ts_ms as f64, format!("mark {}", m.name)));
    }
    for e in &rep.events {
        if let Some(ts) = e.get("ts_ms").and_then(Value::as_u64) {
            lines.push((ts as f64, event_text(e)));
        }
    }
    for p in &rep.paths {
        for w in &p.windows {
            lines.push((
                w.start_ms as f64,
                format!("{} {}: first failed access", p.label, p.path),
            ));
            match (w.end_ms, w.duration_ms) {
                (Some(e), Some(d)) => lines.push((
                    e,
                    format!(
                        "{} {}: recovered (error window {}, {} failed accesses)",
                        p.label,
                        p.path,
                        secs(d),
                        w.failed
                    ),
                )),
                _ => lines.push((
                    w.start_ms as f64 + 0.5,
                    format!("{} {}: never recovered in this run", p.label, p.path),
                )),
            }
        }
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = String::new();
    for (ts, l) in &lines {
        let rel = (ts - rep.t0_ms as f64) / 1000.0;
        let _ = writeln!(out, "{:>9.3}s  {}  {l}", rel, clock(*ts as u64));
    }
    out.push('\n');
    for p in &rep.paths {
        let _ = writeln!(
            out,
            "{} {}: {} accesses by {} worker(s), success {:.1}%, error window {}, all workers OK again {}, slowest {}{}",
            p.label,
            p.path,
            p.accesses,
            p.workers,
            p.success_ratio * 100.0,
            p.error_window_ms.map_or_else(
                || if p.windows.is_empty() {
                    "none".into()
                } else {
                    "never closed".into()
                },
                secs
            ),
            p.all_workers_ok_ms.map_or_else(|| "-".into(), secs),
            p.slowest
                .as_ref()
                .map_or_else(|| "-".into(), |s| secs(s.latency_ms)),
            if p.blocked > 0 {
                format!(", {} still blocked at the end", p.blocked)
            } else {
                String::new()
            }
        );
        for (name, a) in &p.after_marks {
            let _ = writeln!(
                out,
                "    after {name}: first success {}, all workers OK {}",
                a.first_success_ms.map_or_else(|| "never".into(), secs),
                a.all_workers_ok_ms.map_or_else(|| "-".into(), secs)
            );
        }
    }
    out
}

/// Write `report.json`, `timeline.txt` and `timeline.svg` into `dir`.
pub fn write_outputs(
    rep: &Report,
    records: &[AccessRecord],
    dir: &Path,
) -> Result<(), ReportError> {
    let w = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ReportError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    w(
        "report.json",
        serde_json::to_string_pretty(rep).unwrap_or_default(),
    )?;
    w("timeline.txt", timeline_text(rep))?;
    w("timeline.svg", crate::svg::timeline_svg(rep, records))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(worker: u32, ts: u64, lat: f64, ok: bool) -> AccessRecord {
        AccessRecord {
            label: "x".into(),
            path: "/p".into(),
            worker,
            ts_ms: ts,
            latency_ms: lat,
            ok,
            errno: if ok { None } else { Some(116) },
            error: if ok {
                None
            } else {
                Some("Stale file handle".into())
            },
            blocked: false,
        }
    }

    fn mark(name: &str, ts: u64) -> Mark {
        Mark {
            ts_ms: ts,
            name: name.into(),
        }
    }

    #[test]
    fn error_window_runs_from_first_failure_to_end_of_first_success_after_it() {
        // OK every 100 ms, failures from 1000 to 1400, success at 1500 taking 20 ms.
        let mut recs = Vec::new();
        for i in 0..10 {
            recs.push(rec(0, i * 100, 1.0, true));
        }
        for i in 10..15 {
            recs.push(rec(0, i * 100, 1.0, false));
        }
        recs.push(rec(0, 1500, 20.0, true));
        recs.push(rec(0, 1600, 1.0, true));
        let rep = build_report(&recs, &[mark("vip-moved", 1200)], Vec::new());
        let p = &rep.paths[0];
        assert_eq!(p.first_failure_ms, Some(1000));
        assert_eq!(p.error_window_ms, Some(520.0));
        assert!(p.recovered);
        assert_eq!(p.windows.len(), 1);
        assert_eq!(p.windows[0].failed, 5);
        assert_eq!(p.accesses, 17);
        assert!((p.success_ratio - 12.0 / 17.0).abs() < 1e-9);
        let a = &p.after_marks["vip-moved"];
        assert_eq!(a.first_success_ms, Some(320.0));
        assert_eq!(p.slowest.as_ref().map(|s| s.latency_ms), Some(20.0));
        assert_eq!(p.errors.get("Stale file handle"), Some(&5));
    }

    #[test]
    fn a_run_that_never_recovers_has_no_window_duration() {
        let recs = vec![
            rec(0, 0, 1.0, true),
            rec(0, 100, 1.0, false),
            rec(0, 200, 1.0, false),
        ];
        let rep = build_report(&recs, &[mark("m", 50)], Vec::new());
        let p = &rep.paths[0];
        assert!(!p.recovered);
        assert_eq!(p.error_window_ms, None);
        assert_eq!(p.windows[0].end_ms, None);
        assert_eq!(p.workers_not_recovered, 1);
        assert_eq!(p.all_workers_ok_ms, None);
        assert_eq!(p.after_marks["m"].first_success_ms, None);
    }

    #[test]
    fn all_workers_ok_waits_for_the_slowest_worker_to_recover() {
        let recs = vec![
            rec(0, 0, 1.0, true),
            rec(1, 0, 1.0, true),
            rec(0, 1000, 1.0, false),
            rec(1, 1100, 1.0, false),
            rec(0, 1500, 10.0, true), // worker 0 back at 1510
            rec(1, 1600, 1.0, false),
            rec(1, 3000, 5.0, true), // worker 1 back at 3005
            rec(0, 3100, 1.0, true),
        ];
        let rep = build_report(&recs, &[mark("vip-moved", 1200)], Vec::new());
        let p = &rep.paths[0];
        assert_eq!(p.workers, 2);
        // The path-level window closes at the first success of any worker.
        assert_eq!(p.error_window_ms, Some(510.0));
        // Worker 1 fails again at 1600: a second window, closed at 3005.
        assert_eq!(p.windows.len(), 2);
        assert_eq!(p.windows[1].duration_ms, Some(1405.0));
        assert_eq!(p.all_workers_ok_ms, Some(2005.0));
        assert_eq!(p.after_marks["vip-moved"].all_workers_ok_ms, Some(1805.0));
    }

    #[test]
    fn blocked_accesses_count_as_failures_and_show_as_slowest() {
        let mut b = rec(0, 100, 5000.0, false);
        b.blocked = true;
        let recs = vec![rec(0, 0, 1.0, true), b];
        let rep = build_report(&recs, &[], Vec::new());
        let p = &rep.paths[0];
        assert_eq!(p.blocked, 1);
        assert_eq!(p.failed, 1);
        assert!(p.slowest.as_ref().is_some_and(|s| s.blocked));
        assert!(timeline_text(&rep).contains("still blocked"));
    }

    #[test]
    fn labels_and_paths_are_reported_separately_and_timeline_is_ordered() {
        let mut a = rec(0, 0, 1.0, false);
        a.label = "seed".into();
        let mut b = rec(0, 2000, 1.0, true);
        b.label = "seed".into();
        let recs = vec![a, b, rec(0, 500, 1.0, true)];
        let ev = serde_json::json!({"ts_ms": 1000, "kind": "recovery_started", "mount": "/p"});
        let rep = build_report(&recs, &[mark("vip-moved", 300)], vec![ev]);
        assert_eq!(rep.paths.len(), 2);
        assert_eq!(rep.t0_ms, 0);
        let t = timeline_text(&rep);
        let i_mark = t.find("mark vip-moved").expect("mark line");
        let i_ev = t.find("agent recovery_started").expect("event line");
        let i_rec = t.find("seed /p: recovered").expect("recovered line");
        assert!(i_mark < i_ev && i_ev < i_rec, "{t}");
    }

    #[test]
    fn clock_formats_utc_time_of_day() {
        assert_eq!(clock(3_723_004), "01:02:03.004");
    }
}
