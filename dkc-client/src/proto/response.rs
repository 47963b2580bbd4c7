//! Responses: what a dkc-server answers to a [`super::Request`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error_code::ErrorCode;

/// A live item as returned by reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value (empty in a `keys_only` scan).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Memcached client flags.
    pub flags: u32,
    /// Absolute expiry, unix seconds, 0 = never.
    pub expire_at: u64,
    /// The version, which is also the CAS token.
    pub version: u64,
}

/// One node's page of a key-ordered scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPage {
    /// Live items in ascending key byte order, all after the request's cursor.
    pub items: Vec<Item>,
    /// The last key of `items` when this node may hold more keys in range; `None` when it has
    /// no more.
    #[serde(with = "serde_bytes")]
    pub next_cursor: Option<Vec<u8>>,
}

/// One response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A found item (`Get`, `GetAndTouch`).
    Value(Item),
    /// Found items (`MultiGet`), in request order, missing keys left out.
    Values(Vec<Item>),
    /// Written; the new version (CAS token).
    Stored {
        /// Version of the stored item.
        version: u64,
    },
    /// A condition of `Add`/`Replace`/`Append`/`Prepend` did not hold.
    NotStored,
    /// A CAS token did not match the live item's version.
    Exists,
    /// No live item.
    NotFound,
    /// Deleted (a tombstone was written), or a subkey was removed.
    Deleted,
    /// Deleted; here is the deleted item's subkey list for the client to delete in turn.
    DeletedWithChildren {
        /// The subkeys the item listed.
        #[serde(with = "super::bytes_list")]
        children: Vec<Vec<u8>>,
    },
    /// The result of `Incr`/`Decr`.
    Number(u64),
    /// The expiry was changed.
    Touched,
    /// A subkey list.
    Subkeys(#[serde(with = "super::bytes_list")] Vec<Vec<u8>>),
    /// A page of a scan.
    ScanPage(ScanPage),
    /// Counters by name (stable names, sorted).
    Stats(BTreeMap<String, u64>),
    /// `Flush` wrote this many tombstones.
    Flushed {
        /// Live items deleted.
        deleted: u64,
    },
    /// `Replicate` result.
    Replicated {
        /// Records this node now holds at their version (stored now, or already held).
        applied: u64,
        /// Records ignored because this node holds a strictly newer version.
        stale: u64,
        /// A fenced record (one with a `base`) that was refused: the record this node holds,
        /// newer than the record's base, which the primary did not know about (or, for a
        /// stale fenced record, the newer record held). The primary installs it as it is.
        #[serde(default)]
        conflict: Option<Box<super::record::WireRecord>>,
    },
    /// The request failed.
    Error {
        /// Stable code (see [`ErrorCode`]).
        code: ErrorCode,
        /// What went wrong, in words, with the numbers involved.
        message: String,
    },
}

impl Response {
    /// Shorthand for an error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}
