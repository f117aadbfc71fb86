//! Mount one healthy FaultFs (the FUSE stand-in for an NFS mount, fstype
//! `fuse.nfsha-fault`) on a directory and serve it until stdin closes.
//!
//! Used by `bench/agent_cost.sh`, which bind-mounts this one filesystem onto 100 or
//! 1,000 mountpoints so that a single FUSE server answers every probe. Prints
//! `ready <connection>` on stdout once mounted. Needs root and /dev/fuse.
//!
//! Failure modes: a mount failure exits 1 with the reason; on stdin EOF (or SIGTERM of
//! the reader) the connection is aborted and the mount detached.

use nfsha_testinfra::FaultFsHandle;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: faultfs_mount DIR  (serves until stdin closes)");
        return ExitCode::from(2);
    };
    let fs = match FaultFsHandle::mount(&dir) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!(
                "Error: {e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {}", fs.connection());
    let _ = out.flush();
    drop(out);
    // Serve until stdin reaches EOF.
    let mut sink = String::new();
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    while lock.read_line(&mut sink).is_ok_and(|n| n > 0) {
        sink.clear();
    }
    let requests = fs.requests();
    drop(fs);
    eprintln!("faultfs_mount: served {requests} requests");
    ExitCode::SUCCESS
}
