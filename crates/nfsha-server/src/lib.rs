//! nfsha-server: the etcd-leased active/passive NFS server controller.
//!
//! Role: on each NFS server node, hold (or wait for) the cluster's leader lease in etcd
//! and, only while this node can prove it leads, bring the NFS service up in order
//! (storage → nfsd → exports → floating address → NSM notify), tearing it down in
//! reverse (floating address first) on lease loss, switchover or shutdown.
//!
//! Modules: [`host`] (the host seam and its steps), [`command`] (real host),
//! [`fake`] (recording host), [`netlink`] (floating address: rtnetlink + ARP),
//! [`sequencer`] (ordered bring-up with rollback),
//! [`coordinator`] (the store seam and key layout), [`etcd`] (etcd implementation),
//! [`controller`] (the loop and self-fencing), [`guard`] (dead-man switch process),
//! [`status`] (HTTP API), [`watchdog`], [`replication`] (snapshot shipping and the
//! promotion gate on replication lag), [`btrfs`] (the btrfs send/receive engine),
//! [`follow`] (client-side leader following for the agent), [`notify`] (systemd's
//! notify protocol).
//!
//! Failure modes are documented per module; the global rule is that a node that cannot
//! prove it is leader never serves, and every serving-state change is guarded by the
//! leader key's create revision (the epoch).

pub mod btrfs;
pub mod command;
pub mod controller;
pub mod coordinator;
pub mod etcd;
pub mod fake;
pub mod follow;
pub mod guard;
pub mod host;
pub mod netlink;
pub mod notify;
pub mod replication;
pub mod sequencer;
pub mod status;
pub mod watchdog;

pub use command::{CommandHost, CommandOptions};
pub use controller::{Controller, LeadExit, Settings};
pub use coordinator::{
    Acquire, ClusterStatus, CoordError, Coordinator, Keys, LagOverride, LeaderInfo, LeaderRecord,
    MemberInfo, MemberState, ReplicaRecord, ReplicaView, ServedRecord, SwitchoverRequest,
};
pub use etcd::{EtcdCoordinator, EtcdOptions};
pub use fake::{Direction, FakeHost, HostCall, ServingInterval, ServingLog};
pub use follow::{EpochFilter, current_leader, watch_leader, watch_leader_with};
pub use guard::{FenceGuard, GuardExit, run_guard, run_guard_on_stdin};
pub use host::{HostError, Role, ServerHost, Step};
pub use netlink::{
    AddressCall, AddressOp, AddressOps, FakeAddressOps, NetlinkAddress, NetlinkError,
};
pub use notify::{Notifier, NotifyError};
pub use replication::{ReplicationSettings, ShipStatus, Verdict, judge, served_epoch};
pub use sequencer::{
    NoGuard, RollbackError, Sequencer, StepError, StepFailure, StepGuard, TeardownError,
};
pub use status::{NodeStatus, StatusHandle};
pub use watchdog::{LinuxWatchdog, Watchdog};
