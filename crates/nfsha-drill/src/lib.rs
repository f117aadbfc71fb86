//! nfsha-drill: placeholder, being written.
