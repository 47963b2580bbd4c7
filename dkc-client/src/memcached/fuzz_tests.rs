//! Property tests of the decoders: arbitrary bytes never panic and always make progress or
//! ask for more; a valid request stream decodes to the same requests however it is split
//! into reads (the server decodes again from the buffer start after every read).

use proptest::prelude::*;

use super::limits::Limits;
use super::request::{DecodeError, Frame};
use super::text::decode;

fn decode_stream(input: &[u8], limits: &Limits) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < input.len() {
        match decode(&input[at..], limits) {
            Ok(frame) => {
                at += frame.consumed + frame.swallow;
                frames.push(frame);
            }
            Err(_) => break,
        }
    }
    frames
}

/// Requests that a client may pipeline, valid and invalid alike.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let key = "[a-z]{1,8}";
    prop_oneof![
        key.prop_map(|k| format!("get {k} {k}x\r\n").into_bytes()),
        (key, "[a-z0-9 ]{0,20}")
            .prop_map(|(k, v)| format!("set {k} 1 0 {}\r\n{v}\r\n", v.len()).into_bytes()),
        (key, "[a-z]{0,5}").prop_map(|(k, v)| format!("set {k} 0 0 3\r\n{v}\r\n").into_bytes()),
        (key, 0u64..u64::MAX).prop_map(|(k, d)| format!("incr {k} {d}\r\n").into_bytes()),
        key.prop_map(|k| format!("mg {k} v f t c k O1\r\n").into_bytes()),
        (key, "[a-z]{0,9}")
            .prop_map(|(k, v)| format!("ms {k} {} T0 MA\r\n{v}\r\n", v.len()).into_bytes()),
        key.prop_map(|k| format!("ma {k} N0 J5 D2 v\r\n").into_bytes()),
        "[ -~]{0,30}".prop_map(|l| format!("{l}\r\n").into_bytes()),
        Just(b"mn\r\n".to_vec()),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_make_progress(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let limits = Limits::default();
        match decode(&input, &limits) {
            Ok(frame) => {
                prop_assert!(frame.consumed > 0);
                prop_assert!(frame.consumed <= input.len());
            }
            Err(DecodeError::Incomplete) => prop_assert!(input.len() <= limits.connection_buffer_max()),
            Err(DecodeError::LineTooLong { length, limit }) => prop_assert!(length > limit),
            Err(DecodeError::BadMagic { .. }) => prop_assert!(false, "text decoder never checks magic"),
        }
    }

    #[test]
    fn arbitrary_binary_frames_never_panic(mut input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let limits = Limits::default();
        if let Some(first) = input.first_mut() {
            *first = super::binary::MAGIC_REQUEST;
        }
        match super::binary::decode(&input, &limits) {
            Ok(frame) => {
                prop_assert!(frame.consumed >= super::binary::HEADER_BYTES);
                prop_assert!(frame.consumed <= input.len());
            }
            Err(DecodeError::Incomplete) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn split_reads_decode_like_one_read(
        requests in proptest::collection::vec(request(), 1..20),
        cuts in proptest::collection::vec(any::<u16>(), 0..8),
    ) {
        let limits = Limits::default();
        let input: Vec<u8> = requests.concat();
        let whole = decode_stream(&input, &limits);
        // Feed the same bytes in pieces, as reads would deliver them.
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| usize::from(c) % (input.len() + 1)).collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        let mut buffer: Vec<u8> = Vec::new();
        let mut swallow = 0usize;
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts {
            buffer.extend_from_slice(&input[start..cut]);
            start = cut;
            loop {
                let skip = swallow.min(buffer.len());
                buffer.drain(..skip);
                swallow -= skip;
                if swallow > 0 || buffer.is_empty() {
                    break;
                }
                match decode(&buffer, &limits) {
                    Ok(frame) => {
                        buffer.drain(..frame.consumed);
                        swallow = frame.swallow;
                        pieces.push(frame.request);
                    }
                    Err(_) => break,
                }
            }
        }
        let whole: Vec<_> = whole.into_iter().map(|f| f.request).collect();
        prop_assert_eq!(whole, pieces);
    }
}
