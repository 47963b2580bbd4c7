//! Free-space management. Nothing of it is stored in the file: at every open the engine
//! rebuilds it from the blocks the index reaches (everything else is free), so no crash can
//! leak or double-allocate space. While open, space is handed out by striped arenas (one lock
//! each, chosen by shard) that keep exact-size free lists for small blocks (with a bitmap to
//! find the next larger non-empty class, split on use), a size-ordered map for large blocks,
//! and a bump chunk taken from the file tail.

use crate::error::Result;
use crate::limits::{ARENA_CHUNK_BYTES, ARENA_COUNT};
use crate::region::Region;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Blocks up to this many bytes use the exact-size classes.
const SMALL_BYTES_MAX: u64 = 4096;

struct Arena {
    small: Vec<Vec<u64>>,
    nonempty: Vec<u64>,
    large: BTreeMap<u64, Vec<u64>>,
    chunk_cur: u64,
    chunk_end: u64,
    /// Bytes in this arena's free lists and unused chunk.
    free_bytes: u64,
}

pub(crate) struct Alloc {
    arenas: Vec<Mutex<Arena>>,
    tail: Mutex<u64>,
    granule: u64,
    tail_pos: AtomicU64,
}

impl Arena {
    fn new(classes: usize) -> Arena {
        Arena {
            small: vec![Vec::new(); classes + 1],
            nonempty: vec![0; (classes + 1).div_ceil(64)],
            large: BTreeMap::new(),
            chunk_cur: 0,
            chunk_end: 0,
            free_bytes: 0,
        }
    }

    fn push(&mut self, g: u64, off: u64, len: u64) {
        if len <= SMALL_BYTES_MAX {
            let c = (len / g) as usize;
            self.small[c].push(off);
            self.nonempty[c / 64] |= 1 << (c % 64);
        } else {
            self.large.entry(len).or_default().push(off);
        }
    }

    fn pop_small_at_least(&mut self, c0: usize) -> Option<(u64, usize)> {
        let mut w = c0 / 64;
        let mut mask = !0u64 << (c0 % 64);
        while w < self.nonempty.len() {
            let bits = self.nonempty[w] & mask;
            if bits != 0 {
                let c = w * 64 + bits.trailing_zeros() as usize;
                let off = self.small[c].pop()?;
                if self.small[c].is_empty() {
                    self.nonempty[w] &= !(1 << (c % 64));
                }
                return Some((off, c));
            }
            w += 1;
            mask = !0;
        }
        None
    }

    fn pop_large_at_least(&mut self, len: u64) -> Option<(u64, u64)> {
        let (&l, v) = self.large.range_mut(len..).next()?;
        let off = v.pop()?;
        if v.is_empty() {
            self.large.remove(&l);
        }
        Some((off, l))
    }
}

impl Alloc {
    /// An allocator whose tail (first never-allocated byte) is `tail`.
    pub(crate) fn new(granule: u32, tail: u64) -> Alloc {
        let g = granule as u64;
        let classes = (SMALL_BYTES_MAX / g) as usize;
        Alloc {
            arenas: (0..ARENA_COUNT)
                .map(|_| Mutex::new(Arena::new(classes)))
                .collect(),
            tail: Mutex::new(tail),
            granule: g,
            tail_pos: AtomicU64::new(tail),
        }
    }

    /// Bytes in free lists and unused arena chunks (not counting the file's unused tail).
    pub(crate) fn free_bytes(&self) -> u64 {
        self.arenas.iter().map(|a| a.lock().free_bytes).sum()
    }

    /// First never-allocated byte.
    pub(crate) fn tail(&self) -> u64 {
        self.tail_pos.load(Ordering::Relaxed)
    }

    /// Adds a free hole found at open (or a freed block) to arena `a`.
    pub(crate) fn free(&self, a: usize, off: u64, len: u64) {
        debug_assert!(
            len > 0 && len.is_multiple_of(self.granule) && off.is_multiple_of(self.granule)
        );
        let mut ar = self.arenas[a % ARENA_COUNT].lock();
        // Holes larger than a small class are kept whole in the large map.
        ar.push(self.granule, off, len);
        ar.free_bytes += len;
    }

    /// Allocates `len` bytes (a multiple of the granule) for arena `a`.
    pub(crate) fn alloc(&self, region: &Region, a: usize, len: u64) -> Result<u64> {
        debug_assert!(len > 0 && len.is_multiple_of(self.granule));
        let g = self.granule;
        let mut ar = self.arenas[a % ARENA_COUNT].lock();
        let found = if len <= SMALL_BYTES_MAX {
            ar.pop_small_at_least((len / g) as usize)
                .map(|(o, c)| (o, c as u64 * g))
        } else {
            None
        }
        .or_else(|| ar.pop_large_at_least(len));
        if let Some((off, have)) = found {
            ar.free_bytes -= len;
            if have > len {
                ar.push(g, off + len, have - len);
            }
            return Ok(off);
        }
        if ar.chunk_end - ar.chunk_cur < len {
            // Keep the rest of the old chunk, take a new one from the tail.
            let rest = ar.chunk_end - ar.chunk_cur;
            let (cur, end) = (ar.chunk_cur, ar.chunk_end);
            if rest > 0 {
                ar.push(g, cur, end - cur);
            }
            let want = len.max(ARENA_CHUNK_BYTES);
            let start = self.take_tail(region, want, g)?;
            ar.free_bytes += want;
            ar.chunk_cur = start;
            ar.chunk_end = start + want;
        }
        let off = ar.chunk_cur;
        ar.chunk_cur += len;
        ar.free_bytes -= len;
        Ok(off)
    }

    /// Takes `len` bytes at `align` from the file tail, growing the file.
    pub(crate) fn take_tail(&self, region: &Region, len: u64, align: u64) -> Result<u64> {
        let mut t = self.tail.lock();
        let start = t.next_multiple_of(align);
        region.ensure_size(start + len)?;
        if start > *t {
            // The alignment gap is free space too.
            let gap = start - *t;
            if gap.is_multiple_of(self.granule) {
                let mut ar = self.arenas[0].lock();
                ar.push(self.granule, *t, gap);
                ar.free_bytes += gap;
            }
        }
        *t = start + len;
        self.tail_pos.store(*t, Ordering::Relaxed);
        Ok(start)
    }
}
