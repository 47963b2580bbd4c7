//! The `k2htool export` / `k2htool load` line format: one record per line, pure text, every
//! binary key and value round-trips. No I/O here.
//!
//! # Format (version 1)
//! ```text
//! <key> TAB <value> TAB <flags> TAB <expire_at> TAB <version> TAB <tombstone> TAB <subkeys> LF
//! ```
//! - `key`, `value`: escaped bytes (below). The key is never empty.
//! - `flags`: decimal u32 (opaque to k2hash; memcached clients keep their flags here).
//! - `expire_at`: decimal unix seconds, `0` = never expires.
//! - `version`: decimal u64 (dkc stores a hybrid logical clock here).
//! - `tombstone`: `0` for a live record, `1` for a deletion marker (its value is empty).
//! - `subkeys`: the key's subkey list, each subkey escaped, separated by `,`; empty for none.
//!
//! Escaping: bytes 0x20..=0x7E pass through except `\` and `,`; `\\` is a backslash, `\t`,
//! `\n`, `\r` are TAB, LF, CR, and `\xHH` (two hex digits, either case) is any byte. So an
//! escaped field never holds a TAB, LF or `,`, and any byte string has exactly one canonical
//! escaping (the one [`escape`] writes) though [`unescape`] accepts `\xHH` for every byte.
//! Empty lines are skipped by the reader; every other line must be a whole record.

use std::fmt;

/// Fields on one line.
pub const FIELD_COUNT: usize = 7;
/// Separator between fields.
pub const FIELD_SEPARATOR: u8 = b'\t';
/// Separator between subkeys inside the subkeys field.
pub const SUBKEY_SEPARATOR: u8 = b',';

/// One record as it appears on a line (the k2hash-independent half of export/load).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LineRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub flags: u32,
    pub expire_at: u64,
    pub version: u64,
    pub tombstone: bool,
    pub subkeys: Vec<Vec<u8>>,
}

/// Why a line could not be read, with enough detail to fix it by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected {FIELD_COUNT} TAB-separated fields (key, value, flags, expire_at, version, tombstone, subkeys), found {found}")]
    FieldCount { found: usize },
    #[error("field {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

/// Appends the escaped form of `bytes` to `out`.
pub fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b',' => out.extend_from_slice(b"\\x2c"),
            0x20..=0x7E => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
        }
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes an escaped field. The error names the byte offset of the bad escape.
pub fn unescape(field: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' {
            if !(0x20..=0x7E).contains(&b) {
                return Err(format!(
                    "raw byte 0x{b:02x} at offset {i} must be written as \\x{b:02x}"
                ));
            }
            out.push(b);
            i += 1;
            continue;
        }
        match field.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'x') => {
                let hi = field.get(i + 2).copied().and_then(hex_digit);
                let lo = field.get(i + 3).copied().and_then(hex_digit);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(format!(
                            "\\x at offset {i} must be followed by two hex digits"
                        ))
                    }
                }
                i += 4;
                continue;
            }
            Some(other) => {
                return Err(format!(
                    "unknown escape \\{} at offset {i} (use \\\\, \\t, \\n, \\r or \\xHH)",
                    char::from(*other).escape_default()
                ))
            }
            None => return Err(format!("lone backslash at the end (offset {i})")),
        }
        i += 2;
    }
    Ok(out)
}

/// Appends `record` as one line, LF included.
pub fn write_line(record: &LineRecord, out: &mut Vec<u8>) {
    escape(&record.key, out);
    out.push(FIELD_SEPARATOR);
    escape(&record.value, out);
    out.push(FIELD_SEPARATOR);
    out.extend_from_slice(
        format!(
            "{}\t{}\t{}\t{}\t",
            record.flags,
            record.expire_at,
            record.version,
            u8::from(record.tombstone)
        )
        .as_bytes(),
    );
    for (n, sub) in record.subkeys.iter().enumerate() {
        if n > 0 {
            out.push(SUBKEY_SEPARATOR);
        }
        escape(sub, out);
    }
    out.push(b'\n');
}

fn number<T: std::str::FromStr>(field: &'static str, bytes: &[u8]) -> Result<T, LineError>
where
    T::Err: fmt::Display,
{
    let text = std::str::from_utf8(bytes).map_err(|_| LineError::Field {
        field,
        reason: "not ASCII digits".to_string(),
    })?;
    text.parse().map_err(|e| LineError::Field {
        field,
        reason: format!("{text:?} is not a decimal number of the right size: {e}"),
    })
}

/// Parses one line (without its LF; a trailing CR is not allowed since CR is escaped).
pub fn parse_line(line: &[u8]) -> Result<LineRecord, LineError> {
    let fields: Vec<&[u8]> = line.split(|&b| b == FIELD_SEPARATOR).collect();
    if fields.len() != FIELD_COUNT {
        return Err(LineError::FieldCount {
            found: fields.len(),
        });
    }
    let text = |field: &'static str, bytes: &[u8]| {
        unescape(bytes).map_err(|reason| LineError::Field { field, reason })
    };
    let key = text("key", fields[0])?;
    if key.is_empty() {
        return Err(LineError::Field {
            field: "key",
            reason: "empty (k2hash refuses empty keys)".to_string(),
        });
    }
    let tombstone = match fields[5] {
        b"0" => false,
        b"1" => true,
        other => {
            return Err(LineError::Field {
                field: "tombstone",
                reason: format!("{:?} must be 0 or 1", String::from_utf8_lossy(other)),
            })
        }
    };
    let subkeys = if fields[6].is_empty() {
        Vec::new()
    } else {
        fields[6]
            .split(|&b| b == SUBKEY_SEPARATOR)
            .map(|s| text("subkeys", s))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(LineRecord {
        key,
        value: text("value", fields[1])?,
        flags: number("flags", fields[2])?,
        expire_at: number("expire_at", fields[3])?,
        version: number("version", fields[4])?,
        tombstone,
        subkeys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_bytes() -> Vec<u8> {
        (0..=255u8).collect()
    }

    #[test]
    fn every_byte_round_trips_through_escaping() {
        let mut out = Vec::new();
        escape(&all_bytes(), &mut out);
        assert!(!out.contains(&b'\t') && !out.contains(&b'\n') && !out.contains(&b','));
        assert!(out.iter().all(|b| (0x20..=0x7E).contains(b)));
        assert_eq!(unescape(&out).unwrap(), all_bytes());
    }

    #[test]
    fn a_full_record_round_trips() {
        let record = LineRecord {
            key: b"k\x00\xff\t,\\".to_vec(),
            value: all_bytes(),
            flags: u32::MAX,
            expire_at: 1_700_000_000,
            version: u64::MAX,
            tombstone: false,
            subkeys: vec![b"a,b".to_vec(), b"\n".to_vec()],
        };
        let mut line = Vec::new();
        write_line(&record, &mut line);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(parse_line(&line[..line.len() - 1]).unwrap(), record);
    }

    #[test]
    fn a_tombstone_without_subkeys_round_trips() {
        let record = LineRecord {
            key: b"gone".to_vec(),
            tombstone: true,
            version: 9,
            ..LineRecord::default()
        };
        let mut line = Vec::new();
        write_line(&record, &mut line);
        assert_eq!(line, b"gone\t\t0\t0\t9\t1\t\n");
        assert_eq!(parse_line(&line[..line.len() - 1]).unwrap(), record);
    }

    #[test]
    fn bad_lines_name_what_is_wrong() {
        assert_eq!(
            parse_line(b"k\tv\t0"),
            Err(LineError::FieldCount { found: 3 })
        );
        let err = parse_line(b"k\tv\tx\t0\t0\t0\t").unwrap_err().to_string();
        assert!(err.contains("flags"), "{err}");
        let err = parse_line(b"k\\q\tv\t0\t0\t0\t0\t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown escape"), "{err}");
        let err = parse_line(b"k\tv\\x4\t0\t0\t0\t0\t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("two hex digits"), "{err}");
        let err = parse_line(b"k\tv\t0\t0\t0\t2\t").unwrap_err().to_string();
        assert!(err.contains("tombstone"), "{err}");
        let err = parse_line(b"\tv\t0\t0\t0\t0\t").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = parse_line(b"k\tv\t-1\t0\t0\t0\t").unwrap_err().to_string();
        assert!(err.contains("flags"), "{err}");
    }
}
