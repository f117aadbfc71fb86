//! Hand-encoded NFSv4 COMPOUND { PUTROOTFH, GETFH } (RFC 7530 / RFC 8881), the one NFSv4 call no crate offers.
//!
//! Role: a deeper "is the server's NFSv4 layer serving" check than NULL: the server has to run two operations
//! and return its root file handle. Failure modes: an error status of the COMPOUND or of an operation is
//! [`RpcError::Nfs4Status`]; a malformed result is [`RpcError::Garbage`].
//! With minor version 1 or 2 a compliant server refuses a COMPOUND that does not start with SEQUENCE, with
//! NFS4ERR_OP_NOT_IN_SESSION ([`NFS4ERR_OP_NOT_IN_SESSION`]): that still proves the COMPOUND path answers, but not
//! that the export is served; minor version 0 gets the real root file handle.

use crate::RpcError;

/// NFSv4 procedure COMPOUND.
pub const NFSPROC4_COMPOUND: u32 = 1;
/// Operation number of PUTROOTFH.
pub const OP_PUTROOTFH: u32 = 24;
/// Operation number of GETFH.
pub const OP_GETFH: u32 = 10;
/// `nfsstat4` a v4.1+ server returns for a COMPOUND without SEQUENCE.
pub const NFS4ERR_OP_NOT_IN_SESSION: u32 = 10071;
/// `nfsstat4` a server returns for a minor version it does not serve.
pub const NFS4ERR_MINOR_VERS_MISMATCH: u32 = 10021;
/// Largest NFSv4 file handle (`NFS4_FHSIZE`).
pub const NFS4_FHSIZE: usize = 128;

/// XDR encoding of `COMPOUND4args { tag: "", minorversion, argarray: [PUTROOTFH, GETFH] }`.
#[must_use]
pub fn encode_root_fh_args(minorversion: u32) -> Vec<u8> {
    let words = [0, minorversion, 2, OP_PUTROOTFH, OP_GETFH];
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, RpcError> {
        let Some((head, rest)) = self.b.split_first_chunk::<4>() else {
            return Err(RpcError::garbage("truncated COMPOUND result"));
        };
        self.b = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn opaque(&mut self, max: usize) -> Result<&[u8], RpcError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(RpcError::garbage(format!(
                "opaque of {len} bytes in COMPOUND result"
            )));
        }
        let padded = len.div_ceil(4) * 4;
        if self.b.len() < padded {
            return Err(RpcError::garbage("truncated COMPOUND result"));
        }
        let (v, rest) = self.b.split_at(padded);
        self.b = rest;
        Ok(&v[..len])
    }
}

fn op_name(op: u32) -> &'static str {
    match op {
        OP_PUTROOTFH => "PUTROOTFH",
        OP_GETFH => "GETFH",
        _ => "unexpected operation",
    }
}

/// Decode the `COMPOUND4res` of [`encode_root_fh_args`]: the root file handle, or the first failing status.
pub fn decode_root_fh_result(results: &[u8]) -> Result<Vec<u8>, RpcError> {
    let mut r = Reader { b: results };
    let status = r.u32()?;
    r.opaque(1024)?; // tag
    let count = r.u32()?;
    if count > 2 {
        return Err(RpcError::garbage(format!(
            "{count} results for 2 operations"
        )));
    }
    let mut fh = None;
    for expected in [OP_PUTROOTFH, OP_GETFH].into_iter().take(count as usize) {
        let op = r.u32()?;
        if op != expected {
            return Err(RpcError::garbage(format!(
                "result of operation {op}, expected {expected}"
            )));
        }
        let op_status = r.u32()?;
        if op_status != 0 {
            return Err(RpcError::Nfs4Status {
                op: op_name(op),
                status: op_status,
            });
        }
        if op == OP_GETFH {
            fh = Some(r.opaque(NFS4_FHSIZE)?.to_vec());
        }
    }
    if status != 0 {
        return Err(RpcError::Nfs4Status {
            op: "COMPOUND",
            status,
        });
    }
    fh.ok_or_else(|| RpcError::garbage("COMPOUND succeeded without a GETFH result"))
}
