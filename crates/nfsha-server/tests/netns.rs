//! `netns_` tier: the floating address through netlink and ARP ([`NetlinkAddress`] and
//! [`CommandHost`]'s floating-address step) inside network namespaces this test creates:
//! `node` (v0) and `peer` (v1, 10.99.0.9/24) joined by a veth pair; every address used
//! is in 10.99.0.0/24 or fd00:99::/64 and exists only inside them. Needs root and
//! iproute2 (`ip`, to build the namespaces and to look into them). No arping.
//!
//! **Entering a namespace.** Netlink and packet sockets belong to the network namespace
//! of the thread that opens them. So every operation under test runs through
//! [`in_ns`]: a fresh thread `setns(2)`s into `/run/netns/NAME` and builds a
//! *current-thread* tokio runtime there, so that every socket the code opens (including
//! those of its background gratuitous-ARP task) is opened on that thread, inside the
//! namespace. The test thread itself never leaves the original namespace.

use nfsha_config::{FloatingAddress, ServerConfig, StorageMode};
use nfsha_server::{
    AddressOps, CommandHost, CommandOptions, HostError, NetlinkAddress, NetlinkError, ServerHost,
    Step,
};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

const FLOATING: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
/// The MAC the peer believes the floating address has before the test (a stale entry
/// left by the "old server").
const OLD_MAC: &str = "02:00:00:00:00:99";

fn sh(argv: &[&str]) -> (bool, String) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn sh_ok(argv: &[&str]) -> String {
    let (ok, out) = sh(argv);
    assert!(ok, "{argv:?} failed: {out}");
    out
}

fn require_root_and_tools() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the netns_ tests need root (network namespaces, netlink, packet sockets): \
         run them as root, e.g. `sudo -E cargo nextest run -p nfsha-server -E 'test(netns_)'`"
    );
    assert!(
        sh(&["ip", "-V"]).0,
        "`ip` is missing: the netns_ tests need it. Install it with `apt-get install iproute2`."
    );
}

/// Run `f` on a thread inside network namespace `ns` (see the module header).
fn in_ns<T, F, Fut>(ns: &str, f: F) -> T
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
{
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns({path}): {e}"));
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Poll `cond` until it holds or `limit` passes; the last observation goes in the panic.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> (bool, String)) {
    let deadline = Instant::now() + limit;
    loop {
        let (ok, seen) = cond();
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last seen: {seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two namespaces joined by a veth pair: `node` (v0) and `peer` (v1, 10.99.0.9/24).
struct Pair {
    node: String,
    peer: String,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        require_root_and_tools();
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
            sh_ok(s);
        }
        p
    }

    fn node_addrs(&self, family: &str) -> String {
        sh_ok(&[
            "ip", "-n", &self.node, "-o", family, "addr", "show", "dev", "v0",
        ])
    }

    fn node_mac(&self) -> String {
        let out = sh_ok(&["ip", "-n", &self.node, "-o", "link", "show", "dev", "v0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {out}"))
            .to_owned()
    }

    /// The peer's neighbour entry for the floating address.
    fn peer_neigh(&self) -> String {
        sh_ok(&[
            "ip",
            "-n",
            &self.peer,
            "neigh",
            "show",
            &FLOATING.to_string(),
            "dev",
            "v1",
        ])
    }

    /// The peer believes the floating address is at [`OLD_MAC`].
    fn seed_stale_neighbour(&self) {
        sh_ok(&[
            "ip",
            "-n",
            &self.peer,
            "neigh",
            "replace",
            &FLOATING.to_string(),
            "lladdr",
            OLD_MAC,
            "dev",
            "v1",
            "nud",
            "stale",
        ]);
        assert!(self.peer_neigh().contains(OLD_MAC), "{}", self.peer_neigh());
    }

    fn peer_addr(&self, verb: &str) {
        sh_ok(&[
            "ip",
            "-n",
            &self.peer,
            "addr",
            verb,
            "10.99.0.100/24",
            "dev",
            "v1",
        ]);
    }

    /// Bring the floating-address step up (or down) with the default (netlink) host,
    /// inside the node namespace.
    fn host_step(&self, up: bool, opts: CommandOptions) -> Result<(), HostError> {
        in_ns(&self.node, || async move {
            let host = CommandHost::new(config(), opts);
            if up {
                host.up(Step::FloatingAddress, 1).await
            } else {
                host.down(Step::FloatingAddress).await
            }
        })
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
            address: IpAddr::V4(FLOATING),
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
        commands: Default::default(),
        replication: None,
    }
}

#[test]
fn netns_netlink_add_is_visible_and_del_is_idempotent() {
    let pair = Pair::new("nl");
    let ip = IpAddr::V4(FLOATING);
    let has = in_ns(&pair.node, || async {
        let nl = NetlinkAddress::new();
        nl.add("v0", ip, 24).await.expect("add");
        nl.add("v0", ip, 24)
            .await
            .expect("adding it again is a no-op");
        nl.has("v0", ip).await.expect("has")
    });
    assert!(has);
    let shown = pair.node_addrs("-4");
    assert!(shown.contains("10.99.0.100/24"), "{shown}");

    let (has, missing_if) = in_ns(&pair.node, || async {
        let nl = NetlinkAddress::new();
        nl.del("v0", ip).await.expect("del");
        nl.del("v0", ip)
            .await
            .expect("deleting it again is a no-op");
        nl.del("nfsha-nope0", ip)
            .await
            .expect("no interface, no address");
        (
            nl.has("v0", ip).await.expect("has"),
            nl.has("nfsha-nope0", ip).await,
        )
    });
    assert!(!has);
    assert!(
        matches!(&missing_if, Err(NetlinkError::NoInterface { interface }) if interface == "nfsha-nope0"),
        "{missing_if:?}"
    );
    assert!(!pair.node_addrs("-4").contains("10.99.0.100"));

    // IPv6 goes on with IFA_F_NODAD: usable at once, never "tentative".
    let v6: IpAddr = "fd00:99::100".parse().expect("ip");
    in_ns(&pair.node, || async {
        NetlinkAddress::new()
            .add("v0", v6, 64)
            .await
            .expect("add v6");
    });
    let shown = pair.node_addrs("-6");
    let line = shown
        .lines()
        .find(|l| l.contains("fd00:99::100/64"))
        .unwrap_or_else(|| panic!("fd00:99::100/64 not on v0: {shown}"));
    assert!(
        line.contains("nodad") && !line.contains("tentative"),
        "{line}"
    );
    in_ns(&pair.node, || async {
        NetlinkAddress::new().del("v0", v6).await.expect("del v6");
    });
    assert!(!pair.node_addrs("-6").contains("fd00:99::100"));
}

#[test]
fn netns_gratuitous_arp_moves_the_peer_neighbour_entry_to_this_node() {
    let pair = Pair::new("garp");
    let mac = pair.node_mac();
    pair.seed_stale_neighbour();
    in_ns(&pair.node, || async {
        let nl = NetlinkAddress::new();
        nl.add("v0", IpAddr::V4(FLOATING), 24).await.expect("add");
        nl.announce("v0", FLOATING).await.expect("announce");
    });
    // A fresh stale entry is inside the kernel's 1 s lock time: only a packet the peer
    // recognises as gratuitous ARP may override it this early.
    wait_until(Duration::from_secs(3), "peer learns the node's MAC", || {
        let n = pair.peer_neigh();
        (n.contains(&mac), n)
    });
}

#[test]
fn netns_command_host_brings_the_address_up_and_down_idempotently() {
    let pair = Pair::new("fa");
    let mac = pair.node_mac();
    pair.seed_stale_neighbour();
    pair.host_step(true, CommandOptions::default())
        .expect("address up");
    let shown = pair.node_addrs("-4");
    assert!(shown.contains("10.99.0.100/24"), "{shown}");
    wait_until(Duration::from_secs(3), "peer learns the node's MAC", || {
        let n = pair.peer_neigh();
        (n.contains(&mac), n)
    });
    pair.host_step(true, CommandOptions::default())
        .expect("up again: the address is already there");
    pair.host_step(false, CommandOptions::default())
        .expect("address down");
    assert!(!pair.node_addrs("-4").contains("10.99.0.100"));
    pair.host_step(false, CommandOptions::default())
        .expect("down again is a no-op");
}

#[test]
fn netns_duplicate_address_check_refuses_an_address_the_peer_owns() {
    let pair = Pair::new("dad");
    let free = in_ns(&pair.node, || async {
        NetlinkAddress::new()
            .probe_duplicate("v0", FLOATING)
            .await
            .expect("probe")
    });
    assert!(!free, "nobody holds it yet");

    pair.peer_addr("add");
    let taken = in_ns(&pair.node, || async {
        NetlinkAddress::new()
            .probe_duplicate("v0", FLOATING)
            .await
            .expect("probe")
    });
    assert!(taken, "the peer answers the probe");
    let err = pair
        .host_step(true, CommandOptions::default())
        .expect_err("in use elsewhere");
    assert!(
        matches!(err, HostError::DuplicateAddress(ref a) if a == "10.99.0.100"),
        "{err:?}"
    );
    assert!(!pair.node_addrs("-4").contains("10.99.0.100"), "not added");

    // Once the other holder lets go, it can move here.
    pair.peer_addr("del");
    pair.host_step(true, CommandOptions::default())
        .expect("address moves");
    assert!(pair.node_addrs("-4").contains("10.99.0.100/24"));
}

#[test]
fn netns_a_failed_gratuitous_arp_removes_the_address_again() {
    let pair = Pair::new("fail");
    // An address can be added to a down interface, but no ARP can be sent on it.
    sh_ok(&["ip", "-n", &pair.node, "link", "set", "v0", "down"]);
    let err = pair
        .host_step(
            true,
            CommandOptions {
                duplicate_address_check: false,
                ..CommandOptions::default()
            },
        )
        .expect_err("announce on a down link fails");
    assert!(
        matches!(
            &err,
            HostError::Address(NetlinkError::Arp { interface, address, source, .. })
                if interface == "v0" && *address == FLOATING
                    && source.raw_os_error() == Some(libc::ENETDOWN)
        ),
        "{err:?}"
    );
    assert!(
        !pair.node_addrs("-4").contains("10.99.0.100"),
        "{}",
        pair.node_addrs("-4")
    );
}
