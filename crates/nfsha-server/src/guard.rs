//! A dead-man switch that outlives the controller: a separate process that tears the
//! service down (floating address first) when the controller stops vouching for it.
//!
//! Role: while leading, the controller keeps a child process (`nfsha server
//! fence-guard`, in its own process group) fed with "you may serve for N ms more"
//! lines, N being what is left of the lease proof until `ttl − safety_margin`. If no
//! new line arrives in time (controller frozen by SIGSTOP, hung, starved) or the pipe
//! closes while armed (controller killed), the guard runs the teardown itself. A clean
//! `disarm` line (after the controller's own teardown) makes it exit without acting.
//! This covers what the in-process fence cannot: a controller that is not running.
//! The kernel watchdog ([`crate::watchdog`]) remains the last resort for a whole
//! machine that hangs.
//!
//! Failure modes: the guard cannot be spawned or written to ([`std::io::Error`]; the
//! controller then refuses to lead); the guard's own teardown fails (logged; it exits
//! non-zero). The remaining time is sent relative, so pipe latency lengthens the
//! guard's deadline by that latency (microseconds in practice); the guard only acts
//! after the controller's own fence point, never before.
//!
//! Protocol (one line each, ASCII): `serve <ms>`, `disarm`.

use crate::host::{ServerHost, Step};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::{Instant, sleep_until, timeout};

/// The controller's end: spawns the guard process on first use.
#[derive(Debug)]
pub struct FenceGuard {
    argv: Vec<String>,
    child: Option<(Child, ChildStdin)>,
}

impl FenceGuard {
    /// A guard that will run `argv` (e.g. `[nfsha, --config, PATH, server, fence-guard]`).
    pub fn new(argv: Vec<String>) -> Self {
        FenceGuard { argv, child: None }
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        if self.child.is_none() {
            let (prog, args) = self
                .argv
                .split_first()
                .ok_or_else(|| std::io::Error::other("empty fence-guard command"))?;
            let mut child = Command::new(prog)
                .args(args)
                .stdin(Stdio::piped())
                .process_group(0)
                .kill_on_drop(false)
                .spawn()?;
            let stdin = child
                .stdin
                .take()
                .ok_or_else(|| std::io::Error::other("fence guard has no stdin"))?;
            self.child = Some((child, stdin));
        }
        let Some((_, stdin)) = &mut self.child else {
            return Err(std::io::Error::other("fence guard not running"));
        };
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        match timeout(Duration::from_millis(500), write).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::other("fence guard does not read its input")),
        }
    }

    /// Allow serving for `valid_for` more (starts the guard if needed).
    pub async fn serve_for(&mut self, valid_for: Duration) -> std::io::Result<()> {
        let r = self
            .send(&format!("serve {}\n", valid_for.as_millis()))
            .await;
        if r.is_err() {
            // A guard that died or stopped reading is replaced on the next call.
            self.child = None;
        }
        r
    }

    /// The controller tore down cleanly: let the guard exit without acting.
    pub async fn disarm(&mut self) {
        if self.child.is_some() {
            let _ = self.send("disarm\n").await;
        }
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            if timeout(Duration::from_secs(2), child.wait()).await.is_err() {
                let _ = child.start_kill();
            }
        }
    }
}

/// How a guard run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardExit {
    /// Disarmed, or input closed while not armed: nothing done.
    Quiet,
    /// The guard tore the service down; the text says why. `Ok` = every step went down.
    ToreDown {
        /// Why it acted.
        reason: String,
        /// Whether every teardown step succeeded.
        clean: bool,
    },
}

async fn tear_down<H: ServerHost>(host: &H, step_timeout: Duration, reason: String) -> GuardExit {
    tracing::error!(%reason, "fence guard tearing down");
    let mut clean = true;
    for step in Step::TEAR_DOWN {
        match timeout(step_timeout, host.down(step)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                clean = false;
                tracing::error!(step = step.name(), error = %e, "fence guard: teardown step failed");
            }
            Err(_) => {
                clean = false;
                tracing::error!(step = step.name(), "fence guard: teardown step timed out");
            }
        }
    }
    GuardExit::ToreDown { reason, clean }
}

/// The guard process's loop: read `serve <ms>` / `disarm` lines from `input`, tear
/// down through `host` when the allowance runs out or the input closes while armed.
pub async fn run_guard<H: ServerHost, R: AsyncBufRead + Unpin>(
    host: H,
    input: R,
    step_timeout: Duration,
) -> GuardExit {
    let mut lines = input.lines();
    let mut deadline: Option<Instant> = None;
    loop {
        let next = async {
            match deadline {
                Some(d) => {
                    sleep_until(d).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(l)) => {
                    let l = l.trim();
                    if l == "disarm" {
                        return GuardExit::Quiet;
                    }
                    match l.strip_prefix("serve ").and_then(|ms| ms.parse::<u64>().ok()) {
                        Some(ms) => deadline = Some(Instant::now() + Duration::from_millis(ms)),
                        None => tracing::warn!(line = %l, "fence guard: unknown input"),
                    }
                }
                Ok(None) | Err(_) => {
                    return match deadline {
                        Some(_) => tear_down(&host, step_timeout, "controller went away while serving".into()).await,
                        None => GuardExit::Quiet,
                    };
                }
            },
            _ = next => {
                return tear_down(&host, step_timeout, "controller stopped renewing its allowance".into()).await;
            }
        }
    }
}

/// [`run_guard`] on this process's stdin (the `nfsha server fence-guard` process).
pub async fn run_guard_on_stdin<H: ServerHost>(host: H, step_timeout: Duration) -> GuardExit {
    run_guard(
        host,
        tokio::io::BufReader::new(tokio::io::stdin()),
        step_timeout,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeHost, HostCall};
    use tokio::io::BufReader;

    const T: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn an_allowance_that_runs_out_tears_down_address_first() {
        let host = FakeHost::new("a");
        let (mut w, r) = tokio::io::duplex(64);
        let guard = tokio::spawn(run_guard(host.clone(), BufReader::new(r), T));
        w.write_all(b"serve 500\n").await.expect("write");
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        w.write_all(b"serve 500\n").await.expect("write");
        let exit = guard.await.expect("guard");
        assert!(
            matches!(exit, GuardExit::ToreDown { clean: true, .. }),
            "{exit:?}"
        );
        assert!(
            Instant::now() - t0 >= Duration::from_millis(800),
            "renewed allowance honoured"
        );
        assert_eq!(host.calls(), Step::TEAR_DOWN.map(HostCall::Down).to_vec());
        drop(w);
    }

    #[tokio::test(start_paused = true)]
    async fn input_closing_while_armed_tears_down_at_once() {
        let host = FakeHost::new("a");
        let (mut w, r) = tokio::io::duplex(64);
        let guard = tokio::spawn(run_guard(host.clone(), BufReader::new(r), T));
        w.write_all(b"serve 60000\n").await.expect("write");
        let t0 = Instant::now();
        drop(w);
        let exit = guard.await.expect("guard");
        assert_eq!(
            exit,
            GuardExit::ToreDown {
                reason: "controller went away while serving".into(),
                clean: true
            }
        );
        assert!(Instant::now() - t0 < Duration::from_secs(1));
        assert_eq!(host.calls()[0], HostCall::Down(Step::FloatingAddress));
    }

    #[tokio::test(start_paused = true)]
    async fn disarm_or_close_while_unarmed_does_nothing() {
        let host = FakeHost::new("a");
        let (mut w, r) = tokio::io::duplex(64);
        let guard = tokio::spawn(run_guard(host.clone(), BufReader::new(r), T));
        w.write_all(b"serve 100\ndisarm\n").await.expect("write");
        assert_eq!(guard.await.expect("guard"), GuardExit::Quiet);
        let (w2, r2) = tokio::io::duplex(64);
        drop(w2);
        assert_eq!(
            run_guard(host.clone(), BufReader::new(r2), T).await,
            GuardExit::Quiet
        );
        assert!(host.calls().is_empty());
        drop(w);
    }
}
