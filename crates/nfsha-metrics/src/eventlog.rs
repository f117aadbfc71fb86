//! The structured event log: [`EventSink`] (write side) and [`read_events`] (read side).
//!
//! Role: every [`nfsha_core::Event`] the agent emits goes three ways at once:
//! 1. a `tracing` event with target [`TRACING_TARGET`] and fixed field names
//!    (`event_kind mount server from to step outcome duration_ms errno errno_name reason`),
//!    so journald stores them as fields (tracing-journald upper-cases them and, unless its
//!    prefix is turned off, prefixes `F_`); level WARN when `outcome` is `failed`, else INFO;
//! 2. one JSON line appended to the optional event-log file (created `0640`, parent dirs
//!    `0750`, one `write(2)` per line on an `O_APPEND` descriptor, so readers never see a
//!    half-written line unless the process dies mid-write);
//! 3. an in-memory ring of the last [`DEFAULT_RING`] events for the agent to serve.
//!
//! Failure modes: [`EventSink::emit`] never fails or blocks on anything but the local file:
//! a write error is logged, counted ([`EventSink::write_errors`]) and the file is reopened on
//! the next event. A file renamed away by logrotate is noticed (its inode changes) and a new
//! one is created. A file whose last line was torn by a crash gets a newline in front of the
//! next record (the same `write(2)`; nothing is written at open), and [`read_events`] ignores
//! torn or undecodable lines (the last one silently, the others with a warning).
//!
//! Opening: a path that cannot be a log (a symlink — opened with `O_NOFOLLOW` —, a directory,
//! a parent that is a file, no permission) is an error, so a bad setting fails at start-up or
//! reload. A storage condition — the filesystem is full (`ENOSPC`, `EDQUOT`), read-only
//! (`EROFS`) or failing (`EIO`) — is not: the agent must keep mounts healthy even when
//! `/var/log` is full (a crash on a full disk leaves exactly the torn line that used to need a
//! write at open). The sink then starts without its file, says so, counts a write error, and
//! retries the file at every event; the in-memory ring works throughout.

use nfsha_core::Event;
use std::collections::VecDeque;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Events kept in memory by default.
pub const DEFAULT_RING: usize = 1000;

/// The `tracing` target of event records.
pub const TRACING_TARGET: &str = "nfsha::event";

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// The directory of the log could not be created.
    #[error("Cannot create directory {}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The log file could not be opened or created.
    #[error("Cannot open event log {}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The log file could not be read.
    #[error("Cannot read event log {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct OpenLog {
    file: File,
    dev: u64,
    ino: u64,
    /// The last line was torn (no final newline): the next record starts with one.
    torn: bool,
}

impl EventLogError {
    /// Whether this is a condition of the storage (full, read-only, failing) rather than a
    /// path that can never hold a log: the sink then runs without its file for a while.
    pub fn is_storage_condition(&self) -> bool {
        let source = match self {
            EventLogError::CreateDir { source, .. }
            | EventLogError::Open { source, .. }
            | EventLogError::Read { source, .. } => source,
        };
        matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EIO)
        )
    }
}

/// Where the agent sends its events. Share it as `Arc<EventSink>`; every method takes `&self`.
#[derive(Debug)]
pub struct EventSink {
    path: Mutex<Option<PathBuf>>,
    file: Mutex<Option<OpenLog>>,
    ring: Mutex<VecDeque<Event>>,
    capacity: usize,
    write_errors: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventSink {
    /// A sink writing to `path` (if any), keeping [`DEFAULT_RING`] events in memory.
    /// The file and its parent directories are created now, so a bad path fails at start-up.
    pub fn open(path: Option<&Path>) -> Result<EventSink, EventLogError> {
        EventSink::with_capacity(path, DEFAULT_RING)
    }

    /// Like [`open`](Self::open) with a ring of `capacity` events (at least 1).
    /// A full, read-only or failing filesystem is not an error here (see the module doc).
    pub fn with_capacity(path: Option<&Path>, capacity: usize) -> Result<EventSink, EventLogError> {
        let mut write_errors = 0;
        let file = match path.map(open_log).transpose() {
            Ok(file) => file,
            Err(e) if e.is_storage_condition() => {
                write_errors = 1;
                tracing::error!(
                    error = %nfsha_core::error_chain(&e),
                    "the event log cannot be written now; starting without it (events stay in \
                     memory, the file is retried at every event)"
                );
                None
            }
            Err(e) => return Err(e),
        };
        Ok(EventSink {
            path: Mutex::new(path.map(Path::to_path_buf)),
            file: Mutex::new(file),
            ring: Mutex::new(VecDeque::with_capacity(capacity.clamp(1, DEFAULT_RING))),
            capacity: capacity.max(1),
            write_errors: AtomicU64::new(write_errors),
        })
    }

    /// The file events are appended to, if any.
    pub fn path(&self) -> Option<PathBuf> {
        lock(&self.path).clone()
    }

    /// Append to `path` from now on (`None`: no file), keeping the in-memory ring. The
    /// new file is opened first: on failure nothing changes.
    pub fn set_path(&self, path: Option<&Path>) -> Result<(), EventLogError> {
        let file = match path {
            Some(p) => Some(open_log(p)?),
            None => None,
        };
        let mut slot = lock(&self.file);
        *lock(&self.path) = path.map(Path::to_path_buf);
        *slot = file;
        Ok(())
    }

    /// Record one event: tracing, file, ring. Never fails (see the module doc).
    pub fn emit(&self, event: Event) {
        trace_event(&event);
        let path = self.path();
        if let Some(path) = &path {
            let mut line = event.to_json_line();
            line.push('\n');
            if let Err(e) = self.append(path, line.as_bytes()) {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, path = %path.display(), "Cannot write event log");
            }
        }
        let mut ring = lock(&self.ring);
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> Result<(), EventLogError> {
        let mut slot = lock(&self.file);
        // Reopen when the file was rotated or removed (or a previous write failed).
        let current = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let stale = match (&*slot, current) {
            (Some(open), Some((dev, ino))) => open.dev != dev || open.ino != ino,
            _ => true,
        };
        if stale {
            *slot = None;
            *slot = Some(open_log(path)?);
        }
        let Some(open) = slot.as_mut() else {
            return Ok(());
        };
        // One write(2) on an O_APPEND fd: the line lands whole (local filesystems), with
        // the newline that ends a torn last line in front of it.
        let result = if open.torn {
            let mut joined = Vec::with_capacity(bytes.len() + 1);
            joined.push(b'\n');
            joined.extend_from_slice(bytes);
            open.file.write_all(&joined)
        } else {
            open.file.write_all(bytes)
        }
        .and_then(|()| open.file.flush());
        if result.is_ok() {
            open.torn = false;
        }
        if let Err(source) = result {
            *slot = None;
            return Err(EventLogError::Open {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(())
    }

    /// The events in memory, oldest first.
    pub fn recent(&self) -> Vec<Event> {
        lock(&self.ring).iter().cloned().collect()
    }

    /// The events in memory with `ts_ms >= since_ms`, oldest first.
    pub fn recent_since(&self, since_ms: u64) -> Vec<Event> {
        lock(&self.ring)
            .iter()
            .filter(|e| e.ts_ms >= since_ms)
            .cloned()
            .collect()
    }

    /// File writes that failed since start.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }
}

fn open_log(path: &Path) -> Result<OpenLog, EventLogError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|source| EventLogError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let open_err = |source| EventLogError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        // Never follow a symlink planted at the log's path.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    // A crash mid-write leaves a torn last line: the next record starts with a newline
    // (written with it, not now: a full disk must not stop the agent from starting).
    let torn = if meta.len() > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, meta.len() - 1)
            .map_err(open_err)?;
        last[0] != b'\n'
    } else {
        false
    };
    Ok(OpenLog {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        torn,
    })
}

/// Emit the tracing record of an event with the fixed field names.
fn trace_event(e: &Event) {
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let errno_name = e.errno.map(nfsha_core::state::errno_name);
    let message = summary(e);
    macro_rules! ev {
        ($level:expr) => {
            tracing::event!(
                target: TRACING_TARGET,
                $level,
                event_kind = kind.as_str(),
                mount = e.mount.as_deref(),
                server = e.server.as_deref(),
                from = e.from.as_deref(),
                to = e.to.as_deref(),
                step = e.step.as_deref(),
                outcome = e.outcome.as_deref(),
                duration_ms = e.duration_ms,
                errno = e.errno,
                errno_name = errno_name,
                reason = e.reason.as_deref(),
                ts_ms = e.ts_ms,
                "{}",
                message
            )
        };
    }
    if e.outcome.as_deref() == Some("failed") {
        ev!(tracing::Level::WARN);
    } else {
        ev!(tracing::Level::INFO);
    }
}

/// A one-line human summary (`/airflow/dags healthy->stale ESTALE(116) …`).
pub fn summary(e: &Event) -> String {
    match &e.mount {
        Some(m) => format!("{m} {}", detail(e)).trim_end().to_string(),
        None => detail(e),
    }
}

/// Everything of [`summary`] but the mount (for tables that show the mount in a column).
pub fn detail(e: &Event) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(s) = &e.server {
        parts.push(format!("server={s}"));
    }
    if let (Some(f), Some(t)) = (&e.from, &e.to) {
        parts.push(format!("{f}->{t}"));
    }
    if let Some(s) = &e.step {
        parts.push(format!("step={s}"));
    }
    if let Some(o) = &e.outcome {
        parts.push(format!("outcome={o}"));
    }
    if let Some(d) = e.duration_ms {
        parts.push(format!("{d}ms"));
    }
    if let Some(n) = e.errno {
        parts.push(format!("{}({n})", nfsha_core::state::errno_name(n)));
    }
    if let Some(r) = &e.reason {
        parts.push(r.clone());
    }
    parts.join(" ")
}

/// Read an event-log file: every decodable event, oldest first, optionally only those
/// newer than `since` ago. A torn last line is ignored; other undecodable lines are skipped
/// with a warning.
pub fn read_events(path: &Path, since: Option<Duration>) -> Result<Vec<Event>, EventLogError> {
    let file = File::open(path).map_err(|source| EventLogError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let cutoff = since.map(|d| {
        nfsha_core::event::now_ms().saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    read_events_from(BufReader::new(file), cutoff).map_err(|source| EventLogError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// [`read_events`] over any reader, keeping events with `ts_ms >= cutoff_ms`.
pub fn read_events_from(
    mut reader: impl BufRead,
    cutoff_ms: Option<u64>,
) -> std::io::Result<Vec<Event>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut lineno = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lineno += 1;
        let complete = buf.last() == Some(&b'\n');
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(text) {
            Ok(e) => {
                if cutoff_ms.is_none_or(|c| e.ts_ms >= c) {
                    out.push(e);
                }
            }
            // No newline at the end: the writer died (or is) mid-line. Not an error.
            Err(_) if !complete => {}
            Err(err) => {
                tracing::warn!(line = lineno, error = %err, "Skipping undecodable event line");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfsha_core::EventKind;
    use std::os::unix::fs::PermissionsExt;

    fn ev(ts: u64, mount: &str) -> Event {
        let mut e = Event::new(EventKind::MountStateChanged)
            .mount(mount)
            .transition("healthy", "stale")
            .errno(Some(116));
        e.ts_ms = ts;
        e
    }

    #[test]
    fn round_trip_through_the_file_with_mode_and_parent_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/events.jsonl");
        let sink = EventSink::open(Some(&path)).unwrap();
        let now = nfsha_core::event::now_ms();
        let events = [
            ev(now - 3_600_000, "/old"),
            ev(now, "/x"),
            ev(now + 1, "/y"),
        ];
        for e in &events {
            sink.emit(e.clone());
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o} wider than 0640");
        assert!(path.parent().unwrap().is_dir());
        assert_eq!(read_events(&path, None).unwrap(), events.to_vec());
        let recent = read_events(&path, Some(Duration::from_secs(600))).unwrap();
        assert_eq!(recent, events[1..].to_vec());
        assert_eq!(sink.write_errors(), 0);
    }

    #[test]
    fn torn_last_line_is_ignored_and_repaired_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let good = ev(1, "/a");
        let torn = &ev(2, "/b").to_json_line()[..20];
        std::fs::write(&path, format!("{}\n{torn}", good.to_json_line())).unwrap();
        assert_eq!(read_events(&path, None).unwrap(), vec![good.clone()]);
        // A new writer ends the torn line first, so the next record stays decodable.
        let sink = EventSink::open(Some(&path)).unwrap();
        let next = ev(3, "/c");
        sink.emit(next.clone());
        assert_eq!(read_events(&path, None).unwrap(), vec![good, next]);
    }

    #[test]
    fn set_path_moves_the_log_and_keeps_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("sub/b.jsonl");
        let sink = EventSink::open(Some(&a)).unwrap();
        sink.emit(ev(1, "/x"));
        sink.set_path(Some(&b)).unwrap();
        sink.emit(ev(2, "/y"));
        assert_eq!(read_events(&a, None).unwrap(), vec![ev(1, "/x")]);
        assert_eq!(read_events(&b, None).unwrap(), vec![ev(2, "/y")]);
        assert_eq!(sink.recent().len(), 2, "the ring survives");
        // A path that cannot be opened changes nothing.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        assert!(sink.set_path(Some(&blocker.join("x.jsonl"))).is_err());
        assert_eq!(sink.path(), Some(b.clone()));
        sink.set_path(None).unwrap();
        sink.emit(ev(3, "/z"));
        assert_eq!(read_events(&b, None).unwrap().len(), 1);
    }

    #[test]
    fn ring_keeps_the_last_n() {
        let sink = EventSink::with_capacity(None, 3).unwrap();
        for i in 0..5 {
            sink.emit(ev(i, "/m"));
        }
        let ts: Vec<u64> = sink.recent().iter().map(|e| e.ts_ms).collect();
        assert_eq!(ts, vec![2, 3, 4]);
        assert_eq!(sink.recent_since(4).len(), 1);
    }

    #[test]
    fn a_rotated_file_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let sink = EventSink::open(Some(&path)).unwrap();
        sink.emit(ev(1, "/a"));
        std::fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
        sink.emit(ev(2, "/b"));
        assert_eq!(read_events(&path, None).unwrap(), vec![ev(2, "/b")]);
        assert_eq!(
            read_events(&dir.path().join("events.jsonl.1"), None).unwrap(),
            vec![ev(1, "/a")]
        );
    }

    #[test]
    fn a_garbled_middle_line_is_skipped() {
        let text = format!(
            "{}\nnot json\n{}\n",
            ev(1, "/a").to_json_line(),
            ev(2, "/b").to_json_line()
        );
        let got = read_events_from(text.as_bytes(), None).unwrap();
        assert_eq!(got, vec![ev(1, "/a"), ev(2, "/b")]);
    }

    #[test]
    fn missing_file_is_an_error_naming_the_path() {
        let err = read_events(Path::new("/nonexistent/nfsha/events.jsonl"), None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/nfsha/events.jsonl"));
    }

    /// Records the field names and values of every event on the event target.
    type Captured = (tracing::Level, Vec<(String, String)>);

    #[derive(Default, Clone)]
    struct Capture(std::sync::Arc<Mutex<Vec<Captured>>>);

    struct Fields(Vec<(String, String)>);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
            self.0.push((f.name().to_owned(), format!("{v:?}")));
        }
        fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
            self.0.push((f.name().to_owned(), v.to_owned()));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() == TRACING_TARGET {
                let mut f = Fields(Vec::new());
                event.record(&mut f);
                lock(&self.0).push((*event.metadata().level(), f.0));
            }
        }
    }

    #[test]
    fn tracing_records_carry_the_fixed_field_names() {
        use tracing_subscriber::layer::SubscriberExt;
        let cap = Capture::default();
        let subscriber = tracing_subscriber::registry().with(cap.clone());
        tracing::subscriber::with_default(subscriber, || {
            let sink = EventSink::open(None).unwrap();
            sink.emit(ev(5, "/airflow/dags").server("nfs-2"));
            sink.emit(
                Event::new(EventKind::RecoveryStep)
                    .mount("/airflow/dags")
                    .step("mount")
                    .outcome("failed")
                    .duration(Duration::from_millis(30)),
            );
        });
        let got = lock(&cap.0).clone();
        assert_eq!(got.len(), 2);
        let (level, fields) = &got[0];
        assert_eq!(*level, tracing::Level::INFO);
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        // Absent optional fields are left out, present ones use the fixed names.
        assert_eq!(
            names,
            [
                "message",
                "event_kind",
                "mount",
                "server",
                "from",
                "to",
                "errno",
                "errno_name",
                "ts_ms"
            ]
        );
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("event_kind"), Some("mount_state_changed"));
        assert_eq!(get("errno_name"), Some("ESTALE"));
        assert_eq!(get("to"), Some("stale"));
        let (level, fields) = &got[1];
        assert_eq!(*level, tracing::Level::WARN, "failed outcomes are warnings");
        assert!(fields.iter().any(|(n, v)| n == "duration_ms" && v == "30"));
        assert!(fields.iter().any(|(n, v)| n == "step" && v == "mount"));
    }

    #[test]
    fn summary_names_the_errno() {
        let s = summary(&ev(1, "/airflow/dags"));
        assert_eq!(s, "/airflow/dags healthy->stale ESTALE(116)");
    }
}
