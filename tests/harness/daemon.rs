//! One child process of a test cluster: how to start it (kept, so it can be restarted with the
//! same arguments), its log file (stdout and stderr, appended across restarts), and the
//! signals tests send it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `terminate` waits for a clean exit before it SIGKILLs.
pub const TERMINATE_WAIT_MS: u64 = 3000;

/// A daemon the harness started.
#[derive(Debug)]
pub struct Daemon {
    /// Short name for messages, e.g. `chmpx 127.0.0.1:40123`.
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    /// Where its output goes.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// A daemon that is not running yet.
    pub fn new(name: String, program: PathBuf, args: Vec<String>, log: PathBuf) -> Daemon {
        Daemon {
            name,
            program,
            args,
            log,
            child: None,
        }
    }

    /// Starts it (again). A running instance is SIGKILLed first.
    pub fn spawn(&mut self) -> Result<(), String> {
        self.kill9();
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|e| format!("log {}: {e}", self.log.display()))
        };
        let (out, err) = (open()?, open()?);
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {} ({}): {e}",
                    self.name,
                    self.program.display()
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Its pid, when running.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// Whether it was started and has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Its exit status, if it has exited by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process freezes (a hung node).
    pub fn stop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT: a stopped process resumes.
    pub fn cont(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`TERMINATE_WAIT_MS`].
    pub fn terminate(&mut self) {
        self.cont();
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_millis(TERMINATE_WAIT_MS);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The last `lines` lines of a text file ("" when unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
