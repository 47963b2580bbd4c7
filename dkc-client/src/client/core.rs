//! What the blocking and async clients share: the attachment, the topology, the options, how a
//! request is routed, and how the outcome of one attempt is judged (answer, retry, fail).

use std::time::Duration;

use chmpx::attach::{AttachError, Attachment, Envelope, Route};
use chmpx::daemon::{node_number, FLAG_CHMPX_ERROR};
use chmpx::placement::key_hash;

use crate::proto::{decode_response, encode_request, Request, Response};

use super::command::{is_idempotent, is_transient, Ctx};
use super::error::{ClientError, Result};
use super::options::ClientOptions;
use super::topology::Topology;

/// One connection to the local chmpx, shared by clones of a client.
pub(crate) struct Core {
    pub att: Attachment,
    pub topo: Topology,
    pub opts: ClientOptions,
}

impl Core {
    /// After attempt number `attempt` of `req` failed with `e` in a way that allows another:
    /// the pause before the next attempt, or `e` when [`ClientOptions::retry_count`] retries
    /// are spent. Counts the attempt.
    pub fn retry_pause(
        &self,
        req: &Request,
        attempt: &mut u32,
        e: ClientError,
    ) -> Result<Duration> {
        *attempt += 1;
        if *attempt > self.opts.retry_count {
            return Err(e);
        }
        tracing::debug!(what = req.name(), attempt = *attempt, "retrying: {e}");
        Ok(self.opts.backoff(*attempt))
    }
}

/// How a command reads its answer.
pub(crate) type Finish<T> = Box<dyn FnOnce(&Ctx<'_>, Response) -> Result<T> + Send>;

/// A command ready to send: the request and how to read its answer.
pub(crate) struct Op<T> {
    pub req: Request,
    pub finish: Finish<T>,
}

impl<T> Op<T> {
    pub fn new(
        req: Request,
        finish: impl FnOnce(&Ctx<'_>, Response) -> Result<T> + Send + 'static,
    ) -> Op<T> {
        Op {
            req,
            finish: Box::new(finish),
        }
    }

    /// Reads the answer.
    pub fn finish(self, resp: Response, timeout: Duration) -> Result<T> {
        let ctx = Ctx {
            what: self.req.name(),
            key: self.req.routing_key().unwrap_or_default(),
            timeout,
        };
        (self.finish)(&ctx, resp)
    }
}

/// How one attempt ended.
pub(crate) enum Attempt {
    /// The server answered (maybe with an error the command reads).
    Answer(Response),
    /// Failed in a way that allows another attempt.
    Retry(ClientError),
    /// Failed for good.
    Fail(ClientError),
}

/// Where chmpx should take a request: a keyed command to its key's first live owner.
pub(crate) fn route_of(req: &Request) -> Route {
    match req.routing_key() {
        Some(key) => Route::HashFirst(key_hash(key)),
        None => Route::AllServers,
    }
}

/// The route to one server node by its id.
pub(crate) fn node_route(id: &str) -> Route {
    Route::Node(node_number(id))
}

pub(crate) fn encode(req: &Request) -> Result<Vec<u8>> {
    encode_request(req).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Judges one attempt. The retry rule: an error chmpx made itself (no live owner, peer
/// unreachable, no server process) means the request was not delivered, so any command may be
/// sent again; a timeout or a chmpx restart while the request was in flight leaves the outcome
/// unknown, so only idempotent commands ([`is_idempotent`]) are sent again.
pub(crate) fn judge(
    req: &Request,
    outcome: std::result::Result<Envelope, AttachError>,
    timeout: Duration,
) -> Attempt {
    let idempotent = is_idempotent(req);
    let what = req.name();
    match outcome {
        Ok(env) if env.flags & FLAG_CHMPX_ERROR != 0 => Attempt::Retry(ClientError::Unavailable {
            reason: format!("chmpx: {}", String::from_utf8_lossy(&env.body)),
        }),
        Ok(env) => match decode_response(&env.body) {
            Ok(resp) if idempotent && is_transient(&resp) => {
                let ctx = Ctx {
                    what,
                    key: req.routing_key().unwrap_or_default(),
                    timeout,
                };
                Attempt::Retry(ctx.unexpected(resp))
            }
            Ok(resp) => Attempt::Answer(resp),
            Err(e) => Attempt::Fail(ClientError::Protocol(e.to_string())),
        },
        Err(AttachError::Timeout { .. }) => {
            let e = ClientError::Timeout {
                what,
                after: timeout,
            };
            if idempotent {
                Attempt::Retry(e)
            } else {
                Attempt::Fail(e)
            }
        }
        Err(AttachError::ChmpxRestarted { .. }) => {
            let e = ClientError::Unavailable {
                reason: format!(
                    "chmpx restarted while {what} was in flight; {}",
                    if idempotent {
                        "retries used up"
                    } else {
                        "its outcome is unknown (not retried: the command is not idempotent)"
                    }
                ),
            };
            if idempotent {
                Attempt::Retry(e)
            } else {
                Attempt::Fail(e)
            }
        }
        Err(e @ (AttachError::Backpressure { .. } | AttachError::Detached)) => {
            Attempt::Retry(ClientError::Unavailable {
                reason: e.to_string(),
            })
        }
        Err(AttachError::BodyTooLarge { len, max }) => Attempt::Fail(ClientError::TooLarge {
            limit: max as u64,
            message: format!("{what} request of {len} bytes exceeds the body limit (MAXPAYLOAD)"),
        }),
        Err(e) => Attempt::Fail(ClientError::Unavailable {
            reason: e.to_string(),
        }),
    }
}

/// Refuses `flush` without its confirmation, before anything is sent.
pub(crate) fn check_flush_confirm(confirm: bool) -> Result<()> {
    if confirm {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument(
            "flush deletes every item of the cluster: pass confirm = true (dkc flush --yes)".into(),
        ))
    }
}

/// Tolerates up to REPLICA nodes missing from a whole-cluster read.
pub(crate) fn check_missing(
    topo: &Topology,
    what: &str,
    missing: &[(String, ClientError)],
) -> Result<()> {
    if missing.len() as u64 > u64::from(topo.replica) {
        let list: Vec<String> = missing.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        return Err(ClientError::Unavailable {
            reason: format!(
                "{what}: {} of {} server nodes did not answer (REPLICA {} tolerates {}): {}",
                missing.len(),
                topo.servers.len(),
                topo.replica,
                topo.replica,
                list.join("; ")
            ),
        });
    }
    Ok(())
}
