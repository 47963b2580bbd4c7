//! The merge protocol between a chmpx daemon and the server-role process attached to it.
//!
//! chmpx drives merges; the server process (dkc-server) owns the data. chmpx asks its own
//! server process, over the attach API (an ordinary request to "one node": this node, answered
//! by a reply), with a [`MergeRequest`] body and gets a [`MergeResponse`] body back. chmpx never
//! looks inside keys or item batches: it compares digests and versions, and carries batches from
//! one owner's server process to another's.
//!
//! ```text
//!  chmpx A                                   chmpx B
//!   │ Digest{ranges} ──▶ server A             │ Digest{ranges} ──▶ server B
//!   │ compare (count, hash) per range; split differing ranges and compare again
//!   │ ListVersions{lo,hi,..} ──▶ A            │ ListVersions{lo,hi,..} ──▶ B
//!   │ keys newer or missing on B: FetchItems{keys} ──▶ A ──batch──▶ ApplyItems{batch} ──▶ B
//!   │ (and the other way round)
//!   │ when every owner holds the same range: PurgeTombstones{lo,hi,max_version} ──▶ A and B
//!   │ a node that no longer owns a range pushes it to the owners, then DropRange{lo,hi} ──▶ self
//! ```
//!
//! # Wire form
//! A merge body is [`MERGE_BODY_MAGIC`] (4 bytes) followed by the MessagePack encoding
//! (rmp-serde, named fields) of a [`MergeRequest`] or [`MergeResponse`]. The magic lets a
//! server process tell merge requests from client requests without knowing anything else about
//! the message; [`is_merge_body`] checks it.
//!
//! # Hash ranges
//! Every range is an inclusive range `lo..=hi` of [`crate::placement::key_hash`] values (the
//! key's xxHash64, seed 0). A slot is one such range ([`crate::placement::slot_hash_range`]).
//!
//! # Digests
//! The digest of a range is the number of items (live items and tombstones alike) whose key hash
//! lies in it, and the wrapping sum of [`item_digest`] over those items. The sum does not depend
//! on iteration order, so two owners that hold the same items at the same versions report equal
//! digests whatever their storage layout. Server processes must use [`item_digest`] /
//! [`RangeDigest::add_item`]; both sides of a merge compare their numbers directly.
//!
//! # Versions
//! [`ItemVersion`] is the hybrid logical clock of an item: physical milliseconds, then a logical
//! counter, then the id of the node that assigned it. Versions order by those fields in that
//! order (derived `Ord`); a newer version wins ("last writer wins by HLC").
//!
//! Must never depend on: storage, the attach transport, the link layer. This file is a pure
//! codec: it does no I/O.

use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

/// First four bytes of every merge body, request or response. "DKM" and the protocol version.
pub const MERGE_BODY_MAGIC: [u8; 4] = *b"DKM1";

/// Most ranges one [`MergeRequest::Digest`] may name.
pub const DIGEST_RANGES_MAX: usize = 256;

/// Most (key, version) entries one [`MergeRequest::ListVersions`] may ask for.
pub const LIST_LIMIT_MAX: u32 = 4096;

/// Most keys one [`MergeRequest::FetchItems`] may name.
pub const FETCH_KEYS_MAX: usize = 1024;

/// Size a server process should aim for in one [`MergeResponse::Items`] batch. It stops adding
/// items once the batch passes this size (always serving at least one key), and reports how
/// many of the requested keys it covered in `served`; chmpx asks again for the rest.
pub const ITEM_BATCH_TARGET_BYTES: usize = 256 * 1024;

/// Longest error message a server process should put in [`MergeResponse::Error`].
pub const ERROR_MESSAGE_LEN_MAX: usize = 1024;

/// Seed of [`item_digest`]. Part of the merge contract: never change it.
pub const ITEM_DIGEST_SEED: u64 = 0x646b_635f_6d72_6731; // "dkc_mrg1"

const _: () = assert!(DIGEST_RANGES_MAX >= 2);
const _: () = assert!(LIST_LIMIT_MAX >= 1 && FETCH_KEYS_MAX >= 1);

/// The version of a stored item: a hybrid logical clock value.
///
/// Ordered by `physical_ms`, then `logical`, then `node` (field order; the derived `Ord` is
/// that lexicographic order).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ItemVersion {
    /// Wall-clock milliseconds since the unix epoch, as seen by the node that assigned it.
    pub physical_ms: u64,
    /// Counter that orders versions within the same millisecond.
    pub logical: u32,
    /// Id of the node that assigned the version (a tie breaker, never a real tie).
    pub node: u32,
}

impl ItemVersion {
    /// The 16 bytes hashed by [`item_digest`]: the three fields, big-endian, in order.
    pub fn to_be_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.physical_ms.to_be_bytes());
        out[8..12].copy_from_slice(&self.logical.to_be_bytes());
        out[12..].copy_from_slice(&self.node.to_be_bytes());
        out
    }
}

/// An inclusive range `lo..=hi` of key hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HashRange {
    /// First key hash in the range.
    pub lo: u64,
    /// Last key hash in the range (inclusive).
    pub hi: u64,
}

impl HashRange {
    /// The range `lo..=hi`; `None` when `lo > hi`.
    pub fn new(lo: u64, hi: u64) -> Option<HashRange> {
        (lo <= hi).then_some(HashRange { lo, hi })
    }

    /// Whether `hash` lies in the range.
    pub fn contains(&self, hash: u64) -> bool {
        self.lo <= hash && hash <= self.hi
    }

    /// The range cut into at most `parts` contiguous pieces of near-equal width, in order.
    /// A range narrower than `parts` is cut into single hashes.
    pub fn split(&self, parts: u32) -> Vec<HashRange> {
        let parts = u128::from(parts.max(1));
        let width = u128::from(self.hi - self.lo) + 1;
        let parts = parts.min(width);
        let step = width / parts;
        let mut out = Vec::with_capacity(parts as usize);
        let mut lo = u128::from(self.lo);
        for i in 0..parts {
            // The last piece takes the remainder so the pieces tile the range exactly.
            let hi = if i + 1 == parts {
                u128::from(self.hi)
            } else {
                lo + step - 1
            };
            out.push(HashRange {
                lo: lo as u64,
                hi: hi as u64,
            });
            lo = hi + 1;
        }
        out
    }
}

/// The digest of one hash range: how many items, and the wrapping sum of their [`item_digest`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDigest {
    /// Items in the range, tombstones included.
    pub count: u64,
    /// Wrapping sum of [`item_digest`] over those items.
    pub hash: u64,
}

impl RangeDigest {
    /// Adds one item to the digest.
    pub fn add_item(&mut self, key: &[u8], version: ItemVersion, tombstone: bool) {
        self.count += 1;
        self.hash = self.hash.wrapping_add(item_digest(key, version, tombstone));
    }
}

/// The digest contribution of one item: xxHash64 (seed [`ITEM_DIGEST_SEED`]) of the key, then
/// the version's 16 big-endian bytes, then one byte (1 for a tombstone, 0 for a live item).
pub fn item_digest(key: &[u8], version: ItemVersion, tombstone: bool) -> u64 {
    let mut h = XxHash64::with_seed(ITEM_DIGEST_SEED);
    std::hash::Hasher::write(&mut h, key);
    std::hash::Hasher::write(&mut h, &version.to_be_bytes());
    std::hash::Hasher::write(&mut h, &[u8::from(tombstone)]);
    std::hash::Hasher::finish(&h)
}

/// One item as listed by [`MergeRequest::ListVersions`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The key, opaque bytes.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Its current version.
    pub version: ItemVersion,
    /// Whether the item is a tombstone (a delete that carries a version).
    pub tombstone: bool,
}

/// What chmpx asks of its server process during a merge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergeRequest {
    /// The digest of each range, in order. At most [`DIGEST_RANGES_MAX`] ranges.
    Digest {
        /// Ranges to digest.
        ranges: Vec<HashRange>,
    },
    /// The items whose key hash lies in `lo..=hi`, at most `limit` of them (capped at
    /// [`LIST_LIMIT_MAX`]), starting after `cursor` (`None` = from the start). The order is the
    /// server's own but must be stable across calls with the returned cursor.
    ListVersions {
        /// First key hash.
        lo: u64,
        /// Last key hash (inclusive).
        hi: u64,
        /// Where to go on; an opaque value from the previous [`MergeResponse::Versions`].
        #[serde(with = "serde_bytes")]
        cursor: Option<Vec<u8>>,
        /// Most entries wanted.
        limit: u32,
    },
    /// The named items (value, version, flags, expiry, tombstone — whatever the server needs to
    /// re-create them) packed in an opaque batch. At most [`FETCH_KEYS_MAX`] keys.
    FetchItems {
        /// Keys to fetch.
        keys: Vec<serde_bytes::ByteBuf>,
    },
    /// Apply a batch produced by another owner's [`MergeResponse::Items`]: each item is stored
    /// only if it is missing here or its version is newer than the one held (tombstones too).
    ApplyItems {
        /// The opaque batch, exactly as received.
        #[serde(with = "serde_bytes")]
        batch: Vec<u8>,
    },
    /// Drop tombstones whose key hash lies in `lo..=hi` and whose version is at most
    /// `max_version`. chmpx sends this only after every owner of the range holds them.
    PurgeTombstones {
        /// First key hash.
        lo: u64,
        /// Last key hash (inclusive).
        hi: u64,
        /// Newest version that may be purged.
        max_version: ItemVersion,
    },
    /// Delete outright (no tombstone) every item, live or tombstone, whose key hash lies in
    /// `lo..=hi`. chmpx sends this to a node that no longer owns the range under the map in
    /// force, only after it has pushed to every owner each item they lacked or held older
    /// (a hand-off); the items are then safe on REPLICA+1 owners and this copy is surplus.
    DropRange {
        /// First key hash.
        lo: u64,
        /// Last key hash (inclusive).
        hi: u64,
    },
}

/// What the server process answers; one variant per request, plus [`MergeResponse::Error`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergeResponse {
    /// Answer to `Digest`: one digest per requested range, in the same order.
    Digests {
        /// Digests, one per range.
        digests: Vec<RangeDigest>,
    },
    /// Answer to `ListVersions`.
    Versions {
        /// Items listed.
        entries: Vec<KeyVersion>,
        /// `Some` when more items remain: pass it back as `cursor`.
        #[serde(with = "serde_bytes")]
        next_cursor: Option<Vec<u8>>,
    },
    /// Answer to `FetchItems`.
    Items {
        /// Opaque batch for `ApplyItems` on another owner.
        #[serde(with = "serde_bytes")]
        batch: Vec<u8>,
        /// Items in the batch.
        count: u32,
        /// How many of the requested keys (a prefix, in request order) this batch covers; keys
        /// the server does not hold count as covered. Always at least 1 when keys were asked.
        served: u32,
    },
    /// Answer to `ApplyItems`.
    Applied {
        /// Items stored (missing or older here).
        applied: u64,
        /// Items skipped (the local version was the same or newer).
        skipped: u64,
        /// Bytes of the items stored (for progress and rate figures).
        bytes: u64,
    },
    /// Answer to `PurgeTombstones`.
    Purged {
        /// Tombstones dropped.
        purged: u64,
    },
    /// Answer to `DropRange`.
    Dropped {
        /// Items deleted (live items and tombstones).
        dropped: u64,
        /// Bytes of those items (keys, values, subkeys).
        bytes: u64,
    },
    /// The request failed.
    Error {
        /// Stable error code (the server's own numbering).
        code: u32,
        /// What went wrong, at most [`ERROR_MESSAGE_LEN_MAX`] bytes.
        message: String,
    },
}

/// Why a merge body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum MergeCodecError {
    /// The body does not start with [`MERGE_BODY_MAGIC`]: it is not a merge message.
    #[error("not a merge body: it does not start with the merge magic {MERGE_BODY_MAGIC:?}")]
    NotMerge,
    /// The body starts with the magic but the rest is not a valid message.
    #[error("malformed merge body ({len} bytes): {reason}")]
    Malformed {
        /// Length of the body.
        len: usize,
        /// What the decoder said.
        reason: String,
    },
    /// The message could not be encoded (should not happen with these types).
    #[error("cannot encode merge message: {0}")]
    Encode(String),
}

/// Whether `body` is a merge message (starts with [`MERGE_BODY_MAGIC`]).
pub fn is_merge_body(body: &[u8]) -> bool {
    body.starts_with(&MERGE_BODY_MAGIC)
}

fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, MergeCodecError> {
    let mut out = MERGE_BODY_MAGIC.to_vec();
    rmp_serde::encode::write_named(&mut out, msg)
        .map_err(|e| MergeCodecError::Encode(e.to_string()))?;
    Ok(out)
}

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, MergeCodecError> {
    let rest = body
        .strip_prefix(&MERGE_BODY_MAGIC[..])
        .ok_or(MergeCodecError::NotMerge)?;
    rmp_serde::from_slice(rest).map_err(|e| MergeCodecError::Malformed {
        len: body.len(),
        reason: e.to_string(),
    })
}

/// Encodes a request as a merge body.
pub fn encode_request(req: &MergeRequest) -> Result<Vec<u8>, MergeCodecError> {
    encode(req)
}

/// Decodes a merge body holding a request.
pub fn decode_request(body: &[u8]) -> Result<MergeRequest, MergeCodecError> {
    decode(body)
}

/// Encodes a response as a merge body.
pub fn encode_response(resp: &MergeResponse) -> Result<Vec<u8>, MergeCodecError> {
    encode(resp)
}

/// Decodes a merge body holding a response.
pub fn decode_response(body: &[u8]) -> Result<MergeResponse, MergeCodecError> {
    decode(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: u64, l: u32, n: u32) -> ItemVersion {
        ItemVersion {
            physical_ms: ms,
            logical: l,
            node: n,
        }
    }

    #[test]
    fn versions_order_by_time_then_counter_then_node() {
        assert!(v(2, 0, 0) > v(1, 9, 9));
        assert!(v(1, 2, 0) > v(1, 1, 9));
        assert!(v(1, 1, 2) > v(1, 1, 1));
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let reqs = vec![
            MergeRequest::Digest {
                ranges: vec![HashRange {
                    lo: 0,
                    hi: u64::MAX,
                }],
            },
            MergeRequest::ListVersions {
                lo: 5,
                hi: 9,
                cursor: Some(vec![1, 2]),
                limit: 10,
            },
            MergeRequest::ListVersions {
                lo: 5,
                hi: 9,
                cursor: None,
                limit: 10,
            },
            MergeRequest::FetchItems {
                keys: vec![serde_bytes::ByteBuf::from(b"k".to_vec())],
            },
            MergeRequest::ApplyItems {
                batch: vec![0, 1, 2, 255],
            },
            MergeRequest::PurgeTombstones {
                lo: 1,
                hi: 2,
                max_version: v(3, 4, 5),
            },
            MergeRequest::DropRange { lo: 3, hi: 4 },
        ];
        for r in reqs {
            let body = encode_request(&r).unwrap();
            assert!(is_merge_body(&body));
            assert_eq!(decode_request(&body).unwrap(), r);
        }
        let resps = vec![
            MergeResponse::Digests {
                digests: vec![RangeDigest { count: 3, hash: 7 }],
            },
            MergeResponse::Versions {
                entries: vec![KeyVersion {
                    key: b"a".to_vec(),
                    version: v(1, 2, 3),
                    tombstone: true,
                }],
                next_cursor: None,
            },
            MergeResponse::Items {
                batch: vec![9; 10],
                count: 2,
                served: 2,
            },
            MergeResponse::Applied {
                applied: 1,
                skipped: 2,
                bytes: 30,
            },
            MergeResponse::Purged { purged: 4 },
            MergeResponse::Dropped {
                dropped: 5,
                bytes: 60,
            },
            MergeResponse::Error {
                code: 7,
                message: "disk full".into(),
            },
        ];
        for r in resps {
            let body = encode_response(&r).unwrap();
            assert_eq!(decode_response(&body).unwrap(), r);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            decode_request(b"hello"),
            Err(MergeCodecError::NotMerge)
        ));
        assert!(matches!(
            decode_request(b"DKM1\xc1\xc1"),
            Err(MergeCodecError::Malformed { .. })
        ));
        assert!(matches!(
            decode_response(b"DKM1"),
            Err(MergeCodecError::Malformed { .. })
        ));
    }

    #[test]
    fn digest_ignores_order_and_sees_versions() {
        let mut a = RangeDigest::default();
        a.add_item(b"x", v(1, 0, 1), false);
        a.add_item(b"y", v(2, 0, 1), true);
        let mut b = RangeDigest::default();
        b.add_item(b"y", v(2, 0, 1), true);
        b.add_item(b"x", v(1, 0, 1), false);
        assert_eq!(a, b);
        let mut c = RangeDigest::default();
        c.add_item(b"y", v(2, 0, 1), false);
        c.add_item(b"x", v(1, 0, 1), false);
        assert_ne!(a, c, "a tombstone and a live item differ");
    }

    #[test]
    fn split_tiles_the_range() {
        for (lo, hi, parts) in [(0u64, u64::MAX, 16u32), (10, 12, 8), (7, 7, 4), (0, 99, 3)] {
            let pieces = HashRange { lo, hi }.split(parts);
            assert!(!pieces.is_empty() && pieces.len() <= parts as usize);
            assert_eq!(pieces[0].lo, lo);
            assert_eq!(pieces.last().unwrap().hi, hi);
            for w in pieces.windows(2) {
                assert_eq!(w[0].hi + 1, w[1].lo);
                assert!(w[0].lo <= w[0].hi);
            }
        }
    }
}
