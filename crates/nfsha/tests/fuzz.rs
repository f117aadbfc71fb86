//! Fuzzing in CI (issue 16, "What to build" item 5): every parser that reads bytes from
//! outside the process, driven by proptest on the CI's stable compiler — the RPC record
//! decoder and reply decoders (bytes from any host on the network), mountinfo and
//! mountstats (the kernel's files, with mountpoints chosen by local users), the config
//! (an operator's file), fstab and autofs import (the seeds' files), the control-socket
//! request line (any local user who can connect) and the etcd records (whoever can
//! write the keys). The property everywhere: no panic, and an error is an error value
//! (for the config: with a position inside the text).
//!
//! Inputs are both unstructured (arbitrary bytes or text) and structured: real inputs
//! (the seeds' files, the packaged example config, a real mountstats capture, a valid
//! RPC reply) mutated by byte flips, insertions, deletions and truncation, which reach
//! deeper than random bytes do.
//!
//! Bounded in CI: `NFSHA_FUZZ_CASES` cases per target (default 1,000; the whole file runs
//! in seconds). The longer documented run (README "Fuzzing"):
//! `NFSHA_FUZZ_CASES=200000 cargo nextest run -p nfsha --test fuzz`. A failing input is
//! written by proptest to `fuzz.proptest-regressions` beside this file and replayed first
//! on every later run: commit it, it is the regression test.

use proptest::prelude::*;
use std::path::Path;

fn cases() -> u32 {
    std::env::var("NFSHA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// One mutation of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    prop::collection::vec(one, 1..8)
}

fn mutate(seed: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for m in ms {
        let len = v.len().max(1);
        match m {
            Mutation::Flip(i, b) if !v.is_empty() => {
                let i = i % v.len();
                v[i] ^= b | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, b) => {
                let i = i % (v.len() + 1);
                v.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(i, n) if !v.is_empty() => {
                let i = i % v.len();
                let end = (i + n).min(v.len());
                v.drain(i..end);
            }
            Mutation::Delete(..) => {}
            Mutation::Truncate(i) => v.truncate(i % len),
        }
    }
    v
}

fn seed_file(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fuzz seed {}: {e}", p.display()))
}

/// A valid RPC reply (MSG_ACCEPTED, SUCCESS) to xid 7 with `results`.
fn rpc_reply(results: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    for w in [7u32, 1, 0, 0, 0, 0] {
        r.extend_from_slice(&w.to_be_bytes());
    }
    r.extend_from_slice(results);
    r
}

fn check_config(text: &str) {
    let lines = text.split('\n').count();
    if let Err(nfsha_config::ConfigError::Invalid { diagnostics, .. }) =
        nfsha_config::parse_str(text, None)
    {
        for d in &diagnostics {
            assert!(
                d.line <= lines.max(1),
                "diagnostic past the end of the text: {d}"
            );
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_rpc_record_decoder_takes_any_stream(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
    ) {
        let mut d = nfsha_rpc::wire::RecordDecoder::new(4096);
        for c in &chunks {
            match d.push(c) {
                Ok(Some(rec)) => prop_assert!(rec.len() <= 4096),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }

    #[test]
    fn fuzz_rpc_reply_decoders_take_any_record(
        raw in prop::collection::vec(any::<u8>(), 0..256),
        ms in mutations(),
        xid in prop_oneof![Just(7u32), any::<u32>()],
    ) {
        let valid = rpc_reply(&[0, 0, 8, 1]);
        for rec in [raw.clone(), mutate(&valid, &ms)] {
            if let Ok(results) = nfsha_rpc::wire::decode_reply(&rec, xid, 100_000, 2) {
                let _ = nfsha_rpc::wire::decode_getport_result(results, 100_003, 3);
            }
            let _ = nfsha_rpc::wire::decode_getport_result(&rec, 100_003, 3);
            let _ = nfsha_rpc::nfs4::decode_root_fh_result(&rec);
        }
    }

    #[test]
    fn fuzz_mountinfo_takes_any_bytes(
        raw in prop::collection::vec(any::<u8>(), 0..512),
        ms in mutations(),
    ) {
        let real = b"36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - nfs4 10.0.0.1:/export rw,vers=4.1\n\
                     37 36 0:45 / /air\\134flow rw shared:2 - nfs 10.0.0.2:/a\\040b rw,vers=3\n";
        let _ = nfsha_sys::mountinfo::parse_mountinfo_bytes(&raw);
        let _ = nfsha_sys::mountinfo::parse_mountinfo_bytes(&mutate(real, &ms));
        let round = nfsha_sys::mountinfo::unescape(&nfsha_sys::mountinfo::escape(&raw));
        prop_assert_eq!(round, raw);
    }

    #[test]
    fn fuzz_mountstats_takes_any_text(
        raw in ".{0,400}",
        ms in mutations(),
    ) {
        let real = seed_file("crates/nfsha-metrics/tests/fixtures/mountstats.txt");
        let _ = nfsha_metrics::mountstats::parse(&raw);
        let m = mutate(&real, &ms);
        let _ = nfsha_metrics::mountstats::parse(&String::from_utf8_lossy(&m));
    }

    #[test]
    fn fuzz_config_takes_any_text_and_points_inside_it(
        raw in "(?s).{0,300}",
        ms in mutations(),
    ) {
        check_config(&raw);
        for seed in ["packaging/nfsha.toml.example", "packaging/nfsha.toml"] {
            let m = mutate(&seed_file(seed), &ms);
            check_config(&String::from_utf8_lossy(&m));
        }
    }

    #[test]
    fn fuzz_fstab_and_autofs_import_take_the_seeds_files_mutated(
        raw in "(?s).{0,300}",
        ms in mutations(),
    ) {
        // The seeds' lines verbatim (seed 000's fstab and autofs map, seed 001's map line).
        let seeds: [&[u8]; 4] = [
            b"10.101.20.220:/srv/airflow/dags /mnt/airflow-dags nfs soft,timeo=10,retrans=3,intr,bg,_netdev,rsize=8192,wsize=8192 0 0\n# 10.101.20.220:/srv/airflow/logs /mnt/airflow-logs nfs soft,timeo=10,retrans=3,intr,bg,_netdev,rsize=8192,wsize=8192 0 0\n",
            b"/airflow    /etc/auto.airflow    --timeout=30 --ghost\n+auto.master\n",
            b"dags    -fstype=nfs4,rw,soft,timeo=10,retrans=2,intr,_netdev,rsize=8192,wsize=8192,nfsvers=4.1,noac,lookupcache=none,actimeo=0    10.101.20.220:/srv/airflow/dags\n",
            b"crr -fstype=nfs,rw,nosuid,hard,tcp,timeo=60 10.1.13.5:/crr-site1 10.2.13.5:/crr-dest1\n",
        ];
        let mut texts = vec![raw];
        for s in seeds {
            texts.push(String::from_utf8_lossy(&mutate(s, &ms)).into_owned());
        }
        for t in &texts {
            for l in nfsha_setup::fstab::lines(t) {
                let _ = nfsha_setup::fstab::classify(&l);
            }
            let _ = nfsha_setup::fstab::uncomment(t);
            let _ = nfsha_setup::autofs::parse_master(t, Path::new("/etc/auto.master"));
            for e in nfsha_setup::autofs::parse_map(t, Path::new("/etc/auto.misc")) {
                let _ = nfsha_setup::autofs::replicas(&e.locations);
            }
        }
    }

    #[test]
    fn fuzz_control_request_line_takes_any_text(
        raw in "(?s).{0,200}",
        ms in mutations(),
    ) {
        let valid = br#"{"cmd":"recover","mountpoint":"/misc/crr","replica":"10.2.13.5:/crr-dest1"}"#;
        let _ = serde_json::from_str::<nfsha_agent::control::Request>(&raw);
        let m = mutate(valid, &ms);
        let _ = serde_json::from_slice::<nfsha_agent::control::Request>(&m);
    }

    #[test]
    fn fuzz_etcd_records_take_any_value(
        raw in prop::collection::vec(any::<u8>(), 0..200),
        ms in mutations(),
        spec in ".{0,40}",
    ) {
        let active = br#"{"replica":{"host":"10.2.13.5","export":"/crr-dest1"},"generation":2,"decided_by":"c1","decided_at_ms":1,"reason":"failover","previous":null,"promote":null}"#;
        for v in [raw.clone(), mutate(active, &ms)] {
            let _ = serde_json::from_slice::<nfsha_cluster::ActiveRecord>(&v);
            let _ = serde_json::from_slice::<nfsha_cluster::AgentView>(&v);
            let _ = serde_json::from_slice::<nfsha_cluster::LockRecord>(&v);
            let _ = serde_json::from_slice::<nfsha_server::LeaderRecord>(&v);
            let _ = serde_json::from_slice::<nfsha_server::ReplicaRecord>(&v);
        }
        let members = [
            nfsha_cluster::ReplicaId::new("10.1.13.5", "/crr-site1"),
            nfsha_cluster::ReplicaId::new("10.2.13.5", "/crr-dest1"),
        ];
        if let Ok((host, export)) = nfsha_cluster::parse_replica_spec(&spec) {
            prop_assert!(!host.is_empty());
            prop_assert!(export.is_none_or(|e| e.starts_with('/')));
        }
        let _ = nfsha_cluster::resolve_member(&members, &spec);
    }
}
