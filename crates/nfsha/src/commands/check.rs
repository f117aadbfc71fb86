//! `nfsha check`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha check`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha check`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha check is not implemented yet")
}
