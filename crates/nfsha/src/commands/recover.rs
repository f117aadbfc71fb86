//! `nfsha recover`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha recover`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha recover`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha recover is not implemented yet")
}
