//! `dkc-fault-client` — the client-host side of the multi-host fault tests, run *inside* a
//! client host of a lab (its own IPC namespace and slave chmpx); see
//! `dkc_tools::netns::workload`.
//!
//! - `init --cluster G --ctlport N --counters Q`: create the counters (value 0).
//! - `work --cluster G --ctlport N --first-client C --threads T --clients K --keys M
//!   --counters Q --millis D --seed S [--stop-file F] [--memcached ADDR:PORT] --out FILE`: run the
//!   workload (through the driver, or over the memcached protocol to a dkc-memcached), one
//!   JSON line per operation in FILE; prints the number of operations.
//! - `fill --cluster G --ctlport N --client C --keys K --out FILE`: write register keys
//!   `r<C>-0..K` once each (data for merges to move), one JSON line per write in FILE.
//! - `read --cluster G --ctlport N KEY...`: one JSON line per key with what a routed read got.
//! - `digests --cluster G --ctlport N --ctl ADDR:PORT`: compare every owner's per-slot
//!   digests; prints one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use dkc_tools::netns::workload::{
    connect, digest_report, init_counters, read_keys, run_fill, run_work, WorkSpec,
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
        Cmd::Fill { client, keys, out } => {
            let c = connect(&cluster, ctlport).map_err(anyhow::Error::msg)?;
            let n = run_fill(&c, client, keys, &out).map_err(anyhow::Error::msg)?;
            println!("{n} of {keys} writes acknowledged");
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
