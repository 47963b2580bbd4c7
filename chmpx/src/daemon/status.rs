//! The status model: what a daemon reports about every node as it sees it, and its text forms.
//!
//! [`StatusReport`] is what the `STATUSJSON` control command returns (one line of JSON) and what
//! `chmpxstatus` reads; [`render_table`] and [`render_self`] are the text forms of `ALLSTATUS`,
//! `SELFSTATUS` and the status tool. The state words follow CHMPX's node status model (LIVE,
//! RING, ACTION, OPERATE, SUSPEND), printed the way CHMPX's tools print them.

use serde::{Deserialize, Serialize};

/// Whether a node is reachable (LIVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Live {
    /// Reachable (or this node itself).
    Up,
    /// Not reachable within the heartbeat timeout.
    Down,
}

/// A node's place in the ring (RING).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ring {
    /// A server node in the current member list.
    ServiceIn,
    /// A server node outside the current member list.
    ServiceOut,
    /// A slave node: routes only, owns nothing.
    Slave,
}

/// What a pending membership change does to a node (ACTION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Not concerned by a pending change.
    None,
    /// Joins with the pending change.
    Add,
    /// Leaves with the pending change.
    Delete,
}

/// Where a node is in a merge (OPERATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergeState {
    /// No merge concerns it.
    Nothing,
    /// A merge is needed and has not started (waiting for MERGE, or suspended).
    Pending,
    /// Merging.
    Doing,
    /// Done merging; waiting for the others and completion.
    Done,
}

/// Progress of a node's merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeProgress {
    /// Slots reconciled.
    pub slots_done: u32,
    /// Slots to reconcile.
    pub slots_total: u32,
    /// Items copied, both ways.
    pub items_moved: u64,
    /// Bytes of the items copied.
    pub bytes_moved: u64,
    /// Seconds since the merge started.
    pub elapsed_secs: f64,
    /// Estimated seconds left (from the slot rate so far), if it can be told.
    pub eta_secs: Option<f64>,
    /// Totals since the daemon started, over every merge, hand-off and purge pass.
    #[serde(default)]
    pub totals: MergeTotals,
}

/// What a node's merges did since its daemon started (cumulative; never reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeTotals {
    /// Merge jobs started (membership, recovery); hand-off and purge passes not counted.
    #[serde(default)]
    pub jobs: u64,
    /// Items copied between owners (merges and hand-offs, both ways).
    #[serde(default)]
    pub items_moved: u64,
    /// Bytes of the items copied.
    #[serde(default)]
    pub bytes_moved: u64,
    /// Items this node deleted from slots it no longer owns, after handing them off.
    #[serde(default)]
    pub items_dropped: u64,
    /// Bytes of those items.
    #[serde(default)]
    pub bytes_dropped: u64,
    /// Tombstones purged by purge passes this node ran (on every owner of its slots).
    #[serde(default)]
    pub tombstones_purged: u64,
    /// Slots a job could not reconcile (peer or server unreachable, error answer).
    #[serde(default)]
    pub slots_failed: u64,
    /// Merge jobs stopped by MERGETIMEOUT (they are retried).
    #[serde(default)]
    pub jobs_timed_out: u64,
    /// Anti-entropy rounds this node ran (ANTIENTROPY; it drives the slots it is first owner of).
    #[serde(default)]
    pub antientropy_rounds: u64,
    /// Slots whose owners' digests anti-entropy rounds compared.
    #[serde(default)]
    pub antientropy_slots_compared: u64,
    /// Slots whose owners' digests differed and that anti-entropy merged.
    #[serde(default)]
    pub antientropy_slots_repaired: u64,
}

/// One node as the reporting daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// "host:ctlport".
    pub id: String,
    /// Host name or address from the config.
    pub host: String,
    /// Data port (none for a slave).
    pub port: Option<u16>,
    /// Control port.
    pub ctlport: u16,
    /// Whether this is the reporting node.
    pub is_self: bool,
    /// LIVE.
    pub live: Live,
    /// RING.
    pub ring: Ring,
    /// ACTION.
    pub action: Action,
    /// OPERATE.
    pub merge: MergeState,
    /// Merge progress, when merging or done.
    pub progress: Option<MergeProgress>,
    /// Whether a server-role process is attached to that node's chmpx (CHMPX's NOSUSPEND).
    pub server_attached: bool,
    /// Slots it owns at any rank in the current map.
    pub slots_owned: u32,
    /// Slots where it is the primary in the current map.
    pub slots_primary: u32,
    /// Messages per second it routed (last window), as it last reported.
    pub msgs_per_sec: f64,
    /// For a server node the reporting node cannot reach: whether a majority of the server
    /// nodes sees it DOWN (`true`: writes go on without it), or not (`false`: writes on the
    /// slots the reporter shares with it are refused, see `chmpx::daemon::down_votes`).
    /// `None` for a reachable node, a slave or the reporter itself.
    #[serde(default)]
    pub down_confirmed: Option<bool>,
}

/// Counts of processes attached to the reporting daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachCounts {
    /// Client-role processes.
    pub clients: u32,
    /// Server-role processes.
    pub servers: u32,
}

/// Everything `STATUSJSON` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Cluster name (GROUP).
    pub cluster: String,
    /// The reporting node's id.
    pub self_id: String,
    /// "server" or "slave".
    pub mode: String,
    /// chmpx version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Epoch of the current placement map.
    pub epoch: u64,
    /// Epoch of the pending map, if a change is pending.
    pub pending_epoch: Option<u64>,
    /// Slots in the hash space.
    pub slot_count: u32,
    /// REPLICA.
    pub replica: u32,
    /// AUTOMERGE as configured.
    pub automerge: bool,
    /// Whether SUSPENDMERGE is in force.
    pub merge_suspended: bool,
    /// The node that orders membership changes (lowest id among live servers), as seen here.
    pub coordinator: Option<String>,
    /// Processes attached here.
    pub attachments: AttachCounts,
    /// Replication requests this node refused since it started because an owner was
    /// unreachable here but not confirmed DOWN by a majority of the server nodes.
    #[serde(default)]
    pub writes_refused_unconfirmed: u64,
    /// Every configured node.
    pub nodes: Vec<NodeStatus>,
}

impl Live {
    /// CHMPX's word.
    pub fn word(self) -> &'static str {
        match self {
            Live::Up => "UP",
            Live::Down => "DOWN",
        }
    }
}

impl Ring {
    /// CHMPX's word.
    pub fn word(self) -> &'static str {
        match self {
            Ring::ServiceIn => "SERVICE IN",
            Ring::ServiceOut => "SERVICE OUT",
            Ring::Slave => "SLAVE",
        }
    }
}

impl Action {
    /// CHMPX's word.
    pub fn word(self) -> &'static str {
        match self {
            Action::None => "n/a",
            Action::Add => "ADD",
            Action::Delete => "DELETE",
        }
    }
}

impl MergeState {
    /// CHMPX's word.
    pub fn word(self) -> &'static str {
        match self {
            MergeState::Nothing => "Nothing",
            MergeState::Pending => "Pending",
            MergeState::Doing => "Doing",
            MergeState::Done => "Done",
        }
    }
}

fn progress_text(node: &NodeStatus) -> String {
    match node.progress {
        Some(p) if node.merge != MergeState::Nothing => {
            let eta = p
                .eta_secs
                .map(|s| format!(" eta {s:.0}s"))
                .unwrap_or_default();
            format!(
                "{}/{} slots {} items {} B{eta}{}",
                p.slots_done,
                p.slots_total,
                p.items_moved,
                p.bytes_moved,
                timeouts_text(&p.totals)
            )
        }
        Some(p) if p.totals != MergeTotals::default() => {
            let t = p.totals;
            format!(
                "total moved {} items {} B, dropped {} items, purged {} tombstones{}",
                t.items_moved,
                t.bytes_moved,
                t.items_dropped,
                t.tombstones_purged,
                timeouts_text(&t)
            )
        }
        _ => "-".to_string(),
    }
}

fn timeouts_text(t: &MergeTotals) -> String {
    let mut out = if t.jobs_timed_out > 0 {
        format!(" (MERGETIMEOUT x{})", t.jobs_timed_out)
    } else {
        String::new()
    };
    if t.antientropy_slots_repaired > 0 {
        out.push_str(&format!(
            ", anti-entropy repaired {} of {} slots compared",
            t.antientropy_slots_repaired, t.antientropy_slots_compared
        ));
    }
    out
}

/// The node table as text, one row per node, with a header line above.
pub fn render_table(report: &StatusReport) -> String {
    let mut out = format!(
        "cluster {}  seen from {} ({})  epoch {}{}  slots {}  replica {}  automerge {}{}\n",
        report.cluster,
        report.self_id,
        report.mode,
        report.epoch,
        report
            .pending_epoch
            .map(|e| format!(" (pending {e})"))
            .unwrap_or_default(),
        report.slot_count,
        report.replica,
        if report.automerge { "on" } else { "off" },
        if report.merge_suspended {
            " (suspended)"
        } else {
            ""
        },
    );
    out.push_str(&format!(
        "{:<24} {:>6} {:>6} {:<5} {:<12} {:<7} {:<8} {:<10} {:>6} {:>6} {:>10}  {}\n",
        "NODE",
        "PORT",
        "CTL",
        "LIVE",
        "RING",
        "ACTION",
        "MERGE",
        "SERVER",
        "SLOTS",
        "PRIM",
        "MSG/S",
        "PROGRESS"
    ));
    for n in &report.nodes {
        let name = if n.is_self {
            format!("*{}", n.id)
        } else {
            n.id.clone()
        };
        out.push_str(&format!(
            "{:<24} {:>6} {:>6} {:<5} {:<12} {:<7} {:<8} {:<10} {:>6} {:>6} {:>10.1}  {}\n",
            name,
            n.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            n.ctlport,
            live_text(n),
            n.ring.word(),
            n.action.word(),
            n.merge.word(),
            if n.server_attached {
                "NoSuspend"
            } else {
                "Suspend"
            },
            n.slots_owned,
            n.slots_primary,
            n.msgs_per_sec,
            progress_text(n),
        ));
    }
    out.push_str(&unconfirmed_text(report));
    out
}

/// LIVE as the table shows it: `DOWN?` for a node unreachable here that a majority of the
/// server nodes does not see DOWN.
fn live_text(n: &NodeStatus) -> &'static str {
    match (n.live, n.down_confirmed) {
        (Live::Down, Some(false)) => "DOWN?",
        (live, _) => live.word(),
    }
}

/// The note under the table about owners unreachable here but not confirmed DOWN.
fn unconfirmed_text(report: &StatusReport) -> String {
    let unconfirmed: Vec<&str> = report
        .nodes
        .iter()
        .filter(|n| n.down_confirmed == Some(false))
        .map(|n| n.id.as_str())
        .collect();
    if unconfirmed.is_empty() && report.writes_refused_unconfirmed == 0 {
        return String::new();
    }
    let mut out = String::new();
    if !unconfirmed.is_empty() {
        out.push_str(&format!(
            "DOWN? unreachable from here, not confirmed DOWN by a majority of the server nodes \
             (writes on the slots shared with it are refused): {}\n",
            unconfirmed.join(", ")
        ));
    }
    out.push_str(&format!(
        "writes refused for an unconfirmed owner since start: {}\n",
        report.writes_refused_unconfirmed
    ));
    out
}

/// The reporting node's own status as `KEY: value` lines.
pub fn render_self(report: &StatusReport) -> String {
    let mut out = format!(
        "cluster: {}\nid: {}\nmode: {}\nversion: {}\nuptime: {}s\nepoch: {}\n",
        report.cluster,
        report.self_id,
        report.mode,
        report.version,
        report.uptime_secs,
        report.epoch
    );
    if let Some(e) = report.pending_epoch {
        out.push_str(&format!("pending epoch: {e}\n"));
    }
    out.push_str(&format!(
        "attached: {} clients, {} servers\n",
        report.attachments.clients, report.attachments.servers
    ));
    if let Some(n) = report.nodes.iter().find(|n| n.is_self) {
        out.push_str(&format!(
            "status: [{}] [{}] [{}] [{}] [{}]\nslots: {} owned, {} primary\nprogress: {}\n",
            n.live.word(),
            n.ring.word(),
            n.action.word(),
            n.merge.word(),
            if n.server_attached {
                "NoSuspend"
            } else {
                "Suspend"
            },
            n.slots_owned,
            n.slots_primary,
            progress_text(n),
        ));
    }
    out.push_str(&unconfirmed_text(report));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            cluster: "T".into(),
            self_id: "127.0.0.1:8021".into(),
            mode: "server".into(),
            version: "0.1.0".into(),
            uptime_secs: 3,
            epoch: 2,
            pending_epoch: Some(3),
            slot_count: 1024,
            replica: 1,
            automerge: true,
            merge_suspended: false,
            coordinator: Some("127.0.0.1:8021".into()),
            attachments: AttachCounts {
                clients: 1,
                servers: 1,
            },
            writes_refused_unconfirmed: 0,
            nodes: vec![NodeStatus {
                id: "127.0.0.1:8021".into(),
                host: "127.0.0.1".into(),
                port: Some(8020),
                ctlport: 8021,
                is_self: true,
                live: Live::Up,
                ring: Ring::ServiceIn,
                action: Action::Add,
                merge: MergeState::Doing,
                progress: Some(MergeProgress {
                    slots_done: 3,
                    slots_total: 9,
                    ..Default::default()
                }),
                server_attached: true,
                slots_owned: 600,
                slots_primary: 300,
                msgs_per_sec: 12.5,
                down_confirmed: None,
            }],
        }
    }

    #[test]
    fn json_round_trips() {
        let r = report();
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains('\n'));
        assert_eq!(serde_json::from_str::<StatusReport>(&text).unwrap(), r);
    }

    #[test]
    fn totals_show_when_idle_and_timeouts_always() {
        let mut r = report();
        r.nodes[0].merge = MergeState::Nothing;
        r.nodes[0].progress = Some(MergeProgress {
            totals: MergeTotals {
                items_moved: 7,
                items_dropped: 5,
                tombstones_purged: 2,
                jobs_timed_out: 1,
                ..Default::default()
            },
            ..Default::default()
        });
        let t = render_table(&r);
        assert!(t.contains("total moved 7 items"), "{t}");
        assert!(t.contains("dropped 5 items, purged 2 tombstones (MERGETIMEOUT x1)"));
        // A progress record from an older daemon (no totals field) still reads.
        let old = r#"{"slots_done":1,"slots_total":2,"items_moved":3,"bytes_moved":4,"elapsed_secs":1.0,"eta_secs":null}"#;
        let p: MergeProgress = serde_json::from_str(old).unwrap();
        assert_eq!(p.totals, MergeTotals::default());
    }

    #[test]
    fn antientropy_repairs_show_in_the_table() {
        let mut r = report();
        r.nodes[0].merge = MergeState::Nothing;
        r.nodes[0].progress = Some(MergeProgress {
            totals: MergeTotals {
                items_moved: 4,
                antientropy_rounds: 3,
                antientropy_slots_compared: 640,
                antientropy_slots_repaired: 2,
                ..Default::default()
            },
            ..Default::default()
        });
        let t = render_table(&r);
        assert!(
            t.contains("anti-entropy repaired 2 of 640 slots compared"),
            "{t}"
        );
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"antientropy_slots_repaired\":2"), "{text}");
    }

    #[test]
    fn table_shows_states() {
        let t = render_table(&report());
        assert!(t.contains("*127.0.0.1:8021"));
        assert!(t.contains("SERVICE IN"));
        assert!(t.contains("Doing"));
        assert!(t.contains("3/9 slots"));
        let s = render_self(&report());
        assert!(s.contains("[UP] [SERVICE IN] [ADD] [Doing] [NoSuspend]"));
        assert!(!t.contains("DOWN?") && !t.contains("writes refused"));
    }

    #[test]
    fn unconfirmed_down_owners_show_with_the_refused_count() {
        let mut r = report();
        let mut peer = r.nodes[0].clone();
        peer.id = "127.0.0.1:8031".into();
        peer.is_self = false;
        peer.live = Live::Down;
        peer.down_confirmed = Some(false);
        r.nodes.push(peer);
        r.writes_refused_unconfirmed = 7;
        let t = render_table(&r);
        assert!(t.contains("DOWN? "), "{t}");
        assert!(t.contains("majority of the server nodes"), "{t}");
        assert!(t.contains(": 127.0.0.1:8031\n"), "{t}");
        assert!(t.contains("since start: 7"), "{t}");
        let s = render_self(&r);
        assert!(s.contains("since start: 7"), "{s}");
        // Confirmed DOWN: plain DOWN, no note about it.
        r.nodes[1].down_confirmed = Some(true);
        let t = render_table(&r);
        assert!(
            !t.contains("DOWN?") && !t.contains("127.0.0.1:8031\n"),
            "{t}"
        );
        // A report from an older daemon (no such fields) still reads.
        let mut v = serde_json::to_value(&r).unwrap();
        v.as_object_mut()
            .unwrap()
            .remove("writes_refused_unconfirmed");
        v["nodes"][1]
            .as_object_mut()
            .unwrap()
            .remove("down_confirmed");
        let old: StatusReport = serde_json::from_value(v).unwrap();
        assert_eq!(old.writes_refused_unconfirmed, 0);
        assert_eq!(old.nodes[1].down_confirmed, None);
    }
}
