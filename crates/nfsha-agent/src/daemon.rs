//! `nfsha agent` as a service: wires the supervisor to the real host, the event
//! log, the control socket, `/metrics` + `/healthz`, signals and systemd.
//!
//! Signals: SIGTERM/SIGINT stop cleanly (mounts are left as they are); SIGHUP reloads
//! the config — mounts, and the endpoints (control socket, HTTP listen
//! address, event log, etcd leader watch). An invalid new config, or one whose new
//! socket/port cannot be bound or event log opened, is refused as a whole, logged with
//! every diagnostic, and the old one stays in effect. systemd: `READY=1` once every task runs, `WATCHDOG=1`
//! only while [`Agent::alive`] says every task made progress recently, `STOPPING=1`.
//!
//! Descriptors (issue 16, hole 1): at start the soft `RLIMIT_NOFILE` is raised to the hard
//! limit (logged), and the HTTP listener and the control socket get connection caps sized
//! from it ([`nfsha_metrics::Limits::for_descriptor_limit`]: together at most 1/8 of the
//! limit), so idle clients cannot starve probes, mount-table reads or worker spawns.

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
    let limits = descriptor_limits();
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
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;

    let mut agent = Agent::start(host, config.clone(), emit.clone());
    // [mount.fleet]: one task per fleet volume (restarted when its settings change).
    let fleet_key = |c: &Config| {
        (
            c.agent.cluster.clone(),
            c.mounts
                .iter()
                .filter(|m| m.fleet.is_some())
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let mut fleet_cfg = fleet_key(&config);
    let mut fleet_tasks = crate::fleet::spawn(
        config.agent.cluster.as_ref(),
        &config.mounts,
        &crate::fleet::agent_name(),
        agent.handle(),
        emit.clone(),
    );
    let events: EventSource = {
        let sink = sink.clone();
        Arc::new(move |since: Option<u64>| match since {
            Some(ms) => sink.recent_since(ms),
            None => sink.recent(),
        })
    };
    let mut services = Services::start(&config, &agent, &events, limits).await?;
    tracing::info!(
        mounts = config.mounts.len(),
        socket = %config.agent.control_socket.display(),
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
                    Ok(new) => match services.prepare(&new, &sink).await {
                        Ok(prepared) => {
                            tracing::info!(mounts = new.mounts.len(), "config reloaded");
                            agent.apply_config(new.clone());
                            services.commit(prepared, &new, &agent, &events);
                            if fleet_key(&new) != fleet_cfg {
                                fleet_tasks.iter().for_each(|t| t.abort());
                                fleet_cfg = fleet_key(&new);
                                fleet_tasks = crate::fleet::spawn(
                                    new.agent.cluster.as_ref(),
                                    &new.mounts,
                                    &crate::fleet::agent_name(),
                                    agent.handle(),
                                    emit.clone(),
                                );
                            }
                        }
                        Err(why) => {
                            tracing::error!("config reload refused, keeping the old config:\n{why}");
                            agent.reject_config(why);
                        }
                    },
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
    fleet_tasks.iter().for_each(|t| t.abort());
    agent.shutdown();
    services.stop().await;
    Ok(())
}

/// The agent's endpoints, rebuilt on reload when their settings change: the control
/// socket, `/metrics` + `/healthz`, and the etcd leader watch. (The event log is moved
/// by [`EventSink::set_path`].) A reload first binds whatever is new; if anything fails
/// the whole reload is refused and nothing changes.
struct Services {
    limits: Limits,
    socket_path: std::path::PathBuf,
    control_task: tokio::task::JoinHandle<()>,
    listen: Option<std::net::SocketAddr>,
    http: Option<HttpTask>,
    cluster: Option<nfsha_config::ClusterSource>,
    follow_task: Option<tokio::task::JoinHandle<()>>,
}

struct HttpTask {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), HttpError>>,
}

/// What a reload bound ahead of committing.
struct Prepared {
    control: Option<tokio::net::UnixListener>,
    http: Option<Option<tokio::net::TcpListener>>,
}

impl Services {
    async fn start(
        config: &Config,
        agent: &Agent<LinuxHost>,
        events: &EventSource,
        limits: Limits,
    ) -> Result<Services, DaemonError> {
        let listener = control::bind(&config.agent.control_socket)?;
        let http = match config.agent.listen {
            Some(addr) => Some(nfsha_metrics::bind(addr).await?),
            None => None,
        };
        Ok(Services {
            limits,
            socket_path: config.agent.control_socket.clone(),
            control_task: tokio::spawn(control::serve_with(
                listener,
                agent.handle(),
                events.clone(),
                limits.control,
            )),
            listen: config.agent.listen,
            http: http.map(|l| spawn_http(l, agent, limits.http)),
            cluster: config.agent.cluster.clone(),
            follow_task: config
                .agent
                .cluster
                .as_ref()
                .map(|c| spawn_follow(c, agent)),
        })
    }

    /// Bind what `new` changes and move the event log; the error says what failed.
    async fn prepare(&self, new: &Config, sink: &EventSink) -> Result<Prepared, String> {
        let control = if new.agent.control_socket == self.socket_path {
            None
        } else {
            Some(
                control::bind(&new.agent.control_socket)
                    .map_err(|e| nfsha_core::error_chain(&e))?,
            )
        };
        let http = if new.agent.listen == self.listen {
            None
        } else {
            match new.agent.listen {
                Some(addr) => Some(Some(
                    nfsha_metrics::bind(addr)
                        .await
                        .map_err(|e| nfsha_core::error_chain(&e))?,
                )),
                None => Some(None),
            }
        };
        if new.agent.event_log != sink.path()
            && let Err(e) = sink.set_path(new.agent.event_log.as_deref())
        {
            // Nothing changes: the new control socket (if any) goes away again.
            if control.is_some() {
                let _ = std::fs::remove_file(&new.agent.control_socket);
            }
            return Err(nfsha_core::error_chain(&e));
        }
        Ok(Prepared { control, http })
    }

    /// Swap in what [`Services::prepare`] bound, and restart the leader watch if
    /// `[agent.cluster]` changed.
    fn commit(
        &mut self,
        p: Prepared,
        new: &Config,
        agent: &Agent<LinuxHost>,
        events: &EventSource,
    ) {
        if let Some(listener) = p.control {
            self.control_task.abort();
            let _ = std::fs::remove_file(&self.socket_path);
            self.socket_path = new.agent.control_socket.clone();
            self.control_task = tokio::spawn(control::serve_with(
                listener,
                agent.handle(),
                events.clone(),
                self.limits.control,
            ));
            tracing::info!(socket = %self.socket_path.display(), "control socket moved");
        }
        if let Some(http) = p.http {
            if let Some(old) = self.http.take() {
                let _ = old.stop.send(());
                old.task.abort();
            }
            self.http = http.map(|l| spawn_http(l, agent, self.limits.http));
            self.listen = new.agent.listen;
            tracing::info!(listen = ?self.listen, "metrics endpoint moved");
        }
        if new.agent.cluster != self.cluster {
            if let Some(t) = self.follow_task.take() {
                t.abort();
            }
            self.cluster = new.agent.cluster.clone();
            self.follow_task = self.cluster.as_ref().map(|c| spawn_follow(c, agent));
        }
    }

    async fn stop(self) {
        self.control_task.abort();
        if let Some(t) = self.follow_task {
            t.abort();
        }
        if let Some(h) = self.http {
            let _ = h.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(2), h.task).await;
        }
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// The listeners' bounds, sized from the descriptor limit.
#[derive(Debug, Clone, Copy)]
struct Limits {
    http: nfsha_metrics::Limits,
    control: control::ControlLimits,
}

/// Raise the soft descriptor limit to the hard one (logged) and size the listeners' caps
/// from the result.
fn descriptor_limits() -> Limits {
    let nofile = match nfsha_sys::raise_nofile() {
        Ok(l) => {
            if l.now != l.before {
                tracing::info!(from = ?l.before, to = ?l.now, "raised the descriptor limit (RLIMIT_NOFILE) to its hard limit");
            } else {
                tracing::info!(limit = ?l.now, "descriptor limit (RLIMIT_NOFILE)");
            }
            l.effective()
        }
        Err(e) => {
            tracing::warn!("{}", nfsha_core::error_chain(&e));
            nfsha_sys::limits::nofile().effective()
        }
    };
    let http = nfsha_metrics::Limits::for_descriptor_limit(nofile);
    let control = control::ControlLimits {
        max_connections: control::ControlLimits::default()
            .max_connections
            .min(http.max_connections),
        ..control::ControlLimits::default()
    };
    tracing::info!(
        nofile,
        http = http.max_connections,
        control = control.max_connections,
        "connection caps"
    );
    Limits { http, control }
}

fn spawn_http(
    listener: tokio::net::TcpListener,
    agent: &Agent<LinuxHost>,
    limits: nfsha_metrics::Limits,
) -> HttpTask {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let metrics = agent.metrics();
    let task = tokio::spawn(nfsha_metrics::serve_with(
        listener,
        metrics.clone(),
        metrics,
        limits,
        async move {
            let _ = rx.await;
        },
    ));
    HttpTask { stop, task }
}

fn spawn_follow(
    c: &nfsha_config::ClusterSource,
    agent: &Agent<LinuxHost>,
) -> tokio::task::JoinHandle<()> {
    let handle = agent.handle();
    let stream = nfsha_server::watch_leader_with(
        nfsha_server::EtcdOptions::from_cluster(c),
        c.cluster.clone(),
    );
    tracing::info!(
        cluster = %c.cluster,
        tls = c.etcd_tls.is_some(),
        user = c.etcd_auth.as_ref().map(|a| a.user.as_str()),
        "following the server cluster's leader in etcd"
    );
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
}
