//! One active replica for the whole fleet: the agent's side of `nfsha-cluster` for the
//! mounts with `[mount.fleet]` (issue 11 item 3).
//!
//! Role, per fleet mount, one task ([`spawn`]):
//! - seed the volume's `active` key in etcd once (generation 1) with what this agent
//!   already has — its state file's active replica, else the first configured replica —
//!   and then follow the key ([`nfsha_cluster::watch_active`]): a record naming another
//!   replica than the mount's active one is applied through
//!   [`AgentHandle::recover_to`], i.e. recorded in the state file before the move, as any
//!   operator-chosen replica;
//! - every 250 ms: judge the active replica's reachability from the agent's own RPC
//!   probes (the published server status, no NFS access), feed it to an
//!   [`UnreachableClock`] (this agent's monotonic clock only), publish this agent's view
//!   on its lease when it changed (else once a second), and when its own clock says "down for `failover_after`" read every
//!   live view and let [`decide_failover`] say whether the fleet fails over (default: a
//!   majority of live agents must agree, so one client with a broken network cannot move
//!   the fleet); then run for it with [`AgentSession::try_failover`] — the promote command
//!   runs once for the fleet, bounded, and its outcome is an event.
//!
//! The mount itself never fails over on its own (see `Recovery::select_replica`): only a
//! new record moves it. Failure modes: etcd unreachable → an event once, the mount keeps
//! what it has (its state file), the task reconnects every few seconds; a promote command
//! that fails or hangs → an event with its exit status and output, the fleet stays.

use crate::emit::Emitter;
use crate::supervisor::AgentHandle;
use futures_util::StreamExt;
use nfsha_cluster::{
    ActiveRecord, AgentSession, AgentView, AuthFile, CommandSpec, Decision, FailoverOutcome, Fleet,
    FleetOptions, Quorum, ReplicaId, TlsFiles, UnreachableClock, WatchEvent, decide_failover,
    watch_active,
};
use nfsha_config::{ClusterSource, FleetConfig, FleetQuorum, MountConfig, Replica};
use nfsha_core::{Event, EventKind};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Lease of this agent's view and election lock.
const SESSION_TTL: Duration = Duration::from_secs(10);
/// How often the agent's own reachability is read (from its published status: no I/O)
/// and, while the active replica is down for `failover_after`, the decision taken: the
/// outage's start and end are seen within this, not within a whole publish period.
const TICK: Duration = Duration::from_millis(250);
/// How often an unchanged view is published again (a changed one is published at once).
const REPUBLISH: Duration = Duration::from_secs(1);
/// Pause before reconnecting after etcd failed.
const RECONNECT: Duration = Duration::from_secs(3);

/// The etcd connection options of `[agent.cluster]`. The HTTP/2 keepalive is 5 s, not
/// the library's 1 s: on a loaded machine (the lab's emulated VM) a 1 s ping deadline
/// broke the connection ("broken pipe") before the first vote could be published.
pub fn options(c: &ClusterSource) -> FleetOptions {
    let mut o = FleetOptions::new(c.etcd_endpoints.clone());
    o.connect_timeout = Duration::from_secs(3);
    o.keepalive = Duration::from_secs(5);
    o.tls = c.etcd_tls.as_ref().map(|t| TlsFiles {
        ca: t.ca.clone(),
        cert: t.cert.clone(),
        key: t.key.clone(),
    });
    o.auth = c.etcd_auth.as_ref().map(|a| AuthFile {
        user: a.user.clone(),
        password_file: a.password_file.clone(),
    });
    o
}

/// The replicas of `mount` as the fleet names them, in configured order.
pub fn members(mount: &MountConfig) -> Vec<ReplicaId> {
    mount
        .servers
        .iter()
        .map(|s| ReplicaId::new(s.host.clone(), mount.export_of(s)))
        .collect()
}

fn to_replica(r: &ReplicaId) -> Replica {
    Replica {
        host: r.host.clone(),
        export: r.export.clone(),
    }
}

/// This agent's name in the fleet: the host name.
pub fn agent_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Start one task per mount with `[mount.fleet]` (nothing without `[agent.cluster]`);
/// `agent` is this agent's name in the fleet ([`agent_name`]; tests run several).
pub fn spawn(
    cluster: Option<&ClusterSource>,
    mounts: &[MountConfig],
    agent: &str,
    handle: AgentHandle,
    emit: Emitter,
) -> Vec<JoinHandle<()>> {
    let Some(c) = cluster else {
        return Vec::new();
    };
    mounts
        .iter()
        .filter(|m| m.fleet.is_some())
        .map(|m| {
            let task = VolumeTask {
                opts: options(c),
                mount: m.clone(),
                agent: agent.to_string(),
                handle: handle.clone(),
                emit: emit.clone(),
                moving: Default::default(),
            };
            tokio::spawn(task.run())
        })
        .collect()
}

struct VolumeTask {
    opts: FleetOptions,
    mount: MountConfig,
    agent: String,
    handle: AgentHandle,
    emit: Emitter,
    /// A recovery onto the active replica is running.
    moving: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl VolumeTask {
    fn event(&self, step: &str, outcome: &str, reason: String) {
        self.emit.emit(
            Event::new(EventKind::Replica)
                .mount(self.mount.mountpoint.display().to_string())
                .step(step)
                .outcome(outcome)
                .reason(reason),
        );
    }

    fn volume(&self) -> &str {
        self.mount.fleet.as_ref().map_or("", |f| f.volume.as_str())
    }

    /// The mount's active replica and generation as the agent publishes them.
    fn local(&self) -> (Option<Replica>, u64) {
        let st = self.handle.status().lock();
        let r = st
            .mounts
            .get(&self.mount.mountpoint.display().to_string())
            .and_then(|m| m.replica.as_ref());
        (
            r.and_then(|r| r.active.as_deref()?.parse().ok()),
            r.and_then(|r| r.generation).unwrap_or(0),
        )
    }

    /// Whether the agent's RPC probes reach `host` now (no NFS access).
    fn reachable(&self, host: &str) -> bool {
        self.handle
            .status()
            .lock()
            .servers
            .get(host)
            .is_some_and(|s| s.reachable)
    }

    async fn run(self) {
        let mut said_unreachable = false;
        loop {
            match self.follow(&mut said_unreachable).await {
                Ok(()) => return,
                Err(why) => {
                    tracing::debug!(volume = self.volume(), error = %why, "fleet: etcd failed; reconnecting");
                    if !said_unreachable {
                        self.event(
                            "fleet-etcd",
                            "failed",
                            format!(
                                "cannot reach the fleet's record in etcd ({why}); keeping the active replica this agent has"
                            ),
                        );
                        said_unreachable = true;
                    }
                }
            }
            tokio::time::sleep(RECONNECT).await;
        }
    }

    /// Seed, watch and vote until etcd fails (the error says why). `said_unreachable`:
    /// an outage was reported; its end is reported once the record is read again.
    async fn follow(&self, said_unreachable: &mut bool) -> Result<(), String> {
        let Some(fc) = self.mount.fleet.clone() else {
            return Ok(());
        };
        let members = members(&self.mount);
        let fleet = Fleet::connect(&self.opts)
            .await
            .map_err(|e| e.to_string())?;
        let seed = match self.local().0 {
            Some(r) => ReplicaId::new(r.host, r.export),
            None => members.first().cloned().ok_or("no replica")?,
        };
        let mut active: ActiveRecord = fleet
            .seed_active(&fc.volume, &seed, &self.agent)
            .await
            .map_err(|e| e.to_string())?;
        if std::mem::take(said_unreachable) {
            self.event(
                "fleet-etcd",
                "ok",
                format!(
                    "the fleet's record is readable again: generation {} on {}",
                    active.generation, active.replica
                ),
            );
        }
        let session = AgentSession::new(fleet.clone(), &self.agent, SESSION_TTL)
            .map_err(|e| e.to_string())?;
        let mut watch = watch_active(self.opts.clone(), &fc.volume).map_err(|e| e.to_string())?;
        let mut clock = UnreachableClock::new(fc.failover_after);
        let quorum = match fc.quorum {
            FleetQuorum::Majority => Quorum::Majority,
            FleetQuorum::Any => Quorum::Any,
        };
        let promote = (!fc.promote_command.is_empty())
            .then(|| CommandSpec::new(fc.promote_command.iter(), fc.promote_timeout));
        let mut applied: Option<u64> = None;
        let mut tick = tokio::time::interval(TICK);
        let mut published: Option<(AgentView, Instant)> = None;
        let mut last_lost: Option<(String, u64)> = None;
        let mut last_attempt: Option<Instant> = None;
        loop {
            self.apply(&active, &mut applied).await;
            tokio::select! {
                ev = watch.next() => match ev {
                    Some(WatchEvent::Active(rec)) => {
                        if rec.generation > active.generation {
                            self.event(
                                "fleet-active",
                                "ok",
                                format!(
                                    "volume {}: generation {} on {} ({} by {})",
                                    fc.volume, rec.generation, rec.replica, rec.reason.name(), rec.decided_by
                                ),
                            );
                            clock.reset();
                            active = rec;
                        }
                    }
                    Some(WatchEvent::Unreachable(why)) => return Err(why),
                    None => return Err("the watch ended".into()),
                },
                _ = tick.tick() => {
                    let reachable = self.reachable(&active.replica.host);
                    let long = clock.observe(reachable, Instant::now());
                    let (mounted, _) = self.local();
                    let view = AgentView {
                        agent: self.agent.clone(),
                        mounted: mounted.map(|r| ReplicaId::new(r.host, r.export)),
                        generation: applied.unwrap_or(0),
                        active_reachable: reachable,
                        unreachable_long_enough: long,
                    };
                    let stale = published
                        .as_ref()
                        .is_none_or(|(v, at)| *v != view || at.elapsed() >= REPUBLISH);
                    if stale {
                        session.publish_view(&fc.volume, &view).await.map_err(|e| e.to_string())?;
                        published = Some((view.clone(), Instant::now()));
                    }
                    if !long {
                        continue;
                    }
                    // Decide and run at most once a second (a failing promote command is
                    // not retried faster than that); the 250 ms tick only makes the first
                    // attempt come sooner after the threshold.
                    if last_attempt.is_some_and(|t: Instant| t.elapsed() < REPUBLISH) {
                        continue;
                    }
                    let views = fleet.views(&fc.volume).await.map_err(|e| e.to_string())?;
                    let Decision::Failover { from_generation, to } =
                        decide_failover(&active, &members, &views, &view, quorum)
                    else {
                        continue;
                    };
                    let spec = promote.clone().unwrap_or_else(|| CommandSpec::new(["true"], fc.promote_timeout));
                    if last_lost.as_ref().is_none_or(|(_, g)| *g != from_generation) {
                        self.event(
                            "fleet-failover",
                            "started",
                            format!("volume {}: {} unreachable for {}; running for the move to {to}", fc.volume, active.replica, humantime::format_duration(fc.failover_after)),
                        );
                    }
                    last_attempt = Some(Instant::now());
                    match session.try_failover(&fc.volume, from_generation, &to, &spec).await {
                        Ok(FailoverOutcome::Moved(rec)) => {
                            let promote = rec.promote.as_ref().map_or("no promote command".to_string(), |p| format!("promote exit {:?}", p.exit_code));
                            self.event("fleet-failover", "ok", format!("volume {}: moved the fleet to {} (generation {}, {promote})", fc.volume, rec.replica, rec.generation));
                            clock.reset();
                            active = rec;
                        }
                        Ok(FailoverOutcome::PromoteFailed { report, .. }) => self.event(
                            "fleet-failover",
                            "failed",
                            format!(
                                "volume {}: the promote command failed (exit {:?}, timed out {}): {}; the fleet stays on {}",
                                fc.volume, report.exit_code, report.timed_out, report.output_tail.trim(), active.replica
                            ),
                        ),
                        Ok(FailoverOutcome::Lost { holder }) => {
                            // Candidates retry every tick (a winner that dies mid-promote
                            // loses its lock with its lease); say so once per holder.
                            let lost = (holder, from_generation);
                            if last_lost.as_ref() != Some(&lost) {
                                self.event(
                                    "fleet-failover",
                                    "skipped",
                                    format!("volume {}: {} runs the failover; following the record", fc.volume, lost.0),
                                );
                                last_lost = Some(lost);
                            }
                        }
                        Ok(FailoverOutcome::AlreadyMoved(rec)) => {
                            clock.reset();
                            active = rec;
                        }
                        Ok(FailoverOutcome::LockLost { .. }) => self.event(
                            "fleet-failover",
                            "failed",
                            format!("volume {}: this agent's lease expired during the promote; nothing was moved", fc.volume),
                        ),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
        }
    }

    /// Bring the mount onto `active.replica`: `applied` becomes its generation once the
    /// mount's active replica is that one; until then one recovery at a time is started
    /// (in the background: it can take a mount timeout, and the loop keeps publishing).
    async fn apply(&self, active: &ActiveRecord, applied: &mut Option<u64>) {
        let want = to_replica(&active.replica);
        if self.local().0.as_ref() == Some(&want) {
            *applied = Some(active.generation);
            return;
        }
        if self.moving.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let handle = self.handle.clone();
        let mp = self.mount.mountpoint.clone();
        let emit = self.emit.clone();
        let volume = self.volume().to_string();
        let moving = self.moving.clone();
        let generation = active.generation;
        tokio::spawn(async move {
            let outcome = handle.recover_to(&mp, Some(want.clone())).await;
            let (o, why) = match outcome {
                Ok(r) if r.ok => (
                    "ok",
                    format!("volume {volume}: on {want} (generation {generation})"),
                ),
                Ok(r) => (
                    "failed",
                    format!(
                        "volume {volume}: move to {want} failed: {}; retried",
                        r.error.unwrap_or_default()
                    ),
                ),
                Err(e) => ("failed", format!("volume {volume}: {e}")),
            };
            emit.emit(
                Event::new(EventKind::Replica)
                    .mount(mp.display().to_string())
                    .step("fleet-apply")
                    .outcome(o)
                    .reason(why),
            );
            moving.store(false, std::sync::atomic::Ordering::Release);
        });
    }
}

/// The operator's failback of a fleet mount (`nfsha replica failback`): `to`
/// (`HOST[:/EXPORT]`) is resolved among the mount's replicas, the configured
/// `resync_check_command` runs (it must exit 0), and the volume's record moves to `to`
/// with generation + 1 and reason `failback`; every agent then follows the record.
/// Refused — nothing written — without `confirm_resync`, for a non-member, when `to`
/// is already active, while a move is in progress, or when the check fails.
pub async fn operator_failback(
    fleet: &Fleet,
    mount: &MountConfig,
    f: &FleetConfig,
    to: &str,
    confirm_resync: bool,
    by: &str,
) -> Result<ActiveRecord, nfsha_cluster::FleetError> {
    let members = members(mount);
    let to = nfsha_cluster::resolve_member(&members, to)?;
    let req = nfsha_cluster::Failback {
        to,
        members,
        by: by.to_owned(),
        confirm_resync,
        resync_check: (!f.resync_check_command.is_empty())
            .then(|| CommandSpec::new(f.resync_check_command.clone(), f.resync_check_timeout)),
        lock_ttl: SESSION_TTL,
    };
    fleet.failback(&f.volume, &req).await
}

/// What the fleet did after a move, as read from the live views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// Every live view follows the generation and is mounted on the replica.
    pub all: bool,
    /// The views at the last read.
    pub views: Vec<AgentView>,
}

/// Wait (polling every 200 ms, at most `deadline`) until every live agent's view of
/// `volume` follows `generation` and is mounted on `to`. A fleet with no live view
/// counts as not followed: nobody confirmed anything.
pub async fn wait_followed(
    fleet: &Fleet,
    volume: &str,
    generation: u64,
    to: &ReplicaId,
    deadline: Duration,
) -> Result<Followed, nfsha_cluster::FleetError> {
    let end = Instant::now() + deadline;
    loop {
        let views = fleet.views(volume).await?;
        let all = !views.is_empty()
            && views
                .iter()
                .all(|v| v.generation >= generation && v.mounted.as_ref() == Some(to));
        if all || Instant::now() >= end {
            return Ok(Followed { all, views });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
