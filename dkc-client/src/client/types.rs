//! The small value types of the driver's API: expiry, store options, scan queries and results,
//! per-node stats.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::proto::Item;
use crate::proto::ScanRange;

/// When an item dies. The wire carries absolute unix seconds, so relative expiries are turned
/// into absolute ones when the request is built (every node then agrees on the moment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// Never (the server may apply its configured EXPIRE default).
    #[default]
    Never,
    /// At this unix time, seconds.
    At(u64),
    /// This long from now (rounded up to whole seconds).
    In(Duration),
}

impl Expiry {
    /// The absolute unix second, 0 = never.
    pub fn to_expire_at(self) -> u64 {
        match self {
            Expiry::Never => 0,
            Expiry::At(t) => t,
            Expiry::In(d) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                now.saturating_add(secs.max(1))
            }
        }
    }
}

/// Flags and expiry of a stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreOptions {
    /// Opaque client flags (memcached's), returned with the item.
    pub flags: u32,
    /// When the item dies.
    pub expiry: Expiry,
}

impl StoreOptions {
    /// No flags, no expiry.
    pub fn new() -> StoreOptions {
        StoreOptions::default()
    }

    /// With these flags.
    pub fn flags(mut self, flags: u32) -> StoreOptions {
        self.flags = flags;
        self
    }

    /// With this expiry.
    pub fn expiry(mut self, expiry: Expiry) -> StoreOptions {
        self.expiry = expiry;
        self
    }
}

/// What a scan visits and how much per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanQuery {
    /// Which keys (in byte order).
    pub range: ScanRange,
    /// Continue after this key (the `cursor` of the previous [`ScanBatch`]); `None` = start.
    pub cursor: Option<Vec<u8>>,
    /// Most items per call (1..=[`super::options::SCAN_LIMIT_MAX`]).
    pub limit: u32,
    /// Return keys and metadata without values.
    pub keys_only: bool,
}

impl ScanQuery {
    /// Every key, 100 per call.
    pub fn all() -> ScanQuery {
        ScanQuery {
            range: ScanRange::All,
            cursor: None,
            limit: 100,
            keys_only: false,
        }
    }

    /// Keys starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> ScanQuery {
        ScanQuery {
            range: ScanRange::Prefix(prefix.into()),
            ..ScanQuery::all()
        }
    }

    /// Keys `k` with `start <= k < end` (`end` `None` = to the last key).
    pub fn range(start: impl Into<Vec<u8>>, end: Option<Vec<u8>>) -> ScanQuery {
        ScanQuery {
            range: ScanRange::Range {
                start: start.into(),
                end,
            },
            ..ScanQuery::all()
        }
    }

    /// With this page size.
    pub fn limit(mut self, limit: u32) -> ScanQuery {
        self.limit = limit;
        self
    }

    /// Continuing after `cursor`.
    pub fn after(mut self, cursor: Option<Vec<u8>>) -> ScanQuery {
        self.cursor = cursor;
        self
    }

    /// Keys only.
    pub fn keys_only(mut self, yes: bool) -> ScanQuery {
        self.keys_only = yes;
        self
    }
}

/// One call's worth of a scan: items in ascending key order, and where to continue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanBatch {
    /// Live items, ascending by key, no duplicates.
    pub items: Vec<Item>,
    /// Pass this as the next query's cursor; `None` when the range is exhausted.
    pub cursor: Option<Vec<u8>>,
    /// Server nodes that did not answer (tolerated up to REPLICA of them).
    pub missing_nodes: Vec<String>,
}

/// Counters of one server node, or why it did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    /// The node id ("host:ctlport").
    pub node: String,
    /// Its counters, or the error text.
    pub stats: std::result::Result<BTreeMap<String, u64>, String>,
}
