//! [`PlacementMap`]: the owners of every slot for one membership epoch.

use std::collections::BTreeSet;

use super::assign::{assign, MEMBERS_MAX};
use super::error::PlacementError;
use super::hash::{is_valid_slot_count, slot_of, SLOT_COUNT_MAX, SLOT_COUNT_MIN};
use super::node_id::NodeId;

/// Version of the placement function (weights, quotas, tie-breaks). Nodes
/// that compute maps differently must not form one cluster; the link
/// handshake can compare this number.
pub const PLACEMENT_ALGORITHM_VERSION: u32 = 1;

/// The owners of every slot, computed from (members, slot count, replica).
///
/// Each slot has `min(replica + 1, members)` distinct owners, primary first.
/// The map depends only on the *set* of members: their order in the input
/// does not matter.
#[derive(Clone, PartialEq, Eq)]
pub struct PlacementMap {
    epoch: u64,
    slot_count: u32,
    replica: u32,
    members: Vec<NodeId>,
    owners_per_slot: usize,
    /// Slot-major: slot `s` is `owners[s*k .. s*k+k]`.
    owners: Vec<NodeId>,
}

/// What a merge must move for one slot between two maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMove {
    /// The slot.
    pub slot: u32,
    /// Owners in the old map (primary first).
    pub from: Vec<NodeId>,
    /// Owners in the new map (primary first).
    pub to: Vec<NodeId>,
}

impl SlotMove {
    /// Owners in the new map that were not owners in the old one: they must
    /// receive the slot's data.
    pub fn gained(&self) -> Vec<NodeId> {
        self.to
            .iter()
            .filter(|n| !self.from.contains(n))
            .cloned()
            .collect()
    }

    /// Owners in the old map that are gone from the new one: they may drop
    /// the slot's data once the merge is complete.
    pub fn lost(&self) -> Vec<NodeId> {
        self.from
            .iter()
            .filter(|n| !self.to.contains(n))
            .cloned()
            .collect()
    }
}

impl PlacementMap {
    /// Computes the map of `epoch` for `members` (SERVICE IN server nodes).
    ///
    /// An empty member list gives a map where every slot has no owner.
    pub fn compute(
        epoch: u64,
        members: &[NodeId],
        slot_count: u32,
        replica: u32,
    ) -> Result<Self, PlacementError> {
        if !is_valid_slot_count(slot_count) {
            return Err(PlacementError::BadSlotCount {
                slot_count,
                min: SLOT_COUNT_MIN,
                max: SLOT_COUNT_MAX,
            });
        }
        let members: Vec<NodeId> = members
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if members.len() > MEMBERS_MAX {
            return Err(PlacementError::TooManyMembers {
                count: members.len(),
                max: MEMBERS_MAX,
            });
        }
        let owners_per_slot = (replica as usize).saturating_add(1).min(members.len());
        let owners = if owners_per_slot == 0 {
            Vec::new()
        } else {
            assign(&members, slot_count, owners_per_slot)
                .into_iter()
                .map(|i| members[i as usize].clone())
                .collect()
        };
        Ok(PlacementMap {
            epoch,
            slot_count,
            replica,
            members,
            owners_per_slot,
            owners,
        })
    }

    /// The membership epoch this map belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of slots.
    pub fn slot_count(&self) -> u32 {
        self.slot_count
    }

    /// The configured REPLICA (owners per slot is `min(replica+1, members)`).
    pub fn replica(&self) -> u32 {
        self.replica
    }

    /// The SERVICE IN members, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// Owners per slot actually placed.
    pub fn owners_per_slot(&self) -> usize {
        self.owners_per_slot
    }

    /// Owners of `slot`, primary first (empty for an out-of-range slot or no members).
    pub fn owners(&self, slot: u32) -> &[NodeId] {
        let k = self.owners_per_slot;
        let start = slot as usize * k;
        self.owners.get(start..start + k).unwrap_or(&[])
    }

    /// The slot of a key hash in this map.
    pub fn slot_of(&self, hash: u64) -> u32 {
        slot_of(hash, self.slot_count)
    }

    /// The replica chain of a key hash: its slot's owners, primary first.
    pub fn chain_for(&self, hash: u64) -> &[NodeId] {
        self.owners(self.slot_of(hash))
    }

    /// The first live owner of a key hash: where a request for it goes.
    pub fn primary_for(&self, hash: u64, is_live: impl Fn(&NodeId) -> bool) -> Option<&NodeId> {
        self.chain_for(hash).iter().find(|n| is_live(n))
    }

    /// Slots `node` owns at any rank, ascending.
    pub fn slots_of(&self, node: &NodeId) -> Vec<u32> {
        (0..self.slot_count)
            .filter(|&s| self.owners(s).contains(node))
            .collect()
    }

    /// Slots where `node` is the primary owner, ascending.
    pub fn primary_slots_of(&self, node: &NodeId) -> Vec<u32> {
        (0..self.slot_count)
            .filter(|&s| self.owners(s).first() == Some(node))
            .collect()
    }

    /// The slots whose owner list differs between `old` and `new`.
    ///
    /// A slot appears when its owners changed in any way, including only the
    /// order (a new primary); [`SlotMove::gained`] tells which nodes need data.
    /// Maps with different slot counts cannot be compared slot by slot: every
    /// slot of `new` is then reported.
    pub fn diff(old: &PlacementMap, new: &PlacementMap) -> Vec<SlotMove> {
        let same_shape = old.slot_count == new.slot_count;
        (0..new.slot_count)
            .filter_map(|slot| {
                let from = if same_shape { old.owners(slot) } else { &[] };
                let to = new.owners(slot);
                (from != to).then(|| SlotMove {
                    slot,
                    from: from.to_vec(),
                    to: to.to_vec(),
                })
            })
            .collect()
    }
}

impl std::fmt::Debug for PlacementMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementMap")
            .field("epoch", &self.epoch)
            .field("slot_count", &self.slot_count)
            .field("replica", &self.replica)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::new(n)).collect()
    }

    #[test]
    fn owners_chain_and_primary() {
        let m = PlacementMap::compute(7, &ids(&["a:1", "b:1", "c:1"]), 1024, 1).unwrap();
        assert_eq!(m.epoch(), 7);
        assert_eq!(m.owners_per_slot(), 2);
        let hash = crate::placement::key_hash(b"hello");
        let chain = m.chain_for(hash).to_vec();
        assert_eq!(chain.len(), 2);
        assert_ne!(chain[0], chain[1]);
        assert_eq!(m.primary_for(hash, |_| true), Some(&chain[0]));
        assert_eq!(m.primary_for(hash, |n| *n != chain[0]), Some(&chain[1]));
        assert_eq!(m.primary_for(hash, |_| false), None);
        assert!(m.owners(1024).is_empty());
    }

    #[test]
    fn fewer_members_than_replicas() {
        let m = PlacementMap::compute(1, &ids(&["a:1", "b:1"]), 16, 2).unwrap();
        assert_eq!(m.owners_per_slot(), 2);
        let e = PlacementMap::compute(1, &[], 16, 2).unwrap();
        assert!(e.owners(0).is_empty());
        assert_eq!(e.primary_for(0, |_| true), None);
    }

    #[test]
    fn bad_slot_count_is_an_error() {
        let err = PlacementMap::compute(1, &ids(&["a:1"]), 1000, 0).unwrap_err();
        assert!(matches!(
            err,
            PlacementError::BadSlotCount {
                slot_count: 1000,
                ..
            }
        ));
    }

    #[test]
    fn diff_reports_gained_and_lost() {
        let old = PlacementMap::compute(1, &ids(&["a:1", "b:1", "c:1"]), 256, 1).unwrap();
        let new = PlacementMap::compute(2, &ids(&["a:1", "b:1", "c:1", "d:1"]), 256, 1).unwrap();
        let moves = PlacementMap::diff(&old, &new);
        assert!(!moves.is_empty());
        let d = NodeId::new("d:1");
        let gained_by_d = moves.iter().filter(|m| m.gained().contains(&d)).count();
        assert_eq!(gained_by_d, new.slots_of(&d).len());
        assert!(PlacementMap::diff(&new, &new).is_empty());
    }
}
