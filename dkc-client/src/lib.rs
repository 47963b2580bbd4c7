//! dkc-client: the dkc Rust driver, the `dkc` CLI and the memcached protocol front.
//!
//! - [`client`]: the Rust driver (blocking `Client`, async `AsyncClient`) over the local chmpx.
//! - [`memcached`]: memcached text/meta protocol front over a `Storage` trait.
//! - [`memcached_cluster`]: the memcached `Storage` over the cluster driver (`--backend cluster`).
//! - [`proto`]: the wire Request/Response types shared by clients and dkc-server.

pub mod client;
pub mod memcached;
pub mod memcached_cluster;
pub mod proto;
