//! The router: one task that owns the node table, the ring state and the placement maps, and
//! moves every message — from local attachments, from peers, from the control port and from the
//! merge engine. Owning all of it in one task keeps routing free of locks.
//!
//! ```text
//!  attached process ──LocalEvent──▶ ┐                      ┌──▶ LocalPort::deliver (attachments)
//!  peer chmpx ────────LinkEvent───▶ ├─ Router::handle_* ──┤
//!  control port ──────RouterCmd───▶ │                      ├──▶ LinkHandle::try_send (peers)
//!  merge engine ──────RouterCmd───▶ ┘                      └──▶ merge engine (answers, jobs)
//! ```
//!
//! A request sent to a server process carries, as its route, the reply route back to its origin
//! (`Route::Reply{origin node, origin attachment, msg_id}`); the server answers with that route,
//! so answers need no table here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::command::Command;
use super::down_votes::{confirmed_down, DownVotes};
use super::freeze::FreezeWatch;
use super::limits::*;
use super::merge_engine::{self, JobKind, MergeJob, MergeShared};
use super::metrics::Metrics;
use super::ring::{self, RingOutcome};
use super::ring_file;
use super::settings::{DaemonSettings, Mode};
use super::status::{
    Action, AttachCounts, Live, MergeState, MergeTotals, NodeStatus, Ring, StatusReport,
};
use super::wire::{
    node_number, PeerMsg, PeerStatus, RingCommand, RingState, WireRoute, FLAG_CHMPX_ERROR,
    FLAG_SOLE_OWNER, FLAG_TARGET_COUNT, FLAG_UNMERGED,
};
use crate::attach::envelope::{Envelope, Kind, Route};
use crate::link::{DataMsg, LinkEvent, LinkHandle, Outgoing};
use crate::placement::{NodeId, PlacementMap};

/// Attachment id the router uses for merge requests of its own merge engine.
pub const RPC_ATTACHMENT: u64 = u64::MAX;
/// Attachment id the router uses for merge requests relayed for a peer's merge engine.
pub const RELAY_ATTACHMENT: u64 = u64::MAX - 1;

/// How long a recovery merge that could not reconcile some slots waits before it tries again.
const RECOVERY_RETRY_DELAY_MS: u64 = 1_000;

/// How long a recovery merge that gates reads waits, after it is asked for, to learn which
/// peers have their server attached (their status arrives within a gossip interval or two).
const RECOVERY_GRACE_MS: u64 = 600;

/// Longest time a server peer that came back is treated as returning (its data may be behind
/// what the owners that stayed acknowledged) when it neither gates itself nor is seen to finish
/// a merge: a safety net, so a peer that never merges (AUTOMERGE off, no shared slot) is not
/// avoided for ever.
pub const RETURN_GATE_MAX_MS: u64 = 30_000;

/// A peer's DOWN view counts as a vote for at least this many status gossip intervals
/// ([`STATUS_GOSSIP_INTERVAL_MS`]), however short the heartbeat timeout.
pub const VOTE_GOSSIP_INTERVALS: u64 = 3;

/// What the local attach transport reports.
#[derive(Debug)]
pub enum LocalEvent {
    /// A process attached; `server` when it attached in the server role.
    Attached {
        /// Attachment id.
        id: u64,
        /// Server role.
        server: bool,
    },
    /// A process detached or died.
    Detached {
        /// Attachment id.
        id: u64,
    },
    /// A message from an attachment.
    Message {
        /// Attachment id.
        from: u64,
        /// The message.
        env: Envelope,
    },
}

/// How the router hands messages to local attachments.
pub trait LocalPort: Send {
    /// Delivers `env` to attachment `to`; an error text when it cannot (gone, ring full).
    fn deliver(&mut self, to: u64, env: Envelope) -> Result<(), String>;

    /// Wakes the attachments `deliver` left unwoken since the last call. A port may hold its
    /// wake-ups until then, so one batch of routed messages costs one wake-up per destination;
    /// the router's owner calls [`Router::flush_local`] after every batch, before it sleeps.
    fn flush(&mut self) {}

    /// Records in every attachment that the placement (map in force, pending map) changes
    /// now, before the change is acted on (see [`FLAG_SOLE_OWNER`]).
    fn placement_changed(&mut self) {}
}

/// Requests to the router from other tasks.
pub enum RouterCmd {
    /// A control command; the answer is (ok, text).
    Control {
        /// The command.
        cmd: Command,
        /// Where the answer goes.
        reply: oneshot::Sender<(bool, String)>,
    },
    /// A merge request for `node`'s server process, from the merge engine.
    ServerRpc {
        /// Target node.
        node: NodeId,
        /// Merge body.
        body: Vec<u8>,
        /// The server's answer body, or an error text.
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
}

struct NodeState {
    id: NodeId,
    num: u64,
    host: String,
    mode: Mode,
    port: Option<u16>,
    ctlport: u16,
    up: bool,
    server_attached: bool,
    merge: MergeState,
    /// The pending epoch `merge` refers to (0: a recovery merge).
    merge_epoch: u64,
    progress: Option<super::status::MergeProgress>,
    unfinished: HashSet<u32>,
    msgs_per_sec: f64,
    /// The link to this peer went DOWN after it had been UP: once it is back with its server
    /// attached, the slots shared with it must be reconciled (it or this node may have missed
    /// writes while they could not reach each other, without any process restarting).
    reconcile_on_return: bool,
    /// Set when this (server) peer came back while this node stayed: until then, its data may
    /// be behind what the owners that stayed acknowledged, so it is not chosen as a slot's
    /// first owner (CAS, incr and reads execute there) while an owner that stayed is usable.
    /// Lifted when it gates itself (gossips unfinished slots), when a merge it ran since its
    /// return ends with nothing left unfinished, or at this deadline
    /// ([`RETURN_GATE_MAX_MS`]).
    returning_until: Option<Instant>,
    /// A merge of this returning peer was seen (pending, running, or slots gated) since its
    /// return; its end lifts `returning_until`.
    returning_merge_seen: bool,
    /// This node may be behind the slots it gates: a router saw it return while the router
    /// stayed (kept until its merge ends, unlike `returning_until`), or, for this node itself,
    /// it knows it was cut off or frozen. Only such an owner's reads are refused
    /// ([`FLAG_UNMERGED`]); at a cold start nobody is behind and reads are served.
    behind: bool,
    /// A status arrived since its link last came UP: only then does `server_attached ==
    /// false` mean the peer said it has no server (and so cannot act as a primary).
    heard_since_up: bool,
}

impl NodeState {
    /// A node as first known: DOWN unless `up`, nothing attached, no merge, not returning.
    fn new(
        id: NodeId,
        num: u64,
        host: String,
        mode: Mode,
        port: Option<u16>,
        ctlport: u16,
        up: bool,
    ) -> NodeState {
        NodeState {
            id,
            num,
            host,
            mode,
            port,
            ctlport,
            up,
            server_attached: false,
            merge: MergeState::Nothing,
            merge_epoch: 0,
            progress: None,
            unfinished: HashSet::new(),
            msgs_per_sec: 0.0,
            reconcile_on_return: false,
            returning_until: None,
            returning_merge_seen: false,
            behind: false,
            heard_since_up: false,
        }
    }
}

struct PendingRing {
    reply: oneshot::Sender<(bool, String)>,
    deadline: Instant,
}

struct PendingRpc {
    reply: oneshot::Sender<Result<Vec<u8>, String>>,
    deadline: Instant,
}

/// The router's state.
pub struct Router {
    s: Arc<DaemonSettings>,
    self_idx: usize,
    self_num: u64,
    nodes: Vec<NodeState>,
    by_id: HashMap<NodeId, usize>,
    by_num: HashMap<u64, usize>,
    ring: RingState,
    /// The ring state is known to be the cluster's: this node changed it, adopted it from a
    /// peer, or heard a server peer hold the same version. A state loaded from the ring file
    /// may be stale until then, and no data is handed off on it.
    ring_confirmed: bool,
    /// Server peers that reported ring version 0 (no saved state either): once every other
    /// server did, a node without a ring file saves the config's state (see
    /// [`ring_file::SETTLED_INITIAL_VERSION`]).
    fresh_peers: HashSet<NodeId>,
    /// The version at which a server peer was seen holding another state (logged once).
    ring_conflict_logged: Option<u64>,
    map: PlacementMap,
    pending_map: Option<PlacementMap>,
    attachments: HashMap<u64, bool>,
    servers: Vec<u64>,
    server_rr: usize,
    link: Option<LinkHandle>,
    local: Box<dyn LocalPort>,
    metrics: Arc<Metrics>,
    started: Instant,
    next_id: u64,
    ring_pending: HashMap<u64, PendingRing>,
    rpc_pending: HashMap<u64, PendingRpc>,
    relay_pending: HashMap<u64, (NodeId, u64, Instant)>,
    routed_window: u64,
    window_start: Instant,
    merge: Arc<Mutex<MergeShared>>,
    merge_job: Option<(u64, tokio::task::JoinHandle<()>)>,
    merge_epoch_started: Option<u64>,
    recovery_wanted: bool,
    /// Whether the wanted recovery merge keeps this node from serving reads of its slots until
    /// they are reconciled: yes when this node's own server came (back) and may have missed
    /// writes; no when only a peer's link came back (this node kept serving, and gating both
    /// owners would send requests to the one that missed writes).
    recovery_gates_reads: bool,
    /// Whether the running merge job keeps this node from serving reads of its slots.
    merge_job_gated: bool,
    /// A recovery merge that failed some slots is retried no sooner than this.
    recovery_not_before: Instant,
    /// This node lost its links to more than half of the other server nodes (it was cut off or
    /// frozen, and the others went on without it): when they come back, its own recovery merge
    /// gates its reads, as after a restart. Cleared once every other server is back.
    away: bool,
    /// When [`Router::tick`] last ran: without a [`FreezeWatch`], a gap longer than the
    /// heartbeat timeout is taken for a freeze.
    last_tick: Instant,
    /// Measures whether the whole process was frozen (SIGSTOP, a stalled host) for longer than
    /// the heartbeat timeout, so the others went on without it (see [`Router::watch_freezes`]).
    freeze: Option<FreezeWatch>,
    /// The DOWN views the server peers gossiped: an owner this node cannot reach is left out
    /// of a write's acknowledgements only when a majority confirms it DOWN
    /// ([`super::down_votes`]).
    down_votes: DownVotes,
    cmd_tx: mpsc::Sender<RouterCmd>,
    merge_done_tx: mpsc::UnboundedSender<merge_engine::JobEvent>,
    snapshot: Arc<Mutex<Option<StatusReport>>>,
}

/// Errors starting the router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The settings do not list this node.
    #[error("this node {0} is not in the config's node list; check --ctlport and the [SVRNODE]/[SLVNODE] entries")]
    SelfMissing(String),
    /// Two configured node ids give the same node number.
    #[error("node ids {0} and {1} hash to the same node number; rename one")]
    NumberClash(String, String),
    /// The placement map cannot be computed.
    #[error("placement: {0}")]
    Placement(#[from] crate::placement::PlacementError),
    /// The saved ring state cannot be used.
    #[error("{0}")]
    RingFile(#[from] ring_file::RingFileError),
}

/// The ring state saved in the ring file of `s`, checked against its config; `None` on a slave
/// or when there is no file yet.
pub fn saved_ring(s: &DaemonSettings) -> Result<Option<RingState>, ring_file::RingFileError> {
    let Some(path) = &s.ring_file else {
        return Ok(None);
    };
    let Some(saved) = ring_file::load(path, &s.cluster)? else {
        return Ok(None);
    };
    let servers: HashSet<NodeId> = s.servers().map(|n| n.id.clone()).collect();
    ring_file::check_against_config(path, &saved, &servers)?;
    Ok(Some(saved))
}

/// The ring state a router starts with: the one saved in the ring file, else the config's.
fn starting_ring(s: &DaemonSettings) -> Result<RingState, RouterError> {
    let Some(saved) = saved_ring(s)? else {
        return Ok(ring::initial_ring(s.servers().map(|n| n.id.clone())));
    };
    tracing::info!(version = saved.version, epoch = saved.membership.epoch, members = ?saved.membership.members, "ring state loaded from the ring file");
    for out in s
        .servers()
        .filter(|n| !saved.membership.members.contains(&n.id))
    {
        tracing::info!(node = %out.id, "server node SERVICE OUT in the saved ring state (SERVICEIN takes it in)");
    }
    Ok(saved)
}

impl Router {
    /// A router for `s`. `link` is `None` only when there are no peers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        s: Arc<DaemonSettings>,
        link: Option<LinkHandle>,
        local: Box<dyn LocalPort>,
        metrics: Arc<Metrics>,
        cmd_tx: mpsc::Sender<RouterCmd>,
        merge_done_tx: mpsc::UnboundedSender<merge_engine::JobEvent>,
        snapshot: Arc<Mutex<Option<StatusReport>>>,
    ) -> Result<Router, RouterError> {
        let mut nodes = Vec::new();
        let mut by_id = HashMap::new();
        let mut by_num = HashMap::new();
        // An any-host slave entry names no node: each slave it admits joins on its PeerUp.
        for spec in s.nodes.iter().filter(|n| !n.is_any_host()) {
            let i = nodes.len();
            let num = node_number(spec.id.as_str());
            if let Some(&j) = by_num.get(&num) {
                let other: &NodeState = &nodes[j];
                return Err(RouterError::NumberClash(
                    other.id.to_string(),
                    spec.id.to_string(),
                ));
            }
            by_id.insert(spec.id.clone(), i);
            by_num.insert(num, i);
            nodes.push(NodeState::new(
                spec.id.clone(),
                num,
                spec.host.clone(),
                spec.mode,
                spec.data_addr.map(|a| a.port()),
                spec.ctlport,
                spec.id == s.self_id,
            ));
        }
        let self_idx = *by_id
            .get(&s.self_id)
            .ok_or_else(|| RouterError::SelfMissing(s.self_id.to_string()))?;
        let ring = starting_ring(&s)?;
        let map = ring.membership.map(s.slot_count, s.replica)?;
        let pending_map = ring.membership.pending_map(s.slot_count, s.replica)?;
        metrics.set_epoch(ring.membership.epoch);
        Ok(Router {
            self_num: nodes[self_idx].num,
            s,
            self_idx,
            nodes,
            by_id,
            by_num,
            ring,
            ring_confirmed: false,
            fresh_peers: HashSet::new(),
            ring_conflict_logged: None,
            map,
            pending_map,
            attachments: HashMap::new(),
            servers: Vec::new(),
            server_rr: 0,
            link,
            local,
            metrics,
            started: Instant::now(),
            next_id: 1,
            ring_pending: HashMap::new(),
            rpc_pending: HashMap::new(),
            relay_pending: HashMap::new(),
            routed_window: 0,
            window_start: Instant::now(),
            merge: Arc::new(Mutex::new(MergeShared::default())),
            merge_job: None,
            merge_epoch_started: None,
            recovery_wanted: false,
            recovery_gates_reads: false,
            merge_job_gated: false,
            recovery_not_before: Instant::now(),
            away: false,
            last_tick: Instant::now(),
            freeze: None,
            down_votes: DownVotes::new(),
            cmd_tx,
            merge_done_tx,
            snapshot,
        })
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn is_self(&self, id: &NodeId) -> bool {
        *id == self.nodes[self.self_idx].id
    }

    /// Whether `id` can take requests now: reachable and with a server process attached.
    fn usable(&self, id: &NodeId) -> bool {
        match self.by_id.get(id) {
            Some(&i) => self.nodes[i].up && self.nodes[i].server_attached,
            None => false,
        }
    }

    fn serves_slot(&self, id: &NodeId, slot: u32) -> bool {
        self.by_id
            .get(id)
            .is_some_and(|&i| !self.nodes[i].unfinished.contains(&slot))
    }

    /// How far behind owner `id` may be on `slot`, for choosing a first owner (lower first);
    /// `None` when it cannot take requests at all.
    fn owner_rank(&self, id: &NodeId, slot: u32) -> Option<OwnerRank> {
        let &i = self.by_id.get(id)?;
        let n = &self.nodes[i];
        if !(n.up && n.server_attached) {
            return None;
        }
        Some(if n.unfinished.contains(&slot) {
            OwnerRank::Merging
        } else if n.returning_until.is_some() {
            OwnerRank::Returning
        } else {
            OwnerRank::Current
        })
    }

    /// Where a "first live owner" request for `hash` goes: CAS, incr and reads execute there.
    pub fn first_owner(&self, hash: u64) -> Option<NodeId> {
        self.first_owner_gated(hash).map(|(n, _)| n)
    }

    /// [`Self::first_owner`], and whether reads must be refused there ([`FLAG_UNMERGED`]):
    /// the chosen owner did not stay (it returns or gates the slot), is known to be behind,
    /// and the slot has another owner that could hold newer data (REPLICA 0 is never gated).
    fn first_owner_gated(&self, hash: u64) -> Option<(NodeId, bool)> {
        let slot = self.map.slot_of(hash);
        let chain = self.map.chain_for(hash);
        let target = pick_first_owner(chain, |n| self.owner_rank(n, slot))?;
        let stayed = self.owner_rank(target, slot) == Some(OwnerRank::Current);
        let behind = self
            .by_id
            .get(target)
            .is_some_and(|&i| self.nodes[i].behind);
        Some((target.clone(), chain.len() > 1 && behind && !stayed))
    }

    /// The owners of `hash` in the current and pending maps, except this node: the usable
    /// ones (a `HashChain` message goes to them), and the ones whose link is DOWN here but that
    /// a majority of the server nodes does not confirm DOWN, or whose link just came UP and
    /// that has not said yet whether its server is attached (a `HashChain` request is refused
    /// for them, see [`Self::route_chain`]). An owner that said it has no server attached, or
    /// that a majority sees DOWN, is left out: it cannot act as a primary.
    fn chain_targets(&self, hash: u64) -> (Vec<NodeId>, Vec<NodeId>) {
        let mut usable: Vec<NodeId> = Vec::new();
        let mut unconfirmed: Vec<NodeId> = Vec::new();
        let unheard = |n: &NodeId| {
            self.by_id
                .get(n)
                .is_some_and(|&i| self.nodes[i].up && !self.nodes[i].heard_since_up)
        };
        let pending = self
            .pending_map
            .as_ref()
            .map(|m| m.chain_for(hash))
            .unwrap_or(&[]);
        let now = Instant::now();
        for n in self.map.chain_for(hash).iter().chain(pending) {
            if self.is_self(n) || usable.contains(n) || unconfirmed.contains(n) {
                continue;
            }
            if self.usable(n) {
                usable.push(n.clone());
            } else if self.unconfirmed_down(n, now) || unheard(n) {
                unconfirmed.push(n.clone());
            }
        }
        (usable, unconfirmed)
    }

    /// Whether this node sees server node `n` DOWN, for its vote: its link is DOWN and it was
    /// seen to go (or this daemon has run for a heartbeat timeout, long enough to connect).
    fn sees_down(&self, n: &NodeState) -> bool {
        n.mode == Mode::Server
            && n.num != self.self_num
            && !n.up
            && (n.reconcile_on_return || self.started.elapsed() >= self.s.heartbeat_timeout)
    }

    /// How old a peer's DOWN view may be and still count: the heartbeat timeout, and at least
    /// [`VOTE_GOSSIP_INTERVALS`] gossip intervals so a busy router's late status still counts.
    fn vote_max_age(&self) -> Duration {
        self.s.heartbeat_timeout.max(Duration::from_millis(
            VOTE_GOSSIP_INTERVALS * STATUS_GOSSIP_INTERVAL_MS,
        ))
    }

    /// Whether `id`'s link is DOWN here but a majority of the server nodes does not confirm it
    /// DOWN (fresh views only, this node's own included when it is a server node).
    fn unconfirmed_down(&self, id: &NodeId, now: Instant) -> bool {
        let Some(&i) = self.by_id.get(id) else {
            return false;
        };
        let n = &self.nodes[i];
        if n.up || n.mode != Mode::Server {
            return false;
        }
        let mut voters = self
            .down_votes
            .voters_seeing_down(n.num, now, self.vote_max_age(), |v| {
                self.by_num.get(&v).is_some_and(|&j| self.nodes[j].up)
            });
        if self.s.mode == Mode::Server && self.sees_down(n) {
            voters.push(self.self_num);
        }
        let servers: Vec<u64> = self
            .nodes
            .iter()
            .filter(|m| m.mode == Mode::Server)
            .map(|m| m.num)
            .collect();
        let tie_break = self
            .nodes
            .iter()
            .filter(|m| m.mode == Mode::Server)
            .min_by(|a, b| a.id.cmp(&b.id))
            .map_or(0, |m| m.num);
        !confirmed_down(&servers, tie_break, n.num, &voters)
    }

    /// Other server nodes whose link is down, and other server nodes in all.
    fn servers_down(&self) -> (usize, usize) {
        let others = self
            .nodes
            .iter()
            .filter(|n| n.mode == Mode::Server && n.num != self.self_num);
        others.fold((0, 0), |(down, all), n| {
            (down + usize::from(!n.up), all + 1)
        })
    }

    /// Whether this node has lost its links to more than half of the other server nodes.
    fn cut_off(&self) -> bool {
        let (down, all) = self.servers_down();
        all > 0 && 2 * down > all
    }

    /// Whether any other server node's link is down.
    fn cut_off_any(&self) -> bool {
        self.servers_down().0 > 0
    }

    fn all_server_targets(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.mode == Mode::Server && n.up && n.server_attached)
            .map(|n| n.id.clone())
            .collect()
    }

    // ---- local attachments -------------------------------------------------------------

    /// Wakes the attachments messages were delivered to since the last call (see
    /// [`LocalPort::flush`]).
    pub fn flush_local(&mut self) {
        self.local.flush();
    }

    /// Handles one event of the local attach transport.
    pub fn handle_local(&mut self, ev: LocalEvent) {
        match ev {
            LocalEvent::Attached { id, server } => {
                tracing::info!(attachment = id, server, "process attached");
                self.attachments.insert(id, server);
                if server && !self.servers.contains(&id) {
                    self.servers.push(id);
                }
                self.on_server_attachment_change();
            }
            LocalEvent::Detached { id } => {
                tracing::info!(attachment = id, "process detached");
                self.attachments.remove(&id);
                self.servers.retain(|s| *s != id);
                self.on_server_attachment_change();
            }
            LocalEvent::Message { from, env } => self.route_local(from, env),
        }
    }

    fn on_server_attachment_change(&mut self) {
        let attached = !self.servers.is_empty();
        let me = &mut self.nodes[self.self_idx];
        if me.server_attached != attached {
            me.server_attached = attached;
            if attached {
                // The server process came (back): reconcile what it may have missed, and say
                // so in the status that goes out just below, so no peer routes a read of those
                // slots here before the merge job has started.
                self.want_recovery(true);
            }
            self.metrics
                .set_attachments(self.attachments.len() as u64, self.servers.len() as u64);
            self.broadcast_status();
        }
        self.metrics
            .set_attachments(self.attachments.len() as u64, self.servers.len() as u64);
    }

    fn route_local(&mut self, from: u64, env: Envelope) {
        self.metrics.add_routed(env.body.len());
        self.routed_window += 1;
        match env.kind {
            Kind::Response => self.route_response(env),
            Kind::Request | Kind::Event => self.route_request(self.self_num, from, env),
        }
    }

    /// Routes a request (or event) that originated at (`origin`, `origin_attachment`).
    fn route_request(&mut self, origin: u64, origin_attachment: u64, mut env: Envelope) {
        // Only this router's own choice below may mark a request unmerged.
        env.flags &= !FLAG_UNMERGED;
        let msg_id = env.msg_id;
        let kind = env.kind;
        match env.route {
            Route::HashFirst(hash) => match self.first_owner_gated(hash) {
                Some((target, unmerged)) => {
                    env.flags = unmerged_flags(env.flags, unmerged);
                    self.deliver_to(&target, origin, origin_attachment, env)
                }
                None => {
                    self.metrics.add_no_owner();
                    let slot = self.map.slot_of(hash);
                    self.error_to(
                        origin,
                        origin_attachment,
                        msg_id,
                        kind,
                        &format!("no live owner for slot {slot}"),
                    );
                }
            },
            Route::HashChain(hash) => self.route_chain(hash, origin, origin_attachment, env),
            Route::AllServers => {
                let targets = self.all_server_targets();
                self.fan_out(targets, origin, origin_attachment, env);
            }
            Route::Node(num) => match self.by_num.get(&num).map(|&i| self.nodes[i].id.clone()) {
                Some(target) if self.usable(&target) => {
                    self.deliver_to(&target, origin, origin_attachment, env)
                }
                Some(target) => self.error_to(
                    origin,
                    origin_attachment,
                    msg_id,
                    kind,
                    &format!("node {target} is down or has no server"),
                ),
                None => self.error_to(
                    origin,
                    origin_attachment,
                    msg_id,
                    kind,
                    &format!("no node with number {num:#x}"),
                ),
            },
            Route::Reply { .. } => self.error_to(
                origin,
                origin_attachment,
                msg_id,
                kind,
                "a request cannot carry a reply route",
            ),
        }
    }

    /// A `HashChain` message goes to every usable owner. A request (the sender counts the
    /// answers: ACKLEVEL `all` and `quorum`) whose chain also holds owners that are unreachable
    /// here but not confirmed DOWN by a majority counts them as reached and gets a refusal for
    /// each: the sender must not take "not live here" for "not live", or two owners that only
    /// lost the link between them would both acknowledge writes alone (see
    /// [`super::down_votes`]). `quorum` still succeeds when enough other owners answer; `all`
    /// fails (the primary takes a fenced write back). Events (ACKLEVEL `one`, rollbacks) are
    /// not answered and go to the usable owners only.
    fn route_chain(&mut self, hash: u64, origin: u64, origin_attachment: u64, env: Envelope) {
        let (targets, unconfirmed) = self.chain_targets(hash);
        if env.kind != Kind::Request || unconfirmed.is_empty() {
            self.fan_out(targets, origin, origin_attachment, env);
            return;
        }
        let (msg_id, kind) = (env.msg_id, env.kind);
        let notice = target_count_notice(
            msg_id,
            origin,
            origin_attachment,
            (targets.len() + unconfirmed.len()) as u32,
        );
        self.send_back(notice);
        for n in &unconfirmed {
            self.metrics.add_refused_unconfirmed();
            let me = &self.nodes[self.self_idx].id;
            let reason = if self.by_id.get(n).is_some_and(|&i| self.nodes[i].up) {
                format!(
                    "owner {n}'s link to {me} just came back and it has not reported yet \
                     whether its server is attached; the write cannot be acknowledged \
                     without it, retry"
                )
            } else {
                format!(
                    "owner {n} is unreachable from {me} but a majority of the server nodes \
                     does not see it DOWN (a partial cut, or it just died: confirmed within \
                     about a heartbeat timeout); the write cannot be acknowledged without it, \
                     retry"
                )
            };
            self.error_to(origin, origin_attachment, msg_id, kind, &reason);
        }
        self.deliver_all(targets, origin, origin_attachment, env);
    }

    fn fan_out(
        &mut self,
        targets: Vec<NodeId>,
        origin: u64,
        origin_attachment: u64,
        env: Envelope,
    ) {
        let count = targets.len() as u32;
        if env.kind == Kind::Request || count == 0 {
            // Tell the sender how many answers to expect, before any of them can arrive.
            let notice = target_count_notice(env.msg_id, origin, origin_attachment, count);
            self.send_back(notice);
        }
        self.deliver_all(targets, origin, origin_attachment, env);
    }

    /// Delivers `env` to every target (a copy each, the last one moved).
    fn deliver_all(
        &mut self,
        targets: Vec<NodeId>,
        origin: u64,
        origin_attachment: u64,
        env: Envelope,
    ) {
        let last = targets.len().saturating_sub(1);
        let mut env = Some(env);
        for (i, t) in targets.iter().enumerate() {
            let e = if i == last { env.take() } else { env.clone() };
            if let Some(e) = e {
                self.deliver_to(t, origin, origin_attachment, e);
            }
        }
    }

    /// Delivers a request to the server process of `target` (this node or a peer).
    fn deliver_to(&mut self, target: &NodeId, origin: u64, origin_attachment: u64, env: Envelope) {
        if self.is_self(target) {
            self.deliver_to_server(origin, origin_attachment, env);
            return;
        }
        let (tag, a, b, c) = route_fields(env.route);
        let msg = DataMsg {
            origin: self.nodes[self.self_idx].id.to_string(),
            msg_id: env.msg_id,
            kind: kind_code(env.kind),
            route: WireRoute {
                tag,
                a,
                b,
                c,
                origin_attachment,
                flags: env.flags,
            }
            .encode(),
            body: env.body,
        };
        let (msg_id, kind) = (msg.msg_id, env.kind);
        if let Err(e) = self.send_peer(target, Outgoing::Data(msg)) {
            self.error_to(
                origin,
                origin_attachment,
                msg_id,
                kind,
                &format!("cannot reach {target}: {e}"),
            );
        }
    }

    fn deliver_to_server(&mut self, origin: u64, origin_attachment: u64, mut env: Envelope) {
        if self.servers.is_empty() {
            let reason = format!(
                "no server process attached to {}",
                self.nodes[self.self_idx].id
            );
            self.error_to(origin, origin_attachment, env.msg_id, env.kind, &reason);
            return;
        }
        self.server_rr = (self.server_rr + 1) % self.servers.len();
        let server = self.servers[self.server_rr];
        let sole = matches!(env.route, Route::HashFirst(hash) if self.sole_owner(hash));
        env.flags = if sole {
            env.flags | FLAG_SOLE_OWNER
        } else {
            env.flags & !FLAG_SOLE_OWNER
        };
        env.route = Route::Reply {
            node: origin,
            attachment: origin_attachment,
            msg_id: env.msg_id,
        };
        let (msg_id, kind) = (env.msg_id, env.kind);
        if let Err(e) = self.local.deliver(server, env) {
            self.error_to(
                origin,
                origin_attachment,
                msg_id,
                kind,
                &format!("server process: {e}"),
            );
        }
    }

    /// Whether this node is the only owner of `hash`'s slot: the map in force gives the slot no
    /// other owner and no map is pending, so a write of the key has no replica to reach (with
    /// REPLICA = 0, or fewer server nodes than REPLICA + 1). Only a placement change can give
    /// it one, and [`Router::adopt_ring`] records every change before it takes effect.
    fn sole_owner(&self, hash: u64) -> bool {
        let chain = self.map.chain_for(hash);
        self.pending_map.is_none() && !chain.is_empty() && chain.iter().all(|n| self.is_self(n))
    }

    /// Routes a response by its reply route.
    fn route_response(&mut self, env: Envelope) {
        let Route::Reply {
            node,
            attachment,
            msg_id,
        } = env.route
        else {
            tracing::debug!(
                msg_id = env.msg_id,
                "dropping a response without a reply route"
            );
            self.metrics.add_dropped();
            return;
        };
        if node == self.self_num {
            match attachment {
                RPC_ATTACHMENT => {
                    if let Some(p) = self.rpc_pending.remove(&msg_id) {
                        let result = if env.flags & FLAG_CHMPX_ERROR != 0 {
                            Err(String::from_utf8_lossy(&env.body).into_owned())
                        } else {
                            Ok(env.body)
                        };
                        let _ = p.reply.send(result);
                    }
                }
                RELAY_ATTACHMENT => {
                    if let Some((peer, req_id, _)) = self.relay_pending.remove(&msg_id) {
                        let ok = env.flags & FLAG_CHMPX_ERROR == 0;
                        let answer = PeerMsg::ServerRpcAnswer {
                            req_id,
                            ok,
                            body: env.body,
                        };
                        let _ = self.send_peer(&peer, Outgoing::Control(answer.encode()));
                    }
                }
                _ => {
                    if let Err(e) = self.local.deliver(attachment, env) {
                        tracing::debug!(attachment, "response not delivered: {e}");
                        self.metrics.add_dropped();
                    }
                }
            }
            return;
        }
        self.send_back(env);
    }

    /// Sends a message whose route is a reply route to the node it names.
    fn send_back(&mut self, env: Envelope) {
        let Route::Reply {
            node, attachment, ..
        } = env.route
        else {
            return;
        };
        if node == self.self_num {
            if attachment < RELAY_ATTACHMENT {
                if let Err(e) = self.local.deliver(attachment, env) {
                    tracing::debug!(attachment, "message not delivered: {e}");
                    self.metrics.add_dropped();
                }
            } else {
                self.route_response(env);
            }
            return;
        }
        let Some(&i) = self.by_num.get(&node) else {
            self.metrics.add_dropped();
            return;
        };
        let target = self.nodes[i].id.clone();
        let (tag, a, b, c) = route_fields(env.route);
        let msg = DataMsg {
            origin: self.nodes[self.self_idx].id.to_string(),
            msg_id: env.msg_id,
            kind: kind_code(env.kind),
            route: WireRoute {
                tag,
                a,
                b,
                c,
                origin_attachment: 0,
                flags: env.flags,
            }
            .encode(),
            body: env.body,
        };
        if let Err(e) = self.send_peer(&target, Outgoing::Data(msg)) {
            tracing::debug!(%target, "answer lost: {e}");
            self.metrics.add_dropped();
        }
    }

    /// Answers a request chmpx could not deliver with an error response (events get none).
    fn error_to(
        &mut self,
        origin: u64,
        origin_attachment: u64,
        msg_id: u64,
        kind: Kind,
        reason: &str,
    ) {
        tracing::debug!(msg_id, "request refused: {reason}");
        self.metrics.add_errors();
        if kind != Kind::Request {
            return;
        }
        let env = Envelope {
            msg_id,
            kind: Kind::Response,
            route: Route::Reply {
                node: origin,
                attachment: origin_attachment,
                msg_id,
            },
            flags: FLAG_CHMPX_ERROR,
            body: reason.as_bytes().to_vec(),
            queued_ns: 0,
        };
        self.send_back(env);
    }

    fn send_peer(&self, peer: &NodeId, msg: Outgoing) -> Result<(), String> {
        let Some(link) = &self.link else {
            return Err("no links".into());
        };
        link.try_send(peer.as_str(), msg).map_err(|e| e.to_string())
    }

    // ---- peers ---------------------------------------------------------------------------

    /// A slave the link layer admitted by an any-host [SLVNODE] entry (it is named by its own
    /// address and control port) joins the node table on its first PeerUp, so its requests are
    /// served and answers reach it by its own id. `None` when its id is not "host:ctlport" or
    /// its node number clashes with a known node's.
    fn learn_slave(&mut self, id: &str) -> Option<usize> {
        let (host, port) = id.rsplit_once(':')?;
        let ctlport: u16 = port.parse().ok()?;
        let num = node_number(id);
        if let Some(&j) = self.by_num.get(&num) {
            tracing::warn!(peer = %id, clash = %self.nodes[j].id, "slave ignored: its node number clashes with a known node's");
            return None;
        }
        let i = self.nodes.len();
        self.nodes.push(NodeState::new(
            NodeId::new(id),
            num,
            host.to_string(),
            Mode::Slave,
            None,
            ctlport,
            false,
        ));
        self.by_id.insert(NodeId::new(id), i);
        self.by_num.insert(num, i);
        tracing::info!(peer = %id, "slave joins (admitted by an any-host [SLVNODE] entry)");
        Some(i)
    }

    /// Handles one event of the link layer.
    pub fn handle_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::PeerUp(id) => {
                let known = self.by_id.get(&NodeId::new(&id)).copied();
                if let Some(i) = known.or_else(|| self.learn_slave(&id)) {
                    tracing::info!(peer = %id, "peer UP");
                    let n = &mut self.nodes[i];
                    if n.mode == Mode::Server && n.reconcile_on_return && !n.up {
                        // It was away while this node stayed: it may have missed writes the
                        // others acknowledged, so it is not a first owner until it gates
                        // itself or has merged (slave routers too: they route most requests).
                        n.returning_until =
                            Some(Instant::now() + Duration::from_millis(RETURN_GATE_MAX_MS));
                        n.returning_merge_seen = false;
                        n.behind = true;
                        tracing::info!(peer = %id, "server peer returned: not chosen as first owner until it has caught up");
                    }
                    n.up = true;
                    n.heard_since_up = false;
                    self.metrics.set_peer_up(&id, true);
                    let status = self.status_msg();
                    let _ = self.send_peer(&NodeId::new(&id), Outgoing::Control(status));
                }
            }
            LinkEvent::PeerDown(id) => {
                if let Some(&i) = self.by_id.get(&NodeId::new(&id)) {
                    tracing::warn!(peer = %id, "peer DOWN");
                    let n = &mut self.nodes[i];
                    n.up = false;
                    n.heard_since_up = false;
                    n.server_attached = false;
                    n.unfinished.clear();
                    n.reconcile_on_return = true;
                    n.returning_until = None;
                    n.behind = false;
                    let server = n.mode == Mode::Server;
                    let num = n.num;
                    self.metrics.set_peer_up(&id, false);
                    self.down_votes.forget(num);
                    if server && self.s.mode == Mode::Server {
                        // Say it at once: the owners that cannot reach it wait for a majority
                        // to confirm it DOWN before they acknowledge writes without it.
                        self.broadcast_status();
                    }
                    if server && self.s.mode == Mode::Server && !self.away && self.cut_off() {
                        tracing::warn!("lost the links to more than half of the other server nodes: this node's reads are gated until it has reconciled with them");
                        self.away = true;
                        self.nodes[self.self_idx].behind = true;
                    }
                }
            }
            LinkEvent::Data { from, msg } => self.handle_data(&from, msg),
            LinkEvent::Control { from, bytes } => match PeerMsg::decode(&bytes) {
                Ok(m) => self.handle_peer_msg(&from, m),
                Err(e) => {
                    tracing::warn!(peer = %from, "{e}");
                    self.metrics.add_bad_input();
                }
            },
        }
    }

    fn handle_data(&mut self, from: &str, msg: DataMsg) {
        self.metrics.add_routed(msg.body.len());
        self.routed_window += 1;
        let Some(route) = WireRoute::decode(&msg.route) else {
            tracing::warn!(peer = %from, "data frame with a malformed route field; dropped");
            self.metrics.add_bad_input();
            return;
        };
        let Some(kind) = kind_from_code(msg.kind) else {
            tracing::warn!(peer = %from, kind = msg.kind, "data frame of unknown kind; dropped");
            self.metrics.add_bad_input();
            return;
        };
        let Some(r) = route_from_fields(route.tag, route.a, route.b, route.c) else {
            tracing::warn!(peer = %from, tag = route.tag, "data frame with an unknown route tag; dropped");
            self.metrics.add_bad_input();
            return;
        };
        let env = Envelope {
            msg_id: msg.msg_id,
            kind,
            route: r,
            flags: route.flags,
            body: msg.body,
            queued_ns: 0,
        };
        if let Route::Reply { .. } = r {
            self.route_response(env);
            return;
        }
        let origin = node_number(&msg.origin);
        if !self.by_num.contains_key(&origin) {
            self.metrics.add_bad_input();
            return;
        }
        // The sender already chose this node: deliver here, never forward again (no loops).
        self.deliver_to_server(origin, route.origin_attachment, env);
    }

    fn handle_peer_msg(&mut self, from: &str, m: PeerMsg) {
        let from_id = NodeId::new(from);
        match m {
            PeerMsg::Status(st) => {
                if st.ring.version > self.ring.version {
                    self.adopt_ring(st.ring.clone());
                } else if self
                    .by_id
                    .get(&from_id)
                    .is_some_and(|&i| self.nodes[i].mode == Mode::Server)
                {
                    self.compare_peer_ring(&from_id, &st.ring);
                }
                if let Some(&i) = self.by_id.get(&from_id) {
                    if self.nodes[i].mode == Mode::Server {
                        let down: Vec<u64> = st
                            .down
                            .iter()
                            .filter_map(|d| self.by_id.get(&NodeId::new(d)))
                            .map(|&j| self.nodes[j].num)
                            .collect();
                        self.down_votes
                            .record(self.nodes[i].num, Instant::now(), down);
                    }
                    let n = &mut self.nodes[i];
                    let attached_before = n.up && n.server_attached;
                    n.up = true;
                    n.heard_since_up = true;
                    n.server_attached = st.server_attached;
                    n.merge = st.merge;
                    n.merge_epoch = st.merge_epoch;
                    n.progress = st.progress;
                    n.unfinished = st.unfinished.into_iter().collect();
                    n.msgs_per_sec = st.msgs_per_sec;
                    note_returning_progress(n, from);
                    let newly_usable = !attached_before && n.server_attached;
                    if n.reconcile_on_return && n.server_attached {
                        n.reconcile_on_return = false;
                        // Cut off from most servers: this node is the one that was away, and
                        // its own slots are gated until reconciled.
                        let gate = self.away;
                        if !self.cut_off_any() {
                            self.away = false;
                        }
                        tracing::info!(peer = %from, gate, "peer is back after a lost link: reconciling the slots shared with it");
                        self.want_recovery(gate);
                        self.broadcast_status();
                        self.update_merge_job();
                    } else if newly_usable && !self.nodes[self.self_idx].unfinished.is_empty() {
                        // Slots still gated here (their other owners were unreachable when the
                        // last recovery ran) can be reconciled with this peer now.
                        self.want_recovery(false);
                        self.update_merge_job();
                    }
                }
                self.check_autocomplete();
            }
            PeerMsg::Ring { req_id, cmd } => {
                let out = self.apply_ring(&cmd);
                let answer = PeerMsg::RingAnswer {
                    req_id,
                    ok: out.ok,
                    text: out.text,
                };
                let _ = self.send_peer(&from_id, Outgoing::Control(answer.encode()));
            }
            PeerMsg::RingAnswer { req_id, ok, text } => {
                if let Some(p) = self.ring_pending.remove(&req_id) {
                    let _ = p.reply.send((ok, text));
                }
            }
            PeerMsg::ServerRpc { req_id, body } => {
                if self.servers.is_empty() {
                    let answer = PeerMsg::ServerRpcAnswer {
                        req_id,
                        ok: false,
                        body: b"no server process attached".to_vec(),
                    };
                    let _ = self.send_peer(&from_id, Outgoing::Control(answer.encode()));
                    return;
                }
                let msg_id = self.next_id();
                self.relay_pending.insert(
                    msg_id,
                    (
                        from_id,
                        req_id,
                        Instant::now() + Duration::from_millis(MERGE_RPC_TIMEOUT_MS),
                    ),
                );
                let env = Envelope {
                    msg_id,
                    kind: Kind::Request,
                    route: Route::Node(self.self_num),
                    flags: 0,
                    body,
                    queued_ns: 0,
                };
                self.deliver_to_server(self.self_num, RELAY_ATTACHMENT, env);
            }
            PeerMsg::ServerRpcAnswer { req_id, ok, body } => {
                if let Some(p) = self.rpc_pending.remove(&req_id) {
                    let result = if ok {
                        Ok(body)
                    } else {
                        Err(String::from_utf8_lossy(&body).into_owned())
                    };
                    let _ = p.reply.send(result);
                }
            }
        }
    }

    // ---- ring ----------------------------------------------------------------------------

    /// The coordinator as this node sees it: the lowest id among UP server nodes.
    pub fn coordinator(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.mode == Mode::Server && n.up)
            .map(|n| n.id.clone())
            .min()
    }

    fn adopt_ring(&mut self, ring: RingState) {
        match (
            ring.membership.map(self.s.slot_count, self.s.replica),
            ring.membership
                .pending_map(self.s.slot_count, self.s.replica),
        ) {
            (Ok(map), Ok(pending)) => {
                // First of all: a server that has not seen this yet must not skip the
                // replication of a write routed under the old placement (FLAG_SOLE_OWNER).
                self.local.placement_changed();
                tracing::info!(version = ring.version, epoch = ring.membership.epoch, pending = ?ring.membership.pending_epoch(), "ring state changed");
                if ring.membership.epoch != self.ring.membership.epoch {
                    // The map in force changed: hand off the slots this node lost once every
                    // node has adopted the new map.
                    let mut shared = self.merge.lock().unwrap_or_else(|p| p.into_inner());
                    shared.sched.handoff_not_before = Some(
                        Instant::now() + Duration::from_millis(merge_engine::HANDOFF_DELAY_MS),
                    );
                }
                self.ring = ring;
                self.ring_confirmed = true;
                self.save_ring();
                self.map = map;
                self.pending_map = pending;
                self.metrics.set_epoch(self.ring.membership.epoch);
                self.update_merge_job();
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("refusing a ring state whose map cannot be computed: {e}")
            }
        }
    }

    /// Writes the ring state to the ring file (server nodes). A failure is logged and counted:
    /// the node goes on, but a restart of every node at once would forget this change.
    fn save_ring(&self) {
        let Some(path) = &self.s.ring_file else {
            return;
        };
        if let Err(e) = ring_file::save(path, &self.s.cluster, &self.ring) {
            self.metrics.add_ring_save_failure();
            tracing::error!(
                file = %path.display(),
                version = self.ring.version,
                "cannot save the ring state: {e}; a restart of every chmpx at once would come back with an older membership. Check DATADIR's space and permissions"
            );
        }
    }

    /// A server node without a ring file saves the config's state once every other server
    /// reported having none either (a new cluster). A node joining a cluster that has a saved
    /// state adopts that instead, whose version is higher.
    fn settle_initial_ring(&mut self) {
        if self.s.ring_file.is_none() || self.ring.version != 0 {
            return;
        }
        let alone = self
            .s
            .servers()
            .filter(|n| n.id != self.s.self_id)
            .all(|n| self.fresh_peers.contains(&n.id));
        if alone {
            self.ring.version = ring_file::SETTLED_INITIAL_VERSION;
            tracing::info!(
                members = self.ring.membership.members.len(),
                "no server has a saved ring state: saving the config's"
            );
            self.save_ring();
        }
    }

    /// What a server peer's gossiped ring state at `version <= ours` tells: the same state
    /// confirms ours; another one at the same version means two nodes were set up differently.
    fn compare_peer_ring(&mut self, from: &NodeId, theirs: &RingState) {
        if theirs.version == 0 {
            self.fresh_peers.insert(from.clone());
        }
        if theirs.version != self.ring.version {
            return;
        }
        if *theirs == self.ring {
            self.ring_confirmed = true;
        } else if self.ring_conflict_logged != Some(theirs.version) {
            self.ring_conflict_logged = Some(theirs.version);
            tracing::error!(
                peer = %from,
                version = theirs.version,
                ours = ?self.ring.membership.members,
                theirs = ?theirs.membership.members,
                "a server peer holds another ring state at the same version: were the nodes started with different [SVRNODE] lists? Give the same file to every node; a SERVICEIN or SERVICEOUT at the coordinator then sets one state everywhere"
            );
        }
    }

    fn all_done(&self) -> bool {
        let Some(pending) = self.ring.membership.pending_epoch() else {
            return false;
        };
        let Some(pmap) = &self.pending_map else {
            return false;
        };
        let concerned: HashSet<&NodeId> = self.map.members().iter().chain(pmap.members()).collect();
        concerned.iter().all(|id| match self.by_id.get(*id) {
            Some(&i) => {
                let n = &self.nodes[i];
                // A DOWN node or one without its server process is not waited for: it keeps its
                // slots and catches up by recovery merge when it comes back.
                !(n.up && n.server_attached)
                    || (n.merge == MergeState::Done && n.merge_epoch == pending)
            }
            None => true,
        })
    }

    fn apply_ring(&mut self, cmd: &RingCommand) -> RingOutcome {
        let mut ring = self.ring.clone();
        let servers: HashSet<NodeId> = self.s.servers().map(|n| n.id.clone()).collect();
        let out = ring::apply(
            &mut ring,
            cmd,
            |n| servers.contains(n),
            self.all_done(),
            self.s.automerge,
        );
        if ring != self.ring {
            self.adopt_ring(ring);
            self.broadcast_status();
        }
        out
    }

    fn check_autocomplete(&mut self) {
        if self.coordinator().is_some_and(|c| self.is_self(&c))
            && ring::should_autocomplete(&self.ring, self.all_done(), self.s.automerge)
        {
            let out = self.apply_ring(&RingCommand::CompMerge);
            tracing::info!("automerge: {}", out.text);
        }
    }

    fn handle_control(&mut self, cmd: Command, reply: oneshot::Sender<(bool, String)>) {
        let ring_cmd = match cmd {
            Command::Version => {
                let _ = reply.send((true, format!("chmpx {}", env!("CARGO_PKG_VERSION"))));
                return;
            }
            Command::SelfStatus => {
                let _ = reply.send((true, super::status::render_self(&self.report())));
                return;
            }
            Command::AllStatus => {
                let _ = reply.send((true, super::status::render_table(&self.report())));
                return;
            }
            Command::StatusJson => {
                let text = serde_json::to_string(&self.report())
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                let _ = reply.send((true, text));
                return;
            }
            Command::ServiceIn(n) => {
                RingCommand::ServiceIn(n.unwrap_or_else(|| self.s.self_id.clone()).to_string())
            }
            Command::ServiceOut(n) => {
                RingCommand::ServiceOut(n.unwrap_or_else(|| self.s.self_id.clone()).to_string())
            }
            Command::Merge => RingCommand::Merge,
            Command::AbortMerge => RingCommand::AbortMerge,
            Command::CompMerge => RingCommand::CompMerge,
            Command::SuspendMerge => RingCommand::SuspendMerge,
            Command::NoSuspendMerge => RingCommand::NoSuspendMerge,
        };
        match self.coordinator() {
            Some(c) if self.is_self(&c) => {
                let out = self.apply_ring(&ring_cmd);
                let _ = reply.send((out.ok, out.text));
            }
            Some(c) => {
                let req_id = self.next_id();
                let msg = PeerMsg::Ring {
                    req_id,
                    cmd: ring_cmd,
                };
                match self.send_peer(&c, Outgoing::Control(msg.encode())) {
                    Ok(()) => {
                        let deadline =
                            Instant::now() + Duration::from_millis(RING_COMMAND_TIMEOUT_MS);
                        self.ring_pending
                            .insert(req_id, PendingRing { reply, deadline });
                    }
                    Err(e) => {
                        let _ =
                            reply.send((false, format!("cannot reach the coordinator {c}: {e}")));
                    }
                }
            }
            None => {
                let _ = reply.send((false, "no server node is UP to coordinate the ring".into()));
            }
        }
    }

    /// Handles a request from another task.
    pub fn handle_cmd(&mut self, cmd: RouterCmd) {
        match cmd {
            RouterCmd::Control { cmd, reply } => self.handle_control(cmd, reply),
            RouterCmd::ServerRpc { node, body, reply } => {
                let req_id = self.next_id();
                let deadline = Instant::now() + Duration::from_millis(MERGE_RPC_TIMEOUT_MS);
                if self.is_self(&node) {
                    self.rpc_pending
                        .insert(req_id, PendingRpc { reply, deadline });
                    let env = Envelope {
                        msg_id: req_id,
                        kind: Kind::Request,
                        route: Route::Node(self.self_num),
                        flags: 0,
                        body,
                        queued_ns: 0,
                    };
                    self.deliver_to_server(self.self_num, RPC_ATTACHMENT, env);
                } else {
                    let msg = PeerMsg::ServerRpc { req_id, body };
                    match self.send_peer(&node, Outgoing::Control(msg.encode())) {
                        Ok(()) => {
                            self.rpc_pending
                                .insert(req_id, PendingRpc { reply, deadline });
                        }
                        Err(e) => {
                            let _ = reply.send(Err(format!("cannot reach {node}: {e}")));
                        }
                    }
                }
            }
        }
    }

    // ---- merge ---------------------------------------------------------------------------

    /// Handles news from the merge engine.
    pub fn handle_job_event(&mut self, ev: merge_engine::JobEvent) {
        let current = self.merge_job.as_ref().map(|(id, _)| *id);
        let kind = self.running_kind();
        match ev {
            // A slot that could not be reconciled (not ok) stays gated until a retry does.
            merge_engine::JobEvent::SlotDone { job, slot, ok }
                if ok && Some(job) == current && kind == Some(JobKind::Merge) =>
            {
                self.nodes[self.self_idx].unfinished.remove(&slot);
            }
            merge_engine::JobEvent::Finished { job, .. }
                if Some(job) == current && kind != Some(JobKind::Merge) =>
            {
                // A hand-off or purge pass: no merge state changes.
                self.merge_job = None;
                self.merge
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sched
                    .running = None;
                self.update_merge_job();
            }
            merge_engine::JobEvent::Finished { job, failed_slots } if Some(job) == current => {
                self.merge_job = None;
                self.merge
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sched
                    .running = None;
                let me = &mut self.nodes[self.self_idx];
                let job_recovery = me.merge_epoch == 0;
                if !job_recovery {
                    me.unfinished.clear();
                }
                // A recovery keeps gated what it could not reconcile (failed slots, and slots
                // whose other owners were unreachable): a retry or their owners' return
                // reconciles them.
                me.merge = MergeState::Done;
                if failed_slots > 0 {
                    tracing::warn!(failed_slots, "merge finished with slots that could not be reconciled (peer or server unreachable); retrying");
                    if job_recovery {
                        self.recovery_not_before =
                            Instant::now() + Duration::from_millis(RECOVERY_RETRY_DELAY_MS);
                        self.want_recovery(false);
                        // Peers see that another merge is due (a returning node is not taken
                        // for caught up).
                        self.nodes[self.self_idx].merge = MergeState::Pending;
                    }
                }
                if self.recovery_wanted {
                    // Asked for while this job ran: keep its slots marked until it runs.
                    let gate = self.recovery_gates_reads;
                    self.want_recovery(gate);
                }
                let me = &mut self.nodes[self.self_idx];
                if me.unfinished.is_empty() {
                    // Caught up: this node no longer counts as behind.
                    me.behind = false;
                }
                self.check_autocomplete();
                self.update_merge_job();
                self.broadcast_status();
            }
            _ => {}
        }
    }

    /// Starts, cancels or resets the merge job to match the ring state.
    fn update_merge_job(&mut self) {
        if self.s.mode != Mode::Server {
            return;
        }
        let pending_epoch = self.ring.membership.pending_epoch();
        // The pending change was completed or aborted: forget its merge.
        if pending_epoch.is_none() {
            if let Some(e) = self.merge_epoch_started.take() {
                if let Some((_, h)) = self.merge_job.take() {
                    h.abort();
                }
                tracing::info!(epoch = e, "pending change closed; merge state reset");
                let me = &mut self.nodes[self.self_idx];
                me.unfinished.clear();
                me.merge = MergeState::Nothing;
                me.merge_epoch = 0;
                me.progress = None;
            }
        }
        if self.merge_job.is_some() && self.running_kind() != Some(JobKind::Merge) {
            // A housekeeping pass gives way to a membership or recovery merge.
            let merge_due = (pending_epoch.is_some()
                && self.ring.merging
                && self.merge_epoch_started != pending_epoch)
                || self.recovery_wanted;
            if merge_due {
                if let Some((_, h)) = self.merge_job.take() {
                    h.abort();
                }
                self.merge
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sched
                    .running = None;
            }
        }
        if self.merge_job.is_some() {
            return;
        }
        let retry_wait = self
            .merge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sched
            .retry_not_before
            .is_some_and(|t| Instant::now() < t);
        if let (Some(epoch), Some(pmap)) = (pending_epoch, self.pending_map.clone()) {
            if self.merge_epoch_started == Some(epoch) {
                // The membership merge ran; a recovery wanted meanwhile (this node's server
                // attached, or a peer came back) still runs, or this node would stay Pending
                // and the change never complete. It counts for the pending epoch.
                if self.recovery_wanted
                    && self.nodes[self.self_idx].server_attached
                    && Instant::now() >= self.recovery_not_before
                {
                    self.recovery_wanted = false;
                    let slots = self.recovery_slots();
                    if slots.is_empty() {
                        let me = &mut self.nodes[self.self_idx];
                        me.unfinished.clear();
                        me.merge = MergeState::Done;
                    } else {
                        let gate = std::mem::take(&mut self.recovery_gates_reads);
                        self.start_job(slots, epoch, gate);
                    }
                }
                return;
            }
            if !self.ring.merging || retry_wait {
                self.nodes[self.self_idx].merge = MergeState::Pending;
                return;
            }
            let me = self.nodes[self.self_idx].id.clone();
            let slots: Vec<(u32, Vec<NodeId>)> = PlacementMap::diff(&self.map, &pmap)
                .into_iter()
                .filter(|m| m.gained().contains(&me))
                .map(|m| {
                    let peers = m
                        .from
                        .iter()
                        .chain(&m.to)
                        .filter(|n| **n != me)
                        .cloned()
                        .collect::<HashSet<_>>();
                    (m.slot, peers.into_iter().collect())
                })
                .collect();
            self.merge_epoch_started = Some(epoch);
            self.start_job(slots, epoch, true);
            return;
        }
        if self.recovery_wanted
            && self.nodes[self.self_idx].server_attached
            && Instant::now() >= self.recovery_not_before
        {
            self.recovery_wanted = false;
            let slots = self.recovery_slots();
            if slots.is_empty() {
                // Nobody to reconcile with: gated slots stay gated until an owner of theirs
                // comes (its arrival asks for a recovery again).
                let me = &mut self.nodes[self.self_idx];
                if me.merge == MergeState::Pending {
                    me.merge = MergeState::Done;
                }
            } else {
                let gate = std::mem::take(&mut self.recovery_gates_reads);
                self.start_job(slots, 0, gate);
            }
        }
        if self.merge_job.is_none() && !self.recovery_wanted && pending_epoch.is_none() {
            self.start_housekeeping();
        }
    }

    /// The kind of the running job, if any.
    fn running_kind(&self) -> Option<JobKind> {
        self.merge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sched
            .running
            .map(|(k, _)| k)
    }

    /// Starts a hand-off pass or a tombstone purge pass when one is due and this node is idle
    /// (no pending change, no merge, its own merge state settled).
    fn start_housekeeping(&mut self) {
        let me = &self.nodes[self.self_idx];
        if !me.server_attached || matches!(me.merge, MergeState::Pending | MergeState::Doing) {
            return;
        }
        let me_id = me.id.clone();
        let now = Instant::now();
        let (handoff_due, purge_due) = {
            let shared = self.merge.lock().unwrap_or_else(|p| p.into_inner());
            (
                shared.sched.handoff_not_before.is_none_or(|t| now >= t),
                shared.sched.purge_not_before.is_some_and(|t| now >= t),
            )
        };
        if self
            .merge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sched
            .purge_not_before
            .is_none()
        {
            // The first purge pass comes one interval after start.
            let age = merge_engine::purge_tombstone_age();
            self.merge
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sched
                .purge_not_before = Some(now + merge_engine::purge_pass_interval(age));
        }
        // Data is dropped only on a map the cluster is known to hold (a state loaded from the
        // ring file may be stale) and that came from a membership change (epoch 0 is the
        // config's first member list: nothing was handed off yet).
        if handoff_due && self.ring_confirmed && self.ring.membership.epoch > 0 {
            let slots: Vec<(u32, Vec<NodeId>)> = (0..self.s.slot_count)
                .filter(|&s| !self.map.owners(s).contains(&me_id))
                .filter_map(|s| {
                    let owners = self.map.owners(s).to_vec();
                    // Every owner must be able to take the items before the copy here goes.
                    (!owners.is_empty() && owners.iter().all(|o| self.usable(o)))
                        .then_some((s, owners))
                })
                .collect();
            self.merge
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sched
                .handoff_not_before =
                Some(now + Duration::from_millis(merge_engine::HANDOFF_PASS_INTERVAL_MS));
            if !slots.is_empty() {
                self.start_pass(JobKind::Handoff, slots);
                return;
            }
        }
        if purge_due {
            let age = merge_engine::purge_tombstone_age();
            self.merge
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sched
                .purge_not_before = Some(now + merge_engine::purge_pass_interval(age));
            // Purge only while no node of the cluster is merging: a merge may still carry
            // one of these tombstones to an owner that lacks it.
            let merging_anywhere = self
                .nodes
                .iter()
                .any(|n| n.up && matches!(n.merge, MergeState::Pending | MergeState::Doing));
            if merging_anywhere {
                return;
            }
            let slots: Vec<(u32, Vec<NodeId>)> = self
                .map
                .primary_slots_of(&me_id)
                .into_iter()
                .filter_map(|s| {
                    let owners = self.map.owners(s);
                    let ready = owners
                        .iter()
                        .all(|o| self.usable(o) && self.serves_slot(o, s));
                    ready.then(|| (s, owners.iter().filter(|o| **o != me_id).cloned().collect()))
                })
                .collect();
            if !slots.is_empty() {
                let max_version = merge_engine::purge_max_version(age);
                self.start_pass(JobKind::Purge { max_version }, slots);
            }
        }
        if self.merge_job.is_none() {
            self.start_antientropy(&me_id, now);
        }
    }

    /// Starts an anti-entropy round when one is due (ANTIENTROPY; the decision is
    /// [`merge_engine::plan_antientropy`]).
    fn start_antientropy(&mut self, me_id: &NodeId, now: Instant) {
        let busy = self.ring.membership.pending_epoch().is_some()
            || self.ring.merge_suspended
            || self
                .nodes
                .iter()
                .any(|n| n.up && matches!(n.merge, MergeState::Pending | MergeState::Doing));
        let not_before = self
            .merge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sched
            .antientropy_not_before;
        let timer = merge_engine::AntiEntropyTimer {
            interval: self.s.anti_entropy_interval,
            not_before,
        };
        let (decision, next) = merge_engine::plan_antientropy(
            timer,
            now,
            busy,
            me_id,
            self.s.slot_count,
            |s| self.map.owners(s).to_vec(),
            |o, s| self.owner_rank(o, s) == Some(OwnerRank::Current),
        );
        self.merge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sched
            .antientropy_not_before = next;
        if let merge_engine::AntiEntropyDecision::Start(slots) = decision {
            self.start_pass(JobKind::AntiEntropy, slots);
        }
    }

    /// Starts a hand-off or purge pass (no merge state, no read gating, no progress reset).
    fn start_pass(&mut self, kind: JobKind, slots: Vec<(u32, Vec<NodeId>)>) {
        let job_id = self.next_id();
        tracing::debug!(
            job = job_id,
            ?kind,
            slots = slots.len(),
            "housekeeping pass started"
        );
        let job = MergeJob {
            kind,
            id: job_id,
            self_id: self.nodes[self.self_idx].id.clone(),
            slot_count: self.s.slot_count,
            slots,
            rate_bytes_per_sec: self.s.merge_rate_bytes_per_sec,
        };
        self.merge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sched
            .running = Some((kind, Instant::now()));
        let handle = tokio::spawn(merge_engine::run(
            job,
            self.cmd_tx.clone(),
            self.merge_done_tx.clone(),
            self.merge.clone(),
        ));
        self.merge_job = Some((job_id, handle));
    }

    /// Enforces MERGETIMEOUT: a job running longer is stopped, logged, counted (status and
    /// metrics), and retried after [`merge_engine::JOB_RETRY_DELAY_MS`].
    fn enforce_merge_timeout(&mut self) {
        let limit = self.s.merge_timeout;
        if limit.is_zero() {
            return;
        }
        let Some((kind, since)) = self
            .merge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sched
            .running
        else {
            return;
        };
        if since.elapsed() < limit {
            return;
        }
        let Some((job, handle)) = self.merge_job.take() else {
            return;
        };
        handle.abort();
        let retry_at = Instant::now() + Duration::from_millis(merge_engine::JOB_RETRY_DELAY_MS);
        {
            let mut shared = self.merge.lock().unwrap_or_else(|p| p.into_inner());
            shared.sched.running = None;
            shared.add_timeout();
            if kind == JobKind::Merge {
                shared.sched.retry_not_before = Some(retry_at);
            }
        }
        tracing::warn!(
            job,
            ?kind,
            timeout_s = limit.as_secs(),
            "merge job exceeded MERGETIMEOUT: stopped; it will be retried"
        );
        if kind != JobKind::Merge {
            return;
        }
        let me = &mut self.nodes[self.self_idx];
        if me.merge_epoch == 0 {
            // A recovery merge: ask for it again; its slots stay gated meanwhile.
            let gate = self.merge_job_gated;
            self.recovery_not_before = retry_at;
            me.merge = MergeState::Pending;
            self.want_recovery(gate);
        } else {
            // A membership merge: start it again for the same pending epoch.
            me.merge = MergeState::Pending;
            self.merge_epoch_started = None;
        }
        self.broadcast_status();
    }

    /// The slots a recovery merge reconciles: every slot this node owns, each with the other
    /// owners that can answer now (a slot whose other owners are all away has nobody to
    /// reconcile with; their return triggers a recovery of its own).
    fn recovery_slots(&self) -> Vec<(u32, Vec<NodeId>)> {
        let me = self.nodes[self.self_idx].id.clone();
        self.map
            .slots_of(&me)
            .into_iter()
            .map(|s| {
                let peers = self
                    .map
                    .owners(s)
                    .iter()
                    .filter(|n| **n != me && self.usable(n))
                    .cloned()
                    .collect::<Vec<_>>();
                (s, peers)
            })
            .filter(|(_, peers)| !peers.is_empty())
            .collect()
    }

    /// Asks for a recovery merge (AUTOMERGE, server mode) and marks the slots it will
    /// reconcile as unfinished at once, so reads of them go to another owner meanwhile.
    fn want_recovery(&mut self, gate_reads: bool) {
        if self.s.mode != Mode::Server || !self.s.automerge {
            return;
        }
        self.recovery_wanted = true;
        self.recovery_gates_reads |= gate_reads;
        if !gate_reads {
            return;
        }
        // Gate every slot that has another owner, reachable or not yet known to be: right
        // after a (re)start the peers' status (server attached or not) may not have arrived,
        // and the job waits a short grace for it before choosing whom to reconcile with.
        let me_id = self.nodes[self.self_idx].id.clone();
        let gated: Vec<u32> = self
            .map
            .slots_of(&me_id)
            .into_iter()
            .filter(|&s| self.map.owners(s).iter().any(|n| *n != me_id))
            .collect();
        let grace = Instant::now() + Duration::from_millis(RECOVERY_GRACE_MS);
        self.recovery_not_before = self.recovery_not_before.max(grace);
        let idle = self.merge_job.is_none();
        let me = &mut self.nodes[self.self_idx];
        me.unfinished.extend(gated.iter().copied());
        if idle && !gated.is_empty() {
            me.merge = MergeState::Pending;
        }
    }

    /// Starts a merge job; `epoch` is the pending epoch it serves (0 for a recovery merge).
    fn start_job(&mut self, slots: Vec<(u32, Vec<NodeId>)>, epoch: u64, gate_reads: bool) {
        let job_id = self.next_id();
        let recovery = epoch == 0;
        let me = &mut self.nodes[self.self_idx];
        me.merge_epoch = epoch;
        self.merge_job_gated = gate_reads;
        // Slots already gated stay gated (a recovery that could not reach their other owners
        // left them so); the job's own slots are gated when it gates reads; each is released
        // when the job reconciles it.
        if gate_reads {
            me.unfinished.extend(slots.iter().map(|(s, _)| *s));
        }
        me.merge = MergeState::Doing;
        tracing::info!(job = job_id, slots = slots.len(), recovery, "merge started");
        let job = MergeJob {
            kind: JobKind::Merge,
            id: job_id,
            self_id: me.id.clone(),
            slot_count: self.s.slot_count,
            slots,
            rate_bytes_per_sec: self.s.merge_rate_bytes_per_sec,
        };
        {
            let mut shared = self.merge.lock().unwrap_or_else(|p| p.into_inner());
            shared.begin(job.slots.len() as u32);
            shared.sched.running = Some((JobKind::Merge, Instant::now()));
        }
        let handle = tokio::spawn(merge_engine::run(
            job,
            self.cmd_tx.clone(),
            self.merge_done_tx.clone(),
            self.merge.clone(),
        ));
        self.merge_job = Some((job_id, handle));
        self.broadcast_status();
    }

    // ---- periodic work -------------------------------------------------------------------

    /// Judges freezes by `watch` (how long the whole process did not run) instead of the gap
    /// between two ticks, which a busy routing thread alone can stretch past the heartbeat
    /// timeout while its links keep the peers' view UP.
    pub fn watch_freezes(&mut self, watch: FreezeWatch) {
        self.freeze = Some(watch);
    }

    /// Periodic work: rates, gossip, timeouts, merge progress, the status snapshot.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.window_start);
        if elapsed >= Duration::from_millis(RATE_WINDOW_MS) {
            self.nodes[self.self_idx].msgs_per_sec =
                self.routed_window as f64 / elapsed.as_secs_f64();
            self.routed_window = 0;
            self.window_start = now;
        }
        let tick_gap = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        let gap = self
            .freeze
            .as_ref()
            .map_or(tick_gap, FreezeWatch::take_longest_gap);
        if gap > self.s.heartbeat_timeout
            && self.s.mode == Mode::Server
            && self.servers_down().1 > 0
        {
            // Frozen past the heartbeat timeout: the peers took this node for DOWN and went on
            // without it. Gate its reads now, before its links report the loss one by one.
            tracing::warn!(gap_ms = gap.as_millis() as u64, "this daemon did not run for longer than the heartbeat timeout: its reads are gated until it has reconciled");
            self.away = true;
            self.nodes[self.self_idx].behind = true;
            self.want_recovery(true);
        }
        self.enforce_merge_timeout();
        self.settle_initial_ring();
        for n in &mut self.nodes {
            if n.returning_until.is_some_and(|t| now >= t) {
                n.returning_until = None;
                tracing::warn!(peer = %n.id, limit_ms = RETURN_GATE_MAX_MS, "returning peer neither gated itself nor finished a merge in time: it serves as first owner again");
            }
        }
        {
            let shared = self.merge.lock().unwrap_or_else(|p| p.into_inner());
            let p = shared.progress();
            // Shown while merging; afterwards too once anything moved, so the totals (items
            // moved, dropped, purged, timeouts) stay visible in the status tool.
            if self.nodes[self.self_idx].merge != MergeState::Nothing
                || p.totals != MergeTotals::default()
            {
                self.nodes[self.self_idx].progress = Some(p);
            }
            self.metrics.set_merge(&p);
        }
        self.ring_pending.retain(|_, p| p.deadline > now);
        let expired: Vec<u64> = self
            .rpc_pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(p) = self.rpc_pending.remove(&k) {
                let _ = p.reply.send(Err("merge request timed out".into()));
            }
        }
        self.relay_pending
            .retain(|_, (_, _, deadline)| *deadline > now);
        self.broadcast_status();
        self.check_autocomplete();
        self.update_merge_job();
        if let Some(link) = &self.link {
            self.metrics.set_link_stats(link.stats());
        }
        let report = self.report();
        self.metrics.set_nodes(&report);
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }

    fn status_msg(&self) -> Vec<u8> {
        let me = &self.nodes[self.self_idx];
        PeerMsg::Status(PeerStatus {
            ring: self.ring.clone(),
            server_attached: me.server_attached,
            merge: me.merge,
            merge_epoch: me.merge_epoch,
            progress: me.progress,
            unfinished: me.unfinished.iter().copied().collect(),
            msgs_per_sec: me.msgs_per_sec,
            down: self
                .nodes
                .iter()
                .filter(|n| self.sees_down(n))
                .map(|n| n.id.to_string())
                .collect(),
        })
        .encode()
    }

    fn broadcast_status(&self) {
        let Some(link) = &self.link else { return };
        let msg = self.status_msg();
        for n in &self.nodes {
            if n.up && n.num != self.self_num {
                let _ = link.try_send(n.id.as_str(), Outgoing::Control(msg.clone()));
            }
        }
    }

    /// The status as this node sees it.
    pub fn report(&self) -> StatusReport {
        let pmap = self.pending_map.as_ref();
        let now = Instant::now();
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let member = self.map.members().contains(&n.id);
                let pending_member = pmap.map(|m| m.members().contains(&n.id));
                let ring = match (n.mode, member) {
                    (Mode::Slave, _) => Ring::Slave,
                    (_, true) => Ring::ServiceIn,
                    (_, false) => Ring::ServiceOut,
                };
                let action = match (member, pending_member) {
                    (false, Some(true)) => Action::Add,
                    (true, Some(false)) => Action::Delete,
                    _ => Action::None,
                };
                let owned = if n.mode == Mode::Server {
                    self.map.slots_of(&n.id).len() as u32
                } else {
                    0
                };
                let down_confirmed = (n.mode == Mode::Server && !n.up && n.num != self.self_num)
                    .then(|| !self.unconfirmed_down(&n.id, now));
                let primary = if n.mode == Mode::Server {
                    self.map.primary_slots_of(&n.id).len() as u32
                } else {
                    0
                };
                NodeStatus {
                    id: n.id.to_string(),
                    host: n.host.clone(),
                    port: n.port,
                    ctlport: n.ctlport,
                    is_self: n.num == self.self_num,
                    live: if n.up { Live::Up } else { Live::Down },
                    ring,
                    action,
                    merge: n.merge,
                    progress: n.progress,
                    server_attached: n.server_attached,
                    slots_owned: owned,
                    slots_primary: primary,
                    msgs_per_sec: n.msgs_per_sec,
                    down_confirmed,
                }
            })
            .collect();
        StatusReport {
            cluster: self.s.cluster.clone(),
            self_id: self.s.self_id.to_string(),
            mode: self.s.mode.word().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            epoch: self.ring.membership.epoch,
            pending_epoch: self.ring.membership.pending_epoch(),
            slot_count: self.s.slot_count,
            replica: self.s.replica,
            automerge: self.s.automerge,
            merge_suspended: self.ring.merge_suspended,
            coordinator: self.coordinator().map(|c| c.to_string()),
            attachments: AttachCounts {
                clients: (self.attachments.len() - self.servers.len()) as u32,
                servers: self.servers.len() as u32,
            },
            writes_refused_unconfirmed: self.metrics.refused_unconfirmed(),
            nodes,
        }
    }
}

/// The `FLAG_TARGET_COUNT` event telling the sender of request `msg_id` how many answers to
/// count.
fn target_count_notice(msg_id: u64, origin: u64, origin_attachment: u64, count: u32) -> Envelope {
    Envelope {
        msg_id,
        kind: Kind::Event,
        route: Route::Reply {
            node: origin,
            attachment: origin_attachment,
            msg_id,
        },
        flags: FLAG_TARGET_COUNT,
        body: count.to_le_bytes().to_vec(),
        queued_ns: 0,
    }
}

/// How an owner stands for a slot, best first: the first owner of a slot is the first usable
/// owner in chain order of the best rank present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum OwnerRank {
    /// It stayed (or nobody knows it was away) and it does not gate the slot.
    Current,
    /// It came back while this router stayed and has not yet gated itself or merged.
    Returning,
    /// It gates the slot: its merge has not reconciled it yet.
    Merging,
}

/// The owner `chain` names first among those of the best rank (`rank` is `None` for an
/// owner that cannot take requests). An owner that may be behind is chosen only when no
/// better one is usable: refusing would make the slot unavailable.
fn pick_first_owner(
    chain: &[NodeId],
    rank: impl Fn(&NodeId) -> Option<OwnerRank>,
) -> Option<&NodeId> {
    let mut best: Option<(OwnerRank, &NodeId)> = None;
    for n in chain {
        if let Some(r) = rank(n) {
            if r == OwnerRank::Current {
                return Some(n);
            }
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, n));
            }
        }
    }
    best.map(|(_, n)| n)
}

/// Follows a returning peer's gossip: lifts its returning mark once it gates itself (its
/// unfinished slots then say what it may not serve) or once a merge seen since its return has
/// ended with nothing unfinished (a failed merge leaves it Pending for a retry). Its `behind`
/// mark is kept until that merge has ended.
fn note_returning_progress(n: &mut NodeState, from: &str) {
    if n.returning_until.is_none() && !n.behind {
        return;
    }
    if !n.unfinished.is_empty() {
        n.returning_merge_seen = true;
        if n.returning_until.take().is_some() {
            tracing::info!(peer = %from, "returning peer gates its unmerged slots itself");
        }
        return;
    }
    match n.merge {
        MergeState::Pending | MergeState::Doing => n.returning_merge_seen = true,
        MergeState::Done | MergeState::Nothing if n.returning_merge_seen => {
            n.behind = false;
            if n.returning_until.take().is_some() {
                tracing::info!(peer = %from, "returning peer has merged: it serves as first owner again");
            }
        }
        _ => {}
    }
}

/// `flags` with [`FLAG_UNMERGED`] set when `unmerged`, cleared otherwise (a sender cannot set
/// it itself).
fn unmerged_flags(flags: u16, unmerged: bool) -> u16 {
    if unmerged {
        flags | FLAG_UNMERGED
    } else {
        flags & !FLAG_UNMERGED
    }
}

fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Request => 1,
        Kind::Response => 2,
        Kind::Event => 3,
    }
}

fn kind_from_code(code: u8) -> Option<Kind> {
    match code {
        1 => Some(Kind::Request),
        2 => Some(Kind::Response),
        3 => Some(Kind::Event),
        _ => None,
    }
}

fn route_fields(route: Route) -> (u8, u64, u64, u64) {
    match route {
        Route::HashFirst(h) => (1, h, 0, 0),
        Route::HashChain(h) => (2, h, 0, 0),
        Route::AllServers => (3, 0, 0, 0),
        Route::Node(n) => (4, n, 0, 0),
        Route::Reply {
            node,
            attachment,
            msg_id,
        } => (5, node, attachment, msg_id),
    }
}

fn route_from_fields(tag: u8, a: u64, b: u64, c: u64) -> Option<Route> {
    Some(match tag {
        1 => Route::HashFirst(a),
        2 => Route::HashChain(a),
        3 => Route::AllServers,
        4 => Route::Node(a),
        5 => Route::Reply {
            node: a,
            attachment: b,
            msg_id: c,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_fields_round_trip() {
        for r in [
            Route::HashFirst(7),
            Route::HashChain(u64::MAX),
            Route::AllServers,
            Route::Node(3),
            Route::Reply {
                node: 1,
                attachment: 2,
                msg_id: 3,
            },
        ] {
            let (t, a, b, c) = route_fields(r);
            assert_eq!(route_from_fields(t, a, b, c), Some(r));
        }
        assert_eq!(route_from_fields(9, 0, 0, 0), None);
        for k in [Kind::Request, Kind::Response, Kind::Event] {
            assert_eq!(kind_from_code(kind_code(k)), Some(k));
        }
    }

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|s| NodeId::new(s)).collect()
    }

    #[test]
    fn first_owner_prefers_stayed_then_returning_then_merging() {
        let chain = ids(&["a:1", "b:1", "c:1"]);
        let rank_of = |table: [Option<OwnerRank>; 3]| {
            let chain = chain.clone();
            move |n: &NodeId| table[chain.iter().position(|c| c == n).unwrap()]
        };
        use OwnerRank::*;
        // Every owner current: the first.
        let r = rank_of([Some(Current); 3]);
        assert_eq!(pick_first_owner(&chain, r), Some(&chain[0]));
        // The first returned: a stayed owner is chosen although it comes later.
        let r = rank_of([Some(Returning), Some(Merging), Some(Current)]);
        assert_eq!(pick_first_owner(&chain, r), Some(&chain[2]));
        // No stayed owner usable: a returning one before one that gates the slot.
        let r = rank_of([Some(Merging), Some(Returning), None]);
        assert_eq!(pick_first_owner(&chain, r), Some(&chain[1]));
        // Only owners that gate the slot: the first of them (never refuse).
        let r = rank_of([None, Some(Merging), Some(Merging)]);
        assert_eq!(pick_first_owner(&chain, r), Some(&chain[1]));
        // Nobody usable.
        assert_eq!(pick_first_owner(&chain, rank_of([None; 3])), None);
    }

    fn peer(returning: bool) -> NodeState {
        NodeState {
            id: NodeId::new("p:1"),
            num: 1,
            host: "p".into(),
            mode: Mode::Server,
            port: None,
            ctlport: 1,
            up: true,
            server_attached: true,
            merge: MergeState::Done,
            merge_epoch: 0,
            progress: None,
            unfinished: HashSet::new(),
            msgs_per_sec: 0.0,
            reconcile_on_return: false,
            returning_until: returning.then(|| Instant::now() + Duration::from_secs(30)),
            returning_merge_seen: false,
            behind: false,
            heard_since_up: true,
        }
    }

    #[test]
    fn behind_mark_is_kept_while_the_peer_gates_and_lifted_when_its_merge_ends() {
        let mut n = peer(true);
        n.behind = true;
        note_returning_progress(&mut n, "p:1");
        assert!(n.behind, "an old status does not lift it");
        n.unfinished.insert(3);
        note_returning_progress(&mut n, "p:1");
        assert!(n.returning_until.is_none());
        assert!(
            n.behind,
            "gating itself lifts the returning mark, not the behind mark"
        );
        n.unfinished.clear();
        n.merge = MergeState::Doing;
        note_returning_progress(&mut n, "p:1");
        assert!(n.behind, "still merging");
        n.merge = MergeState::Done;
        note_returning_progress(&mut n, "p:1");
        assert!(!n.behind);
    }

    #[test]
    fn unmerged_flag_is_set_only_by_the_router_decision() {
        let other = FLAG_CHMPX_ERROR | 0x0001;
        assert_eq!(unmerged_flags(other, true), other | FLAG_UNMERGED);
        assert_eq!(unmerged_flags(other, false), other);
        assert_eq!(unmerged_flags(other | FLAG_UNMERGED, false), other);
        assert_eq!(FLAG_UNMERGED & (FLAG_CHMPX_ERROR | FLAG_TARGET_COUNT), 0);
    }

    #[test]
    fn returning_mark_lifts_when_the_peer_gates_itself() {
        let mut n = peer(true);
        // An old status (merge done, nothing gated) does not lift it.
        note_returning_progress(&mut n, "p:1");
        assert!(n.returning_until.is_some());
        n.unfinished.insert(3);
        note_returning_progress(&mut n, "p:1");
        assert!(n.returning_until.is_none());
    }

    #[test]
    fn returning_mark_lifts_only_after_a_merge_seen_since_the_return_ends() {
        let mut n = peer(true);
        n.merge = MergeState::Nothing;
        note_returning_progress(&mut n, "p:1");
        assert!(n.returning_until.is_some(), "no merge seen yet");
        n.merge = MergeState::Doing;
        note_returning_progress(&mut n, "p:1");
        assert!(n.returning_until.is_some(), "still merging");
        // A failed merge is retried: Pending keeps the mark.
        n.merge = MergeState::Pending;
        note_returning_progress(&mut n, "p:1");
        assert!(n.returning_until.is_some());
        n.merge = MergeState::Done;
        note_returning_progress(&mut n, "p:1");
        assert!(n.returning_until.is_none());
    }
}
