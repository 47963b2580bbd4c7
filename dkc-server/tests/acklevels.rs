//! Acknowledgement levels through real processes: 3 server nodes (chmpx + dkc-server each) and
//! one slave, REPLICA 2, so every node owns every slot (a primary and two replicas). Each test
//! starts its own cluster with one ACKLEVEL (the level is cluster-wide) and reads each owner
//! directly (`Route::Node`) right after a write is answered, to see who really holds it.
//!
//! A "hung replica" is its dkc-server SIGSTOPped: its chmpx still counts it as live, so the
//! primary's Replicate reaches it and is never answered. A "dead node" is both processes
//! SIGKILLed: after the heartbeat timeout chmpx no longer counts it.
//!
//! Needs the binaries: `cargo build --release --workspace --bins`, then
//! `cargo test --release -p dkc-server --test acklevels`.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chmpx::daemon::status::Live;
use chmpx::placement::NodeId;
use dkc_tests::kv::{AttachKv, Kv, KvError};
use dkc_tests::{Cluster, ClusterSpec};

/// RCVTIMEOUT of the test clusters (the default; the harness does not set it).
const RCV_TIMEOUT: Duration = Duration::from_millis(chmpx::config::defaults::RCVTIMEOUT_MS_DEFAULT);
/// Scheduling slack on a loaded 2-core machine, added to RCVTIMEOUT in upper bounds.
const SLACK: Duration = Duration::from_millis(1500);
/// Keys written per phase.
const KEYS_PER_PHASE: usize = 12;
/// Longest wait for a state change (a node seen DOWN, async replication arriving).
const STATE_WAIT_MAX: Duration = Duration::from_secs(20);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(50);

/// One cluster at a time: seven processes each, on a small shared machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn start(ack: &'static str) -> (MutexGuard<'static, ()>, Cluster) {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let spec = ClusterSpec {
        replica: 2,
        ack_level: ack,
        ..ClusterSpec::new(3)
    };
    let mut cluster = Cluster::start(spec);
    // Start-up merges gate reads of their slots: begin once they are done.
    cluster.wait_settled(STATE_WAIT_MAX);
    (guard, cluster)
}

/// `n` keys named `{prefix}{i}` whose primary (first owner) is server `primary`.
fn keys_with_primary(cluster: &Cluster, primary: usize, prefix: &str, n: usize) -> Vec<String> {
    let map = cluster.placement();
    let want = &cluster.servers[primary].id;
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| map.chain_for(k2hash::key_hash(k.as_bytes())).first() == Some(want))
        .take(n)
        .collect();
    assert_eq!(keys.len(), n, "not enough keys with primary {want}");
    keys
}

/// Which of `nodes` hold `key` at `version` now.
fn holders(kv: &AttachKv, nodes: &[NodeId], key: &str, version: u64) -> Vec<NodeId> {
    nodes
        .iter()
        .filter(|id| match kv.get_from(id, key.as_bytes()) {
            Ok(Some(item)) => item.version == version,
            Ok(None) => false,
            Err(e) => panic!("direct read of {key} from {id}: {e}"),
        })
        .cloned()
        .collect()
}

/// Waits until every server chmpx that runs sees node `victim` not UP.
fn wait_seen_down(cluster: &mut Cluster, victim: usize) {
    let id = cluster.servers[victim].id.to_string();
    let views: Vec<u16> = cluster
        .live_views()
        .into_iter()
        .filter(|p| *p != cluster.servers[victim].ctlport)
        .collect();
    for v in views {
        cluster.wait_until(v, &format!("{id} DOWN"), STATE_WAIT_MAX, |r| {
            r.nodes.iter().any(|n| n.id == id && n.live != Live::Up)
        });
    }
}

fn stop_server(cluster: &Cluster, i: usize) {
    cluster.servers[i]
        .server
        .as_ref()
        .expect("a server node has a dkc-server")
        .stop();
}

fn cont_server(cluster: &Cluster, i: usize) {
    cluster.servers[i]
        .server
        .as_ref()
        .expect("a server node has a dkc-server")
        .cont();
}

fn unknown_text(e: KvError) -> String {
    match e {
        KvError::Unknown(m) => m,
        KvError::Failed(m) => {
            panic!("a write that reached the primary reported as not applied: {m}")
        }
    }
}

#[test]
fn ack_all_answers_after_every_owner_has_it_and_fails_on_a_hung_replica() {
    let (_serial, mut cluster) = start("all");
    let kv = cluster.client();
    let ids = cluster.server_ids();

    // Healthy: each acknowledged write is on all three owners the moment it is answered.
    for i in 0..3 * KEYS_PER_PHASE {
        let key = format!("all:ok:{i}");
        let version = kv
            .set(key.as_bytes(), key.as_bytes(), 0)
            .unwrap_or_else(|e| panic!("set {key}: {e}"));
        let on = holders(&kv, &ids, &key, version);
        assert_eq!(
            on, ids,
            "{key} acknowledged at ack all but held only by {on:?}"
        );
    }

    // A hung replica (dkc-server of node 2 stopped): writes whose primary is elsewhere fail
    // with a timeout after RCVTIMEOUT, saying the write is on the primary.
    let victim = 2;
    stop_server(&cluster, victim);
    for primary in [0, 1] {
        let other = 1 - primary;
        for key in keys_with_primary(&cluster, primary, "all:hung:", KEYS_PER_PHASE / 4) {
            let started = Instant::now();
            let err = kv
                .set(key.as_bytes(), b"v", 0)
                .expect_err("ack all cannot be met with a hung replica");
            let took = started.elapsed();
            let text = unknown_text(err);
            assert!(
                text.contains("Timeout") && text.contains("written on the primary"),
                "{key}: {text}"
            );
            assert!(text.contains("only 1 of the 2"), "{key}: {text}");
            assert!(
                took >= RCV_TIMEOUT.mul_f32(0.9) && took <= RCV_TIMEOUT + SLACK,
                "{key}: answered after {took:?}, RCVTIMEOUT is {RCV_TIMEOUT:?}"
            );
            // The write stays on the primary (and on the replica that acknowledged).
            for id in [&ids[primary], &ids[other]] {
                let item = kv.get_from(id, key.as_bytes()).unwrap();
                assert_eq!(item.map(|i| i.value), Some(b"v".to_vec()), "{key} on {id}");
            }
        }
    }
    cont_server(&cluster, victim);

    // A dead node is no longer an owner to wait for: `all` is every *live* owner.
    cluster.servers[victim].kill9();
    wait_seen_down(&mut cluster, victim);
    let live = &ids[..2];
    for primary in [0, 1] {
        for key in keys_with_primary(&cluster, primary, "all:dead:", KEYS_PER_PHASE / 4) {
            let version = kv
                .set(key.as_bytes(), b"w", 0)
                .unwrap_or_else(|e| panic!("set {key} with a node down: {e}"));
            assert_eq!(holders(&kv, live, &key, version), live, "{key}");
        }
    }
}

#[test]
fn ack_quorum_answers_at_a_majority_and_refuses_without_one() {
    let (_serial, mut cluster) = start("quorum");
    let kv = cluster.client();
    let ids = cluster.server_ids();

    // Healthy: the primary and at least one replica hold each answered write.
    for i in 0..KEYS_PER_PHASE {
        let key = format!("q:ok:{i}");
        let version = kv.set(key.as_bytes(), b"v", 0).unwrap();
        let on = holders(&kv, &ids, &key, version);
        assert!(
            on.len() >= 2,
            "{key} acknowledged at quorum but held only by {on:?}"
        );
    }

    // A hung replica: 2 of 3 owners still answer, so writes succeed without waiting for it.
    let victim = 2;
    stop_server(&cluster, victim);
    for primary in [0, 1] {
        let other = 1 - primary;
        for key in keys_with_primary(&cluster, primary, "q:hung:", KEYS_PER_PHASE / 4) {
            let started = Instant::now();
            let version = kv
                .set(key.as_bytes(), b"v", 0)
                .unwrap_or_else(|e| panic!("set {key} at quorum with one hung replica: {e}"));
            let took = started.elapsed();
            assert!(
                took < RCV_TIMEOUT,
                "{key}: waited {took:?} for the hung replica"
            );
            let pair = [ids[primary].clone(), ids[other].clone()];
            assert_eq!(holders(&kv, &pair, &key, version), pair, "{key}");
        }
    }
    cont_server(&cluster, victim);

    // Two dead nodes: the survivor alone is 1 of 3 owners, no majority. The write is refused
    // at once with a clear reason, and stays on the survivor.
    cluster.servers[1].kill9();
    cluster.servers[2].kill9();
    wait_seen_down(&mut cluster, 1);
    wait_seen_down(&mut cluster, 2);
    for i in 0..KEYS_PER_PHASE / 4 {
        let key = format!("q:alone:{i}");
        let started = Instant::now();
        let err = kv
            .set(key.as_bytes(), b"solo", 0)
            .expect_err("no quorum with 1 of 3 owners");
        let took = started.elapsed();
        let text = unknown_text(err);
        for part in [
            "Unavailable",
            "written on the primary only",
            "needs 2 of the 3",
            "only 1 are live",
        ] {
            assert!(text.contains(part), "{key}: {text}");
        }
        assert!(took < RCV_TIMEOUT, "{key}: refused only after {took:?}");
        let item = kv.get_from(&ids[0], key.as_bytes()).unwrap();
        assert_eq!(item.map(|i| i.value), Some(b"solo".to_vec()), "{key}");
    }
}

#[test]
fn ack_one_answers_before_the_replicas_have_it() {
    let (_serial, cluster) = start("one");
    let kv = cluster.client();
    let ids = cluster.server_ids();

    // Both replicas of keys with primary 0 hung: writes are still answered at once, and only
    // the primary holds them then.
    stop_server(&cluster, 1);
    stop_server(&cluster, 2);
    let keys = keys_with_primary(&cluster, 0, "one:", KEYS_PER_PHASE);
    let mut versions = Vec::new();
    for key in &keys {
        let started = Instant::now();
        let version = kv
            .set(key.as_bytes(), b"v", 0)
            .unwrap_or_else(|e| panic!("set {key} at ack one: {e}"));
        let took = started.elapsed();
        assert!(took < RCV_TIMEOUT / 2, "{key}: ack one waited {took:?}");
        assert_eq!(holders(&kv, &ids[..1], key, version), &ids[..1], "{key}");
        versions.push(version);
    }
    // Once they run again, the replication sent asynchronously reaches them.
    cont_server(&cluster, 1);
    cont_server(&cluster, 2);
    let deadline = Instant::now() + STATE_WAIT_MAX;
    for (key, version) in keys.iter().zip(versions) {
        loop {
            let on = holders(&kv, &ids, key, version);
            if on == ids {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key}: async replication never reached every owner (held by {on:?})"
            );
            std::thread::sleep(POLL);
        }
    }
}
