//! Shared helpers for the memcached tests: start the real `memcached` and `dkc-memcached`
//! on loopback ports, wait until they accept, exchange bytes. Processes are killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to start accepting connections.
pub const STARTUP_TIMEOUT_MS: u64 = 10_000;
/// How long one exchange may take.
pub const EXCHANGE_TIMEOUT_MS: u64 = 10_000;
/// Silence after which a reply is taken as complete.
pub const QUIET_MS: u64 = 600;

pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A port below the ephemeral range, reserved for this test process (see chmpx's testkit).
fn free_port() -> u16 {
    chmpx::testkit::ports::free_ports(1).expect("a free port")[0]
}

fn wait_accepting(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_millis(STARTUP_TIMEOUT_MS);
    loop {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server for {addr} exited during startup: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "server on {addr} did not accept within {STARTUP_TIMEOUT_MS} ms"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the real memcached; fails the test (never skips it) when it is not installed.
pub fn start_memcached(extra: &[&str]) -> Proc {
    let Some(binary) = which("memcached") else {
        panic!("memcached is not on PATH: install it (`apt-get install -y memcached`) to run this test");
    };
    let port = free_port();
    let mut command = Command::new(binary);
    command.args(["-p", &port.to_string(), "-U", "0", "-l", "127.0.0.1"]);
    if running_as_root() {
        command.args(["-u", "root"]);
    }
    command
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("spawn memcached");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_accepting(addr, &mut child);
    Proc { child, addr }
}

/// The first line `child` (spawned with a piped stdout) prints, within [`STARTUP_TIMEOUT_MS`].
pub fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("a piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_millis(STARTUP_TIMEOUT_MS))
        .expect("dkc-memcached printed no line")
}

/// Starts dkc-memcached with the memory backend on a port it picks, read from its stdout.
pub fn start_dkc(extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dkc-memcached"))
        .args(["--backend", "memory", "-p", "0", "-l", "127.0.0.1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dkc-memcached");
    let line = first_line(&mut child);
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from dkc-memcached: {line:?}"))
        .parse()
        .expect("address");
    wait_accepting(addr, &mut child);
    Proc { child, addr }
}

/// Sends `request` on a new connection and reads until the reply ends with `until` (when
/// given), the server closes the connection, or nothing more arrives for `QUIET_MS` (a case
/// whose sentinel was eaten as data, say).
pub fn exchange(addr: SocketAddr, request: &[u8], until: Option<&[u8]>) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_millis(EXCHANGE_TIMEOUT_MS);
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        let request = request.to_vec();
        // Write from another thread: a large request and its replies may both fill buffers.
        std::thread::spawn(move || {
            let _ = stream.write_all(&request);
        })
    };
    let mut reply = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let mut last_data = Instant::now();
    loop {
        if last_data.elapsed() >= Duration::from_millis(QUIET_MS) {
            break;
        }
        if let Some(end) = until {
            if reply.ends_with(end) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete reply within {EXCHANGE_TIMEOUT_MS} ms; got {:?}",
            String::from_utf8_lossy(&reply[reply.len().saturating_sub(300)..])
        );
        match stream.read(&mut chunk) {
            Ok(0) => {
                reply.extend_from_slice(b"<EOF>");
                break;
            }
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                last_data = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                reply.extend_from_slice(b"<EOF>");
                break;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    let _ = writer.join();
    reply
}
