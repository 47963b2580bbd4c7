//! Writes whose node is the key's only owner skip the replication round trip
//! (`chmpx::attach::FLAG_SOLE_OWNER`), and nothing else does: real chmpx and dkc-server
//! processes, one slave, clients through the slave.
//!
//! - REPLICA 0 on 2 nodes: every write (set, cas, delete) is answered without a Replicate,
//!   each server counts exactly the writes it was primary of (`replicate_skipped_sole_owner`),
//!   and every value reads back.
//! - REPLICA 1 on 2 nodes: every slot has another owner, nothing is skipped, and every write
//!   is on both owners as soon as it is answered.
//! - REPLICA 0, a 3rd node taken in (SERVICEIN) while a writer runs: chmpx stops marking
//!   writes as soon as a map is pending, so the slots that move reach their new owner through
//!   the pending map's fan-out; once the change has settled, every acknowledged write reads
//!   back at once, without waiting for the old owners' hand-off.
//!
//! Needs the binaries: `cargo build --release --workspace --bins`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chmpx::placement::NodeId;
use dkc_tests::kv::CasOutcome;
use dkc_tests::{AttachKv, Cluster, ClusterSpec, Kv, KvError};

/// The server counter of writes answered without a replication round trip.
const SKIPPED: &str = "replicate_skipped_sole_owner";
/// Keys written by the two fixed-size tests.
const KEYS: usize = 60;
/// Bound on a cluster settling after start or a membership change.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// How long the writer of the SERVICEIN test runs before the change is asked for.
const WRITES_BEFORE_CHANGE: Duration = Duration::from_millis(500);
/// Bound on the writer's run (it stops earlier, once the change has settled).
const WRITER_MAX: Duration = Duration::from_secs(40);
/// Retries of a read refused while its slot is merging (E_MERGING), 100 ms apart.
const MERGING_RETRIES: u32 = 50;

fn key(prefix: &str, i: usize) -> Vec<u8> {
    format!("{prefix}-{i:05}").into_bytes()
}

fn skipped_per_node(kv: &AttachKv, nodes: &[NodeId]) -> BTreeMap<NodeId, u64> {
    kv.stat_per_node(nodes, SKIPPED)
}

/// The primary (first owner) of `key` in the cluster's map.
fn primary(c: &Cluster, key: &[u8]) -> NodeId {
    c.placement().chain_for(k2hash::key_hash(key))[0].clone()
}

/// Reads `key` through routing, retrying only while its slot is merging.
fn read(kv: &AttachKv, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
    let mut tries = 0;
    loop {
        match kv.get(key) {
            Ok(item) => return Ok(item.map(|i| i.value)),
            Err(e) if tries < MERGING_RETRIES && e.to_string().contains("Merging") => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

fn started(servers: usize, replica: u32) -> (Cluster, AttachKv, Vec<NodeId>) {
    let mut c = Cluster::start(ClusterSpec {
        replica,
        ..ClusterSpec::new(servers)
    });
    c.wait_settled(SETTLE_MAX);
    let kv = c.client();
    let ids = c.server_ids();
    (c, kv, ids)
}

#[test]
fn replica_0_writes_skip_the_round_trip_and_each_primary_counts_its_own() {
    let (c, kv, ids) = started(2, 0);
    let before = skipped_per_node(&kv, &ids);
    let mut expected: BTreeMap<NodeId, u64> = ids.iter().map(|n| (n.clone(), 0)).collect();
    for i in 0..KEYS {
        let k = key("sole", i);
        let p = primary(&c, &k);
        let version = kv
            .set(&k, b"first", 0)
            .unwrap_or_else(|e| panic!("set {i}: {e}\n{}", c.logs()));
        *expected.get_mut(&p).expect("a server") += 1;
        // A fenced write (cas) takes the same way: its key reservation is freed at once.
        match kv.cas(&k, b"second", version) {
            Ok(CasOutcome::Stored(_)) => {}
            other => panic!("cas {i}: {other:?}\n{}", c.logs()),
        }
        *expected.get_mut(&p).expect("a server") += 1;
        if i % 3 == 0 {
            assert!(kv.delete(&k).unwrap_or_else(|e| panic!("delete {i}: {e}")));
            *expected.get_mut(&p).expect("a server") += 1;
        }
    }
    let after = skipped_per_node(&kv, &ids);
    for n in &ids {
        let counted = after[n] - before[n];
        assert_eq!(
            counted, expected[n],
            "{n} answered {counted} writes without a Replicate, but was the only owner of {} \
             of them",
            expected[n]
        );
    }
    assert!(
        expected.values().all(|&n| n > 0),
        "both nodes were primaries"
    );
    for i in 0..KEYS {
        let k = key("sole", i);
        let want = (i % 3 != 0).then(|| b"second".to_vec());
        assert_eq!(read(&kv, &k).expect("read back"), want, "key {i}");
    }
}

#[test]
fn replica_1_writes_are_never_marked_and_reach_both_owners() {
    let (c, kv, ids) = started(2, 1);
    let before = skipped_per_node(&kv, &ids);
    for i in 0..KEYS {
        let k = key("pair", i);
        let version = kv
            .set(&k, b"value", 0)
            .unwrap_or_else(|e| panic!("set {i}: {e}\n{}", c.logs()));
        // ACKLEVEL all: answered only once the other owner has it.
        for n in &ids {
            let held = kv
                .get_from(n, &k)
                .unwrap_or_else(|e| panic!("read {i} from {n}: {e}"));
            assert_eq!(
                held.map(|item| item.version),
                Some(version),
                "key {i} not on owner {n} when its write was answered"
            );
        }
    }
    assert_eq!(
        skipped_per_node(&kv, &ids),
        before,
        "a write skipped its replication although its slot has two owners"
    );
}

#[test]
fn replica_0_servicein_under_writes_keeps_every_acknowledged_write_readable() {
    let (mut c, kv, ids) = started(3, 0);
    let newcomer = ids[2].clone();
    c.service_out(&newcomer)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    c.wait_settled(SETTLE_MAX);
    assert_eq!(
        c.placement().members().len(),
        2,
        "two members before the change"
    );
    let before = skipped_per_node(&kv, &ids);

    // One writer, each key written once: what it acknowledged must read back.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let kv = c.client();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut acked = Vec::new();
            let mut unknown = 0usize;
            let mut i = 0;
            while !stop.load(Ordering::Acquire) && started.elapsed() < WRITER_MAX {
                let k = key("moving", i);
                match kv.set(&k, &k, 0) {
                    Ok(_) => acked.push(i),
                    Err(_) => unknown += 1,
                }
                i += 1;
            }
            (acked, unknown)
        })
    };
    std::thread::sleep(WRITES_BEFORE_CHANGE);
    c.service_in(&newcomer)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    c.wait_settled(SETTLE_MAX);
    stop.store(true, Ordering::Release);
    let (acked, unknown) = writer.join().expect("the writer thread");
    let map = c.placement();
    assert_eq!(map.members().len(), 3, "three members after SERVICEIN");

    // Read at once: the new owners must already hold the writes of the slots they took.
    let mut lost = Vec::new();
    let mut on_newcomer = 0;
    for &i in &acked {
        let k = key("moving", i);
        if map.chain_for(k2hash::key_hash(&k))[0] == newcomer {
            on_newcomer += 1;
        }
        match read(&kv, &k) {
            Ok(Some(v)) if v == k => {}
            other => lost.push(format!("{}: {other:?}", String::from_utf8_lossy(&k))),
        }
    }
    let after = skipped_per_node(&kv, &ids);
    let skipped: u64 = ids.iter().map(|n| after[n] - before[n]).sum();
    eprintln!(
        "writes: {} acknowledged ({on_newcomer} now owned by {newcomer}), {unknown} unknown; \
         {skipped} answered without a Replicate; {} do not read back",
        acked.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes do not read back after SERVICEIN ({unknown} unknown \
         outcomes); first: {:?}\n{}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)],
        c.logs()
    );
    assert!(on_newcomer > 0, "no acknowledged key moved to the new node");
    assert!(
        skipped > 0,
        "no write skipped its replication: the shortcut was never taken"
    );
    assert!(
        (skipped as usize) < acked.len() + unknown,
        "every write skipped its replication, even while a map was pending"
    );
}
