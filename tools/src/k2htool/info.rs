//! `k2htool info`: what a file holds, from the engine's counters.

use std::process::ExitCode;

use super::cli::InfoArgs;
use super::open;

/// Prints one `name: value` line per counter.
pub fn run(args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let store = open::read_only(&args.file.file, args.file.mode)?;
    let stats = store.stats();
    println!("file: {}", args.file.file.display());
    println!("mode: {:?}", store.mode());
    println!("file_size_bytes: {}", stats.file_size);
    println!("items: {}", stats.items);
    println!("tombstones: {}", stats.tombstones);
    println!("live_bytes: {}", stats.live_bytes);
    println!("used_bytes: {}", stats.used_bytes);
    println!("free_bytes: {}", stats.free_bytes);
    println!("shards: {}", stats.shards);
    println!("index_slots: {}", stats.index_slots);
    store.close()?;
    Ok(ExitCode::SUCCESS)
}
