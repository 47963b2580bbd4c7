//! `Flush`: tombstones every live item of this node (tombstones, not erasure, so a merge with
//! a node that missed the flush cannot bring items back). Refused unless `confirm` is true.
//! The client sends it to every node; each node's own tombstones are not replicated (every
//! owner flushes its copy itself, and merges settle the versions).

use dkc_client::proto::{ErrorCode, Response};
use k2hash::Cursor;

use super::{Change, CmdError, CmdResult, Ctx};
use crate::counters::{add, bump};
use crate::executor::Executed;
use crate::limits::SCAN_BATCH_RECORDS;
use crate::record::tombstone;

pub(crate) fn execute(ctx: &Ctx<'_>, confirm: bool) -> CmdResult {
    if !confirm {
        return Err(CmdError::new(
            ErrorCode::BadRequest,
            "flush deletes every item: send it with confirm = true",
        ));
    }
    bump(&ctx.counters.cmd_flush);
    let now = ctx.store.now();
    let mut deleted = 0u64;
    let mut pos = Cursor::start();
    loop {
        let (batch, next) = ctx.store.scan(&pos, SCAN_BATCH_RECORDS)?;
        for it in batch {
            if !it.record.is_live(now) {
                continue;
            }
            // Re-checked under the key's lock: a concurrent write may have replaced it.
            let (hit, _) = ctx.modify(&it.record.key, |live| {
                Ok(match live {
                    Some(_) => Change::Write(tombstone(&it.record.key, 0), true),
                    None => Change::Keep(false),
                })
            })?;
            deleted += u64::from(hit);
        }
        match next {
            Some(c) => pos = c,
            None => break,
        }
    }
    add(&ctx.counters.delete_hits, deleted);
    Ok(Executed::reply(Response::Flushed { deleted }))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response};

    #[test]
    fn flush_needs_confirmation_then_tombstones_everything() {
        let kit = Kit::new();
        for i in 0..700 {
            kit.set(format!("k{i}").as_bytes(), b"v");
        }
        kit.expect_error(Request::Flush { confirm: false }, ErrorCode::BadRequest);
        assert_eq!(kit.value(b"k1"), Some(b"v".to_vec()));
        assert_eq!(
            kit.run(Request::Flush { confirm: true }),
            Response::Flushed { deleted: 700 }
        );
        assert_eq!(kit.value(b"k1"), None);
        let raw = kit.store().get_raw(b"k1").unwrap().unwrap();
        assert!(raw.tombstone);
        assert_eq!(
            kit.run(Request::Flush { confirm: true }),
            Response::Flushed { deleted: 0 }
        );
    }
}
