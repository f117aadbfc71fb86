//! A registry of what a test started, torn down on drop even when the test panics.
//!
//! Failure modes: teardown errors are ignored (the test has already reported its
//! own result); SIGKILLed children are waited for, so none is left as a zombie.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Processes to kill and mounts to detach when dropped (children first, newest first).
#[derive(Debug, Default)]
pub struct Cleanup {
    children: Vec<Child>,
    mounts: Vec<PathBuf>,
}

impl Cleanup {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawn a command and register the child; returns its pid.
    pub fn spawn(&mut self, cmd: &mut Command) -> std::io::Result<u32> {
        let child = cmd.spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Register a mountpoint to detach (`umount2(MNT_DETACH)`) at teardown.
    pub fn add_mount(&mut self, path: &Path) {
        self.mounts.push(path.to_path_buf());
    }

    /// Kill and reap every registered child now.
    pub fn kill_children(&mut self) {
        for mut c in self.children.drain(..).rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.kill_children();
        for m in self.mounts.drain(..).rev() {
            let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
        }
    }
}
