//! Scenario-test harness of dkc: starts real `chmpx` and `dkc-server` processes on 127.0.0.1,
//! waits for them by polling, injects faults (SIGKILL, SIGSTOP/SIGCONT, restart), and checks
//! what the cluster promises (DESIGN.md §9) from the outside.
//!
//! Layout:
//! - [`spec`]: what cluster to build ([`ClusterSpec`]) and the INI it becomes, checked by
//!   `chmpx::config::Config::parse_str` before any process starts.
//! - ports: `chmpx::testkit::ports` (below the ephemeral range, reserved machine-wide).
//! - [`binaries`]: where the daemons' executables are, building them once per test process
//!   when they are missing.
//! - [`daemon`]: one child process with its log file, signals and restart.
//! - [`control`]: the control port (commands, `STATUSJSON` parsed into a `StatusReport`).
//! - [`cluster`]: [`Cluster`], the running cluster; its `Drop` kills every child, even when
//!   the test panics, and prints the children's logs when it does.
//! - [`kv`]: the [`Kv`] trait the scenarios talk through, and [`AttachKv`], its
//!   implementation over the attach transport and the wire protocol.
//! - [`driver`]: [`Kv`] over the `dkc_client::client` driver; [`Cluster::kv`] picks it
//!   unless `DKC_TEST_CLIENT=attach` asks for [`AttachKv`].
//! - [`direct`]: requests to one named node (reads, stats, per-slot merge digests), bypassing
//!   routing, to see what each owner really holds.
//! - [`history`]: a record of every operation and its outcome, and the checks on it.
//! - [`ipc`]: removal of the queues and segments SIGKILLed processes leave behind.
//! - [`linear`]: single-key linearizability against a register model (Wing–Gong search).
//! - [`checker`]: the checks of a multi-host fault run (lost, phantom, stale, counters,
//!   linearizability) and its report table.
//! - [`netns_run`]: multi-host fault scenarios on simulated hosts (`dkc_tools::netns`), with
//!   seeded fault schedules.
//!
//! Must never depend on: the daemons' internals beyond their public wire types (status JSON,
//! proto, merge protocol, config); tests see the cluster as a user does.

pub mod binaries;
pub mod checker;
pub mod cluster;
pub mod control;
pub mod daemon;
pub mod direct;
pub mod driver;
pub mod history;
pub mod ipc;
pub mod kv;
pub mod linear;
pub mod netns_run;
pub mod spec;

pub use cluster::{Cluster, NodeHandle};
pub use history::{History, Op, Outcome};
pub use kv::{AttachKv, Kv, KvError};
pub use spec::ClusterSpec;

/// Seconds since the unix epoch, from the wall clock (what `expire_at` is measured in).
pub fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
