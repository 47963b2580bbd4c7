//! [`check_report`]: what a config needs from the kernel, against what the
//! kernel allows — the output of `chmpx --conf FILE --check`.
//!
//! Needs, per chmpx process (see DESIGN §2):
//! - queues: one accept queue, plus two per attachment (request doorbell
//!   read by chmpx, response doorbell read by the attached process), for up
//!   to MAXMQSERVER + MAXMQCLIENT attachments;
//! - depth: MAXQPERSERVERMQ for queues chmpx reads, MAXQPERCLIENTMQ for the
//!   others; both must fit fs.mqueue.msg_max;
//! - message size: MQMSGSIZE (descriptors only; bodies travel in shared memory);
//! - bytes per user (RLIMIT_MSGQUEUE): for each queue, depth × (message
//!   size + the kernel's per-message bookkeeping, [`MQ_KERNEL_BYTES_PER_MSG`]);
//! - shared memory: two rings of SHMRINGSIZE per attachment.
//!
//! Several chmpx processes on one host (nodes told apart by CTLPORT) share
//! queues_max, the per-user bytes and /dev/shm, so those lines are also
//! checked for the busiest host of the file.

use std::collections::HashMap;
use std::fmt;

use super::kernel_limits::KernelLimits;
use super::nodes::HostSpec;
use super::Config;

/// Kernel bookkeeping per queued message, bytes: `struct msg_msg` (48) plus
/// `struct posix_msg_tree_node` (48) on 64-bit Linux (ipc/mqueue.c counts
/// both against RLIMIT_MSGQUEUE). An estimate; the kernel's exact figure
/// varies a little between versions.
pub const MQ_KERNEL_BYTES_PER_MSG: u64 = 96;
/// Queues per attachment (request doorbell + response doorbell).
pub const QUEUES_PER_ATTACHMENT: u64 = 2;
/// Accept queues per chmpx.
pub const ACCEPT_QUEUES_PER_CHMPX: u64 = 1;
/// Shared-memory rings per attachment (one per direction).
pub const RINGS_PER_ATTACHMENT: u64 = 2;

/// Outcome of one check line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// The limit is high enough.
    Ok,
    /// The limit is too low: chmpx would fail to create its queues.
    TooLow,
    /// The limit could not be read.
    Unknown,
    /// Not a kernel limit, but worth a look.
    Warn,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub status: CheckStatus,
    /// The limit, e.g. "fs.mqueue.msg_max".
    pub limit: String,
    /// What the config needs, in words with the number.
    pub need: String,
    pub needed: u64,
    pub current: Option<u64>,
    /// How to raise the limit or change the config (empty when OK).
    pub fix: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub lines: Vec<CheckLine>,
}

impl CheckReport {
    /// True when no line is TOO LOW.
    pub fn is_ok(&self) -> bool {
        self.lines.iter().all(|l| l.status != CheckStatus::TooLow)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            let status = match l.status {
                CheckStatus::Ok => "OK",
                CheckStatus::TooLow => "TOO LOW",
                CheckStatus::Unknown => "UNKNOWN",
                CheckStatus::Warn => "WARN",
            };
            let current = l.current.map_or("unknown".to_string(), |c| c.to_string());
            write!(
                f,
                "{status:<8} {}: need {}, current {current}",
                l.limit, l.need
            )?;
            if !l.fix.is_empty() {
                write!(f, "\n         fix: {}", l.fix)?;
            }
            writeln!(f)?;
        }
        let verdict = if self.is_ok() {
            "OK: the kernel limits allow this config"
        } else {
            "NOT OK: raise the limits marked TOO LOW"
        };
        writeln!(f, "{verdict}")
    }
}

fn line(limit: &str, need: String, needed: u64, current: Option<u64>, fix: String) -> CheckLine {
    let status = match current {
        None => CheckStatus::Unknown,
        Some(c) if c >= needed => CheckStatus::Ok,
        Some(_) => CheckStatus::TooLow,
    };
    let fix = if status == CheckStatus::Ok {
        String::new()
    } else {
        fix
    };
    CheckLine {
        status,
        limit: limit.to_string(),
        need,
        needed,
        current,
        fix,
    }
}

fn sysctl_fix(name: &str, needed: u64, config_hint: &str) -> String {
    format!(
        "`sysctl fs.mqueue.{name}={needed}` as root (or `echo {needed} > /proc/sys/fs/mqueue/{name}`), or run chmpx in its own IPC namespace (`unshare --ipc`) and set it there; {config_hint}"
    )
}

/// Compares what `config` needs with `limits`.
pub fn check_report(config: &Config, limits: KernelLimits) -> CheckReport {
    let g = &config.global;
    let attachments = u64::from(g.max_mq_server) + u64::from(g.max_mq_client);
    let queues = ACCEPT_QUEUES_PER_CHMPX + QUEUES_PER_ATTACHMENT * attachments;
    let server_depth = u64::from(g.max_q_per_server_mq);
    let client_depth = u64::from(g.max_q_per_client_mq);
    let msg_size = u64::from(g.mq_msg_size);
    // chmpx reads the accept queue and one request doorbell per attachment.
    let server_queues = ACCEPT_QUEUES_PER_CHMPX + attachments;
    let client_queues = attachments;
    let per_msg = msg_size + MQ_KERNEL_BYTES_PER_MSG;
    let bytes = (server_queues * server_depth + client_queues * client_depth) * per_msg;
    let shm = attachments * RINGS_PER_ATTACHMENT * g.shm_ring_size;
    let per_host = busiest_host(config);
    let (host, procs) = per_host;

    let mut lines = Vec::new();
    let depth = server_depth.max(client_depth);
    lines.push(line(
        "fs.mqueue.msg_max",
        format!(
            "queue depth {depth} (MAXQPERSERVERMQ {server_depth}, MAXQPERCLIENTMQ {client_depth})"
        ),
        depth,
        limits.msg_max,
        sysctl_fix(
            "msg_max",
            depth,
            "or lower MAXQPERSERVERMQ / MAXQPERCLIENTMQ",
        ),
    ));
    lines.push(line(
        "fs.mqueue.msgsize_max",
        format!("message size {msg_size} bytes (MQMSGSIZE)"),
        msg_size,
        limits.msgsize_max,
        sysctl_fix("msgsize_max", msg_size, "or lower MQMSGSIZE"),
    ));
    lines.push(line(
        "fs.mqueue.queues_max",
        format!(
            "{queues} queues per chmpx (1 accept + 2 x (MAXMQSERVER {} + MAXMQCLIENT {}))",
            g.max_mq_server, g.max_mq_client
        ),
        queues,
        limits.queues_max,
        sysctl_fix("queues_max", queues, "or lower MAXMQSERVER / MAXMQCLIENT"),
    ));
    if procs > 1 {
        lines.push(line(
            "fs.mqueue.queues_max",
            format!(
                "{} queues for the {procs} chmpx processes this file puts on host {host}",
                queues * procs
            ),
            queues * procs,
            limits.queues_max,
            sysctl_fix(
                "queues_max",
                queues * procs,
                "or lower MAXMQSERVER / MAXMQCLIENT",
            ),
        ));
    }
    let rlimit_fix = |needed: u64| {
        format!("`ulimit -q {needed}` in the shell that starts chmpx (as root, or after raising the hard limit in /etc/security/limits.conf), or LimitMSGQUEUE={needed} in its systemd unit; or lower the queue counts, depths or MQMSGSIZE")
    };
    lines.push(line(
        "RLIMIT_MSGQUEUE",
        format!("{bytes} bytes of queues per chmpx (about {per_msg} bytes per queued message)"),
        bytes,
        limits.rlimit_msgqueue_bytes,
        rlimit_fix(bytes),
    ));
    if procs > 1 {
        lines.push(line(
            "RLIMIT_MSGQUEUE",
            format!(
                "{} bytes of queues for the {procs} chmpx processes on host {host} (same user)",
                bytes * procs
            ),
            bytes * procs,
            limits.rlimit_msgqueue_bytes,
            rlimit_fix(bytes * procs),
        ));
    }
    let mut shm_line = line(
        "/dev/shm free space",
        format!("{} bytes of rings ({attachments} attachments x 2 x SHMRINGSIZE {}) per chmpx, {} for {procs} on host {host}", shm, g.shm_ring_size, shm * procs),
        shm * procs,
        limits.dev_shm_free_bytes,
        "enlarge /dev/shm (`mount -o remount,size=... /dev/shm`) or lower SHMRINGSIZE / MAXMQCLIENT".into(),
    );
    // Rings are only touched as they are used, so too little space is a warning.
    if shm_line.status == CheckStatus::TooLow {
        shm_line.status = CheckStatus::Warn;
    }
    lines.push(shm_line);

    let owners = (u64::from(g.replica) + 1).min(config.servers.len() as u64);
    if owners < u64::from(g.replica) + 1 {
        lines.push(CheckLine {
            status: CheckStatus::Warn,
            limit: "REPLICA".into(),
            need: format!("{} owners per slot", u64::from(g.replica) + 1),
            needed: u64::from(g.replica) + 1,
            current: Some(config.servers.len() as u64),
            fix: format!(
                "only {} server entries: each slot gets {owners} owners until more servers join",
                config.servers.len()
            ),
        });
    }
    CheckReport { lines }
}

/// The host with the most chmpx entries (any-host slaves count on every host).
fn busiest_host(config: &Config) -> (String, u64) {
    let mut per_host: HashMap<&str, u64> = HashMap::new();
    let mut any = 0u64;
    for n in config.servers.iter().chain(&config.slaves) {
        match &n.host {
            HostSpec::Any => any += 1,
            HostSpec::Name(h) => *per_host.entry(h.as_str()).or_default() += 1,
        }
    }
    let mut hosts: Vec<(&str, u64)> = per_host.into_iter().collect();
    hosts.sort();
    match hosts.into_iter().max_by_key(|(_, c)| *c) {
        Some((h, c)) => (h.to_string(), c + any),
        None => ("any".to_string(), any),
    }
}
