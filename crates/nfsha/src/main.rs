//! `nfsha`: one binary for clients (agent), servers (controller), setup and drills.
//!
//! Thin by design: each subcommand lives in `commands/<name>.rs` and calls into the
//! library crates. Errors travel as `anyhow` chains and are printed once, here.

mod commands;
mod observability;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Keeps NFS-backed services running through NFS server failover.
#[derive(Debug, Parser)]
#[command(name = "nfsha", version, about, long_about = None)]
struct Cli {
    /// Config file (default /etc/nfsha/nfsha.toml).
    #[arg(long, global = true, env = "NFSHA_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = observability::LogFormat::Text)]
    log_format: observability::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the client agent: probe, classify and recover every configured NFS mount.
    Agent(commands::agent::Args),
    /// One-shot health check for monitoring systems (exit 0 OK, 1 warning, 2 critical, 3 unknown).
    Check(commands::check::Args),
    /// Show the running agent's view of every mount.
    Status(commands::status::Args),
    /// Force the recovery of one mount by the running agent.
    Recover(commands::recover::Args),
    /// Replica volumes: the active replica of each mount, and moving it back.
    Replica(commands::replica::Args),
    /// Configuration tools.
    Config(commands::config::Args),
    /// Move a host from fstab/autofs + a bash health check to a managed deployment.
    Setup(commands::setup::Args),
    /// The NFS server controller (etcd-leased active/passive).
    Server(commands::server::Args),
    /// Failover drill: access workers, timeline report.
    Drill(commands::drill::Args),
    /// Show the agent's structured events.
    Events(commands::events::Args),
    /// Internal: a hang-proof worker process (the agent re-executes itself).
    #[command(hide = true, name = "__worker")]
    Worker(commands::worker::Args),
    /// Internal: write man pages, shell completions and the agent unit (for packages).
    #[command(hide = true, name = "__generate-docs")]
    GenerateDocs(commands::generate_docs::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = commands::Global {
        config: cli.config,
        log_format: cli.log_format,
    };
    let result = match cli.command {
        Command::Worker(a) => commands::worker::run(a),
        Command::GenerateDocs(a) => commands::generate_docs::run(a),
        other => {
            observability::init(global.log_format);
            match other {
                Command::Agent(a) => commands::agent::run(&global, a),
                Command::Check(a) => commands::check::run(&global, a),
                Command::Status(a) => commands::status::run(&global, a),
                Command::Recover(a) => commands::recover::run(&global, a),
                Command::Replica(a) => commands::replica::run(&global, a),
                Command::Config(a) => commands::config::run(&global, a),
                Command::Setup(a) => commands::setup::run(&global, a),
                Command::Server(a) => commands::server::run(&global, a),
                Command::Drill(a) => commands::drill::run(&global, a),
                Command::Events(a) => commands::events::run(&global, a),
                Command::Worker(_) | Command::GenerateDocs(_) => unreachable!("handled above"),
            }
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            print_error_chain(&e);
            ExitCode::from(2)
        }
    }
}

/// Print an error and its whole cause chain once, numbered (cloud-hypervisor style).
fn print_error_chain(e: &anyhow::Error) {
    eprintln!("Error: {e}");
    for (i, cause) in e.chain().skip(1).enumerate() {
        eprintln!("  {i}: {cause}");
    }
}
