//! nfsha-server: placeholder, being written.
