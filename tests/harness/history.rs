//! A record of every write (set or delete) the scenarios make, with its outcome, and the check
//! that no acknowledged write was lost and no acknowledged delete undone.
//!
//! Each key is written by one client only, one write at a time, so a key's writes are totally
//! ordered by their sequence number. After the run, the value read for a key must be the value
//! of its last acknowledged write, or of a later write whose outcome is unknown or failed (a
//! "failed" write may still be the one that stuck if the classification was optimistic; that
//! never hides a lost acknowledged write).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// What became of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Certainly not applied.
    Failed,
    /// May or may not have been applied.
    Unknown,
}

/// One recorded write.
#[derive(Debug, Clone)]
pub struct Op {
    /// Which client made it.
    pub client: usize,
    /// Per-key order (the client's running count for this key).
    pub seq: u64,
    /// The key.
    pub key: Vec<u8>,
    /// The value written; `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// Its outcome.
    pub outcome: Outcome,
    /// When it ended, since the run started.
    pub at: Duration,
}

/// Every write of a run.
#[derive(Debug, Default)]
pub struct History {
    ops: Mutex<Vec<Op>>,
}

/// Counts and findings of [`History::check`].
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Writes recorded.
    pub ops: usize,
    /// Acknowledged writes.
    pub acked: usize,
    /// Writes with an unknown outcome.
    pub unknown: usize,
    /// Writes that failed.
    pub failed: usize,
    /// Keys checked.
    pub keys: usize,
    /// One line per key whose acknowledged value is gone.
    pub lost: Vec<String>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records one write.
    pub fn record(&self, op: Op) {
        // A poisoned lock means another writer thread panicked; the run fails anyway.
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }

    /// A copy of every recorded write.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Checks every key with `read`, which returns the value the cluster holds now (or an
    /// error text when it cannot be read, which counts as lost for an acknowledged key).
    pub fn check(
        &self,
        mut read: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, String>,
    ) -> CheckReport {
        let ops = self.ops();
        let mut by_key: BTreeMap<Vec<u8>, Vec<Op>> = BTreeMap::new();
        for op in &ops {
            by_key.entry(op.key.clone()).or_default().push(op.clone());
        }
        let mut rep = CheckReport {
            ops: ops.len(),
            acked: ops.iter().filter(|o| o.outcome == Outcome::Ok).count(),
            unknown: ops.iter().filter(|o| o.outcome == Outcome::Unknown).count(),
            failed: ops.iter().filter(|o| o.outcome == Outcome::Failed).count(),
            keys: by_key.len(),
            lost: Vec::new(),
        };
        for (key, mut writes) in by_key {
            writes.sort_by_key(|o| o.seq);
            let Some(last_ok) = writes.iter().rposition(|o| o.outcome == Outcome::Ok) else {
                continue;
            };
            let allowed: Vec<Option<&[u8]>> = writes[last_ok..]
                .iter()
                .map(|o| o.value.as_deref())
                .collect();
            let got = read(&key);
            let fine = matches!(&got, Ok(v) if allowed.contains(&v.as_deref()));
            if !fine {
                rep.lost.push(format!(
                    "{}: acknowledged {:?} (seq {}, at {:?}), read {:?}",
                    String::from_utf8_lossy(&key),
                    writes[last_ok]
                        .value
                        .as_deref()
                        .map(String::from_utf8_lossy),
                    writes[last_ok].seq,
                    writes[last_ok].at,
                    got.map(|o| o.map(|v| String::from_utf8_lossy(&v).into_owned()))
                ));
            }
        }
        rep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(seq: u64, value: &str, outcome: Outcome) -> Op {
        Op {
            client: 0,
            seq,
            key: b"k".to_vec(),
            value: (value != "-").then(|| value.as_bytes().to_vec()),
            outcome,
            at: Duration::ZERO,
        }
    }

    #[test]
    fn last_acked_or_later_unknown_is_accepted_older_is_lost() {
        let h = History::new();
        h.record(op(0, "a", Outcome::Ok));
        h.record(op(1, "b", Outcome::Ok));
        h.record(op(2, "c", Outcome::Unknown));
        for (read, lost) in [("b", 0), ("c", 0), ("a", 1)] {
            let r = h.check(|_| Ok(Some(read.as_bytes().to_vec())));
            assert_eq!(r.lost.len(), lost, "read {read}");
            assert_eq!((r.ops, r.acked, r.unknown, r.keys), (3, 2, 1, 1));
        }
        assert_eq!(h.check(|_| Ok(None)).lost.len(), 1);
        assert_eq!(h.check(|_| Err("down".into())).lost.len(), 1);
    }

    #[test]
    fn an_acknowledged_delete_must_stay_deleted() {
        let h = History::new();
        h.record(op(0, "a", Outcome::Ok));
        h.record(op(1, "-", Outcome::Ok));
        assert!(h.check(|_| Ok(None)).lost.is_empty());
        assert_eq!(
            h.check(|_| Ok(Some(b"a".to_vec()))).lost.len(),
            1,
            "a deleted key came back"
        );
    }

    #[test]
    fn keys_never_acknowledged_are_not_checked() {
        let h = History::new();
        h.record(op(0, "a", Outcome::Unknown));
        assert!(h.check(|_| Ok(None)).lost.is_empty());
    }
}
