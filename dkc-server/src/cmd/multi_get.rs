//! `MultiGet`: the live items of several keys, in request order, missing keys left out.

use dkc_client::proto::{ErrorCode, Response};

use super::{CmdError, CmdResult, Ctx};
use crate::counters::{add, bump};
use crate::executor::Executed;
use crate::record::to_item;

pub(crate) fn execute(ctx: &Ctx<'_>, keys: &[Vec<u8>]) -> CmdResult {
    if keys.len() > ctx.limits.multi_get_keys_max {
        return Err(CmdError::new(
            ErrorCode::TooLarge,
            format!(
                "multi_get of {} keys, more than multi_get_keys_max {}; split the request",
                keys.len(),
                ctx.limits.multi_get_keys_max
            ),
        ));
    }
    for key in keys {
        ctx.check_key("key", key)?;
    }
    add(&ctx.counters.cmd_get, keys.len() as u64);
    let mut items = Vec::with_capacity(keys.len());
    for key in keys {
        match ctx.store.get(key)? {
            Some(rec) => {
                bump(&ctx.counters.get_hits);
                items.push(to_item(&rec, true));
            }
            None => bump(&ctx.counters.get_misses),
        }
    }
    Ok(Executed::reply(Response::Values(items)))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response};

    #[test]
    fn multi_get_returns_found_items_in_request_order() {
        let kit = Kit::new();
        kit.set(b"b", b"2");
        kit.set(b"a", b"1");
        let keys = vec![b"b".to_vec(), b"missing".to_vec(), b"a".to_vec()];
        match kit.run(Request::MultiGet { keys }) {
            Response::Values(items) => {
                let got: Vec<_> = items
                    .iter()
                    .map(|i| (i.key.clone(), i.value.clone()))
                    .collect();
                assert_eq!(
                    got,
                    vec![
                        (b"b".to_vec(), b"2".to_vec()),
                        (b"a".to_vec(), b"1".to_vec())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            kit.run(Request::MultiGet { keys: vec![] }),
            Response::Values(vec![])
        );
    }

    #[test]
    fn multi_get_refuses_too_many_keys_and_bad_keys() {
        let kit = Kit::new();
        let n = kit.limits().multi_get_keys_max + 1;
        let keys = (0..n).map(|i| format!("k{i}").into_bytes()).collect();
        kit.expect_error(Request::MultiGet { keys }, ErrorCode::TooLarge);
        kit.expect_error(
            Request::MultiGet {
                keys: vec![b"a".to_vec(), Vec::new()],
            },
            ErrorCode::BadRequest,
        );
    }
}
