//! `rank`: reachable first, then weight (lower first), then configuration order; RTT only breaks exact ties.

use std::time::Duration;

use nfsha_rpc::{ServerProbe, rank};

fn probe(host: &str, reachable: bool, rtt_ms: u64) -> ServerProbe {
    ServerProbe {
        host: host.into(),
        reachable,
        rtt: reachable.then(|| Duration::from_millis(rtt_ms)),
        checks: vec![],
        error: (!reachable).then(|| "nfs-null: Connection refused".into()),
    }
}

fn pref(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(h, w)| ((*h).to_owned(), *w)).collect()
}

#[test]
fn reachable_servers_come_first() {
    let probes = [
        probe("a", false, 0),
        probe("b", true, 5),
        probe("c", true, 1),
    ];
    assert_eq!(
        rank(&probes, &pref(&[("a", 0), ("b", 0), ("c", 0)])),
        ["b", "c", "a"]
    );
}

#[test]
fn lower_weight_wins_over_config_order_and_rtt() {
    let probes = [probe("a", true, 1), probe("b", true, 50)];
    assert_eq!(rank(&probes, &pref(&[("a", 5), ("b", 1)])), ["b", "a"]);
}

#[test]
fn config_order_wins_over_rtt_at_equal_weight() {
    let probes = [probe("slow", true, 90), probe("fast", true, 1)];
    assert_eq!(
        rank(&probes, &pref(&[("slow", 0), ("fast", 0)])),
        ["slow", "fast"]
    );
}

#[test]
fn rtt_breaks_ties_among_unlisted_hosts_after_listed_ones() {
    let probes = [
        probe("x", true, 9),
        probe("y", true, 2),
        probe("listed", true, 50),
    ];
    assert_eq!(rank(&probes, &pref(&[("listed", 0)])), ["listed", "y", "x"]);
}

#[test]
fn unprobed_listed_hosts_count_as_unreachable_and_everyone_appears_once() {
    let probes = [probe("b", true, 3), probe("b", true, 3)];
    assert_eq!(
        rank(&probes, &pref(&[("a", 0), ("b", 9), ("a", 0)])),
        ["b", "a"]
    );
}

#[test]
fn unreachable_ones_keep_preference_order() {
    let probes = [
        probe("a", false, 0),
        probe("b", false, 0),
        probe("c", false, 0),
    ];
    assert_eq!(
        rank(&probes, &pref(&[("c", 0), ("a", 1), ("b", 0)])),
        ["c", "b", "a"]
    );
}

#[test]
fn nothing_to_rank() {
    assert!(rank(&[], &[]).is_empty());
}
