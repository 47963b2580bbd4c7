//! The merge engine: reconciles slots between this node's server process and its co-owners'.
//!
//! For each slot of a job and each peer owner, it compares the digest of the slot's hash range
//! on both sides; a differing range is cut into [`MERGE_SPLIT_FANOUT`] pieces and the pieces are
//! compared again, until a differing piece is small ([`MERGE_LIST_THRESHOLD_ITEMS`]) — then both
//! sides list their (key, version) pairs and only the items missing or older on one side are
//! fetched from the other and applied. Copies go both ways, so a node that was away gets what
//! it missed and a peer gets anything only this node held. Copying is rate-limited.
//!
//! Besides merges ([`JobKind::Merge`]) the engine runs two housekeeping passes:
//! - [`JobKind::Handoff`]: for slots this node no longer owns under the map in force, it pushes
//!   to every owner what they lack or hold older (one way), then deletes its own copy
//!   ([`MergeRequest::DropRange`]). So after SERVICEIN/SERVICEOUT each item ends on exactly its
//!   REPLICA+1 owners, and a copy is dropped only once every owner holds it.
//! - [`JobKind::Purge`]: for slots this node is primary of, when every owner reports the same
//!   digest (they hold the same items and tombstones), it purges the tombstones older than the
//!   safety age on every owner ([`MergeRequest::PurgeTombstones`]); never on a timer alone.
//!
//! - [`JobKind::AntiEntropy`] (every ANTIENTROPY seconds): for slots this node is first owner
//!   of, while every owner is UP, attached, SERVICE IN, nothing is pending and no merge runs
//!   ([`plan_antientropy`]), it compares the owners' slot digests in batches (paced at
//!   [`ANTIENTROPY_SLOTS_PER_SEC_MAX`]) and merges exactly the slots that still differ after
//!   [`ANTIENTROPY_RECHECK_DELAY_MS`], both ways, newer version winning (tombstones too). A
//!   replica that missed a replicated write without going DOWN (a full disk, a timed-out or
//!   dropped Replicate, ack `one`) so converges without waiting for a recovery merge.
//!
//! Every request goes through the router ([`RouterCmd::ServerRpc`]) to the server process of the
//! node concerned, using [`crate::merge::protocol`]. A slot that cannot be reconciled (a peer or
//! server unreachable, an error answer) is counted as failed and left to the next merge; it is
//! never retried in a loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::limits::*;
use super::router::RouterCmd;
use super::status::{MergeProgress, MergeTotals};
use crate::merge::protocol::{
    decode_response, encode_request, HashRange, ItemVersion, KeyVersion, MergeRequest,
    MergeResponse, RangeDigest, DIGEST_RANGES_MAX, FETCH_KEYS_MAX, LIST_LIMIT_MAX,
};
use crate::placement::{slot_hash_range, NodeId};

/// Tombstones younger than this are never purged, even when every owner holds them: a write
/// or a replica still in flight (or a hand-off of an old copy from a node that just left the
/// slot) must find the tombstone and lose to it. Overridden (tests) by the environment
/// variable [`PURGE_TOMBSTONE_AGE_ENV`], in milliseconds.
pub const PURGE_TOMBSTONE_AGE_MS: u64 = 300_000;

/// Environment variable that overrides [`PURGE_TOMBSTONE_AGE_MS`] (milliseconds).
pub const PURGE_TOMBSTONE_AGE_ENV: &str = "DKC_PURGE_TOMBSTONE_AGE_MS";

/// Shortest accepted tombstone purge age: below this a replica in flight could be overtaken.
pub const PURGE_TOMBSTONE_AGE_MIN_MS: u64 = 1_000;

/// Longest wait between two purge passes; passes come at half the purge age when that is
/// shorter.
pub const PURGE_PASS_INTERVAL_MAX_MS: u64 = 60_000;

/// After the map in force changes, a node waits this long before handing off the slots it
/// lost, so every node has adopted the new map (status gossip) and no write for those slots
/// is still routed to it.
pub const HANDOFF_DELAY_MS: u64 = 2 * STATUS_GOSSIP_INTERVAL_MS;

/// Interval of the hand-off pass that finds items of slots this node does not own (left over
/// when an owner was unreachable at the last pass, or written by a router with an old map).
pub const HANDOFF_PASS_INTERVAL_MS: u64 = 5_000;

/// Most slots an anti-entropy round compares per second: digests are asked for
/// [`ANTIENTROPY_BATCH_SLOTS`] slots at a time, and batches are paced to this rate, so a round
/// over many slots never floods the links or the server processes.
pub const ANTIENTROPY_SLOTS_PER_SEC_MAX: u32 = 256;

/// Slots compared per step of an anti-entropy round (one Digest request per owner).
pub const ANTIENTROPY_BATCH_SLOTS: usize = 64;

/// A slot whose owners' digests differ is compared again after this long, and merged only if
/// it still differs: a replicated write still in flight is not a divergence.
pub const ANTIENTROPY_RECHECK_DELAY_MS: u64 = 250;

/// Reconcile passes over the peers of one differing slot in a round. With two or more peers a
/// second pass carries to the first peers what a later one brought; anything left (writes
/// still arriving) is for the next round.
pub const ANTIENTROPY_SLOT_PASSES_MAX: u32 = 2;

const _: () = assert!(ANTIENTROPY_BATCH_SLOTS >= 1 && ANTIENTROPY_BATCH_SLOTS <= DIGEST_RANGES_MAX);
const _: () = assert!(ANTIENTROPY_BATCH_SLOTS as u64 <= ANTIENTROPY_SLOTS_PER_SEC_MAX as u64);
const _: () = assert!(ANTIENTROPY_SLOT_PASSES_MAX >= 1);

/// A job that failed some slots (or timed out) is retried no sooner than this.
pub const JOB_RETRY_DELAY_MS: u64 = 1_000;

/// The tombstone purge age in force: [`PURGE_TOMBSTONE_AGE_ENV`] when set to a valid number of
/// milliseconds (at least [`PURGE_TOMBSTONE_AGE_MIN_MS`]), else [`PURGE_TOMBSTONE_AGE_MS`].
pub fn purge_tombstone_age() -> Duration {
    let ms = std::env::var(PURGE_TOMBSTONE_AGE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(PURGE_TOMBSTONE_AGE_MS, |v| {
            v.max(PURGE_TOMBSTONE_AGE_MIN_MS)
        });
    Duration::from_millis(ms)
}

/// Interval of the purge pass for a given purge age.
pub fn purge_pass_interval(age: Duration) -> Duration {
    (age / 2).min(Duration::from_millis(PURGE_PASS_INTERVAL_MAX_MS))
}

/// The newest version a purge started now may drop: `age` before the wall clock.
pub fn purge_max_version(age: Duration) -> ItemVersion {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ItemVersion {
        physical_ms: now_ms.saturating_sub(age.as_millis() as u64),
        logical: u32::MAX,
        node: u32::MAX,
    }
}

/// What a job does with each of its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Reconcile both ways with the peers (membership change or recovery).
    Merge,
    /// The slots are not this node's under the map in force; the peers are their owners: push
    /// to each owner what it lacks or holds older, then drop the local copy.
    Handoff,
    /// The slots are this node's (primary); the peers are the other owners: when every owner's
    /// digest is equal, purge tombstones up to `max_version` on all of them.
    Purge {
        /// Newest tombstone version that may go.
        max_version: ItemVersion,
    },
    /// The slots are this node's (first owner); the peers are the other owners: compare the
    /// owners' digests and merge, both ways, exactly the slots that differ.
    AntiEntropy,
}

/// What [`plan_antientropy`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AntiEntropyDecision {
    /// ANTIENTROPY is 0.
    Off,
    /// The next round is not due yet.
    NotDue,
    /// A round is due but the cluster is not settled (a change pending, a merge pending or
    /// running somewhere, merges suspended): skipped until the next interval.
    Busy,
    /// A round is due but no slot this node is first owner of has every owner ready.
    NothingToCheck,
    /// Start a round over these (slot, other owners).
    Start(Vec<(u32, Vec<NodeId>)>),
}

/// When anti-entropy rounds come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AntiEntropyTimer {
    /// ANTIENTROPY (zero = off).
    pub interval: Duration,
    /// When the next round is due; `None` before the first decision (the first round comes
    /// one interval after start).
    pub not_before: Option<Instant>,
}

/// The anti-entropy scheduling decision, a pure function of what the router knows.
///
/// - `timer`: ANTIENTROPY and when the next round is due;
/// - `busy`: a membership change is pending, or a merge is pending or running on any node, or
///   merges are suspended;
/// - `owners(slot)`: the slot's owners under the map in force, first owner first;
/// - `ready(owner, slot)`: the owner is UP, its server attached, and it neither gates the slot
///   (unfinished merge) nor is returning.
///
/// Only a slot's first owner drives its check, so N nodes do not all compare the same slot; a
/// slot is checked only when every owner is ready. Returns the decision and the new
/// `not_before`.
pub fn plan_antientropy(
    timer: AntiEntropyTimer,
    now: Instant,
    busy: bool,
    me: &NodeId,
    slot_count: u32,
    owners: impl Fn(u32) -> Vec<NodeId>,
    ready: impl Fn(&NodeId, u32) -> bool,
) -> (AntiEntropyDecision, Option<Instant>) {
    let AntiEntropyTimer {
        interval,
        not_before,
    } = timer;
    if interval.is_zero() {
        return (AntiEntropyDecision::Off, None);
    }
    let Some(due) = not_before else {
        return (AntiEntropyDecision::NotDue, Some(now + interval));
    };
    if now < due {
        return (AntiEntropyDecision::NotDue, Some(due));
    }
    let next = Some(now + interval);
    if busy {
        return (AntiEntropyDecision::Busy, next);
    }
    let slots: Vec<(u32, Vec<NodeId>)> = (0..slot_count)
        .filter_map(|s| {
            let owners = owners(s);
            let first = owners.first()?;
            if first != me || owners.len() < 2 || !owners.iter().all(|o| ready(o, s)) {
                return None;
            }
            Some((s, owners[1..].to_vec()))
        })
        .collect();
    if slots.is_empty() {
        (AntiEntropyDecision::NothingToCheck, next)
    } else {
        (AntiEntropyDecision::Start(slots), next)
    }
}

/// A merge job: slots to reconcile, each with the peers to reconcile it with.
#[derive(Debug, Clone)]
pub struct MergeJob {
    /// What to do with each slot.
    pub kind: JobKind,
    /// Job id (the router's).
    pub id: u64,
    /// This node.
    pub self_id: NodeId,
    /// Slots in the hash space.
    pub slot_count: u32,
    /// (slot, peer owners).
    pub slots: Vec<(u32, Vec<NodeId>)>,
    /// Copy rate limit (0 = unlimited).
    pub rate_bytes_per_sec: u64,
}

/// News for the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// A slot is reconciled with every reachable peer.
    SlotDone {
        /// Job id.
        job: u64,
        /// The slot.
        slot: u32,
        /// Whether it was reconciled (false: a peer or server was unreachable or answered an
        /// error; the slot is left to the next merge).
        ok: bool,
    },
    /// The job is over.
    Finished {
        /// Job id.
        job: u64,
        /// Slots that could not be reconciled.
        failed_slots: u32,
    },
}

/// Progress shared with the router (for the status tool and metrics): the current (or last)
/// merge job's figures, and totals since the daemon started.
#[derive(Debug, Clone, Default)]
pub struct MergeShared {
    started: Option<Instant>,
    slots_total: u32,
    slots_done: u32,
    items_moved: u64,
    bytes_moved: u64,
    totals: MergeTotals,
    /// The router's merge bookkeeping (kept here, next to the progress it explains).
    pub sched: MergeSchedule,
}

/// The router's merge bookkeeping: what runs, since when, and when the housekeeping passes
/// are due.
#[derive(Debug, Clone, Default)]
pub struct MergeSchedule {
    /// Kind and start time of the running job.
    pub running: Option<(JobKind, Instant)>,
    /// No merge job (membership or recovery) is retried before this.
    pub retry_not_before: Option<Instant>,
    /// No hand-off pass before this (set after each pass and after a map change).
    pub handoff_not_before: Option<Instant>,
    /// No purge pass before this.
    pub purge_not_before: Option<Instant>,
    /// No anti-entropy round before this.
    pub antientropy_not_before: Option<Instant>,
}

impl MergeShared {
    /// A fresh progress record for `slots_total` slots.
    pub fn new(slots_total: u32) -> Self {
        MergeShared {
            started: Some(Instant::now()),
            slots_total,
            ..Default::default()
        }
    }

    /// Starts the progress record of a new merge job of `slots_total` slots (totals are kept).
    pub fn begin(&mut self, slots_total: u32) {
        self.started = Some(Instant::now());
        self.slots_total = slots_total;
        self.slots_done = 0;
        self.items_moved = 0;
        self.bytes_moved = 0;
        self.totals.jobs += 1;
    }

    /// Counts a job stopped by MERGETIMEOUT.
    pub fn add_timeout(&mut self) {
        self.totals.jobs_timed_out += 1;
    }

    /// The totals since the daemon started.
    pub fn totals(&self) -> MergeTotals {
        self.totals
    }

    /// The progress figures.
    pub fn progress(&self) -> MergeProgress {
        let elapsed = self
            .started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let eta = (self.slots_done > 0 && self.slots_done < self.slots_total).then(|| {
            elapsed / f64::from(self.slots_done) * f64::from(self.slots_total - self.slots_done)
        });
        MergeProgress {
            slots_done: self.slots_done,
            slots_total: self.slots_total,
            items_moved: self.items_moved,
            bytes_moved: self.bytes_moved,
            elapsed_secs: elapsed,
            eta_secs: eta,
            totals: self.totals,
        }
    }
}

struct Ctx {
    cmd: mpsc::Sender<RouterCmd>,
    shared: Arc<Mutex<MergeShared>>,
    self_id: NodeId,
    rate: u64,
    rate_start: Instant,
    rate_bytes: u64,
    /// Whether copies count in the current job's figures (merges) or only in the totals
    /// (hand-off passes).
    count_current: bool,
}

impl Ctx {
    async fn call(&self, node: &NodeId, req: &MergeRequest) -> Result<MergeResponse, String> {
        let body = encode_request(req).map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(RouterCmd::ServerRpc {
                node: node.clone(),
                body,
                reply: tx,
            })
            .await
            .map_err(|_| "router stopped".to_string())?;
        let answer = tokio::time::timeout(Duration::from_millis(MERGE_RPC_TIMEOUT_MS + 1000), rx)
            .await
            .map_err(|_| format!("merge request to {node} timed out"))?
            .map_err(|_| "router dropped the request".to_string())??;
        match decode_response(&answer).map_err(|e| format!("answer from {node}: {e}"))? {
            MergeResponse::Error { code, message } => {
                Err(format!("{node} answered error {code}: {message}"))
            }
            other => Ok(other),
        }
    }

    async fn digests(
        &self,
        node: &NodeId,
        ranges: &[HashRange],
    ) -> Result<Vec<RangeDigest>, String> {
        let mut out = Vec::with_capacity(ranges.len());
        for chunk in ranges.chunks(DIGEST_RANGES_MAX) {
            match self
                .call(
                    node,
                    &MergeRequest::Digest {
                        ranges: chunk.to_vec(),
                    },
                )
                .await?
            {
                MergeResponse::Digests { digests } if digests.len() == chunk.len() => {
                    out.extend(digests)
                }
                other => return Err(format!("{node} answered Digest with {}", variant(&other))),
            }
        }
        Ok(out)
    }

    async fn list(
        &self,
        node: &NodeId,
        r: HashRange,
    ) -> Result<HashMap<Vec<u8>, ItemVersion>, String> {
        let mut out = HashMap::new();
        let mut cursor = None;
        loop {
            let req = MergeRequest::ListVersions {
                lo: r.lo,
                hi: r.hi,
                cursor: cursor.take(),
                limit: LIST_LIMIT_MAX,
            };
            match self.call(node, &req).await? {
                MergeResponse::Versions {
                    entries,
                    next_cursor,
                } => {
                    for KeyVersion { key, version, .. } in entries {
                        out.insert(key, version);
                    }
                    match next_cursor {
                        Some(c) => cursor = Some(c),
                        None => return Ok(out),
                    }
                }
                other => {
                    return Err(format!(
                        "{node} answered ListVersions with {}",
                        variant(&other)
                    ))
                }
            }
        }
    }

    /// Copies `keys` from `src` to `dst`.
    async fn copy(&mut self, src: &NodeId, dst: &NodeId, keys: Vec<Vec<u8>>) -> Result<(), String> {
        let mut rest: &[Vec<u8>] = &keys;
        while !rest.is_empty() {
            let take = rest.len().min(FETCH_KEYS_MAX);
            let ask = rest[..take]
                .iter()
                .map(|k| serde_bytes::ByteBuf::from(k.clone()))
                .collect();
            let (batch, served) = match self
                .call(src, &MergeRequest::FetchItems { keys: ask })
                .await?
            {
                MergeResponse::Items { batch, served, .. } => {
                    (batch, (served as usize).clamp(1, take))
                }
                other => {
                    return Err(format!(
                        "{src} answered FetchItems with {}",
                        variant(&other)
                    ))
                }
            };
            rest = &rest[served..];
            let len = batch.len() as u64;
            match self.call(dst, &MergeRequest::ApplyItems { batch }).await? {
                MergeResponse::Applied { applied, bytes, .. } => {
                    let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                    let bytes = bytes.max(len);
                    if self.count_current {
                        s.items_moved += applied;
                        s.bytes_moved += bytes;
                    }
                    s.totals.items_moved += applied;
                    s.totals.bytes_moved += bytes;
                }
                other => {
                    return Err(format!(
                        "{dst} answered ApplyItems with {}",
                        variant(&other)
                    ))
                }
            }
            self.throttle(len).await;
        }
        Ok(())
    }

    async fn throttle(&mut self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        self.rate_bytes += bytes;
        let due = Duration::from_secs_f64(self.rate_bytes as f64 / self.rate as f64);
        let spent = self.rate_start.elapsed();
        if due > spent {
            tokio::time::sleep(due - spent).await;
        }
    }

    /// Reconciles `range` between this node and `peer`; with `push_only`, copies only from this
    /// node to the peer (a hand-off: whatever only the peer holds stays there).
    async fn reconcile(
        &mut self,
        peer: &NodeId,
        range: HashRange,
        push_only: bool,
    ) -> Result<(), String> {
        let me = self.self_id.clone();
        let mut frontier = vec![range];
        while !frontier.is_empty() {
            let mine = self.digests(&me, &frontier).await?;
            let theirs = self.digests(peer, &frontier).await?;
            let mut next = Vec::new();
            for ((r, a), b) in frontier.iter().zip(&mine).zip(&theirs) {
                if a == b {
                    continue;
                }
                if a.count.max(b.count) <= MERGE_LIST_THRESHOLD_ITEMS || r.lo == r.hi {
                    self.sync_listed(peer, *r, push_only).await?;
                } else {
                    next.extend(r.split(MERGE_SPLIT_FANOUT));
                }
            }
            frontier = next;
        }
        Ok(())
    }

    async fn sync_listed(
        &mut self,
        peer: &NodeId,
        r: HashRange,
        push_only: bool,
    ) -> Result<(), String> {
        let me = self.self_id.clone();
        let mine = self.list(&me, r).await?;
        let theirs = self.list(peer, r).await?;
        let mut to_me: Vec<Vec<u8>> = theirs
            .iter()
            .filter(|(k, v)| mine.get(*k).is_none_or(|mv| mv < *v))
            .map(|(k, _)| k.clone())
            .collect();
        let mut to_peer: Vec<Vec<u8>> = mine
            .iter()
            .filter(|(k, v)| theirs.get(*k).is_none_or(|tv| tv < *v))
            .map(|(k, _)| k.clone())
            .collect();
        to_me.sort();
        to_peer.sort();
        if !push_only {
            self.copy(peer, &me, to_me).await?;
        }
        self.copy(&me, peer, to_peer).await
    }

    /// Hands off one slot this node does not own: pushes to every owner (`owners`), then
    /// drops the local copy. `Ok(false)` when there was nothing to hand off.
    async fn handoff(&mut self, owners: &[NodeId], range: HashRange) -> Result<bool, String> {
        let me = self.self_id.clone();
        let held = self.digests(&me, &[range]).await?;
        if held.first().is_none_or(|d| d.count == 0) {
            return Ok(false);
        }
        if owners.is_empty() {
            return Err("the slot has no owner to hand it to".into());
        }
        for owner in owners {
            self.reconcile(owner, range, true).await?;
        }
        match self
            .call(
                &me,
                &MergeRequest::DropRange {
                    lo: range.lo,
                    hi: range.hi,
                },
            )
            .await?
        {
            MergeResponse::Dropped { dropped, bytes } => {
                let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                s.totals.items_dropped += dropped;
                s.totals.bytes_dropped += bytes;
                tracing::debug!(
                    lo = range.lo,
                    dropped,
                    "handed off a slot this node no longer owns"
                );
                Ok(true)
            }
            other => Err(format!("{me} answered DropRange with {}", variant(&other))),
        }
    }

    /// Purges the tombstones of one slot up to `max_version` on this node and every other
    /// owner (`peers`), only when all their digests are equal. `Ok(purged)`.
    async fn purge(
        &mut self,
        peers: &[NodeId],
        range: HashRange,
        max_version: ItemVersion,
    ) -> Result<u64, String> {
        let me = self.self_id.clone();
        let mine = self.digests(&me, &[range]).await?;
        let Some(&mine) = mine.first() else {
            return Ok(0);
        };
        if mine.count == 0 {
            return Ok(0);
        }
        for peer in peers {
            let theirs = self.digests(peer, &[range]).await?;
            if theirs.first() != Some(&mine) {
                // Not every owner holds the same tombstones: the next merge reconciles them,
                // a later pass purges.
                return Ok(0);
            }
        }
        let req = MergeRequest::PurgeTombstones {
            lo: range.lo,
            hi: range.hi,
            max_version,
        };
        let mut purged = 0;
        for node in std::iter::once(&me).chain(peers) {
            match self.call(node, &req).await? {
                MergeResponse::Purged { purged: n } => purged += n,
                other => {
                    return Err(format!(
                        "{node} answered PurgeTombstones with {}",
                        variant(&other)
                    ))
                }
            }
        }
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .totals
            .tombstones_purged += purged;
        Ok(purged)
    }
}

impl Ctx {
    /// Compares this node's digests of `slots` with each peer's. Returns the slots where some
    /// peer differs (with those peers) and how many slots could not be compared (a server
    /// unreachable or answering an error).
    async fn differing_slots(
        &self,
        slots: &[(u32, Vec<NodeId>)],
        slot_count: u32,
    ) -> (Vec<(u32, Vec<NodeId>)>, u32) {
        let me = self.self_id.clone();
        let ranges: Vec<HashRange> = slots
            .iter()
            .map(|(s, _)| slot_range(*s, slot_count))
            .collect();
        let mine = match self.digests(&me, &ranges).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("anti-entropy: cannot digest this node's slots: {e}");
                return (Vec::new(), slots.len() as u32);
            }
        };
        // Each peer is asked once for every slot of the batch it owns.
        let mut by_peer: Vec<(NodeId, Vec<usize>)> = Vec::new();
        for (i, (_, peers)) in slots.iter().enumerate() {
            for p in peers {
                match by_peer.iter_mut().find(|(q, _)| q == p) {
                    Some((_, idx)) => idx.push(i),
                    None => by_peer.push((p.clone(), vec![i])),
                }
            }
        }
        let mut differ: Vec<Vec<NodeId>> = vec![Vec::new(); slots.len()];
        let mut failed = vec![false; slots.len()];
        for (peer, idx) in by_peer {
            let asked: Vec<HashRange> = idx.iter().map(|&i| ranges[i]).collect();
            match self.digests(&peer, &asked).await {
                Ok(theirs) => {
                    for (d, &i) in theirs.iter().zip(&idx) {
                        if *d != mine[i] {
                            differ[i].push(peer.clone());
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%peer, "anti-entropy: cannot digest the peer's slots: {e}");
                    for &i in &idx {
                        failed[i] = true;
                    }
                }
            }
        }
        let out = slots
            .iter()
            .zip(differ)
            .zip(&failed)
            .filter(|((_, d), f)| !d.is_empty() && !**f)
            .map(|(((s, _), d), _)| (*s, d))
            .collect();
        (out, failed.iter().filter(|f| **f).count() as u32)
    }

    /// Merges one slot with the peers whose digest differs (`differing`), both ways, then
    /// checks the slot again against every peer (`peers`) and merges once more with those still
    /// different, up to [`ANTIENTROPY_SLOT_PASSES_MAX`] passes.
    async fn repair(
        &mut self,
        range: HashRange,
        mut differing: Vec<NodeId>,
        peers: &[NodeId],
    ) -> Result<(), String> {
        let me = self.self_id.clone();
        for pass in 1..=ANTIENTROPY_SLOT_PASSES_MAX {
            for peer in &differing {
                self.reconcile(peer, range, false).await?;
            }
            // With one peer a reconcile leaves both sides equal (up to writes in flight).
            if peers.len() < 2 || pass == ANTIENTROPY_SLOT_PASSES_MAX {
                break;
            }
            let mine = self.digests(&me, &[range]).await?;
            differing.clear();
            for peer in peers {
                if self.digests(peer, &[range]).await? != mine {
                    differing.push(peer.clone());
                }
            }
            if differing.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// One anti-entropy round over `slots` (slot, other owners): returns (compared, repaired,
    /// failed) slot counts. Counters are added to the shared totals as the round goes.
    async fn antientropy(
        &mut self,
        slots: &[(u32, Vec<NodeId>)],
        slot_count: u32,
    ) -> (u64, u64, u64) {
        let start = Instant::now();
        let (mut compared, mut repaired, mut failed) = (0u64, 0u64, 0u64);
        for (i, batch) in slots.chunks(ANTIENTROPY_BATCH_SLOTS).enumerate() {
            // Pace: batch i starts no sooner than i batches' worth of the slot rate.
            let due = Duration::from_secs_f64(
                (i * ANTIENTROPY_BATCH_SLOTS) as f64 / f64::from(ANTIENTROPY_SLOTS_PER_SEC_MAX),
            );
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let (differ, bad) = self.differing_slots(batch, slot_count).await;
            let checked = (batch.len() as u64).saturating_sub(u64::from(bad));
            let (mut fixed, mut bad) = (0u64, u64::from(bad));
            if !differ.is_empty() {
                tokio::time::sleep(Duration::from_millis(ANTIENTROPY_RECHECK_DELAY_MS)).await;
                let again: Vec<(u32, Vec<NodeId>)> = differ
                    .iter()
                    .map(|(s, _)| {
                        let all = batch
                            .iter()
                            .find(|(b, _)| b == s)
                            .map(|(_, p)| p.clone())
                            .unwrap_or_default();
                        (*s, all)
                    })
                    .collect();
                let (still, bad2) = self.differing_slots(&again, slot_count).await;
                bad += u64::from(bad2);
                for (slot, differing) in still {
                    let peers = again
                        .iter()
                        .find(|(s, _)| *s == slot)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default();
                    match self
                        .repair(slot_range(slot, slot_count), differing, &peers)
                        .await
                    {
                        Ok(()) => fixed += 1,
                        Err(e) => {
                            tracing::warn!(slot, "anti-entropy merge of slot failed: {e}");
                            bad += 1;
                        }
                    }
                }
            }
            compared += checked;
            repaired += fixed;
            failed += bad;
            let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            s.totals.antientropy_slots_compared += checked;
            s.totals.antientropy_slots_repaired += fixed;
            s.totals.slots_failed += bad;
        }
        (compared, repaired, failed)
    }
}

/// The hash range of `slot`.
fn slot_range(slot: u32, slot_count: u32) -> HashRange {
    let (lo, hi) = slot_hash_range(slot, slot_count);
    HashRange { lo, hi }
}

fn variant(r: &MergeResponse) -> &'static str {
    match r {
        MergeResponse::Digests { .. } => "Digests",
        MergeResponse::Versions { .. } => "Versions",
        MergeResponse::Items { .. } => "Items",
        MergeResponse::Applied { .. } => "Applied",
        MergeResponse::Purged { .. } => "Purged",
        MergeResponse::Dropped { .. } => "Dropped",
        MergeResponse::Error { .. } => "Error",
    }
}

/// Runs a job to the end, reporting each slot and the end to the router.
pub async fn run(
    job: MergeJob,
    cmd: mpsc::Sender<RouterCmd>,
    events: mpsc::UnboundedSender<JobEvent>,
    shared: Arc<Mutex<MergeShared>>,
) {
    let mut ctx = Ctx {
        cmd,
        shared: shared.clone(),
        self_id: job.self_id.clone(),
        rate: job.rate_bytes_per_sec,
        rate_start: Instant::now(),
        rate_bytes: 0,
        count_current: job.kind == JobKind::Merge,
    };
    if job.kind == JobKind::AntiEntropy {
        let before = shared.lock().unwrap_or_else(|p| p.into_inner()).totals;
        let (compared, repaired, failed) = ctx.antientropy(&job.slots, job.slot_count).await;
        let after = {
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            s.totals.antientropy_rounds += 1;
            s.totals
        };
        if repaired > 0 {
            tracing::info!(
                job = job.id,
                slots_compared = compared,
                slots_repaired = repaired,
                slots_failed = failed,
                items_moved = after.items_moved.saturating_sub(before.items_moved),
                bytes_moved = after.bytes_moved.saturating_sub(before.bytes_moved),
                "anti-entropy round repaired slots whose owners differed"
            );
        } else if failed > 0 {
            tracing::warn!(
                job = job.id,
                slots_compared = compared,
                slots_failed = failed,
                "anti-entropy round could not compare or merge some slots (server unreachable or error answer); the next round tries again"
            );
        } else {
            tracing::debug!(
                job = job.id,
                slots_compared = compared,
                "anti-entropy round: every owner holds the same items"
            );
        }
        let _ = events.send(JobEvent::Finished {
            job: job.id,
            failed_slots: u32::try_from(failed).unwrap_or(u32::MAX),
        });
        return;
    }
    let mut failed = 0u32;
    let (mut handed_off, mut purged) = (0u32, 0u64);
    let mut slots = job.slots.clone();
    if job.kind == JobKind::Handoff {
        // One batched digest finds the few slots this node holds anything of; a pass over a
        // node that holds only its own slots costs one request per DIGEST_RANGES_MAX slots.
        let ranges: Vec<HashRange> = slots
            .iter()
            .map(|(s, _)| {
                let (lo, hi) = slot_hash_range(*s, job.slot_count);
                HashRange { lo, hi }
            })
            .collect();
        match ctx.digests(&job.self_id, &ranges).await {
            Ok(held) => {
                slots = slots
                    .into_iter()
                    .zip(held)
                    .filter(|(_, d)| d.count > 0)
                    .map(|(s, _)| s)
                    .collect();
            }
            Err(e) => {
                tracing::warn!("hand-off pass: cannot digest this node's slots: {e}");
                slots.clear();
                failed += 1;
            }
        }
    }
    for (slot, peers) in &slots {
        let (lo, hi) = slot_hash_range(*slot, job.slot_count);
        let range = HashRange { lo, hi };
        let mut ok = true;
        match job.kind {
            JobKind::Merge => {
                for peer in peers {
                    if let Err(e) = ctx.reconcile(peer, range, false).await {
                        tracing::warn!(slot, %peer, "merge of slot failed: {e}");
                        ok = false;
                    }
                }
            }
            JobKind::Handoff => match ctx.handoff(peers, range).await {
                Ok(did) => handed_off += u32::from(did),
                Err(e) => {
                    tracing::warn!(
                        slot,
                        "hand-off of a slot this node no longer owns failed (copy kept): {e}"
                    );
                    ok = false;
                }
            },
            // Runs on its own path above.
            JobKind::AntiEntropy => {}
            JobKind::Purge { max_version } => match ctx.purge(peers, range, max_version).await {
                Ok(n) => purged += n,
                Err(e) => {
                    tracing::warn!(slot, "tombstone purge failed: {e}");
                    ok = false;
                }
            },
        }
        if !ok {
            failed += 1;
        }
        {
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            if job.kind == JobKind::Merge {
                s.slots_done += 1;
            }
            if !ok {
                s.totals.slots_failed += 1;
            }
        }
        let _ = events.send(JobEvent::SlotDone {
            job: job.id,
            slot: *slot,
            ok,
        });
    }
    match job.kind {
        JobKind::Merge => tracing::info!(
            job = job.id,
            slots = job.slots.len(),
            failed,
            "merge job finished"
        ),
        JobKind::Handoff if handed_off > 0 || failed > 0 => tracing::info!(
            job = job.id,
            handed_off,
            failed,
            "hand-off pass finished: copies of slots this node no longer owns were dropped"
        ),
        JobKind::Purge { .. } if purged > 0 || failed > 0 => tracing::info!(
            job = job.id,
            purged,
            failed,
            "tombstone purge pass finished"
        ),
        _ => {}
    }
    let _ = events.send(JobEvent::Finished {
        job: job.id,
        failed_slots: failed,
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::merge::protocol::{decode_request, encode_response};
    use crate::placement::key_hash;

    type Store = BTreeMap<Vec<u8>, (ItemVersion, bool, Vec<u8>)>;

    fn v(ms: u64) -> ItemVersion {
        ItemVersion {
            physical_ms: ms,
            logical: 0,
            node: 1,
        }
    }

    /// The answer of `node`'s server process to a merge request, or the error chmpx gives
    /// when `node` is not among `stores` (unreachable).
    fn answer_at(
        stores: &mut HashMap<NodeId, Store>,
        node: &NodeId,
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        match stores.get_mut(node) {
            Some(store) => Ok(answer(store, body)),
            None => Err(format!("cannot reach {node}")),
        }
    }

    /// Answers a merge request the way a server process holding `store` would.
    fn answer(store: &mut Store, body: &[u8]) -> Vec<u8> {
        let in_range = |k: &[u8], lo: u64, hi: u64| (lo..=hi).contains(&key_hash(k));
        let resp = match decode_request(body).unwrap() {
            MergeRequest::Digest { ranges } => MergeResponse::Digests {
                digests: ranges
                    .iter()
                    .map(|r| {
                        let mut d = RangeDigest::default();
                        for (k, (ver, tomb, _)) in
                            store.iter().filter(|(k, _)| in_range(k, r.lo, r.hi))
                        {
                            d.add_item(k, *ver, *tomb);
                        }
                        d
                    })
                    .collect(),
            },
            MergeRequest::ListVersions {
                lo,
                hi,
                cursor,
                limit,
            } => {
                let mut entries: Vec<KeyVersion> = store
                    .iter()
                    .filter(|(k, _)| in_range(k, lo, hi) && cursor.as_ref().is_none_or(|c| *k > c))
                    .take(limit as usize + 1)
                    .map(|(k, (ver, tomb, _))| KeyVersion {
                        key: k.clone(),
                        version: *ver,
                        tombstone: *tomb,
                    })
                    .collect();
                let more = entries.len() > limit as usize;
                entries.truncate(limit as usize);
                let next_cursor = more.then(|| entries.last().unwrap().key.clone());
                MergeResponse::Versions {
                    entries,
                    next_cursor,
                }
            }
            MergeRequest::FetchItems { keys } => {
                let items: Vec<(Vec<u8>, ItemVersion, bool, Vec<u8>)> = keys
                    .iter()
                    .filter_map(|k| {
                        store
                            .get(k.as_ref())
                            .map(|(ver, t, val)| (k.to_vec(), *ver, *t, val.clone()))
                    })
                    .collect();
                MergeResponse::Items {
                    count: items.len() as u32,
                    batch: rmp_serde::to_vec(&items).unwrap(),
                    served: keys.len() as u32,
                }
            }
            MergeRequest::ApplyItems { batch } => {
                let items: Vec<(Vec<u8>, ItemVersion, bool, Vec<u8>)> =
                    rmp_serde::from_slice(&batch).unwrap();
                let (mut applied, mut skipped, mut bytes) = (0, 0, 0);
                for (k, ver, t, val) in items {
                    if store.get(&k).is_none_or(|(have, _, _)| *have < ver) {
                        bytes += (k.len() + val.len()) as u64;
                        store.insert(k, (ver, t, val));
                        applied += 1;
                    } else {
                        skipped += 1;
                    }
                }
                MergeResponse::Applied {
                    applied,
                    skipped,
                    bytes,
                }
            }
            MergeRequest::PurgeTombstones {
                lo,
                hi,
                max_version,
            } => {
                let before = store.len();
                store.retain(|k, (ver, tomb, _)| {
                    !(in_range(k, lo, hi) && *tomb && *ver <= max_version)
                });
                MergeResponse::Purged {
                    purged: (before - store.len()) as u64,
                }
            }
            MergeRequest::DropRange { lo, hi } => {
                let before = store.len();
                store.retain(|k, _| !in_range(k, lo, hi));
                MergeResponse::Dropped {
                    dropped: (before - store.len()) as u64,
                    bytes: 0,
                }
            }
        };
        encode_response(&resp).unwrap()
    }

    #[tokio::test]
    async fn reconcile_copies_only_missing_and_older_items_both_ways() {
        let a_id = NodeId::new("a:1");
        let b_id = NodeId::new("b:1");
        let mut a = Store::new();
        // Enough items that a slot holds more than the list threshold: ranges get split.
        for i in 0..40_000u32 {
            a.insert(format!("key{i}").into_bytes(), (v(10), false, vec![1; 8]));
        }
        let mut b = a.clone();
        for i in 0..30u32 {
            b.remove(format!("key{i}").as_bytes()); // missing on b
        }
        for i in 100..110u32 {
            b.insert(format!("key{i}").into_bytes(), (v(20), false, vec![2; 8]));
            // newer on b
        }
        for i in 200..205u32 {
            b.insert(format!("key{i}").into_bytes(), (v(30), true, vec![])); // newer tombstones on b
        }
        for i in 0..7u32 {
            b.insert(
                format!("only-b-{i}").into_bytes(),
                (v(5), false, vec![3; 8]),
            ); // only on b
        }
        assert_ne!(a, b);

        let (cmd_tx, mut cmd_rx) = mpsc::channel(16);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(MergeShared::new(16)));
        let slot_count = 16;
        let job = MergeJob {
            kind: JobKind::Merge,
            id: 7,
            self_id: a_id.clone(),
            slot_count,
            slots: (0..slot_count).map(|s| (s, vec![b_id.clone()])).collect(),
            rate_bytes_per_sec: 0,
        };
        let runner = tokio::spawn(run(job, cmd_tx, ev_tx, shared.clone()));
        let mut requests = 0u32;
        while let Some(RouterCmd::ServerRpc { node, body, reply }) = cmd_rx.recv().await {
            requests += 1;
            let store = if node == a_id { &mut a } else { &mut b };
            let _ = reply.send(Ok(answer(store, &body)));
        }
        runner.await.unwrap();
        assert_eq!(a, b, "both owners hold the same items");
        let mut done = 0;
        while let Ok(ev) = ev_rx.try_recv() {
            match ev {
                JobEvent::SlotDone { job, .. } => {
                    assert_eq!(job, 7);
                    done += 1;
                }
                JobEvent::Finished { failed_slots, .. } => assert_eq!(failed_slots, 0),
            }
        }
        assert_eq!(done, slot_count);
        let p = shared.lock().unwrap().progress();
        // 30 to b, 10 + 5 + 7 to a: nothing else is copied.
        assert_eq!(p.items_moved, 52, "only missing or older items move: {p:?}");
        assert_eq!(p.slots_done, slot_count);
        assert!(
            requests > 2 * slot_count,
            "differing slots were narrowed and listed"
        );
    }

    /// Runs `job` against the stores named in `stores`; an id not in it is unreachable.
    async fn drive(
        job: MergeJob,
        stores: &mut HashMap<NodeId, Store>,
    ) -> (Vec<JobEvent>, MergeShared) {
        let (cmd_tx, mut cmd_rx) = mpsc::channel(16);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(MergeShared::default()));
        let runner = tokio::spawn(run(job, cmd_tx, ev_tx, shared.clone()));
        while let Some(RouterCmd::ServerRpc { node, body, reply }) = cmd_rx.recv().await {
            let _ = reply.send(answer_at(stores, &node, &body));
        }
        runner.await.unwrap();
        let evs = std::iter::from_fn(|| ev_rx.try_recv().ok()).collect();
        let shared = shared.lock().unwrap().clone();
        (evs, shared)
    }

    fn items(n: u32, ver: u64, tomb: bool) -> Store {
        (0..n)
            .map(|i| (format!("key{i}").into_bytes(), (v(ver), tomb, vec![1; 4])))
            .collect()
    }

    fn in_slot(store: &Store, slot: u32, slots: u32) -> usize {
        let (lo, hi) = slot_hash_range(slot, slots);
        store
            .keys()
            .filter(|k| (lo..=hi).contains(&key_hash(k)))
            .count()
    }

    #[tokio::test]
    async fn handoff_pushes_to_every_owner_then_drops_the_local_copy() {
        let (me, o1, o2) = (
            NodeId::new("old:1"),
            NodeId::new("o1:1"),
            NodeId::new("o2:1"),
        );
        let slots = 8;
        let mut stores = HashMap::new();
        let old = items(2_000, 10, false);
        let mut owner1 = old.clone();
        // o1 misses some items and holds one newer; o2 holds nothing yet.
        for i in 0..50u32 {
            owner1.remove(format!("key{i}").as_bytes());
        }
        owner1.insert(b"key60".to_vec(), (v(99), false, vec![9]));
        stores.insert(me.clone(), old.clone());
        stores.insert(o1.clone(), owner1);
        stores.insert(o2.clone(), Store::new());
        let job = MergeJob {
            kind: JobKind::Handoff,
            id: 3,
            self_id: me.clone(),
            slot_count: slots,
            slots: vec![
                (2, vec![o1.clone(), o2.clone()]),
                (5, vec![o1.clone(), o2.clone()]),
            ],
            rate_bytes_per_sec: 0,
        };
        let (evs, shared) = drive(job, &mut stores).await;
        assert_eq!(
            evs.last(),
            Some(&JobEvent::Finished {
                job: 3,
                failed_slots: 0
            })
        );
        for slot in [2, 5] {
            assert_eq!(
                in_slot(&stores[&me], slot, slots),
                0,
                "slot {slot} dropped here"
            );
            let want = in_slot(&old, slot, slots);
            assert!(want > 100);
            assert_eq!(in_slot(&stores[&o1], slot, slots), want);
            assert_eq!(in_slot(&stores[&o2], slot, slots), want);
        }
        assert_eq!(
            stores[&o1].get(b"key60".as_slice()).unwrap().0,
            v(99),
            "a push never overwrites a newer version"
        );
        let kept = in_slot(&old, 0, slots);
        assert_eq!(
            in_slot(&stores[&me], 0, slots),
            kept,
            "other slots untouched"
        );
        let t = shared.totals();
        let dropped = (in_slot(&old, 2, slots) + in_slot(&old, 5, slots)) as u64;
        assert_eq!(t.items_dropped, dropped);
        assert!(t.items_moved >= dropped, "o2 got every item: {t:?}");
        assert_eq!(
            shared.progress().slots_total,
            0,
            "a pass is not a merge job"
        );
    }

    #[tokio::test]
    async fn handoff_keeps_the_copy_when_an_owner_is_unreachable() {
        let (me, o1, gone) = (
            NodeId::new("old:1"),
            NodeId::new("o1:1"),
            NodeId::new("gone:1"),
        );
        let mut stores = HashMap::new();
        let old = items(500, 10, false);
        stores.insert(me.clone(), old.clone());
        stores.insert(o1.clone(), Store::new());
        let job = MergeJob {
            kind: JobKind::Handoff,
            id: 4,
            self_id: me.clone(),
            slot_count: 4,
            slots: vec![(1, vec![o1.clone(), gone])],
            rate_bytes_per_sec: 0,
        };
        let (evs, shared) = drive(job, &mut stores).await;
        assert_eq!(
            evs.last(),
            Some(&JobEvent::Finished {
                job: 4,
                failed_slots: 1
            })
        );
        assert_eq!(
            stores[&me], old,
            "nothing dropped while an owner cannot be reached"
        );
        assert_eq!(shared.totals().items_dropped, 0);
    }

    #[tokio::test]
    async fn purge_runs_only_where_every_owner_holds_the_same_tombstones() {
        let (me, peer) = (NodeId::new("p:1"), NodeId::new("q:1"));
        let slots = 4;
        let mut both = items(400, 10, false);
        for i in 0..100u32 {
            both.insert(format!("key{i}").into_bytes(), (v(20), true, vec![]));
        }
        // A recent tombstone (newer than the purge bound) everywhere.
        both.insert(b"key200".to_vec(), (v(1_000), true, vec![]));
        let mut other = both.clone();
        // Slot of key0 differs on the peer: one tombstone is missing there.
        other.remove(b"key0".as_slice());
        let differing = {
            let h = key_hash(b"key0");
            (0..slots)
                .find(|s| {
                    let (lo, hi) = slot_hash_range(*s, slots);
                    (lo..=hi).contains(&h)
                })
                .unwrap()
        };
        let mut stores = HashMap::new();
        stores.insert(me.clone(), both.clone());
        stores.insert(peer.clone(), other);
        let job = MergeJob {
            kind: JobKind::Purge {
                max_version: v(500),
            },
            id: 5,
            self_id: me.clone(),
            slot_count: slots,
            slots: (0..slots).map(|s| (s, vec![peer.clone()])).collect(),
            rate_bytes_per_sec: 0,
        };
        let (_, shared) = drive(job, &mut stores).await;
        let old_tombs = |st: &Store, slot: u32| {
            let (lo, hi) = slot_hash_range(slot, slots);
            st.iter()
                .filter(|(k, (ver, t, _))| *t && *ver <= v(500) && (lo..=hi).contains(&key_hash(k)))
                .count()
        };
        let mut expected = 0;
        for slot in 0..slots {
            let had = old_tombs(&both, slot);
            if slot == differing {
                assert_eq!(old_tombs(&stores[&me], slot), had, "unequal slot kept");
            } else {
                assert_eq!(old_tombs(&stores[&me], slot), 0, "slot {slot} purged here");
                assert_eq!(old_tombs(&stores[&peer], slot), 0, "and on the peer");
                expected += 2 * had as u64;
            }
        }
        assert!(expected > 0);
        assert_eq!(shared.totals().tombstones_purged, expected);
        assert!(
            stores[&me].contains_key(b"key200".as_slice()),
            "young tombstone kept"
        );
        assert!(stores[&peer].contains_key(b"key200".as_slice()));
        assert_eq!(
            stores[&me].values().filter(|(_, t, _)| !*t).count(),
            299,
            "live items untouched"
        );
    }

    /// Like [`drive`], also counting the requests by kind ("Digest", "ListVersions", ...).
    async fn drive_counting(
        job: MergeJob,
        stores: &mut HashMap<NodeId, Store>,
    ) -> (Vec<JobEvent>, MergeShared, BTreeMap<&'static str, u32>) {
        let (cmd_tx, mut cmd_rx) = mpsc::channel(16);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(MergeShared::default()));
        let runner = tokio::spawn(run(job, cmd_tx, ev_tx, shared.clone()));
        let mut kinds = BTreeMap::new();
        while let Some(RouterCmd::ServerRpc { node, body, reply }) = cmd_rx.recv().await {
            let kind = match decode_request(&body).unwrap() {
                MergeRequest::Digest { .. } => "Digest",
                MergeRequest::ListVersions { .. } => "ListVersions",
                MergeRequest::FetchItems { .. } => "FetchItems",
                MergeRequest::ApplyItems { .. } => "ApplyItems",
                MergeRequest::PurgeTombstones { .. } => "PurgeTombstones",
                MergeRequest::DropRange { .. } => "DropRange",
            };
            *kinds.entry(kind).or_insert(0) += 1;
            let _ = reply.send(answer_at(stores, &node, &body));
        }
        runner.await.unwrap();
        let evs = std::iter::from_fn(|| ev_rx.try_recv().ok()).collect();
        let shared = shared.lock().unwrap().clone();
        (evs, shared, kinds)
    }

    fn slot_of(key: &[u8], slots: u32) -> u32 {
        let h = key_hash(key);
        (0..slots)
            .find(|s| {
                let (lo, hi) = slot_hash_range(*s, slots);
                (lo..=hi).contains(&h)
            })
            .unwrap()
    }

    #[test]
    fn antientropy_plan_decides_when_and_which_slots() {
        let (a, b, c) = (NodeId::new("a:1"), NodeId::new("b:1"), NodeId::new("c:1"));
        let nodes = [a.clone(), b.clone(), c.clone()];
        // Slot s: owners nodes[s % 3], nodes[(s + 1) % 3]; slot 7 has a single owner.
        let owners = |s: u32| {
            if s == 7 {
                vec![nodes[1].clone()]
            } else {
                vec![
                    nodes[(s % 3) as usize].clone(),
                    nodes[((s + 1) % 3) as usize].clone(),
                ]
            }
        };
        let all_ready = |_: &NodeId, _: u32| true;
        let every = Duration::from_secs(30);
        let t0 = Instant::now();
        let plan = |interval, now, nb, busy, me: &NodeId, ready: &dyn Fn(&NodeId, u32) -> bool| {
            let timer = AntiEntropyTimer {
                interval,
                not_before: nb,
            };
            plan_antientropy(timer, now, busy, me, 12, owners, ready)
        };

        // Off: nothing is ever scheduled.
        assert_eq!(
            plan(Duration::ZERO, t0, Some(t0), false, &a, &all_ready),
            (AntiEntropyDecision::Off, None)
        );
        // The first decision schedules the first round one interval later.
        assert_eq!(
            plan(every, t0, None, false, &a, &all_ready),
            (AntiEntropyDecision::NotDue, Some(t0 + every))
        );
        // Not due yet: the due time stays.
        assert_eq!(
            plan(every, t0, Some(t0 + every), false, &a, &all_ready),
            (AntiEntropyDecision::NotDue, Some(t0 + every))
        );
        let due = t0 + every;
        // Due but busy (change pending, merge somewhere): skipped for one interval.
        assert_eq!(
            plan(every, due, Some(t0 + every), true, &a, &all_ready),
            (AntiEntropyDecision::Busy, Some(due + every))
        );
        // Due and idle: exactly the slots `a` is first owner of, each with its other owner.
        let (d, next) = plan(every, due, Some(t0 + every), false, &a, &all_ready);
        assert_eq!(next, Some(due + every));
        assert_eq!(
            d,
            AntiEntropyDecision::Start(vec![
                (0, vec![b.clone()]),
                (3, vec![b.clone()]),
                (6, vec![b.clone()]),
                (9, vec![b.clone()]),
            ])
        );
        // Slot 7 (one owner, `b`) is never checked; b's other first-owner slots are.
        let (d, _) = plan(every, due, Some(due), false, &b, &all_ready);
        assert_eq!(
            d,
            AntiEntropyDecision::Start(vec![
                (1, vec![c.clone()]),
                (4, vec![c.clone()]),
                (10, vec![c.clone()]),
            ])
        );
        // A slot with an owner not ready (DOWN, detached, gating or returning) is left out.
        let b_gates_3 = |o: &NodeId, s: u32| !(*o == b && s == 3);
        let (d, _) = plan(every, due, Some(due), false, &a, &b_gates_3);
        assert_eq!(
            d,
            AntiEntropyDecision::Start(vec![
                (0, vec![b.clone()]),
                (6, vec![b.clone()]),
                (9, vec![b.clone()]),
            ])
        );
        // Nobody ready but this node: nothing to check, next round one interval later.
        let only_a = |o: &NodeId, _: u32| *o == a;
        assert_eq!(
            plan(every, due, Some(due), false, &a, &only_a),
            (AntiEntropyDecision::NothingToCheck, Some(due + every))
        );
        // Each slot with two or more owners is driven by exactly one node.
        let mut driven = Vec::new();
        for me in &nodes {
            if let (AntiEntropyDecision::Start(s), _) =
                plan(every, due, Some(due), false, me, &all_ready)
            {
                driven.extend(s.into_iter().map(|(slot, _)| slot));
            }
        }
        driven.sort();
        assert_eq!(driven, vec![0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]);
    }

    #[tokio::test]
    async fn antientropy_merges_only_the_differing_slots() {
        let (me, p1, p2) = (NodeId::new("a:1"), NodeId::new("b:1"), NodeId::new("c:1"));
        let slots = 16;
        let base = items(3_000, 10, false);
        let mut stores = HashMap::new();
        // p1 missed two writes (one slot); p2 holds a live item that every other owner
        // deleted later (a tombstone it missed, another slot): newer wins, tombstones too.
        let mut b = base.clone();
        b.remove(b"key1".as_slice());
        b.remove(b"key2".as_slice());
        let mut a = base.clone();
        a.insert(b"key3".to_vec(), (v(50), true, vec![]));
        b.insert(b"key3".to_vec(), (v(50), true, vec![]));
        let c = base.clone();
        stores.insert(me.clone(), a.clone());
        stores.insert(p1.clone(), b);
        stores.insert(p2.clone(), c);
        let differing: std::collections::BTreeSet<u32> = [b"key1", b"key2", b"key3"]
            .iter()
            .map(|k| slot_of(k.as_slice(), slots))
            .collect();
        let job = |id| MergeJob {
            kind: JobKind::AntiEntropy,
            id,
            self_id: me.clone(),
            slot_count: slots,
            slots: (0..slots)
                .map(|s| (s, vec![p1.clone(), p2.clone()]))
                .collect(),
            rate_bytes_per_sec: 0,
        };
        let (evs, shared, kinds) = drive_counting(job(1), &mut stores).await;
        assert_eq!(
            evs,
            vec![JobEvent::Finished {
                job: 1,
                failed_slots: 0
            }]
        );
        assert_eq!(stores[&me], a, "this node held the newest of everything");
        assert_eq!(stores[&p1], a, "the missed writes reached p1");
        assert_eq!(stores[&p2], a, "the tombstone reached p2 and won");
        let t = shared.totals();
        assert_eq!(t.antientropy_rounds, 1);
        assert_eq!(t.antientropy_slots_compared, u64::from(slots));
        assert_eq!(t.antientropy_slots_repaired, differing.len() as u64);
        assert_eq!(
            t.items_moved, 3,
            "only the missing and older items move: {t:?}"
        );
        assert_eq!(t.jobs, 0, "a round is not a merge job");
        assert!(kinds["ListVersions"] > 0);

        // Every owner now equal: a second round compares and copies nothing.
        let (evs, shared, kinds) = drive_counting(job(2), &mut stores).await;
        assert_eq!(
            evs,
            vec![JobEvent::Finished {
                job: 2,
                failed_slots: 0
            }]
        );
        let t = shared.totals();
        assert_eq!(
            (
                t.antientropy_slots_compared,
                t.antientropy_slots_repaired,
                t.items_moved
            ),
            (u64::from(slots), 0, 0)
        );
        assert_eq!(
            kinds.keys().copied().collect::<Vec<_>>(),
            vec!["Digest"],
            "equal digests: no listing, no copy: {kinds:?}"
        );
        assert_eq!(kinds["Digest"], 3, "one batched Digest per owner");
    }

    #[tokio::test]
    async fn antientropy_counts_an_unreachable_peer_as_failed_and_still_checks_the_rest() {
        let (me, p1, gone) = (NodeId::new("a:1"), NodeId::new("b:1"), NodeId::new("z:1"));
        let slots = 8;
        let mut stores = HashMap::new();
        let a = items(200, 10, false);
        stores.insert(me.clone(), a.clone());
        stores.insert(p1.clone(), Store::new());
        let job = MergeJob {
            kind: JobKind::AntiEntropy,
            id: 9,
            self_id: me.clone(),
            slot_count: slots,
            slots: (0..slots)
                .map(|s| (s, vec![if s < 2 { gone.clone() } else { p1.clone() }]))
                .collect(),
            rate_bytes_per_sec: 0,
        };
        let (evs, shared, _) = drive_counting(job, &mut stores).await;
        assert_eq!(
            evs,
            vec![JobEvent::Finished {
                job: 9,
                failed_slots: 2
            }]
        );
        let t = shared.totals();
        assert_eq!((t.antientropy_slots_compared, t.slots_failed), (6, 2));
        for s in 2..slots {
            assert_eq!(in_slot(&stores[&p1], s, slots), in_slot(&a, s, slots));
        }
        assert_eq!(in_slot(&stores[&p1], 0, slots), 0);
    }

    #[test]
    fn purge_age_and_bound() {
        assert_eq!(
            purge_pass_interval(Duration::from_secs(4)),
            Duration::from_secs(2)
        );
        assert_eq!(
            purge_pass_interval(Duration::from_secs(3600)),
            Duration::from_millis(PURGE_PASS_INTERVAL_MAX_MS)
        );
        let b = purge_max_version(Duration::from_secs(10));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(b.physical_ms <= now - 10_000 && b.physical_ms + 11_000 > now);
    }

    #[tokio::test]
    async fn unreachable_peer_fails_the_slot_without_hanging() {
        let (cmd_tx, mut cmd_rx) = mpsc::channel(16);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let job = MergeJob {
            kind: JobKind::Merge,
            id: 1,
            self_id: NodeId::new("a:1"),
            slot_count: 16,
            slots: vec![(3, vec![NodeId::new("b:1")])],
            rate_bytes_per_sec: 0,
        };
        let runner = tokio::spawn(run(
            job,
            cmd_tx,
            ev_tx,
            Arc::new(Mutex::new(MergeShared::new(1))),
        ));
        while let Some(RouterCmd::ServerRpc { reply, .. }) = cmd_rx.recv().await {
            let _ = reply.send(Err("cannot reach b:1".into()));
        }
        runner.await.unwrap();
        let evs: Vec<JobEvent> = std::iter::from_fn(|| ev_rx.try_recv().ok()).collect();
        assert_eq!(
            evs.last(),
            Some(&JobEvent::Finished {
                job: 1,
                failed_slots: 1
            })
        );
    }
}
