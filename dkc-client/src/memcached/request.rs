//! Request types shared by the text and meta encodings. The codecs produce these; the
//! command layer ([`super::execute`]) applies them to a storage. Exptimes are still the raw
//! numbers the client sent: converting them needs the clock, which codecs do not have.

use bytes::Bytes;

use super::storage::StoreMode;

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// get, gets, gat, gats.
    Get {
        keys: Vec<Bytes>,
        with_cas: bool,
        /// gat/gats: the new exptime.
        touch_exptime: Option<i32>,
        /// Close the reply with `END`. False for all but the last step of a long multi-get,
        /// which the server runs in steps so its reply is written out as it goes.
        end: bool,
    },
    /// set/add/replace/append/prepend/cas.
    Store {
        mode: StoreMode,
        key: Bytes,
        flags: u32,
        exptime: i32,
        value: Bytes,
        cas: Option<u64>,
        noreply: bool,
    },
    Delete {
        key: Bytes,
        noreply: bool,
    },
    Arith {
        incr: bool,
        key: Bytes,
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: Bytes,
        exptime: i32,
        noreply: bool,
    },
    FlushAll {
        delay: i32,
        noreply: bool,
    },
    Stats {
        group: Option<Bytes>,
    },
    Version,
    /// verbosity, cache_memlimit: accepted and answered `OK`; they have no effect here
    /// (logging is set with RUST_LOG, memory belongs to the storage).
    Acknowledge {
        noreply: bool,
    },
    Quit,
    /// A `set` whose value is too large: memcached answers, drops any old value under the key
    /// (set only), and discards the data block.
    TooLarge {
        key: Bytes,
        drop_existing: bool,
        reply: &'static str,
        noreply: bool,
    },
    /// Answered with one fixed line (errors found while decoding); nothing reaches storage.
    Reply {
        line: &'static str,
        noreply: bool,
    },
    Meta(super::meta::MetaRequest),
    Binary(super::binary::BinaryRequest),
}

impl Request {
    /// Whether the client asked for no reply (`noreply`, or meta `q`, whose successes are quiet).
    pub fn is_noreply(&self) -> bool {
        match self {
            Request::Store { noreply, .. }
            | Request::Delete { noreply, .. }
            | Request::Arith { noreply, .. }
            | Request::Touch { noreply, .. }
            | Request::FlushAll { noreply, .. }
            | Request::Acknowledge { noreply }
            | Request::TooLarge { noreply, .. }
            | Request::Reply { noreply, .. } => *noreply,
            _ => false,
        }
    }
}

/// A decoded request and how many input bytes it used. `swallow` more bytes must be dropped
/// after it (the data block of a rejected store), possibly before they have arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub request: Request,
    pub consumed: usize,
    pub swallow: usize,
}

/// Why no request could be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes are needed; call again when they arrive.
    #[error("incomplete request: need more bytes")]
    Incomplete,
    /// A command line grew past the limit without a newline; memcached closes the connection.
    #[error("command line of {length} bytes without a newline exceeds {limit} bytes; closing")]
    LineTooLong { length: usize, limit: usize },
    /// A binary-protocol connection sent a header without the request magic 0x80.
    #[error("binary request starts with {byte:#04x}, not the request magic 0x80; closing")]
    BadMagic { byte: u8 },
}
