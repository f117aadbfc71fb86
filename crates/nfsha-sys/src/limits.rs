//! The process's descriptor limit (`RLIMIT_NOFILE`).
//!
//! Role: [`raise_nofile`] lifts the soft limit to the hard limit at agent start (systemd
//! starts services with a soft limit of 1,024, and the agent needs descriptors for every
//! probe worker, mount-table read and client connection); the result tells the caller the
//! limit it now has, which sizes the listeners' connection caps. External commands
//! (`mount.nfs`, hooks) get the original soft limit back ([`child_soft_limit`]): programs
//! using `select(2)` break on descriptors above 1,024, so systemd advises to raise the
//! limit only in the process that needs it. Failure modes: the hard
//! limit is "unlimited" (then the kernel's `fs.nr_open` is the target); `setrlimit` refused
//! ([`LimitError`], the old limit stays and the caller keeps running with it).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use std::sync::OnceLock;

/// The soft limit found before [`raise_nofile`] raised it.
static ORIGINAL_SOFT: OnceLock<u64> = OnceLock::new();

/// The soft limit external commands should run with: the one this process started with,
/// if [`raise_nofile`] raised it.
pub fn child_soft_limit() -> Option<u64> {
    ORIGINAL_SOFT.get().copied()
}

/// The descriptor limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit found at start (`None`: unlimited).
    pub before: Option<u64>,
    /// Soft limit now.
    pub now: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

impl NofileLimit {
    /// The soft limit now, with "unlimited" as `u64::MAX`.
    pub fn effective(&self) -> u64 {
        self.now.unwrap_or(u64::MAX)
    }
}

/// Raising the limit failed.
#[derive(Debug, thiserror::Error)]
#[error("Cannot raise RLIMIT_NOFILE from {from:?} to {to}")]
pub struct LimitError {
    /// The soft limit left in place.
    pub from: Option<u64>,
    /// The value asked for.
    pub to: u64,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The soft descriptor limit now.
pub fn nofile() -> NofileLimit {
    let l = getrlimit(Resource::Nofile);
    NofileLimit {
        before: l.current,
        now: l.current,
        hard: l.maximum,
    }
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Set the soft descriptor limit to the hard limit (or `fs.nr_open` when the hard limit
/// is unlimited). A no-op when it already is.
pub fn raise_nofile() -> Result<NofileLimit, LimitError> {
    let l = getrlimit(Resource::Nofile);
    let target = l.maximum.unwrap_or_else(nr_open);
    if l.current.is_none_or(|c| c >= target) {
        return Ok(NofileLimit {
            before: l.current,
            now: l.current,
            hard: l.maximum,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: l.maximum,
        },
    )
    .map_err(|e| LimitError {
        from: l.current,
        to: target,
        source: e.into(),
    })?;
    if let Some(c) = l.current {
        let _ = ORIGINAL_SOFT.set(c);
    }
    Ok(NofileLimit {
        before: l.current,
        now: getrlimit(Resource::Nofile).current,
        hard: l.maximum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soft_of(limits: &str) -> Option<String> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3).map(str::to_owned)
    }

    #[tokio::test]
    async fn external_commands_get_the_original_soft_limit_back() {
        // This test process (nextest runs each test in its own) starts from 512.
        let l = getrlimit(Resource::Nofile);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(512),
                maximum: l.maximum,
            },
        )
        .expect("lower the soft limit");
        let raised = raise_nofile().expect("raise");
        assert_eq!(raised.before, Some(512));
        assert_eq!(child_soft_limit(), Some(512));
        let own = std::fs::read_to_string("/proc/self/limits").expect("limits");
        assert_ne!(soft_of(&own).as_deref(), Some("512"), "not raised");
        let out = crate::run_command(
            &["cat".into(), "/proc/self/limits".into()],
            std::time::Duration::from_secs(10),
            &[],
        )
        .await
        .expect("cat");
        let child = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(soft_of(&child).as_deref(), Some("512"), "{child}");
    }

    #[test]
    fn raising_ends_at_the_hard_limit() {
        // Raising our own soft limit to the hard one is harmless for the test process.
        let l = raise_nofile().expect("raise");
        if l.before.is_some() {
            assert_eq!(l.now, Some(l.hard.unwrap_or_else(nr_open)));
        }
        assert_eq!(nofile().now, l.now);
    }
}
