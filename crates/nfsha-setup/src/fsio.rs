//! File writes of `nfsha setup`: atomic replace, timestamped backups, the manifest.
//!
//! Role: every change goes through [`write_atomic`] (temp file in the same directory,
//! fsync, rename, fsync of the directory; mode and owner of a replaced file kept), and
//! is recorded in the manifest that `--undo` reads. Failure modes: I/O errors are
//! returned with the path; a failed write leaves the old file in place (the temp file is
//! removed).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the manifest lives (inside the target root).
pub const MANIFEST: &str = "/var/lib/nfsha/setup/manifest.json";
/// Where backups live (inside the target root), one directory per run.
pub const BACKUP_DIR: &str = "/var/lib/nfsha/setup/backups";

/// `path` (absolute on the target system) inside `root`.
pub fn in_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Replace `path` atomically with `data`. A new file gets `new_mode`; an existing one
/// keeps its mode and owner. Missing parent directories are created (and returned, outermost
/// first, so that undo can remove them).
pub fn write_atomic(path: &Path, data: &[u8], new_mode: u32) -> std::io::Result<Vec<PathBuf>> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("path has no parent"))?;
    let mut created = Vec::new();
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.into_iter().rev() {
        fs::create_dir(&m)?;
        created.push(m);
    }
    let old = fs::metadata(path).ok();
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.nfsha-tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        let mode = old
            .as_ref()
            .map_or(new_mode, |m| m.permissions().mode() & 0o7777);
        if let Some(m) = &old {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| created)
}

/// Remove `path` and fsync its directory.
pub fn remove_file(path: &Path) -> std::io::Result<()> {
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What setup did to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The file (absolute on the target system).
    pub path: PathBuf,
    /// Backup of the original bytes (absolute on the target system); `None` if setup created the file.
    pub backup: Option<PathBuf>,
    /// Whether only marker-commented lines were changed (fstab, autofs maps).
    pub marker_edit: bool,
    /// What setup last wrote.
    pub written: String,
}

/// The manifest: every file setup changed since the last undo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// Files, in the order first changed.
    pub files: Vec<Record>,
    /// Directories setup created (outermost first).
    pub created_dirs: Vec<PathBuf>,
}

impl Manifest {
    /// Read the manifest of `root`, if any.
    pub fn load(root: &Path) -> Result<Option<Manifest>, String> {
        let p = in_root(root, Path::new(MANIFEST));
        match fs::read_to_string(&p) {
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| format!("{}: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// The record of `path`.
    pub fn get_mut(&mut self, path: &Path) -> Option<&mut Record> {
        self.files.iter_mut().find(|r| r.path == path)
    }
}

/// A UTC timestamp `YYYYMMDDTHHMMSSZ` for backup directory names.
pub fn timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(1_795_307_045)),
            "20261122T002405Z"
        );
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
    }

    #[test]
    fn atomic_write_keeps_mode_and_creates_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/file");
        let created = write_atomic(&p, b"one", 0o644).unwrap();
        assert_eq!(created, [dir.path().join("a"), dir.path().join("a/b")]);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(write_atomic(&p, b"two", 0o644).unwrap().is_empty());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
