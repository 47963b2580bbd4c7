//! The few memcached text-protocol messages the benchmark sends (`set`, `get`) and the parsing
//! of their replies. Pure: no I/O. A parser keeps "need more bytes" ([`Parsed::Incomplete`])
//! apart from "invalid" ([`ReplyError`]), so the connection knows when to read again and when
//! to give up on the stream.

/// Longest reply line the parser waits for before calling the stream invalid, bytes (a
/// `VALUE` header is key + three numbers; memcached's error lines are short too).
pub const REPLY_LINE_LEN_MAX: usize = 1024;

/// A complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `STORED`.
    Stored,
    /// `VALUE ...` then `END`: the value was found; `matches` says whether it equals the value
    /// the workload stores.
    Hit {
        /// The value equals the expected one.
        matches: bool,
    },
    /// `END` alone.
    Miss,
    /// `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`, or another storage answer
    /// (`NOT_STORED`, `EXISTS`, `NOT_FOUND`): the operation failed, the stream is still in step.
    Failed(String),
}

/// The outcome of parsing the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The reply and how many bytes it took.
    Done(Reply, usize),
    /// More bytes are needed.
    Incomplete,
}

/// The bytes cannot be a reply to what was sent: the connection is out of step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from memcached: {0}")]
pub struct ReplyError(pub String);

/// Which reply the parser expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The reply to `set`.
    Store,
    /// The reply to `get` of one key, whose value should equal the workload's.
    Get,
}

/// Appends `set <key> 0 0 <len>\r\n<value>\r\n`.
pub fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(b" 0 0 ");
    out.extend_from_slice(value.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `get <key>\r\n`.
pub fn encode_get(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"get ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// The first line of `buf` without its `\r\n`, and the length including it.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ReplyError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&buf[..end], end + 2))),
        None if buf.len() > REPLY_LINE_LEN_MAX => Err(ReplyError(format!(
            "no line end in the first {REPLY_LINE_LEN_MAX} bytes"
        ))),
        None => Ok(None),
    }
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned()
}

/// An error or non-success line every command may get back, as [`Reply::Failed`].
fn failure(l: &[u8]) -> Option<Reply> {
    let known: [&[u8]; 6] = [
        b"ERROR",
        b"CLIENT_ERROR",
        b"SERVER_ERROR",
        b"NOT_STORED",
        b"EXISTS",
        b"NOT_FOUND",
    ];
    known
        .iter()
        .any(|k| l.starts_with(k))
        .then(|| Reply::Failed(shown(l)))
}

/// Parses the reply at the front of `buf` to a request of kind `expect`; `value` is what a
/// hit should hold.
pub fn parse_reply(buf: &[u8], expect: Expect, value: &[u8]) -> Result<Parsed, ReplyError> {
    let Some((first, first_len)) = line(buf)? else {
        return Ok(Parsed::Incomplete);
    };
    if let Some(f) = failure(first) {
        return Ok(Parsed::Done(f, first_len));
    }
    match expect {
        Expect::Store if first == b"STORED" => Ok(Parsed::Done(Reply::Stored, first_len)),
        Expect::Get if first == b"END" => Ok(Parsed::Done(Reply::Miss, first_len)),
        Expect::Get if first.starts_with(b"VALUE ") => {
            let len = value_len(first)?;
            let data_end = first_len + len;
            // The data, its \r\n, then END\r\n.
            let total = data_end + 2 + 5;
            if buf.len() < total {
                return Ok(Parsed::Incomplete);
            }
            if &buf[data_end..total] != b"\r\nEND\r\n" {
                return Err(ReplyError(format!(
                    "after a {len}-byte value expected \\r\\nEND\\r\\n, got {:?}",
                    shown(&buf[data_end..total])
                )));
            }
            let matches = &buf[first_len..data_end] == value;
            Ok(Parsed::Done(Reply::Hit { matches }, total))
        }
        _ => Err(ReplyError(format!(
            "{:?} in answer to a {}",
            shown(first),
            if expect == Expect::Store {
                "set"
            } else {
                "get"
            }
        ))),
    }
}

/// The byte count of a `VALUE <key> <flags> <bytes> [<cas>]` line.
fn value_len(header: &[u8]) -> Result<usize, ReplyError> {
    let bad = || ReplyError(format!("malformed VALUE line {:?}", shown(header)));
    let text = std::str::from_utf8(header).map_err(|_| bad())?;
    let mut fields = text.split(' ').skip(1);
    let (_key, _flags) = (
        fields.next().ok_or_else(bad)?,
        fields.next().ok_or_else(bad)?,
    );
    fields.next().ok_or_else(bad)?.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &[u8] = b"hello";

    #[test]
    fn encodes() {
        let mut out = Vec::new();
        encode_set(&mut out, b"k1", V);
        encode_get(&mut out, b"k1");
        assert_eq!(out, b"set k1 0 0 5\r\nhello\r\nget k1\r\n");
    }

    #[test]
    fn store_replies() {
        assert_eq!(
            parse_reply(b"STORED\r\nEND", Expect::Store, V),
            Ok(Parsed::Done(Reply::Stored, 8))
        );
        assert_eq!(
            parse_reply(b"STOR", Expect::Store, V),
            Ok(Parsed::Incomplete)
        );
        assert_eq!(
            parse_reply(b"SERVER_ERROR out of memory\r\n", Expect::Store, V),
            Ok(Parsed::Done(
                Reply::Failed("SERVER_ERROR out of memory".into()),
                28
            ))
        );
        assert!(parse_reply(b"END\r\n", Expect::Store, V).is_err());
    }

    #[test]
    fn get_replies() {
        let hit = b"VALUE k1 0 5\r\nhello\r\nEND\r\n";
        assert_eq!(
            parse_reply(hit, Expect::Get, V),
            Ok(Parsed::Done(Reply::Hit { matches: true }, hit.len()))
        );
        assert_eq!(
            parse_reply(b"VALUE k1 0 5\r\nhellx\r\nEND\r\n", Expect::Get, V),
            Ok(Parsed::Done(Reply::Hit { matches: false }, hit.len()))
        );
        // Every proper prefix is incomplete, never an error.
        for cut in 0..hit.len() {
            assert_eq!(
                parse_reply(&hit[..cut], Expect::Get, V),
                Ok(Parsed::Incomplete),
                "cut {cut}"
            );
        }
        assert_eq!(
            parse_reply(b"END\r\n", Expect::Get, V),
            Ok(Parsed::Done(Reply::Miss, 5))
        );
        assert!(parse_reply(b"VALUE k1 0 x\r\n", Expect::Get, V).is_err());
        assert!(parse_reply(b"VALUE k1 0 5\r\nhelloXXEND\r\n", Expect::Get, V).is_err());
        assert!(parse_reply(b"STORED\r\n", Expect::Get, V).is_err());
        assert!(parse_reply(&[b'x'; REPLY_LINE_LEN_MAX + 1], Expect::Get, V).is_err());
    }
}
