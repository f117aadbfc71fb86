//! `nfsha server`: run the NFS server controller, show the cluster, request a planned
//! switchover, promote a standby that is behind, list / export / drop quarantined
//! divergent snapshots (btrfs engine).
//!
//! Role: thin glue between the config file, etcd and `nfsha_server`. Failure modes:
//! no `[server]` section (run), etcd unreachable (every subcommand; printed once as an
//! error chain), a switchover or promotion that does not complete in time (exit
//! status 1).

use super::Global;
use anyhow::{Context, bail};
use nfsha_server::{
    ClusterStatus, CommandHost, CommandOptions, Controller, Coordinator, EtcdCoordinator,
    EtcdOptions, FakeHost, LinuxWatchdog, MemberState, Settings, SwitchoverRequest,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `nfsha server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Run the controller in the foreground until SIGTERM/SIGINT.
    Run(RunArgs),
    /// Show the cluster: leader, epoch, members and their state.
    Status(ClusterArgs),
    /// Planned switchover to another node (the current leader tears down, the target brings up).
    Switchover(SwitchoverArgs),
    /// Let a standby that is `behind` (replicated mode: its copy is older than max_lag)
    /// take over a leaderless cluster, accepting the loss of what it never received.
    Promote(PromoteArgs),
    /// btrfs engine: this node's quarantined divergent snapshots (`…@diverged-…`,
    /// writes a returning old primary made after the fork point). Never deleted
    /// automatically.
    Diverged(DivergedArgs),
    /// Internal: the dead-man switch `run` keeps beside itself while leading.
    #[command(hide = true)]
    FenceGuard(HostArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Do not keep a fence-guard process (a dead-man switch that tears down if this
    /// process is killed or frozen while serving).
    #[arg(long)]
    no_fence_guard: bool,
    /// Record host actions instead of performing them (demos, CLI tests).
    #[arg(long)]
    sim: bool,
}

/// How host actions are performed (shared by `run` and its fence guard).
#[derive(Debug, Clone, clap::Args)]
struct HostArgs {
    /// Prefix every host command with this (split on whitespace), e.g.
    /// "nsenter -t 1234 -m -u". The floating address is set through netlink in the
    /// controller's own network namespace: run the controller inside the node's netns.
    #[arg(long)]
    host_prefix: Option<String>,
    /// Override of `[server.commands] before_nfsd`: command run before rpc.nfsd (split on
    /// whitespace, bounded by step_timeout; repeatable). Given once, it replaces every
    /// configured before_nfsd command. Prefer the config: it takes argument vectors.
    #[arg(long)]
    before_nfsd: Vec<String>,
    /// Override of `[server.commands] after_nfsd_stop`: command run after `rpc.nfsd 0`
    /// (split on whitespace; repeatable; replaces the configured ones).
    #[arg(long)]
    after_nfsd_stop: Vec<String>,
    /// Override of `[server.commands] storage_up`: command run first in the storage step
    /// (split on whitespace; repeatable; replaces the configured ones).
    #[arg(long)]
    storage_up: Vec<String>,
    /// Override of `[server.commands] storage_down`: command run last when storage goes
    /// down (split on whitespace; repeatable; replaces the configured ones).
    #[arg(long)]
    storage_down: Vec<String>,
    /// Skip the duplicate-address check before adding the floating address.
    #[arg(long)]
    no_duplicate_address_check: bool,
    /// Do not pass `-S scope` to rpc.nfsd (older nfs-utils; set the scope in nfs.conf).
    #[arg(long)]
    no_scope_flag: bool,
}

impl HostArgs {
    fn options(&self) -> CommandOptions {
        let many = |v: &[String]| v.iter().map(|s| words(s)).collect();
        CommandOptions {
            prefix: self.host_prefix.as_deref().map(words).unwrap_or_default(),
            storage_up: many(&self.storage_up),
            storage_down: many(&self.storage_down),
            before_nfsd: many(&self.before_nfsd),
            after_nfsd_stop: many(&self.after_nfsd_stop),
            duplicate_address_check: !self.no_duplicate_address_check,
            scope_flag: !self.no_scope_flag,
            ..CommandOptions::default()
        }
    }

    /// The same flags, to pass to the fence guard.
    fn to_flags(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = &self.host_prefix {
            v.extend(["--host-prefix".to_owned(), p.clone()]);
        }
        for (flag, vals) in [
            ("--before-nfsd", &self.before_nfsd),
            ("--after-nfsd-stop", &self.after_nfsd_stop),
            ("--storage-up", &self.storage_up),
            ("--storage-down", &self.storage_down),
        ] {
            for x in vals {
                v.extend([flag.to_owned(), x.clone()]);
            }
        }
        if self.no_duplicate_address_check {
            v.push("--no-duplicate-address-check".into());
        }
        if self.no_scope_flag {
            v.push("--no-scope-flag".into());
        }
        v
    }
}

#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// etcd endpoint (repeatable). Default: from the config's [server] or [agent.cluster].
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    /// Cluster name. Default: from the config.
    #[arg(long)]
    cluster: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct SwitchoverArgs {
    /// The node that takes over.
    #[arg(long)]
    to: String,
    /// How long to wait for the target to lead (default: 3 × TTL + 30 s).
    #[arg(long, value_parser = humantime_duration)]
    wait: Option<Duration>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, clap::Args)]
struct PromoteArgs {
    /// The node that takes over.
    #[arg(long)]
    to: String,
    /// Required: acknowledge that writes made after its last snapshot are lost.
    #[arg(long)]
    accept_lag: bool,
    /// How long to wait for it to lead (default: 3 × TTL + 30 s); the permission expires then.
    #[arg(long, value_parser = humantime_duration)]
    wait: Option<Duration>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, clap::Args)]
struct DivergedArgs {
    #[command(subcommand)]
    op: DivergedOp,
    /// Prefix every btrfs command with this (split on whitespace), e.g.
    /// "nsenter -t 1234 -m" (as `run --host-prefix`).
    #[arg(long)]
    host_prefix: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum DivergedOp {
    /// List them, with the changed-file count the leader reported (etcd, if reachable).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a full `btrfs send` stream of one to FILE (`btrfs receive` it anywhere).
    Export {
        /// Its name (`<base>@diverged-<epoch>-<stamp>`).
        name: String,
        /// The stream file.
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Delete one, on purpose: its writes are gone afterwards.
    Drop {
        /// Its name.
        name: String,
        /// Required: acknowledge that the writes in it are deleted.
        #[arg(long)]
        yes_delete_these_writes: bool,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Run `nfsha server`.
pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("Cannot start the async runtime")?;
    match args.command {
        Sub::Run(a) => rt.block_on(run_controller(global, a)),
        Sub::Status(a) => rt.block_on(status(global, a)),
        Sub::Switchover(a) => rt.block_on(switchover(global, a)),
        Sub::Promote(a) => rt.block_on(promote(global, a)),
        Sub::Diverged(a) => rt.block_on(diverged(global, a)),
        Sub::FenceGuard(a) => rt.block_on(fence_guard(global, a)),
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

async fn run_controller(global: &Global, a: RunArgs) -> anyhow::Result<u8> {
    let path = global.config_path();
    let (config, warnings) = nfsha_config::load_with_warnings(&path)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let Some(cfg) = config.server else {
        bail!("{} has no [server] section", path.display());
    };
    let coord = Arc::new(
        EtcdCoordinator::connect(
            &EtcdOptions::from_server(&cfg),
            &cfg.cluster,
            &cfg.node,
            cfg.ttl,
        )
        .await
        .context("Cannot connect to etcd")?,
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    // Type=notify (nfsha-server.service): READY=1 once joined, STATUS= with role/epoch.
    let notifier = Arc::new(nfsha_server::Notifier::from_env());
    let stop_notifier = notifier.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: tearing down and releasing");
        if let Err(e) = stop_notifier.stopping("stopping: tearing down and releasing") {
            tracing::debug!(error = %e, "cannot notify systemd");
        }
        tx.send_replace(true);
    });
    let settings = Settings::from_server(&cfg);
    if let Err(e) = settings.check() {
        bail!("Unsafe [server] timing: {e}");
    }
    let listen = cfg.listen;
    let watchdog = cfg.watchdog_device.clone();
    let exit = if a.sim {
        let c = Controller::new(settings, coord, FakeHost::new(cfg.node.clone()), rx)
            .with_notifier(notifier);
        start(c, listen, watchdog).await?
    } else {
        let mut c = Controller::new(
            settings,
            coord,
            CommandHost::new(cfg.clone(), a.host.options()),
            rx,
        )
        .with_notifier(notifier);
        if !a.no_fence_guard {
            let exe =
                std::env::current_exe().context("Cannot find this program for the fence guard")?;
            let mut argv = vec![
                exe.display().to_string(),
                "--config".to_owned(),
                path.display().to_string(),
                "server".to_owned(),
                "fence-guard".to_owned(),
            ];
            argv.extend(a.host.to_flags());
            c = c.with_fence_guard(argv);
        }
        start(c, listen, watchdog).await?
    };
    tracing::info!(?exit, "controller stopped");
    Ok(0)
}

async fn start<C, H>(
    c: Controller<C, H>,
    listen: Option<std::net::SocketAddr>,
    watchdog: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<nfsha_server::LeadExit>>
where
    C: Coordinator + 'static,
    H: nfsha_server::ServerHost + 'static,
{
    let c = match watchdog {
        Some(p) => c.with_watchdog(Box::new(LinuxWatchdog::new(p))),
        None => c,
    };
    if let Some(addr) = listen {
        let (bound, fut) = nfsha_server::status::serve(addr, c.status())
            .await
            .with_context(|| format!("Cannot listen on {addr}"))?;
        tracing::info!(%bound, "status API listening");
        tokio::spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(error = %e, "status API stopped");
            }
        });
    }
    Ok(c.run().await)
}

/// The fence guard: read allowances on stdin, tear down when they run out.
async fn fence_guard(global: &Global, a: HostArgs) -> anyhow::Result<u8> {
    let path = global.config_path();
    let config = nfsha_config::load(&path)?;
    let Some(cfg) = config.server else {
        bail!("{} has no [server] section", path.display());
    };
    let step_timeout = cfg.step_timeout;
    let host = CommandHost::new(cfg, a.options());
    match nfsha_server::run_guard_on_stdin(host, step_timeout).await {
        nfsha_server::GuardExit::Quiet => Ok(0),
        nfsha_server::GuardExit::ToreDown { reason, clean } => {
            tracing::error!(%reason, clean, "fence guard acted");
            Ok(if clean { 0 } else { 1 })
        }
    }
}

/// Endpoints and cluster from flags, else from the config ([server], then [agent.cluster]);
/// TLS and auth from the config section used.
fn cluster_source(
    global: &Global,
    a: &ClusterArgs,
) -> anyhow::Result<(EtcdOptions, String, Duration)> {
    if !a.endpoints.is_empty()
        && let Some(c) = &a.cluster
    {
        return Ok((
            EtcdOptions::new(a.endpoints.clone()),
            c.clone(),
            Duration::from_secs(10),
        ));
    }
    let config = nfsha_config::load(&global.config_path())?;
    let (mut opts, mut cluster, ttl) = if let Some(s) = &config.server {
        (EtcdOptions::from_server(s), s.cluster.clone(), s.ttl)
    } else if let Some(c) = &config.agent.cluster {
        (
            EtcdOptions::from_cluster(c),
            c.cluster.clone(),
            Duration::from_secs(10),
        )
    } else {
        bail!(
            "No cluster given: pass --endpoint and --cluster, or configure [server] or [agent.cluster]"
        );
    };
    if !a.endpoints.is_empty() {
        opts.endpoints = a.endpoints.clone();
    }
    if let Some(c) = &a.cluster {
        cluster = c.clone();
    }
    Ok((opts, cluster, ttl))
}

async fn read_status(coord: &EtcdCoordinator, cluster: &str) -> anyhow::Result<ClusterStatus> {
    tokio::time::timeout(Duration::from_secs(5), coord.cluster_status(cluster))
        .await
        .context("etcd did not answer within 5 s")?
        .context("Cannot read the cluster from etcd")
}

async fn status(global: &Global, a: ClusterArgs) -> anyhow::Result<u8> {
    let (opts, cluster, ttl) = cluster_source(global, &a)?;
    let coord = EtcdCoordinator::connect(&opts, &cluster, "nfsha-cli", ttl)
        .await
        .context("Cannot connect to etcd")?;
    let st = read_status(&coord, &cluster).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", render_status(&st));
    }
    Ok(if st.leader.is_some() { 0 } else { 1 })
}

fn render_status(st: &ClusterStatus) -> String {
    let mut out = format!("cluster: {}\n", st.cluster);
    match &st.leader {
        Some(l) => out.push_str(&format!(
            "leader:  {} (epoch {}, address {}{})\n",
            l.node,
            l.epoch,
            l.address.as_deref().unwrap_or("-"),
            if l.serving { "" } else { ", bringing up" }
        )),
        None => out.push_str("leader:  none\n"),
    }
    if let Some(e) = st.epoch {
        out.push_str(&format!("epoch:   {e} (last published)\n"));
    }
    // What the promotion gate judges copies against (no key yet: the published epoch).
    if let Some(s) = &st.served {
        let line = match (s.epoch, &s.node) {
            (Some(e), Some(n)) => format!("{e} by {n}"),
            (Some(e), None) => format!("{e} (counted as served, no record of it)"),
            (None, _) => "none yet".to_owned(),
        };
        out.push_str(&format!("served:  {line} (last served epoch)\n"));
    }
    if let Some(s) = &st.switchover {
        out.push_str(&format!("switchover pending: {} -> {}\n", s.from, s.to));
    }
    if let Some(o) = &st.accept_lag {
        out.push_str(&format!(
            "lag accepted for: {} (promotion pending)\n",
            o.node
        ));
    }
    out.push_str(&format!(
        "{:<16} {:<10} {:<8} {:<10} {:<10} {}\n",
        "NODE", "STATE", "SERVING", "EPOCH", "LAG", "DETAIL"
    ));
    for m in &st.members {
        let lag = match (m.lag_ms, m.state) {
            (Some(ms), _) => {
                humantime::format_duration(Duration::from_millis(ms / 1000 * 1000)).to_string()
            }
            (None, MemberState::Behind) => "never".to_owned(),
            (None, _) => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<16} {:<10} {:<8} {:<10} {:<10} {}\n",
            m.node,
            m.state.name(),
            if m.serving { "yes" } else { "no" },
            m.epoch_seen,
            lag,
            m.detail.as_deref().unwrap_or("")
        ));
    }
    if !st.replicas.is_empty() {
        out.push_str("replicas (last snapshot per node):\n");
        let now = nfsha_core::event::now_ms();
        for (node, r) in &st.replicas {
            // btrfs engine: the RPO from the leader's own positions, no wall clocks.
            if let (Some(snap), Some(at)) = (&r.snapshot, r.position_ms) {
                let rpo = st
                    .position
                    .as_ref()
                    .filter(|p| p.epoch == r.epoch)
                    .map(|p| p.position_ms.saturating_sub(at));
                out.push_str(&format!(
                    "  {node:<14} {} by {} (epoch {}), RPO {}\n",
                    snap.name,
                    r.by,
                    r.epoch,
                    rpo.map_or("unknown (older epoch)".to_owned(), |ms| {
                        humantime::format_duration(Duration::from_millis(ms / 100 * 100))
                            .to_string()
                    })
                ));
                continue;
            }
            let age = Duration::from_millis(now.saturating_sub(r.shipped_at_ms) / 1000 * 1000);
            out.push_str(&format!(
                "  {node:<14} {} ago by {} (epoch {})\n",
                humantime::format_duration(age),
                r.by,
                r.epoch
            ));
        }
    }
    if !st.diverged.is_empty() {
        out.push_str(
            "diverged (quarantined writes, never deleted automatically; nfsha server diverged):\n",
        );
        for d in &st.diverged {
            out.push_str(&format!(
                "  {:<14} {} ({} files changed after {})\n",
                d.node,
                d.name,
                d.changed_files.map_or("?".to_owned(), |n| n.to_string()),
                d.fork.as_deref().unwrap_or("no common snapshot")
            ));
        }
    }
    out
}

/// `nfsha server diverged`: on this node, through the btrfs engine of its `[server]`.
async fn diverged(global: &Global, a: DivergedArgs) -> anyhow::Result<u8> {
    let config = nfsha_config::load(&global.config_path())?;
    let Some(server) = &config.server else {
        bail!("No [server] section in the config: `nfsha server diverged` runs on a server node");
    };
    let prefix: Vec<String> = a
        .host_prefix
        .as_deref()
        .map(|p| p.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let Some(engine) = nfsha_server::btrfs::Engine::from_config(server, prefix) else {
        bail!(
            "[server.replication] does not use engine = \"btrfs\": there are no quarantine snapshots"
        );
    };
    // The leader's reports (changed files), best effort.
    let records = async {
        let coord = EtcdCoordinator::connect(
            &EtcdOptions::from_server(server),
            &server.cluster,
            "nfsha-cli",
            server.ttl,
        )
        .await
        .ok()?;
        Some(read_status(&coord, &server.cluster).await.ok()?.diverged)
    };
    match a.op {
        DivergedOp::List { json } => {
            let list = engine
                .diverged()
                .await
                .context("Cannot list the snapshot directory")?;
            let reports = tokio::time::timeout(Duration::from_secs(5), records)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|d| {
                    let r = reports
                        .iter()
                        .find(|r| r.node == server.node && r.name == d.name);
                    serde_json::json!({
                        "name": d.name,
                        "uuid": d.uuid,
                        "readonly": d.readonly,
                        "fork": r.and_then(|r| r.fork.clone()),
                        "changed_files": r.and_then(|r| r.changed_files),
                        "epoch": r.map(|r| r.epoch),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no quarantine snapshots on {}", server.node);
            } else {
                println!("{:<48} {:<14} FORK", "NAME", "CHANGED FILES");
                for r in &rows {
                    println!(
                        "{:<48} {:<14} {}",
                        r["name"].as_str().unwrap_or(""),
                        r["changed_files"]
                            .as_u64()
                            .map_or("?".into(), |n| n.to_string()),
                        r["fork"].as_str().unwrap_or("-")
                    );
                }
            }
            Ok(0)
        }
        DivergedOp::Export { name, to } => {
            engine
                .diverged_export(&name, &to)
                .await
                .with_context(|| format!("Cannot export {name}"))?;
            println!(
                "wrote {} (btrfs receive -f {} DIR to look at it)",
                to.display(),
                to.display()
            );
            Ok(0)
        }
        DivergedOp::Drop {
            name,
            yes_delete_these_writes,
        } => {
            if !yes_delete_these_writes {
                bail!(
                    "Dropping {name} deletes the writes in it for good: add --yes-delete-these-writes (export it first with `nfsha server diverged export {name} --to FILE`)"
                );
            }
            engine
                .diverged_drop(&name)
                .await
                .with_context(|| format!("Cannot drop {name}"))?;
            if let Ok(coord) = EtcdCoordinator::connect(
                &EtcdOptions::from_server(server),
                &server.cluster,
                "nfsha-cli",
                server.ttl,
            )
            .await
            {
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    coord.forget_diverged(&server.node, &name),
                )
                .await;
            }
            println!("dropped {name}");
            Ok(0)
        }
    }
}

async fn switchover(global: &Global, a: SwitchoverArgs) -> anyhow::Result<u8> {
    let (opts, cluster, ttl) = cluster_source(global, &a.cluster)?;
    let coord = EtcdCoordinator::connect(&opts, &cluster, "nfsha-cli", ttl)
        .await
        .context("Cannot connect to etcd")?;
    let st = read_status(&coord, &cluster).await?;
    let Some(leader) = st.leader else {
        bail!("No leader: nothing to switch over from (the nodes elect one on their own)");
    };
    if leader.node == a.to {
        println!("{} already leads (epoch {})", a.to, leader.epoch);
        return Ok(0);
    }
    match st.members.iter().find(|m| m.node == a.to) {
        Some(m) if m.state == MemberState::Standby => {}
        Some(m) if m.state == MemberState::Behind => bail!(
            "{} is behind ({}): it would lose the writes it has not received; wait for the next snapshot",
            a.to,
            m.detail.as_deref().unwrap_or("no recent snapshot")
        ),
        Some(m) => bail!(
            "{} is {}, not standby: it cannot take over now",
            a.to,
            m.state.name()
        ),
        None => bail!("{} is not a live member of cluster {cluster}", a.to),
    }
    let wait = a.wait.unwrap_or(3 * ttl + Duration::from_secs(30));
    let req = SwitchoverRequest {
        from: leader.node.clone(),
        to: a.to.clone(),
    };
    if !coord.request_switchover(&req, wait).await? {
        bail!("Another switchover is already pending");
    }
    println!(
        "switchover {} -> {} requested (epoch {})",
        req.from, req.to, leader.epoch
    );
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(Ok(Some(l))) = tokio::time::timeout(Duration::from_secs(2), coord.leader()).await
            && l.node == a.to
            && l.epoch > leader.epoch
            && l.serving
        {
            println!("{} leads and serves now (epoch {})", l.node, l.epoch);
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{} did not take over within {wait:?}", a.to);
    Ok(1)
}

async fn promote(global: &Global, a: PromoteArgs) -> anyhow::Result<u8> {
    if !a.accept_lag {
        bail!(
            "Promoting a node that is behind loses the writes made after its last snapshot; pass --accept-lag to do it anyway"
        );
    }
    let (opts, cluster, ttl) = cluster_source(global, &a.cluster)?;
    let coord = EtcdCoordinator::connect(&opts, &cluster, "nfsha-cli", ttl)
        .await
        .context("Cannot connect to etcd")?;
    let st = read_status(&coord, &cluster).await?;
    if let Some(l) = &st.leader {
        if l.node == a.to {
            println!("{} already leads (epoch {})", a.to, l.epoch);
            return Ok(0);
        }
        bail!(
            "{} leads (epoch {}): use `nfsha server switchover --to {}` (a leader ships to its standbys)",
            l.node,
            l.epoch,
            a.to
        );
    }
    match st.members.iter().find(|m| m.node == a.to) {
        Some(m) if matches!(m.state, MemberState::Behind | MemberState::Standby) => {
            if let Some(d) = &m.detail {
                println!("{}: {}", a.to, d);
            }
        }
        Some(m) => bail!(
            "{} is {}, not a standby: it cannot take over now",
            a.to,
            m.state.name()
        ),
        None => bail!("{} is not a live member of cluster {cluster}", a.to),
    }
    let wait = a.wait.unwrap_or(3 * ttl + Duration::from_secs(30));
    if !coord.request_lag_override(&a.to, wait).await? {
        bail!("Another promotion with --accept-lag is already pending");
    }
    println!("{} may campaign although behind (for {wait:?})", a.to);
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(Ok(Some(l))) = tokio::time::timeout(Duration::from_secs(2), coord.leader()).await
        {
            if l.node == a.to {
                println!("{} leads now (epoch {})", l.node, l.epoch);
                return Ok(0);
            }
            eprintln!("{} took the lead instead (epoch {})", l.node, l.epoch);
            let _ = coord.clear_lag_override(&a.to).await;
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = coord.clear_lag_override(&a.to).await;
    eprintln!("{} did not take over within {wait:?}", a.to);
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfsha_server::{LeaderInfo, MemberInfo, ReplicaRecord};

    fn member(node: &str, state: MemberState, lag_ms: Option<u64>) -> MemberInfo {
        MemberInfo {
            node: node.into(),
            state,
            epoch_seen: 7,
            serving: state == MemberState::Primary,
            address: None,
            api: None,
            detail: None,
            lag_ms,
            updated_ms: 0,
        }
    }

    #[test]
    fn status_shows_lag_behind_members_and_replicas() {
        let mut st = ClusterStatus {
            cluster: "c".into(),
            leader: Some(LeaderInfo {
                node: "a".into(),
                address: None,
                epoch: 7,
                serving: true,
            }),
            epoch: Some(7),
            served: Some(nfsha_server::coordinator::ServedRecord::serving("a", 7, 0)),
            members: vec![
                member("a", MemberState::Primary, None),
                member("b", MemberState::Standby, Some(42_300)),
                member("c", MemberState::Behind, None),
            ],
            switchover: None,
            replicas: Default::default(),
            accept_lag: None,
            position: None,
            diverged: Vec::new(),
            promoted: Default::default(),
        };
        st.replicas.insert(
            "b".into(),
            ReplicaRecord {
                shipped_at_ms: nfsha_core::event::now_ms() - 42_000,
                epoch: 7,
                by: "a".into(),
                snapshot: None,
                position_ms: None,
                forks: Vec::new(),
            },
        );
        st.replicas.insert(
            "d".into(),
            ReplicaRecord {
                shipped_at_ms: 1,
                epoch: 7,
                by: "a".into(),
                snapshot: Some(nfsha_server::coordinator::SnapshotRef {
                    name: "data@7-x".into(),
                    identity: "u".into(),
                }),
                position_ms: Some(10_000),
                forks: Vec::new(),
            },
        );
        st.position = Some(nfsha_server::coordinator::LeaderPosition {
            node: "a".into(),
            epoch: 7,
            position_ms: 22_500,
            tail_ms: 4_000,
        });
        st.diverged.push(nfsha_server::coordinator::DivergedRecord {
            node: "c".into(),
            name: "data@diverged-7-y".into(),
            fork: Some("data@5-z".into()),
            changed_files: Some(6),
            epoch: 7,
            at_ms: 0,
        });
        let out = render_status(&st);
        assert!(out.contains("served:  7 by a (last served epoch)"), "{out}");
        assert!(
            out.contains("d              data@7-x by a (epoch 7), RPO 12s 500ms"),
            "{out}"
        );
        assert!(
            out.contains("data@diverged-7-y (6 files changed after data@5-z)"),
            "{out}"
        );
        let line = |n: &str| {
            out.lines()
                .find(|l| l.starts_with(n))
                .unwrap_or_else(|| panic!("no line for {n}:\n{out}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(line("b ")[..5], ["b", "standby", "no", "7", "42s"]);
        assert_eq!(line("c ")[..5], ["c", "behind", "no", "7", "never"]);
        assert!(out.contains("by a (epoch 7)"), "{out}");
    }
}
