//! In-memory [`Storage`]: a `HashMap` behind a `Mutex`, with expiry read from a [`Clock`] that
//! tests can move by hand. It serves the tests and `dkc-memcached --backend memory`; it is not
//! the cluster and must never be presented as one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use super::numeric::parse_u64;
use super::storage::{
    Arith, ArithOutcome, Cas, DeleteOptions, DeleteOutcome, Expiry, Fetched, GetOptions, Item,
    NewItem, RecacheToken, Storage, StorageResult, StorageStats, StoreMode, StoreOutcome,
};

/// Source of the current unix time in seconds.
pub trait Clock: Send + Sync + 'static {
    fn now_secs(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests of expiry).
#[derive(Debug, Default)]
pub struct ManualClock {
    secs: AtomicU64,
}

impl ManualClock {
    pub fn new(start_secs: u64) -> Self {
        ManualClock {
            secs: AtomicU64::new(start_secs),
        }
    }

    pub fn advance(&self, secs: u64) {
        self.secs.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_secs(&self) -> u64 {
        self.secs.load(Ordering::SeqCst)
    }
}

/// Default memory budget reported as `limit_maxbytes` (memcached's default `-m 64`).
pub const MEMORY_LIMIT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Entry {
    item: Item,
    stored_secs: u64,
    /// The recache win token was handed out and no store has happened since.
    token_sent: bool,
}

#[derive(Debug, Default)]
struct State {
    items: HashMap<Bytes, Entry>,
    cas_last: Cas,
    total_items: u64,
    bytes: u64,
    /// Delayed `flush_all`: items stored at or before this second vanish once it is reached.
    flush_at_secs: Option<u64>,
}

impl State {
    fn next_cas(&mut self) -> Cas {
        self.cas_last += 1;
        self.cas_last
    }

    /// The live entry for `key`, dropping it first if it expired or was flushed.
    fn live(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let dead = match self.items.get(key) {
            None => return None,
            Some(entry) => {
                entry.item.expiry.is_expired(now)
                    || self
                        .flush_at_secs
                        .is_some_and(|at| at <= now && entry.stored_secs <= at)
            }
        };
        if dead {
            self.remove(key);
            return None;
        }
        self.items.get_mut(key)
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(entry) = self.items.remove(key) {
            self.bytes -= (key.len() + entry.item.value.len()) as u64;
        }
    }

    fn put(&mut self, key: Bytes, item: Item, now: u64) {
        self.remove(&key);
        self.bytes += (key.len() + item.value.len()) as u64;
        self.total_items += 1;
        self.items.insert(
            key,
            Entry {
                item,
                stored_secs: now,
                token_sent: false,
            },
        );
    }
}

/// The in-memory storage.
pub struct MemoryStorage {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new(Arc::new(SystemClock))
    }
}

impl MemoryStorage {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryStorage {
            state: Mutex::new(State::default()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters more than losing the server, so keep serving with the inner state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_item(&self, state: &mut State, item: NewItem, now: u64) -> Item {
        Item {
            value: item.value,
            flags: item.flags,
            cas: state.next_cas(),
            expiry: item.expiry,
            last_access_secs: now,
            fetched_before: false,
            stale: false,
        }
    }
}

/// The text of a counter after incr/decr: memcached rewrites a shorter number in place,
/// padded with spaces to the old length, and makes a new item only when it grows.
fn counter_text(value: u64, old_len: usize) -> Bytes {
    let digits = value.to_string();
    let mut out = BytesMut::with_capacity(old_len.max(digits.len()));
    out.extend_from_slice(digits.as_bytes());
    while out.len() < old_len {
        out.extend_from_slice(b" ");
    }
    out.freeze()
}

impl Storage for MemoryStorage {
    fn now_secs(&self) -> u64 {
        self.clock.now_secs()
    }

    async fn get(
        &self,
        keys: &[Bytes],
        options: GetOptions,
    ) -> StorageResult<Vec<Option<Fetched>>> {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let fetched = match state.live(key, now) {
                Some(entry) => {
                    let mut item = entry.item.clone();
                    entry.item.fetched_before = true;
                    entry.item.last_access_secs = now;
                    if let Some(expiry) = options.touch {
                        entry.item.expiry = expiry;
                        item.expiry = expiry;
                    }
                    let token = if entry.token_sent {
                        Some(RecacheToken::AlreadySent)
                    } else if entry.item.stale {
                        entry.token_sent = true;
                        Some(RecacheToken::Win)
                    } else {
                        None
                    };
                    Some(Fetched { item, token })
                }
                None => match options.vivify {
                    Some(expiry) => {
                        let item = self.new_item(
                            &mut state,
                            NewItem {
                                value: Bytes::new(),
                                flags: 0,
                                expiry,
                            },
                            now,
                        );
                        state.put(key.clone(), item.clone(), now);
                        if let Some(entry) = state.items.get_mut(key) {
                            entry.token_sent = true;
                        }
                        Some(Fetched {
                            item,
                            token: Some(RecacheToken::Win),
                        })
                    }
                    None => None,
                },
            };
            out.push(fetched);
        }
        Ok(out)
    }

    async fn store(
        &self,
        mode: StoreMode,
        key: Bytes,
        new: NewItem,
        cas_compare: Option<Cas>,
    ) -> StorageResult<StoreOutcome> {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        let existing = state.live(&key, now).map(|e| e.item.clone());
        if let Some(cas) = cas_compare {
            match &existing {
                None => return Ok(StoreOutcome::NotFound),
                Some(old) if old.cas != cas => return Ok(StoreOutcome::Exists),
                Some(_) => {}
            }
        }
        let item = match (mode, existing) {
            (StoreMode::Set, _) => new,
            (StoreMode::Add, Some(_)) => return Ok(StoreOutcome::NotStored),
            (StoreMode::Add, None) => new,
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return Ok(StoreOutcome::NotStored)
            }
            (StoreMode::Replace, Some(_)) => new,
            (StoreMode::Append | StoreMode::Prepend, Some(old)) => {
                let mut value = BytesMut::with_capacity(old.value.len() + new.value.len());
                if mode == StoreMode::Append {
                    value.extend_from_slice(&old.value);
                    value.extend_from_slice(&new.value);
                } else {
                    value.extend_from_slice(&new.value);
                    value.extend_from_slice(&old.value);
                }
                NewItem {
                    value: value.freeze(),
                    flags: old.flags,
                    expiry: old.expiry,
                }
            }
        };
        let item = self.new_item(&mut state, item, now);
        let cas = item.cas;
        state.put(key, item, now);
        Ok(StoreOutcome::Stored { cas })
    }

    async fn delete(&self, key: Bytes, options: DeleteOptions) -> StorageResult<DeleteOutcome> {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        let Some(entry) = state.live(&key, now) else {
            return Ok(DeleteOutcome::NotFound);
        };
        if options.cas_compare.is_some_and(|cas| cas != entry.item.cas) {
            return Ok(DeleteOutcome::Exists);
        }
        match options.invalidate {
            Some(expiry) => {
                entry.item.stale = true;
                entry.token_sent = false;
                if let Some(expiry) = expiry {
                    entry.item.expiry = expiry;
                }
            }
            None => state.remove(&key),
        }
        Ok(DeleteOutcome::Deleted)
    }

    async fn arith(&self, key: Bytes, arith: Arith) -> StorageResult<ArithOutcome> {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        let Some(entry) = state.live(&key, now) else {
            return Ok(match arith.vivify {
                None => ArithOutcome::NotFound,
                Some((initial, expiry)) => {
                    let item = self.new_item(
                        &mut state,
                        NewItem {
                            value: Bytes::from(initial.to_string()),
                            flags: 0,
                            expiry,
                        },
                        now,
                    );
                    let cas = item.cas;
                    state.put(key, item, now);
                    ArithOutcome::Value {
                        value: initial,
                        cas,
                        expiry,
                    }
                }
            });
        };
        if arith.cas_compare.is_some_and(|cas| cas != entry.item.cas) {
            return Ok(ArithOutcome::Exists);
        }
        let old = &entry.item;
        let current = match parse_u64(&old.value) {
            Some(v) if !old.value.is_empty() => v,
            _ => return Ok(ArithOutcome::NonNumeric),
        };
        let value = if arith.incr {
            current.wrapping_add(arith.delta)
        } else {
            current.saturating_sub(arith.delta)
        };
        let expiry = arith.touch.unwrap_or(old.expiry);
        let new = NewItem {
            value: counter_text(value, old.value.len()),
            flags: old.flags,
            expiry,
        };
        let item = self.new_item(&mut state, new, now);
        let cas = item.cas;
        state.put(key, item, now);
        Ok(ArithOutcome::Value { value, cas, expiry })
    }

    async fn touch(&self, key: Bytes, expiry: Expiry) -> StorageResult<bool> {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        match state.live(&key, now) {
            Some(entry) => {
                entry.item.expiry = expiry;
                entry.item.last_access_secs = now;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn flush_all(&self, at_secs: Option<u64>) -> StorageResult<()> {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        match at_secs {
            Some(at) if at > now => state.flush_at_secs = Some(at),
            _ => {
                state.items.clear();
                state.bytes = 0;
                state.flush_at_secs = None;
            }
        }
        Ok(())
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        // Count only live items, as a client would see them.
        let keys: Vec<Bytes> = state.items.keys().cloned().collect();
        for key in keys {
            let _ = state.live(&key, now);
        }
        Ok(StorageStats {
            curr_items: state.items.len() as u64,
            total_items: state.total_items,
            bytes: state.bytes,
            limit_maxbytes: MEMORY_LIMIT_BYTES_DEFAULT,
        })
    }
}
