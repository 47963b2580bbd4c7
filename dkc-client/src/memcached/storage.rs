//! The `Storage` trait: what the memcached front needs from whatever keeps the items, one
//! method per verb. The protocol layer parses, converts expiry times into absolute ones and
//! encodes replies; a storage only applies verbs atomically per key and never sees the wire.
//!
//! Implementations: [`super::memory::MemoryStorage`] (tests, `--backend memory`) and, later,
//! the dkc cluster client. A storage must never depend on the protocol codecs.

use std::future::Future;

use bytes::Bytes;

/// Opaque compare-and-swap token chosen by the storage (memcached's "cas unique").
pub type Cas = u64;

/// When an item stops being visible, in unix seconds. The protocol layer has already turned
/// memcached's relative/absolute/negative exptime into this one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// Expired once the storage clock reads this second or later (a past time means "already
    /// expired", which is how a negative exptime arrives).
    At(u64),
}

impl Expiry {
    pub fn is_expired(self, now_secs: u64) -> bool {
        match self {
            Expiry::Never => false,
            Expiry::At(at) => at <= now_secs,
        }
    }
}

/// An item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Bytes,
    pub flags: u32,
    pub cas: Cas,
    pub expiry: Expiry,
    /// Unix second of the last access (meta `l`).
    pub last_access_secs: u64,
    /// Whether the item was read before this access (meta `h`).
    pub fetched_before: bool,
    /// Marked stale by a meta invalidation (`md I`); meta `X`.
    pub stale: bool,
}

/// What a fetch should do besides returning the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetOptions {
    /// `gat`/`gats`/`mg T`: set this expiry on a hit.
    pub touch: Option<Expiry>,
    /// `mg N`: on a miss, create an empty item with this expiry and hand out the win token.
    pub vivify: Option<Expiry>,
}

/// Who should recache an item (meta `W`/`Z` tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecacheToken {
    /// This client won: it should fetch from the source and store the item.
    Win,
    /// Another client already holds the win token.
    AlreadySent,
}

/// A fetched item, with the recache state a meta get reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub item: Item,
    pub token: Option<RecacheToken>,
}

/// Which storage verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

/// A value to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub value: Bytes,
    pub flags: u32,
    pub expiry: Expiry,
}

/// Result of a store verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored {
        cas: Cas,
    },
    /// add on an existing key, replace/append/prepend on a missing one.
    NotStored,
    /// CAS mismatch.
    Exists,
    /// CAS on a missing key.
    NotFound,
}

/// Result of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    Exists,
}

/// Options of a delete (`md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteOptions {
    pub cas_compare: Option<Cas>,
    /// `md I`: keep the item, mark it stale, and give it this expiry if set.
    pub invalidate: Option<Option<Expiry>>,
}

/// An incr/decr request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arith {
    pub incr: bool,
    pub delta: u64,
    /// `ma N J`: create the counter with this initial value and expiry on a miss.
    pub vivify: Option<(u64, Expiry)>,
    /// `ma T`: set this expiry on a hit.
    pub touch: Option<Expiry>,
    pub cas_compare: Option<Cas>,
}

/// Result of incr/decr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    Value {
        value: u64,
        cas: Cas,
        expiry: Expiry,
    },
    NotFound,
    NonNumeric,
    Exists,
}

/// Item counts a storage reports for `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorageStats {
    pub curr_items: u64,
    pub total_items: u64,
    /// Bytes of keys and values held.
    pub bytes: u64,
    pub limit_maxbytes: u64,
}

/// A storage failure; the protocol layer answers `SERVER_ERROR <message>` and keeps the
/// connection open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("cluster unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("timed out after {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("out of memory storing object")]
    OutOfMemory,
    #[error("{message}")]
    Other { message: String },
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Items by key, with memcached's verbs. Every method is atomic for its key. `now_secs` is the
/// storage's own clock (the protocol layer converts exptimes with it, so both agree).
pub trait Storage: Send + Sync + 'static {
    /// Current unix time in seconds as this storage sees it.
    fn now_secs(&self) -> u64;

    /// get/gets/gat/gats/mg: one entry per key, in order; `None` for a miss.
    fn get(
        &self,
        keys: &[Bytes],
        options: GetOptions,
    ) -> impl Future<Output = StorageResult<Vec<Option<Fetched>>>> + Send;

    /// set/add/replace/append/prepend, and `cas` when `cas_compare` is given. append and
    /// prepend keep the stored flags and expiry. A successful store clears staleness and the
    /// recache token.
    fn store(
        &self,
        mode: StoreMode,
        key: Bytes,
        item: NewItem,
        cas_compare: Option<Cas>,
    ) -> impl Future<Output = StorageResult<StoreOutcome>> + Send;

    /// delete and `md`.
    fn delete(
        &self,
        key: Bytes,
        options: DeleteOptions,
    ) -> impl Future<Output = StorageResult<DeleteOutcome>> + Send;

    /// incr/decr and `ma`: 64-bit unsigned; incr wraps, decr stops at 0.
    fn arith(
        &self,
        key: Bytes,
        arith: Arith,
    ) -> impl Future<Output = StorageResult<ArithOutcome>> + Send;

    /// touch: set a new expiry; false when the key is missing.
    fn touch(&self, key: Bytes, expiry: Expiry)
        -> impl Future<Output = StorageResult<bool>> + Send;

    /// flush_all: invalidate every item stored before `at_secs` once the clock reaches it
    /// (now, when `None`).
    fn flush_all(&self, at_secs: Option<u64>) -> impl Future<Output = StorageResult<()>> + Send;

    /// Counters for `stats`.
    fn stats(&self) -> impl Future<Output = StorageResult<StorageStats>> + Send;
}
