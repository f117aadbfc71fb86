//! `nfsha __worker`: the hang-proof worker process the agent re-executes itself as.
//!
//! Role: serve line-delimited JSON requests (probe, umount, trigger, ping) on
//! stdin/stdout with cwd `/` until stdin closes (see `nfsha_sys::worker`). It may
//! block in the kernel on a dead NFS mount; the agent kills it through a pidfd.
//! No logging is initialised: stdout carries the protocol.

/// Arguments of `nfsha __worker` (none).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run the worker loop; the exit status is 0 after stdin EOF, 1 on an I/O error.
pub fn run(_args: Args) -> anyhow::Result<u8> {
    Ok(nfsha_sys::worker::worker_main())
}
