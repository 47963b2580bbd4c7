//! A server node of a `dkc-local up` cluster is killed (SIGKILL of its chmpx and dkc-server)
//! and restarted while memcached clients — this test's raw client, pymemcache and libmemcached's
//! memccp/memccat — store and read through dkc-memcached. No acknowledged set may be lost,
//! every request must be answered (a SERVER_ERROR is an answer; a hang or a disconnect fails
//! the test), and the window of SERVER_ERRORs is measured and printed.

mod dkc_local_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use dkc_local_support::{require_external_clients, Answer, Local, Mc};

/// Keys written in each of the three phases (before, during, after the fault).
const KEYS_PER_PHASE: usize = 300;
/// Attempts per set while the cluster reports errors, and the pause between them.
const SET_ATTEMPTS_MAX: usize = 100;
const RETRY_PAUSE_MS: u64 = 50;
/// Items pymemcache writes while the node is down.
const PY_KEYS: usize = 200;
/// How long the final reads may keep answering SERVER_ERROR (merge after the restart).
const SETTLE_WAIT: Duration = Duration::from_secs(20);

const PY_SCRIPT: &str = r#"
import sys, time
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError
port, prefix, count, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = Client(("127.0.0.1", port), connect_timeout=5, timeout=10)
errors = 0
for i in range(count):
    key, val = f"{prefix}{i}", f"py-{prefix}-{i}".encode()
    for attempt in range(100):
        try:
            if mode == "set":
                if not c.set(key, val, noreply=False):
                    raise SystemExit(f"set {key} not stored")
            else:
                got = c.get(key)
                if got != val:
                    raise SystemExit(f"get {key}: {got!r} != {val!r}")
            break
        except MemcacheServerError:
            errors += 1
            time.sleep(0.05)
    else:
        raise SystemExit(f"{mode} {key}: SERVER_ERROR 100 times")
print(f"ok {count} server_errors {errors}")
"#;

fn run_py(port: u16, prefix: &str, count: usize, mode: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            PY_SCRIPT,
            &port.to_string(),
            prefix,
            &count.to_string(),
            mode,
        ])
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pymemcache {mode} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim().to_string()
}

/// memccp of a file, then memccat of it, retrying each a bounded number of times.
fn memc_copy_and_read(port: u16, dir: &std::path::Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    let servers = format!("--servers=127.0.0.1:{port}");
    let mut ok = false;
    for _ in 0..SET_ATTEMPTS_MAX {
        let st = Command::new("memccp")
            .arg(&servers)
            .arg(&path)
            .output()
            .unwrap();
        if st.status.success() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(RETRY_PAUSE_MS));
    }
    assert!(ok, "memccp {name} kept failing");
    memc_read(port, name, content);
}

fn memc_read(port: u16, name: &str, content: &str) {
    let servers = format!("--servers=127.0.0.1:{port}");
    for _ in 0..SET_ATTEMPTS_MAX {
        let out = Command::new("memccat")
            .arg(&servers)
            .arg(name)
            .output()
            .unwrap();
        if out.status.success() {
            // memccat ends what it prints with a newline of its own.
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim_end(),
                content.trim_end(),
                "memccat {name}"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(RETRY_PAUSE_MS));
    }
    panic!("memccat {name} kept failing");
}

/// SERVER_ERROR answers seen, with when (since the kill).
#[derive(Default)]
struct Errors {
    times: Vec<Duration>,
    samples: Vec<String>,
}

impl Errors {
    fn note(&mut self, since: Instant, text: String) {
        self.times.push(since.elapsed());
        if self.samples.len() < 3 {
            self.samples.push(text);
        }
    }
}

/// Stores `key` (retrying SERVER_ERRORs); returns true once acknowledged.
fn set_acked(mc: &mut Mc, key: &str, val: &[u8], errors: &mut Errors, since: Instant) -> bool {
    for _ in 0..SET_ATTEMPTS_MAX {
        match mc.set(key, val) {
            Answer::Ok(_) => return true,
            Answer::ServerError(e) => {
                errors.note(since, e);
                std::thread::sleep(Duration::from_millis(RETRY_PAUSE_MS));
            }
        }
    }
    false
}

fn val(key: &str) -> Vec<u8> {
    format!("v:{key}:{}", key.len() * 7).into_bytes()
}

#[test]
fn dkc_local_node_kill_loses_no_acknowledged_set() {
    require_external_clients();
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let group = Local::unique_group("dlk");
    let base = dkc_local_support::free_base_port(3);
    let mut local = Local::up(dir.path(), &group, 3, base);
    let port = local.memcached.port();
    let mut mc = Mc::connect(local.memcached);
    let mut acked: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let start = Instant::now();
    let mut errors = Errors::default();

    // Phase 1: healthy cluster.
    for i in 0..KEYS_PER_PHASE {
        let k = format!("a{i}");
        assert!(
            set_acked(&mut mc, &k, &val(&k), &mut errors, start),
            "set {k} on a healthy cluster"
        );
        acked.insert(k.clone(), val(&k));
    }
    assert!(
        errors.times.is_empty(),
        "SERVER_ERROR on a healthy cluster: {:?}",
        errors.samples
    );
    memc_copy_and_read(
        port,
        files.path(),
        "before.txt",
        "written before the fault\n",
    );

    // The fault: node 1's chmpx and dkc-server, SIGKILL.
    let victim = local.ctlport(1);
    for name in [format!("dkc-server {victim}"), format!("chmpx {victim}")] {
        let pid = local.pid_of(&name);
        // SAFETY: kill(2) on a pid of this run.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let killed_at = Instant::now();
    let mut errors = Errors::default();
    let mut reads = 0usize;
    let mut read_errors = 0usize;

    // Phase 2: node down. Every set retried until acknowledged; every read answered.
    let earlier: Vec<(String, Vec<u8>)> =
        acked.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for i in 0..KEYS_PER_PHASE {
        let k = format!("b{i}");
        assert!(
            set_acked(&mut mc, &k, &val(&k), &mut errors, killed_at),
            "set {k} never acknowledged with one node down"
        );
        acked.insert(k.clone(), val(&k));
        let (ek, ev) = &earlier[i % earlier.len()];
        reads += 1;
        match mc.get(ek) {
            Answer::Ok(Some(v)) => assert_eq!(&v, ev, "{ek} read back wrong with one node down"),
            Answer::Ok(None) => panic!("{ek} (acknowledged) is missing with one node down"),
            Answer::ServerError(e) => {
                read_errors += 1;
                errors.note(killed_at, e);
            }
        }
    }
    let py_down = run_py(port, "p", PY_KEYS, "set");
    memc_copy_and_read(
        port,
        files.path(),
        "during.txt",
        "written while a node was down\n",
    );
    let down_for = killed_at.elapsed();

    // Restart the node (dkc-local restarts nothing by itself) and wait until it serves.
    local.restart_node(1);
    local.wait_all_serving(Duration::from_secs(30));
    let restarted_at = Instant::now();

    // Phase 3: after recovery.
    for i in 0..KEYS_PER_PHASE {
        let k = format!("c{i}");
        assert!(
            set_acked(&mut mc, &k, &val(&k), &mut errors, killed_at),
            "set {k} after the restart"
        );
        acked.insert(k.clone(), val(&k));
    }

    // Every acknowledged set reads back (SERVER_ERROR tolerated until SETTLE_WAIT, never a miss).
    let deadline = Instant::now() + SETTLE_WAIT;
    for (k, v) in &acked {
        loop {
            match mc.get(k) {
                Answer::Ok(Some(got)) => {
                    assert_eq!(&got, v, "{k} read back wrong after the restart");
                    break;
                }
                Answer::Ok(None) => {
                    // Say whether it is gone for good or was a miss served too early.
                    let missed_at = Instant::now();
                    let back = loop {
                        if let Answer::Ok(Some(_)) = mc.get(k) {
                            break Some(missed_at.elapsed());
                        }
                        if Instant::now() >= deadline {
                            break None;
                        }
                        std::thread::sleep(Duration::from_millis(RETRY_PAUSE_MS));
                    };
                    match back {
                        Some(after) => panic!(
                            "acknowledged set of {k} read as NOT FOUND {:?} after the node restart, \
                             then came back {after:?} later: the restarted node answered a read \
                             before its merge had given it the key",
                            restarted_at.elapsed()
                        ),
                        None => panic!("acknowledged set of {k} LOST after the node restart (still missing {SETTLE_WAIT:?} later)"),
                    }
                }
                Answer::ServerError(e) => {
                    errors.note(killed_at, e);
                    assert!(
                        Instant::now() < deadline,
                        "{k} still SERVER_ERROR {SETTLE_WAIT:?} after the restart"
                    );
                    std::thread::sleep(Duration::from_millis(RETRY_PAUSE_MS));
                }
            }
        }
    }
    let py_after = run_py(port, "p", PY_KEYS, "get");
    memc_read(port, "before.txt", "written before the fault\n");
    memc_read(port, "during.txt", "written while a node was down\n");

    let window = match (errors.times.first(), errors.times.last()) {
        (Some(a), Some(b)) => format!(
            "{} SERVER_ERRORs between {:?} and {:?} after the kill (samples: {:?})",
            errors.times.len(),
            a,
            b,
            errors.samples
        ),
        _ => "no SERVER_ERROR at all".to_string(),
    };
    eprintln!(
        "node kill: {} acknowledged sets all read back; node down for {down_for:?} (restarted {:?} after the kill); \
         reads while down: {reads} ({read_errors} SERVER_ERROR); {window}; pymemcache while down: {py_down}; after: {py_after}",
        acked.len(),
        restarted_at.duration_since(killed_at),
    );
    // The supervisor noticed the deaths and shows them (it restarts nothing).
    let rf = local.run_file();
    for name in [format!("dkc-server {victim}"), format!("chmpx {victim}")] {
        let p = rf.procs.iter().find(|p| p.name == name).unwrap();
        assert!(
            !p.running,
            "the run file still shows {name} running: {rf:?}"
        );
    }
    assert!(local.stop(), "dkc-local did not stop cleanly");
}
