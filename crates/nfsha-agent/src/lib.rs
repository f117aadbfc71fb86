//! nfsha-agent: placeholder, being written.
