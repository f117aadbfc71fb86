//! `/metrics` and `/healthz` over a real TCP listener on 127.0.0.1:0, with a raw HTTP/1.1 client.

use nfsha_core::MountState;
use nfsha_metrics::{AgentMetrics, HealthSource, MountHealth, MountstatsSource};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
struct NoMountstats;

impl MountstatsSource for NoMountstats {
    fn read(&self) -> std::io::Result<String> {
        Ok(String::new())
    }
}

/// A health source the test changes between requests.
#[derive(Default)]
struct FakeHealth(Mutex<Vec<MountHealth>>);

impl HealthSource for FakeHealth {
    fn mounts(&self) -> Vec<MountHealth> {
        self.0.lock().unwrap().clone()
    }
}

fn mount(path: &str, state: MountState) -> MountHealth {
    MountHealth {
        mountpoint: path.to_owned(),
        state,
        since: SystemTime::now() - Duration::from_secs(5),
        server: Some("nfs-1".to_owned()),
        last_error: (state != MountState::Healthy).then(|| "readdir: ESTALE (errno 116)".into()),
    }
}

struct Response {
    status: u16,
    headers: String,
    body: String,
}

/// One `GET` with `Connection: close`, bounded by a deadline.
async fn get(addr: std::net::SocketAddr, path: &str) -> Response {
    get_with(addr, path, "").await
}

/// [`get`] with extra header lines (each ending in `\r\n`).
async fn get_with(addr: std::net::SocketAddr, path: &str, extra: &str) -> Response {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("HTTP request did not finish within 10 s");
    let (head, body) = raw.split_once("\r\n\r\n").expect("no header/body split");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("no status code");
    Response {
        status,
        headers: head.to_ascii_lowercase(),
        body: dechunk(head, body),
    }
}

/// Undo `Transfer-Encoding: chunked` if the server used it.
fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), nfsha_metrics::HttpError>>,
}

async fn start(metrics: Arc<AgentMetrics>, health: Arc<dyn HealthSource>) -> Server {
    let listener = nfsha_metrics::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(nfsha_metrics::serve(
        listener,
        metrics,
        health,
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server did not stop within 10 s after shutdown")
            .unwrap()
            .unwrap();
    }
}

fn metrics() -> Arc<AgentMetrics> {
    Arc::new(AgentMetrics::with_sources(
        Arc::new(NoMountstats),
        Arc::new(SystemTime::now),
    ))
}

#[tokio::test]
async fn metrics_endpoint_negotiates_openmetrics_or_the_classic_text_format() {
    let m = metrics();
    m.set_mount_state(
        "/airflow/dags",
        MountState::Stale,
        SystemTime::now(),
        Some("nfs-1"),
    );
    let srv = start(m.clone(), Arc::new(FakeHealth::default())).await;
    // Without an Accept asking for OpenMetrics (curl): the classic text format.
    let plain = get(srv.addr, "/metrics").await;
    assert_eq!(plain.status, 200);
    assert!(
        plain
            .headers
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        plain.headers
    );
    assert!(
        plain.body.contains("# TYPE nfsha_mount_state gauge"),
        "{}",
        plain.body
    );
    assert!(
        plain.body.contains("# TYPE process_open_fds gauge"),
        "{}",
        plain.body
    );
    assert!(!plain.body.contains("# EOF"));
    // Prometheus's own Accept header: OpenMetrics.
    let r = get_with(
        srv.addr,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{}",
        r.headers
    );
    assert!(
        r.body
            .contains(r#"nfsha_mount_state{mountpoint="/airflow/dags",state="stale"} 1"#),
        "{}",
        r.body
    );
    assert!(r.body.ends_with("# EOF\n"));
    assert_eq!(get(srv.addr, "/nope").await.status, 404);
    srv.shutdown().await;
}

#[tokio::test]
async fn healthz_is_200_only_when_every_mount_is_healthy() {
    let health = Arc::new(FakeHealth::default());
    let srv = start(metrics(), health.clone()).await;

    // No mounts: vacuously healthy.
    let r = get(srv.addr, "/healthz").await;
    assert_eq!(r.status, 200);

    *health.0.lock().unwrap() = vec![
        mount("/airflow/dags", MountState::Healthy),
        mount("/airflow/logs", MountState::Healthy),
    ];
    let r = get(srv.addr, "/healthz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["mounts"], 2);

    health.0.lock().unwrap()[1] = mount("/airflow/logs", MountState::Stale);
    let r = get(srv.addr, "/healthz").await;
    assert_eq!(r.status, 503);
    assert!(r.headers.contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["healthy"], false);
    let bad = v["unhealthy"].as_array().unwrap();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["mountpoint"], "/airflow/logs");
    assert_eq!(bad[0]["state"], "stale");
    assert_eq!(bad[0]["server"], "nfs-1");
    assert_eq!(bad[0]["last_error"], "readdir: ESTALE (errno 116)");
    assert!(bad[0]["seconds_in_state"].as_f64().unwrap() >= 5.0);

    // Per mount: the healthy one is 200 while the other is 503; unknown mounts are 404.
    assert_eq!(
        get(srv.addr, "/healthz?mount=/airflow/dags").await.status,
        200
    );
    assert_eq!(
        get(srv.addr, "/healthz?mount=/airflow/dags/").await.status,
        200
    );
    let r = get(srv.addr, "/healthz?mount=%2Fairflow%2Flogs").await;
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["state"], "stale");
    let r = get(srv.addr, "/healthz?mount=/elsewhere").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("unknown mount"));
    srv.shutdown().await;
}

#[tokio::test]
async fn agent_metrics_is_itself_a_health_source() {
    let m = metrics();
    m.set_mount_state("/a", MountState::Unknown, SystemTime::now(), None);
    let srv = start(m.clone(), m.clone()).await;
    // Not probed yet: unhealthy.
    assert_eq!(get(srv.addr, "/healthz").await.status, 503);
    m.set_mount_state("/a", MountState::Healthy, SystemTime::now(), Some("nfs-1"));
    assert_eq!(get(srv.addr, "/healthz").await.status, 200);
    assert_eq!(get(srv.addr, "/healthz?mount=/a").await.status, 200);
    srv.shutdown().await;
}

async fn start_with(limits: nfsha_metrics::Limits) -> Server {
    let listener = nfsha_metrics::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let m = metrics();
    let task = tokio::spawn(nfsha_metrics::serve_with(
        listener,
        m.clone(),
        m,
        limits,
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

/// Read until the server closes the connection (EOF or reset), bounded.
async fn closed_by_server(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the server kept the connection open for 10 s");
    buf
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    // No timeout could close anything during the test: only the cap can.
    let limits = nfsha_metrics::Limits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(600),
        max_connection_age: Duration::from_secs(600),
    };
    let server = start_with(limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let mut extra = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let got = closed_by_server(&mut extra).await;
    assert!(
        got.is_empty(),
        "a refused connection got an answer: {got:?}"
    );
    // A freed place serves again.
    drop(idle.pop());
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.1 200") {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer after a place was freed");
    server.shutdown().await;
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_by_the_header_timeout() {
    let limits = nfsha_metrics::Limits {
        max_connections: 4,
        header_read_timeout: Duration::from_millis(300),
        max_connection_age: Duration::from_secs(600),
    };
    let server = start_with(limits).await;
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut idle).await.is_empty());
    let got = closed_by_server(&mut slow).await;
    assert!(
        !String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "an unfinished header was answered"
    );
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_after_its_answer() {
    let limits = nfsha_metrics::Limits {
        max_connections: 4,
        header_read_timeout: Duration::from_millis(300),
        max_connection_age: Duration::from_secs(600),
    };
    let server = start_with(limits).await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = closed_by_server(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "first request answered: {text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_is_closed_at_its_maximum_age() {
    let limits = nfsha_metrics::Limits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(600),
        max_connection_age: Duration::from_millis(300),
    };
    let server = start_with(limits).await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let got = closed_by_server(&mut s).await;
    assert!(got.is_empty(), "{got:?}");
    server.shutdown().await;
}
