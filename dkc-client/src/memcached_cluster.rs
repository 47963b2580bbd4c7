//! [`ClusterStorage`]: the memcached front's [`Storage`] over the dkc cluster, through the
//! async driver ([`AsyncClient`]). This is what `dkc-memcached --backend cluster` serves.
//!
//! Every verb maps to one driver command executed atomically at the key's primary (CAS tokens
//! are item versions). Cluster failures become [`StorageError`]s, which the front answers as
//! `SERVER_ERROR ...` on an open connection; the front's storage timeout bounds every call, so a
//! stalled cluster never hangs a client.
//!
//! Not carried by the cluster, so approximated (documented per method): the meta protocol's
//! last-access time and fetched-before bit, stale items (`md I`), and the "win token already
//! sent" state (`Z`). Combinations the cluster cannot make atomic (a CAS compare on
//! add/replace/append/prepend, incr/decr or an invalidation) are refused with a SERVER_ERROR
//! rather than done racily.
//!
//! Depends on the driver and the `Storage` trait only; never on the protocol codecs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::client::{AsyncClient, ClientError, Expiry as DkcExpiry, NodeStats, StoreOptions};
use crate::memcached::storage::{
    Arith, ArithOutcome, Cas, DeleteOptions, DeleteOutcome, Expiry, Fetched, GetOptions, Item,
    NewItem, RecacheToken, Storage, StorageError, StorageResult, StorageStats, StoreMode,
    StoreOutcome,
};
use crate::proto;

/// Longest error text passed to the front (one `SERVER_ERROR` line).
pub const ERROR_TEXT_LEN_MAX: usize = 200;

/// The memcached `Storage` over a dkc cluster.
#[derive(Clone)]
pub struct ClusterStorage {
    client: AsyncClient,
}

impl ClusterStorage {
    /// Serves through `client` (its timeout bounds each driver attempt).
    pub fn new(client: AsyncClient) -> ClusterStorage {
        ClusterStorage { client }
    }

    /// The driver in use.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }
}

/// One line of printable text, at most [`ERROR_TEXT_LEN_MAX`] bytes (the front writes it after
/// `SERVER_ERROR `; a newline inside would break the protocol).
fn one_line(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > ERROR_TEXT_LEN_MAX {
        let mut cut = ERROR_TEXT_LEN_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// A driver failure that is not a normal answer of the verb, as the front's storage error.
pub fn storage_error(e: ClientError) -> StorageError {
    match e {
        ClientError::Timeout { after, .. } => StorageError::Timeout {
            timeout_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        },
        ClientError::Unavailable { reason } => StorageError::Unavailable {
            reason: one_line(&reason),
        },
        // memcached's own words for an item over the limit.
        ClientError::TooLarge { .. } => StorageError::Other {
            message: "object too large for cache".into(),
        },
        ClientError::Server {
            code:
                proto::ErrorCode::Unavailable | proto::ErrorCode::Merging | proto::ErrorCode::Timeout,
            message,
        } => StorageError::Unavailable {
            reason: one_line(&message),
        },
        // A full disk on an owner: memcached's own words for a store that found no room.
        ClientError::Server {
            code: proto::ErrorCode::NoSpace,
            ..
        } => StorageError::OutOfMemory,
        other => StorageError::Other {
            message: one_line(&other.to_string()),
        },
    }
}

fn unsupported(what: &str) -> StorageError {
    StorageError::Other {
        message: format!("{what} is not supported by the dkc cluster backend"),
    }
}

fn to_dkc_expiry(e: Expiry) -> DkcExpiry {
    match e {
        Expiry::Never => DkcExpiry::Never,
        // 0 on the wire means "never": an already-past expiry must stay in the past.
        Expiry::At(0) => DkcExpiry::At(1),
        Expiry::At(t) => DkcExpiry::At(t),
    }
}

fn from_expire_at(at: u64) -> Expiry {
    if at == 0 {
        Expiry::Never
    } else {
        Expiry::At(at)
    }
}

/// A driver item as the front's item. The cluster keeps no access time or fetched bit: the
/// access time reads as now and the item as not fetched before.
pub fn to_item(item: proto::Item, now_secs: u64) -> Item {
    Item {
        value: Bytes::from(item.value),
        flags: item.flags,
        cas: item.version,
        expiry: from_expire_at(item.expire_at),
        last_access_secs: now_secs,
        fetched_before: false,
        stale: false,
    }
}

/// Sums the nodes' counters into the front's numbers. Each item is held by REPLICA+1 owners
/// (fewer with fewer nodes), so item and byte sums are divided by that; a node that did not
/// answer counts as an error only when no node answered.
pub fn aggregate_stats(nodes: &[NodeStats], replica: u32) -> StorageResult<StorageStats> {
    let answered: Vec<_> = nodes.iter().filter_map(|n| n.stats.as_ref().ok()).collect();
    if answered.is_empty() {
        let why = nodes
            .iter()
            .filter_map(|n| n.stats.as_ref().err().map(|e| format!("{}: {e}", n.node)))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(StorageError::Unavailable {
            reason: one_line(&format!("no node answered stats ({why})")),
        });
    }
    let owners = u64::from(replica)
        .saturating_add(1)
        .min(nodes.len() as u64)
        .max(1);
    let sum = |k: &str| -> u64 {
        answered
            .iter()
            .map(|s| s.get(k).copied().unwrap_or(0))
            .fold(0u64, u64::saturating_add)
    };
    let curr_items = sum("curr_items") / owners;
    Ok(StorageStats {
        curr_items,
        total_items: curr_items,
        bytes: sum("bytes") / owners,
        limit_maxbytes: sum("file_size") / owners,
    })
}

fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ClusterStorage {
    /// `mg N`: create the empty item on a miss. The creator gets the win token; a client that
    /// finds it already created gets the item without a token (the cluster does not remember
    /// who was handed the win, so `Z` is never reported).
    async fn vivify(&self, key: &Bytes, expiry: Expiry) -> StorageResult<Option<Fetched>> {
        let opts = StoreOptions::new().expiry(to_dkc_expiry(expiry));
        match self.client.add(key, b"", opts).await {
            Ok(version) => Ok(Some(Fetched {
                item: Item {
                    value: Bytes::new(),
                    flags: 0,
                    cas: version,
                    expiry,
                    last_access_secs: self.now_secs(),
                    fetched_before: false,
                    stale: false,
                },
                token: Some(RecacheToken::Win),
            })),
            Err(ClientError::Exists { .. }) => {
                let got = self.client.get(key).await.map_err(storage_error)?;
                Ok(got.map(|i| Fetched {
                    item: to_item(i, self.now_secs()),
                    token: None,
                }))
            }
            Err(e) => Err(storage_error(e)),
        }
    }
}

impl Storage for ClusterStorage {
    fn now_secs(&self) -> u64 {
        now_unix_secs()
    }

    async fn get(
        &self,
        keys: &[Bytes],
        options: GetOptions,
    ) -> StorageResult<Vec<Option<Fetched>>> {
        let now = self.now_secs();
        let fetched = |i: proto::Item| Fetched {
            item: to_item(i, now),
            token: None,
        };
        let mut out: Vec<Option<Fetched>> = if let Some(touch) = options.touch {
            // gat/gats: each key is touched at its own primary.
            let mut v = Vec::with_capacity(keys.len());
            for k in keys {
                let got = self
                    .client
                    .get_and_touch(k, to_dkc_expiry(touch))
                    .await
                    .map_err(storage_error)?;
                v.push(got.map(fetched));
            }
            v
        } else if keys.len() == 1 {
            let got = self.client.get(&keys[0]).await.map_err(storage_error)?;
            vec![got.map(fetched)]
        } else {
            // One request per key, all in flight at once, answered in key order (a key asked
            // twice is answered twice).
            self.client
                .get_each(keys)
                .await
                .map_err(storage_error)?
                .into_iter()
                .map(|got| got.map(fetched))
                .collect()
        };
        if let Some(expiry) = options.vivify {
            for (slot, k) in out.iter_mut().zip(keys) {
                if slot.is_none() {
                    *slot = self.vivify(k, expiry).await?;
                }
            }
        }
        Ok(out)
    }

    async fn store(
        &self,
        mode: StoreMode,
        key: Bytes,
        item: NewItem,
        cas_compare: Option<Cas>,
    ) -> StorageResult<StoreOutcome> {
        let opts = StoreOptions::new()
            .flags(item.flags)
            .expiry(to_dkc_expiry(item.expiry));
        let c = &self.client;
        let result = match (mode, cas_compare) {
            (StoreMode::Set, Some(version)) => c.cas(&key, &item.value, version, opts).await,
            (_, Some(_)) => {
                return Err(unsupported("a CAS compare with add/replace/append/prepend"))
            }
            (StoreMode::Set, None) => c.set(&key, &item.value, opts).await,
            (StoreMode::Add, None) => c.add(&key, &item.value, opts).await,
            (StoreMode::Replace, None) => c.replace(&key, &item.value, opts).await,
            (StoreMode::Append, None) => c.append(&key, &item.value).await,
            (StoreMode::Prepend, None) => c.prepend(&key, &item.value).await,
        };
        match result {
            Ok(cas) => Ok(StoreOutcome::Stored { cas }),
            Err(ClientError::Exists { .. } | ClientError::NotStored { .. }) => {
                Ok(StoreOutcome::NotStored)
            }
            Err(ClientError::CasMismatch { .. }) => Ok(StoreOutcome::Exists),
            Err(ClientError::NotFound { .. }) if cas_compare.is_some() => {
                Ok(StoreOutcome::NotFound)
            }
            Err(ClientError::NotFound { .. }) => Ok(StoreOutcome::NotStored),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn delete(&self, key: Bytes, options: DeleteOptions) -> StorageResult<DeleteOutcome> {
        if options.invalidate.is_some() {
            return Err(unsupported("md I (invalidate: mark stale)"));
        }
        let result = match options.cas_compare {
            Some(version) => self.client.delete_if(&key, version).await,
            None => self.client.delete(&key).await,
        };
        match result {
            Ok(()) => Ok(DeleteOutcome::Deleted),
            Err(ClientError::NotFound { .. }) => Ok(DeleteOutcome::NotFound),
            Err(ClientError::CasMismatch { .. }) => Ok(DeleteOutcome::Exists),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn arith(&self, key: Bytes, arith: Arith) -> StorageResult<ArithOutcome> {
        if arith.cas_compare.is_some() {
            return Err(unsupported("a CAS compare with incr/decr"));
        }
        let (initial, create_expiry) = match arith.vivify {
            Some((v, e)) => (Some(v), e),
            None => (None, Expiry::Never),
        };
        let c = &self.client;
        let result = if arith.incr {
            c.incr(&key, arith.delta, initial, to_dkc_expiry(create_expiry))
                .await
        } else {
            c.decr(&key, arith.delta, initial, to_dkc_expiry(create_expiry))
                .await
        };
        let value = match result {
            Ok(v) => v,
            Err(ClientError::NotFound { .. }) => return Ok(ArithOutcome::NotFound),
            Err(ClientError::NotNumeric { .. }) => return Ok(ArithOutcome::NonNumeric),
            Err(e) => return Err(storage_error(e)),
        };
        if let Some(t) = arith.touch {
            // `ma T`: a second command, so not atomic with the arithmetic; a concurrent delete
            // in between leaves the counter deleted, which is an acceptable outcome of the race.
            match c.touch(&key, to_dkc_expiry(t)).await {
                Ok(()) | Err(ClientError::NotFound { .. }) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        // The driver returns the number only; the version (for `ma c`) takes a read.
        let (cas, expiry) = match c.get(&key).await {
            Ok(Some(i)) => (i.version, from_expire_at(i.expire_at)),
            _ => (0, arith.touch.unwrap_or(create_expiry)),
        };
        Ok(ArithOutcome::Value { value, cas, expiry })
    }

    async fn touch(&self, key: Bytes, expiry: Expiry) -> StorageResult<bool> {
        match self.client.touch(&key, to_dkc_expiry(expiry)).await {
            Ok(()) => Ok(true),
            Err(ClientError::NotFound { .. }) => Ok(false),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn flush_all(&self, at_secs: Option<u64>) -> StorageResult<()> {
        let now = self.now_secs();
        match at_secs {
            Some(at) if at > now => {
                // Delayed flush: memcached invalidates at that moment everything stored before
                // it, which a flush run then does.
                let client = self.client.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(at - now)).await;
                    if let Err(e) = client.flush(true).await {
                        tracing::error!("delayed flush_all failed: {e}");
                    }
                });
                Ok(())
            }
            _ => self
                .client
                .flush(true)
                .await
                .map(|_| ())
                .map_err(storage_error),
        }
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        let nodes = self.client.stats().await.map_err(storage_error)?;
        aggregate_stats(&nodes, self.client.topology().replica)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn errors_become_one_line_storage_errors() {
        let e = storage_error(ClientError::Unavailable {
            reason: "no live owner\nof slot 3".into(),
        });
        assert_eq!(
            e,
            StorageError::Unavailable {
                reason: "no live owner of slot 3".into()
            }
        );
        let e = storage_error(ClientError::Timeout {
            what: "get",
            after: Duration::from_millis(1500),
        });
        assert_eq!(e, StorageError::Timeout { timeout_ms: 1500 });
        let long = "x".repeat(10 * ERROR_TEXT_LEN_MAX);
        match storage_error(ClientError::Protocol(long)) {
            StorageError::Other { message } => assert!(message.len() <= ERROR_TEXT_LEN_MAX),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            storage_error(ClientError::TooLarge {
                limit: 1,
                message: "v".into()
            })
            .to_string(),
            "object too large for cache"
        );
    }

    #[test]
    fn expiry_zero_never_means_forever() {
        assert_eq!(to_dkc_expiry(Expiry::At(0)), DkcExpiry::At(1));
        assert_eq!(to_dkc_expiry(Expiry::Never), DkcExpiry::Never);
        assert_eq!(from_expire_at(0), Expiry::Never);
        assert_eq!(from_expire_at(9), Expiry::At(9));
    }

    fn node(name: &str, stats: Result<&[(&str, u64)], &str>) -> NodeStats {
        NodeStats {
            node: name.into(),
            stats: stats
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect::<BTreeMap<_, _>>()
                })
                .map_err(str::to_string),
        }
    }

    #[test]
    fn stats_divide_by_owners_and_tolerate_a_missing_node() {
        let nodes = [
            node("a", Ok(&[("curr_items", 10), ("bytes", 100)])),
            node("b", Ok(&[("curr_items", 6), ("bytes", 60)])),
            node("c", Ok(&[("curr_items", 4), ("bytes", 40)])),
        ];
        let s = aggregate_stats(&nodes, 1).unwrap();
        assert_eq!((s.curr_items, s.bytes), (10, 100));
        let s = aggregate_stats(&nodes, 0).unwrap();
        assert_eq!(s.curr_items, 20);
        let down = [node("a", Err("timeout")), node("b", Err("gone"))];
        match aggregate_stats(&down, 1) {
            Err(StorageError::Unavailable { reason }) => {
                assert!(
                    reason.contains("a: timeout") && reason.contains("b: gone"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
