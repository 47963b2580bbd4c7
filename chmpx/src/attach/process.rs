//! Process side of the attach transport: what dkc-server and dkc-client call.
//!
//! One [`Attachment`] per process and chmpx (clone it freely: clones share one connection).
//! There is no background thread: the calling threads drive the ring. A thread waiting for a
//! response (or for a request, in `recv`) takes the "consumer" role if nobody has it, reads the
//! chmpx -> process ring, hands each message to its owner (responses by `msg_id`, requests and
//! events to the incoming queue), and gives the role back when its own answer is in; the others
//! sleep on a condition variable. This avoids a thread hop on every response.
//!
//! Restart handling: while waiting, the consumer checks every `liveness_check_interval_ms`
//! that chmpx lives (its pid, and the state word chmpx sets when it leaves). When chmpx is gone
//! every request in flight fails with [`AttachError::ChmpxRestarted`]; the next call attaches
//! again (new objects, handshake, backoff up to its own timeout).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::envelope::{target_count, Envelope, Header, Kind, Route, ENVELOPE_HEADER_BYTES};
use super::error::AttachError;
use super::liveness::pid_alive;
use super::names::ChmpxNames;
use super::options::AttachOptions;
use super::segment::{Segment, SegmentState};
use super::wire::{Doorbell, Hello, Role, DOORBELL_MSG_BYTES};
use crate::ipc::mq::{Access, MessageQueue, QueueShape};
use crate::ipc::ring::PopError;
use crate::ipc::IpcError;

mod deferred;
mod fanout;
pub use deferred::flush_deferred_doorbells;
pub use fanout::{FanoutProgress, PendingFanout, FANOUT_RESPONSES_MAX};

/// Frames taken from the ring per pass before they are handed out.
const POP_BATCH_MAX: usize = 64;
/// A receiver that read the ring serves the requests it queued itself; one sleeping receiver
/// is woken per this many requests beyond the first (a longer queue is shared out). Others
/// asleep in `recv` wake at the latest after one liveness interval anyway.
const REQUESTS_PER_RECEIVER_WOKEN: usize = 4;
/// First pause while waiting for room in a full ring.
const FULL_RING_PAUSE_MIN: Duration = Duration::from_micros(20);
/// Longest pause while waiting for room in a full ring.
const FULL_RING_PAUSE_MAX: Duration = Duration::from_millis(2);

/// Counter in object names, unique per process across all attachments it makes.
static NEXT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process's attachment to its local chmpx.
#[derive(Clone)]
pub struct Attachment {
    inner: Arc<Inner>,
}

struct Inner {
    names: ChmpxNames,
    role: Role,
    options: AttachOptions,
    conn: Mutex<Option<Arc<Conn>>>,
    dispatch: Mutex<Dispatch>,
    /// Threads waiting for their own answer (or for the consumer role, or the async pump).
    cv: Condvar,
    /// Threads in [`Attachment::recv`] waiting for a request: woken one per queued request
    /// (and one when the consumer role is free), not all at once. A server runs several
    /// workers in `recv`; waking all of them for every message costs a context switch each.
    recv_cv: Condvar,
    next_msg_id: AtomicU64,
    next_epoch: AtomicU64,
    reattaches: AtomicU64,
    pump_started: AtomicBool,
    /// Answers for async callers, handed from the pump thread to a task on the callers'
    /// runtime (see [`Handoff`]).
    handoff: Arc<Handoff>,
    /// Requests whose response goes to an async caller. Raised under the dispatch lock (so
    /// the pump, which reads it under that lock, never sleeps past a new one); lowered
    /// without it when an answer arrives, so that a completed async request takes no lock.
    async_pending: AtomicUsize,
}

/// One live attachment (one set of objects, one handshake).
struct Conn {
    epoch: u64,
    seg: Segment,
    up_q: MessageQueue,
    down_q: MessageQueue,
    chmpx_pid: u32,
    attach_id: u64,
    producer: Mutex<()>,
    broken: AtomicBool,
    /// A doorbell chmpx is owed and not sent yet (`defer_doorbell`, see `deferred.rs`).
    doorbell_owed: AtomicBool,
    /// Frames pushed since the owed doorbell (it is sent at `DEFERRED_DOORBELL_FRAMES_MAX`).
    owed_frames: AtomicU32,
}

#[derive(Default)]
struct Dispatch {
    pending: HashMap<u64, Slot>,
    incoming: VecDeque<Envelope>,
    consumer_busy: bool,
    /// Async callers waiting for a request or event (see `recv_async`).
    incoming_waiters: VecDeque<oneshot::Sender<Envelope>>,
    /// Threads asleep on the condition variable: with none, a change needs no `notify_all`
    /// (each one is a futex call, paid per request and per batch otherwise).
    sleepers: usize,
    /// Threads asleep on `recv_cv` (in `recv`).
    recv_sleepers: usize,
}

enum Slot {
    /// A blocking caller will collect the result from the slot.
    Waiting {
        epoch: u64,
    },
    /// An async caller awaits the result on a channel.
    Notify {
        epoch: u64,
        tx: oneshot::Sender<Result<Envelope, AttachError>>,
    },
    Done(Result<Envelope, AttachError>),
    /// A fan-out request (see [`Attachment::submit_fanout`]): chmpx's count notice and every
    /// response are collected until the caller has enough.
    Fanout {
        epoch: u64,
        progress: FanoutProgress,
        /// The connection was lost while the request was in flight.
        lost: bool,
    },
}

/// A request sent and not yet answered (see [`Attachment::submit`]).
pub struct PendingResponse {
    inner: Arc<Inner>,
    msg_id: u64,
    done: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another thread while holding the lock leaves plain data behind: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Attachment {
    /// Attaches to the chmpx of `cluster` / `ctlport`, waiting up to `connect_timeout_ms` for
    /// it to answer.
    pub fn connect(
        cluster: &str,
        ctlport: u16,
        role: Role,
        options: AttachOptions,
    ) -> Result<Attachment, AttachError> {
        options.validate()?;
        let names = ChmpxNames::new(cluster, ctlport)?;
        let deadline = Instant::now() + Duration::from_millis(options.connect_timeout_ms);
        let inner = Arc::new(Inner {
            names,
            role,
            options,
            conn: Mutex::new(None),
            dispatch: Mutex::new(Dispatch::default()),
            cv: Condvar::new(),
            recv_cv: Condvar::new(),
            next_msg_id: AtomicU64::new(1),
            next_epoch: AtomicU64::new(1),
            reattaches: AtomicU64::new(0),
            pump_started: AtomicBool::new(false),
            handoff: Arc::new(Handoff::default()),
            async_pending: AtomicUsize::new(0),
        });
        let conn = inner.connect_once(deadline)?;
        *lock(&inner.conn) = Some(conn);
        Ok(Attachment { inner })
    }

    /// This process's role.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// The options in force.
    pub fn options(&self) -> &AttachOptions {
        &self.inner.options
    }

    /// The id chmpx gave the current attachment (changes when it re-attaches), if attached.
    pub fn attach_id(&self) -> Option<u64> {
        lock(&self.inner.conn).as_ref().map(|c| c.attach_id)
    }

    /// The name of the current attachment's segment, if attached (tests and status tools).
    pub fn segment_name(&self) -> Option<String> {
        lock(&self.inner.conn)
            .as_ref()
            .map(|c| c.seg.name().to_string())
    }

    /// The names of the current doorbell queues, process -> chmpx and back.
    pub fn queue_names(&self) -> Option<(String, String)> {
        lock(&self.inner.conn)
            .as_ref()
            .map(|c| (c.up_q.name().to_string(), c.down_q.name().to_string()))
    }

    /// Whether chmpx's placement (map in force, pending map) has not changed since it queued a
    /// message stamped `queued_ns` for this process, as chmpx records it in the current
    /// attachment's segment. False without a stamp, when not attached, and when the current
    /// attachment was accepted after `queued_ns` (a message of an earlier attachment). Read
    /// after a write, true means that anything a later placement change starts (a merge, a
    /// hand-off) sees that write: see [`crate::attach::FLAG_SOLE_OWNER`].
    pub fn placement_unchanged_since(&self, queued_ns: u64) -> bool {
        if queued_ns == 0 {
            return false;
        }
        lock(&self.inner.conn)
            .as_ref()
            .is_some_and(|c| c.seg.placement_changed_ns() < queued_ns)
    }

    /// How many times this attachment has re-attached after losing chmpx.
    pub fn reattach_count(&self) -> u64 {
        self.inner.reattaches.load(Ordering::Relaxed)
    }

    /// Sends a one-way message (an event); returns its `msg_id`.
    pub fn send(&self, route: Route, body: &[u8]) -> Result<u64, AttachError> {
        let deadline = Instant::now() + self.inner.options.rw_timeout();
        let msg_id = self.inner.next_msg_id.fetch_add(1, Ordering::Relaxed);
        let conn = self.inner.live_conn(deadline)?;
        self.inner
            .push(&conn, msg_id, Kind::Event, route, body, deadline)?;
        Ok(msg_id)
    }

    /// Sends a request and returns a handle to wait for its response, so that one thread can
    /// keep many requests outstanding.
    pub fn submit(
        &self,
        route: Route,
        body: &[u8],
        timeout: Duration,
    ) -> Result<PendingResponse, AttachError> {
        let deadline = Instant::now() + timeout;
        let msg_id = self.inner.next_msg_id.fetch_add(1, Ordering::Relaxed);
        self.inner.check_body(body.len())?;
        let conn = self.inner.live_conn(deadline)?;
        // Register before pushing: the response may come back before push returns.
        lock(&self.inner.dispatch)
            .pending
            .insert(msg_id, Slot::Waiting { epoch: conn.epoch });
        if let Err(e) = self
            .inner
            .push(&conn, msg_id, Kind::Request, route, body, deadline)
        {
            lock(&self.inner.dispatch).pending.remove(&msg_id);
            return Err(e);
        }
        Ok(PendingResponse {
            inner: self.inner.clone(),
            msg_id,
            done: false,
        })
    }

    /// Sends a request and waits for its response.
    pub fn request(
        &self,
        route: Route,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Envelope, AttachError> {
        let deadline = Instant::now() + timeout;
        let mut pending = self.submit(route, body, timeout)?;
        pending.wait_until(deadline)
    }

    /// Receives the next request or event addressed to this process, waiting up to `timeout`;
    /// `Ok(None)` on timeout. Keeps the attachment alive: re-attaches after a chmpx restart.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Envelope>, AttachError> {
        let deadline = Instant::now() + timeout;
        let inner = &self.inner;
        loop {
            let mut d = lock(&inner.dispatch);
            if let Some(env) = d.incoming.pop_front() {
                return Ok(Some(env));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if !d.consumer_busy {
                d.consumer_busy = true;
                drop(d);
                let r = inner.pump(deadline, true, true);
                if r.is_err() {
                    inner.release_consumer();
                    r?;
                }
                // This thread comes straight back (next turn of the loop) and takes the first
                // request queued itself, or the role again; the receivers the hand-out woke,
                // one per further request queued, take the rest (one of them the role). No
                // other receiver needs waking.
                let mut d = lock(&inner.dispatch);
                d.consumer_busy = false;
                inner.wake(d);
                continue;
            }
            let wait = (deadline - now).min(inner.options.liveness_interval());
            drop(inner.sleep_recv(d, wait));
        }
    }

    /// Answers a request received by [`Attachment::recv`].
    pub fn reply(&self, request: &Envelope, body: &[u8]) -> Result<(), AttachError> {
        let route = match request.route {
            r @ Route::Reply { .. } => r,
            _ => Route::Reply {
                node: 0,
                attachment: 0,
                msg_id: request.msg_id,
            },
        };
        let deadline = Instant::now() + self.inner.options.rw_timeout();
        let conn = self.inner.live_conn(deadline)?;
        self.inner
            .push(&conn, request.msg_id, Kind::Response, route, body, deadline)
    }

    /// Async form of [`Attachment::request`]: the request is pushed at once (waiting for ring
    /// room only if the ring is full), and the response is awaited without holding a thread.
    /// A helper thread reads the ring while async callers wait.
    pub async fn request_async(
        &self,
        route: Route,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Envelope, AttachError> {
        let deadline = Instant::now() + timeout;
        self.inner.check_body(body.len())?;
        self.inner.ensure_pump();
        self.inner.handoff.ensure_task();
        let msg_id = self.inner.next_msg_id.fetch_add(1, Ordering::Relaxed);
        let conn = match self.inner.healthy_conn() {
            Some(c) => c,
            None => {
                // Re-attaching waits for chmpx (handshake, backoff): keep it off the runtime.
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || inner.live_conn(deadline))
                    .await
                    .map_err(|e| AttachError::Runtime(e.to_string()))??
            }
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut d = lock(&self.inner.dispatch);
            d.pending.insert(
                msg_id,
                Slot::Notify {
                    epoch: conn.epoch,
                    tx,
                },
            );
            self.inner.async_pending.fetch_add(1, Ordering::AcqRel);
            // An idle pump sleeps on the condition variable: wake it (only if it sleeps).
            self.inner.wake(d);
        }
        let mut guard = AsyncSlotGuard {
            inner: &self.inner,
            msg_id,
            answered: false,
        };
        self.inner
            .push(&conn, msg_id, Kind::Request, route, &body, deadline)?;
        let result = tokio::time::timeout_at(deadline.into(), rx).await;
        // An answer comes through the slot's channel only after the slot was removed.
        guard.answered = matches!(result, Ok(Ok(_)));
        drop(guard);
        match result {
            Ok(Ok(r)) => r,
            Ok(Err(_closed)) => Err(AttachError::Runtime("response channel closed".into())),
            Err(_elapsed) => Err(AttachError::Timeout {
                msg_id,
                waited_ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// Async form of [`Attachment::recv`]: waits up to `timeout` for a request or event
    /// without holding a thread; `Ok(None)` on timeout.
    pub async fn recv_async(&self, timeout: Duration) -> Result<Option<Envelope>, AttachError> {
        let deadline = Instant::now() + timeout;
        let rx = {
            let mut d = lock(&self.inner.dispatch);
            if let Some(env) = d.incoming.pop_front() {
                return Ok(Some(env));
            }
            let (tx, rx) = oneshot::channel();
            d.incoming_waiters.push_back(tx);
            self.inner.wake(d);
            rx
        };
        self.inner.ensure_pump();
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(env)) => Ok(Some(env)),
            Ok(Err(_closed)) => Err(AttachError::Detached),
            Err(_elapsed) => {
                // Our sender stays queued until the pump finds it closed and skips it.
                Ok(None)
            }
        }
    }

    /// Test hook: publishes raw bytes in the process -> chmpx ring and rings the doorbell.
    #[doc(hidden)]
    pub fn inject_ring_garbage_for_test(&self, bytes: &[u8]) -> Result<(), AttachError> {
        let conn = self
            .inner
            .live_conn(Instant::now() + Duration::from_secs(1))?;
        let _g = lock(&conn.producer);
        conn.seg
            .up()
            .push_raw_for_test(bytes)
            .map_err(AttachError::from_push)?;
        conn.up_q.send(&Doorbell::Data.encode())?;
        Ok(())
    }

    /// Test hook: sends raw bytes on the process -> chmpx doorbell queue.
    #[doc(hidden)]
    pub fn inject_queue_garbage_for_test(&self, bytes: &[u8]) -> Result<bool, AttachError> {
        let conn = self
            .inner
            .live_conn(Instant::now() + Duration::from_secs(1))?;
        Ok(conn.up_q.send(bytes)?)
    }

    /// Test hook: a frame that frames correctly but is not an envelope.
    #[doc(hidden)]
    pub fn inject_bad_envelope_for_test(&self, bytes: &[u8]) -> Result<(), AttachError> {
        let conn = self
            .inner
            .live_conn(Instant::now() + Duration::from_secs(1))?;
        let _g = lock(&conn.producer);
        conn.seg
            .up()
            .push(&[bytes])
            .map_err(AttachError::from_push)?;
        conn.up_q.send(&Doorbell::Data.encode())?;
        Ok(())
    }
}

/// Removes an async request's slot however its wait ends (answer, timeout, cancellation).
struct AsyncSlotGuard<'a> {
    inner: &'a Arc<Inner>,
    msg_id: u64,
    /// The answer came through the channel, so its sender already removed the slot.
    answered: bool,
}

impl Drop for AsyncSlotGuard<'_> {
    fn drop(&mut self) {
        if !self.answered {
            let mut d = lock(&self.inner.dispatch);
            if let Some(Slot::Notify { .. }) = d.pending.get(&self.msg_id) {
                d.pending.remove(&self.msg_id);
            }
        }
        self.inner.async_pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PendingResponse {
    /// The request's `msg_id`.
    pub fn msg_id(&self) -> u64 {
        self.msg_id
    }

    /// Waits up to `timeout` for the response.
    pub fn wait(mut self, timeout: Duration) -> Result<Envelope, AttachError> {
        self.wait_until(Instant::now() + timeout)
    }

    fn wait_until(&mut self, deadline: Instant) -> Result<Envelope, AttachError> {
        let inner = &self.inner;
        loop {
            let mut d = lock(&inner.dispatch);
            match d.pending.get(&self.msg_id) {
                Some(Slot::Done(_)) => {
                    self.done = true;
                    return match d.pending.remove(&self.msg_id) {
                        Some(Slot::Done(r)) => r,
                        _ => Err(AttachError::Runtime("response slot vanished".into())),
                    };
                }
                Some(Slot::Waiting { .. }) => {}
                // Msg ids are unique per attachment: an async or fan-out slot is never ours.
                Some(Slot::Notify { .. } | Slot::Fanout { .. }) | None => {
                    self.done = true;
                    return Err(AttachError::Runtime(format!(
                        "no pending request {}",
                        self.msg_id
                    )));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                d.pending.remove(&self.msg_id);
                self.done = true;
                return Err(AttachError::Timeout {
                    msg_id: self.msg_id,
                    waited_ms: inner.options.rw_timeout_ms,
                });
            }
            if !d.consumer_busy {
                d.consumer_busy = true;
                drop(d);
                let r = inner.pump(deadline, false, false);
                inner.release_consumer();
                if let Err(e) = r {
                    tracing::debug!("pump: {e}");
                }
                continue;
            }
            let wait = (deadline - now).min(inner.options.liveness_interval());
            drop(inner.sleep(d, wait));
        }
    }
}

impl Drop for PendingResponse {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.inner.dispatch).pending.remove(&self.msg_id);
        }
    }
}

impl Inner {
    /// Starts, once, the thread that reads the ring for async callers.
    fn ensure_pump(self: &Arc<Self>) {
        // A plain load first: every async call passes here, and a swap would write the line.
        if self.pump_started.load(Ordering::Acquire)
            || self.pump_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("dkc-attach-pump".into())
            .spawn(move || async_pump(weak));
        if let Err(e) = spawned {
            tracing::error!("cannot start the attach pump thread: {e}");
            self.pump_started.store(false, Ordering::Release);
        }
    }

    /// Wakes the threads asleep on the condition variable, if any. Takes the guard under
    /// which the caller changed what they wait for: a thread counts itself as a sleeper under
    /// the same lock before it sleeps, so reading the count here loses no wake-up.
    fn wake(&self, d: MutexGuard<'_, Dispatch>) {
        let sleepers = d.sleepers > 0;
        drop(d);
        if sleepers {
            self.cv.notify_all();
        }
    }

    /// Wakes every sleeper, on both condition variables (the connection changed).
    fn wake_everyone(&self, d: MutexGuard<'_, Dispatch>) {
        let (sleepers, receivers) = (d.sleepers > 0, d.recv_sleepers > 0);
        drop(d);
        if sleepers {
            self.cv.notify_all();
        }
        if receivers {
            self.recv_cv.notify_all();
        }
    }

    /// Sleeps in `recv` up to `wait` (see `recv_cv`).
    fn sleep_recv<'a>(
        &self,
        mut d: MutexGuard<'a, Dispatch>,
        wait: Duration,
    ) -> MutexGuard<'a, Dispatch> {
        d.recv_sleepers += 1;
        let mut d = match self.recv_cv.wait_timeout(d, wait) {
            Ok((d, _)) => d,
            Err(p) => p.into_inner().0,
        };
        d.recv_sleepers -= 1;
        d
    }

    /// Sleeps on the condition variable up to `wait`, counted as a sleeper (see `wake`).
    fn sleep<'a>(
        &self,
        mut d: MutexGuard<'a, Dispatch>,
        wait: Duration,
    ) -> MutexGuard<'a, Dispatch> {
        d.sleepers += 1;
        let mut d = match self.cv.wait_timeout(d, wait) {
            Ok((d, _)) => d,
            Err(p) => p.into_inner().0,
        };
        d.sleepers -= 1;
        d
    }

    /// Gives the consumer role back and wakes whoever may want it.
    fn release_consumer(&self) {
        let mut d = lock(&self.dispatch);
        d.consumer_busy = false;
        // One receiver is enough to take the role over; whoever waits for an answer may want
        // it too (and learns from the same wake-up whether the answer came).
        let receivers = d.recv_sleepers > 0;
        self.wake(d);
        if receivers {
            self.recv_cv.notify_one();
        }
    }

    fn check_body(&self, len: usize) -> Result<(), AttachError> {
        if len > self.options.body_size_max {
            return Err(AttachError::BodyTooLarge {
                len,
                max: self.options.body_size_max,
            });
        }
        Ok(())
    }

    /// The current connection if it is healthy, without waiting.
    fn healthy_conn(&self) -> Option<Arc<Conn>> {
        lock(&self.conn)
            .as_ref()
            .filter(|c| {
                !c.broken.load(Ordering::Acquire) && c.seg.state() == SegmentState::Accepted
            })
            .cloned()
    }

    /// The current connection if healthy; otherwise attaches again (backoff until `deadline`).
    fn live_conn(&self, deadline: Instant) -> Result<Arc<Conn>, AttachError> {
        let mut guard = lock(&self.conn);
        if let Some(c) = guard.as_ref() {
            if !c.broken.load(Ordering::Acquire) && c.seg.state() == SegmentState::Accepted {
                return Ok(c.clone());
            }
            let old = guard.take();
            if let Some(old) = old {
                self.fail_epoch(old.epoch);
                old.leave();
            }
        }
        if !self.options.reattach {
            return Err(AttachError::Detached);
        }
        let conn = self.connect_once(deadline)?;
        self.reattaches.fetch_add(1, Ordering::Relaxed);
        tracing::info!(attach_id = conn.attach_id, "re-attached to chmpx");
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Creates a fresh set of objects and runs the handshake until `deadline`.
    fn connect_once(&self, mut deadline: Instant) -> Result<Arc<Conn>, AttachError> {
        let o = &self.options;
        let start = Instant::now();
        let pid = std::process::id();
        let counter = NEXT_COUNTER.fetch_add(1, Ordering::Relaxed);
        let names = self.names.attachment(pid, counter);
        let shape = QueueShape {
            maxmsg: o.doorbell_queue_depth,
            msgsize: DOORBELL_MSG_BYTES as u32,
        };
        // Leftovers of an earlier process with our pid would make O_EXCL fail: they are stale.
        for q in [&names.up_queue, &names.down_queue] {
            MessageQueue::unlink(q)?;
        }
        crate::ipc::shm::SharedMemory::unlink(&names.segment)?;
        let seg = Segment::create(
            &names.segment,
            self.role,
            pid,
            counter,
            o.body_size_max,
            o.ring_capacity_bytes(),
            o.mode,
        )?;
        let up_q = MessageQueue::create(&names.up_queue, shape, o.mode, Access::Write, true)?;
        let down_q = MessageQueue::create(&names.down_queue, shape, o.mode, Access::Read, false)?;
        let hello = Hello {
            role: self.role,
            pid,
            counter,
        }
        .encode();
        let accept_name = self.names.accept_queue();
        let mut backoff = Duration::from_millis(o.reattach_backoff_min_ms);
        let mut ever_sent = false;
        let mut buf = [0u8; DOORBELL_MSG_BYTES];
        loop {
            let sent = match MessageQueue::open(&accept_name, Access::Write, true) {
                Ok(q) => q.send(&hello)?,
                Err(IpcError::NotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            if sent && !ever_sent {
                // A caller near its deadline (a receiver's poll) still gives chmpx one retry
                // interval to answer the first hello, rather than offering and withdrawing.
                deadline = deadline.max(now + Duration::from_millis(o.hello_retry_interval_ms));
            }
            ever_sent |= sent;
            // Out of time. An offer chmpx may still read from its accept queue is withdrawn
            // first; if chmpx answered meanwhile, its answer is taken below (an attachment it
            // accepted must be used or left, never dropped unread).
            if now >= deadline && (!ever_sent || seg.withdraw()) {
                let waited_ms = (now - start).as_millis() as u64;
                return Err(if ever_sent {
                    AttachError::HandshakeTimeout { waited_ms }
                } else {
                    AttachError::ChmpxNotRunning {
                        accept_queue: accept_name,
                        waited_ms,
                    }
                });
            }
            let window = if sent {
                Duration::from_millis(o.hello_retry_interval_ms)
            } else {
                let b = backoff;
                backoff = (backoff * 2).min(Duration::from_millis(o.reattach_backoff_max_ms));
                b
            };
            let until = (now + window).min(deadline);
            // Wait for chmpx's answer in this window (doorbells wake us early).
            loop {
                match seg.state() {
                    SegmentState::Accepted => {
                        let (chmpx_pid, _generation, attach_id) = seg.accepted_by();
                        return Ok(Arc::new(Conn {
                            epoch: self.next_epoch.fetch_add(1, Ordering::Relaxed),
                            seg,
                            up_q,
                            down_q,
                            chmpx_pid,
                            attach_id,
                            producer: Mutex::new(()),
                            broken: AtomicBool::new(false),
                            doorbell_owed: AtomicBool::new(false),
                            owed_frames: AtomicU32::new(0),
                        }));
                    }
                    SegmentState::Refused => {
                        return Err(AttachError::Refused(seg.refuse_reason()));
                    }
                    SegmentState::Offered => {}
                    other => {
                        return Err(AttachError::Runtime(format!(
                            "our attachment segment {} is in state {other:?} before chmpx \
                             answered",
                            names.segment
                        )))
                    }
                }
                let now = Instant::now();
                if now >= until {
                    break;
                }
                let _ =
                    down_q.receive_timeout(&mut buf, (until - now).min(o.liveness_interval()))?;
            }
        }
    }

    /// Fails every request in flight on connection `epoch`.
    fn fail_epoch(&self, epoch: u64) {
        let mut d = lock(&self.dispatch);
        let mut failed = 0;
        let ids: Vec<u64> = d
            .pending
            .iter()
            .filter(|(_, slot)| {
                matches!(slot, Slot::Waiting { epoch: e } | Slot::Notify { epoch: e, .. } if *e == epoch)
            })
            .map(|(id, _)| *id)
            .collect();
        for slot in d.pending.values_mut() {
            if let Slot::Fanout { epoch: e, lost, .. } = slot {
                if *e == epoch && !*lost {
                    *lost = true;
                    failed += 1;
                }
            }
        }
        for id in ids {
            let lost = Err(AttachError::ChmpxRestarted { msg_id: id });
            match d.pending.remove(&id) {
                Some(Slot::Notify { tx, .. }) => {
                    let _ = tx.send(lost);
                }
                Some(_) => {
                    d.pending.insert(id, Slot::Done(lost));
                }
                None => {}
            }
            failed += 1;
        }
        self.wake_everyone(d);
        if failed > 0 {
            tracing::warn!(failed, "chmpx went away; requests in flight failed");
        }
    }

    fn break_conn(&self, conn: &Conn, why: &str) {
        if !conn.broken.swap(true, Ordering::AcqRel) {
            tracing::warn!(attach_id = conn.attach_id, "attachment lost: {why}");
            self.fail_epoch(conn.epoch);
        }
    }

    /// Pushes one message, waiting for room up to `deadline` (chmpx drains quickly; a ring
    /// that stays full means chmpx is stuck or gone, which the liveness check catches).
    fn push(
        &self,
        conn: &Arc<Conn>,
        msg_id: u64,
        kind: Kind,
        route: Route,
        body: &[u8],
        deadline: Instant,
    ) -> Result<(), AttachError> {
        self.check_body(body.len())?;
        let header = Header {
            msg_id,
            kind,
            route,
            flags: 0,
            body_len: body.len() as u32,
            // No queue time in this direction: chmpx stamps what it delivers to processes.
            queued_ns: 0,
        }
        .encode();
        let ring = conn.seg.up();
        let _g = lock(&conn.producer);
        let mut pause = FULL_RING_PAUSE_MIN;
        let mut last_check = Instant::now();
        loop {
            match ring.push(&[&header, body]) {
                Ok(()) => break,
                Err(crate::ipc::ring::PushError::Full { needed, free }) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(AttachError::Backpressure { needed, free });
                    }
                    // chmpx makes room only while awake: ring what this process owes it (a
                    // deferred doorbell, fewer than DEFERRED_DOORBELL_FRAMES_MAX frames ago).
                    deferred::flush_deferred_doorbells();
                    if now - last_check >= self.options.liveness_interval() {
                        last_check = now;
                        if !conn.chmpx_alive() {
                            self.break_conn(conn, "chmpx died while our ring was full");
                            return Err(AttachError::ChmpxRestarted { msg_id });
                        }
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(FULL_RING_PAUSE_MAX);
                }
                Err(e) => {
                    let e = AttachError::from_push(e);
                    if matches!(e, AttachError::RingCorrupt(_)) {
                        self.break_conn(conn, "our ring is corrupt");
                    }
                    return Err(e);
                }
            }
        }
        if self.options.defer_doorbell {
            deferred::after_push(conn, ring.producer_should_ring());
        } else if ring.producer_should_ring() {
            // false = the queue is full, so a wake-up is already pending: nothing to do.
            conn.up_q.send(&Doorbell::Data.encode())?;
        }
        Ok(())
    }

    /// One pass as the consumer: read what the ring holds (spinning a little, then sleeping on
    /// the doorbell at most one liveness interval), hand it out, check chmpx lives.
    /// `own_request`: the caller is a receiver that takes the first request handed out itself
    /// (see `dispatch_frames`).
    fn pump(
        &self,
        deadline: Instant,
        reconnect: bool,
        own_request: bool,
    ) -> Result<(), AttachError> {
        let conn = if reconnect {
            // What chmpx published before it left is still ours: hand it out before the old
            // connection is dropped for a new one (we are the consumer, so reading is safe).
            let old = lock(&self.conn).as_ref().cloned();
            if let Some(old) = old {
                if old.broken.load(Ordering::Acquire) || old.seg.state() != SegmentState::Accepted {
                    let mut frames = Vec::new();
                    self.pop_into(&old, &mut frames);
                    if !frames.is_empty() {
                        self.dispatch_frames(frames, own_request);
                        return Ok(());
                    }
                }
            }
            self.live_conn(deadline)?
        } else {
            match lock(&self.conn).as_ref() {
                Some(c) if !c.broken.load(Ordering::Acquire) => c.clone(),
                _ => return Ok(()),
            }
        };
        if lock(&self.dispatch).incoming.len() >= self.options.incoming_queue_max {
            // Nobody reads requests: stop reading so that chmpx sees backpressure.
            std::thread::sleep(Duration::from_millis(1));
            return Ok(());
        }
        let ring = conn.seg.down();
        let mut frames = Vec::new();
        let spin = Duration::from_micros(self.options.spin_wait_us);
        let mut spin_start: Option<Instant> = None;
        loop {
            self.pop_into(&conn, &mut frames);
            if !frames.is_empty() || conn.broken.load(Ordering::Acquire) {
                break;
            }
            // Poll a little before sleeping: a quick answer then costs no wake-up.
            let started = *spin_start.get_or_insert_with(Instant::now);
            if started.elapsed() < spin {
                // Yield rather than spin: on a busy machine the peer we wait for may need
                // this very CPU; on an idle one sched_yield returns at once.
                std::thread::yield_now();
                continue;
            }
            // Before this thread sleeps, ring what a burst of deferred pushes owes chmpx (a
            // safety net for the process's own flush; cheap when nothing is owed).
            deferred::flush_deferred_doorbells();
            if ring.prepare_sleep() {
                let now = Instant::now();
                if now >= deadline {
                    ring.awake();
                    break;
                }
                let wait = (deadline - now).min(self.options.liveness_interval());
                let mut buf = [0u8; DOORBELL_MSG_BYTES];
                let got = conn.down_q.receive_timeout(&mut buf, wait);
                ring.awake();
                match got {
                    Ok(Some(n)) => match Doorbell::decode(&buf[..n]) {
                        Some(Doorbell::Data) => {}
                        Some(_) => {
                            if !conn.chmpx_alive() {
                                self.break_conn(&conn, "chmpx asked us to re-attach");
                            }
                        }
                        None => tracing::warn!(bytes = n, "garbage on our doorbell queue ignored"),
                    },
                    Ok(None) => {
                        if !conn.chmpx_alive() {
                            self.break_conn(&conn, "chmpx is gone");
                        }
                    }
                    Err(e) => self.break_conn(&conn, &e.to_string()),
                }
                self.pop_into(&conn, &mut frames);
                break;
            }
        }
        if conn.seg.state() != SegmentState::Accepted {
            self.break_conn(&conn, "chmpx left");
        }
        self.dispatch_frames(frames, own_request);
        Ok(())
    }

    fn pop_into(&self, conn: &Conn, frames: &mut Vec<Envelope>) {
        let ring = conn.seg.down();
        while frames.len() < POP_BATCH_MAX {
            match ring.pop_split(
                ENVELOPE_HEADER_BYTES,
                ENVELOPE_HEADER_BYTES + self.options.body_size_max,
            ) {
                Ok(Some((head, body))) => {
                    match Envelope::from_parts(&head, body, self.options.body_size_max) {
                        Ok(env) => frames.push(env),
                        Err(e) => tracing::warn!("message from chmpx refused: {e}"),
                    }
                }
                Ok(None) => break,
                Err(PopError::Oversized { len, max }) => {
                    tracing::warn!(len, max, "oversized message from chmpx skipped");
                }
                Err(PopError::Corrupt(why)) => {
                    self.break_conn(conn, &format!("ring from chmpx corrupt: {why}"));
                    break;
                }
            }
        }
    }

    /// Hands `frames` to their owners. `own_request`: the caller (a thread in `recv`) comes
    /// back for the queued requests right after, so it takes the first one itself and one more
    /// receiver is woken per [`REQUESTS_PER_RECEIVER_WOKEN`] further requests only: handing
    /// each request to another worker cost a futex wake and a context switch per request,
    /// the largest cost of a server's receive path on a loaded 2-core host.
    fn dispatch_frames(&self, frames: Vec<Envelope>, own_request: bool) {
        if frames.is_empty() {
            return;
        }
        // Async answers are sent after the lock is dropped: a woken task's first step takes
        // this lock, and finding it held would cost it a futex sleep and us a futex wake.
        let mut answers = Vec::new();
        // Whether a blocking waiter's slot changed, and how many requests were queued for
        // `recv`: each wakes only its own kind of sleeper.
        let mut slots_changed = false;
        let mut queued = 0usize;
        let mut d = lock(&self.dispatch);
        for env in frames {
            match env.kind {
                Kind::Response => match d.pending.get_mut(&env.msg_id) {
                    Some(slot @ Slot::Waiting { .. }) => {
                        *slot = Slot::Done(Ok(env));
                        slots_changed = true;
                    }
                    Some(Slot::Fanout { progress, .. }) => {
                        progress.record_response(env);
                        slots_changed = true;
                    }
                    Some(Slot::Notify { .. }) => {
                        if let Some(Slot::Notify { tx, .. }) = d.pending.remove(&env.msg_id) {
                            answers.push((tx, Ok(env)));
                        }
                    }
                    _ => tracing::debug!(msg_id = env.msg_id, "late or unknown response dropped"),
                },
                Kind::Request | Kind::Event => {
                    // chmpx's count notice of one of our fan-out requests belongs to its slot.
                    if let Some(count) = target_count(&env) {
                        if let Some(Slot::Fanout { progress, .. }) = d.pending.get_mut(&env.msg_id)
                        {
                            progress.record_count(count);
                            slots_changed = true;
                            continue;
                        }
                    }
                    // Hand it to the first async receiver still waiting, else queue it.
                    let mut env = env;
                    loop {
                        let Some(tx) = d.incoming_waiters.pop_front() else {
                            d.incoming.push_back(env);
                            queued += 1;
                            break;
                        };
                        match tx.send(env) {
                            Ok(()) => break,
                            Err(back) => env = back,
                        }
                    }
                }
            }
        }
        let receivers = if own_request {
            // The reading thread serves the queue itself; helpers only for a longer one.
            queued
                .saturating_sub(1)
                .div_ceil(REQUESTS_PER_RECEIVER_WOKEN)
                .min(d.recv_sleepers)
        } else {
            queued.min(d.recv_sleepers)
        };
        if slots_changed {
            self.wake(d);
        } else {
            drop(d);
        }
        for _ in 0..receivers {
            self.recv_cv.notify_one();
        }
        self.handoff.deliver(answers);
    }
}

/// Reads the ring while async callers wait; ends when the attachment is dropped. It holds
/// the attachment only for one pass at a time, so dropping the last handle ends it.
fn async_pump(weak: std::sync::Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let interval = inner.options.liveness_interval();
        let mut d = lock(&inner.dispatch);
        d.incoming_waiters.retain(|tx| !tx.is_closed());
        let receivers = !d.incoming_waiters.is_empty();
        let wanted = inner.async_pending.load(Ordering::Acquire) > 0 || receivers;
        if !wanted || d.consumer_busy {
            // Nothing to do, or a blocking caller reads the ring (it hands out our results
            // too): sleep until something changes.
            drop(inner.sleep(d, interval));
            continue;
        }
        d.consumer_busy = true;
        drop(d);
        let r = inner.pump(Instant::now() + interval, receivers, false);
        inner.release_consumer();
        if let Err(e) = r {
            tracing::debug!("async pump: {e}");
            std::thread::sleep(interval.min(Duration::from_millis(10)));
        }
    }
}

impl Conn {
    /// chmpx still serves this attachment: it has not left and its pid lives.
    fn chmpx_alive(&self) -> bool {
        self.seg.state() == SegmentState::Accepted && pid_alive(self.chmpx_pid)
    }

    /// Tells chmpx we are leaving (best effort); the objects are unlinked when dropped.
    fn leave(&self) {
        if self.seg.leave_accepted(SegmentState::Detached) {
            let _ = self.up_q.send(&Doorbell::Detach.encode());
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.handoff.close();
        if let Some(conn) = lock(&self.conn).take() {
            conn.leave();
        }
    }
}

/// An answer for an async caller: its channel and the envelope.
type Answer = (
    oneshot::Sender<Result<Envelope, AttachError>>,
    Result<Envelope, AttachError>,
);

/// The way answers reach async callers in batches. The pump thread finds many answers per
/// pass; sending each on its caller's channel from the pump thread costs one cross-thread wake
/// of the runtime per answer (an eventfd write or futex call each). Instead the pump queues a
/// pass's answers here and wakes one task, [`Handoff::run`], on the callers' runtime, which
/// sends them from there: its wake-ups are local to the runtime and cost no system call.
#[derive(Default)]
struct Handoff {
    /// Answers waiting for the task, and whether a task runs (both under one lock, so that
    /// no answer is queued after the task ended).
    state: Mutex<HandoffState>,
    notify: tokio::sync::Notify,
    /// A copy of `running` read without the lock on every request (a hint; the lock decides).
    running_hint: AtomicBool,
}

#[derive(Default)]
struct HandoffState {
    queue: Vec<Answer>,
    /// A task serves the queue.
    running: bool,
    /// The attachment is gone: the task ends.
    closed: bool,
}

impl Handoff {
    /// Starts the task on the current runtime if none runs. Only on a multi-thread runtime,
    /// whose workers run the task whatever the caller does: a current-thread runtime runs
    /// tasks only inside its `block_on`, and another runtime sharing this attachment would
    /// wait for it. Without one (or once the runtime that ran the task is gone) answers are
    /// sent by the pump directly.
    fn ensure_task(self: &Arc<Self>) {
        if self.running_hint.load(Ordering::Relaxed) {
            return;
        }
        let rt = match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => rt,
            _ => return,
        };
        {
            let mut st = lock(&self.state);
            if st.running || st.closed {
                return;
            }
            st.running = true;
            self.running_hint.store(true, Ordering::Relaxed);
        }
        rt.spawn(self.clone().run());
    }

    /// Hands `answers` to the task, or sends them here if no task runs.
    fn deliver(&self, answers: Vec<Answer>) {
        if answers.is_empty() {
            return;
        }
        let direct = {
            let mut st = lock(&self.state);
            if st.running {
                st.queue.extend(answers);
                None
            } else {
                Some(answers)
            }
        };
        match direct {
            None => self.notify.notify_one(),
            Some(answers) => {
                for (tx, r) in answers {
                    // The receiver is gone if its caller timed out or was cancelled.
                    let _ = tx.send(r);
                }
            }
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.notify.notify_one();
    }

    /// The task: sends every queued answer, sleeps until more come, ends when the attachment
    /// is dropped. If its runtime drops it first, the guard sends what is left and lets the
    /// pump send directly again.
    async fn run(self: Arc<Self>) {
        struct Stopped<'a>(&'a Handoff);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                let rest = {
                    let mut st = lock(&self.0.state);
                    st.running = false;
                    self.0.running_hint.store(false, Ordering::Relaxed);
                    std::mem::take(&mut st.queue)
                };
                for (tx, r) in rest {
                    let _ = tx.send(r);
                }
            }
        }
        let _stopped = Stopped(&self);
        let mut batch = Vec::new();
        loop {
            {
                let mut st = lock(&self.state);
                if st.closed {
                    return;
                }
                std::mem::swap(&mut batch, &mut st.queue);
            }
            if batch.is_empty() {
                self.notify.notified().await;
                continue;
            }
            for (tx, r) in batch.drain(..) {
                let _ = tx.send(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::AttachListener;

    /// A current-thread runtime and a listener bound for the cluster `{prefix}{pid}` on a
    /// control port `port_base + pid % 20000` (tests of one process do not collide).
    pub(super) fn bound_listener(
        prefix: &str,
        port_base: u16,
    ) -> (String, u16, tokio::runtime::Runtime, AttachListener) {
        let cluster = format!("{prefix}{}", std::process::id());
        let ctlport = port_base + (std::process::id() % 20_000) as u16;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(async { AttachListener::bind(&cluster, ctlport, AttachOptions::default()) })
            .unwrap();
        (cluster, ctlport, rt, listener)
    }

    /// The queue time of the chmpx -> process direction: chmpx stamps what it delivers (now,
    /// or the earlier time the daemon took the message in), the process receives the stamp,
    /// and whatever a process writes there never reaches chmpx's side.
    #[test]
    fn the_queue_stamp_reaches_the_process_and_only_chmpx_sets_it() {
        use crate::attach::envelope::monotonic_now_ns;
        let (cluster, ctlport, rt, mut listener) = bound_listener("stamp", 34_000);
        let c2 = cluster.clone();
        let connecting = std::thread::spawn(move || {
            Attachment::connect(&c2, ctlport, Role::Server, AttachOptions::default())
        });
        let mut chmpx_side = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
            })
            .expect("the process attaches")
            .unwrap();
        let server = connecting.join().unwrap().unwrap();
        let event = |msg_id: u64, queued_ns: u64| Envelope {
            msg_id,
            kind: Kind::Event,
            route: Route::AllServers,
            flags: 0,
            body: vec![1, 2, 3],
            queued_ns,
        };
        let recv = || {
            server
                .recv(Duration::from_secs(5))
                .unwrap()
                .expect("the message arrives")
        };
        let before = monotonic_now_ns();
        chmpx_side.send(&event(1, 0)).unwrap();
        let after = monotonic_now_ns();
        let got = recv();
        assert_eq!(got.msg_id, 1);
        assert!(
            (before..=after).contains(&got.queued_ns),
            "stamped on delivery: {before} <= {} <= {after}",
            got.queued_ns
        );
        chmpx_side.send(&event(2, 12_345)).unwrap();
        let got = recv();
        assert_eq!(
            (got.msg_id, got.queued_ns),
            (2, 12_345),
            "an earlier stamp is kept"
        );
        // Process -> chmpx: a process's own messages carry no stamp, and one forged into the
        // ring is dropped on chmpx's side.
        server.send(Route::HashFirst(9), b"up").unwrap();
        server
            .inject_bad_envelope_for_test(&event(3, 777).encode())
            .unwrap();
        let mut up = Vec::new();
        rt.block_on(async {
            while up.len() < 2 {
                let batch = tokio::time::timeout(Duration::from_secs(5), chmpx_side.recv_batch(8))
                    .await
                    .expect("the process's messages arrive")
                    .unwrap();
                up.extend(batch);
            }
        });
        assert_eq!(up[0].body, b"up");
        assert_eq!((up[1].msg_id, &up[1].body[..]), (3, &[1u8, 2, 3][..]));
        assert!(up.iter().all(|e| e.queued_ns == 0), "{up:?}");
        drop(chmpx_side);
    }

    /// Requests chmpx sends in the first burst.
    const BURST: u64 = 16;
    /// Requests sent one by one while a receiver holds a request.
    const LATER: u64 = 8;
    /// How long the receiver of the held request keeps it.
    const HOLD: Duration = Duration::from_secs(2);

    /// A server's receivers share the requests out without losing any, and one that holds a
    /// request (a long command) does not keep the next requests waiting for it: a receiver
    /// that read the ring keeps its own request and wakes fewer helpers now, so this checks
    /// that the others still take the ring over.
    #[test]
    fn receivers_lose_no_request_and_a_held_one_does_not_block_the_rest() {
        let (cluster, ctlport, rt, mut listener) = bound_listener("rcv", 33_000);
        // The handshake needs the listener to accept meanwhile.
        let c2 = cluster.clone();
        let connecting = std::thread::spawn(move || {
            Attachment::connect(&c2, ctlport, Role::Server, AttachOptions::default())
        });
        let process = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
            })
            .expect("the process attaches")
            .unwrap();
        let server = connecting.join().unwrap().unwrap();
        let held_id = BURST + 1;
        let got: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let (a, got, stop) = (server.clone(), got.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        if let Some(env) = a.recv(Duration::from_millis(100)).unwrap() {
                            lock(&got).push((env.msg_id, Instant::now()));
                            if env.msg_id == held_id {
                                std::thread::sleep(HOLD);
                            }
                        }
                    }
                })
            })
            .collect();
        let request = |msg_id: u64| Envelope {
            msg_id,
            kind: Kind::Request,
            route: Route::Reply {
                node: 1,
                attachment: 0,
                msg_id,
            },
            flags: 0,
            body: msg_id.to_le_bytes().to_vec(),
            queued_ns: 0,
        };
        for id in 1..=held_id {
            process.send(&request(id)).unwrap();
        }
        // Wait until the held request is taken, then send the rest one by one.
        let until = Instant::now() + Duration::from_secs(10);
        while !lock(&got).iter().any(|(id, _)| *id == held_id) {
            assert!(
                Instant::now() < until,
                "the held request was never received"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut sent_at = HashMap::new();
        for id in held_id + 1..=held_id + LATER {
            sent_at.insert(id, Instant::now());
            process.send(&request(id)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let until = Instant::now() + Duration::from_secs(10);
        while lock(&got).len() < (held_id + LATER) as usize && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Release);
        for r in receivers {
            r.join().unwrap();
        }
        let got = lock(&got).clone();
        let mut ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        let want: Vec<u64> = (1..=held_id + LATER).collect();
        assert_eq!(ids, want, "every request exactly once");
        for (id, at) in got {
            if let Some(sent) = sent_at.get(&id) {
                let waited = at.duration_since(*sent);
                assert!(
                    waited < HOLD / 2,
                    "request {id} waited {waited:?} while another receiver held a request"
                );
            }
        }
        drop(process);
    }
}
