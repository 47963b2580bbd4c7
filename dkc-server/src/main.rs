//! `dkc-server --conf FILE [--ctlport N] [--attach-spin-us N]`: executes dkc commands on this node's k2hash data
//! behind the local chmpx. A thin `main` over [`dkc_server::server`]: parse arguments, read the
//! config, read the test-only `DKC_TEST_DISABLE_REPLICATION` switch, install the signal
//! handlers, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chmpx::attach::options::parse_spin_us;
use clap::Parser;
use dkc_server::server::settings::{replication_disabled_by, DISABLE_REPLICATION_ENV};
use dkc_server::server::{run, ServerSettings};

/// Executes dkc commands on this node's k2hash data behind the local chmpx.
#[derive(Debug, Parser)]
#[command(name = "dkc-server", version)]
struct Args {
    /// The cluster config file (the same file chmpx runs with; needs a [K2HDKC] section).
    #[arg(long = "conf", env = "DKCCONFFILE")]
    conf: PathBuf,
    /// CTLPORT of this node's chmpx, telling apart several nodes on one host.
    #[arg(long = "ctlport")]
    ctlport: Option<u16>,
    /// Log filter (RUST_LOG syntax), e.g. `info` or `dkc_server=debug`.
    #[arg(long = "log", env = "DKCDBGMODE", default_value = "info")]
    log: String,
    /// How long a worker polls for requests before it sleeps on the doorbell, µs. Polling saves
    /// a wake-up per batch when a core is free for it; on a host with more busy processes than
    /// cores (a whole cluster on one small host) 0 serves better. Default: the attach
    /// transport's own.
    #[arg(long = "attach-spin-us", value_parser = parse_spin_us)]
    attach_spin_us: Option<u64>,
}

fn install_signal_handlers(stop: &Arc<AtomicBool>) -> std::io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let stop = stop.clone();
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            signal_hook_registry::register(sig, move || stop.store(true, Ordering::Release))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = match chmpx::config::Config::load(&args.conf) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("dkc-server: {e}");
            return ExitCode::from(2);
        }
    };
    let local = chmpx::config::LocalAddrs::detect();
    let mut settings = match ServerSettings::from_config(&cfg, args.ctlport, &local) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dkc-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(us) = args.attach_spin_us {
        settings.attach.spin_wait_us = us;
    }
    // Test-only switch, read once here (see the crate doc); `run` warns loudly when it is on.
    settings.replication_disabled =
        replication_disabled_by(std::env::var(DISABLE_REPLICATION_ENV).ok().as_deref());
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = install_signal_handlers(&stop) {
        eprintln!("dkc-server: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    match run(settings, stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dkc-server: {e}");
            ExitCode::from(1)
        }
    }
}
