//! Shared helpers of the nfsha-setup tests: the seed layouts, a fake host, tree snapshots.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nfsha_setup::{Host, SetupOptions};

/// A host with chosen tools and mountpoint users.
#[derive(Debug, Default)]
pub struct FakeHost {
    pub tools: BTreeSet<String>,
    pub users: BTreeMap<PathBuf, Vec<String>>,
    /// The NFS version each server answers (absent: no answer).
    pub versions: BTreeMap<String, u32>,
}

impl FakeHost {
    pub fn with_all_tools() -> Self {
        FakeHost {
            tools: ["mount.nfs", "automount"].map(String::from).into(),
            users: BTreeMap::new(),
            versions: BTreeMap::new(),
        }
    }
}

impl Host for FakeHost {
    fn has_tool(&self, name: &str) -> bool {
        self.tools.contains(name)
    }
    fn users_of(&self, mountpoint: &Path) -> Vec<String> {
        self.users.get(mountpoint).cloned().unwrap_or_default()
    }
    fn nfs_version(&self, server: &str) -> Option<u32> {
        self.versions.get(server).copied()
    }
}

pub const SYSTEM_FSTAB: &str = "\
# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=0a1b2c3d-1111-2222-3333-444455556666 /               ext4    errors=remount-ro 0       1
UUID=0a1b2c3d-7777-8888-9999-aaaabbbbcccc /boot           ext4    defaults        0       2
/swapfile                                 none            swap    sw              0       0
";

/// Seed 000 before Phase 1: static soft mounts in fstab.
pub fn seed_fstab_root(dir: &Path) {
    let fstab = format!(
        "{SYSTEM_FSTAB}10.101.20.220:/srv/airflow/dags /mnt/airflow-dags nfs soft,timeo=10,retrans=3,intr,bg,_netdev,rsize=8192,wsize=8192 0 0\n10.101.20.220:/srv/airflow/logs /mnt/airflow-logs nfs soft,timeo=10,retrans=3,intr,bg,_netdev,rsize=8192,wsize=8192 0 0\n"
    );
    put(dir, "/etc/fstab", &fstab, 0o644);
}

/// Seed 000 after Phase 1: autofs indirect map /airflow, fstab lines commented by hand.
pub fn seed_autofs_root(dir: &Path) {
    let fstab = format!(
        "{SYSTEM_FSTAB}# 10.101.20.220:/srv/airflow/dags /mnt/airflow-dags nfs soft,timeo=10,retrans=3,intr,bg,_netdev,rsize=8192,wsize=8192 0 0\n# 10.101.20.220:/srv/airflow/logs /mnt/airflow-logs nfs soft,timeo=10,retrans=3,intr,bg,_netdev,rsize=8192,wsize=8192 0 0\n"
    );
    put(dir, "/etc/fstab", &fstab, 0o644);
    put(
        dir,
        "/etc/auto.master",
        "#\n# Sample auto.master file\n#\n/misc\t/etc/auto.misc\n+dir:/etc/auto.master.d\n+auto.master\n/airflow    /etc/auto.airflow    --timeout=30 --ghost\n",
        0o644,
    );
    put(
        dir,
        "/etc/auto.misc",
        "cd\t\t-fstype=iso9660,ro,nosuid,nodev\t:/dev/cdrom\n",
        0o644,
    );
    std::fs::create_dir_all(dir.join("etc/auto.master.d")).unwrap();
    put(
        dir,
        "/etc/auto.airflow",
        "# NFS mounts for Airflow\n# Format: mount-point  options  server:/path\n\n# Airflow DAGs\ndags    -fstype=nfs4,rw,soft,timeo=10,retrans=2,intr,_netdev,rsize=8192,wsize=8192,nfsvers=4.1,noac,lookupcache=none,actimeo=0    10.101.20.220:/srv/airflow/dags\n\n# Airflow Logs\nlogs    -fstype=nfs4,rw,soft,timeo=10,retrans=2,intr,_netdev,rsize=8192,wsize=8192,nfsvers=4.1,noac,lookupcache=none,actimeo=0    10.101.20.220:/srv/airflow/logs\n",
        0o644,
    );
}

pub fn put(root: &Path, path: &str, text: &str, mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every file (bytes and mode), directory and symlink (its target) under `root`.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if md.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, (target.as_os_str().as_encoded_bytes().to_vec(), 0));
            } else if md.is_dir() {
                out.insert(rel, (Vec::new(), md.permissions().mode()));
                walk(root, &p, out);
            } else {
                out.insert(rel, (std::fs::read(&p).unwrap(), md.permissions().mode()));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

pub fn opts(root: &Path) -> SetupOptions {
    let mut o = SetupOptions::new(root);
    o.services = vec![
        "airflow-scheduler.service".into(),
        "airflow-webserver.service".into(),
    ];
    o
}

pub fn now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_307_045)
}
