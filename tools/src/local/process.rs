//! Child processes of a local run: started in their own process group (so a Ctrl-C at the
//! terminal reaches only dkc-local, which then stops them in order), with stdout and stderr in
//! a log file, and with a parent-death signal so that nothing outlives a dkc-local that was
//! itself killed. Stopping is SIGTERM, a bounded wait, then SIGKILL.

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a stopping child is polled.
const STOP_POLL_MS: u64 = 20;

/// One started process.
pub struct Proc {
    /// e.g. `chmpx 8021`, `dkc-server 8023`, `dkc-memcached`.
    pub name: String,
    pub log: PathBuf,
    child: Child,
    /// Set once it has exited (and been reaped).
    pub exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `program args...`, appending its output to `log`. With `stdout_piped`, stdout is
    /// a pipe the caller reads (stderr still goes to the log).
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        stdout_piped: bool,
    ) -> std::io::Result<Proc> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(if stdout_piped {
                Stdio::piped()
            } else {
                Stdio::from(out)
            })
            .stderr(Stdio::from(err));
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (setpgid, prctl, getppid) without allocating.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                // The parent may have died between fork and prctl.
                if libc::getppid() == 1 {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {}: {e}", program.display()))
        })?;
        Ok(Proc {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The exit status if it has exited since the last call (reaps it); `None` while it runs
    /// or when its death was already reported.
    pub fn newly_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return None;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.exited = Some(st);
                Some(st)
            }
            _ => None,
        }
    }

    pub fn is_running(&mut self) -> bool {
        let _ = self.newly_exited();
        self.exited.is_none()
    }

    /// Sends `sig` unless it has exited (a reaped pid could belong to someone else).
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.is_running() {
            // SAFETY: kill with a pid we spawned and have not reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// Waits up to `bound` for it to exit; true when it did.
    pub fn wait_exit(&mut self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            if !self.is_running() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(STOP_POLL_MS));
        }
    }

    /// SIGKILL and reap.
    pub fn kill_now(&mut self) {
        self.signal(libc::SIGKILL);
        if let Ok(st) = self.child.wait() {
            self.exited.get_or_insert(st);
        }
    }

    /// The last `n` lines of its log, for reports of a death.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }
}

/// The last `n` lines of a log file ("" when unreadable).
pub use chmpx::testkit::procs::log_tail;

/// Words for an exit status ("exit code 1", "killed by signal 9").
pub fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => st.to_string(),
    }
}

/// Stops a group of processes together: SIGTERM to all, wait up to `bound`, SIGKILL the rest.
/// Returns the names of those that needed SIGKILL.
pub fn stop_group(procs: &mut [&mut Proc], bound: Duration) -> Vec<String> {
    for p in procs.iter_mut() {
        p.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + bound;
    let mut killed = Vec::new();
    for p in procs.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if !p.wait_exit(left) {
            p.kill_now();
            killed.push(p.name.clone());
        }
    }
    killed
}

/// True while a process with this pid exists (signal 0 probe).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
