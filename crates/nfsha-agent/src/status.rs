//! The agent's published view: one [`MountStatus`] per mount and one
//! [`ServerStatus`] per server, shared by the control socket, `/healthz` and metrics.
//!
//! Written only by the mount and server tasks; readers take snapshots under a short
//! lock and never block a task for longer than a copy.

use nfsha_core::{MountState, WriteState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One mount as `nfsha status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountStatus {
    /// Mountpoint.
    pub mountpoint: String,
    /// Current classified state.
    pub state: MountState,
    /// When the state began (ms since the epoch).
    pub since_ms: u64,
    /// The server the mount is (or is being) mounted from.
    pub server: Option<String>,
    /// Last error seen (state change reason or failed recovery step).
    pub last_error: Option<String>,
    /// Latency of the last completed probe (µs).
    pub probe_rtt_us: Option<u64>,
    /// A recovery is running.
    pub recovering: bool,
    /// Why the last recovery failed (cleared by a successful one).
    pub recovery_error: Option<String>,
    /// Recoveries done since start.
    pub recoveries: u64,
    /// Failed recoveries in a row.
    pub failed_attempts: u32,
    /// Mode (`direct` or `autofs`).
    pub mode: String,
    /// The export path mounted (with `server`, the replica `host:export`).
    #[serde(default)]
    pub export: Option<String>,
    /// Replica volumes only: the active replica as recorded on disk.
    #[serde(default)]
    pub replica: Option<ReplicaStatus>,
    /// With `write_probe`: whether the mount takes writes.
    #[serde(default)]
    pub write: Option<WriteStatus>,
}

/// The active replica of a mount with replica volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The active replica, `host:export`; `None` while it is not known
    /// (`no-active-replica`).
    pub active: Option<String>,
    /// Its generation (bumped by each change of the active replica).
    pub generation: Option<u64>,
    /// Why it became active.
    pub reason: Option<String>,
    /// A problem with the state file (missing, corrupt, not writable), while unresolved.
    pub problem: Option<String>,
}

/// The write probe's last result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStatus {
    /// The classified result.
    pub state: WriteState,
    /// When this result began (ms since the epoch).
    pub since_ms: u64,
    /// The failing operation and errno, when not writable.
    pub detail: Option<String>,
}

/// One server as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Server as configured.
    pub host: String,
    /// Answered its last RPC probe.
    pub reachable: bool,
    /// RTT of the last probe (µs).
    pub rtt_us: Option<u64>,
    /// Why it is unreachable.
    pub error: Option<String>,
    /// Resolved addresses.
    pub addresses: Vec<String>,
    /// When it became reachable continuously (ms since epoch), for failback.
    pub reachable_since_ms: Option<u64>,
    /// When it was last probed (ms since epoch).
    pub probed_ms: u64,
}

/// The whole published view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Mounts by mountpoint.
    pub mounts: BTreeMap<String, MountStatus>,
    /// Servers by host.
    pub servers: BTreeMap<String, ServerStatus>,
    /// Config file in use.
    pub config: Option<String>,
    /// Last reload error, if the last SIGHUP reload was refused.
    pub reload_error: Option<String>,
    /// Worker processes killed but not yet exited.
    pub stuck_workers: usize,
    /// The server cluster's leader node, when the agent follows a cluster.
    #[serde(default)]
    pub cluster_leader: Option<String>,
    /// The highest cluster epoch seen.
    #[serde(default)]
    pub cluster_epoch: Option<u64>,
}

/// Shared, lockable status.
#[derive(Debug, Clone, Default)]
pub struct SharedStatus(Arc<Mutex<AgentStatus>>);

impl SharedStatus {
    /// Lock for reading or writing; a poisoned lock is recovered (the data is plain).
    pub fn lock(&self) -> MutexGuard<'_, AgentStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the whole view.
    pub fn snapshot(&self) -> AgentStatus {
        self.lock().clone()
    }
}
