//! Bad input and unwelcome peers on real sockets: each is closed with a log line and counted,
//! and the manager keeps serving its configured peers.

mod link_support;

use std::time::Duration;

use chmpx::link::conn::{ConnError, FrameReader, FrameWriter};
use chmpx::link::frame::encode_to_vec;
use chmpx::link::limits::{NONCE_BYTES, PROTOCOL_VERSION};
use chmpx::link::{DataMsg, Frame, FrameBody, LinkEvent, LinkHandle, PeerSpec};
use link_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Two linked managers; returns (handles, receivers, ids).
async fn pair() -> (Vec<LinkHandle>, Vec<mpsc::Receiver<LinkEvent>>, Vec<String>) {
    let mut ns = nodes(2).await;
    let peers = specs(&ns);
    let ids: Vec<String> = ns.iter().map(|n| n.id.clone()).collect();
    let (a, mut rx_a) = start(&mut ns[0], peers.clone(), opts());
    let (b, mut rx_b) = start(&mut ns[1], peers, opts());
    wait_all_up(&mut rx_a, &[&ids[1]]).await;
    wait_all_up(&mut rx_b, &[&ids[0]]).await;
    (vec![a, b], vec![rx_a, rx_b], ids)
}

/// Reads until the server closes; returns the bytes received. Panics if it stays open.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {SOON:?}; received {} bytes",
                got.len()
            ),
        }
    }
}

/// The reason in the server's Close frame, if it sent one first.
fn close_reason(bytes: &[u8]) -> Option<String> {
    let mut at = 0;
    while at < bytes.len() {
        let (frame, used) = chmpx::link::frame::decode_frame(&bytes[at..], 1 << 20).ok()?;
        if let FrameBody::Close { reason } = frame.body {
            return Some(reason);
        }
        at += used;
    }
    None
}

/// After abuse, the pair still moves data both ways.
async fn still_works(hs: &[LinkHandle], rxs: &mut [mpsc::Receiver<LinkEvent>], ids: &[String]) {
    for (i, j) in [(0, 1), (1, 0)] {
        let m = DataMsg {
            origin: ids[i].clone(),
            msg_id: 99,
            kind: 0,
            route: vec![],
            body: b"ok".to_vec(),
        };
        hs[i].send_data(&ids[j], m.clone()).await.unwrap();
        let got = wait_for(&mut rxs[j], SOON, |e| matches!(e, LinkEvent::Data { .. })).await;
        assert_eq!(
            got,
            Some(LinkEvent::Data {
                from: ids[i].clone(),
                msg: m
            })
        );
    }
}

fn hello(cluster: &str, id: &str) -> Vec<u8> {
    let f = Frame::new(
        cluster,
        FrameBody::Hello {
            node_id: id.to_owned(),
            nonce: vec![1; NONCE_BYTES],
        },
    );
    encode_to_vec(&f, 1 << 20).unwrap()
}

/// The id of the pair member that accepts inbound connections from the other (higher id).
fn acceptor(ids: &[String]) -> usize {
    if ids[0] > ids[1] {
        0
    } else {
        1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_garbage_oversize_truncated_and_early_data_are_cut_off_while_peers_keep_working() {
    init_logs();
    let (hs, mut rxs, ids) = pair().await;
    let target: std::net::SocketAddr = ids[0].parse().unwrap();
    let valid_data = encode_to_vec(
        &Frame::new(
            CLUSTER,
            FrameBody::Data(DataMsg {
                origin: "x".into(),
                msg_id: 1,
                kind: 0,
                route: vec![],
                body: vec![],
            }),
        ),
        1 << 20,
    )
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3),
            false,
        ),
        (
            "oversized length prefix",
            vec![0xff, 0xff, 0xff, 0xf0, 1, 2, 3],
            false,
        ),
        ("zero length", vec![0, 0, 0, 0], false),
        (
            "truncated frame then EOF",
            vec![0, 0, 0, 100, 0x93, 1],
            true,
        ),
        ("data before handshake", valid_data, false),
    ];
    let before = hs[0].stats();
    for (name, bytes, half_close) in &cases {
        let mut s = TcpStream::connect(target).await.unwrap();
        s.write_all(bytes).await.unwrap();
        if *half_close {
            s.shutdown().await.unwrap();
        }
        let answer = read_until_closed(&mut s).await;
        eprintln!("{name}: closed, reason {:?}", close_reason(&answer));
        assert!(
            !answer.is_empty() || *half_close,
            "{name}: expected a Close frame before the close"
        );
    }
    let after = hs[0].stats();
    assert_eq!(
        after.refused_connections - before.refused_connections,
        cases.len() as u64
    );
    assert!(
        after.bad_frames - before.bad_frames >= 4,
        "{before:?} -> {after:?}"
    );
    assert!(hs[0].is_up(&ids[1]) && hs[1].is_up(&ids[0]));
    still_works(&hs, &mut rxs, &ids).await;
    for h in &hs {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_wrong_cluster_wrong_version_unknown_id_and_wrong_direction_are_refused_by_name() {
    init_logs();
    let (hs, mut rxs, ids) = pair().await;
    let acc = acceptor(&ids);
    let target: std::net::SocketAddr = ids[acc].parse().unwrap();
    let mut other_version = Frame::new(
        CLUSTER,
        FrameBody::Hello {
            node_id: ids[1 - acc].clone(),
            nonce: vec![0; 16],
        },
    );
    other_version.version = PROTOCOL_VERSION + 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "wrong cluster",
            hello("OTHERGROUP", &ids[1 - acc]),
            "OTHERGROUP",
        ),
        (
            "wrong version",
            encode_to_vec(&other_version, 1 << 20).unwrap(),
            "version",
        ),
        (
            "unknown node id",
            hello(CLUSTER, "127.0.0.1:1"),
            "not a configured peer",
        ),
        ("own id", hello(CLUSTER, &ids[acc]), "our own id"),
        (
            "short nonce",
            {
                let f = Frame::new(
                    CLUSTER,
                    FrameBody::Hello {
                        node_id: ids[1 - acc].clone(),
                        nonce: vec![1; 3],
                    },
                );
                encode_to_vec(&f, 1 << 20).unwrap()
            },
            "nonce",
        ),
    ];
    for (name, bytes, expect) in &cases {
        let mut s = TcpStream::connect(target).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let reason = close_reason(&read_until_closed(&mut s).await);
        eprintln!("{name}: {reason:?}");
        assert!(
            reason.as_deref().is_some_and(|r| r.contains(expect)),
            "{name}: reason {reason:?} lacks {expect:?}"
        );
    }
    // The lower-id node is the dialer; the higher one must not accept a Hello "from" the
    // acceptor (that would make a second link for the pair).
    let dialer_addr: std::net::SocketAddr = ids[1 - acc].parse().unwrap();
    let mut s = TcpStream::connect(dialer_addr).await.unwrap();
    s.write_all(&hello(CLUSTER, &ids[acc])).await.unwrap();
    let reason = close_reason(&read_until_closed(&mut s).await);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("lower id dials")),
        "{reason:?}"
    );

    assert!(hs[acc].stats().refused_connections >= cases.len() as u64);
    still_works(&hs, &mut rxs, &ids).await;
    for h in &hs {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_a_wrong_secret_never_links_and_the_same_secret_does() {
    init_logs();
    for (secret_a, secret_b, should_link) in [
        (Some(b"alpha".to_vec()), Some(b"bravo".to_vec()), false),
        (Some(b"alpha".to_vec()), None, false),
        (None, Some(b"bravo".to_vec()), false),
        (Some(b"alpha".to_vec()), Some(b"alpha".to_vec()), true),
    ] {
        let mut ns = nodes(2).await;
        let peers = specs(&ns);
        let ids: Vec<String> = ns.iter().map(|n| n.id.clone()).collect();
        let mut oa = opts();
        oa.secret = secret_a.clone();
        let mut ob = opts();
        ob.secret = secret_b.clone();
        let (a, mut rx_a) = start(&mut ns[0], peers.clone(), oa);
        let (b, mut rx_b) = start(&mut ns[1], peers, ob);
        let up = wait_for(
            &mut rx_a,
            Duration::from_millis(if should_link { 5000 } else { 800 }),
            |e| matches!(e, LinkEvent::PeerUp(_)),
        )
        .await;
        assert_eq!(
            up.is_some(),
            should_link,
            "secrets {secret_a:?} / {secret_b:?}"
        );
        if should_link {
            wait_all_up(&mut rx_b, &[&ids[0]]).await;
        } else {
            assert!(
                wait_for(&mut rx_b, Duration::from_millis(100), |e| matches!(
                    e,
                    LinkEvent::PeerUp(_)
                ))
                .await
                .is_none()
            );
            let failures = a.stats().handshake_failures + b.stats().handshake_failures;
            assert!(failures >= 1, "a refused handshake must be counted");
        }
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_a_connection_from_an_unconfigured_address_is_closed_at_once() {
    init_logs();
    // The manager only knows a peer at 127.0.0.2, so our 127.0.0.1 source is unknown.
    let mut ns = nodes(1).await;
    let lonely = vec![PeerSpec::server(
        "127.0.0.2:9",
        "127.0.0.2:9".parse().unwrap(),
    )];
    let (m, _rx) = start(&mut ns[0], lonely, opts());
    let mut s = TcpStream::connect(ns[0].addr).await.unwrap();
    let _ = s.write_all(&hello(CLUSTER, "127.0.0.2:9")).await;
    let answer = read_until_closed(&mut s).await;
    assert!(answer.is_empty(), "nothing is said to an unknown host");
    assert_eq!(m.stats().refused_connections, 1);
    m.shutdown().await;
}

/// The frame reader on its own: every failure is a typed error, never a panic.
#[tokio::test]
async fn link_the_frame_reader_names_each_failure() {
    type Check = fn(&ConnError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (vec![], |e| matches!(e, ConnError::Eof)),
        (vec![0, 0, 0, 9, 1], |e| {
            matches!(e, ConnError::Truncated { buffered: 5 })
        }),
        (vec![0xff; 8], |e| {
            matches!(
                e,
                ConnError::Frame(chmpx::link::FrameError::TooLarge { .. })
            )
        }),
        (hello("OTHER", "a"), |e| {
            matches!(e, ConnError::WrongCluster { .. })
        }),
    ];
    for (bytes, check) in cases {
        let mut r = FrameReader::new(&bytes[..], 1 << 20, CLUSTER);
        let err = r.read_frame().await.unwrap_err();
        assert!(check(&err), "{bytes:?}: {err:?}");
    }
    let mut w = FrameWriter::new(Vec::new(), 1 << 20, Duration::from_secs(1));
    w.send(&Frame::new(CLUSTER, FrameBody::HeartbeatAck { seq: 5 }))
        .await
        .unwrap();
}

/// Bad input after a good handshake: the link is closed with a reason and counted, and the
/// peer can link again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_bad_frames_on_an_established_link_close_it_and_the_peer_can_return() {
    init_logs();
    let raw_id = "127.0.0.1:1";
    let mut ns = nodes(1).await;
    let raw = PeerSpec::server(raw_id, "127.0.0.1:1".parse().unwrap());
    let (m, mut rx) = start(&mut ns[0], vec![raw], opts());
    let hello_again = encode_to_vec(
        &Frame::new(
            CLUSTER,
            FrameBody::Hello {
                node_id: raw_id.into(),
                nonce: vec![0; NONCE_BYTES],
            },
        ),
        1 << 20,
    )
    .unwrap();
    let wrong_cluster = encode_to_vec(
        &Frame::new("OTHER", FrameBody::HeartbeatAck { seq: 1 }),
        1 << 20,
    )
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", vec![0, 0, 0, 3, 0xc1, 0xc1, 0xc1], "malformed"),
        (
            "oversized prefix",
            vec![0x7f, 0xff, 0xff, 0xff],
            "exceeds frame_size_max",
        ),
        ("second Hello", hello_again, "Hello after the handshake"),
        ("wrong cluster", wrong_cluster, "OTHER"),
    ];
    for (i, (name, bytes, expect)) in cases.iter().enumerate() {
        let (mut r, w) = raw_dial(&m).await;
        wait_all_up(&mut rx, &[raw_id]).await;
        let mut stream = w.into_inner();
        stream.write_all(bytes).await.unwrap();
        let reason = raw_close_reason(&mut r).await;
        eprintln!("{name}: {reason}");
        assert!(
            reason.contains(expect),
            "{name}: {reason:?} lacks {expect:?}"
        );
        assert!(
            wait_down(&mut rx, raw_id, SOON).await,
            "{name}: no PeerDown"
        );
        assert_eq!(m.stats().bad_frames, i as u64 + 1, "{name}");
    }
    m.shutdown().await;
}

/// A peer that handshakes and then breaks every link at once must not make the dialer spin:
/// redials of a link that died young wait for the backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_a_peer_that_breaks_every_link_is_redialled_with_backoff() {
    init_logs();
    let raw_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw_addr = raw_listener.local_addr().unwrap();
    // Ids are names: pick them so that the manager is the dialer.
    let (m_id, raw_id) = ("a-manager", "z-raw");
    let m_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m_addr = m_listener.local_addr().unwrap();
    let (m, _rx) = chmpx::link::LinkManager::start(
        m_id,
        vec![PeerSpec::server(raw_id, raw_addr)],
        opts(),
        Some(m_listener),
    )
    .unwrap();
    let o = opts();
    let me = [PeerSpec::server(m_id, m_addr)];
    let window = Duration::from_millis(1000);
    let deadline = tokio::time::Instant::now() + window;
    let mut links = 0u32;
    while let Ok(Ok((stream, source))) =
        tokio::time::timeout_at(deadline, raw_listener.accept()).await
    {
        let ctx = chmpx::link::handshake::HandshakeCtx {
            self_id: raw_id,
            self_listens: true,
            cluster: &o.cluster,
            secret: None,
        };
        let (rd, wr) = stream.into_split();
        let mut r = FrameReader::new(rd, o.frame_size_max, &o.cluster);
        let mut w = FrameWriter::new(wr, o.frame_size_max, o.rw_timeout);
        if chmpx::link::handshake::accept(&ctx, &me, source.ip(), &mut r, &mut w)
            .await
            .is_ok()
        {
            links += 1;
            let mut s = w.into_inner();
            let _ = s.write_all(&[0, 0, 0, 1, 0xc1]).await;
        }
    }
    eprintln!("{links} links in {window:?} from a dialer facing a peer that breaks every link");
    assert!(links >= 2, "the dialer must keep trying ({links})");
    // Backoff 20 ms doubling to 200 ms: about 8 attempts a second, never hundreds.
    assert!(links <= 15, "the dialer spins: {links} links in {window:?}");
    assert!(m.stats().bad_frames >= 2);
    m.shutdown().await;
}
