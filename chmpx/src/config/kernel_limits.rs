//! [`KernelLimits`]: the POSIX message-queue limits in force for this process.
//!
//! Read from /proc/sys/fs/mqueue (per IPC namespace) and RLIMIT_MSGQUEUE
//! (per user, bytes). A value that cannot be read is `None` and reported as
//! unknown, never guessed.

use std::path::Path;

/// Where the mqueue sysctls live.
pub const MQUEUE_SYSCTL_DIR: &str = "/proc/sys/fs/mqueue";
/// Where POSIX shared memory lives.
pub const DEV_SHM_DIR: &str = "/dev/shm";

/// The limits `chmpx --check` compares a config against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelLimits {
    /// fs.mqueue.msg_max: deepest queue an unprivileged process may create.
    pub msg_max: Option<u64>,
    /// fs.mqueue.msgsize_max: largest message an unprivileged process may use.
    pub msgsize_max: Option<u64>,
    /// fs.mqueue.queues_max: queues in this IPC namespace, all users together.
    pub queues_max: Option<u64>,
    /// RLIMIT_MSGQUEUE soft limit: queue bytes per user.
    pub rlimit_msgqueue_bytes: Option<u64>,
    /// Free bytes in /dev/shm.
    pub dev_shm_free_bytes: Option<u64>,
}

impl KernelLimits {
    /// The Linux defaults of a stock kernel (what a fresh IPC namespace has).
    pub const STOCK: KernelLimits = KernelLimits {
        msg_max: Some(10),
        msgsize_max: Some(8192),
        queues_max: Some(256),
        rlimit_msgqueue_bytes: Some(819_200),
        dev_shm_free_bytes: None,
    };

    /// Reads the limits of this process.
    pub fn read() -> KernelLimits {
        Self::read_from(Path::new(MQUEUE_SYSCTL_DIR))
    }

    /// Reads the sysctls from `dir` (tests point it at a fake folder).
    pub fn read_from(dir: &Path) -> KernelLimits {
        let sysctl = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
        };
        let rlimit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MSGQUEUE)
            .ok()
            .map(|(soft, _hard)| soft);
        // The statvfs field widths differ between platforms; widen both to u64.
        #[allow(clippy::useless_conversion)]
        let shm = nix::sys::statvfs::statvfs(DEV_SHM_DIR)
            .ok()
            .map(|s| u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())));
        KernelLimits {
            msg_max: sysctl("msg_max"),
            msgsize_max: sysctl("msgsize_max"),
            queues_max: sysctl("queues_max"),
            rlimit_msgqueue_bytes: rlimit,
            dev_shm_free_bytes: shm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fake_sysctls_and_tolerates_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("msg_max"), "10\n").unwrap();
        std::fs::write(dir.path().join("queues_max"), "garbage").unwrap();
        let l = KernelLimits::read_from(dir.path());
        assert_eq!(l.msg_max, Some(10));
        assert_eq!(l.queues_max, None);
        assert_eq!(l.msgsize_max, None);
    }
}
