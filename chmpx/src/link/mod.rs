//! Links between chmpx daemons on different hosts: TCP (optionally TLS), length-prefixed
//! MessagePack frames, handshake with optional shared-secret challenge-response, heartbeats and
//! failure detection, reconnection with backoff, and bounded per-peer queues.
//!
//! Owns: the wire format between chmpx daemons and everything about keeping those connections.
//! Must never depend on: the config module (the daemon maps its config onto [`PeerSpec`] and
//! [`LinkOptions`]), placement, dkc commands or storage. Messages are opaque bytes here.
//!
//! Layout, from pure to I/O:
//! - `limits`   — every named limit and default;
//! - `options`  — [`PeerSpec`], [`LinkOptions`], and the rule of who dials whom;
//! - `frame`    — the wire unit and its codec (no I/O);
//! - `auth`     — HMAC-SHA256 challenge-response over both nonces;
//! - `access`   — which source IPs and node ids may connect (pure);
//! - `backoff`  — reconnect delays with jitter (pure, seedable);
//! - `detector` — failure detection with an explicit clock (pure);
//! - `tls`      — rustls acceptor and connector from PEM files (the daemon passes the paths);
//! - `stream`   — a connection's halves, plain TCP or TLS;
//! - `conn`     — frame reader/writer over stream halves;
//! - `handshake`— Hello / HelloAck / AuthProof;
//! - `session`  — one established link: reader, writer, watchdog;
//! - `manager`  — listener, per-peer drivers, [`LinkHandle`];
//! - `listen`   — binding a listener, retried while its port is held for a moment;
//! - `stats`, `peer`, `event`, `error` — what the daemon reads and receives.
//!
//! One link per pair: the lower id dials when both listen (a slave, which has no data port,
//! always dials). See [`options::self_dials`].
//!
//! What the daemon can rely on:
//! - Per peer, events arrive in order: `PeerUp`, then that link's `Data`/`Control` in the order
//!   the peer sent them, then `PeerDown`. Messages to one peer leave in the order queued.
//! - The link layer never retries or duplicates a message. Whatever was queued or in flight when
//!   a link goes DOWN may be lost (queued ones are counted in `PeerState::dropped`); the daemon
//!   treats `PeerDown` as "outstanding requests to that peer need an answer from elsewhere".
//! - While a peer is DOWN, `send`/`try_send` fail at once with `PeerDown`.
//! - Memory per peer is bounded: the queue by `peer_queue_depth` messages and
//!   `peer_queue_bytes_max` bytes, the write batch by `WRITE_BATCH_BYTES_MAX`, the read buffer by
//!   `frame_size_max`. A slow daemon stalls its readers, and TCP pushes back on the senders; a
//!   peer whose heartbeats still arrive is never declared DOWN for being slow.
//! - A peer is DOWN at most `heartbeat_timeout + heartbeat_interval` after its last frame, at
//!   once on EOF, reset or a bad frame.

pub mod access;
pub mod auth;
pub mod backoff;
pub mod conn;
pub mod detector;
pub mod error;
pub mod event;
pub mod frame;
pub mod handshake;
pub mod limits;
pub mod listen;
pub mod manager;
pub mod options;
mod peer;
mod session;
pub mod stats;
pub mod stream;
pub mod tls;

pub use error::{SendError, StartError};
pub use event::{LinkEvent, Outgoing};
pub use frame::{DataMsg, Frame, FrameBody, FrameError};
pub use manager::{LinkHandle, LinkManager};
pub use options::{LinkOptions, PeerSpec};
pub use stats::{LinkStatsSnapshot, PeerState};
