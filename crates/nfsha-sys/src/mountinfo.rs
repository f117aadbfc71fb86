//! The mount table, read from `/proc/self/mountinfo`.
//!
//! Role: tell which filesystem is mounted at a path, from which server and export,
//! without touching the path itself (reading mountinfo is answered from kernel
//! memory and never contacts an NFS server, so it cannot hang on a dead mount).
//! Fields the kernel escapes (`\040` space, `\011` tab, `\012` newline, `\134`
//! backslash, any `\ooo` in fact) are decoded, so mountpoints with spaces work.
//!
//! Failure modes: a line that does not have the documented shape is an error that
//! names the line number and what is missing; reading the file can fail with I/O.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Errors from reading or parsing mountinfo.
#[derive(Debug, thiserror::Error)]
pub enum MountinfoError {
    /// A line could not be parsed.
    #[error("Malformed mountinfo line {line}: {what}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        what: &'static str,
    },
    /// The file could not be read.
    #[error("Cannot read {path}")]
    Read {
        /// The path that was read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One line of `/proc/self/mountinfo` (see proc_pid_mountinfo(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Unique id of the mount (field 1).
    pub mount_id: u32,
    /// Id of the parent mount (field 2).
    pub parent_id: u32,
    /// `st_dev` of files on this filesystem, as (major, minor).
    pub major_minor: (u32, u32),
    /// The directory of the filesystem that forms the root of this mount (decoded).
    pub root: PathBuf,
    /// The mountpoint, relative to the process's root (decoded).
    pub mountpoint: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub mount_options: String,
    /// Optional fields such as `shared:1` or `master:2`.
    pub optional_fields: Vec<String>,
    /// Filesystem type (`nfs4`, `fuse.x`, ...), decoded.
    pub fstype: String,
    /// Mount source (`server:/export` for NFS), decoded.
    pub source: String,
    /// Per-superblock options (`rw,vers=4.1,...,addr=10.0.0.1`), decoded.
    pub super_options: String,
}

impl MountEntry {
    /// True for `nfs` and `nfs4` mounts.
    pub fn is_nfs(&self) -> bool {
        self.fstype == "nfs" || self.fstype == "nfs4"
    }

    /// True for FUSE mounts (`fuse`, `fuse.<subtype>`, `fuseblk`); used by tests.
    pub fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype.starts_with("fuse.") || self.fstype == "fuseblk"
    }

    /// The value of a `key=value` super option, if present.
    pub fn super_option(&self, key: &str) -> Option<&str> {
        self.super_options
            .split(',')
            .find_map(|o| o.split_once('=').and_then(|(k, v)| (k == key).then_some(v)))
    }

    /// The NFS server: `addr=` from the super options, else the host part of the
    /// `host:/export` source (brackets of `[v6]:/x` removed).
    pub fn nfs_server(&self) -> Option<String> {
        if let Some(addr) = self.super_option("addr")
            && !addr.is_empty()
        {
            return Some(addr.to_string());
        }
        split_nfs_source(&self.source).map(|(h, _)| h.to_string())
    }

    /// The exported path from the `host:/export` source.
    pub fn nfs_export(&self) -> Option<String> {
        split_nfs_source(&self.source).map(|(_, e)| e.to_string())
    }
}

/// Split `host:/export` or `[v6]:/export` into (host, export).
fn split_nfs_source(source: &str) -> Option<(&str, &str)> {
    if let Some(rest) = source.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let export = after.strip_prefix(':')?;
        return (!host.is_empty()).then_some((host, export));
    }
    let (host, export) = source.split_once(':')?;
    (!host.is_empty()).then_some((host, export))
}

/// Decode the kernel's `\ooo` octal escapes (one implementation: [`nfsha_core::octal`]).
pub fn unescape(field: &[u8]) -> Vec<u8> {
    nfsha_core::octal::unescape(field)
}

/// Escape a field the way the kernel does (space, tab, newline, backslash as `\ooo`).
pub fn escape(field: &[u8]) -> Vec<u8> {
    nfsha_core::octal::escape(field)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(bytes)).into_owned()
}

fn path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(bytes)))
}

fn parse_line(line: &[u8], n: usize) -> Result<MountEntry, MountinfoError> {
    let bad = |what| MountinfoError::Malformed { line: n, what };
    let fields: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    let sep = fields
        .iter()
        .position(|f| *f == b"-")
        .ok_or_else(|| bad("no '-' separator"))?;
    if sep < 6 {
        return Err(bad("fewer than 6 fields before '-'"));
    }
    if fields.len() < sep + 3 {
        return Err(bad("fewer than 2 fields after '-'"));
    }
    let num = |f: &[u8], what| {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| bad(what))
    };
    let mount_id = num(fields[0], "mount id is not a number")?;
    let parent_id = num(fields[1], "parent id is not a number")?;
    let mm = std::str::from_utf8(fields[2]).map_err(|_| bad("bad major:minor"))?;
    let (ma, mi) = mm.split_once(':').ok_or_else(|| bad("bad major:minor"))?;
    let major_minor = (
        ma.parse().map_err(|_| bad("bad major:minor"))?,
        mi.parse().map_err(|_| bad("bad major:minor"))?,
    );
    Ok(MountEntry {
        mount_id,
        parent_id,
        major_minor,
        root: path(fields[3]),
        mountpoint: path(fields[4]),
        mount_options: lossy(fields[5]),
        optional_fields: fields[6..sep].iter().map(|f| lossy(f)).collect(),
        fstype: lossy(fields[sep + 1]),
        source: lossy(fields[sep + 2]),
        super_options: fields.get(sep + 3).map(|f| lossy(f)).unwrap_or_default(),
    })
}

/// Parse mountinfo text (raw bytes: mountpoints need not be UTF-8).
pub fn parse_mountinfo_bytes(text: &[u8]) -> Result<Vec<MountEntry>, MountinfoError> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_line(l, i + 1))
        .collect()
}

/// Parse mountinfo text.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, MountinfoError> {
    parse_mountinfo_bytes(text.as_bytes())
}

/// Read and parse `/proc/self/mountinfo`.
pub fn read_mountinfo() -> Result<Vec<MountEntry>, MountinfoError> {
    read_mountinfo_from(Path::new("/proc/self/mountinfo"))
}

/// Read and parse a mountinfo file (e.g. `/proc/<pid>/mountinfo`).
pub fn read_mountinfo_from(p: &Path) -> Result<Vec<MountEntry>, MountinfoError> {
    let bytes = std::fs::read(p).map_err(|source| MountinfoError::Read {
        path: p.to_path_buf(),
        source,
    })?;
    parse_mountinfo_bytes(&bytes)
}

/// The topmost mount at `mountpoint` (the last matching line), compared lexically
/// (`/a/b/` equals `/a/b`); the path is never resolved, so it is never touched.
pub fn find_mount<'a>(entries: &'a [MountEntry], mountpoint: &Path) -> Option<&'a MountEntry> {
    entries.iter().rev().find(|e| e.mountpoint == mountpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 22 0:50 / /airflow/dags rw,relatime shared:30 master:7 - nfs4 nfs1.example:/srv/dags rw,vers=4.1,rsize=1048576,hard,proto=tcp,addr=10.1.2.3,clientaddr=10.1.2.9
41 22 0:51 / /airflow/my\\040logs rw,relatime - nfs [fd00::1]:/srv/logs rw,vers=3
42 22 0:52 / /airflow/my\\040logs rw,relatime - nfs4 nfs2:/srv/logs rw,vers=4.2
";

    #[test]
    fn parses_optional_fields_and_escapes() {
        let e = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].optional_fields, vec!["shared:12"]);
        assert_eq!(e[1].root, PathBuf::from("/mnt1"));
        assert_eq!(e[1].major_minor, (98, 0));
        assert_eq!(e[1].super_options, "rw,errors=continue");
        assert_eq!(e[2].optional_fields, vec!["shared:30", "master:7"]);
        assert!(e[2].is_nfs());
        assert_eq!(e[2].nfs_server().as_deref(), Some("10.1.2.3"));
        assert_eq!(e[2].nfs_export().as_deref(), Some("/srv/dags"));
        assert_eq!(e[3].mountpoint, PathBuf::from("/airflow/my logs"));
        assert!(e[3].optional_fields.is_empty());
        assert_eq!(e[3].nfs_server().as_deref(), Some("fd00::1"));
        assert_eq!(e[3].nfs_export().as_deref(), Some("/srv/logs"));
        assert!(!e[0].is_nfs());
        assert_eq!(e[0].nfs_server(), None);
    }

    #[test]
    fn seed_001_replica_source_is_host_and_export() {
        // The seed's `mount` line after the failover, as mountinfo shows it.
        let line = "61 25 0:53 / /misc/crr rw,nosuid,relatime shared:40 - nfs 10.2.13.5:/crr-dest1 rw,vers=3,rsize=262144,wsize=262144,namlen=255,hard,proto=tcp,timeo=60,retrans=2,sec=sys,mountaddr=10.2.13.5,mountvers=3,mountport=635,mountproto=tcp,local_lock=none,addr=10.2.13.5\n";
        let e = parse_mountinfo(line).unwrap();
        assert!(e[0].is_nfs());
        assert_eq!(e[0].nfs_server().as_deref(), Some("10.2.13.5"));
        assert_eq!(e[0].nfs_export().as_deref(), Some("/crr-dest1"));
    }

    #[test]
    fn find_mount_returns_the_topmost() {
        let e = parse_mountinfo(SAMPLE).unwrap();
        let m = find_mount(&e, Path::new("/airflow/my logs/")).unwrap();
        assert_eq!(m.mount_id, 42);
        assert_eq!(m.nfs_server().as_deref(), Some("nfs2"));
        assert!(find_mount(&e, Path::new("/airflow")).is_none());
    }

    #[test]
    fn malformed_lines_are_named() {
        let err =
            parse_mountinfo("22 1 0:21 / /proc rw - proc proc rw\nbroken line\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Malformed mountinfo line 2: no '-' separator"
        );
        let err = parse_mountinfo("x 1 0:21 / /proc rw - proc proc rw\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse_mountinfo("1 1 0:21 / /proc rw -\n").unwrap_err();
        assert!(err.to_string().contains("after '-'"), "{err}");
    }

    #[test]
    fn unknown_backslashes_are_kept() {
        assert_eq!(unescape(br"a\x\12"), br"a\x\12".to_vec());
        assert_eq!(unescape(br"a\040b\134"), b"a b\\".to_vec());
    }

    #[test]
    fn reads_this_process_mount_table() {
        let e = read_mountinfo().unwrap();
        assert!(find_mount(&e, Path::new("/")).is_some());
    }

    proptest! {
        #[test]
        fn escape_then_parse_round_trips(
            mp in proptest::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..40),
            src in "[a-z0-9.\\[\\]:/ \\\\\t\n-]{1,30}",
            opt in proptest::collection::vec("(shared|master):[0-9]{1,3}", 0..3),
        ) {
            let mut mpath = b"/".to_vec();
            mpath.extend_from_slice(&mp);
            let mut line = b"7 1 0:42 / ".to_vec();
            line.extend(escape(&mpath));
            line.extend_from_slice(b" rw,relatime ");
            for o in &opt {
                line.extend_from_slice(o.as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(b"- nfs4 ");
            line.extend(escape(src.as_bytes()));
            line.extend_from_slice(b" rw,addr=127.0.0.1\n");
            let e = parse_mountinfo_bytes(&line).unwrap();
            prop_assert_eq!(e.len(), 1);
            prop_assert_eq!(e[0].mountpoint.as_os_str().as_encoded_bytes(), &mpath[..]);
            prop_assert_eq!(&e[0].source, &src);
            prop_assert_eq!(&e[0].optional_fields, &opt);
            prop_assert_eq!(e[0].nfs_server(), Some("127.0.0.1".to_string()));
        }
    }
}
