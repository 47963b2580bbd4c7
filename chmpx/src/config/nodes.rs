//! [`NodeSpec`]: one server or slave entry after NAME expansion, and the
//! question "which entry is this process?" ([`LocalAddrs`], used by
//! `Config::self_node`).

use std::net::IpAddr;
use std::path::Path;

use super::defaults::{CUK_LEN_MAX, ENDPOINTS_COUNT_MAX};
use super::error::ConfigError;
use super::global::{Global, Mode, SslSettings};
use super::keys::SectionKind;
use super::name_pattern::{expand, HostPattern};
use super::reader::SectionReader;
use crate::placement::NodeId;

/// Which host an entry stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    /// One host, as written (name or IP).
    Name(String),
    /// Any host (`[.]*` in a `[SLVNODE]`).
    Any,
}

impl HostSpec {
    /// The host as text ("*" for any host).
    pub fn as_str(&self) -> &str {
        match self {
            HostSpec::Name(n) => n,
            HostSpec::Any => "*",
        }
    }
}

/// One node entry: a chmpx process is identified by (host, ctlport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Server (`[SVRNODE]`) or slave (`[SLVNODE]`).
    pub mode: Mode,
    pub host: HostSpec,
    /// NAME as written (a pattern may have made several entries).
    pub name_pattern: String,
    /// Data port (servers only).
    pub port: Option<u16>,
    pub ctlport: u16,
    pub cuk: Option<String>,
    pub endpoints: Vec<String>,
    pub ctl_endpoints: Vec<String>,
    pub ssl: SslSettings,
    pub metrics_port: Option<u16>,
    /// Line of the section header in the file.
    pub line: usize,
}

impl NodeSpec {
    /// The placement identity, "host:ctlport".
    pub fn id(&self) -> NodeId {
        NodeId::from_host_port(self.host.as_str(), self.ctlport)
    }

    /// Reads one `[SVRNODE]` or `[SLVNODE]` section; a NAME pattern yields several entries.
    pub(crate) fn read(
        r: &SectionReader<'_>,
        mode: Mode,
        global: &Global,
        base: &Path,
    ) -> Result<Vec<NodeSpec>, ConfigError> {
        let name = r.text("NAME").ok_or_else(|| {
            r.missing(
                "NAME",
                "a host name, IP address or pattern like node[1-3].example",
            )
        })?;
        let pattern =
            expand(name, mode == Mode::Slave).map_err(|expected| r.bad("NAME", expected))?;
        let port = match mode {
            Mode::Server => Some(
                r.opt_port("PORT")?
                    .or(global.port)
                    .ok_or_else(|| r.missing("PORT", "a data port here or PORT in [GLOBAL]"))?,
            ),
            Mode::Slave => None,
        };
        let ctlport = r
            .opt_port("CTLPORT")?
            .or(global.ctlport)
            .ok_or_else(|| r.missing("CTLPORT", "a control port here or CTLPORT in [GLOBAL]"))?;
        if port == Some(ctlport) {
            return Err(r.conflict("CTLPORT", "must differ from the data PORT"));
        }
        let cuk = r.text("CUK").map(str::to_string);
        if cuk.as_ref().is_some_and(|c| c.len() > CUK_LEN_MAX) {
            return Err(r.bad("CUK", format!("at most {CUK_LEN_MAX} bytes")));
        }
        r.endpoints("FORWARD_PEERS", ENDPOINTS_COUNT_MAX)?;
        r.endpoints("REVERSE_PEERS", ENDPOINTS_COUNT_MAX)?;
        let g = &global.ssl;
        let server_only = |key: &str, inherited: &Option<std::path::PathBuf>| {
            if mode == Mode::Server {
                r.opt_path(key, base).or_else(|| inherited.clone())
            } else {
                inherited.clone()
            }
        };
        let ssl = SslSettings {
            enabled: if mode == Mode::Server {
                r.bool_or("SSL", g.enabled)?
            } else {
                g.enabled
            },
            verify_peer: if mode == Mode::Server {
                r.bool_or("SSL_VERIFY_PEER", g.verify_peer)?
            } else {
                g.verify_peer
            },
            capath: r.opt_path("CAPATH", base).or_else(|| g.capath.clone()),
            server_cert: server_only("SERVER_CERT", &g.server_cert),
            server_prikey: server_only("SERVER_PRIKEY", &g.server_prikey),
            slave_cert: r
                .opt_path("SLAVE_CERT", base)
                .or_else(|| g.slave_cert.clone()),
            slave_prikey: r
                .opt_path("SLAVE_PRIKEY", base)
                .or_else(|| g.slave_prikey.clone()),
        };
        if mode == Mode::Server
            && ssl.enabled
            && (ssl.server_cert.is_none() || ssl.server_prikey.is_none())
        {
            return Err(r.conflict("SSL", "a server node with SSL on needs SERVER_CERT and SERVER_PRIKEY (here or in [GLOBAL])"));
        }
        let spec = NodeSpec {
            mode,
            host: HostSpec::Any,
            name_pattern: name.to_string(),
            port,
            ctlport,
            cuk,
            endpoints: r.endpoints("ENDPOINTS", ENDPOINTS_COUNT_MAX)?,
            ctl_endpoints: r.endpoints("CTLENDPOINTS", ENDPOINTS_COUNT_MAX)?,
            ssl,
            metrics_port: r.opt_port("METRICSPORT")?,
            line: r.line(),
        };
        Ok(match pattern {
            HostPattern::Any => vec![spec],
            HostPattern::Hosts(hosts) => hosts
                .into_iter()
                .map(|h| NodeSpec {
                    host: HostSpec::Name(h),
                    ..spec.clone()
                })
                .collect(),
        })
    }
}

/// The section kind of a mode.
pub(crate) fn section_of(mode: Mode) -> SectionKind {
    match mode {
        Mode::Server => SectionKind::SvrNode,
        Mode::Slave => SectionKind::SlvNode,
    }
}

/// The names and addresses by which this machine (or network namespace) knows itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    /// Host names, lower case ("localhost" is always local).
    pub names: Vec<String>,
    /// Addresses of the interfaces (loopback included).
    pub addrs: Vec<IpAddr>,
}

impl LocalAddrs {
    /// Reads the host name and the interface addresses of this network
    /// namespace. Failures leave the lists shorter, never an error: loopback
    /// and "localhost" always count.
    pub fn detect() -> LocalAddrs {
        let mut local = LocalAddrs::loopback_only();
        if let Ok(name) = nix::unistd::gethostname() {
            if let Some(name) = name.to_str() {
                local.names.push(name.to_ascii_lowercase());
            }
        }
        if let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() {
            for ifa in ifaddrs {
                let Some(addr) = ifa.address else { continue };
                let ip = if let Some(v4) = addr.as_sockaddr_in() {
                    IpAddr::V4(v4.ip())
                } else if let Some(v6) = addr.as_sockaddr_in6() {
                    IpAddr::V6(v6.ip())
                } else {
                    continue;
                };
                if !local.addrs.contains(&ip) {
                    local.addrs.push(ip);
                }
            }
        }
        local
    }

    /// Only loopback: "localhost", 127.0.0.1 and ::1.
    pub fn loopback_only() -> LocalAddrs {
        LocalAddrs {
            names: vec!["localhost".to_string()],
            addrs: vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
        }
    }

    /// Whether `host` (a NAME after expansion) is this machine.
    pub fn is_local(&self, host: &HostSpec) -> bool {
        match host {
            HostSpec::Any => true,
            HostSpec::Name(name) => match name.parse::<IpAddr>() {
                Ok(ip) => ip.is_loopback() || self.addrs.contains(&ip),
                Err(_) => {
                    let lower = name.to_ascii_lowercase();
                    lower == "localhost" || self.names.contains(&lower)
                }
            },
        }
    }
}

impl std::fmt::Display for LocalAddrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{}",
            self.names
                .iter()
                .cloned()
                .chain(addrs)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_own_addresses_are_local() {
        let local = LocalAddrs::detect();
        for name in ["127.0.0.1", "localhost", "LOCALHOST", "::1", "127.0.0.2"] {
            assert!(local.is_local(&HostSpec::Name(name.into())), "{name}");
        }
        assert!(local.is_local(&HostSpec::Any));
        assert!(local.addrs.iter().any(|a| a.is_loopback()));
        if let Some(own) = local.names.get(1) {
            assert!(local.is_local(&HostSpec::Name(own.to_ascii_uppercase())));
        }
        assert!(
            !local.is_local(&HostSpec::Name("192.0.2.77".into())),
            "TEST-NET-1 is nobody's address"
        );
        assert!(!local.is_local(&HostSpec::Name("surely-not-this-host.invalid".into())));
    }
}
