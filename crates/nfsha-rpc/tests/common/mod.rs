//! Shared test fixtures: an in-process NFSv3 server, a silent listener, a closed port and a scripted RPC server.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use nfs3_server::memfs::{MemFs, MemFsConfig};
use nfs3_server::tcp::{NFSTcp, NFSTcpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Start the `nfs3_server` MemFs server (portmap + MOUNT + NFSv3 on one port) on 127.0.0.1:0.
pub async fn nfs3_server() -> SocketAddr {
    let fs = MemFs::new(MemFsConfig::default()).expect("memfs");
    let listener = NFSTcpListener::bind("127.0.0.1:0", fs)
        .await
        .expect("bind nfs3_server");
    let addr = SocketAddr::new(listener.get_listen_ip(), listener.get_listen_port());
    tokio::spawn(async move {
        let _ = listener.handle_forever().await;
    });
    addr
}

/// A listener that accepts connections, reads whatever is sent and never answers.
pub async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A server that reads one call record and answers with `reply(xid)`, written in `chunk`-byte pieces with a short
/// pause between them (0: all at once), then keeps the connection open until the client closes it.
pub async fn scripted_server(reply: fn(u32) -> Vec<u8>, chunk: usize) -> SocketAddr {
    scripted(reply, chunk, false).await
}

/// Like [`scripted_server`], but closes the connection right after writing the reply.
pub async fn scripted_server_then_close(reply: fn(u32) -> Vec<u8>) -> SocketAddr {
    scripted(reply, 0, true).await
}

async fn scripted(reply: fn(u32) -> Vec<u8>, chunk: usize, close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Some(xid) = read_call(&mut s).await else {
                    return;
                };
                let bytes = reply(xid);
                if chunk == 0 {
                    let _ = s.write_all(&bytes).await;
                } else {
                    for piece in bytes.chunks(chunk) {
                        let _ = s.write_all(piece).await;
                        let _ = s.flush().await;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                if close {
                    return;
                }
                let mut buf = [0u8; 64];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Read one record-marked call from `s`; its xid, or `None` if the client went away.
pub async fn read_call(s: &mut tokio::net::TcpStream) -> Option<u32> {
    let mut marker = [0u8; 4];
    s.read_exact(&mut marker).await.ok()?;
    let len = (u32::from_be_bytes(marker) & 0x7fff_ffff) as usize;
    let mut call = vec![0u8; len];
    s.read_exact(&mut call).await.ok()?;
    Some(u32::from_be_bytes([call[0], call[1], call[2], call[3]]))
}

/// A listener with backlog 0 whose accept queue is full: Linux drops further SYNs, which is
/// what a host that is down (or a SYN sent to the wrong node) looks like. Returns it and the
/// connections that fill it (keep them alive).
pub async fn full_listener() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = sock.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut held = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "accept queue never filled"
        );
        match tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("connect failed: {e}"),
            Err(_) => break,
        }
    }
    (listener, held)
}

/// Record-mark `body` as one last fragment.
pub fn record(body: &[u8]) -> Vec<u8> {
    let mut out = (u32::try_from(body.len()).expect("small") | 0x8000_0000)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(body);
    out
}

/// XDR words to bytes.
pub fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_be_bytes()).collect()
}
