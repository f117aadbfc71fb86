//! The one error type of every RPC probe.
//!
//! Role: name each way a probe can fail so that the agent can tell "nothing there" (refused, connect timeout) from
//! "there but silent" (reply timeout) from "there and answering, but not what we need" (program or version not
//! served, call denied, not registered). Messages are short and never repeat their `source`.

use std::net::SocketAddr;

/// Why an RPC probe failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The host name did not resolve.
    #[error("Cannot resolve {host}")]
    Resolve {
        /// The name as given.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The host name resolved to no address.
    #[error("{host} resolved to no address")]
    NoAddress {
        /// The name as given.
        host: String,
    },
    /// Name resolution did not finish before the deadline.
    #[error("Resolving {host} timed out")]
    ResolveTimeout {
        /// The name as given.
        host: String,
    },
    /// The server host answered the TCP SYN with a reset: nothing listens on that port.
    #[error("Connection to {addr} refused")]
    ConnectRefused {
        /// The address tried.
        addr: SocketAddr,
    },
    /// The TCP connection was not established before the deadline (host down or packets dropped).
    #[error("Connecting to {addr} timed out")]
    ConnectTimeout {
        /// The address tried.
        addr: SocketAddr,
    },
    /// The TCP connection failed for another reason (unreachable network, ...).
    #[error("Cannot connect to {addr}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The server accepted the connection but sent no complete reply before the deadline.
    #[error("No reply from {addr} before the deadline")]
    ReplyTimeout {
        /// The address called.
        addr: SocketAddr,
    },
    /// Sending the call or reading the reply failed (connection reset, ...).
    #[error("Connection to {addr} failed")]
    Io {
        /// The address called.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The server closed the connection without a complete reply.
    #[error("{addr} closed the connection without replying")]
    Closed {
        /// The address called.
        addr: SocketAddr,
    },
    /// The server rejected the call because it speaks other ONC RPC versions (MSG_DENIED / RPC_MISMATCH).
    #[error("Call denied: server speaks RPC versions {low} to {high}")]
    RpcMismatch {
        /// Lowest RPC version supported.
        low: u32,
        /// Highest RPC version supported.
        high: u32,
    },
    /// The server rejected the call's credentials (MSG_DENIED / AUTH_ERROR).
    #[error("Call denied: {stat}")]
    AuthDenied {
        /// The `auth_stat` name, e.g. `AUTH_TOOWEAK`.
        stat: String,
    },
    /// The server does not serve this RPC program (PROG_UNAVAIL).
    #[error("Program {program} not served")]
    ProgUnavail {
        /// The program called.
        program: u32,
    },
    /// The server serves the program, but not this version (PROG_MISMATCH).
    #[error("Program {program} version {version} not served (versions {low} to {high} are)")]
    ProgMismatch {
        /// The program called.
        program: u32,
        /// The version called.
        version: u32,
        /// Lowest version served.
        low: u32,
        /// Highest version served.
        high: u32,
    },
    /// The call was accepted but failed: PROC_UNAVAIL, GARBAGE_ARGS or SYSTEM_ERR.
    #[error("Call failed: {stat}")]
    CallFailed {
        /// The `accept_stat` name.
        stat: &'static str,
    },
    /// The reply could not be decoded as an ONC RPC reply to our call.
    #[error("Garbage reply: {what}")]
    Garbage {
        /// What was wrong with it.
        what: String,
    },
    /// The portmapper answered port 0: the program/version/protocol is not registered.
    #[error("Program {program} version {version} not registered with the portmapper")]
    NotRegistered {
        /// The program asked for.
        program: u32,
        /// The version asked for.
        version: u32,
    },
    /// An NFSv4 COMPOUND operation returned an error status.
    #[error("NFSv4 {op} failed with status {status}")]
    Nfs4Status {
        /// The operation name (`PUTROOTFH`, `GETFH`, or `COMPOUND` when no operation ran).
        op: &'static str,
        /// The `nfsstat4` code, e.g. 10071 (NFS4ERR_OP_NOT_IN_SESSION).
        status: u32,
    },
}

impl RpcError {
    /// True when the error proves that an RPC server answered on the port, even though the call did not succeed
    /// (denied, program or version not served, call failed, not registered, NFSv4 error status).
    #[must_use]
    pub fn server_answered(&self) -> bool {
        matches!(
            self,
            Self::RpcMismatch { .. }
                | Self::AuthDenied { .. }
                | Self::ProgUnavail { .. }
                | Self::ProgMismatch { .. }
                | Self::CallFailed { .. }
                | Self::NotRegistered { .. }
                | Self::Nfs4Status { .. }
        )
    }

    pub(crate) fn garbage(what: impl Into<String>) -> Self {
        Self::Garbage { what: what.into() }
    }
}

/// Render an error with its whole `source` chain on one line (`outer: inner: innermost`), for [`crate::Check`] and
/// [`crate::ServerProbe`], which carry strings.
#[must_use]
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    nfsha_core::error_chain(err)
}
