//! Built-in defaults of the config format (what an absent key means).
//!
//! Role: one place for every default so the parser, `to_toml` and other crates agree.
//! No failure modes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::NfsVersion;

/// Default config file path.
pub const CONFIG_PATH: &str = "/etc/nfsha/nfsha.toml";
/// `[agent] control_socket`.
pub const CONTROL_SOCKET: &str = "/run/nfsha/agent.sock";
/// `[agent] listen`.
pub const AGENT_LISTEN: &str = "127.0.0.1:9848";
/// `[agent] state_dir`: the agent's durable state (active replicas).
pub const AGENT_STATE_DIR: &str = "/var/lib/nfsha";
/// `[agent] rpc_timeout`.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// `[agent] server_probe_interval`.
pub const SERVER_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// `[agent] mount_timeout`.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
/// `[agent] umount_timeout`.
pub const UMOUNT_TIMEOUT: Duration = Duration::from_secs(5);
/// `[agent] backoff_initial`.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// `[agent] backoff_max`.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// `nfs_version`.
pub const NFS_VERSION: NfsVersion = NfsVersion::V4_1;
/// `probe_interval`.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// `probe_deadline`.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// `failures_before_recovery`.
pub const FAILURES_BEFORE_RECOVERY: u32 = 2;
/// `failback_after`.
pub const FAILBACK_AFTER: Duration = Duration::from_secs(60);
/// `hook_timeout`.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// `options` of a mount: `["hard"]`.
pub fn mount_options() -> Vec<String> {
    vec!["hard".to_string()]
}

/// `[server] ttl`.
pub const SERVER_TTL: Duration = Duration::from_secs(10);
/// `[server] loop_period`.
pub const SERVER_LOOP_PERIOD: Duration = Duration::from_secs(1);
/// `[server] state_dir`.
pub const SERVER_STATE_DIR: &str = "/var/lib/nfs";
/// `[server] nfsd_lease`.
pub const NFSD_LEASE: Duration = Duration::from_secs(10);
/// `[server] nfsd_grace`.
pub const NFSD_GRACE: Duration = Duration::from_secs(10);
/// `[server] step_timeout`.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// `[server.replication] interval`.
pub const REPLICATION_INTERVAL: Duration = Duration::from_secs(300);
/// `[server.replication] max_lag`.
pub const REPLICATION_MAX_LAG: Duration = Duration::from_secs(600);
/// `[server.replication] interval` with `engine = "btrfs"` (RPO target ≤ 30 s).
pub const BTRFS_INTERVAL: Duration = Duration::from_secs(15);
/// `[server.replication] max_lag` with `engine = "btrfs"`.
pub const BTRFS_MAX_LAG: Duration = Duration::from_secs(60);
/// `[server.replication] keep`.
pub const BTRFS_KEEP: u32 = 12;

/// `[server.replication] transport`.
pub fn btrfs_transport() -> Vec<String> {
    ["ssh", "-o", "BatchMode=yes", "root@{target}"]
        .map(String::from)
        .to_vec()
}

/// Cap of the default `[server] safety_margin`.
pub const SAFETY_MARGIN_CAP: Duration = Duration::from_secs(2);

/// `[server] safety_margin` when not given: ttl / 4, capped to 2 s.
///
/// The leader starts its teardown one `loop_period` before `proof + ttl − margin`,
/// floating address first, so the margin only has to cover the address removal
/// overrunning that loop and the drift between the local monotonic clock and etcd's
/// lease clock (clock *rates*, a few ppm; wall-clock offsets do not matter). It does not
/// have to cover a slow etcd, and a large margin costs availability: it shortens the
/// time a leader may wait for a late etcd answer, and ttl / 2 fenced healthy leaders on
/// a loaded machine. The rules are `loop_period < margin < ttl − 2 × loop_period` (the
/// second leaves one loop to renew before teardown starts). When ttl / 4 is outside
/// that range (e.g. ttl 4 s with loop_period 1 s) the default is the middle of the
/// range; if the range is empty (`loop_period` ≥ ttl / 3, itself a validation error)
/// ttl / 4 is returned and validation reports the loop rule.
pub fn safety_margin(ttl: Duration, loop_period: Duration) -> Duration {
    let base = (ttl / 4).min(SAFETY_MARGIN_CAP);
    let lo = loop_period;
    let hi = ttl.saturating_sub(loop_period * 2);
    if base > lo && base < hi {
        base
    } else if hi > lo {
        lo + (hi - lo) / 2
    } else {
        base
    }
}

/// `[server] listen`: 127.0.0.1:8008.
pub fn server_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8008))
}

/// `[[server.export]] options`: rw, sync, no_subtree_check.
pub fn export_options() -> Vec<String> {
    ["rw", "sync", "no_subtree_check"]
        .map(String::from)
        .to_vec()
}

/// `[agent] control_socket` as a path.
pub fn control_socket() -> PathBuf {
    PathBuf::from(CONTROL_SOCKET)
}

/// `[mount.fleet] failover_after`: 5 minutes. A failover to a replica volume breaks the
/// replication, may lose the writes of the last replication interval, and needs a reverse
/// resync by hand before any failback (seed 001); with `hard` mounts applications just
/// wait out a shorter outage. Seed 001's own warning: "Do you really want/need failover to
/// occur if the availability zone is back up after a few minutes?"
pub const FLEET_FAILOVER_AFTER: Duration = Duration::from_secs(300);

/// `[mount.fleet] promote_timeout`: 2 minutes (a cloud CLI call that breaks a replication).
pub const FLEET_PROMOTE_TIMEOUT: Duration = Duration::from_secs(120);
/// `[mount.fleet] resync_check_timeout`.
pub const FLEET_RESYNC_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
