//! Real clients against dkc-memcached (memory backend): libmemcached's `memccapable` in ASCII
//! and binary modes, and pymemcache's own integration tests. Both fail, never skip, when the client is not
//! installed (`apt-get install -y libmemcached-tools`, `pip install pymemcache pytest`).

mod memcached_support;

use std::process::Command;

use memcached_support::{start_dkc, which};

/// Runs `memccapable` with the protocol flag `mode` (`-a` ASCII, `-b` binary) against a fresh
/// dkc-memcached and requires "All tests passed" with at least 20 tests run.
fn memccapable_passes(mode: &str, what: &str) {
    let Some(memccapable) = which("memccapable") else {
        panic!(
            "memccapable is not on PATH: install it with `apt-get install -y libmemcached-tools`"
        );
    };
    let server = start_dkc(&[]);
    // -t: i/o timeout in seconds.
    let output = Command::new(memccapable)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.addr.port().to_string(),
            mode,
            "-t",
            "10",
        ])
        .output()
        .expect("run memccapable");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("All tests passed"),
        "memccapable {mode} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let passed = stdout.lines().filter(|l| l.ends_with("[pass]")).count();
    assert!(
        passed >= 20,
        "only {passed} memccapable tests ran:\n{stdout}"
    );
    eprintln!("memccapable: {passed} {what} tests passed");
}

#[test]
fn memccapable_ascii_passes() {
    memccapable_passes("-a", "ASCII");
}

#[test]
fn memccapable_binary_passes() {
    memccapable_passes("-b", "binary");
}

#[test]
fn pymemcache_integration_suite_passes() {
    let server = start_dkc(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/pymemcache_integration.sh"
    );
    let output = Command::new("bash")
        .args([script, "127.0.0.1", &server.addr.port().to_string()])
        .output()
        .expect("run pymemcache_integration.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pymemcache integration tests failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(" passed"),
        "no pymemcache test ran:\n{stdout}"
    );
    eprintln!("pymemcache: {}", stdout.lines().last().unwrap_or_default());
}
