//! Command-line arguments of `dkc-local`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default memcached port of the front (memcached's own default).
pub const MEMCACHED_PORT_DEFAULT: u16 = 11211;
/// Default data directory when neither --dir nor $XDG_DATA_HOME is given.
pub const DIR_DEFAULT: &str = "data/dkc-local";
/// Default polling time, µs, of every process this tool starts (chmpx's routing thread,
/// dkc-server's workers, the front's driver) before it sleeps on its doorbell. A local cluster
/// runs 2N+2 busy processes on this host's cores, so a poll mostly takes the CPU another
/// process of the same request needs. With polling off the 1-node memcached benchmark on 2
/// cores made 0.96-1.25x the ops/s at 7-29% less CPU per operation, with a lower p99 in every
/// case (docs/BENCHMARKS.md, Round 7). A process started by hand keeps the attach transport's
/// own default, which is what an idle core needs (1.4-2.2 µs a hop against 48-58 µs without).
pub const ATTACH_SPIN_US_DEFAULT: u64 = 0;
/// The memcached front gets one runtime worker per this many CPUs (at least one) unless
/// `--front-threads` says otherwise: it shares the host with every chmpx and dkc-server of
/// the cluster, and two workers on two cores mostly wake each other. On 2 cores one worker
/// made 1.09x the ops/s on 100% get and 1.05x on 90/10, with a lower p50 and p99
/// (`tools/bench-front-pair.sh`, docs/BENCHMARKS.md Round 10).
pub const FRONT_CPUS_PER_THREAD: usize = 2;

/// The front's worker count when `--front-threads` is 0.
pub fn front_threads_auto() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / FRONT_CPUS_PER_THREAD).max(1)
}

#[derive(Debug, Parser)]
#[command(
    name = "dkc-local",
    version,
    about = "run a local dkc cluster (3 nodes + memcached front) from the INI files in conf/"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start the cluster and the memcached front; stop everything on Ctrl-C or SIGTERM.
    Up(UpArgs),
    /// Show the processes of a running cluster and its chmpxstatus table.
    Status(DirArgs),
    /// Stop a cluster started with `up` (for example `up --detach`) from another shell.
    Down(DirArgs),
}

#[derive(Debug, Args, Clone)]
pub struct DirArgs {
    /// Data directory of the run (default ./data/dkc-local, or $XDG_DATA_HOME/dkc-local).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Server nodes (chmpx + dkc-server each) on 127.0.0.1. 3 is conf/local-3node.ini as
    /// shipped; other counts add or drop `[SVRNODE]` entries in the generated copy. On a
    /// directory that holds a cluster, more nodes join it (SERVICEIN); fewer are refused.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Replicas per slot besides the primary (REPLICA); default: the template's value.
    #[arg(long)]
    pub replica: Option<u32>,
    /// memcached port of the front on 127.0.0.1 (0 picks a free one; the ready line says which).
    #[arg(long, default_value_t = MEMCACHED_PORT_DEFAULT)]
    pub port: u16,
    /// Folder holding local-3node.ini and local-slave.ini.
    #[arg(long = "conf-dir", default_value = "conf")]
    pub conf_dir: PathBuf,
    /// First data port; node i uses base+2i (data) and base+2i+1 (control), the slave
    /// base+max(11, 2N+1). Default: the template's first PORT (8020). Change it to run next to
    /// another cluster.
    #[arg(long = "base-port")]
    pub base_port: Option<u16>,
    /// Cluster name (GROUP; it also prefixes queue and shared-memory names). Default: the
    /// template's.
    #[arg(long)]
    pub group: Option<String>,
    /// Seconds to wait for the cluster and the front to answer before giving up.
    #[arg(long = "ready-timeout", default_value_t = 60)]
    pub ready_timeout_secs: u64,
    /// Start in the background, print the ready line, and return (stop with `dkc-local down`).
    #[arg(long)]
    pub detach: bool,
    /// How long each process polls before sleeping on its doorbell, µs (passed to chmpx,
    /// dkc-server and dkc-memcached as --attach-spin-us). Raise it (20-50) on a host with
    /// cores to spare for lower latency at light load.
    #[arg(long = "attach-spin-us", default_value_t = ATTACH_SPIN_US_DEFAULT,
          value_parser = chmpx::attach::options::parse_spin_us)]
    pub attach_spin_us: u64,
    /// Runtime workers of the memcached front (passed to dkc-memcached as --threads); 0 = one
    /// per FRONT_CPUS_PER_THREAD (2) CPUs, at least one.
    #[arg(long = "front-threads", default_value_t = 0,
          value_parser = dkc_client::memcached::limits::parse_worker_threads)]
    pub front_threads: usize,
}

impl DirArgs {
    /// The data directory, absolute.
    pub fn resolve(&self) -> PathBuf {
        let dir = match (&self.dir, std::env::var_os("XDG_DATA_HOME")) {
            (Some(d), _) => d.clone(),
            (None, Some(x)) if !x.is_empty() => PathBuf::from(x).join("dkc-local"),
            _ => PathBuf::from(DIR_DEFAULT),
        };
        std::path::absolute(&dir).unwrap_or(dir)
    }
}
