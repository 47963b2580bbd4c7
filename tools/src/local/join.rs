//! Server nodes new to a data directory: `dkc-local up --nodes N` on a directory whose cluster
//! had fewer nodes. Each server chmpx keeps its ring state in
//! `DATADIR/<GROUP>-<CTLPORT>/ring.json`; a node without one, in a run where another node has
//! one, is new, and chmpx starts it SERVICE OUT. `up` takes each in with SERVICEIN once the
//! cluster is up, one at a time, and waits for its merge, so the data moves to it.
//! (Fewer nodes than the directory's cluster had: chmpx refuses to start, naming the node.)

use std::path::Path;
use std::time::Duration;

use chmpx::config::Config;
use chmpx::daemon::ring_file;
use chmpx::daemon::status::{Ring, StatusReport};
use chmpx::placement::NodeId;
use chmpx::testkit::control;
use chmpx::testkit::ini::LOCAL_HOST;

use super::ready::EXCHANGE_TIMEOUT_MS;

/// Longest wait for one node's SERVICEIN merge (the whole data set may move).
pub const JOIN_MERGE_WAIT_SECS: u64 = 600;

/// Control ports of the server nodes of `server_ini` new to this directory's cluster (none
/// for a new directory, where every node starts SERVICE IN). The ring files are where chmpx
/// keeps them for that file ([`Config::node_data_dir`]).
pub fn new_nodes(server_ini: &Path) -> anyhow::Result<Vec<u16>> {
    let cfg = Config::load(server_ini)?;
    let (saved, new): (Vec<_>, Vec<_>) = cfg
        .servers
        .iter()
        .partition(|n| ring_file::path_in(&cfg.node_data_dir(n)).exists());
    Ok(if saved.is_empty() {
        Vec::new()
    } else {
        new.iter().map(|n| n.ctlport).collect()
    })
}

/// The node id of server node `ctlport`.
pub fn node_id(ctlport: u16) -> NodeId {
    NodeId::from_host_port(LOCAL_HOST, ctlport)
}

/// Gives SERVICEIN for `ctlport` through the slave; the coordinator's answer.
pub fn service_in(slave_ctlport: u16, ctlport: u16) -> anyhow::Result<String> {
    let line = format!("SERVICEIN {}", node_id(ctlport));
    let (ok, text) = control::command(
        control::addr(slave_ctlport),
        &line,
        Duration::from_millis(EXCHANGE_TIMEOUT_MS),
    )?;
    if !ok {
        anyhow::bail!("{line} refused: {}", text.trim_end());
    }
    Ok(text.trim_end().to_string())
}

/// True once `report` shows `ctlport` SERVICE IN with no change pending and no merge running.
pub fn joined(report: &StatusReport, ctlport: u16) -> bool {
    let id = node_id(ctlport);
    report.pending_epoch.is_none()
        && control::merges_idle(report)
        && report
            .nodes
            .iter()
            .any(|n| n.id == id.as_str() && n.ring == Ring::ServiceIn)
}
