//! dkc-client: the dkc Rust driver, the `dkc` CLI and the memcached protocol front.
//!
//! This crate owns what a client of the cluster sees: the request and response types of the
//! wire protocol, the driver that sends them through the local chmpx (attach transport), retries
//! and timeouts, and the memcached front. It must never depend on dkc-server or on the storage
//! engine (`k2hash`): clients reach data only through chmpx.
//!
//! - [`client`]: the Rust driver (blocking `Client`, async `AsyncClient`) over the local chmpx.
//! - [`memcached`]: memcached text, meta and binary protocol front over a `Storage` trait.
//! - [`memcached_cluster`]: the memcached `Storage` over the cluster driver (`--backend cluster`).
//! - [`proto`]: the wire Request/Response types shared by clients and dkc-server.

pub mod client;
pub mod memcached;
pub mod memcached_cluster;
pub mod proto;
