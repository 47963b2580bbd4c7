//! Which server nodes the cluster has: the driver needs them for commands that go to every
//! node (scan, stats, flush), which chmpx routes one node at a time (`Route::Node`).

use std::net::SocketAddr;
use std::time::Duration;

use chmpx::config::Config;
use chmpx::daemon::status::{Ring, StatusReport};

use super::error::{ClientError, Result};

/// Longest wait for the local chmpx's control port to answer STATUSJSON.
pub const STATUS_QUERY_TIMEOUT_MS: u64 = 5_000;

/// The cluster as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// GROUP.
    pub cluster: String,
    /// CTLPORT of the local chmpx.
    pub ctlport: u16,
    /// Server node ids ("host:ctlport"), in config order.
    pub servers: Vec<String>,
    /// REPLICA: how many server nodes may fail before a whole-cluster scan misses keys.
    pub replica: u32,
}

impl Topology {
    /// From a config file and this process's entry.
    pub fn from_config(cfg: &Config, ctlport: u16) -> Topology {
        Topology {
            cluster: cfg.global.group.clone(),
            ctlport,
            servers: cfg.servers.iter().map(|n| n.id().to_string()).collect(),
            replica: cfg.global.replica,
        }
    }

    /// From a status report of the local chmpx.
    pub fn from_status(report: &StatusReport, ctlport: u16) -> Topology {
        Topology {
            cluster: report.cluster.clone(),
            ctlport,
            servers: report
                .nodes
                .iter()
                .filter(|n| n.ring != Ring::Slave && n.port.is_some())
                .map(|n| n.id.clone())
                .collect(),
            replica: report.replica,
        }
    }

    /// Asks the chmpx at 127.0.0.1:`ctlport` for its status (STATUSJSON).
    pub async fn query(ctlport: u16) -> Result<Topology> {
        let addr = SocketAddr::from(([127, 0, 0, 1], ctlport));
        let timeout = Duration::from_millis(STATUS_QUERY_TIMEOUT_MS);
        let (ok, text) = chmpx::daemon::control::query(addr, "STATUSJSON", timeout)
            .await
            .map_err(|e| ClientError::Unavailable {
                reason: format!("cannot ask chmpx at {addr} for the cluster's nodes: {e}"),
            })?;
        if !ok {
            return Err(ClientError::Unavailable {
                reason: format!("chmpx at {addr} refused STATUSJSON: {}", text.trim()),
            });
        }
        let report: StatusReport = serde_json::from_str(text.trim()).map_err(|e| {
            ClientError::Protocol(format!(
                "chmpx at {addr} sent a status this client cannot read: {e}"
            ))
        })?;
        Ok(Topology::from_status(&report, ctlport))
    }

    /// Blocking form of [`Topology::query`] (runs a small runtime of its own).
    pub fn query_blocking(ctlport: u16) -> Result<Topology> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Unavailable {
                reason: format!("cannot start a runtime to query chmpx: {e}"),
            })?;
        rt.block_on(Topology::query(ctlport))
    }
}
