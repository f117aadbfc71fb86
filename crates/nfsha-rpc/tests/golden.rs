//! Golden bytes of every call we encode, and decoding of hand-built NFSv4 COMPOUND results.

mod common;

use std::time::Duration;

use common::{record, words};
use nfsha_rpc::nfs4::{self, NFS4ERR_MINOR_VERS_MISMATCH, NFS4ERR_OP_NOT_IN_SESSION};
use nfsha_rpc::wire::{self, Cred};
use nfsha_rpc::{RpcError, nfs4_root_fh};

fn hex(b: &[u8]) -> String {
    b.chunks(4)
        .map(|w| w.iter().map(|x| format!("{x:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn nfs4_null_call() {
    let got = wire::encode_call(0x0102_0304, 100_003, 4, 0, Cred::None, &[]);
    assert_eq!(
        hex(&got),
        "80000028 01020304 00000000 00000002 000186a3 00000004 00000000 \
         00000000 00000000 00000000 00000000"
    );
}

#[test]
fn nfs3_null_and_mount_null_calls() {
    let got = wire::encode_call(7, 100_003, 3, 0, Cred::None, &[]);
    assert_eq!(
        hex(&got),
        "80000028 00000007 00000000 00000002 000186a3 00000003 00000000 \
         00000000 00000000 00000000 00000000"
    );
    let got = wire::encode_call(8, 100_005, 3, 0, Cred::None, &[]);
    assert_eq!(
        hex(&got),
        "80000028 00000008 00000000 00000002 000186a5 00000003 00000000 \
         00000000 00000000 00000000 00000000"
    );
}

#[test]
fn portmap_getport_call_for_mount_v3_tcp() {
    let args = wire::encode_getport_args(100_005, 3, 6);
    let got = wire::encode_call(0x1122_3344, 100_000, 2, 3, Cred::None, &args);
    assert_eq!(
        hex(&got),
        "80000038 11223344 00000000 00000002 000186a0 00000002 00000003 \
         00000000 00000000 00000000 00000000 \
         000186a5 00000003 00000006 00000000"
    );
}

#[test]
fn nfs4_compound_putrootfh_getfh_call_minorversion_1() {
    let args = nfs4::encode_root_fh_args(1);
    assert_eq!(hex(&args), "00000000 00000001 00000002 00000018 0000000a");
    let got = wire::encode_call(0xdead_beef, 100_003, 4, 1, Cred::SysRoot, &args);
    assert_eq!(
        hex(&got),
        // marker, xid, CALL, rpcvers 2, NFS, v4, COMPOUND
        "80000058 deadbeef 00000000 00000002 000186a3 00000004 00000001 \
         00000001 0000001c 00000000 00000005 6e667368 61000000 00000000 00000000 00000000 \
         00000000 00000000 \
         00000000 00000001 00000002 00000018 0000000a"
    );
    // AUTH_SYS body: stamp 0, machine "nfsha", uid 0, gid 0, no groups; verifier AUTH_NONE.
}

#[test]
fn compound_result_with_a_root_fh_decodes() {
    // status OK, tag "", 2 results: PUTROOTFH OK, GETFH OK fh(6 bytes)
    let mut res = words(&[0, 0, 2, 24, 0, 10, 0, 6]);
    res.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0]);
    assert_eq!(
        nfs4::decode_root_fh_result(&res).expect("fh"),
        [1, 2, 3, 4, 5, 6]
    );
}

#[test]
fn compound_without_session_reports_op_not_in_session() {
    let res = words(&[
        NFS4ERR_OP_NOT_IN_SESSION,
        0,
        1,
        24,
        NFS4ERR_OP_NOT_IN_SESSION,
    ]);
    let err = nfs4::decode_root_fh_result(&res).expect_err("no session");
    assert!(
        matches!(
            err,
            RpcError::Nfs4Status {
                op: "PUTROOTFH",
                status: 10071
            }
        ),
        "{err:?}"
    );
    assert!(err.server_answered());
}

#[test]
fn compound_minor_version_mismatch_has_no_results() {
    let res = words(&[NFS4ERR_MINOR_VERS_MISMATCH, 0, 0]);
    let err = nfs4::decode_root_fh_result(&res).expect_err("mismatch");
    assert!(
        matches!(
            err,
            RpcError::Nfs4Status {
                op: "COMPOUND",
                status: 10021
            }
        ),
        "{err:?}"
    );
}

#[test]
fn compound_results_that_lie_are_garbage() {
    for res in [
        words(&[0, 0]),                        // truncated
        words(&[0, 0, 3, 24, 0, 10, 0, 0, 9]), // more results than operations
        words(&[0, 0, 2, 10, 0, 24, 0]),       // operations out of order
        words(&[0, 0, 2, 24, 0, 10, 0, 129]),  // fh longer than NFS4_FHSIZE
        words(&[0, 0, 1, 24, 0]),              // OK but no GETFH
    ] {
        let err = nfs4::decode_root_fh_result(&res).expect_err("garbage");
        assert!(matches!(err, RpcError::Garbage { .. }), "{res:?}: {err:?}");
    }
}

#[tokio::test]
async fn nfs4_root_fh_end_to_end_against_a_scripted_server() {
    let addr = common::scripted_server(
        |xid| {
            let mut body = words(&[xid, 1, 0, 0, 0, 0, 0, 0, 2, 24, 0, 10, 0, 4]);
            body.extend_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
            record(&body)
        },
        0,
    )
    .await;
    let (rtt, fh) = nfs4_root_fh(addr, 0, Duration::from_secs(2))
        .await
        .expect("root fh");
    assert_eq!(fh, [0xca, 0xfe, 0xba, 0xbe]);
    assert!(rtt < Duration::from_secs(2));
}

#[test]
fn reply_decoding_returns_the_results() {
    let body = words(&[9, 1, 0, 0, 0, 0, 2049]);
    assert_eq!(
        wire::decode_reply(&body, 9, 100_000, 2).expect("ok"),
        2049u32.to_be_bytes()
    );
    assert_eq!(
        wire::decode_getport_result(&2049u32.to_be_bytes(), 100_003, 3).expect("port"),
        2049
    );
}

#[test]
fn a_call_is_not_a_reply() {
    let call = wire::encode_call(5, 100_003, 3, 0, Cred::None, &[]);
    let err = wire::decode_reply(&call[4..], 5, 100_003, 3).expect_err("call");
    assert!(
        matches!(&err, RpcError::Garbage { what } if what.contains("not a reply")),
        "{err:?}"
    );
}
