//! Shared code of the dkc tools (bins k2htool, dkc-bench, dkc-local). Each tool keeps its logic
//! in its own module here and its binary in `src/bin/` is a thin main. Tools may depend on any
//! dkc library crate; no library crate may depend on this one.
//!
//! - [`k2htool`]: the k2hash file tool (info, dump, verify, compact, export, load, bench).
//! - [`netns`]: simulated hosts (namespaces) and faults for multi-host tests (`dkc-hosts`).
//! - [`local`]: `dkc-local`, a local cluster with a memcached front (up, status, down).

pub mod bench;
pub mod k2htool;
pub mod local;
pub mod netns;
