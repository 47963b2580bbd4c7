//! `Replicate` (server to server): stores each record if its version is newer than the stored
//! one — last writer wins by HLC, tombstones included — and moves this node's clock past
//! every version received. `applied` counts records now held at their version (stored, or
//! already there, e.g. copied by a merge first); `stale` counts records a strictly newer
//! version beat, which tells the primary its write lost.

use dkc_client::proto::{ErrorCode, Response, WireRecord};

use super::{CmdError, CmdResult, Ctx};
use crate::counters::add;
use crate::executor::Executed;
use crate::record::from_wire;

pub(crate) fn execute(ctx: &Ctx<'_>, records: &[WireRecord]) -> CmdResult {
    if records.len() > ctx.limits.replicate_records_max {
        return Err(CmdError::new(
            ErrorCode::TooLarge,
            format!(
                "replicate of {} records, more than replicate_records_max {}",
                records.len(),
                ctx.limits.replicate_records_max
            ),
        ));
    }
    // Validate the whole batch first, so a bad record does not leave half a batch applied.
    for r in records {
        ctx.check_key("replicated key", &r.key)?;
        if r.version == 0 {
            return Err(CmdError::new(
                ErrorCode::BadRequest,
                "replicated record has version 0",
            ));
        }
    }
    let (mut applied, mut stale) = (0u64, 0u64);
    for r in records {
        ctx.hlc.observe(r.version);
        if ctx.store.set_if_newer(&from_wire(r.clone()))? {
            applied += 1;
            continue;
        }
        // Not newer. Holding this very version (a merge copied it first) counts as applied:
        // only a strictly newer version means this write lost here.
        let held = ctx.store.get_raw(&r.key)?.map_or(0, |h| h.version);
        if held == r.version {
            applied += 1;
        } else {
            stale += 1;
        }
    }
    add(&ctx.counters.replicate_applied, applied);
    add(&ctx.counters.replicate_stale, stale);
    Ok(Executed::reply(Response::Replicated { applied, stale }))
}

#[cfg(test)]
mod tests {
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response, SetMode, WireRecord};
    use proptest::prelude::*;

    fn rec(key: &[u8], value: &[u8], version: u64, tombstone: bool) -> WireRecord {
        WireRecord {
            key: key.to_vec(),
            value: value.to_vec(),
            version,
            tombstone,
            ..WireRecord::default()
        }
    }

    fn replicate(kit: &Kit, records: Vec<WireRecord>) -> Response {
        kit.run(Request::Replicate { records })
    }

    #[test]
    fn replicate_applies_newer_and_ignores_older() {
        let kit = Kit::new_node(2);
        assert_eq!(
            replicate(
                &kit,
                vec![rec(b"k", b"v2", 200, false), rec(b"k", b"v1", 100, false)]
            ),
            Response::Replicated {
                applied: 1,
                stale: 1
            }
        );
        assert_eq!(kit.value(b"k"), Some(b"v2".to_vec()));
        assert_eq!(
            replicate(&kit, vec![rec(b"k", b"v2", 200, false)]),
            Response::Replicated {
                applied: 1,
                stale: 0
            },
            "the same version again is already held, not stale"
        );
        assert_eq!(kit.value(b"k"), Some(b"v2".to_vec()));
    }

    #[test]
    fn tombstones_win_over_older_sets_and_lose_to_newer_ones() {
        let kit = Kit::new_node(2);
        replicate(
            &kit,
            vec![rec(b"k", b"v", 100, false), rec(b"k", b"", 200, true)],
        );
        assert_eq!(kit.value(b"k"), None);
        replicate(&kit, vec![rec(b"k", b"old", 150, false)]);
        assert_eq!(
            kit.value(b"k"),
            None,
            "an older set does not resurrect a deleted key"
        );
        replicate(&kit, vec![rec(b"k", b"new", 300, false)]);
        assert_eq!(
            kit.value(b"k"),
            Some(b"new".to_vec()),
            "a newer set wins over the tombstone"
        );
    }

    #[test]
    fn replicate_moves_the_clock_so_later_local_writes_win() {
        let kit = Kit::new_node(2);
        let far = kit.hlc().now() + (60_000 << 18); // a version one minute in our future
        replicate(&kit, vec![rec(b"k", b"remote", far, false)]);
        let Response::Stored { version } = kit.run(Request::Set {
            key: b"k".to_vec(),
            value: b"local".to_vec(),
            mode: SetMode::Set,
            flags: 0,
            expire_at: 0,
        }) else {
            panic!()
        };
        assert!(version > far);
        assert_eq!(kit.value(b"k"), Some(b"local".to_vec()));
    }

    #[test]
    fn replicate_refuses_bad_batches_whole() {
        let kit = Kit::new_node(2);
        kit.expect_error(
            Request::Replicate {
                records: vec![rec(b"a", b"1", 5, false), rec(b"", b"x", 6, false)],
            },
            ErrorCode::BadRequest,
        );
        kit.expect_error(
            Request::Replicate {
                records: vec![rec(b"a", b"1", 0, false)],
            },
            ErrorCode::BadRequest,
        );
        assert_eq!(
            kit.value(b"a"),
            None,
            "nothing of a refused batch is applied"
        );
    }

    fn record_set() -> impl Strategy<Value = Vec<WireRecord>> {
        // Up to 40 writes over 5 keys; versions are distinct, as minted versions always are.
        proptest::collection::vec((0u8..5, any::<bool>(), any::<u16>(), 0u32..3), 1..40).prop_map(
            |writes| {
                writes
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, tomb, val, flags))| WireRecord {
                        key: vec![b'k', k],
                        value: if tomb {
                            vec![]
                        } else {
                            val.to_le_bytes().to_vec()
                        },
                        flags,
                        expire_at: 0,
                        version: 1000 + (u64::from(val) << 8) + i as u64,
                        tombstone: tomb,
                        subkeys: if tomb { vec![] } else { vec![vec![b'c', k]] },
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn lww_any_order_gives_the_same_state(
            records in record_set(),
            seeds in proptest::collection::vec(any::<u64>(), 3),
        ) {
            let mut states = Vec::new();
            for seed in seeds {
                let mut order = records.clone();
                shuffle(&mut order, seed);
                let kit = Kit::new_node(3);
                // Apply in small batches, as a replication stream would.
                for chunk in order.chunks(3) {
                    replicate(&kit, chunk.to_vec());
                }
                states.push(kit.dump_raw());
            }
            // The state equals the newest record per key.
            let mut newest = std::collections::BTreeMap::new();
            for r in &records {
                let e = newest.entry(r.key.clone()).or_insert_with(|| r.clone());
                if r.version > e.version {
                    *e = r.clone();
                }
            }
            let expected: Vec<WireRecord> = newest.into_values().collect();
            for s in &states {
                prop_assert_eq!(s, &expected);
            }
        }
    }

    fn shuffle(v: &mut [WireRecord], seed: u64) {
        let mut seed = seed | 1;
        for i in (1..v.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let j = (seed % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}
