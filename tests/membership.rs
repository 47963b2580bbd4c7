//! Membership changes move little data and keep every item on REPLICA+1 owners (DESIGN.md §4,
//! §6): adding a 4th node (SERVICEIN) to 3 moves about (REPLICA+1)/N of the items, and taking
//! one out (SERVICEOUT) leaves every item with REPLICA+1 copies again. 4 configured server
//! nodes (the 4th SERVICE OUT at first) + 1 slave, REPLICA 1, ack `all`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

fn key(i: usize) -> Vec<u8> {
    format!("m{i:05}").into_bytes()
}

fn items_per_node(kv: &AttachKv, nodes: &[NodeId]) -> BTreeMap<NodeId, u64> {
    nodes
        .iter()
        .map(|n| {
            let s = kv
                .stats_of(n)
                .unwrap_or_else(|e| panic!("stats of {n}: {e}"));
            (n.clone(), s.get("curr_items").copied().unwrap_or(0))
        })
        .collect()
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

#[test]
#[ignore = "known bug (chmpx merge): a node keeps the items of slots it no longer owns after \
            SERVICEIN; nothing drops them. Run with --ignored; see the dkc-server issue's notes"]
fn servicein_moves_about_r_plus_1_over_n_and_serviceout_restores_copies() {
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
    let after = items_per_node(&kv, &all);
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
    let final_items = items_per_node(&kv, &all);
    println!(
        "summary membership: items {ITEMS}, before {before:?}, after SERVICEIN {after:?} (moved {moved_fraction:.3}, ideal {ideal:.3}, settled in {in_secs:.1}s), after SERVICEOUT {final_items:?} (missing copies {}, settled in {out_secs:.1}s)",
        missing.len()
    );
    assert!(
        problems.is_empty(),
        "membership problems:\n{}",
        problems.join("\n")
    );
}
