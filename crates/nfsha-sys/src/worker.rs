//! Hang-proof filesystem access: worker processes, their protocol and the pool.
//!
//! Role: a `stat` on a dead NFS mount blocks in the kernel and a blocked thread
//! cannot be cancelled, but a process can be killed. So every filesystem operation
//! on an NFS path runs in a worker *process* (nfsha re-executing itself as
//! `nfsha __worker`, loop in [`worker_main`]) that speaks line-delimited JSON on its
//! stdin/stdout: one [`WorkerRequest`] line in, one [`WorkerResponse`] line out.
//! [`WorkerPool`] keeps idle workers for reuse, gives every request a deadline,
//! SIGKILLs a worker that misses it through a pidfd, and reaps it in the background
//! whenever it finally exits (a FUSE or NFS wait may not end on SIGKILL: such a
//! worker is counted by [`WorkerPool::stuck_workers`]). At most one probe/trigger is
//! in flight per mountpoint, and while a mount has a stuck worker, probes of it
//! answer [`ProbeOutcome::Hung`] at once without spawning another process.
//!
//! A probe is `statfs` + `open(O_DIRECTORY)` + one `getdents64` of the mountpoint,
//! never `stat` alone (a stat was answered from cached attributes after a real
//! failover while statfs and readdir failed with ESTALE). The optional write probe
//! (create, write, fsync, unlink a dot-file in the mount root) has a lane of its own,
//! so a write that hangs marks only the write probe stuck, never the read probes.
//!
//! Failure modes: spawn failure, a worker that dies or writes garbage
//! ([`WorkerError::Protocol`]), a missed deadline ([`WorkerError::Timeout`]), a
//! mount whose previous worker is still stuck ([`WorkerError::Stuck`]). Workers do
//! not set a parent-death signal (it is tied to the spawning *thread*); an idle
//! worker exits when its stdin closes, which happens when the daemon dies.

use crate::mountinfo::{MountEntry, find_mount};
use crate::ops::{MountOps, OpsError, RustixMountOps, SysOp, UmountFlags};
use nfsha_core::{MountState, ProbeOp, ProbeOutcome};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Errors of a pooled worker request.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker process could not be started.
    #[error("Cannot spawn worker {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The deadline passed; the worker was killed.
    #[error("Worker missed its {deadline:?} deadline")]
    Timeout {
        /// The deadline.
        deadline: Duration,
    },
    /// A previous worker for this mountpoint is still stuck in the kernel.
    #[error("A worker for this mountpoint is still stuck")]
    Stuck,
    /// The worker died or answered something that is not a response.
    #[error("Worker protocol error: {0}")]
    Protocol(String),
}

/// One request to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum WorkerRequest {
    /// `statfs` + open + one getdents64 of `path`.
    Probe {
        /// Mountpoint.
        path: PathBuf,
    },
    /// `umount2`: with `force`, `MNT_FORCE` first and, if that fails and `detach`
    /// is set, `MNT_DETACH`; without `force`, one call with the given flags.
    Umount {
        /// Mountpoint.
        path: PathBuf,
        /// Try `MNT_FORCE` first.
        force: bool,
        /// Detach (lazily) if still mounted.
        detach: bool,
    },
    /// Put a staged mount in place of the mount(s) at `target`: `old` times
    /// `umount2(target, MNT_FORCE)` and, if that fails, `MNT_DETACH`; then
    /// `mount(staged, target, MS_MOVE)`. One request, so the gap in which `target`
    /// shows the bare directory is a few syscalls long.
    Replace {
        /// The staged mount.
        staged: PathBuf,
        /// Mountpoint.
        target: PathBuf,
        /// How many mounts to take off `target` first (0: nothing mounted there).
        old: u32,
        /// Try `MNT_FORCE` before `MNT_DETACH` (aborts calls in flight in the old
        /// mount); without it, `MNT_DETACH` only.
        #[serde(default = "yes")]
        force: bool,
    },
    /// `mount(path, at, MS_BIND)`: hold the topmost mount at `path` on a second
    /// mountpoint `at` (a handle in the private staging area), so that its superblock
    /// can still be named — for `MNT_FORCE` — after it is detached from `path`; then
    /// `mount(at, at, MS_BIND)` until `layers` binds are stacked there (each forced
    /// umount of `at` takes one off: one force per layer).
    Hold {
        /// Mountpoint whose topmost mount is held.
        path: PathBuf,
        /// Where to hold it (an empty directory).
        at: PathBuf,
        /// How many binds to stack on `at` (at least 1).
        #[serde(default = "one")]
        layers: u32,
    },
    /// `stat` + open + one getdents64 of `path`, to make autofs mount it.
    Trigger {
        /// Mountpoint.
        path: PathBuf,
    },
    /// The write probe: create, write, fsync and unlink a dot-file in the root of the
    /// mount at `path` ([`MountOps::write_probe`]).
    WriteProbe {
        /// Mountpoint.
        path: PathBuf,
    },
    /// Liveness check; answers with the worker's pid.
    Ping,
}

impl WorkerRequest {
    /// The path this request touches, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            WorkerRequest::Probe { path }
            | WorkerRequest::Umount { path, .. }
            | WorkerRequest::Trigger { path }
            | WorkerRequest::WriteProbe { path } => Some(path),
            WorkerRequest::Replace { target, .. } => Some(target),
            WorkerRequest::Hold { path, .. } => Some(path),
            WorkerRequest::Ping => None,
        }
    }

    /// The lane: probes and triggers access the filesystem and share one lane per
    /// mountpoint; umounts have their own (they must work while a probe is stuck).
    fn lane(&self) -> Option<(PathBuf, bool)> {
        match self {
            WorkerRequest::Probe { path } | WorkerRequest::Trigger { path } => {
                Some((path.clone(), true))
            }
            WorkerRequest::Umount { path, .. } => Some((path.clone(), false)),
            WorkerRequest::Replace { target, .. } => Some((target.clone(), false)),
            // Its own lane (the handle is new each time): a hold stuck on a dead
            // mount must not hold up the replace that follows it.
            WorkerRequest::Hold { at, .. } => Some((at.clone(), false)),
            // An access lane of its own (keyed by the probe file's path): a write that
            // hangs marks only the write probe stuck, so read probes — which decide
            // whether the mount is remounted — go on as before.
            WorkerRequest::WriteProbe { path } => Some((write_lane(path), true)),
            WorkerRequest::Ping => None,
        }
    }
}

/// The lane (and stuck-worker key) of the write probe of the mount at `path`.
fn write_lane(path: &Path) -> PathBuf {
    path.join(crate::ops::WRITE_PROBE_FILE)
}

/// One `umount2` call made for an [`WorkerRequest::Umount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UmountStep {
    /// The flags, as text (`MNT_FORCE`).
    pub flags: String,
    /// The errno, or `None` if the call succeeded.
    pub errno: Option<i32>,
}

/// One response from a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WorkerResponse {
    /// Answer to [`WorkerRequest::Probe`].
    Probe {
        /// The outcome.
        outcome: ProbeOutcome,
    },
    /// Answer to [`WorkerRequest::Umount`].
    Umount {
        /// Every umount2 call made, in order.
        steps: Vec<UmountStep>,
        /// The errno of the last call, `None` if the mount is gone.
        errno: Option<i32>,
    },
    /// Answer to [`WorkerRequest::Replace`].
    Replace {
        /// Every umount2 call made, in order.
        steps: Vec<UmountStep>,
        /// The errno of the umount that could not take an old mount off (then no
        /// move was tried).
        umount_errno: Option<i32>,
        /// The errno of `MS_MOVE`, `None` if the staged mount is in place.
        move_errno: Option<i32>,
    },
    /// Answer to [`WorkerRequest::Hold`].
    Hold {
        /// The errno of the first `mount(MS_BIND)`, `None` if the mount is held.
        errno: Option<i32>,
        /// The binds stacked on `at` (fewer than asked if a later one failed).
        #[serde(default)]
        layers: u32,
    },
    /// Answer to [`WorkerRequest::WriteProbe`].
    WriteProbe {
        /// The outcome (classified with [`ProbeOutcome::classify_write`]).
        outcome: ProbeOutcome,
    },
    /// Answer to [`WorkerRequest::Trigger`].
    Trigger {
        /// The operation that failed, if any.
        op: Option<ProbeOp>,
        /// Its errno.
        errno: Option<i32>,
    },
    /// Answer to [`WorkerRequest::Ping`].
    Pong {
        /// The worker's pid.
        pid: u32,
    },
    /// The request line could not be understood.
    Error {
        /// Why.
        message: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    id: u64,
    #[serde(flatten)]
    body: T,
}

fn probe_op(op: SysOp) -> ProbeOp {
    match op {
        SysOp::Statfs => ProbeOp::Statfs,
        SysOp::Stat => ProbeOp::Stat,
        SysOp::Readdir => ProbeOp::Readdir,
        SysOp::Create => ProbeOp::Create,
        SysOp::Write => ProbeOp::Write,
        SysOp::Fsync => ProbeOp::Fsync,
        SysOp::Unlink => ProbeOp::Unlink,
        SysOp::Open | SysOp::Umount | SysOp::Move | SysOp::Bind => ProbeOp::Open,
    }
}

/// Probe `path` in the current process (blocks on a dead mount: workers only).
pub fn probe_here(ops: &dyn MountOps, path: &Path) -> ProbeOutcome {
    let start = Instant::now();
    let res = ops.statfs(path).and_then(|_| ops.read_dir_once(path));
    match res {
        Ok(_) => ProbeOutcome::Ok {
            latency: start.elapsed(),
        },
        Err(OpsError { op, errno }) => ProbeOutcome::Failed {
            op: probe_op(op),
            errno,
            latency: start.elapsed(),
        },
    }
}

fn umount_step(
    ops: &dyn MountOps,
    path: &Path,
    flags: UmountFlags,
    steps: &mut Vec<UmountStep>,
) -> Option<i32> {
    let errno = ops.umount(path, flags).err().map(|e| e.errno);
    steps.push(UmountStep {
        flags: flags.to_string(),
        errno,
    });
    errno
}

/// `MNT_FORCE`, then (if it failed and `detach`) `MNT_DETACH`; the last errno.
fn force_then_detach(
    ops: &dyn MountOps,
    path: &Path,
    detach: bool,
    steps: &mut Vec<UmountStep>,
) -> Option<i32> {
    match umount_step(ops, path, UmountFlags::FORCE, steps) {
        Some(_) if detach => umount_step(ops, path, UmountFlags::DETACH, steps),
        other => other,
    }
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

/// Execute one request in the current process (the worker side; may block).
pub fn handle_request(ops: &dyn MountOps, req: &WorkerRequest) -> WorkerResponse {
    match req {
        WorkerRequest::Probe { path } => WorkerResponse::Probe {
            outcome: probe_here(ops, path),
        },
        WorkerRequest::Umount {
            path,
            force,
            detach,
        } => {
            let mut steps = Vec::new();
            let errno = if *force {
                force_then_detach(ops, path, *detach, &mut steps)
            } else {
                umount_step(
                    ops,
                    path,
                    UmountFlags {
                        force: false,
                        detach: *detach,
                    },
                    &mut steps,
                )
            };
            WorkerResponse::Umount { steps, errno }
        }
        WorkerRequest::Replace {
            staged,
            target,
            old,
            force,
        } => {
            let mut steps = Vec::new();
            let mut umount_errno = None;
            for _ in 0..*old {
                umount_errno = if *force {
                    force_then_detach(ops, target, true, &mut steps)
                } else {
                    umount_step(ops, target, UmountFlags::DETACH, &mut steps)
                };
                if umount_errno.is_some() {
                    break;
                }
            }
            let move_errno = match umount_errno {
                Some(_) => None,
                None => ops.move_mount(staged, target).err().map(|e| e.errno),
            };
            WorkerResponse::Replace {
                steps,
                umount_errno,
                move_errno,
            }
        }
        WorkerRequest::Hold { path, at, layers } => match ops.bind_mount(path, at) {
            Err(e) => WorkerResponse::Hold {
                errno: Some(e.errno),
                layers: 0,
            },
            Ok(()) => {
                let mut made = 1;
                while made < *layers && ops.bind_mount(at, at).is_ok() {
                    made += 1;
                }
                WorkerResponse::Hold {
                    errno: None,
                    layers: made,
                }
            }
        },
        WorkerRequest::Trigger { path } => {
            match ops.stat(path).and_then(|()| ops.read_dir_once(path)) {
                Ok(_) => WorkerResponse::Trigger {
                    op: None,
                    errno: None,
                },
                Err(e) => WorkerResponse::Trigger {
                    op: Some(probe_op(e.op)),
                    errno: Some(e.errno),
                },
            }
        }
        WorkerRequest::WriteProbe { path } => {
            let start = Instant::now();
            let outcome = match ops.write_probe(path) {
                Ok(()) => ProbeOutcome::Ok {
                    latency: start.elapsed(),
                },
                Err(OpsError { op, errno }) => ProbeOutcome::Failed {
                    op: probe_op(op),
                    errno,
                    latency: start.elapsed(),
                },
            };
            WorkerResponse::WriteProbe { outcome }
        }
        WorkerRequest::Ping => WorkerResponse::Pong {
            pid: std::process::id(),
        },
    }
}

/// Serve requests from `input` to `output` until EOF (the worker loop, testable).
pub fn serve(
    ops: &dyn MountOps,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (id, resp) = match serde_json::from_str::<Envelope<WorkerRequest>>(&line) {
            Ok(env) => (env.id, handle_request(ops, &env.body)),
            Err(e) => (
                0,
                WorkerResponse::Error {
                    message: e.to_string(),
                },
            ),
        };
        let mut out =
            serde_json::to_vec(&Envelope { id, body: resp }).map_err(std::io::Error::other)?;
        out.push(b'\n');
        output.write_all(&out)?;
        output.flush()?;
    }
    Ok(())
}

/// The worker process entry point (`nfsha __worker`): cwd `/`, serve stdin until EOF.
/// Returns the process exit status.
pub fn worker_main() -> u8 {
    // The worker must not keep any NFS directory busy.
    if rustix::process::chdir("/").is_err() {
        return 1;
    }
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match serve(&RustixMountOps, stdin, stdout) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// How the pool starts workers.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The program (production: the nfsha binary itself, `/proc/self/exe`).
    pub program: PathBuf,
    /// Its arguments (production: `["__worker"]`).
    pub args: Vec<OsString>,
    /// Most idle workers kept for reuse; idle ones are also retired after 10 s unused.
    pub max_idle: usize,
}

impl PoolConfig {
    /// The production setup: re-execute this binary as `nfsha __worker`.
    pub fn self_exec(max_idle: usize) -> Self {
        PoolConfig {
            program: PathBuf::from("/proc/self/exe"),
            args: vec![OsString::from("__worker")],
            max_idle,
        }
    }
}

#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pidfd: OwnedFd,
    idle_since: Instant,
}

/// An idle worker unused for this long is retired (the pool shrinks back after a burst
/// instead of keeping every worker it ever needed, and never churns under steady load).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Shared {
    idle: Vec<Worker>,
    lanes: HashMap<(PathBuf, bool), Arc<tokio::sync::Mutex<()>>>,
    stuck_by_mount: HashMap<PathBuf, usize>,
}

#[derive(Debug)]
struct Inner {
    cfg: PoolConfig,
    shared: Mutex<Shared>,
    stuck: AtomicUsize,
    live: AtomicUsize,
    next_id: AtomicU64,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A pool of reusable worker processes (cheap to clone; clones share the pool).
#[derive(Debug, Clone)]
pub struct WorkerPool {
    inner: Arc<Inner>,
}

/// The result of [`WorkerPool::probe_mounted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// The classified state.
    pub state: MountState,
    /// The probe outcome; `None` when nothing acceptable is mounted (no probe ran).
    pub outcome: Option<ProbeOutcome>,
    /// The topmost mount at the mountpoint, if any.
    pub entry: Option<MountEntry>,
}

impl WorkerPool {
    /// A pool with no workers yet; they are spawned on demand. Needs a tokio runtime
    /// with I/O and time enabled when requests are made.
    pub fn new(cfg: PoolConfig) -> Self {
        WorkerPool {
            inner: Arc::new(Inner {
                cfg,
                shared: Mutex::new(Shared::default()),
                stuck: AtomicUsize::new(0),
                live: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Workers SIGKILLed after a missed deadline and not yet reaped.
    pub fn stuck_workers(&self) -> usize {
        self.inner.stuck.load(Ordering::SeqCst)
    }

    /// Worker processes started and not yet reaped (idle, busy or stuck).
    pub fn live_workers(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Idle workers ready for reuse.
    pub fn idle_workers(&self) -> usize {
        self.inner.lock().idle.len()
    }

    /// True while a worker for `mountpoint` is stuck.
    pub fn is_stuck(&self, mountpoint: &Path) -> bool {
        self.inner
            .lock()
            .stuck_by_mount
            .get(mountpoint)
            .is_some_and(|n| *n > 0)
    }

    /// Probe a mountpoint; every failure to get an answer in time is `Hung`.
    /// (Spawn and protocol failures are also reported as `Hung` and logged; use
    /// [`WorkerPool::try_probe`] to tell them apart.)
    pub async fn probe(&self, mountpoint: &Path, deadline: Duration) -> ProbeOutcome {
        match self.try_probe(mountpoint, deadline).await {
            Ok(o) => o,
            Err(e) => {
                if !matches!(e, WorkerError::Timeout { .. } | WorkerError::Stuck) {
                    tracing::warn!(mountpoint = %mountpoint.display(), error = %e, "probe worker failed");
                }
                ProbeOutcome::Hung { deadline }
            }
        }
    }

    /// Probe a mountpoint, reporting worker failures as errors.
    pub async fn try_probe(
        &self,
        mountpoint: &Path,
        deadline: Duration,
    ) -> Result<ProbeOutcome, WorkerError> {
        let req = WorkerRequest::Probe {
            path: mountpoint.to_path_buf(),
        };
        match self.request(req, deadline).await? {
            WorkerResponse::Probe { outcome } => Ok(outcome),
            other => Err(WorkerError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// The write probe of the mount at `mountpoint` (create, write, fsync, unlink a
    /// dot-file in its root), bounded by `deadline`; a missed deadline, a stuck earlier
    /// write probe or a worker failure is `Hung` (classified `write-hung`).
    pub async fn write_probe(&self, mountpoint: &Path, deadline: Duration) -> ProbeOutcome {
        let req = WorkerRequest::WriteProbe {
            path: mountpoint.to_path_buf(),
        };
        match self.request(req, deadline).await {
            Ok(WorkerResponse::WriteProbe { outcome }) => outcome,
            Ok(other) => {
                tracing::warn!(mountpoint = %mountpoint.display(), answer = ?other, "write probe: unexpected answer");
                ProbeOutcome::Hung { deadline }
            }
            Err(e) => {
                if !matches!(e, WorkerError::Timeout { .. } | WorkerError::Stuck) {
                    tracing::warn!(mountpoint = %mountpoint.display(), error = %e, "write probe worker failed");
                }
                ProbeOutcome::Hung { deadline }
            }
        }
    }

    /// True while a write probe of `mountpoint` is stuck.
    pub fn is_write_stuck(&self, mountpoint: &Path) -> bool {
        self.is_stuck(&write_lane(mountpoint))
    }

    /// Classify a mountpoint: `NotMounted` without probing when the topmost mount
    /// there (from `entries`, a fresh mountinfo read) is absent or not accepted by
    /// `accept` (production: [`MountEntry::is_nfs`]); otherwise probe and classify.
    pub async fn probe_mounted(
        &self,
        entries: &[MountEntry],
        mountpoint: &Path,
        deadline: Duration,
        accept: impl Fn(&MountEntry) -> bool,
    ) -> ProbeReport {
        let entry = find_mount(entries, mountpoint).cloned();
        match entry {
            Some(e) if accept(&e) => {
                let outcome = self.probe(mountpoint, deadline).await;
                ProbeReport {
                    state: outcome.classify(),
                    outcome: Some(outcome),
                    entry: Some(e),
                }
            }
            entry => ProbeReport {
                state: MountState::NotMounted,
                outcome: None,
                entry,
            },
        }
    }

    /// Send one request to a worker and wait at most `deadline` for its answer
    /// (waiting for the mountpoint's lane and spawning count against it).
    pub async fn request(
        &self,
        req: WorkerRequest,
        deadline: Duration,
    ) -> Result<WorkerResponse, WorkerError> {
        let start = Instant::now();
        let lane = req.lane();
        let access_path = lane.as_ref().filter(|(_, a)| *a).map(|(p, _)| p.clone());
        if let Some(p) = &access_path
            && self.is_stuck(p)
        {
            return Err(WorkerError::Stuck);
        }
        let _guard = match &lane {
            Some(key) => {
                let m = self
                    .inner
                    .lock()
                    .lanes
                    .entry(key.clone())
                    .or_default()
                    .clone();
                match tokio::time::timeout(deadline, m.lock_owned()).await {
                    Ok(g) => Some(g),
                    Err(_) => return Err(WorkerError::Timeout { deadline }),
                }
            }
            None => None,
        };
        if let Some(p) = &access_path
            && self.is_stuck(p)
        {
            return Err(WorkerError::Stuck);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_vec(&Envelope { id, body: &req })
            .map_err(|e| WorkerError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let mut may_retry = true;
        loop {
            let remaining = deadline.saturating_sub(start.elapsed());
            let idle = self.inner.lock().idle.pop();
            let reused = idle.is_some();
            let mut worker = match idle {
                Some(w) => w,
                None => self.spawn()?,
            };
            match tokio::time::timeout(remaining, exchange(&mut worker, &line)).await {
                Ok(Ok((rid, resp))) if rid == id => {
                    self.release(worker);
                    return Ok(resp);
                }
                Ok(Ok((rid, _))) => {
                    self.discard(worker, None);
                    return Err(WorkerError::Protocol(format!(
                        "answer to request {rid}, expected {id}"
                    )));
                }
                Ok(Err(e)) => {
                    self.discard(worker, None);
                    // An idle worker may have died meanwhile (OOM killer, admin):
                    // try once more with a fresh one.
                    if reused && may_retry {
                        may_retry = false;
                        tracing::debug!(error = %e, "idle worker unusable, retrying with a new one");
                        continue;
                    }
                    return Err(WorkerError::Protocol(e));
                }
                Err(_) => {
                    let killed = rustix::process::pidfd_send_signal(
                        &worker.pidfd,
                        rustix::process::Signal::KILL,
                    );
                    self.discard(
                        worker,
                        access_path.or_else(|| req.path().map(Path::to_path_buf)),
                    );
                    if let Err(e) = killed {
                        // ESRCH: it exited just now; the reaper still accounts for it.
                        tracing::debug!(error = %e, "SIGKILL of a late worker failed");
                    }
                    return Err(WorkerError::Timeout { deadline });
                }
            }
        }
    }

    fn spawn(&self) -> Result<Worker, WorkerError> {
        let cfg = &self.inner.cfg;
        let err = |source| WorkerError::Spawn {
            program: cfg.program.clone(),
            source,
        };
        let mut child = Command::new(&cfg.program)
            .args(&cfg.args)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(err)?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| err(std::io::Error::other("worker has no pid")))?;
        // The child is ours and not yet waited for, so the pid cannot be reused yet.
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(|e| err(e.into()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(err(std::io::Error::other("worker has no pipes")));
        };
        self.inner.live.fetch_add(1, Ordering::SeqCst);
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            pidfd,
            idle_since: Instant::now(),
        })
    }

    /// Return a healthy worker to the idle list (most recently used last, so reuse is
    /// LIFO), then retire workers idle longer than [`IDLE_TIMEOUT`] and any beyond
    /// `max_idle`, oldest first.
    fn release(&self, mut worker: Worker) {
        worker.idle_since = Instant::now();
        let mut retired = Vec::new();
        {
            let mut sh = self.inner.lock();
            sh.idle.push(worker);
            while sh.idle.len() > self.inner.cfg.max_idle.max(1)
                || (sh.idle.len() > 1 && sh.idle[0].idle_since.elapsed() > IDLE_TIMEOUT)
            {
                retired.push(sh.idle.remove(0));
            }
        }
        for w in retired {
            self.discard(w, None);
        }
    }

    /// Close a worker's stdin and reap it in the background; `stuck_on` marks it
    /// stuck (already SIGKILLed) on that mountpoint until it is reaped.
    fn discard(&self, worker: Worker, stuck_on: Option<PathBuf>) {
        let Worker {
            mut child,
            stdin,
            stdout,
            pidfd,
            idle_since: _,
        } = worker;
        drop(stdin);
        drop(stdout);
        if let Some(p) = &stuck_on {
            self.inner.stuck.fetch_add(1, Ordering::SeqCst);
            *self
                .inner
                .lock()
                .stuck_by_mount
                .entry(p.clone())
                .or_default() += 1;
        } else {
            // A retired or broken worker: make sure it goes.
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            drop(pidfd);
            inner.live.fetch_sub(1, Ordering::SeqCst);
            if let Some(p) = stuck_on {
                let mut sh = inner.lock();
                if let Some(n) = sh.stuck_by_mount.get_mut(&p) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        sh.stuck_by_mount.remove(&p);
                    }
                }
                drop(sh);
                inner.stuck.fetch_sub(1, Ordering::SeqCst);
                tracing::info!(mountpoint = %p.display(), "stuck worker reaped");
            }
        });
    }
}

/// Write one request line and read one response line.
async fn exchange(w: &mut Worker, line: &[u8]) -> Result<(u64, WorkerResponse), String> {
    w.stdin
        .write_all(line)
        .await
        .map_err(|e| format!("write: {e}"))?;
    w.stdin.flush().await.map_err(|e| format!("flush: {e}"))?;
    let mut buf = String::new();
    let n = w
        .stdout
        .read_line(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("worker exited".into());
    }
    let env: Envelope<WorkerResponse> =
        serde_json::from_str(&buf).map_err(|e| format!("bad answer {buf:?}: {e}"))?;
    Ok((env.id, env.body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{RecordedCall, RecordingMountOps};

    #[test]
    fn umount_tries_force_then_detach() {
        let ops = RecordingMountOps::new();
        ops.fail_call(1, libc::EBUSY);
        let p = PathBuf::from("/mnt/t");
        let r = handle_request(
            &ops,
            &WorkerRequest::Umount {
                path: p.clone(),
                force: true,
                detach: true,
            },
        );
        let WorkerResponse::Umount { steps, errno } = r else {
            panic!("{r:?}")
        };
        assert_eq!(errno, None);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].errno, Some(libc::EBUSY));
        assert_eq!(
            ops.calls(),
            vec![
                RecordedCall::Umount {
                    path: p.clone(),
                    flags: UmountFlags::FORCE
                },
                RecordedCall::Umount {
                    path: p,
                    flags: UmountFlags::DETACH
                },
            ]
        );
    }

    #[test]
    fn umount_stops_when_force_succeeds() {
        let ops = RecordingMountOps::new();
        let r = handle_request(
            &ops,
            &WorkerRequest::Umount {
                path: "/m".into(),
                force: true,
                detach: true,
            },
        );
        assert!(matches!(r, WorkerResponse::Umount { errno: None, ref steps } if steps.len() == 1));
        assert_eq!(ops.calls().len(), 1);
    }

    #[test]
    fn replace_detaches_a_busy_old_mount_then_moves_the_staged_one_in() {
        let ops = RecordingMountOps::new();
        ops.fail_call(1, libc::EBUSY);
        let r = handle_request(
            &ops,
            &WorkerRequest::Replace {
                staged: "/run/nfsha/stage/1".into(),
                target: "/m".into(),
                old: 1,
                force: true,
            },
        );
        assert_eq!(
            r,
            WorkerResponse::Replace {
                steps: vec![
                    UmountStep {
                        flags: "MNT_FORCE".into(),
                        errno: Some(libc::EBUSY)
                    },
                    UmountStep {
                        flags: "MNT_DETACH".into(),
                        errno: None
                    },
                ],
                umount_errno: None,
                move_errno: None,
            }
        );
        assert_eq!(
            ops.calls()[2],
            RecordedCall::Move {
                from: "/run/nfsha/stage/1".into(),
                to: "/m".into()
            }
        );
    }

    #[test]
    fn hold_binds_the_mount_on_the_handle_and_reports_the_errno() {
        let ops = RecordingMountOps::new();
        let req = WorkerRequest::Hold {
            path: "/m".into(),
            at: "/run/nfsha/stage/2".into(),
            layers: 3,
        };
        assert_eq!(
            handle_request(&ops, &req),
            WorkerResponse::Hold {
                errno: None,
                layers: 3
            }
        );
        let bind = |from: &str| RecordedCall::Bind {
            from: from.into(),
            to: "/run/nfsha/stage/2".into(),
        };
        assert_eq!(
            ops.calls(),
            vec![
                bind("/m"),
                bind("/run/nfsha/stage/2"),
                bind("/run/nfsha/stage/2")
            ]
        );
        // The first bind fails: nothing held.
        ops.fail_call(4, libc::ESTALE);
        assert_eq!(
            handle_request(&ops, &req),
            WorkerResponse::Hold {
                errno: Some(libc::ESTALE),
                layers: 0
            }
        );
        // A later bind fails: fewer layers.
        ops.fail_call(6, libc::ENOMEM);
        assert_eq!(
            handle_request(&ops, &req),
            WorkerResponse::Hold {
                errno: None,
                layers: 1
            }
        );
        // Its lane is the handle's, not the mountpoint's umount lane.
        assert_eq!(req.lane(), Some(("/run/nfsha/stage/2".into(), false)));
        assert_eq!(req.path(), Some(Path::new("/m")));
    }

    #[test]
    fn replace_without_force_only_detaches() {
        let ops = RecordingMountOps::new();
        let r = handle_request(
            &ops,
            &WorkerRequest::Replace {
                staged: "/s".into(),
                target: "/m".into(),
                old: 1,
                force: false,
            },
        );
        assert!(
            matches!(
                r,
                WorkerResponse::Replace {
                    umount_errno: None,
                    move_errno: None,
                    ..
                }
            ),
            "{r:?}"
        );
        assert_eq!(
            ops.calls(),
            vec![
                RecordedCall::Umount {
                    path: "/m".into(),
                    flags: UmountFlags::DETACH
                },
                RecordedCall::Move {
                    from: "/s".into(),
                    to: "/m".into()
                },
            ]
        );
    }

    #[test]
    fn replace_moves_nothing_when_the_old_mount_stays() {
        let ops = RecordingMountOps::new();
        ops.fail_call(1, libc::EBUSY).fail_call(2, libc::EPERM);
        let r = handle_request(
            &ops,
            &WorkerRequest::Replace {
                staged: "/s".into(),
                target: "/m".into(),
                old: 2,
                force: true,
            },
        );
        assert!(
            matches!(
                r,
                WorkerResponse::Replace {
                    umount_errno: Some(libc::EPERM),
                    move_errno: None,
                    ..
                }
            ),
            "{r:?}"
        );
        assert_eq!(ops.calls().len(), 2, "no move, no second umount");
        // Nothing mounted on the target: just the move, and its failure is reported.
        let ops = RecordingMountOps::new();
        ops.fail_call(1, libc::EINVAL);
        let r = handle_request(
            &ops,
            &WorkerRequest::Replace {
                staged: "/s".into(),
                target: "/m".into(),
                old: 0,
                force: true,
            },
        );
        assert!(
            matches!(r, WorkerResponse::Replace { ref steps, umount_errno: None, move_errno: Some(libc::EINVAL) } if steps.is_empty()),
            "{r:?}"
        );
    }

    #[test]
    fn probe_reports_the_failing_operation() {
        let ops = RecordingMountOps::new();
        ops.fail_call(1, libc::ESTALE);
        let o = probe_here(&ops, Path::new("/m"));
        assert_eq!(o.errno(), Some(libc::ESTALE));
        assert!(matches!(
            o,
            ProbeOutcome::Failed {
                op: ProbeOp::Statfs,
                ..
            }
        ));
        assert_eq!(o.classify(), MountState::Stale);
        let ops = RecordingMountOps::new();
        ops.fail_call(2, libc::EIO);
        let o = probe_here(&ops, Path::new("/m"));
        assert!(
            matches!(o, ProbeOutcome::Failed { op: ProbeOp::Open, errno, .. } if errno == libc::EIO)
        );
        assert_eq!(
            ops.calls(),
            vec![
                RecordedCall::Statfs { path: "/m".into() },
                RecordedCall::ReadDirOnce { path: "/m".into() }
            ]
        );
    }

    #[test]
    fn serve_answers_each_line_with_its_id_and_survives_garbage() {
        let ops = RecordingMountOps::new();
        let input =
            b"{\"id\":7,\"op\":\"ping\"}\nnot json\n{\"id\":8,\"op\":\"probe\",\"path\":\"/x\"}\n";
        let mut out = Vec::new();
        serve(&ops, &input[..], &mut out).unwrap();
        let lines: Vec<Envelope<WorkerResponse>> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].id, 7);
        assert!(matches!(lines[0].body, WorkerResponse::Pong { .. }));
        assert!(matches!(lines[1].body, WorkerResponse::Error { .. }));
        assert_eq!(lines[2].id, 8);
        assert!(matches!(
            lines[2].body,
            WorkerResponse::Probe {
                outcome: ProbeOutcome::Ok { .. }
            }
        ));
    }

    #[test]
    fn request_wire_format_is_stable() {
        let s = serde_json::to_string(&Envelope {
            id: 3,
            body: WorkerRequest::Umount {
                path: "/a b".into(),
                force: true,
                detach: true,
            },
        })
        .unwrap();
        assert_eq!(
            s,
            r#"{"id":3,"op":"umount","path":"/a b","force":true,"detach":true}"#
        );
    }
}
