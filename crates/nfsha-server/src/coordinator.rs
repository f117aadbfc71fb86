//! The distributed-store seam: leader lease, fencing epoch, member records and
//! switchover requests, behind the [`Coordinator`] trait (etcd in production,
//! [`crate::EtcdCoordinator`]).
//!
//! Role: say *what* the controller needs from the store, with the guarantees each call
//! must give. Failure modes: the store is unreachable or slow ([`CoordError`]; callers
//! bound every call with their own deadline and treat a timeout like an error), or it
//! answers that this node no longer holds the leader key (`Ok(false)` from
//! [`Coordinator::renew`] / guarded calls), which is not an error but a fact.
//!
//! Key layout under `/nfsha/<cluster>/`:
//! - `leader`: JSON [`LeaderRecord`], bound to the holder's session lease, created only
//!   by a transaction comparing `create_revision == 0`. Its create revision is the
//!   **epoch** (fencing token): it only grows, and a new holder always has a larger one.
//!   A leader key that does not parse or has no lease was not written by nfsha: it
//!   counts as vacant and the next campaign deletes it (see [`crate::etcd`]).
//! - `epoch`: the current epoch as a decimal string, written by the leader under the
//!   guard `create_revision(leader) == epoch`, not leased (it survives the leader).
//! - `served`: JSON [`ServedRecord`], the last epoch that **served** (its exports came
//!   up, so clients may have written), apart from `epoch`, which every acquire
//!   publishes before bring-up. Written under the epoch guard, not leased: at acquire
//!   with the epoch (the served epoch carried over, `acquired` = the new epoch) and
//!   again just before the exports go up (`epoch` = the new epoch). The promotion gate
//!   judges copies against it, so a leadership that never served makes nobody
//!   `behind` ([`crate::replication`]). No key (a cluster from before it), or an
//!   `epoch` newer than its `acquired` (a leader that does not write it): every
//!   published epoch counts as served, as before.
//! - `members/<node>`: JSON [`MemberInfo`], bound to that node's session lease.
//! - `switchover`: JSON [`SwitchoverRequest`], bound to a short lease of its own.
//! - `replica/<node>`: JSON [`ReplicaRecord`] (replicated mode): when the data on
//!   `<node>` was last brought up to date and by which leader. Written only by the
//!   leader, under the guard `create_revision(leader) == epoch`; not leased (it must
//!   survive every process, it is what the promotion gate reads). With the btrfs
//!   engine it also carries the fork points retention must keep ([`ForkPoint`]).
//! - `accept-lag`: JSON [`LagOverride`], the operator's one-shot permission for a
//!   standby that is behind to campaign anyway (`nfsha server promote --accept-lag`),
//!   bound to a lease of its own so an abandoned permission expires.
//! - `position` (btrfs engine): JSON [`LeaderPosition`], the leader's own monotonic
//!   position, rewritten every loop period under the epoch guard; not leased.
//! - `promoted/<node>` (btrfs engine): JSON [`PromotionRecord`], which snapshot a
//!   promotion made writable, under the epoch guard.
//! - `diverged/<node>/<name>` (btrfs engine): JSON [`DivergedRecord`], a quarantine
//!   snapshot a leader found on a returning node; removed by `nfsha server diverged drop`.

use serde::{Deserialize, Serialize};
use std::future::Future;

/// The value stored in the leader key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The leader's node name.
    pub node: String,
    /// The address clients mount from (the floating address, or the node's own).
    #[serde(default)]
    pub address: Option<String>,
    /// The leader's status API (`host:port`), if it listens.
    #[serde(default)]
    pub api: Option<String>,
    /// Its bring-up finished: clients may mount from it. Written `false` with the key
    /// and set once every step is up; absent (older records) means serving.
    #[serde(default = "yes")]
    pub serving: bool,
}

fn yes() -> bool {
    true
}

/// The current leader as clients and standbys see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The leader's node name.
    pub node: String,
    /// The address clients mount from, if published.
    pub address: Option<String>,
    /// The leader key's create revision: the fencing token. Larger is newer.
    pub epoch: u64,
    /// Its bring-up finished (see [`LeaderRecord::serving`]).
    #[serde(default = "yes")]
    pub serving: bool,
}

/// What a member says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// Controller started, cleaning up leftovers.
    Starting,
    /// Not leader, not serving, ready to take over.
    Standby,
    /// Leader, bringing the service up.
    Promoting,
    /// Leader and serving.
    Primary,
    /// Tearing down (switchover, shutdown).
    Demoting,
    /// Lost the lease; tore down (or is tearing down) on its own clock.
    Fenced,
    /// A teardown failed: something may still be up. Needs an operator.
    Failed,
    /// Standby whose replica is older than `max_lag` (or was never shipped): it does not
    /// campaign unless an operator accepts the lag.
    Behind,
}

impl MemberState {
    /// kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Starting => "starting",
            MemberState::Standby => "standby",
            MemberState::Promoting => "promoting",
            MemberState::Primary => "primary",
            MemberState::Demoting => "demoting",
            MemberState::Fenced => "fenced",
            MemberState::Failed => "failed",
            MemberState::Behind => "behind",
        }
    }
}

/// A member record (`members/<node>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node name.
    pub node: String,
    /// Its state.
    pub state: MemberState,
    /// The highest epoch this node has seen.
    pub epoch_seen: u64,
    /// Whether any serving step is up on it.
    pub serving: bool,
    /// The address clients would mount from if it led.
    pub address: Option<String>,
    /// Its status API (`host:port`).
    pub api: Option<String>,
    /// Step in progress or last error, free text.
    #[serde(default)]
    pub detail: Option<String>,
    /// Replicated mode: how far this node's data is behind, in ms (see
    /// [`crate::replication`]); `None` when unknown or not replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// Wall-clock ms since the Unix epoch when written (display only; never used for decisions).
    pub updated_ms: u64,
}

/// A planned switchover request (`switchover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverRequest {
    /// The leader to move away from (must match the current leader).
    pub from: String,
    /// The node that must take over.
    pub to: String,
}

/// The replica record (`replica/<node>`): the data on `node` holds everything the
/// leader `by` had at `shipped_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// Wall-clock ms since the Unix epoch, taken by the leader *before* the successful
    /// shipping run started (so the snapshot holds at least the data of this instant).
    /// When `by` is the node itself: the instant it was serving as leader.
    pub shipped_at_ms: u64,
    /// The leader's epoch at the time.
    pub epoch: u64,
    /// The leader that shipped (or the node itself while it led).
    pub by: String,
    /// btrfs engine: the newest snapshot `node` holds complete (identity = received
    /// uuid, else uuid; see [`crate::btrfs::plan`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRef>,
    /// btrfs engine: the leader's own monotonic position (ms since it began leading
    /// `epoch`) taken just before it took that snapshot. Compared only with
    /// [`LeaderPosition::position_ms`] of the same epoch, i.e. with the same clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_ms: Option<u64>,
    /// btrfs engine: fork points of nodes that led before and have not been shipped to
    /// since (see [`crate::btrfs::shipper::protected_identities`]); every leader's
    /// retention keeps them, whichever leadership or process recorded them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forks: Vec<ForkPoint>,
}

/// A fork point kept for a node that led before (btrfs engine): `node` holds
/// `snapshot`, and so did the leader of `epoch` that promoted it. Kept until a leader
/// of `epoch` or later has shipped to `node` (its replica record then names what it
/// holds in common with the cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkPoint {
    /// The node that forked there (the leader the promoted snapshot came from).
    pub node: String,
    /// The epoch of the leader that recorded it.
    pub epoch: u64,
    /// The snapshot both hold.
    pub snapshot: SnapshotRef,
}

/// A snapshot as the btrfs engine names it across nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// Its name (for people).
    pub name: String,
    /// Its identity (what matches copies across nodes).
    pub identity: String,
}

/// The leader's heartbeat position (`position`, btrfs engine): how far its own
/// monotonic clock had run in `epoch` when it last wrote this. Written by the leader
/// every loop period under the epoch guard; not leased (a standby reads it after the
/// leader died).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderPosition {
    /// The leader.
    pub node: String,
    /// Its epoch.
    pub epoch: u64,
    /// ms since it began leading `epoch`, by its monotonic clock.
    pub position_ms: u64,
    /// How long it may have kept writing after this write, at most (its ttl plus one
    /// loop period: it writes every period and stops serving within ttl of its last
    /// lease renewal). Added to a promotion's RPO bound.
    pub tail_ms: u64,
}

/// The record of a btrfs promotion (`promoted/<node>`): which snapshot the live
/// subvolume was made from when `node` began leading `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRecord {
    /// The promoted node.
    pub node: String,
    /// Its epoch.
    pub epoch: u64,
    /// The snapshot the live subvolume was made from (`None`: its live subvolume was
    /// already the newest data and was kept).
    pub snapshot: Option<SnapshotRef>,
    /// A previous live subvolume quarantined on the way, if any.
    #[serde(default)]
    pub quarantined: Option<String>,
}

/// A quarantine snapshot on a node (`diverged/<node>/<name>`), reported by the leader
/// that found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivergedRecord {
    /// The node holding it.
    pub node: String,
    /// Its name in the snapshot directory.
    pub name: String,
    /// The fork point it was compared with.
    pub fork: Option<String>,
    /// Files changed after the fork point (`None`: no fork point).
    pub changed_files: Option<u64>,
    /// The epoch of the leader that quarantined it.
    pub epoch: u64,
    /// Wall-clock ms (display only).
    pub at_ms: u64,
}

/// The operator's permission for `node` to campaign although it is behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagOverride {
    /// The node allowed to campaign.
    pub node: String,
    /// Wall-clock ms when it was given (display only).
    pub requested_ms: u64,
}

/// The last leadership that served (`served`, see the module header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedRecord {
    /// The last epoch that served (`None`: none has since this record was started).
    pub epoch: Option<u64>,
    /// Its leader, if known (a leadership counted as served without a record of it
    /// has none).
    #[serde(default)]
    pub node: Option<String>,
    /// The last epoch whose acquire wrote this record: a published epoch newer than it
    /// was acquired by a leader that does not keep it.
    pub acquired: u64,
    /// Wall-clock ms of the write (display only).
    pub at_ms: u64,
}

impl ServedRecord {
    /// The record the acquire of `epoch` writes: the last served epoch carried over
    /// from `prev`, or, when the epoch published before (`published`) is not one
    /// `prev` knows of (no record yet on a cluster that had leaders, or a leader that
    /// does not keep it), that epoch, counted as served (conservative: as before the
    /// record existed). A cluster that never had a leader starts with none served.
    pub fn acquired(
        prev: Option<&ServedRecord>,
        published: Option<u64>,
        epoch: u64,
        at_ms: u64,
    ) -> ServedRecord {
        let known = prev.map_or(0, |p| p.acquired);
        let (last, node) = match (published, prev) {
            (Some(e), p) if e > known => (Some(e.max(p.and_then(|p| p.epoch).unwrap_or(0))), None),
            (_, Some(p)) => (p.epoch, p.node.clone()),
            (_, None) => (None, None),
        };
        ServedRecord {
            epoch: last,
            node,
            acquired: epoch,
            at_ms,
        }
    }

    /// The record `node` writes just before its exports of `epoch` go up.
    pub fn serving(node: &str, epoch: u64, at_ms: u64) -> ServedRecord {
        ServedRecord {
            epoch: Some(epoch),
            node: Some(node.to_owned()),
            acquired: epoch,
            at_ms,
        }
    }
}

/// What a standby reads to judge its own lag, in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaView {
    /// Its replica record.
    pub record: Option<ReplicaRecord>,
    /// The last published epoch (`None`: no node ever led this cluster).
    pub epoch: Option<u64>,
    /// A pending lag override.
    pub accept_lag: Option<LagOverride>,
    /// The last leader's heartbeat position (btrfs engine).
    pub position: Option<LeaderPosition>,
    /// The last leadership that served (`None`: no record, as before it existed).
    pub served: Option<ServedRecord>,
}

/// Result of a leadership attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// We created the leader key; the epoch is its create revision.
    Acquired {
        /// Fencing token.
        epoch: u64,
    },
    /// Someone holds it (possibly us from an earlier session, which is treated the same:
    /// we wait for it to expire).
    Held(LeaderInfo),
}

/// The whole cluster as stored (for `nfsha server status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub cluster: String,
    /// The leader, if the key exists.
    pub leader: Option<LeaderInfo>,
    /// The published epoch (survives the leader).
    pub epoch: Option<u64>,
    /// The last leadership that served (survives the leader).
    #[serde(default)]
    pub served: Option<ServedRecord>,
    /// Every live member.
    pub members: Vec<MemberInfo>,
    /// A pending switchover request.
    pub switchover: Option<SwitchoverRequest>,
    /// Replica records by node (replicated mode).
    #[serde(default)]
    pub replicas: std::collections::BTreeMap<String, ReplicaRecord>,
    /// A pending lag override.
    #[serde(default)]
    pub accept_lag: Option<LagOverride>,
    /// The last leader's heartbeat position (btrfs engine).
    #[serde(default)]
    pub position: Option<LeaderPosition>,
    /// Quarantine snapshots reported (btrfs engine).
    #[serde(default)]
    pub diverged: Vec<DivergedRecord>,
    /// Promotions by node (btrfs engine).
    #[serde(default)]
    pub promoted: std::collections::BTreeMap<String, PromotionRecord>,
}

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The store could not be reached or refused the request.
    #[error("etcd request failed")]
    Etcd(#[from] etcd_client::Error),
    /// A value in the store is not what nfsha writes.
    #[error("Malformed value at {key}")]
    Malformed {
        /// The key.
        key: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The store answered without the data nfsha needs (e.g. no response header).
    #[error("Unexpected etcd response: {0}")]
    Protocol(String),
    /// A credential file could not be read.
    #[error("Cannot read {path}")]
    Credentials {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The call did not finish in time.
    #[error("etcd did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The leader key holds something nfsha never writes (see [`crate::etcd`]); it was
    /// written again right after being deleted.
    #[error("Leader key {key} is poisoned: {why}")]
    Poisoned {
        /// The key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// A fake store was told to fail.
    #[error("Injected failure")]
    Injected,
}

/// What the controller needs from the distributed store. Each node has one session
/// lease (TTL = the configured ttl) held by its coordinator; the leader key and the
/// member record are bound to it.
pub trait Coordinator: Send + Sync {
    /// Try to create the leader key (`create_revision == 0`), bound to our session lease
    /// (granted if needed). Also publishes `epoch` on success, and `served` with it
    /// ([`ServedRecord::acquired`]; best effort: without it the new epoch counts as
    /// served).
    fn acquire(
        &self,
        record: &LeaderRecord,
    ) -> impl Future<Output = Result<Acquire, CoordError>> + Send;

    /// Keep our session lease alive and confirm the leader key still exists with
    /// create revision `epoch` and our lease. `Ok(false)` = leadership is gone.
    /// Callers must take the time *before* calling as the renewal instant.
    fn renew(&self, epoch: u64) -> impl Future<Output = Result<bool, CoordError>> + Send;

    /// Rewrite the leader key's value (same lease) while its create revision is
    /// `epoch`, e.g. to say it is serving. Returns whether it was written.
    fn update_leader(
        &self,
        epoch: u64,
        record: &LeaderRecord,
    ) -> impl Future<Output = Result<bool, CoordError>> + Send;

    /// Delete the leader key if its create revision is `epoch` (planned release).
    fn release(&self, epoch: u64) -> impl Future<Output = Result<(), CoordError>> + Send;

    /// Drop our session lease (leader key and member record go with it). Best effort.
    fn resign_session(&self) -> impl Future<Output = Result<(), CoordError>> + Send;

    /// The current leader, if any.
    fn leader(&self) -> impl Future<Output = Result<Option<LeaderInfo>, CoordError>> + Send;

    /// Keep our session lease alive (granting a new one if it expired) and write our
    /// member record. With `guard = Some(epoch)` the write happens only while the leader
    /// key's create revision is `epoch`; returns whether it was written.
    fn heartbeat(
        &self,
        member: &MemberInfo,
        guard: Option<u64>,
    ) -> impl Future<Output = Result<bool, CoordError>> + Send;

    /// The pending switchover request, if any.
    fn switchover_request(
        &self,
    ) -> impl Future<Output = Result<Option<SwitchoverRequest>, CoordError>> + Send;

    /// Remove the switchover request.
    fn clear_switchover(&self) -> impl Future<Output = Result<(), CoordError>> + Send;

    /// Every live member record.
    fn members(&self) -> impl Future<Output = Result<Vec<MemberInfo>, CoordError>> + Send;

    /// Write `replica/<node>` only while the leader key's create revision is `epoch`;
    /// returns whether it was written.
    fn record_replica(
        &self,
        node: &str,
        record: &ReplicaRecord,
        epoch: u64,
    ) -> impl Future<Output = Result<bool, CoordError>> + Send;

    /// Write `served` only while the leader key's create revision is `epoch`; returns
    /// whether it was written. The leader calls it before its exports go up.
    fn record_served(
        &self,
        served: &ServedRecord,
        epoch: u64,
    ) -> impl Future<Output = Result<bool, CoordError>> + Send;

    /// `replica/<node>`, the published epoch, `served` and any lag override, read
    /// together.
    fn replica_view(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<ReplicaView, CoordError>> + Send;

    /// Remove the lag override if it names `node` (after `node` took the lead).
    fn clear_lag_override(&self, node: &str)
    -> impl Future<Output = Result<(), CoordError>> + Send;

    /// Poisoned leader keys (not written by nfsha) this node deleted to campaign.
    /// Default: none.
    fn poisoned_leader_keys(&self) -> u64 {
        0
    }

    /// Write `position` only while the leader key's create revision is `epoch`;
    /// returns whether it was written. A store that cannot keep it answers `false`
    /// (default): the btrfs gate then finds no position and treats the RPO as unknown.
    fn record_position(
        &self,
        position: &LeaderPosition,
        epoch: u64,
    ) -> impl Future<Output = Result<bool, CoordError>> + Send {
        let _ = (position, epoch);
        async { Ok(false) }
    }

    /// Every replica record (retention protects each one's snapshot). Default: none.
    fn replicas(
        &self,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, ReplicaRecord>, CoordError>> + Send
    {
        async { Ok(std::collections::BTreeMap::new()) }
    }

    /// Write `promoted/<node>` and `diverged/<node>/<name>` records under the epoch
    /// guard (`value` is the JSON; `key` is relative to the cluster prefix). Default:
    /// not kept.
    fn record_guarded(
        &self,
        key: &str,
        value: &[u8],
        epoch: u64,
    ) -> impl Future<Output = Result<bool, CoordError>> + Send {
        let _ = (key, value, epoch);
        async { Ok(false) }
    }

    /// Resolve when the leader key created at `epoch` is gone (deleted or expired), so a
    /// standby can campaign at once instead of at its next tick. Never resolving is a
    /// correct (slower) implementation; callers always bound it. Default: never.
    fn wait_vacancy(&self, epoch: u64) -> impl Future<Output = ()> + Send {
        let _ = epoch;
        std::future::pending()
    }
}

/// Key names under `/nfsha/<cluster>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `/nfsha/<cluster>/`.
    pub prefix: String,
}

impl Keys {
    /// Keys of `cluster`.
    pub fn new(cluster: &str) -> Self {
        Keys {
            prefix: format!("/nfsha/{cluster}/"),
        }
    }
    /// The leader key.
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }
    /// The published epoch.
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    /// The last epoch that served.
    pub fn served(&self) -> String {
        format!("{}served", self.prefix)
    }
    /// Prefix of member records.
    pub fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }
    /// One member record.
    pub fn member(&self, node: &str) -> String {
        format!("{}members/{node}", self.prefix)
    }
    /// The switchover request.
    pub fn switchover(&self) -> String {
        format!("{}switchover", self.prefix)
    }
    /// Prefix of replica records.
    pub fn replicas(&self) -> String {
        format!("{}replica/", self.prefix)
    }
    /// One replica record.
    pub fn replica(&self, node: &str) -> String {
        format!("{}replica/{node}", self.prefix)
    }
    /// The lag override.
    pub fn accept_lag(&self) -> String {
        format!("{}accept-lag", self.prefix)
    }
    /// The leader's heartbeat position (btrfs engine).
    pub fn position(&self) -> String {
        format!("{}position", self.prefix)
    }
    /// A node's promotion record (btrfs engine), relative to the prefix.
    pub fn promoted_rel(node: &str) -> String {
        format!("promoted/{node}")
    }
    /// A quarantine snapshot's record (btrfs engine), relative to the prefix.
    pub fn diverged_rel(node: &str, name: &str) -> String {
        format!("diverged/{node}/{name}")
    }
}
