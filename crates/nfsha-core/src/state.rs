//! Mount states and the classifier that turns one probe outcome into a state.
//!
//! The classifier is total: every errno maps to some state (unknown ones to
//! `IoError`), so a surprising kernel answer is still acted upon.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What nfsha believes about one configured mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MountState {
    /// Not probed yet since the agent started or the config was reloaded.
    Unknown,
    /// statfs and a directory read both succeeded within the deadline.
    Healthy,
    /// ESTALE: the server no longer knows our file handles (failover to a replica).
    Stale,
    /// EIO or ETIMEDOUT (soft/softerr mounts giving up on an RPC).
    IoError,
    /// ENOTCONN or EHOSTDOWN.
    Disconnected,
    /// EACCES or EPERM: the server answers but refuses us.
    Permission,
    /// The probe did not finish within its deadline.
    Hung,
    /// Nothing is mounted at the mountpoint (or something that is not NFS is).
    NotMounted,
    /// Mounted from a server other than the one nfsha chose.
    WrongServer,
}

impl MountState {
    /// All states, in a stable order (metrics export one series per state).
    pub const ALL: [MountState; 9] = [
        MountState::Unknown,
        MountState::Healthy,
        MountState::Stale,
        MountState::IoError,
        MountState::Disconnected,
        MountState::Permission,
        MountState::Hung,
        MountState::NotMounted,
        MountState::WrongServer,
    ];

    /// The kebab-case name used in events, metrics labels and `nfsha status`.
    pub fn as_str(self) -> &'static str {
        match self {
            MountState::Unknown => "unknown",
            MountState::Healthy => "healthy",
            MountState::Stale => "stale",
            MountState::IoError => "io-error",
            MountState::Disconnected => "disconnected",
            MountState::Permission => "permission",
            MountState::Hung => "hung",
            MountState::NotMounted => "not-mounted",
            MountState::WrongServer => "wrong-server",
        }
    }

    /// True for states that a recovery (detach + remount) can repair.
    ///
    /// `Permission` is deliberately excluded: remounting does not fix an export
    /// that refuses us, and hammering the server with mounts makes it worse.
    pub fn needs_recovery(self) -> bool {
        matches!(
            self,
            MountState::Stale
                | MountState::IoError
                | MountState::Disconnected
                | MountState::Hung
                | MountState::NotMounted
                | MountState::WrongServer
        )
    }
}

impl fmt::Display for MountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which filesystem operation of a probe produced a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeOp {
    /// `statfs(2)` of the mountpoint: always an RPC (FSSTAT / GETATTR of the root).
    Statfs,
    /// `open(O_DIRECTORY)` of the mountpoint.
    Open,
    /// `getdents64` on the opened directory (READDIR).
    Readdir,
    /// A plain `stat` (used only to trigger automounts, never to judge health).
    Stat,
    /// Write probe: `open(O_CREAT)` of the probe file in the mount root.
    Create,
    /// Write probe: `write` of a few bytes.
    Write,
    /// Write probe: `fsync` (NFS: the data reaches the server, COMMIT).
    Fsync,
    /// Write probe: `unlink` of the probe file.
    Unlink,
}

/// Whether a mount takes writes, as the optional write probe found (never a reason to
/// remount: a replica is read-only until its replication is broken, a full volume
/// stays full after a remount).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteState {
    /// Create, write, fsync and unlink succeeded.
    Writable,
    /// `EROFS`: a read-only export (a replica before its replication is broken).
    ReadOnly,
    /// `ENOSPC` or `EDQUOT`: the volume or the quota is full.
    NoSpace,
    /// The write probe did not finish within the probe deadline.
    WriteHung,
    /// Another errno (permissions, …).
    WriteError,
}

impl WriteState {
    /// Every write state, in a fixed order (metrics export one series each).
    pub const ALL: [WriteState; 5] = [
        WriteState::Writable,
        WriteState::ReadOnly,
        WriteState::NoSpace,
        WriteState::WriteHung,
        WriteState::WriteError,
    ];

    /// The kebab-case name (`read-only`).
    pub fn as_str(self) -> &'static str {
        match self {
            WriteState::Writable => "writable",
            WriteState::ReadOnly => "read-only",
            WriteState::NoSpace => "no-space",
            WriteState::WriteHung => "write-hung",
            WriteState::WriteError => "write-error",
        }
    }
}

impl fmt::Display for WriteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one probe of one mountpoint, as reported by a probe worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ProbeOutcome {
    /// Every operation succeeded.
    Ok {
        /// Wall time of the whole probe inside the worker.
        #[serde(with = "duration_micros")]
        latency: Duration,
    },
    /// An operation failed with an errno.
    Failed {
        /// The operation that failed.
        op: ProbeOp,
        /// The raw errno value.
        errno: i32,
        /// Wall time until the failure.
        #[serde(with = "duration_micros")]
        latency: Duration,
    },
    /// The deadline passed before the worker answered.
    Hung {
        /// The deadline that passed.
        #[serde(with = "duration_micros")]
        deadline: Duration,
    },
}

impl ProbeOutcome {
    /// Classify this outcome into a mount state.
    pub fn classify(&self) -> MountState {
        match self {
            ProbeOutcome::Ok { .. } => MountState::Healthy,
            ProbeOutcome::Hung { .. } => MountState::Hung,
            ProbeOutcome::Failed { errno, .. } => classify_errno(*errno),
        }
    }

    /// How long the probe took (the deadline, for a hung probe): the event of a state
    /// change is stamped when the probe ended, so it began this much earlier.
    pub fn elapsed(&self) -> Duration {
        match self {
            ProbeOutcome::Ok { latency } | ProbeOutcome::Failed { latency, .. } => *latency,
            ProbeOutcome::Hung { deadline } => *deadline,
        }
    }

    /// Classify the outcome of a *write* probe.
    pub fn classify_write(&self) -> WriteState {
        match self {
            ProbeOutcome::Ok { .. } => WriteState::Writable,
            ProbeOutcome::Hung { .. } => WriteState::WriteHung,
            ProbeOutcome::Failed { errno, .. } => match *errno {
                libc::EROFS => WriteState::ReadOnly,
                libc::ENOSPC | libc::EDQUOT => WriteState::NoSpace,
                _ => WriteState::WriteError,
            },
        }
    }

    /// The errno, if the probe failed with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ProbeOutcome::Failed { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Map an errno from a probe operation to a mount state.
pub fn classify_errno(errno: i32) -> MountState {
    match errno {
        libc::ESTALE => MountState::Stale,
        libc::EIO | libc::ETIMEDOUT => MountState::IoError,
        libc::ENOTCONN | libc::EHOSTDOWN | libc::EHOSTUNREACH | libc::ECONNREFUSED => {
            MountState::Disconnected
        }
        libc::EACCES | libc::EPERM => MountState::Permission,
        libc::ENOENT | libc::ENODEV => MountState::NotMounted,
        _ => MountState::IoError,
    }
}

/// The symbolic name of an errno (`ESTALE`), for events and status output.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::ESTALE => "ESTALE",
        libc::EIO => "EIO",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENOTCONN => "ENOTCONN",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ENODEV => "ENODEV",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::EAGAIN => "EAGAIN",
        libc::EROFS => "EROFS",
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::ENOSYS => "ENOSYS",
        _ => "E?",
    }
}

/// Serialize a `Duration` as integer microseconds (compact and lossless enough).
pub mod duration_micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Serialize as microseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Deserialize from microseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_probe_outcomes_are_states_not_errors() {
        let failed = |errno| ProbeOutcome::Failed {
            op: ProbeOp::Create,
            errno,
            latency: Duration::ZERO,
        };
        assert_eq!(failed(libc::EROFS).classify_write(), WriteState::ReadOnly);
        assert_eq!(failed(libc::ENOSPC).classify_write(), WriteState::NoSpace);
        assert_eq!(failed(libc::EDQUOT).classify_write(), WriteState::NoSpace);
        assert_eq!(
            failed(libc::EACCES).classify_write(),
            WriteState::WriteError
        );
        let hung = ProbeOutcome::Hung {
            deadline: Duration::from_secs(1),
        };
        assert_eq!(hung.classify_write(), WriteState::WriteHung);
        let ok = ProbeOutcome::Ok {
            latency: Duration::ZERO,
        };
        assert_eq!(ok.classify_write(), WriteState::Writable);
        assert_eq!(WriteState::ReadOnly.to_string(), "read-only");
        let json = serde_json::to_string(&WriteState::NoSpace).unwrap();
        assert_eq!(json, "\"no-space\"");
    }

    #[test]
    fn errnos_map_to_the_documented_states() {
        assert_eq!(classify_errno(libc::ESTALE), MountState::Stale);
        assert_eq!(classify_errno(libc::EIO), MountState::IoError);
        assert_eq!(classify_errno(libc::ETIMEDOUT), MountState::IoError);
        assert_eq!(classify_errno(libc::ENOTCONN), MountState::Disconnected);
        assert_eq!(classify_errno(libc::EHOSTDOWN), MountState::Disconnected);
        assert_eq!(classify_errno(libc::EACCES), MountState::Permission);
        assert_eq!(classify_errno(12345), MountState::IoError);
    }

    #[test]
    fn probe_outcome_round_trips_through_json() {
        let o = ProbeOutcome::Failed {
            op: ProbeOp::Readdir,
            errno: libc::ESTALE,
            latency: Duration::from_micros(1500),
        };
        let s = serde_json::to_string(&o).unwrap();
        assert_eq!(
            s,
            r#"{"outcome":"failed","op":"readdir","errno":116,"latency":1500}"#
        );
        let back: ProbeOutcome = serde_json::from_str(&s).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.classify(), MountState::Stale);
    }

    #[test]
    fn permission_is_not_repaired_by_remounting() {
        assert!(!MountState::Permission.needs_recovery());
        assert!(!MountState::Healthy.needs_recovery());
        assert!(MountState::Stale.needs_recovery());
    }
}
