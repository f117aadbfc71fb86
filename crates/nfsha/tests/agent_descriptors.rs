//! Issue 16, hole 1 ("any local user can blind the agent"), end to end on the real `nfsha`
//! binary over FUSE stand-in mounts (root + /dev/fuse): idle TCP connections to the
//! agent's `/metrics` port must not take the descriptors its probes, mount-table reads
//! and control socket need. The agent runs with systemd's default descriptor limit
//! (1,024) as both soft and hard limit, so raising it cannot help and only the connection
//! cap and the header-read timeout are tested.

mod common;

use common::{Agent, PATIENCE, Scratch, metric0, try_http, wait_for};
use nfsha_testinfra::{Fault, FaultFsHandle, require_fuse};
use rustix::process::{Resource, Rlimit};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// systemd's default soft limit for services.
const AGENT_NOFILE: u64 = 1024;
/// More idle connections than the agent has descriptors.
const IDLE_CONNECTIONS: usize = 1100;

/// Give the agent's process `soft`/`hard` descriptor limits.
fn with_nofile(cmd: &mut Command, soft: u64, hard: u64) {
    // SAFETY: the closure runs in the forked child before exec; it only makes the
    // setrlimit system call (async-signal-safe, no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(soft),
                    maximum: Some(hard),
                },
            )
            .map_err(std::io::Error::from)
        });
    }
}

/// Lift this test process's own soft limit, so it can hold the idle connections.
fn raise_own_nofile(need: u64) {
    let l = rustix::process::getrlimit(Resource::Nofile);
    let hard = l.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= need,
        "this test holds {need} descriptors but the hard RLIMIT_NOFILE is {hard}; run it with `ulimit -Hn {need}` or more"
    );
    rustix::process::setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(need.max(l.current.unwrap_or(0))),
            maximum: l.maximum,
        },
    )
    .expect("raise the test's own RLIMIT_NOFILE");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The soft and hard "Max open files" of `pid`.
fn nofile_of(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_owned(), f[4].to_owned())
}

#[test]
fn idle_connections_up_to_the_limit_do_not_blind_the_agent() {
    require_fuse();
    raise_own_nofile(IDLE_CONNECTIONS as u64 + 512);
    let scratch = Scratch::new("nfsha-e2e-fds");
    let kept_mp = scratch.dir("kept");
    let gone_mp = scratch.dir("gone");
    let kept = FaultFsHandle::mount(&kept_mp).expect("mount FaultFs");
    let gone = FaultFsHandle::mount(&gone_mp).expect("mount FaultFs");
    let agent = Agent::start_with(&scratch.root, &[kept_mp.clone(), gone_mp.clone()], |cmd| {
        with_nofile(cmd, AGENT_NOFILE, AGENT_NOFILE)
    });
    agent.wait_state(&kept_mp, "healthy", PATIENCE);
    agent.wait_state(&gone_mp, "healthy", PATIENCE);
    let probes_ok = format!(
        "nfsha_probes_total{{mountpoint=\"{}\",result=\"ok\"}}",
        kept_mp.display()
    );
    let probes_before = metric0(&agent.metrics(), &probes_ok);

    // The attack: idle connections (nothing sent), all held open by this test.
    let addr: SocketAddr = ([127, 0, 0, 1], agent.files.port).into();
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    let mut failed = 0usize;
    for _ in 0..IDLE_CONNECTIONS {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => idle.push(s),
            Err(_) => failed += 1,
        }
    }
    println!(
        "{} idle connections open, {failed} not established",
        idle.len()
    );
    assert!(
        idle.len() >= AGENT_NOFILE as usize,
        "only {} of {IDLE_CONNECTIONS} connections were established: the attack was not made",
        idle.len()
    );

    let pid = agent.child.id();
    let fds = open_fds(pid);
    println!("agent holds {fds} descriptors with the connections open");
    assert!(
        fds < AGENT_NOFILE as usize / 2,
        "the agent holds {fds} of its {AGENT_NOFILE} descriptors: the listeners take them"
    );

    // While every connection is held: the control socket answers, a probe runs (the
    // kept mount turns stale), and the mount table is read (the other one vanishes).
    kept.set_fault(Fault::Errno(libc::ESTALE));
    drop(gone);
    agent.wait_state(&kept_mp, "stale", PATIENCE);
    agent.wait_state(&gone_mp, "not-mounted", PATIENCE);

    // The header-read timeout frees the places the idle connections took: /healthz and
    // /metrics answer again while the test still holds every connection open.
    let mut healthz = None;
    let answered = wait_for(PATIENCE, || {
        healthz = try_http(agent.files.port, "/healthz");
        healthz.is_some()
    });
    assert!(
        answered,
        "/healthz did not answer within {PATIENCE:?} with {} idle connections held\n{}",
        idle.len(),
        agent.log_text()
    );
    assert_eq!(
        healthz.map(|(code, _)| code),
        Some(503),
        "two broken mounts"
    );
    kept.set_fault(Fault::Healthy);
    agent.wait_state(&kept_mp, "healthy", PATIENCE);
    let probes_after = metric0(&agent.metrics(), &probes_ok);
    assert!(
        probes_after > probes_before,
        "no successful probe counted during the attack ({probes_before} -> {probes_after})"
    );
    let log = std::fs::read_to_string(&agent.files.log).unwrap_or_default();
    assert!(
        log.contains("connection limit reached"),
        "refusals are not logged\n{}",
        agent.log_text()
    );
    drop(idle);
}

#[test]
fn the_agent_raises_its_soft_descriptor_limit_to_the_hard_limit() {
    require_fuse();
    let scratch = Scratch::new("nfsha-e2e-nofile");
    let mp = scratch.dir("m");
    let _fs = FaultFsHandle::mount(&mp).expect("mount FaultFs");
    let agent = Agent::start_with(&scratch.root, std::slice::from_ref(&mp), |cmd| {
        with_nofile(cmd, 256, 2048)
    });
    assert_eq!(
        nofile_of(agent.child.id()),
        ("2048".to_owned(), "2048".to_owned()),
        "soft limit not raised"
    );
    let log = std::fs::read_to_string(&agent.files.log).unwrap_or_default();
    assert!(
        log.contains("raised the descriptor limit"),
        "the raise is not logged\n{}",
        agent.log_text()
    );
}
