//! Deferred doorbells: the requests of one burst wake chmpx once.
//!
//! With `AttachOptions::defer_doorbell`, a push that finds chmpx asleep does not ring at once:
//! it marks the doorbell owed and files the connection here; the process rings every owed
//! doorbell when it calls [`flush_deferred_doorbells`] (dkc-memcached calls it from its tokio
//! runtime's `on_thread_park` hook, i.e. when a worker has run every task it had, so all the
//! requests that burst produced are in the ring), or when a connection has taken
//! `DEFERRED_DOORBELL_FRAMES_MAX` frames since its doorbell became owed (a worker that never
//! parks still rings). The pump thread flushes too before it sleeps. A flush that never comes
//! costs latency, not messages: chmpx wakes by itself at its next liveness check and reads
//! the ring.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::Conn;
use crate::attach::options::DEFERRED_DOORBELL_FRAMES_MAX;
use crate::attach::wire::Doorbell;

/// What a deferred doorbell needs of a connection (a trait so the bookkeeping is testable
/// without queues).
pub(super) trait DoorbellOwner: Send + Sync {
    /// Set while a doorbell is owed and not sent.
    fn owed(&self) -> &AtomicBool;
    /// Frames pushed since the doorbell became owed.
    fn owed_frames(&self) -> &AtomicU32;
    /// Sends the doorbell.
    fn ring_now(&self);
}

impl DoorbellOwner for Conn {
    fn owed(&self) -> &AtomicBool {
        &self.doorbell_owed
    }
    fn owed_frames(&self) -> &AtomicU32 {
        &self.owed_frames
    }
    fn ring_now(&self) {
        if let Err(e) = self.up_q.send(&Doorbell::Data.encode()) {
            // A full doorbell queue means a wake-up is already pending; anything else is a
            // broken attachment, which the liveness checks find.
            tracing::debug!(
                attach_id = self.attach_id,
                "deferred doorbell not sent: {e}"
            );
        }
    }
}

/// Connections with an owed doorbell.
pub(super) struct Registry {
    /// Whether any doorbell is owed (read without the lock on every flush).
    any_owed: AtomicBool,
    owed: Mutex<Vec<Arc<dyn DoorbellOwner>>>,
}

/// The process's registry (every attachment of the process files its owed doorbells here).
static GLOBAL: Registry = Registry::new();

impl Registry {
    const fn new() -> Registry {
        Registry {
            any_owed: AtomicBool::new(false),
            owed: Mutex::new(Vec::new()),
        }
    }

    /// After a frame was published on `conn`'s ring. `consumer_slept`: the push found chmpx
    /// asleep (and cleared its flag), so a doorbell is now owed.
    fn after_push<C: DoorbellOwner + 'static>(&self, conn: &Arc<C>, consumer_slept: bool) {
        if consumer_slept && !conn.owed().swap(true, Ordering::AcqRel) {
            conn.owed_frames().store(0, Ordering::Relaxed);
            let entry: Arc<dyn DoorbellOwner> = conn.clone();
            self.owed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(entry);
            self.any_owed.store(true, Ordering::Release);
        }
        if conn.owed().load(Ordering::Acquire)
            && conn.owed_frames().fetch_add(1, Ordering::Relaxed) + 1
                >= DEFERRED_DOORBELL_FRAMES_MAX
        {
            ring_if_owed(&**conn);
        }
    }

    fn flush(&self) {
        if !self.any_owed.load(Ordering::Acquire) {
            return;
        }
        let owed = {
            let mut g = self.owed.lock().unwrap_or_else(|p| p.into_inner());
            self.any_owed.store(false, Ordering::Release);
            std::mem::take(&mut *g)
        };
        for conn in owed {
            ring_if_owed(&*conn);
        }
    }
}

/// After a frame was published on `conn`'s ring (see [`Registry::after_push`]).
pub(super) fn after_push(conn: &Arc<Conn>, consumer_slept: bool) {
    GLOBAL.after_push(conn, consumer_slept);
}

/// Rings every doorbell this process owes chmpx. Cheap when none is owed (one atomic load),
/// so it may run on every park of a runtime worker.
pub fn flush_deferred_doorbells() {
    GLOBAL.flush();
}

fn ring_if_owed(conn: &dyn DoorbellOwner) {
    if conn.owed().swap(false, Ordering::AcqRel) {
        conn.ring_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Fake {
        owed: AtomicBool,
        frames: AtomicU32,
        rings: AtomicUsize,
    }

    impl DoorbellOwner for Fake {
        fn owed(&self) -> &AtomicBool {
            &self.owed
        }
        fn owed_frames(&self) -> &AtomicU32 {
            &self.frames
        }
        fn ring_now(&self) {
            self.rings.fetch_add(1, Ordering::SeqCst);
        }
    }

    // Each test its own registry: the process's is flushed by any attachment's pump thread.
    fn rings(f: &Fake) -> usize {
        f.rings.load(Ordering::SeqCst)
    }

    #[test]
    fn a_burst_rings_once_at_the_flush() {
        let r = Registry::new();
        let f = Arc::new(Fake::default());
        r.after_push(&f, true);
        for _ in 0..3 {
            r.after_push(&f, false);
        }
        assert_eq!(rings(&f), 0, "deferred: nothing rung before the flush");
        r.flush();
        assert_eq!(rings(&f), 1, "the flush rings the owed doorbell once");
        r.flush();
        assert_eq!(rings(&f), 1, "a second flush owes nothing");
    }

    #[test]
    fn pushes_without_a_sleeping_consumer_owe_nothing() {
        let r = Registry::new();
        let f = Arc::new(Fake::default());
        for _ in 0..(DEFERRED_DOORBELL_FRAMES_MAX * 2) {
            r.after_push(&f, false);
        }
        r.flush();
        assert_eq!(rings(&f), 0);
    }

    #[test]
    fn a_long_burst_rings_without_waiting_for_the_flush() {
        let r = Registry::new();
        let f = Arc::new(Fake::default());
        r.after_push(&f, true);
        for _ in 1..DEFERRED_DOORBELL_FRAMES_MAX {
            r.after_push(&f, false);
        }
        assert_eq!(rings(&f), 1, "rung at the frame bound");
        r.flush();
        assert_eq!(rings(&f), 1, "and not again by the flush");
        // chmpx slept again: a new owed doorbell.
        r.after_push(&f, true);
        r.flush();
        assert_eq!(rings(&f), 2);
    }
}
