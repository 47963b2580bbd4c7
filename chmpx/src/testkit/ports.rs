//! Free TCP ports on 127.0.0.1 for one run. They are found by binding port 0 and held together
//! while they are read, so the ports of one call differ; another process may still take one
//! before a daemon binds it, which the readiness wait then reports.

use std::net::TcpListener;

use super::LaunchError;

/// `n` distinct ports that nobody listened on a moment ago.
pub fn free_ports(n: usize) -> Result<Vec<u16>, LaunchError> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(LaunchError::Ports)?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(LaunchError::Ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_one_call_differ() {
        let ports = free_ports(8).unwrap();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), 8);
        assert!(ports.iter().all(|p| *p != 0));
    }
}
