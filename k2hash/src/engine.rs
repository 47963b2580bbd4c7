//! The engine: shards of open-addressing index tables over the region, the allocator, digest
//! cells and counters; open (create or rebuild), close, and the record-level primitives that
//! `ops.rs` and `scan.rs` build on.
//!
//! Locking: each shard has a `RwLock`. Readers of a shard hold its read lock while they look at
//! a record; a writer holds the write lock from probe to publish and frees the replaced block
//! before releasing it (or after its flush in sync mode, which is safe because no reader of
//! another shard can reach that block). So a block is never reused while someone reads it.
//!
//! Publication: a record is written completely into a fresh block, then made visible by one
//! aligned 8-byte store into its index slot. A table grows by writing a new table and
//! publishing it with one 8-byte store into the shard directory. A process kill therefore
//! leaves either the old or the new state, plus unreachable blocks that the next open reclaims.

use crate::alloc::Alloc;
use crate::clock::Clock;
use crate::commit::GroupCommit;
use crate::error::{Error, Result};
use crate::format::*;
use crate::limits::*;
use crate::options::{Mode, OpenOptions};
use crate::region::Region;
use crate::verify::{Problem, VerifyReport};
use parking_lot::{Condvar, Mutex, RwLock};
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// In-memory state of one shard's table (the file holds only offset and bits).
pub(crate) struct Table {
    pub(crate) off: u64,
    pub(crate) bits: u32,
    pub(crate) used: u64,
    pub(crate) deleted: u64,
    /// Counters of this shard's records (kept per shard so writers share no cache line).
    pub(crate) k: ShardCounters,
}

/// Per-shard record counters, changed only under the shard's write lock.
#[derive(Clone, Copy, Default)]
pub(crate) struct ShardCounters {
    pub(crate) items: u64,
    pub(crate) tombstones: u64,
    pub(crate) live_bytes: u64,
    pub(crate) used_bytes: u64,
    pub(crate) expiring: u64,
}

impl Table {
    #[inline]
    pub(crate) fn mask(&self) -> u64 {
        (1u64 << self.bits) - 1
    }
    #[inline]
    pub(crate) fn slot_off(&self, pos: u64) -> u64 {
        self.off + pos * SLOT_BYTES
    }
}

pub(crate) struct Shard {
    pub(crate) t: RwLock<Table>,
}

/// One digest cell: records whose hash has these top 16 bits.
#[derive(Default)]
pub(crate) struct Cell {
    pub(crate) count: AtomicU64,
    pub(crate) hash: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) grows: AtomicU64,
}

pub(crate) struct Engine {
    pub(crate) region: Region,
    pub(crate) alloc: Alloc,
    pub(crate) shards: Vec<Shard>,
    pub(crate) shard_bits: u32,
    pub(crate) granule: u32,
    pub(crate) data_start: u64,
    pub(crate) value_size_max: usize,
    pub(crate) sync: bool,
    pub(crate) read_only: bool,
    pub(crate) temporary: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cells: Vec<Cell>,
    pub(crate) counters: Counters,
    pub(crate) commit: GroupCommit,
    pub(crate) closed: AtomicBool,
    pub(crate) was_clean: bool,
    pub(crate) sweeper: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) stop: Arc<(Mutex<bool>, Condvar)>,
}

/// A record as located in the region: its header and its bytes from offset 0 (either the
/// header and key only, or everything up to `used_bytes`, checksum verified).
pub(crate) struct Loc<'a> {
    pub(crate) hdr: RecHeader,
    pub(crate) bytes: &'a [u8],
    /// True when `bytes` holds the whole record (checksum verified), not just header + key.
    pub(crate) full: bool,
}

impl<'a> Loc<'a> {
    #[inline]
    pub(crate) fn key(&self) -> &'a [u8] {
        &self.bytes[REC_HEADER_BYTES..REC_HEADER_BYTES + self.hdr.key_len as usize]
    }
    #[inline]
    pub(crate) fn value(&self) -> &'a [u8] {
        debug_assert!(self.full, "value of a header-only record view");
        let s = REC_HEADER_BYTES + self.hdr.key_len as usize;
        self.bytes
            .get(s..s + self.hdr.value_len as usize)
            .unwrap_or(&[])
    }
    #[inline]
    pub(crate) fn subkeys_raw(&self) -> &'a [u8] {
        // A header-only view is enough when the list is empty (`modify` loads the whole
        // record whenever there is a list to carry over).
        debug_assert!(
            self.full || self.hdr.subkeys_len == 0,
            "subkeys of a header-only record view"
        );
        let s = REC_HEADER_BYTES + self.hdr.key_len as usize + self.hdr.value_len as usize;
        self.bytes
            .get(s..s + self.hdr.subkeys_len as usize)
            .unwrap_or(&[])
    }
}

/// Result of probing a table for a key.
pub(crate) struct Probe {
    /// Slot position and record offset of the key, if present.
    pub(crate) found: Option<(u64, u64)>,
    /// Header of the found record.
    pub(crate) hdr: Option<RecHeader>,
    /// Where an insert would go (first deleted slot on the path, else the empty slot).
    pub(crate) insert_at: u64,
}

/// Bytes a table of `bits` occupies (rounded to the granule so it can be freed as a block).
pub(crate) fn table_bytes(bits: u32, granule: u32) -> u64 {
    (SLOT_BYTES << bits).next_multiple_of(granule as u64)
}

fn open_file(opts: &OpenOptions, path: &Path) -> Result<File> {
    let mut oo = std::fs::OpenOptions::new();
    oo.read(true);
    if !opts.read_only {
        oo.write(true);
        if opts.create || opts.temporary {
            oo.create(true);
        }
    }
    match oo.open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::NotFound(path.to_path_buf()))
        }
        Err(e) => Err(Error::io("open", Some(path), e)),
    }
}

fn lock_file(f: &File, path: &Path, shared: bool) -> Result<()> {
    let op = if shared { libc::LOCK_SH } else { libc::LOCK_EX } | libc::LOCK_NB;
    // SAFETY: plain syscall on our own fd.
    let r = unsafe { libc::flock(f.as_raw_fd(), op) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        // The header names the writer that owns the file; when its dirty flag is clear no
        // writer is active, so the holder is a read-only opener whose pid is unknown (0).
        let mut b = [0u8; 8];
        let pid = match std::os::unix::fs::FileExt::read_exact_at(f, &mut b, HDR_DIRTY as u64) {
            Ok(()) if get_u32(&b, 0) == DIRTY_OPEN => get_u32(&b, 4),
            _ => 0,
        };
        return Err(Error::Locked {
            path: path.to_path_buf(),
            pid,
        });
    }
    Err(Error::io("flock", Some(path), e))
}

/// How far the creation of a file got (see [`header_unfinished`]).
enum Creation {
    /// Zero bytes long.
    Empty,
    /// Grown, maybe partly laid out, but its magic was never written: it holds nothing.
    Unfinished,
    /// Has a magic (its header may still be corrupt; `decode_header` judges that).
    Done,
}

fn creation_state(f: &File, path: Option<&Path>) -> Result<Creation> {
    let len = f.metadata().map_err(|e| Error::io("fstat", path, e))?.len();
    if len == 0 {
        return Ok(Creation::Empty);
    }
    let mut page = vec![0u8; len.min(HEADER_BYTES) as usize];
    std::os::unix::fs::FileExt::read_exact_at(f, &mut page, 0)
        .map_err(|e| Error::io("pread", path, e))?;
    Ok(if header_unfinished(&page) {
        Creation::Unfinished
    } else {
        Creation::Done
    })
}

impl Engine {
    pub(crate) fn open(opts: &OpenOptions) -> Result<Arc<Engine>> {
        Self::open_inner(opts, false).map(|(e, _)| e)
    }

    /// Opens; with `lenient`, record-level problems are collected instead of failing (verify).
    pub(crate) fn open_inner(
        opts: &OpenOptions,
        lenient: bool,
    ) -> Result<(Arc<Engine>, Vec<Problem>)> {
        if opts.value_size_max > VALUE_SIZE_MAX_CEILING {
            return Err(Error::LimitExceeded {
                limit: "value_size_max ceiling",
                max: VALUE_SIZE_MAX_CEILING as u64,
                actual: opts.value_size_max as u64,
            });
        }
        if !(FILE_SIZE_MAX_FLOOR..=FILE_SIZE_MAX_CEILING).contains(&opts.file_size_max) {
            return Err(Error::InvalidArgument(format!(
                "file_size_max {} outside {FILE_SIZE_MAX_FLOOR}..={FILE_SIZE_MAX_CEILING}",
                opts.file_size_max
            )));
        }
        if opts.temporary && opts.read_only {
            return Err(Error::InvalidArgument(
                "temporary and read_only together make no sense".into(),
            ));
        }
        let path = opts.path.as_deref();
        let (file, read_only) = match (opts.mode, path) {
            (Mode::Memory, _) => (None, false),
            (_, None) => return Err(Error::InvalidArgument("file mode without a path".into())),
            (_, Some(p)) => {
                let f = open_file(opts, p)?;
                lock_file(&f, p, opts.read_only)?;
                if opts.temporary {
                    f.set_len(0)
                        .map_err(|e| Error::io("ftruncate", Some(p), e))?;
                }
                (Some(f), opts.read_only)
            }
        };
        // Decided under the owner lock, so no other process is creating this file meanwhile.
        let fresh = match &file {
            None => true,
            Some(f) => match creation_state(f, path)? {
                Creation::Done => false,
                Creation::Empty | Creation::Unfinished
                    if read_only || !(opts.create || opts.temporary) =>
                {
                    return Err(Error::corrupted(
                        "file is empty or its creation was interrupted before it held any \
                         data (pass create(true) to initialise it)",
                        0,
                    )
                    .with_path(path));
                }
                Creation::Empty => true,
                Creation::Unfinished => {
                    // Start over from nothing: leftovers of the interrupted creation must
                    // not be taken for free space or tables.
                    f.set_len(0).map_err(|e| Error::io("ftruncate", path, e))?;
                    true
                }
            },
        };
        let region = Region::new(opts.mode, file, path, opts.file_size_max, read_only)?;
        let geometry = if fresh {
            let g = Geometry {
                shard_bits: opts.shard_bits,
                table_bits: opts.table_bits,
                granule_bytes: opts.granule_bytes,
                created_at: opts.clock.now_unix_secs(),
            };
            check_geometry(&g).map_err(Error::InvalidArgument)?;
            g
        } else {
            let size = region.size();
            let h = region
                .slice(0, HDR_END.min(size as usize))
                .map_err(|e| e.with_path(path))?;
            decode_header(h, size).map_err(|e| e.with_path(path))?
        };
        let was_clean = fresh || {
            let d = region.slice(HDR_DIRTY as u64, 4)?;
            get_u32(d, 0) != DIRTY_OPEN
        };
        let shard_count = 1usize << geometry.shard_bits;
        let ds = data_start(geometry.shard_bits);
        let mut eng = Engine {
            alloc: Alloc::new(geometry.granule_bytes, ds),
            region,
            shards: (0..shard_count)
                .map(|_| Shard {
                    t: RwLock::new(Table {
                        off: 0,
                        bits: 0,
                        used: 0,
                        deleted: 0,
                        k: ShardCounters::default(),
                    }),
                })
                .collect(),
            shard_bits: geometry.shard_bits,
            granule: geometry.granule_bytes,
            data_start: ds,
            value_size_max: opts.value_size_max,
            sync: opts.sync && opts.mode != Mode::Memory,
            read_only,
            temporary: opts.temporary,
            clock: opts.clock.clone(),
            cells: (0..(1usize << DIGEST_CELL_BITS))
                .map(|_| Cell::default())
                .collect(),
            counters: Counters::default(),
            commit: GroupCommit::default(),
            closed: AtomicBool::new(false),
            was_clean,
            sweeper: Mutex::new(None),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
        };
        let mut problems = Vec::new();
        if fresh {
            eng.create_layout(&geometry)?;
        } else {
            eng.rebuild(lenient.then_some(&mut problems))
                .map_err(|e| e.with_path(path))?;
        }
        if !read_only && eng.region.file.is_some() {
            let pid = std::process::id();
            eng.region.put_u32(HDR_OWNER_PID as u64, pid)?;
            let w = eng.region.word(HDR_OPEN_COUNT as u64)?;
            w.fetch_add(1, Ordering::Relaxed);
            eng.region.put_u32(HDR_DIRTY as u64, DIRTY_OPEN)?;
            if eng.sync {
                eng.region.sync_data()?;
            }
        }
        let eng = Arc::new(eng);
        if opts.background && !read_only {
            crate::sweeper::start(&eng);
        }
        Ok((eng, problems))
    }

    /// Writes header, directory and empty tables of a new store.
    fn create_layout(&mut self, g: &Geometry) -> Result<()> {
        let ds = self.data_start;
        if self.region.mode == Mode::Memory {
            self.region.set_logical_size(0);
        }
        self.region.ensure_size(ds)?;
        self.region.zero(0, ds)?;
        let tb = table_bytes(g.table_bits, self.granule);
        for i in 0..self.shards.len() {
            let off = self.alloc.take_tail(
                &self.region,
                i,
                tb,
                TABLE_ALIGN_BYTES.max(self.granule as u64),
            )?;
            self.region.zero(off, tb)?;
            let e = dir_entry(off, g.table_bits);
            self.region
                .word(HEADER_BYTES + i as u64 * DIR_ENTRY_BYTES)?
                .store(e, Ordering::Release);
            *self.shards[i].t.get_mut() = Table {
                off,
                bits: g.table_bits,
                used: 0,
                deleted: 0,
                k: ShardCounters::default(),
            };
        }
        if self.sync {
            self.region.sync_data()?;
        }
        // The header goes last, and its magic word last of all, by one aligned 8-byte store:
        // until then the file counts as unfinished (`header_unfinished`) and the next opener
        // with create(true) starts over; once the magic is there everything else is in place.
        let h = encode_header(g);
        self.region
            .write(HDR_VERSION as u64, &h[HDR_VERSION..], false)?;
        if self.sync {
            self.region.sync_data()?;
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&h[HDR_MAGIC..HDR_MAGIC + 8]);
        self.region
            .word(HDR_MAGIC as u64)?
            .store(u64::from_le_bytes(magic), Ordering::Release);
        if self.sync {
            self.region.sync_data()?;
        }
        Ok(())
    }

    /// Rebuilds tables' counts, digest cells, counters and the allocator from the index.
    fn rebuild(&mut self, mut problems: Option<&mut Vec<Problem>>) -> Result<()> {
        let size = self.region.size();
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        let report = |problems: &mut Option<&mut Vec<Problem>>, e: Error| -> Result<()> {
            match (problems.as_deref_mut(), e) {
                (Some(v), Error::Corrupted { what, offset, .. }) => {
                    v.push(Problem { what, offset });
                    Ok(())
                }
                (_, e) => Err(e),
            }
        };
        for i in 0..self.shards.len() {
            let doff = HEADER_BYTES + i as u64 * DIR_ENTRY_BYTES;
            let e = self.region.word(doff)?.load(Ordering::Acquire);
            let (off, bits) = dir_entry_parts(e).unwrap_or((0, 0));
            let tb = if (TABLE_BITS_MIN..=TABLE_BITS_MAX).contains(&bits) {
                table_bytes(bits, self.granule)
            } else {
                0
            };
            if tb == 0
                || off < self.data_start
                || off % (self.granule as u64) != 0
                || off.checked_add(tb).is_none_or(|x| x > size)
            {
                // A shard without a table cannot be salvaged in place.
                return Err(Error::corrupted(
                    format!("shard {i} table entry {e:#x} invalid (bits {bits}, file size {size})"),
                    doff,
                ));
            }
            blocks.push((off, tb));
            let mut t = Table {
                off,
                bits,
                used: 0,
                deleted: 0,
                k: ShardCounters::default(),
            };
            let mut buf = Vec::new();
            for pos in 0..(1u64 << bits) {
                let so = t.slot_off(pos);
                let s = self.region.slot(so).load(Ordering::Acquire);
                if s == SLOT_EMPTY {
                    continue;
                }
                if s == SLOT_DELETED {
                    t.deleted += 1;
                    continue;
                }
                let (roff, tag) = slot_parts(s);
                match self
                    .check_slot_record(i, roff, tag, &mut buf)
                    .and_then(|r| {
                        self.check_reachable(&t, r.0.key_hash, pos, roff)
                            .map(|()| r)
                    }) {
                    Ok((hdr, key_term)) => {
                        t.used += 1;
                        blocks.push((roff, hdr.block_bytes as u64));
                        self.account(&mut t, hdr.key_hash, &hdr, key_term, true);
                    }
                    Err(err) => {
                        report(
                            &mut problems,
                            Error::corrupted(
                                format!("slot {pos} of shard {i}: {}", err_what(&err)),
                                so,
                            ),
                        )?;
                    }
                }
            }
            *self.shards[i].t.get_mut() = t;
        }
        blocks.sort_unstable();
        let mut tail = self.data_start;
        for &(off, len) in &blocks {
            if off < tail {
                report(
                    &mut problems,
                    Error::corrupted(
                        format!(
                            "block of {len} bytes overlaps the previous block ending at {tail}"
                        ),
                        off,
                    ),
                )?;
            }
            tail = tail.max(off + len);
        }
        self.alloc = {
            // Rebuild with the right tail, replaying the holes found above.
            let a = Alloc::new(self.granule, tail);
            let mut t2 = self.data_start;
            let mut ar = 0usize;
            for &(off, len) in &blocks {
                if off > t2 && (off - t2).is_multiple_of(self.granule as u64) {
                    a.free(ar, t2, off - t2);
                    ar += 1;
                }
                t2 = t2.max(off + len);
            }
            a
        };
        Ok(())
    }

    /// Checks that a probe for `hash` reaches slot `pos` (no empty slot between its home and
    /// it): otherwise the key would be silently invisible.
    pub(crate) fn check_reachable(&self, t: &Table, hash: u64, pos: u64, roff: u64) -> Result<()> {
        let mask = t.mask();
        let mut p = home_slot(hash, mask);
        while p != pos {
            if self.region.slot(t.slot_off(p)).load(Ordering::Acquire) == SLOT_EMPTY {
                return Err(Error::corrupted(
                    "record unreachable from its home slot (index damaged)",
                    roff,
                ));
            }
            p = (p + 1) & mask;
        }
        Ok(())
    }

    /// Checks the record a slot points to; returns its header and digest term.
    fn check_slot_record(
        &self,
        shard: usize,
        roff: u64,
        tag: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(RecHeader, u64)> {
        let loc = self.rec_at(roff, false, buf)?;
        let key = loc.key();
        let h = crate::key_hash(key);
        if h != loc.hdr.key_hash {
            return Err(Error::corrupted(
                "stored key hash differs from hash of key",
                roff,
            ));
        }
        if self.shard_of(h) != shard || tag_of(h) != tag {
            return Err(Error::corrupted(
                "record is indexed in the wrong shard or with a wrong tag",
                roff,
            ));
        }
        Ok((loc.hdr, crate::digest_term(key, loc.hdr.version)))
    }

    /// Adds (or with `add == false` removes) one record's contribution to counters and cells.
    #[inline]
    pub(crate) fn account(&self, t: &mut Table, hash: u64, hdr: &RecHeader, term: u64, add: bool) {
        let c = &self.cells[(hash >> (64 - DIGEST_CELL_BITS)) as usize];
        let bytes = hdr.key_len as u64 + hdr.value_len as u64 + hdr.subkeys_len as u64;
        // The caller holds the shard's write lock, and a cell lies in one shard: plain
        // load/store (no locked read-modify-write) is enough.
        let cell = |a: &AtomicU64, v: u64| {
            let x = a.load(Ordering::Relaxed);
            a.store(
                if add {
                    x.wrapping_add(v)
                } else {
                    x.wrapping_sub(v)
                },
                Ordering::Relaxed,
            );
        };
        cell(&c.count, 1);
        cell(&c.hash, term);
        let f = |a: &mut u64, v: u64| {
            *a = if add {
                a.wrapping_add(v)
            } else {
                a.wrapping_sub(v)
            };
        };
        let k = &mut t.k;
        f(
            if hdr.tombstone {
                &mut k.tombstones
            } else {
                &mut k.items
            },
            1,
        );
        f(&mut k.live_bytes, bytes);
        f(&mut k.used_bytes, hdr.block_bytes as u64);
        if hdr.expire_at != 0 {
            f(&mut k.expiring, 1);
        }
    }

    /// Starts loading the cache lines a write of key hash `h` and a record of `rec_bytes`
    /// touches first: its home index slot (found through the published directory entry, read
    /// without the shard lock: an entry replaced meanwhile only makes the hint useless), its
    /// digest cell and the first lines of where the shard's arena would place a new block.
    /// Lets those misses overlap the record encoding that the caller does next.
    #[inline]
    pub(crate) fn prefetch_for(&self, h: u64, rec_bytes: u64) {
        let si = self.shard_of(h);
        // Index-map mode writes records with pwrite, not through the mapping.
        let next = self.alloc.next_hint(si);
        if next != 0 && self.region.mode != Mode::IndexMap {
            let end = next + rec_bytes.min(PREFETCH_RECORD_BYTES_MAX);
            let mut line = next & !(CACHE_LINE_BYTES - 1);
            while line < end {
                self.region.prefetch(line);
                line += CACHE_LINE_BYTES;
            }
        }
        let doff = HEADER_BYTES + si as u64 * DIR_ENTRY_BYTES;
        if let Ok(w) = self.region.word(doff) {
            if let Some((toff, bits)) = dir_entry_parts(w.load(Ordering::Relaxed)) {
                let mask = (1u64 << bits.min(TABLE_BITS_MAX)) - 1;
                self.region.prefetch(toff + home_slot(h, mask) * SLOT_BYTES);
            }
        }
        crate::region::prefetch_ptr(&self.cells[(h >> (64 - DIGEST_CELL_BITS)) as usize]);
    }

    #[inline]
    pub(crate) fn shard_of(&self, h: u64) -> usize {
        ((h >> 48) as usize) >> (16 - self.shard_bits)
    }

    /// Locates the record at `off`: header and key only, or (with `full`) all its bytes with
    /// the checksum verified. Every length is checked before use.
    #[inline]
    pub(crate) fn rec_at<'a>(
        &'a self,
        off: u64,
        full: bool,
        buf: &'a mut Vec<u8>,
    ) -> Result<Loc<'a>> {
        if off < self.data_start || !off.is_multiple_of(self.granule as u64) {
            return Err(Error::corrupted(
                "index points outside the data area or off the granule",
                off,
            ));
        }
        let size = self.region.size();
        let mapped = self.region.mode != Mode::IndexMap;
        if mapped {
            let hdr = decode_rec_header(
                self.region.slice(off, REC_HEADER_BYTES)?,
                off,
                size,
                self.granule,
            )?;
            return self.loc_with(off, hdr, full, buf);
        }
        // Index-map mode: one speculative pread usually brings the whole small record.
        let want = (INDEX_MAP_READ_BYTES as u64)
            .min(size.saturating_sub(off))
            .max(REC_HEADER_BYTES as u64);
        self.region.pread_into(off, want as usize, buf)?;
        let hdr = decode_rec_header(buf, off, size, self.granule)?;
        let len = if full {
            hdr.used_bytes() as usize
        } else {
            REC_HEADER_BYTES + hdr.key_len as usize
        };
        if len > buf.len() {
            return self.loc_with(off, hdr, full, buf);
        }
        let bytes = &buf[..len];
        if full && rec_checksum(hdr.block_bytes, bytes) != hdr.checksum {
            return Err(Error::corrupted("record checksum mismatch", off));
        }
        Ok(Loc { hdr, bytes, full })
    }

    /// Like `rec_at` for a record whose header was already decoded and checked.
    #[inline]
    pub(crate) fn loc_with<'a>(
        &'a self,
        off: u64,
        hdr: RecHeader,
        full: bool,
        buf: &'a mut Vec<u8>,
    ) -> Result<Loc<'a>> {
        let len = if full {
            hdr.used_bytes() as usize
        } else {
            REC_HEADER_BYTES + hdr.key_len as usize
        };
        let bytes = if self.region.mode != Mode::IndexMap {
            self.region.slice(off, len)?
        } else {
            self.region.pread_into(off, len, buf)?;
            &buf[..]
        };
        if full && rec_checksum(hdr.block_bytes, bytes) != hdr.checksum {
            return Err(Error::corrupted("record checksum mismatch", off));
        }
        Ok(Loc { hdr, bytes, full })
    }

    /// Finds `key` (hash `h`) in table `t`.
    #[inline]
    pub(crate) fn probe(&self, t: &Table, h: u64, key: &[u8], buf: &mut Vec<u8>) -> Result<Probe> {
        let mask = t.mask();
        let tag = tag_of(h);
        let mut pos = home_slot(h, mask);
        let mut first_deleted = None;
        for _ in 0..=mask {
            let s = self.region.slot(t.slot_off(pos)).load(Ordering::Acquire);
            if s == SLOT_EMPTY {
                return Ok(Probe {
                    found: None,
                    hdr: None,
                    insert_at: first_deleted.unwrap_or(pos),
                });
            }
            if s == SLOT_DELETED {
                first_deleted.get_or_insert(pos);
            } else {
                let (roff, stag) = slot_parts(s);
                if stag == tag {
                    let loc = self.rec_at(roff, false, buf)?;
                    if loc.hdr.key_hash == h && loc.key() == key {
                        return Ok(Probe {
                            found: Some((pos, roff)),
                            hdr: Some(loc.hdr),
                            insert_at: pos,
                        });
                    }
                }
            }
            pos = (pos + 1) & mask;
        }
        match first_deleted {
            Some(p) => Ok(Probe {
                found: None,
                hdr: None,
                insert_at: p,
            }),
            None => Err(Error::corrupted("index table has no empty slot", t.off)),
        }
    }

    /// Grows or cleans table `t` of shard `si` when one more entry would pass the load limit.
    pub(crate) fn maybe_grow(&self, si: usize, t: &mut Table) -> Result<()> {
        let size = 1u64 << t.bits;
        if (t.used + t.deleted + 1) * 1000 <= size * TABLE_LOAD_PERMILLE_MAX {
            return Ok(());
        }
        // Double when live entries alone fill more than half the allowed load; otherwise
        // rebuild at the same size to drop deleted markers.
        let mut bits = t.bits;
        if (t.used + 1) * 2000 > size * TABLE_LOAD_PERMILLE_MAX {
            bits += 1;
        }
        if bits > TABLE_BITS_MAX {
            return Err(Error::LimitExceeded {
                limit: "index slots per shard (table_bits_max)",
                max: 1 << TABLE_BITS_MAX,
                actual: t.used + 1,
            });
        }
        let tb = table_bytes(bits, self.granule);
        let noff = self.alloc.take_tail(
            &self.region,
            si,
            tb,
            TABLE_ALIGN_BYTES.max(self.granule as u64),
        )?;
        self.region.zero(noff, tb)?;
        let nt = Table {
            off: noff,
            bits,
            used: 0,
            deleted: 0,
            k: t.k,
        };
        let nmask = nt.mask();
        let mut buf = Vec::new();
        let mut used = 0;
        for pos in 0..size {
            let s = self.region.slot(t.slot_off(pos)).load(Ordering::Acquire);
            if s == SLOT_EMPTY || s == SLOT_DELETED {
                continue;
            }
            let (roff, tag) = slot_parts(s);
            // Up to 16 table bits the home slot is a function of the tag alone, so most
            // growth never touches the records.
            let mut p = if bits <= TAG_BITS {
                tag & nmask
            } else {
                home_slot(self.rec_at(roff, false, &mut buf)?.hdr.key_hash, nmask)
            };
            while self.region.slot(nt.slot_off(p)).load(Ordering::Relaxed) != SLOT_EMPTY {
                p = (p + 1) & nmask;
            }
            self.region.slot(nt.slot_off(p)).store(s, Ordering::Relaxed);
            used += 1;
        }
        if self.sync {
            self.commit.flush(&self.region)?;
        }
        let doff = HEADER_BYTES + si as u64 * DIR_ENTRY_BYTES;
        self.region
            .word(doff)?
            .store(dir_entry(noff, bits), Ordering::Release);
        let old = (t.off, table_bytes(t.bits, self.granule));
        *t = Table {
            off: noff,
            bits,
            used,
            deleted: 0,
            k: t.k,
        };
        self.alloc.free(si, old.0, old.1);
        self.counters.grows.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now_unix_secs()
    }

    pub(crate) fn mode(&self) -> Mode {
        self.region.mode
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.region.path.as_deref()
    }

    pub(crate) fn sync(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.commit.flush(&self.region)
    }

    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        crate::sweeper::stop(self);
        if self.read_only || self.region.file.is_none() {
            return Ok(());
        }
        if let Some(p) = self
            .temporary
            .then_some(self.region.path.as_deref())
            .flatten()
        {
            let _ = std::fs::remove_file(p);
            return Ok(());
        }
        // In sync mode, clear the dirty flag only once everything before it is on disk.
        // Otherwise the page cache carries both (and open rebuilds everything anyway).
        if self.sync {
            self.region.sync_data()?;
        }
        self.region.put_u32(HDR_DIRTY as u64, 0)?;
        if self.sync {
            self.region.sync_data()?;
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> crate::types::Stats {
        let mut st = crate::types::Stats {
            shards: self.shards.len() as u64,
            ..Default::default()
        };
        for s in &self.shards {
            let t = s.t.read();
            st.index_slots += 1u64 << t.bits;
            st.items += t.k.items;
            st.tombstones += t.k.tombstones;
            st.live_bytes += t.k.live_bytes;
            st.used_bytes += t.k.used_bytes;
        }
        let size = self.region.size();
        st.file_size = size;
        st.free_bytes = self.alloc.free_bytes() + size.saturating_sub(self.alloc.tail());
        st.grows = self.counters.grows.load(Ordering::Relaxed);
        st.tail_bytes = self.alloc.tail();
        st.syncs = self.commit.flushes();
        st
    }

    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        crate::scan::verify_engine(self)
    }
}

/// The `what` of an error, for problem lists.
pub(crate) fn err_what(e: &Error) -> String {
    match e {
        Error::Corrupted { what, .. } => what.clone(),
        e => e.to_string(),
    }
}

pub(crate) fn verify_file(path: &Path) -> Result<VerifyReport> {
    let opts = OpenOptions::full_map(path)
        .read_only(true)
        .background(false);
    let (eng, problems) = Engine::open_inner(&opts, true)?;
    let mut rep = eng.verify()?;
    rep.was_clean = eng.was_clean;
    let mut all = problems;
    all.append(&mut rep.problems);
    all.dedup();
    rep.problems = all;
    Ok(rep)
}
