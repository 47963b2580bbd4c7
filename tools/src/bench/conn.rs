//! One benchmark connection: a memcached TCP connection speaking [`super::memcache_text`], or a
//! handle on the native driver ([`dkc_client::client::AsyncClient`]). Both run a batch of
//! operations and say, for each, how it ended and when.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dkc_client::client::{AsyncClient, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::BenchError;
use super::memcache_text::{encode_get, encode_set, parse_reply, Expect, Parsed, Reply};
use super::workload::{write_key, OpKind};

/// Bytes read from the socket at a time (a 1 KiB hit fits with room for its header).
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// How one operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A set was stored.
    Stored,
    /// A get found the key with the expected value.
    Hit,
    /// A get found the key with a different value (counted as an error too).
    WrongValue,
    /// A get did not find the key.
    Miss,
    /// The server answered with an error.
    Failed,
}

/// Where connections go.
#[derive(Clone)]
pub enum Target {
    /// memcached servers; connection `i` goes to server `i % len`.
    Memcached(Vec<SocketAddr>),
    /// The native driver (one shared attachment; each connection is a concurrent caller).
    Native(AsyncClient),
}

impl Target {
    /// Opens connection number `i`.
    pub async fn connect(&self, i: usize) -> Result<Conn, BenchError> {
        match self {
            Target::Memcached(addrs) => {
                let addr = addrs[i % addrs.len()];
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|source| BenchError::Connect { addr, source })?;
                // Requests are small and latency is what is measured: no Nagle delay.
                stream
                    .set_nodelay(true)
                    .map_err(|source| BenchError::Connect { addr, source })?;
                Ok(Conn::Memcached(MemcachedConn {
                    stream,
                    wbuf: Vec::new(),
                    rbuf: Vec::with_capacity(READ_CHUNK_BYTES * 2),
                    rstart: 0,
                    key: Vec::new(),
                }))
            }
            Target::Native(client) => Ok(Conn::Native(client.clone(), Vec::new())),
        }
    }
}

/// A memcached text-protocol connection with its buffers.
pub struct MemcachedConn {
    stream: TcpStream,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Bytes of `rbuf` before this were parsed already.
    rstart: usize,
    key: Vec<u8>,
}

/// One connection of either kind.
pub enum Conn {
    /// A TCP connection to memcached (or anything speaking its text protocol).
    Memcached(MemcachedConn),
    /// The native driver, and a key buffer.
    Native(AsyncClient, Vec<u8>),
}

impl Conn {
    /// Runs `ops` (all sent at once on a memcached connection, one after another on the
    /// native driver), pushing each outcome and its completion time to `out` in order. An
    /// `Err` means the connection is broken: ops without an entry in `out` did not complete.
    pub async fn run_batch(
        &mut self,
        ops: &[(OpKind, u64)],
        value: &[u8],
        out: &mut Vec<(Outcome, Instant)>,
    ) -> Result<(), String> {
        match self {
            Conn::Memcached(c) => c.run_batch(ops, value, out).await,
            Conn::Native(client, key) => {
                for &(kind, k) in ops {
                    write_key(key, k);
                    let outcome = match kind {
                        OpKind::Get => match client.get(&key[..]).await {
                            Ok(Some(item)) if item.value == value => Outcome::Hit,
                            Ok(Some(_)) => Outcome::WrongValue,
                            Ok(None) => Outcome::Miss,
                            Err(_) => Outcome::Failed,
                        },
                        OpKind::Set => match client.set(&key[..], value, StoreOptions::new()).await
                        {
                            Ok(_) => Outcome::Stored,
                            Err(_) => Outcome::Failed,
                        },
                    };
                    out.push((outcome, Instant::now()));
                }
                Ok(())
            }
        }
    }
}

impl MemcachedConn {
    async fn run_batch(
        &mut self,
        ops: &[(OpKind, u64)],
        value: &[u8],
        out: &mut Vec<(Outcome, Instant)>,
    ) -> Result<(), String> {
        self.wbuf.clear();
        for &(kind, k) in ops {
            write_key(&mut self.key, k);
            match kind {
                OpKind::Get => encode_get(&mut self.wbuf, &self.key),
                OpKind::Set => encode_set(&mut self.wbuf, &self.key, value),
            }
        }
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(|e| format!("write: {e}"))?;
        for &(kind, _) in ops {
            let expect = match kind {
                OpKind::Get => Expect::Get,
                OpKind::Set => Expect::Store,
            };
            let reply = self.read_reply(expect, value).await?;
            let outcome = match reply {
                Reply::Stored => Outcome::Stored,
                Reply::Hit { matches: true } => Outcome::Hit,
                Reply::Hit { matches: false } => Outcome::WrongValue,
                Reply::Miss => Outcome::Miss,
                Reply::Failed(_) => Outcome::Failed,
            };
            out.push((outcome, Instant::now()));
        }
        Ok(())
    }

    async fn read_reply(&mut self, expect: Expect, value: &[u8]) -> Result<Reply, String> {
        loop {
            match parse_reply(&self.rbuf[self.rstart..], expect, value) {
                Ok(Parsed::Done(reply, used)) => {
                    self.rstart += used;
                    if self.rstart == self.rbuf.len() {
                        self.rbuf.clear();
                        self.rstart = 0;
                    }
                    return Ok(reply);
                }
                Ok(Parsed::Incomplete) => {}
                Err(e) => return Err(e.to_string()),
            }
            // Drop parsed bytes before growing, so the buffer stays the size of one batch.
            if self.rstart > 0 {
                self.rbuf.drain(..self.rstart);
                self.rstart = 0;
            }
            let len = self.rbuf.len();
            self.rbuf.resize(len + READ_CHUNK_BYTES, 0);
            let n = self
                .stream
                .read(&mut self.rbuf[len..])
                .await
                .map_err(|e| format!("read: {e}"));
            self.rbuf.truncate(len + *n.as_ref().unwrap_or(&0));
            match n? {
                0 => return Err("memcached closed the connection".into()),
                _ => continue,
            }
        }
    }
}

/// Runs a batch with a deadline: a batch that takes longer than `timeout` breaks the
/// connection (its replies could still arrive and put the stream out of step).
pub async fn run_batch_timed(
    conn: &mut Conn,
    ops: &[(OpKind, u64)],
    value: &[u8],
    out: &mut Vec<(Outcome, Instant)>,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, conn.run_batch(ops, value, out)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no reply within {} ms", timeout.as_millis())),
    }
}
