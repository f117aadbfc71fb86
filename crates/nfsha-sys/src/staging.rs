//! The staging area: a small private tmpfs (default `/run/nfsha/stage`) where a new NFS
//! mount is made and verified before it is moved (`MS_MOVE`) onto its mountpoint.
//!
//! Why private: the kernel refuses to move a mount whose parent mount is shared
//! (`EINVAL`), and systemd makes every mount shared. A tmpfs of our own, made private,
//! is a parent we control. Only local syscalls happen here (mkdir, mount of a tmpfs,
//! propagation change, rmdir), never an access to an NFS path: leftover mounts under
//! the area are detached by a worker, not here.
//!
//! Failure modes: not root (`EPERM`), no tmpfs support, the area's directory cannot be
//! created; each is a [`StagingError`] naming the path and the call.

use std::path::{Path, PathBuf};

/// A staging-area operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// A directory could not be created or removed.
    #[error("Cannot {op} {}", path.display())]
    Dir {
        /// `create` or `remove`.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Mounting or changing the propagation of the area failed.
    #[error("Cannot {op} the staging area {}", path.display())]
    Mount {
        /// `mount tmpfs on` or `make private`.
        op: &'static str,
        /// The area.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustix::io::Errno,
    },
    /// The mount table could not be read.
    #[error("Cannot read the mount table")]
    Mountinfo(#[from] crate::mountinfo::MountinfoError),
}

/// Make `root` a private tmpfs (mounting one if none is there yet; idempotent).
pub fn ensure_private_tmpfs(root: &Path, mountinfo: &Path) -> Result<(), StagingError> {
    std::fs::create_dir_all(root).map_err(|source| StagingError::Dir {
        op: "create",
        path: root.to_path_buf(),
        source,
    })?;
    let table = crate::mountinfo::read_mountinfo_from(mountinfo)?;
    let mounted = table
        .iter()
        .rev()
        .find(|m| m.mountpoint == root)
        .is_some_and(|m| m.fstype == "tmpfs");
    if !mounted {
        use rustix::mount::MountFlags;
        rustix::mount::mount(
            "nfsha-stage",
            root,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"size=64k,mode=0700",
        )
        .map_err(|source| StagingError::Mount {
            op: "mount tmpfs on",
            path: root.to_path_buf(),
            source,
        })?;
    }
    rustix::mount::mount_change(root, rustix::mount::MountPropagationFlags::PRIVATE).map_err(
        |source| StagingError::Mount {
            op: "make private",
            path: root.to_path_buf(),
            source,
        },
    )
}

/// Create a fresh, empty directory under `root` (`<root>/<n>`).
pub fn new_stage_dir(root: &Path) -> Result<PathBuf, StagingError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let dir = root.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(StagingError::Dir {
                    op: "create",
                    path: dir,
                    source,
                });
            }
        }
    }
}

/// Remove an (empty, unmounted) stage directory; an absent one is fine.
pub fn remove_stage_dir(dir: &Path) -> Result<(), StagingError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StagingError::Dir {
            op: "remove",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{MountOps, RustixMountOps, UmountFlags};

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// `root_` tier: a tmpfs staged in the private area moves onto a mountpoint under a
    /// (shared) parent, and the area can be set up twice.
    #[test]
    fn root_a_staged_mount_moves_onto_its_mountpoint() {
        assert!(
            is_root(),
            "root_ tests need root (mount(2)); run them as root or skip the root_ tier explicitly"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let area = dir.path().join("stage");
        let target = dir.path().join("target");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("local-file"), b"x").expect("write");
        let mi = Path::new("/proc/self/mountinfo");
        ensure_private_tmpfs(&area, mi).expect("area");
        ensure_private_tmpfs(&area, mi).expect("idempotent");
        let staged = new_stage_dir(&area).expect("stage dir");
        rustix::mount::mount(
            "nfsha-test",
            &staged,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"size=64k",
        )
        .expect("mount the staged fs");
        std::fs::write(staged.join("new-file"), b"y").expect("write staged");
        RustixMountOps
            .move_mount(&staged, &target)
            .expect("MS_MOVE");
        assert!(
            target.join("new-file").exists(),
            "the staged fs is in place"
        );
        assert!(
            !target.join("local-file").exists(),
            "it covers the directory"
        );
        remove_stage_dir(&staged).expect("empty stage dir removed");
        remove_stage_dir(&staged).expect("absent is fine");
        RustixMountOps
            .umount(&target, UmountFlags::DETACH)
            .expect("umount target");
        RustixMountOps
            .umount(&area, UmountFlags::DETACH)
            .expect("umount area");
    }
}
