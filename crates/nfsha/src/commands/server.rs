//! `nfsha server`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha server`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha server`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha server is not implemented yet")
}
