//! nfsha-rpc: placeholder, being written.
