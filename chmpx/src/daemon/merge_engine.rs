//! The merge engine: reconciles slots between this node's server process and its co-owners'.
//!
//! For each slot of a job and each peer owner, it compares the digest of the slot's hash range
//! on both sides; a differing range is cut into [`MERGE_SPLIT_FANOUT`] pieces and the pieces are
//! compared again, until a differing piece is small ([`MERGE_LIST_THRESHOLD_ITEMS`]) — then both
//! sides list their (key, version) pairs and only the items missing or older on one side are
//! fetched from the other and applied. Copies go both ways, so a node that was away gets what
//! it missed and a peer gets anything only this node held. Copying is rate-limited.
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
use super::status::MergeProgress;
use crate::merge::protocol::{
    decode_response, encode_request, HashRange, ItemVersion, KeyVersion, MergeRequest,
    MergeResponse, RangeDigest, DIGEST_RANGES_MAX, FETCH_KEYS_MAX, LIST_LIMIT_MAX,
};
use crate::placement::{slot_hash_range, NodeId};

/// A merge job: slots to reconcile, each with the peers to reconcile it with.
#[derive(Debug, Clone)]
pub struct MergeJob {
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
    },
    /// The job is over.
    Finished {
        /// Job id.
        job: u64,
        /// Slots that could not be reconciled.
        failed_slots: u32,
    },
}

/// Progress shared with the router (for the status tool and metrics).
#[derive(Debug, Clone, Default)]
pub struct MergeShared {
    started: Option<Instant>,
    slots_total: u32,
    slots_done: u32,
    items_moved: u64,
    bytes_moved: u64,
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
                    s.items_moved += applied;
                    s.bytes_moved += bytes.max(len);
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

    /// Reconciles `range` between this node and `peer`.
    async fn reconcile(&mut self, peer: &NodeId, range: HashRange) -> Result<(), String> {
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
                    self.sync_listed(peer, *r).await?;
                } else {
                    next.extend(r.split(MERGE_SPLIT_FANOUT));
                }
            }
            frontier = next;
        }
        Ok(())
    }

    async fn sync_listed(&mut self, peer: &NodeId, r: HashRange) -> Result<(), String> {
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
        self.copy(peer, &me, to_me).await?;
        self.copy(&me, peer, to_peer).await
    }
}

fn variant(r: &MergeResponse) -> &'static str {
    match r {
        MergeResponse::Digests { .. } => "Digests",
        MergeResponse::Versions { .. } => "Versions",
        MergeResponse::Items { .. } => "Items",
        MergeResponse::Applied { .. } => "Applied",
        MergeResponse::Purged { .. } => "Purged",
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
    };
    let mut failed = 0u32;
    for (slot, peers) in &job.slots {
        let (lo, hi) = slot_hash_range(*slot, job.slot_count);
        let range = HashRange { lo, hi };
        let mut ok = true;
        for peer in peers {
            if let Err(e) = ctx.reconcile(peer, range).await {
                tracing::warn!(slot, %peer, "merge of slot failed: {e}");
                ok = false;
            }
        }
        if !ok {
            failed += 1;
        }
        shared.lock().unwrap_or_else(|p| p.into_inner()).slots_done += 1;
        let _ = events.send(JobEvent::SlotDone {
            job: job.id,
            slot: *slot,
        });
    }
    tracing::info!(
        job = job.id,
        slots = job.slots.len(),
        failed,
        "merge job finished"
    );
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
            MergeRequest::PurgeTombstones { .. } => MergeResponse::Purged { purged: 0 },
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

    #[tokio::test]
    async fn unreachable_peer_fails_the_slot_without_hanging() {
        let (cmd_tx, mut cmd_rx) = mpsc::channel(16);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let job = MergeJob {
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
