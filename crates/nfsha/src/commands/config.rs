//! `nfsha config`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha config`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha config`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha config is not implemented yet")
}
