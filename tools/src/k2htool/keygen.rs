//! The benchmark workload generator, byte for byte the same as `benches/tc/tcbench.c`.
//!
//! Both sides must produce identical keys, values and read orders, or the side-by-side ratios
//! in docs/BENCHMARKS.md compare different work. The rules:
//! - key `i` is [`KEY_BYTES`] characters built from outputs `4i..4i+3` of a splitmix64 stream
//!   seeded with `seed`: [`KEY_CHARS_PER_WORD`] characters of 6 bits from each output, low bits
//!   first, through [`KEY_ALPHABET`];
//! - the value of key `i` is `value_bytes` bytes of a [`PATTERN_BYTES`]-byte repeating pattern,
//!   starting at offset `i % PATTERN_BYTES` (so no side pays to generate values while timed);
//! - the read order is a Fisher-Yates shuffle of `0..n` drawing from a splitmix64 stream seeded
//!   with `seed ^ PERM_SALT`.
//!
//! This module does no I/O.

/// Length of every generated key.
pub const KEY_BYTES: usize = 36;
/// Characters taken from one 64-bit splitmix64 output (6 bits each).
pub const KEY_CHARS_PER_WORD: usize = 9;
/// splitmix64 outputs used per key.
pub const KEY_WORDS: usize = KEY_BYTES / KEY_CHARS_PER_WORD;
/// Period of the value pattern.
pub const PATTERN_BYTES: usize = 64;
/// Mixed into the seed of the read-order stream so it is independent of the keys.
pub const PERM_SALT: u64 = 0x5045_524d_5045_524d;
/// The 64 characters keys are made of.
pub const KEY_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const _: () = assert!(KEY_WORDS * KEY_CHARS_PER_WORD == KEY_BYTES);
// 6 bits per character must fit in one 64-bit word.
const _: () = assert!(KEY_CHARS_PER_WORD * 6 <= 64);
const _: () = assert!(KEY_ALPHABET.len() == PATTERN_BYTES);

const SPLITMIX_GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser.
fn splitmix_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Output number `index` (0-based) of the splitmix64 stream seeded with `seed`.
pub fn splitmix_at(seed: u64, index: u64) -> u64 {
    splitmix_mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(SPLITMIX_GOLDEN)))
}

/// Key number `i` of the workload seeded with `seed`.
pub fn key_at(seed: u64, i: u64) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    for (w, chunk) in key.chunks_exact_mut(KEY_CHARS_PER_WORD).enumerate() {
        let word = splitmix_at(seed, i.wrapping_mul(KEY_WORDS as u64) + w as u64);
        for (c, out) in chunk.iter_mut().enumerate() {
            *out = KEY_ALPHABET[((word >> (6 * c)) & 63) as usize];
        }
    }
    key
}

/// All keys `0..n`, back to back, generated before any timing starts.
pub fn keys(seed: u64, n: u64) -> Vec<[u8; KEY_BYTES]> {
    (0..n).map(|i| key_at(seed, i)).collect()
}

/// The value pattern: slice `value_of(pattern, i, value_bytes)` is key `i`'s value.
pub fn value_pattern(value_bytes: usize) -> Vec<u8> {
    (0..value_bytes + PATTERN_BYTES)
        .map(|j| KEY_ALPHABET[j % PATTERN_BYTES])
        .collect()
}

/// The value of key `i` inside a pattern made by [`value_pattern`].
pub fn value_of(pattern: &[u8], i: u64, value_bytes: usize) -> &[u8] {
    let start = (i % PATTERN_BYTES as u64) as usize;
    &pattern[start..start + value_bytes]
}

/// The random read order: a permutation of `0..n`.
pub fn read_order(seed: u64, n: u64) -> Vec<u64> {
    let mut perm: Vec<u64> = (0..n).collect();
    let perm_seed = seed ^ PERM_SALT;
    for (draw, k) in (1..perm.len()).rev().enumerate() {
        let j = (splitmix_at(perm_seed, draw as u64) % (k as u64 + 1)) as usize;
        perm.swap(k, j);
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned against `tcbench --print-keys 3 42`; if these change, the C side must change too.
    #[test]
    fn keys_match_the_c_generator() {
        assert_eq!(&key_at(42, 0), b"V626vYiMXDEvZyOz4vS95DTc1ZSUOuSO8f4c");
        assert_eq!(&key_at(42, 1), b"yPCSkoFW8GsNg8ofMEd12NFxxZpk-ine6eN2");
        assert_eq!(&key_at(42, 2), b"V3XPLcHuFue3fpgz1U_mxW3pkc0-ClFF5gi0");
    }

    /// Pinned against `tcbench --print-order 10 42`.
    #[test]
    fn read_order_matches_the_c_generator() {
        assert_eq!(read_order(42, 10), vec![2, 1, 6, 7, 8, 5, 0, 3, 4, 9]);
    }

    #[test]
    fn keys_are_distinct_for_a_sample() {
        let mut all = keys(7, 100_000);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 100_000);
    }

    #[test]
    fn read_order_is_a_permutation() {
        let mut order = read_order(9, 10_000);
        assert_ne!(order, (0..10_000).collect::<Vec<_>>());
        order.sort_unstable();
        assert_eq!(order, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn values_have_the_requested_size_and_shift_with_the_index() {
        let pattern = value_pattern(40);
        assert_eq!(value_of(&pattern, 0, 40).len(), 40);
        assert_ne!(value_of(&pattern, 0, 40), value_of(&pattern, 1, 40));
        assert_eq!(value_of(&pattern, 0, 40), value_of(&pattern, 64, 40));
    }
}
