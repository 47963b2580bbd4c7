//! A chmpx control port seen from outside: one command line and its answer, the `STATUSJSON`
//! report parsed, the readiness predicates every launcher waits on, and a bounded wait that
//! polls a node's status (never a fixed sleep).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::LaunchError;
use crate::daemon::status::{Live, MergeState, Ring, StatusReport};

/// Pause between two status polls of [`wait_for_status`].
pub const STATUS_POLL_INTERVAL_MS: u64 = 50;

/// The control address of a node on 127.0.0.1.
pub fn addr(ctlport: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ctlport))
}

/// Sends one command line; `(ok, text)` when the port answered within `timeout`.
///
/// Runs its own current-thread runtime, so it must not be called from async code.
pub fn command(
    addr: SocketAddr,
    line: &str,
    timeout: Duration,
) -> Result<(bool, String), LaunchError> {
    let err = |source| LaunchError::Control {
        addr,
        line: line.to_string(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    rt.block_on(crate::daemon::control::query(addr, line, timeout))
        .map_err(err)
}

/// The node's `STATUSJSON` report; `None` while it does not answer, refuses, or answers
/// something that does not parse.
pub fn status(addr: SocketAddr, timeout: Duration) -> Option<StatusReport> {
    let (ok, text) = command(addr, "STATUSJSON", timeout).ok()?;
    if !ok {
        return None;
    }
    serde_json::from_str(text.trim()).ok()
}

/// Whether every server node is UP with its server process attached, in this node's view.
pub fn servers_ready(r: &StatusReport) -> bool {
    r.nodes
        .iter()
        .filter(|n| n.ring != Ring::Slave)
        .all(|n| n.live == Live::Up && n.server_attached)
}

/// Whether no server node has a merge pending or under way, in this node's view. A server
/// that attaches reconciles its slots (recovery merge) and serves no reads of them until that
/// is done, so a launcher that wants reads to work waits for this too.
pub fn merges_idle(r: &StatusReport) -> bool {
    r.nodes
        .iter()
        .filter(|n| n.ring != Ring::Slave)
        .all(|n| matches!(n.merge, MergeState::Nothing | MergeState::Done))
}

/// Why [`wait_for_status`] gave up.
#[derive(Debug)]
pub enum WaitError {
    /// The deadline passed; the last report seen, if the node ever answered.
    TimedOut { last: Option<Box<StatusReport>> },
    /// The caller's `abort` check said to stop (e.g. a child died), with its reason.
    Aborted(String),
}

/// Polls the status of the node at `addr` (each ask bounded by `ask_timeout`) until `pred`
/// holds, and returns that report. Between polls `abort` may end the wait early with a reason.
pub fn wait_for_status(
    addr: SocketAddr,
    ask_timeout: Duration,
    deadline: Instant,
    pred: impl Fn(&StatusReport) -> bool,
    mut abort: impl FnMut() -> Option<String>,
) -> Result<StatusReport, WaitError> {
    let mut last = None;
    loop {
        if let Some(r) = status(addr, ask_timeout) {
            if pred(&r) {
                return Ok(r);
            }
            last = Some(Box::new(r));
        }
        if let Some(why) = abort() {
            return Err(WaitError::Aborted(why));
        }
        if Instant::now() >= deadline {
            return Err(WaitError::TimedOut { last });
        }
        std::thread::sleep(Duration::from_millis(STATUS_POLL_INTERVAL_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_gives_no_status_and_the_wait_ends() {
        // A port that was free a moment ago: nothing answers there.
        let port = super::super::ports::free_ports(1).unwrap()[0];
        assert!(status(addr(port), Duration::from_millis(500)).is_none());
        let deadline = Instant::now() + Duration::from_millis(200);
        let r = wait_for_status(
            addr(port),
            Duration::from_millis(100),
            deadline,
            |_| true,
            || None,
        );
        assert!(matches!(r, Err(WaitError::TimedOut { last: None })));
        let mut polls = 0;
        let r = wait_for_status(
            addr(port),
            Duration::from_millis(100),
            Instant::now() + Duration::from_secs(10),
            |_| true,
            || {
                polls += 1;
                (polls == 2).then(|| "stop".to_string())
            },
        );
        assert!(matches!(r, Err(WaitError::Aborted(ref w)) if w == "stop"));
    }
}
