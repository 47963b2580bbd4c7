//! chmpx across simulated hosts (needs root and namespaces; fails, never skips, without
//! them): 3 server hosts (chmpx + chmpx-echo) and 1 client host (slave chmpx) built from one
//! generated config. Routing follows `chmpx::placement`; a host cut off by iptables, by link
//! down, by SIGSTOP or by kill -9 of its chmpx is seen DOWN by every other host within the
//! heartbeat timeout, its keys fail over to their next owner, and after the fault heals it is
//! UP again, keeps its slots (membership unchanged), and serves its keys again.
//!
//! The victim host and the probed keys come from a printed seed (`DKC_NETNS_SEED` replays).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chmpx::daemon::status::{Live, StatusReport};
use chmpx::placement::{NodeId, PlacementMap};
use dkc_tools::netns::chmpx_lab::{
    expected_owner, placement, sees, settled, summary, ChmpxLab, LAB_HEARTBEAT_INTERVAL_MS,
    LAB_HEARTBEAT_TIMEOUT_MS,
};
use dkc_tools::netns::{Lab, LabSpec, Seed};

const SERVERS: usize = 3;
const HOSTS: usize = 4;
/// The client host (slave chmpx only).
const CLIENT: usize = 3;
/// Keys probed per check; enough that every server is some key's primary.
const PROBE_KEYS: usize = 48;
/// Longest wait for the cluster to come up.
const START_WAIT_MS: u64 = 20_000;
/// Detection may take the heartbeat timeout plus one heartbeat period plus the time to run
/// the status tool in each host (a few hundred ms on a loaded 2-core machine).
const DOWN_DETECT_LIMIT_MS: u64 = LAB_HEARTBEAT_TIMEOUT_MS + LAB_HEARTBEAT_INTERVAL_MS + 2500;
/// Longest wait for every host to finish merging before a routing check.
const SETTLE_WAIT_MS: u64 = 15_000;
/// Longest time routing may take to match the placement after the cluster looks settled.
const ROUTE_CONVERGE_MS: u64 = 5000;
/// Pause between two probes of one routing check.
const ROUTE_RETRY_INTERVAL_MS: u64 = 200;
/// Longest wait for a healed host to be UP (with its echo attached) everywhere.
const RECOVER_WAIT_MS: u64 = 15_000;

struct Scenario {
    c: ChmpxLab,
    map: PlacementMap,
    keys: Vec<String>,
    seed: Seed,
}

fn fail(c: &ChmpxLab, msg: String) -> ! {
    panic!("{msg}\n{}", c.logs());
}

fn start(name: &str) -> Scenario {
    let mut seed = Seed::from_env_or_clock(name);
    let lab = Lab::new(LabSpec::new(HOSTS)).unwrap_or_else(|e| panic!("{e}"));
    let c = ChmpxLab::start(lab, SERVERS).unwrap_or_else(|e| panic!("{e}"));
    let map = c
        .wait_started(START_WAIT_MS)
        .unwrap_or_else(|e| fail(&c, e));
    assert_eq!(map.members().len(), SERVERS, "members: {:?}", map.members());
    let tag = seed.next_u64();
    let keys: Vec<String> = (0..PROBE_KEYS).map(|i| format!("k{tag:x}-{i}")).collect();
    let primaries: BTreeSet<NodeId> = keys
        .iter()
        .filter_map(|k| expected_owner(&map, k, &[]))
        .collect();
    assert_eq!(
        primaries.len(),
        SERVERS,
        "keys do not cover every server: {primaries:?}"
    );
    let s = Scenario { c, map, keys, seed };
    s.check_routing(CLIENT, &[], "before any fault");
    s
}

impl Scenario {
    /// Waits until every host but those of `down` sees no merge pending or running.
    fn wait_settled(&self, down: &[NodeId], when: &str) {
        let start = Instant::now();
        for h in 0..HOSTS {
            if h < SERVERS && down.contains(&self.c.servers[h].id) {
                continue;
            }
            let left = SETTLE_WAIT_MS.saturating_sub(start.elapsed().as_millis() as u64);
            if let Err(e) = self.c.wait_status(h, left, "settled", settled) {
                fail(&self.c, format!("{when}: {e}"));
            }
        }
    }

    /// Every probed key, sent from `from`, is answered by its first owner not in `down` —
    /// within [`ROUTE_CONVERGE_MS`]: a merge that starts after the settle check (recovery
    /// merges are not announced in the status before they start) moves reads for a moment.
    fn check_routing(&self, from: usize, down: &[NodeId], when: &str) {
        self.wait_settled(down, when);
        let start = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let got = self
                .c
                .probe(from, &self.keys)
                .unwrap_or_else(|e| fail(&self.c, format!("{when}: {e}")));
            assert_eq!(got.len(), self.keys.len(), "{when}: answers {got:?}");
            let mut wrong = Vec::new();
            for a in &got {
                let want = expected_owner(&self.map, &a.key, down).map(|n| n.as_str().to_string());
                if a.served_by.as_ref().ok() != want.as_ref() {
                    wrong.push(format!("{}: got {:?}, want {want:?}", a.key, a.served_by));
                }
            }
            if wrong.is_empty() {
                if attempts > 1 {
                    eprintln!(
                        "{when}: routing from h{from} right after {attempts} probes, {} ms",
                        start.elapsed().as_millis()
                    );
                }
                return;
            }
            if start.elapsed() >= Duration::from_millis(ROUTE_CONVERGE_MS) {
                fail(
                    &self.c,
                    format!(
                        "{when}, probing from h{from} ({attempts} probes in {} ms): {} wrong:\n{}",
                        start.elapsed().as_millis(),
                        wrong.len(),
                        wrong.join("\n")
                    ),
                );
            }
            std::thread::sleep(Duration::from_millis(ROUTE_RETRY_INTERVAL_MS));
        }
    }

    /// A server picked by the seed.
    fn pick_victim(&mut self) -> usize {
        let v = self.seed.below(SERVERS as u64) as usize;
        eprintln!("victim: h{v} ({})", self.c.servers[v].id);
        v
    }

    /// Waits until every host but `victim` sees it `live`; returns the slowest time.
    fn wait_seen(&self, victim: usize, live: Live, limit_ms: u64, attached: bool) -> Duration {
        let id = self.c.servers[victim].id.clone();
        let mut slowest = Duration::ZERO;
        let start = Instant::now();
        for h in (0..HOSTS).filter(|h| *h != victim) {
            let what = format!("{id} {}", live.word());
            let pred = |r: &StatusReport| {
                sees(r, &id, live)
                    && (!attached
                        || r.nodes
                            .iter()
                            .any(|n| n.id == id.as_str() && n.server_attached))
            };
            let left = limit_ms.saturating_sub(start.elapsed().as_millis() as u64);
            match self.c.wait_status(h, left, &what, pred) {
                Ok((r, _)) => {
                    slowest = start.elapsed();
                    eprintln!("h{h} after {} ms: {}", slowest.as_millis(), summary(&r));
                }
                Err(e) => fail(&self.c, e),
            }
        }
        slowest
    }

    /// The membership did not change: a DOWN node keeps its slots.
    fn check_membership_unchanged(&self) {
        let r = self
            .c
            .status(CLIENT, self.c.ctlport_of(CLIENT))
            .unwrap_or_else(|e| fail(&self.c, e.to_string()));
        let now = placement(&r).unwrap_or_else(|e| fail(&self.c, e));
        assert_eq!(
            now.members(),
            self.map.members(),
            "members changed: {}",
            summary(&r)
        );
    }

    fn victim_primaries(&self, victim: usize) -> usize {
        let id = &self.c.servers[victim].id;
        self.keys
            .iter()
            .filter(|k| expected_owner(&self.map, k, &[]).as_ref() == Some(id))
            .count()
    }

    /// Injects `fault` on a seeded victim, checks DOWN + failover, heals, checks recovery.
    fn fault_and_heal(
        &mut self,
        name: &str,
        fault: impl Fn(&mut ChmpxLab, usize),
        heal: impl Fn(&mut ChmpxLab, usize),
    ) {
        let v = self.pick_victim();
        let id = self.c.servers[v].id.clone();
        assert!(
            self.victim_primaries(v) > 0,
            "no probed key has h{v} as primary"
        );
        let t0 = Instant::now();
        fault(&mut self.c, v);
        let seen = self.wait_seen(v, Live::Down, DOWN_DETECT_LIMIT_MS, false);
        eprintln!(
            "{name}: h{v} DOWN everywhere {} ms after the fault (heartbeat timeout {LAB_HEARTBEAT_TIMEOUT_MS} ms)",
            seen.max(t0.elapsed()).as_millis()
        );
        self.check_routing(
            CLIENT,
            std::slice::from_ref(&id),
            &format!("{name}: h{v} down"),
        );
        let other = (v + 1) % SERVERS;
        self.check_routing(
            other,
            std::slice::from_ref(&id),
            &format!("{name}: h{v} down, from a server"),
        );
        heal(&mut self.c, v);
        let back = self.wait_seen(v, Live::Up, RECOVER_WAIT_MS, true);
        eprintln!(
            "{name}: h{v} UP again everywhere {} ms after heal",
            back.as_millis()
        );
        self.check_membership_unchanged();
        self.check_routing(CLIENT, &[], &format!("{name}: after heal"));
    }
}

#[test]
fn netns_chmpx_routes_across_hosts_by_placement() {
    let s = start("netns_chmpx_routes_across_hosts_by_placement");
    // Also from every server host: a server's chmpx forwards to the other hosts.
    for h in 0..SERVERS {
        s.check_routing(h, &[], &format!("from server h{h}"));
    }
}

#[test]
fn netns_chmpx_isolated_host_goes_down_fails_over_and_recovers() {
    let mut s = start("netns_chmpx_isolated_host");
    s.fault_and_heal(
        "isolate",
        |c, v| c.lab.isolate(c.servers[v].host).unwrap(),
        |c, _| c.lab.heal().unwrap(),
    );
}

#[test]
fn netns_chmpx_link_down_host_goes_down_fails_over_and_recovers() {
    let mut s = start("netns_chmpx_link_down");
    s.fault_and_heal(
        "link down",
        |c, v| c.lab.link_down(c.servers[v].host).unwrap(),
        |c, v| c.lab.link_up(c.servers[v].host).unwrap(),
    );
}

#[test]
fn netns_chmpx_kill9_and_restart_of_chmpx_on_a_host() {
    let mut s = start("netns_chmpx_kill9");
    s.fault_and_heal(
        "kill -9 chmpx",
        |c, v| c.kill_chmpx(v),
        |c, v| c.restart_chmpx(v).unwrap(),
    );
}

#[test]
fn netns_chmpx_sigstop_host_goes_down_and_sigcont_recovers() {
    let mut s = start("netns_chmpx_sigstop");
    s.fault_and_heal(
        "SIGSTOP chmpx",
        |c, v| c.servers[v].chmpx.as_mut().expect("running").stop(),
        |c, v| c.servers[v].chmpx.as_mut().expect("running").cont(),
    );
}
