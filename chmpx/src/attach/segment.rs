//! The shared-memory segment of one attachment: a header and two rings.
//!
//! ```text
//! offset  field (all little-endian, accessed as atomics)
//!   0     magic u64 "DKCSEG01"
//!   8     layout version u32          12  role u32
//!  16     process pid u32             20  reserved u32
//!  24     counter u64 (the n in the object names)
//!  32     body_size_max u64           40  ring capacity u64 (both rings)
//!  56     state u32 (Offered, Accepted, Refused, ChmpxLeft, Detached)
//!  60     chmpx pid u32               64  chmpx generation u64
//!  72     attachment id u64           80  refuse reason u32
//!  88     placement changed u64: chmpx's CLOCK_MONOTONIC ns when its placement (map in force,
//!         pending map) last changed, or when it accepted this attachment if later; u64::MAX
//!         until chmpx writes it (a chmpx that never does is never taken as unchanged)
//! 256     ring "up"   (process -> chmpx): 128-byte ring header + capacity
//! 256+R   ring "down" (chmpx -> process)
//! ```
//! The process creates and fills the segment before it sends its hello; chmpx checks every
//! field against what it can derive itself (name, pid, counter, its own limits) before it maps
//! the rings.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::envelope::monotonic_now_ns;
use super::error::{AttachError, RefuseReason};
use super::wire::Role;
use crate::ipc::ring::{Ring, RING_CAPACITY_MIN_BYTES};
use crate::ipc::shm::SharedMemory;
use crate::ipc::IpcError;

/// Bytes of the segment header before the first ring.
pub const SEGMENT_HEADER_BYTES: usize = 256;
const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"DKCSEG01");
/// Version of the attachment layout: the segment header and the envelopes in its rings.
/// 2: envelope header v2 (56 bytes, `queued_ns`). A process built for another version is
/// refused at attach time (`Refused(Layout)`) rather than having each message refused.
const LAYOUT_VERSION: u32 = 2;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_ROLE: usize = 12;
const OFF_PID: usize = 16;
const OFF_COUNTER: usize = 24;
const OFF_BODY_MAX: usize = 32;
const OFF_CAPACITY: usize = 40;
const OFF_STATE: usize = 56;
const OFF_CHMPX_PID: usize = 60;
const OFF_GENERATION: usize = 64;
const OFF_ATTACH_ID: usize = 72;
const OFF_REFUSE: usize = 80;
const OFF_PLACEMENT_CHANGED: usize = 88;
const _: () = assert!(OFF_PLACEMENT_CHANGED + 8 <= SEGMENT_HEADER_BYTES);
const _: () = assert!(OFF_PLACEMENT_CHANGED.is_multiple_of(8));
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(64));

/// Where an attachment stands, as recorded in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Created by the process; hello sent, chmpx has not answered.
    Offered,
    /// chmpx accepted; the rings are live.
    Accepted,
    /// chmpx refused; see the refuse reason.
    Refused,
    /// chmpx left (shut down, restarted, or dropped this attachment): re-attach.
    ChmpxLeft,
    /// The process detached.
    Detached,
    /// A value no state has: the segment is damaged.
    Unknown(u32),
}

impl SegmentState {
    fn code(self) -> u32 {
        match self {
            SegmentState::Offered => 0,
            SegmentState::Accepted => 1,
            SegmentState::Refused => 2,
            SegmentState::ChmpxLeft => 3,
            SegmentState::Detached => 4,
            SegmentState::Unknown(c) => c,
        }
    }

    fn from_code(code: u32) -> SegmentState {
        match code {
            0 => SegmentState::Offered,
            1 => SegmentState::Accepted,
            2 => SegmentState::Refused,
            3 => SegmentState::ChmpxLeft,
            4 => SegmentState::Detached,
            c => SegmentState::Unknown(c),
        }
    }
}

/// Total segment size for rings of `capacity` bytes.
pub const fn segment_len(capacity: usize) -> usize {
    SEGMENT_HEADER_BYTES + 2 * Ring::region_len(capacity)
}

/// Why chmpx could not take a segment; `segment` is set when it is mapped well enough to
/// record a refusal in it.
#[derive(Debug)]
pub struct OpenFailure {
    pub segment: Option<Segment>,
    pub error: AttachError,
}

/// A mapped attachment segment with its two rings.
#[derive(Debug)]
pub struct Segment {
    shm: SharedMemory,
    up: Ring,
    down: Ring,
}

impl Segment {
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: off is inside the header, 4-aligned; the mapping is page-aligned.
        unsafe { &*(self.shm.as_ptr().add(off) as *const AtomicU32) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        // SAFETY: off is inside the header, 8-aligned; the mapping is page-aligned.
        unsafe { &*(self.shm.as_ptr().add(off) as *const AtomicU64) }
    }

    fn with_rings(shm: SharedMemory, capacity: usize) -> Segment {
        let base = shm.as_ptr();
        // SAFETY: the caller checked that the mapping holds segment_len(capacity) bytes and
        // that capacity is a power of two >= the ring minimum; offsets are 64-aligned.
        let (up, down) = unsafe {
            (
                Ring::from_raw(base.add(SEGMENT_HEADER_BYTES), capacity),
                Ring::from_raw(
                    base.add(SEGMENT_HEADER_BYTES + Ring::region_len(capacity)),
                    capacity,
                ),
            )
        };
        Segment { shm, up, down }
    }

    /// Process side: creates and fills a new segment (state Offered).
    pub fn create(
        name: &str,
        role: Role,
        pid: u32,
        counter: u64,
        body_size_max: usize,
        capacity: usize,
        mode: u32,
    ) -> Result<Segment, AttachError> {
        let shm = SharedMemory::create(name, segment_len(capacity), mode)?;
        let seg = Segment::with_rings(shm, capacity);
        seg.u32_at(OFF_VERSION)
            .store(LAYOUT_VERSION, Ordering::Relaxed);
        seg.u32_at(OFF_ROLE)
            .store(u32::from(role.code()), Ordering::Relaxed);
        seg.u32_at(OFF_PID).store(pid, Ordering::Relaxed);
        seg.u64_at(OFF_COUNTER).store(counter, Ordering::Relaxed);
        seg.u64_at(OFF_PLACEMENT_CHANGED)
            .store(u64::MAX, Ordering::Relaxed);
        seg.u64_at(OFF_BODY_MAX)
            .store(body_size_max as u64, Ordering::Relaxed);
        seg.u64_at(OFF_CAPACITY)
            .store(capacity as u64, Ordering::Relaxed);
        seg.set_state(SegmentState::Offered);
        // The magic goes last so that a reader never sees a half-filled header as valid.
        seg.u64_at(OFF_MAGIC)
            .store(SEGMENT_MAGIC, Ordering::Release);
        Ok(seg)
    }

    /// chmpx side: maps a process's segment and checks it against what chmpx knows.
    /// Returns the role on success; a layout problem is reported as `Refused(Layout)` or
    /// `Refused(BodyLimit)` so the caller can tell the process.
    pub fn open_checked(
        name: &str,
        pid: u32,
        counter: u64,
        body_size_max: usize,
    ) -> Result<(Segment, Role), Box<OpenFailure>> {
        let fail = |segment, error| Box::new(OpenFailure { segment, error });
        let shm =
            SharedMemory::open(name, SEGMENT_HEADER_BYTES).map_err(|e| fail(None, e.into()))?;
        let len = shm.len();
        // Read the header through a header-only view first: the rings are not trusted yet.
        let header_only = HeaderView(&shm);
        let refuse = |r| AttachError::Refused(r);
        if header_only.u64(OFF_MAGIC) != SEGMENT_MAGIC
            || header_only.u32(OFF_VERSION) != LAYOUT_VERSION
        {
            return Err(fail(None, refuse(RefuseReason::Layout)));
        }
        let capacity = header_only.u64(OFF_CAPACITY);
        let role = Role::from_code(header_only.u32(OFF_ROLE) as u8);
        let ok_capacity = capacity.is_power_of_two()
            && capacity >= RING_CAPACITY_MIN_BYTES as u64
            && capacity <= (len as u64) / 2
            && segment_len(capacity as usize) <= len;
        if !ok_capacity
            || role.is_none()
            || header_only.u32(OFF_PID) != pid
            || header_only.u64(OFF_COUNTER) != counter
        {
            return Err(fail(None, refuse(RefuseReason::Layout)));
        }
        let seg = Segment::with_rings(shm, capacity as usize);
        if seg.body_size_max() > body_size_max as u64 {
            return Err(fail(Some(seg), refuse(RefuseReason::BodyLimit)));
        }
        Ok((seg, role.unwrap_or(Role::Client)))
    }

    /// The ring process -> chmpx.
    pub fn up(&self) -> &Ring {
        &self.up
    }

    /// The ring chmpx -> process.
    pub fn down(&self) -> &Ring {
        &self.down
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// Current state.
    pub fn state(&self) -> SegmentState {
        SegmentState::from_code(self.u32_at(OFF_STATE).load(Ordering::Acquire))
    }

    /// Sets the state (Release: fields written before are visible to a reader of the state).
    pub fn set_state(&self, s: SegmentState) {
        self.u32_at(OFF_STATE).store(s.code(), Ordering::Release);
    }

    /// Moves Accepted -> `to`; returns false if the state was something else.
    pub fn leave_accepted(&self, to: SegmentState) -> bool {
        self.transition(SegmentState::Accepted, to)
    }

    /// The body limit the process declared.
    pub fn body_size_max(&self) -> u64 {
        self.u64_at(OFF_BODY_MAX).load(Ordering::Relaxed)
    }

    /// Moves `from` -> `to`; false if the state was something else.
    fn transition(&self, from: SegmentState, to: SegmentState) -> bool {
        self.u32_at(OFF_STATE)
            .compare_exchange(from.code(), to.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// chmpx side: records who accepted and moves Offered -> Accepted. False, and nothing
    /// accepted, if the offer is no longer open: the process withdrew it (gave up waiting,
    /// see [`Segment::withdraw`]) or it was answered already. Only the listener that read the
    /// hello calls this, once (the process never writes the fields set here).
    #[must_use]
    pub fn accept(&self, chmpx_pid: u32, generation: u64, attach_id: u64) -> bool {
        // Written before the state (Release in the exchange): a process that sees Accepted
        // sees them. Harmless if the exchange fails: nobody reads them then.
        self.u32_at(OFF_CHMPX_PID)
            .store(chmpx_pid, Ordering::Relaxed);
        self.u64_at(OFF_GENERATION)
            .store(generation, Ordering::Relaxed);
        self.u64_at(OFF_ATTACH_ID)
            .store(attach_id, Ordering::Relaxed);
        // Nothing chmpx queued for this process before now can be vouched for.
        self.u64_at(OFF_PLACEMENT_CHANGED)
            .store(monotonic_now_ns(), Ordering::SeqCst);
        self.transition(SegmentState::Offered, SegmentState::Accepted)
    }

    /// chmpx side: records that its placement changed at `now_ns` (never moves backwards).
    /// Called before the new placement is acted on, so a process that reads an older value
    /// after its own write knows that anything the change starts (merges, hand-offs) comes
    /// after that write.
    pub fn mark_placement_changed(&self, now_ns: u64) {
        self.u64_at(OFF_PLACEMENT_CHANGED)
            .fetch_max(now_ns, Ordering::SeqCst);
    }

    /// When chmpx's placement last changed (see the layout above); u64::MAX if unknown.
    pub fn placement_changed_ns(&self) -> u64 {
        self.u64_at(OFF_PLACEMENT_CHANGED).load(Ordering::SeqCst)
    }

    /// Process side: withdraws an offer chmpx has not answered (Offered -> Detached), so that
    /// a hello still in the accept queue cannot make chmpx accept a segment nobody will read.
    /// False if chmpx answered first: then [`Segment::state`] says how.
    #[must_use]
    pub fn withdraw(&self) -> bool {
        self.transition(SegmentState::Offered, SegmentState::Detached)
    }

    /// chmpx side: records a refusal.
    pub fn refuse(&self, reason: RefuseReason) {
        self.u32_at(OFF_REFUSE)
            .store(reason.code(), Ordering::Relaxed);
        self.set_state(SegmentState::Refused);
    }

    /// The refusal reason recorded by chmpx.
    pub fn refuse_reason(&self) -> RefuseReason {
        RefuseReason::from_code(self.u32_at(OFF_REFUSE).load(Ordering::Relaxed))
    }

    /// (chmpx pid, generation, attachment id) recorded at accept.
    pub fn accepted_by(&self) -> (u32, u64, u64) {
        (
            self.u32_at(OFF_CHMPX_PID).load(Ordering::Relaxed),
            self.u64_at(OFF_GENERATION).load(Ordering::Relaxed),
            self.u64_at(OFF_ATTACH_ID).load(Ordering::Relaxed),
        )
    }

    /// Whether dropping this mapping unlinks the segment name.
    pub fn set_unlink_on_drop(&mut self, on: bool) {
        self.shm.set_unlink_on_drop(on);
    }
}

/// Reads header fields of a mapping whose rings are not yet trusted.
struct HeaderView<'a>(&'a SharedMemory);

impl HeaderView<'_> {
    fn u32(&self, off: usize) -> u32 {
        // SAFETY: open() guaranteed at least SEGMENT_HEADER_BYTES; off is 4-aligned.
        unsafe { (*(self.0.as_ptr().add(off) as *const AtomicU32)).load(Ordering::Acquire) }
    }

    fn u64(&self, off: usize) -> u64 {
        // SAFETY: as above; off is 8-aligned.
        unsafe { (*(self.0.as_ptr().add(off) as *const AtomicU64)).load(Ordering::Acquire) }
    }
}

/// The tiny segment naming the chmpx that serves a cluster and ctlport, so that a second
/// chmpx refuses to start and processes can tell a restart (new generation).
#[derive(Debug)]
pub struct ChmpxMarker {
    shm: SharedMemory,
}

const MARKER_BYTES: usize = 64;
const MARKER_MAGIC: u64 = u64::from_le_bytes(*b"DKCCHMPX");

impl ChmpxMarker {
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: inside the 64-byte mapping, aligned.
        unsafe { &*(self.shm.as_ptr().add(off) as *const AtomicU32) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        // SAFETY: inside the 64-byte mapping, aligned.
        unsafe { &*(self.shm.as_ptr().add(off) as *const AtomicU64) }
    }

    /// Reads (pid, generation) of an existing marker, if there is a valid one.
    pub fn read(name: &str) -> Option<(u32, u64)> {
        let shm = SharedMemory::open(name, MARKER_BYTES).ok()?;
        let m = ChmpxMarker { shm };
        if m.u64_at(0).load(Ordering::Acquire) != MARKER_MAGIC {
            return None;
        }
        Some((
            m.u32_at(8).load(Ordering::Relaxed),
            m.u64_at(16).load(Ordering::Relaxed),
        ))
    }

    /// Creates the marker for this chmpx (the caller removed any stale one).
    pub fn create(name: &str, pid: u32, generation: u64, mode: u32) -> Result<Self, IpcError> {
        let shm = SharedMemory::create(name, MARKER_BYTES, mode)?;
        let m = ChmpxMarker { shm };
        m.u32_at(8).store(pid, Ordering::Relaxed);
        m.u64_at(16).store(generation, Ordering::Relaxed);
        m.u64_at(0).store(MARKER_MAGIC, Ordering::Release);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process segment and chmpx's mapping of it, under a name unique to this test.
    fn offered(tag: &str) -> (Segment, Segment) {
        let pid = std::process::id();
        let name = format!("/dkc.segtest.{tag}.{pid}");
        let _ = SharedMemory::unlink(&name);
        let capacity = RING_CAPACITY_MIN_BYTES;
        let process = Segment::create(&name, Role::Server, pid, 7, 1024, capacity, 0o600)
            .expect("create the segment");
        let (chmpx, role) = Segment::open_checked(&name, pid, 7, 1 << 20)
            .map_err(|f| f.error)
            .expect("chmpx maps it");
        assert_eq!(role, Role::Server);
        (process, chmpx)
    }

    /// The placement word: unknown (never "unchanged") until chmpx accepts, then the accept
    /// time, then only ever later.
    #[test]
    fn placement_word_starts_unknown_and_only_moves_forward() {
        let (process, chmpx) = offered("placement");
        assert_eq!(process.placement_changed_ns(), u64::MAX);
        let before = monotonic_now_ns();
        assert!(chmpx.accept(4242, 1, 9));
        let accepted = process.placement_changed_ns();
        assert!(accepted >= before && accepted <= monotonic_now_ns());
        chmpx.mark_placement_changed(accepted - 1);
        assert_eq!(process.placement_changed_ns(), accepted, "moved backwards");
        chmpx.mark_placement_changed(accepted + 5);
        assert_eq!(process.placement_changed_ns(), accepted + 5);
    }

    /// The race behind a never-read attachment: the process gives up waiting while chmpx is
    /// about to accept its hello. Exactly one side wins the Offered state.
    #[test]
    fn a_withdrawn_offer_cannot_be_accepted() {
        let (process, chmpx) = offered("withdraw");
        assert!(process.withdraw(), "nobody answered yet");
        assert!(
            !chmpx.accept(4242, 1, 9),
            "accepted after the process withdrew"
        );
        assert_eq!(process.state(), SegmentState::Detached);
        assert_eq!(chmpx.state(), SegmentState::Detached);
    }

    #[test]
    fn an_accepted_offer_cannot_be_withdrawn_and_says_who_accepted() {
        let (process, chmpx) = offered("accept");
        assert!(chmpx.accept(4242, 3, 9));
        assert!(!process.withdraw(), "withdrew an offer chmpx had accepted");
        assert_eq!(process.state(), SegmentState::Accepted);
        assert_eq!(process.accepted_by(), (4242, 3, 9));
    }
}
