//! `nfsha recover MOUNTPOINT [--replica HOST:/EXPORT]`: force the running agent to
//! recover one mount now; for replica volumes, optionally onto a named replica, which
//! becomes the active one (recorded before it is moved in).

use super::Global;
use nfsha_agent::control::{Reply, Request};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `nfsha recover`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configured mountpoint to recover.
    pub mountpoint: PathBuf,
    /// Replica volumes: make this replica (`host:/export`, as configured) the active
    /// one and mount it — after a lost state file (`no-active-replica`), or to move
    /// back to the source once replication has been reversed.
    #[arg(long, value_name = "HOST:/EXPORT")]
    pub replica: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Ask the agent, wait for the report, print it; exit 0 only if the mount recovered.
pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let config = nfsha_config::load(&global.config_path())?;
    if let Some(r) = &args.replica {
        r.parse::<nfsha_config::Replica>()
            .map_err(|e| anyhow::anyhow!("--replica: {e}"))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bound = config.agent.mount_timeout
        + config.agent.umount_timeout * 8
        + config.agent.rpc_timeout
        + Duration::from_secs(120);
    let reply = rt.block_on(super::status::request(
        &config,
        Request::Recover {
            mountpoint: args.mountpoint.clone(),
            replica: args.replica.clone(),
        },
        bound,
    ))?;
    match reply {
        Reply::Recovered(r) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for s in &r.steps {
                    println!(
                        "{:<14} {:<7} {:>6} ms  {}",
                        s.step,
                        s.outcome,
                        s.duration_ms,
                        s.detail.as_deref().unwrap_or("")
                    );
                }
                match &r.error {
                    None => println!(
                        "{} recovered from {} in {} ms",
                        r.mountpoint,
                        r.server.as_deref().unwrap_or("?"),
                        r.duration_ms
                    ),
                    Some(e) => println!("{} NOT recovered: {e}", r.mountpoint),
                }
            }
            Ok(if r.ok { 0 } else { 1 })
        }
        Reply::Error { message } => anyhow::bail!("The agent refused: {message}"),
        other => anyhow::bail!("Unexpected reply from the agent: {other:?}"),
    }
}
