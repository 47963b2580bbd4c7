//! dkc-memcached on a UNIX socket (`-s PATH -a MASK`), as memcached 1.6 serves one: the same
//! replies and `stats settings`, the file's mode, no TCP listener, and the clients that take a
//! socket path (libmemcached's memccp/memccat, pymemcache). What is already at the path: a live
//! socket is refused and kept, a stale one is replaced, another kind of file is refused and left
//! as it was; SIGTERM removes the socket file.

mod memcached_support;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use memcached_support::{first_line, which, EXCHANGE_TIMEOUT_MS, STARTUP_TIMEOUT_MS};

/// Silence after which a reply is taken as complete.
const QUIET_MS: u64 = 400;
/// Appended to every exchange; its reply marks the end.
const SENTINEL: &[u8] = b"mn\r\n";
const SENTINEL_REPLY: &[u8] = b"MN\r\n";

/// A server process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_socket(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_millis(STARTUP_TIMEOUT_MS);
    while UnixStream::connect(path).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "server for {} exited during startup: {status}",
                path.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nothing accepted on {} within {STARTUP_TIMEOUT_MS} ms",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn start_memcached_unix(path: &Path, mask: &str) -> Proc {
    let binary = which("memcached").unwrap_or_else(|| {
        panic!("memcached is not on PATH: install it (`apt-get install -y memcached`)")
    });
    let mut command = Command::new(binary);
    command.args(["-s", path.to_str().unwrap(), "-a", mask]);
    if running_as_root() {
        command.args(["-u", "root"]);
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn memcached");
    wait_socket(path, &mut child);
    Proc(child)
}

fn dkc_command(path: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dkc-memcached"));
    command
        .args(["--backend", "memory", "-s", path.to_str().unwrap()])
        .args(extra);
    command
}

/// Starts dkc-memcached on `path`; checks the line it prints.
fn start_dkc_unix(path: &Path, extra: &[&str]) -> Proc {
    let mut child = dkc_command(path, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dkc-memcached");
    let line = first_line(&mut child);
    assert_eq!(line.trim(), format!("listening on unix:{}", path.display()));
    wait_socket(path, &mut child);
    Proc(child)
}

/// Runs dkc-memcached on `path` expecting it to refuse to start.
fn refused(path: &Path) -> Output {
    let mut child = dkc_command(path, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dkc-memcached");
    let deadline = Instant::now() + Duration::from_millis(STARTUP_TIMEOUT_MS);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "dkc-memcached on {} did not refuse to start",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "{}: it started", path.display());
    out
}

/// Sends `request` plus the sentinel on a new connection; returns the reply without it.
fn exchange(path: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(QUIET_MS)))
        .unwrap();
    stream.write_all(request).unwrap();
    stream.write_all(SENTINEL).unwrap();
    let deadline = Instant::now() + Duration::from_millis(EXCHANGE_TIMEOUT_MS);
    let mut reply = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while !reply.ends_with(SENTINEL_REPLY) {
        assert!(
            Instant::now() < deadline,
            "no complete reply: {}",
            String::from_utf8_lossy(&reply)
        );
        match stream.read(&mut chunk) {
            Ok(0) => panic!("closed: {}", String::from_utf8_lossy(&reply)),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    reply.truncate(reply.len() - SENTINEL_REPLY.len());
    String::from_utf8_lossy(&reply).into_owned()
}

fn setting(path: &Path, name: &str) -> String {
    let reply = exchange(path, b"stats settings\r\n");
    let prefix = format!("STAT {name} ");
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {reply}"))
        .to_string()
}

fn mode_of(path: &Path) -> u32 {
    let meta = std::fs::symlink_metadata(path).expect("socket file");
    assert!(
        meta.file_type().is_socket(),
        "{} is a socket",
        path.display()
    );
    meta.permissions().mode() & 0o777
}

#[test]
fn a_unix_socket_answers_as_memcached_s_does() {
    let dir = tempfile::tempdir().unwrap();
    let real_path = dir.path().join("real.sock");
    let our_path = dir.path().join("ours.sock");
    let tcp = chmpx::testkit::ports::free_ports(1).expect("a free port")[0];
    let _real = start_memcached_unix(&real_path, "0770");
    let _ours = start_dkc_unix(&our_path, &["-a", "0770", "-p", &tcp.to_string()]);

    assert_eq!(mode_of(&real_path), 0o770);
    assert_eq!(mode_of(&our_path), 0o770);
    let sequence: &[u8] = b"set a 0 0 1\r\n1\r\nget a\r\nincr a 5\r\nappend a 0 0 2\r\nxy\r\n\
get a b\r\ndelete a\r\ndelete a\r\nbogus\r\nset k 0 0 2\r\nabc\r\nmg a v\r\nms m 2 T0\r\nhi\r\nmg m v f\r\n";
    let real = exchange(&real_path, sequence);
    let ours = exchange(&our_path, sequence);
    assert!(real.contains("VALUE a 0 3\r\n6xy"), "{real}");
    assert_eq!(ours, real, "the same bytes get the same replies");

    for path in [&real_path, &our_path] {
        assert_eq!(setting(path, "domain_socket"), path.display().to_string());
        assert_eq!(setting(path, "umask"), "770");
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err(),
        "with -s, -p opens no TCP port (as in memcached)"
    );
}

#[test]
fn memcached_clients_use_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sock");
    let _ours = start_dkc_unix(&path, &[]);
    assert_eq!(mode_of(&path), 0o700, "memcached's default -a");
    let servers = format!("--servers={}", path.display());

    let file = dir.path().join("payload.txt");
    std::fs::write(&file, b"through the unix socket\n").unwrap();
    for tool in ["memccp", "memccat"] {
        assert!(
            which(tool).is_some(),
            "{tool} is not on PATH: install libmemcached-tools"
        );
    }
    let out = Command::new("memccp")
        .args([servers.as_str(), file.to_str().unwrap()])
        .output()
        .expect("memccp");
    assert!(out.status.success(), "memccp: {out:?}");
    let out = Command::new("memccat")
        .args([servers.as_str(), "payload.txt"])
        .output()
        .expect("memccat");
    assert!(out.status.success(), "memccat: {out:?}");
    // memccat ends each value it prints with a newline of its own.
    assert_eq!(out.stdout, b"through the unix socket\n\n");

    let script = format!(
        "from pymemcache.client.base import Client\n\
         c = Client({:?})\n\
         c.set('py', 'from python')\n\
         assert c.get('py') == b'from python', c.get('py')\n\
         assert c.get('payload.txt') == b'through the unix socket\\n'\n\
         print('ok')\n",
        path.display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 (with pymemcache: pip install pymemcache)");
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "pymemcache over the socket: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn what_is_at_the_path_is_kept_unless_it_is_a_stale_socket_and_sigterm_removes_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("m.sock");
    let mut first = start_dkc_unix(&path, &[]);
    assert_eq!(exchange(&path, b"set k 0 0 3\r\nabc\r\n"), "STORED\r\n");

    // A second front on a live socket is refused, and the first goes on serving.
    let out = refused(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&path.display().to_string()) && err.contains("another process is listening"),
        "{err}"
    );
    assert_eq!(
        exchange(&path, b"get k\r\n"),
        "VALUE k 0 3\r\nabc\r\nEND\r\n"
    );

    // Killed without a chance to clean up: the file stays, and the next front replaces it.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert!(path.exists(), "SIGKILL leaves the socket file");
    let mut second = start_dkc_unix(&path, &["-a", "0750"]);
    assert_eq!(mode_of(&path), 0o750);
    assert_eq!(
        exchange(&path, b"get k\r\n"),
        "END\r\n",
        "a new memory backend"
    );

    // SIGTERM: exit status 0 and the file is gone.
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    assert_eq!(
        unsafe { libc::kill(second.0.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = second.0.wait().unwrap();
    assert!(status.success(), "SIGTERM ends it cleanly: {status}");
    assert!(!path.exists(), "SIGTERM removes the socket file");

    // A regular file at the path: refused, and left as it was.
    std::fs::write(&path, b"not a socket").unwrap();
    let out = refused(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}
