//! nfsha-setup: placeholder, being written.
