//! Every limit and default of the engine, as named constants (unit last). Relations between
//! them are checked at compile time below.

/// Largest key, bytes.
pub const KEY_SIZE_MAX: usize = 65_535;
/// Default largest value, bytes (configurable up to [`VALUE_SIZE_MAX_CEILING`]).
pub const VALUE_SIZE_MAX_DEFAULT: usize = 1024 * 1024;
/// Hard ceiling for the configurable value limit, bytes (record lengths are u32 on disk).
pub const VALUE_SIZE_MAX_CEILING: usize = 1024 * 1024 * 1024;
/// Most subkeys one parent may list.
pub const SUBKEYS_MAX: usize = 65_536;
/// Largest encoded subkey list, bytes.
pub const SUBKEYS_SIZE_MAX: usize = 16 * 1024 * 1024;
/// Default largest file (also the address space reserved by the mapping), bytes.
pub const FILE_SIZE_MAX_DEFAULT: u64 = 256 * 1024 * 1024 * 1024;
/// Hard ceiling for file size: record offsets are 48-bit in an index slot.
pub const FILE_SIZE_MAX_CEILING: u64 = 1 << 48;
/// Smallest `file_size_max` accepted, bytes.
pub const FILE_SIZE_MAX_FLOOR: u64 = 16 * 1024 * 1024;
/// Default number of shard bits (2^10 shards, each with its own lock and table).
pub const SHARD_BITS_DEFAULT: u32 = 10;
/// Fewest shard bits.
pub const SHARD_BITS_MIN: u32 = 0;
/// Most shard bits: a shard must cover whole digest cells.
pub const SHARD_BITS_MAX: u32 = 16;
/// Default initial slot bits per shard table.
pub const TABLE_BITS_DEFAULT: u32 = 6;
/// Fewest slot bits per shard table.
pub const TABLE_BITS_MIN: u32 = 3;
/// Most slot bits per shard table (2^32 slots of 8 bytes).
pub const TABLE_BITS_MAX: u32 = 32;
/// Default allocation granule, bytes: records are padded to a multiple of it.
pub const GRANULE_BYTES_DEFAULT: u32 = 16;
/// Smallest allocation granule, bytes (must keep 8-byte alignment of record headers).
pub const GRANULE_BYTES_MIN: u32 = 16;
/// Largest allocation granule, bytes.
pub const GRANULE_BYTES_MAX: u32 = 4096;
/// A table grows when (used + deleted) slots exceed this per-mille of its size.
pub const TABLE_LOAD_PERMILLE_MAX: u64 = 700;
/// A table that cannot grow because the disk is full still takes new keys up to this per-mille
/// of its size (probes get longer); past it, inserts fail with `NoSpace` until space is freed.
pub const TABLE_LOAD_PERMILLE_DISK_FULL_MAX: u64 = 900;
/// Bits of the digest cell number (top bits of the key hash).
pub const DIGEST_CELL_BITS: u32 = 16;
/// Number of allocator arenas (independent locks for free space).
pub const ARENA_COUNT: usize = 16;
/// Bytes an arena takes from the file tail at a time.
pub const ARENA_CHUNK_BYTES: u64 = 256 * 1024;
/// The file grows by at least this many bytes at a time.
pub const FILE_GROW_BYTES_MIN: u64 = 4 * 1024 * 1024;
/// Cache line size assumed by the write path's prefetch hints.
pub const CACHE_LINE_BYTES: u64 = 64;
/// A write prefetches at most this many bytes of where its new record will go (longer
/// records are sequential stores the hardware prefetcher follows).
pub const PREFETCH_RECORD_BYTES_MAX: u64 = 256;
/// Keys up to this many bytes get their digest term hashed from a stack copy in one call.
pub const DIGEST_TERM_STACK_KEY_MAX: usize = 248;
/// Bytes read at once when locating a record in index-map mode (covers small records whole).
pub const INDEX_MAP_READ_BYTES: usize = 512;
/// Depth limit of `remove_with_children` recursion.
pub const SUBKEY_DEPTH_MAX: usize = 64;
/// Interval of the background expiry sweeper, milliseconds.
pub const SWEEP_INTERVAL_MS: u64 = 1000;
/// The sweeper merges adjacent free blocks every this many passes.
pub const COALESCE_INTERVAL_PASSES: u64 = 10;
/// ... but only when free lists hold at least this many bytes.
pub const COALESCE_FREE_BYTES_MIN: u64 = 1024 * 1024;
/// Shards the sweeper visits per pass (bounds the work of one pass).
pub const SWEEP_SHARDS_PER_PASS: usize = 64;

const _: () = assert!(SHARD_BITS_MAX <= DIGEST_CELL_BITS);
const _: () = assert!(VALUE_SIZE_MAX_DEFAULT >= 1024 * 1024);
const _: () = assert!(VALUE_SIZE_MAX_DEFAULT <= VALUE_SIZE_MAX_CEILING);
const _: () = assert!((VALUE_SIZE_MAX_CEILING as u64) < u32::MAX as u64);
const _: () = assert!((KEY_SIZE_MAX as u64) < u32::MAX as u64);
const _: () = assert!((SUBKEYS_SIZE_MAX as u64) < u32::MAX as u64);
const _: () = assert!(FILE_SIZE_MAX_DEFAULT <= FILE_SIZE_MAX_CEILING);
const _: () = assert!(GRANULE_BYTES_MIN.is_power_of_two() && GRANULE_BYTES_MAX.is_power_of_two());
const _: () = assert!(TABLE_LOAD_PERMILLE_MAX < 1000);
const _: () = assert!(TABLE_LOAD_PERMILLE_MAX < TABLE_LOAD_PERMILLE_DISK_FULL_MAX);
const _: () = assert!(TABLE_LOAD_PERMILLE_DISK_FULL_MAX < 1000);
const _: () = assert!(ARENA_CHUNK_BYTES.is_multiple_of(GRANULE_BYTES_MAX as u64));
