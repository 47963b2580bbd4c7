//! An expired key is never returned by any node (DESIGN.md §5, K2HDKC EXPIRE semantics): read
//! from every owner directly, through routing and by scanning each node, also after a node that
//! missed the writes came back and merged. 3 server nodes + 1 slave, REPLICA 1, ack `all`.

use std::time::{Duration, Instant};

use dkc_tests::{unix_now_secs, Cluster, ClusterSpec, Kv};

/// Keys written with an expiry.
const EXPIRING: usize = 30;
/// Keys written without one (they must survive).
const PERMANENT: usize = 30;
/// Lifetime of the expiring keys, seconds.
const LIFETIME_S: u64 = 3;
/// Bound on the whole wait for expiry.
const EXPIRY_WAIT_MAX: Duration = Duration::from_secs(15);
/// Bound on the restarted node settling.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// The node killed before expiry and restarted after it.
const VICTIM: usize = 2;

fn ekey(i: usize) -> Vec<u8> {
    format!("e{i:03}").into_bytes()
}

fn pkey(i: usize) -> Vec<u8> {
    format!("p{i:03}").into_bytes()
}

#[test]
fn expired_keys_are_never_returned_by_any_node() {
    let mut c = Cluster::start(ClusterSpec::new(3));
    let kv = c.client();
    let t0 = Instant::now();
    let expire_at = unix_now_secs() + LIFETIME_S;
    for i in 0..EXPIRING {
        kv.set(&ekey(i), b"short-lived", expire_at)
            .unwrap_or_else(|e| panic!("set {i}: {e}"));
    }
    for i in 0..PERMANENT {
        kv.set(&pkey(i), b"kept", 0)
            .unwrap_or_else(|e| panic!("set {i}: {e}"));
    }
    // Still well before the expiry: every owner returns the keys.
    let map = c.placement();
    let mut early_checked = 0;
    for i in 0..EXPIRING {
        if unix_now_secs() + 1 >= expire_at {
            break; // The machine is too slow to check this before expiry; the rest still runs.
        }
        for o in map.chain_for(k2hash::key_hash(&ekey(i))) {
            let got = kv.get_from(o, &ekey(i)).expect("early read");
            assert!(got.is_some(), "{o} lost e{i:03} before it expired");
            early_checked += 1;
        }
    }

    // A node goes away before the expiry and comes back after it: the merge brings it the
    // expired items, which it must not serve either.
    c.servers[VICTIM].kill9();
    while unix_now_secs() <= expire_at {
        assert!(
            t0.elapsed() < EXPIRY_WAIT_MAX,
            "the clock did not reach the expiry"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.servers[VICTIM]
        .start()
        .unwrap_or_else(|e| panic!("restart: {e}"));
    c.wait_ready();
    c.wait_settled(SETTLE_MAX);

    let mut returned = Vec::new();
    let members = c.placement().members().to_vec();
    for i in 0..EXPIRING {
        let k = ekey(i);
        for node in &members {
            match kv.get_from(node, &k) {
                Ok(None) => {}
                other => returned.push(format!("e{i:03} from {node}: {other:?}")),
            }
        }
        match kv.get(&k) {
            Ok(None) => {}
            other => returned.push(format!("e{i:03} routed: {other:?}")),
        }
    }
    for node in &members {
        match kv.scan_node(node, b"e") {
            Ok(items) if items.is_empty() => {}
            other => returned.push(format!("scan of {node}: {other:?}")),
        }
    }
    let mut permanent_missing = Vec::new();
    for i in 0..PERMANENT {
        for o in map.chain_for(k2hash::key_hash(&pkey(i))) {
            if !matches!(kv.get_from(o, &pkey(i)), Ok(Some(_))) {
                permanent_missing.push(format!("p{i:03} on {o}"));
            }
        }
    }
    println!(
        "summary expiry: expiring {EXPIRING}, permanent {PERMANENT}, early owner reads {early_checked}, expired returned {}, permanent missing {}, time {:.1}s",
        returned.len(),
        permanent_missing.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(returned.is_empty(), "expired keys returned: {returned:#?}");
    assert!(
        permanent_missing.is_empty(),
        "keys without expiry missing: {permanent_missing:#?}"
    );
}
