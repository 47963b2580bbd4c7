//! `RemoveSubkey`: removes one name from the subkey list of a live item. The child key itself
//! is left alone (the client deletes it if it wants).

use dkc_client::proto::Response;

use super::{Change, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8], subkey: &[u8]) -> CmdResult {
    ctx.check_key("key", key)?;
    ctx.check_key("subkey", subkey)?;
    bump(&ctx.counters.cmd_subkeys);
    let (answer, written) = ctx.modify(key, |live| {
        let Some(old) = live else {
            return Ok(Change::Keep(Response::NotFound));
        };
        let Some(at) = old.subkeys.iter().position(|s| s == subkey) else {
            return Ok(Change::Keep(Response::NotFound));
        };
        let mut rec = old.clone();
        rec.subkeys.remove(at);
        Ok(Change::Write(rec, Response::Deleted))
    })?;
    Ok(Executed::wrote(answer, written))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{Request, Response};

    #[test]
    fn remove_subkey_removes_only_that_name() {
        let kit = Kit::new();
        let rm = |s: &[u8]| Request::RemoveSubkey {
            key: b"p".to_vec(),
            subkey: s.to_vec(),
        };
        assert_eq!(kit.run(rm(b"a")), Response::NotFound);
        kit.set(b"p", b"v");
        kit.set(b"a", b"child");
        kit.run(Request::SetSubkeys {
            key: b"p".to_vec(),
            subkeys: vec![b"a".to_vec(), b"b".to_vec()],
        });
        assert_eq!(kit.run(rm(b"zz")), Response::NotFound);
        let ex = kit.exec(rm(b"a"));
        assert_eq!(ex.response, Response::Deleted);
        assert_eq!(ex.replicate[0].subkeys, vec![b"b".to_vec()]);
        assert_eq!(
            kit.value(b"a"),
            Some(b"child".to_vec()),
            "the child key stays"
        );
    }
}
