//! Timeouts and the retry rule through real processes: with every dkc-server stopped
//! (SIGSTOP), chmpx still delivers but nobody answers. A non-idempotent `incr` fails with
//! `Timeout` after one attempt (never sent twice); an idempotent `get` is retried
//! `retry_count` times before it reports `Timeout`. After SIGCONT the cluster answers again.
//!
//! Needs the chmpx and dkc-server binaries: `cargo build --release -p chmpx -p dkc-server`.

mod client_support;

use std::time::{Duration, Instant};

use client_support::Cluster;
use dkc_client::client::{ClientError, Expiry, StoreOptions};

#[test]
fn client_timeouts_follow_the_retry_rule() {
    let cluster = Cluster::start();
    let c = cluster.client();
    c.set("t", "v", StoreOptions::new()).unwrap();
    let retries = cluster.options().retry_count;
    assert!(
        retries >= 1,
        "the test needs retries to tell the rule apart"
    );
    let servers: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("dkc-server-{}", n.ctlport))
        .collect();
    for s in &servers {
        cluster.signal(s, libc::SIGSTOP);
    }
    let attempt = Duration::from_millis(300);
    let short = c.with_timeout(attempt);

    let started = Instant::now();
    match short.incr("counter", 1, Some(0), Expiry::Never) {
        Err(ClientError::Timeout { what, after }) => {
            assert_eq!((what, after), ("incr", attempt));
        }
        other => panic!("incr with stopped servers: {other:?}"),
    }
    let incr_took = started.elapsed();
    assert!(
        incr_took < attempt * 2,
        "incr was sent more than once ({incr_took:?})"
    );

    let started = Instant::now();
    match short.get("t") {
        Err(ClientError::Timeout { what: "get", .. }) => {}
        other => panic!("get with stopped servers: {other:?}"),
    }
    let get_took = started.elapsed();
    assert!(
        get_took >= attempt * (retries + 1),
        "get should have been tried {} times ({get_took:?})",
        retries + 1
    );

    for s in &servers {
        cluster.signal(s, libc::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.get("t") {
            Ok(Some(item)) => {
                assert_eq!(item.value, b"v");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "no answer after SIGCONT: {other:?}"
            ),
        }
    }
}
