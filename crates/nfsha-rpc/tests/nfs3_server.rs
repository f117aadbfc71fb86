//! Probes against a real NFSv3 server on loopback: the `nfs3_server` crate (portmap + MOUNT + NFSv3 on one port).

mod common;

use std::time::Duration;

use nfsha_rpc::{
    IPPROTO_TCP, MOUNT_PROGRAM, MOUNT_VERSION, NFS_PROGRAM, PMAP_PROGRAM, PMAP_VERSION,
    ProbeTarget, RpcError, getport, probe_server, rpc_null,
};

const T: Duration = Duration::from_secs(2);

#[tokio::test]
async fn null_v3_getport_and_mount_null_succeed() {
    let server = common::nfs3_server().await;
    let rtt = rpc_null(server, NFS_PROGRAM, 3, T)
        .await
        .expect("NFS v3 NULL");
    assert!(rtt > Duration::ZERO && rtt < T, "implausible RTT {rtt:?}");
    let rtt = rpc_null(server, PMAP_PROGRAM, PMAP_VERSION, T)
        .await
        .expect("portmap NULL");
    assert!(rtt < T);

    // nfs3_server's portmapper answers its own port for every program.
    let nfs_port = getport(server, NFS_PROGRAM, 3, IPPROTO_TCP, T)
        .await
        .expect("GETPORT nfs");
    assert_eq!(nfs_port, server.port());
    let mount_port = getport(server, MOUNT_PROGRAM, MOUNT_VERSION, IPPROTO_TCP, T)
        .await
        .expect("GETPORT mount");
    assert_eq!(mount_port, server.port());

    let rtt = rpc_null(server, MOUNT_PROGRAM, MOUNT_VERSION, T)
        .await
        .expect("MOUNT NULL");
    assert!(rtt > Duration::ZERO && rtt < T, "implausible RTT {rtt:?}");
}

#[tokio::test]
async fn null_v4_against_a_v3_only_server_is_prog_mismatch_with_the_range() {
    let server = common::nfs3_server().await;
    let err = rpc_null(server, NFS_PROGRAM, 4, T)
        .await
        .expect_err("v4 is not served");
    assert!(
        matches!(
            err,
            RpcError::ProgMismatch {
                program: 100_003,
                version: 4,
                low: 3,
                high: 3
            }
        ),
        "{err:?}"
    );
    assert!(err.server_answered());
    assert_eq!(
        err.to_string(),
        "Program 100003 version 4 not served (versions 3 to 3 are)"
    );
}

#[tokio::test]
async fn unknown_program_is_prog_unavail() {
    let server = common::nfs3_server().await;
    let err = rpc_null(server, 100_024, 1, T)
        .await
        .expect_err("statd is not served");
    assert!(
        matches!(err, RpcError::ProgUnavail { program: 100_024 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn probe_server_v3_end_to_end_is_reachable() {
    let server = common::nfs3_server().await;
    let target = ProbeTarget {
        host: "127.0.0.1".into(),
        nfs_version: 3,
        portmapper_port: server.port(),
        nfs_port: None,
    };
    let p = probe_server(&target, T).await;
    eprintln!("probe of nfs3_server: {p:?}");
    assert!(p.reachable, "{p:?}");
    assert_eq!(p.error, None);
    assert!(p.rtt.is_some_and(|r| r < T), "{p:?}");
    let names: Vec<_> = p.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "portmap-getport-nfs",
            "portmap-getport-mount",
            "nfs-null",
            "mount-null"
        ]
    );
    assert!(p.checks.iter().all(|c| c.result.is_ok()), "{p:?}");
}

#[tokio::test]
async fn probe_server_by_name_resolves_localhost() {
    let server = common::nfs3_server().await;
    let target = ProbeTarget {
        host: "localhost".into(),
        nfs_version: 3,
        portmapper_port: server.port(),
        nfs_port: Some(server.port()),
    };
    let first = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
        .expect("localhost resolves")
        .next()
        .expect("an address");
    let p = probe_server(&target, T).await;
    if first.is_ipv4() {
        assert!(p.reachable, "{p:?}");
        let names: Vec<_> = p.checks.iter().map(|c| c.name).collect();
        // nfs_port is given, so only MOUNT's port is asked from the portmapper.
        assert_eq!(names, ["portmap-getport-mount", "nfs-null", "mount-null"]);
    } else {
        // The probe uses the first address; nothing listens on ::1.
        assert!(
            p.error.as_deref().is_some_and(|e| e.contains("refused")),
            "{p:?}"
        );
    }
}

#[tokio::test]
async fn probe_server_v4_against_a_v3_server_is_not_reachable() {
    let server = common::nfs3_server().await;
    let mut target = ProbeTarget::new("127.0.0.1", 4);
    target.nfs_port = Some(server.port());
    let p = probe_server(&target, T).await;
    assert!(!p.reachable);
    assert_eq!(p.rtt, None);
    assert_eq!(p.checks.len(), 1);
    assert_eq!(p.checks[0].name, "nfs-null");
    let e = p.error.expect("error");
    assert!(
        e.starts_with("nfs-null: Program 100003 version 4 not served"),
        "{e}"
    );
}

/// Sockets in TIME_WAIT (state 06 in /proc/net/tcp) with `port` at either end.
fn time_wait_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let hex = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "06" && (f[1].ends_with(&hex) || f[2].ends_with(&hex))
        })
        .count()
}

#[tokio::test]
async fn probes_leave_no_time_wait_behind() {
    let server = common::nfs3_server().await;
    for _ in 0..20 {
        rpc_null(server, NFS_PROGRAM, 3, T).await.expect("NULL");
    }
    // SO_LINGER 0: each connection ends with a reset, so neither end keeps a TIME_WAIT entry.
    assert_eq!(time_wait_on(server.port()), 0);
}

#[tokio::test]
async fn ping_is_one_nfs_null_call_and_says_why_it_fails() {
    let server = common::nfs3_server().await;
    let mut target = ProbeTarget::new(server.ip().to_string(), 3);
    target.nfs_port = Some(server.port());
    let rtt = nfsha_rpc::ping(&target, T)
        .await
        .expect("nfs3_server answers NULL");
    assert!(rtt < T, "{rtt:?}");
    // A closed port: refused, and the error names the address.
    let closed = common::closed_port();
    target.nfs_port = Some(closed.port());
    let err = nfsha_rpc::ping(&target, T)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(err, RpcError::ConnectRefused { addr, .. } if addr == closed),
        "{err:?}"
    );
    // A name that does not resolve: a resolve error, not a hang.
    let target = ProbeTarget::new("no-such-host.invalid", 4);
    let err = nfsha_rpc::ping(&target, T).await.expect_err("no address");
    assert!(
        matches!(
            err,
            RpcError::Resolve { .. } | RpcError::NoAddress { .. } | RpcError::ResolveTimeout { .. }
        ),
        "{err:?}"
    );
}
