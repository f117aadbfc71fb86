//! The leader's btrfs shipping loop: heartbeat position, snapshots every `interval`,
//! one [`Engine::replicate`] per standby, the records a promotion gate reads, local
//! retention.
//!
//! Role, every loop period while serving:
//! 1. write the heartbeat [`LeaderPosition`] (own monotonic ms since serving began,
//!    epoch-guarded) — in its own loop beside steps 2–4, so a long transfer never
//!    holds it back; refused → leadership is gone, the loop stops;
//! 2. when the newest snapshot of this leadership is `interval` old (or there is none
//!    yet), take one, remembering the position taken just before it;
//! 3. for each live standby, [`Engine::replicate`] bounded by the step timeout; when
//!    the standby's newest snapshot changed, write `replica/<node>` with its identity
//!    and position; a quarantine found on the way is logged and recorded
//!    (`diverged/<node>/<name>`);
//! 4. retention on the leader, protecting every replica record's snapshot (also of
//!    standbys that are down now), the fork points of nodes that led before (kept in
//!    the records, [`own_record`], so they outlive this leadership and this process)
//!    and the snapshot this leadership was promoted from (see [`protected_identities`]).
//!
//! The per-standby live RPO (position now − position of its newest snapshot, one
//! clock) is kept in the status ([`ShipStatus::rpo_ms`]).
//!
//! Failure modes: a snapshot, transfer or retention failure is logged and counted,
//! retried next period; never a fence. A guarded write refused ends the loop.

use super::{BtrfsHost, Engine, Promotion};
use crate::coordinator::{
    Coordinator, DivergedRecord, ForkPoint, Keys, LeaderPosition, MemberState, PromotionRecord,
    ReplicaRecord, SnapshotRef,
};
use crate::status::StatusHandle;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout};

/// What [`btrfs_ship_loop`] needs.
#[derive(Debug, Clone)]
pub struct BtrfsShipperConfig {
    /// This (leader) node.
    pub node: String,
    /// Its epoch (guard of every write).
    pub epoch: u64,
    /// Snapshot interval.
    pub interval: Duration,
    /// Bound of one replicate (and of a snapshot).
    pub step_timeout: Duration,
    /// Loop period (and bound of each etcd call).
    pub loop_period: Duration,
    /// ttl + loop period: how long this leader may write after a heartbeat.
    pub tail: Duration,
    /// When serving began: position 0.
    pub since: Instant,
    /// The promotion this leadership began with, to publish.
    pub promotion: Option<Promotion>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Ship while leading; returns when a guarded write is refused (or when dropped).
pub async fn btrfs_ship_loop<C: Coordinator, H: BtrfsHost>(
    coord: Arc<C>,
    engine: Arc<Engine<H>>,
    status: StatusHandle,
    cfg: BtrfsShipperConfig,
) {
    let lp = cfg.loop_period;
    let epoch = cfg.epoch;
    if let Some(p) = &cfg.promotion {
        let rec = PromotionRecord {
            node: cfg.node.clone(),
            epoch,
            snapshot: p
                .snapshot
                .clone()
                .zip(p.identity.clone())
                .map(|(name, identity)| SnapshotRef { name, identity }),
            quarantined: p
                .quarantined
                .as_ref()
                .filter(|q| q.kept)
                .map(|q| q.name.clone()),
        };
        if let Ok(v) = serde_json::to_vec(&rec) {
            match timeout(
                lp,
                coord.record_guarded(&Keys::promoted_rel(&cfg.node), &v, epoch),
            )
            .await
            {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot record the promotion"),
                Err(_) => tracing::warn!("etcd did not answer the promotion record"),
            }
        }
    }
    // identity → position just before that snapshot was taken (this leadership only).
    let mut positions: HashMap<String, u64> = HashMap::new();
    let mut last_snapshot: Option<Instant> = None;
    let mut recorded: HashMap<String, String> = HashMap::new();
    // The heartbeat runs beside the work, never behind it: a transfer can take many
    // loop periods, and the leader writes all along. A heartbeat that waited for the
    // transfer made the gate's bound (heartbeat − snapshot position + tail) smaller
    // than the writes a crash mid-transfer loses (lab scenario btrfs-replication, d2).
    let heartbeat = async {
        let mut next = Instant::now();
        loop {
            sleep_until(next).await;
            next = Instant::now() + lp;
            let hb = LeaderPosition {
                node: cfg.node.clone(),
                epoch,
                position_ms: ms(cfg.since.elapsed()),
                tail_ms: ms(cfg.tail),
            };
            match timeout(lp, coord.record_position(&hb, epoch)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::info!("heartbeat position refused: no longer leader");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the heartbeat position"),
                Err(_) => tracing::warn!("etcd did not answer the heartbeat position"),
            }
        }
    };
    let work = async {
        let mut next = Instant::now();
        loop {
            sleep_until(next).await;
            next = Instant::now() + lp;
            if last_snapshot.is_none_or(|t| t.elapsed() >= cfg.interval) {
                let at = ms(cfg.since.elapsed());
                match timeout(
                    cfg.step_timeout,
                    engine.take_snapshot(epoch, nfsha_core::event::now_ms()),
                )
                .await
                {
                    Ok(Ok(s)) => {
                        tracing::debug!(snapshot = %s.name, position_ms = at, "snapshot taken");
                        positions.insert(s.identity().to_owned(), at);
                        last_snapshot = Some(Instant::now());
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %nfsha_core::error_chain(&e), "cannot take a snapshot")
                    }
                    Err(_) => tracing::error!("snapshot did not finish within the step timeout"),
                }
            }
            let members = match timeout(lp, coord.members()).await {
                Ok(Ok(m)) => m,
                _ => continue,
            };
            // Retention must not run without the records of what to keep.
            let replicas = match timeout(lp, coord.replicas()).await {
                Ok(Ok(r)) => r,
                _ => {
                    tracing::warn!(
                        "cannot read the replica records; no ship, no retention this period"
                    );
                    continue;
                }
            };
            let mut protected = protected_identities(&replicas, cfg.promotion.as_ref());
            for m in members {
                if m.node == cfg.node
                    || !matches!(m.state, MemberState::Standby | MemberState::Behind)
                {
                    continue;
                }
                let started = nfsha_core::event::now_ms();
                let result = timeout(
                    cfg.step_timeout,
                    engine.replicate(&m.node, epoch, started, &protected),
                )
                .await;
                let report = match result {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        fail(&status, &m.node, started, nfsha_core::error_chain(&e));
                        continue;
                    }
                    Err(_) => {
                        fail(
                            &status,
                            &m.node,
                            started,
                            format!("did not finish within {:?}", cfg.step_timeout),
                        );
                        continue;
                    }
                };
                protected.insert(report.identity.clone());
                if let Some(q) = report.quarantined.as_ref().filter(|q| q.kept) {
                    tracing::warn!(target = %m.node, snapshot = %q.name, changed_files = ?q.changed_files, fork = ?q.fork, "divergent writes of a returning node quarantined");
                    let d = DivergedRecord {
                        node: m.node.clone(),
                        name: q.name.clone(),
                        fork: q.fork.clone(),
                        changed_files: q.changed_files,
                        epoch,
                        at_ms: started,
                    };
                    if let Ok(v) = serde_json::to_vec(&d)
                        && !matches!(
                            timeout(
                                lp,
                                coord.record_guarded(
                                    &Keys::diverged_rel(&m.node, &q.name),
                                    &v,
                                    epoch
                                )
                            )
                            .await,
                            Ok(Ok(true))
                        )
                    {
                        tracing::warn!(target = %m.node, "cannot record the quarantine in etcd (it stays on disk)");
                    }
                }
                let snap_pos = positions.get(&report.identity).copied();
                if recorded.get(&m.node) != Some(&report.identity) {
                    let Some(position_ms) = snap_pos else {
                        tracing::info!(target = %m.node, "standby holds a snapshot of an earlier leadership; recorded after the next one");
                        continue;
                    };
                    let rec = shipped_record(
                        &cfg.node,
                        epoch,
                        started,
                        SnapshotRef {
                            name: report.snapshot.clone(),
                            identity: report.identity.clone(),
                        },
                        Some(position_ms),
                        replicas.get(&m.node),
                        &m.node,
                    );
                    match timeout(lp, coord.record_replica(&m.node, &rec, epoch)).await {
                        Ok(Ok(true)) => {
                            recorded.insert(m.node.clone(), report.identity.clone());
                        }
                        Ok(Ok(false)) => return,
                        _ => {
                            fail(
                                &status,
                                &m.node,
                                started,
                                "sent, but the record could not be written".into(),
                            );
                            continue;
                        }
                    }
                }
                tracing::info!(target = %m.node, snapshot = %report.snapshot, parent = ?report.parent, bytes = ?report.bytes, removed_partials = ?report.removed_partials, pruned = ?report.pruned, "standby in sync");
                let rpo = snap_pos.map(|p| ms(cfg.since.elapsed()).saturating_sub(p));
                status.update(|s| {
                    let st = s.replication.entry(m.node.clone()).or_default();
                    st.last_attempt_ms = Some(started);
                    st.last_ok_ms = Some(started);
                    st.last_error = None;
                    st.consecutive_failures = 0;
                    st.ok_total += 1;
                    st.snapshot = Some(report.snapshot.clone());
                    st.rpo_ms = rpo;
                    if report.bytes.is_some() {
                        st.last_bytes = report.bytes;
                    }
                    if let Some(q) = report.quarantined.as_ref().filter(|q| q.kept) {
                        st.diverged.insert(q.name.clone(), q.changed_files);
                    }
                });
            }
            match timeout(cfg.step_timeout, engine.prune_local(&protected)).await {
                Ok(Ok(gone)) if !gone.is_empty() => {
                    tracing::info!(?gone, "retention removed snapshots")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %nfsha_core::error_chain(&e), "retention failed")
                }
                _ => {}
            }
        }
    };
    tokio::select! {
        biased;
        () = heartbeat => {}
        () = work => {}
    }
}

/// The identities retention must keep: each replica record's snapshot (also of
/// standbys that are down now), every fork point a record still carries (see
/// [`own_record`]; until the node it is kept for has been shipped to again) and the
/// snapshot this leadership was promoted from. Everything but the last comes from
/// etcd, so it holds across restarts and leadership changes; the engine adds what the
/// disk says ([`super::plan::protect`]). Without the fork points, an old primary away
/// for longer than `keep` × `interval` came back to a leader that had pruned the fork
/// point (once that leader had restarted or a second failover had happened, when the
/// promotion of the first one was no longer in any memory): no incremental resync, and
/// its divergent writes could not be counted.
pub fn protected_identities(
    replicas: &BTreeMap<String, ReplicaRecord>,
    promotion: Option<&Promotion>,
) -> BTreeSet<String> {
    replicas
        .values()
        .filter_map(|r| r.snapshot.as_ref().map(|s| s.identity.clone()))
        .chain(live_forks(replicas).map(|f| f.snapshot.identity.clone()))
        .chain(promotion.and_then(|p| p.identity.clone()))
        .collect()
}

/// The fork points the records carry that are still needed: a fork point is done
/// with once a leader of its epoch or later has shipped to its node (that node's
/// record then names a snapshot the cluster holds). A node that led again since
/// keeps it (it may still hold nothing newer in common with the next leader).
fn live_forks(replicas: &BTreeMap<String, ReplicaRecord>) -> impl Iterator<Item = &ForkPoint> {
    replicas.values().flat_map(|r| &r.forks).filter(|f| {
        !replicas
            .get(&f.node)
            .is_some_and(|r| r.by != f.node && r.epoch >= f.epoch)
    })
}

/// The record a btrfs leader `node` writes for itself when it begins serving `epoch`
/// (at `now_ms`): it vouches for its own copy (no snapshot, see
/// [`crate::replication`]) and carries every fork point still needed — those of all
/// records (so none is lost when a record is rewritten) and, when this leadership
/// promoted a snapshot that another leader shipped to it, that snapshot as the fork
/// point of that leader (it took it, or holds it; with no promotion, the snapshot
/// that leader last shipped to it). `replicas`: all records as etcd holds them
/// before this write.
pub fn own_record(
    node: &str,
    epoch: u64,
    now_ms: u64,
    replicas: &BTreeMap<String, ReplicaRecord>,
    promotion: Option<&Promotion>,
) -> ReplicaRecord {
    let mut forks: Vec<ForkPoint> = Vec::new();
    let prev = replicas.get(node).filter(|r| r.by != node);
    let promoted = promotion
        .and_then(|p| p.snapshot.clone().zip(p.identity.clone()))
        .map(|(name, identity)| SnapshotRef { name, identity });
    // Without a promotion (a bring-up that failed first), what that leader shipped.
    let new = prev.and_then(|r| {
        Some(ForkPoint {
            node: r.by.clone(),
            epoch,
            snapshot: promoted.or_else(|| r.snapshot.clone())?,
        })
    });
    for f in live_forks(replicas).cloned().chain(new) {
        if !forks
            .iter()
            .any(|g| g.node == f.node && g.snapshot.identity == f.snapshot.identity)
        {
            forks.push(f);
        }
    }
    ReplicaRecord {
        shipped_at_ms: now_ms,
        epoch,
        by: node.to_owned(),
        snapshot: None,
        position_ms: None,
        forks,
    }
}

/// The record of standby `target` once leader `by` (of `epoch`) has brought it to
/// `snapshot` (shipping began at `shipped_at_ms`; `position_ms`: the leader's position
/// just before that snapshot). It keeps the fork points of `old`, its previous record,
/// but its own: `target` has just been shipped to, so those are done with.
pub fn shipped_record(
    by: &str,
    epoch: u64,
    shipped_at_ms: u64,
    snapshot: SnapshotRef,
    position_ms: Option<u64>,
    old: Option<&ReplicaRecord>,
    target: &str,
) -> ReplicaRecord {
    ReplicaRecord {
        shipped_at_ms,
        epoch,
        by: by.to_owned(),
        snapshot: Some(snapshot),
        position_ms,
        forks: old
            .map(|r| {
                r.forks
                    .iter()
                    .filter(|f| f.node != target)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn fail(status: &StatusHandle, target: &str, started: u64, error: String) {
    tracing::error!(target, %error, "btrfs ship failed");
    status.update(|s| {
        let st = s.replication.entry(target.to_owned()).or_default();
        st.last_attempt_ms = Some(started);
        st.last_error = Some(error);
        st.consecutive_failures += 1;
        st.failed_total += 1;
    });
}
