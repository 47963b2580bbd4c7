//! Answers to chmpx's merge requests ([`chmpx::merge::protocol`]): digests of hash ranges,
//! version lists, item batches, applying batches, purging tombstones, dropping a handed-off range.
//!
//! chmpx knows nothing of storage: it compares the digests two owners report for the same
//! ranges, narrows the ranges that differ, lists versions there, and carries a batch of the
//! missing or older items from one owner's server process to the other's. This module is the
//! server side of each of those steps; it holds no state of its own.
//!
//! # Contracts kept here
//! - Digests follow the protocol's definition exactly ([`RangeDigest::add_item`] over every
//!   stored record in the range: live, expired and tombstones), so any two servers compare
//!   equal iff they hold the same keys at the same versions with the same tombstone bits. It
//!   costs one pass over the range's records.
//! - A version crosses the protocol as [`ItemVersion`] (unix ms, logical, node); see
//!   [`to_item_version`] and [`from_item_version`]. Both keep order.
//! - A batch is [`BATCH_MAGIC`] followed by the MessagePack of a list of
//!   [`WireRecord`] (the same record form replication uses), tombstones included.
//! - Applying is last-writer-wins ([`k2hash::K2Hash::set_if_newer`]), so applying batches in
//!   any order, any number of times, converges; every applied version also moves this node's
//!   clock forward.
//!
//! Must never depend on: the attach transport (the caller hands bodies in and out).

use chmpx::merge::protocol::{
    self as mp, HashRange, ItemVersion, KeyVersion, MergeRequest, MergeResponse, RangeDigest,
};
use dkc_client::proto::version::{self, VersionParts};
use dkc_client::proto::{ErrorCode, WireRecord};
use k2hash::{Cursor, K2Hash};

use crate::executor::Executor;
use crate::record::{from_wire, to_wire};

/// First bytes of an item batch ("DKB" and the batch format version).
pub const BATCH_MAGIC: [u8; 4] = *b"DKB1";

/// Records read from the engine per step while digesting a range.
pub const DIGEST_SCAN_BATCH_RECORDS: usize = 1024;

/// Records read from the engine per step while dropping a handed-off range.
pub const DROP_SCAN_BATCH_RECORDS: usize = 1024;

/// A failed merge request.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The request is malformed (bad range, bad cursor, bad batch, over a limit).
    #[error("merge request refused: {0}")]
    BadRequest(String),
    /// The storage engine failed.
    #[error("merge: storage failed: {0}")]
    Storage(#[from] k2hash::Error),
}

impl MergeError {
    /// The numeric code sent in [`MergeResponse::Error`]: the position of the matching
    /// [`ErrorCode`] in [`ErrorCode::ALL`] plus one (so 3 = E_BAD_REQUEST, 7 = E_STORAGE).
    pub fn code(&self) -> u32 {
        let code = match self {
            MergeError::BadRequest(_) => ErrorCode::BadRequest,
            MergeError::Storage(e) if e.is_no_space() => ErrorCode::NoSpace,
            MergeError::Storage(_) => ErrorCode::Storage,
        };
        ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| i as u32 + 1)
    }
}

/// The protocol form of a packed version. Order-preserving.
pub fn to_item_version(v: u64) -> ItemVersion {
    let p = VersionParts::unpack(v);
    ItemVersion {
        physical_ms: p.unix_ms(),
        logical: p.logical as u32,
        node: u32::from(p.node),
    }
}

/// The largest packed version that is not newer than `v` (exact for every version this crate
/// mints; fields out of range round down). `None` when no packed version is that old.
pub fn from_item_version(v: ItemVersion) -> Option<u64> {
    let physical = v.physical_ms.checked_sub(version::EPOCH_UNIX_MS)?;
    if physical > version::PHYSICAL_MAX {
        return Some(u64::MAX);
    }
    let (logical, node) = if u64::from(v.logical) > version::LOGICAL_MAX {
        (version::LOGICAL_MAX, u8::MAX)
    } else {
        (
            u64::from(v.logical),
            u8::try_from(v.node).unwrap_or(u8::MAX),
        )
    };
    Some(
        VersionParts {
            physical_ms: physical,
            logical,
            node,
        }
        .pack(),
    )
}

/// Encodes records as an item batch.
pub fn encode_batch(records: &[WireRecord]) -> Vec<u8> {
    let mut out = BATCH_MAGIC.to_vec();
    // Writing plain data into a Vec cannot fail.
    rmp_serde::encode::write(&mut out, records).expect("encoding records into a Vec");
    out
}

/// Decodes an item batch.
pub fn decode_batch(batch: &[u8]) -> Result<Vec<WireRecord>, MergeError> {
    let body = batch.strip_prefix(&BATCH_MAGIC[..]).ok_or_else(|| {
        MergeError::BadRequest(format!(
            "item batch of {} bytes does not start with {BATCH_MAGIC:?}",
            batch.len()
        ))
    })?;
    rmp_serde::from_slice(body)
        .map_err(|e| MergeError::BadRequest(format!("malformed item batch: {e}")))
}

/// Decodes a merge body, answers it, and encodes the answer. Malformed bodies get a
/// [`MergeResponse::Error`], never a panic.
pub fn handle_body(exec: &Executor, body: &[u8]) -> Vec<u8> {
    let resp = match mp::decode_request(body) {
        Ok(req) => handle(exec, &req),
        Err(e) => error_response(&MergeError::BadRequest(e.to_string())),
    };
    mp::encode_response(&resp).unwrap_or_else(|e| {
        // Only a bug in the protocol types could get here; answer with a short error instead.
        let fallback = MergeResponse::Error {
            code: 0,
            message: e.to_string(),
        };
        mp::encode_response(&fallback).unwrap_or_default()
    })
}

/// Answers one merge request.
pub fn handle(exec: &Executor, req: &MergeRequest) -> MergeResponse {
    let result = match req {
        MergeRequest::Digest { ranges } => digest(exec.store(), ranges),
        MergeRequest::ListVersions {
            lo,
            hi,
            cursor,
            limit,
        } => list_versions(exec.store(), *lo, *hi, cursor.as_deref(), *limit),
        MergeRequest::FetchItems { keys } => fetch_items(exec.store(), keys),
        MergeRequest::ApplyItems { batch } => apply_items(exec, batch),
        MergeRequest::PurgeTombstones {
            lo,
            hi,
            max_version,
        } => purge(exec.store(), *lo, *hi, *max_version),
        MergeRequest::DropRange { lo, hi } => drop_range(exec.store(), *lo, *hi),
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "merge request failed");
        error_response(&e)
    })
}

fn error_response(e: &MergeError) -> MergeResponse {
    let mut message = e.to_string();
    if message.len() > mp::ERROR_MESSAGE_LEN_MAX {
        let mut cut = mp::ERROR_MESSAGE_LEN_MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    MergeResponse::Error {
        code: e.code(),
        message,
    }
}

fn check_range(lo: u64, hi: u64) -> Result<(), MergeError> {
    if lo > hi {
        return Err(MergeError::BadRequest(format!(
            "hash range {lo:#x}..={hi:#x} is empty (lo > hi)"
        )));
    }
    Ok(())
}

/// The protocol digest of every record whose key hash is in `lo..=hi`.
pub fn range_digest(store: &K2Hash, lo: u64, hi: u64) -> Result<RangeDigest, MergeError> {
    check_range(lo, hi)?;
    let mut d = RangeDigest::default();
    let mut pos = Cursor::start();
    loop {
        let (batch, next) = store.scan_hash_range(lo, hi, &pos, DIGEST_SCAN_BATCH_RECORDS)?;
        for it in &batch {
            let r = &it.record;
            d.add_item(&r.key, to_item_version(r.version), r.tombstone);
        }
        match next {
            Some(c) => pos = c,
            None => return Ok(d),
        }
    }
}

fn digest(store: &K2Hash, ranges: &[HashRange]) -> Result<MergeResponse, MergeError> {
    if ranges.len() > mp::DIGEST_RANGES_MAX {
        return Err(MergeError::BadRequest(format!(
            "{} ranges, more than DIGEST_RANGES_MAX {}",
            ranges.len(),
            mp::DIGEST_RANGES_MAX
        )));
    }
    let digests = ranges
        .iter()
        .map(|r| range_digest(store, r.lo, r.hi))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MergeResponse::Digests { digests })
}

fn list_versions(
    store: &K2Hash,
    lo: u64,
    hi: u64,
    cursor: Option<&[u8]>,
    limit: u32,
) -> Result<MergeResponse, MergeError> {
    check_range(lo, hi)?;
    let pos = match cursor {
        None => Cursor::start(),
        Some(b) => Cursor::from_bytes(b).ok_or_else(|| {
            MergeError::BadRequest(format!("list cursor of {} bytes is malformed", b.len()))
        })?,
    };
    let limit = limit.clamp(1, mp::LIST_LIMIT_MAX) as usize;
    let (batch, next) = store.scan_hash_range(lo, hi, &pos, limit)?;
    let entries = batch
        .into_iter()
        .map(|it| KeyVersion {
            version: to_item_version(it.record.version),
            tombstone: it.record.tombstone,
            key: it.record.key,
        })
        .collect();
    Ok(MergeResponse::Versions {
        entries,
        next_cursor: next.map(|c| c.to_bytes()),
    })
}

fn fetch_items(store: &K2Hash, keys: &[serde_bytes::ByteBuf]) -> Result<MergeResponse, MergeError> {
    if keys.len() > mp::FETCH_KEYS_MAX {
        return Err(MergeError::BadRequest(format!(
            "{} keys, more than FETCH_KEYS_MAX {}",
            keys.len(),
            mp::FETCH_KEYS_MAX
        )));
    }
    let mut records = Vec::new();
    let mut bytes = 0usize;
    let mut served = 0u32;
    for key in keys {
        if served > 0 && bytes >= mp::ITEM_BATCH_TARGET_BYTES {
            break;
        }
        served += 1;
        if key.is_empty() {
            continue; // The engine holds no empty key: covered, nothing to send.
        }
        if let Some(rec) = store.get_raw(key)? {
            bytes += record_bytes(&rec.key, &rec.value, &rec.subkeys);
            records.push(to_wire(rec));
        }
    }
    let count = records.len() as u32;
    Ok(MergeResponse::Items {
        batch: encode_batch(&records),
        count,
        served,
    })
}

fn record_bytes(key: &[u8], value: &[u8], subkeys: &[Vec<u8>]) -> usize {
    key.len() + value.len() + subkeys.iter().map(Vec::len).sum::<usize>()
}

fn apply_items(exec: &Executor, batch: &[u8]) -> Result<MergeResponse, MergeError> {
    let records = decode_batch(batch)?;
    for r in &records {
        if r.key.is_empty() || r.version == 0 {
            return Err(MergeError::BadRequest(
                "item batch holds a record with an empty key or version 0".into(),
            ));
        }
    }
    let (mut applied, mut skipped, mut bytes) = (0u64, 0u64, 0u64);
    for r in records {
        exec.hlc().observe(r.version);
        let size = record_bytes(&r.key, &r.value, &r.subkeys) as u64;
        if exec.store().set_if_newer(&from_wire(r))? {
            applied += 1;
            bytes += size;
        } else {
            skipped += 1;
        }
    }
    Ok(MergeResponse::Applied {
        applied,
        skipped,
        bytes,
    })
}

fn purge(
    store: &K2Hash,
    lo: u64,
    hi: u64,
    max_version: ItemVersion,
) -> Result<MergeResponse, MergeError> {
    check_range(lo, hi)?;
    let purged = match from_item_version(max_version) {
        Some(v) => store.purge_tombstones(lo, hi, v)?,
        None => 0,
    };
    Ok(MergeResponse::Purged { purged })
}

/// Deletes outright every record whose key hash is in `lo..=hi` (chmpx's hand-off of a range
/// this node no longer owns). Each record is removed only if it still has the version the scan
/// saw, so a write that lands here meanwhile is kept rather than silently dropped; the next
/// hand-off pass deals with it.
fn drop_range(store: &K2Hash, lo: u64, hi: u64) -> Result<MergeResponse, MergeError> {
    check_range(lo, hi)?;
    let (mut dropped, mut bytes) = (0u64, 0u64);
    let mut pos = Cursor::start();
    loop {
        let (batch, next) = store.scan_hash_range(lo, hi, &pos, DROP_SCAN_BATCH_RECORDS)?;
        for it in batch {
            let seen = it.record.version;
            let size = record_bytes(&it.record.key, &it.record.value, &it.record.subkeys) as u64;
            let removed = store.update_raw(&it.record.key, |cur| match cur {
                Some(r) if r.version == seen => (
                    k2hash::Decision::Remove {
                        tombstone_version: None,
                    },
                    true,
                ),
                _ => (k2hash::Decision::Keep, false),
            })?;
            if removed {
                dropped += 1;
                bytes += size;
            }
        }
        match next {
            Some(c) => pos = c,
            None => return Ok(MergeResponse::Dropped { dropped, bytes }),
        }
    }
}

#[cfg(test)]
mod tests;
