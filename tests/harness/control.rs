//! The chmpx control port: one command line, one answer (`OK` + text or `ERR reason`), and the
//! `STATUSJSON` report parsed into `chmpx::daemon::status::StatusReport`.

use std::net::SocketAddr;
use std::time::Duration;

use chmpx::daemon::status::{Live, MergeState, Ring, StatusReport};
use chmpx::placement::{NodeId, PlacementMap};

/// How long one control command may take.
pub const CONTROL_TIMEOUT_MS: u64 = 8000;

/// The control address of a node on 127.0.0.1.
pub fn addr(ctlport: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ctlport))
}

/// Sends one command; `Ok((ok, text))` when the port answered, `Err` when it did not.
pub fn command(ctlport: u16, line: &str) -> Result<(bool, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(chmpx::daemon::control::query(
        addr(ctlport),
        line,
        Duration::from_millis(CONTROL_TIMEOUT_MS),
    ))
    .map_err(|e| format!("control port {ctlport}: {line}: {e}"))
}

/// The node's `STATUSJSON` report; `None` when it does not answer or answers garbage.
pub fn status(ctlport: u16) -> Option<StatusReport> {
    let (ok, text) = command(ctlport, "STATUSJSON").ok()?;
    if !ok {
        return None;
    }
    serde_json::from_str(text.trim()).ok()
}

/// Ids of the SERVICE IN server nodes of a report.
pub fn members(r: &StatusReport) -> Vec<NodeId> {
    r.nodes
        .iter()
        .filter(|n| n.ring == Ring::ServiceIn)
        .map(|n| NodeId::new(&n.id))
        .collect()
}

/// The placement map the reporting node works with (its epoch, its SERVICE IN members).
pub fn placement(r: &StatusReport) -> Result<PlacementMap, String> {
    PlacementMap::compute(r.epoch, &members(r), r.slot_count, r.replica)
        .map_err(|e| format!("placement of epoch {}: {e}", r.epoch))
}

/// Whether every server node is UP with its dkc-server attached, in this node's view.
pub fn all_servers_ready(r: &StatusReport) -> bool {
    r.nodes
        .iter()
        .filter(|n| n.ring != Ring::Slave)
        .all(|n| n.live == Live::Up && n.server_attached)
}

/// Whether nothing is pending or merging, in this node's view.
pub fn settled(r: &StatusReport) -> bool {
    r.pending_epoch.is_none()
        && r.nodes
            .iter()
            .all(|n| !matches!(n.merge, MergeState::Doing | MergeState::Pending))
}

/// A one-line summary of a report (epoch, and per node live/ring/merge/attached).
pub fn summary(r: &StatusReport) -> String {
    let nodes: Vec<String> = r
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{}={}/{}/{}/{}",
                n.id,
                n.live.word(),
                n.ring.word(),
                n.merge.word(),
                if n.server_attached { "srv" } else { "-" }
            )
        })
        .collect();
    format!(
        "[{} epoch {} pending {:?}] {}",
        r.self_id,
        r.epoch,
        r.pending_epoch,
        nodes.join(" ")
    )
}
