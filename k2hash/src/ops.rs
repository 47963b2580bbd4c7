//! Key operations (get, set, remove, CAS, update, subkeys), all built on one locked
//! read-modify-write primitive, `modify`, so every write follows the same publication order.

use crate::engine::{Engine, Loc};
use crate::error::{Error, Result};
use crate::format::*;
use crate::limits::*;
use crate::types::*;
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::Ordering;

thread_local! {
    /// Encoding buffer for new records (one per thread, reused).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Where the subkey list of a rewritten record comes from.
pub(crate) enum SubSrc {
    /// The current record's list if it is live, else empty.
    KeepIfLive,
    /// Empty.
    Clear,
    /// This encoded list.
    New(Vec<u8>),
}

/// What `modify` should do with the key.
pub(crate) enum Action<'v> {
    Keep,
    Write {
        /// New value; `None` keeps the current one.
        value: Option<Cow<'v, [u8]>>,
        /// New metadata; `None` keeps the current one.
        meta: Option<Meta>,
        tombstone: bool,
        subkeys: SubSrc,
    },
    Delete,
}

/// A record `set` encoded (checksum included) into this thread's `SCRATCH` before taking the
/// shard lock, so that the encoding overlaps the index slot's cache miss. `modify` writes
/// these bytes as they are only if the write it is asked for has exactly these fields and no
/// subkey list (otherwise it encodes again).
pub(crate) struct Prepared<'v> {
    value: &'v [u8],
    meta: Meta,
    block_bytes: u32,
    /// `digest_term(key, meta.version)`.
    term: u64,
}

/// The current record as seen by a `modify` callback.
pub(crate) struct Cur<'a> {
    pub(crate) loc: Loc<'a>,
    pub(crate) live: bool,
}

impl Cur<'_> {
    pub(crate) fn to_record(&self) -> Record {
        let l = &self.loc;
        Record {
            key: l.key().to_vec(),
            value: l.value().to_vec(),
            flags: l.hdr.flags,
            expire_at: l.hdr.expire_at,
            version: l.hdr.version,
            tombstone: l.hdr.tombstone,
            subkeys: decode_subkeys(l.subkeys_raw()).unwrap_or_default(),
        }
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(
            "empty key (keys must be 1 byte or more)".into(),
        ));
    }
    if key.len() > KEY_SIZE_MAX {
        return Err(Error::LimitExceeded {
            limit: "key_size_max",
            max: KEY_SIZE_MAX as u64,
            actual: key.len() as u64,
        });
    }
    Ok(())
}

fn encode_children(children: &[&[u8]]) -> Result<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    let mut uniq: Vec<&[u8]> = Vec::with_capacity(children.len());
    for &c in children {
        check_key(c)?;
        if seen.insert(c) {
            uniq.push(c);
        }
    }
    if uniq.len() > SUBKEYS_MAX {
        return Err(Error::LimitExceeded {
            limit: "subkeys_max",
            max: SUBKEYS_MAX as u64,
            actual: uniq.len() as u64,
        });
    }
    Ok(encode_subkeys(uniq))
}

fn meta_of(l: &Loc<'_>) -> Meta {
    Meta {
        flags: l.hdr.flags,
        expire_at: l.hdr.expire_at,
        version: l.hdr.version,
    }
}

impl Engine {
    #[inline]
    fn is_live(&self, hdr: &RecHeader) -> bool {
        !hdr.tombstone && (hdr.expire_at == 0 || hdr.expire_at > self.now())
    }

    /// Reads the record of `key` under the shard's read lock and runs `f` on it.
    pub(crate) fn get_with<R>(
        &self,
        key: &[u8],
        raw: bool,
        f: impl FnOnce(RecordRef<'_>) -> R,
    ) -> Result<Option<R>> {
        check_key(key)?;
        let h = crate::key_hash(key);
        let t = self.shards[self.shard_of(h)].t.read();
        let mut buf = Vec::new();
        let p = self.probe(&t, h, key, &mut buf)?;
        let (Some((_, off)), Some(hdr)) = (p.found, p.hdr) else {
            return Ok(None);
        };
        // Checksum first: a damaged expiry or tombstone bit must not hide a record silently.
        let loc = self.loc_with(off, hdr, true, &mut buf)?;
        if !raw && !self.is_live(&hdr) {
            return Ok(None);
        }
        let subkeys_raw = loc.subkeys_raw();
        if decode_subkeys(subkeys_raw).is_none() {
            return Err(Error::corrupted("malformed subkey list", off));
        }
        Ok(Some(f(RecordRef {
            key: loc.key(),
            value: loc.value(),
            flags: loc.hdr.flags,
            expire_at: loc.hdr.expire_at,
            version: loc.hdr.version,
            tombstone: loc.hdr.tombstone,
            subkeys_raw,
        })))
    }

    pub(crate) fn get(&self, key: &[u8], raw: bool) -> Result<Option<Record>> {
        self.get_with(key, raw, |r| r.to_record())
    }

    /// The write primitive: locks the key's shard, finds the record, asks `f` what to do and
    /// does it (write new block, publish with one 8-byte store, account, free the old block).
    pub(crate) fn modify<'v, T>(
        &self,
        key: &[u8],
        full: bool,
        f: impl FnOnce(Option<&Cur<'_>>) -> Result<(Action<'v>, T)>,
    ) -> Result<T> {
        check_key(key)?;
        self.modify_hashed(key, crate::key_hash(key), None, full, f)
    }

    /// `modify` for a checked key whose hash `h` is known, with an optional record already
    /// encoded in `SCRATCH` (see `Prepared`).
    fn modify_hashed<'v, T>(
        &self,
        key: &[u8],
        h: u64,
        pre: Option<Prepared<'_>>,
        full: bool,
        f: impl FnOnce(Option<&Cur<'_>>) -> Result<(Action<'v>, T)>,
    ) -> Result<T> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let si = self.shard_of(h);
        let mut t = self.shards[si].t.write();
        // A table that cannot grow because the disk is full only matters to a write that
        // takes an empty slot: overwrites and deletes go on, and so do inserts up to a hard
        // load limit (probes get longer until space is freed).
        let grow_failed = match self.maybe_grow(si, &mut t) {
            Ok(()) => None,
            Err(e) if e.is_no_space() => Some(e),
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        let p = self.probe(&t, h, key, &mut buf)?;
        let cur = match (p.found, p.hdr) {
            (Some((_, off)), Some(hdr)) => {
                // The whole record is read and its checksum verified whenever the outcome
                // depends on it; a plain `set` (full == false) only needs the header, unless a
                // subkey list must be carried over.
                let loc = self.loc_with(off, hdr, full || hdr.subkeys_len > 0, &mut buf)?;
                let live = self.is_live(&loc.hdr);
                Some(Cur { loc, live })
            }
            _ => None,
        };
        let (action, out) = f(cur.as_ref())?;
        let old = cur
            .as_ref()
            .map(|c| (c.loc.hdr, p.found.map(|x| x.1).unwrap_or(0)));
        let mut new_term = None;
        let (pos, slot_new, new_hdr) = match action {
            Action::Keep => return Ok(out),
            Action::Delete => {
                let Some((pos, _)) = p.found else {
                    return Ok(out);
                };
                let mask = t.mask();
                // A slot followed by an empty one can become empty itself: no chain passes it.
                let next = self
                    .region
                    .slot(t.slot_off((pos + 1) & mask))
                    .load(Ordering::Relaxed);
                let mark = if next == SLOT_EMPTY {
                    SLOT_EMPTY
                } else {
                    SLOT_DELETED
                };
                (pos, mark, None)
            }
            Action::Write {
                value,
                meta,
                tombstone,
                subkeys,
            } => {
                let value: &[u8] = match &value {
                    Some(v) => v,
                    None => cur.as_ref().map(|c| c.loc.value()).unwrap_or(&[]),
                };
                if value.len() > self.value_size_max {
                    return Err(Error::LimitExceeded {
                        limit: "value_size_max",
                        max: self.value_size_max as u64,
                        actual: value.len() as u64,
                    });
                }
                let meta = meta
                    .or_else(|| cur.as_ref().map(|c| meta_of(&c.loc)))
                    .unwrap_or_default();
                let sk: &[u8] = match &subkeys {
                    SubSrc::KeepIfLive => cur
                        .as_ref()
                        .filter(|c| c.live)
                        .map(|c| c.loc.subkeys_raw())
                        .unwrap_or(&[]),
                    SubSrc::Clear => &[],
                    SubSrc::New(v) => v,
                };
                if sk.len() > SUBKEYS_SIZE_MAX {
                    return Err(Error::LimitExceeded {
                        limit: "subkeys_size_max",
                        max: SUBKEYS_SIZE_MAX as u64,
                        actual: sk.len() as u64,
                    });
                }
                let fields = RecFields {
                    key_hash: h,
                    key,
                    value,
                    subkeys: sk,
                    flags: meta.flags,
                    expire_at: meta.expire_at,
                    version: meta.version,
                    tombstone,
                };
                let bb = block_bytes_for(key.len(), value.len(), sk.len(), self.granule);
                // The prepared bytes are used only if they encode exactly this write.
                let pre = pre.filter(|p| {
                    !tombstone
                        && sk.is_empty()
                        && std::ptr::eq(p.value, value)
                        && p.meta == meta
                        && u64::from(p.block_bytes) == bb
                });
                new_term = pre.as_ref().map(|p| p.term);
                let bb32 = u32::try_from(bb).map_err(|_| Error::LimitExceeded {
                    limit: "record block size (u32)",
                    max: u32::MAX as u64,
                    actual: bb,
                })?;
                if let Some(e) = grow_failed {
                    let takes_empty = p.found.is_none()
                        && self
                            .region
                            .slot(t.slot_off(p.insert_at))
                            .load(Ordering::Relaxed)
                            == SLOT_EMPTY;
                    let size = 1u64 << t.bits;
                    if takes_empty
                        && (t.used + t.deleted + 1) * 1000
                            > size * TABLE_LOAD_PERMILLE_DISK_FULL_MAX
                    {
                        return Err(e);
                    }
                }
                let off = self.alloc.alloc(&self.region, si, bb)?;
                let hdr = SCRATCH.with(|s| -> Result<RecHeader> {
                    let mut s = s.borrow_mut();
                    if pre.is_none() {
                        encode_record(&fields, bb32, &mut s);
                    }
                    self.region.write(off, &s, true)?;
                    Ok(RecHeader {
                        block_bytes: bb32,
                        checksum: 0,
                        key_hash: h,
                        version: meta.version,
                        expire_at: meta.expire_at,
                        flags: meta.flags,
                        key_len: key.len() as u16,
                        tombstone,
                        value_len: value.len() as u32,
                        subkeys_len: sk.len() as u32,
                    })
                });
                let hdr = match hdr {
                    Ok(hdr) => hdr,
                    Err(e) => {
                        self.alloc.free(si, off, bb);
                        return Err(e);
                    }
                };
                if self.sync {
                    // The record must be durable before the index can point at it.
                    if let Err(e) = self.commit.flush(&self.region) {
                        self.alloc.free(si, off, bb);
                        return Err(e);
                    }
                }
                let pos = p.found.map(|x| x.0).unwrap_or(p.insert_at);
                (pos, slot_entry(off, h), Some(hdr))
            }
        };
        // Publish: one aligned 8-byte store, ordered after the record's bytes (Release). Only
        // this shard's write-lock holder changes its slots, so the previous value is read
        // first; a plain store (unlike a swap) does not wait for the record's stores to drain.
        let slot = self.region.slot(t.slot_off(pos));
        let prev = slot.load(Ordering::Relaxed);
        slot.store(slot_new, Ordering::Release);
        match (p.found.is_some(), new_hdr.is_some()) {
            (false, true) => {
                t.used += 1;
                if prev == SLOT_DELETED {
                    t.deleted -= 1;
                }
            }
            (true, false) => {
                t.used -= 1;
                if slot_new == SLOT_DELETED {
                    t.deleted += 1;
                }
            }
            _ => {}
        }
        if let Some((ohdr, _)) = &old {
            self.account(
                &mut t,
                h,
                ohdr,
                crate::digest_term(key, ohdr.version),
                false,
            );
        }
        if let Some(nh) = &new_hdr {
            let term = new_term.unwrap_or_else(|| crate::digest_term(key, nh.version));
            self.account(&mut t, h, nh, term, true);
        }
        if self.sync {
            drop(t);
            self.commit.flush(&self.region)?;
        }
        if let Some((ohdr, ooff)) = old {
            // In sync mode the old block is reused only after the new index is durable.
            self.alloc.free(si, ooff, ohdr.block_bytes as u64);
        }
        Ok(out)
    }

    pub(crate) fn set(&self, key: &[u8], value: &[u8], meta: Meta) -> Result<()> {
        check_key(key)?;
        let h = crate::key_hash(key);
        let bb = block_bytes_for(key.len(), value.len(), 0, self.granule);
        self.prefetch_for(h, bb);
        // Encode the record (no subkey list: the usual case) while the prefetches run.
        let pre = match u32::try_from(bb) {
            Ok(block_bytes) if value.len() <= self.value_size_max => {
                SCRATCH.with(|s| {
                    let fields = RecFields {
                        key_hash: h,
                        key,
                        value,
                        subkeys: &[],
                        flags: meta.flags,
                        expire_at: meta.expire_at,
                        version: meta.version,
                        tombstone: false,
                    };
                    encode_record(&fields, block_bytes, &mut s.borrow_mut());
                });
                Some(Prepared {
                    value,
                    meta,
                    block_bytes,
                    term: crate::digest_term(key, meta.version),
                })
            }
            _ => None,
        };
        self.modify_hashed(key, h, pre, false, |_| {
            Ok((
                Action::Write {
                    value: Some(Cow::Borrowed(value)),
                    meta: Some(meta),
                    tombstone: false,
                    subkeys: SubSrc::KeepIfLive,
                },
                (),
            ))
        })
    }

    pub(crate) fn set_if_newer(&self, r: &Record) -> Result<bool> {
        let children: Vec<&[u8]> = r.subkeys.iter().map(|c| c.as_slice()).collect();
        let sk = encode_children(&children)?;
        let value: &[u8] = if r.tombstone { &[] } else { &r.value };
        self.modify(&r.key, true, |cur| {
            if cur.is_some_and(|c| c.loc.hdr.version >= r.version) {
                return Ok((Action::Keep, false));
            }
            Ok((
                Action::Write {
                    value: Some(Cow::Borrowed(value)),
                    meta: Some(r.meta()),
                    tombstone: r.tombstone,
                    subkeys: SubSrc::New(sk),
                },
                true,
            ))
        })
    }

    pub(crate) fn remove(&self, key: &[u8], tv: Option<u64>) -> Result<bool> {
        self.modify(key, true, |cur| {
            let live = cur.is_some_and(|c| c.live);
            let a = match tv {
                Some(v) => Action::Write {
                    value: Some(Cow::Borrowed(&[])),
                    meta: Some(Meta {
                        flags: 0,
                        expire_at: 0,
                        version: v,
                    }),
                    tombstone: true,
                    subkeys: SubSrc::Clear,
                },
                None if cur.is_some() => Action::Delete,
                None => Action::Keep,
            };
            Ok((a, live))
        })
    }

    pub(crate) fn compare_and_set(
        &self,
        key: &[u8],
        ev: u64,
        value: &[u8],
        meta: Meta,
    ) -> Result<CasOutcome> {
        self.modify(key, true, |cur| match cur.filter(|c| c.live) {
            None => Ok((Action::Keep, CasOutcome::NotFound)),
            Some(c) if c.loc.hdr.version != ev => Ok((
                Action::Keep,
                CasOutcome::Mismatch {
                    current: c.loc.hdr.version,
                },
            )),
            Some(_) => Ok((
                Action::Write {
                    value: Some(Cow::Borrowed(value)),
                    meta: Some(meta),
                    tombstone: false,
                    subkeys: SubSrc::KeepIfLive,
                },
                CasOutcome::Stored,
            )),
        })
    }

    pub(crate) fn get_or_insert(
        &self,
        key: &[u8],
        value: &[u8],
        meta: Meta,
    ) -> Result<(Record, bool)> {
        self.modify(key, true, |cur| match cur.filter(|c| c.live) {
            Some(c) => Ok((Action::Keep, (c.to_record(), false))),
            None => {
                let rec = Record {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    flags: meta.flags,
                    expire_at: meta.expire_at,
                    version: meta.version,
                    tombstone: false,
                    subkeys: Vec::new(),
                };
                Ok((
                    Action::Write {
                        value: Some(Cow::Borrowed(value)),
                        meta: Some(meta),
                        tombstone: false,
                        subkeys: SubSrc::Clear,
                    },
                    (rec, true),
                ))
            }
        })
    }

    pub(crate) fn update<T>(
        &self,
        key: &[u8],
        raw: bool,
        f: impl FnOnce(Option<&Record>) -> (Decision, T),
    ) -> Result<T> {
        self.modify(key, true, |cur| {
            let rec = cur.filter(|c| raw || c.live).map(|c| c.to_record());
            let (d, out) = f(rec.as_ref());
            let a = match d {
                Decision::Keep => Action::Keep,
                Decision::Put { value, meta } => Action::Write {
                    value: Some(Cow::Owned(value)),
                    meta: Some(meta),
                    tombstone: false,
                    subkeys: SubSrc::KeepIfLive,
                },
                Decision::PutRecord(r) => {
                    let children: Vec<&[u8]> = r.subkeys.iter().map(|c| c.as_slice()).collect();
                    let sk = encode_children(&children)?;
                    let meta = r.meta();
                    Action::Write {
                        value: Some(Cow::Owned(if r.tombstone { Vec::new() } else { r.value })),
                        meta: Some(meta),
                        tombstone: r.tombstone,
                        subkeys: SubSrc::New(sk),
                    }
                }
                Decision::Remove {
                    tombstone_version: Some(v),
                } => Action::Write {
                    value: Some(Cow::Borrowed(&[])),
                    meta: Some(Meta {
                        flags: 0,
                        expire_at: 0,
                        version: v,
                    }),
                    tombstone: true,
                    subkeys: SubSrc::Clear,
                },
                Decision::Remove {
                    tombstone_version: None,
                } => {
                    if cur.is_some() {
                        Action::Delete
                    } else {
                        Action::Keep
                    }
                }
            };
            Ok((a, out))
        })
    }

    /// Rewrites the live record `parent` with a new subkey list computed by `f` from the
    /// current one; `f` returns `None` to leave it unchanged. Value and meta are kept.
    fn edit_subkeys<T: Default>(
        &self,
        parent: &[u8],
        f: impl FnOnce(Vec<Vec<u8>>) -> Result<(Option<Vec<u8>>, T)>,
    ) -> Result<T> {
        self.modify(parent, true, |cur| {
            let Some(c) = cur.filter(|c| c.live) else {
                return Ok((Action::Keep, T::default()));
            };
            let list = decode_subkeys(c.loc.subkeys_raw())
                .ok_or_else(|| Error::corrupted("malformed subkey list", 0))?;
            match f(list)? {
                (None, out) => Ok((Action::Keep, out)),
                (Some(sk), out) => Ok((
                    Action::Write {
                        value: None,
                        meta: None,
                        tombstone: false,
                        subkeys: SubSrc::New(sk),
                    },
                    out,
                )),
            }
        })
    }

    pub(crate) fn set_subkeys(&self, parent: &[u8], children: &[&[u8]]) -> Result<bool> {
        let sk = encode_children(children)?;
        self.edit_subkeys(parent, |_| Ok((Some(sk), true)))
    }

    pub(crate) fn add_subkey(&self, parent: &[u8], child: &[u8]) -> Result<bool> {
        check_key(child)?;
        self.edit_subkeys(parent, |mut list| {
            if list.iter().any(|c| c == child) {
                return Ok((None, true));
            }
            list.push(child.to_vec());
            let refs: Vec<&[u8]> = list.iter().map(|c| c.as_slice()).collect();
            Ok((Some(encode_children(&refs)?), true))
        })
    }

    pub(crate) fn remove_subkey(&self, parent: &[u8], child: &[u8]) -> Result<bool> {
        self.edit_subkeys(parent, |mut list| {
            let n = list.len();
            list.retain(|c| c != child);
            if list.len() == n {
                return Ok((None, false));
            }
            Ok((
                Some(encode_subkeys(list.iter().map(|c| c.as_slice()))),
                true,
            ))
        })
    }

    pub(crate) fn subkeys(&self, parent: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        self.get_with(parent, false, |r| r.subkeys())
    }

    pub(crate) fn remove_with_children(&self, key: &[u8], tv: Option<u64>) -> Result<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(key.to_vec(), 0usize)];
        let mut removed = 0;
        while let Some((k, depth)) = stack.pop() {
            if !seen.insert(k.clone()) {
                continue;
            }
            if depth < SUBKEY_DEPTH_MAX {
                if let Some(children) = self.subkeys(&k)? {
                    stack.extend(children.into_iter().map(|c| (c, depth + 1)));
                }
            }
            if self.remove(&k, tv)? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
