//! `nfsha agent` as a service: wires the supervisor to the real host, the event
//! log, the control socket, `/metrics` + `/healthz`, signals and systemd.
//!
//! Signals: SIGTERM/SIGINT stop cleanly (mounts are left as they are); SIGHUP reloads
//! the config — an invalid new config is refused, logged with every diagnostic, and
//! the old one stays in effect. systemd: `READY=1` once every task runs, `WATCHDOG=1`
//! only while [`Agent::alive`] says every task made progress recently, `STOPPING=1`.

use crate::control::{self, ControlError, EventSource};
use crate::emit::Emitter;
use crate::linux::LinuxHost;
use crate::supervisor::Agent;
use nfsha_config::Config;
use nfsha_metrics::{EventSink, HttpError};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The event log could not be opened.
    #[error("Cannot open the event log")]
    EventLog(#[from] nfsha_metrics::EventLogError),
    /// The control socket could not be bound.
    #[error("Cannot start the control socket")]
    Control(#[from] ControlError),
    /// The HTTP endpoint could not be bound.
    #[error("Cannot start the metrics endpoint")]
    Http(#[from] HttpError),
    /// Installing a signal handler failed.
    #[error("Cannot install signal handlers")]
    Signal(#[source] std::io::Error),
}

/// Run until SIGTERM/SIGINT. `reload` re-reads the config on SIGHUP.
pub async fn run(
    config: Config,
    reload: impl Fn() -> Result<Config, String>,
) -> Result<(), DaemonError> {
    // Never keep a cwd on NFS.
    let _ = std::env::set_current_dir("/");
    let sink = Arc::new(EventSink::open(config.agent.event_log.as_deref())?);
    let emit = {
        let sink = sink.clone();
        Emitter::new(move |e| sink.emit(e))
    };
    let host = Arc::new(LinuxHost::new());
    let cleaned = host.clean_staging_area(config.agent.umount_timeout).await;
    if cleaned > 0 {
        tracing::warn!(
            cleaned,
            "detached mounts left in the staging area by an earlier agent"
        );
    }
    let socket_path = config.agent.control_socket.clone();
    let listener = control::bind(&socket_path)?;
    let http = match config.agent.listen {
        Some(addr) => Some(nfsha_metrics::bind(addr).await?),
        None => None,
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;

    let mut agent = Agent::start(host, config.clone(), emit);
    let events: EventSource = {
        let sink = sink.clone();
        Arc::new(move |since: Option<u64>| match since {
            Some(ms) => sink.recent_since(ms),
            None => sink.recent(),
        })
    };
    let control_task = tokio::spawn(control::serve(listener, agent.handle(), events));
    let follow_task = config.agent.cluster.as_ref().map(|c| {
        let handle = agent.handle();
        let stream = nfsha_server::watch_leader(c.etcd_endpoints.clone(), c.cluster.clone());
        tracing::info!(cluster = %c.cluster, "following the server cluster's leader in etcd");
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut stream = std::pin::pin!(stream);
            while let Some(l) = stream.next().await {
                tracing::info!(leader = %l.node, address = ?l.address, epoch = l.epoch, "cluster leader");
                handle.set_leader(crate::supervisor::ClusterLeader {
                    node: l.node,
                    address: l.address,
                    epoch: l.epoch,
                });
            }
        })
    });
    let (stop_http, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let http_task = http.map(|l| {
        let metrics = agent.metrics();
        tokio::spawn(nfsha_metrics::serve(
            l,
            metrics.clone(),
            metrics,
            async move {
                let _ = stop_http_rx.await;
            },
        ))
    });
    tracing::info!(
        mounts = config.mounts.len(),
        socket = %socket_path.display(),
        listen = ?config.agent.listen,
        "agent started"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    let mut wd_tick = tokio::time::interval(
        watchdog
            .map(|d| d / 2)
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(100)),
    );
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                match reload() {
                    Ok(new) => {
                        tracing::info!(mounts = new.mounts.len(), "config reloaded");
                        agent.apply_config(new);
                    }
                    Err(why) => {
                        tracing::error!("config reload refused, keeping the old config:\n{why}");
                        agent.reject_config(why);
                    }
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = wd_tick.tick(), if watchdog.is_some() => {
                if agent.alive() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::error!("a supervisor task stopped making progress; withholding the watchdog ping");
                }
            }
        }
    }
    tracing::info!("agent stopping");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    agent.shutdown();
    control_task.abort();
    if let Some(t) = follow_task {
        t.abort();
    }
    let _ = stop_http.send(());
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let _ = std::fs::remove_file(&socket_path);
    Ok(())
}
