//! The dkc wire protocol: the request and response types that clients and dkc-server exchange
//! through chmpx, and their byte encoding.
//!
//! This module owns the message types and the codec only. It must never do I/O, never depend on
//! chmpx, on k2hash or on the server: both sides link it, so it stays pure data and pure
//! functions.
//!
//! # Layout
//! - [`request`] — [`Request`] (client commands and the server-to-server `Replicate`), with
//!   [`SetMode`] and [`ScanRange`].
//! - [`response`] — [`Response`], [`Item`] and [`ScanPage`].
//! - [`record`] — [`WireRecord`], a full stored record (tombstones and subkeys included) as
//!   replication and merge carry it.
//! - [`error_code`] — [`ErrorCode`], the stable error codes with their descriptions.
//! - [`version`] — how a 64-bit item version packs a hybrid logical clock (the layout only; the
//!   clock itself lives in dkc-server).
//! - [`codec`] — `encode_request`/`decode_request`/`encode_response`/`decode_response`.
//!
//! # Encoding
//! ```text
//!   +---------+---------------------------------------------+
//!   | version | MessagePack (rmp-serde) of Request/Response |
//!   |  1 byte |                                             |
//!   +---------+---------------------------------------------+
//! ```
//! A message whose first byte is not [`PROTOCOL_VERSION`] is refused with
//! [`ProtoError::UnsupportedVersion`]; garbage after the version byte gives
//! [`ProtoError::Decode`], never a panic. Bump [`PROTOCOL_VERSION`] whenever a type here
//! changes shape: structs are encoded as arrays, so a new field is a new version.

pub mod codec;
pub mod error_code;
pub mod record;
pub mod request;
pub mod response;
pub mod version;

mod bytes_list;

pub use codec::{
    decode_request, decode_response, encode_request, encode_response, ProtoError, PROTOCOL_VERSION,
};
pub use error_code::ErrorCode;
pub use record::WireRecord;
pub use request::{Request, ScanRange, SetMode};
pub use response::{Item, Response, ScanPage};

#[cfg(test)]
mod tests;
