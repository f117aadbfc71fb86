//! One ONC RPC call over a fresh TCP connection, bounded by a deadline.
//!
//! Role: connect, send one record-marked call, read one reply record, close. Every step shares one deadline, so a
//! call never outlives it. Failure modes: refused / connect timeout / other connect errors, reply timeout (the
//! server accepts TCP and never answers), reset or early close, and the protocol-level rejections of
//! [`crate::wire::decode_reply`]. Sockets are closed with SO_LINGER 0 (a reset, as autofs does), so thousands of
//! probes leave no TIME_WAIT entries behind.
//!
//! Connecting is staggered: when no answer to the SYN has come after [`CONNECT_STAGGER`], another
//! connection attempt starts beside the first (a new SYN from a new port), and so on until the deadline;
//! the first to connect wins. Why: right after a floating address moves, the client's neighbour entry can
//! still point at the old node, which drops the SYN; the kernel would only retransmit it after 1 s, longer
//! than a typical probe deadline. A refusal is an answer and ends the connect at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::RpcError;
use crate::nfs4;
use crate::wire::{self, Cred, RecordDecoder};

/// RPC program number of the portmapper (rpcbind).
pub const PMAP_PROGRAM: u32 = nfs3_types::portmap::PROGRAM;
/// Portmapper protocol version used for GETPORT.
pub const PMAP_VERSION: u32 = nfs3_types::portmap::VERSION;
/// Portmapper procedure GETPORT.
pub const PMAPPROC_GETPORT: u32 = 3;
/// RPC program number of NFS.
pub const NFS_PROGRAM: u32 = nfs3_types::nfs3::PROGRAM;
/// RPC program number of the MOUNT protocol.
pub const MOUNT_PROGRAM: u32 = nfs3_types::mount::PROGRAM;
/// MOUNT protocol version that goes with NFSv3.
pub const MOUNT_VERSION: u32 = nfs3_types::mount::VERSION;
/// Protocol number of TCP in portmapper mappings.
pub const IPPROTO_TCP: u32 = nfs3_types::portmap::IPPROTO_TCP;

fn next_xid() -> u32 {
    static XID: AtomicU32 = AtomicU32::new(0);
    let seed = XID.fetch_add(1, Ordering::Relaxed);
    // Distinct per process start and per call; the value only has to match our own reply.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (now ^ std::process::id().rotate_left(16)).wrapping_add(seed.wrapping_mul(0x9E37_79B9))
}

/// Spacing of staggered connection attempts (see the module header).
pub const CONNECT_STAGGER: Duration = Duration::from_millis(250);

/// Open a TCP connection to `addr` before `deadline`, staggering attempts.
pub(crate) async fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, RpcError> {
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = Instant::now();
    let stream = loop {
        if Instant::now() >= next {
            attempts.spawn(TcpStream::connect(addr));
            next += CONNECT_STAGGER;
        }
        let wake = next.min(deadline);
        tokio::select! {
            Some(joined) = attempts.join_next() => match joined {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(RpcError::ConnectRefused { addr });
                }
                Ok(Err(source)) => return Err(RpcError::Connect { addr, source }),
                // A connect task cannot panic; an aborted one is not awaited here.
                Err(_) => {}
            },
            () = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Err(RpcError::ConnectTimeout { addr });
                }
            }
        }
    };
    // Dropping the set aborts the other attempts (their sockets are closed).
    drop(attempts);
    // Best effort: a probe still works without them.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_zero_linger();
    Ok(stream)
}

async fn exchange(
    stream: &mut TcpStream,
    addr: SocketAddr,
    msg: &[u8],
) -> Result<Vec<u8>, RpcError> {
    stream
        .write_all(msg)
        .await
        .map_err(|source| RpcError::Io { addr, source })?;
    let mut decoder = RecordDecoder::new(wire::MAX_RECORD);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|source| RpcError::Io { addr, source })?;
        if n == 0 {
            return Err(RpcError::Closed { addr });
        }
        if let Some(record) = decoder.push(&buf[..n])? {
            return Ok(record);
        }
    }
}

/// One call: returns the round-trip time from sending the call to receiving the whole reply (connection set-up
/// excluded) and the XDR-encoded results.
pub(crate) async fn call(
    addr: SocketAddr,
    deadline: Instant,
    program: u32,
    version: u32,
    procedure: u32,
    cred: Cred,
    args: &[u8],
) -> Result<(Duration, Vec<u8>), RpcError> {
    let mut stream = connect(addr, deadline).await?;
    let xid = next_xid();
    let msg = wire::encode_call(xid, program, version, procedure, cred, args);
    let start = Instant::now();
    let record = timeout_at(deadline, exchange(&mut stream, addr, &msg))
        .await
        .map_err(|_| RpcError::ReplyTimeout { addr })??;
    let rtt = start.elapsed();
    let results = wire::decode_reply(&record, xid, program, version)?;
    Ok((rtt, results.to_vec()))
}

pub(crate) async fn null_until(
    addr: SocketAddr,
    program: u32,
    version: u32,
    deadline: Instant,
) -> Result<Duration, RpcError> {
    call(addr, deadline, program, version, 0, Cred::None, &[])
        .await
        .map(|(rtt, _)| rtt)
}

pub(crate) async fn getport_until(
    portmapper: SocketAddr,
    program: u32,
    version: u32,
    protocol: u32,
    deadline: Instant,
) -> Result<(Duration, u16), RpcError> {
    let args = wire::encode_getport_args(program, version, protocol);
    let (rtt, results) = call(
        portmapper,
        deadline,
        PMAP_PROGRAM,
        PMAP_VERSION,
        PMAPPROC_GETPORT,
        Cred::None,
        &args,
    )
    .await?;
    Ok((
        rtt,
        wire::decode_getport_result(&results, program, version)?,
    ))
}

/// Call the NULL procedure (0) of `program` `version` at `addr` over TCP, with AUTH_NONE.
///
/// Returns the round-trip time of the call (from sending it to the end of the reply; the TCP handshake is not
/// included). The whole call, connection included, is bounded by `timeout`. NFSv4 NULL is
/// `rpc_null(addr, 100003, 4, t)`.
pub async fn rpc_null(
    addr: SocketAddr,
    program: u32,
    version: u32,
    timeout: Duration,
) -> Result<Duration, RpcError> {
    null_until(addr, program, version, Instant::now() + timeout).await
}

/// Ask the portmapper at `portmapper` (PMAP v2 GETPORT) for the port of `program` `version` over `protocol`
/// ([`IPPROTO_TCP`] = 6). Port 0 in the answer is [`RpcError::NotRegistered`]. Bounded by `timeout`.
pub async fn getport(
    portmapper: SocketAddr,
    program: u32,
    version: u32,
    protocol: u32,
    timeout: Duration,
) -> Result<u16, RpcError> {
    getport_until(
        portmapper,
        program,
        version,
        protocol,
        Instant::now() + timeout,
    )
    .await
    .map(|(_, port)| port)
}

/// Send NFSv4 COMPOUND { PUTROOTFH, GETFH } with `minorversion` to `addr` (AUTH_SYS as root) and return the RTT and
/// the root file handle. See [`crate::nfs4`] for what minor versions 1 and 2 answer. Bounded by `timeout`.
pub async fn nfs4_root_fh(
    addr: SocketAddr,
    minorversion: u32,
    timeout: Duration,
) -> Result<(Duration, Vec<u8>), RpcError> {
    let args = nfs4::encode_root_fh_args(minorversion);
    let (rtt, results) = call(
        addr,
        Instant::now() + timeout,
        NFS_PROGRAM,
        4,
        nfs4::NFSPROC4_COMPOUND,
        Cred::SysRoot,
        &args,
    )
    .await?;
    Ok((rtt, nfs4::decode_root_fh_result(&results)?))
}
