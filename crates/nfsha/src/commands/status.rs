//! `nfsha status`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha status`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha status is not implemented yet")
}
