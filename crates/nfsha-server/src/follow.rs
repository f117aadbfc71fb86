//! Client side: learn the current leader of an nfsha server cluster from etcd, for the
//! agent (clients follow the leader, issue 6 item 7).
//!
//! Role: [`current_leader`] reads the leader key once; [`watch_leader`] yields every
//! leader change as it happens (etcd watch, with a re-read after every reconnect).
//! Both go through an [`EpochFilter`]: a leader whose epoch is lower than one already
//! seen is never reported, so an agent cannot be sent back to a deposed server by a
//! stale read. A poisoned leader key (its value does not parse, or it has no lease:
//! nfsha never writes one like it, see [`crate::etcd`]) is ignored with a warning, and the
//! watch goes on. Failure modes: etcd unreachable → [`current_leader`] errors;
//! [`watch_leader`] keeps retrying (with a 1 s pause) and simply yields nothing until
//! etcd answers again.

use crate::coordinator::{CoordError, Keys, LeaderInfo};
use crate::etcd::{EtcdOptions, connect, excerpt, parse_leader, poisoned};
use etcd_client::{Client, EventType, WatchOptions};
use futures_util::Stream;
use std::time::Duration;

/// Remembers the highest epoch seen and rejects anything older.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochFilter {
    highest: u64,
    last: Option<LeaderInfo>,
}

impl EpochFilter {
    /// A filter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest epoch seen.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// `true` if `info` is new and not older than anything seen (then remembered).
    /// The same leader announced twice is not new.
    pub fn admit(&mut self, info: &LeaderInfo) -> bool {
        if info.epoch < self.highest || self.last.as_ref() == Some(info) {
            return false;
        }
        self.highest = info.epoch;
        self.last = Some(info.clone());
        true
    }
}

async fn read_leader(
    client: &mut Client,
    keys: &Keys,
) -> Result<(Option<LeaderInfo>, i64), CoordError> {
    let key = keys.leader();
    let resp = client.get(key.clone(), None).await?;
    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
    let leader = match resp.kvs().first() {
        Some(kv) => admissible(&key, kv)?,
        None => None,
    };
    Ok((leader, rev))
}

/// The leader `kv` names, or `None` (logged) when the key is poisoned.
fn admissible(key: &str, kv: &etcd_client::KeyValue) -> Result<Option<LeaderInfo>, CoordError> {
    if let Some(why) = poisoned(kv) {
        tracing::warn!(
            key,
            mod_revision = kv.mod_revision(),
            value = %excerpt(kv.value()),
            "ignoring a leader key nfsha did not write: {why}"
        );
        return Ok(None);
    }
    parse_leader(key, kv).map(Some)
}

/// The current leader of `cluster`, read once.
pub async fn current_leader(
    endpoints: &[String],
    cluster: &str,
) -> Result<Option<LeaderInfo>, CoordError> {
    let mut client = connect(&EtcdOptions::new(endpoints.to_vec())).await?;
    Ok(read_leader(&mut client, &Keys::new(cluster)).await?.0)
}

/// Every leader change of `cluster`, never going back to a lower epoch. The stream
/// never ends; drop it to stop watching.
pub fn watch_leader(
    endpoints: Vec<String>,
    cluster: String,
) -> impl Stream<Item = LeaderInfo> + Send + 'static {
    watch_leader_with(EtcdOptions::new(endpoints), cluster)
}

/// [`watch_leader`] with full connection options (TLS, auth).
pub fn watch_leader_with(
    opts: EtcdOptions,
    cluster: String,
) -> impl Stream<Item = LeaderInfo> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<LeaderInfo>(8);
    tokio::spawn(async move {
        let keys = Keys::new(&cluster);
        let mut filter = EpochFilter::new();
        let mut last_error: Option<String> = None;
        loop {
            if tx.is_closed() {
                return;
            }
            if let Err(e) = watch_once(&opts, &keys, &mut filter, &tx).await {
                // Said once per distinct error (a wrong certificate or password repeats).
                let why = nfsha_core::error_chain(&e);
                if last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!("leader watch interrupted, retrying every second: {why}");
                    last_error = Some(why);
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

async fn watch_once(
    opts: &EtcdOptions,
    keys: &Keys,
    filter: &mut EpochFilter,
    tx: &tokio::sync::mpsc::Sender<LeaderInfo>,
) -> Result<(), CoordError> {
    let mut client = connect(opts).await?;
    let (leader, rev) = read_leader(&mut client, keys).await?;
    if let Some(l) = leader
        && l.serving
        && filter.admit(&l)
        && tx.send(l).await.is_err()
    {
        return Ok(());
    }
    let key = keys.leader();
    let mut stream = client
        .watch(
            key.clone(),
            Some(WatchOptions::new().with_start_revision(rev + 1)),
        )
        .await?;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m?,
            // The consumer dropped the stream: stop watching.
            _ = tx.closed() => return Ok(()),
        };
        let Some(resp) = msg else { break };
        for ev in resp.events() {
            if ev.event_type() != EventType::Put {
                continue;
            }
            if let Some(kv) = ev.kv()
                && let Some(l) = admissible(&key, kv)?
            {
                // A leader still bringing up is announced again once it serves.
                if l.serving && filter.admit(&l) && tx.send(l).await.is_err() {
                    return Ok(());
                }
            }
        }
        if tx.is_closed() {
            return Ok(());
        }
    }
    Err(CoordError::Protocol("watch stream ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(node: &str, epoch: u64) -> LeaderInfo {
        LeaderInfo {
            node: node.into(),
            address: Some(format!("{node}-addr")),
            epoch,
            serving: true,
        }
    }

    #[test]
    fn the_filter_never_goes_back_to_a_lower_epoch_nor_repeats_itself() {
        let mut f = EpochFilter::new();
        assert!(f.admit(&l("a", 5)));
        assert!(!f.admit(&l("a", 5)), "same leader announced twice");
        assert!(!f.admit(&l("b", 4)), "stale read of an older leader");
        assert!(f.admit(&l("b", 9)));
        assert!(
            !f.admit(&l("a", 5)),
            "the old leader coming back with its old epoch"
        );
        assert_eq!(f.highest(), 9);
    }
}
