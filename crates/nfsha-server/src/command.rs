//! The real [`ServerHost`]: argument-vector shell-outs to the nfs-utils tools, optionally
//! through a command prefix (e.g. `nsenter -t PID -m -u`), and the floating address
//! in-process through [`crate::netlink`].
//!
//! Role, per step:
//! - storage: run the configured storage commands (mount, promote), create the state
//!   directory layout (`v4recovery`, `statd/sm`, `statd/sm.bak`, `nfsdcld`); in
//!   replicated mode run the configured promote command.
//! - nfsd: write lease and grace times to `/proc/fs/nfsd`, run the configured
//!   pre-nfsd commands (rpcbind, mountd), then `rpc.nfsd -L lease -G grace -S scope N`;
//!   in replicated mode end the grace period at once (see [`CommandHost`]).
//! - exports: `exportfs -i -o OPTS,fsid=N CLIENTS:PATH` per export.
//! - floating address ([`AddressOps`], netlink + ARP, no shell-out): RFC 5227
//!   duplicate-address probe, add (already present = success), one gratuitous ARP round
//!   inside the step (a failure removes the address again), the other
//!   `arp_count - 1` rounds from a background task, one per second, which stops as soon
//!   as the address goes down. Netlink acts in the **controller's own** network
//!   namespace: the command prefix does not apply to the floating address.
//! - notify: `sm-notify -f -v ADDRESS -P STATEDIR/statd`.
//! - btrfs engine (`engine = "btrfs"`): the storage step promotes the newest complete
//!   snapshot ([`crate::btrfs::Engine::promote`]); shipping is the engine's loop, and
//!   the final sync of a switchover is one more snapshot and increment.
//! - shipping (replicated mode, not a step): `[server.replication] ship_command` once per
//!   standby, with `NFSHA_TARGET_NODE`, `NFSHA_EPOCH` and `NFSHA_FINAL_SYNC` (`1` for the
//!   final sync of a planned switchover) in its environment.
//!
//! Teardown reverses it: address delete (absent address = success), `exportfs -u` +
//! unlock + `exportfs -f`, `rpc.nfsd 0` + post-stop commands, storage-down commands.
//! Failure modes: a tool is missing or exits non-zero ([`HostError`]); a hung tool is
//! killed **with its whole process group** when the sequencer's step timeout drops the
//! future (every command and hook runs in a process group of its own, [`GroupKill`]): a
//! script's children, or the command run by a prefix such as `nsenter`, die with it. A
//! command that finished is left alone (daemons it started stay; they detach with setsid
//! anyway); a netlink
//! or ARP operation fails ([`HostError::Address`]) or another host answers the probe
//! ([`HostError::DuplicateAddress`]); dropping an address future closes its sockets.

use crate::host::{HostError, Role, ServerHost, Step};
use crate::netlink::{AddressOps, NetlinkAddress};
use nfsha_config::{HostCommand, ServerConfig, StorageMode};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::timeout;

/// Kills a command's process group when dropped before [`GroupKill::disarm`]: the step
/// timeout drops the command's future, and `kill_on_drop` alone would kill only the direct
/// child, leaving a script's children (or what a prefix such as `nsenter` runs) behind.
#[derive(Debug)]
struct GroupKill(Option<rustix::process::Pid>);

impl GroupKill {
    /// The group of `child`, spawned with `process_group(0)` (its pid is the group id).
    fn of(child: &tokio::process::Child) -> GroupKill {
        GroupKill(
            child
                .id()
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw),
        )
    }

    /// The command finished: leave its group alone.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pg) = self.0 {
            let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
        }
    }
}

/// Knobs of the real host that are not in the config file (mostly for the lab), and the
/// `nfsha server run` command-line overrides of `[server.commands]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOptions {
    /// Prepended to every command, e.g. `["nsenter", "-t", "1234", "-m", "-n", "-u"]`.
    /// Files under `/proc/fs/nfsd` are then written with `tee` through the prefix.
    /// The floating address is **not** affected: it goes through netlink and ARP sockets
    /// in the controller's own network namespace (run the controller in the node's
    /// namespace to manage an address there).
    pub prefix: Vec<String>,
    /// nfsd's control directory. Default `/proc/fs/nfsd`.
    pub proc_nfsd: PathBuf,
    /// nfsd threads. Default 8.
    pub nfsd_threads: u32,
    /// Override of `[server.commands] storage_up` when non-empty (each command bounded
    /// by `step_timeout`): run at the start of the storage step.
    pub storage_up: Vec<Vec<String>>,
    /// Override of `[server.commands] storage_down` when non-empty: run at the end of
    /// the storage teardown.
    pub storage_down: Vec<Vec<String>>,
    /// Override of `[server.commands] before_nfsd` when non-empty: run before
    /// `rpc.nfsd` (e.g. `rpcbind -w`, `rpc.mountd`).
    pub before_nfsd: Vec<Vec<String>>,
    /// Override of `[server.commands] after_nfsd_stop` when non-empty: run after
    /// `rpc.nfsd 0` (e.g. stop mountd in this netns).
    pub after_nfsd_stop: Vec<Vec<String>>,
    /// Gratuitous ARP rounds (each an ARP request and an ARP reply). Default 3: the first
    /// is sent inside the step, the others one per second by a background task so that
    /// they do not delay the bring-up.
    pub arp_count: u32,
    /// Run the duplicate-address check (RFC 5227 ARP probe, IPv4 only) before adding
    /// the address. Default true.
    pub duplicate_address_check: bool,
    /// Pass `-S scope` to rpc.nfsd (nfs-utils ≥ 2.6). Default true; with false the
    /// scope must come from nfs.conf or the UTS hostname.
    pub scope_flag: bool,
}

impl Default for CommandOptions {
    fn default() -> Self {
        CommandOptions {
            prefix: Vec::new(),
            proc_nfsd: PathBuf::from("/proc/fs/nfsd"),
            nfsd_threads: 8,
            storage_up: Vec::new(),
            storage_down: Vec::new(),
            before_nfsd: Vec::new(),
            after_nfsd_stop: Vec::new(),
            arp_count: 3,
            duplicate_address_check: true,
            scope_flag: true,
        }
    }
}

/// The real host.
///
/// **Grace in replicated mode.** After a failover the NFSv4 server normally waits out a
/// grace period (at least one lease) so that clients can reclaim their opens and locks.
/// In `replicated` mode each node has its own copy of the data and of the state
/// directory: the new server has no client records to honour, and the file handles of
/// the old server are stale anyway (clients must remount), so no client *can* reclaim
/// anything. Waiting would only block every OPEN for nothing, so grace is ended at once
/// by writing `Y` to `/proc/fs/nfsd/v4_end_grace`. In `shared` mode the state directory
/// moves with the data, reclaims are possible, and grace is left to run. The kernel only
/// accepts that write when nfsd tracks clients: in a network namespace other than the
/// host's (containers, the lab) that means `nfsdcld` running there with `rpc_pipefs`
/// mounted; without it OPENs wait out the grace period (measured in the lab: up to 13 s).
///
/// The floating address goes through `A` ([`NetlinkAddress`] unless a test injects
/// another [`AddressOps`] with [`CommandHost::with_address_ops`]).
#[derive(Debug, Clone)]
pub struct CommandHost<A = NetlinkAddress> {
    cfg: ServerConfig,
    opts: CommandOptions,
    addr: Arc<A>,
    /// The background gratuitous-ARP task of the last bring-up, aborted on teardown.
    announcer: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
    /// `engine = "btrfs"`: the engine (its commands go through the prefix too) and the
    /// last promotion of the storage step.
    btrfs: Option<BtrfsEngine>,
}

/// The btrfs engine of a [`CommandHost`] and its last promotion.
type BtrfsEngine = (
    Arc<crate::btrfs::Engine<crate::btrfs::RealBtrfs>>,
    Arc<Mutex<Option<crate::btrfs::Promotion>>>,
);

fn s(v: impl ToString) -> String {
    v.to_string()
}

impl CommandHost<NetlinkAddress> {
    /// A host for this `[server]` section; the floating address goes through netlink.
    pub fn new(cfg: ServerConfig, opts: CommandOptions) -> Self {
        Self::with_address_ops(cfg, opts, NetlinkAddress::new())
    }
}

impl<A: AddressOps> CommandHost<A> {
    /// A host whose floating-address step uses `addr`.
    pub fn with_address_ops(cfg: ServerConfig, opts: CommandOptions, addr: A) -> Self {
        // btrfs engine (see crate::btrfs): same paths on every node, the node's own
        // commands through the prefix, standbys through the configured transport.
        let btrfs = crate::btrfs::Engine::from_config(&cfg, opts.prefix.clone())
            .map(|e| (Arc::new(e), Arc::default()));
        CommandHost {
            cfg,
            opts,
            addr: Arc::new(addr),
            announcer: Arc::default(),
            btrfs,
        }
    }

    fn full_argv(&self, argv: &[String]) -> Vec<String> {
        self.opts
            .prefix
            .iter()
            .chain(argv.iter())
            .cloned()
            .collect()
    }

    /// The argument vector `run` would execute (tests).
    pub fn planned(&self, argv: &[String]) -> Vec<String> {
        self.full_argv(argv)
    }

    async fn run_with(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Result<String, HostError> {
        let full = self.full_argv(argv);
        let Some((prog, args)) = full.split_first() else {
            return Ok(String::new());
        };
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tracing::debug!(argv = ?full, "run");
        let mut child = cmd.spawn().map_err(|source| HostError::Spawn {
            program: prog.clone(),
            source,
        })?;
        let group = GroupKill::of(&child);
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(data).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| HostError::Spawn {
                program: prog.clone(),
                source,
            })?;
        group.disarm();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: String = err
                .trim()
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err(HostError::Failed {
                program: argv.first().cloned().unwrap_or_default(),
                status: out.status.to_string(),
                code: out.status.code(),
                stderr: tail,
            })
        }
    }

    async fn run(&self, argv: &[String]) -> Result<String, HostError> {
        self.run_with(argv, None, &[]).await
    }

    /// The effective commands of one kind: the command-line override when given
    /// (each bounded by `step_timeout`), else the config's.
    fn effective(&self, overrides: &[Vec<String>], configured: &[HostCommand]) -> Vec<HostCommand> {
        if overrides.is_empty() {
            return configured.to_vec();
        }
        overrides
            .iter()
            .map(|argv| HostCommand {
                argv: argv.clone(),
                timeout: self.cfg.step_timeout,
            })
            .collect()
    }

    /// The storage-up commands this host runs (tests, `config show`).
    pub fn storage_up_commands(&self) -> Vec<HostCommand> {
        let mut v = self.effective(&self.opts.storage_up, &self.cfg.commands.storage_up);
        if let Some(target) = &self.cfg.commands.state_dir_bind {
            v.push(HostCommand {
                argv: vec![
                    s("mount"),
                    s("--bind"),
                    self.cfg.state_dir.display().to_string(),
                    target.display().to_string(),
                ],
                timeout: self.cfg.commands.state_dir_bind_timeout,
            });
        }
        v
    }

    /// The storage-down commands this host runs (after the state directory's unbind).
    pub fn storage_down_commands(&self) -> Vec<HostCommand> {
        self.effective(&self.opts.storage_down, &self.cfg.commands.storage_down)
    }

    /// Storage teardown: unbind the state directory if it is bound (`mountpoint -q`
    /// first, so that a teardown of a storage step that never ran succeeds), then the
    /// storage-down commands.
    async fn storage_down(&self) -> Result<(), HostError> {
        if let Some(target) = &self.cfg.commands.state_dir_bind {
            let t = self.cfg.commands.state_dir_bind_timeout;
            let target = target.display().to_string();
            let check = HostCommand {
                argv: vec![s("mountpoint"), s("-q"), target.clone()],
                timeout: t,
            };
            match self.run_all(std::slice::from_ref(&check)).await {
                Ok(()) => {
                    self.run_all(&[HostCommand {
                        argv: vec![s("umount"), target],
                        timeout: t,
                    }])
                    .await?
                }
                // Exit status 1 or 32: not a mount point, nothing to unbind.
                Err(HostError::Failed { code: Some(_), .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.run_all(&self.storage_down_commands()).await
    }

    async fn run_all(&self, cmds: &[HostCommand]) -> Result<(), HostError> {
        for c in cmds {
            match timeout(c.timeout, self.run(&c.argv)).await {
                Ok(r) => r?,
                // Dropping the future killed the command's process group.
                Err(_) => {
                    return Err(HostError::TimedOut {
                        program: c.argv.first().cloned().unwrap_or_default(),
                        timeout: c.timeout,
                    });
                }
            };
        }
        Ok(())
    }

    /// Write a control file, directly or through the prefix (`tee`).
    async fn write_file(&self, path: PathBuf, content: &str) -> Result<(), HostError> {
        if self.opts.prefix.is_empty() {
            tokio::fs::write(&path, content)
                .await
                .map_err(|source| HostError::Write {
                    path: path.display().to_string(),
                    source,
                })
        } else {
            self.run_with(
                &[s("tee"), path.display().to_string()],
                Some(content.as_bytes()),
                &[],
            )
            .await
            .map(drop)
        }
    }

    fn export_spec(&self, e: &nfsha_config::ExportConfig) -> String {
        format!("{}:{}", e.clients, e.path.display())
    }

    /// The `exportfs` argument vector for one export (fsid pinned, overriding any
    /// `fsid=` in the options).
    pub fn export_argv(&self, e: &nfsha_config::ExportConfig) -> Vec<String> {
        let mut opts: Vec<String> = e
            .options
            .iter()
            .filter(|o| !o.starts_with("fsid="))
            .cloned()
            .collect();
        opts.push(format!("fsid={}", e.fsid));
        vec![
            s("exportfs"),
            s("-i"),
            s("-o"),
            opts.join(","),
            self.export_spec(e),
        ]
    }

    /// The `rpc.nfsd` argument vector.
    pub fn nfsd_argv(&self) -> Vec<String> {
        let mut v = vec![
            s("rpc.nfsd"),
            s("-L"),
            s(self.cfg.nfsd_lease.as_secs().max(10)),
            s("-G"),
            s(self.cfg.nfsd_grace.as_secs().max(10)),
        ];
        if self.opts.scope_flag {
            v.extend([s("-S"), self.cfg.scope.clone()]);
        }
        v.push(s(self.opts.nfsd_threads));
        v
    }

    async fn storage_up(&self, epoch: u64) -> Result<(), HostError> {
        self.run_all(&self.storage_up_commands()).await?;
        if let Some((engine, last)) = &self.btrfs {
            // btrfs engine: the newest complete snapshot becomes the live subvolume.
            let p = engine.promote(epoch, nfsha_core::event::now_ms()).await?;
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        }
        if self.cfg.storage == StorageMode::Replicated
            && let Some(r) = &self.cfg.replication
            && !r.promote_command.is_empty()
        {
            self.run(&r.promote_command).await?;
        }
        let d = &self.cfg.state_dir;
        let dirs = ["v4recovery", "statd/sm", "statd/sm.bak", "nfsdcld"];
        let mut argv = vec![s("mkdir"), s("-p")];
        argv.extend(dirs.iter().map(|x| d.join(x).display().to_string()));
        self.run(&argv).await.map(drop)
    }

    async fn nfsd_up(&self) -> Result<(), HostError> {
        let p = &self.opts.proc_nfsd;
        // Must be set before nfsd starts; rpc.nfsd -L/-G does the same on new nfs-utils.
        self.write_file(
            p.join("nfsv4leasetime"),
            &format!("{}\n", self.cfg.nfsd_lease.as_secs().max(10)),
        )
        .await?;
        self.write_file(
            p.join("nfsv4gracetime"),
            &format!("{}\n", self.cfg.nfsd_grace.as_secs().max(10)),
        )
        .await?;
        self.run_all(&self.effective(&self.opts.before_nfsd, &self.cfg.commands.before_nfsd))
            .await?;
        self.run(&self.nfsd_argv()).await?;
        if self.cfg.storage == StorageMode::Replicated {
            // See the type's doc: nothing can be reclaimed, so do not make OPENs wait.
            let end = p.join("v4_end_grace");
            if let Err(e) = self.write_file(end.clone(), "Y\n").await {
                // The kernel refuses the write (EBUSY) both when grace is already over (an
                // nfsdcld with no client records skips it) and when nfsd runs without client
                // tracking: in a network namespace other than the initial one only nfsdcld
                // can track clients (the umh upcall and the legacy directory are refused
                // there). Tell the two apart by reading the file back.
                let now = if self.opts.prefix.is_empty() {
                    tokio::fs::read_to_string(&end).await.unwrap_or_default()
                } else {
                    self.run(&[s("cat"), end.display().to_string()])
                        .await
                        .unwrap_or_default()
                };
                if now.trim() == "Y" {
                    tracing::debug!("grace already over");
                } else {
                    tracing::warn!(
                        error = %e,
                        "cannot end grace early: OPENs wait out the grace period (is nfsdcld running in nfsd's network namespace?)"
                    );
                }
            }
        }
        Ok(())
    }

    async fn nfsd_down(&self) -> Result<(), HostError> {
        self.run(&[s("rpc.nfsd"), s("0")]).await?;
        self.run_all(&self.effective(
            &self.opts.after_nfsd_stop,
            &self.cfg.commands.after_nfsd_stop,
        ))
        .await
    }

    async fn exports_up(&self) -> Result<(), HostError> {
        for e in &self.cfg.exports {
            self.run(&self.export_argv(e)).await?;
        }
        Ok(())
    }

    async fn exports_down(&self) -> Result<(), HostError> {
        let mut first_err = None;
        for e in &self.cfg.exports {
            match self
                .run(&[s("exportfs"), s("-u"), self.export_spec(e)])
                .await
            {
                Ok(_) => {}
                // Not exported: already down.
                Err(HostError::Failed { stderr, .. }) if stderr.contains("Could not find") => {}
                Err(err) => {
                    first_err.get_or_insert(err);
                }
            }
            // Drop NLM locks held on it so the next server can grant them.
            let _ = self
                .write_file(
                    self.opts.proc_nfsd.join("unlock_filesystem"),
                    &format!("{}\n", e.path.display()),
                )
                .await;
        }
        let _ = self.run(&[s("exportfs"), s("-f")]).await;
        first_err.map_or(Ok(()), Err)
    }

    async fn address_up(&self) -> Result<(), HostError> {
        let Some(f) = &self.cfg.floating_address else {
            return Ok(());
        };
        let interface = f.interface.as_str();
        let v4 = match f.address {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        };
        if let Some(a) = v4
            && self.opts.duplicate_address_check
            && self.addr.probe_duplicate(interface, a).await?
        {
            return Err(HostError::DuplicateAddress(a.to_string()));
        }
        self.addr.add(interface, f.address, f.prefix).await?;
        let Some(a) = v4 else {
            return Ok(());
        };
        if let Err(e) = self.addr.announce(interface, a).await {
            // Leave nothing half-done behind: the address goes with the failure.
            if let Err(del) = self.addr.del(interface, f.address).await {
                tracing::warn!(error = %del, "cannot remove the address after a failed gratuitous ARP");
            }
            return Err(e.into());
        }
        if self.opts.arp_count > 1 {
            self.spawn_announcer(interface.to_owned(), a, self.opts.arp_count - 1);
        }
        Ok(())
    }

    /// Send `rounds` more gratuitous ARP rounds, one per second, while the address is
    /// still on the interface (a teardown also aborts the task).
    fn spawn_announcer(&self, interface: String, address: Ipv4Addr, rounds: u32) {
        let ops = Arc::clone(&self.addr);
        let task = tokio::spawn(async move {
            let period = Duration::from_secs(1);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for _ in 0..rounds {
                tick.tick().await;
                match ops.has(&interface, IpAddr::V4(address)).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "background gratuitous ARP stopped");
                        return;
                    }
                }
                if let Err(e) = ops.announce(&interface, address).await {
                    tracing::warn!(error = %e, "background gratuitous ARP stopped");
                    return;
                }
            }
        });
        let old = self
            .announcer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task.abort_handle());
        if let Some(old) = old {
            old.abort();
        }
    }

    async fn address_down(&self) -> Result<(), HostError> {
        let Some(f) = &self.cfg.floating_address else {
            return Ok(());
        };
        // No gratuitous ARP may claim the address for this node once it is going away.
        let announcer = self
            .announcer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = announcer {
            t.abort();
        }
        // Absent address (or interface) = success: the netlink implementation's rule.
        self.addr.del(&f.interface, f.address).await?;
        Ok(())
    }

    async fn notify(&self) -> Result<(), HostError> {
        let Some(f) = &self.cfg.floating_address else {
            return Ok(());
        };
        let statd = self.cfg.state_dir.join("statd");
        self.run(&[
            s("sm-notify"),
            s("-f"),
            s("-v"),
            f.address.to_string(),
            s("-P"),
            statd.display().to_string(),
        ])
        .await
        .map(drop)
    }
}

impl<A: AddressOps> CommandHost<A> {
    /// btrfs engine: one more snapshot and its increment to `target` (the final sync of
    /// a planned switchover, after the service is down).
    async fn btrfs_sync(&self, target: &str, epoch: u64) -> Result<(), HostError> {
        let Some((engine, _)) = &self.btrfs else {
            return Err(HostError::NoShipCommand);
        };
        let now = nfsha_core::event::now_ms();
        engine.take_snapshot(epoch, now).await?;
        // No records to tell what the target's retention must keep (fork points of
        // other nodes): it prunes nothing now; the next leader's retention has them.
        let keep_all: std::collections::BTreeSet<String> = engine
            .inventory()
            .await?
            .iter()
            .map(|s| s.identity().to_owned())
            .collect();
        let r = engine.replicate(target, epoch, now, &keep_all).await?;
        tracing::info!(target, snapshot = %r.snapshot, bytes = ?r.bytes, "final btrfs sync");
        Ok(())
    }

    /// Run `[server.replication] ship_command` (through the prefix, like every host
    /// command) for one standby: `NFSHA_TARGET_NODE`, `NFSHA_EPOCH`, and
    /// `NFSHA_FINAL_SYNC=1` for the final sync of a planned switchover.
    async fn ship_command(&self, target: &str, epoch: u64, last: bool) -> Result<(), HostError> {
        let argv = match &self.cfg.replication {
            Some(r) if !r.ship_command.is_empty() => &r.ship_command,
            _ => return Err(HostError::NoShipCommand),
        };
        let epoch = epoch.to_string();
        let final_sync = if last { "1" } else { "0" };
        let env = [
            ("NFSHA_TARGET_NODE", target),
            ("NFSHA_EPOCH", epoch.as_str()),
            ("NFSHA_FINAL_SYNC", final_sync),
        ];
        self.run_with(argv, None, &env).await.map(drop)
    }
}

#[cfg(test)]
mod ship_tests {
    use super::*;
    use crate::netlink::FakeAddressOps;

    fn host(ship: Option<Vec<String>>) -> CommandHost<FakeAddressOps> {
        let mut cfg = nfsha_config::parse_str(
            "[server]\nnode = \"a\"\ncluster = \"c\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nstorage = \"replicated\"\n[[server.export]]\npath = \"/srv/a\"\nfsid = 1\n[server.replication]\nship_command = [\"true\"]\npromote_command = [\"true\"]\n",
            None,
        )
        .expect("config")
        .server
        .expect("[server]");
        match ship {
            Some(argv) => cfg.replication.as_mut().expect("replication").ship_command = argv,
            None => cfg.replication = None,
        }
        CommandHost::with_address_ops(cfg, CommandOptions::default(), FakeAddressOps::new())
    }

    #[tokio::test]
    async fn ship_runs_the_argument_vector_with_target_and_epoch_in_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("env");
        let script = format!(
            "echo \"$NFSHA_TARGET_NODE $NFSHA_EPOCH $NFSHA_FINAL_SYNC $1\" >> '{}'",
            out.display()
        );
        // The target name is data, never part of a command line.
        let h = host(Some(vec![
            "sh".into(),
            "-c".into(),
            script,
            "sh".into(),
            "arg;x".into(),
        ]));
        h.ship("nfs-2; rm -rf /", 7).await.expect("ship");
        h.final_sync("nfs-2", 8).await.expect("final sync");
        let got = std::fs::read_to_string(&out).expect("output");
        assert_eq!(got, "nfs-2; rm -rf / 7 0 arg;x\nnfs-2 8 1 arg;x\n");
    }

    /// Issue 13 / 16: a timed-out command used to lose only its direct child (`kill_on_drop`);
    /// the step timeout dropping the future now takes the whole process group.
    #[tokio::test]
    async fn a_command_dropped_by_the_step_timeout_dies_with_its_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > '{}'; wait", pidfile.display());
        let h = host(Some(vec!["sh".into(), "-c".into(), script]));
        let ship = h.ship("b", 1);
        let timed_out = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::pin!(ship);
            // Drive the command until the grandchild exists, then drop it like the timeout.
            loop {
                tokio::select! {
                    r = &mut ship => panic!("the ship ended on its own: {r:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                if std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n')) {
                    break;
                }
            }
        })
        .await;
        assert!(timed_out.is_ok(), "the grandchild never started");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid number");
        let gone = (0..200).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(25));
            }
            !alive
        });
        assert!(gone, "grandchild {pid} survived the dropped command");
    }

    #[tokio::test]
    async fn a_failed_ship_keeps_the_exit_status_and_stderr_and_no_command_is_an_error() {
        let h = host(Some(vec![
            "sh".into(),
            "-c".into(),
            "echo nope >&2; exit 3".into(),
        ]));
        match h.ship("b", 1).await {
            Err(HostError::Failed { code, stderr, .. }) => {
                assert_eq!((code, stderr.as_str()), (Some(3), "nope"));
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(matches!(
            host(None).ship("b", 1).await,
            Err(HostError::NoShipCommand)
        ));
    }
}

impl<A: AddressOps> ServerHost for CommandHost<A> {
    async fn up(&self, step: Step, epoch: u64) -> Result<(), HostError> {
        match step {
            Step::Storage => self.storage_up(epoch).await,
            Step::Nfsd => self.nfsd_up().await,
            Step::Exports => self.exports_up().await,
            Step::FloatingAddress => self.address_up().await,
            Step::Notify => self.notify().await,
        }
    }

    async fn down(&self, step: Step) -> Result<(), HostError> {
        match step {
            Step::FloatingAddress => self.address_down().await,
            Step::Exports => self.exports_down().await,
            Step::Nfsd => self.nfsd_down().await,
            Step::Storage => self.storage_down().await,
            Step::Notify => Ok(()),
        }
    }

    async fn ship(&self, target: &str, epoch: u64) -> Result<(), HostError> {
        if self.btrfs.is_some() {
            return self.btrfs_sync(target, epoch).await;
        }
        self.ship_command(target, epoch, false).await
    }

    async fn final_sync(&self, target: &str, epoch: u64) -> Result<(), HostError> {
        if self.btrfs.is_some() {
            return self.btrfs_sync(target, epoch).await;
        }
        self.ship_command(target, epoch, true).await
    }

    fn btrfs(&self) -> Option<crate::host::BtrfsSide> {
        self.btrfs.as_ref().map(|(e, last)| {
            (
                e.clone(),
                last.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            )
        })
    }

    async fn role_changed(&self, role: Role) -> Result<(), HostError> {
        // Hooks run on the host itself, not through the prefix: they are the
        // operator's, written for this machine.
        for hook in &self.cfg.hooks {
            let Some((prog, args)) = hook.split_first() else {
                continue;
            };
            let child = Command::new(prog)
                .args(args)
                .env("NFSHA_ROLE", role.name())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| HostError::Spawn {
                    program: prog.clone(),
                    source,
                })?;
            let group = GroupKill::of(&child);
            let out = child
                .wait_with_output()
                .await
                .map_err(|source| HostError::Spawn {
                    program: prog.clone(),
                    source,
                })?;
            group.disarm();
            if !out.status.success() {
                return Err(HostError::Failed {
                    program: prog.clone(),
                    status: out.status.to_string(),
                    code: out.status.code(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{AddressCall, AddressOp, FakeAddressOps, NetlinkError};
    use crate::sequencer::{NoGuard, Sequencer};
    use nfsha_config::{ExportConfig, FloatingAddress, ReplicationConfig};
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn cfg(storage: StorageMode) -> ServerConfig {
        ServerConfig {
            node: "nfs-1".into(),
            cluster: "c".into(),
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_tls: None,
            etcd_auth: None,
            ttl: Duration::from_secs(10),
            loop_period: Duration::from_secs(1),
            safety_margin: Duration::from_secs(5),
            exports: vec![
                ExportConfig {
                    path: "/srv/a".into(),
                    fsid: 1,
                    clients: "*".into(),
                    options: vec!["rw".into(), "fsid=99".into(), "no_subtree_check".into()],
                },
                ExportConfig {
                    path: "/srv/b".into(),
                    fsid: 2,
                    clients: "10.0.0.0/24".into(),
                    options: vec!["ro".into()],
                },
            ],
            floating_address: Some(FloatingAddress {
                address: "10.99.0.100".parse().expect("ip"),
                prefix: 24,
                interface: "vB".into(),
            }),
            state_dir: "/var/lib/nfs".into(),
            nfsd_lease: Duration::from_secs(10),
            nfsd_grace: Duration::from_secs(15),
            scope: "airflow-nfs".into(),
            storage,
            step_timeout: Duration::from_secs(5),
            hooks: vec![],
            listen: None,
            watchdog_device: None,
            commands: Default::default(),
            replication: Some(ReplicationConfig {
                engine: nfsha_config::ReplicationEngine::Command,
                btrfs: None,
                interval: Duration::from_secs(300),
                ship_command: vec!["ship".into()],
                promote_command: vec!["promote".into(), "--newest".into()],
                max_lag: Duration::from_secs(600),
            }),
        }
    }

    /// A prefix program that logs its argv and fails when argv starts with `$0.fail`.
    fn recorder(dir: &std::path::Path) -> PathBuf {
        let p = dir.join("rec");
        std::fs::write(
            &p,
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$0.log\"\nif [ \"$1\" = tee ]; then cat >/dev/null; fi\n\
             if [ -f \"$0.fail\" ]; then f=$(cat \"$0.fail\"); case \"$*\" in \"$f\"*) echo boom >&2; exit 1;; esac; fi\nexit 0\n",
        )
        .expect("write recorder");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn log(rec: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(rec.with_extension("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn host(rec: &std::path::Path, storage: StorageMode) -> CommandHost<FakeAddressOps> {
        host_and_addr(rec, storage, 1).0
    }

    /// A host recording into `rec`, its floating address in a fake (returned too).
    fn host_and_addr(
        rec: &std::path::Path,
        storage: StorageMode,
        arp_count: u32,
    ) -> (CommandHost<FakeAddressOps>, FakeAddressOps) {
        let addr = FakeAddressOps::new();
        let h = CommandHost::with_address_ops(
            cfg(storage),
            CommandOptions {
                prefix: vec![rec.display().to_string()],
                before_nfsd: vec![vec!["rpc.mountd".into()]],
                arp_count,
                ..CommandOptions::default()
            },
            addr.clone(),
        );
        (h, addr)
    }

    const VB: &str = "vB";

    fn ip() -> IpAddr {
        "10.99.0.100".parse().expect("ip")
    }

    fn ip4() -> Ipv4Addr {
        "10.99.0.100".parse().expect("ip")
    }

    #[tokio::test]
    async fn replicated_bring_up_and_teardown_run_these_argument_vectors_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let (h, addr) = host_and_addr(&rec, StorageMode::Replicated, 1);
        let mut seq = Sequencer::new(h, Duration::from_secs(5));
        seq.bring_up(3, &NoGuard).await.expect("up");
        assert!(addr.is_present(VB, ip()), "address up before notify");
        seq.tear_down().await.expect("down");
        assert_eq!(
            addr.calls(),
            [
                AddressCall::Probe(VB.into(), ip4()),
                AddressCall::Add(VB.into(), ip(), 24),
                AddressCall::Announce(VB.into(), ip4()),
                AddressCall::Del(VB.into(), ip()),
            ]
        );
        let expected = [
            "promote --newest",
            "mkdir -p /var/lib/nfs/v4recovery /var/lib/nfs/statd/sm /var/lib/nfs/statd/sm.bak /var/lib/nfs/nfsdcld",
            "tee /proc/fs/nfsd/nfsv4leasetime",
            "tee /proc/fs/nfsd/nfsv4gracetime",
            "rpc.mountd",
            "rpc.nfsd -L 10 -G 15 -S airflow-nfs 8",
            "tee /proc/fs/nfsd/v4_end_grace",
            "exportfs -i -o rw,no_subtree_check,fsid=1 *:/srv/a",
            "exportfs -i -o ro,fsid=2 10.0.0.0/24:/srv/b",
            // The floating address goes through the address ops, not the prefix.
            "sm-notify -f -v 10.99.0.100 -P /var/lib/nfs/statd",
            "exportfs -u *:/srv/a",
            "tee /proc/fs/nfsd/unlock_filesystem",
            "exportfs -u 10.0.0.0/24:/srv/b",
            "tee /proc/fs/nfsd/unlock_filesystem",
            "exportfs -f",
            "rpc.nfsd 0",
        ];
        assert_eq!(log(&rec), expected);
    }

    fn cmd(argv: &[&str], ms: u64) -> HostCommand {
        HostCommand {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            timeout: Duration::from_millis(ms),
        }
    }

    #[tokio::test]
    async fn configured_commands_run_in_their_steps_and_command_line_flags_override_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let mut c = cfg(StorageMode::Shared);
        c.replication = None;
        c.state_dir = "/srv/a/state".into();
        c.commands = nfsha_config::ServerCommands {
            storage_up: vec![cmd(&["mount", "/dev/drbd0", "/srv/a b"], 5000)],
            storage_down: vec![cmd(&["umount", "/srv/a b"], 5000)],
            state_dir_bind: Some("/var/lib/nfs".into()),
            state_dir_bind_timeout: Duration::from_secs(2),
            before_nfsd: vec![cmd(&["rpcbind", "-w"], 5000), cmd(&["rpc.mountd"], 5000)],
            after_nfsd_stop: vec![cmd(&["pkill", "-x", "rpc.mountd"], 5000)],
        };
        let opts = CommandOptions {
            prefix: vec![rec.display().to_string()],
            arp_count: 1,
            ..CommandOptions::default()
        };
        let h = CommandHost::with_address_ops(c.clone(), opts.clone(), FakeAddressOps::new());
        for step in [Step::Storage, Step::Nfsd] {
            h.up(step, 1).await.expect("up");
        }
        for step in [Step::Nfsd, Step::Storage] {
            h.down(step).await.expect("down");
        }
        let l = log(&rec);
        let pos = |x: &str| {
            l.iter()
                .position(|y| y == x)
                .unwrap_or_else(|| panic!("{x} not run: {l:?}"))
        };
        // The argument with a space is one argument (the recorder logs "$*").
        assert_eq!(pos("mount /dev/drbd0 /srv/a b"), 0);
        assert_eq!(pos("mount --bind /srv/a/state /var/lib/nfs"), 1);
        assert!(pos("rpcbind -w") < pos("rpc.mountd"));
        assert!(pos("rpc.mountd") < pos("rpc.nfsd -L 10 -G 15 -S airflow-nfs 8"));
        assert_eq!(pos("pkill -x rpc.mountd"), pos("rpc.nfsd 0") + 1);
        assert!(pos("mountpoint -q /var/lib/nfs") < pos("umount /var/lib/nfs"));
        assert_eq!(l.last().map(String::as_str), Some("umount /srv/a b"));
        // A command-line override replaces that kind of command, the others stay.
        std::fs::remove_file(rec.with_extension("log")).expect("rm log");
        let h = CommandHost::with_address_ops(
            c,
            CommandOptions {
                before_nfsd: vec![vec!["/lab/before-nfsd.sh".into()]],
                ..opts
            },
            FakeAddressOps::new(),
        );
        h.up(Step::Nfsd, 1).await.expect("up");
        let l = log(&rec);
        assert!(l.contains(&"/lab/before-nfsd.sh".to_owned()), "{l:?}");
        assert!(!l.iter().any(|x| x.starts_with("rpcbind")), "{l:?}");
        // An unbound state directory (mountpoint -q fails) is not unmounted.
        std::fs::write(rec.with_extension("fail"), "mountpoint -q").expect("fail marker");
        std::fs::remove_file(rec.with_extension("log")).expect("rm log");
        h.down(Step::Storage).await.expect("idempotent down");
        assert_eq!(log(&rec), ["mountpoint -q /var/lib/nfs", "umount /srv/a b"]);
    }

    #[tokio::test]
    async fn a_command_past_its_own_timeout_is_killed_and_named() {
        let mut c = cfg(StorageMode::Shared);
        c.replication = None;
        c.commands.before_nfsd = vec![cmd(&["sleep", "30"], 200)];
        let h = CommandHost::with_address_ops(
            c,
            CommandOptions {
                proc_nfsd: tempfile::tempdir().expect("tempdir").keep(),
                ..CommandOptions::default()
            },
            FakeAddressOps::new(),
        );
        let t0 = std::time::Instant::now();
        let err = h.up(Step::Nfsd, 1).await.expect_err("timed out");
        assert!(
            matches!(&err, HostError::TimedOut { program, timeout } if program == "sleep" && *timeout == Duration::from_millis(200)),
            "{err:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn a_refused_end_of_grace_is_read_back_and_does_not_fail_the_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        std::fs::write(rec.with_extension("fail"), "tee /proc/fs/nfsd/v4_end_grace")
            .expect("fail marker");
        let h = host(&rec, StorageMode::Replicated);
        h.up(Step::Nfsd, 1).await.expect("nfsd up despite EBUSY");
        let l = log(&rec);
        let w = l
            .iter()
            .position(|x| x == "tee /proc/fs/nfsd/v4_end_grace")
            .expect("end-of-grace write attempted");
        assert_eq!(
            l.get(w + 1).map(String::as_str),
            Some("cat /proc/fs/nfsd/v4_end_grace"),
            "read back right after the refused write: {l:?}"
        );
    }

    #[tokio::test]
    async fn shared_mode_leaves_grace_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let h = host(&rec, StorageMode::Shared);
        h.up(Step::Nfsd, 1).await.expect("nfsd");
        assert!(!log(&rec).iter().any(|l| l.contains("v4_end_grace")));
    }

    #[tokio::test]
    async fn a_failed_gratuitous_arp_removes_the_address_it_added() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let (h, addr) = host_and_addr(&rec, StorageMode::Shared, 3);
        addr.fail(AddressOp::Announce, 1);
        let err = h
            .up(Step::FloatingAddress, 1)
            .await
            .expect_err("announce fails");
        assert!(
            matches!(
                err,
                HostError::Address(NetlinkError::Injected(AddressOp::Announce))
            ),
            "{err:?}"
        );
        assert_eq!(
            addr.calls(),
            [
                AddressCall::Probe(VB.into(), ip4()),
                AddressCall::Add(VB.into(), ip(), 24),
                AddressCall::Announce(VB.into(), ip4()),
                AddressCall::Del(VB.into(), ip()),
            ]
        );
        assert!(!addr.is_present(VB, ip()));
        assert!(log(&rec).is_empty(), "no shell-out for the address");
    }

    #[tokio::test]
    async fn an_answer_to_the_duplicate_address_check_refuses_the_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let (h, addr) = host_and_addr(&rec, StorageMode::Shared, 3);
        addr.in_use_elsewhere(ip4());
        let err = h.up(Step::FloatingAddress, 1).await.expect_err("duplicate");
        assert!(matches!(err, HostError::DuplicateAddress(ref a) if a == "10.99.0.100"));
        assert_eq!(
            addr.calls(),
            [AddressCall::Probe(VB.into(), ip4())],
            "nothing added"
        );
    }

    #[tokio::test]
    async fn failures_of_the_probe_and_the_add_stop_the_step_before_any_announce() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let (h, addr) = host_and_addr(&rec, StorageMode::Shared, 3);
        addr.fail(AddressOp::Probe, 1);
        let err = h.up(Step::FloatingAddress, 1).await.expect_err("probe");
        assert!(matches!(
            err,
            HostError::Address(NetlinkError::Injected(AddressOp::Probe))
        ));
        addr.fail(AddressOp::Add, 1);
        let err = h.up(Step::FloatingAddress, 2).await.expect_err("add");
        assert!(matches!(
            err,
            HostError::Address(NetlinkError::Injected(AddressOp::Add))
        ));
        assert_eq!(
            addr.calls(),
            [
                AddressCall::Probe(VB.into(), ip4()),
                AddressCall::Probe(VB.into(), ip4()),
                AddressCall::Add(VB.into(), ip(), 24),
            ]
        );
        // A failed delete is reported (the sequencer's teardown then reports the step).
        addr.fail(AddressOp::Del, 1);
        let err = h.down(Step::FloatingAddress).await.expect_err("del");
        assert!(matches!(
            err,
            HostError::Address(NetlinkError::Injected(AddressOp::Del))
        ));
    }

    #[tokio::test]
    async fn without_the_check_or_for_ipv6_there_is_no_probe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let addr = FakeAddressOps::new();
        let opts = CommandOptions {
            duplicate_address_check: false,
            arp_count: 1,
            ..CommandOptions::default()
        };
        let h = CommandHost::with_address_ops(cfg(StorageMode::Shared), opts.clone(), addr.clone());
        h.up(Step::FloatingAddress, 1).await.expect("up");
        assert_eq!(
            addr.calls(),
            [
                AddressCall::Add(VB.into(), ip(), 24),
                AddressCall::Announce(VB.into(), ip4()),
            ]
        );
        let mut c = cfg(StorageMode::Shared);
        let v6: IpAddr = "fd00:99::100".parse().expect("ip");
        c.floating_address = Some(FloatingAddress {
            address: v6,
            prefix: 64,
            interface: VB.into(),
        });
        let addr6 = FakeAddressOps::new();
        let h6 = CommandHost::with_address_ops(c, CommandOptions::default(), addr6.clone());
        h6.up(Step::FloatingAddress, 1).await.expect("up v6");
        h6.down(Step::FloatingAddress).await.expect("down v6");
        assert_eq!(
            addr6.calls(),
            [
                AddressCall::Add(VB.into(), v6, 64),
                AddressCall::Del(VB.into(), v6),
            ],
            "IPv6: no ARP at all"
        );
        assert!(log(&rec).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_other_gratuitous_arps_follow_in_the_background_one_per_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let (h, addr) = host_and_addr(&rec, StorageMode::Shared, 3);
        let t0 = tokio::time::Instant::now().into_std();
        h.up(Step::FloatingAddress, 1).await.expect("up");
        // The step returned after the first round; the others are still to come.
        let announces = |a: &FakeAddressOps| {
            a.timed_calls()
                .into_iter()
                .filter(|(_, c)| matches!(c, AddressCall::Announce(..)))
                .map(|(t, _)| t.duration_since(t0))
                .collect::<Vec<_>>()
        };
        assert_eq!(announces(&addr), [Duration::ZERO]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            announces(&addr),
            [
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(2)
            ],
            "arp_count = 3 rounds, one per second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn teardown_stops_the_background_gratuitous_arps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let (h, addr) = host_and_addr(&rec, StorageMode::Shared, 5);
        h.up(Step::FloatingAddress, 1).await.expect("up");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        h.down(Step::FloatingAddress).await.expect("down");
        h.down(Step::FloatingAddress).await.expect("down again");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let announces = addr
            .calls()
            .into_iter()
            .filter(|c| matches!(c, AddressCall::Announce(..)))
            .count();
        assert_eq!(
            announces, 2,
            "the one in the step and the one at 1 s, none after"
        );
        assert!(!addr.is_present(VB, ip()));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error_naming_it() {
        let h = CommandHost::new(
            cfg(StorageMode::Shared),
            CommandOptions {
                prefix: vec!["/nonexistent/nfsha-test-prefix".into()],
                ..CommandOptions::default()
            },
        );
        let err = h.down(Step::Nfsd).await.expect_err("missing");
        assert!(
            matches!(err, HostError::Spawn { ref program, .. } if program == "/nonexistent/nfsha-test-prefix")
        );
    }
}
