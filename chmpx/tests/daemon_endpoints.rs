//! ENDPOINTS through real chmpx processes: every server is reachable only through a TCP
//! forwarder named in its `ENDPOINTS` (as behind a NAT entrance), and links and routing work
//! through those forwarders; each forwarder sees the connections meant for its node.

mod daemon_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use daemon_support::*;

/// A forwarder: accepts on an ephemeral port, connects each client to `to`, copies both ways,
/// and counts the connections it carried. Threads end with the test process.
struct Forwarder {
    port: u16,
    carried: Arc<AtomicUsize>,
}

fn forward(listener: TcpListener, to: u16, carried: Arc<AtomicUsize>) {
    for inbound in listener.incoming() {
        let Ok(inbound) = inbound else { continue };
        let Ok(outbound) = TcpStream::connect(("127.0.0.1", to)) else {
            continue;
        };
        carried.fetch_add(1, Ordering::SeqCst);
        for (mut from, mut into) in [
            (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
            (outbound, inbound),
        ] {
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || into.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = into.shutdown(Shutdown::Write);
            });
        }
    }
}

impl Forwarder {
    fn start(to: u16) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let carried = Arc::new(AtomicUsize::new(0));
        let c = carried.clone();
        std::thread::spawn(move || forward(listener, to, c));
        Forwarder { port, carried }
    }
}

#[test]
fn daemon_links_and_routes_through_each_servers_endpoints() {
    let mut c = Cluster::configure(3, true);
    // Point every server's ENDPOINTS at a forwarder to its real data port.
    let mut ini = std::fs::read_to_string(&c.conf).unwrap();
    let mut forwarders = Vec::new();
    for s in &c.servers {
        let f = Forwarder::start(s.port);
        let line = format!("PORT = {}\n", s.port);
        assert!(ini.contains(&line), "the INI names PORT {}: {ini}", s.port);
        ini = ini.replace(&line, &format!("{line}ENDPOINTS = 127.0.0.1:{}\n", f.port));
        forwarders.push(f);
    }
    std::fs::write(&c.conf, &ini).unwrap();

    c.start_all();

    // The slave dials every server, so every forwarder carried at least that link.
    for (s, f) in c.servers.iter().zip(&forwarders) {
        assert!(
            f.carried.load(Ordering::SeqCst) >= 1,
            "nobody reached {} through its ENDPOINTS forwarder\n{}",
            s.id(),
            c.logs()
        );
    }
    // Routing from the slave reaches each key's primary through those links.
    assert_slave_routes_to_primaries(&c, "ep", 60);
    std::thread::sleep(Duration::from_millis(10));
}
