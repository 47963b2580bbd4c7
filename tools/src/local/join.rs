//! Server nodes new to a data directory: `dkc-local up --nodes N` on a directory whose cluster
//! had fewer nodes. Each server chmpx keeps its ring state in
//! `DATADIR/<GROUP>-<CTLPORT>/ring.json`; a node without one, in a run where another node has
//! one, is new, and chmpx starts it SERVICE OUT. `up` takes each in with SERVICEIN once the
//! cluster is up, one at a time, and waits for its merge, so the data moves to it.
//! (Fewer nodes than the directory's cluster had: chmpx refuses to start, naming the node.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use chmpx::daemon::ring_file::RING_FILE_NAME;
use chmpx::daemon::status::{Ring, StatusReport};
use chmpx::testkit::control;

use super::config_gen::Plan;
use super::ready::EXCHANGE_TIMEOUT_MS;

/// Longest wait for one node's SERVICEIN merge (the whole data set may move).
pub const JOIN_MERGE_WAIT_SECS: u64 = 600;

/// The host every node of a local run is on.
const HOST: &str = "127.0.0.1";

/// Where the chmpx of server node `ctlport` keeps its ring state.
pub fn ring_file(plan: &Plan, ctlport: u16) -> PathBuf {
    Path::new(&plan.datadir)
        .join(format!("{}-{ctlport}", plan.group))
        .join(RING_FILE_NAME)
}

/// Control ports of the server nodes new to this directory's cluster (none for a new
/// directory, where every node starts SERVICE IN).
pub fn new_nodes(plan: &Plan) -> Vec<u16> {
    let (saved, new): (Vec<u16>, Vec<u16>) = plan
        .nodes
        .iter()
        .map(|n| n.ctlport)
        .partition(|&c| ring_file(plan, c).exists());
    if saved.is_empty() {
        Vec::new()
    } else {
        new
    }
}

/// The node id of server node `ctlport`.
pub fn node_id(ctlport: u16) -> String {
    format!("{HOST}:{ctlport}")
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
            .any(|n| n.id == id && n.ring == Ring::ServiceIn)
}
