//! `OpenOptions`: how to open or create a store. Geometry knobs apply only at creation; an
//! existing file keeps the geometry recorded in its header.

use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::limits::*;
use crate::K2Hash;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The three storage modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Anonymous memory; nothing persists.
    Memory,
    /// The whole file mapped; records read and written through the mapping.
    FullMap,
    /// Index through the mapping, records through pread/pwrite (files larger than RAM).
    IndexMap,
}

/// Builder for [`K2Hash`].
#[derive(Clone)]
pub struct OpenOptions {
    pub(crate) mode: Mode,
    pub(crate) path: Option<PathBuf>,
    pub(crate) temporary: bool,
    pub(crate) read_only: bool,
    pub(crate) create: bool,
    pub(crate) sync: bool,
    pub(crate) shard_bits: u32,
    pub(crate) table_bits: u32,
    pub(crate) granule_bytes: u32,
    pub(crate) value_size_max: usize,
    pub(crate) file_size_max: u64,
    pub(crate) background: bool,
    pub(crate) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("mode", &self.mode)
            .field("path", &self.path)
            .field("temporary", &self.temporary)
            .field("read_only", &self.read_only)
            .field("create", &self.create)
            .field("sync", &self.sync)
            .field("shard_bits", &self.shard_bits)
            .field("table_bits", &self.table_bits)
            .field("granule_bytes", &self.granule_bytes)
            .field("value_size_max", &self.value_size_max)
            .field("file_size_max", &self.file_size_max)
            .field("background", &self.background)
            .finish()
    }
}

impl OpenOptions {
    fn with(mode: Mode, path: Option<PathBuf>) -> OpenOptions {
        OpenOptions {
            mode,
            path,
            temporary: false,
            read_only: false,
            create: false,
            sync: false,
            shard_bits: SHARD_BITS_DEFAULT,
            table_bits: TABLE_BITS_DEFAULT,
            granule_bytes: GRANULE_BYTES_DEFAULT,
            value_size_max: VALUE_SIZE_MAX_DEFAULT,
            file_size_max: FILE_SIZE_MAX_DEFAULT,
            background: true,
            clock: Arc::new(SystemClock),
        }
    }

    /// Memory only (anonymous mapping); nothing persists.
    pub fn memory() -> OpenOptions {
        OpenOptions::with(Mode::Memory, None)
    }

    /// The whole file mapped.
    pub fn full_map(path: impl AsRef<Path>) -> OpenOptions {
        OpenOptions::with(Mode::FullMap, Some(path.as_ref().to_path_buf()))
    }

    /// Index mapped; records via pread/pwrite.
    pub fn index_map(path: impl AsRef<Path>) -> OpenOptions {
        OpenOptions::with(Mode::IndexMap, Some(path.as_ref().to_path_buf()))
    }

    /// Remove the file when the store is closed (implies `create(true)`; the file is
    /// re-initialised if it exists).
    pub fn temporary(mut self, on: bool) -> Self {
        self.temporary = on;
        self
    }

    /// Open read-only: every write returns [`crate::Error::ReadOnly`]. Several read-only
    /// openers may share a file; none while a writer owns it.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Create the file if it does not exist.
    pub fn create(mut self, on: bool) -> Self {
        self.create = on;
        self
    }

    /// Flush (fdatasync, group commit) before every write returns.
    pub fn sync(mut self, on: bool) -> Self {
        self.sync = on;
        self
    }

    /// Creation only: 2^bits index shards (each with its own lock). Like K2HASH's mask bits.
    pub fn shard_bits(mut self, bits: u32) -> Self {
        self.shard_bits = bits;
        self
    }

    /// Creation only: initial 2^bits slots per shard table. Like K2HASH's cmask bits.
    pub fn table_bits(mut self, bits: u32) -> Self {
        self.table_bits = bits;
        self
    }

    /// Creation only: allocation granule in bytes (power of two, 16..=4096). Like K2HASH's
    /// page size.
    pub fn granule_bytes(mut self, bytes: u32) -> Self {
        self.granule_bytes = bytes;
        self
    }

    /// Largest value accepted, bytes (default 1 MiB, at most 1 GiB).
    pub fn value_size_max(mut self, bytes: usize) -> Self {
        self.value_size_max = bytes;
        self
    }

    /// Largest file size, bytes; also the address space reserved by the mapping.
    pub fn file_size_max(mut self, bytes: u64) -> Self {
        self.file_size_max = bytes;
        self
    }

    /// Run the background sweeper (expiry reclamation). On by default.
    pub fn background(mut self, on: bool) -> Self {
        self.background = on;
        self
    }

    /// The clock used for expiry.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The mode chosen.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Opens the store.
    pub fn open(&self) -> Result<K2Hash> {
        K2Hash::open(self)
    }
}
