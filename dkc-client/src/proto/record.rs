//! [`WireRecord`]: one stored record in full, as replication and merge move it between nodes.

use serde::{Deserialize, Serialize};

/// A full record: the value with its metadata, the tombstone bit and the subkey list. A
/// receiver stores it only if `version` is newer than what it holds (last writer wins), so
/// applying the same records in any order gives the same result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireRecord {
    /// The key (never empty).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value (empty for a tombstone).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Memcached client flags.
    pub flags: u32,
    /// Absolute expiry, unix seconds, 0 = never.
    pub expire_at: u64,
    /// Packed hybrid logical clock; greater = newer.
    pub version: u64,
    /// True for a deletion marker.
    pub tombstone: bool,
    /// Child key names, in order, without duplicates.
    #[serde(with = "super::bytes_list")]
    pub subkeys: Vec<Vec<u8>>,
}
