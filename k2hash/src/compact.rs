//! Offline compaction: copy every record into a fresh, densely packed file.

use crate::engine::Engine;
use crate::error::Result;
use std::path::Path;

/// What compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Records copied (tombstones included; expired records dropped).
    pub records: u64,
    /// Expired records dropped.
    pub expired_dropped: u64,
    /// Size of the source file.
    pub bytes_before: u64,
    /// Size of the new file.
    pub bytes_after: u64,
}

/// Compacts the file `src` into a new file `dst` (which must not exist). The source is opened
/// read-only. `progress(done, total)` is called as records are copied.
pub fn compact(
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
    progress: impl FnMut(u64, u64),
) -> Result<CompactReport> {
    let s = crate::OpenOptions::full_map(src.as_ref())
        .read_only(true)
        .background(false)
        .open()?;
    compact_open(&s.inner_engine(), dst.as_ref(), progress)
}

pub(crate) fn compact_open(
    _src: &std::sync::Arc<Engine>,
    _dst: &Path,
    _progress: impl FnMut(u64, u64),
) -> Result<CompactReport> {
    unimplemented!()
}
