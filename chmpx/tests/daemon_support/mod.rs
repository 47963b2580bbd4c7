//! Shared harness of the daemon scenario tests: a generated INI with unique ports, real chmpx
//! and chmpx-echo processes, readiness by polling the control port, and a guard that kills every
//! child on drop (even when the test fails).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chmpx::attach::{AttachOptions, Attachment, Role, Route};
use chmpx::daemon::status::{Live, StatusReport};
use chmpx::placement::{NodeId, PlacementMap};

pub const CHMPX: &str = env!("CARGO_BIN_EXE_chmpx");
pub const ECHO: &str = env!("CARGO_BIN_EXE_chmpx-echo");
pub const SLOT_COUNT: u32 = 64;
pub const REPLICA: u32 = 1;
pub const HEARTBEAT_INTERVAL_MS: u64 = 200;
pub const HEARTBEAT_TIMEOUT_MS: u64 = 1000;
/// Longest wait for any state change in these tests.
pub const WAIT_MAX: Duration = Duration::from_secs(20);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Ports nobody listens on right now (held together so they differ).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub struct Server {
    pub port: u16,
    pub ctlport: u16,
    pub metrics: u16,
}

impl Server {
    pub fn id(&self) -> NodeId {
        NodeId::from_host_port("127.0.0.1", self.ctlport)
    }
}

/// A cluster of real processes; dropping it kills them all.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub group: String,
    pub servers: Vec<Server>,
    pub slave_ctlport: u16,
    pub chmpx: Vec<Option<Child>>,
    pub echo: Vec<Option<Child>>,
    pub slave: Option<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let all = self
            .chmpx
            .iter_mut()
            .chain(self.echo.iter_mut())
            .chain(std::iter::once(&mut self.slave));
        for c in all.flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_ipc_objects(&self.group);
    }
}

/// Removes the queues and segments killed processes of `group` left behind (a SIGKILLed chmpx
/// cannot clean up, and queues count against the system-wide `queues_max`).
pub fn remove_ipc_objects(group: &str) {
    let prefix = format!("dkc.{group}.");
    let unlink_queue = |name: String| {
        if let Ok(c) = std::ffi::CString::new(name) {
            // SAFETY: mq_unlink takes a NUL-terminated name and touches no memory of ours.
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

pub fn write_conf(
    dir: &std::path::Path,
    group: &str,
    servers: &[Server],
    slave_ctlport: u16,
    automerge: bool,
) -> PathBuf {
    let mut ini = format!(
        "[GLOBAL]\nGROUP = {group}\nREPLICA = {REPLICA}\nSLOTCOUNT = {SLOT_COUNT}\nAUTOMERGE = {}\nHEARTBEATINTERVAL = {HEARTBEAT_INTERVAL_MS}\nHEARTBEATTIMEOUT = {HEARTBEAT_TIMEOUT_MS}\nDATADIR = {}\n",
        if automerge { "on" } else { "off" },
        dir.display()
    );
    for s in servers {
        ini.push_str(&format!(
            "\n[SVRNODE]\nNAME = 127.0.0.1\nPORT = {}\nCTLPORT = {}\nMETRICSPORT = {}\n",
            s.port, s.ctlport, s.metrics
        ));
    }
    ini.push_str(&format!(
        "\n[SLVNODE]\nNAME = 127.0.0.1\nCTLPORT = {slave_ctlport}\n"
    ));
    let path = dir.join("cluster.ini");
    std::fs::write(&path, ini).expect("write ini");
    path
}

impl Cluster {
    /// Writes the config for `n` servers and one slave; starts nothing.
    pub fn configure(n: usize, automerge: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let group = format!(
            "dt{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ports = free_ports(3 * n + 1);
        let servers: Vec<Server> = (0..n)
            .map(|i| Server {
                port: ports[3 * i],
                ctlport: ports[3 * i + 1],
                metrics: ports[3 * i + 2],
            })
            .collect();
        let slave_ctlport = ports[3 * n];
        let conf = write_conf(dir.path(), &group, &servers, slave_ctlport, automerge);
        Cluster {
            dir,
            conf,
            group,
            servers,
            slave_ctlport,
            chmpx: (0..n).map(|_| None).collect(),
            echo: (0..n).map(|_| None).collect(),
            slave: None,
        }
    }

    /// Starts every server's chmpx and echo process, and the slave.
    pub fn start(n: usize, automerge: bool) -> Cluster {
        let mut c = Cluster::configure(n, automerge);
        for i in 0..n {
            c.start_chmpx(i);
        }
        c.start_slave();
        for i in 0..n {
            c.start_echo(i);
        }
        c.wait_all_ready();
        c
    }

    fn spawn_chmpx(&self, ctlport: u16) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("chmpx-{ctlport}.log")))
            .expect("log file");
        Command::new(CHMPX)
            .args([
                "--conf",
                self.conf.to_str().unwrap(),
                "--ctlport",
                &ctlport.to_string(),
                "--log-level",
                &std::env::var("DAEMON_TEST_LOG").unwrap_or_else(|_| "info".into()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn chmpx")
    }

    pub fn start_chmpx(&mut self, i: usize) {
        self.chmpx[i] = Some(self.spawn_chmpx(self.servers[i].ctlport));
    }

    pub fn start_slave(&mut self) {
        self.slave = Some(self.spawn_chmpx(self.slave_ctlport));
    }

    pub fn start_echo(&mut self, i: usize) {
        let s = &self.servers[i];
        let child = Command::new(ECHO)
            .args([
                "--cluster",
                &self.group,
                "--ctlport",
                &s.ctlport.to_string(),
                "--node-id",
                s.id().as_str(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chmpx-echo");
        self.echo[i] = Some(child);
    }

    /// SIGKILLs server `i`'s chmpx.
    pub fn kill_chmpx(&mut self, i: usize) {
        if let Some(mut c) = self.chmpx[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_slave(&mut self) {
        if let Some(mut c) = self.slave.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn ctl_addr(&self, ctlport: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], ctlport))
    }

    /// The chmpx logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in self
            .servers
            .iter()
            .map(|s| s.ctlport)
            .chain([self.slave_ctlport])
        {
            let text = std::fs::read_to_string(self.dir.path().join(format!("chmpx-{p}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- chmpx {p} (last lines)\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until every listed node sees every server UP with its server process attached.
    pub fn wait_all_ready(&self) {
        let mut views: Vec<u16> = self.servers.iter().map(|s| s.ctlport).collect();
        views.push(self.slave_ctlport);
        for v in views {
            // A server that attaches first reconciles its slots (recovery merge) and serves
            // no reads of them until that is done: wait for it too.
            self.wait_until(
                v,
                "all servers UP with a server attached and no merge under way",
                |r| {
                    r.nodes
                        .iter()
                        .filter(|n| n.ring != chmpx::daemon::status::Ring::Slave)
                        .all(|n| {
                            n.live == Live::Up
                                && n.server_attached
                                && matches!(
                                    n.merge,
                                    chmpx::daemon::status::MergeState::Nothing
                                        | chmpx::daemon::status::MergeState::Done
                                )
                        })
                },
            );
        }
    }

    /// Polls node `ctlport`'s status until `pred` holds; panics with the logs after WAIT_MAX.
    pub fn wait_until(
        &self,
        ctlport: u16,
        what: &str,
        pred: impl Fn(&StatusReport) -> bool,
    ) -> StatusReport {
        let deadline = Instant::now() + WAIT_MAX;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(r) = status(self.ctl_addr(ctlport)) {
                if pred(&r) {
                    return r;
                }
                last = Some(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "node {ctlport}: timed out waiting for {what}; last status: {last:#?}\n{}",
            self.logs()
        );
    }

    /// The placement map of `epoch` for `members`, as every node must compute it.
    pub fn map(&self, epoch: u64, members: &[NodeId]) -> PlacementMap {
        PlacementMap::compute(epoch, members, SLOT_COUNT, REPLICA).unwrap()
    }

    pub fn server_ids(&self) -> Vec<NodeId> {
        self.servers.iter().map(Server::id).collect()
    }

    /// A client attached to the chmpx at `ctlport`.
    pub fn client(&self, ctlport: u16) -> Attachment {
        let opts = AttachOptions {
            connect_timeout_ms: 10_000,
            ..AttachOptions::default()
        };
        Attachment::connect(&self.group, ctlport, Role::Client, opts).expect("client attach")
    }
}

/// One control command; `None` when the port does not answer.
pub fn control(addr: SocketAddr, line: &str) -> Option<(bool, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(chmpx::daemon::control::query(
        addr,
        line,
        Duration::from_secs(8),
    ))
    .ok()
}

pub fn status(addr: SocketAddr) -> Option<StatusReport> {
    let (ok, text) = control(addr, "STATUSJSON")?;
    if !ok {
        return None;
    }
    serde_json::from_str(text.trim()).ok()
}

/// Sends a HashFirst request and returns (serving node, echoed body) or the chmpx error text.
pub fn ask(client: &Attachment, hash: u64, body: &[u8]) -> Result<(String, Vec<u8>), String> {
    let resp = client
        .request(Route::HashFirst(hash), body, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    if resp.flags & chmpx::daemon::FLAG_CHMPX_ERROR != 0 {
        return Err(String::from_utf8_lossy(&resp.body).into_owned());
    }
    let pos = resp
        .body
        .iter()
        .position(|b| *b == b'|')
        .ok_or("answer without a node id")?;
    Ok((
        String::from_utf8_lossy(&resp.body[..pos]).into_owned(),
        resp.body[pos + 1..].to_vec(),
    ))
}
