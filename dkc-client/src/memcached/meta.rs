//! Meta protocol decoder (`mg`, `ms`, `md`, `ma`, `mn`) with memcached 1.6's flag sets and
//! error lines. Flags that ask for output are kept in request order, because memcached echoes
//! them in that order. No I/O, no storage, no clock.

use base64::Engine as _;
use bytes::Bytes;

use super::limits::{Limits, OPAQUE_LENGTH_MAX};
use super::numeric::{parse_i32, parse_u32_truncating, parse_u64};
use super::request::{DecodeError, Frame, Request};
use super::storage::StoreMode;
use super::text::{tokenize, BAD_DATA_CHUNK, BAD_FORMAT, ERROR, TOO_LARGE};

pub const INVALID_FLAG: &str = "CLIENT_ERROR invalid flag";
pub const DUPLICATE_FLAG: &str = "CLIENT_ERROR duplicate flag";
pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
pub const INVALID_OR_DUPLICATE_FLAG: &str = "CLIENT_ERROR invalid or duplicate flag";
pub const BAD_KEY_ENCODING: &str = "CLIENT_ERROR error decoding key";
pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
pub const MS_BAD_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
pub const MA_BAD_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";

/// A flag whose answer appears in the reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnFlag {
    Opaque(Bytes),
    Key,
    Cas,
    ClientFlags,
    Ttl,
    Size,
    Hit,
    LastAccess,
}

/// What every meta command carries besides its own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaCommon {
    /// The key as it travels to storage (decoded when `base64`).
    pub key: Bytes,
    /// The key token as the client sent it, for the `k` echo.
    pub key_token: Bytes,
    pub base64: bool,
    pub quiet: bool,
    pub returns: Vec<ReturnFlag>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaRequest {
    Get {
        common: MetaCommon,
        value: bool,
        touch_ttl: Option<i32>,
        vivify_ttl: Option<i32>,
    },
    Set {
        common: MetaCommon,
        value: Bytes,
        mode: StoreMode,
        client_flags: u32,
        ttl: i32,
        cas_compare: Option<u64>,
    },
    Delete {
        common: MetaCommon,
        cas_compare: Option<u64>,
        invalidate: bool,
        ttl: Option<i32>,
    },
    Arith {
        common: MetaCommon,
        incr: bool,
        delta: u64,
        initial: u64,
        vivify_ttl: Option<i32>,
        ttl: Option<i32>,
        cas_compare: Option<u64>,
        value: bool,
    },
    Noop,
}

fn reply(line: &'static str, consumed: usize, swallow: usize) -> Result<Frame, DecodeError> {
    Ok(Frame {
        request: Request::Reply {
            line,
            noreply: false,
        },
        consumed,
        swallow,
    })
}

fn frame(request: MetaRequest, consumed: usize) -> Result<Frame, DecodeError> {
    Ok(Frame {
        request: Request::Meta(request),
        consumed,
        swallow: 0,
    })
}

/// The command-specific part of flag parsing: which letters a command accepts and how their
/// tokens are read.
#[derive(Default)]
struct Flags {
    seen: u128,
    returns: Vec<ReturnFlag>,
    base64: bool,
    quiet: bool,
    value: bool,
    ttl: Option<i32>,
    vivify: Option<i32>,
    cas_compare: Option<u64>,
    client_flags: Option<u32>,
    invalidate: bool,
    mode: Option<u8>,
    delta: Option<u64>,
    initial: Option<u64>,
}

/// Error lines of one command family: mg/ms name the problem, md/ma use one generic line.
struct Errors {
    invalid: &'static str,
    duplicate: &'static str,
    bad_token: &'static str,
    bad_client_flags: &'static str,
}

const MG_MS_ERRORS: Errors = Errors {
    invalid: INVALID_FLAG,
    duplicate: DUPLICATE_FLAG,
    bad_token: BAD_TOKEN,
    bad_client_flags: BAD_FORMAT,
};

const MD_MA_ERRORS: Errors = Errors {
    invalid: INVALID_OR_DUPLICATE_FLAG,
    duplicate: INVALID_OR_DUPLICATE_FLAG,
    bad_token: INVALID_OR_DUPLICATE_FLAG,
    bad_client_flags: INVALID_OR_DUPLICATE_FLAG,
};

fn parse_flags(tokens: &[&[u8]], allowed: &[u8], errors: &Errors) -> Result<Flags, &'static str> {
    let mut flags = Flags::default();
    for token in tokens {
        let letter = token[0];
        if !allowed.contains(&letter) {
            return Err(errors.invalid);
        }
        let bit = 1u128 << (letter & 0x7f);
        if flags.seen & bit != 0 {
            return Err(errors.duplicate);
        }
        flags.seen |= bit;
        let arg = &token[1..];
        match letter {
            b'b' => flags.base64 = true,
            b'q' => flags.quiet = true,
            b'v' => flags.value = true,
            b'I' => flags.invalidate = true,
            b'u' => {}
            b'k' => flags.returns.push(ReturnFlag::Key),
            b'c' => flags.returns.push(ReturnFlag::Cas),
            b'f' => flags.returns.push(ReturnFlag::ClientFlags),
            b't' => flags.returns.push(ReturnFlag::Ttl),
            b's' => flags.returns.push(ReturnFlag::Size),
            b'h' => flags.returns.push(ReturnFlag::Hit),
            b'l' => flags.returns.push(ReturnFlag::LastAccess),
            b'O' => {
                if arg.len() > OPAQUE_LENGTH_MAX {
                    return Err(if errors.invalid == INVALID_FLAG {
                        OPAQUE_TOO_LONG
                    } else {
                        errors.invalid
                    });
                }
                flags
                    .returns
                    .push(ReturnFlag::Opaque(Bytes::copy_from_slice(token)));
            }
            b'T' => flags.ttl = Some(parse_i32(arg).ok_or(errors.bad_token)?),
            b'N' => flags.vivify = Some(parse_i32(arg).ok_or(errors.bad_token)?),
            b'C' => flags.cas_compare = Some(parse_u64(arg).ok_or(errors.bad_token)?),
            b'F' => {
                flags.client_flags = Some(parse_u32_truncating(arg).ok_or(errors.bad_client_flags)?)
            }
            b'D' => flags.delta = Some(parse_u64(arg).ok_or(errors.bad_token)?),
            b'J' => flags.initial = Some(parse_u64(arg).ok_or(errors.bad_token)?),
            b'M' => flags.mode = Some(arg.first().copied().unwrap_or(0)),
            _ => return Err(errors.invalid),
        }
    }
    Ok(flags)
}

fn common(key_token: &[u8], flags: &Flags) -> Result<MetaCommon, &'static str> {
    let key = if flags.base64 {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(key_token)
            .map_err(|_| BAD_KEY_ENCODING)?;
        Bytes::from(decoded)
    } else {
        Bytes::copy_from_slice(key_token)
    };
    Ok(MetaCommon {
        key,
        key_token: Bytes::copy_from_slice(key_token),
        base64: flags.base64,
        quiet: flags.quiet,
        returns: flags.returns.clone(),
    })
}

/// Decodes a meta command whose line (without newline) is `line`, `used` bytes of `buf`.
pub fn decode(line: &[u8], used: usize, buf: &[u8], limits: &Limits) -> Result<Frame, DecodeError> {
    let tokens = tokenize(line);
    let command = tokens.first().copied().unwrap_or_default();
    if command == b"mn" {
        return frame(MetaRequest::Noop, used);
    }
    if !matches!(command, b"mg" | b"ms" | b"md" | b"ma") || tokens.len() < 2 {
        return reply(ERROR, used, 0);
    }
    if tokens[1].len() > limits.key_length_max {
        return reply(BAD_FORMAT, used, 0);
    }
    match command {
        b"mg" => {
            let flags = match parse_flags(&tokens[2..], b"bcfhklOqstuvNT", &MG_MS_ERRORS) {
                Ok(flags) => flags,
                Err(line) => return reply(line, used, 0),
            };
            let common = match common(tokens[1], &flags) {
                Ok(common) => common,
                Err(line) => return reply(line, used, 0),
            };
            frame(
                MetaRequest::Get {
                    common,
                    value: flags.value,
                    touch_ttl: flags.ttl,
                    vivify_ttl: flags.vivify,
                },
                used,
            )
        }
        b"ms" => decode_set(&tokens, used, buf, limits),
        b"md" => {
            let flags = match parse_flags(&tokens[2..], b"bCIkOqT", &MD_MA_ERRORS) {
                Ok(flags) => flags,
                Err(line) => return reply(line, used, 0),
            };
            let common = match common(tokens[1], &flags) {
                Ok(common) => common,
                Err(line) => return reply(line, used, 0),
            };
            frame(
                MetaRequest::Delete {
                    common,
                    cas_compare: flags.cas_compare,
                    invalidate: flags.invalidate,
                    ttl: flags.ttl,
                },
                used,
            )
        }
        _ => {
            let flags = match parse_flags(&tokens[2..], b"bCNJDTMOqtcvk", &MD_MA_ERRORS) {
                Ok(flags) => flags,
                Err(line) => return reply(line, used, 0),
            };
            let incr = match flags.mode {
                None | Some(b'I' | b'i' | b'+') => true,
                Some(b'D' | b'd' | b'-') => false,
                Some(_) => return reply(MA_BAD_MODE, used, 0),
            };
            let common = match common(tokens[1], &flags) {
                Ok(common) => common,
                Err(line) => return reply(line, used, 0),
            };
            frame(
                MetaRequest::Arith {
                    common,
                    incr,
                    delta: flags.delta.unwrap_or(1),
                    initial: flags.initial.unwrap_or(0),
                    vivify_ttl: flags.vivify,
                    ttl: flags.ttl,
                    cas_compare: flags.cas_compare,
                    value: flags.value,
                },
                used,
            )
        }
    }
}

fn decode_set(
    tokens: &[&[u8]],
    used: usize,
    buf: &[u8],
    limits: &Limits,
) -> Result<Frame, DecodeError> {
    let Some(vlen) = tokens.get(2).and_then(|t| parse_i32(t)) else {
        return reply(BAD_FORMAT, used, 0);
    };
    let Ok(vlen) = usize::try_from(vlen) else {
        return reply(BAD_FORMAT, used, 0);
    };
    // From here on, an error must also drop the data block that follows the line.
    let swallow = vlen + 2;
    let flags = match parse_flags(&tokens[3..], b"bcCFIkOqTMNv", &MG_MS_ERRORS) {
        Ok(flags) => flags,
        Err(line) => return reply(line, used, swallow),
    };
    let mode = match flags.mode {
        None | Some(b'S' | b's') => StoreMode::Set,
        Some(b'E' | b'e') => StoreMode::Add,
        Some(b'A' | b'a') => StoreMode::Append,
        Some(b'P' | b'p') => StoreMode::Prepend,
        Some(b'R' | b'r') => StoreMode::Replace,
        Some(_) => return reply(MS_BAD_MODE, used, swallow),
    };
    let common = match common(tokens[1], &flags) {
        Ok(common) => common,
        Err(line) => return reply(line, used, swallow),
    };
    if limits.too_large(common.key.len(), vlen) {
        return reply(TOO_LARGE, used, swallow);
    }
    let end = used + swallow;
    if buf.len() < end {
        return Err(DecodeError::Incomplete);
    }
    if &buf[used + vlen..end] != b"\r\n" {
        return reply(BAD_DATA_CHUNK, end, 0);
    }
    frame(
        MetaRequest::Set {
            common,
            value: Bytes::copy_from_slice(&buf[used..used + vlen]),
            mode,
            client_flags: flags.client_flags.unwrap_or(0),
            ttl: flags.ttl.unwrap_or(0),
            cas_compare: flags.cas_compare,
        },
        end,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_errors_and_swallow() {
        let limits = Limits::default();
        let f = super::super::text::decode(b"ms a 1 zz\r\nx\r\n", &limits).unwrap();
        assert_eq!(
            f.request,
            Request::Reply {
                line: INVALID_FLAG,
                noreply: false
            }
        );
        assert_eq!(f.consumed + f.swallow, 14);
        let f = super::super::text::decode(b"mg a v v\r\n", &limits).unwrap();
        assert_eq!(
            f.request,
            Request::Reply {
                line: DUPLICATE_FLAG,
                noreply: false
            }
        );
        let f = super::super::text::decode(b"ma a Dz\r\n", &limits).unwrap();
        assert_eq!(
            f.request,
            Request::Reply {
                line: INVALID_OR_DUPLICATE_FLAG,
                noreply: false
            }
        );
    }

    #[test]
    fn returns_keep_request_order() {
        let limits = Limits::default();
        let f = super::super::text::decode(b"mg a O1 k t\r\n", &limits).unwrap();
        let Request::Meta(MetaRequest::Get { common, .. }) = f.request else {
            panic!("not a meta get");
        };
        assert_eq!(
            common.returns,
            vec![
                ReturnFlag::Opaque(Bytes::from_static(b"O1")),
                ReturnFlag::Key,
                ReturnFlag::Ttl
            ]
        );
    }
}
