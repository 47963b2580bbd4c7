//! The benchmark's error type: what went wrong and what to do about it.

use std::net::SocketAddr;

/// Everything that can stop a benchmark run (errors of single operations are counted, not
/// returned: see [`super::report::Report::errors`]).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command-line value is out of range or malformed.
    #[error("{option}: {reason}")]
    BadArgument {
        /// The option, as typed (`--get-ratio`).
        option: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The memcached server could not be reached.
    #[error("cannot connect to memcached at {addr}: {source} (is it running? check --servers)")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// A `--servers` entry is not `host:port` or does not resolve.
    #[error("--servers {given:?}: {reason}")]
    BadServer {
        /// The entry as given.
        given: String,
        /// Why it was refused.
        reason: String,
    },
    /// The preload phase could not store every key.
    #[error("preload failed after {stored} of {keys} keys: {reason}")]
    Preload {
        /// Keys stored before the failure.
        stored: u64,
        /// Keys to store.
        keys: u64,
        /// The first failure.
        reason: String,
    },
    /// The native driver could not attach.
    #[error("native client: {0}")]
    Native(String),
    /// A worker task ended abnormally (a bug in the benchmark: report it).
    #[error("a benchmark worker failed: {0}")]
    Worker(String),
    /// Building the async runtime failed.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}
