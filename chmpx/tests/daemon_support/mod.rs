//! Shared harness of the daemon scenario tests: a generated INI with unique ports, real chmpx
//! and chmpx-echo processes, readiness by polling the control port, and a guard that kills every
//! child on drop (even when the test fails). The generic parts (INI, processes, control port,
//! IPC cleanup) are `chmpx::testkit`'s; this file holds what these tests agree on.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chmpx::attach::{AttachOptions, Attachment, Role, Route};
use chmpx::daemon::status::StatusReport;
use chmpx::placement::{NodeId, PlacementMap};
use chmpx::testkit::control::{self, WaitError};
use chmpx::testkit::ini::{ClusterIni, NodePorts};
use chmpx::testkit::procs::{log_tail, Output, Procs};

pub use chmpx::testkit::ipc::remove_ipc_objects;

pub const CHMPX: &str = env!("CARGO_BIN_EXE_chmpx");
pub const ECHO: &str = env!("CARGO_BIN_EXE_chmpx-echo");
pub const SLOT_COUNT: u32 = 64;
pub const REPLICA: u32 = 1;
pub const HEARTBEAT_INTERVAL_MS: u64 = 200;
pub const HEARTBEAT_TIMEOUT_MS: u64 = 1000;
/// Longest wait for any state change in these tests.
pub const WAIT_MAX: Duration = Duration::from_secs(20);
/// Longest wait for one control command.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(8);
/// Log lines of each chmpx shown when a wait fails.
pub const LOG_TAIL_LINES: usize = 15;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Ports nobody listens on right now (held together so they differ).
pub fn free_ports(n: usize) -> Vec<u16> {
    chmpx::testkit::ports::free_ports(n).expect("free ports")
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
    procs: Procs,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.procs.kill_all();
        remove_ipc_objects(&self.group);
    }
}

/// The config of `servers` (each with a metrics port) and one slave, data in `dir`.
pub fn write_conf(
    dir: &Path,
    group: &str,
    servers: &[Server],
    slave_ctlport: u16,
    automerge: bool,
) -> PathBuf {
    cluster_ini(dir, group, servers, slave_ctlport, automerge)
        .write_checked(&dir.join("cluster.ini"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The [`ClusterIni`] of `servers` (each with a metrics port) and one slave, data in `dir`.
pub fn cluster_ini(
    dir: &Path,
    group: &str,
    servers: &[Server],
    slave_ctlport: u16,
    automerge: bool,
) -> ClusterIni {
    ClusterIni {
        group: group.to_string(),
        datadir: dir.to_path_buf(),
        replica: REPLICA,
        slot_count: SLOT_COUNT,
        automerge,
        heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        heartbeat_timeout_ms: HEARTBEAT_TIMEOUT_MS,
        global_extra: Vec::new(),
        servers: servers
            .iter()
            .map(|s| NodePorts {
                port: Some(s.port),
                ctlport: s.ctlport,
                metricsport: Some(s.metrics),
            })
            .collect(),
        slaves: vec![NodePorts::slave(slave_ctlport)],
        k2hdkc: Vec::new(),
    }
}

/// Name of the chmpx with control port `ctlport` in [`Procs`] (also its log's stem).
fn chmpx_name(ctlport: u16) -> String {
    format!("chmpx-{ctlport}")
}

fn echo_name(i: usize) -> String {
    format!("echo-{i}")
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
        let procs = Procs::new(dir.path());
        Cluster {
            dir,
            conf,
            group,
            servers,
            slave_ctlport,
            procs,
        }
    }

    /// Starts every server's chmpx and echo process, and the slave.
    pub fn start(n: usize, automerge: bool) -> Cluster {
        let mut c = Cluster::configure(n, automerge);
        c.start_all();
        c
    }

    /// Starts every server's chmpx, the slave and every server's echo process (of a cluster
    /// from [`Cluster::configure`], perhaps with an edited config), and waits until all are
    /// ready.
    pub fn start_all(&mut self) {
        for i in 0..self.servers.len() {
            self.start_chmpx(i);
        }
        self.start_slave();
        for i in 0..self.servers.len() {
            self.start_echo(i);
        }
        self.wait_all_ready();
    }

    fn spawn_chmpx(&mut self, ctlport: u16) {
        let args = [
            "--conf".to_string(),
            self.conf.display().to_string(),
            "--ctlport".to_string(),
            ctlport.to_string(),
            "--log-level".to_string(),
            std::env::var("DAEMON_TEST_LOG").unwrap_or_else(|_| "info".into()),
        ];
        self.procs
            .spawn(
                &chmpx_name(ctlport),
                Path::new(CHMPX),
                &args,
                Output::StderrToLog,
            )
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn start_chmpx(&mut self, i: usize) {
        self.spawn_chmpx(self.servers[i].ctlport);
    }

    pub fn start_slave(&mut self) {
        self.spawn_chmpx(self.slave_ctlport);
    }

    pub fn start_echo(&mut self, i: usize) {
        let s = &self.servers[i];
        let args = [
            "--cluster".to_string(),
            self.group.clone(),
            "--ctlport".to_string(),
            s.ctlport.to_string(),
            "--node-id".to_string(),
            s.id().as_str().to_string(),
        ];
        self.procs
            .spawn(&echo_name(i), Path::new(ECHO), &args, Output::Discard)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGKILLs server `i`'s chmpx.
    pub fn kill_chmpx(&mut self, i: usize) {
        self.procs.kill(&chmpx_name(self.servers[i].ctlport));
    }

    /// SIGKILLs every process of the cluster at once (chmpx, slave and echo processes).
    pub fn kill_all(&mut self) {
        self.procs.kill_all();
    }

    /// The first process that exited by itself, with its status.
    pub fn first_exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        self.procs.first_exited()
    }

    /// The log of server `i`'s chmpx.
    pub fn chmpx_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.procs.log_path(&chmpx_name(self.servers[i].ctlport)))
            .unwrap_or_default()
    }

    pub fn kill_slave(&mut self) {
        self.procs.kill(&chmpx_name(self.slave_ctlport));
    }

    pub fn ctl_addr(&self, ctlport: u16) -> SocketAddr {
        control::addr(ctlport)
    }

    /// The chmpx logs (also of killed ones), for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in self
            .servers
            .iter()
            .map(|s| s.ctlport)
            .chain([self.slave_ctlport])
        {
            let tail = log_tail(&self.procs.log_path(&chmpx_name(p)), LOG_TAIL_LINES);
            out.push_str(&format!("--- chmpx {p} (last lines)\n{tail}\n"));
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
                |r| control::servers_ready(r) && control::merges_idle(r),
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
        match control::wait_for_status(
            self.ctl_addr(ctlport),
            CONTROL_TIMEOUT,
            deadline,
            pred,
            || None,
        ) {
            Ok(r) => r,
            Err(WaitError::TimedOut { last }) => panic!(
                "node {ctlport}: timed out waiting for {what}; last status: {last:#?}\n{}",
                self.logs()
            ),
            Err(WaitError::Aborted(why)) => panic!("node {ctlport}: {why}\n{}", self.logs()),
        }
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
    control::command(addr, line, CONTROL_TIMEOUT).ok()
}

pub fn status(addr: SocketAddr) -> Option<StatusReport> {
    control::status(addr, CONTROL_TIMEOUT)
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

/// Sends `count` keys `<prefix>-<i>` from the slave and checks that each is answered by its
/// primary in the placement of all servers (epoch 0), with its body echoed.
pub fn assert_slave_routes_to_primaries(c: &Cluster, prefix: &str, count: u32) {
    let map = c.map(0, &c.server_ids());
    let client = c.client(c.slave_ctlport);
    for i in 0..count {
        let key = format!("{prefix}-{i}");
        let h = chmpx::placement::key_hash(key.as_bytes());
        let (got, body) =
            ask(&client, h, key.as_bytes()).unwrap_or_else(|e| panic!("{key}: {e}\n{}", c.logs()));
        assert_eq!(got, map.chain_for(h)[0].to_string(), "{key}");
        assert_eq!(body, key.as_bytes());
    }
}
