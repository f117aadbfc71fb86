//! A scripted [`Host`] for unit tests and simulations: no kernel, no network.
//!
//! Injected explicitly (`Agent::start(Arc::new(FakeHost::new()), …)`); production code
//! never picks it up by itself. It records every call in order so tests can assert
//! that a recovery touched only its own mountpoint, and in which order.

use crate::host::{
    Host, HostError, MountRequest, Mounted, NfsClient, ReplaceError, Replaced, ServerProbe,
    Umounted, topmost,
};
use nfsha_core::ProbeOutcome;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `probe(mountpoint)`.
    Probe(PathBuf),
    /// One `umount2(mountpoint, flags)` syscall as the worker would make it:
    /// `(mountpoint, MNT_FORCE, MNT_DETACH)`.
    Umount(PathBuf, bool, bool),
    /// `nfs_superblock_alive(dev)`.
    SuperblockAlive((u32, u32)),
    /// `mount(MS_MOVE)` of a staged mount onto its mountpoint: `(staged, target)`.
    Move(PathBuf, PathBuf),
    /// `hold(mountpoint, at)`: the mount at `mountpoint` bound onto `at` (in layers).
    Hold(PathBuf, PathBuf),
    /// `mount_nfs(server, mountpoint)`.
    Mount(String, PathBuf),
    /// `trigger_automount(mountpoint)`.
    Trigger(PathBuf),
    /// `write_probe(mountpoint)`.
    WriteProbe(PathBuf),
    /// `probe_server(host)`.
    ProbeServer(String),
    /// `ping_server(host)`: the one-call check while the server does not answer.
    PingServer(String),
    /// `run_hook(argv)`.
    Hook(Vec<String>),
}

/// Where the fake's stage directories are.
pub const STAGE_ROOT: &str = "/run/nfsha/stage";

/// How the fake answers probes of one mountpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeScript {
    /// Answer with this outcome.
    Answer(ProbeOutcome),
    /// Never answer: the probe waits out its deadline and reports `Hung`.
    Hang,
}

#[derive(Debug, Default)]
struct Inner {
    table: Vec<Mounted>,
    probes: HashMap<PathBuf, ProbeScript>,
    write_probes: HashMap<PathBuf, ProbeScript>,
    /// Mount exports per server (`mount_fails` aside, what mount.nfs accepts).
    exports: HashMap<String, Vec<String>>,
    /// After this many more calls, every call hangs forever (a crash at that step).
    crash_after: Option<usize>,
    busy: HashMap<PathBuf, bool>,
    servers: HashMap<String, bool>,
    mount_fails: HashMap<String, i32>,
    /// Detached superblocks still alive: device → polls left before it is freed.
    lingering: HashMap<(u32, u32), u32>,
    /// Polls a busy mount's superblock stays alive after it is detached.
    linger_polls: HashMap<PathBuf, u32>,
    next_dev: u32,
    clients: Vec<NfsClient>,
    move_fails: Option<i32>,
    hold_fails: Option<i32>,
    next_stage: u32,
    stage_dirs: Vec<PathBuf>,
    calls: Vec<Call>,
}

impl Inner {
    fn new_dev(&mut self) -> Option<(u32, u32)> {
        self.next_dev += 1;
        Some((0, 40 + self.next_dev))
    }
}

/// The fake host.
#[derive(Debug, Clone, Default)]
pub struct FakeHost(Arc<Mutex<Inner>>);

fn healthy() -> ProbeOutcome {
    ProbeOutcome::Ok {
        latency: Duration::from_micros(300),
    }
}

impl FakeHost {
    /// An empty host: nothing mounted, no server reachable.
    pub fn new() -> Self {
        FakeHost::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Put an NFS mount from `server` at `mountpoint` into the table, healthy.
    pub fn add_nfs_mount(&self, mountpoint: &str, server: &str) {
        self.add_nfs_mount_of(mountpoint, server, "/export");
    }

    /// Put an NFS mount of `server:export` at `mountpoint` into the table, healthy.
    pub fn add_nfs_mount_of(&self, mountpoint: &str, server: &str, export: &str) {
        let mut i = self.inner();
        let dev = i.new_dev();
        i.table.push(Mounted {
            mountpoint: mountpoint.into(),
            fstype: "nfs4".into(),
            server: Some(server.into()),
            export: Some(export.into()),
            dev,
            addr_mapped: false,
        });
        i.probes
            .insert(mountpoint.into(), ProbeScript::Answer(healthy()));
    }

    /// Script the write probe's answer for a mountpoint (default: writable).
    pub fn set_write_probe(&self, mountpoint: &str, script: ProbeScript) {
        self.inner().write_probes.insert(mountpoint.into(), script);
    }

    /// Make `server` export only `exports` (mount.nfs of another path fails
    /// `ENOENT`); without this every path is exported.
    pub fn set_exports(&self, server: &str, exports: &[&str]) {
        self.inner().exports.insert(
            server.into(),
            exports.iter().map(|e| e.to_string()).collect(),
        );
    }

    /// Simulate a crash of the agent after `calls` more host calls: from then on every
    /// call is recorded and never returns (the kernel state stays as it was).
    pub fn crash_after(&self, calls: usize) {
        self.inner().crash_after = Some(calls);
    }

    /// Whether the simulated crash has happened.
    pub fn crashed(&self) -> bool {
        self.inner().crash_after == Some(0)
    }

    /// A new host with this one's kernel state (mount table, servers, exports) and no
    /// recorded calls: what a fresh agent finds after a crash. With `reboot`, nothing
    /// is mounted any more.
    pub fn restarted(&self, reboot: bool) -> FakeHost {
        let i = self.inner();
        let next = FakeHost::new();
        {
            let mut n = next.inner();
            if !reboot {
                n.table = i
                    .table
                    .iter()
                    .filter(|m| !m.mountpoint.starts_with(STAGE_ROOT))
                    .cloned()
                    .collect();
                n.probes = i.probes.clone();
            }
            n.servers = i.servers.clone();
            n.exports = i.exports.clone();
            n.next_dev = i.next_dev;
        }
        next
    }

    /// Count one call towards the simulated crash; once it has happened, never return
    /// (the agent "died" at this call: it has no effect and nothing after it runs).
    async fn crash_gate(&self) {
        let crashed = {
            let mut i = self.inner();
            match i.crash_after {
                Some(0) => true,
                Some(n) => {
                    i.crash_after = Some(n - 1);
                    false
                }
                None => false,
            }
        };
        if crashed {
            std::future::pending::<()>().await;
        }
    }

    /// Script the probe answer for a mountpoint.
    pub fn set_probe(&self, mountpoint: &str, script: ProbeScript) {
        self.inner().probes.insert(mountpoint.into(), script);
    }

    /// Make the non-lazy umount of a mountpoint fail EBUSY (open files).
    pub fn set_busy(&self, mountpoint: &str, busy: bool) {
        self.inner().busy.insert(mountpoint.into(), busy);
    }

    /// After a busy mount at `mountpoint` is detached, its superblock stays alive for
    /// this many `nfs_superblock_alive` polls (a call in flight, an open file).
    pub fn set_linger(&self, mountpoint: &str, polls: u32) {
        self.inner().linger_polls.insert(mountpoint.into(), polls);
    }

    /// What `/proc/fs/nfsfs/servers` lists.
    pub fn set_nfs_clients(&self, clients: Vec<NfsClient>) {
        self.inner().clients = clients;
    }

    /// Make every `MS_MOVE` fail with `errno` (0 clears).
    pub fn set_move_failure(&self, errno: i32) {
        self.inner().move_fails = (errno != 0).then_some(errno);
    }

    /// Make every `hold` fail with `errno` (0 clears).
    pub fn set_hold_failure(&self, errno: i32) {
        self.inner().hold_fails = (errno != 0).then_some(errno);
    }

    /// Stage directories created and not removed yet.
    pub fn stage_dirs(&self) -> Vec<PathBuf> {
        self.inner().stage_dirs.clone()
    }

    /// Set whether a server answers RPC probes.
    pub fn set_server(&self, host: &str, reachable: bool) {
        self.inner().servers.insert(host.into(), reachable);
    }

    /// Make mounts from `server` fail with `errno` (0 clears).
    pub fn set_mount_failure(&self, server: &str, errno: i32) {
        self.inner().mount_fails.insert(server.into(), errno);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    /// Every call so far, with each staged mount shown where it ended up: a
    /// `Mount(server, stage)` later moved onto `target` reads `Mount(server, target)`
    /// (at the position of the mount, which is before the old mount was taken off),
    /// and the `Move` itself is left out.
    pub fn resolved_calls(&self) -> Vec<Call> {
        let calls = self.calls();
        let mut out = Vec::new();
        for (i, c) in calls.iter().enumerate() {
            match c {
                Call::Move(..) => {}
                Call::Mount(server, at) => {
                    let target = calls[i + 1..].iter().find_map(|later| match later {
                        Call::Move(from, to) if from == at => Some(to.clone()),
                        _ => None,
                    });
                    out.push(Call::Mount(server.clone(), target.unwrap_or(at.clone())));
                }
                other => out.push(other.clone()),
            }
        }
        out
    }

    /// The current mount table.
    pub fn table(&self) -> Vec<Mounted> {
        self.inner().table.clone()
    }

    /// The mountpoints touched by umount calls (holds in the staging area are not
    /// mountpoints: see [`FakeHost::released`]).
    pub fn umounted(&self) -> Vec<PathBuf> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Umount(p, ..) if !p.starts_with(STAGE_ROOT) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The umount calls on holds (stage directories): `(handle, MNT_FORCE)`.
    pub fn released(&self) -> Vec<(PathBuf, bool)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Umount(p, force, _) if p.starts_with(STAGE_ROOT) => Some((p, force)),
                _ => None,
            })
            .collect()
    }
}

impl Host for FakeHost {
    fn mount_table(&self) -> Result<Vec<Mounted>, HostError> {
        Ok(self.inner().table.clone())
    }

    async fn probe(&self, mountpoint: &Path, deadline: Duration) -> ProbeOutcome {
        self.crash_gate().await;
        let script = {
            let mut i = self.inner();
            i.calls.push(Call::Probe(mountpoint.into()));
            i.probes.get(mountpoint).cloned()
        };
        match script {
            Some(ProbeScript::Answer(o)) => o,
            Some(ProbeScript::Hang) => {
                tokio::time::sleep(deadline).await;
                ProbeOutcome::Hung { deadline }
            }
            None => ProbeOutcome::Failed {
                op: nfsha_core::ProbeOp::Statfs,
                errno: libc::ENOENT,
                latency: Duration::ZERO,
            },
        }
    }

    async fn umount(
        &self,
        mountpoint: &Path,
        force: bool,
        detach: bool,
        _deadline: Duration,
    ) -> Result<Umounted, HostError> {
        self.crash_gate().await;
        let mut i = self.inner();
        i.calls.push(Call::Umount(mountpoint.into(), force, !force));
        let Some(top) = topmost(&i.table, mountpoint).cloned() else {
            return Err(HostError::Errno {
                op: "umount",
                errno: libc::EINVAL,
            });
        };
        let busy = i.busy.get(mountpoint).copied().unwrap_or(false);
        let outcome = if force && !busy {
            Umounted::Gone
        } else {
            if force {
                if !detach {
                    return Err(HostError::Errno {
                        op: "umount",
                        errno: libc::EBUSY,
                    });
                }
                i.calls.push(Call::Umount(mountpoint.into(), false, true));
            }
            let polls = i.linger_polls.get(mountpoint).copied().unwrap_or(0);
            if let Some(dev) = top.dev.filter(|_| busy && polls > 0) {
                i.lingering.insert(dev, polls);
            }
            Umounted::Detached
        };
        if let Some(pos) = i.table.iter().rposition(|m| m.mountpoint == mountpoint) {
            i.table.remove(pos);
        }
        i.probes.remove(mountpoint);
        Ok(outcome)
    }

    fn nfs_superblock_alive(&self, dev: (u32, u32)) -> Result<bool, HostError> {
        let mut i = self.inner();
        i.calls.push(Call::SuperblockAlive(dev));
        match i.lingering.get_mut(&dev) {
            Some(0) | None => {
                i.lingering.remove(&dev);
                Ok(false)
            }
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
        }
    }

    fn nfs_clients(&self) -> Result<Vec<NfsClient>, HostError> {
        Ok(self.inner().clients.clone())
    }

    fn stage_dir(&self) -> Result<PathBuf, HostError> {
        let mut i = self.inner();
        i.next_stage += 1;
        let dir = Path::new(STAGE_ROOT).join(i.next_stage.to_string());
        i.stage_dirs.push(dir.clone());
        Ok(dir)
    }

    fn remove_stage_dir(&self, dir: &Path) -> Result<(), HostError> {
        let mut i = self.inner();
        if i.table.iter().any(|m| m.mountpoint == dir) {
            return Err(HostError::Errno {
                op: "rmdir",
                errno: libc::EBUSY,
            });
        }
        i.stage_dirs.retain(|d| d != dir);
        Ok(())
    }

    async fn replace(
        &self,
        staged: &Path,
        target: &Path,
        old: u32,
        force: bool,
        deadline: Duration,
    ) -> Result<Replaced, ReplaceError> {
        self.crash_gate().await;
        let mut out = Vec::new();
        for _ in 0..old {
            if force {
                out.push(
                    self.umount(target, true, true, deadline)
                        .await
                        .map_err(ReplaceError::Umount)?,
                );
            } else {
                let mut i = self.inner();
                i.calls.push(Call::Umount(target.into(), false, true));
                if let Some(pos) = i.table.iter().rposition(|m| m.mountpoint == target) {
                    i.table.remove(pos);
                }
                out.push(Umounted::Detached);
            }
        }
        let mut i = self.inner();
        i.calls.push(Call::Move(staged.into(), target.into()));
        let failed = i
            .move_fails
            .or_else(|| (!i.table.iter().any(|m| m.mountpoint == staged)).then_some(libc::EINVAL));
        if let Some(errno) = failed {
            return Err(ReplaceError::Move {
                old: out,
                source: HostError::Errno {
                    op: "mount(MS_MOVE)",
                    errno,
                },
            });
        }
        let Some(pos) = i.table.iter().rposition(|m| m.mountpoint == staged) else {
            unreachable!("checked above");
        };
        let mut m = i.table.remove(pos);
        m.mountpoint = target.to_path_buf();
        i.table.push(m);
        let script = i.probes.remove(staged);
        if let Some(script) = script {
            i.probes.insert(target.to_path_buf(), script);
        }
        Ok(Replaced { old: out })
    }

    async fn hold(
        &self,
        mountpoint: &Path,
        at: &Path,
        layers: u32,
        _deadline: Duration,
    ) -> Result<u32, HostError> {
        self.crash_gate().await;
        let mut i = self.inner();
        i.calls.push(Call::Hold(mountpoint.into(), at.into()));
        let Some(mut m) = topmost(&i.table, mountpoint)
            .cloned()
            .filter(|_| i.hold_fails.is_none())
        else {
            return Err(HostError::Errno {
                op: "mount(MS_BIND)",
                errno: i.hold_fails.unwrap_or(libc::EINVAL),
            });
        };
        m.mountpoint = at.to_path_buf();
        for _ in 0..layers {
            i.table.push(m.clone());
        }
        Ok(layers)
    }

    async fn mount_nfs(&self, req: &MountRequest, _deadline: Duration) -> Result<(), HostError> {
        self.crash_gate().await;
        let mut i = self.inner();
        i.calls
            .push(Call::Mount(req.server.clone(), req.mountpoint.clone()));
        if let Some(&errno) = i.mount_fails.get(&req.server).filter(|e| **e != 0) {
            return Err(HostError::Errno { op: "mount", errno });
        }
        let (server, addr_mapped) = match req.server.strip_prefix("::ffff:") {
            Some(v4) => (v4.to_string(), true),
            None => (req.server.clone(), false),
        };
        if i.exports
            .get(&server)
            .is_some_and(|e| !e.contains(&req.export))
        {
            return Err(HostError::Command {
                op: "mount.nfs",
                status: 32,
                stderr: format!(
                    "mounting {server}:{} failed, reason given by server: No such file or directory",
                    req.export
                ),
            });
        }
        let dev = i.new_dev();
        i.table.push(Mounted {
            mountpoint: req.mountpoint.clone(),
            fstype: "nfs4".into(),
            server: Some(server),
            export: Some(req.export.clone()),
            dev,
            addr_mapped,
        });
        i.probes
            .insert(req.mountpoint.clone(), ProbeScript::Answer(healthy()));
        Ok(())
    }

    async fn write_probe(&self, mountpoint: &Path, deadline: Duration) -> ProbeOutcome {
        self.crash_gate().await;
        let script = {
            let mut i = self.inner();
            i.calls.push(Call::WriteProbe(mountpoint.into()));
            i.write_probes.get(mountpoint).cloned()
        };
        match script {
            Some(ProbeScript::Answer(o)) => o,
            Some(ProbeScript::Hang) => {
                tokio::time::sleep(deadline).await;
                ProbeOutcome::Hung { deadline }
            }
            None => healthy(),
        }
    }

    async fn trigger_automount(
        &self,
        mountpoint: &Path,
        _deadline: Duration,
    ) -> Result<(), HostError> {
        self.crash_gate().await;
        let mut i = self.inner();
        i.calls.push(Call::Trigger(mountpoint.into()));
        i.probes
            .insert(mountpoint.into(), ProbeScript::Answer(healthy()));
        Ok(())
    }

    async fn probe_server(&self, host: &str, _rpc_version: u32, _timeout: Duration) -> ServerProbe {
        self.crash_gate().await;
        let mut i = self.inner();
        i.calls.push(Call::ProbeServer(host.into()));
        let reachable = i.servers.get(host).copied().unwrap_or(false);
        ServerProbe {
            host: host.into(),
            addresses: vec![host.into()],
            reachable,
            rtt: reachable.then_some(Duration::from_micros(200)),
            error: (!reachable).then(|| "connection refused".into()),
        }
    }

    async fn ping_server(
        &self,
        host: &str,
        _rpc_version: u32,
        _timeout: Duration,
    ) -> Result<Duration, String> {
        self.crash_gate().await;
        let mut i = self.inner();
        i.calls.push(Call::PingServer(host.into()));
        if i.servers.get(host).copied().unwrap_or(false) {
            Ok(Duration::from_micros(100))
        } else {
            Err("connection refused".into())
        }
    }

    async fn run_hook(
        &self,
        argv: &[String],
        _env: &[(String, String)],
        _deadline: Duration,
    ) -> Result<(), HostError> {
        self.inner().calls.push(Call::Hook(argv.to_vec()));
        Ok(())
    }

    fn stuck_workers(&self) -> usize {
        0
    }

    fn live_workers(&self) -> usize {
        0
    }
}
