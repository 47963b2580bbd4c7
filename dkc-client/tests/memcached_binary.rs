//! Binary protocol: the same request frames go to the real memcached and to dkc-memcached;
//! the response frames must be identical except the CAS field (and the version text).
//! Each sequence ends with a NOOP, whose response marks the end of the reply.

mod memcached_support;

use std::net::SocketAddr;

use memcached_support::{exchange, start_dkc, start_memcached};

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const ADD: u8 = 0x02;
const REPLACE: u8 = 0x03;
const DELETE: u8 = 0x04;
const INCREMENT: u8 = 0x05;
const DECREMENT: u8 = 0x06;
const FLUSH: u8 = 0x08;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const GETK: u8 = 0x0c;
const GETKQ: u8 = 0x0d;
const APPEND: u8 = 0x0e;
const PREPEND: u8 = 0x0f;
const SETQ: u8 = 0x11;
const DELETEQ: u8 = 0x14;
const INCREMENTQ: u8 = 0x15;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;

fn frame(opcode: u8, opaque: u32, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80, opcode];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
    let mut e = flags.to_be_bytes().to_vec();
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    let mut e = delta.to_be_bytes().to_vec();
    e.extend_from_slice(&initial.to_be_bytes());
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

fn noop_end() -> Vec<u8> {
    frame(NOOP, 0xfeed, 0, &[], &[], &[])
}

/// Splits a response stream into frames, zeroing each CAS and the version text.
fn masked(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 24 <= stream.len() {
        let body =
            u32::from_be_bytes(stream[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        let end = (at + 24 + body).min(stream.len());
        let mut f = stream[at..end].to_vec();
        f[16..24].fill(0);
        if f[1] == VERSION {
            f.truncate(24);
            f[8..12].fill(0);
        }
        frames.push(f);
        at = end;
    }
    if at < stream.len() {
        frames.push(stream[at..].to_vec());
    }
    frames
}

fn run(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let flush = frame(FLUSH, 1, 0, &[], &[], &[]);
    let mut flushed = flush.clone();
    flushed[0] = 0x81;
    assert_eq!(
        exchange(addr, &flush, Some(&flushed)),
        flushed,
        "flush before the sequence"
    );
    let mut bytes = requests.concat();
    bytes.extend(noop_end());
    let mut end = noop_end();
    end[0] = 0x81;
    masked(&exchange(addr, &bytes, Some(&end)))
}

fn sequences() -> Vec<Vec<Vec<u8>>> {
    let big = vec![b'x'; 2 * 1024 * 1024];
    vec![
        vec![frame(GET, 1, 0, &[], b"missing", &[])],
        vec![
            frame(SET, 2, 0, &store_extras(7, 0), b"k", b"value"),
            frame(GET, 3, 0, &[], b"k", &[]),
            frame(GETK, 4, 0, &[], b"k", &[]),
            frame(GETQ, 5, 0, &[], b"nothere", &[]),
            frame(GETKQ, 6, 0, &[], b"k", &[]),
        ],
        vec![
            frame(SET, 2, 0, &store_extras(0, 0), b"k", b"v"),
            frame(ADD, 3, 0, &store_extras(0, 0), b"k", b"w"),
            frame(REPLACE, 4, 0, &store_extras(0, 0), b"nothere", b"w"),
            frame(APPEND, 5, 0, &[], b"nothere", b"w"),
            frame(APPEND, 6, 0, &[], b"k", b"A"),
            frame(PREPEND, 7, 0, &[], b"k", b"P"),
            frame(GET, 8, 0, &[], b"k", &[]),
            frame(SET, 9, 12345, &store_extras(0, 0), b"k", b"cas-mismatch"),
            frame(SET, 10, 1, &store_extras(0, 0), b"nothere", b"cas-missing"),
        ],
        vec![
            frame(INCREMENT, 2, 0, &arith_extras(5, 10, 0), b"n", &[]),
            frame(INCREMENT, 3, 0, &arith_extras(5, 10, 0), b"n", &[]),
            frame(DECREMENT, 4, 0, &arith_extras(100, 0, 0), b"n", &[]),
            frame(INCREMENT, 5, 0, &arith_extras(1, 0, u32::MAX), b"none", &[]),
            frame(INCREMENTQ, 6, 0, &arith_extras(1, 0, 0), b"n", &[]),
            frame(SET, 7, 0, &store_extras(0, 0), b"s", b"text"),
            frame(INCREMENT, 8, 0, &arith_extras(1, 0, 0), b"s", &[]),
            frame(GET, 9, 0, &[], b"n", &[]),
        ],
        vec![
            frame(SETQ, 2, 0, &store_extras(0, 0), b"d", b"v"),
            frame(DELETE, 3, 0, &[], b"d", &[]),
            frame(DELETE, 4, 0, &[], b"d", &[]),
            frame(DELETEQ, 5, 0, &[], b"d", &[]),
            frame(TOUCH, 6, 0, &100u32.to_be_bytes(), b"d", &[]),
            frame(SET, 7, 0, &store_extras(3, 0), b"t", b"v"),
            frame(TOUCH, 8, 0, &100u32.to_be_bytes(), b"t", &[]),
            frame(GAT, 9, 0, &0u32.to_be_bytes(), b"t", &[]),
        ],
        vec![
            frame(VERSION, 2, 0, &[], &[], &[]),
            frame(0x70, 3, 0, &[], &[], &[]),
            frame(SET, 5, 0, &store_extras(0, 0), b"big", b"small"),
            frame(SET, 6, 0, &store_extras(0, 0), b"big", &big),
            frame(GET, 7, 0, &[], b"big", &[]),
        ],
        // Malformed requests: "invalid arguments", then memcached hangs up.
        vec![frame(GET, 4, 0, &[1, 2, 3, 4], b"k", &[])],
        vec![frame(SET, 5, 0, &[], b"k", b"no extras")],
        vec![frame(NOOP, 5, 0, &[], b"k", &[])],
        vec![frame(INCREMENT, 5, 0, &[0; 8], b"k", &[])],
    ]
}

#[test]
fn binary_replies_match_real_memcached() {
    let real = start_memcached(&[]);
    let ours = start_dkc(&[]);
    let sequences = sequences();
    let mut failures = Vec::new();
    for (index, requests) in sequences.iter().enumerate() {
        let expected = run(real.addr, requests);
        let got = run(ours.addr, requests);
        assert!(
            !expected.is_empty(),
            "memcached sent nothing for sequence {index}"
        );
        if expected != got {
            failures.push(format!(
                "sequence {index}:\n  memcached:     {expected:?}\n  dkc-memcached: {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
