//! `Get`: the live item of a key.

use dkc_client::proto::Response;

use super::{CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;
use crate::record::to_item;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult {
    ctx.check_key("key", key)?;
    bump(&ctx.counters.cmd_get);
    Ok(Executed::reply(match ctx.store.get(key)? {
        Some(rec) => {
            bump(&ctx.counters.get_hits);
            Response::Value(to_item(&rec, true))
        }
        None => {
            bump(&ctx.counters.get_misses);
            Response::NotFound
        }
    }))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response};

    #[test]
    fn get_hit_miss_and_bad_keys() {
        let kit = Kit::new();
        assert_eq!(
            kit.run(Request::Get { key: b"k".to_vec() }),
            Response::NotFound
        );
        let version = kit.set(b"k", b"v");
        match kit.run(Request::Get { key: b"k".to_vec() }) {
            Response::Value(item) => {
                assert_eq!(
                    (item.key.as_slice(), item.value.as_slice()),
                    (&b"k"[..], &b"v"[..])
                );
                assert_eq!(item.version, version);
            }
            other => panic!("{other:?}"),
        }
        kit.expect_error(Request::Get { key: Vec::new() }, ErrorCode::BadRequest);
        let long = vec![b'x'; kit.limits().key_size_max + 1];
        kit.expect_error(Request::Get { key: long }, ErrorCode::TooLarge);
    }

    #[test]
    fn get_never_returns_expired_items() {
        let kit = Kit::new();
        let now = kit.now_secs();
        kit.run(Request::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            mode: dkc_client::proto::SetMode::Set,
            flags: 0,
            expire_at: now + 10,
        });
        assert!(matches!(
            kit.run(Request::Get { key: b"k".to_vec() }),
            Response::Value(_)
        ));
        kit.advance_secs(9);
        assert!(matches!(
            kit.run(Request::Get { key: b"k".to_vec() }),
            Response::Value(_)
        ));
        kit.advance_secs(1);
        assert_eq!(
            kit.run(Request::Get { key: b"k".to_vec() }),
            Response::NotFound
        );
    }
}
