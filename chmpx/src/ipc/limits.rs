//! Kernel limits on POSIX message queues, read at the moment a queue cannot be created, so that
//! the error names the limit, its current value and how to raise it.

use std::fmt;

/// Where Linux publishes the message-queue limits.
const MQUEUE_PROC_DIR: &str = "/proc/sys/fs/mqueue";

/// The limits a stock kernel gives an unprivileged user (see DESIGN.md §2).
pub const STOCK_MSG_MAX: u64 = 10;
/// Stock `msgsize_max`, bytes.
pub const STOCK_MSGSIZE_MAX_BYTES: u64 = 8192;
/// Stock `queues_max`, queues in the whole IPC namespace.
pub const STOCK_QUEUES_MAX: u64 = 256;
/// Stock RLIMIT_MSGQUEUE, bytes per user.
pub const STOCK_RLIMIT_MSGQUEUE_BYTES: u64 = 819_200;

/// Reads one file of /proc/sys/fs/mqueue; `None` when it cannot be read (no procfs).
pub fn read_mqueue_limit(file: &str) -> Option<u64> {
    std::fs::read_to_string(format!("{MQUEUE_PROC_DIR}/{file}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The soft RLIMIT_MSGQUEUE of this process, bytes; `None` for unlimited or unknown.
pub fn rlimit_msgqueue_bytes() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut lim) };
    if rc != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

/// The soft RLIMIT_NOFILE of this process; `None` for unlimited or unknown.
pub fn rlimit_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

/// Bytes the kernel charges against RLIMIT_MSGQUEUE for one queue (an estimate that follows
/// ipc/mqueue.c: the message payloads plus one pointer per message plus the priority tree).
pub fn queue_cost_bytes(maxmsg: u64, msgsize: u64) -> u64 {
    const POINTER_BYTES: u64 = 8;
    const TREE_NODE_BYTES: u64 = 40;
    maxmsg * (msgsize + POINTER_BYTES) + maxmsg.min(32_768) * TREE_NODE_BYTES
}

/// Which limit stopped an `mq_open`, with what we know about its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqLimit {
    /// `mq_maxmsg` above /proc/sys/fs/mqueue/msg_max (EINVAL).
    MsgMax {
        requested: u64,
        current: Option<u64>,
    },
    /// `mq_msgsize` above /proc/sys/fs/mqueue/msgsize_max (EINVAL).
    MsgSizeMax {
        requested: u64,
        current: Option<u64>,
    },
    /// Queue count at /proc/sys/fs/mqueue/queues_max (ENOSPC).
    QueuesMax { current: Option<u64> },
    /// Per-user byte budget RLIMIT_MSGQUEUE exhausted (EMFILE).
    RlimitMsgqueue {
        queue_cost: u64,
        current: Option<u64>,
    },
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

impl fmt::Display for MqLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqLimit::MsgMax { requested, current } => write!(
                f,
                "mq_maxmsg {requested} exceeds /proc/sys/fs/mqueue/msg_max (now {}); lower \
                 the queue depth option or raise it as root: \
                 `echo {requested} > /proc/sys/fs/mqueue/msg_max`",
                show(*current)
            ),
            MqLimit::MsgSizeMax { requested, current } => write!(
                f,
                "mq_msgsize {requested} exceeds /proc/sys/fs/mqueue/msgsize_max (now {}); \
                 lower the message size option or raise it as root: \
                 `echo {requested} > /proc/sys/fs/mqueue/msgsize_max`",
                show(*current)
            ),
            MqLimit::QueuesMax { current } => write!(
                f,
                "no queue left under /proc/sys/fs/mqueue/queues_max (now {}; each attached \
                 process uses 2 queues, each chmpx 1); detach idle processes or raise it as \
                 root: `echo 1024 > /proc/sys/fs/mqueue/queues_max`",
                show(*current)
            ),
            MqLimit::RlimitMsgqueue {
                queue_cost,
                current,
            } => write!(
                f,
                "RLIMIT_MSGQUEUE (now {} bytes per user) cannot hold another queue of about \
                 {queue_cost} bytes; raise it with `ulimit -q <bytes>` (hard limit in \
                 /etc/security/limits.conf, `msgqueue`) or detach idle processes (EMFILE \
                 also means this process ran out of descriptors: RLIMIT_NOFILE now {}, \
                 `ulimit -n`)",
                show(*current),
                show(rlimit_nofile())
            ),
        }
    }
}

/// Names the limit behind an `mq_open(O_CREAT)` failure, or `None` if `errno` is not a limit.
pub fn classify_mq_open_error(errno: i32, maxmsg: u64, msgsize: u64) -> Option<MqLimit> {
    match errno {
        libc::EINVAL => {
            let msg_max = read_mqueue_limit("msg_max");
            let msgsize_max = read_mqueue_limit("msgsize_max");
            if msgsize_max.is_some_and(|m| msgsize > m) {
                Some(MqLimit::MsgSizeMax {
                    requested: msgsize,
                    current: msgsize_max,
                })
            } else {
                Some(MqLimit::MsgMax {
                    requested: maxmsg,
                    current: msg_max,
                })
            }
        }
        libc::ENOSPC => Some(MqLimit::QueuesMax {
            current: read_mqueue_limit("queues_max"),
        }),
        libc::EMFILE => Some(MqLimit::RlimitMsgqueue {
            queue_cost: queue_cost_bytes(maxmsg, msgsize),
            current: rlimit_msgqueue_bytes(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_messages_name_the_limit_and_how_to_raise_it() {
        let m = MqLimit::MsgMax {
            requested: 64,
            current: Some(10),
        }
        .to_string();
        assert!(m.contains("msg_max") && m.contains("now 10") && m.contains("echo 64"));
        let q = classify_mq_open_error(libc::ENOSPC, 4, 16)
            .unwrap()
            .to_string();
        assert!(q.contains("queues_max"));
        let r = classify_mq_open_error(libc::EMFILE, 4, 16)
            .unwrap()
            .to_string();
        assert!(r.contains("RLIMIT_MSGQUEUE") && r.contains("ulimit -q"));
        assert!(r.contains("RLIMIT_NOFILE"));
        assert!(classify_mq_open_error(libc::ENOENT, 4, 16).is_none());
    }

    #[test]
    fn doorbell_queue_cost_is_small_against_the_stock_budget() {
        // 2 queues per attachment: even 127 attachments (the queues_max bound) fit the budget.
        assert!(queue_cost_bytes(4, 16) * 2 * 127 < STOCK_RLIMIT_MSGQUEUE_BYTES);
    }
}
