//! Crash safety under `kill -9`: a writer process is killed at a seeded random moment, many
//! times in a row on the same file, and after every kill the file must reopen, verify clean and
//! hold every acknowledged write (DESIGN.md §9).
//!
//! How it works: the test binary re-executes itself (`--exact child_writer --nocapture`) with
//! [`CHILD_ENV`] set. The child opens the file and applies a deterministic stream of operations
//! (set, overwrite, delete, delete leaving a tombstone) derived from a per-round seed, printing
//! `ACK <n>` and flushing stdout after operation `n` returns. The parent sends SIGKILL after a
//! seeded random delay, replays the same operation stream up to the last acknowledged `n` on a
//! memory-mode model store, and compares every key's raw record (value, flags, version,
//! tombstone) and the item count: the last acknowledged operation on each key wins, and the one
//! operation that may have been in flight (`n + 1`) may show either its old or its new state.
//!
//! Reproduce a failure with the printed seed:
//! `K2HASH_CRASH_SEED=<seed> cargo test -p k2hash --release --test crash_kill`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k2hash::{Decision, K2Hash, Meta, OpenOptions, Record};

/// Set in the child: `<mode>|<sync 0/1>|<round seed>|<path>`.
const CHILD_ENV: &str = "K2HASH_CRASH_CHILD";
/// Printed by the child once the store is open.
const OPEN_MARKER: &str = "K2HASH-CHILD-OPEN";
/// Optional master seed for the parent (decimal); otherwise taken from the clock and printed.
const SEED_ENV: &str = "K2HASH_CRASH_SEED";
/// Kill rounds per test.
const ROUNDS: u64 = 20;
/// Upper bound on one test's kill rounds; later rounds are skipped past it (and say so).
const TEST_DURATION_MAX_MS: u64 = 30_000;
/// The kill lands uniformly in `[0, KILL_DELAY_MAX_MS)` after the child is spawned (start-up
/// and open included, so some kills land during recovery).
const KILL_DELAY_MAX_MS: u64 = 250;
/// Distinct keys the writer touches: few, so keys are overwritten and deleted often.
const KEY_SPACE: u64 = 96;
/// Most operations one child performs (it is normally killed long before).
const CHILD_OPS_MAX: u64 = 2_000_000;
/// Most bytes in an ordinary value.
const VALUE_BYTES_MAX: u64 = 1_500;
/// Size of the occasional large value (spans many allocation granules).
const LARGE_VALUE_BYTES: usize = 20_000;
/// How long the parent waits for a killed child to be reaped.
const REAP_TIMEOUT_MS: u64 = 10_000;

fn splitmix_at(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One writer operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        version: u64,
    },
    Delete {
        key: Vec<u8>,
    },
    DeleteTombstone {
        key: Vec<u8>,
        version: u64,
    },
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Set { key, .. } | Op::Delete { key } | Op::DeleteTombstone { key, .. } => key,
        }
    }
}

fn key_of(k: u64) -> Vec<u8> {
    // Binary keys (a zero byte and a high byte) on purpose.
    let mut key = b"k\x00".to_vec();
    key.extend_from_slice(format!("{k:03}").as_bytes());
    key.push(0xfe);
    key
}

/// Operation `n` of the stream seeded with `round_seed`. Versions only need to be present;
/// plain `set` and `remove` do not compare them.
fn op_at(round_seed: u64, n: u64) -> Op {
    let r = splitmix_at(round_seed, n);
    let key = key_of(r % KEY_SPACE);
    let version = (round_seed & 0xffff_0000_0000) | n;
    match (r >> 8) % 10 {
        0..=5 => {
            let len = ((r >> 16) % VALUE_BYTES_MAX) as usize;
            Op::Set {
                key,
                value: value_bytes(r, len),
                version,
            }
        }
        6 => Op::Set {
            key,
            value: value_bytes(r, LARGE_VALUE_BYTES),
            version,
        },
        7 | 8 => Op::Delete { key },
        _ => Op::DeleteTombstone { key, version },
    }
}

fn value_bytes(r: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (r >> (8 * (j % 8))) as u8 ^ j as u8)
        .collect()
}

fn apply(store: &K2Hash, op: &Op) -> k2hash::Result<()> {
    match op {
        Op::Set {
            key,
            value,
            version,
        } => store.set(
            key,
            value,
            Meta {
                flags: 7,
                expire_at: 0,
                version: *version,
            },
        ),
        Op::Delete { key } => store.remove(key, None).map(|_| ()),
        Op::DeleteTombstone { key, version } => store.remove(key, Some(*version)).map(|_| ()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Full,
    Index,
}

fn options(kind: FileKind, path: &Path, sync: bool) -> OpenOptions {
    let opts = match kind {
        FileKind::Full => OpenOptions::full_map(path),
        FileKind::Index => OpenOptions::index_map(path),
    };
    opts.create(true).sync(sync)
}

/// The child's body: write until killed (bounded by [`CHILD_OPS_MAX`]). A no-op test when
/// [`CHILD_ENV`] is not set, so a plain `cargo test` passes it.
#[test]
fn child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(4, '|');
    let kind = match parts.next() {
        Some("full") => FileKind::Full,
        Some("index") => FileKind::Index,
        other => panic!("bad {CHILD_ENV} mode {other:?}"),
    };
    let sync = parts.next() == Some("1");
    let round_seed: u64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .expect("round seed");
    let path = PathBuf::from(parts.next().expect("path"));
    let store = options(kind, &path, sync).open().expect("child open");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{OPEN_MARKER}")
        .and_then(|_| out.flush())
        .expect("stdout");
    for n in 0..CHILD_OPS_MAX {
        apply(&store, &op_at(round_seed, n)).expect("child op");
        // The acknowledgement: only after the operation has returned.
        writeln!(out, "ACK {n}")
            .and_then(|_| out.flush())
            .expect("stdout");
    }
}

/// What one killed round saw on the child's stdout.
struct RoundOutcome {
    /// The last acknowledged operation number, `None` when nothing was acknowledged.
    last_ack: Option<u64>,
    /// Whether the child got past open.
    opened: bool,
}

fn run_child_round(
    kind: FileKind,
    sync: bool,
    path: &Path,
    round_seed: u64,
    delay: Duration,
) -> RoundOutcome {
    let mode = match kind {
        FileKind::Full => "full",
        FileKind::Index => "index",
    };
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_writer",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            CHILD_ENV,
            format!("{mode}|{}|{round_seed}|{}", u8::from(sync), path.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        let mut last_ack: Option<u64> = None;
        let mut opened = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test child_writer ... " without a newline before the child's
            // first line, so the open marker ends a line rather than filling it.
            if line.ends_with(OPEN_MARKER) {
                opened = true;
            } else if let Some(n) = line.strip_prefix("ACK ") {
                let n: u64 = n.trim().parse().expect("ACK number");
                // Acks come in order; a gap would mean a lost line, not a lost write.
                assert_eq!(n, last_ack.map_or(0, |a| a + 1), "acks out of order");
                last_ack = Some(n);
            }
        }
        RoundOutcome { last_ack, opened }
    });
    std::thread::sleep(delay);
    // std's kill is SIGKILL on Unix.
    let _ = child.kill();
    let deadline = Instant::now() + Duration::from_millis(REAP_TIMEOUT_MS);
    loop {
        match child.try_wait().expect("wait child") {
            Some(status) => {
                // A child that exits by itself before the kill has failed (it never stops
                // before CHILD_OPS_MAX, which takes far longer than KILL_DELAY_MAX_MS).
                assert!(
                    status.code().is_none(),
                    "child exited by itself before the kill: {status:?} (see its stderr above)"
                );
                break;
            }
            None if Instant::now() > deadline => panic!("killed child was not reaped"),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    reader.join().expect("reader thread")
}

/// The model: a memory-mode store that replays exactly the acknowledged operations, so the
/// comparison covers every field (value, flags, version, tombstone bit) without restating the
/// engine's semantics here.
struct Model {
    store: K2Hash,
}

impl Model {
    fn new() -> Model {
        let store = OpenOptions::memory()
            .background(false)
            .open()
            .expect("open the model store");
        Model { store }
    }

    fn raw(&self, key: &[u8]) -> Option<Record> {
        self.store.get_raw(key).expect("model get_raw")
    }

    fn apply(&self, op: &Op) {
        apply(&self.store, op).expect("model op");
    }

    /// Forces `key` to `state` (the state the crashed file kept for the in-flight key).
    fn put(&self, key: &[u8], state: Option<Record>) {
        self.store
            .update_raw(key, |_| {
                let decision = match state {
                    Some(record) => Decision::PutRecord(record),
                    None => Decision::Remove {
                        tombstone_version: None,
                    },
                };
                (decision, ())
            })
            .expect("model put");
    }
}

/// A short description of a raw record state for failure messages.
fn describe(state: &Option<Record>) -> String {
    match state {
        None => "absent".to_string(),
        Some(r) if r.tombstone => format!("tombstone v{}", r.version),
        Some(r) => format!("{} bytes v{} flags {}", r.value.len(), r.version, r.flags),
    }
}

fn check_after_kill(
    kind: FileKind,
    sync: bool,
    path: &Path,
    model: &Model,
    in_flight: &Op,
    context: &str,
) {
    let store = options(kind, path, sync)
        .open()
        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    let report = store
        .verify()
        .unwrap_or_else(|e| panic!("{context}: verify failed: {e}"));
    assert!(
        report.problems.is_empty(),
        "{context}: verify found problems: {:?}",
        report.problems
    );
    // The in-flight operation may or may not have happened: both states are acceptable.
    let in_flight_key = in_flight.key().to_vec();
    let before = model.raw(&in_flight_key);
    model.apply(in_flight);
    let after = model.raw(&in_flight_key);
    for k in 0..KEY_SPACE {
        let key = key_of(k);
        let got = store
            .get_raw(&key)
            .unwrap_or_else(|e| panic!("{context}: get_raw failed: {e}"));
        if key == in_flight_key {
            assert!(
                got == before || got == after,
                "{context}: in-flight key {k}: got {}, expected {} (before) or {} (after)",
                describe(&got),
                describe(&before),
                describe(&after)
            );
            // Whichever state survived is the truth from now on.
            model.put(&key, got);
        } else {
            let expected = model.raw(&key);
            assert!(
                got == expected,
                "{context}: key {k}: got {}, expected {} (acknowledged state lost)",
                describe(&got),
                describe(&expected)
            );
        }
    }
    let live = store.stats().items;
    let model_live = model.store.stats().items;
    assert_eq!(
        live, model_live,
        "{context}: item count differs from the model"
    );
    store
        .close()
        .unwrap_or_else(|e| panic!("{context}: close failed: {e}"));
    let report =
        k2hash::verify_path(path).unwrap_or_else(|e| panic!("{context}: verify_path failed: {e}"));
    assert!(
        report.problems.is_empty(),
        "{context}: verify_path after close: {:?}",
        report.problems
    );
}

fn master_seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV} must be a decimal u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// Serialises the kill tests of this binary. A child spawned by one test thread inherits, for
/// the moment between fork and exec, every fd the process has open, including another test's
/// store file and so its flock; that test's next open would then fail with `Locked` for no
/// fault of the engine. One test at a time keeps the only spawner the thread that owns the file.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn kill_rounds(kind: FileKind, sync: bool) {
    // A failed (panicked) test poisons the lock; the others still run.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = master_seed();
    println!("crash_kill {kind:?} sync={sync}: seed {seed} (rerun with {SEED_ENV}={seed})");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.k2h");
    let started = Instant::now();
    let model = Model::new();
    let mut total_acks = 0u64;
    let mut rounds_done = 0u64;
    let mut rounds_opened = 0u64;
    for round in 0..ROUNDS {
        if started.elapsed() > Duration::from_millis(TEST_DURATION_MAX_MS) {
            println!("stopping after {round} rounds: time bound reached");
            break;
        }
        let round_seed = splitmix_at(seed, round);
        let delay = Duration::from_millis(splitmix_at(seed ^ 0xdead, round) % KILL_DELAY_MAX_MS);
        let outcome = run_child_round(kind, sync, &path, round_seed, delay);
        let acked = outcome.last_ack.map_or(0, |a| a + 1);
        for n in 0..acked {
            model.apply(&op_at(round_seed, n));
        }
        let in_flight = op_at(round_seed, acked);
        let context = format!(
            "seed {seed} round {round} ({kind:?}, sync={sync}, killed after {delay:?}, {acked} acks)"
        );
        println!("{context}: opened={}", outcome.opened);
        // Until some child got past create there is no file to check.
        if path.exists() {
            check_after_kill(kind, sync, &path, &model, &in_flight, &context);
        }
        total_acks += acked;
        rounds_done += 1;
        rounds_opened += u64::from(outcome.opened);
    }
    println!(
        "{rounds_done} rounds ({rounds_opened} killed after open), \
         {total_acks} acknowledged operations checked"
    );
    assert!(
        rounds_done >= ROUNDS / 2,
        "too few rounds ran ({rounds_done})"
    );
    assert!(
        rounds_opened > 0,
        "no child got past open: every kill landed during start-up"
    );
    assert!(
        total_acks > 0,
        "no child acknowledged any write: the test checked nothing"
    );
}

#[test]
fn kill9_full_map() {
    kill_rounds(FileKind::Full, false);
}

#[test]
fn kill9_index_map() {
    kill_rounds(FileKind::Index, false);
}

#[test]
fn kill9_full_map_sync() {
    kill_rounds(FileKind::Full, true);
}

#[test]
fn kill9_index_map_sync() {
    kill_rounds(FileKind::Index, true);
}
