//! A server node that comes back must not execute CAS as its slots' primary before it has
//! caught up with what the owners that stayed acknowledged while it was away.
//!
//! Real processes (3 servers, REPLICA 1, ack `all`, one slave the clients attach to): client
//! threads CAS-increment counters whose primary is server 0, without pause, while server 0 is
//! (1) SIGKILLed and restarted, and (2) SIGSTOPped past the heartbeat timeout and resumed.
//! Increments go on right through each return. Afterwards every counter must equal the number
//! of increments acknowledged for it, give or take those whose outcome the client could not
//! know (timeouts), and no value may have been acknowledged twice (two CAS stored against the
//! same version = one increment lost).
//!
//! Without the fix, the slave routed CAS to server 0 as soon as it was UP with its server
//! attached, before its recovery merge had copied the increments acknowledged by the failover
//! primary: the counter went back and the same value was acknowledged twice.
//!
//! Needs the binaries: `cargo build --release --workspace --bins`, then
//! `cargo test --release -p dkc-server --test returning_primary_cas`. About 40 s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dkc_tests::kv::{CasOutcome, Kv, KvError};
use dkc_tests::{Cluster, ClusterSpec};

/// Counters, all with server 0 as primary.
const COUNTERS: usize = 4;
/// Client threads incrementing (each picks counters round-robin).
const CLIENTS: usize = 8;
/// Increments before the first fault, so the counters have a history.
const WARMUP_MS: u64 = 1_000;
/// How long server 0 stays down (killed) or frozen (stopped): past the heartbeat timeout, so
/// the others fail over and acknowledge increments it misses.
const AWAY_MS: u64 = 6_000;
/// Increments after each return: the window in which the bug showed.
const AFTER_RETURN_MS: u64 = 4_000;
/// Longest wait for the cluster to settle after the load.
const SETTLE_MAX_S: u64 = 60;
/// Candidate keys scanned for counters whose primary is server 0.
const KEY_SCAN_MAX: usize = 10_000;

/// What one counter's clients saw.
#[derive(Default)]
struct Tally {
    /// Increments acknowledged.
    acked: u64,
    /// CAS whose outcome the client could not know (timeout, lost answer).
    unknown: u64,
    /// Every acknowledged value, with how many times it was acknowledged.
    values: HashMap<u64, u32>,
}

fn parse(v: &[u8]) -> u64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("counter holds a non-number: {v:?}"))
}

/// One client's loop: read, CAS value+1, until `stop`.
fn increment_loop(
    kv: Box<dyn Kv>,
    keys: Vec<Vec<u8>>,
    tallies: Arc<Vec<Mutex<Tally>>>,
    stop: Arc<AtomicBool>,
    first: usize,
) {
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        i = (i + 1) % keys.len();
        let key = &keys[i];
        let Ok(Some(item)) = kv.get(key) else {
            // Failover in progress: try again.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let next = parse(&item.value) + 1;
        match kv.cas(key, next.to_string().as_bytes(), item.version) {
            Ok(CasOutcome::Stored(_)) => {
                let mut t = tallies[i].lock().unwrap();
                t.acked += 1;
                *t.values.entry(next).or_default() += 1;
            }
            Ok(CasOutcome::Exists) | Ok(CasOutcome::NotFound) | Err(KvError::Failed(_)) => {}
            Err(KvError::Unknown(_)) => tallies[i].lock().unwrap().unknown += 1,
        }
    }
}

/// Runs the load while `fault` acts on the cluster; returns the tallies.
fn run_with(
    cluster: &mut Cluster,
    keys: &[Vec<u8>],
    fault: impl FnOnce(&mut Cluster),
) -> Vec<Tally> {
    let tallies: Arc<Vec<Mutex<Tally>>> = Arc::new(
        (0..keys.len())
            .map(|_| Mutex::new(Tally::default()))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            // The harness's own client: one attempt per call, so an outcome it reports as
            // known is exact (a driver retrying a CAS whose answer was lost would report a
            // stored increment as a conflict).
            let kv: Box<dyn Kv> = Box::new(cluster.client());
            let keys = keys.to_vec();
            let tallies = tallies.clone();
            let stop = stop.clone();
            std::thread::spawn(move || increment_loop(kv, keys, tallies, stop, c))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(WARMUP_MS));
    fault(cluster);
    std::thread::sleep(Duration::from_millis(AFTER_RETURN_MS));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread panicked");
    }
    Arc::try_unwrap(tallies)
        .ok()
        .expect("client threads are gone")
        .into_iter()
        .map(|m| m.into_inner().unwrap())
        .collect()
}

/// Checks each counter against what its clients saw; `base` is its value before the run.
fn check(cluster: &mut Cluster, what: &str, keys: &[Vec<u8>], base: &[u64], tallies: &[Tally]) {
    cluster.wait_settled(Duration::from_secs(SETTLE_MAX_S));
    let kv = cluster.client();
    let mut problems = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let t = &tallies[i];
        let now = parse(
            &kv.get(key)
                .expect("final read")
                .expect("counter exists")
                .value,
        );
        let name = String::from_utf8_lossy(key);
        eprintln!(
            "{what}: {name} from {} to {now}: {} acknowledged, {} unknown",
            base[i], t.acked, t.unknown
        );
        if now < base[i] + t.acked || now > base[i] + t.acked + t.unknown {
            problems.push(format!(
                "{name}: ends at {now}, started at {}, {} increments acknowledged, {} unknown",
                base[i], t.acked, t.unknown
            ));
        }
        let mut twice: Vec<u64> = t
            .values
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(v, _)| *v)
            .collect();
        twice.sort_unstable();
        if let (Some(lo), Some(hi)) = (twice.first(), twice.last()) {
            problems.push(format!(
                "{name}: {} values acknowledged more than once, from {lo} to {hi}",
                twice.len()
            ));
        }
        assert!(
            t.acked > 0,
            "{what}: no increment of {name} was acknowledged"
        );
    }
    assert!(
        problems.is_empty(),
        "{what}: acknowledged CAS increments lost:\n{}\n{}",
        problems.join("\n"),
        cluster.logs()
    );
}

#[test]
fn cas_increments_survive_a_returning_primary() {
    let mut cluster = Cluster::start(ClusterSpec::new(3));
    cluster.wait_settled(Duration::from_secs(SETTLE_MAX_S));
    let map = cluster.placement();
    let victim = cluster.servers[0].id.clone();
    let keys: Vec<Vec<u8>> = (0..KEY_SCAN_MAX)
        .map(|i| format!("ret-ctr:{i}").into_bytes())
        .filter(|k| map.chain_for(k2hash::key_hash(k))[0] == victim)
        .take(COUNTERS)
        .collect();
    assert_eq!(
        keys.len(),
        COUNTERS,
        "not enough keys with {victim} as primary"
    );
    let kv = cluster.client();
    for k in &keys {
        kv.set(k, b"0", 0).expect("initial value");
    }

    // 1. Killed and restarted.
    let base = vec![0; COUNTERS];
    let tallies = run_with(&mut cluster, &keys, |c| {
        c.servers[0].kill9();
        std::thread::sleep(Duration::from_millis(AWAY_MS));
        c.servers[0].start().expect("restart server 0");
    });
    check(&mut cluster, "kill and restart", &keys, &base, &tallies);

    // 2. Frozen and resumed.
    let base: Vec<u64> = keys
        .iter()
        .map(|k| parse(&kv.get(k).expect("read").expect("exists").value))
        .collect();
    let tallies = run_with(&mut cluster, &keys, |c| {
        c.servers[0].stop();
        std::thread::sleep(Duration::from_millis(AWAY_MS));
        c.servers[0].cont();
    });
    check(&mut cluster, "stop and continue", &keys, &base, &tallies);
}
