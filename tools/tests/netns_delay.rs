//! chmpx through the delay proxy (needs root and namespaces): the links into one server host
//! are redirected (iptables DNAT in each dialing host) through a `dkc-hosts delay-proxy` in
//! that dialing host. A delay well below the heartbeat timeout must not make the node DOWN, routing
//! stays by placement, and requests it serves take at least one round trip of added delay.
//!
//! chmpx's own ENDPOINTS key would be the natural way to point peers at a proxy, but the link
//! layer does not use it yet (only the config parser reads it), hence DNAT.

use std::time::{Duration, Instant};

use chmpx::daemon::status::{Live, StatusReport};
use chmpx::placement::NodeId;
use dkc_tools::netns::chmpx_lab::{
    all_servers_up, expected_owner, placement, sees, settled, ChmpxLab, LAB_HEARTBEAT_TIMEOUT_MS,
    LAB_PORT,
};
use dkc_tools::netns::delay_proxy::{delay_links_into, Delay};
use dkc_tools::netns::{Lab, LabSpec};

const HOSTS: usize = 4;
const SERVERS: usize = 3;
const CLIENT: usize = 3;
/// The victim: the highest id, so every other node dials it (the lower id dials).
const VICTIM: usize = 2;
const DELAY_MS: u64 = 150;
const WAIT_MS: u64 = 20_000;
/// How long the victim must stay UP everywhere while delayed.
const STAY_UP_MS: u64 = 3 * LAB_HEARTBEAT_TIMEOUT_MS;

const _: () = assert!(2 * DELAY_MS < LAB_HEARTBEAT_TIMEOUT_MS);

fn fail(c: &ChmpxLab, msg: String) -> ! {
    panic!("{msg}\n{}", c.logs());
}

#[test]
fn netns_delay_below_heartbeat_timeout_keeps_node_up_and_routing() {
    let lab = Lab::new(LabSpec::new(HOSTS)).unwrap_or_else(|e| panic!("{e}"));
    // In every host that dials the victim (the lower ids and the slave): a proxy and a DNAT
    // rule sending the host's own connections to the victim's data port through it. The victim
    // still sees each peer's own address, which chmpx checks.
    let delay = Delay {
        fixed_ms: DELAY_MS,
        jitter_ms: 0,
    };
    let _proxies =
        delay_links_into(&lab, VICTIM, LAB_PORT, delay, 0).unwrap_or_else(|e| panic!("{e}"));
    let c = ChmpxLab::start(lab, SERVERS).unwrap_or_else(|e| panic!("{e}"));
    let vid: NodeId = c.servers[VICTIM].id.clone();
    let mut report = None;
    for h in 0..HOSTS {
        let ready = |r: &StatusReport| all_servers_up(r) && settled(r);
        match c.wait_status(h, WAIT_MS, "all servers UP, settled", ready) {
            Ok((r, _)) => report = Some(r),
            Err(e) => fail(&c, e),
        }
    }
    let map = placement(&report.expect("hosts")).unwrap_or_else(|e| fail(&c, e));
    // Stays UP everywhere for several heartbeat timeouts.
    let until = Instant::now() + Duration::from_millis(STAY_UP_MS);
    while Instant::now() < until {
        for h in (0..HOSTS).filter(|h| *h != VICTIM) {
            match c.status(h, c.ctlport_of(h)) {
                Ok(r) if sees(&r, &vid, Live::Up) => {}
                Ok(r) => fail(
                    &c,
                    format!(
                        "h{h} sees {vid} not UP under {DELAY_MS} ms delay: {}",
                        dkc_tools::netns::chmpx_lab::summary(&r)
                    ),
                ),
                Err(e) => fail(&c, e.to_string()),
            }
        }
    }
    // Keys the victim serves: answered by it, each after at least one delayed round trip.
    let keys: Vec<String> = (0..200)
        .map(|i| format!("delay-{i}"))
        .filter(|k| expected_owner(&map, k, &[]).as_ref() == Some(&vid))
        .take(4)
        .collect();
    assert!(!keys.is_empty());
    let t = Instant::now();
    let got = c
        .probe(CLIENT, &keys)
        .unwrap_or_else(|e| fail(&c, e.to_string()));
    let took = t.elapsed();
    for a in &got {
        assert_eq!(a.served_by.as_deref(), Ok(vid.as_str()), "{a:?}");
    }
    let floor = Duration::from_millis(2 * DELAY_MS * keys.len() as u64);
    assert!(
        took >= floor,
        "{} requests through a {DELAY_MS} ms proxy took {took:?} < {floor:?}",
        keys.len()
    );
    eprintln!(
        "{} requests to the delayed node took {} ms",
        keys.len(),
        took.as_millis()
    );
}
