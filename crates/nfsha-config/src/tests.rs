//! Tests of parse/validate/to_toml: positions, all-at-once reporting, every rule, defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const AIRFLOW: &str = r#"
[agent]
event_log = "/var/log/nfsha/events.jsonl"

[defaults]
options = ["hard", "timeo=50", "retrans=2"]

[[mount]]
mountpoint = "/airflow/dags"
export = "/srv/airflow/dags"
servers = ["10.101.20.220"]
services = ["airflow-scheduler.service", "airflow-webserver.service"]

[[mount]]
mountpoint = "/airflow/logs"
export = "/srv/airflow/logs"
servers = ["10.101.20.220"]
hooks = [["systemctl", "restart", "airflow-scheduler.service"]]
"#;

const MOUNT: &str = "[[mount]]\nmountpoint = \"/m\"\nexport = \"/e\"\nservers = [\"s\"]\n";

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse_str(text, Some(Path::new("nfsha.toml"))) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.errors().cloned().collect(),
    }
}

/// The single error of `text`, as `line:col: message`.
fn one_error(text: &str) -> Diagnostic {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got:\n{}", render(&errs));
    errs.into_iter().next().unwrap()
}

fn warnings(text: &str) -> Vec<Diagnostic> {
    parse_str_with_warnings(text, None)
        .unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
        .1
}

fn mount_with(extra: &str) -> String {
    format!("{MOUNT}{extra}\n")
}

fn server_with(extra: &str) -> String {
    format!(
        "[server]\nnode = \"n1\"\ncluster = \"c\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nstorage = \"shared\"\n{extra}\n[[server.export]]\npath = \"/srv/a\"\nfsid = 1\n"
    )
}

#[test]
fn airflow_seed_example() {
    let c = parse_str(AIRFLOW, Some(Path::new("/etc/nfsha/nfsha.toml"))).unwrap();
    assert_eq!(
        c.source.as_deref(),
        Some(Path::new("/etc/nfsha/nfsha.toml"))
    );
    assert_eq!(c.mounts.len(), 2);
    let dags = &c.mounts[0];
    assert_eq!(dags.mountpoint, PathBuf::from("/airflow/dags"));
    assert_eq!(dags.export, "/srv/airflow/dags");
    assert_eq!(dags.servers, vec![ServerRef::new("10.101.20.220")]);
    assert_eq!(dags.options, ["hard", "timeo=50", "retrans=2"]);
    assert_eq!(dags.nfs_version, NfsVersion::V4_1);
    assert_eq!(
        dags.services,
        ["airflow-scheduler.service", "airflow-webserver.service"]
    );
    let logs = &c.mounts[1];
    assert_eq!(logs.mountpoint, PathBuf::from("/airflow/logs"));
    assert_eq!(
        logs.hooks,
        vec![vec![
            "systemctl".to_string(),
            "restart".into(),
            "airflow-scheduler.service".into()
        ]]
    );
    assert_eq!(
        c.agent.event_log,
        Some(PathBuf::from("/var/log/nfsha/events.jsonl"))
    );
    assert!(c.server.is_none());
}

#[test]
fn defaults_applied() {
    let c = parse_str(MOUNT, None).unwrap();
    assert_eq!(c.agent, AgentSettings::default());
    assert_eq!(
        c.agent.control_socket,
        PathBuf::from("/run/nfsha/agent.sock")
    );
    assert_eq!(c.agent.listen, Some("127.0.0.1:9848".parse().unwrap()));
    assert_eq!(c.agent.rpc_timeout, Duration::from_secs(1));
    assert_eq!(c.agent.server_probe_interval, Duration::from_secs(2));
    assert_eq!(c.agent.mount_timeout, Duration::from_secs(15));
    assert_eq!(c.agent.umount_timeout, Duration::from_secs(5));
    assert_eq!(c.agent.backoff_initial, Duration::from_secs(1));
    assert_eq!(c.agent.backoff_max, Duration::from_secs(30));
    let m = &c.mounts[0];
    assert_eq!(*m, MountConfig::new("/m", "/e", vec![ServerRef::new("s")]));
    assert_eq!(m.options, ["hard"]);
    assert_eq!(m.mode, MountMode::Direct);
    assert_eq!(m.probe_interval, Duration::from_secs(1));
    assert_eq!(m.probe_deadline, Duration::from_secs(2));
    assert_eq!(m.failures_before_recovery, 2);
    assert_eq!(m.failback, FailbackPolicy::Never);
    assert_eq!(m.failback_after, Duration::from_secs(60));
    assert_eq!(m.hook_timeout, Duration::from_secs(30));
    assert_eq!(m.mount_options_string(), "vers=4.1,hard");
}

#[test]
fn defaults_section_applies_and_mount_overrides() {
    let text = format!(
        "[defaults]\nnfs_version = \"3\"\nmode = \"autofs\"\nprobe_interval = \"500ms\"\nprobe_deadline = \"3s\"\nfailures_before_recovery = 4\nfailback = \"when-preferred-healthy\"\nfailback_after = \"2m\"\nhook_timeout = \"10s\"\noptions = \"hard,timeo=600\"\nservices = [\"a.service\"]\nhooks = [[\"/bin/true\"]]\n{MOUNT}\n[[mount]]\nmountpoint = \"/n\"\nexport = \"/e2\"\nservers = [{{ host = \"b\", weight = 5 }}, \"c\"]\nnfs_version = 4.2\noptions = []\nmode = \"direct\"\n"
    );
    let c = parse_str(&text, None).unwrap();
    let m = &c.mounts[0];
    assert_eq!(m.nfs_version, NfsVersion::V3);
    assert_eq!(m.mode, MountMode::Autofs);
    assert_eq!(m.probe_interval, Duration::from_millis(500));
    assert_eq!(m.probe_deadline, Duration::from_secs(3));
    assert_eq!(m.failures_before_recovery, 4);
    assert_eq!(m.failback, FailbackPolicy::WhenPreferredHealthy);
    assert_eq!(m.failback_after, Duration::from_secs(120));
    assert_eq!(m.hook_timeout, Duration::from_secs(10));
    assert_eq!(m.options, ["hard", "timeo=600"]);
    assert_eq!(m.services, ["a.service"]);
    assert_eq!(m.hooks, vec![vec!["/bin/true".to_string()]]);
    let n = &c.mounts[1];
    assert_eq!(n.nfs_version, NfsVersion::V4_2);
    assert_eq!(n.mode, MountMode::Direct);
    assert!(n.options.is_empty());
    assert_eq!(
        n.servers,
        vec![
            ServerRef {
                host: "b".into(),
                export: None,
                weight: 5
            },
            ServerRef::new("c")
        ]
    );
    assert_eq!(n.probe_interval, Duration::from_millis(500));
}

#[test]
fn unknown_key_position_and_suggestion() {
    let text = "[[mount]]\nmountpoint = \"/m\"\nexport = \"/e\"\nservers = [\"s\"]\n    probe_intervall = \"1s\"\n";
    let d = one_error(text);
    assert_eq!((d.line, d.column), (5, 5));
    assert_eq!(d.message, "unknown key `probe_intervall` in [[mount]]");
    assert_eq!(d.help.as_deref(), Some("did you mean `probe_interval`?"));
    assert_eq!(
        d.to_string(),
        "nfsha.toml:5:5: error: unknown key `probe_intervall` in [[mount]]\n  help: did you mean `probe_interval`?"
    );
}

#[test]
fn unknown_keys_everywhere() {
    let cases = [
        ("frobnicate = 1\n", "the top level"),
        ("[agent]\nlisen = \"off\"\n", "[agent]"),
        (
            "[agent.cluster]\netcd_endpoints = [\"e\"]\ncluster = \"c\"\nclustr = \"x\"\n",
            "[agent.cluster]",
        ),
        ("[defaults]\nmod = \"direct\"\n", "[defaults]"),
    ];
    for (text, section) in cases {
        let d = one_error(text);
        assert!(d.message.contains(section), "{d}");
        assert!(d.message.starts_with("unknown key"), "{d}");
    }
    let d = one_error("[defaults]\nmountpoint = \"/x\"\n");
    assert!(d.help.unwrap().contains("belongs in each [[mount]]"));
    let d = one_error(&mount_with("servers2 = 1"));
    assert_eq!(d.line, 5);
    let d = one_error(&server_with("nod = \"x\""));
    assert_eq!(d.help.as_deref(), Some("did you mean `node`?"));
}

#[test]
fn all_errors_reported_at_once() {
    let text = r#"[agent]
rpc_timeout = "1 fortnight"

[[mount]]
mountpoint = "airflow/dags"
export = "/srv/airflow/dags"
servers = []
probe_intervall = "1s"
mode = "autofss"
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 5, "{}", render(&errs));
    let at: Vec<(usize, usize)> = errs.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(at, [(2, 15), (5, 14), (7, 11), (8, 1), (9, 8)]);
    assert!(errs[0].message.contains("invalid duration"));
    assert!(errs[1].message.contains("relative"));
    assert!(errs[2].message.contains("`servers` is empty"));
    assert!(errs[3].message.contains("unknown key"));
    assert!(errs[4].message.contains("invalid `mode` value `autofss`"));
    assert_eq!(
        errs[4].help.as_deref(),
        Some("did you mean \"autofs\"? (expected one of \"direct\", \"autofs\")")
    );
}

#[test]
fn syntax_error_is_alone_and_located() {
    let e = parse_str("[agent]\nlisten = \"off\nx = 1\n", None).unwrap_err();
    let d = e.diagnostics();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].line, 2);
    assert!(d[0].message.starts_with("invalid TOML"), "{}", d[0]);
}

#[test]
fn load_reports_read_errors_and_file_name() {
    let e = load(Path::new("/nonexistent/nfsha.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(e.to_string(), "Cannot read /nonexistent/nfsha.toml");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[agent]\nlisten = 5\n").unwrap();
    let e = load(&p).unwrap_err();
    assert_eq!(e.diagnostics()[0].file, p);
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2:10: error:", p.display()))
    );
    std::fs::write(&p, MOUNT).unwrap();
    assert_eq!(load(&p).unwrap().source.as_deref(), Some(p.as_path()));
}

#[test]
fn wrong_types() {
    for (extra, needle) in [
        (
            "probe_interval = 5",
            "must be a duration string, found integer",
        ),
        ("failures_before_recovery = \"2\"", "must be an integer"),
        (
            "options = 5",
            "array of strings or a comma-separated string",
        ),
        (
            "hooks = \"systemctl restart x\"",
            "array of argument vectors",
        ),
        (
            "hooks = [\"systemctl restart x\"]",
            "argument vectors, found a string",
        ),
        ("hooks = [[1]]", "list of strings"),
        ("services = \"a.service\"", "array of strings"),
        ("mode = 1", "invalid `mode`"),
    ] {
        let d = one_error(&mount_with(extra));
        assert!(d.message.contains(needle), "{extra}: {d}");
        assert_eq!(d.line, 5, "{extra}");
    }
    let d = one_error("[agent]\nlisten = 9848\n");
    assert!(d.message.contains("must be a string, found integer"), "{d}");
    let d = one_error("[mount]\nmountpoint = \"/m\"\n");
    assert!(d.help.unwrap().contains("[[mount]]"));
    let d = one_error("agent = 5\n");
    assert!(d.message.contains("must be a table"));
    let d = one_error(
        MOUNT
            .replace("servers = [\"s\"]", "servers = \"s\"")
            .as_str(),
    );
    assert!(d.message.contains("must be an array"));
    assert_eq!(d.help.as_deref(), Some("write servers = [\"s\"]"));
}

#[test]
fn durations() {
    for (v, needle) in [
        ("\"0s\"", "must be greater than zero"),
        ("\"-1s\"", "invalid duration"),
        ("\"5 parsecs\"", "invalid duration"),
        ("\"\"", "invalid duration"),
    ] {
        let d = one_error(&mount_with(&format!("probe_interval = {v}")));
        assert!(d.message.contains(needle), "{v}: {d}");
        assert_eq!((d.line, d.column), (5, 18));
    }
    let d = one_error(&mount_with("probe_interval = \"-1s\""));
    assert_eq!(d.help.as_deref(), Some("durations cannot be negative"));
    let d = one_error(&mount_with("probe_deadline = \"2m\""));
    assert!(d.message.contains("too long"), "{d}");
    assert!(parse_str(&mount_with("probe_deadline = \"60s\""), None).is_ok());
    let d = one_error("[agent]\nbackoff_initial = \"1m\"\nbackoff_max = \"10s\"\n");
    assert!(d.message.contains("smaller than `backoff_initial`"), "{d}");
    assert_eq!(d.line, 3);
}

#[test]
fn enums_and_integers() {
    let d = one_error(&mount_with("nfs_version = \"5\""));
    assert!(d.help.unwrap().contains("\"4.1\""));
    let d = one_error(&mount_with("failback = \"always\""));
    assert!(d.message.contains("failback"));
    for bad in ["0", "-1", "101"] {
        let d = one_error(&mount_with(&format!("failures_before_recovery = {bad}")));
        assert!(d.message.contains("between 1 and 100"), "{d}");
    }
    for (v, expected) in [
        ("\"3\"", NfsVersion::V3),
        ("\"4\"", NfsVersion::V4_0),
        ("\"4.0\"", NfsVersion::V4_0),
        ("\"4.1\"", NfsVersion::V4_1),
        ("\"4.2\"", NfsVersion::V4_2),
        ("3", NfsVersion::V3),
    ] {
        let c = parse_str(&mount_with(&format!("nfs_version = {v}")), None).unwrap();
        assert_eq!(c.mounts[0].nfs_version, expected, "{v}");
    }
}

#[test]
fn mountpoint_rules() {
    let d = one_error(&MOUNT.replace("\"/m\"", "\"m\""));
    assert!(d.message.contains("relative"));
    assert_eq!((d.line, d.column), (2, 14));
    for bad in ["/a/../b", "/a/./b", "/a//b", "/a/", "/"] {
        let d = one_error(&MOUNT.replace("\"/m\"", &format!("\"{bad}\"")));
        assert_eq!(d.line, 2, "{bad}: {d}");
    }
    let two = |a: &str, b: &str| {
        format!(
            "{}\n{}",
            MOUNT.replace("\"/m\"", &format!("\"{a}\"")),
            MOUNT.replace("\"/m\"", &format!("\"{b}\""))
        )
    };
    let d = one_error(&two("/x", "/x"));
    assert!(d.message.contains("duplicate mountpoint"));
    assert_eq!(d.line, 7);
    assert!(d.help.unwrap().contains("line 2"));
    let d = one_error(&two("/x", "/x/y"));
    assert!(d.message.contains("`/x/y` is nested inside `/x`"), "{d}");
    let d = one_error(&two("/x/y", "/x"));
    assert!(d.message.contains("`/x/y` is nested inside `/x`"), "{d}");
    assert!(parse_str(&two("/x", "/xy"), None).is_ok());
    // Siblings that sort between a path and its descendants are not nested.
    assert!(parse_str(&two("/x/y", "/x-y"), None).is_ok());
    assert!(parse_str(&two("/x b", "/x/b"), None).is_ok());
}

/// Audit hole (issue 16, item 4): the nesting check compared every mount with every
/// other. 10,000 mounts, every one with an error-free neighbour structure, then one
/// nested at the end and one parent of existing mounts: both still found.
#[test]
fn ten_thousand_mounts_validate_with_nesting_found_in_both_directions() {
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&MOUNT.replace("\"/m\"", &format!("\"/data/d{i}/m\"")));
    }
    let cfg = parse_str(&text, None).expect("10,000 distinct mounts are valid");
    assert_eq!(cfg.mounts.len(), 10_000);
    let nested = format!("{text}{}", MOUNT.replace("\"/m\"", "\"/data/d5000/m/x\""));
    let d = one_error(&nested);
    assert!(
        d.message
            .contains("`/data/d5000/m/x` is nested inside `/data/d5000/m`"),
        "{d}"
    );
    let outer = format!("{text}{}", MOUNT.replace("\"/m\"", "\"/data/d7\""));
    let d = one_error(&outer);
    assert!(
        d.message
            .contains("`/data/d7/m` is nested inside `/data/d7`"),
        "{d}"
    );
}

/// Audit hole (issue 16, item 4): huge durations used to pass `config check` and panic
/// later in deadline arithmetic (`loop_period` in check itself, `server_probe_interval` at
/// start, `umount_timeout` in `nfsha recover`). Every duration key is capped.
#[test]
fn huge_durations_are_refused_with_their_position_not_a_panic() {
    for key in [
        "server_probe_interval",
        "umount_timeout",
        "backoff_max",
        "rpc_timeout",
    ] {
        let d = one_error(&format!("[agent]\n{key} = \"1000000000y\"\n"));
        assert!(d.message.contains("too long"), "{key}: {d}");
        assert_eq!((d.line, d.column), (2, key.len() + 4), "{key}");
    }
    let d = one_error(&server_with("loop_period = \"1000000000y\""));
    assert!(d.message.contains("too long"), "{d}");
    let d = one_error(&mount_with("probe_interval = \"366days\""));
    assert!(d.message.contains("too long"), "{d}");
    assert!(d.help.unwrap().contains("at most 1year"));
    assert!(parse_str(&mount_with("probe_interval = \"365days\""), None).is_ok());
}

#[test]
fn export_and_server_rules() {
    let d = one_error(&MOUNT.replace("\"/e\"", "\"10.0.0.1:/e\""));
    assert!(d.message.contains("includes a server"));
    let d = one_error(&MOUNT.replace("\"/e\"", "\"srv/e\""));
    assert!(d.message.contains("not an absolute path"));
    let d = one_error(&MOUNT.replace("[\"s\"]", "[]"));
    assert!(d.message.contains("empty"));
    let d = one_error(&MOUNT.replace("[\"s\"]", "[\"s\", \"s\"]"));
    assert!(d.message.contains("listed twice"));
    let d = one_error(&MOUNT.replace("[\"s\"]", "[\"h:/srv/x\"]"));
    assert!(d.help.unwrap().contains("export = \"/srv/x\""));
    let d = one_error(&MOUNT.replace("[\"s\"]", "[\"a,b\"]"));
    assert!(d.message.contains("not a host"));
    let errs = errors(&MOUNT.replace("[\"s\"]", "[{ hots = \"a\" }]"));
    assert_eq!(errs.len(), 2, "{}", render(&errs));
    assert!(errs[0].message.contains("missing required key `host`"));
    assert!(errs[1].message.contains("unknown key `hots`"));
    let d = one_error(&MOUNT.replace("[\"s\"]", "[{ host = \"a\", weight = -1 }]"));
    assert!(d.message.contains("weight"));
    let d = one_error(&MOUNT.replace("servers = [\"s\"]\n", ""));
    assert!(d.message.contains("missing required key `servers`"));
    assert_eq!((d.line, d.column), (1, 1));
}

#[test]
fn options_rules() {
    for o in ["vers=4.1", "nfsvers=3"] {
        let d = one_error(&mount_with(&format!("options = [\"hard\", \"{o}\"]")));
        assert!(d.message.contains("sets the NFS version"), "{d}");
        assert!(d.help.as_ref().unwrap().contains("nfs_version"));
        assert_eq!((d.line, d.column), (5, 20));
    }
    // Comma-separated string: the column points into the string.
    let d = one_error(&mount_with("options = \"hard,vers=3\""));
    assert_eq!((d.line, d.column), (5, 17));
    let w = warnings(&mount_with(
        "options = [\"soft\", \"intr\", \"noac\", \"actimeo=0\", \"lookupcache=none\", \"softerr\"]",
    ));
    assert_eq!(w.len(), 6, "{}", render(&w));
    assert!(
        w.iter()
            .all(|d| d.severity == Severity::Warning && d.line == 5)
    );
    assert!(w[0].message.contains("silently corrupt"));
    assert!(w[1].message.contains("2.6.25"));
    // Warnings come along with errors too.
    let e = parse_str(&mount_with("options = [\"soft\"]\nmode = \"x\""), None).unwrap_err();
    assert_eq!(e.diagnostics().len(), 2);
    assert_eq!(e.errors().count(), 1);
    // Defaults' warnings are reported once, at [defaults].
    let w = warnings(
        &format!("[defaults]\noptions = [\"soft\"]\n{MOUNT}{MOUNT}").replace(
            "\"/m\"\nexport = \"/e\"\nservers = [\"s\"]\n[[mount]]\nmountpoint = \"/m\"",
            "\"/m\"\nexport = \"/e\"\nservers = [\"s\"]\n[[mount]]\nmountpoint = \"/m2\"",
        ),
    );
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, 2);
}

#[test]
fn hooks_and_services_rules() {
    let d = one_error(&mount_with("hooks = [[]]"));
    assert!(d.message.contains("empty command"), "{d}");
    let d = one_error(&mount_with("hooks = [[\"\"]]"));
    assert!(d.message.contains("empty program"), "{d}");
    let d = one_error(&mount_with("services = [\"airflow-scheduler\"]"));
    assert_eq!(d.help.as_deref(), Some("write `airflow-scheduler.service`"));
    let d = one_error(&mount_with("services = [\"a b.service\"]"));
    assert!(d.message.contains("not a systemd unit name"));
}

#[test]
fn agent_rules() {
    let c = parse_str(
        "[agent]\nlisten = \"off\"\ncontrol_socket = \"/run/x.sock\"\n[agent.cluster]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\ncluster = \"airflow-nfs\"\n",
        None,
    )
    .unwrap();
    assert_eq!(c.agent.listen, None);
    assert_eq!(c.agent.control_socket, PathBuf::from("/run/x.sock"));
    assert_eq!(c.agent.cluster.unwrap().cluster, "airflow-nfs");
    let d = one_error("[agent]\nlisten = \"localhost\"\n");
    assert!(d.message.contains("not a socket address"));
    let d = one_error("[agent]\ncontrol_socket = \"run/x.sock\"\n");
    assert!(d.message.contains("absolute path"));
    let d = one_error("[agent.cluster]\netcd_endpoints = []\ncluster = \"c\"\n");
    assert!(d.message.contains("`etcd_endpoints` is empty"));
    let d = one_error("[agent.cluster]\netcd_endpoints = [\"e\"]\n");
    assert!(d.message.contains("missing required key `cluster`"));
}

#[test]
fn agent_cluster_takes_etcd_tls_and_auth_like_the_server() {
    let c = parse_str(
        r#"
[agent.cluster]
etcd_endpoints = ["https://127.0.0.1:2379"]
cluster = "airflow-nfs"

[agent.cluster.etcd_tls]
ca = "/etc/nfsha/etcd-ca.pem"
cert = "/etc/nfsha/agent.pem"
key = "/etc/nfsha/agent-key.pem"

[agent.cluster.etcd_auth]
user = "nfsha-agent"
password_file = "/etc/nfsha/etcd-password"
"#,
        None,
    )
    .unwrap();
    let cl = c.agent.cluster.unwrap();
    assert_eq!(
        cl.etcd_tls,
        Some(EtcdTls {
            ca: "/etc/nfsha/etcd-ca.pem".into(),
            cert: Some("/etc/nfsha/agent.pem".into()),
            key: Some("/etc/nfsha/agent-key.pem".into()),
        })
    );
    assert_eq!(
        cl.etcd_auth,
        Some(EtcdAuth {
            user: "nfsha-agent".into(),
            password_file: "/etc/nfsha/etcd-password".into(),
        })
    );
    let base = "[agent.cluster]\netcd_endpoints = [\"e\"]\ncluster = \"c\"\n";
    for (extra, needle, line) in [
        (
            "[agent.cluster.etcd_tls]\ncert = \"/c\"\nkey = \"/k\"\n",
            "missing required key `ca`",
            4,
        ),
        (
            "[agent.cluster.etcd_tls]\nca = \"/ca\"\ncert = \"/c\"\n",
            "[agent.cluster.etcd_tls] needs both `cert` and `key`",
            4,
        ),
        (
            "[agent.cluster.etcd_tls]\nca = \"ca.pem\"\n",
            "absolute path",
            5,
        ),
        (
            "[agent.cluster.etcd_auth]\nuser = \"u\"\n",
            "missing required key `password_file`",
            4,
        ),
        (
            "[agent.cluster.etcd_auth]\nuser = \"u\"\npassword_file = \"/p\"\npassword = \"x\"\n",
            "password",
            7,
        ),
    ] {
        let d = one_error(&format!("{base}{extra}"));
        assert!(d.message.contains(needle), "{extra}: {d}");
        assert_eq!(d.line, line, "{extra}: {d}");
    }
}

#[test]
fn server_section() {
    let full = r#"
[server]
node = "nfs-1"
cluster = "airflow-nfs"
etcd_endpoints = ["http://127.0.0.1:2379"]
ttl = "10s"
loop_period = "1s"
safety_margin = "5s"
state_dir = "/var/lib/nfs"
nfsd_lease = "10s"
nfsd_grace = "10s"
scope = "airflow-nfs"
storage = "replicated"
step_timeout = "20s"
listen = "127.0.0.1:8008"
watchdog_device = "/dev/watchdog"
hooks = [["/usr/local/bin/on-role-change"]]
[server.etcd_tls]
ca = "/etc/nfsha/ca.pem"
cert = "/etc/nfsha/c.pem"
key = "/etc/nfsha/c.key"
[server.etcd_auth]
user = "nfsha"
password_file = "/etc/nfsha/etcd.pw"
[[server.export]]
path = "/srv/airflow/dags"
fsid = 1
clients = "*"
options = ["rw", "sync", "no_subtree_check"]
[[server.export]]
path = "/srv/airflow/logs"
fsid = 2
[server.floating_address]
address = "10.101.20.220"
prefix = 24
interface = "eth0"
[server.replication]
interval = "5m"
ship_command = ["/usr/local/bin/ship-snapshot"]
promote_command = ["/usr/local/bin/promote-snapshot"]
max_lag = "10m"
"#;
    let c = parse_str(full, None).unwrap();
    let s = c.server.as_ref().unwrap();
    assert_eq!(s.exports.len(), 2);
    assert_eq!(s.exports[1].options, ["rw", "sync", "no_subtree_check"]);
    assert_eq!(s.exports[1].clients, "*");
    assert_eq!(s.floating_address.as_ref().unwrap().prefix, 24);
    assert_eq!(s.storage, StorageMode::Replicated);
    assert_eq!(
        s.replication.as_ref().unwrap().max_lag,
        Duration::from_secs(600)
    );
    assert_eq!(
        s.etcd_tls.as_ref().unwrap().key,
        Some(PathBuf::from("/etc/nfsha/c.key"))
    );
    assert_eq!(parse_str(&to_toml(&c), None).unwrap(), c);

    // Defaults.
    let c = parse_str(&server_with(""), None).unwrap();
    let s = c.server.unwrap();
    assert_eq!(s.ttl, Duration::from_secs(10));
    assert_eq!(s.loop_period, Duration::from_secs(1));
    assert_eq!(
        s.safety_margin,
        Duration::from_secs(2),
        "ttl / 4 capped to 2 s"
    );
    assert_eq!(s.scope, "c");
    assert_eq!(s.state_dir, PathBuf::from("/var/lib/nfs"));
    assert_eq!(s.listen, Some("127.0.0.1:8008".parse().unwrap()));
    assert_eq!(s.step_timeout, Duration::from_secs(20));
    let s = parse_str(&server_with("ttl = \"4s\""), None)
        .unwrap()
        .server
        .unwrap();
    assert_eq!(
        s.safety_margin,
        Duration::from_millis(1500),
        "ttl / 4 = loop_period is invalid: the middle of (loop, ttl - 2 loops)"
    );
    let s = parse_str(&server_with("ttl = \"5s\""), None)
        .unwrap()
        .server
        .unwrap();
    assert_eq!(s.safety_margin, Duration::from_millis(1250), "ttl / 4");
}

#[test]
fn the_default_safety_margin_is_ttl_over_4_capped_and_always_valid() {
    use crate::defaults::safety_margin;
    let ms = Duration::from_millis;
    assert_eq!(safety_margin(ms(10_000), ms(1000)), ms(2000));
    assert_eq!(safety_margin(ms(60_000), ms(1000)), ms(2000));
    assert_eq!(safety_margin(ms(5000), ms(1000)), ms(1250));
    assert_eq!(safety_margin(ms(3000), ms(500)), ms(750));
    assert_eq!(safety_margin(ms(4000), ms(1000)), ms(1500));
    // Every (ttl, loop_period) that passes the loop rule gets a default that passes
    // the margin rules, and the config with it parses.
    for ttl in (1000..=20_000).step_by(250) {
        for lp in (100..=7000).step_by(100) {
            let (ttl, lp) = (ms(ttl), ms(lp));
            if lp * 3 >= ttl {
                continue;
            }
            let m = safety_margin(ttl, lp);
            assert!(
                m > lp && m < ttl - lp * 2,
                "ttl {ttl:?} loop {lp:?}: margin {m:?}"
            );
        }
    }
    for (ttl, lp) in [("4s", "1s"), ("3s", "900ms"), ("2s", "600ms")] {
        let text = server_with(&format!("ttl = \"{ttl}\"\nloop_period = \"{lp}\""));
        parse_str(&text, None).unwrap_or_else(|e| panic!("{ttl}/{lp}: {e}"));
    }
}

#[test]
fn server_rules() {
    for (extra, needle) in [
        ("loop_period = \"4s\"", "less than a third of `ttl`"),
        ("ttl = \"3s\"", "less than a third of `ttl`"),
        ("safety_margin = \"10s\"", "must be less than `ttl`"),
        ("safety_margin = \"1s\"", "greater than `loop_period`"),
        (
            "safety_margin = \"8500ms\"",
            "less than `ttl` - 2 × `loop_period` (8s)",
        ),
        ("listen = \"nope\"", "not a socket address"),
        ("storage = \"nas\"", "invalid `storage`"),
        ("state_dir = \"var/lib/nfs\"", "absolute path"),
        ("hooks = [[]]", "empty command"),
        (
            "[server.floating_address]\naddress = \"10.0.0.1/24\"\nprefix = 24\ninterface = \"eth0\"",
            "not an IP address",
        ),
        (
            "[server.floating_address]\naddress = \"10.0.0.1\"\nprefix = 33\ninterface = \"eth0\"",
            "between 1 and 32",
        ),
        (
            "[server.floating_address]\naddress = \"10.0.0.1\"\nprefix = 24\ninterface = \"a-very-long-interface-name\"",
            "not a network interface",
        ),
        (
            "[server.etcd_tls]\nca = \"/ca\"\ncert = \"/c\"",
            "both `cert` and `key`",
        ),
        (
            "[server.etcd_auth]\nuser = \"u\"",
            "missing required key `password_file`",
        ),
        (
            "[server.replication]\nship_command = [\"/s\"]\npromote_command = []",
            "empty command",
        ),
        (
            "[server.replication]\nship_command = [\"/s\"]\npromote_command = [\"/p\"]\ninterval = \"10m\"\nmax_lag = \"5m\"",
            "greater than `interval`",
        ),
        (
            "[server.replication]\nship_command = [\"/s\"]\npromote_command = [\"/p\"]\ninterval = \"1m\"\nmax_lag = \"65s\"",
            "greater than `interval` + `ttl` (1m 10s)",
        ),
    ] {
        let text = server_with(extra).replace(
            "storage = \"shared\"\nstorage = \"nas\"",
            "storage = \"nas\"",
        );
        let text = if extra.contains("[server.replication]") {
            text.replace("storage = \"shared\"", "storage = \"replicated\"")
        } else if extra.starts_with("storage") {
            text.replace("storage = \"shared\"\n", "")
        } else {
            text
        };
        let d = one_error(&text);
        assert!(d.message.contains(needle), "{extra}: {d}");
    }
    // The relation error points at the key that was written.
    let d = one_error(&server_with("loop_period = \"4s\""));
    assert_eq!((d.line, d.column), (6, 15));
    // Replication with shared storage.
    let d = one_error(&server_with(
        "[server.replication]\nship_command = [\"/s\"]\npromote_command = [\"/p\"]",
    ));
    assert!(d.message.contains("`storage` is \"shared\""), "{d}");
    // Duplicate fsid and path, fsid 0, no exports.
    let text = format!(
        "{}[[server.export]]\npath = \"/srv/b\"\nfsid = 1\n[[server.export]]\npath = \"/srv/a\"\nfsid = 0\n",
        server_with("")
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{}", render(&errs));
    assert!(errs[0].message.contains("duplicate fsid 1"));
    assert!(errs[0].help.as_ref().unwrap().contains("line 9"));
    assert!(errs[1].message.contains("listed twice"));
    assert!(errs[2].message.contains("reserved"));
    let text = server_with("").replace("[[server.export]]\npath = \"/srv/a\"\nfsid = 1\n", "");
    assert!(one_error(&text).message.contains("no [[server.export]]"));
    let errs = errors("[server]\n");
    assert_eq!(errs.len(), 5, "{}", render(&errs));
}

fn roundtrip(c: &Config) {
    let text = to_toml(c);
    let back = parse_str(&text, c.source.as_deref())
        .unwrap_or_else(|e| panic!("to_toml output does not parse:\n{text}\n{e}"));
    assert_eq!(&back, c, "{text}");
}

#[test]
fn to_toml_roundtrips() {
    roundtrip(&Config::empty());
    roundtrip(&parse_str(AIRFLOW, None).unwrap());
    let mut c = parse_str(AIRFLOW, Some(Path::new("/etc/nfsha/nfsha.toml"))).unwrap();
    c.agent.listen = None;
    c.agent.cluster = Some(ClusterSource {
        etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
        cluster: "we\"ird \\ name".into(),
        etcd_tls: Some(EtcdTls {
            ca: "/etc/nfsha/etcd-ca.pem".into(),
            cert: Some("/etc/nfsha/agent.pem".into()),
            key: Some("/etc/nfsha/agent-key.pem".into()),
        }),
        etcd_auth: Some(EtcdAuth {
            user: "nfsha-agent".into(),
            password_file: "/etc/nfsha/etcd-password".into(),
        }),
    });
    c.mounts[0].servers.push(ServerRef {
        host: "nfs-2".into(),
        export: None,
        weight: 7,
    });
    c.mounts[0].probe_interval = Duration::from_millis(1500);
    c.mounts[1].mode = MountMode::Autofs;
    c.mounts[1].failback = FailbackPolicy::WhenPreferredHealthy;
    c.mounts[1].nfs_version = NfsVersion::V4_0;
    roundtrip(&c);
}

mod roundtrip_prop {
    use super::*;
    use proptest::prelude::*;

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (1u64..3600).prop_map(Duration::from_secs),
            (1u64..60_000).prop_map(Duration::from_millis),
        ]
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,10}"
    }

    fn mount(i: usize) -> impl Strategy<Value = MountConfig> {
        (
            "[a-z0-9_ .\"é\\\\-]{1,12}",
            prop::collection::btree_set(word(), 1..4),
            0u32..5,
            prop::collection::vec("[a-z_]{1,8}(=[0-9]{1,3})?", 0..4),
            (duration(), 1u64..60, 1u32..100, duration(), duration()),
            (any::<bool>(), any::<bool>(), 0usize..4),
            prop::collection::vec(prop::collection::vec("[ -~]{0,8}", 0..3), 0..3),
            prop::collection::vec(word(), 0..3),
        )
            .prop_map(
                move |(export, hosts, weight, options, durs, flags, hook_args, services)| {
                    let mut m = MountConfig::new(
                        format!("/mnt/m{i}"),
                        format!("/{export}"),
                        hosts
                            .into_iter()
                            .enumerate()
                            .map(|(j, h)| ServerRef {
                                host: h,
                                export: None,
                                weight: if j == 0 { weight } else { 0 },
                            })
                            .collect(),
                    );
                    m.options = options
                        .into_iter()
                        .filter(|o| option_advice(o).is_none())
                        .collect();
                    m.probe_interval = durs.0;
                    m.probe_deadline = Duration::from_secs(durs.1);
                    m.failures_before_recovery = durs.2;
                    m.failback_after = durs.3;
                    m.hook_timeout = durs.4;
                    m.mode = if flags.0 {
                        MountMode::Autofs
                    } else {
                        MountMode::Direct
                    };
                    m.failback = if flags.1 {
                        FailbackPolicy::WhenPreferredHealthy
                    } else {
                        FailbackPolicy::Never
                    };
                    m.nfs_version = [
                        NfsVersion::V3,
                        NfsVersion::V4_0,
                        NfsVersion::V4_1,
                        NfsVersion::V4_2,
                    ][flags.2];
                    m.hooks = hook_args
                        .into_iter()
                        .map(|args| {
                            std::iter::once("/bin/hook".to_string())
                                .chain(args)
                                .collect()
                        })
                        .collect();
                    m.services = services
                        .into_iter()
                        .map(|s| format!("{s}.service"))
                        .collect();
                    m
                },
            )
    }

    proptest! {
        #[test]
        fn parse_to_toml_roundtrip(
            m0 in mount(0),
            m1 in mount(1),
            n in 0usize..3,
            rpc in duration(),
            listen in any::<Option<u16>>(),
        ) {
            let mut c = Config::empty();
            c.mounts = [m0, m1].into_iter().take(n).collect();
            c.agent.rpc_timeout = rpc;
            c.agent.listen = listen.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)));
            let text = to_toml(&c);
            let back = parse_str(&text, None);
            prop_assert!(back.is_ok(), "{}\n{}", text, back.unwrap_err());
            prop_assert_eq!(back.unwrap(), c);
        }
    }
}

#[test]
fn replica_servers_have_their_own_export_paths() {
    // Seed 001: a source volume and its cross-zone replica, each with its own path.
    let text = "[[mount]]\nmountpoint = \"/misc/crr\"\nexport = \"/crr-site1\"\nservers = [\"10.1.13.5\", { host = \"10.2.13.5\", export = \"/crr-dest1\", weight = 1 }]\nnfs_version = \"3\"\nwrite_probe = true\n";
    let c = parse_str(text, None).unwrap();
    let m = &c.mounts[0];
    assert!(m.has_replicas());
    assert!(m.write_probe);
    let r = m.replicas();
    assert_eq!(r[0].to_string(), "10.1.13.5:/crr-site1");
    assert_eq!(r[1].to_string(), "10.2.13.5:/crr-dest1");
    assert_eq!(m.servers[1].weight, 1);
    assert_eq!(c.agent.state_dir, Path::new("/var/lib/nfsha"));
    roundtrip(&c);
    // One export for all (a floating address, shared storage): not replicas.
    let c = parse_str(
        &MOUNT.replace("[\"s\"]", "[\"s\", { host = \"t\", export = \"/e\" }]"),
        None,
    )
    .unwrap();
    assert!(!c.mounts[0].has_replicas());
    // The same host with two exports is two replicas.
    let c = parse_str(
        &MOUNT.replace("[\"s\"]", "[\"s\", { host = \"s\", export = \"/f\" }]"),
        None,
    )
    .unwrap();
    assert_eq!(c.mounts[0].replicas().len(), 2);
    let c = parse_str("[agent]\nstate_dir = \"/tmp/x\"\n", None).unwrap();
    assert_eq!(c.agent.state_dir, Path::new("/tmp/x"));
    roundtrip(&c);
    assert!(
        one_error("[agent]\nstate_dir = \"rel\"\n")
            .message
            .contains("absolute")
    );
}

#[test]
fn replicas_parse_as_they_print() {
    for s in ["10.2.13.5:/crr-dest1", "[fd00::1]:/x", "nfs-2:/a/b"] {
        assert_eq!(s.parse::<Replica>().unwrap().to_string(), s);
    }
    let r: Replica = "[fd00::1]:/x".parse().unwrap();
    assert_eq!((r.host.as_str(), r.export.as_str()), ("fd00::1", "/x"));
    for bad in ["host", "host:rel", ":/x", "[fd00::1/x"] {
        assert!(bad.parse::<Replica>().is_err(), "{bad}");
    }
}

#[test]
fn a_duplicate_replica_is_an_error_at_its_position() {
    // A plain string means the mount's export, so `s` and `{ host = "s", export = "/e" }`
    // are the same replica.
    let text = MOUNT.replace(
        "[\"s\"]",
        "[\n  \"s\",\n  { host = \"t\", export = \"/f\" },\n  { host = \"s\", export = \"/e\" },\n]",
    );
    let d = one_error(&text);
    assert_eq!(d.message, "replica `s:/e` is listed twice");
    assert_eq!((d.line, d.column), (7, 3), "{d:?}");
    assert!(d.help.as_ref().unwrap().contains("line 5"), "{d:?}");
    let text = MOUNT.replace(
        "[\"s\"]",
        "[{ host = \"t\", export = \"/f\" }, { host = \"t\", export = \"/f\", weight = 2 }]",
    );
    let d = one_error(&text);
    assert_eq!(d.message, "replica `t:/f` is listed twice");
    assert_eq!((d.line, d.column), (4, 43), "{d:?}");
    let d = one_error(&MOUNT.replace("[\"s\"]", "[{ host = \"t\", export = \"f\" }]"));
    assert!(d.message.contains("not an absolute path"), "{d:?}");
    let d = one_error(&MOUNT.replace("[\"s\"]", "[\"s\", \"t:/f\"]"));
    assert!(
        d.help
            .unwrap()
            .contains("{ host = \"t\", export = \"/f\" }")
    );
}

#[test]
fn replicas_with_different_paths_refuse_autofs_mode_and_failback() {
    let replicas = MOUNT.replace("[\"s\"]", "[\"s\", { host = \"t\", export = \"/f\" }]");
    let d = one_error(&format!("{replicas}mode = \"autofs\"\n"));
    assert!(d.message.contains("cannot use mode = \"autofs\""), "{d:?}");
    assert_eq!(d.line, 5);
    let d = one_error(&format!(
        "{replicas}failback = \"when-preferred-healthy\"\n"
    ));
    assert!(d.message.contains("failback"), "{d:?}");
    // The same settings are fine for one export path.
    parse_str(
        &format!("{MOUNT}mode = \"autofs\"\nfailback = \"when-preferred-healthy\"\n"),
        None,
    )
    .unwrap();
    let d = one_error(&format!("{MOUNT}write_probe = \"yes\"\n"));
    assert!(d.message.contains("write_probe"), "{d:?}");
}

#[test]
fn packaged_example_config_is_valid() {
    let text = include_str!("../../../packaging/nfsha.toml.example");
    let (c, warnings) = parse_str_with_warnings(text, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings.is_empty(), "{}", render(&warnings));
    assert_eq!(c.mounts.len(), 2);
    assert_eq!(c.mounts[1].options, ["hard", "timeo=50", "retrans=2"]);
    assert_eq!(c.mounts[0].servers[0].host, "10.101.20.220");
    // The commented replica-volume example is valid once uncommented.
    let (head, tail) = text.split_at(text.find("# [[mount]]").unwrap());
    let uncommented: String = tail
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let c = parse_str(&format!("{head}{uncommented}"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.mounts.len(), 3);
    assert!(c.mounts[2].has_replicas() && c.mounts[2].write_probe);
}

/// `[server]` in replicated mode with the btrfs engine; `repl` is the body of
/// `[server.replication]` after `engine = "btrfs"`.
fn btrfs_server(repl: &str) -> String {
    format!(
        "[server]\nnode = \"n1\"\ncluster = \"c\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nstorage = \"replicated\"\n[[server.export]]\npath = \"/srv/nfs/data/airflow\"\nfsid = 1\n[server.replication]\nengine = \"btrfs\"\n{repl}\n"
    )
}

#[test]
fn btrfs_engine_keys_defaults_and_round_trip() {
    let c = parse_str(
        &btrfs_server(
            "subvolume = \"/srv/nfs/data\"\nsnapshot_dir = \"/srv/nfs/.snapshots\"\ninterval = \"10s\"\nkeep = 5\ntransport = [\"ssh\", \"-i\", \"/etc/nfsha/id\", \"nfsha@{target}\"]",
        ),
        None,
    )
    .unwrap();
    let r = c.server.as_ref().unwrap().replication.as_ref().unwrap();
    assert_eq!(r.engine, ReplicationEngine::Btrfs);
    let b = r.btrfs.as_ref().unwrap();
    assert_eq!(b.subvolume, PathBuf::from("/srv/nfs/data"));
    assert_eq!(b.keep, 5);
    assert_eq!(b.transport[3], "nfsha@{target}");
    assert_eq!(r.interval, Duration::from_secs(10));
    assert!(r.ship_command.is_empty() && r.promote_command.is_empty());
    assert_eq!(parse_str(&to_toml(&c), None).unwrap(), c);
    // Defaults: seconds, not minutes.
    let c = parse_str(
        &btrfs_server("subvolume = \"/srv/nfs/data\"\nsnapshot_dir = \"/srv/nfs/.snapshots\""),
        None,
    )
    .unwrap();
    let r = c.server.unwrap().replication.unwrap();
    assert_eq!(
        (r.interval, r.max_lag),
        (Duration::from_secs(15), Duration::from_secs(60))
    );
    let b = r.btrfs.unwrap();
    assert_eq!(b.keep, 12);
    assert_eq!(b.transport, ["ssh", "-o", "BatchMode=yes", "root@{target}"]);
    // The command engine is still the default and has no btrfs settings.
    let c = parse_str(
        &server_with("[server.replication]\nship_command = [\"/s\"]\npromote_command = [\"/p\"]")
            .replace("storage = \"shared\"", "storage = \"replicated\""),
        None,
    )
    .unwrap();
    let r = c.server.unwrap().replication.unwrap();
    assert_eq!((r.engine, r.btrfs), (ReplicationEngine::Command, None));
}

#[test]
fn btrfs_engine_errors_point_at_the_key_and_say_how_to_fix_it() {
    let ok = "subvolume = \"/srv/nfs/data\"\nsnapshot_dir = \"/srv/nfs/.snapshots\"";
    for (repl, needle, line) in [
        (
            "snapshot_dir = \"/srv/nfs/.snapshots\"",
            "missing required key `subvolume`",
            9,
        ),
        (
            "subvolume = \"/srv/nfs/data\"\nsnapshot_dir = \"/srv/nfs/data/.snapshots\"",
            "must not contain each other",
            12,
        ),
        (
            "subvolume = \"/srv/nfs/data\"\nsnapshot_dir = \"/srv/my snaps\"",
            "which the transport would have to quote",
            12,
        ),
        (
            "subvolume = \"srv/nfs/data\"\nsnapshot_dir = \"/s\"",
            "must be an absolute path",
            11,
        ),
        (
            &format!("{ok}\ntransport = [\"ssh\", \"nfs-2\"]"),
            "does not name the standby",
            13,
        ),
        (
            &format!("{ok}\ntransport = \"ssh {{target}}\""),
            "must be argument vectors",
            13,
        ),
        (&format!("{ok}\nkeep = 0"), "between 1 and 10000", 13),
        (
            &format!("{ok}\nship_command = [\"/s\"]"),
            "not used with engine = \"btrfs\"",
            13,
        ),
        (&format!("{ok}\nengine2 = 1"), "unknown key", 13),
    ] {
        let d = one_error(&btrfs_server(repl));
        assert!(d.message.contains(needle), "{repl}: {d}");
        assert_eq!(d.line, line, "{repl}: {d}");
        assert!(
            d.help.is_some()
                || needle.contains("missing")
                || needle.contains("between")
                || needle.contains("unknown"),
            "{d}"
        );
    }
    // An export outside the replicated subvolume would not be replicated.
    let d = one_error(&btrfs_server(ok).replace("/srv/nfs/data/airflow", "/srv/other"));
    assert!(
        d.message.contains("not inside the replicated subvolume"),
        "{d}"
    );
    // A btrfs key with the command engine.
    let d = one_error(
        &server_with(
            "[server.replication]\nship_command = [\"/s\"]\npromote_command = [\"/p\"]\nkeep = 3",
        )
        .replace("storage = \"shared\"", "storage = \"replicated\""),
    );
    assert!(d.message.contains("key of the btrfs engine"), "{d}");
    assert!(d.help.unwrap().contains("engine = \"btrfs\""));
    let d = one_error(&btrfs_server(ok).replace("engine = \"btrfs\"", "engine = \"zfs\""));
    assert!(d.message.contains("zfs"), "{d}");
}

const FLEET: &str = "[agent.cluster]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\ncluster = \"lab\"\n\n[[mount]]\nmountpoint = \"/misc/crr\"\nexport = \"/crr-site1\"\nservers = [\"10.1.13.5\", { host = \"10.2.13.5\", export = \"/crr-dest1\" }]\n\n[mount.fleet]\nvolume = \"crr\"\n";

/// Issue 11 item 3: `[mount.fleet]` with its defaults, every key, and the round trip.
#[test]
fn fleet_volume_keys_defaults_and_round_trip() {
    let cfg = parse_str(FLEET, None).expect("fleet config");
    let f = cfg.mounts[0].fleet.clone().expect("[mount.fleet]");
    assert_eq!(f.volume, "crr");
    assert_eq!(f.failover_after, Duration::from_secs(300));
    assert_eq!(f.quorum, FleetQuorum::Majority);
    assert!(f.promote_command.is_empty());
    assert_eq!(f.promote_timeout, Duration::from_secs(120));
    assert!(f.resync_check_command.is_empty());
    assert_eq!(f.resync_check_timeout, Duration::from_secs(60));
    let full = format!(
        "{FLEET}failover_after = \"20s\"\nquorum = \"any\"\npromote_command = [\"/usr/local/bin/break-replication\", \"--volume\", \"crr dest\"]\npromote_timeout = \"30s\"\nresync_check_command = [\"/usr/local/bin/mirror-state\", \"--is\", \"mirrored\"]\nresync_check_timeout = \"15s\"\n"
    );
    let cfg = parse_str(&full, None).expect("full fleet config");
    let f = cfg.mounts[0].fleet.clone().unwrap();
    assert_eq!(f.quorum, FleetQuorum::Any);
    assert_eq!(
        f.promote_command[2], "crr dest",
        "an argument with a space stays one"
    );
    assert_eq!(f.resync_check_command[2], "mirrored");
    assert_eq!(f.resync_check_timeout, Duration::from_secs(15));
    let again = parse_str(&to_toml(&cfg), None).expect("rendered config parses");
    assert_eq!(again.mounts, cfg.mounts);
}

#[test]
fn fleet_volume_errors_point_at_the_key_and_say_how_to_fix_it() {
    // No [agent.cluster].
    let no_cluster = FLEET.split_once("\n\n").unwrap().1;
    let d = one_error(no_cluster);
    assert!(d.message.contains("needs [agent.cluster]"), "{d}");
    assert_eq!(d.line, 6, "at [mount.fleet]");
    // One replica only.
    let d = one_error(&FLEET.replace(", { host = \"10.2.13.5\", export = \"/crr-dest1\" }", ""));
    assert!(d.message.contains("at least two replicas"), "{d}");
    // Bad values, each at its position.
    let d = one_error(&format!("{FLEET}quorum = \"all\"\n"));
    assert!(d.message.contains("invalid `quorum`"), "{d}");
    assert_eq!(d.line, 12);
    let d = one_error(&FLEET.replace("volume = \"crr\"", "volume = \"a/b\""));
    assert!(d.message.contains("not a valid name"), "{d}");
    let d = one_error(&format!("{FLEET}promote_command = []\n"));
    assert!(d.message.contains("empty command"), "{d}");
    let d = one_error(&format!("{FLEET}resync_check_command = \"test -e /x\"\n"));
    assert!(d.message.contains("resync_check_command"), "{d}");
    assert_eq!(d.line, 12);
    let d = one_error(&format!("{FLEET}failover_afer = \"1m\"\n"));
    assert!(d.message.contains("failover_afer"), "{d}");
    // Two mounts, one volume.
    let second = "\n[[mount]]\nmountpoint = \"/misc/b\"\nexport = \"/b1\"\nservers = [\"10.1.13.5\", { host = \"10.2.13.5\", export = \"/b2\" }]\n\n[mount.fleet]\nvolume = \"crr\"\n";
    let d = one_error(&format!("{FLEET}{second}"));
    assert!(
        d.message.contains("volume `crr` is used by two mounts"),
        "{d}"
    );
    assert!(d.help.unwrap().contains("line 10"));
}

#[test]
fn server_commands_are_argument_vectors_with_their_own_timeouts() {
    let text = server_with(
        "step_timeout = \"30s\"\nstate_dir = \"/srv/a/nfs-state\"\n[server.commands]\ntimeout = \"10s\"\nstorage_up = [[\"drbdadm\", \"primary\", \"r0\"], { argv = [\"mount\", \"-o\", \"noatime,user_xattr\", \"/dev/drbd0\", \"/srv/a b\"], timeout = \"25s\" }]\nstorage_down = [[\"umount\", \"/srv/a b\"]]\nstate_dir_bind = \"/var/lib/nfs\"\nbefore_nfsd = [[\"rpcbind\", \"-w\"], [\"rpc.mountd\"]]\nafter_nfsd_stop = [{ argv = [\"pkill\", \"-x\", \"rpc.mountd\"], timeout = \"2s\" }]",
    );
    let c = parse_str(&text, None).unwrap_or_else(|e| panic!("{e}"));
    let s = c.server.as_ref().unwrap();
    let k = &s.commands;
    assert_eq!(k.storage_up.len(), 2);
    assert_eq!(k.storage_up[0].argv, ["drbdadm", "primary", "r0"]);
    assert_eq!(k.storage_up[0].timeout, Duration::from_secs(10));
    // An argument with a space stays one argument.
    assert_eq!(k.storage_up[1].argv[4], "/srv/a b");
    assert_eq!(k.storage_up[1].timeout, Duration::from_secs(25));
    assert_eq!(k.storage_down[0].timeout, Duration::from_secs(10));
    assert_eq!(k.before_nfsd[1].argv, ["rpc.mountd"]);
    assert_eq!(k.after_nfsd_stop[0].timeout, Duration::from_secs(2));
    assert_eq!(k.state_dir_bind.as_deref(), Some(Path::new("/var/lib/nfs")));
    // Defaults to step_timeout.
    assert_eq!(k.state_dir_bind_timeout, Duration::from_secs(30));
    roundtrip(&c);
    // Without the table: nothing to run.
    let c = parse_str(&server_with(""), None).unwrap();
    let k = &c.server.as_ref().unwrap().commands;
    assert!(k.storage_up.is_empty() && k.before_nfsd.is_empty() && k.state_dir_bind.is_none());
    assert_eq!(k.state_dir_bind_timeout, Duration::from_secs(20));
    roundtrip(&c);
}

#[test]
fn server_command_errors_have_positions() {
    for (extra, needle, pos) in [
        (
            "[server.commands]\nbefore_nfsd = [\"rpcbind -w\"]",
            "must be argument vectors, found a string",
            (7, 16),
        ),
        (
            "[server.commands]\nbefore_nfsd = \"rpcbind\"",
            "`before_nfsd` must be an array of commands",
            (7, 15),
        ),
        (
            "[server.commands]\nstorage_up = [{ argv = [\"mount\"], timeout = \"1m\" }]",
            "`timeout` (1m) is longer than `step_timeout` (20s)",
            (7, 45),
        ),
        (
            "[server.commands]\nstorage_up = [{ argv = [\"mount\"], timout = \"1s\" }]",
            "unknown key `timout` in a `storage_up` entry",
            (7, 35),
        ),
        (
            "[server.commands]\nstorage_up = [{ timeout = \"1s\" }]",
            "missing required key `argv`",
            (7, 15),
        ),
        (
            "[server.commands]\nstorage_down = [[]]",
            "empty command in `storage_down`",
            (7, 17),
        ),
        (
            "[server.commands]\ntimeout = \"0s\"",
            "`timeout` must be greater than zero",
            (7, 11),
        ),
        (
            "[server.commands]\nstate_dir_bind = \"var/lib/nfs\"",
            "must be an absolute path",
            (7, 18),
        ),
        (
            "[server.commands]\nstate_dir_bind = \"/var/lib/nfs\"",
            "overlap",
            (7, 18),
        ),
        (
            "[server.commands]\nstate_dir_bind_timeout = \"21s\"",
            "`state_dir_bind_timeout` (21s) is longer than `step_timeout`",
            (7, 26),
        ),
        (
            "[server.commands]\nbefore_nfds = []",
            "did you mean `before_nfsd`?",
            (7, 1),
        ),
    ] {
        let d = one_error(&server_with(extra));
        let shown = format!("{d} / {:?}", d.help);
        assert!(shown.contains(needle), "{extra}: {shown}");
        assert_eq!((d.line, d.column), pos, "{extra}: {d}");
    }
    // Every error at once.
    let errs = errors(&server_with(
        "[server.commands]\nstorage_up = [[\"a b\", 1]]\nafter_nfsd_stop = [{ argv = \"x\" }]",
    ));
    assert_eq!(errs.len(), 2, "{}", render(&errs));
    // A bind in replicated mode is only a warning.
    let w = warnings(
        &server_with(
            "state_dir = \"/srv/st\"\n[server.commands]\nstate_dir_bind = \"/var/lib/nfs\"",
        )
        .replace("\"shared\"", "\"replicated\""),
    );
    assert_eq!(w.len(), 1, "{}", render(&w));
    assert!(w[0].message.contains("replicated"));
}

#[test]
fn packaged_server_examples_are_valid() {
    let text = include_str!("../../../packaging/nfsha-server.toml.example");
    let (c, warnings) = parse_str_with_warnings(text, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings.is_empty(), "{}", render(&warnings));
    let s = c.server.expect("[server]");
    assert_eq!(s.storage, StorageMode::Shared);
    assert_eq!(s.commands.storage_up.len(), 2);
    assert_eq!(s.commands.storage_up[1].timeout, Duration::from_secs(25));
    assert_eq!(s.commands.storage_down[1].timeout, Duration::from_secs(20));
    assert_eq!(
        s.commands.state_dir_bind.as_deref(),
        Some(Path::new("/var/lib/nfs"))
    );
    assert_eq!(s.etcd_endpoints.len(), 3);
    assert_eq!(s.exports.len(), 2);
    let text = include_str!("../../../packaging/nfsha-server-replicated.toml.example");
    let (c, warnings) = parse_str_with_warnings(text, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings.is_empty(), "{}", render(&warnings));
    let s = c.server.expect("[server]");
    assert_eq!(s.storage, StorageMode::Replicated);
    assert!(s.replication.unwrap().btrfs.is_some());
}
