//! `nfsha setup`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha setup`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha setup`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha setup is not implemented yet")
}
