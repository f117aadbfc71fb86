//! `netns_` tier: the real host's floating-address step (duplicate-address check,
//! `ip addr add`, gratuitous ARP, idempotent `ip addr del`) inside network namespaces
//! this test creates (veth pair, 10.99.0.0/24 only inside them). Needs root, iproute2
//! and `arping` (Debian `iputils-arping`).

use nfsha_config::{FloatingAddress, ServerConfig, StorageMode};
use nfsha_server::{CommandHost, CommandOptions, HostError, ServerHost, Step};
use std::process::Command;
use std::time::Duration;

fn sh(argv: &[&str]) -> (bool, String) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn require_tools() {
    for (tool, pkg) in [
        ("/usr/bin/arping", "iputils-arping"),
        ("/usr/sbin/ip", "iproute2"),
    ] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: the netns_ tests need it. Install it with `apt-get install {pkg}`."
        );
    }
}

/// Two namespaces joined by a veth pair: `node` (v0) and `peer` (v1, 10.99.0.9/24).
struct Pair {
    node: String,
    peer: String,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        require_tools();
        let p = Pair {
            node: format!("nfsha-{tag}-n-{}", std::process::id()),
            peer: format!("nfsha-{tag}-p-{}", std::process::id()),
        };
        for ns in [&p.node, &p.peer] {
            let (ok, out) = sh(&["ip", "netns", "add", ns]);
            assert!(
                ok,
                "ip netns add {ns} failed (the netns_ tests need root): {out}"
            );
        }
        let steps: [&[&str]; 4] = [
            &[
                "ip", "-n", &p.node, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
                "netns", &p.peer,
            ],
            &["ip", "-n", &p.node, "link", "set", "v0", "up"],
            &["ip", "-n", &p.peer, "link", "set", "v1", "up"],
            &[
                "ip",
                "-n",
                &p.peer,
                "addr",
                "add",
                "10.99.0.9/24",
                "dev",
                "v1",
            ],
        ];
        for s in steps {
            let (ok, out) = sh(s);
            assert!(ok, "{s:?} failed: {out}");
        }
        p
    }

    fn addrs(&self, ns: &str, dev: &str) -> String {
        sh(&["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", dev]).1
    }

    fn host(&self) -> CommandHost {
        CommandHost::new(
            config(),
            CommandOptions {
                prefix: vec![
                    "ip".into(),
                    "netns".into(),
                    "exec".into(),
                    self.node.clone(),
                ],
                ..CommandOptions::default()
            },
        )
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.node, &self.peer] {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        node: "n".into(),
        cluster: "c".into(),
        etcd_endpoints: vec![],
        etcd_tls: None,
        etcd_auth: None,
        ttl: Duration::from_secs(10),
        loop_period: Duration::from_secs(1),
        safety_margin: Duration::from_secs(5),
        exports: vec![],
        floating_address: Some(FloatingAddress {
            address: "10.99.0.100".parse().expect("ip"),
            prefix: 24,
            interface: "v0".into(),
        }),
        state_dir: "/var/lib/nfs".into(),
        nfsd_lease: Duration::from_secs(10),
        nfsd_grace: Duration::from_secs(10),
        scope: "c".into(),
        storage: StorageMode::Shared,
        step_timeout: Duration::from_secs(10),
        hooks: vec![],
        listen: None,
        watchdog_device: None,
        replication: None,
    }
}

#[tokio::test]
async fn netns_floating_address_goes_up_and_down_idempotently() {
    let pair = Pair::new("fa");
    let host = pair.host();
    host.up(Step::FloatingAddress, 1).await.expect("address up");
    assert!(
        pair.addrs(&pair.node, "v0").contains("10.99.0.100/24"),
        "{}",
        pair.addrs(&pair.node, "v0")
    );
    // The peer can reach it.
    let (ok, out) = sh(&[
        "ip",
        "netns",
        "exec",
        &pair.peer,
        "arping",
        "-c",
        "1",
        "-w",
        "2",
        "-I",
        "v1",
        "10.99.0.100",
    ]);
    assert!(ok, "peer resolves the floating address: {out}");
    host.down(Step::FloatingAddress)
        .await
        .expect("address down");
    assert!(!pair.addrs(&pair.node, "v0").contains("10.99.0.100"));
    host.down(Step::FloatingAddress)
        .await
        .expect("down again is a no-op");
}

#[tokio::test]
async fn netns_duplicate_address_check_refuses_an_address_in_use() {
    let pair = Pair::new("dad");
    let (ok, out) = sh(&[
        "ip",
        "-n",
        &pair.peer,
        "addr",
        "add",
        "10.99.0.100/24",
        "dev",
        "v1",
    ]);
    assert!(ok, "{out}");
    let err = pair
        .host()
        .up(Step::FloatingAddress, 1)
        .await
        .expect_err("in use elsewhere");
    assert!(
        matches!(err, HostError::DuplicateAddress(ref a) if a == "10.99.0.100"),
        "{err:?}"
    );
    assert!(
        !pair.addrs(&pair.node, "v0").contains("10.99.0.100"),
        "not added"
    );
    // Once the other holder lets go, it can move here.
    let (ok, out) = sh(&[
        "ip",
        "-n",
        &pair.peer,
        "addr",
        "del",
        "10.99.0.100/24",
        "dev",
        "v1",
    ]);
    assert!(ok, "{out}");
    pair.host()
        .up(Step::FloatingAddress, 2)
        .await
        .expect("address moves");
    assert!(pair.addrs(&pair.node, "v0").contains("10.99.0.100/24"));
}
