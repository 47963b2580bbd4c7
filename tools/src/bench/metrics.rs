//! Reading chmpx's Prometheus counters (`chmpx_messages_routed_total`,
//! `chmpx_message_bytes_total`) over plain HTTP, to report messages and bytes per operation.
//! The parsing is pure; the fetch is one HTTP/1.0 GET with a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for one metrics endpoint, ms.
pub const SCRAPE_TIMEOUT_MS: u64 = 2_000;
/// Largest metrics page read, bytes.
pub const SCRAPE_BODY_MAX_BYTES: u64 = 1024 * 1024;

/// The counters summed over the endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages routed.
    pub messages: u64,
    /// Body bytes routed.
    pub bytes: u64,
}

/// Reads the two counters from a Prometheus text page (absent ones read 0).
pub fn parse_counters(page: &str) -> Counters {
    let mut c = Counters::default();
    for line in page.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(v)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(v) = v.parse::<f64>() else { continue };
        match name {
            "chmpx_messages_routed_total" => c.messages += v as u64,
            "chmpx_message_bytes_total" => c.bytes += v as u64,
            _ => {}
        }
    }
    c
}

/// Fetches and sums the counters of every endpoint.
pub async fn scrape(addrs: &[SocketAddr]) -> Result<Counters, String> {
    let mut sum = Counters::default();
    for &addr in addrs {
        let page = tokio::time::timeout(Duration::from_millis(SCRAPE_TIMEOUT_MS), fetch(addr))
            .await
            .map_err(|_| format!("metrics {addr}: no answer within {SCRAPE_TIMEOUT_MS} ms"))?
            .map_err(|e| format!("metrics {addr}: {e}"))?;
        let c = parse_counters(&page);
        sum.messages += c.messages;
        sum.bytes += c.bytes;
    }
    Ok(sum)
}

async fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: chmpx\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    s.take(SCRAPE_BODY_MAX_BYTES).read_to_end(&mut body).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_two_counters() {
        let page = "HTTP/1.0 200 OK\r\n\r\n# HELP chmpx_messages_routed_total x\n\
                    # TYPE chmpx_messages_routed_total counter\nchmpx_messages_routed_total 1234\n\
                    chmpx_message_bytes_total 5.5e3\nchmpx_peer_up{peer=\"a\"} 1\n";
        assert_eq!(
            parse_counters(page),
            Counters {
                messages: 1234,
                bytes: 5500
            }
        );
        assert_eq!(parse_counters("nothing here"), Counters::default());
    }
}
