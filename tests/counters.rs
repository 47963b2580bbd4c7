//! A counter incremented by 8 concurrent clients through a compare-and-swap loop ends with the
//! exact total: CAS executes atomically at the primary (DESIGN.md §5), so no increment is lost
//! and none is applied twice. 3 server nodes + 1 slave, REPLICA 1, ack `all`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dkc_tests::kv::CasOutcome;
use dkc_tests::{Cluster, ClusterSpec, Kv};

/// Concurrent clients.
const CLIENTS: usize = 8;
/// Successful increments each client makes.
const INCREMENTS_PER_CLIENT: u64 = 40;
/// Bound on one client's attempts (CAS conflicts included), so a livelock fails the test.
const ATTEMPTS_PER_CLIENT_MAX: u64 = 20_000;
/// Bound on the whole run.
const RUN_MAX: Duration = Duration::from_secs(60);

#[test]
fn cas_counter_with_8_clients_ends_exact() {
    let c = Cluster::start(ClusterSpec::new(3));
    let key = b"counter:cas".to_vec();
    let setup = c.client();
    setup.set(&key, b"0", 0).expect("initial set");
    let started = Instant::now();
    let conflicts = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let kv = c.kv();
            let key = key.clone();
            let conflicts = conflicts.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut done = 0;
                let mut attempts = 0;
                while done < INCREMENTS_PER_CLIENT {
                    attempts += 1;
                    if attempts > ATTEMPTS_PER_CLIENT_MAX || started.elapsed() > RUN_MAX {
                        return Err(format!(
                            "client {i}: {done} increments after {attempts} attempts"
                        ));
                    }
                    let item = kv
                        .get(&key)
                        .map_err(|e| format!("client {i}: get: {e}"))?
                        .ok_or(format!("client {i}: the counter is gone"))?;
                    let n: u64 = std::str::from_utf8(&item.value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or(format!("client {i}: not a number: {:?}", item.value))?;
                    match kv.cas(&key, (n + 1).to_string().as_bytes(), item.version) {
                        Ok(CasOutcome::Stored(_)) => done += 1,
                        Ok(CasOutcome::Exists) => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(CasOutcome::NotFound) => {
                            return Err(format!("client {i}: cas found no item"))
                        }
                        // An unknown outcome makes the exact total unknowable: report it.
                        Err(e) => return Err(format!("client {i}: cas: {e}")),
                    }
                }
                Ok(attempts)
            })
        })
        .collect();
    let mut attempts = 0;
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(a)) => attempts += a,
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a client thread panicked".into()),
        }
    }
    let elapsed = started.elapsed();
    let want = CLIENTS as u64 * INCREMENTS_PER_CLIENT;
    let got = setup.get(&key).expect("final get").map(|i| i.value);
    // Every owner holds the same final value.
    let map = c.placement();
    let owners = map.chain_for(k2hash::key_hash(&key)).to_vec();
    let per_owner: Vec<_> = owners
        .iter()
        .map(|o| {
            (
                o.to_string(),
                setup.get_from(o, &key).map(|i| i.map(|i| i.value)),
            )
        })
        .collect();
    println!(
        "summary counters: clients {CLIENTS}, increments {want}, cas attempts {attempts}, conflicts {}, errors {}, final {:?}, time {:.1}s",
        conflicts.load(Ordering::Relaxed),
        errors.len(),
        got.as_deref().map(String::from_utf8_lossy),
        elapsed.as_secs_f64()
    );
    assert!(errors.is_empty(), "client errors: {errors:#?}");
    assert_eq!(
        got,
        Some(want.to_string().into_bytes()),
        "final counter value"
    );
    for (o, v) in per_owner {
        assert_eq!(
            v,
            Ok(Some(want.to_string().into_bytes())),
            "owner {o} holds the final value"
        );
    }
}
