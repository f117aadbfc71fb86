//! The control socket: a root-only Unix socket speaking one JSON request and one
//! JSON reply per connection. `nfsha status`, `check`, `recover` and `events` use it.
//!
//! Failure modes: a stale socket file from a crashed agent is replaced; a client that
//! sends garbage gets an error reply; a slow client cannot stall the agent (each
//! connection is its own task with a read deadline).

use crate::recovery::RecoveryReport;
use crate::status::AgentStatus;
use crate::supervisor::AgentHandle;
use nfsha_core::Event;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
            let _ = std::fs::remove_file(path);
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

fn finish_bind(path: &Path) -> Result<UnixListener, ControlError> {
    let l = UnixListener::bind(path).map_err(|e| ControlError::Bind(path.into(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ControlError::Bind(path.into(), e))?;
    Ok(l)
}

/// Serve requests forever.
pub async fn serve(listener: UnixListener, agent: AgentHandle, events: EventSource) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let agent = agent.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let _ = handle(stream, agent, events).await;
        });
    }
}

async fn handle(
    stream: UnixStream,
    agent: AgentHandle,
    events: EventSource,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(r);
    match tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await {
        Ok(Ok(_)) => {}
        _ => return Ok(()),
    }
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Err(e) => Reply::Error {
            message: format!("bad request: {e}"),
        },
        Ok(Request::Status) => Reply::Status(agent.status().snapshot()),
        Ok(Request::Events { since_ms }) => Reply::Events {
            events: events(since_ms),
        },
        Ok(Request::Recover { mountpoint }) => match agent.recover(&mountpoint).await {
            Ok(r) => Reply::Recovered(r),
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        },
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
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
