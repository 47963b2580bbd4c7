//! The METRICSPORT endpoint: Prometheus text over HTTP/1.1, one answer per connection, any path.
//!
//! Who may read it: this host (127.0.0.1, ::1), the configured hosts, and the addresses and
//! networks of GLOBAL METRICSALLOW ([`DaemonSettings::metrics_allowed`]). Other connections are
//! closed unanswered, counted (`chmpx_metrics_refused_connections_total`) and logged (at most
//! once per interval, see [`RefusalLog`]). At most
//! [`METRICS_CONNECTIONS_MAX`] connections are served at once; each reads at most
//! [`METRICS_REQUEST_LEN_MAX_BYTES`] of request head and waits at most
//! [`METRICS_REQUEST_TIMEOUT_MS`] for it, so idle or oversized requests cannot pile up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::limits::{
    ACCEPT_RETRY_MS, METRICS_CONNECTIONS_MAX, METRICS_REQUEST_LEN_MAX_BYTES,
    METRICS_REQUEST_TIMEOUT_MS,
};
use super::metrics::Metrics;
use super::refusal_log::RefusalLog;
use super::settings::DaemonSettings;

/// Serves the Prometheus text on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, s: Arc<DaemonSettings>, metrics: Arc<Metrics>) {
    let live = Arc::new(AtomicUsize::new(0));
    let mut log = RefusalLog::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("metrics port accept: {e}");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        if !s.metrics_allowed(peer.ip()) {
            metrics.add_metrics_refused();
            if let Some(unlogged) = log.due() {
                tracing::warn!(
                    %peer,
                    unlogged,
                    "metrics connection from a host that is not this one, a configured host or in METRICSALLOW; closed (add it to METRICSALLOW in [GLOBAL] to admit it)"
                );
            }
            continue;
        }
        if live.load(Ordering::Relaxed) >= METRICS_CONNECTIONS_MAX {
            metrics.add_metrics_refused();
            if let Some(unlogged) = log.due() {
                tracing::warn!(%peer, unlogged, "too many metrics connections at once ({METRICS_CONNECTIONS_MAX}); closed");
            }
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let (metrics, live) = (metrics.clone(), live.clone());
        tokio::spawn(async move {
            answer(stream, &metrics).await;
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads the request head (up to its blank line, the size limit or the timeout; its content
/// does not matter) and writes the metrics.
async fn answer(mut stream: TcpStream, metrics: &Metrics) {
    let mut buf = vec![0u8; METRICS_REQUEST_LEN_MAX_BYTES];
    let mut got = 0;
    let read_head = async {
        while got < buf.len() {
            match stream.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got += n;
                    if head_ended(&buf[..got]) {
                        break;
                    }
                }
            }
        }
    };
    let _ =
        tokio::time::timeout(Duration::from_millis(METRICS_REQUEST_TIMEOUT_MS), read_head).await;
    let body = metrics.render();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Whether `bytes` hold a whole HTTP request head (it ends with an empty line).
fn head_ended(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::head_ended;

    #[test]
    fn a_head_ends_at_its_empty_line() {
        assert!(head_ended(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head_ended(b"GET / HTTP/1.0\n\n"));
        assert!(!head_ended(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"));
    }
}
