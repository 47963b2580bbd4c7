//! dkc-client (under construction).
