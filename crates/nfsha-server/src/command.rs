//! The real [`ServerHost`]: argument-vector shell-outs to the nfs-utils and iproute2
//! tools, optionally through a command prefix (e.g. `nsenter -t PID -m -n -u`) so the
//! lab can drive a server inside a network namespace.
//!
//! Role, per step:
//! - storage: run the configured storage commands (mount, promote), create the state
//!   directory layout (`v4recovery`, `statd/sm`, `statd/sm.bak`, `nfsdcld`); in
//!   replicated mode run the configured promote command.
//! - nfsd: write lease and grace times to `/proc/fs/nfsd`, run the configured
//!   pre-nfsd commands (rpcbind, mountd), then `rpc.nfsd -L lease -G grace -S scope N`;
//!   in replicated mode end the grace period at once (see [`CommandHost`]).
//! - exports: `exportfs -i -o OPTS,fsid=N CLIENTS:PATH` per export.
//! - floating address: duplicate-address check (`arping -D`), `ip addr add`, gratuitous
//!   ARP (`arping -U`); a failure after the add removes the address again.
//! - notify: `sm-notify -f -v ADDRESS -P STATEDIR/statd`.
//!
//! Teardown reverses it: `ip addr del` (absent address = success), `exportfs -u` +
//! unlock + `exportfs -f`, `rpc.nfsd 0` + post-stop commands, storage-down commands.
//! Failure modes: a tool is missing or exits non-zero ([`HostError`]); a hung tool is
//! killed when the sequencer's step timeout drops the future (`kill_on_drop`).

use crate::host::{HostError, Role, ServerHost, Step};
use nfsha_config::{ServerConfig, StorageMode};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Knobs of the real host that are not in the config file (mostly for the lab).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOptions {
    /// Prepended to every command, e.g. `["nsenter", "-t", "1234", "-m", "-n", "-u"]`.
    /// Files under `/proc/fs/nfsd` are then written with `tee` through the prefix.
    pub prefix: Vec<String>,
    /// nfsd's control directory. Default `/proc/fs/nfsd`.
    pub proc_nfsd: PathBuf,
    /// nfsd threads. Default 8.
    pub nfsd_threads: u32,
    /// Commands run at the start of the storage step (mount, bind state dir).
    pub storage_up: Vec<Vec<String>>,
    /// Commands run at the end of the storage teardown (unmount).
    pub storage_down: Vec<Vec<String>>,
    /// Commands run before `rpc.nfsd` (e.g. `rpcbind -w`, `rpc.mountd`).
    pub before_nfsd: Vec<Vec<String>>,
    /// Commands run after `rpc.nfsd 0` (e.g. stop mountd in this netns).
    pub after_nfsd_stop: Vec<Vec<String>>,
    /// Gratuitous ARP count. Default 3: the first is sent inside the step, the others
    /// (iputils arping sends one per second) by a background arping so that they do not
    /// delay the bring-up.
    pub arp_count: u32,
    /// Run the duplicate-address check before adding the address. Default true.
    pub duplicate_address_check: bool,
    /// Pass `-S scope` to rpc.nfsd (nfs-utils ≥ 2.6). Default true; with false the
    /// scope must come from nfs.conf or the UTS hostname.
    pub scope_flag: bool,
}

impl Default for CommandOptions {
    fn default() -> Self {
        CommandOptions {
            prefix: Vec::new(),
            proc_nfsd: PathBuf::from("/proc/fs/nfsd"),
            nfsd_threads: 8,
            storage_up: Vec::new(),
            storage_down: Vec::new(),
            before_nfsd: Vec::new(),
            after_nfsd_stop: Vec::new(),
            arp_count: 3,
            duplicate_address_check: true,
            scope_flag: true,
        }
    }
}

/// The real host.
///
/// **Grace in replicated mode.** After a failover the NFSv4 server normally waits out a
/// grace period (at least one lease) so that clients can reclaim their opens and locks.
/// In `replicated` mode each node has its own copy of the data and of the state
/// directory: the new server has no client records to honour, and the file handles of
/// the old server are stale anyway (clients must remount), so no client *can* reclaim
/// anything. Waiting would only block every OPEN for nothing, so grace is ended at once
/// by writing `Y` to `/proc/fs/nfsd/v4_end_grace`. In `shared` mode the state directory
/// moves with the data, reclaims are possible, and grace is left to run.
#[derive(Debug, Clone)]
pub struct CommandHost {
    cfg: ServerConfig,
    opts: CommandOptions,
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

impl CommandHost {
    /// A host for this `[server]` section.
    pub fn new(cfg: ServerConfig, opts: CommandOptions) -> Self {
        CommandHost { cfg, opts }
    }

    fn full_argv(&self, argv: &[String]) -> Vec<String> {
        self.opts
            .prefix
            .iter()
            .chain(argv.iter())
            .cloned()
            .collect()
    }

    /// The argument vector `run` would execute (tests).
    pub fn planned(&self, argv: &[String]) -> Vec<String> {
        self.full_argv(argv)
    }

    async fn run_with(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Result<String, HostError> {
        let full = self.full_argv(argv);
        let Some((prog, args)) = full.split_first() else {
            return Ok(String::new());
        };
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tracing::debug!(argv = ?full, "run");
        let mut child = cmd.spawn().map_err(|source| HostError::Spawn {
            program: prog.clone(),
            source,
        })?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(data).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| HostError::Spawn {
                program: prog.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: String = err
                .trim()
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err(HostError::Failed {
                program: argv.first().cloned().unwrap_or_default(),
                status: out.status.to_string(),
                code: out.status.code(),
                stderr: tail,
            })
        }
    }

    async fn run(&self, argv: &[String]) -> Result<String, HostError> {
        self.run_with(argv, None, &[]).await
    }

    async fn run_all(&self, cmds: &[Vec<String>]) -> Result<(), HostError> {
        for c in cmds {
            self.run(c).await?;
        }
        Ok(())
    }

    /// Write a control file, directly or through the prefix (`tee`).
    async fn write_file(&self, path: PathBuf, content: &str) -> Result<(), HostError> {
        if self.opts.prefix.is_empty() {
            tokio::fs::write(&path, content)
                .await
                .map_err(|source| HostError::Write {
                    path: path.display().to_string(),
                    source,
                })
        } else {
            self.run_with(
                &[s("tee"), path.display().to_string()],
                Some(content.as_bytes()),
                &[],
            )
            .await
            .map(drop)
        }
    }

    fn export_spec(&self, e: &nfsha_config::ExportConfig) -> String {
        format!("{}:{}", e.clients, e.path.display())
    }

    /// The `exportfs` argument vector for one export (fsid pinned, overriding any
    /// `fsid=` in the options).
    pub fn export_argv(&self, e: &nfsha_config::ExportConfig) -> Vec<String> {
        let mut opts: Vec<String> = e
            .options
            .iter()
            .filter(|o| !o.starts_with("fsid="))
            .cloned()
            .collect();
        opts.push(format!("fsid={}", e.fsid));
        vec![
            s("exportfs"),
            s("-i"),
            s("-o"),
            opts.join(","),
            self.export_spec(e),
        ]
    }

    /// The `rpc.nfsd` argument vector.
    pub fn nfsd_argv(&self) -> Vec<String> {
        let mut v = vec![
            s("rpc.nfsd"),
            s("-L"),
            s(self.cfg.nfsd_lease.as_secs().max(10)),
            s("-G"),
            s(self.cfg.nfsd_grace.as_secs().max(10)),
        ];
        if self.opts.scope_flag {
            v.extend([s("-S"), self.cfg.scope.clone()]);
        }
        v.push(s(self.opts.nfsd_threads));
        v
    }

    async fn storage_up(&self) -> Result<(), HostError> {
        self.run_all(&self.opts.storage_up).await?;
        if self.cfg.storage == StorageMode::Replicated
            && let Some(r) = &self.cfg.replication
            && !r.promote_command.is_empty()
        {
            self.run(&r.promote_command).await?;
        }
        let d = &self.cfg.state_dir;
        let dirs = ["v4recovery", "statd/sm", "statd/sm.bak", "nfsdcld"];
        let mut argv = vec![s("mkdir"), s("-p")];
        argv.extend(dirs.iter().map(|x| d.join(x).display().to_string()));
        self.run(&argv).await.map(drop)
    }

    async fn nfsd_up(&self) -> Result<(), HostError> {
        let p = &self.opts.proc_nfsd;
        // Must be set before nfsd starts; rpc.nfsd -L/-G does the same on new nfs-utils.
        self.write_file(
            p.join("nfsv4leasetime"),
            &format!("{}\n", self.cfg.nfsd_lease.as_secs().max(10)),
        )
        .await?;
        self.write_file(
            p.join("nfsv4gracetime"),
            &format!("{}\n", self.cfg.nfsd_grace.as_secs().max(10)),
        )
        .await?;
        self.run_all(&self.opts.before_nfsd).await?;
        self.run(&self.nfsd_argv()).await?;
        if self.cfg.storage == StorageMode::Replicated {
            // See the type's doc: nothing can be reclaimed, so do not make OPENs wait.
            if let Err(e) = self.write_file(p.join("v4_end_grace"), "Y\n").await {
                tracing::warn!(error = %e, "cannot end grace early (older kernel?)");
            }
        }
        Ok(())
    }

    async fn nfsd_down(&self) -> Result<(), HostError> {
        self.run(&[s("rpc.nfsd"), s("0")]).await?;
        self.run_all(&self.opts.after_nfsd_stop).await
    }

    async fn exports_up(&self) -> Result<(), HostError> {
        for e in &self.cfg.exports {
            self.run(&self.export_argv(e)).await?;
        }
        Ok(())
    }

    async fn exports_down(&self) -> Result<(), HostError> {
        let mut first_err = None;
        for e in &self.cfg.exports {
            match self
                .run(&[s("exportfs"), s("-u"), self.export_spec(e)])
                .await
            {
                Ok(_) => {}
                // Not exported: already down.
                Err(HostError::Failed { stderr, .. }) if stderr.contains("Could not find") => {}
                Err(err) => {
                    first_err.get_or_insert(err);
                }
            }
            // Drop NLM locks held on it so the next server can grant them.
            let _ = self
                .write_file(
                    self.opts.proc_nfsd.join("unlock_filesystem"),
                    &format!("{}\n", e.path.display()),
                )
                .await;
        }
        let _ = self.run(&[s("exportfs"), s("-f")]).await;
        first_err.map_or(Ok(()), Err)
    }

    fn addr_spec(f: &nfsha_config::FloatingAddress) -> String {
        format!("{}/{}", f.address, f.prefix)
    }

    async fn address_up(&self) -> Result<(), HostError> {
        let Some(f) = &self.cfg.floating_address else {
            return Ok(());
        };
        let ip = f.address.to_string();
        let v4 = f.address.is_ipv4();
        if v4 && self.opts.duplicate_address_check {
            // arping -D exits 0 when nobody answered (address free), 1 when someone
            // did; anything else is arping failing (no such device...).
            let dad = [
                s("arping"),
                s("-D"),
                s("-q"),
                s("-c"),
                s("1"),
                s("-w"),
                s("1"),
                s("-I"),
                f.interface.clone(),
                ip.clone(),
            ];
            match self.run(&dad).await {
                Ok(_) => {}
                Err(HostError::Failed { code: Some(1), .. }) => {
                    return Err(HostError::DuplicateAddress(ip));
                }
                Err(e) => return Err(e),
            }
        }
        let mut add = vec![
            s("ip"),
            s("addr"),
            s("add"),
            Self::addr_spec(f),
            s("dev"),
            f.interface.clone(),
        ];
        if !v4 {
            add.push(s("nodad"));
        }
        match self.run(&add).await {
            Ok(_) => {}
            Err(HostError::Failed { stderr, .. }) if stderr.contains("File exists") => {}
            Err(e) => return Err(e),
        }
        if v4 {
            let garp = |count: u32| {
                vec![
                    s("arping"),
                    s("-U"),
                    s("-c"),
                    s(count),
                    s("-I"),
                    f.interface.clone(),
                    ip.clone(),
                ]
            };
            if let Err(e) = self.run(&garp(1)).await {
                // Leave nothing half-done behind: the address goes with the failure.
                let _ = self.address_down().await;
                return Err(e);
            }
            if self.opts.arp_count > 1 {
                let argv = self.full_argv(&garp(self.opts.arp_count - 1));
                let spawned = Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start background gratuitous ARP");
                }
            }
        }
        Ok(())
    }

    async fn address_down(&self) -> Result<(), HostError> {
        let Some(f) = &self.cfg.floating_address else {
            return Ok(());
        };
        let del = [
            s("ip"),
            s("addr"),
            s("del"),
            Self::addr_spec(f),
            s("dev"),
            f.interface.clone(),
        ];
        match self.run(&del).await {
            Ok(_) => Ok(()),
            // Already gone (the wording differs between kernels and iproute2 versions).
            Err(HostError::Failed { stderr, .. })
                if stderr.contains("Cannot assign requested address")
                    || stderr.contains("Address not found") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn notify(&self) -> Result<(), HostError> {
        let Some(f) = &self.cfg.floating_address else {
            return Ok(());
        };
        let statd = self.cfg.state_dir.join("statd");
        self.run(&[
            s("sm-notify"),
            s("-f"),
            s("-v"),
            f.address.to_string(),
            s("-P"),
            statd.display().to_string(),
        ])
        .await
        .map(drop)
    }
}

impl ServerHost for CommandHost {
    async fn up(&self, step: Step, _epoch: u64) -> Result<(), HostError> {
        match step {
            Step::Storage => self.storage_up().await,
            Step::Nfsd => self.nfsd_up().await,
            Step::Exports => self.exports_up().await,
            Step::FloatingAddress => self.address_up().await,
            Step::Notify => self.notify().await,
        }
    }

    async fn down(&self, step: Step) -> Result<(), HostError> {
        match step {
            Step::FloatingAddress => self.address_down().await,
            Step::Exports => self.exports_down().await,
            Step::Nfsd => self.nfsd_down().await,
            Step::Storage => self.run_all(&self.opts.storage_down).await,
            Step::Notify => Ok(()),
        }
    }

    async fn final_sync(&self) -> Result<(), HostError> {
        match &self.cfg.replication {
            Some(r) if !r.ship_command.is_empty() => self.run(&r.ship_command).await.map(drop),
            _ => Ok(()),
        }
    }

    async fn role_changed(&self, role: Role) -> Result<(), HostError> {
        // Hooks run on the host itself, not through the prefix: they are the
        // operator's, written for this machine.
        for hook in &self.cfg.hooks {
            let Some((prog, args)) = hook.split_first() else {
                continue;
            };
            let out = Command::new(prog)
                .args(args)
                .env("NFSHA_ROLE", role.name())
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|source| HostError::Spawn {
                    program: prog.clone(),
                    source,
                })?;
            if !out.status.success() {
                return Err(HostError::Failed {
                    program: prog.clone(),
                    status: out.status.to_string(),
                    code: out.status.code(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::{NoGuard, Sequencer};
    use nfsha_config::{ExportConfig, FloatingAddress, ReplicationConfig};
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn cfg(storage: StorageMode) -> ServerConfig {
        ServerConfig {
            node: "nfs-1".into(),
            cluster: "c".into(),
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_tls: None,
            etcd_auth: None,
            ttl: Duration::from_secs(10),
            loop_period: Duration::from_secs(1),
            safety_margin: Duration::from_secs(5),
            exports: vec![
                ExportConfig {
                    path: "/srv/a".into(),
                    fsid: 1,
                    clients: "*".into(),
                    options: vec!["rw".into(), "fsid=99".into(), "no_subtree_check".into()],
                },
                ExportConfig {
                    path: "/srv/b".into(),
                    fsid: 2,
                    clients: "10.0.0.0/24".into(),
                    options: vec!["ro".into()],
                },
            ],
            floating_address: Some(FloatingAddress {
                address: "10.99.0.100".parse().expect("ip"),
                prefix: 24,
                interface: "vB".into(),
            }),
            state_dir: "/var/lib/nfs".into(),
            nfsd_lease: Duration::from_secs(10),
            nfsd_grace: Duration::from_secs(15),
            scope: "airflow-nfs".into(),
            storage,
            step_timeout: Duration::from_secs(5),
            hooks: vec![],
            listen: None,
            watchdog_device: None,
            replication: Some(ReplicationConfig {
                interval: Duration::from_secs(300),
                ship_command: vec!["ship".into()],
                promote_command: vec!["promote".into(), "--newest".into()],
                max_lag: Duration::from_secs(600),
            }),
        }
    }

    /// A prefix program that logs its argv and fails when argv starts with `$0.fail`.
    fn recorder(dir: &std::path::Path) -> PathBuf {
        let p = dir.join("rec");
        std::fs::write(
            &p,
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$0.log\"\nif [ \"$1\" = tee ]; then cat >/dev/null; fi\n\
             if [ -f \"$0.fail\" ]; then f=$(cat \"$0.fail\"); case \"$*\" in \"$f\"*) echo boom >&2; exit 1;; esac; fi\nexit 0\n",
        )
        .expect("write recorder");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn log(rec: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(rec.with_extension("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn host(rec: &std::path::Path, storage: StorageMode) -> CommandHost {
        CommandHost::new(
            cfg(storage),
            CommandOptions {
                prefix: vec![rec.display().to_string()],
                before_nfsd: vec![vec!["rpc.mountd".into()]],
                // No background gratuitous ARP: it would race with the log.
                arp_count: 1,
                ..CommandOptions::default()
            },
        )
    }

    #[tokio::test]
    async fn replicated_bring_up_and_teardown_run_these_argument_vectors_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let mut seq = Sequencer::new(host(&rec, StorageMode::Replicated), Duration::from_secs(5));
        seq.bring_up(3, &NoGuard).await.expect("up");
        seq.tear_down().await.expect("down");
        let expected = [
            "promote --newest",
            "mkdir -p /var/lib/nfs/v4recovery /var/lib/nfs/statd/sm /var/lib/nfs/statd/sm.bak /var/lib/nfs/nfsdcld",
            "tee /proc/fs/nfsd/nfsv4leasetime",
            "tee /proc/fs/nfsd/nfsv4gracetime",
            "rpc.mountd",
            "rpc.nfsd -L 10 -G 15 -S airflow-nfs 8",
            "tee /proc/fs/nfsd/v4_end_grace",
            "exportfs -i -o rw,no_subtree_check,fsid=1 *:/srv/a",
            "exportfs -i -o ro,fsid=2 10.0.0.0/24:/srv/b",
            "arping -D -q -c 1 -w 1 -I vB 10.99.0.100",
            "ip addr add 10.99.0.100/24 dev vB",
            "arping -U -c 1 -I vB 10.99.0.100",
            "sm-notify -f -v 10.99.0.100 -P /var/lib/nfs/statd",
            "ip addr del 10.99.0.100/24 dev vB",
            "exportfs -u *:/srv/a",
            "tee /proc/fs/nfsd/unlock_filesystem",
            "exportfs -u 10.0.0.0/24:/srv/b",
            "tee /proc/fs/nfsd/unlock_filesystem",
            "exportfs -f",
            "rpc.nfsd 0",
        ];
        assert_eq!(log(&rec), expected);
    }

    #[tokio::test]
    async fn shared_mode_leaves_grace_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        let h = host(&rec, StorageMode::Shared);
        h.up(Step::Nfsd, 1).await.expect("nfsd");
        assert!(!log(&rec).iter().any(|l| l.contains("v4_end_grace")));
    }

    #[tokio::test]
    async fn a_failed_gratuitous_arp_removes_the_address_it_added() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        std::fs::write(rec.with_extension("fail"), "arping -U").expect("fail file");
        let h = host(&rec, StorageMode::Shared);
        let err = h
            .up(Step::FloatingAddress, 1)
            .await
            .expect_err("arping fails");
        assert!(
            matches!(&err, HostError::Failed { program, stderr, .. } if program == "arping" && stderr == "boom")
        );
        assert_eq!(
            log(&rec),
            [
                "arping -D -q -c 1 -w 1 -I vB 10.99.0.100",
                "ip addr add 10.99.0.100/24 dev vB",
                "arping -U -c 1 -I vB 10.99.0.100",
                "ip addr del 10.99.0.100/24 dev vB",
            ]
        );
    }

    #[tokio::test]
    async fn an_answer_to_the_duplicate_address_check_refuses_the_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = recorder(dir.path());
        std::fs::write(rec.with_extension("fail"), "arping -D").expect("fail file");
        let err = host(&rec, StorageMode::Shared)
            .up(Step::FloatingAddress, 1)
            .await
            .expect_err("duplicate");
        assert!(matches!(err, HostError::DuplicateAddress(ref a) if a == "10.99.0.100"));
        assert_eq!(log(&rec).len(), 1, "nothing added");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error_naming_it() {
        let h = CommandHost::new(
            cfg(StorageMode::Shared),
            CommandOptions {
                prefix: vec!["/nonexistent/nfsha-test-prefix".into()],
                ..CommandOptions::default()
            },
        );
        let err = h.down(Step::Nfsd).await.expect_err("missing");
        assert!(
            matches!(err, HostError::Spawn { ref program, .. } if program == "/nonexistent/nfsha-test-prefix")
        );
    }
}
