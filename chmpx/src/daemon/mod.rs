//! The chmpx daemon: joins the config, placement, the local attach transport and the links into
//! the per-host router process, and runs membership, merge orchestration, the control port, the
//! status model and the metrics endpoint.
//!
//! Layout:
//! - [`settings`] — the plain values the daemon runs with ([`DaemonSettings`]);
//! - [`command`]  — control-port command lines (pure parser);
//! - [`status`]   — the status model ([`StatusReport`]) and its text forms;
//! - [`wire`]     — what the daemon puts in link frames, and the flags it sets (pure codec);
//! - [`ring`]     — ring commands at the coordinator and the ordering rule (pure);
//! - [`ring_file`] — the ring state a server node saves in its data directory;
//! - [`router`]   — the single task that owns the node table and moves every message;
//! - [`merge_engine`] — slot reconciliation by digests, version lists and item copies;
//! - [`control`]  — the control-port server and its client helper;
//! - [`metrics`]  — counters and the Prometheus text;
//! - [`metrics_port`] — the METRICSPORT endpoint: who may read it, and how many at once;
//! - [`refusal_log`] — how the control and metrics ports log refused connections;
//! - [`run`](mod@run)      — binding everything and the router loop;
//! - [`from_config`] — the config file mapped onto settings;
//! - [`limits`]   — every named limit.
//!
//! Must never depend on: dkc commands or storage (message bodies are opaque; merge requests use
//! [`crate::merge::protocol`] and nothing else of the server's).

pub mod command;
pub mod control;
pub mod down_votes;
pub mod freeze;
pub mod from_config;
pub mod limits;
pub mod merge_engine;
pub mod metrics;
pub mod metrics_port;
pub mod refusal_log;
pub mod ring;
pub mod ring_file;
pub mod router;
pub mod run;
pub mod settings;
pub mod status;
pub mod wire;

pub use command::{Command, CommandError};
pub use from_config::{settings_from_config, SettingsError};
pub use run::{check_tls, run, RunError};
pub use settings::{DaemonSettings, Mode, NodeSpec};
pub use status::StatusReport;
pub use wire::{node_number, FLAG_CHMPX_ERROR, FLAG_TARGET_COUNT};
