//! `AddSubkey`: appends one name to the subkey list of a live item unless already listed.
//! Only the parent's list changes; the child key is written by its own `Set` at its own owner.

use dkc_client::proto::{ErrorCode, Response};

use super::set_subkeys::stored_or;
use super::{Change, CmdError, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8], subkey: &[u8]) -> CmdResult {
    ctx.check_key("key", key)?;
    ctx.check_key("subkey", subkey)?;
    bump(&ctx.counters.cmd_subkeys);
    let subkeys_max = ctx.limits.subkeys_max;
    let (answer, written) = ctx.modify(key, |live| {
        let Some(old) = live else {
            return Ok(Change::Keep(Some(Response::NotFound)));
        };
        if old.subkeys.iter().any(|s| s == subkey) {
            // Already listed: nothing changes, so no new version and nothing to replicate.
            return Ok(Change::Keep(Some(Response::Stored {
                version: old.version,
            })));
        }
        if old.subkeys.len() >= subkeys_max {
            return Err(CmdError::new(
                ErrorCode::TooLarge,
                format!("the item already lists subkeys_max {subkeys_max} subkeys"),
            ));
        }
        let mut rec = old.clone();
        rec.subkeys.push(subkey.to_vec());
        Ok(Change::Write(rec, None))
    })?;
    Ok(Executed::wrote(stored_or(answer, &written), written))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response};

    fn add(kit: &Kit, sub: &[u8]) -> crate::executor::Executed {
        kit.exec(Request::AddSubkey {
            key: b"p".to_vec(),
            subkey: sub.to_vec(),
        })
    }

    #[test]
    fn add_subkey_appends_once() {
        let kit = Kit::new();
        assert_eq!(add(&kit, b"a").response, Response::NotFound);
        kit.set(b"p", b"v");
        let first = add(&kit, b"a");
        let Response::Stored { version } = first.response else {
            panic!()
        };
        assert_eq!(first.replicate.len(), 1);
        let again = add(&kit, b"a");
        assert_eq!(
            again.response,
            Response::Stored { version },
            "listed already: same version"
        );
        assert!(again.replicate.is_empty());
        add(&kit, b"b");
        assert_eq!(
            kit.run(Request::ListSubkeys { key: b"p".to_vec() }),
            Response::Subkeys(vec![b"a".to_vec(), b"b".to_vec()])
        );
        kit.expect_error(
            Request::AddSubkey {
                key: b"p".to_vec(),
                subkey: vec![],
            },
            ErrorCode::BadRequest,
        );
    }
}
