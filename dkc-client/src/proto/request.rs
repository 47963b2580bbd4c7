//! Requests: what a client (or a peer dkc-server) asks a dkc-server to do.
//!
//! Times are absolute unix seconds (`expire_at`, 0 = never): converting memcached's relative
//! expiry is the front end's job, so every node of a cluster agrees on when an item dies.
//! Versions are the packed hybrid logical clocks described in [`super::version`]; a CAS token
//! is a version.

use serde::{Deserialize, Serialize};

use super::record::WireRecord;

/// How a `Set` treats what is already stored (memcached's storage commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetMode {
    /// Store unconditionally.
    Set,
    /// Store only if the key has no live item (else `NotStored`).
    Add,
    /// Store only if the key has a live item (else `NotStored`).
    Replace,
    /// Append the bytes to the live item's value, keeping its flags and expiry (else
    /// `NotStored`).
    Append,
    /// Prepend the bytes to the live item's value, keeping its flags and expiry (else
    /// `NotStored`).
    Prepend,
    /// Store only if the live item's version equals this token: `Exists` on mismatch,
    /// `NotFound` when there is no live item.
    Cas(u64),
}

/// Which keys a `Scan` visits, in byte order of the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanRange {
    /// Every key.
    All,
    /// Keys starting with these bytes.
    Prefix(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Keys `k` with `start <= k` and, when `end` is given, `k < end`.
    Range {
        /// Inclusive lower bound (empty = from the first key).
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        /// Exclusive upper bound; `None` = to the last key.
        #[serde(with = "serde_bytes")]
        end: Option<Vec<u8>>,
    },
}

impl ScanRange {
    /// True if `key` lies in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            ScanRange::All => true,
            ScanRange::Prefix(p) => key.starts_with(p),
            ScanRange::Range { start, end } => {
                key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }
}

/// One request. Client commands first, then the server-to-server ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The live item of `key` → `Value` or `NotFound`.
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// The live items of several keys → `Values` (missing keys are left out). The client
    /// groups keys by owner node and sends one `MultiGet` per node.
    MultiGet {
        /// The keys.
        #[serde(with = "super::bytes_list")]
        keys: Vec<Vec<u8>>,
    },
    /// A storage command → `Stored`, `NotStored`, `Exists` or `NotFound` (see [`SetMode`]).
    Set {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value (for `Append`/`Prepend`: the bytes to add).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// What to do with an existing item.
        mode: SetMode,
        /// Memcached client flags (ignored by `Append`/`Prepend`).
        flags: u32,
        /// Absolute expiry, unix seconds, 0 = never (ignored by `Append`/`Prepend`).
        expire_at: u64,
    },
    /// Delete → `Deleted`, `NotFound`, or `Exists` when `cas` is given and differs. Leaves a
    /// versioned tombstone so the delete replicates and survives merges.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Delete only if the live version equals this token.
        cas: Option<u64>,
    },
    /// Add `delta` to a decimal value (wraps at 2^64, as memcached) → `Number`.
    /// Missing key: stores `initial` (when given, with `expire_at`) and returns it, else
    /// `NotFound`. A value that is not a decimal u64 → `Error(E_NOT_NUMERIC)`.
    Incr {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Amount to add.
        delta: u64,
        /// Value stored when the key is missing; `None` = answer `NotFound`.
        initial: Option<u64>,
        /// Expiry used only when `initial` creates the item.
        expire_at: u64,
    },
    /// Subtract `delta` from a decimal value, flooring at 0 (as memcached) → `Number`.
    /// Otherwise as `Incr`.
    Decr {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Amount to subtract.
        delta: u64,
        /// Value stored when the key is missing; `None` = answer `NotFound`.
        initial: Option<u64>,
        /// Expiry used only when `initial` creates the item.
        expire_at: u64,
    },
    /// Change the expiry of a live item → `Touched` or `NotFound`.
    Touch {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// New absolute expiry, unix seconds, 0 = never.
        expire_at: u64,
    },
    /// Change the expiry and return the item → `Value` or `NotFound`.
    GetAndTouch {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// New absolute expiry, unix seconds, 0 = never.
        expire_at: u64,
    },
    /// Replace the subkey list of a live item → `Stored` or `NotFound`. Duplicates are dropped
    /// (first kept). Subkeys are names of other keys; they are not created here.
    SetSubkeys {
        /// The parent key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new list.
        #[serde(with = "super::bytes_list")]
        subkeys: Vec<Vec<u8>>,
    },
    /// Append one name to the subkey list of a live item unless listed → `Stored` or
    /// `NotFound`. The child key itself is written by a separate `Set` to its own owner.
    AddSubkey {
        /// The parent key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The child key name.
        #[serde(with = "serde_bytes")]
        subkey: Vec<u8>,
    },
    /// Remove one name from the subkey list → `Deleted`, or `NotFound` when the parent has no
    /// live item or does not list it. The child key itself is left alone.
    RemoveSubkey {
        /// The parent key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The child key name.
        #[serde(with = "serde_bytes")]
        subkey: Vec<u8>,
    },
    /// The subkey list of a live item → `Subkeys` or `NotFound`.
    ListSubkeys {
        /// The parent key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Empty the subkey list of a live item → `Stored` or `NotFound`.
    ClearSubkeys {
        /// The parent key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Delete `key` (tombstone) and answer `DeletedWithChildren` with its subkey list, or
    /// `NotFound`. Children usually live on other nodes, so the client deletes each listed
    /// child in turn with its own `DeleteWithChildren` (recursively, with a depth limit and a
    /// visited set against cycles).
    DeleteWithChildren {
        /// The parent key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// A page of live items in key byte order → `ScanPage`. Each node answers with its own
    /// keys after `cursor`; the client merges the nodes' pages in key order, drops duplicates
    /// (replicas) keeping the highest version, and continues from the last key it kept
    /// (kivaloo's RANGE).
    Scan {
        /// Which keys.
        range: ScanRange,
        /// Continue after this key (exclusive); `None` = from the start of `range`.
        #[serde(with = "serde_bytes")]
        cursor: Option<Vec<u8>>,
        /// Most items to return (capped by the server's `scan_limit_max`).
        limit: u32,
        /// Return keys and metadata without values.
        keys_only: bool,
    },
    /// Counters of this node → `Stats`.
    Stats,
    /// Delete every item of this node (tombstones, so merges do not bring them back) →
    /// `Flushed`. Refused with `E_BAD_REQUEST` unless `confirm` is true. The client sends it
    /// to every node.
    Flush {
        /// Must be true.
        confirm: bool,
    },
    /// Server to server: apply each record if its version is newer than the stored one (last
    /// writer wins, tombstones included) → `Replicated`.
    Replicate {
        /// Records as written by the primary.
        records: Vec<WireRecord>,
    },
}

impl Request {
    /// The key that places this request on a node, when there is exactly one.
    pub fn routing_key(&self) -> Option<&[u8]> {
        match self {
            Request::Get { key }
            | Request::Set { key, .. }
            | Request::Delete { key, .. }
            | Request::Incr { key, .. }
            | Request::Decr { key, .. }
            | Request::Touch { key, .. }
            | Request::GetAndTouch { key, .. }
            | Request::SetSubkeys { key, .. }
            | Request::AddSubkey { key, .. }
            | Request::RemoveSubkey { key, .. }
            | Request::ListSubkeys { key }
            | Request::ClearSubkeys { key }
            | Request::DeleteWithChildren { key } => Some(key),
            Request::MultiGet { keys } => keys.first().map(Vec::as_slice),
            Request::Replicate { records } => records.first().map(|r| r.key.as_slice()),
            Request::Scan { .. } | Request::Stats | Request::Flush { .. } => None,
        }
    }

    /// True for commands that change stored data (they execute at the key's primary and are
    /// replicated to the other owners).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Request::Get { .. }
                | Request::MultiGet { .. }
                | Request::ListSubkeys { .. }
                | Request::Scan { .. }
                | Request::Stats
        )
    }

    /// A short stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Get { .. } => "get",
            Request::MultiGet { .. } => "multi_get",
            Request::Set { .. } => "set",
            Request::Delete { .. } => "delete",
            Request::Incr { .. } => "incr",
            Request::Decr { .. } => "decr",
            Request::Touch { .. } => "touch",
            Request::GetAndTouch { .. } => "get_and_touch",
            Request::SetSubkeys { .. } => "set_subkeys",
            Request::AddSubkey { .. } => "add_subkey",
            Request::RemoveSubkey { .. } => "remove_subkey",
            Request::ListSubkeys { .. } => "list_subkeys",
            Request::ClearSubkeys { .. } => "clear_subkeys",
            Request::DeleteWithChildren { .. } => "delete_with_children",
            Request::Scan { .. } => "scan",
            Request::Stats => "stats",
            Request::Flush { .. } => "flush",
            Request::Replicate { .. } => "replicate",
        }
    }
}
