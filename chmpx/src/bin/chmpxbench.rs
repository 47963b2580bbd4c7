//! `chmpxbench` — round trips and pipelined throughput through a running chmpx: this process
//! attaches as a client and sends "first live owner" requests that the chmpx routes to the
//! server process attached to it (`chmpx-echo`). Prints round-trip p50/p99 for 64 B and 4 KiB
//! and pipelined throughput for 64 B with 1 and 16 requests outstanding.
//!
//! `chmpxbench --cluster NAME --ctlport N [--rtt-iters N] [--pipelined-msgs N]`
//! (`tools/bench-chmpx.sh` starts chmpx and chmpx-echo, then runs this and `mqbench`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use chmpx::attach::{AttachOptions, Attachment, Role, Route};
use chmpx::daemon::FLAG_CHMPX_ERROR;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "round trips and throughput through chmpx to an attached echo server")]
struct Args {
    /// Cluster name (GROUP).
    #[arg(long)]
    cluster: String,
    /// Control port of the chmpx to attach to.
    #[arg(long)]
    ctlport: u16,
    /// Round trips measured per message size.
    #[arg(long, default_value_t = 20_000)]
    rtt_iters: u64,
    /// Messages per pipelined run.
    #[arg(long, default_value_t = 200_000)]
    pipelined_msgs: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn rtt(att: &Attachment, size: usize, iters: u64) -> anyhow::Result<(u64, u64)> {
    let body = vec![0x5a; size];
    let mut lat = Vec::with_capacity(iters as usize);
    for i in 0..iters + iters / 10 {
        let t = Instant::now();
        let r = att.request(
            Route::HashFirst(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            &body,
            REQUEST_TIMEOUT,
        )?;
        if r.flags & FLAG_CHMPX_ERROR != 0 {
            bail!(
                "chmpx refused the request: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
        // The first tenth warms up and is not counted.
        if i >= iters / 10 {
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
    lat.sort_unstable();
    Ok((percentile(&lat, 0.50), percentile(&lat, 0.99)))
}

fn pipelined(att: &Attachment, outstanding: usize, msgs: u64) -> anyhow::Result<f64> {
    let body = vec![0x5a; 64];
    let mut window = VecDeque::with_capacity(outstanding);
    let t = Instant::now();
    let mut sent = 0u64;
    let mut done = 0u64;
    while done < msgs {
        while window.len() < outstanding && sent < msgs {
            window.push_back(att.submit(Route::HashFirst(sent), &body, REQUEST_TIMEOUT)?);
            sent += 1;
        }
        if let Some(p) = window.pop_front() {
            let r = p.wait(REQUEST_TIMEOUT)?;
            if r.flags & FLAG_CHMPX_ERROR != 0 {
                bail!(
                    "chmpx refused the request: {}",
                    String::from_utf8_lossy(&r.body)
                );
            }
            done += 1;
        }
    }
    Ok(msgs as f64 / t.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let opts = AttachOptions {
        connect_timeout_ms: 10_000,
        ..AttachOptions::default()
    };
    let att = Attachment::connect(&args.cluster, args.ctlport, Role::Client, opts)
        .context("attach to chmpx")?;
    println!("chmpxbench: client -> chmpx -> chmpx-echo -> chmpx -> client, on one host");
    for size in [64usize, 4096] {
        let (p50, p99) = rtt(&att, size, args.rtt_iters)?;
        println!(
            "  round trip {size:>5} B: p50 {:>8.1} us   p99 {:>8.1} us",
            p50 as f64 / 1e3,
            p99 as f64 / 1e3
        );
    }
    for k in [1usize, 16] {
        let rate = pipelined(&att, k, args.pipelined_msgs)?;
        println!("  pipelined 64 B, {k:>2} outstanding: {rate:>10.0} msgs/s");
    }
    Ok(())
}
