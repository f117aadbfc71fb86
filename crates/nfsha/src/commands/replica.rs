//! `nfsha replica status` / `nfsha replica failback`: the active replica of each mount
//! whose servers export different paths (seed 001), and the operator's move back.
//!
//! `status` reads the state files in `[agent] state_dir` itself — they are the truth,
//! also while no agent runs — and adds the running agent's view (what is mounted, the
//! write probe) when it answers. `failback` asks the agent to make a replica active and
//! mount it (recorded before the move), and refuses unless the operator confirms with
//! `--resynced` that the replication was reversed: the replica being left holds the
//! writes made since the failover, and the target would not show them otherwise.
//! Failure modes: an unreadable config or state file is reported per mount; an agent
//! that does not answer leaves `status` with the files only and makes `failback` fail.

use super::Global;
use nfsha_agent::control::{Reply, Request};
use nfsha_agent::replica::{Loaded, ReplicaStore};
use nfsha_config::Replica;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `nfsha replica`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// The active replica of every mount with replica volumes, from the state files.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a replica active again (e.g. the source, once replication is reversed).
    Failback {
        /// The configured mountpoint.
        mountpoint: PathBuf,
        /// The replica to make active, `host:/export` as configured.
        #[arg(long, value_name = "HOST:/EXPORT")]
        to: String,
        /// Confirm that the replication was reversed (the target has every write made
        /// on the replica in use); without it nothing is done.
        #[arg(long)]
        resynced: bool,
    },
}

#[derive(Debug, Serialize)]
struct Row {
    mountpoint: String,
    replicas: Vec<String>,
    active: Option<String>,
    generation: Option<u64>,
    reason: Option<String>,
    problem: Option<String>,
    mounted: Option<String>,
    write: Option<String>,
}

/// Run `nfsha replica …`.
pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let config = nfsha_config::load(&global.config_path())?;
    match args.cmd {
        Cmd::Status { json } => status(&config, json),
        Cmd::Failback {
            mountpoint,
            to,
            resynced,
        } => failback(&config, mountpoint, &to, resynced),
    }
}

fn status(config: &nfsha_config::Config, json: bool) -> anyhow::Result<u8> {
    let store = ReplicaStore::new(&config.agent.state_dir);
    let agent = super::ask_status(config).ok();
    let mut rows = Vec::new();
    for m in config.mounts.iter().filter(|m| m.has_replicas()) {
        let (mut active, mut generation, mut reason, mut problem) = (None, None, None, None);
        match store.load(&m.mountpoint) {
            Loaded::Found(r) => {
                active = Some(r.replica().to_string());
                generation = Some(r.generation);
                reason = Some(r.reason);
            }
            Loaded::Missing => problem = Some("no state file: no active replica".to_string()),
            Loaded::Corrupt(why) => problem = Some(why),
        }
        let seen = agent
            .as_ref()
            .and_then(|a| a.mounts.get(&m.mountpoint.display().to_string()));
        rows.push(Row {
            mountpoint: m.mountpoint.display().to_string(),
            replicas: m.replicas().iter().map(ToString::to_string).collect(),
            active,
            generation,
            reason,
            problem,
            mounted: seen.and_then(|s| {
                Some(
                    Replica {
                        host: s.server.clone()?,
                        export: s.export.clone()?,
                    }
                    .to_string(),
                )
            }),
            write: seen.and_then(|s| s.write.as_ref().map(|w| w.state.to_string())),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no mount has replica volumes (servers exporting different paths)");
    } else {
        for r in &rows {
            println!("{}", render(r));
        }
        if agent.is_none() {
            println!("(the agent did not answer: state files only)");
        }
    }
    // 1 when a mount has no active replica: nothing mounts it until an operator acts.
    Ok(u8::from(rows.iter().any(|r| r.active.is_none())))
}

fn render(r: &Row) -> String {
    let mut s = format!("{}  replicas {}", r.mountpoint, r.replicas.join(" "));
    match (&r.active, r.generation) {
        (Some(a), Some(g)) => s.push_str(&format!(
            "\n  active {a} (generation {g}: {})",
            r.reason.as_deref().unwrap_or("-")
        )),
        _ => s.push_str(&format!(
            "\n  NO ACTIVE REPLICA: nfsha replica failback {} --to HOST:/EXPORT --resynced",
            r.mountpoint
        )),
    }
    if let Some(p) = &r.problem {
        s.push_str(&format!("\n  state file: {p}"));
    }
    if let Some(m) = &r.mounted {
        s.push_str(&format!("\n  mounted {m}"));
    }
    if let Some(w) = &r.write {
        s.push_str(&format!(", writes: {w}"));
    }
    s
}

fn failback(
    config: &nfsha_config::Config,
    mountpoint: PathBuf,
    to: &str,
    resynced: bool,
) -> anyhow::Result<u8> {
    let target: Replica = to.parse().map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let Some(m) = config.mounts.iter().find(|m| m.mountpoint == mountpoint) else {
        anyhow::bail!("{} is not a configured mount", mountpoint.display());
    };
    if m.server_for(&target).is_none() {
        anyhow::bail!(
            "{target} is not a replica of {} (its replicas: {})",
            mountpoint.display(),
            m.replicas()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !resynced {
        anyhow::bail!(
            "Not done: confirm with --resynced that the replication was reversed, so that {target} has every write made since the failover (otherwise those files vanish from the clients' view)"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bound = config.agent.mount_timeout
        + config.agent.umount_timeout * 8
        + config.agent.rpc_timeout
        + Duration::from_secs(120);
    let reply = rt.block_on(super::status::request(
        config,
        Request::Recover {
            mountpoint: mountpoint.clone(),
            replica: Some(target.to_string()),
        },
        bound,
    ))?;
    match reply {
        Reply::Recovered(r) if r.ok => {
            println!("{} now on {target}", r.mountpoint);
            Ok(0)
        }
        Reply::Recovered(r) => {
            println!(
                "{} NOT moved: {}",
                r.mountpoint,
                r.error.as_deref().unwrap_or("?")
            );
            Ok(1)
        }
        Reply::Error { message } => anyhow::bail!("The agent refused: {message}"),
        other => anyhow::bail!("Unexpected reply from the agent: {other:?}"),
    }
}
