//! Quiet outages (issue 18, item 3): with no server answering, recoveries and full RPC
//! probes back off exponentially, events are emitted on change plus a periodic summary,
//! and yet a server's return is seen within one probe interval (cheap pings).
//!
//! Runs on tokio's paused clock against the scripted FakeHost; events go through the
//! production [`EventSink`] so that log lines (one `tracing` line per event, plus the
//! agent's own warnings) are counted as journald would receive them.

use nfsha_agent::testing::{Call, FakeHost, ProbeScript};
use nfsha_agent::{Agent, Emitter};
use nfsha_config::{Config, MountConfig, ServerRef};
use nfsha_core::{Event, EventKind, MountState, ProbeOp, ProbeOutcome};
use nfsha_metrics::EventSink;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing_subscriber::layer::SubscriberExt;

fn mount(mp: &str, servers: &[&str]) -> MountConfig {
    MountConfig::new(
        mp,
        "/export",
        servers.iter().map(|h| ServerRef::new(*h)).collect(),
    )
}

fn stale() -> ProbeScript {
    ProbeScript::Answer(ProbeOutcome::Failed {
        op: ProbeOp::Statfs,
        errno: libc::ESTALE,
        latency: Duration::from_millis(1),
    })
}

/// Every log line, stamped with tokio's (paused) clock.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<(Instant, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), e.metadata().target().to_string()));
    }
}

type Stamped = Arc<Mutex<Vec<(Instant, Event)>>>;

/// An emitter like the daemon's (event sink → tracing line + ring) that also records
/// each event with tokio's clock.
fn emitter() -> (Emitter, Stamped) {
    let sink = Arc::new(EventSink::open(None).expect("sink without a file"));
    let store: Stamped = Arc::default();
    let s = store.clone();
    (
        Emitter::new(move |e| {
            s.lock().unwrap().push((Instant::now(), e.clone()));
            sink.emit(e);
        }),
        store,
    )
}

fn per_minute<T>(items: &[(Instant, T)], t0: Instant, minutes: usize) -> Vec<usize> {
    let mut v = vec![0; minutes];
    for (t, _) in items {
        let m = usize::try_from(t.saturating_duration_since(t0).as_secs() / 60).unwrap();
        if m < minutes {
            v[m] += 1;
        }
    }
    v
}

#[tokio::test(start_paused = true)]
async fn with_no_server_the_agent_backs_off_stays_quiet_and_sees_the_return_within_a_probe_interval()
 {
    let lines = Lines::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.clone()));
    let host = FakeHost::new();
    host.set_server("nfs", true);
    host.add_nfs_mount("/airflow/dags", "nfs");
    host.add_nfs_mount("/airflow/logs", "nfs");
    let (emit, events) = emitter();
    let config = Config {
        mounts: vec![
            mount("/airflow/dags", &["nfs"]),
            mount("/airflow/logs", &["nfs"]),
        ],
        ..Config::empty()
    };
    let agent = Agent::start(Arc::new(host.clone()), config, emit);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The outage: the server stops answering and both mounts go stale.
    host.set_server("nfs", false);
    host.set_probe("/airflow/dags", stale());
    host.set_probe("/airflow/logs", stale());
    let t0 = Instant::now();
    let calls0 = host.calls().len();
    let lines0 = lines.0.lock().unwrap().len();
    let events0 = events.lock().unwrap().len();
    let mut attempts = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        attempts.push(agent.status().snapshot().mounts["/airflow/dags"].failed_attempts);
    }
    let outage_events: Vec<(Instant, Event)> = events.lock().unwrap()[events0..].to_vec();
    let outage_lines: Vec<(Instant, String)> = lines.0.lock().unwrap()[lines0..].to_vec();
    let ev = per_minute(&outage_events, t0, 10);
    let ln = per_minute(&outage_lines, t0, 10);
    let calls: Vec<Call> = host.calls()[calls0..].to_vec();
    let pings = calls
        .iter()
        .filter(|c| matches!(c, Call::PingServer(_)))
        .count();
    let full = calls
        .iter()
        .filter(|c| matches!(c, Call::ProbeServer(_)))
        .count();
    eprintln!("events per minute (2 mounts): {ev:?}");
    eprintln!("log lines per minute (2 mounts): {ln:?}");
    eprintln!("failed attempts of /airflow/dags at each minute: {attempts:?}");
    eprintln!("in 10 min: {pings} pings, {full} full RPC probes");

    // Backoff 1 s doubling to 30 s: 1+2+4+8+16 = 31 s for the first six attempts, then
    // one every 30 s (+ the probe cadence), i.e. 2 a minute — not 60.
    assert!((6..=9).contains(&attempts[0]), "minute 1: {attempts:?}");
    for w in attempts.windows(2) {
        let d = w[1] - w[0];
        assert!((1..=2).contains(&d), "attempts per minute: {attempts:?}");
    }
    // The first minute tells the story once per mount (the state change, the first
    // failed recovery step by step, the server's reachability); then silence except the
    // summary every five minutes.
    assert!(ev[0] <= 12, "first minute: {ev:?}");
    for (m, n) in ev.iter().enumerate().skip(1) {
        assert!(*n <= 2, "minute {m}: {n} events ({ev:?})");
    }
    let summaries: Vec<&Event> = outage_events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.kind == EventKind::RecoverySummary)
        .collect();
    assert_eq!(
        summaries.len(),
        2,
        "one summary per mount at 5 min: {summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .all(|e| e.outcome.as_deref() == Some("failed")
                && e.reason.as_deref().unwrap_or("").contains("No server")),
        "{summaries:?}"
    );
    // Log lines: one per event, nothing else repeats.
    assert!(ln[0] <= 14, "first minute: {ln:?}");
    for (m, n) in ln.iter().enumerate().skip(1) {
        assert!(*n <= 2, "minute {m}: {n} log lines ({ln:?})");
    }
    // Only the failed recovery attempts and the server loop's backoff probe in full;
    // the rest are one-call pings at the probe cadence (1 s).
    assert!(full <= 2 * 25 + 25, "{full} full probes in 10 min");
    assert!((500..=700).contains(&pings), "{pings} pings in 10 min");
    assert_eq!(
        agent.status().snapshot().mounts["/airflow/dags"].state,
        MountState::Stale
    );
    assert!(
        host.umounted().is_empty(),
        "nothing touched while no server answers"
    );

    // The server comes back: seen by the next ping, both mounts recover within one
    // probe interval although their backoff had 30 s to run.
    host.set_server("nfs", true);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(5);
    loop {
        let st = agent.status().snapshot();
        if st.mounts.values().all(|m| m.state == MountState::Healthy) {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = Instant::now() - back;
    eprintln!("recovered {took:?} after the server came back");
    assert!(took <= Duration::from_millis(1100), "took {took:?}");
    let ended: Vec<Event> = events
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e.clone())
        .filter(|e| e.kind == EventKind::RecoverySummary && e.outcome.as_deref() == Some("ended"))
        .collect();
    assert_eq!(
        ended.len(),
        2,
        "each mount's run is summed up when it ends: {ended:?}"
    );
    let ok = events
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| {
            e.kind == EventKind::RecoveryFinished && e.outcome.as_deref() == Some("ok")
        })
        .count();
    assert_eq!(ok, 2);
}
