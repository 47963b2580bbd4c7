//! A TCP proxy that adds delay, because this kernel has no `netem` (DESIGN.md §9). Run inside
//! a host (`dkc-hosts delay-proxy`), it accepts on one port and forwards each connection to a
//! target, holding every chunk for `delay_ms` plus a seeded random `0..=jitter_ms`. Bytes of
//! one direction never overtake each other (a chunk is due no earlier than the one before),
//! so the stream stays a valid TCP stream; only its timing changes.
//!
//! Point a chmpx peer at it with the `ENDPOINTS` key of the target's `[SVRNODE]` entry.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{NetnsError, Seed};

/// Largest chunk read at once, bytes.
pub const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Most connections forwarded at once; more are refused (closed at once).
pub const CONNECTIONS_MAX: usize = 256;
/// Largest delay or jitter, ms.
pub const DELAY_MS_MAX: u64 = 60_000;
/// Chunks in flight per direction before the reader waits (bounds memory).
pub const CHUNKS_IN_FLIGHT_MAX: usize = 1024;
/// Connect timeout to the target, ms.
pub const TARGET_CONNECT_TIMEOUT_MS: u64 = 2000;

/// How much delay to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    /// Every chunk waits this long.
    pub fixed_ms: u64,
    /// Plus a random 0..=jitter_ms.
    pub jitter_ms: u64,
}

impl Delay {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), NetnsError> {
        if self.fixed_ms > DELAY_MS_MAX || self.jitter_ms > DELAY_MS_MAX {
            return Err(NetnsError::Bad(format!(
                "delay {} ms + jitter {} ms: each must be at most {DELAY_MS_MAX} ms",
                self.fixed_ms, self.jitter_ms
            )));
        }
        Ok(())
    }
}

/// One direction: read chunks from `from`, release each to `to` when due.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Delay, mut rng: Seed) {
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT_MAX);
    let writer = std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut last_due = Instant::now();
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let extra = delay.fixed_ms + rng.below(delay.jitter_ms + 1);
        let due = (Instant::now() + Duration::from_millis(extra)).max(last_due);
        last_due = due;
        if tx.send((due, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
}

/// Accepts on `listen` and forwards to `target` with `delay`, until the process ends.
/// Random choices come from `seed` (each connection and direction gets its own stream).
pub fn serve(
    listen: SocketAddr,
    target: SocketAddr,
    delay: Delay,
    seed: u64,
) -> Result<(), NetnsError> {
    delay.validate()?;
    let l = TcpListener::bind(listen).map_err(|e| NetnsError::io(format!("bind {listen}"), e))?;
    let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut conn_no: u64 = 0;
    for client in l.incoming() {
        let Ok(client) = client else { continue };
        use std::sync::atomic::Ordering;
        // Two pumps per connection.
        if live.load(Ordering::Relaxed) >= 2 * CONNECTIONS_MAX {
            drop(client);
            continue;
        }
        conn_no += 1;
        let Ok(server) =
            TcpStream::connect_timeout(&target, Duration::from_millis(TARGET_CONNECT_TIMEOUT_MS))
        else {
            drop(client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let mut up = Seed::new(seed ^ conn_no.wrapping_mul(0x9E37_79B9));
        let down = Seed::new(up.next_u64());
        live.fetch_add(2, Ordering::Relaxed);
        for (from, to, rng) in [(client, server, up), (s2, c2, down)] {
            let live = live.clone();
            std::thread::spawn(move || {
                pump(from, to, delay, rng);
                live.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
    Ok(())
}

/// Uid the proxies of [`delay_links_into`] run as, so the DNAT rule can leave their own
/// connections alone (`nobody`).
pub const PROXY_UID: &str = "65534";
/// Port each dialing host's proxy listens on.
pub const PROXY_PORT: u16 = 9020;

/// Delays every TCP connection dialed to `victim`'s port `port` from any other host of `lab`:
/// in each dialing host a `dkc-hosts delay-proxy` (as [`PROXY_UID`]) and an iptables DNAT
/// rule that sends the host's own connections to the victim through it (except the proxy's
/// own). The victim still sees each peer's own address. Call before the connections are made
/// (existing ones are not redirected). The proxies die with the lab.
pub fn delay_links_into(
    lab: &super::Lab,
    victim: usize,
    port: u16,
    delay: Delay,
    seed: u64,
) -> Result<Vec<super::HostProcess>, NetnsError> {
    delay.validate()?;
    let victim_addr = lab.host(victim).addr().to_string();
    let proxy_bin = super::bins::path("dkc-hosts")?;
    let mut proxies = Vec::new();
    for d in (0..lab.hosts().len()).filter(|d| *d != victim) {
        let h = lab.host(d);
        let local = format!("{}:{PROXY_PORT}", h.addr());
        let mut cmd = h.command("setpriv");
        cmd.args(["--reuid", PROXY_UID, "--regid", PROXY_UID, "--clear-groups"])
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&proxy_bin)
            .args(["delay-proxy", "--listen", &local])
            .args(["--to", &format!("{victim_addr}:{port}")])
            .args(["--delay-ms", &delay.fixed_ms.to_string()])
            .args(["--jitter-ms", &delay.jitter_ms.to_string()])
            .args(["--seed", &(seed ^ d as u64).to_string()]);
        proxies.push(h.spawn("delay-proxy", cmd)?);
        let port = port.to_string();
        h.run(
            "iptables",
            &[
                "-w",
                "5",
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                &victim_addr,
                "--dport",
                &port,
                "-m",
                "owner",
                "!",
                "--uid-owner",
                PROXY_UID,
                "-j",
                "DNAT",
                "--to-destination",
                &local,
            ],
        )?;
    }
    Ok(proxies)
}
