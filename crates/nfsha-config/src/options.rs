//! NFS mount option policy: which options are wrong or risky under nfsha, and why.
//!
//! Role: shared by config validation and `nfsha setup`'s fstab/autofs import, so both
//! give the same advice. Pure functions; no failure modes beyond returning advice.

use crate::diag::Severity;

/// Advice about one mount option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionAdvice {
    /// Error (the config is rejected) or warning.
    pub severity: Severity,
    /// What is wrong with the option.
    pub message: String,
    /// What to do instead.
    pub help: String,
}

/// The option name (`timeo` for `timeo=50`).
pub fn option_name(option: &str) -> &str {
    option.split_once('=').map_or(option, |(k, _)| k)
}

/// True for options that set the protocol version (`vers=`, `nfsvers=`).
pub fn is_version_option(option: &str) -> bool {
    matches!(option_name(option.trim()), "vers" | "nfsvers")
}

/// Advice for one option as written in a `[[mount]]` (or an imported fstab/autofs line).
///
/// Returns `None` for options nfsha has nothing to say about.
pub fn option_advice(option: &str) -> Option<OptionAdvice> {
    let option = option.trim();
    let name = option_name(option);
    let value = option.split_once('=').map(|(_, v)| v);
    let warn = |message: String, help: &str| {
        Some(OptionAdvice {
            severity: Severity::Warning,
            message,
            help: help.to_string(),
        })
    };
    match (name, value) {
        ("vers" | "nfsvers", _) => Some(OptionAdvice {
            severity: Severity::Error,
            message: format!("`{option}` sets the NFS version inside options"),
            help: format!(
                "use `nfs_version = \"{}\"` instead (nfsha also probes with that version)",
                value.unwrap_or("4.1")
            ),
        }),
        ("soft" | "softerr", None) => warn(
            format!(
                "`{option}` makes NFS calls fail after timeo/retrans: nfs(5) warns this can silently corrupt data"
            ),
            "use `hard`: nfsha detects a dead server and recovers hard mounts itself",
        ),
        ("intr" | "nointr", None) => warn(
            format!("`{option}` is ignored by Linux since 2.6.25"),
            "remove it (a hung hard mount can always be killed with SIGKILL)",
        ),
        ("noac", None) => warn(
            "`noac` disables attribute caching: every stat goes to the server (slow, more load)"
                .to_string(),
            "remove it: nfsha does not need it to detect a dead server",
        ),
        ("actimeo", Some("0")) => warn(
            "`actimeo=0` disables attribute caching: every stat goes to the server (slow, more load)"
                .to_string(),
            "remove it: nfsha does not need it to detect a dead server",
        ),
        ("lookupcache", Some("none" | "n")) => warn(
            format!("`{option}` disables the lookup cache: every path walk goes to the server"),
            "remove it: nfsha does not need it to detect a dead server",
        ),
        ("bg", None) => warn(
            "`bg` makes mount.nfs retry in the background and report success early".to_string(),
            "remove it: nfsha runs and retries mount.nfs itself",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice() {
        assert_eq!(option_advice("hard"), None);
        assert_eq!(option_advice("timeo=50"), None);
        assert_eq!(option_advice("actimeo=3"), None);
        assert_eq!(
            option_advice("nfsvers=4.1").map(|a| a.severity),
            Some(Severity::Error)
        );
        assert!(option_advice("vers=3").unwrap().help.contains("\"3\""));
        for o in [
            "soft",
            "softerr",
            "intr",
            "noac",
            "actimeo=0",
            "lookupcache=none",
            "bg",
        ] {
            assert_eq!(
                option_advice(o).map(|a| a.severity),
                Some(Severity::Warning),
                "{o}"
            );
        }
        assert!(is_version_option(" vers=4.2"));
        assert!(!is_version_option("version"));
    }
}
