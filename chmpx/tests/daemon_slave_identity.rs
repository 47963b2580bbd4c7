//! Slaves matched by one any-host `[SLVNODE] NAME = [.]*` entry are separate nodes: each is
//! named by the address it connects from and its own control port, so two of them on one host
//! (told apart by `--ctlport`) both get answers, their links to the servers do not replace one
//! another, and the status of every server shows both. Real chmpx, chmpx-echo and chmpxstatus
//! processes on 127.0.0.1.

mod daemon_support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chmpx::config::Config;
use chmpx::daemon::status::{Live, Ring, StatusReport};
use chmpx::placement::key_hash;
use chmpx::testkit::control::{self, WaitError};
use chmpx::testkit::procs::{log_tail, Output, Procs};
use daemon_support::*;

const STATUS_BIN: &str = env!("CARGO_BIN_EXE_chmpxstatus");
/// Server nodes of the test cluster.
const SERVERS: usize = 2;
/// How long each slave's client keeps asking.
const LOAD_FOR: Duration = Duration::from_secs(4);
/// Log lines that mean a link went down or was replaced by another connection.
const FLAP_MARKS: [&str; 3] = ["link DOWN", "peer DOWN", "newer link replaces the old one"];
/// Longest wait for a refused connection to be closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

struct Run {
    dir: tempfile::TempDir,
    group: String,
    servers: Vec<Server>,
    /// The control ports of the two slaves; the any-host entry's CTLPORT is the first.
    slaves: [u16; 2],
    procs: Procs,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.procs.kill_all();
        remove_ipc_objects(&self.group);
    }
}

fn chmpx_name(ctlport: u16) -> String {
    format!("chmpx-{ctlport}")
}

impl Run {
    fn ctlports(&self) -> Vec<u16> {
        self.servers
            .iter()
            .map(|s| s.ctlport)
            .chain(self.slaves)
            .collect()
    }

    fn log(&self, ctlport: u16) -> String {
        std::fs::read_to_string(self.procs.log_path(&chmpx_name(ctlport))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        self.ctlports()
            .into_iter()
            .map(|p| {
                let tail = log_tail(&self.procs.log_path(&chmpx_name(p)), LOG_TAIL_LINES);
                format!("--- chmpx {p} (last lines)\n{tail}\n")
            })
            .collect()
    }

    fn wait_until(&self, ctlport: u16, what: &str, pred: impl Fn(&StatusReport) -> bool) {
        let deadline = Instant::now() + WAIT_MAX;
        match control::wait_for_status(
            control::addr(ctlport),
            CONTROL_TIMEOUT,
            deadline,
            pred,
            || None,
        ) {
            Ok(_) => {}
            Err(WaitError::TimedOut { last }) => panic!(
                "node {ctlport}: timed out waiting for {what}; last status: {last:#?}\n{}",
                self.logs()
            ),
            Err(WaitError::Aborted(why)) => panic!("node {ctlport}: {why}\n{}", self.logs()),
        }
    }

    fn spawn(&mut self, name: &str, program: &str, args: Vec<String>, output: Output) {
        self.procs
            .spawn(name, Path::new(program), &args, output)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The id a slave on 127.0.0.1 with control port `ctlport` must have.
fn slave_id(ctlport: u16) -> String {
    format!("127.0.0.1:{ctlport}")
}

/// Whether `r` lists both slaves UP under their own ids, and no node named by the entry.
fn sees_both_slaves(r: &StatusReport, slaves: &[u16; 2]) -> bool {
    slaves.iter().all(|&p| {
        r.nodes
            .iter()
            .any(|n| n.id == slave_id(p) && n.ring == Ring::Slave && n.live == Live::Up)
    }) && !r.nodes.iter().any(|n| n.id.starts_with('*'))
}

/// Starts 2 servers with echo processes and 2 slaves matched by one `[.]*` entry.
fn start() -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let group = format!("si{}", std::process::id());
    let ports = free_ports(3 * SERVERS + 2);
    let servers: Vec<Server> = (0..SERVERS)
        .map(|i| Server {
            port: ports[3 * i],
            ctlport: ports[3 * i + 1],
            metrics: ports[3 * i + 2],
        })
        .collect();
    let slaves = [ports[3 * SERVERS], ports[3 * SERVERS + 1]];
    let ini = cluster_ini(dir.path(), &group, &servers, slaves[0], true);
    // The one slave entry admits any host: CHMPX's `[.]*`.
    let text = ini
        .render()
        .replace("[SLVNODE]\nNAME = 127.0.0.1", "[SLVNODE]\nNAME = [.]*");
    assert!(text.contains("NAME = [.]*"), "{text}");
    let conf = dir.path().join("cluster.ini");
    Config::parse_str(&text, &conf).unwrap_or_else(|e| panic!("{e}\n{text}"));
    std::fs::write(&conf, &text).unwrap();
    let procs = Procs::new(dir.path());
    let mut run = Run {
        dir,
        group,
        servers,
        slaves,
        procs,
    };
    for p in run.ctlports() {
        let args = vec![
            "--conf".into(),
            conf.display().to_string(),
            "--ctlport".into(),
            p.to_string(),
            "--log-level".into(),
            std::env::var("DAEMON_TEST_LOG").unwrap_or_else(|_| "info".into()),
        ];
        run.spawn(&chmpx_name(p), CHMPX, args, Output::StderrToLog);
    }
    for i in 0..SERVERS {
        let s = &run.servers[i];
        let args = vec![
            "--cluster".into(),
            run.group.clone(),
            "--ctlport".into(),
            s.ctlport.to_string(),
            "--node-id".into(),
            s.id().as_str().to_string(),
        ];
        run.spawn(&format!("echo-{i}"), ECHO, args, Output::Discard);
    }
    for p in run.ctlports() {
        run.wait_until(p, "every server UP with a server attached, no merge", |r| {
            control::servers_ready(r) && control::merges_idle(r)
        });
    }
    let slaves = run.slaves;
    for s in run.servers.iter().map(|s| s.ctlport) {
        run.wait_until(s, "both slaves UP under their own ids", |r| {
            sees_both_slaves(r, &slaves)
        });
    }
    run
}

/// Counts the lines of `log` that mean a link flapped.
fn flaps(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| FLAP_MARKS.iter().any(|m| l.contains(m)))
        .collect()
}

#[test]
fn two_slaves_of_one_any_host_entry_are_two_nodes_and_both_get_answers() {
    let run = start();
    // Each slave names itself by its address and its own control port.
    for p in run.slaves {
        let r = status(control::addr(p)).expect("slave status");
        assert_eq!(r.self_id, slave_id(p), "{r:#?}");
        assert_eq!(r.mode, "slave");
    }
    let before: Vec<usize> = run
        .ctlports()
        .iter()
        .map(|&p| flaps(&run.log(p)).len())
        .collect();

    // A client on each slave asks for LOAD_FOR, at the same time.
    let stop = Arc::new(AtomicBool::new(false));
    let map = PlacementMapOf::new(&run);
    let workers: Vec<_> = run
        .slaves
        .iter()
        .map(|&p| {
            let (group, stop, map) = (run.group.clone(), stop.clone(), map.clone());
            std::thread::spawn(move || {
                let opts = chmpx::attach::AttachOptions {
                    connect_timeout_ms: 10_000,
                    ..chmpx::attach::AttachOptions::default()
                };
                let client = chmpx::attach::Attachment::connect(
                    &group,
                    p,
                    chmpx::attach::Role::Client,
                    opts,
                )
                .expect("client attach");
                let (mut ok, mut failed) = (0u64, Vec::new());
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("slave-{p}-{i}");
                    let h = key_hash(key.as_bytes());
                    match ask(&client, h, key.as_bytes()) {
                        Ok((node, body)) if body == key.as_bytes() && node == map.primary(h) => {
                            ok += 1
                        }
                        Ok((node, _)) => failed.push(format!("{key}: wrong answer from {node}")),
                        Err(e) => failed.push(format!("{key}: {e}")),
                    }
                }
                (p, ok, failed)
            })
        })
        .collect();
    std::thread::sleep(LOAD_FOR);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let (p, ok, failed) = w.join().expect("client thread");
        eprintln!("slave {p}: {ok} answers, {} failures", failed.len());
        assert!(
            failed.is_empty(),
            "slave {p}: {} of {} requests failed, first: {:?}\n{}",
            failed.len(),
            ok + failed.len() as u64,
            failed.first(),
            run.logs()
        );
        assert!(ok >= 100, "slave {p}: only {ok} answers in {LOAD_FOR:?}");
    }

    // Another host (127.0.0.2) cannot take a slave's identity: its Hello claiming the first
    // slave's id is refused, naming the rule, and the real slave's link stays.
    for s in &run.servers {
        let reason = spoof_hello(&run, s.port, &slave_id(run.slaves[0]));
        assert!(
            reason.contains("slave id") && reason.contains("127.0.0.2"),
            "server {}: {reason:?}",
            s.ctlport
        );
        // The server writes its log line after sending the Close frame: poll for it.
        let logged_by = Instant::now() + CLOSE_WITHIN;
        let refused_logged = || {
            run.log(s.ctlport)
                .lines()
                .any(|l| l.contains("inbound connection refused") && l.contains("slave id"))
        };
        while !refused_logged() && Instant::now() < logged_by {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            refused_logged(),
            "server {}: no log line for the refused slave id within {CLOSE_WITHIN:?}",
            s.ctlport
        );
    }

    // No link went down or was replaced while both slaves were busy.
    for (p, n0) in run.ctlports().into_iter().zip(before) {
        let log = run.log(p);
        let all = flaps(&log);
        assert_eq!(
            all.len(),
            n0,
            "chmpx {p}: links flapped under load: {:?}",
            &all[n0..]
        );
    }
    // Each server admitted each slave exactly once.
    for s in &run.servers {
        let log = run.log(s.ctlport);
        for p in run.slaves {
            let id = slave_id(p);
            let ups = log
                .lines()
                .filter(|l| l.contains("link UP") && l.contains(&id))
                .count();
            assert_eq!(
                ups, 1,
                "server {}: slave {id} linked {ups} times",
                s.ctlport
            );
        }
    }

    // ALLSTATUS (text) and STATUSJSON show the slaves by their own ids, and not the entry.
    for s in &run.servers {
        let addr = control::addr(s.ctlport);
        let (ok, text) = control(addr, "ALLSTATUS").expect("ALLSTATUS");
        assert!(ok, "{text}");
        for p in run.slaves {
            let line = text
                .lines()
                .find(|l| l.contains(&slave_id(p)))
                .unwrap_or_else(|| panic!("ALLSTATUS lacks slave {p}:\n{text}"));
            assert!(line.contains("SLAVE") && line.contains("UP"), "{line}");
        }
        assert!(
            !text.contains("*:"),
            "the any-host entry is no node:\n{text}"
        );
        let r = status(addr).expect("STATUSJSON");
        assert!(sees_both_slaves(&r, &run.slaves), "{r:#?}");
    }

    // chmpxstatus shows both slaves, as a table and as JSON.
    let ctlport = run.servers[0].ctlport.to_string();
    for json in [false, true] {
        let mut cmd = Command::new(STATUS_BIN);
        cmd.args(["--host", "127.0.0.1", "--ctlport", &ctlport]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("chmpxstatus");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        for p in run.slaves {
            assert!(
                text.contains(&slave_id(p)),
                "chmpxstatus lacks slave {p}:\n{text}"
            );
        }
    }
    // And from the config, --ctlport picks the second slave (the entry's CTLPORT is the first).
    let out = Command::new(STATUS_BIN)
        .args(["--conf"])
        .arg(run.dir.path().join("cluster.ini"))
        .args(["--ctlport", &run.slaves[1].to_string(), "--json"])
        .output()
        .expect("chmpxstatus");
    let r: StatusReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(r.self_id, slave_id(run.slaves[1]));
}

/// The primary of every hash, as every node computes it (all servers are members).
#[derive(Clone)]
struct PlacementMapOf(Arc<chmpx::placement::PlacementMap>);

impl PlacementMapOf {
    fn new(run: &Run) -> Self {
        let ids: Vec<_> = run.servers.iter().map(Server::id).collect();
        PlacementMapOf(Arc::new(
            chmpx::placement::PlacementMap::compute(0, &ids, SLOT_COUNT, REPLICA).unwrap(),
        ))
    }

    fn primary(&self, hash: u64) -> String {
        self.0.chain_for(hash)[0].to_string()
    }
}

/// Connects to the data port `port` from 127.0.0.2, sends a Hello claiming `id`, and returns
/// the reason of the Close the server answers with ("" if none).
fn spoof_hello(run: &Run, port: u16, id: &str) -> String {
    use chmpx::link::frame::{decode_frame, encode_to_vec};
    use chmpx::link::{Frame, FrameBody};
    use std::io::{Read, Write};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0)))?;
            socket
                .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                .await
        })
        .expect("connect from 127.0.0.2");
    let mut s = stream.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    let hello = Frame::new(
        &run.group,
        FrameBody::Hello {
            node_id: id.to_owned(),
            nonce: vec![1; chmpx::link::limits::NONCE_BYTES],
        },
    );
    let _ = s.write_all(&encode_to_vec(&hello, 1 << 20).unwrap());
    s.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    match decode_frame(&got, 1 << 20) {
        Ok((frame, _)) => match frame.body {
            FrameBody::Close { reason } => reason,
            _ => String::new(),
        },
        Err(_) => String::new(),
    }
}
