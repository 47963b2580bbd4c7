//! Mapping a parsed config file ([`crate::config::Config`]) onto [`DaemonSettings`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::settings::{DaemonSettings, Mode, NodeSpec};
use crate::config::{self, Config, HostSpec};

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
        });
    }
    let g = &cfg.global;
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    Ok(DaemonSettings {
        cluster: g.group.clone(),
        self_id: me.id(),
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
        heartbeat_interval: g.heartbeat_interval(),
        heartbeat_timeout: g.heartbeat_timeout(),
        secret: g.secret.as_ref().map(|s| s.as_bytes().to_vec()),
        control_addr: SocketAddr::new(any, me.ctlport),
        metrics_addr: me.metrics_port.map(|p| SocketAddr::new(any, p)),
        body_size_max: usize::try_from(g.max_payload).unwrap_or(usize::MAX),
    })
}
