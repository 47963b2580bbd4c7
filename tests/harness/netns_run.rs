//! Multi-host fault scenarios (DESIGN.md §9, issue 6): a lab of simulated hosts from
//! `dkc_tools::netns` — each server host runs chmpx + dkc-server, each of the two client hosts
//! a slave chmpx and a `dkc-fault-client work` process (its own IPC namespace) — a seeded
//! schedule of faults while the clients run, then heal, convergence of every owner's digests,
//! final reads, and [`crate::checker`] over the recorded histories.
//!
//! The seed is printed (`DKC_FAULT_SEED=...`) and read from that variable, so a failing
//! schedule replays exactly (the clients' timing still varies).
//!
//! Why here, with `dkc-tools` as a dependency: the lab (namespaces, partitions, delay proxy)
//! lives in `dkc-tools` because `dkc-hosts` uses it by hand too; `dkc-tests` depends on it
//! (never the reverse). Everything inside a host goes through binaries (`chmpxstatus`,
//! `dkc-fault-client`), since the test process itself is in none of the hosts' namespaces.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chmpx::daemon::status::{MergeState, Ring, StatusReport};
use dkc_tools::netns::chmpx_lab::{
    all_servers_up, expected_owner, placement, settled, ChmpxLab, LabOptions, ServerKind,
    LAB_CTLPORT, LAB_GROUP, LAB_PORT,
};
use dkc_tools::netns::delay_proxy::{delay_links_into, Delay};
use dkc_tools::netns::lab::HostProcess;
use dkc_tools::netns::workload::{counter_key, is_no_space, register_key, DigestReport};
use dkc_tools::netns::{bins, Direction, Lab, LabSpec, NetnsError, Seed};

use crate::checker::{check, load_history, parse_final_reads, Findings, RunFacts};

/// Environment variable that fixes the seed of a run.
pub const SEED_ENV: &str = "DKC_FAULT_SEED";
/// Client hosts per lab.
pub const CLIENT_HOSTS: usize = 2;
/// Client threads per client host.
pub const THREADS_PER_CLIENT_HOST: usize = 2;
/// Register keys per client.
pub const KEYS_PER_CLIENT: usize = 40;
/// Counter keys.
pub const COUNTERS: usize = 4;
/// Longest wait for the cluster to come up, ms.
pub const START_WAIT_MS: u64 = 30_000;
/// Longest wait for the cluster to recover after one fault is healed, ms.
pub const RECOVER_WAIT_MS: u64 = 30_000;
/// Longest wait for every owner's digests to agree after the last heal, ms.
pub const CONVERGE_WAIT_MS: u64 = 30_000;
/// Pause between two digest checks, ms.
pub const CONVERGE_POLL_MS: u64 = 300;
/// Load on the healthy cluster before the first fault, ms.
pub const WARMUP_MS: u64 = 1500;
/// Load on the recovered cluster after each fault, ms.
pub const AFTER_FAULT_MS: u64 = 1000;
/// Longest a workload process may take to stop after being asked, ms.
pub const WORK_STOP_WAIT_MS: u64 = 15_000;
/// Upper bound given to workload processes (they are stopped by a file long before).
pub const WORK_MILLIS_MAX: u64 = 1_800_000;
/// Longest run of one tool inside a host, ms.
pub const TOOL_MAX_MS: u64 = 30_000;
/// Client id of the preload writes (after the workload's clients).
pub const PRELOAD_CLIENT: usize = CLIENT_HOSTS * THREADS_PER_CLIENT_HOST;
/// Port of the `dkc-memcached` on each client host (memcached scenarios; its own namespace).
pub const MEMCACHED_PORT: u16 = 11211;
/// Storage timeout given to `dkc-memcached`, ms: its answer is `SERVER_ERROR` after this,
/// below the workload's socket timeout ([`dkc_tools::netns::memcached_client::MC_READ_TIMEOUT_MS`]).
pub const MEMCACHED_STORAGE_TIMEOUT_MS: u64 = 3000;
const _: () =
    assert!(MEMCACHED_STORAGE_TIMEOUT_MS < dkc_tools::netns::memcached_client::MC_READ_TIMEOUT_MS);
/// Longest wait for a SERVICEIN/SERVICEOUT to merge and complete under load, ms.
pub const MEMBERSHIP_WAIT_MS: u64 = 45_000;
/// Pause after a heal before recovery is checked, so a merge that starts on a returning link
/// is seen as running rather than missed, ms.
pub const HEAL_SETTLE_MS: u64 = 800;
/// Pause between two checks of a process the run waits for, ms.
pub const PROCESS_POLL_MS: u64 = 50;
/// Size of each host's tmpfs data directory in scenarios with [`FaultKind::FullDisk`], bytes:
/// room for a server's k2hash file (4 MiB steps) and the merges after the heal.
pub const FULL_DISK_TMPFS_BYTES: u64 = 32 * 1024 * 1024;
/// Value size of the writes that fill the full host's k2hash file, bytes.
pub const FULL_DISK_VALUE_BYTES: usize = 16 * 1024;
/// The filling writes stop after this many were refused with `E_NO_SPACE`.
pub const FULL_DISK_REFUSALS: usize = 20;
/// Most filling writes per full-disk fault (more than the tmpfs holds: with REPLICA 1 of 3
/// hosts the full host owns about 2 of 3 keys).
pub const FULL_DISK_WRITES_MAX: usize = 6000;
/// Client id of the filling writes (after the preload's).
pub const FULL_DISK_CLIENT: usize = PRELOAD_CLIENT + 1;
/// ANTIENTROPY of labs whose scenario may fill a disk, seconds: after the heal, the next
/// anti-entropy round copies to the full host what it refused (well within
/// [`CONVERGE_WAIT_MS`]).
pub const FULL_DISK_ANTIENTROPY_S: u64 = 2;
const _: () = assert!(4 * FULL_DISK_ANTIENTROPY_S * 1000 < CONVERGE_WAIT_MS);
const _: () =
    assert!((FULL_DISK_WRITES_MAX * FULL_DISK_VALUE_BYTES) as u64 > 2 * FULL_DISK_TMPFS_BYTES);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// kill -9 of chmpx and dkc-server on one server host, then both restarted.
    KillHost,
    /// kill -9 of chmpx alone, then chmpx restarted (dkc-server re-attaches by itself).
    KillChmpx,
    /// kill -9 of dkc-server alone, then it is restarted.
    KillServer,
    /// SIGSTOP of chmpx and dkc-server past the heartbeat timeout, then SIGCONT.
    StopCont,
    /// A server host cut from every other host, both ways, then healed.
    Isolate,
    /// One server host's packets to another dropped (one way), then healed.
    OneWay,
    /// A server host's link down, then up.
    LinkDown,
    /// Two server hosts cut from the rest (they still see each other), then healed.
    Minority,
    /// kill -9 of a server host that is never restarted (the run ends with it down).
    KillForever,
    /// The two owners of counter `ctr-0` cut from each other (DROP both ways between them
    /// only: each still reaches the third server host and the client hosts, which see both
    /// UP), held; then the counter's primary killed -9 with the cut still held and left down,
    /// so its other owner takes over. A primary that acknowledged increments alone during the
    /// cut (taking "not reachable from here" for "DOWN") loses them here: the counter ends
    /// below its acknowledged increments.
    CutOwnersThenKill,
    /// SERVICEIN of the spare server host (started SERVICE OUT, see [`Scenario::spare`])
    /// under load; waits for the merge to finish.
    ServiceIn,
    /// SERVICEOUT of a member server host under load (it keeps running, out of the map);
    /// waits for the merge to finish.
    ServiceOut,
    /// A server host's data directory (a tmpfs of [`FULL_DISK_TMPFS_BYTES`], see
    /// [`LabSpec::data_tmpfs_bytes`]) filled by a filler file, then a client host writes
    /// values of [`FULL_DISK_VALUE_BYTES`] until [`FULL_DISK_REFUSALS`] were refused with
    /// `E_NO_SPACE` (recorded and checked like every write; a refusal is not an
    /// acknowledgement). Heal: the filler is removed, nothing else: the host stayed UP, so no
    /// recovery merge runs; chmpx's anti-entropy (ANTIENTROPY = [`FULL_DISK_ANTIENTROPY_S`]
    /// in such labs) finds the slots whose owners differ and copies what it refused.
    FullDisk,
}

/// What one scenario runs.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name in the report.
    pub name: String,
    /// Server hosts (3 or 5).
    pub servers: usize,
    /// REPLICA.
    pub replica: u32,
    /// ACKLEVEL (`None`: the default, `all`).
    pub ack_level: Option<String>,
    /// The faults the seeded schedule picks from.
    pub menu: Vec<FaultKind>,
    /// Faults injected one after the other.
    pub steps: usize,
    /// How long each fault lasts, ms (`lo..=hi`, picked by the seed).
    pub hold_ms: (u64, u64),
    /// Environment of every dkc-server (test-only switches).
    pub server_env: Vec<(String, String)>,
    /// Load after the last fault (or without faults), ms.
    pub tail_ms: u64,
    /// Delay (fixed ms, jitter ms) added by a proxy to every link into the last server host
    /// (the highest node id, which every other node dials), for the whole run.
    pub delay_ms: Option<(u64, u64)>,
    /// Stop the clients before the first fault (so nothing written after it can supersede
    /// what the fault may have lost: the broken-build check wants every loss visible).
    pub quiet_faults: bool,
    /// The faults run in `menu` order (one each, `steps` ignored) instead of being drawn.
    pub in_order: bool,
    /// The last server host is taken out of service (SERVICEOUT) before any data exists, so
    /// a [`FaultKind::ServiceIn`] can add it under load.
    pub spare: bool,
    /// Register keys written once before the workload starts (by a client id of their own,
    /// recorded and checked like the workload's), so merges have data to move.
    pub preload: usize,
    /// Each client host runs `dkc-memcached` (attached to its slave chmpx) and the workload
    /// speaks the memcached protocol to it instead of using the driver.
    pub memcached: bool,
}

impl Scenario {
    /// `servers` server hosts, REPLICA 1, ack `all`, faults from `menu`.
    pub fn new(name: &str, servers: usize, menu: &[FaultKind], steps: usize) -> Scenario {
        Scenario {
            name: name.into(),
            servers,
            replica: 1,
            ack_level: None,
            menu: menu.to_vec(),
            steps,
            hold_ms: (2500, 3500),
            server_env: Vec::new(),
            tail_ms: AFTER_FAULT_MS,
            quiet_faults: false,
            delay_ms: None,
            in_order: false,
            spare: false,
            memcached: false,
            preload: 0,
        }
    }
}

/// What a [`FaultKind::CutOwnersThenKill`] fault saw of the DOWN votes in the owners' status.
#[derive(Debug, Clone, Default)]
pub struct CutSeen {
    /// During the cut, each owner showed the other as unreachable but not confirmed DOWN by a
    /// majority (`DOWN?`): neither may acknowledge writes of their shared slots alone.
    pub unconfirmed_shown: bool,
    /// Replication requests the primary's chmpx refused for that reason, just before the
    /// kill.
    pub refused: u64,
    /// How long after the kill -9 of the primary its co-owner showed it confirmed DOWN (from
    /// then on writes of the slots they shared are acknowledged again), when seen at all.
    pub confirmed_after: Option<Duration>,
}

/// The outcome of a run: the checker's findings, the facts of the run, and the logs' tails for
/// a failure message.
pub struct RunOutcome {
    /// What the checker found.
    pub findings: Findings,
    /// Faults, seed, convergence.
    pub facts: RunFacts,
    /// Last log lines of every process.
    pub logs: String,
    /// The last digest report.
    pub digests: Option<DigestReport>,
    /// What of the lab was still alive after it was dropped (must be empty).
    pub leftovers: Vec<String>,
    /// What the last [`FaultKind::CutOwnersThenKill`] fault saw, if one ran.
    pub cut: Option<CutSeen>,
}

impl RunOutcome {
    /// Why the run fails the promises (empty when it passes): lost, phantom and counter
    /// findings, and convergence not reached.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.findings.violations();
        out.extend(
            self.leftovers
                .iter()
                .map(|l| format!("left behind by the lab: {l}")),
        );
        if self.facts.converge_failed {
            let d = self
                .digests
                .as_ref()
                .map(|d| {
                    d.mismatches
                        .iter()
                        .chain(d.extra_copies.iter())
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n  ")
                })
                .unwrap_or_default();
            out.push(format!(
                "owners' digests still differ {CONVERGE_WAIT_MS} ms after the heal:\n  {d}"
            ));
        }
        out
    }
}

/// The seed from `DKC_FAULT_SEED`, else from the clock; printed either way.
pub fn seed_for(name: &str) -> Seed {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("{name}: {SEED_ENV}={seed}");
    Seed::new(seed)
}

/// Whether the lab can be built here (root); the reason when it cannot.
pub fn root_or_reason() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("multi-host fault tests need root (network, IPC and mount namespaces)".into());
    }
    Ok(())
}

struct Run {
    c: ChmpxLab,
    scenario: Scenario,
    workers: Vec<HostProcess>,
    stop_file: PathBuf,
    histories: Vec<PathBuf>,
    down_forever: Vec<usize>,
    /// Server hosts out of service (SERVICE OUT), running.
    out_of_service: Vec<usize>,
    /// `dkc-memcached` of each client host (memcached scenarios).
    memcacheds: Vec<HostProcess>,
    /// Wall clock when the workload processes were started, µs.
    work_started_us: u64,
    /// Keys of [`FULL_DISK_CLIENT`] written so far (full-disk faults).
    full_disk_keys: usize,
    /// Delay proxies (they die with the lab).
    _proxies: Vec<HostProcess>,
    /// What the last [`FaultKind::CutOwnersThenKill`] fault saw.
    cut: Option<CutSeen>,
}

fn client_host(servers: usize, i: usize) -> usize {
    servers + i
}

/// Polls `done(p)` every [`PROCESS_POLL_MS`] until it holds (true); once the process has
/// exited or `deadline` has passed, `done(p)` decides.
fn wait_process(
    p: &mut HostProcess,
    deadline: Instant,
    done: impl Fn(&mut HostProcess) -> bool,
) -> bool {
    loop {
        if done(p) {
            return true;
        }
        if !p.is_running() || Instant::now() >= deadline {
            return done(p);
        }
        std::thread::sleep(Duration::from_millis(PROCESS_POLL_MS));
    }
}

impl Run {
    fn fail(&self, msg: impl std::fmt::Display) -> ! {
        panic!("{}: {msg}\n{}", self.scenario.name, self.logs());
    }

    /// The last log lines of every process (chmpx, servers, dkc-memcached).
    fn logs(&self) -> String {
        let mut out = self.c.logs();
        for p in &self.memcacheds {
            out.push_str(&format!(
                "----- {} ({})\n{}\n",
                p.name,
                p.log.display(),
                p.log_tail(dkc_tools::netns::chmpx_lab::LOG_TAIL_LINES)
            ));
        }
        out
    }

    /// Sends a ring command (`SERVICEIN id`, `SERVICEOUT id`) with `chmpxctl` through the
    /// slave chmpx of the first client host (it forwards it to the coordinator).
    fn ring_command(&self, line: &str) -> Result<String, String> {
        let host = client_host(self.scenario.servers, 0);
        let h = self.c.lab.host(host);
        let mut cmd = h.command(bins::path("chmpxctl").map_err(|e| e.to_string())?);
        cmd.args(["--host", &h.addr().to_string()])
            .args(["--ctlport", &self.c.ctlport_of(host).to_string()])
            .args(line.split(' '));
        let out = h.output(cmd, TOOL_MAX_MS).map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "chmpxctl {line} on h{host}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Gives `verb` (SERVICEIN/SERVICEOUT) for server `v`, then waits until every host sees
    /// `v` in `ring`, the change completed (no pending epoch) and nothing merging.
    fn membership_change(&self, verb: &str, v: usize, ring: Ring) -> Result<String, String> {
        let id = self.c.servers[v].id.to_string();
        let answer = self.ring_command(&format!("{verb} {id}"))?;
        let took = self
            .wait_live_hosts(
                MEMBERSHIP_WAIT_MS,
                &format!("{verb} {id} completed"),
                |_, r| {
                    r.pending_epoch.is_none()
                        && settled(r)
                        && r.nodes.iter().any(|n| n.id == id && n.ring == ring)
                },
            )
            .map_err(|e| format!("{verb} {id} ({answer}): {e}"))?;
        Ok(format!(
            "{answer}; merged and completed in {:.1} s",
            took.as_secs_f64()
        ))
    }

    /// Polls every live server host and every client host, one after the other, until
    /// `pred(host, status)` holds on each, all within `limit_ms`; how long it took.
    fn wait_live_hosts(
        &self,
        limit_ms: u64,
        what: &str,
        pred: impl Fn(usize, &StatusReport) -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let hosts: Vec<usize> = self
            .live_servers()
            .into_iter()
            .chain((0..CLIENT_HOSTS).map(|i| client_host(self.scenario.servers, i)))
            .collect();
        for h in hosts {
            let left = limit_ms.saturating_sub(start.elapsed().as_millis() as u64);
            self.c.wait_status(h, left, what, |r| pred(h, r))?;
        }
        Ok(start.elapsed())
    }

    fn tool(&self, host: usize, args: &[String]) -> Result<String, String> {
        let h = self.c.lab.host(host);
        let mut cmd = h.command(bins::path("dkc-fault-client").map_err(|e| e.to_string())?);
        cmd.args(["--cluster", LAB_GROUP])
            .args(["--ctlport", &self.c.ctlport_of(host).to_string()])
            .args(args);
        let out = h.output(cmd, TOOL_MAX_MS).map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "dkc-fault-client {} on h{host}: {}: {}",
                args.first().map_or("", |s| s.as_str()),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Seconds since the workload started.
    fn since_start(&self) -> f64 {
        dkc_tools::netns::workload::now_us().saturating_sub(self.work_started_us) as f64 / 1e6
    }

    /// Live server hosts in service (members of the map).
    fn members(&self) -> Vec<usize> {
        self.live_servers()
            .into_iter()
            .filter(|s| !self.out_of_service.contains(s))
            .collect()
    }

    fn live_servers(&self) -> Vec<usize> {
        (0..self.scenario.servers)
            .filter(|s| !self.down_forever.contains(s))
            .collect()
    }

    /// Waits until every live server host sees every other live server UP and nothing
    /// merging; with `merged`, until those hosts' own merge is done.
    fn wait_recovered(&self, merged: &[usize]) -> Result<Duration, String> {
        let down: Vec<String> = self
            .down_forever
            .iter()
            .map(|s| self.c.servers[*s].id.to_string())
            .collect();
        let up = |r: &StatusReport| {
            r.nodes.iter().filter(|n| !down.contains(&n.id)).all(|n| {
                n.ring == chmpx::daemon::status::Ring::Slave
                    || (n.live == chmpx::daemon::status::Live::Up && n.server_attached)
            }) && settled(r)
        };
        self.wait_live_hosts(RECOVER_WAIT_MS, "recovered", |h, r| {
            up(r)
                && (!merged.contains(&h)
                    || r.nodes
                        .iter()
                        .any(|n| n.is_self && n.merge == MergeState::Done))
        })
    }

    fn start_workers(&mut self, seed: u64) -> Result<(), NetnsError> {
        let clients_total = CLIENT_HOSTS * THREADS_PER_CLIENT_HOST;
        for i in 0..CLIENT_HOSTS {
            let host = client_host(self.scenario.servers, i);
            let out = self.c.lab.dir().join(format!("history-h{host}.jsonl"));
            let h = self.c.lab.host(host);
            let mut cmd = h.command(bins::path("dkc-fault-client")?);
            cmd.args(["--cluster", LAB_GROUP])
                .args(["--ctlport", &self.c.ctlport_of(host).to_string(), "work"])
                .args(["--first-client", &(i * THREADS_PER_CLIENT_HOST).to_string()])
                .args(["--threads", &THREADS_PER_CLIENT_HOST.to_string()])
                .args(["--clients", &clients_total.to_string()])
                .args(["--keys", &KEYS_PER_CLIENT.to_string()])
                .args(["--counters", &COUNTERS.to_string()])
                .args(["--millis", &WORK_MILLIS_MAX.to_string()])
                .args(["--seed", &(seed ^ host as u64).to_string()]);
            if self.scenario.memcached {
                cmd.args(["--memcached", &format!("127.0.0.1:{MEMCACHED_PORT}")]);
            }
            cmd.arg("--stop-file")
                .arg(&self.stop_file)
                .arg("--out")
                .arg(&out);
            self.workers.push(h.spawn("work", cmd)?);
            self.histories.push(out);
        }
        Ok(())
    }

    /// Starts `dkc-memcached` on every client host, attached to its slave chmpx, and waits
    /// until each listens.
    fn start_memcacheds(&mut self) -> Result<(), String> {
        for i in 0..CLIENT_HOSTS {
            let host = client_host(self.scenario.servers, i);
            let h = self.c.lab.host(host);
            let mut cmd = h.command(bins::path("dkc-memcached").map_err(|e| e.to_string())?);
            cmd.args(["--backend", "cluster", "--conf"])
                .arg(&self.c.conf)
                .args(["--ctlport", &self.c.ctlport_of(host).to_string()])
                .args([
                    "--port",
                    &MEMCACHED_PORT.to_string(),
                    "--listen",
                    "127.0.0.1",
                ])
                .args(["--threads", "1"])
                .args([
                    "--storage-timeout-ms",
                    &MEMCACHED_STORAGE_TIMEOUT_MS.to_string(),
                ]);
            let p = h.spawn("dkc-memcached", cmd).map_err(|e| e.to_string())?;
            self.memcacheds.push(p);
        }
        let deadline = Instant::now() + Duration::from_millis(START_WAIT_MS);
        for p in &mut self.memcacheds {
            let listening = wait_process(p, deadline, |p| {
                p.is_running() && p.log_tail(50).contains("listening on")
            });
            if !listening {
                return Err(format!(
                    "{} did not start listening: {}",
                    p.name,
                    p.log_tail(10)
                ));
            }
        }
        Ok(())
    }

    fn stop_workers(&mut self) -> Result<(), String> {
        std::fs::write(&self.stop_file, b"stop").map_err(|e| format!("stop file: {e}"))?;
        let deadline = Instant::now() + Duration::from_millis(WORK_STOP_WAIT_MS);
        for w in &mut self.workers {
            if !wait_process(w, deadline, |w| !w.is_running()) {
                return Err(format!("{} did not stop: {}", w.name, w.log_tail(10)));
            }
            let tail = w.log_tail(5);
            if !tail.contains("operations") {
                return Err(format!("{} failed: {tail}", w.name));
            }
        }
        Ok(())
    }

    /// Injects one fault, holds it, heals it; returns its description and which hosts must
    /// finish their own merge before the run goes on.
    fn fault(
        &mut self,
        kind: FaultKind,
        seed: &mut Seed,
    ) -> Result<(String, Vec<usize>), NetnsError> {
        let live = self.members();
        let v = live[seed.below(live.len() as u64) as usize];
        let began = self.since_start();
        let (lo, hi) = self.scenario.hold_ms;
        let hold = Duration::from_millis(lo + seed.below(hi - lo + 1));
        let mut merged = Vec::new();
        let text = match kind {
            FaultKind::KillHost => {
                self.c.kill_server(v);
                std::thread::sleep(hold);
                self.c.start_server(v)?;
                merged.push(v);
                format!("kill -9 chmpx+dkc-server h{v}, restart after {hold:?}")
            }
            FaultKind::KillChmpx => {
                self.c.kill_chmpx(v);
                std::thread::sleep(hold);
                self.c.restart_chmpx(v)?;
                merged.push(v);
                format!("kill -9 chmpx h{v}, restart after {hold:?}")
            }
            FaultKind::KillServer => {
                self.c.kill_server_process(v);
                std::thread::sleep(hold);
                self.c.restart_server_process(v)?;
                format!("kill -9 dkc-server h{v}, restart after {hold:?}")
            }
            FaultKind::StopCont => {
                let s = &mut self.c.servers[v];
                for p in [s.chmpx.as_mut(), s.server.as_mut()].into_iter().flatten() {
                    p.stop();
                }
                std::thread::sleep(hold);
                let s = &mut self.c.servers[v];
                for p in [s.chmpx.as_mut(), s.server.as_mut()].into_iter().flatten() {
                    p.cont();
                }
                format!("SIGSTOP h{v} for {hold:?}, SIGCONT")
            }
            FaultKind::Isolate => {
                self.c.lab.isolate(v)?;
                std::thread::sleep(hold);
                self.c.lab.heal()?;
                format!("isolate h{v} (DROP both ways) for {hold:?}")
            }
            FaultKind::OneWay => {
                let others: Vec<usize> = live.iter().copied().filter(|s| *s != v).collect();
                let to = others[seed.below(others.len() as u64) as usize];
                self.c.lab.partition(v, to, Direction::OneWay)?;
                std::thread::sleep(hold);
                self.c.lab.heal()?;
                format!("DROP h{v} -> h{to} one way for {hold:?}")
            }
            FaultKind::LinkDown => {
                self.c.lab.link_down(v)?;
                std::thread::sleep(hold);
                self.c.lab.link_up(v)?;
                format!("link down h{v} for {hold:?}")
            }
            FaultKind::Minority => {
                let others: Vec<usize> = live.iter().copied().filter(|s| *s != v).collect();
                let w = others[seed.below(others.len() as u64) as usize];
                let minority = [v, w];
                let hosts = self.c.lab.hosts().len();
                for m in minority {
                    for x in (0..hosts).filter(|x| !minority.contains(x)) {
                        self.c.lab.partition(m, x, Direction::Both)?;
                    }
                }
                std::thread::sleep(hold);
                self.c.lab.heal()?;
                format!("minority {{h{v}, h{w}}} cut from the rest for {hold:?}")
            }
            FaultKind::ServiceIn => {
                let Some(&spare) = self.out_of_service.first() else {
                    return Err(NetnsError::Bad(
                        "SERVICEIN needs a spare server host (Scenario::spare)".into(),
                    ));
                };
                let done = self
                    .membership_change("SERVICEIN", spare, Ring::ServiceIn)
                    .map_err(NetnsError::Bad)?;
                // Completed (waited for above): its merge state is back to nothing.
                self.out_of_service.retain(|s| *s != spare);
                format!("SERVICEIN h{spare} under load ({done})")
            }
            FaultKind::ServiceOut => {
                if live.len() <= 1 {
                    return Err(NetnsError::Bad("SERVICEOUT would leave no member".into()));
                }
                let done = self
                    .membership_change("SERVICEOUT", v, Ring::ServiceOut)
                    .map_err(NetnsError::Bad)?;
                self.out_of_service.push(v);
                format!("SERVICEOUT h{v} under load ({done})")
            }
            FaultKind::FullDisk => {
                let t = Instant::now();
                let filler = self.c.lab.fill_disk(self.c.servers[v].host)?;
                let fill = self.full_disk_writes(v).map_err(NetnsError::Bad)?;
                // The rest of the hold with the disk still full, under the workload.
                std::thread::sleep(hold.saturating_sub(t.elapsed()));
                self.c.lab.free_disk(self.c.servers[v].host)?;
                format!(
                    "disk of h{v} full ({} MiB tmpfs, filler {:.1} MiB; {fill}) for {hold:?}, \
                     then space freed (repair: anti-entropy every {FULL_DISK_ANTIENTROPY_S} s)",
                    FULL_DISK_TMPFS_BYTES >> 20,
                    filler as f64 / (1 << 20) as f64,
                )
            }
            FaultKind::CutOwnersThenKill => {
                let key = counter_key(0);
                let (p, s) = self.owners_of(&key).map_err(NetnsError::Bad)?;
                let (p_id, s_id) = (
                    self.c.servers[p].id.to_string(),
                    self.c.servers[s].id.to_string(),
                );
                let cut_at = Instant::now();
                self.c.lab.partition(p, s, Direction::Both)?;
                let mut seen = CutSeen::default();
                let shows = |r: &StatusReport, id: &str, confirmed: bool| {
                    r.nodes
                        .iter()
                        .any(|n| n.id == id && n.down_confirmed == Some(confirmed))
                };
                let limit = hold.as_millis() as u64;
                seen.unconfirmed_shown = self
                    .c
                    .wait_status(self.c.servers[p].host, limit, "co-owner DOWN?", |r| {
                        shows(r, &s_id, false)
                    })
                    .is_ok()
                    && self
                        .c
                        .wait_status(self.c.servers[s].host, limit, "primary DOWN?", |r| {
                            shows(r, &p_id, false)
                        })
                        .is_ok();
                std::thread::sleep(hold.saturating_sub(cut_at.elapsed()));
                seen.refused = self
                    .c
                    .status(self.c.servers[p].host, LAB_CTLPORT)
                    .map_or(0, |r| r.writes_refused_unconfirmed);
                self.c.kill_server(p);
                self.down_forever.push(p);
                let killed = Instant::now();
                seen.confirmed_after = self
                    .c
                    .wait_status(
                        self.c.servers[s].host,
                        RECOVER_WAIT_MS,
                        "primary confirmed DOWN",
                        |r| shows(r, &p_id, true),
                    )
                    .ok()
                    .map(|_| killed.elapsed());
                std::thread::sleep(hold.saturating_sub(killed.elapsed()));
                self.c.lab.heal()?;
                let text = format!(
                    "DROP both ways between h{p} and h{s} (the owners of {key}) for {hold:?} \
                     (each showed the other DOWN?: {}; h{p} refused {} replications for it), then \
                     kill -9 chmpx+dkc-server h{p} (its primary) with the cut held, left down \
                     (h{s} saw it confirmed DOWN after {}); heal after {hold:?} more",
                    seen.unconfirmed_shown,
                    seen.refused,
                    seen.confirmed_after
                        .map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
                );
                self.cut = Some(seen);
                text
            }
            FaultKind::KillForever => {
                self.c.kill_server(v);
                self.down_forever.push(v);
                std::thread::sleep(hold);
                format!("kill -9 chmpx+dkc-server h{v}, left down")
            }
        };
        // Times from the clients' start, as the checker's findings give them.
        let text = format!("{text} [t+{began:.1}s..t+{:.1}s]", self.since_start());
        eprintln!("{}: fault: {text}", self.scenario.name);
        Ok((text, merged))
    }

    /// The server hosts that own `key` (REPLICA 1): its primary and its other owner, from the
    /// placement map the first live server host works with.
    fn owners_of(&self, key: &str) -> Result<(usize, usize), String> {
        let first = *self.live_servers().first().ok_or("no live server host")?;
        let r = self
            .c
            .status(self.c.servers[first].host, LAB_CTLPORT)
            .map_err(|e| e.to_string())?;
        let map = placement(&r)?;
        let index = |id: &chmpx::placement::NodeId| {
            self.c
                .servers
                .iter()
                .position(|s| s.id == *id)
                .ok_or_else(|| format!("owner {id} of {key} is no server host of the lab"))
        };
        let primary = expected_owner(&map, key, &[]).ok_or_else(|| format!("{key}: no owner"))?;
        let other = expected_owner(&map, key, std::slice::from_ref(&primary))
            .ok_or_else(|| format!("{key} has a single owner: the scenario needs REPLICA 1"))?;
        Ok((index(&primary)?, index(&other)?))
    }

    /// Writes values of [`FULL_DISK_VALUE_BYTES`] from the first client host (recorded, keys
    /// of [`FULL_DISK_CLIENT`]) until [`FULL_DISK_REFUSALS`] were refused with `E_NO_SPACE`;
    /// an error when none was (the disk of `v` did not fill: the fault did nothing).
    fn full_disk_writes(&mut self, v: usize) -> Result<String, String> {
        let client0 = client_host(self.scenario.servers, 0);
        let first = self.full_disk_keys;
        let out = self
            .c
            .lab
            .dir()
            .join(format!("history-full-disk-{first}.jsonl"));
        let args: Vec<String> = vec![
            "fill".into(),
            "--client".into(),
            FULL_DISK_CLIENT.to_string(),
            "--first-key".into(),
            first.to_string(),
            "--keys".into(),
            FULL_DISK_WRITES_MAX.to_string(),
            "--value-bytes".into(),
            FULL_DISK_VALUE_BYTES.to_string(),
            "--stop-after-no-space".into(),
            FULL_DISK_REFUSALS.to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        let started = Instant::now();
        let said = self.tool(client0, &args);
        // Whatever the tool managed to write is history, and its keys are read at the end.
        let recs = if out.exists() {
            load_history(&out)?
        } else {
            Vec::new()
        };
        self.histories.push(out);
        self.full_disk_keys += recs.len();
        let said = said?;
        let refused = recs
            .iter()
            .filter(|r| r.error.as_deref().is_some_and(is_no_space))
            .count();
        if refused == 0 {
            return Err(format!(
                "the disk of h{v} is full, yet none of {} writes of {FULL_DISK_VALUE_BYTES} \
                 bytes was refused with E_NO_SPACE: {}",
                recs.len(),
                said.trim()
            ));
        }
        Ok(format!(
            "{} writes of {} KiB in {:.1} s, {refused} refused with E_NO_SPACE",
            recs.len(),
            FULL_DISK_VALUE_BYTES >> 10,
            started.elapsed().as_secs_f64()
        ))
    }

    /// Slots the live servers' anti-entropy rounds repaired so far (their chmpx's totals).
    fn antientropy_repaired(&self) -> u64 {
        self.live_servers()
            .into_iter()
            .filter_map(|s| self.c.status(self.c.servers[s].host, LAB_CTLPORT).ok())
            .filter_map(|r| {
                let me = r.nodes.iter().find(|n| n.is_self)?;
                Some(me.progress?.totals.antientropy_slots_repaired)
            })
            .sum()
    }

    fn converge(&self) -> (Option<Duration>, Option<DigestReport>) {
        let host = client_host(self.scenario.servers, 0);
        let addr = format!(
            "{}:{}",
            self.c.lab.host(host).addr(),
            self.c.ctlport_of(host)
        );
        let start = Instant::now();
        let mut last = None;
        loop {
            match self.tool(host, &["digests".into(), "--ctl".into(), addr.clone()]) {
                Ok(text) => match serde_json::from_str::<DigestReport>(text.trim()) {
                    Ok(r) if r.converged() => return (Some(start.elapsed()), Some(r)),
                    Ok(r) => last = Some(r),
                    Err(e) => eprintln!("digests: {e}: {text}"),
                },
                Err(e) => eprintln!("digests: {e}"),
            }
            if start.elapsed() >= Duration::from_millis(CONVERGE_WAIT_MS) {
                return (None, last);
            }
            std::thread::sleep(Duration::from_millis(CONVERGE_POLL_MS));
        }
    }
}

/// Runs `scenario` with the seed from [`seed_for`]; panics (with the logs) when the cluster
/// cannot be built or does not recover in time. The caller asserts on the outcome.
pub fn run_scenario(scenario: &Scenario) -> RunOutcome {
    let t0 = Instant::now();
    let mut seed = seed_for(&scenario.name);
    let initial_seed = seed.initial();
    let hosts = scenario.servers + CLIENT_HOSTS;
    let mut spec = LabSpec::new(hosts);
    if scenario.menu.contains(&FaultKind::FullDisk) {
        spec.data_tmpfs_bytes = Some(FULL_DISK_TMPFS_BYTES);
    }
    let lab = Lab::new(spec).unwrap_or_else(|e| panic!("{e}"));
    let mut faults = Vec::new();
    let proxies = match scenario.delay_ms {
        Some((fixed_ms, jitter_ms)) => {
            let victim = scenario.servers - 1;
            let delay = Delay {
                fixed_ms,
                jitter_ms,
            };
            faults.push(format!(
                "links into h{victim} delayed {fixed_ms} ms + 0..={jitter_ms} ms (proxy), whole run"
            ));
            delay_links_into(&lab, victim, LAB_PORT, delay, seed.next_u64())
                .unwrap_or_else(|e| panic!("{e}"))
        }
        None => Vec::new(),
    };
    let opts = LabOptions {
        replica: scenario.replica,
        ack_level: scenario.ack_level.clone(),
        server_env: scenario.server_env.clone(),
        antientropy_s: scenario
            .menu
            .contains(&FaultKind::FullDisk)
            .then_some(FULL_DISK_ANTIENTROPY_S),
    };
    let c = ChmpxLab::start_opts(lab, scenario.servers, ServerKind::DkcServer, opts)
        .unwrap_or_else(|e| panic!("{e}"));
    let stop_file = c.lab.dir().join("work.stop");
    let mut run = Run {
        c,
        scenario: scenario.clone(),
        workers: Vec::new(),
        stop_file,
        histories: Vec::new(),
        down_forever: Vec::new(),
        out_of_service: Vec::new(),
        memcacheds: Vec::new(),
        work_started_us: 0,
        full_disk_keys: 0,
        _proxies: proxies,
        cut: None,
    };
    for h in 0..hosts {
        if let Err(e) = run
            .c
            .wait_status(h, START_WAIT_MS, "all servers UP, settled", |r| {
                all_servers_up(r) && settled(r)
            })
        {
            run.fail(e);
        }
    }
    let servers: Vec<usize> = (0..scenario.servers).collect();
    if let Err(e) = run.wait_recovered(&servers) {
        run.fail(format!("start: {e}"));
    }
    if scenario.spare {
        // The last server host leaves the map before any data exists: it runs, SERVICE OUT.
        let spare = scenario.servers - 1;
        match run.membership_change("SERVICEOUT", spare, Ring::ServiceOut) {
            Ok(text) => eprintln!("{}: spare h{spare} taken out: {text}", scenario.name),
            Err(e) => run.fail(format!("spare: {e}")),
        }
        run.out_of_service.push(spare);
    }
    if scenario.memcached {
        if let Err(e) = run.start_memcacheds() {
            run.fail(e);
        }
    }
    let client0 = client_host(scenario.servers, 0);
    if let Err(e) = run.tool(
        client0,
        &["init".into(), "--counters".into(), COUNTERS.to_string()],
    ) {
        run.fail(e);
    }
    if scenario.preload > 0 {
        // The client id after the workload's: its keys are nobody else's.
        let out = run.c.lab.dir().join("history-preload.jsonl");
        let args: Vec<String> = vec![
            "fill".into(),
            "--client".into(),
            PRELOAD_CLIENT.to_string(),
            "--keys".into(),
            scenario.preload.to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        match run.tool(client0, &args) {
            Ok(text) => eprintln!("{}: preload: {}", scenario.name, text.trim()),
            Err(e) => run.fail(format!("preload: {e}")),
        }
        run.histories.push(out);
    }
    run.work_started_us = dkc_tools::netns::workload::now_us();
    if let Err(e) = run.start_workers(seed.next_u64()) {
        run.fail(e);
    }
    std::thread::sleep(Duration::from_millis(WARMUP_MS));
    if scenario.quiet_faults {
        if let Err(e) = run.stop_workers() {
            run.fail(e);
        }
    }
    let mut recover = Vec::new();
    let steps = if scenario.in_order {
        scenario.menu.len()
    } else {
        scenario.steps
    };
    for step in 0..steps {
        let kind = if scenario.in_order {
            scenario.menu[step]
        } else {
            scenario.menu[seed.below(scenario.menu.len() as u64) as usize]
        };
        let (text, merged) = run.fault(kind, &mut seed).unwrap_or_else(|e| run.fail(e));
        faults.push(text);
        let healed = Instant::now();
        std::thread::sleep(Duration::from_millis(HEAL_SETTLE_MS));
        match run.wait_recovered(&merged) {
            Ok(_) => {
                eprintln!(
                    "{}: recovered {:.1} s after the heal",
                    scenario.name,
                    healed.elapsed().as_secs_f64()
                );
                recover.push(healed.elapsed());
            }
            Err(e) => run.fail(format!("after {}: {e}", faults.join("; "))),
        }
        std::thread::sleep(Duration::from_millis(AFTER_FAULT_MS));
    }
    if !scenario.quiet_faults {
        std::thread::sleep(Duration::from_millis(scenario.tail_ms));
        if let Err(e) = run.stop_workers() {
            run.fail(e);
        }
    }
    let (converge, digests) = if run.down_forever.is_empty() {
        run.converge()
    } else {
        (None, None)
    };
    let converge_failed = run.down_forever.is_empty() && converge.is_none();
    let antientropy_repaired = run.antientropy_repaired();
    let clients_total = CLIENT_HOSTS * THREADS_PER_CLIENT_HOST;
    let counters: Vec<String> = (0..COUNTERS).map(counter_key).collect();
    let mut keys: Vec<String> = (0..clients_total)
        .flat_map(|c| (0..KEYS_PER_CLIENT).map(move |i| register_key(c, i)))
        .collect();
    keys.extend((0..scenario.preload).map(|i| register_key(PRELOAD_CLIENT, i)));
    keys.extend((0..run.full_disk_keys).map(|i| register_key(FULL_DISK_CLIENT, i)));
    keys.extend(counters.iter().cloned());
    let mut args = vec!["read".to_string()];
    args.extend(keys);
    let finals = run
        .tool(client0, &args)
        .and_then(|t| parse_final_reads(&t))
        .unwrap_or_else(|e| run.fail(e));
    let mut ops = Vec::new();
    for h in &run.histories {
        ops.extend(load_history(h).unwrap_or_else(|e| run.fail(e)));
    }
    let findings = check(&ops, &finals, &counters);
    let facts = RunFacts {
        scenario: scenario.name.clone(),
        seed: initial_seed,
        faults,
        converge,
        converge_failed,
        recover,
        wall: t0.elapsed(),
        antientropy_repaired,
        clients: if scenario.memcached {
            format!(
                "memcached protocol to dkc-memcached on each client host (127.0.0.1:{MEMCACHED_PORT})"
            )
        } else {
            "dkc driver attached to each client host's slave chmpx".into()
        },
    };
    println!("{}", findings.table(&facts));
    let logs = run.logs();
    let cut = run.cut.take();
    // Tear the lab down here and check that nothing of it is left (namespaces, processes).
    let footprint = run.c.lab.footprint();
    drop(run);
    let leftovers = footprint.wait_gone();
    RunOutcome {
        findings,
        facts,
        logs,
        digests,
        leftovers,
        cut,
    }
}
