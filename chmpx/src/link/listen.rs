//! Binding a TCP port that may still be held for a moment: a chmpx started again at once (by
//! an operator, a supervisor or a test) can find its own ports held by the instance that is
//! still stopping, or by another short-lived holder. [`bind_listener`] retries such a bind for
//! up to [`BIND_RETRY_MAX_MS`], with one warning, before it gives the error up. Any other
//! error is returned at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::limits::{BIND_RETRY_INTERVAL_MS, BIND_RETRY_MAX_MS};

/// Binds `addr` (`what` names the port in the log), retrying while it is in use.
pub async fn bind_listener(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    let deadline = Instant::now() + Duration::from_millis(BIND_RETRY_MAX_MS);
    let mut warned = false;
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !warned {
                    tracing::warn!(%addr, "{what} is in use; retrying for up to {BIND_RETRY_MAX_MS} ms (a previous instance still stopping?)");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(BIND_RETRY_INTERVAL_MS)).await;
            }
            result => {
                if warned && result.is_ok() {
                    tracing::info!(%addr, "{what} bound");
                }
                return result;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_a_port_held_for_a_moment_and_gives_up_on_one_held_for_good() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(BIND_RETRY_MAX_MS / 4));
            drop(holder);
        });
        let started = Instant::now();
        let bound = bind_listener(addr, "test port")
            .await
            .expect("bound once freed");
        assert!(started.elapsed() >= Duration::from_millis(BIND_RETRY_MAX_MS / 4));
        release.join().unwrap();

        let started = Instant::now();
        let e = bind_listener(addr, "test port")
            .await
            .expect_err("held for good");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(started.elapsed() >= Duration::from_millis(BIND_RETRY_MAX_MS));
        drop(bound);
    }
}
