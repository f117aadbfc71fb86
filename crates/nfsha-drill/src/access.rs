//! In-process access loops: one thread per (path, worker), a recorder that keeps time.
//!
//! Each worker accesses its path on a fixed grid (`start + offset + k*interval`,
//! workers staggered evenly over one interval); a late access skips the grid
//! points it missed instead of bursting. Every access is sent to the recorder
//! (the calling thread), which writes one JSON line per access.
//!
//! Failure modes: a worker may block in the kernel for ever (hard mount on a hung
//! server). The recorder never joins workers: at the deadline it writes a
//! `blocked` record for every access still in flight and returns; the caller must
//! then leave with `std::process::exit` so blocked threads do not keep the
//! process alive. Output I/O errors end the run with [`AccessError`].

use crate::record::AccessRecord;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Errors of an access run.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The output file could not be created or written.
    #[error("Cannot write {path}")]
    Output {
        /// The output path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("Invalid access config: {0}")]
    Config(String),
    /// A worker thread could not be started.
    #[error("Cannot start a worker thread")]
    Spawn(#[source] std::io::Error),
}

/// What each access does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read the whole directory listing.
    Ls,
    /// `stat` the path (note: often answered from the attribute cache).
    Stat,
    /// `statfs` the path (always an RPC on NFS).
    Statfs,
    /// Read the file, or every regular file of the directory (`cat dir/*`).
    Read,
    /// Open-append-fsync-close a line to `<path>/.drill-<label>-w<worker>` (or to the file
    /// itself), then read it back.
    Write,
    /// Keep one file descriptor open on `<path>/.drill-held-<label>-w<worker>` and
    /// append through it; see [`AccessConfig::reopen`].
    HeldWrite,
    /// `ls` the directory, then read every regular file in it (seed Test 4).
    LsRead,
}

impl Op {
    /// Parse `ls|stat|statfs|read|write|held-write|ls-read`.
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "ls" => Op::Ls,
            "stat" => Op::Stat,
            "statfs" => Op::Statfs,
            "read" => Op::Read,
            "write" => Op::Write,
            "held-write" => Op::HeldWrite,
            "ls-read" => Op::LsRead,
            _ => return None,
        })
    }
}

/// One access run.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Paths to access; each gets `workers` threads.
    pub paths: Vec<PathBuf>,
    /// Grid spacing of one worker's accesses.
    pub interval: Duration,
    /// How long the run lasts.
    pub duration: Duration,
    /// Workers per path.
    pub workers: u32,
    /// What each access does.
    pub op: Op,
    /// Label written into every record.
    pub label: String,
    /// The floor: after a failed access, detach (`umount -l`) the path's mount and
    /// retry at once instead of waiting for the next grid point (once; a failed retry
    /// waits for the grid, detaching again).
    pub floor: bool,
    /// For [`Op::HeldWrite`]: after a failed write, close and reopen the file.
    pub reopen: bool,
    /// For listing ops (`ls`, `ls-read`, `read` of a directory): an empty directory
    /// is a failure. Under a missing mount the application sees the bare local
    /// mountpoint directory: a listing that "succeeds" there is a wrong answer.
    pub fail_empty: bool,
    /// Where the JSON lines go.
    pub out: PathBuf,
    /// How long accesses in flight at the end may still finish before they are
    /// recorded as `blocked`.
    pub drain: Duration,
}

/// Totals of a finished run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSummary {
    /// Accesses recorded.
    pub total: u64,
    /// Successful ones.
    pub ok: u64,
    /// Accesses still blocked at the end.
    pub blocked: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Slot {
    path: String,
    worker: u32,
    /// Start (epoch ms) of the access in flight, 0 when idle.
    in_flight_since: AtomicU64,
}

/// Run the access loops until `duration` has passed, writing every record to `out`.
///
/// Returns once the deadline is reached; worker threads may still be blocked in the
/// kernel, so callers should end the process promptly afterwards.
pub fn run_access(cfg: &AccessConfig) -> Result<AccessSummary, AccessError> {
    if cfg.paths.is_empty() || cfg.workers == 0 {
        return Err(AccessError::Config(
            "Need at least one path and one worker".into(),
        ));
    }
    if cfg.interval.is_zero() {
        return Err(AccessError::Config("Interval must be positive".into()));
    }
    let out_err = |source| AccessError::Output {
        path: cfg.out.clone(),
        source,
    };
    let file = File::create(&cfg.out).map_err(out_err)?;
    let mut w = BufWriter::new(file);
    let (tx, rx) = mpsc::channel::<AccessRecord>();
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let mut slots = Vec::new();
    let n = cfg.workers;
    for path in &cfg.paths {
        for worker in 0..n {
            let slot = Arc::new(Slot {
                path: path.display().to_string(),
                worker,
                in_flight_since: AtomicU64::new(0),
            });
            slots.push(slot.clone());
            let tx = tx.clone();
            let cfg = cfg.clone();
            let path = path.clone();
            let offset = cfg.interval.mul_f64(f64::from(worker) / f64::from(n));
            std::thread::Builder::new()
                .name(format!("drill-w{worker}"))
                .stack_size(256 * 1024)
                .spawn(move || {
                    worker_loop(&cfg, &path, worker, start + offset, deadline, &slot, &tx)
                })
                .map_err(AccessError::Spawn)?;
        }
    }
    drop(tx);
    let mut summary = AccessSummary::default();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(rec) => {
                summary.total += 1;
                summary.ok += u64::from(rec.ok);
                write_record(&mut w, &rec).map_err(out_err)?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Accesses in flight at the deadline get up to `drain` to finish (workers start no new
    // access after the deadline); whatever arrives still counts.
    let drain_end = Instant::now() + cfg.drain;
    let in_flight = |slots: &[Arc<Slot>]| {
        slots
            .iter()
            .any(|s| s.in_flight_since.load(Ordering::SeqCst) != 0)
    };
    loop {
        while let Ok(rec) = rx.try_recv() {
            summary.total += 1;
            summary.ok += u64::from(rec.ok);
            write_record(&mut w, &rec).map_err(out_err)?;
        }
        if !in_flight(&slots) || Instant::now() >= drain_end {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    while let Ok(rec) = rx.try_recv() {
        summary.total += 1;
        summary.ok += u64::from(rec.ok);
        write_record(&mut w, &rec).map_err(out_err)?;
    }
    let end = now_ms();
    for slot in &slots {
        let since = slot.in_flight_since.load(Ordering::SeqCst);
        if since != 0 {
            let rec = AccessRecord {
                label: cfg.label.clone(),
                path: slot.path.clone(),
                worker: slot.worker,
                ts_ms: since,
                latency_ms: end.saturating_sub(since) as f64,
                ok: false,
                errno: None,
                error: Some("still blocked at the end of the run".into()),
                blocked: true,
            };
            summary.total += 1;
            summary.blocked += 1;
            write_record(&mut w, &rec).map_err(out_err)?;
        }
    }
    w.flush().map_err(out_err)?;
    Ok(summary)
}

fn write_record(w: &mut impl Write, rec: &AccessRecord) -> std::io::Result<()> {
    let line = serde_json::to_string(rec).map_err(std::io::Error::other)?;
    w.write_all(line.as_bytes())?;
    w.write_all(b"\n")
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn worker_loop(
    cfg: &AccessConfig,
    path: &Path,
    worker: u32,
    first: Instant,
    deadline: Instant,
    slot: &Slot,
    tx: &mpsc::Sender<AccessRecord>,
) {
    let mut held: Option<File> = None;
    let mut next = first;
    let mut retry_now = false;
    loop {
        if !retry_now {
            sleep_until(next);
        }
        let was_retry = retry_now;
        retry_now = false;
        if Instant::now() >= deadline {
            return;
        }
        let ts = now_ms();
        slot.in_flight_since.store(ts, Ordering::SeqCst);
        let t = Instant::now();
        let res = access_once(cfg, path, worker, &mut held);
        let latency = t.elapsed();
        slot.in_flight_since.store(0, Ordering::SeqCst);
        let (ok, errno, error) = match &res {
            Ok(()) => (true, None, None),
            Err(e) => (false, e.raw_os_error(), Some(e.to_string())),
        };
        let rec = AccessRecord {
            label: cfg.label.clone(),
            path: path.display().to_string(),
            worker,
            ts_ms: ts,
            latency_ms: (latency.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            ok,
            errno,
            error,
            blocked: false,
        };
        if tx.send(rec).is_err() {
            return;
        }
        if !ok {
            if cfg.reopen {
                held = None;
            }
            if cfg.floor {
                // The floor: detach whatever is mounted there and re-access at once — once:
                // if the retry fails too, wait for the next grid point (no hot loop while
                // no server answers).
                let _ = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
                if !was_retry {
                    retry_now = true;
                    continue;
                }
            }
        }
        // Next grid point strictly in the future.
        let now = Instant::now();
        next += cfg.interval;
        if next <= now {
            let behind = (now - next).as_secs_f64() / cfg.interval.as_secs_f64();
            next += cfg.interval.mul_f64(behind.floor() + 1.0);
        }
    }
}

fn read_file(p: &Path) -> std::io::Result<()> {
    let mut f = File::open(p)?;
    let mut buf = [0u8; 8192];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

fn read_dir_files(p: &Path, fail_empty: bool) -> std::io::Result<()> {
    let mut n = 0usize;
    for entry in std::fs::read_dir(p)? {
        let entry = entry?;
        n += 1;
        if entry.file_type()?.is_file() {
            read_file(&entry.path())?;
        }
    }
    check_nonempty(n, fail_empty)
}

fn check_nonempty(entries: usize, fail_empty: bool) -> std::io::Result<()> {
    if fail_empty && entries == 0 {
        return Err(std::io::Error::other(
            "empty directory (the bare mountpoint, nothing mounted?)",
        ));
    }
    Ok(())
}

fn access_once(
    cfg: &AccessConfig,
    path: &Path,
    worker: u32,
    held: &mut Option<File>,
) -> std::io::Result<()> {
    match cfg.op {
        Op::Ls => {
            let mut n = 0usize;
            for entry in std::fs::read_dir(path)? {
                entry?;
                n += 1;
            }
            check_nonempty(n, cfg.fail_empty)
        }
        Op::Stat => std::fs::metadata(path).map(|_| ()),
        Op::Statfs => rustix::fs::statfs(path)
            .map(|_| ())
            .map_err(std::io::Error::from),
        Op::Read => {
            if std::fs::metadata(path)?.is_dir() {
                read_dir_files(path, cfg.fail_empty)
            } else {
                read_file(path)
            }
        }
        Op::LsRead => read_dir_files(path, cfg.fail_empty),
        Op::Write => {
            let target = if path.is_dir() {
                path.join(format!(".drill-{}-w{worker}", cfg.label))
            } else {
                path.to_path_buf()
            };
            let line = format!("{} w{worker}", now_ms());
            let mut f = OpenOptions::new().create(true).append(true).open(&target)?;
            writeln!(f, "{line}")?;
            f.sync_data()?;
            drop(f);
            // Read back what was just made durable: a write the server lost is a failure.
            let back = std::fs::read_to_string(&target)?;
            if back.lines().last() != Some(line.as_str()) {
                return Err(std::io::Error::other("read-back does not match the write"));
            }
            Ok(())
        }
        Op::HeldWrite => {
            if held.is_none() {
                let target = path.join(format!(".drill-held-{}-w{worker}", cfg.label));
                *held = Some(OpenOptions::new().create(true).append(true).open(target)?);
            }
            let Some(f) = held.as_mut() else {
                return Err(std::io::Error::other("No file held"));
            };
            writeln!(f, "{} w{worker}", now_ms())?;
            f.sync_data()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, op: Op, out: &Path) -> AccessConfig {
        AccessConfig {
            paths: vec![dir.to_path_buf()],
            interval: Duration::from_millis(20),
            duration: Duration::from_millis(300),
            workers: 2,
            op,
            label: "t".into(),
            floor: false,
            reopen: false,
            fail_empty: false,
            out: out.to_path_buf(),
            drain: Duration::from_millis(100),
        }
    }

    #[test]
    fn an_empty_directory_fails_only_with_fail_empty() {
        let d = tempfile::tempdir().unwrap();
        let bare = d.path().join("bare");
        std::fs::create_dir(&bare).unwrap();
        for op in [Op::Ls, Op::LsRead, Op::Read] {
            let out = d.path().join(format!("{op:?}.jsonl"));
            let mut c = cfg(&bare, op, &out);
            c.duration = Duration::from_millis(60);
            let s = run_access(&c).expect("run");
            assert_eq!(s.ok, s.total, "{op:?} without fail_empty: {s:?}");
            let out = d.path().join(format!("{op:?}-strict.jsonl"));
            let mut c = cfg(&bare, op, &out);
            c.duration = Duration::from_millis(60);
            c.fail_empty = true;
            let s = run_access(&c).expect("run");
            assert!(s.total > 0);
            assert_eq!(s.ok, 0, "{op:?} with fail_empty: {s:?}");
            let recs = records(&out);
            assert!(
                recs.iter().all(|r| r
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("empty directory"))),
                "{recs:?}"
            );
        }
    }

    fn records(out: &Path) -> Vec<AccessRecord> {
        std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("valid record"))
            .collect()
    }

    #[test]
    fn ls_on_a_local_dir_records_only_successes_from_both_workers() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("a.py"), "x").expect("write");
        let out = d.path().join("acc.jsonl");
        let s = run_access(&cfg(d.path(), Op::LsRead, &out)).expect("run");
        let recs = records(&out);
        assert_eq!(s.total as usize, recs.len());
        assert!(
            recs.len() >= 6,
            "expected several accesses, got {}",
            recs.len()
        );
        assert!(recs.iter().all(|r| r.ok && r.label == "t"));
        assert!(recs.iter().any(|r| r.worker == 1));
    }

    #[test]
    fn a_missing_path_records_enoent() {
        let d = tempfile::tempdir().expect("tempdir");
        let out = d.path().join("acc.jsonl");
        let mut c = cfg(&d.path().join("missing"), Op::Ls, &out);
        c.workers = 1;
        run_access(&c).expect("run");
        let recs = records(&out);
        assert!(!recs.is_empty());
        assert!(recs.iter().all(|r| !r.ok && r.errno == Some(libc_enoent())));
    }

    fn libc_enoent() -> i32 {
        2
    }

    #[test]
    fn an_access_blocked_for_ever_is_recorded_as_blocked_and_the_run_still_ends() {
        // Opening a FIFO with no writer blocks in the kernel, like a hard NFS mount on a
        // hung server.
        let d = tempfile::tempdir().expect("tempdir");
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        let out = d.path().join("acc.jsonl");
        let mut c = cfg(&fifo, Op::Read, &out);
        c.workers = 1;
        c.duration = Duration::from_millis(200);
        let started = Instant::now();
        let s = run_access(&c).expect("run");
        // Functional deadline: duration + drain + generous slack.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "run did not end"
        );
        assert_eq!(s.blocked, 1);
        let recs = records(&out);
        let b = recs.iter().find(|r| r.blocked).expect("a blocked record");
        assert!(!b.ok);
        assert!(b.latency_ms >= 100.0, "blocked for {} ms", b.latency_ms);
    }

    #[test]
    fn op_names_parse() {
        assert_eq!(Op::parse("held-write"), Some(Op::HeldWrite));
        assert_eq!(Op::parse("statfs"), Some(Op::Statfs));
        assert_eq!(Op::parse("bogus"), None);
    }
}
