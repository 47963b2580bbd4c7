//! What flows between the daemon and the link layer: events up, outgoing messages down.

use super::frame::DataMsg;

/// Something that happened on the links, in order per peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A handshake with this peer succeeded; sends to it are accepted from now on.
    PeerUp(String),
    /// The link to this peer failed or fell silent; sends fail fast with `PeerDown`.
    PeerDown(String),
    Data {
        from: String,
        msg: DataMsg,
    },
    Control {
        from: String,
        bytes: Vec<u8>,
    },
}

/// A message in a peer's queue, holding its share of the queue's byte budget until the writer
/// has encoded it.
pub(crate) struct Queued {
    pub msg: Outgoing,
    pub _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A message queued for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Data(DataMsg),
    Control(Vec<u8>),
}

impl Outgoing {
    /// Upper bound of the bytes the message's fields take in a frame, before the envelope.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Outgoing::Data(m) => m.origin.len() + m.route.len() + m.body.len(),
            Outgoing::Control(b) => b.len(),
        }
    }
}
