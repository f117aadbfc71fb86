//! Shared helpers of nfsha-sys's integration tests.
#![allow(dead_code)]

use nfsha_sys::{PoolConfig, WorkerPool};
use std::path::PathBuf;

/// A pool running this crate's test worker binary (same loop as `nfsha __worker`),
/// or, when `NFSHA_WORKER_PROGRAM` names the nfsha binary, `<that> __worker`.
pub fn pool(max_idle: usize) -> WorkerPool {
    let (program, args) = match std::env::var_os("NFSHA_WORKER_PROGRAM") {
        Some(p) => (PathBuf::from(p), vec!["__worker".into()]),
        None => (
            PathBuf::from(env!("CARGO_BIN_EXE_nfsha-sys-test-worker")),
            vec![],
        ),
    };
    WorkerPool::new(PoolConfig {
        program,
        args,
        max_idle,
    })
}

/// A fresh temporary directory with `n` empty subdirectories `m0..m{n-1}`.
pub fn dirs(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let t = tempfile::Builder::new()
        .prefix("nfsha-sys-test")
        .tempdir()
        .expect("tempdir");
    let v = (0..n)
        .map(|i| {
            let p = t.path().join(format!("m{i}"));
            std::fs::create_dir(&p).expect("mkdir");
            p
        })
        .collect();
    (t, v)
}
