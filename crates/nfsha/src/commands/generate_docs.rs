//! `nfsha __generate-docs OUTDIR` (hidden): the files packages ship besides the binary.
//!
//! Role: write a man page per visible subcommand, nested ones included (clap_mangen, plus
//! FILES, EXIT STATUS, SIGNALS, ENVIRONMENT, EXAMPLES and SEE ALSO from `man_extra`),
//! `nfsha.toml(5)` from the keys the config crate knows, shell completions for bash, zsh
//! and fish (clap_complete) of the *public* command tree (hidden commands such as
//! `__worker`, `__generate-docs` and `server fence-guard` are left out), and the packaged
//! agent unit rendered by nfsha-setup's code. Failure modes: I/O errors name the file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::man_extra::{self, COMMON_ENV, DEFAULT_EXIT, DEFAULT_SIGNALS, Extra};

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

/// The command tree without hidden subcommands (and, for man pages, without the `help`
/// subcommand, whose pages would not exist). Built from the unbuilt tree, so clap adds
/// `--help`/`--version` and propagates global options itself when it builds the copy.
pub(crate) fn public_tree(cmd: &clap::Command, help_subcommand: bool) -> clap::Command {
    // clap takes names as `&'static str` (its `string` feature is off); this one-shot
    // hidden command leaks a few hundred bytes of names.
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let mut c = clap::Command::new(leak(cmd.get_name()))
        .disable_help_subcommand(!help_subcommand)
        .visible_aliases(cmd.get_visible_aliases().map(leak).collect::<Vec<_>>());
    if let Some(v) = cmd.get_version() {
        c = c.version(leak(v));
    }
    if let Some(a) = cmd.get_about() {
        c = c.about(a.clone());
    }
    if let Some(a) = cmd.get_long_about() {
        c = c.long_about(a.clone());
    }
    if cmd.is_subcommand_required_set() {
        c = c.subcommand_required(true);
    }
    for a in cmd.get_arguments() {
        c = c.arg(a.clone());
    }
    for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        c = c.subcommand(public_tree(s, help_subcommand));
    }
    c
}

/// Escape text for roff.
fn esc(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn tagged(o: &mut String, title: &str, items: &[(&str, &str)]) {
    let _ = writeln!(o, ".SH {title}");
    for (tag, text) in items {
        let _ = writeln!(o, ".TP\n\\fB{}\\fR\n{}", esc(tag), esc(text));
    }
}

/// A `name(section)` reference as roff (bold name).
fn reference(r: &str) -> String {
    match r.split_once('(') {
        Some((n, s)) => format!("\\fB{}\\fR({s}", esc(n)),
        None => esc(r),
    }
}

/// FILES … SEE ALSO of page `name`; `related` are its parent and children pages.
fn extra_sections(name: &str, related: &[String]) -> String {
    let e: Extra = man_extra::extra(name);
    let mut o = String::new();
    let files = if e.files.is_empty() {
        &[man_extra::CONFIG_FILE][..]
    } else {
        e.files
    };
    tagged(&mut o, "FILES", files);
    tagged(
        &mut o,
        "EXIT STATUS",
        if e.exit.is_empty() {
            DEFAULT_EXIT
        } else {
            e.exit
        },
    );
    tagged(
        &mut o,
        "SIGNALS",
        if e.signals.is_empty() {
            DEFAULT_SIGNALS
        } else {
            e.signals
        },
    );
    let env: Vec<(&str, &str)> = COMMON_ENV.iter().chain(e.env).copied().collect();
    tagged(&mut o, "ENVIRONMENT", &env);
    if !e.examples.is_empty() {
        o.push_str(".SH EXAMPLES\n");
        for (what, cmd) in e.examples {
            let _ = writeln!(
                o,
                ".PP\n{}\n.PP\n.RS 4\n.nf\n{}\n.fi\n.RE",
                esc(what),
                esc(cmd)
            );
        }
    }
    let mut see: Vec<String> = related.to_vec();
    see.push("nfsha.toml(5)".to_string());
    see.extend(e.see_also.iter().map(|s| s.to_string()));
    see.dedup();
    let _ = writeln!(
        o,
        ".SH \"SEE ALSO\"\n{}",
        see.iter()
            .map(|r| reference(r))
            .collect::<Vec<_>>()
            .join(", ")
    );
    o
}

/// The page name of every visible command: `nfsha`, `nfsha-server`, `nfsha-server-run`…
fn pages(cmd: &clap::Command, name: &str, parent: Option<&str>, out: &mut Vec<Page>) {
    let children: Vec<String> = cmd
        .get_subcommands()
        .map(|s| format!("{name}-{}", s.get_name()))
        .collect();
    let mut related: Vec<String> = parent.map(|p| format!("{p}(1)")).into_iter().collect();
    related.extend(children.iter().map(|c| format!("{c}(1)")));
    out.push(Page {
        name: name.to_string(),
        cmd: cmd.clone().display_name(name.to_string()),
        related,
    });
    for s in cmd.get_subcommands() {
        pages(s, &format!("{name}-{}", s.get_name()), Some(name), out);
    }
}

struct Page {
    name: String,
    cmd: clap::Command,
    related: Vec<String>,
}

fn man_page(page: &Page) -> anyhow::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(page.cmd.clone()).title(page.name.clone());
    let mut buf = Vec::new();
    let cmd = &page.cmd;
    (|| -> std::io::Result<()> {
        man.render_title(&mut buf)?;
        man.render_name_section(&mut buf)?;
        man.render_synopsis_section(&mut buf)?;
        man.render_description_section(&mut buf)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut buf)?;
        }
        if cmd.has_subcommands() {
            man.render_subcommands_section(&mut buf)?;
        }
        Ok(())
    })()
    .context("Cannot render a man page")?;
    buf.extend_from_slice(extra_sections(&page.name, &page.related).as_bytes());
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf)
            .context("Cannot render a man page")?;
    }
    Ok(buf)
}

/// `nfsha.toml(5)`: the structure and every key the config crate checks.
pub(crate) fn config_page() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut o = format!(
        ".TH nfsha.toml 5 \"\" \"nfsha {version}\" \"File Formats\"\n\
.SH NAME\nnfsha.toml \\- configuration of nfsha\n\
.SH SYNOPSIS\n/etc/nfsha/nfsha.toml\n\
.SH DESCRIPTION\n{}\n",
        esc(
            "A TOML file read by every nfsha command (another one with --config or NFSHA_CONFIG). \
nfsha config check validates it and reports every error and warning with file:line:column and a fix; \
an unknown key is an error (with a \"did you mean\"). Durations are strings such as \"500ms\", \"2s\" or \"1m\". \
The agent re-reads it on SIGHUP and keeps the old config if the new one is invalid. \
A client needs [agent] (optional), [defaults] (optional) and one [[mount]] per NFS mount; \
an NFS server node needs [server]."
        )
    );
    o.push_str(".SH STRUCTURE\n.nf\n");
    o.push_str(&esc(
        "[agent]                    # client agent (all keys optional)\n\
[agent.cluster]            # follow the server cluster's primary\n\
[defaults]                 # inherited by every [[mount]]\n\
[[mount]]                  # one per NFS mount: mountpoint, export, servers, + any [defaults] key\n\
servers = [\"a\", { host = \"b\", weight = 5 }]\n\
[server]                   # NFS server controller\n\
[server.etcd_tls] [server.etcd_auth] [server.floating_address] [server.replication]\n\
[server.commands]          # storage_up/down, state_dir_bind, before_nfsd, after_nfsd_stop\n\
[[server.export]]          # one per export",
    ));
    o.push_str("\n.fi\n");
    for (section, keys) in nfsha_config::known_sections() {
        let _ = writeln!(o, ".SH \"KEYS: {}\"", esc(section).replace('"', "\\(dq"));
        for key in keys {
            let doc = man_extra::KEY_DOCS
                .iter()
                .find(|(s, k, _)| {
                    *k == key && (*s == section || (section == "[[mount]]" && *s == "[defaults]"))
                })
                .map(|(_, _, d)| *d)
                .unwrap_or("(no description yet; see nfsha config check and the example)");
            let doc = match man_extra::key_default(section, key) {
                Some(d) => format!("{doc} Default: {d}."),
                None => doc.to_string(),
            };
            let _ = writeln!(o, ".TP\n\\fB{}\\fR\n{}", esc(key), esc(&doc));
        }
    }
    tagged(
        &mut o,
        "FILES",
        &[
            man_extra::CONFIG_FILE,
            (
                "/usr/share/doc/nfsha/nfsha.toml.example",
                "A commented example (an Airflow layout with two mounts).",
            ),
        ],
    );
    o.push_str(".SH EXAMPLES\n.nf\n");
    o.push_str(&esc(
        "[[mount]]\nmountpoint = \"/opt/airflow/dags\"\nexport = \"/srv/nfs/airflow/dags\"\nservers = [\"nfs-a.example\", \"nfs-b.example\"]\nservices = [\"airflow-scheduler.service\"]",
    ));
    o.push_str("\n.fi\n");
    let _ = writeln!(
        o,
        ".SH \"SEE ALSO\"\n{}",
        [
            "nfsha(1)",
            "nfsha-config-check(1)",
            "nfsha-agent(1)",
            "nfsha-setup(1)",
            "nfs(5)"
        ]
        .iter()
        .map(|r| reference(r))
        .collect::<Vec<_>>()
        .join(", ")
    );
    o
}

/// Run `nfsha __generate-docs`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let full = crate::Cli::command();
    let mut man_tree = public_tree(&full, false);
    man_tree.build();
    let out = &args.outdir;
    let mut list = Vec::new();
    pages(&man_tree, "nfsha", None, &mut list);
    for page in &list {
        write(&out.join(format!("man/{}.1", page.name)), &man_page(page)?)?;
    }
    write(&out.join("man/nfsha.toml.5"), config_page().as_bytes())?;
    let mut completion_tree = public_tree(&full, true);
    for (shell, file) in [
        (clap_complete::Shell::Bash, "nfsha.bash"),
        (clap_complete::Shell::Zsh, "_nfsha"),
        (clap_complete::Shell::Fish, "nfsha.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut completion_tree, "nfsha", &mut buf);
        write(&out.join("completions").join(file), &buf)?;
    }
    write(
        &out.join("systemd")
            .join(nfsha_setup::render::AGENT_UNIT_NAME),
        nfsha_setup::render::packaged_agent_unit().as_bytes(),
    )?;
    println!(
        "wrote {} man pages, 3 completion scripts and the agent unit to {}",
        list.len() + 1,
        out.display()
    );
    Ok(0)
}
