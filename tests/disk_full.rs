//! A full disk on one server node (DESIGN.md §9: resource exhaustion gets a clear error, never
//! a crash, and loses nothing stored). 3 server nodes + 1 slave on one host, REPLICA 1, ack
//! `all`; node 2's data directory is a small tmpfs holding its k2hash file and a ballast file.
//!
//! Writes of new keys go on until node 2's disk is full and enough writes were refused. Then:
//! - every refused write failed with `E_NO_SPACE` naming node 2's file, and node 2 owns its
//!   key (as primary: nothing was written; as replica: "written on the primary");
//! - node 2's dkc-server still runs, counts the failures, warns in its log, and serves reads;
//! - every acknowledged write reads back (routed, and from each of its owners);
//! - once the ballast is removed, writes to keys node 2 owns succeed again;
//! - after node 2's dkc-server is restarted (its recovery merge copies what it refused while
//!   full), every owner of every slot reports the same digest and every acknowledged write is
//!   still there on each owner. (Without a restart, chmpx's periodic anti-entropy repairs such
//!   a replica too: `tests/antientropy.rs` and the lab's full-disk fault in `tests/faults.rs`.)
//!
//! Needs root to mount the tmpfs (CI runs as root); without it the test says why and returns,
//! like the other root-only scenarios of this crate (tests/faults.rs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chmpx::placement::PlacementMap;
use dkc_client::client::{Client, ClientError, StoreOptions};
use dkc_client::proto::ErrorCode;
use dkc_tests::direct::digest_mismatches;
use dkc_tests::{AttachKv, Cluster, ClusterSpec};
use dkc_tools::netns::disk::Tmpfs;

/// Size of node 2's tmpfs, bytes: the k2hash file starts at 4 MiB (its first growth step).
const TMPFS_BYTES: u64 = 8 * 1024 * 1024;
/// Ballast on the tmpfs, removed to free space, bytes.
const BALLAST_BYTES: usize = 2 * 1024 * 1024;
/// Bytes of every value written.
const VALUE_BYTES: usize = 8 * 1024;
/// Refused writes after which filling stops.
const NO_SPACE_FAILURES: u64 = 30;
/// Bound on fill writes (the disk holds a few hundred values).
const FILL_WRITES_MAX: u64 = 5_000;
/// Writes after the ballast is removed (all must succeed; they fit in its space).
const AFTER_FREE_WRITES: u64 = 40;
/// Bound on the owners' digests becoming equal after node 2's dkc-server restarts.
const CONVERGE_MAX: Duration = Duration::from_secs(30);
/// Bound on the whole scenario.
const RUN_MAX: Duration = Duration::from_secs(60);
/// The node whose disk fills (index into the cluster's servers).
const FULL: usize = 1;

const _: () = assert!((AFTER_FREE_WRITES as usize) * (VALUE_BYTES + 1024) < BALLAST_BYTES);

/// The value of key number `i`: `VALUE_BYTES` bytes that differ from key to key.
fn value_of(i: u64) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    v.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    v
}

/// Every acknowledged write reads back, routed and from each of its owners.
fn check_acked(
    client: &Client,
    kv: &AttachKv,
    map: &PlacementMap,
    acked: &BTreeMap<Vec<u8>, Vec<u8>>,
    when: &str,
) {
    for (k, v) in acked {
        let routed = client
            .get(k)
            .unwrap_or_else(|e| panic!("{when}: routed read of {k:?}: {e}"));
        assert_eq!(
            routed.map(|i| i.value).as_ref(),
            Some(v),
            "{when}: acknowledged {k:?} lost (routed read)"
        );
        for o in map.chain_for(k2hash::key_hash(k)) {
            let held = kv
                .get_from(o, k)
                .unwrap_or_else(|e| panic!("{when}: read of {k:?} from {o}: {e}"));
            assert_eq!(
                held.map(|i| i.value).as_ref(),
                Some(v),
                "{when}: acknowledged {k:?} missing on owner {o}"
            );
        }
    }
}

#[test]
fn full_disk_on_one_node_gives_no_space_and_loses_nothing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped full_disk_on_one_node: mounting a tmpfs needs root");
        return;
    }
    let t0 = Instant::now();
    let mut c = Cluster::configure(ClusterSpec::new(3)).unwrap_or_else(|e| panic!("{e}"));
    let full_id = c.servers[FULL].id.clone();
    let data_dir = c
        .dir()
        .join("data")
        .join(format!("{}-{}", c.group, c.servers[FULL].ctlport));
    // Declared after the cluster: unmounted first, then the cluster's processes are killed.
    let fs = Tmpfs::mount(&data_dir, TMPFS_BYTES).unwrap_or_else(|e| panic!("{e}"));
    let ballast = fs.mount.join("ballast");
    std::fs::write(&ballast, vec![0x5a; BALLAST_BYTES]).expect("ballast file");
    for n in c.servers.iter_mut().chain(c.slaves.iter_mut()) {
        n.start().unwrap_or_else(|e| panic!("{e}"));
    }
    c.wait_ready();
    let client = Client::from_conf(&c.conf, Some(c.client_ctlport()))
        .unwrap_or_else(|e| panic!("driver attach: {e}"));
    let map = c.placement();
    let owners = |key: &[u8]| map.chain_for(k2hash::key_hash(key)).to_vec();

    // Fill until node 2's disk refuses enough writes.
    let mut acked: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let (mut as_primary, mut as_replica, mut i) = (0u64, 0u64, 0u64);
    let mut examples: BTreeMap<&str, String> = BTreeMap::new();
    while as_primary + as_replica < NO_SPACE_FAILURES {
        assert!(
            i < FILL_WRITES_MAX,
            "{FILL_WRITES_MAX} writes and node 2's {TMPFS_BYTES}-byte disk is not full"
        );
        let key = format!("df-{i:06}").into_bytes();
        let value = value_of(i);
        match client.set(&key, &value, StoreOptions::new()) {
            Ok(_) => {
                acked.insert(key, value);
            }
            Err(ClientError::Server {
                code: ErrorCode::NoSpace,
                message,
            }) => {
                let chain = owners(&key);
                let rank = chain.iter().position(|o| *o == full_id);
                assert!(
                    message.contains("dkc.k2h") && message.contains("no space"),
                    "the refusal must name the file and the cause: {message}"
                );
                let role = if rank == Some(0) {
                    "primary"
                } else {
                    "replica"
                };
                examples.entry(role).or_insert_with(|| message.clone());
                match rank {
                    Some(0) => as_primary += 1,
                    Some(_) => {
                        assert!(
                            message.contains("written on the primary"),
                            "a replica's refusal must say the primary has the write: {message}"
                        );
                        as_replica += 1
                    }
                    None => panic!(
                        "key {i} refused for lack of space, but its owners {chain:?} do not \
                         include the full node {full_id}: {message}"
                    ),
                }
            }
            Err(e) => panic!("write {i}: expected success or E_NO_SPACE, got: {e}"),
        }
        i += 1;
    }
    println!(
        "disk full after {i} writes: {} acknowledged, refused with E_NO_SPACE {as_primary} times \
         with node 2 primary and {as_replica} times with node 2 replica ({:.1}s)",
        acked.len(),
        t0.elapsed().as_secs_f64()
    );
    for (role, message) in &examples {
        println!("refusal with node 2 {role}: {message}");
    }
    assert!(acked.len() > 50, "only {} writes fitted", acked.len());

    // Node 2 is alive, counted and logged the failures, and serves reads.
    let server = c.servers[FULL]
        .server
        .as_mut()
        .expect("node 2 runs a server");
    assert!(
        server.is_running(),
        "node 2's dkc-server died on a full disk"
    );
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        log.contains("storage failed") && log.contains("no space"),
        "node 2's dkc-server did not warn about the full disk in its log"
    );
    let kv = c.client();
    let stats = kv.stats_of(&full_id).expect("stats of node 2");
    assert!(
        stats.get("errors_no_space").copied().unwrap_or(0) >= as_primary + as_replica,
        "node 2 counts {:?} no-space errors, the clients saw {}",
        stats.get("errors_no_space"),
        as_primary + as_replica
    );
    check_acked(&client, &kv, &map, &acked, "disk full");

    // Free space: writes to keys node 2 owns succeed again.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let mut written = 0;
    let mut j = 0u64;
    while written < AFTER_FREE_WRITES {
        assert!(j < 10 * AFTER_FREE_WRITES, "too few keys owned by node 2");
        let key = format!("df-after-{j:06}").into_bytes();
        j += 1;
        if !owners(&key).contains(&full_id) {
            continue;
        }
        let value = value_of(1_000_000 + j);
        client
            .set(&key, &value, StoreOptions::new())
            .unwrap_or_else(|e| panic!("write after freeing node 2's disk: {e}"));
        acked.insert(key, value);
        written += 1;
    }
    let before = digest_mismatches(&kv, &map).len();

    // Node 2's dkc-server restarts; its recovery merge brings the owners together.
    let server = c.servers[FULL]
        .server
        .as_mut()
        .expect("node 2 runs a server");
    server.terminate();
    server
        .spawn()
        .unwrap_or_else(|e| panic!("restart node 2's dkc-server: {e}"));
    c.wait_ready();
    let restarted = Instant::now();
    let mut mismatches = digest_mismatches(&kv, &map);
    while !mismatches.is_empty() && restarted.elapsed() < CONVERGE_MAX {
        std::thread::sleep(Duration::from_millis(200));
        mismatches = digest_mismatches(&kv, &map);
    }
    println!(
        "slots differing before the restart {before}, after {} ({:.1}s after it); run {:.1}s",
        mismatches.len(),
        restarted.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        mismatches.is_empty(),
        "owners still differ {CONVERGE_MAX:?} after node 2's restart in {} slots, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
    check_acked(&client, &kv, &map, &acked, "converged");
    assert!(
        t0.elapsed() < RUN_MAX,
        "the scenario took {:?}, more than {RUN_MAX:?}",
        t0.elapsed()
    );
}
