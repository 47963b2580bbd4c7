//! The blocking client: every call waits for its answer on the calling thread. Clone it freely;
//! clones share one attachment to chmpx and may be used from many threads at once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chmpx::attach::{Attachment, PendingResponse, Role};
use chmpx::config::{Config, LocalAddrs};

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
use super::{command, ops};

/// A blocking dkc client attached to the local chmpx.
///
/// ```no_run
/// use dkc_client::client::{Client, StoreOptions};
///
/// let client = Client::from_conf("/etc/dkc/slave.ini", None)?;
/// client.set("greeting", "hello", StoreOptions::new())?;
/// let item = client.get("greeting")?.expect("just stored");
/// assert_eq!(item.value, b"hello");
/// # Ok::<(), dkc_client::client::ClientError>(())
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) core: Arc<Core>,
    pub(crate) timeout: Duration,
}

impl Client {
    /// Attaches to this host's chmpx of the cluster described by `path`. `ctlport` picks the
    /// entry when several nodes of the file run on this host (as `chmpx --ctlport`); the
    /// entry is found with `Config::self_node`. Timeouts and limits come from the file.
    pub fn from_conf(path: impl AsRef<Path>, ctlport: Option<u16>) -> Result<Client> {
        let cfg = Config::load(path.as_ref()).map_err(|e| ClientError::Config(e.to_string()))?;
        Client::from_config(&cfg, ctlport, ClientOptions::from_config(&cfg))
    }

    /// As [`Client::from_conf`] with a parsed config and explicit options.
    pub fn from_config(cfg: &Config, ctlport: Option<u16>, opts: ClientOptions) -> Result<Client> {
        let me = cfg
            .self_node(ctlport, &LocalAddrs::detect())
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let topo = Topology::from_config(cfg, me.ctlport);
        Client::attach(topo, opts)
    }

    /// Attaches to the chmpx of `cluster` at control port `ctlport` on this host, asking it
    /// (STATUSJSON on its control port) for the server nodes. Must not be called from inside a
    /// tokio runtime (use [`super::AsyncClient::connect`] there).
    pub fn connect(cluster: &str, ctlport: u16, opts: ClientOptions) -> Result<Client> {
        let mut topo = Topology::query_blocking(ctlport)?;
        if topo.cluster != cluster {
            return Err(ClientError::Config(format!(
                "the chmpx at control port {ctlport} serves cluster {:?}, not {cluster:?}",
                topo.cluster
            )));
        }
        topo.cluster = cluster.to_string();
        Client::attach(topo, opts)
    }

    /// Attaches with a known topology.
    pub fn attach(topo: Topology, opts: ClientOptions) -> Result<Client> {
        let att = Attachment::connect(
            &topo.cluster,
            topo.ctlport,
            Role::Client,
            opts.attach.clone(),
        )
        .map_err(|e| ClientError::Unavailable {
            reason: format!(
                "cannot attach to chmpx of cluster {} at ctlport {}: {e}",
                topo.cluster, topo.ctlport
            ),
        })?;
        let timeout = opts.request_timeout;
        Ok(Client {
            core: Arc::new(Core { att, topo, opts }),
            timeout,
        })
    }

    /// A handle whose calls wait `timeout` per attempt (the per-call override):
    /// `client.with_timeout(Duration::from_millis(200)).get("k")`.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
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

    /// The async form of this client, sharing its attachment.
    pub fn to_async(&self) -> super::AsyncClient {
        super::AsyncClient {
            core: self.core.clone(),
            timeout: self.timeout,
        }
    }

    fn send(&self, req: &Request, route: chmpx::attach::Route) -> Result<Response> {
        let body = encode(req)?;
        let mut attempt = 0;
        loop {
            let outcome = self.core.att.request(route, &body, self.timeout);
            match judge(req, outcome, self.timeout) {
                Attempt::Answer(r) => return Ok(r),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e) => {
                    std::thread::sleep(self.core.retry_pause(req, &mut attempt, e)?);
                }
            }
        }
    }

    fn run<T>(&self, op: Op<T>) -> Result<T> {
        let resp = self.send(&op.req, route_of(&op.req))?;
        op.finish(resp, self.timeout)
    }

    /// Sends one request to each of `reqs` (route, request) at once and collects the answers,
    /// retrying the ones that may be retried one by one.
    fn fan_out(&self, mut reqs: Vec<(chmpx::attach::Route, Request)>) -> Vec<Result<Response>> {
        let mut out = Vec::with_capacity(reqs.len());
        while !reqs.is_empty() {
            let rest = reqs.split_off(reqs.len().min(IN_FLIGHT_MAX));
            out.extend(self.fan_out_wave(reqs));
            reqs = rest;
        }
        out
    }

    fn fan_out_wave(&self, reqs: Vec<(chmpx::attach::Route, Request)>) -> Vec<Result<Response>> {
        let pending: Vec<Result<PendingResponse>> = reqs
            .iter()
            .map(|(route, req)| {
                let body = encode(req)?;
                self.core
                    .att
                    .submit(*route, &body, self.timeout)
                    .map_err(|e| ClientError::Unavailable {
                        reason: e.to_string(),
                    })
            })
            .collect();
        pending
            .into_iter()
            .zip(reqs)
            .map(|(p, (route, req))| {
                let first = match p {
                    Ok(p) => judge(&req, p.wait(self.timeout), self.timeout),
                    Err(e) => Attempt::Retry(e),
                };
                match first {
                    Attempt::Answer(r) => Ok(r),
                    Attempt::Fail(e) => Err(e),
                    Attempt::Retry(_) if self.core.opts.retry_count > 0 => self.send(&req, route),
                    Attempt::Retry(e) => Err(e),
                }
            })
            .collect()
    }

    /// The live item of `key`, or `None`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Item>> {
        self.run(ops::get(key.as_ref()))
    }

    /// The live items of `keys`, in the order asked, missing keys left out. One request per
    /// key, all sent before the first answer is awaited (each goes to its own key's owner).
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Item>> {
        let answers = self.fan_out(get_requests(keys));
        Ok(read_gets(keys, answers, self.timeout)?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Stores `value` unconditionally; returns the new version (CAS token).
    pub fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: StoreOptions,
    ) -> Result<u64> {
        self.run(ops::store(key.as_ref(), value.as_ref(), SetMode::Set, opts))
    }

    /// Stores only if the key has no live item, else [`ClientError::Exists`].
    pub fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: StoreOptions,
    ) -> Result<u64> {
        self.run(ops::store(key.as_ref(), value.as_ref(), SetMode::Add, opts))
    }

    /// Stores only if the key has a live item, else [`ClientError::NotStored`].
    pub fn replace(
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
    }

    /// Appends to the live value (keeping its flags and expiry), else [`ClientError::NotStored`].
    pub fn append(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        self.run(ops::store(
            key.as_ref(),
            value.as_ref(),
            SetMode::Append,
            StoreOptions::new(),
        ))
    }

    /// Prepends to the live value (keeping its flags and expiry), else [`ClientError::NotStored`].
    pub fn prepend(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        self.run(ops::store(
            key.as_ref(),
            value.as_ref(),
            SetMode::Prepend,
            StoreOptions::new(),
        ))
    }

    /// Stores only if the live item's version is `version`: [`ClientError::CasMismatch`] when it
    /// changed, [`ClientError::NotFound`] when it is gone. Returns the new version.
    ///
    /// ```no_run
    /// # use dkc_client::client::{Client, ClientError, StoreOptions};
    /// # let client = Client::from_conf("slave.ini", None)?;
    /// // A counter kept as decimal text, updated with a CAS loop.
    /// loop {
    ///     let item = client.get("counter")?.expect("initialised");
    ///     let n: u64 = String::from_utf8_lossy(&item.value).parse().unwrap_or(0);
    ///     match client.cas("counter", (n + 1).to_string(), item.version, StoreOptions::new()) {
    ///         Ok(_) => break,
    ///         Err(ClientError::CasMismatch { .. }) => continue,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok::<(), ClientError>(())
    /// ```
    pub fn cas(
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
    }

    /// Deletes the live item, else [`ClientError::NotFound`].
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.run(ops::delete(key.as_ref(), None))
    }

    /// Deletes only if the live item's version is `version` ([`ClientError::CasMismatch`]).
    pub fn delete_if(&self, key: impl AsRef<[u8]>, version: u64) -> Result<()> {
        self.run(ops::delete(key.as_ref(), Some(version)))
    }

    /// Adds `delta` to a decimal value (wrapping at 2^64); a missing key takes `initial` (with
    /// `expiry`) when given, else [`ClientError::NotFound`]. Returns the new value.
    pub fn incr(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: Option<u64>,
        expiry: Expiry,
    ) -> Result<u64> {
        self.run(ops::incr(key.as_ref(), delta, initial, expiry))
    }

    /// Subtracts `delta`, flooring at 0; otherwise as [`Client::incr`].
    pub fn decr(
        &self,
        key: impl AsRef<[u8]>,
        delta: u64,
        initial: Option<u64>,
        expiry: Expiry,
    ) -> Result<u64> {
        self.run(ops::decr(key.as_ref(), delta, initial, expiry))
    }

    /// Changes the expiry of a live item.
    pub fn touch(&self, key: impl AsRef<[u8]>, expiry: Expiry) -> Result<()> {
        self.run(ops::touch(key.as_ref(), expiry))
    }

    /// Changes the expiry and returns the item, or `None`.
    pub fn get_and_touch(&self, key: impl AsRef<[u8]>, expiry: Expiry) -> Result<Option<Item>> {
        self.run(ops::get_and_touch(key.as_ref(), expiry))
    }

    /// Replaces the subkey list of a live item (names of other keys; they are not created).
    pub fn set_subkeys<S: AsRef<[u8]>>(&self, key: impl AsRef<[u8]>, subkeys: &[S]) -> Result<()> {
        let list: Vec<Vec<u8>> = subkeys.iter().map(|s| s.as_ref().to_vec()).collect();
        self.run(ops::set_subkeys(key.as_ref(), &list))
    }

    /// Adds one name to the subkey list of a live item (no duplicate).
    pub fn add_subkey(&self, key: impl AsRef<[u8]>, subkey: impl AsRef<[u8]>) -> Result<()> {
        self.run(ops::add_subkey(key.as_ref(), subkey.as_ref()))
    }

    /// Removes one name from the list ([`ClientError::NotFound`] if not listed).
    pub fn remove_subkey(&self, key: impl AsRef<[u8]>, subkey: impl AsRef<[u8]>) -> Result<()> {
        self.run(ops::remove_subkey(key.as_ref(), subkey.as_ref()))
    }

    /// The subkey list of a live item.
    pub fn list_subkeys(&self, key: impl AsRef<[u8]>) -> Result<Vec<Vec<u8>>> {
        self.run(ops::list_subkeys(key.as_ref()))
    }

    /// Empties the subkey list of a live item.
    pub fn clear_subkeys(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.run(ops::clear_subkeys(key.as_ref()))
    }

    /// Deletes `key` and, recursively, every key its subkey lists name (children live on
    /// their own owners, so each is a request of its own). Returns how many keys were deleted.
    /// Cycles are cut by a visited set; depth and count are bounded by
    /// [`SUBKEY_DEPTH_MAX`](super::options::SUBKEY_DEPTH_MAX) and [`SUBKEY_DELETE_COUNT_MAX`](super::options::SUBKEY_DELETE_COUNT_MAX).
    pub fn delete_with_children(&self, key: impl AsRef<[u8]>) -> Result<u64> {
        let mut walk = ChildWalk::new(key.as_ref());
        while let Some((k, depth)) = walk.next_key() {
            walk.record(depth, self.run(ops::delete_with_children(&k)))?;
        }
        Ok(walk.deleted())
    }

    /// One batch of a cluster-wide scan: every server node is asked for its keys after the
    /// cursor and the pages are merged in key order (replicas deduplicated, newest version
    /// kept). Continue with `query.after(batch.cursor)` until the cursor is `None`.
    ///
    /// ```no_run
    /// # use dkc_client::client::{Client, ScanQuery};
    /// # let client = Client::from_conf("slave.ini", None)?;
    /// let mut query = ScanQuery::prefix("user:").limit(500);
    /// loop {
    ///     let batch = client.scan(&query)?;
    ///     for item in &batch.items {
    ///         println!("{}", String::from_utf8_lossy(&item.key));
    ///     }
    ///     match batch.cursor {
    ///         Some(c) => query = query.after(Some(c)),
    ///         None => break,
    ///     }
    /// }
    /// # Ok::<(), dkc_client::client::ClientError>(())
    /// ```
    pub fn scan(&self, query: &ScanQuery) -> Result<ScanBatch> {
        command::check_scan_limit(query.limit)?;
        let req = scan_request(query);
        let nodes = self.core.topo.servers.clone();
        let answers = self.fan_out(to_every_node(&nodes, &req));
        finish_scan(&self.core.topo, query, nodes, answers, self.timeout)
    }

    /// Counters of every server node (a node that does not answer shows its error).
    pub fn stats(&self) -> Result<Vec<NodeStats>> {
        let nodes = self.core.topo.servers.clone();
        let answers = self.fan_out(to_every_node(&nodes, &Request::Stats));
        Ok(finish_stats(nodes, answers))
    }

    /// Deletes every item of the cluster; refused unless `confirm` is true. Every server node
    /// must answer. Returns the tombstones written (replicas counted on each node).
    pub fn flush(&self, confirm: bool) -> Result<u64> {
        check_flush_confirm(confirm)?;
        let nodes = self.core.topo.servers.clone();
        let req = Request::Flush { confirm };
        let answers = self.fan_out(to_every_node(&nodes, &req));
        finish_flush(nodes, answers, self.timeout)
    }
}
