//! Parser for `/proc/self/mountstats` (NFS `statvers=1.0` and `1.1` entries).
//!
//! Role: the early-warning counters (retransmissions, major timeouts, per-operation RTT and
//! execute time, transport connects and backlog) that the kernel keeps per NFS mount. Reading
//! this file never sends an RPC, so it is safe on a dead server.
//!
//! Format (kernel `nfs_show_stats`, documented by nfs-utils `mountstats.py` and prometheus
//! procfs `mountstats.go`): a `device <dev> mounted on <mnt> with fstype <fs> [statvers=1.1]`
//! line starts every entry; NFS entries continue with tab-indented `key: values` lines
//! (`age:`, `xprt:` ...), then `per-op statistics` and one `NAME: ops trans timeouts
//! bytes_sent bytes_recv queue rtt execute [errors]` line per operation (times in ms).
//!
//! Failure modes: the parser is lenient by design, because one odd line must not hide every
//! other mount's counters. A line that cannot be understood is skipped and counted in
//! [`Mountstats::malformed_lines`]; missing trailing fields (statvers 1.0, 8-field op lines)
//! read as zero / `None`. Device and mount paths are unescaped (`\040` → space).

/// Everything parsed from one read of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mountstats {
    /// NFS entries, in file order (non-NFS devices are left out).
    pub entries: Vec<NfsMountstats>,
    /// Lines that looked wrong and were skipped.
    pub malformed_lines: usize,
}

impl Mountstats {
    /// The entry mounted at `mountpoint`: the last one in file order, i.e. the topmost of
    /// stacked mounts.
    pub fn find(&self, mountpoint: &str) -> Option<&NfsMountstats> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.mountpoint == mountpoint)
    }
}

/// One NFS mount's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NfsMountstats {
    /// `server:/export`.
    pub device: String,
    /// Where it is mounted (unescaped).
    pub mountpoint: String,
    /// `nfs` or `nfs4`.
    pub fstype: String,
    /// `1.0`, `1.1`, or empty when the kernel printed none.
    pub statvers: String,
    /// Seconds since the mount was made (`age:`), if printed.
    pub age_seconds: Option<u64>,
    /// Transport counters, summed over every `xprt:` line (`nconnect` prints one per connection).
    pub xprt: Option<XprtStats>,
    /// Per-operation counters, in file order.
    pub ops: Vec<OpStats>,
}

impl NfsMountstats {
    /// Retransmissions over every operation (Σ `trans − ops`).
    pub fn retransmissions(&self) -> u64 {
        self.ops
            .iter()
            .map(OpStats::retransmissions)
            .fold(0, u64::saturating_add)
    }

    /// Major timeouts over every operation.
    pub fn major_timeouts(&self) -> u64 {
        self.ops
            .iter()
            .map(|o| o.major_timeouts)
            .fold(0, u64::saturating_add)
    }
}

/// Counters of an `xprt:` line (fields a transport does not have read as zero).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XprtStats {
    /// `tcp`, `udp` or `rdma`.
    pub protocol: String,
    /// How many `xprt:` lines were summed.
    pub connections: u64,
    /// Times the transport was bound (port lookups).
    pub bind_count: u64,
    /// TCP/RDMA connects: a rising count is a reconnect storm.
    pub connect_count: u64,
    /// Cumulative time spent connecting (jiffies).
    pub connect_time: u64,
    /// RPC requests sent.
    pub sends: u64,
    /// RPC replies received.
    pub receives: u64,
    /// Replies whose XID matched no request.
    pub bad_xids: u64,
    /// Σ of in-flight requests sampled at each send.
    pub inflight_sum: u64,
    /// Σ of backlog queue length sampled at each send (`rate(backlog)/rate(sends)` = mean backlog).
    pub backlog_sum: u64,
    /// Most RPC slots ever in use (1.1 only; max over connections).
    pub max_slots: u64,
    /// Σ of sending-queue length at each send (1.1 only).
    pub sending_sum: u64,
    /// Σ of pending-queue length at each send (1.1 only).
    pub pending_sum: u64,
}

/// One operation's counters (times in milliseconds, cumulative).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Operation name (`GETATTR`, `READDIR` ...).
    pub op: String,
    /// Requests made.
    pub ops: u64,
    /// Transmissions (≥ ops; the excess are retransmissions).
    pub trans: u64,
    /// Major timeouts (`timeo`×`retrans` exhausted: "server not responding").
    pub major_timeouts: u64,
    /// Bytes sent, headers included.
    pub bytes_sent: u64,
    /// Bytes received, headers included.
    pub bytes_recv: u64,
    /// Cumulative ms queued before transmission.
    pub queue_ms: u64,
    /// Cumulative ms from transmission to reply (RTT).
    pub rtt_ms: u64,
    /// Cumulative ms from enqueue to completion (execute).
    pub execute_ms: u64,
    /// Operations that completed with an error status (newer kernels only).
    pub errors: Option<u64>,
}

impl OpStats {
    /// `trans − ops` (never negative).
    pub fn retransmissions(&self) -> u64 {
        self.trans.saturating_sub(self.ops)
    }
}

/// Parse the whole text of a mountstats file.
pub fn parse(text: &str) -> Mountstats {
    let mut out = Mountstats::default();
    // The NFS entry being filled, and whether its per-op section has started.
    let mut current: Option<NfsMountstats> = None;
    let mut in_ops = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(&first) = words.first() else {
            in_ops = false;
            continue;
        };
        if first == "device" {
            if let Some(done) = current.take() {
                out.entries.push(done);
            }
            in_ops = false;
            match parse_device(&words) {
                Some(Some(entry)) => current = Some(entry),
                Some(None) => {} // a non-NFS device: nothing to keep
                None => out.malformed_lines += 1,
            }
            continue;
        }
        let Some(entry) = current.as_mut() else {
            // Lines of a non-NFS device, or garbage before the first device line.
            continue;
        };
        let ok = if in_ops {
            parse_op(&words).map(|op| entry.ops.push(op)).is_some()
        } else {
            match first {
                "age:" => words
                    .get(1)
                    .and_then(|w| w.parse().ok())
                    .map(|age| entry.age_seconds = Some(age))
                    .is_some(),
                "xprt:" => parse_xprt(&words[1..], &mut entry.xprt),
                "per-op" => {
                    in_ops = true;
                    true
                }
                // opts:, caps:, sec:, events:, bytes:, RPC iostats ..., nfsv4:, impl_id:, fsc:
                _ => true,
            }
        };
        if !ok {
            out.malformed_lines += 1;
        }
    }
    if let Some(done) = current.take() {
        out.entries.push(done);
    }
    out
}

/// `None`: malformed; `Some(None)`: well-formed but not NFS.
fn parse_device(words: &[&str]) -> Option<Option<NfsMountstats>> {
    if words.len() < 8
        || words[2] != "mounted"
        || words[3] != "on"
        || words[5] != "with"
        || words[6] != "fstype"
    {
        return None;
    }
    let fstype = words[7];
    if fstype != "nfs" && fstype != "nfs4" {
        return Some(None);
    }
    let statvers = words
        .get(8)
        .and_then(|w| w.strip_prefix("statvers="))
        .unwrap_or("")
        .to_owned();
    Some(Some(NfsMountstats {
        device: unescape(words[1]),
        mountpoint: unescape(words[4]),
        fstype: fstype.to_owned(),
        statvers,
        ..NfsMountstats::default()
    }))
}

/// Field positions after the protocol word. UDP lacks connect_count, connect_time and
/// idle_time; RDMA and TCP share the first ten.
fn parse_xprt(words: &[&str], into: &mut Option<XprtStats>) -> bool {
    let Some((&protocol, rest)) = words.split_first() else {
        return false;
    };
    let mut nums = Vec::with_capacity(rest.len());
    for w in rest {
        match w.parse::<u64>() {
            Ok(n) => nums.push(n),
            Err(_) => return false,
        }
    }
    // Canonical TCP layout: port bind connect connect_time idle sends recvs bad_xids
    // inflight backlog [max_slots sending pending].
    if protocol == "udp" {
        if nums.len() < 2 {
            return false;
        }
        let tail = nums.split_off(2);
        nums.extend([0, 0, 0]);
        nums.extend(tail);
    }
    if nums.len() < 10 {
        return false;
    }
    let at = |i: usize| nums.get(i).copied().unwrap_or(0);
    let tcp_like = protocol == "tcp" || protocol == "udp";
    let x = into.get_or_insert_with(|| XprtStats {
        protocol: protocol.to_owned(),
        ..XprtStats::default()
    });
    // Saturating: the counters of every transport (nconnect) are summed, and no input —
    // however large — may overflow (a panic in debug builds, a wrap in release).
    x.connections = x.connections.saturating_add(1);
    x.bind_count = x.bind_count.saturating_add(at(1));
    x.connect_count = x.connect_count.saturating_add(at(2));
    x.connect_time = x.connect_time.saturating_add(at(3));
    x.sends = x.sends.saturating_add(at(5));
    x.receives = x.receives.saturating_add(at(6));
    x.bad_xids = x.bad_xids.saturating_add(at(7));
    x.inflight_sum = x.inflight_sum.saturating_add(at(8));
    x.backlog_sum = x.backlog_sum.saturating_add(at(9));
    if tcp_like {
        // RDMA's later fields are RDMA-specific segment counters, not these.
        x.max_slots = x.max_slots.max(at(10));
        x.sending_sum = x.sending_sum.saturating_add(at(11));
        x.pending_sum = x.pending_sum.saturating_add(at(12));
    }
    true
}

fn parse_op(words: &[&str]) -> Option<OpStats> {
    let name = words.first()?.strip_suffix(':')?;
    let nums: Vec<u64> = words[1..]
        .iter()
        .map(|w| w.parse::<u64>())
        .collect::<Result<_, _>>()
        .ok()?;
    if nums.len() < 8 {
        return None;
    }
    Some(OpStats {
        op: name.to_owned(),
        ops: nums[0],
        trans: nums[1],
        major_timeouts: nums[2],
        bytes_sent: nums[3],
        bytes_recv: nums[4],
        queue_ms: nums[5],
        rtt_ms: nums[6],
        execute_ms: nums[7],
        errors: nums.get(8).copied(),
    })
}

/// Undo the kernel's `seq_escape` of ` \t\n\\` as three-digit octal (`\040`).
fn unescape(s: &str) -> String {
    nfsha_core::octal::unescape_lossy(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An NFSv4.1 mount with nconnect=2 (two xprt lines), an NFSv3/UDP mount with
    /// statvers=1.0 and 8-field op lines, a mountpoint with a space, and unrelated devices.
    /// Hand-written from the layout in nfs-utils mountstats.py and procfs mountstats.go.
    pub(crate) const FIXTURE: &str = include_str!("../tests/fixtures/mountstats.txt");

    #[test]
    fn parses_both_nfs_entries_and_skips_other_devices() {
        let m = parse(FIXTURE);
        assert_eq!(m.malformed_lines, 0);
        assert_eq!(m.entries.len(), 2);
        let v4 = m.find("/airflow/dags").expect("v4 entry");
        assert_eq!(v4.device, "10.101.20.220:/srv/airflow/dags");
        assert_eq!(v4.fstype, "nfs4");
        assert_eq!(v4.statvers, "1.1");
        assert_eq!(v4.age_seconds, Some(86400));
        assert_eq!(v4.ops.len(), 7);
        let getattr = v4.ops.iter().find(|o| o.op == "GETATTR").unwrap();
        assert_eq!(getattr.ops, 70000);
        assert_eq!(getattr.retransmissions(), 42);
        assert_eq!(getattr.major_timeouts, 3);
        assert_eq!(getattr.rtt_ms, 35000);
        assert_eq!(getattr.execute_ms, 36500);
        assert_eq!(getattr.errors, Some(5));
        assert_eq!(v4.retransmissions(), 42 + 5);
        assert_eq!(v4.major_timeouts(), 4);
    }

    #[test]
    fn nconnect_transport_lines_are_summed() {
        let m = parse(FIXTURE);
        let x = m.find("/airflow/dags").unwrap().xprt.clone().unwrap();
        assert_eq!(x.protocol, "tcp");
        assert_eq!(x.connections, 2);
        assert_eq!(x.connect_count, 5);
        assert_eq!(x.sends, 80000);
        assert_eq!(x.receives, 79985);
        assert_eq!(x.backlog_sum, 200);
        assert_eq!(x.max_slots, 12);
        assert_eq!(x.pending_sum, 20000);
    }

    /// Audit (issue 16, item 5): sums over transports and operations used to overflow (a
    /// panic in debug builds) on huge counters; they saturate.
    #[test]
    fn huge_counters_saturate_instead_of_overflowing() {
        let max = u64::MAX;
        let text = format!(
            "device h:/e mounted on /m with fstype nfs4 statvers=1.1\n\
             \tRPC iostats version: 1.1  p/v: 100003/4 (nfs)\n\
             \txprt:\ttcp 1 1 {max} {max} 1 {max} {max} 0 {max} {max} 1 {max} {max}\n\
             \txprt:\ttcp 2 1 {max} {max} 1 {max} {max} 0 {max} {max} 1 {max} {max}\n\
             \tper-op statistics\n\
             \t        READ: 0 {max} {max} 0 0 0 0 0 {max}\n\
             \t       WRITE: 0 {max} {max} 0 0 0 0 0 {max}\n"
        );
        let m = parse(&text);
        let mount = m.find("/m").expect("parsed");
        let x = mount.xprt.as_ref().expect("xprt");
        assert_eq!(x.connections, 2);
        assert_eq!((x.connect_count, x.sends, x.backlog_sum), (max, max, max));
        assert_eq!(mount.retransmissions(), max);
        assert_eq!(mount.major_timeouts(), max);
    }

    #[test]
    fn statvers_1_0_udp_and_eight_field_ops() {
        let m = parse(FIXTURE);
        let v3 = m.find("/mnt/with space").expect("escaped mountpoint");
        assert_eq!(v3.statvers, "1.0");
        let x = v3.xprt.as_ref().unwrap();
        assert_eq!(x.protocol, "udp");
        assert_eq!(x.connect_count, 0, "UDP has no connects");
        assert_eq!(x.sends, 500);
        assert_eq!(x.receives, 498);
        assert_eq!(x.backlog_sum, 20);
        let getattr = v3.ops.iter().find(|o| o.op == "GETATTR").unwrap();
        assert_eq!(getattr.errors, None);
        assert_eq!(getattr.retransmissions(), 10);
        assert_eq!(getattr.major_timeouts, 2);
    }

    #[test]
    fn malformed_lines_are_counted_and_the_rest_survives() {
        let text = "\
device bogus line
device a:/x mounted on /a with fstype nfs4 statvers=1.1
\tage:\tnot-a-number
\txprt:\ttcp 1 2
\tper-op statistics
\t     GETATTR: 10 12 0 1 1 1 1 1 0
\t     BROKEN 1 2 3
\t     SHORT: 1 2 3
device b:/y mounted on /b with fstype nfs statvers=1.1
\tper-op statistics
\t     GETATTR: 5 5 0 1 1 1 1 1 0
";
        let m = parse(text);
        assert_eq!(m.malformed_lines, 5);
        assert_eq!(m.entries.len(), 2);
        let a = m.find("/a").unwrap();
        assert_eq!(a.ops.len(), 1);
        assert_eq!(a.retransmissions(), 2);
        assert!(a.xprt.is_none());
        assert_eq!(m.find("/b").unwrap().ops[0].ops, 5);
    }

    #[test]
    fn stacked_mounts_resolve_to_the_topmost() {
        let text = "\
device old:/x mounted on /m with fstype nfs4 statvers=1.1
\tage:\t10
device new:/x mounted on /m with fstype nfs4 statvers=1.1
\tage:\t1
";
        assert_eq!(parse(text).find("/m").unwrap().device, "new:/x");
    }

    #[test]
    fn unescape_handles_octal_and_leaves_the_rest() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
    }
}
