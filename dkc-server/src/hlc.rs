//! The hybrid logical clock that mints item versions, and the physical clocks it reads.
//!
//! The bit layout of a version lives in [`dkc_client::proto::version`] (46 bits of milliseconds
//! since 2020-01-01, 10 bits of logical counter, 8 bits of node index); this module keeps the
//! running state. Rules:
//! - [`Hlc::now`] returns a version strictly greater than every version it returned before and
//!   every version passed to [`Hlc::observe`], whatever the wall clock does (it may stand
//!   still or jump back).
//! - When the wall clock is ahead of the state, the state jumps to it and the logical counter
//!   restarts at 0. Otherwise the counter grows; when it would pass
//!   [`version::LOGICAL_MAX`], the clock borrows the next millisecond (counter 0), so a node
//!   minting more than 1024 versions in one millisecond runs slightly ahead of its wall clock
//!   and falls back in step as soon as the wall clock catches up.
//! - Replicas call [`Hlc::observe`] with every version they receive, so a node that becomes
//!   primary later mints versions newer than anything it stored, even if its wall clock is
//!   behind the old primary's (clock skew).
//!
//! Must never depend on: storage, chmpx, networking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dkc_client::proto::version::{self, VersionParts};

/// A peer version further ahead of our wall clock than this is counted as clock skew in the
/// stats (it is still observed: refusing it would lose the write).
pub const SKEW_WARN_MS: u64 = 5_000;

/// A source of wall-clock time in unix milliseconds.
pub trait PhysicalClock: Send + Sync {
    /// Milliseconds since the unix epoch.
    fn now_unix_ms(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl PhysicalClock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl k2hash::Clock for SystemClock {
    fn now_unix_secs(&self) -> u64 {
        PhysicalClock::now_unix_ms(self) / 1000
    }
}

/// A clock that moves only when told to (tests). It also serves as the k2hash expiry clock, so
/// one handle drives versions and expiry together.
#[derive(Debug, Default)]
pub struct ManualClock {
    unix_ms: AtomicU64,
}

impl ManualClock {
    /// A clock showing `unix_ms`.
    pub fn new(unix_ms: u64) -> ManualClock {
        ManualClock {
            unix_ms: AtomicU64::new(unix_ms),
        }
    }

    /// Sets the time (it may go backwards, as a wall clock can).
    pub fn set_ms(&self, unix_ms: u64) {
        self.unix_ms.store(unix_ms, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance_ms(&self, ms: u64) {
        self.unix_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl PhysicalClock for ManualClock {
    fn now_unix_ms(&self) -> u64 {
        self.unix_ms.load(Ordering::SeqCst)
    }
}

impl k2hash::Clock for ManualClock {
    fn now_unix_secs(&self) -> u64 {
        self.unix_ms.load(Ordering::SeqCst) / 1000
    }
}

/// The state word: physical ms (46 bits) above the logical counter (10 bits).
fn state_pack(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << version::LOGICAL_BITS) | logical
}

fn state_unpack(state: u64) -> (u64, u64) {
    (state >> version::LOGICAL_BITS, state & version::LOGICAL_MAX)
}

/// A hybrid logical clock for one node. Lock-free; share it by reference or `Arc`.
pub struct Hlc {
    node: u8,
    clock: Arc<dyn PhysicalClock>,
    /// Latest (physical, logical) minted or observed, packed by [`state_pack`].
    state: AtomicU64,
    /// Largest lead of an observed version over our wall clock, for the stats.
    skew_max_ms: AtomicU64,
    /// Observed versions more than [`SKEW_WARN_MS`] ahead of our wall clock.
    skew_warnings: AtomicU64,
}

impl std::fmt::Debug for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p, l) = state_unpack(self.state.load(Ordering::Relaxed));
        f.debug_struct("Hlc")
            .field("node", &self.node)
            .field("physical_ms", &p)
            .field("logical", &l)
            .finish()
    }
}

impl Hlc {
    /// A clock for node `node_index` (its index in the cluster's server list, < 256).
    pub fn new(node_index: u8, clock: Arc<dyn PhysicalClock>) -> Hlc {
        Hlc {
            node: node_index,
            clock,
            state: AtomicU64::new(0),
            skew_max_ms: AtomicU64::new(0),
            skew_warnings: AtomicU64::new(0),
        }
    }

    /// The node index stamped into every version.
    pub fn node_index(&self) -> u8 {
        self.node
    }

    fn physical_now(&self) -> u64 {
        self.clock
            .now_unix_ms()
            .saturating_sub(version::EPOCH_UNIX_MS)
            .min(version::PHYSICAL_MAX)
    }

    /// A new version, greater than every version minted or observed so far.
    pub fn now(&self) -> u64 {
        let wall = self.physical_now();
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (p, l) = state_unpack(cur);
            let (np, nl) = if wall > p {
                (wall, 0)
            } else if l < version::LOGICAL_MAX {
                (p, l + 1)
            } else if p < version::PHYSICAL_MAX {
                // The counter is exhausted: borrow the next millisecond.
                (p + 1, 0)
            } else {
                // The year 2250 is reached; stay at the top rather than wrap to the past.
                (p, l)
            };
            match self.state.compare_exchange_weak(
                cur,
                state_pack(np, nl),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return VersionParts {
                        physical_ms: np,
                        logical: nl,
                        node: self.node,
                    }
                    .pack();
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Moves the clock past `received` (a version from another node, or one found in the
    /// store), so every later [`Hlc::now`] is greater. Returns how far (ms) `received` was
    /// ahead of our wall clock, 0 if not ahead.
    pub fn observe(&self, received: u64) -> u64 {
        let parts = VersionParts::unpack(received);
        let incoming = state_pack(parts.physical_ms, parts.logical);
        self.state.fetch_max(incoming, Ordering::AcqRel);
        let ahead = parts.physical_ms.saturating_sub(self.physical_now());
        if ahead > 0 {
            self.skew_max_ms.fetch_max(ahead, Ordering::Relaxed);
            if ahead > SKEW_WARN_MS {
                self.skew_warnings.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    ahead_ms = ahead,
                    "a version from another node is ahead of this node's wall clock; check NTP"
                );
            }
        }
        ahead
    }

    /// A new version greater than `floor` (the version a write replaces) and than everything
    /// minted or observed so far.
    pub fn next_after(&self, floor: u64) -> u64 {
        self.observe(floor);
        self.now()
    }

    /// Largest lead (ms) of an observed version over this node's wall clock.
    pub fn skew_max_ms(&self) -> u64 {
        self.skew_max_ms.load(Ordering::Relaxed)
    }

    /// How many observed versions were more than [`SKEW_WARN_MS`] ahead.
    pub fn skew_warnings(&self) -> u64 {
        self.skew_warnings.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = version::EPOCH_UNIX_MS + 1_000_000_000;

    fn hlc(node: u8, clock: &Arc<ManualClock>) -> Hlc {
        Hlc::new(node, clock.clone())
    }

    #[test]
    fn hlc_follows_wall_clock_and_stamps_node() {
        let clock = Arc::new(ManualClock::new(T0));
        let h = hlc(7, &clock);
        let a = VersionParts::unpack(h.now());
        assert_eq!((a.unix_ms(), a.logical, a.node), (T0, 0, 7));
        let b = VersionParts::unpack(h.now());
        assert_eq!((b.unix_ms(), b.logical), (T0, 1), "same ms: counter grows");
        clock.advance_ms(5);
        let c = VersionParts::unpack(h.now());
        assert_eq!(
            (c.unix_ms(), c.logical),
            (T0 + 5, 0),
            "wall clock moved: counter resets"
        );
    }

    #[test]
    fn hlc_wall_clock_going_back_does_not_go_back() {
        let clock = Arc::new(ManualClock::new(T0));
        let h = hlc(1, &clock);
        let a = h.now();
        clock.set_ms(T0 - 60_000);
        let b = h.now();
        assert!(b > a);
        assert_eq!(VersionParts::unpack(b).unix_ms(), T0);
    }

    #[test]
    fn hlc_logical_overflow_borrows_next_millisecond() {
        let clock = Arc::new(ManualClock::new(T0));
        let h = hlc(0, &clock);
        let mut last = 0;
        for _ in 0..=version::LOGICAL_MAX {
            last = h.now();
        }
        let p = VersionParts::unpack(last);
        assert_eq!((p.unix_ms(), p.logical), (T0, version::LOGICAL_MAX));
        let next = VersionParts::unpack(h.now());
        assert_eq!((next.unix_ms(), next.logical), (T0 + 1, 0));
        // When the wall clock reaches the borrowed millisecond the counter continues from it.
        clock.set_ms(T0 + 1);
        let after = VersionParts::unpack(h.now());
        assert_eq!((after.unix_ms(), after.logical), (T0 + 1, 1));
    }

    #[test]
    fn hlc_observe_moves_past_a_skewed_peer() {
        let clock_a = Arc::new(ManualClock::new(T0 + 10_000));
        let clock_b = Arc::new(ManualClock::new(T0));
        let a = hlc(1, &clock_a);
        let b = hlc(2, &clock_b);
        let from_a = a.now();
        assert!(b.now() < from_a, "b's clock is 10 s behind");
        assert_eq!(b.observe(from_a), 10_000);
        assert_eq!(b.skew_warnings(), 1);
        let from_b = b.now();
        assert!(from_b > from_a, "after observing, b mints newer versions");
        assert!(b.next_after(from_b + (5 << 18)) > from_b + (5 << 18));
    }

    #[test]
    fn hlc_concurrent_versions_are_unique_and_increasing_per_thread() {
        let clock = Arc::new(ManualClock::new(T0));
        let h = Arc::new(hlc(3, &clock));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::with_capacity(5000);
                    for _ in 0..5000 {
                        got.push(h.now());
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in threads {
            let got = t.join().unwrap();
            assert!(got.windows(2).all(|w| w[0] < w[1]));
            all.extend(got);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "no version minted twice");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Now,
        Jump(i64),
        Observe {
            offset_ms: i64,
            logical: u64,
            node: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Now),
            2 => (-20_000i64..20_000).prop_map(Op::Jump),
            2 => (-20_000i64..20_000, 0..=version::LOGICAL_MAX, any::<u8>())
                .prop_map(|(offset_ms, logical, node)| Op::Observe { offset_ms, logical, node }),
        ]
    }

    proptest! {
        #[test]
        fn hlc_now_exceeds_everything_before(ops in proptest::collection::vec(op(), 1..300)) {
            let clock = Arc::new(ManualClock::new(T0));
            let h = hlc(9, &clock);
            let mut high = 0u64;
            for op in ops {
                match op {
                    Op::Now => {
                        let v = h.now();
                        prop_assert!(v > high, "{v} <= {high}");
                        prop_assert_eq!(VersionParts::unpack(v).node, 9);
                        high = v;
                    }
                    Op::Jump(d) => clock.set_ms(clock.now_unix_ms().saturating_add_signed(d)),
                    Op::Observe { offset_ms, logical, node } => {
                        let ms = clock.now_unix_ms().saturating_add_signed(offset_ms);
                        let v = VersionParts {
                            physical_ms: ms - version::EPOCH_UNIX_MS,
                            logical,
                            node,
                        }
                        .pack();
                        h.observe(v);
                        high = high.max(v);
                    }
                }
            }
        }
    }
}
