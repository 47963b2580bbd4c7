//! chmpx: router (under construction).
pub mod merge;
pub mod config;
pub mod placement;
pub mod link;
