//! The region: one address range reserved once (anonymous for memory mode, `MAP_SHARED` over
//! the file otherwise) so it never moves, the file beneath it grown with `fallocate`, and
//! byte access by offset. Every access is bounds-checked against the current size, so a bad
//! offset read from disk becomes `Corrupted`, never a SIGBUS or an out-of-bounds read.
//!
//! Index-map mode reads and writes records with `pread`/`pwrite` instead of the mapping; the
//! header, directory and index tables always go through the mapping.

use crate::error::{Error, Result};
use crate::options::Mode;
use parking_lot::Mutex;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct Region {
    base: *mut u8,
    reserve: u64,
    size: AtomicU64,
    grow_lock: Mutex<()>,
    pub(crate) file: Option<File>,
    pub(crate) path: Option<PathBuf>,
    pub(crate) mode: Mode,
    read_only: bool,
}

// SAFETY: the mapping is shared memory accessed only through bounds-checked offsets; which
// bytes may be written concurrently is governed by the engine's shard locks (see engine.rs).
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// Reserves `reserve` bytes. For files, maps the file; `size` is its current size.
    pub(crate) fn new(
        mode: Mode,
        file: Option<File>,
        path: Option<&Path>,
        reserve: u64,
        read_only: bool,
    ) -> Result<Region> {
        let size = match &file {
            Some(f) => f.metadata().map_err(|e| Error::io("fstat", path, e))?.len(),
            None => 0,
        };
        let reserve = reserve.max(size.next_multiple_of(4096));
        let prot = if read_only {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        let (flags, fd) = match &file {
            Some(f) => (libc::MAP_SHARED | libc::MAP_NORESERVE, f.as_raw_fd()),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
            ),
        };
        let len = usize::try_from(reserve).map_err(|_| {
            Error::InvalidArgument(format!(
                "file_size_max {reserve} too large for this platform"
            ))
        })?;
        // SAFETY: a fresh mapping at a kernel-chosen address; no existing memory is affected.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        if p == libc::MAP_FAILED {
            return Err(Error::io("mmap", path, std::io::Error::last_os_error()));
        }
        Ok(Region {
            base: p.cast(),
            reserve,
            size: AtomicU64::new(size),
            grow_lock: Mutex::new(()),
            file,
            path: path.map(|p| p.to_path_buf()),
            mode,
            read_only,
        })
    }

    #[inline]
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Grows the backing to at least `end` bytes (in steps, see limits).
    pub(crate) fn ensure_size(&self, end: u64) -> Result<()> {
        if end <= self.size() {
            return Ok(());
        }
        let _g = self.grow_lock.lock();
        let cur = self.size();
        if end <= cur {
            return Ok(());
        }
        if end > self.reserve {
            return Err(Error::LimitExceeded {
                limit: "file_size_max",
                max: self.reserve,
                actual: end,
            });
        }
        let need = end.next_multiple_of(4096).min(self.reserve);
        let step = (cur / 4).max(crate::limits::FILE_GROW_BYTES_MIN);
        let want = need
            .max((cur + step).next_multiple_of(4096))
            .min(self.reserve);
        // On a nearly full disk the growth step may not fit where the write itself would:
        // then grow by just what the write needs.
        let grown = match self.grow_file(cur, want) {
            Ok(()) => want,
            Err(e) if e.is_no_space() && need < want => {
                self.grow_file(cur, need)?;
                need
            }
            Err(e) => return Err(e),
        };
        if self.mode != Mode::IndexMap && !self.read_only {
            // Fault the new pages in with one call instead of one fault per page on first
            // store (memory and full-map modes); older kernels refuse the advice, which only
            // costs speed. Transparent huge pages were tried for memory mode and made writes
            // about 2x slower here (page zeroing/compaction in the fault path).
            // SAFETY: the range lies inside our mapping and the file now covers it.
            unsafe {
                libc::madvise(
                    self.base.add(cur as usize).cast(),
                    (grown - cur) as usize,
                    libc::MADV_POPULATE_WRITE,
                )
            };
        }
        self.size.store(grown, Ordering::Release);
        Ok(())
    }

    /// Extends the file from `cur` to `want` bytes with blocks reserved. A failure (ENOSPC:
    /// [`Error::NoSpace`]) leaves the logical size unchanged; the file may keep part of the
    /// range on some file systems, which is harmless (the tail is unused, and reopen takes the
    /// file's size as it is).
    fn grow_file(&self, cur: u64, want: u64) -> Result<()> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        // A full file system is asked first: on some (tmpfs) a fallocate that cannot succeed
        // allocates page after page and then gives them all back, which on a full disk would
        // be paid by every write. The check can only be pessimistic when part of the range
        // was kept by an earlier failed fallocate (some file systems keep it).
        let mut vfs = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: fstatvfs fills the struct it is given on success; read only then.
        if unsafe { libc::fstatvfs(f.as_raw_fd(), vfs.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful call above.
            let vfs = unsafe { vfs.assume_init() };
            // The widths of these fields differ between platforms.
            #[allow(clippy::useless_conversion)]
            let free = u64::from(vfs.f_bfree).saturating_mul(u64::from(vfs.f_frsize));
            if vfs.f_blocks > 0 && free < want - cur {
                return Err(Error::io(
                    "fallocate",
                    self.path.as_deref(),
                    std::io::Error::from_raw_os_error(libc::ENOSPC),
                ));
            }
        }
        // fallocate reserves blocks so a later store into the mapping cannot SIGBUS on a full
        // disk; fall back to ftruncate where it is unsupported.
        // SAFETY: plain syscall on our own fd.
        let r = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                0,
                cur as libc::off_t,
                (want - cur) as libc::off_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return f
                .set_len(want)
                .map_err(|e| Error::io("ftruncate", self.path.as_deref(), e));
        }
        Err(Error::io("fallocate", self.path.as_deref(), e))
    }

    /// Sets the size at open of a new memory image.
    pub(crate) fn set_logical_size(&self, s: u64) {
        self.size.store(s, Ordering::Release);
    }

    #[inline]
    fn check(&self, off: u64, len: usize) -> Result<()> {
        match off.checked_add(len as u64) {
            Some(e) if e <= self.size() => Ok(()),
            _ => Err(Error::corrupted(
                format!("range of {len} bytes outside file of {} bytes", self.size()),
                off,
            )),
        }
    }

    /// A view of `len` bytes at `off` through the mapping.
    #[inline]
    pub(crate) fn slice(&self, off: u64, len: usize) -> Result<&[u8]> {
        self.check(off, len)?;
        // SAFETY: bounds checked against the mapped, allocated size; the engine guarantees no
        // concurrent writer to these bytes while the returned borrow is used.
        Ok(unsafe { std::slice::from_raw_parts(self.base.add(off as usize), len) })
    }

    /// Copies `data` into the region at `off` (through the mapping, or pwrite in index-map
    /// mode when `through_file`).
    pub(crate) fn write(&self, off: u64, data: &[u8], through_file: bool) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.check(off, data.len())?;
        if through_file && self.mode == Mode::IndexMap {
            if let Some(f) = &self.file {
                return f
                    .write_all_at(data, off)
                    .map_err(|e| Error::io("pwrite", self.path.as_deref(), e));
            }
        }
        // SAFETY: bounds checked; the engine owns these bytes exclusively (newly allocated
        // block, or a table/header field under its lock).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(off as usize), data.len())
        };
        Ok(())
    }

    /// Zeroes `len` bytes at `off` through the mapping.
    pub(crate) fn zero(&self, off: u64, len: u64) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.check(off, len as usize)?;
        // SAFETY: as for `write`.
        unsafe { std::ptr::write_bytes(self.base.add(off as usize), 0, len as usize) };
        Ok(())
    }

    /// Reads `len` bytes at `off` into `buf` with pread (index-map mode record reads).
    pub(crate) fn pread_into(&self, off: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.check(off, len)?;
        buf.clear();
        buf.resize(len, 0);
        match &self.file {
            Some(f) => f
                .read_exact_at(buf, off)
                .map_err(|e| Error::io("pread", self.path.as_deref(), e)),
            None => {
                buf.copy_from_slice(self.slice(off, len)?);
                Ok(())
            }
        }
    }

    /// The 8-byte aligned word at `off` as an atomic (index slots, directory entries, header).
    #[inline]
    pub(crate) fn word(&self, off: u64) -> Result<&AtomicU64> {
        if !off.is_multiple_of(8) {
            return Err(Error::corrupted("misaligned 8-byte word", off));
        }
        self.check(off, 8)?;
        // SAFETY: aligned, in bounds, lives as long as self; AtomicU64 has u64's layout.
        Ok(unsafe { &*(self.base.add(off as usize) as *const AtomicU64) })
    }

    /// Unchecked-length variant used on table slots whose bounds were validated when the
    /// table was loaded (`off` must lie in a validated table).
    #[inline]
    pub(crate) fn slot(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= self.size());
        // SAFETY: the caller passes an offset inside a table validated against the size, and
        // the size never shrinks while open.
        unsafe { &*(self.base.add(off as usize) as *const AtomicU64) }
    }

    /// Asks the CPU to start loading the cache line at `off` (a hint: no fault, no effect on
    /// what any access returns). Offsets at or past the current size are ignored.
    #[inline]
    pub(crate) fn prefetch(&self, off: u64) {
        if off < self.size() {
            prefetch_ptr(self.base.wrapping_add(off as usize));
        }
    }

    /// Stores a u32 header field through the mapping.
    pub(crate) fn put_u32(&self, off: u64, v: u32) -> Result<()> {
        self.write(off, &v.to_le_bytes(), false)
    }

    /// Flushes file data to stable storage.
    pub(crate) fn sync_data(&self) -> Result<()> {
        match &self.file {
            Some(f) => f
                .sync_data()
                .map_err(|e| Error::io("fdatasync", self.path.as_deref(), e)),
            None => Ok(()),
        }
    }
}

/// A prefetch hint for the cache line holding `p`; a no-op on targets without one.
#[inline]
pub(crate) fn prefetch_ptr<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no borrow of it outlives the Region.
        unsafe {
            libc::munmap(self.base.cast(), self.reserve as usize);
        }
    }
}
