//! The driver when one server node dies (REPLICA 1, 3 nodes): reads and writes fail over to
//! the next live owner, a scan still returns every key (one missing node is tolerated and
//! reported), and a flush refuses to pretend it reached every node.
//!
//! Needs the chmpx and dkc-server binaries: `cargo build --release -p chmpx -p dkc-server`.

mod client_support;

use std::time::Duration;

use client_support::Cluster;
use dkc_client::client::{ClientError, ScanQuery, StoreOptions};

#[test]
fn client_one_dead_node_reads_fail_over_scan_tolerates_flush_refuses() {
    const KEYS: u32 = 60;
    let mut cluster = Cluster::start();
    let c = cluster.client().with_timeout(Duration::from_secs(2));
    for i in 0..KEYS {
        c.set(format!("f:{i:03}"), format!("{i}"), StoreOptions::new())
            .unwrap();
    }
    let victim = format!("127.0.0.1:{}", cluster.nodes[0].ctlport);
    assert!(cluster.kill(&format!("dkc-server-{}", cluster.nodes[0].ctlport)));
    assert!(cluster.kill(&format!("chmpx-{}", cluster.nodes[0].ctlport)));
    cluster.wait_server_down(0);

    // Every key is still readable and writable through its other owner.
    for i in 0..KEYS {
        let k = format!("f:{i:03}");
        let item = c
            .get(&k)
            .unwrap_or_else(|e| panic!("{k}: {e}\n{}", cluster.logs()))
            .unwrap_or_else(|| panic!("{k} lost with one node down"));
        assert_eq!(item.value, format!("{i}").into_bytes());
    }
    c.set("f:new", "after", StoreOptions::new()).unwrap();

    // A scan still sees every key, and says which node did not answer.
    let mut query = ScanQuery::prefix("f:").limit(25);
    let mut keys = Vec::new();
    loop {
        let batch = c.scan(&query).expect("scan with one node down");
        assert_eq!(batch.missing_nodes, vec![victim.clone()]);
        keys.extend(batch.items.into_iter().map(|i| i.key));
        match batch.cursor {
            Some(cur) => query = query.after(Some(cur)),
            None => break,
        }
    }
    assert_eq!(keys.len() as u32, KEYS + 1);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));

    // Stats show the dead node's error; flush refuses a partial run.
    let stats = c.stats().unwrap();
    assert!(stats.iter().any(|n| n.node == victim && n.stats.is_err()));
    match c.flush(true) {
        Err(ClientError::Unavailable { reason }) => {
            assert!(reason.contains(&victim), "{reason}")
        }
        other => panic!("flush with a node down: {other:?}"),
    }
}
