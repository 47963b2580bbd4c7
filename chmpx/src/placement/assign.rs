//! Balanced rendezvous assignment of slot owners.
//!
//! Plain rendezvous hashing (each slot takes the REPLICA+1 members of highest
//! weight `w(slot, node)`) moves the least data on a membership change, but
//! its balance is poor when slots per node are few: with 1024 slots and 64
//! nodes a node owns 16 ± 4 slots. We keep the same weights and add exact
//! quotas, one rank at a time (rank 0 = primary, rank 1 = first replica, ...):
//!
//! 1. Every member gets a quota of `floor(S/N)` or `ceil(S/N)` slots for this
//!    rank; which members get the extra slot rotates with the rank, so the
//!    totals over all ranks differ by at most one between members.
//! 2. All (slot, node) pairs are visited in one global order of descending
//!    weight; a pair is taken when the slot has no owner at this rank yet,
//!    the node has quota left, and the node does not already own the slot at
//!    a lower rank. With one weight shared by both sides this greedy is the
//!    unique stable matching, so it does not depend on any processing order
//!    and changes little when one member comes or goes: the newcomer takes
//!    its highest-weight slots, and only slots pushed over a quota move on.
//! 3. A slot left without an owner (rare: only the members still holding
//!    quota already own it at a lower rank) is fixed by one swap with a slot
//!    that such a member can take.
//!
//! To bound memory with many members, each slot only offers its
//! [`CANDIDATES_PER_SLOT_MAX`] heaviest members to the greedy (all of them up
//! to that many members); slots left over by that cut go through step 3.
//!
//! The weights and the rotation are part of the placement contract
//! ([`super::PLACEMENT_ALGORITHM_VERSION`]): every chmpx must compute the same map.

use twox_hash::XxHash64;

use super::node_id::NodeId;

/// Most members a map can hold (owner indexes are u16; u16::MAX marks "none").
pub const MEMBERS_MAX: usize = 4096;
/// Most candidate members per slot offered to the greedy pass.
pub const CANDIDATES_PER_SLOT_MAX: usize = 64;
/// Marks a rank of a slot that has no owner yet.
pub(crate) const NO_OWNER: u16 = u16::MAX;

const _: () = assert!(MEMBERS_MAX < NO_OWNER as usize);

/// Seed for hashing node ids into placement weights (fixed forever).
const NODE_WEIGHT_SEED: u64 = 0x646b_632d_706c_6163; // "dkc-plac"
/// Salt that orders members for the rotation of extra quota slots (fixed forever).
const EXTRA_QUOTA_SALT: u64 = 0x6578_7472_615f_7175; // "extra_qu"

/// The splitmix64 finalizer: a fast bijective mixer with full avalanche.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hash of a node id that enters every weight of that node.
pub(crate) fn node_weight_hash(id: &NodeId) -> u64 {
    XxHash64::oneshot(NODE_WEIGHT_SEED, id.as_str().as_bytes())
}

/// The rendezvous weight of `node_hash` for `slot`.
pub(crate) fn weight(slot: u32, node_hash: u64) -> u64 {
    mix64(node_hash ^ mix64(u64::from(slot).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// Assigns `owners_per_slot` distinct owners to each of `slot_count` slots.
///
/// `members` must be sorted, free of duplicates, non-empty, at most
/// [`MEMBERS_MAX`] long, and `owners_per_slot <= members.len()`.
/// Returns member indexes, slot-major: slot `s` owns
/// `result[s*k .. s*k+k]`, primary first.
pub(crate) fn assign(members: &[NodeId], slot_count: u32, owners_per_slot: usize) -> Vec<u16> {
    let n = members.len();
    let k = owners_per_slot;
    debug_assert!(n > 0 && n <= MEMBERS_MAX && k <= n);
    let slots = slot_count as usize;
    let node_hash: Vec<u64> = members.iter().map(node_weight_hash).collect();
    let candidates = candidate_pairs(&node_hash, slot_count);
    let extra_order = extra_quota_order(&node_hash);

    let mut owners = vec![NO_OWNER; slots * k];
    for rank in 0..k {
        let mut quota = rank_quotas(slots, rank, &extra_order);
        let mut filled = 0usize;
        for &pair in &candidates {
            if filled == slots {
                break;
            }
            let slot = ((pair >> 16) & 0xffff) as usize;
            let node = (pair & 0xffff) as u16;
            let row = &owners[slot * k..slot * k + k];
            if row[rank] != NO_OWNER || quota[node as usize] == 0 || row[..rank].contains(&node) {
                continue;
            }
            owners[slot * k + rank] = node;
            quota[node as usize] -= 1;
            filled += 1;
        }
        if filled < slots {
            repair_rank(&mut owners, k, rank, &mut quota, &node_hash);
        }
    }
    debug_assert!(owners.iter().all(|&o| o != NO_OWNER));
    owners
}

/// All offered (slot, node) pairs, heaviest first, packed in a u64 each:
/// inverted top 32 weight bits, then slot (16 bits), then node (16 bits), so
/// an ascending sort is "weight descending, then slot, then node ascending".
fn candidate_pairs(node_hash: &[u64], slot_count: u32) -> Vec<u64> {
    let n = node_hash.len();
    let per_slot = n.min(CANDIDATES_PER_SLOT_MAX);
    let mut pairs = Vec::with_capacity(slot_count as usize * per_slot);
    let mut row: Vec<u64> = Vec::with_capacity(n);
    for slot in 0..slot_count {
        row.clear();
        for (node, &h) in node_hash.iter().enumerate() {
            let w = weight(slot, h) >> 32;
            // (slot_count - 1) and node both fit 16 bits: SLOT_COUNT_MAX = 65536, MEMBERS_MAX < 65535.
            row.push(((!w & 0xffff_ffff) << 32) | (u64::from(slot & 0xffff) << 16) | node as u64);
        }
        if per_slot < n {
            row.select_nth_unstable(per_slot - 1);
            row.truncate(per_slot);
        }
        pairs.extend_from_slice(&row);
    }
    pairs.sort_unstable();
    pairs
}

/// Members ordered by a salted hash: the order in which extra quota slots rotate.
fn extra_quota_order(node_hash: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..node_hash.len()).collect();
    order.sort_by_key(|&i| (mix64(node_hash[i] ^ EXTRA_QUOTA_SALT), i));
    order
}

/// Quotas of one rank: `floor(S/N)` each, plus one for `S mod N` members taken
/// cyclically from `extra_order`, starting where the previous rank stopped.
fn rank_quotas(slots: usize, rank: usize, extra_order: &[usize]) -> Vec<usize> {
    let n = extra_order.len();
    let base = slots / n;
    let extra = slots % n;
    let mut quota = vec![base; n];
    let start = (rank * extra) % n;
    for i in 0..extra {
        quota[extra_order[(start + i) % n]] += 1;
    }
    quota
}

/// Gives an owner to every slot still without one at `rank`.
fn repair_rank(owners: &mut [u16], k: usize, rank: usize, quota: &mut [usize], node_hash: &[u64]) {
    let slots = owners.len() / k;
    for s in 0..slots {
        if owners[s * k + rank] != NO_OWNER {
            continue;
        }
        // Best member with quota left that does not own s yet (possible when
        // the candidate cut hid the pair from the greedy pass).
        let direct = (0..node_hash.len() as u16)
            .filter(|&x| quota[x as usize] > 0 && !owners[s * k..s * k + rank].contains(&x))
            .max_by_key(|&x| {
                (
                    weight(s as u32, node_hash[x as usize]),
                    std::cmp::Reverse(x),
                )
            });
        if let Some(x) = direct {
            owners[s * k + rank] = x;
            quota[x as usize] -= 1;
            continue;
        }
        // Swap: a member x with quota left takes some slot t from its owner y
        // at this rank, and y takes s.
        let mut swapped = false;
        'search: for x in 0..node_hash.len() as u16 {
            if quota[x as usize] == 0 {
                continue;
            }
            for t in 0..slots {
                let y = owners[t * k + rank];
                if y == NO_OWNER || owners[t * k..t * k + rank].contains(&x) {
                    continue;
                }
                if owners[s * k..s * k + rank].contains(&y) {
                    continue;
                }
                owners[t * k + rank] = x;
                owners[s * k + rank] = y;
                quota[x as usize] -= 1;
                swapped = true;
                break 'search;
            }
        }
        if !swapped {
            // Cannot happen with owners_per_slot <= members; still never leave
            // a hole: take the heaviest non-owner, over its quota.
            if let Some(x) = (0..node_hash.len() as u16)
                .filter(|&x| !owners[s * k..s * k + rank].contains(&x))
                .max_by_key(|&x| weight(s as u32, node_hash[x as usize]))
            {
                owners[s * k + rank] = x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = (0..n)
            .map(|i| NodeId::from_host_port("10.0.0.1", 8000 + i as u16))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn every_slot_gets_distinct_owners() {
        for n in [1usize, 2, 3, 7] {
            for k in 1..=n.min(3) {
                let owners = assign(&ids(n), 64, k);
                for s in 0..64 {
                    let row = &owners[s * k..s * k + k];
                    for (i, a) in row.iter().enumerate() {
                        assert!((*a as usize) < n);
                        assert!(!row[..i].contains(a), "slot {s} n {n} k {k}: {row:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn candidate_cut_still_fills_every_slot() {
        // More members than CANDIDATES_PER_SLOT_MAX exercises the repair path.
        let n = CANDIDATES_PER_SLOT_MAX + 36;
        let owners = assign(&ids(n), 256, 3);
        assert!(owners.iter().all(|&o| (o as usize) < n));
    }

    #[test]
    fn quotas_sum_to_slots_and_rotate() {
        let order: Vec<usize> = (0..5).collect();
        let q0 = rank_quotas(12, 0, &order);
        let q1 = rank_quotas(12, 1, &order);
        assert_eq!(q0.iter().sum::<usize>(), 12);
        assert_eq!(q0, vec![3, 3, 2, 2, 2]);
        assert_eq!(q1, vec![2, 2, 3, 3, 2]);
    }
}
