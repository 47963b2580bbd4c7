//! A set of named child processes, each with its own log file in one folder. Names are the
//! handles tests use (`chmpx-<ctlport>`, `dkc-server-<ctlport>`); dropping the set SIGKILLs
//! and reaps every child, also when the test panics, so nothing outlives it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use super::LaunchError;

/// Where a child's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// stderr appended to `<dir>/<name>.log`, stdout discarded (the daemons log to stderr).
    StderrToLog,
    /// Both discarded.
    Discard,
}

struct Named {
    name: String,
    child: Child,
}

/// Running children by name; see the module doc.
pub struct Procs {
    dir: PathBuf,
    children: Vec<Named>,
}

impl Procs {
    /// An empty set whose logs go to `dir`.
    pub fn new(dir: &Path) -> Procs {
        Procs {
            dir: dir.to_path_buf(),
            children: Vec::new(),
        }
    }

    /// The log file of the child called `name` (whether or not it runs).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Starts `program args...` as `name`; returns its pid. A running child of that name is
    /// SIGKILLed first, so a restart never leaks the old process. Logs are appended to, so a
    /// restarted child's log keeps what the previous one wrote.
    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        output: Output,
    ) -> Result<u32, LaunchError> {
        self.kill(name);
        let stderr = match output {
            Output::StderrToLog => {
                let path = self.log_path(name);
                let f = std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| LaunchError::Write { path, source })?;
                Stdio::from(f)
            }
            Output::Discard => Stdio::null(),
        };
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                name: name.to_string(),
                program: program.to_path_buf(),
                source,
            })?;
        let pid = child.id();
        self.children.push(Named {
            name: name.to_string(),
            child,
        });
        Ok(pid)
    }

    /// SIGKILLs and reaps the child `name`; whether it was in the set.
    pub fn kill(&mut self, name: &str) -> bool {
        match self.children.iter().position(|c| c.name == name) {
            Some(i) => {
                let mut c = self.children.remove(i);
                let _ = c.child.kill();
                let _ = c.child.wait();
                true
            }
            None => false,
        }
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the child `name`.
    pub fn signal(&self, name: &str, signal: i32) -> Result<(), LaunchError> {
        let c = self
            .children
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| LaunchError::NoSuchProcess(name.to_string()))?;
        let pid = c.child.id();
        let err = |source| LaunchError::Signal {
            name: name.to_string(),
            pid,
            signal,
            source,
        };
        let raw = libc::pid_t::try_from(pid)
            .map_err(|_| err(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
        // SAFETY: kill(2) on the pid of our own child, which is in the set and so not reaped.
        if unsafe { libc::kill(raw, signal) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The first child that has exited by itself, with its status (it stays in the set).
    pub fn first_exited(&mut self) -> Option<(String, ExitStatus)> {
        self.children.iter_mut().find_map(|c| {
            c.child
                .try_wait()
                .ok()
                .flatten()
                .map(|st| (c.name.clone(), st))
        })
    }

    /// Names of the children in the set, in start order.
    pub fn names(&self) -> Vec<String> {
        self.children.iter().map(|c| c.name.clone()).collect()
    }

    /// SIGKILLs and reaps every child.
    pub fn kill_all(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The last `lines` lines of a text file, joined by newlines ("" when unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_signal_kill_and_exit_are_tracked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut procs = Procs::new(dir.path());
        let sh = Path::new("/bin/sh");
        procs
            .spawn(
                "talker",
                sh,
                &["-c".into(), "echo one >&2; echo two >&2; exit 3".into()],
                Output::StderrToLog,
            )
            .unwrap();
        procs
            .spawn(
                "sleeper",
                sh,
                &["-c".into(), "sleep 30".into()],
                Output::Discard,
            )
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let exited = loop {
            if let Some(e) = procs.first_exited() {
                break e;
            }
            assert!(std::time::Instant::now() < deadline, "talker never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(exited.0, "talker");
        assert_eq!(exited.1.code(), Some(3));
        assert_eq!(log_tail(&procs.log_path("talker"), 1), "two");
        assert_eq!(log_tail(&procs.log_path("talker"), 5), "one\ntwo");
        procs.signal("sleeper", libc::SIGCONT).unwrap();
        assert!(matches!(
            procs.signal("nobody", libc::SIGCONT),
            Err(LaunchError::NoSuchProcess(_))
        ));
        assert!(procs.kill("sleeper"));
        assert!(!procs.kill("sleeper"));
        assert_eq!(procs.names(), vec!["talker".to_string()]);
    }
}
