//! `nfsha replica status` / `nfsha replica failback`: the active replica of each mount
//! whose servers export different paths (seed 001), and the operator's move back.
//!
//! `status` reads the state files in `[agent] state_dir` itself — they are the truth,
//! also while no agent runs — and adds the running agent's view (what is mounted, the
//! write probe) when it answers. `failback` asks the agent to make a replica active and
//! mount it (recorded before the move), and refuses unless the operator confirms with
//! `--resynced` that the replication was reversed: the replica being left holds the
//! writes made since the failover, and the target would not show them otherwise.
//!
//! A mount with `[mount.fleet]` has one active replica for the whole fleet, in etcd:
//! `status` also shows the volume's record (active replica, generation, who decided,
//! when, why, a move in progress, each live agent's view), and `failback` moves that
//! record (generation + 1, reason `failback`) after `--resynced` and the configured
//! `resync_check_command`, then waits (`--wait`, default 2 min) until every live agent
//! reports the new generation mounted. It never asks the local agent to move alone: the
//! fleet's record would pull it back.
//! Failure modes: an unreadable config or state file is reported per mount; an agent
//! that does not answer leaves `status` with the files only and makes a local
//! `failback` fail; an unreachable etcd is reported per fleet volume (status exit 1),
//! and a fleet `failback` then writes nothing.

use super::Global;
use nfsha_agent::control::{Reply, Request};
use nfsha_agent::replica::{Loaded, ReplicaStore};
use nfsha_config::Replica;
use serde::Serialize;
use std::path::{Path, PathBuf};
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
    /// Make a replica active again (e.g. the source, once replication is reversed); for a
    /// `[mount.fleet]` volume, for the whole fleet.
    Failback {
        /// The configured mountpoint, or the `[mount.fleet]` volume name.
        #[arg(value_name = "MOUNTPOINT|VOLUME")]
        mountpoint: PathBuf,
        /// The replica to make active, `host:/export` as configured (`host` alone when
        /// only one replica is on that host).
        #[arg(long, value_name = "HOST[:/EXPORT]")]
        to: String,
        /// Confirm that the replication was reversed (the target has every write made
        /// on the replica in use); without it nothing is done.
        #[arg(long)]
        resynced: bool,
        /// Fleet volumes: how long to wait for every live agent to report the new
        /// generation mounted (0: do not wait).
        #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
        wait: Duration,
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
    /// `[mount.fleet]`: the volume's record in etcd.
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<nfsha_cluster::VolumeStatus>,
    /// `[mount.fleet]`: why etcd could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet_error: Option<String>,
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
            wait,
        } => failback(&config, mountpoint, &to, resynced, wait),
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
        let (fleet, fleet_error) = match &m.fleet {
            Some(f) => match read_fleet(config, &f.volume) {
                Ok(st) => (Some(st), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            },
            None => (None, None),
        };
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
            fleet,
            fleet_error,
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
    // 1 when a mount has no active replica (nothing mounts it until an operator acts)
    // or its fleet record could not be read.
    Ok(u8::from(
        rows.iter()
            .any(|r| r.active.is_none() || r.fleet_error.is_some()),
    ))
}

fn shown(config: &nfsha_config::Config) -> String {
    config
        .source
        .as_ref()
        .map_or_else(|| "the config".to_owned(), |p| p.display().to_string())
}

/// Bound of one etcd read or operator action from the command line.
const ETCD_DEADLINE: Duration = Duration::from_secs(10);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Connect to the etcd of `[agent.cluster]`, bounded.
async fn connect_fleet(config: &nfsha_config::Config) -> anyhow::Result<nfsha_cluster::Fleet> {
    let Some(c) = &config.agent.cluster else {
        anyhow::bail!(
            "[mount.fleet] needs [agent.cluster] (etcd_endpoints) in {}",
            shown(config)
        );
    };
    let opts = nfsha_agent::fleet::options(c);
    tokio::time::timeout(ETCD_DEADLINE, nfsha_cluster::Fleet::connect(&opts))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "etcd {:?} did not answer within {ETCD_DEADLINE:?}",
                c.etcd_endpoints
            )
        })?
        .map_err(|e| anyhow::anyhow!("etcd {:?}: {e}", c.etcd_endpoints))
}

fn read_fleet(
    config: &nfsha_config::Config,
    volume: &str,
) -> anyhow::Result<nfsha_cluster::VolumeStatus> {
    runtime()?.block_on(async {
        let fleet = connect_fleet(config).await?;
        tokio::time::timeout(ETCD_DEADLINE, fleet.status(volume))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {ETCD_DEADLINE:?}"))?
            .map_err(anyhow::Error::from)
    })
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
    if let Some(f) = &r.fleet {
        s.push_str("\n  fleet ");
        s.push_str(f.render().trim_end().replace('\n', "\n  ").as_str());
    }
    if let Some(e) = &r.fleet_error {
        s.push_str(&format!("\n  fleet record NOT READ: {e}"));
    }
    s
}

fn failback(
    config: &nfsha_config::Config,
    mountpoint: PathBuf,
    to: &str,
    resynced: bool,
    wait: Duration,
) -> anyhow::Result<u8> {
    let Some(m) = config.mounts.iter().find(|m| {
        m.mountpoint == mountpoint
            || m.fleet
                .as_ref()
                .is_some_and(|f| Path::new(&f.volume) == mountpoint)
    }) else {
        anyhow::bail!(
            "{} is neither a configured mountpoint nor a [mount.fleet] volume in {}",
            mountpoint.display(),
            shown(config)
        );
    };
    if let Some(f) = &m.fleet {
        return fleet_failback(config, m, f, to, resynced, wait);
    }
    let target: Replica = to.parse().map_err(|e| anyhow::anyhow!("--to: {e}"))?;
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
    let rt = runtime()?;
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

/// `failback` of a `[mount.fleet]` volume: the record in etcd moves; every agent follows.
fn fleet_failback(
    config: &nfsha_config::Config,
    m: &nfsha_config::MountConfig,
    f: &nfsha_config::FleetConfig,
    to: &str,
    resynced: bool,
    wait: Duration,
) -> anyhow::Result<u8> {
    if !resynced {
        anyhow::bail!(
            "Not done: confirm with --resynced that the replication was reversed, so that {to} has every write made since the failover (otherwise those files vanish from every client's view)"
        );
    }
    let by = format!(
        "{}@{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "operator".into()),
        nfsha_agent::fleet::agent_name()
    );
    runtime()?.block_on(async {
        let fleet = connect_fleet(config).await?;
        // The resync check is bounded by its own timeout; the rest by ETCD_DEADLINE.
        let rec = tokio::time::timeout(
            ETCD_DEADLINE + f.resync_check_timeout,
            nfsha_agent::fleet::operator_failback(&fleet, m, f, to, resynced, &by),
        )
        .await
        .map_err(|_| anyhow::anyhow!("etcd did not answer in time; nothing was moved"))?
        .map_err(|e| anyhow::anyhow!("volume {}: {e}", f.volume))?;
        println!(
            "volume {}: active {} generation {} (failback by {by}); the agents follow",
            f.volume, rec.replica, rec.generation
        );
        if let Some(r) = &rec.promote {
            println!("  resync check: {r}");
        }
        if wait.is_zero() {
            return Ok(0);
        }
        let followed = nfsha_agent::fleet::wait_followed(
            &fleet,
            &f.volume,
            rec.generation,
            &rec.replica,
            wait,
        )
        .await?;
        for v in &followed.views {
            let on = v
                .mounted
                .as_ref()
                .map_or_else(|| "nothing".to_owned(), ToString::to_string);
            println!("  {}: on {on}, generation {}", v.agent, v.generation);
        }
        if followed.all {
            println!(
                "every live agent ({}) is on {}",
                followed.views.len(),
                rec.replica
            );
            Ok(0)
        } else if followed.views.is_empty() {
            println!("no live agent view: nobody confirmed the move (are the agents running?)");
            Ok(1)
        } else {
            println!(
                "NOT every agent followed within {}: see nfsha replica status",
                humantime::format_duration(wait)
            );
            Ok(1)
        }
    })
}
