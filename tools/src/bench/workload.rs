//! The workload: which key each operation touches, whether it is a get or a set, and the value
//! stored. Pure and deterministic: a connection's sequence of operations depends only on the
//! seed and its index, so a run can be repeated exactly.

/// Prefix of every key the benchmark writes, so its keys are easy to find and delete.
pub const KEY_PREFIX: &str = "dkcb:";
/// Digits of the key number (keys are fixed-width so every key has the same length).
pub const KEY_DIGITS: usize = 10;
/// Most keys in a run (keeps the key number within [`KEY_DIGITS`] digits).
pub const KEYS_MAX: u64 = 9_999_999_999;
/// Largest value, bytes (memcached's default item size limit is 1 MiB including overhead).
pub const VALUE_SIZE_MAX: usize = 1_000_000;

/// One operation of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Read a key.
    Get,
    /// Store the workload value under a key.
    Set,
}

/// A splitmix64 stream: small, fast, and the same everywhere (no dependency on a crate's
/// algorithm choice, so a printed seed replays exactly).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream starting at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0), by multiply-shift: unbiased enough for load generation.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What every connection draws its operations from.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Keys `0..keys` are used.
    pub keys: u64,
    /// Share of gets, 0.0..=1.0; the rest are sets.
    pub get_ratio: f64,
    /// The value every set stores (and every hit must return).
    pub value: Vec<u8>,
}

impl Workload {
    /// A workload of `keys` keys, `get_ratio` gets and values of `value_size` bytes.
    pub fn new(keys: u64, get_ratio: f64, value_size: usize) -> Workload {
        Workload {
            keys,
            get_ratio,
            value: value_bytes(value_size),
        }
    }

    /// The operation stream of connection `conn` for run seed `seed`.
    pub fn stream(&self, seed: u64, conn: u64) -> OpStream {
        // Mixing the connection index through one splitmix step keeps streams apart even for
        // neighbouring seeds.
        let mut mix = SplitMix64::new(seed ^ conn.wrapping_mul(0xA076_1D64_78BD_642F));
        OpStream {
            rng: SplitMix64::new(mix.next_u64()),
            keys: self.keys,
            get_ratio: self.get_ratio,
        }
    }
}

/// An endless sequence of (operation, key number).
#[derive(Debug, Clone)]
pub struct OpStream {
    rng: SplitMix64,
    keys: u64,
    get_ratio: f64,
}

impl OpStream {
    /// The next operation and the key number it touches (`0..keys`).
    pub fn next_op(&mut self) -> (OpKind, u64) {
        let kind = if self.get_ratio >= 1.0 || self.rng.unit() < self.get_ratio {
            OpKind::Get
        } else {
            OpKind::Set
        };
        (kind, self.rng.below(self.keys))
    }
}

/// Writes key number `i` into `out` (cleared first): `dkcb:` and `i` on [`KEY_DIGITS`] digits.
pub fn write_key(out: &mut Vec<u8>, i: u64) {
    out.clear();
    out.extend_from_slice(KEY_PREFIX.as_bytes());
    let mut digits = [b'0'; KEY_DIGITS];
    let mut n = i;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits);
}

/// The value every set stores: a printable repeating pattern (so a wrong length or a shifted
/// read shows up when hits are compared with it).
pub fn value_bytes(size: usize) -> Vec<u8> {
    const PATTERN: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
    PATTERN.iter().copied().cycle().take(size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width() {
        let mut k = Vec::new();
        write_key(&mut k, 42);
        assert_eq!(k, b"dkcb:0000000042");
        write_key(&mut k, KEYS_MAX);
        assert_eq!(k, b"dkcb:9999999999");
    }

    #[test]
    fn streams_stay_in_range_and_follow_the_ratio() {
        let w = Workload::new(37, 0.9, 16);
        let mut s = w.stream(7, 3);
        let mut gets = 0;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let (kind, key) = s.next_op();
            assert!(key < 37);
            seen.insert(key);
            gets += u32::from(kind == OpKind::Get);
        }
        assert_eq!(seen.len(), 37, "every key is drawn");
        assert!(
            (17_600..18_400).contains(&gets),
            "{gets} gets of 20000 at ratio 0.9"
        );
    }

    #[test]
    fn streams_replay_and_differ_per_connection() {
        let w = Workload::new(1000, 0.5, 8);
        let a: Vec<_> = (0..50)
            .map({
                let mut s = w.stream(1, 0);
                move |_| s.next_op()
            })
            .collect();
        let b: Vec<_> = (0..50)
            .map({
                let mut s = w.stream(1, 0);
                move |_| s.next_op()
            })
            .collect();
        let c: Vec<_> = (0..50)
            .map({
                let mut s = w.stream(1, 1);
                move |_| s.next_op()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn all_gets_and_all_sets() {
        let mut s = Workload::new(10, 1.0, 1).stream(0, 0);
        assert!((0..1000).all(|_| s.next_op().0 == OpKind::Get));
        let mut s = Workload::new(10, 0.0, 1).stream(0, 0);
        assert!((0..1000).all(|_| s.next_op().0 == OpKind::Set));
    }

    #[test]
    fn value_has_the_size_asked() {
        assert_eq!(value_bytes(0).len(), 0);
        assert_eq!(value_bytes(1024).len(), 1024);
        assert_eq!(&value_bytes(3), b"012");
    }
}
