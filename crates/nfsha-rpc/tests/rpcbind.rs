//! Debian's `rpcbind` as a real portmapper on 127.0.0.1:111 (started by the test when none runs; needs root).
//! One test function only: a second one could stop the rpcbind the first is using.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nfsha_rpc::{
    IPPROTO_TCP, PMAP_PROGRAM, ProbeTarget, RpcError, getport, probe_server, rpc_null,
};

const T: Duration = Duration::from_secs(2);

/// Kills the rpcbind this test started (by its own pid) when dropped.
struct Rpcbind(Option<Child>);

impl Drop for Rpcbind {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn pmap() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 111))
}

fn listening() -> bool {
    TcpStream::connect_timeout(&pmap(), Duration::from_millis(200)).is_ok()
}

fn ensure_rpcbind() -> Rpcbind {
    if listening() {
        return Rpcbind(None);
    }
    let bin = ["/usr/sbin/rpcbind", "/sbin/rpcbind"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("rpcbind is not installed: run `apt-get install -y rpcbind` (the test starts it itself, as root)");
    let child = Command::new(bin)
        .arg("-f")
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot start rpcbind (the test must run as root)");
    let guard = Rpcbind(Some(child));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening() {
        assert!(
            Instant::now() < deadline,
            "rpcbind did not listen on 127.0.0.1:111 within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

#[tokio::test]
async fn root_rpcbind_as_a_real_portmapper() {
    let _rpcbind = ensure_rpcbind();

    // An unregistered program (from the user-defined range): port 0.
    let err = getport(pmap(), 0x2000_4e46, 1, IPPROTO_TCP, T)
        .await
        .expect_err("unregistered");
    assert!(
        matches!(
            err,
            RpcError::NotRegistered {
                program: 0x2000_4e46,
                version: 1
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not registered"));

    // rpcbind registers itself.
    assert_eq!(
        getport(pmap(), PMAP_PROGRAM, 2, IPPROTO_TCP, T)
            .await
            .expect("self"),
        111
    );
    let rtt = rpc_null(pmap(), PMAP_PROGRAM, 2, T).await.expect("NULL v2");
    assert!(rtt < T);

    // rpcbind serves portmap/rpcbind versions 2 to 4.
    let err = rpc_null(pmap(), PMAP_PROGRAM, 5, T).await.expect_err("v5");
    assert!(
        matches!(
            err,
            RpcError::ProgMismatch {
                low: 2,
                high: 4,
                ..
            }
        ),
        "{err:?}"
    );

    // A whole v3 probe of a host whose portmapper knows no NFS.
    let p = probe_server(&ProbeTarget::new("127.0.0.1", 3), T).await;
    assert!(!p.reachable, "{p:?}");
    let e = p.error.expect("error");
    assert_eq!(
        e,
        "portmap-getport-nfs: Program 100003 version 3 not registered with the portmapper"
    );
}
