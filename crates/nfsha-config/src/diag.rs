//! Diagnostics: one problem in a config file, located at file:line:column.
//!
//! Role: the error type of the crate. A [`ConfigError`] carries every diagnostic found
//! in one pass (errors and the warnings found alongside), or the I/O error that kept
//! the file from being read. Rendering is compiler-like, one problem per line, with an
//! optional indented `help:` line.

use std::fmt;
use std::path::{Path, PathBuf};

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The file is rejected.
    Error,
    /// The file is accepted, but something in it is risky or useless.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (as given by the caller; `nfsha.toml` when parsing text without a path).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// How to fix it, if there is something useful to say.
    pub help: Option<String>,
}

impl Diagnostic {
    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.severity,
            self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Render diagnostics one per line (help lines indented below their diagnostic).
pub fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("Cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid config: every problem found, sorted by position
    /// (warnings found in the same pass are included).
    #[error("{}", render(diagnostics))]
    Invalid {
        /// Errors and warnings, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// All diagnostics (empty for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { diagnostics } => diagnostics,
        }
    }

    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics().iter().filter(|d| d.is_error())
    }
}

/// Maps byte offsets of one text to 1-based line and character column.
#[derive(Debug, Clone)]
pub struct LineIndex<'t> {
    text: &'t str,
    line_starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    /// Index `text`.
    pub fn new(text: &'t str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    /// 1-based (line, column) of byte `offset` (clamped to the text).
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let column = self.text[self.line_starts[line]..offset].chars().count() + 1;
        (line + 1, column)
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Sink<'t> {
    file: PathBuf,
    index: LineIndex<'t>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'t> Sink<'t> {
    pub(crate) fn new(text: &'t str, source: Option<&Path>) -> Self {
        Sink {
            file: display_name(source),
            index: LineIndex::new(text),
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        severity: Severity,
        offset: usize,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let (line, column) = self.index.position(offset);
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            severity,
            message: message.into(),
            help,
        });
    }

    pub(crate) fn error(&mut self, offset: usize, message: impl Into<String>) {
        self.push(Severity::Error, offset, message, None);
    }

    pub(crate) fn error_help(
        &mut self,
        offset: usize,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Error, offset, message, Some(help.into()));
    }

    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.index.position(offset).0
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Sort by position (stable: same position keeps discovery order).
    pub(crate) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics
    }
}

/// The file name used in diagnostics.
pub(crate) fn display_name(source: Option<&Path>) -> PathBuf {
    source
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("nfsha.toml"))
}

/// Levenshtein distance (small inputs: config keys).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if close enough to be a plausible typo.
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let idx = LineIndex::new("ab\nçd\n\nx");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(1), (1, 2));
        assert_eq!(idx.position(3), (2, 1));
        // 'ç' is two bytes: byte 5 is 'd', column 2.
        assert_eq!(idx.position(5), (2, 2));
        assert_eq!(idx.position(7), (3, 1));
        assert_eq!(idx.position(8), (4, 1));
        assert_eq!(idx.position(100), (4, 2));
    }

    #[test]
    fn suggestions() {
        let keys = ["probe_interval", "probe_deadline", "mode"];
        assert_eq!(
            did_you_mean("probe_intervall", &keys),
            Some("probe_interval")
        );
        assert_eq!(did_you_mean("mdoe", &keys), Some("mode"));
        assert_eq!(did_you_mean("completely_else", &keys), None);
    }

    #[test]
    fn display_has_help_line() {
        let d = Diagnostic {
            file: "nfsha.toml".into(),
            line: 12,
            column: 15,
            severity: Severity::Error,
            message: "unknown key `probe_intervall` in [[mount]]".into(),
            help: Some("did you mean `probe_interval`?".into()),
        };
        assert_eq!(
            d.to_string(),
            "nfsha.toml:12:15: error: unknown key `probe_intervall` in [[mount]]\n  help: did you mean `probe_interval`?"
        );
    }
}
