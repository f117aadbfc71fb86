//! Recovery of one mount: choose a server, detach the broken mount, mount again,
//! verify, run hooks. Never touches any other mount.
//!
//! Order and why:
//! 1. `select-server` first: with no server answering RPC, detaching would only expose
//!    the empty local directory (applications could write to the wrong disk) and, in
//!    autofs mode, make autofs cache a failed lookup for its negative timeout. So a
//!    recovery with no reachable server fails here and leaves the mount alone.
//! 2. `umount-force` (`umount2(MNT_FORCE)`): aborts RPCs in flight so blocked callers
//!    get EIO instead of hanging; fails EBUSY when files are open, which is expected.
//!    Then `umount-detach` (`MNT_DETACH`) in the same worker request — what
//!    `umount -f -l` would have done if umount.nfs did not drop `-f`. One request, so
//!    that no new call enters the old mount between the two.
//! 3. `release`: wait (at most [`RELEASE_WAIT`]) until the kernel has freed the old
//!    superblock (`/proc/fs/nfsfs/volumes`). Why: while it lives, a new mount of the
//!    same server shares its kernel RPC client and TCP transport. After an orderly
//!    server stop that transport is in reconnect back-off (the kernel waits at least
//!    3 s after the server closed the connection), so the new mount would wait it out
//!    too. Once the old superblock is gone (the calls MNT_FORCE aborted have returned),
//!    the new mount gets a fresh client that connects at once. Open files keep the old
//!    superblock alive indefinitely: then the wait ends at its bound and the mount
//!    shares the old transport (slower, still correct).
//! 4. `mount` (direct: mount.nfs under a deadline) or `trigger` (autofs).
//! 5. `verify`: a full probe must succeed.
//! 6. `hook`s, each bounded; a failing hook is reported but does not fail the recovery.
//!
//! Known gap: in direct mode, between the detach and the new mount (about the mount's
//! duration) applications see the bare local mountpoint directory. Mounting at a
//! private staging point first and moving it in would close that gap, but the staged
//! mount would share the old superblock's transport and its back-off (step 3).
//!
//! Every step is bounded by a deadline from the config, and every step emits a
//! `recovery_step` event with its outcome and duration.

use crate::emit::Emitter;
use crate::host::{Host, HostError, MountRequest, ServerProbe, Umounted, topmost};
use crate::selection;
use crate::supervisor::{Heartbeat, clock_now};
use nfsha_config::{AgentSettings, MountConfig, MountMode};
use nfsha_core::{Event, EventKind, MountState, ProbeOutcome};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a recovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// No candidate server answered an RPC probe.
    #[error("No server of this mount answers RPC probes")]
    NoServerReachable,
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
}

/// Longest wait for a detached superblock to be freed before mounting anyway.
pub const RELEASE_WAIT: Duration = Duration::from_secs(1);
/// Poll period of that wait (a read of a small procfs file).
const RELEASE_POLL: Duration = Duration::from_millis(20);

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

    /// Run the whole recovery. `target` prefers a server (failback, cluster leader);
    /// with `strict` no other server may be used (the cluster's leader is the only
    /// safe source: any other node may be behind).
    pub async fn run(
        &mut self,
        target: Option<&str>,
        strict: bool,
    ) -> Result<String, RecoveryError> {
        // 1. select-server
        let t = clock_now();
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
                ok.then(|| target.to_string())
            }
            _ => {
                self.probes = self.probe_candidates().await;
                let ranked = selection::rank(self.mount, &self.probes);
                match target {
                    Some(t) if ranked.iter().any(|r| r == t) => Some(t.to_string()),
                    _ => ranked.first().cloned(),
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
        self.step_done("select-server", t, Ok(Some(server.clone())));

        // 2-3. detach whatever NFS mount sits on the mountpoint.
        self.detach().await.map_err(RecoveryError::Detach)?;

        // 4. mount or trigger.
        let t = clock_now();
        let result = match self.mount.mode {
            MountMode::Direct => {
                let req = MountRequest {
                    server: server.clone(),
                    export: self.mount.export.clone(),
                    mountpoint: self.mount.mountpoint.clone(),
                    version: self.mount.nfs_version.mount_option().to_string(),
                    options: self.mount.options.clone(),
                };
                self.host.mount_nfs(&req, self.settings.mount_timeout).await
            }
            MountMode::Autofs => {
                self.host
                    .trigger_automount(&self.mount.mountpoint, self.settings.mount_timeout)
                    .await
            }
        };
        let step = match self.mount.mode {
            MountMode::Direct => "mount",
            MountMode::Autofs => "trigger",
        };
        match result {
            Ok(()) => self.step_done(step, t, Ok(Some(server.clone()))),
            Err(e) => {
                self.step_done(step, t, Err(e.to_string()));
                return Err(RecoveryError::Mount { server, source: e });
            }
        }

        // 5. verify
        let t = clock_now();
        let outcome = self
            .host
            .probe(&self.mount.mountpoint, self.mount.probe_deadline)
            .await;
        let state = outcome.classify();
        if state != MountState::Healthy {
            self.step_done("verify", t, Err(describe(&outcome)));
            return Err(RecoveryError::Verify { state });
        }
        self.step_done("verify", t, Ok(None));

        // 6. hooks
        for argv in &self.mount.hooks {
            let t = clock_now();
            let env = vec![
                ("NFSHA_MOUNTPOINT".to_string(), self.mp()),
                ("NFSHA_SERVER".to_string(), server.clone()),
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

    /// Force, then lazily detach, every NFS mount stacked on the mountpoint; then wait
    /// (bounded) for the kernel to free the superblocks that were detached.
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
            let t = clock_now();
            let result = self.host.umount(&mp, true, deadline).await;
            match &result {
                Ok(Umounted::Gone) => self.step_done("umount-force", t, Ok(None)),
                Ok(Umounted::Detached) => {
                    // Busy (open files, cwd, a call in flight) is the normal case after
                    // a failover: MNT_DETACH took it off the mountpoint.
                    self.step_done("umount-force", t, Ok(Some("busy".to_string())));
                    self.step_done("umount-detach", clock_now(), Ok(None));
                    detached.extend(dev);
                }
                Err(e) => self.step_done("umount-force", t, Err(e.to_string())),
            }
            result?;
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
