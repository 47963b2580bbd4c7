//! testkit: start and watch a local chmpx cluster from outside, for scenario tests and the
//! `dkc-local` tool. Compiled only with the `testkit` cargo feature.
//!
//! Layout:
//! - [`ini`]: the INI of a cluster on 127.0.0.1 ([`ini::ClusterIni`]), checked by
//!   [`crate::config::Config::parse_str`] before it is written.
//! - [`ports`]: free TCP ports for one run.
//! - [`bins`]: where the sibling executables of a test or tool are (`target/<profile>/`).
//! - [`procs`]: a set of named child processes with log files; dropping it kills them all.
//! - [`control`]: one control-port command, `STATUSJSON` parsed, the readiness predicates and a
//!   bounded status wait (polling, never a fixed sleep).
//! - [`ipc`]: removal of the queues and segments a killed chmpx of a GROUP leaves behind.
//!
//! Everything here talks to chmpx the way an operator does (config file, processes, control
//! port, the names of its IPC objects); it must never depend on dkc-server, dkc-client or
//! k2hash, and nothing in the daemon may depend on it.

pub mod bins;
pub mod control;
pub mod error;
pub mod ini;
pub mod ipc;
pub mod ports;
pub mod procs;

pub use error::LaunchError;
