//! `Set` in its six modes (memcached set/add/replace/append/prepend/cas), atomically at the
//! primary.

use dkc_client::proto::{Response, SetMode};
use k2hash::Record;

use super::{rewrite, Change, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;

pub(crate) fn execute(
    ctx: &Ctx<'_>,
    key: &[u8],
    value: &[u8],
    mode: SetMode,
    flags: u32,
    expire_at: u64,
) -> CmdResult {
    ctx.check_key("key", key)?;
    ctx.check_value(value.len())?;
    bump(&ctx.counters.cmd_set);
    let counters = ctx.counters;
    let expire_at = ctx.expiry(expire_at);
    let (answer, written) = ctx.modify_fenced(key, |live: Option<&Record>| {
        let fresh = |live| Change::Write(rewrite(live, value.to_vec(), flags, expire_at), None);
        Ok(match (mode, live) {
            (SetMode::Set, live) => fresh(live),
            (SetMode::Add, Some(_)) | (SetMode::Replace, None) => {
                Change::Keep(Some(Response::NotStored))
            }
            (SetMode::Add, None) => fresh(None),
            (SetMode::Replace, live @ Some(_)) => fresh(live),
            (SetMode::Append | SetMode::Prepend, None) => Change::Keep(Some(Response::NotStored)),
            (SetMode::Append | SetMode::Prepend, Some(old)) => {
                ctx.check_value(old.value.len() + value.len())?;
                let mut joined = Vec::with_capacity(old.value.len() + value.len());
                if mode == SetMode::Append {
                    joined.extend_from_slice(&old.value);
                    joined.extend_from_slice(value);
                } else {
                    joined.extend_from_slice(value);
                    joined.extend_from_slice(&old.value);
                }
                // memcached keeps the flags and expiry of the item appended to.
                Change::Write(rewrite(Some(old), joined, old.flags, old.expire_at), None)
            }
            (SetMode::Cas(_), None) => {
                bump(&counters.cas_misses);
                Change::Keep(Some(Response::NotFound))
            }
            (SetMode::Cas(token), Some(old)) if old.version != token => {
                bump(&counters.cas_badval);
                Change::Keep(Some(Response::Exists))
            }
            (SetMode::Cas(_), live @ Some(_)) => {
                bump(&counters.cas_hits);
                fresh(live)
            }
        })
    })?;
    let response = match (answer, &written) {
        (Some(r), _) => r,
        (None, Some(w)) => Response::Stored {
            version: w.record.version,
        },
        (None, None) => unreachable!("a write without a record"),
    };
    // A plain set does not depend on the value it replaces: last writer wins. Every other
    // mode does, and is fenced.
    if mode == SetMode::Set {
        return Ok(Executed::wrote(response, written.map(|w| w.record)));
    }
    Ok(Executed::wrote_fenced(response, written))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response, SetMode};

    fn set(kit: &Kit, key: &[u8], value: &[u8], mode: SetMode) -> Response {
        kit.run(Request::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            mode,
            flags: 5,
            expire_at: 0,
        })
    }

    #[test]
    fn set_stores_and_replicates_with_a_new_version_each_time() {
        let kit = Kit::new();
        let ex = kit.exec(Request::Set {
            key: b"k".to_vec(),
            value: b"v1".to_vec(),
            mode: SetMode::Set,
            flags: 9,
            expire_at: 0,
        });
        let Response::Stored { version: v1 } = ex.response else {
            panic!("{:?}", ex.response)
        };
        assert_eq!(ex.replicate.len(), 1);
        let rec = &ex.replicate[0];
        assert_eq!(
            (rec.key.as_slice(), rec.value.as_slice(), rec.flags),
            (&b"k"[..], &b"v1"[..], 9)
        );
        assert_eq!((rec.version, rec.tombstone), (v1, false));
        let Response::Stored { version: v2 } = set(&kit, b"k", b"v2", SetMode::Set) else {
            panic!()
        };
        assert!(v2 > v1);
        assert_eq!(kit.value(b"k"), Some(b"v2".to_vec()));
    }

    #[test]
    fn add_only_when_absent_replace_only_when_present() {
        let kit = Kit::new();
        assert_eq!(set(&kit, b"k", b"r", SetMode::Replace), Response::NotStored);
        assert_eq!(kit.value(b"k"), None);
        assert!(matches!(
            set(&kit, b"k", b"a", SetMode::Add),
            Response::Stored { .. }
        ));
        let ex = kit.exec(Request::Set {
            key: b"k".to_vec(),
            value: b"a2".to_vec(),
            mode: SetMode::Add,
            flags: 0,
            expire_at: 0,
        });
        assert_eq!(ex.response, Response::NotStored);
        assert!(
            ex.replicate.is_empty(),
            "nothing written, nothing replicated"
        );
        assert_eq!(kit.value(b"k"), Some(b"a".to_vec()));
        assert!(matches!(
            set(&kit, b"k", b"r", SetMode::Replace),
            Response::Stored { .. }
        ));
        assert_eq!(kit.value(b"k"), Some(b"r".to_vec()));
    }

    #[test]
    fn add_succeeds_over_a_tombstone_and_an_expired_item() {
        let kit = Kit::new();
        kit.set(b"k", b"v");
        kit.run(Request::Delete {
            key: b"k".to_vec(),
            cas: None,
        });
        assert!(matches!(
            set(&kit, b"k", b"new", SetMode::Add),
            Response::Stored { .. }
        ));
        let now = kit.now_secs();
        kit.run(Request::Set {
            key: b"e".to_vec(),
            value: b"old".to_vec(),
            mode: SetMode::Set,
            flags: 0,
            expire_at: now + 1,
        });
        kit.advance_secs(1);
        assert!(matches!(
            set(&kit, b"e", b"new", SetMode::Add),
            Response::Stored { .. }
        ));
        assert_eq!(kit.value(b"e"), Some(b"new".to_vec()));
    }

    #[test]
    fn append_and_prepend_keep_flags_and_expiry() {
        let kit = Kit::new();
        assert_eq!(set(&kit, b"k", b"x", SetMode::Append), Response::NotStored);
        assert_eq!(set(&kit, b"k", b"x", SetMode::Prepend), Response::NotStored);
        let expire_at = kit.now_secs() + 100;
        kit.run(Request::Set {
            key: b"k".to_vec(),
            value: b"mid".to_vec(),
            mode: SetMode::Set,
            flags: 42,
            expire_at,
        });
        kit.run(Request::Set {
            key: b"k".to_vec(),
            value: b">".to_vec(),
            mode: SetMode::Append,
            flags: 1,
            expire_at: 0,
        });
        kit.run(Request::Set {
            key: b"k".to_vec(),
            value: b"<".to_vec(),
            mode: SetMode::Prepend,
            flags: 2,
            expire_at: 0,
        });
        let item = kit.item(b"k").unwrap();
        assert_eq!(item.value, b"<mid>".to_vec());
        assert_eq!((item.flags, item.expire_at), (42, expire_at));
    }

    #[test]
    fn append_refuses_to_grow_past_value_size_max() {
        let kit = Kit::with_value_size_max(8);
        kit.set(b"k", b"12345");
        kit.expect_error(
            Request::Set {
                key: b"k".to_vec(),
                value: b"6789".to_vec(),
                mode: SetMode::Append,
                flags: 0,
                expire_at: 0,
            },
            ErrorCode::TooLarge,
        );
        assert_eq!(kit.value(b"k"), Some(b"12345".to_vec()));
        assert!(matches!(
            set(&kit, b"k", b"678", SetMode::Append),
            Response::Stored { .. }
        ));
    }

    #[test]
    fn cas_matches_versions() {
        let kit = Kit::new();
        assert_eq!(set(&kit, b"k", b"x", SetMode::Cas(1)), Response::NotFound);
        let v1 = kit.set(b"k", b"v1");
        assert_eq!(
            set(&kit, b"k", b"x", SetMode::Cas(v1 + 1)),
            Response::Exists
        );
        let Response::Stored { version: v2 } = set(&kit, b"k", b"v2", SetMode::Cas(v1)) else {
            panic!()
        };
        assert_eq!(
            set(&kit, b"k", b"v3", SetMode::Cas(v1)),
            Response::Exists,
            "token used up"
        );
        assert_eq!(kit.item(b"k").unwrap().version, v2);
        assert_eq!(kit.value(b"k"), Some(b"v2".to_vec()));
    }

    #[test]
    fn set_refuses_oversized_values_and_keys() {
        let kit = Kit::new();
        let big = vec![0u8; kit.limits().value_size_max + 1];
        kit.expect_error(
            Request::Set {
                key: b"k".to_vec(),
                value: big,
                mode: SetMode::Set,
                flags: 0,
                expire_at: 0,
            },
            ErrorCode::TooLarge,
        );
        let exact = vec![7u8; kit.limits().value_size_max];
        assert!(matches!(
            set(&kit, b"k", &exact, SetMode::Set),
            Response::Stored { .. }
        ));
        kit.expect_error(
            Request::Set {
                key: vec![],
                value: vec![],
                mode: SetMode::Set,
                flags: 0,
                expire_at: 0,
            },
            ErrorCode::BadRequest,
        );
    }

    #[test]
    fn set_without_expiry_gets_the_configured_default() {
        let kit = Kit::with_expire_default(60);
        let now = kit.now_secs();
        kit.set(b"k", b"v");
        assert_eq!(kit.item(b"k").unwrap().expire_at, now + 60);
        kit.run(Request::Set {
            key: b"e".to_vec(),
            value: b"v".to_vec(),
            mode: SetMode::Set,
            flags: 0,
            expire_at: now + 5,
        });
        assert_eq!(
            kit.item(b"e").unwrap().expire_at,
            now + 5,
            "an explicit expiry wins"
        );
        kit.advance_secs(60);
        assert_eq!(kit.value(b"k"), None);
    }

    #[test]
    fn set_keeps_subkeys_of_the_live_item() {
        let kit = Kit::new();
        kit.set(b"p", b"v");
        kit.run(Request::AddSubkey {
            key: b"p".to_vec(),
            subkey: b"c".to_vec(),
        });
        kit.set(b"p", b"v2");
        assert_eq!(
            kit.run(Request::ListSubkeys { key: b"p".to_vec() }),
            Response::Subkeys(vec![b"c".to_vec()])
        );
    }
}
