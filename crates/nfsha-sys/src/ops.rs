//! The syscall seam: every filesystem operation nfsha performs on a mountpoint.
//!
//! Role: [`MountOps`] is the trait the worker process (and anything else that
//! umounts or probes) calls; [`RustixMountOps`] is the real implementation and
//! [`RecordingMountOps`] a fake that records typed calls and can fail the Nth one,
//! so the umount sequence and the probe are unit-tested without root.
//!
//! Failure modes: every method returns the raw errno of the failing syscall, tagged
//! with the operation. Calls on a dead NFS mount may block in the kernel: only call
//! these from a worker process (see [`crate::worker`]), never from the daemon.

use nfsha_core::state::errno_name;
use std::fmt;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Which syscall failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysOp {
    /// `umount2`.
    Umount,
    /// `statfs`.
    Statfs,
    /// `stat`.
    Stat,
    /// `open(O_DIRECTORY)`.
    Open,
    /// `getdents64`.
    Readdir,
    /// `mount(MS_MOVE)`.
    Move,
    /// `mount(MS_BIND)`.
    Bind,
    /// `open(O_CREAT)` of the write probe's file.
    Create,
    /// `write` to it.
    Write,
    /// `fsync` of it.
    Fsync,
    /// `unlink` of it.
    Unlink,
}

impl fmt::Display for SysOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SysOp::Umount => "umount2",
            SysOp::Statfs => "statfs",
            SysOp::Stat => "stat",
            SysOp::Open => "open",
            SysOp::Readdir => "getdents64",
            SysOp::Move => "mount(MS_MOVE)",
            SysOp::Bind => "mount(MS_BIND)",
            SysOp::Create => "open(O_CREAT)",
            SysOp::Write => "write",
            SysOp::Fsync => "fsync",
            SysOp::Unlink => "unlink",
        })
    }
}

/// A failed syscall: the operation and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{op} failed with {}", errno_name(*errno))]
pub struct OpsError {
    /// The operation.
    pub op: SysOp,
    /// Raw errno.
    pub errno: i32,
}

impl OpsError {
    fn from_io(op: SysOp, e: rustix::io::Errno) -> Self {
        OpsError {
            op,
            errno: e.raw_os_error(),
        }
    }
}

/// Flags for `umount2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UmountFlags {
    /// `MNT_FORCE`: abort in-flight RPCs (NFS) / the connection (FUSE).
    pub force: bool,
    /// `MNT_DETACH`: lazy unmount, detach now and clean up when unused.
    pub detach: bool,
}

impl UmountFlags {
    /// Plain `umount` (what `umount -a` does).
    pub const NONE: UmountFlags = UmountFlags {
        force: false,
        detach: false,
    };
    /// `MNT_FORCE`.
    pub const FORCE: UmountFlags = UmountFlags {
        force: true,
        detach: false,
    };
    /// `MNT_DETACH`.
    pub const DETACH: UmountFlags = UmountFlags {
        force: false,
        detach: true,
    };
}

impl fmt::Display for UmountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.force, self.detach) {
            (false, false) => f.write_str("0"),
            (true, false) => f.write_str("MNT_FORCE"),
            (false, true) => f.write_str("MNT_DETACH"),
            (true, true) => f.write_str("MNT_FORCE|MNT_DETACH"),
        }
    }
}

/// What `statfs` reported (only what nfsha uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    /// `f_type` (e.g. `NFS_SUPER_MAGIC` 0x6969, FUSE 0x65735546).
    pub fs_type: i64,
    /// Total blocks.
    pub blocks: u64,
}

/// Filesystem operations on a mountpoint; inject [`RustixMountOps`] in production.
pub trait MountOps: Send + Sync {
    /// `umount2(path, flags)`.
    fn umount(&self, path: &Path, flags: UmountFlags) -> Result<(), OpsError>;
    /// `statfs(path)`: always reaches the server on NFS.
    fn statfs(&self, path: &Path) -> Result<FsStats, OpsError>;
    /// `stat(path)` following symlinks (triggers automounts; may be answered from cache).
    fn stat(&self, path: &Path) -> Result<(), OpsError>;
    /// `open(path, O_DIRECTORY)` and one `getdents64`; returns the bytes read.
    fn read_dir_once(&self, path: &Path) -> Result<usize, OpsError>;
    /// `mount(from, to, NULL, MS_MOVE, NULL)`: move the mount at `from` onto `to`.
    /// Fails `EINVAL` when `from`'s parent mount is shared.
    fn move_mount(&self, from: &Path, to: &Path) -> Result<(), OpsError>;
    /// `mount(from, to, NULL, MS_BIND, NULL)`: a second mount of the topmost mount at
    /// `from` (not its submounts) on `to`. The path walk to `from` may revalidate the
    /// mount's root on the server, so on a dead NFS mount this can block.
    fn bind_mount(&self, from: &Path, to: &Path) -> Result<(), OpsError>;
    /// The write probe: create (or truncate) `dir/<WRITE_PROBE_FILE>.<host name>`,
    /// write a few bytes, `fsync`, close and unlink it. One name per client host, so
    /// agents sharing an export do not race on one file; a file left by a killed
    /// worker is reused by the next probe.
    fn write_probe(&self, dir: &Path) -> Result<(), OpsError>;
}

/// Prefix of the write probe's dot-file in the mount root.
pub const WRITE_PROBE_FILE: &str = ".nfsha-write-probe";

/// The real implementation, through rustix.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustixMountOps;

impl MountOps for RustixMountOps {
    fn umount(&self, path: &Path, flags: UmountFlags) -> Result<(), OpsError> {
        let mut f = rustix::mount::UnmountFlags::empty();
        if flags.force {
            f |= rustix::mount::UnmountFlags::FORCE;
        }
        if flags.detach {
            f |= rustix::mount::UnmountFlags::DETACH;
        }
        rustix::mount::unmount(path, f).map_err(|e| OpsError::from_io(SysOp::Umount, e))
    }

    fn statfs(&self, path: &Path) -> Result<FsStats, OpsError> {
        let s = rustix::fs::statfs(path).map_err(|e| OpsError::from_io(SysOp::Statfs, e))?;
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        Ok(FsStats {
            fs_type: s.f_type as i64,
            blocks: s.f_blocks as u64,
        })
    }

    fn stat(&self, path: &Path) -> Result<(), OpsError> {
        rustix::fs::stat(path)
            .map(|_| ())
            .map_err(|e| OpsError::from_io(SysOp::Stat, e))
    }

    fn read_dir_once(&self, path: &Path) -> Result<usize, OpsError> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| OpsError::from_io(SysOp::Open, e))?;
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut dir = rustix::fs::RawDir::new(&fd, &mut buf);
        // One `next()` on a fresh RawDir is exactly one getdents64 call.
        match dir.next() {
            None => Ok(0),
            Some(Ok(entry)) => Ok(entry.file_name().to_bytes().len()),
            Some(Err(e)) => Err(OpsError::from_io(SysOp::Readdir, e)),
        }
    }

    fn move_mount(&self, from: &Path, to: &Path) -> Result<(), OpsError> {
        rustix::mount::mount_move(from, to).map_err(|e| OpsError::from_io(SysOp::Move, e))
    }

    fn bind_mount(&self, from: &Path, to: &Path) -> Result<(), OpsError> {
        rustix::mount::mount_bind(from, to).map_err(|e| OpsError::from_io(SysOp::Bind, e))
    }

    fn write_probe(&self, dir: &Path) -> Result<(), OpsError> {
        use rustix::fs::{Mode, OFlags};
        let uname = rustix::system::uname();
        let node = uname.nodename().to_string_lossy().replace('/', "_");
        let file = dir.join(format!("{WRITE_PROBE_FILE}.{node}"));
        let fd = rustix::fs::open(
            &file,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| OpsError::from_io(SysOp::Create, e))?;
        let written = rustix::io::write(&fd, b"nfsha write probe\n")
            .map_err(|e| OpsError::from_io(SysOp::Write, e))
            .and_then(|_| rustix::fs::fsync(&fd).map_err(|e| OpsError::from_io(SysOp::Fsync, e)));
        drop(fd);
        // Unlink even after a failed write (a full volume): leave nothing behind.
        let unlinked = match rustix::fs::unlink(&file) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            other => other.map_err(|e| OpsError::from_io(SysOp::Unlink, e)),
        };
        written.and(unlinked)
    }
}

/// One recorded call of [`RecordingMountOps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedCall {
    /// `umount2`.
    Umount {
        /// Target.
        path: PathBuf,
        /// Flags.
        flags: UmountFlags,
    },
    /// `statfs`.
    Statfs {
        /// Target.
        path: PathBuf,
    },
    /// `stat`.
    Stat {
        /// Target.
        path: PathBuf,
    },
    /// `open` + `getdents64`.
    ReadDirOnce {
        /// Target.
        path: PathBuf,
    },
    /// `mount(MS_MOVE)`.
    Move {
        /// Source mount.
        from: PathBuf,
        /// Destination.
        to: PathBuf,
    },
    /// `mount(MS_BIND)`.
    Bind {
        /// Source mount.
        from: PathBuf,
        /// Destination.
        to: PathBuf,
    },
    /// The write probe (create, write, fsync, unlink).
    WriteProbe {
        /// The mount root.
        dir: PathBuf,
    },
}

#[derive(Debug, Default)]
struct RecordingState {
    calls: Vec<RecordedCall>,
    failures: Vec<(usize, i32)>,
}

/// A fake [`MountOps`] recording every call; [`RecordingMountOps::fail_call`]
/// makes the Nth call (1-based, across all methods) fail with an errno.
#[derive(Debug, Default)]
pub struct RecordingMountOps {
    state: Mutex<RecordingState>,
}

impl RecordingMountOps {
    /// A fake on which every call succeeds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the `n`th call (1-based) fail with `errno`.
    pub fn fail_call(&self, n: usize, errno: i32) -> &Self {
        self.lock().failures.push((n, errno));
        self
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordingState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, call: RecordedCall, op: SysOp) -> Result<(), OpsError> {
        let mut st = self.lock();
        st.calls.push(call);
        let n = st.calls.len();
        match st.failures.iter().find(|(k, _)| *k == n) {
            Some(&(_, errno)) => Err(OpsError { op, errno }),
            None => Ok(()),
        }
    }
}

impl MountOps for RecordingMountOps {
    fn umount(&self, path: &Path, flags: UmountFlags) -> Result<(), OpsError> {
        self.record(
            RecordedCall::Umount {
                path: path.to_path_buf(),
                flags,
            },
            SysOp::Umount,
        )
    }

    fn statfs(&self, path: &Path) -> Result<FsStats, OpsError> {
        self.record(
            RecordedCall::Statfs {
                path: path.to_path_buf(),
            },
            SysOp::Statfs,
        )
        .map(|()| FsStats::default())
    }

    fn stat(&self, path: &Path) -> Result<(), OpsError> {
        self.record(
            RecordedCall::Stat {
                path: path.to_path_buf(),
            },
            SysOp::Stat,
        )
    }

    fn read_dir_once(&self, path: &Path) -> Result<usize, OpsError> {
        // The fake cannot tell open from getdents failures; it reports Open.
        self.record(
            RecordedCall::ReadDirOnce {
                path: path.to_path_buf(),
            },
            SysOp::Open,
        )
        .map(|()| 0)
    }

    fn move_mount(&self, from: &Path, to: &Path) -> Result<(), OpsError> {
        self.record(
            RecordedCall::Move {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
            },
            SysOp::Move,
        )
    }

    fn bind_mount(&self, from: &Path, to: &Path) -> Result<(), OpsError> {
        self.record(
            RecordedCall::Bind {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
            },
            SysOp::Bind,
        )
    }

    fn write_probe(&self, dir: &Path) -> Result<(), OpsError> {
        // The fake cannot tell the steps apart; it reports Create.
        self.record(
            RecordedCall::WriteProbe {
                dir: dir.to_path_buf(),
            },
            SysOp::Create,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_fake_fails_the_nth_call_only() {
        let ops = RecordingMountOps::new();
        ops.fail_call(2, libc::EBUSY);
        let p = Path::new("/mnt/x");
        assert!(ops.umount(p, UmountFlags::FORCE).is_ok());
        let e = ops.umount(p, UmountFlags::NONE).unwrap_err();
        assert_eq!(e.errno, libc::EBUSY);
        assert_eq!(e.to_string(), "umount2 failed with EBUSY");
        assert!(ops.statfs(p).is_ok());
        assert_eq!(ops.calls().len(), 3);
        assert_eq!(
            ops.calls()[0],
            RecordedCall::Umount {
                path: p.into(),
                flags: UmountFlags::FORCE
            }
        );
    }

    #[test]
    fn real_ops_read_a_local_directory() {
        let ops = RustixMountOps;
        assert!(ops.statfs(Path::new("/")).is_ok());
        assert!(ops.read_dir_once(Path::new("/")).unwrap() > 0);
        let e = ops
            .read_dir_once(Path::new("/nonexistent-nfsha"))
            .unwrap_err();
        assert_eq!((e.op, e.errno), (SysOp::Open, libc::ENOENT));
        let e = ops
            .umount(Path::new("/nonexistent-nfsha"), UmountFlags::DETACH)
            .unwrap_err();
        assert_eq!(e.op, SysOp::Umount);
    }
}
