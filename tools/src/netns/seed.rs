//! The seed of a scenario's random choices (which host, which keys, when). It is printed at
//! the start of a test and read from `DKC_NETNS_SEED` when set, so a failure replays exactly.

/// Environment variable that fixes the seed.
pub const SEED_ENV: &str = "DKC_NETNS_SEED";

/// A small deterministic generator (SplitMix64): enough for picking hosts and delays, no
/// dependency, identical on every platform.
#[derive(Debug, Clone)]
pub struct Seed {
    initial: u64,
    state: u64,
}

impl Seed {
    /// A generator from a fixed seed.
    pub fn new(seed: u64) -> Seed {
        Seed {
            initial: seed,
            state: seed,
        }
    }

    /// The seed from `DKC_NETNS_SEED`, else from the clock; prints it with `what` so the run
    /// can be replayed.
    pub fn from_env_or_clock(what: &str) -> Seed {
        let seed = std::env::var(SEED_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            });
        eprintln!("{what}: seed {seed} (replay with {SEED_ENV}={seed})");
        Seed::new(seed)
    }

    /// The seed this generator started from.
    pub fn initial(&self) -> u64 {
        self.initial
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounded() {
        let mut a = Seed::new(42);
        let mut b = Seed::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.below(7)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(7)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| *x < 7));
        assert!(xs.iter().any(|x| *x != xs[0]), "not constant: {xs:?}");
        assert_ne!(Seed::new(1).next_u64(), Seed::new(2).next_u64());
    }
}
