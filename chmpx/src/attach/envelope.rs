//! The message model chmpx moves: a fixed 56-byte header and an opaque body. chmpx reads only
//! the header (kind, route, correlation id); what the body means is the business of dkc-server
//! and dkc-client.
//!
//! ```text
//!  0 magic u32 "DKCE"   4 version u8   5 kind u8   6 route tag u8   7 reserved u8 (0)
//!  8 flags u16          10 reserved u16 (0)        12 body_len u32
//! 16 msg_id u64
//! 24 route a u64        32 route b u64             40 route c u64
//! 48 queued_ns u64      56 body ...
//! ```
//! All integers little-endian. Route fields a/b/c per tag: HashFirst/HashChain (hash, 0, 0),
//! AllServers (0, 0, 0), Node (node, 0, 0), Reply (origin node, origin attachment, msg_id).
//! Unused fields must be zero, so a garbage header is very unlikely to pass.
//!
//! `queued_ns` is the queue time of the chmpx -> process direction: chmpx writes the host's
//! CLOCK_MONOTONIC ([`monotonic_now_ns`]) when it puts a message into a process's ring (or
//! keeps the earlier time its daemon took the message in, if it set one), so the
//! process can tell how long the message waited on this host (chmpx and the process share the
//! clock, which keeps running while either is stopped). Processes write 0 (unknown); 0 is never
//! a stamp. Version 1 had no such field (48-byte header) and is refused.

// Offsets of the header fields (the layout above); every encode and decode uses these.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_KIND: usize = 5;
const OFF_ROUTE_TAG: usize = 6;
const OFF_RESERVED_U8: usize = 7;
const OFF_FLAGS: usize = 8;
const OFF_RESERVED_U16: usize = 10;
const OFF_BODY_LEN: usize = 12;
const OFF_MSG_ID: usize = 16;
const OFF_ROUTE_A: usize = 24;
const OFF_ROUTE_B: usize = 32;
const OFF_ROUTE_C: usize = 40;
const OFF_QUEUED_NS: usize = 48;

/// Bytes of the encoded header.
pub const ENVELOPE_HEADER_BYTES: usize = OFF_QUEUED_NS + 8;
/// First four bytes of every header ("DKCE").
pub const ENVELOPE_MAGIC: u32 = 0x4543_4B44;
/// Version of this header layout (2: `queued_ns` added).
pub const ENVELOPE_VERSION: u8 = 2;

const _: () = assert!(
    OFF_VERSION == OFF_MAGIC + 4
        && OFF_KIND == OFF_VERSION + 1
        && OFF_ROUTE_TAG == OFF_KIND + 1
        && OFF_RESERVED_U8 == OFF_ROUTE_TAG + 1
        && OFF_FLAGS == OFF_RESERVED_U8 + 1
        && OFF_RESERVED_U16 == OFF_FLAGS + 2
        && OFF_BODY_LEN == OFF_RESERVED_U16 + 2
        && OFF_MSG_ID == OFF_BODY_LEN + 4
        && OFF_ROUTE_A == OFF_MSG_ID + 8
        && OFF_ROUTE_B == OFF_ROUTE_A + 8
        && OFF_ROUTE_C == OFF_ROUTE_B + 8
        && OFF_QUEUED_NS == OFF_ROUTE_C + 8
        && ENVELOPE_HEADER_BYTES == 56
);

/// This host's CLOCK_MONOTONIC in nanoseconds, never 0 (0 means "no stamp" in `queued_ns`).
/// Every process on the host reads the same clock, and it keeps running while a process is
/// stopped (SIGSTOP), so a stamp written by chmpx measures the wait in a process's ring.
pub fn monotonic_now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => {
            let ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
            u64::try_from(ns).unwrap_or(u64::MAX).max(1)
        }
        // CLOCK_MONOTONIC cannot fail on Linux; were it to, "no stamp" never refuses anything.
        Err(_) => 0,
    }
}

/// How long a message stamped `queued_ns` has waited at `now_ns` (both from
/// [`monotonic_now_ns`] on this host): `None` without a stamp (0); zero for a stamp from the
/// future, which only a damaged header can carry.
pub fn queue_age(queued_ns: u64, now_ns: u64) -> Option<std::time::Duration> {
    (queued_ns != 0).then(|| std::time::Duration::from_nanos(now_ns.saturating_sub(queued_ns)))
}

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

/// Flag chmpx sets on a `HashFirst` request it delivers to its own server process when this
/// node is the only owner of the key's slot (no other owner in the map in force, no pending
/// map): a write of that key has nobody to be replicated to. The server skips the replication
/// round trip only if chmpx's placement has not changed since it queued the request
/// ([`crate::attach::Attachment::placement_unchanged_since`]), and only for records of the
/// request's own key. chmpx clears it on every other delivery, so a client cannot set it.
/// (`chmpx::daemon::wire::FLAG_SOLE_OWNER` is the same bit; a test keeps them equal.)
pub const FLAG_SOLE_OWNER: u16 = 1 << 12;

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
    /// See [`Envelope::queued_ns`].
    pub queued_ns: u64,
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub msg_id: u64,
    pub kind: Kind,
    pub route: Route,
    pub flags: u16,
    pub body: Vec<u8>,
    /// When chmpx took this message in for the receiving process ([`monotonic_now_ns`] of
    /// this host), 0 if unknown. Only chmpx sets it, on delivery to a process: 0 becomes the
    /// time it is put into the ring, an earlier stamp the daemon set is kept; a process always
    /// sends 0, and chmpx clears what a process wrote.
    pub queued_ns: u64,
}

impl Envelope {
    /// How long this message has waited since chmpx queued it for this process (see
    /// [`queue_age`]); `None` if it carries no stamp.
    pub fn queue_age(&self, now_ns: u64) -> Option<std::time::Duration> {
        queue_age(self.queued_ns, now_ns)
    }
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
        let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
        put(OFF_MAGIC, &ENVELOPE_MAGIC.to_le_bytes());
        put(OFF_VERSION, &[ENVELOPE_VERSION]);
        put(OFF_KIND, &[self.kind.code()]);
        put(OFF_ROUTE_TAG, &[tag]);
        put(OFF_FLAGS, &self.flags.to_le_bytes());
        put(OFF_BODY_LEN, &self.body_len.to_le_bytes());
        put(OFF_MSG_ID, &self.msg_id.to_le_bytes());
        put(OFF_ROUTE_A, &a.to_le_bytes());
        put(OFF_ROUTE_B, &b.to_le_bytes());
        put(OFF_ROUTE_C, &c.to_le_bytes());
        put(OFF_QUEUED_NS, &self.queued_ns.to_le_bytes());
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
        let magic = u32_at(OFF_MAGIC);
        if magic != ENVELOPE_MAGIC {
            return Err(InvalidEnvelope::Magic(magic).into());
        }
        if buf[OFF_VERSION] != ENVELOPE_VERSION {
            return Err(InvalidEnvelope::Version(buf[OFF_VERSION]).into());
        }
        let kind = Kind::from_code(buf[OFF_KIND]).ok_or(InvalidEnvelope::Kind(buf[OFF_KIND]))?;
        if buf[OFF_RESERVED_U8] != 0 || u16_at(OFF_RESERVED_U16) != 0 {
            return Err(InvalidEnvelope::Reserved.into());
        }
        let route = Route::decode(
            buf[OFF_ROUTE_TAG],
            u64_at(OFF_ROUTE_A),
            u64_at(OFF_ROUTE_B),
            u64_at(OFF_ROUTE_C),
        )?;
        let body_len = u32_at(OFF_BODY_LEN);
        if body_len as usize > body_len_max {
            return Err(InvalidEnvelope::BodyTooLarge {
                len: body_len as usize,
                max: body_len_max,
            }
            .into());
        }
        Ok(Header {
            msg_id: u64_at(OFF_MSG_ID),
            kind,
            route,
            flags: u16_at(OFF_FLAGS),
            body_len,
            queued_ns: u64_at(OFF_QUEUED_NS),
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
            queued_ns: self.queued_ns,
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
            queued_ns: h.queued_ns,
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
            queued_ns: h.queued_ns,
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
        assert_eq!(FLAG_SOLE_OWNER, crate::daemon::wire::FLAG_SOLE_OWNER);
        assert_eq!(
            FLAG_SOLE_OWNER & (FLAG_CHMPX_ERROR | FLAG_TARGET_COUNT | FLAG_UNMERGED),
            0
        );
        let notice = |kind: Kind, flags: u16, body: Vec<u8>| Envelope {
            msg_id: 1,
            kind,
            route: Route::AllServers,
            flags,
            body,
            queued_ns: 0,
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
            queued_ns: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn round_trip_and_incomplete_versus_invalid() {
        let bytes = sample().encode();
        assert_eq!(Envelope::decode_exact(&bytes, 100).unwrap(), sample());
        assert_eq!(
            Envelope::decode(&bytes[..10], 100),
            Err(DecodeError::Incomplete {
                needed: ENVELOPE_HEADER_BYTES - 10
            })
        );
        assert_eq!(
            Envelope::decode(&bytes[..ENVELOPE_HEADER_BYTES - 1], 100),
            Err(DecodeError::Incomplete { needed: 1 })
        );
        assert_eq!(
            Envelope::decode(&bytes[..ENVELOPE_HEADER_BYTES + 2], 100),
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
        assert!(
            Envelope::from_parts(&bytes[..ENVELOPE_HEADER_BYTES + 1], Vec::new(), 100).is_err()
        );
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

    #[test]
    fn the_queue_stamp_round_trips_and_sits_after_the_route() {
        let mut env = sample();
        for stamp in [0, 1, 12_345_678_901, u64::MAX] {
            env.queued_ns = stamp;
            let bytes = env.encode();
            assert_eq!(bytes.len(), ENVELOPE_HEADER_BYTES + env.body.len());
            assert_eq!(
                &bytes[OFF_QUEUED_NS..OFF_QUEUED_NS + 8],
                &stamp.to_le_bytes(),
                "little-endian at its offset"
            );
            assert_eq!(bytes[OFF_VERSION], ENVELOPE_VERSION);
            assert_eq!(Envelope::decode_exact(&bytes, 100).unwrap(), env);
            let (head, body) = bytes.split_at(ENVELOPE_HEADER_BYTES);
            let h = Header::decode(head, 100).unwrap();
            assert_eq!(h.queued_ns, stamp);
            assert_eq!(h.encode().as_slice(), head, "the header alone re-encodes");
            assert_eq!(
                Envelope::from_parts(head, body.to_vec(), 100)
                    .unwrap()
                    .queued_ns,
                stamp
            );
        }
    }

    #[test]
    fn an_old_version_header_is_refused_not_misread() {
        let mut bytes = sample().encode();
        bytes[OFF_VERSION] = 1;
        assert_eq!(
            Envelope::decode(&bytes, 100),
            Err(DecodeError::Invalid(InvalidEnvelope::Version(1)))
        );
    }

    #[test]
    fn queue_age_without_a_stamp_is_unknown_and_never_negative() {
        assert_eq!(queue_age(0, 5_000_000_000), None, "0 is no stamp");
        assert_eq!(queue_age(0, 0), None);
        assert_eq!(
            queue_age(1_000_000_000, 3_500_000_000),
            Some(std::time::Duration::from_millis(2500))
        );
        assert_eq!(
            queue_age(u64::MAX, 7),
            Some(std::time::Duration::ZERO),
            "a stamp from the future (damaged) ages 0, no panic"
        );
        assert_eq!(
            queue_age(1, u64::MAX),
            Some(std::time::Duration::from_nanos(u64::MAX - 1))
        );
        let mut env = sample();
        env.queued_ns = 0;
        assert_eq!(env.queue_age(u64::MAX), None);
        env.queued_ns = 10;
        assert_eq!(env.queue_age(25), Some(std::time::Duration::from_nanos(15)));
    }

    #[test]
    fn the_monotonic_clock_is_stamped_and_does_not_go_back() {
        let a = monotonic_now_ns();
        let b = monotonic_now_ns();
        assert!(a != 0 && b >= a, "{a} then {b}");
        let age = queue_age(a, b).unwrap();
        assert!(age < std::time::Duration::from_secs(60), "{age:?}");
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
                // Whatever stamp garbage carries, its age is computed without a panic.
                let _ = env.queue_age(monotonic_now_ns());
                let _ = env.queue_age(0);
            }
        }

        #[test]
        fn a_valid_header_with_any_stamp_decodes(stamp in any::<u64>(), now in any::<u64>(),
                                                 body in proptest::collection::vec(any::<u8>(), 0..16)) {
            let env = Envelope { queued_ns: stamp, body, ..sample() };
            let back = Envelope::decode_exact(&env.encode(), 64).unwrap();
            prop_assert_eq!(back.queued_ns, stamp);
            let age = back.queue_age(now);
            prop_assert_eq!(age.is_none(), stamp == 0);
            prop_assert!(age.unwrap_or_default().as_nanos() <= u128::from(now));
        }

        #[test]
        fn every_envelope_round_trips(msg_id in any::<u64>(), route in route_strategy(),
                                      flags in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..64),
                                      queued_ns in any::<u64>()) {
            for kind in [Kind::Request, Kind::Response, Kind::Event] {
                let env = Envelope { msg_id, kind, route, flags, body: body.clone(), queued_ns };
                prop_assert_eq!(Envelope::decode_exact(&env.encode(), 64).unwrap(), env);
            }
        }
    }
}
