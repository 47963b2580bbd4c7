//! No acknowledged write is lost when a server node is killed (kill -9) and restarted, or hangs
//! (SIGSTOP past the heartbeat timeout) and resumes; after the automatic merge every owner of
//! every slot holds identical data (DESIGN.md §9).
//! 3 server nodes + 1 slave, REPLICA 1, ack `all`, 8 concurrent writer clients.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chmpx::daemon::status::Live;
use dkc_tests::direct::digest_mismatches;
use dkc_tests::{Cluster, ClusterSpec, History, Kv, Op, Outcome};

/// Concurrent writer clients.
const CLIENTS: usize = 8;
/// Distinct keys per client (each overwritten in turn, so versions matter too).
const KEYS_PER_CLIENT: u64 = 300;
/// One write in this many is a delete.
const DELETE_EVERY: u64 = 7;
/// Most writes one client makes.
const WRITES_PER_CLIENT_MAX: u64 = 20_000;
/// Writing before the kill, while the node is down, and after the restart.
const PHASE: Duration = Duration::from_millis(1500);
/// Bound on seeing the killed node DOWN, and on the restarted node coming back.
const STATE_MAX: Duration = Duration::from_secs(20);
/// Bound on the owners' digests becoming equal after the restart.
const CONVERGE_MAX: Duration = Duration::from_secs(30);
/// Which server is killed.
const VICTIM: usize = 1;

fn writer(
    client: usize,
    kv: Box<dyn Kv>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU64>,
    t0: Instant,
) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && i < WRITES_PER_CLIENT_MAX {
        // Keys are per phase (healthy, fault, healed): writes after the fault must not
        // overwrite, and so hide, a divergence the fault left behind.
        let p = phase.load(Ordering::Relaxed);
        let key = format!("w{client}-p{p}-{}", i % KEYS_PER_CLIENT).into_bytes();
        // Every DELETE_EVERY-th write is a delete: a deleted key must not come back.
        let (value, result) = if i % DELETE_EVERY == DELETE_EVERY - 1 {
            (None, kv.delete(&key).map(|_| ()))
        } else {
            let v = format!("c{client}-i{i}").into_bytes();
            let r = kv.set(&key, &v, 0).map(|_| ());
            (Some(v), r)
        };
        let outcome = match result {
            Ok(()) => Outcome::Ok,
            Err(dkc_tests::KvError::Failed(_)) => Outcome::Failed,
            Err(dkc_tests::KvError::Unknown(_)) => Outcome::Unknown,
        };
        history.record(Op {
            client,
            seq: i,
            key,
            value,
            outcome,
            at: t0.elapsed(),
        });
        i += 1;
    }
}

/// How the victim is taken away and brought back.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL of its chmpx and dkc-server; both started again later (same data dir).
    Kill9Restart,
    /// SIGSTOP of both (a hung host) past the heartbeat timeout; SIGCONT later.
    StopCont,
}

#[test]
fn kill9_and_restart_loses_no_acked_write_and_owners_converge() {
    run(Fault::Kill9Restart);
}

#[test]
fn sigstop_past_heartbeat_timeout_loses_no_acked_write_and_owners_converge() {
    run(Fault::StopCont);
}

fn run(fault: Fault) {
    let mut c = Cluster::start(ClusterSpec::new(3));
    let history = Arc::new(History::new());
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let writers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (kv, h, s, p) = (c.kv(), history.clone(), stop.clone(), phase.clone());
            std::thread::spawn(move || writer(i, kv, h, s, p, t0))
        })
        .collect();
    let victim = c.servers[VICTIM].id.clone();
    let slave = c.client_ctlport();

    std::thread::sleep(PHASE); // Let the writers run on a healthy cluster.
    phase.store(1, Ordering::Relaxed);
    match fault {
        Fault::Kill9Restart => c.servers[VICTIM].kill9(),
        Fault::StopCont => c.servers[VICTIM].stop(),
    }
    let killed_at = t0.elapsed();
    c.wait_until(slave, "the killed node DOWN", STATE_MAX, |r| {
        r.nodes
            .iter()
            .any(|n| n.id == victim.as_str() && n.live == Live::Down)
    });
    std::thread::sleep(PHASE); // Writers keep going with one node down.
    match fault {
        Fault::Kill9Restart => c.servers[VICTIM]
            .start()
            .unwrap_or_else(|e| panic!("restart: {e}")),
        Fault::StopCont => c.servers[VICTIM].cont(),
    }
    let restarted = Instant::now();
    c.wait_ready();
    let settled_epoch = c.wait_settled(CONVERGE_MAX);
    phase.store(2, Ordering::Relaxed);
    std::thread::sleep(PHASE); // And on the healed cluster.
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer thread");
    }

    // Every owner's per-slot digests become equal, by themselves.
    let kv = c.client();
    let map = c.placement();
    let mut mismatches = digest_mismatches(&kv, &map);
    while !mismatches.is_empty() && restarted.elapsed() < CONVERGE_MAX {
        std::thread::sleep(Duration::from_millis(200));
        mismatches = digest_mismatches(&kv, &map);
    }
    let converge = restarted.elapsed();

    // Every acknowledged write is readable: through routing, and from each owner directly.
    let routed = history.check(|k| {
        kv.get(k)
            .map(|i| i.map(|i| i.value))
            .map_err(|e| e.to_string())
    });
    let mut per_owner_lost = Vec::new();
    for rank in 0..map.owners_per_slot() {
        let rep = history.check(|k| {
            let owner = map.chain_for(k2hash::key_hash(k))[rank].clone();
            kv.get_from(&owner, k)
                .map(|i| i.map(|i| i.value))
                .map_err(|e| format!("{owner}: {e}"))
        });
        per_owner_lost.extend(
            rep.lost
                .into_iter()
                .map(|l| format!("owner rank {rank}: {l}")),
        );
    }
    println!(
        "summary replication {fault:?}: ops {}, acked {}, unknown {}, failed {}, keys {}, lost {} (per-owner {}), killed at {:.1}s, epoch {settled_epoch}, digests converged {} after {:.1}s",
        routed.ops,
        routed.acked,
        routed.unknown,
        routed.failed,
        routed.keys,
        routed.lost.len(),
        per_owner_lost.len(),
        killed_at.as_secs_f64(),
        mismatches.is_empty(),
        converge.as_secs_f64()
    );
    assert!(routed.acked > 0, "no write was acknowledged at all");
    assert!(
        routed.lost.is_empty(),
        "{} acknowledged writes lost (routed reads), first: {:#?}",
        routed.lost.len(),
        &routed.lost[..routed.lost.len().min(10)]
    );
    assert!(
        per_owner_lost.is_empty(),
        "{} acknowledged writes missing on some owner, first: {:#?}",
        per_owner_lost.len(),
        &per_owner_lost[..per_owner_lost.len().min(10)]
    );
    if !mismatches.is_empty() {
        // Name a few keys that differ, with each owner's value and version, for the report.
        let mut keys: Vec<Vec<u8>> = history.ops().into_iter().map(|o| o.key).collect();
        keys.sort();
        keys.dedup();
        let mut shown = 0;
        for k in keys {
            let owners = map.chain_for(k2hash::key_hash(&k)).to_vec();
            let seen: Vec<_> = owners
                .iter()
                .map(|o| kv.get_from(o, &k).map(|i| i.map(|i| (i.value, i.version))))
                .collect();
            if seen.windows(2).any(|w| w[0] != w[1]) && shown < 5 {
                shown += 1;
                let ops: Vec<_> = history
                    .ops()
                    .into_iter()
                    .filter(|o| o.key == k)
                    .rev()
                    .take(3)
                    .map(|o| {
                        (
                            o.seq,
                            o.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                            o.outcome,
                            o.at,
                        )
                    })
                    .collect();
                eprintln!(
                    "differs: {} owners {owners:?} hold {seen:?}; last writes {ops:?}",
                    String::from_utf8_lossy(&k)
                );
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "owners still differ {CONVERGE_MAX:?} after the restart in {} slots, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}
