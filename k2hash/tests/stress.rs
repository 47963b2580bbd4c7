//! 8 threads of mixed operations on one store, every result checked against a per-thread
//! model (keys are partitioned by thread, so each model is exact), while a ninth thread scans
//! and digests concurrently. Bounded by an operation count and a deadline.

use k2hash::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const THREADS: u64 = 8;
const OPS_PER_THREAD: u64 = 40_000;
const KEYS_PER_THREAD: u64 = 300;
const DEADLINE_SECS: u64 = 40;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic from the printed seed.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Model {
    value: Vec<u8>,
    version: u64,
    tombstone: bool,
}

fn worker(s: &K2Hash, t: u64, seed: u64, deadline: Instant) {
    let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut model: HashMap<Vec<u8>, Model> = HashMap::new();
    let mut version = 1u64;
    for op in 0..OPS_PER_THREAD {
        if op % 1024 == 0 && Instant::now() > deadline {
            break;
        }
        let k = format!("t{t}-k{}", rng.next() % KEYS_PER_THREAD).into_bytes();
        version += 1;
        let live = model.get(&k).filter(|m| !m.tombstone).cloned();
        let ctx = || {
            format!(
                "seed {seed} thread {t} op {op} key {:?}",
                String::from_utf8_lossy(&k)
            )
        };
        match rng.next() % 9 {
            0 | 1 => {
                let len = (rng.next() % 2000) as usize;
                let v = vec![(version % 251) as u8; len];
                s.set(
                    &k,
                    &v,
                    Meta {
                        flags: t as u32,
                        expire_at: 0,
                        version,
                    },
                )
                .unwrap();
                model.insert(
                    k,
                    Model {
                        value: v,
                        version,
                        tombstone: false,
                    },
                );
            }
            2 | 3 => {
                let got = s.get(&k).unwrap();
                assert_eq!(
                    got.map(|r| (r.value, r.version)),
                    live.map(|m| (m.value, m.version)),
                    "{}",
                    ctx()
                );
            }
            4 => {
                let tomb = rng.next().is_multiple_of(2);
                let existed = s.remove(&k, tomb.then_some(version)).unwrap();
                assert_eq!(existed, live.is_some(), "{}", ctx());
                if tomb {
                    model.insert(
                        k,
                        Model {
                            value: Vec::new(),
                            version,
                            tombstone: true,
                        },
                    );
                } else {
                    model.remove(&k);
                }
            }
            5 => {
                let expected = if rng.next().is_multiple_of(3) {
                    1
                } else {
                    live.as_ref().map_or(1, |m| m.version)
                };
                let out = s
                    .compare_and_set(
                        &k,
                        expected,
                        b"cas",
                        Meta {
                            version,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                let want = match &live {
                    None => CasOutcome::NotFound,
                    Some(m) if m.version != expected => CasOutcome::Mismatch { current: m.version },
                    Some(_) => CasOutcome::Stored,
                };
                assert_eq!(out, want, "{}", ctx());
                if want == CasOutcome::Stored {
                    model.insert(
                        k,
                        Model {
                            value: b"cas".to_vec(),
                            version,
                            tombstone: false,
                        },
                    );
                }
            }
            6 => {
                let r = s
                    .update(&k, |cur| {
                        let mut v = cur.map(|r| r.value.clone()).unwrap_or_default();
                        v.extend_from_slice(b"+");
                        v.truncate(3000);
                        (
                            Decision::Put {
                                value: v.clone(),
                                meta: Meta {
                                    version,
                                    ..Default::default()
                                },
                            },
                            v,
                        )
                    })
                    .unwrap();
                model.insert(
                    k,
                    Model {
                        value: r,
                        version,
                        tombstone: false,
                    },
                );
            }
            7 => {
                let (rec, inserted) = s
                    .get_or_insert(
                        &k,
                        b"goi",
                        Meta {
                            version,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                assert_eq!(inserted, live.is_none(), "{}", ctx());
                if inserted {
                    model.insert(
                        k,
                        Model {
                            value: b"goi".to_vec(),
                            version,
                            tombstone: false,
                        },
                    );
                } else {
                    assert_eq!(rec.value, live.unwrap().value, "{}", ctx());
                }
            }
            _ => {
                // Replication-style write with a stale version must lose.
                let cur = model.get(&k).cloned();
                if let Some(m) = &cur {
                    let stale = Record {
                        key: k.clone(),
                        value: b"stale".to_vec(),
                        version: m.version - rng.next() % 2,
                        ..Default::default()
                    };
                    assert!(!s.set_if_newer(&stale).unwrap(), "{}", ctx());
                }
                let raw = s.get_raw(&k).unwrap();
                assert_eq!(
                    raw.map(|r| (r.version, r.tombstone)),
                    cur.map(|m| (m.version, m.tombstone)),
                    "{}",
                    ctx()
                );
            }
        }
    }
    // Final full check of this thread's keys.
    for (k, m) in &model {
        let r = s.get_raw(k).unwrap().unwrap();
        assert_eq!(
            (&r.value, r.version, r.tombstone),
            (&m.value, m.version, m.tombstone)
        );
    }
}

fn run(opts: OpenOptions) {
    let seed = std::env::var("K2H_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("stress seed {seed} (rerun with K2H_SEED={seed})");
    let s = Arc::new(opts.shard_bits(4).table_bits(3).open().unwrap());
    let deadline = Instant::now() + Duration::from_secs(DEADLINE_SECS);
    let done = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            let mut scans = 0;
            while !done.load(Ordering::Relaxed) {
                let mut c = Cursor::start();
                let mut last: Option<(u64, Vec<u8>)> = None;
                loop {
                    let (items, next) = s.scan(&c, 97).unwrap();
                    for it in items {
                        let here = (it.hash, it.record.key.clone());
                        assert!(
                            last.as_ref().is_none_or(|l| *l < here),
                            "scan went backwards"
                        );
                        last = Some(here);
                    }
                    match next {
                        Some(n) => c = n,
                        None => break,
                    }
                }
                let _ = s.digest(12345, u64::MAX / 3).unwrap();
                scans += 1;
            }
            scans
        })
    };
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let s = &s;
            sc.spawn(move || worker(s, t, seed, deadline));
        }
    });
    done.store(true, Ordering::Relaxed);
    assert!(scanner.join().unwrap() > 0);
    let rep = s.verify().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
    // Digest over everything equals a recomputation from a full scan.
    let mut d = Digest::default();
    let mut c = Cursor::start();
    loop {
        let (items, next) = s.scan(&c, 500).unwrap();
        for it in &items {
            d.add(&it.record.key, it.record.version);
        }
        match next {
            Some(n) => c = n,
            None => break,
        }
    }
    assert_eq!(s.digest(0, u64::MAX).unwrap(), d);
}

#[test]
fn stress_memory() {
    run(OpenOptions::memory().background(false));
}

#[test]
fn stress_full_map() {
    let d = tempfile::tempdir().unwrap();
    run(OpenOptions::full_map(d.path().join("s")).create(true));
}

#[test]
fn stress_index_map() {
    let d = tempfile::tempdir().unwrap();
    run(OpenOptions::index_map(d.path().join("s")).create(true));
}

#[test]
fn stress_full_map_sync_group_commit() {
    let d = tempfile::tempdir().unwrap();
    run(OpenOptions::full_map(d.path().join("s"))
        .create(true)
        .sync(true));
}
