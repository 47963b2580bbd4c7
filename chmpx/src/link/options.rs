//! What the daemon tells the link layer: who the peers are (`PeerSpec`) and how to behave
//! (`LinkOptions`). The daemon maps its config onto these; the link layer never reads config.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls_pki_types::ServerName;

use super::limits::*;
use super::tls::LinkTls;

/// One configured peer chmpx.
///
/// `id` is the node's stable name ("host:ctlport", as chmpx names nodes). `addr` is its data
/// port; its IP is also what inbound connections claiming this id must come from. A peer with
/// `listens == false` (a slave: it has no data port) is never dialled; it dials us. An
/// unspecified IP (`0.0.0.0` / `::`) means "any host", as SLVNODE `NAME=[.]*` does in chmpx.
/// `dial`, when not empty, lists the addresses to dial instead of `addr`, tried in order
/// (CHMPX's ENDPOINTS: the node is reached through a NAT entrance or a proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub id: String,
    pub addr: SocketAddr,
    pub listens: bool,
    pub dial: Vec<SocketAddr>,
    /// The peer's data port speaks TLS: dial it with TLS and check that its certificate names
    /// this (its NAME). `None` = plain TCP.
    pub tls_name: Option<ServerName<'static>>,
}

impl PeerSpec {
    /// A server peer: it listens on `addr`.
    pub fn server(id: impl Into<String>, addr: SocketAddr) -> Self {
        PeerSpec {
            id: id.into(),
            addr,
            listens: true,
            dial: Vec::new(),
            tls_name: None,
        }
    }

    /// The same peer, whose data port speaks TLS with a certificate for `name`.
    pub fn with_tls(mut self, name: ServerName<'static>) -> Self {
        self.tls_name = Some(name);
        self
    }

    /// The same peer, dialled through `endpoints` (in order) instead of its own address.
    pub fn with_dial(mut self, endpoints: Vec<SocketAddr>) -> Self {
        self.dial = endpoints;
        self
    }

    /// The addresses to dial, in order: the ENDPOINTS if any, else the data address.
    pub fn dial_addrs(&self) -> Vec<SocketAddr> {
        if self.dial.is_empty() {
            vec![self.addr]
        } else {
            self.dial.clone()
        }
    }

    /// A slave peer: it has no data port and always dials; `ip` is where it connects from
    /// (unspecified = any host).
    pub fn slave(id: impl Into<String>, ip: IpAddr) -> Self {
        PeerSpec {
            id: id.into(),
            addr: SocketAddr::new(ip, 0),
            listens: false,
            dial: Vec::new(),
            tls_name: None,
        }
    }
}

/// Which side of a pair opens the one TCP connection between them.
///
/// Rule (one logical link per pair, no duplicate-link flapping): if both sides listen, the side
/// with the lexicographically lower id dials and the higher one only accepts; if only one side
/// listens, the other dials; if neither listens there is no link. An inbound connection from a
/// peer that should not dial us is refused.
pub fn self_dials(self_id: &str, self_listens: bool, peer: &PeerSpec) -> bool {
    match (self_listens, peer.listens) {
        (true, true) => self_id < peer.id.as_str(),
        (false, true) => true,
        (_, false) => false,
    }
}

/// Behaviour of the link layer. `Default` gives the documented defaults (see `limits`).
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Cluster name (GROUP); frames of any other cluster are refused.
    pub cluster: String,
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is DOWN; detection takes at most this plus one interval.
    pub heartbeat_timeout: Duration,
    /// TCP connect plus handshake deadline.
    pub connect_timeout: Duration,
    /// Deadline for one socket write during the handshake and when closing. On an established
    /// link liveness is judged by the heartbeat timeout instead: a peer that still sends
    /// heartbeats but reads slowly is backpressured (queue `Full`), not dropped.
    pub rw_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Outbound queue depth per peer, in messages.
    pub peer_queue_depth: usize,
    /// Outbound queue byte budget per peer. The manager raises it to `frame_size_max` when it
    /// is smaller, so the largest message always fits.
    pub peer_queue_bytes_max: usize,
    /// Event channel depth towards the daemon.
    pub event_queue_depth: usize,
    /// How long `send` waits for room in a full queue.
    pub send_timeout: Duration,
    /// Largest frame accepted or sent (length prefix excluded).
    pub frame_size_max: usize,
    /// Optional shared secret: when set, both sides prove knowledge of it on connect.
    pub secret: Option<Vec<u8>>,
    /// TLS: the acceptor of this node's data port (when it speaks TLS) and the connector for
    /// peers whose port does (see [`super::tls`]). Default: plain TCP.
    pub tls: LinkTls,
}

impl LinkOptions {
    pub fn new(cluster: impl Into<String>) -> Self {
        LinkOptions {
            cluster: cluster.into(),
            ..LinkOptions::default()
        }
    }

    /// Checks relations between the values; the daemon calls this while validating its config.
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster.is_empty() || self.cluster.len() > CLUSTER_NAME_LEN_MAX {
            return Err(format!(
                "cluster name must be 1..={CLUSTER_NAME_LEN_MAX} bytes, got {}",
                self.cluster.len()
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.heartbeat_timeout {
            return Err(format!(
                "heartbeat interval ({:?}) must be non-zero and shorter than the heartbeat timeout ({:?})",
                self.heartbeat_interval, self.heartbeat_timeout
            ));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(format!(
                "backoff min ({:?}) must be non-zero and at most backoff max ({:?})",
                self.backoff_min, self.backoff_max
            ));
        }
        if self.peer_queue_depth == 0 || self.event_queue_depth == 0 {
            return Err("peer and event queue depths must be at least 1".into());
        }
        if self.frame_size_max < 1024 || self.frame_size_max > FRAME_SIZE_MAX_CEILING_BYTES {
            return Err(format!(
                "frame size max must be 1024..={FRAME_SIZE_MAX_CEILING_BYTES} bytes, got {}",
                self.frame_size_max
            ));
        }
        if self.peer_queue_bytes_max.max(self.frame_size_max) > tokio::sync::Semaphore::MAX_PERMITS
        {
            return Err(format!(
                "peer queue byte budget ({}) exceeds {}",
                self.peer_queue_bytes_max,
                tokio::sync::Semaphore::MAX_PERMITS
            ));
        }
        if self.connect_timeout.is_zero() || self.rw_timeout.is_zero() {
            return Err("connect and rw timeouts must be non-zero".into());
        }
        Ok(())
    }
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            cluster: String::from("dkc"),
            heartbeat_interval: Duration::from_millis(HEARTBEAT_INTERVAL_DEFAULT_MS),
            heartbeat_timeout: Duration::from_millis(HEARTBEAT_TIMEOUT_DEFAULT_MS),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_DEFAULT_MS),
            rw_timeout: Duration::from_millis(RW_TIMEOUT_DEFAULT_MS),
            backoff_min: Duration::from_millis(BACKOFF_MIN_DEFAULT_MS),
            backoff_max: Duration::from_millis(BACKOFF_MAX_DEFAULT_MS),
            peer_queue_depth: PEER_QUEUE_DEPTH_DEFAULT,
            peer_queue_bytes_max: PEER_QUEUE_BYTES_MAX_DEFAULT,
            event_queue_depth: EVENT_QUEUE_DEPTH_DEFAULT,
            send_timeout: Duration::from_millis(SEND_TIMEOUT_DEFAULT_MS),
            frame_size_max: FRAME_SIZE_MAX_DEFAULT_BYTES,
            secret: None,
            tls: LinkTls::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_replace_the_data_address_when_dialling() {
        let addr: SocketAddr = "10.0.0.1:8020".parse().unwrap();
        let nat: SocketAddr = "192.0.2.7:18020".parse().unwrap();
        assert_eq!(PeerSpec::server("a:1", addr).dial_addrs(), vec![addr]);
        assert_eq!(
            PeerSpec::server("a:1", addr)
                .with_dial(vec![nat])
                .dial_addrs(),
            vec![nat]
        );
    }

    use super::*;

    fn server(id: &str) -> PeerSpec {
        PeerSpec::server(id, "127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn exactly_one_side_of_a_server_pair_dials() {
        let a = "10.0.0.1:8021";
        let b = "10.0.0.2:8021";
        assert!(self_dials(a, true, &server(b)));
        assert!(!self_dials(b, true, &server(a)));
    }

    #[test]
    fn slaves_dial_servers_and_are_never_dialled() {
        let slave = PeerSpec::slave("10.0.0.9:8031", "10.0.0.9".parse().unwrap());
        assert!(!self_dials("10.0.0.1:8021", true, &slave));
        assert!(self_dials("10.0.0.9:8031", false, &server("10.0.0.1:8021")));
        assert!(!self_dials("10.0.0.9:8031", false, &slave));
    }

    #[test]
    fn default_options_are_valid_and_detect_within_two_seconds() {
        let o = LinkOptions::default();
        assert_eq!(o.validate(), Ok(()));
        assert!(o.heartbeat_timeout + o.heartbeat_interval <= Duration::from_secs(2));
    }

    #[test]
    fn bad_options_are_refused_with_a_reason() {
        let mut o = LinkOptions::new("c");
        o.heartbeat_interval = o.heartbeat_timeout;
        assert!(o.validate().unwrap_err().contains("heartbeat interval"));
        let mut o = LinkOptions::new("");
        o.frame_size_max = 10;
        assert!(o.validate().unwrap_err().contains("cluster name"));
    }
}
