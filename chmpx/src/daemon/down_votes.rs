//! Whether a server node this node cannot reach is DOWN for the cluster, or only for this node.
//!
//! With ACKLEVEL `all` a write is acknowledged once every *live* owner of its slot has it. If a
//! node left out every owner it cannot reach, two owners that lost only the link between them
//! (a one-way DROP kills a TCP link both ways) would each act as the slot's primary and
//! acknowledge fenced writes (CAS, incr, add, ...) alone, from the same old value: a lost
//! update. So a router leaves an unreachable owner out of a write's acknowledgements only when
//! a majority of the configured server nodes see it DOWN:
//!
//! - every server node gossips the server nodes it sees DOWN in its status
//!   ([`super::wire::PeerStatus::down`]); a view counts as a vote only when it arrived within
//!   the heartbeat timeout (at least a few gossip intervals) over a link that is UP here (a
//!   stale view does not count), and this node's own view counts when it is a server node;
//! - the target cannot vote for itself, but it counts in the total: "majority" is more than
//!   half of all the configured server nodes;
//! - exactly half is a majority only when the voters include the tie-break node, the server
//!   node with the lowest id (the coordinator when every node is UP): of two disjoint halves
//!   only one can hold it. This is what keeps a 2-server cluster writable when its second
//!   node dies (and only then: when the tie-break node dies, the other stops acknowledging
//!   writes on the slots it shared with it until it is back).
//!
//! Why this stops two primaries: a node's view reaches another over their link only while the
//! sender sees the receiver UP, so the nodes whose votes excuse owner B at owner A all see A
//! UP, and those excusing A at B all see B UP. Two majorities (or two tie-winning halves) of
//! one set of nodes cannot be disjoint, so A and B cannot both excuse each other, except
//! within the heartbeat timeout a vote may be old (a leases-free bound, not a proof against
//! clocks that stall longer than that, which the freeze watch handles separately).
//!
//! Must never depend on: I/O, the router's tables. Pure.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The last DOWN view received from each server peer.
#[derive(Debug, Default)]
pub struct DownVotes {
    views: HashMap<u64, (Instant, HashSet<u64>)>,
}

impl DownVotes {
    /// An empty table.
    pub fn new() -> DownVotes {
        DownVotes::default()
    }

    /// Records `voter`'s view, received at `at`: the server nodes it sees DOWN.
    pub fn record(&mut self, voter: u64, at: Instant, down: impl IntoIterator<Item = u64>) {
        self.views.insert(voter, (at, down.into_iter().collect()));
    }

    /// Forgets `voter`'s view (its link went DOWN: it can no longer speak for the cluster).
    pub fn forget(&mut self, voter: u64) {
        self.views.remove(&voter);
    }

    /// The peers whose view, received no longer than `max_age` before `now`, has `target`
    /// DOWN, among those `counts` accepts (their link is UP here).
    pub fn voters_seeing_down(
        &self,
        target: u64,
        now: Instant,
        max_age: Duration,
        counts: impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .views
            .iter()
            .filter(|(voter, (at, down))| {
                **voter != target
                    && now.saturating_duration_since(*at) <= max_age
                    && down.contains(&target)
                    && counts(**voter)
            })
            .map(|(voter, _)| *voter)
            .collect();
        out.sort_unstable();
        out
    }
}

/// Whether `voters` (server nodes that see `target` DOWN, each counted once) are a majority of
/// the configured server nodes `servers` (the target included): more than half, or exactly
/// half including `tie_break`. Voters that are not configured servers, and the target itself,
/// do not count.
pub fn confirmed_down(servers: &[u64], tie_break: u64, target: u64, voters: &[u64]) -> bool {
    let total = servers.len();
    let counted: HashSet<u64> = voters
        .iter()
        .copied()
        .filter(|v| *v != target && servers.contains(v))
        .collect();
    let votes = counted.len();
    if votes == 0 {
        return false;
    }
    2 * votes > total || (2 * votes == total && counted.contains(&tie_break))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(2_000);

    #[test]
    fn strict_majority_of_all_servers_is_needed() {
        let servers = [1, 2, 3];
        // Node 1 alone sees 2 DOWN (the 1-2 link is cut, 3 still reaches 2): not confirmed.
        assert!(!confirmed_down(&servers, 1, 2, &[1]));
        // 1 and 3 see it DOWN: a real death.
        assert!(confirmed_down(&servers, 1, 2, &[1, 3]));
        // The target's own vote and votes of unknown nodes do not count; duplicates count once.
        assert!(!confirmed_down(&servers, 1, 2, &[1, 2]));
        assert!(!confirmed_down(&servers, 1, 2, &[1, 9]));
        assert!(!confirmed_down(&servers, 1, 2, &[1, 1]));
        assert!(!confirmed_down(&servers, 1, 2, &[]));
        // Five servers: two of them are a minority, three a majority.
        let five = [1, 2, 3, 4, 5];
        assert!(!confirmed_down(&five, 1, 5, &[1, 2]));
        assert!(confirmed_down(&five, 1, 5, &[2, 3, 4]));
    }

    #[test]
    fn exactly_half_needs_the_tie_break_node() {
        // Two servers: the tie-break node (1) may go on alone, the other may not.
        assert!(confirmed_down(&[1, 2], 1, 2, &[1]));
        assert!(!confirmed_down(&[1, 2], 1, 1, &[2]));
        // Four servers split 2/2: only the half holding node 1 excuses the other half.
        let four = [1, 2, 3, 4];
        assert!(confirmed_down(&four, 1, 3, &[1, 2]));
        assert!(confirmed_down(&four, 1, 4, &[1, 2]));
        assert!(!confirmed_down(&four, 1, 1, &[3, 4]));
        assert!(!confirmed_down(&four, 1, 2, &[3, 4]));
        // Three of four is a majority without the tie-break node.
        assert!(confirmed_down(&four, 1, 1, &[2, 3, 4]));
    }

    #[test]
    fn two_owners_cut_from_each_other_cannot_both_excuse_the_other() {
        // Owners 1 and 2 lost their link; 3 reaches both and sees both UP. Whatever the
        // tie-break, neither is confirmed DOWN: both refuse to acknowledge alone.
        let servers = [1, 2, 3];
        let now = Instant::now();
        let mut at_1 = DownVotes::new();
        at_1.record(3, now, []);
        let v = at_1.voters_seeing_down(2, now, HB, |_| true);
        let mut with_self = v.clone();
        with_self.push(1);
        assert!(!confirmed_down(&servers, 1, 2, &with_self));
        let mut at_2 = DownVotes::new();
        at_2.record(3, now, []);
        let mut with_self = at_2.voters_seeing_down(1, now, HB, |_| true);
        with_self.push(2);
        assert!(!confirmed_down(&servers, 1, 1, &with_self));
    }

    #[test]
    fn stale_views_and_views_over_a_down_link_do_not_count() {
        let now = Instant::now();
        let old = now - Duration::from_millis(2_500);
        let mut votes = DownVotes::new();
        votes.record(3, old, [2]);
        votes.record(4, now, [2]);
        votes.record(5, now, [1]);
        assert_eq!(votes.voters_seeing_down(2, now, HB, |_| true), vec![4]);
        // Node 4's link is DOWN here: its view cannot be current.
        assert!(votes.voters_seeing_down(2, now, HB, |v| v != 4).is_empty());
        // A fresh view replaces the old one; a forgotten voter no longer counts.
        votes.record(3, now, [2, 5]);
        assert_eq!(votes.voters_seeing_down(2, now, HB, |_| true), vec![3, 4]);
        votes.forget(3);
        assert_eq!(votes.voters_seeing_down(2, now, HB, |_| true), vec![4]);
        // A view that says nothing about the target, or a target voting for itself: no vote.
        votes.record(2, now, [2]);
        assert_eq!(votes.voters_seeing_down(2, now, HB, |_| true), vec![4]);
    }
}
