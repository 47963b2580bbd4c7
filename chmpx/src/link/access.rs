//! Who may connect: pure functions over the configured peer list, so the rules are tested
//! without sockets (in tests every node is 127.0.0.1 and the IP check is weak).

use std::net::IpAddr;

use super::options::PeerSpec;

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("source {ip} is not the address of any configured peer; add it to the config or check who is connecting")]
    UnknownSource { ip: IpAddr },
    #[error(
        "node id {id:?} is not a configured peer; add it to the config or fix the peer's --ctlport"
    )]
    UnknownNode { id: String },
    #[error(
        "node id {id:?} is configured at {configured}, but the connection came from {source_ip}"
    )]
    AddressMismatch {
        id: String,
        configured: IpAddr,
        source_ip: IpAddr,
    },
    #[error("node id {id:?} is our own id; two nodes share an id or the node dialled itself")]
    SelfId { id: String },
    #[error("node {id:?} dialled us, but by the link rule we dial it (lower id dials); check both configs list the same peers")]
    WrongDirection { id: String },
    #[error("slave id {id:?} from {source_ip} is refused: a slave matched by an any-host [SLVNODE] entry is named by the address it connects from and its control port, \"{expected}:<ctlport>\"; restart it with this config, or give it a [SLVNODE] entry of its own")]
    BadSlaveId {
        id: String,
        source_ip: IpAddr,
        expected: IpAddr,
    },
}

/// Who a Hello that passed [`check_hello`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// The configured peer at this index of the peer list.
    Configured(usize),
    /// A slave matched by an any-host entry (at this index of the peer list), named by its own
    /// address and control port: one such entry admits any number of slaves, each its own peer.
    Slave { id: String, entry: usize },
}

/// Whether `p` is an any-host slave entry: it stands for every slave that connects, each of
/// which is told apart by its own id ("address:ctlport").
pub fn is_any_host_slave(p: &PeerSpec) -> bool {
    !p.listens && p.addr.ip().is_unspecified()
}

/// The id a slave matched by an any-host entry must claim: the canonical form of the address
/// it connects from, and its control port.
pub fn slave_id_for(source: IpAddr, ctlport: u16) -> String {
    match canonical_ip(source) {
        IpAddr::V4(v4) => format!("{v4}:{ctlport}"),
        IpAddr::V6(v6) => format!("{v6}:{ctlport}"),
    }
}

/// Checks `claimed_id` against the any-host slave rule: "host:ctlport" where host is the
/// connection's source address (as [`slave_id_for`] writes it) and ctlport is a port.
fn check_any_host_slave(claimed_id: &str, source: IpAddr) -> Result<(), AccessError> {
    let bad = || AccessError::BadSlaveId {
        id: claimed_id.to_owned(),
        source_ip: source,
        expected: canonical_ip(source),
    };
    let (host, port) = claimed_id.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip: IpAddr = host.parse().map_err(|_| bad())?;
    if port == 0 || claimed_id != slave_id_for(ip, port) || canonical_ip(ip) != canonical_ip(source)
    {
        return Err(bad());
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, seen on dual-stack listeners) compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn ip_matches(configured: IpAddr, source: IpAddr) -> bool {
    let configured = canonical_ip(configured);
    configured.is_unspecified() || configured == canonical_ip(source)
}

/// First check, right after accept: does the source IP belong to any configured peer?
pub fn check_source(peers: &[PeerSpec], source: IpAddr) -> Result<(), AccessError> {
    if peers.iter().any(|p| ip_matches(p.addr.ip(), source)) {
        Ok(())
    } else {
        Err(AccessError::UnknownSource { ip: source })
    }
}

/// Second check, on Hello: the claimed id is a configured peer other than us, its IP matches
/// the source, and it is the side that should dial. An id that is no configured peer's is
/// admitted as a slave of an any-host entry when there is one and the id names the source
/// address ([`slave_id_for`]). An any-host entry's own id is never admitted: it names no node.
pub fn check_hello(
    self_id: &str,
    self_listens: bool,
    peers: &[PeerSpec],
    claimed_id: &str,
    source: IpAddr,
) -> Result<Admitted, AccessError> {
    if claimed_id == self_id {
        return Err(AccessError::SelfId {
            id: claimed_id.to_owned(),
        });
    }
    let configured = peers
        .iter()
        .position(|p| p.id == claimed_id && !is_any_host_slave(p));
    let Some(index) = configured else {
        return match peers.iter().position(is_any_host_slave) {
            Some(entry) => {
                check_any_host_slave(claimed_id, source)?;
                Ok(Admitted::Slave {
                    id: claimed_id.to_owned(),
                    entry,
                })
            }
            None => Err(AccessError::UnknownNode {
                id: claimed_id.to_owned(),
            }),
        };
    };
    let peer = &peers[index];
    if !ip_matches(peer.addr.ip(), source) {
        return Err(AccessError::AddressMismatch {
            id: claimed_id.to_owned(),
            configured: peer.addr.ip(),
            source_ip: source,
        });
    }
    if super::options::self_dials(self_id, self_listens, peer) {
        return Err(AccessError::WrongDirection {
            id: claimed_id.to_owned(),
        });
    }
    Ok(Admitted::Configured(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> Vec<PeerSpec> {
        vec![
            PeerSpec::server("10.0.0.1:8021", "10.0.0.1:8020".parse().unwrap()),
            PeerSpec::server("10.0.0.3:8021", "10.0.0.3:8020".parse().unwrap()),
            PeerSpec::slave("10.0.0.9:8031", "10.0.0.9".parse().unwrap()),
        ]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_configured_source_ips_pass_the_first_check() {
        assert_eq!(check_source(&peers(), ip("10.0.0.3")), Ok(()));
        assert_eq!(check_source(&peers(), ip("10.0.0.9")), Ok(()));
        assert_eq!(check_source(&peers(), ip("::ffff:10.0.0.1")), Ok(()));
        assert_eq!(
            check_source(&peers(), ip("10.0.0.4")),
            Err(AccessError::UnknownSource { ip: ip("10.0.0.4") })
        );
    }

    #[test]
    fn an_any_host_slave_entry_admits_every_source_named_by_its_address() {
        let mut p = peers();
        p.push(PeerSpec::slave("*:8031", ip("0.0.0.0")));
        let me = "10.0.0.2:8021";
        assert_eq!(check_source(&p, ip("192.168.5.5")), Ok(()));
        // Two slaves on one host, told apart by control port; one on another host.
        for (id, from) in [
            ("192.168.5.5:8031", "192.168.5.5"),
            ("192.168.5.5:8032", "192.168.5.5"),
            ("192.168.5.6:8031", "::ffff:192.168.5.6"),
            ("fd00::7:8031", "fd00::7"),
        ] {
            assert_eq!(
                check_hello(me, true, &p, id, ip(from)),
                Ok(Admitted::Slave {
                    id: id.into(),
                    entry: 3
                }),
                "{id} from {from}"
            );
        }
        // The entry's own id names no node; an id naming another address, a name, no port or
        // a non-canonical spelling is refused, so a slave cannot take another's identity.
        for (id, from) in [
            ("*:8031", "192.168.5.5"),
            ("192.168.5.6:8031", "192.168.5.5"),
            ("slavehost:8031", "192.168.5.5"),
            ("192.168.5.5", "192.168.5.5"),
            ("192.168.5.5:0", "192.168.5.5"),
            ("192.168.5.5:99999", "192.168.5.5"),
            ("::ffff:192.168.5.5:8031", "192.168.5.5"),
        ] {
            let got = check_hello(me, true, &p, id, ip(from));
            assert!(
                matches!(got, Err(AccessError::BadSlaveId { .. })),
                "{id} from {from}: {got:?}"
            );
        }
        // The configured peers keep their own rules.
        assert_eq!(
            check_hello(me, true, &p, "10.0.0.9:8031", ip("10.0.0.9")),
            Ok(Admitted::Configured(2))
        );
        // Without an any-host entry an unknown id is refused as before.
        assert_eq!(
            check_hello(me, true, &peers(), "192.168.5.5:8031", ip("192.168.5.5")),
            Err(AccessError::UnknownNode {
                id: "192.168.5.5:8031".into()
            })
        );
    }

    #[test]
    fn hello_must_name_a_configured_peer_from_its_own_ip_in_the_right_direction() {
        let me = "10.0.0.2:8021";
        // 10.0.0.1 < me, so it dials us: accepted.
        assert_eq!(
            check_hello(me, true, &peers(), "10.0.0.1:8021", ip("10.0.0.1")),
            Ok(Admitted::Configured(0))
        );
        // The slave always dials.
        assert_eq!(
            check_hello(me, true, &peers(), "10.0.0.9:8031", ip("10.0.0.9")),
            Ok(Admitted::Configured(2))
        );
        // 10.0.0.3 > me: we dial it, so its inbound connection is refused.
        assert_eq!(
            check_hello(me, true, &peers(), "10.0.0.3:8021", ip("10.0.0.3")),
            Err(AccessError::WrongDirection {
                id: "10.0.0.3:8021".into()
            })
        );
        // A configured id from another configured host's IP.
        assert_eq!(
            check_hello(me, true, &peers(), "10.0.0.1:8021", ip("10.0.0.9")),
            Err(AccessError::AddressMismatch {
                id: "10.0.0.1:8021".into(),
                configured: ip("10.0.0.1"),
                source_ip: ip("10.0.0.9")
            })
        );
        assert_eq!(
            check_hello(me, true, &peers(), "10.0.0.7:8021", ip("10.0.0.1")),
            Err(AccessError::UnknownNode {
                id: "10.0.0.7:8021".into()
            })
        );
        assert_eq!(
            check_hello(me, true, &peers(), me, ip("10.0.0.1")),
            Err(AccessError::SelfId { id: me.into() })
        );
    }
}
