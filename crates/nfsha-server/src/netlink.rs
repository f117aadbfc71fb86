//! The floating address in-process: rtnetlink for the address itself, an `AF_PACKET`
//! socket for ARP (RFC 5227 duplicate-address probe, gratuitous ARP). Replaces the
//! `ip addr` and `arping` shell-outs.
//!
//! Role: [`AddressOps`] is the narrow seam the real host ([`crate::CommandHost`]) uses
//! for its floating-address step; [`NetlinkAddress`] is the real implementation and
//! [`FakeAddressOps`] a recording fake that fails on demand.
//!
//! **Network namespace.** Netlink and packet sockets act in the network namespace of
//! the *thread that opens them*. Every operation of [`NetlinkAddress`] opens its own
//! sockets when it starts, so it acts in the namespace of the thread that polls it at
//! that moment — the controller's own namespace. A command prefix such as
//! `nsenter -t PID -n` (`CommandOptions::prefix`) does **not** apply to the floating
//! address any more: run the controller inside the node's namespace instead (the lab
//! does). Tests enter a namespace by `setns(2)` on a dedicated thread with a
//! current-thread tokio runtime (see `tests/netns.rs`).
//!
//! Semantics: adding an address already present succeeds, deleting an absent address
//! (or one on an interface that no longer exists) succeeds. IPv6 addresses are added with
//! `IFA_F_NODAD` (the kernel's own DAD would leave them tentative) and get no ARP; no
//! unsolicited neighbour advertisement is sent for them.
//!
//! Failure modes ([`NetlinkError`]): a socket cannot be opened (not root, no
//! `CAP_NET_ADMIN`/`CAP_NET_RAW`), the interface does not exist, the kernel refuses a
//! request (each error names the interface, the address and carries the errno), or an
//! ARP packet cannot be sent (interface down: `ENETDOWN`).

use futures_util::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A failed floating-address operation.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A netlink or packet socket could not be opened.
    #[error("Cannot open a {kind} socket")]
    Socket {
        /// `netlink` or `ARP packet`.
        kind: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The interface does not exist (in this network namespace).
    #[error("No interface {interface}")]
    NoInterface {
        /// Interface name.
        interface: String,
    },
    /// The interface could not be looked up (other than "no such interface").
    #[error("Cannot look up interface {interface}")]
    Link {
        /// Interface name.
        interface: String,
        /// The errno (or a protocol error).
        #[source]
        source: io::Error,
    },
    /// The kernel refused an address request.
    #[error("Cannot {op} address {address} on {interface}")]
    Address {
        /// `add`, `delete` or `list`.
        op: &'static str,
        /// Interface name.
        interface: String,
        /// The address.
        address: IpAddr,
        /// The errno (or a protocol error).
        #[source]
        source: io::Error,
    },
    /// An ARP packet could not be sent or received.
    #[error("Cannot {op} for {address} on {interface}")]
    Arp {
        /// What was being done (`send the ARP probe`, `send a gratuitous ARP`...).
        op: &'static str,
        /// Interface name.
        interface: String,
        /// The address.
        address: Ipv4Addr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A failure injected by [`FakeAddressOps`].
    #[error("Injected failure at {0:?}")]
    Injected(AddressOp),
}

/// The floating-address operations. Every method acts in the network namespace of the
/// thread that polls it (see the module header).
pub trait AddressOps: Send + Sync + 'static {
    /// Add `address/prefix` to `interface`. Already present: success.
    fn add(
        &self,
        interface: &str,
        address: IpAddr,
        prefix: u8,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// Remove `address` (whatever its prefix) from `interface`. Absent: success.
    fn del(
        &self,
        interface: &str,
        address: IpAddr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// Whether `interface` holds `address`.
    fn has(
        &self,
        interface: &str,
        address: IpAddr,
    ) -> impl Future<Output = Result<bool, NetlinkError>> + Send;
    /// RFC 5227 probe: `true` when another host claims `address` (answers the probe,
    /// or probes for it itself) within the probe wait.
    fn probe_duplicate(
        &self,
        interface: &str,
        address: Ipv4Addr,
    ) -> impl Future<Output = Result<bool, NetlinkError>> + Send;
    /// One gratuitous ARP round: an ARP request and an ARP reply, both broadcast, with
    /// sender = target = `address` and the interface's MAC.
    fn announce(
        &self,
        interface: &str,
        address: Ipv4Addr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
}

impl<A: AddressOps> AddressOps for Arc<A> {
    fn add(
        &self,
        interface: &str,
        address: IpAddr,
        prefix: u8,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send {
        (**self).add(interface, address, prefix)
    }
    fn del(
        &self,
        interface: &str,
        address: IpAddr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send {
        (**self).del(interface, address)
    }
    fn has(
        &self,
        interface: &str,
        address: IpAddr,
    ) -> impl Future<Output = Result<bool, NetlinkError>> + Send {
        (**self).has(interface, address)
    }
    fn probe_duplicate(
        &self,
        interface: &str,
        address: Ipv4Addr,
    ) -> impl Future<Output = Result<bool, NetlinkError>> + Send {
        (**self).probe_duplicate(interface, address)
    }
    fn announce(
        &self,
        interface: &str,
        address: Ipv4Addr,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send {
        (**self).announce(interface, address)
    }
}

// ---------------------------------------------------------------------------------
// Real implementation
// ---------------------------------------------------------------------------------

/// The real [`AddressOps`]: rtnetlink and an `AF_PACKET` ARP socket, opened per call.
#[derive(Debug, Clone)]
pub struct NetlinkAddress {
    probe_wait: Duration,
    probes: u32,
}

impl Default for NetlinkAddress {
    fn default() -> Self {
        NetlinkAddress {
            probe_wait: Duration::from_secs(1),
            probes: 2,
        }
    }
}

impl NetlinkAddress {
    /// Probe for 1 s (two probes, 0.5 s apart).
    pub fn new() -> Self {
        Self::default()
    }

    /// Wait `wait` for an answer to the duplicate-address probe (probes are sent at the
    /// start and half-way).
    pub fn with_probe_wait(mut self, wait: Duration) -> Self {
        self.probe_wait = wait;
        self
    }
}

/// The errno of an rtnetlink error (protocol errors become `io::ErrorKind::Other`).
fn io_of(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Run `f` with a fresh netlink handle, driving the connection alongside it (no task
/// is spawned, so nothing outlives the call).
async fn with_handle<T, F, Fut>(f: F) -> Result<T, NetlinkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetlinkError>>,
{
    let (conn, handle, _messages) =
        rtnetlink::new_connection().map_err(|source| NetlinkError::Socket {
            kind: "netlink",
            source,
        })?;
    tokio::select! {
        r = f(handle) => r,
        () = conn => Err(NetlinkError::Socket {
            kind: "netlink",
            source: io::Error::other("netlink connection closed"),
        }),
    }
}

/// Interface index by name.
async fn link_index(handle: &Handle, interface: &str) -> Result<u32, NetlinkError> {
    let no_interface = || NetlinkError::NoInterface {
        interface: interface.to_owned(),
    };
    let mut links = handle
        .link()
        .get()
        .match_name(interface.to_owned())
        .execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(no_interface()),
        Err(e) => {
            let e = io_of(e);
            if e.raw_os_error() == Some(libc::ENODEV) {
                Err(no_interface())
            } else {
                Err(NetlinkError::Link {
                    interface: interface.to_owned(),
                    source: e,
                })
            }
        }
    }
}

/// The address messages for `address` on interface `index`.
async fn find(
    handle: &Handle,
    interface: &str,
    index: u32,
    address: IpAddr,
) -> Result<Vec<rtnetlink::packet_route::address::AddressMessage>, NetlinkError> {
    handle
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(address)
        .execute()
        .try_collect()
        .await
        .map_err(|e| NetlinkError::Address {
            op: "list",
            interface: interface.to_owned(),
            address,
            source: io_of(e),
        })
}

impl AddressOps for NetlinkAddress {
    async fn add(&self, interface: &str, address: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
        with_handle(|handle| async move {
            let index = link_index(&handle, interface).await?;
            let mut req = handle.address().add(index, address, prefix);
            if address.is_ipv6() {
                let msg = req.message_mut();
                msg.header.flags |= AddressHeaderFlags::Nodad;
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            match req.execute().await.map_err(io_of) {
                Ok(()) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                Err(source) => Err(NetlinkError::Address {
                    op: "add",
                    interface: interface.to_owned(),
                    address,
                    source,
                }),
            }
        })
        .await
    }

    async fn del(&self, interface: &str, address: IpAddr) -> Result<(), NetlinkError> {
        with_handle(|handle| async move {
            let index = match link_index(&handle, interface).await {
                Ok(i) => i,
                // No interface, no address on it.
                Err(NetlinkError::NoInterface { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            for msg in find(&handle, interface, index, address).await? {
                match handle.address().del(msg).execute().await.map_err(io_of) {
                    Ok(()) => {}
                    // Removed meanwhile (or with its primary): gone is gone.
                    Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
                    Err(source) => {
                        return Err(NetlinkError::Address {
                            op: "delete",
                            interface: interface.to_owned(),
                            address,
                            source,
                        });
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn has(&self, interface: &str, address: IpAddr) -> Result<bool, NetlinkError> {
        with_handle(|handle| async move {
            let index = link_index(&handle, interface).await?;
            Ok(!find(&handle, interface, index, address).await?.is_empty())
        })
        .await
    }

    async fn probe_duplicate(
        &self,
        interface: &str,
        address: Ipv4Addr,
    ) -> Result<bool, NetlinkError> {
        let sock = ArpSocket::open(interface, address)?;
        let arp_err = |op, source| NetlinkError::Arp {
            op,
            interface: interface.to_owned(),
            address,
            source,
        };
        let start = tokio::time::Instant::now();
        let deadline = start + self.probe_wait;
        let probes = self.probes.max(1);
        let mut sent = 0u32;
        let mut next_probe = start;
        let mut buf = [0u8; 128];
        loop {
            if sent < probes && tokio::time::Instant::now() >= next_probe {
                let probe = Arp {
                    op: ARP_REQUEST,
                    sha: sock.mac,
                    spa: Ipv4Addr::UNSPECIFIED,
                    tha: [0; 6],
                    tpa: address,
                };
                sock.send(&probe)
                    .await
                    .map_err(|e| arp_err("send the ARP probe", e))?;
                sent += 1;
                next_probe = start + self.probe_wait * sent / probes;
            }
            let wake = if sent < probes {
                next_probe.min(deadline)
            } else {
                deadline
            };
            let received = tokio::select! {
                r = sock.recv(&mut buf) => r.map_err(|e| arp_err("receive ARP", e))?,
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(false);
                    }
                    continue;
                }
            };
            if let Some(pkt) = received
                && pkt.sha != sock.mac
                && (pkt.spa == address
                    || (pkt.op == ARP_REQUEST && pkt.spa.is_unspecified() && pkt.tpa == address))
            {
                tracing::warn!(%address, interface, mac = %fmt_mac(&pkt.sha),
                    "duplicate-address probe answered");
                return Ok(true);
            }
        }
    }

    async fn announce(&self, interface: &str, address: Ipv4Addr) -> Result<(), NetlinkError> {
        let sock = ArpSocket::open(interface, address)?;
        let request = Arp {
            op: ARP_REQUEST,
            sha: sock.mac,
            spa: address,
            tha: [0; 6],
            tpa: address,
        };
        // Linux only takes a *reply* as gratuitous when target MAC = sender MAC.
        let reply = Arp {
            op: ARP_REPLY,
            tha: sock.mac,
            ..request
        };
        for pkt in [request, reply] {
            sock.send(&pkt).await.map_err(|source| NetlinkError::Arp {
                op: "send a gratuitous ARP",
                interface: interface.to_owned(),
                address,
                source,
            })?;
        }
        Ok(())
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const ARP_LEN: usize = 28;

/// An Ethernet/IPv4 ARP packet (without the link header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arp {
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
}

impl Arp {
    fn encode(&self) -> [u8; ARP_LEN] {
        let mut b = [0u8; ARP_LEN];
        b[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        b[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sha);
        b[14..18].copy_from_slice(&self.spa.octets());
        b[18..24].copy_from_slice(&self.tha);
        b[24..28].copy_from_slice(&self.tpa.octets());
        b
    }

    fn decode(b: &[u8]) -> Option<Arp> {
        if b.len() < ARP_LEN || b[0..6] != [0, 1, 8, 0, 6, 4] {
            return None;
        }
        let mac = |r: std::ops::Range<usize>| <[u8; 6]>::try_from(&b[r]).ok();
        let ip = |r: std::ops::Range<usize>| <[u8; 4]>::try_from(&b[r]).ok().map(Ipv4Addr::from);
        Some(Arp {
            op: u16::from_be_bytes([b[6], b[7]]),
            sha: mac(8..14)?,
            spa: ip(14..18)?,
            tha: mac(18..24)?,
            tpa: ip(24..28)?,
        })
    }
}

/// A non-blocking `AF_PACKET`/`SOCK_DGRAM` socket bound to one interface for ARP.
struct ArpSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
    mac: [u8; 6],
}

fn sockaddr_ll(ifindex: i32, dest: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_ARP.to_be();
    sa.sll_ifindex = ifindex;
    if let Some(d) = dest {
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&d);
    }
    sa
}

const SOCKADDR_LL_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;

impl ArpSocket {
    fn open(interface: &str, address: Ipv4Addr) -> Result<ArpSocket, NetlinkError> {
        let arp_err = |op, source| NetlinkError::Arp {
            op,
            interface: interface.to_owned(),
            address,
            source,
        };
        let name = std::ffi::CString::new(interface).map_err(|_| NetlinkError::NoInterface {
            interface: interface.to_owned(),
        })?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ENODEV) {
                NetlinkError::NoInterface {
                    interface: interface.to_owned(),
                }
            } else {
                arp_err("look up the interface", e)
            });
        }
        let ifindex = i32::try_from(ifindex)
            .map_err(|_| arp_err("look up the interface", io::Error::other("index too large")))?;
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ARP.to_be()),
            )
        };
        if raw < 0 {
            return Err(NetlinkError::Socket {
                kind: "ARP packet",
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let sa = sockaddr_ll(ifindex, None);
        // SAFETY: `sa` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                owned.as_raw_fd(),
                (&raw const sa).cast::<libc::sockaddr>(),
                SOCKADDR_LL_LEN,
            )
        };
        if rc < 0 {
            return Err(arp_err("bind an ARP socket", io::Error::last_os_error()));
        }
        let mut bound = sockaddr_ll(0, None);
        let mut len = SOCKADDR_LL_LEN;
        // SAFETY: `bound` is writable storage of `len` bytes; the kernel fills in the
        // device's hardware address for a bound packet socket.
        let rc = unsafe {
            libc::getsockname(
                owned.as_raw_fd(),
                (&raw mut bound).cast::<libc::sockaddr>(),
                &raw mut len,
            )
        };
        if rc < 0 {
            return Err(arp_err(
                "read the interface MAC",
                io::Error::last_os_error(),
            ));
        }
        if bound.sll_halen != 6 {
            return Err(arp_err(
                "read the interface MAC",
                io::Error::other(format!(
                    "not an Ethernet interface (hardware address length {})",
                    bound.sll_halen
                )),
            ));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&bound.sll_addr[..6]);
        // SAFETY: `owned` is an open descriptor that the AsyncFd takes ownership of, so
        // it stays open and refers to the same socket until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(owned) }.map_err(|e| NetlinkError::Socket {
            kind: "ARP packet",
            source: e.into_parts().1,
        })?;
        Ok(ArpSocket { fd, ifindex, mac })
    }

    /// Broadcast one ARP packet.
    async fn send(&self, pkt: &Arp) -> io::Result<()> {
        let data = pkt.encode();
        let dest = sockaddr_ll(self.ifindex, Some([0xff; 6]));
        self.fd
            .async_io(Interest::WRITABLE, |fd| {
                // SAFETY: `data` and `dest` are valid for the lengths passed.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        data.as_ptr().cast(),
                        data.len(),
                        0,
                        (&raw const dest).cast::<libc::sockaddr>(),
                        SOCKADDR_LL_LEN,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            })
            .await
    }

    /// The next ARP packet received from the network (`None`: not ARP over
    /// Ethernet/IPv4, or our own outgoing packet).
    async fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Arp>> {
        let (n, pkttype) = self
            .fd
            .async_io(Interest::READABLE, |fd| {
                let mut from = sockaddr_ll(0, None);
                let mut len = SOCKADDR_LL_LEN;
                // SAFETY: `buf` is writable for `buf.len()` bytes and `from` for `len`.
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&raw mut from).cast::<libc::sockaddr>(),
                        &raw mut len,
                    )
                };
                usize::try_from(n)
                    .map(|n| (n, from.sll_pkttype))
                    .map_err(|_| io::Error::last_os_error())
            })
            .await?;
        if pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        Ok(Arp::decode(&buf[..n]))
    }
}

// ---------------------------------------------------------------------------------
// Fake
// ---------------------------------------------------------------------------------

/// Which [`AddressOps`] method (for failure injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressOp {
    /// [`AddressOps::add`].
    Add,
    /// [`AddressOps::del`].
    Del,
    /// [`AddressOps::has`].
    Has,
    /// [`AddressOps::probe_duplicate`].
    Probe,
    /// [`AddressOps::announce`].
    Announce,
}

/// One call recorded by [`FakeAddressOps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressCall {
    /// `add(interface, address, prefix)`.
    Add(String, IpAddr, u8),
    /// `del(interface, address)`.
    Del(String, IpAddr),
    /// `has(interface, address)`.
    Has(String, IpAddr),
    /// `probe_duplicate(interface, address)`.
    Probe(String, Ipv4Addr),
    /// `announce(interface, address)`.
    Announce(String, Ipv4Addr),
}

#[derive(Debug, Default)]
struct FakeAddrState {
    calls: Vec<(Instant, AddressCall)>,
    present: BTreeSet<(String, IpAddr)>,
    in_use_elsewhere: BTreeSet<Ipv4Addr>,
    failures: HashMap<AddressOp, u32>,
}

/// A recording [`AddressOps`] that models which addresses are present, answers the
/// duplicate-address probe for addresses marked in use elsewhere, and fails on demand
/// ([`NetlinkError::Injected`]). Clones share their state.
#[derive(Debug, Clone, Default)]
pub struct FakeAddressOps {
    state: Arc<Mutex<FakeAddrState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeAddressOps {
    /// An empty fake: no address present, nobody else on the network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the next `times` calls of `op` fail (`u32::MAX`: always). A failed `add` adds
    /// nothing and a failed `del` removes nothing.
    pub fn fail(&self, op: AddressOp, times: u32) {
        lock(&self.state).failures.insert(op, times);
    }

    /// Pretend another host holds `address` (the probe finds it).
    pub fn in_use_elsewhere(&self, address: Ipv4Addr) {
        lock(&self.state).in_use_elsewhere.insert(address);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<AddressCall> {
        lock(&self.state)
            .calls
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Every call with its (tokio-clock) timestamp.
    pub fn timed_calls(&self) -> Vec<(Instant, AddressCall)> {
        lock(&self.state).calls.clone()
    }

    /// Whether `interface` holds `address` now.
    pub fn is_present(&self, interface: &str, address: IpAddr) -> bool {
        lock(&self.state)
            .present
            .contains(&(interface.to_owned(), address))
    }

    /// Record `call`; `Err` when a failure is armed for `op`.
    fn enter(
        &self,
        op: AddressOp,
        call: AddressCall,
    ) -> Result<MutexGuard<'_, FakeAddrState>, NetlinkError> {
        let mut s = lock(&self.state);
        s.calls.push((tokio::time::Instant::now().into_std(), call));
        match s.failures.get_mut(&op) {
            Some(0) | None => Ok(s),
            Some(n) => {
                if *n != u32::MAX {
                    *n -= 1;
                }
                Err(NetlinkError::Injected(op))
            }
        }
    }
}

impl AddressOps for FakeAddressOps {
    async fn add(&self, interface: &str, address: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
        let mut s = self.enter(
            AddressOp::Add,
            AddressCall::Add(interface.to_owned(), address, prefix),
        )?;
        s.present.insert((interface.to_owned(), address));
        Ok(())
    }

    async fn del(&self, interface: &str, address: IpAddr) -> Result<(), NetlinkError> {
        let mut s = self.enter(
            AddressOp::Del,
            AddressCall::Del(interface.to_owned(), address),
        )?;
        s.present.remove(&(interface.to_owned(), address));
        Ok(())
    }

    async fn has(&self, interface: &str, address: IpAddr) -> Result<bool, NetlinkError> {
        let s = self.enter(
            AddressOp::Has,
            AddressCall::Has(interface.to_owned(), address),
        )?;
        Ok(s.present.contains(&(interface.to_owned(), address)))
    }

    async fn probe_duplicate(
        &self,
        interface: &str,
        address: Ipv4Addr,
    ) -> Result<bool, NetlinkError> {
        let s = self.enter(
            AddressOp::Probe,
            AddressCall::Probe(interface.to_owned(), address),
        )?;
        Ok(s.in_use_elsewhere.contains(&address))
    }

    async fn announce(&self, interface: &str, address: Ipv4Addr) -> Result<(), NetlinkError> {
        self.enter(
            AddressOp::Announce,
            AddressCall::Announce(interface.to_owned(), address),
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_packets_round_trip_and_have_the_wire_layout() {
        let a = Arp {
            op: ARP_REPLY,
            sha: [2, 0, 0, 0, 0, 1],
            spa: Ipv4Addr::new(10, 99, 0, 100),
            tha: [2, 0, 0, 0, 0, 1],
            tpa: Ipv4Addr::new(10, 99, 0, 100),
        };
        let b = a.encode();
        assert_eq!(&b[..8], &[0, 1, 8, 0, 6, 4, 0, 2]);
        assert_eq!(&b[14..18], &[10, 99, 0, 100]);
        assert_eq!(Arp::decode(&b), Some(a));
        // Trailing Ethernet padding is ignored; non-IPv4 ARP is not ours.
        let mut padded = b.to_vec();
        padded.extend([0; 18]);
        assert_eq!(Arp::decode(&padded), Some(a));
        let mut other = b;
        other[3] = 0xdd;
        assert_eq!(Arp::decode(&other), None);
        assert_eq!(Arp::decode(&b[..27]), None);
    }

    #[tokio::test]
    async fn the_fake_models_presence_and_fails_on_demand() {
        let f = FakeAddressOps::new();
        let ip: IpAddr = "10.99.0.100".parse().expect("ip");
        f.add("v0", ip, 24).await.expect("add");
        assert!(f.has("v0", ip).await.expect("has"));
        f.fail(AddressOp::Del, 1);
        assert!(matches!(
            f.del("v0", ip).await,
            Err(NetlinkError::Injected(AddressOp::Del))
        ));
        assert!(f.is_present("v0", ip), "a failed del removes nothing");
        f.del("v0", ip).await.expect("second del");
        assert!(!f.is_present("v0", ip));
        assert_eq!(f.calls().len(), 4);
    }

    #[tokio::test]
    async fn a_missing_interface_is_named() {
        // Fails before any packet is sent, so this is safe in any namespace.
        let err = NetlinkAddress::new()
            .announce("nfsha-no-such-if0", Ipv4Addr::new(127, 0, 0, 1))
            .await
            .expect_err("no such interface");
        assert!(
            matches!(&err, NetlinkError::NoInterface { interface } if interface == "nfsha-no-such-if0"),
            "{err:?}"
        );
    }
}
