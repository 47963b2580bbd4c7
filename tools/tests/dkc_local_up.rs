//! `dkc-local up` end to end through real processes: ready line after a real round trip, the
//! status table, 1,000 keys through the memcached front, SIGTERM stops every child it started,
//! and a second `up` on the same directory still holds the data; `status` and `down` work on a
//! detached-style run from another process.

mod dkc_local_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dkc_local_support::{Answer, Local, Mc, DKC_LOCAL};
use dkc_tools::local::process::pid_alive;

const KEYS: usize = 1000;

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes()
}

/// Sets `key0..keyN` through the front, then reads every one back.
fn store_and_read_back(mc: &mut Mc, keys: usize) {
    for i in 0..keys {
        assert_eq!(
            mc.set(&format!("key{i}"), &value(i)),
            Answer::Ok(None),
            "set key{i}"
        );
    }
    for i in 0..keys {
        assert_eq!(
            mc.get(&format!("key{i}")),
            Answer::Ok(Some(value(i))),
            "get key{i}"
        );
    }
}

/// Reads `key0..keyN` back through the front at `addr`; `when` names the moment in failures.
fn read_back(addr: std::net::SocketAddr, keys: usize, when: &str) {
    let mut mc = Mc::connect(addr);
    for i in 0..keys {
        assert_eq!(
            mc.get(&format!("key{i}")),
            Answer::Ok(Some(value(i))),
            "key{i} {when}"
        );
    }
}

/// Runs `dkc-local up` that must refuse to start; returns what it printed on stderr.
fn up_refused(dir: &Path, group: &str, base: u16, nodes: usize) -> String {
    dkc_local_support::ensure_built();
    let out = Command::new(DKC_LOCAL)
        .args(["up", "--port", "0", "--nodes", &nodes.to_string()])
        .args(["--base-port", &base.to_string(), "--group", group, "--dir"])
        .arg(dir)
        .arg("--conf-dir")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "dkc-local up started: {err}");
    err
}

#[test]
fn dkc_local_up_serves_stops_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let group = Local::unique_group("dlu");
    let base = dkc_local_support::free_base_port(3);

    let mut first = Local::up(dir.path(), &group, 3, base);
    // The status table comes between the ready line and the closing hint.
    first.wait_line(
        "dkc-local: Ctrl-C or SIGTERM stops",
        Duration::from_secs(10),
    );
    let printed = first.drain().join("\n");
    assert_eq!(
        printed.matches(" SERVICE IN ").count(),
        3,
        "no status table after the ready line:\n{printed}"
    );
    let rf = first.run_file();
    assert_eq!(
        rf.procs.len(),
        3 + 3 + 1 + 1,
        "3 chmpx + 3 dkc-server + slave + front: {rf:?}"
    );
    assert!(rf.procs.iter().all(|p| pid_alive(p.pid)));

    let mut mc = Mc::connect(first.memcached);
    store_and_read_back(&mut mc, KEYS);
    assert_eq!(mc.get("never-set"), Answer::Ok(None));
    drop(mc);

    // `status` from another process sees every child running.
    let st = Command::new(DKC_LOCAL)
        .args(["status", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success(), "dkc-local status failed:\n{text}");
    assert_eq!(text.matches(" running ").count(), 8, "{text}");

    assert!(first.stop(), "dkc-local did not exit cleanly on SIGTERM");
    let printed = first.drain().join("\n");
    assert!(printed.contains("stopped; data kept in"), "{printed}");
    std::thread::sleep(Duration::from_millis(200));
    for p in &rf.procs {
        assert!(
            !pid_alive(p.pid),
            "{} (pid {}) survived dkc-local's stop",
            p.name,
            p.pid
        );
    }
    assert!(
        !dir.path().join("dkc-local.run").exists(),
        "run file left behind"
    );
    drop(first);

    // Second run on the same directory: the data is still there.
    let mut second = Local::up(dir.path(), &group, 3, base);
    read_back(second.memcached, KEYS, "after restart");
    // `down` from another process stops it.
    let procs = second.run_file().procs;
    let down = Command::new(DKC_LOCAL)
        .args(["down", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "dkc-local down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    for p in &procs {
        assert!(
            !pid_alive(p.pid),
            "{} (pid {}) survived dkc-local down",
            p.name,
            p.pid
        );
    }
    assert!(second.stop(), "dkc-local did not exit cleanly after `down`");
}

/// `up` on a directory whose cluster had fewer nodes takes the new one in (SERVICEIN, its
/// slots copied to it) before it says ready; with fewer nodes than the directory's cluster it
/// refuses, naming the node the file would lose, and the data stays whole for the next `up`.
#[test]
fn dkc_local_up_takes_a_new_node_in_and_refuses_to_drop_one() {
    let dir = tempfile::tempdir().unwrap();
    let group = Local::unique_group("dlg");
    let base = dkc_local_support::free_base_port(3);
    const GROWN_KEYS: usize = 300;

    let mut two = Local::up(dir.path(), &group, 2, base);
    let mut mc = Mc::connect(two.memcached);
    store_and_read_back(&mut mc, GROWN_KEYS);
    drop(mc);
    assert!(two.stop(), "dkc-local did not exit cleanly on SIGTERM");
    drop(two);

    let mut three = Local::up(dir.path(), &group, 3, base);
    let newcomer = format!("127.0.0.1:{}", three.ctlport(2));
    three.wait_line(
        "dkc-local: Ctrl-C or SIGTERM stops",
        Duration::from_secs(10),
    );
    let printed = three.drain().join("\n");
    assert!(
        printed.contains(&format!(
            "node {newcomer} is new to this cluster: SERVICEIN"
        )) && printed.contains(&format!("node {newcomer} joined")),
        "{printed}"
    );
    assert_eq!(printed.matches(" SERVICE IN ").count(), 3, "{printed}");
    read_back(three.memcached, GROWN_KEYS, "after the third node joined");
    assert!(three.stop(), "dkc-local did not exit cleanly on SIGTERM");
    drop(three);

    let err = up_refused(dir.path(), &group, base, 2);
    assert!(
        err.contains(&format!("server node {newcomer} SERVICE IN"))
            && err.contains("run `up` with its --nodes"),
        "{err}"
    );

    let mut again = Local::up(dir.path(), &group, 3, base);
    read_back(again.memcached, GROWN_KEYS, "after the refused run");
    assert!(again.stop(), "dkc-local did not exit cleanly on SIGTERM");
}

#[test]
fn dkc_local_up_refuses_a_port_in_use_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let base = dkc_local_support::free_base_port(3);
    let _held = std::net::TcpListener::bind(("127.0.0.1", base + 3)).unwrap();
    let err = up_refused(dir.path(), &Local::unique_group("dlp"), base, 3);
    assert!(
        err.contains(&format!("port {} on 127.0.0.1 is in use", base + 3)),
        "{err}"
    );
}

/// The "works as a non-root user with stock kernel limits": `dkc-local up` run by an
/// unprivileged user serves through the memcached front, and every process it starts runs as
/// that user. Run as root (as CI does), the test drops to `nobody` with `setpriv` (no
/// capabilities, no supplementary groups) on copies of the programs and of `conf/` in a
/// directory that user can read, and a data directory it owns; its POSIX queues and segments
/// then count against that user's own stock `RLIMIT_MSGQUEUE`. Run as another user, it runs
/// `dkc-local` as that user directly.
#[test]
fn dkc_local_up_works_as_an_unprivileged_user() {
    dkc_local_support::ensure_built();
    let base = dkc_local_support::free_base_port(3);
    let group = Local::unique_group("dln");
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    let conf = work.path().join("conf");
    let data = work.path().join("data");
    std::fs::create_dir(&bin).unwrap();
    std::fs::create_dir(&conf).unwrap();
    std::fs::create_dir(&data).unwrap();
    for prog in ["dkc-local", "chmpx", "dkc-server", "dkc-memcached"] {
        std::fs::copy(dkc_local_support::bin_dir().join(prog), bin.join(prog))
            .unwrap_or_else(|e| panic!("copying {prog}: {e}"));
    }
    let conf_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    for entry in std::fs::read_dir(&conf_src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), conf.join(entry.file_name())).unwrap();
        }
    }
    let root = unsafe { libc::geteuid() } == 0;
    let user = if root {
        NOBODY
    } else {
        unsafe { libc::geteuid() }
    };
    let mut cmd = if root {
        for d in [work.path(), &bin, &conf] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin.join("dkc-local"))
        .env("HOME", &data);
        c
    } else {
        Command::new(bin.join("dkc-local"))
    };
    // Not through cargo: dkc-local must use the copies as they are, not rebuild them.
    cmd.env_remove("CARGO").env_remove("CARGO_MANIFEST_DIR");

    let mut local = Local::up_with(cmd, &conf, &data, &group, 3, base);
    let rf = local.run_file();
    assert_eq!(rf.procs.len(), 8, "{rf:?}");
    for p in rf
        .procs
        .iter()
        .map(|p| (p.pid, &p.name))
        .chain([(rf.supervisor, &rf.group)])
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.0)).unwrap();
        let uids = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap_or_default()
            .split_whitespace()
            .map(|u| u.parse::<u32>().unwrap())
            .collect::<Vec<_>>();
        assert!(
            uids.len() == 4 && uids.iter().all(|&u| u == user),
            "{} (pid {}) runs with uids {uids:?}, not all {user}",
            p.1,
            p.0
        );
    }
    let mut mc = Mc::connect(local.memcached);
    store_and_read_back(&mut mc, UNPRIVILEGED_KEYS);
    drop(mc);
    assert!(local.stop(), "dkc-local did not exit cleanly on SIGTERM");
    let printed = local.drain().join("\n");
    assert!(printed.contains("stopped; data kept in"), "{printed}");
}

/// The unprivileged user when the test runs as root.
const NOBODY: u32 = 65_534;
const UNPRIVILEGED_KEYS: usize = 200;
