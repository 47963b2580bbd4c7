//! Requests to one named node, bypassing routing (`Route::Node`), to see what each owner
//! really holds: reads, stats, scans, and per-slot digests through the merge protocol's
//! `Digest` request (the same request chmpx's merge sends; dkc-server answers it for any
//! sender).

use std::collections::BTreeMap;

use chmpx::attach::Route;
use chmpx::merge::protocol::{self as mp, HashRange, MergeRequest, MergeResponse, RangeDigest};
use chmpx::placement::{slot_hash_range, NodeId};
use dkc_client::proto::{Item, Request, Response, ScanRange};

use crate::kv::{AttachKv, KvError};

/// Items one direct scan page asks for.
pub const SCAN_PAGE_ITEMS: u32 = 1000;

fn route(node: &NodeId) -> Route {
    Route::Node(chmpx::daemon::node_number(node.as_str()))
}

impl AttachKv {
    /// The live item of `key` as `node` holds it.
    pub fn get_from(&self, node: &NodeId, key: &[u8]) -> Result<Option<Item>, KvError> {
        match self.call_on(route(node), &Request::Get { key: key.to_vec() })? {
            Response::Value(item) => Ok(Some(item)),
            Response::NotFound => Ok(None),
            r => Err(KvError::Unknown(format!("get from {node}: {r:?}"))),
        }
    }

    /// `node`'s counters (`curr_items`, `tombstones`, ...).
    pub fn stats_of(&self, node: &NodeId) -> Result<BTreeMap<String, u64>, KvError> {
        match self.call_on(route(node), &Request::Stats)? {
            Response::Stats(s) => Ok(s),
            r => Err(KvError::Unknown(format!("stats of {node}: {r:?}"))),
        }
    }

    /// One counter (`name`, 0 when absent) of each of `nodes`. Panics naming the node when its
    /// stats cannot be read (a test helper).
    pub fn stat_per_node(&self, nodes: &[NodeId], name: &str) -> BTreeMap<NodeId, u64> {
        nodes
            .iter()
            .map(|n| {
                let stats = self
                    .stats_of(n)
                    .unwrap_or_else(|e| panic!("stats of {n}: {e}"));
                (n.clone(), stats.get(name).copied().unwrap_or(0))
            })
            .collect()
    }

    /// Every live item `node` holds under `prefix`, in key order.
    pub fn scan_node(&self, node: &NodeId, prefix: &[u8]) -> Result<Vec<Item>, KvError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let req = Request::Scan {
                range: ScanRange::Prefix(prefix.to_vec()),
                cursor: cursor.take(),
                limit: SCAN_PAGE_ITEMS,
                keys_only: false,
            };
            match self.call_on(route(node), &req)? {
                Response::ScanPage(page) => {
                    out.extend(page.items);
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => return Ok(out),
                    }
                }
                r => return Err(KvError::Unknown(format!("scan of {node}: {r:?}"))),
            }
        }
    }

    /// The digests `node` reports for `slots` (same order), through the merge protocol.
    pub fn slot_digests(
        &self,
        node: &NodeId,
        slots: &[u32],
        slot_count: u32,
    ) -> Result<Vec<RangeDigest>, KvError> {
        let mut out = Vec::with_capacity(slots.len());
        for chunk in slots.chunks(mp::DIGEST_RANGES_MAX) {
            let ranges: Vec<HashRange> = chunk
                .iter()
                .map(|s| {
                    let (lo, hi) = slot_hash_range(*s, slot_count);
                    HashRange { lo, hi }
                })
                .collect();
            let body = mp::encode_request(&MergeRequest::Digest { ranges })
                .map_err(|e| KvError::Failed(format!("encode digest request: {e}")))?;
            let answer = self.raw(route(node), &body)?;
            match mp::decode_response(&answer) {
                Ok(MergeResponse::Digests { digests }) if digests.len() == chunk.len() => {
                    out.extend(digests);
                }
                other => {
                    return Err(KvError::Unknown(format!(
                        "digest from {node}: unexpected answer {other:?}"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// Slots whose owners (in `map`) report different digests, as readable lines; empty when every
/// owner of every slot holds the same items at the same versions. An owner that does not
/// answer counts as a mismatch.
pub fn digest_mismatches(kv: &AttachKv, map: &chmpx::placement::PlacementMap) -> Vec<String> {
    let slot_count = map.slot_count();
    let slots: Vec<u32> = (0..slot_count).collect();
    let mut per_node: BTreeMap<NodeId, Result<Vec<RangeDigest>, KvError>> = BTreeMap::new();
    for node in map.members() {
        per_node.insert(node.clone(), kv.slot_digests(node, &slots, slot_count));
    }
    let mut bad = Vec::new();
    for slot in 0..slot_count {
        let owners = map.owners(slot);
        let seen: Vec<(NodeId, Option<RangeDigest>)> = owners
            .iter()
            .map(|o| {
                let d = per_node
                    .get(o)
                    .and_then(|r| r.as_ref().ok())
                    .map(|v| v[slot as usize]);
                (o.clone(), d)
            })
            .collect();
        let first = seen.first().and_then(|s| s.1);
        if seen.iter().any(|(_, d)| d.is_none() || *d != first) {
            let text: Vec<String> = seen
                .iter()
                .map(|(o, d)| match d {
                    Some(d) => format!("{o}: {} items #{:016x}", d.count, d.hash),
                    None => format!("{o}: no answer"),
                })
                .collect();
            bad.push(format!("slot {slot}: {}", text.join(", ")));
        }
    }
    bad
}
