//! serde helpers that encode a list of byte strings as MessagePack `bin` values (not arrays of
//! integers), so keys and subkey lists stay compact on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::{ByteBuf, Bytes};

/// Serializes `Vec<Vec<u8>>` as a sequence of `bin`.
pub fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    let view: Vec<&Bytes> = list.iter().map(|b| Bytes::new(b)).collect();
    view.serialize(s)
}

/// Deserializes a sequence of `bin` into `Vec<Vec<u8>>`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
    let list = Vec::<ByteBuf>::deserialize(d)?;
    Ok(list.into_iter().map(ByteBuf::into_vec).collect())
}
