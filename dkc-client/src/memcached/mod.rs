//! dkc-memcached's protocol layer: a memcached-1.6-compatible front (text, meta and binary
//! protocols)
//! over any [`Storage`]. It owns parsing, reply encoding, exptime conversion and connection
//! handling; it must never depend on how or where items are stored (the cluster client
//! implements [`Storage`] in `memcached_cluster`; `bin/dkc-memcached.rs` chooses the backend).
//!
//! Layout, from wire to storage:
//! - [`limits`]: every bound, as named constants and the [`Limits`] builder.
//! - [`numeric`]: memcached's number acceptance rules.
//! - [`request`]: the request types both encodings decode into; `Incomplete` vs invalid.
//! - [`text`]: text protocol decoder; [`meta`]: meta protocol decoder.
//! - [`execute`]: applies a request to a storage and encodes the reply ([`meta_execute`] for
//!   meta requests, [`binary`] for binary ones).
//! - [`storage`]: the [`Storage`] trait; [`memory`]: the in-memory storage for tests.
//! - [`stats`]: counters for `stats`; [`server`]: the tokio TCP server.
//!
//! - [`binary`]: binary protocol decoder and command layer (chosen per connection by its
//!   first byte, as memcached does).

pub mod binary;
pub mod execute;
pub mod limits;
pub mod memory;
pub mod meta;
pub mod meta_execute;
pub mod numeric;
pub mod request;
pub mod server;
pub mod stats;
pub mod storage;
pub mod text;
pub mod unix_socket;

pub use limits::Limits;
pub use memory::{Clock, ManualClock, MemoryStorage, SystemClock};
pub use server::{Server, ServerConfig};
pub use storage::Storage;

#[cfg(test)]
mod fuzz_tests;
