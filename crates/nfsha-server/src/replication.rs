//! Replicated mode: the leader ships snapshots to every standby and records it; a
//! standby whose copy is too old does not campaign (Patroni's `maximum_lag_on_failover`).
//!
//! Role:
//! - [`ship_loop`] runs beside the serving leader: every loop period it lists the live
//!   members and, for each standby not shipped to for `interval` (or never during this
//!   leadership: a new or returning node is served at once), runs
//!   [`ServerHost::ship`] (one run at a time, bounded by the step timeout). After a
//!   success it writes `replica/<node>` = [`ReplicaRecord`] with a transaction guarded by
//!   the leader key's create revision, so only the current leader can vouch for a copy.
//! - [`judge`] decides whether a standby is `behind`, from its record, the last served
//!   epoch and a reference instant.
//!
//! **What lag means.** A promoted standby loses what the old leader wrote after the
//! snapshot it holds. `shipped_at_ms` is taken before the shipping run starts, so the
//! snapshot holds at least the data of that instant. The lag is `reference −
//! shipped_at_ms`, where the reference is an upper bound of the moment the old leader
//! stopped writing: the first instant this standby saw the cluster without a leader
//! (wall clock). It is fixed for the whole leaderless period: a standby that was fresh
//! when the leader died stays fresh while the cluster waits, and one that was behind stays
//! behind (until a leader ships to it or an operator accepts the lag). A standby that
//! starts while the cluster is already leaderless takes its start as the reference
//! (conservative). While a leader lives the reference is now (status only).
//!
//! **Clock assumption.** `shipped_at_ms` is the leader's wall clock and the reference the
//! standby's: the nodes' clocks must agree (NTP) to well within `max_lag` (minutes by
//! default). A skew of S moves the verdict by S; the lease and fencing logic do not use
//! wall clocks at all.
//!
//! **btrfs engine: no two clocks.** When the record carries `position_ms` (the
//! leader's own monotonic position, ms since it began leading, taken just before the
//! snapshot the standby now holds), the wall-clock rule above is not used. The leader
//! also writes its heartbeat position (`position`, every loop period, epoch-guarded,
//! not leased); the RPO a promotion accepts is `heartbeat − snapshot + tail` (tail =
//! the leader's ttl + one loop period: how long it may have written after its last
//! heartbeat), all from the same leader's clock, so clock skew between nodes cannot
//! make a stale standby look fresh. A record of an older epoch than the newest
//! heartbeat or served epoch cannot be compared: behind. Assumption: a leader that
//! can renew its lease can also write its heartbeat (both go to the same etcd); a
//! leader whose heartbeat writes fail while renewals succeed would be under-reported.
//!
//! **Judged against the last *served* epoch** ([`served_epoch`]), not the last
//! published one: every acquire publishes its epoch before bring-up, but only a
//! leadership whose exports came up (`served` key, see [`crate::coordinator`]) can hold
//! writes a copy lacks. A leadership that never served (its bring-up failed, it was
//! fenced first) makes nobody `behind`, its own node included. A cluster without the
//! `served` key yet counts every published epoch as served (as before the key).
//!
//! **Who is never behind.** (1) Any node of a cluster where no leadership ever served
//! (no epoch published, or none served): there is nothing to lose. (2) The node that
//! led the last served epoch (its own record, written when it started serving, names
//! it and that epoch): it has the newest data, e.g. after a full outage. A node shipped
//! to in the last served epoch is judged by its lag as above. A returning old leader
//! whose epoch was superseded by one that served is judged by its record like any
//! standby, so it stays behind until the new leader ships to it; and a never-shipped
//! node stays behind once any leadership served.
//!
//! Failure modes: a ship fails or times out → logged, counted in the leader's status
//! ([`ShipStatus`]), retried after `interval`; never a fence. The guarded record write is
//! refused → leadership is gone, the loop stops (the controller finds out on its own).

use crate::coordinator::{Coordinator, MemberState, ReplicaRecord, ReplicaView};
use crate::host::ServerHost;
use crate::status::StatusHandle;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout};

/// The replication settings the controller runs on (from `[server.replication]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// How often each standby gets a snapshot.
    pub interval: Duration,
    /// Largest lag at which a standby may campaign.
    pub max_lag: Duration,
}

impl ReplicationSettings {
    /// From a `[server]` section: `Some` only in replicated mode with
    /// `[server.replication]` (shared storage has no gate).
    pub fn from_server(cfg: &nfsha_config::ServerConfig) -> Option<Self> {
        match (&cfg.replication, cfg.storage) {
            (Some(r), nfsha_config::StorageMode::Replicated) => Some(ReplicationSettings {
                interval: r.interval,
                max_lag: r.max_lag,
            }),
            _ => None,
        }
    }
}

/// A standby's verdict on its own copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Lag in ms, if known (`None`: never shipped to).
    pub lag_ms: Option<u64>,
    /// Whether it must not campaign.
    pub behind: bool,
    /// Why, for logs and the member record.
    pub reason: String,
}

/// The epoch whose writes a copy must hold: the last that served (`None`: none ever
/// did). Without a `served` record, or when a newer epoch was published by a leader
/// that does not keep it (its `acquired` is older), the last published epoch counts
/// as served (as before the record existed). A heartbeat position (btrfs engine) is
/// written only while serving: its epoch served too, whatever the record says.
pub fn served_epoch(view: &ReplicaView) -> Option<u64> {
    let published = view.epoch?;
    let recorded = match &view.served {
        Some(s) if s.acquired >= published => s.epoch,
        _ => Some(published),
    };
    recorded.max(view.position.as_ref().map(|p| p.epoch))
}

/// Whether `node`'s copy is the newest data there is, by the rules "who is never
/// behind" of the module header: no leadership ever served, or `node` led the last
/// served epoch. A leadership that ends before it serves changes nothing about it.
pub fn holds_newest(node: &str, view: &ReplicaView) -> bool {
    match (served_epoch(view), &view.record) {
        (None, _) => true,
        (Some(served), Some(rec)) => rec.by == node && rec.epoch >= served,
        (Some(_), None) => false,
    }
}

/// Judge `node`'s copy at `reference_ms` (see the module header for the rules).
pub fn judge(node: &str, view: &ReplicaView, reference_ms: u64, max_lag: Duration) -> Verdict {
    let max_ms = max_lag.as_millis() as u64;
    if view.epoch.is_none() {
        return Verdict {
            lag_ms: None,
            behind: false,
            reason: "no leader ever: nothing to lose".into(),
        };
    }
    let Some(served) = served_epoch(view) else {
        return Verdict {
            lag_ms: None,
            behind: false,
            reason: "no leadership ever served: nothing to lose".into(),
        };
    };
    let Some(rec) = &view.record else {
        return Verdict {
            lag_ms: None,
            behind: true,
            reason: "no snapshot was ever shipped to this node".into(),
        };
    };
    if holds_newest(node, view) {
        return Verdict {
            lag_ms: Some(0),
            behind: false,
            reason: format!("led the last served epoch ({})", rec.epoch),
        };
    }
    if let Some(v) = judge_positions(rec, view, served, max_lag) {
        return v;
    }
    let lag = reference_ms.saturating_sub(rec.shipped_at_ms);
    let behind = lag > max_ms;
    let reason = format!(
        "last snapshot from {} (epoch {}) is {} old, max_lag {}",
        rec.by,
        rec.epoch,
        humantime::format_duration(Duration::from_millis(lag / 100 * 100)),
        humantime::format_duration(max_lag)
    );
    Verdict {
        lag_ms: Some(lag),
        behind,
        reason,
    }
}

/// The clock-free verdict (btrfs engine), when `rec` carries the leader's position at
/// snapshot time: the RPO a promotion would accept is the leader's last heartbeat
/// position minus that position, plus the heartbeat's tail — all three written by the
/// same leader from its own monotonic clock, so no two clocks are compared and NTP skew
/// cannot make a stale standby look fresh. A record from an older epoch than the last
/// heartbeat or the last served epoch (`served`) cannot be compared with it: behind
/// (the new leader has not shipped to this node yet). `None`: no position in the
/// record (command engine): the wall-clock rule applies.
fn judge_positions(
    rec: &ReplicaRecord,
    view: &ReplicaView,
    served: u64,
    max_lag: Duration,
) -> Option<Verdict> {
    let snap_pos = rec.position_ms?;
    let max_ms = max_lag.as_millis() as u64;
    let snap = rec
        .snapshot
        .as_ref()
        .map_or_else(|| "a snapshot".to_owned(), |s| s.name.clone());
    let Some(pos) = view.position.as_ref().filter(|p| p.epoch == rec.epoch) else {
        let newer = view
            .position
            .as_ref()
            .map_or(served, |p| p.epoch.max(served));
        return Some(Verdict {
            lag_ms: None,
            behind: true,
            reason: if newer > rec.epoch {
                format!(
                    "holds {snap} of epoch {}, the leader of epoch {newer} has not shipped to it",
                    rec.epoch
                )
            } else {
                format!(
                    "no heartbeat position of epoch {} to compare {snap} with",
                    rec.epoch
                )
            },
        });
    };
    if served > rec.epoch {
        return Some(Verdict {
            lag_ms: None,
            behind: true,
            reason: format!(
                "holds {snap} of epoch {}, epoch {served} has not shipped to it",
                rec.epoch
            ),
        });
    }
    let rpo = pos.position_ms.saturating_sub(snap_pos) + pos.tail_ms;
    Some(Verdict {
        lag_ms: Some(rpo),
        behind: rpo > max_ms,
        reason: format!(
            "holds {snap} from {} (epoch {}): at most {} of writes after it, max_lag {}",
            rec.by,
            rec.epoch,
            humantime::format_duration(Duration::from_millis(rpo / 100 * 100)),
            humantime::format_duration(max_lag)
        ),
    })
}

/// The leader's shipping record for one standby (in `/primary` etc. as `replication`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShipStatus {
    /// Wall-clock ms of the last attempt's start.
    pub last_attempt_ms: Option<u64>,
    /// Wall-clock ms of the start of the last successful (and recorded) ship.
    pub last_ok_ms: Option<u64>,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Successful ships during this process's life.
    pub ok_total: u64,
    /// Failed ships during this process's life.
    pub failed_total: u64,
    /// btrfs engine: the standby's newest snapshot (name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// btrfs engine: live RPO, ms of the leader's own clock since just before that
    /// snapshot was taken (at the last successful check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_ms: Option<u64>,
    /// btrfs engine: bytes of the last stream sent to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_bytes: Option<u64>,
    /// btrfs engine: quarantine snapshots found on it (name → files changed after the
    /// fork point, `None` without a fork point).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub diverged: std::collections::BTreeMap<String, Option<u64>>,
}

/// Prometheus text exposition of the replication figures in `s` (`GET /metrics`).
pub fn metrics_text(s: &crate::status::NodeStatus) -> String {
    use std::fmt::Write;
    fn esc(v: &str) -> String {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP nfsha_server_primary 1 while this node serves as leader."
    );
    let _ = writeln!(o, "# TYPE nfsha_server_primary gauge");
    let _ = writeln!(
        o,
        "nfsha_server_primary {}",
        u8::from(s.state == MemberState::Primary && s.serving)
    );
    if let Some(l) = s.lag_ms {
        let _ = writeln!(
            o,
            "# HELP nfsha_server_lag_seconds This standby's RPO bound as its promotion gate judges it."
        );
        let _ = writeln!(o, "# TYPE nfsha_server_lag_seconds gauge");
        let _ = writeln!(o, "nfsha_server_lag_seconds {}", l as f64 / 1000.0);
    }
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&ShipStatus) -> Option<f64>,
    );
    let families: [Family; 4] = [
        (
            "nfsha_server_replication_rpo_seconds",
            "gauge",
            "Leader: writes a promotion of this standby would lose, by the leader's own clock (btrfs engine).",
            |t| t.rpo_ms.map(|v| v as f64 / 1000.0),
        ),
        (
            "nfsha_server_replication_last_bytes",
            "gauge",
            "Leader: bytes of the last stream sent to this standby (btrfs engine).",
            |t| t.last_bytes.map(|v| v as f64),
        ),
        (
            "nfsha_server_replication_ok_total",
            "counter",
            "Leader: successful ships to this standby.",
            |t| Some(t.ok_total as f64),
        ),
        (
            "nfsha_server_replication_failed_total",
            "counter",
            "Leader: failed ships to this standby.",
            |t| Some(t.failed_total as f64),
        ),
    ];
    for (name, kind, help, f) in families {
        let rows: Vec<(String, f64)> = s
            .replication
            .iter()
            .filter_map(|(n, t)| f(t).map(|v| (n.clone(), v)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        for (n, v) in rows {
            let _ = writeln!(o, "{name}{{standby=\"{}\"}} {v}", esc(&n));
        }
    }
    let rows: Vec<String> = s
        .replication
        .iter()
        .flat_map(|(n, t)| {
            t.diverged.iter().filter_map(move |(snap, c)| {
                c.map(|c| {
                    format!(
                        "nfsha_server_diverged_changed_files{{node=\"{}\",snapshot=\"{}\"}} {c}",
                        esc(n),
                        esc(snap)
                    )
                })
            })
        })
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(
            o,
            "# HELP nfsha_server_diverged_changed_files Files a returning node changed after the fork point, kept in a quarantine snapshot."
        );
        let _ = writeln!(o, "# TYPE nfsha_server_diverged_changed_files gauge");
        for r in rows {
            let _ = writeln!(o, "{r}");
        }
    }
    o
}

/// What [`ship_loop`] needs.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// This (leader) node.
    pub node: String,
    /// The leader's epoch (fencing token for the record writes).
    pub epoch: u64,
    /// Per-standby shipping interval.
    pub interval: Duration,
    /// Bound of one ship.
    pub step_timeout: Duration,
    /// How often the member list is read (and the bound of each etcd call).
    pub loop_period: Duration,
}

/// Ship `host`'s data to the standbys while leading; runs until dropped (the controller
/// aborts it when leadership ends) or until a guarded record write is refused.
pub async fn ship_loop<C: Coordinator, H: ServerHost>(
    coord: Arc<C>,
    host: Arc<H>,
    status: StatusHandle,
    cfg: ShipperConfig,
) {
    let mut last_attempt: HashMap<String, Instant> = HashMap::new();
    let mut next = Instant::now();
    loop {
        sleep_until(next).await;
        next = Instant::now() + cfg.loop_period;
        let members = match timeout(cfg.loop_period, coord.members()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "shipper cannot list members");
                continue;
            }
            Err(_) => {
                tracing::warn!("shipper: etcd did not answer the member list");
                continue;
            }
        };
        for m in members {
            if m.node == cfg.node || !matches!(m.state, MemberState::Standby | MemberState::Behind)
            {
                continue;
            }
            if last_attempt
                .get(&m.node)
                .is_some_and(|t| t.elapsed() < cfg.interval)
            {
                continue;
            }
            last_attempt.insert(m.node.clone(), Instant::now());
            if !ship_one(&*coord, &*host, &status, &cfg, &m.node, false).await {
                return;
            }
        }
    }
}

/// One ship to `target` (or the final sync of a switchover) and, on success, its record.
/// Returns `false` when the guarded record write was refused (leadership is gone).
pub async fn ship_one<C: Coordinator, H: ServerHost>(
    coord: &C,
    host: &H,
    status: &StatusHandle,
    cfg: &ShipperConfig,
    target: &str,
    final_sync: bool,
) -> bool {
    let started_ms = nfsha_core::event::now_ms();
    let t0 = Instant::now();
    let result = if final_sync {
        timeout(cfg.step_timeout, host.final_sync(target, cfg.epoch)).await
    } else {
        timeout(cfg.step_timeout, host.ship(target, cfg.epoch)).await
    };
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(crate::controller::error_chain(&e)),
        Err(_) => Some(format!("did not finish within {:?}", cfg.step_timeout)),
    };
    if let Some(error) = error {
        tracing::error!(target, %error, epoch = cfg.epoch, final_sync, "ship failed");
        status.update(|s| {
            let st = s.replication.entry(target.to_owned()).or_default();
            st.last_attempt_ms = Some(started_ms);
            st.last_error = Some(error);
            st.consecutive_failures += 1;
            st.failed_total += 1;
        });
        return true;
    }
    if host.btrfs().is_some() {
        // btrfs engine: the record (identity + the leader's position) is the shipping
        // loop's; a wall-clock record here would replace it. The target keeps the
        // periodic one, whose RPO bound is larger than the truth after this final
        // increment (conservative), and promotes the final snapshot (the newest).
        tracing::info!(
            target,
            epoch = cfg.epoch,
            final_sync,
            "btrfs increment sent"
        );
        return true;
    }
    let rec = ReplicaRecord {
        shipped_at_ms: started_ms,
        epoch: cfg.epoch,
        by: cfg.node.clone(),
        snapshot: None,
        position_ms: None,
        forks: Vec::new(),
    };
    let written = match timeout(
        cfg.loop_period,
        coord.record_replica(target, &rec, cfg.epoch),
    )
    .await
    {
        Ok(Ok(w)) => Some(w),
        Ok(Err(e)) => {
            tracing::warn!(target, error = %e, "cannot record the shipped snapshot");
            None
        }
        Err(_) => {
            tracing::warn!(target, "etcd did not answer the replica record write");
            None
        }
    };
    tracing::info!(
        target,
        epoch = cfg.epoch,
        took_ms = t0.elapsed().as_millis() as u64,
        recorded = ?written,
        final_sync,
        "snapshot shipped"
    );
    status.update(|s| {
        let st = s.replication.entry(target.to_owned()).or_default();
        st.last_attempt_ms = Some(started_ms);
        match written {
            Some(true) => {
                st.last_ok_ms = Some(started_ms);
                st.last_error = None;
                st.consecutive_failures = 0;
                st.ok_total += 1;
            }
            Some(false) => {
                st.last_error =
                    Some("shipped, but the record was refused: no longer leader".into());
            }
            None => {
                st.last_error = Some("shipped, but the record could not be written".into());
                st.consecutive_failures += 1;
                st.failed_total += 1;
            }
        }
    });
    written != Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(rec: Option<(u64, u64, &str)>, epoch: Option<u64>) -> ReplicaView {
        ReplicaView {
            record: rec.map(|(at, e, by)| ReplicaRecord {
                shipped_at_ms: at,
                epoch: e,
                by: by.into(),
                snapshot: None,
                position_ms: None,
                forks: Vec::new(),
            }),
            epoch,
            accept_lag: None,
            position: None,
            served: None,
        }
    }

    #[test]
    fn the_gate_rules() {
        let max = Duration::from_secs(60);
        // A cluster that never had a leader: nothing to lose.
        let v = judge("b", &view(None, None), 1_000_000, max);
        assert!(!v.behind, "{v:?}");
        // Never shipped to.
        let v = judge("b", &view(None, Some(7)), 1_000_000, max);
        assert!(v.behind && v.lag_ms.is_none(), "{v:?}");
        // Fresh and stale, judged against the reference instant.
        let v = judge(
            "b",
            &view(Some((1_000_000, 7, "a")), Some(7)),
            1_059_000,
            max,
        );
        assert_eq!((v.behind, v.lag_ms), (false, Some(59_000)));
        let v = judge(
            "b",
            &view(Some((1_000_000, 7, "a")), Some(7)),
            1_061_000,
            max,
        );
        assert_eq!((v.behind, v.lag_ms), (true, Some(61_000)));
        assert!(v.reason.contains("is 1m 1s old"), "{}", v.reason);
        // A record newer than the reference (clock skew) is not negative lag.
        let v = judge(
            "b",
            &view(Some((2_000_000, 7, "a")), Some(7)),
            1_000_000,
            max,
        );
        assert_eq!((v.behind, v.lag_ms), (false, Some(0)));
        // The last leader vouched for itself: never behind, however old.
        let v = judge("a", &view(Some((1, 7, "a")), Some(7)), 9_000_000, max);
        assert!(!v.behind, "{v:?}");
        // A superseded old leader is judged by its old record.
        let v = judge("a", &view(Some((1, 5, "a")), Some(7)), 9_000_000, max);
        assert!(v.behind, "{v:?}");
    }

    /// A btrfs record: snapshot taken at leader position `snap_pos` in `epoch`; the
    /// leader's last heartbeat at `hb` (epoch `hb_epoch`), tail 5 s.
    fn positioned(
        epoch: u64,
        snap_pos: u64,
        hb: Option<(u64, u64)>,
        published: u64,
    ) -> ReplicaView {
        ReplicaView {
            record: Some(ReplicaRecord {
                // Wall clock of the leader: deliberately absurd, it must not matter.
                shipped_at_ms: 1,
                epoch,
                by: "a".into(),
                snapshot: Some(crate::coordinator::SnapshotRef {
                    name: "data@7-x".into(),
                    identity: "u1".into(),
                }),
                position_ms: Some(snap_pos),
                forks: Vec::new(),
            }),
            epoch: Some(published),
            accept_lag: None,
            position: hb.map(|(e, p)| crate::coordinator::LeaderPosition {
                node: "a".into(),
                epoch: e,
                position_ms: p,
                tail_ms: 5_000,
            }),
            served: None,
        }
    }

    /// `served` as the acquire of `acquired` leaves it (the last served epoch `epoch`).
    fn served(epoch: Option<u64>, acquired: u64) -> Option<crate::coordinator::ServedRecord> {
        Some(crate::coordinator::ServedRecord {
            epoch,
            node: epoch.map(|_| "a".into()),
            acquired,
            at_ms: 0,
        })
    }

    #[test]
    fn copies_are_judged_against_the_last_served_epoch() {
        let max = Duration::from_secs(60);
        let with = |mut v: ReplicaView, s| {
            v.served = s;
            v
        };
        // The first leader's epoch 1 never served: a never-shipped node lacks nothing.
        let v = judge("b", &with(view(None, Some(1)), served(None, 1)), 0, max);
        assert!(!v.behind && v.reason.contains("ever served"), "{v:?}");
        // Once epoch 1 served, it does (the protection is kept).
        let v = judge("b", &with(view(None, Some(1)), served(Some(1), 1)), 0, max);
        assert!(v.behind, "{v:?}");
        // The leader of served epoch 5 after an unserved epoch 6, its record old.
        let v = judge(
            "a",
            &with(view(Some((1, 5, "a")), Some(6)), served(Some(5), 6)),
            9_000_000,
            max,
        );
        assert_eq!((v.behind, v.lag_ms), (false, Some(0)), "{v:?}");
        // btrfs: a snapshot of served epoch 5 after unserved epoch 6 is compared with
        // epoch 5's heartbeat (RPO 35 s).
        let p = positioned(5, 100_000, Some((5, 130_000)), 6);
        let v = judge("b", &with(p.clone(), served(Some(5), 6)), 0, max);
        assert_eq!((v.behind, v.lag_ms), (false, Some(35_000)), "{v:?}");
        // No `served` key (a cluster from before it): the published epoch counts.
        let v = judge("b", &p, 0, max);
        assert!(
            v.behind && v.reason.contains("epoch 6 has not shipped"),
            "{v:?}"
        );
        // Epoch 7 published by a leader that does not write `served`: counts as served.
        let p = positioned(5, 100_000, Some((5, 130_000)), 7);
        let v = judge("b", &with(p, served(Some(5), 6)), 0, max);
        assert!(v.behind, "{v:?}");
        // A heartbeat of epoch 6 says epoch 6 served, whatever the record says.
        let p = positioned(5, 100_000, Some((6, 1_000)), 6);
        let v = judge("b", &with(p, served(Some(5), 6)), 0, max);
        assert!(
            v.behind && v.reason.contains("epoch 6 has not shipped"),
            "{v:?}"
        );
    }

    #[test]
    fn the_served_record_carries_the_last_served_epoch_across_acquires() {
        use crate::coordinator::ServedRecord;
        let acq = |prev: Option<ServedRecord>, published, epoch| {
            let r = ServedRecord::acquired(prev.as_ref(), published, epoch, 0);
            (r.epoch, r.acquired)
        };
        // A new cluster starts with none served.
        assert_eq!(acq(None, None, 1), (None, 1));
        // A cluster from before the record: the published epoch counts as served.
        assert_eq!(acq(None, Some(4), 5), (Some(4), 5));
        // Carried over an unserved epoch.
        assert_eq!(acq(served(Some(5), 6), Some(6), 7), (Some(5), 7));
        assert_eq!(acq(served(None, 1), Some(1), 2), (None, 2));
        // An epoch the record does not know of (an older leader) counts as served.
        assert_eq!(acq(served(Some(5), 6), Some(8), 9), (Some(8), 9));
    }

    #[test]
    fn replication_figures_are_exposed_as_metrics() {
        let h = crate::status::StatusHandle::new("a", "c", Duration::from_secs(3));
        h.update(|s| {
            let st = s.replication.entry("b".into()).or_default();
            st.rpo_ms = Some(12_500);
            st.last_bytes = Some(570);
            st.ok_total = 3;
            st.diverged.insert("data@diverged-9-x".into(), Some(6));
        });
        let m = metrics_text(&h.get());
        for line in [
            "nfsha_server_replication_rpo_seconds{standby=\"b\"} 12.5",
            "nfsha_server_replication_last_bytes{standby=\"b\"} 570",
            "nfsha_server_replication_ok_total{standby=\"b\"} 3",
            "nfsha_server_diverged_changed_files{node=\"b\",snapshot=\"data@diverged-9-x\"} 6",
            "nfsha_server_primary 0",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} not in\n{m}");
        }
    }

    #[test]
    fn the_btrfs_gate_compares_only_the_leaders_own_positions() {
        let max = Duration::from_secs(60);
        // Snapshot at 100 s, last heartbeat at 130 s, tail 5 s: RPO bound 35 s.
        let v = judge("b", &positioned(7, 100_000, Some((7, 130_000)), 7), 0, max);
        assert_eq!((v.behind, v.lag_ms), (false, Some(35_000)), "{v:?}");
        // The standby's own wall clock (the reference) is ignored: skewed by a day
        // either way, same verdict.
        for skewed in [u64::MAX / 2, 0, 86_400_000] {
            let w = judge(
                "b",
                &positioned(7, 100_000, Some((7, 130_000)), 7),
                skewed,
                max,
            );
            assert_eq!(w, v);
        }
        // Stale: the leader kept going 2 minutes past the snapshot.
        let v = judge("b", &positioned(7, 100_000, Some((7, 220_000)), 7), 0, max);
        assert_eq!((v.behind, v.lag_ms), (true, Some(125_000)), "{v:?}");
        assert!(v.reason.contains("data@7-x"), "{}", v.reason);
        // A snapshot of an older epoch cannot be compared with a newer heartbeat.
        let v = judge("b", &positioned(7, 100_000, Some((9, 1_000)), 9), 0, max);
        assert!(v.behind && v.lag_ms.is_none(), "{v:?}");
        assert!(v.reason.contains("epoch 9 has not shipped"), "{}", v.reason);
        // Published epoch moved on although no heartbeat of it was written yet.
        let v = judge("b", &positioned(7, 100_000, Some((7, 101_000)), 8), 0, max);
        assert!(v.behind, "{v:?}");
        // No heartbeat position at all: unknown, behind.
        let v = judge("b", &positioned(7, 100_000, None, 7), 0, max);
        assert!(v.behind && v.reason.contains("no heartbeat"), "{v:?}");
        // A heartbeat older than the snapshot (written before it): tail only.
        let v = judge("b", &positioned(7, 100_000, Some((7, 99_000)), 7), 0, max);
        assert_eq!(v.lag_ms, Some(5_000));
    }
}
