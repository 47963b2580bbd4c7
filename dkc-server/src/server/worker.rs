//! The receive loop of one worker thread: take a message from chmpx, execute it, answer it, and
//! start the replication of what it wrote.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chmpx::attach::envelope::FLAG_UNMERGED;
use chmpx::attach::{target_count, Attachment, Envelope, Kind, Route};
use chmpx::config::AckLevel;
use chmpx::merge::protocol::is_merge_body;
use crossbeam_channel::Sender;
use dkc_client::proto::{
    decode_request, encode_request, encode_response, ErrorCode, ProtoError, Request, Response,
    WireRecord,
};

use super::replicator::{failed_to_send, AckJob, AckRule, ReplicaWait};
use crate::executor::Executor;
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
    /// Set on SIGTERM: finish what is in hand and leave.
    pub stop: Arc<AtomicBool>,
}

/// One worker: the shared state plus its handle to the ack waiters.
pub struct Worker {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Where writes waiting for replicas go.
    pub acks: Sender<AckJob>,
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
        if env.flags & FLAG_UNMERGED != 0 {
            if let Some(refusal) = unmerged_read_refusal(&req) {
                if wants_reply {
                    send_reply(&s.att, &env, &refusal);
                }
                return;
            }
        }
        let done = s.exec.execute(&req);
        if done.replicate.is_empty() || matches!(req, Request::Replicate { .. }) {
            if wants_reply {
                send_reply(&s.att, &env, &done.response);
            }
            return;
        }
        self.replicate(env, done.response, done.replicate, wants_reply);
    }

    /// Sends the written records to the key's other owners and answers the client as the
    /// acknowledgement level says.
    fn replicate(&self, env: Envelope, response: Response, records: Vec<WireRecord>, reply: bool) {
        let s = &self.shared;
        if s.replication_disabled {
            if reply {
                send_reply(&s.att, &env, &response);
            }
            return;
        }
        let mut waits = Vec::with_capacity(records.len());
        let deadline = Instant::now() + s.rcv_timeout;
        for rec in records {
            let (key, version) = (rec.key.clone(), rec.version);
            let route = Route::HashChain(k2hash::key_hash(&rec.key));
            let body = match encode_request(&Request::Replicate { records: vec![rec] }) {
                Ok(b) => b,
                Err(e) => {
                    let r = Response::error(
                        ErrorCode::Unavailable,
                        format!("written on the primary, but not replicated: {e}"),
                    );
                    if reply {
                        send_reply(&s.att, &env, &r);
                    }
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
                        send_reply(&s.att, &env, &failed_to_send(e));
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
        };
        if let Err(unsent) = self.acks.send(job) {
            // The waiters are gone (shutting down): wait here instead.
            let (env, answer) = unsent.0.wait(s.rcv_timeout, s.exec.store());
            send_reply(&s.att, &env, &answer);
        }
    }
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
    use dkc_client::proto::SetMode;

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
