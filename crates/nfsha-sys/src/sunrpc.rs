//! The kernel's RPC transports as sunrpc sysfs shows them
//! (`/sys/kernel/sunrpc/xprt-switches/switch-N/xprt-M-tcp/`, Linux 5.14+), and
//! *parking*: pointing a transport's `dstaddr` at loopback so that it cannot reach
//! its server until it is pointed back.
//!
//! Why park: when a floating address moves to a server with other file handles (a
//! replica), the old mount's transport reconnects to the new server by itself (the
//! kernel retries ≥ 3 s after the old server closed the connection) and every call
//! blocked in the old mount then fails with `Stale file handle`. The agent's new mount
//! races that reconnect; parking the old transport first makes the old mount wait
//! instead, until the new mount has been moved in over it (measured in the lab: see
//! the README's Test 2 section).
//!
//! What a write of `dstaddr` does (net/sunrpc/sysfs.c): the transport takes the new
//! address, keeps its port, and is disconnected; its next connect goes to the new
//! address. Loopback on the NFS port gets a refused connection (so nothing leaves the
//! machine) — unless something on this machine listens there, which
//! [`local_listener`] checks first. While a transport is disconnected its
//! `xprt_info` has no `dst_port` line; then only the address is compared.
//!
//! Failure modes: no sunrpc sysfs (older kernels, or sysfs not mounted) —
//! [`SunrpcError::Unsupported`]; a write refused — the transports parked so far are
//! pointed back before the error is returned. Reads and writes here never touch an
//! NFS path: sysfs and procfs only.

use std::io;
use std::path::{Path, PathBuf};

/// Where the transport switches are.
pub const XPRT_SWITCHES: &str = "/sys/kernel/sunrpc/xprt-switches";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SunrpcError {
    /// The kernel has no sunrpc sysfs (Linux before 5.14) or it is not mounted.
    #[error("no sunrpc sysfs at {0} (Linux 5.14 or later has it)")]
    Unsupported(PathBuf),
    /// Reading a directory or file failed.
    #[error("could not read {path}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Writing a transport's `dstaddr` failed.
    #[error("could not write {addr} to {path}")]
    Write {
        /// The `dstaddr` file.
        path: PathBuf,
        /// The address written.
        addr: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

/// One transport pointed at loopback by [`park`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The transport's directory (`…/switch-N/xprt-M-tcp`).
    pub xprt: PathBuf,
    /// Its address before (what [`unpark`] writes back).
    pub was: String,
    /// The loopback address written.
    pub now: String,
}

/// The loopback address of `addr`'s family: `::1` for IPv6 forms (`::ffff:a.b.c.d`
/// included: the transport's socket is AF_INET6), else `127.0.0.1`.
pub fn loopback_for(addr: &str) -> &'static str {
    if addr.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    }
}

/// Point every TCP transport under `switches` whose `dstaddr` is `addr` (as the kernel
/// prints it: `10.1.2.3` or `::ffff:10.1.2.3`) and whose destination port, when shown,
/// is `port` at loopback. Returns what was parked (empty: no such transport).
pub fn park(switches: &Path, addr: &str, port: u16) -> Result<Vec<Parked>, SunrpcError> {
    let to = loopback_for(addr);
    let mut parked = Vec::new();
    for xprt in transports(switches)? {
        let dst = xprt.join("dstaddr");
        let Ok(current) = std::fs::read_to_string(&dst) else {
            continue; // freed meanwhile
        };
        if current.trim() != addr {
            continue;
        }
        let info = std::fs::read_to_string(xprt.join("xprt_info")).unwrap_or_default();
        if dst_port(&info).is_some_and(|p| p != port) {
            continue;
        }
        if let Err(source) = std::fs::write(&dst, to) {
            let err = SunrpcError::Write {
                path: dst,
                addr: to.to_string(),
                source,
            };
            // Leave nothing half done: point back what was parked.
            let _ = unpark(&parked);
            return Err(err);
        }
        parked.push(Parked {
            xprt,
            was: addr.to_string(),
            now: to.to_string(),
        });
    }
    Ok(parked)
}

/// Point parked transports back at their servers. A transport whose address is no
/// longer the loopback address written (freed, its number reused, or changed by
/// someone else) is left alone. Every transport is tried; the first error is returned.
pub fn unpark(parked: &[Parked]) -> Result<(), SunrpcError> {
    let mut first = None;
    for p in parked {
        let dst = p.xprt.join("dstaddr");
        match std::fs::read_to_string(&dst) {
            Ok(cur) if cur.trim() == p.now => {}
            _ => continue,
        }
        if let Err(source) = std::fs::write(&dst, &p.was) {
            first.get_or_insert(SunrpcError::Write {
                path: dst,
                addr: p.was.clone(),
                source,
            });
        }
    }
    first.map_or(Ok(()), Err)
}

/// The TCP transport directories under `switches`, in a stable order.
fn transports(switches: &Path) -> Result<Vec<PathBuf>, SunrpcError> {
    let read = |path: &Path| {
        std::fs::read_dir(path).map_err(|source| SunrpcError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let top = match std::fs::read_dir(switches) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SunrpcError::Unsupported(switches.to_path_buf()));
        }
        Err(source) => {
            return Err(SunrpcError::Read {
                path: switches.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for sw in top.flatten() {
        if !sw.file_name().to_string_lossy().starts_with("switch-") {
            continue;
        }
        let Ok(entries) = read(&sw.path()) else {
            continue; // freed meanwhile
        };
        for x in entries.flatten() {
            let name = x.file_name().to_string_lossy().into_owned();
            if name.starts_with("xprt-") && name.ends_with("-tcp") {
                out.push(x.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `dst_port=` of an `xprt_info` (absent while the transport is disconnected).
fn dst_port(info: &str) -> Option<u16> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("dst_port="))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a TCP socket listens on `port` in this network namespace, per
/// `proc_net/tcp` and `proc_net/tcp6` (`/proc/net`): then a parked transport would
/// reach a local server, and nothing may be parked.
pub fn local_listener(proc_net: &Path, port: u16) -> bool {
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(proc_net.join(f))
            .map(|text| listens_on(&text, port))
            .unwrap_or(false)
    })
}

/// Whether a `/proc/net/tcp{,6}` table has a socket in LISTEN state (`0A`) on `port`.
fn listens_on(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        let (Some(_sl), Some(local), Some(_remote), Some(state)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return false;
        };
        state == "0A"
            && local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sunrpc sysfs tree as Debian's 6.1 kernel showed it in the lab: two switches
    /// to a floating address (one connected, one not), one to its IPv4-mapped form.
    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let x = |sw: &str, name: &str, addr: &str, info: &str| {
            let p = d.path().join(sw).join(name);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("dstaddr"), format!("{addr}\n")).unwrap();
            std::fs::write(p.join("xprt_info"), info).unwrap();
        };
        x(
            "switch-2",
            "xprt-2-tcp",
            "10.99.0.100",
            "main_xprt=1\nsrc_port=918\ntasks_queuelen=0\ndst_port=2049\n",
        );
        x("switch-3", "xprt-3-tcp", "10.99.0.100", "main_xprt=1\n");
        x(
            "switch-5",
            "xprt-5-tcp",
            "::ffff:10.99.0.100",
            "main_xprt=1\ndst_port=2049\n",
        );
        x(
            "switch-6",
            "xprt-6-tcp",
            "10.99.0.100",
            "main_xprt=1\ndst_port=20048\n",
        );
        x("switch-7", "xprt-7-udp", "10.99.0.100", "main_xprt=1\n");
        std::fs::write(d.path().join("switch-2/xprt_switch_info"), "num_xprts=1\n").unwrap();
        d
    }

    fn addr_of(d: &Path, rel: &str) -> String {
        std::fs::read_to_string(d.join(rel).join("dstaddr"))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn parks_the_transports_of_one_address_form_and_points_them_back() {
        let d = tree();
        let parked = park(d.path(), "10.99.0.100", 2049).unwrap();
        let names: Vec<_> = parked
            .iter()
            .map(|p| p.xprt.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        // The disconnected one (no dst_port) too; not the mapped form, not another
        // port, not UDP.
        assert_eq!(names, ["switch-2/xprt-2-tcp", "switch-3/xprt-3-tcp"]);
        assert_eq!(addr_of(d.path(), "switch-2/xprt-2-tcp"), "127.0.0.1");
        assert_eq!(
            addr_of(d.path(), "switch-5/xprt-5-tcp"),
            "::ffff:10.99.0.100"
        );
        assert_eq!(addr_of(d.path(), "switch-6/xprt-6-tcp"), "10.99.0.100");
        unpark(&parked).unwrap();
        assert_eq!(addr_of(d.path(), "switch-2/xprt-2-tcp"), "10.99.0.100");
        assert_eq!(addr_of(d.path(), "switch-3/xprt-3-tcp"), "10.99.0.100");
    }

    #[test]
    fn the_mapped_form_is_parked_at_ipv6_loopback() {
        let d = tree();
        let parked = park(d.path(), "::ffff:10.99.0.100", 2049).unwrap();
        assert_eq!(parked.len(), 1);
        assert_eq!(addr_of(d.path(), "switch-5/xprt-5-tcp"), "::1");
        assert_eq!(addr_of(d.path(), "switch-2/xprt-2-tcp"), "10.99.0.100");
    }

    #[test]
    fn unpark_leaves_a_transport_someone_else_repointed() {
        let d = tree();
        let parked = park(d.path(), "10.99.0.100", 2049).unwrap();
        std::fs::write(d.path().join("switch-3/xprt-3-tcp/dstaddr"), "10.99.0.7").unwrap();
        unpark(&parked).unwrap();
        assert_eq!(addr_of(d.path(), "switch-3/xprt-3-tcp"), "10.99.0.7");
        assert_eq!(addr_of(d.path(), "switch-2/xprt-2-tcp"), "10.99.0.100");
    }

    #[test]
    fn no_sysfs_is_unsupported_and_no_match_parks_nothing() {
        let d = tree();
        assert!(matches!(
            park(&d.path().join("absent"), "10.99.0.100", 2049),
            Err(SunrpcError::Unsupported(_))
        ));
        assert!(park(d.path(), "10.99.0.200", 2049).unwrap().is_empty());
    }

    #[test]
    fn a_listener_on_the_nfs_port_is_seen() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0801 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n   2: 0B00630A:03A2 6400630A:0801 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n";
        assert!(listens_on(table, 2049));
        assert!(listens_on(table, 53));
        // An established connection *to* 2049 is not a listener.
        let only_client = "h\n   2: 0B00630A:03A2 6400630A:0801 01 0 0 0 0 0\n";
        assert!(!listens_on(only_client, 2049));
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tcp6"), table).unwrap();
        assert!(local_listener(d.path(), 2049));
        assert!(!local_listener(d.path(), 2050));
    }
}
