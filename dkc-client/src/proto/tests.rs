//! Codec tests: every request and response round-trips, other versions are refused, and
//! garbage never panics.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..40)
}

fn key_list() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(bytes(), 0..5)
}

fn set_mode() -> impl Strategy<Value = SetMode> {
    prop_oneof![
        Just(SetMode::Set),
        Just(SetMode::Add),
        Just(SetMode::Replace),
        Just(SetMode::Append),
        Just(SetMode::Prepend),
        any::<u64>().prop_map(SetMode::Cas),
    ]
}

fn scan_range() -> impl Strategy<Value = ScanRange> {
    prop_oneof![
        Just(ScanRange::All),
        bytes().prop_map(ScanRange::Prefix),
        (bytes(), proptest::option::of(bytes()))
            .prop_map(|(start, end)| ScanRange::Range { start, end }),
    ]
}

fn wire_record() -> impl Strategy<Value = WireRecord> {
    (
        bytes(),
        bytes(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        key_list(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |(key, value, flags, expire_at, version, tombstone, subkeys, base, rollback_of)| {
                WireRecord {
                    key,
                    value,
                    flags,
                    expire_at,
                    version,
                    tombstone,
                    subkeys,
                    base,
                    rollback_of,
                }
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        bytes().prop_map(|key| Request::Get { key }),
        key_list().prop_map(|keys| Request::MultiGet { keys }),
        (bytes(), bytes(), set_mode(), any::<u32>(), any::<u64>()).prop_map(
            |(key, value, mode, flags, expire_at)| Request::Set {
                key,
                value,
                mode,
                flags,
                expire_at
            }
        ),
        (bytes(), proptest::option::of(any::<u64>()))
            .prop_map(|(key, cas)| Request::Delete { key, cas }),
        (
            bytes(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<u64>()
        )
            .prop_map(|(key, delta, initial, expire_at)| Request::Incr {
                key,
                delta,
                initial,
                expire_at
            }),
        (
            bytes(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<u64>()
        )
            .prop_map(|(key, delta, initial, expire_at)| Request::Decr {
                key,
                delta,
                initial,
                expire_at
            }),
        (bytes(), any::<u64>()).prop_map(|(key, expire_at)| Request::Touch { key, expire_at }),
        (bytes(), any::<u64>())
            .prop_map(|(key, expire_at)| Request::GetAndTouch { key, expire_at }),
        (bytes(), key_list()).prop_map(|(key, subkeys)| Request::SetSubkeys { key, subkeys }),
        (bytes(), bytes()).prop_map(|(key, subkey)| Request::AddSubkey { key, subkey }),
        (bytes(), bytes()).prop_map(|(key, subkey)| Request::RemoveSubkey { key, subkey }),
        bytes().prop_map(|key| Request::ListSubkeys { key }),
        bytes().prop_map(|key| Request::ClearSubkeys { key }),
        bytes().prop_map(|key| Request::DeleteWithChildren { key }),
        (
            scan_range(),
            proptest::option::of(bytes()),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(|(range, cursor, limit, keys_only)| Request::Scan {
                range,
                cursor,
                limit,
                keys_only
            }),
        Just(Request::Stats),
        any::<bool>().prop_map(|confirm| Request::Flush { confirm }),
        vec(wire_record(), 0..4).prop_map(|records| Request::Replicate { records }),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    (bytes(), bytes(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
        |(key, value, flags, expire_at, version)| Item {
            key,
            value,
            flags,
            expire_at,
            version,
        },
    )
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        (0..ErrorCode::ALL.len()).prop_map(|i| ErrorCode::ALL[i].clone()),
        "E_[A-Z]{1,12}".prop_map(|s| ErrorCode::parse(&s)),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        item().prop_map(Response::Value),
        vec(item(), 0..4).prop_map(Response::Values),
        any::<u64>().prop_map(|version| Response::Stored { version }),
        Just(Response::NotStored),
        Just(Response::Exists),
        Just(Response::NotFound),
        Just(Response::Deleted),
        key_list().prop_map(|children| Response::DeletedWithChildren { children }),
        any::<u64>().prop_map(Response::Number),
        Just(Response::Touched),
        key_list().prop_map(Response::Subkeys),
        (vec(item(), 0..4), proptest::option::of(bytes()))
            .prop_map(|(items, next_cursor)| Response::ScanPage(ScanPage { items, next_cursor })),
        vec(("[a-z_]{1,10}", any::<u64>()), 0..5)
            .prop_map(|kv| Response::Stats(kv.into_iter().collect())),
        any::<u64>().prop_map(|deleted| Response::Flushed { deleted }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(wire_record())
        )
            .prop_map(|(applied, stale, conflict)| Response::Replicated {
                applied,
                stale,
                conflict: conflict.map(Box::new),
            }),
        (error_code(), ".{0,20}").prop_map(|(code, message)| Response::Error { code, message }),
    ]
}

proptest! {
    #[test]
    fn proto_request_roundtrip(req in request()) {
        let bytes = encode_request(&req).unwrap();
        prop_assert_eq!(bytes[0], PROTOCOL_VERSION);
        prop_assert_eq!(decode_request(&bytes).unwrap(), req);
    }

    #[test]
    fn proto_response_roundtrip(resp in response()) {
        let bytes = encode_response(&resp).unwrap();
        prop_assert_eq!(decode_response(&bytes).unwrap(), resp);
    }

    #[test]
    fn proto_garbage_never_panics(body in vec(any::<u8>(), 0..200)) {
        let mut msg = vec![PROTOCOL_VERSION];
        msg.extend_from_slice(&body);
        // Whatever decodes must re-encode to something that decodes to the same value.
        if let Ok(req) = decode_request(&msg) {
            let again = encode_request(&req).unwrap();
            prop_assert_eq!(decode_request(&again).unwrap(), req);
        }
        if let Ok(resp) = decode_response(&msg) {
            let again = encode_response(&resp).unwrap();
            prop_assert_eq!(decode_response(&again).unwrap(), resp);
        }
    }

    #[test]
    fn proto_truncated_and_mutated_messages_error_cleanly(
        req in request(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let bytes = encode_request(&req).unwrap();
        let cut = 1 + cut.index(bytes.len() - 1);
        // Every strict prefix that still has the version byte is incomplete, never valid.
        prop_assert!(decode_request(&bytes[..cut]).is_err());
        let mut mutated = bytes.clone();
        let at = flip.index(mutated.len());
        mutated[at] ^= 1 << bit;
        let _ = decode_request(&mutated);
    }
}

#[test]
fn proto_other_version_is_refused_with_both_numbers() {
    let mut bytes = encode_request(&Request::Stats).unwrap();
    bytes[0] = PROTOCOL_VERSION + 1;
    let err = decode_request(&bytes).unwrap_err();
    assert!(matches!(
        err,
        ProtoError::UnsupportedVersion { found, supported }
            if found == PROTOCOL_VERSION + 1 && supported == PROTOCOL_VERSION
    ));
    let text = err.to_string();
    assert!(text.contains(&(PROTOCOL_VERSION + 1).to_string()), "{text}");
}

#[test]
fn proto_empty_and_trailing_bytes_are_errors() {
    assert!(matches!(decode_request(&[]), Err(ProtoError::Empty)));
    let mut bytes = encode_response(&Response::NotFound).unwrap();
    bytes.push(0xc0);
    assert!(matches!(
        decode_response(&bytes),
        Err(ProtoError::Trailing { extra: 1, .. })
    ));
}

#[test]
fn proto_huge_forged_lengths_do_not_allocate_or_panic() {
    // bin32 claiming 4 GiB, array32 claiming 4 G elements, map32 claiming 4 G entries.
    for forged in [
        vec![PROTOCOL_VERSION, 0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2],
        vec![PROTOCOL_VERSION, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0],
        vec![PROTOCOL_VERSION, 0xdf, 0xff, 0xff, 0xff, 0xff],
        vec![
            PROTOCOL_VERSION,
            0x81,
            0xa3,
            b'G',
            b'e',
            b't',
            0x91,
            0xc6,
            0xff,
            0xff,
            0xff,
            0xff,
        ],
    ] {
        assert!(decode_request(&forged).is_err());
        assert!(decode_response(&forged).is_err());
    }
}

#[test]
fn proto_deeply_nested_input_is_an_error_not_a_stack_overflow() {
    let mut msg = vec![PROTOCOL_VERSION];
    msg.extend(std::iter::repeat_n(0x91u8, 100_000));
    assert!(decode_request(&msg).is_err());
}

#[test]
fn proto_error_codes_are_stable_strings_with_descriptions() {
    let expected = [
        "E_TOO_LARGE",
        "E_NOT_NUMERIC",
        "E_BAD_REQUEST",
        "E_UNAVAILABLE",
        "E_READONLY",
        "E_MERGING",
        "E_STORAGE",
        "E_VERSION",
        "E_TIMEOUT",
        "E_SUPERSEDED",
        "E_NO_SPACE",
    ];
    assert_eq!(ErrorCode::ALL.len(), expected.len());
    for (code, want) in ErrorCode::ALL.iter().zip(expected) {
        assert_eq!(code.as_str(), want);
        assert_eq!(ErrorCode::parse(want), *code);
        assert!(code.description().len() > 20);
    }
    // An unknown code from a newer peer survives a round trip.
    let resp = Response::error(ErrorCode::parse("E_FROM_THE_FUTURE"), "x");
    let back = decode_response(&encode_response(&resp).unwrap()).unwrap();
    assert_eq!(back, resp);
}

#[test]
fn proto_values_are_encoded_as_bin_not_int_arrays() {
    let value = vec![0xffu8; 1000];
    let req = Request::Set {
        key: b"k".to_vec(),
        value,
        mode: SetMode::Set,
        flags: 0,
        expire_at: 0,
    };
    let bytes = encode_request(&req).unwrap();
    assert!(
        bytes.len() < 1100,
        "1000-byte value took {} bytes",
        bytes.len()
    );
    let subkeys = Request::SetSubkeys {
        key: b"p".to_vec(),
        subkeys: vec![vec![0xff; 100]; 10],
    };
    assert!(encode_request(&subkeys).unwrap().len() < 1100);
}

#[test]
fn proto_scan_range_contains() {
    let r = ScanRange::Range {
        start: b"b".to_vec(),
        end: Some(b"d".to_vec()),
    };
    assert!(!r.contains(b"a") && r.contains(b"b") && r.contains(b"cz") && !r.contains(b"d"));
    assert!(ScanRange::Prefix(b"ab".to_vec()).contains(b"abc"));
    assert!(!ScanRange::Prefix(b"ab".to_vec()).contains(b"a"));
    let open = ScanRange::Range {
        start: Vec::new(),
        end: None,
    };
    assert!(open.contains(b"") && open.contains(b"\xff\xff"));
}

/// The shapes this build sent before fenced writes: a record without `base`/`rollback_of` and
/// a `Replicated` without `conflict`. They still decode, as plain (unfenced) ones.
#[test]
fn proto_records_and_replicated_without_fence_fields_still_decode() {
    #[derive(serde::Serialize)]
    struct OldRecord {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u32,
        expire_at: u64,
        version: u64,
        tombstone: bool,
        #[serde(with = "super::bytes_list")]
        subkeys: Vec<Vec<u8>>,
    }
    #[derive(serde::Serialize)]
    enum OldResponse {
        Replicated { applied: u64, stale: u64 },
    }
    let old = OldRecord {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        flags: 3,
        expire_at: 0,
        version: 77,
        tombstone: false,
        subkeys: vec![b"c".to_vec()],
    };
    let mut body = vec![PROTOCOL_VERSION];
    rmp_serde::encode::write(&mut body, &old).unwrap();
    let mut de = rmp_serde::Deserializer::new(&body[1..]);
    let rec: WireRecord = serde::Deserialize::deserialize(&mut de).unwrap();
    assert_eq!((rec.version, rec.base, rec.rollback_of), (77, None, None));
    assert_eq!(rec.subkeys, vec![b"c".to_vec()]);
    let mut body = vec![PROTOCOL_VERSION];
    rmp_serde::encode::write(
        &mut body,
        &OldResponse::Replicated {
            applied: 1,
            stale: 0,
        },
    )
    .unwrap();
    assert_eq!(
        decode_response(&body).unwrap(),
        Response::Replicated {
            applied: 1,
            stale: 0,
            conflict: None
        }
    );
}
