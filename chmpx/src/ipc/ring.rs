//! A single-producer/single-consumer byte ring of variable-length frames, placed in shared
//! memory so two processes can use it.
//!
//! ```text
//!  region: | RingHeader (128 B)                          | data (capacity B, power of two) |
//!            head u64 @0   (written by the producer only)
//!            tail u64 @64  (written by the consumer only)
//!            sleeping u32 @72 (set by the consumer before it sleeps; cleared by whoever wakes it)
//!  frame:  | len u32 | FRAME_TAG u32 | len bytes | pad to 8 |   (wraps around the end)
//! ```
//!
//! `head` and `tail` count bytes since creation (they never wrap in practice: 2^64 bytes), so
//! `head - tail` is the number of used bytes. The peer is another process that may be buggy or
//! dead: every value read from the shared header is checked, and a bad one is reported as
//! [`PopError::Corrupt`] / [`PushError::Corrupt`] instead of being trusted.
//!
//! Sleep protocol (Dekker-style, both sides use SeqCst fences): the consumer sets `sleeping`,
//! fences, and re-checks for data before it waits on its doorbell; the producer publishes
//! `head`, fences, and rings the doorbell only if it finds `sleeping` set (clearing it, so a
//! burst rings once). Either the consumer sees the data or the producer sees the flag.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Bytes taken by the ring header in front of the data area.
pub const RING_HEADER_BYTES: usize = 128;
/// Bytes of the per-frame prefix (length and tag).
pub const FRAME_PREFIX_BYTES: usize = 8;
/// Frames are padded to this many bytes so prefixes stay aligned.
pub const FRAME_ALIGN_BYTES: usize = 8;
/// Marks a frame prefix; a prefix without it means the ring holds garbage.
pub const FRAME_TAG: u32 = 0xD1C0_F4A3;
/// Smallest ring data area, bytes.
pub const RING_CAPACITY_MIN_BYTES: usize = 4096;

const HEAD_OFFSET: usize = 0;
const TAIL_OFFSET: usize = 64;
const SLEEPING_OFFSET: usize = 72;

/// Total bytes a frame of `len` payload bytes takes in the ring.
pub const fn framed_len(len: usize) -> usize {
    FRAME_PREFIX_BYTES + len.div_ceil(FRAME_ALIGN_BYTES) * FRAME_ALIGN_BYTES
}

/// A frame cut in two: (first `split` bytes, the rest).
pub type SplitFrame = (Vec<u8>, Vec<u8>);

/// Why a frame could not be pushed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Not enough free space now; the consumer has not caught up (backpressure).
    #[error("ring full: frame needs {needed} bytes, {free} free")]
    Full { needed: usize, free: usize },
    /// The frame can never fit this ring.
    #[error("frame of {needed} bytes exceeds ring capacity {capacity}")]
    TooLarge { needed: usize, capacity: usize },
    /// The shared header holds impossible values.
    #[error("ring corrupt: {0}")]
    Corrupt(String),
}

/// Why a frame could not be popped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    /// A frame longer than the caller accepts; it was skipped.
    #[error("frame of {len} bytes exceeds the limit {max}; skipped")]
    Oversized { len: usize, max: usize },
    /// The ring holds impossible values or a bad frame prefix; it cannot be read further.
    #[error("ring corrupt: {0}")]
    Corrupt(String),
}

/// A view of a ring in memory that this process maps. It does not own the memory.
#[derive(Debug)]
pub struct Ring {
    base: *mut u8,
    capacity: usize,
}

// SAFETY: all shared fields are atomics; data bytes are handed over by the head/tail protocol.
unsafe impl Send for Ring {}
// SAFETY: as above; the single-producer/single-consumer rule is the caller's to keep.
unsafe impl Sync for Ring {}

impl Ring {
    /// Total region size for a ring of `capacity` data bytes.
    pub const fn region_len(capacity: usize) -> usize {
        RING_HEADER_BYTES + capacity
    }

    /// Views the ring at `base`.
    ///
    /// # Safety
    /// `base` must be 64-byte aligned and valid for `region_len(capacity)` bytes for the life of
    /// the view, `capacity` a power of two of at least [`RING_CAPACITY_MIN_BYTES`]; at most one
    /// thread pushes and at most one thread pops at any time.
    pub unsafe fn from_raw(base: *mut u8, capacity: usize) -> Ring {
        assert!(capacity.is_power_of_two() && capacity >= RING_CAPACITY_MIN_BYTES);
        assert_eq!(base as usize % 64, 0);
        Ring { base, capacity }
    }

    /// Data capacity, bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: offset is within the header and 8-byte aligned (base is 64-aligned).
        unsafe { &*(self.base.add(offset) as *const AtomicU64) }
    }

    fn head(&self) -> &AtomicU64 {
        self.atomic_u64(HEAD_OFFSET)
    }

    fn tail(&self) -> &AtomicU64 {
        self.atomic_u64(TAIL_OFFSET)
    }

    fn sleeping(&self) -> &AtomicU32 {
        // SAFETY: offset is within the header and 4-byte aligned.
        unsafe { &*(self.base.add(SLEEPING_OFFSET) as *const AtomicU32) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data area follows the header within the region.
        unsafe { self.base.add(RING_HEADER_BYTES) }
    }

    fn write_at(&self, pos: u64, bytes: &[u8]) {
        let idx = (pos as usize) & (self.capacity - 1);
        let first = bytes.len().min(self.capacity - idx);
        // SAFETY: idx+first <= capacity, the rest (< capacity) goes to the start; the producer
        // owns these bytes until it publishes `head`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data().add(idx), first);
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(first),
                self.data(),
                bytes.len() - first,
            );
        }
    }

    fn read_at(&self, pos: u64, out: &mut [u8]) {
        let idx = (pos as usize) & (self.capacity - 1);
        let first = out.len().min(self.capacity - idx);
        // SAFETY: as in write_at; the consumer owns these bytes until it publishes `tail`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(idx), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.data(),
                out.as_mut_ptr().add(first),
                out.len() - first,
            );
        }
    }

    fn used(&self, head: u64, tail: u64) -> Result<usize, String> {
        let used = head.wrapping_sub(tail);
        if used > self.capacity as u64 {
            return Err(format!(
                "head {head} and tail {tail} are {used} bytes apart, capacity {}",
                self.capacity
            ));
        }
        Ok(used as usize)
    }

    /// Producer: appends one frame made of `parts` (concatenated). Does not ring any doorbell:
    /// call [`Ring::producer_should_ring`] after a push or a batch of pushes.
    pub fn push(&self, parts: &[&[u8]]) -> Result<(), PushError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let needed = framed_len(len);
        if needed > self.capacity || len > u32::MAX as usize {
            return Err(PushError::TooLarge {
                needed,
                capacity: self.capacity,
            });
        }
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Acquire);
        let used = self.used(head, tail).map_err(PushError::Corrupt)?;
        let free = self.capacity - used;
        if needed > free {
            return Err(PushError::Full { needed, free });
        }
        let mut prefix = [0u8; FRAME_PREFIX_BYTES];
        prefix[..4].copy_from_slice(&(len as u32).to_le_bytes());
        prefix[4..].copy_from_slice(&FRAME_TAG.to_le_bytes());
        self.write_at(head, &prefix);
        let mut pos = head + FRAME_PREFIX_BYTES as u64;
        for part in parts {
            self.write_at(pos, part);
            pos += part.len() as u64;
        }
        self.head().store(head + needed as u64, Ordering::Release);
        Ok(())
    }

    /// Free bytes now (for backpressure decisions).
    pub fn free(&self) -> usize {
        let head = self.head().load(Ordering::Acquire);
        let tail = self.tail().load(Ordering::Acquire);
        self.used(head, tail).map_or(0, |used| self.capacity - used)
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.head().load(Ordering::Acquire) == self.tail().load(Ordering::Acquire)
    }

    /// Consumer: validates the next frame's prefix; returns (position, payload length, framed
    /// length), `None` if empty. Skips (and reports) a frame longer than `len_max`.
    fn next_frame(&self, len_max: usize) -> Result<Option<(u64, usize, usize)>, PopError> {
        let tail = self.tail().load(Ordering::Relaxed);
        let head = self.head().load(Ordering::Acquire);
        let used = self.used(head, tail).map_err(PopError::Corrupt)?;
        if used == 0 {
            return Ok(None);
        }
        if used < FRAME_PREFIX_BYTES {
            return Err(PopError::Corrupt(format!(
                "{used} bytes published, less than a frame prefix"
            )));
        }
        let mut prefix = [0u8; FRAME_PREFIX_BYTES];
        self.read_at(tail, &mut prefix);
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let tag = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        if tag != FRAME_TAG {
            return Err(PopError::Corrupt(format!(
                "frame prefix tag {tag:#x} at offset {tail}, expected {FRAME_TAG:#x}"
            )));
        }
        let framed = framed_len(len);
        if framed > used {
            return Err(PopError::Corrupt(format!(
                "frame of {len} bytes at offset {tail} runs past the {used} published bytes"
            )));
        }
        if len > len_max {
            self.tail().store(tail + framed as u64, Ordering::Release);
            return Err(PopError::Oversized { len, max: len_max });
        }
        Ok(Some((tail, len, framed)))
    }

    /// Consumer: removes the next frame, `Ok(None)` if the ring is empty. Frames longer than
    /// `len_max` are skipped and reported, so one bad frame does not stop the stream.
    pub fn pop(&self, len_max: usize) -> Result<Option<Vec<u8>>, PopError> {
        let Some((tail, len, framed)) = self.next_frame(len_max)? else {
            return Ok(None);
        };
        let mut out = vec![0u8; len];
        self.read_at(tail + FRAME_PREFIX_BYTES as u64, &mut out);
        self.tail().store(tail + framed as u64, Ordering::Release);
        Ok(Some(out))
    }

    /// Consumer: like [`Ring::pop`], but returns the frame cut in two at `split` bytes (the
    /// first part shorter if the frame is), so a header and a body land in separate buffers
    /// without a second copy.
    pub fn pop_split(&self, split: usize, len_max: usize) -> Result<Option<SplitFrame>, PopError> {
        let Some((tail, len, framed)) = self.next_frame(len_max)? else {
            return Ok(None);
        };
        let first_len = split.min(len);
        let mut first = vec![0u8; first_len];
        let mut second = vec![0u8; len - first_len];
        let start = tail + FRAME_PREFIX_BYTES as u64;
        self.read_at(start, &mut first);
        self.read_at(start + first_len as u64, &mut second);
        self.tail().store(tail + framed as u64, Ordering::Release);
        Ok(Some((first, second)))
    }

    /// Consumer: announces it is about to sleep on its doorbell. Returns `true` if it may sleep
    /// (the ring is still empty); `false` means data arrived and the flag was withdrawn.
    pub fn prepare_sleep(&self) -> bool {
        self.sleeping().store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.is_empty() {
            return true;
        }
        self.sleeping().store(0, Ordering::Relaxed);
        false
    }

    /// Consumer: it is awake again (after its doorbell wait).
    pub fn awake(&self) {
        self.sleeping().store(0, Ordering::Relaxed);
    }

    /// Producer: after publishing, whether the consumer sleeps and needs its doorbell. Clears
    /// the flag so that a burst of frames rings once.
    pub fn producer_should_ring(&self) -> bool {
        fence(Ordering::SeqCst);
        self.sleeping().load(Ordering::Relaxed) != 0
            && self.sleeping().swap(0, Ordering::AcqRel) != 0
    }

    /// Test hook: writes raw bytes at the producer position and publishes them as if they
    /// were frames, so tests can feed garbage to a consumer.
    #[doc(hidden)]
    pub fn push_raw_for_test(&self, bytes: &[u8]) -> Result<(), PushError> {
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Acquire);
        let used = self.used(head, tail).map_err(PushError::Corrupt)?;
        if bytes.len() > self.capacity - used {
            return Err(PushError::Full {
                needed: bytes.len(),
                free: self.capacity - used,
            });
        }
        self.write_at(head, bytes);
        self.head()
            .store(head + bytes.len() as u64, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-byte aligned heap region standing in for shared memory.
    struct Region(Vec<u64>);

    impl Region {
        fn ring(&mut self, capacity: usize) -> Ring {
            assert!(self.0.len() * 8 >= Ring::region_len(capacity) + 64);
            let p = self.0.as_mut_ptr() as *mut u8;
            let aligned = ((p as usize + 63) & !63) as *mut u8;
            // SAFETY: aligned and large enough; single-threaded test.
            unsafe { Ring::from_raw(aligned, capacity) }
        }
    }

    fn region(capacity: usize) -> Region {
        Region(vec![0u64; (Ring::region_len(capacity) + 64) / 8])
    }

    #[test]
    fn frames_round_trip_across_the_wrap() {
        let mut r = region(4096);
        let ring = r.ring(4096);
        let mut expect = std::collections::VecDeque::new();
        for i in 0..2000usize {
            let body: Vec<u8> = (0..(i * 37) % 900).map(|b| (b + i) as u8).collect();
            loop {
                match ring.push(&[&body[..body.len() / 2], &body[body.len() / 2..]]) {
                    Ok(()) => break,
                    Err(PushError::Full { .. }) => {
                        let got = if i % 2 == 0 {
                            ring.pop(usize::MAX).unwrap().unwrap()
                        } else {
                            let (mut a, b) = ring.pop_split(48, usize::MAX).unwrap().unwrap();
                            assert!(a.len() <= 48 && (a.len() == 48 || b.is_empty()));
                            a.extend_from_slice(&b);
                            a
                        };
                        assert_eq!(got, expect.pop_front().unwrap());
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            expect.push_back(body);
        }
        while let Some(got) = ring.pop(usize::MAX).unwrap() {
            assert_eq!(got, expect.pop_front().unwrap());
        }
        assert!(expect.is_empty());
    }

    #[test]
    fn too_large_oversized_and_garbage_are_reported() {
        let mut r = region(4096);
        let ring = r.ring(4096);
        assert!(matches!(
            ring.push(&[&[0u8; 4096]]),
            Err(PushError::TooLarge { .. })
        ));
        ring.push(&[&[1u8; 100]]).unwrap();
        ring.push(&[&[2u8; 10]]).unwrap();
        assert_eq!(ring.pop(50), Err(PopError::Oversized { len: 100, max: 50 }));
        assert_eq!(ring.pop(50).unwrap().unwrap(), vec![2u8; 10]);
        ring.push_raw_for_test(&[0xff; 16]).unwrap();
        assert!(matches!(ring.pop(50), Err(PopError::Corrupt(_))));
    }

    #[test]
    fn sleep_flag_rings_once_per_sleep() {
        let mut r = region(4096);
        let ring = r.ring(4096);
        assert!(ring.prepare_sleep());
        ring.push(&[b"x"]).unwrap();
        assert!(ring.producer_should_ring());
        assert!(
            !ring.producer_should_ring(),
            "second push must not ring again"
        );
        assert!(!ring.prepare_sleep(), "data is waiting: must not sleep");
    }
}
