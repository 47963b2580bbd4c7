//! Merge: reconciling the owners of a slot after a membership change or a node's recovery.
//!
//! Layout:
//! - [`protocol`]: the requests chmpx sends to its attached server process during a merge
//!   (digests, version lists, item batches, tombstone purges, hand-off drops) and their answers. A pure codec.
//!
//! The orchestration that uses it (which slots, which owners, rate limit, progress) lives in
//! the daemon (`crate::daemon`), because it needs the node table and the links.
//!
//! Must never depend on: storage, dkc commands, the daemon's runtime.

pub mod protocol;

pub use protocol::{
    decode_request, decode_response, encode_request, encode_response, is_merge_body, item_digest,
    HashRange, ItemVersion, KeyVersion, MergeCodecError, MergeRequest, MergeResponse, RangeDigest,
};
