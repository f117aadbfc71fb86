//! An SVG timeline chart: one lane per (label, path, worker) — or per (label, path)
//! when there are too many workers — successful accesses green, failures red,
//! blocked ones dark red, marks as vertical lines, agent events as ticks on top.
//!
//! Failure modes: none; an empty input gives an empty chart.

use crate::record::AccessRecord;
use crate::report::Report;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

const MAX_LANES: usize = 40;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Render the chart.
pub fn timeline_svg(rep: &Report, records: &[AccessRecord]) -> String {
    let per_worker = {
        let mut lanes = std::collections::BTreeSet::new();
        for r in records {
            lanes.insert((r.label.as_str(), r.path.as_str(), r.worker));
        }
        lanes.len() <= MAX_LANES
    };
    let mut lanes: BTreeMap<(String, String, u32), Vec<&AccessRecord>> = BTreeMap::new();
    for r in records {
        let w = if per_worker { r.worker } else { u32::MAX };
        lanes
            .entry((r.label.clone(), r.path.clone(), w))
            .or_default()
            .push(r);
    }
    let t0 = rep.t0_ms as f64;
    let t1 = records
        .iter()
        .map(AccessRecord::end_ms)
        .chain(rep.marks.iter().map(|m| m.ts_ms as f64))
        .fold(t0 + 1000.0, f64::max);
    let (left, width, lane_h, top) = (260.0, 1000.0, 14.0, 40.0);
    let x = |ts: f64| left + (ts - t0) / (t1 - t0) * width;
    let mark_rows_max = rep.marks.len().max(2) as f64;
    let height = top + lane_h * lanes.len() as f64 + 20.0 + 11.0 * mark_rows_max;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="monospace" font-size="10">"#,
        left + width + 120.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, ((label, path, w), recs)) in lanes.iter().enumerate() {
        let y = top + lane_h * i as f64;
        let name = if *w == u32::MAX {
            format!("{label} {path}")
        } else {
            format!("{label} {path} w{w}")
        };
        let _ = writeln!(s, r#"<text x="4" y="{}">{}</text>"#, y + 10.0, esc(&name));
        for r in recs {
            let colour = match (r.ok, r.blocked) {
                (true, _) => "#2a2",
                (false, false) => "#d22",
                (false, true) => "#700",
            };
            let x0 = x(r.ts_ms as f64);
            let w = (x(r.end_ms()) - x0).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{colour}"/>"#,
                y + 1.0,
                lane_h - 2.0
            );
        }
    }
    let bottom = top + lane_h * lanes.len() as f64;
    // Mark labels go in the first row where they do not overlap the previous label
    // (marks seconds apart would otherwise print on top of each other).
    let mut row_ends: Vec<f64> = Vec::new();
    for m in &rep.marks {
        let mx = x(m.ts_ms as f64);
        let text_w = 6.0 * m.name.chars().count() as f64 + 4.0;
        let row = match row_ends.iter().position(|end| *end <= mx) {
            Some(r) => r,
            None => {
                row_ends.push(f64::MIN);
                row_ends.len() - 1
            }
        };
        row_ends[row] = mx + 2.0 + text_w;
        let _ = writeln!(
            s,
            r##"<line x1="{mx:.1}" y1="20" x2="{mx:.1}" y2="{bottom}" stroke="#00c" stroke-dasharray="3,2"/><text x="{:.1}" y="{}" fill="#00c">{}</text>"##,
            mx + 2.0,
            bottom + 12.0 + 11.0 * row as f64,
            esc(&m.name)
        );
    }
    for e in &rep.events {
        if let Some(ts) = e.get("ts_ms").and_then(Value::as_u64) {
            let ex = x(ts as f64);
            let kind = e.get("kind").and_then(Value::as_str).unwrap_or("");
            let _ = writeln!(
                s,
                r##"<line x1="{ex:.1}" y1="22" x2="{ex:.1}" y2="34" stroke="#c60"><title>{}</title></line>"##,
                esc(kind)
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="12">0 s … {:.1} s  (green ok, red failed, dark red blocked, blue marks, orange agent events)</text>"#,
        (t1 - t0) / 1000.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Mark;
    use crate::report::build_report;

    #[test]
    fn failures_are_red_and_marks_are_drawn() {
        let recs = vec![
            AccessRecord {
                label: "nfsha".into(),
                path: "/p".into(),
                worker: 0,
                ts_ms: 0,
                latency_ms: 5.0,
                ok: true,
                errno: None,
                error: None,
                blocked: false,
            },
            AccessRecord {
                label: "nfsha".into(),
                path: "/p".into(),
                worker: 0,
                ts_ms: 100,
                latency_ms: 5.0,
                ok: false,
                errno: Some(116),
                error: None,
                blocked: false,
            },
        ];
        let marks = vec![Mark {
            ts_ms: 50,
            name: "vip-moved".into(),
        }];
        let rep = build_report(&recs, &marks, Vec::new());
        let svg = timeline_svg(&rep, &recs);
        assert!(svg.contains("#d22"));
        assert!(svg.contains("#2a2"));
        assert!(svg.contains("vip-moved"));
        assert!(svg.starts_with("<svg"));
    }
}
