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
    /// Fence of a value-dependent write (cas, incr/decr, add, replace, append/prepend, delete
    /// with a CAS token): the version the primary computed it from (0 = the key was absent).
    /// A replica holding a version strictly between `base` and `version` refuses it as a
    /// conflict (the primary missed a write). `None` for plain writes and merges (last writer
    /// wins).
    #[serde(default)]
    pub base: Option<u64>,
    /// A rollback, not a write: "if you hold version `rollback_of`, put this record back"
    /// (the record the key held before a fenced write that was not acknowledged; `version` 0
    /// means the key was absent and is removed). Anything else held is kept.
    #[serde(default)]
    pub rollback_of: Option<u64>,
}
