//! Real-socket tests of the link manager: several managers in one process on 127.0.0.1.

mod link_support;

use std::time::{Duration, Instant};

use chmpx::link::conn::{FrameReader, FrameWriter};
use chmpx::link::handshake::{self, HandshakeCtx};
use chmpx::link::options::self_dials;
use chmpx::link::{DataMsg, LinkEvent, LinkManager, Outgoing, PeerSpec};
use link_support::*;
use tokio::net::{TcpListener, TcpStream};

fn msg(origin: &str, id: u64, body: Vec<u8>) -> DataMsg {
    DataMsg {
        origin: origin.to_owned(),
        msg_id: id,
        kind: 1,
        route: vec![7],
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_three_managers_link_up_and_exchange_data_both_ways() {
    init_logs();
    let mut ns = nodes(3).await;
    let peers = specs(&ns);
    let ids: Vec<String> = ns.iter().map(|n| n.id.clone()).collect();
    let mut handles = Vec::new();
    let mut rxs = Vec::new();
    for n in ns.iter_mut() {
        let (h, rx) = start(n, peers.clone(), opts());
        handles.push(h);
        rxs.push(rx);
    }
    for (i, rx) in rxs.iter_mut().enumerate() {
        let others: Vec<&str> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s.as_str())
            .collect();
        wait_all_up(rx, &others).await;
    }
    // Every ordered pair sends 20 messages; each receiver must get each sender's messages in order.
    const PER_PAIR: u64 = 20;
    for (i, h) in handles.iter().enumerate() {
        for (j, to) in ids.iter().enumerate() {
            if i == j {
                continue;
            }
            for k in 0..PER_PAIR {
                let body = format!("{i}->{j}#{k}").into_bytes();
                h.send_data(to, msg(&ids[i], k, body)).await.unwrap();
            }
        }
        h.send_control(&ids[(i + 1) % 3], vec![i as u8; 3])
            .await
            .unwrap();
    }
    for (j, rx) in rxs.iter_mut().enumerate() {
        let mut next = [0u64; 3];
        let mut controls = 0;
        while next
            .iter()
            .enumerate()
            .any(|(i, n)| i != j && *n < PER_PAIR)
            || controls < 1
        {
            match wait_for(rx, SOON, |e| {
                matches!(e, LinkEvent::Data { .. } | LinkEvent::Control { .. })
            })
            .await
            {
                Some(LinkEvent::Data { from, msg }) => {
                    let i = ids.iter().position(|s| *s == from).unwrap();
                    assert_eq!(msg.origin, from);
                    assert_eq!(msg.msg_id, next[i], "messages from {from} out of order");
                    assert_eq!(msg.body, format!("{i}->{j}#{}", next[i]).into_bytes());
                    assert_eq!(msg.route, vec![7]);
                    next[i] += 1;
                }
                Some(LinkEvent::Control { from, bytes }) => {
                    let i = ids.iter().position(|s| *s == from).unwrap();
                    assert_eq!((i + 1) % 3, j);
                    assert_eq!(bytes, vec![i as u8; 3]);
                    controls += 1;
                }
                other => panic!("node {j}: missing messages {next:?}, got {other:?}"),
            }
        }
    }
    // Counters saw the traffic, and heartbeats measured a round trip.
    tokio::time::sleep(INTERVAL * 3).await;
    for h in &handles {
        for s in h.peer_states() {
            assert!(s.up, "{s:?}");
            assert!(s.frames_out >= PER_PAIR && s.frames_in >= PER_PAIR, "{s:?}");
            assert!(s.bytes_in > 0 && s.bytes_out > 0);
            assert!(s.rtt.is_some() && s.last_heartbeat.is_some(), "{s:?}");
        }
    }
    for h in &handles {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_a_stopped_peer_goes_down_fast_and_comes_back_up_on_the_same_port() {
    init_logs();
    let mut ns = nodes(3).await;
    let peers = specs(&ns);
    let ids: Vec<String> = ns.iter().map(|n| n.id.clone()).collect();
    let (a, mut rx_a) = start(&mut ns[0], peers.clone(), opts());
    let (b, mut rx_b) = start(&mut ns[1], peers.clone(), opts());
    let (c, mut rx_c) = start(&mut ns[2], peers.clone(), opts());
    wait_all_up(&mut rx_a, &[&ids[1], &ids[2]]).await;
    wait_all_up(&mut rx_b, &[&ids[0], &ids[2]]).await;
    wait_all_up(&mut rx_c, &[&ids[0], &ids[1]]).await;

    let t0 = Instant::now();
    c.shutdown().await;
    drop(rx_c);
    assert!(wait_down(&mut rx_a, &ids[2], TIMEOUT + INTERVAL + SLACK).await);
    assert!(wait_down(&mut rx_b, &ids[2], TIMEOUT + INTERVAL + SLACK).await);
    let detected = t0.elapsed();
    eprintln!("shutdown peer detected DOWN on both others after {detected:?}");
    assert!(detected <= TIMEOUT + INTERVAL + SLACK);
    assert!(matches!(
        a.try_send(&ids[2], Outgoing::Control(vec![1])),
        Err(chmpx::link::SendError::PeerDown { .. })
    ));
    assert!(
        a.is_up(&ids[1]) && b.is_up(&ids[0]),
        "the other link must stay up"
    );

    // Restart C on the same port: both others see it UP again.
    let listener = TcpListener::bind(ns[2].addr).await.unwrap();
    let (c2, mut rx_c2) =
        LinkManager::start(ids[2].clone(), peers.clone(), opts(), Some(listener)).unwrap();
    wait_all_up(&mut rx_a, &[&ids[2]]).await;
    wait_all_up(&mut rx_b, &[&ids[2]]).await;
    wait_all_up(&mut rx_c2, &[&ids[0], &ids[1]]).await;
    a.send_data(&ids[2], msg(&ids[0], 1, b"again".to_vec()))
        .await
        .unwrap();
    let got = wait_for(&mut rx_c2, SOON, |e| matches!(e, LinkEvent::Data { .. })).await;
    assert!(
        matches!(got, Some(LinkEvent::Data { ref from, ref msg }) if *from == ids[0] && msg.body == b"again")
    );
    for h in [&a, &b, &c2] {
        h.shutdown().await;
    }
}

/// A peer that completes the handshake by hand and then says nothing more: only the heartbeat
/// timeout can detect it (no EOF, no error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_a_silent_peer_is_declared_down_within_timeout_plus_one_interval() {
    init_logs();
    let mut ns = nodes(2).await;
    let peers = specs(&ns);
    let (silent_id, silent_addr) = (ns[1].id.clone(), ns[1].addr);
    let silent_listener = ns[1].listener.take().unwrap();
    let (m, mut rx) = start(&mut ns[0], peers.clone(), opts());
    let m_spec = peers[0].clone();
    let o = opts();
    let ctx = HandshakeCtx {
        self_id: &silent_id,
        self_listens: true,
        cluster: &o.cluster,
        secret: None,
    };
    // Follow the dial rule so the manager accepts us (or dials us).
    let stream = if self_dials(&silent_id, true, &m_spec) {
        TcpStream::connect(m_spec.addr).await.unwrap()
    } else {
        silent_listener.accept().await.unwrap().0
    };
    let (rd, wr) = stream.into_split();
    let mut r = FrameReader::new(rd, o.frame_size_max, &o.cluster);
    let mut w = FrameWriter::new(wr, o.frame_size_max, o.rw_timeout);
    if self_dials(&silent_id, true, &m_spec) {
        handshake::dial(&ctx, &m_spec, &mut r, &mut w)
            .await
            .unwrap();
    } else {
        let me = [PeerSpec::server(m.self_id(), m_spec.addr)];
        handshake::accept(&ctx, &me, "127.0.0.1".parse().unwrap(), &mut r, &mut w)
            .await
            .unwrap();
    }
    wait_all_up(&mut rx, &[&silent_id]).await;
    let t0 = Instant::now();
    assert!(
        wait_down(&mut rx, &silent_id, TIMEOUT + INTERVAL + SLACK).await,
        "silent peer not detected"
    );
    let detected = t0.elapsed();
    eprintln!(
        "silent peer detected DOWN after {detected:?} (timeout {TIMEOUT:?}, interval {INTERVAL:?})"
    );
    assert!(
        detected >= TIMEOUT - Duration::from_millis(20),
        "declared DOWN too early: {detected:?}"
    );
    assert!(
        detected <= TIMEOUT + INTERVAL + SLACK,
        "declared DOWN too late: {detected:?}"
    );
    drop((r, w, silent_addr));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_a_newer_connection_from_the_same_peer_replaces_the_old_one() {
    init_logs();
    let mut ns = nodes(1).await;
    let raw = PeerSpec::server("127.0.0.1:1", "127.0.0.1:1".parse().unwrap());
    let (m, mut rx) = start(&mut ns[0], vec![raw], opts());
    let (mut r1, _w1) = raw_dial(&m).await;
    wait_all_up(&mut rx, &["127.0.0.1:1"]).await;
    // The peer "restarted": a second connection with the same id.
    let (mut r2, _w2) = raw_dial(&m).await;
    assert!(wait_down(&mut rx, "127.0.0.1:1", SOON).await);
    wait_all_up(&mut rx, &["127.0.0.1:1"]).await;
    assert_eq!(
        raw_close_reason(&mut r1).await,
        "replaced by a newer connection"
    );
    // Traffic now flows on the new connection.
    m.send_control("127.0.0.1:1", b"hi".to_vec()).await.unwrap();
    let got = loop {
        let (frame, _) = tokio::time::timeout(SOON, r2.read_frame())
            .await
            .unwrap()
            .unwrap();
        if let chmpx::link::FrameBody::Control { bytes } = frame.body {
            break bytes;
        }
    };
    assert_eq!(got, b"hi");
    // A clean shutdown tells the peer why.
    m.shutdown().await;
    assert_eq!(raw_close_reason(&mut r2).await, "node shutting down");
}

/// A slave has no data port: it dials every server, servers never dial it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_a_slave_without_a_listener_dials_the_servers() {
    init_logs();
    let mut ns = nodes(2).await;
    let slave_id = "127.0.0.1:8031".to_owned();
    let mut peers = specs(&ns);
    peers.push(PeerSpec::slave(
        slave_id.clone(),
        "127.0.0.1".parse().unwrap(),
    ));
    let ids: Vec<String> = ns.iter().map(|n| n.id.clone()).collect();
    let (a, mut rx_a) = start(&mut ns[0], peers.clone(), opts());
    let (b, mut rx_b) = start(&mut ns[1], peers.clone(), opts());
    let (s, mut rx_s) = LinkManager::start(slave_id.clone(), peers, opts(), None).unwrap();
    assert_eq!(s.local_addr(), None);
    wait_all_up(&mut rx_s, &[&ids[0], &ids[1]]).await;
    wait_all_up(&mut rx_a, &[&ids[1], &slave_id]).await;
    wait_all_up(&mut rx_b, &[&ids[0], &slave_id]).await;
    // Request from the slave, answer from the server.
    s.send_data(&ids[1], msg(&slave_id, 5, b"get k".to_vec()))
        .await
        .unwrap();
    let got = wait_for(&mut rx_b, SOON, |e| matches!(e, LinkEvent::Data { .. })).await;
    assert!(matches!(got, Some(LinkEvent::Data { ref from, .. }) if *from == slave_id));
    b.send_data(&slave_id, msg(&ids[1], 5, b"v".to_vec()))
        .await
        .unwrap();
    let got = wait_for(&mut rx_s, SOON, |e| matches!(e, LinkEvent::Data { .. })).await;
    assert!(
        matches!(got, Some(LinkEvent::Data { ref from, ref msg }) if *from == ids[1] && msg.body == b"v")
    );
    for h in [&a, &b, &s] {
        h.shutdown().await;
    }
}

/// With the shipped defaults (500 ms heartbeats, 1500 ms timeout) a silent peer is DOWN
/// within 2 s, the design's promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_with_default_settings_a_silent_peer_is_down_within_two_seconds() {
    init_logs();
    let mut ns = nodes(1).await;
    let raw = PeerSpec::server("127.0.0.1:1", "127.0.0.1:1".parse().unwrap());
    let mut o = chmpx::link::LinkOptions::new(CLUSTER);
    o.heartbeat_interval =
        Duration::from_millis(chmpx::link::limits::HEARTBEAT_INTERVAL_DEFAULT_MS);
    o.heartbeat_timeout = Duration::from_millis(chmpx::link::limits::HEARTBEAT_TIMEOUT_DEFAULT_MS);
    let (m, mut rx) = start(&mut ns[0], vec![raw], o);
    let (_r, _w) = raw_dial(&m).await;
    wait_all_up(&mut rx, &["127.0.0.1:1"]).await;
    let t0 = Instant::now();
    assert!(wait_down(&mut rx, "127.0.0.1:1", Duration::from_secs(3)).await);
    let detected = t0.elapsed();
    eprintln!("default settings: silent peer detected DOWN after {detected:?}");
    assert!(detected >= Duration::from_millis(1450), "{detected:?}");
    assert!(detected <= Duration::from_millis(2000), "{detected:?}");
    m.shutdown().await;
}
