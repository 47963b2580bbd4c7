//! The lab itself (needs root and namespaces; fails, never skips, without them): hosts reach
//! each other over the bridge, each has its own /dev/shm and queues, partitions (both ways
//! and one way) and link down cut exactly what they should, heal restores, and nothing the lab
//! made survives its drop, a panic, or a kill -9 of the process that made it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dkc_tools::netns::holder::pid_exists;
use dkc_tools::netns::{bins, Direction, Footprint, HostProcess, Lab, LabSpec, Seed};

/// Port of the test listeners.
const LISTEN_PORT: u16 = 7000;
/// Longest wait for one connect check.
const CONNECT_TIMEOUT_MS: u64 = 700;
/// Longest run of one helper command.
const HELPER_RUN_MAX_MS: u64 = 5000;

fn make_lab(hosts: usize) -> Lab {
    Lab::new(LabSpec::new(hosts)).unwrap_or_else(|e| panic!("{e}"))
}

fn dkc_hosts() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_dkc-hosts"))
}

fn listen(lab: &Lab, host: usize) -> HostProcess {
    let h = lab.host(host);
    let mut cmd = h.command(dkc_hosts());
    cmd.args([
        "tcp-listen",
        "--port",
        &LISTEN_PORT.to_string(),
        "--secs",
        "50",
    ]);
    let p = h.spawn("listen", cmd).unwrap();
    // Ready when the port accepts from the host itself.
    let deadline = Instant::now() + Duration::from_millis(HELPER_RUN_MAX_MS);
    while !connects(lab, host, host) {
        assert!(
            Instant::now() < deadline,
            "listener on h{host} never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// Whether a TCP connection from `from` to `to`'s listener gets its greeting.
fn connects(lab: &Lab, from: usize, to: usize) -> bool {
    let h = lab.host(from);
    let mut cmd = h.command(dkc_hosts());
    cmd.args([
        "tcp-connect",
        "--to",
        &format!("{}:{LISTEN_PORT}", lab.host(to).addr()),
    ])
    .args(["--timeout-ms", &CONNECT_TIMEOUT_MS.to_string()]);
    h.output(cmd, HELPER_RUN_MAX_MS).unwrap().status.success()
}

fn reach_matrix(lab: &Lab, n: usize) -> Vec<Vec<bool>> {
    (0..n)
        .map(|a| (0..n).map(|b| a == b || connects(lab, a, b)).collect())
        .collect()
}

#[test]
fn netns_hosts_reach_each_other_and_faults_cut_exactly_what_they_should() {
    let n = 3;
    let lab = make_lab(n);
    let _listeners: Vec<HostProcess> = (0..n).map(|i| listen(&lab, i)).collect();
    let all = vec![vec![true; n]; n];
    assert_eq!(reach_matrix(&lab, n), all, "before any fault");

    let mut seed = Seed::from_env_or_clock("netns_hosts_reach_each_other");
    let a = seed.below(n as u64) as usize;
    let b = (a + 1 + seed.below(n as u64 - 1) as usize) % n;
    eprintln!("cutting h{a} from h{b}");

    lab.partition(a, b, Direction::Both).unwrap();
    let mut want = all.clone();
    want[a][b] = false;
    want[b][a] = false;
    assert_eq!(reach_matrix(&lab, n), want, "partition h{a} <-> h{b}");
    assert_eq!(lab.rules(a).unwrap().len(), 2, "{:?}", lab.rules(a));
    lab.heal().unwrap();
    assert_eq!(reach_matrix(&lab, n), all, "after heal");

    // One way a -> b: a's packets to b are dropped, so neither side completes a handshake
    // (b's SYN-ACK would need a's ACK), but the rules differ by direction.
    lab.partition(a, b, Direction::OneWay).unwrap();
    assert!(!connects(&lab, a, b) && !connects(&lab, b, a));
    assert_eq!(
        lab.rules(a).unwrap(),
        vec![format!("-A OUTPUT -d {}/32 -j DROP", lab.host(b).addr())]
    );
    assert_eq!(
        lab.rules(b).unwrap(),
        vec![format!("-A INPUT -s {}/32 -j DROP", lab.host(a).addr())]
    );
    lab.heal().unwrap();
    assert_eq!(reach_matrix(&lab, n), all, "after heal of one-way cut");

    lab.link_down(a).unwrap();
    for other in (0..n).filter(|o| *o != a) {
        assert!(
            !connects(&lab, a, other) && !connects(&lab, other, a),
            "link of h{a} down"
        );
    }
    let others: Vec<usize> = (0..n).filter(|o| *o != a).collect();
    if others.len() == 2 {
        assert!(connects(&lab, others[0], others[1]), "others still talk");
    }
    lab.link_up(a).unwrap();
    // The link needs a moment to forward again (bridge port state); poll.
    let deadline = Instant::now() + Duration::from_millis(HELPER_RUN_MAX_MS);
    while reach_matrix(&lab, n) != all {
        assert!(
            Instant::now() < deadline,
            "h{a} not reachable after link up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn netns_each_host_has_its_own_shm_queues_and_data_dir() {
    let lab = make_lab(2);
    let run = |host: usize, script: &str| -> String {
        let h = lab.host(host);
        let mut cmd = h.command("sh");
        cmd.args(["-c", script]);
        let out = h.output(cmd, HELPER_RUN_MAX_MS).unwrap();
        assert!(out.status.success(), "h{host}: {script}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let data = lab.data_path().display().to_string();
    run(
        0,
        &format!("echo h0 > /dev/shm/dkc.netns-test; echo h0 > {data}/owner"),
    );
    run(1, &format!("echo h1 > {data}/owner"));
    assert_eq!(run(0, "cat /dev/shm/dkc.netns-test"), "h0");
    assert_eq!(run(1, "ls /dev/shm | wc -l"), "0", "h1 sees h0's /dev/shm");
    assert!(
        !std::path::Path::new("/dev/shm/dkc.netns-test").exists(),
        "the machine sees it"
    );
    assert_eq!(run(0, &format!("cat {data}/owner")), "h0");
    assert_eq!(run(1, &format!("cat {data}/owner")), "h1");
    assert_eq!(
        std::fs::read_to_string(lab.host(0).dir().join("data/owner")).unwrap(),
        "h0\n"
    );
    // IPC namespaces differ (so POSIX queues do), and differ from the machine's.
    let ipc = |host: usize| run(host, "readlink /proc/self/ns/ipc");
    let mine = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_ne!(ipc(0), ipc(1));
    assert_ne!(ipc(0), mine.to_string_lossy());
}

fn assert_gone(f: &Footprint, when: &str) {
    let left = f.wait_gone();
    assert!(left.is_empty(), "{when}: {left:?}");
    assert!(f.inodes.len() >= 9, "footprint too small: {f:?}");
}

#[test]
fn netns_nothing_remains_after_drop_or_panic() {
    let netns_before = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    let lab = make_lab(2);
    let p = {
        let h = lab.host(0);
        let mut cmd = h.command("sleep");
        cmd.arg("30");
        h.spawn("sleeper", cmd).unwrap()
    };
    let f = lab.footprint();
    assert!(
        !f.leftovers().is_empty(),
        "a running lab must show its processes"
    );
    std::mem::forget(p); // A process handle that is never dropped: the lab must still kill it.
    drop(lab);
    assert_gone(&f, "after drop");

    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::panic::catch_unwind(move || {
        let lab = make_lab(2);
        tx.send(lab.footprint()).unwrap();
        panic!("test panic with a live lab");
    });
    assert!(r.is_err());
    assert_gone(&rx.recv().unwrap(), "after panic");
    let netns_after = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(netns_before, netns_after, "ip netns list changed");
}

#[test]
fn netns_nothing_remains_after_kill9_of_the_lab_process() {
    let _ = bins::path("dkc-hosts"); // Fails early with a build hint if missing.
    let mut child = Command::new(dkc_hosts())
        .args(["up", "--hosts", "2", "--secs", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    let mut lab_dir = None;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("holding") {
            break;
        }
        if let Some(rest) = line.strip_prefix("lab ") {
            lab_dir = rest.split_whitespace().next().map(std::path::PathBuf::from);
        }
        if let Some(p) = line.split("holder-pid ").nth(1) {
            pids.push(p.split_whitespace().next().unwrap().parse::<u32>().unwrap());
        }
    }
    assert_eq!(pids.len(), 2, "holder pids from dkc-hosts up");
    assert!(pids.iter().all(|p| pid_exists(*p)));
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_millis(5000);
    while pids.iter().any(|p| pid_exists(*p)) {
        assert!(
            Instant::now() < deadline,
            "holders survived kill -9 of their lab: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL skips destructors: the folder stays until the next lab sweeps it.
    let lab_dir = lab_dir.expect("dkc-hosts up prints its lab folder");
    assert!(lab_dir.join("owner.pid").is_file(), "{}", lab_dir.display());
    drop(make_lab(1));
    assert!(
        !lab_dir.exists(),
        "stale {} not swept by the next lab",
        lab_dir.display()
    );
}

#[test]
fn netns_delay_proxy_delays_the_stream_between_hosts() {
    let lab = make_lab(3);
    let _listener = listen(&lab, 0);
    let delay_ms: u64 = 400;
    let proxy_port = 7100;
    let h1 = lab.host(1);
    let mut cmd = h1.command(dkc_hosts());
    cmd.args(["delay-proxy", "--listen", &format!("0.0.0.0:{proxy_port}")])
        .args(["--to", &format!("{}:{LISTEN_PORT}", lab.host(0).addr())])
        .args(["--delay-ms", &delay_ms.to_string(), "--jitter-ms", "50"]);
    let _proxy = h1.spawn("delay-proxy", cmd).unwrap();
    let through = |timeout_ms: u64| -> (bool, Duration) {
        let h2 = lab.host(2);
        let mut cmd = h2.command(dkc_hosts());
        cmd.args([
            "tcp-connect",
            "--to",
            &format!("{}:{proxy_port}", h1.addr()),
        ])
        .args(["--timeout-ms", &timeout_ms.to_string()]);
        let t = Instant::now();
        let ok = h2.output(cmd, HELPER_RUN_MAX_MS).unwrap().status.success();
        (ok, t.elapsed())
    };
    // Wait for the proxy to listen (a refused connect fails fast).
    let deadline = Instant::now() + Duration::from_millis(HELPER_RUN_MAX_MS);
    let (ok, took) = loop {
        let r = through(3000);
        if r.0 || Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ok, "no greeting through the proxy");
    assert!(
        took >= Duration::from_millis(delay_ms),
        "greeting came after {took:?}, < {delay_ms} ms"
    );
    // A reader that waits less than the delay gets nothing.
    let (ok, _) = through(delay_ms / 4);
    assert!(!ok, "greeting arrived faster than the proxy's delay");
}
