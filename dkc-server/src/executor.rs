//! [`Executor`]: runs one [`Request`] against the store and says what to replicate.
//!
//! The executor is the whole of the command layer's state: the store, this node's hybrid
//! logical clock, the limits and the counters. It is `Send + Sync`; worker threads share one
//! executor and call [`Executor::execute`] concurrently (per-key atomicity comes from the
//! engine's key locks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dkc_client::proto::{ErrorCode, Request, Response, WireRecord};
use k2hash::K2Hash;

use crate::cmd::{self, CmdError, Ctx};
use crate::counters::{bump, Counters};
use crate::hlc::{Hlc, PhysicalClock};
use crate::limits::Limits;

/// What executing a request produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The answer for the client.
    pub response: Response,
    /// Records this node wrote as primary, to send to the key's other live owners as
    /// `Request::Replicate`. Empty for reads, failed conditions, errors and replicas' own
    /// applies. Usually one record; a list so one request may write several.
    pub replicate: Vec<WireRecord>,
    /// Set when the one record in `replicate` is a fenced (value-dependent) write: what the
    /// primary needs to take it back if it is not acknowledged.
    pub fence: Option<Fence>,
}

/// How to take back a fenced write (see `crate::cmd::replicate`): if `key` still holds
/// `version`, put `prior` back (`None`: the key held nothing, remove it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The key written.
    pub key: Vec<u8>,
    /// The version the write minted.
    pub version: u64,
    /// The record stored before the write (tombstone or expired included), `None` if none.
    pub prior: Option<WireRecord>,
}

/// Executes requests on one k2hash store.
pub struct Executor {
    store: Arc<K2Hash>,
    hlc: Hlc,
    limits: Limits,
    counters: Counters,
    expire_default_secs: Option<u64>,
    storage_log: LogThrottle,
}

/// At most one warning per this many milliseconds for storage failures (a full disk fails
/// every write; the log must say so without being flooded).
pub const STORAGE_ERROR_LOG_INTERVAL_MS: u64 = 10_000;

/// Lets one message through per interval and counts the ones held back.
struct LogThrottle {
    start: Instant,
    /// Milliseconds since `start` before which messages are held back.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    fn new() -> LogThrottle {
        LogThrottle {
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when a message may go out now.
    fn admit(&self, interval_ms: u64) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Executor {
    /// An executor for node `node_index` (its index among the cluster's server nodes, which
    /// is stamped into every version it mints) reading wall time from `clock`.
    pub fn new(store: Arc<K2Hash>, node_index: u8, clock: Arc<dyn PhysicalClock>) -> Executor {
        Executor {
            store,
            hlc: Hlc::new(node_index, clock),
            limits: Limits::default(),
            counters: Counters::default(),
            expire_default_secs: None,
            storage_log: LogThrottle::new(),
        }
    }

    /// The same executor with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Executor {
        self.limits = limits;
        self
    }

    /// The same executor giving items written without an expiry this lifetime (K2HDKC's
    /// EXPIRE), in seconds.
    pub fn with_expire_default(mut self, secs: Option<u64>) -> Executor {
        self.expire_default_secs = secs.filter(|s| *s > 0);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<K2Hash> {
        &self.store
    }

    /// This node's clock.
    pub fn hlc(&self) -> &Hlc {
        &self.hlc
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The operation counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Runs one request. Never panics on any request; failures come back as
    /// `Response::Error` with a stable code.
    pub fn execute(&self, req: &Request) -> Executed {
        let ctx = Ctx {
            store: &self.store,
            hlc: &self.hlc,
            limits: &self.limits,
            counters: &self.counters,
            expire_default_secs: self.expire_default_secs,
        };
        match dispatch(&ctx, req) {
            Ok(done) => done,
            Err(CmdError { code, message }) => {
                bump(&self.counters.errors);
                self.note_storage_failure(req, &code, &message);
                tracing::debug!(command = req.name(), %code, %message, "command failed");
                Executed::reply(Response::Error { code, message })
            }
        }
    }
}

impl Executor {
    /// Counts a failure of the storage engine (a full disk, an I/O error, corruption) and
    /// warns about it in the log, at most once per [`STORAGE_ERROR_LOG_INTERVAL_MS`]: unlike
    /// a bad request, it needs the operator.
    fn note_storage_failure(&self, req: &Request, code: &ErrorCode, message: &str) {
        let counter = match code {
            ErrorCode::NoSpace => &self.counters.errors_no_space,
            ErrorCode::Storage => &self.counters.errors_storage,
            _ => return,
        };
        bump(counter);
        if let Some(held_back) = self.storage_log.admit(STORAGE_ERROR_LOG_INTERVAL_MS) {
            tracing::warn!(
                command = req.name(),
                %code,
                held_back,
                "storage failed: {message} (held_back: like failures not logged since the \
                 last warning)"
            );
        }
    }
}

fn dispatch(ctx: &Ctx<'_>, req: &Request) -> cmd::CmdResult {
    match req {
        Request::Get { key } => cmd::get::execute(ctx, key),
        Request::MultiGet { keys } => cmd::multi_get::execute(ctx, keys),
        Request::Set {
            key,
            value,
            mode,
            flags,
            expire_at,
        } => cmd::set::execute(ctx, key, value, *mode, *flags, *expire_at),
        Request::Delete { key, cas } => cmd::delete::execute(ctx, key, *cas),
        Request::Incr {
            key,
            delta,
            initial,
            expire_at,
        } => cmd::incr_decr::execute(ctx, key, *delta, *initial, *expire_at, true),
        Request::Decr {
            key,
            delta,
            initial,
            expire_at,
        } => cmd::incr_decr::execute(ctx, key, *delta, *initial, *expire_at, false),
        Request::Touch { key, expire_at } => cmd::touch::execute(ctx, key, *expire_at),
        Request::GetAndTouch { key, expire_at } => {
            cmd::get_and_touch::execute(ctx, key, *expire_at)
        }
        Request::SetSubkeys { key, subkeys } => cmd::set_subkeys::execute(ctx, key, subkeys),
        Request::AddSubkey { key, subkey } => cmd::add_subkey::execute(ctx, key, subkey),
        Request::RemoveSubkey { key, subkey } => cmd::remove_subkey::execute(ctx, key, subkey),
        Request::ListSubkeys { key } => cmd::list_subkeys::execute(ctx, key),
        Request::ClearSubkeys { key } => cmd::clear_subkeys::execute(ctx, key),
        Request::DeleteWithChildren { key } => cmd::delete_with_children::execute(ctx, key),
        Request::Scan {
            range,
            cursor,
            limit,
            keys_only,
        } => cmd::scan::execute(ctx, range, cursor.as_deref(), *limit, *keys_only),
        Request::Stats => cmd::stats::execute(ctx),
        Request::Flush { confirm } => cmd::flush::execute(ctx, *confirm),
        Request::Replicate { records } => cmd::replicate::execute(ctx, records),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_e_no_space_and_other_io_errors_are_e_storage() {
        let io = |errno| k2hash::Error::Io {
            op: "fallocate",
            path: Some("/data/dkc.k2h".into()),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let full = k2hash::Error::NoSpace {
            op: "fallocate",
            path: Some("/data/dkc.k2h".into()),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let e = CmdError::from(full);
        assert_eq!(e.code, ErrorCode::NoSpace);
        assert!(e.message.contains("/data/dkc.k2h"), "{}", e.message);
        assert_eq!(CmdError::from(io(libc::EIO)).code, ErrorCode::Storage);
    }

    #[test]
    fn storage_warnings_are_throttled_and_count_what_they_hold_back() {
        let t = LogThrottle::new();
        assert_eq!(t.admit(60_000), Some(0));
        assert_eq!(t.admit(60_000), None);
        assert_eq!(t.admit(60_000), None);
        // An interval of 0 lets the next one through, with the two held back.
        let t0 = LogThrottle::new();
        assert_eq!(t0.admit(0), Some(0));
        t0.suppressed.fetch_add(2, Ordering::Relaxed);
        assert_eq!(t0.admit(0), Some(2));
    }
}
