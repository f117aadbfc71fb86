//! autofs: read auto.master, auto.master.d/*.autofs and the file maps they name.
//!
//! Role: find the NFS entries that autofs serves (indirect maps like seed 000's
//! `/airflow /etc/auto.airflow --timeout=30 --ghost`, and direct `/-` maps), with their
//! replicas (`h1,h2:/p`, `h1(5):/p`, `h1:/a h2:/a`, and replica volumes with their own
//! paths, `h1:/a h2:/b` as in seed 001). Everything is read relative to a root
//! directory. Failure modes: entries nfsha cannot represent (wildcards, multi-mounts,
//! program or NIS maps) are reported as notes and left alone; unreadable files are
//! errors.

use std::path::{Path, PathBuf};

use crate::fstab::{Line, lines};

/// One master-map line (`mountpoint map [options]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEntry {
    /// File it was read from (absolute, inside the root).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// Mount directory of the map, or `/-` for a direct map.
    pub mountpoint: String,
    /// Map file (absolute, inside the root), when it is a file map.
    pub map: Option<PathBuf>,
    /// The map as written.
    pub map_spec: String,
    /// Mount options given on the master line (`-rw`), without the daemon's `--` options.
    pub options: Vec<String>,
}

/// One entry of a map file (possibly spread over continued lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// The map file.
    pub file: PathBuf,
    /// First and last 1-based physical lines.
    pub lines: (usize, usize),
    /// Key (a relative name, or an absolute path in a direct map).
    pub key: String,
    /// Options (without the leading `-`, split on commas).
    pub options: Vec<String>,
    /// Locations as written.
    pub locations: Vec<String>,
}

/// A server of a parsed location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Host.
    pub host: String,
    /// autofs weight (`host(5)`), 0 when absent.
    pub weight: u32,
    /// The path this server exports (the location's `:/path`).
    pub export: String,
}

/// Parse a master map text (auto.master or an `.autofs` drop-in).
pub fn parse_master(text: &str, file: &Path) -> Vec<MasterEntry> {
    let mut out = Vec::new();
    for l in lines(text) {
        let t = l.text.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('+') {
            continue;
        }
        let mut fields = t.split_whitespace();
        let (Some(mp), Some(map)) = (fields.next(), fields.next()) else {
            continue;
        };
        let options = fields
            .filter(|o| o.starts_with('-') && !o.starts_with("--"))
            .flat_map(|o| o.trim_start_matches('-').split(','))
            .filter(|o| !o.is_empty())
            .map(String::from)
            .collect();
        out.push(MasterEntry {
            file: file.to_path_buf(),
            line: l.number,
            mountpoint: mp.to_string(),
            map: map_file(map),
            map_spec: map.to_string(),
            options,
        });
    }
    out
}

/// The `+dir:` includes of a master map.
pub fn master_dirs(text: &str) -> Vec<PathBuf> {
    lines(text)
        .iter()
        .filter_map(|l| l.text.trim().strip_prefix("+dir:"))
        .map(|d| PathBuf::from(d.trim()))
        .collect()
}

/// The file of a map spec: `/etc/auto.x`, `file:/etc/auto.x`, `auto.x` (→ `/etc/auto.x`).
/// `None` for program, NIS, LDAP, `-hosts` and other non-file maps.
pub fn map_file(spec: &str) -> Option<PathBuf> {
    let spec = spec.split_once(',').map_or(spec, |(m, _)| m);
    let spec = spec.strip_prefix("file:").unwrap_or(spec);
    if spec.starts_with('/') {
        Some(PathBuf::from(spec))
    } else if spec.starts_with('-') || spec.contains(':') {
        None
    } else {
        Some(Path::new("/etc").join(spec))
    }
}

/// Parse a map file's text.
pub fn parse_map(text: &str, file: &Path) -> Vec<MapEntry> {
    let mut out = Vec::new();
    let all = lines(text);
    let mut i = 0;
    while i < all.len() {
        let first = all[i].number;
        let mut joined = String::new();
        let mut last: &Line<'_> = &all[i];
        loop {
            let t = last.text.trim_end();
            if let Some(cont) = t.strip_suffix('\\')
                && i + 1 < all.len()
            {
                joined.push_str(cont);
                joined.push(' ');
                i += 1;
                last = &all[i];
                continue;
            }
            joined.push_str(last.text);
            break;
        }
        i += 1;
        let t = joined.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('+') {
            continue;
        }
        let mut fields = t.split_whitespace();
        let Some(key) = fields.next() else { continue };
        let mut options = Vec::new();
        let mut locations = Vec::new();
        for f in fields {
            if locations.is_empty() && f.starts_with('-') {
                options.extend(
                    f.trim_start_matches('-')
                        .split(',')
                        .filter(|o| !o.is_empty())
                        .map(String::from),
                );
            } else {
                locations.push(f.to_string());
            }
        }
        out.push(MapEntry {
            file: file.to_path_buf(),
            lines: (first, last.number),
            key: key.to_string(),
            options,
            locations,
        });
    }
    out
}

/// The `fstype=` of an entry's options (default `nfs`).
pub fn fstype(options: &[String]) -> &str {
    options
        .iter()
        .rev()
        .find_map(|o| o.strip_prefix("fstype="))
        .unwrap_or("nfs")
}

/// Parse an entry's locations into replicas and the export path of the first one.
///
/// Accepts `h:/p`, `h1,h2:/p`, `h1(5),h2:/p`, `[v6]:/p` and several such words, with
/// the same path or each with its own (replica volumes). Errors say why nfsha cannot
/// represent the entry.
pub fn replicas(locations: &[String]) -> Result<(Vec<Replica>, String), String> {
    if locations.is_empty() {
        return Err("no location".to_string());
    }
    if locations.iter().any(|l| l.starts_with('/')) {
        return Err("multi-mount entries (with offsets) are not supported".to_string());
    }
    let mut hosts = Vec::new();
    for loc in locations {
        let (hostlist, p) =
            split_location(loc).ok_or_else(|| format!("`{loc}` is not a `host:/path` location"))?;
        for h in hostlist.split(',').filter(|h| !h.is_empty()) {
            let (host, weight) = match h.strip_suffix(')').and_then(|h| h.split_once('(')) {
                Some((host, w)) => (
                    host,
                    w.parse::<u32>()
                        .map_err(|_| format!("bad weight in `{h}`"))?,
                ),
                None => (h, 0),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            hosts.push(Replica {
                host: host.to_string(),
                weight,
                export: p.clone(),
            });
        }
    }
    let Some(first) = hosts.first() else {
        return Err("no server host".to_string());
    };
    let path = first.export.clone();
    Ok((hosts, path))
}

/// Split `hosts:/path` where hosts may contain bracketed IPv6 addresses.
fn split_location(loc: &str) -> Option<(String, String)> {
    let mut depth = 0;
    for (i, c) in loc.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                let (h, p) = (&loc[..i], &loc[i + 1..]);
                return (!h.is_empty() && p.starts_with('/'))
                    .then(|| (h.to_string(), p.to_string()));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master() {
        let text = "# comment\n+dir:/etc/auto.master.d\n+auto.master\n/airflow    /etc/auto.airflow    --timeout=30 --ghost\n/- auto.direct -rw,hard\n/net -hosts\n";
        let m = parse_master(text, Path::new("/etc/auto.master"));
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mountpoint, "/airflow");
        assert_eq!(m[0].map, Some(PathBuf::from("/etc/auto.airflow")));
        assert!(m[0].options.is_empty());
        assert_eq!(m[0].line, 4);
        assert_eq!(m[1].map, Some(PathBuf::from("/etc/auto.direct")));
        assert_eq!(m[1].options, ["rw", "hard"]);
        assert_eq!(m[2].map, None);
        assert_eq!(master_dirs(text), [PathBuf::from("/etc/auto.master.d")]);
        assert_eq!(map_file("file:/etc/x"), Some(PathBuf::from("/etc/x")));
        assert_eq!(map_file("program:/etc/x"), None);
    }

    #[test]
    fn map_entries() {
        let text = "# Airflow\ndags    -fstype=nfs4,rw,soft,nfsvers=4.1    10.101.20.220:/srv/airflow/dags\nlogs \\\n  -fstype=nfs4 \\\n  h1,h2(5):/srv/logs\n\nrep h1:/p h2:/p\n";
        let m = parse_map(text, Path::new("/etc/auto.airflow"));
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].key, "dags");
        assert_eq!(m[0].lines, (2, 2));
        assert_eq!(m[0].options, ["fstype=nfs4", "rw", "soft", "nfsvers=4.1"]);
        assert_eq!(fstype(&m[0].options), "nfs4");
        assert_eq!(m[1].lines, (3, 5));
        let (r, p) = replicas(&m[1].locations).unwrap();
        assert_eq!(p, "/srv/logs");
        assert_eq!(
            r,
            [
                Replica {
                    host: "h1".into(),
                    weight: 0,
                    export: "/srv/logs".into(),
                },
                Replica {
                    host: "h2".into(),
                    weight: 5,
                    export: "/srv/logs".into(),
                }
            ]
        );
        let (r, p) = replicas(&m[2].locations).unwrap();
        assert_eq!((r.len(), p.as_str()), (2, "/p"));
        // Replica volumes, each with its own path (seed 001).
        let (r, p) = replicas(&["h1:/a".into(), "h2(3):/b".into()]).unwrap();
        assert_eq!(p, "/a");
        let got: Vec<(&str, u32, &str)> = r
            .iter()
            .map(|r| (r.host.as_str(), r.weight, r.export.as_str()))
            .collect();
        assert_eq!(got, [("h1", 0, "/a"), ("h2", 3, "/b")]);
        assert!(replicas(&["/off".into(), "h:/a".into()]).is_err());
        assert!(replicas(&["nohost".into()]).is_err());
        let (r, _) = replicas(&["[fd00::1]:/x".into()]).unwrap();
        assert_eq!(r[0].host, "fd00::1");
    }
}
