//! `DeleteWithChildren`: tombstones the item and answers with the subkey list it had. The
//! children usually live on other nodes, so the client deletes each of them in turn (with its
//! own `DeleteWithChildren`, a depth limit and a visited set against cycles).

use dkc_client::proto::Response;

use super::{Change, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;
use crate::record::tombstone;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult {
    ctx.check_key("key", key)?;
    let c = ctx.counters;
    let (answer, written) = ctx.modify(key, |live| {
        Ok(match live {
            None => {
                bump(&c.delete_misses);
                Change::Keep(Response::NotFound)
            }
            Some(old) => {
                bump(&c.delete_hits);
                let children = old.subkeys.clone();
                Change::Write(
                    tombstone(key, 0),
                    Response::DeletedWithChildren { children },
                )
            }
        })
    })?;
    Ok(Executed::wrote(answer, written))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{Request, Response};

    #[test]
    fn delete_with_children_returns_the_children_to_delete_next() {
        let kit = Kit::new();
        let del = |k: &[u8]| kit.exec(Request::DeleteWithChildren { key: k.to_vec() });
        assert_eq!(del(b"p").response, Response::NotFound);
        kit.set(b"p", b"v");
        kit.run(Request::SetSubkeys {
            key: b"p".to_vec(),
            subkeys: vec![b"a".to_vec(), b"b".to_vec()],
        });
        let ex = del(b"p");
        assert_eq!(
            ex.response,
            Response::DeletedWithChildren {
                children: vec![b"a".to_vec(), b"b".to_vec()]
            }
        );
        assert!(ex.replicate[0].tombstone);
        assert_eq!(kit.value(b"p"), None);
        assert_eq!(del(b"p").response, Response::NotFound);
    }
}
