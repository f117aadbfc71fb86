//! `nfsha events`: placeholder, being written.

use super::Global;

/// Arguments of `nfsha events`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `nfsha events`.
pub fn run(_global: &Global, _args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("nfsha events is not implemented yet")
}
