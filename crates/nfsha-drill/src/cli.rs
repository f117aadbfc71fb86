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
    /// Output JSON-lines file.
    #[arg(long)]
    out: PathBuf,
    /// Accesses in flight at the end may finish within this before they count as blocked.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    drain: Duration,
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
pub fn run(args: DrillArgs) -> Result<u8, CliError> {
    match args.command {
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
