//! Rendering of every file `nfsha setup` writes: nfsha.toml, the agent's unit, the
//! ordering drop-ins of dependent services, and the autofs drop-in and map.
//!
//! Role: pure functions from the config to file contents (golden-tested). No failure
//! modes: inputs are a validated config.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use nfsha_config::{Config, MountMode};

/// The agent's unit file, written by setup only where no package installed one.
pub const AGENT_UNIT: &str = "/etc/systemd/system/nfsha-agent.service";
/// Where the nfsha packages install the agent's unit (.deb: /lib, .rpm: /usr/lib). When
/// one exists, setup never writes [`AGENT_UNIT`] (it would mask the packaged unit and its
/// upgrades) but a drop-in with only what differs, [`AGENT_DROPIN`].
pub const PACKAGED_UNITS: &[&str] = &[
    "/lib/systemd/system/nfsha-agent.service",
    "/usr/lib/systemd/system/nfsha-agent.service",
];
/// setup's drop-in for a packaged agent unit.
pub const AGENT_DROPIN: &str = "/etc/systemd/system/nfsha-agent.service.d/50-nfsha.conf";
/// The binary path of the packaged unit's `ExecStart`.
pub const PACKAGED_BINARY: &str = "/usr/bin/nfsha";
/// The agent's unit name.
pub const AGENT_UNIT_NAME: &str = "nfsha-agent.service";
/// The autofs master drop-in.
pub const AUTOFS_DROPIN: &str = "/etc/auto.master.d/nfsha.autofs";
/// The autofs direct map of nfsha's autofs-mode mounts.
pub const AUTOFS_MAP: &str = "/etc/auto.nfsha";
/// The directory the autofs drop-in needs auto.master to include.
pub const AUTOFS_MASTER_D: &str = "/etc/auto.master.d";
/// Start timeout of dependent services (seed 000, Issue 7).
pub const DEPENDENT_TIMEOUT_START: &str = "300";
/// Stop timeout of dependent services (seed 000, Issue 7).
pub const DEPENDENT_TIMEOUT_STOP: &str = "60";
/// The agent's systemd watchdog period.
pub const AGENT_WATCHDOG_SEC: u32 = 30;

/// Quote a systemd command-line word if it needs it.
fn sd_word(w: &str) -> String {
    if w.is_empty()
        || w.chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '$' | '%' | ';'))
    {
        format!(
            "\"{}\"",
            w.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "$$")
                .replace('%', "%%")
        )
    } else {
        w.to_string()
    }
}

fn exec_start(binary: &Path, config_path: &Path) -> String {
    format!(
        "ExecStart={} agent --config {}",
        sd_word(&binary.to_string_lossy()),
        sd_word(&config_path.to_string_lossy())
    )
}

fn agent_unit_text(header: &str, binary: &Path, config_path: &Path) -> String {
    format!(
        "\
{header}
[Unit]
Description=nfsha agent: keeps NFS mounts working through server failover
Documentation=man:nfsha-agent(1)
Wants=network-online.target
After=network-online.target autofs.service
Before=remote-fs.target

[Service]
Type=notify
NotifyAccess=main
{}
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=1s
WatchdogSec={AGENT_WATCHDOG_SEC}s
TimeoutStopSec=30s

[Install]
WantedBy=multi-user.target remote-fs.target
",
        exec_start(binary, config_path)
    )
}

/// `nfsha-agent.service` as setup writes it where no package installed one.
pub fn agent_unit(binary: &Path, config_path: &Path) -> String {
    agent_unit_text(
        "# Written by `nfsha setup`; `nfsha setup --undo` removes it.",
        binary,
        config_path,
    )
}

/// `nfsha-agent.service` as the packages install it (`nfsha __generate-docs`).
pub fn packaged_agent_unit() -> String {
    agent_unit_text(
        "# Installed by the nfsha package. Change it with a drop-in (systemctl edit \
nfsha-agent.service),\n# not here: an upgrade replaces this file.",
        Path::new(PACKAGED_BINARY),
        Path::new(nfsha_config::defaults::CONFIG_PATH),
    )
}

/// setup's drop-in for the packaged unit: `None` when the packaged unit already runs
/// `binary` with `config_path`, else an `ExecStart` override.
pub fn agent_dropin(binary: &Path, config_path: &Path) -> Option<String> {
    if binary == Path::new(PACKAGED_BINARY)
        && config_path == Path::new(nfsha_config::defaults::CONFIG_PATH)
    {
        return None;
    }
    Some(format!(
        "# Written by `nfsha setup`; `nfsha setup --undo` removes it.\n\
# The packaged nfsha-agent.service, run with this binary and config.\n\
[Service]\nExecStart=\n{}\n",
        exec_start(binary, config_path)
    ))
}

/// Where the ordering drop-in of `service` goes.
pub fn dropin_path(service: &str) -> PathBuf {
    PathBuf::from(format!("/etc/systemd/system/{service}.d/50-nfsha.conf"))
}

/// Drop-in ordering `service` after the agent (with start/stop timeouts for services).
pub fn service_dropin(service: &str, mountpoints: &[&Path]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Written by `nfsha setup`: {service} uses NFS mounts kept by nfsha-agent.service"
    );
    for m in mountpoints {
        let _ = writeln!(o, "#   {}", m.display());
    }
    o.push_str("# so it starts after the agent, and never waits forever on a hung mount.\n");
    o.push_str("[Unit]\nWants=nfsha-agent.service\nAfter=nfsha-agent.service\n");
    if service.ends_with(".service") {
        let _ = write!(
            o,
            "\n[Service]\nTimeoutStartSec={DEPENDENT_TIMEOUT_START}\nTimeoutStopSec={DEPENDENT_TIMEOUT_STOP}\n"
        );
    }
    o
}

/// The autofs master drop-in (`/- /etc/auto.nfsha`).
pub fn autofs_dropin() -> String {
    format!(
        "# Written by `nfsha setup`; `nfsha setup --undo` removes it.\n# Direct map of the autofs-mode mounts of nfsha.toml.\n/- {AUTOFS_MAP}\n"
    )
}

/// autofs host list: `h1,h2(5)` (IPv6 in brackets).
fn autofs_hosts(m: &nfsha_config::MountConfig) -> String {
    m.servers
        .iter()
        .map(|s| {
            let h = if s.host.contains(':') {
                format!("[{}]", s.host)
            } else {
                s.host.clone()
            };
            if s.weight > 0 {
                format!("{h}({})", s.weight)
            } else {
                h
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The autofs direct map of every autofs-mode mount.
pub fn autofs_map(config: &Config, config_path: &Path) -> String {
    let mut o = format!(
        "# Written by `nfsha setup` from {}: edit that file and rerun `nfsha setup`.\n",
        config_path.display()
    );
    for m in config.mounts.iter().filter(|m| m.mode == MountMode::Autofs) {
        let _ = writeln!(
            o,
            "{} -fstype=nfs,{} {}:{}",
            m.mountpoint.display(),
            m.mount_options_string(),
            autofs_hosts(m),
            m.export
        );
    }
    o
}

/// nfsha.toml written from an import.
pub fn config_file(config: &Config, sources: &[String]) -> String {
    let mut o = String::from("# Written by `nfsha setup`, imported from:\n");
    for s in sources {
        let _ = writeln!(o, "#   {s}");
    }
    o.push_str("# Check it with `nfsha config check`; commented example: /usr/share/doc/nfsha/nfsha.toml.example\n\n");
    o.push_str(&nfsha_config::to_toml(config));
    o
}
