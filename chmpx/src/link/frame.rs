//! The wire unit between chmpx daemons, and its codec. Pure: no I/O, no clock.
//!
//! ```text
//!  0        4                                      4+len
//!  +--------+--------------------------------------+
//!  | len u32| MessagePack body (len bytes)         |   len <= frame_size_max
//!  |  (BE)  | [version u16, cluster str, FrameBody]|
//!  +--------+--------------------------------------+
//! ```
//!
//! The length prefix is checked against `frame_size_max` before a byte of the body is buffered,
//! so an oversized prefix costs nothing. The decoder keeps "need more bytes"
//! ([`FrameError::Incomplete`]) apart from every "invalid" error; a connection is closed on the
//! latter. A body must be consumed exactly: trailing bytes inside a frame are invalid, which is
//! what makes "decode, re-encode, decode" return the same frame.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::limits::{CLUSTER_NAME_LEN_MAX, FRAME_PREFIX_BYTES, NODE_ID_LEN_MAX, PROTOCOL_VERSION};

/// One frame: protocol version, cluster name, and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub version: u16,
    pub cluster: String,
    pub body: FrameBody,
}

impl Frame {
    /// A frame of the current protocol version.
    pub fn new(cluster: &str, body: FrameBody) -> Self {
        Frame {
            version: PROTOCOL_VERSION,
            cluster: cluster.to_owned(),
            body,
        }
    }
}

/// What a frame carries. Variants are appended, never reordered (their index is on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameBody {
    /// Dialer → acceptor, first frame: who I am and my challenge.
    Hello {
        node_id: String,
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
    },
    /// Acceptor → dialer: who I am, my challenge, and my answer to yours (empty without secret).
    HelloAck {
        node_id: String,
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Dialer → acceptor: the dialer's answer to the acceptor's challenge (empty without secret).
    AuthProof {
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Liveness, with the sender's view of itself (placement epoch and a small status word).
    Heartbeat { seq: u64, epoch: u64, status: u32 },
    /// Immediate answer to a heartbeat, for round-trip time.
    HeartbeatAck { seq: u64 },
    /// An opaque message of the daemon.
    Data(DataMsg),
    /// Opaque membership / merge control bytes of the daemon.
    Control {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The sender closes the connection; the reason is logged by the receiver.
    Close { reason: String },
}

/// The opaque message envelope moved between daemons. chmpx reads none of `kind`, `route` or
/// `body`; the daemon defines them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataMsg {
    /// Node id of the daemon that created the message.
    pub origin: String,
    pub msg_id: u64,
    pub kind: u8,
    #[serde(with = "serde_bytes")]
    pub route: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Why bytes could not be turned into a frame, or a frame into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not an error of the peer: wait for at least `needed` bytes in all, then decode again.
    #[error("incomplete frame: {needed} bytes needed in all")]
    Incomplete { needed: usize },
    #[error("frame of {len} bytes exceeds frame_size_max {max}; raise it on every node or send smaller messages")]
    TooLarge { len: usize, max: usize },
    #[error("frame of protocol version {got}, this node speaks {want}; run the same chmpx version on every node")]
    WrongVersion { got: u16, want: u16 },
    #[error("malformed frame: {reason}")]
    Malformed { reason: String },
}

impl FrameError {
    fn malformed(reason: impl Into<String>) -> Self {
        FrameError::Malformed {
            reason: reason.into(),
        }
    }
}

/// Reads the length prefix of the next frame, if present, and refuses it if too long.
/// Returns the body length.
pub fn peek_len(buf: &[u8], frame_size_max: usize) -> Result<usize, FrameError> {
    let Some(prefix) = buf.get(..FRAME_PREFIX_BYTES) else {
        return Err(FrameError::Incomplete {
            needed: FRAME_PREFIX_BYTES,
        });
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    // A TLS record (content type 20-23, version 3.x) read as a length: a node with SSL = on
    // answering one that dials it in plain text.
    if len > frame_size_max && (0x14..=0x17).contains(&prefix[0]) && prefix[1] == 0x03 {
        return Err(FrameError::malformed(
            "the peer speaks TLS, not plain chmpx frames: its entry has SSL = on; \
             set SSL = on for it in this node's config too (with CAPATH)",
        ));
    }
    if len > frame_size_max {
        return Err(FrameError::TooLarge {
            len,
            max: frame_size_max,
        });
    }
    if len == 0 {
        return Err(FrameError::malformed("zero-length frame"));
    }
    Ok(len)
}

/// Decodes one frame from the front of `buf`. On success returns the frame and the number of
/// bytes it used (prefix included). The version is checked here because the body layout depends
/// on it; the cluster name is checked by the caller, who knows which cluster it serves.
pub fn decode_frame(buf: &[u8], frame_size_max: usize) -> Result<(Frame, usize), FrameError> {
    let len = peek_len(buf, frame_size_max)?;
    let total = FRAME_PREFIX_BYTES + len;
    let Some(body) = buf.get(FRAME_PREFIX_BYTES..total) else {
        return Err(FrameError::Incomplete { needed: total });
    };
    let frame = decode_body(body)?;
    if frame.version != PROTOCOL_VERSION {
        return Err(FrameError::WrongVersion {
            got: frame.version,
            want: PROTOCOL_VERSION,
        });
    }
    check_field_limits(&frame)?;
    Ok((frame, total))
}

fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(body));
    match Frame::deserialize(&mut de) {
        Ok(frame) => {
            let used = de.position() as usize;
            if used != body.len() {
                return Err(FrameError::malformed(format!(
                    "{} trailing bytes after the frame body",
                    body.len() - used
                )));
            }
            Ok(frame)
        }
        Err(e) => {
            // A peer of another version may lay out its body differently; name the version
            // mismatch rather than the parse error it causes.
            if let Ok((version, _, _)) =
                rmp_serde::from_slice::<(u16, serde::de::IgnoredAny, serde::de::IgnoredAny)>(body)
            {
                if version != PROTOCOL_VERSION {
                    return Err(FrameError::WrongVersion {
                        got: version,
                        want: PROTOCOL_VERSION,
                    });
                }
            }
            Err(FrameError::malformed(e.to_string()))
        }
    }
}

fn check_field_limits(frame: &Frame) -> Result<(), FrameError> {
    if frame.cluster.len() > CLUSTER_NAME_LEN_MAX {
        return Err(FrameError::malformed(format!(
            "cluster name of {} bytes exceeds {CLUSTER_NAME_LEN_MAX}",
            frame.cluster.len()
        )));
    }
    let node_id = match &frame.body {
        FrameBody::Hello { node_id, .. } | FrameBody::HelloAck { node_id, .. } => Some(node_id),
        FrameBody::Data(msg) => Some(&msg.origin),
        _ => None,
    };
    if let Some(id) = node_id {
        if id.len() > NODE_ID_LEN_MAX {
            return Err(FrameError::malformed(format!(
                "node id of {} bytes exceeds {NODE_ID_LEN_MAX}",
                id.len()
            )));
        }
    }
    Ok(())
}

/// Appends one encoded frame (prefix included) to `out`. On `TooLarge`, `out` is left as it was.
pub fn encode_frame(
    frame: &Frame,
    out: &mut Vec<u8>,
    frame_size_max: usize,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_PREFIX_BYTES]);
    if let Err(e) = rmp_serde::encode::write(out, frame) {
        out.truncate(start);
        // Serializing owned strings, integers and byte vectors into a Vec cannot fail; if it
        // does, the frame type itself is wrong.
        return Err(FrameError::malformed(format!("cannot encode frame: {e}")));
    }
    let len = out.len() - start - FRAME_PREFIX_BYTES;
    if len > frame_size_max {
        out.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            max: frame_size_max,
        });
    }
    // `frame_size_max` is at most FRAME_SIZE_MAX_CEILING_BYTES, which fits in a u32.
    let prefix = (len as u32).to_be_bytes();
    out[start..start + FRAME_PREFIX_BYTES].copy_from_slice(&prefix);
    Ok(())
}

/// Convenience: one frame to a fresh buffer.
pub fn encode_to_vec(frame: &Frame, frame_size_max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame(frame, &mut out, frame_size_max)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::limits::FRAME_SIZE_MAX_DEFAULT_BYTES as MAX;

    fn sample_frames() -> Vec<Frame> {
        let bodies = vec![
            FrameBody::Hello {
                node_id: "127.0.0.1:8021".into(),
                nonce: vec![7; 16],
            },
            FrameBody::HelloAck {
                node_id: "b".into(),
                nonce: vec![1; 16],
                proof: vec![2; 32],
            },
            FrameBody::AuthProof { proof: vec![] },
            FrameBody::Heartbeat {
                seq: u64::MAX,
                epoch: 3,
                status: 0xdead_beef,
            },
            FrameBody::HeartbeatAck { seq: 0 },
            FrameBody::Data(DataMsg {
                origin: "a".into(),
                msg_id: 42,
                kind: 9,
                route: vec![1, 2],
                body: (0..=255).collect(),
            }),
            FrameBody::Control {
                bytes: b"merge".to_vec(),
            },
            FrameBody::Close {
                reason: "bye".into(),
            },
        ];
        bodies
            .into_iter()
            .map(|b| Frame::new("TESTDKC", b))
            .collect()
    }

    #[test]
    fn every_kind_round_trips_and_reports_its_length() {
        for f in sample_frames() {
            let bytes = encode_to_vec(&f, MAX).unwrap();
            let (g, used) = decode_frame(&bytes, MAX).unwrap();
            assert_eq!(g, f);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn every_proper_prefix_is_incomplete_not_invalid() {
        for f in sample_frames() {
            let bytes = encode_to_vec(&f, MAX).unwrap();
            for cut in 0..bytes.len() {
                match decode_frame(&bytes[..cut], MAX) {
                    Err(FrameError::Incomplete { needed }) => assert!(needed > cut),
                    other => panic!("cut {cut}: expected Incomplete, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_envelope_bound_holds_for_worst_case_values() {
        use crate::link::event::Outgoing;
        use crate::link::limits::FRAME_ENVELOPE_BYTES_MAX;
        let cluster = "c".repeat(crate::link::limits::CLUSTER_NAME_LEN_MAX);
        for payload in [0usize, 1, 31, 32, 255, 256, 65_535, 65_536, 70_000] {
            let msg = DataMsg {
                origin: "o".repeat(payload.min(NODE_ID_LEN_MAX)),
                msg_id: u64::MAX,
                kind: u8::MAX,
                route: vec![0xff; payload % 300],
                body: vec![0xff; payload],
            };
            let fields = Outgoing::Data(msg.clone()).payload_bytes();
            let bytes =
                encode_to_vec(&Frame::new(&cluster, FrameBody::Data(msg)), usize::MAX).unwrap();
            assert!(
                bytes.len() - FRAME_PREFIX_BYTES
                    <= fields + cluster.len() + FRAME_ENVELOPE_BYTES_MAX
            );
            let control = FrameBody::Control {
                bytes: vec![0; payload],
            };
            let bytes = encode_to_vec(&Frame::new(&cluster, control), usize::MAX).unwrap();
            assert!(
                bytes.len() - FRAME_PREFIX_BYTES
                    <= payload + cluster.len() + FRAME_ENVELOPE_BYTES_MAX
            );
        }
    }

    #[test]
    fn two_frames_back_to_back_decode_in_order() {
        let frames = sample_frames();
        let mut buf = Vec::new();
        for f in &frames {
            encode_frame(f, &mut buf, MAX).unwrap();
        }
        let mut at = 0;
        for f in &frames {
            let (g, used) = decode_frame(&buf[at..], MAX).unwrap();
            assert_eq!(&g, f);
            at += used;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn oversized_prefix_is_refused_from_the_prefix_alone() {
        let buf = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_frame(&buf, MAX),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: MAX
            })
        );
    }

    #[test]
    fn a_tls_record_instead_of_a_frame_is_named_as_tls() {
        // A TLS alert record (type 21, TLS 1.2) as a node with SSL on answers a plain dialler.
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46];
        match decode_frame(&alert, MAX) {
            Err(FrameError::Malformed { reason }) => {
                assert!(reason.contains("SSL = on"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encoding_more_than_the_max_is_refused_and_leaves_the_buffer_alone() {
        let f = Frame::new(
            "c",
            FrameBody::Control {
                bytes: vec![0; 2000],
            },
        );
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            encode_frame(&f, &mut out, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn garbage_zero_length_and_trailing_bytes_are_malformed() {
        assert!(matches!(
            decode_frame(&[0, 0, 0, 0], MAX),
            Err(FrameError::Malformed { .. })
        ));
        let garbage = [0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1];
        assert!(matches!(
            decode_frame(&garbage, MAX),
            Err(FrameError::Malformed { .. })
        ));
        let f = Frame::new("c", FrameBody::HeartbeatAck { seq: 1 });
        let mut bytes = encode_to_vec(&f, MAX).unwrap();
        bytes.push(0xc0);
        let len = (bytes.len() - 4) as u32;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            decode_frame(&bytes, MAX),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn another_version_is_named_even_when_its_body_does_not_parse() {
        let mut f = Frame::new("c", FrameBody::HeartbeatAck { seq: 1 });
        f.version = PROTOCOL_VERSION + 1;
        let bytes = encode_to_vec(&f, MAX).unwrap();
        assert_eq!(
            decode_frame(&bytes, MAX),
            Err(FrameError::WrongVersion {
                got: PROTOCOL_VERSION + 1,
                want: PROTOCOL_VERSION
            })
        );
        // A future version with an unknown body layout: still reported as a version mismatch.
        let body = rmp_serde::to_vec(&(PROTOCOL_VERSION + 7, "c", ("new", 1, 2, 3))).unwrap();
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        assert_eq!(
            decode_frame(&bytes, MAX),
            Err(FrameError::WrongVersion {
                got: PROTOCOL_VERSION + 7,
                want: PROTOCOL_VERSION
            })
        );
    }
}
