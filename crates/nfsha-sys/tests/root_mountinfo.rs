//! mountinfo of real mounts whose names need escaping (root: mounts tmpfs).

use nfsha_sys::mountinfo::{find_mount, read_mountinfo};
use nfsha_testinfra::mount_tmpfs;

#[test]
fn root_mountinfo_decodes_real_mountpoints_with_spaces_tabs_and_backslashes() {
    assert!(
        rustix::process::geteuid().is_root(),
        "root_ tests need root (they mount tmpfs): run as root"
    );
    let tmp = tempfile::Builder::new()
        .prefix("nfsha-mi")
        .tempdir()
        .unwrap();
    for name in ["a b", "tab\there", "back\\slash", "new\nline"] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let guard = mount_tmpfs(&dir).expect("mount tmpfs");
        let entries = read_mountinfo().expect("parse mountinfo");
        let m = find_mount(&entries, &dir)
            .unwrap_or_else(|| panic!("{dir:?} not found in parsed mountinfo"));
        assert_eq!(m.mountpoint, dir);
        assert_eq!(m.fstype, "tmpfs");
        assert_eq!(m.source, "nfsha-tmpfs");
        drop(guard);
        let entries = read_mountinfo().unwrap();
        assert!(
            find_mount(&entries, &dir).is_none(),
            "{dir:?} still mounted"
        );
    }
}
