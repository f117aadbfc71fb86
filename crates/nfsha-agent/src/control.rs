//! The control socket: a root-only Unix socket speaking one JSON request and one
//! JSON reply per connection. `nfsha status`, `check`, `recover` and `events` use it.
//!
//! Failure modes: a stale socket file from a crashed agent is replaced; a client that
//! sends garbage gets an error reply; a slow client cannot stall the agent (each
//! connection is its own task with a read deadline, a write deadline and an overall
//! deadline); a request line longer than [`ControlLimits::max_request`] is answered with an
//! error without being buffered; at most [`ControlLimits::max_connections`] connections are
//! served at once and the rest are closed at accept, so clients cannot take the agent's
//! descriptors (issue 16, hole 1); `accept` failing for lack of descriptors pauses instead
//! of spinning.

use crate::recovery::RecoveryReport;
use crate::status::AgentStatus;
use crate::supervisor::AgentHandle;
use nfsha_core::Event;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// The whole status.
    Status,
    /// Force the recovery of one mount and wait for the report.
    Recover {
        /// Mountpoint.
        mountpoint: PathBuf,
        /// Replica volumes: make this replica (`host:/export`) the active one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replica: Option<String>,
    },
    /// Recent events (from the in-memory ring).
    Events {
        /// Only events at or after this time (ms since the epoch).
        since_ms: Option<u64>,
    },
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// The status.
    Status(AgentStatus),
    /// A recovery report.
    Recovered(RecoveryReport),
    /// Events.
    Events {
        /// The events.
        events: Vec<Event>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Binding the socket failed.
    #[error("Cannot listen on {0}")]
    Bind(PathBuf, #[source] std::io::Error),
    /// Connecting failed (agent not running?).
    #[error("Cannot connect to the agent at {0} (is `nfsha agent` running?)")]
    Connect(PathBuf, #[source] std::io::Error),
    /// Talking to the agent failed.
    #[error("Control socket I/O failed")]
    Io(#[source] std::io::Error),
    /// The agent's reply could not be decoded.
    #[error("Bad reply from the agent")]
    Decode(#[source] serde_json::Error),
    /// The agent did not answer in time.
    #[error("The agent did not answer within {0:?}")]
    Timeout(Duration),
}

/// Source of recent events for `Request::Events`.
pub type EventSource = Arc<dyn Fn(Option<u64>) -> Vec<Event> + Send + Sync>;

/// Bind the socket (mode 0600, parent dir created) and serve until the task is dropped.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ControlError::Bind(path.into(), e))?;
    }
    if UnixStream::from_std(match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(_) => {
            remove_stale_socket(path)?;
            return finish_bind(path);
        }
    })
    .is_ok()
    {
        return Err(ControlError::Bind(
            path.into(),
            std::io::Error::new(std::io::ErrorKind::AddrInUse, "another agent is running"),
        ));
    }
    finish_bind(path)
}

/// Remove what a dead agent left at `path`, but only a socket: anything else there (a
/// regular file, a directory, a symlink) is somebody's data or a mistake in
/// `control_socket`, and is refused, never deleted.
fn remove_stale_socket(path: &Path) -> Result<(), ControlError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ControlError::Bind(path.into(), e)),
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| ControlError::Bind(path.into(), e))
        }
        Ok(m) => {
            let what = if m.is_dir() {
                "a directory"
            } else if m.file_type().is_symlink() {
                "a symbolic link"
            } else if m.is_file() {
                "a regular file"
            } else {
                "not a socket"
            };
            Err(ControlError::Bind(
                path.into(),
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{what} is there, not a socket; nothing was removed: move it away or set [agent] control_socket to another path"
                    ),
                ),
            ))
        }
    }
}

fn finish_bind(path: &Path) -> Result<UnixListener, ControlError> {
    let l = UnixListener::bind(path).map_err(|e| ControlError::Bind(path.into(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ControlError::Bind(path.into(), e))?;
    Ok(l)
}

/// Bounds of the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// The request line must arrive within this.
    pub read_deadline: Duration,
    /// The reply must be taken within this.
    pub write_deadline: Duration,
    /// A `recover` request is answered within this (its steps have their own deadlines).
    pub recover_deadline: Duration,
    /// Longest request line, in bytes.
    pub max_request: usize,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            max_connections: 16,
            read_deadline: Duration::from_secs(5),
            write_deadline: Duration::from_secs(5),
            recover_deadline: Duration::from_secs(600),
            max_request: 64 * 1024,
        }
    }
}

/// Serve requests forever with [`ControlLimits::default`].
pub async fn serve(listener: UnixListener, agent: AgentHandle, events: EventSource) {
    serve_with(listener, agent, events, ControlLimits::default()).await
}

/// Serve requests forever within `limits`.
pub async fn serve_with(
    listener: UnixListener,
    agent: AgentHandle,
    events: EventSource,
    limits: ControlLimits,
) {
    let gate = nfsha_metrics::ConnGate::new("control", limits.max_connections);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) if nfsha_metrics::bounded::accept_error_needs_pause(&e) => {
                tracing::warn!(error = %e, "control socket: accept failed; pausing");
                tokio::time::sleep(nfsha_metrics::bounded::ACCEPT_PAUSE).await;
                continue;
            }
            Err(_) => continue,
        };
        let Some(permit) = gate.admit() else {
            drop(stream);
            continue;
        };
        let agent = agent.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let overall = limits.read_deadline + limits.recover_deadline + limits.write_deadline;
            let _ = tokio::time::timeout(overall, handle(stream, agent, events, limits)).await;
            drop(permit);
        });
    }
}

/// Read one line of at most `max` bytes (without the newline); `Ok(None)` if longer.
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    reader: R,
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_until(b'\n', &mut line).await?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok((line.len() <= max).then_some(line))
}

async fn handle(
    stream: UnixStream,
    agent: AgentHandle,
    events: EventSource,
    limits: ControlLimits,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let reader = BufReader::new(r);
    let line = match tokio::time::timeout(
        limits.read_deadline,
        read_request(reader, limits.max_request),
    )
    .await
    {
        Ok(Ok(line)) => line,
        _ => return Ok(()),
    };
    let request = match line {
        None => Err(format!("request longer than {} bytes", limits.max_request)),
        Some(l) => serde_json::from_slice::<Request>(l.trim_ascii())
            .map_err(|e| format!("bad request: {e}")),
    };
    let reply = match request {
        Err(message) => Reply::Error { message },
        Ok(Request::Status) => Reply::Status(agent.status().snapshot()),
        Ok(Request::Events { since_ms }) => Reply::Events {
            events: events(since_ms),
        },
        Ok(Request::Recover {
            mountpoint,
            replica,
        }) => match replica.as_deref().map(str::parse::<nfsha_config::Replica>) {
            Some(Err(e)) => Reply::Error { message: e },
            parsed => {
                let recover = agent.recover_to(&mountpoint, parsed.and_then(Result::ok));
                match tokio::time::timeout(limits.recover_deadline, recover).await {
                    Ok(Ok(r)) => Reply::Recovered(r),
                    Ok(Err(e)) => Reply::Error {
                        message: e.to_string(),
                    },
                    Err(_) => Reply::Error {
                        message: format!(
                            "the recovery did not finish within {:?}",
                            limits.recover_deadline
                        ),
                    },
                }
            }
        },
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    tokio::time::timeout(limits.write_deadline, async {
        w.write_all(&out).await?;
        w.shutdown().await
    })
    .await
    .unwrap_or(Ok(()))
}

/// Send one request to the agent at `path` and wait up to `timeout` for the reply.
pub async fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Reply, ControlError> {
    let fut = async {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| ControlError::Connect(path.into(), e))?;
        let (r, mut w) = stream.into_split();
        let mut out = serde_json::to_vec(req).map_err(ControlError::Decode)?;
        out.push(b'\n');
        w.write_all(&out).await.map_err(ControlError::Io)?;
        let mut line = String::new();
        BufReader::new(r)
            .read_line(&mut line)
            .await
            .map_err(ControlError::Io)?;
        serde_json::from_str(line.trim()).map_err(ControlError::Decode)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ControlError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Emitter;
    use crate::supervisor::Agent;
    use crate::testing::FakeHost;
    use std::error::Error as _;
    use tokio::io::AsyncReadExt;

    const BOUND: Duration = Duration::from_secs(10);

    /// Audit item 5: the control-socket path was deleted without checking what it was
    /// (a regular file was removed). Now only a dead agent's socket is replaced.
    #[tokio::test]
    async fn control_socket_path_holding_a_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.sock");
        std::fs::write(&file, b"somebody's data").unwrap();
        let e = bind(&file).expect_err("bound over a regular file");
        assert!(
            e.source()
                .unwrap()
                .to_string()
                .contains("a regular file is there"),
            "{e:?}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"somebody's data");
        let sub = dir.path().join("d");
        std::fs::create_dir(&sub).unwrap();
        assert!(bind(&sub).is_err());
        assert!(sub.is_dir(), "a directory was removed");
        // A dead agent's socket (bound, then its listener dropped) is replaced.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let l = bind(&stale).expect("a stale socket is replaced");
        drop(l);
    }

    fn agent() -> Agent<FakeHost> {
        let (emit, _events) = Emitter::collector();
        Agent::start(
            Arc::new(FakeHost::new()),
            nfsha_config::Config::empty(),
            emit,
        )
    }

    fn no_events() -> EventSource {
        Arc::new(|_| Vec::new())
    }

    /// Read until EOF (the agent closed the connection), bounded.
    async fn closed_by_agent(s: &mut UnixStream) -> bool {
        let mut buf = Vec::new();
        matches!(
            tokio::time::timeout(BOUND, s.read_to_end(&mut buf)).await,
            Ok(Ok(_)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_and_status_answers_once_a_place_frees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.sock");
        let listener = bind(&path).expect("bind");
        let agent = agent();
        // No deadline could close anything during the test: only the cap can.
        let limits = ControlLimits {
            max_connections: 3,
            read_deadline: Duration::from_secs(600),
            ..ControlLimits::default()
        };
        let task = tokio::spawn(serve_with(listener, agent.handle(), no_events(), limits));
        // Three idle clients hold every place.
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(UnixStream::connect(&path).await.expect("connect"));
        }
        // The fourth is closed at once, without a reply.
        let mut extra = UnixStream::connect(&path).await.expect("connect");
        assert!(
            closed_by_agent(&mut extra).await,
            "4th connection not closed"
        );
        drop(idle.pop());
        let reply = tokio::time::timeout(BOUND, async {
            loop {
                // The freed place may take a moment to be returned.
                if let Ok(r) = request(&path, &Request::Status, BOUND).await {
                    break r;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("status within the bound");
        assert!(matches!(reply, Reply::Status(_)), "{reply:?}");
        task.abort();
    }

    #[tokio::test]
    async fn an_overlong_request_line_is_refused_and_a_silent_client_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.sock");
        let listener = bind(&path).expect("bind");
        let agent = agent();
        let limits = ControlLimits {
            max_request: 100,
            read_deadline: Duration::from_millis(200),
            ..ControlLimits::default()
        };
        let task = tokio::spawn(serve_with(listener, agent.handle(), no_events(), limits));

        let s = UnixStream::connect(&path).await.expect("connect");
        let (r, mut w) = s.into_split();
        let mut long = vec![b' '; 10_000];
        long.push(b'\n');
        // The agent may close before taking all of it: a write error is fine.
        let _ = w.write_all(&long).await;
        let mut line = String::new();
        tokio::time::timeout(BOUND, BufReader::new(r).read_line(&mut line))
            .await
            .expect("reply within the bound")
            .expect("read reply");
        let reply: Reply = serde_json::from_str(line.trim()).expect("JSON reply");
        match reply {
            Reply::Error { message } => assert!(message.contains("longer than 100"), "{message}"),
            other => panic!("expected an error, got {other:?}"),
        }

        // Sends nothing: closed after the read deadline.
        let mut silent = UnixStream::connect(&path).await.expect("connect");
        assert!(closed_by_agent(&mut silent).await, "silent client kept");
        task.abort();
    }
}
