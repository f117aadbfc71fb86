//! The structured event record: one per mount state change and per recovery step.
//!
//! Events are a stream apart from logs (cloud-hypervisor's `event_monitor` idea):
//! fixed field names so they can be grepped in journald, written as JSON lines,
//! merged into drill timelines, and served by `nfsha events`.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The agent started (or reloaded its config).
    AgentStarted,
    /// The config was reloaded (outcome says whether the new one was taken).
    ConfigReloaded,
    /// A mount's classified state changed (`from` → `to`).
    MountStateChanged,
    /// A recovery began for one mount.
    RecoveryStarted,
    /// One step of a recovery finished (`step`, `outcome`, `duration_ms`).
    RecoveryStep,
    /// A recovery ended (`outcome`).
    RecoveryFinished,
    /// A server's RPC reachability changed.
    ServerReachability,
    /// A hook ran after a recovery.
    HookRan,
    /// A mark placed by a test or an operator (lab scenarios, drills).
    Mark,
    /// Server controller: role or serving state changed.
    ServerRole,
    /// A cluster leader record was not acted on (its address is none of the mount's
    /// servers); the mount keeps what it has.
    LeaderRefused,
    /// Replica volumes: the active replica was recorded, adopted or changed, or its
    /// state file was missing, corrupt or could not be written (`outcome` says which).
    Replica,
    /// The write probe's result changed (`to`: `writable`, `read-only`, `no-space`,
    /// `write-hung`, `write-error`).
    WriteProbe,
    /// Recoveries of one mount kept failing the same way (no server answers, say):
    /// after the first failure only this summary is emitted — every few minutes while
    /// it lasts (`outcome` `failed`) and once when the run ends (`ended`); `reason`
    /// says how many attempts since when, the error, and when the next attempt is;
    /// `duration_ms` is the run's length so far.
    RecoverySummary,
}

/// One structured event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The mountpoint concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// The server concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Previous state (state changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// New state (state changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Recovery step name (`select-server`, `umount-force`, `umount-detach`, `release`, `mount`,
    /// `trigger`, `verify`, `hook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// `ok` or `failed` (or another short word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// How long the step took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The errno behind a failure, by number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// Human-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Event {
    /// A new event of `kind`, stamped now, with every optional field empty.
    pub fn new(kind: EventKind) -> Event {
        Event {
            ts_ms: now_ms(),
            kind,
            mount: None,
            server: None,
            from: None,
            to: None,
            step: None,
            outcome: None,
            duration_ms: None,
            errno: None,
            reason: None,
        }
    }

    /// Builder: set the mount.
    pub fn mount(mut self, m: impl Into<String>) -> Self {
        self.mount = Some(m.into());
        self
    }
    /// Builder: set the server.
    pub fn server(mut self, s: impl Into<String>) -> Self {
        self.server = Some(s.into());
        self
    }
    /// Builder: set from/to.
    pub fn transition(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.from = Some(from.into());
        self.to = Some(to.into());
        self
    }
    /// Builder: set the step.
    pub fn step(mut self, s: impl Into<String>) -> Self {
        self.step = Some(s.into());
        self
    }
    /// Builder: set the outcome.
    pub fn outcome(mut self, o: impl Into<String>) -> Self {
        self.outcome = Some(o.into());
        self
    }
    /// Builder: set the duration.
    pub fn duration(mut self, d: std::time::Duration) -> Self {
        self.duration_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }
    /// Builder: set the errno.
    pub fn errno(mut self, e: Option<i32>) -> Self {
        self.errno = e;
        self
    }
    /// Builder: set the reason.
    pub fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = Some(r.into());
        self
    }

    /// One JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_left_out_of_the_json_line() {
        let mut e = Event::new(EventKind::MountStateChanged)
            .mount("/airflow/dags")
            .transition("healthy", "stale")
            .errno(Some(116));
        e.ts_ms = 1;
        assert_eq!(
            e.to_json_line(),
            r#"{"ts_ms":1,"kind":"mount_state_changed","mount":"/airflow/dags","from":"healthy","to":"stale","errno":116}"#
        );
    }
}
