//! The controller loop: standby ↔ leader, bring-up under a fencing epoch, self-fencing
//! on the local monotonic clock, planned switchover, clean shutdown.
//!
//! Role: the only thing that starts or stops the NFS service on a node. A node serves
//! only while it can *prove* it leads: it holds the leader key (created with
//! `create_revision == 0`, epoch = that revision) and its lease was renewed recently by
//! its own clock. Proof = the instant taken *before* the last successful renewal
//! request was sent; etcd cannot expire the lease earlier than that instant + TTL, so
//! tearing down by `proof + ttl − safety_margin` means no other node (which needs the
//! key to expire first) can start serving while we still do, whatever etcd says later.
//!
//! **Why the safety margin can be small** (default ttl / 4, capped to 2 s). Teardown
//! starts `fence_lead` (one loop period) before `proof + ttl − margin`, floating address
//! first. What clients can see is the floating address: once it is gone nobody can reach
//! this node's nfsd or exports, so only the address has to be gone before a new leader
//! can exist (at `proof + ttl` at the earliest, etcd's expiry). The margin therefore has
//! to cover just two things: (a) the address removal overrunning `fence_lead` (it is a
//! netlink call, milliseconds), and (b) the drift between our monotonic clock and etcd's
//! lease clock, which is a matter of clock *rates* (ppm over a TTL), not of wall-clock
//! offsets. The rest of the teardown (exports, nfsd, storage) may still be running when
//! a new leader starts; it is invisible to clients, and in shared mode the storage layer
//! must itself refuse a second writer (DRBD single-primary, SCSI reservations): a new
//! leader whose storage step finds the device busy fails, rolls back and retries after
//! its backoff. The margin does not have to cover a slow etcd either: a late answer only
//! makes the proof older (its instant is taken before the request is sent). A large
//! margin buys nothing and costs availability: it shortens how long a leader may wait
//! for a late etcd answer before fencing, and ttl / 2 fenced healthy leaders on a loaded
//! machine (the lab had to run with 1.2 s at ttl 5 s).
//!
//! **Replicated mode** ([`crate::replication`]): while serving, a shipper task ships a
//! snapshot to each standby every `interval` and records it under the epoch guard; a
//! standby whose copy is older than `max_lag` (judged at the first instant it saw the
//! cluster leaderless) publishes `behind` and does not campaign, unless the operator
//! accepts the lag (`accept-lag` key, `nfsha server promote --accept-lag`). Before the
//! exports go up the leader publishes its epoch as the last *served* one (`served`,
//! guarded; refused or unanswered: the step is refused, the bring-up rolls back):
//! copies are judged against that epoch, so a leadership that never exported makes
//! nobody `behind`.
//!
//! Failure modes and what happens:
//! - etcd unreachable/frozen while leader: renewals time out; fencing starts at
//!   `proof + ttl − safety_margin − fence_lead` so that the floating address is gone by
//!   `proof + ttl − safety_margin`; the rest of the teardown follows (see above).
//! - etcd says the key is no longer ours: fence at once.
//! - a bring-up step fails: it and the done steps are rolled back, the key is released,
//!   and this node stays out of the race for one TTL so another node gets a chance. A
//!   bring-up that failed before the exports leaves the last served epoch as it was:
//!   every node is judged as before the campaign (a standby that campaigned on the
//!   operator's override stays `behind`, and says why). One that failed after its
//!   exports came up counts as served; its node, the only writer of that epoch, then
//!   records that its copy is the newest (`vouch_unserved`), as does a node whose copy
//!   was the newest when it campaigned (for a cluster without the `served` key, where
//!   the published epoch counts as served).
//! - a teardown step fails: state `failed`; the node never campaigns again until a
//!   teardown succeeds (retried every loop) and stops petting the watchdog.
//! - controller crash: on restart everything is torn down first (idempotent), and a
//!   returning old leader finds a newer leader and joins as standby (no failback); in
//!   replicated mode it stays `behind` until the new leader has shipped to it.
//! - a ship fails: logged and counted in the status (`replication`), retried after
//!   `interval`; never a fence.

use crate::coordinator::{
    Acquire, Coordinator, LeaderRecord, MemberInfo, MemberState, ReplicaRecord, ReplicaView,
    ServedRecord,
};
use crate::guard::FenceGuard;
use crate::host::{Role, ServerHost, Step};
use crate::replication::{
    ReplicationSettings, ShipperConfig, Verdict, holds_newest, judge, ship_loop, ship_one,
};
use crate::sequencer::{RollbackError, Sequencer, StepGuard};
use crate::status::StatusHandle;
use crate::watchdog::Watchdog;
use nfsha_config::{ServerConfig, StorageMode};
use nfsha_core::{Event, EventKind};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

/// The settings the loop runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node.
    pub node: String,
    /// Cluster name.
    pub cluster: String,
    /// Lease TTL.
    pub ttl: Duration,
    /// Loop period (also the renewal interval and each etcd call's deadline).
    pub loop_period: Duration,
    /// Margin kept between the end of serving and the earliest lease expiry.
    pub safety_margin: Duration,
    /// How long before the fencing deadline teardown starts (time for the floating
    /// address removal). Default: the loop period.
    pub fence_lead: Duration,
    /// Each bring-up/teardown step's timeout.
    pub step_timeout: Duration,
    /// Storage mode.
    pub storage: StorageMode,
    /// Address published to clients in the leader key.
    pub address: Option<String>,
    /// Status API address published in the member record.
    pub api: Option<String>,
    /// How long a node whose bring-up failed stays out of the race.
    pub failure_backoff: Duration,
    /// Replicated mode with `[server.replication]`: ship to standbys while leading, and
    /// do not campaign while behind. `None`: no shipping, no gate.
    pub replication: Option<ReplicationSettings>,
}

impl Settings {
    /// From a `[server]` section. The published address is the floating address.
    pub fn from_server(cfg: &ServerConfig) -> Self {
        Settings {
            node: cfg.node.clone(),
            cluster: cfg.cluster.clone(),
            ttl: cfg.ttl,
            loop_period: cfg.loop_period,
            safety_margin: cfg.safety_margin,
            fence_lead: cfg.loop_period,
            step_timeout: cfg.step_timeout,
            storage: cfg.storage,
            address: cfg.floating_address.as_ref().map(|f| f.address.to_string()),
            api: cfg.listen.map(|a| a.to_string()),
            failure_backoff: cfg.ttl,
            replication: ReplicationSettings::from_server(cfg),
        }
    }

    /// How long after the proof instant serving must have stopped.
    pub fn fence_after(&self) -> Duration {
        self.ttl.saturating_sub(self.safety_margin)
    }

    /// How long after the proof instant teardown starts.
    pub fn fence_start_after(&self) -> Duration {
        self.fence_after().saturating_sub(self.fence_lead)
    }

    /// Refuse settings under which a leader would fence before its first renewal
    /// attempt (it could never keep the lease).
    pub fn check(&self) -> Result<(), String> {
        if self.fence_start_after() <= self.loop_period {
            return Err(format!(
                "ttl ({:?}) - safety_margin ({:?}) - one loop ({:?}) leaves no time to renew the lease; raise ttl or lower safety_margin/loop_period",
                self.ttl, self.safety_margin, self.fence_lead
            ));
        }
        Ok(())
    }
}

/// Why a leadership period ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadExit {
    /// The lease could not be proven in time (or etcd said it is gone): self-fenced.
    Fenced(String),
    /// Bring-up failed and was rolled back.
    BringUpFailed(String),
    /// Planned switchover to the named node.
    SwitchedOver(String),
    /// Controller shutdown.
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
struct Proof {
    renewed_at: Instant,
    lost: bool,
}

/// Refuses a step unless the local proof is fresh and etcd still shows our epoch
/// (the guarded member write doubles as progress publication).
struct EpochGuard<'a, C> {
    coord: &'a C,
    proof: watch::Receiver<Proof>,
    settings: &'a Settings,
    member: MemberInfo,
    /// `served` names this epoch: its exports may have come up.
    exported: std::sync::atomic::AtomicBool,
}

impl<C: Coordinator> StepGuard for EpochGuard<'_, C> {
    async fn check(&self, step: Step, epoch: u64) -> Result<(), String> {
        let p = *self.proof.borrow();
        if p.lost || Instant::now() >= p.renewed_at + self.settings.fence_start_after() {
            return Err("lease proof too old".into());
        }
        let mut m = self.member.clone();
        m.detail = Some(format!("bringing up {step}"));
        m.updated_ms = nfsha_core::event::now_ms();
        let lp = self.settings.loop_period;
        guarded(
            timeout(lp, self.coord.heartbeat(&m, Some(epoch))).await,
            epoch,
        )?;
        if step == Step::Exports {
            // From here on clients may write: this epoch counts as served before they
            // can (see crate::replication); not published, no exports.
            let served = ServedRecord::serving(&self.settings.node, epoch, m.updated_ms);
            guarded(
                timeout(lp, self.coord.record_served(&served, epoch)).await,
                epoch,
            )?;
            self.exported
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A guarded write's answer as a [`StepGuard`] verdict.
fn guarded(
    r: Result<Result<bool, crate::coordinator::CoordError>, tokio::time::error::Elapsed>,
    epoch: u64,
) -> Result<(), String> {
    match r {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(format!("leader key no longer has epoch {epoch}")),
        Ok(Err(e)) => Err(format!("etcd: {e}")),
        Err(_) => Err("etcd did not answer".into()),
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Receives structured events (role changes) if set.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// The controller of one node.
pub struct Controller<C, H> {
    settings: Settings,
    coord: Arc<C>,
    seq: Sequencer<Arc<H>>,
    status: StatusHandle,
    watchdog: Option<Box<dyn Watchdog>>,
    fence_guard: Option<FenceGuard>,
    events: Option<EventSink>,
    epoch_seen: u64,
    backoff_until: Option<Instant>,
    announced_primary: bool,
    vacancy_seen: bool,
    /// Wall-clock ms of the first tick that saw no leader, in the current leaderless
    /// period (the lag reference; `None` while a leader is seen).
    vacant_since_ms: Option<u64>,
    /// Our last lag (replicated mode), published in the member record.
    lag_ms: Option<u64>,
    /// The last gate verdict logged (log on change only).
    gate_logged: Option<String>,
    shutdown: watch::Receiver<bool>,
    /// systemd notifications (`Type=notify`), if set.
    notifier: Option<Arc<crate::notify::Notifier>>,
}

impl<C, H> std::fmt::Debug for Controller<C, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("settings", &self.settings)
            .field("epoch_seen", &self.epoch_seen)
            .finish_non_exhaustive()
    }
}

impl<C: Coordinator + 'static, H: ServerHost + 'static> Controller<C, H> {
    /// A controller; it stops when `shutdown` becomes `true`.
    pub fn new(
        settings: Settings,
        coord: Arc<C>,
        host: H,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let status = StatusHandle::new(&settings.node, &settings.cluster, settings.ttl);
        let seq = Sequencer::new(Arc::new(host), settings.step_timeout);
        Controller {
            settings,
            coord,
            seq,
            status,
            watchdog: None,
            fence_guard: None,
            events: None,
            epoch_seen: 0,
            backoff_until: None,
            announced_primary: false,
            vacancy_seen: false,
            vacant_since_ms: None,
            lag_ms: None,
            gate_logged: None,
            shutdown,
            notifier: None,
        }
    }

    /// Arm this watchdog while leading.
    pub fn with_watchdog(mut self, w: Box<dyn Watchdog>) -> Self {
        self.watchdog = Some(w);
        self
    }

    /// Keep a dead-man-switch process ([`crate::guard`]) running `argv` while leading.
    pub fn with_fence_guard(mut self, argv: Vec<String>) -> Self {
        self.fence_guard = Some(FenceGuard::new(argv));
        self
    }

    /// Tell systemd: `READY=1` once this node has joined (leader serving, or standby /
    /// behind following the cluster), `STATUS=` with role and epoch on every change.
    pub fn with_notifier(mut self, n: Arc<crate::notify::Notifier>) -> Self {
        self.notifier = Some(n);
        self
    }

    /// Send role-change events here.
    pub fn with_events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// The status handle (for the HTTP API).
    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// The host (tests).
    pub fn host(&self) -> &H {
        self.seq.host().as_ref()
    }

    fn member(&self, state: MemberState, detail: Option<String>) -> MemberInfo {
        MemberInfo {
            node: self.settings.node.clone(),
            state,
            epoch_seen: self.epoch_seen,
            serving: self.seq.anything_up(),
            address: self.settings.address.clone(),
            api: self.settings.api.clone(),
            detail,
            lag_ms: self.lag_ms,
            updated_ms: nfsha_core::event::now_ms(),
        }
    }

    /// Replicated mode: read our replica record and judge it against the lag reference
    /// (the first leaderless instant, else now). `Ok(None)`: no gate.
    async fn judge_replica(&mut self) -> Result<Option<(Verdict, ReplicaView)>, String> {
        let Some(r) = self.settings.replication else {
            return Ok(None);
        };
        let lp = self.settings.loop_period;
        let view = flatten(
            timeout(lp, self.coord.replica_view(&self.settings.node)).await,
            lp,
        )?;
        let reference = self
            .vacant_since_ms
            .unwrap_or_else(nfsha_core::event::now_ms);
        let v = judge(&self.settings.node, &view, reference, r.max_lag);
        self.lag_ms = v.lag_ms;
        let max_lag_ms = r.max_lag.as_millis() as u64;
        let lag_ms = v.lag_ms;
        self.status.update(|s| {
            s.lag_ms = lag_ms;
            s.max_lag_ms = Some(max_lag_ms);
        });
        Ok(Some((v, view)))
    }

    /// What this node writes into the leader key.
    fn leader_record(&self, serving: bool) -> LeaderRecord {
        LeaderRecord {
            node: self.settings.node.clone(),
            address: self.settings.address.clone(),
            api: self.settings.api.clone(),
            serving,
        }
    }

    fn set_state(&self, state: MemberState, epoch: Option<u64>, detail: Option<String>) {
        let serving = self.seq.anything_up();
        let epoch_seen = self.epoch_seen;
        let mut changed = None;
        let mut leader = None;
        self.status.update(|s| {
            if s.state != state {
                changed = Some((s.state, state));
            }
            s.state = state;
            s.serving = serving;
            s.epoch = epoch;
            s.epoch_seen = epoch_seen;
            s.detail = detail.clone();
            leader = s.leader.clone();
        });
        if let Some(n) = &self.notifier {
            // Joined: serving as the leader, or a standby that follows one (a standby of
            // a leaderless cluster is about to campaign).
            let following = leader.as_ref().filter(|l| **l != self.settings.node);
            let joined = match state {
                MemberState::Primary => serving,
                MemberState::Standby | MemberState::Behind => following.is_some(),
                _ => false,
            };
            let mut line = state.name().to_owned();
            match epoch {
                Some(e) => line.push_str(&format!(", epoch {e}")),
                None if epoch_seen > 0 => line.push_str(&format!(", epoch seen {epoch_seen}")),
                None => {}
            }
            if let Some(l) = following {
                line.push_str(&format!(", following {l}"));
            }
            if let Some(d) = &detail {
                line.push_str(&format!(" ({d})"));
            }
            if let Err(e) = n.state(&line, joined) {
                tracing::debug!(error = %e, "cannot notify systemd");
            }
        }
        if let Some((from, to)) = changed {
            tracing::info!(from = from.name(), to = to.name(), ?epoch, "state change");
            if let Some(sink) = &self.events {
                let mut e = Event::new(EventKind::ServerRole)
                    .server(self.settings.node.clone())
                    .transition(from.name(), to.name());
                if let Some(d) = detail {
                    e = e.reason(d);
                }
                sink(e);
            }
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn wait_tick(&mut self, until: Instant) {
        let mut sd = self.shutdown.clone();
        tokio::select! {
            _ = sleep_until(until) => {}
            _ = shutdown_requested(&mut sd) => {}
        }
    }

    /// Run until shutdown. Returns the exit of the last leadership period, if any.
    pub async fn run(self) -> Option<LeadExit> {
        use tracing::Instrument;
        let span = tracing::info_span!("controller", node = %self.settings.node);
        self.run_inner().instrument(span).await
    }

    async fn run_inner(mut self) -> Option<LeadExit> {
        let mut last_exit = None;
        self.set_state(MemberState::Starting, None, Some("cleaning up".into()));
        loop {
            let tick = Instant::now() + self.settings.loop_period;
            if self.stopping() {
                break;
            }
            if let Some(exit) = self.standby_tick(tick).await {
                last_exit = Some(exit);
                continue;
            }
            self.status.loop_done();
            if !std::mem::take(&mut self.vacancy_seen) {
                self.wait_tick(tick).await;
            }
        }
        if self.seq.anything_up() {
            let _ = self.seq.tear_down().await;
        }
        let _ = timeout(self.settings.loop_period, self.coord.resign_session()).await;
        last_exit
    }

    /// One standby loop. Returns `Some` after a leadership period.
    async fn standby_tick(&mut self, tick: Instant) -> Option<LeadExit> {
        let lp = self.settings.loop_period;
        // Never campaign while anything may still be up (crash leftovers, failed teardown).
        let clean = if self.status.get().state == MemberState::Starting || self.seq.anything_up() {
            match self.seq.ensure_down().await {
                Ok(()) => true,
                Err(e) => {
                    self.set_state(MemberState::Failed, None, Some(e.to_string()));
                    false
                }
            }
        } else {
            true
        };
        // (verdict, the view it came from; `None` if it could not be read).
        let mut gate: Option<(Verdict, Option<ReplicaView>)> = None;
        if clean {
            gate = match self.judge_replica().await {
                Ok(g) => g.map(|(v, view)| (v, Some(view))),
                Err(e) => {
                    // Unknown counts as behind: published, and no campaign this tick.
                    tracing::warn!(error = %e, "cannot read the replica record");
                    let reason = format!("cannot read the replica record: {e}");
                    Some((
                        Verdict {
                            lag_ms: self.lag_ms,
                            behind: true,
                            reason,
                        },
                        None,
                    ))
                }
            };
        }
        let behind = gate.as_ref().is_some_and(|(v, _)| v.behind);
        let state = match (clean, behind) {
            (false, _) => MemberState::Failed,
            (true, true) => MemberState::Behind,
            (true, false) => MemberState::Standby,
        };
        let detail = match (clean, &gate) {
            (false, _) => self.status.get().detail,
            (true, Some((v, _))) if v.behind => Some(v.reason.clone()),
            _ => None,
        };
        if clean {
            self.set_state(state, None, detail.clone());
        }
        let member = self.member(state, detail);
        if let Err(e) = flatten(timeout(lp, self.coord.heartbeat(&member, None)).await, lp) {
            tracing::warn!(error = %e, "heartbeat failed");
            return None;
        }
        if !clean {
            return None;
        }
        let leader = match flatten(timeout(lp, self.coord.leader()).await, lp) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read leader");
                return None;
            }
        };
        if let Some(l) = leader {
            self.epoch_seen = self.epoch_seen.max(l.epoch);
            if l.node == self.settings.node {
                self.vacant_since_ms = None;
                // Our own key from before a restart or a lost lease that etcd kept alive
                // (leases are extended when etcd restarts). We are not serving, so give
                // it up now rather than wait for it to expire.
                tracing::info!(epoch = l.epoch, "releasing a stale leader key of ours");
                if let Err(e) = flatten(timeout(lp, self.coord.release(l.epoch)).await, lp) {
                    tracing::warn!(error = %e, "cannot release stale leader key");
                }
                return None;
            }
            self.vacant_since_ms = None;
            self.status.update(|s| {
                s.leader = Some(l.node.clone());
                s.epoch_seen = s.epoch_seen.max(l.epoch);
            });
            // Wait out the tick, but campaign at once if the key goes away meanwhile.
            self.status.loop_done();
            let mut sd = self.shutdown.clone();
            tokio::select! {
                _ = self.coord.wait_vacancy(l.epoch) => self.vacancy_seen = true,
                _ = sleep_until(tick) => {}
                _ = shutdown_requested(&mut sd) => {}
            }
            return None;
        }
        self.status.update(|s| s.leader = None);
        // The promotion gate: judged against the first instant we saw no leader.
        if self.vacant_since_ms.is_none() {
            self.vacant_since_ms = Some(nfsha_core::event::now_ms());
            if let (Some(r), Some((_, Some(view)))) = (self.settings.replication, &gate) {
                let v = judge(
                    &self.settings.node,
                    view,
                    self.vacant_since_ms.unwrap_or_default(),
                    r.max_lag,
                );
                if v.behind != behind {
                    // Crossed max_lag between the two reads: publish it next tick.
                    self.lag_ms = v.lag_ms;
                }
                gate = Some((v, Some(view.clone())));
            }
        }
        if let Some((v, view)) = &gate
            && v.behind
        {
            let accepted = view
                .as_ref()
                .and_then(|w| w.accept_lag.as_ref())
                .is_some_and(|o| o.node == self.settings.node);
            let msg = if accepted {
                format!(
                    "campaigning although behind ({}): the operator accepted the lag",
                    v.reason
                )
            } else {
                format!("not campaigning: behind ({})", v.reason)
            };
            if self.gate_logged.as_deref() != Some(msg.as_str()) {
                if accepted {
                    tracing::warn!(lag_ms = ?v.lag_ms, "{msg}");
                } else {
                    tracing::warn!(lag_ms = ?v.lag_ms, "{msg}; `nfsha server promote --to {} --accept-lag` overrides", self.settings.node);
                }
                self.gate_logged = Some(msg);
            }
            if !accepted {
                return None;
            }
        } else {
            self.gate_logged = None;
        }
        if let Some(until) = self.backoff_until {
            if Instant::now() < until {
                return None;
            }
            self.backoff_until = None;
        }
        match flatten(timeout(lp, self.coord.switchover_request()).await, lp) {
            Ok(Some(req)) if req.to != self.settings.node => {
                tracing::info!(to = %req.to, "switchover pending to another node; not campaigning");
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read switchover request");
                return None;
            }
        }
        let record = self.leader_record(false);
        // Taken before the acquire: it keeps the session lease alive (or grants a new
        // one) before the key is created, so the lease cannot end before this + TTL.
        let proof_at = Instant::now();
        let acquired = flatten(timeout(lp, self.coord.acquire(&record)).await, lp);
        let poisoned = self.coord.poisoned_leader_keys();
        self.status.update(|s| s.poisoned_leader_keys = poisoned);
        match acquired {
            Ok(Acquire::Acquired { epoch }) => {
                self.epoch_seen = self.epoch_seen.max(epoch);
                // The lag the promotion gate accepted (replicated mode; with the btrfs
                // engine the clock-free RPO bound): what an operator compares with
                // the writes found missing after an unplanned failover.
                tracing::info!(epoch, gate_lag_ms = ?self.lag_ms, "took the leader key");
                self.lag_ms = None;
                self.gate_logged = None;
                self.status.update(|s| s.lag_ms = None);
                // Our copy is the newest data there is (no leader ever, or we led the
                // last epoch): a leadership that never serves leaves it so.
                let fresh = gate
                    .as_ref()
                    .and_then(|(_, view)| view.as_ref())
                    .is_some_and(|view| holds_newest(&self.settings.node, view));
                let exit = self.lead(epoch, proof_at, fresh).await;
                self.vacant_since_ms = None;
                tracing::info!(?exit, epoch, "leadership ended");
                Some(exit)
            }
            Ok(Acquire::Held(l)) => {
                self.epoch_seen = self.epoch_seen.max(l.epoch);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "campaign failed");
                None
            }
        }
    }

    fn spawn_renewer(
        &self,
        epoch: u64,
        proof_at: Instant,
    ) -> (watch::Receiver<Proof>, AbortOnDrop) {
        let (tx, rx) = watch::channel(Proof {
            renewed_at: proof_at,
            lost: false,
        });
        let coord = self.coord.clone();
        let lp = self.settings.loop_period;
        let status = self.status.clone();
        status.set_lease_proof(proof_at.into_std());
        let span = tracing::info_span!("renewer", node = %self.settings.node, epoch);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut next = Instant::now() + lp;
                loop {
                    sleep_until(next).await;
                    next += lp;
                    let t0 = Instant::now();
                    match timeout(lp, coord.renew(epoch)).await {
                        Ok(Ok(true)) => {
                            tx.send_modify(|p| p.renewed_at = t0);
                            status.set_lease_proof(t0.into_std());
                        }
                        Ok(Ok(false)) => {
                            tracing::warn!(epoch, "etcd says the leader key is gone or not ours");
                            tx.send_modify(|p| p.lost = true);
                            return;
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                        Err(_) => tracing::warn!("lease renewal timed out"),
                    }
                    if Instant::now() > next {
                        next = Instant::now();
                    }
                }
            },
            span,
        ));
        (rx, AbortOnDrop(task))
    }

    /// Resolves when the proof is lost or too old to keep serving.
    fn fence_signal(
        &self,
        mut rx: watch::Receiver<Proof>,
    ) -> impl Future<Output = String> + Send + 'static {
        let start_after = self.settings.fence_start_after();
        async move {
            loop {
                let p = *rx.borrow_and_update();
                if p.lost {
                    return "etcd says leadership is gone".to_owned();
                }
                let at = p.renewed_at + start_after;
                tokio::select! {
                    _ = sleep_until(at) => return format!("lease not renewed for {:?}", Instant::now() - p.renewed_at),
                    r = rx.changed() => if r.is_err() { return "renewer stopped".to_owned() },
                }
            }
        }
    }

    /// Replicated mode, when a leadership of `epoch` ends before it finished its
    /// bring-up (bring-up failed, or fenced or stopped during bring-up) and our copy is
    /// the newest data (`newest`): it was when we campaigned (no leadership served, or
    /// we led the last served epoch: [`holds_newest`]) and nobody served since, or our
    /// exports came up (this epoch counts as served and we were its only writer).
    /// Record that, under the epoch guard (only while the key is still ours, i.e.
    /// before it is released). Without the record, after exports the epoch we served
    /// would leave every node `behind`, us included; before exports the gate already
    /// ignores our epoch, and the record covers a cluster without the `served` key (or
    /// an acquire that could not write it), where our epoch counts as served. A failed
    /// write leaves us behind, which is safe and shows in the status. A standby that
    /// campaigned on a copy shipped by another leader (within max_lag, or on the
    /// operator's override) and never exported is not vouched for: its copy is not the
    /// newest, and its gate judges it as before, with the reason in its status.
    async fn vouch_unserved(&mut self, epoch: u64, newest: bool) {
        if !newest || self.settings.replication.is_none() {
            return;
        }
        // The fork points the records carry stay; no promotion: it never finished.
        let (own, unread) = self.own_record(epoch, None).await;
        if let Some(e) = unread {
            tracing::warn!(epoch, error = %e, "cannot read the replica records; not vouching for our copy");
            return;
        }
        let lp = self.settings.loop_period;
        let node = &self.settings.node;
        match flatten(
            timeout(lp, self.coord.record_replica(node, &own, epoch)).await,
            lp,
        ) {
            Ok(true) => tracing::info!(epoch, "bring-up ended early: our copy is the newest"),
            Ok(false) => tracing::warn!(epoch, "the key is gone: cannot vouch for our copy"),
            Err(e) => tracing::warn!(error = %e, "cannot vouch for our copy"),
        }
    }

    async fn lead(&mut self, epoch: u64, proof_at: Instant, fresh: bool) -> LeadExit {
        let (proof_rx, _renewer) = self.spawn_renewer(epoch, proof_at);
        let fence = self.fence_signal(proof_rx.clone());
        tokio::pin!(fence);
        let mut sd = self.shutdown.clone();

        if let Some(w) = &mut self.watchdog
            && let Err(e) = w.arm()
        {
            tracing::error!(error = %e, "cannot arm the watchdog; refusing to lead");
            self.vouch_unserved(epoch, fresh).await;
            let _ = timeout(self.settings.loop_period, self.coord.release(epoch)).await;
            self.backoff_until = Some(Instant::now() + self.settings.failure_backoff);
            return LeadExit::BringUpFailed(format!("watchdog: {e}"));
        }
        let fence_after = self.settings.fence_after();
        if let Some(g) = &mut self.fence_guard
            && let Err(e) = g
                .serve_for((proof_at + fence_after).saturating_duration_since(Instant::now()))
                .await
        {
            tracing::error!(error = %e, "cannot start the fence guard; refusing to lead");
            self.vouch_unserved(epoch, fresh).await;
            let _ = timeout(self.settings.loop_period, self.coord.release(epoch)).await;
            self.backoff_until = Some(Instant::now() + self.settings.failure_backoff);
            return LeadExit::BringUpFailed(format!("fence guard: {e}"));
        }
        self.set_state(MemberState::Promoting, Some(epoch), None);
        let guard = EpochGuard {
            coord: &*self.coord,
            proof: proof_rx.clone(),
            settings: &self.settings,
            member: self.member(MemberState::Promoting, None),
            exported: Default::default(),
        };
        // Bring-up can outlast one allowance: keep the fence guard fed meanwhile.
        let lp = self.settings.loop_period;
        let fence_guard = &mut self.fence_guard;
        let feed = async {
            loop {
                tokio::time::sleep(lp).await;
                if let Err(e) = feed_guard(fence_guard, &proof_rx, fence_after).await {
                    return format!("fence guard: {e}");
                }
            }
        };
        let result: Result<Result<(), RollbackError>, LeadExit> = tokio::select! {
            r = self.seq.bring_up(epoch, &guard) => Ok(r),
            reason = &mut fence => Err(LeadExit::Fenced(reason)),
            reason = feed => Err(LeadExit::Fenced(reason)),
            _ = shutdown_requested(&mut sd) => Err(LeadExit::Shutdown),
        };
        // Exported: this epoch counts as served, and we were its only writer: our copy
        // is the newest (as for a leader that serves, see start_replication).
        let newest = fresh || guard.exported.load(std::sync::atomic::Ordering::SeqCst);
        drop(guard);
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let msg = error_chain(&e);
                tracing::error!(error = %msg, "bring-up failed");
                let failed = !e.rollback_failures.is_empty();
                self.vouch_unserved(epoch, newest).await;
                let _ = timeout(self.settings.loop_period, self.coord.release(epoch)).await;
                self.after_teardown(failed, Some(msg.clone())).await;
                self.backoff_until = Some(Instant::now() + self.settings.failure_backoff);
                return LeadExit::BringUpFailed(msg);
            }
            Err(exit) => {
                self.set_state(MemberState::Fenced, Some(epoch), Some(format!("{exit:?}")));
                let ok = self.seq.tear_down().await.is_ok();
                // Guarded: refused if the lease was lost (someone may lead now).
                self.vouch_unserved(epoch, newest).await;
                if exit == LeadExit::Shutdown {
                    let _ = timeout(self.settings.loop_period, self.coord.release(epoch)).await;
                }
                self.after_teardown(!ok, None).await;
                return exit;
            }
        }

        self.set_state(MemberState::Primary, Some(epoch), None);
        self.announced_primary = true;
        // Clients following the cluster act on this, not on the key's creation: they
        // remount once the new leader serves, not while it is still bringing up.
        match flatten(
            timeout(
                self.settings.loop_period,
                self.coord.update_leader(epoch, &self.leader_record(true)),
            )
            .await,
            self.settings.loop_period,
        ) {
            Ok(true) => tracing::info!(epoch, "announced serving"),
            Ok(false) => tracing::warn!(epoch, "leader key gone before serving was announced"),
            Err(e) => tracing::warn!(error = %e, "cannot announce serving (clients retry)"),
        }
        match timeout(
            self.settings.step_timeout,
            self.seq.host().role_changed(Role::Primary),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "role hook failed"),
            Err(_) => tracing::warn!("role hook timed out"),
        }
        // Anyone waiting on a switchover to us is served now.
        if let Ok(Ok(Some(req))) =
            timeout(self.settings.loop_period, self.coord.switchover_request()).await
            && req.to == self.settings.node
        {
            let _ = timeout(self.settings.loop_period, self.coord.clear_switchover()).await;
        }
        let mut shipper = self.start_replication(epoch).await;

        let lp = self.settings.loop_period;
        let mut next = Instant::now();
        loop {
            next += lp;
            // Phase 1: wait for the tick. Phase 2: talk to etcd. Both race the fence and
            // shutdown, so a slow or frozen etcd never delays self-fencing.
            let mut tick = Tick::Continue;
            for phase in 0..2 {
                let m = self.member(MemberState::Primary, None);
                let work = async {
                    if phase == 0 {
                        sleep_until(next).await;
                        Tick::Continue
                    } else {
                        leader_tick(&*self.coord, &self.settings, &m, epoch).await
                    }
                };
                tick = tokio::select! {
                    reason = &mut fence => Tick::Fence(reason),
                    _ = shutdown_requested(&mut sd) => Tick::Shutdown,
                    t = work => t,
                };
                if !matches!(tick, Tick::Continue) {
                    break;
                }
                if phase == 0 {
                    if let Err(e) = feed_guard(&mut self.fence_guard, &proof_rx, fence_after).await
                    {
                        tick = Tick::Fence(format!("fence guard: {e}"));
                        break;
                    }
                    let p = *proof_rx.borrow();
                    if !p.lost && Instant::now() < p.renewed_at + self.settings.fence_start_after()
                    {
                        if let Some(w) = &mut self.watchdog
                            && let Err(e) = w.keepalive()
                        {
                            tracing::error!(error = %e, "watchdog keepalive failed");
                        }
                        self.status.loop_done();
                    }
                }
            }
            if !matches!(tick, Tick::Continue) {
                // No ship may run while the service goes down (the final sync of a
                // switchover is a separate, last one).
                drop(shipper.take());
            }
            match tick {
                Tick::Continue => {}
                Tick::Fence(reason) => {
                    tracing::error!(epoch, %reason, "self-fencing");
                    self.set_state(MemberState::Fenced, Some(epoch), Some(reason.clone()));
                    let ok = self.seq.tear_down().await.is_ok();
                    self.after_teardown(!ok, Some(reason.clone())).await;
                    return LeadExit::Fenced(reason);
                }
                Tick::Shutdown => {
                    self.set_state(MemberState::Demoting, Some(epoch), Some("shutdown".into()));
                    let ok = self.seq.tear_down().await.is_ok();
                    let _ = timeout(lp, self.coord.release(epoch)).await;
                    self.after_teardown(!ok, None).await;
                    return LeadExit::Shutdown;
                }
                Tick::Switch(to) => return self.switch_over(epoch, to).await,
            }
            if Instant::now() > next {
                next = Instant::now();
            }
        }
    }

    /// Our own replica record for `epoch`: we vouch for our copy (see
    /// [`crate::replication`]). With the btrfs engine it also carries the fork points
    /// retention keeps, from all records and from `promotion`
    /// ([`crate::btrfs::shipper::own_record`]), so they outlive this leadership and this
    /// process; the error says the records could not be read (the record is then
    /// without theirs).
    async fn own_record(
        &mut self,
        epoch: u64,
        promotion: Option<&crate::btrfs::Promotion>,
    ) -> (ReplicaRecord, Option<String>) {
        let lp = self.settings.loop_period;
        let mut replicas = std::collections::BTreeMap::new();
        let mut unread = None;
        if self.seq.host().btrfs().is_some() {
            match flatten(timeout(lp, self.coord.replicas()).await, lp) {
                Ok(r) => replicas = r,
                Err(e) => unread = Some(e),
            }
        }
        let own = crate::btrfs::shipper::own_record(
            &self.settings.node,
            epoch,
            nfsha_core::event::now_ms(),
            &replicas,
            promotion,
        );
        (own, unread)
    }

    /// Replicated mode, once serving: vouch for our own copy (we lead the newest epoch,
    /// see [`crate::replication`]), drop any lag override naming us, and start shipping.
    async fn start_replication(&mut self, epoch: u64) -> Option<AbortOnDrop> {
        self.settings.replication?;
        let btrfs = self.seq.host().btrfs();
        let (own, unread) = self
            .own_record(epoch, btrfs.as_ref().and_then(|(_, p)| p.as_ref()))
            .await;
        if let Some(e) = unread {
            tracing::warn!(error = %e, "cannot read the replica records; fork points of earlier leaders are not carried into our own");
        }
        let lp = self.settings.loop_period;
        let node = &self.settings.node;
        if let Err(e) = flatten(
            timeout(lp, self.coord.record_replica(node, &own, epoch)).await,
            lp,
        ) {
            tracing::warn!(error = %e, "cannot record our own replica");
        }
        if let Err(e) = flatten(timeout(lp, self.coord.clear_lag_override(node)).await, lp) {
            tracing::warn!(error = %e, "cannot clear the lag override");
        }
        let cfg = self.shipper_config(epoch)?;
        let span = tracing::info_span!("shipper", node = %node, epoch);
        // btrfs engine: its own loop (heartbeat position, snapshots, records; see
        // crate::btrfs::shipper) instead of the periodic ServerHost::ship.
        if let Some((engine, promotion)) = btrfs {
            let bcfg = crate::btrfs::shipper::BtrfsShipperConfig {
                node: node.clone(),
                epoch,
                interval: cfg.interval,
                step_timeout: self.settings.step_timeout + crate::btrfs::TRANSFER_TIMEOUT,
                loop_period: lp,
                tail: self.settings.ttl + lp,
                since: Instant::now(),
                promotion,
            };
            return Some(AbortOnDrop(tokio::spawn(tracing::Instrument::instrument(
                crate::btrfs::shipper::btrfs_ship_loop(
                    self.coord.clone(),
                    engine,
                    self.status.clone(),
                    bcfg,
                ),
                span,
            ))));
        }
        Some(AbortOnDrop(tokio::spawn(tracing::Instrument::instrument(
            ship_loop(
                self.coord.clone(),
                self.seq.host().clone(),
                self.status.clone(),
                cfg,
            ),
            span,
        ))))
    }

    fn shipper_config(&self, epoch: u64) -> Option<ShipperConfig> {
        let r = self.settings.replication?;
        Some(ShipperConfig {
            node: self.settings.node.clone(),
            epoch,
            interval: r.interval,
            step_timeout: self.settings.step_timeout,
            loop_period: self.settings.loop_period,
        })
    }

    /// Planned switchover: address off, unexport, stop nfsd, storage (teardown order),
    /// final sync in replicated mode, release the key. The target campaigns next.
    async fn switch_over(&mut self, epoch: u64, to: String) -> LeadExit {
        tracing::info!(epoch, %to, "planned switchover");
        self.set_state(
            MemberState::Demoting,
            Some(epoch),
            Some(format!("switchover to {to}")),
        );
        let ok = self.seq.tear_down().await.is_ok();
        if ok && let Some(cfg) = self.shipper_config(epoch) {
            // The key is still ours: the record is written under the epoch guard. If the
            // sync fails the target keeps its last (periodic) snapshot and the gate
            // decides whether it may take over.
            ship_one(
                &*self.coord,
                self.seq.host().as_ref(),
                &self.status,
                &cfg,
                &to,
                true,
            )
            .await;
        }
        if ok {
            let _ = timeout(self.settings.loop_period, self.coord.release(epoch)).await;
        }
        // If the teardown failed we keep the key until it expires: the target must not
        // start while anything may still be up here.
        self.after_teardown(!ok, None).await;
        LeadExit::SwitchedOver(to)
    }

    async fn after_teardown(&mut self, failed: bool, detail: Option<String>) {
        if failed {
            tracing::error!("teardown incomplete; not petting the watchdog, not campaigning");
            self.set_state(MemberState::Failed, None, detail);
            return;
        }
        if let Some(w) = &mut self.watchdog
            && let Err(e) = w.disarm()
        {
            tracing::error!(error = %e, "watchdog disarm failed");
        }
        if let Some(g) = &mut self.fence_guard {
            g.disarm().await;
        }
        self.set_state(MemberState::Standby, None, detail);
        if std::mem::take(&mut self.announced_primary) {
            match timeout(
                self.settings.step_timeout,
                self.seq.host().role_changed(Role::Standby),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "role hook failed"),
                Err(_) => tracing::warn!("role hook timed out"),
            }
        }
    }
}

/// Give the fence guard what is left of the proof (nothing if it is spent: the old
/// allowance ends at the same instant).
async fn feed_guard(
    guard: &mut Option<FenceGuard>,
    proof: &watch::Receiver<Proof>,
    fence_after: Duration,
) -> std::io::Result<()> {
    let Some(g) = guard else { return Ok(()) };
    let p = *proof.borrow();
    let left = (p.renewed_at + fence_after).saturating_duration_since(Instant::now());
    if p.lost || left.is_zero() {
        return Ok(());
    }
    g.serve_for(left).await
}

/// What one leader loop decided.
enum Tick {
    Continue,
    Fence(String),
    Shutdown,
    Switch(String),
}

/// The etcd part of a leader loop: guarded member write (our epoch must still be the
/// leader key's), then the switchover request.
async fn leader_tick<C: Coordinator>(
    coord: &C,
    settings: &Settings,
    m: &MemberInfo,
    epoch: u64,
) -> Tick {
    let lp = settings.loop_period;
    match flatten(timeout(lp, coord.heartbeat(m, Some(epoch))).await, lp) {
        Ok(true) => {}
        Ok(false) => return Tick::Fence(format!("leader key no longer has epoch {epoch}")),
        Err(e) => tracing::warn!(error = %e, "leader heartbeat failed"),
    }
    if let Ok(Ok(Some(req))) = timeout(lp, coord.switchover_request()).await
        && req.from == settings.node
        && req.to != settings.node
    {
        return Tick::Switch(req.to);
    }
    Tick::Continue
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(drop);
}

fn flatten<T, E: std::fmt::Display>(
    r: Result<Result<T, E>, tokio::time::error::Elapsed>,
    d: Duration,
) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("etcd did not answer within {d:?}")),
    }
}

pub use nfsha_core::error_chain;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::{CoordError, LagOverride, LeaderInfo, SwitchoverRequest};
    use crate::fake::{Direction, FakeHost, HostCall};
    use crate::replication::ReplicationSettings;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An in-memory store. `frozen`: every call hangs (etcd stopped / partition).
    #[derive(Debug, Default)]
    struct Store {
        leader: Option<(String, u64)>,
        rev: u64,
        members: HashMap<String, MemberInfo>,
        switchover: Option<SwitchoverRequest>,
        published: Option<u64>,
        replicas: HashMap<String, ReplicaRecord>,
        accept_lag: Option<LagOverride>,
        /// Epochs whose leader announced it serves.
        serving: Vec<u64>,
        served: Option<ServedRecord>,
        position: Option<crate::coordinator::LeaderPosition>,
    }

    #[derive(Debug, Clone)]
    struct Mem {
        store: Arc<Mutex<Store>>,
        node: String,
        frozen: Arc<AtomicBool>,
        /// `replica_view` fails (a malformed record, a failing read).
        view_fails: Arc<AtomicBool>,
    }

    impl Mem {
        fn new(node: &str) -> Self {
            Mem {
                store: Arc::default(),
                node: node.into(),
                frozen: Arc::default(),
                view_fails: Arc::default(),
            }
        }
        fn s(&self) -> std::sync::MutexGuard<'_, Store> {
            self.store.lock().expect("store")
        }
        async fn gate(&self) {
            if self.frozen.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        }
        /// Another node takes the key (the old holder's lease expired in etcd).
        fn steal(&self, node: &str) -> u64 {
            let mut s = self.s();
            s.rev += 1;
            let rev = s.rev;
            s.leader = Some((node.into(), rev));
            s.published = Some(rev);
            rev
        }
        fn leader_epoch(&self) -> Option<u64> {
            self.s().leader.as_ref().map(|l| l.1)
        }
    }

    impl Coordinator for Mem {
        async fn acquire(&self, _record: &LeaderRecord) -> Result<Acquire, CoordError> {
            self.gate().await;
            let mut s = self.s();
            if let Some((node, epoch)) = &s.leader {
                return Ok(Acquire::Held(LeaderInfo {
                    node: node.clone(),
                    address: None,
                    epoch: *epoch,
                    serving: s.serving.contains(epoch),
                }));
            }
            s.rev += 1;
            let rev = s.rev;
            s.leader = Some((self.node.clone(), rev));
            s.served = Some(ServedRecord::acquired(
                s.served.as_ref(),
                s.published,
                rev,
                0,
            ));
            s.published = Some(rev);
            Ok(Acquire::Acquired { epoch: rev })
        }
        async fn renew(&self, epoch: u64) -> Result<bool, CoordError> {
            self.gate().await;
            Ok(self.s().leader == Some((self.node.clone(), epoch)))
        }
        async fn update_leader(&self, epoch: u64, r: &LeaderRecord) -> Result<bool, CoordError> {
            self.gate().await;
            let mut s = self.s();
            if s.leader.as_ref().map(|l| l.1) != Some(epoch) {
                return Ok(false);
            }
            if r.serving {
                s.serving.push(epoch);
            }
            Ok(true)
        }
        async fn release(&self, epoch: u64) -> Result<(), CoordError> {
            self.gate().await;
            let mut s = self.s();
            if s.leader.as_ref().map(|l| l.1) == Some(epoch) {
                s.leader = None;
            }
            Ok(())
        }
        async fn resign_session(&self) -> Result<(), CoordError> {
            Ok(())
        }
        async fn leader(&self) -> Result<Option<LeaderInfo>, CoordError> {
            self.gate().await;
            let s = self.s();
            Ok(s.leader.as_ref().map(|(n, e)| LeaderInfo {
                node: n.clone(),
                address: None,
                epoch: *e,
                serving: s.serving.contains(e),
            }))
        }
        async fn heartbeat(
            &self,
            member: &MemberInfo,
            guard: Option<u64>,
        ) -> Result<bool, CoordError> {
            self.gate().await;
            let mut s = self.s();
            if let Some(e) = guard
                && s.leader.as_ref().map(|l| l.1) != Some(e)
            {
                return Ok(false);
            }
            s.members.insert(member.node.clone(), member.clone());
            Ok(true)
        }
        async fn switchover_request(&self) -> Result<Option<SwitchoverRequest>, CoordError> {
            self.gate().await;
            Ok(self.s().switchover.clone())
        }
        async fn clear_switchover(&self) -> Result<(), CoordError> {
            self.gate().await;
            self.s().switchover = None;
            Ok(())
        }
        async fn members(&self) -> Result<Vec<MemberInfo>, CoordError> {
            self.gate().await;
            let mut v: Vec<MemberInfo> = self.s().members.values().cloned().collect();
            v.sort_by(|a, b| a.node.cmp(&b.node));
            Ok(v)
        }
        async fn record_replica(
            &self,
            node: &str,
            record: &ReplicaRecord,
            epoch: u64,
        ) -> Result<bool, CoordError> {
            self.gate().await;
            let mut s = self.s();
            if s.leader.as_ref().map(|l| l.1) != Some(epoch) {
                return Ok(false);
            }
            s.replicas.insert(node.to_owned(), record.clone());
            Ok(true)
        }
        async fn record_served(&self, r: &ServedRecord, epoch: u64) -> Result<bool, CoordError> {
            self.gate().await;
            let mut s = self.s();
            if s.leader.as_ref().map(|l| l.1) != Some(epoch) {
                return Ok(false);
            }
            s.served = Some(r.clone());
            Ok(true)
        }
        async fn replica_view(&self, node: &str) -> Result<ReplicaView, CoordError> {
            self.gate().await;
            if self.view_fails.load(Ordering::SeqCst) {
                return Err(CoordError::Injected);
            }
            let s = self.s();
            Ok(ReplicaView {
                record: s.replicas.get(node).cloned(),
                epoch: s.published,
                accept_lag: s.accept_lag.clone(),
                position: s.position.clone(),
                served: s.served.clone(),
            })
        }
        async fn clear_lag_override(&self, node: &str) -> Result<(), CoordError> {
            self.gate().await;
            let mut s = self.s();
            if s.accept_lag.as_ref().is_some_and(|o| o.node == node) {
                s.accept_lag = None;
            }
            Ok(())
        }
    }

    fn settings() -> Settings {
        Settings {
            node: "a".into(),
            cluster: "t".into(),
            ttl: Duration::from_secs(10),
            loop_period: Duration::from_secs(1),
            safety_margin: Duration::from_secs(5),
            fence_lead: Duration::from_secs(1),
            step_timeout: Duration::from_secs(3),
            storage: StorageMode::Shared,
            address: Some("10.0.0.1".into()),
            api: None,
            failure_backoff: Duration::from_secs(10),
            replication: None,
        }
    }

    struct Running {
        host: FakeHost,
        mem: Mem,
        status: StatusHandle,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<Option<LeadExit>>,
    }

    fn start_with(mem: Mem, host: FakeHost, wd: Option<Box<dyn Watchdog>>) -> Running {
        let (stop, rx) = watch::channel(false);
        let mut c = Controller::new(settings(), Arc::new(mem.clone()), host.clone(), rx);
        if let Some(w) = wd {
            c = c.with_watchdog(w);
        }
        let status = c.status();
        let task = tokio::spawn(c.run());
        Running {
            host,
            mem,
            status,
            stop,
            task,
        }
    }

    fn start() -> Running {
        start_with(Mem::new("a"), FakeHost::new("a"), None)
    }

    const MAX_LAG: Duration = Duration::from_secs(60);

    /// Settings of `node` in replicated mode (interval 5 s, max_lag 60 s).
    fn replicated(node: &str) -> Settings {
        Settings {
            node: node.into(),
            replication: Some(ReplicationSettings {
                interval: Duration::from_secs(5),
                max_lag: MAX_LAG,
            }),
            ..settings()
        }
    }

    fn start_node(s: Settings, mem: Mem) -> Running {
        let host = FakeHost::new(s.node.clone());
        start_node_on(s, mem, host)
    }

    fn start_node_on(s: Settings, mem: Mem, host: FakeHost) -> Running {
        let (stop, rx) = watch::channel(false);
        let c = Controller::new(s, Arc::new(mem.clone()), host.clone(), rx);
        let status = c.status();
        let task = tokio::spawn(c.run());
        Running {
            host,
            mem,
            status,
            stop,
            task,
        }
    }

    fn member(node: &str, state: MemberState) -> MemberInfo {
        MemberInfo {
            node: node.into(),
            state,
            epoch_seen: 0,
            serving: false,
            address: None,
            api: None,
            detail: None,
            lag_ms: None,
            updated_ms: 0,
        }
    }

    /// A replica record of `node` shipped `age` ago (wall clock) by `by` at `epoch`.
    fn shipped(mem: &Mem, node: &str, by: &str, epoch: u64, age: Duration) {
        let at = nfsha_core::event::now_ms() - age.as_millis() as u64;
        mem.s().replicas.insert(
            node.into(),
            ReplicaRecord {
                shipped_at_ms: at,
                epoch,
                by: by.into(),
                snapshot: None,
                position_ms: None,
                forks: Vec::new(),
            },
        );
    }

    /// A standby `b` under leader `a` (epoch 1) with the given record age; the leader
    /// is then lost. Returns once `b` has seen the leader and then the vacancy.
    async fn standby_b_loses_its_leader(age: Option<Duration>) -> Running {
        let mem = Mem::new("b");
        assert_eq!(mem.steal("a"), 1);
        if let Some(age) = age {
            shipped(&mem, "b", "a", 1, age);
        }
        let r = start_node(replicated("b"), mem);
        until("b sees a", Duration::from_secs(5), || {
            r.status.get().leader.as_deref() == Some("a")
        })
        .await;
        r.mem.s().leader = None;
        r
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_ships_to_each_standby_every_interval_and_records_it() {
        let mem = Mem::new("a");
        for (n, st) in [
            ("b", MemberState::Standby),
            ("c", MemberState::Behind),
            ("d", MemberState::Failed),
        ] {
            mem.s().members.insert(n.into(), member(n, st));
        }
        // A cluster that never had a leader has no gate: a campaigns at once.
        let r = start_node(replicated("a"), mem);
        until("serving", Duration::from_secs(5), || serving(&r)).await;
        until("shipped to b and c", Duration::from_secs(5), || {
            let s = r.host.ships();
            s.contains(&"b".to_owned()) && s.contains(&"c".to_owned())
        })
        .await;
        until("recorded", Duration::from_secs(5), || {
            r.mem.s().replicas.len() == 3
        })
        .await;
        {
            let s = r.mem.s();
            for n in ["a", "b", "c"] {
                let rec = &s.replicas[n];
                assert_eq!((rec.by.as_str(), rec.epoch), ("a", 1), "{n}: {rec:?}");
            }
            assert!(!s.replicas.contains_key("d"), "a failed node gets nothing");
        }
        let first_b = r.mem.s().replicas["b"].shipped_at_ms;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let to_b = r.host.ships().iter().filter(|t| *t == "b").count();
        assert!(
            (3..=4).contains(&to_b),
            "every 5 s: {to_b} ships to b in ~12 s"
        );
        assert!(r.mem.s().replicas["b"].shipped_at_ms >= first_b);
        assert_eq!(r.status.get().replication["b"].ok_total as usize, to_b);

        // A failing ship is reported, never fatal.
        r.host.fail_ships_to("c", true);
        tokio::time::sleep(Duration::from_secs(11)).await;
        let st = r.status.get();
        let c = &st.replication["c"];
        assert!(c.consecutive_failures >= 2, "{c:?}");
        assert!(
            c.last_error.as_deref().unwrap_or("").contains("Injected"),
            "{c:?}"
        );
        assert!(serving(&r), "still serving");
        assert_eq!(r.mem.leader_epoch(), Some(1));
    }

    /// All datagrams waiting on `s`.
    fn drain(s: &std::os::unix::net::UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = s.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// The datagrams on `sock` up to and including the first `READY=1`.
    async fn until_ready(sock: &std::os::unix::net::UnixDatagram) -> Vec<String> {
        let mut got = Vec::new();
        until("READY=1", Duration::from_secs(10), || {
            got.extend(drain(sock));
            got.iter().any(|m| m.contains("READY=1"))
        })
        .await;
        got
    }

    #[tokio::test(start_paused = true)]
    async fn systemd_hears_ready_once_the_leader_serves_and_status_with_role_and_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        sock.set_nonblocking(true).expect("nonblocking");
        let notifier = Arc::new(crate::notify::Notifier::new(Some(
            path.display().to_string(),
        )));
        let mem = Mem::new("a");
        let host = FakeHost::new("a");
        let (stop, rx) = watch::channel(false);
        let c = Controller::new(settings(), Arc::new(mem.clone()), host.clone(), rx)
            .with_notifier(notifier);
        let status = c.status();
        let task = tokio::spawn(c.run());
        let mut got = until_ready(&sock).await;
        let ready = got
            .iter()
            .position(|m| m.contains("READY=1"))
            .expect("ready");
        // READY comes with the serving primary's status, after the bring-up states.
        assert!(host.is_active(), "READY before serving");
        let epoch = status.get().epoch.expect("epoch");
        assert_eq!(
            got[ready],
            format!("READY=1\nSTATUS=primary, epoch {epoch}\n")
        );
        assert!(
            got[..ready]
                .iter()
                .any(|m| m.starts_with("STATUS=promoting")),
            "{got:?}"
        );
        assert!(!got[..ready].iter().any(|m| m.contains("READY")), "{got:?}");
        stop.send_replace(true);
        let _ = task.await;
        got.extend(drain(&sock));
        assert_eq!(
            got.iter().filter(|m| m.contains("READY=1")).count(),
            1,
            "{got:?}"
        );
        assert!(
            got[ready + 1..]
                .iter()
                .any(|m| m.starts_with("STATUS=demoting, epoch")),
            "{got:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn systemd_hears_ready_from_a_standby_following_a_leader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        sock.set_nonblocking(true).expect("nonblocking");
        let mem = Mem::new("b");
        assert_eq!(mem.steal("a"), 1);
        let mut s = settings();
        s.node = "b".into();
        let (stop, rx) = watch::channel(false);
        let c = Controller::new(s, Arc::new(mem.clone()), FakeHost::new("b"), rx).with_notifier(
            Arc::new(crate::notify::Notifier::new(Some(
                path.display().to_string(),
            ))),
        );
        let task = tokio::spawn(c.run());
        let got = until_ready(&sock).await;
        let m = got.iter().find(|m| m.contains("READY=1")).expect("ready");
        assert!(m.contains("STATUS=standby"), "{got:?}");
        assert!(m.contains("following a"), "{got:?}");
        stop.send_replace(true);
        let _ = task.await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_with_a_fresh_record_takes_over_when_the_leader_is_lost() {
        let r = standby_b_loses_its_leader(Some(Duration::from_secs(10))).await;
        until("b serving", Duration::from_secs(10), || serving(&r)).await;
        assert_eq!(r.status.get().epoch, Some(2));
        until("b vouches for itself", Duration::from_secs(5), || {
            r.mem.s().replicas["b"].by == "b"
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_with_a_stale_record_stays_out_until_the_operator_accepts_the_lag() {
        let r = standby_b_loses_its_leader(Some(Duration::from_secs(120))).await;
        until("b behind", Duration::from_secs(5), || {
            r.status.get().state == MemberState::Behind
        })
        .await;
        let st = r.status.get();
        assert!(st.lag_ms.expect("lag") >= 120_000, "{st:?}");
        assert!(st.detail.as_deref().unwrap_or("").contains("old"), "{st:?}");
        let published = r.mem.s().members["b"].clone();
        assert_eq!(published.state, MemberState::Behind);
        assert!(published.lag_ms.expect("lag in the member record") >= 120_000);
        // Leaderless, and it stays that way: b does not campaign.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(r.mem.leader_epoch(), None);
        assert!(!r.host.is_active());
        // The operator's override.
        r.mem.s().accept_lag = Some(LagOverride {
            node: "b".into(),
            requested_ms: 0,
        });
        until("b serving", Duration::from_secs(10), || serving(&r)).await;
        until("override consumed", Duration::from_secs(5), || {
            r.mem.s().accept_lag.is_none()
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_that_cannot_read_its_replica_record_counts_as_behind() {
        let mem = Mem::new("b");
        mem.steal("a");
        shipped(&mem, "b", "a", 1, Duration::from_secs(10));
        mem.view_fails.store(true, Ordering::SeqCst);
        let r = start_node(replicated("b"), mem);
        until("b behind", Duration::from_secs(5), || {
            r.status.get().state == MemberState::Behind
        })
        .await;
        r.mem.s().leader = None;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(r.mem.leader_epoch(), None, "unknown lag: no campaign");
        let m = r.mem.s().members["b"].clone();
        assert_eq!(m.state, MemberState::Behind, "still heartbeating: {m:?}");
        assert!(m.detail.unwrap_or_default().contains("cannot read"));
        // Readable again: the record was fresh when the leader was lost.
        r.mem.view_fails.store(false, Ordering::SeqCst);
        until("b serving", Duration::from_secs(10), || serving(&r)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_that_was_never_shipped_to_does_not_campaign() {
        let r = standby_b_loses_its_leader(None).await;
        until("b behind", Duration::from_secs(5), || {
            r.status.get().state == MemberState::Behind
        })
        .await;
        assert_eq!(r.status.get().lag_ms, None);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(r.mem.leader_epoch(), None);
        // An override for another node does not help b.
        r.mem.s().accept_lag = Some(LagOverride {
            node: "c".into(),
            requested_ms: 0,
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(r.mem.leader_epoch(), None);
        assert!(!r.host.is_active());
    }

    #[tokio::test(start_paused = true)]
    async fn a_returning_old_leader_stays_behind_until_the_new_leader_ships_to_it() {
        // a led epoch 1 (its own record), crashed; b took over with epoch 2.
        let mem = Mem::new("a");
        mem.steal("a");
        shipped(&mem, "a", "a", 1, Duration::from_secs(120));
        mem.steal("b");
        let r = start_node(replicated("a"), mem);
        until("a behind under b", Duration::from_secs(5), || {
            let s = r.status.get();
            s.state == MemberState::Behind && s.leader.as_deref() == Some("b")
        })
        .await;
        // b is lost before it shipped to a: a must not take over.
        r.mem.s().leader = None;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(r.mem.leader_epoch(), None, "a stays out while behind");
        assert!(!r.host.is_active());
        assert_eq!(r.status.get().state, MemberState::Behind);
        // A new leader c ships to a: a is a standby again and takes over when c goes.
        let e3 = r.mem.steal("c");
        shipped(&r.mem, "a", "c", e3, Duration::ZERO);
        until("a standby", Duration::from_secs(5), || {
            r.status.get().state == MemberState::Standby
        })
        .await;
        r.mem.s().leader = None;
        until("a serving", Duration::from_secs(10), || serving(&r)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_switchover_ships_a_final_snapshot_to_the_target_and_records_it() {
        let mem = Mem::new("a");
        mem.s()
            .members
            .insert("b".into(), member("b", MemberState::Standby));
        let r = start_node(replicated("a"), mem);
        until("serving", Duration::from_secs(5), || serving(&r)).await;
        r.mem.s().switchover = Some(SwitchoverRequest {
            from: "a".into(),
            to: "b".into(),
        });
        until("released", Duration::from_secs(10), || {
            r.mem.leader_epoch().is_none()
        })
        .await;
        let calls = r.host.calls();
        let fs = calls
            .iter()
            .position(|c| *c == HostCall::FinalSync("b".into()))
            .expect("final sync to b");
        let addr_down = calls
            .iter()
            .rposition(|c| *c == HostCall::Down(Step::FloatingAddress))
            .expect("teardown");
        assert!(addr_down < fs, "final sync after the service is down");
        assert!(
            !calls[fs..].iter().any(|c| matches!(c, HostCall::Ship(_))),
            "no periodic ship after the final sync"
        );
        let rec = r.mem.s().replicas["b"].clone();
        assert_eq!((rec.by.as_str(), rec.epoch), ("a", 1));
    }

    async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn serving(r: &Running) -> bool {
        r.status.get().state == MemberState::Primary && r.host.is_active()
    }

    fn first_after(
        host: &FakeHost,
        call: HostCall,
        after: std::time::Instant,
    ) -> std::time::Instant {
        host.timed_calls()
            .into_iter()
            .find(|(t, c)| *c == call && *t >= after)
            .map(|(t, _)| t)
            .unwrap_or_else(|| panic!("no {call:?} after the fault"))
    }

    #[test]
    fn settings_that_leave_no_time_to_renew_are_refused() {
        settings().check().expect("defaults are sane");
        let mut s = settings();
        s.ttl = Duration::from_secs(3);
        s.safety_margin = Duration::from_millis(1500);
        let err = s
            .check()
            .expect_err("3 s - 1.5 s - 1 s loop leaves no renewal");
        assert!(err.contains("leaves no time to renew"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn frozen_store_self_fences_on_the_local_clock_address_first() {
        let r = start();
        until("serving", Duration::from_secs(5), || serving(&r)).await;
        let frozen_at = Instant::now().into_std();
        r.mem.frozen.store(true, Ordering::SeqCst);
        until("fenced", Duration::from_secs(30), || !r.host.is_active()).await;
        let proof = r.status.lease_proof().expect("proof");
        let addr = first_after(&r.host, HostCall::Down(Step::FloatingAddress), frozen_at);
        let s = settings();
        assert!(
            addr <= proof + s.fence_after(),
            "address gone by proof + ttl - margin"
        );
        assert!(
            addr >= proof + s.fence_start_after(),
            "not before the renewals had their chance"
        );
        let downs: Vec<HostCall> = r
            .host
            .timed_calls()
            .into_iter()
            .filter(|(t, c)| *t >= frozen_at && matches!(c, HostCall::Down(_)))
            .map(|(_, c)| c)
            .take(4)
            .collect();
        assert_eq!(downs, Step::TEAR_DOWN.map(HostCall::Down).to_vec());
        // Whatever etcd says later: the store still names us (frozen, not expired), but
        // the node stays down while it cannot prove anything.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!r.host.is_active(), "never serves without proof");
        assert_eq!(r.mem.leader_epoch(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_taken_by_another_node_fences_at_once_and_no_failback() {
        let r = start();
        until("serving", Duration::from_secs(5), || serving(&r)).await;
        let t = Instant::now().into_std();
        let e2 = r.mem.steal("b");
        until("fenced", Duration::from_secs(5), || !r.host.is_active()).await;
        let addr = first_after(&r.host, HostCall::Down(Step::FloatingAddress), t);
        assert!(
            addr - t <= Duration::from_secs(2),
            "within a loop or two, not at ttl: {:?}",
            addr - t
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!r.host.is_active(), "b leads: a stays standby");
        let st = r.status.get();
        assert_eq!(
            (st.state, st.leader.as_deref(), st.epoch_seen),
            (MemberState::Standby, Some("b"), e2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_bring_up_releases_the_key_backs_off_then_retries_with_a_new_epoch() {
        let host = FakeHost::new("a");
        host.fail(Step::Exports, Direction::Up, 1);
        let r = start_with(Mem::new("a"), host, None);
        until("rolled back", Duration::from_secs(5), || {
            r.host.calls().contains(&HostCall::Down(Step::Storage)) && r.host.calls().len() > 8
        })
        .await;
        until("key released", Duration::from_secs(5), || {
            r.mem.leader_epoch().is_none()
        })
        .await;
        let released_at = Instant::now();
        until("serving again", Duration::from_secs(30), || serving(&r)).await;
        assert!(
            Instant::now() - released_at >= Duration::from_secs(9),
            "backed off ~one ttl"
        );
        assert_eq!(r.status.get().epoch, Some(2), "new epoch");
    }

    /// A node on `mem` whose first storage bring-up fails; returns once it has rolled
    /// back and released the key.
    async fn storage_fails_once(s: Settings, mem: Mem) -> Running {
        storage_fails(s, mem, 1).await
    }

    /// A node on `mem` whose first `times` storage bring-ups fail (`u32::MAX`: all);
    /// returns once the first has rolled back and released the key.
    async fn storage_fails(s: Settings, mem: Mem, times: u32) -> Running {
        let host = FakeHost::new(s.node.clone());
        host.fail(Step::Storage, Direction::Up, times);
        let r = start_node_on(s, mem, host);
        until("key released", Duration::from_secs(5), || {
            r.host.calls().contains(&HostCall::Down(Step::Storage))
                && r.mem.leader_epoch().is_none()
        })
        .await;
        r
    }

    /// Issue 12: the first leader of a replicated cluster fails its bring-up (the
    /// storage step). Nobody ever served, so nobody can be behind: it releases the
    /// key, backs off and campaigns again. Before the fix the epoch its failed
    /// campaign published made every node, itself included, `behind` (no record
    /// shipped to it) and the cluster never got a leader.
    #[tokio::test(start_paused = true)]
    async fn a_first_leader_whose_bring_up_fails_campaigns_again_after_its_backoff() {
        let mem = Mem::new("a");
        let r = storage_fails_once(replicated("a"), mem).await;
        let released_at = Instant::now();
        until("serving again", Duration::from_secs(30), || serving(&r)).await;
        assert!(
            Instant::now() - released_at >= Duration::from_secs(9),
            "backed off ~one ttl"
        );
        let st = r.status.get();
        assert_eq!((st.epoch, st.lag_ms), (Some(2), None), "new epoch: {st:?}");
        assert_eq!(r.mem.s().replicas["a"].epoch, 2, "vouches for itself");
    }

    /// The store of `node` after `a` led epoch 1 and was lost; `node`'s record was
    /// written by `by` 120 s ago (older than max_lag).
    fn leaderless_after_epoch_1(node: &str, by: &str) -> Mem {
        let mem = Mem::new(node);
        assert_eq!(mem.steal("a"), 1);
        shipped(&mem, node, by, 1, Duration::from_secs(120));
        mem.s().leader = None;
        mem
    }

    /// Issue 12, after a full outage: the node that led the last epoch restarts,
    /// campaigns and fails its bring-up. It still holds the newest data: it campaigns
    /// again (before the fix its own record, older than the epoch of the failed
    /// campaign, was judged by its age: behind for good).
    #[tokio::test(start_paused = true)]
    async fn the_last_leader_whose_bring_up_fails_after_an_outage_campaigns_again() {
        let mem = leaderless_after_epoch_1("a", "a");
        let r = storage_fails_once(replicated("a"), mem).await;
        until("serving again", Duration::from_secs(30), || serving(&r)).await;
        assert_eq!(r.status.get().epoch, Some(3));
    }

    /// Issue 12, the other case: a node that campaigned on the operator's override (its
    /// copy is known to be stale) and failed its bring-up is not vouched for: its
    /// status says `behind` and why; the override still lets it campaign again.
    #[tokio::test(start_paused = true)]
    async fn a_stale_node_whose_bring_up_fails_stays_behind_and_says_so() {
        let mem = leaderless_after_epoch_1("b", "a");
        mem.s().accept_lag = Some(LagOverride {
            node: "b".into(),
            requested_ms: 0,
        });
        let r = storage_fails_once(replicated("b"), mem).await;
        until("behind", Duration::from_secs(5), || {
            r.status.get().state == MemberState::Behind
        })
        .await;
        let st = r.status.get();
        assert!(
            st.detail.as_deref().unwrap_or("").contains("max_lag"),
            "{st:?}"
        );
        assert_eq!(r.mem.s().replicas["b"].by, "a", "not vouched for");
        until("serving on the override", Duration::from_secs(30), || {
            serving(&r)
        })
        .await;
        assert_eq!(r.status.get().epoch, Some(3));
    }

    /// `mem`'s store, seen by `node` (another controller on the same store).
    fn seen_by(mem: &Mem, node: &str) -> Mem {
        Mem {
            node: node.into(),
            ..mem.clone()
        }
    }

    /// The open item of issue 12: the first leader's storage is broken for good. Its
    /// leadership never served, so a node that was never shipped to lacks nothing: it
    /// campaigns and serves. Before the fix the epoch the failed acquire published left
    /// `b` `behind` ("no snapshot was ever shipped to this node") and the cluster
    /// leaderless while `a` retried every ttl.
    #[tokio::test(start_paused = true)]
    async fn a_first_leader_whose_storage_is_broken_for_good_leaves_the_lead_to_a_never_shipped_node()
     {
        let a = storage_fails(replicated("a"), Mem::new("a"), u32::MAX).await;
        let served = a.mem.s().served.clone().expect("written at acquire");
        assert_eq!((served.epoch, served.acquired), (None, 1), "{served:?}");
        let b = start_node(replicated("b"), seen_by(&a.mem, "b"));
        until("b serving", Duration::from_secs(30), || serving(&b)).await;
        assert!(!a.host.is_active());
        assert!(!b.mem.s().replicas.contains_key("b") || b.mem.s().replicas["b"].by == "b");
        let served = b.mem.s().served.clone().expect("served");
        assert_eq!(
            (served.epoch, served.node.as_deref()),
            (b.status.get().epoch, Some("b"))
        );
    }

    /// The store after `a` served epoch 5 with the btrfs engine, shipped to `b` (its
    /// snapshot taken at position 100 s, a's last heartbeat at 130 s, tail 5 s: RPO
    /// 35 s) and was lost; a's own record is 120 s old by the wall clock (older than
    /// max_lag), as after a long leadership.
    fn after_a_served_epoch_5_and_shipped_to_b(node: &str) -> Mem {
        let mem = Mem::new(node);
        mem.s().rev = 4;
        assert_eq!(mem.steal("a"), 5);
        shipped(&mem, "a", "a", 5, Duration::from_secs(120));
        shipped(&mem, "b", "a", 5, Duration::from_secs(120));
        let mut s = mem.s();
        s.served = Some(ServedRecord::serving("a", 5, 0));
        s.position = Some(crate::coordinator::LeaderPosition {
            node: "a".into(),
            epoch: 5,
            position_ms: 130_000,
            tail_ms: 5_000,
        });
        let b = s.replicas.get_mut("b").expect("b");
        b.snapshot = Some(crate::coordinator::SnapshotRef {
            name: "data@5-x".into(),
            identity: "u5".into(),
        });
        b.position_ms = Some(100_000);
        s.leader = None;
        drop(s);
        mem
    }

    /// btrfs engine: `b` (shipped to in epoch 5) takes over, acquires epoch 6 and its
    /// bring-up fails before its exports. Epoch 6 never served: `b` is still judged by
    /// its epoch-5 snapshot (a standby, RPO 35 s), and `a`, which led epoch 5, is not
    /// `behind`: it acquires epoch 7 and serves. Before the fix both were `behind` for
    /// good ("epoch 6 has not shipped to it", and a's own record judged by its age).
    #[tokio::test(start_paused = true)]
    async fn btrfs_an_unserved_leadership_strands_neither_its_node_nor_the_last_leader() {
        let b = storage_fails_once(
            replicated("b"),
            after_a_served_epoch_5_and_shipped_to_b("b"),
        )
        .await;
        assert_eq!(b.mem.s().published, Some(6));
        until(
            "b judged after its failed epoch 6",
            Duration::from_secs(5),
            || b.mem.s().members["b"].state != MemberState::Promoting,
        )
        .await;
        let m = b.mem.s().members["b"].clone();
        assert_eq!(
            (m.state, m.lag_ms),
            (MemberState::Standby, Some(35_000)),
            "b is not stranded for epoch 6: {m:?}"
        );
        let a = start_node(replicated("a"), seen_by(&b.mem, "a"));
        until("a serving", Duration::from_secs(10), || serving(&a)).await;
        assert_eq!(a.status.get().epoch, Some(7));
        assert_ne!(b.status.get().state, MemberState::Promoting);
    }

    /// btrfs engine: `b` (shipped to in epoch 5) takes over and its exports of epoch 6
    /// come up before its floating address fails. Epoch 6 counts as served and `b` was
    /// its only writer: it vouches for its copy and campaigns again, while `a` (which
    /// lacks b's epoch-6 writes) is `behind`. Without the vouch both were `behind`.
    #[tokio::test(start_paused = true)]
    async fn btrfs_a_leadership_that_exported_vouches_for_its_node() {
        let host = FakeHost::new("b");
        host.fail(Step::FloatingAddress, Direction::Up, 1);
        let b = start_node_on(
            replicated("b"),
            after_a_served_epoch_5_and_shipped_to_b("b"),
            host,
        );
        until("b's epoch 6 rolled back", Duration::from_secs(5), || {
            b.host.calls().contains(&HostCall::Down(Step::Exports))
                && b.mem.leader_epoch().is_none()
        })
        .await;
        let rec = b.mem.s().replicas["b"].clone();
        assert_eq!((rec.by.as_str(), rec.epoch), ("b", 6), "{rec:?}");
        let a = start_node(replicated("a"), seen_by(&b.mem, "a"));
        until("a behind", Duration::from_secs(5), || {
            a.status.get().state == MemberState::Behind
        })
        .await;
        until("b serving again", Duration::from_secs(30), || serving(&b)).await;
        assert_eq!(b.status.get().epoch, Some(7));
        assert!(!a.host.is_active(), "a never led");
    }

    /// The protection is kept: a leadership that served (and may have taken writes)
    /// leaves a node that was never shipped to `behind`, and the cluster leaderless.
    #[tokio::test(start_paused = true)]
    async fn a_leadership_that_served_still_leaves_a_never_shipped_node_behind() {
        let a = start_node(replicated("a"), Mem::new("a"));
        until("a serving", Duration::from_secs(5), || serving(&a)).await;
        let served = a.mem.s().served.clone().expect("served");
        assert_eq!((served.epoch, served.node.as_deref()), (Some(1), Some("a")));
        a.task.abort();
        a.host.crash();
        a.mem.s().leader = None;
        let b = start_node(replicated("b"), seen_by(&a.mem, "b"));
        until("b behind", Duration::from_secs(5), || {
            b.status.get().state == MemberState::Behind
        })
        .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(b.mem.leader_epoch(), None, "b must not campaign");
        assert!(!b.host.is_active());
        let st = b.status.get();
        assert!(
            st.detail
                .as_deref()
                .unwrap_or("")
                .contains("no snapshot was ever shipped"),
            "{st:?}"
        );
    }

    /// A leadership counts as served from its exports on, bring-up finished or not
    /// (clients may write as soon as they can reach them): `a`'s floating address
    /// fails, and `b`, never shipped to, stays `behind`.
    #[tokio::test(start_paused = true)]
    async fn a_leadership_whose_bring_up_fails_after_its_exports_counts_as_served() {
        let host = FakeHost::new("a");
        host.fail_always(Step::FloatingAddress, Direction::Up);
        let a = start_node_on(replicated("a"), Mem::new("a"), host);
        until("a's exports rolled back", Duration::from_secs(5), || {
            a.host.calls().contains(&HostCall::Down(Step::Exports))
        })
        .await;
        let served = a.mem.s().served.clone().expect("served");
        assert_eq!((served.epoch, served.node.as_deref()), (Some(1), Some("a")));
        let b = start_node(replicated("b"), seen_by(&a.mem, "b"));
        until("b behind", Duration::from_secs(5), || {
            b.status.get().state == MemberState::Behind
        })
        .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!b.host.is_active(), "b must not serve");
        assert_ne!(b.mem.s().leader.as_ref().map(|l| l.0.as_str()), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_cannot_prove_leadership_never_starts_a_step() {
        // The key changes hands between the acquire and the first guarded step.
        #[derive(Debug, Clone)]
        struct Thief(Mem);
        impl Coordinator for Thief {
            async fn acquire(&self, r: &LeaderRecord) -> Result<Acquire, CoordError> {
                let a = self.0.acquire(r).await?;
                self.0.steal("b");
                Ok(a)
            }
            async fn renew(&self, e: u64) -> Result<bool, CoordError> {
                self.0.renew(e).await
            }
            async fn update_leader(&self, e: u64, r: &LeaderRecord) -> Result<bool, CoordError> {
                self.0.update_leader(e, r).await
            }
            async fn release(&self, e: u64) -> Result<(), CoordError> {
                self.0.release(e).await
            }
            async fn resign_session(&self) -> Result<(), CoordError> {
                Ok(())
            }
            async fn leader(&self) -> Result<Option<LeaderInfo>, CoordError> {
                self.0.leader().await
            }
            async fn heartbeat(&self, m: &MemberInfo, g: Option<u64>) -> Result<bool, CoordError> {
                self.0.heartbeat(m, g).await
            }
            async fn switchover_request(&self) -> Result<Option<SwitchoverRequest>, CoordError> {
                Ok(None)
            }
            async fn clear_switchover(&self) -> Result<(), CoordError> {
                Ok(())
            }
            async fn members(&self) -> Result<Vec<MemberInfo>, CoordError> {
                self.0.members().await
            }
            async fn record_replica(
                &self,
                n: &str,
                r: &ReplicaRecord,
                e: u64,
            ) -> Result<bool, CoordError> {
                self.0.record_replica(n, r, e).await
            }
            async fn replica_view(&self, n: &str) -> Result<ReplicaView, CoordError> {
                self.0.replica_view(n).await
            }
            async fn record_served(&self, r: &ServedRecord, e: u64) -> Result<bool, CoordError> {
                self.0.record_served(r, e).await
            }
            async fn clear_lag_override(&self, n: &str) -> Result<(), CoordError> {
                self.0.clear_lag_override(n).await
            }
        }
        let host = FakeHost::new("a");
        let (_stop, rx) = watch::channel(false);
        let c = Controller::new(settings(), Arc::new(Thief(Mem::new("a"))), host.clone(), rx);
        let status = c.status();
        let _task = tokio::spawn(c.run());
        until("standby again", Duration::from_secs(10), || {
            status.get().epoch_seen >= 2 && status.get().state == MemberState::Standby
        })
        .await;
        assert!(
            !host.calls().iter().any(|c| matches!(c, HostCall::Up(_))),
            "no step may start: {:?}",
            host.calls()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_teardown_keeps_the_node_out_until_a_teardown_succeeds() {
        let host = FakeHost::new("a");
        let r = start_with(Mem::new("a"), host, None);
        until("serving", Duration::from_secs(5), || serving(&r)).await;
        r.host.fail_always(Step::Nfsd, Direction::Down);
        r.mem.frozen.store(true, Ordering::SeqCst);
        until("failed", Duration::from_secs(30), || {
            r.status.get().state == MemberState::Failed
        })
        .await;
        // etcd comes back with the key expired; the node must not campaign.
        r.mem.s().leader = None;
        r.mem.frozen.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            r.mem.leader_epoch(),
            None,
            "a wedged node does not campaign"
        );
        assert_eq!(r.status.get().state, MemberState::Failed);
        assert_eq!(
            r.mem.s().members["a"].state,
            MemberState::Failed,
            "published as failed"
        );
        r.host.fail(Step::Nfsd, Direction::Down, 0);
        until(
            "serving after a clean teardown",
            Duration::from_secs(30),
            || serving(&r),
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_key_of_our_own_is_released_and_retaken_with_a_new_epoch() {
        let mem = Mem::new("a");
        let old = mem.steal("a");
        let r = start_with(mem, FakeHost::new("a"), None);
        until("serving", Duration::from_secs(10), || serving(&r)).await;
        assert!(r.status.get().epoch > Some(old));
        // It cleaned up first: teardown of everything before any bring-up.
        assert_eq!(
            r.host.calls()[..4].to_vec(),
            Step::TEAR_DOWN.map(HostCall::Down).to_vec()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_tears_down_and_releases() {
        let r = start();
        until("serving", Duration::from_secs(5), || serving(&r)).await;
        r.stop.send_replace(true);
        let exit = r.task.await.expect("task");
        assert_eq!(exit, Some(LeadExit::Shutdown));
        assert!(!r.host.is_active());
        assert_eq!(
            r.mem.leader_epoch(),
            None,
            "key released for a fast takeover"
        );
        assert_eq!(
            r.host.calls().last(),
            Some(&HostCall::RoleChanged(Role::Standby)),
            "standby hook after teardown"
        );
    }

    #[derive(Debug, Default, Clone)]
    struct RecWatchdog(Arc<Mutex<Vec<&'static str>>>);
    impl Watchdog for RecWatchdog {
        fn arm(&mut self) -> std::io::Result<()> {
            self.0.lock().expect("wd").push("arm");
            Ok(())
        }
        fn keepalive(&mut self) -> std::io::Result<()> {
            self.0.lock().expect("wd").push("keepalive");
            Ok(())
        }
        fn disarm(&mut self) -> std::io::Result<()> {
            self.0.lock().expect("wd").push("disarm");
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_armed_before_bring_up_petted_while_proven_and_disarmed_after_teardown()
    {
        let wd = RecWatchdog::default();
        let r = start_with(
            Mem::new("a"),
            FakeHost::new("a"),
            Some(Box::new(wd.clone())),
        );
        until("serving", Duration::from_secs(5), || serving(&r)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        r.mem.frozen.store(true, Ordering::SeqCst);
        until("fenced", Duration::from_secs(30), || !r.host.is_active()).await;
        let log = wd.0.lock().expect("wd").clone();
        assert_eq!(log.first(), Some(&"arm"));
        assert!(
            log.iter().filter(|e| **e == "keepalive").count() >= 2,
            "{log:?}"
        );
        assert_eq!(log.last(), Some(&"disarm"));
    }

    #[tokio::test]
    async fn the_fence_guard_is_fed_while_leading_and_disarmed_after_a_clean_teardown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("guard.in");
        let argv = vec![
            "sh".into(),
            "-c".into(),
            format!("cat >> '{}'", out.display()),
        ];
        let mut s = settings();
        s.loop_period = Duration::from_millis(100);
        s.fence_lead = Duration::from_millis(100);
        s.ttl = Duration::from_secs(2);
        s.safety_margin = Duration::from_millis(500);
        let mem = Mem::new("a");
        let host = FakeHost::new("a");
        let (stop, rx) = watch::channel(false);
        let c = Controller::new(s.clone(), Arc::new(mem.clone()), host.clone(), rx)
            .with_fence_guard(argv);
        let status = c.status();
        let task = tokio::spawn(c.run());
        let read = || std::fs::read_to_string(&out).unwrap_or_default();
        until("serving", Duration::from_secs(5), || {
            status.get().state == MemberState::Primary
        })
        .await;
        until("several allowances", Duration::from_secs(5), || {
            read().lines().count() >= 5
        })
        .await;
        for l in read().lines() {
            let ms: u64 = l
                .strip_prefix("serve ")
                .expect("serve line")
                .parse()
                .expect("ms");
            assert!(
                ms > 0 && ms <= s.fence_after().as_millis() as u64,
                "allowance {ms} ms within ttl - margin"
            );
        }
        stop.send_replace(true);
        task.await.expect("task");
        until("disarm written", Duration::from_secs(5), || {
            read().ends_with("disarm\n")
        })
        .await;
        assert!(!host.is_active());
    }
}
