//! nfsha-config: the `/etc/nfsha/nfsha.toml` model, `parse()` then `validate()`.
//!
//! Role: turn TOML text into a validated [`Config`]. Failure modes: every problem in
//! the file is reported at once, each with file:line:column, what is wrong and how to
//! fix it; nothing is half-applied (a caller either gets a whole `Config` or errors).

pub mod model;

pub use model::*;
