//! dkc-memcached: a memcached-1.6-compatible server (text, meta and binary protocols) in front
//! of a dkc cluster, attached to the local chmpx. A thin main over `dkc_client::memcached`; the
//! in-memory backend is for tests and for measuring the front alone.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chmpx::attach::options::parse_spin_us;
use clap::{Parser, ValueEnum};
use dkc_client::client::{Client, ClientOptions};
use dkc_client::memcached::limits::{
    parse_worker_threads, Limits, CONNECTIONS_MAX_DEFAULT, IDLE_TIMEOUT_SECS_DEFAULT,
    ITEM_SIZE_MAX_DEFAULT, ITEM_SIZE_MAX_MAX, ITEM_SIZE_MAX_MIN, STORAGE_TIMEOUT_MS_DEFAULT,
};
use dkc_client::memcached::server::Listener;
use dkc_client::memcached::unix_socket::{bind_unix, parse_unix_mask};
use dkc_client::memcached::{MemoryStorage, Server, ServerConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    /// Items in this process's memory: for tests; nothing is shared or kept.
    Memory,
    /// Items in the dkc cluster, through the local chmpx named by --conf/--ctlport.
    Cluster,
}

#[derive(Debug, Parser)]
#[command(version, about = "memcached-compatible front of a dkc cluster")]
struct Args {
    /// Where items live. Required, so that the memory backend (for tests) is never mistaken
    /// for the cluster.
    #[arg(long, value_enum)]
    backend: Backend,
    /// The config file of the local chmpx (`--backend cluster`): a slave's, e.g.
    /// conf/local-slave.ini, or a server node's.
    #[arg(long = "conf", required_if_eq("backend", "cluster"))]
    conf: Option<std::path::PathBuf>,
    /// Which entry of --conf is the local chmpx, when several run on this host.
    #[arg(long = "ctlport")]
    ctlport: Option<u16>,
    /// TCP port (0 picks a free one; the chosen port is printed).
    #[arg(short = 'p', long, default_value_t = 11211)]
    port: u16,
    /// Interface to listen on.
    #[arg(short = 'l', long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// Listen on this UNIX socket instead of TCP (memcached's -s; -p and -l are then unused).
    /// A socket file nobody listens on is replaced; a live one, or another kind of file, is
    /// refused. The file is removed on SIGINT or SIGTERM.
    #[arg(short = 's', long = "unix-socket")]
    unix_socket: Option<PathBuf>,
    /// Permission bits of the UNIX socket file, octal (memcached's -a).
    #[arg(short = 'a', long = "unix-mask", default_value = "700", value_parser = parse_unix_mask)]
    unix_mask: u32,
    /// Maximum simultaneous connections.
    #[arg(short = 'c', long = "conn-limit", default_value_t = CONNECTIONS_MAX_DEFAULT)]
    connections_max: usize,
    /// Largest item in bytes (suffixes k and m allowed, as in memcached).
    #[arg(short = 'I', long = "max-item-size", default_value_t = ITEM_SIZE_MAX_DEFAULT.to_string())]
    item_size_max: String,
    /// Close connections idle this long (0: never).
    #[arg(long = "idle-timeout-secs", default_value_t = IDLE_TIMEOUT_SECS_DEFAULT)]
    idle_timeout_secs: u64,
    /// Longest wait for the storage on one request before answering SERVER_ERROR.
    #[arg(long = "storage-timeout-ms", default_value_t = STORAGE_TIMEOUT_MS_DEFAULT)]
    storage_timeout_ms: u64,
    /// Worker threads serving connections (memcached's -t); 0 = one per CPU. 1 runs every
    /// connection on a single-threaded runtime.
    #[arg(short = 't', long = "threads", default_value_t = 0, value_parser = parse_worker_threads)]
    threads: usize,
    /// `--backend cluster`: how long the driver polls for chmpx's answers before sleeping on
    /// the doorbell, µs (default: the attach transport's own).
    #[arg(long = "attach-spin-us", value_parser = parse_spin_us)]
    attach_spin_us: Option<u64>,
}

fn parse_size(text: &str) -> anyhow::Result<usize> {
    let text = text.trim().to_ascii_lowercase();
    let (digits, unit) = match text.strip_suffix('k') {
        Some(d) => (d, 1024),
        None => match text.strip_suffix('m') {
            Some(d) => (d, 1024 * 1024),
            None => (text.as_str(), 1),
        },
    };
    let n: usize = digits.parse().with_context(|| {
        format!("--max-item-size {text:?}: expected a number of bytes, optionally with k or m")
    })?;
    let bytes = n.saturating_mul(unit);
    anyhow::ensure!(
        (ITEM_SIZE_MAX_MIN..=ITEM_SIZE_MAX_MAX).contains(&bytes),
        "--max-item-size {text}: must be between {ITEM_SIZE_MAX_MIN} and {ITEM_SIZE_MAX_MAX} bytes"
    );
    Ok(bytes)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    // A worker about to park has run every task it had: the requests they pushed toward chmpx
    // are all in the ring, so one doorbell now wakes chmpx for the whole burst (the cluster
    // backend defers its doorbells, see `AttachOptions::defer_doorbell`).
    let runtime = builder
        .enable_all()
        .on_thread_park(chmpx::attach::flush_deferred_doorbells)
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(args));
    // Do not wait for the attach transport's blocking threads: the process is ending.
    runtime.shutdown_background();
    result
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Serves until the listener fails or a stop signal comes; the listener (and a UNIX socket's
/// file) is dropped on the way out.
async fn run<S: dkc_client::memcached::storage::Storage>(
    server: Server<S>,
    listener: Listener,
) -> anyhow::Result<()> {
    let stop = stop_signal();
    tokio::select! {
        served = server.serve(listener) => Ok(served?),
        signal = stop => {
            tracing::info!("{}: stopping", signal?);
            Ok(())
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = ServerConfig {
        limits: Limits::default().with_item_size_max(parse_size(&args.item_size_max)?),
        connections_max: args.connections_max.max(1),
        idle_timeout: (args.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(args.idle_timeout_secs)),
        storage_timeout: Duration::from_millis(args.storage_timeout_ms.max(1)),
    };
    let (listener, local) = match &args.unix_socket {
        Some(path) => {
            let socket = bind_unix(path, args.unix_mask)?;
            (Listener::Unix(socket), format!("unix:{}", path.display()))
        }
        None => {
            let addr = SocketAddr::new(args.listen, args.port);
            let (listener, local) = dkc_client::memcached::server::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            (Listener::Tcp(listener), local.to_string())
        }
    };
    match args.backend {
        Backend::Memory => {
            tracing::warn!(
                "backend MEMORY: items live only in this process and are NOT stored in the dkc cluster"
            );
            // Tests read this line to learn the port.
            println!("listening on {local}");
            run(
                Server::new(Arc::new(MemoryStorage::default()), config),
                listener,
            )
            .await?;
        }
        Backend::Cluster => {
            let conf = args.conf.context("--backend cluster needs --conf FILE")?;
            let ctlport = args.ctlport;
            let spin = args.attach_spin_us;
            let path = conf.clone();
            // Attaching may wait for chmpx: keep it off the runtime.
            let client = tokio::task::spawn_blocking(move || {
                let cfg = chmpx::config::Config::load(&path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let mut opts = ClientOptions::from_config(&cfg);
                // Flushed by the runtime's on_thread_park hook (see `main`).
                opts.attach.defer_doorbell = true;
                if let Some(us) = spin {
                    opts.attach.spin_wait_us = us;
                }
                anyhow::Ok(Client::from_config(&cfg, ctlport, opts)?.to_async())
            })
            .await
            .context("attach task failed")?
            .with_context(|| format!("cannot attach to the cluster of {}", conf.display()))?;
            // Tests and dkc-local read this line to learn the port.
            println!("listening on {local}");
            let storage = dkc_client::memcached_cluster::ClusterStorage::new(client);
            run(Server::new(Arc::new(storage), config), listener).await?;
        }
    }
    Ok(())
}
