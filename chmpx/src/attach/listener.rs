//! chmpx side of the attach transport: the accept queue and one handle per attached process.
//!
//! Everything here is asynchronous (tokio): a message-queue descriptor is a file descriptor on
//! Linux, so each doorbell queue is registered with the runtime (`AsyncFd`) and one thread can
//! wait on every attachment at once. Nothing here ever blocks on a peer: a full ring towards a
//! process is reported as [`AttachError::Backpressure`] to the caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::cleanup::{cleanup_stale, CleanupReport};
use super::envelope::{monotonic_now_ns, Envelope, Header, ENVELOPE_HEADER_BYTES};
use super::error::{AttachError, RefuseReason};
use super::liveness::pid_alive;
use super::names::{AttachmentNames, ChmpxNames};
use super::options::AttachOptions;
use super::segment::{ChmpxMarker, OpenFailure, Segment, SegmentState};
use super::wire::{Doorbell, Hello, Role, DOORBELL_MSG_BYTES, HELLO_MSG_BYTES};
use crate::ipc::mq::{Access, MessageQueue, QueueShape};
use crate::ipc::ring::PopError;
use crate::ipc::shm::SharedMemory;

/// Most messages one `recv_batch` call returns when the caller asks for more.
pub const RECV_BATCH_MAX: usize = 1024;

/// The accept side of one chmpx (cluster + ctlport).
pub struct AttachListener {
    names: ChmpxNames,
    options: AttachOptions,
    accept_q: AsyncFd<MessageQueue>,
    _marker: ChmpxMarker,
    pid: u32,
    generation: u64,
    next_attach_id: u64,
    cleanup: CleanupReport,
}

fn runtime_err(e: std::io::Error) -> AttachError {
    AttachError::Runtime(format!("waiting on a queue with tokio failed: {e}"))
}

/// Registers a queue descriptor with the tokio reactor for readability.
fn register(q: MessageQueue) -> Result<AsyncFd<MessageQueue>, AttachError> {
    // SAFETY: the descriptor is the queue's own, stays open until the MessageQueue (owned by
    // the AsyncFd) is dropped, and as_raw_fd always returns that same descriptor.
    unsafe { AsyncFd::register_with_interest(q, Interest::READABLE) }.map_err(|e| {
        let (_, cause) = e.into_parts();
        AttachError::Runtime(format!("registering a queue with tokio failed: {cause}"))
    })
}

impl AttachListener {
    /// Creates the accept queue for `cluster` / `ctlport`, after removing what a dead chmpx or
    /// dead processes left behind. Must run inside a tokio runtime.
    pub fn bind(
        cluster: &str,
        ctlport: u16,
        options: AttachOptions,
    ) -> Result<AttachListener, AttachError> {
        options.validate()?;
        let names = ChmpxNames::new(cluster, ctlport)?;
        let pid = std::process::id();
        let marker_name = names.chmpx_segment();
        if let Some((other, _)) = ChmpxMarker::read(&marker_name) {
            if other != pid && pid_alive(other) {
                return Err(AttachError::AlreadyRunning {
                    accept_queue: names.accept_queue(),
                    pid: other,
                });
            }
        }
        SharedMemory::unlink(&marker_name)?;
        MessageQueue::unlink(&names.accept_queue())?;
        let cleanup = cleanup_stale(&names);
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let marker = ChmpxMarker::create(&marker_name, pid, generation, options.mode)?;
        let shape = QueueShape {
            maxmsg: options.accept_queue_depth,
            msgsize: HELLO_MSG_BYTES as u32,
        };
        let q = MessageQueue::create(
            &names.accept_queue(),
            shape,
            options.mode,
            Access::Read,
            true,
        )?;
        let accept_q = register(q)?;
        tracing::info!(queue = %names.accept_queue(), ?cleanup, "attach listener bound");
        Ok(AttachListener {
            names,
            options,
            accept_q,
            _marker: marker,
            pid,
            generation,
            next_attach_id: 1,
            cleanup,
        })
    }

    /// The accept queue's name.
    pub fn accept_queue_name(&self) -> &str {
        self.accept_q.get_ref().name()
    }

    /// This chmpx run's generation (changes at every start).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What the start-up scan removed or told to re-attach.
    pub fn cleanup_report(&self) -> &CleanupReport {
        &self.cleanup
    }

    /// Waits for the next process to attach. Malformed or impossible hellos are logged and
    /// skipped; this only fails if the runtime does.
    pub async fn accept(&mut self) -> Result<AttachedProcess, AttachError> {
        loop {
            let mut buf = [0u8; HELLO_MSG_BYTES];
            let n = {
                let mut guard = self.accept_q.readable().await.map_err(runtime_err)?;
                match guard.get_inner().receive(&mut buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => {
                        guard.clear_ready();
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!("accept queue: {e}");
                        guard.clear_ready();
                        continue;
                    }
                }
            };
            let hello = match Hello::decode(&buf[..n]) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("garbage on the accept queue refused: {e}");
                    continue;
                }
            };
            match self.admit(hello) {
                Ok(p) => return Ok(p),
                Err(e) => tracing::warn!(pid = hello.pid, "attach refused: {e}"),
            }
        }
    }

    fn admit(&mut self, hello: Hello) -> Result<AttachedProcess, AttachError> {
        if !pid_alive(hello.pid) {
            return Err(AttachError::ProcessGone { pid: hello.pid });
        }
        let names = self.names.attachment(hello.pid, hello.counter);
        let tell = |down: &str, d: Doorbell| {
            if let Ok(q) = MessageQueue::open(down, Access::Write, true) {
                let _ = q.send(&d.encode());
            }
        };
        let (seg, role) = match Segment::open_checked(
            &names.segment,
            hello.pid,
            hello.counter,
            self.options.body_size_max,
        ) {
            Ok(x) => x,
            Err(failure) => {
                let OpenFailure { segment, error } = *failure;
                if let (Some(seg), AttachError::Refused(r)) = (&segment, &error) {
                    seg.refuse(*r);
                    tell(&names.down_queue, Doorbell::Refused);
                }
                return Err(error);
            }
        };
        if role != hello.role {
            seg.refuse(RefuseReason::Layout);
            tell(&names.down_queue, Doorbell::Refused);
            return Err(AttachError::Refused(RefuseReason::Layout));
        }
        if seg.state() != SegmentState::Offered {
            // A repeated hello for an attachment already accepted (the process resent it while
            // we were slow): nothing to do.
            return Err(AttachError::Runtime(format!(
                "hello for {} in state {:?} ignored",
                names.segment,
                seg.state()
            )));
        }
        let up_q = MessageQueue::open(&names.up_queue, Access::Read, true)?;
        let down_q = MessageQueue::open(&names.down_queue, Access::Write, true)?;
        for q in [&up_q, &down_q] {
            if q.shape()?.msgsize as usize != DOORBELL_MSG_BYTES {
                seg.refuse(RefuseReason::Layout);
                let _ = down_q.send(&Doorbell::Refused.encode());
                return Err(AttachError::Refused(RefuseReason::Layout));
            }
        }
        let id = self.next_attach_id;
        if !seg.accept(self.pid, self.generation, id) {
            // The process gave up waiting and withdrew the offer between our state check and
            // now: accepting anyway would leave an attachment that nobody reads.
            return Err(AttachError::Runtime(format!(
                "hello for {} withdrawn by the process before chmpx answered (state {:?}); \
                 ignored",
                names.segment,
                seg.state()
            )));
        }
        self.next_attach_id += 1;
        down_q.send(&Doorbell::Accepted.encode())?;
        let up_q = register(up_q)?;
        tracing::info!(id, pid = hello.pid, ?role, "process attached");
        Ok(AttachedProcess {
            shared: Arc::new(Shared {
                id,
                pid: hello.pid,
                role,
                body_size_max: seg.body_size_max() as usize,
                names,
                seg,
                down_q,
                producer: Mutex::new(()),
                closed: AtomicBool::new(false),
            }),
            up_q,
            liveness: self.options.liveness_interval(),
            last_check: Instant::now(),
            spin: Duration::from_micros(self.options.listener_spin_wait_us),
            active: false,
            timer: Box::pin(tokio::time::sleep(self.options.liveness_interval())),
        })
    }
}

/// One attached process, as chmpx sees it. Receive with [`AttachedProcess::recv_batch`] (one
/// task), send from anywhere through [`AttachedProcess::sender`].
pub struct AttachedProcess {
    shared: Arc<Shared>,
    up_q: AsyncFd<MessageQueue>,
    liveness: Duration,
    last_check: Instant,
    spin: Duration,
    active: bool,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// A cloneable sending handle to one attached process.
#[derive(Clone)]
pub struct AttachSender {
    shared: Arc<Shared>,
}

struct Shared {
    id: u64,
    pid: u32,
    role: Role,
    body_size_max: usize,
    names: AttachmentNames,
    seg: Segment,
    down_q: MessageQueue,
    producer: Mutex<()>,
    closed: AtomicBool,
}

impl AttachedProcess {
    /// The id chmpx gave this attachment (unique within this chmpx run).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The attached process's pid.
    pub fn pid(&self) -> u32 {
        self.shared.pid
    }

    /// The attached process's role.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// A handle to send to this process from other tasks.
    pub fn sender(&self) -> AttachSender {
        AttachSender {
            shared: self.shared.clone(),
        }
    }

    /// Sends one message to the process; never blocks (see [`AttachSender::send`]).
    pub fn send(&self, env: &Envelope) -> Result<(), AttachError> {
        self.shared.send(env)
    }

    /// Waits for messages from the process and returns up to `max` of them (at least one).
    /// Malformed messages are logged and skipped. Fails with `ProcessGone` (objects removed)
    /// when the process dies, `Detached` when it leaves, `RingCorrupt` when its ring cannot
    /// be read; in every case drop this handle.
    pub async fn recv_batch(&mut self, max: usize) -> Result<Vec<Envelope>, AttachError> {
        let max = max.clamp(1, RECV_BATCH_MAX);
        let shared = self.shared.clone();
        let ring = shared.seg.up();
        loop {
            if shared.closed.load(Ordering::Acquire) {
                return Err(AttachError::ProcessGone { pid: shared.pid });
            }
            let batch = shared.pop(max)?;
            if !batch.is_empty() {
                self.active = true;
                return Ok(batch);
            }
            if shared.seg.state() == SegmentState::Detached {
                shared.remove_objects();
                return Err(AttachError::Detached);
            }
            if self.last_check.elapsed() >= self.liveness {
                self.last_check = Instant::now();
                if !pid_alive(shared.pid) {
                    shared.remove_objects();
                    tracing::info!(
                        id = shared.id,
                        pid = shared.pid,
                        "attached process died; cleaned up"
                    );
                    return Err(AttachError::ProcessGone { pid: shared.pid });
                }
            }
            // After activity, poll briefly before sleeping: the next batch is often already on
            // its way, and catching it here saves the process a doorbell and us a wake-up.
            // Bounded by listener_spin_wait_us, and never on an idle attachment.
            //
            // The poll yields to the runtime at every turn: a blocking spin here would hold the
            // thread, so the router could not route the batch just returned, nor could other
            // attachments' tasks read their rings, until the spin ended (on a one-thread
            // runtime every message then waited the whole spin).
            if std::mem::take(&mut self.active) {
                let until = Instant::now() + self.spin;
                while ring.is_empty() && Instant::now() < until {
                    // Give the CPU to a process that may be about to answer (2 cores, many
                    // processes), then let the runtime run other tasks and poll its queues.
                    std::thread::yield_now();
                    tokio::task::yield_now().await;
                }
                if !ring.is_empty() {
                    continue;
                }
            }
            if !ring.prepare_sleep() {
                continue;
            }
            // One timer per attachment, re-armed only when it fired: cheaper than a fresh
            // timeout per sleep.
            if self.timer.is_elapsed() {
                let next = tokio::time::Instant::now() + self.liveness;
                self.timer.as_mut().reset(next);
            }
            let waited = tokio::select! {
                r = self.up_q.readable() => Ok(r),
                _ = &mut self.timer => Err(()),
            };
            ring.awake();
            match waited {
                Ok(Ok(mut guard)) => {
                    let mut buf = [0u8; DOORBELL_MSG_BYTES];
                    loop {
                        match guard.get_inner().receive(&mut buf) {
                            Ok(Some(n)) => match Doorbell::decode(&buf[..n]) {
                                Some(_) => {}
                                None => tracing::warn!(
                                    id = shared.id,
                                    bytes = n,
                                    "garbage on a doorbell queue ignored"
                                ),
                            },
                            Ok(None) => {
                                guard.clear_ready();
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(id = shared.id, "doorbell queue: {e}");
                                guard.clear_ready();
                                break;
                            }
                        }
                    }
                }
                Ok(Err(e)) => return Err(runtime_err(e)),
                Err(_timeout) => {}
            }
        }
    }
}

/// One attached process read by polling, with no task and no reactor registration: the
/// daemon's routing thread pops every ring itself and waits on the doorbell descriptors of all
/// of them at once (see `daemon::run`). Made by [`AttachedProcess::into_polled`].
pub struct PolledProcess {
    shared: Arc<Shared>,
    up_q: MessageQueue,
    liveness: Duration,
    last_check: Instant,
}

impl AttachedProcess {
    /// Turns this handle into one read by polling: the doorbell queue leaves the runtime's
    /// reactor, so a doorbell wakes only whoever polls [`PolledProcess::doorbell_fd`].
    pub fn into_polled(self) -> PolledProcess {
        PolledProcess {
            shared: self.shared,
            up_q: self.up_q.into_inner(),
            liveness: self.liveness,
            last_check: self.last_check,
        }
    }
}

impl PolledProcess {
    /// The id chmpx gave this attachment.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The attached process's role.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// A handle to send to this process.
    pub fn sender(&self) -> AttachSender {
        AttachSender {
            shared: self.shared.clone(),
        }
    }

    /// Takes up to `max` waiting messages without waiting (an empty vector when there are
    /// none). Fails as [`AttachedProcess::recv_batch`] does, and then the handle must be
    /// dropped. `now` paces the liveness check of the process.
    pub fn try_recv(&mut self, max: usize, now: Instant) -> Result<Vec<Envelope>, AttachError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(AttachError::ProcessGone { pid: shared.pid });
        }
        let batch = shared.pop(max.clamp(1, RECV_BATCH_MAX))?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        if shared.seg.state() == SegmentState::Detached {
            shared.remove_objects();
            return Err(AttachError::Detached);
        }
        if now.saturating_duration_since(self.last_check) >= self.liveness {
            self.last_check = now;
            if !pid_alive(shared.pid) {
                shared.remove_objects();
                tracing::info!(
                    id = shared.id,
                    pid = shared.pid,
                    "attached process died; cleaned up"
                );
                return Err(AttachError::ProcessGone { pid: shared.pid });
            }
        }
        Ok(batch)
    }

    /// Whether a message waits in the process's ring (two atomic loads; no syscall).
    pub fn has_pending(&self) -> bool {
        !self.shared.seg.up().is_empty()
    }

    /// How often the process's liveness must be checked while nothing arrives.
    pub fn liveness_interval(&self) -> Duration {
        self.liveness
    }

    /// Announces that the poller is about to sleep: `true` if it may (nothing waits), `false`
    /// if a message arrived meanwhile. Follow a `true` with [`PolledProcess::awake`].
    pub fn prepare_sleep(&self) -> bool {
        self.shared.seg.up().prepare_sleep()
    }

    /// The poller is awake again.
    pub fn awake(&self) {
        self.shared.seg.up().awake();
    }

    /// The doorbell queue's descriptor (readable when the process rang).
    pub fn doorbell_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.up_q.as_raw_fd()
    }

    /// Empties the doorbell queue (non-blocking), so its descriptor stops being readable.
    pub fn drain_doorbells(&self) {
        let mut buf = [0u8; DOORBELL_MSG_BYTES];
        loop {
            match self.up_q.receive(&mut buf) {
                Ok(Some(n)) => {
                    if Doorbell::decode(&buf[..n]).is_none() {
                        tracing::warn!(
                            id = self.shared.id,
                            bytes = n,
                            "garbage on a doorbell queue ignored"
                        );
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(id = self.shared.id, "doorbell queue: {e}");
                    break;
                }
            }
        }
    }
}

impl std::fmt::Debug for PolledProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledProcess")
            .field("id", &self.shared.id)
            .field("pid", &self.shared.pid)
            .finish()
    }
}

impl AttachSender {
    /// The attachment's id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Sends one message; `Backpressure` when the process's ring is full (it is not reading).
    /// Every message goes out with a queue time: `env.queued_ns` if set (when chmpx took it
    /// in), else now ([`crate::attach::envelope::monotonic_now_ns`]). The same holds for every
    /// way of sending below.
    pub fn send(&self, env: &Envelope) -> Result<(), AttachError> {
        self.shared.send(env)
    }

    /// Sends as many of `envs` as fit, with one doorbell; returns how many were sent. Zero
    /// sent is reported as `Backpressure`.
    pub fn send_many(&self, envs: &[Envelope]) -> Result<usize, AttachError> {
        self.shared.send_many(envs)
    }

    /// Puts one message in the process's ring without ringing its doorbell; call
    /// [`AttachSender::ring`] after a batch (one wake-up per batch instead of per message).
    pub fn push_quiet(&self, env: &Envelope) -> Result<(), AttachError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(AttachError::ProcessGone {
                pid: self.shared.pid,
            });
        }
        let _g = self
            .shared
            .producer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.shared.push_one(env)
    }

    /// Rings the process's doorbell if it sleeps (after [`AttachSender::push_quiet`]).
    pub fn ring(&self) -> Result<(), AttachError> {
        self.shared.ring_doorbell()
    }

    /// Records in the process's segment that chmpx's placement changed at `now_ns` (see
    /// [`crate::attach::FLAG_SOLE_OWNER`]).
    pub fn mark_placement_changed(&self, now_ns: u64) {
        self.shared.seg.mark_placement_changed(now_ns);
    }

    /// Whether the process still lives (and has not detached).
    pub fn is_alive(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire) && pid_alive(self.shared.pid)
    }
}

impl Shared {
    fn pop(&self, max: usize) -> Result<Vec<Envelope>, AttachError> {
        let ring = self.seg.up();
        let mut out = Vec::new();
        while out.len() < max {
            match ring.pop_split(
                ENVELOPE_HEADER_BYTES,
                ENVELOPE_HEADER_BYTES + self.body_size_max,
            ) {
                Ok(Some((head, body))) => {
                    match Envelope::from_parts(&head, body, self.body_size_max) {
                        // A process has no say in the queue time of the message chmpx will
                        // deliver: it is stamped when chmpx puts it in the receiver's ring.
                        Ok(env) => out.push(Envelope {
                            queued_ns: 0,
                            ..env
                        }),
                        Err(e) => {
                            tracing::warn!(id = self.id, pid = self.pid, "message refused: {e}")
                        }
                    }
                }
                Ok(None) => break,
                Err(PopError::Oversized { len, max }) => {
                    tracing::warn!(id = self.id, len, max, "oversized message refused");
                }
                Err(PopError::Corrupt(why)) => {
                    tracing::warn!(id = self.id, pid = self.pid, "ring corrupt: {why}");
                    if out.is_empty() {
                        return Err(AttachError::RingCorrupt(why));
                    }
                    // Hand out what was good; the next call reports the corruption.
                    break;
                }
            }
        }
        Ok(out)
    }

    fn push_one(&self, env: &Envelope) -> Result<(), AttachError> {
        if env.body.len() > self.body_size_max {
            return Err(AttachError::BodyTooLarge {
                len: env.body.len(),
                max: self.body_size_max,
            });
        }
        // The queue time of this direction: the process measures from it how long the
        // message waited on this host. A stamp the daemon already set (when it took the
        // message in, earlier) is kept; what processes send never carries one (see `pop`).
        let queued_ns = match env.queued_ns {
            0 => monotonic_now_ns(),
            earlier => earlier,
        };
        let header = Header {
            queued_ns,
            ..env.header()
        }
        .encode();
        self.seg
            .down()
            .push(&[&header, &env.body])
            .map_err(AttachError::from_push)
    }

    fn ring_doorbell(&self) -> Result<(), AttachError> {
        if self.seg.down().producer_should_ring() {
            self.down_q.send(&Doorbell::Data.encode())?;
        }
        Ok(())
    }

    fn send(&self, env: &Envelope) -> Result<(), AttachError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AttachError::ProcessGone { pid: self.pid });
        }
        let _g = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        self.push_one(env)?;
        self.ring_doorbell()
    }

    fn send_many(&self, envs: &[Envelope]) -> Result<usize, AttachError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AttachError::ProcessGone { pid: self.pid });
        }
        let _g = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        let mut sent = 0;
        for env in envs {
            match self.push_one(env) {
                Ok(()) => sent += 1,
                Err(AttachError::Backpressure { .. }) if sent > 0 => break,
                Err(e) => {
                    if sent > 0 {
                        self.ring_doorbell()?;
                    }
                    return Err(e);
                }
            }
        }
        self.ring_doorbell()?;
        Ok(sent)
    }

    /// Removes the process's objects (it is dead or gone: nobody else will).
    fn remove_objects(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for r in [
            SharedMemory::unlink(&self.names.segment),
            MessageQueue::unlink(&self.names.up_queue),
            MessageQueue::unlink(&self.names.down_queue),
        ] {
            if let Err(e) = r {
                tracing::warn!(id = self.id, "cleanup: {e}");
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if pid_alive(self.pid) {
            // chmpx lets go of a live process (shutdown, corrupt ring): ask it to re-attach.
            if self.seg.leave_accepted(SegmentState::ChmpxLeft) {
                let _ = self.down_q.send(&Doorbell::Reattach.encode());
            }
        } else {
            self.remove_objects();
        }
    }
}

impl std::fmt::Debug for AttachedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedProcess")
            .field("id", &self.shared.id)
            .field("pid", &self.shared.pid)
            .field("role", &self.shared.role)
            .finish()
    }
}
