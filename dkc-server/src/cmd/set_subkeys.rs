//! `SetSubkeys`: replaces the subkey list of a live item (duplicates dropped, first kept).

use dkc_client::proto::{ErrorCode, Response};

use super::{Change, CmdError, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;

/// Checks a whole list against the limits and drops duplicates, keeping first occurrences.
pub(crate) fn normalize(ctx: &Ctx<'_>, subkeys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CmdError> {
    if subkeys.len() > ctx.limits.subkeys_max {
        return Err(CmdError::new(
            ErrorCode::TooLarge,
            format!(
                "{} subkeys, more than subkeys_max {}",
                subkeys.len(),
                ctx.limits.subkeys_max
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(subkeys.len());
    let mut out = Vec::with_capacity(subkeys.len());
    for s in subkeys {
        ctx.check_key("subkey", s)?;
        if seen.insert(s.as_slice()) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

pub(crate) fn execute(ctx: &Ctx<'_>, key: &[u8], subkeys: &[Vec<u8>]) -> CmdResult {
    ctx.check_key("key", key)?;
    let list = normalize(ctx, subkeys)?;
    bump(&ctx.counters.cmd_subkeys);
    let (answer, written) = ctx.modify(key, |live| {
        Ok(match live {
            None => Change::Keep(Some(Response::NotFound)),
            Some(old) => {
                let mut rec = old.clone();
                rec.subkeys = list;
                Change::Write(rec, None)
            }
        })
    })?;
    Ok(Executed::wrote(stored_or(answer, &written), written))
}

/// `Stored` with the written version, or the command's own answer.
pub(crate) fn stored_or(answer: Option<Response>, written: &Option<k2hash::Record>) -> Response {
    match (answer, written) {
        (Some(r), _) => r,
        (None, Some(rec)) => Response::Stored {
            version: rec.version,
        },
        (None, None) => Response::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response};

    #[test]
    fn set_subkeys_replaces_dedupes_and_replicates() {
        let kit = Kit::new();
        let req = |list: &[&[u8]]| Request::SetSubkeys {
            key: b"p".to_vec(),
            subkeys: list.iter().map(|s| s.to_vec()).collect(),
        };
        assert_eq!(kit.run(req(&[b"a"])), Response::NotFound);
        let v = kit.set(b"p", b"parent");
        let ex = kit.exec(req(&[b"a", b"b", b"a"]));
        let Response::Stored { version } = ex.response else {
            panic!("{:?}", ex.response)
        };
        assert!(version > v);
        assert_eq!(ex.replicate[0].subkeys, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(ex.replicate[0].value, b"parent".to_vec(), "value kept");
        kit.run(req(&[b"c"]));
        assert_eq!(
            kit.run(Request::ListSubkeys { key: b"p".to_vec() }),
            Response::Subkeys(vec![b"c".to_vec()])
        );
        kit.run(req(&[]));
        assert_eq!(
            kit.run(Request::ListSubkeys { key: b"p".to_vec() }),
            Response::Subkeys(vec![])
        );
    }

    #[test]
    fn set_subkeys_checks_limits() {
        let kit = Kit::new();
        kit.set(b"p", b"v");
        kit.expect_error(
            Request::SetSubkeys {
                key: b"p".to_vec(),
                subkeys: vec![b"a".to_vec(), vec![]],
            },
            ErrorCode::BadRequest,
        );
        let n = kit.limits().subkeys_max + 1;
        kit.expect_error(
            Request::SetSubkeys {
                key: b"p".to_vec(),
                subkeys: vec![b"a".to_vec(); n],
            },
            ErrorCode::TooLarge,
        );
    }
}
