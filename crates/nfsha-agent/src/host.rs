//! The agent's seam to the machine: everything that touches the kernel, a mount, a
//! server or a child process goes through [`Host`].
//!
//! The real implementation ([`crate::linux::LinuxHost`]) runs every filesystem
//! operation on an NFS path in a killable worker process and every command under a
//! deadline; the fake ([`crate::testing::FakeHost`]) scripts outcomes for unit tests.
//! No method may block past the deadline it is given: that is the contract that keeps
//! one hung mount from stalling the others.

use nfsha_core::ProbeOutcome;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One filesystem mounted on the host, as the mount table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// Filesystem type (`nfs`, `nfs4`, `autofs`, …).
    pub fstype: String,
    /// The server address it was mounted from (`addr=`), for NFS.
    pub server: Option<String>,
    /// The export path, for NFS.
    pub export: Option<String>,
    /// The superblock's device number (`major:minor` in mountinfo): how a detached
    /// mount is recognised in `/proc/fs/nfsfs/volumes` until the kernel frees it.
    pub dev: Option<(u32, u32)>,
    /// The mount's `addr=` was an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`);
    /// `server` then holds the plain IPv4 form. See [`crate::recovery`] for why.
    pub addr_mapped: bool,
}

impl Mounted {
    /// True for NFS (v2/3 `nfs` and v4 `nfs4`).
    pub fn is_nfs(&self) -> bool {
        self.fstype == "nfs" || self.fstype == "nfs4"
    }
}

/// The topmost mount at `mountpoint` in a mount table (the last entry wins).
pub fn topmost<'a>(table: &'a [Mounted], mountpoint: &Path) -> Option<&'a Mounted> {
    table.iter().rev().find(|m| m.mountpoint == mountpoint)
}

/// How an unmount ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Umounted {
    /// `umount2(MNT_FORCE)` removed it: nothing held it.
    Gone,
    /// `MNT_FORCE` failed busy (open files, a cwd, a call in flight) and `MNT_DETACH`
    /// took it off the mountpoint; the kernel frees it when the last user goes.
    Detached,
}

/// What [`Host::replace`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// For each old mount taken off the mountpoint: `Gone` or `Detached`.
    pub old: Vec<Umounted>,
}

/// Why [`Host::replace`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceError {
    /// An old mount could not be taken off; the staged mount was not moved.
    #[error("Could not take the old mount off")]
    Umount(#[source] HostError),
    /// The old mounts are off but `MS_MOVE` failed: the mountpoint shows the bare
    /// directory and the new mount is still at its staging point.
    #[error("Could not move the new mount in")]
    Move {
        /// The old mounts that were taken off first.
        old: Vec<Umounted>,
        /// Why the move failed.
        #[source]
        source: HostError,
    },
}

/// One kernel NFS client (`/proc/fs/nfsfs/servers`): mounts of the same server
/// address, port and version share it and its TCP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsClient {
    /// `v3` or `v4`.
    pub version: String,
    /// Server address as the kernel holds it (an IPv4-mapped IPv6 address stays IPv6).
    pub addr: std::net::IpAddr,
    /// Server port.
    pub port: u16,
}

/// What an RPC probe of one server found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProbe {
    /// The server as configured.
    pub host: String,
    /// The addresses the name resolved to (for comparing with a mount's `addr=`).
    pub addresses: Vec<String>,
    /// Answered every RPC check within the deadline.
    pub reachable: bool,
    /// Round-trip time of the NULL call, when reachable.
    pub rtt: Option<Duration>,
    /// Why it is not reachable.
    pub error: Option<String>,
}

/// A failed host operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The operation failed with an errno.
    #[error("{op} failed with {name}", name = nfsha_core::state::errno_name(*errno))]
    Errno {
        /// What was attempted.
        op: &'static str,
        /// The errno.
        errno: i32,
    },
    /// The operation did not finish before its deadline (its process was killed).
    #[error("{op} did not finish within {deadline:?}")]
    Timeout {
        /// What was attempted.
        op: &'static str,
        /// The deadline.
        deadline: Duration,
    },
    /// A command exited unsuccessfully.
    #[error("{op} exited with status {status}: {stderr}")]
    Command {
        /// What was attempted.
        op: &'static str,
        /// Exit status (or -signal).
        status: i32,
        /// The last line of its stderr.
        stderr: String,
    },
    /// Anything else (spawn failures, protocol errors).
    #[error("{op}: {message}")]
    Other {
        /// What was attempted.
        op: &'static str,
        /// Why.
        message: String,
    },
}

impl HostError {
    /// The errno behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            HostError::Errno { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// How to mount one NFS export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// Server name or address.
    pub server: String,
    /// Export path.
    pub export: String,
    /// Mountpoint.
    pub mountpoint: PathBuf,
    /// `vers=` value.
    pub version: String,
    /// Other options.
    pub options: Vec<String>,
}

/// Everything the agent does to the machine.
pub trait Host: Send + Sync + 'static {
    /// Read the mount table. Never touches an NFS path (it is /proc/self/mountinfo).
    fn mount_table(&self) -> Result<Vec<Mounted>, HostError>;

    /// Probe a mountpoint (statfs + open + readdir) in a worker, bounded by `deadline`.
    fn probe(
        &self,
        mountpoint: &Path,
        deadline: Duration,
    ) -> impl Future<Output = ProbeOutcome> + Send;

    /// In one worker request, bounded by `deadline`: with `force`,
    /// `umount2(mountpoint, MNT_FORCE)` and, when that fails and `detach` is set,
    /// `umount2(mountpoint, MNT_DETACH)` (so that no new call can enter the mount
    /// between the two); without `force`, `MNT_DETACH` only (then the outcome is
    /// `Detached`). Takes the topmost mount off: on a hold's handle, one layer.
    fn umount(
        &self,
        mountpoint: &Path,
        force: bool,
        detach: bool,
        deadline: Duration,
    ) -> impl Future<Output = Result<Umounted, HostError>> + Send;

    /// Whether the NFS superblock with this device number still exists (a detached
    /// mount still in use). Reads `/proc/fs/nfsfs/volumes`; never touches an NFS path.
    fn nfs_superblock_alive(&self, dev: (u32, u32)) -> Result<bool, HostError>;

    /// The kernel's NFS clients (`/proc/fs/nfsfs/servers`); never touches an NFS path.
    fn nfs_clients(&self) -> Result<Vec<NfsClient>, HostError>;

    /// A fresh empty directory in the private staging area (set up on first use).
    fn stage_dir(&self) -> Result<PathBuf, HostError>;

    /// Remove an empty stage directory (nothing mounted on it any more).
    fn remove_stage_dir(&self, dir: &Path) -> Result<(), HostError>;

    /// In one worker request: take `old` mounts off `target` (with `force`:
    /// `MNT_FORCE`, else `MNT_DETACH`, each; without: `MNT_DETACH`), then `MS_MOVE` the
    /// mount at `staged` onto `target`.
    fn replace(
        &self,
        staged: &Path,
        target: &Path,
        old: u32,
        force: bool,
        deadline: Duration,
    ) -> impl Future<Output = Result<Replaced, ReplaceError>> + Send;

    /// In a worker, bounded by `deadline`: bind the topmost mount at `mountpoint` onto
    /// `at` (an empty stage directory), so that its superblock can still be named after
    /// it is detached from `mountpoint` — `MNT_FORCE` on `at` (see [`Host::umount`])
    /// aborts the calls in flight in that superblock, also those made through the
    /// detached original mount — and stack it there `layers` times in all (one umount
    /// of `at` takes one layer off). Returns the layers made.
    fn hold(
        &self,
        mountpoint: &Path,
        at: &Path,
        layers: u32,
        deadline: Duration,
    ) -> impl Future<Output = Result<u32, HostError>> + Send;

    /// Run mount.nfs for `req`, killing its process group at `deadline`.
    fn mount_nfs(
        &self,
        req: &MountRequest,
        deadline: Duration,
    ) -> impl Future<Output = Result<(), HostError>> + Send;

    /// The write probe of the mount at `mountpoint` in a worker (create, write, fsync,
    /// unlink a dot-file in its root), bounded by `deadline` (`Hung` past it).
    fn write_probe(
        &self,
        mountpoint: &Path,
        deadline: Duration,
    ) -> impl Future<Output = ProbeOutcome> + Send;

    /// Access the mountpoint from a worker so autofs mounts it again.
    fn trigger_automount(
        &self,
        mountpoint: &Path,
        deadline: Duration,
    ) -> impl Future<Output = Result<(), HostError>> + Send;

    /// Probe one server at the RPC level.
    fn probe_server(
        &self,
        host: &str,
        rpc_version: u32,
        timeout: Duration,
    ) -> impl Future<Output = ServerProbe> + Send;

    /// A cheap liveness check of one server: one NFS NULL call (no portmapper, no
    /// MOUNT), bounded by `timeout`; the error text when it fails. Used at the probe
    /// cadence while the server does not answer [`Host::probe_server`], whose own
    /// cadence then backs off.
    fn ping_server(
        &self,
        host: &str,
        rpc_version: u32,
        timeout: Duration,
    ) -> impl Future<Output = Result<Duration, String>> + Send;

    /// Run a hook (argument vector) with extra environment, bounded by `deadline`.
    fn run_hook(
        &self,
        argv: &[String],
        env: &[(String, String)],
        deadline: Duration,
    ) -> impl Future<Output = Result<(), HostError>> + Send;

    /// Worker processes that were killed but have not exited yet.
    fn stuck_workers(&self) -> usize;

    /// Worker processes alive (idle or busy).
    fn live_workers(&self) -> usize;
}
