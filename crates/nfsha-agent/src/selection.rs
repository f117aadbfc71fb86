//! Choosing the server to mount from, and deciding when a healthy mount should move.
//!
//! Preference is the config's: lower weight first, then the order written. Only
//! servers that answered an RPC probe are candidates; RTT breaks exact ties only, so
//! a fast standby never wins over a healthy primary.

use crate::host::ServerProbe;
use nfsha_config::{FailbackPolicy, MountConfig};
use std::time::Duration;

/// Reachable servers of `mount`, best first.
pub fn rank(mount: &MountConfig, probes: &[ServerProbe]) -> Vec<String> {
    let mut candidates: Vec<(u32, usize, Duration, String)> = mount
        .servers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let p = probes.iter().find(|p| p.host == s.host)?;
            p.reachable
                .then(|| (s.weight, i, p.rtt.unwrap_or(Duration::MAX), s.host.clone()))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.cmp(&b.2)));
    candidates.into_iter().map(|c| c.3).collect()
}

/// The most preferred server of `mount` regardless of reachability.
pub fn preferred(mount: &MountConfig) -> Option<&str> {
    mount
        .servers
        .iter()
        .enumerate()
        .min_by_key(|(i, s)| (s.weight, *i))
        .map(|(_, s)| s.host.as_str())
}

/// Whether a healthy mount on `current` should move back to a more preferred server.
///
/// `reachable_for` is how long each server has answered continuously.
pub fn should_fail_back(
    mount: &MountConfig,
    current: &str,
    reachable_for: impl Fn(&str) -> Option<Duration>,
) -> Option<String> {
    if mount.failback != FailbackPolicy::WhenPreferredHealthy {
        return None;
    }
    let best = preferred(mount)?;
    if best == current {
        return None;
    }
    let pos = |h: &str| {
        mount
            .servers
            .iter()
            .enumerate()
            .find(|(_, s)| s.host == h)
            .map(|(i, s)| (s.weight, i))
    };
    // Only move towards a server that is strictly more preferred.
    if pos(best)? >= pos(current).unwrap_or((u32::MAX, usize::MAX)) {
        return None;
    }
    let up = reachable_for(best)?;
    (up >= mount.failback_after).then(|| best.to_string())
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
        assert_eq!(r, vec!["b", "c"]);
    }

    #[test]
    fn weight_orders_before_position() {
        let m = mount(&[("a", 5), ("b", 1)]);
        let r = rank(&m, &[probe("a", true, 1), probe("b", true, 9)]);
        assert_eq!(r, vec!["b", "a"]);
        assert_eq!(preferred(&m), Some("b"));
    }

    #[test]
    fn never_policy_never_fails_back() {
        let m = mount(&[("a", 0), ("b", 0)]);
        assert_eq!(
            should_fail_back(&m, "b", |_| Some(Duration::from_secs(3600))),
            None
        );
    }

    #[test]
    fn fails_back_only_after_the_preferred_server_stayed_up() {
        let mut m = mount(&[("a", 0), ("b", 0)]);
        m.failback = FailbackPolicy::WhenPreferredHealthy;
        assert_eq!(
            should_fail_back(&m, "b", |_| Some(Duration::from_secs(10))),
            None
        );
        assert_eq!(
            should_fail_back(&m, "b", |_| Some(Duration::from_secs(61))),
            Some("a".to_string())
        );
        assert_eq!(should_fail_back(&m, "a", |_| Some(Duration::MAX)), None);
        assert_eq!(should_fail_back(&m, "b", |_| None), None);
    }
}
