//! Prometheus metrics: counters the router bumps, and the text exposition served on
//! METRICSPORT (`GET /metrics`, any path answers the same).
//!
//! The counters are atomics so the router never waits for the exporter; per-node figures come
//! from the router's last status snapshot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::status::{Live, MergeProgress, StatusReport};
use crate::link::LinkStatsSnapshot;

/// Counters and gauges of one daemon.
#[derive(Debug, Default)]
pub struct Metrics {
    routed: AtomicU64,
    routed_bytes: AtomicU64,
    errors: AtomicU64,
    no_owner: AtomicU64,
    refused_unconfirmed: AtomicU64,
    dropped: AtomicU64,
    bad_input: AtomicU64,
    control_commands: AtomicU64,
    ring_save_failures: AtomicU64,
    metrics_refused: AtomicU64,
    attachments: AtomicU64,
    server_attachments: AtomicU64,
    epoch: AtomicU64,
    peers: Mutex<BTreeMap<String, bool>>,
    merge: Mutex<MergeProgress>,
    nodes: Mutex<Option<StatusReport>>,
    links: Mutex<LinkStatsSnapshot>,
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

impl Metrics {
    /// One message routed, `bytes` of body.
    pub fn add_routed(&self, bytes: usize) {
        bump(&self.routed, 1);
        bump(&self.routed_bytes, bytes as u64);
    }
    /// A request refused with an error answer.
    pub fn add_errors(&self) {
        bump(&self.errors, 1);
    }
    /// A request with no live owner.
    pub fn add_no_owner(&self) {
        bump(&self.no_owner, 1);
    }
    /// A replication request refused for one owner that is unreachable here but not confirmed
    /// DOWN by a majority of the server nodes ([`super::down_votes`]).
    pub fn add_refused_unconfirmed(&self) {
        bump(&self.refused_unconfirmed, 1);
    }
    /// How many [`Self::add_refused_unconfirmed`] so far.
    pub fn refused_unconfirmed(&self) -> u64 {
        self.refused_unconfirmed.load(Ordering::Relaxed)
    }
    /// A message that could not be delivered and had nobody to tell.
    pub fn add_dropped(&self) {
        bump(&self.dropped, 1);
    }
    /// Malformed input from a peer or a control client.
    pub fn add_bad_input(&self) {
        bump(&self.bad_input, 1);
    }
    /// A control command served.
    pub fn add_control(&self) {
        bump(&self.control_commands, 1);
    }
    /// The ring file could not be written.
    pub fn add_ring_save_failure(&self) {
        bump(&self.ring_save_failures, 1);
    }
    /// A metrics connection closed unanswered (a host not admitted, or too many at once).
    pub fn add_metrics_refused(&self) {
        bump(&self.metrics_refused, 1);
    }
    /// Attachment counts.
    pub fn set_attachments(&self, all: u64, servers: u64) {
        self.attachments.store(all, Ordering::Relaxed);
        self.server_attachments.store(servers, Ordering::Relaxed);
    }
    /// Current epoch.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }
    /// A peer's link state.
    pub fn set_peer_up(&self, peer: &str, up: bool) {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.to_string(), up);
    }
    /// Merge progress.
    pub fn set_merge(&self, p: &MergeProgress) {
        *self.merge.lock().unwrap_or_else(|p| p.into_inner()) = *p;
    }
    /// The last status snapshot.
    pub fn set_nodes(&self, r: &StatusReport) {
        *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
    }

    /// The link layer's counters (refused connections, failed handshakes, bad frames).
    pub fn set_link_stats(&self, s: LinkStatsSnapshot) {
        *self.links.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "chmpx_messages_routed_total",
            "Messages routed (local and from peers).",
            get(&self.routed),
        );
        counter(
            &mut out,
            "chmpx_message_bytes_total",
            "Body bytes of the messages routed.",
            get(&self.routed_bytes),
        );
        counter(
            &mut out,
            "chmpx_request_errors_total",
            "Requests answered with a chmpx error.",
            get(&self.errors),
        );
        let links = *self.links.lock().unwrap_or_else(|p| p.into_inner());
        counter(
            &mut out,
            "chmpx_link_refused_connections_total",
            "Inbound data-port connections refused (unknown host, failed handshake, limits).",
            links.refused_connections,
        );
        counter(
            &mut out,
            "chmpx_link_handshake_failures_total",
            "Link handshakes that failed either way (TLS, secret, cluster, protocol).",
            links.handshake_failures,
        );
        counter(
            &mut out,
            "chmpx_link_bad_frames_total",
            "Frames from peers that could not be decoded or broke the protocol.",
            links.bad_frames,
        );
        counter(
            &mut out,
            "chmpx_no_owner_total",
            "Requests for which no owner was live.",
            get(&self.no_owner),
        );
        counter(
            &mut out,
            "chmpx_writes_refused_owner_unconfirmed_total",
            "Replication requests refused for an owner unreachable here but not confirmed \
             DOWN by a majority of the server nodes (the write is not acknowledged).",
            get(&self.refused_unconfirmed),
        );
        counter(
            &mut out,
            "chmpx_messages_dropped_total",
            "Messages that could not be delivered.",
            get(&self.dropped),
        );
        counter(
            &mut out,
            "chmpx_bad_input_total",
            "Malformed frames or messages refused.",
            get(&self.bad_input),
        );
        counter(
            &mut out,
            "chmpx_control_commands_total",
            "Control commands served.",
            get(&self.control_commands),
        );
        counter(
            &mut out,
            "chmpx_ring_save_failures_total",
            "Ring state changes that could not be written to the ring file in DATADIR.",
            get(&self.ring_save_failures),
        );
        counter(
            &mut out,
            "chmpx_metrics_refused_connections_total",
            "Metrics connections closed unanswered: from a host that is not this one, a \
             configured host or in METRICSALLOW, or past the connection limit.",
            get(&self.metrics_refused),
        );
        gauge(
            &mut out,
            "chmpx_attachments",
            "Processes attached.",
            get(&self.attachments) as f64,
        );
        gauge(
            &mut out,
            "chmpx_server_attachments",
            "Server-role processes attached.",
            get(&self.server_attachments) as f64,
        );
        gauge(
            &mut out,
            "chmpx_epoch",
            "Epoch of the current placement map.",
            get(&self.epoch) as f64,
        );
        let _ = writeln!(
            out,
            "# HELP chmpx_peer_up Link state per peer (1 = UP).\n# TYPE chmpx_peer_up gauge"
        );
        for (peer, up) in self.peers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "chmpx_peer_up{{peer=\"{}\"}} {}",
                escape(peer),
                u8::from(*up)
            );
        }
        let m = *self.merge.lock().unwrap_or_else(|p| p.into_inner());
        gauge(
            &mut out,
            "chmpx_merge_slots_done",
            "Slots reconciled by the current merge.",
            f64::from(m.slots_done),
        );
        gauge(
            &mut out,
            "chmpx_merge_slots_total",
            "Slots to reconcile in the current merge.",
            f64::from(m.slots_total),
        );
        gauge(
            &mut out,
            "chmpx_merge_items_moved",
            "Items copied by the current merge.",
            m.items_moved as f64,
        );
        gauge(
            &mut out,
            "chmpx_merge_bytes_moved",
            "Bytes copied by the current merge.",
            m.bytes_moved as f64,
        );
        // Cumulative since the daemon started (benchmarks read these before and after a run).
        let t = m.totals;
        for (name, help, v) in [
            (
                "chmpx_merge_jobs_total",
                "Merge jobs started (membership and recovery).",
                t.jobs,
            ),
            (
                "chmpx_merge_items_moved_total",
                "Items copied between owners by merges and hand-offs.",
                t.items_moved,
            ),
            (
                "chmpx_merge_bytes_moved_total",
                "Bytes of the items copied between owners by merges and hand-offs.",
                t.bytes_moved,
            ),
            (
                "chmpx_merge_items_dropped_total",
                "Items dropped from slots this node no longer owns, after hand-off.",
                t.items_dropped,
            ),
            (
                "chmpx_merge_bytes_dropped_total",
                "Bytes of the items dropped after hand-off.",
                t.bytes_dropped,
            ),
            (
                "chmpx_merge_tombstones_purged_total",
                "Tombstones purged on every owner by this node's purge passes.",
                t.tombstones_purged,
            ),
            (
                "chmpx_merge_slots_failed_total",
                "Slots a merge, hand-off or purge could not finish (retried later).",
                t.slots_failed,
            ),
            (
                "chmpx_merge_timeouts_total",
                "Merge jobs stopped by MERGETIMEOUT (retried).",
                t.jobs_timed_out,
            ),
            (
                "chmpx_antientropy_rounds_total",
                "Anti-entropy rounds this node ran over the slots it is first owner of.",
                t.antientropy_rounds,
            ),
            (
                "chmpx_antientropy_slots_compared_total",
                "Slots whose owners' digests anti-entropy compared.",
                t.antientropy_slots_compared,
            ),
            (
                "chmpx_antientropy_slots_repaired_total",
                "Slots whose owners differed and that anti-entropy merged.",
                t.antientropy_slots_repaired,
            ),
        ] {
            counter(&mut out, name, help, v);
        }
        if let Some(r) = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = writeln!(out, "# HELP chmpx_node_up Node liveness as seen here (1 = UP).\n# TYPE chmpx_node_up gauge");
            for n in &r.nodes {
                let _ = writeln!(
                    out,
                    "chmpx_node_up{{node=\"{}\"}} {}",
                    escape(&n.id),
                    u8::from(n.live == Live::Up)
                );
            }
            let _ = writeln!(
                out,
                "# HELP chmpx_node_slots Slots owned per node.\n# TYPE chmpx_node_slots gauge"
            );
            for n in &r.nodes {
                let _ = writeln!(
                    out,
                    "chmpx_node_slots{{node=\"{}\"}} {}",
                    escape(&n.id),
                    n.slots_owned
                );
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labels() {
        let m = Metrics::default();
        m.add_routed(10);
        m.add_routed(5);
        m.set_peer_up("a\"b:1", true);
        m.add_refused_unconfirmed();
        m.add_refused_unconfirmed();
        assert_eq!(m.refused_unconfirmed(), 2);
        let text = m.render();
        assert!(text.contains("chmpx_writes_refused_owner_unconfirmed_total 2"));
        assert!(text.contains("# TYPE chmpx_writes_refused_owner_unconfirmed_total counter"));
        assert!(text.contains("chmpx_messages_routed_total 2"));
        assert!(text.contains("chmpx_message_bytes_total 15"));
        assert!(text.contains("chmpx_peer_up{peer=\"a\\\"b:1\"} 1"));
    }

    #[test]
    fn renders_merge_totals() {
        let m = Metrics::default();
        m.set_merge(&MergeProgress {
            items_moved: 3,
            totals: super::super::status::MergeTotals {
                items_moved: 70,
                bytes_moved: 7000,
                items_dropped: 12,
                tombstones_purged: 4,
                jobs_timed_out: 1,
                antientropy_rounds: 5,
                antientropy_slots_compared: 640,
                antientropy_slots_repaired: 2,
                ..Default::default()
            },
            ..Default::default()
        });
        let text = m.render();
        assert!(text.contains("chmpx_antientropy_rounds_total 5\n"));
        assert!(text.contains("chmpx_antientropy_slots_compared_total 640\n"));
        assert!(text.contains("chmpx_antientropy_slots_repaired_total 2\n"));
        assert!(text.contains("chmpx_merge_items_moved 3\n"));
        assert!(text.contains(
            "# TYPE chmpx_merge_items_moved_total counter\nchmpx_merge_items_moved_total 70\n"
        ));
        assert!(text.contains("chmpx_merge_bytes_moved_total 7000\n"));
        assert!(text.contains("chmpx_merge_items_dropped_total 12\n"));
        assert!(text.contains("chmpx_merge_tombstones_purged_total 4\n"));
        assert!(text.contains("chmpx_merge_timeouts_total 1\n"));
    }
}
