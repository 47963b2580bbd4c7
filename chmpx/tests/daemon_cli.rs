//! The binaries' command lines: `chmpx --check`, a bad config refused before anything starts,
//! `chmpxctl` exit codes, `chmpxstatus` table / JSON / top, and the metrics endpoint.

mod daemon_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use chmpx::daemon::status::StatusReport;
use daemon_support::*;

const CTL: &str = env!("CARGO_BIN_EXE_chmpxctl");
const STATUS: &str = env!("CARGO_BIN_EXE_chmpxstatus");

fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tool");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the cluster's file named `name`, with `line` added to [GLOBAL].
fn conf_with_global_line(c: &Cluster, name: &str, line: &str) -> std::path::PathBuf {
    let path = c.dir.path().join(name);
    let text = std::fs::read_to_string(&c.conf)
        .unwrap()
        .replace("[GLOBAL]\n", &format!("[GLOBAL]\n{line}\n"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn daemon_check_and_bad_config() {
    let c = Cluster::configure(2, true);
    let conf = c.conf.to_str().unwrap().to_string();
    let port = c.servers[0].ctlport.to_string();
    let (code, out, err) = run(CHMPX, &["--conf", &conf, "--ctlport", &port, "--check"]);
    assert_eq!(code, 0, "--check of a good file: {out}{err}");
    assert!(!out.trim().is_empty(), "--check prints a report");

    // More attachments than any kernel allows queues for (2 x 32,640 > HARD_QUEUESMAX): the
    // report says TOO LOW and the status is 1, so scripts need not read the report.
    let greedy = conf_with_global_line(&c, "greedy.ini", "MAXMQCLIENT = 32640");
    let (code, out, err) = run(
        CHMPX,
        &[
            "--conf",
            greedy.to_str().unwrap(),
            "--ctlport",
            &port,
            "--check",
        ],
    );
    assert_eq!(code, 1, "--check with limits too low: {out}{err}");
    assert!(
        out.contains("TOO LOW") && out.contains("fs.mqueue.queues_max"),
        "{out}"
    );

    let bad = conf_with_global_line(&c, "bad.ini", "NOSUCHKEY = 1");
    let (code, _, err) = run(
        CHMPX,
        &["--conf", bad.to_str().unwrap(), "--ctlport", &port],
    );
    assert_eq!(code, 2, "a bad file is refused: {err}");
    assert!(
        err.contains("bad.ini") && err.contains("NOSUCHKEY"),
        "the error names file and key: {err}"
    );
    // Nothing started: the control port is not listening.
    assert!(status(c.ctl_addr(c.servers[0].ctlport)).is_none());
}

#[test]
fn daemon_tools_and_metrics() {
    let c = Cluster::start(3, true);
    let host_args = |p: u16| {
        vec![
            "--host".to_string(),
            "127.0.0.1".to_string(),
            "--ctlport".to_string(),
            p.to_string(),
        ]
    };
    let p0 = c.servers[0].ctlport;

    let mut a = host_args(p0);
    a.push("VERSION".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out, _) = run(CTL, &a);
    assert_eq!(code, 0);
    assert!(out.starts_with("chmpx "), "{out}");

    let mut a = host_args(p0);
    a.push("FROB".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, _, err) = run(CTL, &a);
    assert_eq!(code, 1, "an ERR answer exits 1: {err}");

    let dead = free_ports(1)[0];
    let a = host_args(dead);
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    a.push("VERSION");
    let (code, _, _) = run(CTL, &a);
    assert_eq!(code, 2, "an unreachable daemon exits 2");

    // chmpxstatus through the config file (this host's entry chosen by --ctlport).
    let conf = c.conf.to_str().unwrap().to_string();
    let (code, out, err) = run(STATUS, &["--conf", &conf, "--ctlport", &p0.to_string()]);
    assert_eq!(code, 0, "{err}");
    for s in &c.servers {
        assert!(
            out.contains(s.id().as_str()),
            "table lists {}: {out}",
            s.id()
        );
    }
    assert!(
        out.contains("UP") && out.contains("SERVICE IN") && out.contains("SLAVE"),
        "{out}"
    );
    let (code, out, _) = run(
        STATUS,
        &[
            "--host",
            "127.0.0.1",
            "--ctlport",
            &c.slave_ctlport.to_string(),
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let r: StatusReport = serde_json::from_str(&out).expect("--json is a StatusReport");
    assert_eq!(r.mode, "slave");
    assert_eq!(r.nodes.len(), 4);
    assert_eq!(
        r.nodes.iter().map(|n| n.slots_owned).sum::<u32>(),
        SLOT_COUNT * (REPLICA + 1)
    );
    let (code, out, _) = run(
        STATUS,
        &[
            "--host",
            "127.0.0.1",
            "--ctlport",
            &p0.to_string(),
            "--top",
            "--count",
            "2",
            "--interval",
            "0.1",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.matches("\x1b[2J").count(),
        2,
        "--top --count 2 draws twice"
    );

    // Traffic, then the metrics endpoint shows it.
    let client = c.client(c.servers[0].ctlport);
    for i in 0..20u32 {
        ask(&client, chmpx::placement::key_hash(&i.to_le_bytes()), b"m").unwrap();
    }
    let mut s = TcpStream::connect(("127.0.0.1", c.servers[0].metrics)).expect("metrics port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let routed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("chmpx_messages_routed_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("routed counter");
    assert!(routed >= 20, "{routed}");
    assert!(text.contains("chmpx_peer_up{peer="), "{text}");
}

/// IPCMODE applies to the objects chmpx creates itself (its accept queue and its marker
/// segment), not only to those of the processes that attach (DESIGN §2: 0600 unless
/// configured).
#[test]
fn daemon_creates_its_queue_and_segment_with_ipcmode() {
    use chmpx::attach::names::ChmpxNames;
    use chmpx::ipc::mq::{Access, MessageQueue};
    use chmpx::ipc::shm::segment_mode;
    use chmpx::testkit::ini::keys;

    let mut c = Cluster::configure(1, true);
    let mut ini = cluster_ini(c.dir.path(), &c.group, &c.servers, c.slave_ctlport, true);
    ini.global_extra = keys(&[("IPCMODE", "0640")]);
    ini.write_checked(&c.conf).unwrap_or_else(|e| panic!("{e}"));
    c.start_all();
    for ctlport in [c.servers[0].ctlport, c.slave_ctlport] {
        let names = ChmpxNames::new(&c.group, ctlport).unwrap();
        let q = MessageQueue::open(&names.accept_queue(), Access::Read, true)
            .unwrap_or_else(|e| panic!("accept queue of chmpx {ctlport}: {e}"));
        assert_eq!(q.mode().unwrap(), 0o640, "{}", q.name());
        assert_eq!(
            segment_mode(&names.chmpx_segment()),
            Some(0o640),
            "marker segment of chmpx {ctlport}"
        );
    }
}
