//! `validate()`: the raw spanned TOML document → the validated [`Config`] model.
//!
//! Role: every semantic rule of the config format lives here — unknown keys (with a
//! "did you mean" suggestion), wrong types, bad durations and enums, path and address
//! syntax, relations between values (nested mountpoints, ttl/loop_period/safety_margin,
//! duplicate fsids) and the risky-option warnings. Failure modes: none of its own; it
//! keeps going after each problem so that one run reports all of them, each located at
//! the key or value that caused it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::defaults;
use crate::diag::{Severity, Sink, did_you_mean};
use crate::model::*;
use crate::options::option_advice;

type Val<'i> = Spanned<DeValue<'i>>;

/// A value and the byte offset it came from.
type Sp<T> = (T, usize);

/// Largest accepted `probe_deadline`: a probe that may take longer than this cannot
/// tell a dead server from a slow one in any useful time.
pub const MAX_PROBE_DEADLINE: Duration = Duration::from_secs(60);

/// Largest accepted duration of any key: a year is longer than any timeout, period or
/// lease has a use for, and far from the overflow of the deadline arithmetic that a huge
/// value used to crash (`Instant + d`, `3 × loop_period`).
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600); // humantime's 1year

/// Largest accepted `failures_before_recovery`.
pub const MAX_FAILURES_BEFORE_RECOVERY: u64 = 100;

const ROOT_KEYS: &[&str] = &["agent", "defaults", "mount", "server"];
const AGENT_KEYS: &[&str] = &[
    "control_socket",
    "listen",
    "event_log",
    "rpc_timeout",
    "server_probe_interval",
    "mount_timeout",
    "umount_timeout",
    "backoff_initial",
    "backoff_max",
    "cluster",
    "state_dir",
];
const CLUSTER_KEYS: &[&str] = &["etcd_endpoints", "cluster", "etcd_tls", "etcd_auth"];
const DEFAULT_KEYS: &[&str] = &[
    "nfs_version",
    "options",
    "mode",
    "probe_interval",
    "probe_deadline",
    "failures_before_recovery",
    "failback",
    "failback_after",
    "hooks",
    "hook_timeout",
    "services",
    "write_probe",
];
const MOUNT_ONLY_KEYS: &[&str] = &["mountpoint", "export", "servers", "fleet"];
const FLEET_KEYS: &[&str] = &[
    "volume",
    "failover_after",
    "quorum",
    "promote_command",
    "promote_timeout",
    "resync_check_command",
    "resync_check_timeout",
];
const SERVER_REF_KEYS: &[&str] = &["host", "export", "weight"];
const SERVER_KEYS: &[&str] = &[
    "node",
    "cluster",
    "etcd_endpoints",
    "etcd_tls",
    "etcd_auth",
    "ttl",
    "loop_period",
    "safety_margin",
    "export",
    "floating_address",
    "state_dir",
    "nfsd_lease",
    "nfsd_grace",
    "scope",
    "storage",
    "step_timeout",
    "hooks",
    "listen",
    "watchdog_device",
    "replication",
    "commands",
];
const COMMANDS_KEYS: &[&str] = &[
    "timeout",
    "storage_up",
    "storage_down",
    "state_dir_bind",
    "state_dir_bind_timeout",
    "before_nfsd",
    "after_nfsd_stop",
];
const COMMAND_KEYS: &[&str] = &["argv", "timeout"];
const TLS_KEYS: &[&str] = &["ca", "cert", "key"];
const AUTH_KEYS: &[&str] = &["user", "password_file"];
const EXPORT_KEYS: &[&str] = &["path", "fsid", "clients", "options"];
const FLOATING_KEYS: &[&str] = &["address", "prefix", "interface"];
const REPLICATION_KEYS: &[&str] = &[
    "engine",
    "interval",
    "ship_command",
    "promote_command",
    "max_lag",
    "subvolume",
    "snapshot_dir",
    "keep",
    "transport",
];
const BTRFS_ONLY_KEYS: &[&str] = &["subvolume", "snapshot_dir", "keep", "transport"];
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".target",
    ".socket",
    ".mount",
    ".automount",
    ".path",
    ".timer",
    ".slice",
    ".scope",
    ".swap",
    ".device",
];

/// Settings shared by `[defaults]` and `[[mount]]`, each with where it was written.
#[derive(Debug, Default, Clone)]
struct Common {
    nfs_version: Option<Sp<NfsVersion>>,
    options: Option<Sp<Vec<String>>>,
    mode: Option<Sp<MountMode>>,
    probe_interval: Option<Sp<Duration>>,
    probe_deadline: Option<Sp<Duration>>,
    failures_before_recovery: Option<Sp<u32>>,
    failback: Option<Sp<FailbackPolicy>>,
    failback_after: Option<Sp<Duration>>,
    hooks: Option<Sp<Vec<Vec<String>>>>,
    hook_timeout: Option<Sp<Duration>>,
    services: Option<Sp<Vec<String>>>,
    write_probe: Option<Sp<bool>>,
}

impl Common {
    /// Values of `self`, else of `d`.
    fn or(self, d: &Common) -> Common {
        Common {
            nfs_version: self.nfs_version.or(d.nfs_version),
            options: self.options.or_else(|| d.options.clone()),
            mode: self.mode.or(d.mode),
            probe_interval: self.probe_interval.or(d.probe_interval),
            probe_deadline: self.probe_deadline.or(d.probe_deadline),
            failures_before_recovery: self.failures_before_recovery.or(d.failures_before_recovery),
            failback: self.failback.or(d.failback),
            failback_after: self.failback_after.or(d.failback_after),
            hooks: self.hooks.or_else(|| d.hooks.clone()),
            hook_timeout: self.hook_timeout.or(d.hook_timeout),
            services: self.services.or_else(|| d.services.clone()),
            write_probe: self.write_probe.or(d.write_probe),
        }
    }
}

/// Walks the document, filling the sink.
pub(crate) struct Checker<'s> {
    pub(crate) sink: Sink<'s>,
    /// `(volume, offset)` of every `[mount.fleet]`, checked against `[agent.cluster]`.
    pub(crate) fleet_mounts: Vec<(String, usize)>,
}

/// The mountpoints validated so far, ordered by path components: a path's descendants
/// follow it directly, so a nesting check costs a few look-ups, not a pass over every
/// mount (10,000 mounts stay fast).
struct SeenMountpoints {
    by_path: std::collections::BTreeMap<PathBuf, usize>,
}

impl SeenMountpoints {
    fn new() -> Self {
        SeenMountpoints {
            by_path: std::collections::BTreeMap::new(),
        }
    }

    /// `(outer, inner, offset of the other one)` if `path` is inside a seen mountpoint or
    /// a seen mountpoint is inside `path`.
    fn nesting(&self, path: &Path) -> Option<(PathBuf, PathBuf, usize)> {
        if let Some((outer, &at)) = path
            .ancestors()
            .skip(1)
            .find_map(|a| self.by_path.get_key_value(a))
        {
            return Some((outer.clone(), path.to_path_buf(), at));
        }
        use std::ops::Bound::{Excluded, Unbounded};
        self.by_path
            .range::<Path, _>((Excluded(path), Unbounded))
            .next()
            .filter(|(other, _)| other.starts_with(path))
            .map(|(inner, &at)| (path.to_path_buf(), inner.clone(), at))
    }
}

fn start(v: &Val<'_>) -> usize {
    v.span().start
}

impl<'s> Checker<'s> {
    // ----- generic accessors -------------------------------------------------------

    fn check_keys(&mut self, t: &DeTable<'_>, known: &[&str], section: &str) {
        for (k, _) in t.iter() {
            let name: &str = k.get_ref();
            if known.contains(&name) {
                continue;
            }
            let help = if section == "[defaults]" && MOUNT_ONLY_KEYS.contains(&name) {
                format!("`{name}` belongs in each [[mount]], not in [defaults]")
            } else if let Some(s) = did_you_mean(name, known) {
                format!("did you mean `{s}`?")
            } else {
                format!("known keys: {}", known.join(", "))
            };
            self.sink.error_help(
                k.span().start,
                format!("unknown key `{name}` in {section}"),
                help,
            );
        }
    }

    fn type_error(&mut self, key: &str, v: &Val<'_>, expected: &str) {
        self.sink.error(
            start(v),
            format!(
                "`{key}` must be {expected}, found {}",
                v.get_ref().type_str()
            ),
        );
    }

    fn table<'a, 'i>(&mut self, key: &str, v: &'a Val<'i>) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(key, v, "a table");
                None
            }
        }
    }

    fn string(&mut self, key: &str, v: &Val<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.type_error(key, v, "a string");
                None
            }
        }
    }

    fn nonempty_string(&mut self, key: &str, v: &Val<'_>) -> Option<String> {
        let s = self.string(key, v)?;
        if s.trim().is_empty() {
            self.sink
                .error(start(v), format!("`{key}` must not be empty"));
            return None;
        }
        Some(s)
    }

    fn required<'a, 'i>(
        &mut self,
        t: &'a DeTable<'i>,
        key: &str,
        section: &str,
        at: usize,
    ) -> Option<&'a Val<'i>> {
        let v = t.get(key);
        if v.is_none() {
            self.sink
                .error(at, format!("missing required key `{key}` in {section}"));
        }
        v
    }

    fn duration(&mut self, key: &str, v: &Val<'_>) -> Option<Duration> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => {
                self.sink.error_help(
                    start(v),
                    format!("`{key}` must be a duration string, found integer"),
                    format!("write it with a unit, e.g. `{key} = \"{i}s\"`"),
                );
                return None;
            }
            _ => {
                self.type_error(key, v, "a duration string such as \"2s\"");
                return None;
            }
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d.is_zero() => {
                self.sink
                    .error(start(v), format!("`{key}` must be greater than zero"));
                None
            }
            Ok(d) if d > MAX_DURATION => {
                self.sink.error_help(
                    start(v),
                    format!("`{key}` = \"{}\" is too long", s.trim()),
                    format!(
                        "durations are at most {}; write e.g. \"30s\" or \"5m\"",
                        humantime::format_duration(MAX_DURATION)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                let help = if s.trim_start().starts_with('-') {
                    "durations cannot be negative".to_string()
                } else {
                    "write e.g. \"500ms\", \"2s\", \"5m\"".to_string()
                };
                self.sink.error_help(
                    start(v),
                    format!("invalid duration `{s}` for `{key}`: {e}"),
                    help,
                );
                None
            }
        }
    }

    fn opt_duration(&mut self, t: &DeTable<'_>, key: &str) -> Option<Sp<Duration>> {
        let v = t.get(key)?;
        self.duration(key, v).map(|d| (d, start(v)))
    }

    fn integer(&mut self, key: &str, v: &Val<'_>, min: u64, max: u64) -> Option<u64> {
        let DeValue::Integer(i) = v.get_ref() else {
            self.type_error(key, v, "an integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= 0 && (n as u64) >= min && (n as u64) <= max => Some(n as u64),
            _ => {
                self.sink.error(
                    start(v),
                    format!("`{key}` must be between {min} and {max}, found {i}"),
                );
                None
            }
        }
    }

    fn string_list(&mut self, key: &str, v: &Val<'_>) -> Option<Vec<Sp<String>>> {
        let DeValue::Array(a) = v.get_ref() else {
            self.type_error(key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in a.iter() {
            match self.nonempty_string(key, item) {
                Some(s) => out.push((s, start(item))),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// An array of strings, or one comma-separated string.
    fn option_list(&mut self, key: &str, v: &Val<'_>) -> Option<Vec<Sp<String>>> {
        match v.get_ref() {
            DeValue::String(s) => {
                let base = start(v) + 1;
                let mut out = Vec::new();
                let mut offset = 0;
                for part in s.split(',') {
                    let trimmed = part.trim();
                    if !trimmed.is_empty() {
                        out.push((trimmed.to_string(), base + offset));
                    }
                    offset += part.len() + 1;
                }
                Some(out)
            }
            DeValue::Array(_) => self.string_list(key, v),
            _ => {
                self.type_error(key, v, "an array of strings or a comma-separated string");
                None
            }
        }
    }

    fn argv_list(&mut self, key: &str, v: &Val<'_>) -> Option<Vec<Vec<String>>> {
        let DeValue::Array(a) = v.get_ref() else {
            self.type_error(key, v, "an array of argument vectors");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in a.iter() {
            match self.argv(key, item) {
                Some(argv) => out.push(argv),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn argv(&mut self, key: &str, v: &Val<'_>) -> Option<Vec<String>> {
        match v.get_ref() {
            DeValue::Array(a) => {
                if a.is_empty() {
                    self.sink.error_help(
                        start(v),
                        format!("empty command in `{key}`"),
                        "give the program and its arguments, e.g. [\"systemctl\", \"restart\", \"x.service\"]",
                    );
                    return None;
                }
                let mut argv = Vec::new();
                let mut ok = true;
                for (i, item) in a.iter().enumerate() {
                    match item.get_ref() {
                        DeValue::String(s) if i == 0 && s.trim().is_empty() => {
                            self.sink
                                .error(start(item), format!("empty program name in `{key}`"));
                            ok = false;
                        }
                        DeValue::String(s) => argv.push(s.to_string()),
                        _ => {
                            self.type_error(key, item, "a list of strings (one argument each)");
                            ok = false;
                        }
                    }
                }
                ok.then_some(argv)
            }
            DeValue::String(s) => {
                self.sink.error_help(
                    start(v),
                    format!("`{key}` entries must be argument vectors, found a string"),
                    format!(
                        "no shell is used: write [{}]",
                        s.split_whitespace()
                            .map(|w| format!("\"{w}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                None
            }
            _ => {
                self.type_error(key, v, "an argument vector (array of strings)");
                None
            }
        }
    }

    fn abs_path(&mut self, key: &str, v: &Val<'_>) -> Option<PathBuf> {
        let s = self.nonempty_string(key, v)?;
        if !s.starts_with('/') {
            self.sink.error_help(
                start(v),
                format!("`{key}` must be an absolute path, found `{s}`"),
                "start it with `/`",
            );
            return None;
        }
        Some(PathBuf::from(s))
    }

    /// `"off"` → `None`, else a socket address.
    fn listen(&mut self, key: &str, v: &Val<'_>) -> Option<Option<SocketAddr>> {
        let s = self.string(key, v)?;
        if s == "off" {
            return Some(None);
        }
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(Some(a)),
            Err(_) => {
                self.sink.error_help(
                    start(v),
                    format!("`{key}` is not a socket address: `{s}`"),
                    "write an IP address and a port such as \"127.0.0.1:9848\" or \"[::1]:9848\", or \"off\"",
                );
                None
            }
        }
    }

    fn enumeration<T: Copy>(&mut self, key: &str, v: &Val<'_>, choices: &[(&str, T)]) -> Option<T> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => i.as_str().to_string(),
            DeValue::Float(f) => f.as_str().to_string(),
            _ => {
                self.type_error(key, v, "a string");
                return None;
            }
        };
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let expected = format!(
            "expected one of {}",
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let help = match did_you_mean(&s, &names) {
            Some(n) if s.chars().count() > 2 => format!("did you mean \"{n}\"? ({expected})"),
            _ => expected,
        };
        self.sink
            .error_help(start(v), format!("invalid `{key}` value `{s}`"), help);
        None
    }

    // ----- sections ----------------------------------------------------------------

    pub(crate) fn document(&mut self, root: &DeTable<'_>, source: Option<&Path>) -> Config {
        self.check_keys(root, ROOT_KEYS, "the top level");
        let agent = match root.get("agent") {
            Some(v) => match self.table("agent", v) {
                Some(t) => self.agent(t),
                None => AgentSettings::default(),
            },
            None => AgentSettings::default(),
        };
        let defaults = match root.get("defaults") {
            Some(v) => match self.table("defaults", v) {
                Some(t) => {
                    self.check_keys(t, DEFAULT_KEYS, "[defaults]");
                    self.common(t)
                }
                None => Common::default(),
            },
            None => Common::default(),
        };
        let mut mounts = Vec::new();
        if let Some(v) = root.get("mount") {
            match v.get_ref() {
                DeValue::Array(a) => {
                    let mut seen = SeenMountpoints::new();
                    for item in a.iter() {
                        match item.get_ref() {
                            DeValue::Table(t) => {
                                if let Some(m) = self.mount(t, start(item), &defaults, &mut seen) {
                                    mounts.push(m);
                                }
                            }
                            _ => self.type_error("mount", item, "a table"),
                        }
                    }
                }
                DeValue::Table(_) => self.sink.error_help(
                    start(v),
                    "`mount` must be an array of tables",
                    "write [[mount]] (two brackets) before each mount",
                ),
                _ => self.type_error("mount", v, "an array of tables ([[mount]])"),
            }
        }
        let server = match root.get("server") {
            Some(v) => self
                .table("server", v)
                .and_then(|t| self.server(t, start(v))),
            None => None,
        };
        if agent.cluster.is_none()
            && let Some((_, at)) = self.fleet_mounts.first()
        {
            self.sink.error_help(
                *at,
                "[mount.fleet] needs [agent.cluster]",
                "the fleet agrees on the active replica in etcd: add [agent.cluster] with etcd_endpoints and cluster, or remove [mount.fleet] to let each agent keep its own active replica",
            );
        }
        let mut volumes: std::collections::BTreeMap<&str, usize> =
            std::collections::BTreeMap::new();
        for (volume, at) in &self.fleet_mounts {
            if let Some(first) = volumes.insert(volume.as_str(), *at) {
                self.sink.error_help(
                    *at,
                    format!("volume `{volume}` is used by two mounts"),
                    format!(
                        "it is already the volume of the mount at line {}; give each [mount.fleet] its own volume name",
                        self.sink.line_of(first)
                    ),
                );
            }
        }
        Config {
            source: source.map(Path::to_path_buf),
            agent,
            mounts,
            server,
        }
    }

    fn fleet(&mut self, t: &DeTable<'_>, at: usize) -> Option<FleetConfig> {
        self.check_keys(t, FLEET_KEYS, "[mount.fleet]");
        let volume = self
            .required(t, "volume", "[mount.fleet]", at)
            .and_then(|v| {
                let s = self.nonempty_string("volume", v)?;
                if s.contains('/') || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    self.sink.error_help(
                        start(v),
                        format!("volume `{s}` is not a valid name"),
                        "use letters, digits, `-`, `_` or `.` (it is an etcd key segment)",
                    );
                    return None;
                }
                Some(s)
            });
        let failover_after = self.opt_duration(t, "failover_after");
        let promote_timeout = self.opt_duration(t, "promote_timeout");
        let quorum = match t.get("quorum") {
            Some(v) => self.enumeration(
                "quorum",
                v,
                &[
                    ("majority", FleetQuorum::Majority),
                    ("any", FleetQuorum::Any),
                ],
            ),
            None => Some(FleetQuorum::Majority),
        };
        let promote_command = match t.get("promote_command") {
            Some(v) => self.argv("promote_command", v),
            None => Some(Vec::new()),
        };
        let resync_check_timeout = self.opt_duration(t, "resync_check_timeout");
        let resync_check_command = match t.get("resync_check_command") {
            Some(v) => self.argv("resync_check_command", v),
            None => Some(Vec::new()),
        };
        Some(FleetConfig {
            volume: volume?,
            failover_after: failover_after.map_or(defaults::FLEET_FAILOVER_AFTER, |x| x.0),
            quorum: quorum?,
            promote_command: promote_command?,
            promote_timeout: promote_timeout.map_or(defaults::FLEET_PROMOTE_TIMEOUT, |x| x.0),
            resync_check_command: resync_check_command?,
            resync_check_timeout: resync_check_timeout
                .map_or(defaults::FLEET_RESYNC_CHECK_TIMEOUT, |x| x.0),
        })
    }

    fn agent(&mut self, t: &DeTable<'_>) -> AgentSettings {
        self.check_keys(t, AGENT_KEYS, "[agent]");
        let mut a = AgentSettings::default();
        if let Some(v) = t.get("control_socket")
            && let Some(p) = self.abs_path("control_socket", v)
        {
            a.control_socket = p;
        }
        if let Some(v) = t.get("listen")
            && let Some(l) = self.listen("listen", v)
        {
            a.listen = l;
        }
        if let Some(v) = t.get("event_log") {
            a.event_log = self.abs_path("event_log", v);
        }
        if let Some(v) = t.get("state_dir")
            && let Some(p) = self.abs_path("state_dir", v)
        {
            a.state_dir = p;
        }
        let set = |c: &mut Self, key: &str, slot: &mut Duration| -> Option<usize> {
            let (d, at) = c.opt_duration(t, key)?;
            *slot = d;
            Some(at)
        };
        set(self, "rpc_timeout", &mut a.rpc_timeout);
        set(self, "server_probe_interval", &mut a.server_probe_interval);
        set(self, "mount_timeout", &mut a.mount_timeout);
        set(self, "umount_timeout", &mut a.umount_timeout);
        let init_at = set(self, "backoff_initial", &mut a.backoff_initial);
        let max_at = set(self, "backoff_max", &mut a.backoff_max);
        if a.backoff_initial > a.backoff_max {
            let at = max_at.or(init_at).unwrap_or(0);
            self.sink.error_help(
                at,
                format!(
                    "`backoff_max` ({}) is smaller than `backoff_initial` ({})",
                    humantime::format_duration(a.backoff_max),
                    humantime::format_duration(a.backoff_initial)
                ),
                "the backoff grows from backoff_initial up to backoff_max",
            );
        }
        if let Some(v) = t.get("cluster")
            && let Some(ct) = self.table("cluster", v)
        {
            self.check_keys(ct, CLUSTER_KEYS, "[agent.cluster]");
            let endpoints = self.endpoints(ct, "[agent.cluster]", start(v));
            let cluster = self
                .required(ct, "cluster", "[agent.cluster]", start(v))
                .and_then(|v| self.nonempty_string("cluster", v));
            let etcd_tls = ct.get("etcd_tls").and_then(|v| {
                self.table("etcd_tls", v)
                    .and_then(|tt| self.tls(tt, start(v), "[agent.cluster.etcd_tls]"))
            });
            let etcd_auth = ct.get("etcd_auth").and_then(|v| {
                self.table("etcd_auth", v)
                    .and_then(|tt| self.auth(tt, start(v), "[agent.cluster.etcd_auth]"))
            });
            if let (Some(etcd_endpoints), Some(cluster)) = (endpoints, cluster) {
                a.cluster = Some(ClusterSource {
                    etcd_endpoints,
                    cluster,
                    etcd_tls,
                    etcd_auth,
                });
            }
        }
        a
    }

    fn endpoints(&mut self, t: &DeTable<'_>, section: &str, at: usize) -> Option<Vec<String>> {
        let v = self.required(t, "etcd_endpoints", section, at)?;
        let list = self.string_list("etcd_endpoints", v)?;
        if list.is_empty() {
            self.sink.error_help(
                start(v),
                "`etcd_endpoints` is empty",
                "list at least one endpoint, e.g. [\"http://127.0.0.1:2379\"]",
            );
            return None;
        }
        Some(list.into_iter().map(|(s, _)| s).collect())
    }

    /// The settings a mount shares with `[defaults]` (keys already checked by the caller).
    fn common(&mut self, t: &DeTable<'_>) -> Common {
        let mut c = Common::default();
        if let Some(v) = t.get("nfs_version") {
            c.nfs_version = self
                .enumeration(
                    "nfs_version",
                    v,
                    &[
                        ("3", NfsVersion::V3),
                        ("4", NfsVersion::V4_0),
                        ("4.0", NfsVersion::V4_0),
                        ("4.1", NfsVersion::V4_1),
                        ("4.2", NfsVersion::V4_2),
                    ],
                )
                .map(|n| (n, start(v)));
        }
        if let Some(v) = t.get("options")
            && let Some(list) = self.option_list("options", v)
        {
            let mut ok = true;
            for (o, at) in &list {
                if let Some(adv) = option_advice(o) {
                    ok &= adv.severity != Severity::Error;
                    self.sink
                        .push(adv.severity, *at, adv.message, Some(adv.help));
                }
            }
            if ok {
                c.options = Some((list.into_iter().map(|(s, _)| s).collect(), start(v)));
            }
        }
        if let Some(v) = t.get("mode") {
            c.mode = self
                .enumeration(
                    "mode",
                    v,
                    &[("direct", MountMode::Direct), ("autofs", MountMode::Autofs)],
                )
                .map(|m| (m, start(v)));
        }
        c.probe_interval = self.opt_duration(t, "probe_interval");
        c.probe_deadline = self.opt_duration(t, "probe_deadline");
        if let Some((d, at)) = c.probe_deadline
            && d > MAX_PROBE_DEADLINE
        {
            self.sink.error_help(
                at,
                format!(
                    "`probe_deadline` of {} is too long",
                    humantime::format_duration(d)
                ),
                format!(
                    "use at most {}: a probe that slow cannot tell a dead server from a slow one",
                    humantime::format_duration(MAX_PROBE_DEADLINE)
                ),
            );
        }
        if let Some(v) = t.get("failures_before_recovery") {
            c.failures_before_recovery = self
                .integer(
                    "failures_before_recovery",
                    v,
                    1,
                    MAX_FAILURES_BEFORE_RECOVERY,
                )
                .map(|n| (n as u32, start(v)));
        }
        if let Some(v) = t.get("failback") {
            c.failback = self
                .enumeration(
                    "failback",
                    v,
                    &[
                        ("never", FailbackPolicy::Never),
                        (
                            "when-preferred-healthy",
                            FailbackPolicy::WhenPreferredHealthy,
                        ),
                    ],
                )
                .map(|f| (f, start(v)));
        }
        c.failback_after = self.opt_duration(t, "failback_after");
        if let Some(v) = t.get("hooks") {
            c.hooks = self.argv_list("hooks", v).map(|h| (h, start(v)));
        }
        c.hook_timeout = self.opt_duration(t, "hook_timeout");
        if let Some(v) = t.get("write_probe") {
            match v.get_ref() {
                DeValue::Boolean(b) => c.write_probe = Some((*b, start(v))),
                _ => self.type_error("write_probe", v, "true or false"),
            }
        }
        if let Some(v) = t.get("services")
            && let Some(list) = self.string_list("services", v)
        {
            let mut ok = true;
            for (s, at) in &list {
                if s.contains('/') || s.chars().any(char::is_whitespace) {
                    self.sink
                        .error(*at, format!("`{s}` is not a systemd unit name"));
                    ok = false;
                } else if !UNIT_SUFFIXES.iter().any(|suf| s.ends_with(suf)) {
                    self.sink.error_help(
                        *at,
                        format!("`{s}` has no unit type suffix"),
                        format!("write `{s}.service`"),
                    );
                    ok = false;
                }
            }
            if ok {
                c.services = Some((list.into_iter().map(|(s, _)| s).collect(), start(v)));
            }
        }
        c
    }

    fn mount(
        &mut self,
        t: &DeTable<'_>,
        at: usize,
        defaults: &Common,
        seen: &mut SeenMountpoints,
    ) -> Option<MountConfig> {
        let keys: Vec<&str> = MOUNT_ONLY_KEYS
            .iter()
            .chain(DEFAULT_KEYS)
            .copied()
            .collect();
        self.check_keys(t, &keys, "[[mount]]");
        let mountpoint = self
            .required(t, "mountpoint", "[[mount]]", at)
            .and_then(|v| self.mountpoint(v, seen));
        let export = self
            .required(t, "export", "[[mount]]", at)
            .and_then(|v| self.export_path(v));
        let servers = self
            .required(t, "servers", "[[mount]]", at)
            .and_then(|v| self.servers(v, export.as_deref()));
        let c = self.common(t).or(defaults);
        if let (Some(servers), Some(export)) = (&servers, &export) {
            self.replica_rules(t, servers, export, &c);
        }
        let fleet = match t.get("fleet") {
            Some(v) => match self.table("fleet", v) {
                Some(ft) => {
                    let f = self.fleet(ft, start(v));
                    if let (Some(servers), Some(export)) = (&servers, &export) {
                        let distinct: std::collections::BTreeSet<(&str, &str)> = servers
                            .iter()
                            .map(|s| (s.host.as_str(), s.export.as_deref().unwrap_or(export)))
                            .collect();
                        if distinct.len() < 2 {
                            self.sink.error_help(
                                start(v),
                                "[mount.fleet] needs at least two replicas",
                                "list the source and its replica in `servers`, each with its own export path, e.g. servers = [\"10.1.13.5\", { host = \"10.2.13.5\", export = \"/crr-dest1\" }]",
                            );
                        }
                    }
                    if let Some(f) = &f {
                        self.fleet_mounts.push((f.volume.clone(), start(v)));
                    }
                    Some(f?)
                }
                None => None,
            },
            None => None,
        };
        let m = MountConfig {
            mountpoint: mountpoint?,
            export: export?,
            servers: servers?,
            nfs_version: c.nfs_version.map_or(defaults::NFS_VERSION, |x| x.0),
            options: c.options.map_or_else(defaults::mount_options, |x| x.0),
            mode: c.mode.map_or(MountMode::Direct, |x| x.0),
            probe_interval: c.probe_interval.map_or(defaults::PROBE_INTERVAL, |x| x.0),
            probe_deadline: c.probe_deadline.map_or(defaults::PROBE_DEADLINE, |x| x.0),
            failures_before_recovery: c
                .failures_before_recovery
                .map_or(defaults::FAILURES_BEFORE_RECOVERY, |x| x.0),
            failback: c.failback.map_or(FailbackPolicy::Never, |x| x.0),
            failback_after: c.failback_after.map_or(defaults::FAILBACK_AFTER, |x| x.0),
            hooks: c.hooks.map_or_else(Vec::new, |x| x.0),
            hook_timeout: c.hook_timeout.map_or(defaults::HOOK_TIMEOUT, |x| x.0),
            services: c.services.map_or_else(Vec::new, |x| x.0),
            write_probe: c.write_probe.is_some_and(|x| x.0),
            fleet,
        };
        Some(m)
    }

    fn mountpoint(&mut self, v: &Val<'_>, seen: &mut SeenMountpoints) -> Option<PathBuf> {
        let s = self.nonempty_string("mountpoint", v)?;
        let at = start(v);
        if !s.starts_with('/') {
            self.sink.error_help(
                at,
                format!("mountpoint `{s}` is relative"),
                format!(
                    "write it as an absolute path, e.g. `/{}`",
                    s.trim_start_matches("./")
                ),
            );
            return None;
        }
        let path = Path::new(&s);
        let normal = path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && !s.split('/').any(|c| c == "." || c == "..");
        if !normal || s.contains("//") || (s.len() > 1 && s.ends_with('/')) {
            let clean: PathBuf = path.components().collect();
            self.sink.error_help(
                at,
                format!("mountpoint `{s}` is not in normal form"),
                format!(
                    "write `{}` (no `.`, `..`, `//` or trailing `/`)",
                    clean.display()
                ),
            );
            return None;
        }
        if s == "/" {
            self.sink.error(at, "mountpoint `/` cannot be an NFS mount");
            return None;
        }
        let path = path.to_path_buf();
        let line_of = |c: &Self, o: usize| c.sink_line(o);
        if let Some(&other_at) = seen.by_path.get(&path) {
            self.sink.error_help(
                at,
                format!("duplicate mountpoint `{s}`"),
                format!(
                    "it is already configured at line {}",
                    line_of(self, other_at)
                ),
            );
            return None;
        }
        if let Some((outer, inner, other_at)) = seen.nesting(&path) {
            self.sink.error_help(
                at,
                format!(
                    "mountpoint `{}` is nested inside `{}`",
                    inner.display(),
                    outer.display()
                ),
                format!(
                    "the other one is at line {}; nfsha recovers each mount alone, so nested mounts are not supported: use separate directories",
                    line_of(self, other_at)
                ),
            );
            return None;
        }
        seen.by_path.insert(path.clone(), at);
        Some(path)
    }

    fn sink_line(&self, offset: usize) -> usize {
        self.sink.line_of(offset)
    }

    fn export_path(&mut self, v: &Val<'_>) -> Option<String> {
        let s = self.nonempty_string("export", v)?;
        if s.contains(':') && !s.starts_with('/') {
            self.sink.error_help(
                start(v),
                format!("`export` `{s}` includes a server"),
                "put the host in `servers` and only the path in `export`",
            );
            return None;
        }
        if !s.starts_with('/') {
            self.sink.error_help(
                start(v),
                format!("`export` `{s}` is not an absolute path"),
                "write the path exported by the server, e.g. \"/srv/airflow/dags\"",
            );
            return None;
        }
        Some(s)
    }

    /// `servers`: strings (`"host"`, the mount's export) or `{ host, export, weight }`
    /// tables. `export` is the mount's (when it parsed), for telling duplicates: the
    /// same `host:export` twice is an error, the same host with two exports is not.
    fn servers(&mut self, v: &Val<'_>, export: Option<&str>) -> Option<Vec<ServerRef>> {
        let DeValue::Array(a) = v.get_ref() else {
            if let DeValue::String(s) = v.get_ref() {
                self.sink.error_help(
                    start(v),
                    "`servers` must be an array, found string",
                    format!("write servers = [\"{s}\"]"),
                );
            } else {
                self.type_error("servers", v, "an array");
            }
            return None;
        };
        if a.is_empty() {
            self.sink.error_help(
                start(v),
                "`servers` is empty",
                "list at least one NFS server, e.g. servers = [\"10.101.20.220\"]",
            );
            return None;
        }
        let mut out: Vec<Sp<ServerRef>> = Vec::new();
        let mut ok = true;
        for item in a.iter() {
            let r = match item.get_ref() {
                DeValue::String(_) => self.host("servers", item).map(ServerRef::new),
                DeValue::Table(t) => {
                    self.check_keys(t, SERVER_REF_KEYS, "a `servers` entry");
                    let host = self
                        .required(t, "host", "a `servers` entry", start(item))
                        .and_then(|h| self.host("host", h));
                    let own_export = match t.get("export") {
                        Some(e) => self.export_path(e).map(Some),
                        None => Some(None),
                    };
                    let weight = match t.get("weight") {
                        Some(w) => self
                            .integer("weight", w, 0, u64::from(u32::MAX))
                            .map(|n| n as u32),
                        None => Some(0),
                    };
                    match (host, own_export, weight) {
                        (Some(host), Some(export), Some(weight)) => Some(ServerRef {
                            host,
                            export,
                            weight,
                        }),
                        _ => None,
                    }
                }
                _ => {
                    self.type_error("servers", item, "a host string or { host, export, weight }");
                    None
                }
            };
            let effective = |s: &ServerRef| s.export.clone().or(export.map(String::from));
            match r {
                Some(r) => {
                    if let Some((_, first)) = out
                        .iter()
                        .find(|(o, _)| o.host == r.host && effective(o) == effective(&r))
                    {
                        let first_line = self.sink_line(*first);
                        let what = match effective(&r) {
                            Some(e) => format!(
                                "replica `{}`",
                                Replica {
                                    host: r.host.clone(),
                                    export: e,
                                }
                            ),
                            None => format!("server `{}`", r.host),
                        };
                        self.sink.error_help(
                            start(item),
                            format!("{what} is listed twice"),
                            format!(
                                "it is already listed at line {first_line}: remove one, or give this one its own `export`"
                            ),
                        );
                        ok = false;
                    } else {
                        out.push((r, start(item)));
                    }
                }
                None => ok = false,
            }
        }
        ok.then(|| out.into_iter().map(|(s, _)| s).collect())
    }

    /// Rules for replica volumes (servers exporting different paths): autofs would pick
    /// the replica itself (the first one answering) and fail back to a stale source
    /// after its return, and a failback policy would do the same on purpose.
    fn replica_rules(&mut self, t: &DeTable<'_>, servers: &[ServerRef], export: &str, c: &Common) {
        let mut exports = servers
            .iter()
            .map(|s| s.export.as_deref().unwrap_or(export));
        let first = exports.next();
        if !exports.any(|e| Some(e) != first) {
            return;
        }
        let at = t.get("servers").map_or(0, start);
        if let Some((MountMode::Autofs, mode_at)) = c.mode {
            self.sink.error_help(
                mode_at,
                "replicas with different export paths cannot use mode = \"autofs\"",
                format!(
                    "autofs mounts the first replica that answers, so once the source is back it mounts the stale source again (writes made on the replica vanish); use mode = \"direct\": the agent keeps the active replica (servers at line {})",
                    self.sink_line(at)
                ),
            );
        }
        if let Some((FailbackPolicy::WhenPreferredHealthy, fb_at)) = c.failback {
            self.sink.error_help(
                fb_at,
                "failback = \"when-preferred-healthy\" cannot be used with replicas that export different paths",
                "moving back to the preferred replica would show its older data: keep failback = \"never\" and move back by hand once the replication is reversed",
            );
        }
    }

    fn host(&mut self, key: &str, v: &Val<'_>) -> Option<String> {
        let s = self.nonempty_string(key, v)?;
        if let Some((h, p)) = s.split_once(":/") {
            self.sink.error_help(
                start(v),
                format!("server `{s}` includes an export path"),
                format!(
                    "write the host `{h}` here and `export = \"/{p}\"` in the [[mount]], or, for a replica with its own path, {{ host = \"{h}\", export = \"/{p}\" }}"
                ),
            );
            return None;
        }
        if s.chars().any(|c| c.is_whitespace() || c == ',' || c == '/') {
            self.sink.error_help(
                start(v),
                format!("`{s}` is not a host name or address"),
                "list each server as its own string",
            );
            return None;
        }
        Some(s)
    }

    fn server(&mut self, t: &DeTable<'_>, at: usize) -> Option<ServerConfig> {
        const S: &str = "[server]";
        self.check_keys(t, SERVER_KEYS, S);
        let node = self
            .required(t, "node", S, at)
            .and_then(|v| self.nonempty_string("node", v));
        let cluster = self
            .required(t, "cluster", S, at)
            .and_then(|v| self.nonempty_string("cluster", v));
        let etcd_endpoints = self.endpoints(t, S, at);
        let etcd_tls = match t.get("etcd_tls") {
            Some(v) => self
                .table("etcd_tls", v)
                .and_then(|tt| self.tls(tt, start(v), "[server.etcd_tls]")),
            None => None,
        };
        let etcd_auth = match t.get("etcd_auth") {
            Some(v) => self
                .table("etcd_auth", v)
                .and_then(|tt| self.auth(tt, start(v), "[server.etcd_auth]")),
            None => None,
        };
        let ttl = self.opt_duration(t, "ttl");
        let loop_period = self.opt_duration(t, "loop_period");
        let safety_margin = self.opt_duration(t, "safety_margin");
        let ttl_v = ttl.map_or(defaults::SERVER_TTL, |x| x.0);
        let loop_v = loop_period.map_or(defaults::SERVER_LOOP_PERIOD, |x| x.0);
        let margin_v =
            safety_margin.map_or_else(|| defaults::safety_margin(ttl_v, loop_v), |x| x.0);
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        let rel_at = |a: Option<Sp<Duration>>, b: Option<Sp<Duration>>| a.or(b).map_or(at, |x| x.1);
        if loop_v * 3 >= ttl_v {
            self.sink.error_help(
                rel_at(loop_period, ttl),
                format!(
                    "`loop_period` ({}) must be less than a third of `ttl` ({})",
                    fmt(loop_v),
                    fmt(ttl_v)
                ),
                "the leader must get at least three chances to renew its lease before it expires",
            );
        }
        // A defaulted margin follows ttl and loop_period: when those break the loop rule,
        // that one error is the whole story.
        let check_margin = safety_margin.is_some() || loop_v * 3 < ttl_v;
        if !check_margin {
        } else if margin_v >= ttl_v {
            self.sink.error_help(
                rel_at(safety_margin, ttl),
                format!(
                    "`safety_margin` ({}) must be less than `ttl` ({})",
                    fmt(margin_v),
                    fmt(ttl_v)
                ),
                "the leader fences itself safety_margin before its lease can expire",
            );
        } else if margin_v <= loop_v {
            self.sink.error_help(
                rel_at(safety_margin, loop_period),
                format!(
                    "`safety_margin` ({}) must be greater than `loop_period` ({})",
                    fmt(margin_v),
                    fmt(loop_v)
                ),
                "otherwise one slow loop iteration can overrun the fencing deadline",
            );
        } else if loop_v * 3 < ttl_v && margin_v >= ttl_v.saturating_sub(loop_v * 2) {
            self.sink.error_help(
                rel_at(safety_margin, ttl),
                format!(
                    "`safety_margin` ({}) must be less than `ttl` - 2 × `loop_period` ({})",
                    fmt(margin_v),
                    fmt(ttl_v.saturating_sub(loop_v * 2))
                ),
                "teardown starts one loop before ttl - safety_margin, and the leader needs one more loop to renew its lease",
            );
        }
        let exports = self.exports(t, at);
        let floating_address = match t.get("floating_address") {
            Some(v) => self
                .table("floating_address", v)
                .and_then(|ft| self.floating(ft, start(v))),
            None => None,
        };
        let state_dir = match t.get("state_dir") {
            Some(v) => self.abs_path("state_dir", v),
            None => Some(PathBuf::from(defaults::SERVER_STATE_DIR)),
        };
        let nfsd_lease = self
            .opt_duration(t, "nfsd_lease")
            .map_or(defaults::NFSD_LEASE, |x| x.0);
        let nfsd_grace = self
            .opt_duration(t, "nfsd_grace")
            .map_or(defaults::NFSD_GRACE, |x| x.0);
        let scope = match t.get("scope") {
            Some(v) => self.nonempty_string("scope", v),
            None => cluster.clone(),
        };
        let storage = self.required(t, "storage", S, at).and_then(|v| {
            self.enumeration(
                "storage",
                v,
                &[
                    ("shared", StorageMode::Shared),
                    ("replicated", StorageMode::Replicated),
                ],
            )
        });
        let step_timeout = self
            .opt_duration(t, "step_timeout")
            .map_or(defaults::STEP_TIMEOUT, |x| x.0);
        let hooks = match t.get("hooks") {
            Some(v) => self.argv_list("hooks", v),
            None => Some(Vec::new()),
        };
        let listen = match t.get("listen") {
            Some(v) => self.listen("listen", v),
            None => Some(Some(defaults::server_listen())),
        };
        let watchdog_device = match t.get("watchdog_device") {
            Some(v) => self.abs_path("watchdog_device", v).map(Some),
            None => Some(None),
        };
        let replication = match t.get("replication") {
            Some(v) => {
                let r = self
                    .table("replication", v)
                    .and_then(|rt| self.replication(rt, start(v)));
                if storage == Some(StorageMode::Shared) {
                    self.sink.error_help(
                        start(v),
                        "[server.replication] is set but `storage` is \"shared\"",
                        "remove [server.replication], or set storage = \"replicated\"",
                    );
                }
                if let Some(rc) = &r
                    && rc.max_lag > rc.interval
                    && rc.max_lag <= rc.interval + ttl_v
                {
                    self.sink.error_help(
                        start(v),
                        format!(
                            "`max_lag` ({}) must be greater than `interval` + `ttl` ({})",
                            fmt(rc.max_lag),
                            fmt(rc.interval + ttl_v)
                        ),
                        "a standby judges its lag when it sees the leader gone, up to one ttl after the leader stopped; with a smaller max_lag even an up-to-date standby would refuse to take over",
                    );
                }
                if let (Some(b), Some(exports)) =
                    (r.as_ref().and_then(|rc| rc.btrfs.as_ref()), &exports)
                {
                    for e in exports.iter().filter(|e| !e.path.starts_with(&b.subvolume)) {
                        self.sink.error_help(
                            start(v),
                            format!(
                                "export {} is not inside the replicated subvolume {}",
                                e.path.display(),
                                b.subvolume.display()
                            ),
                            "the btrfs engine replicates only `subvolume`: export it or a directory inside it",
                        );
                    }
                }
                r
            }
            None => None,
        };
        let commands = match t.get("commands") {
            Some(v) => self
                .table("commands", v)
                .and_then(|ct| self.commands(ct, step_timeout, state_dir.as_deref(), storage)),
            None => Some(ServerCommands {
                state_dir_bind_timeout: step_timeout,
                ..ServerCommands::default()
            }),
        };
        Some(ServerConfig {
            commands: commands?,
            node: node?,
            cluster: cluster?,
            etcd_endpoints: etcd_endpoints?,
            etcd_tls,
            etcd_auth,
            ttl: ttl_v,
            loop_period: loop_v,
            safety_margin: margin_v,
            exports: exports?,
            floating_address,
            state_dir: state_dir?,
            nfsd_lease,
            nfsd_grace,
            scope: scope?,
            storage: storage?,
            step_timeout,
            hooks: hooks?,
            listen: listen?,
            watchdog_device: watchdog_device?,
            replication,
        })
    }

    /// `[server.commands]`: argument vectors with their own deadlines, each at most
    /// `step_timeout` (the step's deadline would cut a longer one short).
    fn commands(
        &mut self,
        t: &DeTable<'_>,
        step_timeout: Duration,
        state_dir: Option<&Path>,
        storage: Option<StorageMode>,
    ) -> Option<ServerCommands> {
        const S: &str = "[server.commands]";
        self.check_keys(t, COMMANDS_KEYS, S);
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        let bounded = |c: &mut Self, key: &str, d: Option<Sp<Duration>>| -> Duration {
            match d {
                Some((d, at)) if d > step_timeout => {
                    c.sink.error_help(
                        at,
                        format!(
                            "`{key}` ({}) is longer than `step_timeout` ({})",
                            fmt(d),
                            fmt(step_timeout)
                        ),
                        "the step's deadline would kill the command first: lower this timeout or raise [server] step_timeout",
                    );
                    d
                }
                Some((d, _)) => d,
                None => step_timeout,
            }
        };
        let default_timeout = self.opt_duration(t, "timeout");
        let default_timeout = bounded(self, "timeout", default_timeout);
        let list = |c: &mut Self, key: &str| -> Option<Vec<HostCommand>> {
            let Some(v) = t.get(key) else {
                return Some(Vec::new());
            };
            let DeValue::Array(a) = v.get_ref() else {
                c.type_error(
                    key,
                    v,
                    "an array of commands (argument vectors or { argv, timeout } tables)",
                );
                return None;
            };
            let mut out = Vec::new();
            let mut ok = true;
            for item in a.iter() {
                let cmd = match item.get_ref() {
                    DeValue::Table(ct) => {
                        c.check_keys(ct, COMMAND_KEYS, &format!("a `{key}` entry"));
                        let argv = c
                            .required(ct, "argv", &format!("a `{key}` entry"), start(item))
                            .and_then(|a| c.argv(key, a));
                        let to = c.opt_duration(ct, "timeout");
                        let to = match to {
                            Some(x) => bounded(c, "timeout", Some(x)),
                            None => default_timeout,
                        };
                        argv.map(|argv| HostCommand { argv, timeout: to })
                    }
                    _ => c.argv(key, item).map(|argv| HostCommand {
                        argv,
                        timeout: default_timeout,
                    }),
                };
                match cmd {
                    Some(x) => out.push(x),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        };
        let storage_up = list(self, "storage_up");
        let storage_down = list(self, "storage_down");
        let before_nfsd = list(self, "before_nfsd");
        let after_nfsd_stop = list(self, "after_nfsd_stop");
        let bind_timeout = self.opt_duration(t, "state_dir_bind_timeout");
        let state_dir_bind_timeout = bounded(self, "state_dir_bind_timeout", bind_timeout);
        let state_dir_bind = match t.get("state_dir_bind") {
            Some(v) => {
                let p = self.abs_path("state_dir_bind", v);
                if let (Some(p), Some(sd)) = (&p, state_dir)
                    && (p.starts_with(sd) || sd.starts_with(p))
                {
                    self.sink.error_help(
                        start(v),
                        format!(
                            "`state_dir_bind` ({}) and `state_dir` ({}) overlap",
                            p.display(),
                            sd.display()
                        ),
                        "state_dir is the directory on the shared storage (e.g. \"/srv/nfs/state\"); state_dir_bind is where nfs-utils looks for it (usually \"/var/lib/nfs\")",
                    );
                }
                if storage == Some(StorageMode::Replicated) {
                    self.sink.push(
                        Severity::Warning,
                        start(v),
                        "`state_dir_bind` with storage = \"replicated\"",
                        Some("each node has its own state directory in replicated mode; binding it is harmless but usually not needed".into()),
                    );
                }
                Some(p?)
            }
            None => None,
        };
        Some(ServerCommands {
            storage_up: storage_up?,
            storage_down: storage_down?,
            state_dir_bind,
            state_dir_bind_timeout,
            before_nfsd: before_nfsd?,
            after_nfsd_stop: after_nfsd_stop?,
        })
    }

    /// An `etcd_auth` table (`[server.etcd_auth]`, `[agent.cluster.etcd_auth]`).
    fn auth(&mut self, t: &DeTable<'_>, at: usize, section: &str) -> Option<EtcdAuth> {
        self.check_keys(t, AUTH_KEYS, section);
        let user = self
            .required(t, "user", section, at)
            .and_then(|u| self.nonempty_string("user", u));
        let password_file = self
            .required(t, "password_file", section, at)
            .and_then(|p| self.abs_path("password_file", p));
        Some(EtcdAuth {
            user: user?,
            password_file: password_file?,
        })
    }

    /// An `etcd_tls` table (`[server.etcd_tls]`, `[agent.cluster.etcd_tls]`).
    fn tls(&mut self, t: &DeTable<'_>, at: usize, section: &str) -> Option<EtcdTls> {
        self.check_keys(t, TLS_KEYS, section);
        let ca = self
            .required(t, "ca", section, at)
            .and_then(|v| self.abs_path("ca", v));
        let cert = t.get("cert").and_then(|v| self.abs_path("cert", v));
        let key = t.get("key").and_then(|v| self.abs_path("key", v));
        if t.get("cert").is_some() != t.get("key").is_some() {
            self.sink.error_help(
                at,
                format!("{section} needs both `cert` and `key`, or neither"),
                "a client certificate is useless without its key",
            );
            return None;
        }
        Some(EtcdTls { ca: ca?, cert, key })
    }

    fn exports(&mut self, t: &DeTable<'_>, at: usize) -> Option<Vec<ExportConfig>> {
        const S: &str = "[[server.export]]";
        let Some(v) = t.get("export") else {
            self.sink.error_help(
                at,
                "[server] has no [[server.export]]",
                "add one [[server.export]] with `path` and `fsid` per exported directory",
            );
            return None;
        };
        let DeValue::Array(a) = v.get_ref() else {
            self.sink.error_help(
                start(v),
                "`export` must be an array of tables",
                "write [[server.export]] (two brackets) before each export",
            );
            return None;
        };
        let mut out: Vec<ExportConfig> = Vec::new();
        let mut fsids: HashMap<u32, usize> = HashMap::new();
        let mut paths: HashMap<PathBuf, usize> = HashMap::new();
        let mut ok = true;
        for item in a.iter() {
            let DeValue::Table(et) = item.get_ref() else {
                self.type_error("export", item, "a table");
                ok = false;
                continue;
            };
            self.check_keys(et, EXPORT_KEYS, S);
            let path = self
                .required(et, "path", S, start(item))
                .and_then(|p| self.abs_path("path", p).map(|x| (x, start(p))));
            let fsid = self.required(et, "fsid", S, start(item)).and_then(|f| {
                let n = self.integer("fsid", f, 0, u64::from(u32::MAX))? as u32;
                if n == 0 {
                    self.sink.error_help(
                        start(f),
                        "`fsid` 0 is reserved for the NFSv4 pseudo-root",
                        "use a small positive number, the same on every node",
                    );
                    return None;
                }
                Some((n, start(f)))
            });
            let clients = match et.get("clients") {
                Some(c) => self.nonempty_string("clients", c),
                None => Some("*".to_string()),
            };
            let options = match et.get("options") {
                Some(o) => self
                    .option_list("options", o)
                    .map(|l| l.into_iter().map(|(s, _)| s).collect()),
                None => Some(defaults::export_options()),
            };
            if let Some((p, p_at)) = &path {
                if let Some(first) = paths.get(p) {
                    self.sink.error_help(
                        *p_at,
                        format!("export `{}` is listed twice", p.display()),
                        format!("it is already exported at line {}", self.sink_line(*first)),
                    );
                    ok = false;
                } else {
                    paths.insert(p.clone(), *p_at);
                }
            }
            if let Some((n, f_at)) = fsid {
                if let Some(first) = fsids.get(&n) {
                    self.sink.error_help(
                        f_at,
                        format!("duplicate fsid {n}"),
                        format!(
                            "fsid {n} is already used at line {}: each export needs its own fsid",
                            self.sink_line(*first)
                        ),
                    );
                    ok = false;
                } else {
                    fsids.insert(n, f_at);
                }
            }
            match (path, fsid, clients, options) {
                (Some((path, _)), Some((fsid, _)), Some(clients), Some(options)) => {
                    out.push(ExportConfig {
                        path,
                        fsid,
                        clients,
                        options,
                    })
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn floating(&mut self, t: &DeTable<'_>, at: usize) -> Option<FloatingAddress> {
        const S: &str = "[server.floating_address]";
        self.check_keys(t, FLOATING_KEYS, S);
        let address = self.required(t, "address", S, at).and_then(|v| {
            let s = self.string("address", v)?;
            match s.parse::<IpAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    let help = if s.contains('/') {
                        "write the prefix length in `prefix`, not in the address"
                    } else {
                        "write an IPv4 or IPv6 address such as \"10.101.20.220\""
                    };
                    self.sink.error_help(
                        start(v),
                        format!("`address` is not an IP address: `{s}`"),
                        help,
                    );
                    None
                }
            }
        });
        let max_prefix = match address {
            Some(IpAddr::V6(_)) => 128,
            _ => 32,
        };
        let prefix = self
            .required(t, "prefix", S, at)
            .and_then(|v| self.integer("prefix", v, 1, max_prefix).map(|n| n as u8));
        let interface = self.required(t, "interface", S, at).and_then(|v| {
            let s = self.nonempty_string("interface", v)?;
            if s.len() > 15 || s.contains('/') || s.chars().any(char::is_whitespace) {
                self.sink.error(
                    start(v),
                    format!("`{s}` is not a network interface name (at most 15 characters, no `/` or spaces)"),
                );
                return None;
            }
            Some(s)
        });
        Some(FloatingAddress {
            address: address?,
            prefix: prefix?,
            interface: interface?,
        })
    }

    fn replication(&mut self, t: &DeTable<'_>, at: usize) -> Option<ReplicationConfig> {
        const S: &str = "[server.replication]";
        self.check_keys(t, REPLICATION_KEYS, S);
        let engine = match t.get("engine") {
            Some(v) => self.enumeration(
                "engine",
                v,
                &[
                    ("command", ReplicationEngine::Command),
                    ("btrfs", ReplicationEngine::Btrfs),
                ],
            )?,
            None => ReplicationEngine::Command,
        };
        let interval = self.opt_duration(t, "interval");
        let max_lag = self.opt_duration(t, "max_lag");
        let (ship, promote, btrfs) = match engine {
            ReplicationEngine::Command => {
                for key in BTRFS_ONLY_KEYS {
                    if let Some(v) = t.get(*key) {
                        self.sink.error_help(
                            start(v),
                            format!("`{key}` is a key of the btrfs engine"),
                            "set engine = \"btrfs\" (then ship_command and promote_command go), or remove it",
                        );
                    }
                }
                let ship = self
                    .required(t, "ship_command", S, at)
                    .and_then(|v| self.argv("ship_command", v));
                let promote = self
                    .required(t, "promote_command", S, at)
                    .and_then(|v| self.argv("promote_command", v));
                (ship, promote, Some(None))
            }
            ReplicationEngine::Btrfs => {
                for key in ["ship_command", "promote_command"] {
                    if let Some(v) = t.get(key) {
                        self.sink.error_help(
                            start(v),
                            format!("`{key}` is not used with engine = \"btrfs\""),
                            "remove it: the btrfs engine sends and promotes snapshots itself",
                        );
                    }
                }
                (
                    Some(Vec::new()),
                    Some(Vec::new()),
                    self.btrfs(t, at).map(Some),
                )
            }
        };
        let (default_interval, default_max_lag) = match engine {
            ReplicationEngine::Command => (
                defaults::REPLICATION_INTERVAL,
                defaults::REPLICATION_MAX_LAG,
            ),
            ReplicationEngine::Btrfs => (defaults::BTRFS_INTERVAL, defaults::BTRFS_MAX_LAG),
        };
        let interval_v = interval.map_or(default_interval, |x| x.0);
        let max_lag_v = max_lag.map_or(default_max_lag, |x| x.0);
        if max_lag_v <= interval_v {
            self.sink.error_help(
                max_lag.or(interval).map_or(at, |x| x.1),
                format!(
                    "`max_lag` ({}) must be greater than `interval` ({})",
                    humantime::format_duration(max_lag_v),
                    humantime::format_duration(interval_v)
                ),
                "a standby is always up to one interval behind",
            );
        }
        Some(ReplicationConfig {
            engine,
            btrfs: btrfs?,
            interval: interval_v,
            ship_command: ship?,
            promote_command: promote?,
            max_lag: max_lag_v,
        })
    }

    /// The btrfs engine's keys. Paths travel through the transport (ssh joins its
    /// arguments into one remote shell command), so they must need no quoting.
    fn btrfs(&mut self, t: &DeTable<'_>, at: usize) -> Option<BtrfsReplication> {
        const S: &str = "[server.replication] (engine = \"btrfs\")";
        let path = |this: &mut Self, key: &str| -> Option<Sp<PathBuf>> {
            let v = this.required(t, key, S, at)?;
            let p = this.abs_path(key, v)?;
            let text = p.to_string_lossy();
            if let Some(c) = text
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "/._-+@:".contains(*c)))
            {
                this.sink.error_help(
                    start(v),
                    format!("`{key}` contains {c:?}, which the transport would have to quote"),
                    "use letters, digits and / . _ - + @ : only (the path is passed to the standby through the transport, e.g. one ssh command line)",
                );
                return None;
            }
            if p.components().any(|c| matches!(c, Component::ParentDir))
                || text.ends_with('/') && text.len() > 1
            {
                this.sink.error_help(
                    start(v),
                    format!("`{key}` must be a plain absolute path, found `{text}`"),
                    "no `..` and no trailing `/`",
                );
                return None;
            }
            Some((p, start(v)))
        };
        let subvolume = path(self, "subvolume");
        let snapshot_dir = path(self, "snapshot_dir");
        if let (Some((sv, _)), Some((sd, at_sd))) = (&subvolume, &snapshot_dir)
            && (sd.starts_with(sv) || sv.starts_with(sd))
        {
            self.sink.error_help(
                *at_sd,
                format!(
                    "`snapshot_dir` ({}) and `subvolume` ({}) must not contain each other",
                    sd.display(),
                    sv.display()
                ),
                "put the snapshots beside the subvolume on the same filesystem, e.g. subvolume = \"/srv/nfs/data\", snapshot_dir = \"/srv/nfs/.snapshots\"",
            );
        }
        let keep = match t.get("keep") {
            Some(v) => self.integer("keep", v, 1, 10_000).map(|n| n as u32),
            None => Some(defaults::BTRFS_KEEP),
        };
        let transport = match t.get("transport") {
            Some(v) => self.argv("transport", v).and_then(|argv| {
                if argv.iter().any(|a| a.contains("{target}")) {
                    Some(argv)
                } else {
                    self.sink.error_help(
                        start(v),
                        "`transport` does not name the standby: no argument contains `{target}`",
                        "write e.g. [\"ssh\", \"-o\", \"BatchMode=yes\", \"root@{target}\"]; `{target}` is replaced by the standby's node name",
                    );
                    None
                }
            }),
            None => Some(defaults::btrfs_transport()),
        };
        Some(BtrfsReplication {
            subvolume: subvolume?.0,
            snapshot_dir: snapshot_dir?.0,
            keep: keep?,
            transport: transport?,
        })
    }
}

/// Every section of the format with its keys, as the checker knows them. `nfsha.toml(5)`
/// is generated from this list, so a key added to the lists above is documented too.
pub fn known_sections() -> Vec<(&'static str, Vec<&'static str>)> {
    let mount = MOUNT_ONLY_KEYS
        .iter()
        .chain(DEFAULT_KEYS)
        .copied()
        .collect();
    vec![
        ("top level", ROOT_KEYS.to_vec()),
        ("[agent]", AGENT_KEYS.to_vec()),
        ("[agent.cluster]", CLUSTER_KEYS.to_vec()),
        ("[defaults]", DEFAULT_KEYS.to_vec()),
        ("[[mount]]", mount),
        ("[[mount]] servers entry", SERVER_REF_KEYS.to_vec()),
        ("[mount.fleet]", FLEET_KEYS.to_vec()),
        ("[server]", SERVER_KEYS.to_vec()),
        ("[server.etcd_tls]", TLS_KEYS.to_vec()),
        ("[server.etcd_auth]", AUTH_KEYS.to_vec()),
        ("[[server.export]]", EXPORT_KEYS.to_vec()),
        ("[server.floating_address]", FLOATING_KEYS.to_vec()),
        ("[server.replication]", REPLICATION_KEYS.to_vec()),
        ("[server.commands]", COMMANDS_KEYS.to_vec()),
        ("[server.commands] entry", COMMAND_KEYS.to_vec()),
    ]
}
