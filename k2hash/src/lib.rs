//! k2hash — the dkc storage engine: a hash table of versioned records in one file.
//!
//! This crate owns the on-disk format (specified byte by byte in `k2hash/FORMAT.md`), the three
//! storage modes, concurrency control, crash safety, expiry, iteration, digests, verification
//! and compaction of one k2hash file. It must never depend on networking, on chmpx or on any dkc
//! command: it stores opaque bytes and opaque versions.
//!
//! # Layout
//! - [`limits`]: every limit and default as a named constant.
//! - [`format`](mod@format): byte offsets of the header, shard directory, index slots and records, derived
//!   from each other and checked by const asserts; pure encode/decode, no I/O.
//! - `region`: the one big mapping (anonymous for memory mode, `MAP_SHARED` of the file
//!   otherwise) plus `pread`/`pwrite` access for index-map mode, file growth.
//! - `alloc`: free-space management (striped arenas, rebuilt from the index at every open,
//!   adjacent holes merged in the background).
//! - `engine`: shards (one `RwLock` and one open-addressing table of 8-byte slots each, grown
//!   by doubling one shard at a time), open/rebuild/close, record access primitives.
//! - `ops`: key operations, all built on one locked read-modify-write (`modify`).
//! - `scan`: cursors, hash-range scans, digests, purge, expiry reclamation, verification.
//! - `commit`: group commit for `sync` mode; `sweeper`: background expiry and coalescing.
//! - `verify` and `compact`: public reports and offline rewrite.
//! - `types`, `options`, `clock`, `error`: the public value types.
//!
//! # Storage modes
//! ```text
//!   OpenOptions::memory()        anonymous mapping, nothing persists
//!   OpenOptions::full_map(path)  whole file MAP_SHARED; index and records read via the mapping
//!   OpenOptions::index_map(path) same mapping, but records are read/written with pread/pwrite,
//!                                so only index pages are touched through the mapping
//! ```
//! The mapping reserves `file_size_max` bytes of address space once and the file is grown with
//! `fallocate`/`ftruncate` beneath it, so it never moves and readers never wait for a remap.
//!
//! # Keys, hashing, placement
//! [`key_hash`] is xxHash64 with seed 0 (the cluster contract). Empty keys are refused
//! ([`Error::InvalidArgument`]); empty values are allowed.

#![deny(unsafe_op_in_unsafe_fn)]

mod alloc;
mod clock;
mod commit;
mod compact;
mod engine;
mod error;
pub mod format;
pub mod limits;
mod ops;
mod options;
mod region;
mod scan;
mod sweeper;
mod types;
mod verify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use compact::{compact, CompactReport};
pub use error::{Error, Result};
pub use options::{Mode, OpenOptions};
pub use types::{CasOutcome, Cursor, Decision, Digest, Meta, Record, RecordRef, ScanItem, Stats};
pub use verify::{verify_path, Problem, VerifyReport};

use std::path::Path;
use std::sync::Arc;

/// The cluster-wide key hash: xxHash64, seed 0, over the key bytes. Never change it: slot
/// placement, hash-range scans and digests all depend on it.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, key)
}

/// The per-record digest term: xxHash64 (seed 0) of `key || version.to_le_bytes()`.
/// A range digest is the wrapping sum of this over every record (tombstones included).
#[inline]
pub fn digest_term(key: &[u8], version: u64) -> u64 {
    // Short keys (the usual case) are hashed in one call over a stack copy, which is cheaper
    // than the streaming hasher; both give the same xxHash64.
    if key.len() <= limits::DIGEST_TERM_STACK_KEY_MAX {
        let mut b = [0u8; limits::DIGEST_TERM_STACK_KEY_MAX + 8];
        b[..key.len()].copy_from_slice(key);
        b[key.len()..key.len() + 8].copy_from_slice(&version.to_le_bytes());
        return twox_hash::XxHash64::oneshot(0, &b[..key.len() + 8]);
    }
    digest_term_streaming(key, version)
}

/// `digest_term` with the streaming hasher (long keys; and the reference for the short path).
fn digest_term_streaming(key: &[u8], version: u64) -> u64 {
    let mut h = twox_hash::XxHash64::with_seed(0);
    std::hash::Hasher::write(&mut h, key);
    std::hash::Hasher::write(&mut h, &version.to_le_bytes());
    std::hash::Hasher::finish(&h)
}

/// An open k2hash store. `Send + Sync`; every method takes `&self` and may be called from many
/// threads at once. Dropping it closes the store (clears the dirty flag, removes a temporary
/// file, releases the owner lock).
pub struct K2Hash {
    inner: Arc<engine::Engine>,
}

impl K2Hash {
    /// Opens with the given options (same as `opts.open()`).
    pub fn open(opts: &OpenOptions) -> Result<K2Hash> {
        let inner = engine::Engine::open(opts)?;
        Ok(K2Hash { inner })
    }

    // ----- reads -------------------------------------------------------------------------

    /// The live record of `key`: not a tombstone, not expired. `None` otherwise.
    pub fn get(&self, key: &[u8]) -> Result<Option<Record>> {
        self.inner.get(key, false)
    }

    /// The stored record of `key` whatever its state: tombstones and expired records included
    /// (for merge and replication).
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Record>> {
        self.inner.get(key, true)
    }

    /// Runs `f` on the live record of `key` while it is locked, without copying it; returns
    /// `None` when there is no live record. The fastest read: no allocation in memory and
    /// full-map modes.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(RecordRef<'_>) -> R) -> Result<Option<R>> {
        self.inner.get_with(key, false, f)
    }

    /// Like [`K2Hash::get_with`] but also sees tombstones and expired records.
    pub fn get_raw_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(RecordRef<'_>) -> R,
    ) -> Result<Option<R>> {
        self.inner.get_with(key, true, f)
    }

    /// Copies the live value of `key` into `buf` (cleared first) and returns its metadata.
    pub fn get_into(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<Option<Meta>> {
        self.get_with(key, |r| {
            buf.clear();
            buf.extend_from_slice(r.value);
            r.meta()
        })
    }

    /// True when `key` has a live record.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get_with(key, |_| ())?.is_some())
    }

    // ----- writes ------------------------------------------------------------------------

    /// Stores `value` under `key` unconditionally with `meta` (flags, expiry, version). The
    /// key's subkey list is kept (cleared if the previous record was a tombstone or expired).
    pub fn set(&self, key: &[u8], value: &[u8], meta: Meta) -> Result<()> {
        self.inner.set(key, value, meta)
    }

    /// Stores `record` (value, meta, tombstone bit and subkeys exactly as given) only if
    /// `record.version` is greater than the stored version (absent counts as less). Returns
    /// whether it was applied. `record.key` is the key. Used by replication and merge.
    pub fn set_if_newer(&self, record: &Record) -> Result<bool> {
        self.inner.set_if_newer(record)
    }

    /// Removes `key`. With `Some(v)` leaves a tombstone of version `v` (value and subkeys
    /// dropped); with `None` deletes the record outright. Returns whether a live record existed.
    pub fn remove(&self, key: &[u8], tombstone_version: Option<u64>) -> Result<bool> {
        self.inner.remove(key, tombstone_version)
    }

    /// Deletes tombstones whose key hash is in `[hash_lo, hash_hi]` and whose version is
    /// `<= max_version`. Returns how many were deleted.
    pub fn purge_tombstones(&self, hash_lo: u64, hash_hi: u64, max_version: u64) -> Result<u64> {
        self.inner.purge_tombstones(hash_lo, hash_hi, max_version)
    }

    /// Stores `value` with `meta` only if the live record's version equals `expected_version`.
    pub fn compare_and_set(
        &self,
        key: &[u8],
        expected_version: u64,
        value: &[u8],
        meta: Meta,
    ) -> Result<CasOutcome> {
        self.inner
            .compare_and_set(key, expected_version, value, meta)
    }

    /// Returns the live record of `key` if any (`false`); otherwise stores `value`/`meta` and
    /// returns the new record (`true`).
    pub fn get_or_insert(&self, key: &[u8], value: &[u8], meta: Meta) -> Result<(Record, bool)> {
        self.inner.get_or_insert(key, value, meta)
    }

    /// Atomic read-modify-write of one key under its lock. `f` sees the live record (`None`
    /// when absent, tombstoned or expired) and returns what to do plus a result passed back.
    /// `f` runs while the key's shard is write-locked: it must not call back into this store.
    pub fn update<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Record>) -> (Decision, T),
    ) -> Result<T> {
        self.inner.update(key, false, f)
    }

    /// Like [`K2Hash::update`] but `f` also sees tombstones and expired records.
    pub fn update_raw<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Record>) -> (Decision, T),
    ) -> Result<T> {
        self.inner.update(key, true, f)
    }

    // ----- subkeys -----------------------------------------------------------------------

    /// Replaces the subkey list of the live record `parent`. Returns false if there is none.
    /// Duplicates in `children` are dropped (first occurrence kept).
    pub fn set_subkeys(&self, parent: &[u8], children: &[&[u8]]) -> Result<bool> {
        self.inner.set_subkeys(parent, children)
    }

    /// Appends `child` to the subkey list of the live record `parent` unless already present.
    /// Returns false if `parent` has no live record.
    pub fn add_subkey(&self, parent: &[u8], child: &[u8]) -> Result<bool> {
        self.inner.add_subkey(parent, child)
    }

    /// Removes `child` from `parent`'s subkey list. Returns whether it was listed.
    pub fn remove_subkey(&self, parent: &[u8], child: &[u8]) -> Result<bool> {
        self.inner.remove_subkey(parent, child)
    }

    /// The subkey list of the live record `parent` (`None` if no live record).
    pub fn subkeys(&self, parent: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        self.inner.subkeys(parent)
    }

    /// Removes `key` and, recursively, every key in its subkey list (each removal is atomic on
    /// its own; the whole is not). `tombstone_version` as in [`K2Hash::remove`]. Returns how
    /// many live records were removed.
    pub fn remove_with_children(&self, key: &[u8], tombstone_version: Option<u64>) -> Result<u64> {
        self.inner.remove_with_children(key, tombstone_version)
    }

    // ----- iteration, digests, stats -----------------------------------------------------

    /// Up to `limit` stored records (tombstones and expired included, each flagged) in
    /// ascending `(key_hash, key)` order after `cursor`. Returns the next cursor, or `None`
    /// when done. Robust to concurrent writes and growth: every record present for the whole
    /// scan is returned exactly once; records written during the scan may or may not be.
    pub fn scan(&self, cursor: &Cursor, limit: usize) -> Result<(Vec<ScanItem>, Option<Cursor>)> {
        self.inner.scan_range(0, u64::MAX, cursor, limit)
    }

    /// As [`K2Hash::scan`], restricted to key hashes in `[hash_lo, hash_hi]` (inclusive).
    pub fn scan_hash_range(
        &self,
        hash_lo: u64,
        hash_hi: u64,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<(Vec<ScanItem>, Option<Cursor>)> {
        self.inner.scan_range(hash_lo, hash_hi, cursor, limit)
    }

    /// Digest of all records (tombstones included) whose key hash is in `[hash_lo, hash_hi]`:
    /// count and wrapping sum of [`digest_term`]. O(cells) for ranges aligned to the 65536
    /// digest cells (top 16 bits of the hash); partial cells at the edges are scanned.
    pub fn digest(&self, hash_lo: u64, hash_hi: u64) -> Result<Digest> {
        self.inner.digest(hash_lo, hash_hi)
    }

    /// Counters: items, tombstones, bytes, file size, free bytes, index geometry.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Flushes everything written so far to stable storage (fdatasync). No-op in memory mode.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// Checks every structure and record of the open store; problems are listed, not fatal.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.inner.verify()
    }

    /// Writes a compacted copy of this store to a new file at `dst` (full-map format).
    pub fn compact_to(&self, dst: &Path, progress: impl FnMut(u64, u64)) -> Result<CompactReport> {
        compact::compact_open(&self.inner, dst, progress)
    }

    /// Reclaims expired records now (the background sweeper does this periodically). Returns
    /// how many were removed.
    pub fn reclaim_expired(&self) -> Result<u64> {
        self.inner.reclaim_expired()
    }

    /// Merges adjacent free blocks now (the background sweeper does this periodically).
    /// Returns how many free blocks were merged away.
    pub fn coalesce_free_space(&self) -> u64 {
        self.inner.alloc.coalesce() as u64
    }

    /// The current time of this store's clock, unix seconds.
    pub fn now(&self) -> u64 {
        self.inner.now()
    }

    /// The storage mode this store was opened in.
    pub fn mode(&self) -> Mode {
        self.inner.mode()
    }

    /// The file path (None for memory mode).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path()
    }

    pub(crate) fn inner_engine(&self) -> Arc<engine::Engine> {
        self.inner.clone()
    }

    /// Closes the store explicitly, reporting errors that `Drop` would have to ignore.
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }
}

impl std::fmt::Debug for K2Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K2Hash")
            .field("mode", &self.mode())
            .field("path", &self.path())
            .finish()
    }
}

impl Drop for K2Hash {
    fn drop(&mut self) {
        let _ = self.inner.close();
    }
}

/// Shorthand for `K2Hash::open` from a path in full-map mode with `create(true)`.
pub fn open_path(path: impl AsRef<Path>) -> Result<K2Hash> {
    OpenOptions::full_map(path.as_ref()).create(true).open()
}

/// A clock handle type used by [`OpenOptions::clock`].
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_term_short_path_equals_streaming() {
        let key: Vec<u8> = (0..limits::DIGEST_TERM_STACK_KEY_MAX + 40)
            .map(|i| (i * 37 + 11) as u8)
            .collect();
        for len in 1..=key.len() {
            for v in [0, 1, 0x0123_4567_89ab_cdef, u64::MAX] {
                assert_eq!(
                    digest_term(&key[..len], v),
                    digest_term_streaming(&key[..len], v),
                    "key length {len}, version {v:#x}"
                );
            }
        }
        // Pinned value: xxHash64(seed 0) of b"k" || 7u64 little-endian.
        let mut m = b"k".to_vec();
        m.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(digest_term(b"k", 7), twox_hash::XxHash64::oneshot(0, &m));
    }
}
