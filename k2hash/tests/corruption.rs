//! Bad files: truncation, wrong magic, flipped bytes anywhere (proptest), index slots and
//! directory entries pointing outside the file. Open, verify and reads must return a typed
//! `Error::Corrupted` (or a correct answer) — never panic, never a wrong value.

use k2hash::format::*;
use k2hash::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn build(dir: &Path) -> (PathBuf, HashMap<Vec<u8>, Vec<u8>>) {
    let p = dir.join("good.k2h");
    let s = OpenOptions::full_map(&p)
        .create(true)
        .shard_bits(2)
        .table_bits(3)
        .background(false)
        .file_size_max(1 << 28)
        .open()
        .unwrap();
    let mut model = HashMap::new();
    for i in 0..120u32 {
        let k = format!("key{i}").into_bytes();
        let v = vec![(i % 256) as u8; (i * 13 % 700) as usize];
        s.set(
            &k,
            &v,
            Meta {
                flags: i,
                expire_at: 0,
                version: i as u64 + 1,
            },
        )
        .unwrap();
        model.insert(k, v);
    }
    s.set(b"parent", b"p", Meta::default()).unwrap();
    s.add_subkey(b"parent", b"key1").unwrap();
    model.insert(b"parent".to_vec(), b"p".to_vec());
    s.close().unwrap();
    (p, model)
}

fn is_corrupted<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(
        r,
        Err(Error::Corrupted { .. }) | Err(Error::UnsupportedVersion { .. })
    )
}

/// Opens a damaged file and checks that every answer is either right or a typed error.
fn check_damaged(p: &Path, model: &HashMap<Vec<u8>, Vec<u8>>) {
    check_damaged_in(p, model, false);
    // The same file through pread/pwrite (index-map mode) must behave the same way.
    check_damaged_in(p, model, true);
}

fn check_damaged_in(p: &Path, model: &HashMap<Vec<u8>, Vec<u8>>, index_map: bool) {
    let rep = verify_path(p);
    let opts = if index_map {
        OpenOptions::index_map(p)
    } else {
        OpenOptions::full_map(p)
    };
    let opened = opts.background(false).open();
    match opened {
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::Corrupted { .. } | Error::UnsupportedVersion { .. }
                ),
                "unexpected error {e}"
            );
            if let Err(e) = rep {
                assert!(
                    matches!(
                        e,
                        Error::Corrupted { .. } | Error::UnsupportedVersion { .. }
                    ),
                    "verify: {e}"
                );
            }
        }
        Ok(s) => {
            for (k, v) in model {
                match s.get(k) {
                    Ok(Some(r)) => assert_eq!(&r.value, v, "silent wrong value for {k:?}"),
                    Ok(None) => panic!("key {k:?} silently missing"),
                    Err(e) => assert!(matches!(e, Error::Corrupted { .. }), "{e}"),
                }
            }
            let _ = s.verify();
            let _ = s.scan(&Cursor::start(), 1000);
            let _ = s.digest(0, u64::MAX);
            // Writes after a damaged open must not panic either.
            let _ = s.set(b"new", b"value", Meta::default());
        }
    }
}

#[test]
fn truncated_files_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (p, model) = build(d.path());
    let full = std::fs::read(&p).unwrap();
    // The last record ends well before the file end (growth step); find a cut that loses data.
    let used_end = {
        let s = OpenOptions::full_map(&p).read_only(true).open().unwrap();
        let st = s.stats();
        st.file_size - st.free_bytes
    };
    for cut in [
        0u64,
        1,
        7,
        63,
        100,
        4095,
        4096,
        5000,
        8191,
        used_end / 2,
        used_end - 1,
    ] {
        let q = d.path().join(format!("cut{cut}"));
        std::fs::write(&q, &full[..cut.min(full.len() as u64) as usize]).unwrap();
        let r = OpenOptions::full_map(&q).background(false).open();
        assert!(is_corrupted(&r), "cut at {cut}: {:?}", r.as_ref().err());
        check_damaged(&q, &model);
    }
}

#[test]
fn wrong_magic_and_version_are_named() {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = build(d.path());
    let mut b = std::fs::read(&p).unwrap();
    b[0] = b'X';
    std::fs::write(&p, &b).unwrap();
    match OpenOptions::full_map(&p).open() {
        Err(Error::Corrupted { what, offset, path }) => {
            assert!(what.contains("magic"), "{what}");
            assert_eq!(offset, 0);
            assert_eq!(path.as_deref(), Some(p.as_path()));
        }
        other => panic!("{:?}", other.err()),
    }
    b[0] = MAGIC[0];
    b[HDR_VERSION] = 9;
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(
        OpenOptions::full_map(&p).open(),
        Err(Error::UnsupportedVersion { found: 9, .. })
    ));
    // A text file is not a store.
    std::fs::write(&p, b"hello world\n").unwrap();
    assert!(is_corrupted(&OpenOptions::full_map(&p).open()));
    assert!(is_corrupted(&verify_path(&p)));
}

fn first_used_slot(b: &[u8]) -> (usize, u64) {
    let sb = u32::from_le_bytes(b[HDR_SHARD_BITS..HDR_SHARD_BITS + 4].try_into().unwrap());
    for i in 0..(1usize << sb) {
        let e = u64::from_le_bytes(b[HEADER_BYTES as usize + 8 * i..][..8].try_into().unwrap());
        let (off, bits) = dir_entry_parts(e).unwrap();
        for pos in 0..(1usize << bits) {
            let so = off as usize + 8 * pos;
            let s = u64::from_le_bytes(b[so..so + 8].try_into().unwrap());
            if s > SLOT_DELETED {
                return (so, s);
            }
        }
    }
    panic!("no used slot")
}

#[test]
fn pointers_outside_the_file() {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = build(d.path());
    let orig = std::fs::read(&p).unwrap();
    let (so, s) = first_used_slot(&orig);
    let (_, tag) = slot_parts(s);
    for bad in [
        orig.len() as u64 + 4096,
        SLOT_OFFSET_MASK & !15,
        16,
        HEADER_BYTES,
        orig.len() as u64 - 16,
    ] {
        let mut b = orig.clone();
        b[so..so + 8].copy_from_slice(&((tag << SLOT_OFFSET_BITS) | bad).to_le_bytes());
        std::fs::write(&p, &b).unwrap();
        match OpenOptions::full_map(&p).open() {
            Err(Error::Corrupted { offset, what, .. }) => assert!(offset > 0, "{what}"),
            other => panic!("slot -> {bad}: {:?}", other.err()),
        }
        let rep = verify_path(&p).unwrap();
        assert!(!rep.is_clean());
        assert!(
            rep.problems.iter().any(|x| x.offset == so as u64),
            "{rep:?}"
        );
    }
    // A directory entry pointing past the end.
    let mut b = orig.clone();
    let e = dir_entry(orig.len() as u64 * 2, 3);
    b[HEADER_BYTES as usize..HEADER_BYTES as usize + 8].copy_from_slice(&e.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    match OpenOptions::full_map(&p).open() {
        Err(Error::Corrupted { offset, .. }) => assert_eq!(offset, HEADER_BYTES),
        other => panic!("{:?}", other.err()),
    }
    // Two slots pointing at the same block.
    let mut b = orig.clone();
    let (so2, _) = {
        let mut c = orig.clone();
        c[so..so + 8].copy_from_slice(&0u64.to_le_bytes());
        first_used_slot(&c)
    };
    let dup = u64::from_le_bytes(orig[so..so + 8].try_into().unwrap());
    b[so2..so2 + 8].copy_from_slice(&dup.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    assert!(is_corrupted(&OpenOptions::full_map(&p).open()));
}

#[test]
fn flipped_value_byte_fails_checksum_on_read() {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = build(d.path());
    let mut b = std::fs::read(&p).unwrap();
    let (_, s) = first_used_slot(&b);
    let (off, _) = slot_parts(s);
    let off = off as usize;
    let klen = u16::from_le_bytes(b[off + REC_KEY_LEN..][..2].try_into().unwrap()) as usize;
    let vlen = u32::from_le_bytes(b[off + REC_VALUE_LEN..][..4].try_into().unwrap()) as usize;
    let key = b[off + REC_HEADER_BYTES..off + REC_HEADER_BYTES + klen].to_vec();
    assert!(vlen > 0);
    b[off + REC_HEADER_BYTES + klen] ^= 0x01;
    std::fs::write(&p, &b).unwrap();
    let s = OpenOptions::full_map(&p).open().unwrap();
    match s.get(&key) {
        Err(Error::Corrupted { what, offset, .. }) => {
            assert!(what.contains("checksum"));
            assert_eq!(offset, off as u64);
        }
        other => panic!("{other:?}"),
    }
    assert!(!s.verify().unwrap().is_clean());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn random_byte_flips_never_panic_or_lie(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6)) {
        let d = tempfile::tempdir().unwrap();
        let (p, model) = build(d.path());
        let mut b = std::fs::read(&p).unwrap();
        // Concentrate on the used part of the file, where structures live.
        let used = {
            let s = OpenOptions::full_map(&p).read_only(true).open().unwrap();
            let st = s.stats();
            (st.file_size - st.free_bytes) as usize
        };
        for (i, x) in &flips {
            let at = i.index(used);
            b[at] ^= x;
        }
        std::fs::write(&p, &b).unwrap();
        check_damaged(&p, &model);
    }
}
