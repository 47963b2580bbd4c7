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
    /// Per arena, where its next bump allocation would start (a prefetch hint only: read
    /// without the arena lock, possibly stale, never used to place anything).
    next_hint: Vec<AtomicU64>,
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

    /// A block of `len` bytes from the free lists (the smallest class that fits, split), or
    /// `None`. `g` is the granule.
    fn take_free(&mut self, g: u64, len: u64) -> Option<u64> {
        let found = if len <= SMALL_BYTES_MAX {
            self.pop_small_at_least((len / g) as usize)
                .map(|(o, c)| (o, c as u64 * g))
        } else {
            None
        }
        .or_else(|| self.pop_large_at_least(len))?;
        let (off, have) = found;
        self.free_bytes -= len;
        if have > len {
            self.push(g, off + len, have - len);
        }
        Some(off)
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
            next_hint: (0..ARENA_COUNT).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Bytes in free lists and unused arena chunks (not counting the file's unused tail).
    pub(crate) fn free_bytes(&self) -> u64 {
        self.arenas.iter().map(|a| a.lock().free_bytes).sum()
    }

    /// Where arena `a`'s next block would start if its free lists have none of the size (a
    /// hint for prefetching the bytes a new record is about to be written to; 0 if unknown).
    #[inline]
    pub(crate) fn next_hint(&self, a: usize) -> u64 {
        self.next_hint[a % ARENA_COUNT].load(Ordering::Relaxed)
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
        if let Some(off) = ar.take_free(g, len) {
            return Ok(off);
        }
        if ar.chunk_end - ar.chunk_cur < len {
            // Keep the rest of the old chunk in the free lists, take a new one from the tail.
            // The chunk is emptied first: if the tail cannot grow (disk full), the rest must
            // not stay in the chunk too, or it would be handed out twice.
            let (cur, end) = (ar.chunk_cur, ar.chunk_end);
            if end > cur {
                ar.push(g, cur, end - cur);
            }
            ar.chunk_cur = end;
            let want = len.max(ARENA_CHUNK_BYTES);
            // On a nearly full disk a whole chunk may not fit where this block would.
            let taken = match self.take_tail_raw(region, want, g) {
                Ok((start, _, _)) => Ok((start, want)),
                Err(e) if e.is_no_space() && want > len => self
                    .take_tail_raw(region, len, g)
                    .map(|(start, _, _)| (start, len)),
                Err(e) => Err(e),
            };
            let (start, got) = match taken {
                Ok(t) => t,
                Err(e) if e.is_no_space() => {
                    // The file cannot grow: use space freed in the other arenas (deleted
                    // keys), merging touching holes once if none is large enough.
                    drop(ar);
                    return self.alloc_elsewhere(a, len).ok_or(e);
                }
                Err(e) => return Err(e),
            };
            ar.free_bytes += got;
            ar.chunk_cur = start;
            ar.chunk_end = start + got;
        }
        let off = ar.chunk_cur;
        ar.chunk_cur += len;
        ar.free_bytes -= len;
        self.next_hint[a % ARENA_COUNT].store(ar.chunk_cur, Ordering::Relaxed);
        Ok(off)
    }

    /// A block of `len` bytes from any arena's free lists or unused chunk (arena `a`'s own
    /// free lists were already searched): the last resort when the file cannot grow. When no
    /// single hole is large enough but the free bytes would do, touching holes are merged
    /// once and the search repeated. Called without an arena lock held.
    fn alloc_elsewhere(&self, a: usize, len: u64) -> Option<u64> {
        if let Some(off) = self.take_from_any(a, len) {
            return Some(off);
        }
        if self.free_bytes() >= len && self.coalesce() > 0 {
            return self.take_from_any(a, len);
        }
        None
    }

    /// Takes `len` bytes from the first arena (starting after `a`) that has a hole or chunk
    /// rest large enough.
    fn take_from_any(&self, a: usize, len: u64) -> Option<u64> {
        let g = self.granule;
        (1..=ARENA_COUNT).find_map(|i| {
            let mut ar = self.arenas[(a + i) % ARENA_COUNT].lock();
            if let Some(off) = ar.take_free(g, len) {
                return Some(off);
            }
            if ar.chunk_end - ar.chunk_cur >= len {
                let off = ar.chunk_cur;
                ar.chunk_cur += len;
                ar.free_bytes -= len;
                return Some(off);
            }
            None
        })
    }

    /// Takes `len` bytes at `align` from the file tail, growing the file. Used for blocks
    /// (granule alignment: never a gap) while an arena is locked.
    fn take_tail_raw(&self, region: &Region, len: u64, align: u64) -> Result<(u64, u64, u64)> {
        let mut t = self.tail.lock();
        let start = t.next_multiple_of(align);
        region.ensure_size(start + len)?;
        let gap = (*t, start - *t);
        *t = start + len;
        self.tail_pos.store(*t, Ordering::Relaxed);
        Ok((start, gap.0, gap.1))
    }

    /// Takes `len` bytes at `align` from the file tail for a table; must be called without an
    /// arena lock held (an alignment gap is returned to arena `a`).
    pub(crate) fn take_tail(&self, region: &Region, a: usize, len: u64, align: u64) -> Result<u64> {
        let (start, gap_off, gap_len) = self.take_tail_raw(region, len, align)?;
        if gap_len > 0 && gap_len.is_multiple_of(self.granule) {
            self.free(a, gap_off, gap_len);
        }
        Ok(start)
    }

    /// Merges free blocks that touch into larger ones (run in the background): exact-size
    /// classes never merge by themselves, so without this, space freed by small records
    /// could not serve larger ones. Holds every arena lock (in index order) for one sort of
    /// the free list; readers are never blocked. Returns how many merges were made.
    pub(crate) fn coalesce(&self) -> usize {
        let g = self.granule;
        let mut guards: Vec<_> = self.arenas.iter().map(|a| a.lock()).collect();
        let mut all: Vec<(u64, u64)> = Vec::new();
        for ar in guards.iter_mut() {
            for (c, v) in ar.small.iter_mut().enumerate() {
                all.extend(v.drain(..).map(|off| (off, c as u64 * g)));
            }
            ar.nonempty.fill(0);
            for (len, v) in std::mem::take(&mut ar.large) {
                all.extend(v.into_iter().map(|off| (off, len)));
            }
            ar.free_bytes = ar.chunk_end - ar.chunk_cur;
        }
        all.sort_unstable();
        let before = all.len();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(all.len());
        for (off, len) in all {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == off => last.1 += len,
                _ => merged.push((off, len)),
            }
        }
        let n = guards.len();
        for (i, &(off, len)) in merged.iter().enumerate() {
            let ar = &mut guards[i % n];
            ar.push(g, off, len);
            ar.free_bytes += len;
        }
        before - merged.len()
    }
}
