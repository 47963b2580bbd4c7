//! Shared per-peer state: the outbound queue's sending end, the UP flag, counters and the latest
//! heartbeat facts. Written by the peer's driver and session, read by `LinkHandle`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::event::Queued;
use super::options::PeerSpec;
use super::stats::{PeerCounters, PeerState};

/// Facts that change together, behind one short-held lock.
#[derive(Debug)]
pub struct PeerStatus {
    pub since: Instant,
    pub rtt: Option<Duration>,
    pub last_heartbeat: Option<Instant>,
    pub peer_epoch: u64,
    pub peer_status: u32,
    /// Sequence number and send time of the last heartbeat, to time its ack.
    pub heartbeat_sent: Option<(u64, Instant)>,
}

pub struct PeerShared {
    pub spec: PeerSpec,
    pub up: AtomicBool,
    pub counters: PeerCounters,
    pub status: Mutex<PeerStatus>,
    pub tx: mpsc::Sender<Queued>,
    /// Byte budget of the queue: a message holds `queue_cost` permits until encoded.
    pub budget: Arc<Semaphore>,
    pub budget_max: usize,
}

impl PeerShared {
    pub fn new(spec: PeerSpec, tx: mpsc::Sender<Queued>, budget_max: usize) -> Self {
        PeerShared {
            spec,
            up: AtomicBool::new(false),
            counters: PeerCounters::default(),
            status: Mutex::new(PeerStatus {
                since: Instant::now(),
                rtt: None,
                last_heartbeat: None,
                peer_epoch: 0,
                peer_status: 0,
                heartbeat_sent: None,
            }),
            tx,
            budget: Arc::new(Semaphore::new(budget_max)),
            budget_max,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Flips the UP flag; returns whether it changed.
    pub fn set_up(&self, up: bool) -> bool {
        let changed = self.up.swap(up, Ordering::AcqRel) != up;
        if changed {
            self.with_status(|s| s.since = Instant::now());
        }
        changed
    }

    /// Runs `f` under the status lock. A poisoned lock only means a panic elsewhere while
    /// updating plain numbers; the numbers are still usable.
    pub fn with_status<T>(&self, f: impl FnOnce(&mut PeerStatus) -> T) -> T {
        let mut guard = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn snapshot(&self) -> PeerState {
        let c = &self.counters;
        let queued = self.tx.max_capacity() - self.tx.capacity();
        self.with_status(|s| PeerState {
            id: self.spec.id.clone(),
            up: self.is_up(),
            since: s.since,
            rtt: s.rtt,
            frames_in: c.frames_in.load(Ordering::Relaxed),
            frames_out: c.frames_out.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            queued,
            queued_bytes: self
                .budget_max
                .saturating_sub(self.budget.available_permits()),
            last_heartbeat: s.last_heartbeat,
            peer_epoch: s.peer_epoch,
            peer_status: s.peer_status,
        })
    }
}

/// This node's own view, sent in every heartbeat; the daemon updates it.
#[derive(Debug, Default)]
pub struct LocalView {
    pub epoch: AtomicU64,
    pub status: AtomicU32,
}
