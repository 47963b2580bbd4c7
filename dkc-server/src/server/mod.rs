//! The dkc-server process: joins the config, the k2hash file, the executor and chmpx's attach
//! transport.
//!
//! ```text
//!            chmpx (this host)
//!     ┌────────────┴─────────────┐ attach (shm rings + MQ doorbells)
//!     │  worker threads × N      │  recv → decode → Executor::execute → reply
//!     │     │ writes with acks   │            (merge bodies → merge::handle_body)
//!     │     ▼                    │
//!     │  Replicate request on    │  HashChain(key hash), submit_fanout: chmpx fans it out to
//!     │  the key's chain         │  the key's other live owners and tells us how many it reached
//!     │     │                    │
//!     │  ack waiters × M  ───────┘  collect the owners' answers until ACKLEVEL is met (or
//!     │                              cannot be), then answer the client
//! ```
//! Workers never block on replicas: a write that needs acknowledgements hands its client
//! envelope to the ack waiters, so a worker is always free to take the next message. The
//! acknowledgement rules are in [`replicator`].
//!
//! Layout: [`settings`] (config → plain values), [`open`] (the k2hash file, with clear refusals),
//! [`replicator`] (acknowledgement levels), [`worker`] (the receive loop), [`run`](mod@run) (start-up,
//! signals, graceful shutdown).
//!
//! Must never depend on: chmpx's daemon internals (only `chmpx::attach`, `chmpx::config` and
//! the flags chmpx documents for attached processes).

pub mod fence;
pub mod open;
pub mod replicator;
pub mod run;
pub mod settings;
pub mod worker;

pub use run::{run, serve, ServerError, Serving};
pub use settings::{ServerSettings, SettingsError, StoreSpec};
