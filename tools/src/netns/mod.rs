//! Simulated hosts on one machine for multi-host fault tests (DESIGN.md §9): a [`Lab`] is a
//! bridge and N hosts, each with its own network namespace (a veth into the bridge, its own
//! address), its own IPC namespace (its own POSIX message queues), its own mount namespace
//! (a private tmpfs on `/dev/shm`, so shared-memory segments of two hosts never meet, and its
//! own data directory bound at the lab's common data path) — plus the faults a test injects:
//! kill -9, SIGSTOP/SIGCONT, partitions with `iptables -j DROP` (both ways or one way), link
//! down, a full disk (a small tmpfs data directory filled up), heal.
//!
//! # Why namespaces are held by processes (and not by `ip netns add`)
//!
//! Each namespace is held by one *holder* process (`unshare --net --ipc --mount ... sleep`) and
//! entered with `setns(2)` on `/proc/<holder>/ns/*`. Nothing is ever named in `/run/netns`,
//! and nothing is created in the machine's own network namespace: the veth pairs live between
//! a host namespace and the bridge namespace. A namespace lives exactly as long as a process
//! is in it, so cleanup follows from process death alone:
//!
//! - every process the lab starts (holders and host processes) gets `PR_SET_PDEATHSIG`
//!   SIGKILL, so when the test process dies — a panic, a SIGKILL, a timeout — the kernel kills
//!   them all, and the namespaces, veths, bridge, iptables rules, queues and `/dev/shm`
//!   segments go with them;
//! - dropping the [`Lab`] kills them explicitly and waits for them;
//! - holders also exit by themselves after [`HOLDER_LIFETIME_MAX_SECS`].
//!
//! The alternative (`unshare --mount` with a private tmpfs on `/run/netns` around the whole
//! test) would need the test process itself to live in that mount namespace, and would still
//! leave the namespaces alive if one of their processes survived; holders need neither.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that spawned the process exits: create the lab
//! and spawn host processes from the same thread (a test's own thread is fine).
//!
//! # Layout
//! - [`error`] — [`NetnsError`].
//! - [`holder`] — one namespace holder process and how to enter its namespaces.
//! - [`lab`] — [`Lab`], [`Host`], [`HostProcess`], the bridge and the veths.
//! - [`fault`] — partitions, link down/up, heal.
//! - [`disk`] — full-disk faults: tmpfs data directories, a filler that fills them.
//! - [`seed`] — the printed seed every random choice comes from.
//! - [`chmpx_lab`] — a chmpx cluster config for a lab, status polling, routing probes.
//! - [`bins`] — where the daemons' binaries are.
//! - [`delay_proxy`] — a TCP proxy adding fixed + random delay (no `netem` here).
//! - [`memcached_client`] — the memcached text-protocol client of the workload's memcached
//!   mode (client hosts that run `dkc-memcached`).
//! - [`workload`] — the client-host workload of the fault tests and its after-run reads
//!   and digest checks (run inside a client host by `dkc-fault-client`).
//!
//! This module may depend on the `chmpx` library (configs, status types, placement) and on
//! system tools (`unshare`, `ip`, `iptables`); no library crate may depend on it.

pub mod bins;
pub mod chmpx_lab;
pub mod delay_proxy;
pub mod disk;
pub mod error;
pub mod fault;
pub mod holder;
pub mod lab;
pub mod memcached_client;
pub mod seed;
pub mod workload;

pub use error::NetnsError;
pub use fault::Direction;
pub use lab::{Footprint, Host, HostProcess, Lab, LabSpec};
pub use seed::Seed;

/// Longest life of a namespace holder, even when nobody kills it.
pub const HOLDER_LIFETIME_MAX_SECS: u64 = 3600;
/// Longest wait for a holder to report its namespaces ready.
pub const HOLDER_READY_WAIT_MS: u64 = 10_000;
/// Longest run of one setup command (`ip`, `iptables`) inside a namespace.
pub const SETUP_COMMAND_MAX_MS: u64 = 10_000;
/// Most hosts in one lab (addresses .1 ..= .HOSTS_MAX of the lab's /24).
pub const HOSTS_MAX: usize = 200;
/// Size of each host's private `/dev/shm` tmpfs, MiB.
pub const HOST_SHM_SIZE_MIB: u64 = 256;

const _: () = assert!(HOSTS_MAX < 254);
