//! nfsha-testinfra: what nfsha's kernel-level tests stand on (dev-only).
//!
//! Role: [`faultfs`] mounts a FUSE filesystem whose root answers healthy, fails
//! with a chosen errno, hangs until released, or loses its server (ENOTCONN) — the
//! stand-ins for a stale, broken, hung or dead NFS mount in a kernel without NFS.
//! [`wait`] polls a condition with a deadline instead of sleeping, and [`cleanup`]
//! kills the processes and detaches the mounts a test leaves behind.
//!
//! Failure modes: a missing prerequisite (not root, no /dev/fuse) is reported by
//! [`require_fuse`] as a panic that says what is missing and how to get it, so a
//! test never passes silently on a machine that cannot run it.

pub mod cleanup;
pub mod faultfs;
pub mod wait;

pub use cleanup::Cleanup;
pub use faultfs::{Fault, FaultFsHandle, TestInfraError, mount_tmpfs};
pub use wait::{wait_until, wait_until_async};

/// Panic with an actionable message unless this process can mount FUSE filesystems.
pub fn require_fuse() {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push("root privileges (run the fuse_ tests as root, e.g. `sudo -E cargo test`)");
    }
    if !std::path::Path::new("/dev/fuse").exists() {
        missing.push("/dev/fuse (load the fuse module: `modprobe fuse`; install fuse3: `apt-get install fuse3`)");
    }
    assert!(
        missing.is_empty(),
        "FUSE test prerequisites missing: {}",
        missing.join("; ")
    );
}
