//! `nfsha-drill`: the drill's command line on its own (same as `nfsha drill`), so the lab
//! can measure baselines with a binary that does not need the agent to build.
//! Failure modes: errors are printed with their cause chain; exit status 2.

use clap::Parser;
use std::process::ExitCode;

/// Failover drill: access loops, marks, timeline reports.
#[derive(Debug, Parser)]
#[command(name = "nfsha-drill", version)]
struct Cli {
    #[command(flatten)]
    drill: nfsha_drill::cli::DrillArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match nfsha_drill::cli::run(cli.drill) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", nfsha_core::error_report(&e));
            ExitCode::from(2)
        }
    }
}
