//! `dkc-hosts` — simulated hosts on this machine (network + IPC + mount namespaces on a private
//! bridge) for multi-host tests by hand; see `dkc_tools::netns`.
//!
//! - `dkc-hosts up --hosts 3 [--secs 600]`: make a lab, print each host's address and holder
//!   pid, keep it for `--secs` (or until interrupted), then tear it down. Nothing outlives
//!   this process.
//! - `dkc-hosts exec --pid HOLDER -- CMD...`: run a command inside a host of a running lab.
//! - `dkc-hosts cluster --hosts 4 --servers 3 [--secs 600]`: the same with chmpx + chmpx-echo
//!   on the servers and a slave chmpx on the other hosts; prints the config and each host's
//!   status once the cluster is up.
//! - `dkc-hosts probe --cluster G --ctlport N KEY...`: (inside a host) send each key to its
//!   first live owner and print `OK key node` or `ERR key reason` (used by the tests).
//! - `dkc-hosts kv --cluster G --ctlport N set|get KEY...`: (inside a host) store or read
//!   keys through the `dkc_client` driver (used by the tests).
//! - `dkc-hosts delay-proxy --listen A:P --to B:Q --delay-ms D [--jitter-ms J --seed S]`:
//!   a TCP proxy adding delay, since the kernel has no netem.
//! - `dkc-hosts tcp-listen --port P` / `tcp-connect --to ADDR:P`: reachability checks
//!   between hosts (used by the tests).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use dkc_tools::netns::chmpx_lab::{all_servers_up, run_kv, run_probe, summary, ChmpxLab};
use dkc_tools::netns::delay_proxy::{serve, Delay};
use dkc_tools::netns::{Lab, LabSpec};

/// Longest time `up` / `cluster` keep a lab.
const HOLD_SECS_MAX: u64 = 3600;
/// Longest wait for a `cluster` to come up, ms.
const CLUSTER_UP_WAIT_MS: u64 = 30_000;

#[derive(Parser, Debug)]
#[command(
    name = "dkc-hosts",
    about = "simulated hosts (namespaces) for multi-host dkc tests"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Make a lab of hosts and keep it for a while.
    Up {
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Third octet of 10.77.S.0/24.
        #[arg(long, default_value_t = 0)]
        subnet: u8,
        /// Seconds to keep the lab (at most 3600).
        #[arg(long, default_value_t = 600)]
        secs: u64,
    },
    /// Run a command inside a host of a running lab (by its holder pid from `up`).
    Exec {
        #[arg(long)]
        pid: u32,
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Make a lab and run a chmpx cluster on it.
    Cluster {
        #[arg(long, default_value_t = 4)]
        hosts: usize,
        #[arg(long, default_value_t = 3)]
        servers: usize,
        #[arg(long, default_value_t = 600)]
        secs: u64,
    },
    /// Route keys through the local chmpx (run inside a host).
    Probe {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        ctlport: u16,
        keys: Vec<String>,
    },
    /// Set or get keys through the dkc driver (run inside a host; values are derived from
    /// the keys).
    Kv {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        ctlport: u16,
        /// set or get.
        op: String,
        keys: Vec<String>,
    },
    /// Forward TCP connections with added delay (run inside a host; no netem here).
    DelayProxy {
        /// Address to accept on, e.g. 0.0.0.0:9020.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Address to forward to.
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long = "delay-ms", default_value_t = 0)]
        delay_ms: u64,
        #[arg(long = "jitter-ms", default_value_t = 0)]
        jitter_ms: u64,
        /// Seed of the jitter (printed seeds replay).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Accept TCP connections on a port and answer each with this host's view (tests).
    TcpListen {
        #[arg(long)]
        port: u16,
        /// Seconds to keep listening (at most 3600).
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// Connect to ADDR:PORT and read the greeting; fails if nothing arrives in time (tests).
    TcpConnect {
        #[arg(long)]
        to: String,
        #[arg(long = "timeout-ms", default_value_t = 1000)]
        timeout_ms: u64,
    },
}

/// What `tcp-listen` sends to every connection.
const TCP_GREETING: &[u8] = b"dkc-hosts hello\n";

fn tcp_listen(port: u16, secs: u64) -> Result<()> {
    use std::io::Write;
    let l = std::net::TcpListener::bind(("0.0.0.0", port))
        .with_context(|| format!("bind port {port}"))?;
    println!("listening on {port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(secs.min(HOLD_SECS_MAX));
    l.set_nonblocking(true)?;
    while std::time::Instant::now() < deadline {
        match l.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.write_all(TCP_GREETING);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => bail!("accept: {e}"),
        }
    }
    Ok(())
}

fn tcp_connect(to: &str, timeout_ms: u64) -> Result<()> {
    use std::io::Read;
    let addr: std::net::SocketAddr = to.parse().with_context(|| format!("address {to}"))?;
    let t = Duration::from_millis(timeout_ms.max(1));
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, t).with_context(|| format!("connect {to}"))?;
    s.set_read_timeout(Some(t))?;
    let mut buf = vec![0u8; TCP_GREETING.len()];
    s.read_exact(&mut buf)
        .with_context(|| format!("read greeting from {to}"))?;
    if buf != TCP_GREETING {
        bail!(
            "unexpected greeting from {to}: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
    println!("connected to {to}");
    Ok(())
}

fn print_lab(lab: &Lab) {
    println!(
        "lab {} (data path inside hosts: {})",
        lab.dir().display(),
        lab.data_path().display()
    );
    for h in lab.hosts() {
        println!(
            "{} {} holder-pid {}  (dkc-hosts exec --pid {} -- CMD)",
            h.name(),
            h.addr(),
            h.holder().pid(),
            h.holder().pid()
        );
    }
}

fn hold(secs: u64) {
    println!("holding for {secs} s; interrupt to tear down");
    std::thread::sleep(Duration::from_secs(secs.min(HOLD_SECS_MAX)));
}

fn run(args: Args) -> Result<()> {
    match args.cmd {
        Cmd::Up {
            hosts,
            subnet,
            secs,
        } => {
            let lab = Lab::new(LabSpec {
                subnet,
                ..LabSpec::new(hosts)
            })?;
            print_lab(&lab);
            hold(secs);
            Ok(())
        }
        Cmd::Exec { pid, command } => {
            let status = std::process::Command::new("nsenter")
                .args([
                    "--target",
                    &pid.to_string(),
                    "--net",
                    "--ipc",
                    "--mount",
                    "--",
                ])
                .args(&command)
                .status()
                .context("run nsenter (util-linux)")?;
            if !status.success() {
                bail!("{} exited with {status}", command.join(" "));
            }
            Ok(())
        }
        Cmd::Cluster {
            hosts,
            servers,
            secs,
        } => {
            let lab = Lab::new(LabSpec::new(hosts))?;
            print_lab(&lab);
            let c = ChmpxLab::start(lab, servers)?;
            println!("config {}", c.conf.display());
            for h in 0..hosts {
                match c.wait_status(h, CLUSTER_UP_WAIT_MS, "all servers UP", all_servers_up) {
                    Ok((r, t)) => println!("h{h} after {} ms: {}", t.as_millis(), summary(&r)),
                    Err(e) => {
                        eprintln!("{}", c.logs());
                        bail!("{e}");
                    }
                }
            }
            hold(secs);
            Ok(())
        }
        Cmd::Probe {
            cluster,
            ctlport,
            keys,
        } => {
            for line in run_probe(&cluster, ctlport, &keys).map_err(anyhow::Error::msg)? {
                println!("{line}");
            }
            Ok(())
        }
        Cmd::Kv {
            cluster,
            ctlport,
            op,
            keys,
        } => {
            for line in run_kv(&cluster, ctlport, &op, &keys).map_err(anyhow::Error::msg)? {
                println!("{line}");
            }
            Ok(())
        }
        Cmd::DelayProxy {
            listen,
            to,
            delay_ms,
            jitter_ms,
            seed,
        } => {
            let delay = Delay {
                fixed_ms: delay_ms,
                jitter_ms,
            };
            println!("proxy {listen} -> {to}, {delay:?}, seed {seed}");
            serve(listen, to, delay, seed)?;
            Ok(())
        }
        Cmd::TcpListen { port, secs } => tcp_listen(port, secs),
        Cmd::TcpConnect { to, timeout_ms } => tcp_connect(&to, timeout_ms),
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dkc-hosts: {e:#}");
            ExitCode::FAILURE
        }
    }
}
