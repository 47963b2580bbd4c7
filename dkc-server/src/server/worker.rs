//! The receive loop of one worker thread: take a message from chmpx, execute it, answer it, and
//! start the replication of what it wrote.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chmpx::attach::envelope::{monotonic_now_ns, FLAG_SOLE_OWNER, FLAG_UNMERGED};
use chmpx::attach::{target_count, Attachment, Envelope, Kind, Route};
use chmpx::config::AckLevel;
use chmpx::merge::protocol::is_merge_body;
use crossbeam_channel::Sender;
use dkc_client::proto::{
    decode_request, encode_request, encode_response, ErrorCode, ProtoError, Request, Response,
    SetMode, WireRecord,
};

use super::fence::{Admit, Fences, Ready, Ticket, FENCE_QUEUE_WAIT_RCVTIMEOUTS};
use super::replicator::{failed_to_send, take_back, AckJob, AckRule, ReplicaWait};
use crate::executor::{Executed, Executor};
use crate::merge;

/// How long a worker waits for a message before it looks at the stop flag again.
pub const RECV_POLL_MS: u64 = 100;
/// Pause after a failed receive (chmpx gone), so a worker does not spin while it re-attaches.
pub const RECV_ERROR_PAUSE_MS: u64 = 200;

/// What every worker shares.
pub struct Shared {
    /// The command layer.
    pub exec: Executor,
    /// The attachment to the local chmpx (clones share one connection).
    pub att: Attachment,
    /// ACKLEVEL.
    pub ack_level: AckLevel,
    /// REPLICA (a quorum is a majority of REPLICA + 1 owners).
    pub replica: u32,
    /// Test-only (`DKC_TEST_DISABLE_REPLICATION=1`): never send a Replicate, answer every
    /// write as acknowledged. A build with this on loses writes by design.
    pub replication_disabled: bool,
    /// RCVTIMEOUT.
    pub rcv_timeout: Duration,
    /// Longest a client command may have waited on this host since chmpx queued it for us;
    /// older ones are refused unexecuted (see [`crate::server::settings::queue_age_max`]).
    pub queue_age_max: Duration,
    /// Set on SIGTERM: finish what is in hand and leave.
    pub stop: Arc<AtomicBool>,
}

/// One worker: the shared state plus its handle to the ack waiters.
pub struct Worker {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Where writes waiting for replicas go.
    pub acks: Sender<AckJob>,
    /// Keys with a fenced write waiting for replicas (one at a time per key).
    pub fences: Arc<Fences>,
}

impl Worker {
    /// Receives and handles messages until the stop flag is set.
    pub fn run(&self) {
        let s = &self.shared;
        while !s.stop.load(Ordering::Acquire) {
            match s.att.recv(Duration::from_millis(RECV_POLL_MS)) {
                Ok(Some(env)) => self.handle(env),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "receiving from chmpx failed; retrying");
                    std::thread::sleep(Duration::from_millis(RECV_ERROR_PAUSE_MS));
                }
            }
        }
    }

    /// Handles one message from chmpx.
    pub fn handle(&self, env: Envelope) {
        match env.kind {
            Kind::Response => {
                tracing::debug!(msg_id = env.msg_id, "stray response ignored");
            }
            Kind::Event if target_count(&env).is_some() => {
                // The count notice of a Replicate whose wait already ended (the fan-out slot
                // takes the notices of the waits in progress): nothing to do.
                tracing::debug!(msg_id = env.msg_id, "stray count notice ignored");
            }
            Kind::Request | Kind::Event => self.serve(env),
        }
    }

    fn serve(&self, env: Envelope) {
        let s = &self.shared;
        let wants_reply = env.kind == Kind::Request;
        if is_merge_body(&env.body) {
            if wants_reply {
                let body = merge::handle_body(&s.exec, &env.body);
                reply_bytes(&s.att, &env, body);
            }
            return;
        }
        let req = match decode_request(&env.body) {
            Ok(req) => req,
            Err(e) => {
                let code = match e {
                    ProtoError::UnsupportedVersion { .. } => ErrorCode::Version,
                    _ => ErrorCode::BadRequest,
                };
                tracing::debug!(error = %e, "undecodable request");
                if wants_reply {
                    send_reply(&s.att, &env, &Response::error(code, e.to_string()));
                }
                return;
            }
        };
        // A command queued here before this node was stopped past a takeover must not run
        // against what may now be a stale value (the servers' own Replicates carry versions and
        // are applied by them, newest wins: they are not refused).
        if !matches!(req, Request::Replicate { .. }) && self.refused_as_stale(&env, wants_reply) {
            return;
        }
        if env.flags & FLAG_UNMERGED != 0 {
            if let Some(refusal) = unmerged_read_refusal(&req) {
                if wants_reply {
                    send_reply(&s.att, &env, &refusal);
                }
                return;
            }
        }
        let (env, ticket) = match self.fenced_key(&req, wants_reply) {
            None => (env, None),
            Some(key) => match self.fences.admit(key, env, Instant::now()) {
                Admit::Go(ticket, env) => (env, Some(ticket)),
                Admit::Queued => return,
                Admit::Full(env) => {
                    send_reply(&s.att, &env, &fence_queue_full());
                    return;
                }
            },
        };
        self.execute(env, &req, wants_reply, ticket);
    }

    /// Serves a fenced write that was queued behind another one of its key, now that the key
    /// is reserved for it.
    pub fn serve_ready(&self, ready: Ready) {
        let s = &self.shared;
        let Ready { env, since, ticket } = ready;
        // Its whole wait on this host counts (chmpx's ring, then the fence queue): the key may
        // have been taken over meanwhile.
        if self.refused_as_stale(&env, true) {
            return;
        }
        let wait_max = s.rcv_timeout * FENCE_QUEUE_WAIT_RCVTIMEOUTS;
        if since.elapsed() > wait_max {
            let waited = since.elapsed().as_millis();
            send_reply(
                &s.att,
                &env,
                &Response::error(
                    ErrorCode::Timeout,
                    format!(
                        "not executed, nothing written: it waited {waited} ms (more than \
                         {} ms, {FENCE_QUEUE_WAIT_RCVTIMEOUTS} x RCVTIMEOUT) for the previous \
                         conditional write of this key to be acknowledged; retry",
                        wait_max.as_millis()
                    ),
                ),
            );
            return;
        }
        match decode_request(&env.body) {
            Ok(req) => self.execute(env, &req, true, Some(ticket)),
            // It decoded when it was queued; it cannot fail now.
            Err(e) => send_reply(
                &s.att,
                &env,
                &Response::error(ErrorCode::BadRequest, e.to_string()),
            ),
        }
    }

    /// Refuses `env` if it waited longer than `queue_age_max` since chmpx queued it for this
    /// process (answered `E_UNAVAILABLE` when `wants_reply`, dropped otherwise); true if
    /// refused.
    fn refused_as_stale(&self, env: &Envelope, wants_reply: bool) -> bool {
        let s = &self.shared;
        let now_ns = monotonic_now_ns();
        let Some(refusal) = stale_refusal(env, now_ns, s.queue_age_max) else {
            return false;
        };
        crate::counters::bump(&s.exec.counters().refused_queued_too_long);
        tracing::info!(
            msg_id = env.msg_id,
            waited_ms = env.queue_age(now_ns).unwrap_or_default().as_millis() as u64,
            limit_ms = s.queue_age_max.as_millis() as u64,
            "command that waited too long on this host refused unexecuted"
        );
        if wants_reply {
            send_reply(&s.att, env, &refusal);
        }
        true
    }

    /// The key of a request that must be fenced here: a value-dependent write whose
    /// acknowledgements this primary waits for. `one` and events are not waited for and not
    /// fenced (see the replicator's module doc).
    fn fenced_key<'r>(&self, req: &'r Request, wants_reply: bool) -> Option<&'r [u8]> {
        let s = &self.shared;
        if !wants_reply || s.replication_disabled || s.ack_level == AckLevel::One {
            return None;
        }
        fenced_key(req)
    }

    fn execute(&self, env: Envelope, req: &Request, wants_reply: bool, ticket: Option<Ticket>) {
        let s = &self.shared;
        let done = s.exec.execute(req);
        if done.replicate.is_empty() || matches!(req, Request::Replicate { .. }) {
            if wants_reply {
                send_reply(&s.att, &env, &done.response);
            }
            return;
        }
        let sole = self.sole_owner_write(&env, req, &done.replicate);
        if sole {
            crate::counters::bump(&s.exec.counters().replicate_skipped_sole_owner);
            if wants_reply {
                send_reply(&s.att, &env, &done.response);
            }
            // A fenced write's key reservation (`ticket`) is freed here: it is acknowledged.
            return;
        }
        self.replicate(env, done, wants_reply, ticket);
    }

    /// Whether a write just applied here has nobody to be replicated to: chmpx marked the
    /// request [`FLAG_SOLE_OWNER`] (this node was the only owner of the key's slot when it
    /// routed it), every written record is of the request's own key (the one chmpx placed),
    /// and chmpx's placement has not changed since it queued the request. Read after the
    /// write: a change recorded later starts its merges and hand-offs after the write, and
    /// they carry it to any new owner. Anything else goes through the replication round trip,
    /// whose answer would have been "no other owner".
    fn sole_owner_write(&self, env: &Envelope, req: &Request, records: &[WireRecord]) -> bool {
        if env.flags & FLAG_SOLE_OWNER == 0 {
            return false;
        }
        let Some(key) = req.routing_key() else {
            return false;
        };
        records.iter().all(|r| r.key == key)
            && self.shared.att.placement_unchanged_since(env.queued_ns)
    }

    /// Sends the written records to the key's other owners and answers the client as the
    /// acknowledgement level says.
    fn replicate(&self, env: Envelope, done: Executed, reply: bool, ticket: Option<Ticket>) {
        let s = &self.shared;
        let Executed {
            response,
            replicate: records,
            fence,
        } = done;
        if s.replication_disabled {
            if reply {
                send_reply(&s.att, &env, &response);
            }
            return;
        }
        // A fenced write that fails before its wait is handed over is taken back here.
        let give_up = |answer: &Response| {
            if let Some(f) = &fence {
                take_back(&s.exec, &s.att, f, &[]);
            }
            if reply {
                send_reply(&s.att, &env, answer);
            }
        };
        let mut waits = Vec::with_capacity(records.len());
        let deadline = Instant::now() + s.rcv_timeout;
        for rec in records {
            let (key, version) = (rec.key.clone(), rec.version);
            let route = Route::HashChain(k2hash::key_hash(&rec.key));
            let body = match encode_request(&Request::Replicate { records: vec![rec] }) {
                Ok(b) => b,
                Err(e) => {
                    give_up(&Response::error(
                        ErrorCode::Unavailable,
                        format!("written on the primary, but not replicated: {e}"),
                    ));
                    return;
                }
            };
            // Nobody waits for the acknowledgements of `one`, or of a write sent as an event.
            let sent = if s.ack_level == AckLevel::One || !reply {
                s.att.send(route, &body).map(|_| None)
            } else {
                s.att.submit_fanout(route, &body, s.rcv_timeout).map(Some)
            };
            match sent {
                Ok(Some(pending)) => waits.push(ReplicaWait {
                    pending,
                    key,
                    version,
                }),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "replication could not be sent");
                    if reply && s.ack_level != AckLevel::One {
                        give_up(&failed_to_send(e));
                        return;
                    }
                }
            }
        }
        if !reply {
            return;
        }
        if waits.is_empty() {
            send_reply(&s.att, &env, &response);
            return;
        }
        let job = AckJob {
            request: env,
            response,
            waits,
            deadline,
            rule: AckRule {
                level: s.ack_level,
                replica: s.replica,
            },
            fence,
            ticket,
        };
        if let Err(unsent) = self.acks.send(job) {
            // The waiters are gone (shutting down): wait here instead.
            let (env, answer) = unsent.0.wait(s.rcv_timeout, &s.exec, &s.att);
            send_reply(&s.att, &env, &answer);
        }
    }
}

/// The key of a value-dependent write (fenced: see `crate::cmd::replicate`): cas, add,
/// replace, append, prepend, incr, decr and delete with a CAS token. Plain set, delete and
/// touch are last-writer-wins and not fenced.
pub fn fenced_key(req: &Request) -> Option<&[u8]> {
    match req {
        Request::Set { mode, key, .. } if *mode != SetMode::Set => Some(key),
        Request::Incr { key, .. } | Request::Decr { key, .. } => Some(key),
        Request::Delete { key, cas: Some(_) } => Some(key),
        _ => None,
    }
}

/// The answer to a client command that has waited longer than `limit` on this host since
/// chmpx queued it for this process (`now_ns` from [`monotonic_now_ns`]), or `None` when it may
/// run: it is fresh, or it carries no queue stamp.
///
/// Such a command was routed here while this node was the key's first owner; past `limit` a
/// co-owner may have taken the key over (this node was stopped or stalled past the heartbeat
/// timeout) and acknowledged writes this node has not seen. Run now, a conditional write would
/// compute from the stale value and mint a version newer than those acknowledged writes, a
/// plain write would carry a routing decision made before the takeover, and a read could
/// return data older than writes already acknowledged to other clients. So nothing of it runs.
pub fn stale_refusal(env: &Envelope, now_ns: u64, limit: Duration) -> Option<Response> {
    let waited = env.queue_age(now_ns)?;
    if waited <= limit {
        return None;
    }
    // E_UNAVAILABLE, not E_TIMEOUT: the drivers report a timeout as "may or may not have
    // run" and drop the server's text, while this one certainly did not run.
    Some(Response::error(
        ErrorCode::Unavailable,
        format!(
            "not executed, nothing written or read: it waited {} ms in this node's local queue, \
             more than {} ms (the smaller of RCVTIMEOUT and HEARTBEATTIMEOUT - \
             HEARTBEATINTERVAL); the node was probably stopped, and another owner may have \
             taken the key over meanwhile; retry",
            waited.as_millis(),
            limit.as_millis()
        ),
    ))
}

/// The answer to a fenced write refused because too many wait behind in-flight ones.
fn fence_queue_full() -> Response {
    Response::error(
        ErrorCode::Unavailable,
        format!(
            "not executed, nothing written: more than {} conditional writes are waiting for \
             earlier ones of the same keys to be acknowledged; retry shortly",
            super::fence::FENCE_QUEUED_MAX
        ),
    )
}

/// The answer to `req` when chmpx delivered it here although this node has not finished
/// merging the key's slot ([`FLAG_UNMERGED`]): `E_MERGING` for a pure read, which could
/// otherwise return stale data; `None` for anything else, served as usual (a write goes to the
/// first live owner and is replicated; `get_and_touch` writes too).
pub fn unmerged_read_refusal(req: &Request) -> Option<Response> {
    let what = match req {
        Request::Get { .. } => "get",
        Request::MultiGet { .. } => "multi-get",
        Request::ListSubkeys { .. } => "list-subkeys",
        _ => return None,
    };
    Some(Response::error(
        ErrorCode::Merging,
        format!(
            "{what}: this node has not finished merging the key's slot and no owner that has \
             is reachable; retry shortly"
        ),
    ))
}

/// Answers `env` with `resp`.
pub fn send_reply(att: &Attachment, env: &Envelope, resp: &Response) {
    match encode_response(resp) {
        Ok(body) => reply_bytes(att, env, body),
        Err(e) => tracing::error!(error = %e, "cannot encode a response"),
    }
}

/// Answers `env` with an encoded body, replacing a body too large for chmpx by an error.
fn reply_bytes(att: &Attachment, env: &Envelope, body: Vec<u8>) {
    let max = att.options().body_size_max;
    let body = if body.len() > max {
        let too_big = Response::error(
            ErrorCode::TooLarge,
            format!(
                "the answer is {} bytes, more than MAXPAYLOAD {max}",
                body.len()
            ),
        );
        encode_response(&too_big).unwrap_or_default()
    } else {
        body
    };
    if let Err(e) = att.reply(env, &body) {
        tracing::debug!(msg_id = env.msg_id, error = %e, "answer not delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_merging(r: Option<Response>) -> bool {
        matches!(
            r,
            Some(Response::Error {
                code: ErrorCode::Merging,
                ..
            })
        )
    }

    #[test]
    fn unmerged_pure_reads_are_refused_with_e_merging() {
        let key = b"k".to_vec();
        for req in [
            Request::Get { key: key.clone() },
            Request::MultiGet {
                keys: vec![key.clone(), b"other".to_vec()],
            },
            Request::ListSubkeys { key: key.clone() },
        ] {
            let answer = unmerged_read_refusal(&req);
            assert!(is_merging(answer.clone()), "{req:?} -> {answer:?}");
            let Some(Response::Error { message, .. }) = answer else {
                unreachable!("checked just above");
            };
            assert!(message.contains("retry"), "{message}");
        }
    }

    fn stamped(queued_ns: u64) -> Envelope {
        Envelope {
            msg_id: 1,
            kind: Kind::Request,
            route: Route::HashFirst(0),
            flags: 0,
            body: Vec::new(),
            queued_ns,
        }
    }

    #[test]
    fn a_command_older_than_the_limit_is_refused_unexecuted() {
        let limit = Duration::from_millis(800);
        let ms = 1_000_000u64;
        let now = 10_000 * ms;
        let refused = stale_refusal(&stamped(now - 2500 * ms), now, limit);
        let Some(Response::Error { code, message }) = refused else {
            panic!("refused: {refused:?}")
        };
        assert_eq!(code, ErrorCode::Unavailable);
        for part in [
            "not executed",
            "waited 2500 ms",
            "more than 800 ms",
            "retry",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        assert!(stale_refusal(&stamped(now - 801 * ms), now, limit).is_some());
    }

    #[test]
    fn a_fresh_unstamped_or_garbage_stamped_command_runs() {
        let limit = Duration::from_millis(800);
        let ms = 1_000_000u64;
        let now = 10_000 * ms;
        for queued_ns in [
            now,
            now - 800 * ms, // exactly at the limit
            0,              // no stamp
            now + 5,        // from the future: only a damaged header
            u64::MAX,
        ] {
            assert_eq!(
                stale_refusal(&stamped(queued_ns), now, limit),
                None,
                "{queued_ns}"
            );
        }
        assert_eq!(stale_refusal(&stamped(1), 0, limit), None, "clock at 0");
        assert!(stale_refusal(&stamped(1), u64::MAX, limit).is_some());
    }

    #[test]
    fn unmerged_writes_are_served() {
        let key = b"k".to_vec();
        for req in [
            Request::Set {
                key: key.clone(),
                value: b"v".to_vec(),
                mode: SetMode::Set,
                flags: 0,
                expire_at: 0,
            },
            Request::Delete {
                key: key.clone(),
                cas: None,
            },
            Request::Touch {
                key: key.clone(),
                expire_at: 0,
            },
            Request::GetAndTouch {
                key: key.clone(),
                expire_at: 0,
            },
            Request::Incr {
                key: key.clone(),
                delta: 1,
                initial: None,
                expire_at: 0,
            },
            Request::AddSubkey {
                key: key.clone(),
                subkey: b"s".to_vec(),
            },
            Request::Replicate { records: vec![] },
        ] {
            assert_eq!(unmerged_read_refusal(&req), None, "{req:?}");
        }
    }
}
