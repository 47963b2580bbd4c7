//! Tells a frozen process (SIGSTOP, a paused VM or container) from a busy thread.
//!
//! The router used to take any gap between two of its ticks longer than the heartbeat timeout
//! for a freeze; on a loaded 2-core host the routing thread alone can be late by that much while
//! the link tasks go on sending heartbeats, so the peers never saw this node DOWN and gating its
//! reads was a false alarm. A [`FreezeWatch`] is a thread that only sleeps in short steps and
//! records how far each sleep overshot: a sleeping thread is woken promptly even on a busy host,
//! so a long overshoot means the whole process did not run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the watch thread sleeps between looks at the clock.
pub const FREEZE_WATCH_STEP_MS: u64 = 50;

#[derive(Default)]
struct Shared {
    /// The longest time one step took since the last [`FreezeWatch::take_longest_gap`], in ms.
    longest_ms: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn record(&self, took_ms: u64) {
        self.longest_ms.fetch_max(took_ms, Ordering::Relaxed);
    }
}

/// A thread that measures how long this process did not run; stops when dropped.
pub struct FreezeWatch {
    shared: Arc<Shared>,
}

impl FreezeWatch {
    /// Starts the watch thread (`chmpx-freeze`).
    pub fn start() -> std::io::Result<FreezeWatch> {
        let shared = Arc::new(Shared::default());
        let watched = shared.clone();
        std::thread::Builder::new()
            .name("chmpx-freeze".into())
            .spawn(move || {
                let step = Duration::from_millis(FREEZE_WATCH_STEP_MS);
                while !watched.stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    std::thread::sleep(step);
                    watched.record(start.elapsed().as_millis() as u64);
                }
            })?;
        Ok(FreezeWatch { shared })
    }

    /// The longest step since the previous call (a step is [`FREEZE_WATCH_STEP_MS`] plus the
    /// time the process did not run), and starts over.
    pub fn take_longest_gap(&self) -> Duration {
        Duration::from_millis(self.shared.longest_ms.swap(0, Ordering::Relaxed))
    }
}

impl Drop for FreezeWatch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_step_is_kept_until_taken() {
        let shared = Shared::default();
        for took in [50, 1200, 60] {
            shared.record(took);
        }
        let w = FreezeWatch {
            shared: Arc::new(shared),
        };
        assert_eq!(w.take_longest_gap(), Duration::from_millis(1200));
        assert_eq!(w.take_longest_gap(), Duration::ZERO, "taking starts over");
    }

    #[test]
    fn a_started_watch_measures_its_steps() {
        let w = FreezeWatch::start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut gap = Duration::ZERO;
        while gap.is_zero() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(FREEZE_WATCH_STEP_MS));
            gap = w.take_longest_gap();
        }
        assert!(
            gap >= Duration::from_millis(FREEZE_WATCH_STEP_MS),
            "{gap:?}"
        );
    }
}
