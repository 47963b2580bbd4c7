//! The client side of the scenarios: the [`Kv`] trait (the few operations the scenarios need,
//! with outcomes a checker can use) and [`AttachKv`], its implementation over chmpx's attach
//! transport and the dkc wire protocol, routed like a driver routes (a key goes to the first
//! live owner of its slot).
//!
//! The trait keeps the scenarios independent of the transport: the `dkc_client::client`
//! driver can implement it too and the scenarios run unchanged.

use std::time::Duration;

use chmpx::attach::{AttachOptions, Attachment, Role, Route};
use dkc_client::proto::{
    decode_response, encode_request, ErrorCode, Item, Request, Response, SetMode,
};

/// How long one request waits for its answer. Above dkc-server's RCVTIMEOUT (1 s by default)
/// plus a failover, so a write's answer is normally seen rather than timed out.
pub const REQUEST_TIMEOUT_MS: u64 = 5000;
/// How long attaching to chmpx may take.
pub const ATTACH_TIMEOUT_MS: u64 = 15_000;

/// Why an operation did not succeed, split by what it means for the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The operation certainly did not change anything (refused before it was applied).
    Failed(String),
    /// The operation may or may not have been applied (timeout, lost answer, not replicated).
    Unknown(String),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::Failed(m) => write!(f, "failed: {m}"),
            KvError::Unknown(m) => write!(f, "unknown outcome: {m}"),
        }
    }
}

/// Result of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// Stored; the new version.
    Stored(u64),
    /// The item changed since the token was read.
    Exists,
    /// No live item.
    NotFound,
}

/// The operations the scenarios use.
pub trait Kv: Send {
    /// The live item of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Item>, KvError>;
    /// Stores `value` (absolute expiry `expire_at` unix seconds, 0 = never); the new version.
    fn set(&self, key: &[u8], value: &[u8], expire_at: u64) -> Result<u64, KvError>;
    /// Stores `value` only if the live version is `token`.
    fn cas(&self, key: &[u8], value: &[u8], token: u64) -> Result<CasOutcome, KvError>;
    /// Deletes `key`; whether it existed.
    fn delete(&self, key: &[u8]) -> Result<bool, KvError>;
}

/// A client attached to one chmpx (normally the slave's).
pub struct AttachKv {
    att: Attachment,
    timeout: Duration,
}

fn classify_error(code: &ErrorCode, message: &str) -> KvError {
    let text = format!("{code:?}: {message}");
    match code {
        // Refused while decoding or checking the request, before anything was applied.
        ErrorCode::TooLarge
        | ErrorCode::NotNumeric
        | ErrorCode::BadRequest
        | ErrorCode::Version => KvError::Failed(text),
        // Written somewhere, or maybe: the outcome is not known.
        _ => KvError::Unknown(text),
    }
}

impl AttachKv {
    /// Attaches to the chmpx of `cluster` at `ctlport` as a client.
    pub fn connect(cluster: &str, ctlport: u16) -> Result<AttachKv, String> {
        let opts = AttachOptions {
            connect_timeout_ms: ATTACH_TIMEOUT_MS,
            rw_timeout_ms: REQUEST_TIMEOUT_MS,
            ..AttachOptions::default()
        };
        let att = Attachment::connect(cluster, ctlport, Role::Client, opts)
            .map_err(|e| format!("attach to {cluster}:{ctlport}: {e}"))?;
        Ok(AttachKv {
            att,
            timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
        })
    }

    /// The attachment, for raw requests.
    pub fn attachment(&self) -> &Attachment {
        &self.att
    }

    /// Sends an encoded body on `route` and returns the raw answer body.
    pub fn raw(&self, route: Route, body: &[u8]) -> Result<Vec<u8>, KvError> {
        match self.att.request(route, body, self.timeout) {
            Ok(env) if env.flags & chmpx::daemon::FLAG_CHMPX_ERROR != 0 => {
                let text = String::from_utf8_lossy(&env.body).into_owned();
                // chmpx refused to deliver: nothing reached a server.
                if text.contains("no live owner") {
                    Err(KvError::Failed(format!("chmpx: {text}")))
                } else {
                    Err(KvError::Unknown(format!("chmpx: {text}")))
                }
            }
            Ok(env) => Ok(env.body),
            Err(e) => Err(KvError::Unknown(format!("attach: {e}"))),
        }
    }

    /// Sends `req` on `route` and decodes the answer; an `Error` response becomes a `KvError`.
    pub fn call_on(&self, route: Route, req: &Request) -> Result<Response, KvError> {
        let body = encode_request(req).map_err(|e| KvError::Failed(format!("encode: {e}")))?;
        let answer = self.raw(route, &body)?;
        match decode_response(&answer) {
            Ok(Response::Error { code, message }) => Err(classify_error(&code, &message)),
            Ok(r) => Ok(r),
            Err(e) => Err(KvError::Unknown(format!("undecodable answer: {e}"))),
        }
    }

    /// Sends `req` the way a driver does: to the first live owner of its key's slot.
    pub fn call(&self, req: &Request) -> Result<Response, KvError> {
        let route = match req.routing_key() {
            Some(k) => Route::HashFirst(k2hash::key_hash(k)),
            None => Route::AllServers,
        };
        self.call_on(route, req)
    }
}

fn unexpected(what: &str, r: Response) -> KvError {
    KvError::Unknown(format!("{what}: unexpected answer {r:?}"))
}

impl Kv for AttachKv {
    fn get(&self, key: &[u8]) -> Result<Option<Item>, KvError> {
        match self.call(&Request::Get { key: key.to_vec() })? {
            Response::Value(item) => Ok(Some(item)),
            Response::NotFound => Ok(None),
            r => Err(unexpected("get", r)),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], expire_at: u64) -> Result<u64, KvError> {
        let req = Request::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            mode: SetMode::Set,
            flags: 0,
            expire_at,
        };
        match self.call(&req)? {
            Response::Stored { version } => Ok(version),
            r => Err(unexpected("set", r)),
        }
    }

    fn cas(&self, key: &[u8], value: &[u8], token: u64) -> Result<CasOutcome, KvError> {
        let req = Request::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            mode: SetMode::Cas(token),
            flags: 0,
            expire_at: 0,
        };
        match self.call(&req)? {
            Response::Stored { version } => Ok(CasOutcome::Stored(version)),
            Response::Exists => Ok(CasOutcome::Exists),
            Response::NotFound => Ok(CasOutcome::NotFound),
            r => Err(unexpected("cas", r)),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        match self.call(&Request::Delete {
            key: key.to_vec(),
            cas: None,
        })? {
            Response::Deleted => Ok(true),
            Response::NotFound => Ok(false),
            r => Err(unexpected("delete", r)),
        }
    }
}
