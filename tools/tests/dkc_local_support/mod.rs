//! Harness of the dkc-local scenario tests: builds the programs dkc-local starts (once), runs
//! `dkc-local up` on free ports with a unique GROUP, waits for its ready line, and on drop stops
//! it (SIGTERM, bounded wait, SIGKILL) and kills anything of the run still alive. Also a raw
//! memcached text client and checks for the external memcached clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dkc_tools::local::runfile::RunFile;

pub const DKC_LOCAL: &str = env!("CARGO_BIN_EXE_dkc-local");
/// Longest wait for the ready line (the programs are already built by then).
pub const READY_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for dkc-local to stop after SIGTERM.
pub const STOP_WAIT: Duration = Duration::from_secs(30);
/// Socket timeout of the raw memcached client: an answer slower than this is a hang.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The target directory's profile folder, where dkc-local and its siblings live.
pub fn bin_dir() -> PathBuf {
    Path::new(DKC_LOCAL).parent().unwrap().to_path_buf()
}

/// Builds chmpx, dkc-server and dkc-memcached once per test process (dkc-local would do it too,
/// but then the build would count against the ready timeout).
pub fn ensure_built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        let dir = bin_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build");
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => {
                cmd.arg("--release");
            }
            Some("debug") | None => {}
            Some(p) => {
                cmd.args(["--profile", p]);
            }
        }
        cmd.args(["-p", "chmpx", "-p", "dkc-server", "-p", "dkc-client"])
            .args([
                "--bin",
                "chmpx",
                "--bin",
                "dkc-server",
                "--bin",
                "dkc-memcached",
            ])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .env("CARGO_TARGET_DIR", dir.parent().unwrap());
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!(
                "building chmpx/dkc-server/dkc-memcached failed: {s}"
            )),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Ports past the base that one `dkc-local up` run may use, for any node count up to this.
const SPAN_EXTRA: u16 = 12;

/// A base port such that every port of an N-node run (data, control, metrics, slave) is free
/// now and reserved for this test process until it exits (chmpx's testkit: below the ephemeral
/// range, locked machine-wide), so neither another test process, nor another test of this one,
/// nor an outgoing connection can take one before dkc-local binds it.
pub fn free_base_port(nodes: usize) -> u16 {
    let span = 2 * nodes as u16 + SPAN_EXTRA;
    let offsets: Vec<u16> = (0..span)
        .chain((0..span).map(|i| dkc_tools::local::config_gen::METRICS_PORT_OFFSET + i))
        .collect();
    chmpx::testkit::ports::free_port_block(&offsets)
        .unwrap_or_else(|e| panic!("no free range of ports for a local cluster: {e}"))
}

/// A running `dkc-local up`.
pub struct Local {
    pub dir: PathBuf,
    pub group: String,
    pub base: u16,
    pub nodes: usize,
    pub child: Option<Child>,
    pub lines: Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
    pub memcached: SocketAddr,
    /// Processes the test started itself (restarted nodes); killed on drop.
    pub extra: Vec<Child>,
}

impl Local {
    /// `dkc-local up` on `dir` (kept by the caller so a second run finds the data).
    pub fn up(dir: &Path, group: &str, nodes: usize, base: u16) -> Local {
        ensure_built();
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        Local::up_with(Command::new(DKC_LOCAL), &conf, dir, group, nodes, base)
    }

    /// `dkc-local up` run by `cmd` (the dkc-local program, or a launcher such as `setpriv`
    /// with it as its first argument already given), with the INI files of `conf`.
    pub fn up_with(
        mut cmd: Command,
        conf: &Path,
        dir: &Path,
        group: &str,
        nodes: usize,
        base: u16,
    ) -> Local {
        let mut child = cmd
            .args(["up", "--port", "0", "--nodes", &nodes.to_string()])
            .arg("--dir")
            .arg(dir)
            .args(["--base-port", &base.to_string(), "--group", group])
            .arg("--conf-dir")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn dkc-local");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut local = Local {
            dir: dir.to_path_buf(),
            group: group.to_string(),
            base,
            nodes,
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
            memcached: SocketAddr::from(([127, 0, 0, 1], 0)),
            extra: Vec::new(),
        };
        let line = local.wait_line("ready: memcached on ", READY_WAIT);
        local.memcached = line
            .strip_prefix("ready: memcached on ")
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        local
    }

    /// A fresh unique GROUP for this test process.
    pub fn unique_group(tag: &str) -> String {
        format!(
            "{tag}{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Waits for a stdout line starting with `prefix`; panics with what was seen on timeout or
    /// when dkc-local exits first.
    pub fn wait_line(&mut self, prefix: &str, bound: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return l.clone();
        }
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "no line starting with {prefix:?} from dkc-local within {bound:?}; it printed:\n{}\n{}",
            self.seen.join("\n"),
            self.log_tails()
        );
    }

    /// Lines printed so far (drains what is pending).
    pub fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    pub fn run_file(&self) -> RunFile {
        RunFile::read(&self.dir).expect("the run file of a running dkc-local")
    }

    /// Pid of the process named exactly `name` in the run file.
    pub fn pid_of(&self, name: &str) -> u32 {
        self.run_file()
            .procs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name:?} in the run file"))
            .pid
    }

    pub fn ctlport(&self, node: usize) -> u16 {
        self.base + 2 * node as u16 + 1
    }

    pub fn slave_ctlport(&self) -> u16 {
        self.base + 11.max(2 * self.nodes as u16 + 1)
    }

    /// SIGTERMs dkc-local and waits (bounded) for it; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.drain();
                return st.success();
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts node `i`'s chmpx and dkc-server as children of the test.
    pub fn restart_node(&mut self, i: usize) {
        let ctl = self.ctlport(i).to_string();
        let ini = self.dir.join("server.ini");
        for prog in ["chmpx", "dkc-server"] {
            let log = std::fs::File::create(
                self.dir
                    .join("logs")
                    .join(format!("{prog}-{ctl}-restarted.log")),
            )
            .unwrap();
            let c = Command::new(bin_dir().join(prog))
                .arg("--conf")
                .arg(&ini)
                .args(["--ctlport", &ctl])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("restart {prog}: {e}"));
            self.extra.push(c);
            if prog == "chmpx" {
                let port: u16 = ctl.parse().unwrap();
                let deadline = Instant::now() + READY_WAIT;
                while dkc_tools::local::ready::status(port).is_none() {
                    assert!(
                        Instant::now() < deadline,
                        "restarted chmpx {ctl} does not answer"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Waits until the slave sees every server UP with its dkc-server attached and no merge
    /// pending or under way.
    pub fn wait_all_serving(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            if dkc_tools::local::ready::status(self.slave_ctlport())
                .is_some_and(|r| dkc_tools::local::ready::all_servers_serving(&r, self.nodes))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not come back within {bound:?}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of every log of the run, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join("logs")) {
            for e in rd.flatten() {
                out.push_str(&format!("--- {}\n", e.path().display()));
                out.push_str(&dkc_tools::local::process::log_tail(&e.path(), 8));
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let procs = RunFile::read(&self.dir)
            .map(|r| r.procs)
            .unwrap_or_default();
        self.stop();
        for c in &mut self.extra {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in procs {
            if dkc_tools::local::process::pid_alive(p.pid) {
                // SAFETY: kill(2) on a pid of this run that outlived dkc-local.
                unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
            }
        }
        dkc_tools::local::up::remove_ipc_objects(&self.group);
    }
}

/// A blocking memcached text-protocol client (enough for set/get and error counting).
pub struct Mc {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

/// What one request got.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Ok(Option<Vec<u8>>),
    ServerError(String),
}

impl Mc {
    pub fn connect(addr: SocketAddr) -> Mc {
        let s =
            TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect to memcached front");
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        Mc {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.r.read_line(&mut l).unwrap_or_else(|e| {
            panic!("memcached front did not answer within {CLIENT_TIMEOUT:?}: {e}")
        });
        assert!(n > 0, "memcached front closed the connection");
        l
    }

    /// `set`: Ok(None) on STORED.
    pub fn set(&mut self, key: &str, value: &[u8]) -> Answer {
        let mut req = format!("set {key} 5 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        self.w.write_all(&req).unwrap();
        let l = self.line();
        match l.as_str() {
            "STORED\r\n" => Answer::Ok(None),
            _ if l.starts_with("SERVER_ERROR") => Answer::ServerError(l.trim_end().into()),
            other => panic!("set {key}: unexpected answer {other:?}"),
        }
    }

    pub fn get(&mut self, key: &str) -> Answer {
        self.w
            .write_all(format!("get {key}\r\n").as_bytes())
            .unwrap();
        let l = self.line();
        if l == "END\r\n" {
            return Answer::Ok(None);
        }
        if l.starts_with("SERVER_ERROR") {
            return Answer::ServerError(l.trim_end().into());
        }
        let parts: Vec<&str> = l.split_whitespace().collect();
        assert!(
            parts.len() == 4 && parts[0] == "VALUE" && parts[1] == key,
            "get {key}: {l:?}"
        );
        assert_eq!(parts[2], "5", "flags of {key}");
        let n: usize = parts[3].parse().unwrap();
        let mut body = vec![0u8; n + 2];
        self.r.read_exact(&mut body).unwrap();
        body.truncate(n);
        assert_eq!(self.line(), "END\r\n");
        Answer::Ok(Some(body))
    }
}

/// Panics with the install command when an external memcached client is missing.
pub fn require_external_clients() {
    for tool in ["memccp", "memccat"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is not installed: apt-get install libmemcached-tools"
        );
    }
    let py = Command::new("python3")
        .args(["-c", "import pymemcache"])
        .output();
    assert!(
        py.is_ok_and(|o| o.status.success()),
        "python3 with pymemcache is needed: pip install pymemcache"
    );
}
