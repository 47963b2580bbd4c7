//! `Scan`: one node's page of live items in key byte order (kivaloo's RANGE).
//!
//! The engine stores records in hash order, so a key-ordered page costs one pass over the
//! node's records, keeping only the `limit + 1` smallest keys after the cursor (memory is
//! bounded by the page, time is O(records · log limit)). The client merges the pages of all
//! nodes in key order and continues from the last key it kept.

use std::collections::BTreeMap;

use dkc_client::proto::{ErrorCode, Item, Response, ScanPage, ScanRange};
use k2hash::Cursor;

use super::{CmdError, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;
use crate::limits::SCAN_BATCH_RECORDS;
use crate::record::to_item;

pub(crate) fn execute(
    ctx: &Ctx<'_>,
    range: &ScanRange,
    cursor: Option<&[u8]>,
    limit: u32,
    keys_only: bool,
) -> CmdResult {
    if limit == 0 {
        return Err(CmdError::new(
            ErrorCode::BadRequest,
            "scan limit must be at least 1",
        ));
    }
    bump(&ctx.counters.cmd_scan);
    let limit = limit.min(ctx.limits.scan_limit_max) as usize;
    // The `limit + 1` smallest keys seen so far; the extra one tells whether more remain.
    let mut best: BTreeMap<Vec<u8>, Item> = BTreeMap::new();
    let mut pos = Cursor::start();
    loop {
        let (batch, next) = ctx.store.scan(&pos, SCAN_BATCH_RECORDS)?;
        for it in batch {
            let rec = &it.record;
            if rec.tombstone || it.expired || !range.contains(&rec.key) {
                continue;
            }
            if cursor.is_some_and(|c| rec.key.as_slice() <= c) {
                continue;
            }
            if best.len() > limit && best.last_key_value().is_some_and(|(k, _)| rec.key >= *k) {
                continue;
            }
            best.insert(rec.key.clone(), to_item(rec, !keys_only));
            if best.len() > limit + 1 {
                best.pop_last();
            }
        }
        match next {
            Some(c) => pos = c,
            None => break,
        }
    }
    let more = best.len() > limit;
    if more {
        best.pop_last();
    }
    let items: Vec<Item> = best.into_values().collect();
    let next_cursor = if more {
        items.last().map(|i| i.key.clone())
    } else {
        None
    };
    Ok(Executed::reply(Response::ScanPage(ScanPage {
        items,
        next_cursor,
    })))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response, ScanPage, ScanRange};

    fn scan(kit: &Kit, range: ScanRange, cursor: Option<Vec<u8>>, limit: u32) -> ScanPage {
        match kit.run(Request::Scan {
            range,
            cursor,
            limit,
            keys_only: false,
        }) {
            Response::ScanPage(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn keys(p: &ScanPage) -> Vec<String> {
        p.items
            .iter()
            .map(|i| String::from_utf8(i.key.clone()).unwrap())
            .collect()
    }

    #[test]
    fn scan_pages_through_keys_in_order() {
        let kit = Kit::new();
        let mut want: Vec<String> = (0..250).map(|i| format!("key{i:04}")).collect();
        for k in &want {
            kit.set(k.as_bytes(), b"v");
        }
        kit.set(b"gone", b"v");
        kit.run(Request::Delete {
            key: b"gone".to_vec(),
            cas: None,
        });
        want.sort();
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let page = scan(&kit, ScanRange::All, cursor, 40);
            assert!(page.items.len() <= 40);
            got.extend(keys(&page));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(
            got, want,
            "every live key once, in order, tombstones skipped"
        );
    }

    #[test]
    fn scan_by_prefix_and_range_and_skips_expired() {
        let kit = Kit::new();
        for k in ["a1", "a2", "b1", "b2", "b3", "c1"] {
            kit.set(k.as_bytes(), k.as_bytes());
        }
        let now = kit.now_secs();
        kit.run(Request::Set {
            key: b"b0".to_vec(),
            value: vec![],
            mode: dkc_client::proto::SetMode::Set,
            flags: 0,
            expire_at: now + 1,
        });
        kit.advance_secs(1);
        let p = scan(&kit, ScanRange::Prefix(b"b".to_vec()), None, 10);
        assert_eq!(keys(&p), ["b1", "b2", "b3"]);
        assert_eq!(p.next_cursor, None);
        let r = ScanRange::Range {
            start: b"a2".to_vec(),
            end: Some(b"b3".to_vec()),
        };
        let p = scan(&kit, r.clone(), None, 2);
        assert_eq!(keys(&p), ["a2", "b1"]);
        assert_eq!(p.next_cursor, Some(b"b1".to_vec()));
        let p = scan(&kit, r, p.next_cursor, 2);
        assert_eq!(keys(&p), ["b2"]);
        assert_eq!(p.next_cursor, None);
        assert_eq!(p.items[0].value, b"b2".to_vec());
    }

    #[test]
    fn scan_keys_only_and_limits() {
        let kit = Kit::new();
        kit.set(b"k", b"value");
        let Response::ScanPage(p) = kit.run(Request::Scan {
            range: ScanRange::All,
            cursor: None,
            limit: u32::MAX,
            keys_only: true,
        }) else {
            panic!()
        };
        assert_eq!(p.items.len(), 1);
        assert!(p.items[0].value.is_empty() && p.items[0].version > 0);
        kit.expect_error(
            Request::Scan {
                range: ScanRange::All,
                cursor: None,
                limit: 0,
                keys_only: false,
            },
            ErrorCode::BadRequest,
        );
    }
}
