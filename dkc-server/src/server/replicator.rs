//! Acknowledgement levels: how a write that must reach the other owners is answered.
//!
//! The primary applies the write, then sends one `Request::Replicate` per written record on
//! `Route::HashChain(key hash)` with [`Attachment::submit_fanout`]. chmpx delivers it to every
//! other *live* owner of the slot (link UP and dkc-server attached; during a membership change
//! the owners of the pending map too) and first tells us how many it reached (`reached`, the
//! `FLAG_TARGET_COUNT` notice); each of them answers once. With `owners = REPLICA + 1`:
//!
//! | ACKLEVEL | the client is answered "stored" when                          | never possible when |
//! |----------|----------------------------------------------------------------|---------------------|
//! | `all`    | every reached owner acknowledged (`reached` acks; 0 when none is live) | —          |
//! | `quorum` | `majority - 1` reached owners acknowledged, `majority = owners / 2 + 1` (the primary counts as one) | `1 + reached < majority` |
//! | `one`    | at once: the primary applied it; the Replicate goes as an event (asynchronous) | — |
//!
//! - `all` counts only the owners that are live: with a node DOWN (after the heartbeat
//!   timeout), writes go on with the owners left, like kumofs. An owner chmpx still counts as
//!   live but that does not answer (a hung dkc-server) makes the write fail with `E_TIMEOUT`
//!   after RCVTIMEOUT.
//! - `quorum` answers as soon as enough acknowledgements are in, without waiting for the
//!   others; when fewer owners are live than a majority, it fails at once with
//!   `E_UNAVAILABLE` ("written on the primary only: ACKLEVEL quorum needs ...").
//! - An owner that refuses (chmpx cannot reach it, it is read-only, ...) is not an
//!   acknowledgement: the write fails as soon as the level can no longer be met, with that
//!   owner's reason. An owner that already holds a newer version ("superseded") fails the
//!   write with `E_SUPERSEDED` at once (unless that newer version is this primary's own later
//!   write, see [`overtaken_locally`]; a newer version minted by another node means two
//!   primaries at once, and the write stays `E_SUPERSEDED`).
//! - Every failure leaves the write applied on the primary (and on the owners that did
//!   acknowledge): the message says "written on the primary", which memcached clients treat
//!   as an unknown outcome. Merge brings the other owners up to date later.
//!
//! With the test-only switch `DKC_TEST_DISABLE_REPLICATION=1` (see the crate doc) nothing is
//! sent and every write is answered as if acknowledged.

use std::time::{Duration, Instant};

use chmpx::attach::{AttachError, Envelope, FanoutProgress, PendingFanout, FLAG_CHMPX_ERROR};
use chmpx::config::AckLevel;
use dkc_client::proto::version::VersionParts;
use dkc_client::proto::{decode_response, ErrorCode, Response};
use k2hash::K2Hash;

/// The acknowledgement rule of this cluster: ACKLEVEL and REPLICA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRule {
    /// ACKLEVEL.
    pub level: AckLevel,
    /// REPLICA: each slot has `replica + 1` owners.
    pub replica: u32,
}

impl AckRule {
    /// Owners of every slot, the primary included.
    pub fn owners(&self) -> u32 {
        self.replica.saturating_add(1)
    }

    /// A majority of the owners, the primary included.
    pub fn majority(&self) -> u32 {
        self.owners() / 2 + 1
    }

    /// Acknowledgements from other owners a write needs when chmpx reached `reached` of them;
    /// an error answer when fewer owners are live than the level needs.
    pub fn needed(&self, reached: u32) -> Result<u32, Response> {
        match self.level {
            AckLevel::All => Ok(reached),
            AckLevel::One => Ok(0),
            AckLevel::Quorum => {
                let need = self.majority() - 1;
                if reached < need {
                    return Err(Response::error(
                        ErrorCode::Unavailable,
                        format!(
                            "written on the primary only: ACKLEVEL quorum needs {} of the {} \
                             owners (REPLICA {} + 1) but only {} are live",
                            self.majority(),
                            self.owners(),
                            self.replica,
                            1 + reached
                        ),
                    ));
                }
                Ok(need)
            }
        }
    }
}

/// One Replicate in flight: the fan-out handle and the record it carries.
pub struct ReplicaWait {
    /// The Replicate request.
    pub pending: PendingFanout,
    /// The record's key.
    pub key: Vec<u8>,
    /// The version the primary wrote.
    pub version: u64,
}

/// A client write waiting for its replicas.
pub struct AckJob {
    /// The client's request envelope (answered by route).
    pub request: Envelope,
    /// What to answer once acknowledged.
    pub response: Response,
    /// One wait per replicated record.
    pub waits: Vec<ReplicaWait>,
    /// When to give up (the write's start + RCVTIMEOUT).
    pub deadline: Instant,
    /// ACKLEVEL and REPLICA.
    pub rule: AckRule,
}

impl AckJob {
    /// Waits for the acknowledgements every record needs and returns what to answer the
    /// client: the first record that fails decides.
    pub fn wait(self, rcv_timeout: Duration, store: &K2Hash) -> (Envelope, Response) {
        for w in self.waits {
            let answer = wait_one(
                w,
                self.rule,
                &self.response,
                self.deadline,
                rcv_timeout,
                store,
            );
            if answer != self.response {
                return (self.request, answer);
            }
        }
        (self.request, self.response)
    }
}

fn wait_one(
    w: ReplicaWait,
    rule: AckRule,
    response: &Response,
    deadline: Instant,
    rcv_timeout: Duration,
    store: &K2Hash,
) -> Response {
    let result = w.pending.wait(deadline, |p| {
        verdict(rule, p, response, rcv_timeout).is_some()
    });
    let answer = match result {
        Ok(p) => verdict(rule, &p, response, rcv_timeout)
            .unwrap_or_else(|| timed_out(rule, &p, rcv_timeout)),
        Err(e) => failed_to_send(e),
    };
    match &answer {
        Response::Error {
            code: ErrorCode::Superseded,
            ..
        } if overtaken_locally(store, &w.key, w.version) => response.clone(),
        _ => answer,
    }
}

/// Whether this primary already holds a version of `key` newer than `version` that it minted
/// itself: then a replica holding "a newer version" holds one of this primary's own later
/// writes (concurrent writes of one key replicate in parallel and may arrive out of order; a
/// merge may copy the newest record ahead of the replication in flight). The write was not
/// lost, it was overwritten in order, so the client is answered as acknowledged.
///
/// A newer version minted by another node (the node index in its low bits differs) means two
/// nodes acted as the key's primary at once (a primary handed back after a restart, a one-way
/// partition): each may have applied a CAS, incr or append against the same old value, so
/// saying "stored" for both would acknowledge a lost update. That write is `Superseded` (an
/// unknown outcome for the client: it is applied here and merge settles which version wins).
pub fn overtaken_locally(store: &K2Hash, key: &[u8], version: u64) -> bool {
    match store.get_raw(key) {
        Ok(Some(held)) => {
            held.version > version
                && VersionParts::unpack(held.version).node == VersionParts::unpack(version).node
        }
        _ => false,
    }
}

/// The client's answer when the Replicate could not even be sent or its wait was cut short
/// (chmpx restarted). The write is applied on the primary.
pub fn failed_to_send(e: AttachError) -> Response {
    Response::error(
        ErrorCode::Unavailable,
        format!("written on the primary, but replication failed: {e}"),
    )
}

/// What one owner's answer to our Replicate says: `Ok` for an acknowledgement, else the error
/// the client would get for it.
pub fn replica_answer(env: &Envelope) -> Result<(), Response> {
    if env.flags & FLAG_CHMPX_ERROR != 0 {
        return Err(Response::error(
            ErrorCode::Unavailable,
            format!(
                "written on the primary, but chmpx could not replicate it: {}",
                String::from_utf8_lossy(&env.body)
            ),
        ));
    }
    match decode_response(&env.body) {
        // The replica kept a newer version it already had: this write lost there, and merge
        // will carry that newer version back here. Saying "stored" would be a lie.
        Ok(Response::Replicated { applied: 0, stale }) if stale > 0 => Err(Response::error(
            ErrorCode::Superseded,
            "written on the primary, but a replica already holds a newer version of the key",
        )),
        Ok(Response::Replicated { .. }) => Ok(()),
        Ok(Response::Error { code, message }) => Err(Response::error(
            code,
            format!("written on the primary, but a replica refused it: {message}"),
        )),
        Ok(other) => Err(Response::error(
            ErrorCode::Unavailable,
            format!("written on the primary, but a replica answered {other:?}"),
        )),
        Err(e) => Err(Response::error(
            ErrorCode::Unavailable,
            format!("written on the primary, but a replica's answer is unreadable: {e}"),
        )),
    }
}

/// The client's answer once the collected answers decide it, `None` while more may change it.
/// `response` is the answer for an acknowledged write.
pub fn verdict(
    rule: AckRule,
    progress: &FanoutProgress,
    response: &Response,
    rcv_timeout: Duration,
) -> Option<Response> {
    let Some(reached) = progress.expected else {
        return progress
            .timed_out
            .then(|| timed_out(rule, progress, rcv_timeout));
    };
    let need = match rule.needed(reached) {
        Ok(n) => n,
        Err(short) => return Some(short),
    };
    let mut acked = 0u32;
    let mut refusal = None;
    for env in &progress.responses {
        match replica_answer(env) {
            Ok(()) => acked += 1,
            Err(
                e @ Response::Error {
                    code: ErrorCode::Superseded,
                    ..
                },
            ) => return Some(e),
            Err(e) => {
                refusal.get_or_insert(e);
            }
        }
    }
    if acked >= need {
        return Some(response.clone());
    }
    let outstanding = reached.saturating_sub(progress.responses.len() as u32);
    if acked + outstanding < need {
        let Some(Response::Error { code, message }) = refusal else {
            return Some(timed_out(rule, progress, rcv_timeout));
        };
        return Some(Response::error(
            code,
            format!(
                "{message} ({acked} of the {need} replica acknowledgements ACKLEVEL {} needs; \
                 {reached} other owners reached)",
                level_name(rule.level)
            ),
        ));
    }
    progress
        .timed_out
        .then(|| timed_out(rule, progress, rcv_timeout))
}

/// The answer when RCVTIMEOUT passed before the level was met.
fn timed_out(rule: AckRule, progress: &FanoutProgress, rcv_timeout: Duration) -> Response {
    let ms = rcv_timeout.as_millis();
    let Some(reached) = progress.expected else {
        return Response::error(
            ErrorCode::Timeout,
            format!(
                "written on the primary, but chmpx did not say how many owners it reached \
                 within RCVTIMEOUT {ms} ms"
            ),
        );
    };
    let acked = progress
        .responses
        .iter()
        .filter(|e| replica_answer(e).is_ok())
        .count();
    let need = rule.needed(reached).unwrap_or(reached);
    Response::error(
        ErrorCode::Timeout,
        format!(
            "written on the primary, but only {acked} of the {need} replica acknowledgements \
             ACKLEVEL {} needs arrived within RCVTIMEOUT {ms} ms ({reached} other owners \
             reached, {} answered)",
            level_name(rule.level),
            progress.responses.len()
        ),
    )
}

/// ACKLEVEL as written in the config.
pub fn level_name(level: AckLevel) -> &'static str {
    match level {
        AckLevel::All => "all",
        AckLevel::Quorum => "quorum",
        AckLevel::One => "one",
    }
}

#[cfg(test)]
mod tests;
