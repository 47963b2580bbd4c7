//! Plain value types of the public API (records, metadata, outcomes, cursors, counters).
//! No I/O here.

/// Metadata given with a write: memcached flags, expiry and the opaque version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Memcached client flags, stored and returned untouched.
    pub flags: u32,
    /// Absolute expiry in unix seconds; 0 means never. A record with `0 < expire_at <= now`
    /// is expired: never returned by `get`, reclaimed in the background.
    pub expire_at: u64,
    /// Opaque version; greater means newer (dkc packs a hybrid logical clock into it).
    pub version: u64,
}

/// One stored record, owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The key (never empty).
    pub key: Vec<u8>,
    /// The value bytes (empty for tombstones).
    pub value: Vec<u8>,
    /// Memcached flags.
    pub flags: u32,
    /// Expiry, unix seconds, 0 = never.
    pub expire_at: u64,
    /// Opaque version, greater = newer.
    pub version: u64,
    /// True for a deletion marker that carries a version.
    pub tombstone: bool,
    /// Child key names (K2HASH subkeys), in insertion order, without duplicates.
    pub subkeys: Vec<Vec<u8>>,
}

impl Record {
    /// The metadata triple of this record.
    pub fn meta(&self) -> Meta {
        Meta {
            flags: self.flags,
            expire_at: self.expire_at,
            version: self.version,
        }
    }

    /// True if expired at `now` (unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now
    }

    /// True if neither a tombstone nor expired at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        !self.tombstone && !self.is_expired(now)
    }
}

/// A borrowed view of a stored record, valid only inside a `get_with` callback.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// Memcached flags.
    pub flags: u32,
    /// Expiry, unix seconds, 0 = never.
    pub expire_at: u64,
    /// Opaque version.
    pub version: u64,
    /// Tombstone bit.
    pub tombstone: bool,
    /// The encoded subkey list (see FORMAT.md); decode with [`RecordRef::subkeys`].
    pub subkeys_raw: &'a [u8],
}

impl RecordRef<'_> {
    /// The metadata triple.
    pub fn meta(&self) -> Meta {
        Meta {
            flags: self.flags,
            expire_at: self.expire_at,
            version: self.version,
        }
    }

    /// Decodes the subkey list (already validated when the record was read).
    pub fn subkeys(&self) -> Vec<Vec<u8>> {
        crate::format::decode_subkeys(self.subkeys_raw).unwrap_or_default()
    }

    /// Copies into an owned [`Record`].
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key.to_vec(),
            value: self.value.to_vec(),
            flags: self.flags,
            expire_at: self.expire_at,
            version: self.version,
            tombstone: self.tombstone,
            subkeys: self.subkeys(),
        }
    }
}

/// What an `update` callback wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Leave the key as it is.
    Keep,
    /// Store this value and metadata (the subkey list is kept as for `set`).
    Put {
        /// New value.
        value: Vec<u8>,
        /// New metadata.
        meta: Meta,
    },
    /// Store this record exactly (value, meta, tombstone bit, subkeys); its `key` is ignored.
    PutRecord(Record),
    /// Remove: `Some(v)` leaves a tombstone with version `v`, `None` deletes outright.
    Remove {
        /// Tombstone version or outright delete.
        tombstone_version: Option<u64>,
    },
}

/// Result of `compare_and_set`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// No live record.
    NotFound,
    /// The live record has another version.
    Mismatch {
        /// The version currently stored.
        current: u64,
    },
    /// Stored.
    Stored,
}

/// One item returned by a scan: the record as stored plus its key hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanItem {
    /// `key_hash(record.key)`.
    pub hash: u64,
    /// The record, tombstones and expired records included.
    pub record: Record,
    /// True if expired at the time of the scan (never true for tombstones' meaning).
    pub expired: bool,
}

/// A resumable scan position: everything strictly after `(hash, key)` in `(key_hash, key)`
/// order is yet to come. [`Cursor::start`] is before everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// Hash of the last key returned.
    pub hash: u64,
    /// The last key returned; empty (with `started == false`) at the start.
    pub key: Vec<u8>,
    /// False only for the initial cursor.
    pub started: bool,
}

impl Cursor {
    /// A cursor before every record.
    pub fn start() -> Cursor {
        Cursor::default()
    }

    /// Serialises for sending over a wire: `started u8 || hash u64 LE || key`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + self.key.len());
        v.push(u8::from(self.started));
        v.extend_from_slice(&self.hash.to_le_bytes());
        v.extend_from_slice(&self.key);
        v
    }

    /// Parses [`Cursor::to_bytes`]; `None` if malformed.
    pub fn from_bytes(b: &[u8]) -> Option<Cursor> {
        let (&s, rest) = b.split_first()?;
        if s > 1 || rest.len() < 8 {
            return None;
        }
        let hash = u64::from_le_bytes(rest[..8].try_into().ok()?);
        Some(Cursor {
            hash,
            key: rest[8..].to_vec(),
            started: s == 1,
        })
    }

    /// True if `(hash, key)` comes after this cursor.
    pub fn is_before(&self, hash: u64, key: &[u8]) -> bool {
        !self.started || (hash, key) > (self.hash, self.key.as_slice())
    }
}

/// A range digest: number of records and wrapping sum of `digest_term(key, version)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Digest {
    /// Records in range, tombstones included.
    pub count: u64,
    /// Wrapping sum of `xxh64(key || version_le)`.
    pub hash: u64,
}

impl Digest {
    /// Adds one record's contribution.
    pub fn add(&mut self, key: &[u8], version: u64) {
        self.count = self.count.wrapping_add(1);
        self.hash = self.hash.wrapping_add(crate::digest_term(key, version));
    }

    /// Combines two disjoint ranges.
    pub fn merge(&mut self, other: Digest) {
        self.count = self.count.wrapping_add(other.count);
        self.hash = self.hash.wrapping_add(other.hash);
    }
}

/// Counters of an open store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records that are not tombstones (expired ones not yet reclaimed included).
    pub items: u64,
    /// Tombstone records.
    pub tombstones: u64,
    /// Sum of key + value + subkey bytes of all records.
    pub live_bytes: u64,
    /// Bytes of all allocated record blocks (headers and padding included).
    pub used_bytes: u64,
    /// Current file (or memory image) size in bytes.
    pub file_size: u64,
    /// Bytes known free for reuse inside the file (holes plus the unused tail).
    pub free_bytes: u64,
    /// Number of index shards.
    pub shards: u64,
    /// Total index slots over all shards.
    pub index_slots: u64,
    /// Shard tables grown since open.
    pub grows: u64,
    /// High-water mark: first byte never handed out by the allocator.
    pub tail_bytes: u64,
    /// fdatasync calls made since open (group commit makes this far smaller than the number
    /// of synced writes when many writers wait at once).
    pub syncs: u64,
}
