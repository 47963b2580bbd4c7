//! Every limit the command layer enforces, as named constants (unit last) and the [`Limits`]
//! settings built from them.

/// Default largest value, bytes (memcached's default item size).
pub const VALUE_SIZE_MAX_DEFAULT: usize = 1024 * 1024;
/// Largest value the engine can ever hold; a configured `value_size_max` is capped to it.
pub const VALUE_SIZE_MAX_CEILING: usize = k2hash::limits::VALUE_SIZE_MAX_CEILING;
/// Default longest key, bytes (the engine's own limit).
pub const KEY_SIZE_MAX_DEFAULT: usize = k2hash::limits::KEY_SIZE_MAX;
/// Default most keys in one `MultiGet`.
pub const MULTI_GET_KEYS_MAX_DEFAULT: usize = 1024;
/// Default most items in one scan page.
pub const SCAN_LIMIT_MAX_DEFAULT: u32 = 1000;
/// Records read from the engine per internal scan step (scan, flush).
pub const SCAN_BATCH_RECORDS: usize = 512;
/// Default most names in one subkey list.
pub const SUBKEYS_MAX_DEFAULT: usize = k2hash::limits::SUBKEYS_MAX;
/// Default most records in one `Replicate` request.
pub const REPLICATE_RECORDS_MAX_DEFAULT: usize = 4096;

const _: () = assert!(VALUE_SIZE_MAX_DEFAULT <= VALUE_SIZE_MAX_CEILING);
const _: () = assert!(SCAN_LIMIT_MAX_DEFAULT >= 1 && MULTI_GET_KEYS_MAX_DEFAULT >= 1);
const _: () = assert!(SCAN_BATCH_RECORDS >= 1);

/// The limits one executor enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest value, bytes (also the largest result of append/prepend).
    pub value_size_max: usize,
    /// Longest key or subkey name, bytes.
    pub key_size_max: usize,
    /// Most keys in one `MultiGet`.
    pub multi_get_keys_max: usize,
    /// Most items in one scan page; larger requests are cut to it.
    pub scan_limit_max: u32,
    /// Most names in one subkey list.
    pub subkeys_max: usize,
    /// Most records in one `Replicate`.
    pub replicate_records_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            value_size_max: VALUE_SIZE_MAX_DEFAULT,
            key_size_max: KEY_SIZE_MAX_DEFAULT,
            multi_get_keys_max: MULTI_GET_KEYS_MAX_DEFAULT,
            scan_limit_max: SCAN_LIMIT_MAX_DEFAULT,
            subkeys_max: SUBKEYS_MAX_DEFAULT,
            replicate_records_max: REPLICATE_RECORDS_MAX_DEFAULT,
        }
    }
}

impl Limits {
    /// These limits with `value_size_max` set (capped to [`VALUE_SIZE_MAX_CEILING`]).
    pub fn with_value_size_max(mut self, bytes: usize) -> Limits {
        self.value_size_max = bytes.min(VALUE_SIZE_MAX_CEILING);
        self
    }
}
