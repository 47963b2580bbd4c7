//! Bad input against real chmpx daemons (issue 3, items 4 and 7): a Hello of another cluster or
//! protocol version, an unknown node id, garbage and an oversized length prefix on the data
//! port are refused with a log line; connections from an address that is no configured host are
//! closed on the data and on the control port, and on the metrics port unless METRICSALLOW
//! names it; the metrics port bounds its connections; and the daemons go on routing.
//!
//! The cluster's hosts are all 127.0.0.1 (the slave entry names it too, no `[.]*`), so another
//! loopback address, 127.0.0.2, is a host the config does not list.

mod daemon_support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use chmpx::daemon::limits::{METRICS_CONNECTIONS_MAX, METRICS_REQUEST_TIMEOUT_MS};
use chmpx::link::frame::{decode_frame, encode_to_vec};
use chmpx::link::limits::{NONCE_BYTES, PROTOCOL_VERSION};
use chmpx::link::{Frame, FrameBody};
use chmpx::placement::key_hash;
use daemon_support::*;

/// Longest wait for a refused connection to be closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// A loopback address that is not a host of the test cluster.
const STRANGER: [u8; 4] = [127, 0, 0, 2];
/// A loopback address that is not a host of the test cluster but is in its METRICSALLOW.
const ADMITTED: [u8; 4] = [127, 0, 0, 3];
/// Largest frame decoded from a refusing daemon (a Close frame is small).
const DECODE_MAX: usize = 1 << 20;

/// Connects to `to` from `from` (bind before connect).
fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        socket.connect(to).await
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Writes `bytes` (the peer may already have closed), then reads until the peer closes.
/// Panics if the connection is still open after [`CLOSE_WITHIN`].
fn send_and_read_to_close(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("connection still open after {CLOSE_WITHIN:?}")
            }
            Err(_) => return got,
        }
    }
}

/// The reason of the first Close frame in `bytes`.
fn close_reason(bytes: &[u8]) -> Option<String> {
    let mut at = 0;
    while at < bytes.len() {
        let (frame, used) = decode_frame(&bytes[at..], DECODE_MAX).ok()?;
        if let FrameBody::Close { reason } = frame.body {
            return Some(reason);
        }
        at += used;
    }
    None
}

fn hello(cluster: &str, id: &str, version: u16) -> Vec<u8> {
    let mut f = Frame::new(
        cluster,
        FrameBody::Hello {
            node_id: id.to_owned(),
            nonce: vec![1; NONCE_BYTES],
        },
    );
    f.version = version;
    encode_to_vec(&f, DECODE_MAX).unwrap()
}

fn log_of(c: &Cluster, ctlport: u16) -> String {
    std::fs::read_to_string(c.dir.path().join(format!("chmpx-{ctlport}.log"))).unwrap_or_default()
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn daemon_refuses_bad_frames_and_strangers_with_a_log_line_and_goes_on() {
    let c = Cluster::start(2, true);
    let map = c.map(0, &c.server_ids());
    // The target is the server that accepts links (the higher id; the lower one dials it), so
    // a Hello naming the other server is in the right direction and only its cluster, version
    // or id is wrong.
    let (acc, other) = if c.servers[0].id() > c.servers[1].id() {
        (0, 1)
    } else {
        (1, 0)
    };
    let data = SocketAddr::from(([127, 0, 0, 1], c.servers[acc].port));
    let peer_id = c.servers[other].id().to_string();
    let group = c.group.clone();
    let before = count(
        &log_of(&c, c.servers[acc].ctlport),
        "inbound connection refused",
    );

    // Each is answered with a Close naming what is wrong, then the connection is closed.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "another cluster",
            hello("NOTTHISGROUP", &peer_id, PROTOCOL_VERSION),
            "NOTTHISGROUP",
        ),
        (
            "another protocol version",
            hello(&group, &peer_id, PROTOCOL_VERSION + 1),
            "version",
        ),
        (
            "an unknown node id",
            hello(&group, "127.0.0.1:1", PROTOCOL_VERSION),
            "not a configured peer",
        ),
        (
            "an oversized length prefix",
            vec![0xff, 0xff, 0xff, 0xf0, 1, 2, 3],
            "",
        ),
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4),
            "",
        ),
        (
            "garbage in a small frame",
            b"\x00\x00\x00\x05hello".to_vec(),
            "",
        ),
    ];
    for (name, bytes, expect) in &cases {
        let mut s = TcpStream::connect(data).unwrap();
        let got = send_and_read_to_close(&mut s, bytes);
        let reason = close_reason(&got);
        eprintln!("{name}: {reason:?}");
        assert!(
            reason.as_deref().is_some_and(|r| r.contains(expect)),
            "{name}: Close reason {reason:?} lacks {expect:?}"
        );
    }

    // From an address that is no configured host: the data port closes at once, without a
    // word; the control port closes without an answer.
    let stranger = IpAddr::from(STRANGER);
    let mut s = connect_from(stranger, data).expect("connect from 127.0.0.2");
    let got = send_and_read_to_close(&mut s, &hello(&group, &peer_id, PROTOCOL_VERSION));
    assert!(got.is_empty(), "a stranger got {} bytes", got.len());
    for srv in &c.servers {
        let ctl = c.ctl_addr(srv.ctlport);
        let mut s = connect_from(stranger, ctl).expect("connect from 127.0.0.2");
        let got = send_and_read_to_close(&mut s, b"VERSION\n");
        assert!(
            got.is_empty(),
            "control port of {} answered a stranger: {:?}",
            srv.ctlport,
            String::from_utf8_lossy(&got)
        );
    }

    // Every refusal left a log line naming it (written after the Close frame, so poll).
    let logged_by = Instant::now() + CLOSE_WITHIN;
    let mut log = log_of(&c, c.servers[acc].ctlport);
    while count(&log, "inbound connection refused") - before <= cases.len()
        && Instant::now() < logged_by
    {
        std::thread::sleep(Duration::from_millis(50));
        log = log_of(&c, c.servers[acc].ctlport);
    }
    let refused = count(&log, "inbound connection refused") - before;
    assert!(
        refused > cases.len(),
        "{refused} refusal lines for {} bad connections:\n{log}",
        cases.len() + 1
    );
    assert!(
        log.lines()
            .any(|l| l.contains("inbound connection refused") && l.contains("127.0.0.2")),
        "no log line names the stranger:\n{log}"
    );
    for srv in &c.servers {
        let log = log_of(&c, srv.ctlport);
        assert!(
            log.lines()
                .any(|l| l.contains("not a configured host") && l.contains("127.0.0.2")),
            "chmpx {}: no log line for the stranger on the control port:\n{log}",
            srv.ctlport
        );
    }

    // The daemons go on: control ports answer, the links stayed up, requests are routed.
    for srv in &c.servers {
        let (ok, text) = control(c.ctl_addr(srv.ctlport), "VERSION").expect("VERSION");
        assert!(ok && text.starts_with("chmpx"), "{text}");
    }
    let down = count(&log_of(&c, c.servers[acc].ctlport), "link DOWN");
    assert_eq!(
        down,
        0,
        "a refused connection took a real link down\n{}",
        c.logs()
    );
    let client = c.client(c.slave_ctlport);
    for i in 0..50u32 {
        let h = key_hash(format!("after-{i}").as_bytes());
        let (node, _) = ask(&client, h, b"x").unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        assert_eq!(node, map.chain_for(h)[0].to_string());
    }
}

/// Sends a metrics request from `from` and returns what came back before the close (empty when
/// the connection was closed unanswered).
fn scrape_from(from: IpAddr, port: u16) -> String {
    let mut s = connect_from(from, SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    let got = send_and_read_to_close(&mut s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    String::from_utf8_lossy(&got).into_owned()
}

/// The value of the unlabelled metric `name` in a scrape.
fn metric(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn metrics_port_answers_admitted_hosts_only_and_bounds_its_connections() {
    let mut c = Cluster::configure(1, true);
    let text = std::fs::read_to_string(&c.conf).unwrap().replace(
        "[GLOBAL]\n",
        "[GLOBAL]\nMETRICSALLOW = 127.0.0.3, 192.0.2.0/24\n",
    );
    std::fs::write(&c.conf, text).unwrap();
    c.start_all();
    let port = c.servers[0].metrics;
    let local = IpAddr::from([127, 0, 0, 1]);
    const REFUSED: &str = "chmpx_metrics_refused_connections_total";

    let page = scrape_from(local, port);
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert_eq!(metric(&page, REFUSED), Some(0), "{page}");

    // 127.0.0.2 is neither this host's 127.0.0.1, a configured host nor in METRICSALLOW.
    let stranger = scrape_from(IpAddr::from(STRANGER), port);
    assert!(stranger.is_empty(), "a stranger got an answer: {stranger}");
    let admitted = scrape_from(IpAddr::from(ADMITTED), port);
    assert!(
        admitted.starts_with("HTTP/1.1 200 OK") && admitted.contains("chmpx_epoch"),
        "METRICSALLOW's host got: {admitted}"
    );
    // METRICSALLOW opens the metrics port only, not the control port.
    let ctl = c.ctl_addr(c.servers[0].ctlport);
    let mut s = connect_from(IpAddr::from(ADMITTED), ctl).expect("connect from 127.0.0.3");
    let got = send_and_read_to_close(&mut s, b"VERSION\n");
    assert!(
        got.is_empty(),
        "the control port answered a metrics-only host"
    );
    let page = scrape_from(local, port);
    assert_eq!(metric(&page, REFUSED), Some(1), "{page}");
    let log = log_of(&c, c.servers[0].ctlport);
    assert!(
        log.lines()
            .any(|l| l.contains("127.0.0.2") && l.contains("METRICSALLOW")),
        "no log line names the stranger and the key that admits it:\n{log}"
    );

    // Connections that send nothing hold a place until they are answered; one more than the
    // limit is closed at once, unanswered.
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let idle: Vec<TcpStream> = (0..METRICS_CONNECTIONS_MAX)
        .map(|i| TcpStream::connect(target).unwrap_or_else(|e| panic!("idle {i}: {e}")))
        .collect();
    let opened = Instant::now();
    let extra = scrape_from(local, port);
    assert!(
        opened.elapsed() < Duration::from_millis(METRICS_REQUEST_TIMEOUT_MS),
        "the check ran too late to mean anything"
    );
    assert!(
        extra.is_empty(),
        "connection {} of {METRICS_CONNECTIONS_MAX} allowed was answered: {extra}",
        METRICS_CONNECTIONS_MAX + 1
    );
    // The idle ones are answered and closed after METRICS_REQUEST_TIMEOUT_MS.
    for (i, mut s) in idle.into_iter().enumerate() {
        s.set_read_timeout(Some(
            Duration::from_millis(METRICS_REQUEST_TIMEOUT_MS) + CLOSE_WITHIN,
        ))
        .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got)
            .unwrap_or_else(|e| panic!("idle connection {i} was not answered and closed: {e}"));
        assert!(got.starts_with("HTTP/1.1 200 OK"), "idle {i}: {got}");
    }
    let page = scrape_from(local, port);
    assert!(
        page.starts_with("HTTP/1.1 200 OK"),
        "after the flood: {page}"
    );
    assert_eq!(metric(&page, REFUSED), Some(2), "{page}");
}
