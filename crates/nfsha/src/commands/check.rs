//! `nfsha check`: one-shot health check for monitoring systems (Nagios plugin
//! conventions: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one status line).
//!
//! Asks the running agent. When no agent answers, that is CRITICAL — nothing recovers
//! the mounts then, and a local probe that said OK would contradict the agent's absence —
//! unless `--local` asks for a probe of every configured mount by this process, through
//! the same hang-proof worker processes and with the agent's own rule for "not mounted"
//! (direct mode: no NFS mount on the mountpoint; autofs mode: not even the autofs mount,
//! i.e. a bare directory).

use super::Global;
use nfsha_agent::host::{Host, topmost};
use nfsha_agent::linux::LinuxHost;
use nfsha_core::MountState;
use serde::Serialize;
use std::time::Duration;

/// Arguments of `nfsha check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of the status line.
    #[arg(long)]
    pub json: bool,
    /// An unhealthy mount is WARNING for this long (the agent is recovering it), then CRITICAL.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub critical_after: Duration,
    /// Probe the mounts from this process instead of asking the agent (for hosts without
    /// an agent, or to look while it is stopped). Without it, a stopped agent is CRITICAL.
    #[arg(long)]
    pub local: bool,
}

/// Nagios-style levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Exit 0.
    Ok = 0,
    /// Exit 1.
    Warning = 1,
    /// Exit 2.
    Critical = 2,
    /// Exit 3.
    Unknown = 3,
}

#[derive(Debug, Serialize)]
struct MountCheck {
    mountpoint: String,
    state: MountState,
    seconds_in_state: u64,
    level: Level,
    detail: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    level: Level,
    source: &'static str,
    mounts: Vec<MountCheck>,
    message: String,
}

fn level_of(state: MountState, age: Duration, critical_after: Duration) -> Level {
    match state {
        MountState::Healthy => Level::Ok,
        MountState::Unknown => Level::Warning,
        _ if age < critical_after => Level::Warning,
        _ => Level::Critical,
    }
}

/// One mount of the agent's status. A healthy mount whose write probe does not say
/// `writable` (a read-only replica, a full volume, hanging writes) is WARNING: it
/// serves reads, and nfsha never remounts it for that.
fn mount_check(m: &nfsha_agent::MountStatus, now_ms: u64, critical_after: Duration) -> MountCheck {
    let age = Duration::from_millis(now_ms.saturating_sub(m.since_ms));
    let mut level = level_of(m.state, age, critical_after);
    let mut detail = m.recovery_error.clone().or(m.last_error.clone());
    if let Some(w) = m
        .write
        .as_ref()
        .filter(|w| w.state != nfsha_core::WriteState::Writable)
        && level == Level::Ok
    {
        level = Level::Warning;
        detail = Some(match &w.detail {
            Some(d) => format!("writes: {}: {d}", w.state),
            None => format!("writes: {}", w.state),
        });
    }
    MountCheck {
        mountpoint: m.mountpoint.clone(),
        state: m.state,
        seconds_in_state: age.as_secs(),
        level,
        detail,
    }
}

fn emit(report: &Report, json: bool) -> u8 {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    } else {
        println!("{}", report.message);
    }
    report.level as u8
}

/// Run the check.
pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let config = match nfsha_config::load(&global.config_path()) {
        Ok(c) => c,
        Err(e) => {
            let r = Report {
                level: Level::Unknown,
                source: "config",
                mounts: vec![],
                message: format!(
                    "NFSHA UNKNOWN - invalid config: {}",
                    first_line(&e.to_string())
                ),
            };
            return Ok(emit(&r, args.json));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let now = nfsha_core::event::now_ms();
    let asked = if args.local {
        None
    } else {
        Some(rt.block_on(super::ask_status_async(&config)))
    };
    let (source, mut mounts) = match asked {
        Some(Err(e)) => {
            let r = Report {
                level: Level::Critical,
                source: "agent",
                mounts: vec![],
                message: format!(
                    "NFSHA CRITICAL - the nfsha agent does not answer ({}): nothing recovers the {} configured mounts; start it (systemctl start nfsha-agent) or run `nfsha check --local` to probe them from here",
                    first_line(&format!("{e:#}")),
                    config.mounts.len()
                ),
            };
            return Ok(emit(&r, args.json));
        }
        Some(Ok(st)) => (
            "agent",
            st.mounts
                .values()
                .map(|m| mount_check(m, now, args.critical_after))
                .collect::<Vec<_>>(),
        ),
        None => ("local-probe", rt.block_on(local_probe(&config))),
    };
    if source == "local-probe" {
        // Without an agent nothing will repair a broken mount: no grace period.
        for m in &mut mounts {
            if m.state != MountState::Healthy {
                m.level = Level::Critical;
            }
        }
    }
    let level = mounts.iter().map(|m| m.level).max().unwrap_or(Level::Ok);
    let bad: Vec<String> = mounts
        .iter()
        .filter(|m| m.level != Level::Ok)
        .map(|m| {
            format!(
                "{} {} for {}s{}",
                m.mountpoint,
                m.state,
                m.seconds_in_state,
                m.detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let word = match level {
        Level::Ok => "OK",
        Level::Warning => "WARNING",
        Level::Critical => "CRITICAL",
        Level::Unknown => "UNKNOWN",
    };
    let healthy = mounts
        .iter()
        .filter(|m| m.state == MountState::Healthy)
        .count();
    let message = if bad.is_empty() {
        format!(
            "NFSHA OK - {healthy}/{} mounts healthy ({source}) | healthy={healthy};;;0;{}",
            mounts.len(),
            mounts.len()
        )
    } else {
        format!(
            "NFSHA {word} - {} ({source}) | healthy={healthy};;;0;{}",
            bad.join("; "),
            mounts.len()
        )
    };
    Ok(emit(
        &Report {
            level,
            source,
            mounts,
            message,
        },
        args.json,
    ))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

async fn local_probe(config: &nfsha_config::Config) -> Vec<MountCheck> {
    let host = LinuxHost::new();
    let table = host.mount_table().unwrap_or_default();
    let mut out = Vec::new();
    for m in &config.mounts {
        // The agent's rule (supervisor `observe`): direct mode needs an NFS mount on the
        // mountpoint; autofs mode at least the autofs mount (a bare directory is not mounted,
        // and probing it would list an empty directory and say healthy).
        let top = topmost(&table, &m.mountpoint);
        let not_mounted = match m.mode {
            nfsha_config::MountMode::Direct => !top.is_some_and(|t| t.is_nfs()),
            nfsha_config::MountMode::Autofs => top.is_none(),
        };
        let (state, detail) = if not_mounted {
            let why = match m.mode {
                nfsha_config::MountMode::Direct => "nothing mounted",
                nfsha_config::MountMode::Autofs => "a bare directory: autofs is not mounted there",
            };
            (MountState::NotMounted, Some(why.to_string()))
        } else {
            let o = host.probe(&m.mountpoint, m.probe_deadline).await;
            (o.classify(), Some(nfsha_agent::recovery::describe(&o)))
        };
        out.push(MountCheck {
            mountpoint: m.mountpoint.display().to_string(),
            state,
            seconds_in_state: 0,
            level: level_of(state, Duration::ZERO, Duration::ZERO),
            detail: (state != MountState::Healthy).then_some(detail).flatten(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfsha_agent::MountStatus;
    use nfsha_agent::status::WriteStatus;
    use nfsha_core::WriteState;

    fn healthy(write: Option<WriteState>) -> MountStatus {
        MountStatus {
            mountpoint: "/misc/crr".into(),
            state: MountState::Healthy,
            since_ms: 1_000,
            server: Some("10.2.13.5".into()),
            last_error: None,
            probe_rtt_us: Some(300),
            recovering: false,
            recovery_error: None,
            recoveries: 1,
            failed_attempts: 0,
            mode: "direct".into(),
            export: Some("/crr-dest1".into()),
            replica: None,
            write: write.map(|state| WriteStatus {
                state,
                since_ms: 1_000,
                detail: Some("Create failed: EROFS".into()),
            }),
        }
    }

    #[test]
    fn a_healthy_mount_that_takes_no_writes_is_a_warning() {
        let c = mount_check(&healthy(None), 2_000, Duration::from_secs(30));
        assert_eq!((c.level, c.detail), (Level::Ok, None));
        let c = mount_check(
            &healthy(Some(WriteState::Writable)),
            2_000,
            Duration::from_secs(30),
        );
        assert_eq!(c.level, Level::Ok);
        // Read-only stays a warning however long it lasts (never CRITICAL, never a remount).
        let c = mount_check(
            &healthy(Some(WriteState::ReadOnly)),
            10_000_000,
            Duration::from_secs(30),
        );
        assert_eq!(c.level, Level::Warning);
        assert_eq!(
            c.detail.as_deref(),
            Some("writes: read-only: Create failed: EROFS")
        );
    }
}
