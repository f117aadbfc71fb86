//! Running external commands (mount.nfs, hooks) under a deadline.
//!
//! Role: [`run_command`] spawns an argument vector (never a shell string) in its own
//! process group, captures stdout/stderr, and on deadline SIGKILLs the whole group
//! and reaps the child; [`mount_nfs_argv`] builds the `mount.nfs` vector. The child runs
//! with the descriptor soft limit the agent started with
//! ([`crate::limits::child_soft_limit`]), not the raised one.
//!
//! Failure modes: empty argv, spawn failure, deadline passed ([`CommandError::Timeout`]
//! — the group was killed; a child stuck in the kernel is reaped in the background).

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Errors of [`run_command`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The argument vector was empty.
    #[error("Empty command")]
    Empty,
    /// The program could not be started.
    #[error("Cannot run {program:?}")]
    Spawn {
        /// argv\[0\].
        program: OsString,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("Cannot wait for {program:?}")]
    Wait {
        /// argv\[0\].
        program: OsString,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The deadline passed; the process group was killed.
    #[error("{program:?} did not finish within {deadline:?}; its process group was killed")]
    Timeout {
        /// argv\[0\].
        program: OsString,
        /// The deadline.
        deadline: Duration,
        /// Whether the child was reaped within the grace period after SIGKILL.
        reaped: bool,
    },
}

/// What a finished command produced.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

/// How long to wait for a SIGKILLed child before leaving it to a background reaper.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// Run `argv` with `env` added to the inherited environment, stdin from
/// /dev/null, in a new process group; kill the group when `deadline` passes.
pub async fn run_command(
    argv: &[OsString],
    deadline: Duration,
    env: &[(OsString, OsString)],
) -> Result<CommandOutput, CommandError> {
    let (program, args) = argv.split_first().ok_or(CommandError::Empty)?;
    let start = Instant::now();
    let mut cmd = Command::new(program);
    if let Some(soft) = crate::limits::child_soft_limit() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // setrlimit system call (async-signal-safe: no allocation, no locks); its values
        // were computed before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let _ = rustix::process::setrlimit(
                    rustix::process::Resource::Nofile,
                    rustix::process::Rlimit {
                        current: Some(soft),
                        maximum: hard,
                    },
                );
                Ok(())
            });
        }
    }
    let mut child = cmd
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    let pgid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read_out = tokio::spawn(async move {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut v).await;
        }
        v
    });
    let read_err = tokio::spawn(async move {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v).await;
        }
        v
    });
    match tokio::time::timeout(deadline, child.wait()).await {
        Ok(Ok(status)) => {
            let elapsed = start.elapsed();
            // Grandchildren that kept the pipes open are killed with the group.
            if let Some(pg) = pgid {
                let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
            }
            let stdout = collect(read_out).await;
            let stderr = collect(read_err).await;
            Ok(CommandOutput {
                status,
                stdout,
                stderr,
                elapsed,
            })
        }
        Ok(Err(source)) => Err(CommandError::Wait {
            program: program.clone(),
            source,
        }),
        Err(_) => {
            if let Some(pg) = pgid {
                let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
            }
            let reaped = tokio::time::timeout(KILL_GRACE, child.wait()).await.is_ok();
            if !reaped {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            read_out.abort();
            read_err.abort();
            Err(CommandError::Timeout {
                program: program.clone(),
                deadline,
                reaped,
            })
        }
    }
}

async fn collect(h: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    match tokio::time::timeout(KILL_GRACE, h).await {
        Ok(Ok(v)) => v,
        _ => Vec::new(),
    }
}

/// `mount.nfs <server>:<export> <mountpoint> -o vers=<vers>[,<options>...]`;
/// an IPv6 server address is put in brackets.
pub fn mount_nfs_argv(
    server: &str,
    export: &str,
    mountpoint: &Path,
    vers: &str,
    options: &[String],
) -> Vec<OsString> {
    let host = if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]")
    } else {
        server.to_string()
    };
    let mut opts = format!("vers={vers}");
    for o in options {
        opts.push(',');
        opts.push_str(o);
    }
    vec![
        OsString::from("mount.nfs"),
        OsString::from(format!("{host}:{export}")),
        mountpoint.as_os_str().to_os_string(),
        OsString::from("-o"),
        OsString::from(opts),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn mount_argv_brackets_ipv6() {
        let a = mount_nfs_argv(
            "fd00::1",
            "/srv/dags",
            Path::new("/airflow/my dags"),
            "4.1",
            &["hard".into(), "timeo=50".into()],
        );
        assert_eq!(
            a,
            argv(&[
                "mount.nfs",
                "[fd00::1]:/srv/dags",
                "/airflow/my dags",
                "-o",
                "vers=4.1,hard,timeo=50"
            ])
        );
        let a = mount_nfs_argv("nfs1", "/x", Path::new("/m"), "3", &[]);
        assert_eq!(a, argv(&["mount.nfs", "nfs1:/x", "/m", "-o", "vers=3"]));
    }

    #[tokio::test]
    async fn captures_output_status_and_env() {
        let out = run_command(
            &argv(&["sh", "-c", "echo out $NFSHA_X; echo err >&2; exit 3"]),
            Duration::from_secs(10),
            &[("NFSHA_X".into(), "v".into())],
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out v\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[tokio::test]
    async fn deadline_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("nfsha-cmd-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let pidfile = dir.join("grandchild.pid");
        let script = format!("sleep 1000 & echo $! > '{}'; wait", pidfile.display());
        let start = Instant::now();
        let e = run_command(
            &argv(&["sh", "-c", &script]),
            Duration::from_millis(300),
            &[],
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, CommandError::Timeout { reaped: true, .. }),
            "{e}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild got SIGKILL with its group; wait (bounded) until it is gone.
        let gone = (0..100).any(|_| {
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let dead = st.is_empty() || st.split(' ').nth(2) == Some("Z");
            if !dead {
                std::thread::sleep(Duration::from_millis(20));
            }
            dead
        });
        assert!(gone, "grandchild {pid} survived the group kill");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn empty_and_missing_programs_are_errors() {
        assert!(matches!(
            run_command(&[], Duration::from_secs(1), &[]).await,
            Err(CommandError::Empty)
        ));
        let e = run_command(
            &argv(&["/nonexistent/nfsha-x"]),
            Duration::from_secs(1),
            &[],
        )
        .await
        .unwrap_err();
        assert!(matches!(e, CommandError::Spawn { .. }));
    }
}
