//! nfsha-sys: nfsha's seam to the kernel.
//!
//! Role: the mount table ([`mountinfo`]), the syscall trait for umount/statfs/readdir
//! ([`ops`]), the private staging area for new mounts ([`staging`]), hang-proof worker
//! processes and their pool ([`worker`]), external
//! commands under a deadline ([`command`]), and the descriptor limit ([`limits`]). The daemon's own threads only read
//! mountinfo and talk to workers; any call that may block on a dead NFS server runs
//! in a worker process that can be killed (or, if the kernel will not let it die,
//! counted as stuck and reaped later).

pub mod command;
pub mod limits;
pub mod mountinfo;
pub mod ops;
pub mod staging;
pub mod worker;

pub use command::{CommandError, CommandOutput, mount_nfs_argv, run_command};
pub use limits::{LimitError, NofileLimit, raise_nofile};
pub use mountinfo::{MountEntry, MountinfoError, find_mount, parse_mountinfo, read_mountinfo};
pub use ops::{MountOps, OpsError, RecordingMountOps, RustixMountOps, UmountFlags};
pub use worker::{
    PoolConfig, ProbeReport, WorkerError, WorkerPool, WorkerRequest, WorkerResponse, worker_main,
};
