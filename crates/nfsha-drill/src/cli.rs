//! The drill's command line (`nfsha drill ...`, also the standalone `nfsha-drill` binary):
//! `access` runs in-process access loops and records every access as a JSON line;
//! `report` turns access records, timeline marks and the agent's events into figures
//! (`report.json`) and a timeline (`timeline.txt`, `timeline.svg`); `mark` appends a
//! named mark to a marks file.
//!
//! Failure modes: an access may block in the kernel for ever; `access` therefore
//! leaves with `std::process::exit` once its recorder has written everything, so
//! blocked worker threads never keep the process alive. Other errors are returned as
//! [`CliError`].

use crate::access::{AccessConfig, Op};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the drill command line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The access run failed.
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    /// The report failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// The marks file could not be written.
    #[error("Cannot write {path}")]
    Mark {
        /// The marks file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Arguments of the drill (`nfsha drill`).
#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    #[command(subcommand)]
    command: DrillCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DrillCommand {
    /// The operator's drill: access the paths while you fail the server over, then write
    /// the report (text, JSON, SVG) with the agent's events merged in.
    Run(RunArgs),
    /// Access paths on a fixed grid and record every access (start, latency, ok/errno).
    Access(AccessArgs),
    /// Compute error windows, success ratios and recovery times; write report.json and timelines.
    Report(ReportArgs),
    /// Append a named mark (now) to a marks file.
    Mark(MarkArgs),
}

#[derive(Debug, clap::Args)]
struct AccessArgs {
    /// Path to access (repeat for several; each gets --workers threads).
    #[arg(long = "path", required = true)]
    paths: Vec<PathBuf>,
    /// Spacing of one worker's accesses.
    #[arg(long, default_value = "100ms", value_parser = crate::parse_duration)]
    interval: Duration,
    /// Length of the run.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Worker threads per path.
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// ls | stat | statfs | read | write | held-write | ls-read.
    #[arg(long, default_value = "ls", value_parser = parse_op)]
    op: Op,
    /// Label written into every record (e.g. nfsha, seed, floor).
    #[arg(long, default_value = "drill")]
    label: String,
    /// The floor: on a failed access, `umount -l` the path and re-access at once.
    #[arg(long)]
    floor: bool,
    /// held-write: close and reopen the file after a failed write.
    #[arg(long)]
    reopen: bool,
    /// ls, ls-read, read: an empty directory counts as a failure (under a missing
    /// mount applications see the bare local mountpoint).
    #[arg(long)]
    fail_empty: bool,
    /// Output JSON-lines file.
    #[arg(long)]
    out: PathBuf,
    /// Accesses in flight at the end may finish within this before they count as blocked.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    drain: Duration,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Path to access (repeat for several mounts)
    #[arg(long = "path", required = true)]
    paths: Vec<PathBuf>,
    /// Spacing of one worker's accesses
    #[arg(long, default_value = "100ms", value_parser = crate::parse_duration)]
    interval: Duration,
    /// Length of the drill (fail the server over during it)
    #[arg(long, default_value = "120s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Concurrent workers per path
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// ls | stat | statfs | read | write (append + fsync + read-back) | ls-read
    #[arg(long, default_value = "ls", value_parser = parse_op)]
    op: Op,
    /// ls, ls-read, read: an empty directory counts as a failure (under a missing mount
    /// applications see the bare local mountpoint)
    #[arg(long)]
    fail_empty: bool,
    /// Agent event log(s) to merge into the timeline (e.g. /var/log/nfsha/events.jsonl)
    #[arg(long = "events")]
    events: Vec<PathBuf>,
    /// Exit 1 when any path's error window is longer than this many seconds (or never closes)
    #[arg(long)]
    max_window: Option<f64>,
    /// Output directory (accesses.jsonl, report.json, timeline.txt, timeline.svg)
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Access records (repeatable).
    #[arg(long = "accesses", required = true)]
    accesses: Vec<PathBuf>,
    /// Agent event logs (JSON lines; repeatable; missing files are skipped).
    #[arg(long = "events")]
    events: Vec<PathBuf>,
    /// Marks file (JSON lines `{"ts_ms":..,"name":..}`; missing is empty).
    #[arg(long)]
    marks: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct MarkArgs {
    /// Marks file to append to.
    #[arg(long)]
    marks: PathBuf,
    /// Mark name.
    name: String,
}

fn parse_op(s: &str) -> Result<Op, String> {
    Op::parse(s).ok_or_else(|| {
        format!("Unknown op {s:?} (ls, stat, statfs, read, write, held-write, ls-read)")
    })
}

/// Run the drill command; returns the exit status (`access` exits the process itself).
/// Every path's error window (ms), `None` for a window that never closed.
fn windows(rep: &crate::report::Report) -> Vec<(String, Option<f64>)> {
    rep.paths
        .iter()
        .filter(|p| p.failed > 0)
        .map(|p| {
            (
                p.path.clone(),
                if p.recovered { p.error_window_ms } else { None },
            )
        })
        .collect()
}

pub fn run(args: DrillArgs) -> Result<u8, CliError> {
    match args.command {
        DrillCommand::Run(r) => {
            std::fs::create_dir_all(&r.out).map_err(|source| CliError::Mark {
                path: r.out.clone(),
                source,
            })?;
            let accesses = r.out.join("accesses.jsonl");
            let cfg = AccessConfig {
                paths: r.paths,
                interval: r.interval,
                duration: r.duration,
                workers: r.workers,
                op: r.op,
                label: "drill".into(),
                floor: false,
                reopen: false,
                fail_empty: r.fail_empty,
                out: accesses.clone(),
                drain: Duration::from_secs(5),
            };
            eprintln!(
                "drill: accessing for {:?}; fail the server over now",
                cfg.duration
            );
            crate::access::run_access(&cfg)?;
            let (recs, marks, events) = crate::report::load_inputs(&[accesses], None, &r.events)?;
            let rep = crate::report::build_report(&recs, &marks, events);
            crate::report::write_outputs(&rep, &recs, &r.out)?;
            print!("{}", crate::report::timeline_text(&rep));
            let mut code = 0;
            if let Some(max) = r.max_window {
                for (path, w) in windows(&rep) {
                    match w {
                        Some(ms) if ms <= max * 1000.0 => {}
                        Some(ms) => {
                            println!("FAIL {path}: error window {:.2} s > {max} s", ms / 1000.0);
                            code = 1;
                        }
                        None => {
                            println!("FAIL {path}: never recovered during the drill");
                            code = 1;
                        }
                    }
                }
            }
            println!("report: {}", r.out.display());
            let _ = std::io::stdout().flush();
            // Worker threads may still be blocked in the kernel: do not wait for them.
            std::process::exit(code);
        }
        DrillCommand::Access(a) => {
            let cfg = AccessConfig {
                paths: a.paths,
                interval: a.interval,
                duration: a.duration,
                workers: a.workers,
                op: a.op,
                label: a.label,
                floor: a.floor,
                reopen: a.reopen,
                fail_empty: a.fail_empty,
                out: a.out,
                drain: a.drain,
            };
            let s = crate::access::run_access(&cfg)?;
            println!(
                "{} accesses, {} ok, {} blocked at the end",
                s.total, s.ok, s.blocked
            );
            let _ = std::io::stdout().flush();
            // Worker threads may be blocked in the kernel: do not wait for them.
            std::process::exit(0);
        }
        DrillCommand::Report(r) => {
            let (recs, marks, events) =
                crate::report::load_inputs(&r.accesses, r.marks.as_deref(), &r.events)?;
            let rep = crate::report::build_report(&recs, &marks, events);
            crate::report::write_outputs(&rep, &recs, &r.out)?;
            print!("{}", crate::report::timeline_text(&rep));
            Ok(0)
        }
        DrillCommand::Mark(m) => {
            let line = serde_json::json!({"ts_ms": nfsha_core::event::now_ms(), "name": m.name});
            let err = |source| CliError::Mark {
                path: m.marks.clone(),
                source,
            };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&m.marks)
                .map_err(err)?;
            writeln!(f, "{line}").map_err(err)?;
            Ok(0)
        }
    }
}
