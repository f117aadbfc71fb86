//! Probing real FUSE mounts that fail, hang or lose their server (root + /dev/fuse).
//!
//! The FUSE stand-ins behave like a sick NFS mount at the syscall level: statfs,
//! opendir and getdents of the root fail with the chosen errno, or block. A worker
//! blocked on a FUSE request that the server already read does not die on SIGKILL
//! (fs/fuse/dev.c request_wait_answer), which is how "stuck" workers are produced.

mod common;

use nfsha_core::{MountState, ProbeOutcome};
use nfsha_sys::mountinfo::{MountEntry, find_mount, read_mountinfo};
use nfsha_sys::ops::{MountOps, RustixMountOps, UmountFlags};
use nfsha_sys::{ProbeReport, WorkerPool, WorkerRequest, WorkerResponse, run_command};
use nfsha_testinfra::{Cleanup, Fault, FaultFsHandle, require_fuse, wait_until_async};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(1);

async fn probe_state(pool: &WorkerPool, mp: &Path) -> (ProbeReport, Duration) {
    let entries = read_mountinfo().expect("mountinfo");
    let start = Instant::now();
    let r = pool
        .probe_mounted(&entries, mp, DEADLINE, MountEntry::is_fuse)
        .await;
    (r, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_each_fault_is_classified_within_deadline() {
    require_fuse();
    let (tmp, d) = common::dirs(2);
    let fs = FaultFsHandle::mount(&d[0]).expect("mount faultfs");
    let pool = common::pool(4);
    let cases = [
        (Fault::Healthy, MountState::Healthy),
        (Fault::Errno(libc::ESTALE), MountState::Stale),
        (Fault::Errno(libc::EIO), MountState::IoError),
        (Fault::Errno(libc::ENOTCONN), MountState::Disconnected),
        (Fault::Errno(libc::EACCES), MountState::Permission),
        (Fault::Healthy, MountState::Healthy),
        (Fault::Hang, MountState::Hung),
    ];
    for (fault, want) in cases {
        fs.set_fault(fault);
        let (r, took) = probe_state(&pool, fs.mountpoint()).await;
        assert_eq!(r.state, want, "fault {fault:?}: {r:?}");
        assert!(
            took <= DEADLINE + Duration::from_secs(1),
            "{fault:?} took {took:?}"
        );
        println!("{fault:?} -> {} in {took:?}", r.state);
    }
    // The hung worker is SIGKILLed but cannot die while the server holds its request.
    assert_eq!(pool.stuck_workers(), 1);
    assert!(pool.is_stuck(fs.mountpoint()));
    // A second probe answers Hung at once, without a new process.
    let live = pool.live_workers();
    let (r, took) = probe_state(&pool, fs.mountpoint()).await;
    assert_eq!(r.state, MountState::Hung);
    assert!(
        took < Duration::from_millis(200),
        "stuck mount answered in {took:?}"
    );
    assert_eq!(
        pool.live_workers(),
        live,
        "no worker spawned for a stuck mount"
    );

    // The server dies: the stuck worker is released (and reaped), probes say ENOTCONN.
    fs.kill_server();
    assert!(
        wait_until_async(Duration::from_secs(5), || pool.stuck_workers() == 0).await,
        "stuck worker not reaped after the server died"
    );
    let (r, took) = probe_state(&pool, fs.mountpoint()).await;
    assert_eq!(r.state, MountState::Disconnected, "{r:?}");
    assert_eq!(r.outcome.and_then(|o| o.errno()), Some(libc::ENOTCONN));
    assert!(took <= DEADLINE + Duration::from_secs(1));

    // Not mounted: a plain directory and a missing path (mountinfo has no FUSE mount
    // there), classified without running a probe.
    for p in [d[1].clone(), tmp.path().join("missing")] {
        let (r, _) = probe_state(&pool, &p).await;
        assert_eq!(r.state, MountState::NotMounted, "{}: {r:?}", p.display());
        assert!(r.outcome.is_none());
    }
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_hung_mount_never_stalls_probes_of_the_others() {
    require_fuse();
    let (_tmp, d) = common::dirs(4);
    let mounts: Vec<FaultFsHandle> = d
        .iter()
        .map(|p| FaultFsHandle::mount(p).expect("mount faultfs"))
        .collect();
    mounts[0].set_fault(Fault::Hang);
    let pool = common::pool(8);
    let period = Duration::from_millis(100);
    let run_for = Duration::from_secs(3);
    let expected = (run_for.as_millis() / period.as_millis()) as usize;
    let mut tasks = Vec::new();
    let counts: Vec<Arc<AtomicUsize>> = (0..4).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (i, m) in mounts.iter().enumerate() {
        let pool = pool.clone();
        let mp = m.mountpoint().to_path_buf();
        let count = counts[i].clone();
        tasks.push(tokio::spawn(async move {
            let end = Instant::now() + run_for;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut outcomes = Vec::new();
            while Instant::now() < end {
                tick.tick().await;
                let o = pool.probe(&mp, Duration::from_millis(500)).await;
                if i == 0 {
                    assert!(matches!(o, ProbeOutcome::Hung { .. }), "{o:?}");
                } else if matches!(o, ProbeOutcome::Ok { .. }) {
                    count.fetch_add(1, Ordering::SeqCst);
                } else {
                    outcomes.push(o);
                }
            }
            outcomes
        }));
    }
    for t in tasks {
        let bad = t.await.expect("probe task");
        assert!(bad.is_empty(), "healthy mount probed unhealthy: {bad:?}");
    }
    for (i, c) in counts.iter().enumerate().skip(1) {
        let n = c.load(Ordering::SeqCst);
        println!("mount {i}: {n} healthy probes of {expected} expected");
        assert!(
            n * 10 >= expected * 8,
            "mount {i} kept only {n}/{expected} probes while mount 0 hung"
        );
    }
    assert_eq!(
        pool.stuck_workers(),
        1,
        "exactly one worker stuck on the hung mount"
    );
    mounts[0].release();
    assert!(wait_until_async(Duration::from_secs(5), || pool.stuck_workers() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_stuck_workers_are_reaped_when_the_server_answers_or_dies() {
    require_fuse();
    let (_tmp, d) = common::dirs(2);
    let answers = FaultFsHandle::mount(&d[0]).expect("mount faultfs");
    let dies = FaultFsHandle::mount(&d[1]).expect("mount faultfs");
    let pool = common::pool(4);
    for fs in [&answers, &dies] {
        fs.set_fault(Fault::Hang);
        let o = pool
            .probe(fs.mountpoint(), Duration::from_millis(300))
            .await;
        assert!(matches!(o, ProbeOutcome::Hung { .. }), "{o:?}");
        assert!(fs.pending() >= 1, "the server holds the worker's request");
    }
    assert_eq!(pool.stuck_workers(), 2);

    answers.release();
    assert!(
        wait_until_async(Duration::from_secs(5), || pool.stuck_workers() == 1).await,
        "worker not reaped after the server answered"
    );
    assert!(!pool.is_stuck(answers.mountpoint()));
    assert!(pool.is_stuck(dies.mountpoint()));
    let o = pool.probe(answers.mountpoint(), DEADLINE).await;
    assert!(matches!(o, ProbeOutcome::Ok { .. }), "{o:?}");

    dies.kill_server();
    assert!(
        wait_until_async(Duration::from_secs(5), || pool.stuck_workers() == 0).await,
        "worker not reaped after the server died"
    );
    let o = pool.probe(dies.mountpoint(), DEADLINE).await;
    assert_eq!(o.errno(), Some(libc::ENOTCONN), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_recovery_detaches_only_its_target_while_files_are_busy() {
    require_fuse();
    let (_tmp, d) = common::dirs(3);
    let mounts: Vec<FaultFsHandle> = d
        .iter()
        .map(|p| FaultFsHandle::mount(p).expect("mount faultfs"))
        .collect();
    let target = mounts[1].mountpoint().to_path_buf();
    let mut cleanup = Cleanup::new();
    // One process holds a file open on the target (like Airflow's log handlers),
    // another has its cwd inside it.
    let held = std::fs::File::open(target.join("data.txt")).expect("open data.txt");
    cleanup
        .spawn(Command::new("sleep").arg("1000").stdin(Stdio::from(held)))
        .expect("spawn holder");
    cleanup
        .spawn(Command::new("sleep").arg("1000").current_dir(&target))
        .expect("spawn cwd holder");

    // The seed's way (plain, non-lazy umount) fails with EBUSY.
    let e = RustixMountOps
        .umount(&target, UmountFlags::NONE)
        .expect_err("plain umount of a busy mount must fail");
    assert_eq!(e.errno, libc::EBUSY, "{e}");
    let out = run_command(
        &[OsString::from("umount"), target.clone().into_os_string()],
        Duration::from_secs(10),
        &[],
    )
    .await
    .expect("run umount");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "seed-style `umount {}`: {} {stderr}",
        target.display(),
        out.status
    );
    assert!(!out.status.success());
    assert!(stderr.contains("busy"), "{stderr}");
    let entries = read_mountinfo().unwrap();
    assert!(find_mount(&entries, &target).is_some_and(MountEntry::is_fuse));

    // nfsha's way, through a worker: MNT_FORCE, then MNT_DETACH since still busy.
    let pool = common::pool(2);
    let r = pool
        .request(
            WorkerRequest::Umount {
                path: target.clone(),
                force: true,
                detach: true,
            },
            Duration::from_secs(5),
        )
        .await
        .expect("umount request");
    let WorkerResponse::Umount { steps, errno } = r else {
        panic!("unexpected {r:?}")
    };
    println!("umount steps: {steps:?}");
    assert_eq!(errno, None, "target still mounted: {steps:?}");
    assert_eq!(steps.first().map(|s| s.flags.as_str()), Some("MNT_FORCE"));
    assert_eq!(steps.last().map(|s| s.flags.as_str()), Some("MNT_DETACH"));

    let entries = read_mountinfo().unwrap();
    assert!(
        !find_mount(&entries, &target).is_some_and(MountEntry::is_fuse),
        "target still in mountinfo"
    );
    for (i, m) in mounts.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert!(
            find_mount(&entries, m.mountpoint()).is_some_and(MountEntry::is_fuse),
            "mount {i} was detached too"
        );
        let o = pool.probe(m.mountpoint(), DEADLINE).await;
        assert!(matches!(o, ProbeOutcome::Ok { .. }), "mount {i}: {o:?}");
    }
    cleanup.kill_children();
}

/// Not a timed test: prints what one idle worker costs and what 1,000 probes
/// through the pool cost, and asserts only that the pool reused its worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_pool_cost_report() {
    require_fuse();
    let (_tmp, d) = common::dirs(1);
    let fs = FaultFsHandle::mount(&d[0]).expect("mount faultfs");
    let pool = common::pool(1);
    let pid = match pool.request(WorkerRequest::Ping, DEADLINE).await {
        Ok(WorkerResponse::Pong { pid }) => pid,
        other => panic!("{other:?}"),
    };
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpu_before = child_cpu(pid);
    let start = Instant::now();
    let n = 1000;
    let mut ok = 0;
    for _ in 0..n {
        if matches!(
            pool.probe(fs.mountpoint(), DEADLINE).await,
            ProbeOutcome::Ok { .. }
        ) {
            ok += 1;
        }
    }
    let wall = start.elapsed();
    let cpu = child_cpu(pid).saturating_sub(cpu_before);
    // For comparison: no reuse (a process spawned per probe), 200 probes.
    let fresh = common::pool(0);
    let m = 200;
    let start = Instant::now();
    let mut fresh_ok = 0;
    for _ in 0..m {
        if matches!(
            fresh.probe(fs.mountpoint(), DEADLINE).await,
            ProbeOutcome::Ok { .. }
        ) {
            fresh_ok += 1;
        }
    }
    let fresh_wall = start.elapsed();
    let report = format!(
        "{{\"idle_worker_rss_kb\":{rss_kb},\"pooled_probes\":{n},\"pooled_ok\":{ok},\"pooled_wall_ms\":{},\"pooled_us_per_probe\":{},\"worker_cpu_ticks\":{cpu},\"spawned_probes\":{m},\"spawned_ok\":{fresh_ok},\"spawned_us_per_probe\":{}}}",
        wall.as_millis(),
        wall.as_micros() / n as u128,
        fresh_wall.as_micros() / m as u128,
    );
    println!("{report}");
    if let Some(out) = std::env::var_os("NFSHA_POOL_BENCH_JSON") {
        std::fs::write(out, &report).expect("write NFSHA_POOL_BENCH_JSON");
    }
    assert_eq!(fresh_ok, m);
    assert_eq!(ok, n);
    assert_eq!(pool.live_workers(), 1, "every probe reused the one worker");
    drop(fs);
}

fn child_cpu(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at index 11 and 12 after the comm field.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_umount_of_a_hung_mount_works_while_its_probe_worker_is_stuck() {
    require_fuse();
    let (_tmp, d) = common::dirs(1);
    let fs = FaultFsHandle::mount(&d[0]).expect("mount faultfs");
    let pool = common::pool(4);
    fs.set_fault(Fault::Hang);
    let o = pool
        .probe(fs.mountpoint(), Duration::from_millis(300))
        .await;
    assert!(matches!(o, ProbeOutcome::Hung { .. }), "{o:?}");
    assert_eq!(pool.stuck_workers(), 1);
    // Umounts have their own lane: the stuck probe does not block the recovery.
    let start = Instant::now();
    let r = pool
        .request(
            WorkerRequest::Umount {
                path: fs.mountpoint().to_path_buf(),
                force: true,
                detach: true,
            },
            Duration::from_secs(5),
        )
        .await
        .expect("umount request");
    assert!(
        matches!(r, WorkerResponse::Umount { errno: None, .. }),
        "{r:?}"
    );
    println!("umount of a hung mount took {:?}: {r:?}", start.elapsed());
    // MNT_FORCE aborted the FUSE connection: the stuck worker is released and reaped.
    assert!(
        wait_until_async(Duration::from_secs(5), || pool.stuck_workers() == 0).await,
        "stuck worker not reaped after the forced umount"
    );
    let (r, _) = probe_state(&pool, fs.mountpoint()).await;
    assert_eq!(r.state, MountState::NotMounted, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_force_through_a_hold_releases_a_call_blocked_in_the_detached_mount() {
    // The agent's direct-mode replace: hold the old mount on a handle, take it off its
    // mountpoint lazily (a call is blocked in it), then MNT_FORCE through the handle.
    require_fuse();
    let (_tmp, d) = common::dirs(2);
    let (mp, handle) = (d[0].clone(), d[1].clone());
    let fs = FaultFsHandle::mount(&mp).expect("mount faultfs");
    let pool = common::pool(4);
    let fuse_at = |p: &Path| {
        read_mountinfo()
            .expect("mountinfo")
            .iter()
            .filter(|e| e.mountpoint == p && e.is_fuse())
            .count()
    };
    let r = pool
        .request(
            WorkerRequest::Hold {
                path: mp.clone(),
                at: handle.clone(),
                layers: 2,
            },
            Duration::from_secs(5),
        )
        .await
        .expect("hold request");
    assert_eq!(
        r,
        WorkerResponse::Hold {
            errno: None,
            layers: 2
        }
    );
    assert_eq!(fuse_at(&handle), 2, "two layers held");

    fs.set_fault(Fault::Hang);
    let o = pool.probe(&mp, Duration::from_millis(300)).await;
    assert!(matches!(o, ProbeOutcome::Hung { .. }), "{o:?}");
    assert_eq!(pool.stuck_workers(), 1);

    let umount = |path: &Path, force: bool| WorkerRequest::Umount {
        path: path.to_path_buf(),
        force,
        detach: true,
    };
    let r = pool
        .request(umount(&mp, false), Duration::from_secs(5))
        .await
        .expect("detach request");
    assert!(
        matches!(r, WorkerResponse::Umount { errno: None, .. }),
        "{r:?}"
    );
    assert_eq!(fuse_at(&mp), 0, "detached from its mountpoint");
    assert_eq!(
        pool.stuck_workers(),
        1,
        "a lazy detach does not release the blocked call"
    );

    let r = pool
        .request(umount(&handle, true), Duration::from_secs(5))
        .await
        .expect("force request");
    assert!(
        matches!(r, WorkerResponse::Umount { errno: None, .. }),
        "{r:?}"
    );
    assert!(
        wait_until_async(Duration::from_secs(5), || pool.stuck_workers() == 0).await,
        "the call blocked in the detached mount was not released by the force through the hold"
    );
    assert_eq!(fuse_at(&handle), 1, "one force takes one layer off");
    let r = pool
        .request(umount(&handle, true), Duration::from_secs(5))
        .await
        .expect("second force");
    assert!(
        matches!(r, WorkerResponse::Umount { errno: None, .. }),
        "{r:?}"
    );
    assert_eq!(fuse_at(&handle), 0, "the hold is gone");
}
