//! The agent's HTTP endpoint: `GET /metrics` and `GET /healthz[?mount=PATH]` (axum, HTTP/1).
//!
//! Role: let Prometheus scrape [`AgentMetrics`] and let load balancers, systemd units or
//! humans ask "is every mount healthy?". Listens only where the caller bound the listener;
//! the default address is [`DEFAULT_LISTEN`] (loopback).
//!
//! `/metrics` speaks OpenMetrics to a scraper whose `Accept` asks for it (Prometheus does)
//! and the classic text format 0.0.4 to everyone else (`curl`, `promtool check metrics`);
//! see [`crate::exposition`].
//!
//! `/healthz` answers `200` only when every known mount's state is `healthy` (a host with no
//! mounts is healthy), else `503` with a JSON body listing the unhealthy mounts:
//! `{"healthy":false,"mounts":N,"unhealthy":[{"mountpoint":"/airflow/dags","state":"stale",
//! "since_ms":…,"seconds_in_state":…,"server":"nfs-1","last_error":"readdir: ESTALE (errno 116)"}]}`.
//! `?mount=PATH` answers for that mount alone (`200`/`503` with its object, `404` for a mount
//! the agent does not manage). A mount not probed yet (`unknown`) is unhealthy.
//!
//! Failure modes: connections are bounded by [`crate::bounded`] (a cap, a header-read
//! timeout, a maximum age), so idle clients cannot take the agent's descriptors. Encoding runs on a blocking thread (it reads `/proc/self/mountstats`), so a
//! slow scrape never stalls the runtime; a panic there answers `500`. `serve` returns when
//! `shutdown` completes (in-flight requests finish first) or when accepting fails.

use crate::bounded::{ConnGate, Limits};
use crate::metrics::{AgentMetrics, CONTENT_TYPE};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nfsha_core::MountState;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where `/metrics` and `/healthz` listen unless the config says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9848";

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// `bind` failed.
    #[error("Cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// One mount as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountHealth {
    /// The configured mountpoint.
    pub mountpoint: String,
    /// Its classified state.
    pub state: MountState,
    /// When that state began (wall clock).
    pub since: SystemTime,
    /// The server it is mounted from, if known.
    pub server: Option<String>,
    /// Why it is not healthy (last failed probe or recovery), if known.
    pub last_error: Option<String>,
}

/// Whoever knows the mounts' health (the agent's supervisor, or [`AgentMetrics`] itself).
pub trait HealthSource: Send + Sync {
    /// Every managed mount, now. Called once per `/healthz` request; must not block.
    fn mounts(&self) -> Vec<MountHealth>;
}

/// Bind a listener (a thin wrapper that names the address in the error).
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<AgentMetrics>,
    health: Arc<dyn HealthSource>,
}

/// Serve `/metrics` and `/healthz` on `listener` with [`Limits::default`] until
/// `shutdown` completes.
///
/// Spawn it from the agent: `tokio::spawn(nfsha_metrics::serve(listener, metrics, health,
/// async move { let _ = stop_rx.await; }))`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<AgentMetrics>,
    health: Arc<dyn HealthSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    serve_with(listener, metrics, health, Limits::default(), shutdown).await
}

/// [`serve`] within `limits`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    metrics: Arc<AgentMetrics>,
    health: Arc<dyn HealthSource>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let gate = ConnGate::new("metrics", limits.max_connections);
    crate::bounded::serve_bounded(listener, router(metrics, health), limits, gate, shutdown)
        .await
        .map_err(HttpError::Serve)
}

/// The routes, for callers that compose their own server.
pub fn router(metrics: Arc<AgentMetrics>, health: Arc<dyn HealthSource>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let metrics = st.metrics.clone();
    let openmetrics = crate::exposition::wants_openmetrics(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    let encode = move || {
        if openmetrics {
            (CONTENT_TYPE, metrics.encode())
        } else {
            (
                crate::exposition::CLASSIC_CONTENT_TYPE,
                metrics.encode_classic(),
            )
        }
    };
    match tokio::task::spawn_blocking(encode).await {
        Ok((kind, body)) => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct HealthQuery {
    mount: Option<String>,
}

#[derive(Debug, Serialize)]
struct MountBody<'a> {
    mountpoint: &'a str,
    state: &'static str,
    healthy: bool,
    since_ms: u64,
    seconds_in_state: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<&'a str>,
}

impl<'a> MountBody<'a> {
    fn new(m: &'a MountHealth, now: SystemTime) -> Self {
        MountBody {
            mountpoint: &m.mountpoint,
            state: m.state.as_str(),
            healthy: m.state == MountState::Healthy,
            since_ms: m
                .since
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            seconds_in_state: now
                .duration_since(m.since)
                .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
                .unwrap_or(0.0),
            server: m.server.as_deref(),
            last_error: m.last_error.as_deref(),
        }
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// `"/a/b/"` and `"/a/b"` name the same mount.
fn normalize(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }
}

async fn healthz_handler(State(st): State<AppState>, Query(q): Query<HealthQuery>) -> Response {
    let mounts = st.health.mounts();
    let now = SystemTime::now();
    if let Some(wanted) = q.mount {
        let wanted_n = normalize(&wanted);
        return match mounts.iter().find(|m| normalize(&m.mountpoint) == wanted_n) {
            Some(m) => {
                let body = MountBody::new(m, now);
                let status = if body.healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, &serde_json::to_value(&body).unwrap_or_default())
            }
            None => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "unknown mount", "mountpoint": wanted}),
            ),
        };
    }
    let unhealthy: Vec<MountBody<'_>> = mounts
        .iter()
        .filter(|m| m.state != MountState::Healthy)
        .map(|m| MountBody::new(m, now))
        .collect();
    let healthy = unhealthy.is_empty();
    let body = serde_json::json!({
        "healthy": healthy,
        "mounts": mounts.len(),
        "unhealthy": unhealthy,
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}
