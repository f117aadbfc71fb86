//! `nfsha status`: the running agent's view of every mount, as a table or JSON.

use super::Global;
use nfsha_agent::control::{self, Reply, Request};
use std::time::Duration;

/// Arguments of `nfsha status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Ask the agent and print.
pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let config = super::agent_config(global)?;
    let status = super::ask_status(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(0);
    }
    print!("{}", render_table(&status));
    Ok(0)
}

fn age(since_ms: u64) -> String {
    let now = nfsha_core::event::now_ms();
    let s = now.saturating_sub(since_ms) / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The status table (`nfsha status`).
pub fn render_table(st: &nfsha_agent::AgentStatus) -> String {
    let mut rows = vec![[
        "MOUNT".to_string(),
        "STATE".into(),
        "SERVER".into(),
        "SINCE".into(),
        "PROBE RTT".into(),
        "LAST ERROR".into(),
    ]];
    for m in st.mounts.values() {
        let mut state = if m.recovering {
            format!("{} (recovering)", m.state)
        } else {
            m.state.to_string()
        };
        // The write probe's result, when it is not `writable` (a state, not an error).
        if let Some(w) = m
            .write
            .as_ref()
            .filter(|w| w.state != nfsha_core::WriteState::Writable)
        {
            state.push_str(&format!(", {}", w.state));
        }
        // Replica volumes: the server is the replica, `host:export`.
        let server = match (&m.server, &m.export, &m.replica) {
            (Some(h), Some(e), Some(_)) => nfsha_config::Replica {
                host: h.clone(),
                export: e.clone(),
            }
            .to_string(),
            (Some(h), _, _) => h.clone(),
            _ => "-".into(),
        };
        rows.push([
            m.mountpoint.clone(),
            state,
            server,
            age(m.since_ms),
            m.probe_rtt_us
                .map(|us| format!("{:.1}ms", us as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
            m.recovery_error
                .clone()
                .or_else(|| m.last_error.clone())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            if i == 5 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    }
    let replicas: Vec<_> = st
        .mounts
        .values()
        .filter_map(|m| Some((m, m.replica.as_ref()?)))
        .collect();
    if !replicas.is_empty() {
        out.push('\n');
        for (m, r) in replicas {
            match (&r.active, r.generation) {
                (Some(a), Some(g)) => out.push_str(&format!(
                    "replica {} active {a} generation {g} ({})\n",
                    m.mountpoint,
                    r.reason.as_deref().unwrap_or("-")
                )),
                _ => out.push_str(&format!(
                    "replica {} NO ACTIVE REPLICA: name one with `nfsha recover {} --replica HOST:EXPORT`\n",
                    m.mountpoint, m.mountpoint
                )),
            }
            if let Some(p) = &r.problem {
                out.push_str(&format!("replica {} state file: {p}\n", m.mountpoint));
            }
        }
    }
    if !st.servers.is_empty() {
        out.push('\n');
        for s in st.servers.values() {
            out.push_str(&format!(
                "server {:<20} {:<12} {}\n",
                s.host,
                if s.reachable {
                    "reachable"
                } else {
                    "UNREACHABLE"
                },
                s.rtt_us
                    .map(|us| format!("rtt {:.1}ms", us as f64 / 1000.0))
                    .or_else(|| s.error.clone())
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(e) = &st.reload_error {
        out.push_str(&format!("\nlast config reload was refused:\n{e}\n"));
    }
    out
}

pub(super) async fn request(
    config: &nfsha_config::Config,
    req: Request,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    Ok(control::request(&config.agent.control_socket, &req, timeout).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfsha_agent::status::{ReplicaStatus, WriteStatus};
    use nfsha_agent::{AgentStatus, MountStatus};
    use nfsha_core::{MountState, WriteState};

    fn mount(replica: Option<ReplicaStatus>, write: Option<WriteState>) -> MountStatus {
        MountStatus {
            mountpoint: "/misc/crr".into(),
            state: MountState::Healthy,
            since_ms: 0,
            server: Some("10.2.13.5".into()),
            last_error: None,
            probe_rtt_us: Some(1500),
            recovering: false,
            recovery_error: None,
            recoveries: 1,
            failed_attempts: 0,
            mode: "direct".into(),
            export: Some("/crr-dest1".into()),
            replica,
            write: write.map(|state| WriteStatus {
                state,
                since_ms: 0,
                detail: None,
            }),
        }
    }

    fn table(m: MountStatus) -> String {
        let mut st = AgentStatus::default();
        st.mounts.insert(m.mountpoint.clone(), m);
        render_table(&st)
    }

    #[test]
    fn replica_volumes_show_the_replica_its_generation_and_the_write_state() {
        let t = table(mount(
            Some(ReplicaStatus {
                active: Some("10.2.13.5:/crr-dest1".into()),
                generation: Some(2),
                reason: Some("failover: 10.1.13.5:/crr-site1 does not answer".into()),
                problem: None,
            }),
            Some(WriteState::ReadOnly),
        ));
        assert!(t.contains("healthy, read-only"), "{t}");
        assert!(t.contains("10.2.13.5:/crr-dest1  "), "{t}");
        assert!(
            t.contains("replica /misc/crr active 10.2.13.5:/crr-dest1 generation 2 (failover:"),
            "{t}"
        );
        let t = table(mount(
            Some(ReplicaStatus {
                active: None,
                generation: None,
                reason: None,
                problem: Some("state file corrupt: x".into()),
            }),
            Some(WriteState::Writable),
        ));
        assert!(t.contains("NO ACTIVE REPLICA"), "{t}");
        assert!(t.contains("state file: state file corrupt: x"), "{t}");
        assert!(!t.contains("writable"), "writable is not news: {t}");
        // One export path: the host only, as before.
        let t = table(mount(None, None));
        assert!(!t.contains("/crr-dest1"), "{t}");
        assert!(!t.contains("replica"), "{t}");
    }
}
