//! The man-page sections clap does not know: FILES, EXIT STATUS, SIGNALS, ENVIRONMENT,
//! EXAMPLES and SEE ALSO of every page, and the `nfsha.toml(5)` reference.
//!
//! Role: content only (`generate_docs` renders it). Every page gets every section: what is
//! not specific to a page comes from the defaults here. The config keys of `nfsha.toml(5)`
//! come from `nfsha_config::known_sections()`, so a new key is listed without editing this
//! file (with a description once one is added to `KEY_DOCS`). No failure modes.

/// Sections of one page beyond clap's; empty slices take the defaults.
#[derive(Debug, Default)]
pub struct Extra {
    pub files: &'static [(&'static str, &'static str)],
    pub exit: &'static [(&'static str, &'static str)],
    pub signals: &'static [(&'static str, &'static str)],
    pub env: &'static [(&'static str, &'static str)],
    /// (what it does, the command line)
    pub examples: &'static [(&'static str, &'static str)],
    /// Pages besides the parent, the children and nfsha.toml(5), e.g. `systemctl(1)`.
    pub see_also: &'static [&'static str],
}

pub const CONFIG_FILE: (&str, &str) = (
    "/etc/nfsha/nfsha.toml",
    "The configuration (see nfsha.toml(5)); another file with --config or NFSHA_CONFIG.",
);

pub const DEFAULT_EXIT: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "2",
        "An error: the message and its causes are printed on standard error.",
    ),
];

pub const DEFAULT_SIGNALS: &[(&str, &str)] = &[(
    "SIGINT, SIGTERM",
    "Not handled: the command ends at once (the default action).",
)];

pub const COMMON_ENV: &[(&str, &str)] = &[
    (
        "NFSHA_CONFIG",
        "The config file, as --config (the option wins). Default /etc/nfsha/nfsha.toml.",
    ),
    (
        "JOURNAL_STREAM",
        "Set by systemd for a service: when it names the device and inode standard error is open on, log lines go to the journal (with their fields) and not to standard error, so the journal holds each line once; otherwise (inherited, stderr redirected) standard error only.",
    ),
    (
        "NO_COLOR",
        "Set and not empty: no ANSI colour in log lines. Without it, colour only when standard error is a terminal.",
    ),
];

const AGENT_FILES: &[(&str, &str)] = &[
    CONFIG_FILE,
    (
        "/run/nfsha/agent.sock",
        "Control socket of the running agent ([agent] control_socket): nfsha status, check, recover and events ask it.",
    ),
    (
        "/run/nfsha/stage",
        "Private staging tmpfs: a new mount is made and verified here, beside the broken one, then moved onto the mountpoint.",
    ),
    (
        "[agent] event_log",
        "The structured event log (JSON lines), if configured, e.g. /var/log/nfsha/events.jsonl.",
    ),
    (
        "/usr/lib/systemd/system/nfsha-agent.service",
        "The packaged unit; local changes go into drop-ins under /etc/systemd/system/nfsha-agent.service.d/ (systemctl edit nfsha-agent), which upgrades keep.",
    ),
];

const SETUP_FILES: &[(&str, &str)] = &[
    CONFIG_FILE,
    (
        "/etc/fstab",
        "NFS lines imported from here are commented out, never deleted.",
    ),
    (
        "/etc/auto.master, /etc/auto.master.d/",
        "autofs maps imported from; the drop-in /etc/auto.master.d/nfsha.autofs and the map /etc/auto.nfsha are written for autofs-mode mounts.",
    ),
    (
        "/etc/systemd/system/nfsha-agent.service.d/50-nfsha.conf",
        "Drop-in for the packaged agent unit, written only when the binary or config path differ from the package's. Without a packaged unit (no package installed) setup writes /etc/systemd/system/nfsha-agent.service instead, and replaces it by the drop-in when run again after the package is installed.",
    ),
    (
        "/etc/systemd/system/UNIT.d/50-nfsha.conf",
        "Ordering drop-in of each dependent service (--service, services = [...]).",
    ),
    (
        "/var/lib/nfsha/setup/manifest.json, /var/lib/nfsha/setup/backups/",
        "What setup changed and the original files: --undo restores from them.",
    ),
];

const SERVER_FILES: &[(&str, &str)] = &[
    CONFIG_FILE,
    (
        "/var/lib/nfs",
        "NFS state directory moved with the exports ([server] state_dir).",
    ),
    (
        "/dev/watchdog",
        "Hardware or softdog watchdog, if [server] watchdog_device is set: the node resets if the controller stops feeding it while leading.",
    ),
];

/// The extra sections of page `name` (`nfsha`, `nfsha-agent`, `nfsha-server-run`, …).
pub fn extra(name: &str) -> Extra {
    match name {
        "nfsha" => Extra {
            files: &[CONFIG_FILE],
            examples: &[
                ("Check the config file:", "nfsha config check"),
                ("See what the running agent sees:", "nfsha status"),
                (
                    "Migrate this host from fstab, looking first:",
                    "nfsha setup --dry-run && nfsha setup --enable",
                ),
            ],
            see_also: &["systemctl(1)", "nfs(5)"],
            ..Extra::default()
        },
        "nfsha-agent" => Extra {
            files: AGENT_FILES,
            exit: &[
                ("0", "Stopped by SIGTERM or SIGINT."),
                (
                    "2",
                    "Could not start (bad config, control socket in use, …) or failed while running.",
                ),
            ],
            signals: &[
                ("SIGTERM, SIGINT", "Stop: the agent exits 0."),
                (
                    "SIGHUP",
                    "Reload the config (systemctl reload nfsha-agent). An invalid config is refused and the old one kept; the error is logged and shown by nfsha status.",
                ),
            ],
            examples: &[
                (
                    "Run it under systemd:",
                    "systemctl enable --now nfsha-agent",
                ),
                (
                    "Run it in the foreground with another config:",
                    "nfsha agent --config ./nfsha.toml",
                ),
                ("Follow its log:", "journalctl -u nfsha-agent -f"),
            ],
            see_also: &[
                "systemctl(1)",
                "journalctl(1)",
                "systemd.service(5)",
                "mount.nfs(8)",
                "nfs(5)",
            ],
            ..Extra::default()
        },
        "nfsha-check" => Extra {
            files: AGENT_FILES,
            exit: &[
                ("0", "OK: every mount healthy."),
                (
                    "1",
                    "WARNING: a mount is unhealthy for less than the critical delay (the agent is recovering it).",
                ),
                (
                    "2",
                    "CRITICAL: a mount stayed unhealthy, or the agent does not answer (nothing recovers the mounts; --local probes them from the check).",
                ),
                ("3", "UNKNOWN: the config cannot be read."),
            ],
            examples: &[
                ("As a Nagios/Icinga check:", "nfsha check"),
                ("For scripts:", "nfsha check --json"),
            ],
            ..Extra::default()
        },
        "nfsha-status" | "nfsha-events" => Extra {
            files: AGENT_FILES,
            examples: &[
                ("The table:", "nfsha status"),
                ("JSON:", "nfsha status --json"),
                ("Events of the last hour:", "nfsha events --since 1h"),
            ],
            ..Extra::default()
        },
        "nfsha-recover" => Extra {
            files: AGENT_FILES,
            exit: &[
                ("0", "The mount was recovered."),
                ("1", "The recovery failed (the report says at which step)."),
                (
                    "2",
                    "The agent could not be asked, or the mountpoint is not configured.",
                ),
            ],
            examples: &[("Recover one mount now:", "nfsha recover /opt/airflow/dags")],
            ..Extra::default()
        },
        "nfsha-config" | "nfsha-config-check" => Extra {
            exit: &[
                ("0", "The config is valid (warnings may have been printed)."),
                (
                    "1",
                    "The config has errors: each is printed with file:line:column and a fix.",
                ),
                ("2", "The file cannot be read."),
            ],
            examples: &[
                ("Check the installed config:", "nfsha config check"),
                (
                    "Check the packaged example:",
                    "nfsha config check --config /usr/share/doc/nfsha/nfsha.toml.example",
                ),
            ],
            ..Extra::default()
        },
        "nfsha-setup" => Extra {
            files: SETUP_FILES,
            exit: &[
                (
                    "0",
                    "Done, or nothing to do (a second run changes nothing).",
                ),
                (
                    "1",
                    "Refused: the host's files have problems (printed); nothing was changed.",
                ),
                ("2", "An error while reading or writing a file."),
            ],
            examples: &[
                (
                    "Show the diff of every file it would write:",
                    "nfsha setup --dry-run",
                ),
                ("Migrate and start the agent:", "nfsha setup --enable"),
                ("Undo it:", "nfsha setup --undo"),
                (
                    "Work on an image:",
                    "nfsha setup --root /srv/image --dry-run",
                ),
            ],
            see_also: &[
                "fstab(5)",
                "auto.master(5)",
                "systemctl(1)",
                "systemd.unit(5)",
            ],
            ..Extra::default()
        },
        "nfsha-server" | "nfsha-server-run" => Extra {
            files: SERVER_FILES,
            exit: &[
                (
                    "0",
                    "Stopped by SIGTERM or SIGINT after tearing down what it brought up.",
                ),
                ("1", "Torn down, but not cleanly (a step failed)."),
                (
                    "2",
                    "Could not start (config without [server], etcd unreachable, …).",
                ),
            ],
            signals: &[(
                "SIGTERM, SIGINT",
                "Stop: a leader tears down in the reverse order of its bring-up before it exits.",
            )],
            examples: &[
                ("Run the controller:", "nfsha server run"),
                ("The cluster:", "nfsha server status"),
                ("Planned switchover:", "nfsha server switchover --to nfs-b"),
            ],
            see_also: &["exportfs(8)", "rpc.nfsd(8)", "exports(5)"],
            ..Extra::default()
        },
        "nfsha-server-status" | "nfsha-server-switchover" | "nfsha-server-promote" => Extra {
            files: &[CONFIG_FILE],
            exit: &[
                (
                    "0",
                    "Done (status: the cluster has a leader; switchover/promote: completed in time).",
                ),
                (
                    "1",
                    "status: no leader; switchover/promote: not completed in time or refused.",
                ),
                ("2", "An error (etcd unreachable, no [server] section)."),
            ],
            examples: &[("The cluster:", "nfsha server status")],
            ..Extra::default()
        },
        "nfsha-replica" | "nfsha-replica-status" | "nfsha-replica-failback" => Extra {
            files: &[
                CONFIG_FILE,
                (
                    "/var/lib/nfsha/replica-*.json",
                    "The active replica and its generation per mount ([agent] state_dir), written before every move.",
                ),
            ],
            exit: &[
                (
                    "0",
                    "Done (status: every replica-volume mount has an active replica).",
                ),
                (
                    "1",
                    "status: a mount has no active replica; failback: the agent's move failed.",
                ),
                (
                    "2",
                    "An error or a refusal: not a configured mount, not one of its replicas, the resync not confirmed with --resynced, the agent cannot be asked.",
                ),
            ],
            examples: &[
                ("The active replica of every mount:", "nfsha replica status"),
                (
                    "Move back to the source once the replication has been reversed:",
                    "nfsha replica failback /misc/crr --to 10.1.13.5:/crr-site1 --resynced",
                ),
            ],
            ..Extra::default()
        },
        n if n.starts_with("nfsha-server-diverged") => Extra {
            files: &[CONFIG_FILE],
            exit: &[
                ("0", "Done."),
                (
                    "2",
                    "An error or a refusal: drop without --yes-delete-these-writes, a name that is not a quarantine, etcd or btrfs failing.",
                ),
            ],
            examples: &[
                (
                    "The quarantined writes of this node:",
                    "nfsha server diverged list",
                ),
                (
                    "Keep them elsewhere as a btrfs stream:",
                    "nfsha server diverged export NAME > /backup/NAME.btrfs",
                ),
            ],
            ..Extra::default()
        },
        n if n.starts_with("nfsha-drill") => Extra {
            files: &[(
                "OUTDIR/accesses.jsonl, report.json, timeline.txt, timeline.svg",
                "What a drill writes (--out).",
            )],
            exit: &[
                ("0", "Done."),
                (
                    "1",
                    "drill run: a path's error window was longer than the limit, or never closed.",
                ),
                ("2", "An error."),
            ],
            examples: &[(
                "Access a mount for 2 minutes while the server is failed over:",
                "nfsha drill run --path /opt/airflow/dags --duration 2m --out /tmp/drill",
            )],
            ..Extra::default()
        },
        _ => Extra::default(),
    }
}

/// The default of a key, from `nfsha_config::defaults` (not copied by hand).
pub fn key_default(section: &str, key: &str) -> Option<String> {
    use nfsha_config::defaults as d;
    let dur = |x: std::time::Duration| humantime::format_duration(x).to_string();
    let mount_like = matches!(section, "[defaults]" | "[[mount]]");
    Some(match key {
        "control_socket" if section == "[agent]" => d::CONTROL_SOCKET.to_string(),
        "listen" if section == "[agent]" => d::AGENT_LISTEN.to_string(),
        "rpc_timeout" => dur(d::RPC_TIMEOUT),
        "server_probe_interval" => dur(d::SERVER_PROBE_INTERVAL),
        "mount_timeout" => dur(d::MOUNT_TIMEOUT),
        "umount_timeout" => dur(d::UMOUNT_TIMEOUT),
        "backoff_initial" => dur(d::BACKOFF_INITIAL),
        "backoff_max" => dur(d::BACKOFF_MAX),
        "nfs_version" if mount_like => format!("\"{}\"", d::NFS_VERSION.config_str()),
        "options" if mount_like => format!("{:?}", d::mount_options()),
        "probe_interval" if mount_like => dur(d::PROBE_INTERVAL),
        "probe_deadline" if mount_like => dur(d::PROBE_DEADLINE),
        "failures_before_recovery" if mount_like => d::FAILURES_BEFORE_RECOVERY.to_string(),
        "failback_after" if mount_like => dur(d::FAILBACK_AFTER),
        "hook_timeout" if mount_like => dur(d::HOOK_TIMEOUT),
        "ttl" if section == "[server]" => dur(d::SERVER_TTL),
        "loop_period" if section == "[server]" => dur(d::SERVER_LOOP_PERIOD),
        "state_dir" if section == "[server]" => d::SERVER_STATE_DIR.to_string(),
        "nfsd_lease" => dur(d::NFSD_LEASE),
        "nfsd_grace" => dur(d::NFSD_GRACE),
        "step_timeout" => dur(d::STEP_TIMEOUT),
        "listen" if section == "[server]" => d::server_listen().to_string(),
        "options" if section == "[[server.export]]" => format!("{:?}", d::export_options()),
        "interval" if section == "[server.replication]" => dur(d::REPLICATION_INTERVAL),
        "max_lag" if section == "[server.replication]" => dur(d::REPLICATION_MAX_LAG),
        "storage" | "commands" if section == "[server]" => return None,
        _ => return None,
    })
}

/// Descriptions of config keys, by section (keys without one are listed anyway).
pub const KEY_DOCS: &[(&str, &str, &str)] = &[
    ("top level", "agent", "Table: the client agent's settings."),
    (
        "top level",
        "defaults",
        "Table: settings every [[mount]] inherits.",
    ),
    (
        "top level",
        "mount",
        "Array of tables: one [[mount]] per NFS mount the agent keeps.",
    ),
    (
        "top level",
        "server",
        "Table: the NFS server controller (nfsha server run).",
    ),
    (
        "[agent]",
        "control_socket",
        "Unix socket of status/check/recover/events.",
    ),
    ("[agent]", "listen", "Address of /metrics and /healthz."),
    (
        "[agent]",
        "event_log",
        "File the structured events are appended to (JSON lines). Default: none.",
    ),
    (
        "[agent]",
        "rpc_timeout",
        "Deadline of one RPC probe of a server.",
    ),
    (
        "[agent]",
        "server_probe_interval",
        "How often servers are RPC-probed.",
    ),
    ("[agent]", "mount_timeout", "Deadline of mount.nfs."),
    ("[agent]", "umount_timeout", "Deadline of an unmount."),
    (
        "[agent]",
        "backoff_initial",
        "First delay after a failed recovery.",
    ),
    (
        "[agent]",
        "backoff_max",
        "Longest delay between recoveries.",
    ),
    (
        "[agent]",
        "cluster",
        "Table: follow the server cluster's primary through etcd.",
    ),
    (
        "[agent.cluster]",
        "etcd_endpoints",
        "etcd endpoints of the server cluster.",
    ),
    (
        "[agent.cluster]",
        "cluster",
        "The cluster's name (as [server] cluster).",
    ),
    ("[defaults]", "nfs_version", "NFS version to mount with."),
    ("[defaults]", "options", "mount.nfs options."),
    (
        "[defaults]",
        "mode",
        "direct (the agent mounts) or autofs (autofs mounts, the agent recovers).",
    ),
    (
        "[defaults]",
        "probe_interval",
        "Time between probes of a mount.",
    ),
    (
        "[defaults]",
        "probe_deadline",
        "A probe not done by then counts as hung.",
    ),
    (
        "[defaults]",
        "failures_before_recovery",
        "Consecutive bad probes that start a recovery.",
    ),
    (
        "[defaults]",
        "failback",
        "never (default) or when-preferred-healthy.",
    ),
    (
        "[defaults]",
        "failback_after",
        "How long the preferred server must be healthy before a failback.",
    ),
    (
        "[defaults]",
        "hooks",
        "Commands (argument vectors) run after a recovery.",
    ),
    ("[defaults]", "hook_timeout", "Deadline of each hook."),
    (
        "[defaults]",
        "services",
        "systemd units that use the mount (setup orders them after the agent).",
    ),
    (
        "[[mount]]",
        "mountpoint",
        "Absolute path of the mount (required).",
    ),
    (
        "[[mount]]",
        "export",
        "The server's export path (required).",
    ),
    (
        "[[mount]]",
        "servers",
        "Hosts, in order of preference, or { host, weight } tables (required).",
    ),
    (
        "[[mount]] servers entry",
        "host",
        "Server host name or address.",
    ),
    ("[[mount]] servers entry", "weight", "Preference weight."),
    (
        "[[mount]] servers entry",
        "export",
        "This replica's own export path (replica volumes).",
    ),
    (
        "[[mount]]",
        "fleet",
        "Table [mount.fleet]: one active replica for the whole fleet, agreed in etcd.",
    ),
    (
        "[mount.fleet]",
        "volume",
        "The volume's name in etcd, the same on every client (required).",
    ),
    (
        "[mount.fleet]",
        "failover_after",
        "Unbroken outage of the active replica, by this agent's clock, before it votes for a failover.",
    ),
    (
        "[mount.fleet]",
        "quorum",
        "majority or any: how many live agents must vote.",
    ),
    (
        "[mount.fleet]",
        "promote_command",
        "Argument vector run once for the fleet before the move (e.g. break the replication).",
    ),
    (
        "[mount.fleet]",
        "promote_timeout",
        "Deadline of the promote command; its process group is killed after.",
    ),
    (
        "[mount.fleet]",
        "resync_check_command",
        "Argument vector `nfsha replica failback` runs first; it must exit 0 (e.g. the storage says the reverse resync is complete).",
    ),
    (
        "[mount.fleet]",
        "resync_check_timeout",
        "Deadline of the resync check; its process group is killed after.",
    ),
    ("[server]", "node", "This node's name (required)."),
    ("[server]", "cluster", "The cluster's name (required)."),
    ("[server]", "etcd_endpoints", "etcd endpoints (required)."),
    ("[server]", "ttl", "Lease time to live."),
    ("[server]", "loop_period", "Controller loop period."),
    (
        "[server]",
        "export",
        "Array of tables: the exports ([[server.export]]).",
    ),
    (
        "[server]",
        "floating_address",
        "Table: the address that moves with the primary.",
    ),
    ("[server]", "state_dir", "NFS state directory."),
    ("[server]", "nfsd_lease", "nfsd lease time."),
    ("[server]", "nfsd_grace", "nfsd grace time."),
    (
        "[server]",
        "step_timeout",
        "Deadline of each bring-up/teardown step.",
    ),
    (
        "[server]",
        "watchdog_device",
        "Watchdog device fed while leading (self-fencing).",
    ),
    (
        "[server]",
        "etcd_tls",
        "Table: TLS to etcd ([server.etcd_tls]).",
    ),
    (
        "[server]",
        "etcd_auth",
        "Table: etcd user and password file ([server.etcd_auth]).",
    ),
    (
        "[server]",
        "safety_margin",
        "Time kept between self-fencing and the earliest lease expiry; loop_period < safety_margin < ttl - 2 x loop_period. Default: ttl / 4, at most 2s.",
    ),
    (
        "[server]",
        "scope",
        "NFSv4 server scope passed to rpc.nfsd -S; the same on every node. Default: the cluster name.",
    ),
    (
        "[server]",
        "storage",
        "\"shared\" (DRBD, SAN: the same filesystem moves, file handles survive) or \"replicated\" (each node its own copy, clients remount) (required).",
    ),
    (
        "[server]",
        "hooks",
        "Argument vectors run on every role change, with NFSHA_ROLE=primary|standby.",
    ),
    (
        "[server]",
        "listen",
        "Address of the status HTTP API, or \"off\".",
    ),
    (
        "[server]",
        "replication",
        "Table: snapshot shipping to standbys (storage = \"replicated\" only).",
    ),
    (
        "[server]",
        "commands",
        "Table: the host commands of the bring-up and teardown steps ([server.commands]).",
    ),
    (
        "[server.etcd_tls]",
        "ca",
        "CA certificate (PEM), absolute path (required).",
    ),
    (
        "[server.etcd_tls]",
        "cert",
        "Client certificate (PEM); with key.",
    ),
    ("[server.etcd_tls]", "key", "Client key (PEM); with cert."),
    (
        "[server.etcd_auth]",
        "user",
        "etcd user (read-write on /nfsha/<cluster>/) (required).",
    ),
    (
        "[server.etcd_auth]",
        "password_file",
        "File holding the password; a trailing newline is ignored (required).",
    ),
    (
        "[[server.export]]",
        "path",
        "Exported directory (required).",
    ),
    (
        "[[server.export]]",
        "fsid",
        "Pinned fsid, the same on every node, not 0 (required).",
    ),
    (
        "[[server.export]]",
        "clients",
        "Client specification, e.g. \"10.0.0.0/24\". Default: \"*\".",
    ),
    (
        "[[server.export]]",
        "options",
        "exportfs options (fsid= is replaced by fsid).",
    ),
    (
        "[server.floating_address]",
        "address",
        "The address moved to the leader (required).",
    ),
    (
        "[server.floating_address]",
        "prefix",
        "Its prefix length (required).",
    ),
    (
        "[server.floating_address]",
        "interface",
        "The interface it is added to (required).",
    ),
    (
        "[server.replication]",
        "engine",
        "\"command\" (ship_command/promote_command) or \"btrfs\" (built-in send/receive). Default: \"command\".",
    ),
    (
        "[server.replication]",
        "interval",
        "How often the leader ships a snapshot to each standby.",
    ),
    (
        "[server.replication]",
        "ship_command",
        "Argument vector shipping one snapshot to one standby (NFSHA_TARGET_NODE, NFSHA_EPOCH, NFSHA_FINAL_SYNC in its environment); command engine.",
    ),
    (
        "[server.replication]",
        "promote_command",
        "Argument vector run on a standby to promote its newest snapshot; command engine.",
    ),
    (
        "[server.replication]",
        "max_lag",
        "A standby whose copy is older than this does not take over (greater than interval + ttl).",
    ),
    (
        "[server.replication]",
        "subvolume",
        "btrfs: the served subvolume, the same path on every node.",
    ),
    (
        "[server.replication]",
        "snapshot_dir",
        "btrfs: directory of snapshots on the same filesystem.",
    ),
    (
        "[server.replication]",
        "keep",
        "btrfs: complete snapshots kept per node. Default: 12.",
    ),
    (
        "[server.replication]",
        "transport",
        "btrfs: argument-vector prefix reaching a standby, {target} replaced by its node name. Default: [\"ssh\", \"-o\", \"BatchMode=yes\", \"root@{target}\"].",
    ),
    (
        "[server.commands]",
        "timeout",
        "Default timeout of each command below (at most step_timeout). Default: step_timeout.",
    ),
    (
        "[server.commands]",
        "storage_up",
        "Commands run first in the storage step (e.g. drbdadm primary, mount): argument vectors, or { argv = [...], timeout = \"30s\" }. Override: nfsha server run --storage-up.",
    ),
    (
        "[server.commands]",
        "storage_down",
        "Commands run last when storage goes down (umount, drbdadm secondary). Override: --storage-down.",
    ),
    (
        "[server.commands]",
        "state_dir_bind",
        "Bind state_dir (on the shared storage) onto this directory, usually /var/lib/nfs, after storage_up; unbound before storage_down (only if bound).",
    ),
    (
        "[server.commands]",
        "state_dir_bind_timeout",
        "Timeout of the bind and of the unbind. Default: step_timeout.",
    ),
    (
        "[server.commands]",
        "before_nfsd",
        "Commands run before rpc.nfsd (rpcbind -w, rpc.mountd, nfsdcld). Override: --before-nfsd.",
    ),
    (
        "[server.commands]",
        "after_nfsd_stop",
        "Commands run after rpc.nfsd 0 (stop mountd). Override: --after-nfsd-stop.",
    ),
    (
        "[server.commands] entry",
        "argv",
        "The program and its arguments, one string each (no shell).",
    ),
    (
        "[server.commands] entry",
        "timeout",
        "This command's timeout; its process group is killed when it passes (at most step_timeout).",
    ),
    (
        "[agent]",
        "state_dir",
        "Root-owned directory of durable state (the active replica of each mount with replica volumes).",
    ),
    (
        "[agent.cluster]",
        "etcd_tls",
        "Table: TLS to etcd, as [server.etcd_tls].",
    ),
    (
        "[agent.cluster]",
        "etcd_auth",
        "Table: etcd user and password file, as [server.etcd_auth] (a read-only role).",
    ),
];
