//! What can go wrong with a request, as one enum callers can match on. Every variant says what
//! failed; none of them is ever a panic.

use std::time::Duration;

use crate::proto::ErrorCode;

/// The error of every driver call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The key has no live item (delete, touch, incr/decr without an initial value, cas on a
    /// missing key, subkey commands on a missing parent).
    #[error("not found: {key}")]
    NotFound {
        /// The key, escaped for display.
        key: String,
    },
    /// `add` found a live item under the key.
    #[error("not stored: {key} already exists (add)")]
    Exists {
        /// The key, escaped for display.
        key: String,
    },
    /// The CAS token (version) given no longer matches the live item: someone wrote it since.
    #[error("cas mismatch on {key}: the item changed since the version you read; read it again")]
    CasMismatch {
        /// The key, escaped for display.
        key: String,
    },
    /// A condition of replace/append/prepend did not hold (no live item).
    #[error("not stored: {key} ({what} needs a live item)")]
    NotStored {
        /// The key, escaped for display.
        key: String,
        /// The command.
        what: &'static str,
    },
    /// A key, value or list exceeds a limit of the client or the server.
    #[error("too large: {message} (limit {limit} bytes)")]
    TooLarge {
        /// The limit in bytes (0 when the server did not say).
        limit: u64,
        /// What exceeded it.
        message: String,
    },
    /// incr/decr on a value that is not a decimal u64.
    #[error("not numeric: {key} does not hold a decimal number below 2^64")]
    NotNumeric {
        /// The key, escaped for display.
        key: String,
    },
    /// No answer in time. For a write the outcome is unknown: it may have happened.
    #[error(
        "timeout: {what} got no answer within {after:?} (the command may or may not have run)"
    )]
    Timeout {
        /// The command.
        what: &'static str,
        /// How long the last attempt waited.
        after: Duration,
    },
    /// The cluster cannot serve now: chmpx not running or restarting, no live owner of the key,
    /// no server process attached.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Why, as chmpx or the server said it.
        reason: String,
    },
    /// An answer could not be decoded or does not fit the request: client and server builds
    /// disagree, or a message was damaged.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused or failed the command with a stable code.
    #[error("server error {code}: {message} ({})", code.description())]
    Server {
        /// Stable code.
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
    /// The config file or the options are wrong (nothing was sent).
    #[error("config: {0}")]
    Config(String),
    /// A call was made with arguments that cannot work (nothing was sent).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ClientError {
    /// True for the outcomes a caller usually handles as a normal answer rather than a failure
    /// (the CLI's exit code 1): not found, exists, cas mismatch, not stored.
    pub fn is_miss(&self) -> bool {
        matches!(
            self,
            ClientError::NotFound { .. }
                | ClientError::Exists { .. }
                | ClientError::CasMismatch { .. }
                | ClientError::NotStored { .. }
        )
    }

    /// True when the cluster could not be reached or did not answer in time.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. } | ClientError::Unavailable { .. }
        )
    }
}

/// Shorthand for driver results.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A key for messages: printable ASCII kept, other bytes as `\xNN`, cut at
/// [`KEY_DISPLAY_LEN_MAX`] characters.
pub fn display_key(key: &[u8]) -> String {
    let mut out = String::new();
    for &b in key {
        if out.len() >= KEY_DISPLAY_LEN_MAX {
            out.push_str("...");
            break;
        }
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Longest key text put into an error message, characters.
pub const KEY_DISPLAY_LEN_MAX: usize = 200;

/// The last decimal number in a server message ("... more than value_size_max 1048000"), which
/// is the limit for `E_TOO_LARGE`.
pub(crate) fn limit_in(message: &str) -> u64 {
    message
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_display_escaped_and_limits_parse() {
        assert_eq!(display_key(b"a b\x00\\"), "a\\x20b\\x00\\x5c");
        assert_eq!(
            limit_in("value is 2000000 bytes, more than value_size_max 1048000"),
            1_048_000
        );
        assert_eq!(limit_in("no number"), 0);
    }
}
