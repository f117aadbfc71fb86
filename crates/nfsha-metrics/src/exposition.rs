//! The two exposition formats of `/metrics`, chosen by the scraper's `Accept` header:
//! OpenMetrics 1.0 (what `prometheus-client` encodes, and what Prometheus asks for first)
//! and the classic Prometheus text format 0.0.4 (what `curl`, `promtool check metrics`,
//! older scrapers and node-exporter's textfile tooling read).
//!
//! Role: [`to_classic`] rewrites OpenMetrics text into the classic format: a counter's
//! family `x` becomes `x_total` in `# HELP`/`# TYPE` (its samples already carry the
//! suffix), an `info` family becomes a gauge `x_info`, `unknown` becomes `untyped`, and
//! `# UNIT` and `# EOF` lines go. [`wants_openmetrics`] reads the header. Failure modes:
//! none — unknown lines pass through unchanged.

/// Content type of the classic text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus sends
/// `application/openmetrics-text;version=1.0.0,…;q=0.5,text/plain;version=0.0.4;q=0.4,…`);
/// anything else, or no header, gets the classic format.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut it = part.split(';');
            let media = it.next().unwrap_or("").trim();
            let q = it
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
        })
    })
}

/// OpenMetrics text to the classic text format (see the module documentation).
pub fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, String)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            // OpenMetrics escapes `"` in help text; the classic format does not.
            help = Some((name, text.replace("\\\"", "\"")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                "gaugehistogram" => (name.to_owned(), "histogram"),
                "stateset" => (name.to_owned(), "gauge"),
                other => (name.to_owned(), other),
            };
            if let Some((h_name, text)) = help.take()
                && h_name == rest.split(' ').next().unwrap_or("")
            {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some((name, text)) = help.take() {
            // A HELP without TYPE: keep it as it was.
            out.push_str(&format!("# HELP {name} {text}\n"));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_infos_units_and_eof_are_rewritten() {
        let om = "# HELP nfsha_probes Probes by \\\"result\\\".\n# TYPE nfsha_probes counter\nnfsha_probes_total{result=\"ok\"} 3\n# HELP build Build.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n# UNIT d_seconds seconds\nd_seconds_sum 1.5\nd_seconds_count 2\nd_seconds_bucket{le=\"+Inf\"} 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        let c = to_classic(om);
        assert_eq!(
            c,
            "# HELP nfsha_probes_total Probes by \"result\".\n# TYPE nfsha_probes_total counter\nnfsha_probes_total{result=\"ok\"} 3\n# HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n# HELP d_seconds Durations.\n# TYPE d_seconds histogram\nd_seconds_sum 1.5\nd_seconds_count 2\nd_seconds_bucket{le=\"+Inf\"} 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn accept_headers_choose_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(None), "curl sends */*");
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }
}
