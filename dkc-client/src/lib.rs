//! dkc-client (under construction).
pub mod proto;
