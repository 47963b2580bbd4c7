//! Stable error codes. Operators, logs and the status tool rely on these strings: never rename
//! one, only add. Each code has a description saying what happened and what to do.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An error code, carried on the wire as its stable string (`"E_TOO_LARGE"`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A key, value, list or request exceeds a configured limit.
    TooLarge,
    /// `Incr`/`Decr` on a value that is not a decimal unsigned 64-bit number.
    NotNumeric,
    /// The request is malformed or contradictory.
    BadRequest,
    /// No owner of the key can be reached now.
    Unavailable,
    /// The store is read-only.
    ReadOnly,
    /// This node is still merging the key's slot and cannot serve it yet.
    Merging,
    /// The storage engine failed (I/O error, corruption).
    Storage,
    /// The peer speaks another protocol version.
    Version,
    /// Timed out waiting for an answer or for replicas.
    Timeout,
    /// Another owner already holds a newer write of the key, so this write lost (last writer
    /// wins).
    Superseded,
    /// An owner's disk is full, so the write could not be stored there.
    NoSpace,
    /// A code this build does not know (sent by a newer peer); the string is kept.
    Unknown(String),
}

impl ErrorCode {
    /// Every known code, for documentation and tests.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::TooLarge,
        ErrorCode::NotNumeric,
        ErrorCode::BadRequest,
        ErrorCode::Unavailable,
        ErrorCode::ReadOnly,
        ErrorCode::Merging,
        ErrorCode::Storage,
        ErrorCode::Version,
        ErrorCode::Timeout,
        ErrorCode::Superseded,
        ErrorCode::NoSpace,
    ];

    /// The stable string.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::TooLarge => "E_TOO_LARGE",
            ErrorCode::NotNumeric => "E_NOT_NUMERIC",
            ErrorCode::BadRequest => "E_BAD_REQUEST",
            ErrorCode::Unavailable => "E_UNAVAILABLE",
            ErrorCode::ReadOnly => "E_READONLY",
            ErrorCode::Merging => "E_MERGING",
            ErrorCode::Storage => "E_STORAGE",
            ErrorCode::Version => "E_VERSION",
            ErrorCode::Timeout => "E_TIMEOUT",
            ErrorCode::Superseded => "E_SUPERSEDED",
            ErrorCode::NoSpace => "E_NO_SPACE",
            ErrorCode::Unknown(s) => s,
        }
    }

    /// Parses a stable string; unknown strings give [`ErrorCode::Unknown`].
    pub fn parse(s: &str) -> ErrorCode {
        ErrorCode::ALL
            .iter()
            .find(|c| c.as_str() == s)
            .cloned()
            .unwrap_or_else(|| ErrorCode::Unknown(s.to_string()))
    }

    /// What the code means and what to do about it.
    pub fn description(&self) -> &'static str {
        match self {
            ErrorCode::TooLarge => {
                "a key, value or list exceeds a configured limit; send less, or raise the \
                 limit named in the message"
            }
            ErrorCode::NotNumeric => {
                "incr/decr on a value that is not a decimal number below 2^64; set a number \
                 first"
            }
            ErrorCode::BadRequest => "the request is malformed or contradictory; fix the caller",
            ErrorCode::Unavailable => {
                "no owner of the key is reachable; check chmpxstatus and retry later"
            }
            ErrorCode::ReadOnly => "the store is read-only; restart dkc-server writable",
            ErrorCode::Merging => {
                "this node is still merging the key's slot; retry, the client falls back to \
                 another owner"
            }
            ErrorCode::Storage => {
                "the storage engine failed (I/O or corruption); see the server log and run \
                 k2htool verify"
            }
            ErrorCode::Version => {
                "the peer speaks another protocol version; run the same dkc release everywhere"
            }
            ErrorCode::Timeout => "no answer in time; the operation may or may not have happened",
            ErrorCode::Superseded => {
                "another owner already holds a newer write of this key (written elsewhere \
                 meanwhile, or this node's clock is behind), so this write lost; read the key \
                 and retry"
            }
            ErrorCode::NoSpace => {
                "a node's disk is full, so the write could not be stored there (everything \
                 stored before is kept); free space on the file system named in the message, \
                 or delete keys, then retry. A message saying \"written on the primary\" means \
                 the other owners have it and merge copies it once space is freed"
            }
            ErrorCode::Unknown(_) => "an error code from a newer release; upgrade this client",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}
