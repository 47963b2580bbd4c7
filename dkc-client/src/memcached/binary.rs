//! Binary protocol (memcached's 24-byte-header protocol): decoder, and the command layer that
//! applies a binary request to a [`Storage`] and encodes the response. A connection speaks
//! binary when its first byte is the request magic 0x80, as memcached's auto-negotiation does.
//! No I/O here.
//!
//! ```text
//!  0      1       2..4     4       5        6..8       8..12      12..16   16..24
//!  magic  opcode  keylen   extlen  datatype vbucket/   total body opaque   cas
//!                                           status
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::execute::{expiry_from_exptime, Control, VERSION_REPORTED};
use super::limits::Limits;
use super::request::{DecodeError, Frame, Request};
use super::stats::{bump, ServerStats};
use super::storage::{
    Arith, ArithOutcome, DeleteOptions, DeleteOutcome, GetOptions, NewItem, Storage, StorageError,
    StoreMode, StoreOutcome,
};

pub const HEADER_BYTES: usize = 24;
pub const MAGIC_REQUEST: u8 = 0x80;
pub const MAGIC_RESPONSE: u8 = 0x81;

/// Response status codes.
pub mod status {
    pub const OK: u16 = 0x0000;
    pub const KEY_NOT_FOUND: u16 = 0x0001;
    pub const KEY_EXISTS: u16 = 0x0002;
    pub const TOO_LARGE: u16 = 0x0003;
    pub const INVALID_ARGUMENTS: u16 = 0x0004;
    pub const NOT_STORED: u16 = 0x0005;
    pub const NON_NUMERIC: u16 = 0x0006;
    pub const UNKNOWN_COMMAND: u16 = 0x0081;
    pub const OUT_OF_MEMORY: u16 = 0x0082;
    /// memcached's "temporary failure": what a storage failure becomes.
    pub const TEMPORARY_FAILURE: u16 = 0x0086;
}

/// Opcodes this front implements.
pub mod opcode {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// A decoded binary request: the header fields and the three body parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryRequest {
    pub opcode: u8,
    pub opaque: u32,
    pub cas: u64,
    pub extras: Bytes,
    pub key: Bytes,
    pub value: Bytes,
    /// Set when the decoder refused the request instead of reading all of it.
    pub refused: Option<Refusal>,
}

/// Why the decoder refused a binary request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Lengths that do not add up: "invalid arguments", then the connection closes.
    ProtocolError,
    /// The value is larger than an item may be: "too large"; the value is discarded.
    TooLarge,
}

/// Decodes one binary request from the front of `buf`. A body larger than an item may be is
/// answered "too large" and discarded as it arrives; a wrong magic byte ends the connection.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Frame, DecodeError> {
    if buf.len() < HEADER_BYTES {
        return Err(DecodeError::Incomplete);
    }
    if buf[0] != MAGIC_REQUEST {
        return Err(DecodeError::BadMagic { byte: buf[0] });
    }
    let opcode = buf[1];
    let key_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let extras_len = usize::from(buf[4]);
    let body_len = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    let opaque = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
    let cas = u64::from_be_bytes(buf[16..24].try_into().unwrap_or([0; 8]));
    // Lengths that do not add up are a protocol error: memcached answers "invalid arguments"
    // and closes the connection.
    if key_len + extras_len > body_len || key_len > limits.key_length_max {
        return Ok(Frame {
            request: Request::Binary(BinaryRequest {
                opcode,
                opaque,
                cas,
                extras: Bytes::new(),
                key: Bytes::new(),
                value: Bytes::new(),
                refused: Some(Refusal::ProtocolError),
            }),
            consumed: buf.len().min(HEADER_BYTES + body_len),
            swallow: 0,
        });
    }
    let value_len = body_len - key_len - extras_len;
    if limits.too_large(key_len, value_len) {
        // Keep the key (a failed set drops the old value, as in memcached); discard the value
        // as it arrives instead of buffering it.
        let head = HEADER_BYTES + extras_len + key_len;
        if buf.len() < head {
            return Err(DecodeError::Incomplete);
        }
        return Ok(Frame {
            request: Request::Binary(BinaryRequest {
                opcode,
                opaque,
                cas,
                extras: Bytes::copy_from_slice(&buf[HEADER_BYTES..HEADER_BYTES + extras_len]),
                key: Bytes::copy_from_slice(&buf[HEADER_BYTES + extras_len..head]),
                value: Bytes::new(),
                refused: Some(Refusal::TooLarge),
            }),
            consumed: head,
            swallow: value_len,
        });
    }
    let end = HEADER_BYTES + body_len;
    if buf.len() < end {
        return Err(DecodeError::Incomplete);
    }
    let body = &buf[HEADER_BYTES..end];
    Ok(Frame {
        request: Request::Binary(BinaryRequest {
            opcode,
            opaque,
            cas,
            extras: Bytes::copy_from_slice(&body[..extras_len]),
            key: Bytes::copy_from_slice(&body[extras_len..extras_len + key_len]),
            value: Bytes::copy_from_slice(&body[extras_len + key_len..]),
            refused: None,
        }),
        consumed: end,
        swallow: 0,
    })
}

struct Response<'a> {
    opcode: u8,
    status: u16,
    opaque: u32,
    cas: u64,
    extras: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
}

fn encode(out: &mut BytesMut, r: Response<'_>) {
    out.put_u8(MAGIC_RESPONSE);
    out.put_u8(r.opcode);
    out.put_u16(r.key.len() as u16);
    out.put_u8(r.extras.len() as u8);
    out.put_u8(0);
    out.put_u16(r.status);
    out.put_u32((r.extras.len() + r.key.len() + r.value.len()) as u32);
    out.put_u32(r.opaque);
    out.put_u64(r.cas);
    out.put_slice(r.extras);
    out.put_slice(r.key);
    out.put_slice(r.value);
}

/// The text memcached puts in the body of an error response.
fn status_text(code: u16) -> &'static [u8] {
    match code {
        status::KEY_NOT_FOUND => b"Not found",
        status::KEY_EXISTS => b"Data exists for key.",
        status::TOO_LARGE => b"Too large.",
        status::INVALID_ARGUMENTS => b"Invalid arguments",
        status::NOT_STORED => b"Not stored.",
        status::NON_NUMERIC => b"Non-numeric server-side value for incr or decr",
        status::UNKNOWN_COMMAND => b"Unknown command",
        status::OUT_OF_MEMORY => b"Out of memory",
        _ => b"Temporary failure",
    }
}

fn error(out: &mut BytesMut, req: &BinaryRequest, code: u16) {
    encode(
        out,
        Response {
            opcode: req.opcode,
            status: code,
            opaque: req.opaque,
            cas: 0,
            extras: &[],
            key: &[],
            value: status_text(code),
        },
    );
}

fn storage_error(out: &mut BytesMut, req: &BinaryRequest, e: &StorageError) {
    let code = match e {
        StorageError::OutOfMemory => status::OUT_OF_MEMORY,
        _ => status::TEMPORARY_FAILURE,
    };
    let text = format!("{e}");
    encode(
        out,
        Response {
            opcode: req.opcode,
            status: code,
            opaque: req.opaque,
            cas: 0,
            extras: &[],
            key: &[],
            value: text.as_bytes(),
        },
    );
}

fn ok(out: &mut BytesMut, req: &BinaryRequest, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) {
    encode(
        out,
        Response {
            opcode: req.opcode,
            status: status::OK,
            opaque: req.opaque,
            cas,
            extras,
            key,
            value,
        },
    );
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Exptimes travel as unsigned 32-bit; memcached reads them into a signed int.
fn exptime(raw: u32) -> i32 {
    raw as i32
}

/// Applies one binary request, appending the response(s) to `out`.
pub async fn execute<S: Storage>(
    req: BinaryRequest,
    storage: &S,
    stats: &ServerStats,
    out: &mut BytesMut,
) -> Control {
    use opcode::*;
    let c = &stats.counters;
    match req.refused {
        None => {}
        Some(Refusal::ProtocolError) => {
            error(out, &req, status::INVALID_ARGUMENTS);
            return Control::Close;
        }
        Some(Refusal::TooLarge) => {
            bump(&c.store_too_large);
            if matches!(req.opcode, SET | SETQ) {
                let _ = storage
                    .delete(req.key.clone(), DeleteOptions::default())
                    .await;
            }
            error(out, &req, status::TOO_LARGE);
            return Control::Continue;
        }
    }
    let now = storage.now_secs();
    let expect = |extras: usize, key: bool, value: bool| {
        req.extras.len() == extras && (req.key.is_empty() != key) && (value || req.value.is_empty())
    };
    match req.opcode {
        GET | GETQ | GETK | GETKQ | GAT | GATQ | GATK | GATKQ => {
            let touch = matches!(req.opcode, GAT | GATQ | GATK | GATKQ);
            if !expect(if touch { 4 } else { 0 }, true, false) {
                error(out, &req, status::INVALID_ARGUMENTS);
                return Control::Close;
            }
            let quiet = matches!(req.opcode, GETQ | GETKQ | GATQ | GATKQ);
            let with_key = matches!(req.opcode, GETK | GETKQ | GATK | GATKQ);
            let options = GetOptions {
                touch: touch.then(|| expiry_from_exptime(exptime(be_u32(&req.extras, 0)), now)),
                vivify: None,
            };
            bump(&c.cmd_get);
            if touch {
                bump(&c.cmd_touch);
            }
            match storage.get(std::slice::from_ref(&req.key), options).await {
                Err(e) => storage_error(out, &req, &e),
                Ok(mut found) => match found.pop().flatten() {
                    Some(fetched) => {
                        bump(if touch { &c.touch_hits } else { &c.get_hits });
                        let item = fetched.item;
                        let key: &[u8] = if with_key { &req.key } else { &[] };
                        ok(
                            out,
                            &req,
                            item.cas,
                            &item.flags.to_be_bytes(),
                            key,
                            &item.value,
                        );
                    }
                    None => {
                        bump(if touch {
                            &c.touch_misses
                        } else {
                            &c.get_misses
                        });
                        if !quiet {
                            if with_key {
                                encode(
                                    out,
                                    Response {
                                        opcode: req.opcode,
                                        status: status::KEY_NOT_FOUND,
                                        opaque: req.opaque,
                                        cas: 0,
                                        extras: &[],
                                        key: &req.key,
                                        value: b"",
                                    },
                                );
                            } else {
                                error(out, &req, status::KEY_NOT_FOUND);
                            }
                        }
                    }
                },
            }
        }
        SET | SETQ | ADD | ADDQ | REPLACE | REPLACEQ | APPEND | APPENDQ | PREPEND | PREPENDQ => {
            let concat = matches!(req.opcode, APPEND | APPENDQ | PREPEND | PREPENDQ);
            if !expect(if concat { 0 } else { 8 }, true, true) {
                error(out, &req, status::INVALID_ARGUMENTS);
                return Control::Close;
            }
            let quiet = matches!(req.opcode, SETQ | ADDQ | REPLACEQ | APPENDQ | PREPENDQ);
            let mode = match req.opcode {
                SET | SETQ => StoreMode::Set,
                ADD | ADDQ => StoreMode::Add,
                REPLACE | REPLACEQ => StoreMode::Replace,
                APPEND | APPENDQ => StoreMode::Append,
                _ => StoreMode::Prepend,
            };
            let (flags, exp) = if concat {
                (0, 0)
            } else {
                (be_u32(&req.extras, 0), exptime(be_u32(&req.extras, 4)))
            };
            bump(&c.cmd_set);
            let item = NewItem {
                value: req.value.clone(),
                flags,
                expiry: expiry_from_exptime(exp, now),
            };
            let cas_compare = (req.cas != 0).then_some(req.cas);
            match storage
                .store(mode, req.key.clone(), item, cas_compare)
                .await
            {
                Err(e) => storage_error(out, &req, &e),
                Ok(StoreOutcome::Stored { cas }) => {
                    if !quiet {
                        ok(out, &req, cas, &[], &[], &[]);
                    }
                }
                // memcached reports a failed add as "exists", a failed replace as "not found".
                Ok(StoreOutcome::NotStored) => error(
                    out,
                    &req,
                    match mode {
                        StoreMode::Add => status::KEY_EXISTS,
                        StoreMode::Replace => status::KEY_NOT_FOUND,
                        _ => status::NOT_STORED,
                    },
                ),
                Ok(StoreOutcome::Exists) => error(out, &req, status::KEY_EXISTS),
                Ok(StoreOutcome::NotFound) => error(out, &req, status::KEY_NOT_FOUND),
            }
        }
        DELETE | DELETEQ => {
            if !expect(0, true, false) {
                error(out, &req, status::INVALID_ARGUMENTS);
                return Control::Close;
            }
            let options = DeleteOptions {
                cas_compare: (req.cas != 0).then_some(req.cas),
                invalidate: None,
            };
            match storage.delete(req.key.clone(), options).await {
                Err(e) => storage_error(out, &req, &e),
                Ok(DeleteOutcome::Deleted) => {
                    bump(&c.delete_hits);
                    if req.opcode == DELETE {
                        ok(out, &req, 0, &[], &[], &[]);
                    }
                }
                Ok(DeleteOutcome::NotFound) => {
                    bump(&c.delete_misses);
                    error(out, &req, status::KEY_NOT_FOUND);
                }
                Ok(DeleteOutcome::Exists) => error(out, &req, status::KEY_EXISTS),
            }
        }
        INCREMENT | INCREMENTQ | DECREMENT | DECREMENTQ => {
            if !expect(20, true, false) {
                error(out, &req, status::INVALID_ARGUMENTS);
                return Control::Close;
            }
            let incr = matches!(req.opcode, INCREMENT | INCREMENTQ);
            let delta = be_u64(&req.extras, 0);
            let initial = be_u64(&req.extras, 8);
            let exp = be_u32(&req.extras, 16);
            // An expiration of all ones means "do not create".
            let vivify =
                (exp != u32::MAX).then(|| (initial, expiry_from_exptime(exptime(exp), now)));
            let arith = Arith {
                incr,
                delta,
                vivify,
                touch: None,
                cas_compare: (req.cas != 0).then_some(req.cas),
            };
            let (hits, misses) = if incr {
                (&c.incr_hits, &c.incr_misses)
            } else {
                (&c.decr_hits, &c.decr_misses)
            };
            match storage.arith(req.key.clone(), arith).await {
                Err(e) => storage_error(out, &req, &e),
                Ok(ArithOutcome::Value { value, cas, .. }) => {
                    bump(hits);
                    if matches!(req.opcode, INCREMENT | DECREMENT) {
                        ok(out, &req, cas, &[], &[], &value.to_be_bytes());
                    }
                }
                Ok(ArithOutcome::NotFound) => {
                    bump(misses);
                    error(out, &req, status::KEY_NOT_FOUND);
                }
                Ok(ArithOutcome::NonNumeric) => error(out, &req, status::NON_NUMERIC),
                Ok(ArithOutcome::Exists) => error(out, &req, status::KEY_EXISTS),
            }
        }
        TOUCH => {
            if !expect(4, true, false) {
                error(out, &req, status::INVALID_ARGUMENTS);
                return Control::Close;
            }
            bump(&c.cmd_touch);
            // memcached answers a touch with the item's flags, so fetch while touching.
            let options = GetOptions {
                touch: Some(expiry_from_exptime(exptime(be_u32(&req.extras, 0)), now)),
                vivify: None,
            };
            match storage.get(std::slice::from_ref(&req.key), options).await {
                Err(e) => storage_error(out, &req, &e),
                Ok(mut found) => match found.pop().flatten() {
                    Some(fetched) => {
                        bump(&c.touch_hits);
                        ok(
                            out,
                            &req,
                            fetched.item.cas,
                            &fetched.item.flags.to_be_bytes(),
                            &[],
                            &[],
                        );
                    }
                    None => {
                        bump(&c.touch_misses);
                        error(out, &req, status::KEY_NOT_FOUND);
                    }
                },
            }
        }
        FLUSH | FLUSHQ => {
            if !(req.extras.is_empty() || req.extras.len() == 4)
                || !req.key.is_empty()
                || !req.value.is_empty()
            {
                error(out, &req, status::INVALID_ARGUMENTS);
                return Control::Close;
            }
            bump(&c.cmd_flush);
            let delay = exptime(be_u32(&req.extras, 0));
            let at = match (delay > 0).then(|| expiry_from_exptime(delay, now)) {
                Some(super::storage::Expiry::At(at)) => Some(at),
                _ => None,
            };
            match storage.flush_all(at).await {
                Err(e) => storage_error(out, &req, &e),
                Ok(()) => {
                    if req.opcode == FLUSH {
                        ok(out, &req, 0, &[], &[], &[]);
                    }
                }
            }
        }
        NOOP | VERSION | QUIT | QUITQ if !expect(0, false, false) => {
            error(out, &req, status::INVALID_ARGUMENTS);
            return Control::Close;
        }
        VERBOSITY if !expect(4, false, false) => {
            error(out, &req, status::INVALID_ARGUMENTS);
            return Control::Close;
        }
        NOOP => ok(out, &req, 0, &[], &[], &[]),
        VERSION => ok(out, &req, 0, &[], &[], VERSION_REPORTED.as_bytes()),
        VERBOSITY => ok(out, &req, 0, &[], &[], &[]),
        QUIT => {
            ok(out, &req, 0, &[], &[], &[]);
            return Control::Close;
        }
        QUITQ => return Control::Close,
        STAT => {
            if !req.key.is_empty() {
                // Only the general group exists here; named groups are unknown.
                error(out, &req, status::KEY_NOT_FOUND);
                return Control::Continue;
            }
            match super::execute::general_stats(storage, stats).await {
                Err(e) => storage_error(out, &req, &e),
                Ok(all) => {
                    for (name, value) in all {
                        ok(out, &req, 0, &[], name.as_bytes(), value.as_bytes());
                    }
                    ok(out, &req, 0, &[], &[], &[]);
                }
            }
        }
        _ => error(out, &req, status::UNKNOWN_COMMAND),
    }
    Control::Continue
}
