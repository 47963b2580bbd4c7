//! A node does not serve reads of slots it has not finished merging (E_MERGING), and a cold
//! start does not refuse reads.
//!
//! Real processes (3 servers, REPLICA 1, ack `all`, one slave the client attaches to). Keys
//! owned by servers 0 and 1 only: server 0 is killed, the keys are overwritten on server 1,
//! then server 1 is killed too and server 0 restarted. Server 0 is now the keys' only usable
//! owner, it came back while the slave stayed, and its recovery merge cannot reconcile their
//! slot before server 1 returns: reads of the keys must be answered E_MERGING (server 0 holds
//! the old values), writes must be served. Once server 1 is back and the merges have run, the
//! reads are served and return the newest acknowledged values.
//!
//! Needs the binaries: `cargo build --release --workspace --bins`, then
//! `cargo test --release -p dkc-server --test merging_reads`. About 30 s.

use std::time::{Duration, Instant};

use dkc_tests::kv::{Kv, KvError};
use dkc_tests::spec::TEST_HEARTBEAT_TIMEOUT_MS;
use dkc_tests::{Cluster, ClusterSpec};

/// Keys read only (their values must come from server 1 after the merge).
const READ_KEYS: usize = 4;
/// Keys written while server 0 gates them (their values must survive the merge).
const WRITE_KEYS: usize = 4;
/// Candidate keys scanned for keys owned by servers 0 and 1.
const KEY_SCAN_MAX: usize = 10_000;
/// Keys read right after a cold start.
const COLD_KEYS: usize = 64;
/// How long a node stays down before the next step: past the heartbeat timeout, so the
/// others take it for DOWN.
const AWAY_MS: u64 = TEST_HEARTBEAT_TIMEOUT_MS * 3;
/// How long reads are checked to be refused while server 0 is the only (behind) owner.
const GATED_WINDOW_MS: u64 = 2_000;
/// Longest wait for a write to be served, or for reads to be served again.
const WAIT_MAX_S: u64 = 60;
/// Longest wait for the cluster to settle.
const SETTLE_MAX_S: u64 = 60;
/// Pause between attempts while waiting.
const RETRY_MS: u64 = 50;

fn is_merging(e: &KvError) -> bool {
    matches!(e, KvError::Unknown(m) | KvError::Failed(m) if m.starts_with("Merging"))
}

/// Sets `key` to `value`, retrying until it is served (a failover may be in progress).
fn set_until_served(kv: &dyn Kv, key: &[u8], value: &[u8], cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(WAIT_MAX_S);
    loop {
        match kv.set(key, value, 0) {
            Ok(_) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "set {} never served: {e}\n{}",
                String::from_utf8_lossy(key),
                cluster.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(RETRY_MS));
    }
}

#[test]
fn cold_start_serves_reads() {
    let cluster = Cluster::start(ClusterSpec::new(3));
    // Right after start every node runs its recovery merge: reads are served all the same.
    let kv = cluster.client();
    for i in 0..COLD_KEYS {
        let key = format!("cold:{i}").into_bytes();
        match kv.get(&key) {
            Ok(None) => {}
            Ok(Some(item)) => panic!("cold:{i} exists in a new cluster: {item:?}"),
            Err(e) => panic!(
                "cold:{i}: read refused right after start: {e}\n{}",
                cluster.logs()
            ),
        }
        kv.set(&key, b"x", 0).expect("write right after start");
        let item = kv.get(&key).unwrap_or_else(|e| {
            panic!(
                "cold:{i}: read refused right after start: {e}\n{}",
                cluster.logs()
            )
        });
        assert_eq!(item.map(|it| it.value), Some(b"x".to_vec()), "cold:{i}");
    }
}

#[test]
fn reads_of_an_unmerged_slot_are_refused_until_the_merge_ends() {
    let mut cluster = Cluster::start(ClusterSpec::new(3));
    cluster.wait_settled(Duration::from_secs(SETTLE_MAX_S));
    let map = cluster.placement();
    let (a, b) = (cluster.servers[0].id.clone(), cluster.servers[1].id.clone());
    let keys: Vec<Vec<u8>> = (0..KEY_SCAN_MAX)
        .map(|i| format!("unmerged:{i}").into_bytes())
        .filter(|k| {
            let chain = map.chain_for(k2hash::key_hash(k));
            chain.contains(&a) && chain.contains(&b)
        })
        .take(READ_KEYS + WRITE_KEYS)
        .collect();
    assert_eq!(
        keys.len(),
        READ_KEYS + WRITE_KEYS,
        "not enough keys owned by {a} and {b}"
    );
    let (read_keys, write_keys) = keys.split_at(READ_KEYS);
    let kv = cluster.client();
    for k in &keys {
        kv.set(k, b"old", 0).expect("first value");
    }

    // Server 0 away: server 1 takes the newer values.
    cluster.servers[0].kill9();
    std::thread::sleep(Duration::from_millis(AWAY_MS));
    for k in &keys {
        set_until_served(&kv, k, b"new", &cluster);
    }
    // Server 1 away too, then server 0 back: it is the keys' only usable owner, behind.
    cluster.servers[1].kill9();
    std::thread::sleep(Duration::from_millis(AWAY_MS));
    cluster.servers[0].start().expect("restart server 0");
    for k in write_keys {
        set_until_served(&kv, k, b"newest", &cluster);
    }
    let window = Instant::now() + Duration::from_millis(GATED_WINDOW_MS);
    let mut refused = 0usize;
    while Instant::now() < window {
        for k in &keys {
            match kv.get(k) {
                Err(e) if is_merging(&e) => refused += 1,
                other => panic!(
                    "{}: read of a slot whose only usable owner is behind gave {other:?}, not E_MERGING\n{}",
                    String::from_utf8_lossy(k),
                    cluster.logs()
                ),
            }
        }
        std::thread::sleep(Duration::from_millis(RETRY_MS));
    }
    assert!(refused >= keys.len(), "no read was checked");
    // Writes are still served.
    for k in write_keys {
        kv.set(k, b"newest", 0)
            .unwrap_or_else(|e| panic!("write refused while merging: {e}\n{}", cluster.logs()));
    }

    // Server 1 back: the merges run, then reads are served, with the newest values.
    cluster.servers[1].start().expect("restart server 1");
    let deadline = Instant::now() + Duration::from_secs(WAIT_MAX_S);
    for (k, want) in read_keys
        .iter()
        .map(|k| (k, b"new".as_slice()))
        .chain(write_keys.iter().map(|k| (k, b"newest".as_slice())))
    {
        loop {
            match kv.get(k) {
                Ok(item) => {
                    assert_eq!(
                        item.map(|it| it.value),
                        Some(want.to_vec()),
                        "{} after the merge\n{}",
                        String::from_utf8_lossy(k),
                        cluster.logs()
                    );
                    break;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{}: reads still refused {WAIT_MAX_S} s after server 1 returned: {e}\n{}",
                    String::from_utf8_lossy(k),
                    cluster.logs()
                ),
            }
            std::thread::sleep(Duration::from_millis(RETRY_MS));
        }
    }
    eprintln!("{refused} reads refused with E_MERGING while server 0 was behind");
}
