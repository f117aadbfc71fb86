//! Recovery of one mount: choose a server, mount it anew beside the broken mount,
//! put it in place, run hooks. Never touches any other mount.
//!
//! Why the new mount is made beside the old one, and from another address form: while
//! the old (stale or hung) superblock lives — and an application blocked in it, or a
//! file it holds open, keeps it alive — a new mount of the same server address shares
//! its kernel NFS client and TCP transport. After an orderly server stop that
//! transport sits in reconnect back-off (the kernel waits ≥ 3 s after the server
//! closed the connection), and the new mount would wait it out too (measured in the
//! lab: 2.75 s). The kernel matches clients by address family too, so mounting from
//! the IPv4-mapped IPv6 form of the same address (`[::ffff:a.b.c.d]`; IPv4 on the
//! wire) gets a fresh client that connects at once (0.38 s in the same run). The next
//! recovery flips back to the plain form; a form whose client already exists
//! (`/proc/fs/nfsfs/servers`) is tried last. Not for IPv6 or named-only servers
//! without an IPv4 address, nor with `sec=krb5*` (Kerberos needs the server's name).
//!
//! Order, direct mode:
//! 1. `select-server` first: with no server answering RPC, touching the mount would
//!    only make things worse. So a recovery with no reachable server fails here and
//!    leaves the mount alone.
//! 2. `mount`: mount.nfs (argument vector, under a deadline) at a fresh directory of
//!    the private staging area ([`nfsha_sys::staging`]); on failure the next address
//!    form. The old mount is untouched: applications keep getting its errors rather
//!    than the bare local directory.
//! 3. `verify`: a full probe of the staged mount must pass (else it is discarded and
//!    the old mount stays).
//! 4. `hold` (meanwhile, from step 2 on, bounded by the probe deadline): bind the old
//!    mount onto a second stage directory, a handle on its superblock.
//! 5. `umount-detach` (`MNT_DETACH`) and `move` (`mount(MS_MOVE)` of the staged mount
//!    onto the mountpoint) in one worker request, so the mountpoint shows the bare
//!    directory for a few syscalls only.
//! 6. `umount-force` through the hold: `umount2(MNT_FORCE)` of the handle aborts the
//!    calls still blocked in the old superblock — an application thread that entered the
//!    old mount before the move. Repeated [`HOLD_FORCES`] times, [`HOLD_FORCE_INTERVAL`]
//!    apart, in the background: one force aborts only the RPCs in flight at that
//!    instant, and a call that goes on to its next RPC blocks again. In the lab such
//!    calls then ended *successfully*, ~1 s after the new server served, where without
//!    the force they waited for the old kernel client's reconnect back-off (≥ 3 s after
//!    an orderly server stop). No new call can reach the old mount any more, so unlike
//!    forcing it while it is still on the mountpoint (which made directory reads on it
//!    return *empty* listings in the lab) nothing sees a wrong answer.
//!    If the hold failed, the old way: `umount-force` before the detach only when the
//!    old mount's server is not the one mounted from (nothing would answer those calls),
//!    else no force and a background throwaway mount in the old address form that drives
//!    the old kernel client's recovery. If the move fails, the new mount is made in place
//!    instead (and the hold forced after it).
//! 7. `hook`s, each bounded; a failing hook is reported but does not fail the recovery.
//!
//! Autofs mode: `select-server`; per NFS mount on the mountpoint `hold` (one layer),
//! `umount-detach`, then `umount-force` through the hold — so, as in direct mode, no
//! listing of the still-visible old mount runs during a force (if the hold fails:
//! `umount-force`/`umount-detach` on the mountpoint, one request); `release` (wait at
//! most [`RELEASE_WAIT`] until the kernel has freed the detached superblock,
//! `/proc/fs/nfsfs/volumes`, so that autofs' new mount does not share the old
//! transport; open files keep it alive, then the wait ends at its bound), `trigger`
//! (access the path from a worker so autofs mounts again), `verify`, hooks. In autofs
//! mode autofs owns the mountpoint, so the bare-directory window between detach and
//! the new mount remains.
//!
//! Replica volumes (servers exporting different paths, [`crate::replica`]):
//! `select-server` takes the *active* replica when it answers, never another one
//! because it is preferred; when the active one does not answer it fails over to the
//! best answering one, and without an active replica it stops (`no-active-replica`)
//! and touches nothing. A change of the active replica (failover, or the operator's
//! `nfsha recover --replica`) is written to the state file in its own step,
//! `record-replica`, after `verify` and before the new mount is moved in; if it cannot
//! be written, the staged mount is thrown away and the old mount stays.
//!
//! Every step is bounded by a deadline from the config, and every step emits a
//! `recovery_step` event with its outcome and duration.

use crate::emit::Emitter;
use crate::host::{
    Host, HostError, MountRequest, Mounted, ReplaceError, ServerProbe, Umounted, topmost,
};
use crate::replica::{ActiveRecord, ReplicaBook};
use crate::selection::{self, ReplicaChoice};
use crate::supervisor::{Heartbeat, clock_ms, clock_now};
use nfsha_config::{AgentSettings, MountConfig, MountMode, Replica};
use nfsha_core::{Event, EventKind, MountState, ProbeOutcome};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a recovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// No candidate server answered an RPC probe.
    #[error("No server of this mount answers RPC probes")]
    NoServerReachable,
    /// Replica volumes without a known active replica: the agent does not guess.
    #[error(
        "no-active-replica: the active replica is not known; name it with `nfsha recover MOUNTPOINT --replica HOST:EXPORT`"
    )]
    NoActiveReplica,
    /// The replica asked for is not one of this mount's.
    #[error("{0} is not a replica of this mount")]
    UnknownReplica(String),
    /// The new active replica could not be recorded (the cause chain); nothing was
    /// moved.
    #[error("Could not record the active replica: {0}")]
    State(String),
    /// The old mount could not be removed from the mountpoint.
    #[error("Could not detach the old mount")]
    Detach(#[source] HostError),
    /// Mounting (or re-triggering autofs) failed.
    #[error("Could not mount from {server}")]
    Mount {
        /// The server tried.
        server: String,
        /// Why.
        #[source]
        source: HostError,
    },
    /// The new mount did not pass a probe.
    #[error("New mount failed its verification probe ({state})")]
    Verify {
        /// What the probe said.
        state: MountState,
    },
}

/// One step as reported to `nfsha recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// Step name.
    pub step: String,
    /// `ok`, `failed` or `skipped`.
    pub outcome: String,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Detail (error text, server chosen).
    pub detail: Option<String>,
}

/// The whole recovery as reported to `nfsha recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// Mountpoint.
    pub mountpoint: String,
    /// Succeeded.
    pub ok: bool,
    /// The server mounted from (when it got that far).
    pub server: Option<String>,
    /// Every step in order.
    pub steps: Vec<StepReport>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Total duration in milliseconds.
    pub duration_ms: u64,
}

pub(crate) struct Recovery<'a, H: Host> {
    pub host: &'a Arc<H>,
    pub mount: &'a MountConfig,
    pub settings: &'a AgentSettings,
    pub emit: &'a Emitter,
    pub heartbeat: &'a Heartbeat,
    pub steps: Vec<StepReport>,
    pub probes: Vec<ServerProbe>,
    /// Replica volumes: the mount's active replica (`None` for one export path).
    pub replica: Option<&'a mut ReplicaBook>,
    /// The replica an operator asked for (`nfsha recover --replica`).
    pub requested: Option<Replica>,
    /// A change of the active replica to write before the move.
    pub pending: Option<ActiveRecord>,
}

/// Longest wait for a detached superblock to be freed before mounting anyway.
pub const RELEASE_WAIT: Duration = Duration::from_secs(1);
/// Poll period of that wait (a read of a small procfs file).
const RELEASE_POLL: Duration = Duration::from_millis(20);

/// How many times the old mount is forced through its hold after the move, and how
/// far apart. One `MNT_FORCE` aborts the RPCs in flight at that instant only; a call
/// that goes on to its next RPC (e.g. a directory read after an aborted attribute
/// check) blocks again on the old transport, which reconnects only ≥ 3 s after an
/// orderly server stop. So the force is repeated, for about 2 s after the move.
pub const HOLD_FORCES: u32 = 8;
/// See [`HOLD_FORCES`].
pub const HOLD_FORCE_INTERVAL: Duration = Duration::from_millis(250);

/// A hold in progress: its handle and layers, or why the old mount could not be held.
type HoldTask = tokio::task::JoinHandle<Result<(PathBuf, u32), String>>;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<'a, H: Host> Recovery<'a, H> {
    fn mp(&self) -> String {
        self.mount.mountpoint.display().to_string()
    }

    fn step_done(&mut self, step: &str, started: Instant, result: Result<Option<String>, String>) {
        self.heartbeat.touch();
        let d = clock_now().saturating_duration_since(started);
        let (outcome, detail) = match &result {
            Ok(detail) => ("ok", detail.clone()),
            Err(e) => ("failed", Some(e.clone())),
        };
        let mut ev = Event::new(EventKind::RecoveryStep)
            .mount(self.mp())
            .step(step)
            .outcome(outcome)
            .duration(d);
        if let Some(detail) = &detail {
            ev = ev.reason(detail.clone());
        }
        self.emit.emit(ev);
        self.steps.push(StepReport {
            step: step.to_string(),
            outcome: outcome.to_string(),
            duration_ms: ms(d),
            detail,
        });
    }

    /// Probe every candidate now, concurrently, bounded by the RPC timeout.
    async fn probe_candidates(&mut self) -> Vec<ServerProbe> {
        let mut set = tokio::task::JoinSet::new();
        for s in &self.mount.servers {
            let host = self.host.clone();
            let name = s.host.clone();
            let version = self.mount.nfs_version.rpc_version();
            let timeout = self.settings.rpc_timeout;
            set.spawn(async move { host.probe_server(&name, version, timeout).await });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(p) = r {
                out.push(p);
            }
        }
        out
    }

    /// The export path of `host` for this mount (a leader address that is not
    /// configured serves the mount's `export`).
    fn replica_at(&self, host: &str) -> Replica {
        let export = self
            .mount
            .servers
            .iter()
            .find(|s| s.host == host)
            .map_or(self.mount.export.as_str(), |s| self.mount.export_of(s));
        Replica {
            host: host.to_string(),
            export: export.to_string(),
        }
    }

    /// Replica volumes: the active replica if it answers, a failover (recorded later,
    /// before the move) if it does not, the operator's choice if there is one.
    fn select_replica(&mut self, ranked: &[Replica]) -> Result<Option<Replica>, RecoveryError> {
        let Some(book) = self.replica.as_deref() else {
            return Ok(ranked.first().cloned());
        };
        if let Some(r) = self.requested.clone() {
            if self.mount.server_for(&r).is_none() {
                return Err(RecoveryError::UnknownReplica(r.to_string()));
            }
            if !ranked.contains(&r) {
                return Ok(None);
            }
            if book.active().as_ref() != Some(&r) {
                let why = match book.active() {
                    Some(old) => format!("operator: nfsha recover --replica (was {old})"),
                    None => "operator: nfsha recover --replica".to_string(),
                };
                self.pending = Some(book.next(&r, why, clock_ms()));
            }
            return Ok(Some(r));
        }
        match selection::choose_replica(ranked, book.active().as_ref()) {
            ReplicaChoice::Active(r) => Ok(Some(r)),
            // A fleet volume fails over once for the whole fleet (crate::fleet), never
            // here: the mount waits for the fleet's record to name another replica.
            ReplicaChoice::Failover { from, .. } if self.mount.fleet.is_some() => {
                tracing::info!(
                    mount = %self.mount.mountpoint.display(),
                    active = %from,
                    "the active replica does not answer; the fleet decides the failover"
                );
                Ok(None)
            }
            ReplicaChoice::Failover { from, to } => {
                let why = format!("failover: {from} does not answer");
                self.pending = Some(book.next(&to, why, clock_ms()));
                Ok(Some(to))
            }
            ReplicaChoice::NoActive => Err(RecoveryError::NoActiveReplica),
            ReplicaChoice::NoneReachable => Ok(None),
        }
    }

    /// Write the pending change of the active replica (step `record-replica`).
    fn record_pending(&mut self) -> Result<(), RecoveryError> {
        let (Some(rec), Some(book)) = (self.pending.take(), self.replica.as_deref_mut()) else {
            return Ok(());
        };
        let t = clock_now();
        let detail = format!(
            "generation {}: {} ({})",
            rec.generation,
            rec.replica(),
            rec.reason
        );
        match book.commit(rec) {
            Ok(()) => {
                self.step_done("record-replica", t, Ok(Some(detail)));
                Ok(())
            }
            Err(e) => {
                let chain = nfsha_core::error_chain(&e);
                self.step_done("record-replica", t, Err(chain.clone()));
                Err(RecoveryError::State(chain))
            }
        }
    }

    /// Run the whole recovery. `target` prefers a server (failback, cluster leader);
    /// with `strict` no other server may be used (the cluster's leader is the only
    /// safe source: any other node may be behind). Returns the replica mounted.
    pub async fn run(
        &mut self,
        target: Option<&str>,
        strict: bool,
    ) -> Result<Replica, RecoveryError> {
        // 1. select-server
        let t = clock_now();
        // One export path: a requested candidate is a preference, like a failback's.
        let requested_host = match (&self.requested, self.replica.is_some()) {
            (Some(r), false) if self.mount.server_for(r).is_none() => {
                let e = RecoveryError::UnknownReplica(r.to_string());
                self.step_done("select-server", t, Err(e.to_string()));
                return Err(e);
            }
            (Some(r), false) if !strict => Some(r.host.clone()),
            _ => None,
        };
        let target = requested_host.as_deref().or(target);
        let chosen = match (target, strict) {
            (Some(target), true) => {
                let p = self
                    .host
                    .probe_server(
                        target,
                        self.mount.nfs_version.rpc_version(),
                        self.settings.rpc_timeout,
                    )
                    .await;
                let ok = p.reachable;
                self.probes = vec![p];
                ok.then(|| self.replica_at(target))
            }
            _ => {
                self.probes = self.probe_candidates().await;
                let ranked = selection::rank(self.mount, &self.probes);
                if self.replica.is_some() {
                    match self.select_replica(&ranked) {
                        Ok(c) => c,
                        Err(e) => {
                            self.step_done("select-server", t, Err(e.to_string()));
                            return Err(e);
                        }
                    }
                } else {
                    match target {
                        Some(t) if ranked.iter().any(|r| r.host == t) => {
                            ranked.iter().find(|r| r.host == t).cloned()
                        }
                        _ => ranked.first().cloned(),
                    }
                }
            }
        };
        let Some(server) = chosen else {
            let why = self
                .probes
                .iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        p.host,
                        p.error.as_deref().unwrap_or("unreachable")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            self.step_done("select-server", t, Err(why));
            return Err(RecoveryError::NoServerReachable);
        };
        let detail = if self.replica.is_some() {
            server.to_string()
        } else {
            server.host.clone()
        };
        self.step_done("select-server", t, Ok(Some(detail)));

        match self.mount.mode {
            // 2-6. stage, verify, replace (see the module header).
            MountMode::Direct => self.mount_staged(&server).await?,
            // 2-5. detach, release, trigger, verify.
            MountMode::Autofs => {
                self.record_pending()?;
                self.detach().await.map_err(RecoveryError::Detach)?;
                let t = clock_now();
                let result = self
                    .host
                    .trigger_automount(&self.mount.mountpoint, self.settings.mount_timeout)
                    .await;
                match result {
                    Ok(()) => self.step_done("trigger", t, Ok(Some(server.host.clone()))),
                    Err(e) => {
                        self.step_done("trigger", t, Err(e.to_string()));
                        return Err(RecoveryError::Mount {
                            server: server.host.clone(),
                            source: e,
                        });
                    }
                }
                let mp = self.mount.mountpoint.clone();
                self.verify(&mp).await?;
            }
        }

        // 6. hooks
        for argv in &self.mount.hooks {
            let t = clock_now();
            let env = vec![
                ("NFSHA_MOUNTPOINT".to_string(), self.mp()),
                ("NFSHA_SERVER".to_string(), server.host.clone()),
            ];
            let r = self
                .host
                .run_hook(argv, &env, self.mount.hook_timeout)
                .await
                .map(|()| Some(argv.join(" ")))
                .map_err(|e| format!("{}: {e}", argv.join(" ")));
            let ok = r.is_ok();
            self.step_done("hook", t, r);
            self.emit.emit(
                Event::new(EventKind::HookRan)
                    .mount(self.mp())
                    .outcome(if ok { "ok" } else { "failed" })
                    .reason(argv.join(" ")),
            );
        }
        Ok(server)
    }

    /// A full probe of `path` must pass.
    async fn verify(&mut self, path: &Path) -> Result<(), RecoveryError> {
        let t = clock_now();
        let outcome = self.host.probe(path, self.mount.probe_deadline).await;
        let state = outcome.classify();
        if state != MountState::Healthy {
            self.step_done("verify", t, Err(describe(&outcome)));
            return Err(RecoveryError::Verify { state });
        }
        self.step_done("verify", t, Ok(None));
        Ok(())
    }

    /// The forms of `server`'s address to mount from, best first (see the module
    /// header): the form the old mount did not use, and never first a form whose
    /// kernel NFS client already exists. Only for IPv4 servers and not with Kerberos
    /// (`sec=krb5*` needs the server's name); otherwise just `server` as configured.
    fn address_forms(&self, server: &str, old_mapped: Option<bool>) -> Vec<String> {
        let plain = server.to_string();
        let addresses = self
            .probes
            .iter()
            .find(|p| p.host == server)
            .map(|p| p.addresses.clone())
            .unwrap_or_default();
        let v4 = server
            .parse::<Ipv4Addr>()
            .ok()
            .or_else(|| addresses.iter().find_map(|a| a.parse::<Ipv4Addr>().ok()));
        let kerberos = self.mount.options.iter().any(|o| o.starts_with("sec=krb5"));
        let Some(v4) = v4.filter(|_| !kerberos) else {
            return vec![plain];
        };
        let mapped = format!("::ffff:{v4}");
        let mut forms = match old_mapped {
            Some(false) => vec![mapped.clone(), plain],
            _ => vec![plain, mapped.clone()],
        };
        if let Ok(clients) = self.host.nfs_clients() {
            let version = if self.mount.nfs_version.rpc_version() == 3 {
                "v3"
            } else {
                "v4"
            };
            let exists = |f: &String| {
                let ip = if *f == mapped {
                    IpAddr::V6(v4.to_ipv6_mapped())
                } else {
                    IpAddr::V4(v4)
                };
                clients.iter().any(|c| c.version == version && c.addr == ip)
            };
            forms.sort_by_key(exists);
        }
        forms
    }

    /// Direct mode: mount at a private staging point (from an address form with no
    /// kernel client yet), verify it there, then in one worker request take the old
    /// mount(s) off and move the new one in.
    async fn mount_staged(&mut self, replica: &Replica) -> Result<(), RecoveryError> {
        let server = replica.host.as_str();
        let export = replica.export.as_str();
        let mp = self.mount.mountpoint.clone();
        let mount_err = |source: HostError| RecoveryError::Mount {
            server: server.to_string(),
            source,
        };
        let table = self.host.mount_table().map_err(RecoveryError::Detach)?;
        let stacked: Vec<&Mounted> = table.iter().rev().filter(|m| m.mountpoint == mp).collect();
        let old_nfs = stacked.iter().take_while(|m| m.is_nfs()).count();
        let old_top = stacked.first().filter(|m| m.is_nfs());
        let old_mapped = old_top.map(|m| m.addr_mapped);
        // The old mount's server in the form its kernel client was made with.
        let old_form = old_top.and_then(|m| m.server.clone()).map(|s| {
            if old_mapped == Some(true) {
                format!("::ffff:{s}")
            } else {
                s
            }
        });
        let forms = self.address_forms(server, old_mapped);
        // Abort calls in flight in the old mount (MNT_FORCE) *before* taking it off only
        // when nothing will ever answer them (its server is not the one we mount from)
        // and it could not be held (below). Forcing a mount that is still on the
        // mountpoint makes directory reads on it return *empty* listings while the force
        // lasts (1.4 s once in the lab) — a wrong answer, worse than a wait.
        let new_addrs: Vec<String> = self
            .probes
            .iter()
            .filter(|p| p.host == server)
            .flat_map(|p| p.addresses.clone())
            .chain(std::iter::once(server.to_string()))
            .collect();
        let force = old_top
            .and_then(|m| m.server.as_ref())
            .is_none_or(|o| !new_addrs.contains(o));

        // Hold the old mount on a handle in the staging area, meanwhile: once the new
        // mount is in place, MNT_FORCE through the handle aborts the calls still blocked
        // in the old superblock (threads that entered the old mount before the move),
        // and no new call can reach the old one any more.
        let hold = old_top.map(|_| self.spawn_hold(&mp, HOLD_FORCES));

        let t = clock_now();
        let stage = match self.host.stage_dir() {
            Ok(d) => d,
            Err(e) => {
                self.step_done("mount", t, Err(e.to_string()));
                self.drop_hold(hold).await;
                return Err(mount_err(e));
            }
        };
        let mut last = None;
        let mut used = None;
        for form in &forms {
            let t = clock_now();
            let req = self.request(form, export, &stage);
            match self.host.mount_nfs(&req, self.settings.mount_timeout).await {
                Ok(()) => {
                    let detail = format!("{form} at {}", stage.display());
                    self.step_done("mount", t, Ok(Some(detail)));
                    last = None;
                    used = Some(form.clone());
                    break;
                }
                Err(e) => {
                    self.step_done("mount", t, Err(format!("{form}: {e}")));
                    last = Some(e);
                }
            }
        }
        if let Some(e) = last {
            let _ = self.host.remove_stage_dir(&stage);
            self.drop_hold(hold).await;
            return Err(mount_err(e));
        }
        if let Err(e) = self.verify(&stage).await {
            self.discard_stage(&stage).await;
            self.drop_hold(hold).await;
            return Err(e);
        }
        // A new active replica is durable before it is moved in.
        if let Err(e) = self.record_pending() {
            self.discard_stage(&stage).await;
            self.drop_hold(hold).await;
            return Err(e);
        }
        let handle = match hold {
            Some(h) => self.held(h).await,
            None => None,
        };
        let force_first = force && handle.is_none();

        let t = clock_now();
        let old = u32::try_from(old_nfs).unwrap_or(u32::MAX);
        match self
            .host
            .replace(&stage, &mp, old, force_first, self.settings.umount_timeout)
            .await
        {
            Ok(r) => {
                self.report_old(&r.old, force_first, handle.is_some(), t);
                self.step_done("move", t, Ok(Some(mp.display().to_string())));
                let _ = self.host.remove_stage_dir(&stage);
                if let Some(h) = handle {
                    self.force_held(h, "after the move").await;
                } else if !force
                    && r.old.contains(&Umounted::Detached)
                    && let Some(old_form) = old_form
                    && used.as_ref() != Some(&old_form)
                {
                    let old_export = old_top
                        .and_then(|m| m.export.clone())
                        .unwrap_or_else(|| export.to_string());
                    self.nudge_old_client(old_form, old_export);
                }
                Ok(())
            }
            Err(ReplaceError::Umount(e)) => {
                self.step_done("umount-force", t, Err(e.to_string()));
                self.discard_stage(&stage).await;
                // The old mount is still on the mountpoint: let go of it unforced.
                if let Some(h) = handle {
                    self.unhold(&h).await;
                }
                Err(RecoveryError::Detach(e))
            }
            Err(ReplaceError::Move { old, source: e }) => {
                // The old mounts are off: mount in place (a short window on the bare
                // directory) rather than leave the mountpoint empty.
                self.report_old(&old, force_first, handle.is_some(), t);
                self.step_done("move", t, Err(e.to_string()));
                self.discard_stage(&stage).await;
                let t = clock_now();
                let req = self.request(server, export, &mp);
                let mounted = self.host.mount_nfs(&req, self.settings.mount_timeout).await;
                // Only now (blocked calls retry on whatever is on the mountpoint).
                if let Some(h) = handle {
                    self.force_held(h, "after the move").await;
                }
                match mounted {
                    Ok(()) => self.step_done("mount", t, Ok(Some(server.to_string()))),
                    Err(e) => {
                        self.step_done("mount", t, Err(e.to_string()));
                        return Err(mount_err(e));
                    }
                }
                self.verify(&mp).await
            }
        }
    }

    /// Start holding the topmost mount at `mp` on a fresh stage directory in `layers`
    /// layers, in the background (bounded by the probe deadline: a worker does it). See
    /// [`Recovery::held`].
    fn spawn_hold(&self, mp: &Path, layers: u32) -> HoldTask {
        let host = self.host.clone();
        let mp = mp.to_path_buf();
        let deadline = self.mount.probe_deadline;
        tokio::spawn(async move {
            let at = host.stage_dir().map_err(|e| e.to_string())?;
            match host.hold(&mp, &at, layers, deadline).await {
                Ok(layers) => Ok((at, layers)),
                Err(e) => {
                    // A worker killed at its deadline may still have made the bind.
                    let _ = host.umount(&at, false, true, deadline).await;
                    let _ = host.remove_stage_dir(&at);
                    Err(e.to_string())
                }
            }
        })
    }

    /// The handle of a hold started by [`Recovery::spawn_hold`], `None` (and a failed
    /// `hold` step) when the old mount could not be held.
    async fn held(&mut self, hold: HoldTask) -> Option<(PathBuf, u32)> {
        let t = clock_now();
        let r = hold.await.unwrap_or_else(|e| Err(e.to_string()));
        match r {
            Ok((at, layers)) => {
                let unit = if layers == 1 { "layer" } else { "layers" };
                let detail = format!("{} ({layers} {unit})", at.display());
                self.step_done("hold", t, Ok(Some(detail)));
                Some((at, layers))
            }
            Err(e) => {
                self.step_done("hold", t, Err(e));
                None
            }
        }
    }

    /// A recovery that ends before the move: let go of the hold, if any.
    async fn drop_hold(&mut self, hold: Option<HoldTask>) {
        if let Some(h) = hold
            && let Ok(Ok(held)) = h.await
        {
            self.unhold(&held).await;
        }
    }

    /// Take the hold off without forcing (the old mount is still in use where it is).
    async fn unhold(&mut self, (at, layers): &(PathBuf, u32)) {
        for _ in 0..*layers {
            let _ = self
                .host
                .umount(at, false, true, self.settings.umount_timeout)
                .await;
        }
        let _ = self.host.remove_stage_dir(at);
    }

    /// After the move: `MNT_FORCE` through the hold (aborts the calls still blocked in
    /// the old superblock), now and then every [`HOLD_FORCE_INTERVAL`] in the
    /// background, one layer each, until the hold is gone.
    async fn force_held(&mut self, (at, layers): (PathBuf, u32), when: &str) {
        let t = clock_now();
        let deadline = self.settings.umount_timeout;
        let r = self
            .host
            .umount(&at, true, true, deadline)
            .await
            .map(|_| {
                Some(match layers {
                    0 | 1 => format!("old mount, through its hold, {when}"),
                    n => format!(
                        "old mount, through its hold, {when}; {} more every {:?}",
                        n - 1,
                        HOLD_FORCE_INTERVAL
                    ),
                })
            })
            .map_err(|e| e.to_string());
        self.step_done("umount-force", t, r);
        let host = self.host.clone();
        tokio::spawn(async move {
            for _ in 1..layers {
                tokio::time::sleep(HOLD_FORCE_INTERVAL).await;
                let _ = host.umount(&at, true, true, deadline).await;
            }
            let _ = host.remove_stage_dir(&at);
        });
    }

    /// A mount.nfs request for this mount from `server`'s `export` at `at`.
    fn request(&self, server: &str, export: &str, at: &Path) -> MountRequest {
        MountRequest {
            server: server.to_string(),
            export: export.to_string(),
            mountpoint: at.to_path_buf(),
            version: self.mount.nfs_version.mount_option().to_string(),
            options: self.mount.options.clone(),
        }
    }

    /// Per old mount taken off: `umount-force` (when forced) and `umount-detach` (when
    /// it was busy, or not forced: then saying why).
    fn report_old(&mut self, old: &[Umounted], forced: bool, held: bool, t: Instant) {
        let why = if held {
            "held: forced through the hold after the move"
        } else {
            "same server address: not forced"
        };
        for u in old {
            match (u, forced) {
                (Umounted::Gone, _) => self.step_done("umount-force", t, Ok(None)),
                (Umounted::Detached, true) => {
                    self.step_done("umount-force", t, Ok(Some("busy".into())));
                    self.step_done("umount-detach", clock_now(), Ok(None));
                }
                (Umounted::Detached, false) => {
                    self.step_done("umount-detach", t, Ok(Some(why.into())))
                }
            }
        }
    }

    /// In the background: mount (and at once unmount) the old mount's server in the
    /// address form of the *old* kernel client, at a throwaway staging point. Why: a
    /// thread that was blocked in the old mount when it was detached waits for that
    /// client to reconnect and recover, and with no new work on it the kernel takes its
    /// time (12 s in the lab, against 3 s when a new mount drives it). The new mount is
    /// already in place; this only releases those threads sooner.
    fn nudge_old_client(&self, form: String, export: String) {
        let host = self.host.clone();
        let emit = self.emit.clone();
        let mp = self.mp();
        let mut req = self.request(&form, &export, Path::new(""));
        let (mount_timeout, umount_timeout) =
            (self.settings.mount_timeout, self.settings.umount_timeout);
        tokio::spawn(async move {
            let t = clock_now();
            let result = match host.stage_dir() {
                Ok(dir) => {
                    req.mountpoint = dir.clone();
                    let r = host.mount_nfs(&req, mount_timeout).await;
                    if r.is_ok() {
                        let _ = host.umount(&dir, true, true, umount_timeout).await;
                    }
                    let _ = host.remove_stage_dir(&dir);
                    r
                }
                Err(e) => Err(e),
            };
            let mut ev = Event::new(EventKind::RecoveryStep)
                .mount(mp)
                .step("nudge-old-client")
                .outcome(if result.is_ok() { "ok" } else { "failed" })
                .duration(clock_now().saturating_duration_since(t));
            ev = ev.reason(match result {
                Ok(()) => form,
                Err(e) => format!("{form}: {e}"),
            });
            emit.emit(ev);
        });
    }

    /// Take a staged mount away again (it is not in use) and remove its directory.
    async fn discard_stage(&mut self, stage: &Path) {
        let table = self.host.mount_table().unwrap_or_default();
        if table.iter().any(|m| m.mountpoint == stage) {
            let _ = self
                .host
                .umount(stage, true, true, self.settings.umount_timeout)
                .await;
        }
        let _ = self.host.remove_stage_dir(stage);
    }

    /// Take every NFS mount stacked on the mountpoint off, each held first and forced
    /// through its hold once it is off (or, if it cannot be held, forced on the
    /// mountpoint and then detached); then wait (bounded) for the kernel to free the
    /// superblocks that were detached.
    async fn detach(&mut self) -> Result<(), HostError> {
        let mp = self.mount.mountpoint.clone();
        let deadline = self.settings.umount_timeout;
        let mut detached = Vec::new();
        for _ in 0..4 {
            let table = self.host.mount_table()?;
            let dev = match topmost(&table, &mp) {
                Some(m) if m.is_nfs() => m.dev,
                _ => break,
            };
            let hold = self.spawn_hold(&mp, 1);
            let held = self.held(hold).await;
            let t = clock_now();
            let result = self.host.umount(&mp, held.is_none(), true, deadline).await;
            match (&result, &held) {
                (Ok(Umounted::Gone), _) => self.step_done("umount-force", t, Ok(None)),
                (Ok(Umounted::Detached), Some(_)) => {
                    self.step_done("umount-detach", t, Ok(None));
                    detached.extend(dev);
                }
                (Ok(Umounted::Detached), None) => {
                    // Busy (open files, cwd, a call in flight) is the normal case after
                    // a failover: MNT_DETACH took it off the mountpoint.
                    self.step_done("umount-force", t, Ok(Some("busy".to_string())));
                    self.step_done("umount-detach", clock_now(), Ok(None));
                    detached.extend(dev);
                }
                (Err(e), Some(_)) => self.step_done("umount-detach", t, Err(e.to_string())),
                (Err(e), None) => self.step_done("umount-force", t, Err(e.to_string())),
            }
            match (result, held) {
                (Ok(_), Some(h)) => self.force_held(h, "after the detach").await,
                (Err(e), held) => {
                    if let Some(h) = held {
                        self.unhold(&h).await;
                    }
                    return Err(e);
                }
                (Ok(_), None) => {}
            }
        }
        let table = self.host.mount_table()?;
        if topmost(&table, &mp).is_some_and(|m| m.is_nfs()) {
            return Err(HostError::Other {
                op: "umount",
                message: "an NFS mount is still on the mountpoint after 4 detaches".into(),
            });
        }
        if !detached.is_empty() {
            self.wait_release(&detached).await;
        }
        Ok(())
    }

    /// Wait until the kernel has freed every superblock in `devs`, at most
    /// [`RELEASE_WAIT`]. Never fails the recovery: the mount goes ahead either way.
    async fn wait_release(&mut self, devs: &[(u32, u32)]) {
        let t = clock_now();
        let until = t + RELEASE_WAIT;
        let detail = loop {
            let alive: Result<Vec<bool>, HostError> = devs
                .iter()
                .map(|d| self.host.nfs_superblock_alive(*d))
                .collect();
            match alive {
                Ok(v) if !v.contains(&true) => break None,
                Ok(_) if clock_now() >= until => {
                    break Some(format!(
                        "still in use after {RELEASE_WAIT:?} (open files or a cwd on it); \
                         the new mount may share its transport"
                    ));
                }
                Ok(_) => tokio::time::sleep(RELEASE_POLL).await,
                Err(e) => break Some(format!("cannot tell: {e}")),
            }
        };
        self.step_done("release", t, Ok(detail));
    }
}

/// A short human description of a probe outcome.
pub fn describe(o: &ProbeOutcome) -> String {
    match o {
        ProbeOutcome::Ok { latency } => format!("ok in {latency:?}"),
        ProbeOutcome::Failed { op, errno, .. } => {
            format!("{op:?} failed: {}", nfsha_core::state::errno_name(*errno))
        }
        ProbeOutcome::Hung { deadline } => format!("no answer within {deadline:?}"),
    }
}
