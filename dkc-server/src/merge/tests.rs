//! Merge handler tests: a small chmpx-like driver reconciles two stores through the handler
//! only (digest, narrow, list, fetch, apply), and we count what it copied.

use std::collections::BTreeMap;

use chmpx::merge::protocol::{
    decode_response, encode_request, HashRange, ItemVersion, MergeRequest, MergeResponse,
    RangeDigest, FETCH_KEYS_MAX,
};
use dkc_client::proto::{Request, Response, SetMode, WireRecord};
use proptest::prelude::*;
use serde_bytes::ByteBuf;

use super::*;
use crate::cmd::testkit::Kit;

/// Ranges with at most this many items on both sides are compared by version list.
const NARROW_COUNT_MAX: u64 = 32;
/// Pieces a differing range is split into.
const SPLIT_PARTS: u32 = 16;

#[derive(Debug, Default)]
struct Driven {
    applied: u64,
    skipped: u64,
    digest_requests: u64,
}

fn ask(kit: &Kit, req: MergeRequest) -> MergeResponse {
    // Through the byte form, as chmpx would send it.
    let body = encode_request(&req).unwrap();
    decode_response(&handle_body(&kit.exec, &body)).unwrap()
}

fn digest_of(kit: &Kit, r: HashRange, d: &mut Driven) -> RangeDigest {
    d.digest_requests += 1;
    match ask(kit, MergeRequest::Digest { ranges: vec![r] }) {
        MergeResponse::Digests { digests } => digests[0],
        other => panic!("{other:?}"),
    }
}

fn versions_of(kit: &Kit, r: HashRange) -> BTreeMap<Vec<u8>, ItemVersion> {
    let mut out = BTreeMap::new();
    let mut cursor = None;
    loop {
        let req = MergeRequest::ListVersions {
            lo: r.lo,
            hi: r.hi,
            cursor,
            limit: 7,
        };
        let MergeResponse::Versions {
            entries,
            next_cursor,
        } = ask(kit, req)
        else {
            panic!()
        };
        for e in entries {
            assert!(out.insert(e.key, e.version).is_none(), "a key listed twice");
        }
        match next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn copy(from: &Kit, to: &Kit, keys: Vec<Vec<u8>>, d: &mut Driven) {
    let mut rest: Vec<ByteBuf> = keys.into_iter().map(ByteBuf::from).collect();
    while !rest.is_empty() {
        let take = rest.len().min(FETCH_KEYS_MAX);
        let chunk: Vec<ByteBuf> = rest[..take].to_vec();
        let MergeResponse::Items { batch, served, .. } =
            ask(from, MergeRequest::FetchItems { keys: chunk })
        else {
            panic!()
        };
        assert!(served >= 1);
        rest.drain(..served as usize);
        let MergeResponse::Applied {
            applied, skipped, ..
        } = ask(to, MergeRequest::ApplyItems { batch })
        else {
            panic!()
        };
        d.applied += applied;
        d.skipped += skipped;
    }
}

/// What chmpx does for one slot range between two owners.
fn reconcile(a: &Kit, b: &Kit, whole: HashRange) -> Driven {
    let mut d = Driven::default();
    let mut todo = vec![whole];
    while let Some(r) = todo.pop() {
        let (da, db) = (digest_of(a, r, &mut d), digest_of(b, r, &mut d));
        if da == db {
            continue;
        }
        if da.count.max(db.count) > NARROW_COUNT_MAX && r.lo < r.hi {
            todo.extend(r.split(SPLIT_PARTS));
            continue;
        }
        let (va, vb) = (versions_of(a, r), versions_of(b, r));
        let newer = |x: &BTreeMap<Vec<u8>, ItemVersion>, y: &BTreeMap<Vec<u8>, ItemVersion>| {
            x.iter()
                .filter(|(k, v)| y.get(*k).is_none_or(|w| w < *v))
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        copy(a, b, newer(&va, &vb), &mut d);
        copy(b, a, newer(&vb, &va), &mut d);
    }
    d
}

const ALL: HashRange = HashRange {
    lo: 0,
    hi: u64::MAX,
};

fn replicate_all(from: &Executed, to: &[&Kit]) {
    for kit in to {
        kit.run(Request::Replicate {
            records: from.replicate.clone(),
        });
    }
}

use crate::executor::Executed;

fn set(kit: &Kit, key: &str, value: &str) -> Executed {
    kit.exec(Request::Set {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        mode: SetMode::Set,
        flags: 0,
        expire_at: 0,
    })
}

#[test]
fn merge_divergent_stores_converge_copying_only_differences() {
    let a = Kit::new_node(1);
    let b = Kit::new_node(2);
    // A common history, replicated to both.
    for i in 0..1500 {
        let ex = set(&a, &format!("base{i}"), "v0");
        replicate_all(&ex, &[&b]);
    }
    assert_eq!(a.dump_raw(), b.dump_raw());
    // B is away: A takes 25 updates, 10 new keys and 5 deletes.
    for i in 0..25 {
        set(&a, &format!("base{i}"), "a-update");
    }
    for i in 0..10 {
        set(&a, &format!("a-new{i}"), "x");
    }
    for i in 100..105 {
        a.run(Request::Delete {
            key: format!("base{i}").into_bytes(),
            cas: None,
        });
    }
    // Then A is away: B takes 7 new keys and updates 3 keys A updated too, later (so B wins
    // those).
    a.clock.advance_ms(10);
    b.clock.advance_ms(20);
    for i in 0..7 {
        set(&b, &format!("b-new{i}"), "y");
    }
    for i in 0..3 {
        set(&b, &format!("base{i}"), "b-later");
    }
    // Expected copies: A→B 25-3 updates + 10 new + 5 tombstones; B→A 7 new + 3 updates.
    let expected = (25 - 3 + 10 + 5) + (7 + 3);
    let d = reconcile(&a, &b, ALL);
    assert_eq!(d.applied, expected, "{d:?}");
    assert_eq!(d.skipped, 0, "nothing identical was copied");
    assert_eq!(a.dump_raw(), b.dump_raw(), "both hold the same records");
    assert_eq!(a.value(b"base0"), Some(b"b-later".to_vec()));
    assert_eq!(a.value(b"base5"), Some(b"a-update".to_vec()));
    assert_eq!(b.value(b"base101"), None);
    assert!(b.store().get_raw(b"base101").unwrap().unwrap().tombstone);
    // A second pass finds nothing to do after one digest per side.
    let again = reconcile(&a, &b, ALL);
    assert_eq!((again.applied, again.digest_requests), (0, 2));
}

#[test]
fn merge_digest_sees_versions_and_tombstones() {
    let a = Kit::new_node(1);
    let b = Kit::new_node(2);
    let mut d = Driven::default();
    assert_eq!(digest_of(&a, ALL, &mut d), RangeDigest::default());
    let ex = set(&a, "k", "v");
    replicate_all(&ex, &[&b]);
    assert_eq!(digest_of(&a, ALL, &mut d), digest_of(&b, ALL, &mut d));
    let del = a.exec(Request::Delete {
        key: b"k".to_vec(),
        cas: None,
    });
    assert_ne!(digest_of(&a, ALL, &mut d), digest_of(&b, ALL, &mut d));
    replicate_all(&del, &[&b]);
    let da = digest_of(&a, ALL, &mut d);
    assert_eq!(da, digest_of(&b, ALL, &mut d));
    assert_eq!(da.count, 1, "the tombstone counts");
    // Ranges split the digest: the sum over pieces is the whole.
    let pieces = ALL.split(4);
    let MergeResponse::Digests { digests } = ask(&a, MergeRequest::Digest { ranges: pieces })
    else {
        panic!()
    };
    assert_eq!(digests.iter().map(|d| d.count).sum::<u64>(), 1);
}

#[test]
fn merge_fetch_stops_near_the_batch_target_and_reports_served() {
    let a = Kit::new_node(1);
    let big = "x".repeat(100 * 1024);
    let keys: Vec<ByteBuf> = (0..6)
        .map(|i| {
            let k = format!("big{i}");
            set(&a, &k, &big);
            ByteBuf::from(k.into_bytes())
        })
        .collect();
    let MergeResponse::Items {
        batch,
        count,
        served,
    } = ask(&a, MergeRequest::FetchItems { keys: keys.clone() })
    else {
        panic!()
    };
    assert!(
        served >= 1 && (served as usize) < keys.len(),
        "served {served}"
    );
    assert_eq!(count, served);
    assert_eq!(decode_batch(&batch).unwrap().len(), count as usize);
    // Missing keys count as served and add nothing.
    let MergeResponse::Items { count, served, .. } = ask(
        &a,
        MergeRequest::FetchItems {
            keys: vec![ByteBuf::from(b"nope".to_vec()), ByteBuf::new()],
        },
    ) else {
        panic!()
    };
    assert_eq!((count, served), (0, 2));
}

#[test]
fn merge_bad_requests_get_errors_not_panics() {
    let a = Kit::new_node(1);
    for resp in [
        decode_response(&handle_body(&a.exec, b"garbage")).unwrap(),
        decode_response(&handle_body(&a.exec, b"DKM1\xc1")).unwrap(),
        ask(
            &a,
            MergeRequest::ApplyItems {
                batch: b"not a batch".to_vec(),
            },
        ),
        ask(
            &a,
            MergeRequest::ApplyItems {
                batch: b"DKB1\x92\x01".to_vec(),
            },
        ),
        ask(
            &a,
            MergeRequest::ListVersions {
                lo: 5,
                hi: 1,
                cursor: None,
                limit: 1,
            },
        ),
        ask(
            &a,
            MergeRequest::ListVersions {
                lo: 0,
                hi: 9,
                cursor: Some(vec![7]),
                limit: 1,
            },
        ),
        ask(
            &a,
            MergeRequest::Digest {
                ranges: vec![ALL; mp::DIGEST_RANGES_MAX + 1],
            },
        ),
        ask(
            &a,
            MergeRequest::ApplyItems {
                batch: encode_batch(&[WireRecord::default()]),
            },
        ),
    ] {
        match resp {
            MergeResponse::Error { code, message } => {
                assert_eq!(code, MergeError::BadRequest(String::new()).code());
                assert!(!message.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        MergeError::BadRequest(String::new()).code(),
        3,
        "E_BAD_REQUEST"
    );
}

#[test]
fn merge_purge_drops_only_old_enough_tombstones() {
    let a = Kit::new_node(1);
    set(&a, "x", "1");
    set(&a, "y", "1");
    let dx = a.exec(Request::Delete {
        key: b"x".to_vec(),
        cas: None,
    });
    let cut = dx.replicate[0].version;
    a.run(Request::Delete {
        key: b"y".to_vec(),
        cas: None,
    });
    let resp = ask(
        &a,
        MergeRequest::PurgeTombstones {
            lo: 0,
            hi: u64::MAX,
            max_version: to_item_version(cut),
        },
    );
    assert_eq!(resp, MergeResponse::Purged { purged: 1 });
    assert!(a.store().get_raw(b"x").unwrap().is_none());
    assert!(a.store().get_raw(b"y").unwrap().unwrap().tombstone);
    let old = ItemVersion {
        physical_ms: 5,
        logical: 0,
        node: 0,
    };
    let resp = ask(
        &a,
        MergeRequest::PurgeTombstones {
            lo: 0,
            hi: u64::MAX,
            max_version: old,
        },
    );
    assert_eq!(resp, MergeResponse::Purged { purged: 0 });
}

#[test]
fn merge_drop_range_deletes_only_the_range_and_leaves_no_tombstone() {
    let a = Kit::new_node(1);
    let keys: Vec<String> = (0..200).map(|i| format!("drop{i}")).collect();
    for k in &keys {
        set(&a, k, "value");
    }
    a.run(Request::Delete {
        key: keys[0].as_bytes().to_vec(),
        cas: None,
    });
    // The lower half of the hash space.
    let (lo, hi) = (0u64, u64::MAX / 2);
    let inside: Vec<&String> = keys
        .iter()
        .filter(|k| (lo..=hi).contains(&k2hash::key_hash(k.as_bytes())))
        .collect();
    assert!(
        inside.len() > 50 && inside.len() < 150,
        "about half the keys lie in the range"
    );
    let before = a.store().stats();
    let resp = ask(&a, MergeRequest::DropRange { lo, hi });
    let MergeResponse::Dropped { dropped, bytes } = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(dropped, inside.len() as u64, "every record of the range");
    assert!(bytes >= dropped * "value".len() as u64 - "value".len() as u64);
    for k in &keys {
        let held = a.store().get_raw(k.as_bytes()).unwrap();
        if inside.contains(&k) {
            assert!(held.is_none(), "{k} dropped outright, no tombstone left");
        } else {
            assert!(held.is_some(), "{k} outside the range is kept");
        }
    }
    let after = a.store().stats();
    assert_eq!(
        after.items + after.tombstones + dropped,
        before.items + before.tombstones
    );
    let again = ask(&a, MergeRequest::DropRange { lo, hi });
    assert_eq!(
        again,
        MergeResponse::Dropped {
            dropped: 0,
            bytes: 0
        }
    );
    assert!(matches!(
        ask(&a, MergeRequest::DropRange { lo: 9, hi: 3 }),
        MergeResponse::Error { .. }
    ));
}

#[test]
fn merge_apply_moves_the_clock() {
    let a = Kit::new_node(1);
    let b = Kit::new_node(2);
    b.clock.advance_ms(3_600_000); // B's clock runs an hour ahead
    let ex = set(&b, "k", "from-b");
    let batch = encode_batch(&ex.replicate);
    let MergeResponse::Applied { applied, bytes, .. } = ask(&a, MergeRequest::ApplyItems { batch })
    else {
        panic!()
    };
    assert_eq!((applied, bytes), (1, 1 + 6));
    let Response::Stored { version } = set(&a, "k", "from-a").response else {
        panic!()
    };
    assert!(
        version > ex.replicate[0].version,
        "A's next write wins despite its slow clock"
    );
}

proptest! {
    #[test]
    fn merge_version_conversion_keeps_order(x in any::<u64>(), y in any::<u64>()) {
        let (vx, vy) = (to_item_version(x), to_item_version(y));
        prop_assert_eq!(x.cmp(&y), vx.cmp(&vy));
        prop_assert_eq!(from_item_version(vx), Some(x));
    }

    #[test]
    fn merge_from_item_version_rounds_down(ms in any::<u64>(), logical in any::<u32>(), node in any::<u32>()) {
        let v = ItemVersion { physical_ms: ms, logical, node };
        match from_item_version(v) {
            Some(p) => prop_assert!(to_item_version(p) <= v),
            None => prop_assert!(ms < dkc_client::proto::version::EPOCH_UNIX_MS),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Set {
        on_b: bool,
        key: u8,
        replicate: bool,
    },
    Delete {
        on_b: bool,
        key: u8,
        replicate: bool,
    },
    Tick {
        on_b: bool,
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0u8..40, any::<bool>())
            .prop_map(|(on_b, key, replicate)| Op::Set { on_b, key, replicate }),
        2 => (any::<bool>(), 0u8..40, any::<bool>())
            .prop_map(|(on_b, key, replicate)| Op::Delete { on_b, key, replicate }),
        1 => (any::<bool>(), 0u16..2000).prop_map(|(on_b, ms)| Op::Tick { on_b, ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Random writes on two owners with clocks drifting apart and replication messages lost at
    /// random: one reconcile pass leaves both with the same records, and each key holds its
    /// newest write (last writer wins), copying nothing that was already equal.
    #[test]
    fn merge_random_divergence_converges_to_the_newest_writes(ops in proptest::collection::vec(op(), 1..120)) {
        let a = Kit::new_node(1);
        let b = Kit::new_node(2);
        let mut newest: BTreeMap<Vec<u8>, WireRecord> = BTreeMap::new();
        for (i, op) in ops.into_iter().enumerate() {
            let (exec, other, replicate) = match op {
                Op::Tick { on_b, ms } => {
                    if on_b { b.clock.advance_ms(ms.into()) } else { a.clock.advance_ms(ms.into()) }
                    continue;
                }
                Op::Set { on_b, key, replicate } => {
                    let (me, other) = if on_b { (&b, &a) } else { (&a, &b) };
                    (set(me, &format!("k{key}"), &format!("v{i}")), other, replicate)
                }
                Op::Delete { on_b, key, replicate } => {
                    let (me, other) = if on_b { (&b, &a) } else { (&a, &b) };
                    (me.exec(Request::Delete { key: format!("k{key}").into_bytes(), cas: None }), other, replicate)
                }
            };
            for rec in &exec.replicate {
                let e = newest.entry(rec.key.clone()).or_insert_with(|| rec.clone());
                if rec.version > e.version {
                    *e = rec.clone();
                }
            }
            if replicate {
                replicate_all(&exec, &[other]);
            }
        }
        // What differs before the merge is exactly what must be copied.
        let (before_a, before_b) = (a.dump_raw(), b.dump_raw());
        let map = |v: &[WireRecord]| v.iter().map(|r| (r.key.clone(), r.clone())).collect::<BTreeMap<_, _>>();
        let (ma, mb) = (map(&before_a), map(&before_b));
        let keys: std::collections::BTreeSet<_> = ma.keys().chain(mb.keys()).cloned().collect();
        let differing = keys.iter().filter(|k| ma.get(*k) != mb.get(*k)).count() as u64;
        let d = reconcile(&a, &b, ALL);
        prop_assert_eq!(d.applied, differing);
        prop_assert_eq!(d.skipped, 0);
        let after = a.dump_raw();
        prop_assert_eq!(&after, &b.dump_raw());
        // Every key ever written holds its newest write (or tombstone) on both owners.
        let want: Vec<WireRecord> = newest.into_values().collect();
        prop_assert_eq!(after, want);
    }
}
