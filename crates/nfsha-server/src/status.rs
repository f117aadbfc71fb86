//! The node's own status, shared between the controller loop and the HTTP API
//! (Patroni-like endpoints for load balancers, monitors and clients).
//!
//! Role: `GET /primary` is 200 only on the serving leader, `/standby` 200 only on a
//! healthy non-leader that may take over (a `behind` standby is 503: its copy is older
//! than `max_lag`), `/health` 200 when the loop is alive and nothing is wedged (a
//! `behind` standby is healthy),
//! `/liveness` 503 when the last completed loop is older than the TTL; every endpoint
//! answers with the node status as JSON; `/metrics` has the replication figures in the
//! Prometheus text format. Failure modes: the listener cannot bind
//! ([`std::io::Error`] from [`serve`]); handlers never block on etcd or the host; idle or
//! slow clients are bounded by [`nfsha_metrics::bounded`] (a connection cap, closed at
//! once beyond it; a header-read timeout; a maximum connection age), so they cannot take
//! the controller's descriptors.

use crate::coordinator::MemberState;
use crate::replication::ShipStatus;
use axum::http::StatusCode;
use axum::{Json, Router, routing::get};
use nfsha_metrics::{ConnGate, Limits};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the controller says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// Cluster name.
    pub cluster: String,
    /// State.
    pub state: MemberState,
    /// Whether any serving step is (possibly) up.
    pub serving: bool,
    /// Our epoch while we lead.
    pub epoch: Option<u64>,
    /// The highest epoch seen.
    pub epoch_seen: u64,
    /// The leader we last saw.
    pub leader: Option<String>,
    /// Last error or step, free text.
    pub detail: Option<String>,
    /// Replicated mode, standby: how old this node's copy is (ms; see
    /// [`crate::replication`]); `None` when unknown or not replicated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// Replicated mode: the configured `max_lag` in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lag_ms: Option<u64>,
    /// Replicated mode, leader: shipping per standby (kept after leadership ends).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub replication: BTreeMap<String, ShipStatus>,
    /// Milliseconds since the last completed loop.
    pub last_loop_age_ms: u64,
    /// Poisoned leader keys (not written by nfsha) this node deleted to campaign.
    #[serde(skip_serializing_if = "is_zero")]
    pub poisoned_leader_keys: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug)]
struct Inner {
    status: NodeStatus,
    last_loop: Instant,
    proof: Option<Instant>,
}

/// Shared, cheap-to-clone handle on the node status.
#[derive(Debug, Clone)]
pub struct StatusHandle {
    inner: Arc<Mutex<Inner>>,
    ttl: Duration,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StatusHandle {
    /// A fresh status (state `starting`).
    pub fn new(node: &str, cluster: &str, ttl: Duration) -> Self {
        StatusHandle {
            inner: Arc::new(Mutex::new(Inner {
                status: NodeStatus {
                    node: node.to_owned(),
                    cluster: cluster.to_owned(),
                    state: MemberState::Starting,
                    serving: false,
                    epoch: None,
                    epoch_seen: 0,
                    leader: None,
                    detail: None,
                    lag_ms: None,
                    max_lag_ms: None,
                    replication: BTreeMap::new(),
                    last_loop_age_ms: 0,
                    poisoned_leader_keys: 0,
                },
                last_loop: Instant::now(),
                proof: None,
            })),
            ttl,
        }
    }

    /// Change the status.
    pub fn update(&self, f: impl FnOnce(&mut NodeStatus)) {
        f(&mut lock(&self.inner).status);
    }

    /// Mark a completed loop.
    pub fn loop_done(&self) {
        lock(&self.inner).last_loop = Instant::now();
    }

    /// Record the instant (taken before the request was sent) of the last successful
    /// lease renewal while leading.
    pub fn set_lease_proof(&self, at: Instant) {
        lock(&self.inner).proof = Some(at);
    }

    /// The last lease proof (see [`StatusHandle::set_lease_proof`]); kept after leadership
    /// ends so tests and drills can compare it with teardown times.
    pub fn lease_proof(&self) -> Option<Instant> {
        lock(&self.inner).proof
    }

    /// A snapshot.
    pub fn get(&self) -> NodeStatus {
        let g = lock(&self.inner);
        let mut s = g.status.clone();
        s.last_loop_age_ms = g.last_loop.elapsed().as_millis() as u64;
        s
    }

    /// Whether the last loop is recent (within the TTL).
    pub fn alive(&self) -> bool {
        lock(&self.inner).last_loop.elapsed() <= self.ttl
    }
}

fn answer(ok: bool, s: NodeStatus) -> (StatusCode, Json<NodeStatus>) {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(s))
}

/// The HTTP routes.
pub fn router(h: StatusHandle) -> Router {
    // Replication figures (per-standby RPO, bytes, quarantines) for Prometheus.
    let metrics = {
        let h = h.clone();
        move || async move { crate::replication::metrics_text(&h.get()) }
    };
    let primary = {
        let h = h.clone();
        move || async move {
            let s = h.get();
            let ok = h.alive() && s.state == MemberState::Primary && s.serving;
            answer(ok, s)
        }
    };
    let standby = {
        let h = h.clone();
        move || async move {
            let s = h.get();
            let ok = h.alive() && s.state == MemberState::Standby && !s.serving;
            answer(ok, s)
        }
    };
    let health = {
        let h = h.clone();
        move || async move {
            let s = h.get();
            let ok = h.alive()
                && matches!(
                    s.state,
                    MemberState::Primary | MemberState::Standby | MemberState::Behind
                );
            answer(ok, s)
        }
    };
    let liveness = move || async move {
        let s = h.get();
        answer(h.alive(), s)
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/primary", get(primary))
        .route("/standby", get(standby))
        .route("/health", get(health))
        .route("/liveness", get(liveness))
}

/// Serve the routes on `addr` with [`Limits::default`] until the task is dropped.
/// Returns the bound address (useful with port 0) and the server future.
pub async fn serve(
    addr: SocketAddr,
    h: StatusHandle,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>> + Send,
)> {
    serve_with(addr, h, Limits::default()).await
}

/// [`serve`] within `limits`.
pub async fn serve_with(
    addr: SocketAddr,
    h: StatusHandle,
    limits: Limits,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>> + Send,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let gate = ConnGate::new("status", limits.max_connections);
    let fut = nfsha_metrics::serve_bounded(
        listener,
        router(h),
        limits,
        gate,
        std::future::pending::<()>(),
    );
    Ok((bound, fut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        let code = buf[9..12].parse().expect("status code");
        let body = buf.split("\r\n\r\n").nth(1).expect("body");
        (code, serde_json::from_str(body).expect("json body"))
    }

    #[tokio::test]
    async fn idle_connections_beyond_the_cap_are_closed_and_the_api_still_answers() {
        let h = StatusHandle::new("a", "c", Duration::from_secs(60));
        // Only the cap can close a connection during this test; the header-read timeout
        // and the age are tested in nfsha-metrics (tests/http.rs).
        let limits = Limits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(600),
            max_connection_age: Duration::from_secs(600),
        };
        let (addr, fut) = serve_with("127.0.0.1:0".parse().expect("addr"), h, limits)
            .await
            .expect("bind");
        let server = tokio::spawn(fut);
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        let mut extra = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "3rd connection kept open beyond the cap");
        assert!(buf.is_empty(), "refused connection answered");
        drop(idle.pop());
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let _ = s
                    .write_all(b"GET /liveness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf).await;
                if buf.starts_with(b"HTTP/1.1 200") {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(answered.is_ok(), "no answer once a place was free");
        server.abort();
    }

    #[tokio::test]
    async fn endpoints_answer_like_patroni() {
        let h = StatusHandle::new("a", "c", Duration::from_millis(300));
        let (addr, fut) = serve("127.0.0.1:0".parse().expect("addr"), h.clone())
            .await
            .expect("bind");
        let server = tokio::spawn(fut);

        // Starting: nothing is 200 but liveness.
        assert_eq!(get(addr, "/primary").await.0, 503);
        assert_eq!(get(addr, "/standby").await.0, 503);
        assert_eq!(get(addr, "/health").await.0, 503);
        assert_eq!(get(addr, "/liveness").await.0, 200);

        h.update(|s| s.state = MemberState::Standby);
        assert_eq!(get(addr, "/standby").await.0, 200);
        assert_eq!(get(addr, "/health").await.0, 200);
        assert_eq!(get(addr, "/primary").await.0, 503);

        // Behind: healthy, but not a standby a load balancer or operator should count on.
        h.update(|s| {
            s.state = MemberState::Behind;
            s.lag_ms = Some(700_000);
        });
        let (code, body) = get(addr, "/standby").await;
        assert_eq!(
            (code, &body["state"], &body["lag_ms"]),
            (503, &"behind".into(), &700_000.into())
        );
        assert_eq!(get(addr, "/health").await.0, 200);

        h.update(|s| {
            s.state = MemberState::Primary;
            s.serving = true;
            s.epoch = Some(42);
        });
        let (code, body) = get(addr, "/primary").await;
        assert_eq!(code, 200);
        assert_eq!(body["epoch"], 42);
        assert_eq!(body["node"], "a");
        assert_eq!(body["state"], "primary");
        assert_eq!(get(addr, "/standby").await.0, 503);

        // A stuck loop: liveness and primary go 503 once the last loop is older than ttl.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(addr, "/liveness").await.0, 503);
        assert_eq!(get(addr, "/primary").await.0, 503);
        h.loop_done();
        assert_eq!(get(addr, "/liveness").await.0, 200);
        server.abort();
    }
}
