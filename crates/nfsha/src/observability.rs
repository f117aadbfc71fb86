//! Logging setup: text or JSON on stderr, or journald when systemd connected stderr to
//! the journal — never both, so journald gets each line once.
//!
//! Which output ([`select`]): with `JOURNAL_STREAM` set *and* naming the device and
//! inode stderr is open on (systemd's own test, systemd.exec(5): a child that inherited
//! the variable but was redirected elsewhere must not use it), lines go to journald with
//! their fields and stderr stays silent; otherwise to stderr only. Colour: ANSI escape
//! codes only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>), so a redirected log or a `journalctl` view holds no escape
//! codes.
//!
//! Failure mode: if journald is unreachable the journald layer cannot be built and the
//! lines go to stderr instead (which is the journal stream anyway); stderr logging
//! always works.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What the process's environment and stderr look like to the logging setup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogEnv<'a> {
    /// `JOURNAL_STREAM` (`DEVICE:INODE` of the journal's stream), if set.
    pub journal_stream: Option<&'a OsStr>,
    /// `NO_COLOR`, if set.
    pub no_color: Option<&'a OsStr>,
    /// Device and inode stderr is open on (`fstat(2)`), if it is open.
    pub stderr_id: Option<(u64, u64)>,
    /// stderr is a terminal.
    pub stderr_tty: bool,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outputs {
    /// Native journald protocol (fields kept); stderr stays silent.
    pub journald: bool,
    /// ANSI colour on stderr.
    pub ansi: bool,
}

/// Decide the outputs (pure; see the module doc).
pub fn select(env: &LogEnv<'_>) -> Outputs {
    let journald = match (env.journal_stream.and_then(parse_stream), env.stderr_id) {
        (Some(stream), Some(stderr)) => stream == stderr,
        _ => false,
    };
    let no_color = env.no_color.is_some_and(|v| !v.is_empty());
    Outputs {
        journald,
        ansi: !journald && env.stderr_tty && !no_color,
    }
}

/// `DEVICE:INODE`, both decimal, as systemd writes `JOURNAL_STREAM`.
fn parse_stream(v: &OsStr) -> Option<(u64, u64)> {
    let (dev, ino) = v.to_str()?.split_once(':')?;
    Some((dev.trim().parse().ok()?, ino.trim().parse().ok()?))
}

fn stderr_id() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal_stream = std::env::var_os("JOURNAL_STREAM");
    let no_color = std::env::var_os("NO_COLOR");
    let out = select(&LogEnv {
        journal_stream: journal_stream.as_deref(),
        no_color: no_color.as_deref(),
        stderr_id: stderr_id(),
        stderr_tty: std::io::stderr().is_terminal(),
    });
    let journald = out
        .journald
        .then(|| {
            tracing_journald::layer()
                .ok()
                .map(|l| l.with_field_prefix(None))
        })
        .flatten();
    // stderr only when journald does not take the lines.
    let stderr = journald.is_none().then(|| match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(out.ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed(),
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(journald)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(stream: Option<&'a str>, stderr: Option<(u64, u64)>, tty: bool) -> LogEnv<'a> {
        LogEnv {
            journal_stream: stream.map(OsStr::new),
            no_color: None,
            stderr_id: stderr,
            stderr_tty: tty,
        }
    }

    #[test]
    fn journald_only_when_stderr_is_the_journal_stream() {
        // systemd service: stderr is the stream JOURNAL_STREAM names → journald only.
        let o = select(&env(Some("8:12345"), Some((8, 12345)), false));
        assert_eq!(
            o,
            Outputs {
                journald: true,
                ansi: false
            }
        );
        // Inherited variable, stderr redirected to a file → stderr only.
        assert!(!select(&env(Some("8:12345"), Some((8, 999)), false)).journald);
        // No variable, or a garbled one, or no stderr → stderr only.
        assert!(!select(&env(None, Some((8, 12345)), false)).journald);
        assert!(!select(&env(Some("garbage"), Some((8, 12345)), false)).journald);
        assert!(!select(&env(Some("8:12345"), None, false)).journald);
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(select(&env(None, Some((1, 2)), true)).ansi);
        assert!(!select(&env(None, Some((1, 2)), false)).ansi, "redirected");
        let mut e = env(None, Some((1, 2)), true);
        e.no_color = Some(OsStr::new("1"));
        assert!(!select(&e).ansi, "NO_COLOR=1");
        e.no_color = Some(OsStr::new(""));
        assert!(
            select(&e).ansi,
            "an empty NO_COLOR does not count (no-color.org)"
        );
        // A terminal that is also the journal stream (never in practice): journald
        // takes the lines, so there is no stderr to colour.
        assert!(!select(&env(Some("1:2"), Some((1, 2)), true)).ansi);
    }
}
