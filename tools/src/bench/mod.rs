//! `dkc-bench`: the load generator behind every side-by-side figure. It drives a
//! memcached-protocol server (memcached itself, or dkc-memcached) over TCP, or a dkc cluster
//! through the native driver, with a seeded get/set mix over a fixed key space, and reports
//! ops/s, hits/misses, errors and latency percentiles from an HdrHistogram.
//!
//! # Layout
//! - [`cli`] — arguments and their checks; [`duration`] — `30s`/`500ms` parsing (pure).
//! - [`workload`] — keys, values and each connection's seeded operation stream (pure).
//! - [`memcache_text`] — the `set`/`get` requests and their replies (pure codec, no I/O).
//! - [`conn`] — one connection (memcached TCP or native driver) running a batch of ops.
//! - [`runner`] — preload, warm-up, workers, histograms, stop by duration or op count.
//! - [`metrics`] — chmpx Prometheus counters, for messages and bytes per operation.
//! - [`report`] — the figures, human-readable and as one JSON line.
//!
//! Measuring rules: a connection keeps `pipeline` requests in flight (1 by default: send, wait
//! for the reply, send the next). An operation's latency runs from the write of its batch to
//! the parse of its reply. Operations started during the warm-up are not counted anywhere.
//!
//! This module talks to servers only through their public protocols (memcached text protocol,
//! the `dkc_client::client` API, chmpx's metrics page); it must never call dkc-server, chmpx
//! internals or k2hash.

pub mod cli;
pub mod conn;
pub mod duration;
pub mod error;
pub mod memcache_text;
pub mod metrics;
pub mod report;
pub mod runner;
pub mod workload;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use cli::{Cli, Cmd, Load};
use conn::Target;
use error::BenchError;
use report::{Latency, Report};
use runner::RunConfig;
use workload::Workload;

/// Runs one `dkc-bench` command; `argv` is echoed in the report.
pub fn main_with(cli: Cli, argv: &[String]) -> ExitCode {
    match run_cli(cli, argv) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dkc-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_cli(cli: Cli, argv: &[String]) -> Result<ExitCode, BenchError> {
    let (mode, load_args) = match &cli.command {
        Cmd::Memcached(a) => ("memcached", &a.load),
        Cmd::Native(a) => ("native", &a.load),
    };
    let load = load_args.check()?;
    if mode == "native" && load.pipeline > 1 {
        return Err(BenchError::BadArgument {
            option: "--pipeline",
            reason: "native mode sends one request per caller; raise --connections instead".into(),
        });
    }
    let runtime = if load.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(load.threads)
            .enable_all()
            .build()
    }
    .map_err(BenchError::Runtime)?;
    let report = runtime.block_on(async {
        let (target, label) = match &cli.command {
            Cmd::Memcached(a) => (
                Target::Memcached(cli::resolve_list("--servers", &a.servers)?),
                a.servers.clone(),
            ),
            Cmd::Native(a) => {
                let client = dkc_client::client::AsyncClient::from_conf(&a.conf, a.ctlport)
                    .await
                    .map_err(|e| BenchError::Native(e.to_string()))?;
                (Target::Native(client), a.conf.display().to_string())
            }
        };
        measure(mode, &label, target, &load, argv).await
    })?;
    if load.json {
        let mut err = std::io::stderr().lock();
        let _ = report.write_human(&mut err);
        println!("{}", report.json_line());
    } else {
        let mut out = std::io::stdout().lock();
        let _ = report.write_human(&mut out);
        let _ = out.flush();
    }
    if report.ops == 0 {
        eprintln!("dkc-bench: no operation completed in the measured time");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    mode: &str,
    label: &str,
    target: Target,
    load: &Load,
    argv: &[String],
) -> Result<Report, BenchError> {
    let workload = Arc::new(Workload::new(load.keys, load.get_ratio, load.value_size));
    if load.preload {
        let t = Instant::now();
        runner::preload(&target, &workload, load.connections, load.timeout).await?;
        eprintln!(
            "dkc-bench: preloaded {} keys of {} B in {:.2} s",
            load.keys,
            load.value_size,
            t.elapsed().as_secs_f64()
        );
    }
    let cfg = RunConfig {
        connections: load.connections,
        pipeline: load.pipeline,
        warmup: load.warmup,
        duration: load.duration,
        ops_limit: load.ops,
        seed: load.seed,
        timeout: load.timeout,
        progress: true,
        metrics: load.metrics.clone(),
    };
    let m = runner::run(&target, &workload, &cfg).await?;
    let ops = m.ops();
    let secs = m.elapsed.as_secs_f64();
    let (mut messages_per_op, mut bytes_per_op) = (None, None);
    match &m.chmpx {
        Some(Ok(c)) if ops > 0 => {
            messages_per_op = Some(c.messages as f64 / ops as f64);
            bytes_per_op = Some(c.bytes as f64 / ops as f64);
        }
        Some(Err(e)) => eprintln!("dkc-bench: chmpx counters not read: {e}"),
        _ => {}
    }
    Ok(Report {
        mode: mode.to_string(),
        target: label.to_string(),
        connections: load.connections,
        pipeline: load.pipeline,
        keys: load.keys,
        value_size: load.value_size,
        get_ratio: load.get_ratio,
        seed: load.seed,
        warmup_secs: load.warmup.as_secs_f64(),
        elapsed_secs: secs,
        ops,
        ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
        gets: m.gets,
        sets: m.sets,
        hits: m.hits,
        misses: m.misses,
        errors: m.errors,
        wrong_values: m.wrong_values,
        reconnects: m.reconnects,
        latency_us: Latency::from_ns(&m.histogram),
        messages_per_op,
        bytes_per_op,
        command: argv.join(" "),
    })
}
