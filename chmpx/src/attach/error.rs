//! Errors of the attach transport. Each says what went wrong and what to do about it.

use crate::ipc::ring::PushError;
use crate::ipc::IpcError;

/// Why a refusal code was set in a segment by chmpx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The process's body limit exceeds chmpx's.
    BodyLimit,
    /// The segment's layout is not what chmpx expects (other version or damaged).
    Layout,
    /// Anything else.
    Other,
}

impl RefuseReason {
    pub(crate) fn code(self) -> u32 {
        match self {
            RefuseReason::BodyLimit => 1,
            RefuseReason::Layout => 2,
            RefuseReason::Other => 3,
        }
    }

    pub(crate) fn from_code(code: u32) -> RefuseReason {
        match code {
            1 => RefuseReason::BodyLimit,
            2 => RefuseReason::Layout,
            _ => RefuseReason::Other,
        }
    }
}

/// Errors of attaching, sending and receiving.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Ipc(#[from] IpcError),
    #[error("invalid cluster name {cluster:?}: {reason}")]
    InvalidCluster {
        cluster: String,
        reason: &'static str,
    },
    #[error("invalid attach options: {0}")]
    InvalidOptions(String),
    #[error(
        "chmpx for this cluster and ctlport is not running (no accept queue {accept_queue} \
         after {waited_ms} ms); start chmpx first"
    )]
    ChmpxNotRunning {
        accept_queue: String,
        waited_ms: u64,
    },
    #[error("chmpx did not answer the attach request within {waited_ms} ms (is it overloaded?)")]
    HandshakeTimeout { waited_ms: u64 },
    #[error("chmpx refused the attachment: {0:?} (check that body_size_max matches chmpx's)")]
    Refused(RefuseReason),
    #[error("another chmpx (pid {pid}) already serves {accept_queue}")]
    AlreadyRunning { accept_queue: String, pid: u32 },
    #[error("body of {len} bytes exceeds body_size_max {max}; raise body_size_max on chmpx and every process")]
    BodyTooLarge { len: usize, max: usize },
    #[error("no response to message {msg_id} within {waited_ms} ms (rw_timeout_ms)")]
    Timeout { msg_id: u64, waited_ms: u64 },
    #[error("chmpx went away while message {msg_id} was in flight; it was lost, retry it")]
    ChmpxRestarted { msg_id: u64 },
    #[error("the peer's ring is full ({needed} bytes needed, {free} free): it is not reading; retry later")]
    Backpressure { needed: usize, free: usize },
    #[error("attached process {pid} has died; its objects were removed")]
    ProcessGone { pid: u32 },
    #[error("the attachment was closed by the other side")]
    Detached,
    #[error("ring corrupt, attachment dropped: {0}")]
    RingCorrupt(String),
    #[error("receiving requests needs the server role")]
    NotServerRole,
    #[error("runtime error: {0}")]
    Runtime(String),
}

impl AttachError {
    /// Maps a ring push failure to the caller-visible error.
    pub(crate) fn from_push(e: PushError) -> AttachError {
        match e {
            PushError::Full { needed, free } => AttachError::Backpressure { needed, free },
            PushError::TooLarge { needed, capacity } => AttachError::BodyTooLarge {
                len: needed,
                max: capacity,
            },
            PushError::Corrupt(s) => AttachError::RingCorrupt(s),
        }
    }
}
