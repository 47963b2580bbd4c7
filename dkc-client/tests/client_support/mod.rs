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
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chmpx::daemon::status::{Live, Ring, StatusReport};
use dkc_client::client::{Client, ClientOptions, StoreOptions};

/// Server nodes per test cluster.
pub const SERVER_COUNT: usize = 3;
/// Longest wait for the cluster to come up.
pub const READY_WAIT_MAX: Duration = Duration::from_secs(30);
/// Per-request timeout of test clients.
pub const TEST_REQUEST_TIMEOUT_MS: u64 = 5_000;

static SEQ: AtomicU32 = AtomicU32::new(0);
/// One cluster at a time per test binary: seven processes each, on a small shared machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Ports nobody listens on now (held together so that they differ).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Where the chmpx and dkc-server binaries are.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DKC_TEST_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable has no grandparent")
        .to_path_buf()
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
    children: Vec<(String, Child)>,
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_ipc_objects(&self.group);
    }
}

/// Removes queues and segments the killed processes of `group` left behind.
pub fn remove_ipc_objects(group: &str) {
    let prefix = format!("dkc.{group}.");
    let unlink_queue = |name: String| {
        if let Ok(c) = std::ffi::CString::new(name) {
            // SAFETY: mq_unlink reads a NUL-terminated name and touches no memory of ours.
            unsafe { libc::mq_unlink(c.as_ptr()) };
        }
    };
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) {
            continue;
        }
        if let Some(base) = name.strip_suffix(".chmpx") {
            unlink_queue(format!("/{base}.accept"));
        } else {
            unlink_queue(format!("/{name}.up"));
            unlink_queue(format!("/{name}.dn"));
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

fn write_conf(dir: &Path, group: &str, nodes: &[Node], slave_ctlport: u16) -> PathBuf {
    let mut ini = format!(
        "[GLOBAL]\nGROUP = {group}\nREPLICA = 1\nSLOTCOUNT = 64\nAUTOMERGE = on\n\
         MAXMQSERVER = 2\nMAXMQCLIENT = 8\n\
         HEARTBEATINTERVAL = 200\nHEARTBEATTIMEOUT = 1000\nMAXPAYLOAD = 1M\nDATADIR = {}\n",
        dir.display()
    );
    for n in nodes {
        ini.push_str(&format!(
            "\n[SVRNODE]\nNAME = 127.0.0.1\nPORT = {}\nCTLPORT = {}\n",
            n.port, n.ctlport
        ));
    }
    ini.push_str(&format!(
        "\n[SLVNODE]\nNAME = 127.0.0.1\nCTLPORT = {slave_ctlport}\n\n\
         [K2HDKC]\nK2HTYPE = file\nK2HFILE = dkc.k2h\nK2HMASKBIT = 4\nK2HCMASKBIT = 4\nMAXTHREAD = 4\n"
    ));
    let path = dir.join("cluster.ini");
    std::fs::write(&path, ini).expect("write ini");
    path
}

impl Cluster {
    /// Starts 3 server chmpx + 3 dkc-server + 1 slave chmpx and waits until a client can
    /// store and read through the slave.
    pub fn start() -> Cluster {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let (chmpx, server) = (bin("chmpx"), bin("dkc-server"));
        let dir = tempfile::tempdir().expect("tempdir");
        let group = format!(
            "dc{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ports = free_ports(2 * SERVER_COUNT + 1);
        let nodes: Vec<Node> = (0..SERVER_COUNT)
            .map(|i| Node {
                port: ports[2 * i],
                ctlport: ports[2 * i + 1],
            })
            .collect();
        let slave_ctlport = ports[2 * SERVER_COUNT];
        let conf = write_conf(dir.path(), &group, &nodes, slave_ctlport);
        let mut c = Cluster {
            dir,
            conf,
            group,
            nodes,
            slave_ctlport,
            children: Vec::new(),
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
        let log =
            std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file");
        let child = Command::new(exe)
            .args([
                "--conf",
                self.conf.to_str().expect("utf-8 path"),
                "--ctlport",
                &ctlport.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        self.children.push((name.to_string(), child));
    }

    /// Kills the process named `name` (e.g. "chmpx-<ctlport>") and returns whether it ran.
    pub fn kill(&mut self, name: &str) -> bool {
        match self.children.iter().position(|(n, _)| n == name) {
            Some(i) => {
                let (_, mut c) = self.children.remove(i);
                let _ = c.kill();
                let _ = c.wait();
                true
            }
            None => false,
        }
    }

    /// Starts the slave chmpx again (after [`Cluster::kill`]).
    pub fn restart_slave(&mut self) {
        let chmpx = bin("chmpx");
        let p = self.slave_ctlport;
        self.spawn(&chmpx, &format!("chmpx-{p}"), p);
    }

    /// The last lines of every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            out.push_str(&format!("--- {name}\n"));
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn status(&self, ctlport: u16) -> Option<StatusReport> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], ctlport));
        let (ok, text) = rt
            .block_on(chmpx::daemon::control::query(
                addr,
                "STATUSJSON",
                Duration::from_secs(3),
            ))
            .ok()?;
        if !ok {
            return None;
        }
        serde_json::from_str(text.trim()).ok()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WAIT_MAX;
        let mut views: Vec<u16> = self.nodes.iter().map(|n| n.ctlport).collect();
        views.push(self.slave_ctlport);
        for v in views {
            loop {
                let ready = self.status(v).is_some_and(|r| {
                    r.nodes
                        .iter()
                        .filter(|n| n.ring != Ring::Slave)
                        .all(|n| n.live == Live::Up && n.server_attached)
                });
                if ready {
                    break;
                }
                self.check_alive();
                assert!(
                    Instant::now() < deadline,
                    "cluster not ready after {READY_WAIT_MAX:?} (node {v})\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(50));
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

    fn check_alive(&mut self) {
        for (name, c) in &mut self.children {
            if let Ok(Some(status)) = c.try_wait() {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                panic!("{name} exited early with {status}:\n{text}");
            }
        }
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
        loop {
            let down = self
                .status(self.slave_ctlport)
                .is_some_and(|r| r.nodes.iter().any(|n| n.id == id && n.live != Live::Up));
            if down {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still UP as the slave sees it\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Cluster {
    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the process named `name`.
    pub fn signal(&self, name: &str, signal: i32) {
        let (_, child) = self
            .children
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }
}
