//! systemd's notify protocol (`sd_notify(3)`), done here: one datagram per message on
//! the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace), no library.
//!
//! Role: tell systemd (`Type=notify`) when the controller has joined the cluster
//! (`READY=1`: leader serving, or standby following a leader) and what it is doing
//! (`STATUS=primary, epoch 7`), and `STOPPING=1` on shutdown. Failure modes: no
//! `$NOTIFY_SOCKET` (not under systemd): every send is a no-op; the socket is gone or
//! full: the error is returned ([`NotifyError`]) and callers log it — a notification is
//! never worth stopping the controller for.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;

/// A notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The datagram could not be sent to the socket.
    #[error("Cannot notify systemd at {socket}")]
    Send {
        /// `$NOTIFY_SOCKET`.
        socket: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A systemd notifier; `READY=1` is sent at most once.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    shown: String,
    ready_sent: Mutex<bool>,
    last_status: Mutex<Option<String>>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; without it every send does nothing.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("NOTIFY_SOCKET").map(|s| s.to_string_lossy().into_owned()))
    }

    /// For this socket address (`/path` or `@abstract`); `None`: no-op.
    pub fn new(socket: Option<String>) -> Self {
        let target = socket.as_deref().and_then(|s| {
            if let Some(name) = s.strip_prefix('@') {
                Some(Target::Abstract(name.as_bytes().to_vec()))
            } else if s.starts_with('/') {
                Some(Target::Path(PathBuf::from(s)))
            } else {
                None
            }
        });
        Notifier {
            target,
            shown: socket.unwrap_or_default(),
            ready_sent: Mutex::new(false),
            last_status: Mutex::new(None),
        }
    }

    /// Whether messages go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send one message (`KEY=value` lines).
    pub fn send(&self, msg: &str) -> Result<(), NotifyError> {
        let Some(t) = &self.target else {
            return Ok(());
        };
        let err = |source| NotifyError::Send {
            socket: self.shown.clone(),
            source,
        };
        let sock = UnixDatagram::unbound().map_err(err)?;
        match t {
            Target::Path(p) => sock.send_to(msg.as_bytes(), p).map(drop).map_err(err),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(err)?;
                sock.send_to_addr(msg.as_bytes(), &addr)
                    .map(drop)
                    .map_err(err)
            }
        }
    }

    /// `STATUS=<status>` if it changed, with `READY=1` the first time `joined` is true.
    pub fn state(&self, status: &str, joined: bool) -> Result<(), NotifyError> {
        let mut ready = self.ready_sent.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = self.last_status.lock().unwrap_or_else(|e| e.into_inner());
        let send_ready = joined && !*ready;
        if !send_ready && last.as_deref() == Some(status) {
            return Ok(());
        }
        let mut msg = String::new();
        if send_ready {
            msg.push_str("READY=1\n");
        }
        msg.push_str(&format!("STATUS={status}\n"));
        self.send(&msg)?;
        *ready |= send_ready;
        *last = Some(status.to_owned());
        Ok(())
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!("STOPPING=1\nSTATUS={status}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(s: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).expect("a datagram within the timeout");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_once_then_status_only_on_change_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let s = UnixDatagram::bind(&path).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::new(Some(path.display().to_string()));
        assert!(n.enabled());
        n.state("starting", false).expect("send");
        assert_eq!(recv(&s), "STATUS=starting\n");
        n.state("standby, following nfs-1 (epoch 7)", true)
            .expect("send");
        assert_eq!(
            recv(&s),
            "READY=1\nSTATUS=standby, following nfs-1 (epoch 7)\n"
        );
        // Unchanged: nothing. Changed: STATUS only, READY not again.
        n.state("standby, following nfs-1 (epoch 7)", true)
            .expect("send");
        n.state("primary, epoch 8", true).expect("send");
        assert_eq!(recv(&s), "STATUS=primary, epoch 8\n");
        n.stopping("stopping").expect("send");
        assert_eq!(recv(&s), "STOPPING=1\nSTATUS=stopping\n");
        s.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 64];
        assert!(s.recv(&mut buf).is_err(), "no extra datagram");
    }

    #[test]
    fn abstract_socket_and_no_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("nfsha-notify-test-{}", std::process::id());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let s = UnixDatagram::bind_addr(&addr).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::new(Some(format!("@{name}")));
        n.state("primary, epoch 3", true).expect("send");
        assert_eq!(recv(&s), "READY=1\nSTATUS=primary, epoch 3\n");
        let off = Notifier::new(None);
        assert!(!off.enabled());
        off.state("x", true).expect("no-op");
        // A socket that is gone is an error, not a panic.
        let gone = Notifier::new(Some("/nonexistent/nfsha-notify".into()));
        assert!(gone.state("x", true).is_err());
    }
}
