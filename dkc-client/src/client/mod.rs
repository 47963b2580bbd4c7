//! The dkc Rust driver: a blocking [`Client`] and an async (tokio) [`AsyncClient`] that attach
//! to this host's chmpx over its local IPC transport and speak [`crate::proto`] to the
//! dkc-server processes behind it.
//!
//! This module owns connecting, routing, timeouts, retries, typed errors and scan merging. It
//! must never depend on dkc-server or k2hash: a client has no storage. It uses chmpx only for
//! `attach` (the transport), `config` (finding this host's entry) and `placement::key_hash`.
//!
//! # Layout
//! - [`blocking`] — [`Client`]; [`nonblocking`] — [`AsyncClient`] (same commands, awaited).
//! - `ops` — one builder per keyed command (the request and how its answer reads), shared by
//!   both clients; [`command`] — the retry classification and the answer interpreters (pure).
//! - `fanout` — the request lists of multi-key and every-node commands and how their answers
//!   are read; `child_walk` — the walk of `delete_with_children`; `core` — the attachment, the
//!   routing and the judging and retry pause of one attempt. All shared by both clients, which
//!   differ only in how they wait.
//! - [`scan`] — merging every node's scan page in key order (pure).
//! - [`options`] — [`ClientOptions`] and the named limits; [`topology`] — the server nodes.
//! - [`error`] — [`ClientError`]; [`types`] — [`Expiry`], [`StoreOptions`], [`ScanQuery`], ...
//!
//! # Routing
//! ```text
//!  keyed command ── Route::HashFirst(xxh64(key)) ──> chmpx ──> first live owner's dkc-server
//!  scan/stats/flush ── Route::Node(n) for every server n ──> each node's dkc-server
//!  get_many ── one HashFirst request per key, all in flight at once
//! ```
//!
//! # Timeouts and retries
//! Each attempt waits [`Client::timeout`] (from the config's MQRWTIMEOUT × MQRETRYCNT, at least
//! [`options::REQUEST_TIMEOUT_DEFAULT_MS`]; override per call with [`Client::with_timeout`]).
//! A failed attempt is retried up to [`ClientOptions::retry_count`] times with backoff when:
//! - chmpx answered that it could not deliver (no live owner, peer unreachable, no server
//!   process): the command did not run, so any command is retried;
//! - the attempt timed out, chmpx restarted while it was in flight, or the server answered
//!   `E_MERGING`/`E_UNAVAILABLE`: only idempotent commands (reads, `set`, `replace`, `touch`,
//!   `get_and_touch`, subkey list writes, `scan`, `stats`, `flush`) are retried. `add`,
//!   `append`, `prepend`, `cas`, `incr`, `decr`, `delete`, `remove_subkey` and
//!   `delete_with_children` are never retried blindly: their error is returned and a timeout
//!   means the outcome is unknown.
//!
//! # Example
//! ```no_run
//! use dkc_client::client::{Client, ClientError, Expiry, StoreOptions};
//!
//! let client = Client::from_conf("/etc/dkc/slave.ini", None)?;
//! client.set("k", b"v\x00binary", StoreOptions::new().flags(7).expiry(Expiry::Never))?;
//! match client.add("k", "other", StoreOptions::new()) {
//!     Err(ClientError::Exists { .. }) => {}
//!     other => panic!("add on an existing key: {other:?}"),
//! }
//! let n = client.incr("visits", 1, Some(0), Expiry::Never)?;
//! # let _ = n;
//! # Ok::<(), ClientError>(())
//! ```

pub mod blocking;
mod child_walk;
pub mod command;
mod core;
pub mod error;
mod fanout;
pub mod nonblocking;
mod ops;
pub mod options;
pub mod scan;
pub mod topology;
pub mod types;

pub use crate::proto::ScanRange;
pub use blocking::Client;
pub use error::{ClientError, Result};
pub use nonblocking::AsyncClient;
pub use options::ClientOptions;
pub use topology::Topology;
pub use types::{Expiry, Item, NodeStats, ScanBatch, ScanQuery, StoreOptions};
