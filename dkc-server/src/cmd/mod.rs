//! One file per command: each parses nothing (the request is already typed), applies the
//! command to the store atomically, and encodes its answer as a [`Response`] plus the records
//! to replicate. Adding a command touches one file here and one match arm in
//! [`crate::executor`].
//!
//! Every write goes through [`Ctx::modify`]: an atomic read-modify-write under the key's lock
//! in the engine, which sees the stored record whatever its state (so the new version is
//! always above the stored one, tombstone or not) and hands the command only the *live* record
//! (absent, tombstoned and expired all read as `None`: expired items are never returned).

pub(crate) mod add_subkey;
pub(crate) mod clear_subkeys;
pub(crate) mod delete;
pub(crate) mod delete_with_children;
pub(crate) mod flush;
pub(crate) mod get;
pub(crate) mod get_and_touch;
pub(crate) mod incr_decr;
pub(crate) mod list_subkeys;
pub(crate) mod multi_get;
pub(crate) mod remove_subkey;
pub(crate) mod replicate;
pub(crate) mod scan;
pub(crate) mod set;
pub(crate) mod set_subkeys;
pub(crate) mod stats;
pub(crate) mod touch;

#[cfg(test)]
pub(crate) mod testkit;

use dkc_client::proto::{ErrorCode, Response};
use k2hash::{Decision, K2Hash, Record};

use crate::counters::Counters;
use crate::executor::{Executed, Fence};
use crate::hlc::Hlc;
use crate::limits::Limits;
use crate::record::to_wire;

/// A failed command: a stable code and a message naming what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CmdError {
    /// The stable code.
    pub code: ErrorCode,
    /// What was wrong, with the numbers involved.
    pub message: String,
}

impl CmdError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> CmdError {
        CmdError {
            code,
            message: message.into(),
        }
    }
}

impl From<k2hash::Error> for CmdError {
    fn from(e: k2hash::Error) -> CmdError {
        let code = match &e {
            k2hash::Error::LimitExceeded { .. } => ErrorCode::TooLarge,
            k2hash::Error::ReadOnly => ErrorCode::ReadOnly,
            k2hash::Error::InvalidArgument(_) => ErrorCode::BadRequest,
            k2hash::Error::NoSpace { .. } => ErrorCode::NoSpace,
            _ => ErrorCode::Storage,
        };
        CmdError::new(code, e.to_string())
    }
}

/// What a command's closure decides inside [`Ctx::modify`].
pub(crate) enum Change<T> {
    /// Write nothing; answer with `T`.
    Keep(T),
    /// Store this record (its key and version are filled in by `modify`); answer with `T`.
    Write(Record, T),
}

/// A record a command wrote and the record the key held before (`None`: nothing stored).
pub(crate) struct Written {
    pub record: Record,
    pub prior: Option<Record>,
}

/// What a command runs against.
pub(crate) struct Ctx<'a> {
    pub store: &'a K2Hash,
    pub hlc: &'a Hlc,
    pub limits: &'a Limits,
    pub counters: &'a Counters,
    /// EXPIRE: lifetime given to items written without an expiry.
    pub expire_default_secs: Option<u64>,
}

/// Result of one command.
pub(crate) type CmdResult = Result<Executed, CmdError>;

impl Ctx<'_> {
    /// Refuses empty and over-long keys (and subkey names) with a message naming the limit.
    pub fn check_key(&self, what: &str, key: &[u8]) -> Result<(), CmdError> {
        if key.is_empty() {
            return Err(CmdError::new(
                ErrorCode::BadRequest,
                format!("{what} is empty"),
            ));
        }
        if key.len() > self.limits.key_size_max {
            return Err(CmdError::new(
                ErrorCode::TooLarge,
                format!(
                    "{what} is {} bytes, more than key_size_max {}",
                    key.len(),
                    self.limits.key_size_max
                ),
            ));
        }
        Ok(())
    }

    /// Refuses values over `value_size_max`.
    pub fn check_value(&self, len: usize) -> Result<(), CmdError> {
        if len > self.limits.value_size_max {
            return Err(CmdError::new(
                ErrorCode::TooLarge,
                format!(
                    "value is {len} bytes, more than value_size_max {}",
                    self.limits.value_size_max
                ),
            ));
        }
        Ok(())
    }

    /// The expiry to store for a new item: `expire_at` as asked, or now + EXPIRE when none was
    /// asked and EXPIRE is configured.
    pub fn expiry(&self, expire_at: u64) -> u64 {
        match (expire_at, self.expire_default_secs) {
            (0, Some(secs)) => self.store.now().saturating_add(secs),
            _ => expire_at,
        }
    }

    /// Atomic read-modify-write of `key`. `f` sees the live record (or `None`) and decides;
    /// a written record gets `key` and a fresh version above the stored one (tombstones and
    /// expired records included). Returns `f`'s answer and the record written, if any.
    pub fn modify<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Record>) -> Result<Change<T>, CmdError>,
    ) -> Result<(T, Option<Record>), CmdError> {
        self.modify_fenced(key, f)
            .map(|(t, w)| (t, w.map(|w| w.record)))
    }

    /// [`Ctx::modify`] that also returns, with the written record, the record stored before
    /// (tombstones and expired records included): what a value-dependent write was computed
    /// from, for its fence and its rollback.
    pub fn modify_fenced<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Record>) -> Result<Change<T>, CmdError>,
    ) -> Result<(T, Option<Written>), CmdError> {
        let now = self.store.now();
        let hlc = self.hlc;
        self.store.update_raw(key, |stored| {
            let floor = stored.map_or(0, |r| r.version);
            let live = stored.filter(|r| r.is_live(now));
            match f(live) {
                Err(e) => (Decision::Keep, Err(e)),
                Ok(Change::Keep(t)) => (Decision::Keep, Ok((t, None))),
                Ok(Change::Write(mut rec, t)) => {
                    rec.key = key.to_vec();
                    rec.version = hlc.next_after(floor);
                    let written = Written {
                        record: rec.clone(),
                        prior: stored.cloned(),
                    };
                    (Decision::PutRecord(rec), Ok((t, Some(written))))
                }
            }
        })?
    }
}

impl Executed {
    /// An answer with nothing to replicate.
    pub fn reply(response: Response) -> Executed {
        Executed {
            response,
            replicate: Vec::new(),
            fence: None,
        }
    }

    /// An answer that replicates `written` when a record was written.
    pub(crate) fn wrote(response: Response, written: Option<Record>) -> Executed {
        Executed {
            response,
            replicate: written.map(to_wire).into_iter().collect(),
            fence: None,
        }
    }

    /// An answer that replicates a value-dependent write as a fenced record: it carries the
    /// version it was computed from (`base`, 0 for an absent key), and the prior record is
    /// kept to roll the write back if it is not acknowledged.
    pub(crate) fn wrote_fenced(response: Response, written: Option<Written>) -> Executed {
        let Some(Written { record, prior }) = written else {
            return Executed::reply(response);
        };
        let base = prior.as_ref().map_or(0, |p| p.version);
        let mut rec = to_wire(record);
        rec.base = Some(base);
        Executed {
            response,
            fence: Some(Fence {
                key: rec.key.clone(),
                version: rec.version,
                prior: prior.map(to_wire),
            }),
            replicate: vec![rec],
        }
    }
}

/// A live record with a new value/metadata, keeping its subkeys (what memcached-style writes
/// do to a K2HASH key).
pub(crate) fn rewrite(live: Option<&Record>, value: Vec<u8>, flags: u32, expire_at: u64) -> Record {
    Record {
        key: Vec::new(),
        value,
        flags,
        expire_at,
        version: 0,
        tombstone: false,
        subkeys: live.map(|r| r.subkeys.clone()).unwrap_or_default(),
    }
}
