//! Optional hardware/software watchdog armed while this node leads (Patroni-style).
//!
//! Role: if the controller stops making progress while it may be serving (hung,
//! frozen, or unable to finish a teardown), the kernel resets the machine. The
//! controller pets the watchdog only while its lease proof is fresh, so a node that
//! cannot prove leadership and cannot tear down is reset. Failure modes: the device
//! cannot be opened or written ([`std::io::Error`]); the controller then refuses to lead
//! rather than lead unprotected.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// A watchdog the controller arms before bring-up and disarms after a clean teardown.
pub trait Watchdog: Send + std::fmt::Debug {
    /// Start the countdown.
    fn arm(&mut self) -> std::io::Result<()>;
    /// Restart the countdown.
    fn keepalive(&mut self) -> std::io::Result<()>;
    /// Stop the countdown (magic close).
    fn disarm(&mut self) -> std::io::Result<()>;
}

/// `/dev/watchdog` (e.g. softdog). Its timeout is the driver's (set it with the module
/// option, e.g. `softdog soft_margin=`; it should be below the lease TTL).
#[derive(Debug)]
pub struct LinuxWatchdog {
    path: PathBuf,
    file: Option<File>,
}

impl LinuxWatchdog {
    /// A watchdog on `path`, not yet opened.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LinuxWatchdog {
            path: path.into(),
            file: None,
        }
    }
}

impl Watchdog for LinuxWatchdog {
    fn arm(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(OpenOptions::new().write(true).open(&self.path)?);
        }
        Ok(())
    }

    fn keepalive(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(b"\0"),
            None => Ok(()),
        }
    }

    fn disarm(&mut self) -> std::io::Result<()> {
        if let Some(mut f) = self.file.take() {
            // "Magic close": writing 'V' before close stops the timer (unless the driver
            // was built with nowayout, in which case the machine resets: by design).
            f.write_all(b"V")?;
        }
        Ok(())
    }
}
