//! The active replica of each mount whose servers export different paths, kept on disk.
//!
//! Role: with replica volumes (seed 001: a source `10.1.13.5:/crr-site1` and its
//! cross-zone replica `10.2.13.5:/crr-dest1`) each candidate has its own data. After a
//! failover to the replica, and once replication is broken, applications write to the
//! replica; the source, when it comes back, is *stale*. So the agent keeps, per mount,
//! the replica it considers active and a generation number, in a root-owned file
//! `<state_dir>/replica-<escaped mountpoint>.json` ([`ReplicaStore`]). At start and at
//! every (re)mount the recorded replica is mounted if it answers; a replica that is
//! merely preferred is never mounted. Moving to another replica because the active one
//! does not answer is a failover: the generation goes up and the new record is written
//! (temp file, fsync, rename, fsync of the directory) *before* the new mount is moved
//! onto the mountpoint, so a crash at any point leaves either the old record with the
//! old mount (or none) or the new record — never the preferred stale source chosen by
//! default. An operator moves it with `nfsha recover MOUNT --replica HOST:EXPORT`.
//!
//! When there is no usable record ([`Loaded::Missing`], [`Loaded::Corrupt`], or a file
//! not owned by root or writable by others): if a mount of the mountpoint exists and
//! comes from one of the replicas, that replica is adopted as active (it is what
//! applications see right now); otherwise the agent refuses to choose
//! (`no-active-replica`, reported as an event, in the log and in `nfsha status`) and
//! mounts nothing until an operator names the replica. The preferred replica is never
//! taken by default: after a reboot with a lost record it is exactly the stale source.
//! Every such problem is reported once per occurrence.
//!
//! Failure modes: an unreadable or unparsable file is [`Loaded::Corrupt`]; a write that
//! fails ([`StateError`]) aborts the failover before the move (the old mount stays).
//! Mounts whose servers all share one export path never use this module.

use nfsha_config::Replica;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Format version of the state file.
pub const STATE_VERSION: u32 = 1;

/// The record of one mount's active replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRecord {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The mountpoint (checked on load: a file of another mount is corrupt).
    pub mountpoint: String,
    /// The active replica's host, as configured.
    pub host: String,
    /// The active replica's export path.
    pub export: String,
    /// Bumped by every change of the active replica (failover, operator, adoption).
    pub generation: u64,
    /// Why this replica became active.
    pub reason: String,
    /// When it was written (ms since the epoch).
    pub updated_ms: u64,
}

impl ActiveRecord {
    /// The active replica.
    pub fn replica(&self) -> Replica {
        Replica {
            host: self.host.clone(),
            export: self.export.clone(),
        }
    }
}

/// What loading a mount's record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// A valid record.
    Found(ActiveRecord),
    /// No file.
    Missing,
    /// A file that cannot be trusted, and why.
    Corrupt(String),
}

/// Why the state could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory could not be created.
    #[error("Cannot create the state directory {}", .0.display())]
    CreateDir(PathBuf, #[source] std::io::Error),
    /// Writing, syncing or renaming the file failed.
    #[error("Cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
}

/// The state files of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStore {
    dir: PathBuf,
}

/// A mountpoint as a file name: `/misc/crr` → `misc-crr`; bytes other than ASCII
/// letters, digits, `.` and `_` (and `-` itself) are written `%XX`, so two
/// mountpoints never share a file.
pub fn escape(mountpoint: &Path) -> String {
    let s = mountpoint.as_os_str().as_encoded_bytes();
    let s = s.strip_prefix(b"/").unwrap_or(s);
    let mut out = String::new();
    for &b in s {
        match b {
            b'/' => out.push('-'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl ReplicaStore {
    /// The store in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ReplicaStore { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `mountpoint`'s record.
    pub fn path_for(&self, mountpoint: &Path) -> PathBuf {
        self.dir
            .join(format!("replica-{}.json", escape(mountpoint)))
    }

    /// Load `mountpoint`'s record.
    pub fn load(&self, mountpoint: &Path) -> Loaded {
        let path = self.path_for(mountpoint);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return Loaded::Corrupt(format!("cannot read {}: {e}", path.display())),
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if !meta.is_file() {
            return Loaded::Corrupt(format!("{} is not a regular file", path.display()));
        }
        if meta.uid() != euid || meta.mode() & 0o022 != 0 {
            return Loaded::Corrupt(format!(
                "{} is not owned by uid {euid} or is writable by others: not trusted",
                path.display()
            ));
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return Loaded::Corrupt(format!("cannot read {}: {e}", path.display())),
        };
        let rec: ActiveRecord = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(e) => return Loaded::Corrupt(format!("{} is not a record: {e}", path.display())),
        };
        if rec.version != STATE_VERSION {
            return Loaded::Corrupt(format!(
                "{} has format version {} (this agent reads {STATE_VERSION})",
                path.display(),
                rec.version
            ));
        }
        if Path::new(&rec.mountpoint) != mountpoint {
            return Loaded::Corrupt(format!(
                "{} belongs to {}, not {}",
                path.display(),
                rec.mountpoint,
                mountpoint.display()
            ));
        }
        Loaded::Found(rec)
    }

    /// Write `rec` atomically: a temp file in the same directory (mode 0600), fsync,
    /// rename over the record, fsync of the directory. Either the old or the new
    /// record survives a crash at any point.
    pub fn save(&self, rec: &ActiveRecord) -> Result<(), StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| StateError::CreateDir(self.dir.clone(), e))?;
        let path = self.path_for(Path::new(&rec.mountpoint));
        let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
        let werr = |e| StateError::Write(path.clone(), e);
        let text = serde_json::to_string_pretty(rec)
            .map_err(|e| werr(std::io::Error::other(e.to_string())))?;
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(werr)
    }
}

/// One mount's active replica: its store, the record in effect, and the problem
/// with the file, if any (shown by `nfsha status`).
#[derive(Debug, Clone)]
pub struct ReplicaBook {
    store: ReplicaStore,
    mountpoint: PathBuf,
    record: Option<ActiveRecord>,
    /// Why there is no usable record on disk (missing, corrupt), while unresolved.
    pub problem: Option<String>,
}

impl ReplicaBook {
    /// Load `mountpoint`'s record from `store`. The second value is a problem to
    /// report (a missing or corrupt file), if any.
    pub fn open(store: ReplicaStore, mountpoint: &Path) -> (Self, Option<String>) {
        let (record, problem) = match store.load(mountpoint) {
            Loaded::Found(r) => (Some(r), None),
            Loaded::Missing => (
                None,
                Some(format!(
                    "no record of the active replica ({} is missing)",
                    store.path_for(mountpoint).display()
                )),
            ),
            Loaded::Corrupt(why) => (None, Some(format!("state file corrupt: {why}"))),
        };
        let book = ReplicaBook {
            store,
            mountpoint: mountpoint.to_path_buf(),
            record,
            problem: problem.clone(),
        };
        (book, problem)
    }

    /// The active replica, if one is known.
    pub fn active(&self) -> Option<Replica> {
        self.record.as_ref().map(ActiveRecord::replica)
    }

    /// The record in effect.
    pub fn record(&self) -> Option<&ActiveRecord> {
        self.record.as_ref()
    }

    /// The record that makes `to` active, one generation on (not written yet).
    pub fn next(&self, to: &Replica, reason: impl Into<String>, now_ms: u64) -> ActiveRecord {
        ActiveRecord {
            version: STATE_VERSION,
            mountpoint: self.mountpoint.display().to_string(),
            host: to.host.clone(),
            export: to.export.clone(),
            generation: self.record.as_ref().map_or(0, |r| r.generation) + 1,
            reason: reason.into(),
            updated_ms: now_ms,
        }
    }

    /// Write `rec` to disk, then make it the record in effect (only once it is durable).
    pub fn commit(&mut self, rec: ActiveRecord) -> Result<(), StateError> {
        self.store.save(&rec)?;
        self.record = Some(rec);
        self.problem = None;
        Ok(())
    }

    /// Re-read the file before a (re)mount: the record on disk is the truth. A file
    /// that vanished or broke while the record in memory is good is written again
    /// from memory; the returned text says what happened, to report.
    pub fn refresh(&mut self) -> Option<String> {
        match self.store.load(&self.mountpoint) {
            Loaded::Found(r) => {
                self.record = Some(r);
                None
            }
            other => {
                let what = match other {
                    Loaded::Corrupt(why) => format!("state file corrupt: {why}"),
                    _ => "state file missing".to_string(),
                };
                let rec = self.record.clone()?;
                Some(match self.store.save(&rec) {
                    Ok(()) => format!(
                        "{what}; written again from memory (generation {})",
                        rec.generation
                    ),
                    Err(e) => {
                        let msg = format!(
                            "{what}; cannot write it again: {}",
                            nfsha_core::error_chain(&e)
                        );
                        self.problem = Some(msg.clone());
                        msg
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(mp: &str, generation: u64) -> ActiveRecord {
        ActiveRecord {
            version: STATE_VERSION,
            mountpoint: mp.into(),
            host: "10.2.13.5".into(),
            export: "/crr-dest1".into(),
            generation,
            reason: "test".into(),
            updated_ms: 1,
        }
    }

    #[test]
    fn escaped_names_are_distinct_and_flat() {
        assert_eq!(escape(Path::new("/misc/crr")), "misc-crr");
        assert_eq!(escape(Path::new("/a-b")), "a%2Db");
        assert_ne!(escape(Path::new("/a/b")), escape(Path::new("/a-b")));
        assert!(!escape(Path::new("/x/../y z")).contains('/'));
    }

    #[test]
    fn save_then_load_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReplicaStore::new(dir.path().join("state"));
        assert_eq!(store.load(Path::new("/misc/crr")), Loaded::Missing);
        store.save(&rec("/misc/crr", 1)).unwrap();
        store.save(&rec("/misc/crr", 2)).unwrap();
        assert_eq!(
            store.load(Path::new("/misc/crr")),
            Loaded::Found(rec("/misc/crr", 2))
        );
        let mode = fs::metadata(store.path_for(Path::new("/misc/crr")))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::metadata(store.dir()).unwrap().mode() & 0o777, 0o700);
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(store.dir()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn untrusted_or_broken_files_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReplicaStore::new(dir.path());
        let mp = Path::new("/misc/crr");
        let path = store.path_for(mp);
        fs::write(&path, "{ not json").unwrap();
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert!(matches!(store.load(mp), Loaded::Corrupt(m) if m.contains("not a record")));
        // Another mount's record under this name.
        store.save(&rec("/other", 1)).unwrap();
        fs::rename(store.path_for(Path::new("/other")), &path).unwrap();
        assert!(matches!(store.load(mp), Loaded::Corrupt(m) if m.contains("belongs to /other")));
        // Writable by others: not trusted.
        store.save(&rec("/misc/crr", 1)).unwrap();
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        assert!(matches!(store.load(mp), Loaded::Corrupt(m) if m.contains("not trusted")));
        // A temp file left by a crash before the rename is not the record.
        fs::remove_file(&path).unwrap();
        fs::write(path.with_extension("json.tmp.1"), "{}").unwrap();
        assert_eq!(store.load(mp), Loaded::Missing);
    }

    #[test]
    fn a_failed_write_keeps_the_old_record() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let store = ReplicaStore::new(&file);
        assert!(matches!(
            store.save(&rec("/m", 1)),
            Err(StateError::CreateDir(..))
        ));
    }
}
