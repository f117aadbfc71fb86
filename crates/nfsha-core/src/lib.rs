//! nfsha-core: the vocabulary every other nfsha crate shares.
//!
//! Role: mount states and how a probe result becomes one ([`state`]), the structured
//! event record ([`event`]), and the pure per-mount recovery state machine ([`machine`]).
//! Nothing here performs I/O, so nothing here can hang or fail on a dead NFS server;
//! the only failure mode is a caller feeding inconsistent inputs, which the state
//! machine answers with a no-op rather than a panic.

pub mod event;
pub mod machine;
pub mod octal;
pub mod state;

pub use event::{Event, EventKind};
pub use machine::{Action, MachineConfig, MountMachine};
pub use state::{MountState, ProbeOp, ProbeOutcome, WriteState};

/// An error and its whole `source` chain, once, numbered (cloud-hypervisor style), as the
/// command-line tools print it on failure: `Error: outer` then `  0: inner` per cause.
pub fn error_report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = format!("Error: {e}");
    let mut cur = e.source();
    let mut i = 0;
    while let Some(c) = cur {
        s.push_str(&format!("\n  {i}: {c}"));
        cur = c.source();
        i += 1;
    }
    s
}

/// An error and its whole `source` chain on one line (`outer: inner: innermost`), for
/// the places that carry errors as text (member records, reload diagnostics, logs).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains_render_on_one_line_and_numbered() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::error_chain(&e), "outer: inner");
        assert_eq!(super::error_report(&e), "Error: outer\n  0: inner");
    }
}
