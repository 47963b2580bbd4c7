//! Membership changes move little data and keep every item on REPLICA+1 owners (DESIGN.md §4,
//! §6): adding a 4th node (SERVICEIN) to 3 moves about (REPLICA+1)/N of the items, and taking
//! one out (SERVICEOUT) leaves every item with REPLICA+1 copies again. 4 configured server
//! nodes (the 4th SERVICE OUT at first) + 1 slave, REPLICA 1, ack `all`.
//!
//! Also: tombstones are purged once every owner holds them and they are older than the purge
//! age (shortened here through `DKC_PURGE_TOMBSTONE_AGE_MS`), and deleted keys stay deleted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chmpx::daemon::status::Live;
use chmpx::placement::{NodeId, PlacementMap};
use dkc_tests::direct::digest_mismatches;
use dkc_tests::{AttachKv, Cluster, ClusterSpec, Kv};

/// Items written before the changes.
const ITEMS: usize = 3000;
/// Allowed distance between the measured and the ideal moved fraction ((REPLICA+1)/N). With
/// 256 slots balanced within one slot per node and 3000 keys, the sampling spread is about
/// 0.01; 0.08 leaves room for slot-level imbalance without accepting a mod-N placement (which
/// would move about 0.75).
const MOVED_FRACTION_TOLERANCE: f64 = 0.08;
/// Bound on a change settling and the owners' digests agreeing.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// Bound on the old owners handing off and dropping the slots they lost, after settling
/// (the hand-off waits `HANDOFF_DELAY_MS` after the map changes, then runs every
/// `HANDOFF_PASS_INTERVAL_MS`).
const HANDOFF_MAX: Duration = Duration::from_secs(20);
/// Tombstone purge age the daemons of these tests run with (the default is minutes).
const TEST_PURGE_AGE_MS: u64 = 5_000;
/// Bound on every tombstone being purged once old enough.
const PURGE_MAX: Duration = Duration::from_secs(25);

/// Shortens the tombstone purge age of the daemons this test starts (they inherit the
/// environment). Every test of this file sets the same value, so the order does not matter.
fn short_purge_age() {
    std::env::set_var(
        chmpx::daemon::merge_engine::PURGE_TOMBSTONE_AGE_ENV,
        TEST_PURGE_AGE_MS.to_string(),
    );
}

fn key(i: usize) -> Vec<u8> {
    format!("m{i:05}").into_bytes()
}

fn items_per_node(kv: &AttachKv, nodes: &[NodeId]) -> BTreeMap<NodeId, u64> {
    kv.stat_per_node(nodes, "curr_items")
}

/// Keys each node owns in `map`.
fn owned_per_node(map: &PlacementMap) -> BTreeMap<NodeId, u64> {
    let mut out: BTreeMap<NodeId, u64> = map.members().iter().map(|m| (m.clone(), 0)).collect();
    for i in 0..ITEMS {
        for o in map.chain_for(k2hash::key_hash(&key(i))) {
            *out.entry(o.clone()).or_default() += 1;
        }
    }
    out
}

/// Lines for every key that some owner in `map` does not hold with its written value.
fn missing_copies(kv: &AttachKv, map: &PlacementMap) -> Vec<String> {
    let mut bad = Vec::new();
    for i in 0..ITEMS {
        let k = key(i);
        let owners = map.chain_for(k2hash::key_hash(&k));
        if owners.len() != map.owners_per_slot() {
            bad.push(format!("{}: {} owners", i, owners.len()));
        }
        for o in owners {
            match kv.get_from(o, &k) {
                Ok(Some(item)) if item.value == k => {}
                other => bad.push(format!(
                    "{} on {o}: {:?}",
                    String::from_utf8_lossy(&k),
                    other.map(|i| i.map(|i| String::from_utf8_lossy(&i.value).into_owned()))
                )),
            }
        }
    }
    bad
}

/// Waits until the owners' digests agree under the current map; returns the map and the time.
fn converge(c: &mut Cluster, kv: &AttachKv, since: Instant) -> (PlacementMap, Vec<String>) {
    c.wait_settled(SETTLE_MAX);
    let map = c.placement();
    let mut bad = digest_mismatches(kv, &map);
    while !bad.is_empty() && since.elapsed() < SETTLE_MAX {
        std::thread::sleep(Duration::from_millis(200));
        bad = digest_mismatches(kv, &map);
    }
    (map, bad)
}

/// Polls until every node holds exactly the items it owns in `map` (the old owners' hand-off
/// is asynchronous), or `HANDOFF_MAX` passes; returns the last counts.
fn wait_handoff(kv: &AttachKv, all: &[NodeId], map: &PlacementMap) -> BTreeMap<NodeId, u64> {
    let owned = owned_per_node(map);
    let deadline = Instant::now() + HANDOFF_MAX;
    loop {
        let held = items_per_node(kv, all);
        let exact = all
            .iter()
            .all(|n| held.get(n).copied().unwrap_or(0) == owned.get(n).copied().unwrap_or(0));
        if exact || Instant::now() >= deadline {
            return held;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Merge totals summed over every node, as the first slave sees them (status gossip).
fn merge_totals(c: &Cluster) -> chmpx::daemon::status::MergeTotals {
    let mut sum = chmpx::daemon::status::MergeTotals::default();
    if let Some(r) = c.status() {
        for p in r.nodes.iter().filter_map(|n| n.progress) {
            sum.items_moved += p.totals.items_moved;
            sum.bytes_moved += p.totals.bytes_moved;
            sum.items_dropped += p.totals.items_dropped;
            sum.bytes_dropped += p.totals.bytes_dropped;
            sum.tombstones_purged += p.totals.tombstones_purged;
        }
    }
    sum
}

#[test]
fn servicein_moves_about_r_plus_1_over_n_and_serviceout_restores_copies() {
    short_purge_age();
    let mut c = Cluster::start(ClusterSpec::new(4));
    let kv = c.client();
    let all = c.server_ids();
    let newcomer = all[3].clone();
    let mut problems = Vec::new();

    // Start from three members: the 4th is taken out before any data exists.
    c.service_out(&newcomer)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    c.wait_settled(SETTLE_MAX);
    let map3 = c.placement();
    assert_eq!(map3.members().len(), 3, "three members after SERVICEOUT");

    for i in 0..ITEMS {
        let k = key(i);
        kv.set(&k, &k, 0)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    let before = items_per_node(&kv, &all);
    let copies_before: u64 = before.values().sum();
    assert_eq!(
        copies_before,
        (ITEMS * map3.owners_per_slot()) as u64,
        "REPLICA+1 copies of every item before the change: {before:?}"
    );

    // Add the 4th node.
    let t_in = Instant::now();
    c.service_in(&newcomer)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let (map4, bad) = converge(&mut c, &kv, t_in);
    let in_secs = t_in.elapsed().as_secs_f64();
    if map4.members().len() != 4 {
        problems.push(format!("after SERVICEIN: members {:?}", map4.members()));
    }
    if !bad.is_empty() {
        problems.push(format!(
            "after SERVICEIN, digests differ: {:?}",
            &bad[..bad.len().min(5)]
        ));
    }
    let after = wait_handoff(&kv, &all, &map4);
    let ideal = (map4.owners_per_slot() as f64) / (map4.members().len() as f64);
    let gained = after.get(&newcomer).copied().unwrap_or(0);
    let moved_fraction = gained as f64 / ITEMS as f64;
    if (moved_fraction - ideal).abs() > MOVED_FRACTION_TOLERANCE {
        problems.push(format!(
            "SERVICEIN moved {moved_fraction:.3} of the items to the new node; ideal (REPLICA+1)/N = {ideal:.3} ± {MOVED_FRACTION_TOLERANCE}"
        ));
    }
    // Each node holds exactly what it owns in the new map: the newcomer got its share, and
    // the old owners of moved slots gave theirs up.
    let owned4 = owned_per_node(&map4);
    for n in &all {
        let want = owned4.get(n).copied().unwrap_or(0);
        let got = after.get(n).copied().unwrap_or(0);
        if got != want {
            problems.push(format!(
                "after SERVICEIN, {n} holds {got} items but owns {want} in epoch {}",
                map4.epoch()
            ));
        }
    }
    problems.extend(
        missing_copies(&kv, &map4)
            .into_iter()
            .take(10)
            .map(|l| format!("after SERVICEIN: {l}")),
    );

    // Take an original node out: every item must have REPLICA+1 copies again, on the rest.
    let leaver = all[0].clone();
    let t_out = Instant::now();
    c.service_out(&leaver)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let (map_out, bad) = converge(&mut c, &kv, t_out);
    let out_secs = t_out.elapsed().as_secs_f64();
    if map_out.members().contains(&leaver) || map_out.members().len() != 3 {
        problems.push(format!("after SERVICEOUT: members {:?}", map_out.members()));
    }
    if !bad.is_empty() {
        problems.push(format!(
            "after SERVICEOUT, digests differ: {:?}",
            &bad[..bad.len().min(5)]
        ));
    }
    let missing = missing_copies(&kv, &map_out);
    let routed_missing = (0..ITEMS)
        .filter(|i| !matches!(kv.get(&key(*i)), Ok(Some(item)) if item.value == key(*i)))
        .count();
    if routed_missing > 0 {
        problems.push(format!(
            "after SERVICEOUT, {routed_missing} items unreadable"
        ));
    }
    problems.extend(
        missing
            .iter()
            .take(10)
            .map(|l| format!("after SERVICEOUT: {l}")),
    );
    let final_items = wait_handoff(&kv, &all, &map_out);
    // The leaver handed everything off and holds nothing; the others exactly their share.
    let owned_out = owned_per_node(&map_out);
    for n in &all {
        let want = owned_out.get(n).copied().unwrap_or(0);
        let got = final_items.get(n).copied().unwrap_or(0);
        if got != want {
            problems.push(format!(
                "after SERVICEOUT, {n} holds {got} items but owns {want} in epoch {}",
                map_out.epoch()
            ));
        }
    }
    let copies_after: u64 = final_items.values().sum();
    if copies_after != (ITEMS * map_out.owners_per_slot()) as u64 {
        problems.push(format!(
            "after SERVICEOUT, {copies_after} copies in all; want REPLICA+1 per item"
        ));
    }
    let totals = merge_totals(&c);
    if totals.items_moved == 0 || totals.items_dropped == 0 {
        problems.push(format!(
            "merge totals do not show the moves and drops: {totals:?}"
        ));
    }
    println!(
        "summary membership: items {ITEMS}, before {before:?}, after SERVICEIN {after:?} (moved {moved_fraction:.3}, ideal {ideal:.3}, settled in {in_secs:.1}s), after SERVICEOUT {final_items:?} (missing copies {}, settled in {out_secs:.1}s), merge totals {totals:?}",
        missing.len()
    );
    assert!(
        problems.is_empty(),
        "membership problems:\n{}",
        problems.join("\n")
    );
}

/// Deletes leave tombstones on every owner; once every owner holds them and they are older
/// than the purge age, they are purged everywhere, and the deleted keys stay deleted.
#[test]
fn tombstones_are_purged_once_every_owner_holds_them_and_deletes_stay() {
    short_purge_age();
    let c = Cluster::start(ClusterSpec::new(3));
    let kv = c.client();
    let all = c.server_ids();
    const KEYS: usize = 400;
    for i in 0..KEYS {
        let k = key(i);
        kv.set(&k, &k, 0)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    let deleted: Vec<usize> = (0..KEYS).filter(|i| i % 2 == 0).collect();
    for &i in &deleted {
        assert!(kv
            .delete(&key(i))
            .unwrap_or_else(|e| panic!("delete {i}: {e}")));
    }
    let tombstones = |kv: &AttachKv| -> u64 {
        all.iter()
            .map(|n| {
                kv.stats_of(n)
                    .unwrap_or_else(|e| panic!("stats of {n}: {e}"))
                    .get("tombstones")
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    };
    let map = c.placement();
    let t0 = Instant::now();
    let first = tombstones(&kv);
    assert_eq!(
        first,
        (deleted.len() * map.owners_per_slot()) as u64,
        "every owner holds a tombstone of every deleted key right after the deletes"
    );
    let mut left = first;
    while left > 0 && t0.elapsed() < PURGE_MAX {
        std::thread::sleep(Duration::from_millis(300));
        left = tombstones(&kv);
    }
    let purge_secs = t0.elapsed().as_secs_f64();
    assert_eq!(
        left,
        0,
        "tombstones left after {PURGE_MAX:?}: {left} of {first}\n{}",
        c.logs()
    );
    assert!(
        purge_secs * 1000.0 >= TEST_PURGE_AGE_MS as f64 * 0.9,
        "purged after {purge_secs:.1}s, sooner than the purge age"
    );
    // Deleted keys stay deleted on every owner; the others are intact; owners agree.
    for i in 0..KEYS {
        let k = key(i);
        for o in map.chain_for(k2hash::key_hash(&k)) {
            let got = kv
                .get_from(o, &k)
                .unwrap_or_else(|e| panic!("get {i} from {o}: {e}"));
            if i % 2 == 0 {
                assert!(got.is_none(), "deleted key {i} is back on {o}");
            } else {
                assert_eq!(got.map(|it| it.value), Some(k.clone()), "key {i} on {o}");
            }
        }
    }
    assert!(digest_mismatches(&kv, &map).is_empty());
    // The totals reach the slave with the next status gossip.
    let mut totals = merge_totals(&c);
    let gossip_deadline = Instant::now() + Duration::from_secs(5);
    while totals.tombstones_purged < first && Instant::now() < gossip_deadline {
        std::thread::sleep(Duration::from_millis(200));
        totals = merge_totals(&c);
    }
    assert_eq!(
        totals.tombstones_purged, first,
        "the purge passes report every tombstone purged: {totals:?}"
    );
    println!("summary purge: {first} tombstones purged within {purge_secs:.1}s (age {TEST_PURGE_AGE_MS} ms)");
}

/// MERGETIMEOUT is enforced: a recovery merge slowed by MERGERATE past MERGETIMEOUT is
/// stopped with a log line, shows in the status (timeouts in the merge totals), is retried,
/// and the retries finish the job (each keeps what the last copied).
#[test]
fn mergetimeout_stops_a_slow_merge_which_is_retried_to_the_end() {
    short_purge_age();
    /// Items written while the node is away, and their value size: about 400 KB to copy
    /// back, over 6 s at the lowest MERGERATE (64 KiB/s), against a 1 s MERGETIMEOUT.
    const AWAY_ITEMS: usize = 600;
    const VALUE_BYTES: usize = 1024;
    let mut c = Cluster::configure(ClusterSpec::new(3)).unwrap_or_else(|e| panic!("{e}"));
    let ini = std::fs::read_to_string(&c.conf).unwrap_or_else(|e| panic!("read config: {e}"));
    let ini = ini.replacen(
        "[GLOBAL]\n",
        "[GLOBAL]\nMERGETIMEOUT = 1\nMERGERATE = 65536\n",
        1,
    );
    std::fs::write(&c.conf, ini).unwrap_or_else(|e| panic!("write config: {e}"));
    for n in c.servers.iter_mut().chain(c.slaves.iter_mut()) {
        n.start().unwrap_or_else(|e| panic!("{e}"));
    }
    c.wait_ready();
    let kv = c.client();
    c.servers[2].kill9();
    // Write once every router knows the node is DOWN: a write routed in the moment between
    // the kill and its detection is (rightly) an unknown outcome, which is not what this
    // test is about.
    let victim = c.servers[2].id.clone();
    for port in c.live_views() {
        c.wait_until(port, "the killed node DOWN", SETTLE_MAX, |r| {
            r.nodes
                .iter()
                .any(|n| n.id == victim.as_str() && n.live == Live::Down)
        });
    }
    let value = vec![b'v'; VALUE_BYTES];
    for i in 0..AWAY_ITEMS {
        kv.set(&key(i), &value, 0)
            .unwrap_or_else(|e| panic!("write {i} with a node down: {e}"));
    }
    c.servers[2]
        .start()
        .unwrap_or_else(|e| panic!("restart: {e}"));
    let t0 = Instant::now();
    // The first attempt cannot finish within 1 s: the status must show a timeout.
    let returning = c.servers[2].id.clone();
    let mut timeouts = 0;
    while timeouts == 0 && t0.elapsed() < SETTLE_MAX {
        std::thread::sleep(Duration::from_millis(300));
        timeouts = c
            .status()
            .and_then(|r| {
                r.nodes
                    .iter()
                    .find(|n| n.id == returning.as_str())
                    .and_then(|n| n.progress)
            })
            .map_or(0, |p| p.totals.jobs_timed_out);
    }
    assert!(
        timeouts >= 1,
        "no MERGETIMEOUT seen in the status\n{}",
        c.logs()
    );
    let log = std::fs::read_to_string(&c.servers[2].chmpx.log).unwrap_or_default();
    assert!(
        log.contains("exceeded MERGETIMEOUT"),
        "the timeout is logged\n{}",
        c.logs()
    );
    // Retries finish the job: every owner ends with the same data.
    let (map, bad) = converge(&mut c, &kv, t0);
    assert!(
        bad.is_empty(),
        "digests differ after the retries: {:?}",
        &bad[..bad.len().min(5)]
    );
    for i in 0..AWAY_ITEMS {
        for o in map.chain_for(k2hash::key_hash(&key(i))) {
            let got = kv
                .get_from(o, &key(i))
                .unwrap_or_else(|e| panic!("get {i}: {e}"));
            assert_eq!(
                got.map(|it| it.value.len()),
                Some(VALUE_BYTES),
                "key {i} on {o}"
            );
        }
    }
    println!(
        "summary mergetimeout: {timeouts} timeout(s) seen, merge done in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

/// Membership outlives the processes (each server chmpx saves its ring state in its data
/// directory): a node taken out with SERVICEOUT and handed off stays out when every process of
/// the cluster is killed at once and started again, and every item stays readable. REPLICA 0,
/// so a node that came back SERVICE IN (as it did before the ring state was saved) would own
/// slots whose only copy is elsewhere, and their items would read as missing.
#[test]
fn a_node_taken_out_stays_out_and_items_stay_readable_when_every_process_restarts() {
    short_purge_age();
    let mut spec = ClusterSpec::new(3);
    spec.replica = 0;
    let mut c = Cluster::start(spec);
    let all = c.server_ids();
    let out = all[2].clone();
    const KEYS: usize = 600;
    let kv = c.client();
    for i in 0..KEYS {
        let k = key(i);
        kv.set(&k, &k, 0)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    c.service_out(&out)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let (map, bad) = converge(&mut c, &kv, Instant::now());
    assert!(bad.is_empty(), "digests differ after SERVICEOUT: {bad:?}");
    assert_eq!(map.members().len(), 2);
    // The node taken out hands its items off before the restart: only the others hold them.
    let deadline = Instant::now() + HANDOFF_MAX;
    while items_per_node(&kv, std::slice::from_ref(&out))
        .values()
        .sum::<u64>()
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "{out} still holds items after the hand-off bound\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(kv);

    for n in c.servers.iter_mut().chain(c.slaves.iter_mut()) {
        n.kill9();
    }
    for n in c.servers.iter_mut().chain(c.slaves.iter_mut()) {
        n.start()
            .unwrap_or_else(|e| panic!("restart {}: {e}", n.id));
    }
    c.wait_ready();
    c.wait_settled(SETTLE_MAX);
    let kv = c.client();
    let missing: Vec<usize> = (0..KEYS)
        .filter(|&i| {
            let k = key(i);
            !matches!(kv.get(&k), Ok(Some(item)) if item.value == k)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {KEYS} items unreadable after the restart, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        c.logs()
    );
    let report = c.status().expect("status after the restart");
    let ring_of = |id: &NodeId| {
        report
            .nodes
            .iter()
            .find(|n| n.id == id.as_str())
            .map(|n| n.ring)
    };
    assert_eq!(
        ring_of(&out),
        Some(chmpx::daemon::status::Ring::ServiceOut),
        "{out} after every process restarted: {report:#?}"
    );
    assert_eq!(
        report.epoch,
        map.epoch(),
        "the epoch is the one before the restart"
    );
}
