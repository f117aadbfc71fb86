//! Serving HTTP/1 with bounds a local user cannot exceed: a cap on concurrent connections,
//! a header-read timeout and a maximum connection age (issue 16, hole 1).
//!
//! Role: the accept loop under the agent's `/metrics` + `/healthz` endpoint and the server
//! controller's status API (`axum::serve` sets no timer, so hyper's header-read timeout
//! never fired, and it has no connection limit: ~1,100 idle connections filled the agent's
//! 1,024 descriptors). A connection beyond [`Limits::max_connections`] is accepted and
//! closed at once — it never waits in a queue holding a descriptor. [`ConnGate`] is the
//! same cap for other listeners (the agent's control socket).
//!
//! Failure modes: `accept` failing with `EMFILE`/`ENFILE` (descriptors exhausted by
//! something else) is logged and retried after a short pause instead of spinning; a
//! client that sends no complete header within [`Limits::header_read_timeout`] — also
//! between requests on a kept-alive connection — is disconnected; any connection is
//! closed gracefully at [`Limits::max_connection_age`] and dropped [`GRACE`] later (a
//! client that does not read its response). On shutdown, accepting stops and open
//! connections get [`GRACE`] to finish their request.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How long a connection may take to finish after being told to close.
pub const GRACE: Duration = Duration::from_secs(2);

/// Bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// A request's header must arrive within this (and the next one, on a kept-alive
    /// connection, within this of the previous answer).
    pub header_read_timeout: Duration,
    /// A connection is closed (gracefully) this long after it was accepted.
    pub max_connection_age: Duration,
}

/// Connections per listener when descriptors are plentiful.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(5),
            max_connection_age: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// The defaults, with the connection cap at most 1/16 of `nofile` (the process's
    /// descriptor limit), so that two listeners at their cap leave most descriptors to
    /// probes, worker processes and mount-table reads.
    pub fn for_descriptor_limit(nofile: u64) -> Self {
        let share = usize::try_from(nofile / 16).unwrap_or(usize::MAX).max(1);
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS.min(share),
            ..Limits::default()
        }
    }
}

/// A cap on concurrent connections with logging of refusals (one line when the cap is
/// reached, one when connections are admitted again, with the count refused meanwhile).
#[derive(Debug, Clone)]
pub struct ConnGate {
    name: &'static str,
    sem: Arc<Semaphore>,
    max: usize,
    refused: Arc<AtomicU64>,
    saturated: Arc<AtomicBool>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnPermit {
    _place: OwnedSemaphorePermit,
}

impl ConnGate {
    /// A gate of `max` places for the listener called `name` (in log lines).
    pub fn new(name: &'static str, max: usize) -> Self {
        ConnGate {
            name,
            sem: Arc::new(Semaphore::new(max.max(1))),
            max: max.max(1),
            refused: Arc::new(AtomicU64::new(0)),
            saturated: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A place, or `None` (the caller closes the connection at once).
    pub fn admit(&self) -> Option<ConnPermit> {
        match self.sem.clone().try_acquire_owned() {
            Ok(p) => {
                if self.saturated.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        listener = self.name,
                        refused = self.refused.load(Ordering::Relaxed),
                        "accepting connections again"
                    );
                }
                Some(ConnPermit { _place: p })
            }
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                if !self.saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        listener = self.name,
                        max = self.max,
                        "connection limit reached; closing new connections at once"
                    );
                }
                None
            }
        }
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.sem.available_permits()
    }
}

/// Whether an `accept` error means "out of descriptors or memory" (pause before trying
/// again, the pending connection stays in the backlog) rather than one failed connection.
pub fn accept_error_needs_pause(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

// Linux errno values (no libc dependency in this crate).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
const ENOBUFS: i32 = 105;
const ENOMEM: i32 = 12;

/// How long to pause after an accept error that [`accept_error_needs_pause`].
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serve `router` on `listener` within `limits` until `shutdown` completes; then stop
/// accepting and give open connections [`GRACE`] to finish. `gate` counts the
/// connections (pass a fresh one, or one the caller watches).
pub async fn serve_bounded(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
    gate: ConnGate,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) if accept_error_needs_pause(&e) => {
                tracing::warn!(error = %e, "accept failed; pausing");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
            // One connection failed (reset before accept, …): nothing to do.
            Err(_) => continue,
        };
        let Some(permit) = gate.admit() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(serve_conn(
            stream,
            router.clone(),
            limits,
            stop_rx.clone(),
            permit,
        ));
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(GRACE + Duration::from_millis(500), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    Ok(())
}

async fn serve_conn(
    stream: tokio::net::TcpStream,
    router: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    permit: ConnPermit,
) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let svc = hyper_util::service::TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let age = tokio::time::sleep(limits.max_connection_age);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let finished = tokio::select! {
        _ = conn.as_mut() => true,
        _ = age => false,
        _ = stopped => false,
    };
    if !finished {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(GRACE, conn.as_mut()).await;
    }
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_well_below_the_descriptor_limit() {
        assert_eq!(Limits::for_descriptor_limit(1 << 20).max_connections, 64);
        assert_eq!(Limits::for_descriptor_limit(1024).max_connections, 64);
        assert_eq!(Limits::for_descriptor_limit(256).max_connections, 16);
        assert_eq!(Limits::for_descriptor_limit(3).max_connections, 1);
    }

    #[test]
    fn a_full_gate_refuses_and_a_freed_place_admits_again() {
        let g = ConnGate::new("test", 2);
        let a = g.admit().expect("first");
        let _b = g.admit().expect("second");
        assert!(g.admit().is_none(), "third beyond the cap");
        assert_eq!((g.open(), g.refused()), (2, 1));
        drop(a);
        assert!(g.admit().is_some(), "a freed place is given again");
    }

    #[test]
    fn out_of_descriptors_pauses_and_a_reset_connection_does_not() {
        assert!(accept_error_needs_pause(
            &std::io::Error::from_raw_os_error(EMFILE)
        ));
        assert!(!accept_error_needs_pause(
            &std::io::Error::from_raw_os_error(
                103 // ECONNABORTED
            )
        ));
    }
}
