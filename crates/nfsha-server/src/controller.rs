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
//! Failure modes and what happens:
//! - etcd unreachable/frozen while leader: renewals time out; fencing starts at
//!   `proof + ttl − safety_margin − fence_lead` so that the floating address is gone by
//!   `proof + ttl − safety_margin`; the rest of the teardown fits in the margin.
//! - etcd says the key is no longer ours: fence at once.
//! - a bring-up step fails: it and the done steps are rolled back, the key is released,
//!   and this node stays out of the race for one TTL so another node gets a chance.
//! - a teardown step fails: state `failed`; the node never campaigns again until a
//!   teardown succeeds (retried every loop) and stops petting the watchdog.
//! - controller crash: on restart everything is torn down first (idempotent), and a
//!   returning old leader finds a newer leader and joins as standby (no failback).

use crate::coordinator::{Acquire, Coordinator, LeaderRecord, MemberInfo, MemberState};
use crate::host::{Role, ServerHost, Step};
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
    /// Storage mode (decides the final-sync on switchover).
    pub storage: StorageMode,
    /// Address published to clients in the leader key.
    pub address: Option<String>,
    /// Status API address published in the member record.
    pub api: Option<String>,
    /// How long a node whose bring-up failed stays out of the race.
    pub failure_backoff: Duration,
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
        match timeout(self.settings.loop_period, self.coord.heartbeat(&m, Some(epoch))).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(format!("leader key no longer has epoch {epoch}")),
            Ok(Err(e)) => Err(format!("etcd: {e}")),
            Err(_) => Err("etcd did not answer".into()),
        }
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
    seq: Sequencer<H>,
    status: StatusHandle,
    watchdog: Option<Box<dyn Watchdog>>,
    events: Option<EventSink>,
    epoch_seen: u64,
    backoff_until: Option<Instant>,
    announced_primary: bool,
    shutdown: watch::Receiver<bool>,
}

impl<C, H> std::fmt::Debug for Controller<C, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("settings", &self.settings)
            .field("epoch_seen", &self.epoch_seen)
            .finish_non_exhaustive()
    }
}

impl<C: Coordinator + 'static, H: ServerHost> Controller<C, H> {
    /// A controller; it stops when `shutdown` becomes `true`.
    pub fn new(settings: Settings, coord: Arc<C>, host: H, shutdown: watch::Receiver<bool>) -> Self {
        let status = StatusHandle::new(&settings.node, &settings.cluster, settings.ttl);
        let seq = Sequencer::new(host, settings.step_timeout);
        Controller {
            settings,
            coord,
            seq,
            status,
            watchdog: None,
            events: None,
            epoch_seen: 0,
            backoff_until: None,
            announced_primary: false,
            shutdown,
        }
    }

    /// Arm this watchdog while leading.
    pub fn with_watchdog(mut self, w: Box<dyn Watchdog>) -> Self {
        self.watchdog = Some(w);
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
        self.seq.host()
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
            updated_ms: nfsha_core::event::now_ms(),
        }
    }

    fn set_state(&self, state: MemberState, epoch: Option<u64>, detail: Option<String>) {
        let serving = self.seq.anything_up();
        let epoch_seen = self.epoch_seen;
        let mut changed = None;
        self.status.update(|s| {
            if s.state != state {
                changed = Some((s.state, state));
            }
            s.state = state;
            s.serving = serving;
            s.epoch = epoch;
            s.epoch_seen = epoch_seen;
            s.detail = detail.clone();
        });
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
            if let Some(exit) = self.standby_tick().await {
                last_exit = Some(exit);
                continue;
            }
            self.status.loop_done();
            self.wait_tick(tick).await;
        }
        if self.seq.anything_up() {
            let _ = self.seq.tear_down().await;
        }
        let _ = timeout(self.settings.loop_period, self.coord.resign_session()).await;
        last_exit
    }

    /// One standby loop. Returns `Some` after a leadership period.
    async fn standby_tick(&mut self) -> Option<LeadExit> {
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
        let state = if clean { MemberState::Standby } else { MemberState::Failed };
        let detail = if clean { None } else { self.status.get().detail };
        if clean {
            self.set_state(MemberState::Standby, None, None);
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
                // Our own key from before a restart or a lost lease that etcd kept alive
                // (leases are extended when etcd restarts). We are not serving, so give
                // it up now rather than wait for it to expire.
                tracing::info!(epoch = l.epoch, "releasing a stale leader key of ours");
                if let Err(e) = flatten(timeout(lp, self.coord.release(l.epoch)).await, lp) {
                    tracing::warn!(error = %e, "cannot release stale leader key");
                }
                return None;
            }
            self.status.update(|s| {
                s.leader = Some(l.node.clone());
                s.epoch_seen = s.epoch_seen.max(l.epoch);
            });
            return None;
        }
        self.status.update(|s| s.leader = None);
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
        let record = LeaderRecord {
            node: self.settings.node.clone(),
            address: self.settings.address.clone(),
            api: self.settings.api.clone(),
        };
        // Taken before the acquire: it keeps the session lease alive (or grants a new
        // one) before the key is created, so the lease cannot end before this + TTL.
        let proof_at = Instant::now();
        match flatten(timeout(lp, self.coord.acquire(&record)).await, lp) {
            Ok(Acquire::Acquired { epoch }) => {
                self.epoch_seen = self.epoch_seen.max(epoch);
                let exit = self.lead(epoch, proof_at).await;
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

    fn spawn_renewer(&self, epoch: u64, proof_at: Instant) -> (watch::Receiver<Proof>, AbortOnDrop) {
        let (tx, rx) = watch::channel(Proof {
            renewed_at: proof_at,
            lost: false,
        });
        let coord = self.coord.clone();
        let lp = self.settings.loop_period;
        let status = self.status.clone();
        status.set_lease_proof(proof_at.into_std());
        let span = tracing::info_span!("renewer", node = %self.settings.node, epoch);
        let task = tokio::spawn(tracing::Instrument::instrument(async move {
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
        }, span));
        (rx, AbortOnDrop(task))
    }

    /// Resolves when the proof is lost or too old to keep serving.
    fn fence_signal(&self, mut rx: watch::Receiver<Proof>) -> impl Future<Output = String> + Send + 'static {
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

    async fn lead(&mut self, epoch: u64, proof_at: Instant) -> LeadExit {
        let (proof_rx, _renewer) = self.spawn_renewer(epoch, proof_at);
        let fence = self.fence_signal(proof_rx.clone());
        tokio::pin!(fence);
        let mut sd = self.shutdown.clone();

        if let Some(w) = &mut self.watchdog
            && let Err(e) = w.arm()
        {
            tracing::error!(error = %e, "cannot arm the watchdog; refusing to lead");
            let _ = timeout(self.settings.loop_period, self.coord.release(epoch)).await;
            self.backoff_until = Some(Instant::now() + self.settings.failure_backoff);
            return LeadExit::BringUpFailed(format!("watchdog: {e}"));
        }
        self.set_state(MemberState::Promoting, Some(epoch), None);
        let guard = EpochGuard {
            coord: &*self.coord,
            proof: proof_rx.clone(),
            settings: &self.settings,
            member: self.member(MemberState::Promoting, None),
        };
        let result: Result<Result<(), RollbackError>, LeadExit> = tokio::select! {
            r = self.seq.bring_up(epoch, &guard) => Ok(r),
            reason = &mut fence => Err(LeadExit::Fenced(reason)),
            _ = shutdown_requested(&mut sd) => Err(LeadExit::Shutdown),
        };
        drop(guard);
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let msg = error_chain(&e);
                tracing::error!(error = %msg, "bring-up failed");
                let failed = !e.rollback_failures.is_empty();
                let _ = timeout(self.settings.loop_period, self.coord.release(epoch)).await;
                self.after_teardown(failed, Some(msg.clone())).await;
                self.backoff_until = Some(Instant::now() + self.settings.failure_backoff);
                return LeadExit::BringUpFailed(msg);
            }
            Err(exit) => {
                self.set_state(MemberState::Fenced, Some(epoch), Some(format!("{exit:?}")));
                let ok = self.seq.tear_down().await.is_ok();
                if exit == LeadExit::Shutdown {
                    let _ = timeout(self.settings.loop_period, self.coord.release(epoch)).await;
                }
                self.after_teardown(!ok, None).await;
                return exit;
            }
        }

        self.set_state(MemberState::Primary, Some(epoch), None);
        self.announced_primary = true;
        match timeout(self.settings.step_timeout, self.seq.host().role_changed(Role::Primary)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "role hook failed"),
            Err(_) => tracing::warn!("role hook timed out"),
        }
        // Anyone waiting on a switchover to us is served now.
        if let Ok(Ok(Some(req))) = timeout(self.settings.loop_period, self.coord.switchover_request()).await
            && req.to == self.settings.node
        {
            let _ = timeout(self.settings.loop_period, self.coord.clear_switchover()).await;
        }

        let lp = self.settings.loop_period;
        let mut next = Instant::now();
        loop {
            next += lp;
            tokio::select! {
                reason = &mut fence => {
                    tracing::error!(epoch, %reason, "self-fencing");
                    self.set_state(MemberState::Fenced, Some(epoch), Some(reason.clone()));
                    let ok = self.seq.tear_down().await.is_ok();
                    self.after_teardown(!ok, Some(reason.clone())).await;
                    return LeadExit::Fenced(reason);
                }
                _ = shutdown_requested(&mut sd) => {
                    self.set_state(MemberState::Demoting, Some(epoch), Some("shutdown".into()));
                    let ok = self.seq.tear_down().await.is_ok();
                    let _ = timeout(lp, self.coord.release(epoch)).await;
                    self.after_teardown(!ok, None).await;
                    return LeadExit::Shutdown;
                }
                _ = sleep_until(next) => {}
            }
            let p = *proof_rx.borrow();
            if !p.lost && Instant::now() < p.renewed_at + self.settings.fence_start_after() {
                if let Some(w) = &mut self.watchdog
                    && let Err(e) = w.keepalive()
                {
                    tracing::error!(error = %e, "watchdog keepalive failed");
                }
                self.status.loop_done();
            }
            let m = self.member(MemberState::Primary, None);
            match flatten(timeout(lp, self.coord.heartbeat(&m, Some(epoch))).await, lp) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("leader key no longer has epoch {epoch}");
                    self.set_state(MemberState::Fenced, Some(epoch), Some(reason.clone()));
                    let ok = self.seq.tear_down().await.is_ok();
                    self.after_teardown(!ok, Some(reason.clone())).await;
                    return LeadExit::Fenced(reason);
                }
                Err(e) => tracing::warn!(error = %e, "leader heartbeat failed"),
            }
            if let Ok(Ok(Some(req))) = timeout(lp, self.coord.switchover_request()).await
                && req.from == self.settings.node
                && req.to != self.settings.node
            {
                return self.switch_over(epoch, req.to).await;
            }
            if Instant::now() > next {
                next = Instant::now();
            }
        }
    }

    /// Planned switchover: address off, unexport, stop nfsd, storage (teardown order),
    /// final sync in replicated mode, release the key. The target campaigns next.
    async fn switch_over(&mut self, epoch: u64, to: String) -> LeadExit {
        tracing::info!(epoch, %to, "planned switchover");
        self.set_state(MemberState::Demoting, Some(epoch), Some(format!("switchover to {to}")));
        let ok = self.seq.tear_down().await.is_ok();
        if ok && self.settings.storage == StorageMode::Replicated {
            match timeout(self.settings.step_timeout, self.seq.host().final_sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "final sync failed; the target may lag"),
                Err(_) => tracing::error!("final sync timed out; the target may lag"),
            }
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
        self.set_state(MemberState::Standby, None, detail);
        if std::mem::take(&mut self.announced_primary) {
            match timeout(self.settings.step_timeout, self.seq.host().role_changed(Role::Standby)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "role hook failed"),
                Err(_) => tracing::warn!("role hook timed out"),
            }
        }
    }
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

/// `error: cause: cause` on one line (for member records and logs).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
