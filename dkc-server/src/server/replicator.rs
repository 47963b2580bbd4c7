//! Acknowledgement levels: how a write that must reach the other owners is answered.
//!
//! The primary sends one `Request::Replicate` on `Route::HashChain(key hash)`; chmpx delivers
//! it to every other live owner of the slot and first sends back an event flagged
//! [`FLAG_TARGET_COUNT`] saying how many owners it reached.
//! - `one`: the Replicate goes as an event; the client is answered at once (asynchronous
//!   replication, as K2HDKC does).
//! - `all` and `quorum`: the Replicate goes as a request and the client is answered when the
//!   first replica acknowledges, or at once when chmpx reached no other owner (a worker answers
//!   that notice to our own pending request, see `worker`).
//!
//! Limitation (the attach API delivers one response per request id): with REPLICA = 1 (two
//! owners, the default) `all` and `quorum` are exact; with REPLICA = 2 `quorum` is exact and
//! `all` waits for one replica of two; beyond that both wait for one replica. Lifting it needs
//! a fan-out wait in `chmpx::attach` (collect `FLAG_TARGET_COUNT` and that many responses).

use std::time::{Duration, Instant};

use chmpx::attach::{AttachError, Envelope, PendingResponse};
use chmpx::daemon::FLAG_CHMPX_ERROR;
use dkc_client::proto::{decode_response, ErrorCode, Response};
use k2hash::K2Hash;

pub use chmpx::daemon::FLAG_TARGET_COUNT;

/// A client write waiting for its replicas.
pub struct AckJob {
    /// The client's request envelope (answered by route).
    pub request: Envelope,
    /// What to answer once acknowledged.
    pub response: Response,
    /// The Replicate request in flight.
    pub pending: PendingResponse,
    /// When to give up.
    pub deadline: Instant,
    /// The key and version the primary wrote, to tell a write that lost on a replica from one
    /// that a later write of this primary's own overtook there.
    pub written: Option<(Vec<u8>, u64)>,
}

impl AckJob {
    /// Waits for the acknowledgement and returns what to answer the client.
    pub fn wait(self, rcv_timeout: Duration, store: &K2Hash) -> (Envelope, Response) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let result = self.pending.wait(left);
        let answer = ack_outcome(result, self.response.clone(), rcv_timeout);
        let answer = match (&answer, &self.written) {
            (
                Response::Error {
                    code: ErrorCode::Superseded,
                    ..
                },
                Some((key, version)),
            ) if overtaken_locally(store, key, *version) => self.response,
            _ => answer,
        };
        (self.request, answer)
    }
}

/// Whether this primary already holds a version of `key` newer than `version`: then a replica
/// holding "a newer version" holds one of this primary's own later writes (concurrent writes
/// of one key replicate in parallel and may arrive out of order; a merge may copy the newest
/// record ahead of the replication in flight). The write was not lost, it was overwritten in
/// order, so the client is answered as acknowledged. Only a replica holding a version the
/// primary has never seen makes the write `Superseded`.
pub fn overtaken_locally(store: &K2Hash, key: &[u8], version: u64) -> bool {
    match store.get_raw(key) {
        Ok(Some(held)) => held.version > version,
        _ => false,
    }
}

/// The client's answer given the replica's answer to our `Replicate`. The write is applied on
/// the primary in every case; an error tells the client it may not have reached the replicas
/// (what memcached clients treat as "unknown outcome").
pub fn ack_outcome(
    result: Result<Envelope, AttachError>,
    response: Response,
    rcv_timeout: Duration,
) -> Response {
    let env = match result {
        Ok(env) => env,
        Err(AttachError::Timeout { .. }) => {
            return Response::error(
                ErrorCode::Timeout,
                format!(
                    "written on the primary, but no replica acknowledged within RCVTIMEOUT \
                     {} ms",
                    rcv_timeout.as_millis()
                ),
            )
        }
        Err(e) => {
            return Response::error(
                ErrorCode::Unavailable,
                format!("written on the primary, but replication failed: {e}"),
            )
        }
    };
    if env.flags & FLAG_CHMPX_ERROR != 0 {
        return Response::error(
            ErrorCode::Unavailable,
            format!(
                "written on the primary, but chmpx could not replicate it: {}",
                String::from_utf8_lossy(&env.body)
            ),
        );
    }
    match decode_response(&env.body) {
        // The replica kept a newer version it already had: this write lost there, and merge
        // will carry that newer version back here. Saying "stored" would be a lie.
        Ok(Response::Replicated { applied: 0, stale }) if stale > 0 => Response::error(
            ErrorCode::Superseded,
            "written on the primary, but a replica already holds a newer version of the key",
        ),
        Ok(Response::Replicated { .. }) => response,
        Ok(Response::Error { code, message }) => Response::error(
            code,
            format!("written on the primary, but a replica refused it: {message}"),
        ),
        Ok(other) => Response::error(
            ErrorCode::Unavailable,
            format!("written on the primary, but a replica answered {other:?}"),
        ),
        Err(e) => Response::error(
            ErrorCode::Unavailable,
            format!("written on the primary, but a replica's answer is unreadable: {e}"),
        ),
    }
}

/// The number of owners a `FLAG_TARGET_COUNT` event reports, if it is one.
pub fn target_count(env: &Envelope) -> Option<u32> {
    if env.flags & FLAG_TARGET_COUNT == 0 {
        return None;
    }
    env.body.get(..4)?.try_into().map(u32::from_le_bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chmpx::attach::{Kind, Route};
    use dkc_client::proto::encode_response;

    fn env(flags: u16, body: Vec<u8>) -> Envelope {
        Envelope {
            msg_id: 9,
            kind: Kind::Response,
            route: Route::Reply {
                node: 1,
                attachment: 2,
                msg_id: 9,
            },
            flags,
            body,
        }
    }

    const T: Duration = Duration::from_millis(1000);

    #[test]
    fn ack_from_a_replica_releases_the_answer() {
        let ok = encode_response(&Response::Replicated {
            applied: 1,
            stale: 0,
        })
        .unwrap();
        let r = ack_outcome(Ok(env(0, ok)), Response::Stored { version: 5 }, T);
        assert_eq!(r, Response::Stored { version: 5 });
    }

    #[test]
    fn replica_failures_become_errors_that_say_the_primary_has_it() {
        let cases = [
            (
                Ok(env(FLAG_CHMPX_ERROR, b"cannot reach n2".to_vec())),
                ErrorCode::Unavailable,
            ),
            (
                Err(AttachError::Timeout {
                    msg_id: 9,
                    waited_ms: 1000,
                }),
                ErrorCode::Timeout,
            ),
            (
                Err(AttachError::ChmpxRestarted { msg_id: 9 }),
                ErrorCode::Unavailable,
            ),
            (Ok(env(0, b"garbage".to_vec())), ErrorCode::Unavailable),
            (
                Ok(env(
                    0,
                    encode_response(&Response::error(ErrorCode::ReadOnly, "ro")).unwrap(),
                )),
                ErrorCode::ReadOnly,
            ),
        ];
        for (result, want) in cases {
            match ack_outcome(result, Response::Deleted, T) {
                Response::Error { code, message } => {
                    assert_eq!(code, want);
                    assert!(message.contains("written on the primary"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_replica_holding_our_own_later_write_is_not_a_lost_write() {
        let store = k2hash::OpenOptions::memory().open().unwrap();
        let rec = |version: u64| k2hash::Record {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            version,
            ..k2hash::Record::default()
        };
        assert!(!overtaken_locally(&store, b"k", 10), "nothing held here");
        store.set_if_newer(&rec(10)).unwrap();
        assert!(
            !overtaken_locally(&store, b"k", 10),
            "we still hold our write"
        );
        store.set_if_newer(&rec(12)).unwrap();
        assert!(overtaken_locally(&store, b"k", 10), "a later local write");
    }

    #[test]
    fn target_count_reads_the_notice() {
        let mut e = env(FLAG_TARGET_COUNT, 3u32.to_le_bytes().to_vec());
        e.kind = Kind::Event;
        assert_eq!(target_count(&e), Some(3));
        assert_eq!(target_count(&env(0, vec![0; 4])), None);
        assert_eq!(target_count(&env(FLAG_TARGET_COUNT, vec![1])), None);
    }
}
