//! Command-line arguments of `dkc-bench` and their checks.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::duration::parse_duration;
use super::error::BenchError;
use super::workload::{KEYS_MAX, VALUE_SIZE_MAX};

/// Most connections (each is a socket and a task).
pub const CONNECTIONS_MAX: usize = 4_096;
/// Most requests in flight per connection.
pub const PIPELINE_MAX: usize = 1_024;
/// Most runtime worker threads.
pub const THREADS_MAX: usize = 256;
/// Most memcached servers or metrics endpoints.
pub const ENDPOINTS_MAX: usize = 64;

#[derive(Debug, Parser)]
#[command(
    name = "dkc-bench",
    version,
    about = "load generator for memcached-protocol servers and the dkc native driver: ops/s and \
             latency percentiles (HdrHistogram)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Load a memcached-protocol server (memcached, dkc-memcached) over TCP, text protocol.
    Memcached(MemcachedArgs),
    /// Load a dkc cluster through the Rust driver (AsyncClient) attached to this host's chmpx.
    Native(NativeArgs),
}

#[derive(Debug, Args, Clone)]
pub struct MemcachedArgs {
    /// Comma-separated host:port list; connection i goes to server i mod count.
    #[arg(long, default_value = "127.0.0.1:11211")]
    pub servers: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args, Clone)]
pub struct NativeArgs {
    /// The cluster config this host's (slave) chmpx runs with.
    #[arg(long)]
    pub conf: PathBuf,
    /// Control port of the chmpx to attach to, when the config lists several on this host.
    #[arg(long)]
    pub ctlport: Option<u16>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Concurrent connections (native: concurrent callers), each with --pipeline requests in
    /// flight.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Requests sent at once per connection before reading their replies (memcached only).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Bytes per value.
    #[arg(long = "value-size", default_value_t = 1024)]
    pub value_size: usize,
    /// Keys in the key space (dkcb:0000000000 ...); every operation picks one uniformly.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Store every key once before the run (not timed), so gets hit.
    #[arg(long)]
    pub preload: bool,
    /// Share of gets, 0 to 1; the rest are sets.
    #[arg(long = "get-ratio", default_value_t = 0.9)]
    pub get_ratio: f64,
    /// Measured time (ms, s, m, h), after the warm-up.
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// Time run before measuring, excluded from every figure.
    #[arg(long, default_value = "2s")]
    pub warmup: String,
    /// Stop after this many measured operations (or at --duration, whichever comes first).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Seed of the operation streams (the same seed replays the same operations).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Longest wait for one request (or pipelined batch); longer counts as an error.
    #[arg(long, default_value = "5s")]
    pub timeout: String,
    /// Runtime worker threads (1 = one thread, leaving the other cores to the servers).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// chmpx metrics endpoint (host:port of METRICSPORT), comma-separated; reports chmpx
    /// messages and bytes per operation, summed over the endpoints.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Print the report as one JSON line on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The checked form of [`LoadArgs`].
#[derive(Debug, Clone)]
pub struct Load {
    pub connections: usize,
    pub pipeline: usize,
    pub value_size: usize,
    pub keys: u64,
    pub preload: bool,
    pub get_ratio: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub ops: Option<u64>,
    pub seed: u64,
    pub timeout: Duration,
    pub threads: usize,
    pub metrics: Vec<SocketAddr>,
    pub json: bool,
}

fn bad(option: &'static str, reason: impl Into<String>) -> BenchError {
    BenchError::BadArgument {
        option,
        reason: reason.into(),
    }
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    option: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, BenchError> {
    if v < lo || v > hi {
        return Err(bad(
            option,
            format!("{v} is out of range; use {lo} to {hi}"),
        ));
    }
    Ok(v)
}

impl LoadArgs {
    /// Checks every value; the error names the option and what it accepts.
    pub fn check(&self) -> Result<Load, BenchError> {
        if !(0.0..=1.0).contains(&self.get_ratio) {
            return Err(bad(
                "--get-ratio",
                format!(
                    "{} is not a share; use 0 to 1 (0.9 = 90% gets)",
                    self.get_ratio
                ),
            ));
        }
        let duration = parse_duration(&self.duration).map_err(|r| bad("--duration", r))?;
        let warmup = parse_duration(&self.warmup).map_err(|r| bad("--warmup", r))?;
        let timeout = parse_duration(&self.timeout).map_err(|r| bad("--timeout", r))?;
        if timeout.is_zero() {
            return Err(bad("--timeout", "must be above zero"));
        }
        if duration.is_zero() && self.ops.is_none() {
            return Err(bad(
                "--duration",
                "zero with no --ops would measure nothing",
            ));
        }
        if self.ops == Some(0) {
            return Err(bad("--ops", "0 would measure nothing; use 1 or more"));
        }
        Ok(Load {
            connections: in_range("--connections", self.connections, 1, CONNECTIONS_MAX)?,
            pipeline: in_range("--pipeline", self.pipeline, 1, PIPELINE_MAX)?,
            value_size: in_range("--value-size", self.value_size, 0, VALUE_SIZE_MAX)?,
            keys: in_range("--keys", self.keys, 1, KEYS_MAX)?,
            preload: self.preload,
            get_ratio: self.get_ratio,
            duration,
            warmup,
            ops: self.ops,
            seed: self.seed,
            timeout,
            threads: in_range("--threads", self.threads, 1, THREADS_MAX)?,
            metrics: match &self.metrics {
                Some(list) => resolve_list("--metrics", list)?,
                None => Vec::new(),
            },
            json: self.json,
        })
    }
}

/// Resolves a comma-separated host:port list.
pub fn resolve_list(option: &'static str, list: &str) -> Result<Vec<SocketAddr>, BenchError> {
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let addr = entry
            .to_socket_addrs()
            .map_err(|e| BenchError::BadServer {
                given: entry.to_string(),
                reason: format!("{e} (expected host:port, e.g. 127.0.0.1:11211)"),
            })?
            .next()
            .ok_or_else(|| BenchError::BadServer {
                given: entry.to_string(),
                reason: "resolves to no address".into(),
            })?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err(bad(option, "no host:port given"));
    }
    if out.len() > ENDPOINTS_MAX {
        return Err(bad(option, format!("more than {ENDPOINTS_MAX} entries")));
    }
    Ok(out)
}
