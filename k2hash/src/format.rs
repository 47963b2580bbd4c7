//! The file format in code: offsets of the header, shard directory, index slots and record
//! headers, derived from one another and checked by const asserts. `k2hash/FORMAT.md` is the
//! prose specification; keep both in step. Pure functions only: no I/O.
//!
//! All integers are little-endian. Every length or offset read from a file is checked here
//! before it is used to index anything.

use crate::error::{Error, Result};

/// File magic, bytes 0..8 of the header.
pub const MAGIC: [u8; 8] = *b"K2HDKC\x00\x01";
/// Format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the header page.
pub const HEADER_BYTES: u64 = 4096;

// ----- header field offsets (each follows the previous one) --------------------------------
/// `magic: [u8; 8]`.
pub const HDR_MAGIC: usize = 0;
/// `format_version: u32`.
pub const HDR_VERSION: usize = HDR_MAGIC + 8;
/// `header_bytes: u32`.
pub const HDR_HEADER_BYTES: usize = HDR_VERSION + 4;
/// `shard_bits: u32`.
pub const HDR_SHARD_BITS: usize = HDR_HEADER_BYTES + 4;
/// `table_bits: u32` (initial slot bits per shard).
pub const HDR_TABLE_BITS: usize = HDR_SHARD_BITS + 4;
/// `granule_bytes: u32`.
pub const HDR_GRANULE: usize = HDR_TABLE_BITS + 4;
/// `reserved: u32` (zero).
pub const HDR_RESERVED0: usize = HDR_GRANULE + 4;
/// `created_at: u64` (unix seconds).
pub const HDR_CREATED_AT: usize = HDR_RESERVED0 + 4;
/// `shard_dir_offset: u64`.
pub const HDR_SHARD_DIR: usize = HDR_CREATED_AT + 8;
/// `data_start: u64` (first byte after the directory, 4096-aligned).
pub const HDR_DATA_START: usize = HDR_SHARD_DIR + 8;
/// `header_checksum: u32` over bytes `[0, HDR_CHECKSUM)`.
pub const HDR_CHECKSUM: usize = HDR_DATA_START + 8;
/// `reserved: u32` (zero).
pub const HDR_RESERVED1: usize = HDR_CHECKSUM + 4;
/// Start of the mutable, unchecksummed part: `dirty: u32`.
pub const HDR_DIRTY: usize = HDR_RESERVED1 + 4;
/// `owner_pid: u32`.
pub const HDR_OWNER_PID: usize = HDR_DIRTY + 4;
/// `open_count: u64` (incremented at each writable open; informational).
pub const HDR_OPEN_COUNT: usize = HDR_OWNER_PID + 4;
/// End of the used part of the header; the rest of the page is zero.
pub const HDR_END: usize = HDR_OPEN_COUNT + 8;

const _: () = assert!(HDR_CHECKSUM == 56);
const _: () = assert!(HDR_DIRTY == 64);
const _: () = assert!(
    HDR_DIRTY.is_multiple_of(8)
        && HDR_OPEN_COUNT.is_multiple_of(8)
        && HDR_SHARD_DIR.is_multiple_of(8)
);
const _: () = assert!(HDR_END as u64 <= HEADER_BYTES);

/// `dirty` value while a writer has the file open.
pub const DIRTY_OPEN: u32 = 1;

// ----- shard directory ---------------------------------------------------------------------
/// Bytes of one directory entry: `check << 48 | table_offset | table_bits` (offset 64-aligned
/// and below 2^48, bits in the low 6 bits, a 16-bit check of the low 48 bits on top so a
/// damaged entry is detected). Published with one aligned 8-byte store.
pub const DIR_ENTRY_BYTES: u64 = 8;
/// Alignment of shard tables.
pub const TABLE_ALIGN_BYTES: u64 = 64;
const _: () = assert!(TABLE_ALIGN_BYTES >= 64 && TABLE_ALIGN_BYTES.is_power_of_two());
const DIR_LOW_MASK: u64 = (1 << 48) - 1;

const fn dir_check(low: u64) -> u64 {
    (low.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5A5A) >> 48
}

/// Packs a directory entry.
pub const fn dir_entry(table_offset: u64, bits: u32) -> u64 {
    let low = table_offset | bits as u64;
    (dir_check(low) << 48) | low
}

/// Unpacks a directory entry into `(table_offset, bits)`; `None` if its check fails.
pub const fn dir_entry_parts(e: u64) -> Option<(u64, u32)> {
    let low = e & DIR_LOW_MASK;
    if dir_check(low) != e >> 48 {
        return None;
    }
    Some((
        low & !(TABLE_ALIGN_BYTES - 1),
        (low & (TABLE_ALIGN_BYTES - 1)) as u32,
    ))
}

/// Where the data area starts for `shard_bits`.
pub const fn data_start(shard_bits: u32) -> u64 {
    let end = HEADER_BYTES + (DIR_ENTRY_BYTES << shard_bits);
    (end + 4095) & !4095
}

// ----- index slots -------------------------------------------------------------------------
/// Bytes of one index slot.
pub const SLOT_BYTES: u64 = 8;
/// Slot value of a never-used slot (ends a probe chain).
pub const SLOT_EMPTY: u64 = 0;
/// Slot value of a slot whose record was removed (probe chains continue past it).
pub const SLOT_DELETED: u64 = 1;
/// Bits of a slot holding the record offset.
pub const SLOT_OFFSET_BITS: u32 = 48;
/// Mask of the offset part.
pub const SLOT_OFFSET_MASK: u64 = (1 << SLOT_OFFSET_BITS) - 1;
/// The 16 tag bits are key-hash bits 32..48 (never used for slot position or shard).
pub const TAG_SHIFT: u32 = 32;
const _: () = assert!(SLOT_OFFSET_BITS + 16 == 64);
const _: () = assert!(crate::limits::TABLE_BITS_MAX <= 32);
const _: () = assert!(TAG_SHIFT + TAG_BITS + crate::limits::SHARD_BITS_MAX <= 64);

/// Bits in a slot tag.
pub const TAG_BITS: u32 = 16;

/// The home slot of a key hash in a table of `mask + 1` slots: the tag bits first (so a table
/// of up to 2^16 slots can be rebuilt from the slots alone), then the low hash bits above them.
#[inline]
pub const fn home_slot(hash: u64, mask: u64) -> u64 {
    (tag_of(hash) | (hash << TAG_BITS)) & mask
}

/// The tag of a key hash.
#[inline]
pub const fn tag_of(hash: u64) -> u64 {
    (hash >> TAG_SHIFT) & ((1 << TAG_BITS) - 1)
}

/// Packs a slot.
#[inline]
pub const fn slot_entry(offset: u64, hash: u64) -> u64 {
    (tag_of(hash) << SLOT_OFFSET_BITS) | offset
}

/// `(offset, tag)` of a used slot.
#[inline]
pub const fn slot_parts(s: u64) -> (u64, u64) {
    (s & SLOT_OFFSET_MASK, s >> SLOT_OFFSET_BITS)
}

// ----- records -----------------------------------------------------------------------------
/// `block_bytes: u32` — bytes allocated to this record (multiple of the granule).
pub const REC_BLOCK_BYTES: usize = 0;
/// `checksum: u32` — low 32 bits of xxh3-64, seed `block_bytes`, over `[REC_KEY_HASH, end)`.
pub const REC_CHECKSUM: usize = REC_BLOCK_BYTES + 4;
/// `key_hash: u64` — `key_hash(key)`.
pub const REC_KEY_HASH: usize = REC_CHECKSUM + 4;
/// `version: u64`.
pub const REC_VERSION: usize = REC_KEY_HASH + 8;
/// `expire_at: u64`.
pub const REC_EXPIRE_AT: usize = REC_VERSION + 8;
/// `flags: u32` (memcached flags).
pub const REC_FLAGS: usize = REC_EXPIRE_AT + 8;
/// `key_len: u16`.
pub const REC_KEY_LEN: usize = REC_FLAGS + 4;
/// `state: u16` — bit 0 tombstone; other bits zero.
pub const REC_STATE: usize = REC_KEY_LEN + 2;
/// `value_len: u32`.
pub const REC_VALUE_LEN: usize = REC_STATE + 2;
/// `subkeys_len: u32` — bytes of the encoded subkey list.
pub const REC_SUBKEYS_LEN: usize = REC_VALUE_LEN + 4;
/// Header size; key, value and subkey list follow in that order.
pub const REC_HEADER_BYTES: usize = REC_SUBKEYS_LEN + 4;
/// Tombstone bit of `state`.
pub const STATE_TOMBSTONE: u16 = 1;

const _: () = assert!(REC_HEADER_BYTES == 48);
const _: () = assert!(
    REC_KEY_HASH.is_multiple_of(8)
        && REC_VERSION.is_multiple_of(8)
        && REC_EXPIRE_AT.is_multiple_of(8)
);
const _: () = assert!(crate::limits::KEY_SIZE_MAX <= u16::MAX as usize);
const _: () = assert!(crate::limits::GRANULE_BYTES_MIN as usize >= 16);

/// A decoded, bounds-checked record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecHeader {
    /// Allocated bytes.
    pub block_bytes: u32,
    /// Stored checksum.
    pub checksum: u32,
    /// Stored key hash.
    pub key_hash: u64,
    /// Version.
    pub version: u64,
    /// Expiry.
    pub expire_at: u64,
    /// Memcached flags.
    pub flags: u32,
    /// Key length.
    pub key_len: u16,
    /// Tombstone bit.
    pub tombstone: bool,
    /// Value length.
    pub value_len: u32,
    /// Encoded subkey list length.
    pub subkeys_len: u32,
}

impl RecHeader {
    /// Bytes of header + key + value + subkeys.
    pub fn used_bytes(&self) -> u64 {
        REC_HEADER_BYTES as u64
            + self.key_len as u64
            + self.value_len as u64
            + self.subkeys_len as u64
    }
}

#[inline]
fn rd_u16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
#[inline]
fn rd_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
#[inline]
fn rd_u64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Reads a u32 at `o` of a slice known to be long enough (header helpers).
pub fn get_u32(b: &[u8], o: usize) -> u32 {
    rd_u32(b, o)
}
/// Reads a u64 at `o` of a slice known to be long enough (header helpers).
pub fn get_u64(b: &[u8], o: usize) -> u64 {
    rd_u64(b, o)
}

/// Decodes and checks a record header found at file offset `offset`. `h` must hold at least
/// [`REC_HEADER_BYTES`] bytes. Checks lengths against the block and the block against the
/// file size `file_size` and the granule.
pub fn decode_rec_header(h: &[u8], offset: u64, file_size: u64, granule: u32) -> Result<RecHeader> {
    if h.len() < REC_HEADER_BYTES {
        return Err(Error::corrupted("record header truncated", offset));
    }
    let state = rd_u16(h, REC_STATE);
    let r = RecHeader {
        block_bytes: rd_u32(h, REC_BLOCK_BYTES),
        checksum: rd_u32(h, REC_CHECKSUM),
        key_hash: rd_u64(h, REC_KEY_HASH),
        version: rd_u64(h, REC_VERSION),
        expire_at: rd_u64(h, REC_EXPIRE_AT),
        flags: rd_u32(h, REC_FLAGS),
        key_len: rd_u16(h, REC_KEY_LEN),
        tombstone: state & STATE_TOMBSTONE != 0,
        value_len: rd_u32(h, REC_VALUE_LEN),
        subkeys_len: rd_u32(h, REC_SUBKEYS_LEN),
    };
    if state & !STATE_TOMBSTONE != 0 {
        return Err(Error::corrupted(
            format!("record state has unknown bits {state:#x}"),
            offset,
        ));
    }
    if r.key_len == 0 {
        return Err(Error::corrupted("record key length is zero", offset));
    }
    if r.block_bytes == 0 || !r.block_bytes.is_multiple_of(granule) {
        return Err(Error::corrupted(
            format!(
                "record block size {} not a positive multiple of granule {granule}",
                r.block_bytes
            ),
            offset,
        ));
    }
    if r.used_bytes() > r.block_bytes as u64 {
        return Err(Error::corrupted(
            format!(
                "record lengths ({} bytes) exceed its block ({} bytes)",
                r.used_bytes(),
                r.block_bytes
            ),
            offset,
        ));
    }
    if offset
        .checked_add(r.block_bytes as u64)
        .is_none_or(|e| e > file_size)
    {
        return Err(Error::corrupted(
            format!(
                "record block of {} bytes runs past end of file ({file_size})",
                r.block_bytes
            ),
            offset,
        ));
    }
    Ok(r)
}

/// Checksum of a record: `rec` is its bytes from offset 0 to `used_bytes`.
pub fn rec_checksum(block_bytes: u32, rec: &[u8]) -> u32 {
    twox_hash::XxHash3_64::oneshot_with_seed(block_bytes as u64, &rec[REC_KEY_HASH..]) as u32
}

/// Block size for a record of these lengths under `granule`.
pub fn block_bytes_for(key_len: usize, value_len: usize, subkeys_len: usize, granule: u32) -> u64 {
    let used = (REC_HEADER_BYTES + key_len + value_len + subkeys_len) as u64;
    let g = granule as u64;
    used.div_ceil(g) * g
}

/// Fields of a record to encode.
pub struct RecFields<'a> {
    /// Key hash.
    pub key_hash: u64,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
    /// Encoded subkey list.
    pub subkeys: &'a [u8],
    /// Flags.
    pub flags: u32,
    /// Expiry.
    pub expire_at: u64,
    /// Version.
    pub version: u64,
    /// Tombstone.
    pub tombstone: bool,
}

/// Encodes a record into `out` (cleared first; length = used bytes, not padded).
pub fn encode_record(f: &RecFields<'_>, block_bytes: u32, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(REC_HEADER_BYTES + f.key.len() + f.value.len() + f.subkeys.len());
    out.extend_from_slice(&block_bytes.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&f.key_hash.to_le_bytes());
    out.extend_from_slice(&f.version.to_le_bytes());
    out.extend_from_slice(&f.expire_at.to_le_bytes());
    out.extend_from_slice(&f.flags.to_le_bytes());
    out.extend_from_slice(&(f.key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(if f.tombstone { STATE_TOMBSTONE } else { 0 }).to_le_bytes());
    out.extend_from_slice(&(f.value.len() as u32).to_le_bytes());
    out.extend_from_slice(&(f.subkeys.len() as u32).to_le_bytes());
    debug_assert_eq!(out.len(), REC_HEADER_BYTES);
    out.extend_from_slice(f.key);
    out.extend_from_slice(f.value);
    out.extend_from_slice(f.subkeys);
    let c = rec_checksum(block_bytes, out);
    out[REC_CHECKSUM..REC_CHECKSUM + 4].copy_from_slice(&c.to_le_bytes());
}

// ----- subkey lists ------------------------------------------------------------------------
/// Encodes a subkey list: for each child `len: u32` then the bytes.
pub fn encode_subkeys<'a>(children: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for c in children {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// Decodes a subkey list; `None` if malformed.
pub fn decode_subkeys(mut b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut v = Vec::new();
    while !b.is_empty() {
        if b.len() < 4 {
            return None;
        }
        let n = rd_u32(b, 0) as usize;
        let rest = &b[4..];
        if n == 0 || n > rest.len() || n > crate::limits::KEY_SIZE_MAX {
            return None;
        }
        v.push(rest[..n].to_vec());
        b = &rest[n..];
    }
    Some(v)
}

// ----- header ------------------------------------------------------------------------------
/// Geometry stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Shard bits.
    pub shard_bits: u32,
    /// Initial table bits.
    pub table_bits: u32,
    /// Allocation granule.
    pub granule_bytes: u32,
    /// Creation time.
    pub created_at: u64,
}

/// Builds the immutable part of a header (bytes `[0, HDR_DIRTY)`).
pub fn encode_header(g: &Geometry) -> [u8; HDR_DIRTY] {
    let mut h = [0u8; HDR_DIRTY];
    h[HDR_MAGIC..HDR_MAGIC + 8].copy_from_slice(&MAGIC);
    h[HDR_VERSION..HDR_VERSION + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[HDR_HEADER_BYTES..HDR_HEADER_BYTES + 4].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
    h[HDR_SHARD_BITS..HDR_SHARD_BITS + 4].copy_from_slice(&g.shard_bits.to_le_bytes());
    h[HDR_TABLE_BITS..HDR_TABLE_BITS + 4].copy_from_slice(&g.table_bits.to_le_bytes());
    h[HDR_GRANULE..HDR_GRANULE + 4].copy_from_slice(&g.granule_bytes.to_le_bytes());
    h[HDR_CREATED_AT..HDR_CREATED_AT + 8].copy_from_slice(&g.created_at.to_le_bytes());
    h[HDR_SHARD_DIR..HDR_SHARD_DIR + 8].copy_from_slice(&HEADER_BYTES.to_le_bytes());
    h[HDR_DATA_START..HDR_DATA_START + 8].copy_from_slice(&data_start(g.shard_bits).to_le_bytes());
    let c = twox_hash::XxHash3_64::oneshot(&h[..HDR_CHECKSUM]) as u32;
    h[HDR_CHECKSUM..HDR_CHECKSUM + 4].copy_from_slice(&c.to_le_bytes());
    h
}

/// True when `page` (the first `min(file size, HEADER_BYTES)` bytes of a file) shows a
/// creation that never finished: the magic word is zero and so is everything a first writable
/// open or later use would have set (bytes [`HDR_DIRTY`] to the end of the page). Creation
/// writes the magic last, by one aligned 8-byte store, and a writable open increments
/// `open_count` only after that, so no write can have been acknowledged in such a file. Bytes
/// `HDR_VERSION..HDR_DIRTY` may hold a partly written header and are not looked at. A file
/// whose magic is damaged after creation still has a non-zero `open_count` and is refused as
/// corrupted, never recreated.
pub fn header_unfinished(page: &[u8]) -> bool {
    let magic_end = (HDR_MAGIC + 8).min(page.len());
    let rest = page.get(HDR_DIRTY..).unwrap_or(&[]);
    page[..magic_end].iter().all(|&b| b == 0) && rest.iter().all(|&b| b == 0)
}

/// Decodes and checks a header. `h` is the start of the file (any length); `file_size` is
/// the file's size.
pub fn decode_header(h: &[u8], file_size: u64) -> Result<Geometry> {
    if file_size < HEADER_BYTES || h.len() < HDR_END {
        return Err(Error::corrupted(
            format!("file too short for a header ({file_size} bytes)"),
            0,
        ));
    }
    if h[..8] != MAGIC {
        return Err(Error::corrupted("bad magic (not a k2hash file)", 0));
    }
    let v = rd_u32(h, HDR_VERSION);
    if v != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: v,
            supported: FORMAT_VERSION,
            path: None,
        });
    }
    let c = twox_hash::XxHash3_64::oneshot(&h[..HDR_CHECKSUM]) as u32;
    if c != rd_u32(h, HDR_CHECKSUM) {
        return Err(Error::corrupted(
            "header checksum mismatch",
            HDR_CHECKSUM as u64,
        ));
    }
    if rd_u32(h, HDR_RESERVED1) != 0 {
        return Err(Error::corrupted(
            "reserved header field not zero",
            HDR_RESERVED1 as u64,
        ));
    }
    let g = Geometry {
        shard_bits: rd_u32(h, HDR_SHARD_BITS),
        table_bits: rd_u32(h, HDR_TABLE_BITS),
        granule_bytes: rd_u32(h, HDR_GRANULE),
        created_at: rd_u64(h, HDR_CREATED_AT),
    };
    check_geometry(&g).map_err(|e| Error::corrupted(e, HDR_SHARD_BITS as u64))?;
    if rd_u32(h, HDR_HEADER_BYTES) as u64 != HEADER_BYTES
        || rd_u64(h, HDR_SHARD_DIR) != HEADER_BYTES
        || rd_u64(h, HDR_DATA_START) != data_start(g.shard_bits)
    {
        return Err(Error::corrupted(
            "header layout fields inconsistent",
            HDR_HEADER_BYTES as u64,
        ));
    }
    if data_start(g.shard_bits) > file_size {
        return Err(Error::corrupted(
            format!("file ({file_size} bytes) shorter than its shard directory"),
            HEADER_BYTES,
        ));
    }
    Ok(g)
}

/// Checks geometry values against the limits; the error names the value.
pub fn check_geometry(g: &Geometry) -> std::result::Result<(), String> {
    use crate::limits::*;
    if !(SHARD_BITS_MIN..=SHARD_BITS_MAX).contains(&g.shard_bits) {
        return Err(format!(
            "shard_bits {} outside {SHARD_BITS_MIN}..={SHARD_BITS_MAX}",
            g.shard_bits
        ));
    }
    if !(TABLE_BITS_MIN..=TABLE_BITS_MAX).contains(&g.table_bits) {
        return Err(format!(
            "table_bits {} outside {TABLE_BITS_MIN}..={TABLE_BITS_MAX}",
            g.table_bits
        ));
    }
    if !g.granule_bytes.is_power_of_two()
        || !(GRANULE_BYTES_MIN..=GRANULE_BYTES_MAX).contains(&g.granule_bytes)
    {
        return Err(format!(
            "granule_bytes {} not a power of two in {GRANULE_BYTES_MIN}..={GRANULE_BYTES_MAX}",
            g.granule_bytes
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_rejects_flips() {
        let g = Geometry {
            shard_bits: 4,
            table_bits: 5,
            granule_bytes: 32,
            created_at: 7,
        };
        let mut page = vec![0u8; HEADER_BYTES as usize];
        page[..HDR_DIRTY].copy_from_slice(&encode_header(&g));
        assert_eq!(decode_header(&page, 1 << 20).unwrap(), g);
        assert!(
            !header_unfinished(&page),
            "a complete header is not unfinished"
        );
        for i in 0..HDR_DIRTY {
            let mut p = page.clone();
            p[i] ^= 0x10;
            assert!(decode_header(&p, 1 << 20).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn unfinished_header_is_magic_and_mutable_part_zero() {
        let g = Geometry {
            shard_bits: 4,
            table_bits: 5,
            granule_bytes: 32,
            created_at: 7,
        };
        let mut page = vec![0u8; HEADER_BYTES as usize];
        assert!(header_unfinished(&page), "all-zero page");
        assert!(header_unfinished(&page[..0]), "empty file");
        assert!(header_unfinished(&page[..20]), "short all-zero file");
        // Every prefix of the immutable fields written without the magic: still unfinished.
        let h = encode_header(&g);
        for end in HDR_VERSION..=HDR_DIRTY {
            page[HDR_VERSION..end].copy_from_slice(&h[HDR_VERSION..end]);
            assert!(header_unfinished(&page), "fields up to {end} without magic");
        }
        page[..8].copy_from_slice(&MAGIC);
        assert!(!header_unfinished(&page), "magic present");
        page[..8].fill(0);
        // A file that has been opened by a writer (open_count, dirty, owner) is never
        // "unfinished", whatever happened to its magic; nor is one with data in the page.
        for off in [HDR_DIRTY, HDR_OWNER_PID, HDR_OPEN_COUNT, HDR_END, 4095] {
            let mut p = page.clone();
            p[off] = 1;
            assert!(!header_unfinished(&p), "non-zero byte at {off}");
        }
        let mut p = page.clone();
        p[3] = 0x4b;
        assert!(!header_unfinished(&p), "partial magic");
    }

    #[test]
    fn record_roundtrip() {
        let sk = encode_subkeys([b"a".as_slice(), b"bc".as_slice()]);
        let f = RecFields {
            key_hash: 9,
            key: b"key",
            value: b"value",
            subkeys: &sk,
            flags: 3,
            expire_at: 4,
            version: 5,
            tombstone: true,
        };
        let bb = block_bytes_for(3, 5, sk.len(), 16) as u32;
        let mut out = Vec::new();
        encode_record(&f, bb, &mut out);
        let h = decode_rec_header(&out, 4096, 1 << 20, 16).unwrap();
        assert_eq!(
            (h.key_len, h.value_len, h.version, h.tombstone),
            (3, 5, 5, true)
        );
        assert_eq!(rec_checksum(bb, &out), h.checksum);
        assert_eq!(
            decode_subkeys(&sk).unwrap(),
            vec![b"a".to_vec(), b"bc".to_vec()]
        );
        assert!(decode_subkeys(&sk[..sk.len() - 1]).is_none());
    }
}
