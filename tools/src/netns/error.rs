//! Errors of the lab: what failed, on which host, and what to check.

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Not root, or namespaces are not available.
    #[error(
        "multi-host tests need root and network, IPC and mount namespaces \
         (unshare --net --ipc --mount): {0}; run as root on Linux with iproute2 and iptables"
    )]
    NotPermitted(String),
    /// A system tool could not be started.
    #[error("cannot run {tool}: {source}; is it installed (apt-get install -y iproute2 iptables util-linux)?")]
    Tool {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    /// A command inside a namespace failed.
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    /// A holder did not report its namespaces ready.
    #[error("namespace holder for {name} did not become ready: {detail}")]
    Holder { name: String, detail: String },
    /// A host index or spec outside the lab.
    #[error("bad lab request: {0}")]
    Bad(String),
    /// A process did not finish within its time limit (it was killed).
    #[error("{what} did not finish within {limit_ms} ms (killed)")]
    Timeout { what: String, limit_ms: u64 },
    /// Any other I/O failure.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl NetnsError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> NetnsError {
        NetnsError::Io {
            what: what.into(),
            source,
        }
    }
}
