//! One module per subcommand. Each exposes `Args` (clap) and `run(...) -> Result<u8>`,
//! the `u8` being the process exit status.

pub mod agent;
pub mod check;
pub mod config;
pub mod drill;
pub mod events;
pub mod generate_docs;
mod man_extra;
pub mod recover;
pub mod replica;
pub mod server;
pub mod setup;
pub mod status;
pub mod worker;

use std::path::PathBuf;

/// Options shared by every subcommand.
#[derive(Debug, Clone)]
pub struct Global {
    /// `--config` / `NFSHA_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: crate::observability::LogFormat,
}

impl Global {
    /// The config path in effect.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/nfsha/nfsha.toml"))
    }
}

/// The config used to reach a running agent. When the file on disk is invalid (an
/// operator mid-edit, or a SIGHUP reload the agent refused) the agent keeps running
/// with its previous config and reports `reload_error`, so this must still find it:
/// it warns and falls back to the file's `[agent] control_socket` line, or the default.
pub(crate) fn agent_config(global: &Global) -> anyhow::Result<nfsha_config::Config> {
    let path = global.config_path();
    match nfsha_config::load(&path) {
        Ok(c) => Ok(c),
        Err(e @ nfsha_config::ConfigError::Invalid { .. }) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut agent = nfsha_config::AgentSettings::default();
            if let Some(socket) = control_socket_line(&text) {
                agent.control_socket = socket;
            }
            eprintln!(
                "warning: {} is invalid (a running agent keeps its previous config); asking the agent at {}:\n{e}",
                path.display(),
                agent.control_socket.display()
            );
            Ok(nfsha_config::Config {
                source: Some(path),
                agent,
                mounts: Vec::new(),
                server: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `control_socket = "..."` inside `[agent]`, read line by line from a config that does
/// not validate (plain quoted strings only).
fn control_socket_line(text: &str) -> Option<PathBuf> {
    let mut in_agent = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_agent = l.split('#').next().map(str::trim) == Some("[agent]");
            continue;
        }
        let Some((key, value)) = l.split_once('=') else {
            continue;
        };
        if !in_agent || key.trim() != "control_socket" {
            continue;
        }
        let v = value.trim();
        let inner = v
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|r| r.split_once('\'')))
            .map(|(s, _)| s)?;
        if inner.is_empty() || inner.contains('\\') {
            return None;
        }
        return Some(PathBuf::from(inner));
    }
    None
}

/// Ask the running agent for its status.
pub(crate) async fn ask_status_async(
    config: &nfsha_config::Config,
) -> anyhow::Result<nfsha_agent::AgentStatus> {
    use nfsha_agent::control::{Reply, Request};
    match status::request(config, Request::Status, std::time::Duration::from_secs(5)).await? {
        Reply::Status(s) => Ok(s),
        Reply::Error { message } => anyhow::bail!("The agent refused: {message}"),
        other => anyhow::bail!("Unexpected reply from the agent: {other:?}"),
    }
}

/// Blocking wrapper of [`ask_status_async`].
pub(crate) fn ask_status(
    config: &nfsha_config::Config,
) -> anyhow::Result<nfsha_agent::AgentStatus> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(ask_status_async(config))
}
