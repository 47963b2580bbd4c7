//! dkc-server (under construction).
