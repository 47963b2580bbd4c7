//! Errors the link layer returns to the daemon.

use std::time::Duration;

use super::frame::FrameError;

/// Why a message was not queued for a peer. The daemon fails over on `PeerDown`, retries later
/// or sheds load on `Full`/`Timeout`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("peer {peer:?} is not configured")]
    UnknownPeer { peer: String },
    #[error("peer {peer:?} is DOWN; send to another owner")]
    PeerDown { peer: String },
    #[error("queue to peer {peer:?} is full ({depth} messages); the peer or network is slow")]
    Full { peer: String, depth: usize },
    #[error("no room in the queue to peer {peer:?} within {waited:?}")]
    Timeout { peer: String, waited: Duration },
    #[error("message for peer {peer:?} does not fit in a frame: {source}")]
    TooLarge { peer: String, source: FrameError },
    #[error("the link manager is shut down")]
    Shutdown,
}

/// Why the manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid link options: {0}")]
    Options(String),
    #[error("peer list: {0}")]
    Peers(String),
    #[error("cannot bind the data port {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
