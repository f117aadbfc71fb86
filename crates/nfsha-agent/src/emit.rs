//! Where the agent's structured events go.
//!
//! The agent calls one [`Emitter`] for every state change and recovery step; the
//! binary plugs in the event log (file + journald + in-memory ring), tests plug in a
//! collector. An emitter must not block: it runs on the mount tasks.

use nfsha_core::Event;
use std::sync::{Arc, Mutex};

/// A cheap, clonable event callback.
#[derive(Clone)]
pub struct Emitter(Arc<dyn Fn(Event) + Send + Sync>);

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Emitter")
    }
}

impl Emitter {
    /// Wrap a callback.
    pub fn new(f: impl Fn(Event) + Send + Sync + 'static) -> Self {
        Emitter(Arc::new(f))
    }

    /// An emitter that only logs through `tracing`.
    pub fn tracing_only() -> Self {
        Emitter::new(|e| tracing::info!(event = %e.to_json_line(), "event"))
    }

    /// Emit one event.
    pub fn emit(&self, e: Event) {
        (self.0)(e)
    }

    /// An emitter that appends to a shared vector (tests, drills).
    pub fn collector() -> (Self, Arc<Mutex<Vec<Event>>>) {
        let store = Arc::new(Mutex::new(Vec::new()));
        let s = store.clone();
        (
            Emitter::new(move |e| s.lock().unwrap_or_else(|p| p.into_inner()).push(e)),
            store,
        )
    }
}
