//! `nfsha drill`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha drill`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha drill`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha drill is not implemented yet")
}
