//! Byte encoding of requests and responses: one protocol-version byte, then MessagePack.
//! Pure functions, no I/O.

use super::request::Request;
use super::response::Response;

/// The protocol version this build speaks. Bump it whenever a wire type changes shape.
pub const PROTOCOL_VERSION: u8 = 1;

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The message has no bytes at all.
    #[error("dkc protocol: empty message (expected a version byte and a MessagePack body)")]
    Empty,
    /// The peer speaks another protocol version.
    #[error(
        "dkc protocol: message has protocol version {found}, this build speaks {supported}; \
         run the same dkc release on clients and servers"
    )]
    UnsupportedVersion {
        /// The version byte received.
        found: u8,
        /// [`PROTOCOL_VERSION`].
        supported: u8,
    },
    /// The body is not a valid message of the expected type.
    #[error("dkc protocol: malformed {what} body ({len} bytes): {detail}")]
    Decode {
        /// "request" or "response".
        what: &'static str,
        /// Body length after the version byte.
        len: usize,
        /// The decoder's explanation.
        detail: String,
    },
    /// The body has bytes left over after a complete message.
    #[error("dkc protocol: {extra} trailing bytes after a complete {what}")]
    Trailing {
        /// "request" or "response".
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// Serialization failed (should not happen for these types).
    #[error("dkc protocol: cannot encode {what}: {detail}")]
    Encode {
        /// "request" or "response".
        what: &'static str,
        /// The encoder's explanation.
        detail: String,
    },
}

fn encode<T: serde::Serialize>(what: &'static str, msg: &T) -> Result<Vec<u8>, ProtoError> {
    let mut out = vec![PROTOCOL_VERSION];
    rmp_serde::encode::write(&mut out, msg).map_err(|e| ProtoError::Encode {
        what,
        detail: e.to_string(),
    })?;
    Ok(out)
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, ProtoError> {
    let (&version, body) = bytes.split_first().ok_or(ProtoError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(ProtoError::UnsupportedVersion {
            found: version,
            supported: PROTOCOL_VERSION,
        });
    }
    // A forged length cannot exhaust memory: rmp reads bin/str bodies through `Read::take`
    // (growing only as bytes arrive) and serde caps sequence pre-allocation. Reading from a
    // `&[u8]` leaves the unread tail in the reader, which is how trailing bytes are found.
    let mut de = rmp_serde::Deserializer::new(body);
    let msg = serde::Deserialize::deserialize(&mut de).map_err(|e| ProtoError::Decode {
        what,
        len: body.len(),
        detail: e.to_string(),
    })?;
    let extra = de.get_ref().len();
    if extra != 0 {
        return Err(ProtoError::Trailing { what, extra });
    }
    Ok(msg)
}

/// Encodes a request: version byte then MessagePack.
pub fn encode_request(req: &Request) -> Result<Vec<u8>, ProtoError> {
    encode("request", req)
}

/// Decodes a request, refusing other protocol versions and trailing bytes.
pub fn decode_request(bytes: &[u8]) -> Result<Request, ProtoError> {
    decode("request", bytes)
}

/// Encodes a response: version byte then MessagePack.
pub fn encode_response(resp: &Response) -> Result<Vec<u8>, ProtoError> {
    encode("response", resp)
}

/// Decodes a response, refusing other protocol versions and trailing bytes.
pub fn decode_response(bytes: &[u8]) -> Result<Response, ProtoError> {
    decode("response", bytes)
}
