//! One conformance suite run over every storage mode (memory, full-map, index-map, temporary
//! file): every operation, edge cases, limits, expiry with a manual clock, cursors across
//! growth, digests against a recomputation, persistence, read-only and owner locking.

use k2hash::limits::*;
use k2hash::*;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Memory,
    FullMap,
    IndexMap,
    Temporary,
}

struct Env {
    kind: Kind,
    _dir: tempfile::TempDir,
    path: PathBuf,
    clock: Arc<ManualClock>,
}

impl Env {
    fn new(kind: Kind) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.k2h");
        Env {
            kind,
            _dir: dir,
            path,
            clock: Arc::new(ManualClock::new(1_000_000)),
        }
    }

    /// Small geometry so tables grow often during tests.
    fn opts(&self) -> OpenOptions {
        let o = match self.kind {
            Kind::Memory => OpenOptions::memory(),
            Kind::FullMap => OpenOptions::full_map(&self.path).create(true),
            Kind::IndexMap => OpenOptions::index_map(&self.path).create(true),
            Kind::Temporary => OpenOptions::full_map(&self.path).temporary(true),
        };
        o.shard_bits(3)
            .table_bits(3)
            .background(false)
            .file_size_max(1 << 30)
            .clock(self.clock.clone())
    }

    fn open(&self) -> K2Hash {
        self.opts().open().unwrap()
    }

    fn persistent(&self) -> bool {
        matches!(self.kind, Kind::FullMap | Kind::IndexMap)
    }
}

fn m(version: u64) -> Meta {
    Meta {
        flags: 0,
        expire_at: 0,
        version,
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn basic_ops(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    assert_eq!(s.get(b"a").unwrap(), None);
    s.set(
        b"a",
        b"one",
        Meta {
            flags: 7,
            expire_at: 0,
            version: 1,
        },
    )
    .unwrap();
    let r = s.get(b"a").unwrap().unwrap();
    assert_eq!(
        (
            r.key.as_slice(),
            r.value.as_slice(),
            r.flags,
            r.version,
            r.tombstone
        ),
        (&b"a"[..], &b"one"[..], 7, 1, false)
    );
    // Growing and shrinking overwrites.
    let big = vec![0xAB; 100_000];
    s.set(b"a", &big, m(2)).unwrap();
    assert_eq!(s.get(b"a").unwrap().unwrap().value, big);
    s.set(b"a", b"", m(3)).unwrap();
    let r = s.get(b"a").unwrap().unwrap();
    assert!(r.value.is_empty());
    assert_eq!(r.version, 3);
    let mut buf = vec![1, 2, 3];
    assert_eq!(s.get_into(b"a", &mut buf).unwrap(), Some(m(3)));
    assert!(buf.is_empty());
    assert!(s.contains(b"a").unwrap());
    assert_eq!(s.get_with(b"a", |r| r.version).unwrap(), Some(3));
    let st = s.stats();
    assert_eq!((st.items, st.tombstones), (1, 0));
    assert!(s.verify().unwrap().is_clean());
}

fn limits_refused(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    assert!(matches!(
        s.set(b"", b"v", m(1)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(s.get(b""), Err(Error::InvalidArgument(_))));
    let kmax = vec![b'k'; KEY_SIZE_MAX];
    s.set(&kmax, b"v", m(1)).unwrap();
    assert_eq!(s.get(&kmax).unwrap().unwrap().value, b"v");
    let klong = vec![b'k'; KEY_SIZE_MAX + 1];
    match s.set(&klong, b"v", m(1)) {
        Err(Error::LimitExceeded { limit, max, actual }) => {
            assert_eq!(
                (limit, max, actual),
                ("key_size_max", KEY_SIZE_MAX as u64, KEY_SIZE_MAX as u64 + 1)
            );
        }
        other => panic!("{other:?}"),
    }
    let vmax = vec![7u8; VALUE_SIZE_MAX_DEFAULT];
    s.set(b"v", &vmax, m(1)).unwrap();
    assert_eq!(
        s.get(b"v").unwrap().unwrap().value.len(),
        VALUE_SIZE_MAX_DEFAULT
    );
    let vlong = vec![7u8; VALUE_SIZE_MAX_DEFAULT + 1];
    match s.set(b"v", &vlong, m(2)) {
        Err(Error::LimitExceeded { limit, .. }) => assert_eq!(limit, "value_size_max"),
        other => panic!("{other:?}"),
    }
    // The failed write left the old value.
    assert_eq!(s.get(b"v").unwrap().unwrap().version, 1);
    // A larger configured limit is honoured.
    drop(s);
    if e.kind != Kind::Temporary || !e.path.exists() {
        let s2 = e
            .opts()
            .value_size_max(4 * VALUE_SIZE_MAX_DEFAULT)
            .open()
            .unwrap();
        s2.set(b"v", &vlong, m(3)).unwrap();
        assert_eq!(s2.get(b"v").unwrap().unwrap().value.len(), vlong.len());
    }
}

fn remove_and_tombstones(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    s.set(b"x", b"1", m(5)).unwrap();
    s.set(b"y", b"2", m(5)).unwrap();
    assert!(s.remove(b"x", Some(6)).unwrap());
    assert_eq!(s.get(b"x").unwrap(), None);
    let t = s.get_raw(b"x").unwrap().unwrap();
    assert!(t.tombstone && t.version == 6 && t.value.is_empty());
    assert!(!s.remove(b"x", Some(7)).unwrap(), "tombstone is not live");
    assert!(s.remove(b"y", None).unwrap());
    assert_eq!(s.get_raw(b"y").unwrap(), None);
    assert!(!s.remove(b"never", None).unwrap());
    // A tombstone for an absent key is recorded (replication needs it).
    s.remove(b"z", Some(3)).unwrap();
    assert!(s.get_raw(b"z").unwrap().unwrap().tombstone);
    assert_eq!(s.stats().tombstones, 2);
    // Purge by version bound.
    assert_eq!(s.purge_tombstones(0, u64::MAX, 5).unwrap(), 1);
    assert!(s.get_raw(b"z").unwrap().is_none());
    assert!(s.get_raw(b"x").unwrap().is_some());
    let hx = key_hash(b"x");
    assert_eq!(
        s.purge_tombstones(hx.wrapping_add(1).max(hx), u64::MAX, u64::MAX)
            .unwrap(),
        u64::from(hx == u64::MAX)
    );
    assert_eq!(s.purge_tombstones(hx, hx, u64::MAX).unwrap(), 1);
    assert_eq!(s.stats().tombstones, 0);
}

fn set_if_newer_rules(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    let mut r = Record {
        key: b"k".to_vec(),
        value: b"v10".to_vec(),
        version: 10,
        flags: 3,
        ..Default::default()
    };
    assert!(s.set_if_newer(&r).unwrap());
    r.version = 9;
    r.value = b"v9".to_vec();
    assert!(!s.set_if_newer(&r).unwrap());
    r.version = 10;
    assert!(!s.set_if_newer(&r).unwrap(), "equal version is not newer");
    let tomb = Record {
        key: b"k".to_vec(),
        version: 11,
        tombstone: true,
        ..Default::default()
    };
    assert!(s.set_if_newer(&tomb).unwrap());
    assert_eq!(s.get(b"k").unwrap(), None);
    r.version = 10;
    assert!(
        !s.set_if_newer(&r).unwrap(),
        "older write must not resurrect a tombstone"
    );
    let r12 = Record {
        key: b"k".to_vec(),
        value: b"new".to_vec(),
        version: 12,
        subkeys: vec![b"c1".to_vec()],
        ..Default::default()
    };
    assert!(s.set_if_newer(&r12).unwrap());
    assert_eq!(s.get(b"k").unwrap().unwrap(), r12);
}

fn cas_and_get_or_insert(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    assert_eq!(
        s.compare_and_set(b"c", 1, b"v", m(2)).unwrap(),
        CasOutcome::NotFound
    );
    let (r, ins) = s.get_or_insert(b"c", b"first", m(1)).unwrap();
    assert!(ins && r.value == b"first");
    let (r, ins) = s.get_or_insert(b"c", b"second", m(5)).unwrap();
    assert!(!ins && r.value == b"first" && r.version == 1);
    assert_eq!(
        s.compare_and_set(b"c", 9, b"v", m(2)).unwrap(),
        CasOutcome::Mismatch { current: 1 }
    );
    assert_eq!(
        s.compare_and_set(b"c", 1, b"v", m(2)).unwrap(),
        CasOutcome::Stored
    );
    assert_eq!(s.get(b"c").unwrap().unwrap().value, b"v");
    s.remove(b"c", Some(3)).unwrap();
    assert_eq!(
        s.compare_and_set(b"c", 3, b"v", m(4)).unwrap(),
        CasOutcome::NotFound
    );
}

fn update_decisions(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    let incr = |s: &K2Hash| {
        s.update(b"n", |cur| {
            let n = cur
                .map(|r| u64::from_le_bytes(r.value.as_slice().try_into().unwrap()))
                .unwrap_or(0)
                + 1;
            (
                Decision::Put {
                    value: n.to_le_bytes().to_vec(),
                    meta: m(n),
                },
                n,
            )
        })
        .unwrap()
    };
    for want in 1..=20 {
        assert_eq!(incr(&s), want);
    }
    assert_eq!(s.update(b"n", |_| (Decision::Keep, 0)).unwrap(), 0);
    assert_eq!(s.get(b"n").unwrap().unwrap().version, 20);
    s.update(b"n", |_| {
        (
            Decision::Remove {
                tombstone_version: Some(21),
            },
            (),
        )
    })
    .unwrap();
    assert!(s.get(b"n").unwrap().is_none());
    let seen = s
        .update_raw(b"n", |cur| (Decision::Keep, cur.map(|r| r.tombstone)))
        .unwrap();
    assert_eq!(seen, Some(true));
    assert!(!s
        .update(b"n", |cur| (Decision::Keep, cur.is_some()))
        .unwrap());
    let rec = Record {
        key: b"ignored".to_vec(),
        value: b"pr".to_vec(),
        version: 30,
        subkeys: vec![b"s".to_vec()],
        ..Default::default()
    };
    s.update(b"n", |_| (Decision::PutRecord(rec.clone()), ()))
        .unwrap();
    let got = s.get(b"n").unwrap().unwrap();
    assert_eq!(
        (
            got.key.as_slice(),
            got.value.as_slice(),
            got.version,
            got.subkeys.len()
        ),
        (&b"n"[..], &b"pr"[..], 30, 1)
    );
    s.update(b"n", |_| {
        (
            Decision::Remove {
                tombstone_version: None,
            },
            (),
        )
    })
    .unwrap();
    assert!(s.get_raw(b"n").unwrap().is_none());
}

fn subkeys_ops(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    assert!(!s.add_subkey(b"p", b"c1").unwrap(), "parent must exist");
    s.set(b"p", b"parent", m(1)).unwrap();
    for c in [&b"c1"[..], b"c2", b"c3"] {
        s.set(c, b"child", m(1)).unwrap();
        assert!(s.add_subkey(b"p", c).unwrap());
    }
    assert!(s.add_subkey(b"p", b"c1").unwrap(), "adding twice keeps one");
    assert_eq!(
        s.subkeys(b"p").unwrap().unwrap(),
        vec![b"c1".to_vec(), b"c2".to_vec(), b"c3".to_vec()]
    );
    // set keeps subkeys and the value changes.
    s.set(b"p", b"parent2", m(2)).unwrap();
    assert_eq!(s.subkeys(b"p").unwrap().unwrap().len(), 3);
    assert_eq!(s.get(b"p").unwrap().unwrap().value, b"parent2");
    assert!(s.remove_subkey(b"p", b"c2").unwrap());
    assert!(!s.remove_subkey(b"p", b"c2").unwrap());
    assert_eq!(
        s.subkeys(b"p").unwrap().unwrap(),
        vec![b"c1".to_vec(), b"c3".to_vec()]
    );
    assert!(s.set_subkeys(b"p", &[b"c3", b"c1", b"c3"]).unwrap());
    assert_eq!(
        s.subkeys(b"p").unwrap().unwrap(),
        vec![b"c3".to_vec(), b"c1".to_vec()]
    );
    assert!(matches!(
        s.add_subkey(b"p", b""),
        Err(Error::InvalidArgument(_))
    ));
    // Grandchild and a cycle: removal terminates and removes each once.
    s.set(b"g", b"grand", m(1)).unwrap();
    s.add_subkey(b"c1", b"g").unwrap();
    s.add_subkey(b"g", b"p").unwrap();
    assert_eq!(s.remove_with_children(b"p", None).unwrap(), 4);
    for k in [&b"p"[..], b"c1", b"c3", b"g"] {
        assert!(s.get(k).unwrap().is_none());
    }
    assert!(s.get(b"c2").unwrap().is_some(), "c2 was no longer listed");
    // Tombstone flavour.
    s.set(b"q", b"", m(1)).unwrap();
    s.set(b"q1", b"", m(1)).unwrap();
    s.add_subkey(b"q", b"q1").unwrap();
    assert_eq!(s.remove_with_children(b"q", Some(9)).unwrap(), 2);
    assert!(s.get_raw(b"q1").unwrap().unwrap().tombstone);
    // Limit on the subkey count is named.
    s.set(b"r", b"", m(1)).unwrap();
    let many: Vec<Vec<u8>> = (0..=SUBKEYS_MAX as u32)
        .map(|i| i.to_le_bytes().to_vec())
        .collect();
    let refs: Vec<&[u8]> = many.iter().map(|v| v.as_slice()).collect();
    match s.set_subkeys(b"r", &refs) {
        Err(Error::LimitExceeded { limit, .. }) => assert_eq!(limit, "subkeys_max"),
        other => panic!("{other:?}"),
    }
}

fn expiry_with_clock(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    let now = e.clock.now_unix_secs();
    s.set(
        b"short",
        b"v",
        Meta {
            expire_at: now + 10,
            ..m(1)
        },
    )
    .unwrap();
    s.set(b"forever", b"v", m(1)).unwrap();
    assert!(s.get(b"short").unwrap().is_some());
    e.clock.advance(9);
    assert!(s.get(b"short").unwrap().is_some());
    e.clock.advance(1);
    assert!(s.get(b"short").unwrap().is_none(), "expired at expire_at");
    assert!(s.get_raw(b"short").unwrap().is_some());
    assert_eq!(
        s.compare_and_set(b"short", 1, b"x", m(2)).unwrap(),
        CasOutcome::NotFound
    );
    let (_, inserted) = s.get_or_insert(b"short", b"fresh", m(3)).unwrap();
    assert!(inserted);
    s.set(
        b"short2",
        b"v",
        Meta {
            expire_at: now + 5,
            ..m(1)
        },
    )
    .unwrap();
    assert_eq!(s.stats().items, 3);
    assert_eq!(s.reclaim_expired().unwrap(), 1);
    assert!(s.get_raw(b"short2").unwrap().is_none());
    assert_eq!(s.stats().items, 2);
    assert!(s.get(b"forever").unwrap().is_some());
}

fn background_sweeper_reclaims(k: Kind) {
    let e = Env::new(k);
    let s = e.opts().background(true).open().unwrap();
    let now = e.clock.now_unix_secs();
    for i in 0..50 {
        s.set(
            &key(i),
            b"v",
            Meta {
                expire_at: now + 1,
                ..m(1)
            },
        )
        .unwrap();
    }
    e.clock.advance(2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.stats().items > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "sweeper did not reclaim: {:?}",
            s.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn scan_all(s: &K2Hash, limit: usize) -> Vec<ScanItem> {
    let mut out = Vec::new();
    let mut c = Cursor::start();
    loop {
        let (items, next) = s.scan(&c, limit).unwrap();
        out.extend(items);
        match next {
            Some(n) => c = Cursor::from_bytes(&n.to_bytes()).unwrap(),
            None => return out,
        }
    }
}

fn scan_cursor_across_growth(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    let n = 600;
    for i in 0..n {
        s.set(&key(i), &i.to_le_bytes(), m(i)).unwrap();
    }
    s.remove(&key(0), Some(99)).unwrap();
    let grows_before = s.stats().grows;
    let mut seen = Vec::new();
    let mut c = Cursor::start();
    let mut extra = n;
    loop {
        let (items, next) = s.scan(&c, 7).unwrap();
        assert!(items.len() <= 7);
        seen.extend(items.into_iter().map(|it| (it.hash, it.record.key)));
        // Concurrent inserts and deletes between pages force table growth.
        for _ in 0..20 {
            s.set(&key(extra), b"x", m(1)).unwrap();
            extra += 1;
        }
        s.remove(&key(extra - 3), None).unwrap();
        match next {
            Some(x) => c = x,
            None => break,
        }
    }
    assert!(s.stats().grows > grows_before, "test must exercise growth");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "scan order is (hash, key)");
    let set: HashSet<_> = seen.iter().map(|x| x.1.clone()).collect();
    assert_eq!(set.len(), seen.len(), "no duplicates");
    for i in 0..n {
        assert!(
            set.contains(&key(i)),
            "key {i} present throughout was missed"
        );
    }
    // Full scan after the fact equals the set of stored keys.
    let all = scan_all(&s, 1000);
    assert_eq!(all.len() as u64, s.stats().items + s.stats().tombstones);
    assert!(all.iter().any(|it| it.record.tombstone));
}

fn hash_range_and_digest(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    for i in 0..800 {
        s.set(&key(i), b"v", m(i * 3)).unwrap();
    }
    for i in (0..800).step_by(7) {
        s.remove(&key(i), Some(10_000 + i)).unwrap();
    }
    let model: BTreeMap<(u64, Vec<u8>), u64> = scan_all(&s, 333)
        .into_iter()
        .map(|it| ((it.hash, it.record.key.clone()), it.record.version))
        .collect();
    assert_eq!(model.len(), 800);
    let recompute = |lo: u64, hi: u64| {
        let mut d = Digest::default();
        for ((h, k), v) in &model {
            if *h >= lo && *h <= hi {
                d.add(k, *v);
            }
        }
        d
    };
    let mut ranges = vec![
        (0, u64::MAX),
        (0, 0),
        (u64::MAX, u64::MAX),
        (1 << 48, (2 << 48) - 1),
        (5, 3),
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..40 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let a = x;
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = x >> (x % 40);
        ranges.push((a.min(b), a.max(b)));
        let cell = a >> 48;
        ranges.push((
            cell << 48,
            ((cell + 3) << 48).wrapping_sub(1).max(cell << 48),
        ));
    }
    for (lo, hi) in ranges {
        assert_eq!(
            s.digest(lo, hi).unwrap(),
            recompute(lo, hi),
            "range {lo:#x}..={hi:#x}"
        );
        let mut got = Vec::new();
        let mut c = Cursor::start();
        loop {
            let (items, next) = s.scan_hash_range(lo, hi, &c, 50).unwrap();
            got.extend(items.into_iter().map(|it| (it.hash, it.record.key)));
            match next {
                Some(n) => c = n,
                None => break,
            }
        }
        let want: Vec<_> = model
            .keys()
            .filter(|(h, _)| *h >= lo && *h <= hi)
            .cloned()
            .collect();
        assert_eq!(got, want, "scan_hash_range {lo:#x}..={hi:#x}");
    }
    // Digests follow updates in O(1).
    let before = s.digest(0, u64::MAX).unwrap();
    s.set(&key(1), b"w", m(123_456)).unwrap();
    let after = s.digest(0, u64::MAX).unwrap();
    assert_eq!(after.count, before.count);
    assert_eq!(
        after.hash,
        before
            .hash
            .wrapping_sub(digest_term(&key(1), 3))
            .wrapping_add(digest_term(&key(1), 123_456))
    );
}

fn reopen_persistence(k: Kind) {
    let e = Env::new(k);
    if !e.persistent() {
        return;
    }
    let s = e.open();
    for i in 0..2000 {
        s.set(
            &key(i),
            &vec![i as u8; (i % 300) as usize],
            Meta {
                flags: i as u32,
                expire_at: 0,
                version: i,
            },
        )
        .unwrap();
    }
    for i in (0..2000).step_by(3) {
        s.remove(&key(i), if i % 2 == 0 { Some(i + 5000) } else { None })
            .unwrap();
    }
    s.set(b"parent", b"p", m(1)).unwrap();
    s.add_subkey(b"parent", &key(1)).unwrap();
    let digest = s.digest(0, u64::MAX).unwrap();
    let stats = s.stats();
    s.close().unwrap();
    let s = e.open();
    assert_eq!(s.digest(0, u64::MAX).unwrap(), digest);
    let st = s.stats();
    assert_eq!(
        (st.items, st.tombstones, st.live_bytes),
        (stats.items, stats.tombstones, stats.live_bytes)
    );
    for i in 0..2000 {
        let r = s.get_raw(&key(i)).unwrap();
        if i % 3 == 0 {
            assert_eq!(
                r.map(|r| r.tombstone),
                if i % 2 == 0 { Some(true) } else { None }
            );
        } else {
            let r = r.unwrap();
            assert_eq!(
                (r.value.len(), r.flags, r.version),
                ((i % 300) as usize, i as u32, i)
            );
        }
    }
    assert_eq!(s.subkeys(b"parent").unwrap().unwrap(), vec![key(1)]);
    assert!(s.verify().unwrap().is_clean());
    drop(s);
    let rep = verify_path(&e.path).unwrap();
    assert!(rep.is_clean() && rep.was_clean, "{rep:?}");
    assert_eq!(rep.records, stats.items + stats.tombstones + 1 - 1);
}

fn read_only_refuses_writes(k: Kind) {
    let e = Env::new(k);
    if !e.persistent() {
        assert!(e.opts().read_only(true).open().is_err() || e.kind == Kind::Memory);
        return;
    }
    let s = e.open();
    s.set(b"a", b"1", m(1)).unwrap();
    drop(s);
    let ro = e.opts().read_only(true).open().unwrap();
    assert_eq!(ro.get(b"a").unwrap().unwrap().value, b"1");
    assert!(matches!(ro.set(b"a", b"2", m(2)), Err(Error::ReadOnly)));
    assert!(matches!(ro.remove(b"a", None), Err(Error::ReadOnly)));
    assert!(matches!(
        ro.purge_tombstones(0, u64::MAX, u64::MAX),
        Err(Error::ReadOnly)
    ));
    // Readers share; a writer is refused while they hold it.
    let ro2 = e.opts().read_only(true).open().unwrap();
    assert!(matches!(e.opts().open(), Err(Error::Locked { pid: 0, .. })));
    drop((ro, ro2));
    e.opts().open().unwrap();
}

fn second_opener_refused(k: Kind) {
    let e = Env::new(k);
    if e.kind == Kind::Memory {
        return;
    }
    let s = e.open();
    match e.opts().open() {
        Err(Error::Locked { pid, path }) => {
            assert_eq!(pid, std::process::id());
            assert_eq!(path, e.path);
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("second opener accepted"),
    }
    drop(s);
    if e.persistent() {
        e.open();
    }
}

fn temporary_removed_on_close(k: Kind) {
    let e = Env::new(k);
    if e.kind != Kind::Temporary {
        return;
    }
    let s = e.open();
    s.set(b"a", b"1", m(1)).unwrap();
    assert!(e.path.exists());
    drop(s);
    assert!(!e.path.exists());
}

fn space_is_reused(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    let v = vec![1u8; 3000];
    for round in 0..200u64 {
        for i in 0..50 {
            s.set(
                &key(i),
                &v[..(1000 + (round * 7 + i) % 2000) as usize],
                m(round),
            )
            .unwrap();
        }
    }
    let st = s.stats();
    // 50 live values of at most ~3 KiB: the file must not hold all 10000 versions.
    assert!(st.file_size < 16 << 20, "{st:?}");
    assert!(st.free_bytes > 0);
    for i in 0..50 {
        s.remove(&key(i), None).unwrap();
    }
    assert_eq!(s.stats().used_bytes, 0);
    assert!(s.verify().unwrap().is_clean());
}

fn freed_small_blocks_serve_large_records(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    // Many small records side by side, then removed: their blocks touch each other.
    for i in 0..40_000 {
        s.set(&key(i), &[1u8; 40], m(1)).unwrap();
    }
    for i in 0..40_000 {
        s.remove(&key(i), None).unwrap();
    }
    let merged = s.coalesce_free_space();
    assert!(merged > 10_000, "merged {merged}");
    let tail = s.stats().tail_bytes;
    // 2 KiB records now fit in the merged holes: no new space is taken from the tail.
    for i in 0..150 {
        s.set(&key(10_000 + i), &[2u8; 2048], m(2)).unwrap();
    }
    assert_eq!(s.stats().tail_bytes, tail);
    for i in 0..150 {
        assert_eq!(
            s.get(&key(10_000 + i)).unwrap().unwrap().value,
            vec![2u8; 2048]
        );
    }
    assert!(s.verify().unwrap().is_clean());
}

fn sync_mode_group_commit(k: Kind) {
    let e = Env::new(k);
    let s = e.opts().sync(true).open().unwrap();
    let threads = 8u64;
    let per_thread = 40u64;
    std::thread::scope(|sc| {
        for t in 0..threads {
            let s = &s;
            sc.spawn(move || {
                for i in 0..per_thread {
                    s.set(&key(t * 1000 + i), b"durable", m(i)).unwrap();
                }
            });
        }
    });
    let st = s.stats();
    assert_eq!(st.items, threads * per_thread);
    if e.kind == Kind::Memory {
        assert_eq!(st.syncs, 0, "memory mode never syncs");
        return;
    }
    // Each write waits for two flushes (record, then index); alone that is 2 per write.
    eprintln!(
        "{:?}: {} synced writes, {} fdatasyncs",
        e.kind,
        threads * per_thread,
        st.syncs
    );
    assert!(st.syncs >= 2, "{st:?}");
    assert!(st.syncs < 2 * threads * per_thread, "no grouping: {st:?}");
    drop(s);
    if e.persistent() {
        let s = e.open();
        assert_eq!(s.stats().items, threads * per_thread);
    }
}

fn compact_copies_everything(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    for i in 0..500 {
        s.set(&key(i), &[3u8; 200], m(i)).unwrap();
    }
    for i in 0..400 {
        s.remove(&key(i), if i % 2 == 0 { Some(1000) } else { None })
            .unwrap();
    }
    let want = s.digest(0, u64::MAX).unwrap();
    let dst = e._dir.path().join("compacted.k2h");
    let mut calls = 0;
    let rep = s
        .compact_to(&dst, |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
    assert!(calls > 0);
    assert_eq!(rep.records, 300);
    let c = OpenOptions::full_map(&dst).read_only(true).open().unwrap();
    assert_eq!(c.digest(0, u64::MAX).unwrap(), want);
    drop(c);
    if e.persistent() {
        drop(s);
        let dst2 = e._dir.path().join("compacted2.k2h");
        let rep2 = compact(&e.path, &dst2, |_, _| {}).unwrap();
        assert_eq!(rep2.records, 300);
        assert!(verify_path(&dst2).unwrap().is_clean());
    }
}

fn many_keys_grow(k: Kind) {
    let e = Env::new(k);
    let s = e.open();
    let n = 20_000;
    for i in 0..n {
        s.set(&key(i), &i.to_le_bytes(), m(i)).unwrap();
    }
    for i in (0..n).step_by(2) {
        s.remove(&key(i), None).unwrap();
    }
    for i in 0..n {
        assert_eq!(s.get(&key(i)).unwrap().is_some(), i % 2 == 1, "key {i}");
    }
    let st = s.stats();
    assert_eq!(st.items, n / 2);
    assert!(st.grows > 0);
    assert!(s.verify().unwrap().is_clean());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[test] fn $name() { super::$name(super::Kind::Memory) } )* }
        mod full_map { $( #[test] fn $name() { super::$name(super::Kind::FullMap) } )* }
        mod index_map { $( #[test] fn $name() { super::$name(super::Kind::IndexMap) } )* }
        mod temporary { $( #[test] fn $name() { super::$name(super::Kind::Temporary) } )* }
    };
}

conformance!(
    basic_ops,
    limits_refused,
    remove_and_tombstones,
    set_if_newer_rules,
    cas_and_get_or_insert,
    update_decisions,
    subkeys_ops,
    expiry_with_clock,
    background_sweeper_reclaims,
    scan_cursor_across_growth,
    hash_range_and_digest,
    reopen_persistence,
    read_only_refuses_writes,
    second_opener_refused,
    temporary_removed_on_close,
    space_is_reused,
    compact_copies_everything,
    freed_small_blocks_serve_large_records,
    sync_mode_group_commit,
    many_keys_grow,
);
