//! nfsha-metrics: the agent's observability — Prometheus metrics, `/proc/self/mountstats`
//! early warnings, the `/metrics` + `/healthz` HTTP endpoint, and the structured event log.
//!
//! Role: a library the agent daemon wires in; it performs no NFS access itself. The pieces:
//! - [`AgentMetrics`] ([`metrics`]): cheap synchronous setters called from the agent's tasks,
//!   [`AgentMetrics::encode`] for the OpenMetrics text.
//! - [`mountstats`]: a lenient parser of `/proc/self/mountstats` (read at scrape time).
//! - [`serve`] ([`http`]): axum HTTP/1 server for `GET /metrics` and `GET /healthz`, with a
//!   [`HealthSource`] seam (implemented by [`AgentMetrics`] itself).
//! - [`serve_bounded`] ([`bounded`]): the accept loop with a connection cap, a header-read
//!   timeout and a maximum connection age, under [`serve`] and the server's status API.
//! - [`EventSink`] / [`read_events`] ([`eventlog`]): tracing + JSON-lines file + in-memory ring.
//!
//! Failure modes are per module; none of them panics or blocks on NFS.
//!
//! Wiring sketch for the agent (tokio):
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let metrics = Arc::new(nfsha_metrics::AgentMetrics::new());
//! let events = Arc::new(nfsha_metrics::EventSink::open(None)?);
//! let listener = nfsha_metrics::bind("127.0.0.1:9848".parse()?).await?;
//! let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(nfsha_metrics::serve(listener, metrics.clone(), metrics.clone(),
//!     async move { let _ = stop_rx.await; }));
//! metrics.set_mount_state("/airflow/dags", nfsha_core::MountState::Healthy,
//!     std::time::SystemTime::now(), Some("nfs-1"));
//! events.emit(nfsha_core::Event::new(nfsha_core::EventKind::AgentStarted));
//! let _ = stop_tx.send(());
//! server.await??;
//! # Ok(()) }
//! ```

pub mod bounded;
pub mod eventlog;
pub mod exposition;
pub mod http;
pub mod metrics;
pub mod mountstats;
pub mod process;

pub use bounded::{ConnGate, ConnPermit, Limits, serve_bounded};
pub use eventlog::{EventLogError, EventSink, read_events};
pub use http::{
    DEFAULT_LISTEN, HealthSource, HttpError, MountHealth, bind, router, serve, serve_with,
};
pub use metrics::{
    AgentMetrics, CONTENT_TYPE, DEFAULT_MOUNTSTATS_OPS, METRIC_NAMES, MountstatsSource,
    ProcMountstats,
};
