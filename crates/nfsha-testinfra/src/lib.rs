//! nfsha-testinfra: placeholder, being written.
