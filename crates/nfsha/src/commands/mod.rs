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
