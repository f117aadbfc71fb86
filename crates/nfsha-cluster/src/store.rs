//! The fleet's records in etcd v3 (crate `etcd-client`): seed, views, the failover
//! election, failback, status and the watch on the active record.
//!
//! Role: [`Fleet`] is a connection for reads and operator actions; [`AgentSession`]
//! adds one agent's lease, on which its view and (when it wins) the election lock
//! live. Every write of `active` is a transaction guarded by the key's revision, so
//! two movers can never both succeed from the same generation. Failure modes: etcd
//! unreachable, slow or frozen → calls return [`FleetError::Etcd`] or never return
//! (callers bound them; the watch keeps retrying and says [`WatchEvent::Unreachable`]);
//! the lease expired while promoting → the move is not written
//! ([`FailoverOutcome::LockLost`] or [`FailoverOutcome::AlreadyMoved`]).

use crate::command::{CommandSpec, run_bounded};
use crate::decide::GenerationFilter;
use crate::model::{
    ActiveRecord, AgentView, CommandReport, Keys, LockRecord, ModelError, Reason, ReplicaId,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures_util::Stream;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// etcd refused or failed the request.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A bad name or replica.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A TLS or password file could not be read.
    #[error("Cannot read {path}")]
    Credentials {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A record in etcd is not valid JSON for its type.
    #[error("Malformed record at {key}")]
    Malformed {
        /// The key.
        key: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No `active` key yet.
    #[error("Volume {volume} has no active record in etcd")]
    NotSeeded {
        /// The volume.
        volume: String,
    },
    /// A failback target outside the volume's members.
    #[error("{to} is not a member of the volume")]
    NotAMember {
        /// The target asked for.
        to: ReplicaId,
    },
    /// Failback without the operator's confirmation.
    #[error("Refusing failback: confirm that the reverse resync is done")]
    ResyncNotConfirmed,
    /// The resync check did not succeed.
    #[error("Refusing failback: the resync check failed: {0}")]
    ResyncCheckFailed(Box<CommandReport>),
    /// The target is already active.
    #[error("{to} is already the active replica")]
    AlreadyActive {
        /// The target.
        to: ReplicaId,
    },
    /// Someone holds the election lock.
    #[error("A move by {holder} is in progress")]
    Busy {
        /// The holder.
        holder: String,
    },
    /// The active record changed under us; nothing was written.
    #[error("The active record changed meanwhile (now generation {generation}); nothing moved")]
    Conflict {
        /// The generation found.
        generation: u64,
    },
    /// etcd answered something unexpected.
    #[error("etcd protocol: {0}")]
    Protocol(String),
}

/// TLS files for etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
}

/// etcd user and the file holding its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFile {
    /// User name.
    pub user: String,
    /// Password file (trailing newline ignored).
    pub password_file: PathBuf,
}

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOptions {
    /// Endpoints (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// TLS, if etcd uses it.
    pub tls: Option<TlsFiles>,
    /// Auth, if etcd uses it.
    pub auth: Option<AuthFile>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive interval and timeout.
    pub keepalive: Duration,
}

impl FleetOptions {
    /// Plain endpoints, 1 s connect timeout, 1 s keepalive.
    pub fn new(endpoints: Vec<String>) -> Self {
        FleetOptions {
            endpoints,
            tls: None,
            auth: None,
            connect_timeout: Duration::from_secs(1),
            keepalive: Duration::from_secs(1),
        }
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, FleetError> {
    std::fs::read(path).map_err(|source| FleetError::Credentials {
        path: path.display().to_string(),
        source,
    })
}

/// Connect an etcd client (lazily, except with auth).
pub async fn connect(opts: &FleetOptions) -> Result<Client, FleetError> {
    let mut co = ConnectOptions::new()
        .with_connect_timeout(opts.connect_timeout)
        .with_keep_alive(opts.keepalive, opts.keepalive)
        .with_keep_alive_while_idle(true);
    if let Some(auth) = &opts.auth {
        let pw = read_file(&auth.password_file)?;
        let pw = String::from_utf8_lossy(&pw)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        co = co.with_user(auth.user.clone(), pw);
    }
    if let Some(tls) = &opts.tls {
        let mut t = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read_file(&tls.ca)?));
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            t = t.identity(etcd_client::Identity::from_pem(
                read_file(cert)?,
                read_file(key)?,
            ));
        }
        co = co.with_tls(t);
    }
    Ok(Client::connect(&opts.endpoints, Some(co)).await?)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn to_json<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>, FleetError> {
    serde_json::to_vec(v).map_err(|source| FleetError::Malformed {
        key: key.to_owned(),
        source,
    })
}

fn from_json<T: serde::de::DeserializeOwned>(key: &str, kv: &KeyValue) -> Result<T, FleetError> {
    serde_json::from_slice(kv.value()).map_err(|source| FleetError::Malformed {
        key: key.to_owned(),
        source,
    })
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1)
}

/// Everything `nfsha replica status` shows for one volume, read at one revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeStatus {
    /// The volume.
    pub volume: String,
    /// The active record, if seeded.
    pub active: Option<ActiveRecord>,
    /// The election lock, if a move is in progress.
    pub lock: Option<LockRecord>,
    /// Every live agent's view, by agent name.
    pub views: Vec<AgentView>,
    /// The etcd revision of the read.
    pub revision: i64,
}

impl VolumeStatus {
    /// The text `nfsha replica status` prints: active replica, generation, who decided,
    /// when (the decider's clock, UTC), why, a move in progress, each agent's view.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "volume {}", self.volume);
        match &self.active {
            None => {
                let _ = writeln!(out, "  active: none (not seeded)");
            }
            Some(a) => {
                let when = humantime::format_rfc3339_seconds(
                    UNIX_EPOCH + Duration::from_millis(a.decided_at_ms),
                );
                let _ = writeln!(
                    out,
                    "  active: {} generation {} ({} by {} at {when})",
                    a.replica,
                    a.generation,
                    a.reason.name(),
                    a.decided_by
                );
                if let Some(p) = &a.previous {
                    let _ = writeln!(out, "  previous: {p}");
                }
                if let Some(r) = &a.promote {
                    let _ = writeln!(out, "  command: {r}");
                }
            }
        }
        if let Some(l) = &self.lock {
            let _ = writeln!(
                out,
                "  in progress: {} by {} from generation {} to {}",
                l.reason.name(),
                l.holder,
                l.from_generation,
                l.to
            );
        }
        if self.views.is_empty() {
            let _ = writeln!(out, "  views: none live");
        }
        for v in &self.views {
            let mounted = v
                .mounted
                .as_ref()
                .map_or_else(|| "nothing".to_owned(), ToString::to_string);
            let reach = match (v.active_reachable, v.unreachable_long_enough) {
                (true, _) => "active reachable",
                (false, false) => "active unreachable",
                (false, true) => "active unreachable for failover_after",
            };
            let _ = writeln!(
                out,
                "  view {}: on {mounted}, generation {}, {reach}",
                v.agent, v.generation
            );
        }
        out
    }
}

/// An operator's failback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failback {
    /// Where to.
    pub to: ReplicaId,
    /// The volume's configured replicas.
    pub members: Vec<ReplicaId>,
    /// Who asks (recorded as `decided_by`).
    pub by: String,
    /// The operator confirms that the reverse resync is done.
    pub confirm_resync: bool,
    /// Optional check that must exit 0 (e.g. a mirror-state query).
    pub resync_check: Option<CommandSpec>,
    /// TTL of the lease the lock is taken on while failing back.
    pub lock_ttl: Duration,
}

/// What [`AgentSession::try_failover`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverOutcome {
    /// Another agent holds the election lock: follow the key.
    Lost {
        /// The holder.
        holder: String,
    },
    /// The active record is no longer at the generation asked for: follow it.
    AlreadyMoved(ActiveRecord),
    /// The promote command failed or hung (bounded); the lock is released and the
    /// fleet stays on `active`.
    PromoteFailed {
        /// What it did.
        report: CommandReport,
        /// The unchanged active record.
        active: ActiveRecord,
    },
    /// The promote command succeeded but this agent's lease (and so its lock) was lost
    /// meanwhile and nobody moved; nothing was written. The next winner runs the
    /// promote command again (it must be idempotent).
    LockLost {
        /// What it did.
        report: CommandReport,
    },
    /// This agent moved the fleet: the new record.
    Moved(ActiveRecord),
}

/// A connection to the fleet's records (reads and operator actions).
#[derive(Clone)]
pub struct Fleet {
    client: Client,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

/// The compare that holds while the lock is the one created at `rev`.
fn lock_is(keys: &Keys, rev: i64) -> Compare {
    Compare::create_revision(keys.failover(), CompareOp::Equal, rev)
}

impl Fleet {
    /// Connect.
    pub async fn connect(opts: &FleetOptions) -> Result<Self, FleetError> {
        Ok(Self::from_client(connect(opts).await?))
    }

    /// Use an existing client.
    pub fn from_client(client: Client) -> Self {
        Fleet { client }
    }

    async fn read_active(&self, keys: &Keys) -> Result<Option<(ActiveRecord, i64)>, FleetError> {
        let key = keys.active();
        let mut resp = self.client.clone().get(key.clone(), None).await?;
        match resp.take_kvs().into_iter().next() {
            Some(kv) => Ok(Some((from_json(&key, &kv)?, kv.mod_revision()))),
            None => Ok(None),
        }
    }

    /// The active record of `volume`, if seeded.
    pub async fn active(&self, volume: &str) -> Result<Option<ActiveRecord>, FleetError> {
        Ok(self.read_active(&Keys::new(volume)?).await?.map(|(r, _)| r))
    }

    /// Create `active` with generation 1 on `replica` if it does not exist (a fresh
    /// fleet), decided by `by`; return whatever is there afterwards.
    pub async fn seed_active(
        &self,
        volume: &str,
        replica: &ReplicaId,
        by: &str,
    ) -> Result<ActiveRecord, FleetError> {
        let keys = Keys::new(volume)?;
        let key = keys.active();
        let record = ActiveRecord {
            replica: replica.clone(),
            generation: 1,
            decided_by: by.to_owned(),
            decided_at_ms: now_ms(),
            reason: Reason::Seed,
            previous: None,
            promote: None,
        };
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), to_json(&key, &record)?, None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            tracing::info!(volume, replica = %replica, "active replica seeded, generation 1");
            return Ok(record);
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
            {
                return from_json(&key, kv);
            }
        }
        Err(FleetError::Protocol(
            "active neither created nor found".into(),
        ))
    }

    /// Every live view of `volume` (malformed ones are skipped with a warning).
    pub async fn views(&self, volume: &str) -> Result<Vec<AgentView>, FleetError> {
        Ok(self.status(volume).await?.views)
    }

    /// Active record, lock and every live view of `volume`, at one revision.
    pub async fn status(&self, volume: &str) -> Result<VolumeStatus, FleetError> {
        let keys = Keys::new(volume)?;
        let txn = Txn::new().and_then([
            TxnOp::get(keys.active(), None),
            TxnOp::get(keys.failover(), None),
            TxnOp::get(keys.views(), Some(GetOptions::new().with_prefix())),
        ]);
        let resp = self.client.clone().txn(txn).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let ops = resp.op_responses();
        let gets: Vec<&[KeyValue]> = ops
            .iter()
            .filter_map(|op| match op {
                TxnOpResponse::Get(g) => Some(g.kvs()),
                _ => None,
            })
            .collect();
        let [active, lock, views] = gets.as_slice() else {
            return Err(FleetError::Protocol(format!(
                "{} answers to 3 reads",
                gets.len()
            )));
        };
        let active = match active.first() {
            Some(kv) => Some(from_json(&keys.active(), kv)?),
            None => None,
        };
        let lock = match lock.first() {
            Some(kv) => Some(from_json(&keys.failover(), kv)?),
            None => None,
        };
        let mut out = Vec::new();
        for kv in views.iter() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match from_json::<AgentView>(&key, kv) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(error = %e, "skipping a malformed view"),
            }
        }
        out.sort_by(|a, b| a.agent.cmp(&b.agent));
        Ok(VolumeStatus {
            volume: volume.to_owned(),
            active,
            lock,
            views: out,
            revision,
        })
    }

    /// Take the election lock on `lease`: `Ok(rev)` (its create revision) or
    /// `Err(holder)`.
    async fn take_lock(
        &self,
        keys: &Keys,
        lock: &LockRecord,
        lease: i64,
    ) -> Result<Result<i64, LockRecord>, FleetError> {
        let key = keys.failover();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                to_json(&key, lock)?,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            let rev = resp
                .header()
                .map(|h| h.revision())
                .ok_or_else(|| FleetError::Protocol("response without header".into()))?;
            return Ok(Ok(rev));
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
            {
                return Ok(Err(from_json(&key, kv)?));
            }
        }
        // Deleted between compare and get cannot happen inside one txn; the holder's
        // lease expired in between is the only benign reading. Report it as held.
        Ok(Err(LockRecord {
            holder: "(expired)".into(),
            ..lock.clone()
        }))
    }

    async fn release_lock(&self, keys: &Keys, rev: i64) {
        let txn = Txn::new()
            .when([lock_is(keys, rev)])
            .and_then([TxnOp::delete(keys.failover(), None)]);
        if let Err(e) = self.client.clone().txn(txn).await {
            // It goes with its lease anyway.
            tracing::warn!(error = %e, "cannot release the failover lock");
        }
    }

    /// Write `next` over the record at `mod_rev`, only while the lock created at
    /// `lock_rev` is still held; the lock is deleted in the same transaction.
    /// `Ok(None)`: written; `Ok(Some(current))`: refused, the record now there.
    async fn cas_active(
        &self,
        keys: &Keys,
        mod_rev: i64,
        lock_rev: i64,
        next: &ActiveRecord,
    ) -> Result<Option<Option<ActiveRecord>>, FleetError> {
        let key = keys.active();
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key.clone(), CompareOp::Equal, mod_rev),
                lock_is(keys, lock_rev),
            ])
            .and_then([
                TxnOp::put(key.clone(), to_json(&key, next)?, None),
                TxnOp::delete(keys.failover(), None),
            ])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            return Ok(None);
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op {
                return Ok(Some(match g.kvs().first() {
                    Some(kv) => Some(from_json(&key, kv)?),
                    None => None,
                }));
            }
        }
        Err(FleetError::Protocol(
            "CAS refused without the record".into(),
        ))
    }

    /// Move the fleet back to `req.to` (a member), with a new generation and reason
    /// `failback`, once the operator confirms the reverse resync and the optional
    /// check passes. Takes the election lock (on a lease of its own) so it cannot
    /// race a failover.
    pub async fn failback(&self, volume: &str, req: &Failback) -> Result<ActiveRecord, FleetError> {
        let keys = Keys::new(volume)?;
        if !req.members.contains(&req.to) {
            return Err(FleetError::NotAMember { to: req.to.clone() });
        }
        if !req.confirm_resync {
            return Err(FleetError::ResyncNotConfirmed);
        }
        let Some((current, mod_rev)) = self.read_active(&keys).await? else {
            return Err(FleetError::NotSeeded {
                volume: volume.into(),
            });
        };
        if current.replica == req.to {
            return Err(FleetError::AlreadyActive { to: req.to.clone() });
        }
        let check = match &req.resync_check {
            Some(spec) => {
                let env = command_env(volume, &current.replica, &req.to, current.generation + 1);
                let report = run_bounded(spec, &env).await;
                tracing::info!(volume, check = %report, "resync check ran");
                if !report.succeeded() {
                    return Err(FleetError::ResyncCheckFailed(Box::new(report)));
                }
                Some(report)
            }
            None => None,
        };
        let mut client = self.client.clone();
        let lease = client.lease_grant(ttl_secs(req.lock_ttl), None).await?.id();
        let lock = LockRecord {
            holder: req.by.clone(),
            from_generation: current.generation,
            to: req.to.clone(),
            reason: Reason::Failback,
        };
        let result = async {
            let lock_rev = match self.take_lock(&keys, &lock, lease).await? {
                Ok(rev) => rev,
                Err(held) => {
                    return Err(FleetError::Busy {
                        holder: held.holder,
                    });
                }
            };
            let next = ActiveRecord {
                replica: req.to.clone(),
                generation: current.generation + 1,
                decided_by: req.by.clone(),
                decided_at_ms: now_ms(),
                reason: Reason::Failback,
                previous: Some(current.replica.clone()),
                promote: check,
            };
            match self.cas_active(&keys, mod_rev, lock_rev, &next).await? {
                None => Ok(next),
                Some(now) => {
                    self.release_lock(&keys, lock_rev).await;
                    Err(FleetError::Conflict {
                        generation: now.map(|r| r.generation).unwrap_or(0),
                    })
                }
            }
        }
        .await;
        let _ = client.lease_revoke(lease).await;
        if let Ok(r) = &result {
            tracing::info!(volume, to = %r.replica, generation = r.generation, "failback written");
        }
        result
    }
}

/// Environment of the promote and resync-check commands.
fn command_env(
    volume: &str,
    from: &ReplicaId,
    to: &ReplicaId,
    generation: u64,
) -> Vec<(OsString, OsString)> {
    [
        ("NFSHA_VOLUME", volume.to_owned()),
        ("NFSHA_FROM_HOST", from.host.clone()),
        ("NFSHA_FROM_EXPORT", from.export.clone()),
        ("NFSHA_TO_HOST", to.host.clone()),
        ("NFSHA_TO_EXPORT", to.export.clone()),
        ("NFSHA_GENERATION", generation.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect()
}

struct Session {
    id: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// One agent: its lease, its view, its candidacy.
pub struct AgentSession {
    fleet: Fleet,
    agent: String,
    ttl: Duration,
    session: Mutex<Option<Session>>,
}

impl fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSession")
            .field("agent", &self.agent)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AgentSession {
    /// A session for `agent` whose lease gets `ttl` (granted on first use).
    pub fn new(fleet: Fleet, agent: &str, ttl: Duration) -> Result<Self, FleetError> {
        crate::model::check_agent_name(agent)?;
        Ok(AgentSession {
            fleet,
            agent: agent.to_owned(),
            ttl,
            session: Mutex::new(None),
        })
    }

    /// The fleet connection.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The agent's name.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The lease id, if one is held.
    pub async fn lease(&self) -> Option<i64> {
        self.session.lock().await.as_ref().map(|s| s.id)
    }

    /// The lease, renewed, or a new one if it had expired (a put on an expired lease
    /// would fail).
    async fn live_lease(&self) -> Result<i64, FleetError> {
        self.keep_alive().await?;
        self.ensure_lease().await
    }

    async fn ensure_lease(&self) -> Result<i64, FleetError> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.id);
        }
        let resp = self
            .fleet
            .client
            .clone()
            .lease_grant(ttl_secs(self.ttl), None)
            .await?;
        *slot = Some(Session {
            id: resp.id(),
            keeper: None,
        });
        Ok(resp.id())
    }

    /// Keep the lease alive. `Ok(false)`: there is none or it had expired (forgotten;
    /// the next [`Self::publish_view`] grants a new one).
    pub async fn keep_alive(&self) -> Result<bool, FleetError> {
        let mut slot = self.session.lock().await;
        let Some(session) = slot.as_mut() else {
            return Ok(false);
        };
        // Taken out while in use: a dropped call leaves no half-used stream behind.
        let (mut keeper, mut stream) = match session.keeper.take() {
            Some(k) => k,
            None => match self.fleet.client.clone().lease_keep_alive(session.id).await {
                Ok(k) => k,
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => {
                    tracing::warn!(lease = session.id, "agent lease expired");
                    *slot = None;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            },
        };
        keeper.keep_alive().await?;
        match stream.message().await? {
            Some(resp) if resp.ttl() > 0 => {
                session.keeper = Some((keeper, stream));
                Ok(true)
            }
            Some(_) => {
                tracing::warn!(lease = session.id, "agent lease expired");
                *slot = None;
                Ok(false)
            }
            None => Err(FleetError::Protocol("keepalive stream closed".into())),
        }
    }

    /// Revoke the lease: the view (and a lock held) disappear at once.
    pub async fn resign(&self) -> Result<(), FleetError> {
        let taken = self.session.lock().await.take();
        if let Some(s) = taken {
            self.fleet.client.clone().lease_revoke(s.id).await?;
        }
        Ok(())
    }

    /// Write this agent's view of `volume` on its lease (its `agent` field is set to
    /// this session's name). Renews the lease first, and takes a new one if it had
    /// expired, so calling this every tick also keeps the view alive.
    pub async fn publish_view(&self, volume: &str, view: &AgentView) -> Result<(), FleetError> {
        let keys = Keys::new(volume)?;
        let key = keys.view(&self.agent)?;
        let view = AgentView {
            agent: self.agent.clone(),
            ..view.clone()
        };
        let lease = self.live_lease().await?;
        self.fleet
            .client
            .clone()
            .put(
                key.clone(),
                to_json(&key, &view)?,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        Ok(())
    }

    /// Run for the failover of `volume` from `from_generation` to `to`: win the lock
    /// or return [`FailoverOutcome::Lost`]; re-read `active`; run `promote` (bounded,
    /// with the lease kept alive meanwhile); on success move `active` to `to` with
    /// generation + 1 by a transaction guarded by its revision and by the lock.
    pub async fn try_failover(
        &self,
        volume: &str,
        from_generation: u64,
        to: &ReplicaId,
        promote: &CommandSpec,
    ) -> Result<FailoverOutcome, FleetError> {
        let keys = Keys::new(volume)?;
        let lease = self.live_lease().await?;
        let lock = LockRecord {
            holder: self.agent.clone(),
            from_generation,
            to: to.clone(),
            reason: Reason::Failover,
        };
        let lock_rev = match self.fleet.take_lock(&keys, &lock, lease).await? {
            Ok(rev) => rev,
            Err(held) => {
                tracing::info!(volume, holder = %held.holder, "failover lock held by another");
                return Ok(FailoverOutcome::Lost {
                    holder: held.holder,
                });
            }
        };
        let result = self
            .failover_locked(&keys, volume, from_generation, to, promote, lock_rev)
            .await;
        match &result {
            Ok(FailoverOutcome::Moved(_)) => {}
            // Any other ending leaves the lock to the next candidate.
            _ => self.fleet.release_lock(&keys, lock_rev).await,
        }
        result
    }

    async fn failover_locked(
        &self,
        keys: &Keys,
        volume: &str,
        from_generation: u64,
        to: &ReplicaId,
        promote: &CommandSpec,
        lock_rev: i64,
    ) -> Result<FailoverOutcome, FleetError> {
        let Some((current, mod_rev)) = self.fleet.read_active(keys).await? else {
            return Err(FleetError::NotSeeded {
                volume: volume.into(),
            });
        };
        if current.generation != from_generation {
            return Ok(FailoverOutcome::AlreadyMoved(current));
        }
        if current.replica == *to {
            return Err(FleetError::AlreadyActive { to: to.clone() });
        }
        tracing::info!(volume, from = %current.replica, to = %to, "won the failover lock; promoting");
        let env = command_env(volume, &current.replica, to, from_generation + 1);
        let report = self.promote_keeping_lease(promote, &env).await;
        tracing::info!(volume, promote = %report, output = %report.output_tail, "promote command ran");
        if !report.succeeded() {
            return Ok(FailoverOutcome::PromoteFailed {
                report,
                active: current,
            });
        }
        let next = ActiveRecord {
            replica: to.clone(),
            generation: from_generation + 1,
            decided_by: self.agent.clone(),
            decided_at_ms: now_ms(),
            reason: Reason::Failover,
            previous: Some(current.replica.clone()),
            promote: Some(report.clone()),
        };
        match self
            .fleet
            .cas_active(keys, mod_rev, lock_rev, &next)
            .await?
        {
            None => {
                tracing::info!(volume, to = %to, generation = next.generation, "fleet moved");
                Ok(FailoverOutcome::Moved(next))
            }
            Some(Some(r)) if r.generation != from_generation => {
                Ok(FailoverOutcome::AlreadyMoved(r))
            }
            Some(_) => Ok(FailoverOutcome::LockLost { report }),
        }
    }

    async fn promote_keeping_lease(
        &self,
        promote: &CommandSpec,
        env: &[(OsString, OsString)],
    ) -> CommandReport {
        let period = (self.ttl / 3).max(Duration::from_millis(200));
        let keep = async {
            loop {
                tokio::time::sleep(period).await;
                match tokio::time::timeout(period, self.keep_alive()).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => tracing::warn!("lease lost while promoting"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "keepalive failed while promoting"),
                    Err(_) => tracing::warn!("keepalive timed out while promoting"),
                }
            }
        };
        tokio::select! {
            r = run_bounded(promote, env) => r,
            never = keep => never,
        }
    }
}

/// What [`watch_active`] yields.
// Rare events, moved once through a channel: boxing the record buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A newer active record: follow it.
    Active(ActiveRecord),
    /// etcd cannot be reached (said once per outage): keep what you have.
    Unreachable(String),
}

/// Every newer active record of `volume`, never going back to a lower generation,
/// with a re-read after every reconnect. Never ends; drop it to stop watching.
pub fn watch_active(
    opts: FleetOptions,
    volume: &str,
) -> Result<impl Stream<Item = WatchEvent> + Send + Unpin + 'static, FleetError> {
    watch_active_from(opts, volume, GenerationFilter::new())
}

/// [`watch_active`] starting from `filter` (e.g. the generation in the agent's state).
pub fn watch_active_from(
    opts: FleetOptions,
    volume: &str,
    mut filter: GenerationFilter,
) -> Result<impl Stream<Item = WatchEvent> + Send + Unpin + 'static, FleetError> {
    let keys = Keys::new(volume)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<WatchEvent>(8);
    tokio::spawn(async move {
        let mut said_unreachable = false;
        loop {
            if tx.is_closed() {
                return;
            }
            let err = watch_once(&opts, &keys, &mut filter, &tx, &mut said_unreachable).await;
            if tx.is_closed() {
                return;
            }
            if let Err(e) = err {
                tracing::debug!(error = %e, "active watch interrupted; retrying");
                if !said_unreachable {
                    said_unreachable = true;
                    if tx
                        .send(WatchEvent::Unreachable(e.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|v| (v, rx)) },
    )))
}

async fn watch_once(
    opts: &FleetOptions,
    keys: &Keys,
    filter: &mut GenerationFilter,
    tx: &tokio::sync::mpsc::Sender<WatchEvent>,
    said_unreachable: &mut bool,
) -> Result<(), FleetError> {
    let mut client = connect(opts).await?;
    let key = keys.active();
    let resp = client.get(key.clone(), None).await?;
    *said_unreachable = false;
    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
    if let Some(kv) = resp.kvs().first() {
        offer(&key, kv, filter, tx).await;
    }
    let mut stream = client
        .watch(
            key.clone(),
            Some(WatchOptions::new().with_start_revision(rev + 1)),
        )
        .await?;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m?,
            _ = tx.closed() => return Ok(()),
        };
        let Some(resp) = msg else { break };
        for ev in resp.events() {
            if ev.event_type() != EventType::Put {
                continue;
            }
            if let Some(kv) = ev.kv() {
                offer(&key, kv, filter, tx).await;
            }
        }
        if resp.canceled() {
            break;
        }
    }
    Err(FleetError::Protocol("watch stream ended".into()))
}

async fn offer(
    key: &str,
    kv: &KeyValue,
    filter: &mut GenerationFilter,
    tx: &tokio::sync::mpsc::Sender<WatchEvent>,
) {
    match from_json::<ActiveRecord>(key, kv) {
        Ok(r) if filter.admit(&r) => {
            let _ = tx.send(WatchEvent::Active(r)).await;
        }
        Ok(r) => tracing::debug!(generation = r.generation, "ignoring an older active record"),
        Err(e) => tracing::warn!(error = %e, "ignoring a malformed active record"),
    }
}
