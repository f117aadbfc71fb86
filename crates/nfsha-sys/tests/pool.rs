//! Worker pool tests that need neither root nor FUSE: reuse, deadline + SIGKILL of
//! a worker that dies, protocol errors.

mod common;

use nfsha_core::{MountState, ProbeOutcome};
use nfsha_sys::{PoolConfig, WorkerError, WorkerPool, WorkerRequest, WorkerResponse};
use nfsha_testinfra::wait_until_async;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[tokio::test]
async fn idle_workers_are_reused() {
    let pool = common::pool(2);
    let mut pids = Vec::new();
    for _ in 0..5 {
        match pool
            .request(WorkerRequest::Ping, Duration::from_secs(5))
            .await
        {
            Ok(WorkerResponse::Pong { pid }) => pids.push(pid),
            other => panic!("{other:?}"),
        }
    }
    pids.dedup();
    assert_eq!(pids.len(), 1, "one worker served every request: {pids:?}");
    assert_eq!(pool.live_workers(), 1);
    assert_eq!(pool.idle_workers(), 1);
}

#[tokio::test]
async fn probes_of_local_paths_run_in_the_worker() {
    let pool = common::pool(2);
    let o = pool.probe(Path::new("/"), Duration::from_secs(5)).await;
    assert!(matches!(o, ProbeOutcome::Ok { .. }), "{o:?}");
    let o = pool
        .probe(
            Path::new("/nonexistent-nfsha-probe"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(o.errno(), Some(libc::ENOENT));
    assert_eq!(o.classify(), MountState::NotMounted);
}

#[tokio::test]
async fn a_silent_worker_is_killed_at_the_deadline_and_reaped() {
    // A "worker" that reads the request and never answers, but dies on SIGKILL.
    let pool = WorkerPool::new(PoolConfig {
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), "read x; exec sleep 1000".into()],
        max_idle: 1,
    });
    let start = Instant::now();
    let o = pool
        .probe(Path::new("/m"), Duration::from_millis(300))
        .await;
    assert_eq!(
        o,
        ProbeOutcome::Hung {
            deadline: Duration::from_millis(300)
        }
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        wait_until_async(Duration::from_secs(5), || pool.stuck_workers() == 0
            && pool.live_workers() == 0)
        .await,
        "killed worker was not reaped: stuck {} live {}",
        pool.stuck_workers(),
        pool.live_workers()
    );
    assert!(!pool.is_stuck(Path::new("/m")));
}

#[tokio::test]
async fn garbage_answers_are_protocol_errors() {
    let pool = WorkerPool::new(PoolConfig {
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), "read x; echo garbage".into()],
        max_idle: 1,
    });
    let e = pool
        .request(WorkerRequest::Ping, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, WorkerError::Protocol(_)), "{e}");
    let pool = WorkerPool::new(PoolConfig {
        program: PathBuf::from("/nonexistent/worker"),
        args: vec![],
        max_idle: 1,
    });
    let e = pool
        .request(WorkerRequest::Ping, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, WorkerError::Spawn { .. }), "{e}");
}

#[tokio::test]
async fn a_dead_idle_worker_is_replaced_transparently() {
    let pool = common::pool(2);
    let first = match pool
        .request(WorkerRequest::Ping, Duration::from_secs(5))
        .await
    {
        Ok(WorkerResponse::Pong { pid }) => pid,
        other => panic!("{other:?}"),
    };
    let pid = rustix::process::Pid::from_raw(first as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    // Dead (a zombie until the pool reaps it): its state in /proc turns to Z.
    assert!(
        wait_until_async(Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{first}/stat"))
                .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
                .unwrap_or(true)
        })
        .await
    );
    match pool
        .request(WorkerRequest::Ping, Duration::from_secs(5))
        .await
    {
        Ok(WorkerResponse::Pong { pid }) => assert_ne!(pid, first),
        other => panic!("{other:?}"),
    }
    assert!(
        wait_until_async(Duration::from_secs(5), || pool.live_workers() == 1).await,
        "the dead worker was not reaped: live {}",
        pool.live_workers()
    );
}
