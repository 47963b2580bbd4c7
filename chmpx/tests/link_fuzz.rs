//! Property-based fuzzing of the frame decoder, run in normal `cargo test`.
//! Invariants on whatever parses, not only "no panic":
//! - any frame encodes and decodes to itself, with `used == encoded length`;
//! - random or mutated bytes never panic; when they decode, re-encoding gives a frame that
//!   decodes to the same value, and `used` never exceeds the input;
//! - a proper prefix of an encoded frame is always `Incomplete`, never "invalid".

use chmpx::link::frame::{decode_frame, encode_to_vec, DataMsg, Frame, FrameBody, FrameError};
use chmpx::link::limits::PROTOCOL_VERSION;
use proptest::prelude::*;

const MAX: usize = 64 * 1024;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn body() -> impl Strategy<Value = FrameBody> {
    prop_oneof![
        (".{0,40}", bytes(40)).prop_map(|(node_id, nonce)| FrameBody::Hello { node_id, nonce }),
        (".{0,40}", bytes(40), bytes(64)).prop_map(|(node_id, nonce, proof)| FrameBody::HelloAck {
            node_id,
            nonce,
            proof
        }),
        bytes(64).prop_map(|proof| FrameBody::AuthProof { proof }),
        (any::<u64>(), any::<u64>(), any::<u32>())
            .prop_map(|(seq, epoch, status)| FrameBody::Heartbeat { seq, epoch, status }),
        any::<u64>().prop_map(|seq| FrameBody::HeartbeatAck { seq }),
        (".{0,40}", any::<u64>(), any::<u8>(), bytes(16), bytes(2048)).prop_map(
            |(origin, msg_id, kind, route, body)| {
                FrameBody::Data(DataMsg {
                    origin,
                    msg_id,
                    kind,
                    route,
                    body,
                })
            }
        ),
        bytes(2048).prop_map(|bytes| FrameBody::Control { bytes }),
        ".{0,80}".prop_map(|reason| FrameBody::Close { reason }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (".{0,64}", body()).prop_map(|(cluster, body)| Frame {
        version: PROTOCOL_VERSION,
        cluster,
        body,
    })
}

/// Checks the invariants on one input; returns whether it decoded.
fn check(input: &[u8]) -> bool {
    match decode_frame(input, MAX) {
        Ok((f, used)) => {
            assert!(used <= input.len());
            let again = encode_to_vec(&f, MAX).expect("a decoded frame re-encodes");
            let (g, used2) = decode_frame(&again, MAX).expect("a re-encoded frame decodes");
            assert_eq!(g, f);
            assert_eq!(used2, again.len());
            true
        }
        Err(FrameError::Incomplete { needed }) => {
            assert!(
                needed > input.len(),
                "Incomplete must ask for more than it has"
            );
            false
        }
        Err(FrameError::TooLarge { len, max }) => {
            assert!(len > max);
            false
        }
        Err(FrameError::WrongVersion { got, want }) => {
            assert_ne!(got, want);
            false
        }
        Err(FrameError::Malformed { .. }) => false,
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { keep: usize },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    SetPrefix { len: u32 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<u32>().prop_map(|len| Mutation::SetPrefix { len }),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    if buf.is_empty() {
        return;
    }
    match *m {
        Mutation::Flip { at, xor } => {
            let i = at % buf.len();
            buf[i] ^= xor;
        }
        Mutation::Truncate { keep } => buf.truncate(keep % buf.len()),
        Mutation::Insert { at, byte } => {
            let i = at % (buf.len() + 1);
            buf.insert(i, byte);
        }
        Mutation::Remove { at } => {
            let i = at % buf.len();
            buf.remove(i);
        }
        Mutation::SetPrefix { len } => {
            if buf.len() >= 4 {
                buf[..4].copy_from_slice(&len.to_be_bytes());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn link_any_frame_round_trips(f in frame()) {
        let bytes = encode_to_vec(&f, MAX).unwrap();
        let (g, used) = decode_frame(&bytes, MAX).unwrap();
        prop_assert_eq!(g, f);
        prop_assert_eq!(used, bytes.len());
        // Every proper prefix is "need more bytes".
        let cut = bytes.len() / 2;
        let incomplete = matches!(decode_frame(&bytes[..cut], MAX), Err(FrameError::Incomplete { .. }));
        prop_assert!(incomplete);
    }

    #[test]
    fn link_random_bytes_never_panic(input in bytes(512)) {
        check(&input);
    }

    #[test]
    fn link_random_bodies_behind_a_valid_prefix_never_panic(body in bytes(512)) {
        let mut input = (body.len() as u32).to_be_bytes().to_vec();
        input.extend_from_slice(&body);
        check(&input);
    }

    #[test]
    fn link_mutated_frames_never_panic_and_what_decodes_round_trips(
        f in frame(),
        ms in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut input = encode_to_vec(&f, MAX).unwrap();
        for m in &ms {
            apply(&mut input, m);
        }
        check(&input);
    }
}
