//! One namespace holder: a process started in new network, IPC and mount namespaces
//! (`unshare --net --ipc --mount --propagation private`) that makes its mounts, says `ready`
//! and sleeps. Its `/proc/<pid>/ns/*` files are how other processes enter the namespaces
//! (`setns(2)` between `fork` and `exec`, see [`Holder::command`]).
//!
//! A holder dies with the thread that started it (`PR_SET_PDEATHSIG`), when it is dropped, or
//! after [`HOLDER_LIFETIME_MAX_SECS`]; its namespaces die with their last process.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{NetnsError, HOLDER_LIFETIME_MAX_SECS, HOLDER_READY_WAIT_MS, SETUP_COMMAND_MAX_MS};

/// Poll interval while waiting for a child with a deadline.
const CHILD_POLL_INTERVAL_MS: u64 = 10;

/// Makes the child die with the spawning thread; call from `pre_exec` only.
///
/// # Safety
/// Async-signal-safe: only `prctl` and `getppid`.
unsafe fn die_with_parent(parent: libc::pid_t) -> std::io::Result<()> {
    if libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    ) != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // The parent may have died between fork and prctl: then nobody would kill us.
    if libc::getppid() != parent {
        libc::_exit(1);
    }
    Ok(())
}

/// Sets `PR_SET_PDEATHSIG` SIGKILL on the child of `cmd`.
pub fn die_with_parent_on(cmd: &mut Command) {
    // SAFETY: getpid is always safe.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure calls only async-signal-safe functions.
    unsafe {
        cmd.pre_exec(move || die_with_parent(parent));
    }
}

/// The namespaces of one holder, open so that children can `setns` into them.
#[derive(Debug)]
pub struct Holder {
    name: String,
    child: Child,
    net: OwnedFd,
    ipc: OwnedFd,
    mnt: OwnedFd,
    /// Inode numbers of (net, ipc, mnt), to check later that they are gone.
    inodes: [u64; 3],
}

fn ns_inode(pid: u32, ns: &str) -> Result<u64, NetnsError> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map_err(|e| NetnsError::io(format!("read /proc/{pid}/ns/{ns}"), e))?;
    // "net:[4026532281]"
    let text = link.to_string_lossy();
    text.split('[')
        .nth(1)
        .and_then(|s| s.trim_end_matches(']').parse().ok())
        .ok_or_else(|| NetnsError::Bad(format!("unexpected namespace link {text}")))
}

impl Holder {
    /// Starts a holder that runs `setup` (a POSIX shell script, `$1`.. = `args`) inside its
    /// new namespaces, then reports ready. `name` appears in errors.
    pub fn start(name: &str, setup: &str, args: &[&str]) -> Result<Holder, NetnsError> {
        let script =
            format!("set -e\n{setup}\necho ready\nexec sleep {HOLDER_LIFETIME_MAX_SECS}\n");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--net",
            "--ipc",
            "--mount",
            "--propagation",
            "private",
            "--",
        ])
        .args(["sh", "-c", &script, "holder"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        die_with_parent_on(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| NetnsError::Tool {
            tool: "unshare".into(),
            source: e,
        })?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = BufReader::new(out).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_millis(HOLDER_READY_WAIT_MS))
            .unwrap_or_default();
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let detail = format!("stdout {line:?}, stderr {:?}", err.trim());
            if err.contains("Operation not permitted") || err.contains("unshare failed") {
                return Err(NetnsError::NotPermitted(detail));
            }
            return Err(NetnsError::Holder {
                name: name.into(),
                detail,
            });
        }
        let pid = child.id();
        let open = |ns: &str| -> Result<OwnedFd, NetnsError> {
            let path = format!("/proc/{pid}/ns/{ns}");
            File::open(&path)
                .map(OwnedFd::from)
                .map_err(|e| NetnsError::io(format!("open {path}"), e))
        };
        let inodes = [
            ns_inode(pid, "net")?,
            ns_inode(pid, "ipc")?,
            ns_inode(pid, "mnt")?,
        ];
        Ok(Holder {
            name: name.into(),
            net: open("net")?,
            ipc: open("ipc")?,
            mnt: open("mnt")?,
            child,
            inodes,
        })
    }

    /// The holder's pid (in the machine's pid namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Inode numbers of its (net, ipc, mnt) namespaces.
    pub fn inodes(&self) -> [u64; 3] {
        self.inodes
    }

    /// A command whose process runs inside this holder's namespaces (net, ipc, mount; cwd
    /// `/`) and dies with the spawning thread.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fds = [
            (self.net.as_raw_fd(), libc::CLONE_NEWNET),
            (self.ipc.as_raw_fd(), libc::CLONE_NEWIPC),
            (self.mnt.as_raw_fd(), libc::CLONE_NEWNS),
        ];
        // SAFETY: getpid is always safe.
        let parent = unsafe { libc::getpid() };
        // SAFETY: between fork and exec the closure calls only async-signal-safe syscalls
        // (prctl, getppid, setns, chdir) on fds this Holder keeps open until it is dropped;
        // the child of fork is single-threaded, so setns into a mount namespace is allowed.
        unsafe {
            cmd.pre_exec(move || {
                die_with_parent(parent)?;
                for (fd, kind) in fds {
                    if libc::setns(fd, kind) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `program args` inside the namespaces, bounded by [`SETUP_COMMAND_MAX_MS`]; an
    /// error unless it exits 0.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        let what = format!("[{}] {program} {}", self.name, args.join(" "));
        let mut cmd = self.command(program);
        cmd.args(args);
        let out = output_within(cmd, &what, SETUP_COMMAND_MAX_MS)?;
        if !out.status.success() {
            return Err(NetnsError::Command {
                what,
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion with its output captured, killing it after `limit_ms`.
pub fn output_within(mut cmd: Command, what: &str, limit_ms: u64) -> Result<Output, NetnsError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|e| NetnsError::Tool {
        tool: program,
        source: e,
    })?;
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let read = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_t = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_millis(limit_ms);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(CHILD_POLL_INTERVAL_MS))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NetnsError::Timeout {
                    what: what.into(),
                    limit_ms,
                });
            }
            Err(e) => return Err(NetnsError::io(format!("wait for {what}"), e)),
        }
    };
    Ok(Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn pid_exists(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Field 3, after the ")" that closes the command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Pids of processes whose net, ipc or mnt namespace is one of `inodes`.
pub fn processes_in(inodes: &[u64]) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        for ns in ["net", "ipc", "mnt"] {
            if let Ok(i) = ns_inode(pid, ns) {
                if inodes.contains(&i) && pid_exists(pid) {
                    out.push(pid);
                    break;
                }
            }
        }
    }
    out
}
