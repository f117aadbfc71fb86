//! `nfsha events`: print the agent's structured events from its JSON-lines event log, or
//! from the running agent's memory.
//!
//! The file is the config's `[agent] event_log` (or `--file`). With no file configured,
//! the running agent is asked over the control socket for its in-memory ring (the last
//! events since it started, see `nfsha_metrics::eventlog`). Output is a table, or with
//! `--json` the JSON lines themselves (one event per line, as stored), oldest first.
//! Failure modes: no event log configured and no agent answering, or an unreadable file,
//! is an error naming what to do;
//! a torn last line (the agent writing or dying mid-line) is ignored, and other undecodable
//! lines are skipped with a warning on stderr.

use super::Global;
use anyhow::Context;
use nfsha_core::Event;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Arguments of `nfsha events`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events newer than this long ago (`10m`, `2h`, `1d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Print JSON lines (as stored) instead of a table.
    #[arg(long)]
    json: bool,
    /// Read this event-log file instead of the config's `[agent] event_log`.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// Run `nfsha events`.
pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let events = match args.file {
        Some(p) => read_events(&p, args.since)?,
        None => {
            let config_path = global.config_path();
            let config = nfsha_config::load(&config_path)?;
            match &config.agent.event_log {
                Some(p) => read_events(p, args.since)?,
                None => from_agent(&config, args.since).with_context(|| {
                    format!(
                        "No event log configured and the agent's memory could not be read: start the agent, set [agent] event_log in {}, or pass --file",
                        config_path.display()
                    )
                })?,
            }
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = if args.json {
        events
            .iter()
            .try_for_each(|e| writeln!(out, "{}", e.to_json_line()))
    } else {
        write!(out, "{}", render_table(&events))
    };
    match result {
        // `nfsha events | head` closing the pipe is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other.context("Cannot write to stdout").map(|()| 0),
    }
}

/// The running agent's in-memory events newer than `since` ago, oldest first.
fn from_agent(
    config: &nfsha_config::Config,
    since: Option<Duration>,
) -> anyhow::Result<Vec<Event>> {
    let since_ms = since.map(|d| {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(now.saturating_sub(d).as_millis()).unwrap_or(u64::MAX)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = rt.block_on(super::status::request(
        config,
        nfsha_agent::control::Request::Events { since_ms },
        Duration::from_secs(5),
    ))?;
    match reply {
        nfsha_agent::control::Reply::Events { mut events } => {
            events.sort_by_key(|e| e.ts_ms);
            Ok(events)
        }
        nfsha_agent::control::Reply::Error { message } => {
            anyhow::bail!("The agent refused: {message}")
        }
        other => anyhow::bail!("Unexpected reply from the agent: {other:?}"),
    }
}

/// Every decodable event of the file newer than `since` ago, oldest first.
fn read_events(path: &Path, since: Option<Duration>) -> anyhow::Result<Vec<Event>> {
    Ok(nfsha_metrics::read_events(path, since)?)
}

fn kind_name(e: &Event) -> String {
    serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn render_table(events: &[Event]) -> String {
    let rows: Vec<[String; 4]> = events
        .iter()
        .map(|e| {
            let t = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(e.ts_ms));
            [
                t.to_string(),
                kind_name(e),
                e.mount.clone().unwrap_or_else(|| "-".into()),
                nfsha_metrics::eventlog::detail(e),
            ]
        })
        .collect();
    let header = ["TIME (UTC)", "EVENT", "MOUNT", "DETAIL"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 4]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 3 {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3]]);
    }
    if rows.is_empty() {
        out.push_str("(no events)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfsha_core::EventKind;

    fn ev(ts: u64) -> Event {
        let mut e = Event::new(EventKind::RecoveryStep)
            .mount("/airflow/dags")
            .step("umount-force")
            .outcome("ok")
            .duration(Duration::from_millis(12));
        e.ts_ms = ts;
        e
    }

    #[test]
    fn table_lists_each_event_with_utc_time() {
        let mut stale = Event::new(EventKind::MountStateChanged)
            .mount("/airflow/dags")
            .transition("healthy", "stale")
            .errno(Some(116));
        stale.ts_ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let t = render_table(&[stale, ev(1_767_225_601_500)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("TIME (UTC)"));
        assert!(lines[1].starts_with("2026-01-01T00:00:00.000Z  mount_state_changed  /airflow/dags  healthy->stale ESTALE(116)"), "{t}");
        assert!(
            lines[2].contains("recovery_step")
                && lines[2].ends_with("step=umount-force outcome=ok 12ms"),
            "{t}"
        );
        assert_eq!(
            render_table(&[]),
            "TIME (UTC)  EVENT  MOUNT  DETAIL\n(no events)\n"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_events(Path::new("/nonexistent/events.jsonl"), None).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/events.jsonl"));
    }
}
