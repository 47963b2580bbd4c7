//! The test-only switch `DKC_TEST_DISABLE_REPLICATION=1` through real processes: a REPLICA 2,
//! ack `all` cluster whose dkc-servers start with it answers writes as stored while only the
//! primary holds them, and each dkc-server says so loudly in its log.
//!
//! Alone in its test binary: the variable is set in this process's environment, which the
//! daemons inherit, and no other test may start daemons meanwhile.
//!
//! Needs the binaries: `cargo build --release --workspace --bins`, then
//! `cargo test --release -p dkc-server --test replication_switch`.

use std::time::Duration;

use dkc_server::server::settings::DISABLE_REPLICATION_ENV;
use dkc_tests::kv::Kv;
use dkc_tests::{Cluster, ClusterSpec};

/// Keys written.
const KEYS: usize = 20;

#[test]
fn replication_switch_acknowledges_writes_that_only_the_primary_holds() {
    std::env::set_var(DISABLE_REPLICATION_ENV, "1");
    let spec = ClusterSpec {
        replica: 2,
        ack_level: "all",
        ..ClusterSpec::new(3)
    };
    let mut cluster = Cluster::start(spec);
    std::env::remove_var(DISABLE_REPLICATION_ENV);
    cluster.wait_settled(Duration::from_secs(20));
    let kv = cluster.client();
    let ids = cluster.server_ids();
    let map = cluster.placement();
    for i in 0..KEYS {
        let key = format!("norepl:{i}");
        let version = kv
            .set(key.as_bytes(), b"v", 0)
            .unwrap_or_else(|e| panic!("set {key}: {e}"));
        let primary = &map.chain_for(k2hash::key_hash(key.as_bytes()))[0];
        for id in &ids {
            let held = kv
                .get_from(id, key.as_bytes())
                .unwrap_or_else(|e| panic!("direct read of {key} from {id}: {e}"))
                .map(|item| item.version);
            let want = (id == primary).then_some(version);
            assert_eq!(held, want, "{key} on {id} (primary {primary})");
        }
    }
    for s in &cluster.servers {
        let server = s.server.as_ref().expect("server node");
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        assert!(
            log.contains("REPLICATION IS OFF") && log.contains("WARN"),
            "{} does not warn that replication is off:\n{log}",
            server.name
        );
    }
}
