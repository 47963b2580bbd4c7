//! Property test: random operation sequences (with reopen in between for file modes) against
//! a HashMap model of raw records; after every step the store must agree with the model, and
//! digests and counts must match a recomputation.

use k2hash::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Op {
    Set(u8, Vec<u8>, u32),
    SetExpiring(u8, u64),
    RemoveTomb(u8),
    RemoveHard(u8),
    Cas(u8, bool),
    SetIfNewer(u8, i8, bool),
    AddSubkey(u8, u8),
    RemoveSubkey(u8, u8),
    Purge(u8),
    Advance(u64),
    Reclaim,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, prop::collection::vec(any::<u8>(), 0..300), any::<u32>()).prop_map(|(k, v, f)| Op::Set(k, v, f)),
        1 => (0u8..24, 1u64..5).prop_map(|(k, t)| Op::SetExpiring(k, t)),
        1 => (0u8..24).prop_map(Op::RemoveTomb),
        1 => (0u8..24).prop_map(Op::RemoveHard),
        1 => (0u8..24, any::<bool>()).prop_map(|(k, b)| Op::Cas(k, b)),
        1 => (0u8..24, -2i8..3, any::<bool>()).prop_map(|(k, d, t)| Op::SetIfNewer(k, d, t)),
        1 => (0u8..24, 0u8..24).prop_map(|(a, b)| Op::AddSubkey(a, b)),
        1 => (0u8..24, 0u8..24).prop_map(|(a, b)| Op::RemoveSubkey(a, b)),
        1 => (0u8..24).prop_map(Op::Purge),
        1 => (0u64..4).prop_map(Op::Advance),
        1 => Just(Op::Reclaim),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

struct World {
    model: HashMap<Vec<u8>, Record>,
    clock: Arc<ManualClock>,
    version: u64,
}

impl World {
    fn live(&self, k: &[u8]) -> Option<&Record> {
        let now = self.clock.now_unix_secs();
        self.model.get(k).filter(|r| r.is_live(now))
    }
}

fn apply(s: &K2Hash, w: &mut World, op: &Op) {
    w.version += 1;
    let v = w.version;
    let now = w.clock.now_unix_secs();
    match op {
        Op::Set(k, val, f) => {
            let k = key(*k);
            s.set(
                &k,
                val,
                Meta {
                    flags: *f,
                    expire_at: 0,
                    version: v,
                },
            )
            .unwrap();
            let subkeys = w.live(&k).map(|r| r.subkeys.clone()).unwrap_or_default();
            w.model.insert(
                k.clone(),
                Record {
                    key: k,
                    value: val.clone(),
                    flags: *f,
                    expire_at: 0,
                    version: v,
                    tombstone: false,
                    subkeys,
                },
            );
        }
        Op::SetExpiring(k, t) => {
            let k = key(*k);
            s.set(
                &k,
                b"exp",
                Meta {
                    flags: 0,
                    expire_at: now + t,
                    version: v,
                },
            )
            .unwrap();
            let subkeys = w.live(&k).map(|r| r.subkeys.clone()).unwrap_or_default();
            w.model.insert(
                k.clone(),
                Record {
                    key: k,
                    value: b"exp".to_vec(),
                    flags: 0,
                    expire_at: now + t,
                    version: v,
                    tombstone: false,
                    subkeys,
                },
            );
        }
        Op::RemoveTomb(k) => {
            let k = key(*k);
            assert_eq!(s.remove(&k, Some(v)).unwrap(), w.live(&k).is_some());
            w.model.insert(
                k.clone(),
                Record {
                    key: k,
                    version: v,
                    tombstone: true,
                    ..Default::default()
                },
            );
        }
        Op::RemoveHard(k) => {
            let k = key(*k);
            assert_eq!(s.remove(&k, None).unwrap(), w.live(&k).is_some());
            w.model.remove(&k);
        }
        Op::Cas(k, right) => {
            let k = key(*k);
            let cur = w.live(&k).map(|r| r.version);
            let expected = if *right {
                cur.unwrap_or(0)
            } else {
                cur.unwrap_or(0) + 1000
            };
            let out = s
                .compare_and_set(
                    &k,
                    expected,
                    b"cas",
                    Meta {
                        flags: 1,
                        expire_at: 0,
                        version: v,
                    },
                )
                .unwrap();
            match cur {
                None => assert_eq!(out, CasOutcome::NotFound),
                Some(c) if c != expected => assert_eq!(out, CasOutcome::Mismatch { current: c }),
                Some(_) => {
                    assert_eq!(out, CasOutcome::Stored);
                    let r = w.model.get_mut(&k).unwrap();
                    r.value = b"cas".to_vec();
                    r.flags = 1;
                    r.expire_at = 0;
                    r.version = v;
                }
            }
        }
        Op::SetIfNewer(k, delta, tomb) => {
            let k = key(*k);
            let base = w.model.get(&k).map_or(0, |r| r.version);
            let ver = (base as i64 + *delta as i64).max(0) as u64;
            let rec = Record {
                key: k.clone(),
                value: if *tomb { vec![] } else { b"sin".to_vec() },
                version: ver,
                tombstone: *tomb,
                ..Default::default()
            };
            let should = w.model.get(&k).is_none_or(|r| ver > r.version);
            assert_eq!(s.set_if_newer(&rec).unwrap(), should);
            if should {
                w.model.insert(k, rec);
            }
        }
        Op::AddSubkey(p, c) => {
            let (p, c) = (key(*p), key(*c));
            let ok = s.add_subkey(&p, &c).unwrap();
            assert_eq!(ok, w.live(&p).is_some());
            if ok {
                let r = w.model.get_mut(&p).unwrap();
                if !r.subkeys.contains(&c) {
                    r.subkeys.push(c);
                }
            }
        }
        Op::RemoveSubkey(p, c) => {
            let (p, c) = (key(*p), key(*c));
            let listed = w.live(&p).is_some_and(|r| r.subkeys.contains(&c));
            assert_eq!(s.remove_subkey(&p, &c).unwrap(), listed);
            if listed {
                w.model.get_mut(&p).unwrap().subkeys.retain(|x| *x != c);
            }
        }
        Op::Purge(k) => {
            let h = key_hash(&key(*k));
            let maxv = v / 2;
            let want: Vec<Vec<u8>> = w
                .model
                .values()
                .filter(|r| r.tombstone && r.version <= maxv && key_hash(&r.key) <= h)
                .map(|r| r.key.clone())
                .collect();
            assert_eq!(s.purge_tombstones(0, h, maxv).unwrap(), want.len() as u64);
            for k in want {
                w.model.remove(&k);
            }
        }
        Op::Advance(t) => w.clock.advance(*t),
        Op::Reclaim => {
            let want: Vec<Vec<u8>> = w
                .model
                .values()
                .filter(|r| !r.tombstone && r.is_expired(now))
                .map(|r| r.key.clone())
                .collect();
            assert_eq!(s.reclaim_expired().unwrap(), want.len() as u64);
            for k in want {
                w.model.remove(&k);
            }
        }
        Op::Reopen => {}
    }
}

fn check(s: &K2Hash, w: &World) {
    for k in 0..24u8 {
        let k = key(k);
        assert_eq!(
            s.get_raw(&k).unwrap().as_ref(),
            w.model.get(&k),
            "raw {k:?}"
        );
        assert_eq!(s.get(&k).unwrap().as_ref(), w.live(&k), "live {k:?}");
    }
    let mut d = Digest::default();
    for r in w.model.values() {
        d.add(&r.key, r.version);
    }
    assert_eq!(s.digest(0, u64::MAX).unwrap(), d);
    let st = s.stats();
    assert_eq!(st.items + st.tombstones, w.model.len() as u64);
    let (items, next) = s.scan(&Cursor::start(), 100).unwrap();
    assert!(next.is_none());
    assert_eq!(items.len(), w.model.len());
}

fn run(mode: Mode, ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.k2h");
    let clock = Arc::new(ManualClock::new(1000));
    let opts = match mode {
        Mode::Memory => OpenOptions::memory(),
        Mode::FullMap => OpenOptions::full_map(&path).create(true),
        Mode::IndexMap => OpenOptions::index_map(&path).create(true),
    }
    .shard_bits(1)
    .table_bits(3)
    .background(false)
    .file_size_max(1 << 26)
    .clock(clock.clone());
    let mut s = opts.open().unwrap();
    let mut w = World {
        model: HashMap::new(),
        clock,
        version: 0,
    };
    for op in ops {
        if let Op::Reopen = op {
            if mode != Mode::Memory {
                s.close().unwrap();
                s = opts.open().unwrap();
            }
        }
        apply(&s, &mut w, op);
        check(&s, &w);
    }
    assert!(s.verify().unwrap().is_clean());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(debug_assertions) { 20 } else { 64 }, ..ProptestConfig::default() })]

    #[test]
    fn model_memory(ops in prop::collection::vec(op(), 1..120)) {
        run(Mode::Memory, &ops);
    }

    #[test]
    fn model_full_map(ops in prop::collection::vec(op(), 1..120)) {
        run(Mode::FullMap, &ops);
    }

    #[test]
    fn model_index_map(ops in prop::collection::vec(op(), 1..120)) {
        run(Mode::IndexMap, &ops);
    }
}
