//! Feeds arbitrary bytes to the link frame decoder, as a peer's stream. Invariants beyond "no
//! panic": `Incomplete` asks for more than it has, consumed length never exceeds the input, and
//! every decoded frame re-encodes to bytes that decode to the same frame.
#![no_main]

use chmpx::link::frame::{decode_frame, encode_to_vec, FrameError};
use libfuzzer_sys::fuzz_target;

const FRAME_SIZE_MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // Decode a stream of frames back to back, as the reader does.
    let mut at = 0;
    while at < data.len() {
        match decode_frame(&data[at..], FRAME_SIZE_MAX) {
            Ok((frame, used)) => {
                assert!(used > 0 && used <= data.len() - at);
                let again =
                    encode_to_vec(&frame, FRAME_SIZE_MAX).expect("decoded frame re-encodes");
                let (same, used2) =
                    decode_frame(&again, FRAME_SIZE_MAX).expect("re-encoded frame decodes");
                assert_eq!(same, frame);
                assert_eq!(used2, again.len());
                at += used;
            }
            Err(FrameError::Incomplete { needed }) => {
                assert!(needed > data.len() - at);
                break;
            }
            Err(_) => break,
        }
    }
});
