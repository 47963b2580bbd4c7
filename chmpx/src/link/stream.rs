//! The two halves of a link's byte stream: plain TCP, or TLS over TCP ([`super::tls`]).
//! Enums rather than boxed trait objects: the plain case, the common one, stays a direct call.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A TLS session over TCP, either side.
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// The reading half of a link connection.
pub enum LinkRead {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream>),
}

/// The writing half of a link connection.
pub enum LinkWrite {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream>),
}

/// Splits a plain TCP connection.
pub fn plain(stream: TcpStream) -> (LinkRead, LinkWrite) {
    let (r, w) = stream.into_split();
    (LinkRead::Plain(r), LinkWrite::Plain(w))
}

/// Splits a TLS session.
pub fn tls(stream: TlsStream) -> (LinkRead, LinkWrite) {
    let (r, w) = tokio::io::split(stream);
    (LinkRead::Tls(r), LinkWrite::Tls(w))
}

impl AsyncRead for LinkRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkRead::Plain(r) => Pin::new(r).poll_read(cx, buf),
            LinkRead::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LinkWrite::Plain(w) => Pin::new(w).poll_write(cx, buf),
            LinkWrite::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LinkWrite::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            LinkWrite::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            LinkWrite::Plain(w) => w.is_write_vectored(),
            LinkWrite::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkWrite::Plain(w) => Pin::new(w).poll_flush(cx),
            LinkWrite::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkWrite::Plain(w) => Pin::new(w).poll_shutdown(cx),
            LinkWrite::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
