//! The promote and resync-check commands: an argument vector run under a deadline.
//!
//! Role: [`run_bounded`] runs a [`CommandSpec`] with nfsha-sys' runner (own process
//! group, stdin from /dev/null, output captured; at the deadline the whole group is
//! SIGKILLed and the child reaped) and turns every outcome into a [`CommandReport`].
//! Failure modes: it never errors; a missing program, a non-zero exit, a signal or a
//! timeout is a report whose [`CommandReport::succeeded`] is `false`.

use crate::model::CommandReport;
use std::ffi::OsString;
use std::time::Duration;

/// Bytes of output kept in a report (the end of stdout + stderr).
pub const OUTPUT_TAIL: usize = 2048;

/// An external command: argument vector (never a shell string) and its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// argv\[0\] is the program.
    pub argv: Vec<OsString>,
    /// Its process group is killed when this passes.
    pub timeout: Duration,
}

impl CommandSpec {
    /// From strings.
    pub fn new<I, S>(argv: I, timeout: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        CommandSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            timeout,
        }
    }
}

fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let mut all = Vec::with_capacity(stdout.len() + stderr.len());
    all.extend_from_slice(stdout);
    all.extend_from_slice(stderr);
    let start = all.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&all[start..]).into_owned()
}

/// Run `spec` with `env` added; report what happened.
pub async fn run_bounded(spec: &CommandSpec, env: &[(OsString, OsString)]) -> CommandReport {
    use std::os::unix::process::ExitStatusExt;
    let argv = spec
        .argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut report = CommandReport {
        argv,
        exit_code: None,
        signal: None,
        timed_out: false,
        output_tail: String::new(),
        error: None,
    };
    match nfsha_sys::run_command(&spec.argv, spec.timeout, env).await {
        Ok(out) => {
            report.exit_code = out.status.code();
            report.signal = out.status.signal();
            report.output_tail = tail(&out.stdout, &out.stderr);
        }
        Err(nfsha_sys::CommandError::Timeout { .. }) => report.timed_out = true,
        Err(e) => report.error = Some(nfsha_core::error_chain(&e)),
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_exit_output_signal_and_missing_programs() {
        let r = run_bounded(
            &CommandSpec::new(
                ["sh", "-c", "echo out; echo err >&2; exit 4"],
                Duration::from_secs(10),
            ),
            &[],
        )
        .await;
        assert_eq!(r.exit_code, Some(4));
        assert_eq!(r.output_tail, "out\nerr\n");
        assert!(!r.succeeded());
        let r = run_bounded(
            &CommandSpec::new(["sh", "-c", "kill -9 $$"], Duration::from_secs(10)),
            &[],
        )
        .await;
        assert_eq!((r.exit_code, r.signal), (None, Some(9)));
        assert!(!r.succeeded());
        let r = run_bounded(
            &CommandSpec::new(["/nonexistent/nfsha-promote"], Duration::from_secs(1)),
            &[],
        )
        .await;
        assert!(r.error.is_some() && !r.succeeded(), "{r:?}");
        let r = run_bounded(&CommandSpec::new(["true"], Duration::from_secs(10)), &[]).await;
        assert!(r.succeeded(), "{r:?}");
    }

    #[test]
    fn the_tail_keeps_the_end() {
        let out = vec![b'a'; OUTPUT_TAIL];
        let t = tail(&out, b"END");
        assert_eq!(t.len(), OUTPUT_TAIL);
        assert!(t.ends_with("aEND"));
    }
}
