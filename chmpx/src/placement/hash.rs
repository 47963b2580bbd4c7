//! The key hash and the slots of the hash space.
//!
//! The key hash is xxHash64 with seed [`KEY_HASH_SEED`] (0). It is part of the
//! on-disk and on-wire contract: data is stored and merged by hash range, so
//! the function and the seed must never change.
//!
//! A slot is the set of hashes sharing their top `log2(slot_count)` bits, so
//! every slot is one contiguous, inclusive hash range ([`slot_hash_range`]);
//! the storage engine iterates and digests a slot as one range scan.

use twox_hash::XxHash64;

/// Seed of the key hash. Never change it: stored data is placed by it.
pub const KEY_HASH_SEED: u64 = 0;
/// Fewest slots a cluster may have.
pub const SLOT_COUNT_MIN: u32 = 16;
/// Most slots a cluster may have (a map then holds 65536 × (REPLICA+1) owners).
pub const SLOT_COUNT_MAX: u32 = 65_536;

const _: () = assert!(SLOT_COUNT_MIN.is_power_of_two() && SLOT_COUNT_MAX.is_power_of_two());
const _: () = assert!(SLOT_COUNT_MIN <= SLOT_COUNT_MAX);

/// The 64-bit hash of a key: xxHash64, seed [`KEY_HASH_SEED`].
pub fn key_hash(key: &[u8]) -> u64 {
    XxHash64::oneshot(KEY_HASH_SEED, key)
}

/// Whether `slot_count` is a power of two within [`SLOT_COUNT_MIN`]..=[`SLOT_COUNT_MAX`].
pub fn is_valid_slot_count(slot_count: u32) -> bool {
    slot_count.is_power_of_two() && (SLOT_COUNT_MIN..=SLOT_COUNT_MAX).contains(&slot_count)
}

/// The slot of a hash: its top `log2(slot_count)` bits.
///
/// `slot_count` must be a power of two (callers hold a validated count; a
/// non-power of two is rounded down to one, never a panic).
pub fn slot_of(hash: u64, slot_count: u32) -> u32 {
    let bits = slot_bits(slot_count);
    // checked_shr: with one slot (bits = 0) the shift would be 64.
    hash.checked_shr(64 - bits).unwrap_or(0) as u32
}

/// The inclusive hash range `(lo, hi)` that makes up `slot`.
pub fn slot_hash_range(slot: u32, slot_count: u32) -> (u64, u64) {
    let bits = slot_bits(slot_count);
    let lo = u64::from(slot).checked_shl(64 - bits).unwrap_or(0);
    let hi = lo | u64::MAX.checked_shr(bits).unwrap_or(0);
    (lo, hi)
}

fn slot_bits(slot_count: u32) -> u32 {
    // ilog2 of a power of two is exact; of 0 it would panic, so treat 0 as 1.
    slot_count.max(1).ilog2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_xxh64_seed_0() {
        // Known-answer values of XXH64 with seed 0 (from the xxHash spec's test vectors).
        assert_eq!(key_hash(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(key_hash(b"a"), 0xD24E_C4F1_A98C_6E5B);
    }

    #[test]
    fn slot_of_takes_top_bits() {
        assert_eq!(slot_of(0, 1024), 0);
        assert_eq!(slot_of(u64::MAX, 1024), 1023);
        assert_eq!(slot_of(1 << 54, 1024), 1);
        assert_eq!(slot_of((1 << 54) - 1, 1024), 0);
        assert_eq!(slot_of(u64::MAX, 1), 0);
    }

    #[test]
    fn slot_ranges_tile_the_hash_space() {
        for count in [16u32, 1024, 4096, 65_536] {
            let mut next = 0u64;
            for slot in 0..count {
                let (lo, hi) = slot_hash_range(slot, count);
                assert_eq!(
                    lo, next,
                    "slot {slot} of {count} starts where the last ended"
                );
                assert!(lo <= hi);
                assert_eq!(slot_of(lo, count), slot);
                assert_eq!(slot_of(hi, count), slot);
                next = hi.wrapping_add(1);
            }
            assert_eq!(next, 0, "the last slot of {count} ends at u64::MAX");
        }
    }

    #[test]
    fn valid_slot_counts() {
        assert!(is_valid_slot_count(1024));
        assert!(!is_valid_slot_count(1000));
        assert!(!is_valid_slot_count(8));
        assert!(!is_valid_slot_count(131_072));
    }
}
