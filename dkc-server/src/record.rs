//! Conversions between the engine's [`k2hash::Record`] and the wire's [`WireRecord`] / [`Item`].
//! They are field-for-field copies; keeping them in one place keeps both sides in step.

use dkc_client::proto::{Item, WireRecord};
use k2hash::Record;

/// The wire form of a stored record.
pub fn to_wire(r: Record) -> WireRecord {
    WireRecord {
        key: r.key,
        value: r.value,
        flags: r.flags,
        expire_at: r.expire_at,
        version: r.version,
        tombstone: r.tombstone,
        subkeys: r.subkeys,
        base: None,
        rollback_of: None,
    }
}

/// The engine form of a received record.
pub fn from_wire(w: WireRecord) -> Record {
    Record {
        key: w.key,
        value: w.value,
        flags: w.flags,
        expire_at: w.expire_at,
        version: w.version,
        tombstone: w.tombstone,
        subkeys: w.subkeys,
    }
}

/// The item a read returns (value dropped when `with_value` is false).
pub fn to_item(r: &Record, with_value: bool) -> Item {
    Item {
        key: r.key.clone(),
        value: if with_value {
            r.value.clone()
        } else {
            Vec::new()
        },
        flags: r.flags,
        expire_at: r.expire_at,
        version: r.version,
    }
}

/// A tombstone for `key` at `version`: no value, no flags, no expiry (tombstones leave only by
/// a merge purge), no subkeys.
pub fn tombstone(key: &[u8], version: u64) -> Record {
    Record {
        key: key.to_vec(),
        value: Vec::new(),
        flags: 0,
        expire_at: 0,
        version,
        tombstone: true,
        subkeys: Vec::new(),
    }
}
