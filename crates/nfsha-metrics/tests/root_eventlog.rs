//! The event log on a real filesystem that is full or read-only (root: mounts tmpfs).
//!
//! Audit hole (issue 16, item 3): at open the sink used to write a newline to end a torn
//! last line; on a full or read-only filesystem that write failed and `nfsha agent` exited
//! at start — under `Restart=always` a restart loop, then no agent. A crash on a full disk
//! leaves exactly such a torn line.

use nfsha_core::{Event, EventKind};
use nfsha_metrics::{EventSink, read_events};
use nfsha_testinfra::mount_tmpfs;
use std::io::Write;
use std::path::Path;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "root_ tests need root (they mount tmpfs): run as root"
    );
}

fn ev(ts: u64, mount: &str) -> Event {
    let mut e = Event::new(EventKind::MountStateChanged)
        .mount(mount)
        .transition("healthy", "stale");
    e.ts_ms = ts;
    e
}

/// A log of exactly one page (4096 bytes) whose last line is torn: ending it needs a new
/// page, which a full tmpfs refuses.
fn write_torn_log(path: &Path, good: &Event) {
    let mut content = good.to_json_line();
    content.push('\n');
    content.push_str(&"x".repeat(4096 - content.len()));
    assert_eq!(content.len(), 4096);
    std::fs::write(path, content).unwrap();
}

/// Fill the filesystem holding `path` until it refuses a page.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let page = [0u8; 4096];
    loop {
        if let Err(e) = f.write_all(&page) {
            assert_eq!(e.raw_os_error(), Some(libc_enospc()), "{e}");
            return;
        }
    }
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

#[test]
fn root_a_full_disk_with_a_torn_last_line_does_not_stop_the_agent_from_starting() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let _fs = mount_tmpfs(tmp.path()).expect("mount tmpfs");
    let log = tmp.path().join("events.jsonl");
    let good = ev(1, "/a");
    write_torn_log(&log, &good);
    let filler = tmp.path().join("filler");
    fill(&filler);

    let sink = EventSink::open(Some(&log)).expect("a full disk must not stop the start");
    assert_eq!(sink.path().as_deref(), Some(log.as_path()));
    sink.emit(ev(2, "/b"));
    assert!(sink.write_errors() >= 1, "the failed write is counted");
    assert_eq!(sink.recent(), vec![ev(2, "/b")], "the ring keeps the event");

    // Space comes back: the next record ends the torn line and lands whole.
    std::fs::remove_file(&filler).unwrap();
    sink.emit(ev(3, "/c"));
    assert_eq!(read_events(&log, None).unwrap(), vec![good, ev(3, "/c")]);
    assert_eq!(sink.recent().len(), 2);
}

#[test]
fn root_a_read_only_log_filesystem_does_not_stop_the_agent_from_starting() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let _fs = mount_tmpfs(tmp.path()).expect("mount tmpfs");
    let log = tmp.path().join("events.jsonl");
    let good = ev(1, "/a");
    write_torn_log(&log, &good);
    let remount = |flags: rustix::mount::MountFlags| {
        rustix::mount::mount_remount(tmp.path(), flags, c"").expect("remount tmpfs");
    };
    remount(rustix::mount::MountFlags::RDONLY);

    let sink = EventSink::open(Some(&log)).expect("a read-only /var/log must not stop the start");
    assert_eq!(
        sink.write_errors(),
        1,
        "the unopenable file is counted at start"
    );
    sink.emit(ev(2, "/b"));
    assert_eq!(sink.write_errors(), 2);

    remount(rustix::mount::MountFlags::empty());
    sink.emit(ev(3, "/c"));
    assert_eq!(read_events(&log, None).unwrap(), vec![good, ev(3, "/c")]);
}

#[test]
fn root_a_symlink_at_the_log_path_is_refused_and_its_target_untouched() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("shadow");
    std::fs::write(&target, b"secret\n").unwrap();
    let log = tmp.path().join("events.jsonl");
    std::os::unix::fs::symlink(&target, &log).unwrap();
    let err = EventSink::open(Some(&log)).expect_err("a planted symlink must be refused");
    assert!(!err.is_storage_condition(), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"secret\n");
}
