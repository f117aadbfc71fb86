//! `nfsha agent`: run the client daemon in the foreground (systemd `Type=notify`).

use super::Global;
use anyhow::Context;

/// Arguments of `nfsha agent`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Load the config, then run until SIGTERM.
pub fn run(global: &Global, _args: Args) -> anyhow::Result<u8> {
    let path = global.config_path();
    let (config, warnings) = nfsha_config::load_with_warnings(&path)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("Cannot start the async runtime")?;
    let reload_path = path.clone();
    rt.block_on(nfsha_agent::daemon::run(config, move || {
        nfsha_config::load(&reload_path).map_err(|e| e.to_string())
    }))?;
    Ok(0)
}
