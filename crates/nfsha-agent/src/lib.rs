//! nfsha-agent: the client daemon that keeps every configured NFS mount healthy.
//!
//! Role: probe each mount without ever hanging ([`host::Host`] bounds every
//! operation), classify it, recover *that* mount (never others), choose the server to
//! mount from by RPC probes, publish status for `nfsha status`/`check`, metrics and
//! `/healthz`, and feed the systemd watchdog only while every task makes progress.
//!
//! Failure modes: a hung probe marks its mount `hung` and delays nothing else; a
//! failed recovery backs off exponentially; an invalid reloaded config is refused and
//! the old one stays in effect; with replica volumes, a lost or corrupt state file is
//! reported and never resolved by mounting the preferred replica ([`replica`]).

pub mod control;
pub mod daemon;
pub mod emit;
pub mod fleet;
pub mod host;
pub mod linux;
pub mod recovery;
pub mod replica;
pub mod selection;
pub mod status;
pub mod supervisor;
pub mod testing;

pub use emit::Emitter;
pub use host::Host;
pub use recovery::RecoveryReport;
pub use status::{AgentStatus, MountStatus, SharedStatus};
pub use supervisor::{Agent, AgentHandle, ClusterLeader};
