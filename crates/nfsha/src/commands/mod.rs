//! One module per subcommand. Each exposes `Args` (clap) and `run(...) -> Result<u8>`,
//! the `u8` being the process exit status.

pub mod agent;
pub mod check;
pub mod config;
pub mod drill;
pub mod events;
pub mod recover;
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
pub(crate) fn ask_status(config: &nfsha_config::Config) -> anyhow::Result<nfsha_agent::AgentStatus> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(ask_status_async(config))
}
