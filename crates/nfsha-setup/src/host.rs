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
    /// The NFS version `server` answers at the RPC level, for `fstype=nfs` entries
    /// without a version: `Some(4)` when NFSv4 answers, `Some(3)` when only NFSv3 does
    /// (portmapper, NFS and MOUNT), `None` when it cannot be asked.
    fn nfs_version(&self, _server: &str) -> Option<u32> {
        None
    }
}

/// Deadline of each RPC probe of [`RealHost::nfs_version`].
const VERSION_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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

    /// Only for the live system (`root` is `/`): an image's servers are not asked.
    fn nfs_version(&self, server: &str) -> Option<u32> {
        if self.root != Path::new("/") {
            return None;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            for version in [4, 3] {
                let target = nfsha_rpc::ProbeTarget::new(server, version);
                if nfsha_rpc::probe_server(&target, VERSION_PROBE_TIMEOUT)
                    .await
                    .reachable
                {
                    return Some(version);
                }
            }
            None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_inside_the_root_only_when_executable() {
        let dir = tempfile::tempdir().unwrap();
        let host = RealHost {
            root: dir.path().to_path_buf(),
        };
        assert!(!host.has_tool("mount.nfs"));
        let p = dir.path().join("sbin/mount.nfs");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        assert!(!host.has_tool("mount.nfs"), "not executable");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(host.has_tool("mount.nfs"));
    }

    #[test]
    fn users_of_finds_this_process_holding_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = RealHost {
            root: PathBuf::from("/"),
        };
        assert!(host.users_of(dir.path()).is_empty());
        let _held = std::fs::File::create(dir.path().join("held")).unwrap();
        let me = format!("pid {} (", std::process::id());
        let users = host.users_of(dir.path());
        assert!(users.iter().any(|u| u.starts_with(&me)), "{users:?}");
        // Another root is an image: no process can be using it.
        let image = RealHost {
            root: dir.path().to_path_buf(),
        };
        assert!(image.users_of(dir.path()).is_empty());
    }

    #[test]
    fn runner_reports_failures() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(RealRunner.run(&v(&["true"])).is_ok());
        assert!(
            RealRunner
                .run(&v(&["false"]))
                .unwrap_err()
                .contains("`false` failed")
        );
        assert!(RealRunner.run(&[]).is_err());
        assert!(
            RealRunner
                .run(&v(&["/nonexistent/x"]))
                .unwrap_err()
                .starts_with("Cannot run")
        );
    }
}
