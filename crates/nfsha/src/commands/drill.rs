//! `nfsha drill`: failover drills. `access` runs in-process access loops and records
//! every access as a JSON line; `report` turns access records, timeline marks and the
//! agent's events into figures (`report.json`) and a timeline (`timeline.txt`, `.svg`);
//! `mark` appends a named mark to a marks file.
//!
//! Failure modes: an access may block in the kernel for ever; `access` therefore
//! leaves with `std::process::exit` once its recorder has written everything, so
//! blocked worker threads never keep the process alive.

use super::Global;
use anyhow::Context;
use nfsha_drill::{AccessConfig, Op};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `nfsha drill`.
#[derive(Debug, clap::Args)]
pub struct Args {
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
    #[arg(long, default_value = "100ms", value_parser = nfsha_drill::parse_duration)]
    interval: Duration,
    /// Length of the run.
    #[arg(long, default_value = "60s", value_parser = nfsha_drill::parse_duration)]
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

/// Run `nfsha drill`.
pub fn run(_global: &Global, args: Args) -> anyhow::Result<u8> {
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
            };
            let s = nfsha_drill::run_access(&cfg)?;
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
                nfsha_drill::load_inputs(&r.accesses, r.marks.as_deref(), &r.events)?;
            let rep = nfsha_drill::build_report(&recs, &marks, events);
            nfsha_drill::write_outputs(&rep, &recs, &r.out)?;
            print!("{}", nfsha_drill::report::timeline_text(&rep));
            Ok(0)
        }
        DrillCommand::Mark(m) => {
            let line = serde_json::json!({"ts_ms": nfsha_core::event::now_ms(), "name": m.name});
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&m.marks)
                .with_context(|| format!("Cannot open {}", m.marks.display()))?;
            writeln!(f, "{line}").with_context(|| format!("Cannot write {}", m.marks.display()))?;
            Ok(0)
        }
    }
}
