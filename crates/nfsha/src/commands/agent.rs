//! `nfsha agent`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha agent`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha agent`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha agent is not implemented yet")
}
