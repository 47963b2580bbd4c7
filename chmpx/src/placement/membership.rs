//! [`Membership`]: the SERVICE IN member list, ordered by epoch.
//!
//! Every change (SERVICEIN, SERVICEOUT) is proposed against the current
//! epoch and becomes a *pending* membership of epoch+1. While one change is
//! pending no other can start, and a proposal made against an older epoch is
//! refused: two concurrent changes can never both win. The pending change is
//! completed (after the merge, COMPMERGE) or aborted (ABORTMERGE).
//!
//! Liveness (UP/DOWN) is not membership: a DOWN member keeps its slots.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::error::PlacementError;
use super::map::PlacementMap;
use super::node_id::NodeId;

/// A change of membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// SERVICEIN of a node.
    ServiceIn(NodeId),
    /// SERVICEOUT of a node.
    ServiceOut(NodeId),
}

/// The current member list and at most one pending change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Epoch of the current member list.
    pub epoch: u64,
    /// Current SERVICE IN members, sorted, no duplicates.
    pub members: Vec<NodeId>,
    /// The pending membership: (epoch + 1, its members, the change that made it).
    pub pending: Option<(u64, Vec<NodeId>, MembershipChange)>,
}

impl Membership {
    /// A membership at `epoch` with `members` (order and duplicates do not matter).
    pub fn new(epoch: u64, members: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            epoch,
            members: sorted(members),
            pending: None,
        }
    }

    /// Proposes SERVICEIN of `node` against `seen_epoch`.
    pub fn apply_service_in(
        &mut self,
        seen_epoch: u64,
        node: NodeId,
    ) -> Result<u64, PlacementError> {
        self.check_can_change(seen_epoch)?;
        if self.members.contains(&node) {
            return Err(PlacementError::AlreadyMember(node));
        }
        let members = sorted(self.members.iter().cloned().chain([node.clone()]));
        Ok(self.set_pending(members, MembershipChange::ServiceIn(node)))
    }

    /// Proposes SERVICEOUT of `node` against `seen_epoch`.
    pub fn apply_service_out(
        &mut self,
        seen_epoch: u64,
        node: NodeId,
    ) -> Result<u64, PlacementError> {
        self.check_can_change(seen_epoch)?;
        if !self.members.contains(&node) {
            return Err(PlacementError::NotMember(node));
        }
        if self.members.len() == 1 {
            return Err(PlacementError::LastMember(node));
        }
        let members = self
            .members
            .iter()
            .filter(|m| **m != node)
            .cloned()
            .collect();
        Ok(self.set_pending(members, MembershipChange::ServiceOut(node)))
    }

    /// Makes the pending membership current (the merge is complete).
    pub fn complete(&mut self) -> Result<u64, PlacementError> {
        let (epoch, members, _) = self.pending.take().ok_or(PlacementError::NothingPending)?;
        self.epoch = epoch;
        self.members = members;
        Ok(epoch)
    }

    /// Drops the pending change; the members stay as they are.
    ///
    /// The epoch the pending change had is used up: the membership moves to
    /// that epoch with its old members, so an epoch number always names one
    /// member list, and proposals made before the abort are stale.
    pub fn abort(&mut self) -> Result<u64, PlacementError> {
        let (epoch, _, _) = self.pending.take().ok_or(PlacementError::NothingPending)?;
        self.epoch = epoch;
        Ok(epoch)
    }

    /// The pending epoch, if a change is pending.
    pub fn pending_epoch(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.0)
    }

    /// The current placement map.
    pub fn map(&self, slot_count: u32, replica: u32) -> Result<PlacementMap, PlacementError> {
        PlacementMap::compute(self.epoch, &self.members, slot_count, replica)
    }

    /// The pending placement map, if a change is pending.
    pub fn pending_map(
        &self,
        slot_count: u32,
        replica: u32,
    ) -> Result<Option<PlacementMap>, PlacementError> {
        self.pending
            .as_ref()
            .map(|(epoch, members, _)| PlacementMap::compute(*epoch, members, slot_count, replica))
            .transpose()
    }

    fn check_can_change(&self, seen_epoch: u64) -> Result<(), PlacementError> {
        if let Some(pending_epoch) = self.pending_epoch() {
            return Err(PlacementError::ChangePending { pending_epoch });
        }
        if seen_epoch != self.epoch {
            return Err(PlacementError::StaleEpoch {
                proposed: seen_epoch,
                current: self.epoch,
            });
        }
        Ok(())
    }

    fn set_pending(&mut self, members: Vec<NodeId>, change: MembershipChange) -> u64 {
        let epoch = self.epoch + 1;
        self.pending = Some((epoch, members, change));
        epoch
    }
}

fn sorted(members: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
    members
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s)
    }

    #[test]
    fn one_change_at_a_time_ordered_by_epoch() {
        let mut m = Membership::new(5, [n("b:1"), n("a:1"), n("a:1")]);
        assert_eq!(m.members, vec![n("a:1"), n("b:1")]);
        assert_eq!(m.apply_service_in(5, n("c:1")), Ok(6));
        // A second change while one is pending loses, whatever its epoch.
        assert_eq!(
            m.apply_service_out(5, n("a:1")),
            Err(PlacementError::ChangePending { pending_epoch: 6 })
        );
        assert_eq!(
            m.apply_service_in(6, n("d:1")),
            Err(PlacementError::ChangePending { pending_epoch: 6 })
        );
        assert_eq!(m.complete(), Ok(6));
        assert_eq!(m.members.len(), 3);
        // A change made against the old epoch is refused.
        assert_eq!(
            m.apply_service_out(5, n("a:1")),
            Err(PlacementError::StaleEpoch {
                proposed: 5,
                current: 6
            })
        );
        assert_eq!(m.apply_service_out(6, n("a:1")), Ok(7));
        assert_eq!(m.abort(), Ok(7));
        assert_eq!(m.epoch, 7);
        assert_eq!(m.members.len(), 3);
        assert_eq!(
            m.apply_service_out(6, n("a:1")),
            Err(PlacementError::StaleEpoch {
                proposed: 6,
                current: 7
            })
        );
        assert_eq!(m.abort(), Err(PlacementError::NothingPending));
        assert_eq!(m.complete(), Err(PlacementError::NothingPending));
    }

    #[test]
    fn refuses_meaningless_changes() {
        let mut m = Membership::new(1, [n("a:1")]);
        assert_eq!(
            m.apply_service_in(1, n("a:1")),
            Err(PlacementError::AlreadyMember(n("a:1")))
        );
        assert_eq!(
            m.apply_service_out(1, n("z:1")),
            Err(PlacementError::NotMember(n("z:1")))
        );
        assert_eq!(
            m.apply_service_out(1, n("a:1")),
            Err(PlacementError::LastMember(n("a:1")))
        );
        assert!(m.pending.is_none());
    }

    #[test]
    fn pending_map_has_next_epoch() {
        let mut m = Membership::new(1, [n("a:1"), n("b:1")]);
        m.apply_service_in(1, n("c:1")).unwrap();
        let pm = m.pending_map(64, 1).unwrap().unwrap();
        assert_eq!(pm.epoch(), 2);
        assert_eq!(pm.members().len(), 3);
        assert_eq!(m.map(64, 1).unwrap().epoch(), 1);
    }
}
