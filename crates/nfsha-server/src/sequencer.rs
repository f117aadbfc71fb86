//! Ordered bring-up and reverse teardown of the NFS service, with rollback.
//!
//! Role: run [`Step::BRING_UP`] through a [`ServerHost`], each step bounded by the
//! step timeout and preceded by a [`StepGuard`] check (the controller's fencing-token
//! check); tear down in [`Step::TEAR_DOWN`] order, floating address first.
//! Failure modes: a step fails, times out or its guard refuses → that step (it may have
//! half-happened) and the steps already done are rolled back in reverse and a [`RollbackError`] keeps the cause apart from any
//! rollback failures (stratisd's `RollbackError` shape). A teardown step that fails does
//! not stop the teardown: every remaining step is still attempted, and the failed ones
//! stay recorded as up so the next teardown retries them.
//!
//! The sequencer remembers which steps are up across dropped futures: if the controller
//! abandons a bring-up mid-step (fencing), the step in flight counts as up for the
//! teardown that follows, because it may have half-happened.

use crate::host::{HostError, ServerHost, Step};
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The host action failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The host action did not finish within the step timeout (it was cancelled).
    #[error("Timed out after {0:?}")]
    Timeout(Duration),
    /// The fencing-token guard refused the step: this node can no longer prove it leads.
    #[error("Leadership not proven: {0}")]
    Guard(String),
}

/// A step and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("Step {step} failed")]
pub struct StepFailure {
    /// The step.
    pub step: Step,
    /// Why.
    #[source]
    pub error: StepError,
}

/// A bring-up failed; the steps done before it were rolled back (in reverse).
#[derive(Debug)]
pub struct RollbackError {
    /// The step that failed, and why.
    pub cause: StepFailure,
    /// Rollback actions that failed too (the step stays recorded as up).
    pub rollback_failures: Vec<StepFailure>,
}

impl fmt::Display for RollbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bring-up failed at {}", self.cause.step)?;
        if !self.rollback_failures.is_empty() {
            let steps: Vec<&str> = self
                .rollback_failures
                .iter()
                .map(|s| s.step.name())
                .collect();
            write!(f, " and rollback failed at {}", steps.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for RollbackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause.error)
    }
}

/// A teardown left some steps up.
#[derive(Debug)]
pub struct TeardownError {
    /// Every step whose teardown failed, in teardown order.
    pub failures: Vec<StepFailure>,
}

impl fmt::Display for TeardownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<&str> = self.failures.iter().map(|s| s.step.name()).collect();
        write!(f, "Teardown failed at {}", steps.join(", "))
    }
}

impl std::error::Error for TeardownError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failures
            .first()
            .map(|f| &f.error as &(dyn std::error::Error + 'static))
    }
}

/// Checked before every bring-up step: may this node still change its serving state?
pub trait StepGuard: Send + Sync {
    /// `Err(reason)` refuses the step.
    fn check(&self, step: Step, epoch: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// A guard that allows everything (tests of the sequencer alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGuard;

impl StepGuard for NoGuard {
    async fn check(&self, _step: Step, _epoch: u64) -> Result<(), String> {
        Ok(())
    }
}

/// Runs the steps through a host and remembers which are up.
#[derive(Debug)]
pub struct Sequencer<H> {
    host: H,
    step_timeout: Duration,
    /// Steps that are (or may be) up, in bring-up order.
    up: Vec<Step>,
}

impl<H: ServerHost> Sequencer<H> {
    /// A sequencer with nothing up.
    pub fn new(host: H, step_timeout: Duration) -> Self {
        Sequencer {
            host,
            step_timeout,
            up: Vec::new(),
        }
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// Steps currently (possibly) up, in bring-up order.
    pub fn steps_up(&self) -> &[Step] {
        &self.up
    }

    /// Whether any step is (possibly) up.
    pub fn anything_up(&self) -> bool {
        !self.up.is_empty()
    }

    /// Bring every step up under `epoch`. On failure, roll back the done steps in
    /// reverse and report both the cause and the rollback failures.
    pub async fn bring_up<G: StepGuard>(
        &mut self,
        epoch: u64,
        guard: &G,
    ) -> Result<(), RollbackError> {
        for step in Step::BRING_UP {
            if self.up.contains(&step) {
                continue;
            }
            if let Err(reason) = guard.check(step, epoch).await {
                return Err(self.rollback(step, StepError::Guard(reason)).await);
            }
            // Recorded before the call: if this future is dropped mid-step, the step
            // may have half-happened and the next teardown must undo it.
            self.up.push(step);
            let result = tokio::time::timeout(self.step_timeout, self.host.up(step, epoch)).await;
            let error = match result {
                Ok(Ok(())) => {
                    tracing::info!(step = step.name(), epoch, "step up");
                    continue;
                }
                Ok(Err(e)) => StepError::Host(e),
                Err(_) => StepError::Timeout(self.step_timeout),
            };
            // The failed step stays recorded as up: it may have half-happened (an
            // address added before arping failed, two of three exports), and teardown
            // is idempotent, so rollback undoes it first, then the done steps.
            return Err(self.rollback(step, error).await);
        }
        Ok(())
    }

    async fn rollback(&mut self, step: Step, error: StepError) -> RollbackError {
        tracing::warn!(step = step.name(), error = %error, "bring-up failed; rolling back");
        let rollback_failures = match self.tear_down().await {
            Ok(()) => Vec::new(),
            Err(e) => e.failures,
        };
        RollbackError {
            cause: StepFailure { step, error },
            rollback_failures,
        }
    }

    /// Tear down every step that is (possibly) up, floating address first. Every step
    /// is attempted even if an earlier one fails.
    pub async fn tear_down(&mut self) -> Result<(), TeardownError> {
        let todo: Vec<Step> = Step::TEAR_DOWN
            .into_iter()
            .filter(|s| self.up.contains(s))
            .collect();
        self.up.clear();
        self.run_down(&todo).await
    }

    /// Tear down every step whether or not it is known to be up (startup after a
    /// crash, unknown state). Relies on idempotent host teardown.
    pub async fn ensure_down(&mut self) -> Result<(), TeardownError> {
        self.up.clear();
        self.run_down(&Step::TEAR_DOWN).await
    }

    async fn run_down(&mut self, steps: &[Step]) -> Result<(), TeardownError> {
        let mut failures = Vec::new();
        for &step in steps {
            let result = tokio::time::timeout(self.step_timeout, self.host.down(step)).await;
            let error = match result {
                Ok(Ok(())) => {
                    tracing::info!(step = step.name(), "step down");
                    continue;
                }
                Ok(Err(e)) => StepError::Host(e),
                Err(_) => StepError::Timeout(self.step_timeout),
            };
            tracing::error!(step = step.name(), error = %error, "teardown step failed");
            failures.push(StepFailure { step, error });
        }
        // Failed steps stay "up" so that the next teardown retries them.
        for f in &failures {
            if !self.up.contains(&f.step) {
                self.up.push(f.step);
            }
        }
        self.up
            .sort_by_key(|s| Step::BRING_UP.iter().position(|b| b == s));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(TeardownError { failures })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Direction, FakeHost, HostCall};

    const T: Duration = Duration::from_secs(5);

    fn downs_for(up_to: usize) -> Vec<HostCall> {
        Step::TEAR_DOWN
            .into_iter()
            .filter(|s| Step::BRING_UP[..=up_to].contains(s))
            .map(HostCall::Down)
            .collect()
    }

    #[tokio::test]
    async fn bring_up_runs_in_order_and_tear_down_reverses_with_address_first() {
        let host = FakeHost::new("a");
        let mut seq = Sequencer::new(host.clone(), T);
        seq.bring_up(7, &NoGuard).await.expect("bring-up");
        assert_eq!(host.calls(), Step::BRING_UP.map(HostCall::Up).to_vec());
        assert_eq!(seq.steps_up(), &Step::BRING_UP);
        seq.tear_down().await.expect("teardown");
        let downs: Vec<HostCall> = host.calls().split_off(5);
        assert_eq!(
            downs,
            vec![
                HostCall::Down(Step::FloatingAddress),
                HostCall::Down(Step::Exports),
                HostCall::Down(Step::Nfsd),
                HostCall::Down(Step::Storage),
            ]
        );
        assert!(!seq.anything_up());
        assert!(!host.is_active());
    }

    #[tokio::test]
    async fn failure_at_each_step_rolls_back_that_step_and_the_done_ones_in_reverse() {
        for (i, step) in Step::BRING_UP.into_iter().enumerate() {
            let host = FakeHost::new("a");
            host.fail(step, Direction::Up, 1);
            let mut seq = Sequencer::new(host.clone(), T);
            let err = seq.bring_up(1, &NoGuard).await.expect_err("must fail");
            assert_eq!(err.cause.step, step, "cause step");
            assert!(
                matches!(err.cause.error, StepError::Host(HostError::Injected(_))),
                "cause kept: {:?}",
                err.cause.error
            );
            assert!(
                err.rollback_failures.is_empty(),
                "{:?}",
                err.rollback_failures
            );
            let mut expected: Vec<HostCall> = Step::BRING_UP[..=i]
                .iter()
                .copied()
                .map(HostCall::Up)
                .collect();
            expected.extend(downs_for(i));
            assert_eq!(host.calls(), expected, "failing at {step}");
            assert!(
                !seq.anything_up(),
                "nothing left up after failing at {step}"
            );
            assert!(!host.is_active());
            assert_eq!(err.to_string(), format!("Bring-up failed at {step}"));
        }
    }

    #[tokio::test]
    async fn rollback_failures_are_kept_apart_from_the_cause_and_the_rollback_goes_on() {
        let host = FakeHost::new("a");
        host.fail(Step::Exports, Direction::Up, 1);
        host.fail(Step::Nfsd, Direction::Down, 1);
        let mut seq = Sequencer::new(host.clone(), T);
        let err = seq.bring_up(1, &NoGuard).await.expect_err("must fail");
        assert_eq!(err.cause.step, Step::Exports);
        assert_eq!(err.rollback_failures.len(), 1);
        assert_eq!(err.rollback_failures[0].step, Step::Nfsd);
        assert_eq!(
            err.to_string(),
            "Bring-up failed at exports and rollback failed at nfsd"
        );
        let src = std::error::Error::source(&err).expect("source").to_string();
        assert_eq!(src, "Injected failure at exports up");
        // Storage was still torn down after the nfsd failure.
        assert_eq!(host.calls().last(), Some(&HostCall::Down(Step::Storage)));
        // nfsd stays recorded as up and the next teardown retries it.
        assert_eq!(seq.steps_up(), &[Step::Nfsd]);
        seq.tear_down().await.expect("retry succeeds");
        assert_eq!(host.calls().last(), Some(&HostCall::Down(Step::Nfsd)));
        assert!(!host.is_active());
    }

    #[tokio::test]
    async fn a_hung_step_times_out_and_is_rolled_back_first() {
        let host = FakeHost::new("a");
        host.hang(Step::FloatingAddress, Direction::Up);
        let mut seq = Sequencer::new(host.clone(), Duration::from_millis(50));
        let err = seq.bring_up(1, &NoGuard).await.expect_err("must time out");
        assert_eq!(err.cause.step, Step::FloatingAddress);
        assert!(matches!(err.cause.error, StepError::Timeout(d) if d == Duration::from_millis(50)));
        let calls = host.calls();
        assert_eq!(&calls[4..], &downs_for(3)[..]);
        assert_eq!(calls[4], HostCall::Down(Step::FloatingAddress));
        assert!(!host.is_active());
    }

    struct RefuseAt(Step);
    impl StepGuard for RefuseAt {
        async fn check(&self, step: Step, _epoch: u64) -> Result<(), String> {
            if step == self.0 {
                Err("epoch moved".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn a_refusing_guard_stops_before_the_step_and_rolls_back() {
        let host = FakeHost::new("a");
        let mut seq = Sequencer::new(host.clone(), T);
        let err = seq
            .bring_up(1, &RefuseAt(Step::FloatingAddress))
            .await
            .expect_err("refused");
        assert_eq!(err.cause.step, Step::FloatingAddress);
        assert!(matches!(&err.cause.error, StepError::Guard(r) if r == "epoch moved"));
        assert!(!host.calls().contains(&HostCall::Up(Step::FloatingAddress)));
        assert_eq!(
            host.calls()[3..].to_vec(),
            vec![
                HostCall::Down(Step::Exports),
                HostCall::Down(Step::Nfsd),
                HostCall::Down(Step::Storage)
            ]
        );
    }

    #[tokio::test]
    async fn teardown_attempts_every_step_and_reports_all_failures() {
        let host = FakeHost::new("a");
        let mut seq = Sequencer::new(host.clone(), T);
        seq.bring_up(1, &NoGuard).await.expect("up");
        host.fail(Step::FloatingAddress, Direction::Down, 1);
        host.fail(Step::Storage, Direction::Down, 1);
        let err = seq.tear_down().await.expect_err("fails");
        let steps: Vec<Step> = err.failures.iter().map(|f| f.step).collect();
        assert_eq!(steps, vec![Step::FloatingAddress, Step::Storage]);
        assert_eq!(
            err.to_string(),
            "Teardown failed at floating-address, storage"
        );
        assert_eq!(seq.steps_up(), &[Step::Storage, Step::FloatingAddress]);
        assert_eq!(host.calls().len(), 5 + 4);
    }

    #[tokio::test]
    async fn an_abandoned_bring_up_leaves_the_step_in_flight_for_teardown() {
        let host = FakeHost::new("a");
        host.hang(Step::Exports, Direction::Up);
        let mut seq = Sequencer::new(host.clone(), T);
        let r = tokio::time::timeout(Duration::from_millis(50), seq.bring_up(1, &NoGuard)).await;
        assert!(r.is_err(), "bring-up must still be hanging");
        assert_eq!(seq.steps_up(), &[Step::Storage, Step::Nfsd, Step::Exports]);
        seq.tear_down().await.expect("teardown");
        assert_eq!(
            host.calls()[3..].to_vec(),
            vec![
                HostCall::Down(Step::Exports),
                HostCall::Down(Step::Nfsd),
                HostCall::Down(Step::Storage)
            ]
        );
        assert!(!host.is_active());
    }

    #[tokio::test]
    async fn ensure_down_tears_down_everything_even_when_nothing_is_known_up() {
        let host = FakeHost::new("a");
        let mut seq = Sequencer::new(host.clone(), T);
        seq.ensure_down().await.expect("idempotent");
        assert_eq!(host.calls(), Step::TEAR_DOWN.map(HostCall::Down).to_vec());
    }
}
