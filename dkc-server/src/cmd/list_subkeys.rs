//! `ListSubkeys`: the subkey list of a live item.

use dkc_client::proto::Response;

use super::{CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult {
    ctx.check_key("key", key)?;
    bump(&ctx.counters.cmd_subkeys);
    Ok(Executed::reply(match ctx.store.subkeys(key)? {
        Some(list) => Response::Subkeys(list),
        None => Response::NotFound,
    }))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{Request, Response};

    #[test]
    fn list_subkeys_of_live_items_only() {
        let kit = Kit::new();
        let list = || kit.run(Request::ListSubkeys { key: b"p".to_vec() });
        assert_eq!(list(), Response::NotFound);
        kit.set(b"p", b"v");
        assert_eq!(list(), Response::Subkeys(vec![]));
        kit.run(Request::AddSubkey {
            key: b"p".to_vec(),
            subkey: b"c".to_vec(),
        });
        assert_eq!(list(), Response::Subkeys(vec![b"c".to_vec()]));
        kit.run(Request::Delete {
            key: b"p".to_vec(),
            cas: None,
        });
        assert_eq!(list(), Response::NotFound);
        kit.set(b"p", b"again");
        assert_eq!(
            list(),
            Response::Subkeys(vec![]),
            "a new item does not inherit old subkeys"
        );
    }
}
