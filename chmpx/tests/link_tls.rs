//! TLS on real sockets (SSL = on): links come up and carry data only when both ends agree on
//! TLS, trust each other's CA and, with SSL_VERIFY_PEER, the dialler shows a certificate.

mod link_support;
mod tls_support;

use std::time::Duration;

use chmpx::link::tls::{server_name, LinkTls, MinVersion, TlsFiles};
use chmpx::link::{DataMsg, LinkEvent, LinkHandle, LinkOptions, PeerSpec};
use link_support::*;
use tls_support::{CertFiles, TestCa};
use tokio::sync::mpsc;

/// How long a refused pair is watched for a link that must not come up (several dial
/// attempts at the test options' backoff).
const REFUSED_WATCH: Duration = Duration::from_millis(1500);

fn files(ca: Option<&TestCa>, server: Option<&CertFiles>, verify_peer: bool) -> TlsFiles {
    TlsFiles {
        listen: server.is_some(),
        verify_peer,
        capath: ca.map(|c| c.ca_file.clone()),
        server_cert: server.map(|c| c.cert.clone()),
        server_key: server.map(|c| c.key.clone()),
        client_cert: None,
        client_key: None,
        min_version: MinVersion::Tls12,
    }
}

fn opts_with(tls: &TlsFiles, dials_tls: bool) -> LinkOptions {
    let mut o = opts();
    o.tls = LinkTls::build(tls, dials_tls).expect("TLS options");
    o
}

/// Two listening nodes, ordered so that `[0]` (the lower id) dials `[1]`.
async fn dialler_and_acceptor() -> Vec<Node> {
    let mut ns = nodes(2).await;
    ns.sort_by(|a, b| a.id.cmp(&b.id));
    ns
}

fn tls_spec(n: &Node) -> PeerSpec {
    PeerSpec::server(n.id.clone(), n.addr).with_tls(server_name(&n.id, "127.0.0.1").unwrap())
}

fn plain_spec(n: &Node) -> PeerSpec {
    PeerSpec::server(n.id.clone(), n.addr)
}

async fn exchange(hs: &[&LinkHandle], rxs: &mut [&mut mpsc::Receiver<LinkEvent>], ids: &[String]) {
    for (i, j) in [(0, 1), (1, 0)] {
        let m = DataMsg {
            origin: ids[i].clone(),
            msg_id: 7,
            kind: 0,
            route: vec![],
            body: vec![i as u8; 100_000],
        };
        hs[i].send_data(&ids[j], m.clone()).await.unwrap();
        let got = wait_for(rxs[j], SOON, |e| matches!(e, LinkEvent::Data { .. })).await;
        assert_eq!(
            got,
            Some(LinkEvent::Data {
                from: ids[i].clone(),
                msg: m
            })
        );
    }
}

/// No PeerUp arrives on either side within [`REFUSED_WATCH`].
async fn never_up(a: &mut mpsc::Receiver<LinkEvent>, b: &mut mpsc::Receiver<LinkEvent>) {
    let (ua, ub) = tokio::join!(
        wait_for(a, REFUSED_WATCH, |e| matches!(e, LinkEvent::PeerUp(_))),
        wait_for(b, REFUSED_WATCH, |e| matches!(e, LinkEvent::PeerUp(_))),
    );
    assert_eq!(
        (ua, ub),
        (None, None),
        "a link came up that TLS must refuse"
    );
}

#[tokio::test]
async fn tls_links_with_checked_certificates_both_ways_come_up_and_carry_data() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let cert = ca.issue("node", &["127.0.0.1", "localhost"]);
    let mut ns = dialler_and_acceptor().await;
    let ids: Vec<String> = ns.iter().map(|n| n.id.clone()).collect();
    let peers = vec![tls_spec(&ns[0]), tls_spec(&ns[1])];
    // Both verify the other: the dialler shows its SERVER_CERT (it has no SLAVE_CERT).
    let f = files(Some(&ca), Some(&cert), true);
    let (a, mut rx_a) = start(&mut ns[0], peers.clone(), opts_with(&f, true));
    let (b, mut rx_b) = start(&mut ns[1], peers, opts_with(&f, false));
    wait_all_up(&mut rx_a, &[&ids[1]]).await;
    wait_all_up(&mut rx_b, &[&ids[0]]).await;
    exchange(&[&a, &b], &mut [&mut rx_a, &mut rx_b], &ids).await;
    assert_eq!(b.stats().handshake_failures, 0);
}

#[tokio::test]
async fn a_plain_dialler_is_refused_by_a_tls_port() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let cert = ca.issue("node", &["127.0.0.1"]);
    let mut ns = dialler_and_acceptor().await;
    let plain_peers = vec![plain_spec(&ns[0]), plain_spec(&ns[1])];
    let (a, mut rx_a) = start(&mut ns[0], plain_peers, opts());
    let acceptor_peers = vec![plain_spec(&ns[0]), tls_spec(&ns[1])];
    let (b, mut rx_b) = start(
        &mut ns[1],
        acceptor_peers,
        opts_with(&files(Some(&ca), Some(&cert), false), false),
    );
    never_up(&mut rx_a, &mut rx_b).await;
    // The dialler read the TLS alert as a frame and refused it (with a message naming TLS:
    // `frame.rs`, `a_tls_record_instead_of_a_frame_is_named_as_tls`).
    assert!(a.stats().handshake_failures > 0, "{:?}", a.stats());
    assert!(
        b.stats().handshake_failures > 0,
        "the TLS port counted no failed handshake: {:?}",
        b.stats()
    );
}

#[tokio::test]
async fn a_certificate_from_a_ca_the_dialler_does_not_trust_is_refused() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let other = TestCa::new(dir.path(), "other");
    let cert = ca.issue("node", &["127.0.0.1"]);
    let mut ns = dialler_and_acceptor().await;
    let peers = vec![tls_spec(&ns[0]), tls_spec(&ns[1])];
    let (a, mut rx_a) = start(
        &mut ns[0],
        peers.clone(),
        opts_with(&files(Some(&other), Some(&cert), false), true),
    );
    let (_b, mut rx_b) = start(
        &mut ns[1],
        peers,
        opts_with(&files(Some(&ca), Some(&cert), false), false),
    );
    never_up(&mut rx_a, &mut rx_b).await;
    assert!(a.stats().handshake_failures > 0, "{:?}", a.stats());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let cert = ca.issue("elsewhere", &["10.9.9.9", "elsewhere.example"]);
    let mut ns = dialler_and_acceptor().await;
    let peers = vec![tls_spec(&ns[0]), tls_spec(&ns[1])];
    let f = files(Some(&ca), Some(&cert), false);
    let (_a, mut rx_a) = start(&mut ns[0], peers.clone(), opts_with(&f, true));
    let (_b, mut rx_b) = start(&mut ns[1], peers, opts_with(&f, false));
    never_up(&mut rx_a, &mut rx_b).await;
}

#[tokio::test]
async fn verify_peer_refuses_a_dialler_without_a_certificate_and_admits_one_with_its_slave_cert() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "main");
    let server = ca.issue("server", &["127.0.0.1"]);
    let slave = ca.issue("slave", &["127.0.0.1"]);
    let acceptor_files = files(Some(&ca), Some(&server), true);

    // The dialler's own port is plain and it has no certificate to show.
    let mut ns = dialler_and_acceptor().await;
    let peers = vec![plain_spec(&ns[0]), tls_spec(&ns[1])];
    let bare = files(Some(&ca), None, false);
    let (_a, mut rx_a) = start(&mut ns[0], peers.clone(), opts_with(&bare, true));
    let (b, mut rx_b) = start(&mut ns[1], peers, opts_with(&acceptor_files, false));
    never_up(&mut rx_a, &mut rx_b).await;
    assert!(b.stats().handshake_failures > 0, "{:?}", b.stats());

    // The same dialler with a SLAVE_CERT signed by the acceptor's CA.
    let mut ns = dialler_and_acceptor().await;
    let ids: Vec<String> = ns.iter().map(|n| n.id.clone()).collect();
    let peers = vec![plain_spec(&ns[0]), tls_spec(&ns[1])];
    let with_cert = TlsFiles {
        client_cert: Some(slave.cert.clone()),
        client_key: Some(slave.key.clone()),
        ..bare
    };
    let (a, mut rx_a) = start(&mut ns[0], peers.clone(), opts_with(&with_cert, true));
    let (b, mut rx_b) = start(&mut ns[1], peers, opts_with(&acceptor_files, false));
    wait_all_up(&mut rx_a, &[&ids[1]]).await;
    wait_all_up(&mut rx_b, &[&ids[0]]).await;
    exchange(&[&a, &b], &mut [&mut rx_a, &mut rx_b], &ids).await;
}
