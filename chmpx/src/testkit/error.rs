//! The one error type of the testkit: each variant names what failed and what to do.

use std::path::PathBuf;

/// What went wrong while preparing, starting or asking a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The generated INI does not parse: a bug in the caller's [`super::ini::ClusterIni`].
    #[error("the generated config is refused by chmpx: {source}\n{text}")]
    Config {
        source: Box<crate::config::ConfigError>,
        text: String,
    },
    /// A file (config or log) could not be created or written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No free TCP port could be bound on 127.0.0.1.
    #[error("cannot find free ports on 127.0.0.1: {0}")]
    Ports(std::io::Error),
    /// The executable could not be started (missing or not built).
    #[error("cannot start {name} ({program}): {source}; build it first (cargo build --bins)")]
    Spawn {
        name: String,
        program: PathBuf,
        source: std::io::Error,
    },
    /// No running child has this name.
    #[error("no process named {0} runs")]
    NoSuchProcess(String),
    /// kill(2) failed.
    #[error("signal {signal} to {name} (pid {pid}): {source}")]
    Signal {
        name: String,
        pid: u32,
        signal: i32,
        source: std::io::Error,
    },
    /// The control port did not answer (not started yet, dead, or not this port).
    #[error("control port {addr}: {line}: {source}")]
    Control {
        addr: std::net::SocketAddr,
        line: String,
        source: std::io::Error,
    },
    /// Our own executable's location is unknown.
    #[error("cannot find the current executable: {0}")]
    CurrentExe(std::io::Error),
}
