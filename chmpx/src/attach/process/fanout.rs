//! Fan-out requests: one request that chmpx delivers to several nodes (`Route::HashChain`,
//! `Route::AllServers`), answered once by each.
//!
//! ```text
//!  submit_fanout ──Request──▶ chmpx ──▶ node A, node B, ...
//!        ◀── Event FLAG_TARGET_COUNT (n) ──┘   (sent before any delivery: n answers to expect)
//!        ◀── Response from A ◀── Response from B ...   (each with the request's msg_id)
//! ```
//!
//! The slot of a fan-out request collects the count and every response; [`PendingFanout::wait`]
//! returns as soon as the caller's rule says it has enough (a quorum, say), when every expected
//! answer is in, or at the deadline with what arrived. What a response means (an
//! acknowledgement, a refusal) is the caller's business: this module only counts messages.
//!
//! A response chmpx made itself ([`FLAG_CHMPX_ERROR`]) that arrives before the count notice
//! means chmpx refused the message as a whole (the router sends the notice before it delivers
//! anything), so the fan-out is complete with that one answer. A request on a single-node route
//! (`HashFirst`, `Node`) expects exactly one answer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, Attachment, Inner, Slot};
use crate::attach::envelope::{Envelope, Kind, Route, FLAG_CHMPX_ERROR};
use crate::attach::error::AttachError;

/// Responses one fan-out request keeps; more are dropped (a fan-out reaches at most every
/// server node of a cluster, far fewer than this).
pub const FANOUT_RESPONSES_MAX: usize = 4096;

/// What a fan-out request has collected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutProgress {
    /// How many nodes chmpx delivered the request to, once its notice arrived.
    pub expected: Option<u32>,
    /// The responses, in arrival order (one per node that answered; chmpx's own refusals for
    /// nodes it could not reach are among them, flagged `FLAG_CHMPX_ERROR`).
    pub responses: Vec<Envelope>,
    /// The deadline passed before the wait ended otherwise.
    pub timed_out: bool,
}

impl FanoutProgress {
    /// Every expected response is in: nothing more will come.
    pub fn is_complete(&self) -> bool {
        self.expected
            .is_some_and(|n| self.responses.len() >= n as usize)
    }

    pub(super) fn record_count(&mut self, count: u32) {
        if self.expected.is_none() {
            self.expected = Some(count);
        }
    }

    pub(super) fn record_response(&mut self, env: Envelope) {
        if self.responses.len() >= FANOUT_RESPONSES_MAX {
            tracing::warn!(
                msg_id = env.msg_id,
                max = FANOUT_RESPONSES_MAX,
                "fan-out response beyond the limit dropped"
            );
            return;
        }
        let refused_whole = self.expected.is_none() && env.flags & FLAG_CHMPX_ERROR != 0;
        self.responses.push(env);
        if refused_whole {
            self.expected = Some(self.responses.len() as u32);
        }
    }
}

/// A fan-out request sent and not yet fully answered (see [`Attachment::submit_fanout`]).
/// Dropping it forgets the request; later answers are discarded.
pub struct PendingFanout {
    inner: Arc<Inner>,
    msg_id: u64,
    done: bool,
}

impl Attachment {
    /// Sends a request that chmpx may deliver to several nodes and returns a handle that
    /// collects chmpx's count notice and every node's response (see [`PendingFanout::wait`]).
    /// Unlike [`Attachment::submit`], the count notice does not reach [`Attachment::recv`].
    pub fn submit_fanout(
        &self,
        route: Route,
        body: &[u8],
        timeout: Duration,
    ) -> Result<PendingFanout, AttachError> {
        let deadline = Instant::now() + timeout;
        let msg_id = self.inner.next_msg_id.fetch_add(1, Ordering::Relaxed);
        self.inner.check_body(body.len())?;
        let conn = self.inner.live_conn(deadline)?;
        let expected = match route {
            Route::HashChain(_) | Route::AllServers => None,
            // chmpx delivers these to one node and sends no notice.
            Route::HashFirst(_) | Route::Node(_) | Route::Reply { .. } => Some(1),
        };
        let progress = FanoutProgress {
            expected,
            ..FanoutProgress::default()
        };
        // Register before pushing: the notice and answers may come back before push returns.
        lock(&self.inner.dispatch).pending.insert(
            msg_id,
            Slot::Fanout {
                epoch: conn.epoch,
                progress,
                lost: false,
            },
        );
        if let Err(e) = self
            .inner
            .push(&conn, msg_id, Kind::Request, route, body, deadline)
        {
            lock(&self.inner.dispatch).pending.remove(&msg_id);
            return Err(e);
        }
        Ok(PendingFanout {
            inner: self.inner.clone(),
            msg_id,
            done: false,
        })
    }
}

impl PendingFanout {
    /// The request's `msg_id`.
    pub fn msg_id(&self) -> u64 {
        self.msg_id
    }

    /// Waits until `enough(&progress)` holds, every expected response is in, or `deadline`
    /// passes (then `timed_out` is set), and returns what was collected. `enough` is called
    /// with the dispatch lock held, each time something new arrived: keep it cheap. Fails only
    /// when the attachment was lost while waiting ([`AttachError::ChmpxRestarted`]).
    pub fn wait(
        mut self,
        deadline: Instant,
        mut enough: impl FnMut(&FanoutProgress) -> bool,
    ) -> Result<FanoutProgress, AttachError> {
        let inner = self.inner.clone();
        // (expected, responses) last shown to `enough`: call it again only on news.
        let mut seen: Option<(Option<u32>, usize)> = None;
        loop {
            let mut d = lock(&inner.dispatch);
            match d.pending.get(&self.msg_id) {
                Some(Slot::Fanout { progress, lost, .. }) => {
                    if *lost {
                        d.pending.remove(&self.msg_id);
                        self.done = true;
                        return Err(AttachError::ChmpxRestarted {
                            msg_id: self.msg_id,
                        });
                    }
                    let now_seen = (progress.expected, progress.responses.len());
                    let news = seen != Some(now_seen);
                    seen = Some(now_seen);
                    if progress.is_complete() || (news && enough(progress)) {
                        return Ok(self.take(&mut d.pending, false));
                    }
                }
                _ => {
                    self.done = true;
                    return Err(AttachError::Runtime(format!(
                        "no pending fan-out request {}",
                        self.msg_id
                    )));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(self.take(&mut d.pending, true));
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

    /// Waits for every expected response, up to `timeout`.
    pub fn wait_all(self, timeout: Duration) -> Result<FanoutProgress, AttachError> {
        self.wait(Instant::now() + timeout, |_| false)
    }

    fn take(&mut self, pending: &mut HashMap<u64, Slot>, timed_out: bool) -> FanoutProgress {
        self.done = true;
        match pending.remove(&self.msg_id) {
            Some(Slot::Fanout { mut progress, .. }) => {
                progress.timed_out = timed_out;
                progress
            }
            _ => FanoutProgress {
                timed_out,
                ..FanoutProgress::default()
            },
        }
    }
}

impl Drop for PendingFanout {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.inner.dispatch).pending.remove(&self.msg_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(flags: u16) -> Envelope {
        Envelope {
            msg_id: 4,
            kind: Kind::Response,
            route: Route::Reply {
                node: 1,
                attachment: 2,
                msg_id: 4,
            },
            flags,
            body: vec![],
            queued_ns: 0,
        }
    }

    #[test]
    fn progress_completes_at_the_announced_count() {
        let mut p = FanoutProgress::default();
        assert!(!p.is_complete(), "nothing known yet");
        p.record_count(2);
        p.record_count(9);
        assert_eq!(p.expected, Some(2), "the first notice counts");
        p.record_response(response(0));
        assert!(!p.is_complete());
        p.record_response(response(FLAG_CHMPX_ERROR));
        assert!(
            p.is_complete(),
            "a refusal for one node is one of the answers"
        );
        let mut zero = FanoutProgress::default();
        zero.record_count(0);
        assert!(
            zero.is_complete(),
            "delivered to nobody: nothing to wait for"
        );
    }

    #[test]
    fn a_chmpx_refusal_before_the_notice_ends_the_fanout() {
        let mut p = FanoutProgress::default();
        p.record_response(response(FLAG_CHMPX_ERROR));
        assert_eq!(p.expected, Some(1));
        assert!(p.is_complete());
        // A server's answer before the notice (not possible from chmpx's router, but harmless)
        // does not end it.
        let mut q = FanoutProgress::default();
        q.record_response(response(0));
        assert_eq!(q.expected, None);
        assert!(!q.is_complete());
    }

    /// Plays chmpx over the real transport: accepts one process, and for its fan-out
    /// request sends the count notice `announced` and then `answers` responses.
    #[test]
    fn fanout_over_the_transport_collects_the_notice_and_every_answer() {
        use crate::attach::{AttachOptions, Role, FLAG_TARGET_COUNT};
        let (cluster, ctlport, rt, mut listener) =
            super::super::tests::bound_listener("fan", 31_000);
        let (c2, done) = (
            cluster.clone(),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let done2 = done.clone();
        let client = std::thread::spawn(move || {
            let a =
                Attachment::connect(&c2, ctlport, Role::Server, AttachOptions::default()).unwrap();
            let t = Duration::from_secs(5);
            // 1: stop as soon as two answers are in (a quorum), without the third.
            let p = a.submit_fanout(Route::HashChain(7), b"q", t).unwrap();
            let got = p
                .wait(Instant::now() + t, |p| p.responses.len() >= 2)
                .unwrap();
            assert_eq!(
                (got.expected, got.responses.len(), got.timed_out),
                (Some(3), 2, false)
            );
            // 2: wait for all: the third never comes, so the deadline ends it.
            let p = a.submit_fanout(Route::HashChain(7), b"all", t).unwrap();
            let got = p.wait_all(Duration::from_millis(300)).unwrap();
            assert_eq!(
                (got.expected, got.responses.len(), got.timed_out),
                (Some(3), 2, true)
            );
            // 3: delivered to nobody: complete at once.
            let p = a.submit_fanout(Route::AllServers, b"none", t).unwrap();
            let got = p.wait_all(t).unwrap();
            assert_eq!(
                (got.expected, got.responses.len(), got.timed_out),
                (Some(0), 0, false)
            );
            // The notices went to the slots, never to the incoming queue.
            assert!(a.recv(Duration::from_millis(50)).unwrap().is_none());
            done2.store(true, std::sync::atomic::Ordering::Release);
        });
        rt.block_on(async {
            let mut p = tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .expect("the process attaches")
                .unwrap();
            let me = p.id();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let Ok(batch) =
                    tokio::time::timeout(Duration::from_millis(100), p.recv_batch(16)).await
                else {
                    if client.is_finished() {
                        break;
                    }
                    continue;
                };
                // The process leaving (once it is done) ends the loop too.
                let Ok(batch) = batch else { break };
                for env in batch {
                    let reply = Route::Reply {
                        node: 1,
                        attachment: me,
                        msg_id: env.msg_id,
                    };
                    let (n, answers) = match env.body.as_slice() {
                        b"none" => (0u32, 0),
                        _ => (3, 2),
                    };
                    let notice = Envelope {
                        msg_id: env.msg_id,
                        kind: Kind::Event,
                        route: reply,
                        flags: FLAG_TARGET_COUNT,
                        body: n.to_le_bytes().to_vec(),
                        queued_ns: 0,
                    };
                    p.send(&notice).unwrap();
                    for i in 0..answers {
                        let r = Envelope {
                            msg_id: env.msg_id,
                            kind: Kind::Response,
                            route: reply,
                            flags: 0,
                            body: vec![i],
                            queued_ns: 0,
                        };
                        p.send(&r).unwrap();
                    }
                }
            }
        });
        client.join().expect("the process side passed");
    }

    #[test]
    fn responses_beyond_the_limit_are_dropped() {
        let mut p = FanoutProgress::default();
        for _ in 0..FANOUT_RESPONSES_MAX + 3 {
            p.record_response(response(0));
        }
        assert_eq!(p.responses.len(), FANOUT_RESPONSES_MAX);
    }
}
