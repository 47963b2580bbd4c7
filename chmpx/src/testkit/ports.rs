//! Free TCP ports for one run. They are taken below the kernel's ephemeral range (32768 and
//! up by default), where no outgoing connection of this or another test can be given one of
//! them between the moment it is chosen and the moment a daemon binds it; each candidate is
//! checked by binding it on every address (as the daemons listen) and held while the others
//! of one call are found, so the ports of one call differ. Successive calls in one process
//! walk the range from a start derived from the process id, so parallel tests and parallel
//! test processes rarely even try the same port.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

use super::LaunchError;

/// First port of the range test ports are taken from.
pub const TEST_PORT_FIRST: u16 = 20_000;
/// Number of ports in that range (it ends below the default ephemeral range, 32768).
pub const TEST_PORT_SPAN: u16 = 12_000;

/// Offset of the next candidate in the range (0 until first used: then derived from the pid).
static NEXT_OFFSET: AtomicU32 = AtomicU32::new(0);

fn next_candidate() -> u16 {
    let span = u32::from(TEST_PORT_SPAN);
    if NEXT_OFFSET.load(Ordering::Relaxed) == 0 {
        let start = (std::process::id().wrapping_mul(7_919) % span).max(1);
        let _ = NEXT_OFFSET.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    let offset = NEXT_OFFSET.fetch_add(1, Ordering::Relaxed) % span;
    TEST_PORT_FIRST + offset as u16
}

/// `n` distinct ports that nobody listened on a moment ago.
pub fn free_ports(n: usize) -> Result<Vec<u16>, LaunchError> {
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut tried = 0u32;
    while held.len() < n {
        if tried >= u32::from(TEST_PORT_SPAN) {
            return Err(LaunchError::Ports(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "no free port in {TEST_PORT_FIRST}..{}",
                    u32::from(TEST_PORT_FIRST) + u32::from(TEST_PORT_SPAN)
                ),
            )));
        }
        tried += 1;
        if let Ok(l) = TcpListener::bind(("0.0.0.0", next_candidate())) {
            held.push(l);
        }
    }
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
