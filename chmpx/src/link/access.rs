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
/// the source, and it is the side that should dial. Returns the peer's index in `peers`.
pub fn check_hello(
    self_id: &str,
    self_listens: bool,
    peers: &[PeerSpec],
    claimed_id: &str,
    source: IpAddr,
) -> Result<usize, AccessError> {
    if claimed_id == self_id {
        return Err(AccessError::SelfId {
            id: claimed_id.to_owned(),
        });
    }
    let Some(index) = peers.iter().position(|p| p.id == claimed_id) else {
        return Err(AccessError::UnknownNode {
            id: claimed_id.to_owned(),
        });
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
    Ok(index)
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
    fn an_any_host_slave_entry_admits_every_source() {
        let mut p = peers();
        p.push(PeerSpec::slave("any:8031", ip("0.0.0.0")));
        assert_eq!(check_source(&p, ip("192.168.5.5")), Ok(()));
        assert_eq!(
            check_hello("10.0.0.2:8021", true, &p, "any:8031", ip("192.168.5.5")),
            Ok(3)
        );
    }

    #[test]
    fn hello_must_name_a_configured_peer_from_its_own_ip_in_the_right_direction() {
        let me = "10.0.0.2:8021";
        // 10.0.0.1 < me, so it dials us: accepted.
        assert_eq!(
            check_hello(me, true, &peers(), "10.0.0.1:8021", ip("10.0.0.1")),
            Ok(0)
        );
        // The slave always dials.
        assert_eq!(
            check_hello(me, true, &peers(), "10.0.0.9:8031", ip("10.0.0.9")),
            Ok(2)
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
