//! The async (tokio) client: the same commands as [`super::Client`], awaited without holding a
//! thread. Clones share one attachment to chmpx.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chmpx::attach::Route;

use crate::proto::{Item, Request, Response, SetMode};

use super::child_walk::ChildWalk;
use super::core::{check_flush_confirm, encode, judge, route_of, Attempt, Core, Op};
use super::error::{ClientError, Result};
use super::fanout::{
    finish_flush, finish_scan, finish_stats, get_requests, read_gets, scan_request, to_every_node,
};
use super::options::{ClientOptions, IN_FLIGHT_MAX};
use super::topology::Topology;
use super::types::{Expiry, NodeStats, ScanBatch, ScanQuery, StoreOptions};
use super::{command, ops, Client};

/// An async dkc client attached to the local chmpx.
///
/// ```no_run
/// # async fn demo() -> Result<(), dkc_client::client::ClientError> {
/// use dkc_client::client::{AsyncClient, Expiry};
///
/// let client = AsyncClient::from_conf("/etc/dkc/slave.ini", None).await?;
/// let hits = client.incr("hits", 1, Some(0), Expiry::Never).await?;
/// println!("{hits} hits");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncClient {
    pub(crate) core: Arc<Core>,
    pub(crate) timeout: Duration,
}

/// Sends `req` until it is answered or fails for good. The body is encoded once and moved
/// into the first attempt (a set's value is not copied again); a retry encodes it anew.
async fn send(core: &Core, timeout: Duration, req: &Request, route: Route) -> Result<Response> {
    let mut body = Some(encode(req)?);
    let mut attempt = 0;
    loop {
        let bytes = match body.take() {
            Some(b) => b,
            None => encode(req)?,
        };
        let outcome = core.att.request_async(route, bytes, timeout).await;
        match judge(req, outcome, timeout) {
            Attempt::Answer(r) => return Ok(r),
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry(e) => {
                tokio::time::sleep(core.retry_pause(req, &mut attempt, e)?).await;
            }
        }
    }
}

/// Polls every future from this one task until all are done; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut left = futures.len();
    std::future::poll_fn(|cx| {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                if let Poll::Ready(v) = future.as_mut().poll(cx) {
                    *output = Some(v);
                    left -= 1;
                }
            }
        }
        if left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

impl AsyncClient {
    /// As [`Client::from_conf`]; attaching (which may wait for chmpx) runs off the runtime.
    pub async fn from_conf(path: impl AsRef<Path>, ctlport: Option<u16>) -> Result<AsyncClient> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let client = tokio::task::spawn_blocking(move || Client::from_conf(path, ctlport))
            .await
            .map_err(|e| ClientError::Unavailable {
                reason: format!("attach task failed: {e}"),
            })??;
        Ok(client.to_async())
    }

    /// As [`Client::connect`]: asks the chmpx at `ctlport` for the server nodes, then attaches.
    pub async fn connect(cluster: &str, ctlport: u16, opts: ClientOptions) -> Result<AsyncClient> {
        let topo = Topology::query(ctlport).await?;
        if topo.cluster != cluster {
            return Err(ClientError::Config(format!(
                "the chmpx at control port {ctlport} serves cluster {:?}, not {cluster:?}",
                topo.cluster
            )));
        }
        let client = tokio::task::spawn_blocking(move || Client::attach(topo, opts))
            .await
            .map_err(|e| ClientError::Unavailable {
                reason: format!("attach task failed: {e}"),
            })??;
        Ok(client.to_async())
    }

    /// A handle whose calls wait `timeout` per attempt.
    pub fn with_timeout(&self, timeout: Duration) -> AsyncClient {
        AsyncClient {
            core: self.core.clone(),
            timeout,
        }
    }

    /// The timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The cluster's server nodes and REPLICA as this client sees them.
    pub fn topology(&self) -> &Topology {
        &self.core.topo
    }

    /// The blocking form of this client, sharing its attachment.
    pub fn to_blocking(&self) -> Client {
        Client {
            core: self.core.clone(),
            timeout: self.timeout,
        }
    }

    async fn run<T>(&self, op: Op<T>) -> Result<T> {
        let route = route_of(&op.req);
        let resp = send(&self.core, self.timeout, &op.req, route).await?;
        op.finish(resp, self.timeout)
    }

    /// Sends every request at once and collects the answers in order. The requests are
    /// driven by this task (no task per request, so no hop to another worker thread), at most
    /// [`IN_FLIGHT_MAX`] at a time.
    async fn fan_out(&self, reqs: Vec<(Route, Request)>) -> Vec<Result<Response>> {
        let mut out = Vec::with_capacity(reqs.len());
        for wave in reqs.chunks(IN_FLIGHT_MAX) {
            let sends = wave
                .iter()
                .map(|(route, req)| send(&self.core, self.timeout, req, *route))
                .collect();
            out.extend(join_all(sends).await);
        }
        out
    }

    /// The live items of `keys`, one entry per key in the order asked (`None`: missing), all
    /// requests in flight together. What the memcached front's multi-get needs.
    pub(crate) async fn get_each<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Item>>> {
        let answers = self.fan_out(get_requests(keys)).await;
        read_gets(keys, answers, self.timeout)
    }

    /// The live item of `key`, or `None`.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Item>> {
        self.run(ops::get(key.as_ref())).await
    }

    /// The live items of `keys`, in the order asked, missing keys left out (one request per
    /// key, all in flight together).
    pub async fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Item>> {
        Ok(self.get_each(keys).await?.into_iter().flatten().collect())
    }

    /// Stores unconditionally; returns the new version.
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: StoreOptions,
    ) -> Result<u64> {
        self.run(ops::store(key.as_ref(), value.as_ref(), SetMode::Set, opts))
            .await
    }

    /// Stores only if absent, else [`ClientError::Exists`].
    pub async fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: StoreOptions,
    ) -> Result<u64> {
        self.run(ops::store(key.as_ref(), value.as_ref(), SetMode::Add, opts))
            .await
    }

    /// Stores only if present, else [`ClientError::NotStored`].
    pub async fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: StoreOptions,
    ) -> Result<u64> {
        self.run(ops::store(
            key.as_ref(),
            value.as_ref(),
            SetMode::Replace,
            opts,
        ))
        .await
    }

    /// Appends to the live value, else [`ClientError::NotStored`].
    pub async fn append(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        self.run(ops::store(
            key.as_ref(),
            value.as_ref(),
            SetMode::Append,
            StoreOptions::new(),
        ))
        .await
    }

    /// Prepends to the live value, else [`ClientError::NotStored`].
    pub async fn prepend(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        self.run(ops::store(
            key.as_ref(),
            value.as_ref(),
            SetMode::Prepend,
            StoreOptions::new(),
        ))
        .await
    }

    /// Stores only if the live version is `version` (see [`Client::cas`]).
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        version: u64,
        opts: StoreOptions,
    ) -> Result<u64> {
        self.run(ops::store(
            key.as_ref(),
            value.as_ref(),
            SetMode::Cas(version),
            opts,
        ))
        .await
    }

    /// Deletes the live item, else [`ClientError::NotFound`].
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.run(ops::delete(key.as_ref(), None)).await
    }

    /// Deletes only if the live version is `version`.
    pub async fn delete_if(&self, key: impl AsRef<[u8]>, version: u64) -> Result<()> {
        self.run(ops::delete(key.as_ref(), Some(version))).await
    }

    /// See [`Client::incr`].
    pub async fn incr(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: Option<u64>,
        expiry: Expiry,
    ) -> Result<u64> {
        self.run(ops::incr(key.as_ref(), delta, initial, expiry))
            .await
    }

    /// See [`Client::decr`].
    pub async fn decr(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: Option<u64>,
        expiry: Expiry,
    ) -> Result<u64> {
        self.run(ops::decr(key.as_ref(), delta, initial, expiry))
            .await
    }

    /// Changes the expiry of a live item.
    pub async fn touch(&self, key: impl AsRef<[u8]>, expiry: Expiry) -> Result<()> {
        self.run(ops::touch(key.as_ref(), expiry)).await
    }

    /// Changes the expiry and returns the item, or `None`.
    pub async fn get_and_touch(
        &self,
        key: impl AsRef<[u8]>,
        expiry: Expiry,
    ) -> Result<Option<Item>> {
        self.run(ops::get_and_touch(key.as_ref(), expiry)).await
    }

    /// See [`Client::set_subkeys`].
    pub async fn set_subkeys<S: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        subkeys: &[S],
    ) -> Result<()> {
        let list: Vec<Vec<u8>> = subkeys.iter().map(|s| s.as_ref().to_vec()).collect();
        self.run(ops::set_subkeys(key.as_ref(), &list)).await
    }

    /// See [`Client::add_subkey`].
    pub async fn add_subkey(&self, key: impl AsRef<[u8]>, subkey: impl AsRef<[u8]>) -> Result<()> {
        self.run(ops::add_subkey(key.as_ref(), subkey.as_ref()))
            .await
    }

    /// See [`Client::remove_subkey`].
    pub async fn remove_subkey(
        &self,
        key: impl AsRef<[u8]>,
        subkey: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.run(ops::remove_subkey(key.as_ref(), subkey.as_ref()))
            .await
    }

    /// See [`Client::list_subkeys`].
    pub async fn list_subkeys(&self, key: impl AsRef<[u8]>) -> Result<Vec<Vec<u8>>> {
        self.run(ops::list_subkeys(key.as_ref())).await
    }

    /// See [`Client::clear_subkeys`].
    pub async fn clear_subkeys(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.run(ops::clear_subkeys(key.as_ref())).await
    }

    /// See [`Client::delete_with_children`].
    pub async fn delete_with_children(&self, key: impl AsRef<[u8]>) -> Result<u64> {
        let mut walk = ChildWalk::new(key.as_ref());
        while let Some((k, depth)) = walk.next_key() {
            walk.record(depth, self.run(ops::delete_with_children(&k)).await)?;
        }
        Ok(walk.deleted())
    }

    /// See [`Client::scan`].
    pub async fn scan(&self, query: &ScanQuery) -> Result<ScanBatch> {
        command::check_scan_limit(query.limit)?;
        let req = scan_request(query);
        let nodes = self.core.topo.servers.clone();
        let answers = self.fan_out(to_every_node(&nodes, &req)).await;
        finish_scan(&self.core.topo, query, nodes, answers, self.timeout)
    }

    /// See [`Client::stats`].
    pub async fn stats(&self) -> Result<Vec<NodeStats>> {
        let nodes = self.core.topo.servers.clone();
        let answers = self.fan_out(to_every_node(&nodes, &Request::Stats)).await;
        Ok(finish_stats(nodes, answers))
    }

    /// See [`Client::flush`].
    pub async fn flush(&self, confirm: bool) -> Result<u64> {
        check_flush_confirm(confirm)?;
        let nodes = self.core.topo.servers.clone();
        let req = Request::Flush { confirm };
        let answers = self.fan_out(to_every_node(&nodes, &req)).await;
        finish_flush(nodes, answers, self.timeout)
    }
}
