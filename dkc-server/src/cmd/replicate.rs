//! `Replicate` (server to server): stores each record if its version is newer than the stored
//! one — last writer wins by HLC, tombstones included — and moves this node's clock past
//! every version received. `applied` counts records now held at their version (stored, or
//! already there, e.g. copied by a merge first); `stale` counts records a strictly newer
//! version beat, which tells the primary its write lost.
//!
//! Fenced records (`base = Some(b)`, written by a value-dependent command: cas, incr/decr,
//! add, replace, append/prepend, delete with a CAS token) follow a stricter rule. With `held`
//! the version this node holds (0 when none; tombstones count):
//!
//! | held                  | answer                                                         |
//! |-----------------------|----------------------------------------------------------------|
//! | `== version`          | applied (already held)                                        |
//! | `> version`           | stale, and the held record goes back as `conflict`            |
//! | `<= b`                | stored (this node is at the base, or behind a committed state) |
//! | `b < held < version`  | conflict: not stored, the held record goes back as `conflict` |
//!
//! The conflict case is two primaries at once: the primary computed its write from `b` while
//! this node already holds a later write it never saw, so storing it (it carries a fresh,
//! higher version) would silently undo that write. The primary fails its write and installs
//! the held record as it is.
//!
//! A record with `rollback_of = Some(f)` is the primary taking back a fenced write that was
//! not acknowledged: if this node holds version `f`, the record (the key's state before the
//! write; version 0 = absent) is put back; anything else held is kept.

use dkc_client::proto::{ErrorCode, Response, WireRecord};
use k2hash::Decision;

use super::{CmdError, CmdResult, Ctx};
use crate::counters::add;
use crate::executor::Executed;
use crate::record::{from_wire, to_wire};

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
        if r.version == 0 && r.rollback_of.is_none() {
            return Err(CmdError::new(
                ErrorCode::BadRequest,
                "replicated record has version 0",
            ));
        }
        if r.rollback_of == Some(0) {
            return Err(CmdError::new(
                ErrorCode::BadRequest,
                "rollback of version 0 (no write has version 0)",
            ));
        }
    }
    let (mut applied, mut stale, mut conflicts, mut rollbacks) = (0u64, 0u64, 0u64, 0u64);
    let mut conflict = None;
    for r in records {
        ctx.hlc.observe(r.version);
        if let Some(failed) = r.rollback_of {
            rollbacks += u64::from(roll_back(ctx, r, failed)?);
            continue;
        }
        match apply(ctx, r)? {
            Outcome::Applied => applied += 1,
            Outcome::Stale(held) => {
                stale += 1;
                if conflict.is_none() {
                    conflict = held;
                }
            }
            Outcome::Conflict(held) => {
                conflicts += 1;
                conflict.get_or_insert(held);
            }
        }
    }
    add(&ctx.counters.replicate_applied, applied);
    add(&ctx.counters.replicate_stale, stale);
    add(&ctx.counters.replicate_conflict, conflicts);
    add(&ctx.counters.replicate_rollback, rollbacks);
    Ok(Executed::reply(Response::Replicated {
        applied,
        stale,
        conflict: conflict.map(Box::new),
    }))
}

/// What one replicated record did here.
enum Outcome {
    /// Held at its version now.
    Applied,
    /// A strictly newer version is held (returned for a fenced record).
    Stale(Option<WireRecord>),
    /// Fenced and refused: the held record is newer than its base.
    Conflict(WireRecord),
}

fn apply(ctx: &Ctx<'_>, r: &WireRecord) -> Result<Outcome, CmdError> {
    let Some(base) = r.base else {
        if ctx.store.set_if_newer(&from_wire(r.clone()))? {
            return Ok(Outcome::Applied);
        }
        // Not newer. Holding this very version (a merge copied it first) counts as applied:
        // only a strictly newer version means this write lost here.
        let held = ctx.store.get_raw(&r.key)?.map_or(0, |h| h.version);
        return Ok(if held == r.version {
            Outcome::Applied
        } else {
            Outcome::Stale(None)
        });
    };
    let incoming = from_wire(r.clone());
    ctx.store
        .update_raw(&r.key, |stored| {
            let held = stored.map_or(0, |h| h.version);
            let held_record = || stored.map(|h| to_wire(h.clone()));
            if held == r.version {
                (Decision::Keep, Outcome::Applied)
            } else if held > r.version {
                (Decision::Keep, Outcome::Stale(held_record()))
            } else if held <= base {
                (Decision::PutRecord(incoming), Outcome::Applied)
            } else {
                match held_record() {
                    Some(h) => (Decision::Keep, Outcome::Conflict(h)),
                    // held > base >= 0 means a record is stored; never reached.
                    None => (Decision::Keep, Outcome::Stale(None)),
                }
            }
        })
        .map_err(CmdError::from)
}

/// Puts `r` back (removes the key when `r.version` is 0) if this node holds version `failed`.
fn roll_back(ctx: &Ctx<'_>, r: &WireRecord, failed: u64) -> Result<bool, CmdError> {
    let restore = if r.version == 0 {
        Decision::Remove {
            tombstone_version: None,
        }
    } else {
        let mut rec = from_wire(r.clone());
        rec.key = r.key.clone();
        Decision::PutRecord(rec)
    };
    Ok(ctx.store.update_raw(&r.key, |stored| {
        if stored.map(|h| h.version) == Some(failed) {
            (restore, true)
        } else {
            (Decision::Keep, false)
        }
    })?)
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
                stale: 1,
                conflict: None
            }
        );
        assert_eq!(kit.value(b"k"), Some(b"v2".to_vec()));
        assert_eq!(
            replicate(&kit, vec![rec(b"k", b"v2", 200, false)]),
            Response::Replicated {
                applied: 1,
                stale: 0,
                conflict: None
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

    fn fenced(key: &[u8], value: &[u8], version: u64, base: u64) -> WireRecord {
        WireRecord {
            base: Some(base),
            ..rec(key, value, version, false)
        }
    }

    fn answer(applied: u64, stale: u64, conflict: Option<WireRecord>) -> Response {
        Response::Replicated {
            applied,
            stale,
            conflict: conflict.map(Box::new),
        }
    }

    #[test]
    fn fenced_records_apply_at_or_behind_their_base() {
        let kit = Kit::new_node(2);
        // Absent key, base 0: stored.
        assert_eq!(
            replicate(&kit, vec![fenced(b"k", b"1", 100, 0)]),
            answer(1, 0, None)
        );
        // Exactly at the base: stored.
        assert_eq!(
            replicate(&kit, vec![fenced(b"k", b"2", 200, 100)]),
            answer(1, 0, None)
        );
        // Behind the base (this replica missed committed write 250): stored.
        assert_eq!(
            replicate(&kit, vec![fenced(b"k", b"4", 300, 250)]),
            answer(1, 0, None)
        );
        assert_eq!(kit.value(b"k"), Some(b"4".to_vec()));
        // The same record again (a merge copied it first, a retry): applied, unchanged.
        assert_eq!(
            replicate(&kit, vec![fenced(b"k", b"4", 300, 250)]),
            answer(1, 0, None)
        );
        // A tombstone counts as held: base 0 over a tombstone at 350 is a conflict, base 350
        // is not.
        replicate(&kit, vec![rec(b"t", b"", 350, true)]);
        let held = kit
            .store()
            .get_raw(b"t")
            .unwrap()
            .map(crate::record::to_wire);
        assert_eq!(
            replicate(&kit, vec![fenced(b"t", b"1", 400, 0)]),
            answer(0, 0, held)
        );
        assert_eq!(
            replicate(&kit, vec![fenced(b"t", b"1", 400, 350)]),
            answer(1, 0, None)
        );
        assert_eq!(kit.value(b"t"), Some(b"1".to_vec()));
    }

    #[test]
    fn a_fenced_record_over_a_write_its_primary_missed_is_a_conflict() {
        let kit = Kit::new_node(2);
        replicate(&kit, vec![rec(b"n", b"10", 100, false)]);
        // The real primary's incr 10 -> 11 at 200, acknowledged here.
        replicate(&kit, vec![fenced(b"n", b"11", 200, 100)]);
        let held = kit
            .store()
            .get_raw(b"n")
            .unwrap()
            .map(crate::record::to_wire);
        // A stale primary's incr computed from 100 too, with a fresher version 300.
        assert_eq!(
            replicate(&kit, vec![fenced(b"n", b"11", 300, 100)]),
            answer(0, 0, held.clone()),
            "refused, and the held record goes back"
        );
        assert_eq!(kit.value(b"n"), Some(b"11".to_vec()));
        assert_eq!(kit.item(b"n").unwrap().version, 200, "nothing stored");
        // Older than what is held: stale, the held record goes back as well.
        assert_eq!(
            replicate(&kit, vec![fenced(b"n", b"x", 150, 100)]),
            answer(0, 1, held)
        );
        // A plain record at 300 is still last-writer-wins.
        assert_eq!(
            replicate(&kit, vec![rec(b"n", b"plain", 300, false)]),
            answer(1, 0, None)
        );
        assert_eq!(kit.value(b"n"), Some(b"plain".to_vec()));
    }

    #[test]
    fn rollbacks_restore_only_the_write_they_take_back() {
        let kit = Kit::new_node(2);
        replicate(&kit, vec![rec(b"k", b"old", 100, false)]);
        replicate(&kit, vec![fenced(b"k", b"new", 200, 100)]);
        let undo = |version, failed| WireRecord {
            rollback_of: Some(failed),
            ..rec(b"k", b"old", version, false)
        };
        // A rollback of another version changes nothing.
        assert_eq!(replicate(&kit, vec![undo(100, 150)]), answer(0, 0, None));
        assert_eq!(kit.value(b"k"), Some(b"new".to_vec()));
        replicate(&kit, vec![undo(100, 200)]);
        assert_eq!(kit.value(b"k"), Some(b"old".to_vec()));
        assert_eq!(kit.item(b"k").unwrap().version, 100);
        // A later write is never taken back by a late rollback.
        replicate(&kit, vec![rec(b"k", b"later", 300, false)]);
        replicate(&kit, vec![undo(100, 200)]);
        assert_eq!(kit.value(b"k"), Some(b"later".to_vec()));
        // Version 0 restores "absent".
        replicate(&kit, vec![fenced(b"a", b"1", 500, 0)]);
        replicate(
            &kit,
            vec![WireRecord {
                rollback_of: Some(500),
                ..rec(b"a", b"", 0, false)
            }],
        );
        assert_eq!(kit.store().get_raw(b"a").unwrap(), None);
        kit.expect_error(
            Request::Replicate {
                records: vec![WireRecord {
                    rollback_of: Some(0),
                    ..rec(b"a", b"", 0, false)
                }],
            },
            ErrorCode::BadRequest,
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A fenced write by primary `node` computed from what it holds.
        Fenced(u8),
        /// A replica learns what primary `from` holds (a replication or merge arriving).
        Sync(u8, u8),
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Two primaries each increment a counter from what they hold (applied locally
        /// first) and send it to one shared replica, in any interleaving with syncs between
        /// them; a refused increment is rolled back at its primary, which installs the record
        /// the replica sent back. The replica's value always equals the number of increments
        /// it stored: none was computed from a stale value.
        #[test]
        fn a_replica_never_stores_an_increment_computed_from_a_stale_value(
            ops in proptest::collection::vec(
                prop_oneof![
                    (0u8..2).prop_map(Op::Fenced),
                    (0u8..2, 0u8..2).prop_map(|(a, b)| Op::Sync(a, b)),
                ],
                1..30,
            )
        ) {
            let number = |v: &[u8]| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap();
            let replica = Kit::new_node(9);
            let primaries = [Kit::new_node(1), Kit::new_node(2)];
            let mut stored = 0u64;
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Fenced(p) => {
                        let kit = &primaries[usize::from(p)];
                        let prior = kit.store().get_raw(b"c").unwrap();
                        let (base, n) = prior.as_ref().map_or((0, 0), |h| (h.version, number(&h.value)));
                        // Fresh, unique versions above everything so far (as HLC minting is).
                        let version = ((step as u64 + 1) << 20) + 1 + u64::from(p);
                        let r = fenced(b"c", (n + 1).to_string().as_bytes(), version, base);
                        prop_assert_eq!(replicate(kit, vec![r.clone()]), answer(1, 0, None));
                        match replicate(&replica, vec![r]) {
                            Response::Replicated { applied: 1, .. } => stored += 1,
                            Response::Replicated { conflict, .. } => {
                                let undo = WireRecord {
                                    rollback_of: Some(version),
                                    ..prior.map(crate::record::to_wire).unwrap_or_else(|| rec(b"c", b"", 0, false))
                                };
                                replicate(kit, vec![undo]);
                                if let Some(c) = conflict {
                                    replicate(kit, vec![WireRecord { base: None, ..*c }]);
                                }
                            }
                            other => prop_assert!(false, "{:?}", other),
                        }
                    }
                    Op::Sync(from, to) => {
                        let src = &primaries[usize::from(from)];
                        if let Some(h) = src.store().get_raw(b"c").unwrap() {
                            replicate(&primaries[usize::from(to)], vec![crate::record::to_wire(h)]);
                        }
                    }
                }
                let v = replica.value(b"c").map_or(0, |v| number(&v));
                prop_assert_eq!(v, stored);
            }
        }
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
                        ..WireRecord::default()
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
