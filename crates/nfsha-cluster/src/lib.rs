//! nfsha-cluster: one active replica per volume for the whole fleet of agents, in etcd
//! (issue 11 items 3 and 5).
//!
//! Role: when `[agent.cluster]` etcd is configured, the replica every agent mounts is
//! not each client's own choice (autofs-style replica lists let each client pick,
//! and a client that remounts after the source returns goes back to a stale source:
//! the seed's failback hazard). It is one record in etcd, moved once for the fleet,
//! by one agent, after the replication was broken by the configured promote command.
//! Failure modes: etcd unreachable (below), a promote command that fails or hangs
//! (bounded by its timeout, its process group killed, reported; the fleet stays), a
//! winner that dies mid-promote (its lock expires with its lease; nothing was moved).
//!
//! # Keys (under `/nfsha/volumes/<volume>/`)
//! - `active`: JSON [`ActiveRecord`] `{ replica, generation, decided_by, decided_at_ms,
//!   reason, previous, promote }`. Not leased. Created with generation 1 by a
//!   transaction `create_revision == 0` ([`Fleet::seed_active`]); every later write is
//!   a transaction guarded by its `mod_revision` (and, for a failover, by the lock), so
//!   the generation grows by exactly one per move and two movers from the same
//!   generation cannot both succeed. `decided_at_ms` is the decider's wall clock,
//!   shown to operators and never compared with anything.
//! - `views/<agent>`: JSON [`AgentView`] `{ agent, mounted, generation,
//!   active_reachable, unreachable_long_enough }` on that agent's lease: a dead agent's
//!   view disappears with its lease. `unreachable_long_enough` is computed by the agent
//!   on its own monotonic clock ([`UnreachableClock`]); no decision compares two nodes'
//!   clocks.
//! - `failover`: JSON [`LockRecord`], the election lock, created by a transaction
//!   `create_revision == 0` on the winner's lease (a failback takes it too, on a lease
//!   of its own). Deleted in the same transaction that moves `active`, or released
//!   when the promote fails; if its holder dies it expires with the lease.
//!
//! # The election
//! Each agent publishes its view; [`decide_failover`] (pure) says whether it should
//! run; the candidates call [`AgentSession::try_failover`]: one wins the lock, re-reads
//! `active` (a candidate that was too late gets [`FailoverOutcome::AlreadyMoved`]),
//! runs the promote command (argument vector, bounded, lease kept alive meanwhile),
//! and writes `active` = next replica with generation + 1. The others get
//! [`FailoverOutcome::Lost`] and follow the key through [`watch_active`], which never
//! goes back to a lower generation and re-reads after every reconnect, so an agent
//! restarted meanwhile is on the new record at once. An agent never mounts a replica
//! that is not the key's active one.
//!
//! The promote command (e.g. the cloud CLI call that breaks the replication) and the
//! failback's resync check run as argument vectors with `NFSHA_VOLUME`,
//! `NFSHA_FROM_HOST`, `NFSHA_FROM_EXPORT`, `NFSHA_TO_HOST`, `NFSHA_TO_EXPORT` and
//! `NFSHA_GENERATION` (the generation being written) in their environment. A promote
//! may run more than once for one move (a winner whose lease expired mid-promote is
//! superseded): it must be idempotent.
//!
//! # Why a quorum of live views
//! The default [`Quorum::Majority`] needs more than half of all live views to say
//! `unreachable_long_enough`; only views that follow the current generation can vote
//! (an agent still on an older one speaks about a replica the fleet has left). A failover
//! breaks the replication: the replica becomes writable, up to two replication
//! intervals of writes are missing on it (20 min with a 10-min schedule), and going
//! back needs a reverse resync. One client whose own network is broken sees the
//! source "down" while it serves everybody else; it must not move the fleet. A zone
//! outage is seen by every client in the surviving zones, so they are the majority.
//! Agents that are dead or cut off from etcd have no view (their lease expired) and
//! do not count either way. `quorum = "any"` lets one agent decide (for a fleet of
//! one or two clients, where a majority of two is both).
//!
//! # When etcd is unreachable
//! The agent keeps the replica it has (mounted and in its local state) and says so
//! ([`WatchEvent::Unreachable`], once per outage): it neither fails over (it cannot
//! win the lock) nor moves to anything not read from `active`. Its view expires with
//! its lease, so it drops out of the quorum; when etcd answers again the watch
//! re-reads `active` and the agent follows whatever generation it finds.
//!
//! # Default `failover_after`: 5 minutes
//! The seed warns: "what happens if there is only a brief outage in your availability
//! zone? Do you really want/need failover to occur if the availability zone is back
//! up after a few minutes?" A failover here is not a remount to an equivalent server:
//! it breaks the replication (up to 20 min of writes are not on the replica), and
//! returning needs an operator's reverse resync ([`Fleet::failback`] refuses without
//! the confirmation). With `hard` mounts, applications only wait during a brief
//! outage and resume where they were. So the default waits out outages of a few
//! minutes (network blips, a storage controller takeover) and fails over for a zone
//! that stays down: `failover_after = 300 s`, measured by each agent on its own clock
//! with an unbroken outage (one answer resets it). A read-only data set (the seed's
//! "little to no danger" case) can lower it.

pub mod command;
pub mod decide;
pub mod model;
pub mod store;

pub use command::{CommandSpec, OUTPUT_TAIL, run_bounded};
pub use decide::{
    DecideError, Decision, GenerationFilter, Quorum, Stay, UnreachableClock, decide_failover,
    next_replica, votes_needed,
};
pub use model::{
    ActiveRecord, AgentView, CommandReport, Keys, LockRecord, ModelError, Reason, ReplicaId,
    parse_replica_spec, resolve_member,
};
pub use store::{
    AgentSession, AuthFile, Failback, FailoverOutcome, Fleet, FleetError, FleetOptions, TlsFiles,
    VolumeStatus, WatchEvent, connect, watch_active, watch_active_from,
};

/// The recommended default of `failover_after` (see the crate documentation).
pub const DEFAULT_FAILOVER_AFTER: std::time::Duration = std::time::Duration::from_secs(300);
