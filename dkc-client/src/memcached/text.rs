//! Text protocol decoder: one request from the front of a byte buffer, with memcached 1.6's
//! token counts, number rules and error lines (checked against the real server by
//! `tests/memcached_differential.rs`). Meta commands (`mg`, `ms`, ...) are handed to
//! [`super::meta`]. No I/O, no storage, no clock.

use bytes::Bytes;

use super::limits::Limits;
use super::meta;
use super::numeric::{parse_i32, parse_u32_truncating, parse_u64};
use super::request::{DecodeError, Frame, Request};
use super::storage::StoreMode;

pub const ERROR: &str = "ERROR";
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk";
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
pub const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
pub const STATS_CACHEDUMP_USAGE: &str = "CLIENT_ERROR bad command line";
pub const DELETE_USAGE: &str =
    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";

/// Splits a command line on spaces as memcached does: runs of spaces are one separator and
/// only the space character separates (a tab is part of a token).
pub fn tokenize(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .collect()
}

/// The command line at the front of `buf`: the line without its `\r\n` (or bare `\n`) and the
/// number of bytes it used, or why there is none yet.
pub fn split_line<'a>(buf: &'a [u8], limits: &Limits) -> Result<(&'a [u8], usize), DecodeError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            let line = &buf[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Ok((line, nl + 1))
        }
        None => {
            if buf.len() <= limits.line_length_max {
                return Err(DecodeError::Incomplete);
            }
            // memcached keeps reading a long line only if it is a multi-get.
            let trimmed = buf.iter().position(|&b| b != b' ').unwrap_or(buf.len());
            let rest = &buf[trimmed..];
            let retrieval =
                trimmed <= 100 && (rest.starts_with(b"get ") || rest.starts_with(b"gets "));
            let limit = if retrieval {
                limits.retrieval_line_length_max
            } else {
                limits.line_length_max
            };
            if buf.len() <= limit {
                Err(DecodeError::Incomplete)
            } else {
                Err(DecodeError::LineTooLong {
                    length: buf.len(),
                    limit,
                })
            }
        }
    }
}

fn reply(line: &'static str, noreply: bool, consumed: usize) -> Result<Frame, DecodeError> {
    Ok(Frame {
        request: Request::Reply { line, noreply },
        consumed,
        swallow: 0,
    })
}

fn frame(request: Request, consumed: usize) -> Result<Frame, DecodeError> {
    Ok(Frame {
        request,
        consumed,
        swallow: 0,
    })
}

/// Decodes the request at the front of `buf`.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Frame, DecodeError> {
    let (line, used) = split_line(buf, limits)?;
    if line.len() >= 2 && line[0] == b'm' && (line.len() == 2 || line[2] == b' ') {
        return meta::decode(line, used, buf, limits);
    }
    let tokens = tokenize(line);
    let Some(&command) = tokens.first() else {
        return reply(ERROR, false, used);
    };
    // Like memcached, `noreply` is only ever the last token.
    let noreply = tokens.len() > 1 && tokens[tokens.len() - 1] == b"noreply";
    let n = tokens.len();
    match command {
        b"get" | b"gets" | b"gat" | b"gats" if n >= 2 => decode_get(command, &tokens, used, limits),
        b"set" | b"add" | b"replace" | b"append" | b"prepend" if n == 5 || n == 6 => {
            let mode = match command {
                b"set" => StoreMode::Set,
                b"add" => StoreMode::Add,
                b"replace" => StoreMode::Replace,
                b"append" => StoreMode::Append,
                _ => StoreMode::Prepend,
            };
            decode_store(mode, false, &tokens, noreply, used, buf, limits)
        }
        b"cas" if n == 6 || n == 7 => {
            decode_store(StoreMode::Set, true, &tokens, noreply, used, buf, limits)
        }
        b"incr" | b"decr" if n == 3 || n == 4 => {
            if tokens[1].len() > limits.key_length_max {
                return reply(BAD_FORMAT, noreply, used);
            }
            let Some(delta) = parse_u64(tokens[2]) else {
                return reply(BAD_DELTA, noreply, used);
            };
            frame(
                Request::Arith {
                    incr: command == b"incr",
                    key: Bytes::copy_from_slice(tokens[1]),
                    delta,
                    noreply,
                },
                used,
            )
        }
        b"touch" if n == 3 || n == 4 => {
            if tokens[1].len() > limits.key_length_max {
                return reply(BAD_FORMAT, noreply, used);
            }
            let Some(exptime) = parse_i32(tokens[2]) else {
                return reply(BAD_EXPTIME, noreply, used);
            };
            frame(
                Request::Touch {
                    key: Bytes::copy_from_slice(tokens[1]),
                    exptime,
                    noreply,
                },
                used,
            )
        }
        b"delete" if (2..=4).contains(&n) => {
            if n > 2 {
                let hold_is_zero = tokens[2] == b"0";
                let valid =
                    (n == 3 && (hold_is_zero || noreply)) || (n == 4 && hold_is_zero && noreply);
                if !valid {
                    return reply(DELETE_USAGE, noreply, used);
                }
            }
            if tokens[1].len() > limits.key_length_max {
                return reply(BAD_FORMAT, noreply, used);
            }
            frame(
                Request::Delete {
                    key: Bytes::copy_from_slice(tokens[1]),
                    noreply,
                },
                used,
            )
        }
        b"flush_all" if (1..=3).contains(&n) => {
            let bare = if noreply { 2 } else { 1 };
            let delay = if n != bare {
                match parse_i32(tokens[1]) {
                    Some(delay) => delay,
                    None => return reply(BAD_EXPTIME, noreply, used),
                }
            } else {
                0
            };
            frame(Request::FlushAll { delay, noreply }, used)
        }
        b"verbosity" if n == 2 || n == 3 => match parse_u32_truncating(tokens[1]) {
            Some(_) => frame(Request::Acknowledge { noreply }, used),
            None => reply(BAD_FORMAT, noreply, used),
        },
        b"version" => frame(Request::Version, used),
        b"quit" => frame(Request::Quit, used),
        // Slab dumps have no meaning over a cluster; the reply is an empty dump.
        b"stats" if n >= 2 && tokens[1] == b"cachedump" && n != 4 => {
            reply(STATS_CACHEDUMP_USAGE, false, used)
        }
        // The memory limit belongs to the storage; accepted (as memcached does) but no effect.
        b"cache_memlimit" if n == 2 || n == 3 => match parse_u32_truncating(tokens[1]) {
            Some(_) => frame(Request::Acknowledge { noreply }, used),
            None => reply(ERROR, false, used),
        },
        b"stats" => frame(
            Request::Stats {
                group: tokens.get(1).map(|t| Bytes::copy_from_slice(t)),
            },
            used,
        ),
        // memcached hangs up on what looks like an HTTP request.
        _ if tokens[n - 1].starts_with(b"HTTP/") => frame(Request::Quit, used),
        _ => reply(ERROR, false, used),
    }
}

fn decode_get(
    command: &[u8],
    tokens: &[&[u8]],
    used: usize,
    limits: &Limits,
) -> Result<Frame, DecodeError> {
    let with_cas = command == b"gets" || command == b"gats";
    let touch = command.starts_with(b"gat");
    let (touch_exptime, first_key) = if touch {
        match parse_i32(tokens[1]) {
            Some(exptime) => (Some(exptime), 2),
            None => return reply(BAD_EXPTIME, false, used),
        }
    } else {
        (None, 1)
    };
    let mut keys = Vec::with_capacity(tokens.len().saturating_sub(first_key));
    for key in &tokens[first_key..] {
        if key.len() > limits.key_length_max {
            return reply(BAD_FORMAT, false, used);
        }
        keys.push(Bytes::copy_from_slice(key));
    }
    frame(
        Request::Get {
            keys,
            with_cas,
            touch_exptime,
            end: true,
        },
        used,
    )
}

fn decode_store(
    mode: StoreMode,
    with_cas: bool,
    tokens: &[&[u8]],
    noreply: bool,
    used: usize,
    buf: &[u8],
    limits: &Limits,
) -> Result<Frame, DecodeError> {
    if tokens[1].len() > limits.key_length_max {
        return reply(BAD_FORMAT, noreply, used);
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (
        parse_u32_truncating(tokens[2]),
        parse_i32(tokens[3]),
        parse_i32(tokens[4]),
    ) else {
        return reply(BAD_FORMAT, noreply, used);
    };
    let cas = if with_cas {
        match parse_u64(tokens[5]) {
            Some(cas) => Some(cas),
            None => return reply(BAD_FORMAT, noreply, used),
        }
    } else {
        None
    };
    let Ok(vlen) = usize::try_from(vlen) else {
        return reply(BAD_FORMAT, noreply, used);
    };
    let key = Bytes::copy_from_slice(tokens[1]);
    if limits.too_large(key.len(), vlen) {
        return Ok(Frame {
            request: Request::TooLarge {
                key,
                drop_existing: mode == StoreMode::Set && !with_cas,
                reply: TOO_LARGE,
                noreply,
            },
            consumed: used,
            swallow: vlen + 2,
        });
    }
    let end = used + vlen + 2;
    if buf.len() < end {
        return Err(DecodeError::Incomplete);
    }
    if &buf[used + vlen..end] != b"\r\n" {
        return reply(BAD_DATA_CHUNK, noreply, end);
    }
    frame(
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            value: Bytes::copy_from_slice(&buf[used..used + vlen]),
            cas,
            noreply,
        },
        end,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Vec<Request> {
        let limits = Limits::default();
        let mut at = 0;
        let mut out = Vec::new();
        while at < input.len() {
            match decode(&input[at..], &limits) {
                Ok(frame) => {
                    at += frame.consumed + frame.swallow;
                    out.push(frame.request);
                }
                Err(_) => break,
            }
        }
        out
    }

    #[test]
    fn incomplete_is_not_invalid() {
        let limits = Limits::default();
        assert_eq!(decode(b"get a", &limits), Err(DecodeError::Incomplete));
        assert_eq!(
            decode(b"set a 0 0 3\r\nab", &limits),
            Err(DecodeError::Incomplete)
        );
        assert!(matches!(
            decode(&[b'x'; 3000], &limits),
            Err(DecodeError::LineTooLong { .. })
        ));
        let mut long_get = b"get ".to_vec();
        long_get.extend(std::iter::repeat_n(b'a', 3000));
        assert_eq!(decode(&long_get, &limits), Err(DecodeError::Incomplete));
    }

    #[test]
    fn bad_data_chunk_consumes_exactly_the_block() {
        let requests = decode_all(b"set a 0 0 3\r\nabcd\r\nget a\r\n");
        assert_eq!(
            requests[0],
            Request::Reply {
                line: BAD_DATA_CHUNK,
                noreply: false
            }
        );
        // The leftover "\n" is an empty command line.
        assert_eq!(
            requests[1],
            Request::Reply {
                line: ERROR,
                noreply: false
            }
        );
        assert!(matches!(requests[2], Request::Get { .. }));
    }

    #[test]
    fn token_rules() {
        let r = decode_all(b"set a 0 0\r\nget\r\ndelete a 5\r\nincr a x\r\n");
        assert_eq!(
            r[0],
            Request::Reply {
                line: ERROR,
                noreply: false
            }
        );
        assert_eq!(
            r[1],
            Request::Reply {
                line: ERROR,
                noreply: false
            }
        );
        assert_eq!(
            r[2],
            Request::Reply {
                line: DELETE_USAGE,
                noreply: false
            }
        );
        assert_eq!(
            r[3],
            Request::Reply {
                line: BAD_DELTA,
                noreply: false
            }
        );
    }
}
