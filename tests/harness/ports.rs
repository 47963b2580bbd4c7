//! Free TCP ports on 127.0.0.1 for one test. They are found by binding port 0 and held together
//! while they are read, so the ports of one call differ; another process may still take one
//! before the daemon binds it, which the readiness wait then reports.

use std::net::TcpListener;

/// `n` distinct ports that nobody listened on a moment ago.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}
