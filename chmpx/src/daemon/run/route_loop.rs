//! The routing thread: one std thread that owns the [`Router`] and every attachment, pops the
//! attachments' rings itself and routes what it finds at once, so a local message goes from
//! the sender's ring to the receiver's ring without crossing a channel or another task.
//!
//! ```text
//!  attachment rings ──pop──▶ ┐                       ┌──▶ receivers' rings (one doorbell per
//!  links, commands,          ├─ Router::handle_* ───┤      destination per pass)
//!  merge jobs (tokio mpsc) ─▶┘                       └──▶ LinkHandle::try_send (tokio tasks)
//! ```
//!
//! After activity it keeps polling for `spin` (the attach option `listener_spin_wait_us`): the
//! next message is usually already on its way, and catching it here saves a sleep and a
//! wake-up. Then it sleeps in `poll(2)` on every attachment's doorbell queue plus an eventfd
//! that the tokio channels' wakers write to, with a timeout for the status tick and the
//! attachments' liveness checks; an idle chmpx therefore costs no CPU.
//!
//! The TCP links, the control port and the merge jobs stay on the tokio runtime; the thread
//! enters that runtime so the router can spawn merge jobs onto it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::super::merge_engine::JobEvent;
use super::super::router::{LocalEvent, Router, RouterCmd};
use crate::attach::listener::PolledProcess;
use crate::attach::{AttachSender, Role};
use crate::link::LinkEvent;

/// Messages taken from one attachment per pass (other attachments get their turn after).
const ATTACH_BATCH_MAX: usize = 256;
/// Events taken from one channel per pass.
const CHANNEL_DRAIN_MAX: usize = 512;
/// Longest single sleep, milliseconds: bounds how late a tick or a liveness check can be if
/// every other deadline is farther away.
const SLEEP_MAX_MS: u64 = 1_000;

/// What the routing thread reads besides the attachments' rings.
pub(crate) struct Inputs {
    /// Newly accepted attachments.
    pub attach_rx: mpsc::UnboundedReceiver<PolledProcess>,
    /// Link events.
    pub link_rx: mpsc::Receiver<LinkEvent>,
    /// Commands (control port, merge engine).
    pub cmd_rx: mpsc::Receiver<RouterCmd>,
    /// Merge job events.
    pub job_rx: mpsc::UnboundedReceiver<JobEvent>,
    /// Closed (all senders dropped) when the thread must stop.
    pub stop_rx: mpsc::UnboundedReceiver<()>,
}

/// How the thread behaves.
pub(crate) struct LoopOptions {
    /// How long to keep polling after the last message before sleeping.
    pub spin: Duration,
    /// Interval of [`Router::tick`].
    pub tick: Duration,
}

/// Why the routing thread could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The eventfd could not be created.
    #[error(
        "cannot create the routing thread's eventfd: {0}; check the process's open-file limit"
    )]
    EventFd(std::io::Error),
}

/// The wake-up of a sleeping routing thread: tokio channel wakers write to the eventfd, but
/// only while the thread sleeps (a busy thread polls every channel at every pass anyway).
struct Bell {
    fd: OwnedFd,
    asleep: AtomicBool,
}

impl Bell {
    fn new() -> Result<Bell, LoopError> {
        // SAFETY: plain syscall; the descriptor is checked and then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(LoopError::EventFd(std::io::Error::last_os_error()));
        }
        Ok(Bell {
            // SAFETY: fd is a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            asleep: AtomicBool::new(false),
        })
    }

    fn ring(&self) {
        if self.asleep.swap(false, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a valid buffer to our eventfd. A failure can only be
            // EAGAIN (counter saturated), which still leaves the descriptor readable.
            unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    fn drain(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a valid buffer; non-blocking descriptor.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }
}

impl Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.ring();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ring();
    }
}

/// A tokio channel receiver, bounded or not, as [`drain`] polls it.
trait PollRecv<T> {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>>;
}

impl<T> PollRecv<T> for mpsc::Receiver<T> {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }
}

impl<T> PollRecv<T> for mpsc::UnboundedReceiver<T> {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }
}

/// Takes up to `max` items from `rx` into `f`; `Err(())` when the channel is closed.
fn drain<T>(
    rx: &mut impl PollRecv<T>,
    cx: &mut Context<'_>,
    max: usize,
    mut f: impl FnMut(T),
) -> Result<usize, ()> {
    let mut n = 0;
    while n < max {
        match rx.poll_next(cx) {
            Poll::Ready(Some(v)) => {
                f(v);
                n += 1;
            }
            Poll::Ready(None) => return Err(()),
            Poll::Pending => break,
        }
    }
    Ok(n)
}

/// The routing thread's state.
pub(crate) struct RouteLoop {
    router: Router,
    inputs: Inputs,
    opts: LoopOptions,
    senders: Arc<Mutex<HashMap<u64, AttachSender>>>,
    attachments: Vec<PolledProcess>,
    bell: Arc<Bell>,
    /// Set when the stop channel or the link channel closed.
    stopping: bool,
}

impl RouteLoop {
    /// A loop over `router`; `senders` is the map its local port delivers through.
    pub(crate) fn new(
        router: Router,
        inputs: Inputs,
        opts: LoopOptions,
        senders: Arc<Mutex<HashMap<u64, AttachSender>>>,
    ) -> Result<RouteLoop, LoopError> {
        Ok(RouteLoop {
            router,
            inputs,
            opts,
            senders,
            attachments: Vec::new(),
            bell: Arc::new(Bell::new()?),
            stopping: false,
        })
    }

    /// Runs until the stop channel closes (or the link layer goes away).
    pub(crate) fn run(mut self) {
        let waker = Waker::from(self.bell.clone());
        let mut cx = Context::from_waker(&waker);
        let mut next_tick = Instant::now() + self.opts.tick;
        let mut last_work = Instant::now();
        let mut armed = false;
        while !self.stopping {
            let work = self.pass(&mut cx);
            let now = Instant::now();
            if now >= next_tick {
                self.router.tick();
                self.router.flush_local();
                // Like MissedTickBehavior::Delay: a late tick does not cause a burst of ticks.
                next_tick = now + self.opts.tick;
            }
            if work > 0 {
                if armed {
                    self.bell.asleep.store(false, Ordering::SeqCst);
                    armed = false;
                }
                last_work = now;
                continue;
            }
            if now.saturating_duration_since(last_work) < self.opts.spin {
                // Let a process that is about to answer have this CPU (2 cores, many
                // processes); on an idle core sched_yield returns at once. A busy spin
                // (spin_loop) measured 15-20x worse round trips on a loaded 2-core host: it
                // keeps the client or the server off the core it needs.
                std::thread::yield_now();
                // While spinning, look for work with plain loads only: a full pass registers
                // a waker on every channel (atomic read-modify-writes, a waker clone and drop
                // each), which made the spin cost more than the routing it waits for.
                while !self.anything_waiting()
                    && Instant::now().saturating_duration_since(last_work) < self.opts.spin
                {
                    std::thread::yield_now();
                }
                continue;
            }
            if !armed {
                // Say we are about to sleep, then make one more full pass: a channel message
                // sent after that pass's poll finds the flag and writes the eventfd.
                self.bell.asleep.store(true, Ordering::SeqCst);
                armed = true;
                continue;
            }
            self.sleep(next_tick);
            self.bell.asleep.store(false, Ordering::SeqCst);
            armed = false;
            // Whatever woke us is handled in the next pass, and spinning after it catches the
            // messages that follow it.
            last_work = Instant::now();
        }
        tracing::info!("routing thread stopping");
    }

    /// Whether any source has something for a pass, checked without registering wakers (a
    /// hint for the spin: the pass itself decides).
    fn anything_waiting(&self) -> bool {
        self.attachments.iter().any(|p| p.has_pending())
            || !self.inputs.link_rx.is_empty()
            || !self.inputs.cmd_rx.is_empty()
            || !self.inputs.job_rx.is_empty()
            || !self.inputs.attach_rx.is_empty()
            || self.inputs.stop_rx.is_closed()
    }

    /// One pass over every source; returns how many items it handled.
    fn pass(&mut self, cx: &mut Context<'_>) -> usize {
        let mut work = 0;
        let router = &mut self.router;
        let senders = &self.senders;
        let attachments = &mut self.attachments;
        // An error means the accept task ended (the runtime is stopping): keep serving who is
        // attached until the stop channel closes.
        if let Ok(n) = drain(&mut self.inputs.attach_rx, cx, CHANNEL_DRAIN_MAX, |p| {
            let id = p.id();
            let server = p.role() == Role::Server;
            senders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, p.sender());
            attachments.push(p);
            router.handle_local(LocalEvent::Attached { id, server });
        }) {
            work += n;
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.attachments.len() {
            let p = &mut self.attachments[i];
            let from = p.id();
            match p.try_recv(ATTACH_BATCH_MAX, now) {
                Ok(batch) => {
                    work += batch.len();
                    for env in batch {
                        self.router.handle_local(LocalEvent::Message { from, env });
                    }
                    i += 1;
                }
                Err(e) => {
                    tracing::info!(attachment = from, "attachment ended: {e}");
                    self.attachments.swap_remove(i);
                    self.senders
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&from);
                    self.router.handle_local(LocalEvent::Detached { id: from });
                }
            }
        }
        let router = &mut self.router;
        match drain(&mut self.inputs.link_rx, cx, CHANNEL_DRAIN_MAX, |ev| {
            router.handle_link(ev)
        }) {
            Ok(n) => work += n,
            Err(()) => self.stopping = true,
        }
        if let Ok(n) = drain(&mut self.inputs.cmd_rx, cx, CHANNEL_DRAIN_MAX, |c| {
            router.handle_cmd(c)
        }) {
            work += n;
        }
        if let Ok(n) = drain(&mut self.inputs.job_rx, cx, CHANNEL_DRAIN_MAX, |ev| {
            router.handle_job_event(ev)
        }) {
            work += n;
        }
        if drain(&mut self.inputs.stop_rx, cx, CHANNEL_DRAIN_MAX, |_| {}).is_err() {
            self.stopping = true;
        }
        self.router.flush_local();
        work
    }

    /// Sleeps until a doorbell rings, a channel wakes us, or the next deadline.
    fn sleep(&mut self, next_tick: Instant) {
        let mut slept: Vec<usize> = Vec::with_capacity(self.attachments.len());
        for (i, p) in self.attachments.iter().enumerate() {
            if !p.prepare_sleep() {
                // A message arrived meanwhile: withdraw and go handle it.
                for &j in &slept {
                    self.attachments[j].awake();
                }
                p.awake();
                return;
            }
            slept.push(i);
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.attachments.len() + 1);
        fds.push(pollfd(self.bell.fd.as_raw_fd()));
        let mut wait = next_tick.saturating_duration_since(Instant::now());
        for p in &self.attachments {
            fds.push(pollfd(p.doorbell_fd()));
            wait = wait.min(p.liveness_interval());
        }
        let wait = wait.min(Duration::from_millis(SLEEP_MAX_MS));
        // Round up: poll's unit is the millisecond, and waking early only costs a pass.
        let timeout_ms = wait.as_micros().div_ceil(1_000) as libc::c_int;
        // SAFETY: fds is a valid array of fds.len() pollfd entries for the call's duration.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        for p in &self.attachments {
            p.awake();
        }
        if r <= 0 {
            // Timeout, or EINTR: the next pass looks at everything anyway.
            return;
        }
        if fds[0].revents != 0 {
            self.bell.drain();
        }
        for (p, fd) in self.attachments.iter().zip(&fds[1..]) {
            if fd.revents != 0 {
                p.drain_doorbells();
            }
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
