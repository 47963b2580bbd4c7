//! `k2htool bench`: the Rust side of the k2hash benchmark (docs/BENCHMARKS.md).
//!
//! Runs the workload of [`super::keygen`] (identical to `benches/tc/tcbench.c`): set every key
//! in index order split between threads (`i % threads`), then get every key in a seeded random
//! order (`position % threads`), copying each value into the worker's buffer and checking it.
//! Prints `BENCH key=value ...` lines on stdout, one per phase plus a `phase=size` line, in the
//! same shape as tcbench so tools/bench-k2hash.sh can put them side by side.
//!
//! Targets: k2hash in its three modes, created with as many index slots as TC gets buckets
//! (2 x n, so both run at the same load), and `std::collections::HashMap` split into one
//! `Mutex<HashMap>` per thread (shard = key index % threads; a reader takes the lock of
//! whichever shard holds its key).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use k2hash::{K2Hash, Meta, OpenOptions};

use super::cli::{BenchArgs, BenchTarget};
use super::keygen::{self, KEY_BYTES};
use super::progress;

/// Most threads accepted (the machines here have 2 cores; more only measures the scheduler).
pub const THREADS_MAX: usize = 64;
/// Operations a worker does between progress-bar updates (keeps the bar off the hot path).
pub const PROGRESS_STEP_OPS: u64 = 16_384;
/// TC's bucket count is 2 x n; k2hash gets at least as many index slots.
pub const INDEX_SLOTS_PER_KEY: u64 = 2;

/// One store under test: `set` and `get_into` return false on a failed or wrong operation.
trait Store: Sync {
    fn set(&self, i: u64, key: &[u8], value: &[u8]) -> bool;
    fn get_into(&self, i: u64, key: &[u8], buf: &mut Vec<u8>) -> bool;
}

impl Store for K2Hash {
    fn set(&self, _i: u64, key: &[u8], value: &[u8]) -> bool {
        K2Hash::set(self, key, value, Meta::default()).is_ok()
    }
    fn get_into(&self, _i: u64, key: &[u8], buf: &mut Vec<u8>) -> bool {
        matches!(K2Hash::get_into(self, key, buf), Ok(Some(_)))
    }
}

/// `std::collections::HashMap` behind one mutex per thread shard.
struct ShardedMap {
    shards: Vec<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
}

impl ShardedMap {
    fn new(shards: usize, n: u64) -> ShardedMap {
        let per_shard = (n as usize).div_ceil(shards);
        ShardedMap {
            shards: (0..shards)
                .map(|_| Mutex::new(HashMap::with_capacity(per_shard)))
                .collect(),
        }
    }
    fn shard(&self, i: u64) -> &Mutex<HashMap<Vec<u8>, Vec<u8>>> {
        &self.shards[(i % self.shards.len() as u64) as usize]
    }
}

impl Store for ShardedMap {
    fn set(&self, i: u64, key: &[u8], value: &[u8]) -> bool {
        match self.shard(i).lock() {
            Ok(mut map) => {
                map.insert(key.to_vec(), value.to_vec());
                true
            }
            Err(_) => false,
        }
    }
    fn get_into(&self, i: u64, key: &[u8], buf: &mut Vec<u8>) -> bool {
        let Ok(map) = self.shard(i).lock() else {
            return false;
        };
        match map.get(key) {
            Some(value) => {
                buf.clear();
                buf.extend_from_slice(value);
                true
            }
            None => false,
        }
    }
}

/// The generated workload, built before any timing starts.
struct Workload {
    keys: Vec<[u8; KEY_BYTES]>,
    order: Vec<u64>,
    pattern: Vec<u8>,
    value_bytes: usize,
    threads: usize,
}

/// Runs `op` for every position `p` of `0..n` with `p % threads == t` on thread `t`;
/// returns elapsed seconds and the number of failed operations.
fn run_phase(
    work: &Workload,
    bar: &ProgressBar,
    op: impl Fn(u64, &mut Vec<u8>) -> bool + Sync,
) -> (f64, u64) {
    let n = work.keys.len() as u64;
    let start = Instant::now();
    let errors: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..work.threads as u64)
            .map(|t| {
                let op = &op;
                scope.spawn(move || {
                    let mut buf = Vec::with_capacity(work.value_bytes);
                    let mut errors = 0u64;
                    let mut done = 0u64;
                    let mut p = t;
                    while p < n {
                        if !op(p, &mut buf) {
                            errors += 1;
                        }
                        done += 1;
                        if done.is_multiple_of(PROGRESS_STEP_OPS) {
                            bar.inc(PROGRESS_STEP_OPS);
                        }
                        p += work.threads as u64;
                    }
                    errors
                })
            })
            .collect();
        // A panicking worker counts all its operations as failed rather than aborting the run.
        handles.into_iter().map(|h| h.join().unwrap_or(n)).sum()
    });
    (start.elapsed().as_secs_f64(), errors)
}

/// Set phase then get phase on `store`; returns the two lines' (secs, errors).
fn set_then_get<S: Store>(store: &S, work: &Workload) -> [(f64, u64); 2] {
    let n = work.keys.len() as u64;
    let bar = progress::bar(n, "set");
    let set = run_phase(work, &bar, |i, _| {
        let value = keygen::value_of(&work.pattern, i, work.value_bytes);
        store.set(i, &work.keys[i as usize], value)
    });
    bar.finish_and_clear();
    let bar = progress::bar(n, "get");
    let get = run_phase(work, &bar, |p, buf| {
        let i = work.order[p as usize];
        store.get_into(i, &work.keys[i as usize], buf)
            && buf.as_slice() == keygen::value_of(&work.pattern, i, work.value_bytes)
    });
    bar.finish_and_clear();
    [set, get]
}

/// Index table bits per shard so that all shards together hold `INDEX_SLOTS_PER_KEY * n`.
fn table_bits_for(n: u64, shard_bits: u32) -> u32 {
    let slots_per_shard = (INDEX_SLOTS_PER_KEY * n)
        .div_ceil(1u64 << shard_bits)
        .max(1);
    let bits = u64::BITS - (slots_per_shard - 1).leading_zeros();
    bits.clamp(
        k2hash::limits::TABLE_BITS_MIN,
        k2hash::limits::TABLE_BITS_MAX,
    )
}

fn target_name(target: BenchTarget) -> (&'static str, &'static str) {
    match target {
        BenchTarget::Memory => ("k2hash", "memory"),
        BenchTarget::Full => ("k2hash", "full"),
        BenchTarget::Index => ("k2hash", "index"),
        BenchTarget::Hashmap => ("hashmap", "mutex-per-thread-shard"),
    }
}

/// Runs the benchmark and prints its `BENCH` lines.
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(count) = args.print_keys {
        for i in 0..count {
            println!("{}", String::from_utf8_lossy(&keygen::key_at(args.seed, i)));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.n == 0 {
        anyhow::bail!("--n must be at least 1");
    }
    if args.threads == 0 || args.threads > THREADS_MAX {
        anyhow::bail!("--threads must be 1..={THREADS_MAX}, got {}", args.threads);
    }
    if args.value_bytes == 0 || args.value_bytes > k2hash::limits::VALUE_SIZE_MAX_DEFAULT {
        anyhow::bail!(
            "--value-bytes must be 1..={} (k2hash's default value_size_max), got {}",
            k2hash::limits::VALUE_SIZE_MAX_DEFAULT,
            args.value_bytes
        );
    }
    let work = Workload {
        keys: keygen::keys(args.seed, args.n),
        order: keygen::read_order(args.seed, args.n),
        pattern: keygen::value_pattern(args.value_bytes),
        value_bytes: args.value_bytes,
        threads: args.threads,
    };
    let (engine, mode) = target_name(args.target);
    let prefix = format!(
        "BENCH engine={engine} mode={mode} threads={} value_bytes={} n={}",
        args.threads, args.value_bytes, args.n
    );
    let raw_bytes = args.n * (KEY_BYTES + args.value_bytes) as u64;
    let print = |phase: &str, (secs, errors): (f64, u64)| {
        println!(
            "{prefix} phase={phase} secs={secs:.6} ops_per_sec={:.0} errors={errors}",
            args.n as f64 / secs
        );
    };

    if args.target == BenchTarget::Hashmap {
        let map = ShardedMap::new(args.threads, args.n);
        let [set, get] = set_then_get(&map, &work);
        print("set", set);
        print("get", get);
        println!("{prefix} phase=size file_bytes=0 raw_bytes={raw_bytes}");
        return Ok(ExitCode::SUCCESS);
    }

    let path: Option<PathBuf> = match args.target {
        BenchTarget::Memory => None,
        _ => Some(
            args.dir
                .join(format!("k2htool-bench-{}.k2h", std::process::id())),
        ),
    };
    let options = match (&args.target, &path) {
        (BenchTarget::Full, Some(path)) => OpenOptions::full_map(path),
        (BenchTarget::Index, Some(path)) => OpenOptions::index_map(path),
        _ => OpenOptions::memory(),
    };
    let shard_bits = k2hash::limits::SHARD_BITS_DEFAULT;
    let store = options
        .create(true)
        .temporary(path.is_some())
        .sync(args.sync)
        .shard_bits(shard_bits)
        .table_bits(table_bits_for(args.n, shard_bits))
        .open()
        .with_context(|| match &path {
            Some(p) => format!("cannot create {}", p.display()),
            None => "cannot create the memory store".to_string(),
        })?;
    let [set, get] = set_then_get(&store, &work);
    print("set", set);
    print("get", get);
    let stats = store.stats();
    println!(
        "{prefix} phase=size file_bytes={} raw_bytes={raw_bytes} used_bytes={}",
        stats.file_size, stats.used_bytes
    );
    store.close().context("cannot close the store")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_bits_give_at_least_two_slots_per_key() {
        for n in [1u64, 1000, 1_000_000, 3_000_001] {
            let bits = table_bits_for(n, 10);
            assert!((1u64 << 10) << bits >= 2 * n || bits == k2hash::limits::TABLE_BITS_MIN);
            assert!(bits == k2hash::limits::TABLE_BITS_MIN || (1u64 << 10) << (bits - 1) < 2 * n);
        }
    }

    #[test]
    fn the_hashmap_store_finds_what_it_stored() {
        let work = Workload {
            keys: keygen::keys(1, 1000),
            order: keygen::read_order(1, 1000),
            pattern: keygen::value_pattern(40),
            value_bytes: 40,
            threads: 2,
        };
        let map = ShardedMap::new(2, 1000);
        let [(_, set_errors), (_, get_errors)] = set_then_get(&map, &work);
        assert_eq!((set_errors, get_errors), (0, 0));
        let empty = ShardedMap::new(2, 1000);
        let bar = ProgressBar::hidden();
        let (_, misses) = run_phase(&work, &bar, |p, buf| {
            empty.get_into(p, &work.keys[p as usize], buf)
        });
        assert_eq!(misses, 1000);
    }
}
