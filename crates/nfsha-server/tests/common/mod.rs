//! Test harness for the `etcd_` tier: a real etcd on loopback per test (temp data dir,
//! free ports, killed on drop) and a loopback TCP proxy that can cut one node off
//! from etcd (connections stay open, bytes stop flowing: a partition or a frozen
//! peer as the client sees it).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const ETCD: &str = "/usr/bin/etcd";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A single-node etcd on 127.0.0.1.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<ServerTls>,
}

/// etcd's own certificate and the CA it checks client certificates against
/// (`--client-cert-auth`), plus the client options the readiness check connects with.
pub struct ServerTls {
    /// CA (PEM file).
    pub ca: PathBuf,
    /// Server certificate for 127.0.0.1 (PEM file).
    pub cert: PathBuf,
    /// Its key (PEM file).
    pub key: PathBuf,
    /// How the readiness check connects (a client certificate of the CA).
    pub client: nfsha_server::EtcdOptions,
}

impl Etcd {
    /// Start one and wait (deadline 30 s) until it answers.
    pub async fn start() -> Etcd {
        Etcd::start_with(None).await
    }

    /// [`Etcd::start`] serving clients over TLS and requiring client certificates.
    pub async fn start_tls(tls: ServerTls) -> Etcd {
        Etcd::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<ServerTls>) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the etcd_ tests need a real etcd. Install it with `apt-get install etcd-server`."
        );
        let mut e = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
            tls,
        };
        e.spawn();
        e.wait_ready().await;
        e
    }

    /// The client endpoint.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The client address (for proxies).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log");
        let child = Command::new(ETCD)
            .args(["--name", "default", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(self.tls.iter().flat_map(|t| {
                [
                    "--cert-file".into(),
                    t.cert.clone().into_os_string(),
                    "--key-file".into(),
                    t.key.clone().into_os_string(),
                    "--trusted-ca-file".into(),
                    t.ca.clone().into_os_string(),
                    "--client-cert-auth".into(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
    }

    /// Wait until etcd answers a read, or panic with its log after 30 s.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = async {
                let mut c = match &self.tls {
                    None => etcd_client::Client::connect([self.endpoint()], None)
                        .await
                        .ok()?,
                    Some(t) => {
                        let opts = nfsha_server::EtcdOptions {
                            endpoints: vec![self.endpoint()],
                            ..t.client.clone()
                        };
                        nfsha_server::etcd::connect(&opts).await.ok()?
                    }
                };
                tokio::time::timeout(Duration::from_secs(1), c.get("/probe", None))
                    .await
                    .ok()?
                    .ok()
            }
            .await
            .is_some();
            if ok {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                panic!("etcd did not become ready within 30 s; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("etcd running").id().to_string();
        let st = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig} {pid} failed");
    }

    /// SIGSTOP: etcd freezes, connections stay open.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same data dir and ports, and wait until ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A frozen etcd must be thawed to die cleanly on SIGKILL (it dies anyway,
            // but be tidy).
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// A loopback TCP proxy in front of etcd for one node; `cut()` stops all traffic.
pub struct Proxy {
    addr: SocketAddr,
    blocked: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut blocked: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // While cut, bytes are held back (a partition does not close connections).
        if blocked.wait_for(|b| !*b).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    /// Proxy to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::spawn(pipe(ir, ow, rx.clone()));
                    tokio::spawn(pipe(or, iw, rx));
                });
            }
        });
        Proxy {
            addr,
            blocked: tx,
            task,
        }
    }

    /// The endpoint to give the node.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cut the node off from etcd.
    pub fn cut(&self) {
        self.blocked.send_replace(true);
    }

    /// Restore traffic.
    pub fn heal(&self) {
        self.blocked.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Poll `f` every 20 ms until it returns `Some`, or panic with `what` after `limit`.
pub async fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shared between tests: a shutdown switch per controller.
pub type Shutdown = Arc<watch::Sender<bool>>;
