//! A FUSE filesystem with a runtime-switchable fault, standing in for an NFS mount.
//!
//! The root directory holds one file, `data.txt`. Its behaviour is set with
//! [`FaultFsHandle::set_fault`]:
//! - [`Fault::Healthy`]: everything answers.
//! - [`Fault::Errno`]: lookup/getattr/statfs/opendir/readdir/open/read fail with that
//!   errno (ESTALE, EIO, ENOTCONN, EACCES... as a sick NFS server would).
//! - [`Fault::Hang`]: those requests are read from /dev/fuse but not answered until
//!   the fault changes (or the server dies). A process waiting on such a request
//!   cannot be killed: fs/fuse/dev.c `request_wait_answer` waits *uninterruptibly*
//!   once the server has read the request — the "worker that does not die" case.
//! - [`FaultFsHandle::kill_server`]: the connection is aborted through fusectl
//!   (`/sys/fs/fuse/connections/<dev>/abort`, exactly what the kernel does when a
//!   FUSE daemon dies and /dev/fuse closes); every pending and later request fails
//!   with ENOTCONN while the mount stays in the table.
//!
//! Dropping the handle aborts the connection and detaches the mount.
//!
//! Failure modes: mounting needs root and /dev/fuse ([`crate::require_fuse`]);
//! fusectl is mounted on demand if it is not.

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEntry, ReplyOpen, ReplyStatfs, Request, Session, SessionACL,
};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, UNIX_EPOCH};

/// Errors of the test infrastructure.
#[derive(Debug, thiserror::Error)]
pub enum TestInfraError {
    /// The FUSE session could not be created (mount failed).
    #[error("Cannot mount FUSE filesystem at {0}")]
    Mount(PathBuf, #[source] std::io::Error),
    /// The mountpoint could not be stat'ed right after mounting.
    #[error("Cannot stat fresh FUSE mount {0}")]
    Stat(PathBuf, #[source] std::io::Error),
    /// tmpfs could not be mounted.
    #[error("Cannot mount tmpfs at {0}")]
    Tmpfs(PathBuf, #[source] std::io::Error),
}

/// How the filesystem answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    Healthy,
    /// Fail with this errno.
    Errno(i32),
    /// Do not answer until the fault changes.
    Hang,
}

/// The content of `data.txt`.
pub const DATA: &[u8] = b"nfsha test data\n";
const DATA_INO: INodeNo = INodeNo(2);

type Deferred = Box<dyn FnOnce(Option<i32>) + Send>;

#[derive(Default)]
struct State {
    fault: Option<Fault>,
    pending: Vec<Deferred>,
}

struct Shared {
    state: Mutex<State>,
    requests: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer now (`None` = success, `Some(errno)`), or defer while hanging.
    fn gate(&self, answer: impl FnOnce(Option<i32>) + Send + 'static) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut st = self.lock();
        match st.fault.unwrap_or(Fault::Healthy) {
            Fault::Healthy => {
                drop(st);
                answer(None);
            }
            Fault::Errno(e) => {
                drop(st);
                answer(Some(e));
            }
            Fault::Hang => st.pending.push(Box::new(answer)),
        }
    }
}

struct FaultFs {
    shared: Arc<Shared>,
}

fn attr(ino: INodeNo) -> FileAttr {
    let dir = ino == INodeNo::ROOT;
    FileAttr {
        ino,
        size: if dir { 0 } else { DATA.len() as u64 },
        blocks: 1,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: if dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: if dir { 0o755 } else { 0o644 },
        nlink: if dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = parent == INodeNo::ROOT && name == "data.txt";
        self.shared.gate(move |e| match (e, found) {
            (Some(e), _) => reply.error(errno(e)),
            (None, true) => reply.entry(&Duration::ZERO, &attr(DATA_INO), Generation(0)),
            (None, false) => reply.error(Errno::ENOENT),
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.shared.gate(move |e| match e {
            Some(e) => reply.error(errno(e)),
            None => reply.attr(&Duration::ZERO, &attr(ino)),
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.shared.gate(move |e| match e {
            Some(e) => reply.error(errno(e)),
            None => reply.statfs(1024, 512, 512, 16, 8, 4096, 255, 4096),
        });
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.shared.gate(move |e| match e {
            Some(e) => reply.error(errno(e)),
            None => reply.opened(FileHandle(0), FopenFlags::empty()),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.shared.gate(move |e| {
            if let Some(e) = e {
                return reply.error(errno(e));
            }
            let entries = [
                (ino, FileType::Directory, "."),
                (INodeNo::ROOT, FileType::Directory, ".."),
                (DATA_INO, FileType::RegularFile, "data.txt"),
            ];
            for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                if reply.add(*ino, (i + 1) as u64, *kind, name) {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.shared.gate(move |e| match e {
            Some(e) => reply.error(errno(e)),
            None => reply.opened(FileHandle(0), FopenFlags::empty()),
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.shared.gate(move |e| match e {
            Some(e) => reply.error(errno(e)),
            None => {
                let start = (offset as usize).min(DATA.len());
                let end = (start + size as usize).min(DATA.len());
                reply.data(&DATA[start..end]);
            }
        });
    }
}

/// A mounted [`FaultFs`]; unmounted (aborted + detached) on drop.
pub struct FaultFsHandle {
    mountpoint: PathBuf,
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
    connection: u64,
}

impl std::fmt::Debug for FaultFsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultFsHandle")
            .field("mountpoint", &self.mountpoint)
            .field("connection", &self.connection)
            .finish()
    }
}

const FUSECTL: &str = "/sys/fs/fuse/connections";

fn ensure_fusectl() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(" - fusectl "));
        if !mounted {
            let _ = rustix::mount::mount(
                "fusectl",
                FUSECTL,
                "fusectl",
                rustix::mount::MountFlags::empty(),
                None,
            );
        }
    });
}

impl FaultFsHandle {
    /// Mount a healthy FaultFs on the existing directory `dir` (fstype `fuse.nfsha-fault`).
    pub fn mount(dir: &Path) -> Result<Self, TestInfraError> {
        crate::require_fuse();
        ensure_fusectl();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            requests: AtomicU64::new(0),
        });
        let mut cfg = Config::default();
        cfg.mount_options = vec![
            MountOption::FSName("nfsha-faultfs".into()),
            MountOption::Subtype("nfsha-fault".into()),
        ];
        cfg.acl = SessionACL::All;
        let fs = FaultFs {
            shared: shared.clone(),
        };
        let session = Session::new(fs, dir, &cfg)
            .and_then(Session::spawn)
            .map_err(|e| TestInfraError::Mount(dir.to_path_buf(), e))?;
        let st =
            rustix::fs::stat(dir).map_err(|e| TestInfraError::Stat(dir.to_path_buf(), e.into()))?;
        let dev = st.st_dev;
        let connection =
            (u64::from(rustix::fs::major(dev)) << 20) | u64::from(rustix::fs::minor(dev));
        Ok(FaultFsHandle {
            mountpoint: dir.to_path_buf(),
            shared,
            session: Some(session),
            connection,
        })
    }

    /// The mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The FUSE connection number (directory name under /sys/fs/fuse/connections).
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// Switch the fault; leaving `Hang` answers every held request per the new fault.
    pub fn set_fault(&self, fault: Fault) {
        let pending = {
            let mut st = self.shared.lock();
            st.fault = Some(fault);
            if fault == Fault::Hang {
                Vec::new()
            } else {
                std::mem::take(&mut st.pending)
            }
        };
        let answer = match fault {
            Fault::Errno(e) => Some(e),
            _ => None,
        };
        for p in pending {
            p(answer);
        }
    }

    /// Answer every held request successfully and become healthy.
    pub fn release(&self) {
        self.set_fault(Fault::Healthy);
    }

    /// Requests currently held by `Hang` (read by the server, not answered).
    pub fn pending(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// Requests received so far (gated operations only).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The server dies: abort the connection (pending and later requests fail with
    /// ENOTCONN; processes waiting uninterruptibly on it are released).
    pub fn kill_server(&self) {
        let _ = std::fs::write(format!("{FUSECTL}/{}/abort", self.connection), b"1");
        // Held replies can no longer be delivered; drop them (their EIO goes nowhere).
        let pending = std::mem::take(&mut self.shared.lock().pending);
        drop(pending);
    }
}

impl Drop for FaultFsHandle {
    fn drop(&mut self) {
        self.kill_server();
        let _ = rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::DETACH);
        if let Some(s) = self.session.take() {
            // The aborted session thread sees ENODEV and ends; its Mount finds the
            // device gone and does not unmount again. Bounded: never hang a teardown.
            if crate::wait_until(Duration::from_secs(2), || s.guard.is_finished()) {
                let _ = s.join();
            }
        }
    }
}

/// A tmpfs mount at `dir`, detached on drop.
#[derive(Debug)]
pub struct TmpfsGuard {
    path: PathBuf,
}

/// Mount a small tmpfs at `dir` (root needed).
pub fn mount_tmpfs(dir: &Path) -> Result<TmpfsGuard, TestInfraError> {
    rustix::mount::mount(
        "nfsha-tmpfs",
        dir,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        Some(c"size=1m"),
    )
    .map_err(|e| TestInfraError::Tmpfs(dir.to_path_buf(), e.into()))?;
    Ok(TmpfsGuard {
        path: dir.to_path_buf(),
    })
}

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
    }
}
