//! The message model chmpx moves: a fixed 48-byte header and an opaque body. chmpx reads only
//! the header (kind, route, correlation id); what the body means is the business of dkc-server
//! and dkc-client.
//!
//! ```text
//!  0 magic u32 "DKCE"   4 version u8   5 kind u8   6 route tag u8   7 reserved u8 (0)
//!  8 flags u16          10 reserved u16 (0)        12 body_len u32
//! 16 msg_id u64
//! 24 route a u64        32 route b u64             40 route c u64      48 body ...
//! ```
//! All integers little-endian. Route fields a/b/c per tag: HashFirst/HashChain (hash, 0, 0),
//! AllServers (0, 0, 0), Node (node, 0, 0), Reply (origin node, origin attachment, msg_id).
//! Unused fields must be zero, so a garbage header is very unlikely to pass.

/// Bytes of the encoded header.
pub const ENVELOPE_HEADER_BYTES: usize = 48;
/// First four bytes of every header ("DKCE").
pub const ENVELOPE_MAGIC: u32 = 0x4543_4B44;
/// Version of this header layout.
pub const ENVELOPE_VERSION: u8 = 1;

/// Flag on a [`Kind::Response`] made by chmpx itself because the request could not be
/// delivered (no live owner, peer unreachable, no server process): the body is a UTF-8 reason.
/// Server and client processes must not set it. (`chmpx::daemon::FLAG_CHMPX_ERROR` is the
/// same bit; a test keeps them equal.)
pub const FLAG_CHMPX_ERROR: u16 = 1 << 15;

/// Flag on the [`Kind::Event`] chmpx sends back to the sender of a `HashChain` or `AllServers`
/// message before delivering it: the body is the number of nodes it was delivered to (u32,
/// little-endian), so the sender knows how many answers to count. Its `msg_id` is the original
/// message's. (`chmpx::daemon::FLAG_TARGET_COUNT` is the same bit; a test keeps them equal.)
pub const FLAG_TARGET_COUNT: u16 = 1 << 14;

/// Flag chmpx sets on a `HashFirst` request delivered to a server whose node is behind on the
/// key's slot: answer a read with `E_MERGING`, never with possibly stale data.
/// (`chmpx::daemon::wire::FLAG_UNMERGED` is the same bit; a test keeps them equal.)
pub const FLAG_UNMERGED: u16 = 1 << 13;

/// Bytes of a [`FLAG_TARGET_COUNT`] notice's body.
pub const TARGET_COUNT_BODY_BYTES: usize = 4;

/// The number of nodes a [`FLAG_TARGET_COUNT`] notice reports, if `env` is a well-formed one.
pub fn target_count(env: &Envelope) -> Option<u32> {
    if env.kind != Kind::Event || env.flags & FLAG_TARGET_COUNT == 0 {
        return None;
    }
    let bytes: [u8; TARGET_COUNT_BODY_BYTES] = env.body.as_slice().try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Expects a [`Kind::Response`] with the same `msg_id`.
    Request,
    /// Answers a request; correlated by `msg_id`.
    Response,
    /// One-way notice; nobody answers.
    Event,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Request => 1,
            Kind::Response => 2,
            Kind::Event => 3,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Request),
            2 => Some(Kind::Response),
            3 => Some(Kind::Event),
            _ => None,
        }
    }
}

/// Where chmpx should deliver a message. chmpx resolves hashes to nodes; this type only says
/// what the sender asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// To the first live owner of the slot of this key hash (reads, writes at the primary).
    HashFirst(u64),
    /// To every live owner of the slot of this key hash (replication).
    HashChain(u64),
    /// To every server node (broadcast).
    AllServers,
    /// To one node by its id.
    Node(u64),
    /// Back to the sender of a request: its node, its attachment there, and its `msg_id`.
    Reply {
        node: u64,
        attachment: u64,
        msg_id: u64,
    },
}

impl Route {
    fn encode(self) -> (u8, u64, u64, u64) {
        match self {
            Route::HashFirst(h) => (1, h, 0, 0),
            Route::HashChain(h) => (2, h, 0, 0),
            Route::AllServers => (3, 0, 0, 0),
            Route::Node(n) => (4, n, 0, 0),
            Route::Reply {
                node,
                attachment,
                msg_id,
            } => (5, node, attachment, msg_id),
        }
    }

    fn decode(tag: u8, a: u64, b: u64, c: u64) -> Result<Route, InvalidEnvelope> {
        let route = match tag {
            1 => Route::HashFirst(a),
            2 => Route::HashChain(a),
            3 => Route::AllServers,
            4 => Route::Node(a),
            5 => Route::Reply {
                node: a,
                attachment: b,
                msg_id: c,
            },
            _ => return Err(InvalidEnvelope::RouteTag(tag)),
        };
        if route.encode() != (tag, a, b, c) {
            return Err(InvalidEnvelope::RouteFields { tag });
        }
        Ok(route)
    }
}

/// The fixed part of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub msg_id: u64,
    pub kind: Kind,
    pub route: Route,
    pub flags: u16,
    pub body_len: u32,
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub msg_id: u64,
    pub kind: Kind,
    pub route: Route,
    pub flags: u16,
    pub body: Vec<u8>,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEnvelope {
    #[error("bad magic {0:#010x} (not a dkc message)")]
    Magic(u32),
    #[error("unsupported envelope version {0} (this build speaks {ENVELOPE_VERSION})")]
    Version(u8),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("unknown route tag {0}")]
    RouteTag(u8),
    #[error("route tag {tag} with non-zero unused fields")]
    RouteFields { tag: u8 },
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("body of {len} bytes exceeds the limit of {max} (option body_size_max)")]
    BodyTooLarge { len: usize, max: usize },
    #[error("{extra} bytes after the body")]
    TrailingBytes { extra: usize },
}

/// Decoding outcome other than success: need more bytes, or the bytes are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("incomplete message: {needed} more bytes needed")]
    Incomplete { needed: usize },
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidEnvelope),
}

impl Header {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; ENVELOPE_HEADER_BYTES] {
        let mut out = [0u8; ENVELOPE_HEADER_BYTES];
        let (tag, a, b, c) = self.route.encode();
        out[0..4].copy_from_slice(&ENVELOPE_MAGIC.to_le_bytes());
        out[4] = ENVELOPE_VERSION;
        out[5] = self.kind.code();
        out[6] = tag;
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[12..16].copy_from_slice(&self.body_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.msg_id.to_le_bytes());
        out[24..32].copy_from_slice(&a.to_le_bytes());
        out[32..40].copy_from_slice(&b.to_le_bytes());
        out[40..48].copy_from_slice(&c.to_le_bytes());
        out
    }

    /// Decodes a header from the front of `buf`, refusing bodies above `body_len_max`.
    pub fn decode(buf: &[u8], body_len_max: usize) -> Result<Header, DecodeError> {
        if buf.len() < ENVELOPE_HEADER_BYTES {
            return Err(DecodeError::Incomplete {
                needed: ENVELOPE_HEADER_BYTES - buf.len(),
            });
        }
        let u16_at = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let magic = u32_at(0);
        if magic != ENVELOPE_MAGIC {
            return Err(InvalidEnvelope::Magic(magic).into());
        }
        if buf[4] != ENVELOPE_VERSION {
            return Err(InvalidEnvelope::Version(buf[4]).into());
        }
        let kind = Kind::from_code(buf[5]).ok_or(InvalidEnvelope::Kind(buf[5]))?;
        if buf[7] != 0 || u16_at(10) != 0 {
            return Err(InvalidEnvelope::Reserved.into());
        }
        let route = Route::decode(buf[6], u64_at(24), u64_at(32), u64_at(40))?;
        let body_len = u32_at(12);
        if body_len as usize > body_len_max {
            return Err(InvalidEnvelope::BodyTooLarge {
                len: body_len as usize,
                max: body_len_max,
            }
            .into());
        }
        Ok(Header {
            msg_id: u64_at(16),
            kind,
            route,
            flags: u16_at(8),
            body_len,
        })
    }
}

impl Envelope {
    /// The header describing this envelope (`body_len` saturates; senders check sizes first).
    pub fn header(&self) -> Header {
        Header {
            msg_id: self.msg_id,
            kind: self.kind,
            route: self.route,
            flags: self.flags,
            body_len: u32::try_from(self.body.len()).unwrap_or(u32::MAX),
        }
    }

    /// Encodes header and body into one buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_HEADER_BYTES + self.body.len());
        out.extend_from_slice(&self.header().encode());
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes one envelope from the front of `buf`; returns it and the bytes it used.
    pub fn decode(buf: &[u8], body_len_max: usize) -> Result<(Envelope, usize), DecodeError> {
        let h = Header::decode(buf, body_len_max)?;
        let total = ENVELOPE_HEADER_BYTES + h.body_len as usize;
        if buf.len() < total {
            return Err(DecodeError::Incomplete {
                needed: total - buf.len(),
            });
        }
        let env = Envelope {
            msg_id: h.msg_id,
            kind: h.kind,
            route: h.route,
            flags: h.flags,
            body: buf[ENVELOPE_HEADER_BYTES..total].to_vec(),
        };
        Ok((env, total))
    }

    /// Builds an envelope from a frame already cut into header bytes and body (see
    /// `Ring::pop_split`), without copying the body again.
    pub fn from_parts(
        head: &[u8],
        body: Vec<u8>,
        body_len_max: usize,
    ) -> Result<Envelope, DecodeError> {
        let h = Header::decode(head, body_len_max)?;
        if head.len() != ENVELOPE_HEADER_BYTES {
            return Err(InvalidEnvelope::TrailingBytes {
                extra: head.len() - ENVELOPE_HEADER_BYTES,
            }
            .into());
        }
        let len = h.body_len as usize;
        if body.len() < len {
            return Err(DecodeError::Incomplete {
                needed: len - body.len(),
            });
        }
        if body.len() > len {
            return Err(InvalidEnvelope::TrailingBytes {
                extra: body.len() - len,
            }
            .into());
        }
        Ok(Envelope {
            msg_id: h.msg_id,
            kind: h.kind,
            route: h.route,
            flags: h.flags,
            body,
        })
    }

    /// Decodes a buffer that must hold exactly one envelope (a ring frame).
    pub fn decode_exact(buf: &[u8], body_len_max: usize) -> Result<Envelope, DecodeError> {
        let (env, used) = Envelope::decode(buf, body_len_max)?;
        if used != buf.len() {
            return Err(InvalidEnvelope::TrailingBytes {
                extra: buf.len() - used,
            }
            .into());
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flags_match_the_daemons_and_target_count_reads_only_notices() {
        assert_eq!(FLAG_CHMPX_ERROR, crate::daemon::FLAG_CHMPX_ERROR);
        assert_eq!(FLAG_TARGET_COUNT, crate::daemon::FLAG_TARGET_COUNT);
        assert_eq!(FLAG_UNMERGED, crate::daemon::wire::FLAG_UNMERGED);
        assert_eq!(FLAG_UNMERGED & (FLAG_CHMPX_ERROR | FLAG_TARGET_COUNT), 0);
        let notice = |kind: Kind, flags: u16, body: Vec<u8>| Envelope {
            msg_id: 1,
            kind,
            route: Route::AllServers,
            flags,
            body,
        };
        let three = 3u32.to_le_bytes().to_vec();
        assert_eq!(
            target_count(&notice(Kind::Event, FLAG_TARGET_COUNT, three.clone())),
            Some(3)
        );
        assert_eq!(target_count(&notice(Kind::Event, 0, three.clone())), None);
        assert_eq!(
            target_count(&notice(Kind::Response, FLAG_TARGET_COUNT, three)),
            None,
            "only events carry the count"
        );
        for bad in [vec![], vec![1], vec![1, 0, 0, 0, 0]] {
            assert_eq!(
                target_count(&notice(Kind::Event, FLAG_TARGET_COUNT, bad.clone())),
                None,
                "{bad:?}"
            );
        }
    }

    fn sample() -> Envelope {
        Envelope {
            msg_id: 77,
            kind: Kind::Request,
            route: Route::Reply {
                node: 3,
                attachment: 9,
                msg_id: 77,
            },
            flags: 5,
            body: b"hello".to_vec(),
        }
    }

    #[test]
    fn round_trip_and_incomplete_versus_invalid() {
        let bytes = sample().encode();
        assert_eq!(Envelope::decode_exact(&bytes, 100).unwrap(), sample());
        assert_eq!(
            Envelope::decode(&bytes[..10], 100),
            Err(DecodeError::Incomplete { needed: 38 })
        );
        assert_eq!(
            Envelope::decode(&bytes[..50], 100),
            Err(DecodeError::Incomplete { needed: 3 })
        );
        assert!(matches!(
            Envelope::decode(&bytes, 4),
            Err(DecodeError::Invalid(InvalidEnvelope::BodyTooLarge {
                len: 5,
                max: 4
            }))
        ));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(
            Envelope::decode(&bad, 100),
            Err(DecodeError::Invalid(InvalidEnvelope::Magic(_)))
        ));
        let mut bad = bytes.clone();
        bad[6] = 3; // AllServers with non-zero route fields
        assert!(matches!(
            Envelope::decode(&bad, 100),
            Err(DecodeError::Invalid(InvalidEnvelope::RouteFields {
                tag: 3
            }))
        ));
        let (head, body) = bytes.split_at(ENVELOPE_HEADER_BYTES);
        assert_eq!(
            Envelope::from_parts(head, body.to_vec(), 100).unwrap(),
            sample()
        );
        assert!(Envelope::from_parts(&head[..40], body.to_vec(), 100).is_err());
        assert!(Envelope::from_parts(head, body[..2].to_vec(), 100).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Envelope::decode_exact(&long, 100),
            Err(DecodeError::Invalid(InvalidEnvelope::TrailingBytes {
                extra: 1
            }))
        ));
    }

    fn route_strategy() -> impl Strategy<Value = Route> {
        prop_oneof![
            any::<u64>().prop_map(Route::HashFirst),
            any::<u64>().prop_map(Route::HashChain),
            Just(Route::AllServers),
            any::<u64>().prop_map(Route::Node),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(node, attachment, msg_id)| {
                Route::Reply {
                    node,
                    attachment,
                    msg_id,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_what_parses_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((env, used)) = Envelope::decode(&bytes, 1 << 20) {
                prop_assert_eq!(&env.encode()[..], &bytes[..used]);
            }
        }

        #[test]
        fn every_envelope_round_trips(msg_id in any::<u64>(), route in route_strategy(),
                                      flags in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            for kind in [Kind::Request, Kind::Response, Kind::Event] {
                let env = Envelope { msg_id, kind, route, flags, body: body.clone() };
                prop_assert_eq!(Envelope::decode_exact(&env.encode(), 64).unwrap(), env);
            }
        }
    }
}
