//! `/proc/self/mountstats` with a mountpoint whose name is not UTF-8 (root: mounts tmpfs).
//!
//! Audit (issue 16, item 5): one such mount anywhere on the host made the read fail
//! (`read_to_string`: invalid UTF-8) and every `mountstats_*` series disappear.

use nfsha_metrics::{MountstatsSource, ProcMountstats};
use nfsha_testinfra::mount_tmpfs;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

#[test]
fn root_a_non_utf8_mountpoint_elsewhere_does_not_blank_mountstats() {
    assert!(
        rustix::process::geteuid().is_root(),
        "root_ tests need root (they mount tmpfs): run as root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(OsStr::from_bytes(b"caf\xe9-latin1"));
    std::fs::create_dir(&dir).unwrap();
    let _fs = mount_tmpfs(&dir).expect("mount tmpfs");
    let text = ProcMountstats
        .read()
        .expect("mountstats must be readable with a non-UTF-8 mountpoint on the host");
    assert!(
        text.contains("-latin1 with fstype tmpfs"),
        "the odd mount is listed"
    );
    assert!(
        text.contains("mounted on / "),
        "the other mounts are still there"
    );
}
