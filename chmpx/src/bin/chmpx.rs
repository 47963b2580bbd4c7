//! `chmpx` — the dkc router daemon, one per host and cluster.
//!
//! `chmpx --conf FILE [--ctlport N] [--check] [--log-level LEVEL] [--attach-spin-us N]`: runs in server mode on a
//! host listed in `[SVRNODE]` and in slave mode on one listed only in `[SLVNODE]`; `--check`
//! validates the file, prints what it needs from the kernel against the current limits, loads
//! the TLS files of this host's node (exit status 2 and the key and file named when one is
//! bad), and exits. A bad file is refused before anything starts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use chmpx::attach::options::parse_spin_us;
use chmpx::config::{check_report, Config, KernelLimits, LocalAddrs};
use chmpx::daemon::router::saved_ring;
use chmpx::daemon::{check_tls, run, settings_from_config};

#[derive(Parser, Debug)]
#[command(name = "chmpx", version, about = "dkc router daemon")]
struct Args {
    /// The cluster's INI config file.
    #[arg(long = "conf", short = 'c')]
    conf: PathBuf,
    /// Which entry of the file this process is, when several run on one host.
    #[arg(long)]
    ctlport: Option<u16>,
    /// Validate the file, print what it needs from the kernel, load this node's TLS files, and
    /// exit: status 0 when all is well, 1 when a kernel limit is too low, 2 when the file or a
    /// TLS file is bad.
    #[arg(long)]
    check: bool,
    /// Runtime threads (1 = everything on one thread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Log filter (overrides RUST_LOG), e.g. info, debug, chmpx=trace.
    #[arg(long = "log-level")]
    log_level: Option<String>,
    /// How long the routing thread polls the attachments after activity before it sleeps, µs.
    /// Polling saves a wake-up per message when a core is free for it; when more busy
    /// processes share the host than it has cores (a whole cluster on one small host), it
    /// takes the CPU they need and 0 serves better. Default: the attach transport's own.
    #[arg(long = "attach-spin-us", value_parser = parse_spin_us)]
    attach_spin_us: Option<u64>,
}

/// `--check`'s exit status when a kernel limit is too low for the file.
const CHECK_EXIT_LIMITS_TOO_LOW: u8 = 1;

/// For `--check`: prints what the node's saved ring state holds; an error when chmpx would
/// refuse it at start.
fn check_ring_file(settings: &chmpx::daemon::DaemonSettings) -> Result<(), String> {
    let Some(path) = &settings.ring_file else {
        return Ok(());
    };
    match saved_ring(settings) {
        Ok(Some(ring)) => {
            let out: Vec<String> = settings
                .servers()
                .filter(|n| !ring.membership.members.contains(&n.id))
                .map(|n| n.id.to_string())
                .collect();
            println!(
                "{:<8} ring state {}: version {}, epoch {}, {} SERVICE IN{}{}",
                "OK",
                path.display(),
                ring.version,
                ring.membership.epoch,
                ring.membership.members.len(),
                if out.is_empty() {
                    String::new()
                } else {
                    format!(", SERVICE OUT: {}", out.join(" "))
                },
                match ring.membership.pending_epoch() {
                    Some(e) => format!(", change pending for epoch {e}"),
                    None => String::new(),
                }
            );
            Ok(())
        }
        Ok(None) => {
            println!(
                "{:<8} no ring state yet at {} (every [SVRNODE] starts SERVICE IN, or as the peers hold it)",
                "OK",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match &args.log_level {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let cfg = match Config::load(&args.conf) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chmpx: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        let report = check_report(&cfg, KernelLimits::read());
        print!("{report}");
        // A kernel limit too low is status 1 (the report says which and how to raise it); a bad
        // file or TLS file is 2.
        let limits = if report.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(CHECK_EXIT_LIMITS_TOO_LOW)
        };
        // On a host that runs one of the file's nodes, also load the TLS files that node's
        // links would use (elsewhere they are checked where chmpx runs).
        let Ok(settings) = settings_from_config(&cfg, args.ctlport, &LocalAddrs::detect()) else {
            return limits;
        };
        let tls = match check_tls(&settings) {
            Ok(None) => Ok(()),
            Ok(Some(line)) => {
                println!("{:<8} {line}", "OK");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        let ring = check_ring_file(&settings);
        return match (tls, ring) {
            (Ok(()), Ok(())) => limits,
            (Err(e), _) | (_, Err(e)) => {
                println!("{:<8} {e}", "BAD");
                eprintln!("chmpx: {e}");
                ExitCode::from(2)
            }
        };
    }
    let mut settings = match settings_from_config(&cfg, args.ctlport, &LocalAddrs::detect()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chmpx: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(us) = args.attach_spin_us {
        settings.attach_spin_us = us;
    }
    // With --threads 1 the router, the attachment receivers and the links share one thread and
    // wake each other without crossing threads (shorter round trips on an idle host); more
    // threads keep pipelined throughput up when the host is busy.
    let built = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(args.threads))
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chmpx: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chmpx: {e}");
            ExitCode::FAILURE
        }
    }
}
