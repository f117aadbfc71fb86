//! nfsha-setup: move a host from fstab/autofs NFS mounts to nfsha, reversibly.
//!
//! Role: `nfsha setup` in three steps. [`plan`] reads the target root (fstab, auto.master,
//! auto.master.d, the maps, an existing nfsha.toml), imports the NFS entries, checks
//! everything and computes every file change without touching anything. [`apply`] makes
//! those changes atomically with timestamped backups and a manifest; [`plan_undo`] and
//! [`apply_undo`] put back exactly what the manifest records. [`enable`] runs systemctl.
//!
//! Failure modes: any validation problem (malformed NFS line it must change, unknown
//! option, missing mount.nfs/automount, a mountpoint in use, an autofs layout it cannot
//! take over) fails [`plan`] with every problem listed, before any write. A second run
//! plans no change. I/O errors during [`apply`] name the file; files already replaced
//! stay replaced and are in the manifest, so `--undo` still restores them.

pub mod autofs;
pub mod fsio;
pub mod fstab;
pub mod host;
pub mod import;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nfsha_config::{Config, ConfigError, Diagnostic, MountConfig, MountMode, ServerRef, Severity};

pub use fsio::{MANIFEST, Manifest};
pub use host::{CommandRunner, Host, RealHost, RealRunner};

/// The fstab path on the target system.
pub const FSTAB: &str = "/etc/fstab";
/// The autofs master map on the target system.
pub const AUTO_MASTER: &str = "/etc/auto.master";

/// Files of seed 000's 30-second health check; setup warns while they are installed.
pub const OLD_HEALTH_CHECK: &[&str] = &[
    "/etc/systemd/system/nfs-health-check.timer",
    "/usr/local/bin/nfs-health-check.sh",
];

/// What `nfsha setup` acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupOptions {
    /// Target root (`/` for this host; an image or a test directory otherwise).
    pub root: PathBuf,
    /// nfsha.toml path on the target system (absolute).
    pub config_path: PathBuf,
    /// The nfsha binary on the target system (ExecStart of the agent).
    pub binary: PathBuf,
    /// Dependent units added to every imported mount's `services`.
    pub services: Vec<String>,
}

impl SetupOptions {
    /// Defaults for `root`: /etc/nfsha/nfsha.toml, /usr/bin/nfsha, no extra services.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SetupOptions {
            root: root.into(),
            config_path: PathBuf::from(nfsha_config::defaults::CONFIG_PATH),
            binary: PathBuf::from("/usr/bin/nfsha"),
            services: Vec::new(),
        }
    }
}

/// Why setup did not (fully) happen.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Validation failed; nothing was changed.
    #[error("Setup refused, nothing was changed:\n{}", render_problems(.0))]
    Invalid(Vec<Diagnostic>),
    /// The existing nfsha.toml is invalid.
    #[error("Invalid {}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// Its diagnostics.
        #[source]
        source: ConfigError,
    },
    /// No NFS entry found and no nfsha.toml present.
    #[error(
        "Nothing to import: no NFS entry in /etc/fstab or the autofs maps, and no {}",
        .0.display()
    )]
    NothingToImport(PathBuf),
    /// A file could not be read.
    #[error("Cannot read {}", path.display())]
    Read {
        /// The file (inside the root).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("Cannot write {}", path.display())]
    Write {
        /// The file (inside the root).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `--undo` without a manifest.
    #[error("Nothing to undo: no {}", .0.display())]
    NoManifest(PathBuf),
    /// The manifest cannot be read.
    #[error("Bad setup manifest: {0}")]
    Manifest(String),
    /// A systemctl command failed.
    #[error("{0}")]
    Command(String),
}

/// Render problems one per line; unlocated ones (line 0) as `file: severity: message`.
pub fn render_problems(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| {
            if d.line == 0 {
                let mut s = format!("{}: {}: {}", d.file.display(), d.severity, d.message);
                if let Some(h) = &d.help {
                    s.push_str(&format!("\n  help: {h}"));
                }
                s
            } else {
                d.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One file change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The file (absolute on the target system).
    pub path: PathBuf,
    /// Current content (`None`: absent).
    pub old: Option<String>,
    /// Wanted content (`None`: remove).
    pub new: Option<String>,
    /// Mode of a new file.
    pub mode: u32,
    /// Only marker-commented lines differ (fstab, autofs maps).
    pub marker_edit: bool,
}

/// Everything setup (or undo) would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// File changes, config first.
    pub changes: Vec<FileChange>,
    /// Warnings found while importing and checking.
    pub diagnostics: Vec<Diagnostic>,
    /// The config in effect (imported or read).
    pub config: Config,
    /// Whether nfsha.toml is being imported (it did not exist).
    pub imported: bool,
}

impl Plan {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Unified diffs of every change (`/dev/null` for created or removed files).
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let p = c.path.display().to_string();
            let (a, b) = (
                if c.old.is_some() {
                    p.clone()
                } else {
                    "/dev/null".into()
                },
                if c.new.is_some() {
                    p.clone()
                } else {
                    "/dev/null".into()
                },
            );
            let old = c.old.as_deref().unwrap_or("");
            let new = c.new.as_deref().unwrap_or("");
            let d = similar::TextDiff::from_lines(old, new);
            out.push_str(
                &d.unified_diff()
                    .context_radius(3)
                    .header(&a, &b)
                    .to_string(),
            );
        }
        out
    }
}

fn read_opt(root: &Path, path: &Path) -> Result<Option<String>, SetupError> {
    let p = resolve_in_root(root, path);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SetupError::Read { path: p, source }),
    }
}

/// Collects diagnostics.
#[derive(Default)]
struct Problems(Vec<Diagnostic>);

impl Problems {
    fn add(
        &mut self,
        severity: Severity,
        file: &Path,
        line: usize,
        column: usize,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) {
        self.0.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            severity,
            message: message.into(),
            help: help.into(),
        });
    }
    fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
}

/// An NFS entry found in an autofs map.
struct AutofsNfs {
    master: usize,
    entry: autofs::MapEntry,
    mountpoint: PathBuf,
    parsed: Result<(Vec<autofs::Replica>, String), String>,
    options: Vec<String>,
}

/// A master line with its map's entries.
struct AutofsMap {
    master: autofs::MasterEntry,
    entries: Vec<autofs::MapEntry>,
}

fn is_program_map(root: &Path, map: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(resolve_in_root(root, map))
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Read the autofs layout of `root`: master entries with their file maps, and the
/// `+dir:` includes. nfsha's own drop-in is skipped.
fn read_autofs(
    root: &Path,
    problems: &mut Problems,
    texts: &mut BTreeMap<PathBuf, String>,
) -> Result<(Vec<AutofsMap>, Vec<PathBuf>), SetupError> {
    let master_path = PathBuf::from(AUTO_MASTER);
    let Some(master_text) = read_opt(root, &master_path)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut masters = autofs::parse_master(&master_text, &master_path);
    let dirs = autofs::master_dirs(&master_text);
    texts.insert(master_path, master_text);
    for dir in &dirs {
        let host_dir = fsio::in_root(root, dir);
        let Ok(rd) = std::fs::read_dir(&host_dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| dir.join(e.file_name()))
            .filter(|p| p.extension().is_some_and(|e| e == "autofs"))
            .filter(|p| p != Path::new(render::AUTOFS_DROPIN))
            .collect();
        files.sort();
        for f in files {
            if let Some(t) = read_opt(root, &f)? {
                masters.extend(autofs::parse_master(&t, &f));
                texts.insert(f, t);
            }
        }
    }
    let mut maps = Vec::new();
    for m in masters {
        let Some(map) = m.map.clone() else {
            problems.add(
                Severity::Warning,
                &m.file,
                m.line,
                1,
                format!("map `{}` is not a file map: left to autofs", m.map_spec),
                None,
            );
            continue;
        };
        if map == Path::new(render::AUTOFS_MAP) {
            continue;
        }
        if is_program_map(root, &map) {
            problems.add(
                Severity::Warning,
                &m.file,
                m.line,
                1,
                format!("{} is a program map: left to autofs", map.display()),
                None,
            );
            continue;
        }
        let entries = match texts.get(&map) {
            Some(t) => autofs::parse_map(t, &map),
            None => match read_opt(root, &map)? {
                Some(t) => {
                    let e = autofs::parse_map(&t, &map);
                    texts.insert(map.clone(), t);
                    e
                }
                None => {
                    problems.add(
                        Severity::Warning,
                        &m.file,
                        m.line,
                        1,
                        format!("map {} does not exist", map.display()),
                        None,
                    );
                    continue;
                }
            },
        };
        maps.push(AutofsMap { master: m, entries });
    }
    Ok((maps, dirs))
}

fn autofs_nfs_entries(maps: &[AutofsMap]) -> Vec<AutofsNfs> {
    let mut out = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        for e in &m.entries {
            let options: Vec<String> = m.master.options.iter().chain(&e.options).cloned().collect();
            if !matches!(autofs::fstype(&options), "nfs" | "nfs4") {
                continue;
            }
            let mountpoint = if m.master.mountpoint == "/-" {
                PathBuf::from(&e.key)
            } else {
                Path::new(&m.master.mountpoint).join(&e.key)
            };
            let parsed = if e.key.contains('*') || e.locations.iter().any(|l| l.contains('&')) {
                Err("wildcard entries are not supported".to_string())
            } else if !mountpoint.is_absolute() {
                Err(format!(
                    "direct map key `{}` is not an absolute path",
                    e.key
                ))
            } else {
                autofs::replicas(&e.locations)
            };
            out.push(AutofsNfs {
                master: i,
                entry: e.clone(),
                mountpoint,
                parsed,
                options,
            });
        }
    }
    out
}

fn mount_from(
    mountpoint: PathBuf,
    export: String,
    servers: Vec<ServerRef>,
    imported: &import::Imported,
    mode: MountMode,
    services: &[String],
) -> MountConfig {
    let mut m = MountConfig::new(mountpoint, export, servers);
    m.nfs_version = imported.nfs_version;
    m.options = imported.options.clone();
    m.mode = mode;
    m.services = services.to_vec();
    m
}

/// Report the advice of an import; with `options` (the field as written, starting at
/// `column`), each problem points at its own option.
fn advise(
    problems: &mut Problems,
    file: &Path,
    line: usize,
    column: usize,
    options: Option<&[String]>,
    i: &import::Imported,
) {
    for (sev, opt, msg, help) in &i.advice {
        let col = options
            .and_then(|all| {
                let idx = all.iter().position(|o| o == opt)?;
                Some(
                    column
                        + all[..idx]
                            .iter()
                            .map(|o| o.chars().count() + 1)
                            .sum::<usize>(),
                )
            })
            .unwrap_or(column);
        problems.add(*sev, file, line, col, msg.clone(), Some(help.clone()));
    }
}

/// Import the NFS entries into a config.
fn import_config(
    opts: &SetupOptions,
    host: &dyn Host,
    fstab_nfs: &[fstab::NfsEntry],
    fstab_bad: &[fstab::LineError],
    autofs_nfs: &[AutofsNfs],
    problems: &mut Problems,
) -> Result<(Config, Vec<String>), SetupError> {
    let fstab_path = Path::new(FSTAB);
    let mut mounts: Vec<MountConfig> = Vec::new();
    let mut sources = Vec::new();
    let mut seen: BTreeMap<PathBuf, (String, MountConfig)> = BTreeMap::new();
    for b in fstab_bad {
        problems.add(
            Severity::Error,
            fstab_path,
            b.line,
            1,
            format!("malformed NFS entry: {}", b.message),
            Some("fix the line, or comment it out if it is not used".to_string()),
        );
    }
    let mut push = |m: MountConfig,
                    src: String,
                    file: &Path,
                    line: usize,
                    problems: &mut Problems| {
        if let Some((first, same)) = seen.get(&m.mountpoint) {
            if *same == m {
                // The seed's deploy script appends its lines again on every run:
                // the same mount twice is one mount (both lines are commented out).
                problems.add(
                        Severity::Warning,
                        file,
                        line,
                        1,
                        format!(
                            "{} is mounted the same way by {first}: the duplicate is merged into one mount",
                            m.mountpoint.display()
                        ),
                        Some("nothing to do; setup comments out both lines".to_string()),
                    );
                return;
            }
            problems.add(
                Severity::Error,
                file,
                line,
                1,
                format!("{} is also mounted by {first}", m.mountpoint.display()),
                Some("keep one of the two entries".to_string()),
            );
            return;
        }
        seen.insert(m.mountpoint.clone(), (src.clone(), m.clone()));
        sources.push(src);
        mounts.push(m);
    };
    for e in fstab_nfs {
        if e.options.iter().any(|o| o == "noauto") {
            problems.add(
                Severity::Warning,
                fstab_path,
                e.line,
                e.options_column,
                format!(
                    "{} is `noauto`: not imported, left in fstab",
                    e.mountpoint.display()
                ),
                None,
            );
            continue;
        }
        let mut i = import::import_options(&e.fstype, &e.options);
        if e.fstype == "nfs" && !i.version_given {
            import::negotiate(
                &mut i,
                &e.fstype,
                &[(e.host.clone(), host.nfs_version(&e.host))],
            );
        }
        advise(
            problems,
            fstab_path,
            e.line,
            e.options_column,
            Some(&e.options),
            &i,
        );
        let m = mount_from(
            e.mountpoint.clone(),
            e.export.clone(),
            vec![ServerRef::new(e.host.clone())],
            &i,
            MountMode::Direct,
            &opts.services,
        );
        push(
            m,
            format!("{FSTAB} line {}", e.line),
            fstab_path,
            e.line,
            problems,
        );
    }
    for a in autofs_nfs {
        let file = &a.entry.file;
        match &a.parsed {
            Err(why) => problems.add(
                Severity::Warning,
                file,
                a.entry.lines.0,
                1,
                format!("{}: {why}; left to autofs", a.mountpoint.display()),
                None,
            ),
            Ok((replicas, export)) => {
                let fstype = autofs::fstype(&a.options);
                let mut i = import::import_options(fstype, &a.options);
                if fstype == "nfs" && !i.version_given {
                    let answers: Vec<(String, Option<u32>)> = replicas
                        .iter()
                        .map(|r| (r.host.clone(), host.nfs_version(&r.host)))
                        .collect();
                    import::negotiate(&mut i, fstype, &answers);
                }
                advise(problems, file, a.entry.lines.0, 1, None, &i);
                let mut servers: Vec<ServerRef> = Vec::new();
                for r in replicas {
                    let own = (r.export != *export).then(|| r.export.clone());
                    if servers.iter().any(|s| s.host == r.host && s.export == own) {
                        problems.add(
                            Severity::Warning,
                            file,
                            a.entry.lines.0,
                            1,
                            format!(
                                "replica `{}:{}` is listed twice: imported once",
                                r.host, r.export
                            ),
                            None,
                        );
                        continue;
                    }
                    servers.push(ServerRef {
                        host: r.host.clone(),
                        export: own,
                        weight: r.weight,
                    });
                }
                // Replica volumes (seed 001): autofs would mount the first replica
                // that answers, and so the stale source again after it is back. nfsha
                // mounts them itself and keeps the active replica.
                let distinct = servers.iter().any(|s| s.export.is_some());
                let mode = if distinct {
                    problems.add(
                        Severity::Warning,
                        file,
                        a.entry.lines.0,
                        1,
                        format!(
                            "{}: replicas export different paths: imported with mode = \"direct\" (autofs would mount the stale source again once it is back)",
                            a.mountpoint.display()
                        ),
                        Some("nfsha keeps the replica in use until an operator moves it back".to_string()),
                    );
                    MountMode::Direct
                } else {
                    MountMode::Autofs
                };
                let m = mount_from(
                    a.mountpoint.clone(),
                    export.clone(),
                    servers,
                    &i,
                    mode,
                    &opts.services,
                );
                push(
                    m,
                    format!("{} line {}", file.display(), a.entry.lines.0),
                    file,
                    a.entry.lines.0,
                    problems,
                );
            }
        }
    }
    if mounts.is_empty() && !problems.has_errors() {
        return Err(SetupError::NothingToImport(opts.config_path.clone()));
    }
    let config = Config {
        source: Some(opts.config_path.clone()),
        agent: nfsha_config::AgentSettings::default(),
        mounts,
        server: None,
    };
    // The imported config must pass the same validation as a hand-written one.
    if let Err(e) = nfsha_config::parse_str(&nfsha_config::to_toml(&config), None) {
        for d in e.errors() {
            problems.add(
                Severity::Error,
                &opts.config_path,
                0,
                0,
                format!("the imported config would be invalid: {}", d.message),
                d.help.clone(),
            );
        }
    }
    Ok((config, sources))
}

/// Compute what setup would do on `opts.root`, checking everything first.
pub fn plan(opts: &SetupOptions, host: &dyn Host) -> Result<Plan, SetupError> {
    let root = &opts.root;
    let mut problems = Problems::default();
    let mut texts: BTreeMap<PathBuf, String> = BTreeMap::new();

    // fstab
    let fstab_text = read_opt(root, Path::new(FSTAB))?;
    let mut fstab_nfs = Vec::new();
    let mut fstab_bad = Vec::new();
    if let Some(t) = &fstab_text {
        for l in fstab::lines(t) {
            match fstab::classify(&l) {
                fstab::Kind::Nfs(e) => fstab_nfs.push(e),
                fstab::Kind::BadNfs(e) => fstab_bad.push(e),
                fstab::Kind::Other => {}
            }
        }
    }

    // autofs
    let (maps, master_dirs) = read_autofs(root, &mut problems, &mut texts)?;
    let autofs_nfs = autofs_nfs_entries(&maps);

    // config: existing, or imported
    let (config, imported, sources) = match read_opt(root, &opts.config_path)? {
        Some(text) => {
            let (c, warnings) =
                nfsha_config::parse_str_with_warnings(&text, Some(&opts.config_path)).map_err(
                    |source| SetupError::Config {
                        path: opts.config_path.clone(),
                        source,
                    },
                )?;
            problems.0.extend(warnings);
            for b in &fstab_bad {
                problems.add(
                    Severity::Warning,
                    Path::new(FSTAB),
                    b.line,
                    1,
                    format!("malformed NFS entry left alone: {}", b.message),
                    None,
                );
            }
            (c, false, Vec::new())
        }
        None => {
            let (c, s) = import_config(
                opts,
                host,
                &fstab_nfs,
                &fstab_bad,
                &autofs_nfs,
                &mut problems,
            )?;
            (c, true, s)
        }
    };
    let managed: BTreeSet<&Path> = config
        .mounts
        .iter()
        .map(|m| m.mountpoint.as_path())
        .collect();

    // Lines to comment out.
    let mut to_comment: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    let mut taken_over: Vec<PathBuf> = Vec::new();
    for e in &fstab_nfs {
        if managed.contains(e.mountpoint.as_path()) {
            to_comment
                .entry(PathBuf::from(FSTAB))
                .or_default()
                .push(e.line);
            taken_over.push(e.mountpoint.clone());
        }
    }
    for (i, m) in maps.iter().enumerate() {
        let ours: Vec<&AutofsNfs> = autofs_nfs
            .iter()
            .filter(|a| a.master == i && managed.contains(a.mountpoint.as_path()))
            .collect();
        if ours.is_empty() {
            continue;
        }
        for a in &ours {
            let lines = to_comment.entry(a.entry.file.clone()).or_default();
            lines.extend(a.entry.lines.0..=a.entry.lines.1);
            taken_over.push(a.mountpoint.clone());
        }
        if m.master.mountpoint != "/-" {
            let others: Vec<&str> = m
                .entries
                .iter()
                .filter(|e| !ours.iter().any(|a| a.entry.lines == e.lines))
                .map(|e| e.key.as_str())
                .collect();
            if others.is_empty() {
                to_comment
                    .entry(m.master.file.clone())
                    .or_default()
                    .push(m.master.line);
                // The whole indirect mount goes away: nothing may be using it either.
                taken_over.push(PathBuf::from(&m.master.mountpoint));
            } else {
                problems.add(
                    Severity::Error,
                    &m.master.file,
                    m.master.line,
                    1,
                    format!(
                        "{} is an autofs mount that also serves {}: nfsha cannot take over only part of it",
                        m.master.mountpoint,
                        others.join(", ")
                    ),
                    Some(format!(
                        "move those keys to another map, or list them in {} too",
                        opts.config_path.display()
                    )),
                );
            }
        }
    }

    // Checks on the host.
    taken_over.sort();
    taken_over.dedup();
    for mp in &taken_over {
        let users = host.users_of(mp);
        if !users.is_empty() {
            problems.add(
                Severity::Error,
                mp,
                0,
                0,
                format!("in use by {}", users.join(", ")),
                Some(
                    "stop these processes (e.g. the Airflow services) and run setup again"
                        .to_string(),
                ),
            );
        }
    }
    if !config.mounts.is_empty() && !host.has_tool("mount.nfs") {
        problems.add(
            Severity::Error,
            Path::new("/sbin/mount.nfs"),
            0,
            0,
            "mount.nfs is not installed",
            Some("install nfs-common (Debian, Ubuntu) or nfs-utils (RHEL, Rocky)".to_string()),
        );
    }
    let any_autofs = config.mounts.iter().any(|m| m.mode == MountMode::Autofs);
    if any_autofs {
        if !host.has_tool("automount") {
            problems.add(
                Severity::Error,
                Path::new("/usr/sbin/automount"),
                0,
                0,
                "automount is not installed, and mounts use mode = \"autofs\"",
                Some("install autofs".to_string()),
            );
        }
        if !master_dirs
            .iter()
            .any(|d| d == Path::new(render::AUTOFS_MASTER_D))
        {
            problems.add(
                Severity::Error,
                Path::new(AUTO_MASTER),
                0,
                0,
                "auto.master does not include /etc/auto.master.d, where nfsha puts its autofs drop-in",
                Some("add the line `+dir:/etc/auto.master.d` to /etc/auto.master (setup never edits its entries)".to_string()),
            );
        }
    }
    for old in OLD_HEALTH_CHECK {
        if fsio::in_root(root, Path::new(old)).exists() {
            problems.add(
                Severity::Warning,
                Path::new(old),
                0,
                0,
                "the old NFS health check is still installed: its `umount -a -t nfs,nfs4` fights nfsha-agent",
                Some("systemctl disable --now nfs-health-check.timer, then remove its files (see MIGRATING.md)".to_string()),
            );
        }
    }
    if problems.has_errors() {
        let mut d = problems.0;
        d.sort_by_key(|d| (d.severity, d.file.clone(), d.line, d.column));
        return Err(SetupError::Invalid(d));
    }

    // Desired files.
    let mut desired: Vec<(PathBuf, String, bool)> = Vec::new();
    if imported {
        desired.push((
            opts.config_path.clone(),
            render::config_file(&config, &sources),
            false,
        ));
    }
    // A packaged unit is never shadowed by a copy in /etc: what setup must change goes
    // into a drop-in (and a copy an earlier run wrote before the package was installed is
    // removed below, through the manifest).
    let packaged_unit = render::PACKAGED_UNITS
        .iter()
        .any(|u| fsio::in_root(root, Path::new(u)).exists());
    if !packaged_unit {
        desired.push((
            PathBuf::from(render::AGENT_UNIT),
            render::agent_unit(&opts.binary, &opts.config_path),
            false,
        ));
    } else if let Some(d) = render::agent_dropin(&opts.binary, &opts.config_path) {
        desired.push((PathBuf::from(render::AGENT_DROPIN), d, false));
    }
    let mut services: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
    for m in &config.mounts {
        for s in &m.services {
            services.entry(s.as_str()).or_default().push(&m.mountpoint);
        }
    }
    for (s, mps) in &services {
        desired.push((
            render::dropin_path(s),
            render::service_dropin(s, mps),
            false,
        ));
    }
    if any_autofs {
        desired.push((
            PathBuf::from(render::AUTOFS_DROPIN),
            render::autofs_dropin(),
            false,
        ));
        desired.push((
            PathBuf::from(render::AUTOFS_MAP),
            render::autofs_map(&config, &opts.config_path),
            false,
        ));
    }
    if let (Some(lines), Some(t)) = (to_comment.get(Path::new(FSTAB)), &fstab_text) {
        desired.push((PathBuf::from(FSTAB), fstab::comment_out(t, lines), true));
    }
    for (file, lines) in &to_comment {
        if file == Path::new(FSTAB) {
            continue;
        }
        if let Some(t) = texts.get(file) {
            desired.push((file.clone(), fstab::comment_out(t, lines), true));
        }
    }
    let mut changes = Vec::new();
    // Files an earlier run generated that the config no longer needs (a service or the
    // last autofs mount removed from nfsha.toml) are removed.
    if let Some(manifest) = Manifest::load(root).map_err(SetupError::Manifest)? {
        for r in manifest.files.iter().filter(|r| r.backup.is_none()) {
            let generated = r.path.to_string_lossy().ends_with(".d/50-nfsha.conf")
                || r.path == Path::new(render::AGENT_UNIT)
                || r.path == Path::new(render::AUTOFS_DROPIN)
                || r.path == Path::new(render::AUTOFS_MAP);
            if generated
                && !desired.iter().any(|(p, _, _)| *p == r.path)
                && let Some(old) = read_opt(root, &r.path)?
            {
                changes.push(FileChange {
                    path: r.path.clone(),
                    old: Some(old),
                    new: None,
                    mode: 0o644,
                    marker_edit: false,
                });
            }
        }
    }
    for (path, content, marker_edit) in desired {
        let old = match (&path, &fstab_text) {
            (p, Some(t)) if p == Path::new(FSTAB) => Some(t.clone()),
            (p, _) => match texts.get(p) {
                Some(t) => Some(t.clone()),
                None => read_opt(root, p)?,
            },
        };
        if old.as_deref() != Some(content.as_str()) {
            changes.push(FileChange {
                path,
                old,
                new: Some(content),
                mode: 0o644,
                marker_edit,
            });
        }
    }
    let mut diagnostics = problems.0;
    diagnostics.sort_by_key(|d| (d.file.clone(), d.line, d.column));
    Ok(Plan {
        changes,
        diagnostics,
        config,
        imported,
    })
}

fn target_path(root: &Path, host_path: &Path) -> PathBuf {
    Path::new("/").join(host_path.strip_prefix(root).unwrap_or(host_path))
}

/// `path` inside `root`, following symlinks (an absolute link target is taken inside
/// `root` too), so that replacing a symlinked file (e.g. /etc/fstab in some images)
/// replaces its target and keeps the link.
fn resolve_in_root(root: &Path, path: &Path) -> PathBuf {
    let mut p = fsio::in_root(root, path);
    for _ in 0..16 {
        let Ok(target) = std::fs::read_link(&p) else {
            break;
        };
        p = if target.is_absolute() {
            fsio::in_root(root, &target)
        } else {
            p.parent().map_or(target.clone(), |d| d.join(&target))
        };
    }
    p
}

fn write(root: &Path, path: &Path, data: &str, mode: u32) -> Result<Vec<PathBuf>, SetupError> {
    let p = resolve_in_root(root, path);
    fsio::write_atomic(&p, data.as_bytes(), mode)
        .map(|dirs| dirs.iter().map(|d| target_path(root, d)).collect())
        .map_err(|source| SetupError::Write { path: p, source })
}

fn save_manifest(root: &Path, m: &Manifest) -> Result<(), SetupError> {
    let text = serde_json::to_string_pretty(m).map_err(|e| SetupError::Manifest(e.to_string()))?;
    write(root, Path::new(MANIFEST), &(text + "\n"), 0o600).map(|_| ())
}

/// Make the changes of `plan`: back up originals under
/// `/var/lib/nfsha/setup/backups/<UTC timestamp>/`, record them in the manifest, then
/// replace each file atomically. Returns the files written (or removed).
pub fn apply(
    opts: &SetupOptions,
    plan: &Plan,
    now: std::time::SystemTime,
) -> Result<Vec<PathBuf>, SetupError> {
    let root = &opts.root;
    if plan.changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut manifest = Manifest::load(root)
        .map_err(SetupError::Manifest)?
        .unwrap_or(Manifest {
            version: 1,
            ..Manifest::default()
        });
    let stamp = fsio::timestamp(now);
    for c in &plan.changes {
        let new = c.new.clone().unwrap_or_default();
        if let Some(r) = manifest.get_mut(&c.path) {
            r.written = new;
            continue;
        }
        let backup = match &c.old {
            Some(old) => {
                let b = Path::new(fsio::BACKUP_DIR)
                    .join(&stamp)
                    .join(c.path.strip_prefix("/").unwrap_or(&c.path));
                write(root, &b, old, 0o600)?;
                Some(b)
            }
            None => None,
        };
        manifest.files.push(fsio::Record {
            path: c.path.clone(),
            backup,
            marker_edit: c.marker_edit,
            written: new,
        });
    }
    save_manifest(root, &manifest)?;
    let mut written = Vec::new();
    for c in &plan.changes {
        match &c.new {
            Some(new) => {
                let dirs = write(root, &c.path, new, c.mode)?;
                manifest.created_dirs.extend(dirs);
            }
            None => {
                let p = fsio::in_root(root, &c.path);
                fsio::remove_file(&p).map_err(|source| SetupError::Write { path: p, source })?;
            }
        }
        written.push(c.path.clone());
    }
    save_manifest(root, &manifest)?;
    Ok(written)
}

/// What `--undo` would do: remove what setup created, restore what it changed (exact
/// original bytes when the file is still as setup left it; otherwise, for fstab and
/// autofs maps, only the marker-commented lines are restored, keeping later edits).
///
/// A file changed by hand since setup wrote it (a hand-edited nfsha.toml, a drop-in) is
/// never deleted or overwritten silently: the plan first saves it as
/// `PATH.nfsha-edited.TIMESTAMP` (mode 0600) and says so in a warning.
pub fn plan_undo(opts: &SetupOptions) -> Result<(Plan, Manifest), SetupError> {
    plan_undo_at(opts, std::time::SystemTime::now())
}

/// [`plan_undo`] with the time that names the copies of hand-edited files.
pub fn plan_undo_at(
    opts: &SetupOptions,
    now: std::time::SystemTime,
) -> Result<(Plan, Manifest), SetupError> {
    let root = &opts.root;
    let manifest = Manifest::load(root)
        .map_err(SetupError::Manifest)?
        .ok_or_else(|| SetupError::NoManifest(PathBuf::from(MANIFEST)))?;
    let mut changes = Vec::new();
    let mut diagnostics = Vec::new();
    for r in manifest.files.iter().rev() {
        let current = read_opt(root, &r.path)?;
        let wanted = match &r.backup {
            None => None,
            Some(b) => {
                let original = read_opt(root, b)?.ok_or_else(|| SetupError::Read {
                    path: fsio::in_root(root, b),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
                match &current {
                    Some(cur) if *cur != r.written && r.marker_edit => {
                        diagnostics.push(Diagnostic {
                            file: r.path.clone(),
                            line: 0,
                            column: 0,
                            severity: Severity::Warning,
                            message: "changed since setup: only the lines nfsha commented out are restored".into(),
                            help: Some(format!("the original is kept in {}", b.display())),
                        });
                        Some(fstab::uncomment(cur))
                    }
                    _ => Some(original),
                }
            }
        };
        if let Some(cur) = &current
            && *cur != r.written
            && !r.marker_edit
            && wanted.as_ref() != Some(cur)
        {
            // Hand-edited since setup: keep a copy before removing or restoring it.
            let mut name = r.path.as_os_str().to_owned();
            name.push(format!(".nfsha-edited.{}", fsio::timestamp(now)));
            let copy = PathBuf::from(name);
            diagnostics.push(Diagnostic {
                file: r.path.clone(),
                line: 0,
                column: 0,
                severity: Severity::Warning,
                message: format!(
                    "edited by hand since setup wrote it: saved as {} before it is {}",
                    copy.display(),
                    if wanted.is_some() {
                        "restored"
                    } else {
                        "removed"
                    }
                ),
                help: Some(format!(
                    "compare with `diff {} {}`; nothing else is kept of it",
                    copy.display(),
                    r.path.display()
                )),
            });
            changes.push(FileChange {
                path: copy,
                old: None,
                new: Some(cur.clone()),
                mode: 0o600,
                marker_edit: false,
            });
        }
        if wanted != current {
            changes.push(FileChange {
                path: r.path.clone(),
                old: current,
                new: wanted,
                mode: 0o644,
                marker_edit: r.marker_edit,
            });
        }
    }
    Ok((
        Plan {
            changes,
            diagnostics,
            config: Config::empty(),
            imported: false,
        },
        manifest,
    ))
}

/// Carry out an undo plan, remove the agent unit's `.wants` symlinks left in
/// `/etc/systemd/system/*.wants/` (`--enable`'s; on a live host `systemctl disable` has
/// removed them already), the directories setup created (when empty) and the manifest.
/// Backups are kept. Returns the symlinks removed (as paths on the target system).
pub fn apply_undo(
    opts: &SetupOptions,
    plan: &Plan,
    manifest: &Manifest,
) -> Result<Vec<PathBuf>, SetupError> {
    let root = &opts.root;
    for c in &plan.changes {
        match &c.new {
            Some(new) => {
                write(root, &c.path, new, c.mode)?;
            }
            None => {
                let p = fsio::in_root(root, &c.path);
                fsio::remove_file(&p).map_err(|source| SetupError::Write { path: p, source })?;
            }
        }
    }
    let mut links = Vec::new();
    let units = Path::new("/etc/systemd/system");
    if let Ok(dirs) = std::fs::read_dir(fsio::in_root(root, units)) {
        for d in dirs.flatten() {
            let name = d.file_name();
            if !name.to_string_lossy().ends_with(".wants") {
                continue;
            }
            let link = d.path().join(render::AGENT_UNIT_NAME);
            if link
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                fsio::remove_file(&link).map_err(|source| SetupError::Write {
                    path: link.clone(),
                    source,
                })?;
                links.push(units.join(&name).join(render::AGENT_UNIT_NAME));
            }
        }
    }
    links.sort();
    for d in manifest.created_dirs.iter().rev() {
        let _ = std::fs::remove_dir(fsio::in_root(root, d));
    }
    let m = fsio::in_root(root, Path::new(MANIFEST));
    fsio::remove_file(&m).map_err(|source| SetupError::Write { path: m, source })?;
    Ok(links)
}

/// The commands `--undo` runs around its file changes on a live host (`live`; the CLI
/// passes `root == /`): `before` stops the agent and removes its `.wants` symlinks
/// (`systemctl disable --now`); `after` reloads systemd (units and drop-ins are gone),
/// reloads autofs when an autofs map or auto.master was restored, and starts
/// `remote-fs.target` when fstab was restored, so the restored fstab mounts are mounted
/// again by systemd (mounts the agent made stay where they are, now fstab's own). On
/// an image (`live` false) no command: [`apply_undo`] removes the symlinks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UndoCommands {
    /// Before the files change.
    pub before: Vec<Vec<String>>,
    /// After the files changed.
    pub after: Vec<Vec<String>>,
}

/// See [`UndoCommands`].
pub fn undo_commands(opts: &SetupOptions, manifest: &Manifest, live: bool) -> UndoCommands {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if !live {
        // An image: nothing runs; [`apply_undo`] removes the `.wants` symlinks itself.
        let _ = opts;
        return UndoCommands::default();
    }
    let touched = |f: &dyn Fn(&Path) -> bool| manifest.files.iter().any(|r| f(&r.path));
    let mut after = vec![v(&["systemctl", "daemon-reload"])];
    if touched(&|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("auto."))
            || p.starts_with("/etc/auto.master.d")
    }) {
        after.push(v(&["systemctl", "reload-or-restart", "autofs.service"]));
    }
    if touched(&|p| p == Path::new(FSTAB)) {
        after.push(v(&["systemctl", "start", "remote-fs.target"]));
    }
    UndoCommands {
        before: vec![v(&[
            "systemctl",
            "disable",
            "--now",
            render::AGENT_UNIT_NAME,
        ])],
        after,
    }
}

/// Run commands through `runner`, all of them even when one fails (an undo goes as far
/// as it can); returns the failures, each naming its command.
pub fn run_all(runner: &dyn CommandRunner, cmds: &[Vec<String>]) -> Vec<String> {
    cmds.iter()
        .filter_map(|c| {
            runner
                .run(c)
                .err()
                .map(|e| format!("`{}` failed: {e}", c.join(" ")))
        })
        .collect()
}

/// The systemctl commands `--enable` runs (argument vectors).
pub fn enable_commands(opts: &SetupOptions, config: &Config) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if opts.root != Path::new("/") {
        let root = opts.root.to_string_lossy().into_owned();
        return vec![v(&[
            "systemctl",
            "--root",
            &root,
            "enable",
            render::AGENT_UNIT_NAME,
        ])];
    }
    let mut cmds = vec![
        v(&["systemctl", "daemon-reload"]),
        v(&["systemctl", "enable", "--now", render::AGENT_UNIT_NAME]),
    ];
    if config.mounts.iter().any(|m| m.mode == MountMode::Autofs) {
        cmds.push(v(&["systemctl", "reload-or-restart", "autofs.service"]));
    }
    cmds
}

/// Run [`enable_commands`] through `runner`, stopping at the first failure.
pub fn enable(
    opts: &SetupOptions,
    config: &Config,
    runner: &dyn CommandRunner,
) -> Result<Vec<Vec<String>>, SetupError> {
    let cmds = enable_commands(opts, config);
    for c in &cmds {
        runner.run(c).map_err(SetupError::Command)?;
    }
    Ok(cmds)
}
