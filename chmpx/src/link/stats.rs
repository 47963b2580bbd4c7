//! Counters of the link layer: plain atomics the daemon reads (and exports to Prometheus) without
//! taking a lock, plus the per-peer snapshot `LinkHandle::peer_states` returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Manager-wide counters.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Inbound connections closed before a link formed (unknown source, bad Hello, bad proof,
    /// wrong cluster or version, handshake timeout).
    pub refused_connections: AtomicU64,
    /// Frames that could not be decoded or broke the protocol; each closed its connection.
    pub bad_frames: AtomicU64,
    /// Handshakes (either direction) that failed.
    pub handshake_failures: AtomicU64,
    /// Links that came up.
    pub links_up: AtomicU64,
}

/// A copy of [`LinkStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStatsSnapshot {
    pub refused_connections: u64,
    pub bad_frames: u64,
    pub handshake_failures: u64,
    pub links_up: u64,
}

impl LinkStats {
    pub fn snapshot(&self) -> LinkStatsSnapshot {
        LinkStatsSnapshot {
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            bad_frames: self.bad_frames.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            links_up: self.links_up.load(Ordering::Relaxed),
        }
    }
}

/// Per-peer traffic counters (they keep counting across reconnects).
#[derive(Debug, Default)]
pub struct PeerCounters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Messages accepted by `send` but dropped because the link went down before they left.
    pub dropped: AtomicU64,
}

impl PeerCounters {
    pub fn add_in(&self, bytes: usize) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn add_out(&self, frames: u64, bytes: usize) {
        self.frames_out.fetch_add(frames, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// One peer as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub id: String,
    pub up: bool,
    /// When `up` last changed (or when the manager started).
    pub since: Instant,
    /// Last heartbeat round-trip time.
    pub rtt: Option<Duration>,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub dropped: u64,
    /// Messages waiting in the outbound queue.
    pub queued: usize,
    /// Bytes those messages hold of the queue's byte budget.
    pub queued_bytes: usize,
    pub last_heartbeat: Option<Instant>,
    /// The peer's own view from its last heartbeat: placement epoch and status word.
    pub peer_epoch: u64,
    pub peer_status: u32,
}
