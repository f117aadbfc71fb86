//! The server's alert rules (`contrib/prometheus/nfsha-server-alerts.yml`) use only metric
//! names the status API's `/metrics` really produces, and promtool accepts the rules and
//! passes their unit tests (`nfsha-server-alerts.test.yml`).

use nfsha_server::{MemberState, ShipStatus, StatusHandle};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/prometheus")
}

/// promtool from `$PROMTOOL`, `$PATH`, or the unpacked Debian package under /var/tmp.
fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("promtool"))
        .chain([PathBuf::from("/var/tmp/nfsha-promtool/root/usr/bin/promtool")])
        .find(|c| c.is_file())
        .expect("promtool is missing: see crates/nfsha-metrics/tests/contrib.rs for how to get it, or set PROMTOOL")
}

/// Every family a leader with one standby and a lagging standby exports.
fn exported() -> String {
    let h = StatusHandle::new("nfs-1", "c", Duration::from_secs(10));
    h.update(|s| {
        s.state = MemberState::Primary;
        s.serving = true;
        s.lag_ms = Some(1500);
        s.replication.insert(
            "nfs-2".into(),
            ShipStatus {
                ok_total: 3,
                failed_total: 1,
                rpo_ms: Some(20_000),
                last_bytes: Some(4096),
                ..ShipStatus::default()
            },
        );
    });
    nfsha_server::replication::metrics_text(&h.get())
}

#[test]
fn server_alert_rules_use_exported_metrics_and_pass_promtool() {
    let rules = std::fs::read_to_string(contrib().join("nfsha-server-alerts.yml")).unwrap();
    let scrape = exported();
    let mut n = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("nfsha_server_") {
            n += 1;
            assert!(
                scrape.contains(&format!("# TYPE {word} ")),
                "{word} is used by an alert but not exported:\n{scrape}"
            );
        }
    }
    assert!(n >= 5, "only {n} metric references");
    let p = promtool();
    for args in [
        vec!["check", "rules", "nfsha-server-alerts.yml"],
        vec!["test", "rules", "nfsha-server-alerts.test.yml"],
    ] {
        let out = Command::new(&p)
            .args(&args)
            .current_dir(contrib())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
