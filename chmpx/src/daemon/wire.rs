//! What the daemon puts inside link frames, and the flags it sets on messages it makes itself.
//!
//! Data frames ([`crate::link::DataMsg`]) carry a routed attach message between daemons: `kind`
//! is the envelope kind's code and `route` holds [`ROUTE_BYTES`] bytes:
//!
//! ```text
//!  0 tag u8   1 a u64   9 b u64   17 c u64   25 origin attachment u64   33 flags u16   (35 bytes, LE)
//! ```
//! where tag/a/b/c are the attach route ([`crate::attach`]'s envelope layout). The origin node is
//! the frame's `origin` field.
//!
//! Control frames carry a [`PeerMsg`] in MessagePack: status gossip (with the ring state),
//! forwarded ring commands and their answers, and merge requests relayed to a node's server
//! process.
//!
//! Must never depend on: dkc commands or storage. A pure codec: no I/O.

use serde::{Deserialize, Serialize};

use super::status::{MergeProgress, MergeState};
use crate::placement::Membership;

/// Bytes of the route field of a data frame.
pub const ROUTE_BYTES: usize = 35;

/// Flag on a [`Kind::Response`](crate::attach::envelope::Kind) made by chmpx itself because the
/// request could not be delivered (no live owner, peer unreachable, no server process): the body
/// is a UTF-8 reason. Server and client processes must not set it.
pub const FLAG_CHMPX_ERROR: u16 = 1 << 15;

/// Flag on an `Event` chmpx sends back to the sender of a `HashChain` or `AllServers` message:
/// the body is the number of nodes it was delivered to (u32, little-endian), so the sender knows
/// how many answers to count (ack level all / quorum / one). Its route is the reply route of the
/// original message (same `msg_id`).
pub const FLAG_TARGET_COUNT: u16 = 1 << 14;

/// Flag chmpx sets on a `HashFirst` request it delivers to an owner that did not stay, is known
/// to be behind (seen returning, or cut off / frozen itself) and has not caught up on the key's
/// slot, because no caught-up owner is usable: the server answers a read with `E_MERGING`
/// instead of possibly stale data and serves writes as usual. A router clears it on every other
/// delivery; it travels between daemons in the route field's flags.
pub const FLAG_UNMERGED: u16 = 1 << 13;

/// Flag chmpx sets on a `HashFirst` request it delivers to its own server process when this
/// node is the key's only owner in the map in force and no map is pending: a write of the key
/// has no replica to reach (see `crate::attach::envelope::FLAG_SOLE_OWNER`). Set or cleared by
/// the router on every delivery to a local server; never trusted from a sender.
pub const FLAG_SOLE_OWNER: u16 = 1 << 12;

/// The node number used in attach routes (`Route::Node`, `Route::Reply`) for a node id: the
/// xxHash64 (seed 0) of its "host:ctlport" text.
pub fn node_number(id: &str) -> u64 {
    twox_hash::XxHash64::oneshot(0, id.as_bytes())
}

/// A route field of a data frame, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireRoute {
    /// Attach route tag.
    pub tag: u8,
    /// Route field a.
    pub a: u64,
    /// Route field b.
    pub b: u64,
    /// Route field c.
    pub c: u64,
    /// The attachment that sent the message on its origin node.
    pub origin_attachment: u64,
    /// Envelope flags.
    pub flags: u16,
}

impl WireRoute {
    /// Encodes the route field.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ROUTE_BYTES);
        out.push(self.tag);
        out.extend_from_slice(&self.a.to_le_bytes());
        out.extend_from_slice(&self.b.to_le_bytes());
        out.extend_from_slice(&self.c.to_le_bytes());
        out.extend_from_slice(&self.origin_attachment.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out
    }

    /// Decodes a route field; `None` if it has the wrong length.
    pub fn decode(bytes: &[u8]) -> Option<WireRoute> {
        if bytes.len() != ROUTE_BYTES {
            return None;
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Some(WireRoute {
            tag: bytes[0],
            a: u64_at(1),
            b: u64_at(9),
            c: u64_at(17),
            origin_attachment: u64_at(25),
            flags: u16::from_le_bytes([bytes[33], bytes[34]]),
        })
    }
}

/// The ring state every server node holds a copy of. Only the coordinator changes it, and each
/// change bumps `version`; a node adopts a copy whose `version` is higher than its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    /// Bumped on every change by the coordinator.
    pub version: u64,
    /// Member list, epoch, pending change.
    pub membership: Membership,
    /// SUSPENDMERGE in force: AUTOMERGE is ignored.
    pub merge_suspended: bool,
    /// MERGE was given (or AUTOMERGE started it) for the pending change.
    pub merging: bool,
}

/// One node's report about itself, gossiped to every peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The ring state as the sender holds it.
    pub ring: RingState,
    /// Whether a server-role process is attached to the sender.
    pub server_attached: bool,
    /// The sender's merge state.
    pub merge: MergeState,
    /// The pending epoch the merge state refers to (0 for a recovery merge).
    pub merge_epoch: u64,
    /// The sender's merge progress.
    pub progress: Option<MergeProgress>,
    /// Slots the sender is merging and has not finished: it does not serve them.
    pub unfinished: Vec<u32>,
    /// Messages per second the sender routed.
    pub msgs_per_sec: f64,
    /// The server nodes the sender sees DOWN (ids): its vote in
    /// [`super::down_votes`]. Absent from an older sender: it votes for nobody.
    #[serde(default)]
    pub down: Vec<String>,
}

/// A ring command forwarded to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RingCommand {
    /// SERVICEIN of a node.
    ServiceIn(String),
    /// SERVICEOUT of a node.
    ServiceOut(String),
    /// MERGE.
    Merge,
    /// ABORTMERGE.
    AbortMerge,
    /// COMPMERGE.
    CompMerge,
    /// SUSPENDMERGE.
    SuspendMerge,
    /// NOSUSPENDMERGE.
    NoSuspendMerge,
}

/// What travels in control frames.
// Status is the large variant and also the most frequent one (every gossip interval); boxing
// it would cost an allocation per status for no gain, as messages are decoded and consumed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerMsg {
    /// The sender's status and ring state.
    Status(PeerStatus),
    /// A ring command for the coordinator.
    Ring {
        /// Correlation id chosen by the sender.
        req_id: u64,
        /// The command.
        cmd: RingCommand,
    },
    /// The coordinator's answer to [`PeerMsg::Ring`].
    RingAnswer {
        /// The request's id.
        req_id: u64,
        /// Whether it succeeded.
        ok: bool,
        /// What to print.
        text: String,
    },
    /// A merge request for the receiver's server process.
    ServerRpc {
        /// Correlation id chosen by the sender.
        req_id: u64,
        /// A merge body ([`crate::merge::protocol`]).
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// The answer to [`PeerMsg::ServerRpc`]: the server's merge body, or an error text.
    ServerRpcAnswer {
        /// The request's id.
        req_id: u64,
        /// Whether `body` is the server's answer (true) or a UTF-8 error from chmpx (false).
        ok: bool,
        /// The answer.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

/// Why a control frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed control message from a peer ({len} bytes): {reason}")]
pub struct PeerMsgError {
    len: usize,
    reason: String,
}

impl PeerMsg {
    /// MessagePack bytes of the message.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding plain structs into a Vec cannot fail; an empty control frame is dropped by
        // the receiver as malformed, which is the safe outcome should it ever happen.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes a control frame's bytes.
    pub fn decode(bytes: &[u8]) -> Result<PeerMsg, PeerMsgError> {
        rmp_serde::from_slice(bytes).map_err(|e| PeerMsgError {
            len: bytes.len(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::NodeId;

    #[test]
    fn route_round_trips() {
        let r = WireRoute {
            tag: 5,
            a: 1,
            b: u64::MAX,
            c: 3,
            origin_attachment: 9,
            flags: 0x8001,
        };
        let bytes = r.encode();
        assert_eq!(bytes.len(), ROUTE_BYTES);
        assert_eq!(WireRoute::decode(&bytes), Some(r));
        assert_eq!(WireRoute::decode(&bytes[1..]), None);
    }

    #[test]
    fn peer_msgs_round_trip_and_garbage_fails() {
        let ring = RingState {
            version: 3,
            membership: Membership::new(1, [NodeId::new("a:1")]),
            merge_suspended: false,
            merging: true,
        };
        let m = PeerMsg::Status(PeerStatus {
            ring,
            server_attached: true,
            merge: MergeState::Doing,
            merge_epoch: 2,
            progress: None,
            unfinished: vec![1, 2],
            msgs_per_sec: 1.5,
            down: vec!["b:1".into()],
        });
        assert_eq!(PeerMsg::decode(&m.encode()).unwrap(), m);
        let r = PeerMsg::ServerRpc {
            req_id: 4,
            body: vec![1, 2, 3],
        };
        assert_eq!(PeerMsg::decode(&r.encode()).unwrap(), r);
        assert!(PeerMsg::decode(b"\xc1garbage").is_err());
        assert_ne!(node_number("a:1"), node_number("a:2"));
    }
}
