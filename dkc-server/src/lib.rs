//! dkc-server — executes dkc commands on one k2hash file behind the local chmpx.
//!
//! This crate owns the command layer (what each client command does to the store, atomically
//! and with versions), the hybrid logical clock that mints versions, the answers to chmpx's
//! merge requests, and the server process that joins them to chmpx. It must never depend on
//! chmpx's internals beyond its public attach, config and merge-protocol APIs, and the command
//! layer ([`executor`], `cmd`, [`merge`]) must never do I/O other than through the store:
//! it is tested on a memory-mode store with a manual clock.
//!
//! # Layout
//! - [`hlc`] — the hybrid logical clock (versions = CAS tokens) and the physical clocks.
//! - [`limits`] — every limit as a named constant, and [`limits::Limits`].
//! - [`executor`] — [`executor::Executor`]: `execute(&Request) -> Executed { response,
//!   replicate }`, dispatching to `cmd`.
//! - `cmd` — one file per command (get, set, delete, incr_decr, touch, subkeys, scan, ...).
//! - [`merge`] — answers chmpx's merge requests (digests, version lists, item batches).
//! - [`record`] — conversions between engine records and wire records.
//! - [`counters`] — operation counters reported by `Stats`.
//! - [`server`] — the process: settings from the config, opening the file, attaching to chmpx,
//!   worker threads, acknowledgement levels, graceful shutdown. `src/main.rs` is a thin `main`.

//! # Test-only switch: `DKC_TEST_DISABLE_REPLICATION`
//! With `DKC_TEST_DISABLE_REPLICATION=1` in its environment at start-up, `dkc-server` never
//! sends a Replicate: the primary applies each write and answers it as acknowledged whatever
//! ACKLEVEL says. It logs a loud WARN at start. It exists only so that the fault tests can show
//! that their checker catches a build that loses acknowledged writes; a cluster running with it
//! keeps none of DESIGN.md §9's promises. Any other value (or none) leaves replication on.

pub(crate) mod cmd;
pub mod counters;
pub mod executor;
pub mod hlc;
pub mod limits;
pub mod merge;
pub mod record;
pub mod server;

pub use executor::{Executed, Executor};
pub use hlc::{Hlc, ManualClock, PhysicalClock, SystemClock};
pub use limits::Limits;
