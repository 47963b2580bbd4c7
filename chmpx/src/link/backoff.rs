//! Reconnect delays: exponential with jitter, bounded by `min` and `max`. Pure and seedable, so a
//! sequence printed from one seed replays exactly.

use std::time::Duration;

/// Delay generator for one peer's reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
    rng: u64,
}

impl Backoff {
    /// `seed` drives the jitter; give each peer its own (e.g. from the OS) so that peers that
    /// lost a node at the same moment do not redial it in lockstep.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            ceiling: min,
            rng: seed,
        }
    }

    /// Next delay: uniform in `[ceiling/2, ceiling]` but never below `min`; the ceiling then
    /// doubles up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        let floor = (ceiling / 2).max(self.min);
        let span_ns = ceiling.saturating_sub(floor).as_nanos() as u64;
        let jitter_ns = if span_ns == 0 {
            0
        } else {
            self.next_random() % (span_ns + 1)
        };
        self.ceiling = (ceiling * 2).min(self.max);
        floor + Duration::from_nanos(jitter_ns)
    }

    /// After a successful connection the next failure starts again from `min`.
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }

    /// splitmix64: tiny, good enough for jitter, and deterministic per seed.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_millis(2000);

    #[test]
    fn delays_stay_within_bounds_and_grow_to_the_max() {
        for seed in 0..64 {
            let mut b = Backoff::new(MIN, MAX, seed);
            let mut ceiling = MIN;
            for _ in 0..20 {
                let d = b.next_delay();
                assert!(d >= MIN && d <= MAX, "seed {seed}: {d:?}");
                assert!(
                    d <= ceiling && d >= (ceiling / 2).max(MIN),
                    "seed {seed}: {d:?} vs {ceiling:?}"
                );
                ceiling = (ceiling * 2).min(MAX);
            }
            assert!(b.next_delay() >= MAX / 2);
        }
    }

    #[test]
    fn reset_returns_to_min_and_seeds_replay() {
        let mut a = Backoff::new(MIN, MAX, 7);
        let mut b = Backoff::new(MIN, MAX, 7);
        let xs: Vec<_> = (0..10).map(|_| a.next_delay()).collect();
        let ys: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(xs, ys);
        a.reset();
        assert_eq!(a.next_delay(), MIN);
    }

    #[test]
    fn jitter_spreads_peers_apart() {
        let firsts: std::collections::HashSet<_> = (0..32)
            .map(|s| {
                let mut b = Backoff::new(MIN, MAX, s);
                b.next_delay();
                b.next_delay()
            })
            .collect();
        assert!(
            firsts.len() > 16,
            "jitter too weak: {} distinct",
            firsts.len()
        );
    }
}
