//! The `dkc` CLI against a real local cluster: outputs, --json, --hex, values from stdin, and
//! the exit codes its --help documents (0 ok, 1 miss, 2 usage/config, 3 unavailable, 4 server).
//!
//! Needs the chmpx and dkc-server binaries: `cargo build --release -p chmpx -p dkc-server`.

mod client_support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use client_support::Cluster;

fn run(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args).stdin(Stdio::null());
    cmd.output().expect("run dkc")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("dkc exited by signal")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(o).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", stdout(o)))
}

#[test]
fn cli_commands_outputs_and_exit_codes() {
    let cluster = Cluster::start();
    let dkc = |args: &[&str]| run(cluster.dkc(), args);

    let o = dkc(&["set", "k1", "hello", "--flags", "9"]);
    assert_eq!(code(&o), 0, "{o:?}");
    let o = dkc(&["get", "k1"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hello\n"));
    let o = dkc(&["--json", "get", "k1"]);
    let j = json(&o);
    assert_eq!(j["value"], "hello");
    assert_eq!(j["flags"], 9);
    let version = j["version"].as_u64().expect("version");

    // Without a config file: cluster name and the chmpx's control port.
    let o = run(
        Command::new(env!("CARGO_BIN_EXE_dkc")),
        &[
            "--cluster",
            &cluster.group,
            "--ctlport",
            &cluster.slave_ctlport.to_string(),
            "get",
            "k1",
        ],
    );
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hello\n"), "{o:?}");

    // Misses exit 1.
    assert_eq!(code(&dkc(&["get", "nope"])), 1);
    assert_eq!(code(&dkc(&["add", "k1", "x"])), 1);
    assert_eq!(code(&dkc(&["replace", "nope", "x"])), 1);
    assert_eq!(code(&dkc(&["delete", "nope"])), 1);
    assert_eq!(code(&dkc(&["incr", "nope"])), 1);

    // cas with the version from --json, then with the stale one.
    assert_eq!(code(&dkc(&["cas", "k1", "v2", &version.to_string()])), 0);
    assert_eq!(code(&dkc(&["cas", "k1", "v3", &version.to_string()])), 1);
    assert_eq!(stdout(&dkc(&["get", "k1"])), "v2\n");
    assert_eq!(code(&dkc(&["append", "k1", "!"])), 0);
    assert_eq!(code(&dkc(&["prepend", "k1", "<"])), 0);
    assert_eq!(stdout(&dkc(&["get", "k1"])), "<v2!\n");

    // Binary value from stdin; escaped, hex and raw output.
    let mut child = cluster
        .dkc()
        .args(["set", "bin", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a\x00b\xff\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(stdout(&dkc(&["get", "bin"])), "a\\x00b\\xff\\n\n");
    assert_eq!(stdout(&dkc(&["--hex", "get", "bin"])), "610062ff0a\n");
    assert_eq!(dkc(&["--raw", "get", "bin"]).stdout, b"a\x00b\xff\n");

    // Counters; not numeric is a server error (4).
    assert_eq!(stdout(&dkc(&["incr", "n", "5", "--initial", "7"])), "7\n");
    assert_eq!(stdout(&dkc(&["incr", "n", "5"])), "12\n");
    assert_eq!(stdout(&dkc(&["decr", "n", "100"])), "0\n");
    assert_eq!(code(&dkc(&["incr", "k1"])), 4);

    // touch / gat.
    assert_eq!(code(&dkc(&["touch", "k1", "3600"])), 0);
    assert_eq!(code(&dkc(&["touch", "nope", "10"])), 1);
    assert_eq!(stdout(&dkc(&["gat", "k1", "0"])), "<v2!\n");

    // mget.
    let j = json(&dkc(&["--json", "mget", "k1", "nope", "n"]));
    let items = j["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["key"], "k1");

    // subkeys.
    assert_eq!(code(&dkc(&["set", "c1", "x"])), 0);
    assert_eq!(code(&dkc(&["subkeys", "set", "k1", "c1", "c2"])), 0);
    assert_eq!(code(&dkc(&["subkeys", "add", "k1", "c3"])), 0);
    assert_eq!(stdout(&dkc(&["subkeys", "list", "k1"])), "c1\nc2\nc3\n");
    assert_eq!(code(&dkc(&["subkeys", "remove", "k1", "c3"])), 0);
    assert_eq!(code(&dkc(&["subkeys", "remove", "k1", "c3"])), 1);
    let j = json(&dkc(&["--json", "subkeys", "delete", "k1"]));
    assert_eq!(j["keys"], 2, "k1 and c1 (c2 never existed)");
    assert_eq!(code(&dkc(&["get", "c1"])), 1);

    // scan with a cursor.
    for k in ["p:a", "p:b", "p:c", "p:d", "q:a"] {
        assert_eq!(code(&dkc(&["set", k, "1"])), 0);
    }
    let o = dkc(&["scan", "--prefix", "p:", "--keys-only", "--limit", "3"]);
    assert_eq!(stdout(&o), "p:a\np:b\np:c\n");
    let j = json(&dkc(&["--json", "scan", "--prefix", "p:", "--limit", "3"]));
    assert_eq!(j["cursor"], "p:c");
    let j = json(&dkc(&[
        "--json", "scan", "--prefix", "p:", "--cursor", "p:c", "--limit", "3",
    ]));
    assert_eq!(j["items"].as_array().unwrap().len(), 1);
    assert_eq!(j["cursor"], serde_json::Value::Null);
    let o = dkc(&["scan", "--start", "p:b", "--end", "p:d", "--keys-only"]);
    assert_eq!(stdout(&o), "p:b\np:c\n");

    // stats, flush.
    let j = json(&dkc(&["--json", "stats"]));
    assert_eq!(j["nodes"].as_array().unwrap().len(), 3);
    let o = dkc(&["flush"]);
    assert_eq!(code(&o), 2, "flush without --yes is a usage error");
    assert_eq!(
        code(&dkc(&["get", "p:a"])),
        0,
        "nothing flushed without --yes"
    );
    assert_eq!(code(&dkc(&["flush", "--yes"])), 0);
    assert_eq!(code(&dkc(&["get", "p:a"])), 1);

    // Errors in --json mode are JSON too.
    let o = dkc(&["--json", "get", "nope"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["exit"], 1);
}

#[test]
fn cli_usage_config_and_unavailable_exit_codes() {
    let dkc = env!("CARGO_BIN_EXE_dkc");
    // Usage: no config, unknown command.
    let o = run(Command::new(dkc), &["get", "k"]);
    assert_eq!(code(&o), 2);
    let o = run(Command::new(dkc), &["frobnicate"]);
    assert_eq!(code(&o), 2);
    // --help documents the exit codes.
    let o = run(Command::new(dkc), &["--help"]);
    assert_eq!(code(&o), 0);
    let help = stdout(&o);
    assert!(
        help.contains("Exit codes") && help.contains("3  cluster unavailable"),
        "{help}"
    );
    // A bad config file: exit 2 with the file named.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ini");
    std::fs::write(&bad, "[GLOBAL]\nNOSUCHKEY = 1\n").unwrap();
    let o = run(
        Command::new(dkc),
        &["--conf", bad.to_str().unwrap(), "get", "k"],
    );
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.ini"));
    // A valid config whose chmpx is not running: unavailable, exit 3, quickly.
    let conf = dir.path().join("down.ini");
    std::fs::write(
        &conf,
        format!(
            "[GLOBAL]\nGROUP = down{}\nDATADIR = {}\n\n[SVRNODE]\nNAME = 127.0.0.1\nPORT = 1\nCTLPORT = 2\n\n\
             [SLVNODE]\nNAME = 127.0.0.1\nCTLPORT = 3\n",
            std::process::id(),
            dir.path().display()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = run(
        Command::new(dkc),
        &[
            "--conf",
            conf.to_str().unwrap(),
            "--ctlport",
            "3",
            "--timeout-ms",
            "300",
            "get",
            "k",
        ],
    );
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
