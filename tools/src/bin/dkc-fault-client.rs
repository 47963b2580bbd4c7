//! `dkc-fault-client` — the client-host side of the multi-host fault tests, run *inside* a
//! client host of a lab (its own IPC namespace and slave chmpx); see
//! `dkc_tools::netns::workload`.
//!
//! - `init --cluster G --ctlport N --counters Q`: create the counters (value 0).
//! - `work --cluster G --ctlport N --first-client C --threads T --clients K --keys M
//!   --counters Q --millis D --seed S [--stop-file F] [--memcached ADDR:PORT] --out FILE`: run the
//!   workload (through the driver, or over the memcached protocol to a dkc-memcached), one
//!   JSON line per operation in FILE; prints the number of operations.
//! - `fill --cluster G --ctlport N --client C --keys K [--first-key F] [--value-bytes B]
//!   [--stop-after-no-space R] --out FILE`: write register keys `r<C>-F..F+K` once each (data
//!   for merges to move, or values padded to B bytes that fill a disk: then it stops after R
//!   refusals with E_NO_SPACE), one JSON line per write in FILE.
//! - `read --cluster G --ctlport N KEY...`: one JSON line per key with what a routed read got.
//! - `digests --cluster G --ctlport N --ctl ADDR:PORT`: compare every owner's per-slot
//!   digests; prints one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use dkc_tools::netns::workload::{
    connect, digest_report, init_counters, read_keys, run_fill, run_work, FillSpec, WorkSpec,
};

#[derive(Parser, Debug)]
#[command(
    name = "dkc-fault-client",
    about = "workload and checks of the multi-host fault tests (run inside a client host)"
)]
struct Args {
    /// Cluster GROUP.
    #[arg(long, global = true, default_value = "NETNS")]
    cluster: String,
    /// The local chmpx's control port.
    #[arg(long, global = true, default_value_t = 8031)]
    ctlport: u16,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the counters with value 0.
    Init {
        #[arg(long)]
        counters: usize,
    },
    /// Run the workload and record every operation.
    Work {
        #[arg(long = "first-client")]
        first_client: usize,
        #[arg(long)]
        threads: usize,
        /// Clients in the whole run.
        #[arg(long)]
        clients: usize,
        /// Register keys per client.
        #[arg(long)]
        keys: usize,
        #[arg(long)]
        counters: usize,
        #[arg(long)]
        millis: u64,
        #[arg(long)]
        seed: u64,
        /// Stop early once this file exists.
        #[arg(long = "stop-file")]
        stop_file: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Talk the memcached protocol to the dkc-memcached at ADDR:PORT instead of using
        /// the driver.
        #[arg(long)]
        memcached: Option<std::net::SocketAddr>,
    },
    /// Write register keys of one client once each (data for merges to move), recorded.
    Fill {
        /// The client id whose keys are written (not one of the workload's).
        #[arg(long)]
        client: usize,
        #[arg(long)]
        keys: usize,
        /// First key number.
        #[arg(long = "first-key", default_value_t = 0)]
        first_key: usize,
        /// Pad values to this many bytes (0: bare values).
        #[arg(long = "value-bytes", default_value_t = 0)]
        value_bytes: usize,
        /// Stop after this many writes were refused with E_NO_SPACE (0: never).
        #[arg(long = "stop-after-no-space", default_value_t = 0)]
        stop_after_no_space: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Read keys through the driver.
    Read { keys: Vec<String> },
    /// Compare every owner's per-slot digests.
    Digests {
        /// The local chmpx's control address (its host address and ctlport).
        #[arg(long)]
        ctl: std::net::SocketAddr,
    },
}

fn run(args: Args) -> Result<()> {
    let (cluster, ctlport) = (args.cluster, args.ctlport);
    match args.cmd {
        Cmd::Init { counters } => {
            let c = connect(&cluster, ctlport).map_err(anyhow::Error::msg)?;
            init_counters(&c, counters).map_err(anyhow::Error::msg)?;
            println!("initialised {counters} counters");
        }
        Cmd::Work {
            first_client,
            threads,
            clients,
            keys,
            counters,
            millis,
            seed,
            stop_file,
            out,
            memcached,
        } => {
            let spec = WorkSpec {
                cluster,
                ctlport,
                first_client,
                threads,
                clients_total: clients,
                keys_per_client: keys,
                counters,
                duration: Duration::from_millis(millis),
                seed,
                stop_file,
                memcached,
            };
            let n = run_work(&spec, &out).map_err(anyhow::Error::msg)?;
            println!("{n} operations");
        }
        Cmd::Fill {
            client,
            keys,
            first_key,
            value_bytes,
            stop_after_no_space,
            out,
        } => {
            let c = connect(&cluster, ctlport).map_err(anyhow::Error::msg)?;
            let spec = FillSpec {
                client_id: client,
                first_key,
                keys,
                value_bytes,
                stop_after_no_space,
            };
            let n = run_fill(&c, &spec, &out).map_err(anyhow::Error::msg)?;
            println!(
                "{} of {} writes acknowledged, {} refused with E_NO_SPACE",
                n.acked, n.attempted, n.no_space
            );
        }
        Cmd::Read { keys } => {
            let c = connect(&cluster, ctlport).map_err(anyhow::Error::msg)?;
            for r in read_keys(&c, &keys) {
                println!("{}", serde_json::to_string(&r).context("encode")?);
            }
        }
        Cmd::Digests { ctl } => {
            let r = digest_report(&cluster, ctlport, ctl).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string(&r).context("encode")?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dkc-fault-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
