//! Errors of the placement module.

use super::node_id::NodeId;

/// What went wrong when computing a map or changing membership.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The slot count is not a power of two in the supported range.
    #[error("slot count {slot_count} is invalid: expected a power of two in {min}..={max}")]
    BadSlotCount { slot_count: u32, min: u32, max: u32 },
    /// More members than a map can index.
    #[error("{count} members is too many: at most {max} server nodes are supported")]
    TooManyMembers { count: usize, max: usize },
    /// A change was proposed against an epoch that is not the current one.
    #[error("membership change proposed against epoch {proposed}, but the current epoch is {current}: re-read the membership and retry")]
    StaleEpoch { proposed: u64, current: u64 },
    /// A change was proposed while another one is still pending.
    #[error(
        "a membership change to epoch {pending_epoch} is still pending: complete or abort it first"
    )]
    ChangePending { pending_epoch: u64 },
    /// SERVICEIN of a node that is already a member.
    #[error("node {0} is already SERVICE IN")]
    AlreadyMember(NodeId),
    /// SERVICEOUT of a node that is not a member.
    #[error("node {0} is not SERVICE IN")]
    NotMember(NodeId),
    /// SERVICEOUT of the last member would leave no owner for any slot.
    #[error(
        "node {0} is the last SERVICE IN member; removing it would leave the data without an owner"
    )]
    LastMember(NodeId),
    /// complete/abort without a pending change.
    #[error("no membership change is pending")]
    NothingPending,
}
