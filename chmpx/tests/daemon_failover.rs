//! Failure detection and failover with real processes: SIGKILL a server node's chmpx, see it
//! DOWN within the heartbeat timeout, traffic fail over to the next owner, then restart it.
//! Also: a client survives a restart of its own chmpx, and a request with no live owner gets
//! an immediate error.

mod daemon_support;

use std::time::{Duration, Instant};

use chmpx::daemon::status::{Live, MergeState};
use chmpx::placement::key_hash;
use daemon_support::*;

/// Keys whose primary (epoch 0) is node `i`.
fn keys_with_primary(c: &Cluster, i: usize, n: usize) -> Vec<(String, u64)> {
    let map = c.map(0, &c.server_ids());
    let id = c.servers[i].id();
    (0..10_000u32)
        .map(|k| format!("k{k}"))
        .map(|k| {
            let h = key_hash(k.as_bytes());
            (k, h)
        })
        .filter(|(_, h)| map.chain_for(*h)[0] == id)
        .take(n)
        .collect()
}

#[test]
fn daemon_kill_marks_down_fails_over_and_restart_brings_up() {
    let mut c = Cluster::start(3, true);
    let map = c.map(0, &c.server_ids());
    let client = c.client(c.slave_ctlport);
    let keys = keys_with_primary(&c, 0, 20);
    for (k, h) in &keys {
        assert_eq!(
            ask(&client, *h, k.as_bytes()).unwrap().0,
            c.servers[0].id().to_string()
        );
    }

    let killed = Instant::now();
    c.kill_chmpx(0);
    let dead = c.servers[0].id().to_string();
    for watcher in [c.servers[1].ctlport, c.slave_ctlport] {
        c.wait_until(watcher, "node 0 DOWN", |r| {
            r.nodes.iter().any(|n| n.id == dead && n.live == Live::Down)
        });
    }
    let detect = killed.elapsed();
    // Detection within the heartbeat timeout plus one interval, with slack for a loaded machine.
    let bound = Duration::from_millis(HEARTBEAT_TIMEOUT_MS + HEARTBEAT_INTERVAL_MS + 1500);
    assert!(
        detect <= bound,
        "DOWN seen after {detect:?}, more than {bound:?}"
    );

    // Every key of node 0 is now served by the next owner in its chain.
    for (k, h) in &keys {
        let next = map.chain_for(*h)[1].to_string();
        let (got, _) =
            ask(&client, *h, k.as_bytes()).unwrap_or_else(|e| panic!("{k}: {e}\n{}", c.logs()));
        assert_eq!(got, next, "{k} fails over to the second owner");
    }

    // Restart: node 0 comes back UP, its echo process re-attaches by itself, and after its
    // recovery merge it serves its keys again.
    c.start_chmpx(0);
    c.wait_until(c.slave_ctlport, "node 0 UP, attached and merged", |r| {
        r.nodes.iter().any(|n| {
            n.id == dead && n.live == Live::Up && n.server_attached && n.merge != MergeState::Doing
        })
    });
    let deadline = Instant::now() + WAIT_MAX;
    for (k, h) in &keys {
        loop {
            let got = ask(&client, *h, k.as_bytes()).map(|r| r.0);
            if got.as_deref() == Ok(dead.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{k} not served by node 0 again: {got:?}\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // No live owner: kill both owners of some key; the answer is an immediate error.
    let (k, h) = &keys[0];
    let second = map.chain_for(*h)[1].clone();
    let j = c.servers.iter().position(|s| s.id() == second).unwrap();
    c.kill_chmpx(0);
    c.kill_chmpx(j);
    let gone = [dead.clone(), second.to_string()];
    c.wait_until(c.slave_ctlport, "both owners DOWN", |r| {
        r.nodes
            .iter()
            .filter(|n| gone.contains(&n.id))
            .all(|n| n.live == Live::Down)
    });
    let asked = Instant::now();
    let err = ask(&client, *h, k.as_bytes()).expect_err("no owner is live");
    assert!(err.contains("no live owner"), "{err}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "the error is immediate, not a timeout"
    );
}

#[test]
fn daemon_client_survives_chmpx_restart() {
    let mut c = Cluster::start(3, true);
    let map = c.map(0, &c.server_ids());
    let client = c.client(c.slave_ctlport);
    let h = key_hash(b"survivor");
    assert_eq!(
        ask(&client, h, b"1").unwrap().0,
        map.chain_for(h)[0].to_string()
    );
    c.kill_slave();
    c.start_slave();
    c.wait_until(c.slave_ctlport, "slave sees every server", |r| {
        r.nodes
            .iter()
            .filter(|n| n.port.is_some())
            .all(|n| n.live == Live::Up && n.server_attached)
    });
    // The same client object keeps working: it re-attaches by itself.
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        match ask(&client, h, b"2") {
            Ok((node, body)) => {
                assert_eq!(node, map.chain_for(h)[0].to_string());
                assert_eq!(body, b"2");
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "client did not recover: {e}\n{}",
                c.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(client.reattach_count() >= 1, "the client re-attached");
}
