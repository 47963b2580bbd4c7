//! The pure half of every command: which requests may be retried, and what each response means
//! as a typed result. No I/O here; [`super::blocking`] and [`super::nonblocking`] send the
//! requests and call these.

use std::time::Duration;

use crate::proto::{ErrorCode, Item, Request, Response, SetMode};

use super::error::{display_key, limit_in, ClientError, Result};

/// True when sending `req` again cannot change the outcome, so that it may be retried after
/// an attempt whose outcome is unknown (timeout, chmpx restarted while it was in flight).
///
/// Never retried blindly: `add`, `append`, `prepend`, `cas`, `incr`, `decr`, `delete`,
/// `remove_subkey`, `delete_with_children` — a second run would add twice, or answer
/// "exists"/"not found" for what the first run did.
pub fn is_idempotent(req: &Request) -> bool {
    match req {
        Request::Get { .. }
        | Request::MultiGet { .. }
        | Request::ListSubkeys { .. }
        | Request::Scan { .. }
        | Request::Stats
        | Request::Touch { .. }
        | Request::GetAndTouch { .. }
        | Request::SetSubkeys { .. }
        | Request::AddSubkey { .. }
        | Request::ClearSubkeys { .. }
        | Request::Flush { .. } => true,
        Request::Set { mode, .. } => matches!(mode, SetMode::Set | SetMode::Replace),
        Request::Delete { .. }
        | Request::Incr { .. }
        | Request::Decr { .. }
        | Request::RemoveSubkey { .. }
        | Request::DeleteWithChildren { .. }
        | Request::Replicate { .. } => false,
    }
}

/// True for server errors that mean "not executed, try again" (the slot is merging, or the
/// node could not reach an owner).
pub fn is_transient(resp: &Response) -> bool {
    matches!(
        resp,
        Response::Error {
            code: ErrorCode::Merging | ErrorCode::Unavailable,
            ..
        }
    )
}

/// What the interpreters need to word an error.
pub struct Ctx<'a> {
    /// The request's name.
    pub what: &'static str,
    /// Its key, if any.
    pub key: &'a [u8],
    /// The timeout in force.
    pub timeout: Duration,
}

impl Ctx<'_> {
    fn key(&self) -> String {
        display_key(self.key)
    }

    fn not_found(&self) -> ClientError {
        ClientError::NotFound { key: self.key() }
    }

    /// A response this command never gets.
    pub fn unexpected(&self, resp: Response) -> ClientError {
        match resp {
            Response::Error { code, message } => self.server_error(code, message),
            other => ClientError::Protocol(format!(
                "{} got an answer it cannot get: {other:?}",
                self.what
            )),
        }
    }

    /// A server error code as a typed error.
    pub fn server_error(&self, code: ErrorCode, message: String) -> ClientError {
        match code {
            ErrorCode::TooLarge => ClientError::TooLarge {
                limit: limit_in(&message),
                message,
            },
            ErrorCode::NotNumeric => ClientError::NotNumeric { key: self.key() },
            ErrorCode::Unavailable | ErrorCode::Merging => ClientError::Unavailable {
                reason: format!("{}: {message}", code.as_str()),
            },
            ErrorCode::Timeout => ClientError::Timeout {
                what: self.what,
                after: self.timeout,
            },
            code => ClientError::Server { code, message },
        }
    }

    /// get, get_and_touch.
    pub fn item(&self, resp: Response) -> Result<Option<Item>> {
        match resp {
            Response::Value(item) => Ok(Some(item)),
            Response::NotFound => Ok(None),
            other => Err(self.unexpected(other)),
        }
    }

    /// A storage command: the new version.
    pub fn stored(&self, mode: SetMode, resp: Response) -> Result<u64> {
        match resp {
            Response::Stored { version } => Ok(version),
            Response::NotStored => Err(match mode {
                SetMode::Add => ClientError::Exists { key: self.key() },
                _ => ClientError::NotStored {
                    key: self.key(),
                    what: self.what,
                },
            }),
            Response::Exists => Err(ClientError::CasMismatch { key: self.key() }),
            Response::NotFound => Err(self.not_found()),
            other => Err(self.unexpected(other)),
        }
    }

    /// delete.
    pub fn deleted(&self, resp: Response) -> Result<()> {
        match resp {
            Response::Deleted => Ok(()),
            Response::NotFound => Err(self.not_found()),
            Response::Exists => Err(ClientError::CasMismatch { key: self.key() }),
            other => Err(self.unexpected(other)),
        }
    }

    /// incr, decr.
    pub fn number(&self, resp: Response) -> Result<u64> {
        match resp {
            Response::Number(n) => Ok(n),
            Response::NotFound => Err(self.not_found()),
            other => Err(self.unexpected(other)),
        }
    }

    /// touch.
    pub fn touched(&self, resp: Response) -> Result<()> {
        match resp {
            Response::Touched => Ok(()),
            Response::NotFound => Err(self.not_found()),
            other => Err(self.unexpected(other)),
        }
    }

    /// set_subkeys, add_subkey, clear_subkeys.
    pub fn subkeys_stored(&self, resp: Response) -> Result<()> {
        match resp {
            Response::Stored { .. } => Ok(()),
            Response::NotFound => Err(self.not_found()),
            other => Err(self.unexpected(other)),
        }
    }

    /// list_subkeys.
    pub fn subkeys(&self, resp: Response) -> Result<Vec<Vec<u8>>> {
        match resp {
            Response::Subkeys(list) => Ok(list),
            Response::NotFound => Err(self.not_found()),
            other => Err(self.unexpected(other)),
        }
    }

    /// delete_with_children: the children to delete next.
    pub fn children(&self, resp: Response) -> Result<Vec<Vec<u8>>> {
        match resp {
            Response::DeletedWithChildren { children } => Ok(children),
            Response::NotFound => Err(self.not_found()),
            other => Err(self.unexpected(other)),
        }
    }
}

/// Refuses a scan limit out of range before anything is sent.
pub fn check_scan_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > super::options::SCAN_LIMIT_MAX {
        return Err(ClientError::InvalidArgument(format!(
            "scan limit {limit} must be 1..={}",
            super::options::SCAN_LIMIT_MAX
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rule_never_repeats_non_idempotent_writes() {
        let set = |mode| Request::Set {
            key: b"k".to_vec(),
            value: vec![],
            mode,
            flags: 0,
            expire_at: 0,
        };
        assert!(is_idempotent(&set(SetMode::Set)));
        for mode in [
            SetMode::Add,
            SetMode::Append,
            SetMode::Prepend,
            SetMode::Cas(7),
        ] {
            assert!(!is_idempotent(&set(mode)), "{mode:?}");
        }
        assert!(!is_idempotent(&Request::Incr {
            key: b"k".to_vec(),
            delta: 1,
            initial: None,
            expire_at: 0
        }));
        assert!(is_idempotent(&Request::Get { key: b"k".to_vec() }));
    }

    #[test]
    fn responses_map_to_typed_errors() {
        let ctx = Ctx {
            what: "add",
            key: b"k",
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            ctx.stored(SetMode::Add, Response::NotStored),
            Err(ClientError::Exists { .. })
        ));
        assert!(matches!(
            ctx.stored(SetMode::Cas(1), Response::Exists),
            Err(ClientError::CasMismatch { .. })
        ));
        assert!(matches!(
            ctx.stored(
                SetMode::Set,
                Response::error(
                    ErrorCode::TooLarge,
                    "value is 9 bytes, more than value_size_max 8"
                )
            ),
            Err(ClientError::TooLarge { limit: 8, .. })
        ));
        assert!(matches!(
            ctx.number(Response::Touched),
            Err(ClientError::Protocol(_))
        ));
    }
}
