//! Links between chmpx daemons on different hosts: TCP, length-prefixed MessagePack frames,
//! handshake with optional shared-secret challenge-response, heartbeats and failure detection,
//! reconnection with backoff, and bounded per-peer queues.
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
//! - `conn`     — frame reader/writer over stream halves;
//! - `handshake`— Hello / HelloAck / AuthProof;
//! - `session`  — one established link: reader, writer, watchdog;
//! - `manager`  — listener, per-peer drivers, [`LinkHandle`];
//! - `stats`, `peer`, `event`, `error` — what the daemon reads and receives.
//!
//! One link per pair: the lower id dials when both listen (a slave, which has no data port,
//! always dials). See [`options::self_dials`].

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
pub mod manager;
pub mod options;
mod peer;
mod session;
pub mod stats;

pub use error::{SendError, StartError};
pub use event::{LinkEvent, Outgoing};
pub use frame::{DataMsg, Frame, FrameBody, FrameError};
pub use manager::{LinkHandle, LinkManager};
pub use options::{LinkOptions, PeerSpec};
pub use stats::{LinkStatsSnapshot, PeerState};
