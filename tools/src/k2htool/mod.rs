//! `k2htool`: the operator's tool for one k2hash file (like K2HASH's k2hlinetool and Tokyo
//! Cabinet's tchmgr): info, dump, verify, compact, export, load and bench.
//!
//! # Layout
//! - [`cli`]: clap definitions, parsing only.
//! - [`line_format`]: the export/load text format (pure codec, documented there).
//! - [`keygen`]: the benchmark workload, identical to `benches/tc/tcbench.c` (pure).
//! - [`progress`]: progress bars on stderr, only on a terminal.
//! - [`open`]: opening a file in the requested mode with clear errors.
//! - one module per subcommand: [`info`], [`dump`], [`verify`], [`compact`], [`export`],
//!   [`load`], [`bench`](mod@bench).
//!
//! The binary `src/bin/k2htool.rs` only parses and calls [`run`]. Commands report operating
//! errors through `anyhow` with the file and the step that failed; this module is the tool's
//! own logic and must never be depended on by the engine or the servers.

pub mod bench;
pub mod cli;
pub mod compact;
pub mod dump;
pub mod export;
pub mod info;
pub mod keygen;
pub mod line_format;
pub mod load;
pub mod open;
pub mod progress;
pub mod verify;

use std::process::ExitCode;

pub use cli::Cli;

/// Exit code when `verify` found problems (distinct from 2, the usage-error code of clap, and
/// from 1, which every other failure uses).
pub const EXIT_PROBLEMS_FOUND: u8 = 3;

/// Records fetched per scan call: large enough to amortise the call, small enough to bound
/// memory whatever the value sizes (value_size_max x this is the worst case).
pub const SCAN_BATCH_RECORDS: usize = 256;

/// Runs one parsed command. `Ok(code)` is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Info(args) => info::run(&args),
        cli::Command::Dump(args) => dump::run(&args),
        cli::Command::Verify(args) => verify::run(&args),
        cli::Command::Compact(args) => compact::run(&args),
        cli::Command::Export(args) => export::run(&args),
        cli::Command::Load(args) => load::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
    }
}
