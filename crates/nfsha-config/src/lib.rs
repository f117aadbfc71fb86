//! nfsha-config: the `/etc/nfsha/nfsha.toml` model, `parse()` then `validate()`.
//!
//! Role: turn TOML text into a validated [`Config`]. Failure modes: every problem in
//! the file is reported at once, each with file:line:column, what is wrong and how to
//! fix it; nothing is half-applied (a caller either gets a whole `Config` or errors).
//! The one exception to "all at once" is a TOML syntax error: the document cannot be
//! read past it, so only that error is reported.
//!
//! ```
//! let cfg = nfsha_config::parse_str(
//!     "[[mount]]\nmountpoint = \"/airflow/dags\"\nexport = \"/srv/airflow/dags\"\nservers = [\"10.101.20.220\"]\n",
//!     None,
//! ).unwrap();
//! assert_eq!(cfg.mounts[0].options, ["hard"]);
//! ```

pub mod defaults;
mod diag;
pub mod model;
mod options;
mod render;
mod validate;

use std::path::Path;

use toml::Spanned;
use toml::de::DeTable;

pub use diag::{ConfigError, Diagnostic, LineIndex, Severity, did_you_mean, render};
pub use model::*;
pub use options::{OptionAdvice, is_version_option, option_advice, option_name};
pub use render::to_toml;
pub use validate::known_sections;
pub use validate::{MAX_FAILURES_BEFORE_RECOVERY, MAX_PROBE_DEADLINE};

/// A syntactically valid TOML document, with the span of every key and value.
#[derive(Debug)]
pub struct RawConfig<'i> {
    text: &'i str,
    source: Option<&'i Path>,
    doc: Spanned<DeTable<'i>>,
}

/// Parse TOML text (syntax only). A syntax error is reported alone: the document
/// cannot be read past it.
pub fn parse<'i>(text: &'i str, source: Option<&'i Path>) -> Result<RawConfig<'i>, ConfigError> {
    match DeTable::parse(text) {
        Ok(doc) => Ok(RawConfig { text, source, doc }),
        Err(e) => {
            let mut sink = diag::Sink::new(text, source);
            let offset = e.span().map_or(0, |s| s.start);
            sink.error(offset, format!("invalid TOML: {}", e.message().trim_end()));
            Err(ConfigError::Invalid {
                diagnostics: sink.into_sorted(),
            })
        }
    }
}

/// Check a parsed document against every rule of the format and build the model.
/// Returns the config and its warnings, or every error (and warning) found.
pub fn validate(raw: &RawConfig<'_>) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    let mut checker = validate::Checker {
        sink: diag::Sink::new(raw.text, raw.source),
        fleet_mounts: Vec::new(),
    };
    let config = checker.document(raw.doc.get_ref(), raw.source);
    let failed = checker.sink.has_errors();
    let diagnostics = checker.sink.into_sorted();
    if failed {
        Err(ConfigError::Invalid { diagnostics })
    } else {
        Ok((config, diagnostics))
    }
}

/// Parse and validate `text`; `source` names the file in diagnostics and in
/// [`Config::source`]. Returns the config and its warnings.
pub fn parse_str_with_warnings(
    text: &str,
    source: Option<&Path>,
) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    validate(&parse(text, source)?)
}

/// Parse and validate `text` (warnings are dropped: use [`parse_str_with_warnings`] to see them).
pub fn parse_str(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
    parse_str_with_warnings(text, source).map(|(c, _)| c)
}

/// Read, parse and validate the file at `path`, with its warnings.
pub fn load_with_warnings(path: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str_with_warnings(&text, Some(path))
}

/// Read, parse and validate the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_warnings(path).map(|(c, _)| c)
}

#[cfg(test)]
mod tests;
