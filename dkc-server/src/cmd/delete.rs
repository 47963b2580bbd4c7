//! `Delete`: writes a versioned tombstone (so the delete replicates and no merge brings the
//! item back), optionally only when the CAS token matches.
//!
//! A delete of a key this node does not hold still writes (and replicates) a tombstone: the
//! node may be a primary that has not yet received a write another owner holds (it was away,
//! or frozen, and its recovery merge has not run). Answering NOT_FOUND without a tombstone
//! would let that older copy survive the merge and come back after an acknowledged delete.

use dkc_client::proto::Response;

use super::{Change, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;
use crate::record::tombstone;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8], cas: Option<u64>) -> CmdResult {
    ctx.check_key("key", key)?;
    let c = ctx.counters;
    let (answer, written) = ctx.modify_fenced(key, |live| {
        Ok(match (live, cas) {
            (None, None) => {
                bump(&c.delete_misses);
                Change::Write(tombstone(key, 0), Response::NotFound)
            }
            (None, Some(_)) => {
                bump(&c.delete_misses);
                Change::Keep(Response::NotFound)
            }
            (Some(old), Some(token)) if old.version != token => {
                bump(&c.cas_badval);
                Change::Keep(Response::Exists)
            }
            (Some(_), _) => {
                bump(&c.delete_hits);
                Change::Write(tombstone(key, 0), Response::Deleted)
            }
        })
    })?;
    // A delete with a CAS token depends on the version it deletes: fenced.
    if cas.is_some() {
        return Ok(Executed::wrote_fenced(answer, written));
    }
    Ok(Executed::wrote(answer, written.map(|w| w.record)))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{Request, Response};

    #[test]
    fn delete_writes_a_replicated_tombstone() {
        let kit = Kit::new();
        let v1 = kit.set(b"k", b"v");
        let ex = kit.exec(Request::Delete {
            key: b"k".to_vec(),
            cas: None,
        });
        assert_eq!(ex.response, Response::Deleted);
        assert_eq!(ex.replicate.len(), 1);
        let t = &ex.replicate[0];
        assert!(t.tombstone && t.value.is_empty() && t.version > v1);
        assert_eq!(kit.value(b"k"), None);
        let raw = kit.store().get_raw(b"k").unwrap().unwrap();
        assert!(raw.tombstone);
        assert_eq!(raw.version, t.version);
        let again = kit.exec(Request::Delete {
            key: b"k".to_vec(),
            cas: None,
        });
        assert_eq!(again.response, Response::NotFound);
        // A miss still leaves (and replicates) a newer tombstone, so an older copy on another
        // owner cannot come back through a merge.
        assert_eq!(again.replicate.len(), 1);
        assert!(again.replicate[0].tombstone && again.replicate[0].version > t.version);
    }

    #[test]
    fn delete_with_cas_checks_the_version() {
        let kit = Kit::new();
        let v = kit.set(b"k", b"v");
        assert_eq!(
            kit.run(Request::Delete {
                key: b"k".to_vec(),
                cas: Some(v + 1)
            }),
            Response::Exists
        );
        assert_eq!(kit.value(b"k"), Some(b"v".to_vec()));
        assert_eq!(
            kit.run(Request::Delete {
                key: b"k".to_vec(),
                cas: Some(v)
            }),
            Response::Deleted
        );
        assert_eq!(
            kit.run(Request::Delete {
                key: b"x".to_vec(),
                cas: Some(v)
            }),
            Response::NotFound
        );
    }

    #[test]
    fn delete_of_an_expired_item_is_not_found() {
        let kit = Kit::new();
        let now = kit.now_secs();
        kit.run(Request::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            mode: dkc_client::proto::SetMode::Set,
            flags: 0,
            expire_at: now + 1,
        });
        kit.advance_secs(2);
        assert_eq!(
            kit.run(Request::Delete {
                key: b"k".to_vec(),
                cas: None
            }),
            Response::NotFound
        );
    }
}
