//! Mapping a parsed config file ([`crate::config::Config`]) onto [`DaemonSettings`].
//!
//! Identity: a node is "host:ctlport". A server, or a slave with an entry naming its host, takes
//! the host from its entry. A slave matched by an any-host entry (`[.]*`) is named by the
//! address it connects to the servers from and its own control port (`--ctlport`, else
//! SELFCTLPORT, else the entry's CTLPORT): the servers check exactly that address
//! (see `link::access`), so slaves on different hosts matched by one entry are different
//! nodes, and slaves on one host are told apart by their control ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use super::settings::{DaemonSettings, Mode, NodeSpec};
use crate::attach::options::LISTENER_SPIN_WAIT_DEFAULT_US;
use crate::config::{self, Config, HostSpec};
use crate::link::tls::{MinVersion, TlsFiles};

/// Why the config cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config names no entry for this process.
    #[error("{0}")]
    SelfNode(#[from] Box<config::ConfigError>),
    /// A host name does not resolve.
    #[error("{file}: host {host:?} (line {line}) does not resolve to an address: {reason}; use an IP address or fix name resolution")]
    Resolve {
        /// Config file.
        file: String,
        /// The host.
        host: String,
        /// Line of its entry.
        line: usize,
        /// The resolver's answer.
        reason: String,
    },
    /// A slave matched by an any-host entry cannot tell which address it connects from.
    #[error("{file}: the slave with control port {ctlport} is matched by the any-host [SLVNODE] entry of line {line} and is named by the address it connects to the servers from, but {reason}")]
    SlaveAddress {
        /// Config file.
        file: String,
        /// Line of the any-host entry.
        line: usize,
        /// The slave's control port.
        ctlport: u16,
        /// What went wrong and what to do.
        reason: String,
    },
}

/// The local address this host sends from to reach `target` (no packet is sent: a UDP socket
/// is connected only to ask the kernel for its route).
fn source_ip_towards(target: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(target)?;
    Ok(crate::link::access::canonical_ip(socket.local_addr()?.ip()))
}

/// Resolves one ENDPOINTS entry, `host:port` (the config checked its shape).
fn resolve_endpoint(entry: &str, file: &str, line: usize) -> Result<SocketAddr, SettingsError> {
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |reason: &str| SettingsError::Resolve {
        file: file.to_string(),
        host: entry.to_string(),
        line,
        reason: reason.to_string(),
    };
    let (host, port) = entry
        .rsplit_once(':')
        .ok_or_else(|| bad("an ENDPOINTS entry is host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port of an ENDPOINTS entry is a number 1..=65535"))?;
    Ok(SocketAddr::new(resolve(host, file, line)?, port))
}

fn resolve(host: &str, file: &str, line: usize) -> Result<IpAddr, SettingsError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let err = |reason: String| SettingsError::Resolve {
        file: file.to_string(),
        host: host.to_string(),
        line,
        reason,
    };
    let mut addrs = (host, 0u16)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?;
    // Prefer IPv4: the config's loopback names mostly mean 127.0.0.1.
    let all: Vec<SocketAddr> = addrs.by_ref().collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .map(|a| a.ip())
        .ok_or_else(|| err("no address".into()))
}

// Every GROUP the config accepts names valid attach objects.
const _: () =
    assert!(config::defaults::GROUP_LEN_MAX <= crate::attach::names::CLUSTER_NAME_LEN_MAX);

/// Builds the daemon's settings for the entry this process is (`ctlport` from `--ctlport`).
pub fn settings_from_config(
    cfg: &Config,
    ctlport: Option<u16>,
    local: &config::LocalAddrs,
) -> Result<DaemonSettings, SettingsError> {
    let me = cfg.self_node(ctlport, local).map_err(Box::new)?;
    let file = cfg.file.display().to_string();
    let mut nodes = Vec::new();
    for n in cfg.servers.iter().chain(&cfg.slaves) {
        let mode = match n.mode {
            config::Mode::Server => Mode::Server,
            config::Mode::Slave => Mode::Slave,
        };
        let ip = match &n.host {
            HostSpec::Name(h) => Some(resolve(h, &file, n.line)?),
            HostSpec::Any => None,
        };
        nodes.push(NodeSpec {
            id: n.id(),
            host: n.host.as_str().to_string(),
            mode,
            data_addr: match (mode, n.port, ip) {
                (Mode::Server, Some(p), Some(ip)) => Some(SocketAddr::new(ip, p)),
                _ => None,
            },
            endpoints: n
                .endpoints
                .iter()
                .map(|e| resolve_endpoint(e, &file, n.line))
                .collect::<Result<_, _>>()?,
            ctlport: n.ctlport,
            ip,
            tls: mode == Mode::Server && n.ssl.enabled,
        });
    }
    let g = &cfg.global;
    let self_ctlport = cfg.own_ctlport(ctlport, me);
    let self_id = match me.host {
        HostSpec::Name(_) => me.id(),
        HostSpec::Any => {
            let spec = any_host_slave(&nodes, self_ctlport, &file, me.line)?;
            let id = spec.id.clone();
            nodes.push(spec);
            id
        }
    };
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    Ok(DaemonSettings {
        cluster: g.group.clone(),
        self_id,
        mode: if me.mode == config::Mode::Server {
            Mode::Server
        } else {
            Mode::Slave
        },
        nodes,
        slot_count: g.slot_count,
        replica: g.replica,
        automerge: g.auto_merge,
        merge_rate_bytes_per_sec: g.merge_rate_bytes_per_s,
        merge_timeout: Duration::from_secs(g.merge_timeout_s),
        anti_entropy_interval: Duration::from_secs(g.anti_entropy_s),
        heartbeat_interval: g.heartbeat_interval(),
        heartbeat_timeout: g.heartbeat_timeout(),
        secret: g.secret.as_ref().map(|s| s.as_bytes().to_vec()),
        tls: tls_files(me, g),
        control_addr: SocketAddr::new(any, self_ctlport),
        metrics_addr: me.metrics_port.map(|p| SocketAddr::new(any, p)),
        metrics_allow: g.metrics_allow.clone(),
        body_size_max: usize::try_from(g.max_payload).unwrap_or(usize::MAX),
        ipc_mode: g.ipc_mode,
        attach_spin_us: LISTENER_SPIN_WAIT_DEFAULT_US,
        ring_file: (me.mode == config::Mode::Server)
            .then(|| super::ring_file::path_in(&cfg.node_data_dir(me))),
    })
}

/// The node entry of this slave, matched by an any-host entry: named by the address it reaches
/// the first server from and by `ctlport`.
fn any_host_slave(
    nodes: &[NodeSpec],
    ctlport: u16,
    file: &str,
    line: usize,
) -> Result<NodeSpec, SettingsError> {
    let err = |reason: String| SettingsError::SlaveAddress {
        file: file.to_string(),
        line,
        ctlport,
        reason,
    };
    let target = nodes
        .iter()
        .filter(|n| n.mode == Mode::Server)
        .find_map(|n| n.endpoints.first().copied().or(n.data_addr))
        .ok_or_else(|| err("the config lists no server to connect to; add a [SVRNODE]".into()))?;
    let ip = source_ip_towards(target).map_err(|e| {
        err(format!(
            "there is no route to the server at {target} ({e}); check the network, or give this slave a [SLVNODE] entry naming its host"
        ))
    })?;
    let id = crate::placement::NodeId::new(&crate::link::access::slave_id_for(ip, ctlport));
    if let Some(other) = nodes.iter().find(|n| n.id == id) {
        return Err(err(format!(
            "its id {id} is already a configured {} node's; start it with another --ctlport",
            other.mode.word()
        )));
    }
    Ok(NodeSpec {
        id,
        host: ip.to_string(),
        mode: Mode::Slave,
        data_addr: None,
        endpoints: Vec::new(),
        ctlport,
        ip: Some(ip),
        tls: false,
    })
}

/// This node's TLS files: its entry's values (which already fall back to GLOBAL's).
fn tls_files(me: &config::NodeSpec, g: &config::Global) -> TlsFiles {
    let ssl = &me.ssl;
    TlsFiles {
        listen: me.mode == config::Mode::Server && ssl.enabled,
        verify_peer: ssl.verify_peer,
        capath: ssl.capath.clone(),
        server_cert: ssl.server_cert.clone(),
        server_key: ssl.server_prikey.clone(),
        client_cert: ssl.slave_cert.clone(),
        client_key: ssl.slave_prikey.clone(),
        min_version: match g.ssl_min_version {
            config::TlsMinVersion::Tls12 => MinVersion::Tls12,
            config::TlsMinVersion::Tls13 => MinVersion::Tls13,
        },
    }
}
