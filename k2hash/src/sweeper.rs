//! Background sweeper: every `SWEEP_INTERVAL_MS` it reclaims expired records in the next
//! `SWEEP_SHARDS_PER_PASS` shards (round robin), so expired space is reused without a
//! separate step and each pass does bounded work; every `COALESCE_INTERVAL_PASSES` passes it
//! merges adjacent free blocks so freed small blocks can serve larger records. It holds only a weak reference, so it
//! never keeps a store alive.

use crate::engine::Engine;
use crate::limits::{
    COALESCE_FREE_BYTES_MIN, COALESCE_INTERVAL_PASSES, SWEEP_INTERVAL_MS, SWEEP_SHARDS_PER_PASS,
};
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn start(eng: &Arc<Engine>) {
    let weak = Arc::downgrade(eng);
    let stop = eng.stop.clone();
    let h = std::thread::Builder::new()
        .name("k2hash-sweeper".into())
        .spawn(move || {
            let mut next = 0usize;
            let mut passes = 0u64;
            loop {
                {
                    let (m, cv) = &*stop;
                    let mut s = m.lock();
                    if !*s {
                        cv.wait_for(&mut s, Duration::from_millis(SWEEP_INTERVAL_MS));
                    }
                    if *s {
                        return;
                    }
                }
                let Some(e) = weak.upgrade() else { return };
                // Errors (e.g. a corrupted record) are reported to callers by the operations
                // themselves; the sweeper just moves on.
                let _ = e.reclaim_expired_shards(next, SWEEP_SHARDS_PER_PASS);
                next = (next + SWEEP_SHARDS_PER_PASS) % e.shards.len();
                passes += 1;
                if passes.is_multiple_of(COALESCE_INTERVAL_PASSES)
                    && e.alloc.free_bytes() >= COALESCE_FREE_BYTES_MIN
                {
                    e.alloc.coalesce();
                }
            }
        });
    if let Ok(h) = h {
        *eng.sweeper.lock() = Some(h);
    }
}

pub(crate) fn stop(eng: &Engine) {
    {
        let (m, cv) = &*eng.stop;
        *m.lock() = true;
        cv.notify_all();
    }
    if let Some(h) = eng.sweeper.lock().take() {
        // The sweeper may itself be dropping the last reference; never join ourselves.
        if h.thread().id() != std::thread::current().id() {
            let _ = h.join();
        }
    }
}
