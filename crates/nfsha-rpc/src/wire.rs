//! ONC RPC on the wire: call encoding, TCP record marking, reply decoding (RFC 5531 §9 and §11).
//!
//! Role: pure byte-level code, no I/O, so that it can be pinned by golden-byte tests and fuzzed. Calls and replies
//! use the `nfs3_types` RPC message types; only the record-marking reassembly and a few guards are ours.
//! Failure modes: a reply that is not a reply to our call (wrong xid, a CALL, truncated, unknown enum values, a
//! record larger than [`MAX_RECORD`]) is [`RpcError::Garbage`]; a well-formed rejection maps to its own variant.

use std::io::Cursor;

use nfs3_types::rpc::{
    RPC_VERSION_2, accept_stat_data, auth_unix, call_body, fragment_header, msg_body, opaque_auth,
    rejected_reply, reply_body, rpc_msg,
};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};

use crate::RpcError;

/// Largest reply record a probe accepts (replies to NULL, GETPORT and a root-FH COMPOUND are tiny).
pub const MAX_RECORD: usize = 64 * 1024;

/// Longest verifier body RFC 5531 allows (`MAX_AUTH_BYTES`).
const MAX_AUTH_BYTES: u32 = 400;

/// The credential a call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cred {
    /// AUTH_NONE: what NULL procedures and the portmapper need.
    None,
    /// AUTH_SYS with uid 0, gid 0, no extra groups and machine name `nfsha` (stamp 0), for NFSv4 COMPOUND.
    SysRoot,
}

fn pack_into(v: &impl Pack, out: &mut Vec<u8>) {
    // Packing into a Vec cannot fail: the writer never errors and our opaques are far below XDR's limits.
    v.pack(out).expect("packing into a Vec cannot fail");
}

/// Encode one call as a single record-marked fragment: 4-byte marker (last-fragment bit set), RPC header, `args`
/// (already XDR-encoded).
#[must_use]
pub fn encode_call(
    xid: u32,
    program: u32,
    version: u32,
    procedure: u32,
    cred: Cred,
    args: &[u8],
) -> Vec<u8> {
    let cred = match cred {
        Cred::None => opaque_auth::default(),
        Cred::SysRoot => opaque_auth::auth_unix(&auth_unix {
            stamp: 0,
            machinename: Opaque::borrowed(b"nfsha"),
            uid: 0,
            gid: 0,
            gids: vec![],
        }),
    };
    let msg = rpc_msg {
        xid,
        body: msg_body::CALL(call_body {
            rpcvers: RPC_VERSION_2,
            prog: program,
            vers: version,
            proc: procedure,
            cred,
            verf: opaque_auth::default(),
        }),
    };
    let mut out = Vec::with_capacity(4 + msg.packed_size() + args.len());
    out.extend_from_slice(&[0; 4]);
    pack_into(&msg, &mut out);
    out.extend_from_slice(args);
    let len = u32::try_from(out.len() - 4).expect("a probe call is far below 2 GiB");
    out[..4].copy_from_slice(&fragment_header::new(len, true).into_xdr_buf());
    out
}

/// XDR encoding of a portmapper `mapping` with port 0: the argument of PMAPPROC_GETPORT.
#[must_use]
pub fn encode_getport_args(program: u32, version: u32, protocol: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    pack_into(
        &nfs3_types::portmap::mapping {
            prog: program,
            vers: version,
            prot: protocol,
            port: 0,
        },
        &mut out,
    );
    out
}

/// Reassembles record-marked fragments from a byte stream that may arrive in arbitrary pieces.
#[derive(Debug)]
pub struct RecordDecoder {
    max: usize,
    /// Bytes received and not yet consumed.
    pending: Vec<u8>,
    /// Fragments of the current record, reassembled.
    record: Vec<u8>,
}

impl RecordDecoder {
    /// A decoder that rejects records longer than `max` bytes.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max,
            pending: Vec::new(),
            record: Vec::new(),
        }
    }

    /// Feed received bytes; returns the first complete record once its last fragment has arrived. Bytes after that
    /// record stay buffered for the next call (pass an empty slice to drain them).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, RpcError> {
        self.pending.extend_from_slice(bytes);
        loop {
            let Some(marker) = self.pending.get(..4) else {
                return Ok(None);
            };
            let header = fragment_header::from([marker[0], marker[1], marker[2], marker[3]]);
            let len = header.fragment_length() as usize;
            if self.record.len() + len > self.max {
                return Err(RpcError::garbage(format!(
                    "record longer than {} bytes",
                    self.max
                )));
            }
            if self.pending.len() < 4 + len {
                return Ok(None);
            }
            self.record.extend_from_slice(&self.pending[4..4 + len]);
            self.pending.drain(..4 + len);
            if header.eof() {
                return Ok(Some(std::mem::take(&mut self.record)));
            }
        }
    }

    /// True when no partial fragment or record is buffered.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.record.is_empty()
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn xdr_error(e: &nfs3_types::xdr_codec::Error) -> RpcError {
    match e {
        nfs3_types::xdr_codec::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            RpcError::garbage("truncated")
        }
        other => RpcError::garbage(other.to_string()),
    }
}

/// Decode one reply record to the call `xid` of `program`/`version`; on SUCCESS returns the XDR-encoded results
/// (the bytes after the RPC header).
pub fn decode_reply(
    record: &[u8],
    xid: u32,
    program: u32,
    version: u32,
) -> Result<&[u8], RpcError> {
    // Guards before handing the record to nfs3_types: it would parse a CALL body too, and it allocates an opaque's
    // length before reading it, so a garbage verifier length must not reach it.
    let (Some(got_xid), Some(mtype)) = (be_u32(record, 0), be_u32(record, 4)) else {
        return Err(RpcError::garbage("truncated"));
    };
    if mtype != 1 {
        return Err(RpcError::garbage(format!(
            "message type {mtype}, not a reply"
        )));
    }
    if got_xid != xid {
        return Err(RpcError::garbage(format!(
            "xid {got_xid:#x}, expected {xid:#x}"
        )));
    }
    if be_u32(record, 8) == Some(0) {
        match be_u32(record, 16) {
            Some(n) if n <= MAX_AUTH_BYTES => {}
            Some(n) => return Err(RpcError::garbage(format!("verifier of {n} bytes"))),
            None => return Err(RpcError::garbage("truncated")),
        }
    }
    let mut cur = Cursor::new(record);
    let (msg, _) = rpc_msg::unpack(&mut cur).map_err(|e| xdr_error(&e))?;
    let msg_body::REPLY(reply) = msg.body else {
        return Err(RpcError::garbage("not a reply"));
    };
    match reply {
        reply_body::MSG_DENIED(rejected_reply::RPC_MISMATCH { low, high }) => {
            Err(RpcError::RpcMismatch { low, high })
        }
        reply_body::MSG_DENIED(rejected_reply::AUTH_ERROR(stat)) => Err(RpcError::AuthDenied {
            stat: stat.to_string(),
        }),
        reply_body::MSG_ACCEPTED(acc) => match acc.reply_data {
            accept_stat_data::SUCCESS => {
                let at = usize::try_from(cur.position()).expect("cursor stays within the record");
                Ok(&record[at..])
            }
            accept_stat_data::PROG_UNAVAIL => Err(RpcError::ProgUnavail { program }),
            accept_stat_data::PROG_MISMATCH { low, high } => Err(RpcError::ProgMismatch {
                program,
                version,
                low,
                high,
            }),
            accept_stat_data::PROC_UNAVAIL => Err(RpcError::CallFailed {
                stat: "PROC_UNAVAIL",
            }),
            accept_stat_data::GARBAGE_ARGS => Err(RpcError::CallFailed {
                stat: "GARBAGE_ARGS",
            }),
            accept_stat_data::SYSTEM_ERR => Err(RpcError::CallFailed { stat: "SYSTEM_ERR" }),
        },
    }
}

/// Decode a PMAPPROC_GETPORT result: the port, or [`RpcError::NotRegistered`] for port 0.
pub fn decode_getport_result(results: &[u8], program: u32, version: u32) -> Result<u16, RpcError> {
    let port = be_u32(results, 0).ok_or_else(|| RpcError::garbage("truncated GETPORT result"))?;
    match port {
        0 => Err(RpcError::NotRegistered { program, version }),
        p => u16::try_from(p).map_err(|_| RpcError::garbage(format!("port {p} out of range"))),
    }
}
