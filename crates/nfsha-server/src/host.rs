//! The seam between the controller and the machine it runs on: every host action
//! (storage, nfsd, exports, floating address, NSM notify, hooks) goes through
//! [`ServerHost`].
//!
//! Role: name the bring-up steps ([`Step`]) and define what "up" and "down" mean for
//! each. Failure modes: a host action fails ([`HostError`]: a command could not be
//! spawned, exited non-zero, or a file could not be written). Timeouts are not the
//! host's business: the [`crate::sequencer`] bounds every call, and dropping a host
//! future must stop the work (the real host kills its child on drop).
//!
//! Shipping ([`ServerHost::ship`], replicated mode) is not a step: the leader runs it
//! periodically per standby while serving; a failure is reported, never fatal. With
//! the btrfs engine ([`ServerHost::btrfs`]) the leader runs the engine's own loop.
//!
//! Every `down` must be idempotent: tearing down a step that is not up succeeds. The
//! controller relies on that to clean up after a crash and to fence without knowing
//! exactly how far a bring-up got.

use std::fmt;
use std::future::Future;

/// One step of the ordered bring-up. Bring-up runs them in [`Step::BRING_UP`] order,
/// teardown in [`Step::TEAR_DOWN`] order (the reverse, floating address first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Storage and the NFS state directory (mount/promote, create statd/v4recovery dirs).
    Storage,
    /// nfsd with the shared scope, lease and grace times.
    Nfsd,
    /// Exports, each with its pinned `fsid`.
    Exports,
    /// The floating address (duplicate-address check, add, gratuitous ARP).
    FloatingAddress,
    /// NSM reboot notification sent from the floating address (`sm-notify -f -v`).
    Notify,
}

impl Step {
    /// Bring-up order.
    pub const BRING_UP: [Step; 5] = [
        Step::Storage,
        Step::Nfsd,
        Step::Exports,
        Step::FloatingAddress,
        Step::Notify,
    ];
    /// Teardown order: the reverse of bring-up, so the floating address goes first and
    /// no client can reach a half-stopped server. [`Step::Notify`] has nothing to undo.
    pub const TEAR_DOWN: [Step; 4] = [
        Step::FloatingAddress,
        Step::Exports,
        Step::Nfsd,
        Step::Storage,
    ];

    /// Whether the step has a teardown action.
    pub fn has_teardown(self) -> bool {
        self != Step::Notify
    }

    /// Stable lower-case name (logs, member records, events).
    pub fn name(self) -> &'static str {
        match self {
            Step::Storage => "storage",
            Step::Nfsd => "nfsd",
            Step::Exports => "exports",
            Step::FloatingAddress => "floating-address",
            Step::Notify => "notify",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The role a node takes, passed to role-change hooks as `NFSHA_ROLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serving leader.
    Primary,
    /// Not serving.
    Standby,
}

impl Role {
    /// `primary` or `standby`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

/// A failed host action.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The program could not be started.
    #[error("Cannot run {program}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{program} exited with {status}: {stderr}")]
    Failed {
        /// argv\[0\] (after any prefix).
        program: String,
        /// Exit status as printed by std.
        status: String,
        /// Exit code, if it exited (not killed by a signal).
        code: Option<i32>,
        /// Last part of its stderr.
        stderr: String,
    },
    /// A configured command (`[server.commands]`) overran its own timeout; its process
    /// group was killed.
    #[error("{program} did not finish within {timeout:?} (its process group was killed)")]
    TimedOut {
        /// argv\[0\].
        program: String,
        /// Its timeout.
        timeout: std::time::Duration,
    },
    /// A file (usually under /proc/fs/nfsd) could not be written.
    #[error("Cannot write {path}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A floating-address operation failed (netlink or ARP; the source names the
    /// interface, the address and the errno).
    #[error("Floating address operation failed")]
    Address(#[from] crate::netlink::NetlinkError),
    /// Another host already answers for the floating address.
    #[error("Address {0} is already in use on the network")]
    DuplicateAddress(String),
    /// Shipping was asked for but no `[server.replication] ship_command` is configured.
    #[error("No [server.replication] ship_command is configured")]
    NoShipCommand,
    /// A failure injected by a test double.
    #[error("Injected failure at {0}")]
    Injected(String),
    /// A btrfs engine action failed.
    #[error("btrfs replication failed")]
    Btrfs(#[from] crate::btrfs::BtrfsError),
}

/// The btrfs engine of a host (`engine = "btrfs"`) and the promotion its storage step
/// did last, for the leader's shipping loop ([`crate::btrfs::shipper`]).
pub type BtrfsSide = (
    std::sync::Arc<crate::btrfs::Engine<crate::btrfs::RealBtrfs>>,
    Option<crate::btrfs::Promotion>,
);

/// Everything the controller does to the machine. Implementations: [`crate::CommandHost`]
/// (real, argument-vector shell-outs) and [`crate::FakeHost`] (recording, fails on demand).
///
/// `epoch` is the fencing token the step is performed under (for logs and for hosts that
/// want to stamp it somewhere); a host never decides leadership itself.
pub trait ServerHost: Send + Sync {
    /// Perform `step`'s bring-up action.
    fn up(&self, step: Step, epoch: u64) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Undo `step`. Must succeed when the step is already down.
    fn down(&self, step: Step) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Ship one snapshot of the served data to the standby `target` (replicated mode),
    /// under the leader's `epoch`. Called by the leader's shipper (one call at a time,
    /// bounded by the step timeout; dropping the future must stop the work).
    fn ship(&self, target: &str, epoch: u64) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Final data sync to the switchover `target`, after the service is down and before
    /// the key is released (replicated mode). Default: one more [`ServerHost::ship`].
    fn final_sync(
        &self,
        target: &str,
        epoch: u64,
    ) -> impl Future<Output = Result<(), HostError>> + Send {
        self.ship(target, epoch)
    }
    /// Run the role-change hooks. Failures are reported, never fatal to the controller.
    fn role_changed(&self, role: Role) -> impl Future<Output = Result<(), HostError>> + Send {
        let _ = role;
        async { Ok(()) }
    }
    /// The btrfs engine, when replication runs on it: the leader then runs
    /// [`crate::btrfs::shipper::btrfs_ship_loop`] instead of calling [`ServerHost::ship`]
    /// periodically. Default: none.
    fn btrfs(&self) -> Option<BtrfsSide> {
        None
    }
}

impl<H: ServerHost> ServerHost for std::sync::Arc<H> {
    fn up(&self, step: Step, epoch: u64) -> impl Future<Output = Result<(), HostError>> + Send {
        (**self).up(step, epoch)
    }
    fn down(&self, step: Step) -> impl Future<Output = Result<(), HostError>> + Send {
        (**self).down(step)
    }
    fn ship(&self, target: &str, epoch: u64) -> impl Future<Output = Result<(), HostError>> + Send {
        (**self).ship(target, epoch)
    }
    fn final_sync(
        &self,
        target: &str,
        epoch: u64,
    ) -> impl Future<Output = Result<(), HostError>> + Send {
        (**self).final_sync(target, epoch)
    }
    fn role_changed(&self, role: Role) -> impl Future<Output = Result<(), HostError>> + Send {
        (**self).role_changed(role)
    }
    fn btrfs(&self) -> Option<BtrfsSide> {
        (**self).btrfs()
    }
}
