//! A minimal memcached text-protocol client for the fault workload: the client hosts of the
//! memcached scenario talk to the `dkc-memcached` running next to their slave chmpx instead
//! of using the driver. It speaks only what the workload needs: `set`, `get`, `gets`, `cas`,
//! `delete`, `incr`, one request at a time on one connection.
//!
//! Outcomes are classified the way the checker needs them: an answer that says the command
//! was not applied (`NOT_FOUND`, `EXISTS`, `NOT_STORED`, `CLIENT_ERROR`) is
//! [`McError::Failed`]; `SERVER_ERROR`, a timeout, a dropped connection or anything
//! unreadable is [`McError::Unknown`] (it may or may not have been applied). After an unknown
//! outcome the connection is dropped (a late answer would be taken for the next request's)
//! and the next request dials again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a request waits for its answer on the socket, ms. Longer than the storage
/// timeout the harness gives `dkc-memcached`, so a stalled cluster normally shows up as its
/// `SERVER_ERROR` rather than as a client-side timeout.
pub const MC_READ_TIMEOUT_MS: u64 = 6000;
/// How long dialling `dkc-memcached` may take, ms.
pub const MC_CONNECT_TIMEOUT_MS: u64 = 2000;
/// Longest answer line accepted, bytes.
pub const MC_LINE_MAX: usize = 4096;
/// Largest value accepted in a `VALUE` line, bytes (the workload's values are short).
pub const MC_VALUE_MAX: usize = 64 * 1024;

/// Why a memcached request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McError {
    /// Certainly not applied (the answer says so).
    Failed(String),
    /// May or may not have been applied.
    Unknown(String),
}

impl std::fmt::Display for McError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            McError::Failed(t) => write!(f, "failed: {t}"),
            McError::Unknown(t) => write!(f, "unknown outcome: {t}"),
        }
    }
}

/// One connection (re-dialled after an unknown outcome).
pub struct McClient {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

/// What a `gets` returned for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McItem {
    /// The value (lossy UTF-8).
    pub value: String,
    /// The cas unique (0 for a plain `get`).
    pub cas: u64,
}

impl McClient {
    /// A client of the server at `addr`; dials on the first request.
    pub fn new(addr: SocketAddr) -> McClient {
        McClient { addr, conn: None }
    }

    fn conn(&mut self) -> Result<&mut BufReader<TcpStream>, McError> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(
                &self.addr,
                Duration::from_millis(MC_CONNECT_TIMEOUT_MS),
            )
            .map_err(|e| McError::Failed(format!("connect to {}: {e}", self.addr)))?;
            let t = Some(Duration::from_millis(MC_READ_TIMEOUT_MS));
            s.set_read_timeout(t)
                .and_then(|_| s.set_write_timeout(t))
                .and_then(|_| s.set_nodelay(true))
                .map_err(|e| McError::Failed(format!("socket options: {e}")))?;
            self.conn = Some(BufReader::new(s));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| McError::Failed("no connection".into()))
    }

    /// Sends `req`; on any transport error the connection is dropped and the outcome is
    /// unknown (part of the request may have reached the server).
    fn send(&mut self, req: &[u8]) -> Result<(), McError> {
        let c = self.conn()?;
        if let Err(e) = c.get_mut().write_all(req).and_then(|_| c.get_mut().flush()) {
            self.conn = None;
            return Err(McError::Unknown(format!("send to {}: {e}", self.addr)));
        }
        Ok(())
    }

    fn line(&mut self) -> Result<String, McError> {
        let addr = self.addr;
        let c = self.conn()?;
        let mut buf = Vec::new();
        let r = c
            .by_ref()
            .take(MC_LINE_MAX as u64)
            .read_until(b'\n', &mut buf);
        match r {
            Ok(_) if buf.ends_with(b"\r\n") => {
                buf.truncate(buf.len() - 2);
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
            Ok(0) => {
                self.conn = None;
                Err(McError::Unknown(format!("{addr} closed the connection")))
            }
            Ok(_) => {
                self.conn = None;
                Err(McError::Unknown(format!(
                    "{addr}: answer line not ended by CRLF within {MC_LINE_MAX} bytes"
                )))
            }
            Err(e) => {
                self.conn = None;
                Err(McError::Unknown(format!("answer from {addr}: {e}")))
            }
        }
    }

    /// Reads one status line and drops the connection when it is an error the protocol
    /// stream cannot be trusted after.
    fn status(&mut self) -> Result<String, McError> {
        let l = self.line()?;
        if l.starts_with("SERVER_ERROR") {
            return Err(McError::Unknown(l));
        }
        if l.starts_with("CLIENT_ERROR") || l == "ERROR" {
            // The server did not take the command; resynchronise on a fresh connection.
            self.conn = None;
            return Err(McError::Failed(l));
        }
        Ok(l)
    }

    fn unexpected(&mut self, what: &str, l: &str) -> McError {
        self.conn = None;
        McError::Unknown(format!("{what}: unexpected answer {l:?}"))
    }

    fn storage(
        &mut self,
        verb: &str,
        key: &str,
        value: &str,
        cas: Option<u64>,
    ) -> Result<(), McError> {
        let cas_arg = cas.map_or(String::new(), |c| format!(" {c}"));
        let req = format!("{verb} {key} 0 0 {}{cas_arg}\r\n{value}\r\n", value.len());
        self.send(req.as_bytes())?;
        let l = self.status()?;
        match l.as_str() {
            "STORED" => Ok(()),
            // Worded like the driver's error, so the checker tells a lost CAS race (the
            // protocol working) from a client error.
            "EXISTS" => Err(McError::Failed(format!("cas mismatch ({l})"))),
            "NOT_FOUND" | "NOT_STORED" => Err(McError::Failed(l)),
            _ => Err(self.unexpected(verb, &l)),
        }
    }

    /// `set key 0 0 n`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), McError> {
        self.storage("set", key, value, None)
    }

    /// `cas key 0 0 n unique`: `Failed("EXISTS")` when the item changed since `gets`.
    pub fn cas(&mut self, key: &str, value: &str, unique: u64) -> Result<(), McError> {
        self.storage("cas", key, value, Some(unique))
    }

    /// `delete key`: `Ok(true)` deleted, `Ok(false)` not found.
    pub fn delete(&mut self, key: &str) -> Result<bool, McError> {
        self.send(format!("delete {key}\r\n").as_bytes())?;
        let l = self.status()?;
        match l.as_str() {
            "DELETED" => Ok(true),
            "NOT_FOUND" => Ok(false),
            _ => Err(self.unexpected("delete", &l)),
        }
    }

    /// `incr key 1`: the new value; `Failed("NOT_FOUND")` when the key is missing.
    pub fn incr(&mut self, key: &str) -> Result<u64, McError> {
        self.send(format!("incr {key} 1\r\n").as_bytes())?;
        let l = self.status()?;
        if l == "NOT_FOUND" {
            return Err(McError::Failed(l));
        }
        match l.parse::<u64>() {
            Ok(n) => Ok(n),
            Err(_) => Err(self.unexpected("incr", &l)),
        }
    }

    /// `get key` (`gets` with `with_cas`): the item or `None` when missing.
    pub fn get(&mut self, key: &str, with_cas: bool) -> Result<Option<McItem>, McError> {
        let verb = if with_cas { "gets" } else { "get" };
        self.send(format!("{verb} {key}\r\n").as_bytes())?;
        let l = self.status()?;
        if l == "END" {
            return Ok(None);
        }
        let parts: Vec<&str> = l.split(' ').collect();
        let ok_shape = parts.first() == Some(&"VALUE")
            && parts.get(1) == Some(&key)
            && parts.len() == if with_cas { 5 } else { 4 };
        let len = parts.get(3).and_then(|n| n.parse::<usize>().ok());
        let cas = if with_cas {
            parts.get(4).and_then(|n| n.parse::<u64>().ok())
        } else {
            Some(0)
        };
        let (Some(len), Some(cas), true) = (len, cas, ok_shape) else {
            return Err(self.unexpected(verb, &l));
        };
        if len > MC_VALUE_MAX {
            return Err(self.unexpected(verb, &l));
        }
        let addr = self.addr;
        let c = self.conn()?;
        let mut data = vec![0u8; len + 2];
        if let Err(e) = c.read_exact(&mut data) {
            self.conn = None;
            return Err(McError::Unknown(format!("value from {addr}: {e}")));
        }
        if !data.ends_with(b"\r\n") {
            return Err(self.unexpected(verb, "value not ended by CRLF"));
        }
        data.truncate(len);
        let end = self.status()?;
        if end != "END" {
            return Err(self.unexpected(verb, &end));
        }
        Ok(Some(McItem {
            value: String::from_utf8_lossy(&data).into_owned(),
            cas,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server answering each request line with the next canned answer.
    fn canned(answers: Vec<&'static str>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            for a in answers {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                // Storage commands carry a data line.
                if ["set ", "cas "].iter().any(|v| line.starts_with(v)) {
                    let mut data = String::new();
                    r.read_line(&mut data).unwrap();
                }
                w.write_all(a.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn answers_are_classified() {
        let addr = canned(vec![
            "STORED\r\n",
            "VALUE k 0 2 77\r\nab\r\nEND\r\n",
            "EXISTS\r\n",
            "END\r\n",
            "5\r\n",
            "NOT_FOUND\r\n",
            "SERVER_ERROR timeout\r\n",
        ]);
        let mut c = McClient::new(addr);
        assert_eq!(c.set("k", "ab"), Ok(()));
        assert_eq!(
            c.get("k", true),
            Ok(Some(McItem {
                value: "ab".into(),
                cas: 77
            }))
        );
        assert_eq!(
            c.cas("k", "ac", 76),
            Err(McError::Failed("cas mismatch (EXISTS)".into()))
        );
        assert_eq!(c.get("k", false), Ok(None));
        assert_eq!(c.incr("n"), Ok(5));
        assert_eq!(c.delete("k"), Ok(false));
        assert!(matches!(c.set("k", "x"), Err(McError::Unknown(_))));
    }

    #[test]
    fn a_closed_connection_is_an_unknown_outcome() {
        let addr = canned(vec![]);
        let mut c = McClient::new(addr);
        assert!(matches!(c.set("k", "v"), Err(McError::Unknown(_))));
    }
}
