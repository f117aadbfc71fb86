//! The validated configuration model, shared by the agent, setup, drill and server.
//!
//! Values here have passed `validate()`: durations are positive, server lists are
//! non-empty, mountpoints are absolute. Code that consumes a [`Config`] may rely on that.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole `/etc/nfsha/nfsha.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from (for messages), if any.
    pub source: Option<PathBuf>,
    /// `[agent]`: the client daemon's own settings.
    pub agent: AgentSettings,
    /// `[[mount]]`: the NFS mounts the agent keeps healthy.
    pub mounts: Vec<MountConfig>,
    /// `[server]`: present on NFS server nodes only.
    pub server: Option<ServerConfig>,
}

/// `[agent]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// Root-only Unix socket for `nfsha status` / `recover`. Default `/run/nfsha/agent.sock`.
    pub control_socket: PathBuf,
    /// Where `/metrics` and `/healthz` listen. Default `127.0.0.1:9848`; `"off"` → `None`.
    pub listen: Option<SocketAddr>,
    /// Optional JSON-lines event log file.
    pub event_log: Option<PathBuf>,
    /// Deadline for one RPC server probe. Default 1 s.
    pub rpc_timeout: Duration,
    /// How often every configured server is probed at the RPC level. Default 2 s.
    pub server_probe_interval: Duration,
    /// Deadline of one `mount.nfs` run (its process group is killed after). Default 15 s.
    pub mount_timeout: Duration,
    /// Deadline of one umount step. Default 5 s.
    pub umount_timeout: Duration,
    /// First wait after a failed recovery. Default 1 s.
    pub backoff_initial: Duration,
    /// Cap of the recovery backoff. Default 30 s.
    pub backoff_max: Duration,
    /// Follow the leader of an nfsha server cluster in etcd, if set.
    pub cluster: Option<ClusterSource>,
    /// Root-owned directory of the agent's durable state: the active replica of each
    /// mount whose servers export different paths. Default `/var/lib/nfsha`.
    pub state_dir: PathBuf,
}

/// Where an agent learns the current primary (issue: clients follow the leader).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSource {
    /// etcd endpoints (`http://127.0.0.1:2379`).
    pub etcd_endpoints: Vec<String>,
    /// Cluster name (the key prefix `/nfsha/<cluster>/`).
    pub cluster: String,
    /// TLS files, if etcd uses TLS (`[agent.cluster.etcd_tls]`, as `[server.etcd_tls]`).
    pub etcd_tls: Option<EtcdTls>,
    /// User and password file, if etcd uses auth (`[agent.cluster.etcd_auth]`).
    pub etcd_auth: Option<EtcdAuth>,
}

/// How nfsha mounts a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// nfsha runs mount.nfs itself.
    Direct,
    /// autofs mounts it; nfsha detaches it and re-triggers the automount.
    Autofs,
}

/// Whether a healthy mount is moved back to a more preferred server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailbackPolicy {
    /// Never move a healthy mount (default): a returning server may be behind.
    Never,
    /// Move back when the more preferred server has answered RPC probes
    /// continuously for `failback_after` and is not behind (cluster epoch).
    WhenPreferredHealthy,
}

/// NFS protocol version used for mounting and for RPC probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NfsVersion {
    /// NFSv3 (MOUNT protocol, portmapper).
    V3,
    /// NFSv4.0.
    V4_0,
    /// NFSv4.1.
    V4_1,
    /// NFSv4.2.
    V4_2,
}

impl NfsVersion {
    /// The `vers=` value for mount.nfs.
    pub fn mount_option(self) -> &'static str {
        match self {
            NfsVersion::V3 => "3",
            NfsVersion::V4_0 => "4.0",
            NfsVersion::V4_1 => "4.1",
            NfsVersion::V4_2 => "4.2",
        }
    }
    /// The RPC program version (3 or 4).
    pub fn rpc_version(self) -> u32 {
        match self {
            NfsVersion::V3 => 3,
            _ => 4,
        }
    }
}

/// One candidate server of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    /// Host name or address (as written; resolved at probe time).
    pub host: String,
    /// This server's export path, when it differs from the mount's `export` (a
    /// replica volume such as Azure NetApp Files' cross-zone destination); `None`
    /// means the mount's `export`.
    pub export: Option<String>,
    /// Preference weight: lower is preferred first, as in autofs (`host(weight)`); default 0.
    pub weight: u32,
}

/// One replica of a mount: a server and the path it exports, `host:export`.
///
/// The identity of a candidate everywhere in the agent (probes, selection, the
/// mounted source, status, the state file): with replica volumes the same data is
/// not behind every server, so the host alone does not say what is mounted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replica {
    /// Host name or address, as configured.
    pub host: String,
    /// Export path on that host.
    pub export: String,
}

impl std::str::FromStr for Replica {
    type Err = String;

    /// `host:/export` or `[v6]:/export`, as [`Replica`]'s `Display` writes it.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not HOST:/EXPORT (e.g. 10.2.13.5:/crr-dest1)");
        let (host, export) = match s.strip_prefix('[') {
            Some(rest) => {
                let (h, after) = rest.split_once(']').ok_or_else(bad)?;
                (h, after.strip_prefix(':').ok_or_else(bad)?)
            }
            None => s.split_once(':').ok_or_else(bad)?,
        };
        if host.is_empty() || !export.starts_with('/') {
            return Err(bad());
        }
        Ok(Replica {
            host: host.to_string(),
            export: export.to_string(),
        })
    }
}

impl std::fmt::Display for Replica {
    /// `host:/export`, an IPv6 address in brackets (`[fd00::1]:/x`), as mount.nfs
    /// and mountinfo write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.export)
        } else {
            write!(f, "{}:{}", self.host, self.export)
        }
    }
}

/// One `[[mount]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MountConfig {
    /// Absolute mountpoint, e.g. `/airflow/dags`.
    pub mountpoint: PathBuf,
    /// Export path on the servers, e.g. `/srv/airflow/dags`.
    pub export: String,
    /// Candidate servers in preference order (ties broken by weight, then order).
    pub servers: Vec<ServerRef>,
    /// NFS version.
    pub nfs_version: NfsVersion,
    /// Mount options other than `vers=` (e.g. `hard`, `timeo=100`).
    pub options: Vec<String>,
    /// direct or autofs.
    pub mode: MountMode,
    /// Time between probes. Default 1 s.
    pub probe_interval: Duration,
    /// Deadline of one probe. Default 2 s.
    pub probe_deadline: Duration,
    /// Consecutive bad probes before recovery. Default 2.
    pub failures_before_recovery: u32,
    /// Failback policy. Default never.
    pub failback: FailbackPolicy,
    /// How long a preferred server must answer before a failback (WhenPreferredHealthy). Default 60 s.
    pub failback_after: Duration,
    /// Commands run (argument vectors, no shell) after each successful recovery.
    pub hooks: Vec<Vec<String>>,
    /// Deadline of each hook. Default 30 s.
    pub hook_timeout: Duration,
    /// systemd units that depend on this mount (setup orders them after the agent).
    pub services: Vec<String>,
    /// Also probe whether the mount takes writes (create, fsync, unlink a dot-file in
    /// its root, bounded by `probe_deadline`): a read-only replica, a full volume or
    /// hanging writes are reported, never remounted. Default off.
    pub write_probe: bool,
    /// `[mount.fleet]`: one active replica for the whole fleet, agreed in etcd (needs
    /// `[agent.cluster]` and replicas with their own export paths). `None`: each agent
    /// keeps its own active replica (state file) and fails over by itself.
    pub fleet: Option<FleetConfig>,
}

/// `[mount.fleet]`: how the fleet fails a replica volume over (see `nfsha-cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The volume's name in etcd (`/nfsha/volumes/<volume>/`), the same on every client.
    pub volume: String,
    /// How long this agent must see the active replica unreachable, without a break,
    /// before it votes for a failover. Default 5 min (seed 001's brief-outage warning).
    pub failover_after: Duration,
    /// `majority` (default): most live agents must vote; `any`: one agent is enough.
    pub quorum: FleetQuorum,
    /// Run once for the fleet by the elected agent before the move (e.g. the cloud CLI
    /// call that breaks the replication). Empty: no command.
    pub promote_command: Vec<String>,
    /// Deadline of the promote command (its process group is killed). Default 2 min.
    pub promote_timeout: Duration,
    /// Run by `nfsha replica failback` before it moves the fleet back: it must exit 0
    /// (e.g. the storage's mirror-state query saying the reverse resync is complete).
    /// Empty: the operator's `--resynced` is the only check.
    pub resync_check_command: Vec<String>,
    /// Deadline of the resync check (its process group is killed). Default 1 min.
    pub resync_check_timeout: Duration,
}

/// Who must agree before the fleet fails over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetQuorum {
    /// A majority of the live agents' views.
    Majority,
    /// Any one agent.
    Any,
}

/// `[server]` section (NFS server nodes).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// This node's name (unique in the cluster).
    pub node: String,
    /// Cluster name (etcd key prefix `/nfsha/<cluster>/`).
    pub cluster: String,
    /// etcd endpoints.
    pub etcd_endpoints: Vec<String>,
    /// Optional TLS for etcd.
    pub etcd_tls: Option<EtcdTls>,
    /// Optional user/password for etcd.
    pub etcd_auth: Option<EtcdAuth>,
    /// Leader lease TTL. Default 10 s.
    pub ttl: Duration,
    /// Control loop period. Default 1 s (must be < ttl / 3).
    pub loop_period: Duration,
    /// Time kept between self-fencing and lease expiry. Default ttl / 4 capped to 2 s
    /// (see [`crate::defaults::safety_margin`]); `loop_period < safety_margin < ttl − 2 ×
    /// loop_period`.
    pub safety_margin: Duration,
    /// Exports served by the leader.
    pub exports: Vec<ExportConfig>,
    /// Floating address moved to the leader.
    pub floating_address: Option<FloatingAddress>,
    /// nfsd state directory (bound over /var/lib/nfs in shared mode). Default `/var/lib/nfs`.
    pub state_dir: PathBuf,
    /// NFSv4 lease time given to nfsd. Default 10 s.
    pub nfsd_lease: Duration,
    /// NFSv4 grace time given to nfsd. Default 10 s.
    pub nfsd_grace: Duration,
    /// Server scope shared by all nodes (`rpc.nfsd --scope`).
    pub scope: String,
    /// Storage mode.
    pub storage: StorageMode,
    /// Timeout of each bring-up/teardown step. Default 20 s.
    pub step_timeout: Duration,
    /// Commands run on role change; `NFSHA_ROLE` is set to `primary` or `standby`.
    pub hooks: Vec<Vec<String>>,
    /// Where the status HTTP API listens. Default `127.0.0.1:8008`.
    pub listen: Option<SocketAddr>,
    /// Optional Linux watchdog device armed while leader (e.g. `/dev/watchdog`).
    pub watchdog_device: Option<PathBuf>,
    /// Replication (replicated mode): snapshot shipping to standbys.
    pub replication: Option<ReplicationConfig>,
    /// `[server.commands]`: the host commands of the bring-up and teardown steps.
    pub commands: ServerCommands,
}

/// One host command: an argument vector (no shell) and its own deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCommand {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Deadline of this command; its process group is killed when it passes. At most
    /// the step's `step_timeout` (which bounds the whole step).
    pub timeout: Duration,
}

/// `[server.commands]`: what the controller runs on the host around its built-in steps
/// (formerly the `nfsha server run --storage-up …` flags, which remain as overrides).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerCommands {
    /// Run first in the storage step (e.g. `drbdadm primary`, `mount`).
    pub storage_up: Vec<HostCommand>,
    /// Run last when storage goes down (e.g. `umount`, `drbdadm secondary`).
    pub storage_down: Vec<HostCommand>,
    /// Bind `state_dir` onto this directory in the storage step (after `storage_up`)
    /// and unbind it before `storage_down`, e.g. `/var/lib/nfs` with a state directory
    /// on the shared storage.
    pub state_dir_bind: Option<PathBuf>,
    /// Deadline of the bind and of the unbind.
    pub state_dir_bind_timeout: Duration,
    /// Run before `rpc.nfsd` (e.g. `rpcbind -w`, `rpc.mountd`, `nfsdcld`).
    pub before_nfsd: Vec<HostCommand>,
    /// Run after `rpc.nfsd 0` (e.g. stop mountd).
    pub after_nfsd_stop: Vec<HostCommand>,
}

/// etcd TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
}

/// etcd user/password (password read from a file, never written in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    /// User name.
    pub user: String,
    /// File holding the password.
    pub password_file: PathBuf,
}

/// One export served by the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// Exported directory.
    pub path: PathBuf,
    /// Pinned fsid (same on every node).
    pub fsid: u32,
    /// Client specification (`*`, `10.0.0.0/24`).
    pub clients: String,
    /// Export options (`rw,sync,no_subtree_check`).
    pub options: Vec<String>,
}

/// The floating address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatingAddress {
    /// Address.
    pub address: std::net::IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// Interface name.
    pub interface: String,
}

/// Shared or replicated storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// The same filesystem moves between nodes (DRBD, SAN): file handles survive.
    Shared,
    /// Each node has its own copy: handles change, clients must remount.
    Replicated,
}

/// Which replication engine ships snapshots (`[server.replication] engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationEngine {
    /// `ship_command` / `promote_command` (any storage; the default).
    Command,
    /// Built-in btrfs send/receive ([`BtrfsReplication`]).
    Btrfs,
}

/// `engine = "btrfs"`: the subvolume, its snapshots and how to reach a standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtrfsReplication {
    /// The served (writable) subvolume; the same path on every node.
    pub subvolume: PathBuf,
    /// Directory of sent and received snapshots, on the same filesystem as
    /// `subvolume`; the same path on every node.
    pub snapshot_dir: PathBuf,
    /// Complete snapshots retention keeps per node (the newest common snapshot of each
    /// standby is kept besides). Default 12.
    pub keep: u32,
    /// Argument-vector prefix that runs a command on a standby; `{target}` is replaced
    /// by its node name. Default `["ssh", "-o", "BatchMode=yes", "root@{target}"]`.
    pub transport: Vec<String>,
}

/// Snapshot shipping to standbys (replicated mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// The engine. Default [`ReplicationEngine::Command`].
    pub engine: ReplicationEngine,
    /// Settings of the btrfs engine (`Some` exactly when `engine` is `Btrfs`).
    pub btrfs: Option<BtrfsReplication>,
    /// How often the primary ships a snapshot to each standby.
    pub interval: Duration,
    /// Command (argument vector) that ships one snapshot to one standby; it gets
    /// `NFSHA_TARGET_NODE` (the standby's node name) and `NFSHA_EPOCH` in its environment.
    /// Empty with the btrfs engine.
    pub ship_command: Vec<String>,
    /// Command (argument vector) run on a standby to promote its newest snapshot.
    /// Empty with the btrfs engine.
    pub promote_command: Vec<String>,
    /// Largest acceptable lag for a standby to be promoted: a standby whose last shipped
    /// snapshot started more than this before the leader was lost does not campaign
    /// (the `nfsha server promote --accept-lag` override aside).
    pub max_lag: Duration,
}

impl Default for AgentSettings {
    /// The `[agent]` defaults (what an empty or absent `[agent]` means).
    fn default() -> Self {
        use crate::defaults as d;
        AgentSettings {
            control_socket: d::control_socket(),
            listen: d::AGENT_LISTEN.parse().ok(),
            event_log: None,
            rpc_timeout: d::RPC_TIMEOUT,
            server_probe_interval: d::SERVER_PROBE_INTERVAL,
            mount_timeout: d::MOUNT_TIMEOUT,
            umount_timeout: d::UMOUNT_TIMEOUT,
            backoff_initial: d::BACKOFF_INITIAL,
            backoff_max: d::BACKOFF_MAX,
            cluster: None,
            state_dir: PathBuf::from(d::AGENT_STATE_DIR),
        }
    }
}

impl Config {
    /// A config with default `[agent]` settings, no mounts and no `[server]`.
    pub fn empty() -> Self {
        Config {
            source: None,
            agent: AgentSettings::default(),
            mounts: Vec::new(),
            server: None,
        }
    }
}

impl MountConfig {
    /// A mount with every optional setting at its built-in default.
    pub fn new(
        mountpoint: impl Into<PathBuf>,
        export: impl Into<String>,
        servers: Vec<ServerRef>,
    ) -> Self {
        use crate::defaults as d;
        MountConfig {
            mountpoint: mountpoint.into(),
            export: export.into(),
            servers,
            nfs_version: d::NFS_VERSION,
            options: d::mount_options(),
            mode: MountMode::Direct,
            probe_interval: d::PROBE_INTERVAL,
            probe_deadline: d::PROBE_DEADLINE,
            failures_before_recovery: d::FAILURES_BEFORE_RECOVERY,
            failback: FailbackPolicy::Never,
            failback_after: d::FAILBACK_AFTER,
            hooks: Vec::new(),
            hook_timeout: d::HOOK_TIMEOUT,
            services: Vec::new(),
            write_probe: false,
            fleet: None,
        }
    }

    /// The export path of candidate `s`: its own, else the mount's.
    pub fn export_of<'a>(&'a self, s: &'a ServerRef) -> &'a str {
        s.export.as_deref().unwrap_or(&self.export)
    }

    /// Candidate `s` as a [`Replica`] (`host:export`).
    pub fn replica_of(&self, s: &ServerRef) -> Replica {
        Replica {
            host: s.host.clone(),
            export: self.export_of(s).to_string(),
        }
    }

    /// Every candidate as a [`Replica`], in the order written.
    pub fn replicas(&self) -> Vec<Replica> {
        self.servers.iter().map(|s| self.replica_of(s)).collect()
    }

    /// True when the candidates do not all export the same path: replica volumes,
    /// each with its own data. Then the agent keeps one *active* replica on disk and
    /// never mounts another one just because it is preferred (see the agent's
    /// `replica` module); with one export path for all (a floating address, shared
    /// storage) any answering server serves the same data.
    pub fn has_replicas(&self) -> bool {
        let mut exports = self.servers.iter().map(|s| self.export_of(s));
        let first = exports.next();
        exports.any(|e| Some(e) != first)
    }

    /// The candidate that is `replica`, if it is one of this mount's.
    pub fn server_for(&self, replica: &Replica) -> Option<&ServerRef> {
        self.servers
            .iter()
            .find(|s| s.host == replica.host && self.export_of(s) == replica.export)
    }

    /// The `mount.nfs -o` string: `vers=<v>` followed by `options`.
    pub fn mount_options_string(&self) -> String {
        std::iter::once(format!("vers={}", self.nfs_version.mount_option()))
            .chain(self.options.iter().cloned())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl ServerRef {
    /// A server with the default weight 0.
    pub fn new(host: impl Into<String>) -> Self {
        ServerRef {
            host: host.into(),
            export: None,
            weight: 0,
        }
    }

    /// A server with its own export path and the default weight 0.
    pub fn with_export(host: impl Into<String>, export: impl Into<String>) -> Self {
        ServerRef {
            host: host.into(),
            export: Some(export.into()),
            weight: 0,
        }
    }
}

impl NfsVersion {
    /// The `nfs_version` string written in the config (`"3"`, `"4.0"`, `"4.1"`, `"4.2"`).
    pub fn config_str(self) -> &'static str {
        self.mount_option()
    }
}
