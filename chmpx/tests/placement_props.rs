//! Property tests of the placement map: balance, minimal movement, distinct
//! owners, independence from member order; and the comparison with CHMPX's
//! hash-mod-N placement.
//!
//! Figures are printed with `--nocapture`; the bounds asserted are stated at
//! each constant.

use std::collections::HashMap;

use chmpx::placement::{NodeId, PlacementMap};
use proptest::prelude::*;

/// Allowed deviation of any node's slot count from the mean (fraction).
const BALANCE_TOLERANCE: f64 = 0.10;
/// Allowed movement on adding/removing one of N nodes: the ideal
/// (REPLICA+1)·S/N owner entries (what the node that comes or goes must take
/// or give) plus this fraction of all (REPLICA+1)·S owner entries. The excess
/// comes from the exact quotas: every old node must shed or take about one
/// slot to stay balanced, and those slots cascade. Measured worst excess:
/// 3.8% of entries at 1024 slots, 1.8% at 4096 (see `movement_sweep_figures`).
const MOVEMENT_TOLERANCE_FRACTION: f64 = 0.05;

fn members(n: usize, salt: u64) -> Vec<NodeId> {
    (0..n)
        .map(|i| {
            NodeId::from_host_port(
                &format!("10.{}.{}.{}", salt % 200, i / 200, i % 200 + 1),
                8021,
            )
        })
        .collect()
}

/// (min, max) over nodes of primary slots and of all owned slots, and the means.
fn balance(map: &PlacementMap) -> ((usize, usize, f64), (usize, usize, f64)) {
    let mut primary: HashMap<&NodeId, usize> = map.members().iter().map(|m| (m, 0)).collect();
    let mut total = primary.clone();
    for s in 0..map.slot_count() {
        for (rank, o) in map.owners(s).iter().enumerate() {
            *total.get_mut(o).expect("owner is a member") += 1;
            if rank == 0 {
                *primary.get_mut(o).expect("owner is a member") += 1;
            }
        }
    }
    let n = map.members().len() as f64;
    let stat = |h: &HashMap<&NodeId, usize>| {
        let sum: usize = h.values().sum();
        (
            *h.values().min().unwrap(),
            *h.values().max().unwrap(),
            sum as f64 / n,
        )
    };
    (stat(&primary), stat(&total))
}

/// Owner entries present in `new` but not in `old` (set-wise per slot).
fn moved_entries(old: &PlacementMap, new: &PlacementMap) -> usize {
    PlacementMap::diff(old, new)
        .iter()
        .map(|m| m.gained().len())
        .sum()
}

fn within(v: usize, mean: f64) -> bool {
    (v as f64 - mean).abs() <= mean * BALANCE_TOLERANCE
}

fn movement_bound(slots: u32, replica: u32, n_small: usize, n_big: usize) -> f64 {
    let k = (replica as usize + 1).min(n_small) as f64;
    // Ideal: the node that comes or goes takes/gives its share of k·S entries
    // of the bigger map, i.e. k·S/n_big.
    k * f64::from(slots) / n_big as f64 + MOVEMENT_TOLERANCE_FRACTION * k * f64::from(slots)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn balanced_distinct_minimal_movement(n in 3usize..=64, replica in 0u32..=2, big in any::<bool>(), salt in 0u64..1000, drop in 0usize..64) {
        let slots = if big { 4096 } else { 1024 };
        let ids = members(n, salt);
        let map = PlacementMap::compute(1, &ids, slots, replica).unwrap();

        // Distinct owners, replica+1 of them.
        for s in 0..slots {
            let o = map.owners(s);
            prop_assert_eq!(o.len(), (replica as usize + 1).min(n));
            for (i, a) in o.iter().enumerate() {
                prop_assert!(!o[..i].contains(a), "slot {} owners {:?}", s, o);
            }
        }

        // Balance.
        let ((pmin, pmax, pmean), (tmin, tmax, tmean)) = balance(&map);
        prop_assert!(within(pmin, pmean) && within(pmax, pmean), "primary {}..{} mean {}", pmin, pmax, pmean);
        prop_assert!(within(tmin, tmean) && within(tmax, tmean), "total {}..{} mean {}", tmin, tmax, tmean);
        // Stronger, by construction of the quotas: loads differ by at most one slot.
        prop_assert!(pmax - pmin <= 1 && tmax - tmin <= 1, "primary {}..{}, total {}..{}", pmin, pmax, tmin, tmax);

        // Order independence.
        let mut rev = ids.clone();
        rev.reverse();
        rev.rotate_left(salt as usize % n);
        prop_assert_eq!(&PlacementMap::compute(1, &rev, slots, replica).unwrap(), &map);

        // Add one node.
        let mut more = ids.clone();
        more.push(NodeId::from_host_port("192.168.77.1", 9000 + (salt % 100) as u16));
        let added = PlacementMap::compute(2, &more, slots, replica).unwrap();
        let moved = moved_entries(&map, &added);
        let bound = movement_bound(slots, replica, n, n + 1);
        prop_assert!(moved as f64 <= bound, "add to {}: moved {} > bound {:.0}", n, moved, bound);

        // Remove one node.
        let mut fewer = ids.clone();
        fewer.remove(drop % n);
        let removed = PlacementMap::compute(2, &fewer, slots, replica).unwrap();
        let moved = moved_entries(&map, &removed);
        let bound = movement_bound(slots, replica, n - 1, n);
        prop_assert!(moved as f64 <= bound, "remove from {}: moved {} > bound {:.0}", n, moved, bound);
    }
}

/// CHMPX places a hash at `hash mod N` with successor replicas; count what
/// moves when N grows by one, against our map, and print both.
#[test]
fn movement_versus_hash_mod_n() {
    let slots = 1024u32;
    for (n, replica) in [(3usize, 1u32), (8, 1), (16, 2), (64, 1)] {
        let ids = members(n, 7);
        let mut more = ids.clone();
        more.push(NodeId::from_host_port("192.168.77.1", 9000));
        let a = PlacementMap::compute(1, &ids, slots, replica).unwrap();
        let b = PlacementMap::compute(2, &more, slots, replica).unwrap();
        let ours = moved_entries(&a, &b);
        let k = replica as usize + 1;
        // hash mod N over the same slots (a slot stands for its hash range).
        let modn =
            |s: u32, n: usize| -> Vec<usize> { (0..k).map(|r| (s as usize + r) % n).collect() };
        let mut theirs = 0usize;
        for s in 0..slots {
            let old = modn(s, n);
            theirs += modn(s, n + 1).iter().filter(|x| !old.contains(x)).count();
        }
        let total = k * slots as usize;
        let ideal = total as f64 / (n + 1) as f64;
        println!(
            "N {n}->{}: REPLICA {replica}: ours moved {ours}/{total} owner entries ({:.1}%), ideal {:.0} ({:.1}%), hash mod N moved {theirs} ({:.1}%)",
            n + 1,
            100.0 * ours as f64 / total as f64,
            ideal,
            100.0 * ideal / total as f64,
            100.0 * theirs as f64 / total as f64,
        );
        assert!(
            (ours as f64) <= movement_bound(slots, replica, n, n + 1),
            "ours moved {ours}, ideal {ideal:.0}"
        );
        assert!(
            theirs as f64 > 1.9 * ours as f64,
            "hash mod N moved {theirs}, ours {ours}"
        );
    }
}

/// Worst movement over a sweep of cluster sizes, printed as a ratio to the
/// ideal and as the excess in owner entries; asserts the same bound as the
/// property test on every case.
#[test]
fn movement_sweep_figures() {
    for slots in [1024u32, 4096] {
        for replica in 0u32..=2 {
            let mut worst_add: f64 = 0.0;
            let mut worst_rm: f64 = 0.0;
            let mut worst_add_abs: f64 = 0.0;
            let mut worst_rm_abs: f64 = 0.0;
            // Sum of moved entries and of ideal entries over all cases.
            let (mut moved_sum, mut ideal_sum) = (0.0f64, 0.0f64);
            for n in (3usize..=64).step_by(3) {
                for salt in 0..3u64 {
                    let ids = members(n, salt);
                    let map = PlacementMap::compute(1, &ids, slots, replica).unwrap();
                    let mut more = ids.clone();
                    more.push(NodeId::from_host_port("192.168.77.1", 9000 + salt as u16));
                    let a = PlacementMap::compute(2, &more, slots, replica).unwrap();
                    let k = (replica as usize + 1) as f64;
                    let ideal_add = k.min(n as f64) * slots as f64 / (n + 1) as f64;
                    let m = moved_entries(&map, &a) as f64;
                    assert!(
                        m <= movement_bound(slots, replica, n, n + 1),
                        "add to {n}: moved {m}"
                    );
                    worst_add = worst_add.max(m / ideal_add);
                    moved_sum += m;
                    ideal_sum += ideal_add;
                    worst_add_abs = worst_add_abs.max(m - ideal_add);
                    let mut fewer = ids.clone();
                    fewer.remove((salt as usize * 7) % n);
                    let r = PlacementMap::compute(2, &fewer, slots, replica).unwrap();
                    let ideal_rm = k.min((n - 1) as f64) * slots as f64 / n as f64;
                    let m = moved_entries(&map, &r) as f64;
                    assert!(
                        m <= movement_bound(slots, replica, n - 1, n),
                        "remove from {n}: moved {m}"
                    );
                    worst_rm = worst_rm.max(m / ideal_rm);
                    moved_sum += m;
                    ideal_sum += ideal_rm;
                    worst_rm_abs = worst_rm_abs.max(m - ideal_rm);
                }
            }
            println!(
                "slots {slots} REPLICA {replica}, N 3..=63: overall {:.2}x ideal; worst add {worst_add:.2}x ideal (+{worst_add_abs:.0} entries), worst remove {worst_rm:.2}x ideal (+{worst_rm_abs:.0} entries)",
                moved_sum / ideal_sum
            );
        }
    }
}
