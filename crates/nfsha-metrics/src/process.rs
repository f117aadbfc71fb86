//! The standard `process_*` metrics of the agent's own process (the names every Prometheus
//! client library exports, so the usual dashboards and alerts work): CPU seconds, resident
//! and virtual memory, open and maximum descriptors, start time, threads.
//!
//! Role: a [`Collector`] read at scrape time from `/proc/self/stat`, `/proc/self/fd` and
//! `/proc/self/limits` — local procfs, never an NFS path. Failure modes: a file that cannot
//! be read or parsed leaves its series out of that scrape (logged at debug), never an
//! error for the whole scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fmt;
use std::path::PathBuf;

/// What `/proc/<pid>/stat` and friends say, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessSample {
    /// User + system CPU seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<f64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<f64>,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: Option<f64>,
    /// Threads.
    pub threads: Option<f64>,
    /// Open descriptors.
    pub open_fds: Option<f64>,
    /// Soft limit of open descriptors.
    pub max_fds: Option<f64>,
}

/// Parse `/proc/<pid>/stat` (fields after the `(comm)`, which may hold spaces and
/// parentheses), with the clock tick, the page size and the boot time (seconds since the
/// epoch, from `/proc/stat` `btime`).
pub fn parse_stat(text: &str, tick: f64, page: f64, btime: Option<f64>) -> ProcessSample {
    let mut s = ProcessSample::default();
    let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) else {
        return s;
    };
    // rest starts with " state ppid ...": field 3 of stat(5) is index 0 here.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // stat(5): utime 14, stime 15, num_threads 20, starttime 22, vsize 23, rss 24.
    if let (Some(u), Some(st)) = (num(14 - 3), num(15 - 3)) {
        s.cpu_seconds = Some((u + st) / tick);
    }
    s.threads = num(20 - 3);
    s.start_time_seconds = match (num(22 - 3), btime) {
        (Some(start), Some(b)) => Some(b + start / tick),
        _ => None,
    };
    s.virtual_bytes = num(23 - 3);
    s.resident_bytes = num(24 - 3).map(|p| p * page);
    s
}

/// `Max open files` soft limit from `/proc/<pid>/limits`.
pub fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(f64::INFINITY),
        n => n.parse().ok(),
    }
}

/// `btime` of `/proc/stat`.
pub fn parse_btime(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the sample of one process from procfs.
#[derive(Debug, Clone)]
pub struct ProcessCollector {
    proc_dir: PathBuf,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector {
            proc_dir: "/proc/self".into(),
        }
    }
}

impl ProcessCollector {
    /// The sample now.
    pub fn sample(&self) -> ProcessSample {
        // SAFETY: sysconf reads a constant of the C library; no pointers are involved.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let tick = if tick > 0 { tick as f64 } else { 100.0 };
        let page = if page > 0 { page as f64 } else { 4096.0 };
        let read = |name: &str| {
            std::fs::read_to_string(self.proc_dir.join(name))
                .map_err(|e| tracing::debug!(file = name, error = %e, "process metrics"))
                .ok()
        };
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(parse_btime);
        let mut s = read("stat")
            .map(|t| parse_stat(&t, tick, page, btime))
            .unwrap_or_default();
        s.max_fds = read("limits").as_deref().and_then(parse_max_fds);
        s.open_fds = std::fs::read_dir(self.proc_dir.join("fd"))
            .ok()
            .map(|d| d.count() as f64);
        s
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = self.sample();
        if let Some(v) = s.cpu_seconds {
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(v).encode(e)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                s.threads,
            ),
        ];
        for (name, help, v) in gauges {
            if let Some(v) = v {
                let e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(v).encode(e)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_command_holding_spaces_and_parentheses_parses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss
        let t = "42 (nfsha (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2500 18446744073709551615";
        let s = parse_stat(t, 100.0, 4096.0, Some(1_700_000_000.0));
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.threads, Some(7.0));
        assert_eq!(s.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(s.virtual_bytes, Some(123_456_789.0));
        assert_eq!(s.resident_bytes, Some(2500.0 * 4096.0));
        assert_eq!(
            parse_stat("garbage", 100.0, 4096.0, None),
            ProcessSample::default()
        );
    }

    #[test]
    fn limits_and_btime_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            4096                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(4096.0));
        assert_eq!(parse_btime("cpu 1 2 3\nbtime 1700000000\n"), Some(1.7e9));
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    #[test]
    fn this_process_has_a_sample() {
        let s = ProcessCollector::default().sample();
        assert!(s.cpu_seconds.is_some() && s.resident_bytes.unwrap() > 0.0);
        assert!(s.open_fds.unwrap() >= 3.0 && s.max_fds.unwrap() >= s.open_fds.unwrap());
        assert!(s.start_time_seconds.unwrap() > 1.0e9);
    }
}
