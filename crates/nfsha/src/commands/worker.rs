//! `nfsha __worker`: placeholder, being written (hang-proof worker process).

/// Arguments of `nfsha __worker`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run the worker loop.
pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("worker not implemented yet")
}
