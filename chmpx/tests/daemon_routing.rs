//! Routing through real chmpx processes: 3 server nodes and a slave on 127.0.0.1.

mod daemon_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use chmpx::placement::key_hash;
use daemon_support::*;

#[test]
fn daemon_routes_by_hash_to_the_primary_and_survives_garbage() {
    let c = Cluster::start(3, true);
    let map = c.map(0, &c.server_ids());
    let client = c.client(c.slave_ctlport);
    // From the slave: every key lands on its slot's primary.
    let mut served = std::collections::HashMap::<String, u32>::new();
    for i in 0..200u32 {
        let key = format!("key-{i}");
        let h = key_hash(key.as_bytes());
        let want = map.chain_for(h)[0].to_string();
        let (got, body) =
            ask(&client, h, key.as_bytes()).unwrap_or_else(|e| panic!("{key}: {e}\n{}", c.logs()));
        assert_eq!(got, want, "{key} must be served by its primary");
        assert_eq!(body, key.as_bytes());
        *served.entry(got).or_default() += 1;
    }
    assert_eq!(
        served.len(),
        3,
        "200 keys spread over all three nodes: {served:?}"
    );

    // From a server node's own chmpx too (local delivery and forwarding).
    let local = c.client(c.servers[0].ctlport);
    for i in 0..50u32 {
        let h = key_hash(format!("local-{i}").as_bytes());
        let (got, _) = ask(&local, h, b"x").unwrap();
        assert_eq!(got, map.chain_for(h)[0].to_string());
    }

    // "One node" routes reach exactly that node, from the slave.
    for s in &c.servers {
        let num = chmpx::daemon::node_number(s.id().as_str());
        let resp = client
            .request(
                chmpx::attach::Route::Node(num),
                b"n",
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(resp.flags & chmpx::daemon::FLAG_CHMPX_ERROR, 0);
        assert!(resp.body.starts_with(format!("{}|", s.id()).as_bytes()));
    }
    let resp = client
        .request(
            chmpx::attach::Route::Node(12345),
            b"n",
            Duration::from_secs(5),
        )
        .unwrap();
    assert_ne!(
        resp.flags & chmpx::daemon::FLAG_CHMPX_ERROR,
        0,
        "an unknown node is an error answer"
    );

    // Garbage on the control port: an ERR answer, and the daemon goes on.
    let addr = c.ctl_addr(c.servers[1].ctlport);
    let (ok, text) = control(addr, "HELLO THERE").unwrap();
    assert!(!ok && text.contains("unknown command"), "{text}");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&vec![b'A'; 5000]).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("ERR"),
        "an overlong line gets ERR: {answer:?}"
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0xff, 0x00, 0xfe, b'\n']).unwrap();
    drop(s);
    // Garbage on the data port.
    for junk in [
        &b"\x00\x00\x00\x05hello"[..],
        &b"\xff\xff\xff\xffxx"[..],
        &[0u8; 64][..],
    ] {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", c.servers[1].port)) {
            let _ = s.write_all(junk);
        }
    }
    let (ok, text) = control(addr, "VERSION").expect("control port still answers");
    assert!(ok && text.starts_with("chmpx"), "{text}");
    for i in 0..30u32 {
        let h = key_hash(format!("after-{i}").as_bytes());
        assert_eq!(
            ask(&client, h, b"y").unwrap().0,
            map.chain_for(h)[0].to_string()
        );
    }
    let (ok, text) = control(addr, "ALLSTATUS").unwrap();
    assert!(
        ok && text.contains("SERVICE IN") && text.contains("SLAVE"),
        "{text}"
    );
}
