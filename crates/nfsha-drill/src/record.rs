//! The records a drill writes and reads: one JSON line per access, one per mark.
//!
//! Failure modes: none here; parsing errors are reported by the reader in
//! [`crate::report`].

use serde::{Deserialize, Serialize};

/// One access made by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// Who made it (e.g. `nfsha`, `seed`, `floor`): the lane group in reports.
    #[serde(default)]
    pub label: String,
    /// The path accessed.
    pub path: String,
    /// Worker index (0-based) within this path.
    #[serde(default)]
    pub worker: u32,
    /// Start of the access, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// How long it took (for `blocked`, how long it had been blocked at the end).
    pub latency_ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// The errno of a failure, if the kernel gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// Short error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the access had not returned when the run ended (counted as failed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}

impl AccessRecord {
    /// End of the access in milliseconds since the epoch (start + latency).
    pub fn end_ms(&self) -> f64 {
        self.ts_ms as f64 + self.latency_ms
    }
}

/// A named point in time placed by a scenario (`vip-moved`, `server-a-stopped`...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The mark's name.
    pub name: String,
}
