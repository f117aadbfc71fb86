//! `to_toml()`: render a [`Config`] back to the TOML format.
//!
//! Role: `nfsha setup` writes nfsha.toml with it, so the output is meant for humans:
//! sections in the documented order, every setting explicit (defaults included, so the
//! operator sees what is in effect). Property: parsing the output yields the same
//! `Config`. No failure modes (rendering a validated model cannot fail).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::model::*;

/// A TOML string literal (quoted and escaped).
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}

fn dur(d: Duration) -> String {
    q(&humantime::format_duration(d).to_string())
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

fn argvs(cmds: &[Vec<String>]) -> String {
    format!(
        "[{}]",
        cmds.iter().map(|c| list(c)).collect::<Vec<_>>().join(", ")
    )
}

fn listen(l: Option<SocketAddr>) -> String {
    l.map_or_else(|| q("off"), |a| q(&a.to_string()))
}

/// Render `config` as nfsha.toml text.
pub fn to_toml(config: &Config) -> String {
    let mut o = String::new();
    let a = &config.agent;
    o.push_str("[agent]\n");
    let _ = writeln!(o, "control_socket = {}", qp(&a.control_socket));
    let _ = writeln!(o, "listen = {}", listen(a.listen));
    if let Some(log) = &a.event_log {
        let _ = writeln!(o, "event_log = {}", qp(log));
    }
    let _ = writeln!(o, "rpc_timeout = {}", dur(a.rpc_timeout));
    let _ = writeln!(
        o,
        "server_probe_interval = {}",
        dur(a.server_probe_interval)
    );
    let _ = writeln!(o, "mount_timeout = {}", dur(a.mount_timeout));
    let _ = writeln!(o, "umount_timeout = {}", dur(a.umount_timeout));
    let _ = writeln!(o, "backoff_initial = {}", dur(a.backoff_initial));
    let _ = writeln!(o, "backoff_max = {}", dur(a.backoff_max));
    let _ = writeln!(o, "state_dir = {}", qp(&a.state_dir));
    if let Some(c) = &a.cluster {
        o.push_str("\n[agent.cluster]\n");
        let _ = writeln!(o, "etcd_endpoints = {}", list(&c.etcd_endpoints));
        let _ = writeln!(o, "cluster = {}", q(&c.cluster));
        if let Some(t) = &c.etcd_tls {
            o.push_str("\n[agent.cluster.etcd_tls]\n");
            tls(&mut o, t);
        }
        if let Some(a) = &c.etcd_auth {
            o.push_str("\n[agent.cluster.etcd_auth]\n");
            let _ = writeln!(o, "user = {}", q(&a.user));
            let _ = writeln!(o, "password_file = {}", qp(&a.password_file));
        }
    }
    for m in &config.mounts {
        o.push_str("\n[[mount]]\n");
        let _ = writeln!(o, "mountpoint = {}", qp(&m.mountpoint));
        let _ = writeln!(o, "export = {}", q(&m.export));
        let servers: Vec<String> = m
            .servers
            .iter()
            .map(|s| match (&s.export, s.weight) {
                (None, 0) => q(&s.host),
                (None, w) => format!("{{ host = {}, weight = {w} }}", q(&s.host)),
                (Some(e), 0) => format!("{{ host = {}, export = {} }}", q(&s.host), q(e)),
                (Some(e), w) => format!(
                    "{{ host = {}, export = {}, weight = {w} }}",
                    q(&s.host),
                    q(e)
                ),
            })
            .collect();
        let _ = writeln!(o, "servers = [{}]", servers.join(", "));
        let _ = writeln!(o, "nfs_version = {}", q(m.nfs_version.config_str()));
        let _ = writeln!(o, "options = {}", list(&m.options));
        let mode = match m.mode {
            MountMode::Direct => "direct",
            MountMode::Autofs => "autofs",
        };
        let _ = writeln!(o, "mode = {}", q(mode));
        let _ = writeln!(o, "probe_interval = {}", dur(m.probe_interval));
        let _ = writeln!(o, "probe_deadline = {}", dur(m.probe_deadline));
        let _ = writeln!(
            o,
            "failures_before_recovery = {}",
            m.failures_before_recovery
        );
        let failback = match m.failback {
            FailbackPolicy::Never => "never",
            FailbackPolicy::WhenPreferredHealthy => "when-preferred-healthy",
        };
        let _ = writeln!(o, "failback = {}", q(failback));
        let _ = writeln!(o, "failback_after = {}", dur(m.failback_after));
        if !m.hooks.is_empty() {
            let _ = writeln!(o, "hooks = {}", argvs(&m.hooks));
        }
        let _ = writeln!(o, "hook_timeout = {}", dur(m.hook_timeout));
        if !m.services.is_empty() {
            let _ = writeln!(o, "services = {}", list(&m.services));
        }
        if m.write_probe {
            o.push_str("write_probe = true\n");
        }
        if let Some(f) = &m.fleet {
            o.push_str("\n[mount.fleet]\n");
            let _ = writeln!(o, "volume = {}", q(&f.volume));
            let _ = writeln!(o, "failover_after = {}", dur(f.failover_after));
            let quorum = match f.quorum {
                FleetQuorum::Majority => "majority",
                FleetQuorum::Any => "any",
            };
            let _ = writeln!(o, "quorum = {}", q(quorum));
            if !f.promote_command.is_empty() {
                let _ = writeln!(o, "promote_command = {}", list(&f.promote_command));
            }
            let _ = writeln!(o, "promote_timeout = {}", dur(f.promote_timeout));
            if !f.resync_check_command.is_empty() {
                let _ = writeln!(
                    o,
                    "resync_check_command = {}",
                    list(&f.resync_check_command)
                );
            }
            let _ = writeln!(o, "resync_check_timeout = {}", dur(f.resync_check_timeout));
        }
    }
    if let Some(s) = &config.server {
        render_server(&mut o, s);
    }
    o
}

/// The keys of an `etcd_tls` table.
fn tls(o: &mut String, t: &EtcdTls) {
    let _ = writeln!(o, "ca = {}", qp(&t.ca));
    if let Some(c) = &t.cert {
        let _ = writeln!(o, "cert = {}", qp(c));
    }
    if let Some(k) = &t.key {
        let _ = writeln!(o, "key = {}", qp(k));
    }
}

fn render_server(o: &mut String, s: &ServerConfig) {
    o.push_str("\n[server]\n");
    let _ = writeln!(o, "node = {}", q(&s.node));
    let _ = writeln!(o, "cluster = {}", q(&s.cluster));
    let _ = writeln!(o, "etcd_endpoints = {}", list(&s.etcd_endpoints));
    let _ = writeln!(o, "ttl = {}", dur(s.ttl));
    let _ = writeln!(o, "loop_period = {}", dur(s.loop_period));
    let _ = writeln!(o, "safety_margin = {}", dur(s.safety_margin));
    let _ = writeln!(o, "state_dir = {}", qp(&s.state_dir));
    let _ = writeln!(o, "nfsd_lease = {}", dur(s.nfsd_lease));
    let _ = writeln!(o, "nfsd_grace = {}", dur(s.nfsd_grace));
    let _ = writeln!(o, "scope = {}", q(&s.scope));
    let storage = match s.storage {
        StorageMode::Shared => "shared",
        StorageMode::Replicated => "replicated",
    };
    let _ = writeln!(o, "storage = {}", q(storage));
    let _ = writeln!(o, "step_timeout = {}", dur(s.step_timeout));
    let _ = writeln!(o, "listen = {}", listen(s.listen));
    if let Some(w) = &s.watchdog_device {
        let _ = writeln!(o, "watchdog_device = {}", qp(w));
    }
    if !s.hooks.is_empty() {
        let _ = writeln!(o, "hooks = {}", argvs(&s.hooks));
    }
    if let Some(t) = &s.etcd_tls {
        o.push_str("\n[server.etcd_tls]\n");
        tls(o, t);
    }
    if let Some(a) = &s.etcd_auth {
        o.push_str("\n[server.etcd_auth]\n");
        let _ = writeln!(o, "user = {}", q(&a.user));
        let _ = writeln!(o, "password_file = {}", qp(&a.password_file));
    }
    for e in &s.exports {
        o.push_str("\n[[server.export]]\n");
        let _ = writeln!(o, "path = {}", qp(&e.path));
        let _ = writeln!(o, "fsid = {}", e.fsid);
        let _ = writeln!(o, "clients = {}", q(&e.clients));
        let _ = writeln!(o, "options = {}", list(&e.options));
    }
    if let Some(f) = &s.floating_address {
        o.push_str("\n[server.floating_address]\n");
        let _ = writeln!(o, "address = {}", q(&f.address.to_string()));
        let _ = writeln!(o, "prefix = {}", f.prefix);
        let _ = writeln!(o, "interface = {}", q(&f.interface));
    }
    render_commands(o, &s.commands);
    if let Some(r) = &s.replication {
        o.push_str("\n[server.replication]\n");
        if let Some(b) = &r.btrfs {
            let _ = writeln!(o, "engine = \"btrfs\"");
            let _ = writeln!(o, "subvolume = {}", qp(&b.subvolume));
            let _ = writeln!(o, "snapshot_dir = {}", qp(&b.snapshot_dir));
            let _ = writeln!(o, "keep = {}", b.keep);
            let _ = writeln!(o, "transport = {}", list(&b.transport));
        }
        let _ = writeln!(o, "interval = {}", dur(r.interval));
        if r.btrfs.is_none() {
            let _ = writeln!(o, "ship_command = {}", list(&r.ship_command));
            let _ = writeln!(o, "promote_command = {}", list(&r.promote_command));
        }
        let _ = writeln!(o, "max_lag = {}", dur(r.max_lag));
    }
}

/// `[server.commands]`, every command as `{ argv, timeout }`.
fn render_commands(o: &mut String, c: &ServerCommands) {
    o.push_str("\n[server.commands]\n");
    for (key, cmds) in [
        ("storage_up", &c.storage_up),
        ("storage_down", &c.storage_down),
        ("before_nfsd", &c.before_nfsd),
        ("after_nfsd_stop", &c.after_nfsd_stop),
    ] {
        if cmds.is_empty() {
            continue;
        }
        let items: Vec<String> = cmds
            .iter()
            .map(|h| {
                format!(
                    "{{ argv = {}, timeout = {} }}",
                    list(&h.argv),
                    dur(h.timeout)
                )
            })
            .collect();
        let _ = writeln!(o, "{key} = [{}]", items.join(", "));
    }
    if let Some(b) = &c.state_dir_bind {
        let _ = writeln!(o, "state_dir_bind = {}", qp(b));
    }
    let _ = writeln!(
        o,
        "state_dir_bind_timeout = {}",
        dur(c.state_dir_bind_timeout)
    );
}
