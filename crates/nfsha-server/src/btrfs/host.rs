//! The btrfs seam: [`BtrfsHost`], what the engine asks of a node's filesystem, and
//! [`RealBtrfs`], which does it with `btrfs` argument vectors, on another node through
//! a transport prefix (e.g. `ssh -o BatchMode=yes root@nfs-2`).
//!
//! Role: list a snapshot directory (uuid, parent uuid, received uuid, read-only), show
//! one subvolume, take a snapshot, delete one, move a writable subvolume aside and make
//! it read-only, run `btrfs send [-p PARENT] SNAP | TRANSPORT btrfs receive DIR`, count
//! the files a `--no-data` stream touches, export a snapshot to a file.
//!
//! **Pipelines.** Both ends of a transfer are spawned in one process group (the first
//! one leads it) and nfsha relays the bytes itself (it counts them). When the deadline
//! passes, or the future is dropped, or one end fails, the whole group is SIGKILLed:
//! no `btrfs send` is left writing into a dead pipe and no local `ssh` keeps a remote
//! `btrfs receive` waiting (a remote receive sees its stdin close and exits).
//!
//! Failure modes ([`BtrfsError`]): a program is missing, exits non-zero (stderr kept),
//! misses its deadline (its group is killed), or prints what this module cannot read.

use super::plan::{self, ParseError, Subvol};
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// A failed btrfs operation.
#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    /// A program could not be started.
    #[error("Cannot run {program}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        /// What was run (short).
        what: String,
        /// Exit status as printed by std.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A command missed its deadline; its process group was killed.
    #[error("{what} did not finish within {deadline:?}; its process group was killed")]
    Timeout {
        /// What was run.
        what: String,
        /// The deadline.
        deadline: Duration,
    },
    /// Output that could not be read.
    #[error("Cannot read the output of btrfs")]
    Parse(#[from] ParseError),
    /// `btrfs subvolume show` printed no UUID.
    #[error("`btrfs subvolume show {0}` printed no UUID")]
    NoUuid(String),
    /// The engine refused an action (the message says why).
    #[error("{0}")]
    Refused(String),
    /// A failure injected by the fake host.
    #[error("Injected failure: {0}")]
    Injected(String),
}

/// Where commands run: this machine (empty transport) or another node through a
/// transport prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node name (for messages and the fake).
    pub name: String,
    /// Prefix of every command run on it; empty = this machine.
    pub transport: Vec<String>,
}

impl Node {
    /// This machine.
    pub fn local(name: &str) -> Self {
        Node {
            name: name.to_owned(),
            transport: Vec::new(),
        }
    }

    /// `node` reached through `template`, with `{target}` replaced by the node name.
    pub fn remote(name: &str, template: &[String]) -> Self {
        Node {
            name: name.to_owned(),
            transport: template
                .iter()
                .map(|a| a.replace("{target}", name))
                .collect(),
        }
    }

    fn argv(&self, rest: &[&str]) -> Vec<String> {
        self.transport
            .iter()
            .cloned()
            .chain(rest.iter().map(|s| (*s).to_owned()))
            .collect()
    }
}

fn p(path: &Path) -> &str {
    // Paths come from the validated config (absolute, UTF-8).
    path.to_str().unwrap_or_default()
}

/// What the engine asks of a node's btrfs. Every call is bounded by `deadline` (the
/// real host kills the command's process group when it passes).
pub trait BtrfsHost: Send + Sync {
    /// The subvolumes directly inside `dir` on `node`.
    fn list(
        &self,
        node: &Node,
        dir: &Path,
    ) -> impl Future<Output = Result<Vec<Subvol>, BtrfsError>> + Send;
    /// The subvolume at `path` on `node`; `None` when nothing is there.
    fn show(
        &self,
        node: &Node,
        path: &Path,
    ) -> impl Future<Output = Result<Option<Subvol>, BtrfsError>> + Send;
    /// Snapshot `src` to `dst` on `node`, read-only or writable.
    fn snapshot(
        &self,
        node: &Node,
        src: &Path,
        dst: &Path,
        readonly: bool,
    ) -> impl Future<Output = Result<(), BtrfsError>> + Send;
    /// Delete the subvolume at `path` on `node`.
    fn delete(
        &self,
        node: &Node,
        path: &Path,
    ) -> impl Future<Output = Result<(), BtrfsError>> + Send;
    /// Rename the writable subvolume `from` to `to` (same filesystem) and make it
    /// read-only.
    fn move_aside(
        &self,
        node: &Node,
        from: &Path,
        to: &Path,
    ) -> impl Future<Output = Result<(), BtrfsError>> + Send;
    /// `btrfs send [-p parent] snap` on `from` into `btrfs receive dir` on `to`;
    /// returns the bytes of the stream.
    fn transfer(
        &self,
        from: &Node,
        snap: &Path,
        parent: Option<&Path>,
        to: &Node,
        dir: &Path,
    ) -> impl Future<Output = Result<u64, BtrfsError>> + Send;
    /// How many files `snap` changed relative to `parent` (both on `node`), from a
    /// `btrfs send --no-data` stream.
    fn changed_files(
        &self,
        node: &Node,
        parent: &Path,
        snap: &Path,
    ) -> impl Future<Output = Result<u64, BtrfsError>> + Send;
    /// Write a full send stream of `snap` (on `node`) to `file` on that node.
    fn export(
        &self,
        node: &Node,
        snap: &Path,
        file: &Path,
    ) -> impl Future<Output = Result<(), BtrfsError>> + Send;
}

impl<H: BtrfsHost> BtrfsHost for std::sync::Arc<H> {
    fn list(
        &self,
        n: &Node,
        d: &Path,
    ) -> impl Future<Output = Result<Vec<Subvol>, BtrfsError>> + Send {
        (**self).list(n, d)
    }
    fn show(
        &self,
        n: &Node,
        p: &Path,
    ) -> impl Future<Output = Result<Option<Subvol>, BtrfsError>> + Send {
        (**self).show(n, p)
    }
    fn snapshot(
        &self,
        n: &Node,
        s: &Path,
        d: &Path,
        ro: bool,
    ) -> impl Future<Output = Result<(), BtrfsError>> + Send {
        (**self).snapshot(n, s, d, ro)
    }
    fn delete(&self, n: &Node, p: &Path) -> impl Future<Output = Result<(), BtrfsError>> + Send {
        (**self).delete(n, p)
    }
    fn move_aside(
        &self,
        n: &Node,
        f: &Path,
        t: &Path,
    ) -> impl Future<Output = Result<(), BtrfsError>> + Send {
        (**self).move_aside(n, f, t)
    }
    fn transfer(
        &self,
        f: &Node,
        s: &Path,
        p: Option<&Path>,
        t: &Node,
        d: &Path,
    ) -> impl Future<Output = Result<u64, BtrfsError>> + Send {
        (**self).transfer(f, s, p, t, d)
    }
    fn changed_files(
        &self,
        n: &Node,
        p: &Path,
        s: &Path,
    ) -> impl Future<Output = Result<u64, BtrfsError>> + Send {
        (**self).changed_files(n, p, s)
    }
    fn export(
        &self,
        n: &Node,
        s: &Path,
        f: &Path,
    ) -> impl Future<Output = Result<(), BtrfsError>> + Send {
        (**self).export(n, s, f)
    }
}

/// The real host: `btrfs` through argument vectors (never a shell string).
#[derive(Debug, Clone)]
pub struct RealBtrfs {
    /// Bound of each metadata command (list, show, snapshot, delete).
    pub command_timeout: Duration,
    /// Bound of one transfer (send | transport receive) and of a change count.
    pub transfer_timeout: Duration,
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim();
    let start = s.len().saturating_sub(400);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s[start..].replace('\n', " / ")
}

impl RealBtrfs {
    /// Metadata commands bounded by `command_timeout`, transfers by `transfer_timeout`.
    pub fn new(command_timeout: Duration, transfer_timeout: Duration) -> Self {
        RealBtrfs {
            command_timeout,
            transfer_timeout,
        }
    }

    async fn run(&self, argv: Vec<String>) -> Result<String, BtrfsError> {
        let what = argv.join(" ");
        let os: Vec<OsString> = argv.iter().map(OsString::from).collect();
        match nfsha_sys::command::run_command(&os, self.command_timeout, &[]).await {
            Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
            Ok(o) => Err(BtrfsError::Failed {
                what,
                status: o.status.to_string(),
                stderr: tail(&o.stderr),
            }),
            Err(nfsha_sys::command::CommandError::Timeout { deadline, .. }) => {
                Err(BtrfsError::Timeout { what, deadline })
            }
            Err(e) => Err(BtrfsError::Spawn {
                program: argv.first().cloned().unwrap_or_default(),
                source: std::io::Error::other(nfsha_core::error_chain(&e)),
            }),
        }
    }
}

/// Parse `btrfs subvolume show` output.
pub fn parse_show(path: &str, out: &str) -> Result<Subvol, BtrfsError> {
    let mut uuid = None;
    let mut parent = None;
    let mut received = None;
    let mut id = 0;
    let mut readonly = false;
    let mut name = None;
    for line in out.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let v = v.trim();
        let u = (v != "-" && !v.is_empty()).then(|| v.to_owned());
        match k.trim() {
            "Name" => name = Some(v.to_owned()),
            "UUID" => uuid = u,
            "Parent UUID" => parent = u,
            "Received UUID" => received = u,
            "Subvolume ID" => id = v.parse().unwrap_or(0),
            "Flags" => readonly = v.split([',', ' ']).any(|f| f == "readonly"),
            _ => {}
        }
    }
    Ok(Subvol {
        id,
        name: name.unwrap_or_else(|| {
            Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        uuid: uuid.ok_or_else(|| BtrfsError::NoUuid(path.to_owned()))?,
        parent_uuid: parent,
        received_uuid: received,
        readonly,
    })
}

/// The output of a two-process pipeline.
#[derive(Debug)]
pub struct PipeOutput {
    /// Bytes relayed from the first process to the second.
    pub bytes: u64,
    /// The second process's stdout.
    pub stdout: Vec<u8>,
}

/// SIGKILLs a process group when dropped, unless disarmed.
struct GroupKill(Option<rustix::process::Pid>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pg) = self.0.take() {
            let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `first | second` in one process group (led by `first`), relaying and counting
/// the bytes; kill the group at `deadline`, on drop, and after both have exited (for
/// grandchildren). Fails with the first failing end's stderr.
pub async fn pipeline(
    first: &[String],
    second: &[String],
    deadline: Duration,
) -> Result<PipeOutput, BtrfsError> {
    let what = format!("{} | {}", first.join(" "), second.join(" "));
    let spawn_err = |argv: &[String], source| BtrfsError::Spawn {
        program: argv.first().cloned().unwrap_or_default(),
        source,
    };
    let (Some((p1, a1)), Some((p2, a2))) = (first.split_first(), second.split_first()) else {
        return Err(BtrfsError::Refused("empty command".into()));
    };
    let mut c1 = Command::new(p1)
        .args(a1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_err(first, e))?;
    let pgid = c1
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    let mut group = GroupKill(pgid);
    let mut c2 = Command::new(p2)
        .args(a2)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(pgid.map_or(0, |p| p.as_raw_nonzero().get()))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_err(second, e))?;
    let (Some(mut from), Some(mut into)) = (c1.stdout.take(), c2.stdin.take()) else {
        return Err(BtrfsError::Refused("pipes not set up".into()));
    };
    let (mut e1, mut e2, mut o2) = (c1.stderr.take(), c2.stderr.take(), c2.stdout.take());
    let run = async {
        // `move`: both pipe ends are dropped when the relay ends. A receiving end that
        // died mid-stream (a killed ssh, a killed `btrfs receive`) must close the
        // sender's stdout too: kept open, `btrfs send` blocked on the full pipe, its
        // stderr stayed open, and the transfer hung until its deadline (an hour).
        let relay = async move {
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => k,
                };
                if into.write_all(&buf[..k]).await.is_err() {
                    break;
                }
                n += k as u64;
            }
            drop(into);
            drop(from);
            n
        };
        let read = |r: Option<tokio::process::ChildStderr>| async move {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v).await;
            }
            v
        };
        let out = async {
            let mut v = Vec::new();
            if let Some(o) = o2.as_mut() {
                let _ = o.read_to_end(&mut v).await;
            }
            v
        };
        let (n, err1, err2, out) = tokio::join!(relay, read(e1.take()), read(e2.take()), out);
        let (s1, s2) = tokio::join!(c1.wait(), c2.wait());
        (n, err1, err2, out, s1, s2)
    };
    let Ok((bytes, err1, err2, stdout, s1, s2)) = tokio::time::timeout(deadline, run).await else {
        group.kill();
        return Err(BtrfsError::Timeout { what, deadline });
    };
    group.kill();
    let s1 = s1.map_err(|e| spawn_err(first, e))?;
    let s2 = s2.map_err(|e| spawn_err(second, e))?;
    // The receiving end's error says more (a cut stream makes the sender fail with
    // EPIPE only because the receiver gave up first).
    if !s2.success() {
        return Err(BtrfsError::Failed {
            what,
            status: s2.to_string(),
            stderr: tail(&err2),
        });
    }
    if !s1.success() {
        return Err(BtrfsError::Failed {
            what,
            status: s1.to_string(),
            stderr: tail(&err1),
        });
    }
    Ok(PipeOutput { bytes, stdout })
}

impl BtrfsHost for RealBtrfs {
    async fn list(&self, node: &Node, dir: &Path) -> Result<Vec<Subvol>, BtrfsError> {
        let d = p(dir);
        let root: u64 = {
            let out = self
                .run(node.argv(&["btrfs", "inspect-internal", "rootid", d]))
                .await?;
            out.trim()
                .parse()
                .map_err(|_| ParseError(out.trim().to_owned()))?
        };
        let all = plan::parse_list(
            &self
                .run(node.argv(&["btrfs", "subvolume", "list", "-o", "-u", "-q", "-R", d]))
                .await?,
        )?;
        let ro: std::collections::HashSet<u64> = plan::parse_list(
            &self
                .run(node.argv(&[
                    "btrfs",
                    "subvolume",
                    "list",
                    "-o",
                    "-r",
                    "-u",
                    "-q",
                    "-R",
                    d,
                ]))
                .await?,
        )?
        .into_iter()
        .map(|e| e.id)
        .collect();
        // `-o` lists every subvolume whose top level is the subvolume holding `dir`.
        // When `dir` is that subvolume's root (inode 256), those are its entries;
        // when it is a plain directory, keep the ones whose path's directory is
        // `dir` (by its last component: the paths are relative to the filesystem's
        // top level, which `dir` may not be mounted at).
        let is_root = self.run(node.argv(&["stat", "-c", "%i", d])).await?.trim() == "256";
        let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok(all
            .into_iter()
            .filter(|e| e.top_level == root)
            .filter_map(|e| {
                let path = PathBuf::from(e.path.trim_start_matches("<FS_TREE>/"));
                let parent_name = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned());
                let name = path.file_name()?.to_string_lossy().into_owned();
                (is_root || parent_name == dir_name).then(|| Subvol {
                    id: e.id,
                    name,
                    readonly: ro.contains(&e.id),
                    uuid: e.uuid,
                    parent_uuid: e.parent_uuid,
                    received_uuid: e.received_uuid,
                })
            })
            .collect())
    }

    async fn show(&self, node: &Node, path: &Path) -> Result<Option<Subvol>, BtrfsError> {
        match self
            .run(node.argv(&["btrfs", "subvolume", "show", p(path)]))
            .await
        {
            Ok(out) => parse_show(p(path), &out).map(Some),
            Err(BtrfsError::Failed { stderr, .. }) if stderr.contains("No such file") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn snapshot(
        &self,
        node: &Node,
        src: &Path,
        dst: &Path,
        readonly: bool,
    ) -> Result<(), BtrfsError> {
        let mut argv = vec!["btrfs", "subvolume", "snapshot"];
        if readonly {
            argv.push("-r");
        }
        argv.extend([p(src), p(dst)]);
        self.run(node.argv(&argv)).await.map(drop)
    }

    async fn delete(&self, node: &Node, path: &Path) -> Result<(), BtrfsError> {
        self.run(node.argv(&["btrfs", "subvolume", "delete", p(path)]))
            .await
            .map(drop)
    }

    async fn move_aside(&self, node: &Node, from: &Path, to: &Path) -> Result<(), BtrfsError> {
        self.run(node.argv(&["mv", "-T", "--no-clobber", p(from), p(to)]))
            .await?;
        self.run(node.argv(&["btrfs", "property", "set", "-ts", p(to), "ro", "true"]))
            .await
            .map(drop)
    }

    async fn transfer(
        &self,
        from: &Node,
        snap: &Path,
        parent: Option<&Path>,
        to: &Node,
        dir: &Path,
    ) -> Result<u64, BtrfsError> {
        let mut send = vec!["btrfs", "send", "-q"];
        if let Some(par) = parent {
            send.extend(["-p", p(par)]);
        }
        send.push(p(snap));
        let out = pipeline(
            &from.argv(&send),
            &to.argv(&["btrfs", "receive", p(dir)]),
            self.transfer_timeout,
        )
        .await?;
        Ok(out.bytes)
    }

    async fn changed_files(
        &self,
        node: &Node,
        parent: &Path,
        snap: &Path,
    ) -> Result<u64, BtrfsError> {
        let out = pipeline(
            &node.argv(&["btrfs", "send", "-q", "--no-data", "-p", p(parent), p(snap)]),
            &["btrfs".into(), "receive".into(), "--dump".into()],
            self.transfer_timeout,
        )
        .await?;
        Ok(plan::changed_files(&String::from_utf8_lossy(&out.stdout)))
    }

    async fn export(&self, node: &Node, snap: &Path, file: &Path) -> Result<(), BtrfsError> {
        let argv = node.argv(&["btrfs", "send", "-q", "-f", p(file), p(snap)]);
        let what = argv.join(" ");
        let os: Vec<OsString> = argv.iter().map(OsString::from).collect();
        match nfsha_sys::command::run_command(&os, self.transfer_timeout, &[]).await {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(BtrfsError::Failed {
                what,
                status: o.status.to_string(),
                stderr: tail(&o.stderr),
            }),
            Err(nfsha_sys::command::CommandError::Timeout { deadline, .. }) => {
                Err(BtrfsError::Timeout { what, deadline })
            }
            Err(e) => Err(BtrfsError::Spawn {
                program: "btrfs".into(),
                source: std::io::Error::other(nfsha_core::error_chain(&e)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_output_is_parsed() {
        let out = "snaps/data@2\n\tName: \t\t\tdata@2\n\tUUID: \t\t\t58bb\n\tParent UUID: \t\tf798\n\tReceived UUID: \t\t24ee\n\tSubvolume ID: \t\t257\n\tFlags: \t\t\treadonly\n";
        let s = parse_show("/x/data@2", out).unwrap();
        assert_eq!(
            (
                s.id,
                s.name.as_str(),
                s.uuid.as_str(),
                s.identity(),
                s.readonly
            ),
            (257, "data@2", "58bb", "24ee", true)
        );
        let s = parse_show("/x/live", "\tUUID: u\n\tReceived UUID: -\n\tFlags: -\n").unwrap();
        assert_eq!(
            (s.name.as_str(), s.identity(), s.readonly),
            ("live", "u", false)
        );
        assert!(parse_show("/x", "nothing").is_err());
    }

    #[test]
    fn the_transport_template_names_the_target() {
        let n = Node::remote("nfs-2", &["ssh".into(), "root@{target}".into()]);
        assert_eq!(
            n.argv(&["btrfs", "receive", "/s"]),
            ["ssh", "root@nfs-2", "btrfs", "receive", "/s"]
        );
        assert_eq!(Node::local("a").argv(&["btrfs"]), ["btrfs"]);
    }

    #[tokio::test]
    async fn a_pipeline_counts_the_relayed_bytes_and_reports_the_failing_end() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let out = pipeline(
            &s(&["head", "-c", "100000", "/dev/zero"]),
            &s(&["wc", "-c"]),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert_eq!(out.bytes, 100_000);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100000");
        let e = pipeline(
            &s(&["head", "-c", "10", "/dev/zero"]),
            &s(&["sh", "-c", "cat >/dev/null; echo broken >&2; exit 3"]),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("broken"), "{e}");
    }

    #[tokio::test]
    async fn a_receiver_dying_mid_stream_ends_the_pipeline_at_once() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // The sender would write forever; the receiver takes 100 kB and dies.
        let t = std::time::Instant::now();
        let e = pipeline(
            &s(&["yes"]),
            &s(&["sh", "-c", "head -c 100000 >/dev/null; kill -9 $$"]),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert!(
            !matches!(e, BtrfsError::Timeout { .. }),
            "the pipeline waited for its deadline: {e}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn a_pipeline_past_its_deadline_is_killed_with_its_group() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 600", pidfile.display());
        let e = pipeline(
            &s(&["sh", "-c", &script]),
            &s(&["cat"]),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, BtrfsError::Timeout { .. }), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The killed sleeper is gone once reaped (it was our child: kill_on_drop reaps).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie awaiting the reaper.
            if stat.is_empty() || stat.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} survived: {stat}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
