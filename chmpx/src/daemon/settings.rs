//! [`DaemonSettings`]: the plain values the daemon runs with. The binary maps the parsed config
//! file onto them ([`super::from_config`]); tests may build them by hand. Nothing here reads files.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::placement::NodeId;

/// Whether this daemon owns slots (server) or only routes (slave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// On a host listed in `[SVRNODE]`.
    Server,
    /// On a host listed only in `[SLVNODE]`.
    Slave,
}

impl Mode {
    /// "server" or "slave".
    pub fn word(self) -> &'static str {
        match self {
            Mode::Server => "server",
            Mode::Slave => "slave",
        }
    }
}

/// One configured node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// "host:ctlport".
    pub id: NodeId,
    /// Host as written in the config.
    pub host: String,
    /// Server or slave.
    pub mode: Mode,
    /// Data address (servers only).
    pub data_addr: Option<SocketAddr>,
    /// ENDPOINTS: addresses to dial instead of `data_addr` (in order); empty = `data_addr`.
    pub endpoints: Vec<SocketAddr>,
    /// Control port.
    pub ctlport: u16,
    /// Address the node connects from; `None` = any host (a slave named `[.]*`).
    pub ip: Option<IpAddr>,
    /// Its data port speaks TLS (its entry's SSL, else GLOBAL's).
    pub tls: bool,
}

impl NodeSpec {
    /// Whether this is an any-host slave entry (`[.]*`): it names no node but admits every
    /// slave that connects, each named by its own address and control port.
    pub fn is_any_host(&self) -> bool {
        self.mode == Mode::Slave && self.ip.is_none()
    }
}

/// Everything the daemon needs to run.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Cluster name (GROUP).
    pub cluster: String,
    /// This node. A slave matched by an any-host entry is named by the address it connects
    /// from and its own control port ("10.0.0.9:8031"), never by the entry.
    pub self_id: NodeId,
    /// Server or slave.
    pub mode: Mode,
    /// Every configured node, this one included (a slave matched by an any-host entry is listed
    /// under its own id as well as the entry).
    pub nodes: Vec<NodeSpec>,
    /// Slots in the hash space.
    pub slot_count: u32,
    /// REPLICA.
    pub replica: u32,
    /// AUTOMERGE.
    pub automerge: bool,
    /// Merge copy rate limit (0 = unlimited).
    pub merge_rate_bytes_per_sec: u64,
    /// MERGETIMEOUT (zero = none): a merge running longer is stopped, logged, counted and
    /// retried.
    pub merge_timeout: Duration,
    /// ANTIENTROPY (zero = off): interval of the anti-entropy rounds.
    pub anti_entropy_interval: Duration,
    /// Heartbeat interval of the links.
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is DOWN.
    pub heartbeat_timeout: Duration,
    /// Shared secret of the links.
    pub secret: Option<Vec<u8>>,
    /// This node's TLS files and choices (`tls.listen`: its own data port speaks TLS).
    pub tls: crate::link::tls::TlsFiles,
    /// Address the control port listens on.
    pub control_addr: SocketAddr,
    /// Address of the Prometheus endpoint, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// METRICSALLOW: who may read it besides those [`Self::control_allowed`] admits.
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// Largest message body accepted (bytes).
    pub body_size_max: usize,
    /// IPCMODE: permission bits of the queues and segments chmpx creates.
    pub ipc_mode: u32,
    /// How long the routing thread keeps polling the attachments after activity before it
    /// sleeps, µs (`--attach-spin-us`; default
    /// [`crate::attach::options::LISTENER_SPIN_WAIT_DEFAULT_US`]).
    pub attach_spin_us: u64,
    /// Where a server node saves its ring state (`DATADIR/<GROUP>-<CTLPORT>/ring.json`, see
    /// [`super::ring_file`]); `None` on slaves, which hold no membership of their own.
    pub ring_file: Option<std::path::PathBuf>,
}

impl DaemonSettings {
    /// The server nodes, in config order.
    pub fn servers(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(|n| n.mode == Mode::Server)
    }

    /// This node's entry.
    pub fn self_spec(&self) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == self.self_id)
    }

    /// Whether a control connection from `ip` is allowed: it must come from this host's
    /// loopback address (127.0.0.1 or ::1, where `chmpxstatus --conf` and `chmpxctl --conf`
    /// connect) or from a configured host (any host when a slave entry is a wildcard). Other
    /// loopback addresses (127.0.0.2 ...) count only if the file names them.
    pub fn control_allowed(&self, ip: IpAddr) -> bool {
        let ip = crate::link::access::canonical_ip(ip);
        if ip == IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            || ip == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        {
            return true;
        }
        self.nodes.iter().any(|n| match n.ip {
            None => true,
            Some(allowed) => {
                let allowed = crate::link::access::canonical_ip(allowed);
                allowed.is_unspecified() || allowed == ip
            }
        })
    }

    /// Whether a metrics connection from `ip` is allowed: whoever may use the control port
    /// ([`Self::control_allowed`]), and the addresses and networks of METRICSALLOW.
    pub fn metrics_allowed(&self, ip: IpAddr) -> bool {
        let canonical = crate::link::access::canonical_ip(ip);
        self.control_allowed(ip) || self.metrics_allow.iter().any(|n| n.contains(&canonical))
    }
}
