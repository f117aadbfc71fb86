//! `nfsha drill`: failover drills (access loops, marks, timeline reports).
//!
//! Thin: the command line and its behaviour live in `nfsha_drill::cli`, shared with the
//! standalone `nfsha-drill` binary the lab can use while the rest of the tree is in flux.
//! Failure modes: see `nfsha_drill::cli` (`access` leaves with `std::process::exit`).

use super::Global;

/// Arguments of `nfsha drill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    drill: nfsha_drill::cli::DrillArgs,
}

/// Run `nfsha drill`.
pub fn run(_global: &Global, args: Args) -> anyhow::Result<u8> {
    Ok(nfsha_drill::cli::run(args.drill)?)
}
