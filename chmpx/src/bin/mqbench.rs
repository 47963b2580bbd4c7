//! `mqbench`: the local attach transport against the floor of a bare POSIX message-queue
//! ping-pong, side by side, in one run. Both sides are separate processes: the bare echo is
//! this binary re-executed with `--bare-echo`, the transport echo is `mq-echo` (found next to
//! this binary). Prints round-trip p50/p99 for 64 B and 4 KiB and pipelined throughput for
//! 64 B with 1 and 16 outstanding requests.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chmpx::attach::{AttachOptions, Attachment, Role, Route};
use chmpx::ipc::mq::{Access, MessageQueue, QueueShape};
use clap::Parser;
use hdrhistogram::Histogram;

/// The bare queues use the stock maximum message size.
const BARE_MSGSIZE_BYTES: u32 = 8192;
/// And the stock maximum depth.
const BARE_DEPTH: u32 = 10;
const CTLPORT: u16 = 18999;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "Round trip and throughput: bare POSIX mq vs the chmpx attach transport")]
struct Args {
    /// Round trips measured per message size.
    #[arg(long, default_value_t = 20_000)]
    rtt_iters: u64,
    /// Messages per pipelined throughput run.
    #[arg(long, default_value_t = 200_000)]
    pipelined_msgs: u64,
    /// Polling time of the waiting process before it sleeps, µs (default: the option's).
    #[arg(long)]
    spin_us: Option<u64>,
    /// Polling time of the echo listener on an active attachment, µs.
    #[arg(long)]
    listener_spin_us: Option<u64>,
    /// Child mode: echo between two bare queues (internal).
    #[arg(long, num_args = 2, value_names = ["REQ", "RESP"])]
    bare_echo: Option<Vec<String>>,
}

struct Figures {
    rtt: Vec<(usize, u64, u64)>,
    pipelined: Vec<(usize, f64)>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(names) = &args.bare_echo {
        return bare_echo(&names[0], &names[1]);
    }
    let bare = bench_bare(&args).context("bare mq benchmark")?;
    let attach = bench_attach(&args).context("attach transport benchmark")?;
    println!(
        "mqbench: {} round trips per size, {} messages per pipelined run; both sides are \
         separate processes",
        args.rtt_iters, args.pipelined_msgs
    );
    println!(
        "{:<34} {:>14} {:>18} {:>8}",
        "", "bare mq", "attach (1 hop)", "ratio"
    );
    for (b, a) in bare.rtt.iter().zip(&attach.rtt) {
        let size = if b.0 >= 1024 {
            format!("{} KiB", b.0 / 1024)
        } else {
            format!("{} B", b.0)
        };
        for (label, bv, av) in [("p50", b.1, a.1), ("p99", b.2, a.2)] {
            println!(
                "{:<34} {:>11.1} us {:>15.1} us {:>7.2}x",
                format!("round trip {label} {size}"),
                bv as f64 / 1000.0,
                av as f64 / 1000.0,
                av as f64 / bv.max(1) as f64
            );
        }
    }
    for (b, a) in bare.pipelined.iter().zip(&attach.pipelined) {
        println!(
            "{:<34} {:>14.0} {:>18.0} {:>7.2}x",
            format!("pipelined 64 B, {} outstanding (msg/s)", b.0),
            b.1,
            a.1,
            a.1 / b.1
        );
    }
    Ok(())
}

/// Prints the tail of a latency histogram on stderr (outliers hide from p99).
fn report_tail(h: &Histogram<u64>) {
    let over_1ms: u64 = h
        .iter_recorded()
        .filter(|v| v.value_iterated_to() > 1_000_000)
        .map(|v| v.count_at_value())
        .sum();
    eprintln!(
        "  mean {:.1} us, p99.9 {:.1} us, max {:.1} us, {over_1ms} over 1 ms",
        h.mean() / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn bare_echo(req: &str, resp: &str) -> anyhow::Result<()> {
    let rq = MessageQueue::open(req, Access::Read, false)?;
    let sq = MessageQueue::open(resp, Access::Write, false)?;
    let mut buf = vec![0u8; BARE_MSGSIZE_BYTES as usize];
    loop {
        let Some(n) = rq.receive(&mut buf)? else {
            continue;
        };
        if n == 0 {
            return Ok(());
        }
        while !sq.send(&buf[..n])? {}
    }
}

fn bench_bare(args: &Args) -> anyhow::Result<Figures> {
    let shape = QueueShape {
        maxmsg: BARE_DEPTH,
        msgsize: BARE_MSGSIZE_BYTES,
    };
    let req_name = format!("/dkc-mqbench.{}.req", std::process::id());
    let resp_name = format!("/dkc-mqbench.{}.resp", std::process::id());
    let req = MessageQueue::create(&req_name, shape, 0o600, Access::Write, false)?;
    let resp = MessageQueue::create(&resp_name, shape, 0o600, Access::Read, false)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--bare-echo", &req_name, &resp_name])
        .spawn()?;
    let mut buf = vec![0u8; BARE_MSGSIZE_BYTES as usize];
    let mut round_trip = |msg: &[u8]| -> anyhow::Result<()> {
        req.send(msg)?;
        while resp.receive(&mut buf)?.is_none() {}
        Ok(())
    };
    let mut rtt = Vec::new();
    for size in [64usize, 4096] {
        let msg = vec![0x5Au8; size];
        for _ in 0..1000 {
            round_trip(&msg)?;
        }
        let mut h = histogram();
        for _ in 0..args.rtt_iters {
            let t = Instant::now();
            round_trip(&msg)?;
            h.record(t.elapsed().as_nanos() as u64)?;
        }
        report_tail(&h);
        rtt.push((size, h.value_at_quantile(0.5), h.value_at_quantile(0.99)));
    }
    let mut pipelined = Vec::new();
    for depth in [1usize, 16] {
        let msg = [0xA5u8; 64];
        let t = Instant::now();
        let mut in_flight = 0;
        let mut sent = 0;
        let mut done = 0;
        while done < args.pipelined_msgs {
            while in_flight < depth && sent < args.pipelined_msgs {
                req.send(&msg)?;
                in_flight += 1;
                sent += 1;
            }
            while resp.receive(&mut buf)?.is_none() {}
            in_flight -= 1;
            done += 1;
        }
        pipelined.push((depth, done as f64 / t.elapsed().as_secs_f64()));
    }
    req.send(&[])?;
    child.wait()?;
    Ok(Figures { rtt, pipelined })
}

struct EchoChild(Child);

impl Drop for EchoChild {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM lets it remove its queue.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn bench_attach(args: &Args) -> anyhow::Result<Figures> {
    let exe = std::env::current_exe()?;
    let echo_bin = exe.with_file_name("mq-echo");
    if !echo_bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p chmpx`",
            echo_bin.display()
        );
    }
    let cluster = format!("mqbench{}", std::process::id());
    let mut options = AttachOptions::default();
    if let Some(s) = args.spin_us {
        options.spin_wait_us = s;
    }
    let listener_spin = args
        .listener_spin_us
        .unwrap_or(options.listener_spin_wait_us);
    let mut child = Command::new(&echo_bin)
        .args(["--cluster", &cluster, "--ctlport", &CTLPORT.to_string()])
        .args(["--spin-us", &listener_spin.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("echo stdout")?).read_line(&mut line)?;
    let _echo = EchoChild(child);
    if !line.starts_with("READY") {
        bail!("mq-echo did not start: {line:?}");
    }
    println!(
        "attach options: spin_wait_us {} listener_spin_wait_us {listener_spin}",
        options.spin_wait_us
    );
    let a = Attachment::connect(&cluster, CTLPORT, Role::Client, options)?;
    let mut rtt = Vec::new();
    for size in [64usize, 4096] {
        let msg = vec![0x5Au8; size];
        for _ in 0..1000 {
            a.request(Route::HashFirst(1), &msg, REQUEST_TIMEOUT)?;
        }
        let mut h = histogram();
        for _ in 0..args.rtt_iters {
            let t = Instant::now();
            let r = a.request(Route::HashFirst(1), &msg, REQUEST_TIMEOUT)?;
            h.record(t.elapsed().as_nanos() as u64)?;
            debug_assert_eq!(r.body.len(), size);
        }
        report_tail(&h);
        rtt.push((size, h.value_at_quantile(0.5), h.value_at_quantile(0.99)));
    }
    let mut pipelined = Vec::new();
    for depth in [1usize, 16] {
        let msg = [0xA5u8; 64];
        let t = Instant::now();
        let mut queue = VecDeque::with_capacity(depth);
        let mut sent = 0;
        let mut done = 0;
        while done < args.pipelined_msgs {
            while queue.len() < depth && sent < args.pipelined_msgs {
                queue.push_back(a.submit(Route::HashFirst(1), &msg, REQUEST_TIMEOUT)?);
                sent += 1;
            }
            if let Some(p) = queue.pop_front() {
                p.wait(REQUEST_TIMEOUT)?;
                done += 1;
            }
        }
        pipelined.push((depth, done as f64 / t.elapsed().as_secs_f64()));
    }
    Ok(Figures { rtt, pipelined })
}
