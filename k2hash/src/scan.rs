//! Whole-shard walks: resumable scans in `(key_hash, key)` order, range digests, tombstone
//! purge, expiry reclamation and verification.
//!
//! Shards cover consecutive hash ranges (top bits), so walking shards in index order walks the
//! hash space in order; inside a shard the entries are sorted on each call. A cursor is the last
//! `(hash, key)` returned, which stays meaningful whatever the tables do in between (growth,
//! rehash), so a record present for the whole scan is returned exactly once.

use crate::engine::{err_what, Engine, Table};
use crate::error::{Error, Result};
use crate::format::*;
use crate::limits::DIGEST_CELL_BITS;
use crate::types::*;
use crate::verify::{Problem, VerifyReport};
use std::sync::atomic::Ordering;

const CELL_SHIFT: u32 = 64 - DIGEST_CELL_BITS;
const CELL_LOW_MASK: u64 = (1u64 << CELL_SHIFT) - 1;

impl Engine {
    /// Calls `f(pos, slot_value)` for every used slot of table `t`.
    fn each_slot(&self, t: &Table, mut f: impl FnMut(u64, u64) -> Result<()>) -> Result<()> {
        for pos in 0..(1u64 << t.bits) {
            let s = self.region.slot(t.slot_off(pos)).load(Ordering::Acquire);
            if s != SLOT_EMPTY && s != SLOT_DELETED {
                f(pos, s)?;
            }
        }
        Ok(())
    }

    /// Shards overlapping `[lo, hi]`.
    fn shard_span(&self, lo: u64, hi: u64) -> std::ops::RangeInclusive<usize> {
        self.shard_of(lo)..=self.shard_of(hi)
    }

    pub(crate) fn scan_range(
        &self,
        lo: u64,
        hi: u64,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<(Vec<ScanItem>, Option<Cursor>)> {
        let limit = limit.max(1);
        let start = if cursor.started {
            cursor.hash.max(lo)
        } else {
            lo
        };
        let mut out: Vec<ScanItem> = Vec::new();
        if lo > hi || start > hi {
            return Ok((out, None));
        }
        let now = self.now();
        let mut buf = Vec::new();
        for si in self.shard_span(start, hi) {
            let t = self.shards[si].t.read();
            let mut cands: Vec<(u64, u64)> = Vec::new();
            self.each_slot(&t, |_, s| {
                let (off, _) = slot_parts(s);
                let hdr = self.rec_at(off, false, &mut buf)?.hdr;
                if hdr.key_hash >= start && hdr.key_hash <= hi {
                    cands.push((hdr.key_hash, off));
                }
                Ok(())
            })?;
            cands.sort_unstable();
            let mut items: Vec<ScanItem> = Vec::new();
            let need = limit - out.len();
            for &(h, off) in &cands {
                // Past the quota, only hashes equal to the last taken one can still sort
                // before it (ties are ordered by key).
                if items.len() >= need && items.last().is_some_and(|l: &ScanItem| l.hash != h) {
                    break;
                }
                let loc = self.rec_at(off, true, &mut buf)?;
                if !cursor.is_before(h, loc.key()) {
                    continue;
                }
                let subkeys = decode_subkeys(loc.subkeys_raw())
                    .ok_or_else(|| Error::corrupted("malformed subkey list", off))?;
                let record = Record {
                    key: loc.key().to_vec(),
                    value: loc.value().to_vec(),
                    flags: loc.hdr.flags,
                    expire_at: loc.hdr.expire_at,
                    version: loc.hdr.version,
                    tombstone: loc.hdr.tombstone,
                    subkeys,
                };
                let expired = record.is_expired(now);
                items.push(ScanItem {
                    hash: h,
                    record,
                    expired,
                });
            }
            drop(t);
            items.sort_by(|a, b| (a.hash, &a.record.key).cmp(&(b.hash, &b.record.key)));
            items.truncate(need);
            out.extend(items);
            if out.len() >= limit {
                let last = out.last().map(|l| Cursor {
                    hash: l.hash,
                    key: l.record.key.clone(),
                    started: true,
                });
                return Ok((out, last));
            }
        }
        Ok((out, None))
    }

    /// Digest of `[lo, hi]` computed by reading records (used for partial cells and checks).
    fn digest_by_scan(&self, lo: u64, hi: u64) -> Result<Digest> {
        let mut d = Digest::default();
        let mut buf = Vec::new();
        for si in self.shard_span(lo, hi) {
            let t = self.shards[si].t.read();
            self.each_slot(&t, |_, s| {
                let loc = self.rec_at(slot_parts(s).0, false, &mut buf)?;
                if loc.hdr.key_hash >= lo && loc.hdr.key_hash <= hi {
                    d.add(loc.key(), loc.hdr.version);
                }
                Ok(())
            })?;
        }
        Ok(d)
    }

    pub(crate) fn digest(&self, lo: u64, hi: u64) -> Result<Digest> {
        let mut d = Digest::default();
        if lo > hi {
            return Ok(d);
        }
        // Whole cells are read under their shard's read lock (taken once per shard), which
        // makes each (count, hash) pair consistent with the records.
        let mut held: Option<(usize, parking_lot::RwLockReadGuard<'_, Table>)> = None;
        for c in (lo >> CELL_SHIFT)..=(hi >> CELL_SHIFT) {
            let clo = c << CELL_SHIFT;
            let chi = clo | CELL_LOW_MASK;
            if lo <= clo && chi <= hi {
                let si = self.shard_of(clo);
                if held.as_ref().is_none_or(|(h, _)| *h != si) {
                    drop(held.take());
                    held = Some((si, self.shards[si].t.read()));
                }
                let cell = &self.cells[c as usize];
                d.merge(Digest {
                    count: cell.count.load(Ordering::Relaxed),
                    hash: cell.hash.load(Ordering::Relaxed),
                });
            } else {
                held = None;
                d.merge(self.digest_by_scan(lo.max(clo), hi.min(chi))?);
            }
        }
        Ok(d)
    }

    /// Deletes outright, in shards overlapping `[lo, hi]`, the records selected by `pick`.
    fn delete_where(&self, lo: u64, hi: u64, pick: impl Fn(&RecHeader) -> bool) -> Result<u64> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut n = 0;
        let mut buf = Vec::new();
        for si in self.shard_span(lo, hi) {
            let mut keys: Vec<Vec<u8>> = Vec::new();
            {
                let t = self.shards[si].t.read();
                self.each_slot(&t, |_, s| {
                    let loc = self.rec_at(slot_parts(s).0, false, &mut buf)?;
                    if loc.hdr.key_hash >= lo && loc.hdr.key_hash <= hi && pick(&loc.hdr) {
                        keys.push(loc.key().to_vec());
                    }
                    Ok(())
                })?;
            }
            // Re-check each under the write lock: it may have changed since.
            for k in keys {
                let done = self.modify(&k, true, |cur| match cur {
                    Some(c) if pick(&c.loc.hdr) => Ok((crate::ops::Action::Delete, true)),
                    _ => Ok((crate::ops::Action::Keep, false)),
                })?;
                n += u64::from(done);
            }
        }
        Ok(n)
    }

    pub(crate) fn purge_tombstones(&self, lo: u64, hi: u64, maxv: u64) -> Result<u64> {
        if lo > hi {
            return Ok(0);
        }
        self.delete_where(lo, hi, |h| h.tombstone && h.version <= maxv)
    }

    /// Reclaims expired records in shards `first..first+count` (wrapping). Returns how many.
    pub(crate) fn reclaim_expired_shards(&self, first: usize, count: usize) -> Result<u64> {
        let now = self.now();
        let n = self.shards.len();
        let mut total = 0;
        for i in 0..count.min(n) {
            let si = (first + i) % n;
            let (lo, hi) = if self.shard_bits == 0 {
                (0, u64::MAX)
            } else {
                let lo = (si as u64) << (64 - self.shard_bits);
                (lo, lo | (u64::MAX >> self.shard_bits))
            };
            if self.shards[si].t.read().k.expiring == 0 {
                continue;
            }
            total += self.delete_where(lo, hi, |h| {
                !h.tombstone && h.expire_at != 0 && h.expire_at <= now
            })?;
        }
        Ok(total)
    }

    pub(crate) fn reclaim_expired(&self) -> Result<u64> {
        self.reclaim_expired_shards(0, self.shards.len())
    }
}

/// Checks every table and record of an open engine (checksums included).
pub(crate) fn verify_engine(e: &Engine) -> Result<VerifyReport> {
    let mut rep = VerifyReport {
        file_size: e.region.size(),
        was_clean: e.was_clean,
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut blocks: Vec<(u64, u64)> = Vec::new();
    for (si, sh) in e.shards.iter().enumerate() {
        let t = sh.t.read();
        blocks.push((t.off, crate::engine::table_bytes(t.bits, e.granule)));
        let mut keys = std::collections::HashSet::new();
        for pos in 0..(1u64 << t.bits) {
            let so = t.slot_off(pos);
            let s = e.region.slot(so).load(Ordering::Acquire);
            if s == SLOT_EMPTY || s == SLOT_DELETED {
                continue;
            }
            rep.slots += 1;
            let (off, tag) = slot_parts(s);
            let r = e.rec_at(off, true, &mut buf).and_then(|loc| {
                let key = loc.key();
                let h = crate::key_hash(key);
                if h != loc.hdr.key_hash || e.shard_of(h) != si || tag_of(h) != tag {
                    return Err(Error::corrupted(
                        "record hash, shard or tag inconsistent with its slot",
                        off,
                    ));
                }
                if decode_subkeys(loc.subkeys_raw()).is_none() {
                    return Err(Error::corrupted("malformed subkey list", off));
                }
                e.check_reachable(&t, h, pos, off)?;
                if !keys.insert(key.to_vec()) {
                    return Err(Error::corrupted("key indexed twice", off));
                }
                Ok(loc.hdr)
            });
            match r {
                Ok(h) => {
                    rep.records += 1;
                    rep.tombstones += u64::from(h.tombstone);
                    rep.live_bytes += h.key_len as u64 + h.value_len as u64 + h.subkeys_len as u64;
                    blocks.push((off, h.block_bytes as u64));
                }
                Err(err) => rep.problems.push(Problem {
                    what: format!("slot {pos} of shard {si}: {}", err_what(&err)),
                    offset: so,
                }),
            }
        }
    }
    blocks.sort_unstable();
    let mut end = e.data_start;
    for (off, len) in blocks {
        if off < end {
            rep.problems.push(Problem {
                what: format!("block of {len} bytes overlaps the previous one ending at {end}"),
                offset: off,
            });
        }
        end = end.max(off + len);
    }
    Ok(rep)
}
