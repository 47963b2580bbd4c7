//! chmpx: router (under construction).
pub mod attach;
pub mod config;
pub mod daemon;
pub mod ipc;
pub mod link;
pub mod merge;
pub mod placement;
#[cfg(feature = "testkit")]
pub mod testkit;
