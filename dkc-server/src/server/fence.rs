//! Per-key serialization of fenced (value-dependent) writes at the primary.
//!
//! A fenced write (cas, incr/decr, add, replace, append/prepend, delete with a CAS token) is
//! computed from the version the primary holds. If a second one on the same key were computed
//! from the first one's result while the first still waits for its replicas, and the first
//! then failed (and was rolled back), the second would carry a base no replica ever held as a
//! committed state. So the primary admits one fenced write per key at a time: a fenced write
//! of a key whose previous fenced write is still waiting for acknowledgements is queued (the
//! worker does not block) and runs once the previous one is answered and, if it failed,
//! rolled back. Queues are bounded ([`FENCE_QUEUED_MAX`] per stripe); a request that waited
//! longer than [`FENCE_QUEUE_WAIT_RCVTIMEOUTS`] RCVTIMEOUTs in the queue is answered
//! `E_TIMEOUT` without being executed, and so is one whose whole wait on this host, from the
//! moment chmpx queued it for this process, passed the server's `queue_age_max` (see
//! `worker::stale_refusal`): the key may have been taken over meanwhile.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chmpx::attach::Envelope;
use crossbeam_channel::Sender;

/// Stripes of the in-flight set (each a mutex over its keys).
pub const FENCE_STRIPES: usize = 64;
/// Most requests queued behind in-flight fenced writes, per stripe; past it a fenced write of
/// a busy key is refused at once (`E_UNAVAILABLE`, nothing written).
pub const FENCE_QUEUED_MAX: usize = 256;

/// How long a queued fenced write may wait for its key, in RCVTIMEOUTs: the write ahead of it
/// may take one whole RCVTIMEOUT to fail and be taken back. Past it, the request is answered
/// `E_TIMEOUT` without being executed.
pub const FENCE_QUEUE_WAIT_RCVTIMEOUTS: u32 = 2;

const _: () =
    assert!(FENCE_STRIPES >= 1 && FENCE_QUEUED_MAX >= 1 && FENCE_QUEUE_WAIT_RCVTIMEOUTS >= 1);

/// A queued request, handed back to be served when its key is free.
pub struct Ready {
    /// The client's request.
    pub env: Envelope,
    /// When it arrived.
    pub since: Instant,
    /// The key, already reserved for it.
    pub ticket: Ticket,
}

/// What [`Fences::admit`] decided.
pub enum Admit {
    /// The key is free and now reserved: serve the request, keep the ticket until answered.
    Go(Ticket, Envelope),
    /// The key is busy: the request was queued and comes back through the ready channel.
    Queued,
    /// The key is busy and the stripe's queue is full: answer the request with an error.
    Full(Envelope),
}

#[derive(Default)]
struct Stripe {
    /// Keys with a fenced write in flight, each with the requests waiting for it.
    busy: HashMap<Vec<u8>, VecDeque<(Envelope, Instant)>>,
    /// Requests queued in this stripe.
    queued: usize,
}

/// The in-flight set.
pub struct Fences {
    stripes: Vec<Mutex<Stripe>>,
    hasher: RandomState,
    ready: Sender<Ready>,
}

/// A reserved key; dropping it frees the key (or hands it to the next queued request).
pub struct Ticket {
    fences: Arc<Fences>,
    key: Vec<u8>,
    armed: bool,
}

impl Fences {
    /// An empty set whose queued requests, once their key is free, go to `ready`.
    pub fn new(ready: Sender<Ready>) -> Arc<Fences> {
        Arc::new(Fences {
            stripes: (0..FENCE_STRIPES).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            ready,
        })
    }

    fn stripe(&self, key: &[u8]) -> MutexGuard<'_, Stripe> {
        let i = (self.hasher.hash_one(key) % FENCE_STRIPES as u64) as usize;
        // A panic while holding a stripe leaves plain data behind: keep using it.
        self.stripes[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves `key` for `env`, or queues `env` behind the fenced write in flight.
    pub fn admit(self: &Arc<Self>, key: &[u8], env: Envelope, since: Instant) -> Admit {
        let mut s = self.stripe(key);
        let queued = s.queued;
        match s.busy.get_mut(key) {
            None => {
                s.busy.insert(key.to_vec(), VecDeque::new());
                drop(s);
                Admit::Go(
                    Ticket {
                        fences: self.clone(),
                        key: key.to_vec(),
                        armed: true,
                    },
                    env,
                )
            }
            Some(_) if queued >= FENCE_QUEUED_MAX => Admit::Full(env),
            Some(q) => {
                q.push_back((env, since));
                s.queued += 1;
                Admit::Queued
            }
        }
    }

    /// Whether `key` is reserved now (for tests and diagnostics).
    pub fn is_busy(&self, key: &[u8]) -> bool {
        self.stripe(key).busy.contains_key(key)
    }

    /// Frees `key`, or hands it to the next request queued for it.
    fn release(self: &Arc<Self>, key: &[u8]) {
        loop {
            let (env, since) = {
                let mut s = self.stripe(key);
                let next = s.busy.get_mut(key).and_then(VecDeque::pop_front);
                match next {
                    Some(n) => {
                        s.queued -= 1;
                        n
                    }
                    None => {
                        s.busy.remove(key);
                        return;
                    }
                }
            };
            let ticket = Ticket {
                fences: self.clone(),
                key: key.to_vec(),
                armed: true,
            };
            match self.ready.send(Ready { env, since, ticket }) {
                Ok(()) => return,
                Err(unsent) => {
                    // Shutting down: nobody serves queued requests any more (their clients
                    // time out, nothing was written). Drop it without recursing.
                    let mut r = unsent.into_inner();
                    r.ticket.armed = false;
                    tracing::debug!(msg_id = r.env.msg_id, "queued fenced write dropped");
                }
            }
        }
    }
}

impl Ticket {
    /// The reserved key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            let fences = self.fences.clone();
            fences.release(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chmpx::attach::{Kind, Route};

    fn env(id: u64) -> Envelope {
        Envelope {
            msg_id: id,
            kind: Kind::Request,
            route: Route::HashChain(0),
            flags: 0,
            body: Vec::new(),
            queued_ns: 0,
        }
    }

    #[test]
    fn a_second_fenced_write_of_a_key_waits_for_the_first() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let f = Fences::new(tx);
        let now = Instant::now();
        let Admit::Go(first, _) = f.admit(b"k", env(1), now) else {
            panic!("a free key is admitted")
        };
        assert!(matches!(f.admit(b"k", env(2), now), Admit::Queued));
        assert!(matches!(f.admit(b"k", env(3), now), Admit::Queued));
        let Admit::Go(other, _) = f.admit(b"other", env(4), now) else {
            panic!("another key is independent")
        };
        assert!(
            rx.try_recv().is_err(),
            "nothing runs while the first is in flight"
        );
        drop(first);
        let second = rx
            .try_recv()
            .expect("the next queued request is handed over");
        assert_eq!(second.env.msg_id, 2);
        assert!(
            f.is_busy(b"k"),
            "the key stays reserved for the handed-over request"
        );
        assert!(rx.try_recv().is_err(), "one at a time");
        drop(second);
        let third = rx.try_recv().expect("then the one after");
        assert_eq!(third.env.msg_id, 3);
        drop(third);
        assert!(!f.is_busy(b"k"), "free once the queue is empty");
        assert!(f.is_busy(b"other"));
        drop(other);
        assert!(!f.is_busy(b"other"));
    }

    #[test]
    fn a_full_stripe_refuses_instead_of_queueing() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let f = Fences::new(tx);
        let now = Instant::now();
        let Admit::Go(held, _) = f.admit(b"k", env(0), now) else {
            panic!()
        };
        for i in 0..FENCE_QUEUED_MAX as u64 {
            assert!(matches!(f.admit(b"k", env(i + 1), now), Admit::Queued));
        }
        let Admit::Full(back) = f.admit(b"k", env(999), now) else {
            panic!("the bound holds")
        };
        assert_eq!(back.msg_id, 999);
        drop(held);
        assert_eq!(rx.try_recv().unwrap().env.msg_id, 1);
    }

    #[test]
    fn queued_requests_are_dropped_cleanly_when_nobody_serves_them() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let f = Fences::new(tx);
        let now = Instant::now();
        let Admit::Go(held, _) = f.admit(b"k", env(0), now) else {
            panic!()
        };
        for i in 1..=3 {
            assert!(matches!(f.admit(b"k", env(i), now), Admit::Queued));
        }
        drop(rx);
        drop(held);
        assert!(!f.is_busy(b"k"), "every queued request was let go");
    }
}
