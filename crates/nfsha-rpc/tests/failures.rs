//! Every failure a probe distinguishes, against loopback fixtures: silent listener, closed port, full accept queue,
//! unresolvable name, and a scripted server answering denials, garbage and fragmented replies.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{record, scripted_server, words};
use nfsha_rpc::{NFS_PROGRAM, ProbeTarget, RpcError, getport, probe_server, rpc_null};

const SLACK: Duration = Duration::from_millis(200);

#[tokio::test]
async fn silent_listener_is_a_reply_timeout_within_the_deadline() {
    let addr = common::silent_server().await;
    let timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let err = rpc_null(addr, NFS_PROGRAM, 3, timeout)
        .await
        .expect_err("no reply");
    let elapsed = t0.elapsed();
    assert!(
        matches!(err, RpcError::ReplyTimeout { addr: a } if a == addr),
        "{err:?}"
    );
    assert!(!err.server_answered());
    assert!(
        elapsed >= timeout - Duration::from_millis(5),
        "gave up early: {elapsed:?}"
    );
    assert!(elapsed <= timeout + SLACK, "deadline overrun: {elapsed:?}");
}

#[tokio::test]
async fn closed_port_is_refused_quickly() {
    let addr = common::closed_port();
    let t0 = Instant::now();
    let err = rpc_null(addr, NFS_PROGRAM, 3, Duration::from_secs(5))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, RpcError::ConnectRefused { addr: a } if a == addr),
        "{err:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "refusal took {:?}",
        t0.elapsed()
    );
    assert_eq!(err.to_string(), format!("Connection to {addr} refused"));
}

#[tokio::test]
async fn full_accept_queue_is_a_connect_timeout() {
    // A listener that never accepts, its queue full: Linux drops further SYNs.
    let (listener, _held) = common::full_listener().await;
    let addr = listener.local_addr().expect("addr");
    let timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let err = rpc_null(addr, NFS_PROGRAM, 3, timeout)
        .await
        .expect_err("no connection");
    assert!(matches!(err, RpcError::ConnectTimeout { .. }), "{err:?}");
    assert!(
        t0.elapsed() <= timeout + SLACK,
        "deadline overrun: {:?}",
        t0.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn a_dropped_syn_is_overtaken_by_a_staggered_attempt() {
    // The first SYN is dropped (full accept queue), like a SYN sent to the old node just after the floating
    // address moved. The queue frees up at 300 ms; the kernel would retransmit the first SYN only at 1 s, so
    // with a 900 ms deadline only a staggered new attempt can connect.
    let (listener, held) = common::full_listener().await;
    let addr = listener.local_addr().expect("addr");
    // Make room at 300 ms, then answer NULL calls on every accepted connection.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(answer_null_once(conn));
        }
    });
    let rtt = rpc_null(addr, NFS_PROGRAM, 3, Duration::from_millis(900))
        .await
        .expect("a staggered attempt connects after the queue frees up");
    assert!(rtt < Duration::from_millis(900), "{rtt:?}");
    drop(held);
}

/// Read one call record from `s` and answer it with an accepted, successful empty reply (NULL).
async fn answer_null_once(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(xid) = common::read_call(&mut s).await else {
        return;
    };
    // REPLY, MSG_ACCEPTED, verifier AUTH_NONE empty, SUCCESS
    let _ = s.write_all(&record(&words(&[xid, 1, 0, 0, 0, 0]))).await;
    let mut buf = [0u8; 64];
    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
}

fn long_label_name() -> String {
    // A 70-character label is invalid DNS: glibc fails it without sending a query (only loopback traffic here).
    format!("{}.invalid", "n".repeat(70))
}

#[tokio::test]
async fn unresolvable_name_fails_within_the_deadline() {
    let target = ProbeTarget::new(long_label_name(), 4);
    let timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let p = probe_server(&target, timeout).await;
    assert!(
        t0.elapsed() <= timeout + SLACK,
        "deadline overrun: {:?}",
        t0.elapsed()
    );
    assert!(!p.reachable);
    assert_eq!(p.checks.len(), 1);
    assert_eq!(p.checks[0].name, "resolve");
    let e = p.error.expect("error");
    assert!(
        e.starts_with(&format!("resolve: Cannot resolve {}", target.host)),
        "{e}"
    );
}

#[tokio::test]
async fn probe_server_of_a_dead_v3_server_is_unreachable_and_says_why() {
    let dead = common::closed_port();
    let target = ProbeTarget {
        host: "127.0.0.1".into(),
        nfs_version: 3,
        portmapper_port: dead.port(),
        nfs_port: None,
    };
    let p = probe_server(&target, Duration::from_secs(1)).await;
    assert!(!p.reachable);
    assert_eq!(p.rtt, None);
    let names: Vec<_> = p.checks.iter().map(|c| c.name).collect();
    // The NULLs depend on the ports and are not run.
    assert_eq!(names, ["portmap-getport-nfs", "portmap-getport-mount"]);
    let e = p.error.expect("error");
    assert_eq!(
        e,
        format!("portmap-getport-nfs: Connection to {dead} refused")
    );
}

#[tokio::test]
async fn probe_server_of_a_silent_v4_server_holds_the_deadline() {
    let silent = common::silent_server().await;
    let mut target = ProbeTarget::new("127.0.0.1", 4);
    target.nfs_port = Some(silent.port());
    let timeout = Duration::from_millis(400);
    let t0 = Instant::now();
    let p = probe_server(&target, timeout).await;
    assert!(
        t0.elapsed() <= timeout + SLACK,
        "deadline overrun: {:?}",
        t0.elapsed()
    );
    assert!(!p.reachable);
    assert_eq!(
        p.error.as_deref(),
        Some(format!("nfs-null: No reply from {silent} before the deadline").as_str())
    );
}

#[tokio::test]
async fn probe_server_v3_with_a_silent_portmapper_holds_the_deadline() {
    let silent = common::silent_server().await;
    let target = ProbeTarget {
        host: "127.0.0.1".into(),
        nfs_version: 3,
        portmapper_port: silent.port(),
        nfs_port: None,
    };
    let timeout = Duration::from_millis(400);
    let t0 = Instant::now();
    let p = probe_server(&target, timeout).await;
    assert!(
        t0.elapsed() <= timeout + SLACK,
        "deadline overrun: {:?}",
        t0.elapsed()
    );
    assert!(!p.reachable);
    assert!(
        p.checks
            .iter()
            .all(|c| c.result.as_ref().is_err_and(|e| e.starts_with("No reply"))),
        "{p:?}"
    );
}

#[tokio::test]
async fn unsupported_nfs_version_is_reported() {
    let p = probe_server(&ProbeTarget::new("127.0.0.1", 2), Duration::from_secs(1)).await;
    assert!(!p.reachable);
    assert_eq!(
        p.error.as_deref(),
        Some("nfs-null: Unsupported NFS version 2")
    );
}

async fn null_via(
    reply: fn(u32) -> Vec<u8>,
    chunk: usize,
) -> (SocketAddr, Result<Duration, RpcError>) {
    let addr = scripted_server(reply, chunk).await;
    (
        addr,
        rpc_null(addr, NFS_PROGRAM, 3, Duration::from_secs(2)).await,
    )
}

#[tokio::test]
async fn auth_error_is_denied() {
    // REPLY, MSG_DENIED, AUTH_ERROR, AUTH_TOOWEAK
    let (_, r) = null_via(|xid| record(&words(&[xid, 1, 1, 1, 5])), 0).await;
    let err = r.expect_err("denied");
    assert!(
        matches!(&err, RpcError::AuthDenied { stat } if stat == "AUTH_TOOWEAK"),
        "{err:?}"
    );
    assert!(err.server_answered());
    assert_eq!(err.to_string(), "Call denied: AUTH_TOOWEAK");
}

#[tokio::test]
async fn rpc_mismatch_is_denied_with_the_range() {
    let (_, r) = null_via(|xid| record(&words(&[xid, 1, 1, 0, 3, 4])), 0).await;
    assert!(
        matches!(r, Err(RpcError::RpcMismatch { low: 3, high: 4 })),
        "{r:?}"
    );
}

#[tokio::test]
async fn system_err_is_a_failed_call() {
    // REPLY, MSG_ACCEPTED, verifier AUTH_NONE empty, SYSTEM_ERR
    let (_, r) = null_via(|xid| record(&words(&[xid, 1, 0, 0, 0, 5])), 0).await;
    assert!(
        matches!(r, Err(RpcError::CallFailed { stat: "SYSTEM_ERR" })),
        "{r:?}"
    );
}

#[tokio::test]
async fn fragmented_reply_in_small_pieces_succeeds() {
    // The accepted reply split into two fragments (the first without the last-fragment bit), sent 3 bytes at a time.
    let (_, r) = null_via(
        |xid| {
            let body = words(&[xid, 1, 0, 0, 0, 0]);
            let (a, b) = body.split_at(10);
            let mut out = u32::try_from(a.len())
                .expect("small")
                .to_be_bytes()
                .to_vec();
            out.extend_from_slice(a);
            out.extend(record(b));
            out
        },
        3,
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn http_answer_is_garbage() {
    let (_, r) = null_via(|_| b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), 0).await;
    let err = r.expect_err("garbage");
    assert!(
        matches!(&err, RpcError::Garbage { what } if what.contains("record longer")),
        "{err:?}"
    );
    assert!(!err.server_answered());
}

#[tokio::test]
async fn wrong_xid_is_garbage() {
    let (_, r) = null_via(|xid| record(&words(&[xid ^ 1, 1, 0, 0, 0, 0])), 0).await;
    assert!(
        matches!(&r, Err(RpcError::Garbage { what }) if what.starts_with("xid")),
        "{r:?}"
    );
}

#[tokio::test]
async fn huge_verifier_length_is_garbage_not_an_allocation() {
    let (_, r) = null_via(|xid| record(&words(&[xid, 1, 0, 0, 0xffff_fff0, 0])), 0).await;
    assert!(
        matches!(&r, Err(RpcError::Garbage { what }) if what.starts_with("verifier")),
        "{r:?}"
    );
}

#[tokio::test]
async fn unknown_accept_stat_is_garbage() {
    let (_, r) = null_via(|xid| record(&words(&[xid, 1, 0, 0, 0, 99])), 0).await;
    assert!(matches!(r, Err(RpcError::Garbage { .. })), "{r:?}");
}

#[tokio::test]
async fn truncated_reply_is_garbage() {
    let (_, r) = null_via(|xid| record(&words(&[xid, 1, 0])), 0).await;
    assert!(
        matches!(&r, Err(RpcError::Garbage { what }) if what == "truncated"),
        "{r:?}"
    );
}

#[tokio::test]
async fn connection_closed_mid_record_is_closed() {
    let addr = common::scripted_server_then_close(|xid| {
        let mut out = record(&words(&[xid, 1, 0, 0, 0, 0]));
        out.truncate(10);
        out
    })
    .await;
    let r = rpc_null(addr, NFS_PROGRAM, 3, Duration::from_secs(2)).await;
    assert!(
        matches!(r, Err(RpcError::Closed { addr: a }) if a == addr),
        "{r:?}"
    );
}

#[tokio::test]
async fn short_record_then_silence_is_a_reply_timeout() {
    let addr = scripted_server(
        |xid| {
            let mut out = record(&words(&[xid, 1, 0, 0, 0, 0]));
            out.truncate(10);
            out
        },
        0,
    )
    .await;
    let r = rpc_null(addr, NFS_PROGRAM, 3, Duration::from_millis(300)).await;
    assert!(
        matches!(r, Err(RpcError::ReplyTimeout { addr: a }) if a == addr),
        "{r:?}"
    );
}

#[tokio::test]
async fn getport_of_port_zero_is_not_registered() {
    let addr = scripted_server(|xid| record(&words(&[xid, 1, 0, 0, 0, 0, 0])), 0).await;
    let err = getport(addr, 100_005, 3, 6, Duration::from_secs(2))
        .await
        .expect_err("port 0");
    assert!(
        matches!(
            err,
            RpcError::NotRegistered {
                program: 100_005,
                version: 3
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Program 100005 version 3 not registered with the portmapper"
    );
}

#[tokio::test]
async fn getport_of_an_out_of_range_port_is_garbage() {
    let addr = scripted_server(|xid| record(&words(&[xid, 1, 0, 0, 0, 0, 70_000])), 0).await;
    let err = getport(addr, 100_003, 3, 6, Duration::from_secs(2))
        .await
        .expect_err("bad port");
    assert!(matches!(err, RpcError::Garbage { .. }), "{err:?}");
}
