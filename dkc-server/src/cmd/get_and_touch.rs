//! `GetAndTouch`: a new expiry for a live item, returning the item (memcached `gat`).

use dkc_client::proto::Response;

use super::{rewrite, Change, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;
use crate::record::to_item;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8], expire_at: u64) -> CmdResult {
    ctx.check_key("key", key)?;
    let c = ctx.counters;
    bump(&c.cmd_touch);
    bump(&c.cmd_get);
    let ((), written) = ctx.modify(key, |live| {
        Ok(match live {
            None => {
                bump(&c.touch_misses);
                bump(&c.get_misses);
                Change::Keep(())
            }
            Some(old) => {
                bump(&c.touch_hits);
                bump(&c.get_hits);
                Change::Write(
                    rewrite(Some(old), old.value.clone(), old.flags, expire_at),
                    (),
                )
            }
        })
    })?;
    let response = match &written {
        Some(rec) => Response::Value(to_item(rec, true)),
        None => Response::NotFound,
    };
    Ok(Executed::wrote(response, written))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{Request, Response};

    #[test]
    fn get_and_touch_returns_the_item_with_its_new_expiry() {
        let kit = Kit::new();
        let req = |e| Request::GetAndTouch {
            key: b"k".to_vec(),
            expire_at: e,
        };
        assert_eq!(kit.run(req(0)), Response::NotFound);
        let v = kit.set(b"k", b"v");
        let until = kit.now_secs() + 30;
        let ex = kit.exec(req(until));
        let Response::Value(item) = ex.response else {
            panic!("{:?}", ex.response)
        };
        assert_eq!((item.value.as_slice(), item.expire_at), (&b"v"[..], until));
        assert!(item.version > v);
        assert_eq!(ex.replicate[0].version, item.version);
        kit.advance_secs(30);
        assert_eq!(kit.run(req(0)), Response::NotFound);
    }
}
