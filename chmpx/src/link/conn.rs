//! Frames over a byte stream: a buffered frame reader and a batching frame writer. Generic over
//! the stream halves, so sessions also run over in-memory pipes in paused-time tests.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{decode_frame, encode_frame, Frame, FrameError};
use super::limits::FRAME_PREFIX_BYTES;

/// Initial read buffer; it grows to the frame being read, never beyond `frame_size_max`.
const READ_BUFFER_INITIAL_BYTES: usize = 64 * 1024;

/// Why a connection ended or was refused. Logged with the peer's address and id.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error(
        "frame of cluster {got:?}, this node serves cluster {want:?}; check GROUP on both nodes"
    )]
    WrongCluster { got: String, want: String },
    #[error("connection closed by the peer in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error("connection closed by the peer")]
    Eof,
    #[error("peer closed the link: {reason}")]
    Closed { reason: String },
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("access refused: {0}")]
    Access(#[from] super::access::AccessError),
    #[error(
        "authentication failed with {peer:?}: the shared secrets differ (or one side has none)"
    )]
    BadProof { peer: String },
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("no random numbers from the OS: {0}")]
    Random(String),
    #[error("TLS handshake failed: {0}; check CAPATH, the certificates and SSL on both nodes")]
    Tls(std::io::Error),
}

impl ConnError {
    /// Errors that mean the peer sent something it must not; they count as bad frames.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ConnError::Frame(_)
                | ConnError::WrongCluster { .. }
                | ConnError::Truncated { .. }
                | ConnError::Protocol(_)
        )
    }
}

/// Reads whole frames from a byte stream.
pub struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    frame_size_max: usize,
    cluster: String,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(rd: R, frame_size_max: usize, cluster: &str) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::with_capacity(READ_BUFFER_INITIAL_BYTES),
            frame_size_max,
            cluster: cluster.to_owned(),
        }
    }

    /// Next frame of our cluster and version, with its size on the wire. `Err(Eof)` on a clean
    /// close between frames. Cancel-safe: bytes already read stay buffered.
    pub async fn read_frame(&mut self) -> Result<(Frame, usize), ConnError> {
        loop {
            match decode_frame(&self.buf, self.frame_size_max) {
                Ok((frame, used)) => {
                    self.buf.advance(used);
                    if frame.cluster != self.cluster {
                        return Err(ConnError::WrongCluster {
                            got: frame.cluster,
                            want: self.cluster.clone(),
                        });
                    }
                    return Ok((frame, used));
                }
                Err(FrameError::Incomplete { needed }) => {
                    // `needed` is bounded by the prefix check against frame_size_max.
                    self.buf.reserve(
                        needed
                            .saturating_sub(self.buf.len())
                            .max(FRAME_PREFIX_BYTES),
                    );
                    let n = self.rd.read_buf(&mut self.buf).await?;
                    if n == 0 {
                        return Err(if self.buf.is_empty() {
                            ConnError::Eof
                        } else {
                            ConnError::Truncated {
                                buffered: self.buf.len(),
                            }
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Writes frames, coalescing several into one socket write.
pub struct FrameWriter<W> {
    wr: W,
    out: Vec<u8>,
    frames: u64,
    frame_size_max: usize,
    rw_timeout: Duration,
    /// Whether `flush` gives up after `rw_timeout`. On an established link it does not: a peer
    /// whose heartbeats still arrive is slow, not dead, and is backpressured instead of dropped.
    flush_deadline: bool,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(wr: W, frame_size_max: usize, rw_timeout: Duration) -> Self {
        FrameWriter {
            wr,
            out: Vec::with_capacity(READ_BUFFER_INITIAL_BYTES),
            frames: 0,
            frame_size_max,
            rw_timeout,
            flush_deadline: true,
        }
    }

    /// Switches the `rw_timeout` deadline of `flush` on or off (see `flush_deadline`).
    pub fn set_flush_deadline(&mut self, on: bool) {
        self.flush_deadline = on;
    }

    /// Adds a frame to the pending batch. On `TooLarge` nothing is added.
    pub fn push(&mut self, frame: &Frame) -> Result<(), FrameError> {
        encode_frame(frame, &mut self.out, self.frame_size_max)?;
        self.frames += 1;
        Ok(())
    }

    /// Writes the pending batch; returns (frames, bytes) written.
    pub async fn flush(&mut self) -> Result<(u64, usize), ConnError> {
        if self.out.is_empty() {
            return Ok((0, 0));
        }
        let write = async {
            self.wr.write_all(&self.out).await?;
            self.wr.flush().await
        };
        let result = if self.flush_deadline {
            tokio::time::timeout(self.rw_timeout, write).await
        } else {
            Ok(write.await)
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(ConnError::Timeout {
                    what: "socket write",
                    after: self.rw_timeout,
                })
            }
        }
        let done = (self.frames, self.out.len());
        self.frames = 0;
        self.out.clear();
        Ok(done)
    }

    /// Pushes and flushes one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(u64, usize), ConnError> {
        self.push(frame)?;
        self.flush().await
    }

    pub fn pending_bytes(&self) -> usize {
        self.out.len()
    }

    /// The stream half, for tests that write raw bytes after a handshake.
    pub fn into_inner(self) -> W {
        self.wr
    }

    /// Best-effort shutdown of the write side.
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(self.rw_timeout, self.wr.shutdown()).await;
    }
}
