//! chmpx — the dkc router: one daemon per host and cluster, and the libraries it is built from.
//!
//! This crate owns everything that moves messages and decides where they go: the cluster's INI
//! configuration in CHMPX's layout, key placement (slots, owners, epochs), the local attach
//! transport that processes on the host use (POSIX message queues as doorbells, shared-memory
//! rings for bodies), the TCP (optionally TLS) links between chmpx daemons, membership, failure
//! detection, failover, merge orchestration, the control port, status and metrics. It carries
//! opaque messages: it must never depend on dkc commands, on the storage engine (`k2hash`) or on
//! any crate of the dkc workspace; dkc-server and the clients depend on it, never the reverse.
//!
//! # Layout
//! - [`config`] — the INI file: parsing, NAME patterns, defaults, checks, kernel limits it needs.
//! - [`placement`] — pure placement: which server nodes own each slot of the hash space.
//! - [`ipc`] — message queues, shared memory and the byte ring, wrapped to close on drop.
//! - [`attach`] — the local attach transport: [`attach::Attachment`] (process side) and
//!   [`attach::AttachListener`] (chmpx side).
//! - [`link`] — links between chmpx daemons: frames, handshake, heartbeats, reconnection.
//! - [`merge`] — the merge protocol chmpx speaks with its server process.
//! - [`daemon`] — the daemon that joins them: routing thread, membership, control port, status,
//!   metrics. `src/bin/chmpx.rs` is a thin `main`; `chmpxstatus` and `chmpxctl` are its
//!   operator tools.
//! - `testkit` (cargo feature `testkit`) — start and watch local clusters from tests and
//!   `dkc-local`.
pub mod attach;
pub mod config;
pub mod daemon;
pub mod ipc;
pub mod link;
pub mod merge;
pub mod placement;
#[cfg(feature = "testkit")]
pub mod testkit;
