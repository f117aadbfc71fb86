//! The btrfs replication engine (`[server.replication] engine = "btrfs"`): read-only
//! snapshots of the served subvolume, incremental `btrfs send | receive` to each
//! standby, promotion of the newest fully received snapshot, and quarantine of a
//! returning old primary's divergent writes.
//!
//! Role: [`Engine`] performs typed, idempotent actions on top of [`BtrfsHost`]; every
//! decision about data is a pure function in [`plan`]:
//! - [`Engine::take_snapshot`]: `<live>` → `<snapshot_dir>/<base>@<epoch>-<stamp>`, read-only.
//! - [`Engine::replicate`]: inventory the standby's snapshot directory (through the
//!   transport); remove half-received snapshots; if the standby still has a live
//!   subvolume (it led before: a returning old primary), quarantine it first (below);
//!   send the leader's newest snapshot incrementally from the newest snapshot both hold
//!   (by identity, see [`plan`]), or in full when they share none; check the standby
//!   now holds it complete; prune the standby's copies beyond `keep`. A broken transfer
//!   leaves a writable half-received subvolume, which is removed (at once, and again
//!   before the next attempt); the next attempt restarts from the same parent.
//! - [`Engine::prune_local`]: retention on the leader; never deletes the newest, a
//!   snapshot whose identity is protected (each standby's newest common one, the fork
//!   points of nodes that led before, see [`shipper::protected_identities`]), the
//!   newest snapshot it received (read from the disk: the fork point of the node it
//!   took over from, whatever leadership or process this is; [`plan::protect`]), a
//!   quarantine snapshot or a name that is not nfsha's. The standby's copies of all of
//!   these are kept too.
//! - [`Engine::promote`]: make the newest complete snapshot the writable live
//!   subvolume (the seed's Step 2). When a live subvolume is already there and is the
//!   continuation of this node's own newest snapshot, it *is* the newest data and is
//!   kept; any other live subvolume is quarantined, never overwritten or deleted.
//! - Quarantine: the old live subvolume is moved (rename, same filesystem) into the
//!   snapshot directory as `<base>@diverged-<epoch>-<stamp>` and made read-only; the
//!   files it changed after the fork point are counted from a `btrfs send --no-data`
//!   stream. It is never deleted automatically — except when it changed nothing after
//!   the fork point of a returning old primary: then every byte of it is in the fork
//!   snapshot, a copy of one the leader holds, and the moved copy is removed so a
//!   planned switchover does not leave an empty quarantine behind. (At promotion a
//!   quarantined live subvolume is kept whatever the count.) `nfsha server diverged list|export|drop` handles the rest.
//!
//! On a standby, automation deletes only (a) half-received snapshots and (b) complete
//! copies of snapshots the leader still holds, beyond `keep` and never the newest one.
//! A snapshot the leader does not hold (taken while the standby led alone) is never
//! pruned.
//!
//! Failure modes: every host call can fail or time out ([`BtrfsError`]); an action
//! stops at the first failure and is safe to run again (each one starts from a fresh
//! inventory). Sending needs a read-only parent on both sides: the receiver finds its
//! copy by `received_uuid`, or by `uuid` for a snapshot it took itself (failback).

pub mod fake;
pub mod host;
pub mod plan;
pub mod shipper;

pub use fake::FakeBtrfs;
pub use host::{BtrfsError, BtrfsHost, Node, RealBtrfs};
pub use plan::{SendPlan, Subvol};

use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bound of one transfer (a first full send of a large subvolume takes long; it runs
/// beside the leader loop, never inside it).
pub const TRANSFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// The engine's settings (from `[server.replication]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtrfsSettings {
    /// The served (writable) subvolume; same path on every node.
    pub live: PathBuf,
    /// Where snapshots live (sent and received); same path on every node.
    pub snapshot_dir: PathBuf,
    /// How many complete snapshots retention keeps (at least 1).
    pub keep: usize,
    /// Argument-vector prefix to run a command on a standby, `{target}` = its node name.
    pub transport: Vec<String>,
}

/// A quarantined live subvolume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantine {
    /// Its name in the snapshot directory (`<base>@diverged-<epoch>-<stamp>`).
    pub name: String,
    /// The fork point it was compared with (name on that node), if any.
    pub fork: Option<String>,
    /// Files changed after the fork point (`None`: no fork point to compare with).
    pub changed_files: Option<u64>,
    /// Whether it was kept (`false`: it changed nothing after the fork point).
    pub kept: bool,
}

/// What one [`Engine::replicate`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShipReport {
    /// The snapshot the standby now holds as its newest (leader's name).
    pub snapshot: String,
    /// Its identity.
    pub identity: String,
    /// The parent of the incremental send (`None`: full send or nothing sent).
    pub parent: Option<String>,
    /// Stream bytes (`None`: it was already up to date).
    pub bytes: Option<u64>,
    /// Half-received snapshots removed on the standby.
    pub removed_partials: Vec<String>,
    /// A returning old primary's live subvolume, quarantined before anything was sent.
    pub quarantined: Option<Quarantine>,
    /// Snapshots retention removed on the standby.
    pub pruned: Vec<String>,
}

/// What [`Engine::promote`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Promotion {
    /// The snapshot the live subvolume was made from (`None`: the live subvolume was
    /// kept as the newest data).
    pub snapshot: Option<String>,
    /// Identity of that snapshot, or of the newest own snapshot the kept live
    /// subvolume continues.
    pub identity: Option<String>,
    /// A previous live subvolume that was quarantined.
    pub quarantined: Option<Quarantine>,
    /// Half-received snapshots removed first.
    pub removed_partials: Vec<String>,
}

/// The engine on one node.
#[derive(Debug)]
pub struct Engine<H> {
    host: H,
    s: BtrfsSettings,
    me: Node,
}

impl Engine<RealBtrfs> {
    /// The real engine of a `[server]` section with `engine = "btrfs"` (`None`
    /// otherwise): this node's commands through `prefix` (empty: this machine),
    /// standbys through the configured transport.
    pub fn from_config(cfg: &nfsha_config::ServerConfig, prefix: Vec<String>) -> Option<Self> {
        let b = cfg.replication.as_ref()?.btrfs.as_ref()?;
        Some(Engine::with_node(
            RealBtrfs::new(cfg.step_timeout, TRANSFER_TIMEOUT),
            BtrfsSettings {
                live: b.subvolume.clone(),
                snapshot_dir: b.snapshot_dir.clone(),
                keep: b.keep as usize,
                transport: b.transport.clone(),
            },
            Node {
                name: cfg.node.clone(),
                transport: prefix,
            },
        ))
    }
}

impl<H: BtrfsHost> Engine<H> {
    /// The engine of node `me` (local commands) on `host`.
    pub fn new(host: H, settings: BtrfsSettings, me: &str) -> Self {
        Engine {
            host,
            s: settings,
            me: Node::local(me),
        }
    }

    /// The engine of `me`, whose own commands run through `me.transport` (empty: this
    /// machine; tests use a mount-namespace prefix).
    pub fn with_node(host: H, settings: BtrfsSettings, me: Node) -> Self {
        Engine {
            host,
            s: settings,
            me,
        }
    }

    /// The host (for tests).
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The settings.
    pub fn settings(&self) -> &BtrfsSettings {
        &self.s
    }

    /// The live subvolume's file name: the base of every snapshot name.
    pub fn base(&self) -> String {
        self.s
            .live
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn remote(&self, target: &str) -> Node {
        Node::remote(target, &self.s.transport)
    }

    fn at(&self, name: &str) -> PathBuf {
        self.s.snapshot_dir.join(name)
    }

    /// This node's snapshot directory.
    pub async fn inventory(&self) -> Result<Vec<Subvol>, BtrfsError> {
        self.host.list(&self.me, &self.s.snapshot_dir).await
    }

    /// Take a read-only snapshot of the live subvolume under `epoch`; `unix_ms` only
    /// names it.
    pub async fn take_snapshot(&self, epoch: u64, unix_ms: u64) -> Result<Subvol, BtrfsError> {
        let name = plan::snapshot_name(&self.base(), epoch, &plan::stamp(unix_ms));
        let dst = self.at(&name);
        self.host
            .snapshot(&self.me, &self.s.live, &dst, true)
            .await?;
        self.host.show(&self.me, &dst).await?.ok_or_else(|| {
            BtrfsError::Refused(format!("snapshot {} did not appear", dst.display()))
        })
    }

    async fn remove_partials(
        &self,
        node: &Node,
        all: &[Subvol],
    ) -> Result<Vec<String>, BtrfsError> {
        let mut removed = Vec::new();
        for p in plan::partials(&self.base(), all) {
            tracing::warn!(node = %node.name, snapshot = %p.name, "removing a half-received snapshot");
            self.host.delete(node, &self.at(&p.name)).await?;
            removed.push(p.name.clone());
        }
        Ok(removed)
    }

    /// Move `node`'s live subvolume aside as a quarantine snapshot and count what it
    /// changed after `fork` (a snapshot name on `node`).
    async fn quarantine(
        &self,
        node: &Node,
        fork: Option<&Subvol>,
        epoch: u64,
        unix_ms: u64,
        drop_identical: bool,
    ) -> Result<Quarantine, BtrfsError> {
        let name = plan::diverged_name(&self.base(), epoch, &plan::stamp(unix_ms));
        let dst = self.at(&name);
        self.host.move_aside(node, &self.s.live, &dst).await?;
        let changed = match fork {
            Some(f) => Some(
                self.host
                    .changed_files(node, &self.at(&f.name), &dst)
                    .await?,
            ),
            None => None,
        };
        let kept = !drop_identical || changed != Some(0);
        if kept {
            tracing::warn!(
                node = %node.name, snapshot = %name, fork = ?fork.map(|f| &f.name),
                changed_files = ?changed,
                "divergent writes quarantined; never deleted automatically (nfsha server diverged)"
            );
        } else {
            // Nothing after the fork point: the fork snapshot (kept) holds all of it.
            self.host.delete(node, &dst).await?;
        }
        Ok(Quarantine {
            name,
            fork: fork.map(|f| f.name.clone()),
            changed_files: changed,
            kept,
        })
    }

    /// Bring standby `target` up to date with this node's newest snapshot (see the
    /// module header). `protected`: identities retention must keep on the standby.
    pub async fn replicate(
        &self,
        target: &str,
        epoch: u64,
        unix_ms: u64,
        protected: &BTreeSet<String>,
    ) -> Result<ShipReport, BtrfsError> {
        let base = self.base();
        let there = self.remote(target);
        let local = self.inventory().await?;
        let remote = self.host.list(&there, &self.s.snapshot_dir).await?;
        let removed_partials = self.remove_partials(&there, &remote).await?;
        let remote: Vec<Subvol> = remote
            .into_iter()
            .filter(|s| !removed_partials.contains(&s.name))
            .collect();
        // A returning old primary: keep its writes after the fork point before
        // anything is received on top of the fork point.
        let quarantined = match self.host.show(&there, &self.s.live).await? {
            Some(_) => {
                let f = plan::fork(&base, &local, &remote);
                Some(
                    self.quarantine(&there, f.point.as_ref(), epoch, unix_ms, true)
                        .await?,
                )
            }
            None => None,
        };
        let (snapshot, parent, bytes) = match plan::plan_send(&base, &local, &remote) {
            SendPlan::NothingToSend => {
                return Err(BtrfsError::Refused(
                    "no complete snapshot to send yet".into(),
                ));
            }
            SendPlan::UpToDate { newest } => (newest, None, None),
            SendPlan::Send { snapshot, parent } => {
                let sent = self
                    .host
                    .transfer(
                        &self.me,
                        &self.at(&snapshot.name),
                        parent.as_ref().map(|p| self.at(&p.name)).as_deref(),
                        &there,
                        &self.s.snapshot_dir,
                    )
                    .await;
                match sent {
                    Ok(n) => (snapshot, parent, Some(n)),
                    Err(e) => {
                        // Remove what the broken receive left (also done before the
                        // next attempt, should this fail too).
                        if let Ok(now) = self.host.list(&there, &self.s.snapshot_dir).await {
                            let _ = self.remove_partials(&there, &now).await;
                        }
                        return Err(e);
                    }
                }
            }
        };
        let after = self.host.list(&there, &self.s.snapshot_dir).await?;
        if !plan::complete(&base, &after)
            .iter()
            .any(|s| s.identity() == snapshot.identity())
        {
            return Err(BtrfsError::Refused(format!(
                "{target} does not hold {} complete after the transfer",
                snapshot.name
            )));
        }
        // Retention on the standby: only copies of what the leader holds.
        let held: BTreeSet<&str> = plan::complete(&base, &local)
            .iter()
            .map(|s| s.identity())
            .collect();
        let copies: Vec<Subvol> = after
            .into_iter()
            .filter(|s| held.contains(s.identity()))
            .collect();
        let mut keep_ids = plan::protect(&base, &local, protected);
        keep_ids.insert(snapshot.identity().to_owned());
        let mut pruned = Vec::new();
        for s in plan::prune(&base, &copies, self.s.keep, &keep_ids) {
            self.host.delete(&there, &self.at(&s.name)).await?;
            pruned.push(s.name.clone());
        }
        Ok(ShipReport {
            identity: snapshot.identity().to_owned(),
            snapshot: snapshot.name,
            parent: parent.map(|p| p.name),
            bytes,
            removed_partials,
            quarantined,
            pruned,
        })
    }

    /// Retention on this node (see [`plan::prune`]); returns the names removed.
    pub async fn prune_local(
        &self,
        protected: &BTreeSet<String>,
    ) -> Result<Vec<String>, BtrfsError> {
        let all = self.inventory().await?;
        let protected = plan::protect(&self.base(), &all, protected);
        let mut gone = Vec::new();
        for s in plan::prune(&self.base(), &all, self.s.keep, &protected) {
            self.host.delete(&self.me, &self.at(&s.name)).await?;
            gone.push(s.name.clone());
        }
        Ok(gone)
    }

    /// Make the newest complete snapshot the live subvolume (see the module header).
    pub async fn promote(&self, epoch: u64, unix_ms: u64) -> Result<Promotion, BtrfsError> {
        let base = self.base();
        let all = self.inventory().await?;
        let removed_partials = self.remove_partials(&self.me, &all).await?;
        let complete = plan::complete(&base, &all);
        let live = self.host.show(&self.me, &self.s.live).await?;
        let newest = complete.first().copied();
        let mut quarantined = None;
        if let Some(l) = &live {
            // Our own newest snapshot was taken of this very subvolume: it is the
            // continuation, i.e. the newest data there is. Keep it.
            if newest.is_none_or(|n| {
                n.received_uuid.is_none() && n.parent_uuid.as_deref() == Some(&l.uuid)
            }) {
                return Ok(Promotion {
                    snapshot: None,
                    identity: newest.map(|n| n.identity().to_owned()),
                    quarantined: None,
                    removed_partials,
                });
            }
            // Compare with what it continued: its own newest snapshot, else the
            // snapshot it was made from. Kept whatever the count.
            let fork = complete.iter().copied().find(|s| {
                s.parent_uuid.as_deref() == Some(&l.uuid)
                    || l.parent_uuid.as_deref() == Some(&s.uuid)
            });
            quarantined = Some(
                self.quarantine(&self.me, fork, epoch, unix_ms, false)
                    .await?,
            );
        }
        let Some(n) = newest else {
            return Err(BtrfsError::Refused(format!(
                "no complete snapshot in {} to promote",
                self.s.snapshot_dir.display()
            )));
        };
        self.host
            .snapshot(&self.me, &self.at(&n.name), &self.s.live, false)
            .await?;
        tracing::info!(snapshot = %n.name, identity = n.identity(), epoch, "promoted snapshot to the live subvolume");
        Ok(Promotion {
            snapshot: Some(n.name.clone()),
            identity: Some(n.identity().to_owned()),
            quarantined,
            removed_partials,
        })
    }

    /// This node's quarantine snapshots, oldest first.
    pub async fn diverged(&self) -> Result<Vec<Subvol>, BtrfsError> {
        let all = self.inventory().await?;
        Ok(plan::diverged(&self.base(), &all)
            .into_iter()
            .cloned()
            .collect())
    }

    fn diverged_path(&self, name: &str) -> Result<PathBuf, BtrfsError> {
        if plan::kind(&self.base(), name) != plan::Kind::Diverged || name.contains('/') {
            return Err(BtrfsError::Refused(format!(
                "{name:?} is not a quarantine snapshot name ({}@diverged-…)",
                self.base()
            )));
        }
        Ok(self.at(name))
    }

    /// Delete the quarantine snapshot `name` (the operator asked for it by name).
    pub async fn diverged_drop(&self, name: &str) -> Result<(), BtrfsError> {
        let path = self.diverged_path(name)?;
        if self.host.show(&self.me, &path).await?.is_none() {
            return Err(BtrfsError::Refused(format!(
                "no quarantine snapshot {name}"
            )));
        }
        self.host.delete(&self.me, &path).await
    }

    /// Write a full send stream of the quarantine snapshot `name` to `file`
    /// (`btrfs receive` it anywhere to look at it).
    pub async fn diverged_export(&self, name: &str, file: &Path) -> Result<(), BtrfsError> {
        let path = self.diverged_path(name)?;
        self.host.export(&self.me, &path, file).await
    }
}

#[cfg(test)]
mod tests;
