//! The records the fleet keeps in etcd and the names of their keys.
//!
//! Role: plain, serialisable types ([`ReplicaId`], [`ActiveRecord`], [`AgentView`],
//! [`LockRecord`], [`CommandReport`]) and the key schema ([`Keys`]), so an agent can
//! adopt them without depending on this crate's etcd code. Failure modes: a replica
//! spec or a volume/agent name that cannot be used ([`ModelError`]); a key name is
//! never built from a name containing `/` or control characters.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A volume or agent name that cannot be a key segment.
    #[error("Invalid {what} name {name:?}: empty, or contains '/' or a control character")]
    BadName {
        /// "volume" or "agent".
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A `HOST[:EXPORT]` that cannot be parsed.
    #[error("Invalid replica {spec:?}: expected HOST[:/EXPORT] or [IPV6][:/EXPORT]")]
    BadReplica {
        /// The text given.
        spec: String,
    },
    /// `HOST` without an export matches no member, or several.
    #[error("{spec:?} names {matches} members of the volume; expected exactly one")]
    Ambiguous {
        /// The text given.
        spec: String,
        /// How many members matched.
        matches: usize,
    },
}

/// One replica of a volume: an NFS server and the export on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReplicaId {
    /// Host name or address.
    pub host: String,
    /// Export path on that host.
    pub export: String,
}

impl ReplicaId {
    /// A replica.
    pub fn new(host: impl Into<String>, export: impl Into<String>) -> Self {
        ReplicaId {
            host: host.into(),
            export: export.into(),
        }
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.export)
        } else {
            write!(f, "{}:{}", self.host, self.export)
        }
    }
}

/// `HOST[:/EXPORT]` (IPv6 in brackets, or unbracketed when an export follows) into
/// host and optional export. The export must start with `/`.
pub fn parse_replica_spec(spec: &str) -> Result<(String, Option<String>), ModelError> {
    let bad = || ModelError::BadReplica { spec: spec.into() };
    let (host, export) = if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match spec.split_once(":/") {
            Some((host, _)) => (host, Some(&spec[host.len() + 1..])),
            None => (spec, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    if let Some(e) = export
        && (!e.starts_with('/') || e.chars().any(char::is_control))
    {
        return Err(bad());
    }
    Ok((host.to_owned(), export.map(str::to_owned)))
}

/// The member of `members` that `spec` (`HOST[:EXPORT]`) names: with an export it must
/// be that exact member; without, the only member on that host.
pub fn resolve_member(members: &[ReplicaId], spec: &str) -> Result<ReplicaId, ModelError> {
    let (host, export) = parse_replica_spec(spec)?;
    let found: Vec<&ReplicaId> = members
        .iter()
        .filter(|m| m.host == host && export.as_ref().is_none_or(|e| &m.export == e))
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        _ if export.is_some() => Ok(ReplicaId::new(host, export.unwrap_or_default())),
        _ => Err(ModelError::Ambiguous {
            spec: spec.into(),
            matches: found.len(),
        }),
    }
}

/// Why the active replica is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The first agent of a fresh fleet created the key.
    Seed,
    /// The fleet failed over after the active replica was unreachable.
    Failover,
    /// An operator moved the fleet back after the reverse resync.
    Failback,
}

impl Reason {
    /// kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Seed => "seed",
            Reason::Failover => "failover",
            Reason::Failback => "failback",
        }
    }
}

/// What an external command (promote, resync check) did. Stored in the active record
/// and reported as an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReport {
    /// The argument vector that ran (lossy UTF-8).
    pub argv: Vec<String>,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if one did.
    pub signal: Option<i32>,
    /// It passed its deadline and its process group was killed.
    pub timed_out: bool,
    /// The last bytes of stdout followed by stderr (lossy UTF-8).
    pub output_tail: String,
    /// It could not be started or waited for (then no exit code).
    pub error: Option<String>,
}

impl CommandReport {
    /// It exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.error.is_none()
    }
}

impl fmt::Display for CommandReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prog = self.argv.first().map(String::as_str).unwrap_or("");
        if self.timed_out {
            write!(f, "{prog:?} timed out; its process group was killed")
        } else if let Some(e) = &self.error {
            write!(f, "{prog:?} failed: {e}")
        } else if let Some(c) = self.exit_code {
            write!(f, "{prog:?} exited with status {c}")
        } else {
            write!(f, "{prog:?} killed by signal {}", self.signal.unwrap_or(0))
        }
    }
}

/// The value of `active`: the one replica the whole fleet mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRecord {
    /// The replica every agent mounts.
    pub replica: ReplicaId,
    /// Grows by one with every move; 1 when seeded.
    pub generation: u64,
    /// The agent (or operator) that decided this record.
    pub decided_by: String,
    /// Wall clock of the decider when it wrote this (informational only: never
    /// compared with another node's clock).
    pub decided_at_ms: u64,
    /// Why.
    pub reason: Reason,
    /// The replica before this one, if any.
    #[serde(default)]
    pub previous: Option<ReplicaId>,
    /// The promote command's report, for a failover.
    #[serde(default)]
    pub promote: Option<CommandReport>,
}

/// The value of `views/<agent>`: what one agent sees, on that agent's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// The agent's name.
    pub agent: String,
    /// The replica it is mounted on, if any.
    pub mounted: Option<ReplicaId>,
    /// The generation of the active record it follows.
    pub generation: u64,
    /// Its probes reach the active replica.
    pub active_reachable: bool,
    /// Its own monotonic clock saw the active replica unreachable for at least
    /// `failover_after` without a break.
    pub unreachable_long_enough: bool,
}

/// The value of `failover`: the election lock, on the holder's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// The agent (or operator) holding it.
    pub holder: String,
    /// The generation it is moving from.
    pub from_generation: u64,
    /// The replica it is moving to.
    pub to: ReplicaId,
    /// What for.
    pub reason: Reason,
}

/// Key names under `/nfsha/volumes/<volume>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

fn check_name(what: &'static str, name: &str) -> Result<(), ModelError> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
        return Err(ModelError::BadName {
            what,
            name: name.into(),
        });
    }
    Ok(())
}

impl Keys {
    /// The keys of `volume`.
    pub fn new(volume: &str) -> Result<Self, ModelError> {
        check_name("volume", volume)?;
        Ok(Keys {
            prefix: format!("/nfsha/volumes/{volume}/"),
        })
    }

    /// `/nfsha/volumes/<volume>/active`.
    pub fn active(&self) -> String {
        format!("{}active", self.prefix)
    }

    /// `/nfsha/volumes/<volume>/failover`.
    pub fn failover(&self) -> String {
        format!("{}failover", self.prefix)
    }

    /// `/nfsha/volumes/<volume>/views/` (prefix of every view).
    pub fn views(&self) -> String {
        format!("{}views/", self.prefix)
    }

    /// `/nfsha/volumes/<volume>/views/<agent>`.
    pub fn view(&self, agent: &str) -> Result<String, ModelError> {
        check_name("agent", agent)?;
        Ok(format!("{}{agent}", self.views()))
    }
}

/// Check an agent name (it becomes a key segment).
pub fn check_agent_name(agent: &str) -> Result<(), ModelError> {
    check_name("agent", agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_specs_parse_over_a_table() {
        let ok: &[(&str, &str, Option<&str>)] = &[
            ("nfs1", "nfs1", None),
            ("nfs1:/srv/a", "nfs1", Some("/srv/a")),
            ("10.2.13.5:/crr-dest1", "10.2.13.5", Some("/crr-dest1")),
            ("[fd00::1]", "fd00::1", None),
            ("[fd00::1]:/x", "fd00::1", Some("/x")),
            ("fd00::1:/x", "fd00::1", Some("/x")),
        ];
        for (spec, host, export) in ok {
            let (h, e) = parse_replica_spec(spec).unwrap();
            assert_eq!((h.as_str(), e.as_deref()), (*host, *export), "{spec}");
        }
        for bad in ["", ":/x", "[fd00::1", "[fd00::1]x", "[fd00::1]:x", "a b:/x"] {
            assert!(parse_replica_spec(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn members_resolve_by_host_or_host_and_export() {
        let m = vec![
            ReplicaId::new("a", "/x"),
            ReplicaId::new("b", "/y"),
            ReplicaId::new("c", "/1"),
            ReplicaId::new("c", "/2"),
        ];
        assert_eq!(resolve_member(&m, "b").unwrap(), m[1]);
        assert_eq!(resolve_member(&m, "c:/2").unwrap(), m[3]);
        assert!(matches!(
            resolve_member(&m, "c"),
            Err(ModelError::Ambiguous { matches: 2, .. })
        ));
        assert!(matches!(
            resolve_member(&m, "d"),
            Err(ModelError::Ambiguous { matches: 0, .. })
        ));
        // A full spec that is no member resolves to itself; the caller refuses it.
        assert_eq!(
            resolve_member(&m, "d:/z").unwrap(),
            ReplicaId::new("d", "/z")
        );
    }

    #[test]
    fn display_brackets_ipv6_and_keys_refuse_bad_names() {
        assert_eq!(ReplicaId::new("nfs1", "/a").to_string(), "nfs1:/a");
        assert_eq!(ReplicaId::new("fd00::1", "/a").to_string(), "[fd00::1]:/a");
        let k = Keys::new("dags").unwrap();
        assert_eq!(k.active(), "/nfsha/volumes/dags/active");
        assert_eq!(k.failover(), "/nfsha/volumes/dags/failover");
        assert_eq!(k.view("c1").unwrap(), "/nfsha/volumes/dags/views/c1");
        assert!(Keys::new("a/b").is_err());
        assert!(Keys::new("").is_err());
        assert!(k.view("x/y").is_err());
    }
}
