//! Ring commands at the coordinator: how SERVICEIN, SERVICEOUT and the merge commands change the
//! [`RingState`]. Pure: the router decides who the coordinator is and spreads the result.
//!
//! # The ordering rule
//! Only the *coordinator* changes the ring state: the server node with the lowest id among the
//! server nodes this node sees UP (itself included). A command given to any other node (server
//! or slave) is forwarded to the coordinator, whose answer is the command's answer. Every change
//! bumps `RingState::version`, and a node adopts a gossiped ring state only when its version is
//! higher than the one it holds, so all nodes apply the same changes in the same order.
//! Membership changes are also checked against the epoch ([`Membership`]): at most one change is
//! pending, and a change proposed against an older epoch is refused, so two concurrent changes
//! cannot both win. (During a network partition each side may elect its own coordinator; the
//! side that changes nothing keeps the lower version and adopts the other's state when the
//! partition heals. Two sides that both change the ring would conflict: operators should not
//! change membership while a partition is reported.)

use crate::placement::{Membership, NodeId};

use super::ring_file::SETTLED_INITIAL_VERSION;
use super::wire::{RingCommand, RingState};

/// The outcome of a ring command: the text answer, and whether the state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingOutcome {
    /// Whether the command succeeded.
    pub ok: bool,
    /// What to tell the operator.
    pub text: String,
}

impl RingOutcome {
    fn ok(text: impl Into<String>) -> Self {
        RingOutcome {
            ok: true,
            text: text.into(),
        }
    }

    fn err(text: impl Into<String>) -> Self {
        RingOutcome {
            ok: false,
            text: text.into(),
        }
    }
}

/// The initial ring state: every configured server node in service at epoch 0, version 0 (a
/// node's view before it has a saved or gossiped state; see [`super::ring_file`]).
pub fn initial_ring(servers: impl IntoIterator<Item = NodeId>) -> RingState {
    RingState {
        version: 0,
        membership: Membership::new(0, servers),
        merge_suspended: false,
        merging: false,
    }
}

/// Applies `cmd` at the coordinator. `known` tells whether a node id is a configured server;
/// `all_done` whether every node concerned reports its merge done for the pending epoch;
/// `automerge` is the AUTOMERGE setting.
pub fn apply(
    ring: &mut RingState,
    cmd: &RingCommand,
    known: impl Fn(&NodeId) -> bool,
    all_done: bool,
    automerge: bool,
) -> RingOutcome {
    let epoch = ring.membership.epoch;
    let outcome = match cmd {
        RingCommand::ServiceIn(node) | RingCommand::ServiceOut(node) => {
            let id = NodeId::new(node);
            if !known(&id) {
                return RingOutcome::err(format!(
                    "{node} is not a server node of this cluster's config"
                ));
            }
            let result = match cmd {
                RingCommand::ServiceIn(_) => ring.membership.apply_service_in(epoch, id),
                _ => ring.membership.apply_service_out(epoch, id),
            };
            match result {
                Ok(pending) => {
                    ring.merging = automerge && !ring.merge_suspended;
                    let how = if ring.merging {
                        "merging"
                    } else {
                        "waiting for MERGE"
                    };
                    RingOutcome::ok(format!("pending epoch {pending} ({how})"))
                }
                Err(e) => return RingOutcome::err(e.to_string()),
            }
        }
        RingCommand::Merge => {
            if ring.membership.pending.is_none() {
                return RingOutcome::err(
                    "no pending change to merge; give SERVICEIN or SERVICEOUT first",
                );
            }
            if ring.merging {
                return RingOutcome::ok("already merging");
            }
            ring.merging = true;
            RingOutcome::ok("merging")
        }
        RingCommand::AbortMerge => match ring.membership.abort() {
            Ok(e) => {
                ring.merging = false;
                RingOutcome::ok(format!("aborted; epoch {e} keeps the old members"))
            }
            Err(e) => return RingOutcome::err(e.to_string()),
        },
        RingCommand::CompMerge => {
            if ring.membership.pending.is_none() {
                return RingOutcome::err("no pending change to complete");
            }
            if !ring.merging || !all_done {
                return RingOutcome::err(
                    "not every node is done merging; wait, or give MERGE first",
                );
            }
            match ring.membership.complete() {
                Ok(e) => {
                    ring.merging = false;
                    RingOutcome::ok(format!("completed; epoch {e}"))
                }
                Err(e) => return RingOutcome::err(e.to_string()),
            }
        }
        RingCommand::SuspendMerge => {
            ring.merge_suspended = true;
            RingOutcome::ok("automerge suspended")
        }
        RingCommand::NoSuspendMerge => {
            ring.merge_suspended = false;
            if automerge && ring.membership.pending.is_some() {
                ring.merging = true;
            }
            RingOutcome::ok("automerge resumed")
        }
    };
    // A change always beats the config's initial state, saved or not.
    ring.version = ring.version.max(SETTLED_INITIAL_VERSION) + 1;
    outcome
}

/// Whether the coordinator should complete the pending change by itself now.
pub fn should_autocomplete(ring: &RingState, all_done: bool, automerge: bool) -> bool {
    automerge
        && !ring.merge_suspended
        && ring.merging
        && ring.membership.pending.is_some()
        && all_done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<NodeId> {
        ["a:1", "b:1", "c:1"]
            .iter()
            .map(|s| NodeId::new(s))
            .collect()
    }

    #[test]
    fn serviceout_then_in_with_automerge() {
        let mut ring = initial_ring(ids());
        let known = |n: &NodeId| ids().contains(n);
        let out = apply(
            &mut ring,
            &RingCommand::ServiceOut("c:1".into()),
            known,
            false,
            true,
        );
        assert!(out.ok, "{out:?}");
        assert_eq!(ring.version, SETTLED_INITIAL_VERSION + 1);
        assert!(ring.merging);
        // A second change while one is pending loses.
        let second = apply(
            &mut ring,
            &RingCommand::ServiceOut("b:1".into()),
            known,
            false,
            true,
        );
        assert!(!second.ok);
        assert_eq!(
            ring.version,
            SETTLED_INITIAL_VERSION + 1,
            "a refused command changes nothing"
        );
        assert!(!should_autocomplete(&ring, false, true));
        assert!(should_autocomplete(&ring, true, true));
        assert!(apply(&mut ring, &RingCommand::CompMerge, known, true, true).ok);
        assert_eq!(ring.membership.epoch, 1);
        assert_eq!(ring.membership.members.len(), 2);
        assert!(
            apply(
                &mut ring,
                &RingCommand::ServiceIn("c:1".into()),
                known,
                false,
                true
            )
            .ok
        );
        assert!(apply(&mut ring, &RingCommand::CompMerge, known, true, true).ok);
        assert_eq!(ring.membership.epoch, 2);
        assert_eq!(ring.membership.members.len(), 3);
    }

    #[test]
    fn manual_merge_and_abort() {
        let mut ring = initial_ring(ids());
        let known = |n: &NodeId| ids().contains(n);
        assert!(
            !apply(
                &mut ring,
                &RingCommand::ServiceIn("z:1".into()),
                known,
                false,
                false
            )
            .ok
        );
        assert!(!apply(&mut ring, &RingCommand::Merge, known, false, false).ok);
        assert!(
            apply(
                &mut ring,
                &RingCommand::ServiceOut("a:1".into()),
                known,
                false,
                false
            )
            .ok
        );
        assert!(!ring.merging, "without automerge a change waits for MERGE");
        assert!(!apply(&mut ring, &RingCommand::CompMerge, known, true, false).ok);
        assert!(apply(&mut ring, &RingCommand::Merge, known, false, false).ok);
        assert!(!apply(&mut ring, &RingCommand::CompMerge, known, false, false).ok);
        assert!(apply(&mut ring, &RingCommand::AbortMerge, known, false, false).ok);
        assert_eq!(ring.membership.members.len(), 3);
        assert_eq!(ring.membership.epoch, 1);
        assert!(apply(&mut ring, &RingCommand::SuspendMerge, known, false, true).ok);
        assert!(ring.merge_suspended);
    }
}
