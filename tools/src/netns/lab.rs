//! A [`Lab`]: one bridge namespace and N host namespaces joined by veth pairs, each host with
//! its own address `10.77.<subnet>.<i+1>/24`, IPC namespace, `/dev/shm`, and data directory
//! (bound at [`Lab::data_path`] inside the host, so one config file serves every host).
//!
//! ```text
//!   bridge ns:   br0 ── h0 ── h1 ── h2 ...          (no address; plain L2 switch)
//!                       │     │     │   veth pairs
//!   host ns:          eth0  eth0  eth0              10.77.S.1, .2, .3 ...
//! ```
//!
//! Dropping the lab kills every process in any of its namespaces and waits for them; see the
//! module doc of [`super`] for why nothing can outlive the test process either.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::disk::tmpfs_options;
use super::holder::{output_within, pid_exists, processes_in, Holder};
use super::{NetnsError, HOSTS_MAX, HOST_SHM_SIZE_MIB};

/// Longest wait for the processes of a dropped lab to disappear.
pub const TEARDOWN_WAIT_MS: u64 = 5000;
/// Name of each host's interface.
pub const HOST_IFACE: &str = "eth0";
/// Name of the bridge in the bridge namespace.
pub const BRIDGE_NAME: &str = "br0";

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Number of hosts (1..=[`HOSTS_MAX`]).
    pub hosts: usize,
    /// Third octet of the lab's private subnet 10.77.S.0/24. Each lab's network is isolated,
    /// so two labs may use the same value; a distinct one only makes logs easier to read.
    pub subnet: u8,
    /// When set, each host's data directory is a tmpfs of this many bytes inside its own mount
    /// namespace (instead of its folder `h<i>/data`, which then stays empty), so a full-disk
    /// fault ([`Lab::fill_disk`]) can fill it. At most [`DATA_TMPFS_BYTES_MAX`].
    pub data_tmpfs_bytes: Option<u64>,
}

/// Largest tmpfs data directory a lab host may have, bytes (tmpfs lives in memory).
pub const DATA_TMPFS_BYTES_MAX: u64 = 256 * 1024 * 1024;

impl LabSpec {
    /// `hosts` hosts on 10.77.0.0/24, data directories on the machine's disk.
    pub fn new(hosts: usize) -> LabSpec {
        LabSpec {
            hosts,
            subnet: 0,
            data_tmpfs_bytes: None,
        }
    }
}

/// One simulated host.
#[derive(Debug)]
pub struct Host {
    index: usize,
    name: String,
    addr: Ipv4Addr,
    dir: PathBuf,
    holder: Holder,
}

/// A process running on a host; SIGKILLed when dropped.
#[derive(Debug)]
pub struct HostProcess {
    /// Short name, for logs and errors ("h0/chmpx").
    pub name: String,
    /// Where its stdout and stderr go (outside view).
    pub log: PathBuf,
    child: Child,
    exited: Option<std::process::ExitStatus>,
}

/// Namespaces and processes a lab made, to check after teardown that none remains.
#[derive(Debug, Clone, Default)]
pub struct Footprint {
    /// Namespace inode numbers (net, ipc, mnt of the bridge and every host).
    pub inodes: Vec<u64>,
    /// Pids of the holders.
    pub holder_pids: Vec<u32>,
}

impl Footprint {
    /// What is still alive of the lab: processes in its namespaces, living holders.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = processes_in(&self.inodes)
            .into_iter()
            .map(|p| format!("process {p} still in a lab namespace"))
            .collect();
        for p in &self.holder_pids {
            if pid_exists(*p) {
                out.push(format!("holder {p} still alive"));
            }
        }
        out
    }

    /// Waits up to [`TEARDOWN_WAIT_MS`] for [`Footprint::leftovers`] to be empty; returns
    /// what remains.
    pub fn wait_gone(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_millis(TEARDOWN_WAIT_MS);
        loop {
            let left = self.leftovers();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The bridge and the hosts. Dropping it tears everything down.
pub struct Lab {
    spec: LabSpec,
    // Hosts before the bridge: dropped first.
    hosts: Vec<Host>,
    bridge: Holder,
    data_path: PathBuf,
    // Last: removed after every process is dead.
    dir: tempfile::TempDir,
}

fn check_root() -> Result<(), NetnsError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(NetnsError::NotPermitted(
            "not running as root (euid is not 0)".into(),
        ));
    }
    Ok(())
}

/// Prefix of lab folders in the temp dir.
pub const LAB_DIR_PREFIX: &str = "dkc-lab-";
/// File in a lab folder holding the pid of the process that made it.
const OWNER_FILE: &str = "owner.pid";

/// Removes lab folders whose maker died without cleaning up (SIGKILL skips destructors; the
/// namespaces and processes are gone with it, only the folder stays).
fn sweep_stale_lab_dirs() {
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(LAB_DIR_PREFIX) {
            continue;
        }
        let owner = std::fs::read_to_string(e.path().join(OWNER_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        if let Some(pid) = owner {
            if !pid_exists(pid) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

const BRIDGE_SETUP: &str = "ip link set lo up\nip link add br0 type bridge\nip link set br0 up";

fn host_setup(data_tmpfs_bytes: Option<u64>) -> String {
    // $1: the host's own data dir, $2: the common data path it is bound at (or where its
    // tmpfs data dir is mounted, in its own mount namespace only).
    let data = match data_tmpfs_bytes {
        Some(bytes) => format!("mount -t tmpfs -o {} tmpfs \"$2\"", tmpfs_options(bytes)),
        None => "mount --bind \"$1\" \"$2\"".to_string(),
    };
    format!(
        "mount -t tmpfs -o mode=1777,size={HOST_SHM_SIZE_MIB}m tmpfs /dev/shm\n\
         if [ -d /dev/mqueue ]; then mount -t mqueue mqueue /dev/mqueue; fi\n\
         {data}\n\
         ip link set lo up"
    )
}

impl Lab {
    /// Builds the bridge and the hosts. Fails with [`NetnsError::NotPermitted`] when not root
    /// or when namespaces cannot be made; whatever was made is torn down on error.
    pub fn new(spec: LabSpec) -> Result<Lab, NetnsError> {
        check_root()?;
        if spec.hosts == 0 || spec.hosts > HOSTS_MAX {
            return Err(NetnsError::Bad(format!(
                "{} hosts asked; a lab has 1..={HOSTS_MAX}",
                spec.hosts
            )));
        }
        if let Some(bytes) = spec.data_tmpfs_bytes {
            if bytes == 0 || bytes > DATA_TMPFS_BYTES_MAX {
                return Err(NetnsError::Bad(format!(
                    "tmpfs data directories of {bytes} bytes asked; 1..={DATA_TMPFS_BYTES_MAX}"
                )));
            }
        }
        sweep_stale_lab_dirs();
        let dir = tempfile::Builder::new()
            .prefix(LAB_DIR_PREFIX)
            .tempdir()
            .map_err(|e| NetnsError::io("create lab dir", e))?;
        let owner = dir.path().join(OWNER_FILE);
        std::fs::write(&owner, std::process::id().to_string())
            .map_err(|e| NetnsError::io(format!("write {}", owner.display()), e))?;
        let data_path = dir.path().join("data");
        std::fs::create_dir_all(&data_path)
            .map_err(|e| NetnsError::io(format!("mkdir {}", data_path.display()), e))?;
        let bridge = Holder::start("bridge", BRIDGE_SETUP, &[])?;
        let mut lab = Lab {
            spec: spec.clone(),
            hosts: Vec::new(),
            bridge,
            data_path,
            dir,
        };
        for i in 0..spec.hosts {
            let host = lab.make_host(i)?;
            lab.hosts.push(host);
        }
        Ok(lab)
    }

    fn make_host(&self, i: usize) -> Result<Host, NetnsError> {
        let name = format!("h{i}");
        let hdir = self.dir.path().join(&name);
        let own_data = hdir.join("data");
        std::fs::create_dir_all(hdir.join("logs"))
            .and_then(|_| std::fs::create_dir_all(&own_data))
            .map_err(|e| NetnsError::io(format!("mkdir {}", hdir.display()), e))?;
        let holder = Holder::start(
            &name,
            &host_setup(self.spec.data_tmpfs_bytes),
            &[
                &own_data.to_string_lossy(),
                &self.data_path.to_string_lossy(),
            ],
        )?;
        let addr = Ipv4Addr::new(10, 77, self.spec.subnet, (i + 1) as u8);
        let pid = holder.pid().to_string();
        let port = format!("h{i}");
        self.bridge.run(
            "ip",
            &[
                "link", "add", &port, "type", "veth", "peer", "name", HOST_IFACE, "netns", &pid,
            ],
        )?;
        self.bridge
            .run("ip", &["link", "set", &port, "master", BRIDGE_NAME])?;
        self.bridge.run("ip", &["link", "set", &port, "up"])?;
        holder.run(
            "ip",
            &["addr", "add", &format!("{addr}/24"), "dev", HOST_IFACE],
        )?;
        holder.run("ip", &["link", "set", HOST_IFACE, "up"])?;
        Ok(Host {
            index: i,
            name,
            addr,
            dir: hdir,
            holder,
        })
    }

    /// Host `i`. Panics when `i` is out of range (a test bug).
    pub fn host(&self, i: usize) -> &Host {
        assert!(
            i < self.hosts.len(),
            "host {i} of a {}-host lab",
            self.hosts.len()
        );
        &self.hosts[i]
    }

    /// Every host, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The lab's folder (outside view): `h<i>/data`, `h<i>/logs`, configs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path at which every host sees its own data directory.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Host `i`'s data directory as the test process reaches it: through its holder's root
    /// (`/proc/<pid>/root`, which resolves paths in the host's mount namespace), so a tmpfs
    /// mounted only there is reached too.
    pub fn data_dir_of(&self, i: usize) -> PathBuf {
        let pid = self.host(i).holder.pid();
        let inside = self.data_path.strip_prefix("/").unwrap_or(&self.data_path);
        PathBuf::from(format!("/proc/{pid}/root")).join(inside)
    }

    /// The spec the lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// The bridge's namespaces, for commands there (e.g. `ip link` of the bridge ports).
    pub fn bridge(&self) -> &Holder {
        &self.bridge
    }

    /// What to check after the lab is dropped.
    pub fn footprint(&self) -> Footprint {
        let mut f = Footprint::default();
        for h in std::iter::once(&self.bridge).chain(self.hosts.iter().map(|h| &h.holder)) {
            f.inodes.extend(h.inodes());
            f.holder_pids.push(h.pid());
        }
        f
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Kill everything in the lab's namespaces, not only what we spawned: a process a test
        // entered by other means would otherwise keep a namespace alive.
        let f = self.footprint();
        for _ in 0..3 {
            let pids = processes_in(&f.inodes);
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: kill with a pid we just saw in one of our namespaces.
                unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.hosts.clear();
        // The bridge holder is dropped (killed and reaped) with the struct.
    }
}

impl Host {
    /// Index in the lab.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Name ("h0", "h1", ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the lab's network.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its folder (outside view), holding `data/` and `logs/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its namespace holder.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// A command that will run on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.holder.command(program)
    }

    /// Starts `cmd` on this host (built with [`Host::command`]), logging its output to
    /// `logs/<name>.log`.
    pub fn spawn(&self, name: &str, mut cmd: Command) -> Result<HostProcess, NetnsError> {
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| NetnsError::io(format!("open {}", log.display()), e))?;
        let err = file
            .try_clone()
            .map_err(|e| NetnsError::io("dup log file", e))?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd.spawn().map_err(|e| NetnsError::Tool {
            tool: format!("{program} on {}", self.name),
            source: e,
        })?;
        Ok(HostProcess {
            name: format!("{}/{name}", self.name),
            log,
            child,
            exited: None,
        })
    }

    /// Runs `cmd` (built with [`Host::command`]) to completion within `limit_ms`.
    pub fn output(&self, cmd: Command, limit_ms: u64) -> Result<Output, NetnsError> {
        let what = format!("{} on {}", cmd.get_program().to_string_lossy(), self.name);
        output_within(cmd, &what, limit_ms)
    }

    /// Runs a setup tool (`ip`, `iptables`) on this host; an error unless it exits 0.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        self.holder.run(program, args)
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child we have not reaped yet (so the pid is still ours).
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

impl HostProcess {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(s)) => {
                self.exited = Some(s);
                false
            }
            _ => true,
        }
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// SIGSTOP (the process hangs).
    pub fn stop(&mut self) {
        if self.is_running() {
            signal(self.pid(), libc::SIGSTOP);
        }
    }

    /// SIGCONT.
    pub fn cont(&mut self) {
        if self.is_running() {
            signal(self.pid(), libc::SIGCONT);
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
