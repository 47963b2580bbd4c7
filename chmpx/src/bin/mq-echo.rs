//! `mq-echo`: a stand-in chmpx that accepts attachments on the local attach transport and
//! answers every request with its body. Used by the transport tests and `mqbench`. Prints
//! `READY <pid>` on stdout once the accept queue exists.

use std::io::Write;

use anyhow::Context;
use chmpx::attach::{echo::serve_echo, AttachListener, AttachOptions};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Echo listener for the chmpx attach transport (tests and benchmarks)")]
struct Args {
    /// Cluster name (part of every object name).
    #[arg(long)]
    cluster: String,
    /// Control port (part of every object name).
    #[arg(long, default_value_t = 8021)]
    ctlport: u16,
    /// Largest body accepted, bytes.
    #[arg(long)]
    body_size_max: Option<usize>,
    /// How often dead attachments are looked for, ms.
    #[arg(long)]
    liveness_ms: Option<u64>,
    /// Polling time on an active attachment before sleeping, µs.
    #[arg(long)]
    spin_us: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut options = AttachOptions::default();
    if let Some(b) = args.body_size_max {
        options.body_size_max = b;
    }
    if let Some(s) = args.spin_us {
        options.listener_spin_wait_us = s;
    }
    if let Some(l) = args.liveness_ms {
        options.liveness_check_interval_ms = l;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let listener = AttachListener::bind(&args.cluster, args.ctlport, options)
            .context("binding the accept queue")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {}", std::process::id())?;
        out.flush()?;
        drop(out);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = serve_echo(listener) => r.context("echo listener")?,
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}
