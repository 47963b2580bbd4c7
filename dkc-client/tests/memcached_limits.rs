//! Limits of dkc-memcached against slow or hostile clients: a huge line, a data block never
//! sent, 10,000 pipelined gets, a client that never reads its replies, and the connection
//! limit. In every case another client must stay responsive and memory must stay bounded.

mod memcached_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use memcached_support::{exchange, start_dkc, Proc};

/// How long a healthy server may take to answer `version`.
const RESPONSIVE_WITHIN_MS: u64 = 2_000;
/// Resident memory the server may reach while a hostile client does its worst.
const RSS_MAX_KIB: u64 = 256 * 1024;

fn assert_responsive(addr: SocketAddr) {
    let started = Instant::now();
    let reply = exchange(addr, b"version\r\n", Some(b"\r\n"));
    assert!(reply.starts_with(b"VERSION "), "version reply: {reply:?}");
    assert!(
        started.elapsed() < Duration::from_millis(RESPONSIVE_WITHIN_MS),
        "another client waited {:?} for version",
        started.elapsed()
    );
}

fn rss_kib(server: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Reads until EOF; panics if the server keeps the connection open past `within_ms`.
fn expect_closed(stream: &mut TcpStream, within_ms: u64) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_millis(within_ms);
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "connection still open after {within_ms} ms"
        );
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return got,
        }
    }
}

#[test]
fn huge_line_without_newline_closes_the_connection() {
    let server = start_dkc(&[]);
    let mut hostile = TcpStream::connect(server.addr).expect("connect");
    // Like memcached: a non-get line past 2048 bytes without a newline ends the connection.
    let line = vec![b'x'; 64 * 1024];
    let _ = hostile.write_all(&line);
    assert_responsive(server.addr);
    let got = expect_closed(&mut hostile, 5_000);
    assert!(got.is_empty(), "no reply expected, got {got:?}");
    // A multi-get line may be long, but not without bound.
    let mut getter = TcpStream::connect(server.addr).expect("connect");
    let mut line = b"get ".to_vec();
    line.extend(std::iter::repeat_n(b'k', 2 * 1024 * 1024));
    let _ = getter.write_all(&line);
    expect_closed(&mut getter, 5_000);
    assert_responsive(server.addr);
}

#[test]
fn data_block_never_sent_hits_the_idle_timeout() {
    let server = start_dkc(&["--idle-timeout-secs", "1"]);
    let mut stalled = TcpStream::connect(server.addr).expect("connect");
    stalled.write_all(b"set a 0 0 100\r\nabc").expect("write");
    let started = Instant::now();
    assert_responsive(server.addr);
    expect_closed(&mut stalled, 5_000);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "closed too early: {waited:?}"
    );
    // The half-sent value was never stored.
    assert_eq!(
        exchange(server.addr, b"get a\r\n", Some(b"END\r\n")),
        b"END\r\n"
    );
}

#[test]
fn ten_thousand_pipelined_gets_are_answered_in_order() {
    const GETS: usize = 10_000;
    let server = start_dkc(&[]);
    assert_eq!(
        exchange(server.addr, b"set k 7 0 2\r\nhi\r\n", Some(b"\r\n")),
        b"STORED\r\n"
    );
    let mut request = Vec::new();
    for i in 0..GETS {
        // Alternate hits and misses so order mistakes show.
        if i % 2 == 0 {
            request.extend_from_slice(b"get k\r\n");
        } else {
            request.extend_from_slice(b"get missing\r\n");
        }
    }
    request.extend_from_slice(b"mn\r\n");
    let reply = exchange(server.addr, &request, Some(b"MN\r\n"));
    let mut expected = Vec::new();
    for i in 0..GETS {
        if i % 2 == 0 {
            expected.extend_from_slice(b"VALUE k 7 2\r\nhi\r\nEND\r\n");
        } else {
            expected.extend_from_slice(b"END\r\n");
        }
    }
    expected.extend_from_slice(b"MN\r\n");
    assert!(
        reply == expected,
        "pipelined replies differ ({} vs {} bytes)",
        reply.len(),
        expected.len()
    );
    assert_responsive(server.addr);
}

#[test]
fn client_that_never_reads_cannot_grow_server_memory() {
    const VALUE_BYTES: usize = 512 * 1024;
    const GETS: usize = 10_000;
    let server = start_dkc(&[]);
    let mut set = format!("set big 0 0 {VALUE_BYTES}\r\n").into_bytes();
    set.extend(std::iter::repeat_n(b'v', VALUE_BYTES));
    set.extend_from_slice(b"\r\n");
    assert_eq!(exchange(server.addr, &set, Some(b"\r\n")), b"STORED\r\n");
    // 10,000 gets of 512 KiB would be 5 GB of replies if the server buffered them.
    let hostile = TcpStream::connect(server.addr).expect("connect");
    let mut writer = hostile.try_clone().expect("clone");
    let pipeline = b"get big\r\n".repeat(GETS);
    std::thread::spawn(move || {
        let _ = writer.write_all(&pipeline);
    });
    // A multi-get of many large values, also never read.
    let greedy = TcpStream::connect(server.addr).expect("connect");
    let mut writer = greedy.try_clone().expect("clone");
    let mut multi = b"get".to_vec();
    for _ in 0..2_000 {
        multi.extend_from_slice(b" big");
    }
    multi.extend_from_slice(b"\r\n");
    std::thread::spawn(move || {
        let _ = writer.write_all(&multi);
    });
    std::thread::sleep(Duration::from_millis(1_500));
    assert_responsive(server.addr);
    let rss = rss_kib(&server);
    assert!(
        rss < RSS_MAX_KIB,
        "server RSS {rss} KiB while clients do not read"
    );
    drop(hostile);
    drop(greedy);
    assert_responsive(server.addr);
}

#[test]
fn connection_limit_refuses_the_excess_like_memcached() {
    let server = start_dkc(&["-c", "4"]);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream.write_all(b"version\r\n").expect("write");
        let mut buf = [0u8; 64];
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = stream.read(&mut buf).expect("version reply");
        assert!(buf[..n].starts_with(b"VERSION "));
        held.push(stream);
    }
    let mut refused = TcpStream::connect(server.addr).expect("connect");
    let got = expect_closed(&mut refused, 5_000);
    assert_eq!(got, b"ERROR Too many open connections\r\n");
    // Closing one frees a slot (released asynchronously: retry briefly).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = exchange(server.addr, b"version\r\n", Some(b"\r\n"));
        if reply.starts_with(b"VERSION ") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {reply:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
