//! Readiness checks of a local run, by asking the real thing: a chmpx control port that answers
//! its status, and a memcached front that completes `version`, `set` and `get` of a fresh value.
//! No fixed sleeps: callers poll these until a bounded deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use chmpx::daemon::status::{Ring, StatusReport};
use chmpx::testkit::control;

/// Longest wait for one control-port or memcached exchange.
pub const EXCHANGE_TIMEOUT_MS: u64 = 3000;
/// The key the readiness round trip writes (left in place; it is tiny).
pub const READY_KEY: &str = "dkc-local:ready";

/// The status a chmpx reports on its control port; `None` while it does not answer.
pub fn status(ctlport: u16) -> Option<StatusReport> {
    control::status(
        control::addr(ctlport),
        Duration::from_millis(EXCHANGE_TIMEOUT_MS),
    )
}

/// True when `report` shows `servers` server nodes, every one UP with its dkc-server attached
/// and no start-up merge pending or under way. While the start-up (recovery) merges of a
/// restart on existing data run, the first owner of a slot changes as each node finishes, so
/// CAS and incr meet two primaries in turn and some answer with an unknown outcome; clients are
/// let in once that has settled.
pub fn all_servers_serving(report: &StatusReport, servers: usize) -> bool {
    let listed = report
        .nodes
        .iter()
        .filter(|n| n.ring != Ring::Slave)
        .count();
    listed == servers && control::servers_ready(report) && control::merges_idle(report)
}

fn read_line(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => Err("connection closed".into()),
        Ok(_) => Ok(line),
        Err(e) => Err(e.to_string()),
    }
}

/// One memcached round trip: `version`, then `set` and `get` of `token`. Returns the server's
/// version line, or what went wrong.
pub fn memcached_round_trip(addr: SocketAddr, token: &str) -> Result<String, String> {
    let timeout = Duration::from_millis(EXCHANGE_TIMEOUT_MS);
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    w.write_all(b"version\r\n").map_err(|e| e.to_string())?;
    let version = read_line(&mut r)?;
    if !version.starts_with("VERSION ") {
        return Err(format!("version answered {:?}", version.trim_end()));
    }
    let set = format!("set {READY_KEY} 0 0 {}\r\n{token}\r\n", token.len());
    w.write_all(set.as_bytes()).map_err(|e| e.to_string())?;
    let stored = read_line(&mut r)?;
    if stored != "STORED\r\n" {
        return Err(format!("set answered {:?}", stored.trim_end()));
    }
    w.write_all(format!("get {READY_KEY}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let header = read_line(&mut r)?;
    let want = format!("VALUE {READY_KEY} 0 {}\r\n", token.len());
    if header != want {
        return Err(format!("get answered {:?}", header.trim_end()));
    }
    let mut body = vec![0u8; token.len() + 2];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    let end = read_line(&mut r)?;
    if body != format!("{token}\r\n").as_bytes() || end != "END\r\n" {
        return Err("get returned another value than the one just set".into());
    }
    Ok(version.trim_end().to_string())
}
