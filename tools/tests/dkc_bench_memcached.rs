//! Scenario tests of the real `dkc-bench` binary against a real memcached started by each test
//! (on a free port, killed when the test ends): the JSON report parses and adds up, the key
//! space is respected, the op limit is exact, wrong values are caught, and bad arguments get a
//! clear error.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest wait for memcached to answer after it starts.
const MEMCACHED_READY_TIMEOUT_MS: u64 = 10_000;

/// A memcached process on a free port, killed on drop.
struct Memcached {
    child: Child,
    port: u16,
}

impl Memcached {
    fn start() -> Memcached {
        let port = chmpx::testkit::ports::free_ports(1).expect("a free port")[0];
        let mut cmd = Command::new("memcached");
        cmd.args(["-p", &port.to_string(), "-t", "2", "-m", "256", "-U", "0"])
            .args(["-l", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // memcached refuses to run as root unless told which user to be.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start memcached ({e}): these tests need a real memcached 1.6 on PATH \
                 (Debian: apt-get install memcached)"
            )
        });
        let m = Memcached { child, port };
        let deadline = Instant::now() + Duration::from_millis(MEMCACHED_READY_TIMEOUT_MS);
        while m.command("version\r\n").is_err() {
            assert!(
                Instant::now() < deadline,
                "memcached on port {port} did not answer within {MEMCACHED_READY_TIMEOUT_MS} ms"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends one command and reads its reply up to the line that ends it.
    fn command(&self, cmd: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(self.addr())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(cmd.as_bytes())?;
        let mut r = BufReader::new(s);
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            all.push_str(&line);
            let done = ["END\r\n", "STORED\r\n", "OK\r\n", "ERROR\r\n"].contains(&line.as_str())
                || line.starts_with("VERSION ");
            if done {
                return Ok(all);
            }
        }
    }

    fn stat(&self, name: &str) -> u64 {
        let stats = self.command("stats\r\n").expect("stats");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .unwrap_or_else(|| panic!("no stat {name} in {stats}"))
            .trim()
            .parse()
            .expect("numeric stat")
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dkc-bench"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dkc-bench")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs dkc-bench with `--json`, insists it succeeded, and returns the parsed report.
fn bench_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = bench(&all);
    assert!(
        out.status.success(),
        "dkc-bench {all:?} failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let line = stdout.lines().last().expect("a JSON line on stdout");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("report is not JSON ({e}): {line}"))
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

#[test]
fn dkc_bench_mixed_run_reports_consistent_figures_and_respects_the_key_space() {
    let m = Memcached::start();
    let keys = 300u64;
    let r = bench_json(&[
        "memcached",
        "--servers",
        &m.addr(),
        "--connections",
        "4",
        "--keys",
        &keys.to_string(),
        "--value-size",
        "1024",
        "--preload",
        "--get-ratio",
        "0.9",
        "--warmup",
        "200ms",
        "--duration",
        "1s",
    ]);
    let ops = u(&r, "ops");
    assert!(ops > 0, "no operations: {r}");
    assert_eq!(u(&r, "errors"), 0, "{r}");
    assert_eq!(u(&r, "gets") + u(&r, "sets"), ops, "{r}");
    assert_eq!(u(&r, "hits") + u(&r, "misses"), u(&r, "gets"), "{r}");
    // Every key was preloaded, so no get may miss.
    assert_eq!(u(&r, "misses"), 0, "{r}");
    assert!(
        u(&r, "sets") > 0 && u(&r, "gets") > u(&r, "sets"),
        "90% gets: {r}"
    );
    let (p50, p99, max) = (
        f(&r, &["latency_us", "p50"]),
        f(&r, &["latency_us", "p99"]),
        f(&r, &["latency_us", "max"]),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{r}");
    let secs = f(&r, &["elapsed_secs"]);
    assert!(
        (0.9..3.0).contains(&secs),
        "measured {secs} s for --duration 1s"
    );
    let rate = f(&r, &["ops_per_sec"]);
    assert!((rate - ops as f64 / secs).abs() < 1.0, "{r}");
    // memcached holds exactly the key space: keys 0..keys, nothing beyond.
    assert_eq!(m.stat("curr_items"), keys);
    let last = format!("get dkcb:{:010}\r\n", keys - 1);
    assert!(m.command(&last).expect("get").starts_with("VALUE "));
    let beyond = format!("get dkcb:{keys:010}\r\n");
    assert_eq!(m.command(&beyond).expect("get"), "END\r\n");
}

#[test]
fn dkc_bench_gets_without_preload_all_miss_and_op_limit_is_exact() {
    let m = Memcached::start();
    let r = bench_json(&[
        "memcached",
        "--servers",
        &m.addr(),
        "--connections",
        "3",
        "--pipeline",
        "4",
        "--keys",
        "1000",
        "--get-ratio",
        "1",
        "--warmup",
        "0s",
        "--duration",
        "20s",
        "--ops",
        "2001",
    ]);
    assert_eq!(u(&r, "ops"), 2001, "{r}");
    assert_eq!(u(&r, "gets"), 2001, "{r}");
    assert_eq!(u(&r, "misses"), 2001, "{r}");
    assert_eq!(u(&r, "hits"), 0, "{r}");
    assert_eq!(u(&r, "errors"), 0, "{r}");
    assert_eq!(
        m.stat("cmd_get"),
        2001,
        "memcached saw a different number of gets"
    );
    assert_eq!(m.stat("curr_items"), 0);
}

#[test]
fn dkc_bench_counts_a_wrong_value_as_an_error() {
    let m = Memcached::start();
    // The only key holds 4 bytes; the workload expects 16.
    assert_eq!(
        m.command("set dkcb:0000000000 0 0 4\r\nbad!\r\n")
            .expect("set"),
        "STORED\r\n"
    );
    let r = bench_json(&[
        "memcached",
        "--servers",
        &m.addr(),
        "--connections",
        "1",
        "--keys",
        "1",
        "--value-size",
        "16",
        "--get-ratio",
        "1",
        "--warmup",
        "0s",
        "--ops",
        "50",
    ]);
    assert_eq!(u(&r, "ops"), 50, "{r}");
    assert_eq!(u(&r, "wrong_values"), 50, "{r}");
    assert_eq!(u(&r, "errors"), 50, "{r}");
    assert_eq!(u(&r, "hits"), 0, "{r}");
}

#[test]
fn dkc_bench_human_output_without_json() {
    let m = Memcached::start();
    let out = bench(&[
        "memcached",
        "--servers",
        &m.addr(),
        "--connections",
        "2",
        "--keys",
        "10",
        "--warmup",
        "0s",
        "--ops",
        "100",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ops/s") && stdout.contains("p99"),
        "{stdout}"
    );
    assert!(!stdout.contains('{'), "no JSON without --json: {stdout}");
}

#[test]
fn dkc_bench_bad_arguments_get_clear_errors() {
    let cases: [(&[&str], &str); 6] = [
        (&["memcached", "--get-ratio", "1.5"], "--get-ratio"),
        (&["memcached", "--connections", "0"], "--connections"),
        (&["memcached", "--duration", "ten"], "--duration"),
        (&["memcached", "--keys", "0"], "--keys"),
        (&["memcached", "--servers", "no-port-here"], "--servers"),
        (&["memcached", "--ops", "0"], "--ops"),
    ];
    for (args, names) in cases {
        let out = bench(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains(names),
            "{args:?}: error does not name {names}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    // A port nobody listens on: the error says where it tried and what to check.
    let free = std::net::SocketAddr::from((
        [127, 0, 0, 1],
        chmpx::testkit::ports::free_ports(1).expect("a free port")[0],
    ));
    let out = bench(&["memcached", "--servers", &free.to_string(), "--ops", "1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&free.to_string()) && err.contains("connect"),
        "{err}"
    );
}
