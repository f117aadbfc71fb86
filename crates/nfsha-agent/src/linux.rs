//! The real [`Host`]: kernel mount table, worker processes for every filesystem
//! operation on an NFS path, `mount.nfs` and hooks under deadlines, RPC probes.
//!
//! Failure modes: a worker that misses its deadline is SIGKILLed and counted as
//! stuck until the kernel lets it exit; `mount.nfs` past its deadline has its whole
//! process group killed; name resolution is bounded by the RPC timeout.

use crate::host::{
    Host, HostError, MountRequest, Mounted, NfsClient, ReplaceError, Replaced, ServerProbe,
    Umounted,
};
use nfsha_core::ProbeOutcome;
use nfsha_sys::command::{mount_nfs_argv, run_command};
use nfsha_sys::worker::{PoolConfig, WorkerError, WorkerPool, WorkerRequest, WorkerResponse};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// The production host.
#[derive(Debug, Clone)]
pub struct LinuxHost {
    pool: WorkerPool,
    mountinfo: std::path::PathBuf,
    nfsfs_volumes: std::path::PathBuf,
    nfsfs_servers: std::path::PathBuf,
    staging_root: std::path::PathBuf,
    staging_ready: std::sync::Arc<std::sync::Mutex<bool>>,
    portmapper_port: u16,
}

impl LinuxHost {
    /// Workers are this binary re-executed as `nfsha __worker`.
    pub fn new() -> Self {
        LinuxHost::with_pool(WorkerPool::new(PoolConfig::self_exec(32)))
    }

    /// A host using a given worker pool (tests spawn a different worker program).
    pub fn with_pool(pool: WorkerPool) -> Self {
        LinuxHost {
            pool,
            mountinfo: "/proc/self/mountinfo".into(),
            nfsfs_volumes: "/proc/fs/nfsfs/volumes".into(),
            nfsfs_servers: "/proc/fs/nfsfs/servers".into(),
            staging_root: DEFAULT_STAGING_ROOT.into(),
            staging_ready: std::sync::Arc::default(),
            portmapper_port: 111,
        }
    }
}

/// Where new mounts are staged (a private tmpfs the agent mounts there).
pub const DEFAULT_STAGING_ROOT: &str = "/run/nfsha/stage";

impl LinuxHost {
    /// Stage new mounts under `root` instead of [`DEFAULT_STAGING_ROOT`].
    pub fn with_staging_root(mut self, root: impl Into<std::path::PathBuf>) -> Self {
        self.staging_root = root.into();
        self
    }

    /// Detach mounts left in the staging area by an agent that died between staging a
    /// mount and moving it in (through workers: they may be NFS mounts of a dead
    /// server). Returns how many were detached.
    pub async fn clean_staging_area(&self, deadline: Duration) -> usize {
        let Ok(table) = self.mount_table() else {
            return 0;
        };
        let mut n = 0;
        for m in table.iter().rev() {
            if m.mountpoint.starts_with(&self.staging_root) && m.mountpoint != self.staging_root {
                if self
                    .umount(&m.mountpoint, true, true, deadline)
                    .await
                    .is_ok()
                {
                    n += 1;
                }
                let _ = nfsha_sys::staging::remove_stage_dir(&m.mountpoint);
            }
        }
        n
    }

    /// Create a missing mountpoint directory, but only when neither it nor an ancestor
    /// is an NFS mount: looking at it would then touch a possibly dead server from
    /// this thread.
    fn ensure_mountpoint(&self, mountpoint: &Path) -> Result<(), HostError> {
        let table = self.mount_table()?;
        let under_nfs = table
            .iter()
            .any(|m| m.is_nfs() && mountpoint.starts_with(&m.mountpoint));
        if under_nfs {
            return Ok(());
        }
        if std::fs::symlink_metadata(mountpoint).is_err() {
            std::fs::create_dir_all(mountpoint).map_err(|e| HostError::Other {
                op: "create mountpoint",
                message: format!("{}: {e}", mountpoint.display()),
            })?;
        }
        Ok(())
    }
}

impl Default for LinuxHost {
    fn default() -> Self {
        LinuxHost::new()
    }
}

fn worker_error(op: &'static str, e: WorkerError, deadline: Duration) -> HostError {
    match e {
        WorkerError::Timeout { .. } | WorkerError::Stuck => HostError::Timeout { op, deadline },
        other => HostError::Other {
            op,
            message: other.to_string(),
        },
    }
}

async fn resolve_all(host: &str, timeout: Duration) -> Vec<String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return vec![ip.to_string()];
    }
    match tokio::time::timeout(timeout, tokio::net::lookup_host((bare, 0))).await {
        Ok(Ok(addrs)) => {
            let mut v: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            v.dedup();
            v
        }
        _ => Vec::new(),
    }
}

/// `addr=` of a mount as nfsha compares it: an IPv4-mapped IPv6 address becomes its
/// IPv4 form (and the flag says so).
fn unmap_server(server: Option<String>) -> (Option<String>, bool) {
    match server
        .as_deref()
        .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
    {
        Some(s) => match s
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .and_then(|a| a.to_ipv4_mapped())
        {
            Some(v4) => (Some(v4.to_string()), true),
            None => (server, false),
        },
        None => (None, false),
    }
}

/// Per old mount in a worker's umount steps: `MNT_FORCE` alone = gone, a following
/// `MNT_DETACH` = detached.
fn umount_outcomes(steps: &[nfsha_sys::worker::UmountStep]) -> Vec<Umounted> {
    steps
        .iter()
        .filter_map(|s| match (s.flags.as_str(), s.errno) {
            ("MNT_FORCE", None) => Some(Umounted::Gone),
            // A failed force is always followed by a detach, which counts.
            ("MNT_FORCE", Some(_)) => None,
            _ => Some(Umounted::Detached),
        })
        .collect()
}

/// `/proc/fs/nfsfs/servers`: `NV SERVER PORT USE HOSTNAME`, SERVER and PORT in hex
/// (SERVER: 8 digits for IPv4, 32 for IPv6, in address order).
fn parse_nfsfs_servers(text: &str) -> Vec<NfsClient> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let addr = match f[1].len() {
            8 => u32::from_str_radix(f[1], 16)
                .ok()
                .map(|v| std::net::IpAddr::V4(v.into())),
            32 => u128::from_str_radix(f[1], 16)
                .ok()
                .map(|v| std::net::IpAddr::V6(v.into())),
            _ => None,
        };
        let (Some(addr), Ok(port)) = (addr, u16::from_str_radix(f[2], 16)) else {
            continue;
        };
        out.push(NfsClient {
            version: f[0].to_string(),
            addr,
            port,
        });
    }
    out
}

/// Whether `/proc/fs/nfsfs/volumes` text lists a superblock with device `dev`.
/// Lines: `NV SERVER PORT DEV FSID FSC`, DEV as `major:minor` in decimal.
fn volumes_list_dev(text: &str, dev: (u32, u32)) -> bool {
    let want = format!("{}:{}", dev.0, dev.1);
    text.lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(3) == Some(want.as_str()))
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

impl Host for LinuxHost {
    fn mount_table(&self) -> Result<Vec<Mounted>, HostError> {
        let entries = nfsha_sys::mountinfo::read_mountinfo_from(&self.mountinfo).map_err(|e| {
            HostError::Other {
                op: "read mountinfo",
                message: e.to_string(),
            }
        })?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let (server, addr_mapped) = unmap_server(e.nfs_server());
                Mounted {
                    server,
                    addr_mapped,
                    export: e.nfs_export(),
                    mountpoint: e.mountpoint,
                    fstype: e.fstype,
                    dev: Some(e.major_minor),
                }
            })
            .collect())
    }

    async fn probe(&self, mountpoint: &Path, deadline: Duration) -> ProbeOutcome {
        self.pool.probe(mountpoint, deadline).await
    }

    async fn write_probe(&self, mountpoint: &Path, deadline: Duration) -> ProbeOutcome {
        self.pool.write_probe(mountpoint, deadline).await
    }

    async fn umount(
        &self,
        mountpoint: &Path,
        force: bool,
        detach: bool,
        deadline: Duration,
    ) -> Result<Umounted, HostError> {
        let req = WorkerRequest::Umount {
            path: mountpoint.to_path_buf(),
            force,
            detach,
        };
        match self.pool.request(req, deadline).await {
            Ok(WorkerResponse::Umount { errno: None, steps }) => {
                Ok(umount_outcomes(&steps).pop().unwrap_or(Umounted::Gone))
            }
            Ok(WorkerResponse::Umount {
                errno: Some(errno), ..
            }) => Err(HostError::Errno {
                op: "umount",
                errno,
            }),
            Ok(other) => Err(HostError::Other {
                op: "umount",
                message: format!("unexpected worker answer {other:?}"),
            }),
            Err(e) => Err(worker_error("umount", e, deadline)),
        }
    }

    fn nfs_superblock_alive(&self, dev: (u32, u32)) -> Result<bool, HostError> {
        match std::fs::read_to_string(&self.nfsfs_volumes) {
            Ok(text) => Ok(volumes_list_dev(&text, dev)),
            // No NFS client module loaded: no NFS superblock exists.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(HostError::Other {
                op: "read /proc/fs/nfsfs/volumes",
                message: e.to_string(),
            }),
        }
    }

    fn nfs_clients(&self) -> Result<Vec<NfsClient>, HostError> {
        match std::fs::read_to_string(&self.nfsfs_servers) {
            Ok(text) => Ok(parse_nfsfs_servers(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(HostError::Other {
                op: "read /proc/fs/nfsfs/servers",
                message: e.to_string(),
            }),
        }
    }

    fn stage_dir(&self) -> Result<std::path::PathBuf, HostError> {
        let staging = |e: nfsha_sys::staging::StagingError| HostError::Other {
            op: "staging area",
            message: nfsha_core::error_chain(&e),
        };
        {
            let mut ready = self.staging_ready.lock().unwrap_or_else(|p| p.into_inner());
            if !*ready {
                nfsha_sys::staging::ensure_private_tmpfs(&self.staging_root, &self.mountinfo)
                    .map_err(staging)?;
                *ready = true;
            }
        }
        nfsha_sys::staging::new_stage_dir(&self.staging_root).map_err(staging)
    }

    fn remove_stage_dir(&self, dir: &Path) -> Result<(), HostError> {
        nfsha_sys::staging::remove_stage_dir(dir).map_err(|e| HostError::Other {
            op: "staging area",
            message: nfsha_core::error_chain(&e),
        })
    }

    async fn replace(
        &self,
        staged: &Path,
        target: &Path,
        old: u32,
        force: bool,
        deadline: Duration,
    ) -> Result<Replaced, ReplaceError> {
        if old == 0 {
            self.ensure_mountpoint(target)
                .map_err(|source| ReplaceError::Move {
                    old: Vec::new(),
                    source,
                })?;
        }
        let req = WorkerRequest::Replace {
            staged: staged.to_path_buf(),
            target: target.to_path_buf(),
            old,
            force,
        };
        match self.pool.request(req, deadline).await {
            Ok(WorkerResponse::Replace {
                steps,
                umount_errno,
                move_errno,
            }) => {
                if let Some(errno) = umount_errno {
                    return Err(ReplaceError::Umount(HostError::Errno {
                        op: "umount",
                        errno,
                    }));
                }
                if let Some(errno) = move_errno {
                    return Err(ReplaceError::Move {
                        old: umount_outcomes(&steps),
                        source: HostError::Errno {
                            op: "mount(MS_MOVE)",
                            errno,
                        },
                    });
                }
                Ok(Replaced {
                    old: umount_outcomes(&steps),
                })
            }
            Ok(other) => Err(ReplaceError::Umount(HostError::Other {
                op: "replace",
                message: format!("unexpected worker answer {other:?}"),
            })),
            Err(e) => Err(ReplaceError::Umount(worker_error("replace", e, deadline))),
        }
    }

    async fn hold(
        &self,
        mountpoint: &Path,
        at: &Path,
        layers: u32,
        deadline: Duration,
    ) -> Result<u32, HostError> {
        let req = WorkerRequest::Hold {
            path: mountpoint.to_path_buf(),
            at: at.to_path_buf(),
            layers,
        };
        match self.pool.request(req, deadline).await {
            Ok(WorkerResponse::Hold {
                errno: None,
                layers,
            }) => Ok(layers),
            Ok(WorkerResponse::Hold {
                errno: Some(errno), ..
            }) => Err(HostError::Errno {
                op: "mount(MS_BIND)",
                errno,
            }),
            Ok(other) => Err(HostError::Other {
                op: "hold",
                message: format!("unexpected worker answer {other:?}"),
            }),
            Err(e) => Err(worker_error("hold", e, deadline)),
        }
    }

    async fn mount_nfs(&self, req: &MountRequest, deadline: Duration) -> Result<(), HostError> {
        self.ensure_mountpoint(&req.mountpoint)?;
        let argv = mount_nfs_argv(
            &req.server,
            &req.export,
            &req.mountpoint,
            &req.version,
            &req.options,
        );
        let out = run_command(&argv, deadline, &[])
            .await
            .map_err(|e| match e {
                nfsha_sys::command::CommandError::Timeout { .. } => HostError::Timeout {
                    op: "mount.nfs",
                    deadline,
                },
                other => HostError::Other {
                    op: "mount.nfs",
                    message: other.to_string(),
                },
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(HostError::Command {
                op: "mount.nfs",
                status: out.status.code().unwrap_or(-1),
                stderr: last_line(&out.stderr),
            })
        }
    }

    async fn trigger_automount(
        &self,
        mountpoint: &Path,
        deadline: Duration,
    ) -> Result<(), HostError> {
        let req = WorkerRequest::Trigger {
            path: mountpoint.to_path_buf(),
        };
        match self.pool.request(req, deadline).await {
            Ok(WorkerResponse::Trigger { errno: None, .. }) => Ok(()),
            Ok(WorkerResponse::Trigger {
                errno: Some(errno), ..
            }) => Err(HostError::Errno {
                op: "trigger",
                errno,
            }),
            Ok(other) => Err(HostError::Other {
                op: "trigger",
                message: format!("unexpected worker answer {other:?}"),
            }),
            Err(e) => Err(worker_error("trigger", e, deadline)),
        }
    }

    async fn probe_server(&self, host: &str, rpc_version: u32, timeout: Duration) -> ServerProbe {
        let mut target = nfsha_rpc::ProbeTarget::new(host, rpc_version);
        target.portmapper_port = self.portmapper_port;
        let (p, addresses) = tokio::join!(
            nfsha_rpc::probe_server(&target, timeout),
            resolve_all(host, timeout)
        );
        ServerProbe {
            host: host.to_string(),
            addresses,
            reachable: p.reachable,
            rtt: p.rtt,
            error: p.error,
        }
    }

    async fn ping_server(
        &self,
        host: &str,
        rpc_version: u32,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let target = nfsha_rpc::ProbeTarget::new(host, rpc_version);
        nfsha_rpc::ping(&target, timeout)
            .await
            .map_err(|e| nfsha_rpc::error_chain(&e))
    }

    async fn run_hook(
        &self,
        argv: &[String],
        env: &[(String, String)],
        deadline: Duration,
    ) -> Result<(), HostError> {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let env: Vec<(OsString, OsString)> = env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        let out = run_command(&argv, deadline, &env)
            .await
            .map_err(|e| HostError::Other {
                op: "hook",
                message: e.to_string(),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(HostError::Command {
                op: "hook",
                status: out.status.code().unwrap_or(-1),
                stderr: last_line(&out.stderr),
            })
        }
    }

    fn stuck_workers(&self) -> usize {
        self.pool.stuck_workers()
    }

    fn live_workers(&self) -> usize {
        self.pool.live_workers()
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_nfsfs_servers, unmap_server, volumes_list_dev};

    #[test]
    fn nfs_clients_parse_ipv4_and_mapped_entries() {
        // As printed by Debian's 6.1 kernel in the lab after a mount from [::ffff:VIP].
        let text = "NV SERVER   PORT USE HOSTNAME\n\
                    v4 0a630064  801   1 10.99.0.100\n\
                    v4 00000000000000000000ffff0a630064  801   1 ::ffff:10.99.0.100\n";
        let c = parse_nfsfs_servers(text);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].version, "v4");
        assert_eq!(c[0].addr.to_string(), "10.99.0.100");
        assert_eq!(c[0].port, 2049);
        assert_eq!(c[1].addr.to_string(), "::ffff:10.99.0.100");
        assert!(parse_nfsfs_servers("NV SERVER PORT USE HOSTNAME\n").is_empty());
    }

    #[test]
    fn mapped_mount_addresses_compare_as_ipv4() {
        assert_eq!(
            unmap_server(Some("::ffff:10.99.0.100".into())),
            (Some("10.99.0.100".into()), true)
        );
        assert_eq!(
            unmap_server(Some("10.99.0.100".into())),
            (Some("10.99.0.100".into()), false)
        );
        assert_eq!(
            unmap_server(Some("fd00::1".into())),
            (Some("fd00::1".into()), false)
        );
        assert_eq!(unmap_server(None), (None, false));
    }

    #[test]
    fn volumes_are_matched_by_device_number() {
        // As printed by Debian's 6.1 kernel in the lab.
        let text = "NV SERVER   PORT DEV          FSID                              FSC\n\
                    v4 0a630064  801 0:47         1:0                               no \n\
                    v4 0a630064  801 0:48         65:0                              no \n";
        assert!(volumes_list_dev(text, (0, 47)));
        assert!(volumes_list_dev(text, (0, 48)));
        assert!(!volumes_list_dev(text, (0, 4)));
        assert!(
            !volumes_list_dev(text, (1, 0)),
            "the FSID column is not a device"
        );
        assert!(!volumes_list_dev(
            "NV SERVER   PORT DEV FSID FSC\n",
            (0, 47)
        ));
    }
}
