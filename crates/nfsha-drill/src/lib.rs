//! nfsha-drill: the measuring side of failover drills and of the NFS lab.
//!
//! Role: [`access`] runs in-process access loops against paths (one thread per
//! path and worker, every access recorded with its start time, latency and errno);
//! [`report`] turns those records plus timeline marks and agent events into the
//! figures the lab reports (error window, success ratio, time to first success
//! after a mark, time until every worker succeeds again) and a text/SVG timeline.
//!
//! Failure modes: an access may block in the kernel forever (hung NFS server);
//! the recorder never waits on a worker, records such accesses as `blocked` at
//! the end, and the caller is expected to leave with `std::process::exit`.

pub mod access;
pub mod cli;
pub mod record;
pub mod report;
pub mod svg;

pub use access::{AccessConfig, AccessError, AccessSummary, Op, run_access};
pub use record::{AccessRecord, Mark};
pub use report::{PathReport, Report, ReportError, build_report, load_inputs, write_outputs};

/// Parse a duration such as `100ms`, `60s`, `2m` (humantime syntax), for command lines.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("Invalid duration {s:?}: {e}"))
}
