//! `nfsha setup`: move this host (or `--root DIR`) from fstab/autofs NFS mounts and a
//! health-check script to nfsha — idempotent, reversible with `--undo`.
//!
//! Role: parse flags, call nfsha-setup's plan/apply/undo, print warnings and diffs.
//! Exit status: 0 done (or nothing to change), 1 refused by validation (nothing
//! changed); other failures are errors (exit 2) naming the file involved.

use std::path::PathBuf;

use super::Global;
use nfsha_setup::{RealHost, RealRunner, SetupError, SetupOptions, render_problems};

/// Arguments of `nfsha setup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Act on another root directory (an image, a container, a test tree) instead of `/`.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print a unified diff of every file that would be created or changed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Restore exactly what a previous setup changed (from its manifest and backups). On
    /// this host (no --root) first `systemctl disable --now nfsha-agent.service`, then after
    /// the files `daemon-reload`, an autofs reload and `start remote-fs.target` as needed;
    /// files edited by hand since setup are saved as PATH.nfsha-edited.TIMESTAMP, not lost.
    #[arg(long, conflicts_with = "enable")]
    undo: bool,
    /// After writing, run `systemctl daemon-reload` and `systemctl enable --now nfsha-agent.service`.
    #[arg(long)]
    enable: bool,
    /// A systemd unit that uses the imported mounts (ordered after the agent); repeatable.
    #[arg(long = "service", value_name = "UNIT")]
    services: Vec<String>,
    /// The nfsha binary on the target system (the agent unit's ExecStart).
    #[arg(long, default_value = "/usr/bin/nfsha")]
    binary: PathBuf,
}

/// Run `nfsha setup`.
pub fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let config_path = global.config_path();
    anyhow::ensure!(
        config_path.is_absolute(),
        "The config path must be absolute on the target system: {}",
        config_path.display()
    );
    let opts = SetupOptions {
        root: args.root.clone(),
        config_path,
        binary: args.binary.clone(),
        services: args.services.clone(),
    };
    if args.undo {
        return undo(&opts, args.dry_run);
    }
    let host = RealHost {
        root: opts.root.clone(),
    };
    let plan = match nfsha_setup::plan(&opts, &host) {
        Ok(p) => p,
        Err(SetupError::Invalid(problems)) => {
            eprintln!("{}", render_problems(&problems));
            eprintln!("setup refused: nothing was changed");
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    if !plan.diagnostics.is_empty() {
        eprintln!("{}", render_problems(&plan.diagnostics));
    }
    if args.dry_run {
        print!("{}", plan.diff());
        println!(
            "dry run: {} file{} would change",
            plan.changes.len(),
            if plan.changes.len() == 1 { "" } else { "s" }
        );
        return Ok(0);
    }
    if plan.is_empty() {
        println!("nothing to change");
    } else {
        let written = nfsha_setup::apply(&opts, &plan, std::time::SystemTime::now())?;
        for p in &written {
            println!("wrote {}", p.display());
        }
        println!("undo with: nfsha setup --undo{}", root_flag(&opts));
    }
    if args.enable {
        for cmd in nfsha_setup::enable(&opts, &plan.config, &RealRunner)? {
            println!("ran: {}", cmd.join(" "));
        }
    }
    Ok(0)
}

fn root_flag(opts: &SetupOptions) -> String {
    if opts.root == std::path::Path::new("/") {
        String::new()
    } else {
        format!(" --root {}", opts.root.display())
    }
}

fn undo(opts: &SetupOptions, dry_run: bool) -> anyhow::Result<u8> {
    let (plan, manifest) = match nfsha_setup::plan_undo(opts) {
        Ok(x) => x,
        Err(SetupError::NoManifest(_)) => {
            println!("nothing to undo");
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    if !plan.diagnostics.is_empty() {
        eprintln!("{}", render_problems(&plan.diagnostics));
    }
    let live = opts.root == std::path::Path::new("/");
    let cmds = nfsha_setup::undo_commands(opts, &manifest, live);
    if dry_run {
        print!("{}", plan.diff());
        for c in cmds.before.iter().chain(&cmds.after) {
            println!("would run: {}", c.join(" "));
        }
        println!("dry run: {} file(s) would be restored", plan.changes.len());
        return Ok(0);
    }
    let mut failed = nfsha_setup::run_all(&RealRunner, &cmds.before);
    for c in &cmds.before {
        println!("ran {}", c.join(" "));
    }
    let links = nfsha_setup::apply_undo(opts, &plan, &manifest)?;
    for l in &links {
        println!("removed symlink {}", l.display());
    }
    for c in &plan.changes {
        let verb = match (&c.old, &c.new) {
            (None, Some(_)) => "saved (edited by hand)",
            (_, Some(_)) => "restored",
            (_, None) => "removed",
        };
        println!("{verb} {}", c.path.display());
    }
    failed.extend(nfsha_setup::run_all(&RealRunner, &cmds.after));
    for c in &cmds.after {
        println!("ran {}", c.join(" "));
    }
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("error: {f}");
        }
        eprintln!("undo: the files are restored; run the failed commands by hand");
        return Ok(1);
    }
    println!("undo complete");
    Ok(0)
}
