//! A file whose creation was interrupted (the writer killed between growing the file and
//! writing the header's magic) holds nothing that was ever acknowledged: the next opener with
//! `create(true)` must start it over, and openers without it get a clear error. A file that
//! has been opened by a writer is never recreated, however damaged its header is.
//! (FORMAT.md §1; `kill9_*` in crash_kill.rs hit the same states at random moments.)

use std::os::unix::fs::FileExt;
use std::path::Path;

use k2hash::format::{HDR_DIRTY, HDR_END, HDR_MAGIC, MAGIC};
use k2hash::limits::FILE_GROW_BYTES_MIN;
use k2hash::{Error, K2Hash, Meta, OpenOptions};

/// Creators racing for one path in `concurrent_creators_one_wins`.
const CREATORS: usize = 4;
/// Rounds of that race.
const CREATOR_ROUNDS: usize = 8;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Full,
    Index,
}

const KINDS: [Kind; 2] = [Kind::Full, Kind::Index];

fn opts(kind: Kind, path: &Path) -> OpenOptions {
    match kind {
        Kind::Full => OpenOptions::full_map(path),
        Kind::Index => OpenOptions::index_map(path),
    }
    .background(false)
}

fn meta(version: u64) -> Meta {
    Meta {
        flags: 0,
        expire_at: 0,
        version,
    }
}

/// Overwrites `len` bytes at `off` of the file at `path` with zeros.
fn zero_bytes(path: &Path, off: u64, len: usize) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for damage");
    f.write_all_at(&vec![0u8; len], off).expect("zero bytes");
}

/// Checks what every kind of opener says about an unfinished file at `path`, then that
/// `create(true)` starts it over as a working, empty store that persists.
fn assert_unfinished_is_recreated(kind: Kind, path: &Path, what: &str) {
    for (name, o) in [
        ("without create", opts(kind, path)),
        ("read-only", opts(kind, path).read_only(true)),
    ] {
        match o.open() {
            Err(Error::Corrupted { what: w, .. }) => assert!(
                w.contains("create(true)"),
                "{what}, {kind:?} {name}: error does not say how to fix it: {w}"
            ),
            other => panic!("{what}, {kind:?} {name}: expected Corrupted, got {other:?}"),
        }
    }
    assert!(
        k2hash::verify_path(path).is_err(),
        "{what}: verify_path accepted an unfinished file"
    );
    // Recreated with a geometry different from any earlier one, to prove it is new.
    let store = opts(kind, path)
        .create(true)
        .shard_bits(3)
        .open()
        .unwrap_or_else(|e| panic!("{what}, {kind:?}: create(true) failed: {e}"));
    let st = store.stats();
    assert_eq!(
        (st.shards, st.items),
        (8, 0),
        "{what}, {kind:?}: not a fresh store"
    );
    store.set(b"after", b"recreated", meta(1)).expect("set");
    store.close().expect("close");
    let store = opts(kind, path).open().expect("reopen without create");
    let r = store.get(b"after").expect("get").expect("key kept");
    assert_eq!(r.value, b"recreated");
    assert_eq!(store.stats().shards, 8);
    let rep = store.verify().expect("verify");
    assert!(rep.problems.is_empty(), "{what}: {:?}", rep.problems);
}

#[test]
fn zero_filled_file_is_recreated() {
    for kind in KINDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("zero.k2h");
        // What a kill right after the first growth leaves: the layout size, all zeros.
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(FILE_GROW_BYTES_MIN))
            .expect("make zero file");
        assert_unfinished_is_recreated(kind, &path, "zero-filled file");
        // And a short all-zero file (growth interrupted early).
        let short = dir.path().join("short.k2h");
        std::fs::write(&short, [0u8; 40]).expect("short file");
        assert_unfinished_is_recreated(kind, &short, "short zero file");
    }
}

#[test]
fn half_written_header_is_recreated() {
    for kind in KINDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("half.k2h");
        // A complete layout (directory and tables) from a real creation...
        let s = opts(kind, &path)
            .create(true)
            .shard_bits(2)
            .open()
            .expect("create");
        s.close().expect("close");
        let full = std::fs::read(&path).expect("read file");
        // ...then the header as a kill leaves it before the magic store: every prefix of the
        // immutable fields, no magic, and none of what the first writable open sets.
        for end in [HDR_MAGIC + 8, 20, 40, HDR_DIRTY] {
            std::fs::write(&path, &full).expect("restore");
            zero_bytes(&path, HDR_MAGIC as u64, 8);
            zero_bytes(&path, end as u64, HDR_END - end);
            assert_unfinished_is_recreated(kind, &path, &format!("header fields to {end}"));
        }
    }
}

#[test]
fn opened_file_with_damaged_magic_is_refused_not_recreated() {
    for kind in KINDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.k2h");
        let s = opts(kind, &path).create(true).open().expect("create");
        for i in 0..100u64 {
            s.set(format!("k{i}").as_bytes(), b"v", meta(i + 1))
                .expect("set");
        }
        s.close().expect("close");
        let len = std::fs::metadata(&path).expect("stat").len();
        zero_bytes(&path, HDR_MAGIC as u64, 8);
        match opts(kind, &path).create(true).open() {
            Err(Error::Corrupted { what, offset, .. }) => {
                assert!(what.contains("magic"), "{kind:?}: {what}");
                assert_eq!(offset, 0);
            }
            other => panic!("{kind:?}: a used file with a zeroed magic was opened: {other:?}"),
        }
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), len);
        // Nothing was touched: putting the magic back gives every record back.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.write_all_at(&MAGIC, HDR_MAGIC as u64).expect("magic");
        let s: K2Hash = opts(kind, &path).open().expect("reopen repaired");
        assert_eq!(s.stats().items, 100);
    }
}

#[test]
fn concurrent_creators_one_wins() {
    for round in 0..CREATOR_ROUNDS {
        for kind in KINDS {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("race.k2h");
            let barrier = std::sync::Barrier::new(CREATORS);
            let results: Vec<_> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..CREATORS)
                    .map(|_| {
                        sc.spawn(|| {
                            barrier.wait();
                            let r = opts(kind, &path).create(true).open();
                            // Hold the winner open until every creator has tried.
                            barrier.wait();
                            r
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().expect("creator thread"))
                    .collect()
            });
            let won = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(won, 1, "round {round} {kind:?}: {won} creators won");
            for r in &results {
                if let Err(e) = r {
                    assert!(
                        matches!(e, Error::Locked { .. }),
                        "round {round} {kind:?}: loser got {e}"
                    );
                }
            }
            drop(results);
            let s = opts(kind, &path).open().expect("reopen after race");
            assert!(s.verify().expect("verify").problems.is_empty());
        }
    }
}
