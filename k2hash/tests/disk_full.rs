//! A full disk (DESIGN.md §9: resource exhaustion gets a clear error, never a crash, and loses
//! nothing stored). Each test mounts a small tmpfs, puts a ballast file and a k2hash file on it
//! and writes until the file system is full, in each file-backed mode, with many shards and
//! mixed sizes (records fill the disk) and with one shard and the smallest records (its table
//! must grow while the disk is full, and cannot). Then:
//!
//! - every write that failed returned [`Error::NoSpace`] naming the file (ENOSPC) and changed
//!   nothing; the file had grown to (nearly) all the room the disk had;
//! - every write that returned `Ok` is still readable, byte for byte, at its version;
//! - overwrites succeed or fail with `NoSpace`, leaving the old value;
//! - deletes succeed (they need no space, even with a table over its load limit), and the
//!   space they free serves new writes of any key at once;
//! - after the ballast is removed, new writes succeed again;
//! - `verify` is clean, and after a reopen the file holds exactly the model's data.
//!
//! Needs root to mount the tmpfs (CI runs as root). Without root the tests fail and say why:
//! a skipped test would hide that the full-disk path went untested.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use k2hash::{Error, K2Hash, Meta, OpenOptions};

/// Size of the tmpfs, bytes: small, so filling it takes a few thousand writes.
const TMPFS_BYTES: u64 = 8 * 1024 * 1024;
/// Ballast file removed to free space at the end, bytes. Less than the file's growth step
/// (`FILE_GROW_BYTES_MIN`), so writes after it is removed need the file to grow by just what
/// they need; more than the one-shard table's next doubling.
const BALLAST_BYTES: usize = 3 * 1024 * 1024;
/// Upper bound on write attempts of one fill or drain (the disk is full long before).
const FILL_ATTEMPTS_MAX: u64 = 400_000;
/// Failed writes after which filling stops (small writes may still fit between failures).
const FILL_FAILURES: u64 = 200;
/// Draining (writes of the smallest value) stops after this many failures in a row: then not
/// even the smallest record fits anywhere in the file.
const DRAIN_FAILURES_IN_A_ROW: u64 = 32;
/// When writes fail, the file must have taken at least this share of the room the disk had.
const DISK_USED_PERCENT_MIN: u64 = 90;
/// Smallest value written, bytes.
const VALUE_BYTES_MIN: u64 = 16;
/// Keys overwritten on the full disk.
const OVERWRITES: usize = 64;
/// Keys written into the space freed by deleting the largest records, each of
/// `VALUE_BYTES_MIN` bytes.
const REFILL_WRITES: u64 = 32;
/// Value bytes the largest records deleted before the refill hold together (several times
/// what the refill needs, headers included).
const REFILL_FREED_VALUE_BYTES: u64 = 8 * 1024;
/// Every this many stored keys, one is deleted on the full disk.
const DELETE_EVERY: usize = 4;
/// Keys written after the ballast is removed.
const AFTER_FREE_WRITES: u64 = 64;
/// Largest value written after the ballast is removed.
const AFTER_FREE_VALUE_BYTES_MAX: u64 = 4_000;

const _: () = assert!(AFTER_FREE_WRITES * (AFTER_FREE_VALUE_BYTES_MAX + 256) < 1024 * 1024);
const _: () = assert!((BALLAST_BYTES as u64) < TMPFS_BYTES / 2);
const _: () = assert!((BALLAST_BYTES as u64) < k2hash::limits::FILE_GROW_BYTES_MIN);
const _: () = assert!(REFILL_WRITES * (VALUE_BYTES_MIN + 128) < REFILL_FREED_VALUE_BYTES);

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value of write `i`: a length in `[min, max]` and bytes derived from `i`.
fn value_of(i: u64, min: u64, max: u64) -> Vec<u8> {
    let len = min + splitmix(i) % (max - min + 1);
    (0..len)
        .map(|j| (splitmix(i ^ (j << 32)) & 0xff) as u8)
        .collect()
}

/// A tmpfs mounted on a fresh temporary directory, unmounted (lazily, so a file still open
/// cannot keep it) when dropped.
struct Tmpfs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(bytes: u64) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!(
                "the full-disk tests mount a {bytes}-byte tmpfs and need root; run them as \
                 root (CI does): sudo -E cargo test --release -p k2hash --test disk_full"
            );
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        let target = CString::new(mount.as_os_str().as_bytes()).expect("path without NUL");
        let fstype = CString::new("tmpfs").expect("literal");
        let data = CString::new(format!("size={bytes},mode=0700")).expect("literal");
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            panic!(
                "mounting a tmpfs on {} failed: {}",
                mount.display(),
                std::io::Error::last_os_error()
            );
        }
        Tmpfs { mount, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.mount.as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Asserts `e` is the out-of-space error for `path`, with a message naming the file.
fn assert_no_space(e: &Error, path: &Path, what: &str) {
    match e {
        Error::NoSpace {
            path: Some(p),
            source,
            ..
        } if p == path && source.raw_os_error() == Some(libc::ENOSPC) => {}
        other => panic!("{what}: expected NoSpace (ENOSPC) on {path:?}, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("no space"),
        "{what}: the message must name the file and the cause: {msg}"
    );
}

/// Asserts `store` holds exactly `model` (every key, value and version; nothing else).
fn assert_holds(store: &K2Hash, model: &BTreeMap<Vec<u8>, (Vec<u8>, u64)>, when: &str) {
    for (k, (v, ver)) in model {
        let got = store
            .get(k)
            .unwrap_or_else(|e| panic!("{when}: reading {k:?} failed: {e}"))
            .unwrap_or_else(|| panic!("{when}: acknowledged key {k:?} is missing"));
        assert!(
            &got.value == v && got.version == *ver,
            "{when}: key {k:?} holds {} bytes version {}, stored {} bytes version {ver}",
            got.value.len(),
            got.version,
            v.len()
        );
    }
    let items = store.stats().items;
    assert_eq!(
        items,
        model.len() as u64,
        "{when}: the store holds {items} items, the model {}",
        model.len()
    );
}

/// One scenario: how the store is opened and what is written while filling.
struct Scenario {
    name: &'static str,
    open: fn(&Path) -> OpenOptions,
    /// Largest value written while filling, bytes.
    value_bytes_max: u64,
    /// Whether the fill must end with a shard table that could not grow (over its load
    /// limit): the one-shard scenarios exist to reach that state.
    table_blocked: bool,
}

/// The store under test with the model of what it must hold.
struct Run<'a> {
    sc: &'a Scenario,
    path: PathBuf,
    store: K2Hash,
    model: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    version: u64,
}

impl Run<'_> {
    /// Writes `key`; `Ok` goes into the model, a failure must be `NoSpace` and leave nothing.
    fn write(&mut self, key: Vec<u8>, value: Vec<u8>, what: &str) -> bool {
        self.version += 1;
        let meta = Meta {
            version: self.version,
            ..Meta::default()
        };
        let before = self.store.get(&key).expect("read before write");
        match self.store.set(&key, &value, meta) {
            Ok(()) => {
                self.model.insert(key, (value, self.version));
                true
            }
            Err(e) => {
                assert_no_space(&e, &self.path, &format!("{}: {what}", self.sc.name));
                let after = self.store.get(&key).expect("read after a failed write");
                assert_eq!(
                    after.map(|r| r.value),
                    before.map(|r| r.value),
                    "{}: {what}: a failed write changed the key",
                    self.sc.name
                );
                false
            }
        }
    }

    /// Writes the smallest values under new keys until `DRAIN_FAILURES_IN_A_ROW` fail in a row.
    fn drain(&mut self, tag: &str) {
        let (mut in_a_row, mut j) = (0u64, 0u64);
        while in_a_row < DRAIN_FAILURES_IN_A_ROW {
            assert!(
                j < FILL_ATTEMPTS_MAX,
                "{}: drain {tag} never ended",
                self.sc.name
            );
            let key = format!("{tag}-{j:07}").into_bytes();
            let value = value_of(j ^ 0x5555_0000, VALUE_BYTES_MIN, VALUE_BYTES_MIN);
            if self.write(key, value, &format!("drain {tag} write {j}")) {
                in_a_row = 0;
            } else {
                in_a_row += 1;
            }
            j += 1;
        }
    }

    fn check(&self, when: &str) {
        assert_holds(
            &self.store,
            &self.model,
            &format!("{}, {when}", self.sc.name),
        );
    }
}

/// One full-disk scenario on its own tmpfs.
fn run(sc: &Scenario) {
    let fs = Tmpfs::new(TMPFS_BYTES);
    let ballast = fs.mount.join("ballast");
    std::fs::write(&ballast, vec![0x5a; BALLAST_BYTES]).expect("ballast file");
    let path = fs.mount.join(format!("{}.k2h", sc.name));
    let store = (sc.open)(&path)
        .create(true)
        .background(false)
        .open()
        .expect("open on the empty tmpfs");
    let mut r = Run {
        sc,
        path: path.clone(),
        store,
        model: BTreeMap::new(),
        version: 0,
    };
    let name = sc.name;

    // Fill: write new keys until the file system refuses enough of them, then drain what is
    // left with the smallest records.
    let (mut failures, mut i) = (0u64, 0u64);
    while failures < FILL_FAILURES {
        assert!(
            i < FILL_ATTEMPTS_MAX,
            "{name}: {FILL_ATTEMPTS_MAX} writes and the {TMPFS_BYTES}-byte tmpfs is not full"
        );
        let key = format!("fill-{i:07}").into_bytes();
        let value = value_of(i, VALUE_BYTES_MIN, sc.value_bytes_max);
        if !r.write(key, value, &format!("fill write {i}")) {
            failures += 1;
        }
        i += 1;
    }
    r.drain("drain1");
    let st = r.store.stats();
    eprintln!(
        "{name}: disk full after {i} fill writes: {} items, file {} bytes, {} index slots, \
         {} table grows",
        st.items, st.file_size, st.index_slots, st.grows
    );
    assert!(st.items > 100, "{name}: only {} writes fitted", st.items);
    let room = TMPFS_BYTES - BALLAST_BYTES as u64;
    assert!(
        st.file_size * 100 >= room * DISK_USED_PERCENT_MIN,
        "{name}: writes failed with the file at {} bytes, though the disk had room for {room}",
        st.file_size
    );
    if sc.table_blocked {
        let load_permille = (st.items + st.tombstones) * 1000 / st.index_slots;
        assert!(
            load_permille > k2hash::limits::TABLE_LOAD_PERMILLE_MAX,
            "{name}: the fill ended with the table at {load_permille}‰, not over its load \
             limit: either the full disk never stopped it from growing (then this scenario \
             tests nothing) or inserts stopped at the limit although the table had room"
        );
    }
    r.check("disk full");

    // Overwrites on the full disk: stored, or refused cleanly with the old value kept.
    let keys: Vec<Vec<u8>> = r.model.keys().take(OVERWRITES).cloned().collect();
    for (n, key) in keys.into_iter().enumerate() {
        let value = value_of(1_000_000 + n as u64, VALUE_BYTES_MIN, sc.value_bytes_max);
        r.write(key, value, &format!("overwrite {n}"));
    }
    r.check("after overwrites");

    // Deleting the largest records frees space that serves new writes of any key at once
    // (whichever allocator arena the space went back to).
    let mut by_size: Vec<(usize, Vec<u8>)> = r
        .model
        .iter()
        .map(|(k, (v, _))| (v.len(), k.clone()))
        .collect();
    by_size.sort_unstable_by(|a, b| b.cmp(a));
    let mut freed = 0u64;
    for (len, key) in by_size {
        if freed >= REFILL_FREED_VALUE_BYTES {
            break;
        }
        let existed = r
            .store
            .remove(&key, None)
            .unwrap_or_else(|e| panic!("{name}: delete of {key:?} on a full disk failed: {e}"));
        assert!(
            existed,
            "{name}: delete of stored key {key:?} found nothing"
        );
        r.model.remove(&key);
        freed += len as u64;
    }
    for j in 0..REFILL_WRITES {
        let key = format!("refill-{j:04}").into_bytes();
        let value = value_of(2_000_000 + j, VALUE_BYTES_MIN, VALUE_BYTES_MIN);
        assert!(
            r.write(key, value, "refill"),
            "{name}: refill write {j} did not fit in the {freed} value bytes just freed"
        );
    }
    r.check("after the refill");

    // Many deletes: none needs space (not even when a table is over its load limit).
    let doomed: Vec<Vec<u8>> = r.model.keys().step_by(DELETE_EVERY).cloned().collect();
    for key in &doomed {
        let existed = r
            .store
            .remove(key, None)
            .unwrap_or_else(|e| panic!("{name}: delete of {key:?} on a full disk failed: {e}"));
        assert!(
            existed,
            "{name}: delete of stored key {key:?} found nothing"
        );
        r.model.remove(key);
    }
    r.check("after deletes");
    // Use the freed space up again, so what follows needs the file to grow.
    r.drain("drain2");
    r.check("full again");

    // Free space on the file system: writes succeed again.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    for j in 0..AFTER_FREE_WRITES {
        let key = format!("after-{j:04}").into_bytes();
        let value = value_of(3_000_000 + j, VALUE_BYTES_MIN, AFTER_FREE_VALUE_BYTES_MAX);
        assert!(
            r.write(key, value, "write after freeing space"),
            "{name}: write {j} after removing the {BALLAST_BYTES}-byte ballast failed"
        );
    }
    r.check("after freeing space");
    let report = r.store.verify().expect("verify");
    assert!(
        report.is_clean(),
        "{name}: verify found {:?}",
        report.problems
    );
    let Run { store, model, .. } = r;
    store.close().expect("close");

    let report = k2hash::verify_path(&path).expect("verify the closed file");
    assert!(
        report.is_clean(),
        "{name}: verify after close found {:?}",
        report.problems
    );
    assert!(report.was_clean, "{name}: the file was not closed cleanly");
    let store = (sc.open)(&path).background(false).open().expect("reopen");
    assert_holds(&store, &model, &format!("{name}, reopened"));
    store.close().expect("close after reopen");
}

/// Values up to this many bytes fill the disk with records of all sizes.
const MIXED_VALUE_BYTES_MAX: u64 = 6_000;

#[test]
fn full_map_disk_full() {
    run(&Scenario {
        name: "full-map",
        open: |p| OpenOptions::full_map(p),
        value_bytes_max: MIXED_VALUE_BYTES_MAX,
        table_blocked: false,
    });
}

#[test]
fn index_map_disk_full() {
    run(&Scenario {
        name: "index-map",
        open: |p| OpenOptions::index_map(p),
        value_bytes_max: MIXED_VALUE_BYTES_MAX,
        table_blocked: false,
    });
}

/// One shard with a tiny table: the table must double again and again as the disk fills,
/// until a doubling no longer fits.
#[test]
fn full_map_one_shard_disk_full() {
    run(&Scenario {
        name: "full-map-one-shard",
        open: |p| OpenOptions::full_map(p).shard_bits(0).table_bits(3),
        // The smallest records make the table large next to them.
        value_bytes_max: VALUE_BYTES_MIN,
        table_blocked: true,
    });
}

#[test]
fn index_map_one_shard_disk_full() {
    run(&Scenario {
        name: "index-map-one-shard",
        open: |p| OpenOptions::index_map(p).shard_bits(0).table_bits(3),
        // The smallest records make the table large next to them.
        value_bytes_max: VALUE_BYTES_MIN,
        table_blocked: true,
    });
}
