//! /etc/fstab: find the NFS entries, and comment out (or restore) the ones nfsha manages.
//!
//! Role: a byte-preserving view of fstab. Lines nfsha does not manage are never altered:
//! the file is split into lines with their original terminators, and only managed NFS
//! lines are rewritten, by prefixing [`MARKER`]. Undo strips exactly that prefix.
//! Failure modes: a malformed NFS line is reported (setup must change it); malformed
//! non-NFS lines are left alone and not reported.

use std::path::PathBuf;

/// Prefix of an fstab (or autofs map) line that nfsha commented out; `--undo` strips it.
pub const MARKER: &str = "#nfsha-setup# ";

/// One physical line of a text file, with its terminator (`\n`, or none on the last line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'t> {
    /// 1-based line number.
    pub number: usize,
    /// Content without the terminator.
    pub text: &'t str,
    /// The terminator (`"\n"` or `""`).
    pub end: &'t str,
}

/// Split text into lines, keeping terminators so that joining them gives back the bytes.
pub fn lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| {
            let (text, end) = match l.strip_suffix('\n') {
                Some(t) => (t, "\n"),
                None => (l, ""),
            };
            Line {
                number: i + 1,
                text,
                end,
            }
        })
        .collect()
}

/// Decode fstab's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
pub fn unescape(field: &str) -> String {
    nfsha_core::octal::unescape_lossy(field)
}

/// Encode a path for an fstab field (space, tab, newline and backslash as octal).
pub fn escape(field: &str) -> String {
    let mut out = String::new();
    for c in field.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// An NFS entry of fstab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsEntry {
    /// 1-based line number.
    pub line: usize,
    /// Server host (brackets of an IPv6 address removed).
    pub host: String,
    /// Export path on the server.
    pub export: String,
    /// Mountpoint (unescaped).
    pub mountpoint: PathBuf,
    /// `nfs` or `nfs4`.
    pub fstype: String,
    /// Mount options as written (split on commas).
    pub options: Vec<String>,
    /// Byte column (1-based, in characters) where the options field starts.
    pub options_column: usize,
}

/// A problem with an NFS line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// What one fstab line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Comment, blank, or a non-NFS entry (never touched).
    Other,
    /// An NFS entry.
    Nfs(NfsEntry),
    /// Looks like an NFS entry but cannot be understood.
    BadNfs(LineError),
}

/// Split `host:/path` (`[v6]:/path` too) into host and path.
pub fn split_spec(spec: &str) -> Option<(String, String)> {
    if let Some(rest) = spec.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        return (!h.is_empty() && p.starts_with('/')).then(|| (h.to_string(), p.to_string()));
    }
    let (h, p) = spec.split_once(':')?;
    (!h.is_empty() && p.starts_with('/')).then(|| (h.to_string(), p.to_string()))
}

/// Classify one fstab line.
pub fn classify(line: &Line<'_>) -> Kind {
    let t = line.text.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return Kind::Other;
    }
    let fields: Vec<&str> = line.text.split_whitespace().collect();
    let fstype = fields.get(2).copied().unwrap_or("");
    if !matches!(fstype, "nfs" | "nfs4") {
        return Kind::Other;
    }
    let bad = |message: String| {
        Kind::BadNfs(LineError {
            line: line.number,
            message,
        })
    };
    if fields.len() > 6 {
        return bad(format!(
            "{} fields, fstab has at most 6 (unescaped space in a path? write it as \\040)",
            fields.len()
        ));
    }
    for (i, f) in fields.iter().enumerate().skip(4) {
        if f.parse::<u32>().is_err() {
            let what = if i == 4 {
                "dump frequency"
            } else {
                "fsck pass"
            };
            return bad(format!("the {what} field `{f}` is not a number"));
        }
    }
    let spec = unescape(fields[0]);
    let Some((host, export)) = split_spec(&spec) else {
        return bad(format!("`{spec}` is not a `host:/export` NFS source"));
    };
    let mountpoint = unescape(fields[1]);
    if !mountpoint.starts_with('/') {
        return bad(format!("mountpoint `{mountpoint}` is not an absolute path"));
    }
    let (options, options_column) = match fields.get(3) {
        Some(o) => {
            let byte = field_offset(line.text, 3);
            (
                o.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                line.text[..byte].chars().count() + 1,
            )
        }
        None => (Vec::new(), line.text.chars().count() + 1),
    };
    Kind::Nfs(NfsEntry {
        line: line.number,
        host,
        export,
        mountpoint: PathBuf::from(mountpoint.trim_end_matches('/').to_string())
            .components()
            .collect(),
        fstype: fstype.to_string(),
        options,
        options_column,
    })
}

/// Byte offset of whitespace-separated field `n` in `text`.
fn field_offset(text: &str, n: usize) -> usize {
    let mut count = 0;
    let mut in_field = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_field = false;
        } else if !in_field {
            if count == n {
                return i;
            }
            count += 1;
            in_field = true;
        }
    }
    text.len()
}

/// Rewrite `text`, commenting out the lines numbered in `managed` with [`MARKER`].
/// Every other byte is kept.
pub fn comment_out(text: &str, managed: &[usize]) -> String {
    lines(text)
        .iter()
        .map(|l| {
            if managed.contains(&l.number) {
                format!("{MARKER}{}{}", l.text, l.end)
            } else {
                format!("{}{}", l.text, l.end)
            }
        })
        .collect()
}

/// Strip [`MARKER`] from every line that starts with it (undo of [`comment_out`]).
pub fn uncomment(text: &str) -> String {
    lines(text)
        .iter()
        .map(|l| format!("{}{}", l.text.strip_prefix(MARKER).unwrap_or(l.text), l.end))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_bytes() {
        for t in ["", "a", "a\n", "a\n\nb", "\n\n", "x\r\ny"] {
            let joined: String = lines(t)
                .iter()
                .map(|l| format!("{}{}", l.text, l.end))
                .collect();
            assert_eq!(joined, t);
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape("/mnt/my\\040dir"), "/mnt/my dir");
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("\\04"), "\\04");
        assert_eq!(escape("/a b\\c"), "/a\\040b\\134c");
        assert_eq!(unescape(&escape("/x y\tz")), "/x y\tz");
    }

    #[test]
    fn classify_lines() {
        let l = |t: &'static str| Line {
            number: 3,
            text: t,
            end: "\n",
        };
        let Kind::Nfs(e) = classify(&l(
            "10.101.20.220:/srv/airflow/dags /mnt/airflow-dags nfs soft,timeo=10,_netdev 0 0",
        )) else {
            panic!()
        };
        assert_eq!(e.host, "10.101.20.220");
        assert_eq!(e.export, "/srv/airflow/dags");
        assert_eq!(e.mountpoint, PathBuf::from("/mnt/airflow-dags"));
        assert_eq!(e.options, ["soft", "timeo=10", "_netdev"]);
        assert_eq!(e.options_column, 55);
        let Kind::Nfs(e) = classify(&l("[fd00::1]:/e\t/mnt/a\\040b\tnfs4\trw")) else {
            panic!()
        };
        assert_eq!(e.host, "fd00::1");
        assert_eq!(e.mountpoint, PathBuf::from("/mnt/a b"));
        assert!(matches!(classify(&l("# 1:/a /b nfs rw 0 0")), Kind::Other));
        assert!(matches!(
            classify(&l("UUID=x / ext4 defaults 0 1")),
            Kind::Other
        ));
        assert!(matches!(classify(&l("garbage")), Kind::Other));
        assert!(matches!(
            classify(&l("server /b nfs rw 0 0")),
            Kind::BadNfs(_)
        ));
        assert!(matches!(
            classify(&l("s:/a rel nfs rw 0 0")),
            Kind::BadNfs(_)
        ));
        assert!(matches!(
            classify(&l("s:/a /b nfs rw x 0")),
            Kind::BadNfs(_)
        ));
        assert!(matches!(classify(&l("s:/a /b c nfs rw 0 0")), Kind::Other));
        assert!(matches!(
            classify(&l("s:/a /my dir nfs rw 0 0 0")),
            Kind::Other
        ));
        assert!(matches!(
            classify(&l("s:/a /b nfs rw 0 0 extra")),
            Kind::BadNfs(_)
        ));
    }

    #[test]
    fn comment_and_uncomment() {
        let t = "a\ns:/x /y nfs rw 0 0\nb";
        let c = comment_out(t, &[2]);
        assert_eq!(c, format!("a\n{MARKER}s:/x /y nfs rw 0 0\nb"));
        assert_eq!(uncomment(&c), t);
    }
}
