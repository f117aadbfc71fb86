//! `nfsha __generate-docs OUTDIR` (hidden): the files packages ship besides the binary.
//!
//! Role: write a man page per subcommand (clap_mangen), shell completions for bash, zsh
//! and fish (clap_complete), and the agent's systemd unit rendered by the same code as
//! `nfsha setup`, so packages and setup never disagree. Failure modes: I/O errors name
//! the file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;

/// Arguments of `nfsha __generate-docs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (created): man/, completions/, systemd/.
    outdir: PathBuf,
}

fn write(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("Cannot create {}", dir.display()))?;
    }
    std::fs::write(path, data).with_context(|| format!("Cannot write {}", path.display()))
}

fn man_page(cmd: &clap::Command, path: &Path) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .context("Cannot render a man page")?;
    write(path, &buf)
}

/// Run `nfsha __generate-docs`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut cmd = crate::Cli::command();
    cmd.build();
    let out = &args.outdir;
    man_page(&cmd, &out.join("man/nfsha.1"))?;
    let mut pages = 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("nfsha-{}", sub.get_name());
        let page = sub.clone().display_name(name.clone());
        man_page(&page, &out.join(format!("man/{name}.1")))?;
        pages += 1;
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "nfsha.bash"),
        (clap_complete::Shell::Zsh, "_nfsha"),
        (clap_complete::Shell::Fish, "nfsha.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "nfsha", &mut buf);
        write(&out.join("completions").join(file), &buf)?;
    }
    let unit = nfsha_setup::render::agent_unit(
        Path::new("/usr/bin/nfsha"),
        Path::new(nfsha_config::defaults::CONFIG_PATH),
    );
    write(
        &out.join("systemd")
            .join(nfsha_setup::render::AGENT_UNIT_NAME),
        unit.as_bytes(),
    )?;
    println!(
        "wrote {pages} man pages, 3 completion scripts and the agent unit to {}",
        out.display()
    );
    Ok(0)
}
