//! Choosing the server to mount from, and deciding when a healthy mount should move.
//!
//! Preference is the config's: lower weight first, then the order written. Only
//! servers that answered an RPC probe are candidates; RTT breaks exact ties only, so
//! a fast standby never wins over a healthy primary. A candidate is a `host:export`
//! pair ([`Replica`]). For replica volumes (different export paths) preference does
//! not decide at all: [`choose_replica`] keeps the active replica, fails over only when
//! it does not answer, and chooses nothing without one; such mounts never fail back.

use crate::host::ServerProbe;
use nfsha_config::{FailbackPolicy, MountConfig, Replica};
use std::time::Duration;

/// Reachable candidates of `mount`, best first, as `host:export` pairs. RPC
/// reachability is a property of the host, so a probe answers for every export of it.
pub fn rank(mount: &MountConfig, probes: &[ServerProbe]) -> Vec<Replica> {
    let mut candidates: Vec<(u32, usize, Duration, Replica)> = mount
        .servers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let p = probes.iter().find(|p| p.host == s.host)?;
            p.reachable.then(|| {
                (
                    s.weight,
                    i,
                    p.rtt.unwrap_or(Duration::MAX),
                    mount.replica_of(s),
                )
            })
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.cmp(&b.2)));
    candidates.into_iter().map(|c| c.3).collect()
}

/// The most preferred candidate of `mount` regardless of reachability.
pub fn preferred(mount: &MountConfig) -> Option<Replica> {
    mount
        .servers
        .iter()
        .enumerate()
        .min_by_key(|(i, s)| (s.weight, *i))
        .map(|(_, s)| mount.replica_of(s))
}

/// What to mount, for a mount with replica volumes ([`MountConfig::has_replicas`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaChoice {
    /// The active replica answers: mount it.
    Active(Replica),
    /// The active replica does not answer and `to` does: fail over (a new generation,
    /// recorded before the new mount is moved in).
    Failover {
        /// The active replica that does not answer.
        from: Replica,
        /// The best reachable other replica.
        to: Replica,
    },
    /// No active replica is known: choose none (see [`crate::replica`]).
    NoActive,
    /// No candidate answers.
    NoneReachable,
}

/// Choose among `ranked` (reachable, best first, from [`rank`]) given the recorded
/// `active` replica. Never returns a replica other than the active one unless the
/// active one is not in `ranked` (then it is a [`ReplicaChoice::Failover`]), and never
/// guesses when there is no active replica.
pub fn choose_replica(ranked: &[Replica], active: Option<&Replica>) -> ReplicaChoice {
    let Some(active) = active else {
        return ReplicaChoice::NoActive;
    };
    if ranked.contains(active) {
        return ReplicaChoice::Active(active.clone());
    }
    match ranked.first() {
        Some(to) => ReplicaChoice::Failover {
            from: active.clone(),
            to: to.clone(),
        },
        None => ReplicaChoice::NoneReachable,
    }
}

/// Whether a healthy mount on `current` should move back to a more preferred server.
///
/// `reachable_for` is how long each server has answered continuously. Never for
/// replica volumes: the preferred one may be the stale source.
pub fn should_fail_back(
    mount: &MountConfig,
    current: &Replica,
    reachable_for: impl Fn(&str) -> Option<Duration>,
) -> Option<Replica> {
    if mount.failback != FailbackPolicy::WhenPreferredHealthy || mount.has_replicas() {
        return None;
    }
    let best = preferred(mount)?;
    if best == *current {
        return None;
    }
    let pos = |r: &Replica| {
        mount
            .servers
            .iter()
            .enumerate()
            .find(|(_, s)| mount.replica_of(s) == *r)
            .map(|(i, s)| (s.weight, i))
    };
    // Only move towards a server that is strictly more preferred.
    if pos(&best)? >= pos(current).unwrap_or((u32::MAX, usize::MAX)) {
        return None;
    }
    let up = reachable_for(&best.host)?;
    (up >= mount.failback_after).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfsha_config::ServerRef;

    fn mount(servers: &[(&str, u32)]) -> MountConfig {
        let servers = servers
            .iter()
            .map(|(h, w)| ServerRef {
                host: h.to_string(),
                export: None,
                weight: *w,
            })
            .collect();
        MountConfig::new("/m", "/export", servers)
    }

    fn probe(host: &str, reachable: bool, rtt_ms: u64) -> ServerProbe {
        ServerProbe {
            host: host.into(),
            addresses: vec![],
            reachable,
            rtt: Some(Duration::from_millis(rtt_ms)),
            error: None,
        }
    }

    #[test]
    fn preference_beats_rtt_and_unreachable_servers_are_dropped() {
        let m = mount(&[("a", 0), ("b", 0), ("c", 0)]);
        let r = rank(
            &m,
            &[
                probe("a", false, 1),
                probe("b", true, 50),
                probe("c", true, 1),
            ],
        );
        assert_eq!(hosts(&r), vec!["b", "c"]);
    }

    #[test]
    fn weight_orders_before_position() {
        let m = mount(&[("a", 5), ("b", 1)]);
        let r = rank(&m, &[probe("a", true, 1), probe("b", true, 9)]);
        assert_eq!(hosts(&r), vec!["b", "a"]);
        assert_eq!(preferred(&m).unwrap().host, "b");
    }

    fn hosts(r: &[Replica]) -> Vec<&str> {
        r.iter().map(|r| r.host.as_str()).collect()
    }

    fn at(m: &MountConfig, host: &str) -> Replica {
        m.replicas().into_iter().find(|r| r.host == host).unwrap()
    }

    #[test]
    fn never_policy_never_fails_back() {
        let m = mount(&[("a", 0), ("b", 0)]);
        assert_eq!(
            should_fail_back(&m, &at(&m, "b"), |_| Some(Duration::from_secs(3600))),
            None
        );
    }

    #[test]
    fn fails_back_only_after_the_preferred_server_stayed_up() {
        let mut m = mount(&[("a", 0), ("b", 0)]);
        m.failback = FailbackPolicy::WhenPreferredHealthy;
        let (a, b) = (at(&m, "a"), at(&m, "b"));
        assert_eq!(
            should_fail_back(&m, &b, |_| Some(Duration::from_secs(10))),
            None
        );
        assert_eq!(
            should_fail_back(&m, &b, |_| Some(Duration::from_secs(61))),
            Some(a.clone())
        );
        assert_eq!(should_fail_back(&m, &a, |_| Some(Duration::MAX)), None);
        assert_eq!(should_fail_back(&m, &b, |_| None), None);
        // Replica volumes never fail back, whatever the policy says.
        m.servers[1].export = Some("/other".into());
        let b = at(&m, "b");
        assert_eq!(should_fail_back(&m, &b, |_| Some(Duration::MAX)), None);
    }

    #[test]
    fn replicas_are_ranked_as_host_export_pairs() {
        let mut m = mount(&[("src", 0), ("dst", 1)]);
        m.servers[1].export = Some("/crr-dest1".into());
        let r = rank(&m, &[probe("src", true, 9), probe("dst", true, 1)]);
        assert_eq!(
            r.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["src:/export", "dst:/crr-dest1"]
        );
    }

    #[test]
    fn the_active_replica_wins_over_the_preferred_one() {
        let src = Replica {
            host: "src".into(),
            export: "/a".into(),
        };
        let dst = Replica {
            host: "dst".into(),
            export: "/b".into(),
        };
        let both = [src.clone(), dst.clone()];
        assert_eq!(
            choose_replica(&both, Some(&dst)),
            ReplicaChoice::Active(dst.clone())
        );
        assert_eq!(
            choose_replica(std::slice::from_ref(&dst), Some(&src)),
            ReplicaChoice::Failover {
                from: src.clone(),
                to: dst.clone()
            }
        );
        assert_eq!(choose_replica(&both, None), ReplicaChoice::NoActive);
        assert_eq!(
            choose_replica(&[], Some(&src)),
            ReplicaChoice::NoneReachable
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the candidates, weights, reachability and RTTs: the choice is
            /// the active replica whenever it answers, a failover only when it does
            /// not (to a reachable one), and nothing without an active replica.
            #[test]
            fn selection_never_returns_a_non_active_replica(
                servers in prop::collection::vec((0u8..4, 0u8..3, 0u32..3), 1..6),
                reach in prop::collection::vec((any::<bool>(), 0u64..50), 6),
                active in prop::option::of(0usize..6),
            ) {
                let mut cfg = MountConfig::new("/m", "/e0", vec![]);
                for (h, e, w) in &servers {
                    let s = ServerRef {
                        host: format!("h{h}"),
                        export: Some(format!("/e{e}")),
                        weight: *w,
                    };
                    if cfg.server_for(&cfg.replica_of(&s)).is_none() {
                        cfg.servers.push(s);
                    }
                }
                let probes: Vec<ServerProbe> = (0..4)
                    .map(|h| probe(&format!("h{h}"), reach[h].0, reach[h].1))
                    .collect();
                let ranked = rank(&cfg, &probes);
                let all = cfg.replicas();
                let active = active.and_then(|i| all.get(i).cloned());
                match choose_replica(&ranked, active.as_ref()) {
                    ReplicaChoice::Active(r) => {
                        prop_assert_eq!(Some(&r), active.as_ref());
                        prop_assert!(ranked.contains(&r));
                    }
                    ReplicaChoice::Failover { from, to } => {
                        prop_assert_eq!(Some(&from), active.as_ref());
                        prop_assert!(!ranked.contains(&from), "the active one answers");
                        prop_assert_ne!(&to, &from);
                        prop_assert!(ranked.contains(&to));
                        prop_assert!(cfg.server_for(&to).is_some());
                    }
                    ReplicaChoice::NoActive => prop_assert!(active.is_none()),
                    ReplicaChoice::NoneReachable => {
                        prop_assert!(active.is_some());
                        prop_assert!(ranked.is_empty());
                    }
                }
            }
        }
    }
}
