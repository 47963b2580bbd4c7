//! The server: accepts connections on TCP or on a UNIX socket ([`Listener`]), reads requests
//! into a bounded buffer, executes them in order (pipelining), and writes the replies of each
//! read as one batch.
//!
//! What bounds a connection (so a slow or hostile client cannot exhaust memory or stall
//! others): the connection limit (`-c`, the excess get memcached's "ERROR Too many open
//! connections" and are closed), the line length (a line without a newline past the limit
//! closes the connection, as in memcached), the item size (a larger data block is discarded as
//! it arrives, never buffered), the number of requests run per batch and the reply bytes held
//! before writing, and an idle timeout on every read and write (a data block never sent, or
//! replies never read, end the connection). Each connection is its own task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::execute::Control;
use super::limits::{
    Limits, CONNECTIONS_MAX_DEFAULT, IDLE_TIMEOUT_SECS_DEFAULT, STORAGE_TIMEOUT_MS_DEFAULT,
};
use super::request::{DecodeError, Request};
use super::stats::{add, bump, ServerStats};
use super::storage::Storage;
use super::text::decode;

/// Pause after a failed accept before the next one.
const ACCEPT_RETRY_MS: u64 = 50;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What memcached sends to a connection over the limit before closing it.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub limits: Limits,
    pub connections_max: usize,
    /// `None`: no idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Longest wait for the storage on one request.
    pub storage_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            connections_max: CONNECTIONS_MAX_DEFAULT,
            idle_timeout: Some(Duration::from_secs(IDLE_TIMEOUT_SECS_DEFAULT)),
            storage_timeout: Duration::from_millis(STORAGE_TIMEOUT_MS_DEFAULT),
        }
    }
}

/// Where the front accepts connections.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    /// memcached's `-s`: the socket and its file (removed when the listener is dropped).
    Unix(super::unix_socket::UnixSocket),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Listener::Tcp(listener)
    }
}

impl From<super::unix_socket::UnixSocket> for Listener {
    fn from(socket: super::unix_socket::UnixSocket) -> Self {
        Listener::Unix(socket)
    }
}

/// One accepted connection, whichever the listener.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection for T {}

/// A memcached front over one storage.
pub struct Server<S: Storage> {
    storage: Arc<S>,
    config: ServerConfig,
    stats: Arc<ServerStats>,
    slots: Arc<Semaphore>,
}

impl<S: Storage> Server<S> {
    pub fn new(storage: Arc<S>, config: ServerConfig) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as u64;
        let mut stats = ServerStats::new(config.connections_max as u64, threads);
        stats.settings.item_size_max = config.limits.item_size_max as u64;
        stats.settings.idle_timeout_secs = config.idle_timeout.map(|d| d.as_secs()).unwrap_or(0);
        let stats = Arc::new(stats);
        let slots = Arc::new(Semaphore::new(config.connections_max));
        Server {
            storage,
            config,
            stats,
            slots,
        }
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Accepts connections until the listener fails.
    pub async fn serve(mut self, listener: impl Into<Listener>) -> std::io::Result<()> {
        let listener = listener.into();
        if let Some(stats) = Arc::get_mut(&mut self.stats) {
            match &listener {
                Listener::Tcp(tcp) => {
                    if let Ok(addr) = tcp.local_addr() {
                        stats.settings.tcp_port = addr.port();
                    }
                }
                Listener::Unix(unix) => {
                    stats.settings.domain_socket = Some(unix.path.display().to_string());
                    stats.settings.unix_mask = unix.mode;
                }
            }
        }
        loop {
            let accepted = match &listener {
                Listener::Tcp(tcp) => tcp.accept().await.map(|(stream, peer)| {
                    let _ = stream.set_nodelay(true);
                    self.start(stream, peer.to_string())
                }),
                Listener::Unix(unix) => unix
                    .listener
                    .accept()
                    .await
                    .map(|(stream, _)| self.start(stream, "unix socket".to_string())),
            };
            if let Err(e) = accepted {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }

    /// Serves an accepted connection on its own task, or turns it away past the limit.
    fn start<T: Connection>(&self, stream: T, peer: String) {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            bump(&self.stats.counters.rejected_connections);
            tokio::spawn(reject(stream));
            return;
        };
        bump(&self.stats.counters.total_connections);
        bump(&self.stats.counters.curr_connections);
        let storage = self.storage.clone();
        let stats = self.stats.clone();
        let config = self.config.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, &*storage, &stats, &config).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            stats
                .counters
                .curr_connections
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
        });
    }
}

async fn reject<T: Connection>(mut stream: T) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(TOO_MANY_CONNECTIONS),
    )
    .await;
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnd {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("idle for longer than {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("input buffer of {length} bytes exceeds the connection limit of {limit} bytes")]
    BufferFull { length: usize, limit: usize },
}

async fn with_timeout<T>(
    timeout: Option<Duration>,
    future: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ConnectionEnd> {
    match timeout {
        None => Ok(future.await?),
        Some(limit) => match tokio::time::timeout(limit, future).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ConnectionEnd::Idle(limit)),
        },
    }
}

/// Serves one connection until the client quits, goes idle, or breaks a limit.
pub async fn serve_connection<S: Storage, T: AsyncRead + AsyncWrite + Unpin>(
    mut stream: T,
    storage: &S,
    stats: &ServerStats,
    config: &ServerConfig,
) -> Result<(), ConnectionEnd> {
    let limits = &config.limits;
    let buffer_max = limits.connection_buffer_max();
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output = BytesMut::new();
    // Bytes of a rejected data block still to be discarded.
    let mut swallow = 0usize;
    // Chosen by the first byte the client sends, as memcached's auto-negotiation does.
    let mut binary: Option<bool> = None;
    loop {
        let mut executed = 0usize;
        let mut close = false;
        loop {
            if swallow > 0 {
                let n = swallow.min(input.len());
                input.advance(n);
                swallow -= n;
                if swallow > 0 {
                    break;
                }
            }
            if input.is_empty() {
                break;
            }
            if executed >= limits.batch_requests_max
                || output.len() >= limits.reply_buffer_flush_bytes
            {
                flush(&mut stream, &mut output, stats, config).await?;
                executed = 0;
            }
            let binary = *binary.get_or_insert(input[0] == super::binary::MAGIC_REQUEST);
            let decoded = if binary {
                super::binary::decode(&input, limits)
            } else {
                decode(&input, limits)
            };
            let frame = match decoded {
                Ok(frame) => frame,
                Err(DecodeError::Incomplete) => break,
                Err(e) => {
                    flush(&mut stream, &mut output, stats, config).await?;
                    return Err(e.into());
                }
            };
            input.advance(frame.consumed);
            swallow = frame.swallow;
            executed += 1;
            match frame.request {
                Request::Get {
                    keys,
                    with_cas,
                    touch_exptime,
                    end,
                } if keys.len() > limits.get_keys_per_step => {
                    let steps = keys.len().div_ceil(limits.get_keys_per_step);
                    for (index, step) in keys.chunks(limits.get_keys_per_step).enumerate() {
                        let request = Request::Get {
                            keys: step.to_vec(),
                            with_cas,
                            touch_exptime,
                            end: end && index + 1 == steps,
                        };
                        execute(request, storage, stats, &mut output, config.storage_timeout).await;
                        if output.len() >= limits.reply_buffer_flush_bytes {
                            flush(&mut stream, &mut output, stats, config).await?;
                        }
                    }
                }
                request => {
                    if execute(request, storage, stats, &mut output, config.storage_timeout).await
                        == Control::Close
                    {
                        close = true;
                        break;
                    }
                }
            }
        }
        flush(&mut stream, &mut output, stats, config).await?;
        if close {
            return Ok(());
        }
        if input.len() >= buffer_max {
            return Err(ConnectionEnd::BufferFull {
                length: input.len(),
                limit: buffer_max,
            });
        }
        // Read into the spare room; a rejected block being swallowed is never kept.
        input.reserve(READ_CHUNK_BYTES.min(buffer_max - input.len()).max(1));
        let n = with_timeout(config.idle_timeout, stream.read_buf(&mut input)).await?;
        if n == 0 {
            return Ok(());
        }
        add(&stats.counters.bytes_read, n as u64);
    }
}

async fn flush<T: AsyncWrite + Unpin>(
    stream: &mut T,
    output: &mut BytesMut,
    stats: &ServerStats,
    config: &ServerConfig,
) -> Result<(), ConnectionEnd> {
    if output.is_empty() {
        return Ok(());
    }
    with_timeout(config.idle_timeout, stream.write_all(output)).await?;
    add(&stats.counters.bytes_written, output.len() as u64);
    output.clear();
    Ok(())
}

/// Executes one request, answering `SERVER_ERROR storage timed out` if the storage does not
/// answer in time; a partial reply is dropped so the client never sees half an answer.
async fn execute<S: Storage>(
    request: Request,
    storage: &S,
    stats: &ServerStats,
    output: &mut BytesMut,
    timeout: Duration,
) -> Control {
    let mark = output.len();
    let noreply = request.is_noreply();
    match tokio::time::timeout(
        timeout,
        super::execute::execute(request, storage, stats, output),
    )
    .await
    {
        Ok(control) => control,
        Err(_) => {
            output.truncate(mark);
            if !noreply {
                output.extend_from_slice(
                    format!(
                        "SERVER_ERROR storage timed out after {} ms\r\n",
                        timeout.as_millis()
                    )
                    .as_bytes(),
                );
            }
            Control::Continue
        }
    }
}

/// Binds `addr` and returns the listener with its actual address (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
