//! Import: turn fstab / autofs mount options into a `[[mount]]`'s `nfs_version` and
//! `options`, with advice on every option that matters.
//!
//! Role: the option policy of `nfsha setup`. Version options move to `nfs_version`;
//! options that only mean something to fstab or automount are dropped (and said so);
//! risky options are kept but warned about (nothing is silently changed); unknown
//! options are errors. No I/O: [`negotiate`] is given the servers' RPC answers for
//! `fstype=nfs` entries without a version.

use nfsha_config::{NfsVersion, Severity, option_advice, option_name};

/// Generic mount(8) options, NFS options from nfs(5), and autofs map options.
const KNOWN: &[&str] = &[
    // mount(8)
    "rw",
    "ro",
    "sync",
    "async",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "mand",
    "nomand",
    "dirsync",
    "iversion",
    "noiversion",
    "context",
    "fscontext",
    "defcontext",
    "rootcontext",
    "silent",
    "loud",
    // nfs(5)
    "soft",
    "softerr",
    "softreval",
    "nosoftreval",
    "hard",
    "timeo",
    "retrans",
    "rsize",
    "wsize",
    "ac",
    "noac",
    "acregmin",
    "acregmax",
    "acdirmin",
    "acdirmax",
    "actimeo",
    "bg",
    "fg",
    "nconnect",
    "max_connect",
    "rdirplus",
    "nordirplus",
    "retry",
    "sec",
    "sharecache",
    "nosharecache",
    "resvport",
    "noresvport",
    "lookupcache",
    "fsc",
    "nofsc",
    "sloppy",
    "proto",
    "udp",
    "tcp",
    "rdma",
    "port",
    "mountport",
    "mountproto",
    "mounthost",
    "mountvers",
    "namlen",
    "nlm",
    "lock",
    "nolock",
    "cto",
    "nocto",
    "acl",
    "noacl",
    "local_lock",
    "write",
    "clientaddr",
    "migration",
    "nomigration",
    "intr",
    "nointr",
    "posix",
    "noposix",
    "vers",
    "nfsvers",
    "minorversion",
    "trunkdiscovery",
    "notrunkdiscovery",
    "xprtsec",
];

/// Options that only fstab, systemd's fstab generator or automount understand.
const FSTAB_ONLY: &[&str] = &[
    "_netdev",
    "nofail",
    "auto",
    "noauto",
    "defaults",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "comment",
    "fstype",
    "strict",
    "nonstrict",
    "nobind",
    "symlink",
    "browse",
    "nobrowse",
];

/// The result of importing one entry's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// `nfs_version` to write.
    pub nfs_version: NfsVersion,
    /// `options` to write.
    pub options: Vec<String>,
    /// Advice: (severity, option, message, help).
    pub advice: Vec<(Severity, String, String, String)>,
    /// A version was given (`vers=`, `nfsvers=`, `minorversion=`).
    pub version_given: bool,
}

fn version(v: &str) -> Option<NfsVersion> {
    match v {
        "3" => Some(NfsVersion::V3),
        "4" | "4.0" => Some(NfsVersion::V4_0),
        "4.1" => Some(NfsVersion::V4_1),
        "4.2" => Some(NfsVersion::V4_2),
        _ => None,
    }
}

/// Import `options` of an entry whose filesystem type is `fstype` (`nfs` or `nfs4`).
pub fn import_options(fstype: &str, options: &[String]) -> Imported {
    let mut out = Imported {
        nfs_version: nfsha_config::defaults::NFS_VERSION,
        options: Vec::new(),
        advice: Vec::new(),
        version_given: false,
    };
    let mut explicit_version = false;
    let mut minor: Option<String> = None;
    for o in options {
        let name = option_name(o);
        let value = o.split_once('=').map(|(_, v)| v);
        match name {
            "vers" | "nfsvers" => match value.and_then(version) {
                Some(v) => {
                    out.nfs_version = v;
                    explicit_version = true;
                }
                None => out.advice.push((
                    Severity::Error,
                    o.clone(),
                    format!("`{o}`: nfsha supports NFS versions 3, 4.0, 4.1 and 4.2"),
                    "use vers=3, 4.0, 4.1 or 4.2".to_string(),
                )),
            },
            "minorversion" => minor = value.map(String::from),
            n if FSTAB_ONLY.contains(&n) || n.starts_with("x-") => {
                if n != "fstype" {
                    out.advice.push((
                        Severity::Warning,
                        o.clone(),
                        format!(
                            "`{o}` is only meaningful to fstab/automount: not copied to nfsha.toml"
                        ),
                        "nothing to do: nfsha-agent.service starts after the network and mounts it"
                            .to_string(),
                    ));
                }
            }
            "bg" | "fg" => out.advice.push((
                Severity::Warning,
                o.clone(),
                format!("`{o}`: not copied to nfsha.toml"),
                "nfsha runs and retries mount.nfs itself".to_string(),
            )),
            n if KNOWN.contains(&n) => {
                if let Some(a) = option_advice(o) {
                    out.advice.push((a.severity, o.clone(), a.message, a.help));
                }
                out.options.push(o.clone());
            }
            _ => out.advice.push((
                Severity::Error,
                o.clone(),
                format!("unknown mount option `{o}`"),
                "fix or remove it (see nfs(5)); nfsha would pass it to mount.nfs".to_string(),
            )),
        }
    }
    if let Some(m) = minor {
        match (out.nfs_version, m.as_str()) {
            (NfsVersion::V4_0 | NfsVersion::V4_1 | NfsVersion::V4_2, "0") => {
                out.nfs_version = NfsVersion::V4_0
            }
            (NfsVersion::V4_0 | NfsVersion::V4_1 | NfsVersion::V4_2, "1") => {
                out.nfs_version = NfsVersion::V4_1
            }
            (NfsVersion::V4_0 | NfsVersion::V4_1 | NfsVersion::V4_2, "2") => {
                out.nfs_version = NfsVersion::V4_2
            }
            _ => {}
        }
        explicit_version = true;
    }
    out.version_given = explicit_version;
    if !explicit_version {
        out.advice.push((
            Severity::Warning,
            fstype.to_string(),
            format!(
                "no NFS version given (fstype {fstype}): nfsha.toml pins nfs_version = \"{}\"",
                out.nfs_version.config_str()
            ),
            "nfsha probes the server with one fixed version; change nfs_version if the server needs another".to_string(),
        ));
    }
    out
}

/// `fstype=nfs` without a version: mount.nfs negotiates (NFSv4 first, then NFSv3),
/// but nfsha probes and mounts with one fixed version. `answers` is what each server
/// answers at the RPC level (`Some(4)`: NFSv4; `Some(3)`: NFSv3 only; `None`: no
/// answer). When the servers that answer speak NFSv3 only — an Azure NetApp Files
/// NFSv3 volume (seed 001) — the version mount.nfs would negotiate is 3, and that is
/// what is written; otherwise the default stays and the advice says why.
pub fn negotiate(imported: &mut Imported, fstype: &str, answers: &[(String, Option<u32>)]) {
    if fstype != "nfs" || imported.version_given {
        return;
    }
    let v4 = answers.iter().any(|(_, a)| *a == Some(4));
    let v3: Vec<&str> = answers
        .iter()
        .filter(|(_, a)| *a == Some(3))
        .map(|(h, _)| h.as_str())
        .collect();
    // No server answered: the generic "no NFS version given" advice stays.
    if v3.is_empty() && !v4 {
        return;
    }
    // Otherwise it is replaced with what was found.
    imported
        .advice
        .retain(|a| !(a.1 == fstype && a.2.starts_with("no NFS version given")));
    let (sev, msg, help) = if !v4 {
        imported.nfs_version = NfsVersion::V3;
        (
            Severity::Warning,
            format!(
                "no NFS version given (fstype nfs): {} answer NFSv3 and not NFSv4, so mount.nfs negotiates NFSv3: nfs_version = \"3\"",
                v3.join(", ")
            ),
            "nfsha probes and mounts with this one version".to_string(),
        )
    } else {
        (
            Severity::Warning,
            format!(
                "no NFS version given (fstype nfs): the servers answer NFSv4: nfs_version = \"{}\"",
                imported.nfs_version.config_str()
            ),
            "mount.nfs would negotiate the highest minor version; change nfs_version if the server needs another".to_string(),
        )
    };
    imported.advice.push((sev, fstype.to_string(), msg, help));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn seed_autofs_options() {
        let i = import_options(
            "nfs4",
            &opts(
                "fstype=nfs4,rw,soft,timeo=10,retrans=2,intr,_netdev,rsize=8192,wsize=8192,nfsvers=4.1,noac,lookupcache=none,actimeo=0",
            ),
        );
        assert_eq!(i.nfs_version, NfsVersion::V4_1);
        assert_eq!(
            i.options,
            opts(
                "rw,soft,timeo=10,retrans=2,intr,rsize=8192,wsize=8192,noac,lookupcache=none,actimeo=0"
            )
        );
        let warned: Vec<&str> = i.advice.iter().map(|a| a.1.as_str()).collect();
        assert_eq!(
            warned,
            [
                "soft",
                "intr",
                "_netdev",
                "noac",
                "lookupcache=none",
                "actimeo=0"
            ]
        );
        assert!(i.advice.iter().all(|a| a.0 == Severity::Warning));
    }

    #[test]
    fn fstype_nfs_negotiates_nfsv3_with_nfsv3_only_servers() {
        let ans = |a: &[Option<u32>]| -> Vec<(String, Option<u32>)> {
            a.iter()
                .enumerate()
                .map(|(i, v)| (format!("h{i}"), *v))
                .collect()
        };
        let mut i = import_options("nfs", &opts("rw,hard"));
        negotiate(&mut i, "nfs", &ans(&[Some(3), None]));
        assert_eq!(i.nfs_version, NfsVersion::V3);
        assert_eq!(i.advice.len(), 1, "{:?}", i.advice);
        assert!(i.advice[0].2.contains("h0 answer NFSv3"), "{:?}", i.advice);
        let mut i = import_options("nfs", &opts("rw"));
        negotiate(&mut i, "nfs", &ans(&[Some(3), Some(4)]));
        assert_eq!(i.nfs_version, NfsVersion::V4_1);
        let mut i = import_options("nfs", &opts("rw"));
        negotiate(&mut i, "nfs", &ans(&[None]));
        assert_eq!(i.nfs_version, NfsVersion::V4_1);
        assert!(i.advice[0].2.contains("no NFS version given"), "unchanged");
        // A version given, or nfs4: nothing is negotiated.
        let mut i = import_options("nfs", &opts("vers=4.2"));
        negotiate(&mut i, "nfs", &ans(&[Some(3)]));
        assert_eq!(i.nfs_version, NfsVersion::V4_2);
        let mut i = import_options("nfs4", &opts("rw"));
        negotiate(&mut i, "nfs4", &ans(&[Some(3)]));
        assert_eq!(i.nfs_version, NfsVersion::V4_1);
    }

    #[test]
    fn unknown_and_bad_versions_are_errors() {
        let i = import_options("nfs", &opts("hard,frobnicate"));
        assert_eq!(
            i.advice.iter().filter(|a| a.0 == Severity::Error).count(),
            1
        );
        let i = import_options("nfs", &opts("vers=2"));
        assert_eq!(i.advice[0].0, Severity::Error);
        let i = import_options("nfs4", &opts("minorversion=2"));
        assert_eq!(i.nfs_version, NfsVersion::V4_2);
        let i = import_options("nfs", &opts("hard"));
        assert!(i.advice[0].2.contains("no NFS version"));
    }
}
