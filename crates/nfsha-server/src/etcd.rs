//! [`Coordinator`] on etcd v3 (crate `etcd-client`), Patroni-style.
//!
//! Role: one session lease per node process; the leader key is created by a
//! transaction comparing `create_revision == 0` and bound to that lease; renewal is a
//! lease keepalive followed by a read of the leader key (create revision and lease must
//! still be ours). Failure modes: etcd unreachable, slow or frozen → calls return
//! [`CoordError`] or never return (callers bound them); a keepalive stream that saw an
//! error or was abandoned is thrown away and reopened, so a late answer to an old
//! keepalive can never be mistaken for a fresh renewal.
//!
//! **A poisoned leader key** (issue 16, hole 2) — one whose value is not a
//! [`LeaderRecord`], or that is not bound to a lease (nfsha always binds it to the holder's
//! session lease, so such a key was written by someone else, and it would never expire) —
//! is treated as vacant: [`Coordinator::leader`] reports no leader, and
//! [`Coordinator::acquire`] deletes it in a transaction guarded by the key's
//! `mod_revision` (so a key rewritten meanwhile is left alone), logs it with what it
//! held, counts it ([`EtcdCoordinator::poisoned_leader_keys`]), and then creates the key
//! the normal way. Deleting and re-creating, rather than overwriting, gives the new leader
//! a fresh create revision: an overwrite would keep the poisoned key's, which may be the
//! epoch of a leader that was still serving when the key was overwritten.
//!
//! **The published and the served epoch.** A successful acquire publishes `epoch` and,
//! in the same guarded transaction, `served` ([`ServedRecord::acquired`], from the two
//! keys as they were); [`Coordinator::record_served`] rewrites `served` before the
//! exports go up. If `served` cannot be read or parsed at acquire, only `epoch` is
//! published: the new epoch then counts as served (as before `served` existed).

use crate::coordinator::{
    Acquire, ClusterStatus, CoordError, Coordinator, DivergedRecord, Keys, LagOverride, LeaderInfo,
    LeaderPosition, LeaderRecord, MemberInfo, PromotionRecord, ReplicaRecord, ReplicaView,
    ServedRecord, SwitchoverRequest,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use std::fmt;
use std::time::Duration;
use tokio::sync::Mutex;

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Endpoints (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// TLS files, if etcd uses TLS.
    pub tls: Option<nfsha_config::EtcdTls>,
    /// User and password file, if etcd uses auth.
    pub auth: Option<nfsha_config::EtcdAuth>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive ping interval (a frozen etcd is detected after interval + timeout).
    pub keepalive: Duration,
}

impl EtcdOptions {
    /// Plain endpoints, 1 s connect timeout, 1 s keepalive.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdOptions {
            endpoints,
            tls: None,
            auth: None,
            connect_timeout: Duration::from_secs(1),
            keepalive: Duration::from_secs(1),
        }
    }

    /// From an `[agent.cluster]` section.
    pub fn from_cluster(cfg: &nfsha_config::ClusterSource) -> Self {
        EtcdOptions {
            tls: cfg.etcd_tls.clone(),
            auth: cfg.etcd_auth.clone(),
            ..EtcdOptions::new(cfg.etcd_endpoints.clone())
        }
    }

    /// From a `[server]` section.
    pub fn from_server(cfg: &nfsha_config::ServerConfig) -> Self {
        EtcdOptions {
            tls: cfg.etcd_tls.clone(),
            auth: cfg.etcd_auth.clone(),
            ..EtcdOptions::new(cfg.etcd_endpoints.clone())
        }
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, CoordError> {
    std::fs::read(path).map_err(|source| CoordError::Credentials {
        path: path.display().to_string(),
        source,
    })
}

/// Connect an etcd client (lazily: an unreachable etcd shows up on the first request,
/// except with auth, which authenticates at once).
pub async fn connect(opts: &EtcdOptions) -> Result<Client, CoordError> {
    let mut co = ConnectOptions::new()
        .with_connect_timeout(opts.connect_timeout)
        .with_keep_alive(opts.keepalive, opts.keepalive)
        .with_keep_alive_while_idle(true);
    if let Some(auth) = &opts.auth {
        let pw = read(&auth.password_file)?;
        let pw = String::from_utf8_lossy(&pw)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        co = co.with_user(auth.user.clone(), pw);
    }
    if let Some(tls) = &opts.tls {
        let mut t = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?));
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            t = t.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        co = co.with_tls(t);
    }
    Ok(Client::connect(&opts.endpoints, Some(co)).await?)
}

struct Session {
    id: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// The etcd coordinator of one node.
pub struct EtcdCoordinator {
    client: Client,
    keys: Keys,
    node: String,
    ttl: Duration,
    session: Mutex<Option<Session>>,
    poisoned_cleared: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("keys", &self.keys)
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn ttl_secs(ttl: Duration) -> i64 {
    // etcd leases are whole seconds; round up so the lease is never shorter than asked
    // (the controller fences on its own, shorter, clock anyway).
    i64::try_from(ttl.as_millis().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1)
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> Result<u64, CoordError> {
    header
        .map(|h| h.revision() as u64)
        .ok_or_else(|| CoordError::Protocol("response without header".into()))
}

/// Why a leader key was not written by nfsha (see the module header), or `None`.
pub fn poisoned(kv: &KeyValue) -> Option<String> {
    if let Err(e) = serde_json::from_slice::<LeaderRecord>(kv.value()) {
        return Some(format!("its value is not a leader record ({e})"));
    }
    if kv.lease() == 0 {
        return Some("it is not bound to a lease".to_owned());
    }
    None
}

/// The first bytes of a value, printable, for log lines.
pub fn excerpt(value: &[u8]) -> String {
    const MAX: usize = 80;
    let mut s: String = String::from_utf8_lossy(&value[..value.len().min(MAX)])
        .chars()
        .flat_map(char::escape_default)
        .collect();
    if value.len() > MAX {
        s.push('…');
    }
    s
}

/// Parse a leader key into [`LeaderInfo`].
pub fn parse_leader(key: &str, kv: &KeyValue) -> Result<LeaderInfo, CoordError> {
    let rec: LeaderRecord =
        serde_json::from_slice(kv.value()).map_err(|source| CoordError::Malformed {
            key: key.to_owned(),
            source,
        })?;
    Ok(LeaderInfo {
        node: rec.node,
        address: rec.address,
        epoch: kv.create_revision() as u64,
        serving: rec.serving,
    })
}

/// The key an `or_else` get of a failed transaction found.
fn held(resp: &etcd_client::TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// The value of the `epoch` key (`None`: not a number).
fn parse_epoch(kv: &KeyValue) -> Option<u64> {
    kv.value_str().ok()?.trim().parse().ok()
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, kv: &KeyValue) -> Result<T, CoordError> {
    serde_json::from_slice(kv.value()).map_err(|source| CoordError::Malformed {
        key: key.to_owned(),
        source,
    })
}

impl EtcdCoordinator {
    /// A coordinator for `node` in `cluster`; session leases get `ttl`.
    pub fn new(client: Client, cluster: &str, node: &str, ttl: Duration) -> Self {
        EtcdCoordinator {
            client,
            keys: Keys::new(cluster),
            node: node.to_owned(),
            ttl,
            session: Mutex::new(None),
            poisoned_cleared: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Poisoned leader keys this coordinator deleted (see the module header).
    pub fn poisoned_leader_keys(&self) -> u64 {
        self.poisoned_cleared
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Delete the poisoned leader key `kv` unless it changed since it was read.
    async fn clear_poisoned(&self, key: &str, kv: &KeyValue, why: &str) -> Result<(), CoordError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.to_owned(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::delete(key.to_owned(), None)]);
        let deleted = self.client.clone().txn(txn).await?.succeeded();
        if deleted {
            self.poisoned_cleared
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                key,
                create_revision = kv.create_revision(),
                mod_revision = kv.mod_revision(),
                lease = kv.lease(),
                value = %excerpt(kv.value()),
                "deleted a poisoned leader key ({why}): nfsha never writes one like it; campaigning"
            );
        }
        Ok(())
    }

    /// The `served` value the acquire of `epoch` publishes, from `epoch` and `served`
    /// as they are (only the holder of the leader key writes either: read after the
    /// create, they cannot change before the guarded publish).
    async fn served_after_acquire(&self, epoch: u64) -> Result<Vec<u8>, CoordError> {
        let published = self
            .get_one(&self.keys.epoch())
            .await?
            .as_ref()
            .and_then(parse_epoch);
        let key = self.keys.served();
        let prev: Option<ServedRecord> = match self.get_one(&key).await? {
            Some(kv) => Some(parse(&key, &kv)?),
            None => None,
        };
        let next =
            ServedRecord::acquired(prev.as_ref(), published, epoch, nfsha_core::event::now_ms());
        serde_json::to_vec(&next).map_err(|source| CoordError::Malformed { key, source })
    }

    /// Connect and build.
    pub async fn connect(
        opts: &EtcdOptions,
        cluster: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<Self, CoordError> {
        Ok(Self::new(connect(opts).await?, cluster, node, ttl))
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The session lease id, if one is held.
    pub async fn session_lease(&self) -> Option<i64> {
        self.session.lock().await.as_ref().map(|s| s.id)
    }

    async fn ensure_session(&self, slot: &mut Option<Session>) -> Result<i64, CoordError> {
        if let Some(s) = slot {
            return Ok(s.id);
        }
        let resp = self
            .client
            .clone()
            .lease_grant(ttl_secs(self.ttl), None)
            .await?;
        if resp.ttl() < ttl_secs(self.ttl) {
            tracing::warn!(
                granted = resp.ttl(),
                "etcd granted a shorter lease than asked"
            );
        }
        tracing::debug!(lease = resp.id(), "session lease granted");
        *slot = Some(Session {
            id: resp.id(),
            keeper: None,
        });
        Ok(resp.id())
    }

    /// Keep the session lease alive. `Ok(false)`: it had expired (and is forgotten).
    async fn keep_alive(&self, slot: &mut Option<Session>) -> Result<bool, CoordError> {
        let Some(session) = slot.as_mut() else {
            return Ok(false);
        };
        // Taken out while in use: if this future is dropped (caller's deadline), the
        // stream is gone and the next call opens a fresh one.
        let (mut keeper, mut stream) = match session.keeper.take() {
            Some(k) => k,
            None => match self.client.clone().lease_keep_alive(session.id).await {
                Ok(k) => k,
                // etcd-client reports an expired lease (TTL <= 0 on the first answer) as
                // this error; it is a fact about the lease, not a transport failure.
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => {
                    tracing::warn!(lease = session.id, "session lease expired");
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
                tracing::warn!(lease = session.id, "session lease expired");
                *slot = None;
                Ok(false)
            }
            None => Err(CoordError::Protocol("keepalive stream closed".into())),
        }
    }

    async fn get_one(&self, key: &str) -> Result<Option<KeyValue>, CoordError> {
        let mut resp = self.client.clone().get(key, None).await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// Every record under `prefix`, parsed, keyed by what follows the prefix.
    async fn get_prefix<T: serde::de::DeserializeOwned>(
        &self,
        prefix: String,
    ) -> Result<Vec<(String, T)>, CoordError> {
        let mut resp = self
            .client
            .clone()
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut out = Vec::new();
        for kv in resp.take_kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let v: T =
                serde_json::from_slice(kv.value()).map_err(|source| CoordError::Malformed {
                    key: key.clone(),
                    source,
                })?;
            out.push((key[prefix.len()..].to_owned(), v));
        }
        Ok(out)
    }

    /// Give `node` the operator's permission to campaign although it is behind (see
    /// [`crate::replication`]). The permission lives on a lease of its own with `ttl`.
    /// Returns `false` if a permission is already pending.
    pub async fn request_lag_override(
        &self,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, CoordError> {
        let key = self.keys.accept_lag();
        let value = serde_json::to_vec(&LagOverride {
            node: node.to_owned(),
            requested_ms: nfsha_core::event::now_ms(),
        })
        .map_err(|source| CoordError::Malformed {
            key: key.clone(),
            source,
        })?;
        self.create_on_own_lease(key, value, ttl).await
    }

    /// Read the whole cluster state.
    pub async fn cluster_status(&self, cluster: &str) -> Result<ClusterStatus, CoordError> {
        let leader = self.leader().await?;
        let epoch = match self.get_one(&self.keys.epoch()).await? {
            Some(kv) => parse_epoch(&kv),
            None => None,
        };
        let served = match self.get_one(&self.keys.served()).await? {
            Some(kv) => Some(parse(&self.keys.served(), &kv)?),
            None => None,
        };
        let members = self.members().await?;
        let replicas = self
            .get_prefix::<ReplicaRecord>(self.keys.replicas())
            .await?
            .into_iter()
            .collect();
        let accept_lag = match self.get_one(&self.keys.accept_lag()).await? {
            Some(kv) => Some(parse(&self.keys.accept_lag(), &kv)?),
            None => None,
        };
        let position = match self.get_one(&self.keys.position()).await? {
            Some(kv) => Some(parse(&self.keys.position(), &kv)?),
            None => None,
        };
        let diverged = self
            .get_prefix::<DivergedRecord>(format!("{}diverged/", self.keys.prefix))
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        let promoted = self
            .get_prefix::<PromotionRecord>(format!("{}promoted/", self.keys.prefix))
            .await?
            .into_iter()
            .collect();
        Ok(ClusterStatus {
            cluster: cluster.to_owned(),
            leader,
            epoch,
            served,
            members,
            switchover: self.switchover_request().await?,
            replicas,
            accept_lag,
            position,
            diverged,
            promoted,
        })
    }

    /// Remove the record of quarantine snapshot `name` on `node` (after
    /// `nfsha server diverged drop` deleted the snapshot). Returns whether it existed.
    pub async fn forget_diverged(&self, node: &str, name: &str) -> Result<bool, CoordError> {
        let key = format!("{}{}", self.keys.prefix, Keys::diverged_rel(node, name));
        Ok(self.client.clone().delete(key, None).await?.deleted() > 0)
    }

    /// Ask for a planned switchover. The request lives on a lease of its own with
    /// `ttl`, so an abandoned request expires. Returns `false` if one is already pending.
    pub async fn request_switchover(
        &self,
        req: &SwitchoverRequest,
        ttl: Duration,
    ) -> Result<bool, CoordError> {
        let key = self.keys.switchover();
        let value = serde_json::to_vec(req).map_err(|source| CoordError::Malformed {
            key: key.clone(),
            source,
        })?;
        self.create_on_own_lease(key, value, ttl).await
    }

    /// Create `key` = `value` unless it exists, on a new lease of `ttl` (revoked again
    /// when the key already existed). Returns whether it was created.
    async fn create_on_own_lease(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, CoordError> {
        let mut client = self.client.clone();
        let lease = client.lease_grant(ttl_secs(ttl), None).await?.id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let resp = client.txn(txn).await?;
        if !resp.succeeded() {
            let _ = client.lease_revoke(lease).await;
        }
        Ok(resp.succeeded())
    }
}

impl Coordinator for EtcdCoordinator {
    async fn acquire(&self, record: &LeaderRecord) -> Result<Acquire, CoordError> {
        let mut slot = self.session.lock().await;
        // A lease that expired while we were standby would make the put fail.
        if slot.is_some() && !self.keep_alive(&mut slot).await? {
            *slot = None;
        }
        let lease = self.ensure_session(&mut slot).await?;
        drop(slot);
        let key = self.keys.leader();
        let value = serde_json::to_vec(record).map_err(|source| CoordError::Malformed {
            key: key.clone(),
            source,
        })?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        // A poisoned key is deleted once, then the create is tried again.
        let mut resp = self.client.clone().txn(txn.clone()).await?;
        if !resp.succeeded()
            && let Some(kv) = held(&resp)
            && let Some(why) = poisoned(&kv)
        {
            self.clear_poisoned(&key, &kv, &why).await?;
            resp = self.client.clone().txn(txn).await?;
        }
        if resp.succeeded() {
            let epoch = revision(resp.header())?;
            let mut puts = vec![TxnOp::put(self.keys.epoch(), epoch.to_string(), None)];
            match self.served_after_acquire(epoch).await {
                Ok(served) => puts.push(TxnOp::put(self.keys.served(), served, None)),
                Err(e) => {
                    tracing::warn!(epoch, error = %e, "cannot read the served epoch; this epoch counts as served")
                }
            }
            let publish = Txn::new()
                .when([Compare::create_revision(
                    key,
                    CompareOp::Equal,
                    epoch as i64,
                )])
                .and_then(puts);
            self.client.clone().txn(publish).await?;
            tracing::info!(epoch, lease, "leader key acquired");
            return Ok(Acquire::Acquired { epoch });
        }
        if let Some(kv) = held(&resp) {
            if let Some(why) = poisoned(&kv) {
                // Written again right after the delete: next tick.
                return Err(CoordError::Poisoned { key, why });
            }
            return Ok(Acquire::Held(parse_leader(&key, &kv)?));
        }
        // Deleted between the compare and the get cannot happen inside one txn;
        // an empty get here means etcd answered something unexpected.
        Err(CoordError::Protocol(
            "leader key neither created nor found".into(),
        ))
    }

    async fn renew(&self, epoch: u64) -> Result<bool, CoordError> {
        let mut slot = self.session.lock().await;
        if !self.keep_alive(&mut slot).await? {
            return Ok(false);
        }
        let lease = slot.as_ref().map(|s| s.id);
        drop(slot);
        match self.get_one(&self.keys.leader()).await? {
            Some(kv) => Ok(kv.create_revision() as u64 == epoch && Some(kv.lease()) == lease),
            None => Ok(false),
        }
    }

    async fn update_leader(&self, epoch: u64, record: &LeaderRecord) -> Result<bool, CoordError> {
        let key = self.keys.leader();
        let value = serde_json::to_vec(record).map_err(|source| CoordError::Malformed {
            key: key.clone(),
            source,
        })?;
        // Keep the key on the lease it was created with: `ignore_lease` keeps it.
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                epoch as i64,
            )])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_ignore_lease()),
            )]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }
    async fn release(&self, epoch: u64) -> Result<(), CoordError> {
        let key = self.keys.leader();
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                epoch as i64,
            )])
            .and_then([TxnOp::delete(key, None)]);
        let resp = self.client.clone().txn(txn).await?;
        tracing::info!(epoch, deleted = resp.succeeded(), "leader key released");
        Ok(())
    }

    async fn resign_session(&self) -> Result<(), CoordError> {
        let taken = self.session.lock().await.take();
        if let Some(s) = taken {
            self.client.clone().lease_revoke(s.id).await?;
        }
        Ok(())
    }

    async fn leader(&self) -> Result<Option<LeaderInfo>, CoordError> {
        let key = self.keys.leader();
        match self.get_one(&key).await? {
            Some(kv) => match poisoned(&kv) {
                // Vacant: the next campaign deletes it.
                Some(why) => {
                    tracing::debug!(key, "leader key is poisoned ({why}): treated as vacant");
                    Ok(None)
                }
                None => Ok(Some(parse_leader(&key, &kv)?)),
            },
            None => Ok(None),
        }
    }

    fn poisoned_leader_keys(&self) -> u64 {
        EtcdCoordinator::poisoned_leader_keys(self)
    }

    async fn heartbeat(&self, member: &MemberInfo, guard: Option<u64>) -> Result<bool, CoordError> {
        let mut slot = self.session.lock().await;
        if slot.is_some() {
            // An expired lease is forgotten here and replaced just below.
            self.keep_alive(&mut slot).await?;
        }
        let lease = self.ensure_session(&mut slot).await?;
        drop(slot);
        let key = self.keys.member(&member.node);
        let value = serde_json::to_vec(member).map_err(|source| CoordError::Malformed {
            key: key.clone(),
            source,
        })?;
        let put = TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)));
        let txn = match guard {
            Some(epoch) => Txn::new()
                .when([Compare::create_revision(
                    self.keys.leader(),
                    CompareOp::Equal,
                    epoch as i64,
                )])
                .and_then([put]),
            None => Txn::new().and_then([put]),
        };
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    async fn switchover_request(&self) -> Result<Option<SwitchoverRequest>, CoordError> {
        let key = self.keys.switchover();
        match self.get_one(&key).await? {
            Some(kv) => Ok(Some(
                serde_json::from_slice(kv.value())
                    .map_err(|source| CoordError::Malformed { key, source })?,
            )),
            None => Ok(None),
        }
    }

    async fn clear_switchover(&self) -> Result<(), CoordError> {
        self.client
            .clone()
            .delete(self.keys.switchover(), None)
            .await?;
        Ok(())
    }

    async fn members(&self) -> Result<Vec<MemberInfo>, CoordError> {
        let mut members: Vec<MemberInfo> = self
            .get_prefix(self.keys.members())
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        members.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(members)
    }

    async fn record_replica(
        &self,
        node: &str,
        record: &ReplicaRecord,
        epoch: u64,
    ) -> Result<bool, CoordError> {
        let key = self.keys.replica(node);
        let value = serde_json::to_vec(record).map_err(|source| CoordError::Malformed {
            key: key.clone(),
            source,
        })?;
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys.leader(),
                CompareOp::Equal,
                epoch as i64,
            )])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    async fn record_position(
        &self,
        position: &LeaderPosition,
        epoch: u64,
    ) -> Result<bool, CoordError> {
        let key = self.keys.position();
        let value = serde_json::to_vec(position).map_err(|source| CoordError::Malformed {
            key: key.clone(),
            source,
        })?;
        let rel = key[self.keys.prefix.len()..].to_owned();
        self.record_guarded(&rel, &value, epoch).await
    }

    async fn record_served(&self, served: &ServedRecord, epoch: u64) -> Result<bool, CoordError> {
        let key = self.keys.served();
        let value = serde_json::to_vec(served).map_err(|source| CoordError::Malformed {
            key: key.clone(),
            source,
        })?;
        self.record_guarded(&key[self.keys.prefix.len()..], &value, epoch)
            .await
    }

    async fn replicas(
        &self,
    ) -> Result<std::collections::BTreeMap<String, ReplicaRecord>, CoordError> {
        Ok(self
            .get_prefix::<ReplicaRecord>(self.keys.replicas())
            .await?
            .into_iter()
            .collect())
    }

    async fn record_guarded(
        &self,
        key: &str,
        value: &[u8],
        epoch: u64,
    ) -> Result<bool, CoordError> {
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys.leader(),
                CompareOp::Equal,
                epoch as i64,
            )])
            .and_then([TxnOp::put(
                format!("{}{key}", self.keys.prefix),
                value.to_vec(),
                None,
            )]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    async fn replica_view(&self, node: &str) -> Result<ReplicaView, CoordError> {
        let keys = [
            self.keys.replica(node),
            self.keys.epoch(),
            self.keys.accept_lag(),
            self.keys.position(),
            self.keys.served(),
        ];
        // One read revision for all of them.
        let txn = Txn::new().and_then(keys.clone().map(|k| TxnOp::get(k, None)));
        let resp = self.client.clone().txn(txn).await?;
        let mut got: Vec<Option<KeyValue>> = Vec::new();
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op {
                got.push(g.kvs().first().cloned());
            }
        }
        if got.len() != keys.len() {
            return Err(CoordError::Protocol(format!(
                "{} answers to {} reads",
                got.len(),
                keys.len()
            )));
        }
        let record = match &got[0] {
            Some(kv) => Some(parse(&keys[0], kv)?),
            None => None,
        };
        let epoch = got[1].as_ref().and_then(parse_epoch);
        let accept_lag = match &got[2] {
            Some(kv) => Some(parse(&keys[2], kv)?),
            None => None,
        };
        let position = match &got[3] {
            Some(kv) => Some(parse(&keys[3], kv)?),
            None => None,
        };
        let served = match &got[4] {
            Some(kv) => Some(parse(&keys[4], kv)?),
            None => None,
        };
        Ok(ReplicaView {
            record,
            epoch,
            accept_lag,
            position,
            served,
        })
    }

    async fn clear_lag_override(&self, node: &str) -> Result<(), CoordError> {
        let key = self.keys.accept_lag();
        let Some(kv) = self.get_one(&key).await? else {
            return Ok(());
        };
        let o: LagOverride = parse(&key, &kv)?;
        if o.node != node {
            return Ok(());
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::delete(key, None)]);
        self.client.clone().txn(txn).await?;
        Ok(())
    }

    async fn wait_vacancy(&self, epoch: u64) {
        // The key is never rewritten, so every change after its creation is in the
        // history from epoch + 1 on, including a delete that happened before we asked.
        let key = self.keys.leader();
        let watched = async {
            let opts = WatchOptions::new().with_start_revision(epoch as i64 + 1);
            let mut stream = self.client.clone().watch(key, Some(opts)).await?;
            while let Some(resp) = stream.message().await? {
                if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return Ok(());
                }
                if resp.canceled() {
                    break;
                }
            }
            Err(CoordError::Protocol("leader watch ended".into()))
        };
        if let Err(e) = watched.await {
            // Fall back to the caller's tick.
            tracing::debug!(error = %e, "leader watch failed");
            std::future::pending::<()>().await;
        }
    }
}
