//! The write probe against real filesystems (root): a read-only mount gives a real
//! EROFS, a full tmpfs a real ENOSPC, a FUSE mount whose server stops answering a
//! write that hangs — each classified in the worker process, never in this one.

mod common;

use nfsha_core::{ProbeOp, ProbeOutcome, WriteState};
use nfsha_sys::ops::WRITE_PROBE_FILE;
use nfsha_testinfra::{Fault, FaultFsHandle, mount_tmpfs, require_fuse};
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(2);

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "write probe tests need root (they mount tmpfs)");
}

/// Nothing named like the probe file is left in `dir`.
fn no_probe_file_left(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().all(|e| {
        !e.file_name()
            .to_string_lossy()
            .starts_with(WRITE_PROBE_FILE)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writable_mount_is_writable_and_keeps_no_probe_file() {
    require_root();
    let (_t, d) = common::dirs(1);
    let _fs = mount_tmpfs(&d[0]).expect("tmpfs");
    let pool = common::pool(2);
    let o = pool.write_probe(&d[0], DEADLINE).await;
    assert_eq!(o.classify_write(), WriteState::Writable, "{o:?}");
    assert!(no_probe_file_left(&d[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_mount_is_read_only() {
    require_root();
    let (_t, d) = common::dirs(1);
    let _fs = mount_tmpfs(&d[0]).expect("tmpfs");
    // Remount it read-only: every create fails EROFS, as on a replica volume before
    // its replication is broken.
    rustix::mount::mount_remount(&d[0], rustix::mount::MountFlags::RDONLY, c"")
        .expect("remount ro");
    let pool = common::pool(2);
    let o = pool.write_probe(&d[0], DEADLINE).await;
    assert!(
        matches!(o, ProbeOutcome::Failed { op: ProbeOp::Create, errno, .. } if errno == libc::EROFS),
        "{o:?}"
    );
    assert_eq!(o.classify_write(), WriteState::ReadOnly);
    // Reads still work: the read probe says healthy.
    let r = pool.probe(&d[0], DEADLINE).await;
    assert!(matches!(r, ProbeOutcome::Ok { .. }), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_volume_is_no_space_and_the_probe_file_is_removed() {
    require_root();
    let (_t, d) = common::dirs(1);
    let _fs = mount_tmpfs(&d[0]).expect("tmpfs");
    // Fill the 1 MiB tmpfs.
    let fill = d[0].join("fill");
    let chunk = vec![0u8; 64 * 1024];
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&fill).unwrap();
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
    }
    let pool = common::pool(2);
    let o = pool.write_probe(&d[0], DEADLINE).await;
    assert!(
        matches!(o, ProbeOutcome::Failed { op: ProbeOp::Write, errno, .. } if errno == libc::ENOSPC),
        "{o:?}"
    );
    assert_eq!(o.classify_write(), WriteState::NoSpace);
    assert!(no_probe_file_left(&d[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_write_is_write_hung_and_does_not_mark_the_mount_stuck() {
    require_fuse();
    let (_t, d) = common::dirs(1);
    let fs = FaultFsHandle::mount(&d[0]).expect("mount faultfs");
    let pool = common::pool(2);
    fs.set_fault(Fault::Hang);
    let o = pool
        .write_probe(fs.mountpoint(), Duration::from_millis(500))
        .await;
    assert_eq!(o.classify_write(), WriteState::WriteHung, "{o:?}");
    // The stuck worker is the write probe's: the next write probe answers at once,
    // while the read probes that decide about remounting are not short-circuited.
    assert!(pool.is_write_stuck(fs.mountpoint()));
    assert!(!pool.is_stuck(fs.mountpoint()));
    fs.set_fault(Fault::Healthy);
    let r = pool.probe(fs.mountpoint(), DEADLINE).await;
    assert!(matches!(r, ProbeOutcome::Ok { .. }), "{r:?}");
}
