//! The per-mount recovery state machine: hysteresis, one recovery at a time, backoff.
//!
//! Pure logic driven by the agent's supervisor: it is told what each probe saw and
//! how each recovery ended, and answers with the state transition to report and the
//! action to take. Time is passed in, so tests drive it without sleeping.

use crate::state::MountState;
use std::time::{Duration, Instant};

/// Tunables of the machine (from the mount's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// Consecutive bad probes before a recovery starts.
    pub failures_before_recovery: u32,
    /// First wait after a failed recovery.
    pub backoff_initial: Duration,
    /// Cap of the exponential backoff.
    pub backoff_max: Duration,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            failures_before_recovery: 2,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What the supervisor should do next for this mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Start a recovery now (the cause is the state that triggered it).
    Recover {
        /// The state that triggered the recovery.
        cause: MountState,
    },
}

/// A reported state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The old state.
    pub from: MountState,
    /// The new state.
    pub to: MountState,
}

/// The machine for one mount.
#[derive(Debug, Clone)]
pub struct MountMachine {
    cfg: MachineConfig,
    state: MountState,
    since: Instant,
    consecutive_bad: u32,
    recovering: bool,
    failed_attempts: u32,
    not_before: Option<Instant>,
    forced: bool,
}

impl MountMachine {
    /// A machine in `Unknown` state.
    pub fn new(cfg: MachineConfig, now: Instant) -> Self {
        MountMachine {
            cfg,
            state: MountState::Unknown,
            since: now,
            consecutive_bad: 0,
            recovering: false,
            failed_attempts: 0,
            not_before: None,
            forced: false,
        }
    }

    /// Replace the tunables (config reload) without losing state.
    pub fn reconfigure(&mut self, cfg: MachineConfig) {
        self.cfg = cfg;
    }

    /// The current classified state.
    pub fn state(&self) -> MountState {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Whether a recovery is running.
    pub fn recovering(&self) -> bool {
        self.recovering
    }

    /// Failed recoveries in a row.
    pub fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// The earliest time the next recovery may start (backoff), if any.
    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// Feed one probe's classification.
    pub fn on_probe(&mut self, now: Instant, observed: MountState) -> (Option<Transition>, Action) {
        let transition = self.set_state(now, observed);
        if observed.needs_recovery() {
            self.consecutive_bad = self.consecutive_bad.saturating_add(1);
        } else {
            self.consecutive_bad = 0;
            if observed == MountState::Healthy {
                self.failed_attempts = 0;
                self.not_before = None;
            }
        }
        (transition, self.decide(now))
    }

    /// Ask for a recovery regardless of hysteresis (`nfsha recover`, wrong server, failback).
    pub fn force_recovery(&mut self, now: Instant) -> Action {
        self.forced = true;
        self.not_before = None;
        self.decide(now)
    }

    /// Periodic check: starts a recovery whose backoff has expired.
    pub fn on_tick(&mut self, now: Instant) -> Action {
        self.decide(now)
    }

    /// Tell the machine a recovery ended.
    pub fn on_recovery_finished(&mut self, now: Instant, ok: bool) {
        self.recovering = false;
        if ok {
            self.failed_attempts = 0;
            self.not_before = None;
            self.consecutive_bad = 0;
        } else {
            self.failed_attempts = self.failed_attempts.saturating_add(1);
            self.not_before = Some(now + self.backoff());
        }
    }

    /// Let the next recovery start no later than `t`, whatever the backoff says (used
    /// when the reason for the failure is known to be short-lived).
    pub fn retry_no_later_than(&mut self, t: Instant) {
        if self.not_before.is_some_and(|nb| nb > t) {
            self.not_before = Some(t);
        }
    }

    /// The backoff that applies after the current number of failed attempts.
    pub fn backoff(&self) -> Duration {
        let shift = self.failed_attempts.saturating_sub(1).min(20);
        let d = self.cfg.backoff_initial.saturating_mul(1u32 << shift);
        d.min(self.cfg.backoff_max)
    }

    fn set_state(&mut self, now: Instant, to: MountState) -> Option<Transition> {
        if to == self.state {
            return None;
        }
        let from = self.state;
        self.state = to;
        self.since = now;
        Some(Transition { from, to })
    }

    fn decide(&mut self, now: Instant) -> Action {
        if self.recovering {
            return Action::None;
        }
        if self.not_before.is_some_and(|t| now < t) {
            return Action::None;
        }
        let due = self.forced
            || (self.state.needs_recovery()
                && self.consecutive_bad >= self.cfg.failures_before_recovery.max(1));
        if !due {
            return Action::None;
        }
        self.forced = false;
        self.recovering = true;
        Action::Recover { cause: self.state }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MachineConfig {
        MachineConfig {
            failures_before_recovery: 2,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
        }
    }

    #[test]
    fn one_bad_probe_is_reported_but_not_acted_on() {
        let t0 = Instant::now();
        let mut m = MountMachine::new(cfg(), t0);
        assert_eq!(m.on_probe(t0, MountState::Healthy).1, Action::None);
        let (tr, act) = m.on_probe(t0, MountState::Stale);
        assert_eq!(
            tr,
            Some(Transition {
                from: MountState::Healthy,
                to: MountState::Stale
            })
        );
        assert_eq!(act, Action::None);
        let (tr, act) = m.on_probe(t0, MountState::Stale);
        assert_eq!(tr, None);
        assert_eq!(
            act,
            Action::Recover {
                cause: MountState::Stale
            }
        );
    }

    #[test]
    fn only_one_recovery_at_a_time() {
        let t0 = Instant::now();
        let mut m = MountMachine::new(cfg(), t0);
        m.on_probe(t0, MountState::Hung);
        assert!(matches!(
            m.on_probe(t0, MountState::Hung).1,
            Action::Recover { .. }
        ));
        assert_eq!(m.on_probe(t0, MountState::Hung).1, Action::None);
        assert_eq!(m.force_recovery(t0), Action::None);
        assert!(m.recovering());
    }

    #[test]
    fn failed_recoveries_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut m = MountMachine::new(cfg(), t0);
        m.on_probe(t0, MountState::Stale);
        assert!(matches!(
            m.on_probe(t0, MountState::Stale).1,
            Action::Recover { .. }
        ));
        let mut now = t0;
        let mut waits = vec![];
        for _ in 0..6 {
            m.on_recovery_finished(now, false);
            let nb = m.not_before().unwrap();
            waits.push(nb - now);
            assert_eq!(m.on_probe(now, MountState::Stale).1, Action::None);
            now = nb;
            assert!(matches!(m.on_tick(now), Action::Recover { .. }));
        }
        let secs: Vec<u64> = waits.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn retry_no_later_than_shortens_but_never_lengthens_the_wait() {
        let t0 = Instant::now();
        let mut m = MountMachine::new(cfg(), t0);
        m.on_probe(t0, MountState::Stale);
        m.on_probe(t0, MountState::Stale);
        for _ in 0..4 {
            m.on_recovery_finished(t0, false);
        }
        assert_eq!(m.not_before(), Some(t0 + Duration::from_secs(8)));
        m.retry_no_later_than(t0 + Duration::from_secs(1));
        assert_eq!(m.not_before(), Some(t0 + Duration::from_secs(1)));
        m.retry_no_later_than(t0 + Duration::from_secs(5));
        assert_eq!(m.not_before(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn healthy_probe_resets_the_backoff() {
        let t0 = Instant::now();
        let mut m = MountMachine::new(cfg(), t0);
        m.on_probe(t0, MountState::Stale);
        m.on_probe(t0, MountState::Stale);
        m.on_recovery_finished(t0, false);
        assert_eq!(m.failed_attempts(), 1);
        m.on_probe(t0, MountState::Healthy);
        assert_eq!(m.failed_attempts(), 0);
        assert_eq!(m.not_before(), None);
    }

    #[test]
    fn permission_errors_never_trigger_a_recovery() {
        let t0 = Instant::now();
        let mut m = MountMachine::new(cfg(), t0);
        for _ in 0..10 {
            assert_eq!(m.on_probe(t0, MountState::Permission).1, Action::None);
        }
    }

    #[test]
    fn forced_recovery_skips_hysteresis() {
        let t0 = Instant::now();
        let mut m = MountMachine::new(cfg(), t0);
        m.on_probe(t0, MountState::Healthy);
        assert_eq!(
            m.force_recovery(t0),
            Action::Recover {
                cause: MountState::Healthy
            }
        );
    }
}
