//! Shared helpers of the attach transport tests: unique cluster names, the `mq-echo` listener
//! as a child process, and cleanup of whatever a killed listener left.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Control port used by the tests (part of the names only; nothing listens on TCP).
pub const CTLPORT: u16 = 18021;

/// A cluster name no other test (or test run) uses.
pub fn unique_cluster(tag: &str) -> String {
    format!(
        "t{}{}{}",
        tag,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The echo listener, running as a child process.
pub struct Echo {
    pub child: Child,
    pub cluster: String,
}

impl Echo {
    /// Starts `mq-echo` and waits for its READY line.
    pub fn start(cluster: &str, extra: &[&str]) -> Echo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mq-echo"))
            .args(["--cluster", cluster, "--ctlport", &CTLPORT.to_string()])
            .args(if extra.contains(&"--liveness-ms") {
                &[][..]
            } else {
                &["--liveness-ms", "20"][..]
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mq-echo");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read READY");
        assert!(line.starts_with("READY"), "mq-echo did not start: {line:?}");
        Echo {
            child,
            cluster: cluster.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap (a zombie would still look alive to kill(pid, 0)).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // SIGTERM first so the listener removes its accept queue and marker itself.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill9();
    }
}

/// Names in /dev/shm belonging to `cluster`.
pub fn shm_objects(cluster: &str) -> Vec<String> {
    let prefix = format!("dkc.{cluster}.");
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes everything a SIGKILLed listener of `cluster` may have left.
pub fn remove_listener_leftovers(cluster: &str) {
    let names = chmpx::attach::names::ChmpxNames::new(cluster, CTLPORT).unwrap();
    let _ = chmpx::ipc::mq::MessageQueue::unlink(&names.accept_queue());
    let _ = chmpx::ipc::shm::SharedMemory::unlink(&names.chmpx_segment());
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
