//! Shared helpers of the link tests: managers on 127.0.0.1 ephemeral ports, short heartbeat
//! settings, and waiting for events with a deadline (never a fixed sleep).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use chmpx::link::conn::{FrameReader, FrameWriter};
use chmpx::link::handshake::{self, HandshakeCtx};
use chmpx::link::{LinkEvent, LinkHandle, LinkManager, LinkOptions, PeerSpec};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub const CLUSTER: &str = "LINKTEST";
pub const INTERVAL: Duration = Duration::from_millis(100);
pub const TIMEOUT: Duration = Duration::from_millis(300);
/// Scheduling slack on a 2-core machine shared by many builds.
pub const SLACK: Duration = Duration::from_millis(250);
/// Generous bound for anything that should happen "soon" (connects, data delivery).
pub const SOON: Duration = Duration::from_secs(5);

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("chmpx=info")
        .try_init();
}

pub fn opts() -> LinkOptions {
    let mut o = LinkOptions::new(CLUSTER);
    o.heartbeat_interval = INTERVAL;
    o.heartbeat_timeout = TIMEOUT;
    o.connect_timeout = Duration::from_millis(1000);
    o.rw_timeout = Duration::from_millis(1000);
    o.backoff_min = Duration::from_millis(20);
    o.backoff_max = Duration::from_millis(200);
    o
}

pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    pub listener: Option<TcpListener>,
}

/// `n` listeners on ephemeral ports; ids are "127.0.0.1:<port>".
pub async fn nodes(n: usize) -> Vec<Node> {
    let mut v = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        v.push(Node {
            id: addr.to_string(),
            addr,
            listener: Some(l),
        });
    }
    v
}

pub fn specs(nodes: &[Node]) -> Vec<PeerSpec> {
    nodes
        .iter()
        .map(|n| PeerSpec::server(n.id.clone(), n.addr))
        .collect()
}

pub fn start(
    node: &mut Node,
    peers: Vec<PeerSpec>,
    o: LinkOptions,
) -> (LinkHandle, mpsc::Receiver<LinkEvent>) {
    LinkManager::start(node.id.clone(), peers, o, node.listener.take()).unwrap()
}

/// Waits for the first event matching `pred`, discarding others; `None` at the deadline.
pub async fn wait_for(
    rx: &mut mpsc::Receiver<LinkEvent>,
    within: Duration,
    mut pred: impl FnMut(&LinkEvent) -> bool,
) -> Option<LinkEvent> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return Some(e),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Waits until every id in `ids` was reported UP on `rx`.
pub async fn wait_all_up(rx: &mut mpsc::Receiver<LinkEvent>, ids: &[&str]) {
    let mut missing: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    while !missing.is_empty() {
        let got = wait_for(
            rx,
            SOON,
            |e| matches!(e, LinkEvent::PeerUp(id) if missing.contains(id)),
        )
        .await;
        match got {
            Some(LinkEvent::PeerUp(id)) => missing.retain(|m| *m != id),
            _ => panic!("peers {missing:?} not UP within {SOON:?}"),
        }
    }
}

pub async fn wait_down(rx: &mut mpsc::Receiver<LinkEvent>, id: &str, within: Duration) -> bool {
    wait_for(
        rx,
        within,
        |e| matches!(e, LinkEvent::PeerDown(p) if p == id),
    )
    .await
    .is_some()
}

/// A raw peer "127.0.0.1:1" (lower id, so it is the dialer) that handshakes by hand.
pub async fn raw_dial(
    m: &LinkHandle,
) -> (
    FrameReader<tokio::net::tcp::OwnedReadHalf>,
    FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
) {
    let o = opts();
    let addr = m.local_addr().unwrap();
    let ctx = HandshakeCtx {
        self_id: "127.0.0.1:1",
        self_listens: true,
        cluster: &o.cluster,
        secret: None,
    };
    let (rd, wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = FrameReader::new(rd, o.frame_size_max, &o.cluster);
    let mut w = FrameWriter::new(wr, o.frame_size_max, o.rw_timeout);
    handshake::dial(&ctx, &PeerSpec::server(m.self_id(), addr), &mut r, &mut w)
        .await
        .unwrap();
    (r, w)
}

/// Reads frames until a Close; returns its reason.
pub async fn raw_close_reason(r: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    loop {
        match tokio::time::timeout(SOON, r.read_frame()).await {
            Ok(Ok((frame, _))) => {
                if let chmpx::link::FrameBody::Close { reason } = frame.body {
                    return reason;
                }
            }
            other => panic!("no Close frame: {other:?}"),
        }
    }
}
