//! nfsha-sys: placeholder, being written.
