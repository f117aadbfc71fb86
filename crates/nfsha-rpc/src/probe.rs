//! Whole-server probes and the ranking the agent uses to choose where to (re)mount from.
//!
//! Role: for one candidate server, run the RPC checks its NFS version needs under one shared deadline and report
//! each check; then order candidates: reachable first, by weight, then configuration order. Never touches an NFS
//! mount. Failure modes: every failure is recorded in the [`ServerProbe`] (never returned as an error), with the
//! first one in `error`; a probe never runs past its deadline.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use crate::client::{self, IPPROTO_TCP, MOUNT_PROGRAM, MOUNT_VERSION, NFS_PROGRAM};
use crate::{RpcError, error_chain};

/// One server to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Host name or address (an IPv6 address may be written in brackets).
    pub host: String,
    /// NFS version: 3 or 4.
    pub nfs_version: u32,
    /// Port of the portmapper (rpcbind), normally 111. Used for NFSv3 only.
    pub portmapper_port: u16,
    /// Port of NFS. `None`: 2049 for v4, asked from the portmapper for v3.
    pub nfs_port: Option<u16>,
}

impl ProbeTarget {
    /// A target with the standard ports (portmapper 111; NFS 2049 for v4, from the portmapper for v3).
    #[must_use]
    pub fn new(host: impl Into<String>, nfs_version: u32) -> Self {
        Self {
            host: host.into(),
            nfs_version,
            portmapper_port: nfs3_types::portmap::PMAP_PORT,
            nfs_port: None,
        }
    }
}

/// One RPC check of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `resolve`, `portmap-getport-nfs`, `portmap-getport-mount`, `nfs-null` or `mount-null`.
    pub name: &'static str,
    /// The RTT of the call, or the error with its causes on one line.
    pub result: Result<Duration, String>,
}

/// What a probe of one server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProbe {
    /// The host as given in the [`ProbeTarget`].
    pub host: String,
    /// True when every check passed: the server can be mounted from now.
    pub reachable: bool,
    /// RTT of the NFS NULL call, when it succeeded.
    pub rtt: Option<Duration>,
    /// Every check run, in order. Checks that depend on a failed one are not run.
    pub checks: Vec<Check>,
    /// The first failure, with its causes, when not reachable.
    pub error: Option<String>,
}

/// Resolve `host` to one address (the first the resolver returns) before `deadline`.
pub(crate) async fn resolve(host: &str, deadline: Instant) -> Result<IpAddr, RpcError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    match timeout_at(deadline, tokio::net::lookup_host((bare, 0))).await {
        Err(_) => Err(RpcError::ResolveTimeout {
            host: host.to_owned(),
        }),
        Ok(Err(source)) => Err(RpcError::Resolve {
            host: host.to_owned(),
            source,
        }),
        Ok(Ok(mut addrs)) => addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| RpcError::NoAddress {
                host: host.to_owned(),
            }),
    }
}

fn record<T>(
    checks: &mut Vec<Check>,
    name: &'static str,
    r: Result<(Duration, T), RpcError>,
) -> Option<T> {
    match r {
        Ok((rtt, v)) => {
            checks.push(Check {
                name,
                result: Ok(rtt),
            });
            Some(v)
        }
        Err(e) => {
            checks.push(Check {
                name,
                result: Err(error_chain(&e)),
            });
            None
        }
    }
}

/// Probe one server at the RPC level, bounded by `timeout` for the whole probe (resolution included).
///
/// NFSv4: NULL to NFS v4 on `nfs_port` (2049 by default). NFSv3: GETPORT of NFS v3/TCP (unless `nfs_port` is set)
/// and of MOUNT v3/TCP from the portmapper, then NULL to both; the two GETPORTs run concurrently, then the two
/// NULLs. The server is `reachable` when every check passed.
pub async fn probe_server(target: &ProbeTarget, timeout: Duration) -> ServerProbe {
    let deadline = Instant::now() + timeout;
    let mut checks = Vec::new();
    let mut rtt = None;
    match resolve(&target.host, deadline).await {
        Err(e) => checks.push(Check {
            name: "resolve",
            result: Err(error_chain(&e)),
        }),
        Ok(ip) => match target.nfs_version {
            4 => {
                let addr = SocketAddr::new(ip, target.nfs_port.unwrap_or(2049));
                let r = client::null_until(addr, NFS_PROGRAM, 4, deadline).await;
                rtt = record(&mut checks, "nfs-null", r.map(|d| (d, d)));
            }
            3 => rtt = probe_v3(target, ip, deadline, &mut checks).await,
            v => checks.push(Check {
                name: "nfs-null",
                result: Err(format!("Unsupported NFS version {v}")),
            }),
        },
    }
    let error = checks
        .iter()
        .find_map(|c| c.result.as_ref().err().map(|e| format!("{}: {e}", c.name)));
    ServerProbe {
        host: target.host.clone(),
        reachable: error.is_none() && rtt.is_some(),
        rtt,
        checks,
        error,
    }
}

/// A cheap liveness ping of one server: one NULL call to NFS (`nfs_version` 3 or 4) on `nfs_port`, 2049 by
/// default — no portmapper, no MOUNT, one connection. A name is resolved (an address is not), bounded by the same
/// `timeout` as the call.
///
/// The agent pings a server that does not answer its full [`probe_server`] at the probe cadence, so that it sees
/// the server come back within one probe interval while the full probes back off; a ping that passes is followed
/// by a full probe at once. NFSv3 servers whose nfsd is not on 2049 need `nfs_port` set (the full probe asks the
/// portmapper and passes it on); a ping that fails there only means the return is seen at the next full probe.
pub async fn ping(target: &ProbeTarget, timeout: Duration) -> Result<Duration, RpcError> {
    let deadline = Instant::now() + timeout;
    let ip = resolve(&target.host, deadline).await?;
    let version = if target.nfs_version == 3 { 3 } else { 4 };
    let addr = SocketAddr::new(ip, target.nfs_port.unwrap_or(2049));
    client::null_until(addr, NFS_PROGRAM, version, deadline).await
}

async fn probe_v3(
    target: &ProbeTarget,
    ip: IpAddr,
    deadline: Instant,
    checks: &mut Vec<Check>,
) -> Option<Duration> {
    let pmap = SocketAddr::new(ip, target.portmapper_port);
    let nfs_port = async {
        match target.nfs_port {
            Some(_) => None,
            None => Some(client::getport_until(pmap, NFS_PROGRAM, 3, IPPROTO_TCP, deadline).await),
        }
    };
    let mount_port =
        client::getport_until(pmap, MOUNT_PROGRAM, MOUNT_VERSION, IPPROTO_TCP, deadline);
    let (nfs_port, mount_port) = tokio::join!(nfs_port, mount_port);
    let nfs_port = match nfs_port {
        None => target.nfs_port,
        Some(r) => record(checks, "portmap-getport-nfs", r),
    };
    let mount_port = record(checks, "portmap-getport-mount", mount_port);
    let nfs_null = async {
        match nfs_port {
            Some(p) => {
                Some(client::null_until(SocketAddr::new(ip, p), NFS_PROGRAM, 3, deadline).await)
            }
            None => None,
        }
    };
    let mount_null = async {
        match mount_port {
            Some(p) => Some(
                client::null_until(
                    SocketAddr::new(ip, p),
                    MOUNT_PROGRAM,
                    MOUNT_VERSION,
                    deadline,
                )
                .await,
            ),
            None => None,
        }
    };
    let (nfs_null, mount_null) = tokio::join!(nfs_null, mount_null);
    let rtt = nfs_null.and_then(|r| record(checks, "nfs-null", r.map(|d| (d, d))));
    if let Some(r) = mount_null {
        record(checks, "mount-null", r.map(|d| (d, ())));
    }
    rtt
}

/// Order candidate hosts for a (re)mount: reachable servers first; within each group by weight (lower first, as
/// in autofs), then by position in `preference` (the configuration order); RTT only breaks exact ties (hosts
/// probed but absent from `preference`, which come after the listed ones of their group).
///
/// Every host of `preference` and of `probes` appears once; a listed host without a probe counts as unreachable.
#[must_use]
pub fn rank(probes: &[ServerProbe], preference: &[(String, u32)]) -> Vec<String> {
    let mut hosts: Vec<&str> = Vec::new();
    for h in preference
        .iter()
        .map(|(h, _)| h.as_str())
        .chain(probes.iter().map(|p| p.host.as_str()))
    {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    let mut keyed: Vec<_> = hosts
        .into_iter()
        .map(|h| {
            let probe = probes.iter().find(|p| p.host == h);
            let reachable = probe.is_some_and(|p| p.reachable);
            let (index, weight) = preference
                .iter()
                .position(|(ph, _)| ph == h)
                .map_or((usize::MAX, u32::MAX), |i| (i, preference[i].1));
            let rtt = probe.and_then(|p| p.rtt).unwrap_or(Duration::MAX);
            ((!reachable, weight, index, rtt), h)
        })
        .collect();
    keyed.sort_by_key(|k| k.0);
    keyed.into_iter().map(|(_, h)| h.to_owned()).collect()
}
