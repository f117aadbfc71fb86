//! A recording fake [`BtrfsHost`] that models btrfs subvolumes per node: uuid,
//! parent uuid, received uuid, read-only flag and file contents.
//!
//! Role: let the engine's tests run the whole replicate / break / resume / fork /
//! quarantine / promote story without a filesystem. It follows btrfs where the engine
//! depends on it: a sent snapshot and its parent must be read-only; the stream carries
//! the sender's *identity* (received uuid, else uuid) of both; the receiver finds the
//! parent by received uuid, then by uuid; the new subvolume is writable with no
//! received uuid until the stream ended, then read-only with the received uuid set; a
//! receive onto an existing name fails; renaming a read-only subvolume fails.
//!
//! Failure modes: [`FakeBtrfs::break_next_transfer`] cuts the next stream after the
//! subvolume was created (a half-received snapshot stays behind);
//! [`FakeBtrfs::fail`] fails every call whose description contains a string.

use super::host::{BtrfsError, BtrfsHost, Node};
use super::plan::Subvol;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One modelled subvolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSubvol {
    /// Id on its node.
    pub id: u64,
    /// UUID.
    pub uuid: String,
    /// Parent UUID.
    pub parent_uuid: Option<String>,
    /// Received UUID.
    pub received_uuid: Option<String>,
    /// Read-only.
    pub readonly: bool,
    /// File name → content.
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Fs {
    subvols: BTreeMap<PathBuf, FakeSubvol>,
    next_id: u64,
}

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<String, Fs>,
    uuids: u64,
    calls: Vec<String>,
    break_next: bool,
    fail: Vec<String>,
}

/// The fake host (all nodes in one).
#[derive(Debug, Default)]
pub struct FakeBtrfs {
    state: Mutex<State>,
}

fn err(what: &str, msg: &str) -> BtrfsError {
    BtrfsError::Failed {
        what: what.to_owned(),
        status: "exit status: 1".into(),
        stderr: format!("ERROR: {msg}"),
    }
}

impl State {
    fn new_uuid(&mut self, node: &str) -> String {
        self.uuids += 1;
        format!("{node}-{:04}", self.uuids)
    }
    fn fs(&mut self, node: &str) -> &mut Fs {
        self.nodes.entry(node.to_owned()).or_default()
    }
    fn record(&mut self, call: String) -> Result<(), BtrfsError> {
        self.calls.push(call.clone());
        if let Some(f) = self.fail.iter().find(|f| call.contains(f.as_str())) {
            return Err(BtrfsError::Injected(format!("{f} ({call})")));
        }
        Ok(())
    }
    fn add(&mut self, node: &str, path: &Path, mut sv: FakeSubvol) -> Result<(), BtrfsError> {
        let fs = self.fs(node);
        if fs.subvols.contains_key(path) {
            return Err(err(&path.display().to_string(), "File exists"));
        }
        fs.next_id += 1;
        sv.id = 255 + fs.next_id;
        fs.subvols.insert(path.to_owned(), sv);
        Ok(())
    }
}

fn identity(s: &FakeSubvol) -> &str {
    s.received_uuid.as_deref().unwrap_or(&s.uuid)
}

fn view(path: &Path, s: &FakeSubvol) -> Subvol {
    Subvol {
        id: s.id,
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid: s.uuid.clone(),
        parent_uuid: s.parent_uuid.clone(),
        received_uuid: s.received_uuid.clone(),
        readonly: s.readonly,
    }
}

/// The size of a stream carrying `files` relative to `base` (the fake's "bytes").
fn stream_bytes(files: &BTreeMap<String, String>, base: Option<&BTreeMap<String, String>>) -> u64 {
    let header = 100;
    let changed: u64 = files
        .iter()
        .filter(|(k, v)| base.is_none_or(|b| b.get(*k) != Some(*v)))
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    let removed: u64 = base.map_or(0, |b| {
        b.keys()
            .filter(|k| !files.contains_key(*k))
            .map(|k| k.len() as u64)
            .sum()
    });
    header + changed + removed
}

impl FakeBtrfs {
    /// An empty world.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create a writable subvolume (the live data) at `path` on `node`.
    pub fn create(&self, node: &str, path: &Path) {
        let mut st = self.lock();
        let uuid = st.new_uuid(node);
        st.add(
            node,
            path,
            FakeSubvol {
                id: 0,
                uuid,
                parent_uuid: None,
                received_uuid: None,
                readonly: false,
                files: BTreeMap::new(),
            },
        )
        .expect("fake create");
    }

    /// Write `file` = `content` in the subvolume at `path` (must be writable).
    pub fn write(&self, node: &str, path: &Path, file: &str, content: &str) {
        let mut st = self.lock();
        let sv = st
            .fs(node)
            .subvols
            .get_mut(path)
            .expect("fake write: no subvolume");
        assert!(!sv.readonly, "fake write into a read-only subvolume");
        sv.files.insert(file.to_owned(), content.to_owned());
    }

    /// The subvolume at `path` on `node`.
    pub fn get(&self, node: &str, path: &Path) -> Option<FakeSubvol> {
        self.lock().fs(node).subvols.get(path).cloned()
    }

    /// Every subvolume path on `node`.
    pub fn paths(&self, node: &str) -> Vec<PathBuf> {
        self.lock().fs(node).subvols.keys().cloned().collect()
    }

    /// Cut the next transfer after the receiving subvolume was created.
    pub fn break_next_transfer(&self) {
        self.lock().break_next = true;
    }

    /// Fail every call whose description contains `what` (e.g. `"delete"`).
    pub fn fail(&self, what: &str) {
        self.lock().fail.push(what.to_owned());
    }

    /// Stop failing.
    pub fn heal(&self) {
        self.lock().fail.clear();
    }

    /// Every call so far, as `op node args`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
}

impl BtrfsHost for FakeBtrfs {
    async fn list(&self, node: &Node, dir: &Path) -> Result<Vec<Subvol>, BtrfsError> {
        let mut st = self.lock();
        st.record(format!("list {} {}", node.name, dir.display()))?;
        Ok(st
            .fs(&node.name)
            .subvols
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, s)| view(p, s))
            .collect())
    }

    async fn show(&self, node: &Node, path: &Path) -> Result<Option<Subvol>, BtrfsError> {
        let mut st = self.lock();
        st.record(format!("show {} {}", node.name, path.display()))?;
        Ok(st.fs(&node.name).subvols.get(path).map(|s| view(path, s)))
    }

    async fn snapshot(
        &self,
        node: &Node,
        src: &Path,
        dst: &Path,
        readonly: bool,
    ) -> Result<(), BtrfsError> {
        let mut st = self.lock();
        st.record(format!(
            "snapshot {} {} {} ro={readonly}",
            node.name,
            src.display(),
            dst.display()
        ))?;
        let Some(s) = st.fs(&node.name).subvols.get(src).cloned() else {
            return Err(err("snapshot", "not a subvolume"));
        };
        let uuid = st.new_uuid(&node.name);
        st.add(
            &node.name,
            dst,
            FakeSubvol {
                id: 0,
                uuid,
                parent_uuid: Some(s.uuid),
                received_uuid: None,
                readonly,
                files: s.files,
            },
        )
    }

    async fn delete(&self, node: &Node, path: &Path) -> Result<(), BtrfsError> {
        let mut st = self.lock();
        st.record(format!("delete {} {}", node.name, path.display()))?;
        st.fs(&node.name)
            .subvols
            .remove(path)
            .map(drop)
            .ok_or_else(|| err("delete", "not a subvolume"))
    }

    async fn move_aside(&self, node: &Node, from: &Path, to: &Path) -> Result<(), BtrfsError> {
        let mut st = self.lock();
        st.record(format!(
            "move_aside {} {} {}",
            node.name,
            from.display(),
            to.display()
        ))?;
        let fs = st.fs(&node.name);
        if fs.subvols.contains_key(to) {
            return Err(err("mv", "File exists"));
        }
        let Some(mut s) = fs.subvols.remove(from) else {
            return Err(err("mv", "No such file or directory"));
        };
        if s.readonly {
            fs.subvols.insert(from.to_owned(), s);
            return Err(err("mv", "Read-only file system"));
        }
        s.readonly = true;
        fs.subvols.insert(to.to_owned(), s);
        Ok(())
    }

    async fn transfer(
        &self,
        from: &Node,
        snap: &Path,
        parent: Option<&Path>,
        to: &Node,
        dir: &Path,
    ) -> Result<u64, BtrfsError> {
        let mut st = self.lock();
        st.record(format!(
            "transfer {} {} parent={} -> {} {}",
            from.name,
            snap.display(),
            parent.map_or("-".into(), |p| p.display().to_string()),
            to.name,
            dir.display()
        ))?;
        let src_fs = st.fs(&from.name);
        let s = src_fs
            .subvols
            .get(snap)
            .cloned()
            .ok_or_else(|| err("send", "cannot find snapshot"))?;
        if !s.readonly {
            return Err(err("send", "subvolume is not read-only"));
        }
        let par = match parent {
            Some(pp) => {
                let ps = src_fs
                    .subvols
                    .get(pp)
                    .cloned()
                    .ok_or_else(|| err("send", "cannot find parent"))?;
                if !ps.readonly {
                    return Err(err("send", "parent is not read-only"));
                }
                Some(ps)
            }
            None => None,
        };
        // The receiving side looks the parent up by received uuid, then by uuid.
        let dst_fs = st.fs(&to.name);
        let base = match &par {
            Some(ps) => {
                let pid = identity(ps).to_owned();
                let found = dst_fs
                    .subvols
                    .values()
                    .find(|x| x.received_uuid.as_deref() == Some(&pid))
                    .or_else(|| dst_fs.subvols.values().find(|x| x.uuid == pid))
                    .cloned();
                Some(found.ok_or_else(|| err("receive", "cannot find parent subvolume"))?)
            }
            None => None,
        };
        let bytes = stream_bytes(&s.files, par.as_ref().map(|p| &p.files));
        let name = snap.file_name().unwrap_or_default();
        let dest = dir.join(name);
        let broken = std::mem::take(&mut st.break_next);
        let uuid = st.new_uuid(&to.name);
        let mut files = base.as_ref().map(|b| b.files.clone()).unwrap_or_default();
        if broken {
            // Half the changed files arrived, then the stream broke.
            let changed: Vec<_> = s
                .files
                .iter()
                .filter(|(k, v)| files.get(*k) != Some(*v))
                .collect();
            for (k, v) in changed.iter().take(changed.len() / 2) {
                files.insert((*k).clone(), (*v).clone());
            }
        } else {
            files = s.files.clone();
        }
        st.add(
            &to.name,
            &dest,
            FakeSubvol {
                id: 0,
                uuid,
                parent_uuid: base.map(|b| b.uuid),
                received_uuid: (!broken).then(|| identity(&s).to_owned()),
                readonly: !broken,
                files,
            },
        )?;
        if broken {
            return Err(err("receive", "short read from stream"));
        }
        Ok(bytes)
    }

    async fn changed_files(
        &self,
        node: &Node,
        parent: &Path,
        snap: &Path,
    ) -> Result<u64, BtrfsError> {
        let mut st = self.lock();
        st.record(format!(
            "changed_files {} {} {}",
            node.name,
            parent.display(),
            snap.display()
        ))?;
        let fs = st.fs(&node.name);
        let (Some(a), Some(b)) = (fs.subvols.get(parent), fs.subvols.get(snap)) else {
            return Err(err("send", "cannot find subvolume"));
        };
        if !a.readonly || !b.readonly {
            return Err(err("send", "subvolume is not read-only"));
        }
        let changed = b
            .files
            .iter()
            .filter(|(k, v)| a.files.get(*k) != Some(*v))
            .count()
            + a.files.keys().filter(|k| !b.files.contains_key(*k)).count();
        Ok(changed as u64)
    }

    async fn export(&self, node: &Node, snap: &Path, file: &Path) -> Result<(), BtrfsError> {
        let mut st = self.lock();
        st.record(format!(
            "export {} {} {}",
            node.name,
            snap.display(),
            file.display()
        ))?;
        match st.fs(&node.name).subvols.get(snap) {
            Some(s) if s.readonly => Ok(()),
            _ => Err(err("send", "not a read-only subvolume")),
        }
    }
}
