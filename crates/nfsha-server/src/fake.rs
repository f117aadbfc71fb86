//! A recording [`ServerHost`] for tests and for the in-process race harness.
//!
//! Role: record every host call with a monotonic timestamp, fail or hang any step on
//! demand, and keep **serving intervals** (from the first step going up to the last
//! step going down) in a [`ServingLog`] that several fake nodes can share, so a test can
//! prove that no two nodes were ever active at once. Failure modes: only the ones a test
//! injects ([`HostError::Injected`], or a step that never returns).
//!
//! "Active" is deliberately conservative: a node counts as active from the moment any
//! bring-up step *starts* until every step has *finished* going down.

use crate::host::{HostError, Role, ServerHost, Step};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Monotonic now, through tokio's clock so that tests with paused time see virtual time.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bring-up action.
    Up,
    /// Teardown action.
    Down,
}

/// One recorded host call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    /// `up(step)` was called.
    Up(Step),
    /// `down(step)` was called.
    Down(Step),
    /// `ship(target)` was called.
    Ship(String),
    /// `final_sync(target)` was called.
    FinalSync(String),
    /// `role_changed(role)` was called.
    RoleChanged(Role),
}

/// One interval during which a node was active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingInterval {
    /// Node name.
    pub node: String,
    /// First step started going up.
    pub start: Instant,
    /// Last step finished going down (`None`: still active).
    pub end: Option<Instant>,
}

/// Serving intervals of several nodes, shared between their fake hosts.
#[derive(Debug, Clone, Default)]
pub struct ServingLog(Arc<Mutex<Vec<ServingInterval>>>);

impl ServingLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every interval so far.
    pub fn intervals(&self) -> Vec<ServingInterval> {
        lock(&self.0).clone()
    }

    /// The first pair of intervals of different nodes that overlap, if any. An open
    /// interval extends to "now".
    pub fn first_overlap(&self) -> Option<(ServingInterval, ServingInterval)> {
        let all = self.intervals();
        let now = now();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a.node == b.node {
                    continue;
                }
                let a_end = a.end.unwrap_or(now);
                let b_end = b.end.unwrap_or(now);
                if a.start < b_end && b.start < a_end {
                    return Some((a.clone(), b.clone()));
                }
            }
        }
        None
    }

    fn open(&self, node: &str, at: Instant) {
        lock(&self.0).push(ServingInterval {
            node: node.to_owned(),
            start: at,
            end: None,
        });
    }

    fn close(&self, node: &str, at: Instant) {
        let mut v = lock(&self.0);
        if let Some(iv) = v
            .iter_mut()
            .rev()
            .find(|iv| iv.node == node && iv.end.is_none())
        {
            iv.end = Some(at);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the record from the assertion.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<(Instant, HostCall)>,
    /// Remaining injected failures per (step, direction); `u32::MAX` = always.
    failures: HashMap<(Step, Direction), u32>,
    hangs: BTreeSet<(u8, bool)>,
    delays: HashMap<Step, Duration>,
    up: BTreeSet<u8>,
    /// Remaining injected ship failures; `u32::MAX` = always.
    ship_failures: u32,
    /// Targets whose ships fail every time.
    ship_failing_targets: BTreeSet<String>,
}

/// A recording, failure-injecting host.
#[derive(Debug, Clone)]
pub struct FakeHost {
    node: String,
    state: Arc<Mutex<FakeState>>,
    log: ServingLog,
}

impl FakeHost {
    /// A fake for `node` with its own serving log.
    pub fn new(node: impl Into<String>) -> Self {
        Self::with_log(node, ServingLog::new())
    }

    /// A fake for `node` recording into a shared serving log.
    pub fn with_log(node: impl Into<String>, log: ServingLog) -> Self {
        FakeHost {
            node: node.into(),
            state: Arc::default(),
            log,
        }
    }

    /// The serving log this fake writes to.
    pub fn serving_log(&self) -> &ServingLog {
        &self.log
    }

    /// Make the next `times` calls of `step` in `direction` fail.
    pub fn fail(&self, step: Step, direction: Direction, times: u32) {
        lock(&self.state).failures.insert((step, direction), times);
    }

    /// Make every call of `step` in `direction` fail.
    pub fn fail_always(&self, step: Step, direction: Direction) {
        self.fail(step, direction, u32::MAX);
    }

    /// Make `step` in `direction` never return (until the caller gives up).
    pub fn hang(&self, step: Step, direction: Direction) {
        lock(&self.state)
            .hangs
            .insert((step as u8, direction == Direction::Up));
    }

    /// Make the next `times` ships (any target) fail; `u32::MAX`: all of them.
    pub fn fail_ships(&self, times: u32) {
        lock(&self.state).ship_failures = times;
    }

    /// Make every ship to `target` fail (`false`: stop failing).
    pub fn fail_ships_to(&self, target: &str, fail: bool) {
        let mut s = lock(&self.state);
        if fail {
            s.ship_failing_targets.insert(target.to_owned());
        } else {
            s.ship_failing_targets.remove(target);
        }
    }

    /// The targets shipped to so far (successful or not), in order.
    pub fn ships(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                HostCall::Ship(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// Make `step` take `d` in both directions.
    pub fn delay(&self, step: Step, d: Duration) {
        lock(&self.state).delays.insert(step, d);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<HostCall> {
        lock(&self.state)
            .calls
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Every call so far with its monotonic timestamp.
    pub fn timed_calls(&self) -> Vec<(Instant, HostCall)> {
        lock(&self.state).calls.clone()
    }

    /// Steps currently up.
    pub fn steps_up(&self) -> Vec<Step> {
        let s = lock(&self.state);
        Step::BRING_UP
            .into_iter()
            .filter(|st| s.up.contains(&(*st as u8)))
            .collect()
    }

    /// Whether any step is up (the node is active).
    pub fn is_active(&self) -> bool {
        !lock(&self.state).up.is_empty()
    }

    /// Simulate the node dying with its NFS server (SIGKILL of controller and nfsd,
    /// power loss): everything is down at once, the serving interval ends now.
    pub fn crash(&self) {
        let mut s = lock(&self.state);
        if !s.up.is_empty() {
            s.up.clear();
            self.log.close(&self.node, now());
        }
    }

    fn record(&self, call: HostCall) {
        lock(&self.state).calls.push((now(), call));
    }

    /// Returns (hang, fail, delay) for this call.
    fn plan(&self, step: Step, direction: Direction) -> (bool, bool, Option<Duration>) {
        let mut s = lock(&self.state);
        let hang = s.hangs.contains(&(step as u8, direction == Direction::Up));
        let fail = match s.failures.get_mut(&(step, direction)) {
            Some(0) | None => false,
            Some(n) => {
                if *n != u32::MAX {
                    *n -= 1;
                }
                true
            }
        };
        (hang, fail, s.delays.get(&step).copied())
    }
}

impl ServerHost for FakeHost {
    async fn up(&self, step: Step, _epoch: u64) -> Result<(), HostError> {
        self.record(HostCall::Up(step));
        let (hang, fail, delay) = self.plan(step, Direction::Up);
        if fail {
            return Err(HostError::Injected(format!("{step} up")));
        }
        {
            // Counted as up from the start of the call (conservative).
            let mut s = lock(&self.state);
            if s.up.is_empty() {
                self.log.open(&self.node, now());
            }
            s.up.insert(step as u8);
        }
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn down(&self, step: Step) -> Result<(), HostError> {
        self.record(HostCall::Down(step));
        let (hang, fail, delay) = self.plan(step, Direction::Down);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if hang {
            std::future::pending::<()>().await;
        }
        if fail {
            return Err(HostError::Injected(format!("{step} down")));
        }
        let mut s = lock(&self.state);
        s.up.remove(&(step as u8));
        // Notify has no teardown; once every other step is down the node is inactive.
        s.up.remove(&(Step::Notify as u8));
        if s.up.is_empty() {
            // Only close if the node had an open interval.
            self.log.close(&self.node, now());
        }
        Ok(())
    }

    async fn ship(&self, target: &str, _epoch: u64) -> Result<(), HostError> {
        self.record(HostCall::Ship(target.to_owned()));
        let mut s = lock(&self.state);
        if s.ship_failing_targets.contains(target) {
            return Err(HostError::Injected(format!("ship to {target}")));
        }
        match s.ship_failures {
            0 => Ok(()),
            n => {
                if n != u32::MAX {
                    s.ship_failures -= 1;
                }
                Err(HostError::Injected(format!("ship to {target}")))
            }
        }
    }

    async fn final_sync(&self, target: &str, _epoch: u64) -> Result<(), HostError> {
        self.record(HostCall::FinalSync(target.to_owned()));
        Ok(())
    }

    async fn role_changed(&self, role: Role) -> Result<(), HostError> {
        self.record(HostCall::RoleChanged(role));
        Ok(())
    }
}
