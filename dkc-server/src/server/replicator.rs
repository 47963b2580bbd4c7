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
//!   timeout), writes go on with the owners left, like kumofs. "DOWN" is the cluster's word,
//!   not one node's: chmpx leaves out an owner it cannot reach only when a majority of the
//!   server nodes sees it DOWN (`chmpx::daemon::down_votes`). An owner unreachable from the
//!   primary's chmpx but not confirmed DOWN (only the link between the two is cut, or it just
//!   died and the others have not timed it out yet) is counted as reached and answers with a
//!   chmpx refusal, so the write fails (`E_UNAVAILABLE`, an unknown outcome; a fenced write is
//!   taken back) instead of being acknowledged by one of two owners that each see the other
//!   DOWN. The window after a real death is about a heartbeat timeout plus a gossip interval.
//!   An owner chmpx still counts as live but that does not answer (a hung dkc-server) makes
//!   the write fail with `E_TIMEOUT` after RCVTIMEOUT.
//! - `quorum` answers as soon as enough acknowledgements are in, without waiting for the
//!   others; when fewer owners are live than a majority, it fails at once with
//!   `E_UNAVAILABLE` ("written on the primary only: ACKLEVEL quorum needs ..."). It already
//!   needs a majority of the owners, so the DOWN votes change nothing for it: an unconfirmed
//!   owner's refusal only stands for the answer it could not give. `one` is asynchronous by
//!   definition (its Replicate is an event): the votes do not apply to it.
//! - An owner that refuses (chmpx cannot reach it, it is read-only, ...) is not an
//!   acknowledgement: the write fails as soon as the level can no longer be met, with that
//!   owner's reason. An owner that already holds a newer version ("superseded") fails the
//!   write with `E_SUPERSEDED` at once (unless that newer version is this primary's own later
//!   write, see [`overtaken_locally`]; a newer version minted by another node means two
//!   primaries at once, and the write stays `E_SUPERSEDED`).
//! - Every failure of a plain write leaves it applied on the primary (and on the owners that
//!   did acknowledge): the message says "written on the primary", which memcached clients
//!   treat as an unknown outcome. Merge brings the other owners up to date later. A fenced
//!   write that fails is taken back instead (below); its answer is an unknown outcome too.
//!
//! A write whose node is the key's only owner has nobody to reach, so it skips the round trip
//! above (`Worker::sole_owner_write`): chmpx marks such a request `FLAG_SOLE_OWNER` when the map
//! in force gives the slot no other owner and no map is pending (REPLICA 0, or fewer servers
//! than REPLICA + 1), and the worker answers at once if every written record is of the
//! request's key and chmpx's placement has not changed since it queued the request (read
//! after the write, from the attachment segment). A placement change recorded later starts
//! its merges and hand-offs after the write, so they carry it. Counted in
//! `replicate_skipped_sole_owner`.
//!
//! With the test-only switch `DKC_TEST_DISABLE_REPLICATION=1` (see the crate doc) nothing is
//! sent and every write is answered as if acknowledged.
//!
//! ## Fenced writes (cas, incr/decr, add, replace, append/prepend, delete with a CAS token)
//!
//! These are computed from the value they replace, so two nodes acting as the key's primary
//! at once (a primary handed back after a restart, a partition) could each compute one from
//! the same old value and both be acknowledged, a lost update. They are fenced:
//!
//! - The replicated record carries `base`, the version it was computed from. A replica holding
//!   a version strictly between `base` and the record's version refuses it and sends back what
//!   it holds (`crate::cmd::replicate` has the rule). A refusal is never an acknowledgement:
//!   the client gets `E_SUPERSEDED` (an unknown outcome).
//! - Apply first, take back on failure: the primary applies the write (so it counts as one of
//!   the owners, and a second primary's write arriving here meets it), and when the write is
//!   not acknowledged for any reason (refused, stale, timed out, unreachable owners, too few
//!   live owners) it is taken back ([`take_back`]): the prior record is put back here if the
//!   key still holds the write, the owners get a rollback (restore iff they hold it), and the
//!   records replicas sent back are installed as they are (never re-minted with a fresh
//!   version, which would beat later acknowledged writes).
//! - One fenced write per key at a time on a primary (`super::fence`): the next one is queued
//!   until the previous is answered and, if it failed, taken back, so it is never computed from
//!   a value that is not acknowledged.
//!
//! What this does not close (it needs leases or a consensus protocol):
//!
//! - The DOWN votes are views at most a heartbeat timeout old, not leases: a node whose clock
//!   or process stalls longer than that can still act on a view the others have revised (the
//!   freeze watch gates its reads after such a stall). With two server nodes, or a 2/2 split
//!   of four, the half holding the lowest node id goes on and the other half's writes on
//!   shared slots fail until the cut heals.
//! - ACKLEVEL `one` and writes sent as events are not waited for, so they are neither
//!   serialized nor taken back; replicas still refuse conflicting records.
//! - A rollback is an unacknowledged event: an owner it does not reach (or reaches before the
//!   write itself) keeps the write that was not acknowledged, and merge may later spread it
//!   over an older acknowledged state. Replicas of later fenced writes refuse to build on it
//!   and hand it back, so it surfaces as a conflict rather than silently.
//! - Reads on the primary may see a fenced write while it waits for its replicas, and then
//!   see it taken back (read-uncommitted on the primary during the wait).

use std::time::{Duration, Instant};

use chmpx::attach::{
    AttachError, Attachment, Envelope, FanoutProgress, PendingFanout, Route, FLAG_CHMPX_ERROR,
};
use chmpx::config::AckLevel;
use dkc_client::proto::version::VersionParts;
use dkc_client::proto::{
    decode_response, encode_request, ErrorCode, Request, Response, WireRecord,
};
use k2hash::{Decision, K2Hash};

use super::fence::Ticket;
use crate::executor::{Executor, Fence};
use crate::record::from_wire;

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
    /// For a fenced write: how to take it back if it is not acknowledged.
    pub fence: Option<Fence>,
    /// For a fenced write: its key's reservation, freed once it is answered (and taken back).
    pub ticket: Option<Ticket>,
}

impl AckJob {
    /// Waits for the acknowledgements every record needs and returns what to answer the
    /// client: the first record that fails decides. A fenced write that fails is taken back
    /// (see [`take_back`]) before its key is freed for the next fenced write.
    pub fn wait(
        self,
        rcv_timeout: Duration,
        exec: &Executor,
        att: &Attachment,
    ) -> (Envelope, Response) {
        let AckJob {
            request,
            response,
            waits,
            deadline,
            rule,
            fence,
            ticket,
        } = self;
        let mut answer = response.clone();
        let mut learned = Vec::new();
        for w in waits {
            let (a, l) = wait_one(
                w,
                rule,
                &response,
                deadline,
                rcv_timeout,
                exec.store(),
                fence.is_some(),
            );
            learned.extend(l);
            if a != response {
                answer = a;
                break;
            }
        }
        if answer != response {
            if let Some(f) = &fence {
                take_back(exec, att, f, &learned);
            }
        }
        drop(ticket);
        (request, answer)
    }
}

/// Waits for one record's acknowledgements. Returns the client's answer and the conflict
/// records replicas sent back (for a fenced write they refused).
fn wait_one(
    w: ReplicaWait,
    rule: AckRule,
    response: &Response,
    deadline: Instant,
    rcv_timeout: Duration,
    store: &K2Hash,
    fenced: bool,
) -> (Response, Vec<WireRecord>) {
    let result = w.pending.wait(deadline, |p| {
        verdict(rule, p, response, rcv_timeout).is_some()
    });
    let (answer, learned) = match result {
        Ok(p) => (
            verdict(rule, &p, response, rcv_timeout)
                .unwrap_or_else(|| timed_out(rule, &p, rcv_timeout)),
            conflicts(&p),
        ),
        Err(e) => (failed_to_send(e), Vec::new()),
    };
    // A fenced write was computed from the value it replaced: a replica holding a newer
    // version (even this node's own later write) may mean it was computed from a stale one,
    // so it is never excused as "overtaken in order".
    let answer = match &answer {
        Response::Error {
            code: ErrorCode::Superseded,
            ..
        } if !fenced && overtaken_locally(store, &w.key, w.version) => response.clone(),
        _ => answer,
    };
    (answer, learned)
}

/// The records replicas sent back with their answers (refused fenced writes).
pub fn conflicts(progress: &FanoutProgress) -> Vec<WireRecord> {
    progress
        .responses
        .iter()
        .filter(|env| env.flags & FLAG_CHMPX_ERROR == 0)
        .filter_map(|env| match decode_response(&env.body) {
            Ok(Response::Replicated {
                conflict: Some(rec),
                ..
            }) => Some(*rec),
            _ => None,
        })
        .collect()
}

/// Takes back a fenced write that was not acknowledged, so that no version of it that beats
/// the key's real latest state survives:
///
/// 1. here, the prior record is put back if the key still holds the write's version (a later
///    plain write stays);
/// 2. the other owners are sent a rollback (a `Replicate` event of the prior record with
///    `rollback_of`): each one that stored the write puts the prior record back, any other
///    keeps what it holds. It is not acknowledged: an owner it does not reach keeps the
///    write, which merge may spread later (see the module doc);
/// 3. the records replicas answered with (the newer state this primary missed) are stored
///    here as they are, versions unchanged, if newer than what is held: this node catches up
///    without minting anything that could beat a later acknowledged write.
pub fn take_back(exec: &Executor, att: &Attachment, fence: &Fence, learned: &[WireRecord]) {
    let store = exec.store();
    let restored = store.update_raw(&fence.key, |stored| {
        if stored.map(|r| r.version) != Some(fence.version) {
            return (Decision::Keep, false);
        }
        let d = match &fence.prior {
            Some(p) => Decision::PutRecord(from_wire(p.clone())),
            None => Decision::Remove {
                tombstone_version: None,
            },
        };
        (d, true)
    });
    match restored {
        Ok(restored) => tracing::debug!(
            version = fence.version,
            restored,
            "fenced write not acknowledged; taken back"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            version = fence.version,
            "fenced write not acknowledged, and putting the prior record back failed; \
             the write stays here until a merge replaces it"
        ),
    }
    let mut undo = fence.prior.clone().unwrap_or_else(|| WireRecord {
        key: fence.key.clone(),
        ..WireRecord::default()
    });
    undo.base = None;
    undo.rollback_of = Some(fence.version);
    let route = Route::HashChain(k2hash::key_hash(&fence.key));
    match encode_request(&Request::Replicate {
        records: vec![undo],
    }) {
        Ok(body) => {
            if let Err(e) = att.send(route, &body) {
                tracing::warn!(error = %e, "rollback of a fenced write could not be sent");
            }
        }
        Err(e) => tracing::warn!(error = %e, "rollback of a fenced write could not be encoded"),
    }
    for rec in learned {
        if rec.key != fence.key || rec.rollback_of.is_some() || rec.version == 0 {
            continue;
        }
        exec.hlc().observe(rec.version);
        let mut r = rec.clone();
        r.base = None;
        if let Err(e) = store.set_if_newer(&from_wire(r)) {
            tracing::warn!(error = %e, "storing the newer record a replica sent back failed");
        }
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
        // A fenced write refused: the replica holds a write this primary had not seen when it
        // computed it (newer than its base: two primaries at once), or a newer one.
        Ok(Response::Replicated {
            applied: 0,
            conflict: Some(held),
            ..
        }) => Err(Response::error(
            ErrorCode::Superseded,
            format!(
                "not acknowledged: a replica holds version {} of the key, which this primary \
                 had not seen when it computed the write (two primaries at once); the write \
                 is taken back, read the key again and retry",
                held.version
            ),
        )),
        // The replica kept a newer version it already had: this write lost there, and merge
        // will carry that newer version back here. Saying "stored" would be a lie.
        Ok(Response::Replicated {
            applied: 0, stale, ..
        }) if stale > 0 => Err(Response::error(
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
    if rule.level == AckLevel::Quorum {
        // Owners chmpx counted but could not deliver to (unreachable and not confirmed DOWN
        // by a majority, see the module doc) are not live: quorum fails at once, as when
        // chmpx leaves them out.
        let undelivered: Vec<&Envelope> = progress
            .responses
            .iter()
            .filter(|env| env.flags & FLAG_CHMPX_ERROR != 0)
            .collect();
        let live = reached.saturating_sub(undelivered.len() as u32);
        if let (Err(Response::Error { code, message }), Some(first)) =
            (rule.needed(live), undelivered.first())
        {
            return Some(Response::error(
                code,
                format!(
                    "{message} (chmpx: {})",
                    String::from_utf8_lossy(&first.body)
                ),
            ));
        }
    }
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
