//! A running test cluster: the generated config, one [`NodeHandle`] per server node (its chmpx
//! and its dkc-server) and per slave (its chmpx), readiness by polling the control ports, and
//! membership commands.
//!
//! Dropping a [`Cluster`] kills every child (also when the test panics; then it first prints
//! the tail of every child's log) and removes the cluster's IPC objects.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chmpx::daemon::status::StatusReport;
use chmpx::placement::{NodeId, PlacementMap};

use crate::binaries;
use crate::control;
use crate::daemon::Daemon;
use crate::ipc::remove_ipc_objects;
use crate::kv::AttachKv;
use crate::spec::{render_ini, write_checked, ClusterSpec, NodePorts};
use chmpx::testkit::ports::free_ports;

/// Longest wait for the cluster to start, or for one state change.
pub const STATE_WAIT_MAX_MS: u64 = 30_000;
/// Pause between two status polls.
pub const POLL_INTERVAL_MS: u64 = 50;
/// Lines of each log printed when a test fails.
pub const LOG_TAIL_LINES: usize = 40;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One node: a server (chmpx + dkc-server) or a slave (chmpx only).
#[derive(Debug)]
pub struct NodeHandle {
    /// "127.0.0.1:ctlport", the node's id in placement and status.
    pub id: NodeId,
    /// Data port (servers).
    pub port: Option<u16>,
    /// Control port.
    pub ctlport: u16,
    /// Its chmpx.
    pub chmpx: Daemon,
    /// Its dkc-server (servers only).
    pub server: Option<Daemon>,
}

impl NodeHandle {
    /// Starts its processes (again): chmpx first, then dkc-server, which attaches by itself
    /// once chmpx is up.
    pub fn start(&mut self) -> Result<(), String> {
        self.chmpx.spawn()?;
        if let Some(s) = self.server.as_mut() {
            s.spawn()?;
        }
        Ok(())
    }

    /// SIGKILLs chmpx and dkc-server (the node's host dies). The data dir stays.
    pub fn kill9(&mut self) {
        if let Some(s) = self.server.as_mut() {
            s.kill9();
        }
        self.chmpx.kill9();
    }

    /// SIGSTOPs both processes (the node hangs).
    pub fn stop(&self) {
        self.chmpx.stop();
        if let Some(s) = self.server.as_ref() {
            s.stop();
        }
    }

    /// SIGCONTs both processes.
    pub fn cont(&self) {
        self.chmpx.cont();
        if let Some(s) = self.server.as_ref() {
            s.cont();
        }
    }

    /// Kills (SIGKILL) and starts both again with the same config and data dir.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill9();
        self.start()
    }

    fn logs(&self, lines: usize) -> String {
        let mut out = format!(
            "----- {} (log {})\n",
            self.chmpx.name,
            self.chmpx.log.display()
        );
        out.push_str(&self.chmpx.log_tail(lines));
        if let Some(s) = self.server.as_ref() {
            out.push_str(&format!("\n----- {} (log {})\n", s.name, s.log.display()));
            out.push_str(&s.log_tail(lines));
        }
        out.push('\n');
        out
    }
}

/// A cluster of real processes.
pub struct Cluster {
    /// What was asked for.
    pub spec: ClusterSpec,
    /// GROUP, unique per cluster.
    pub group: String,
    /// The config file every process runs with.
    pub conf: PathBuf,
    /// Server nodes, in config order.
    pub servers: Vec<NodeHandle>,
    /// Slave nodes.
    pub slaves: Vec<NodeHandle>,
    /// When `start` began.
    pub started: Instant,
    // Declared last: dropped after the processes are dead.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Writes the config and starts every process; returns once every node sees every server
    /// UP with its dkc-server attached. Panics (printing the logs) when that does not happen
    /// within [`STATE_WAIT_MAX_MS`].
    pub fn start(spec: ClusterSpec) -> Cluster {
        let c = Cluster::configure(spec);
        let mut c = c.unwrap_or_else(|e| panic!("cluster config: {e}"));
        for n in c.servers.iter_mut().chain(c.slaves.iter_mut()) {
            if let Err(e) = n.start() {
                panic!("{e}");
            }
        }
        c.wait_ready();
        c
    }

    /// Writes the config and prepares the node handles; starts nothing.
    pub fn configure(spec: ClusterSpec) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("dkc-scenario-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let group = format!(
            "T{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ports =
            free_ports(2 * spec.servers + spec.slaves).map_err(|e| format!("ports: {e}"))?;
        let server_ports: Vec<NodePorts> = (0..spec.servers)
            .map(|i| NodePorts {
                port: Some(ports[2 * i]),
                ctlport: ports[2 * i + 1],
            })
            .collect();
        let slave_ports: Vec<NodePorts> = (0..spec.slaves)
            .map(|i| NodePorts {
                port: None,
                ctlport: ports[2 * spec.servers + i],
            })
            .collect();
        let datadir = dir.path().join("data");
        std::fs::create_dir_all(&datadir).map_err(|e| format!("data dir: {e}"))?;
        let ini = render_ini(&spec, &group, &datadir, &server_ports, &slave_ports);
        let conf = write_checked(dir.path(), &ini)?;
        let chmpx = binaries::binary("chmpx");
        let server = binaries::binary("dkc-server");
        let conf_s = conf.display().to_string();
        let node = |p: &NodePorts, with_server: bool| {
            let id = NodeId::from_host_port("127.0.0.1", p.ctlport);
            let ctl = p.ctlport.to_string();
            let chmpx = Daemon::new(
                format!("chmpx {id}"),
                chmpx.clone(),
                vec![
                    "--conf".into(),
                    conf_s.clone(),
                    "--ctlport".into(),
                    ctl.clone(),
                ],
                dir.path().join(format!("chmpx-{ctl}.log")),
            );
            let server = with_server.then(|| {
                Daemon::new(
                    format!("dkc-server {id}"),
                    server.clone(),
                    vec![
                        "--conf".into(),
                        conf_s.clone(),
                        "--ctlport".into(),
                        ctl.clone(),
                    ],
                    dir.path().join(format!("dkc-server-{ctl}.log")),
                )
            });
            NodeHandle {
                id,
                port: p.port,
                ctlport: p.ctlport,
                chmpx,
                server,
            }
        };
        let servers = server_ports.iter().map(|p| node(p, true)).collect();
        let slaves = slave_ports.iter().map(|p| node(p, false)).collect();
        Ok(Cluster {
            spec,
            group,
            conf,
            servers,
            slaves,
            started: Instant::now(),
            dir,
        })
    }

    /// The test's temporary directory (config, logs, data).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The control port clients attach to (the first slave's).
    pub fn client_ctlport(&self) -> u16 {
        self.slaves
            .first()
            .map_or(self.servers[0].ctlport, |s| s.ctlport)
    }

    /// A new client attached to the first slave.
    pub fn client(&self) -> AttachKv {
        AttachKv::connect(&self.group, self.client_ctlport())
            .unwrap_or_else(|e| panic!("client attach: {e}\n{}", self.logs()))
    }

    /// A new client for the scenarios' traffic: the `dkc_client` driver attached to the first
    /// slave (from the cluster's config file), or, with `DKC_TEST_CLIENT=attach`, the harness's
    /// own [`AttachKv`].
    pub fn kv(&self) -> Box<dyn crate::Kv> {
        if std::env::var("DKC_TEST_CLIENT").is_ok_and(|v| v == "attach") {
            return Box::new(self.client());
        }
        let client = dkc_client::client::Client::from_conf(&self.conf, Some(self.client_ctlport()))
            .unwrap_or_else(|e| panic!("driver attach: {e}\n{}", self.logs()));
        Box::new(crate::driver::DriverKv(client))
    }

    /// Ids of every configured server node.
    pub fn server_ids(&self) -> Vec<NodeId> {
        self.servers.iter().map(|s| s.id.clone()).collect()
    }

    /// Index of server `id`.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.servers.iter().position(|s| &s.id == id)
    }

    /// The tail of every child's log.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .chain(self.slaves.iter())
            .map(|n| n.logs(LOG_TAIL_LINES))
            .collect()
    }

    /// Control ports of the nodes whose chmpx runs (the views worth asking).
    pub fn live_views(&mut self) -> Vec<u16> {
        self.servers
            .iter_mut()
            .chain(self.slaves.iter_mut())
            .filter_map(|n| n.chmpx.is_running().then_some(n.ctlport))
            .collect()
    }

    /// Polls `ctlport`'s status until `pred` holds; panics with the last status and the logs
    /// after `max`.
    pub fn wait_until(
        &self,
        ctlport: u16,
        what: &str,
        max: Duration,
        pred: impl Fn(&StatusReport) -> bool,
    ) -> StatusReport {
        let deadline = Instant::now() + max;
        let mut last = None;
        loop {
            if let Some(r) = control::status(ctlport) {
                if pred(&r) {
                    return r;
                }
                last = Some(r);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
        panic!(
            "node {ctlport}: timed out after {max:?} waiting for {what}; last status: {}\n{}",
            last.as_ref()
                .map_or("no answer".to_string(), control::summary),
            self.logs()
        );
    }

    /// Waits until every running node sees every server UP with its dkc-server attached.
    pub fn wait_ready(&mut self) {
        let max = Duration::from_millis(STATE_WAIT_MAX_MS);
        for v in self.live_views() {
            self.wait_until(v, "every server UP with dkc-server attached", max, |r| {
                control::all_servers_ready(r)
            });
        }
    }

    /// Waits until every running node has no pending change and no merge in progress, and
    /// all agree on the epoch; returns the epoch.
    pub fn wait_settled(&mut self, max: Duration) -> u64 {
        let deadline = Instant::now() + max;
        loop {
            let views = self.live_views();
            let reports: Vec<Option<StatusReport>> =
                views.iter().map(|p| control::status(*p)).collect();
            let all_settled = reports
                .iter()
                .all(|r| r.as_ref().is_some_and(control::settled));
            let epochs: std::collections::BTreeSet<u64> =
                reports.iter().flatten().map(|r| r.epoch).collect();
            if all_settled && epochs.len() == 1 {
                return epochs.into_iter().next().unwrap_or(0);
            }
            if Instant::now() >= deadline {
                let text: Vec<String> = reports
                    .iter()
                    .zip(&views)
                    .map(|(r, p)| {
                        r.as_ref()
                            .map_or(format!("{p}: no answer"), control::summary)
                    })
                    .collect();
                panic!(
                    "cluster not settled after {max:?}:\n{}\n{}",
                    text.join("\n"),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// The status as the first slave sees it.
    pub fn status(&self) -> Option<StatusReport> {
        control::status(self.client_ctlport())
    }

    /// The current placement map, as the first slave sees it.
    pub fn placement(&self) -> PlacementMap {
        let r = self
            .status()
            .unwrap_or_else(|| panic!("the slave does not answer STATUSJSON\n{}", self.logs()));
        control::placement(&r).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends a ring command (`SERVICEIN id`, `SERVICEOUT id`, `MERGE`, ...) through the first
    /// slave's control port; `Err` with the answer when refused.
    pub fn ring_command(&self, line: &str) -> Result<String, String> {
        match control::command(self.client_ctlport(), line)? {
            (true, text) => Ok(text),
            (false, text) => Err(format!("{line}: {text}")),
        }
    }

    /// `SERVICEIN id`.
    pub fn service_in(&self, id: &NodeId) -> Result<String, String> {
        self.ring_command(&format!("SERVICEIN {id}"))
    }

    /// `SERVICEOUT id`.
    pub fn service_out(&self, id: &NodeId) -> Result<String, String> {
        self.ring_command(&format!("SERVICEOUT {id}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== dkc-tests: test failed; logs of cluster {} (dir {}, kept)",
                self.group,
                self.dir.path().display()
            );
            eprintln!("{}", self.logs());
            // Keep the logs and data for a post-mortem.
            self.dir.disable_cleanup(true);
        }
        for n in self.servers.iter_mut().chain(self.slaves.iter_mut()) {
            n.cont();
            n.kill9();
        }
        remove_ipc_objects(&self.group);
    }
}
