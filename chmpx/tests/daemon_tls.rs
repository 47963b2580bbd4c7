//! TLS between real chmpx processes (SSL = on in [GLOBAL], with SSL_VERIFY_PEER): the servers
//! and a slave link and route over TLS; a TLS config missing a file it needs is refused at
//! start with the key named.

mod daemon_support;
mod tls_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon_support::*;
use tls_support::TestCa;

/// Longest a chmpx with a bad TLS config may take to exit.
const REFUSAL_WAIT: Duration = Duration::from_secs(20);

/// Adds `keys` (lines "KEY = value") to the [GLOBAL] section of `conf`.
fn add_global_keys(conf: &std::path::Path, keys: &[String]) {
    let ini = std::fs::read_to_string(conf).unwrap();
    assert!(ini.contains("[GLOBAL]\n"), "{ini}");
    let ini = ini.replacen("[GLOBAL]\n", &format!("[GLOBAL]\n{}\n", keys.join("\n")), 1);
    std::fs::write(conf, ini).unwrap();
}

/// The metrics page of the chmpx whose METRICSPORT is `port`.
fn metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// The value of metric `name` in `text` (0 when absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `text` without the terminal colour sequences (ESC [ ... m) of the logs.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

#[test]
fn daemon_servers_and_slave_link_and_route_over_tls_with_checked_certificates() {
    let mut c = Cluster::configure(3, true);
    let ca = TestCa::new(c.dir.path(), "cluster");
    let server = ca.issue("server", &["127.0.0.1", "localhost"]);
    let slave = ca.issue("slave", &["127.0.0.1"]);
    add_global_keys(
        &c.conf,
        &[
            "SSL = on".into(),
            "SSL_VERIFY_PEER = on".into(),
            "SSL_MIN_VER = TLSV1.3".into(),
            format!("CAPATH = {}", ca.ca_file.display()),
            format!("SERVER_CERT = {}", server.cert.display()),
            format!("SERVER_PRIKEY = {}", server.key.display()),
            format!("SLAVE_CERT = {}", slave.cert.display()),
            format!("SLAVE_PRIKEY = {}", slave.key.display()),
        ],
    );
    c.start_all();

    assert_slave_routes_to_primaries(&c, "tls", 60);
    // A plain-text visitor on a TLS data port is refused and counted in the metrics.
    {
        let mut plain = TcpStream::connect(("127.0.0.1", c.servers[0].port)).unwrap();
        let _ = plain.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        let _ = plain.read(&mut [0u8; 64]);
    }
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let text = metrics(c.servers[0].metrics);
        if metric(&text, "chmpx_link_handshake_failures_total") >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed handshake counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = c.logs();
    for s in &c.servers {
        let log = std::fs::read_to_string(c.dir.path().join(format!("chmpx-{}.log", s.ctlport)))
            .unwrap_or_default();
        assert!(
            without_colours(&log).contains("TLS on the links listen=true"),
            "chmpx {} did not report TLS on its port\n{logs}",
            s.ctlport
        );
    }
}

#[test]
fn daemon_with_ssl_on_and_no_server_key_file_is_refused_naming_the_key() {
    let c = Cluster::configure(2, true);
    let ca = TestCa::new(c.dir.path(), "cluster");
    let server = ca.issue("server", &["127.0.0.1"]);
    let missing = c.dir.path().join("no-such-key.pem");
    add_global_keys(
        &c.conf,
        &[
            "SSL = on".into(),
            format!("CAPATH = {}", ca.ca_file.display()),
            format!("SERVER_CERT = {}", server.cert.display()),
            format!("SERVER_PRIKEY = {}", missing.display()),
        ],
    );
    let mut child = Command::new(CHMPX)
        .args(["--conf", c.conf.to_str().unwrap(), "--ctlport"])
        .arg(c.servers[0].ctlport.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chmpx");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > REFUSAL_WAIT {
            let _ = child.kill();
            panic!("chmpx with a missing SERVER_PRIKEY file still runs after {REFUSAL_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("SERVER_PRIKEY") && err.contains("no-such-key.pem"),
        "the error names neither the key nor the file: {err}"
    );
}

/// `chmpx --check` on a node's host loads that node's TLS files as a start would: good files
/// are reported loaded; a missing key file fails the check (exit status 2) with the key and
/// the file named, before any daemon is started.
#[test]
fn check_loads_the_tls_files_and_names_a_missing_one() {
    let c = Cluster::configure(2, true);
    let ca = TestCa::new(c.dir.path(), "cluster");
    let server = ca.issue("server", &["127.0.0.1"]);
    let good = std::fs::read_to_string(&c.conf).unwrap();
    let check = |conf: &std::path::Path| {
        let out = Command::new(CHMPX)
            .args(["--conf", conf.to_str().unwrap(), "--ctlport"])
            .arg(c.servers[0].ctlport.to_string())
            .arg("--check")
            .stdin(Stdio::null())
            .output()
            .expect("run chmpx --check");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let tls_keys = |key: &std::path::Path| {
        vec![
            "SSL = on".to_string(),
            format!("CAPATH = {}", ca.ca_file.display()),
            format!("SERVER_CERT = {}", server.cert.display()),
            format!("SERVER_PRIKEY = {}", key.display()),
        ]
    };

    add_global_keys(&c.conf, &tls_keys(&server.key));
    let (code, text) = check(&c.conf);
    assert_eq!(code, Some(0), "--check with good TLS files: {text}");
    assert!(
        text.contains("TLS files of node") && text.contains("load"),
        "--check does not say it loaded the TLS files: {text}"
    );

    std::fs::write(&c.conf, &good).unwrap();
    let missing = c.dir.path().join("no-such-key.pem");
    add_global_keys(&c.conf, &tls_keys(&missing));
    let (code, text) = check(&c.conf);
    assert_eq!(code, Some(2), "--check with a missing key file: {text}");
    assert!(
        text.contains("SERVER_PRIKEY") && text.contains("no-such-key.pem"),
        "--check names neither the key nor the file: {text}"
    );
}
