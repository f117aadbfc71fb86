//! The agent's Prometheus metrics ([`AgentMetrics`]) and their OpenMetrics text encoding.
//!
//! Role: one object, shared as `Arc<AgentMetrics>` between the agent's tasks, that they
//! update with cheap synchronous calls (atomics plus a short mutex; nothing awaits, nothing
//! does I/O) and that `/metrics` encodes. It owns its own `prometheus-client` registry (no
//! global state), so tests and benchmarks can hold several.
//!
//! Exported series (all names prefixed `nfsha_`; the list is also [`METRIC_NAMES`]):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `mount_state` | gauge | mountpoint, state | 1 for the current state, 0 for the other eight |
//! | `mount_state_seconds` | gauge | mountpoint | seconds since `since` of the current state, computed at scrape |
//! | `mount_server_info` | gauge | mountpoint, server | 1 for the server the mount currently uses (`host:export` for replica volumes) |
//! | `mount_healthy` | gauge | mountpoint | 1 when the state is `healthy` |
//! | `mount_writable` | gauge | mountpoint, state | with `write_probe`: 1 for the write probe's current result (`writable`, `read-only`, `no-space`, `write-hung`, `write-error`), 0 for the others |
//! | `mount_replica_generation` | gauge | mountpoint | replica volumes: generation of the active replica (absent while none is known) |
//! | `mount_replica_unknown` | gauge | mountpoint | replica volumes: 1 while no active replica is known (`no-active-replica`) |
//! | `probe_duration_seconds` | histogram | mountpoint | latency of probes that returned (ok or errno) |
//! | `probes_total` | counter | mountpoint, result (`ok`/`failed`/`hung`) | probes by result |
//! | `probe_timeouts_total` | counter | mountpoint | probes that passed their deadline |
//! | `recoveries_total` | counter | mountpoint, cause (a state), outcome (`ok`/`failed`) | finished recoveries |
//! | `recovery_duration_seconds` | histogram | mountpoint | duration of finished recoveries |
//! | `server_rpc_up` | gauge | server | 1 when the last RPC probe was answered |
//! | `server_rpc_rtt_seconds` | gauge | server | RTT of the last answered RPC probe (absent while down) |
//! | `probe_workers_stuck` / `probe_workers_live` | gauge | — | worker processes past their deadline / alive |
//! | `config_reload_success` / `config_reload_timestamp_seconds` | gauge | — | last reload outcome and time |
//! | `build_info` | gauge | version | always 1 |
//! | `mountstats_*` | see [`crate::mountstats`] | mountpoint [, op] | kernel counters read at scrape |
//!
//! The `mountstats_*` family, read from `/proc/self/mountstats` at every scrape for the mounts
//! this object knows (those given to [`AgentMetrics::set_mount_state`]):
//! `mountstats_present` (1 when the kernel lists an NFS mount there),
//! `mountstats_age_seconds`, `mountstats_retransmissions_total`, `mountstats_major_timeouts_total`,
//! `mountstats_errors_total` (kernels that print per-op errors); per operation (label `op`, only
//! operations with requests > 0 and in the [`AgentMetrics::set_mountstats_ops`] list, default
//! [`DEFAULT_MOUNTSTATS_OPS`], to bound the series count at 1,000 mounts):
//! `mountstats_op_requests_total`, `mountstats_op_rtt_seconds_total`,
//! `mountstats_op_execute_seconds_total` (cumulative; divide rates for a mean); transport:
//! `mountstats_xprt_connects_total`, `mountstats_xprt_sends_total`,
//! `mountstats_xprt_receives_total`, `mountstats_xprt_bad_xids_total`,
//! `mountstats_xprt_backlog_total`; and `mountstats_read_ok` (0 when the file could not be read)
//! plus `mountstats_malformed_lines`.
//!
//! Failure modes: a poisoned lock is recovered (metrics are advisory); an unreadable
//! mountstats file sets `mountstats_read_ok 0` and drops the `mountstats_*` series for that
//! scrape instead of failing it.

use crate::http::{HealthSource, MountHealth};
use crate::mountstats::{self, Mountstats, NfsMountstats};
use nfsha_core::{MountState, ProbeOutcome, WriteState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Content-Type` of [`AgentMetrics::encode`]'s output (OpenMetrics text, which
/// Prometheus negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric family name `encode()` can produce (without `_total`/`_bucket` suffixes),
/// for dashboards and alert linting.
pub const METRIC_NAMES: &[&str] = &[
    "nfsha_mount_state",
    "nfsha_mount_state_seconds",
    "nfsha_mount_server_info",
    "nfsha_mount_healthy",
    "nfsha_mount_writable",
    "nfsha_mount_replica_generation",
    "nfsha_mount_replica_unknown",
    "nfsha_probe_duration_seconds",
    "nfsha_probes",
    "nfsha_probe_timeouts",
    "nfsha_recoveries",
    "nfsha_recovery_duration_seconds",
    "nfsha_server_rpc_up",
    "nfsha_server_rpc_rtt_seconds",
    "nfsha_probe_workers_stuck",
    "nfsha_probe_workers_live",
    "nfsha_config_reload_success",
    "nfsha_config_reload_timestamp_seconds",
    "nfsha_build_info",
    "nfsha_mountstats_read_ok",
    "nfsha_mountstats_malformed_lines",
    "nfsha_mountstats_present",
    "nfsha_mountstats_age_seconds",
    "nfsha_mountstats_retransmissions",
    "nfsha_mountstats_major_timeouts",
    "nfsha_mountstats_errors",
    "nfsha_mountstats_op_requests",
    "nfsha_mountstats_op_rtt_seconds",
    "nfsha_mountstats_op_execute_seconds",
    "nfsha_mountstats_xprt_connects",
    "nfsha_mountstats_xprt_sends",
    "nfsha_mountstats_xprt_receives",
    "nfsha_mountstats_xprt_bad_xids",
    "nfsha_mountstats_xprt_backlog",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
];

/// Operations exported per op by default: what applications and probes use (v3 and v4 names).
pub const DEFAULT_MOUNTSTATS_OPS: &[&str] = &[
    "GETATTR",
    "LOOKUP",
    "ACCESS",
    "READ",
    "WRITE",
    "COMMIT",
    "OPEN",
    "READDIR",
    "READDIRPLUS",
    "FSSTAT",
    "STATFS",
];

/// Where `/proc/self/mountstats` text comes from (a seam: tests and benchmarks feed text).
pub trait MountstatsSource: Send + Sync + fmt::Debug {
    /// The whole current text of the file.
    fn read(&self) -> std::io::Result<String>;
}

/// Reads `/proc/self/mountstats` (kernel counters only: no RPC, cannot hang on a dead server).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcMountstats;

impl MountstatsSource for ProcMountstats {
    /// Not `read_to_string`: one mountpoint whose name is not UTF-8, anywhere on the host,
    /// made that fail and every `mountstats_*` series vanish. Such a name cannot be a
    /// configured mount (the config is UTF-8), so replacing its bytes loses nothing.
    fn read(&self) -> std::io::Result<String> {
        std::fs::read("/proc/self/mountstats").map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// The wall clock used for `mount_state_seconds` and reload timestamps (a seam for tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MountLabel {
    mountpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    mountpoint: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveryLabels {
    mountpoint: String,
    cause: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabel {
    server: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Probe latency buckets (seconds): 1 ms … 10 s.
const PROBE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Recovery duration buckets (seconds): 100 ms … 5 min.
const RECOVERY_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

fn probe_histogram() -> Histogram {
    Histogram::new(PROBE_BUCKETS)
}

fn recovery_histogram() -> Histogram {
    Histogram::new(RECOVERY_BUCKETS)
}

/// What the agent last said about one mount.
#[derive(Debug, Clone)]
struct MountView {
    state: MountState,
    since: SystemTime,
    server: Option<String>,
    last_error: Option<String>,
    write: Option<WriteState>,
    /// Replica volumes: (generation of the active replica, none known).
    replica: Option<(Option<u64>, bool)>,
}

/// State shared between [`AgentMetrics`] and its scrape-time collector.
#[derive(Debug)]
struct Shared {
    mounts: Mutex<BTreeMap<String, MountView>>,
    mountstats: Arc<dyn MountstatsSource>,
    /// Operations exported per op; `None` = every operation with requests.
    ops: Mutex<Option<Vec<String>>>,
    clock: ClockDebug,
}

struct ClockDebug(Clock);

impl fmt::Debug for ClockDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, MountView>> {
        self.mounts.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn now(&self) -> SystemTime {
        (self.clock.0)()
    }
}

/// The agent's metrics. Create one with [`AgentMetrics::new`], share it as `Arc`, call the
/// `set_*`/`observe_*`/`record_*` methods from any task or thread, serve it with
/// [`crate::serve`].
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    /// `process_*`, unprefixed.
    process: Registry,
    shared: Arc<Shared>,
    probe_duration: HistogramFamily<MountLabel>,
    probes: Family<ProbeLabels, Counter>,
    probe_timeouts: Family<MountLabel, Counter>,
    recoveries: Family<RecoveryLabels, Counter>,
    recovery_duration: HistogramFamily<MountLabel>,
    server_up: Family<ServerLabel, Gauge>,
    server_rtt: Family<ServerLabel, Gauge<f64, AtomicU64>>,
    workers_stuck: Gauge,
    workers_live: Gauge,
    reload_success: Gauge,
    reload_timestamp: Gauge<f64, AtomicU64>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics::new()
    }
}

impl AgentMetrics {
    /// Production metrics: mountstats from `/proc/self/mountstats`, the system wall clock.
    pub fn new() -> AgentMetrics {
        AgentMetrics::with_sources(Arc::new(ProcMountstats), Arc::new(SystemTime::now))
    }

    /// Metrics reading mountstats text from `mountstats` and time from `clock`.
    pub fn with_sources(mountstats: Arc<dyn MountstatsSource>, clock: Clock) -> AgentMetrics {
        let shared = Arc::new(Shared {
            mounts: Mutex::new(BTreeMap::new()),
            mountstats,
            ops: Mutex::new(Some(
                DEFAULT_MOUNTSTATS_OPS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            )),
            clock: ClockDebug(clock),
        });
        let m = AgentMetrics {
            registry: Registry::default(),
            process: Registry::default(),
            shared: shared.clone(),
            probe_duration: Family::new_with_constructor(probe_histogram),
            probes: Family::default(),
            probe_timeouts: Family::default(),
            recoveries: Family::default(),
            recovery_duration: Family::new_with_constructor(recovery_histogram),
            server_up: Family::default(),
            server_rtt: Family::default(),
            workers_stuck: Gauge::default(),
            workers_live: Gauge::default(),
            reload_success: Gauge::default(),
            reload_timestamp: Gauge::default(),
        };
        let mut process = Registry::default();
        process.register_collector(Box::new(crate::process::ProcessCollector::default()));
        let mut registry = Registry::with_prefix("nfsha");
        registry.register_collector(Box::new(MountCollector {
            shared: shared.clone(),
        }));
        registry.register(
            "probe_duration_seconds",
            "Latency of mount probes that returned (ok or with an errno)",
            m.probe_duration.clone(),
        );
        registry.register(
            "probes",
            "Mount probes by result (ok, failed, hung)",
            m.probes.clone(),
        );
        registry.register(
            "probe_timeouts",
            "Mount probes that did not finish within their deadline",
            m.probe_timeouts.clone(),
        );
        registry.register(
            "recoveries",
            "Finished recoveries by the state that caused them and their outcome",
            m.recoveries.clone(),
        );
        registry.register(
            "recovery_duration_seconds",
            "Duration of finished recoveries",
            m.recovery_duration.clone(),
        );
        registry.register(
            "server_rpc_up",
            "1 when the server answered the last RPC probe",
            m.server_up.clone(),
        );
        registry.register(
            "server_rpc_rtt_seconds",
            "Round-trip time of the last answered RPC probe",
            m.server_rtt.clone(),
        );
        registry.register(
            "probe_workers_stuck",
            "Probe worker processes past their deadline that have not been reaped",
            m.workers_stuck.clone(),
        );
        registry.register(
            "probe_workers_live",
            "Probe worker processes alive",
            m.workers_live.clone(),
        );
        registry.register(
            "config_reload_success",
            "1 when the last config reload was taken, 0 when it was rejected",
            m.reload_success.clone(),
        );
        registry.register(
            "config_reload_timestamp_seconds",
            "Unix time of the last config reload attempt",
            m.reload_timestamp.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; the version label is nfsha's",
            ConstGaugeFamily {
                label: ("version", env!("CARGO_PKG_VERSION")),
            },
        );
        // The agent starts with the config it loaded: count that as a successful load.
        m.reload_success.set(1);
        m.reload_timestamp.set(unix_seconds(shared.now()));
        AgentMetrics {
            registry,
            process,
            ..m
        }
    }

    /// Record a mount's classified state, when it began, and the server it is mounted from.
    /// Call on every transition (and once per mount at start); this also makes the mount
    /// "known", so its `mountstats_*` series are exported and `/healthz` lists it.
    pub fn set_mount_state(
        &self,
        mount: &str,
        state: MountState,
        since: SystemTime,
        server: Option<&str>,
    ) {
        let mut mounts = self.shared.lock();
        let view = mounts.entry(mount.to_owned()).or_insert(MountView {
            state,
            since,
            server: None,
            last_error: None,
            write: None,
            replica: None,
        });
        view.state = state;
        view.since = since;
        view.server = server.map(str::to_owned);
        if state == MountState::Healthy {
            view.last_error = None;
        }
    }

    /// Record the write probe's result of a known mount (`None`: no write probe).
    pub fn set_write_state(&self, mount: &str, state: Option<WriteState>) {
        if let Some(v) = self.shared.lock().get_mut(mount) {
            v.write = state;
        }
    }

    /// Record a known mount's active replica generation, and whether none is known
    /// (replica volumes only).
    pub fn set_mount_replica(&self, mount: &str, generation: Option<u64>, unknown: bool) {
        if let Some(v) = self.shared.lock().get_mut(mount) {
            v.replica = Some((generation, unknown));
        }
    }

    /// Record one probe result: latency histogram, result counter, timeouts, and the
    /// `last_error` shown by `/healthz`.
    pub fn observe_probe(&self, mount: &str, outcome: &ProbeOutcome) {
        let label = MountLabel {
            mountpoint: mount.to_owned(),
        };
        let (result, error) = match outcome {
            ProbeOutcome::Ok { latency } => {
                self.probe_duration
                    .get_or_create(&label)
                    .observe(latency.as_secs_f64());
                ("ok", None)
            }
            ProbeOutcome::Failed { op, errno, latency } => {
                self.probe_duration
                    .get_or_create(&label)
                    .observe(latency.as_secs_f64());
                let op = serde_json::to_value(op)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let name = nfsha_core::state::errno_name(*errno);
                ("failed", Some(format!("{op}: {name} (errno {errno})")))
            }
            ProbeOutcome::Hung { deadline } => {
                self.probe_timeouts.get_or_create(&label).inc();
                (
                    "hung",
                    Some(format!(
                        "probe did not finish within {} ms",
                        deadline.as_millis()
                    )),
                )
            }
        };
        self.probes
            .get_or_create(&ProbeLabels {
                mountpoint: label.mountpoint,
                result,
            })
            .inc();
        if let Some(view) = self.shared.lock().get_mut(mount) {
            view.last_error = error;
        }
    }

    /// Record a finished recovery: `cause` is the state that triggered it.
    pub fn record_recovery(&self, mount: &str, cause: MountState, ok: bool, duration: Duration) {
        self.recoveries
            .get_or_create(&RecoveryLabels {
                mountpoint: mount.to_owned(),
                cause: cause.as_str(),
                outcome: if ok { "ok" } else { "failed" },
            })
            .inc();
        self.recovery_duration
            .get_or_create(&MountLabel {
                mountpoint: mount.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Record an RPC probe of a server. `rtt` is the round trip of an answered probe; with
    /// `reachable == false` (or `rtt == None`) the RTT series is removed rather than left stale.
    pub fn set_server_rpc(&self, server: &str, reachable: bool, rtt: Option<Duration>) {
        let label = ServerLabel {
            server: server.to_owned(),
        };
        self.server_up
            .get_or_create(&label)
            .set(i64::from(reachable));
        match rtt.filter(|_| reachable) {
            Some(rtt) => {
                self.server_rtt.get_or_create(&label).set(rtt.as_secs_f64());
            }
            None => {
                self.server_rtt.remove(&label);
            }
        }
    }

    /// Probe workers past their deadline and not yet reaped, and workers alive.
    pub fn set_workers(&self, stuck: usize, live: usize) {
        self.workers_stuck
            .set(i64::try_from(stuck).unwrap_or(i64::MAX));
        self.workers_live
            .set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    /// Record a config reload attempt (stamped with the clock).
    pub fn set_config_reload(&self, ok: bool) {
        self.reload_success.set(i64::from(ok));
        self.reload_timestamp.set(unix_seconds(self.shared.now()));
    }

    /// Forget a mount (removed by a config reload): every series labelled with it goes.
    pub fn remove_mount(&self, mount: &str) {
        self.shared.lock().remove(mount);
        let label = MountLabel {
            mountpoint: mount.to_owned(),
        };
        self.probe_duration.remove(&label);
        self.probe_timeouts.remove(&label);
        self.recovery_duration.remove(&label);
        for result in ["ok", "failed", "hung"] {
            self.probes.remove(&ProbeLabels {
                mountpoint: mount.to_owned(),
                result,
            });
        }
        for cause in MountState::ALL {
            for outcome in ["ok", "failed"] {
                self.recoveries.remove(&RecoveryLabels {
                    mountpoint: mount.to_owned(),
                    cause: cause.as_str(),
                    outcome,
                });
            }
        }
    }

    /// Forget a server (removed by a config reload).
    pub fn remove_server(&self, server: &str) {
        let label = ServerLabel {
            server: server.to_owned(),
        };
        self.server_up.remove(&label);
        self.server_rtt.remove(&label);
    }

    /// Which operations get per-op `mountstats_op_*` series: `Some(list)` (default
    /// [`DEFAULT_MOUNTSTATS_OPS`]) or `None` for every operation with requests (about 3 series
    /// per operation per mount: mind the total at many mounts).
    pub fn set_mountstats_ops(&self, ops: Option<&[&str]>) {
        *self
            .shared
            .ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            ops.map(|l| l.iter().map(|s| (*s).to_owned()).collect());
    }

    /// The mounts known (given to [`set_mount_state`](Self::set_mount_state)), sorted.
    pub fn mounts(&self) -> Vec<String> {
        self.shared.lock().keys().cloned().collect()
    }

    /// Encode every series as OpenMetrics text (serve with [`CONTENT_TYPE`]). Reads
    /// `/proc/self/mountstats` once; cost is measured by `benches/encode.rs`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        // Writing into a String cannot fail; a collector error would only truncate output.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        // The standard process_* series, without the nfsha_ prefix.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.process);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }

    /// [`Self::encode`] in the classic text format 0.0.4 (serve with
    /// [`crate::exposition::CLASSIC_CONTENT_TYPE`]).
    pub fn encode_classic(&self) -> String {
        crate::exposition::to_classic(&self.encode())
    }
}

/// The metrics double as a [`HealthSource`]: every known mount with its state, since,
/// server and the error of its last failed probe.
impl HealthSource for AgentMetrics {
    fn mounts(&self) -> Vec<MountHealth> {
        self.shared
            .lock()
            .iter()
            .map(|(mountpoint, v)| MountHealth {
                mountpoint: mountpoint.clone(),
                state: v.state,
                since: v.since,
                server: v.server.clone(),
                last_error: v.last_error.clone(),
            })
            .collect()
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A single constant gauge with one label (`build_info`).
#[derive(Debug)]
struct ConstGaugeFamily {
    label: (&'static str, &'static str),
}

impl EncodeMetric for ConstGaugeFamily {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), fmt::Error> {
        let labels = [self.label];
        encoder.encode_family(&labels)?.encode_gauge(&1i64)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Scrape-time series: mount state views and mountstats.
#[derive(Debug)]
struct MountCollector {
    shared: Arc<Shared>,
}

impl MountCollector {
    fn encode_states(
        encoder: &mut DescriptorEncoder,
        mounts: &BTreeMap<String, MountView>,
        now: SystemTime,
    ) -> Result<(), fmt::Error> {
        {
            let mut e = encoder.encode_descriptor(
                "mount_state",
                "1 for the mount's current classified state, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for (m, v) in mounts {
                for s in MountState::ALL {
                    let labels = [("mountpoint", m.as_str()), ("state", s.as_str())];
                    e.encode_family(&labels)?
                        .encode_gauge(&i64::from(v.state == s))?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "mount_state_seconds",
                "Seconds the mount has been in its current state",
                None,
                MetricType::Gauge,
            )?;
            for (m, v) in mounts {
                let secs = now
                    .duration_since(v.since)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                e.encode_family(&[("mountpoint", m.as_str())])?
                    .encode_gauge(&secs)?;
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "mount_healthy",
                "1 when the mount's state is healthy",
                None,
                MetricType::Gauge,
            )?;
            for (m, v) in mounts {
                e.encode_family(&[("mountpoint", m.as_str())])?
                    .encode_gauge(&i64::from(v.state == MountState::Healthy))?;
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "mount_server_info",
                "1 for the server the mount currently uses",
                None,
                MetricType::Gauge,
            )?;
            for (m, v) in mounts {
                if let Some(server) = &v.server {
                    let labels = [("mountpoint", m.as_str()), ("server", server.as_str())];
                    e.encode_family(&labels)?.encode_gauge(&1i64)?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "mount_writable",
                "1 for the write probe's current result, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for (m, v) in mounts {
                let Some(w) = v.write else { continue };
                for s in WriteState::ALL {
                    let labels = [("mountpoint", m.as_str()), ("state", s.as_str())];
                    e.encode_family(&labels)?.encode_gauge(&i64::from(w == s))?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "mount_replica_generation",
                "Generation of the mount's active replica (replica volumes)",
                None,
                MetricType::Gauge,
            )?;
            for (m, v) in mounts {
                if let Some((Some(g), _)) = v.replica {
                    e.encode_family(&[("mountpoint", m.as_str())])?
                        .encode_gauge(&i64::try_from(g).unwrap_or(i64::MAX))?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "mount_replica_unknown",
                "1 while no active replica of the mount is known (no-active-replica)",
                None,
                MetricType::Gauge,
            )?;
            for (m, v) in mounts {
                if let Some((_, unknown)) = v.replica {
                    e.encode_family(&[("mountpoint", m.as_str())])?
                        .encode_gauge(&i64::from(unknown))?;
                }
            }
        }
        Ok(())
    }

    fn encode_mountstats(
        encoder: &mut DescriptorEncoder,
        mounts: &BTreeMap<String, MountView>,
        parsed: Result<&Mountstats, ()>,
        ops_filter: Option<&[String]>,
    ) -> Result<(), fmt::Error> {
        ConstGauge::new(i64::from(parsed.is_ok())).encode(encoder.encode_descriptor(
            "mountstats_read_ok",
            "1 when /proc/self/mountstats was read at this scrape",
            None,
            MetricType::Gauge,
        )?)?;
        let Ok(parsed) = parsed else {
            return Ok(());
        };
        ConstGauge::new(i64::try_from(parsed.malformed_lines).unwrap_or(i64::MAX)).encode(
            encoder.encode_descriptor(
                "mountstats_malformed_lines",
                "Lines of /proc/self/mountstats the parser skipped at this scrape",
                None,
                MetricType::Gauge,
            )?,
        )?;
        let found: Vec<(&str, Option<&NfsMountstats>)> = mounts
            .keys()
            .map(|m| (m.as_str(), parsed.find(m)))
            .collect();
        {
            let mut e = encoder.encode_descriptor(
                "mountstats_present",
                "1 when the kernel lists an NFS mount at the mountpoint",
                None,
                MetricType::Gauge,
            )?;
            for (m, s) in &found {
                e.encode_family(&[("mountpoint", *m)])?
                    .encode_gauge(&i64::from(s.is_some()))?;
            }
        }
        let present: Vec<(&str, &NfsMountstats)> = found
            .iter()
            .filter_map(|(m, s)| s.map(|s| (*m, s)))
            .collect();
        per_mount(
            encoder,
            &present,
            "mountstats_age_seconds",
            "Seconds since the NFS mount was made (resets on remount)",
            MetricType::Gauge,
            |s| s.age_seconds.map(|a| a as f64),
        )?;
        per_mount(
            encoder,
            &present,
            "mountstats_retransmissions",
            "RPC retransmissions over all operations (trans - ops)",
            MetricType::Counter,
            |s| Some(s.retransmissions() as f64),
        )?;
        per_mount(
            encoder,
            &present,
            "mountstats_major_timeouts",
            "RPC major timeouts over all operations",
            MetricType::Counter,
            |s| Some(s.major_timeouts() as f64),
        )?;
        per_mount(
            encoder,
            &present,
            "mountstats_errors",
            "Operations that completed with an error status (kernels that count them)",
            MetricType::Counter,
            |s| {
                s.ops
                    .iter()
                    .filter_map(|o| o.errors)
                    .reduce(u64::saturating_add)
                    .map(|e| e as f64)
            },
        )?;
        type OpField = fn(&mountstats::OpStats) -> f64;
        let op_families: [(&str, &str, OpField); 3] = [
            ("mountstats_op_requests", "Requests per operation", |o| {
                o.ops as f64
            }),
            (
                "mountstats_op_rtt_seconds",
                "Cumulative RPC round-trip time per operation",
                |o| o.rtt_ms as f64 / 1000.0,
            ),
            (
                "mountstats_op_execute_seconds",
                "Cumulative time from enqueue to completion per operation",
                |o| o.execute_ms as f64 / 1000.0,
            ),
        ];
        for (name, help, field) in op_families {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (m, s) in &present {
                let wanted = |o: &&mountstats::OpStats| {
                    o.ops > 0 && ops_filter.is_none_or(|l| l.contains(&o.op))
                };
                for op in s.ops.iter().filter(wanted) {
                    let labels = [("mountpoint", *m), ("op", op.op.as_str())];
                    e.encode_family(&labels)?
                        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(
                            &field(op),
                            None,
                        )?;
                }
            }
        }
        type XprtField = fn(&mountstats::XprtStats) -> u64;
        let xprt_families: [(&str, &str, XprtField); 5] = [
            (
                "mountstats_xprt_connects",
                "Transport connects (a rising count is a reconnect storm)",
                |x| x.connect_count,
            ),
            ("mountstats_xprt_sends", "RPC requests sent", |x| x.sends),
            ("mountstats_xprt_receives", "RPC replies received", |x| {
                x.receives
            }),
            (
                "mountstats_xprt_bad_xids",
                "Replies matching no request",
                |x| x.bad_xids,
            ),
            (
                "mountstats_xprt_backlog",
                "Sum of the backlog queue length sampled at each send",
                |x| x.backlog_sum,
            ),
        ];
        for (name, help, field) in xprt_families {
            per_mount(encoder, &present, name, help, MetricType::Counter, |s| {
                s.xprt.as_ref().map(|x| field(x) as f64)
            })?;
        }
        Ok(())
    }
}

fn per_mount(
    encoder: &mut DescriptorEncoder,
    present: &[(&str, &NfsMountstats)],
    name: &str,
    help: &str,
    metric_type: MetricType,
    value: impl Fn(&NfsMountstats) -> Option<f64>,
) -> Result<(), fmt::Error> {
    let mut e = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (m, s) in present {
        if let Some(v) = value(s) {
            let labels = [("mountpoint", *m)];
            let mut f = e.encode_family(&labels)?;
            match metric_type {
                MetricType::Counter => {
                    f.encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(&v, None)?
                }
                _ => f.encode_gauge(&v)?,
            }
        }
    }
    Ok(())
}

impl Collector for MountCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let now = self.shared.now();
        // Copy the views out so the lock is not held while mountstats is read.
        let mounts = self.shared.lock().clone();
        Self::encode_states(&mut encoder, &mounts, now)?;
        let parsed = match self.shared.mountstats.read() {
            Ok(text) => Ok(mountstats::parse(&text)),
            Err(e) => {
                tracing::debug!(error = %e, "Cannot read mountstats");
                Err(())
            }
        };
        let ops = self
            .shared
            .ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Self::encode_mountstats(
            &mut encoder,
            &mounts,
            parsed.as_ref().map_err(|_| ()),
            ops.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfsha_core::ProbeOp;

    #[derive(Debug)]
    struct FixedText(std::io::Result<&'static str>);

    impl MountstatsSource for FixedText {
        fn read(&self) -> std::io::Result<String> {
            match &self.0 {
                Ok(s) => Ok((*s).to_owned()),
                Err(e) => Err(std::io::Error::new(e.kind(), "fake")),
            }
        }
    }

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn metrics_with(text: std::io::Result<&'static str>) -> AgentMetrics {
        AgentMetrics::with_sources(Arc::new(FixedText(text)), Arc::new(|| at(T0 + 42)))
    }

    /// The value of the series written exactly as `series` (name plus label block).
    fn value(scrape: &str, series: &str) -> Option<f64> {
        scrape.lines().find_map(|l| {
            let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
            rest.split_whitespace().next()?.parse().ok()
        })
    }

    fn must(scrape: &str, series: &str) -> f64 {
        value(scrape, series).unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
    }

    #[test]
    fn state_series_follow_the_last_call() {
        let m = metrics_with(Ok(""));
        m.set_mount_state("/a", MountState::Healthy, at(T0), Some("nfs-1"));
        m.set_mount_state("/a", MountState::Stale, at(T0 + 30), Some("nfs-2"));
        let s = m.encode();
        assert_eq!(
            must(&s, r#"nfsha_mount_state{mountpoint="/a",state="stale"}"#),
            1.0
        );
        assert_eq!(
            must(&s, r#"nfsha_mount_state{mountpoint="/a",state="healthy"}"#),
            0.0
        );
        let ones = s
            .lines()
            .filter(|l| l.starts_with("nfsha_mount_state{") && l.ends_with(" 1"))
            .count();
        assert_eq!(ones, 1, "exactly one state series is 1");
        assert_eq!(
            must(&s, r#"nfsha_mount_state_seconds{mountpoint="/a"}"#),
            12.0
        );
        assert_eq!(must(&s, r#"nfsha_mount_healthy{mountpoint="/a"}"#), 0.0);
        assert_eq!(
            must(
                &s,
                r#"nfsha_mount_server_info{mountpoint="/a",server="nfs-2"}"#
            ),
            1.0
        );
        assert!(
            !s.contains(r#"server="nfs-1""#),
            "old server series left behind"
        );
        assert!(s.ends_with("# EOF\n"));
    }

    #[test]
    fn probes_recoveries_servers_workers_and_reloads() {
        let m = metrics_with(Ok(""));
        m.set_mount_state("/a", MountState::Healthy, at(T0), None);
        m.observe_probe(
            "/a",
            &ProbeOutcome::Ok {
                latency: Duration::from_millis(3),
            },
        );
        m.observe_probe(
            "/a",
            &ProbeOutcome::Failed {
                op: ProbeOp::Readdir,
                errno: libc_estale(),
                latency: Duration::from_millis(40),
            },
        );
        m.observe_probe(
            "/a",
            &ProbeOutcome::Hung {
                deadline: Duration::from_secs(2),
            },
        );
        m.record_recovery("/a", MountState::Stale, true, Duration::from_millis(1500));
        m.record_recovery("/a", MountState::Hung, false, Duration::from_secs(20));
        m.set_server_rpc("nfs-1", true, Some(Duration::from_micros(800)));
        m.set_server_rpc("nfs-2", false, None);
        m.set_workers(2, 5);
        m.set_config_reload(false);
        let s = m.encode();
        assert_eq!(
            must(&s, r#"nfsha_probe_duration_seconds_count{mountpoint="/a"}"#),
            2.0
        );
        assert_eq!(
            must(
                &s,
                r#"nfsha_probe_duration_seconds_bucket{le="0.005",mountpoint="/a"}"#
            ),
            1.0
        );
        assert_eq!(
            must(&s, r#"nfsha_probe_timeouts_total{mountpoint="/a"}"#),
            1.0
        );
        for r in ["ok", "failed", "hung"] {
            let series = format!(r#"nfsha_probes_total{{mountpoint="/a",result="{r}"}}"#);
            assert_eq!(must(&s, &series), 1.0);
        }
        assert_eq!(
            must(
                &s,
                r#"nfsha_recoveries_total{mountpoint="/a",cause="stale",outcome="ok"}"#
            ),
            1.0
        );
        assert_eq!(
            must(
                &s,
                r#"nfsha_recoveries_total{mountpoint="/a",cause="hung",outcome="failed"}"#
            ),
            1.0
        );
        assert_eq!(
            must(
                &s,
                r#"nfsha_recovery_duration_seconds_sum{mountpoint="/a"}"#
            ),
            21.5
        );
        assert_eq!(must(&s, r#"nfsha_server_rpc_up{server="nfs-1"}"#), 1.0);
        assert_eq!(must(&s, r#"nfsha_server_rpc_up{server="nfs-2"}"#), 0.0);
        assert_eq!(
            must(&s, r#"nfsha_server_rpc_rtt_seconds{server="nfs-1"}"#),
            0.0008
        );
        assert_eq!(
            value(&s, r#"nfsha_server_rpc_rtt_seconds{server="nfs-2"}"#),
            None
        );
        assert_eq!(must(&s, "nfsha_probe_workers_stuck"), 2.0);
        assert_eq!(must(&s, "nfsha_probe_workers_live"), 5.0);
        assert_eq!(must(&s, "nfsha_config_reload_success"), 0.0);
        assert_eq!(
            must(&s, "nfsha_config_reload_timestamp_seconds"),
            (T0 + 42) as f64
        );
        // The hung probe is the last error the health endpoint shows.
        let h = HealthSource::mounts(&m);
        assert_eq!(
            h[0].last_error.as_deref(),
            Some("probe did not finish within 2000 ms")
        );
    }

    fn libc_estale() -> i32 {
        116
    }

    #[test]
    fn failed_probe_error_text_names_op_and_errno() {
        let m = metrics_with(Ok(""));
        m.set_mount_state("/a", MountState::Stale, at(T0), None);
        m.observe_probe(
            "/a",
            &ProbeOutcome::Failed {
                op: ProbeOp::Readdir,
                errno: libc_estale(),
                latency: Duration::from_millis(1),
            },
        );
        let h = HealthSource::mounts(&m);
        assert_eq!(
            h[0].last_error.as_deref(),
            Some("readdir: ESTALE (errno 116)")
        );
        m.set_mount_state("/a", MountState::Healthy, at(T0 + 1), None);
        assert_eq!(HealthSource::mounts(&m)[0].last_error, None);
    }

    #[test]
    fn remove_mount_drops_every_series() {
        let m = metrics_with(Ok(crate::mountstats::tests::FIXTURE));
        m.set_mount_state("/airflow/dags", MountState::Healthy, at(T0), Some("s"));
        m.observe_probe(
            "/airflow/dags",
            &ProbeOutcome::Ok {
                latency: Duration::from_millis(1),
            },
        );
        m.record_recovery("/airflow/dags", MountState::Stale, true, Duration::ZERO);
        assert!(m.encode().contains("/airflow/dags"));
        m.remove_mount("/airflow/dags");
        let s = m.encode();
        assert!(!s.contains("/airflow/dags"), "left behind:\n{s}");
        assert!(m.mounts().is_empty());
    }

    #[test]
    fn mountstats_series_for_known_mounts_only() {
        let m = metrics_with(Ok(crate::mountstats::tests::FIXTURE));
        m.set_mount_state("/airflow/dags", MountState::Healthy, at(T0), None);
        m.set_mount_state("/not/mounted", MountState::NotMounted, at(T0), None);
        let s = m.encode();
        let mp = r#"mountpoint="/airflow/dags""#;
        assert_eq!(must(&s, "nfsha_mountstats_read_ok"), 1.0);
        assert_eq!(must(&s, &format!("nfsha_mountstats_present{{{mp}}}")), 1.0);
        assert_eq!(
            must(&s, r#"nfsha_mountstats_present{mountpoint="/not/mounted"}"#),
            0.0
        );
        assert_eq!(
            must(
                &s,
                &format!("nfsha_mountstats_retransmissions_total{{{mp}}}")
            ),
            47.0
        );
        assert_eq!(
            must(
                &s,
                &format!("nfsha_mountstats_major_timeouts_total{{{mp}}}")
            ),
            4.0
        );
        assert_eq!(
            must(&s, &format!("nfsha_mountstats_age_seconds{{{mp}}}")),
            86400.0
        );
        assert_eq!(
            must(
                &s,
                &format!(r#"nfsha_mountstats_op_rtt_seconds_total{{{mp},op="GETATTR"}}"#)
            ),
            35.0
        );
        assert_eq!(
            must(
                &s,
                &format!(r#"nfsha_mountstats_op_execute_seconds_total{{{mp},op="GETATTR"}}"#)
            ),
            36.5
        );
        assert_eq!(
            must(
                &s,
                &format!(r#"nfsha_mountstats_op_requests_total{{{mp},op="OPEN"}}"#)
            ),
            3070.0
        );
        assert_eq!(
            must(&s, &format!("nfsha_mountstats_errors_total{{{mp}}}")),
            7.0
        );
        // SEQUENCE is not in the default op list; with no list, every used op is exported.
        assert!(!s.contains(r#"op="SEQUENCE""#));
        m.set_mountstats_ops(None);
        assert_eq!(
            must(
                &m.encode(),
                &format!(r#"nfsha_mountstats_op_requests_total{{{mp},op="SEQUENCE"}}"#)
            ),
            4000.0
        );
        assert_eq!(
            must(&s, &format!("nfsha_mountstats_xprt_connects_total{{{mp}}}")),
            5.0
        );
        assert_eq!(
            must(&s, &format!("nfsha_mountstats_xprt_backlog_total{{{mp}}}")),
            200.0
        );
        // Ops never used (WRITE: 0 requests) are not exported; the other mount is not known.
        assert!(!s.contains(r#"op="WRITE""#));
        assert!(!s.contains("with space"));
    }

    #[test]
    fn write_probe_and_replica_series() {
        let m = metrics_with(Ok(""));
        m.set_mount_state(
            "/misc/crr",
            MountState::Healthy,
            at(T0),
            Some("10.2.13.5:/crr-dest1"),
        );
        let s = m.encode();
        assert!(
            !s.contains("nfsha_mount_writable{"),
            "no write probe yet: {s}"
        );
        assert!(!s.contains("nfsha_mount_replica_unknown{"));
        m.set_write_state("/misc/crr", Some(WriteState::ReadOnly));
        m.set_mount_replica("/misc/crr", Some(2), false);
        let s = m.encode();
        let mp = r#"mountpoint="/misc/crr""#;
        assert_eq!(
            must(
                &s,
                &format!(r#"nfsha_mount_writable{{{mp},state="read-only"}}"#)
            ),
            1.0
        );
        assert_eq!(
            must(
                &s,
                &format!(r#"nfsha_mount_writable{{{mp},state="writable"}}"#)
            ),
            0.0
        );
        assert_eq!(
            must(&s, &format!("nfsha_mount_replica_generation{{{mp}}}")),
            2.0
        );
        assert_eq!(
            must(&s, &format!("nfsha_mount_replica_unknown{{{mp}}}")),
            0.0
        );
        assert_eq!(
            must(
                &s,
                &format!(r#"nfsha_mount_server_info{{{mp},server="10.2.13.5:/crr-dest1"}}"#)
            ),
            1.0
        );
        m.set_mount_replica("/misc/crr", None, true);
        let s = m.encode();
        assert_eq!(
            must(&s, &format!("nfsha_mount_replica_unknown{{{mp}}}")),
            1.0
        );
        assert!(!s.contains("nfsha_mount_replica_generation{"));
    }

    #[test]
    fn real_proc_mountstats_is_read() {
        // This machine has no NFS mounts; the file must still be readable and parse cleanly.
        let m = AgentMetrics::new();
        m.set_mount_state(
            "/surely/not/nfs",
            MountState::NotMounted,
            SystemTime::now(),
            None,
        );
        let s = m.encode();
        assert_eq!(must(&s, "nfsha_mountstats_read_ok"), 1.0, "{s}");
        assert_eq!(
            must(
                &s,
                r#"nfsha_mountstats_present{mountpoint="/surely/not/nfs"}"#
            ),
            0.0
        );
    }

    #[test]
    fn unreadable_mountstats_drops_only_its_series() {
        let m = metrics_with(Err(std::io::Error::from(std::io::ErrorKind::NotFound)));
        m.set_mount_state("/a", MountState::Healthy, at(T0), None);
        let s = m.encode();
        assert_eq!(must(&s, "nfsha_mountstats_read_ok"), 0.0);
        assert!(!s.contains("nfsha_mountstats_present"));
        assert_eq!(must(&s, r#"nfsha_mount_healthy{mountpoint="/a"}"#), 1.0);
    }

    #[test]
    fn every_family_in_a_full_scrape_is_listed_in_metric_names() {
        let m = metrics_with(Ok(crate::mountstats::tests::FIXTURE));
        m.set_mount_state("/airflow/dags", MountState::Healthy, at(T0), Some("s"));
        m.observe_probe(
            "/airflow/dags",
            &ProbeOutcome::Ok {
                latency: Duration::from_millis(1),
            },
        );
        m.observe_probe(
            "/airflow/dags",
            &ProbeOutcome::Hung {
                deadline: Duration::from_secs(1),
            },
        );
        m.record_recovery("/airflow/dags", MountState::Hung, true, Duration::ZERO);
        m.set_server_rpc("s", true, Some(Duration::from_millis(1)));
        m.set_write_state("/airflow/dags", Some(WriteState::Writable));
        m.set_mount_replica("/airflow/dags", Some(1), false);
        let s = m.encode();
        let typed: std::collections::BTreeSet<&str> = s
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let listed: std::collections::BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
        assert_eq!(typed, listed);
    }
}
