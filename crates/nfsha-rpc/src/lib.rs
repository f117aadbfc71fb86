//! nfsha-rpc: probes of NFS servers at the ONC RPC level, never through an NFS mount.
//!
//! Role: tell the agent which candidate server answers, and how fast, so that it remounts from the first
//! reachable server by preference. Over TCP with record marking (RFC 5531), each call on its own connection:
//! NULL to NFS v3/v4 and MOUNT v3, portmapper GETPORT, and optionally NFSv4 COMPOUND { PUTROOTFH, GETFH }.
//! Message, portmap and MOUNT types come from `nfs3_types`; only the NFSv4 COMPOUND is hand-encoded ([`nfs4`]).
//!
//! Failure modes: every call is bounded by a deadline and fails with one [`RpcError`] variant per cause —
//! connect refused, connect timeout, reply timeout (accepts TCP, never answers), RPC denied, PROG_UNAVAIL,
//! PROG_MISMATCH (with the served range), not registered with the portmapper, garbage reply.
//! [`probe_server`] never fails: it records every check in a [`ServerProbe`]; [`rank`] orders the results; [`ping`]
//! is the one-call check the agent repeats while a server does not answer.

mod client;
mod error;
pub mod nfs4;
mod probe;
pub mod wire;

pub use client::{
    IPPROTO_TCP, MOUNT_PROGRAM, MOUNT_VERSION, NFS_PROGRAM, PMAP_PROGRAM, PMAP_VERSION,
    PMAPPROC_GETPORT, getport, nfs4_root_fh, rpc_null,
};
pub use error::{RpcError, error_chain};
pub use probe::{Check, ProbeTarget, ServerProbe, ping, probe_server, rank};
