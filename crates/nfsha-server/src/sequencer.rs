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
            let steps: Vec<&str> = self.rollback_failures.iter().map(|s| s.step.name()).collect();
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
    pub async fn bring_up<G: StepGuard>(&mut self, epoch: u64, guard: &G) -> Result<(), RollbackError> {
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
