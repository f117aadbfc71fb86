//! The agent's supervisor: one task per mount, one task for server probes, one for
//! the mount table; config reload; liveness for the systemd watchdog.
//!
//! Each mount task probes on its own cadence, feeds the pure [`MountMachine`], and
//! runs that mount's recovery inline — so a recovery or a hung probe delays only its
//! own mount. Probes are bounded by their deadline inside the [`Host`], so a task is
//! never stuck; each task touches a heartbeat after every step, and the watchdog is
//! fed only while every heartbeat is fresh.
//!
//! Cluster leader records come from etcd, which a local user may be able to write
//! (issue 16, hole 2): a mount task acts only on a leader whose address is one of that
//! mount's configured `servers` (by name or by an address the name resolved to). Any
//! other is refused with a `leader_refused` event and a warning, and the mount keeps the
//! leader it accepted before; a refused record is looked at again when the servers'
//! addresses are resolved anew.
//!
//! A mount with replica volumes also holds its [`ReplicaBook`] (the active replica,
//! from the state file): a healthy mount of another replica is `wrong-server`, a mount
//! found without a record is adopted, and problems with the file are `replica` events.
//! With `write_probe`, a healthy mount is also write-probed (at most every
//! [`WRITE_PROBE_EVERY`]); the result is a state of its own (status, metrics,
//! `write_probe` events) and never feeds the recovery machine.

use crate::emit::Emitter;
use crate::host::{Host, Mounted, ServerProbe, topmost};
use crate::recovery::{Recovery, RecoveryReport, describe};
use crate::replica::{ReplicaBook, ReplicaStore};
use crate::selection;
use crate::status::{MountStatus, ReplicaStatus, ServerStatus, SharedStatus, WriteStatus};
use nfsha_config::{AgentSettings, Config, MountConfig, MountMode, Replica};
use nfsha_core::event::now_ms;
use nfsha_core::{
    Action, Event, EventKind, MachineConfig, MountMachine, MountState, ProbeOutcome, WriteState,
};
use nfsha_metrics::AgentMetrics;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Now, by tokio's clock (so tests with a paused clock control every timer).
pub(crate) fn clock_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall-clock milliseconds that advance with tokio's clock (paused in tests).
pub(crate) fn clock_ms() -> u64 {
    static BASE: std::sync::OnceLock<(u64, tokio::time::Instant)> = std::sync::OnceLock::new();
    let (wall, mono) = *BASE.get_or_init(|| (now_ms(), tokio::time::Instant::now()));
    let elapsed = tokio::time::Instant::now().saturating_duration_since(mono);
    wall + u64::try_from(elapsed.as_millis()).unwrap_or(0)
}

/// A liveness stamp one task keeps fresh.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    last: Arc<Mutex<Instant>>,
    bound: Duration,
}

impl Heartbeat {
    fn new(bound: Duration) -> Self {
        Heartbeat {
            last: Arc::new(Mutex::new(clock_now())),
            bound,
        }
    }
    /// Record progress.
    pub fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = clock_now();
    }
    fn fresh(&self, now: Instant) -> bool {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        now.saturating_duration_since(last) <= self.bound
    }
}

/// The current leader of the nfsha server cluster, as the agent follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLeader {
    /// Leader node name.
    pub node: String,
    /// The address clients mount from.
    pub address: Option<String>,
    /// The leader key's create revision (fencing token); larger is newer.
    pub epoch: u64,
}

/// Commands sent to one mount task.
#[derive(Debug)]
pub enum MountCmd {
    /// Recover now, skipping hysteresis; the report is sent back. With a replica, make
    /// it the active one (replica volumes; recorded before it is moved in).
    Recover(oneshot::Sender<RecoveryReport>, Option<Replica>),
}

/// Why `recover` could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No such mount in the config.
    #[error("{0} is not a configured mount")]
    UnknownMount(String),
    /// The mount task is gone (agent shutting down).
    #[error("The agent is shutting down")]
    ShuttingDown,
}

/// A clonable handle for the control socket and the HTTP endpoints.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    status: SharedStatus,
    mounts: Arc<Mutex<HashMap<PathBuf, mpsc::Sender<MountCmd>>>>,
    leader: Arc<watch::Sender<Option<ClusterLeader>>>,
}

impl AgentHandle {
    /// The published status.
    pub fn status(&self) -> &SharedStatus {
        &self.status
    }

    /// Tell every mount task about the cluster's leader. A leader with a lower epoch
    /// than one already seen is ignored: clients never go back to a deposed server.
    pub fn set_leader(&self, leader: ClusterLeader) -> bool {
        let newer = self
            .leader
            .borrow()
            .as_ref()
            .is_none_or(|cur| leader.epoch > cur.epoch);
        if newer {
            {
                let mut st = self.status.lock();
                st.cluster_leader = Some(leader.node.clone());
                st.cluster_epoch = Some(leader.epoch);
            }
            self.leader.send_replace(Some(leader));
        }
        newer
    }

    /// Force a recovery of `mountpoint` and wait for its report.
    pub async fn recover(&self, mountpoint: &Path) -> Result<RecoveryReport, AgentError> {
        self.recover_to(mountpoint, None).await
    }

    /// Force a recovery of `mountpoint` onto `replica` (when given: it becomes the
    /// active replica, recorded before the move) and wait for its report.
    pub async fn recover_to(
        &self,
        mountpoint: &Path,
        replica: Option<Replica>,
    ) -> Result<RecoveryReport, AgentError> {
        let tx = self
            .mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(mountpoint)
            .cloned()
            .ok_or_else(|| AgentError::UnknownMount(mountpoint.display().to_string()))?;
        let (rtx, rrx) = oneshot::channel();
        tx.send(MountCmd::Recover(rtx, replica))
            .await
            .map_err(|_| AgentError::ShuttingDown)?;
        rrx.await.map_err(|_| AgentError::ShuttingDown)
    }
}

struct MountTask {
    cfg: MountConfig,
    join: JoinHandle<()>,
    heartbeat: Heartbeat,
}

/// The running agent.
pub struct Agent<H: Host> {
    host: Arc<H>,
    config: Config,
    emit: Emitter,
    status: SharedStatus,
    handle: AgentHandle,
    table_rx: watch::Receiver<Arc<Vec<Mounted>>>,
    table_task: JoinHandle<()>,
    server_task: JoinHandle<()>,
    server_heartbeat: Heartbeat,
    servers_tx: watch::Sender<ServerPlan>,
    /// Bumped whenever a server becomes reachable (wakes mounts that wait for one).
    reach: Arc<watch::Sender<u64>>,
    mounts: BTreeMap<PathBuf, MountTask>,
    metrics: Arc<AgentMetrics>,
}

impl<H: Host> std::fmt::Debug for Agent<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("mounts", &self.mounts.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn machine_config(m: &MountConfig, a: &AgentSettings) -> MachineConfig {
    MachineConfig {
        failures_before_recovery: m.failures_before_recovery,
        backoff_initial: a.backoff_initial,
        backoff_max: a.backoff_max,
    }
}

/// What the server loop probes: every configured server (with its RPC version), the
/// settings, and the cadence of pings of servers that do not answer (the shortest
/// mount probe interval, so a return is seen within one probe interval).
type ServerPlan = (Vec<(String, u32)>, AgentSettings, Duration);

fn plan_of(config: &Config) -> ServerPlan {
    let ping_every = config
        .mounts
        .iter()
        .map(|m| m.probe_interval)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .min(config.agent.server_probe_interval)
        .max(Duration::from_millis(100));
    (servers_of(config), config.agent.clone(), ping_every)
}

fn servers_of(config: &Config) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = Vec::new();
    for m in &config.mounts {
        for s in &m.servers {
            if !v.iter().any(|(h, _)| h == &s.host) {
                v.push((s.host.clone(), m.nfs_version.rpc_version()));
            }
        }
    }
    v
}

/// The longest a mount task may go between heartbeats while healthy.
fn mount_bound(m: &MountConfig, a: &AgentSettings) -> Duration {
    let step = [
        m.probe_deadline,
        a.mount_timeout,
        a.umount_timeout,
        a.rpc_timeout,
        m.hook_timeout,
    ]
    .into_iter()
    .max()
    .unwrap_or_default();
    m.probe_interval + step + Duration::from_secs(5)
}

impl<H: Host> Agent<H> {
    /// Start every task with production metrics. Must be called inside a tokio runtime.
    pub fn start(host: Arc<H>, config: Config, emit: Emitter) -> Self {
        Agent::start_with_metrics(host, config, emit, Arc::new(AgentMetrics::new()))
    }

    /// Start every task, recording into `metrics`.
    pub fn start_with_metrics(
        host: Arc<H>,
        config: Config,
        emit: Emitter,
        metrics: Arc<AgentMetrics>,
    ) -> Self {
        let status = SharedStatus::default();
        status.lock().config = config.source.as_ref().map(|p| p.display().to_string());
        let handle = AgentHandle {
            status: status.clone(),
            mounts: Arc::new(Mutex::new(HashMap::new())),
            leader: Arc::new(watch::channel(None).0),
        };
        let initial = Arc::new(host.mount_table().unwrap_or_default());
        let (table_tx, table_rx) = watch::channel(initial);
        let table_period = config
            .mounts
            .iter()
            .map(|m| m.probe_interval)
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let table_task = tokio::spawn(table_loop(host.clone(), table_tx, table_period));

        let (servers_tx, servers_rx) = watch::channel(plan_of(&config));
        // One iteration: a ping, then perhaps a full probe, each bounded by rpc_timeout.
        let server_heartbeat = Heartbeat::new(
            config.agent.server_probe_interval
                + config.agent.rpc_timeout * 2
                + Duration::from_secs(5),
        );
        let reach = Arc::new(watch::channel(0u64).0);
        let server_task = tokio::spawn(server_loop(
            host.clone(),
            servers_rx,
            status.clone(),
            emit.clone(),
            server_heartbeat.clone(),
            metrics.clone(),
            reach.clone(),
        ));
        emit.emit(
            Event::new(EventKind::AgentStarted).reason(format!("{} mounts", config.mounts.len())),
        );
        let mut agent = Agent {
            host,
            config: config.clone(),
            emit,
            status,
            handle,
            table_rx,
            table_task,
            server_task,
            server_heartbeat,
            servers_tx,
            reach,
            mounts: BTreeMap::new(),
            metrics,
        };
        for m in &config.mounts {
            agent.spawn_mount(m.clone());
        }
        agent
    }

    /// A handle for the control socket and HTTP endpoints.
    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// The published status.
    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    /// The metrics this agent records into.
    pub fn metrics(&self) -> Arc<AgentMetrics> {
        self.metrics.clone()
    }

    /// The config in effect.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn spawn_mount(&mut self, cfg: MountConfig) {
        let (tx, rx) = mpsc::channel(8);
        let heartbeat = Heartbeat::new(mount_bound(&cfg, &self.config.agent));
        let ctx = MountCtx {
            host: self.host.clone(),
            cfg: cfg.clone(),
            settings: self.config.agent.clone(),
            status: self.status.clone(),
            emit: self.emit.clone(),
            table: self.table_rx.clone(),
            heartbeat: heartbeat.clone(),
            metrics: self.metrics.clone(),
            leader: self.handle.leader.subscribe(),
            accepted: None,
            store: ReplicaStore::new(&self.config.agent.state_dir),
            reach: self.reach.clone(),
        };
        self.handle
            .mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cfg.mountpoint.clone(), tx);
        let join = tokio::spawn(mount_loop(ctx, rx));
        self.mounts.insert(
            cfg.mountpoint.clone(),
            MountTask {
                cfg,
                join,
                heartbeat,
            },
        );
    }

    fn stop_mount(&mut self, mountpoint: &Path) {
        if let Some(t) = self.mounts.remove(mountpoint) {
            t.join.abort();
        }
        self.handle
            .mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(mountpoint);
        self.status
            .lock()
            .mounts
            .remove(&mountpoint.display().to_string());
        self.metrics.remove_mount(&mountpoint.display().to_string());
    }

    /// Apply a new, already validated config: removed mounts are forgotten (not
    /// unmounted), new ones start, changed ones restart with the new settings.
    pub fn apply_config(&mut self, new: Config) {
        let settings_changed = new.agent != self.config.agent;
        let old: Vec<PathBuf> = self.mounts.keys().cloned().collect();
        for mp in old {
            let keep = new
                .mounts
                .iter()
                .find(|m| m.mountpoint == mp)
                .is_some_and(|m| !settings_changed && self.mounts[&mp].cfg == *m);
            if !keep {
                self.stop_mount(&mp);
            }
        }
        self.config = new.clone();
        for m in &new.mounts {
            if !self.mounts.contains_key(&m.mountpoint) {
                self.spawn_mount(m.clone());
            }
        }
        self.servers_tx.send_replace(plan_of(&new));
        self.status.lock().reload_error = None;
        self.metrics.set_config_reload(true);
        self.emit.emit(
            Event::new(EventKind::ConfigReloaded)
                .outcome("ok")
                .reason(format!("{} mounts", new.mounts.len())),
        );
    }

    /// Record a refused reload (the old config stays in effect).
    pub fn reject_config(&self, why: String) {
        self.status.lock().reload_error = Some(why.clone());
        self.metrics.set_config_reload(false);
        self.emit.emit(
            Event::new(EventKind::ConfigReloaded)
                .outcome("rejected")
                .reason(why),
        );
    }

    /// True while every task has made progress recently (feeds the systemd watchdog).
    pub fn alive(&self) -> bool {
        let now = clock_now();
        !self.table_task.is_finished()
            && !self.server_task.is_finished()
            && self.server_heartbeat.fresh(now)
            && self
                .mounts
                .values()
                .all(|t| !t.join.is_finished() && t.heartbeat.fresh(now))
    }

    /// Stop every task. Mounts are left as they are.
    pub fn shutdown(mut self) {
        let mps: Vec<PathBuf> = self.mounts.keys().cloned().collect();
        for mp in mps {
            self.stop_mount(&mp);
        }
        self.table_task.abort();
        self.server_task.abort();
    }
}

async fn table_loop<H: Host>(host: Arc<H>, tx: watch::Sender<Arc<Vec<Mounted>>>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match host.mount_table() {
            Ok(t) => {
                tx.send_replace(Arc::new(t));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the mount table"),
        }
    }
}

/// How the server loop paces one server.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// When the next full probe is due.
    next_full: Instant,
    /// The wait after the last failed full probe (zero while the server answers).
    backoff: Duration,
    /// The last ping passed (and was followed by a full probe).
    ping_ok: bool,
}

/// Probe every configured server at the RPC level. A server that answers is probed in
/// full every `server_probe_interval`. One that does not is probed in full at an
/// exponential backoff (`server_probe_interval` doubling up to `backoff_max`) and, in
/// between, pinged ([`Host::ping_server`], one NULL call) at the probe cadence: a ping
/// that passes after one that failed is followed by a full probe at once, so its return
/// is seen within one probe interval while a dead server costs one NULL call per
/// interval and a full probe (and no event) only at the backoff.
async fn server_loop<H: Host>(
    host: Arc<H>,
    mut servers: watch::Receiver<ServerPlan>,
    status: SharedStatus,
    emit: Emitter,
    heartbeat: Heartbeat,
    metrics: Arc<AgentMetrics>,
    reach: Arc<watch::Sender<u64>>,
) {
    let mut pace: HashMap<String, Pace> = HashMap::new();
    loop {
        let (list, settings, ping_every) = servers.borrow_and_update().clone();
        pace.retain(|h, _| list.iter().any(|(n, _)| n == h));
        let now = clock_now();
        let mut set = tokio::task::JoinSet::new();
        for (name, version) in list.clone() {
            let p = pace.get(&name).copied();
            let full = p.is_none_or(|p| now >= p.next_full);
            // Only servers whose last full probe failed are pinged.
            let ping = !full && p.is_some_and(|p| !p.backoff.is_zero());
            if !full && !ping {
                continue;
            }
            let ping_ok_before = p.is_some_and(|p| p.ping_ok);
            let host = host.clone();
            let timeout = settings.rpc_timeout;
            set.spawn(async move {
                if ping {
                    let ok = host.ping_server(&name, version, timeout).await.is_ok();
                    // A ping that passed before was followed by a full probe that
                    // failed: wait for the backoff rather than probe in full each time.
                    if !ok || ping_ok_before {
                        return (name, Some(ok), None);
                    }
                }
                let probe = host.probe_server(&name, version, timeout).await;
                (name, ping.then_some(true), Some(probe))
            });
        }
        let mut probes = Vec::new();
        while let Some(r) = set.join_next().await {
            let Ok((name, ping_ok, probe)) = r else {
                continue;
            };
            let p = pace.entry(name).or_insert(Pace {
                next_full: now,
                backoff: Duration::ZERO,
                ping_ok: false,
            });
            if let Some(ok) = ping_ok {
                p.ping_ok = ok;
            }
            if let Some(probe) = probe {
                let done = clock_now();
                if probe.reachable {
                    p.backoff = Duration::ZERO;
                    p.ping_ok = false;
                    p.next_full = done + settings.server_probe_interval;
                } else {
                    p.backoff = if p.backoff.is_zero() {
                        settings.server_probe_interval
                    } else {
                        p.backoff.saturating_mul(2).min(settings.backoff_max)
                    }
                    .max(settings.server_probe_interval.min(settings.backoff_max));
                    p.next_full = done + p.backoff;
                }
                probes.push(probe);
            }
        }
        record_server_probes(&status, &emit, &reach, &probes);
        for p in &probes {
            metrics.set_server_rpc(&p.host, p.reachable, p.rtt);
        }
        metrics.set_workers(host.stuck_workers(), host.live_workers());
        {
            let mut st = status.lock();
            st.servers.retain(|h, _| {
                let keep = list.iter().any(|(n, _)| n == h);
                if !keep {
                    // Removed by a reload: its series must not linger (a stale
                    // `server_rpc_up 0` would keep an alert firing forever).
                    metrics.remove_server(h);
                }
                keep
            });
            st.stuck_workers = host.stuck_workers();
        }
        heartbeat.touch();
        // Wake for the next full probe due, or the next ping of a server that does not
        // answer.
        let now = clock_now();
        let wake = pace
            .values()
            .map(|p| {
                if p.backoff.is_zero() {
                    p.next_full
                } else {
                    p.next_full.min(now + ping_every)
                }
            })
            .min()
            .unwrap_or(now + settings.server_probe_interval)
            .max(now + Duration::from_millis(10));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            changed = servers.changed() => if changed.is_err() { return },
        }
    }
}

/// Fold fresh server probes into the status, emitting reachability changes.
pub(crate) fn record_server_probes(
    status: &SharedStatus,
    emit: &Emitter,
    reach: &watch::Sender<u64>,
    probes: &[ServerProbe],
) {
    let now = clock_ms();
    let mut back = false;
    let mut st = status.lock();
    for p in probes {
        let prev = st.servers.get(&p.host).cloned();
        let was = prev.as_ref().map(|s| s.reachable);
        let reachable_since_ms = match (&prev, p.reachable) {
            (Some(s), true) if s.reachable => s.reachable_since_ms,
            (_, true) => Some(now),
            (_, false) => None,
        };
        if was != Some(p.reachable) {
            back |= p.reachable;
            let mut e = Event::new(EventKind::ServerReachability)
                .server(p.host.clone())
                .outcome(if p.reachable {
                    "reachable"
                } else {
                    "unreachable"
                });
            if let Some(err) = &p.error {
                e = e.reason(err.clone());
            }
            emit.emit(e);
        }
        st.servers.insert(
            p.host.clone(),
            ServerStatus {
                host: p.host.clone(),
                reachable: p.reachable,
                rtt_us: p
                    .rtt
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                error: p.error.clone(),
                addresses: p.addresses.clone(),
                reachable_since_ms,
                probed_ms: now,
            },
        );
    }
    drop(st);
    if back {
        reach.send_modify(|n| *n = n.wrapping_add(1));
    }
}
struct MountCtx<H: Host> {
    host: Arc<H>,
    cfg: MountConfig,
    settings: AgentSettings,
    status: SharedStatus,
    emit: Emitter,
    table: watch::Receiver<Arc<Vec<Mounted>>>,
    heartbeat: Heartbeat,
    metrics: Arc<AgentMetrics>,
    leader: watch::Receiver<Option<ClusterLeader>>,
    /// The last leader this mount accepted (its address is one of the mount's servers).
    accepted: Option<ClusterLeader>,
    store: ReplicaStore,
    /// Bumped when a server becomes reachable.
    reach: Arc<watch::Sender<u64>>,
}

impl<H: Host> MountCtx<H> {
    /// The address of the cluster leader this mount follows, when the agent follows a
    /// cluster and accepted one. Never for replica volumes: their servers are not the
    /// cluster's nodes, and the active replica decides (see [`crate::replica`]).
    fn leader_address(&self) -> Option<String> {
        if self.cfg.has_replicas() {
            return None;
        }
        self.accepted.as_ref().and_then(|l| l.address.clone())
    }

    fn mp(&self) -> String {
        self.cfg.mountpoint.display().to_string()
    }

    /// Whether a mount-table `addr=` is (one of the addresses of) `host`.
    fn is_address_of(&self, addr: &str, host: &str) -> bool {
        addr == host
            || self
                .status
                .lock()
                .servers
                .get(host)
                .is_some_and(|s| s.addresses.iter().any(|a| a == addr))
    }

    /// Whether `l`'s address is one of this mount's configured servers.
    fn is_our_server(&self, l: &ClusterLeader) -> bool {
        l.address
            .as_deref()
            .is_some_and(|a| self.replica_for(a, None).is_some())
    }

    /// Say that `l` is not acted on, and what the mount keeps.
    fn refuse_leader(&self, l: &ClusterLeader) {
        let addr = l.address.clone().unwrap_or_default();
        let servers: Vec<&str> = self.cfg.servers.iter().map(|s| s.host.as_str()).collect();
        let keeping = match &self.accepted {
            Some(a) => format!("keeping leader {} at epoch {}", a.node, a.epoch),
            None => "keeping the current mount".to_owned(),
        };
        let why = format!(
            "cluster leader {} at epoch {} is at {addr}, which is none of this mount's servers ({}); refused, {keeping}",
            l.node,
            l.epoch,
            servers.join(", ")
        );
        tracing::warn!(mount = %self.mp(), "{why}");
        self.emit.emit(
            Event::new(EventKind::LeaderRefused)
                .mount(self.mp())
                .server(addr)
                .outcome("refused")
                .reason(why),
        );
    }

    /// Which configured candidate a mount-table source belongs to: its `addr=` is
    /// (an address of) the host, and its export path is that candidate's.
    fn replica_for(&self, addr: &str, export: Option<&str>) -> Option<Replica> {
        let st = self.status.lock();
        self.cfg
            .servers
            .iter()
            .find(|s| {
                let host = s.host == addr
                    || st
                        .servers
                        .get(&s.host)
                        .is_some_and(|ss| ss.addresses.iter().any(|a| a == addr));
                host && export.is_none_or(|e| same_export(e, self.cfg.export_of(s)))
            })
            .map(|s| self.cfg.replica_of(s))
    }

    /// Replica volumes: report a problem with the state file (event, log, status).
    fn report_replica(&self, outcome: &str, why: &str) {
        tracing::warn!(mount = %self.mp(), outcome, "{why}");
        self.emit.emit(
            Event::new(EventKind::Replica)
                .mount(self.mp())
                .outcome(outcome)
                .reason(why.to_string()),
        );
    }

    /// Look at the mount table, then probe. Returns the outcome (if probed) and the state.
    /// Replica volumes without a record adopt the replica mounted there, if any.
    async fn observe(
        &self,
        chosen: &mut Option<Replica>,
        book: Option<&mut ReplicaBook>,
    ) -> (Option<ProbeOutcome>, MountState) {
        let table = self.table.borrow().clone();
        let top = topmost(&table, &self.cfg.mountpoint).cloned();
        let mounted_nfs = top.as_ref().filter(|m| m.is_nfs());
        match self.cfg.mode {
            MountMode::Direct if mounted_nfs.is_none() => return (None, MountState::NotMounted),
            MountMode::Autofs if top.is_none() => return (None, MountState::NotMounted),
            _ => {}
        }
        let outcome = self
            .host
            .probe(&self.cfg.mountpoint, self.cfg.probe_deadline)
            .await;
        let mut state = outcome.classify();
        let source = mounted_nfs.and_then(|m| {
            m.server
                .as_deref()
                .and_then(|a| self.replica_for(a, m.export.as_deref()))
        });
        if let (Some(book), Some(r)) = (book, &source) {
            // Replica volumes: what is mounted must be the active replica.
            let active = match book.active() {
                Some(a) => a,
                None => {
                    let why = format!(
                        "adopted {r}, mounted at {}, as the active replica ({})",
                        self.mp(),
                        book.problem.as_deref().unwrap_or("no record")
                    );
                    let rec = book.next(r, why.clone(), clock_ms());
                    match book.commit(rec) {
                        Ok(()) => self.report_replica("adopted", &why),
                        Err(e) => {
                            self.report_replica("state-write-failed", &nfsha_core::error_chain(&e))
                        }
                    }
                    r.clone()
                }
            };
            if state == MountState::Healthy && *r != active {
                *chosen = Some(r.clone());
                return (Some(outcome), MountState::WrongServer);
            }
        }
        if state == MountState::Healthy
            && let Some(m) = mounted_nfs
            && let Some(addr) = m.server.clone()
        {
            // Following a cluster: the leader is the only right server.
            if let Some(leader) = self.leader_address() {
                if !self.is_address_of(&addr, &leader) {
                    return (Some(outcome), MountState::WrongServer);
                }
                *chosen = Some(Replica {
                    host: leader,
                    export: m.export.clone().unwrap_or_else(|| self.cfg.export.clone()),
                });
                return (Some(outcome), state);
            }
            match (source, chosen.as_ref()) {
                (None, _) => state = MountState::WrongServer,
                (Some(s), None) => *chosen = Some(s),
                (Some(s), Some(c)) if &s != c => {
                    // autofs picks the server itself: follow it.
                    if self.cfg.mode == MountMode::Autofs {
                        *chosen = Some(s);
                    } else {
                        state = MountState::WrongServer;
                    }
                }
                _ => {}
            }
        }
        (Some(outcome), state)
    }

    fn publish(
        &self,
        machine: &MountMachine,
        chosen: &Option<Replica>,
        book: Option<&ReplicaBook>,
        f: impl FnOnce(&mut MountStatus),
    ) {
        let since_ms = clock_ms().saturating_sub(
            u64::try_from(
                clock_now()
                    .saturating_duration_since(machine.since())
                    .as_millis(),
            )
            .unwrap_or(0),
        );
        let mut st = self.status.lock();
        let entry = st.mounts.entry(self.mp()).or_insert_with(|| MountStatus {
            mountpoint: self.mp(),
            state: MountState::Unknown,
            since_ms,
            server: None,
            last_error: None,
            probe_rtt_us: None,
            recovering: false,
            recovery_error: None,
            recoveries: 0,
            failed_attempts: 0,
            mode: match self.cfg.mode {
                MountMode::Direct => "direct".into(),
                MountMode::Autofs => "autofs".into(),
            },
            export: None,
            replica: None,
            write: None,
        });
        entry.state = machine.state();
        entry.since_ms = since_ms;
        entry.server = chosen.as_ref().map(|r| r.host.clone());
        entry.export = chosen.as_ref().map(|r| r.export.clone());
        entry.replica = book.map(|b| ReplicaStatus {
            active: b.active().map(|r| r.to_string()),
            generation: b.record().map(|r| r.generation),
            reason: b.record().map(|r| r.reason.clone()),
            problem: b.problem.clone(),
        });
        entry.recovering = machine.recovering();
        entry.failed_attempts = machine.failed_attempts();
        f(entry);
        let since = std::time::UNIX_EPOCH + Duration::from_millis(since_ms);
        // Replica volumes: the series name the replica, `host:export`.
        let server = match (book, chosen) {
            (Some(_), Some(r)) => Some(r.to_string()),
            _ => entry.server.clone(),
        };
        self.metrics
            .set_mount_state(&entry.mountpoint, entry.state, since, server.as_deref());
        if let Some(b) = book {
            self.metrics.set_mount_replica(
                &entry.mountpoint,
                b.record().map(|r| r.generation),
                b.problem.is_some() && b.active().is_none(),
            );
        }
    }

    /// Fold a write probe's outcome into the status, metrics and events (on change).
    fn record_write(&self, o: &ProbeOutcome) {
        let state = o.classify_write();
        let detail = (state != WriteState::Writable).then(|| describe(o));
        let prev = {
            let mut st = self.status.lock();
            let Some(entry) = st.mounts.get_mut(&self.mp()) else {
                return;
            };
            let prev = entry.write.as_ref().map(|w| w.state);
            if prev != Some(state) {
                entry.write = Some(WriteStatus {
                    state,
                    since_ms: clock_ms(),
                    detail: detail.clone(),
                });
            } else if let Some(w) = entry.write.as_mut() {
                w.detail = detail.clone();
            }
            prev
        };
        self.metrics.set_write_state(&self.mp(), Some(state));
        if prev != Some(state) {
            let from = prev.map_or("unknown", WriteState::as_str);
            let mut e = Event::new(EventKind::WriteProbe)
                .mount(self.mp())
                .transition(from, state.as_str())
                .errno(o.errno())
                .duration(o.elapsed());
            if let Some(d) = &detail {
                e = e.reason(d.clone());
            }
            if state != WriteState::Writable {
                tracing::warn!(mount = %self.mp(), state = %state, "write probe: {}", detail.as_deref().unwrap_or(""));
            }
            self.emit.emit(e);
        }
    }

    /// Whether one of this mount's servers answered its last RPC probe.
    fn any_server_reachable(&self) -> bool {
        let st = self.status.lock();
        self.cfg
            .servers
            .iter()
            .any(|s| st.servers.get(&s.host).is_some_and(|ss| ss.reachable))
    }

    fn reachable_for(&self, host: &str) -> Option<Duration> {
        let st = self.status.lock();
        let since = st.servers.get(host)?.reachable_since_ms?;
        Some(Duration::from_millis(clock_ms().saturating_sub(since)))
    }
}

/// Whether two export paths name the same directory (`/a/` and `/a//` are `/a`).
fn same_export(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split('/')
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    };
    norm(a) == norm(b)
}

/// Shortest time between two write probes of one mount (each creates, fsyncs and
/// unlinks a file on the server); the first healthy probe after a recovery writes too.
pub const WRITE_PROBE_EVERY: Duration = Duration::from_secs(10);

/// A stable offset within `interval` derived from the mountpoint (FNV-1a).
fn phase(mountpoint: &Path, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in mountpoint.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let micros = u64::try_from(interval.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_micros(h % micros)
}

/// How often a run of recoveries failing the same way is summed up in a
/// `recovery_summary` event while it lasts (it is also summed up when it ends).
pub const OUTAGE_SUMMARY_EVERY: Duration = Duration::from_secs(300);

/// Recoveries of one mount failing the same way: the first is reported step by step,
/// the others only in a summary (issue 18: a mount whose server is gone must not write
/// three events a second).
#[derive(Debug)]
struct FailureRun {
    /// The error they all failed with.
    error: String,
    /// Wall-clock ms of the first failure.
    since_ms: u64,
    /// Attempts in the run, the first included.
    attempts: u32,
    /// Attempts since the last summary (or the first failure).
    unreported: u32,
    /// Wall-clock ms of the latest attempt.
    last_attempt_ms: u64,
    /// When the last summary (or the first failure) was emitted.
    last_summary: Instant,
}

impl FailureRun {
    fn summary(&self, mount: &str, outcome: &str, next: Option<Duration>) -> Event {
        let length = Duration::from_millis(self.last_attempt_ms.saturating_sub(self.since_ms));
        let mut why = format!(
            "{} attempts in {} failed the same way ({} not reported one by one): {}",
            self.attempts,
            humantime::format_duration(Duration::from_secs(length.as_secs())),
            self.unreported,
            self.error
        );
        match next {
            Some(d) => why.push_str(&format!(
                "; next attempt in {} or as soon as a server answers",
                humantime::format_duration(d)
            )),
            None => why.push_str("; the run has ended"),
        }
        let mut e = Event::new(EventKind::RecoverySummary)
            .mount(mount.to_string())
            .outcome(outcome)
            .duration(length)
            .reason(why);
        e.ts_ms = self.last_attempt_ms.max(self.since_ms);
        e
    }
}

async fn mount_loop<H: Host>(mut ctx: MountCtx<H>, mut rx: mpsc::Receiver<MountCmd>) {
    let mut epoch_seen: Option<u64> = None;
    // A leader already known when this task starts counts as news.
    ctx.leader.mark_changed();
    let mut machine = MountMachine::new(machine_config(&ctx.cfg, &ctx.settings), clock_now());
    let mut chosen: Option<Replica> = None;
    // Replica volumes: the active replica, from the state file.
    let mut book = ctx.cfg.has_replicas().then(|| {
        let (book, problem) = ReplicaBook::open(ctx.store.clone(), &ctx.cfg.mountpoint);
        if let Some(p) = problem {
            ctx.report_replica("state-missing-or-corrupt", &p);
        }
        book
    });
    // Spread mounts over their interval so 1,000 mounts do not all probe at once
    // (a burst would need as many worker processes as mounts).
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + phase(&ctx.cfg.mountpoint, ctx.cfg.probe_interval),
        ctx.cfg.probe_interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ctx.publish(&machine, &chosen, book.as_ref(), |_| {});
    // The last leader record refused (its address is none of this mount's servers).
    let mut refused: Option<ClusterLeader> = None;
    let mut last_write: Option<Instant> = None;
    // Recoveries failing the same way, told once and then summed up.
    let mut run: Option<FailureRun> = None;
    let mut reach = ctx.reach.subscribe();
    loop {
        let mut waiting: Option<oneshot::Sender<RecoveryReport>> = None;
        let mut requested: Option<Replica> = None;
        let mut leader_moved = false;
        let mut server_back = false;
        if refused.as_ref().is_some_and(|r| ctx.is_our_server(r)) {
            // A name of ours now resolves to its address: look at the current record again.
            ctx.leader.mark_changed();
        }
        tokio::select! {
            _ = tick.tick() => {}
            changed = reach.changed() => {
                if changed.is_err() {
                    return;
                }
                reach.borrow_and_update();
                // A server came back while this mount's recoveries back off: try now
                // rather than at the end of the backoff.
                let backing_off = machine.failed_attempts() > 0
                    && !machine.recovering()
                    && machine.not_before().is_some_and(|t| t > clock_now());
                if !backing_off || !ctx.any_server_reachable() {
                    continue;
                }
                machine.retry_no_later_than(clock_now());
                server_back = true;
            }
            cmd = rx.recv() => match cmd {
                None => return,
                Some(MountCmd::Recover(reply, replica)) => {
                    waiting = Some(reply);
                    requested = replica;
                }
            },
            changed = ctx.leader.changed() => {
                if changed.is_err() {
                    return;
                }
                let leader = ctx.leader.borrow_and_update().clone();
                let leader = match leader.filter(|l| l.address.is_some()) {
                    Some(l) if !ctx.is_our_server(&l) => {
                        if refused.as_ref() != Some(&l) {
                            ctx.refuse_leader(&l);
                            refused = Some(l);
                        }
                        None
                    }
                    other => other,
                };
                if let Some(l) = leader {
                    refused = None;
                    let first = epoch_seen.is_none();
                    if epoch_seen.is_none_or(|e| l.epoch > e) {
                        epoch_seen = Some(l.epoch);
                        ctx.accepted = Some(l.clone());
                        let on_leader = chosen.is_some()
                            && chosen.as_ref().map(|r| &r.host) == l.address.as_ref();
                        // A new epoch means a new primary: with replicated storage every
                        // file handle changes, so remount before applications hit ESTALE.
                        leader_moved = (!first || !on_leader) && !ctx.cfg.has_replicas();
                        if leader_moved {
                            ctx.emit.emit(
                                Event::new(EventKind::MountStateChanged)
                                    .mount(ctx.mp())
                                    .server(l.address.clone().unwrap_or_default())
                                    .reason(format!("cluster leader {} at epoch {}", l.node, l.epoch)),
                            );
                        }
                    }
                }
            }
        }
        ctx.heartbeat.touch();
        let now = clock_now();
        let mut target: Option<String> = None;
        let forced = waiting.is_some() || leader_moved;
        let action = if forced {
            machine.force_recovery(now)
        } else if server_back {
            machine.on_tick(now)
        } else {
            let (outcome, observed) = ctx.observe(&mut chosen, book.as_mut()).await;
            ctx.heartbeat.touch();
            if let Some(o) = &outcome {
                ctx.metrics.observe_probe(&ctx.mp(), o);
            }
            let now = clock_now();
            let (transition, mut action) = machine.on_probe(now, observed);
            if machine.failed_attempts() == 0
                && let Some(r) = run.take()
                && r.unreported > 0
            {
                // Healthy again without a recovery of ours (the server came back).
                ctx.emit.emit(r.summary(&ctx.mp(), "ended", None));
            }
            if let Some(tr) = transition {
                let mut e = Event::new(EventKind::MountStateChanged)
                    .mount(ctx.mp())
                    .transition(tr.from.as_str(), tr.to.as_str())
                    .errno(outcome.as_ref().and_then(|o| o.errno()));
                if let Some(o) = &outcome {
                    // duration_ms: how long the deciding probe ran (it began that much
                    // before this event), so timelines can place the change precisely.
                    e = e.reason(describe(o)).duration(o.elapsed());
                }
                if let Some(s) = &chosen {
                    e = e.server(s.host.clone());
                }
                ctx.emit.emit(e);
            }
            if action == Action::None && observed == MountState::Healthy {
                if let Some(cur) = chosen.clone()
                    && let Some(best) =
                        selection::should_fail_back(&ctx.cfg, &cur, |h| ctx.reachable_for(h))
                {
                    target = Some(best.host);
                    action = machine.force_recovery(now);
                }
            } else if action == Action::None {
                action = machine.on_tick(now);
            }
            ctx.publish(&machine, &chosen, book.as_ref(), |m| {
                if let Some(o) = &outcome {
                    match o {
                        ProbeOutcome::Ok { latency } => {
                            m.probe_rtt_us = Some(u64::try_from(latency.as_micros()).unwrap_or(0))
                        }
                        other if observed != MountState::Healthy => {
                            m.last_error = Some(describe(other))
                        }
                        _ => {}
                    }
                } else if observed == MountState::NotMounted {
                    m.last_error = Some("nothing mounted".into());
                }
            });
            // The write probe: a state of its own, never a cause of recovery.
            if ctx.cfg.write_probe
                && observed == MountState::Healthy
                && action == Action::None
                && last_write.is_none_or(|t| now.saturating_duration_since(t) >= WRITE_PROBE_EVERY)
            {
                let o = ctx
                    .host
                    .write_probe(&ctx.cfg.mountpoint, ctx.cfg.probe_deadline)
                    .await;
                ctx.heartbeat.touch();
                last_write = Some(now);
                ctx.record_write(&o);
            }
            action
        };
        let Action::Recover { cause } = action else {
            if let Some(reply) = waiting {
                // A recovery is already running; report the state instead of queueing.
                let _ = reply.send(RecoveryReport {
                    mountpoint: ctx.mp(),
                    ok: false,
                    server: chosen.as_ref().map(|r| r.host.clone()),
                    steps: vec![],
                    error: Some("a recovery is already running or backing off".into()),
                    duration_ms: 0,
                });
            }
            continue;
        };
        // Following a cluster: only ever mount from its current leader.
        let strict = match ctx.leader_address() {
            Some(addr) => {
                target = Some(addr);
                true
            }
            None => false,
        };
        let report = run_recovery(
            &ctx,
            &mut machine,
            &mut chosen,
            book.as_mut(),
            requested,
            cause,
            target.as_deref(),
            strict,
            &mut run,
            forced,
        )
        .await;
        if let Some(reply) = waiting {
            let _ = reply.send(report);
        }
        // The next healthy probe also checks writes (a new replica may be read-only).
        last_write = None;
        tick.reset();
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_recovery<H: Host>(
    ctx: &MountCtx<H>,
    machine: &mut MountMachine,
    chosen: &mut Option<Replica>,
    mut book: Option<&mut ReplicaBook>,
    requested: Option<Replica>,
    cause: MountState,
    target: Option<&str>,
    strict: bool,
    run: &mut Option<FailureRun>,
    forced: bool,
) -> RecoveryReport {
    let started = clock_now();
    // After a failed recovery, the next one's events are held back: if it fails the
    // same way they are dropped (and counted in the run's summary), else emitted.
    let quiet = !forced && run.is_some();
    let (emit, held) = if quiet {
        let (e, held) = Emitter::collector();
        (e, Some(held))
    } else {
        (ctx.emit.clone(), None)
    };
    // Replica volumes: the record on disk is the truth at every (re)mount.
    if let Some(b) = book.as_deref_mut()
        && let Some(what) = b.refresh()
    {
        ctx.report_replica("state-rewritten", &what);
    }
    ctx.publish(machine, chosen, book.as_deref(), |_| {});
    emit.emit(
        Event::new(EventKind::RecoveryStarted)
            .mount(ctx.mp())
            .reason(format!("cause: {cause}"))
            .transition(cause.as_str(), "recovering"),
    );
    let mut rec = Recovery {
        host: &ctx.host,
        mount: &ctx.cfg,
        settings: &ctx.settings,
        emit: &emit,
        heartbeat: &ctx.heartbeat,
        steps: Vec::new(),
        probes: Vec::new(),
        replica: book,
        requested,
        pending: None,
    };
    let result = rec.run(target, strict).await;
    let book = rec.replica.take();
    if !rec.probes.is_empty() {
        record_server_probes(&ctx.status, &ctx.emit, &ctx.reach, &rec.probes);
    }
    let ok = result.is_ok();
    let error = result.as_ref().err().map(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(c) = src {
            s.push_str(": ");
            s.push_str(&c.to_string());
            src = c.source();
        }
        s
    });
    if let Ok(server) = &result {
        *chosen = Some(server.clone());
    }
    let now = clock_now();
    machine.on_recovery_finished(now, ok);
    let suppressed = quiet
        && error
            .as_ref()
            .is_some_and(|e| run.as_ref().is_some_and(|r| &r.error == e));
    // Where the rest of this attempt's events go: nowhere when it is folded into the
    // run's summary.
    let out = if suppressed {
        let r = run.as_mut().expect("a run is going on");
        r.attempts += 1;
        r.unreported += 1;
        r.last_attempt_ms = clock_ms();
        if now.saturating_duration_since(r.last_summary) >= OUTAGE_SUMMARY_EVERY {
            ctx.emit
                .emit(r.summary(&ctx.mp(), "failed", Some(machine.backoff())));
            r.unreported = 0;
            r.last_summary = now;
        }
        Emitter::new(|_| {})
    } else {
        if let Some(r) = run.take()
            && r.unreported > 0
        {
            ctx.emit.emit(r.summary(&ctx.mp(), "ended", None));
        }
        for e in held
            .map(|h| std::mem::take(&mut *h.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default()
        {
            ctx.emit.emit(e);
        }
        if let Some(err) = &error {
            *run = Some(FailureRun {
                error: err.clone(),
                since_ms: clock_ms(),
                attempts: 1,
                unreported: 0,
                last_attempt_ms: clock_ms(),
                last_summary: now,
            });
        }
        ctx.emit.clone()
    };
    let repeated = ctx
        .status
        .lock()
        .mounts
        .get(&ctx.mp())
        .is_some_and(|m| m.recovery_error.is_some() && m.recovery_error == error);
    if matches!(result, Err(crate::recovery::RecoveryError::NoActiveReplica)) && !repeated {
        ctx.report_replica(
            "no-active-replica",
            "no active replica is known: nothing is mounted until an operator names one (nfsha recover MOUNTPOINT --replica HOST:EXPORT)",
        );
    }
    // No server answering is not retried at the probe cadence any more: the backoff
    // applies, and the server loop's pings wake this mount as soon as one answers
    // again (see `server_loop`).
    if ok {
        // The verify probe was healthy: report it now rather than a tick later.
        let (tr, _) = machine.on_probe(now, MountState::Healthy);
        if let Some(tr) = tr {
            out.emit(
                Event::new(EventKind::MountStateChanged)
                    .mount(ctx.mp())
                    .transition(tr.from.as_str(), tr.to.as_str())
                    .server(chosen.as_ref().map(|r| r.host.clone()).unwrap_or_default())
                    .reason("recovered"),
            );
        }
    }
    let duration = clock_now().saturating_duration_since(started);
    ctx.metrics.record_recovery(&ctx.mp(), cause, ok, duration);
    let mut e = Event::new(EventKind::RecoveryFinished)
        .mount(ctx.mp())
        .outcome(if ok { "ok" } else { "failed" })
        .duration(duration)
        .reason(format!("cause: {cause}"));
    if let Some(s) = chosen.as_ref() {
        e = e.server(s.host.clone());
    }
    if let Some(err) = &error {
        e = e.reason(format!("cause: {cause}; {err}"));
    }
    out.emit(e);
    ctx.publish(machine, chosen, book.as_deref(), |m| {
        if ok {
            m.recoveries += 1;
            m.last_error = None;
        }
        m.recovery_error = error.clone();
    });
    RecoveryReport {
        mountpoint: ctx.mp(),
        ok,
        server: chosen.as_ref().map(|r| r.host.clone()),
        steps: rec.steps,
        error,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    }
}
