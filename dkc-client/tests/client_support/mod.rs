//! Harness of the driver and CLI scenario tests: a real local cluster — 3 chmpx server nodes,
//! 3 dkc-server processes and 1 slave chmpx on 127.0.0.1 — from a generated INI with unique
//! ports, a unique GROUP per test and data in a temp dir. Readiness by polling the control
//! ports and a first successful request, never a fixed sleep; every child is killed on drop,
//! even when the test fails.
//!
//! The chmpx and dkc-server binaries belong to other packages, so `env!("CARGO_BIN_EXE_...")`
//! cannot name them: they are looked up next to this test's executable (target/<profile>/),
//! or in `DKC_TEST_BIN_DIR`. Build them first:
//! `cargo build --release -p chmpx -p dkc-server` (same profile and target dir as the test).
//!
//! The generic parts (INI, processes, control port, IPC cleanup) are `chmpx::testkit`'s.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chmpx::daemon::status::Live;
use chmpx::testkit::control::{self, WaitError};
use chmpx::testkit::ini::{keys, ClusterIni, NodePorts};
use chmpx::testkit::procs::{log_tail, Output, Procs};
use dkc_client::client::{Client, ClientOptions, StoreOptions};

pub use chmpx::testkit::ipc::remove_ipc_objects;

/// Server nodes per test cluster.
pub const SERVER_COUNT: usize = 3;
/// Longest wait for the cluster to come up.
pub const READY_WAIT_MAX: Duration = Duration::from_secs(30);
/// Per-request timeout of test clients.
pub const TEST_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Longest wait for one status answer.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// Log lines of each process shown when a test fails.
pub const LOG_TAIL_LINES: usize = 10;

static SEQ: AtomicU32 = AtomicU32::new(0);
/// One cluster at a time per test binary: seven processes each, on a small shared machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Where the chmpx and dkc-server binaries are.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DKC_TEST_BIN_DIR") {
        return PathBuf::from(d);
    }
    chmpx::testkit::bins::profile_dir().unwrap_or_else(|e| panic!("{e}"))
}

fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: these tests start real chmpx and dkc-server processes; build them \
         first with `cargo build --release -p chmpx -p dkc-server` (same profile and \
         CARGO_TARGET_DIR as the tests), or point DKC_TEST_BIN_DIR at them",
        p.display()
    );
    p
}

/// One server node's ports.
pub struct Node {
    pub port: u16,
    pub ctlport: u16,
}

/// A running cluster; dropping it kills every process and removes their IPC objects.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub group: String,
    pub nodes: Vec<Node>,
    pub slave_ctlport: u16,
    procs: Procs,
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.procs.kill_all();
        remove_ipc_objects(&self.group);
    }
}

fn write_conf(dir: &Path, group: &str, nodes: &[Node], slave_ctlport: u16) -> PathBuf {
    let ini = ClusterIni {
        group: group.to_string(),
        datadir: dir.to_path_buf(),
        replica: 1,
        slot_count: 64,
        automerge: true,
        heartbeat_interval_ms: 200,
        heartbeat_timeout_ms: 1000,
        global_extra: keys(&[("MAXMQSERVER", "2"), ("MAXMQCLIENT", "8")]),
        servers: nodes
            .iter()
            .map(|n| NodePorts::server(n.port, n.ctlport))
            .collect(),
        slaves: vec![NodePorts::slave(slave_ctlport)],
        k2hdkc: keys(&[
            ("K2HTYPE", "file"),
            ("K2HFILE", "dkc.k2h"),
            ("K2HMASKBIT", "4"),
            ("K2HCMASKBIT", "4"),
            ("MAXTHREAD", "4"),
        ]),
    };
    ini.write_checked(&dir.join("cluster.ini"))
        .unwrap_or_else(|e| panic!("{e}"))
}

impl Cluster {
    /// Starts 3 server chmpx + 3 dkc-server + 1 slave chmpx and waits until every node sees
    /// every server UP and attached with no merge under way, and a client can store through
    /// the slave.
    pub fn start() -> Cluster {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let (chmpx, server) = (bin("chmpx"), bin("dkc-server"));
        let dir = tempfile::tempdir().expect("tempdir");
        let group = format!(
            "dc{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ports = chmpx::testkit::ports::free_ports(2 * SERVER_COUNT + 1).expect("free ports");
        let nodes: Vec<Node> = (0..SERVER_COUNT)
            .map(|i| Node {
                port: ports[2 * i],
                ctlport: ports[2 * i + 1],
            })
            .collect();
        let slave_ctlport = ports[2 * SERVER_COUNT];
        let conf = write_conf(dir.path(), &group, &nodes, slave_ctlport);
        let procs = Procs::new(dir.path());
        let mut c = Cluster {
            dir,
            conf,
            group,
            nodes,
            slave_ctlport,
            procs,
            _serial: serial,
        };
        let ctlports: Vec<u16> = c.nodes.iter().map(|n| n.ctlport).collect();
        for &p in &ctlports {
            c.spawn(&chmpx, &format!("chmpx-{p}"), p);
        }
        c.spawn(&chmpx, &format!("chmpx-{slave_ctlport}"), slave_ctlport);
        for &p in &ctlports {
            c.spawn(&server, &format!("dkc-server-{p}"), p);
        }
        c.wait_ready();
        c
    }

    fn spawn(&mut self, exe: &Path, name: &str, ctlport: u16) {
        let args = [
            "--conf".to_string(),
            self.conf.display().to_string(),
            "--ctlport".to_string(),
            ctlport.to_string(),
        ];
        self.procs
            .spawn(name, exe, &args, Output::StderrToLog)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Kills the process named `name` (e.g. "chmpx-<ctlport>") and returns whether it ran.
    pub fn kill(&mut self, name: &str) -> bool {
        self.procs.kill(name)
    }

    /// Starts the slave chmpx again (after [`Cluster::kill`]).
    pub fn restart_slave(&mut self) {
        let chmpx = bin("chmpx");
        let p = self.slave_ctlport;
        self.spawn(&chmpx, &format!("chmpx-{p}"), p);
    }

    /// The last lines of every running process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in self.procs.names() {
            let tail = log_tail(&self.procs.log_path(&name), LOG_TAIL_LINES);
            out.push_str(&format!("--- {name}\n{tail}\n"));
        }
        out
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WAIT_MAX;
        let mut views: Vec<u16> = self.nodes.iter().map(|n| n.ctlport).collect();
        views.push(self.slave_ctlport);
        for v in views {
            // A server that attaches reconciles its slots (the startup recovery merge) and
            // serves no reads of them until that is done: wait for it, or a test's first read
            // races the merge.
            let waited = control::wait_for_status(
                control::addr(v),
                STATUS_TIMEOUT,
                deadline,
                |r| control::servers_ready(r) && control::merges_idle(r),
                || self.exited_early(),
            );
            match waited {
                Ok(_) => {}
                Err(WaitError::Aborted(why)) => panic!("{why}"),
                Err(WaitError::TimedOut { last }) => panic!(
                    "cluster not ready after {READY_WAIT_MAX:?} (node {v}); last status: \
                     {last:#?}\n{}",
                    self.logs()
                ),
            }
        }
        // Every node sees every server: now a write must go through.
        let client = self.client();
        loop {
            match client.set("__ready", "1", StoreOptions::new()) {
                Ok(_) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no write went through after {READY_WAIT_MAX:?}: {e}\n{}",
                    self.logs()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = client.delete("__ready");
    }

    /// A process that exited while it should be starting, with its whole log.
    fn exited_early(&mut self) -> Option<String> {
        let (name, status) = self.procs.first_exited()?;
        let text = std::fs::read_to_string(self.procs.log_path(&name)).unwrap_or_default();
        Some(format!("{name} exited early with {status}:\n{text}"))
    }

    /// Options of test clients.
    pub fn options(&self) -> ClientOptions {
        let cfg = chmpx::config::Config::load(&self.conf).expect("conf");
        let mut o = ClientOptions::from_config(&cfg);
        o.request_timeout = Duration::from_millis(TEST_REQUEST_TIMEOUT_MS);
        o.attach.connect_timeout_ms = 10_000;
        o
    }

    /// A blocking client attached to the slave chmpx.
    pub fn client(&self) -> Client {
        let cfg = chmpx::config::Config::load(&self.conf).expect("conf");
        Client::from_config(&cfg, Some(self.slave_ctlport), self.options())
            .unwrap_or_else(|e| panic!("client attach: {e}\n{}", self.logs()))
    }

    /// The `dkc` CLI with --conf and --ctlport of the slave.
    pub fn dkc(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dkc"));
        cmd.args([
            "--conf",
            self.conf.to_str().expect("utf-8 path"),
            "--ctlport",
            &self.slave_ctlport.to_string(),
        ]);
        cmd
    }
}

impl Cluster {
    /// Waits until the slave chmpx sees server `i` DOWN.
    pub fn wait_server_down(&self, i: usize) {
        let deadline = Instant::now() + READY_WAIT_MAX;
        let id = format!("127.0.0.1:{}", self.nodes[i].ctlport);
        let waited = control::wait_for_status(
            control::addr(self.slave_ctlport),
            STATUS_TIMEOUT,
            deadline,
            |r| r.nodes.iter().any(|n| n.id == id && n.live != Live::Up),
            || None,
        );
        if waited.is_err() {
            panic!("{id} still UP as the slave sees it\n{}", self.logs());
        }
    }
}

impl Cluster {
    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the process named `name`.
    pub fn signal(&self, name: &str, signal: i32) {
        self.procs
            .signal(name, signal)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
