//! `nfsha config`: configuration tools (`check`).
//!
//! Role: print every diagnostic of the config file (errors and warnings, one per line
//! with file:line:column) and a one-line summary. Exit status: 0 when the file is valid
//! (warnings allowed), 1 when it has errors or cannot be read.

use super::Global;
use nfsha_config::{ConfigError, Diagnostic};

/// Arguments of `nfsha config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate the config file: report every error and warning, exit 1 on errors.
    Check,
}

/// Run `nfsha config`.
pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Check => Ok(check(global)),
    }
}

fn print_all(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
}

fn check(global: &Global) -> u8 {
    let path = global.config_path();
    match nfsha_config::load_with_warnings(&path) {
        Ok((config, warnings)) => {
            print_all(&warnings);
            let servers = if config.server.is_some() {
                ", server section"
            } else {
                ""
            };
            let n = warnings.len();
            let warned = if n > 0 {
                format!(" ({n} warning{})", if n == 1 { "" } else { "s" })
            } else {
                String::new()
            };
            println!(
                "config OK: {} mount{}{servers}{warned}",
                config.mounts.len(),
                if config.mounts.len() == 1 { "" } else { "s" }
            );
            0
        }
        Err(e @ ConfigError::Read { .. }) => {
            let cause = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            eprintln!("{}: error: {e}{cause}", path.display());
            1
        }
        Err(e) => {
            print_all(e.diagnostics());
            let n = e.errors().count();
            eprintln!("config has {n} error{}", if n == 1 { "" } else { "s" });
            1
        }
    }
}
