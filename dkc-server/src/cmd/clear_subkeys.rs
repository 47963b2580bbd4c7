//! `ClearSubkeys`: empties the subkey list of a live item.

use dkc_client::proto::Response;

use super::set_subkeys::stored_or;
use super::{Change, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8]) -> CmdResult {
    ctx.check_key("key", key)?;
    bump(&ctx.counters.cmd_subkeys);
    let (answer, written) = ctx.modify(key, |live| {
        Ok(match live {
            None => Change::Keep(Some(Response::NotFound)),
            // Nothing to clear: no new version, nothing to replicate.
            Some(old) if old.subkeys.is_empty() => Change::Keep(Some(Response::Stored {
                version: old.version,
            })),
            Some(old) => {
                let mut rec = old.clone();
                rec.subkeys.clear();
                Change::Write(rec, None)
            }
        })
    })?;
    Ok(Executed::wrote(stored_or(answer, &written), written))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{Request, Response};

    #[test]
    fn clear_subkeys_empties_the_list() {
        let kit = Kit::new();
        let clear = || kit.exec(Request::ClearSubkeys { key: b"p".to_vec() });
        assert_eq!(clear().response, Response::NotFound);
        kit.set(b"p", b"v");
        let noop = clear();
        assert!(matches!(noop.response, Response::Stored { .. }) && noop.replicate.is_empty());
        kit.run(Request::AddSubkey {
            key: b"p".to_vec(),
            subkey: b"c".to_vec(),
        });
        let ex = clear();
        assert!(matches!(ex.response, Response::Stored { .. }));
        assert!(ex.replicate[0].subkeys.is_empty());
        assert_eq!(
            kit.run(Request::ListSubkeys { key: b"p".to_vec() }),
            Response::Subkeys(vec![])
        );
        assert_eq!(kit.value(b"p"), Some(b"v".to_vec()));
    }
}
