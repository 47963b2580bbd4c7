//! What the blocking and async clients share for commands that send many requests at once:
//! the request lists (one per key, one per server node) and how their answers are read. Only
//! the sending differs between the two clients; everything here is pure.

use std::time::Duration;

use chmpx::attach::Route;

use crate::proto::{Item, Request, Response, ScanPage};

use super::command;
use super::core::{check_missing, node_route, route_of};
use super::error::{ClientError, Result};
use super::ops;
use super::topology::Topology;
use super::types::{NodeStats, ScanBatch, ScanQuery};

/// One `Get` per key, each routed to its own key's owner.
pub(crate) fn get_requests<K: AsRef<[u8]>>(keys: &[K]) -> Vec<(Route, Request)> {
    keys.iter()
        .map(|k| {
            let req = Request::Get {
                key: k.as_ref().to_vec(),
            };
            (route_of(&req), req)
        })
        .collect()
}

/// The answers of [`get_requests`], one entry per key in order (`None`: missing); the first
/// failed request fails the whole call.
pub(crate) fn read_gets<K: AsRef<[u8]>>(
    keys: &[K],
    answers: Vec<Result<Response>>,
    timeout: Duration,
) -> Result<Vec<Option<Item>>> {
    let mut out = Vec::with_capacity(keys.len());
    for (resp, key) in answers.into_iter().zip(keys) {
        out.push(ops::get(key.as_ref()).finish(resp?, timeout)?);
    }
    Ok(out)
}

/// `req` to every server node `nodes` names, in that order.
pub(crate) fn to_every_node(nodes: &[String], req: &Request) -> Vec<(Route, Request)> {
    nodes.iter().map(|n| (node_route(n), req.clone())).collect()
}

pub(crate) fn scan_request(query: &ScanQuery) -> Request {
    Request::Scan {
        range: query.range.clone(),
        cursor: query.cursor.clone(),
        limit: query.limit,
        keys_only: query.keys_only,
    }
}

pub(crate) fn finish_scan(
    topo: &Topology,
    query: &ScanQuery,
    nodes: Vec<String>,
    answers: Vec<Result<Response>>,
    timeout: Duration,
) -> Result<ScanBatch> {
    let ctx = command::Ctx {
        what: "scan",
        key: b"",
        timeout,
    };
    let mut pages: Vec<ScanPage> = Vec::new();
    let mut missing = Vec::new();
    for (node, answer) in nodes.into_iter().zip(answers) {
        match answer {
            Ok(Response::ScanPage(p)) => pages.push(p),
            Ok(other) => match ctx.unexpected(other) {
                e @ (ClientError::Unavailable { .. } | ClientError::Timeout { .. }) => {
                    missing.push((node, e))
                }
                e => return Err(e),
            },
            Err(e) if e.is_unavailable() => missing.push((node, e)),
            Err(e) => return Err(e),
        }
    }
    check_missing(topo, "scan", &missing)?;
    let (items, cursor) = super::scan::merge_pages(pages, query.limit as usize);
    Ok(ScanBatch {
        items,
        cursor,
        missing_nodes: missing.into_iter().map(|(n, _)| n).collect(),
    })
}

pub(crate) fn finish_stats(nodes: Vec<String>, answers: Vec<Result<Response>>) -> Vec<NodeStats> {
    nodes
        .into_iter()
        .zip(answers)
        .map(|(node, a)| NodeStats {
            node,
            stats: match a {
                Ok(Response::Stats(m)) => Ok(m),
                Ok(Response::Error { code, message }) => Err(format!("{code}: {message}")),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            },
        })
        .collect()
}

pub(crate) fn finish_flush(
    nodes: Vec<String>,
    answers: Vec<Result<Response>>,
    timeout: Duration,
) -> Result<u64> {
    let ctx = command::Ctx {
        what: "flush",
        key: b"",
        timeout,
    };
    let mut total = 0u64;
    let mut failed = Vec::new();
    for (node, a) in nodes.iter().zip(answers) {
        match a.and_then(|r| match r {
            Response::Flushed { deleted } => Ok(deleted),
            other => Err(ctx.unexpected(other)),
        }) {
            Ok(n) => total += n,
            Err(e) => failed.push(format!("{node}: {e}")),
        }
    }
    if failed.is_empty() {
        Ok(total)
    } else {
        Err(ClientError::Unavailable {
            reason: format!(
                "flush reached {} of {} server nodes; not flushed: {}",
                nodes.len() - failed.len(),
                nodes.len(),
                failed.join("; ")
            ),
        })
    }
}
