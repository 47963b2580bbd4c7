//! Local attach transport: how processes on this host (dkc-server, clients, the memcached
//! front) exchange messages with their chmpx through POSIX message queues and shared memory.
//!
//! ```text
//!  process                                                    chmpx
//!  Attachment ── hello {pid, role, n} ──> /dkc.<cl>.<port>.accept ──> AttachListener
//!     │   segment /dkc.<cl>.<port>.p<pid>.<n>  (created by the process, mode 0600)
//!     ├── ring "up"   ── frames ──────────────────────────────────> AttachedProcess::recv_batch
//!     │      doorbell .up (16 B, only when chmpx sleeps)  ────────>   (tokio AsyncFd)
//!     └── ring "down" <── frames ────────────────────────────────── AttachSender::send
//!            doorbell .dn (16 B, only when the process sleeps) <──
//! ```
//!
//! Bodies travel only in the rings (up to `body_size_max`, 1 MiB by default); queues carry
//! 16-byte doorbells and 24-byte hellos, so each queue costs a few hundred bytes of the
//! per-user RLIMIT_MSGQUEUE budget and stays within `msg_max` 10 and `msgsize_max` 8192. One
//! doorbell announces every frame published before the consumer wakes (batching).
//!
//! Layout: [`envelope`] the message model and its codec (no I/O), [`wire`] doorbells and
//! hellos, [`names`] object names, [`segment`] the shared segment layout, [`process`] the
//! process side (with `process/fanout.rs`: one request answered by several nodes,
//! [`Attachment::submit_fanout`]), [`listener`] the chmpx side, [`cleanup`] start-up cleanup, [`echo`] a
//! stand-in chmpx for tests and benchmarks.
//!
//! chmpx moves opaque messages: this module knows nothing of dkc commands or storage, and does
//! no routing (hash -> node is the daemon's job). It must never depend on `config`,
//! `placement` or `link`.

pub mod cleanup;
pub mod echo;
pub mod envelope;
pub mod error;
pub mod listener;
mod liveness;
pub mod names;
pub mod options;
pub mod process;
pub mod segment;
pub mod wire;

pub use envelope::{
    target_count, DecodeError, Envelope, Header, InvalidEnvelope, Kind, Route, FLAG_CHMPX_ERROR,
    FLAG_SOLE_OWNER, FLAG_TARGET_COUNT,
};
pub use error::{AttachError, RefuseReason};
pub use listener::{AttachListener, AttachSender, AttachedProcess};
pub use liveness::pid_alive;
pub use options::AttachOptions;
pub use process::{
    flush_deferred_doorbells, Attachment, FanoutProgress, PendingFanout, PendingResponse,
};
pub use wire::Role;
