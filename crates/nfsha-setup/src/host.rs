//! Seams to the host: tool presence, processes using a mountpoint, and running commands.
//!
//! Role: everything `nfsha setup` asks of the live system goes through [`Host`] and
//! [`CommandRunner`], so tests inject answers and never touch the machine. Failure
//! modes: [`RealHost`] treats unreadable `/proc` entries as "not using the mountpoint"
//! (processes come and go); [`RealRunner`] reports a command's exit status as an error.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What setup needs to know about the host before changing anything.
pub trait Host {
    /// Whether an executable `name` (e.g. `mount.nfs`) is installed in the target root.
    fn has_tool(&self, name: &str) -> bool;
    /// Processes using files at or under `mountpoint` (descriptions such as `pid 42 (airflow)`).
    fn users_of(&self, mountpoint: &Path) -> Vec<String>;
}

/// Runs a command given as an argument vector (never a shell string).
pub trait CommandRunner {
    /// Run `argv` to completion; an error describes a failure to start or a non-zero exit.
    fn run(&self, argv: &[String]) -> Result<(), String>;
}

/// The real host, seen through `root` (tools are looked up inside it; processes are only
/// inspected when `root` is `/`, since other roots are images, not running systems).
#[derive(Debug, Clone)]
pub struct RealHost {
    /// The target root.
    pub root: PathBuf,
}

const TOOL_DIRS: &[&str] = &["usr/sbin", "sbin", "usr/bin", "bin"];

impl Host for RealHost {
    fn has_tool(&self, name: &str) -> bool {
        TOOL_DIRS.iter().any(|d| {
            std::fs::metadata(self.root.join(d).join(name))
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    }

    fn users_of(&self, mountpoint: &Path) -> Vec<String> {
        if self.root != Path::new("/") {
            return Vec::new();
        }
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut users = Vec::new();
        for p in procs.flatten() {
            let name = p.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let dir = p.path();
            // readlink on /proc never touches the NFS server, so this cannot hang.
            let mut links: Vec<PathBuf> = ["cwd", "root"]
                .iter()
                .filter_map(|l| std::fs::read_link(dir.join(l)).ok())
                .collect();
            if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
                links.extend(
                    fds.flatten()
                        .filter_map(|f| std::fs::read_link(f.path()).ok()),
                );
            }
            if links.iter().any(|l| l.starts_with(mountpoint)) {
                let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                users.push(format!("pid {pid} ({})", comm.trim()));
            }
        }
        users
    }
}

/// Runs commands with `std::process::Command`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealRunner;

impl CommandRunner for RealRunner {
    fn run(&self, argv: &[String]) -> Result<(), String> {
        let (prog, args) = argv.split_first().ok_or("Empty command")?;
        let status = Command::new(prog)
            .args(args)
            .status()
            .map_err(|e| format!("Cannot run {prog}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{}` failed: {status}", argv.join(" ")))
        }
    }
}
